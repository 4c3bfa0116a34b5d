// A domain's vCPU thread: boots the kernel from what the hypervisor handed over, then runs the
// domain's program (the "kernel image": a module exporting main(kernel, args)) under the vCPU
// run loop - free-running on its own upcall word, or lockstep on the scheduler's run token.
import { parentPort, workerData } from 'node:worker_threads';
import type { WorkerBoot } from '../../hypervisor/public/vcpu.ts';
import { Kernel } from './kernel.ts';
import { loadWhenRunnable } from './program.ts';
import { RunLoop, runLockstep, UpcallWord } from './run-loop.ts';

const boot = workerData as WorkerBoot;
const kernel = new Kernel(boot);
kernel.traceSink = (ev) => parentPort!.postMessage({ cmd: 'trace', ev });
// The control port keeps this thread alive while the domain exists (a pending waitAsync does not).
parentPort!.on('message', (m: { cmd: string }) => {
  if (m.cmd === 'halt') {
    kernel.stop();
    parentPort!.close();
  }
});
const entry = await loadWhenRunnable(kernel, boot.program);
if (entry) {
  kernel.start();
  if (kernel.mode === 'lockstep') {
    let yields = 0;
    void runLockstep(kernel, () => parentPort!.postMessage({ cmd: 'yielded', seq: ++yields }));
  } else {
    void new RunLoop(new UpcallWord(boot.sharedInfo), kernel, boot.spin ?? 0, kernel.counters).run();
  }
  await entry(kernel, boot.program.args, parentPort!);
}
