// The outstanding-request quota on a guest's socket (--guest-dir) as on its ring: profile c stops
// reading from an unprivileged connection while `outstanding` (20) of its replies are not yet
// taken by the peer, so a guest that writes requests and never reads cannot make the daemon queue
// replies without bound; and events queued for it are charged to its domain until the kernel
// takes them, so past the hard memory quota they are dropped (XSA-326). Checked by the bytes the
// daemon holds for the peer, not by RSS.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { XenstoredServer } from '../../../domains/dom0/xenstored/unix-socket.ts';
import { XsHandle } from '../../../domains/libs/store/xs.ts';
import { XENSTORE_PAYLOAD_MAX, XSD_SOCKMSG_SIZE, XsdSockmsgType as T, encodeMessage } from '../../../hypervisor/public/io/xs_wire.ts';
import { ReplyCollector, introduceGuest, play } from './malformed-wire.ts';

const msg = (type: number, reqId: number, payload: string): Uint8Array =>
  encodeMessage({ type, req_id: reqId, tx_id: 0, payload: Buffer.from(payload, 'latin1') });
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('c: a guest socket client that writes requests and never reads', function () {
  const N = 3000;
  const VALUE = 'v'.repeat(4000);
  let dir: string;
  let server: XenstoredServer;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-outst-'));
    server = new XenstoredServer({ socketPath: path.join(dir, 'socket'), guestDir: path.join(dir, 'g'), profile: 'c' });
    await server.listen();
    await introduceGuest(path.join(dir, 'socket'), 5);
    const w = await play(path.join(dir, 'socket'), msg(T.XS_WRITE, 1, `/local/domain/5/data/big\0${VALUE}`), (c) => c.replies.length > 0);
    assert.equal(w.replies[0][0], 'WRITE');
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it(`holds at most ${20} replies for it (bounded queued bytes), and answers all ${N} in order once it reads`, async () => {
    const conn = server.xs.domainConnection(5)!;
    const quota = server.xs.quotas.outstanding;
    assert.equal(quota, 20);
    const bound = quota * (XSD_SOCKMSG_SIZE + XENSTORE_PAYLOAD_MAX);
    let handled = 0;
    let most = 0;
    const before = server.daemon.afterBatch;
    server.daemon.afterBatch = () => {
      before?.();
      most = Math.max(most, server.outputState(conn).queuedBytes);
    };
    server.daemon.onTrace = (ev) => {
      if (ev.conn === conn && ev.dir === 'IN') handled++;
    };
    try {
      const s = net.createConnection(path.join(dir, 'g', '5'));
      await new Promise<void>((r, j) => s.once('connect', () => r()).once('error', j));
      // No 'data' listener yet: the client reads nothing.
      const reqs = Array.from({ length: N }, (_, i) => msg(T.XS_READ, i + 1, 'data/big\0'));
      s.write(Buffer.concat(reqs));
      // Until the daemon has read everything, or stopped reading this connection.
      while (handled < N && !server.outputState(conn).throttled) await turn();
      most = Math.max(most, server.outputState(conn).queuedBytes);
      assert.ok(handled < N, `the daemon read all ${N} requests while the client read no reply`);
      assert.ok(most <= bound, `the daemon held ${most} bytes of replies (bound ${bound})`);

      // The client reads: every reply comes, in order, and the queue stays within the bound.
      const col = new ReplyCollector();
      await new Promise<void>((resolve) => {
        s.on('data', (chunk: Buffer) => {
          col.push(chunk);
          most = Math.max(most, server.outputState(conn).queuedBytes);
          if (col.replies.length >= N) resolve();
        });
      });
      s.destroy();
      assert.deepEqual(col.replies.map((r) => r[1]), Array.from({ length: N }, (_, i) => i + 1));
      assert.ok(col.replies.every((r) => r[0] === 'READ' && r[3] === VALUE));
      assert.ok(most <= bound, `the daemon held ${most} bytes of replies (bound ${bound})`);
    } finally {
      server.daemon.afterBatch = before;
      server.daemon.onTrace = undefined;
    }
  });
});

