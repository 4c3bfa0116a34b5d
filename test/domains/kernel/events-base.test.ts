// Event dispatch (domains/kernel/events-base.ts): with one vCPU the upcall finds a port's
// irq_info and calls its handler in one step. With two, in lockstep, the upcall on vCPU0 is a
// task that parks between the two, so another task (xenwatch tearing a device down on vCPU1) can
// come between: with evtchn_rwlock the unbind waits for the upcall in flight; without it
// (XSA-331's bug) the upcall calls through a freed irq_info, which the kernel reports as an oops.
import assert from 'node:assert/strict';
import { EventsBase, UPCALL_TASK } from '../../../domains/kernel/events-base.ts';

/** A lockstep kernel whose preemption points are resumed by hand, and what it traced. */
function parkingKernel(lockstep = true) {
  const parked = new Map<string, (() => void)[]>();
  const oopses: string[] = [];
  return {
    oopses,
    point: lockstep ? (task: string) => new Promise<void>((resume) => {
      const q = parked.get(task) ?? [];
      q.push(resume);
      parked.set(task, q);
    }) : undefined,
    trace: (ev: { readonly kind: string; readonly [k: string]: unknown }) => {
      if (ev.kind === 'oops') oopses.push(String(ev.error));
    },
    parked: (task: string) => (parked.get(task)?.length ?? 0) > 0,
    run: async (task: string) => {
      const resume = parked.get(task)?.shift();
      assert.ok(resume, `${task} is not parked`);
      resume();
      await settle();
    },
  };
}

const settle = () => new Promise<void>((r) => setImmediate(r));

/** An upcall finding `ports` pending (what the 2-level loop would hand out). */
const pending = (...ports: number[]) => (dispatch: (port: number) => void): number => {
  for (const p of ports) dispatch(p);
  return 1;
};

describe('events-base: dispatching an upcall and unbinding a port', () => {
  it('one vCPU: the handler runs inside the upcall, in one step', () => {
    const k = parkingKernel();
    const ev = new EventsBase(k);
    const log: number[] = [];
    ev.bind(3, (p) => log.push(p));
    ev.handle(pending(3));
    assert.deepEqual(log, [3]);
    assert.equal(k.parked(UPCALL_TASK), false);
  });

  it('two vCPUs free-running (no preemption points): still one step', () => {
    const k = parkingKernel(false);
    const ev = new EventsBase(k);
    ev.configure(2);
    const log: number[] = [];
    ev.bind(3, (p) => log.push(p));
    ev.handle(pending(3));
    assert.deepEqual(log, [3]);
  });

  it('two vCPUs in lockstep: the upcall on vCPU0 finds the irq_info, then parks before calling the handler', async () => {
    const k = parkingKernel();
    const ev = new EventsBase(k);
    ev.configure(2);
    const log: number[] = [];
    ev.bind(3, (p) => log.push(p));
    ev.bind(5, (p) => log.push(p));
    ev.handle(pending(3, 5));
    await settle();
    assert.deepEqual(log, []);
    await k.run(UPCALL_TASK);
    assert.deepEqual(log, [3]);
    await k.run(UPCALL_TASK);
    assert.deepEqual(log, [3, 5]);
    assert.equal(k.parked(UPCALL_TASK), false);
  });

  it('an upcall while one is in flight joins it (the upcall loop goes round again)', async () => {
    const k = parkingKernel();
    const ev = new EventsBase(k);
    ev.configure(2);
    const log: number[] = [];
    ev.bind(3, (p) => log.push(p));
    ev.handle(pending(3));
    ev.handle(pending(3));
    await k.run(UPCALL_TASK);
    await k.run(UPCALL_TASK);
    assert.deepEqual(log, [3, 3]);
    assert.equal(k.parked(UPCALL_TASK), false);
  });

  it('with evtchn_rwlock, an unbind on the other vCPU waits until the upcall dispatching the port has called its handler', async () => {
    const k = parkingKernel();
    const ev = new EventsBase(k);
    ev.configure(2);
    const log: string[] = [];
    ev.bind(3, () => log.push('handler'));
    ev.handle(pending(3));
    const unbound = ev.unbind(3, () => log.push('EVTCHNOP_close')).then(() => log.push('unbind done'));
    await settle();
    assert.deepEqual(log, [], 'the unbind waits for the upcall in flight');
    await k.run(UPCALL_TASK);
    await unbound;
    assert.deepEqual(log, ['handler', 'EVTCHNOP_close', 'unbind done']);
    assert.deepEqual(k.oopses, []);
  });

  it('without it (XSA-331), the unbind frees the irq_info at once and the upcall calls through freed memory: an oops, the handler never runs', async () => {
    const k = parkingKernel();
    const ev = new EventsBase(k);
    ev.configure(2, { noEvtchnRwlock: true });
    const log: string[] = [];
    ev.bind(3, () => log.push('handler'));
    ev.handle(pending(3));
    await ev.unbind(3, () => log.push('EVTCHNOP_close'));
    assert.deepEqual(log, ['EVTCHNOP_close']);
    await k.run(UPCALL_TASK);
    assert.deepEqual(log, ['EVTCHNOP_close']);
    assert.equal(k.oopses.length, 1);
    assert.match(k.oopses[0], /use after free: port 3's irq_info was freed by unbind/);
  });

  it('without it, an upcall that runs through before the unbind is fine: the race needs the unbind between lookup and call', async () => {
    const k = parkingKernel();
    const ev = new EventsBase(k);
    ev.configure(2, { noEvtchnRwlock: true });
    const log: string[] = [];
    ev.bind(3, () => log.push('handler'));
    ev.handle(pending(3));
    await k.run(UPCALL_TASK);
    await ev.unbind(3, () => log.push('EVTCHNOP_close'));
    assert.deepEqual(log, ['handler', 'EVTCHNOP_close']);
    assert.deepEqual(k.oopses, []);
  });

  it('a port unbound before the upcall looked it up has no irq_info: its event is dropped, no oops', async () => {
    const k = parkingKernel();
    const ev = new EventsBase(k);
    ev.configure(2, { noEvtchnRwlock: true });
    const log: number[] = [];
    ev.bind(3, (p) => log.push(p));
    ev.bind(5, (p) => log.push(p));
    ev.handle(pending(3, 5));
    await ev.unbind(5, () => undefined);
    await k.run(UPCALL_TASK);
    assert.deepEqual(log, [3]);
    assert.equal(k.parked(UPCALL_TASK), false);
    assert.deepEqual(k.oopses, []);
  });

  it('freeing an irq_info without the lock while the upcall holds it is a BUG of the caller', async () => {
    const k = parkingKernel();
    const ev = new EventsBase(k);
    ev.configure(2);
    ev.bind(3, () => undefined);
    ev.handle(pending(3));
    assert.throws(() => ev.free(3), /BUG: irq_info of port 3 freed while the upcall holds evtchn_rwlock/);
    await k.run(UPCALL_TASK);
    ev.free(3);
  });

  it('a handler that throws in the upcall task is the kernel\'s oops', async () => {
    const k = parkingKernel();
    const ev = new EventsBase(k);
    ev.configure(2);
    ev.bind(3, () => {
      throw new Error('boom');
    });
    ev.handle(pending(3));
    await k.run(UPCALL_TASK);
    assert.deepEqual(k.oopses, ['boom']);
  });
});
