// `xensim list | faults | run | swarm | swarm-merge | replay`: the scenario engine from the
// command line. Exit codes are xtf-runner's (SUCCESS 0, SKIP 3, ERROR 4, FAILURE 5, CRASH 6; 1 for
// the runner's own errors). A scenario is a library name or a file of the user's (see load.ts).
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { SCENARIOS } from '../../scenarios/index.ts';
import type { TraceEvent } from '../host-runtime.ts';
import { toJUnitXml, type JUnitCase } from '../report/junit.ts';
import { exitCode, RUNNER_ERROR_EXIT, worstOf, XtfResult } from '../report/xtf.ts';
import { MERMAID_LIMITS, toMermaidDiagrams } from '../trace/mermaid.ts';
import { detectRaces, formatFindings, RACE_KINDS, type RaceFinding } from '../trace/race-detector.ts';
import { perfettoJson, toPerfetto } from '../trace/perfetto.ts';
import { formatTimestamp, toTextLog } from '../trace/text-log.ts';
import type { TraceRecord } from '../trace/events.ts';
import { readTraceFile } from '../trace/trace-file.ts';
import { toExplainedLog } from '../trace/explain.ts';
import { TraceReducer } from '../trace/state-at.ts';
import { filterError, filterTrace, listOption, type TraceFilter } from '../trace/filter.ts';
import { faultKinds } from './fault-registry.ts';
import { DEFAULT_FAULTS, describeFaults, type FaultSelection, selectFaults } from './faults.ts';
import { findLoaded, type LoadedScenario, resolveScenarioArg } from './load.ts';
import { type RunResult, runScenario, withMeasuredSteps } from './run.ts';
import { replayCommand, swarm } from './swarm.ts';
import { parseSchedule } from '../scheduler/strategy.ts';
import { activeFaults, shrink } from './shrink.ts';
import { explore, exploreReductionText } from './explore.ts';
import {
  failureSignature, parseShard, parseSwarmLines, shardSeeds, type SwarmAnswer, type SwarmLine, summarise, variantKey, type VariantSummary,
} from './swarm-report.ts';

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
};

function die(msg: string): never {
  process.stderr.write(`xensim: ${msg}\n`);
  process.exit(RUNNER_ERROR_EXIT);
}

async function scenariosOrDie(args: readonly string[]): Promise<LoadedScenario[]> {
  const out: LoadedScenario[] = [];
  for (const a of args) {
    try {
      out.push(...await resolveScenarioArg(a));
    } catch (e) {
      die(e instanceof Error ? e.message : String(e));
    }
  }
  return out;
}

/** The one scenario NAME names (a file holding several must say which with FILE#name), or die. */
async function oneScenarioOrDie(name: string): Promise<LoadedScenario[]> {
  const found = await scenariosOrDie([name]);
  if (found.length !== 1) die(`${name} holds ${found.length} scenarios (${found.map((s) => s.def.name).join(', ')}): pick one with ${name}#<name>`);
  return found;
}

