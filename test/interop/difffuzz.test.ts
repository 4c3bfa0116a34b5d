// Differential fuzzing as a regression test: a few fixed seeds of random request scripts
// (dom0 sockets and unprivileged guests, transactions, watches, malformed input) must produce
// the same transcript on xensim as on the real daemon of the same profile, apart from the
// differences listed in difffuzz-known-*.txt; so must every minimised repro in difffuzz-repros/
// (PROFILE-*.txt; open-*.txt are differences not fixed yet, known-*.txt deliberate ones listed in
// difffuzz-known-*.txt). `test/interop/difffuzz-run.sh`
// runs many more seeds.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { PYTHON3, REPO_ROOT, requireOracle, requireTools, run } from '../helpers/daemons.ts';

const FUZZER = path.join(REPO_ROOT, 'test', 'interop', 'xs-difffuzz.py');
const REPROS = path.join(REPO_ROOT, 'test', 'interop', 'difffuzz-repros');
const SEEDS: Record<'c' | 'ocaml', number[]> = { c: [101, 102], ocaml: [201] };
const PROFILES = ['c', 'ocaml'] as const;
const NAME = { c: 'C xenstored', ocaml: 'oxenstored' };

function fuzz(profile: 'c' | 'ocaml', what: string[]): Promise<void> {
  const known = path.join(REPO_ROOT, 'test', 'interop', `difffuzz-known-${profile}.txt`);
  const args = [FUZZER, '--profile', profile, '--start', ...what, '--known', known];
  return run(PYTHON3, args).then((r) => {
    assert.equal(r.code, 0, `difference found (replay: ${PYTHON3} ${args.join(' ')}):\n${r.stdout.slice(-6000)}\n${r.stderr.slice(-2000)}`);
  });
}

describe('interop: differential fuzzing against the real daemons', function () {
  before(() => {
    requireOracle();
    requireTools('xenstored', 'oxenstored', 'python3');
  });

  for (const profile of PROFILES) {
    for (const seed of SEEDS[profile]) {
      it(`profile ${profile}, seed ${seed}: same transcript as ${NAME[profile]}`, () =>
        fuzz(profile, ['--seed', String(seed)]));
    }
  }

  // The repros are short: most of each run is starting the two daemons, so they run a few at a
  // time (started on first use), each test awaiting its own.
  const repros = PROFILES.flatMap((profile) => readdirSync(REPROS)
    .filter((f) => f.startsWith(`${profile}-`) && f.endsWith('.txt')).sort()
    .map((f) => ({ profile, f })));
  let runs: Map<string, Promise<void>> | undefined;
  const started = (f: string): Promise<void> => {
    if (runs === undefined) {
      runs = new Map();
      const queue = [...repros];
      const gates: Promise<void>[] = [];
      for (let i = 0; i < 4; i++) gates.push(Promise.resolve());
      queue.forEach((r, i) => {
        const p = gates[i % 4].then(() => fuzz(r.profile, ['--script', path.join(REPROS, r.f)]));
        gates[i % 4] = p.catch(() => undefined);
        runs!.set(r.f, p);
      });
    }
    return runs.get(f)!;
  };
  for (const { profile, f } of repros) {
    it(`profile ${profile}, repro ${f}: same transcript as ${NAME[profile]}`, () => started(f));
  }
});
