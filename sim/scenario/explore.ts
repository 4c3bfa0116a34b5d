// Exhaustive exploration: every schedule of a scenario with at most `bound` preemptions (steps
// where the scheduler does not take its default choice: the task that ran last goes on, else the
// first ready), as CHESS does with its preemption bound (Musuvathi & Qadeer, PLDI 2007). A run is
// a replay: its forced steps, then the default at every other step. From each run, every later
// step that had a choice is tried with each other item, once, so each schedule within the bound
// runs exactly once (forced steps strictly increase along a branch). Faults are off: what fails
// here fails on a schedule alone.
//
// Partial-order reduction (on by default): sleep sets (Godefroid, 1996) over that depth-first
// search. Each step has a footprint (sim/scheduler/footprint.ts); two steps whose footprints do
// not conflict commute. An item already explored at a node, asleep as long as every step after it
// commutes with it, is not tried again there: the schedule that takes it later is equivalent to
// one that took it earlier. The preemption bound makes that unsound as such (Coons, Musuvathi &
// McKinley, OOPSLA 2013: the bound adds dependences) - the earlier schedule may need more
// preemptions than the bound allows - so an asleep item is pruned only when the equivalent
// schedule explored earlier costs no more preemptions, for every continuation: its cost is
// recomputed from the steps' ready lists (the asleep step changes only its own domain's items and
// those of the domains it writes, which no step in between touches) plus one when the two orders
// leave different defaults for the next step. Then every schedule within the bound has an
// equivalent one that ran (induction on the search order), and equivalent schedules end alike.
// Below the default schedule every sleep set is empty (nothing was explored before its steps), so
// plain sleep sets prune only from the second preemption on; a last-level alternative (one that
// branches no further) is also judged before it runs, from its task's next step later in the same
// run when every step in between commutes with it: the step it would make is that one, and if the
// default right after it is asleep and covered, the whole run is equivalent to one explored.
import type { ScenarioDef } from './scenario.ts';
import type { FaultSelection } from './faults.ts';
import { type RunResult, runScenario } from './run.ts';
import { failureSignature } from './swarm-report.ts';
import { defaultChoice, encodeChoices, type SchedItem } from '../scheduler/strategy.ts';
import { conflicts, domObject, type Footprint } from '../scheduler/footprint.ts';

export interface ExploreOptions {
  readonly variant: string;
  readonly seed?: number;
  readonly bound: number;
  /** Stop after this many runs (the result then says it is not complete). */
  readonly maxRuns?: number;
  /** Stop at the first failing schedule. */
  readonly stopAtFirstFailure?: boolean;
  readonly faults?: FaultSelection;
  /** Partial-order reduction with sleep sets (default on). */
  readonly por?: boolean;
  /** Leave the default only at steps from..to (inclusive): explore around a known window. */
  readonly window?: { readonly from: number; readonly to: number };
  /**
   * Count the schedules with exactly `bound` preemptions instead of running them (they branch no
   * further): what an exploration would cost, at the price of the one below it.
   */
  readonly countLeaves?: boolean;
  readonly onRun?: (r: RunResult, schedule: string, done: number, queued: number) => void;
}

export interface ExploreResult {
  readonly runs: number;
  readonly failing: number;
  /** Every schedule within the bound ran. */
  readonly complete: boolean;
  /** Failures by signature: how many schedules, and the first one's replay schedule. */
  readonly signatures: ReadonlyMap<string, { count: number; schedule: string; preemptions: number }>;
  /** Schedules with 0, 1, ... preemptions that ran. */
  readonly byPreemptions: readonly number[];
  /** Steps of the default schedule, and how many of them had a choice. */
  readonly defaultSteps: number;
  readonly defaultChoicePoints: number;
  readonly wallMs: number;
  /** Partial-order reduction was on. */
  readonly por: boolean;
  /**
   * Alternatives not run because an equivalent schedule within the bound runs (each the root of a
   * subtree: with `bound` - 1 preemptions before it, exactly one schedule).
   */
  readonly prunedAlternatives: number;
  /** Of those, last-level alternatives judged from a later step of the same task (not run at all). */
  readonly prunedAhead: number;
  /** Runs whose default continuation turned out equivalent to one already explored: no alternatives spawned after that step. */
  readonly redundantTails: number;
  /** Steps of all runs whose footprint was unknown (conflicting with everything), and all steps. */
  readonly unknownSteps: number;
  readonly footprintSteps: number;
  /** With countLeaves: the schedules with `bound` preemptions, counted and not run (`runs` excludes them). */
  readonly leaves: number;
}

