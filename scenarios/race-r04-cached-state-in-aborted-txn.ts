// R04: xenbus_switch_state cached the new state before its transaction committed. When the commit
// failed with EAGAIN, the retry saw "already in that state" and wrote nothing, so the other end
// never heard of it. The bug is from 2006, when C xenstored failed a transaction if anything at
// all had changed since it started: a state switch conflicts only on the schedules where some
// other write (the toolstack's, the hotplug script's, another device's) lands inside its
// transaction. The default faults add spurious EAGAINs on top.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const quirk = { xenbus: { cacheStateInsideTransaction: true } };
/** xenstored as it was then (before xen f2bebf72c4): any change anywhere is a conflict. */
const xenstored2006 = { conflictOnAnyChange: true };

export default defineScenario({
  name: 'race-r04-cached-state-in-aborted-txn',
  title: 'four disks come up together while some transaction commits fail with EAGAIN',
  tags: ['race', 'xenbus'],
  race: { id: 'R04', name: 'cached-state-in-aborted-txn', source: 'xen f207095aac' },
  variants: {
    fixed: { description: 'the cached state changes only after a successful commit', dom0: { xenstored: xenstored2006 } },
    buggy: {
      description: 'the state is cached inside the transaction', guest: { quirks: quirk }, dom0: { quirks: quirk, xenstored: xenstored2006 },
    },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { spuriousEagain: [0.02, 0.2], jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const disks = ['xvda', 'xvdb', 'xvdc', 'xvdd'].map((vdev) => ({ vdev, target: `r04-${vdev}`, sizeMiB: 4 }));
    s.devicesAgree('guest');
    const id = await s.step('xl create guest with four disks', () => s.create('guest', guestConfig('guest', { disks })));
    await s.step('every disk reaches Connected on both ends', async () => {
      for (const devid of [51712, 51728, 51744, 51760]) {
        const fe = `/local/domain/${id}/device/vbd/${devid}/state`;
        const be = `/local/domain/0/backend/vbd/${id}/${devid}/state`;
        s.expect(await s.waitFor(fe, '4', 5e9) && await s.waitFor(be, '4', 5e9),
          `vbd ${devid} stuck: frontend ${await s.read(fe)}, backend ${await s.read(be)}`);
      }
    });
  },
});
