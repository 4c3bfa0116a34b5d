// xenstored dies after the guest has booted. Real Xen has no recovery for that (without a live
// update or a restartable stub domain): requests on a guest's ring are never read, so the guest's
// xenstore access hangs for good. What keeps working is everything that does not go through
// xenstore - the devices' shared rings and event channels - so the devices stay in their last
// state and block I/O still completes. The scenario passes when it observes exactly that hang.
import { XsdSockmsgType } from '../hypervisor/public/io/xs_wire.ts';
import { defineScenario } from '../sim/scenario/scenario.ts';
import { blockIoCompletes, createGuestWithDevices } from './xenstored-crash-checks.ts';

export default defineScenario({
  name: 'xenstored-crash',
  title: 'after xenstored dies a guest\'s xenstore request hangs for ever while its devices keep working',
  tags: ['xenstore', 'fault'],
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 } },
  async run(s) {
    // No devicesAgree invariant: once xenstored is gone, reading the device states would hang too.
    await createGuestWithDevices(s, 'orphan');
    await s.step('the guest reads its name from xenstore', async () => {
      const r = await s.guest<{ payload?: string }>('guest', { cmd: 'xs', type: XsdSockmsgType.XS_READ, payload: 'name\0', timeoutNs: 1e9 });
      s.expect(r.payload === 'orphan', `read name: ${JSON.stringify(r)}`);
    });
    await s.step('xenstored crashes', async () => {
      s.fault('xenstored-crash');
      s.rt.send(0, { cmd: 'xenstored-crash' });
    });
    await s.step('the guest\'s next xenstore request never completes', async () => {
      // 5 s of virtual time is far beyond any xenstored answer; the request stays pending.
      const r = await s.guest<{ timedOut?: boolean }>('guest', { cmd: 'xs', type: XsdSockmsgType.XS_READ, payload: 'name\0', timeoutNs: 5e9 });
      s.expect(r.timedOut === true, `expected the read to hang, got ${JSON.stringify(r)}`);
    });
    await s.step('the devices keep their last state and block I/O still completes', () => blockIoCompletes(s, 0x5a, 8));
  },
});
