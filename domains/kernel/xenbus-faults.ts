// xenbus's fault knob: shared rings that start near the 32-bit index wrap instead of at 0, so a
// driver that assumes fresh indexes are small is caught.
import { declareFault } from '../../sim/scenario/fault-registry.ts';

declare module '../../sim/scenario/fault-registry.ts' {
  interface FaultRanges {
    /** Shared rings start at a random index (near the 2^32 wrap) instead of 0. */
    ringStart: boolean;
  }
}

export const RING_START = declareFault<boolean, number>({
  name: 'ringStart',
  owner: 'kernel xenbus (guests)',
  description: 'new shared rings start just below the 2^32 index wrap instead of at 0',
  defaultRange: true,
  draw: (_r, rng) => (0xffffffff - rng.below(64)) >>> 0,
  describe: (v) => `ring start 0x${v.toString(16)}`,
  guest: (v) => ({ quirks: { xenbus: { ringStart: v } } }),
});
