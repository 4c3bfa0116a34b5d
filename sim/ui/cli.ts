// `xensim ui [SCENARIO | TRACEFILE]`: run a scenario in lockstep (or read a `--trace` file) and
// serve it as a page to step through, in Xen's names. `xensim ui --host CONFIG`: boot the host a
// config describes, free-running as `xensim up` does, and show it live as its events come.
// Prints the URL; runs until interrupted.
import { existsSync, readFileSync } from 'node:fs';
import { type Command, InvalidArgumentError } from 'commander';
import { ConfigError, loadHostConfig } from '../config.ts';
import { HostRuntime } from '../host-runtime.ts';
import { RUNNER_ERROR_EXIT } from '../report/xtf.ts';
import { faultSelectionOrDie, faultsOption } from '../scenario/cli.ts';
import { resolveScenarioArg } from '../scenario/load.ts';
import { runScenario } from '../scenario/run.ts';
import type { TraceRecord } from '../trace/events.ts';
import { readTraceFile } from '../trace/trace-file.ts';
import { TraceModel } from './model.ts';
import { startUiServer } from './server.ts';
import { Xl } from '../xl.ts';
import { XlControl } from '../xl-control.ts';

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
};

/** A saved trace rather than a scenario: an existing .jsonl/.json file, or any file starting with a JSON object. */
function isTraceFile(arg: string): boolean {
  if (!existsSync(arg)) return false;
  if (/\.(jsonl|json|ndjson)$/.test(arg)) return true;
  return readFileSync(arg, 'utf8').trimStart().startsWith('{');
}

export function registerUi(program: Command): void {
  program.command('ui')
    .description('a local web page to step through a run in Xen\'s names: a scenario run now in lockstep, or a --trace file')
    .argument('[scenario-or-trace]', 'a scenario name or file, or a trace from `xensim run --trace`', 'boot-and-shutdown')
    .option('--seed <n>', 'seed of the run', int, 1)
    .option('--variant <name>', 'the scenario\'s variant', 'fixed')
    .addOption(faultsOption())
    .option('--no-faults', 'a clean teaching run: no injected faults (same as --faults none)')
    .option('--port <n>', 'TCP port on 127.0.0.1 (0: any free one)', int, 0)
    .option('--host <config>', 'instead: boot the host a YAML config describes (as xensim up, free-running) and show it live')
    .action(async (arg: string, o: { seed: number; variant: string; faults: string | false; port: number; host?: string }) => {
      if (o.host !== undefined) {
        await live(o.host, o.port, o.seed);
        return;
      }
      let events: TraceRecord[];
      let title: string;
      try {
        if (isTraceFile(arg)) {
          ({ events, title } = readTraceFile(arg));
        } else {
          const found = await resolveScenarioArg(arg);
          if (found.length !== 1) throw new Error(`${arg} holds ${found.length} scenarios: pick one with ${arg}#<name>`);
          const faults = faultSelectionOrDie({ faults: o.faults === false ? 'none' : o.faults }, found);
          const r = await runScenario(found[0].def, { seed: o.seed, variant: o.variant, faults });
          events = r.trace as unknown as TraceRecord[];
          title = `${r.scenario} seed ${r.seed}${r.variant === 'fixed' ? '' : ` variant ${r.variant}`}${o.faults === false ? ' (no faults)' : ''}: ${r.result}`;
        }
      } catch (e) {
        process.stderr.write(`xensim: ${e instanceof Error ? e.message : String(e)}\n`);
        process.exit(RUNNER_ERROR_EXIT);
      }
      const ui = await startUiServer(new TraceModel(events, title), o.port);
      process.stdout.write(`${title}: ${events.length} events\nxensim ui: ${ui.url}\n`);
    });
}

/** A free-running host from a config, its trace streamed into the page as it happens. */
async function live(file: string, port: number, seed: number): Promise<void> {
  let cfg;
  try {
    cfg = loadHostConfig(file);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`xensim ui: ${e.message}\n`);
    process.exit(RUNNER_ERROR_EXIT);
  }
  const model = new TraceModel([], `${file} (live)`, true);
  const rt = new HostRuntime({ seed: cfg.seed ?? seed, mode: 'free', trace: (e) => model.append(e as unknown as TraceRecord) });
  const ui = await startUiServer(model, port);
  process.stdout.write(`xensim ui: ${ui.url}\n`);
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void rt.shutdown().finally(() => ui.close().finally(() => process.exit(0)));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  await rt.bootDom0({ profile: cfg.profile ?? 'c' });
  const ctl = new XlControl(new Xl(rt));
  for (const g of cfg.guests) {
    const { domid, name } = await ctl.create(g);
    process.stdout.write(`xensim ui: created ${name} (dom${domid})\n`);
  }
}
