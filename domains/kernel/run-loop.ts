// The run loop of a vCPU thread, written once for both thread entries: a thread of its own
// (worker.ts) serves one domain's kernel and sleeps on that vCPU's upcall word; a pool thread
// (pool-worker.ts) serves many packed kernels and sleeps on its doorbell. Each turn takes every
// served kernel's upcalls (a paused kernel acknowledges its pause instead), then the idle thread
// polls for up to HostOptions.spin µs - a sleeping thread takes tens of µs to wake - and sleeps.
// Lockstep vCPUs (a thread of its own only) instead wait for the scheduler's run token.
import { performance } from 'node:perf_hooks';
import { KernelCounter, VcpuControl } from '../../hypervisor/public/vcpu.ts';
import { VcpuInfo } from '../../hypervisor/public/xen.ts';
import type { Kernel } from './kernel.ts';

/** A polling thread lets queued work run at least this often (ms) ... */
const POLL_SLICE_MS = 0.02;
/** ... and its event loop (timers, I/O, messages) at least this often, however busy (ms). */
const TURN_EVERY_MS = 1;

/**
 * What an idle thread sleeps on (index 0 of `word`) and how it tells new work from work taken.
 * One thread only ever uses one kind, so the calls stay monomorphic on the hot path.
 */
export interface WakeWord {
  readonly word: Int32Array;
  /**
   * Whether the word is its sole vCPU's upcall word: a level a paused vCPU leaves set, so the
   * thread parks at that vCPU's gate instead of sleeping on it.
   */
  readonly level: boolean;
  /** Read before a turn's pass (a counter must be: a ring during the pass then changes it). */
  before(): number;
  /** After the pass: the value to sleep on, given what before() read. */
  after(before: number): number;
  /** The word now (polling). */
  read(): number;
  /** Whether the word read as `now` shows work the pass did not take (`v`: what after() gave). */
  arrived(v: number, now: number): boolean;
}

/** evtchn_upcall_pending of vCPU 0 within shared_info's first i32 word (little-endian). */
const UPCALL_PENDING_BITS = 0xff << (8 * VcpuInfo.evtchn_upcall_pending);
if (VcpuInfo.evtchn_upcall_pending > 3) throw new Error('evtchn_upcall_pending must lie in the first i32 word');

/**
 * A thread of its own sleeps on vcpu_info[0]'s word: the hypervisor sets evtchn_upcall_pending
 * and notifies the word on its 0 -> 1 edge. The pass clears it, so it is read after the pass.
 */
export class UpcallWord implements WakeWord {
  readonly word: Int32Array;
  readonly level = true;

  constructor(sharedInfo: SharedArrayBuffer) {
    this.word = new Int32Array(sharedInfo, 0, 1);
  }

  before(): number {
    return 0;
  }

  after(): number {
    return Atomics.load(this.word, 0);
  }

  read(): number {
    return Atomics.load(this.word, 0);
  }

  arrived(_v: number, now: number): boolean {
    return (now & UPCALL_PENDING_BITS) !== 0;
  }
}

/**
 * A pool thread sleeps on its doorbell, a counter every ring bumps (an upcall for one of its
 * domains, a pause or unpause): read before the pass, any change is work.
 */
export class Doorbell implements WakeWord {
  readonly word: Int32Array;
  readonly level = false;

  constructor(doorbell: SharedArrayBuffer) {
    this.word = new Int32Array(doorbell, 0, 1);
  }

  before(): number {
    return Atomics.load(this.word, 0);
  }

  after(before: number): number {
    return before;
  }

  read(): number {
    return Atomics.load(this.word, 0);
  }

  arrived(v: number, now: number): boolean {
    return now !== v;
  }
}

/** A free-running vCPU thread's loop over the kernels it serves. */
export class RunLoop {
  /** The kernels served, scanned in order; replaced (never changed in place) by serve(). */
  private kernels: readonly Kernel[] = [];
  /** With a level wake word: the one kernel whose gate the whole thread parks at. */
  private readonly sole: Kernel | undefined;
  private readonly spinMs: number;
  /** When the polling thread last let its event loop run (performance.now(), ms). */
  private lastTurn = 0;

  /**
   * `sole`: the kernel a thread of its own runs (required with a level wake word, refused with a
   * counter). `spinUs`: how long an idle thread polls before it sleeps. `counters`: where sleeps
   * and events caught polling are counted (KernelCounter layout).
   */
  constructor(private readonly wake: WakeWord, sole: Kernel | undefined, spinUs: number, private readonly counters: Float64Array) {
    if (wake.level !== (sole !== undefined)) throw new Error('a level wake word is its sole kernel\'s, a counter serves a set');
    this.sole = sole;
    if (sole) this.kernels = [sole];
    this.spinMs = Math.max(0, spinUs) / 1000;
  }

