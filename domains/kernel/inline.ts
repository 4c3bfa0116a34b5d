// A kernel on the hypervisor's own thread (inline lockstep): booted from the same record as a
// vCPU thread's, entered the same way, and run one lockstep slice at a time by the caller.
import type { ControlPort, WorkerBoot } from '../../hypervisor/public/vcpu.ts';
import type { HypercallPort } from '../../hypervisor/public/hypercall_page.ts';
import { Kernel } from './kernel.ts';
import { loadProgram } from './program.ts';

export interface InlineGuest {
  run(deliverMail: () => boolean): Promise<number>;
  stop(): void;
}

/**
 * The kernel for `boot`; its program is loaded and entered on its first run. A program that
 * throws (at once or later) is reported through `crashed`.
 */
export function inlineKernel(boot: WorkerBoot, hc: HypercallPort, control: ControlPort, crashed: (e: unknown) => void): InlineGuest {
  const kernel = new Kernel(boot, hc);
  kernel.traceSink = (ev) => control.postMessage({ cmd: 'trace', ev });
  let started = false;
  return {
    async run(deliverMail) {
      if (!started) {
        started = true;
        kernel.start();
        const entry = await loadProgram(boot.program);
        // The program runs until its first wait; its later steps run in the slices below.
        Promise.resolve(entry(kernel, boot.program.args, control)).catch(crashed);
      }
      return kernel.runSlice(deliverMail);
    },
    stop: () => kernel.stop(),
  };
}
