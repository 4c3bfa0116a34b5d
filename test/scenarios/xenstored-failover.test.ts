// Scenario xenstored-failover (the seed's --seed-replicas; not in Xen): xenstored with two
// standbys is killed at a seeded random point, standby 0 takes over, and the guest, its devices
// and every acknowledged write survive. The committed-writes invariant is live again from the
// failover on: a standby that lost an acknowledged write fails the run.
import assert from 'node:assert/strict';
import scenario from '../../scenarios/xenstored-failover.ts';
import { XtfResult } from '../../sim/report/xtf.ts';
import { runScenario } from '../../sim/scenario/run.ts';

describe('scenario xenstored-failover', function () {
  this.timeout(60_000);

  for (const variant of ['fixed', 'c']) {
    it(`${variant}: SUCCESS on seeds 1-2, with and without the scenario's faults; exactly one failover`, async () => {
      for (const seed of [1, 2]) {
        for (const faults of [undefined, { spec: 'none' }]) {
          const r = await runScenario(scenario, { seed, variant, faults });
          assert.equal(r.result, XtfResult.SUCCESS, `seed ${seed} faults ${faults?.spec ?? 'default'}, step "${r.step ?? ''}": ${r.message ?? ''}`);
        }
      }
    });
  }

  it('a standby that lost an acknowledged write fails the run', async () => {
    // The instance dom0's program gets: loaded by a dynamic import, as here (tsx gives this
    // file's static imports instances of their own).
    const { Standby } = (await import(new URL('../../domains/dom0/xenstored/replica.ts', import.meta.url).href)) as typeof import('../../domains/dom0/xenstored/replica.ts');
    const stream = Standby.prototype.stream;
    Standby.prototype.stream = function (this: InstanceType<typeof Standby>, opts) {
      // The guest's data/before, written and answered before the crash, never reached this standby.
      const path = '/local/domain/1/data/before';
      this.nodes.delete(path);
      this.nodes.get('/local/domain/1/data')?.kids?.delete('before');
      return stream.call(this, opts);
    };
    try {
      const r = await runScenario(scenario, { seed: 1, faults: { spec: 'none' } });
      assert.equal(r.result, XtfResult.FAILURE, r.message);
      assert.match(r.message ?? '', /every committed write is present.*data\/before was committed but is gone/);
    } finally {
      Standby.prototype.stream = stream;
    }
  });
});
