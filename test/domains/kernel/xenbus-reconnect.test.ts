// xenstored dies and a new one starts from its last state (XenstoredDaemon.restart), mapping the
// guest's ring again (XsRingConnection.reattach); the guest's xenbus recovers through the ring's
// reconnection protocol (docs/misc/xenstore-ring.txt: XenbusRing.requestReconnect, then
// XsHandle.reconnected) where the server offers it. End to end on one page, in one thread.
import { deferredPort } from '../../helpers/deferred-port.ts';
import assert from 'node:assert/strict';
import { XsHandle, XsError } from '../../../domains/libs/store/xs.ts';
import type { Profile } from '../../../domains/dom0/xenstored/core.ts';
import { XenstoredDaemon } from '../../../domains/dom0/xenstored/daemon.ts';
import { XsRingConnection } from '../../../domains/dom0/xenstored/domain-ring.ts';
import { connectLocal } from '../../../domains/dom0/xenstored/local-connection.ts';
import { XenbusRing } from '../../../domains/kernel/xenbus-comms.ts';
import {
  XENSTORE_SERVER_FEATURE_RECONNECTION, XenstoreConnection, XenstoreDomainInterface as I, XsdSockmsgType as T, nulJoin,
} from '../../../hypervisor/public/io/xs_wire.ts';

const DOMID = 2;
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const ticks = async (n = 20): Promise<void> => {
  for (let i = 0; i < n; i++) await tick();
};
const word = (page: Uint8Array, off: number): number => Atomics.load(new Int32Array(page.buffer), off >> 2) >>> 0;

const port = deferredPort;

/** A daemon, a guest introduced with its ring, the guest's xenbus following reconnections. */
function boot(profile: Profile) {
  const daemon = new XenstoredDaemon({ profile });
  const tool = daemon.xs.connectSocket();
  daemon.attach(tool, { send: () => undefined, flush: () => undefined, ended: () => undefined });
  let rid = 1;
  const dom0 = (type: number, ...parts: string[]): void => daemon.input(tool, { type, req_id: rid++, tx_id: 0, payload: nulJoin(...parts) });
  dom0(T.XS_MKDIR, `/local/domain/${DOMID}`);
  dom0(T.XS_SET_PERMS, `/local/domain/${DOMID}`, `n${DOMID}`);
  dom0(T.XS_INTRODUCE, String(DOMID), '1', '9');
  const page = new Uint8Array(new SharedArrayBuffer(4096));
  const toGuest = port();
  const toServer = port();
  const attach = (): XsRingConnection => {
    const server = new XsRingConnection(daemon, daemon.xs.domainConnection(DOMID)!, page, toGuest.notify);
    toServer.handler = () => server.kick();
    return server;
  };
  attach().introduce();
  const ring = new XenbusRing(page, toServer.notify);
  toGuest.handler = () => ring.onEvent();
  const xs = XsHandle.fromStream(ring, 'xenbus');
  xs.enableReconnection();
  let reconnections = 0;
  ring.onReconnected = () => {
    reconnections++;
    xs.reconnected();
  };
  /** The new process: from the dead one's state, the ring mapped again. */
  const restart = (): void => {
    daemon.restart();
    attach().reattach();
  };
  return { daemon, dom0, page, ring, xs, restart, toGuest, reconnections: () => reconnections };
}

