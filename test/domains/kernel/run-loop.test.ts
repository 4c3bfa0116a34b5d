// The vCPU run loop both thread entries use, on this thread: a thread of its own sleeps on its
// vCPU's upcall word and parks at its gate when paused; a pool thread sleeps on its doorbell and
// parks each paused kernel on its own while serving the rest. Events are raised the way the
// hypervisor raises them (evtchn_2l set_pending, then a kick or a ring); every wait is for a
// handler to run or a pause to be acknowledged, never for a time.
import assert from 'node:assert/strict';
import { Kernel } from '../../../domains/kernel/kernel.ts';
import { Doorbell, RunLoop, UpcallWord } from '../../../domains/kernel/run-loop.ts';
import { Evtchn2l } from '../../../hypervisor/public/event_2l.ts';
import { KERNEL_COUNTERS, VcpuControl, vcpuCloseGate, vcpuOpenGate, vcpuStopped } from '../../../hypervisor/public/vcpu.ts';

const PORT = 5;

interface Guest {
  readonly kernel: Kernel;
  readonly sharedInfo: SharedArrayBuffer;
  readonly ctl: Int32Array;
  readonly evtchn: Evtchn2l;
  /** Events the guest's handler took on PORT. */
  taken: number;
  /** Resolves once the handler has taken `n` events in all. */
  takenReaches(n: number): Promise<void>;
}

function guest(domid: number): Guest {
  const noHypervisor = { call: (): never => { throw new Error('no hypervisor in this spec'); } };
  const sharedInfo = new SharedArrayBuffer(4096);
  const vcpuControl = new SharedArrayBuffer(VcpuControl.BYTES);
  const ctl = new Int32Array(vcpuControl);
  vcpuOpenGate(ctl);
  const kernel = new Kernel({
    domid, sharedInfo, pages: [], vcpus: 1, vcpuControl, mode: 'free',
    startInfo: { domid, nr_pages: 0, store_mfn: 0, store_evtchn: 0, seed: 1 },
  }, noHypervisor);
  const waiters: { n: number; resolve: () => void }[] = [];
  const g: Guest = {
    kernel, sharedInfo, ctl, evtchn: new Evtchn2l(sharedInfo), taken: 0,
    takenReaches: (n) => new Promise((resolve) => (g.taken >= n ? resolve() : waiters.push({ n, resolve }))),
  };
  kernel.on(PORT, () => {
    g.taken++;
    for (let i = waiters.length - 1; i >= 0; i--) if (g.taken >= waiters[i].n) waiters.splice(i, 1)[0].resolve();
  });
  return g;
}

/** The hypervisor's half of a send: set_pending, and the kick on the 0 -> 1 edge. */
function send(g: Guest, kick: () => void): void {
  if (g.evtchn.setPending(0, PORT) === 'upcall') kick();
}

/** Pauses the guest's vCPU as its runner does and resolves once the vCPU acknowledged it. */
async function pause(g: Guest, nudge: () => void): Promise<void> {
  const seq = vcpuCloseGate(g.ctl);
  nudge();
  await vcpuStopped(g.ctl, seq, () => false, nudge);
}

/** Lets every task queued now run to its next wait (the loop's own turns included). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

describe('the vCPU run loop', () => {
  for (const spin of [0, 200]) {
    describe(spin ? `polling ${spin} µs before it sleeps` : 'sleeping at once', () => {
      it('a thread of its own takes its upcalls, runs nothing while paused, and ends when its kernel halts', async () => {
        const g = guest(1);
        const kick = (): void => g.evtchn.kick(0);
        const loop = new RunLoop(new UpcallWord(g.sharedInfo), g.kernel, spin, new Float64Array(KERNEL_COUNTERS));
        const ran = loop.run();
        send(g, kick);
        await g.takenReaches(1);

        await pause(g, kick);
        send(g, kick);
        await settle();
        assert.equal(g.taken, 1, 'no event is taken while paused');
        assert.equal(g.evtchn.upcallPending(0), true, 'the event waits for the vCPU');

        vcpuOpenGate(g.ctl);
        await g.takenReaches(2);
        g.kernel.stop();
        await ran;
      });

      it('a pool thread serves every kernel, and a paused one parks alone while the others run', async () => {
        const bell = new Int32Array(new SharedArrayBuffer(4));
        const ring = (): void => {
          Atomics.add(bell, 0, 1);
          Atomics.notify(bell, 0);
        };
        const a = guest(1);
        const b = guest(2);
        const loop = new RunLoop(new Doorbell(bell.buffer as SharedArrayBuffer), undefined, spin, new Float64Array(KERNEL_COUNTERS));
        loop.serve([a.kernel, b.kernel]);
        void loop.run();
        send(a, ring);
        send(b, ring);
        await Promise.all([a.takenReaches(1), b.takenReaches(1)]);

        await pause(a, ring);
        send(a, ring);
        send(b, ring);
        await b.takenReaches(2);
        await settle();
        assert.equal(a.taken, 1, 'the paused kernel takes nothing');

        vcpuOpenGate(a.ctl);
        ring();
        await a.takenReaches(2);
        loop.serve([]);
      });
    });
  }

  it('a level wake word belongs to its sole kernel; a doorbell serves a set', () => {
    const g = guest(1);
    const counters = new Float64Array(KERNEL_COUNTERS);
    assert.throws(() => new RunLoop(new UpcallWord(g.sharedInfo), undefined, 0, counters));
    assert.throws(() => new RunLoop(new Doorbell(new SharedArrayBuffer(4)), g.kernel, 0, counters));
    assert.throws(() => new RunLoop(new UpcallWord(g.sharedInfo), g.kernel, 0, counters).serve([g.kernel]));
  });
});