  /** A pool thread: the kernels whose program has been entered (the next turn scans these). */
  serve(kernels: readonly Kernel[]): void {
    if (this.sole) throw new Error('a thread of its own serves only its own kernel');
    this.kernels = kernels;
  }

  /** Runs until the sole kernel halts (a pool thread's loop runs as long as the thread). */
  async run(): Promise<void> {
    const wake = this.wake;
    for (;;) {
      const before = wake.before();
      if (!this.pass()) {
        if (!(await this.sole!.unpaused())) return;
        continue;
      }
      // Sleep only on the word as the pass left it: work that lands after the pass changes it,
      // and the wait returns at once instead of missing the edge.
      let v = wake.after(before);
      if (wake.arrived(v, v)) continue;
      if (this.spinMs > 0) {
        // Let the pass's promise chains run first: what they send may be answered while polling.
        const now = await this.idlePoll(v);
        const caught = wake.arrived(v, now);
        if (caught) this.counters[KernelCounter.polled]++;
        // Paused while polling: park (and say so) rather than sleep on the upcall word.
        if (this.interrupted() || caught) continue;
        v = now;
      }
      const w = Atomics.waitAsync(wake.word, 0, v);
      if (w.async) {
        this.counters[KernelCounter.sleeps]++;
        await w.value;
        this.lastTurn = performance.now();
      }
    }
  }

  /**
   * Takes every served kernel's upcalls (a paused one acknowledges its pause and takes nothing);
   * false when the thread's sole kernel is paused or halted, so the thread parks at its gate.
   */
  private pass(): boolean {
    const ks = this.kernels;
    let took = false;
    for (let i = 0; i < ks.length; i++) if (ks[i].takeUpcalls()) took = true;
    return took || this.sole === undefined;
  }

  /**
   * Whether the sole kernel was paused or halted, which its upcall word does not show. (A pool
   * thread's kernels ring the doorbell when paused, which the poll sees.)
   */
  private interrupted(): boolean {
    const s = this.sole;
    return s !== undefined && (s.halted || s.paused());
  }

  /**
   * Polls the wake word for up to spinMs while it shows no new work; returns the value last seen.
   * Polls synchronously in slices; before each slice a nextTick hop lets everything already
   * queued run to its next wait (every queued tick runs before the promise callbacks, so a
   * stream's uncork after the domain's next request goes out first). Timers, immediates and
   * messages wait until the poll ends, or at most about TURN_EVERY_MS while work keeps coming.
   */
  private async idlePoll(v: number): Promise<number> {
    if (performance.now() - this.lastTurn > TURN_EVERY_MS) {
      // Work kept coming while polling: this thread has not been back to its event loop for a
      // while. Two immediates make sure a whole loop turn (timers, I/O, messages) runs first.
      await new Promise<void>((r) => setImmediate(r));
      await new Promise<void>((r) => setImmediate(r));
      this.lastTurn = performance.now();
    }
    const wake = this.wake;
    const end = performance.now() + this.spinMs;
    for (;;) {
      await new Promise<void>((r) => process.nextTick(r));
      let now = wake.read();
      if (wake.arrived(v, now) || this.interrupted()) return now;
      const t = performance.now();
      if (t >= end) return now;
      const sliceEnd = Math.min(end, t + POLL_SLICE_MS);
      do {
        for (let i = 0; i < 64; i++) {
          now = wake.read();
          if (wake.arrived(v, now)) return now;
        }
      } while (performance.now() < sliceEnd);
    }
  }
}

/**
 * Lockstep (a thread of its own): run only while the scheduler grants this vCPU the CPU; take
 * upcalls and due timers and let every task they started settle (Kernel.runSlice, shared with
 * the inline vCPU); then block (SCHEDOP_block) with the next deadline. `yielded` runs just before
 * the vCPU gives the CPU back (the worker posts a marker after its messages).
 */
export async function runLockstep(kernel: Kernel, yielded: () => void): Promise<void> {
  const ctl = kernel.vcpuControl;
  if (kernel.mode !== 'lockstep' || !ctl) throw new Error(`domain ${kernel.domid}: not a lockstep vCPU`);
  while (!kernel.halted) {
    Atomics.wait(ctl, VcpuControl.RUN, 0);
    if (kernel.halted) return;
    await kernel.runSlice();
    // Messages this run posted (trace, results) reach the simulator before it moves on.
    yielded();
    Atomics.store(ctl, VcpuControl.RUN, 0);
    Atomics.store(ctl, VcpuControl.YIELD, 1);
    Atomics.notify(ctl, VcpuControl.YIELD);
  }
}
