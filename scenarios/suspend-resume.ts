// xl shutdown suspend, then resume in place (a checkpoint): the guest acks control/shutdown and
// calls SCHEDOP_shutdown(suspend); the domain stops, reported as SHUTDOWN_suspend, and xl leaves
// it alone. XEN_DOMCTL_resumedomain + XS_RESUME let it run again: SCHEDOP_shutdown returns 1,
// the devices were never torn down, and xenstore is exactly as before (but for the acked request).
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';
import type { NodeDump } from '../domains/dom0/toolstack/toolstack.ts';

const DEVICES = ['vbd/51712', 'vif/0'] as const;

export default defineScenario({
  name: 'suspend-resume',
  title: 'a suspended guest resumed in place keeps every device Connected and its xenstore tree unchanged',
  tags: ['lifecycle', 'devices'],
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 }, suspendAckDelayNs: [0, 5e6] },
  async run(s) {
    s.devicesAgree('guest');
    const id = await s.step('xl create guest (xvda, vif 0)', () =>
      s.create('guest', guestConfig('sleeper', { disks: [{ vdev: 'xvda', target: 'sleeper-root', sizeMiB: 8 }], vifs: [{}] })));
    await s.step('every device connects', async () => {
      for (const d of DEVICES) s.expect(await s.waitFor(`/local/domain/${id}/device/${d}/state`, '4'), `${d} frontend Connected`);
    });
    // The guest's tree and its backends, by path; control/shutdown is the request itself.
    const snapshot = async (): Promise<Map<string, string>> => {
      const nodes: NodeDump[] = [...await s.dump(`/local/domain/${id}`), ...await s.dump(`/local/domain/0/backend`)];
      return new Map(nodes.filter((n) => !n.path.endsWith('/control/shutdown')).map((n) => [n.path, `${n.value}|${n.perms.join(',')}`]));
    };
    const before = await snapshot();
    await s.step('xl shutdown suspend guest', async () => {
      const r = await s.xl.shutdown(id, 'suspend');
      s.expect(r.acked, 'the guest acknowledged the suspend request');
    });
    s.expect(s.xl.events.some((e) => e.domid === id && e.event === 'shutdown' && e.reason === 'SHUTDOWN_suspend'),
      'the domain was reported shut down for suspend');
    s.expect(s.rt.host.domains.get(id)?.isShutDown === true, 'the domain is stopped while suspended');
    await s.step('xl resume guest (in place)', () => s.xl.resume(id));
    await s.step('the guest runs again with every device still Connected', async () => {
      s.expect(s.rt.host.domains.get(id)?.isShutDown === false, 'the domain runs again');
      const seen = await s.guest<{ devices: { name: string; stateName: string }[] }>('guest', { cmd: 'devices' });
      s.expect(seen.devices.length === DEVICES.length && seen.devices.every((d) => d.stateName === 'XenbusStateConnected'),
        `the guest's drivers see ${seen.devices.map((d) => `${d.name}=${d.stateName}`).join(', ')}`);
      // The data path is live: a read through the granted ring completes.
      const io = await s.guest<{ status?: number; error?: string }>('guest', { cmd: 'blk', device: 'vbd/51712', op: 'read', sector: 0, sectors: 8 });
      s.expect(io.status === 0, `xvda read after resume: ${io.error ?? io.status}`);
    });
    await s.step('xenstore is as it was before the suspend', async () => {
      const after = await snapshot();
      const changed = [...new Set([...before.keys(), ...after.keys()])].filter((p) => before.get(p) !== after.get(p));
      s.expect(changed.length === 0, `changed across suspend/resume: ${changed.map((p) => `${p} ${before.get(p) ?? '(none)'} -> ${after.get(p) ?? '(none)'}`).join('; ')}`);
    });
    const log = await s.xl.console(id);
    s.expect(log.includes('Restarting tasks ... done.'), 'the guest came back from SCHEDOP_shutdown(suspend)');
  },
});
