// The guest kernel as the host assembler hands it to the hypervisor's vCPU runners (their
// KernelImage): the entry modules of a vCPU thread and of a pool thread, and the inline kernel.
// The hypervisor itself knows only the boot record (hypervisor/public/vcpu.ts).
import { inlineKernel } from './inline.ts';

/** Worker entries run from the sources (.ts, under tsx) or from the compiled tree (.js). */
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';

export const kernelImage = {
  worker: new URL(`./worker${EXT}`, import.meta.url),
  poolWorker: new URL(`./pool-worker${EXT}`, import.meta.url),
  inline: inlineKernel,
} as const;
