// xl migrate of an idle guest with a disk and a NIC to a second host: log-dirty precopy (one round
// of every page, then the few the idle kernel dirtied), suspend, the last round, xl's handshake;
// the destination builds a new domain whose memory equals the source's at suspend, its kernel
// resumes and reconnects both frontends to the destination's backends; the source host destroys
// its domain and keeps no node of it. Its downtime is what the other migration scenarios compare to.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';
import { everyDeviceConnected, expectMigrated } from './migration-checks.ts';

export default defineScenario({
  name: 'migrate-idle-guest',
  title: 'xl migrate moves an idle guest to another host: equal memory, every device Connected there, nothing left at the source',
  tags: ['migration', 'lifecycle', 'devices'],
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 }, suspendAckDelayNs: [0, 5e6] },
  async run(s) {
    s.devicesAgree('guest');
    await s.peer('B');
    await s.step('xl create guest on host A (xvda, vif 0)', () =>
      s.create('guest', guestConfig('mover', { memory: 16, disks: [{ vdev: 'xvda', target: 'mover-root', sizeMiB: 1 }], vifs: [{}] })));
    await s.step('every device connects', () => everyDeviceConnected(s, 'guest'));
    const before = await s.step('the guest fills some memory', async () => {
      await s.guest('guest', { cmd: 'mem-fill', pages: 1 + s.rng.below(16) });
      return s.guest<{ hash: string; pages: number }>('guest', { cmd: 'mem-hash' });
    });
    const out = await s.step('xl migrate guest B', () => s.migrate('guest', 'B'));
    const m = await s.step('host B runs the guest with the memory it had at suspend; host A has none of it', () => expectMigrated(s, out));
    s.note(`downtime ${m.downtimeNs} ns, rounds ${m.rounds.join(',')}`);
    await s.step('every device Connected at the destination', async () => {
      const seen = await everyDeviceConnected(s, 'guest');
      s.expect(seen.resumes === 1, `the kernel resumed ${seen.resumes} times`);
      const after = await s.guest<{ hash: string; pages: number }>('guest', { cmd: 'mem-hash' });
      s.expect(after.hash === before.hash && after.pages === before.pages, "the workload's pages as the kernel reads them now");
    });
    await s.expectNoOrphans();
  },
});
