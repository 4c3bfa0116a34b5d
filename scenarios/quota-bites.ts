// A guest fills xenstore with small keys, 100 per transaction (a directory each, so no node's
// child list nears the node-size quota), until its node quota (1000 nodes per domain in both
// daemons) bites. The transaction that would cross it fails as a whole with
// the profile's error - C xenstored refuses the commit with ENOSPC, oxenstored the write with
// EQUOTA (and the guest then abandons the transaction) - and none of its keys appear. Quotas are
// per domain: another guest and dom0 go on writing.
import { defineScenario, guestConfig, ScenarioFailure } from '../sim/scenario/scenario.ts';
import type { XsBatchOp } from '../domains/domU/xs-user.ts';

const PER_TX = 100;

export default defineScenario({
  name: 'quota-bites',
  title: 'a guest writing keys in transactions hits its node quota: the failing transaction is refused whole, others unaffected',
  tags: ['xenstore', 'quota', 'transactions'],
  variants: {
    fixed: { description: 'C xenstored' },
    ocaml: { description: 'oxenstored', dom0: { profile: 'ocaml' } },
  },
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const profile = s.variantDef.dom0?.profile ?? 'c';
    const hog = await s.step('xl create hog', () => s.create('hog', guestConfig('hog')));
    await s.step('xl create bystander', () => s.create('bystander', guestConfig('bystander')));
    // Nodes the hog owns (the first ACL entry names the owner); it can create them only in its home.
    const owned = async (): Promise<number> =>
      (await s.dump(`/local/domain/${hog}`)).filter((n) => /^[nrwb](\d+)$/.exec(n.perms[0])?.[1] === String(hog)).length;
    let failed: { error?: string; failedAt?: number | string; before: number; after: number; batch: number } | undefined;
    for (let batch = 0; batch < 15 && !failed; batch++) {
      const ops: XsBatchOp[] = Array.from({ length: PER_TX }, (_, i) => ['write', `data/fill/b${batch}/k${i}`, 'x'] as const);
      const before = await owned();
      const r = await s.step(`hog writes ${PER_TX} keys in one transaction (batch ${batch}, owns ${before} nodes)`, () =>
        s.guest<{ committed?: boolean; error?: string; failedAt?: number | string }>('hog', { cmd: 'xs-batch', ops, tx: true }));
      if (r.committed) continue;
      failed = { error: r.error, failedAt: r.failedAt, before, after: await owned(), batch };
    }
    if (!failed) throw new ScenarioFailure('the node quota never bit');
    s.note(`quota bit in batch ${failed.batch} at ${failed.failedAt}: ${failed.error}; hog owned ${failed.before} nodes before, ${failed.after} after`);
    const want = profile === 'c' ? 'ENOSPC' : 'EQUOTA';
    s.expect(failed.error === want, `the failing transaction answered ${failed.error}, expected ${want}`);
    // C checks the quota at commit; oxenstored at the write that would exceed it.
    s.expect(profile === 'c' ? failed.failedAt === 'commit' : typeof failed.failedAt === 'number', `failed at ${failed.failedAt}`);
    s.expect(failed.after === failed.before, `the refused transaction left ${failed.after - failed.before} nodes behind`);
    s.expect(failed.after <= 1000, `the hog owns ${failed.after} nodes, more than its quota`);
    await s.step('another guest and dom0 still write', async () => {
      const r = await s.guest<{ results: string[] }>('bystander', { cmd: 'xs-batch', ops: [['write', 'data/still', 'fine'], ['read', 'data/still']] });
      s.expect(r.results.join(',') === 'OK,fine', `bystander: ${r.results.join(',')}`);
      await s.rt.toolstackWrite('/scenario/dom0-still', 'fine', ['n0']);
      s.expect(await s.read('/scenario/dom0-still') === 'fine', 'dom0 wrote past the hog\'s quota');
    });
  },
});
