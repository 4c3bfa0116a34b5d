/**
 * How the suite runs its fast-check properties. By default each property starts from a fixed seed,
 * so every run (CI included) checks the same cases and a failure reproduces by running it again.
 * To explore beyond them (a soak), set XENSIM_FC_SEED=random (or a number) and XENSIM_FC_SCALE=N
 * for N times as many cases; fast-check prints the seed and path of any counterexample it finds:
 * `npm run soak`.
 */
import type fc from 'fast-check';

const FIXED_SEED = 0x58454e; // "XEN"

export function property<T>(numRuns: number): fc.Parameters<T> {
  const scale = Number(process.env.XENSIM_FC_SCALE ?? 1);
  if (!Number.isInteger(scale) || scale < 1) throw new Error(`XENSIM_FC_SCALE must be a positive integer, not ${process.env.XENSIM_FC_SCALE}`);
  const env = process.env.XENSIM_FC_SEED;
  const runs = numRuns * scale;
  if (env === 'random') return { numRuns: runs };
  if (env === undefined || env === '') return { numRuns: runs, seed: FIXED_SEED };
  const seed = Number(env);
  if (!Number.isSafeInteger(seed)) throw new Error(`XENSIM_FC_SEED must be an integer or 'random', not ${env}`);
  return { numRuns: runs, seed };
}
