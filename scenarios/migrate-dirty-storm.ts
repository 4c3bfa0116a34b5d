// xl migrate of a guest that rewrites its whole workload while every precopy round is on the
// wire: the dirty count never falls under libxc's target, so after SPP_MAX_ITERATIONS live rounds
// the policy stops and copies - the guest suspended while every dirty page goes, a longer downtime
// than the same guest's idle migration (measured first, the other way). The destination still
// holds the memory as at the final suspend, and the workload reads back as the guest last wrote it.
import { SPP_MAX_ITERATIONS, SPP_TARGET_DIRTY_COUNT, simplePrecopyPolicy } from '../domains/dom0/toolstack/migration/precopy.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';
import { everyDeviceConnected, expectMigrated } from './migration-checks.ts';

const WORKLOAD = 96;

export default defineScenario({
  name: 'migrate-dirty-storm',
  title: 'a guest dirtying its pages faster than precopy sends them: round limit, then stop-and-copy with a longer downtime than idle',
  tags: ['migration', 'memory'],
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 }, suspendAckDelayNs: [0, 5e6] },
  async run(s) {
    s.devicesAgree('guest');
    await s.peer('B');
    await s.step('xl create guest on host A (xvda, vif 0)', () =>
      s.create('guest', guestConfig('stormy', { memory: 16, disks: [{ vdev: 'xvda', target: 'stormy-root', sizeMiB: 1 }], vifs: [{}] })));
    await s.step('every device connects; the guest fills its workload', async () => {
      await everyDeviceConnected(s, 'guest');
      await s.guest('guest', { cmd: 'mem-fill', pages: WORKLOAD });
    });
    const idle = await s.step('xl migrate guest B while it idles', async () => expectMigrated(s, await s.migrate('guest', 'B')));
    await s.step('every device Connected at host B', () => everyDeviceConnected(s, 'guest'));
    s.note(`idle: downtime ${idle.downtimeNs} ns, rounds ${idle.rounds.join(',')}`);

    // libxc asks the policy at each round's start: the workload rewrites every page meanwhile.
    const storm = (st: Parameters<typeof simplePrecopyPolicy>[0]): ReturnType<typeof simplePrecopyPolicy> => {
      void s.guest('guest', { cmd: 'mem-dirty', pages: WORKLOAD, everyNs: 1000 + s.rng.below(4000), times: 1 });
      return simplePrecopyPolicy(st);
    };
    const stormy = await s.step('xl migrate guest A while it rewrites its workload every round', async () => {
      const m = await expectMigrated(s, await s.migrate('guest', 'A', { policy: storm }));
      const live = m.rounds.length - 1;
      s.expect(live === SPP_MAX_ITERATIONS, `${live} live rounds (${m.rounds.join(',')}), expected the limit ${SPP_MAX_ITERATIONS}`);
      s.expect(m.rounds.slice(1).every((n) => n >= SPP_TARGET_DIRTY_COUNT), `a round found fewer than ${SPP_TARGET_DIRTY_COUNT} pages dirty: ${m.rounds.join(',')}`);
      return m;
    });
    s.note(`storm: downtime ${stormy.downtimeNs} ns, rounds ${stormy.rounds.join(',')}`);
    await s.step('stop-and-copy took longer than the idle migration', async () => {
      s.expect(stormy.downtimeNs > idle.downtimeNs, `downtime ${stormy.downtimeNs} ns storming, ${idle.downtimeNs} ns idle`);
      await everyDeviceConnected(s, 'guest');
      const seen = await s.guest<{ resumes: number }>('guest', { cmd: 'devices' });
      s.expect(seen.resumes === 2, `resumes ${seen.resumes}`);
    });
    await s.expectNoOrphans();
  },
});
