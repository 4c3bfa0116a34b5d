// xenstored dies while handling a guest's request and is started again two seconds later from
// its last state (oxenstored's --restart; see XenstoredDaemon.restart): the tree, the domains and
// their rings, dom0's connections and their watches. The request it died on was taken off the
// ring and will never be answered. A guest that implements the ring's reconnection protocol
// (docs/misc/xenstore-ring.txt) asks for a ring reset once its request has waited a second with
// the server silent; the new daemon, which advertises XENSTORE_SERVER_FEATURE_RECONNECTION, resets
// the ring when it maps it, and the guest sends the lost request again and registers its watches
// anew: it is back, its devices never left Connected, and every committed write is there (the
// shadow-store invariant, checked again from the restart on). A guest without the protocol - or
// one facing C xenstored 4.17, which does not offer it - waits for that reply for ever: the
// seed's main problem, which a restart alone does not cure.
import { XsdSockmsgType } from '../hypervisor/public/io/xs_wire.ts';
import { defineScenario } from '../sim/scenario/scenario.ts';
import { blockIoCompletes, createGuestWithDevices, devicesConnected, guestWritesBefore } from './xenstored-crash-checks.ts';

/** How long the guest's xenbus waits, server silent, before it asks for a ring reset. */
const RECONNECT_AFTER_NS = 1e9;
const INCREMENTS = 20;
/** systemd's RestartSec for xenstored, as it were. */
const RESTART_AFTER_NS = 2e9;

