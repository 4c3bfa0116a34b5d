// A guest on its xenstore ring (domain-ring.ts) that watches and never consumes its events, as on
// the oracle (../shared/oracle, Debian oxenstored 4.17.7): guest 5 watched a path with a 3.9 KB
// token and never read rsp[]; dom0 wrote under it. dom0's first 2,049 writes were answered (the
// watch's first event started into the ring, 1,024 events in the output queue, 1,024 in the
// watch's pipe, the last held by dom0's connection), the next got no reply, nor any after the
// guest was released; a second dom0 connection was served. The bounds live in the daemon
// (xb-watch-events.ts), the same for every transport; the Unix-socket spec is
// socket-outstanding.test.ts. Profile c has no such hold (it drops events at the memory quota).
import assert from 'node:assert/strict';
import type { Profile } from '../../../domains/dom0/xenstored/core.ts';
import { XenstoredDaemon } from '../../../domains/dom0/xenstored/daemon.ts';
import { XsRingConnection } from '../../../domains/dom0/xenstored/domain-ring.ts';
import { connectLocal } from '../../../domains/dom0/xenstored/local-connection.ts';
import type { XsHandle } from '../../../domains/libs/store/xs.ts';
import {
  XENSTORE_RING_SIZE, XSD_SOCKMSG_SIZE, XenstoreDomainInterface as I, XsdSockmsgType as T, encodeMessage,
} from '../../../hypervisor/public/io/xs_wire.ts';

const TOKEN = `t${'k'.repeat(3900)}`;
const DOMID = 5;
const HOME = `/local/domain/${DOMID}`;
const EVENT_BYTES = XSD_SOCKMSG_SIZE + `${HOME}/data/k0\0${TOKEN}\0`.length;

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A raw guest's producer: `data` into req[], a ring's worth at a time, kicking the daemon after each. */
function put(page: Uint8Array, ring: XsRingConnection, data: Uint8Array): void {
  const words = new Int32Array(page.buffer, page.byteOffset, 1024);
  let off = 0;
  while (off < data.length) {
    const cons = Atomics.load(words, I.req_cons >> 2) >>> 0;
    const prod = Atomics.load(words, I.req_prod >> 2) >>> 0;
    const n = Math.min(XENSTORE_RING_SIZE - ((prod - cons) >>> 0), data.length - off);
    assert.ok(n > 0, 'req[] not consumed');
    for (let i = 0; i < n; i++) page[I.req + ((prod + i) & (XENSTORE_RING_SIZE - 1))] = data[off + i];
    Atomics.store(words, I.req_prod >> 2, (prod + n) | 0);
    off += n;
    ring.kick();
  }
}

interface Host {
  readonly daemon: XenstoredDaemon;
  readonly dom0: XsHandle;
  readonly dom0Conn: number;
  readonly other: XsHandle;
  readonly guestConn: number;
  readonly ring: XsRingConnection;
  readonly page: Uint8Array;
}

/** dom0 (in-process, as `xensim up`'s toolstack), a second dom0 client, and guest 5 watching HOME/data from its ring. */
async function host(profile: Profile): Promise<Host> {
  const daemon = new XenstoredDaemon({ profile });
  let dom0Conn = -1;
  const dom0 = connectLocal(daemon, 'dom0', { onConnection: (c) => void (dom0Conn = c) });
  const other = connectLocal(daemon, 'other');
  await dom0.mkdir(`${HOME}/data`);
  await dom0.setPerms(HOME, [`n${DOMID}`]);
  await dom0.setPerms(`${HOME}/data`, [`n${DOMID}`]);
  await dom0.introduce(DOMID, 1234, 15);
  const guestConn = daemon.xs.domainConnection(DOMID)!;
  const page = new Uint8Array(new SharedArrayBuffer(4096));
  const ring = new XsRingConnection(daemon, guestConn, page, () => undefined);
  ring.introduce();
  // The guest's WATCH (four rings' worth), then nothing: it never moves rsp_cons.
  put(page, ring, encodeMessage({ type: T.XS_WATCH, req_id: 1, tx_id: 0, payload: Buffer.from(`${HOME}/data\0${TOKEN}\0`, 'latin1') }));
  await dom0.write(`${HOME}/data/k`, 'first');
  return { daemon, dom0, dom0Conn, other, guestConn, ring, page };
}