type StepLog = NonNullable<RunResult['stepLog']>;

/** An item explored at a node, and what the reduction needs to know of that step. */
interface SleepEntry {
  readonly item: SchedItem;
  readonly fp: Footprint;
  /** The node's depth (the step at which it ran). */
  readonly depth: number;
  /** The ready items, per domain, after it ran - of the domains whose ready items it changed. */
  readonly after: ReadonlyMap<number, readonly SchedItem[]>;
}

/** A node of the search with alternatives: its sleep set and the items explored there so far. */
interface NodeInfo {
  readonly sleep: readonly SleepEntry[];
  readonly done: SleepEntry[];
}

const same = (a: SchedItem, b: SchedItem): boolean => a.domid === b.domid && a.task === b.task;
const chosenAt = (log: StepLog, s: number): SchedItem | undefined => (s < 0 ? undefined : log[s].ids[log[s].chosen]);

function byDomain(ids: readonly SchedItem[]): Map<number, SchedItem[]> {
  const m = new Map<number, SchedItem[]>();
  for (const i of ids) {
    let l = m.get(i.domid);
    if (!l) m.set(i.domid, (l = []));
    l.push(i);
  }
  return m;
}

function entryOf(log: StepLog, s: number): SleepEntry {
  const before = byDomain(log[s].ids);
  const next = byDomain(log[s + 1]?.ids ?? []);
  const after = new Map<number, SchedItem[]>();
  for (const d of new Set([...before.keys(), ...next.keys()])) {
    const a = before.get(d) ?? [];
    const b = next.get(d) ?? [];
    if (a.length !== b.length || a.some((x, i) => !same(x, b[i]))) after.set(d, b);
  }
  return { item: chosenAt(log, s)!, fp: log[s].fp, depth: s, after };
}

/** The ready items as they would be had `u`'s step run first: its domains' lists replaced. */
function withAfter(ids: readonly SchedItem[], u: SleepEntry): SchedItem[] {
  const m = byDomain(ids);
  for (const [d, l] of u.after) m.set(d, [...l]);
  return [...m.keys()].sort((a, b) => a - b).flatMap((d) => m.get(d)!);
}

/** Steps where the search may leave the default (all of them unless a window is given). */
type Window = (step: number) => boolean;

/**
 * 1 if running `item` among `items` after `last` at `step` is not the default choice (a
 * preemption); Infinity where the search may not preempt (outside its window) or `item` is not ready.
 */
function cost(items: readonly SchedItem[], item: SchedItem, last: SchedItem | undefined, step: number, window: Window): number {
  const i = items.findIndex((x) => same(x, item));
  if (i < 0) return Infinity;
  if (items.length <= 1 || i === defaultChoice(items, last)) return 0;
  return window(step) ? 1 : Infinity;
}

/**
 * Whether running asleep `u` at step `k` of `log` (after the steps from u.depth on, all of which
 * commute with it) costs at least as many preemptions, whatever follows, as the equivalent
 * schedule that ran u first at u.depth and then the same steps (one step later each) - explored
 * before, and within the bound and window whenever this one is.
 */
function coveredWithinBound(u: SleepEntry, log: StepLog, k: number, window: Window): boolean {
  const j = u.depth;
  let later = 0;
  for (let s = j; s < k; s++) later += cost(log[s].ids, chosenAt(log, s)!, chosenAt(log, s - 1), s, window);
  later += cost(log[k].ids, u.item, chosenAt(log, k - 1), k, window);
  let first = cost(log[j].ids, u.item, chosenAt(log, j - 1), j, window);
  let last = u.item;
  for (let s = j; s < k; s++) {
    const y = chosenAt(log, s)!;
    if (u.after.has(y.domid)) return false; // cannot be: y would conflict with u
    first += cost(withAfter(log[s].ids, u), y, last, s + 1, window);
    last = y;
  }
  // Both orders reach one state; only the default of the next step may differ.
  const end = withAfter(log[k].ids, u);
  const next = end.length <= 1 || defaultChoice(end, u.item) === defaultChoice(end, last) ? 0 : window(k + 1) ? 1 : Infinity;
  return first + next <= later;
}

