// The kernel's fault knob: tasks descheduled at preemption points (watch delivery, toolstack
// requests), so what runs next is not always what ran first on the happy path.
import { declareFault, type FaultRng, round } from '../../sim/scenario/fault-registry.ts';

interface JitterRange { readonly p: readonly [number, number]; readonly maxNs: number }
interface Jitter { readonly p: number; readonly maxNs: number }

declare module '../../sim/scenario/fault-registry.ts' {
  interface FaultRanges {
    /** Tasks descheduled at preemption points (watch delivery, toolstack requests): chance, max ns. */
    jitter: JitterRange;
  }
}

export const JITTER = declareFault<JitterRange, Jitter>({
  name: 'jitter',
  owner: 'kernel (every domain)',
  description: 'a task is descheduled at a preemption point for a while (Kernel.preempt)',
  defaultRange: { p: [0, 0.3], maxNs: 2e6 },
  draw: (r, rng: FaultRng) => ({ p: round(rng.between(r.p), 3), maxNs: r.maxNs }),
  describe: (v) => `jitter p=${v.p} max=${v.maxNs / 1e6}ms`,
  dom0: (v) => ({ jitter: v }),
  guest: (v) => ({ jitter: v }),
});
