// Shrinking a failing run: the fewest faults and preemptions that still fail the same way, as a
// replayable schedule and a short story. A run is its seed (domain PRNGs, fault draw), its fault
// selection and its schedule; every step whose choice was not the default one (sim/scheduler/
// strategy.ts) is a preemption, so the steps left forced in `replay:` are the whole schedule.
// Faults go first (a race needs none), then the forced steps by delta debugging (Zeller's ddmin):
// drop halves, then quarters..., keeping any candidate that still fails with the same signature,
// and re-reading its preemptions from the run itself (a dropped choice moves the ones after it).
import type { ScenarioDef } from './scenario.ts';
import { type FaultSelection } from './faults.ts';
import { type RunResult, runScenario } from './run.ts';
import { failureSignature } from './swarm-report.ts';
import { encodeChoices } from '../scheduler/strategy.ts';
import type { TraceEvent } from '../host-runtime.ts';

export interface ShrinkStart {
  readonly seed: number;
  readonly variant: string;
  readonly faults: FaultSelection;
  readonly schedule: string;
}

export interface ShrinkResult {
  /** What failed at first, and its signature (kept through every step of shrinking). */
  readonly original: RunResult;
  readonly signature: string;
  /** The shortest failing run found: its faults and schedule replay it exactly. */
  readonly shortest: RunResult;
  readonly faults: FaultSelection;
  readonly schedule: string;
  /** Preemptions as CHESS counts them (switches away from a task that could go on) plus faults, in the shortest run. */
  readonly size: number;
  /** Runs tried while shrinking. */
  readonly tries: number;
  /** The shortest run told as a few lines: each preemption and what the task then did. */
  readonly story: string[];
}

/** Drawn faults that do something (a zero probability or delay is no fault). */
export function activeFaults(r: RunResult): number {
  let n = 0;
  for (const v of Object.values(r.faults as Record<string, unknown>)) {
    if (v === undefined || v === 0 || v === false) continue;
    if (typeof v === 'object' && v !== null && 'p' in v && (v as { p: number }).p === 0) continue;
    n++;
  }
  return n;
}

const scheduleOf = (r: RunResult): string => `replay:${encodeChoices(new Map(r.preemptions.map((p) => [p.step, p.choice])))}`;

