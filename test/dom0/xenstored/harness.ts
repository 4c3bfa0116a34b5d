// Test harness around xenstored's core (domains/dom0/xenstored/core.ts) and its daemon.
//
// A Harness owns one XenstoredDaemon and names its connections: `h.dom0` is a privileged dom0
// socket, `h.socket()` opens more, `h.introduce(domid)` prepares a guest's home the way libxl does
// and INTRODUCEs it, returning the guest's (unprivileged) connection. Each connection is the real
// connection layer (connection.ts) with a transport that hands messages to the test: request()
// puts a whole message in (as a transport does once it has read one), feed() puts raw bytes in.
// Replies come back to the caller, watch events are queued on the connection that receives them
// and drained with `c.events()`.
//
// Results are plain strings so that tables read naturally: a successful READ gives the value,
// WRITE/MKDIR/RM/SET_PERMS/WATCH give 'OK', GET_PERMS gives the ACL as `n0 r1`, DIRECTORY gives
// the child names; any failure gives the error name ('EACCES', 'ENOENT', 'EQUOTA', ...).
import type { Outcome, Xenstored } from '../../../domains/dom0/xenstored/core.ts';
import { XsWireConnection } from '../../../domains/dom0/xenstored/connection.ts';
import { type DaemonOptions, XenstoredDaemon } from '../../../domains/dom0/xenstored/daemon.ts';
import { XsdSockmsgType as T, nulJoin, type XsMessage } from '../../../hypervisor/public/io/xs_wire.ts';

export { T };

/** A value, 'OK', or an error name. */
export type Result = string;

/** Every error name a daemon of either profile sends (xsd_errors[] plus oxenstored's EQUOTA). */
export const ERROR_NAMES: ReadonlySet<string> = new Set([
  'EINVAL', 'EACCES', 'EEXIST', 'EISDIR', 'ENOENT', 'ENOMEM', 'ENOSPC', 'EIO', 'ENOTEMPTY', 'ENOSYS',
  'EROFS', 'EBUSY', 'EAGAIN', 'EISCONN', 'E2BIG', 'EPERM', 'EQUOTA',
]);

export const latin1 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('latin1');
const bytes = (s: string | Uint8Array): Uint8Array => (typeof s === 'string' ? Buffer.from(s, 'latin1') : s);

/** `a\0b\0` -> ['a', 'b'] (a trailing unterminated piece is kept too). */
export function splitNul(s: string): string[] {
  const parts = s.split('\0');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts;
}

/** What one request produced for the connection that sent it. */
export interface Reply {
  /** The reply message (undefined if the daemon sent none, e.g. on a dropped connection). */
  readonly msg: XsMessage | undefined;
  /** Error name, or undefined on success. */
  readonly error: string | undefined;
  /** Reply payload as a latin1 string ('' for errors). */
  readonly payload: string;
  /** Everything sent to this connection while handling the request, in order. */
  readonly own: XsMessage[];
}

export type WatchEvent = readonly [path: string, token: string];

export class Client {
  /** Watch events received and not yet drained. */
  private pending: WatchEvent[] = [];
  /** Every message this connection received, in order. */
  readonly inbox: XsMessage[] = [];
  closed = false;
  private rid = 0;
  /** The connection layer, as under the socket (dom0) or the ring (guests). */
  readonly wire: XsWireConnection;

  constructor(
    readonly h: Harness,
    readonly name: string,
    readonly id: number,
    /** Domain id (0 for dom0 sockets). */
    readonly domid: number,
  ) {
    this.wire = new XsWireConnection(h.daemon, id, {
      send: (m) => this.receive(m),
      flush: () => undefined,
      ended: (why) => {
        this.closed = true;
        // What the socket and ring transports do with a client that broke the protocol.
        if (why !== 'violation') return;
        if (domid === 0) h.xs.disconnect(id);
        else h.xs.resetConnection(id);
      },
    }, { socket: domid === 0 });
  }

  /** Called by the harness for every message the daemon sends here. */
  receive(msg: XsMessage): void {
    this.inbox.push(msg);
    if (msg.type === T.XS_WATCH_EVENT) {
      const [path, token] = splitNul(latin1(msg.payload));
      this.pending.push([path, token]);
    }
  }

