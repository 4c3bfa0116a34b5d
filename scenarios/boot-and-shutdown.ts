// Boot a guest with a disk and a NIC, let every device connect, then shut it down with the
// control/shutdown protocol: the guest acks, closes its frontends, calls SCHEDOP_shutdown, and
// xl's on_poweroff=destroy leaves no trace of it in xenstore.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'boot-and-shutdown',
  title: 'a guest boots with a disk and a NIC, connects both, and powers off cleanly',
  tags: ['lifecycle', 'devices'],
  faults: {
    jitter: { p: [0, 0.3], maxNs: 2e6 }, hotplugDelayNs: [0, 5e6], ringStart: true, notifyHold: { p: [0, 0.3], maxNs: 1e6 },
  },
  async run(s) {
    s.devicesAgree('guest');
    const id = await s.step('xl create guest (xvda, vif 0)', () =>
      s.create('guest', guestConfig('guest', { disks: [{ vdev: 'xvda', target: 'guest-root', sizeMiB: 8 }], vifs: [{}] })));
    await s.step('wait for every device to connect', async () => {
      for (const d of ['vbd/51712', 'vif/0']) {
        s.expect(await s.waitFor(`/local/domain/${id}/device/${d}/state`, '4'), `${d} frontend Connected`);
        s.expect(await s.waitFor(`/local/domain/0/backend/${d.split('/')[0]}/${id}/${d.split('/')[1]}/state`, '4'), `${d} backend Connected`);
      }
    });
    await s.step('xl shutdown -w guest', async () => {
      const r = await s.xl.shutdown(id, 'poweroff', { wait: true });
      s.expect(r.acked, 'the guest acknowledged control/shutdown');
    });
    s.expect(s.xl.events.some((e) => e.domid === id && e.reason === 'SHUTDOWN_poweroff'), 'SCHEDOP_shutdown(poweroff) was seen');
    s.expect(!s.rt.host.domains.has(id), 'the domain is gone');
    await s.expectNoOrphans();
  },
});
