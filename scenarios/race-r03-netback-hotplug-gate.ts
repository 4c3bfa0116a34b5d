// R03: netback must not say Connected before the vif hotplug script has put the vif on its bridge
// (hotplug-status = connected), and must still reach Connected when the frontend reconnects.
// Two of Linux's reverted changes broke this in opposite ways.
//
// No injected fault is needed: the vif is hot-plugged into a running guest, so the guest's
// frontend handshake runs while vif-bridge does (a process per command, each a point where dom0
// may run anyone else), and the guest restarts its NIC as soon as its frontend is Connected. The
// schedule decides whether the script reports connected before netback's Connected (no-gate,
// watch-if-exists: else Connected comes too early) and before the restart (delete-on-disconnect:
// a report written before the restart is deleted for good; one written after it survives).
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
    const be = `/local/domain/0/backend/vif/${id}/0`;
    const fe = `/local/domain/${id}/device/vif/0/state`;
    // Hot-plugged into a running guest, the frontend connects while the vif-bridge script runs;
    // and a guest may restart its NIC as soon as it has one (iPXE handing over to the OS, Windows
    // drivers closing and reopening it) - before, or after, the script reported connected.
    await s.step('xl network-attach guest; the guest restarts its NIC the moment its frontend is Connected', async () => {
      let attach: Promise<unknown> | undefined;
      const connected = await s.runUntil(async () => {
        attach = s.xl.networkAttach(id, {});
        attach.catch(() => undefined);
      }, (e) => e.kind === 'xenbus' && e.role === 'frontend' && e.domid === id && e.path === fe && e.state === 4);
      if (connected) await s.guest('guest', { cmd: 'net-reconnect', device: 'vif/0' } as never);
      try {
        await attach;
      } catch (e) {
        s.expect(false, `xl network-attach failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      s.expect(connected, `the frontend never reached Connected (at ${await s.read(fe)})`);
    });
    await s.step('netback reaches Connected, across the restart, without a second hotplug run', async () => {
      s.expect(await s.waitFor(`${be}/state`, '4', 5e9), `backend stuck at ${await s.read(`${be}/state`)} after the restart`);
    });
    // Safety: whenever netback wrote Connected, the script had reported connected (and that
    // report had not been deleted since).
    let status: string | undefined;
    for (const e of s.trace) {
      if (e.kind !== 'xenstore' || e.dir !== 'IN') continue;
      const [path, value] = String(e.payload).split('\\0');
      if (path === `${be}/hotplug-status`) {
        if (e.type === 'WRITE') status = value;
        else if (e.type === 'RM') status = undefined;
      }
      if (e.type === 'WRITE' && path === `${be}/state` && value === '4') {
        s.expect(status === 'connected', `netback wrote Connected while hotplug-status was ${status === undefined ? 'absent' : `"${status}"`}`);
      }
    }
  },
});