  /** Sends one request (payload given as bytes or a latin1 string) and returns what came back. */
  request(type: number, payload: string | Uint8Array = new Uint8Array(0), tx = 0, reqId?: number): Reply {
    const req_id = reqId ?? ++this.rid;
    const mark = this.inbox.length;
    if (!this.closed) this.h.daemon.input(this.id, { type, req_id, tx_id: tx, payload: bytes(payload) });
    const own = this.inbox.slice(mark);
    const msg = own.find((m) => m.req_id === req_id && m.type !== T.XS_WATCH_EVENT);
    if (msg === undefined) return { msg, error: 'NOREPLY', payload: '', own };
    const text = latin1(msg.payload);
    if (msg.type === T.XS_ERROR) return { msg, error: text.replace(/\0$/, ''), payload: '', own };
    return { msg, error: undefined, payload: text, own };
  }

  /** error name, or f(payload) */
  private result(r: Reply, f: (payload: string) => string = (p) => p): Result {
    return r.error ?? f(r.payload);
  }

  private ok(r: Reply): Result {
    return r.error ?? (r.payload === 'OK\0' ? 'OK' : `unexpected payload ${JSON.stringify(r.payload)}`);
  }

  read(path: string, tx = 0): Result {
    return this.result(this.request(T.XS_READ, nulJoin(path), tx));
  }

  write(path: string, value: string | Uint8Array = '', tx = 0): Result {
    const p = Buffer.concat([Buffer.from(`${path}\0`, 'latin1'), bytes(value)]);
    return this.ok(this.request(T.XS_WRITE, p, tx));
  }

  mkdir(path: string, tx = 0): Result {
    return this.ok(this.request(T.XS_MKDIR, nulJoin(path), tx));
  }

  rm(path: string, tx = 0): Result {
    return this.ok(this.request(T.XS_RM, nulJoin(path), tx));
  }

  /** Child names joined by blanks (C order), or the error name. */
  dir(path: string, tx = 0): Result {
    return this.result(this.request(T.XS_DIRECTORY, nulJoin(path), tx), (p) => splitNul(p).join(' '));
  }

  /** The ACL as `n0 r1`, or the error name. */
  getPerms(path: string, tx = 0): Result {
    return this.result(this.request(T.XS_GET_PERMS, nulJoin(path), tx), (p) => splitNul(p).join(' '));
  }

  /** `acl` in `n0 r1` notation. */
  setPerms(path: string, acl: string, tx = 0): Result {
    return this.ok(this.request(T.XS_SET_PERMS, nulJoin(path, ...acl.split(' ')), tx));
  }

  watch(path: string, token: string): Result {
    return this.ok(this.request(T.XS_WATCH, nulJoin(path, token)));
  }

  unwatch(path: string, token: string): Result {
    return this.ok(this.request(T.XS_UNWATCH, nulJoin(path, token)));
  }

  /** TRANSACTION_START: the new id, or the error name. */
  txStartResult(tx = 0): Result {
    return this.result(this.request(T.XS_TRANSACTION_START, nulJoin(''), tx), (p) => p.replace(/\0$/, ''));
  }

  /** TRANSACTION_START that must succeed. */
  txStart(): number {
    const r = this.txStartResult();
    if (!/^\d+$/.test(r)) throw new Error(`${this.name}: TRANSACTION_START failed: ${r}`);
    return Number(r);
  }

  commit(tx: number): Result {
    return this.ok(this.request(T.XS_TRANSACTION_END, nulJoin('T'), tx));
  }

  abort(tx: number): Result {
    return this.ok(this.request(T.XS_TRANSACTION_END, nulJoin('F'), tx));
  }

  /** Drains the watch events received so far. */
  events(): WatchEvent[] {
    const out = this.pending;
    this.pending = [];
    return out;
  }

  /** Drains the watch events and returns them as `path token` strings. */
  eventStrings(): string[] {
    return this.events().map(([p, t]) => `${p} ${t}`);
  }

  /**
   * Feeds raw bytes through the connection layer, as a transport does. Returns the messages the
   * core was given, each with what it sent back to this connection, and whether the bytes broke
   * the protocol (then the connection has ended).
   */
  feed(data: Uint8Array): { handled: { msg: XsMessage; got: XsMessage[] }[]; violation: boolean } {
    const starts: { msg: XsMessage; mark: number }[] = [];
    const wasEnded = this.wire.ended;
    this.h.daemon.onRequest = (conn, msg) => {
      if (conn === this.id) starts.push({ msg, mark: this.inbox.length });
    };
    try {
      this.wire.received(data);
    } finally {
      this.h.daemon.onRequest = undefined;
    }
    const handled = starts.map((s, i) => ({ msg: s.msg, got: this.inbox.slice(s.mark, starts[i + 1]?.mark) }));
    return { handled, violation: !wasEnded && this.wire.endReason === 'violation' };
  }
}

