// R02: blkfront's resume path publishes a new ring, says Initialised and - its disk still there,
// requests requeued - says Connected right after, without waiting for the backend. xenbus_resume
// does that for every vbd in turn, while dom0's one xenwatch thread works through the backends'
// handlers one after another. A handler re-reads the frontend's state node when it runs, so one
// that runs after both writes sees Connected twice. Before xen 473e020902 blkback connected the
// ring only on Initialised: it never maps the new ring and that disk hangs. Whether a backend's
// handler runs between its frontend's two writes is up to the schedule.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const VDEVS = [['xvda', 51712], ['xvdb', 51728], ['xvdc', 51744]] as const;
/**
 * A guest kernel of the race's era, without the state-reset check newer Linux has in
 * xenbus_dev_changed: that check races with the resume's own switch to Initialised (the bench's
 * 1,000 seeds of the fixed variant dropped a disk on 5) - a different bug from R02.
 */
const ERA_GUEST = { quirks: { xenbus: { noStateResetCheck: true } } };

export default defineScenario({
  name: 'race-r02-coalesced-state-skip',
  title: 'blkfront resumes with Initialised and Connected back to back; blkback connects each new ring',
  tags: ['race', 'vbd', 'xenbus'],
  race: { id: 'R02', name: 'coalesced-state-skip', source: 'xen 473e020902' },
  variants: {
    fixed: { description: 'blkback connects on Initialised or Connected unless it is Connected already', guest: ERA_GUEST },
    buggy: {
      description: 'blkback connects only when it reads Initialised', dom0: { quirks: { blkback: { connectOnlyOnInitialised: true } } }, guest: ERA_GUEST,
    },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const id = await s.step(`xl create guest with ${VDEVS.length} disks`, () =>
      s.create('guest', guestConfig('guest', { disks: VDEVS.map(([vdev]) => ({ vdev, target: `r02-${vdev}` })) })));
    const fe = (devid: number): string => `/local/domain/${id}/device/vbd/${devid}`;
    const be = (devid: number): string => `/local/domain/0/backend/vbd/${id}/${devid}`;
    await s.step('every vbd connects', async () => {
      for (const [vdev, devid] of VDEVS) {
        s.expect(await s.waitFor(`${be(devid)}/state`, '4', 5e9), `${vdev} backend at ${await s.read(`${be(devid)}/state`)}`);
        s.expect(await s.waitFor(`${fe(devid)}/state`, '4', 5e9), `${vdev} frontend at ${await s.read(`${fe(devid)}/state`)}`);
      }
    });
    await s.step('the guest resumes its vbds: each (after both ends closed) says 1, then 3 and 4 back to back', async () => {
      const r = await s.guest<{ error?: string }>('guest', { cmd: 'blk-resume' });
      s.expect(r.error === undefined, `blk-resume: ${r.error}`);
    });
    await s.step('blkback maps every ring its frontend published and goes Connected', async () => {
      for (const [vdev, devid] of VDEVS) {
        const ref = Number(await s.read(`${fe(devid)}/ring-ref`));
        s.expect(await s.waitFor(`${be(devid)}/state`, '4', 5e9),
          `${vdev}: frontend ${await s.read(`${fe(devid)}/state`)}, backend ${await s.read(`${be(devid)}/state`)}: blkback never mapped ring-ref ${ref}`);
        const mapped = s.trace.some((e) => e.kind === 'gnttab' && e.op === 'map_grant_ref' && e.domid === 0 && e.dom === id && e.status === 0 && e.ref === ref);
        s.expect(mapped, `${vdev}: blkback never mapped ring-ref ${ref}`);
      }
    });
    await s.step('a read through each new ring completes', async () => {
      for (const [vdev, devid] of VDEVS) {
        const io = await s.guest<{ status?: number; error?: string }>('guest', { cmd: 'blk', device: `vbd/${devid}`, op: 'read', sector: 0, sectors: 8 });
        s.expect(io.status === 0, `${vdev} read after resume: ${io.error ?? io.status}`);
      }
    });
  },
});
