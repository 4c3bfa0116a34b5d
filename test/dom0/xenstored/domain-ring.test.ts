// xenstored's ring transport (domains/dom0/xenstored/domain-ring.ts) against a real daemon, with
// the guest end played either by the real guest stack (XenbusRing + XsHandle on the same
// SharedArrayBuffer page, events delivered through setImmediate like an event channel) or by a
// raw, possibly hostile, guest that pokes the page directly. Byte positions asserted here were
// measured on Debian's C xenstored / oxenstored 4.17.7 with ../shared/oracle's fake-guest rings.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { XsHandle, XsError } from '../../../domains/libs/store/xs.ts';
import type { Profile } from '../../../domains/dom0/xenstored/core.ts';
import { connectLocal } from '../../../domains/dom0/xenstored/local-connection.ts';
import { XenstoredDaemon } from '../../../domains/dom0/xenstored/daemon.ts';
import { XsRingConnection } from '../../../domains/dom0/xenstored/domain-ring.ts';
import { XenbusRing } from '../../../domains/kernel/xenbus-comms.ts';
import {
  XENSTORE_RING_SIZE, XSD_SOCKMSG_SIZE, XenstoreDomainInterface as I, XenstoreError, XsdSockmsgType as T,
  decodeHeader, encodeHeader, encodeMessage, nulJoin,
} from '../../../hypervisor/public/io/xs_wire.ts';
import { property } from '../../helpers/property.ts';

// ---------------------------------------------------------------------------------- harness

/** An event channel: notify() sets the pending bit; the handler runs later, once per batch. */
class Port {
  sent = 0;
  private pending = false;
  handler: (() => void) | undefined;
  readonly notify = (): void => {
    this.sent++;
    if (this.pending) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      this.handler?.();
    });
  };
}

const idx = (page: Uint8Array, off: number): number => new Int32Array(page.buffer, page.byteOffset, 1024)[off >> 2] >>> 0;
const setIdx = (page: Uint8Array, off: number, v: number): void => {
  Atomics.store(new Int32Array(page.buffer, page.byteOffset, 1024), off >> 2, v | 0);
};
const indexes = (page: Uint8Array) => ({
  req_cons: idx(page, I.req_cons), req_prod: idx(page, I.req_prod), rsp_cons: idx(page, I.rsp_cons), rsp_prod: idx(page, I.rsp_prod),
});

/** A raw guest's producer: what fits of `data` into req[] (indexes taken as they are). */
function rawPut(page: Uint8Array, data: Uint8Array): number {
  const cons = idx(page, I.req_cons);
  const prod = idx(page, I.req_prod);
  const n = Math.min(XENSTORE_RING_SIZE - ((prod - cons) >>> 0), data.length);
  for (let i = 0; i < n; i++) page[I.req + ((prod + i) & 1023)] = data[i];
  setIdx(page, I.req_prod, prod + n);
  return n;
}

/** A raw guest's consumer: up to `max` bytes of rsp[]. */
function rawTake(page: Uint8Array, max = XENSTORE_RING_SIZE): Buffer {
  const cons = idx(page, I.rsp_cons);
  const n = Math.min((idx(page, I.rsp_prod) - cons) >>> 0, max);
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = page[I.rsp + ((cons + i) & 1023)];
  setIdx(page, I.rsp_cons, cons + n);
  return out;
}

/** Splits a byte stream into messages: [type, req_id, payload as latin1]. */
function messages(bytes: Uint8Array): [number, number, string][] {
  const out: [number, number, string][] = [];
  let off = 0;
  while (bytes.length - off >= XSD_SOCKMSG_SIZE) {
    const h = decodeHeader(bytes, off);
    if (bytes.length - off < XSD_SOCKMSG_SIZE + h.len) break;
    out.push([h.type, h.req_id, Buffer.from(bytes.subarray(off + 16, off + 16 + h.len)).toString('latin1')]);
    off += XSD_SOCKMSG_SIZE + h.len;
  }
  return out;
}

const req = (type: number, req_id: number, payload: string | Uint8Array, tx_id = 0): Uint8Array =>
  encodeMessage({ type, req_id, tx_id, payload: typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload });

/** A dom0 tool connection without a socket (what dom0's own components use). */
const dom0Handle = (daemon: XenstoredDaemon): XsHandle => connectLocal(daemon, 'dom0');

interface Guest {
  readonly domid: number;
  readonly conn: number;
  readonly page: Uint8Array;
  readonly server: XsRingConnection;
  /** Notifications the server sent the guest / the guest sent the server. */
  readonly toGuest: Port;
  readonly toServer: Port;
  /** The real guest stack (absent for raw guests). */
  readonly ring?: XenbusRing;
  readonly xs?: XsHandle;
}

