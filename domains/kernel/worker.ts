// A domain's vCPU thread: boots the kernel from what the hypervisor handed over, then runs the
// domain's program (the "kernel image": a module exporting main(kernel, args)).
import { parentPort, workerData } from 'node:worker_threads';
import type { WorkerBoot } from '../../hypervisor/public/vcpu.ts';
import { Kernel } from './kernel.ts';
import { loadProgram } from './program.ts';

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
const entry = await loadProgram(boot.program);
kernel.start();
await entry(kernel, boot.program.args, parentPort!);