/** `--faults` and `--fault-swarm`, checked against every scenario before anything runs. */
export function faultSelectionOrDie(o: { faults: string; faultSwarm?: boolean }, scenarios: readonly LoadedScenario[]): FaultSelection {
  const sel: FaultSelection = { spec: o.faults, ...(o.faultSwarm ? { swarm: true } : {}) };
  for (const s of scenarios) {
    try {
      selectFaults(s.def.faults, sel);
    } catch (e) {
      die(`${s.def.name}: --faults ${o.faults}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return sel;
}

export const faultsOption = (): Option => new Option('--faults <list>',
  'fault kinds a seed may draw: none | default (the scenario\'s) | all | kinds, -kind to drop one (see: xensim faults)').default('default');
const onlyOption = (): Option => new Option('--only <kinds>',
  'the log, Mermaid and Perfetto show only these event kinds, e.g. xenstore,xenbus').argParser(listOption);
const hideOption = (): Option => new Option('--hide <what>',
  'the log, Mermaid and Perfetto leave out these kinds or groups: replies, watch-events, set-pending, faults').argParser(listOption);
const domainOption = (): Option => new Option('--domain <ids>',
  'the log, Mermaid and Perfetto show only these domains\' events (comma-separated domids)').argParser(listOption);
const faultSwarmOption = (): Option => new Option('--fault-swarm',
  'swarm testing: each seed keeps a random subset of the selected fault kinds (one fault can hide a race)');

export const scheduleOption = (): Option => new Option('--schedule <strategy>',
  'how the scheduler picks each step among every domain\'s interrupts and parked tasks: random (seeded walk) | pct:D[:K] '
  + '(probabilistic concurrency testing, depth D over about K steps) | replay:STEP.CHOICE,... (a shrunk run) | at:STEP.DOMID:TASK | raise:STEP.DOMID:TASK | lower:STEP.DOMID:TASK').default('random');

/** A --schedule that parses, or die saying why. */
export function scheduleOrDie(spec: string): void {
  try {
    parseSchedule(spec, 1);
  } catch (e) {
    die(e instanceof Error ? e.message : String(e));
  }
}

/** The first line of a --trace file: what ran, so `xensim replay` can run it again. */
interface TraceHeader {
  kind: 'run'; scenario: string; file?: string; seed: number; variant: string; faultSelection?: FaultSelection; faults: unknown; schedule?: string;
}
interface TraceFooter { kind: 'end'; result: string; hash: string; events: number }

export interface TraceOutputs {
  readonly trace?: string;
  readonly perfetto?: string;
  readonly mermaid?: string;
  readonly device?: string;
  /** One arrow per xenstore message instead of the folded diagram. */
  readonly mermaidDetail?: boolean;
  readonly log?: string;
  /** What the log, Mermaid and Perfetto show (the --trace file keeps everything). */
  readonly only?: string[];
  readonly hide?: string[];
  readonly domain?: string[];
  /** The log in sentences (explain.ts) instead of fields. */
  readonly explain?: boolean;
}

/** The exporters' filter from --only/--hide/--domain, or die naming what is wrong. */
function traceFilterOrDie(o: TraceOutputs): TraceFilter {
  const domains = o.domain?.map((d) => (/^\d+$/.test(d) ? Number(d) : die(`--domain ${d}: expected domain ids`)));
  const f: TraceFilter = { ...(o.only ? { only: o.only } : {}), ...(o.hide ? { hide: o.hide } : {}), ...(domains ? { domains } : {}) };
  const err = filterError(f);
  if (err) die(err);
  return f;
}

/** Part N of a diagram split at Mermaid's limits: vbd.mmd -> vbd.2.mmd. */
const mermaidPartFile = (file: string, n: number): string => file.replace(/(\.[^./]*)?$/, (ext) => `.${n}${ext}`);

/** A Mermaid diagram with at least one message, or undefined (nothing matched). */
const hasMessages = (diagram: string): boolean => /^\s+\S+\s*(?:-->>|->>|--\)|-\)|--x|-x)/m.test(diagram);

/** Writes a run's trace in the forms asked for. */
export function writeOutputs(r: RunResult, o: TraceOutputs, file?: string): void {
  if (o.trace) {
    const header: TraceHeader = {
      kind: 'run', scenario: r.scenario, ...(file ? { file } : {}), seed: r.seed, variant: r.variant, faultSelection: r.faultSelection, faults: r.faults,
      ...(r.schedule === 'random' ? {} : { schedule: r.schedule }),
    };
    const footer: TraceFooter = { kind: 'end', result: r.result, hash: r.hash, events: r.events };
    const lines = [JSON.stringify(header), ...r.trace.map((e) => JSON.stringify(e)), JSON.stringify(footer)];
    writeFileSync(o.trace, `${lines.join('\n')}\n`);
  }
  const shown = filterTrace(r.trace, traceFilterOrDie(o));
  if (o.perfetto) writeFileSync(o.perfetto, perfettoJson(toPerfetto(shown)));
  if (o.mermaid) {
    const parts = toMermaidDiagrams(shown, { filter: o.device, fold: !o.mermaidDetail });
    // An empty diagram looks like a rendering bug: say what matched nothing instead.
    if (!parts.some(hasMessages)) die(`--mermaid: no message to draw${o.device ? ` for --device ${o.device}` : ''}${shown.length < r.trace.length ? ' with this filter' : ''}`);
    const files = parts.map((_, i) => (i === 0 ? o.mermaid! : mermaidPartFile(o.mermaid!, i + 1)));
    parts.forEach((text, i) => writeFileSync(files[i], text));
    if (parts.length > 1) {
      // Mermaid would draw "Maximum text size in diagram exceeded" for one file this big.
      process.stderr.write(`--mermaid: over Mermaid's default limits (maxTextSize ${MERMAID_LIMITS.maxTextSize} characters, `
        + `${MERMAID_LIMITS.maxEdges} arrows), so written as ${parts.length} diagrams: ${files.join(', ')} `
        + '(--device or --only draw less)\n');
    }
  }
  if (o.log) {
    const text = o.explain ? explainedLog(r.trace, shown) : toTextLog(shown);
    if (o.log === '-') process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    else writeFileSync(o.log, text);
  }
}

