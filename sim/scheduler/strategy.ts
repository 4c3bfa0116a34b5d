// How the lockstep scheduler picks what runs next. At every step the host lists what could run -
// each runnable domain's interrupts (an upcall, a due timer, mail: task 0) and each task its
// kernel has parked at a preemption point - and a strategy picks one. The choices made are
// recorded, so a run can be replayed choice for choice, counted for preemptions, searched
// exhaustively and shrunk.
import { Prng } from '../../domains/kernel/kernel.ts';

/** Something that may run now: domain `domid`'s interrupts (task 0) or one of its parked tasks. */
export interface SchedItem {
  readonly domid: number;
  readonly task: number;
}

export const itemKey = (i: SchedItem): string => `${i.domid}:${i.task}`;

export interface ScheduleStrategy {
  /** What the replay line says (`random`, `pct:3`, `replay:...`). */
  readonly spec: string;
  /** Index into `items` (never empty, in a fixed order: by domid, interrupts first, then tasks oldest first). */
  pick(items: readonly SchedItem[]): number;
}

/**
 * The default choice when nothing forces another: the item that ran last if it can go on (no
 * preemption), else the first. A run of only default choices preempts nobody.
 */
export function defaultChoice(items: readonly SchedItem[], last: SchedItem | undefined): number {
  if (last) {
    const i = items.findIndex((x) => x.domid === last.domid && x.task === last.task);
    if (i >= 0) return i;
  }
  return 0;
}

/** What a run chose at each step, with how many items it chose from. */
export class ScheduleRecord {
  readonly choices: number[] = [];
  readonly widths: number[] = [];
  /** Steps where the choice was not the default one (preempting what ran last, or skipping the first). */
  readonly preemptions: number[] = [];
  /**
   * Of the `preemptions` (every step that did not take the default, which a replay must force),
   * those that took the CPU from a task that could have gone on - preemptions as CHESS counts
   * them; the others chose among tasks after the last one blocked.
   */
  switches = 0;
  /** What ran at each preemption (parallel to `preemptions`). */
  readonly preemptedTo: SchedItem[] = [];
  private last: SchedItem | undefined;

  /**
   * Records step's choice `i` among `items`: 'default', or off the default - a 'switch' if it took
   * the CPU from what ran last (CHESS's preemption), else a 'choice' among tasks after it blocked.
   */
  note(items: readonly SchedItem[], i: number): 'default' | 'switch' | 'choice' {
    const step = this.choices.length;
    let kind: 'default' | 'switch' | 'choice' = 'default';
    if (items.length > 1 && i !== defaultChoice(items, this.last)) {
      this.preemptions.push(step);
      this.preemptedTo.push(items[i]);
      const last = this.last;
      kind = last && items.some((x) => x.domid === last.domid && x.task === last.task) ? 'switch' : 'choice';
      if (kind === 'switch') this.switches++;
    }
    this.choices.push(i);
    this.widths.push(items.length);
    this.last = items[i];
    return kind;
  }

  get steps(): number {
    return this.choices.length;
  }

  /** The last item chosen (for the default policy). */
  get lastItem(): SchedItem | undefined {
    return this.last;
  }
}

/** Today's seeded walk: every step, uniformly among everything that may run. */
export class RandomStrategy implements ScheduleStrategy {
  readonly spec = 'random';
  private readonly rng: Prng;

  constructor(seed: number) {
    this.rng = new Prng((seed ^ 0x5eed) >>> 0);
  }

  pick(items: readonly SchedItem[]): number {
    return items.length === 1 ? 0 : this.rng.below(items.length);
  }
}

/**
 * PCT (Burckhardt, Kothari, Musuvathi, Nagarakatte, ASPLOS 2010): each task gets a random
 * priority when first seen, the highest-priority item runs, and at D-1 steps drawn from [1, K]
 * the item that runs drops below every initial priority. A bug of depth D is found with
 * probability at least 1/(n K^(D-1)) per run, n tasks and K steps.
 */
export class PctStrategy implements ScheduleStrategy {
  readonly spec: string;
  private readonly rng: Prng;
  private readonly prio = new Map<string, number>();
  private readonly changeAt = new Map<number, number>();
  private step = 0;

