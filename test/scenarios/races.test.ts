// Planted races: each buggy variant fails on some early seed (the swarm finds it), while the
// fixed variant passes the same seeds - and a failing seed replays to the same trace.
import assert from 'node:assert/strict';
import { RACES } from '../../scenarios/races.ts';
import { XtfResult } from '../../sim/report/xtf.ts';
import { runScenario } from '../../sim/scenario/run.ts';

/** How far the search may go in CI (the bench reports how many seeds each race really needs). */
const SEARCH = 60;
const FIXED_SEEDS = [1, 2, 3, 4, 5, 6, 7, 8];

describe('planted races: the buggy variant fails, the fixed one passes', function () {

  it('there are at least eight, each naming its race and source', () => {
    assert.ok(RACES.length >= 8, `${RACES.length} planted races`);
    for (const r of RACES) {
      assert.match(r.race?.id ?? '', /^R\d\d$/, r.name);
      assert.ok((r.race?.source ?? '').length > 0, r.name);
      assert.ok(r.variants?.buggy && r.variants.fixed, `${r.name} has fixed and buggy variants`);
    }
  });

  for (const def of RACES) {
    const buggy = Object.keys(def.variants ?? {}).filter((v) => def.expect?.[v] === 'fail');
    it(`${def.race?.id} ${def.name}: every buggy variant (${buggy.join(', ')}) fails within ${SEARCH} seeds; the failure replays`, async () => {
      for (const variant of buggy) {
        let found: Awaited<ReturnType<typeof runScenario>> | undefined;
        for (let seed = 1; seed <= SEARCH && !found; seed++) {
          const r = await runScenario(def, { seed, variant });
          assert.notEqual(r.result, XtfResult.ERROR, `seed ${seed}: a scenario error, not a finding: ${r.message}`);
          if (r.result !== XtfResult.SUCCESS) found = r;
        }
        assert.ok(found, `${variant}: no failing seed in 1..${SEARCH}`);
        const again = await runScenario(def, { seed: found.seed, variant });
        assert.equal(again.hash, found.hash, 'the failing seed replays byte for byte');
        assert.equal(again.result, found.result);
      }
    });

    it(`${def.race?.id} ${def.name}: the fixed variant passes seeds ${FIXED_SEEDS[0]}..${FIXED_SEEDS[FIXED_SEEDS.length - 1]}`, async () => {
      for (const seed of FIXED_SEEDS) {
        const r = await runScenario(def, { seed });
        assert.equal(r.result, XtfResult.SUCCESS, `seed ${seed}: ${r.message ?? ''}`);
      }
    });
  }
});
