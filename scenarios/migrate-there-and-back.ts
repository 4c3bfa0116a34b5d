// xl migrate to host B and back to host A: each arrival is a new domain (a new domid), and host
// A, which freed the guest's first domid when it left, gives it another on return (Xen hands out
// domids round robin); nothing of the domids left behind stays in either tree. The guest's memory
// and disk data come home unchanged, and it resumed twice.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';
import { DISK, everyDeviceConnected, expectDomainGone, expectMigrated } from './migration-checks.ts';

const SECTOR = 32;
const SECTORS = 8;

export default defineScenario({
  name: 'migrate-there-and-back',
  title: 'xl migrate to another host and back: a new domid each way, nothing left of the old ones, memory and disk unchanged',
  tags: ['migration', 'lifecycle', 'devices'],
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 }, suspendAckDelayNs: [0, 5e6] },
  async run(s) {
    s.devicesAgree('guest');
    const b = await s.peer('B');
    const a = s.hosts.get('A')!;
    const first = await s.step('xl create guest on host A (xvda, vif 0)', () =>
      s.create('guest', guestConfig('traveller', { memory: 16, disks: [{ vdev: 'xvda', target: 'traveller-root', sizeMiB: 1 }], vifs: [{}] })));
    await s.step('every device connects', () => everyDeviceConnected(s, 'guest'));
    const data = new Uint8Array(SECTORS * 512);
    for (let i = 0; i < data.length; i++) data[i] = s.rng.below(256);
    const before = await s.step('the guest writes its disk and fills memory', async () => {
      const w = await s.guest<{ status?: number; error?: string }>('guest', { cmd: 'blk', device: DISK, op: 'write', sector: SECTOR, sectors: SECTORS, data });
      s.expect(w.status === 0, `write: ${w.error ?? w.status}`);
      await s.guest('guest', { cmd: 'mem-fill', pages: 1 + s.rng.below(16) });
      return s.guest<{ hash: string; pages: number }>('guest', { cmd: 'mem-hash' });
    });
    const there = await s.step('xl migrate guest B', async () => {
      const out = await s.migrate('guest', 'B');
      await expectMigrated(s, out);
      return out.to.domid;
    });
    await s.step('every device Connected at host B', () => everyDeviceConnected(s, 'guest'));
    const back = await s.step('xl migrate guest A', async () => {
      const out = await s.migrate('guest', 'A');
      await expectMigrated(s, out);
      return out.to.domid;
    });
    await s.step('home with a new domid; neither host keeps the domids left behind', async () => {
      s.expect(back !== first, `host A gave the returning guest its old domid ${first}`);
      await expectDomainGone(s, a, first);
      await expectDomainGone(s, b, there);
      s.expect(b.xl.domains.size === 0, `host B keeps ${[...b.xl.domains.keys()].join(',')}`);
    });
    await s.step('memory, disk data and devices as before; resumed twice', async () => {
      const seen = await everyDeviceConnected(s, 'guest');
      s.expect(seen.resumes === 2, `resumes ${seen.resumes}`);
      const after = await s.guest<{ hash: string; pages: number }>('guest', { cmd: 'mem-hash' });
      s.expect(after.hash === before.hash && after.pages === before.pages, "the workload's pages as the kernel reads them now");
      const r = await s.guest<{ status?: number; data?: Uint8Array; error?: string }>('guest', { cmd: 'blk', device: DISK, op: 'read', sector: SECTOR, sectors: SECTORS });
      s.expect(r.status === 0 && r.data !== undefined && Buffer.from(r.data).equals(Buffer.from(data)), `read back: ${r.error ?? r.status}`);
    });
    await s.expectNoOrphans();
  },
});
