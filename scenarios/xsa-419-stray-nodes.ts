// XSA-419 (CVE-2022-42322/42323), C and oxenstored: nodes a guest created outside its home
// survived the guest. The toolstack removes only the homes it knows of; xenstored re-owned the
// rest to dom0, which has no quota, so a guest rebooting in a loop could fill dom0's memory.
// Fixed: when a domain dies, xenstored deletes every node it owns.
// Unfixed daemon: /scenario/pool/stray and its subtree are still there after the reboot, owned by dom0.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const POOL = '/scenario/pool';

export default defineScenario({
  name: 'xsa-419-stray-nodes',
  title: 'XSA-419: nodes a guest created outside its home die with it (here across xl reboot)',
  tags: ['xsa', 'xenstore', 'lifecycle'],
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const cfg = guestConfig('stray');
    const old = await s.step('xl create stray', () => s.create('guest', cfg));
    await s.step(`dom0 lets it write ${POOL}`, () => s.rt.toolstackWrite(POOL, '', ['n0', `b${old}`]));
    await s.step(`the guest creates ${POOL}/stray/a and ${POOL}/stray/b`, async () => {
      const r = await s.guest<{ results: string[] }>('guest', { cmd: 'xs-batch', ops: [['write', `${POOL}/stray/a`, '1'], ['write', `${POOL}/stray/b`, '2']] });
      s.expect(r.results.join(',') === 'OK,OK', `writes: ${r.results.join(',')}`);
      const owners = (await s.dump(`${POOL}/stray`)).map((n) => n.perms[0].slice(1));
      s.expect(owners.length === 3 && owners.every((o) => o === String(old)), `owners: ${owners.join(',')}`);
    });
    await s.step('xl reboot -w stray', async () => {
      s.expect((await s.xl.reboot(old, { wait: true })).acked, 'the guest acknowledged the reboot');
    });
    await s.step('the nodes died with the old domain; the pool itself is dom0\'s and stays', async () => {
      s.expect(!s.rt.host.domains.has(old), `domain ${old} is gone`);
      const left = (await s.dump(POOL)).map((n) => `${n.path}(${n.perms[0]})`);
      s.expect(left.length === 1 && left[0] === `${POOL}(n0)`, `left: ${left.join(' ')}`);
      s.expect([...s.xl.domains.values()].some((d) => d.cfg.name === cfg.name && d.domid !== old), 'the guest came back under a new domid');
    });
    await s.expectNoOrphans();
  },
});