export default defineScenario({
  name: 'xenstored-restart',
  title: 'xenstored dies on a guest\'s request and restarts from its last state: a guest with ring reconnection comes back, one without hangs',
  tags: ['xenstore', 'fault'],
  variants: {
    fixed: {
      description: 'oxenstored (offers RECONNECTION); the guest implements ring reconnection',
      dom0: { profile: 'ocaml' },
      guest: { quirks: { xenbus: { ringReconnectAfterNs: RECONNECT_AFTER_NS } } },
      knobs: { recovers: true },
    },
    'no-reconnect': {
      description: 'oxenstored; the guest waits for its reply for ever, as Linux does',
      dom0: { profile: 'ocaml' },
      knobs: { recovers: false },
    },
    'xenstore-domain': {
      // Xen builds only C xenstored as a stub domain; oxenstored there is xensim's combination,
      // for the RECONNECTION it offers.
      description: 'oxenstored in a xenstore domain (dom0 one more ring client, its ring mapped again at the restart); the guest implements ring reconnection',
      dom0: { profile: 'ocaml', xenstoreDomain: true },
      guest: { quirks: { xenbus: { ringReconnectAfterNs: RECONNECT_AFTER_NS } } },
      knobs: { recovers: true },
    },
    c: {
      description: 'C xenstored 4.17 (offers no reconnection); the guest would reconnect but cannot',
      guest: { quirks: { xenbus: { ringReconnectAfterNs: RECONNECT_AFTER_NS } } },
      knobs: { recovers: false },
    },
  },
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 } },
  async run(s) {
    const recovers = s.knob<boolean>('recovers') ?? false;
    const id = await createGuestWithDevices(s, 'phoenix');
    await guestWritesBefore(s);
    await s.step('xenstored is set to crash on the guest\'s next request, and to restart 2 s after', async () => {
      s.fault('xenstored-crash', { whileHandlingRequestFrom: id, restartAfterNs: RESTART_AFTER_NS });
      // Sent to where xenstored runs: dom0, or the xenstore domain.
      s.rt.send(s.rt.storeDomid, { cmd: 'xenstored-crash', whileHandlingRequestFrom: id, restartAfterNs: RESTART_AFTER_NS });
    });
    await s.step(recovers ? 'the request xenstored died on is answered once the guest has reconnected'
      : 'the request xenstored died on is never answered, restart or not', async () => {
      // 10 s of virtual time: the restart comes at 2 s, a reconnected guest's reply right after.
      const r = await s.guest<{ timedOut?: boolean; error?: string; type?: number }>('guest',
        { cmd: 'xs', type: XsdSockmsgType.XS_WRITE, payload: 'data/during\0sent while xenstored died', timeoutNs: 10e9 });
      const restarted = s.trace.some((e) => e.kind === 'xenstored' && e.op === 'restarted');
      s.expect(restarted, 'xenstored was restarted');
      if (recovers) s.expect(r.type === XsdSockmsgType.XS_WRITE, `the write after the reconnection: ${JSON.stringify(r)}`);
      else s.expect(r.timedOut === true, `expected the guest's request to hang, got ${JSON.stringify(r)}`);
      const asked = s.trace.some((e) => e.kind === 'xenbus_comms' && e.op === 'ring reconnect requested');
      const reconnected = s.trace.some((e) => e.kind === 'xenbus_comms' && e.op === 'ring reconnected');
      s.expect(asked === recovers && reconnected === recovers, `ring reconnection asked ${asked}, done ${reconnected}`);
    });
    await s.step('the devices are still Connected at both ends', () => devicesConnected(s, id));
    await s.step('the guest\'s drivers see their devices Connected and block I/O completes', () => blockIoCompletes(s, 0xa5, 16));
    if (!recovers) return;
    await s.step('the guest reads back what it wrote before and during the crash', async () => {
      for (const [path, want] of [['data/before', 'committed'], ['data/during', 'sent while xenstored died']]) {
        const r = await s.guest<{ payload?: string }>('guest', { cmd: 'xs', type: XsdSockmsgType.XS_READ, payload: `${path}\0`, timeoutNs: 1e9 });
        s.expect(r.payload === want, `read ${path}: ${JSON.stringify(r)}`);
      }
    });
    await s.step('the guest registered its watches again on the reset ring', async () => {
      // The reset removed them (xenstore-ring.txt); each XS_WATCH answered after the restart
      // is one the guest's xenbus sent again (its devices' otherend watches among them).
      const at = s.trace.findIndex((e) => e.kind === 'xenstored' && e.op === 'restarted');
      const again = s.trace.slice(at).filter((e) => e.kind === 'xenstore' && e.dir === 'OUT' && e.type === 'WATCH' && e.domid === id).length;
      s.expect(again >= 2, `${again} watches registered again after the restart`);
    });
    await s.step('xenstored dies again at a random point of 20 transactional increments by the guest, and restarts', async () => {
      // An immediate crash between two batches: a request in req[] is unread, one being answered
      // is answered whole. Transactions the reset aborts are started over (EAGAIN).
      await s.rt.toolstackWrite(`/local/domain/${id}/data/counter`, '0', [`n${id}`]);
      let r: { retries?: number; error?: string } = {};
      await s.atRandomPoint(async () => {
        r = await s.guest<{ retries?: number; error?: string }>('guest', { cmd: 'xs-increment', path: 'data/counter', times: INCREMENTS });
      }, () => s.rt.send(s.rt.storeDomid, { cmd: 'xenstored-crash', restartAfterNs: RESTART_AFTER_NS }), 400, 'xenstored-crash');
      s.expect(r.error === undefined, `xs-increment: ${r.error}`);
      // No increment lost, none made twice: a commit whose reply the crash kept from the guest
      // would be retried and counted twice (nothing in the ring protocol tells the two apart).
      s.expect(await s.waitFor(`/local/domain/${id}/data/counter`, String(INCREMENTS)), `the counter reads ${await s.read(`/local/domain/${id}/data/counter`)}`);
    });
    await s.step('xl destroy guest: the toolstack works through the restarted daemon', async () => {
      await s.xl.destroy(id);
      s.expect(await s.waitFor(`/local/domain/${id}`, null), 'the guest\'s home is gone');
    });
  },
});
