// R01: the guest's xenbus client recorded a new watch's token only after XS_WATCH was answered;
// the initial event xenstored queues right behind the reply found no watch and was dropped. A
// frontend arming its otherend watch after the backend already reached InitWait never hears of
// it, and the handshake stalls.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'race-r01-watch-first-event-lost',
  title: 'a frontend arms its otherend watch after the backend reached InitWait',
  tags: ['race', 'xenbus'],
  race: { id: 'R01', name: 'watch-first-event-lost', source: 'xen 2fb80a5353 (fix), e83a8e7c2b (initial fire)' },
  variants: {
    fixed: { description: 'record the watch before sending XS_WATCH' },
    buggy: { description: 'record the watch after the reply', guest: { quirks: { xenbus: { watchRecordAfterReply: true } } } },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 } },
  async run(s) {
    const id = await s.step('xl create guest with a disk (backend waits in InitWait before the guest runs)', () =>
      s.create('guest', guestConfig('guest', { disks: [{ vdev: 'xvda', target: 'r01' }] })));
    await s.step('the vbd handshake completes', async () => {
      s.expect(await s.waitFor(`/local/domain/${id}/device/vbd/51712/state`, '4', 5e9),
        `frontend stuck at ${await s.read(`/local/domain/${id}/device/vbd/51712/state`)}: the initial watch event was lost`);
    });
  },
});