/** The entry of `sleep` for `item`, if it is asleep and may be pruned at step k. */
const prunable = (sleep: readonly SleepEntry[], item: SchedItem, log: StepLog, k: number, window: Window): boolean =>
  sleep.some((u) => same(u.item, item) && coveredWithinBound(u, log, k, window));

/**
 * A last-level alternative (it will branch no further) judged without running it. Forced at step
 * k of `log`, `item` runs, then the defaults. As long as those defaults are the next steps of the
 * same domain that `log` ran later, each commuting with every other domain's step in between,
 * each would be that very step, with the same footprint and the same effect on the ready items.
 * When the default after them is an asleep item that is covered within the bound, the whole run
 * is equivalent to one explored: it need not run.
 */
function redundantLeaf(sleep: readonly SleepEntry[], done: readonly SleepEntry[], item: SchedItem, log: StepLog, k: number, window: Window): boolean {
  const da = item.domid;
  let asleep = [...sleep, ...done];
  // The run as it would go: the same steps up to k, then the moved steps.
  const synth: StepLog = log.slice(0, k);
  const base = byDomain(log[k].ids);
  /** Ready lists the moved steps changed, as `log` has them right after the last of them. */
  const changed = new Map<number, SchedItem[]>();
  let ready: SchedItem[] = [...log[k].ids];
  let want = item;
  let m = k;
  for (;;) {
    while (m < log.length && chosenAt(log, m)!.domid !== da) m++;
    if (m >= log.length || !same(chosenAt(log, m)!, want)) return false;
    const fp = log[m].fp;
    for (let s = k; s < m; s++) if (chosenAt(log, s)!.domid !== da && conflicts(log[s].fp, fp)) return false;
    const idx = ready.findIndex((x) => same(x, want));
    if (idx < 0) return false;
    synth.push({ ids: ready, chosen: idx, fp });
    asleep = asleep.filter((u) => !conflicts(u.fp, fp));
    if (asleep.length === 0) return false;
    const before = byDomain(log[m].ids);
    const after = byDomain(log[m + 1]?.ids ?? []);
    for (const d of new Set([...before.keys(), ...after.keys()])) {
      const a = before.get(d) ?? [];
      const b = after.get(d) ?? [];
      if (a.length !== b.length || a.some((x, i) => !same(x, b[i]))) changed.set(d, b);
    }
    // Another domain's list read off `log` must owe nothing to the steps not moved.
    for (const d of changed.keys()) {
      if (d === da) continue;
      for (let s = k; s < m; s++) if (chosenAt(log, s)!.domid !== da && log[s].fp.writes.has(domObject(d))) return false;
    }
    const lists = new Map(base);
    for (const [d, l] of changed) lists.set(d, l);
    ready = [...lists.keys()].sort((x, y) => x - y).flatMap((d) => lists.get(d)!);
    if (ready.length === 0) return false;
    const next = ready[defaultChoice(ready, want)];
    if (asleep.some((u) => same(u.item, next))) {
      synth.push({ ids: ready, chosen: ready.indexOf(next), fp });
      return prunable(asleep, next, synth, synth.length - 1, window);
    }
    if (next.domid !== da) return false;
    want = next;
    m++;
  }
}

