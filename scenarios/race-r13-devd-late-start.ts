// R13(a): `xl devd` in a network driver domain must run the vif-bridge script of every vif whose
// backend there waits in InitWait, whenever devd itself got going (xen 7d9fa19ec4,
// QubesOS/qubes-issues#1990).
//
// The driver domain (netvm) runs netback in its kernel and devd as a user process; dom0's libxl
// adds the guest's vif with backend=netvm, waits for InitWait there and leaves the script to
// devd. In Qubes the guest was started while netvm was still booting, so netvm's kernel probed
// the vif before or after its init had started devd. Here netvm boots first with devd not yet
// started, and its init starts devd (as `systemctl start xendriverdomain` would) at a point the
// scenario picks: when netback, having read the frontend's Initialising, opens the transaction
// that writes InitWait. That fixes devd's start offset (the catalogue's knob); from there the
// schedule alone decides whether devd's XS_WATCH reaches xenstored before or after the InitWait
// commit. (Letting netvm's boot and the guest's creation race as a whole decides nothing: each
// side is hundreds of steps long, so one always finished first, whatever the seed.) The buggy
// devd acts on watch events only, so a vif that waited before its watch existed is never
// configured: netback holds Connected back for a hotplug-status that never comes.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'race-r13-devd-late-start',
  title: 'xl devd in a driver domain runs the script of a vif that waited before devd started',
  tags: ['race', 'vif', 'driver-domain'],
  race: { id: 'R13', name: 'devd-late-start', source: 'xen 7d9fa19ec4; QubesOS/qubes-issues#1990' },
  variants: {
    fixed: { description: 'devd arms its backend watch, then walks the backends already there' },
    buggy: { description: 'devd acts on watch events only (before xen 7d9fa19ec4)', knobs: { onlyEventsAfterStart: true } },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 } },
  async run(s) {
    const devd = { onlyEventsAfterStart: s.knob('onlyEventsAfterStart') ?? false };
    const netvm = await s.step('xl create netvm (driver_domain=1: its kernel runs netback; xl devd not started yet)', () =>
      s.create('netvm', guestConfig('netvm', { driver_domain: true }), { guest: { driverDomain: { devdStart: 'command', devd } } }));
    // Paused until its vif is in place, as xl create adds devices before it unpauses: netback
    // then waits in InitWait for a frontend that cannot move yet, where dom0's libxl sees it.
    const guest = await s.step('xl create -p guest (no NIC yet)', () => s.create('guest', guestConfig('guest'), { paused: true }));
    const fe = `/local/domain/${guest}/device/vif/0`;
    const be = `/local/domain/${netvm}/backend/vif/${guest}/0`;
    await s.step('xl network-attach guest backend=netvm; netvm\'s init starts xl devd as netback probes the vif', async () => {
      let attach: Promise<unknown> | undefined;
      // netback's otherend handler has read the frontend's state (Initialising) and begins the
      // transaction that writes InitWait.
      let feRead = false;
      const probed = await s.runUntil(async () => {
        attach = s.xl.networkAttach(guest, { backend: netvm });
        attach.catch(() => undefined);
      }, (e) => {
        if (e.kind !== 'xenstore' || e.dir !== 'IN' || e.domid !== netvm) return false;
        if (e.type === 'READ' && e.payload === `${fe}/state\\0`) feRead = true;
        return feRead && e.type === 'TRANSACTION_START';
      });
      s.expect(probed, 'netback in netvm never probed the vif');
      const started = s.guest('netvm', { cmd: 'devd-start' });
      try {
        await attach;
      } catch (e) {
        s.expect(false, `xl network-attach failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      await started;
    });
    await s.step('xl unpause guest', () => s.xl.unpause(guest));
    await s.step('the vif\'s script ran in netvm and both ends reach Connected', async () => {
      const connected = await s.waitFor(`${be}/state`, '4', 2e9);
      const status = await s.read(`${be}/hotplug-status`);
      s.expect(connected, `netvm's backend stuck at state ${await s.read(`${be}/state`)} (hotplug-status "${status ?? ''}"): xl devd never ran vif-bridge`);
      s.expect(await s.waitFor(`${fe}/state`, '4', 2e9), 'the guest\'s netfront never reached Connected');
    });
    // Exactly one add per vif: the walk and a watch event that both see InitWait run it once.
    const adds = s.trace.filter((e) => e.kind === 'devd' && e.event === 'add' && e.device === be).length;
    s.expect(adds === 1, `xl devd started vif-bridge add ${adds} times for ${be}`);
  },
});