  constructor(seed: number, readonly depth: number, readonly steps: number) {
    if (!Number.isInteger(depth) || depth < 1) throw new RangeError(`pct depth must be a whole number >= 1, not ${depth}`);
    if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`pct steps must be a whole number >= 1, not ${steps}`);
    this.spec = `pct:${depth}:${steps}`;
    this.rng = new Prng((seed ^ 0x9c7) >>> 0);
    // D-1 distinct change points; the i-th drops its item to priority i (below every initial one).
    for (let i = 1; i < depth && this.changeAt.size < steps; ) {
      const at = 1 + this.rng.below(steps);
      if (this.changeAt.has(at)) continue;
      this.changeAt.set(at, i++);
    }
  }

  private priority(item: SchedItem): number {
    const k = itemKey(item);
    let p = this.prio.get(k);
    if (p === undefined) {
      p = this.depth + this.rng.u32() / 0x1_0000_0000 + this.prio.size * 1e-12;
      this.prio.set(k, p);
    }
    return p;
  }

  pick(items: readonly SchedItem[]): number {
    this.step++;
    let best = 0;
    let bestP = -Infinity;
    items.forEach((it, i) => {
      const p = this.priority(it);
      if (p > bestP) {
        bestP = p;
        best = i;
      }
    });
    const drop = this.changeAt.get(this.step);
    if (drop !== undefined) this.prio.set(itemKey(items[best]), drop);
    return best;
  }
}

/**
 * Follows given choices (a replay, an exhaustive search's prefix, a shrink candidate), then the
 * default policy. A choice out of range (the run went another way) falls back to the default.
 */
export class ReplayStrategy implements ScheduleStrategy {
  readonly spec: string;
  private step = 0;
  private last: SchedItem | undefined;
  /** The first forced choice that was not possible: its step, the choice asked and how many could run. */
  divergedAt: { step: number; asked: number; ready: number } | undefined;

  /** Whether some forced choice was not possible where it was asked. */
  get diverged(): boolean {
    return this.divergedAt !== undefined;
  }

  constructor(readonly forced: readonly number[] | ReadonlyMap<number, number>, spec?: string) {
    this.spec = spec ?? `replay:${encodeChoices(forced)}`;
  }

  pick(items: readonly SchedItem[]): number {
    const s = this.step++;
    const f = this.forced instanceof Map ? this.forced.get(s) : (this.forced as readonly number[])[s];
    let i: number;
    if (f !== undefined && f < items.length) i = f;
    else {
      if (f !== undefined) this.divergedAt ??= { step: s, asked: f, ready: items.length };
      i = defaultChoice(items, this.last);
    }
    this.last = items[i];
    return i;
  }
}

/** A task named from a step on: `STEP.DOMID:TASK` in at:, raise: and lower: schedules. */
export interface TaskAnchor {
  readonly step: number;
  readonly domid: number;
  readonly task: number;
}

const sameTask = (x: SchedItem, f: { domid: number; task: number }): boolean => x.domid === f.domid && x.task === f.task;

/** `kind:STEP.DOMID:TASK,...` (or `kind:-`), anchors sorted by step. */
function anchorSpec(kind: string, anchors: readonly TaskAnchor[]): string {
  return `${kind}:${anchors.map((f) => `${f.step}.${f.domid}:${f.task}`).join(',') || '-'}`;
}

/**
 * Forced choices anchored to tasks rather than to indexes: "from step S on, the first time task
 * D:T is ready and is not the default, run it". Dropping one forced choice shifts the steps after
 * it; an anchored choice still finds its task, so shrinking can drop choices one by one.
 */
export class AnchoredStrategy implements ScheduleStrategy {
  readonly spec: string;
  private step = 0;
  private last: SchedItem | undefined;
  private readonly pending: TaskAnchor[];

  constructor(forced: readonly TaskAnchor[], readonly slack = 64) {
    this.pending = [...forced].sort((a, b) => a.step - b.step);
    this.spec = anchorSpec('at', this.pending);
  }

  pick(items: readonly SchedItem[]): number {
    const s = this.step++;
    const dflt = defaultChoice(items, this.last);
    let i = dflt;
    // Anchors whose window passed without their task ready are given up.
    while (this.pending.length && this.pending[0].step + this.slack < s) this.pending.shift();
    const f = this.pending[0];
    if (f && f.step <= s) {
      const j = items.findIndex((x) => sameTask(x, f));
      if (j >= 0 && j !== dflt) {
        i = j;
        this.pending.shift();
      }
    }
    this.last = items[i];
    return i;
  }
}