/** The daemon, telling the harness which requests reach the core. */
class HarnessDaemon extends XenstoredDaemon {
  onRequest: ((conn: number, msg: XsMessage) => void) | undefined;

  override request(conn: number, msg: XsMessage): void {
    this.onRequest?.(conn, msg);
    super.request(conn, msg);
  }
}

export interface IntroduceOptions {
  /** Create /local/domain/N with `n0 rN` first, as libxl does (default true). */
  readonly home?: boolean;
  /** Also create the guest-owned scratch dir /local/domain/N/data (`nN`), as libxl does. */
  readonly data?: boolean;
}

export class Harness {
  readonly daemon: HarnessDaemon;
  /** The daemon's instance now (a live update replaces it). */
  get xs(): Xenstored {
    return this.daemon.xs;
  }
  readonly clients = new Map<number, Client>();
  /** The first dom0 socket connection. */
  readonly dom0: Client;
  private sockets = 0;

  constructor(opts: DaemonOptions = {}) {
    this.daemon = new HarnessDaemon(opts);
    this.dom0 = this.socket('dom0');
  }

  get profile(): 'c' | 'ocaml' {
    return this.xs.profile;
  }

  /** A new privileged dom0 socket connection. */
  socket(name = `sock${++this.sockets}`): Client {
    const c = new Client(this, name, this.xs.connectSocket(), 0);
    this.clients.set(c.id, c);
    return c;
  }

  /** Routes an outcome produced outside a request through the daemon to the connections. */
  deliver(o: Outcome): void {
    for (const d of o.deliveries) {
      if (!this.clients.has(d.conn)) throw new Error(`delivery to unknown connection ${d.conn}`);
    }
    this.daemon.route(o);
    this.daemon.flush();
  }

  /** INTRODUCE payload as dom0 sends it. */
  static introducePayload(domid: number, mfn = 0x1000 + domid, port = 10 + domid): Uint8Array {
    return nulJoin(String(domid), String(mfn), String(port));
  }

  /**
   * Prepares the guest's home as libxl does, INTRODUCEs the domain (from `by`, default dom0) and
   * returns its connection.
   */
  introduce(domid: number, opts: IntroduceOptions = {}, by: Client = this.dom0): Client {
    if (opts.home ?? true) {
      this.expect(by.mkdir(`/local/domain/${domid}`), 'OK', `mkdir home of ${domid}`);
      this.expect(by.setPerms(`/local/domain/${domid}`, `n0 r${domid}`), 'OK', `chmod home of ${domid}`);
      if (opts.data) {
        this.expect(by.mkdir(`/local/domain/${domid}/data`), 'OK', 'mkdir data');
        this.expect(by.setPerms(`/local/domain/${domid}/data`, `n${domid}`), 'OK', 'chmod data');
      }
    }
    const r = by.request(T.XS_INTRODUCE, Harness.introducePayload(domid));
    if (r.error) throw new Error(`INTRODUCE ${domid}: ${r.error}`);
    const conn = this.xs.domainConnection(domid);
    if (conn === undefined) throw new Error(`no connection for introduced domain ${domid}`);
    const c = new Client(this, `dom${domid}`, conn, domid);
    this.clients.set(conn, c);
    return c;
  }

  /** dom0 RELEASE of a domain: 'OK' or the error name. */
  release(domid: number, by: Client = this.dom0): Result {
    const r = by.request(T.XS_RELEASE, nulJoin(String(domid)));
    return r.error ?? 'OK';
  }

  /** The hypervisor reports a domain shut down or dead (VIRQ_DOM_EXC). */
  domainState(domid: number, state: 'shutdown' | 'dead'): void {
    this.deliver(this.xs.domainStateChanged(domid, state));
  }

  /** Drains every connection's events (to start a step with clean queues). */
  drainAll(): void {
    for (const c of this.clients.values()) c.events();
  }

  private expect(got: Result, want: Result, what: string): void {
    if (got !== want) throw new Error(`harness: ${what}: expected ${want}, got ${got}`);
  }
}

/** 'x' repeated n times. */
export const fill = (n: number, ch = 'x'): string => ch.repeat(n);

/** A path of exactly `len` characters below `prefix` (prefix + '/' + components of <= 200 chars). */
export function pathOfLength(prefix: string, len: number): string {
  let p = prefix;
  while (p.length < len) {
    const room = len - p.length - 1;
    if (room <= 0) {
      p += 'z';
      break;
    }
    p += `/${'a'.repeat(Math.min(200, room))}`;
  }
  if (p.length !== len) throw new Error(`pathOfLength: built ${p.length}, wanted ${len}`);
  return p;
}
