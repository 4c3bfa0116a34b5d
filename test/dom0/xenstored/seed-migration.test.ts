// The project seed's xenstore migration (domains/dom0/xenstored/seed-migration.ts, not Xen): one
// xenstored exports a guest's nodes, watches and open transactions, another imports them for the
// guest's new domid. In both profiles: the nodes come with their ACLs moved to the new domid and
// the destination's own nodes kept; the watches fire with their tokens (relative ones with
// relative paths); a carried-over transaction reads the destination's tree and its commit says
// EAGAIN.
import assert from 'node:assert/strict';
import { exportSeedState, importSeedState } from '../../../domains/dom0/xenstored/seed-migration.ts';
import { Harness } from './harness.ts';

for (const profile of ['c', 'ocaml'] as const) {
  describe(`seed migration of a guest's xenstore state (${profile})`, () => {
    it('moves nodes, watches with their tokens and open transactions to the new domid', () => {
      const src = new Harness({ profile });
      const g = src.introduce(3, { data: true });
      assert.equal(g.write('data/a', 'one'), 'OK');
      assert.equal(g.write('data/a/b', 'two'), 'OK');
      assert.equal(g.setPerms('data/a/b', 'b3 r0 r5'), 'OK');
      assert.equal(g.watch('data/a', 'rel-tok'), 'OK');
      assert.equal(g.watch('/local/domain/3/data', 'abs-tok'), 'OK');
      assert.equal(g.watch('@releaseDomain', 'rel-dom'), 'OK');
      const tx = g.txStart();
      const state = exportSeedState(src.xs, 3);

      const dst = new Harness({ profile });
      const n = dst.introduce(7, { data: true });
      // The destination's libxl wrote this one already: its value stays.
      assert.equal(dst.dom0.write('/local/domain/7/data/a', 'libxl'), 'OK');
      n.events();
      const summary = importSeedState(dst.xs, 7, state);
      assert.deepEqual(summary, { nodes: 1, kept: 2, watches: 3, transactions: 1 });
      assert.equal(n.read('data/a'), 'libxl');
      assert.equal(n.read('data/a/b'), 'two');
      assert.equal(dst.dom0.getPerms('/local/domain/7/data/a/b'), 'b7 r0', 'ACL moved to domid 7; r5, a domain of the source host, dropped');
      assert.deepEqual(n.events(), [], 'nothing fires at the import');

      assert.equal(n.write('data/a/b', 'three'), 'OK');
      assert.deepEqual(n.events().sort(), [['/local/domain/7/data/a/b', 'abs-tok'], ['data/a/b', 'rel-tok']]);
      // It reads the tree here: C the live tree, oxenstored its snapshot taken at the import.
      assert.equal(n.read('data/a/b', tx), profile === 'c' ? 'three' : 'two');
      assert.equal(n.commit(tx), 'EAGAIN', 'its view at the source is gone: retry');
      assert.equal(n.commit(tx), n.commit(tx + 1000), 'and it is over: answered as an unknown transaction');
      const again = n.txStart();
      assert.equal(n.write('data/a/b', 'four', again), 'OK');
      assert.equal(n.commit(again), 'OK');
    });

    it('refuses a state that names paths outside the home, keeps nothing of it', () => {
      const dst = new Harness({ profile });
      dst.introduce(7, { data: true });
      const enc = (s: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(s));
      const state = { version: 1, domid: 3, nodes: [['data/x', 'v', ['n3']], ['data/x/../../0/evil', 'v', ['n3']]], watches: [], transactions: [] };
      assert.throws(() => importSeedState(dst.xs, 7, enc(state)), /bad node path/);
      assert.equal(dst.dom0.read('/local/domain/7/data/x'), 'ENOENT', 'all or nothing');
      assert.throws(() => importSeedState(dst.xs, 9, enc({ ...state, nodes: [] })), /no xenstore connection/);
    });
  });
}