interface GuestOptions {
  /** No XenbusRing: the test plays the guest on the page. */
  readonly raw?: boolean;
  /** Page contents before INTRODUCE (index/field offset -> value). */
  readonly before?: Record<number, number>;
  /** Index all four indexes start from after INTRODUCE (a restored server's leftovers). */
  readonly start?: number;
}

class Host {
  readonly daemon: XenstoredDaemon;
  readonly dom0: XsHandle;
  readonly guests: Guest[] = [];

  constructor(readonly profile: Profile = 'c') {
    this.daemon = new XenstoredDaemon({ profile });
    this.dom0 = dom0Handle(this.daemon);
  }

  get xs() {
    return this.daemon.xs;
  }

  /** libxl's home for the domain, INTRODUCE, then the ring and (unless raw) the guest's xenbus. */
  async guest(domid: number, opts: GuestOptions = {}): Promise<Guest> {
    const home = `/local/domain/${domid}`;
    await this.dom0.mkdir(home);
    await this.dom0.setPerms(home, [`n${domid}`]);
    await this.dom0.introduce(domid, 1234, 10 + domid);
    const conn = this.xs.domainConnection(domid);
    assert.ok(conn !== undefined);
    const page = new Uint8Array(new SharedArrayBuffer(4096));
    for (const [off, v] of Object.entries(opts.before ?? {})) setIdx(page, Number(off), v);
    const toGuest = new Port();
    const toServer = new Port();
    const server = new XsRingConnection(this.daemon, conn, page, toGuest.notify);
    server.introduce();
    if (opts.start !== undefined) for (const off of [I.req_cons, I.req_prod, I.rsp_cons, I.rsp_prod]) setIdx(page, off, opts.start);
    toServer.handler = () => server.kick();
    let g: Guest = { domid, conn, page, server, toGuest, toServer };
    if (!opts.raw) {
      const ring = new XenbusRing(page, toServer.notify);
      toGuest.handler = () => ring.onEvent();
      g = { ...g, ring, xs: XsHandle.fromStream(ring, `dom${domid}`) };
    }
    this.guests.push(g);
    return g;
  }

  async close(): Promise<void> {
    for (const g of this.guests) await g.xs?.close();
    await this.dom0.close();
  }
}