export async function shrink(def: ScenarioDef, start: ShrinkStart, opts: { maxTries?: number; priorityTries?: number; log?: (l: string) => void } = {}): Promise<ShrinkResult> {
  const maxTries = opts.maxTries ?? 400;
  const log = opts.log ?? (() => undefined);
  let tries = 0;
  const run = (faults: FaultSelection, schedule: string, recordChoices = false): Promise<RunResult> => {
    tries++;
    return runScenario(def, { seed: start.seed, variant: start.variant, faults, schedule, ...(recordChoices ? { recordChoices } : {}) });
  };
  const runNoFaults = (schedule: string): Promise<RunResult> => run({ spec: 'none' }, schedule);
  const original = await run(start.faults, start.schedule);
  if (original.result === 'SUCCESS') throw new Error(`${def.name} seed ${start.seed} variant ${start.variant} passes: nothing to shrink`);
  const signature = failureSignature(original);
  const fails = (r: RunResult): boolean => r.result !== 'SUCCESS' && failureSignature(r) === signature;
  let best = original;
  let faults = start.faults;
  // The same run with its own schedule spelled out: replay:... reproduces it step for step.
  let schedule = scheduleOf(original);

  // The default schedule without faults first: a bug that needs nothing at all. Its choice points
  // are where the one-step and priority searches below start from.
  const plain = await run({ spec: 'none' }, 'replay:-', true);
  if (fails(plain)) return { original, signature, shortest: plain, faults: { spec: 'none' }, schedule: 'replay:-', size: 0, tries, story: [] };

  // Faults: none at all, else drop the kinds one at a time.
  if (activeFaults(best) > 0) {
    const r = await run({ spec: 'none' }, schedule);
    if (fails(r)) {
      best = r;
      faults = { spec: 'none' };
      schedule = scheduleOf(r);
    } else {
      for (const kind of Object.keys(best.faults as Record<string, unknown>)) {
        const sel: FaultSelection = { spec: `${faults.spec},-${kind}`, ...(faults.swarm ? { swarm: true } : {}) };
        const c = await run(sel, schedule);
        if (fails(c)) {
          best = c;
          faults = sel;
          schedule = scheduleOf(c);
        }
      }
    }
    log(`faults: ${activeFaults(best)} left`);
  }

  // Preemptions, by ddmin over the forced steps, each anchored to the task it ran (at:...): when
  // a dropped choice moves the later steps, a kept one still finds its task.
  let forced = [...best.preemptions];
  let chunks = 2;
  while (forced.length > 0 && tries < maxTries) {
    const size = Math.ceil(forced.length / chunks);
    let reduced = false;
    for (let i = 0; i < forced.length && tries < maxTries; i += size) {
      const keep = [...forced.slice(0, i), ...forced.slice(i + size)];
      const c = await run(faults, `at:${keep.map((p) => `${p.step}.${p.domid}:${p.task}`).join(',') || '-'}`);
      if (!fails(c)) continue;
      best = c;
      forced = [...c.preemptions];
      schedule = scheduleOf(c);
      chunks = Math.max(chunks - 1, 2);
      reduced = true;
      log(`preemptions: ${forced.length}`);
      break;
    }
    if (reduced) continue;
    if (size === 1) break;
    chunks = Math.min(chunks * 2, forced.length);
  }
  // Still more than one: look for a single preemption of the default schedule without faults,
  // trying first the tasks the failing runs let jump the queue.
  const raise = new Set([...preemptTasks(original.trace, 'to'), ...preemptTasks(best.trace, 'to')]);
  if (best.switches + activeFaults(best) > 1 && tries < maxTries) {
    const one = await onePreemption(plain, runNoFaults, fails, raise, maxTries - tries);
    if (one) {
      const [r, sched] = one;
      return { original, signature, shortest: r, faults: { spec: 'none' }, schedule: sched, size: r.switches, tries, story: story(r.trace) };
    }
  }
  // Still more than three: one task raised or lowered from some step on - racing ahead of the
  // others, or held where it is while they go on (a window that needs many steps, one forced step
  // each, is one change of priority). Its own budget: ddmin may have spent the other.
  if (best.switches + activeFaults(best) > 3) {
    const lower = new Set([...preemptTasks(original.trace, 'from'), ...preemptTasks(best.trace, 'from')]);
    const found = await onePriority(plain, runNoFaults, fails, { raise, lower }, opts.priorityTries ?? 400);
    if (found && found[0].switches < best.switches + activeFaults(best)) {
      const [r, sched] = found;
      return { original, signature, shortest: r, faults: { spec: 'none' }, schedule: sched, size: r.switches, tries, story: story(r.trace, sched) };
    }
  }
  return {
    original, signature, shortest: best, faults, schedule, size: best.switches + activeFaults(best), tries, story: story(best.trace),
  };
}

/**
 * "dom1 xenbus reader" for each task a run's preemptions gave the CPU to ('to'), or took it from
 * ('from': what the default would have run).
 */
function preemptTasks(trace: readonly TraceEvent[], side: 'to' | 'from'): Set<string> {
  const out = new Set<string>();
  for (const e of trace as readonly Record<string, unknown>[]) {
    if (e.kind !== 'preempt') continue;
    const t = side === 'to' ? { domid: e.domid, task: e.task } : e.over as { domid: number; task: string };
    out.add(`dom${String(t.domid)} ${String(t.task)}`);
  }
  return out;
}

/**
 * Each single preemption of the default schedule without faults (`base`, run with its choice
 * points; hinted tasks first), until one fails the same way; undefined if none does within
 * `budget` runs.
 */
async function onePreemption(
  base: RunResult, run: (schedule: string) => Promise<RunResult>, fails: (r: RunResult) => boolean, hints: ReadonlySet<string>, budget: number,
): Promise<[RunResult, string] | undefined> {
  const tries: { step: number; alt: number; hinted: boolean }[] = [];
  for (const c of base.choicePoints ?? []) {
    c.items.forEach((label, alt) => {
      if (alt !== c.chosen) tries.push({ step: c.step, alt, hinted: hints.has(label) });
    });
  }
  tries.sort((a, b) => Number(b.hinted) - Number(a.hinted) || a.step - b.step);
  for (const t of tries.slice(0, budget)) {
    const schedule = `replay:${t.step}.${t.alt}`;
    const r = await run(schedule);
    if (fails(r)) return [r, schedule];
  }
  return undefined;
}

