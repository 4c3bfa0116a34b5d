// R05 (b): a guest with a disk is saved and restored into a new domain, whose blkfront finds a new
// backend in InitWait. xenbus_dev_resume re-reads the other end and resets the cached state; before
// xen 9f640de2b0 it then armed the otherend watch and only afterwards called blkfront's resume
// hook. The watch's initial firing goes to xenwatch, a thread beside the resuming one: if its
// handler runs after the state reset and before the hook has said Initialised, it sees InitWait and
// Initialising and sets up a ring of its own beside the hook's - each may overwrite or tear down the
// other's, and blkback maps whichever ring-ref it reads when the frontend says Initialised. If that
// is not the ring the frontend keeps, the disk hangs. The handler running before the reset (it sees
// the stale Connected and does nothing), after the hook, or blkback reading only the last ring-ref
// all pass: the schedule decides. The fix arms the watch after the hook, whose initial firing then
// finds the new ring. Checked: 4/4 after resume, the frontend's ring is the one published in
// ring-ref/event-channel and the one blkback mapped, no ring operation on the pre-suspend ring
// (asserted in blkfront), and data written before the save reads back.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ScenarioRun } from '../sim/scenario/run.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export const DEVID = 51712;
const SECTOR = 8;
const SECTORS = 8;

interface Devices {
  devices: { name: string; stateName: string; ring?: { ringRef?: number; port?: number; presuspendRing: boolean } }[];
  errors: string[];
}

/**
 * The ring blkfront uses in domain `id` (on the run's own host) is the one it published in
 * ring-ref/event-channel and the one blkback mapped last, and none is the pre-suspend ring.
 */
export async function expectServedRing(s: ScenarioRun, id: number): Promise<void> {
  const fe = `/local/domain/${id}/device/vbd/${DEVID}`;
  // blkback's connect_ring reads ring-ref once per connect: its last read (dom0's READ and the
  // reply, paired by connection and req_id) names the ring it serves; its map must follow.
  const own = s.trace.filter((e) => e.host === undefined);
  const asked = new Set<string>();
  let served: { ref: string; at: number } | undefined;
  own.forEach((e, i) => {
    if (e.kind !== 'xenstore' || e.domid !== 0 || e.type !== 'READ') return;
    const key = `${e.conn}:${e.req_id}`;
    if (e.dir === 'IN' && e.payload === `${fe}/ring-ref\\0`) asked.add(key);
    else if (e.dir === 'OUT' && asked.delete(key)) served = { ref: String(e.payload), at: i };
  });
  const mapped = served !== undefined && own.slice(served.at).some((e) =>
    e.kind === 'gnttab' && e.op === 'map_grant_ref' && e.domid === 0 && e.dom === id && e.status === 0 && String(e.ref) === served!.ref);
  const seen = await s.guest<Devices>('guest', { cmd: 'devices' });
  s.expect(seen.errors.length === 0, `guest oops: ${seen.errors.join('; ')}`);
  const ring = seen.devices.find((d) => d.name === `vbd/${DEVID}`)?.ring;
  s.expect(ring?.ringRef !== undefined && ring.port !== undefined && !ring.presuspendRing, `blkfront holds no live ring: ${JSON.stringify(ring)}`);
  const ref = await s.read(`${fe}/ring-ref`);
  const port = await s.read(`${fe}/event-channel`);
  s.expect(ref === String(ring!.ringRef) && port === String(ring!.port),
    `published ring-ref ${ref}, event-channel ${port}; blkfront uses ring-ref ${ring!.ringRef}, port ${ring!.port}`);
  s.expect(served?.ref === String(ring!.ringRef) && mapped,
    `blkback serves ring-ref ${served?.ref ?? 'none'}${mapped ? '' : ' (not mapped)'}, blkfront uses ${ring!.ringRef}`);
}

/** R05's two orders of xenbus_dev_resume, the same whether the guest comes back from a file or a migration. */
export const R05_VARIANTS = {
  fixed: { description: "xenbus_dev_resume arms the otherend watch after the driver's resume hook" },
  buggy: {
    description: "xenbus_dev_resume arms the otherend watch before the driver's resume hook (before xen 9f640de2b0)",
    guest: { quirks: { xenbus: { watchOtherendBeforeResume: true } } },
  },
};

export default defineScenario({
  name: 'race-r05-resume-stale-frontend',
  title: 'xl save then xl restore: blkfront resumes against a new backend while the otherend watch fires',
  tags: ['race', 'vbd', 'xenbus', 'migration'],
  race: { id: 'R05', name: 'resume-stale-frontend', source: 'xen 9f640de2b0 (with f9eb14bf6a, b4c7ff25ae)' },
  variants: R05_VARIANTS,
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const src = await s.step('xl create guest (xvda, vif 0)', () =>
      s.create('guest', guestConfig('r05', { memory: 16, disks: [{ vdev: 'xvda', target: 'r05-root', sizeMiB: 1 }], vifs: [{}] })));
    const data = new Uint8Array(SECTORS * 512);
    for (let i = 0; i < data.length; i++) data[i] = s.rng.below(256);
    await s.step('xvda connects; the guest writes to it', async () => {
      s.expect(await s.waitFor(`/local/domain/${src}/device/vbd/${DEVID}/state`, '4', 5e9), 'xvda frontend Connected');
      const w = await s.guest<{ status?: number; error?: string }>('guest', { cmd: 'blk', device: `vbd/${DEVID}`, op: 'write', sector: SECTOR, sectors: SECTORS, data });
      s.expect(w.status === 0, `write through blkfront: ${w.error ?? w.status}`);
    });

    const dir = mkdtempSync(path.join(tmpdir(), 'xensim-r05-'));
    let id: number;
    try {
      const file = path.join(dir, 'r05.xl');
      await s.step('xl save guest', () => s.xl.save(src, file, {}));
      id = await s.step('xl restore: a new domain, a new backend in InitWait, the kernel resumes xvda', async () => {
        const r = await s.xl.restore(file, { guest: s.guestArgs() });
        s.roles.set('guest', r.domid);
        return r.domid;
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

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
    await s.step('what the guest wrote before the save reads back through the new ring', async () => {
      const r = await s.guest<{ status?: number; data?: Uint8Array; error?: string }>('guest', { cmd: 'blk', device: `vbd/${DEVID}`, op: 'read', sector: SECTOR, sectors: SECTORS });
      s.expect(r.status === 0 && r.data !== undefined && Buffer.from(r.data).equals(Buffer.from(data)), `read back: ${r.error ?? r.status}`);
    });
  },
});
