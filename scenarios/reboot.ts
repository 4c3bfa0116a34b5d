// xl reboot -w: the guest acks control/shutdown, closes its frontends and calls
// SCHEDOP_shutdown(reboot); xl's on_reboot=restart destroys the domain and creates a new one from
// the same config. The new domain gets a fresh domid and connects every device; nothing is left
// under the old domid.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const DEVICES = ['vbd/51712', 'vif/0'] as const;

export default defineScenario({
  name: 'reboot',
  title: 'xl reboot -w brings the same config up again under a new domid, every device Connected, the old domid gone',
  tags: ['lifecycle', 'devices'],
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 }, hotplugDelayNs: [0, 5e6] },
  async run(s) {
    s.devicesAgree('guest');
    const cfg = guestConfig('rebooter', { disks: [{ vdev: 'xvda', target: 'rebooter-root', sizeMiB: 8 }], vifs: [{}] });
    const connected = async (id: number): Promise<void> => {
      for (const d of DEVICES) {
        const [kind, devid] = d.split('/');
        s.expect(await s.waitFor(`/local/domain/${id}/device/${d}/state`, '4'), `domain ${id} ${d} frontend Connected`);
        s.expect(await s.waitFor(`/local/domain/0/backend/${kind}/${id}/${devid}/state`, '4'), `domain ${id} ${d} backend Connected`);
      }
    };
    const old = await s.step('xl create rebooter (xvda, vif 0)', () => s.create('guest', cfg));
    await s.step('every device connects', () => connected(old));
    await s.step('xl reboot -w rebooter', async () => {
      const r = await s.xl.reboot(old, { wait: true });
      s.expect(r.acked, 'the guest acknowledged the reboot request');
    });
    s.expect(s.xl.events.some((e) => e.domid === old && e.reason === 'SHUTDOWN_reboot'), 'SCHEDOP_shutdown(reboot) was seen');
    const again = [...s.xl.domains.values()].filter((d) => d.cfg.name === cfg.name);
    s.expect(again.length === 1 && again[0].domid !== old, `one new rebooter domain (have ${again.map((d) => d.domid).join(', ') || 'none'})`);
    const id = again[0].domid;
    s.roles.set('guest', id);
    await s.step(`the new domain ${id} connects every device`, () => connected(id));
    await s.step(`nothing is left under the old domid ${old}`, async () => {
      s.expect(!s.rt.host.domains.has(old), `domain ${old} is gone from the hypervisor`);
      const mine = (p: string): boolean => [`/local/domain/${old}`, `/libxl/${old}`, `/local/domain/0/backend/vbd/${old}`,
        `/local/domain/0/backend/vif/${old}`, `/local/domain/0/backend/console/${old}`].some((m) => p === m || p.startsWith(`${m}/`));
      const left = (await s.dump('/')).filter((n) => mine(n.path)).map((n) => n.path);
      s.expect(left.length === 0, `nodes of the old domain: ${left.join(', ')}`);
      s.expect(await s.read(`/local/domain/${id}/name`) === cfg.name, 'the new domain carries the config\'s name');
    });
    await s.expectNoOrphans();
  },
});
