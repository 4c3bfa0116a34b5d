// The typed scenario API. A scenario names its roles, runs steps (toolstack verbs, guest actions,
// waits on xenstore conditions, faults), has invariants checked after every step, and ends with
// expectations. Planted races ship a buggy variant next to the fixed one: each variant is a set
// of named component options, so the replay line says exactly which knob was on.
import type { Dom0Args } from '../../domains/dom0/dom0.ts';
import type { DomainConfig } from '../../domains/dom0/toolstack/config.ts';
import type { GuestArgs } from '../../domains/domU/guest.ts';
import type { FaultSpace } from './faults.ts';
import type { ScenarioRun } from './run.ts';

/** A bug that really happened, that a planted-race scenario reproduces. */
export interface RaceRef {
  /** The catalogue id (R01... in spec/known-races.md), or any id of the scenario author's own. */
  readonly id: string;
  readonly name: string;
  /** Where it was found and fixed (commits, XSAs). */
  readonly source: string;
}

/** Component options for one variant: dom0's (xenstored, backends, toolstack) and the guests'. */
export interface VariantDef {
  readonly description: string;
  readonly dom0?: Dom0Args;
  readonly guest?: GuestArgs;
  /**
   * The scenario's own knobs, read by its own steps (`s.knob('skipRecheck')`): a race in code
   * the scenario itself plays (a toolstack step, a guest user process) needs no xensim option.
   */
  readonly knobs?: Readonly<Record<string, string | number | boolean>>;
}

export interface ScenarioDef {
  /** Kebab-case name used on the command line. */
  readonly name: string;
  /** One line: what the scenario shows. */
  readonly title: string;
  readonly tags?: readonly string[];
  readonly race?: RaceRef;
  /** `fixed` (default) and, for planted races, `buggy`. */
  readonly variants?: Readonly<Record<string, VariantDef>>;
  /** The faults this scenario samples per seed. */
  readonly faults?: FaultSpace;
  /** What a swarm expects of the variant: 'pass' on every seed, or 'fail' on some seed. */
  readonly expect?: Readonly<Record<string, 'pass' | 'fail'>>;
  /**
   * Last-resort wall-clock hang guard for one run (ms, default 10 minutes; livelocks and deadlocks
   * are caught sooner by other means); virtual-time deadlines live in the scenario's waits.
   */
  readonly timeoutMs?: number;
  run(s: ScenarioRun): Promise<void>;
}

export function defineScenario(def: ScenarioDef): ScenarioDef {
  return def;
}

/**
 * A guest config with sensible defaults for scenarios. No `memory`: the guest gets the few pages
 * its kernel uses (guestPages() in xl.ts), not xl's 128 MiB default - a scenario that needs real
 * memory says how much.
 */
export function guestConfig(name: string, extra: Partial<DomainConfig> = {}): DomainConfig {
  return { name, vcpus: 1, type: 'pv', ...extra };
}

/**
 * Thrown by expectations and invariants: the system under test misbehaved (FAILURE). Told apart
 * by name too, so a scenario holding a second copy of this module is still judged right.
 */
export class ScenarioFailure extends Error {
  override name = 'ScenarioFailure';
}

/** Thrown to skip a scenario in an environment that cannot run it (SKIP). */
export class ScenarioSkip extends Error {
  override name = 'ScenarioSkip';
}
