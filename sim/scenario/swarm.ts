// The swarm: many seeds of some scenarios, spread over worker threads, each failing seed
// reported with the command that replays it, failures grouped by signature, and the shortest
// failing run (fewest trace events) kept per scenario and variant.
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { DEFAULT_FAULTS, faultArgs, type FaultSelection } from './faults.ts';
import { scenarioArg } from './load.ts';
import { type SwarmAnswer, summarise, variantKey, type VariantSummary } from './swarm-report.ts';
import type { SwarmJob } from './swarm-worker.ts';

export type { SwarmAnswer, VariantSummary } from './swarm-report.ts';

/** '.ts' when running the sources under tsx, '.js' when running dist/: workers load the same kind. */
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const WORKER = new URL(`./swarm-worker${EXT}`, import.meta.url);
const PRELOAD = fileURLToPath(new URL('../../scripts/tsx-preload.mjs', import.meta.url));

export interface SwarmScenario {
  readonly name: string;
  /** The scenario's module, for one outside the library. */
  readonly file?: string;
  readonly variants: readonly string[];
  /** expect per variant (default: 'pass'). */
  readonly expect?: Readonly<Record<string, 'pass' | 'fail'>>;
  /** This scenario's schedule, if not the swarm's (e.g. pct with its own measured K). */
  readonly schedule?: string;
}

export interface SwarmOptions {
  readonly scenarios: readonly SwarmScenario[];
  /** Seeds first..first+count-1. */
  readonly firstSeed?: number;
  readonly seeds: number;
  readonly jobs: number;
  /** Which faults each seed may draw (default: each scenario's own). */
  readonly faults?: FaultSelection;
  /** The scheduler strategy every seed runs with (default random). */
  readonly schedule?: string;
  /** Stop a scenario's variant at its first failing seed (how many seeds it took to find). */
  readonly stopAtFirstFailure?: boolean;
  readonly onResult?: (a: SwarmAnswer) => void;
}

export interface SwarmReport {
  readonly summaries: VariantSummary[];
  readonly answers: SwarmAnswer[];
  readonly runs: number;
  readonly wallMs: number;
}

function workerExecArgv(): string[] {
  const argv = [...process.execArgv];
  // Running from TypeScript, workers need the loader too; compiled, they do not (a user's .ts
  // scenario registers it on demand, see load.ts).
  if (EXT === '.ts' && !argv.some((a) => a.includes('tsx-preload'))) argv.push('--import', PRELOAD);
  return argv;
}

export async function swarm(opts: SwarmOptions): Promise<SwarmReport> {
  const t0 = performance.now();
  const first = opts.firstSeed ?? 1;
  const faults = opts.faults ?? DEFAULT_FAULTS;
  const queue: SwarmJob[] = [];
  for (const s of opts.scenarios) {
    for (const variant of s.variants) {
      for (let seed = first; seed < first + opts.seeds; seed++) queue.push({ scenario: s.name, file: s.file, variant, seed, faults, schedule: s.schedule ?? opts.schedule });
    }
  }
  const key = variantKey;
  const answers: SwarmAnswer[] = [];
  const stopped = new Set<string>();
  const workers = Array.from({ length: Math.max(1, Math.min(opts.jobs, queue.length)) }, () =>
    new Worker(WORKER, { execArgv: workerExecArgv() }));
  try {
    await Promise.all(workers.map((w) => new Promise<void>((resolve, reject) => {
      const next = (): void => {
        let job = queue.shift();
        // A variant already caught needs no more seeds when asked to stop early.
        while (job && stopped.has(key(job))) job = queue.shift();
        if (!job) {
          resolve();
          return;
        }
        w.postMessage(job);
      };
      w.on('message', (a: SwarmAnswer) => {
        answers.push(a);
        if (a.result !== 'SUCCESS' && opts.stopAtFirstFailure) stopped.add(key(a));
        opts.onResult?.(a);
        next();
      });
      w.on('error', reject);
      next();
    })));
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  const expectOf = new Map(opts.scenarios.map((s) => [key({ scenario: s.name, file: s.file, variant: '' }), s.expect ?? {}]));
  const order = opts.scenarios.flatMap((s) => s.variants.map((variant) => key({ scenario: s.name, file: s.file, variant })));
  const summaries = summarise(answers, (a) => expectOf.get(key({ ...a, variant: '' }))?.[a.variant] ?? 'pass')
    .sort((a, b) => order.indexOf(key(a)) - order.indexOf(key(b)));
  return { summaries, answers, runs: answers.length, wallMs: Math.round(performance.now() - t0) };
}

/** The command that replays one run exactly. */
export function replayCommand(a: { scenario: string; file?: string; variant: string; seed: number; faultSelection?: FaultSelection; schedule?: string }): string {
  const schedule = a.schedule && a.schedule !== 'random' ? ` --schedule ${a.schedule}` : '';
  return `npx xensim run ${scenarioArg(a)} --seed ${a.seed}${a.variant === 'fixed' ? '' : ` --variant ${a.variant}`}${faultArgs(a.faultSelection)}${schedule}`;
}
