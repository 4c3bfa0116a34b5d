// R03: netback must not say Connected before the vif hotplug script has put the vif on its bridge
// (hotplug-status = connected), and must still reach Connected when the frontend reconnects.
// Two of Linux's reverted changes broke this in opposite ways.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'race-r03-netback-hotplug-gate',
  title: 'netback waits for hotplug-status, also across a frontend reconnect',
  tags: ['race', 'vif'],
  race: { id: 'R03', name: 'netback-hotplug-gate', source: 'Linux 1f2565780e9b, 2afeec08ab5c, 0f4558ae9187, c55f34b6aec2; xen 0bdc43c8de' },
  variants: {
    fixed: { description: 'always watch hotplug-status; keep it until the vif goes' },
    buggy: { description: 'no gate: Connected as soon as the rings are mapped', dom0: { quirks: { netback: { hotplugGate: 'no-gate' } } } },
    'delete-on-disconnect': {
      description: 'gate node deleted when the frontend disconnects (0f4558ae9187)',
      dom0: { quirks: { netback: { hotplugGate: 'delete-on-disconnect' } } },
    },
    'no-empty-hotplug-status': {
      description: 'no empty hotplug-status from the toolstack (before xen 0bdc43c8de) and netback watching only an existing node (2afeec08ab5c): Connected before the script ran, or libxl missing InitWait',
      dom0: { quirks: { netback: { hotplugGate: 'watch-if-exists' }, toolstack: { noEmptyHotplugStatus: true } } },
    },
  },
  expect: { fixed: 'pass', buggy: 'fail', 'delete-on-disconnect': 'fail', 'no-empty-hotplug-status': 'fail' },
  faults: { jitter: { p: [0, 0.4], maxNs: 3e6 }, hotplugDelayNs: [0, 8e6] },
  async run(s) {
    const id = await s.step('xl create guest (no NIC yet)', () => s.create('guest', guestConfig('guest')));
    // Hot-plugged into a running guest, the frontend can connect while the script still runs.
    await s.step('xl network-attach guest (the hotplug script takes a while)', () => s.xl.networkAttach(id, {}));
    const be = `/local/domain/0/backend/vif/${id}/0`;
    await s.step('both ends Connected', async () => {
      s.expect(await s.waitFor(`${be}/state`, '4', 5e9), `backend stuck at ${await s.read(`${be}/state`)}`);
    });
    // Safety: at the moment netback wrote Connected, the script had already reported connected.
    let status: string | undefined;
    for (const e of s.trace) {
      if (e.kind !== 'xenstore' || e.dir !== 'IN' || e.type !== 'WRITE') continue;
      const [path, value] = String(e.payload).split('\\0');
      if (path === `${be}/hotplug-status`) status = value;
      if (path === `${be}/state` && value === '4') {
        s.expect(status === 'connected', `netback wrote Connected while hotplug-status was "${status ?? ''}"`);
        break;
      }
    }
    await s.step('the frontend disconnects and reconnects (e.g. iPXE hands over to the OS)', async () => {
      await s.guest('guest', { cmd: 'net-reconnect', device: 'vif/0' } as never);
    });
    await s.step('netback reaches Connected again without a new hotplug run', async () => {
      s.expect(await s.waitFor(`${be}/state`, '4', 5e9), `backend stuck at ${await s.read(`${be}/state`)} after the reconnect`);
    });
  },
});
