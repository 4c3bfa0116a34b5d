// A vCPU thread shared by many domains (packing, like vCPUs on pCPUs): it hosts one kernel per
// domain behind the same Kernel API, sleeps on one doorbell word, and on each ring scans its
// domains' shared_info pages for pending upcalls - one wake-up serves every domain that got an
// event meanwhile. With `spin`, an idle thread first polls the doorbell (as Kernel's idle poll
// does its upcall word), since a sleeping thread takes tens of µs to wake.
import { performance } from 'node:perf_hooks';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { HypercallClient } from '../../hypervisor/public/hypercall_page.ts';
import { KernelCounter, type PoolCommand, type PoolWorkerData } from '../../hypervisor/public/vcpu.ts';
import { Kernel } from './kernel.ts';
import { loadProgram } from './program.ts';

/** A polling thread lets queued work run at least this often (ms) ... */
const POLL_SLICE_MS = 0.02;
/** ... and its event loop (timers, I/O, messages) at least this often, however busy (ms). */
const TURN_EVERY_MS = 1;

const data = workerData as PoolWorkerData;
const hc = new HypercallClient(data.hypercallPage, data.port);
const bell = new Int32Array(data.doorbell);
const spinMs = Math.max(0, data.spin ?? 0) / 1000;
const counters = new Float64Array(data.counters ?? new ArrayBuffer(8 * 8));
const kernels = new Map<number, { kernel: Kernel; control: MessagePort; entered: boolean }>();
/** The kernels whose program has been entered, for the scan on every ring (rebuilt on change). */
let scan: Kernel[] = [];
const rescan = (): void => {
  scan = [...kernels.values()].filter((e) => e.entered).map((e) => e.kernel);
};

parentPort!.on('message', (m: PoolCommand) => {
  if (m.cmd === 'halt') {
    const k = kernels.get(m.domid);
    kernels.delete(m.domid);
    rescan();
    k?.kernel.stop();
    k?.control.close();
    return;
  }
  const kernel = new Kernel(m.boot, hc);
  kernels.set(kernel.domid, { kernel, control: m.control, entered: false });
  rescan();
  kernel.traceSink = (ev) => m.control.postMessage({ cmd: 'trace', ev });
  void boot(kernel, m);
});

/** Enters a placed domain's program once its vCPU may run (a guest created paused waits). */
async function boot(kernel: Kernel, m: PoolCommand & { cmd: 'boot' }): Promise<unknown> {
  if (!(await kernel.unpaused())) return undefined;
  const entry = await loadProgram(m.boot.program);
  if (kernel.paused() && !(await kernel.unpaused())) return undefined;
  const running = entry(kernel, m.boot.program.args, m.control);
  const e = kernels.get(kernel.domid);
  if (e?.kernel === kernel) {
    e.entered = true;
    rescan();
  }
  // Upcalls raised before this kernel existed rang the bell when nobody could take them, and
  // no new edge comes while upcall_pending stays set: take them now the handlers are bound.
  kernel.takeUpcalls();
  return running;
}

/** When the polling thread last let its event loop run (performance.now(), ms). */
let lastTurn = 0;

/**
 * Polls the doorbell for up to spinMs while it still reads `v`; returns the value last seen.
 * Before each slice a nextTick hop lets the promise chains the last scan started (a guest's next
 * request) run to their next wait; timers, immediates and messages wait until the poll ends, or
 * at most about TURN_EVERY_MS while rings keep coming.
 */
async function idlePoll(v: number): Promise<number> {
  if (performance.now() - lastTurn > TURN_EVERY_MS) {
    await new Promise<void>((r) => setImmediate(r));
    await new Promise<void>((r) => setImmediate(r));
    lastTurn = performance.now();
  }
  const end = performance.now() + spinMs;
  for (;;) {
    await new Promise<void>((r) => process.nextTick(r));
    let now = Atomics.load(bell, 0);
    if (now !== v) return now;
    const t = performance.now();
    if (t >= end) return now;
    const sliceEnd = Math.min(end, t + POLL_SLICE_MS);
    do {
      for (let i = 0; i < 64; i++) {
        now = Atomics.load(bell, 0);
        if (now !== v) return now;
      }
    } while (performance.now() < sliceEnd);
  }
}

async function upcalls(): Promise<void> {
  for (;;) {
    // Read the bell before scanning: a ring that lands during the scan changes it, so the wait
    // below returns at once instead of losing that upcall.
    const v = Atomics.load(bell, 0);
    // A paused domain's kernel acknowledges the pause and takes nothing until unpaused.
    for (const kernel of scan) kernel.takeUpcalls();
    if (spinMs > 0) {
      // Let the scan's promise chains run first: what they send may be answered while polling.
      if ((await idlePoll(v)) !== v) {
        counters[KernelCounter.polled]++;
        continue;
      }
    }
    const w = Atomics.waitAsync(bell, 0, v);
    if (w.async) {
      counters[KernelCounter.sleeps]++;
      await w.value;
      lastTurn = performance.now();
    }
  }
}
void upcalls();