/** Whether the promise has settled (after the event loop has had its turn). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => (done = true), () => (done = true));
  await ticks();
  return done;
}

describe('xenstored restart and the xenstore ring\'s reconnection', () => {
  it('ocaml: the request xenstored died on is sent again after the ring reset and answered; committed writes and watches are back', async () => {
    const { daemon, page, ring, xs, restart, reconnections } = boot('ocaml');
    await xs.write('data/a', '1');
    const events: string[] = [];
    xs.on('watch', (p) => events.push(p));
    await xs.watch('data', 'w');
    await ticks();
    assert.equal(word(page, I.server_features) & XENSTORE_SERVER_FEATURE_RECONNECTION, XENSTORE_SERVER_FEATURE_RECONNECTION);
    daemon.crash({ whileHandlingRequestFrom: DOMID });
    const lost = xs.write('data/b', '2');
    assert.equal(await settled(lost), false, 'no answer from a dead daemon');
    assert.equal(daemon.crashed, true);
    assert.equal(word(page, I.req_cons), word(page, I.req_prod), 'the dead daemon took the request off the ring');
    assert.equal(xs.inFlight, 1);
    assert.equal(ring.requestReconnect(), true);
    assert.equal(word(page, I.connection), XenstoreConnection.XENSTORE_RECONNECT);
    await ticks();
    assert.equal(word(page, I.connection), XenstoreConnection.XENSTORE_RECONNECT, 'nobody resets the ring while xenstored is dead');
    events.length = 0;
    restart();
    await lost;
    assert.equal(reconnections(), 1);
    assert.equal((await xs.read('data/a')).toString(), '1', 'committed before the crash');
    assert.equal((await xs.read('data/b')).toString(), '2', 'sent again after the reset');
    await ticks();
    assert.ok(events.includes('data'), `the watch registered again fires its initial event: ${events.join(', ')}`);
    events.length = 0;
    await xs.write('data/c', '3');
    await ticks();
    assert.ok(events.includes('data/c'), 'and later changes');
  });

  it('ocaml: a transaction open at the reset is aborted: its requests fail with EAGAIN and the whole transaction can be retried', async () => {
    const { daemon, ring, xs, restart } = boot('ocaml');
    const tx = await xs.transactionStart();
    await xs.write('data/t1', 'x', tx);
    daemon.crash({ whileHandlingRequestFrom: DOMID });
    const lost = xs.write('data/t2', 'y', tx);
    assert.equal(await settled(lost), false);
    ring.requestReconnect();
    restart();
    await assert.rejects(lost, (e: XsError) => e.code === 'EAGAIN');
    await assert.rejects(xs.read('data/t1', tx), (e: XsError) => e.code === 'EAGAIN');
    assert.equal(await xs.transactionEnd(tx, true), false, 'the commit answers EAGAIN: retry');
    await assert.rejects(xs.read('data/t1'), (e: XsError) => e.code === 'ENOENT', 'nothing of it was committed');
    const { retries } = await xs.transaction(async (t) => xs.write('data/t1', 'again', t));
    assert.equal(retries, 0);
    assert.equal((await xs.read('data/t1')).toString(), 'again');
  });

  it('ocaml: a reply already in rsp[] when the guest asks for the reset is taken first, and its request is not sent twice', async () => {
    const { daemon, ring, xs, toGuest } = boot('ocaml');
    const writes: number[] = [];
    daemon.onTrace = (e) => {
      if (e.dir === 'IN' && e.type === 'WRITE') writes.push(e.req_id);
    };
    const handler = toGuest.handler;
    toGuest.handler = undefined; // the guest does not look at the ring for now
    const answered = xs.write('data/once', '1');
    await ticks();
    assert.deepEqual(writes.length, 1, 'xenstored has answered');
    toGuest.handler = handler;
    assert.equal(ring.requestReconnect(), true);
    await answered;
    await ticks();
    assert.equal(writes.length, 1, 'not sent again after the reset');
    assert.equal((await xs.read('data/once')).toString(), '1');
  });

  it('c (4.17): no RECONNECTION offered, so the guest cannot reset the ring and the lost request is never answered', async () => {
    const { daemon, page, ring, xs, restart } = boot('c');
    await xs.write('data/a', '1');
    daemon.crash({ whileHandlingRequestFrom: DOMID });
    const lost = xs.write('data/b', '2');
    await ticks();
    assert.equal(word(page, I.server_features), 0);
    assert.equal(ring.requestReconnect(), false);
    restart();
    assert.equal(await settled(lost), false, 'the guest waits for ever');
    // The ring itself works on from its indexes: later requests are answered.
    assert.equal((await xs.read('data/a')).toString(), '1');
    await assert.rejects(xs.read('data/b'), (e: XsError) => e.code === 'ENOENT');
  });

  for (const profile of ['c', 'ocaml'] as const) {
    it(`${profile}: requests written while xenstored was down wait in req[] and a restarted daemon answers them, no reset needed`, async () => {
      const { daemon, page, xs, restart, reconnections } = boot(profile);
      daemon.crash();
      const waiting = xs.write('data/x', '1');
      assert.equal(await settled(waiting), false);
      assert.notEqual(word(page, I.req_cons), word(page, I.req_prod), 'unread');
      restart();
      await waiting;
      assert.equal((await xs.read('data/x')).toString(), '1');
      assert.equal(reconnections(), 0);
    });
  }

  for (const profile of ['c', 'ocaml'] as const) {
    it(`${profile}: a transaction open across a restart keeps its id but cannot commit: EAGAIN, and the retry commits`, async () => {
      const { daemon, xs, restart } = boot(profile);
      await xs.write('data/base', 'b');
      const tx = await xs.transactionStart();
      await xs.write('data/t', 'lost', tx);
      daemon.crash();
      restart();
      await assert.rejects(xs.read('data/t', tx), (e: XsError) => e.code === 'ENOENT', 'what it wrote died with the daemon');
      assert.equal((await xs.read('data/base', tx)).toString(), 'b', 'it reads the restored tree');
      await xs.write('data/t2', 'x', tx);
      assert.equal(await xs.transactionEnd(tx, true), false, 'EAGAIN: start over');
      await assert.rejects(xs.read('data/t'), (e: XsError) => e.code === 'ENOENT');
      await xs.transaction(async (t) => xs.write('data/t', 'kept', t));
      assert.equal((await xs.read('data/t')).toString(), 'kept');
    });
  }

  it('a restart keeps dom0\'s in-process connections: their watches, and the requests they sent while the daemon was down', async () => {
    const { daemon, dom0, restart } = boot('c');
    const tool = connectLocal(daemon, 'xl');
    const events: string[] = [];
    tool.on('watch', (p) => events.push(p));
    await tool.watch('/local/domain/2/data', 'xl');
    daemon.crash();
    const waiting = tool.write('/local/domain/2/data/k', 'v');
    assert.equal(await settled(waiting), false);
    restart();
    await waiting;
    await ticks();
    assert.ok(events.includes('/local/domain/2/data/k'), `events: ${events.join(', ')}`);
    dom0(T.XS_WRITE, '/local/domain/2/data/k2', 'v2');
    await ticks();
    assert.ok(events.includes('/local/domain/2/data/k2'));
  });

  it('restart() of a running daemon is refused; a crash armed for another domain waits for that domain', async () => {
    const { daemon, xs } = boot('c');
    assert.throws(() => daemon.restart(), /running/);
    daemon.crash({ whileHandlingRequestFrom: 7 });
    await xs.write('data/a', '1');
    assert.equal(daemon.crashed, false);
  });
});
