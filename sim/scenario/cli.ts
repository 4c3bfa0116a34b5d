// `xensim list | run | swarm | replay`: the scenario engine from the command line. Exit codes are
// xtf-runner's (SUCCESS 0, SKIP 3, ERROR 4, FAILURE 5, CRASH 6; 1 for the runner's own errors).
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { SCENARIOS, findScenario } from '../../scenarios/index.ts';
import type { TraceEvent } from '../host-runtime.ts';
import { toJUnitXml, type JUnitCase } from '../report/junit.ts';
import { exitCode, RUNNER_ERROR_EXIT, worstOf, XtfResult } from '../report/xtf.ts';
import { toMermaidSequence } from '../trace/mermaid.ts';
import { perfettoJson, toPerfetto } from '../trace/perfetto.ts';
import { toTextLog } from '../trace/text-log.ts';
import { describeFaults } from './faults.ts';
import { type RunResult, runScenario } from './run.ts';
import type { ScenarioDef } from './scenario.ts';
import { replayCommand, swarm } from './swarm.ts';

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
};

function scenarioOrDie(name: string): ScenarioDef {
  const def = findScenario(name);
  if (!def) {
    process.stderr.write(`xensim: no scenario "${name}" (see: xensim list)\n`);
    process.exit(RUNNER_ERROR_EXIT);
  }
  return def;
}

/** The first line of a --trace file: what ran, so `xensim replay` can run it again. */
interface TraceHeader { kind: 'run'; scenario: string; seed: number; variant: string; faults: unknown }
interface TraceFooter { kind: 'end'; result: string; hash: string; events: number }

export interface TraceOutputs {
  readonly trace?: string;
  readonly perfetto?: string;
  readonly mermaid?: string;
  readonly device?: string;
  readonly log?: string;
}

/** Writes a run's trace in the forms asked for. */
export function writeOutputs(r: RunResult, o: TraceOutputs): void {
  if (o.trace) {
    const header: TraceHeader = { kind: 'run', scenario: r.scenario, seed: r.seed, variant: r.variant, faults: r.faults };
    const footer: TraceFooter = { kind: 'end', result: r.result, hash: r.hash, events: r.events };
    const lines = [JSON.stringify(header), ...r.trace.map((e) => JSON.stringify(e)), JSON.stringify(footer)];
    writeFileSync(o.trace, `${lines.join('\n')}\n`);
  }
  if (o.perfetto) writeFileSync(o.perfetto, perfettoJson(toPerfetto(r.trace)));
  if (o.mermaid) writeFileSync(o.mermaid, `${toMermaidSequence(r.trace, { filter: o.device })}\n`);
  if (o.log) {
    const text = toTextLog(r.trace);
    if (o.log === '-') process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    else writeFileSync(o.log, text);
  }
}

function resultLine(r: RunResult): string {
  const where = r.step ? ` (in step "${r.step}")` : '';
  return `${r.result}: ${r.scenario} seed ${r.seed}${r.variant === 'fixed' ? '' : ` variant ${r.variant}`}` +
    `${r.message ? ` - ${r.message}${where}` : ''} [${r.events} events, ${(r.virtualNs / 1e9).toFixed(3)} s virtual, ${r.wallMs} ms]`;
}

function junitCase(r: { scenario: string; variant: string; seed: number; result: string; message?: string; wallMs: number }): JUnitCase {
  return {
    name: `${r.scenario}${r.variant === 'fixed' ? '' : `[${r.variant}]`} seed ${r.seed}`, classname: `xensim.${r.scenario}`,
    timeSeconds: r.wallMs / 1000, result: r.result as XtfResult, message: r.message, replay: replayCommand(r),
  };
}

