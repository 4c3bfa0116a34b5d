// The kernel's fault knobs: tasks descheduled at preemption points, and shared rings that start
// near the 32-bit wrap instead of at 0 (xenbus drivers must not assume either away).
import { declareFault, type FaultRng, round } from '../../sim/scenario/fault-registry.ts';

interface JitterRange { readonly p: readonly [number, number]; readonly maxNs: number }
interface Jitter { readonly p: number; readonly maxNs: number }

declare module '../../sim/scenario/fault-registry.ts' {
  interface FaultRanges {
    /** Tasks descheduled at preemption points (watch delivery, toolstack requests): chance, max ns. */
    jitter: JitterRange;
    /** Shared rings start at a random index (near the 2^32 wrap) instead of 0. */
    ringStart: boolean;
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

export const RING_START = declareFault<boolean, number>({
  name: 'ringStart',
  owner: 'kernel xenbus (guests)',
  description: 'new shared rings start just below the 2^32 index wrap instead of at 0',
  defaultRange: true,
  draw: (_r, rng) => (0xffffffff - rng.below(64)) >>> 0,
  describe: (v) => `ring start 0x${v.toString(16)}`,
  guest: (v) => ({ quirks: { xenbus: { ringStart: v } } }),
});
