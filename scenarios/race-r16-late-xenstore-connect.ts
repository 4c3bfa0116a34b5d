// R16: a dom0less guest runs before xenstored knows it. Xen's builder leaves its store page
// saying XENSTORE_RECONNECT; init-dom0less later sends XS_INTRODUCE, whose handling resets the
// ring (all four indexes 0), sets XENSTORE_CONNECTED and notifies. Before Linux a3607581cd49 a
// guest whose store page existed used the ring at once: requests it wrote before the reset are
// wiped and it waits for their replies for ever. The fix waits for CONNECTED and the event.
// Whether the guest's first request or the introduction comes first is up to the schedule.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'race-r16-late-xenstore-connect',
  title: 'a dom0less guest boots while init-dom0less introduces it; its xenstore requests are answered',
  tags: ['race', 'xenstore', 'boot'],
  race: { id: 'R16', name: 'late-xenstore-connect (dom0less)', source: 'Linux a3607581cd49, 5b3353949e89; xen fc2b57c9af, e58bd71c09' },
  variants: {
    fixed: { description: 'the guest waits for XENSTORE_CONNECTED and the event before its first request' },
    buggy: {
      description: 'the guest writes requests as soon as the store page exists',
      guest: { quirks: { xenbus: { ringBeforeConnected: true } } },
    },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  async run(s) {
    const id = await s.step('start a dom0less guest; init-dom0less introduces it as it boots', () =>
      s.create('guest', guestConfig('guest'), { dom0less: true, guest: { data: { booted: '1' } } }));
    await s.step('the guest\'s xenstore requests are answered (its agent writes data/booted)', async () => {
      s.expect(await s.waitFor(`/local/domain/${id}/data/booted`, '1', 5e9),
        `data/booted never written: requests the guest wrote before the introduction's ring reset were lost`);
      s.expect(await s.waitFor(`/local/domain/${id}/control/feature-suspend`, '1', 1e9), 'control/feature-suspend never written');
    });
  },
});
