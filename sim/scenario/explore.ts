// Exhaustive exploration: every schedule of a scenario with at most `bound` preemptions (steps
// where the scheduler does not take its default choice: the task that ran last goes on, else the
// first ready), as CHESS does with its preemption bound (Musuvathi & Qadeer, PLDI 2007). A run is
// a replay: its forced steps, then the default at every other step. From each run, every later
// step that had a choice is tried with each other item, once, so each schedule within the bound
// runs exactly once (forced steps strictly increase along a branch). Faults are off: what fails
// here fails on a schedule alone.
import type { ScenarioDef } from './scenario.ts';
import type { FaultSelection } from './faults.ts';
import { type RunResult, runScenario } from './run.ts';
import { failureSignature } from './swarm-report.ts';
import { encodeChoices } from '../scheduler/strategy.ts';

export interface ExploreOptions {
  readonly variant: string;
  readonly seed?: number;
  readonly bound: number;
  /** Stop after this many runs (the result then says it is not complete). */
  readonly maxRuns?: number;
  /** Stop at the first failing schedule. */
  readonly stopAtFirstFailure?: boolean;
  readonly faults?: FaultSelection;
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
}

export async function explore(def: ScenarioDef, opts: ExploreOptions): Promise<ExploreResult> {
  const t0 = performance.now();
  const seed = opts.seed ?? 1;
  const maxRuns = opts.maxRuns ?? Infinity;
  const faults = opts.faults ?? { spec: 'none' };
  if (!Number.isInteger(opts.bound) || opts.bound < 0) throw new RangeError(`preemption bound must be a whole number >= 0, not ${opts.bound}`);
  // Depth-first, so the queue stays as long as one branch's alternatives.
  const stack: { forced: Map<number, number>; after: number }[] = [{ forced: new Map(), after: -1 }];
  const signatures = new Map<string, { count: number; schedule: string; preemptions: number }>();
  const byPreemptions: number[] = [];
  let runs = 0;
  let failing = 0;
  let defaultSteps = 0;
  let defaultChoicePoints = 0;
  while (stack.length > 0 && runs < maxRuns) {
    const { forced, after } = stack.pop()!;
    const schedule = `replay:${encodeChoices(forced)}`;
    const r = await runScenario(def, { seed, variant: opts.variant, faults, schedule, recordChoices: true });
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
    if (forced.size >= opts.bound) continue;
    // Later choice points first pushed, so the earliest alternative runs next.
    const points = (r.choicePoints ?? []).filter((c) => c.step > after);
    for (let i = points.length - 1; i >= 0; i--) {
      const c = points[i];
      for (let alt = c.items.length - 1; alt >= 0; alt--) {
        if (alt === c.chosen) continue;
        stack.push({ forced: new Map([...forced, [c.step, alt]]), after: c.step });
      }
    }
  }
  return {
    runs, failing, complete: stack.length === 0 && !(opts.stopAtFirstFailure && failing > 0), signatures, byPreemptions,
    defaultSteps, defaultChoicePoints, wallMs: Math.round(performance.now() - t0),
  };
}
