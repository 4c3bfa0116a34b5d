// The toolstack's fault knob: hotplug scripts that take their time, so a backend waits for
// hotplug-status longer than the happy path suggests.
import { declareFault } from '../../../sim/scenario/fault-registry.ts';

declare module '../../../sim/scenario/fault-registry.ts' {
  interface FaultRanges {
    /** Hotplug scripts take up to this long (ns). */
    hotplugDelayNs: readonly [number, number];
  }
}

export const HOTPLUG_DELAY = declareFault<readonly [number, number], number>({
  name: 'hotplugDelayNs',
  owner: 'toolstack (hotplug scripts)',
  description: 'a hotplug script (block, vif-bridge) runs late',
  defaultRange: [0, 5e6],
  draw: (r, rng) => Math.round(rng.between(r)),
  describe: (v) => `hotplug delay ${(v / 1e6).toFixed(3)}ms`,
  dom0: (v) => ({ quirks: { toolstack: { hotplugDelayNs: v } } }),
});
