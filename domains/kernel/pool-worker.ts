// A vCPU thread shared by many domains (packing, like vCPUs on pCPUs): it hosts one kernel per
// domain behind the same Kernel API, sleeps on one doorbell word, and on each ring scans its
// domains' shared_info pages for pending upcalls.
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { HypercallClient } from '../../hypervisor/hypercall-channel.ts';
import { Kernel } from './kernel.ts';
import type { WorkerBoot } from './worker.ts';

export interface PoolWorkerData {
  readonly hypercallPage: SharedArrayBuffer;
  readonly port: MessagePort;
  /** i32 word the hypervisor increments and notifies when one of our domains gets an upcall. */
  readonly doorbell: SharedArrayBuffer;
}

export type PoolCommand =
  | { cmd: 'boot'; boot: WorkerBoot; control: MessagePort }
  | { cmd: 'halt'; domid: number };

const data = workerData as PoolWorkerData;
const hc = new HypercallClient(data.hypercallPage, data.port);
const bell = new Int32Array(data.doorbell);
const kernels = new Map<number, { kernel: Kernel; control: MessagePort }>();

parentPort!.on('message', (m: PoolCommand) => {
  if (m.cmd === 'halt') {
    const k = kernels.get(m.domid);
    kernels.delete(m.domid);
    k?.control.close();
    return;
  }
  const kernel = new Kernel(m.boot, hc);
  kernels.set(kernel.domid, { kernel, control: m.control });
  kernel.traceSink = (ev) => m.control.postMessage({ cmd: 'trace', ev });
  void import(m.boot.program.module).then((mod: Record<string, (k: Kernel, a: unknown, c: MessagePort) => unknown>) => {
    const entry = mod[m.boot.program.entry ?? 'main'];
    const running = entry(kernel, m.boot.program.args, m.control);
    // Upcalls raised before this kernel existed rang the bell when nobody could take them, and
    // no new edge comes while upcall_pending stays set: take them now the handlers are bound.
    kernel.handleEvents();
    return running;
  });
});

async function upcalls(): Promise<void> {
  for (;;) {
    // Read the bell before scanning: a ring that lands during the scan changes it, so the wait
    // below returns at once instead of losing that upcall.
    const v = Atomics.load(bell, 0);
    for (const { kernel } of kernels.values()) kernel.handleEvents();
    const w = Atomics.waitAsync(bell, 0, v);
    if (w.async) await w.value;
  }
}
void upcalls();
