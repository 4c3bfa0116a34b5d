// Runs the oracle's C client benchmark, xs-bench (../shared/oracle/xs-bench.c, built into
// $XS_ORACLE_BIN), against a server and parses its JSON lines.
import { run } from './common.ts';
import { XS_BENCH } from './xenstored-servers.ts';

/** xs-bench's phases, in its own order ("watch" must stay last: it starts a reader thread). */
export const PHASES = ['write', 'read', 'wr+rd', 'dir', 'ta', 'watch'] as const;
export type Phase = (typeof PHASES)[number];

export const PHASE_NOTES: Readonly<Record<Phase, string>> = {
  write: 'XS_WRITE of a small value',
  read: 'XS_READ',
  'wr+rd': 'write then read (one op = the pair)',
  dir: 'XS_DIRECTORY of 100 children',
  ta: 'transaction: start, read, write, commit',
  watch: 'write until its watch event arrives',
};

export interface PhaseResult {
  readonly phase: string;
  readonly n: number;
  readonly ops_per_s: number;
  readonly p50_us: number;
  readonly p99_us: number;
  readonly max_us: number;
}

export interface XsBenchOptions {
  /** Operations per phase (-n). */
  readonly n: number;
  /** Base path (-p); default /xs-bench-<pid>. */
  readonly prefix?: string;
  /** Phases (-P); default all. */
  readonly phases?: readonly string[];
  /** Warm-up operations per phase (-w). */
  readonly warm?: number;
}

/** One xs-bench run; resolves to its per-phase results, or throws with its output. */
export async function xsBench(env: NodeJS.ProcessEnv, o: XsBenchOptions): Promise<PhaseResult[]> {
  const args = ['-j', '-n', String(o.n)];
  if (o.prefix) args.push('-p', o.prefix);
  if (o.phases) args.push('-P', o.phases.join(','));
  if (o.warm !== undefined) args.push('-w', String(o.warm));
  const r = await run(XS_BENCH, args, { env, timeoutMs: 300000 });
  if (r.code !== 0) {
    throw new Error(`xs-bench ${args.join(' ')} against ${env.XENSTORED_PATH} failed (exit ${r.code}):\n` +
      `${r.stdout}${r.stderr}`);
  }
  return r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as PhaseResult);
}
