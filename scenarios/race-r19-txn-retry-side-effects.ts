// R19(d): a side effect inside a transaction body that is retried. xenstore-read reads its keys in
// one transaction and starts over on EAGAIN; before xen 006b46b2d0 it printed each value as it
// read it, so a retried read printed it twice, and the block hotplug script took "r19\nr19" for
// the disk's params (or "phy\nphy" for its type): the disk never connects. The EAGAIN comes from
// C xenstored before 4.9 (per-node conflicts came with xen f2bebf72c4), which failed a
// transaction if anything at all was committed meanwhile - here a guest agent that polls its
// settings and publishes a statistic. Whether one of its writes lands inside one of the script's
// three read transactions is up to the schedule. With faults, dom0's jitter lets the guest finish
// first, and a spurious EAGAIN (a conflict the daemon reports) does the agent's part.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

/**
 * The guest agent's rounds: a few reads of memory/target, then one write of data/meminfo_free. How
 * many reads a round takes is drawn from the seed, so its writes fall at other places each run.
 */
const ROUNDS = 30;
const READS: readonly [number, number] = [5, 40];

export default defineScenario({
  name: 'race-r19-txn-retry-side-effects',
  title: 'a hotplug script\'s xenstore-read retried on EAGAIN must not print its values twice',
  tags: ['race', 'xenstore', 'transactions', 'vbd'],
  race: { id: 'R19', name: 'txn-conflict retry side effects', source: 'xen 006b46b2d0 (xenstore-read), f2bebf72c4 (per-node conflicts)' },
  variants: {
    // Both run xenstored as before 4.9, the era of the client bug: any commit fails every open transaction.
    fixed: {
      description: 'xenstore-read keeps its output back until the commit succeeds',
      dom0: { xenstored: { conflictOnAnyChange: true } },
    },
    buggy: {
      description: 'xenstore-read prints inside the transaction body',
      dom0: { xenstored: { conflictOnAnyChange: true }, quirks: { toolstack: { xenstoreReadPrintsInBody: true } } },
    },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { spuriousEagain: [0.02, 0.2], jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    s.devicesAgree('busy');
    const id = await s.step('xl create busy guest', () => s.create('busy', guestConfig('busy')));
    await s.step('xl block-attach xvda while the guest agent polls and publishes', async () => {
      const ops = Array.from({ length: ROUNDS }, (_, i) => [
        ...Array.from({ length: READS[0] + s.rng.below(READS[1] - READS[0] + 1) }, () => ['read', 'memory/target'] as const),
        ['write', 'data/meminfo_free', String(1000 - i)] as const,
      ]).flat();
      const agent = s.guest<{ results: string[] }>('busy', { cmd: 'xs-batch', ops });
      await s.xl.blockAttach(id, { vdev: 'xvda', target: 'r19' });
      const done = await agent;
      s.expect(done.results.length === ops.length, `the guest agent stopped after ${done.results.length} of ${ops.length} requests`);
    });
    await s.step('the vbd connects', async () => {
      const be = `/local/domain/0/backend/vbd/${id}/51712`;
      s.expect(await s.waitFor(`${be}/state`, '4', 5e9),
        `backend at ${await s.read(`${be}/state`)}, hotplug-status ${await s.read(`${be}/hotplug-status`)}: ${JSON.stringify(await s.read(`${be}/hotplug-error`))}`);
    });
  },
});