/** `--log --explain`: names learnt from the whole run, sentences for the events shown. */
function explainedLog(all: readonly TraceRecord[], shown: readonly TraceRecord[]): string {
  const r = new TraceReducer();
  for (const e of all) r.apply(e);
  return toExplainedLog(shown, r.context(), formatTimestamp);
}

/** The detector's findings, with a count line first. */
function racesText(found: readonly RaceFinding[]): string {
  return `race detector: ${found.length} finding${found.length === 1 ? '' : 's'}\n${formatFindings(found)}`;
}

function resultLine(r: RunResult): string {
  const where = r.step ? ` (in step "${r.step}")` : '';
  return `${r.result}: ${r.scenario} seed ${r.seed}${r.variant === 'fixed' ? '' : ` variant ${r.variant}`}` +
    `${r.message ? ` - ${r.message}${where}` : ''} [${r.events} events, ${(r.virtualNs / 1e9).toFixed(3)} s virtual, ${r.wallMs} ms]`;
}

function junitCase(r: { scenario: string; file?: string; variant: string; seed: number; faultSelection?: FaultSelection; result: string; message?: string; wallMs: number }): JUnitCase {
  return {
    name: `${r.scenario}${r.variant === 'fixed' ? '' : `[${r.variant}]`} seed ${r.seed}`, classname: `xensim.${r.scenario}`,
    timeSeconds: r.wallMs / 1000, result: r.result as XtfResult, message: r.message, replay: replayCommand(r),
  };
}


/** The summary of a swarm, or of merged shards: per variant, its failure rate and signatures. */
function printSummary(summaries: readonly VariantSummary[], out: NodeJS.WritableStream): void {
  for (const s of summaries) {
    const pct = (100 * s.rate).toFixed(1);
    out.write(`${s.scenario} [${s.variant}]: ${s.runs} runs, ${s.failures.length} failing (${pct} %) - ${s.verdict}` +
      `${s.firstFailingSeed !== undefined ? ` (first at seed ${s.firstFailingSeed})` : ''}\n`);
    for (const g of s.signatures.slice(0, 5)) {
      out.write(`  ${g.count} x ${g.signature}\n    first at seed ${g.seed}; shortest: seed ${g.shortest.seed} (${g.shortest.events} events)\n` +
        `    replay: ${replayCommand(g.shortest)}\n`);
    }
    if (s.signatures.length > 5) out.write(`  ... and ${s.signatures.length - 5} more signatures\n`);
    if (s.shortest) out.write(`  shortest failing run: seed ${s.shortest.seed} (${s.shortest.events} events)\n`);
  }
}

function swarmJunit(summaries: readonly VariantSummary[], file: string): void {
  const cases: JUnitCase[] = summaries.map((s) => ({
    name: `${s.scenario}[${s.variant}] x${s.runs} seeds`, classname: `xensim.swarm.${s.scenario}`, timeSeconds: 0,
    result: s.ok ? XtfResult.SUCCESS : XtfResult.FAILURE,
    message: `${s.failures.length} failing seeds, expected ${s.expect}`,
    replay: s.shortest ? replayCommand(s.shortest) : undefined,
  }));
  writeFileSync(file, toJUnitXml([{ name: 'xensim swarm', cases }]));
}