/** dom0 writes under the watch one at a time until a write is not read; how many were answered. */
async function writeUntilHeld(h: Host, max: number): Promise<number> {
  let answered = 0;
  for (let i = 0; i < max; i++) {
    let done = false;
    void h.dom0.write(`${HOME}/data/k${i % 10}`, String(i)).then(() => void (done = true));
    while (!done && !h.daemon.inputHeld(h.dom0Conn)) await turn();
    if (!done) break;
    answered++;
  }
  return answered;
}

describe('ocaml: a guest ring that watches and never consumes its events (quota-maxwatchevents)', function () {
  let h: Host;
  after(async () => {
    await h?.other.close();
  });

  it('is sent 1,024 events beyond the one in its ring and keeps 1,024 in its watch\'s pipe; dom0\'s 2,050th write is not read (as on the oracle)', async () => {
    h = await host('ocaml');
    // The one before the loop makes the oracle's count: 2,049 writes answered.
    const answered = await writeUntilHeld(h, 6000) + 1;
    assert.equal(answered, 2049);
    assert.ok(h.daemon.inputHeld(h.dom0Conn));
    assert.deepEqual(h.daemon.heldEvents(h.guestConn), { queued: 1024, piped: 1024, fired: 0 });
    // The ring's queue: the 1,024 events, and the rest of the first one (the part rsp[] took is gone).
    assert.ok(h.ring.queuedBytes > 1024 * EVENT_BYTES && h.ring.queuedBytes < 1025 * EVENT_BYTES, `${h.ring.queuedBytes} bytes queued on the ring`);
  });

  it('another dom0 connection is still served', async () => {
    assert.match((await h.other.read(`${HOME}/data/k1`)).toString(), /^\d+$/);
    await h.other.write('/other', 'x');
    assert.equal((await h.other.read('/other')).toString(), 'x');
  });

  it('the writer stays held once the guest is released (the held events\' watch is gone, its queue never drains)', async () => {
    await h.other.release(DOMID);
    assert.ok(h.ring.ended);
    for (let i = 0; i < 5; i++) await turn();
    assert.ok(h.daemon.inputHeld(h.dom0Conn));
  });
});

describe('ocaml: a ring guest whose events are held is read again once they are passed on', function () {
  it('the guest consumes rsp[]: the pipe drains, dom0 is read again and its held write answered', async () => {
    const h = await host('ocaml');
    try {
      await writeUntilHeld(h, 6000);
      assert.ok(h.daemon.inputHeld(h.dom0Conn));
      let pending = true;
      void h.dom0.write(`${HOME}/data/last`, 'x').then(() => void (pending = false));
      // The guest reads rsp[] dry, kicking the daemon after each pass, until nothing waits for it.
      const words = new Int32Array(h.page.buffer, h.page.byteOffset, 1024);
      const waiting = (): boolean => pending || h.daemon.inputHeld(h.dom0Conn) || h.ring.queuedBytes !== 0;
      for (let i = 0; i < 20000 && waiting(); i++) {
        Atomics.store(words, I.rsp_cons >> 2, Atomics.load(words, I.rsp_prod >> 2));
        h.ring.kick();
        await turn();
      }
      assert.ok(!h.daemon.inputHeld(h.dom0Conn), 'dom0 still held');
      assert.ok(!pending, 'dom0\'s write after the hold unanswered');
      assert.deepEqual(h.daemon.heldEvents(h.guestConn), { queued: 0, piped: 0, fired: 0 });
    } finally {
      await h.other.close();
    }
  });
});

describe('c: a guest ring that watches and never consumes its events', function () {
  it('dom0 is never held (C drops the guest\'s events at its memory quota instead)', async () => {
    const h = await host('c');
    try {
      assert.equal(await writeUntilHeld(h, 3000), 3000);
      assert.equal(h.daemon.heldEvents(h.guestConn), undefined);
      assert.ok(h.ring.queuedBytes < 3000 * EVENT_BYTES, `${h.ring.queuedBytes} bytes queued on the ring`);
    } finally {
      await h.other.close();
    }
  });
});

describe('ocaml: the held events are the daemon process\'s memory', function () {
  it('a restarted daemon (after a crash) holds none in pipes or for sources: dom0 is read again', async () => {
    const h = await host('ocaml');
    try {
      await writeUntilHeld(h, 6000);
      h.daemon.crash();
      h.daemon.restart();
      h.ring.reattach();
      assert.ok(!h.daemon.inputHeld(h.dom0Conn));
      assert.equal(h.daemon.heldEvents(h.guestConn)?.piped, 0);
      await h.dom0.write('/after', 'x');
      assert.equal((await h.other.read('/after')).toString(), 'x');
    } finally {
      await h.other.close();
    }
  });
});
