// A run that cannot end is reported as what it is - a deadlock (nothing left to run) - and not
// cut off by a wall-clock bound that a loaded machine could also reach.
import assert from 'node:assert/strict';
import { XtfResult } from '../../sim/report/xtf.ts';
import { runScenario } from '../../sim/scenario/run.ts';
import { defineScenario } from '../../sim/scenario/scenario.ts';

describe('scenario runs: the hang guard', function () {
  it('a step that waits for something that never comes ends the run as a deadlock, with the step named', async () => {
    const def = defineScenario({
      name: 'waits-for-nothing', title: 'a step waiting on a promise no one resolves', tags: [],
      async run(s) {
        await s.step('wait for nothing', () => new Promise<void>(() => undefined));
      },
    });
    const r = await runScenario(def, { seed: 1, faults: { spec: 'none' } });
    assert.equal(r.result, XtfResult.ERROR);
    assert.match(r.message ?? '', /nothing left to run for \d+ s \(deadlock\)/);
    assert.equal(r.step, 'wait for nothing');
  });
});