/** A run as a `--json` line. */
function swarmLine(a: SwarmAnswer, expect: 'pass' | 'fail'): SwarmLine {
  return {
    kind: 'run', ...a, expect, ...(a.result === 'SUCCESS' ? {} : { signature: failureSignature(a) }), replay: replayCommand(a),
  };
}

/** A buggy variant that fails is the expected outcome; one that never fails is the failure. */
const verdictResult = (summaries: readonly VariantSummary[]): XtfResult => worstOf(summaries.map((s) => (s.ok ? XtfResult.SUCCESS : XtfResult.FAILURE)));

export function registerScenarios(program: Command): void {
  program.command('list')
    .description('list the scenarios (planted races show their variants and source); with files, the scenarios in them')
    .argument('[files...]')
    .action(async (files: string[]) => {
      const defs = files.length ? (await scenariosOrDie(files)).map((s) => s.def) : SCENARIOS;
      for (const s of defs) {
        const variants = Object.keys(s.variants ?? { fixed: {} });
        const race = s.race ? ` [${s.race.id} ${s.race.name}; ${s.race.source}]` : '';
        process.stdout.write(`${s.name.padEnd(36)} ${s.title}${race}\n`);
        process.stdout.write(`${''.padEnd(36)} tags: ${(s.tags ?? []).join(', ') || '-'}; variants: ${variants.join(', ')}\n`);
      }
    });

  program.command('faults')
    .description('list the fault kinds the components declare (names for --faults)')
    .action(() => {
      for (const k of faultKinds()) {
        process.stdout.write(`${k.name.padEnd(20)} ${k.owner}: ${k.description}${k.outsideXen ? ' [outside Xen: never in "all"]' : ''}\n`);
        process.stdout.write(`${''.padEnd(20)} default range: ${JSON.stringify(k.defaultRange)}\n`);
      }
    });

  program.command('run')
    .description('run one scenario (a name, or a file: ./my-race.ts, file.ts#name) with one seed; exit code as xtf-runner')
    .argument('<scenario>')
    .option('--seed <n>', 'seed (scheduler, PRNGs, fault draw)', int, 1)
    .option('--variant <name>', 'fixed (default) or a variant the scenario declares (a planted race\'s buggy)', 'fixed')
    .addOption(faultsOption())
    .addOption(faultSwarmOption())
    .addOption(scheduleOption())
    .option('--trace <file>', 'the trace as JSON lines (replayable with `xensim replay`)')
    .option('--perfetto <file>', 'Chrome/Perfetto trace JSON (open in ui.perfetto.dev)')
    .option('--mermaid <file>', 'a Mermaid sequence diagram (of --device, or everything)')
    .option('--device <name>', 'the device the diagram shows, e.g. vbd/51712')
    .option('--mermaid-detail', 'the diagram with one arrow per xenstore message (default: replies, runs of reads or writes, transactions and a commit\'s watch events folded into single arrows)')
    .option('--log <file>', 'one line per event (- for stdout)')
    .addOption(onlyOption())
    .addOption(hideOption())
    .addOption(domainOption())
    .option('--explain', 'the --log in sentences: each event with the Xen/Linux function it models')
    .option('--no-faults', 'a clean teaching run: no injected faults (same as --faults none)')
    .option('--junit <file>', 'JUnit XML for CI')
    .option('--detect-races', 'after the result, the race detector\'s findings over the run\'s trace (see: xensim detect)')
    .option('-q, --quiet', 'only the result line')
    .action(async (name: string, opts: {
      seed: number; variant: string; faults: string | false; faultSwarm?: boolean; schedule: string; junit?: string; quiet?: boolean; detectRaces?: boolean;
    } & TraceOutputs) => {
      const o = { ...opts, faults: opts.faults === false ? 'none' : opts.faults };
      traceFilterOrDie(o);
      const found = await oneScenarioOrDie(name);
      const [{ def, file }] = found;
      const faults = faultSelectionOrDie(o, found);
      const log = o.quiet ? undefined : (l: string): void => void process.stdout.write(`${l}\n`);
      scheduleOrDie(o.schedule);
      // pct:D without K: K measured as a swarm measures it, so this run is the swarm's seed.
      const r = await runScenario(def, { seed: o.seed, variant: o.variant, log, faults, schedule: await withMeasuredSteps(def, o.schedule, 1) });
      writeOutputs(r, o, file);
      process.stdout.write(`${resultLine(r)}\n`);
      if (r.diverged) {
        process.stderr.write(`warning: the schedule does not fit this run: step ${r.diverged.step} asks for choice ${r.diverged.asked} but ${r.diverged.ready} `
          + 'could run (the default ran instead) - was it written for another seed, variant, fault selection or xensim version?\n');
      }
      if (r.result !== XtfResult.SUCCESS) process.stdout.write(`replay: ${replayCommand({ ...r, file })}\n`);
      const races = o.detectRaces ? detectRaces(r.trace) : undefined;
      if (races) process.stdout.write(racesText(races));
      if (o.junit) {
        const output = races ? racesText(races) : undefined;
        writeFileSync(o.junit, toJUnitXml([{ name: 'xensim', cases: [{ ...junitCase({ ...r, file }), ...(output ? { output } : {}) }] }]));
      }
      process.exitCode = exitCode(r.result);
    });

  program.command('explore')
    .description('exhaustive: run every schedule of a scenario with at most --bound preemptions (no faults), equivalent interleavings once; report how many fail')
    .argument('<scenario>')
    .option('--variant <name>', 'fixed (default) or a declared variant', 'fixed')
    .option('--bound <n>', 'preemption bound (steps where the scheduler does not take its default choice)', int, 1)
    .option('--seed <n>', 'seed of the domains\' PRNGs (the schedule is the search\'s)', int, 1)
    .option('--max-runs <n>', 'stop after this many schedules (the result says it is incomplete)', int)
    .option('--stop', 'stop at the first failing schedule')
    .option('--no-por', 'no partial-order reduction: run equivalent interleavings too')
    .option('--window <from:to>', 'leave the default schedule only at steps FROM..TO')
    .option('--count-leaves', 'count the schedules with exactly --bound preemptions instead of running them')
    .action(async (name: string, o: { variant: string; bound: number; seed: number; maxRuns?: number; stop?: boolean; por: boolean; window?: string; countLeaves?: boolean }) => {
      const found = await oneScenarioOrDie(name);
      const [{ def, file }] = found;
      if (o.variant !== 'fixed' && !def.variants?.[o.variant]) die(`${def.name} has no variant ${o.variant}`);
      const win = o.window === undefined ? undefined : /^(\d+):(\d+)$/.exec(o.window);
      if (o.window !== undefined && !win) die(`--window: '${o.window}' is not FROM:TO`);
      const tty = process.stderr.isTTY;
      const res = await explore(def, {
        variant: o.variant, bound: o.bound, seed: o.seed, maxRuns: o.maxRuns, stopAtFirstFailure: o.stop, por: o.por, countLeaves: o.countLeaves,
        ...(win ? { window: { from: Number(win[1]), to: Number(win[2]) } } : {}),
        onRun: (_r, _s, done, queued) => {
          if (tty && done % 10 === 0) process.stderr.write(`\r  ${done} schedules run, ${queued} queued`);
        },
      });
      if (tty) process.stderr.write('\n');
      const rate = res.runs / (res.wallMs / 1000);
      process.stdout.write(`${def.name} [${o.variant}]: ${res.complete ? 'every' : 'INCOMPLETE:'} ${res.runs} schedule(s) with <= ${o.bound} step(s) off the default schedule${win ? ` (at steps ${win[1]}..${win[2]})` : ''} `
        + `(${res.byPreemptions.map((n, k) => `${n ?? 0} with ${k}`).join(', ')})${res.leaves ? `, ${res.leaves} with ${o.bound} counted, not run` : ''}; default schedule ${res.defaultSteps} steps, ${res.defaultChoicePoints} with a choice\n`);
      process.stdout.write(res.por
        ? `partial-order reduction: ${exploreReductionText(res)}\n`
        : 'partial-order reduction off\n');
      process.stdout.write(`${res.failing} failing (${((100 * res.failing) / Math.max(1, res.runs)).toFixed(1)} %); ${(res.wallMs / 1000).toFixed(1)} s, ${rate.toFixed(1)} runs/s\n`);
      for (const [sig, s] of res.signatures) {
        process.stdout.write(`  ${s.count} x ${sig}\n    replay: ${replayCommand({ scenario: def.name, file, variant: o.variant, seed: o.seed, faultSelection: { spec: 'none' }, schedule: s.schedule })}\n`);
      }
      process.exitCode = res.failing > 0 ? 1 : res.complete ? 0 : RUNNER_ERROR_EXIT;
    });

  program.command('shrink')
    .description('reduce a failing run to the fewest faults and preemptions that still fail the same way; prints its replay command and story')
    .argument('<scenario>')
    .option('--seed <n>', 'seed of the failing run', int, 1)
    .option('--variant <name>', 'variant of the failing run', 'fixed')
    .addOption(faultsOption())
    .addOption(faultSwarmOption())
    .addOption(scheduleOption())
    .option('--max-tries <n>', 'give up shrinking after this many runs', int, 400)
    .action(async (name: string, o: { seed: number; variant: string; faults: string; faultSwarm?: boolean; schedule: string; maxTries: number }) => {
      const found = await oneScenarioOrDie(name);
      const [{ def, file }] = found;
      const faults = faultSelectionOrDie(o, found);
      scheduleOrDie(o.schedule);
      let res;
      try {
        res = await shrink(def, { seed: o.seed, variant: o.variant, faults, schedule: o.schedule }, {
          maxTries: o.maxTries, log: (l) => void process.stderr.write(`  ${l}\n`),
        });
      } catch (e) {
        die(e instanceof Error ? e.message : String(e));
      }
      const r = res.shortest;
      process.stdout.write(`${resultLine(res.original)}\n`);
      process.stdout.write(`shortest: ${r.preemptions.length} step(s) off the default schedule (${r.switches} of them preempting a task that could go on), `
        + `${activeFaults(r)} fault(s); the failing run had ${res.original.preemptions.length} and ${activeFaults(res.original)} (${res.tries} runs)\n`);
      process.stdout.write(`${resultLine(r)}\n`);
      for (const line of res.story) process.stdout.write(`  ${line}\n`);
      process.stdout.write(`replay: ${replayCommand({ ...r, file, faultSelection: res.faults, schedule: res.schedule })}\n`);
      process.exitCode = exitCode(r.result);
    });

  program.command('detect')
    .description('the race detector over a saved trace (xensim run --trace FILE): unsynchronised read-then-write, watch-then-read windows, writes by a side that does not own the node')
    .argument('<tracefile>')
    .option('--kind <kinds>', `only these kinds, comma-separated (${RACE_KINDS.join(', ')})`)
    .option('--json', 'one finding per line as JSON')
    .action((file: string, o: { kind?: string; json?: boolean }) => {
      let events: TraceRecord[];
      try {
        ({ events } = readTraceFile(file));
      } catch (e) {
        die(`${file}: ${e instanceof Error ? e.message : String(e)}`);
      }
      const kinds = o.kind?.split(',').map((k) => k.trim());
      const bad = kinds?.find((k) => !(RACE_KINDS as readonly string[]).includes(k));
      if (bad) die(`--kind ${bad}: expected one of ${RACE_KINDS.join(', ')}`);
      const found = detectRaces(events as never, kinds ? { kinds: kinds as never } : {});
      if (o.json) process.stdout.write(found.map((f) => `${JSON.stringify(f)}\n`).join(''));
      else process.stdout.write(racesText(found));
    });

  program.command('swarm')
    .description('run many seeds of scenarios (names or files) in parallel; failures grouped by signature, with replay commands')
    .argument('<scenarios...>')
    .option('--seeds <n>', 'how many seeds', int, 100)
    .option('--first-seed <n>', 'first seed', int, 1)
    .option('--shard <I/N>', 'run only the I-th (from 0) of N equal parts of the seed range (CI matrix, Indexed Job)', parseShardOption)
    .option('--jobs <n>', 'worker threads', int, 2)
    .option('--variant <name>', 'only this variant (default: every variant of each scenario)')
    .addOption(faultsOption())
    .addOption(faultSwarmOption())
    .addOption(scheduleOption())
    .option('--stop', 'stop each variant at its first failing seed')
    .option('--json <file>', 'every seed\'s result as a JSON line (- for stdout; the summary then goes to stderr)')
    .option('--keep <dir>', 'write the shortest failing run of each variant there (trace, perfetto, log)')
    .option('--junit <file>', 'JUnit XML for CI')
    .action(async (names: string[], o: {
      seeds: number; firstSeed: number; shard?: { index: number; of: number }; jobs: number; variant?: string; faults: string; faultSwarm?: boolean;
      schedule: string; stop?: boolean; json?: string; keep?: string; junit?: string;
    }) => {
      const loaded = await scenariosOrDie(names);
      const faults = faultSelectionOrDie(o, loaded);
      scheduleOrDie(o.schedule);
      const range = shardSeeds(o.firstSeed, o.seeds, o.shard);
      // pct:D without K: each scenario's K is the steps of its default schedule, measured once
      // (at seed 1, as `run` does, so every shard and a single run draw the same priorities).
      const scenarios = await Promise.all(loaded.map(async ({ def, file }) => ({
        name: def.name, file, variants: o.variant ? [o.variant] : Object.keys(def.variants ?? { fixed: {} }), expect: def.expect,
        schedule: await withMeasuredSteps(def, o.schedule, 1),
      })));
      const human = o.json === '-' ? process.stderr : process.stdout;
      const json = o.json === undefined ? undefined : o.json === '-' ? process.stdout : createWriteStream(o.json);
      const total = scenarios.reduce((n, s) => n + s.variants.length * range.count, 0);
      const { SingleBar, Presets } = (await import('cli-progress')).default;
      const bar = new SingleBar({ format: 'swarm [{bar}] {value}/{total} runs | {failures} failing | {eta}s left', hideCursor: true }, Presets.legacy);
      let failing = 0;
      bar.start(total, 0, { failures: 0 });
      const report = await swarm({
        scenarios, seeds: range.count, firstSeed: range.first, jobs: o.jobs, faults, schedule: o.schedule, stopAtFirstFailure: o.stop,
        onResult: (a) => {
          if (a.result !== 'SUCCESS') failing++;
          json?.write(`${JSON.stringify(swarmLine(a, scenarios.find((s) => s.name === a.scenario && s.file === a.file)?.expect?.[a.variant] ?? 'pass'))}\n`);
          bar.increment(1, { failures: failing });
        },
      });
      bar.stop();
      if (json && json !== process.stdout) await new Promise<void>((r) => (json as NodeJS.WritableStream).end(r));
      if (o.shard) human.write(`shard ${o.shard.index}/${o.shard.of}: seeds ${range.first}..${range.first + range.count - 1}\n`);
      printSummary(report.summaries, human);
      if (o.keep) {
        for (const s of report.summaries) {
          if (!s.shortest) continue;
          mkdirSync(o.keep, { recursive: true });
          const def = (await findLoaded(s.scenario, s.file))!;
          const r = await runScenario(def, { seed: s.shortest.seed, variant: s.variant, faults, schedule: o.schedule });
          const base = join(o.keep, `${s.scenario}-${s.variant}-seed${s.shortest.seed}`);
          writeOutputs(r, { trace: `${base}.jsonl`, perfetto: `${base}.perfetto.json`, log: `${base}.log` }, s.file);
          human.write(`kept ${s.scenario} [${s.variant}]: ${base}.{jsonl,perfetto.json,log}\n`);
        }
      }
      const perMin = report.runs / (report.wallMs / 60000);
      human.write(`${report.runs} runs in ${(report.wallMs / 1000).toFixed(1)} s (${Math.round(perMin)} seeds/min, ${o.jobs} jobs)\n`);
      if (o.junit) swarmJunit(report.summaries, o.junit);
      // One shard not finding a buggy variant's failure is no verdict: swarm-merge gives that one.
      process.exitCode = exitCode(verdictResult(o.shard ? report.summaries.filter((s) => s.expect === 'pass') : report.summaries));
    });

  program.command('swarm-merge')
    .description('join the --json results of several swarms (shards of one seed range) into one summary')
    .argument('<files...>')
    .option('--json <file>', 'the joined results as JSON lines (- for stdout; the summary then goes to stderr)')
    .option('--junit <file>', 'JUnit XML for CI')
    .action((files: string[], o: { json?: string; junit?: string }) => {
      const lines: SwarmLine[] = [];
      for (const f of files) {
        try {
          lines.push(...parseSwarmLines(readFileSync(f, 'utf8'), f));
        } catch (e) {
          die(e instanceof Error ? e.message : String(e));
        }
      }
      const key = variantKey;
      // In the order the variants first appear (a swarm queues them in the scenario's order).
      const firstSeen = new Map<string, number>();
      for (const [i, l] of lines.entries()) if (!firstSeen.has(key(l))) firstSeen.set(key(l), i);
      const summaries = summarise(lines, (a) => (a as SwarmLine).expect);
      const human = o.json === '-' ? process.stderr : process.stdout;
      if (o.json) {
        const seen = new Set<string>();
        const text = lines.filter((l) => {
          const k = `${key(l)}\0${l.seed}\0${JSON.stringify(l.faultSelection)}`;
          return !seen.has(k) && seen.add(k);
        }).sort((a, b) => firstSeen.get(key(a))! - firstSeen.get(key(b))! || a.seed - b.seed).map((l) => `${JSON.stringify(l)}\n`).join('');
        if (o.json === '-') process.stdout.write(text);
        else writeFileSync(o.json, text);
      }
      printSummary(summaries, human);
      human.write(`${summaries.reduce((n, s) => n + s.runs, 0)} runs from ${files.length} files\n`);
      if (o.junit) swarmJunit(summaries, o.junit);
      process.exitCode = exitCode(verdictResult(summaries));
    });

  program.command('replay')
    .description('run again what a --trace file recorded and check the trace is byte-identical')
    .argument('<file>')
    .option('--log <file>', 'one line per event of the replay (- for stdout)')
    .addOption(onlyOption())
    .addOption(hideOption())
    .addOption(domainOption())
    .option('--explain', 'the --log in sentences: each event with the Xen/Linux function it models')
    .action(async (file: string, o: { log?: string; only?: string[]; hide?: string[]; domain?: string[]; explain?: boolean }) => {
      const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
      const header = JSON.parse(lines[0] ?? '{}') as TraceHeader;
      const footer = JSON.parse(lines[lines.length - 1] ?? '{}') as TraceFooter;
      if (header.kind !== 'run' || footer.kind !== 'end') die(`${file} is not a trace written by xensim run --trace`);
      const def = await findLoaded(header.scenario, header.file).catch((e: unknown) => die(e instanceof Error ? e.message : String(e)));
      if (!def) die(`no scenario "${header.scenario}"${header.file ? ` in ${header.file}` : ''}`);
      const r = await runScenario(def, {
        seed: header.seed, variant: header.variant, faults: header.faultSelection ?? DEFAULT_FAULTS, schedule: header.schedule,
      });
      writeOutputs(r, { log: o.log, only: o.only, hide: o.hide, domain: o.domain, explain: o.explain });
      process.stdout.write(`${header.scenario} seed ${header.seed} variant ${header.variant}; faults: ${describeFaults(r.faults)}\n`);
      process.stdout.write(`${resultLine(r)}\n`);
      if (r.hash === footer.hash) {
        process.stdout.write(`replayed exactly: ${r.events} events, sha256 ${r.hash}\n`);
        process.exitCode = exitCode(r.result);
        return;
      }
      const recorded = lines.slice(1, -1);
      const now = r.trace.map((e: TraceEvent) => JSON.stringify(e));
      let i = 0;
      while (i < recorded.length && i < now.length && recorded[i] === now[i]) i++;
      process.stdout.write(`DIVERGED at event ${i}:\n  recorded: ${recorded[i] ?? '(end)'}\n  replay:   ${now[i] ?? '(end)'}\n`);
      process.exitCode = RUNNER_ERROR_EXIT;
    });
}

function parseShardOption(v: string): { index: number; of: number } {
  try {
    return parseShard(v);
  } catch (e) {
    throw new InvalidArgumentError(e instanceof Error ? e.message : String(e));
  }
}
