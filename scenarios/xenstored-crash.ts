// xenstored dies after the guest has booted. Real Xen has no recovery for that (without a live
// update or a restartable stub domain): requests on a guest's ring are never read, so the guest's
// xenstore access hangs for good. What keeps working is everything that does not go through
// xenstore - the devices' shared rings and event channels - so the devices stay in their last
// state and block I/O still completes. The scenario passes when it observes exactly that hang.
import { XsdSockmsgType } from '../hypervisor/public/io/xs_wire.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const XVDA = 'vbd/51712';

export default defineScenario({
  name: 'xenstored-crash',
  title: 'after xenstored dies a guest\'s xenstore request hangs for ever while its devices keep working',
  tags: ['xenstore', 'fault'],
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 } },
  async run(s) {
    // No devicesAgree invariant: once xenstored is gone, reading the device states would hang too.
    const id = await s.step('xl create guest (xvda, vif 0)', () =>
      s.create('guest', guestConfig('orphan', { disks: [{ vdev: 'xvda', target: 'orphan-root', sizeMiB: 8 }], vifs: [{}] })));
    await s.step('every device connects', async () => {
      for (const d of [XVDA, 'vif/0']) {
        s.expect(await s.waitFor(`/local/domain/${id}/device/${d}/state`, '4'), `${d} frontend Connected`);
        s.expect(await s.waitFor(`/local/domain/0/backend/${d.replace('/', `/${id}/`)}/state`, '4'), `${d} backend Connected`);
      }
    });
    await s.step('the guest reads its name from xenstore', async () => {
      const r = await s.guest<{ payload?: string }>('guest', { cmd: 'xs', type: XsdSockmsgType.XS_READ, payload: 'name\0', timeoutNs: 1e9 });
      s.expect(r.payload === 'orphan', `read name: ${JSON.stringify(r)}`);
    });
    await s.step('xenstored crashes', async () => {
      s.fault('xenstored-crash');
      s.rt.send(0, { cmd: 'xenstored-crash' });
    });
    await s.step('the guest\'s next xenstore request never completes', async () => {
      // 5 s of virtual time is far beyond any xenstored answer; the request stays pending.
      const r = await s.guest<{ timedOut?: boolean }>('guest', { cmd: 'xs', type: XsdSockmsgType.XS_READ, payload: 'name\0', timeoutNs: 5e9 });
      s.expect(r.timedOut === true, `expected the read to hang, got ${JSON.stringify(r)}`);
    });
    await s.step('the devices keep their last state and block I/O still completes', async () => {
      const seen = await s.guest<{ devices: { name: string; stateName: string }[] }>('guest', { cmd: 'devices' });
      s.expect(seen.devices.length === 2 && seen.devices.every((d) => d.stateName === 'XenbusStateConnected'),
        `the guest's drivers see ${seen.devices.map((d) => `${d.name}=${d.stateName}`).join(', ')}`);
      const data = new Uint8Array(4096).fill(0x5a);
      const w = await s.guest<{ status?: number; error?: string }>('guest', { cmd: 'blk', device: XVDA, op: 'write', sector: 8, sectors: 8, data });
      s.expect(w.status === 0, `write through the ring: ${w.error ?? w.status}`);
      const r = await s.guest<{ status?: number; data?: Uint8Array }>('guest', { cmd: 'blk', device: XVDA, op: 'read', sector: 8, sectors: 8 });
      s.expect(r.status === 0 && r.data?.every((b) => b === 0x5a), 'the data read back is the data written');
    });
  },
});
