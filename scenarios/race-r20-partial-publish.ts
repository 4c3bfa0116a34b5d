// R20: a writer publishes a group of keys without a transaction, and the flag that announces them
// before the payload. Here blkfront says Initialised before ring-ref, event-channel and protocol
// are there; blkback, reacting at once, reads half a group and gives up on the device.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'race-r20-partial-publish',
  title: 'blkfront announces Initialised before its ring details are in xenstore',
  tags: ['race', 'vbd', 'xenbus'],
  race: { id: 'R20', name: 'partial-publish', source: 'xen b72624aad5, 963d9e8fdf; mirage-net-xen #106/#107' },
  variants: {
    fixed: { description: 'ring details in one transaction, then the state' },
    buggy: { description: 'state first, then the details one by one', guest: { quirks: { blkfront: { publishAfterState: true } } } },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { jitter: { p: [0, 0.5], maxNs: 2e6 } },
  async run(s) {
    s.devicesAgree('guest');
    const id = await s.step('xl create guest with a disk', () => s.create('guest', guestConfig('guest', { disks: [{ vdev: 'xvda', target: 'r20' }] })));
    await s.step('the vbd connects', async () => {
      const be = `/local/domain/0/backend/vbd/${id}/51712/state`;
      s.expect(await s.waitFor(be, '4', 5e9), `backend at ${await s.read(be)}; error: ${await s.read(`/local/domain/0/error/backend/vbd/${id}/51712/error`)}`);
    });
  },
});