export async function explore(def: ScenarioDef, opts: ExploreOptions): Promise<ExploreResult> {
  const t0 = performance.now();
  const seed = opts.seed ?? 1;
  const maxRuns = opts.maxRuns ?? Infinity;
  const faults = opts.faults ?? { spec: 'none' };
  if (!Number.isInteger(opts.bound) || opts.bound < 0) throw new RangeError(`preemption bound must be a whole number >= 0, not ${opts.bound}`);
  const por = opts.por ?? true;
  const w = opts.window;
  const inWindow: Window = w ? (step) => step >= w.from && step <= w.to : () => true;
  let leaves = 0;
  // Depth-first, so the queue stays as long as one branch's alternatives.
  const stack: { forced: Map<number, number>; after: number; node?: NodeInfo }[] = [{ forced: new Map(), after: -1 }];
  const signatures = new Map<string, { count: number; schedule: string; preemptions: number }>();
  const byPreemptions: number[] = [];
  let runs = 0;
  let failing = 0;
  let defaultSteps = 0;
  let defaultChoicePoints = 0;
  let prunedAlternatives = 0;
  let redundantTails = 0;
  let prunedAhead = 0;
  let unknownSteps = 0;
  let footprintSteps = 0;
  while (stack.length > 0 && runs < maxRuns) {
    const { forced, after, node } = stack.pop()!;
    if (opts.countLeaves && forced.size >= opts.bound && forced.size > 0) {
      leaves++;
      continue;
    }
    const schedule = `replay:${encodeChoices(forced)}`;
    const r = await runScenario(def, { seed, variant: opts.variant, faults, schedule, recordChoices: true, recordFootprints: por });
    runs++;
    byPreemptions[forced.size] = (byPreemptions[forced.size] ?? 0) + 1;
    if (runs === 1) {
      defaultSteps = r.steps;
      defaultChoicePoints = r.choicePoints?.length ?? 0;
    }
    if (r.result !== 'SUCCESS') {
      failing++;
      const sig = failureSignature(r);
      const s = signatures.get(sig);
      if (s) s.count++;
      else signatures.set(sig, { count: 1, schedule, preemptions: forced.size });
    }
    opts.onRun?.(r, schedule, runs, stack.length);
    if (r.result !== 'SUCCESS' && opts.stopAtFirstFailure) break;
    const log = r.stepLog;
    if (log) {
      footprintSteps += log.length;
      unknownSteps += log.filter((st) => st.fp.global).length;
    }
    // The sleep set below this run's forced step: what was explored at that node and still commutes.
    let sleep: SleepEntry[] = [];
    if (log && node && log.length > after) {
      const mine = entryOf(log, after);
      sleep = [...node.sleep, ...node.done].filter((u) => !conflicts(u.fp, mine.fp));
      node.done.push(mine);
    }
    if (forced.size >= opts.bound) continue;
    // Alternatives pushed last first, so the earliest (step, then item) runs next.
    const points = (r.choicePoints ?? []).filter((c) => c.step > after && (!w || c.step <= w.to));
    const spawn: { forced: Map<number, number>; after: number; node?: NodeInfo }[] = [];
    // The next step whose footprint the sleep set has not seen yet.
    let cursor = after + 1;
    for (const c of points) {
      if (log) {
        // Steps between choice points (one item ready): what conflicts with them wakes up.
        for (; cursor < c.step; cursor++) sleep = sleep.filter((u) => !conflicts(u.fp, log[cursor].fp));
      }
      const defaultAsleep = log !== undefined && prunable(sleep, c.ids[c.chosen], log, c.step, inWindow);
      const here: NodeInfo | undefined = log ? { sleep, done: defaultAsleep ? [] : [entryOf(log, c.step)] } : undefined;
      for (let alt = 0; alt < c.items.length && inWindow(c.step); alt++) {
        if (alt === c.chosen) continue;
        if (log && prunable(sleep, c.ids[alt], log, c.step, inWindow)) {
          prunedAlternatives++;
          continue;
        }
        if (log && here && forced.size + 1 === opts.bound && redundantLeaf(sleep, here.done, c.ids[alt], log, c.step, inWindow)) {
          prunedAlternatives++;
          prunedAhead++;
          continue;
        }
        spawn.push({ forced: new Map([...forced, [c.step, alt]]), after: c.step, node: here });
      }
      if (defaultAsleep) {
        // Everything after this step is equivalent to schedules explored (or to be) elsewhere:
        // the alternatives after it are pruned too.
        redundantTails++;
        for (const later of points) if (later.step > c.step && inWindow(later.step)) prunedAlternatives += later.items.length - 1;
        break;
      }
      if (log) sleep = sleep.filter((u) => !conflicts(u.fp, log[c.step].fp));
      cursor = c.step + 1;
    }
    for (let i = spawn.length - 1; i >= 0; i--) stack.push(spawn[i]);
  }
  return {
    runs, failing, complete: stack.length === 0 && !(opts.stopAtFirstFailure && failing > 0), signatures, byPreemptions,
    defaultSteps, defaultChoicePoints, wallMs: Math.round(performance.now() - t0),
    por, prunedAlternatives, prunedAhead, redundantTails, unknownSteps, footprintSteps, leaves,
  };
}

/** The reduction's counts as the explore report and the bench print them. */
export function exploreReductionText(r: ExploreResult): string {
  const unknown = r.footprintSteps ? ` ${((100 * r.unknownSteps) / r.footprintSteps).toFixed(1)} % of steps had an unknown footprint.` : '';
  return `${r.prunedAlternatives} alternative(s) pruned (an equivalent schedule within the bound ran; ${r.prunedAhead} of them judged from a later step of their task), `
    + `${r.redundantTails} run(s) found equivalent to another after some step (nothing branched after it).${unknown}`;
}
