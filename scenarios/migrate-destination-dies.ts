// xl migrate to a destination that goes away: the link resets at a byte of the stream drawn from
// the seed - during the first precopy round (the guest still runs), a little after the guest
// suspended (the last round or the checkpoint records), or as the "permission to go" (the
// destination built the domain and waits). Each time the source keeps the guest: log-dirty off,
// its suspend cancelled (SCHEDOP_shutdown returns 1, no resume as a new domain), every device
// Connected as before, memory and disk data unchanged; the destination keeps no domain or node.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';
import { DISK, type GuestDevices, everyDeviceConnected } from './migration-checks.ts';

const SECTOR = 16;
const SECTORS = 8;
const MEMORY_MIB = 16;
/** Fewer bytes than any first round (the kernel alone has more pages populated). */
const FIRST_ROUND_BYTES = 64 * 4096;

export default defineScenario({
  name: 'migrate-destination-dies',
  title: 'xl migrate to a destination that dies mid-stream or never gets the go: the source resumes the guest and loses nothing',
  tags: ['migration', 'lifecycle', 'devices', 'faults'],
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 }, suspendAckDelayNs: [0, 5e6] },
  async run(s) {
    s.devicesAgree('guest');
    const b = await s.peer('B');
    const src = await s.step('xl create guest on host A (xvda, vif 0)', () =>
      s.create('guest', guestConfig('stayer', { memory: MEMORY_MIB, disks: [{ vdev: 'xvda', target: 'stayer-root', sizeMiB: 1 }], vifs: [{}] })));
    await s.step('every device connects', () => everyDeviceConnected(s, 'guest'));
    const data = new Uint8Array(SECTORS * 512);
    for (let i = 0; i < data.length; i++) data[i] = s.rng.below(256);
    const before = await s.step('the guest writes its disk and fills memory', async () => {
      const w = await s.guest<{ status?: number; error?: string }>('guest', { cmd: 'blk', device: DISK, op: 'write', sector: SECTOR, sectors: SECTORS, data });
      s.expect(w.status === 0, `write through blkfront: ${w.error ?? w.status}`);
      await s.guest('guest', { cmd: 'mem-fill', pages: 1 + s.rng.below(16) });
      return s.guest<{ hash: string; pages: number }>('guest', { cmd: 'mem-hash' });
    });
    const when = (['first round', 'after suspend', 'go lost'] as const)[s.rng.below(3)];
    const opts = when === 'first round' ? { cutAfter: s.rng.below(FIRST_ROUND_BYTES) }
      : when === 'after suspend' ? { cutAfterSuspend: s.rng.below(256) } : { loseGo: true };
    const out = await s.step(`xl migrate guest B; the destination goes away (${when})`, () => s.migrate('guest', 'B', opts));
    await s.step('the migration failed at both ends and the guest stays at host A', async () => {
      s.expect(!out.ok && out.send.status === 'rejected' && out.receive.status === 'rejected', `sender ${out.send.status}, receiver ${out.receive.status}`);
      s.expect(out.to.host === 'A' && out.to.domid === src && s.domid('guest') === src, `the guest is now ${out.to.host}/${out.to.domid}`);
      const d = s.rt.host.domains.get(src);
      s.expect(d !== undefined && !d.isShutDown && d.logDirty === undefined, 'the source runs again, log-dirty off');
      s.expect(b.xl.domains.size === 0 && b.rt.host.domains.size === 1, `host B keeps domains ${[...b.rt.host.domains.keys()].join(',')}`);
      const stray = (await b.xl.dump('/')).filter((n) => /^\/local\/domain\/[1-9]|^\/local\/domain\/0\/backend\/[a-z]+\/[1-9]|^\/libxl\/[1-9]/.test(n.path));
      s.expect(stray.length === 0, `host B keeps nodes: ${stray.map((n) => n.path).join(', ')}`);
    });
    await s.step('the guest goes on with its devices, memory and disk data', async () => {
      const seen: GuestDevices = await everyDeviceConnected(s, 'guest');
      s.expect(seen.resumes === 0, `cancelled: no resume as a new domain (resumes ${seen.resumes})`);
      const after = await s.guest<{ hash: string; pages: number }>('guest', { cmd: 'mem-hash' });
      s.expect(after.hash === before.hash && after.pages === before.pages, "the workload's pages as the kernel reads them now");
      const r = await s.guest<{ status?: number; data?: Uint8Array; error?: string }>('guest', { cmd: 'blk', device: DISK, op: 'read', sector: SECTOR, sectors: SECTORS });
      s.expect(r.status === 0 && r.data !== undefined && Buffer.from(r.data).equals(Buffer.from(data)), `read back: ${r.error ?? r.status}`);
    });
    await s.expectNoOrphans();
  },
});