describe('c: a guest socket client that watches and never reads its events (XSA-326 on sockets)', function () {
  const N = 2000;
  const TOKEN = `t${'k'.repeat(3900)}`;
  let dir: string;
  let server: XenstoredServer;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-events-'));
    server = new XenstoredServer({ socketPath: path.join(dir, 'socket'), guestDir: path.join(dir, 'g'), profile: 'c' });
    await server.listen();
    await introduceGuest(path.join(dir, 'socket'), 6);
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * dom0 writes N times under /pub<domid>, a dom0 directory the guest may read (its nodes charged
   * to dom0, its events to the guest), nodes `node(i)`; the most the daemon held for the guest.
   */
  async function flood(domid: number, node: (i: number) => string): Promise<number> {
    const conn = server.xs.domainConnection(domid)!;
    const pub = `/pub${domid}`;
    const setup = await play(path.join(dir, 'socket'), Buffer.concat([msg(T.XS_MKDIR, 1, `${pub}\0`), msg(T.XS_SET_PERMS, 2, `${pub}\0n0\0r${domid}\0`)]), (c) => c.replies.length >= 2);
    assert.deepEqual(setup.replies.map((r) => r[3]), ['OK\0', 'OK\0']);
    let most = 0;
    const before = server.daemon.afterBatch;
    server.daemon.afterBatch = () => {
      before?.();
      most = Math.max(most, server.outputState(conn).queuedBytes);
    };
    const s = net.createConnection(path.join(dir, 'g', String(domid)));
    try {
      await new Promise<void>((r, j) => s.once('connect', () => r()).once('error', j));
      // No 'data' listener: the guest reads nothing, not even its WATCH reply.
      s.write(msg(T.XS_WATCH, 1, `${pub}\0${TOKEN}\0`));
      const writes = Array.from({ length: N }, (_, i) => msg(T.XS_WRITE, i + 1, `${pub}/${node(i)}\0${i}`));
      const w = await play(path.join(dir, 'socket'), Buffer.concat(writes), (c) => c.replies.length >= N);
      assert.equal(w.replies.length, N);
      assert.deepEqual(w.replies.filter((r) => r[0] !== 'WRITE').slice(0, 3), []);
      return Math.max(most, server.outputState(conn).queuedBytes);
    } finally {
      s.destroy();
      server.daemon.afterBatch = before;
    }
  }

  it(`holds what waits for it within its hard memory quota: events past it are dropped, not hoarded in the write buffer`, async () => {
    const hard = server.xs.quotas.memory;
    assert.equal(hard, 2.5 * 1024 * 1024);
    // N distinct nodes: no event is a duplicate of another. Each is ~3.9 KB: N of them ~8 MB.
    const most = await flood(6, (i) => `k${i}`);
    assert.ok(most <= hard + XSD_SOCKMSG_SIZE + XENSTORE_PAYLOAD_MAX, `the daemon held ${most} bytes for the guest (hard quota ${hard})`);
  });

  it('holds one event per node past what the kernel took: an event identical to one still queued is dropped (send_event)', async () => {
    await introduceGuest(path.join(dir, 'socket'), 7);
    // 10 nodes rewritten over and over: at most 10 events wait in the daemon (plus the WATCH reply).
    const event = XSD_SOCKMSG_SIZE + '/pub7/k0\0'.length + TOKEN.length + 1;
    const most = await flood(7, (i) => `k${i % 10}`);
    assert.ok(most <= 10 * event + 64, `the daemon held ${most} bytes for the guest (10 events are ${10 * event})`);
  });
});

