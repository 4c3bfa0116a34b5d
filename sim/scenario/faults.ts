// Fault knobs, sampled per seed and printed at the start of a run: the same seed always draws
// the same faults, so a failing seed replays with them.
import { Prng } from '../../domains/kernel/kernel.ts';

/** What a scenario allows to vary, and how much. Each field is off unless given. */
export interface FaultSpace {
  /** Tasks descheduled at preemption points (watch delivery, toolstack requests): chance, max ns. */
  readonly jitter?: { readonly p: readonly [number, number]; readonly maxNs: number };
  /** Fraction of committing transactions failed with a spurious EAGAIN. */
  readonly spuriousEagain?: readonly [number, number];
  /** Hotplug scripts take up to this long (ns). */
  readonly hotplugDelayNs?: readonly [number, number];
  /** Shared rings start at a random index (near the 2^32 wrap) instead of 0. */
  readonly ringStart?: boolean;
  /** A guest answers a suspend request after up to this long (ns). */
  readonly suspendAckDelayNs?: readonly [number, number];
  /** Interdomain event-channel notifications held back (late, reordered): chance, max ns. */
  readonly notifyHold?: { readonly p: readonly [number, number]; readonly maxNs: number };
  /** Interdomain notifications lost (Xen never does this; for showing what a hang looks like). */
  readonly notifyDrop?: readonly [number, number];
}

/** The faults one seed drew. */
export interface Faults {
  readonly jitter?: { readonly p: number; readonly maxNs: number };
  readonly spuriousEagain?: number;
  readonly hotplugDelayNs?: number;
  readonly ringStart?: number;
  readonly suspendAckDelayNs?: number;
  readonly notifyHold?: { readonly p: number; readonly maxNs: number };
  readonly notifyDrop?: number;
}

const FAULT_SALT = 0xfa017;

export function sampleFaults(space: FaultSpace | undefined, seed: number): Faults {
  if (!space) return {};
  const rng = new Prng((seed ^ FAULT_SALT) >>> 0);
  const between = ([lo, hi]: readonly [number, number]): number => lo + (rng.u32() / 0x1_0000_0000) * (hi - lo);
  const out: { -readonly [K in keyof Faults]: Faults[K] } = {};
  if (space.jitter) out.jitter = { p: round(between(space.jitter.p), 3), maxNs: space.jitter.maxNs };
  if (space.spuriousEagain) out.spuriousEagain = round(between(space.spuriousEagain), 3);
  if (space.hotplugDelayNs) out.hotplugDelayNs = Math.round(between(space.hotplugDelayNs));
  if (space.ringStart) out.ringStart = (0xffffffff - rng.below(64)) >>> 0;
  if (space.suspendAckDelayNs) out.suspendAckDelayNs = Math.round(between(space.suspendAckDelayNs));
  if (space.notifyHold) out.notifyHold = { p: round(between(space.notifyHold.p), 3), maxNs: space.notifyHold.maxNs };
  if (space.notifyDrop) out.notifyDrop = round(between(space.notifyDrop), 4);
  return out;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** One line for the start of a run: `faults: jitter p=0.31 max=2ms, eagain 0.05`. */
export function describeFaults(f: Faults): string {
  const parts: string[] = [];
  if (f.jitter) parts.push(`jitter p=${f.jitter.p} max=${f.jitter.maxNs / 1e6}ms`);
  if (f.spuriousEagain !== undefined) parts.push(`spurious EAGAIN ${f.spuriousEagain}`);
  if (f.hotplugDelayNs !== undefined) parts.push(`hotplug delay ${(f.hotplugDelayNs / 1e6).toFixed(3)}ms`);
  if (f.ringStart !== undefined) parts.push(`ring start 0x${f.ringStart.toString(16)}`);
  if (f.suspendAckDelayNs !== undefined) parts.push(`suspend ack delay ${(f.suspendAckDelayNs / 1e6).toFixed(3)}ms`);
  if (f.notifyHold) parts.push(`notifications held p=${f.notifyHold.p} max=${f.notifyHold.maxNs / 1e6}ms`);
  if (f.notifyDrop !== undefined) parts.push(`notifications dropped ${f.notifyDrop}`);
  return parts.length ? parts.join(', ') : 'none';
}
