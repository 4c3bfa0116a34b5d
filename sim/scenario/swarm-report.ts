// What a swarm reports, for people and machines: one JSON line per seed, failures grouped by
// signature (the failing expectation or invariant with its numbers taken out), a failure rate
// per variant, and the same summary whether the seeds ran in one swarm or in shards merged later.
import type { FaultSelection, Faults } from './faults.ts';

/** One seed's run, as a swarm worker answers it and as a JSON line records it. */
export interface SwarmAnswer {
  readonly scenario: string;
  /** The scenario's module, for scenarios outside the library (absolute path). */
  readonly file?: string;
  readonly variant: string;
  readonly seed: number;
  readonly faultSelection: FaultSelection;
  /** What the seed drew (in swarm mode, the kinds it kept). */
  readonly faults: Faults;
  /** The schedule strategy (absent: random). */
  readonly schedule?: string;
  /** Steps where the scheduler did not take the default choice. */
  readonly preemptions?: number;
  readonly result: string;
  readonly message?: string;
  readonly step?: string;
  readonly events: number;
  readonly hash: string;
  readonly wallMs: number;
}

/** A JSON line of `--json`: a run, with what a reader needs without loading the scenario. */
export interface SwarmLine extends SwarmAnswer {
  readonly kind: 'run';
  /** What the variant should do over many seeds: pass every one, or fail some. */
  readonly expect: 'pass' | 'fail';
  /** The failure's signature (absent on SUCCESS). */
  readonly signature?: string;
  readonly replay: string;
}

/**
 * A failure's signature: its result and message with what varies from seed to seed taken out
 * (numbers, hex, quoted values), so one bug reached by many seeds counts as one group.
 */
export function failureSignature(a: { result: string; message?: string }): string {
  const msg = (a.message ?? '(no message)')
    .replace(/0x[0-9a-f]+|\d+(\.\d+)?/gi, (m) => (m.startsWith('0x') || m.startsWith('0X') ? '0x#' : '#'))
    .replace(/\s+/g, ' ')
    .trim();
  return `${a.result}: ${msg}`;
}

export interface SignatureGroup {
  readonly signature: string;
  readonly count: number;
  /** The lowest failing seed with it. */
  readonly seed: number;
  /** The failing run with it and the fewest trace events. */
  readonly shortest: SwarmAnswer;
}

export interface VariantSummary {
  readonly scenario: string;
  readonly file?: string;
  readonly variant: string;
  readonly expect: 'pass' | 'fail';
  readonly runs: number;
  readonly failures: SwarmAnswer[];
  /** failures / runs. */
  readonly rate: number;
  /** The first failing seed in seed order (the "seeds needed"). */
  readonly firstFailingSeed?: number;
  /** The failing run with the fewest trace events. */
  readonly shortest?: SwarmAnswer;
  /** Failures by signature, most frequent first. */
  readonly signatures: SignatureGroup[];
  /** As expected: a fixed variant passed every seed, a buggy one failed some. */
  readonly ok: boolean;
  readonly verdict: 'ok' | 'FAILING' | 'found' | 'NOT FOUND';
}

export const variantKey = (a: { scenario: string; file?: string; variant: string }): string => `${a.file ?? ''}\0${a.scenario}\0${a.variant}`;

/**
 * Summaries per scenario and variant, in first-seen order. A seed that appears twice (two
 * overlapping shards) counts once.
 */
export function summarise(answers: readonly SwarmAnswer[], expectOf: (a: SwarmAnswer) => 'pass' | 'fail'): VariantSummary[] {
  const byVariant = new Map<string, Map<string, SwarmAnswer>>();
  for (const a of answers) {
    const k = variantKey(a);
    let m = byVariant.get(k);
    if (!m) byVariant.set(k, (m = new Map()));
    m.set(`${a.seed}\0${JSON.stringify(a.faultSelection)}`, a);
  }
  const out: VariantSummary[] = [];
  for (const m of byVariant.values()) {
    const list = [...m.values()].sort((a, b) => a.seed - b.seed);
    const first = list[0];
    const failures = list.filter((a) => a.result !== 'SUCCESS');
    const byEvents = (a: SwarmAnswer, b: SwarmAnswer): number => a.events - b.events || a.seed - b.seed;
    const groups = new Map<string, SwarmAnswer[]>();
    for (const f of failures) {
      const sig = failureSignature(f);
      groups.set(sig, [...(groups.get(sig) ?? []), f]);
    }
    const signatures = [...groups.entries()]
      .map(([signature, fs]) => ({ signature, count: fs.length, seed: fs[0].seed, shortest: [...fs].sort(byEvents)[0] }))
      .sort((a, b) => b.count - a.count || a.seed - b.seed);
    const expect = expectOf(first);
    const found = failures.length > 0;
    out.push({
      scenario: first.scenario, file: first.file, variant: first.variant, expect, runs: list.length, failures,
      rate: list.length ? failures.length / list.length : 0,
      firstFailingSeed: failures[0]?.seed, shortest: [...failures].sort(byEvents)[0], signatures,
      ok: expect === 'fail' ? found : !found,
      verdict: expect === 'fail' ? (found ? 'found' : 'NOT FOUND') : (found ? 'FAILING' : 'ok'),
    });
  }
  return out;
}

/**
 * `--shard I/N` (I from 0, as a Kubernetes Indexed Job's JOB_COMPLETION_INDEX): the I-th of N
 * contiguous, near-equal parts of the seed range. The parts cover every seed exactly once.
 */
export function shardSeeds(first: number, count: number, shard: { index: number; of: number } | undefined): { first: number; count: number } {
  if (!shard) return { first, count };
  const { index, of } = shard;
  if (!Number.isInteger(of) || of < 1 || !Number.isInteger(index) || index < 0 || index >= of) {
    throw new RangeError(`shard ${index}/${of}: need 0 <= I < N`);
  }
  const base = Math.floor(count / of);
  const extra = count % of;
  const start = first + index * base + Math.min(index, extra);
  return { first: start, count: base + (index < extra ? 1 : 0) };
}

export function parseShard(v: string): { index: number; of: number } {
  const m = /^(\d+)\/(\d+)$/.exec(v);
  if (!m) throw new RangeError(`--shard ${v}: expected I/N, e.g. 0/4`);
  const shard = { index: Number(m[1]), of: Number(m[2]) };
  shardSeeds(1, 1, shard);
  return shard;
}

/** Reads the run lines of `--json` files (other lines, and blank ones, are skipped). */
export function parseSwarmLines(text: string, source: string): SwarmLine[] {
  const out: SwarmLine[] = [];
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    let x: unknown;
    try {
      x = JSON.parse(line);
    } catch {
      throw new SyntaxError(`${source}:${i + 1}: not JSON`);
    }
    const r = x as Partial<SwarmLine>;
    if (r.kind !== 'run') continue;
    if (typeof r.scenario !== 'string' || typeof r.variant !== 'string' || typeof r.seed !== 'number' || typeof r.result !== 'string'
      || (r.expect !== 'pass' && r.expect !== 'fail') || typeof r.faultSelection?.spec !== 'string') {
      throw new SyntaxError(`${source}:${i + 1}: not a swarm run line`);
    }
    out.push(r as SwarmLine);
  }
  return out;
}
