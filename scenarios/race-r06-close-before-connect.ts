// R06: the toolstack detaches a disk right after attaching it. If blkback heads for Closing before
// blkfront connected, the old blkfront tore down a disk it never created (a NULL gendisk in
// Linux). Whether the frontend connected first depends on the interleaving.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'race-r06-close-before-connect',
  title: 'block-detach right after block-attach, before the frontend may have connected',
  tags: ['race', 'vbd'],
  race: { id: 'R06', name: 'close-before-connect', source: 'Linux f9710c357e5b' },
  variants: {
    fixed: { description: 'blkfront handles Closing in any state' },
    buggy: { description: 'blkfront assumes a disk exists when the backend closes', guest: { quirks: { blkfront: { closeBeforeConnectOops: true } } } },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { jitter: { p: [0, 0.5], maxNs: 2e6 }, hotplugDelayNs: [0, 1e6] },
  async run(s) {
    const id = await s.step('xl create guest', () => s.create('guest', guestConfig('guest', { disks: [{ vdev: 'xvda', target: 'r06-root' }] })));
    // One step: the host does not settle between the two verbs.
    await s.step('xl block-attach guest xvdb, then block-detach at once', async () => {
      await s.xl.blockAttach(id, { vdev: 'xvdb', target: 'r06-data' });
      // Not always clean: blkback finishing its connect can overwrite the toolstack's Closing, and
      // libxl then removes the device by force after LIBXL_DESTROY_TIMEOUT, as real libxl does.
      const r = await s.xl.blockDetach(id, 'xvdb');
      s.note(r.clean ? 'backend reached Closed' : 'removed by force after the timeout');
    });
    await s.step('nothing of xvdb is left', async () => {
      s.expect((await s.read(`/local/domain/0/backend/vbd/${id}/51728`)) === undefined, 'backend dir removed');
      s.expect((await s.read(`/local/domain/${id}/device/vbd/51728`)) === undefined, 'frontend dir removed');
    });
  },
});
