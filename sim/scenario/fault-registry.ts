// The registry of fault kinds. A component that can misbehave on purpose declares its own knobs
// (next to its code, e.g. domains/dom0/xenstored/faults.ts) and adds them here; the scenario
// runner only knows kinds by name: how to draw one from a seed, how to say it, and which
// component options or host hooks it sets. A scenario file may declare kinds of its own too.
import type { Dom0Args } from '../../domains/dom0/dom0.ts';
import type { GuestArgs } from '../../domains/domU/guest.ts';
import type { Prng } from '../../domains/kernel/kernel.ts';
import type { EventChannels } from '../../hypervisor/event-channel.ts';

/**
 * Fault kind name -> the range a scenario gives it. Components add their kinds by declaration
 * merging (`declare module '.../fault-registry.ts' { interface FaultRanges { ... } }`), so a
 * scenario's `faults` is type-checked against every declared kind.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- filled by declaration merging
export interface FaultRanges {}

/** What a scenario allows to vary, and how much: each declared kind is off unless given. */
export type FaultSpace = { readonly [K in keyof FaultRanges]?: FaultRanges[K] };

/** The faults one seed drew: kind name -> drawn value (JSON, printed in traces and reports). */
export type Faults = { readonly [kind: string]: unknown };

/** What a fault can reach when a run starts. */
export interface FaultHost {
  readonly evtchn: EventChannels;
  readonly seed: number;
  /** Lockstep: the host's stall hook (HostRuntime.stall): which runnable domain to deschedule, how long. */
  stall?: ((runnable: readonly number[]) => { readonly domid: number; readonly ns: number } | undefined) | undefined;
}

export interface FaultKind<Range = unknown, Drawn = unknown> {
  /** The name on the command line (`--faults jitter,spuriousEagain`) and in a scenario's `faults`. */
  readonly name: string;
  /** The component that owns the knob (for `xensim faults`). */
  readonly owner: string;
  /** One line: what goes wrong. */
  readonly description: string;
  /** Something real Xen never does (lost notifications): only on when named, never by `all`. */
  readonly outsideXen?: boolean;
  /** The range `--faults all` (or a list naming the kind) uses where the scenario gives none. */
  readonly defaultRange: Range;
  /** Draws this seed's value: from the run's fault stream, in registry order. */
  draw(range: Range, rng: FaultRng): Drawn;
  describe(value: Drawn): string;
  /** Options for dom0's components. */
  dom0?(value: Drawn, host: FaultHost): Dom0Args;
  /** Options for every guest's kernel and drivers. */
  guest?(value: Drawn): GuestArgs;
  /**
   * A hook in the simulated host, given every drawn fault; kinds that share one hook (the same
   * function) have it installed once.
   */
  readonly host?: (host: FaultHost, faults: Faults) => void;
}

/** The run's fault stream, with the helpers every kind needs. */
export class FaultRng {
  constructor(readonly prng: Prng) {}
  /** Uniform in [lo, hi). */
  between([lo, hi]: readonly [number, number]): number {
    return lo + (this.prng.u32() / 0x1_0000_0000) * (hi - lo);
  }
  below(n: number): number {
    return this.prng.below(n);
  }
}

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * One registry per process, even if a user's scenario reaches this module through another path
 * (its `xensim/scenario` import resolving to a second copy): the map hangs off a global symbol.
 */
const REGISTRY = Symbol.for('xensim.fault-kinds');
const KINDS: Map<string, FaultKind> = ((globalThis as { [REGISTRY]?: Map<string, FaultKind> })[REGISTRY] ??= new Map());

/** A component adds its fault kind. Names are unique; redeclaring one is a bug. */
export function declareFault<Range, Drawn>(kind: FaultKind<Range, Drawn>): FaultKind<Range, Drawn> {
  if (!/^[a-z][A-Za-z0-9-]*$/.test(kind.name)) throw new Error(`fault kind "${kind.name}": not a plain name`);
  const prev = KINDS.get(kind.name);
  if (prev && prev.owner !== kind.owner) throw new Error(`fault kind "${kind.name}" declared twice (${prev.owner}, ${kind.owner})`);
  // The same owner again is its module evaluated a second time (a second loader in one process,
  // as under mocha with tsx): the first declaration stays, so draws keep their order.
  if (prev) return prev as FaultKind<Range, Drawn>;
  KINDS.set(kind.name, kind as FaultKind);
  return kind;
}

/** Every declared kind, in declaration order (the order seeds draw them in). */
export function faultKinds(): readonly FaultKind[] {
  return [...KINDS.values()];
}

export function faultKind(name: string): FaultKind | undefined {
  return KINDS.get(name);
}
