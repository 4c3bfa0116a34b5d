// Three guests, each with two disks and a NIC, boot side by side: every frontend and its backend
// reach Connected (checked after every step), then each guest powers off through control/shutdown
// and xl's on_poweroff=destroy leaves nothing of any of them in xenstore.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const GUESTS = ['web', 'db', 'cache'] as const;
/** xvda, xvdb and vif 0, as device directories under device/. */
const DEVICES = ['vbd/51712', 'vbd/51728', 'vif/0'] as const;

export default defineScenario({
  name: 'boot-three-guests',
  title: 'three guests with two disks and a NIC each connect every device, then all power off cleanly',
  tags: ['lifecycle', 'devices'],
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 }, hotplugDelayNs: [0, 5e6], ringStart: true },
  async run(s) {
    s.devicesAgree(...GUESTS);
    for (const name of GUESTS) {
      await s.step(`xl create ${name} (xvda, xvdb, vif 0)`, () => s.create(name, guestConfig(name, {
        disks: [{ vdev: 'xvda', target: `${name}-root`, sizeMiB: 8 }, { vdev: 'xvdb', target: `${name}-data`, sizeMiB: 4 }],
        vifs: [{}],
      })));
    }
    await s.step('every device of every guest reaches Connected on both ends', async () => {
      for (const name of GUESTS) {
        const id = s.domid(name);
        for (const d of DEVICES) {
          const [kind, devid] = d.split('/');
          s.expect(await s.waitFor(`/local/domain/${id}/device/${d}/state`, '4'), `${name} ${d} frontend Connected`);
          s.expect(await s.waitFor(`/local/domain/0/backend/${kind}/${id}/${devid}/state`, '4'), `${name} ${d} backend Connected`);
        }
        const seen = await s.guest<{ devices: { name: string; stateName: string }[] }>(name, { cmd: 'devices' });
        s.expect(seen.devices.length === DEVICES.length && seen.devices.every((d) => d.stateName === 'XenbusStateConnected'),
          `${name}'s drivers see ${seen.devices.map((d) => `${d.name}=${d.stateName}`).join(', ')}`);
      }
    });
    await s.step('xl shutdown -w every guest', async () => {
      // All three requests go out before any guest is waited for, as `xl shutdown -a -w` does.
      const acks = await Promise.all(GUESTS.map((name) => s.xl.shutdown(s.domid(name), 'poweroff', { wait: true })));
      s.expect(acks.every((r) => r.acked), 'every guest acknowledged control/shutdown');
    });
    for (const name of GUESTS) {
      const id = s.domid(name);
      s.expect(s.xl.events.some((e) => e.domid === id && e.reason === 'SHUTDOWN_poweroff'), `${name} called SCHEDOP_shutdown(poweroff)`);
      s.expect(!s.rt.host.domains.has(id), `${name} (domain ${id}) is gone`);
    }
    await s.expectNoOrphans();
  },
});
