// The domain's program (its "kernel image"): a module exporting main(kernel, args, control). Every
// runner - a thread of its own, a pool thread, inline - loads and enters it the same way.
import type { ControlPort, DomainProgram } from '../../hypervisor/public/vcpu.ts';
import type { Kernel } from './kernel.ts';

export type ProgramEntry = (kernel: Kernel, args: unknown, control: ControlPort) => unknown;

/** The program's entry point (main unless it names another). */
export async function loadProgram(program: DomainProgram): Promise<ProgramEntry> {
  const mod = (await import(program.module)) as Record<string, unknown>;
  const name = program.entry ?? 'main';
  const entry = mod[name];
  if (typeof entry !== 'function') throw new Error(`${program.module} has no ${name}()`);
  return entry as ProgramEntry;
}
