// R05 (b) on xl migrate: a guest with a disk on shared storage migrates from host B to this run's
// host A, whose migrate-receive builds the domain with new backends in InitWait and unpauses it on
// the go. Its kernel resumes xvda as after xl restore (race-r05-resume-stale-frontend.ts): before
// xen 9f640de2b0, xenbus_dev_resume armed the otherend watch before blkfront's resume hook, and
// xenwatch's handler for the watch's initial firing may run between the state reset and the hook,
// set up a ring of its own beside the hook's, and leave blkback serving a ring the frontend does
// not keep. The schedule of the destination (this run's host, which the replay and shrink steer)
// decides; the fix arms the watch after the hook. Checked at the destination: 4/4, the ring in
// use is the one published and mapped, and data written at the source reads back.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';
import { expectMigrated } from './migration-checks.ts';
import { DEVID, R05_VARIANTS, expectServedRing } from './race-r05-resume-stale-frontend.ts';

const SECTOR = 8;
const SECTORS = 8;

export default defineScenario({
  name: 'race-r05-migrate-stale-frontend',
  title: 'xl migrate: blkfront resumes at the destination against a new backend while the otherend watch fires',
  tags: ['race', 'vbd', 'xenbus', 'migration'],
  race: { id: 'R05', name: 'resume-stale-frontend (on migration)', source: 'xen 9f640de2b0 (with f9eb14bf6a, b4c7ff25ae)' },
  variants: R05_VARIANTS,
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const disk = '/images/r05m-root.img';
    await s.step('xl create guest on host B (xvda on shared storage, vif 0)', () =>
      s.create('guest', guestConfig('r05m', { memory: 16, disks: [{ vdev: 'xvda', target: disk, sizeMiB: 1 }], vifs: [{}] }), {}, 'B'));
    const data = new Uint8Array(SECTORS * 512);
    for (let i = 0; i < data.length; i++) data[i] = s.rng.below(256);
    await s.step('xvda connects at host B; the guest writes to it', async () => {
      const b = s.hostOf('guest');
      s.expect(await b.waitFor(`/local/domain/${s.domid('guest')}/device/vbd/${DEVID}/state`, '4', 5e9), 'xvda frontend Connected');
      const w = await s.guest<{ status?: number; error?: string }>('guest', { cmd: 'blk', device: `vbd/${DEVID}`, op: 'write', sector: SECTOR, sectors: SECTORS, data });
      s.expect(w.status === 0, `write through blkfront: ${w.error ?? w.status}`);
    });
    const id = await s.step('xl migrate guest A: a new domain, new backends in InitWait, the kernel resumes xvda', async () => {
      const out = await s.migrate('guest', 'A');
      await expectMigrated(s, out);
      return out.to.domid;
    });
    const fe = `/local/domain/${id}/device/vbd/${DEVID}`;
    const be = `/local/domain/0/backend/vbd/${id}/${DEVID}`;
    await s.step('after resume every device reaches 4/4', async () => {
      const ok = (await s.waitFor(`${fe}/state`, '4', 2e9)) && (await s.waitFor(`${be}/state`, '4', 2e9));
      s.expect(ok, `xvda: frontend ${await s.read(`${fe}/state`)}, backend ${await s.read(`${be}/state`)}`);
      const vif = [`/local/domain/${id}/device/vif/0/state`, `/local/domain/0/backend/vif/${id}/0/state`];
      const vifOk = (await s.waitFor(vif[0], '4', 2e9)) && (await s.waitFor(vif[1], '4', 2e9));
      s.expect(vifOk, `vif 0: frontend ${await s.read(vif[0])}, backend ${await s.read(vif[1])}`);
    });
    await s.step('the ring the frontend uses is the one it published and blkback mapped', () => expectServedRing(s, id));
    await s.step('what the guest wrote at host B reads back through the new ring', async () => {
      const r = await s.guest<{ status?: number; data?: Uint8Array; error?: string }>('guest', { cmd: 'blk', device: `vbd/${DEVID}`, op: 'read', sector: SECTOR, sectors: SECTORS });
      s.expect(r.status === 0 && r.data !== undefined && Buffer.from(r.data).equals(Buffer.from(data)), `read back: ${r.error ?? r.status}`);
    });
    await s.expectNoOrphans();
  },
});
