// xenstored's fault knob: committing transactions fail with EAGAIN as if another client had
// touched what they read, which every transaction user must retry.
import { declareFault, round } from '../../../sim/scenario/fault-registry.ts';

declare module '../../../sim/scenario/fault-registry.ts' {
  interface FaultRanges {
    /** Fraction of committing transactions failed with a spurious EAGAIN. */
    spuriousEagain: readonly [number, number];
  }
}

export const SPURIOUS_EAGAIN = declareFault<readonly [number, number], number>({
  name: 'spuriousEagain',
  owner: 'xenstored',
  description: 'a committing TRANSACTION_END fails with EAGAIN (a conflict that did not happen)',
  defaultRange: [0.02, 0.2],
  draw: (r, rng) => round(rng.between(r), 3),
  describe: (v) => `spurious EAGAIN ${v}`,
  dom0: (v, host) => ({ xenstored: { seed: host.seed, spuriousEagain: v } }),
});