describe('ocaml: a guest socket client that watches and never reads its events (quota-maxwatchevents)', function () {
  const TOKEN = `t${'k'.repeat(3900)}`;
  let dir: string;
  let server: XenstoredServer;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-oevents-'));
    server = new XenstoredServer({ socketPath: path.join(dir, 'socket'), guestDir: path.join(dir, 'g'), profile: 'ocaml' });
    await server.listen();
    await introduceGuest(path.join(dir, 'socket'), 6);
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('holds 1,024 events in its queue and 1,024 in its watch\'s pipe, then stops reading the writer - also once the guest is gone (as on the oracle)', async () => {
    const guestConn = server.xs.domainConnection(6)!;
    const known = new Set(server.xs.connections.keys());
    const dom0 = await XsHandle.open(path.join(dir, 'socket'));
    const other = await XsHandle.open(path.join(dir, 'socket'));
    const dom0Conn = [...server.xs.connections.keys()].find((c) => !known.has(c))!;
    const s = net.createConnection(path.join(dir, 'g', '6'));
    try {
      await new Promise<void>((r, j) => s.once('connect', () => r()).once('error', j));
      // No 'data' listener: the guest reads nothing, not even its WATCH reply.
      s.write(msg(T.XS_WATCH, 1, `/local/domain/6/data\0${TOKEN}\0`));
      await dom0.write('/local/domain/6/data/k', 'first');
      const eventBytes = XSD_SOCKMSG_SIZE + `/local/domain/6/data/k0\0${TOKEN}\0`.length;
      let most = 0;
      let answered = 0;
      // One write at a time, until one is not read (its bytes wait, unanswered).
      for (let i = 0; i < 6000; i++) {
        let done = false;
        void dom0.write(`/local/domain/6/data/k${i % 10}`, String(i)).then(() => void (done = true));
        while (!done && !server.outputState(dom0Conn).throttled) await turn();
        most = Math.max(most, server.outputState(guestConn).queuedBytes);
        if (!done) break;
        answered++;
      }
      assert.ok(server.outputState(dom0Conn).throttled, `dom0's connection still read after ${answered} writes`);
      // 2,048 held by the daemon; the rest (a few dozen) the kernel took into the socket's buffer.
      assert.ok(answered >= 2048 && answered < 2048 + 200, `${answered} writes answered`);
      assert.ok(most <= 1024 * eventBytes, `the daemon held ${most} bytes of events for the guest (1,024 events: ${1024 * eventBytes})`);
      assert.match((await other.read('/local/domain/6/data/k1')).toString(), /^\d+$/, 'another dom0 connection is served');
      s.destroy();
      await other.release(6);
      assert.ok(server.outputState(dom0Conn).throttled, 'the writer stays held once the guest is gone');
    } finally {
      s.destroy();
      await dom0.close();
      await other.close();
    }
  });
});

describe('ocaml: the events held for a guest that did not read arrive whole and in order once it reads', function () {
  // Held past the socket's high-water mark (as latin1 strings in the transport's queue) and in
  // the watch's pipe (as strings too): what it finally reads is byte for byte what was fired.
  const TOKEN = `t${'\xfe\x80k'.repeat(1300)}`;
  let dir: string;
  let server: XenstoredServer;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-oheld-'));
    server = new XenstoredServer({ socketPath: path.join(dir, 'socket'), guestDir: path.join(dir, 'g'), profile: 'ocaml' });
    await server.listen();
    await introduceGuest(path.join(dir, 'socket'), 7);
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('1,500 events of 3.9 KB fired while the guest reads nothing (past its 1,024 in flight), then read', async () => {
    const N = 1500;
    const dom0 = await XsHandle.open(path.join(dir, 'socket'));
    const s = net.createConnection(path.join(dir, 'g', '7'));
    try {
      await new Promise<void>((r, j) => s.once('connect', () => r()).once('error', j));
      s.write(msg(T.XS_WATCH, 1, `/local/domain/7/data\0${TOKEN}\0`));
      // The guest's WATCH is handled before dom0 writes (they come on two sockets).
      const conn = server.xs.connections.get(server.xs.domainConnection(7)!)!;
      while (conn.watches.length === 0) await turn();
      for (let i = 0; i < N; i++) await dom0.write(`/local/domain/7/data/k${i}`, 'v');
      const held = server.daemon.heldEvents(server.xs.domainConnection(7)!)!;
      assert.ok(held.piped > 0, 'some events wait in the watch\'s pipe');
      const col = new ReplyCollector();
      // The WATCH reply, the watch's first event, then one per write.
      await new Promise<void>((resolve) => {
        s.on('data', (chunk: Buffer) => {
          col.push(chunk);
          if (col.replies.length >= N + 2) resolve();
        });
      });
      const events = col.replies.filter((r) => r[0] === 'WATCH_EVENT').map((r) => r[3]);
      assert.deepEqual(events, [`/local/domain/7/data\0${TOKEN}\0`, ...Array.from({ length: N }, (_, i) => `/local/domain/7/data/k${i}\0${TOKEN}\0`)]);
    } finally {
      s.destroy();
      await dom0.close();
    }
  });
});
