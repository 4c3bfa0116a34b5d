// The scenario library: every scenario that is not a planted race passes (XTF SUCCESS) on seeds
// 1-3 of its fixed variant, and replays - the same seed gives the same trace hash. Inline
// lockstep throughout; the whole file takes about ten seconds here.
import assert from 'node:assert/strict';
import { SCENARIOS } from '../../scenarios/index.ts';
import { XtfResult } from '../../sim/report/xtf.ts';
import { runScenario } from '../../sim/scenario/run.ts';

const LIBRARY = SCENARIOS.filter((s) => !s.tags?.includes('race'));
const SEEDS = [1, 2, 3];
const REPLAY_SEED = 7;

describe('scenario library', function () {

  it('names are unique kebab-case with a title and tags; at least eight XSA regressions named xsa-NNN-*', () => {
    const names = LIBRARY.map((s) => s.name);
    assert.equal(new Set(names).size, names.length, 'unique names');
    for (const s of LIBRARY) {
      assert.match(s.name, /^[a-z0-9]+(-[a-z0-9]+)*$/, s.name);
      assert.ok(s.title.length > 10, `${s.name} has a title`);
      assert.ok((s.tags ?? []).length > 0, `${s.name} has tags`);
    }
    const xsas = LIBRARY.filter((s) => s.tags?.includes('xsa'));
    assert.ok(xsas.length >= 8, `${xsas.length} XSA scenarios`);
    for (const s of xsas) assert.match(s.name, /^xsa-\d{3}(-\d{3})*-[a-z0-9-]+$/, s.name);
    for (const want of ['boot-three-guests', 'reboot', 'suspend-resume', 'acpi-power-and-sleep', 'guest-dies-during-handshake',
      'toolstack-transactions-race', 'xenstored-crash', 'quota-bites', 'slow-watcher', 'domid-reuse', 'vbd-replaced-while-guest-paused']) {
      assert.ok(names.includes(want), want);
    }
  });

  for (const def of LIBRARY) {
    it(`${def.name}: SUCCESS on seeds ${SEEDS.join(', ')}`, async () => {
      for (const seed of SEEDS) {
        const r = await runScenario(def, { seed });
        assert.equal(r.result, XtfResult.SUCCESS, `seed ${seed}, step "${r.step ?? ''}": ${r.message ?? ''}`);
      }
    });
  }

  describe(`determinism: seed ${REPLAY_SEED} twice gives the same trace`, () => {
    for (const def of LIBRARY) {
      it(def.name, async () => {
        const a = await runScenario(def, { seed: REPLAY_SEED });
        const b = await runScenario(def, { seed: REPLAY_SEED });
        assert.equal(a.result, XtfResult.SUCCESS, a.message);
        assert.equal(b.hash, a.hash);
        assert.equal(b.events, a.events);
      });
    }
  });
});
