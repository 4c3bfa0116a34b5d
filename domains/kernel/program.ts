// The domain's program (its "kernel image"): a module exporting main(kernel, args, control). Every
// runner - a thread of its own, a pool thread, inline - loads and enters it the same way.
import type { ControlPort, DomainProgram } from '../../hypervisor/public/vcpu.ts';
import type { Kernel } from './kernel.ts';

export type ProgramEntry = (kernel: Kernel, args: unknown, control: ControlPort) => unknown;

/**
 * Modules this thread loaded. An import() of a loaded module still goes through the module loader
 * (off this thread under a loader hook) and resolves after real time: inline lockstep hosts sharing
 * this thread would interleave differently from run to run. A cached one resolves in microtasks.
 */
const modules = new Map<string, Promise<Record<string, unknown>>>();

/** The program's entry point (main unless it names another). */
export async function loadProgram(program: DomainProgram): Promise<ProgramEntry> {
  let loading = modules.get(program.module);
  if (!loading) modules.set(program.module, (loading = import(program.module) as Promise<Record<string, unknown>>));
  const mod = await loading;
  const name = program.entry ?? 'main';
  const entry = mod[name];
  if (typeof entry !== 'function') throw new Error(`${program.module} has no ${name}()`);
  return entry as ProgramEntry;
}

/**
 * The program's entry point once the vCPU may run: a domain created paused waits at its gate
 * before its first instruction, and a pause during the load is honoured before entering. Undefined
 * if the kernel halted meanwhile.
 */
export async function loadWhenRunnable(kernel: Kernel, program: DomainProgram): Promise<ProgramEntry | undefined> {
  if (!(await kernel.unpaused())) return undefined;
  const entry = await loadProgram(program);
  if (kernel.paused() && !(await kernel.unpaused())) return undefined;
  return entry;
}
