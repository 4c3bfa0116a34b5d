// A guest crashes (domain_crash) at a point the seed picks anywhere in its boot: before, during or
// after its device handshakes. xl's on_crash=destroy must leave nothing behind whatever the
// moment: no orphan nodes, no backend directories, no mapping of the dead guest's pages.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'guest-crashes-at-random-point',
  title: 'a guest crashes at a random point of its boot; on_crash=destroy cleans up',
  tags: ['lifecycle', 'faults'],
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 }, notifyHold: { p: [0, 0.2], maxNs: 1e6 } },
  async run(s) {
    let id = -1;
    await s.step('xl create guest (xvda, vif 0); it crashes somewhere along the way', () =>
      s.atRandomPoint(async () => {
        id = await s.create('guest', guestConfig('guest', { disks: [{ vdev: 'xvda', target: 'crash-root' }], vifs: [{}] }));
      }, () => {
        if (id >= 0) s.rt.crashDomain(id);
        else s.note('crash point reached while the domain was still being built: crash it once it exists');
      }, 1500, 'domain_crash'));
    if (s.rt.host.domains.has(id) && !s.rt.host.domains.get(id)!.isShutDown && s.xl.domains.has(id)) {
      await s.step('crash it now (the random point fell before it existed)', async () => s.rt.crashDomain(id));
    }
    s.expect(s.xl.events.some((e) => e.domid === id && e.reason === 'SHUTDOWN_crash'), 'xl saw SHUTDOWN_crash');
    s.expect(!s.rt.host.domains.has(id), `domain ${id} is gone (no zombie)`);
    await s.expectNoOrphans();
    const left = (await s.dump('/local/domain/0/backend')).filter((n) => n.path.includes(`/${id}/`) || n.path.endsWith(`/${id}`));
    s.expect(left.length === 0, `backend nodes left: ${left.map((n) => n.path).join(', ')}`);
  },
});
