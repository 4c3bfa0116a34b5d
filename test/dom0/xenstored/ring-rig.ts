// The ring rig shared by the limits and hostile-guest specs: the daemon on a virtual clock (its
// clockMs and timer), a dom0 socket connection driven synchronously, and raw guests on ring pages
// (domain-ring.ts) that write requests and read rsp[] only when told to.
import assert from 'node:assert/strict';
import type { XenstoredOptions } from '../../../domains/dom0/xenstored/core.ts';
import { XenstoredDaemon } from '../../../domains/dom0/xenstored/daemon.ts';
import { XsRingConnection } from '../../../domains/dom0/xenstored/domain-ring.ts';
import {
  XENSTORE_RING_SIZE, XSD_SOCKMSG_SIZE, XenstoreConnection, XenstoreDomainInterface as I, XsdSockmsgType as T, type XsMessage,
  decodeHeader, encodeMessage, nulJoin,
} from '../../../hypervisor/public/io/xs_wire.ts';

const words = (page: Uint8Array): Int32Array => new Int32Array(page.buffer, page.byteOffset, 1024);
export const idx = (page: Uint8Array, off: number): number => Atomics.load(words(page), off >> 2) >>> 0;
export const setIdx = (page: Uint8Array, off: number, v: number): void => void Atomics.store(words(page), off >> 2, v | 0);
const text = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('latin1');

/** The daemon on a virtual clock, a dom0 socket connection, and raw guests on ring pages. */
export class Rig {
  now = 0;
  private timers: { at: number; fn: () => void }[] = [];
  readonly daemon: XenstoredDaemon;
  /** dom0's socket connection. */
  readonly tool: number;
  private readonly replies: XsMessage[] = [];
  private rid = 1;
  readonly syslog: string[] = [];

  constructor(opts: XenstoredOptions = {}) {
    this.daemon = new XenstoredDaemon({
      profile: 'c',
      clock: () => Math.floor(this.now / 1000),
      clockMs: () => this.now,
      timer: (fn, ms) => void this.timers.push({ at: this.now + ms, fn }),
      ...opts,
    });
    this.daemon.xs.syslog = (level, t) => void this.syslog.push(`${level}: ${t}`);
    this.tool = this.daemon.xs.connectSocket();
    this.daemon.attach(this.tool, { send: (m) => void this.replies.push(m), flush: () => undefined, ended: () => undefined });
  }

  /** A dom0 request: 'OK', the error name, or the reply payload without its trailing NUL. */
  d0(type: number, ...parts: (string | Uint8Array)[]): string {
    const payload = parts.length === 1 && parts[0] instanceof Uint8Array ? parts[0] : nulJoin(...(parts as string[]));
    this.daemon.input(this.tool, { type, req_id: this.rid++, tx_id: 0, payload });
    const m = this.replies.pop();
    assert.ok(m, 'dom0 got no reply');
    return text(m.payload).replace(/\0$/, '');
  }

  /**
   * Whether a transport would read dom0's connection now: profile ocaml holds a writer whose
   * requests fired events still waiting for room with their watchers (Xb.can_input).
   */
  get held(): boolean {
    return this.daemon.inputHeld(this.tool);
  }

  /** Another dom0 socket connection: a request on it, answered as d0() answers. */
  client(): (type: number, ...parts: string[]) => string {
    const conn = this.daemon.xs.connectSocket();
    const replies: XsMessage[] = [];
    this.daemon.attach(conn, { send: (m) => void replies.push(m), flush: () => undefined, ended: () => undefined });
    return (type, ...parts) => {
      this.daemon.input(conn, { type, req_id: this.rid++, tx_id: 0, payload: nulJoin(...parts) });
      const m = replies.pop();
      assert.ok(m, 'the other dom0 client got no reply');
      return text(m.payload).replace(/\0$/, '');
    };
  }

  write(p: string, value: string): string {
    return this.d0(T.XS_WRITE, Buffer.concat([nulJoin(p), Buffer.from(value, 'latin1')]));
  }

  /** CONTROL quota <domid>'s memory line. */
  memory(domid: number): number {
    const m = /memory\s*:\s*(\d+)/.exec(this.d0(T.XS_CONTROL, 'quota', String(domid)));
    assert.ok(m);
    return Number(m[1]);
  }

  setMemoryQuota(n: number): void {
    assert.equal(this.d0(T.XS_CONTROL, 'quota', 'set', 'memory', String(n)), 'OK');
  }

  /** As the probe does: INTRODUCE, then the guest's home owned by the guest. */
  guest(domid: number): Guest {
    assert.equal(this.d0(T.XS_INTRODUCE, String(domid), String(1000 + domid), '7'), 'OK');
    assert.equal(this.d0(T.XS_MKDIR, `/local/domain/${domid}`), 'OK');
    assert.equal(this.d0(T.XS_SET_PERMS, `/local/domain/${domid}`, `n${domid}`), 'OK');
    return new Guest(this.daemon, domid);
  }

