// A vCPU thread shared by many domains (packing, like vCPUs on pCPUs): it hosts one kernel per
// domain behind the same Kernel API and runs them all under one vCPU run loop (run-loop.ts) that
// sleeps on the thread's doorbell and, on each ring, scans its domains' shared_info pages for
// pending upcalls - one wake-up serves every domain that got an event meanwhile.
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { HypercallClient } from '../../hypervisor/public/hypercall_page.ts';
import { KERNEL_COUNTERS, type PoolCommand, type PoolWorkerData } from '../../hypervisor/public/vcpu.ts';
import { Kernel } from './kernel.ts';
import { loadWhenRunnable } from './program.ts';
import { Doorbell, RunLoop } from './run-loop.ts';

const data = workerData as PoolWorkerData;
const hc = new HypercallClient(data.hypercallPage, data.port);
const counters = new Float64Array(data.counters ?? new ArrayBuffer(KERNEL_COUNTERS * 8));
const loop = new RunLoop(new Doorbell(data.doorbell), undefined, data.spin ?? 0, counters);
const kernels = new Map<number, { kernel: Kernel; control: MessagePort; entered: boolean }>();
/** The loop scans the kernels whose program has been entered (the list is rebuilt on change). */
const rescan = (): void => {
  loop.serve([...kernels.values()].filter((e) => e.entered).map((e) => e.kernel));
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
  const entry = await loadWhenRunnable(kernel, m.boot.program);
  if (!entry) return undefined;
  kernel.start();
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

void loop.run();
