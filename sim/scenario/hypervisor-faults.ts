// The hypervisor model's fault knobs on interdomain event-channel notifications (declared on the
// simulator's side: hypervisor/ knows nothing of scenarios): held back (late,
// reordered), or lost - which Xen never does; that one is for showing what a hang looks like.
import { Prng } from '../../domains/kernel/kernel.ts';
import { declareFault, type FaultHost, type Faults, round } from './fault-registry.ts';

interface HoldRange { readonly p: readonly [number, number]; readonly maxNs: number }
interface Hold { readonly p: number; readonly maxNs: number }

declare module './fault-registry.ts' {
  interface FaultRanges {
    /** Interdomain event-channel notifications held back (late, reordered): chance, max ns. */
    notifyHold: HoldRange;
    /** Interdomain notifications lost (Xen never does this; for showing what a hang looks like). */
    notifyDrop: readonly [number, number];
    /** A vCPU descheduled by Xen's scheduler: chance per step, max ns off the CPU. */
    vcpuStall: HoldRange;
  }
}

/** One hook for both kinds: their draws come from their own stream, so the scheduler's stays put. */
function notifyFaults(host: FaultHost, faults: Faults): void {
  const hold = faults.notifyHold as Hold | undefined;
  const drop = faults.notifyDrop as number | undefined;
  const rng = new Prng((host.seed ^ 0xe7c4a) >>> 0);
  const roll = (): number => rng.u32() / 0x1_0000_0000;
  host.evtchn.notifyFault = () => {
    if (drop && roll() < drop) return 'drop';
    if (hold && roll() < hold.p) return { delayNs: 1 + rng.below(hold.maxNs) };
    return 'deliver';
  };
}

export const NOTIFY_HOLD = declareFault<HoldRange, Hold>({
  name: 'notifyHold',
  owner: 'hypervisor (event channels)',
  description: 'an interdomain EVTCHNOP_send is delivered late',
  defaultRange: { p: [0, 0.2], maxNs: 1e6 },
  draw: (r, rng) => ({ p: round(rng.between(r.p), 3), maxNs: r.maxNs }),
  describe: (v) => `notifications held p=${v.p} max=${v.maxNs / 1e6}ms`,
  host: notifyFaults,
});

export const NOTIFY_DROP = declareFault<readonly [number, number], number>({
  name: 'notifyDrop',
  owner: 'hypervisor (event channels)',
  description: 'an interdomain notification is lost (never in real Xen: a hang on purpose)',
  outsideXen: true,
  defaultRange: [0, 0.05],
  draw: (r, rng) => round(rng.between(r), 4),
  describe: (v) => `notifications dropped ${v}`,
  host: notifyFaults,
});

export const VCPU_STALL = declareFault<HoldRange, Hold>({
  name: 'vcpuStall',
  owner: 'hypervisor (scheduler)',
  description: 'a runnable vCPU is descheduled for a while (another domain, or dom0, gets the CPU first)',
  defaultRange: { p: [0, 0.02], maxNs: 2e6 },
  draw: (r, rng) => ({ p: round(rng.between(r.p), 4), maxNs: r.maxNs }),
  describe: (v) => `vCPU stalls p=${v.p} max=${v.maxNs / 1e6}ms`,
  host: (host, faults) => {
    const v = faults.vcpuStall as Hold;
    const rng = new Prng((host.seed ^ 0x57a11) >>> 0);
    host.stall = (runnable) => {
      if (v.p <= 0 || rng.u32() / 0x1_0000_0000 >= v.p) return undefined;
      return { domid: runnable[rng.below(runnable.length)], ns: 1 + rng.below(v.maxNs) };
    };
  },
});
