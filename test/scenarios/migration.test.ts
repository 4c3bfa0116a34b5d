// Live migration in the scenario engine: a run boots a second host on demand (its own seed, its
// trace events labelled with its name, shut down with the run), and every migration scenario
// passes without faults (the library spec runs them with) and replays to the same hash - both
// hosts' interleaving included.
import assert from 'node:assert/strict';
import { MIGRATIONS } from '../../scenarios/library.ts';
import migrateWithOpenUserTxn from '../../scenarios/migrate-with-open-user-txn.ts';
import type { HostRuntime } from '../../sim/host-runtime.ts';
import { XtfResult } from '../../sim/report/xtf.ts';
import { peerSeed, runScenario } from '../../sim/scenario/run.ts';
import { defineScenario, guestConfig } from '../../sim/scenario/scenario.ts';

const SEEDS = [1, 2, 3];
const REPLAY_SEED = 11;
const NONE = { spec: 'none' };

describe('live migration scenarios', function () {

  it('a run boots a peer host when first asked (the same one after), labels its trace events with its name and shuts it down with the run', async () => {
    let peer: HostRuntime | undefined;
    const def = defineScenario({
      name: 'peer-probe', title: 'boots host B and a guest on it', tags: ['migration'],
      async run(s) {
        const b = await s.peer('B');
        s.expect((await s.peer('B')) === b, 'a second peer("B") is the same host');
        peer = b.rt;
        await s.step('xl create guest on host B', () => s.create('guest', guestConfig('elsewhere'), {}, 'B'));
        s.expect(s.hostOf('guest') === b && b.xl.domains.has(s.domid('guest')), 'the role lives on host B');
        s.expect(s.xl.domains.size === 0 && s.rt.host.domains.size === 1, 'host A has no guest');
        const r = await s.guest<{ devices?: unknown[] }>('guest', { cmd: 'devices' });
        s.expect(Array.isArray(r.devices), 'the guest answers through host B');
      },
    });
    const r = await runScenario(def, { seed: 5, faults: NONE });
    assert.equal(r.result, XtfResult.SUCCESS, r.message);
    assert.ok(peer, 'host B was booted');
    assert.equal(peer.vcpus.size, 0, "host B's vCPUs (dom0's and the guest's) are stopped with the run");
    const fromB = r.trace.filter((e) => e.host === 'B');
    assert.ok(fromB.some((e) => e.kind === 'hypercall' && e.domid === 1), "the guest's hypercalls on host B are in the trace");
    assert.ok(r.trace.some((e) => e.host === undefined && e.kind === 'hypercall' && e.domid === 0), "host A's own events carry no host");
    assert.ok(!r.trace.some((e) => e.host === undefined && e.kind === 'hypercall' && e.domid === 1), 'host A ran no guest');
    assert.notEqual(peerSeed(5, 'B'), 5);
    assert.notEqual(peerSeed(5, 'B'), peerSeed(5, 'C'));
  });

  for (const def of MIGRATIONS) {
    // (scenario library spec: the same seeds with the default faults, and seed 7 replayed with them)
    it(`${def.name}: SUCCESS on seeds ${SEEDS.join(', ')} with no fault`, async () => {
      for (const seed of SEEDS) {
        const r = await runScenario(def, { seed, faults: NONE });
        assert.equal(r.result, XtfResult.SUCCESS, `seed ${seed}, step "${r.step ?? ''}": ${r.message ?? ''}`);
      }
    });

    it(`${def.name}: seed ${REPLAY_SEED} with no fault twice gives the same trace, both hosts' events interleaved alike`, async () => {
      const a = await runScenario(def, { seed: REPLAY_SEED, faults: NONE });
      const b = await runScenario(def, { seed: REPLAY_SEED, faults: NONE });
      assert.equal(a.result, XtfResult.SUCCESS, a.message);
      assert.ok(a.trace.some((e) => e.host === 'B') || def.name === 'save-restore-renamed', 'host B is in the trace');
      assert.equal(b.events, a.events);
      assert.equal(b.hash, a.hash);
    });
  }

  it('migrate-with-open-user-txn before d10e0cc113c9 (R17): the migration fails on some of seeds 1..20 and succeeds on others, with no fault', async () => {
    const results: string[] = [];
    for (let seed = 1; seed <= 20; seed++) {
      const r = await runScenario(migrateWithOpenUserTxn, { seed, variant: 'before-d10e0cc113c9', faults: NONE });
      assert.ok(r.result === XtfResult.SUCCESS || r.result === XtfResult.FAILURE, `seed ${seed}: ${r.result} ${r.message}`);
      results.push(r.result);
      if (results.includes(XtfResult.SUCCESS) && results.includes(XtfResult.FAILURE)) return;
    }
    assert.fail(`results: ${results.join(', ')}`);
  });
});
