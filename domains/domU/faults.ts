// The guest's fault knob: its suspend handler answers control/shutdown late, as a busy guest does.
import { declareFault } from '../../sim/scenario/fault-registry.ts';

declare module '../../sim/scenario/fault-registry.ts' {
  interface FaultRanges {
    /** A guest answers a suspend request after up to this long (ns). */
    suspendAckDelayNs: readonly [number, number];
  }
}

export const SUSPEND_ACK_DELAY = declareFault<readonly [number, number], number>({
  name: 'suspendAckDelayNs',
  owner: 'guest (manage: control/shutdown)',
  description: 'the guest acknowledges a suspend request late',
  defaultRange: [0, 5e6],
  draw: (r, rng) => Math.round(rng.between(r)),
  describe: (v) => `suspend ack delay ${(v / 1e6).toFixed(3)}ms`,
  guest: (v) => ({ quirks: { manage: { suspendAckDelayNs: v } } }),
});
