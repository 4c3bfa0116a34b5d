// The two-domain vbd handshake, nothing else: dom0's toolstack creates a guest with one disk and
// both ends of the vbd walk XenbusStateInitialising -> InitWait -> Initialised -> Connected. Small
// enough for `xensim explore` to run every schedule within a preemption bound; its variants
// carry the xenbus bugs of R01 and R20 into this one handshake, so the count of failing
// schedules says how narrow each window is.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'vbd-handshake',
  title: 'one guest, one disk: blkfront and blkback reach Connected',
  tags: ['vbd', 'xenbus', 'explore'],
  variants: {
    fixed: { description: 'as Linux and libxl do it' },
    'watch-record-after-reply': {
      description: 'R01: the guest records a watch only once XS_WATCH is answered',
      guest: { quirks: { xenbus: { watchRecordAfterReply: true } } },
    },
    'partial-publish': {
      description: 'R20: blkfront says Initialised before ring-ref and event-channel are written',
      guest: { quirks: { blkfront: { publishAfterState: true } } },
    },
  },
  expect: { fixed: 'pass', 'watch-record-after-reply': 'fail', 'partial-publish': 'fail' },
  async run(s) {
    s.devicesAgree('guest');
    const id = await s.step('xl create guest with one disk', () => s.create('guest', guestConfig('guest', { disks: [{ vdev: 'xvda', target: 'hs' }] })));
    await s.step('both ends Connected', async () => {
      const be = `/local/domain/0/backend/vbd/${id}/51712/state`;
      const fe = `/local/domain/${id}/device/vbd/51712/state`;
      s.expect(await s.waitFor(be, '4', 5e9), `backend at ${await s.read(be)}`);
      s.expect(await s.waitFor(fe, '4', 5e9), `frontend at ${await s.read(fe)}`);
    });
  },
});
