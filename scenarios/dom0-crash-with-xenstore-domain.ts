// Dom0 crashes after a guest has booted and written to xenstore. Where xenstored runs decides
// what the guest keeps: with a xenstore domain (init-xenstore-domain, xencommons'
// XENSTORETYPE=domain) the store is not dom0's - the guest's requests are still answered, its
// committed write is there, it can write again, and the whole tree still holds every committed
// write (the shadow-store invariant, read from the xenstore domain's own xenstored); `xl list`
// shows the Xenstore domain alive beside the crashed dom0. With xenstored in dom0 (the default)
// the store goes with dom0: the guest's next request is never answered.
//
// Not Xen's whole story: Xen reboots the machine when the hardware domain crashes (hwdom_shutdown,
// unless booted with noreboot). What this shows is the store's own fate - what a guest sees of
// xenstore while dom0 is gone, as on a host whose control domain is not the hardware domain or
// while a dom0 is being restarted.
import { XsdSockmsgType } from '../hypervisor/public/io/xs_wire.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const XVDA = 'vbd/51712';
/** Well past any xenstored answer (a few µs of virtual time), short enough to keep runs cheap. */
const ANSWER_NS = 1e9;

export default defineScenario({
  name: 'dom0-crash-with-xenstore-domain',
  title: 'dom0 crashes: with xenstored in a xenstore domain the guest\'s store keeps answering and keeps every committed write; with xenstored in dom0 it goes with dom0',
  tags: ['xenstore', 'fault'],
  variants: {
    fixed: {
      description: 'xenstored in a xenstore domain (init-xenstore-domain): dom0 is one more ring client',
      dom0: { xenstoreDomain: true },
      knobs: { survives: true },
    },
    'xenstored-in-dom0': {
      description: 'xenstored in dom0 (the default): the store dies with dom0',
      knobs: { survives: false },
    },
  },
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 } },
  async run(s) {
    const survives = s.knob<boolean>('survives') ?? false;
    const id = await s.step('xl create guest (xvda)', () =>
      s.create('guest', guestConfig('keeper', { disks: [{ vdev: 'xvda', target: 'keeper-root', sizeMiB: 8 }] })));
    await s.step('the disk connects', async () => {
      s.expect(await s.waitFor(`/local/domain/${id}/device/${XVDA}/state`, '4'), 'xvda frontend Connected');
      s.expect(await s.waitFor(`/local/domain/0/backend/vbd/${id}/51712/state`, '4'), 'xvda backend Connected');
    });
    await s.step('the guest writes data/before', async () => {
      const r = await s.guest<{ error?: string }>('guest', { cmd: 'xs', type: XsdSockmsgType.XS_WRITE, payload: 'data/before\0committed', timeoutNs: ANSWER_NS });
      s.expect(r.error === undefined && !('timedOut' in r), `write data/before: ${JSON.stringify(r)}`);
    });
    // xenstored in dom0: once dom0 is gone nothing can read the tree back.
    if (!survives) s.shadowOff = true;
    await s.step('dom0 crashes', async () => {
      s.fault('dom0-crash');
      s.rt.crashDomain(0);
    });
    if (!survives) {
      await s.step('the guest\'s next xenstore request is never answered', async () => {
        const r = await s.guest<{ timedOut?: boolean }>('guest', { cmd: 'xs', type: XsdSockmsgType.XS_READ, payload: 'data/before\0', timeoutNs: ANSWER_NS });
        s.expect(r.timedOut === true, `expected the read to hang with dom0, got ${JSON.stringify(r)}`);
      });
      return;
    }
    await s.step('the guest reads its committed write back', async () => {
      const r = await s.guest<{ payload?: string }>('guest', { cmd: 'xs', type: XsdSockmsgType.XS_READ, payload: 'data/before\0', timeoutNs: ANSWER_NS });
      s.expect(r.payload === 'committed', `read data/before after dom0 crashed: ${JSON.stringify(r)}`);
    });
    await s.step('the guest writes data/after and reads its name', async () => {
      const w = await s.guest<{ error?: string }>('guest', { cmd: 'xs', type: XsdSockmsgType.XS_WRITE, payload: 'data/after\0still-here', timeoutNs: ANSWER_NS });
      s.expect(w.error === undefined && !('timedOut' in w), `write data/after: ${JSON.stringify(w)}`);
      const r = await s.guest<{ payload?: string }>('guest', { cmd: 'xs', type: XsdSockmsgType.XS_READ, payload: 'name\0', timeoutNs: ANSWER_NS });
      s.expect(r.payload === 'keeper', `read name: ${JSON.stringify(r)}`);
    });
    await s.step('xl list: dom0 shut down, the Xenstore domain running', async () => {
      const rows = s.xl.list();
      const xsd = rows.find((r) => r.name === 'Xenstore');
      s.expect(xsd !== undefined && xsd.id === s.rt.xenstoreDomid && xsd.state === '-b----', `xl list: ${JSON.stringify(rows)}`);
      s.expect(s.rt.host.domains.get(0)?.isShutDown === true, 'dom0 is shut down');
    });
  },
});
