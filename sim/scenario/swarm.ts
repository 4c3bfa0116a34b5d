// The swarm: many seeds of some scenarios, spread over worker threads, each failing seed
// reported with the command that replays it, and the shortest failing run (fewest trace events)
// kept per scenario and variant.
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { SwarmAnswer, SwarmJob } from './swarm-worker.ts';

/** '.ts' when running the sources under tsx, '.js' when running dist/: workers load the same kind. */
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const WORKER = new URL(`./swarm-worker${EXT}`, import.meta.url);
const PRELOAD = fileURLToPath(new URL('../../scripts/tsx-preload.mjs', import.meta.url));

export interface SwarmOptions {
  readonly scenarios: readonly { readonly name: string; readonly variants: readonly string[] }[];
  /** Seeds first..first+count-1. */
  readonly firstSeed?: number;
  readonly seeds: number;
  readonly jobs: number;
  /** Stop a scenario's variant at its first failing seed (how many seeds it took to find). */
  readonly stopAtFirstFailure?: boolean;
  readonly onResult?: (a: SwarmAnswer) => void;
}

export interface VariantSummary {
  readonly scenario: string;
  readonly variant: string;
  readonly runs: number;
  readonly failures: SwarmAnswer[];
  /** The first failing seed in seed order (the "seeds needed"). */
  readonly firstFailingSeed?: number;
  /** The failing run with the fewest trace events. */
  readonly shortest?: SwarmAnswer;
}

export interface SwarmReport {
  readonly summaries: VariantSummary[];
  readonly runs: number;
  readonly wallMs: number;
}

function workerExecArgv(): string[] {
  const argv = [...process.execArgv];
  if (EXT === '.ts' && !argv.some((a) => a.includes('tsx-preload'))) argv.push('--import', PRELOAD);
  return argv;
}

export async function swarm(opts: SwarmOptions): Promise<SwarmReport> {
  const t0 = performance.now();
  const first = opts.firstSeed ?? 1;
  const queue: SwarmJob[] = [];
  for (const s of opts.scenarios) {
    for (const variant of s.variants) {
      for (let seed = first; seed < first + opts.seeds; seed++) queue.push({ scenario: s.name, variant, seed });
    }
  }
  const key = (j: SwarmJob): string => `${j.scenario}\0${j.variant}`;
  const answers = new Map<string, SwarmAnswer[]>();
  const stopped = new Set<string>();
  let runs = 0;
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
        runs++;
        const list = answers.get(key(a)) ?? [];
        list.push(a);
        answers.set(key(a), list);
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
  const summaries: VariantSummary[] = [];
  for (const s of opts.scenarios) {
    for (const variant of s.variants) {
      const list = (answers.get(`${s.name}\0${variant}`) ?? []).sort((a, b) => a.seed - b.seed);
      const failures = list.filter((a) => a.result !== 'SUCCESS');
      const shortest = [...failures].sort((a, b) => a.events - b.events || a.seed - b.seed)[0];
      summaries.push({ scenario: s.name, variant, runs: list.length, failures, firstFailingSeed: failures[0]?.seed, shortest });
    }
  }
  return { summaries, runs, wallMs: Math.round(performance.now() - t0) };
}

/** The command that replays one run exactly. */
export function replayCommand(a: { scenario: string; variant: string; seed: number }): string {
  return `npx xensim run ${a.scenario} --seed ${a.seed}${a.variant === 'fixed' ? '' : ` --variant ${a.variant}`}`;
}