export function registerScenarios(program: Command): void {
  program.command('list')
    .description('list the scenarios (planted races show their variants and source)')
    .action(() => {
      for (const s of SCENARIOS) {
        const variants = Object.keys(s.variants ?? { fixed: {} });
        const race = s.race ? ` [${s.race.id} ${s.race.name}; ${s.race.source}]` : '';
        process.stdout.write(`${s.name.padEnd(36)} ${s.title}${race}\n`);
        process.stdout.write(`${''.padEnd(36)} tags: ${(s.tags ?? []).join(', ') || '-'}; variants: ${variants.join(', ')}\n`);
      }
    });

  program.command('run')
    .description('run one scenario with one seed; exit code as xtf-runner')
    .argument('<scenario>')
    .option('--seed <n>', 'seed (scheduler, PRNGs, fault draw)', int, 1)
    .option('--variant <name>', 'fixed (default) or a planted race\'s buggy variant', 'fixed')
    .option('--trace <file>', 'the trace as JSON lines (replayable with `xensim replay`)')
    .option('--perfetto <file>', 'Chrome/Perfetto trace JSON (open in ui.perfetto.dev)')
    .option('--mermaid <file>', 'a Mermaid sequence diagram (of --device, or everything)')
    .option('--device <name>', 'the device the diagram shows, e.g. vbd/51712')
    .option('--log <file>', 'one line per event (- for stdout)')
    .option('--junit <file>', 'JUnit XML for CI')
    .option('-q, --quiet', 'only the result line')
    .action(async (name: string, o: { seed: number; variant: string; junit?: string; quiet?: boolean } & TraceOutputs) => {
      const def = scenarioOrDie(name);
      const log = o.quiet ? undefined : (l: string): void => void process.stdout.write(`${l}\n`);
      const r = await runScenario(def, { seed: o.seed, variant: o.variant, log });
      writeOutputs(r, o);
      process.stdout.write(`${resultLine(r)}\n`);
      if (r.result !== XtfResult.SUCCESS) process.stdout.write(`replay: ${replayCommand(r)}\n`);
      if (o.junit) writeFileSync(o.junit, toJUnitXml([{ name: 'xensim', cases: [junitCase(r)] }]));
      process.exitCode = exitCode(r.result);
    });

  program.command('swarm')
    .description('run many seeds of scenarios in parallel; report failing seeds with replay commands')
    .argument('<scenarios...>')
    .option('--seeds <n>', 'how many seeds', int, 100)
    .option('--first-seed <n>', 'first seed', int, 1)
    .option('--jobs <n>', 'worker threads', int, 2)
    .option('--variant <name>', 'only this variant (default: every variant of each scenario)')
    .option('--stop', 'stop each variant at its first failing seed')
    .option('--keep <dir>', 'write the shortest failing run of each variant there (trace, perfetto, log)')
    .option('--junit <file>', 'JUnit XML for CI')
    .action(async (names: string[], o: { seeds: number; firstSeed: number; jobs: number; variant?: string; stop?: boolean; keep?: string; junit?: string }) => {
      const defs = names.map(scenarioOrDie);
      const scenarios = defs.map((d) => ({ name: d.name, variants: o.variant ? [o.variant] : Object.keys(d.variants ?? { fixed: {} }) }));
      const total = scenarios.reduce((n, s) => n + s.variants.length * o.seeds, 0);
      const { SingleBar, Presets } = (await import('cli-progress')).default;
      const bar = new SingleBar({ format: 'swarm [{bar}] {value}/{total} runs | {failures} failing | {eta}s left', hideCursor: true }, Presets.legacy);
      let failing = 0;
      bar.start(total, 0, { failures: 0 });
      const report = await swarm({
        scenarios, seeds: o.seeds, firstSeed: o.firstSeed, jobs: o.jobs, stopAtFirstFailure: o.stop,
        onResult: (a) => {
          if (a.result !== 'SUCCESS') failing++;
          bar.increment(1, { failures: failing });
        },
      });
      bar.stop();
      const results: XtfResult[] = [];
      const cases: JUnitCase[] = [];
      for (const s of report.summaries) {
        const def = findScenario(s.scenario)!;
        const expected = def.expect?.[s.variant] ?? 'pass';
        const found = s.failures.length > 0;
        const verdict = expected === 'fail' ? (found ? 'found' : 'NOT FOUND') : (found ? 'FAILING' : 'ok');
        process.stdout.write(`${s.scenario} [${s.variant}]: ${s.runs} runs, ${s.failures.length} failing - ${verdict}` +
          `${s.firstFailingSeed !== undefined ? ` (first at seed ${s.firstFailingSeed})` : ''}\n`);
        for (const f of s.failures.slice(0, 5)) {
          process.stdout.write(`  seed ${f.seed}: ${f.result} ${f.message ?? ''}\n    replay: ${replayCommand(f)}\n`);
        }
        if (s.failures.length > 5) process.stdout.write(`  ... and ${s.failures.length - 5} more\n`);
        if (s.shortest) {
          process.stdout.write(`  shortest failing run: seed ${s.shortest.seed} (${s.shortest.events} events)\n`);
          if (o.keep) {
            mkdirSync(o.keep, { recursive: true });
            const r = await runScenario(def, { seed: s.shortest.seed, variant: s.variant });
            const base = join(o.keep, `${s.scenario}-${s.variant}-seed${s.shortest.seed}`);
            writeOutputs(r, { trace: `${base}.jsonl`, perfetto: `${base}.perfetto.json`, log: `${base}.log` });
            process.stdout.write(`  kept: ${base}.{jsonl,perfetto.json,log}\n`);
          }
        }
        // A buggy variant that fails is the expected outcome; one that never fails is the failure.
        results.push(expected === 'fail' ? (found ? XtfResult.SUCCESS : XtfResult.FAILURE) : (found ? XtfResult.FAILURE : XtfResult.SUCCESS));
        cases.push({
          name: `${s.scenario}[${s.variant}] x${s.runs} seeds`, classname: `xensim.swarm.${s.scenario}`, timeSeconds: 0,
          result: results[results.length - 1],
          message: `${s.failures.length} failing seeds, expected ${expected}`,
          replay: s.shortest ? replayCommand(s.shortest) : undefined,
        });
      }
      const perMin = report.runs / (report.wallMs / 60000);
      process.stdout.write(`${report.runs} runs in ${(report.wallMs / 1000).toFixed(1)} s (${Math.round(perMin)} seeds/min, ${o.jobs} jobs)\n`);
      if (o.junit) writeFileSync(o.junit, toJUnitXml([{ name: 'xensim swarm', cases }]));
      process.exitCode = exitCode(worstOf(results));
    });

  program.command('replay')
    .description('run again what a --trace file recorded and check the trace is byte-identical')
    .argument('<file>')
    .option('--log <file>', 'one line per event of the replay (- for stdout)')
    .action(async (file: string, o: { log?: string }) => {
      const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
      const header = JSON.parse(lines[0] ?? '{}') as TraceHeader;
      const footer = JSON.parse(lines[lines.length - 1] ?? '{}') as TraceFooter;
      if (header.kind !== 'run' || footer.kind !== 'end') {
        process.stderr.write(`xensim: ${file} is not a trace written by xensim run --trace\n`);
        process.exit(RUNNER_ERROR_EXIT);
      }
      const def = scenarioOrDie(header.scenario);
      const r = await runScenario(def, { seed: header.seed, variant: header.variant });
      writeOutputs(r, { log: o.log });
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
