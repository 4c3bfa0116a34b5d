// A disk forcibly removed and attached again at the same vdev while the guest is not running (paused,
// as a guest whose backend domain died and came back is while the toolstack replaces the device):
// when the guest runs again, its xenbus sees a device directory that exists but is a new device.
// Linux's bus used to take it for the old one and never probe it ("xen/xenbus: better handle
// backend crash"); the new disk must reach Connected on both ends and serve I/O.
import { BlkifRsp, vdevFromName } from '../hypervisor/public/io/blkif.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const XVDB = vdevFromName('xvdb')!;

export default defineScenario({
  name: 'vbd-replaced-while-guest-paused',
  title: 'a disk force-removed and re-added at the same vdev before the guest looks is probed as a new device',
  tags: ['devices', 'xenbus'],
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 }, hotplugDelayNs: [0, 2e6] },
  async run(s) {
    s.devicesAgree('guest');
    const id = await s.step('xl create guest (xvda, xvdb)', () => s.create('guest', guestConfig('guest', {
      disks: [{ vdev: 'xvda', target: 'replaced-root', sizeMiB: 8 }, { vdev: 'xvdb', target: 'replaced-old', sizeMiB: 8 }],
    })));
    const fe = `/local/domain/${id}/device/vbd/${XVDB}`;
    const be = `/local/domain/0/backend/vbd/${id}/${XVDB}`;
    await s.step('xvdb connects', async () => {
      s.expect(await s.waitFor(`${fe}/state`, '4'), 'xvdb frontend Connected');
      s.expect(await s.waitFor(`${be}/state`, '4'), 'xvdb backend Connected');
    });
    await s.step('xl pause guest', () => s.xl.pause(id));
    await s.step('xl block-detach --force guest xvdb', () => s.xl.blockDetach(id, 'xvdb', true));
    await s.step('xl block-attach guest xvdb (a new disk)', () => s.xl.blockAttach(id, { vdev: 'xvdb', target: 'replaced-new', sizeMiB: 4 }));
    await s.step('xl unpause guest', () => s.xl.unpause(id));
    await s.step('the new xvdb connects', async () => {
      s.expect(await s.waitFor(`${fe}/state`, '4'), `new xvdb frontend Connected (state ${await s.read(`${fe}/state`) ?? 'absent'})`);
      s.expect(await s.waitFor(`${be}/state`, '4'), `new xvdb backend Connected (state ${await s.read(`${be}/state`) ?? 'absent'})`);
    });
    await s.step('the guest reads the new disk\'s size and I/O works', async () => {
      const { devices } = await s.guest<{ devices: { name: string; state: number; disk?: { sectors: number } }[] }>('guest', { cmd: 'devices' });
      const dev = devices.find((d) => d.name === `vbd/${XVDB}`);
      s.expect(dev?.disk?.sectors === 4 * 2048, `the guest's xvdb is the new 4 MiB disk (${JSON.stringify(dev)})`);
      const data = new Uint8Array(4096).fill(0x5a);
      const w = await s.guest<{ status: number }>('guest', { cmd: 'blk', device: String(XVDB), op: 'write', sector: 8, sectors: 8, data });
      s.expect(w.status === BlkifRsp.BLKIF_RSP_OKAY, `write to the new xvdb: status ${w.status}`);
    });
  },
});
