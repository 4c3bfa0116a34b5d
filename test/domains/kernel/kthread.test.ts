// Kernel threads (domains/kernel/kthread.ts): a thread made by kthread_run runs when it is first
// scheduled, not when it is made; kthread_stop takes it out through its exit path only if it ran;
// a stopped thread is freed, so stopping it again is the use after free of XSA-350.
import assert from 'node:assert/strict';
import { KthreadError, kthreadRun } from '../../../domains/kernel/kthread.ts';

/** A lockstep kernel's preemption points, resumed by hand. */
function parkingKernel(): { point: (task: string) => Promise<void>; run: (task: string) => Promise<void> } {
  const parked = new Map<string, () => void>();
  return {
    point: (task) => new Promise<void>((resume) => void parked.set(task, resume)),
    run: async (task) => {
      const resume = parked.get(task);
      assert.ok(resume, `${task} is not parked`);
      parked.delete(task);
      resume();
      await new Promise<void>((r) => setImmediate(r));
    },
  };
}

describe('kthread: kthread_run and kthread_stop', () => {
  it('a new thread runs its function only once its task is scheduled', async () => {
    const k = parkingKernel();
    const log: string[] = [];
    const t = kthreadRun(k, 'blkback.1.51712-0', { start: () => log.push('start'), exit: () => log.push('exit') });
    await new Promise<void>((r) => setImmediate(r));
    assert.deepEqual(log, []);
    assert.equal(t.running, false);
    await k.run('blkback.1.51712-0');
    assert.deepEqual(log, ['start']);
    assert.equal(t.running, true);
  });

  it('stopping a thread that ran takes it out through its exit path', async () => {
    const k = parkingKernel();
    const log: string[] = [];
    const t = kthreadRun(k, 'w', { start: () => log.push('start'), exit: () => log.push('exit') });
    await k.run('w');
    t.stop();
    assert.deepEqual(log, ['start', 'exit']);
    assert.equal(t.running, false);
    assert.equal(t.freed, true);
  });

  it('a thread stopped before it ran never runs its function nor its exit path, even when scheduled later', async () => {
    const k = parkingKernel();
    const log: string[] = [];
    const t = kthreadRun(k, 'w', { start: () => log.push('start'), exit: () => log.push('exit') });
    t.stop();
    await k.run('w');
    assert.deepEqual(log, []);
    assert.equal(t.ran, false);
  });

  it('stopping a stopped (freed) thread again is a BUG', () => {
    const t = kthreadRun({ point: undefined }, 'w', { start: () => undefined, exit: () => undefined });
    t.stop();
    assert.throws(() => t.stop(), (e) => e instanceof KthreadError && /use after free/.test(e.message));
  });

  it('free-running (no preemption points), a new thread starts as soon as its creator yields', async () => {
    let started = false;
    const t = kthreadRun({ point: undefined }, 'w', { start: () => { started = true; }, exit: () => undefined });
    assert.equal(started, false);
    await Promise.resolve();
    assert.equal(started, true);
    assert.equal(t.running, true);
  });
});
