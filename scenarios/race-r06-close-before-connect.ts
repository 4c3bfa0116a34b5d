// R06: the toolstack detaches a disk as soon as blkback says Connected. xl block-detach reads the
// disk back from libxl's copy, then libxl writes Closing to the backend's state; if blkfront's
// watch handler (behind the guest's other xenbus events) reads the backend's state only after
// that, it sees Closing and never Connected, and the old blkfront tore down a disk it never
// created (a NULL gendisk in Linux). Whether blkfront read Connected and connected first is up to
// the schedule.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'race-r06-close-before-connect',
  title: 'block-detach as the backend connects, before the frontend may have connected',
  tags: ['race', 'vbd'],
  race: { id: 'R06', name: 'close-before-connect', source: 'Linux f9710c357e5b' },
  variants: {
    fixed: { description: 'blkfront handles Closing in any state' },
    buggy: { description: 'blkfront assumes a disk exists when the backend closes', guest: { quirks: { blkfront: { closeBeforeConnectOops: true } } } },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  // Jitter delays every one of xl's requests, and xl's are many: much of it and blkfront always wins.
  faults: { jitter: { p: [0, 0.2], maxNs: 1e6 }, hotplugDelayNs: [0, 1e6] },
  async run(s) {
    const id = await s.step('xl create guest', () => s.create('guest', guestConfig('guest', { disks: [{ vdev: 'xvda', target: 'r06-root' }] })));
    const be = `/local/domain/0/backend/vbd/${id}/51728`;
    // One step: the host does not settle between the two verbs.
    await s.step('xl block-attach guest xvdb; xl block-detach the moment blkback is Connected', async () => {
      // Caught in the trace at blkback's commit, not once the host is quiet: by then blkfront
      // would have connected too.
      const connected = await s.runUntil(() => s.xl.blockAttach(id, { vdev: 'xvdb', target: 'r06-data' }), (e) =>
        e.kind === 'xenbus' && e.role === 'backend' && e.path === `${be}/state` && e.state === 4);
      s.expect(connected, 'blkback reached Connected');
      const r = await s.xl.blockDetach(id, 'xvdb');
      s.note(r.clean ? 'backend reached Closed' : 'removed by force after the timeout');
    });
    await s.step('nothing of xvdb is left', async () => {
      s.expect((await s.read(`/local/domain/0/backend/vbd/${id}/51728`)) === undefined, 'backend dir removed');
      s.expect((await s.read(`/local/domain/${id}/device/vbd/51728`)) === undefined, 'frontend dir removed');
    });
  },
});
