// Differential fuzzing as a regression test: a few fixed seeds of random request scripts
// (dom0 sockets and unprivileged guests, transactions, watches, malformed input) must produce
// the same transcript on xensim as on the real daemon of the same profile, apart from the
// differences listed in difffuzz-known-*.txt. `test/interop/difffuzz-run.sh` runs many more.
import assert from 'node:assert/strict';
import path from 'node:path';
import { PYTHON3, REPO_ROOT, requireOracle, requireTools, run } from '../helpers/daemons.ts';

const FUZZER = path.join(REPO_ROOT, 'test', 'interop', 'xs-difffuzz.py');
const SEEDS: Record<'c' | 'ocaml', number[]> = { c: [101, 102], ocaml: [201] };

describe('interop: differential fuzzing against the real daemons', function () {
  before(() => {
    requireOracle();
    requireTools('xenstored', 'oxenstored', 'python3');
  });

  for (const profile of ['c', 'ocaml'] as const) {
    for (const seed of SEEDS[profile]) {
      it(`profile ${profile}, seed ${seed}: same transcript as ${profile === 'c' ? 'C xenstored' : 'oxenstored'}`, async () => {
        const known = path.join(REPO_ROOT, 'test', 'interop', `difffuzz-known-${profile}.txt`);
        const r = await run(PYTHON3, [FUZZER, '--profile', profile, '--start', '--seed', String(seed), '--known', known]);
        assert.equal(r.code, 0, `difference found (replay: ${PYTHON3} ${FUZZER} --profile ${profile} --start --seed ${seed}):\n${r.stdout.slice(-6000)}\n${r.stderr.slice(-2000)}`);
      });
    }
  }
});
