// Scenario xenstored-restart: xenstored dies on a guest's request and restarts from its last
// state. With ring reconnection (fixed) the guest comes back with its devices Connected and every
// committed write present; without it (no-reconnect), or against C xenstored 4.17 which does not
// offer it (c), the guest's request hangs for ever; in a xenstore domain (xenstore-domain) the
// restarted daemon maps dom0's ring again too and the guest comes back as in fixed. The
// committed-writes invariant is live again after the restart: a restart that lost a write fails
// the run.
import assert from 'node:assert/strict';
import type { XenstoredDaemon } from '../../domains/dom0/xenstored/daemon.ts';
import scenario from '../../scenarios/xenstored-restart.ts';
import { XtfResult } from '../../sim/report/xtf.ts';
import { runScenario } from '../../sim/scenario/run.ts';

describe('scenario xenstored-restart', function () {
  this.timeout(60_000);

  for (const variant of ['fixed', 'no-reconnect', 'c', 'xenstore-domain']) {
    it(`${variant}: SUCCESS on seeds 1-2, with and without the scenario's faults`, async () => {
      for (const seed of [1, 2]) {
        for (const faults of [undefined, { spec: 'none' }]) {
          const r = await runScenario(scenario, { seed, variant, faults });
          assert.equal(r.result, XtfResult.SUCCESS, `seed ${seed} faults ${faults?.spec ?? 'default'}, step "${r.step ?? ''}": ${r.message ?? ''}`);
        }
      }
    });
  }

  it('fixed: a restart that loses a committed write fails the run (the shadow store is checked again after the restart)', async () => {
    // The instance dom0's program gets: it is loaded by a dynamic import, as here (tsx gives this
    // file's static imports instances of their own).
    const { XenstoredDaemon } = (await import(new URL('../../domains/dom0/xenstored/daemon.ts', import.meta.url).href)) as typeof import('../../domains/dom0/xenstored/daemon.ts');
    const restart = XenstoredDaemon.prototype.restart;
    XenstoredDaemon.prototype.restart = function (this: XenstoredDaemon) {
      const r = restart.call(this);
      // The state read back lacks the guest's data/before, written and answered before the crash.
      const path = '/local/domain/1/data/before';
      if (this.xs.store.get(path)) this.xs.store.remove(path);
      return r;
    };
    try {
      const r = await runScenario(scenario, { seed: 1, faults: { spec: 'none' } });
      assert.equal(r.result, XtfResult.FAILURE, r.message);
      assert.match(r.message ?? '', /every committed write is present.*data\/before was committed but is gone/);
    } finally {
      XenstoredDaemon.prototype.restart = restart;
    }
  });
});