/**
 * Raised and lowered tasks: "from step S on, task D:T runs whenever it is ready" (raise:S.D:T; a
 * later raise outranks an earlier one) or "from step S on, task D:T runs only when nothing else
 * can" (lower:S.D:T); otherwise the default policy. One raise lets a task race ahead through many
 * steps, one lowering holds a task inside its critical section while the others go on - windows
 * that cost one forced step per message otherwise, but one preemption as CHESS counts them.
 * Shrinking uses them when forced steps cannot get small.
 */
export class PriorityStrategy implements ScheduleStrategy {
  readonly spec: string;
  private step = 0;
  private last: SchedItem | undefined;
  private readonly anchors: readonly TaskAnchor[];
  /** How many anchors have reached their step (they are sorted by step). */
  private active = 0;

  constructor(readonly kind: 'raise' | 'lower', anchors: readonly TaskAnchor[]) {
    this.anchors = [...anchors].sort((a, b) => a.step - b.step);
    this.spec = anchorSpec(kind, this.anchors);
  }

  pick(items: readonly SchedItem[]): number {
    const s = this.step++;
    while (this.active < this.anchors.length && this.anchors[this.active].step <= s) this.active++;
    const active = this.anchors.slice(0, this.active);
    let i = -1;
    if (this.kind === 'raise') {
      for (let r = active.length - 1; r >= 0 && i < 0; r--) i = items.findIndex((x) => sameTask(x, active[r]));
      if (i < 0) i = defaultChoice(items, this.last);
    } else {
      const rest = items.filter((x) => !active.some((f) => sameTask(x, f)));
      i = rest.length ? items.indexOf(rest[defaultChoice(rest, this.last)]) : defaultChoice(items, this.last);
    }
    this.last = items[i];
    return i;
  }
}

/**
 * A schedule as text: the steps where the choice was not the default, `step.choice` joined by
 * commas ("14.1,233.0"); every other step takes the default. Short, since a shrunk failing run
 * has few such steps.
 */
export function encodeChoices(forced: readonly number[] | ReadonlyMap<number, number>): string {
  if (forced instanceof Map) return [...forced].sort((a, b) => a[0] - b[0]).map(([s, c]) => `${s}.${c}`).join(',') || '-';
  return (forced as readonly number[]).join('/') || '-';
}

export function decodeChoices(text: string): Map<number, number> | number[] {
  if (text === '-' || text === '') return new Map();
  if (text.includes('/') || /^\d+$/.test(text)) return text.split('/').map((x) => Number(x));
  const out = new Map<number, number>();
  for (const part of text.split(',')) {
    const m = /^(\d+)\.(\d+)$/.exec(part);
    if (!m) throw new Error(`schedule: '${part}' is not STEP.CHOICE`);
    out.set(Number(m[1]), Number(m[2]));
  }
  return out;
}

/** A schedule as the CLI names it: `random`, `pct:D[:K]`, `replay:STEPS`. */
export function parseSchedule(spec: string, seed: number): ScheduleStrategy {
  if (spec === 'random') return new RandomStrategy(seed);
  const pct = /^pct:(\d+)(?::(\d+))?$/.exec(spec);
  if (pct) return new PctStrategy(seed, Number(pct[1]), Number(pct[2] ?? PCT_DEFAULT_STEPS));
  if (spec.startsWith('replay:')) return new ReplayStrategy(decodeChoices(spec.slice('replay:'.length)), spec);
  const anchored = /^(at|raise|lower):(.*)$/.exec(spec);
  if (anchored) {
    const body = anchored[2];
    const forced = body === '-' ? [] : body.split(',').map((part) => {
      const m = /^(\d+)\.(\d+):(\d+)$/.exec(part);
      if (!m) throw new Error(`schedule: '${part}' is not STEP.DOMID:TASK`);
      return { step: Number(m[1]), domid: Number(m[2]), task: Number(m[3]) };
    });
    return anchored[1] === 'at' ? new AnchoredStrategy(forced) : new PriorityStrategy(anchored[1] as 'raise' | 'lower', forced);
  }
  throw new Error(`--schedule: '${spec}' is not one of random, pct:D[:K], replay:STEPS, at:STEP.DOMID:TASK, raise:STEP.DOMID:TASK, lower:STEP.DOMID:TASK (exhaustive is a mode of its own: xensim explore)`);
}

/** PCT's K when the run does not say: about the steps of a boot-and-shutdown run. */
export const PCT_DEFAULT_STEPS = 1000;