/**
 * The default schedule (`base`) with one task raised (raise:STEP.DOMID:TASK: from STEP on it runs whenever
 * it is ready) or lowered (lower:...: from STEP on it runs only when nothing else can): the tasks
 * the failing runs let jump the queue raised where they waited, the tasks they preempted lowered
 * where they ran, each task's steps tried coarse to fine (every 64th, then the 32nds in between,
 * ...) so a wide window is hit early. The first that fails the same way, else undefined.
 */
async function onePriority(
  base: RunResult, run: (schedule: string) => Promise<RunResult>, fails: (r: RunResult) => boolean,
  hints: { raise: ReadonlySet<string>; lower: ReadonlySet<string> }, budget: number,
): Promise<[RunResult, string] | undefined> {
  // Where a change of a task's priority changes anything: a raised task where it waited, a
  // lowered one where it ran.
  const where = new Map<string, { kind: 'raise' | 'lower'; domid: number; task: number; steps: number[] }>();
  for (const c of base.choicePoints ?? []) {
    c.items.forEach((label, k) => {
      const kind = k === c.chosen ? 'lower' : 'raise';
      if (!hints[kind].has(label)) return;
      let w = where.get(`${kind} ${label}`);
      if (!w) where.set(`${kind} ${label}`, w = { kind, domid: c.ids[k].domid, task: c.ids[k].task, steps: [] });
      w.steps.push(c.step);
    });
  }
  // Each task's steps coarse to fine, then the tasks taken in turn, so a task that ran at few
  // steps is not starved by one that ran at thousands.
  const lists = [...where.values()].map((w) => {
    const out: string[] = [];
    const seen = new Set<number>();
    for (let stride = 64; stride >= 1; stride >>= 1) {
      for (let i = 0; i < w.steps.length; i += stride) {
        if (!seen.has(i)) out.push(`${w.kind}:${w.steps[i]}.${w.domid}:${w.task}`);
        seen.add(i);
      }
    }
    return out;
  });
  const order: string[] = [];
  for (let i = 0; lists.some((l) => i < l.length); i++) for (const l of lists) if (i < l.length) order.push(l[i]);
  for (const schedule of order.slice(0, budget)) {
    const r = await run(schedule);
    if (fails(r)) return [r, schedule];
  }
  return undefined;
}

/** Each preemption of a run, and the first few things the task that got the CPU then did. */
export function story(trace: readonly TraceEvent[], schedule?: string): string[] {
  const out: string[] = [];
  const ev = trace as readonly Record<string, unknown>[];
  // A raised or lowered task steps off the default at every turn; its story is the preemptions
  // proper (CHESS's), after the rule that made them.
  const prio = /^(raise|lower):(\d+)\.(\d+):(\d+)$/.exec(schedule ?? '');
  if (prio) {
    const name = ev.find((e) => e.kind === 'task' && e.domid === Number(prio[3]) && e.id === Number(prio[4]))?.task ?? `task ${prio[4]}`;
    out.push(`from step ${prio[2]} on, dom${prio[3]} ${String(name)} ${prio[1] === 'raise' ? 'runs whenever it is ready' : 'runs only when nothing else can'}`);
  }
  for (let i = 0; i < ev.length; i++) {
    const e = ev[i];
    if (e.kind !== 'preempt' || (prio && !e.preempts)) continue;
    const over = e.over as { domid: number; task: string };
    const did: string[] = [];
    for (let j = i + 1; j < ev.length && did.length < 2; j++) {
      const f = ev[j];
      if (f.kind === 'preempt') break;
      if (f.kind === 'xenstore' && f.dir === 'IN' && f.domid === e.domid) did.push(`${String(f.type)} ${String(f.payload).split('\\0').filter(Boolean).join(' = ')}`);
      else if (f.kind === 'xenbus' && f.domid === e.domid) did.push(`${String(f.path ?? f.device ?? '')} -> ${String(f.state ?? '')}`);
    }
    const waiting = ((e.ready as string[] | undefined) ?? []).filter((l) => l !== `dom${String(e.domid)} ${String(e.task)}` && l !== `dom${over.domid} ${over.task}`);
    const verb = e.preempts ? 'preempted' : 'ran before';
    out.push(`step ${String(e.step)}: dom${String(e.domid)} ${String(e.task)} ${verb} dom${over.domid} ${over.task}`
      + (waiting.length ? ` (also ready: ${waiting.join(', ')})` : '') + (did.length ? `; it then sent ${did.join('; ')}` : ''));
  }
  return out;
}