  /** A dom0-owned directory the guest may read: nodes charged to dom0, events to the guest. */
  pubDir(domid: number): string {
    const pub = `/local/domain/${domid}/pub`;
    assert.equal(this.d0(T.XS_MKDIR, pub), 'OK');
    assert.equal(this.d0(T.XS_SET_PERMS, pub, 'n0', `r${domid}`), 'OK');
    return pub;
  }

  /** Lets `ms` of virtual time pass, running the daemon's timers as they fall due. */
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const t = this.timers[0];
      if (t === undefined || t.at > end) break;
      this.timers.shift();
      this.now = Math.max(this.now, t.at);
      t.fn();
    }
    this.now = end;
  }
}

/** A guest that writes requests into req[] and reads rsp[] only when told to. */
export class Guest {
  readonly page = new Uint8Array(new SharedArrayBuffer(4096));
  readonly server: XsRingConnection;
  private rid = 1;
  private buf = Buffer.alloc(0);

  constructor(daemon: XenstoredDaemon, readonly domid: number) {
    this.server = new XsRingConnection(daemon, daemon.xs.domainConnection(domid)!, this.page, () => undefined);
    this.server.introduce();
  }

  /** Free bytes in req[]. */
  room(): number {
    return XENSTORE_RING_SIZE - ((idx(this.page, I.req_prod) - idx(this.page, I.req_cons)) >>> 0);
  }

  /** The guest asks for a ring reset (`connection` = XENSTORE_RECONNECT) and notifies. */
  reconnect(): void {
    setIdx(this.page, I.connection, XenstoreConnection.XENSTORE_RECONNECT);
    this.server.kick();
  }

  /** Puts one request into req[], as much as fits at a time, notifying after each part; returns its req_id. */
  send(type: number, payload: Uint8Array, tx = 0): number {
    const bytes = encodeMessage({ type, req_id: this.rid, tx_id: tx, payload });
    for (let off = 0; off < bytes.length;) {
      const prod = idx(this.page, I.req_prod);
      const n = Math.min(this.room(), bytes.length - off);
      assert.ok(n > 0, 'req[] full');
      for (let i = 0; i < n; i++) this.page[I.req + ((prod + i) & 1023)] = bytes[off + i];
      setIdx(this.page, I.req_prod, prod + n);
      off += n;
      this.server.kick();
    }
    return this.rid++;
  }

  /** Consumes rsp[] and returns the whole messages in it (kicks the daemon: room again). */
  take(): { type: number; req_id: number; payload: string }[] {
    const cons = idx(this.page, I.rsp_cons);
    const n = (idx(this.page, I.rsp_prod) - cons) >>> 0;
    const chunk = Buffer.alloc(n);
    for (let i = 0; i < n; i++) chunk[i] = this.page[I.rsp + ((cons + i) & 1023)];
    setIdx(this.page, I.rsp_cons, cons + n);
    this.buf = Buffer.concat([this.buf, chunk]);
    const out: { type: number; req_id: number; payload: string }[] = [];
    while (this.buf.length >= XSD_SOCKMSG_SIZE) {
      const h = decodeHeader(this.buf, 0);
      if (this.buf.length < XSD_SOCKMSG_SIZE + h.len) break;
      out.push({ type: h.type, req_id: h.req_id, payload: this.buf.subarray(16, 16 + h.len).toString('latin1').replace(/\0$/, '') });
      this.buf = this.buf.subarray(16 + h.len);
    }
    if (n) this.server.kick();
    return out;
  }

  /** One request answered at once: 'OK', the error name, or the payload ('NOREPLY' if unread). */
  request(type: number, payload: Uint8Array, tx = 0): string {
    const rid = this.send(type, payload, tx);
    const r = this.take().find((m) => m.req_id === rid && m.type !== T.XS_WATCH_EVENT);
    return r === undefined ? 'NOREPLY' : r.payload;
  }

  write(p: string, value: string, tx = 0): string {
    return this.request(T.XS_WRITE, Buffer.concat([nulJoin(p), Buffer.from(value, 'latin1')]), tx);
  }

  events(): number {
    return this.take().filter((m) => m.type === T.XS_WATCH_EVENT).length;
  }

  /** WATCH: the reply and the initial event. */
  watch(p: string, token: string): string {
    const rid = this.send(T.XS_WATCH, nulJoin(p, token));
    const got = this.take();
    const reply = got.find((m) => m.req_id === rid && m.type === T.XS_WATCH);
    const initial = got.filter((m) => m.type === T.XS_WATCH_EVENT).length;
    return `${reply?.payload ?? 'NOREPLY'} ${initial}`;
  }
}