const until = async (what: () => boolean, ticks = 200): Promise<void> => {
  for (let i = 0; i < ticks && !what(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(what(), 'condition not reached');
};

// ---------------------------------------------------------------------------------- tests

describe('xenstored ring transport (domain-ring.ts) with the guest xenbus (xenbus-comms.ts)', () => {
  let host: Host;
  afterEach(async () => {
    await host?.close();
  });

  describe('a guest xenbus client through the ring', () => {
    it('reads, writes, lists and removes, with paths relative to its home', async () => {
      host = new Host();
      const g = await host.guest(3);
      const xs = g.xs!;
      assert.equal(await xs.getDomainPath(3), '/local/domain/3');
      await xs.write('data/a', 'one');
      await xs.write('/local/domain/3/data/b', 'two');
      await xs.mkdir('data/c');
      assert.equal((await xs.read('data/a')).toString(), 'one');
      assert.deepEqual(await xs.directory('data'), ['a', 'b', 'c']);
      await xs.rm('data/b');
      assert.deepEqual(await xs.directory('/local/domain/3/data'), ['a', 'c']);
      await assert.rejects(xs.read('data/b'), (e: XsError) => e.code === 'ENOENT');
      await assert.rejects(xs.read('/local/domain/0'), (e: XsError) => e.code === 'EACCES');
      assert.equal((await host.dom0.read('/local/domain/3/data/a')).toString(), 'one');
      // Every byte went through the page: the indexes moved and both sides notified.
      const ix = indexes(g.page);
      assert.equal(ix.req_cons, ix.req_prod);
      assert.equal(ix.rsp_cons, ix.rsp_prod);
      assert.ok(ix.req_prod > 100 && ix.rsp_prod > 50);
      assert.ok(g.toServer.sent > 0 && g.toGuest.sent > 0);
      assert.equal(g.server.outstanding, 0);
    });

    it('puts requests into req[] byte-exact (header then payload, little endian)', async () => {
      host = new Host();
      const g = await host.guest(4);
      await g.xs!.write('k', 'v');
      const wire = req(T.XS_WRITE, 1, 'k\0v');
      assert.deepEqual(Buffer.from(g.page.subarray(I.req, I.req + wire.length)), Buffer.from(wire));
      assert.deepEqual(Buffer.from(g.page.subarray(I.rsp, I.rsp + 19)), Buffer.from(req(T.XS_WRITE, 1, 'OK\0')));
      assert.deepEqual(indexes(g.page), { req_cons: wire.length, req_prod: wire.length, rsp_cons: 19, rsp_prod: 19 });
    });

    it('transaction conflict with a dom0 write gives EAGAIN; the retry commits', async () => {
      host = new Host();
      const g = await host.guest(5);
      const xs = g.xs!;
      await xs.write('counter', '0');
      let attempts = 0;
      for (;;) {
        attempts++;
        const tx = await xs.transactionStart();
        const v = Number((await xs.read('counter', tx)).toString());
        // dom0 changes the node behind the transaction's back, once.
        if (attempts === 1) await host.dom0.write('/local/domain/5/counter', '10');
        await xs.write('counter', String(v + 1), tx);
        if (await xs.transactionEnd(tx, true)) break;
      }
      assert.equal(attempts, 2);
      assert.equal((await host.dom0.read('/local/domain/5/counter')).toString(), '11');
    });

    it('watch events arrive through the ring (initial event, then changes), relative to home', async () => {
      host = new Host();
      const g = await host.guest(6);
      const events: string[] = [];
      g.xs!.on('watch', (path, token) => events.push(`${path} ${token}`));
      await g.xs!.write('device/vif', '');
      await g.xs!.watch('device', 'tok');
      await host.dom0.write('/local/domain/6/device/vif/0/state', '1');
      await host.dom0.rm('/local/domain/6/device/vif');
      await until(() => events.length >= 3);
      assert.deepEqual(events, ['device tok', 'device/vif/0/state tok', 'device/vif tok']);
      await g.xs!.unwatch('device', 'tok');
      await host.dom0.write('/local/domain/6/device/x', '1');
      await g.xs!.read('device/x');
      assert.equal(events.length, 3);
    });

    it('messages straddle the ring wrap (indexes start at 1017)', async () => {
      host = new Host();
      const g = await host.guest(7, { start: 1017 });
      await g.xs!.write('w', 'wrapped');
      // The WRITE header's first 7 bytes are at req[1017..1023], the rest from req[0].
      const wire = req(T.XS_WRITE, 1, 'w\0wrapped');
      assert.deepEqual(Buffer.concat([g.page.subarray(I.req + 1017, I.req + 1024), g.page.subarray(I.req, I.req + wire.length - 7)]), Buffer.from(wire));
      for (let i = 0; i < 40; i++) assert.equal((await g.xs!.read('w')).toString(), 'wrapped');
      assert.equal(indexes(g.page).req_prod, 1017 + wire.length + 40 * req(T.XS_READ, 0, 'w\0').length);
    });

    it('indexes near 2^32 wrap to small numbers and keep working', async () => {
      host = new Host();
      const g = await host.guest(8, { start: 0xffffff00 });
      for (let i = 0; i < 30; i++) await g.xs!.write(`n${i}`, 'x'.repeat(i * 10));
      assert.deepEqual(await g.xs!.directory('/local/domain/8'), Array.from({ length: 30 }, (_, i) => `n${i}`));
      const ix = indexes(g.page);
      assert.ok(ix.req_prod < 0x10000 && ix.rsp_prod < 0x10000, JSON.stringify(ix));
      assert.equal(ix.req_cons, ix.req_prod);
      assert.equal(ix.rsp_cons, ix.rsp_prod);
    });

    it('replies and requests near 4096 bytes take several passes of the 1024-byte rings', async () => {
      host = new Host();
      const g = await host.guest(9);
      const big = Buffer.alloc(4000, 'b');
      await host.dom0.write('/local/domain/9/big', big);
      const notifiesBefore = g.toGuest.sent;
      assert.deepEqual(await g.xs!.read('big'), big);
      assert.ok(g.toGuest.sent - notifiesBefore >= 4, 'a 4016-byte reply needs at least four ring passes');
      // A directory whose reply is 4080 bytes.
      const names = Array.from({ length: 80 }, (_, i) => `child-${String(i).padStart(3, '0')}-${'z'.repeat(40)}`);
      for (const n of names) await host.dom0.write(`/local/domain/9/dir/${n}`, '');
      assert.deepEqual(await g.xs!.directory('dir'), names);
      // A guest request of about 2 KiB (value within the unprivileged node-size quota).
      const val = Buffer.alloc(1900, 'g');
      await g.xs!.write('mine', val);
      assert.deepEqual(await host.dom0.read('/local/domain/9/mine'), val);
    });

    it('many requests in flight at once (more bytes than the ring holds)', async () => {
      host = new Host();
      const g = await host.guest(10);
      await Promise.all(Array.from({ length: 100 }, (_, i) => g.xs!.write(`k${i}`, `v${i}`)));
      const got = await Promise.all(Array.from({ length: 100 }, (_, i) => g.xs!.read(`k${i}`)));
      assert.deepEqual(got.map(String), Array.from({ length: 100 }, (_, i) => `v${i}`));
    });
  });

  describe('INTRODUCE', () => {
    const dirty = { [I.req_cons]: 100, [I.req_prod]: 200, [I.rsp_cons]: 300, [I.rsp_prod]: 400, [I.server_features]: 0xff00, [I.connection]: 1 };

    it('c: all four indexes 0, connection 1 -> 0 with a notify, server_features untouched', async () => {
      host = new Host('c');
      const g = await host.guest(11, { raw: true, before: dirty });
      assert.deepEqual(indexes(g.page), { req_cons: 0, req_prod: 0, rsp_cons: 0, rsp_prod: 0 });
      assert.equal(idx(g.page, I.connection), 0);
      assert.equal(idx(g.page, I.server_features), 0xff00);
      assert.equal(g.toGuest.sent, 1);
      // Again (re-INTRODUCE): partial input and queued output are dropped too.
      rawPut(g.page, req(T.XS_READ, 1, '/local/domain/11/none\0').subarray(0, 20));
      g.server.kick();
      await host.dom0.write('/local/domain/11/x', '1');
      await host.dom0.introduce(11, 1234, 21);
      g.server.introduce();
      assert.deepEqual(indexes(g.page), { req_cons: 0, req_prod: 0, rsp_cons: 0, rsp_prod: 0 });
      rawPut(g.page, req(T.XS_READ, 2, 'x\0'));
      g.server.kick();
      assert.deepEqual(messages(rawTake(g.page)), [[T.XS_READ, 2, '1']]);
    });

    it('ocaml: server_features = RECONNECTION, indexes and connection left alone', async () => {
      host = new Host('ocaml');
      const g = await host.guest(12, { raw: true, before: dirty });
      assert.deepEqual(indexes(g.page), { req_cons: 100, req_prod: 200, rsp_cons: 300, rsp_prod: 400 });
      assert.equal(idx(g.page, I.server_features), 1);
      assert.equal(idx(g.page, I.connection), 1);
      // The guest's pending reconnect request is served at the first kick.
      g.server.kick();
      assert.deepEqual(indexes(g.page), { req_cons: 0, req_prod: 0, rsp_cons: 0, rsp_prod: 0 });
      assert.equal(idx(g.page, I.connection), 0);
    });
  });

  describe('outstanding requests (C 4.17: -Q outstanding=20)', () => {
    it('a guest that never reads replies: the server stops reading at 20 (oracle positions)', async () => {
      host = new Host('c');
      await host.dom0.write('/big', Buffer.alloc(2000, 'x'));
      await host.dom0.setPerms('/big', ['n0', 'r13']);
      const g = await host.guest(13, { raw: true });
      const one = req(T.XS_READ, 0, '/big\0').length;
      assert.equal(one, 21);
      const stream = Buffer.concat(Array.from({ length: 30 }, (_, i) => req(T.XS_READ, i + 1, '/big\0')));
      assert.equal(rawPut(g.page, stream), 630);
      g.server.kick();
      // Measured on C xenstored 4.17.7: 20 requests read, 1024 bytes of the first reply written.
      assert.deepEqual(indexes(g.page), { req_cons: 420, req_prod: 630, rsp_cons: 0, rsp_prod: 1024 });
      assert.equal(g.server.outstanding, 20);
      let got = rawTake(g.page, 500);
      g.server.kick();
      assert.deepEqual(indexes(g.page), { req_cons: 420, req_prod: 630, rsp_cons: 500, rsp_prod: 1524 });
      got = Buffer.concat([got, rawTake(g.page)]);
      g.server.kick();
      // The first reply (2016 bytes) is complete: one more request read.
      assert.deepEqual(indexes(g.page), { req_cons: 441, req_prod: 630, rsp_cons: 1524, rsp_prod: 2548 });
      for (let i = 0; i < 200 && got.length < 30 * 2016; i++) {
        got = Buffer.concat([got, rawTake(g.page)]);
        g.server.kick();
      }
      const replies = messages(got);
      assert.deepEqual(replies.map(([t, r, p]) => [t, r, p.length]), Array.from({ length: 30 }, (_, i) => [T.XS_READ, i + 1, 2000]));
      assert.equal(g.server.outstanding, 0);
    });

    it('watch events do not count; the privileged domain is exempt', async () => {
      host = new Host('c');
      await host.dom0.write('/big', Buffer.alloc(2000, 'x'));
      await host.dom0.setPerms('/big', ['n0', 'r14']);
      // A privileged connection carried by a ring (as dom0's own ring would be): no throttling.
      const priv = host.xs.connectSocket();
      const page = new Uint8Array(new SharedArrayBuffer(4096));
      const ring = new XsRingConnection(host.daemon, priv, page, () => undefined);
      ring.introduce();
      rawPut(page, Buffer.concat(Array.from({ length: 30 }, (_, i) => req(T.XS_READ, i + 1, '/big\0'))));
      ring.kick();
      assert.equal(indexes(page).req_cons, 630);
      assert.equal(ring.outstanding, 30);
      // Events queued for a guest are not outstanding requests.
      const g = await host.guest(14, { raw: true });
      rawPut(g.page, req(T.XS_WATCH, 1, '/local/domain/14\0t\0'));
      g.server.kick();
      for (let i = 0; i < 60; i++) await host.dom0.write(`/local/domain/14/e${i}`, 'x'.repeat(30));
      assert.equal(g.server.outstanding, 0);
      assert.ok(g.server.queuedBytes > 0);
    });

    it('ocaml: no read throttling at 20', async () => {
      host = new Host('ocaml');
      await host.dom0.write('/big', Buffer.alloc(2000, 'x'));
      await host.dom0.setPerms('/big', ['n0', 'r15']);
      const g = await host.guest(15, { raw: true });
      rawPut(g.page, Buffer.concat(Array.from({ length: 30 }, (_, i) => req(T.XS_READ, i + 1, '/big\0'))));
      g.server.kick();
      assert.deepEqual(indexes(g.page), { req_cons: 630, req_prod: 630, rsp_cons: 0, rsp_prod: 1024 });
    });

    it('ocaml: a guest that never reads replies: reading stops with 1,024 in the output queue (quota-maxoutstanding, Xb.can_input)', async () => {
      host = new Host('ocaml');
      await host.dom0.write('/k', 'v');
      await host.dom0.setPerms('/k', ['n0', 'r15']);
      const g = await host.guest(15, { raw: true });
      // READ /k: 19 bytes in, 17 out. The guest keeps req[] full and never moves rsp_cons.
      const one = req(T.XS_READ, 1, '/k\0');
      let sent = 0;
      for (let i = 0; i < 200; i++) {
        const room = XENSTORE_RING_SIZE - ((idx(g.page, I.req_prod) - idx(g.page, I.req_cons)) >>> 0);
        const n = Math.floor(room / one.length);
        if (n === 0) break;
        rawPut(g.page, Buffer.concat(Array.from({ length: n }, () => one)));
        sent += n;
        g.server.kick();
      }
      // rsp[] holds 60 replies and 4 bytes of the 61st (out of the queue once started); 1,024 wait.
      assert.equal(idx(g.page, I.req_cons), (60 + 1 + 1024) * one.length);
      assert.ok(sent > 60 + 1 + 1024);
      assert.equal(g.server.outstanding, 1 + 1024);
      assert.equal(idx(g.page, I.rsp_prod), XENSTORE_RING_SIZE);
      // The guest takes rsp[]: the daemon reads on.
      setIdx(g.page, I.rsp_cons, XENSTORE_RING_SIZE);
      g.server.kick();
      assert.ok(idx(g.page, I.req_cons) > (60 + 1 + 1024) * one.length);
    });
  });

  describe('hostile guests', () => {
    /** A working guest next to the hostile one, and dom0 watching @releaseDomain. */
    async function neighbourhood(profile: Profile) {
      host = new Host(profile);
      const good = await host.guest(20);
      const bad = await host.guest(21, { raw: true });
      const released: string[] = [];
      host.dom0.on('watch', (p) => released.push(p));
      await host.dom0.watch('@releaseDomain', 'rel');
      await until(() => released.length === 1);
      await good.xs!.write('before', 'committed');
      // The bad guest has a watch before it misbehaves.
      rawPut(bad.page, req(T.XS_WATCH, 1, 'x\0t\0'));
      bad.server.kick();
      rawTake(bad.page);
      assert.equal(host.xs.connections.get(bad.conn)?.watches.length, 1);
      return { good, bad, released };
    }

    async function stillFine(good: Guest, bad: Guest, released: string[], errorField: number, reason: XenstoreError) {
      assert.equal(bad.server.ignored, true);
      assert.equal(bad.server.errorCode, reason);
      assert.equal(idx(bad.page, I.error), errorField);
      // Its watches and transactions are gone; the domain itself is still known.
      assert.equal(host.xs.connections.get(bad.conn)?.watches.length, 0);
      assert.ok(host.xs.domains.get(21)?.introduced);
      // Nothing more is read from it.
      setIdx(bad.page, I.req_cons, 0);
      setIdx(bad.page, I.req_prod, 0);
      rawPut(bad.page, req(T.XS_WRITE, 9, 'y\0evil'));
      bad.server.kick();
      assert.equal(idx(bad.page, I.req_cons), 0);
      await assert.rejects(host.dom0.read('/local/domain/21/y'), (e: XsError) => e.code === 'ENOENT');
      // The neighbour is served, no committed write lost.
      await good.xs!.write('after', 'also');
      assert.equal((await host.dom0.read('/local/domain/20/before')).toString(), 'committed');
      assert.equal((await good.xs!.read('after')).toString(), 'also');
      // Its death still fires @releaseDomain, and ends the ring.
      host.daemon.route(host.xs.domainStateChanged(21, 'dead'));
      host.daemon.flush();
      await until(() => released.length === 2);
      assert.deepEqual(released, ['@releaseDomain', '@releaseDomain']);
      assert.equal(bad.server.ended, true);
    }

    it('c: garbage request indexes -> error RINGIDX (2), connection ignored', async () => {
      const { good, bad, released } = await neighbourhood('c');
      setIdx(bad.page, I.req_prod, idx(bad.page, I.req_cons) + 2000);
      bad.server.kick();
      await stillFine(good, bad, released, XenstoreError.XENSTORE_ERROR_RINGIDX, XenstoreError.XENSTORE_ERROR_RINGIDX);
    });

    it('c: garbage response indexes are found when a reply is written -> RINGIDX', async () => {
      const { good, bad, released } = await neighbourhood('c');
      setIdx(bad.page, I.rsp_cons, 5000);
      const before = idx(bad.page, I.req_cons);
      rawPut(bad.page, req(T.XS_READ, 2, 'x\0'));
      bad.server.kick();
      // The request was read (oracle: req_cons moved), the reply could not be written.
      assert.equal(idx(bad.page, I.req_cons), before + 18);
      await stillFine(good, bad, released, XenstoreError.XENSTORE_ERROR_RINGIDX, XenstoreError.XENSTORE_ERROR_RINGIDX);
    });

    it('c: a header announcing more than 4096 bytes -> error PROTO (3) after the 16 header bytes', async () => {
      const { good, bad, released } = await neighbourhood('c');
      const at = idx(bad.page, I.req_cons);
      rawPut(bad.page, Buffer.concat([encodeHeader({ type: T.XS_READ, req_id: 3, tx_id: 0, len: 5000 }), Buffer.from('abc')]));
      bad.server.kick();
      assert.equal(idx(bad.page, I.req_cons), at + 16);
      await stillFine(good, bad, released, XenstoreError.XENSTORE_ERROR_PROTO, XenstoreError.XENSTORE_ERROR_PROTO);
    });

    it('c: a later INTRODUCE resets the indexes but the connection stays ignored', async () => {
      const { bad } = await neighbourhood('c');
      setIdx(bad.page, I.req_prod, idx(bad.page, I.req_cons) + 2000);
      bad.server.kick();
      await host.dom0.introduce(21, 1234, 31);
      bad.server.introduce();
      assert.deepEqual(indexes(bad.page), { req_cons: 0, req_prod: 0, rsp_cons: 0, rsp_prod: 0 });
      rawPut(bad.page, req(T.XS_READ, 4, 'x\0'));
      bad.server.kick();
      assert.equal(idx(bad.page, I.req_cons), 0);
      assert.equal(idx(bad.page, I.error), 2);
    });

    it('ocaml: garbage indexes -> not served any more, error field not written', async () => {
      const { good, bad, released } = await neighbourhood('ocaml');
      setIdx(bad.page, I.req_prod, idx(bad.page, I.req_cons) + 2000);
      bad.server.kick();
      await stillFine(good, bad, released, 0, XenstoreError.XENSTORE_ERROR_RINGIDX);
    });

    it('ocaml: an oversized length is clamped to 4096; the bytes after that are the next header', async () => {
      host = new Host('ocaml');
      await host.dom0.write('/pub', 'y');
      await host.dom0.setPerms('/pub', ['n0', 'r22']);
      const g = await host.guest(22, { raw: true });
      // Oracle: READ with len 5000 but 4096 payload bytes, then READ /pub, is answered twice.
      const stream = Buffer.concat([
        encodeHeader({ type: T.XS_READ, req_id: 1, tx_id: 0, len: 5000 }), Buffer.from('/pub\0'), Buffer.alloc(4091, 'p'),
        req(T.XS_READ, 2, '/pub\0'),
      ]);
      let off = 0;
      let got = Buffer.alloc(0);
      for (let i = 0; i < 20 && off < stream.length; i++) {
        off += rawPut(g.page, stream.subarray(off));
        g.server.kick();
        got = Buffer.concat([got, rawTake(g.page)]);
      }
      assert.equal(off, stream.length);
      assert.equal(idx(g.page, I.req_cons), stream.length);
      const replies = messages(got);
      assert.deepEqual(replies.map(([t, r]) => [t, r]), [[T.XS_ERROR, 1], [T.XS_READ, 2]]);
      assert.equal(replies[0][2], 'EINVAL\0');
      assert.equal(replies[1][2], 'y');
      assert.equal(g.server.ignored, false);
    });
  });

  describe('ring reconnection (oxenstored, feature 1)', () => {
    it('connection = 1 + notify: partial input, queued output, watches and transactions dropped; indexes 0', async () => {
      host = new Host('ocaml');
      const g = await host.guest(23, { raw: true, start: 77 });
      await host.dom0.write('/local/domain/23/big', Buffer.alloc(1500, 'z'));
      rawPut(g.page, Buffer.concat([req(T.XS_WATCH, 1, 'big\0tok\0'), req(T.XS_TRANSACTION_START, 2, '\0'), req(T.XS_READ, 3, 'big\0')]));
      g.server.kick();
      const c = host.xs.connections.get(g.conn)!;
      assert.equal(c.watches.length, 1);
      assert.equal(c.transactions.size, 1);
      assert.ok(g.server.queuedBytes > 0, 'part of the 1516-byte reply is still queued');
      rawPut(g.page, req(T.XS_READ, 4, 'big\0').subarray(0, 10));
      g.server.kick();
      const notified = g.toGuest.sent;
      setIdx(g.page, I.connection, 1);
      g.server.kick();
      assert.deepEqual(indexes(g.page), { req_cons: 0, req_prod: 0, rsp_cons: 0, rsp_prod: 0 });
      assert.equal(idx(g.page, I.connection), 0);
      assert.equal(g.toGuest.sent, notified + 1);
      assert.equal(c.watches.length, 0);
      assert.equal(c.transactions.size, 0);
      assert.equal(g.server.queuedBytes, 0);
      // A fresh start on a packet boundary.
      await host.dom0.write('/local/domain/23/big', 'q');
      rawPut(g.page, req(T.XS_READ, 5, 'big\0'));
      g.server.kick();
      assert.deepEqual(messages(rawTake(g.page)), [[T.XS_READ, 5, 'q']]);
    });

    it('c: the guest writing connection = 1 changes nothing', async () => {
      host = new Host('c');
      const g = await host.guest(24, { raw: true });
      rawPut(g.page, req(T.XS_WATCH, 1, 'x\0tok\0'));
      g.server.kick();
      setIdx(g.page, I.connection, 1);
      rawPut(g.page, req(T.XS_READ, 2, 'nope\0'));
      g.server.kick();
      assert.equal(idx(g.page, I.connection), 1);
      assert.deepEqual(messages(rawTake(g.page)).map(([t, r]) => [t, r]), [[T.XS_WATCH, 1], [T.XS_WATCH_EVENT, 0], [T.XS_ERROR, 2]]);
      assert.equal(host.xs.connections.get(g.conn)?.watches.length, 1);
    });
  });

  describe('notifications', () => {
    it('every index the server moves is followed by a notify', async () => {
      host = new Host('c');
      await host.dom0.write('/big', Buffer.alloc(1800, 'x'));
      await host.dom0.setPerms('/big', ['n0', 'r26']);
      const g = await host.guest(26, { raw: true, start: 1000 });
      const page = g.page;
      const snap = (): string => JSON.stringify([idx(page, I.req_cons), idx(page, I.rsp_prod), idx(page, I.connection)]);
      const seen: string[] = [];
      const conn = host.xs.domainConnection(26)!;
      host.daemon.detach(conn);
      const server = new XsRingConnection(host.daemon, conn, page, () => seen.push(snap()));
      const stream = Buffer.concat(Array.from({ length: 12 }, (_, i) => req(T.XS_READ, i + 1, i % 2 ? '/big\0' : 'none\0')));
      let off = 0;
      for (let i = 0; i < 100 && (off < stream.length || idx(page, I.rsp_prod) !== idx(page, I.rsp_cons)); i++) {
        off += rawPut(page, stream.subarray(off, off + 37));
        server.kick();
        assert.equal(seen.at(-1), snap(), 'an index moved without a notify');
        rawTake(page, 300);
        server.kick();
        assert.equal(seen.at(-1), snap());
      }
      assert.equal(off, stream.length);
      // No notify without a change either.
      for (let i = 1; i < seen.length; i++) assert.notEqual(seen[i], seen[i - 1]);
    });
  });

  describe('end of the domain', () => {
    it('RELEASE ends the ring: no more reads or writes', async () => {
      host = new Host('c');
      const g = await host.guest(25, { raw: true });
      await host.dom0.release(25);
      assert.equal(g.server.ended, true);
      const before = indexes(g.page);
      rawPut(g.page, req(T.XS_READ, 1, 'x\0'));
      g.server.kick();
      assert.deepEqual(indexes(g.page), { ...before, req_prod: before.req_prod + 18 });
    });
  });

  describe('property: how requests are split across ring writes does not matter', () => {
    type Op = readonly [kind: 'write' | 'read' | 'dir' | 'rm' | 'mkdir', path: string, value: string];
    const opArb: fc.Arbitrary<Op> = fc.tuple(
      fc.constantFrom('write', 'read', 'dir', 'rm', 'mkdir') as fc.Arbitrary<Op[0]>,
      fc.constantFrom('a', 'a/b', 'a/b/c', 'd', '/local/domain/0/x', 'bad//path'),
      fc.string({ maxLength: 300 }),
    );

    const encode = (ops: readonly Op[]): Buffer => Buffer.concat(ops.map(([k, p, v], i) => {
      const type = { write: T.XS_WRITE, read: T.XS_READ, dir: T.XS_DIRECTORY, rm: T.XS_RM, mkdir: T.XS_MKDIR }[k];
      return req(type, i + 1, k === 'write' ? Buffer.concat([nulJoin(p), Buffer.from(v, 'latin1')]) : nulJoin(p));
    }));

    /** Fresh daemon with guest 30 on a raw ring; feeds `stream` in `chunks`; returns all rsp bytes. */
    function run(stream: Buffer, chunks: readonly number[], start: number): Buffer {
      const daemon = new XenstoredDaemon({ profile: 'c' });
      const tool = daemon.xs.connectSocket();
      let rid = 1;
      const d0 = (type: number, ...parts: string[]): void => {
        daemon.input(tool, { type, req_id: rid++, tx_id: 0, payload: nulJoin(...parts) });
      };
      d0(T.XS_MKDIR, '/local/domain/30');
      d0(T.XS_SET_PERMS, '/local/domain/30', 'n30');
      d0(T.XS_INTRODUCE, '30', '1', '40');
      const page = new Uint8Array(new SharedArrayBuffer(4096));
      const server = new XsRingConnection(daemon, daemon.xs.domainConnection(30)!, page, () => undefined);
      server.introduce();
      for (const off of [I.req_cons, I.req_prod, I.rsp_cons, I.rsp_prod]) setIdx(page, off, start);
      const got: Buffer[] = [];
      let off = 0;
      let ci = 0;
      while (off < stream.length) {
        const want = Math.min(chunks[ci++ % chunks.length], stream.length - off);
        const n = rawPut(page, stream.subarray(off, off + want));
        off += n;
        server.kick();
        got.push(rawTake(page));
        server.kick();
      }
      for (let i = 0; i < 50; i++) {
        got.push(rawTake(page));
        server.kick();
      }
      return Buffer.concat(got);
    }

    it('random chunkings and start indexes give byte-identical replies', () => {
      fc.assert(
        fc.property(
          fc.array(opArb, { minLength: 1, maxLength: 25 }),
          fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }),
          fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0xfffffc00, max: 0xffffffff })),
          (ops, chunks, start) => {
            const stream = encode(ops);
            const reference = run(stream, [XENSTORE_RING_SIZE], 0);
            assert.equal(messages(reference).filter(([t]) => t !== T.XS_WATCH_EVENT).length, ops.length);
            assert.deepEqual(run(stream, chunks, start), reference);
          },
        ),
        property(60),
      );
    });
  });

  describe('live update (CONTROL live-update): the ring connection carries over', () => {
    it("output waiting for room in rsp[] - the first message already partly in the ring - goes into the stream and reaches the guest after the switch, in order", async () => {
      host = new Host();
      const g = await host.guest(14, { raw: true });
      await host.dom0.mkdir('/local/domain/14/data');
      await host.dom0.setPerms('/local/domain/14/data', ['n14']);
      rawPut(g.page, req(T.XS_WATCH, 1, 'data\0tok\0'));
      g.server.kick();
      // 60 events of ~40 bytes: far more than rsp[] holds while the guest takes nothing.
      for (let i = 0; i < 60; i++) await host.dom0.write(`/local/domain/14/data/node-${String(i).padStart(3, '0')}`, 'x');
      assert.ok(g.server.queuedBytes > 0, 'output waits for room');
      const old = host.xs;
      let carried: { respLen: number; output: Uint8Array } | undefined;
      host.daemon.onLiveUpdate = (d) => {
        carried = d.restored.connections.get(g.conn);
      };
      await host.dom0.control('live-update', '-f', '/x');
      assert.equal(await host.dom0.control('live-update', '-s'), 'OK');
      assert.notEqual(host.xs, old, 'a new instance took over');
      assert.ok(carried !== undefined && carried.respLen > 0 && carried.output.length > carried.respLen, 'the stream held a partly sent event and whole ones');
      let got = Buffer.alloc(0);
      for (let i = 0; i < 100 && (g.server.queuedBytes > 0 || idx(g.page, I.rsp_cons) !== idx(g.page, I.rsp_prod)); i++) {
        got = Buffer.concat([got, rawTake(g.page)]);
        g.server.kick();
      }
      got = Buffer.concat([got, rawTake(g.page)]);
      const want: [number, number, string][] = [[T.XS_WATCH, 1, 'OK\0'], [T.XS_WATCH_EVENT, 0, 'data\0tok\0']];
      for (let i = 0; i < 60; i++) want.push([T.XS_WATCH_EVENT, 0, `data/node-${String(i).padStart(3, '0')}\0tok\0`]);
      assert.deepEqual(messages(got), want);
      // The ring still works both ways.
      rawPut(g.page, req(T.XS_READ, 2, 'data/node-000\0'));
      g.server.kick();
      assert.deepEqual(messages(rawTake(g.page)), [[T.XS_READ, 2, 'x']]);
    });
  });
});
