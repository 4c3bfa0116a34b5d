// A domain's vCPU thread: boots the kernel from what the hypervisor handed over, then runs the
// domain's program (the "kernel image": a module exporting main(kernel, args)).
import { parentPort, workerData } from 'node:worker_threads';
import { Kernel, type KernelBoot } from './kernel.ts';

export interface DomainProgram {
  /** Module URL (file:) exporting the entry point. */
  readonly module: string;
  readonly entry?: string;
  readonly args?: unknown;
}

export interface WorkerBoot extends KernelBoot {
  readonly program: DomainProgram;
}

const boot = workerData as WorkerBoot;
const kernel = new Kernel(boot);
kernel.traceSink = (ev) => parentPort!.postMessage({ cmd: 'trace', ev });
let yields = 0;
kernel.beforeYield = () => parentPort!.postMessage({ cmd: 'yielded', seq: ++yields });
// The control port keeps this thread alive while the domain exists (a pending waitAsync does not).
parentPort!.on('message', (m: { cmd: string }) => {
  if (m.cmd === 'halt') {
    kernel.stop();
    parentPort!.close();
  }
});
const mod = (await import(boot.program.module)) as Record<string, (k: Kernel, args: unknown, control: typeof parentPort) => unknown>;
const entry = mod[boot.program.entry ?? 'main'];
if (typeof entry !== 'function') throw new Error(`${boot.program.module} has no ${boot.program.entry ?? 'main'}()`);
kernel.start();
await entry(kernel, boot.program.args, parentPort);
