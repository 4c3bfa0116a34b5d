// libxenstore (Xen's tools/libs/store): the xs_wire client used by dom0's tools and toolstack
// over xenstored's Unix socket or an in-process stream, and by every guest kernel over its
// xenstore ring. Named after libxenstore's `struct xs_handle`; the method names follow xs_read,
// xs_write, xs_directory, xs_transaction_start/end, xs_watch and friends.
//
// Wire: framing is xs_wire.ts's (encodeHeader, XsWireDecoder), the same codec xenstored uses.
// Replies echo req_id, which is how they are matched to requests here, so any number of requests
// may be in flight. XS_WATCH_EVENT messages (req_id 0) go to 'watch' listeners.
//
// Encodings: paths, tokens and the strings in replies (directory entries, permissions, watch
// event paths) are latin1, i.e. one char per byte, so bytes round-trip unchanged. Values passed as
// strings are written as UTF-8; values read come back as raw Buffers.
import { EventEmitter, on } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import {
  XENSTORE_PAYLOAD_MAX,
  XSD_ERRORS,
  XSD_SOCKMSG_SIZE,
  XS_ERRNO,
  XsDecodeStep,
  XsWireDecoder,
  XsdSockmsgType,
  encodeHeader,
  xsTypeName,
  type XsError as XsErrorName,
  type XsMessage,
} from '../../../hypervisor/public/io/xs_wire.ts';

/** Transaction id; 0 (XBT_NULL) means "no transaction". */
export type XsTransaction = number;
export const XBT_NULL: XsTransaction = 0;

/** Where libxenstore looks for the daemon: $XENSTORED_PATH, else $XENSTORED_RUNDIR/socket. */
export function xsDaemonSocket(env: NodeJS.ProcessEnv = process.env): string {
  if (env.XENSTORED_PATH) return env.XENSTORED_PATH;
  return `${env.XENSTORED_RUNDIR || '/var/run/xenstored'}/socket`;
}

/** An XS_ERROR reply (or a failure libxenstore would report through errno). */
export class XsError extends Error {
  /** Xen error name as sent on the wire, e.g. 'ENOENT'. */
  readonly code: string;
  /** Linux errno value of `code` (EIO for names Xen does not define). */
  readonly errno: number;
  /** Request type that failed. */
  readonly type: number;

  constructor(code: string, type: number, what?: string) {
    super(`${xsTypeName(type)}${what === undefined ? '' : ` ${what}`}: ${code}`);
    this.name = 'XsError';
    this.code = code;
    this.errno = (XSD_ERRORS as readonly string[]).includes(code) ? XS_ERRNO[code as XsErrorName] : XS_ERRNO.EIO;
    this.type = type;
  }
}

interface Pending {
  resolve(m: XsMessage): void;
  reject(e: Error): void;
  type: number;
  /** The request as sent (header and payload): sent again after a ring reconnection. */
  readonly buf: Buffer;
  readonly tx: number;
}

interface PendingEntry extends Pending {
  readonly id: number;
  /** Order of submission (what shutdown() rejects in). */
  readonly seq: number;
}

/**
 * Requests in flight by req_id: an open table indexed by the id's low bits, doubled whenever two
 * live ids would share a slot. Not a Map: a Map that gains and loses an entry per request
 * rehashes into a fresh table every few requests, and V8 links each old table to its successor;
 * once one of them has been promoted, that chain and the requests and replies it still holds
 * survive every scavenge until the next full GC (a packed guest's heap grew by megabytes per
 * scavenge, with scavenges of several ms).
 */
class PendingTable {
  private slots: (PendingEntry | undefined)[] = new Array<PendingEntry | undefined>(64).fill(undefined);
  private seq = 0;
  /** Requests in flight. */
  size = 0;

  has(id: number): boolean {
    return this.slots[id & (this.slots.length - 1)]?.id === id;
  }

  /** Removes and returns the request with this id. */
  take(id: number): Pending | undefined {
    const i = id & (this.slots.length - 1);
    const p = this.slots[i];
    if (p === undefined || p.id !== id) return undefined;
    this.slots[i] = undefined;
    this.size--;
    return p;
  }

  add(id: number, resolve: Pending['resolve'], reject: Pending['reject'], type: number, buf: Buffer, tx: number): void {
    const e: PendingEntry = { resolve, reject, type, buf, tx, id, seq: this.seq++ };
    while (!this.place(this.slots, e)) this.grow();
    this.size++;
  }

  /** Every request still in flight, in submission order (the table keeps them). */
  list(): PendingEntry[] {
    return this.slots.filter((p): p is PendingEntry => p !== undefined).sort((a, b) => a.seq - b.seq);
  }

  /** Every request still in flight, in submission order; the table is left empty. */
  drain(): Pending[] {
    const all = this.list();
    this.slots.fill(undefined);
    this.size = 0;
    return all;
  }

  private place(slots: (PendingEntry | undefined)[], e: PendingEntry): boolean {
    const i = e.id & (slots.length - 1);
    const cur = slots[i];
    if (cur !== undefined && cur.id !== e.id) return false;
    slots[i] = e;
    return true;
  }

  private grow(): void {
    for (let size = this.slots.length * 2; ; size *= 2) {
      const next = new Array<PendingEntry | undefined>(size).fill(undefined);
      if (this.slots.every((e) => e === undefined || this.place(next, e))) {
        this.slots = next;
        return;
      }
    }
  }
}

/** Admission of requests: see XsHandle.gate. */
export interface XsRequestGate {
  /** The request may go out once this resolves (undefined: at once). */
  enter(type: number, forwarded: boolean): Promise<void> | undefined;
  /** Its reply message, or the error it failed with (an XS_ERROR reply is an XsError). */
  exit(type: number, forwarded: boolean, reply: XsMessage | Error): void;
}

/** Request payload forms: raw bytes, or strings each sent with a terminating NUL. */
export type XsPayload = Uint8Array | string | readonly string[];

export interface XsWatchEvent {
  path: string;
  token: string;
}

export interface XsHandleEvents {
  watch: [path: string, token: string];
  close: [err?: Error];
}

/** XS_WRITE's body: the path with its NUL, then the value without one. */
interface WriteBody {
  readonly path: string;
  readonly value: string | Uint8Array;
}
type Body = XsPayload | WriteBody;

function isWriteBody(p: Body): p is WriteBody {
  return typeof p === 'object' && 'path' in p;
}

function payloadLength(p: Body): number {
  if (typeof p === 'string') return p.length + 1;
  if (p instanceof Uint8Array) return p.length;
  if (isWriteBody(p)) {
    const v = p.value;
    return p.path.length + 1 + (typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length);
  }
  let n = 0;
  for (const s of p) n += s.length + 1;
  return n;
}

function payloadWrite(p: Body, buf: Buffer, at: number): void {
  if (typeof p === 'string') {
    at += buf.write(p, at, 'latin1');
    buf[at] = 0;
  } else if (p instanceof Uint8Array) {
    buf.set(p, at);
  } else if (isWriteBody(p)) {
    at += buf.write(p.path, at, 'latin1');
    buf[at++] = 0;
    if (typeof p.value === 'string') buf.write(p.value, at, 'utf8');
    else buf.set(p.value, at);
  } else {
    for (const s of p) {
      at += buf.write(s, at, 'latin1');
      buf[at++] = 0;
    }
  }
}

/** Splits "a\0b\0" into ['a', 'b'] (latin1); a final piece without NUL is kept too. */
export function splitNul(b: Uint8Array): string[] {
  const out: string[] = [];
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length);
  let start = 0;
  for (;;) {
    const nul = buf.indexOf(0, start);
    if (nul < 0) {
      if (start < buf.length) out.push(buf.toString('latin1', start, buf.length));
      return out;
    }
    out.push(buf.toString('latin1', start, nul));
    start = nul + 1;
  }
}

const payloadOf = (m: XsMessage): Buffer => m.payload as Buffer;
const nothing = (): void => undefined;

/** Reply text without its trailing NUL. */
function replyString(m: XsMessage): string {
  const p = m.payload as Buffer;
  const end = p.length > 0 && p[p.length - 1] === 0 ? p.length - 1 : p.length;
  return p.toString('latin1', 0, end);
}

/**
 * A stream that also carries whole messages without its stream machinery (a guest's xenbus
 * ring): XsHandle then sends and receives through these instead of write() and 'data'.
 */
export interface XsDirectTransport {
  /**
   * Queues one whole message. Messages queued during a tick go out, in order, when that tick's
   * queued work runs - where corked writes would be uncorked.
   */
  sendDirect(data: Uint8Array): void;
  /** Set by the client: receives what the stream would emit as 'data' (which it then does not). */
  onDirectData: ((chunk: Buffer) => void) | undefined;
}

function isDirect(s: object): s is XsDirectTransport {
  return typeof (s as Partial<XsDirectTransport>).sendDirect === 'function';
}

export class XsHandle extends EventEmitter<XsHandleEvents> {
  readonly path: string;
  private readonly sock: net.Socket | Duplex;
  private readonly pending = new PendingTable();
  private nextReqId = 1;
  /** A reply announcing more than XENSTORE_PAYLOAD_MAX bytes is not something xenstored sends. */
  private readonly rx = new XsWireDecoder('reject');
  private corked = false;
  private readonly direct: XsDirectTransport | undefined;
  private closed = false;
  private closeError: Error | undefined;
  private readonly closedPromise: Promise<void>;

  private constructor(sock: net.Socket | Duplex, path: string) {
    super();
    this.sock = sock;
    this.path = path;
    if (isDirect(sock)) {
      this.direct = sock;
      sock.onDirectData = (chunk) => this.onData(chunk);
    } else {
      sock.on('data', (chunk: Buffer) => this.onData(chunk));
    }
    sock.on('error', (e) => {
      this.closeError ??= e;
    });
    this.closedPromise = new Promise((resolve) => {
      sock.on('close', () => {
        this.shutdown();
        resolve();
      });
    });
  }

  /** Connects to xenstored (xs_open). Rejects with the socket error (ENOENT, ECONNREFUSED...). */
  static open(path: string = xsDaemonSocket()): Promise<XsHandle> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection({ path });
      const onError = (e: Error) => reject(e);
      sock.once('error', onError);
      sock.once('connect', () => {
        sock.off('error', onError);
        resolve(new XsHandle(sock, path));
      });
    });
  }

  /**
   * A handle over any byte stream that carries the wire protocol: a guest kernel's xenstore
   * ring (domains/kernel/xenbus.ts) is one.
   */
  static fromStream(stream: Duplex, name: string): XsHandle {
    return new XsHandle(stream, name);
  }

  /** Closes the connection (xs_close); requests still in flight are rejected. */
  async close(): Promise<void> {
    if (!this.sock.destroyed) this.sock.destroy();
    await this.closedPromise;
  }

  /** Let the process exit while this handle is open (and undo with ref()). */
  unref(): this {
    if (this.sock instanceof net.Socket) this.sock.unref();
    return this;
  }

  ref(): this {
    if (this.sock instanceof net.Socket) this.sock.ref();
    return this;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Sends one request and resolves with its reply message. An XS_ERROR reply rejects with
   * XsError. String payload parts are sent NUL-terminated; a Uint8Array is sent as is.
   * `forwarded`: sent on behalf of another client (a guest's /dev/xen/xenbus user), for the gate.
   * The reply payload may share memory with the socket's receive buffer: copy it to keep it long.
   */
  request(type: number, payload: XsPayload, tx: XsTransaction = XBT_NULL, forwarded = false): Promise<XsMessage> {
    return this.submit(type, payload, tx, forwarded);
  }

  /**
   * Admission of every request (a guest kernel's suspend gate, domains/kernel/xenbus-xs.ts):
   * entered after the request's preemption point, left once its reply (or failure) reached
   * the caller. `forwarded` marks a request sent for another client (request()'s argument).
   */
  gate: XsRequestGate | undefined;

  /** Runs before each request is sent (the simulator's preemption point for a client process). */
  beforeRequest: (() => Promise<void>) | undefined;

  /**
   * Lockstep: the kernel's preemption point (Kernel.point). With it the caller may lose the CPU
   * before each request goes out and again when its reply wakes it, and the reader between two
   * messages of one read, so the simulator's scheduler chooses how this connection's users
   * interleave with everything else (as xs_talkv's waiter and xenbus_thread do in Linux).
   */
  sched: ((task: string) => Promise<void>) | undefined;

  /** The task that reads this connection's replies and events (xenbus_thread for a ring). */
  private get readerTask(): string {
    return `${this.path} reader`;
  }

  private submit(type: number, payload: Body, tx: XsTransaction, forwarded = false): Promise<XsMessage> {
    const sched = this.sched;
    const gate = this.gate;
    if (!this.beforeRequest && !sched && !gate) return this.submitNow(type, payload, tx);
    let before = this.beforeRequest?.() ?? Promise.resolve();
    if (sched) before = before.then(() => sched(this.path));
    if (!gate) return before.then(() => this.submitNow(type, payload, tx));
    return before.then(() => gate.enter(type, forwarded)).then(() => this.submitNow(type, payload, tx)).then(
      (m) => {
        gate.exit(type, forwarded, m);
        return m;
      },
      (e: Error) => {
        gate.exit(type, forwarded, e);
        throw e;
      },
    );
  }

  private submitNow(type: number, payload: Body, tx: XsTransaction): Promise<XsMessage> {
    if (this.closed || this.sock.destroyed) {
      return Promise.reject(this.closeError ?? new Error('xenstored connection closed'));
    }
    const len = payloadLength(payload);
    if (len > XENSTORE_PAYLOAD_MAX) return Promise.reject(new XsError('E2BIG', type));
    if (this.resumable && tx !== XBT_NULL && this.lostTx.has(tx)) {
      // A ring reset aborted this transaction: it can only be retried whole.
      if (type === XsdSockmsgType.XS_TRANSACTION_END) this.lostTx.delete(tx);
      return Promise.reject(new XsError('EAGAIN', type));
    }
    const buf = Buffer.allocUnsafe(XSD_SOCKMSG_SIZE + len);
    const reqId = this.allocReqId();
    encodeHeader({ type: type >>> 0, req_id: reqId, tx_id: tx >>> 0, len }, buf);
    payloadWrite(payload, buf, XSD_SOCKMSG_SIZE);
    const sched = this.sched;
    return new Promise<XsMessage>((resolve, reject) => {
      if (sched) {
        // The reply wakes the caller; it goes on when the scheduler picks it.
        this.pending.add(reqId, (m) => void sched(this.path).then(() => resolve(m)),
          (e) => void sched(this.path).then(() => reject(e)), type, buf, tx);
      } else {
        this.pending.add(reqId, resolve, reject, type, buf, tx);
      }
      this.send(buf);
    });
  }

  // --- node operations -------------------------------------------------------------------

  /** xs_read: the node's value (raw bytes, no NUL). */
  read(path: string, tx: XsTransaction = XBT_NULL): Promise<Buffer> {
    // A plain .then, not an async function: this is the hot path of every xenbus user.
    return this.submit(XsdSockmsgType.XS_READ, path, tx).then(payloadOf);
  }

  /** xs_write: strings are written as UTF-8. Missing ancestors are created by xenstored. */
  write(path: string, value: string | Uint8Array, tx: XsTransaction = XBT_NULL): Promise<void> {
    return this.submit(XsdSockmsgType.XS_WRITE, { path, value }, tx).then(nothing);
  }

  async mkdir(path: string, tx: XsTransaction = XBT_NULL): Promise<void> {
    await this.request(XsdSockmsgType.XS_MKDIR, path, tx);
  }

  async rm(path: string, tx: XsTransaction = XBT_NULL): Promise<void> {
    await this.request(XsdSockmsgType.XS_RM, path, tx);
  }

  /** xs_directory: child names. Falls back to XS_DIRECTORY_PART when the list is too big (E2BIG). */
  async directory(path: string, tx: XsTransaction = XBT_NULL): Promise<string[]> {
    try {
      return splitNul((await this.request(XsdSockmsgType.XS_DIRECTORY, path, tx)).payload);
    } catch (e) {
      if (!(e instanceof XsError) || e.code !== 'E2BIG') throw e;
      return this.directoryPart(path, tx);
    }
  }

  /** Reads a directory piecewise, restarting if its generation changes between parts. */
  private async directoryPart(path: string, tx: XsTransaction): Promise<string[]> {
    for (;;) {
      const names: string[] = [];
      let gen: string | undefined;
      let offset = 0;
      let restart = false;
      for (;;) {
        const reply = await this.request(XsdSockmsgType.XS_DIRECTORY_PART, [path, String(offset)], tx);
        const parts = splitNul(reply.payload);
        const g = parts.shift();
        if (gen === undefined) gen = g;
        else if (g !== gen) {
          restart = true;
          break;
        }
        // The final part ends with an empty name ("\0\0").
        const buf = reply.payload;
        const done = buf.length >= 2 && buf[buf.length - 1] === 0 && buf[buf.length - 2] === 0;
        const got = parts.filter((n) => n !== '');
        names.push(...got);
        for (const n of got) offset += n.length + 1;
        if (done || got.length === 0) break;
      }
      if (!restart) return names;
    }
  }

  /** xs_get_permissions, as the raw strings xenstored sends ("n0", "r5", ...). */
  async getPerms(path: string, tx: XsTransaction = XBT_NULL): Promise<string[]> {
    return splitNul((await this.request(XsdSockmsgType.XS_GET_PERMS, path, tx)).payload);
  }

  /** xs_set_permissions with raw permission strings; the first names the owner. */
  async setPerms(path: string, perms: readonly string[], tx: XsTransaction = XBT_NULL): Promise<void> {
    await this.request(XsdSockmsgType.XS_SET_PERMS, [path, ...perms], tx);
  }

  // --- watches ---------------------------------------------------------------------------

  /** xs_watch. xenstored then sends one initial event for the watch. */
  async watch(path: string, token: string): Promise<void> {
    await this.request(XsdSockmsgType.XS_WATCH, [path, token]);
  }

  async unwatch(path: string, token: string): Promise<void> {
    await this.request(XsdSockmsgType.XS_UNWATCH, [path, token]);
  }

  async resetWatches(): Promise<void> {
    await this.request(XsdSockmsgType.XS_RESET_WATCHES, '');
  }

  /**
   * Watch events as an async iterator (xs_read_watch in a loop). Events emitted before this is
   * called are not queued; start iterating before sending XS_WATCH to see the initial event.
   */
  async *watchEvents(signal?: AbortSignal): AsyncGenerator<XsWatchEvent> {
    try {
      for await (const [path, token] of on(this, 'watch', { signal, close: ['close'] })) {
        yield { path: path as string, token: token as string };
      }
    } catch (e) {
      if ((e as Error).name !== 'AbortError') throw e;
    }
  }

  // --- transactions ----------------------------------------------------------------------

  async transactionStart(): Promise<XsTransaction> {
    const m = await this.request(XsdSockmsgType.XS_TRANSACTION_START, '');
    return Number.parseInt(replyString(m), 10) >>> 0;
  }

  /**
   * Commits (commit=true) or aborts a transaction. Like xs_transaction_end, resolves false when
   * the commit failed with EAGAIN (the caller should retry the whole transaction).
   */
  async transactionEnd(tx: XsTransaction, commit: boolean): Promise<boolean> {
    try {
      await this.request(XsdSockmsgType.XS_TRANSACTION_END, commit ? 'T' : 'F', tx);
      return true;
    } catch (e) {
      if (e instanceof XsError && e.code === 'EAGAIN') return false;
      throw e;
    }
  }

  /**
   * Runs `body` in a transaction until a commit succeeds, starting over on EAGAIN (the body must
   * be safe to repeat) - also an EAGAIN from inside the body, the answer for a transaction a ring
   * reset aborted (see reconnected()); any other error from the body aborts the transaction and
   * is thrown. Resolves with the body's last result and how many times it started over.
   */
  async transaction<T>(body: (tx: XsTransaction) => Promise<T>): Promise<{ result: T; retries: number }> {
    for (let retries = 0; ; retries++) {
      const tx = await this.transactionStart();
      let result: T;
      try {
        result = await body(tx);
      } catch (e) {
        await this.transactionEnd(tx, false).catch(() => undefined);
        if (e instanceof XsError && e.code === 'EAGAIN') continue;
        throw e;
      }
      if (await this.transactionEnd(tx, true)) return { result, retries };
    }
  }

  // --- domains ---------------------------------------------------------------------------

  async introduce(domid: number, mfn: number | bigint, port: number): Promise<void> {
    await this.request(XsdSockmsgType.XS_INTRODUCE, [String(domid), String(mfn), String(port)]);
  }

  async release(domid: number): Promise<void> {
    await this.request(XsdSockmsgType.XS_RELEASE, String(domid));
  }

  async resume(domid: number): Promise<void> {
    await this.request(XsdSockmsgType.XS_RESUME, String(domid));
  }

  async setTarget(domid: number, target: number): Promise<void> {
    await this.request(XsdSockmsgType.XS_SET_TARGET, [String(domid), String(target)]);
  }

  async getDomainPath(domid: number): Promise<string> {
    return replyString(await this.request(XsdSockmsgType.XS_GET_DOMAIN_PATH, String(domid)));
  }

  async isDomainIntroduced(domid: number): Promise<boolean> {
    return replyString(await this.request(XsdSockmsgType.XS_IS_DOMAIN_INTRODUCED, String(domid))) === 'T';
  }

  /** XS_CONTROL (xs_control_command): e.g. control('log', 'on'); returns the reply text. */
  async control(...args: string[]): Promise<string> {
    return replyString(await this.request(XsdSockmsgType.XS_CONTROL, args));
  }

  // --- ring reconnection (docs/misc/xenstore-ring.txt) -------------------------------------

  /** Whether this client follows its watches and transactions for reconnected(). */
  private resumable = false;
  /** Watches the server accepted, by their XS_WATCH payload (path NUL token NUL). */
  private readonly watchesHeld = new Set<string>();
  /** Transactions open on the server, and those a reset aborted that the caller has not ended. */
  private readonly openTx = new Set<number>();
  private readonly lostTx = new Set<number>();

  /**
   * The transport can lose the server's state for this connection and get it back empty (a
   * guest's ring reset through the reconnection protocol): from now on follow what reconnected()
   * must restore, as Linux's xenbus_xs.c keeps its list of watches for xs_resume.
   */
  enableReconnection(): void {
    this.resumable = true;
  }

  /** Requests sent whose replies have not come back. */
  get inFlight(): number {
    return this.pending.size;
  }

  private track(p: Pending, type: number, payload: Buffer): void {
    if (type === XsdSockmsgType.XS_ERROR) return;
    if (p.type === XsdSockmsgType.XS_WATCH) this.watchesHeld.add(p.buf.toString('latin1', XSD_SOCKMSG_SIZE));
    else if (p.type === XsdSockmsgType.XS_UNWATCH) this.watchesHeld.delete(p.buf.toString('latin1', XSD_SOCKMSG_SIZE));
    else if (p.type === XsdSockmsgType.XS_TRANSACTION_START) this.openTx.add(Number.parseInt(replyString({ type, req_id: 0, tx_id: 0, payload }), 10) >>> 0);
    else if (p.type === XsdSockmsgType.XS_TRANSACTION_END) this.openTx.delete(p.tx);
  }

  /**
   * The server reset the connection (xenstore-ring.txt: in-flight requests dropped, watches
   * removed, transactions aborted) and serves it again. Requests outside a transaction whose
   * replies never came are sent again as they were (a reply that did arrive is not asked twice);
   * those inside one fail with EAGAIN, as does every later use of a transaction the reset
   * aborted, so callers retry the whole transaction; every watch is registered again (its
   * initial event fires, as any XS_WATCH's does).
   */
  reconnected(): void {
    if (!this.resumable) throw new Error('xenbus: reconnected() without enableReconnection()');
    // A reply read in part belongs to the ring as it was.
    this.rx.reset();
    const answered = new Set<number>();
    for (const m of this.inbox) if (m.type !== XsdSockmsgType.XS_WATCH_EVENT) answered.add(m.req_id);
    for (const tx of this.openTx) this.lostTx.add(tx);
    this.openTx.clear();
    for (const p of this.pending.list()) {
      if (answered.has(p.id)) continue;
      if (p.tx !== XBT_NULL) {
        this.pending.take(p.id);
        if (p.type === XsdSockmsgType.XS_TRANSACTION_END) this.lostTx.delete(p.tx);
        p.reject(new XsError('EAGAIN', p.type));
        continue;
      }
      this.send(p.buf);
    }
    for (const w of this.watchesHeld) {
      const nul = w.indexOf('\0');
      const token = w.slice(nul + 1, w.indexOf('\0', nul + 1));
      this.submitNow(XsdSockmsgType.XS_WATCH, [w.slice(0, nul), token], XBT_NULL).catch(() => undefined);
    }
  }

  // --- plumbing --------------------------------------------------------------------------

  private allocReqId(): number {
    let id = this.nextReqId;
    // req_id 0 is what watch events carry; skip it and any id still in flight after wrapping.
    while (id === 0 || this.pending.has(id)) id = (id + 1) >>> 0;
    this.nextReqId = (id + 1) >>> 0;
    return id;
  }

  /** Writes are corked for the rest of the tick so that a burst of requests goes out in one syscall. */
  private send(buf: Buffer): void {
    if (this.direct) {
      this.direct.sendDirect(buf);
      return;
    }
    if (!this.corked) {
      this.corked = true;
      this.sock.cork();
      process.nextTick(() => {
        this.corked = false;
        this.sock.uncork();
      });
    }
    this.sock.write(buf);
  }

  private onData(chunk: Buffer): void {
    const rx = this.rx;
    let off = 0;
    while (off < chunk.length) {
      off += rx.push(chunk, off);
      if (rx.step === XsDecodeStep.MESSAGE) {
        const m = rx.message();
        if (this.sched) {
          this.inbox.push({ ...m, payload: Buffer.from(m.payload) });
        } else {
          this.dispatch(m.type, m.req_id, m.tx_id, m.payload as Buffer);
        }
      } else if (rx.step === XsDecodeStep.VIOLATION) {
        const h = rx.violation!;
        this.closeError ??= new XsError('EIO', h.type, `reply of ${h.len} bytes`);
        this.sock.destroy();
        return;
      }
    }
    // Everything this read brought is queued before the reader hands out the first message.
    if (this.sched && this.inbox.length && !this.reading) void this.readLoop(this.sched);
  }

  /** Lockstep: messages read but not yet handed out, and whether the reader is at work. */
  private readonly inbox: XsMessage[] = [];
  private reading = false;

  /** The reader hands out one message, and may lose the CPU before the next. */
  private async readLoop(sched: (task: string) => Promise<void>): Promise<void> {
    this.reading = true;
    try {
      while (this.inbox.length) {
        const m = this.inbox.shift()!;
        this.dispatch(m.type, m.req_id, m.tx_id, m.payload as Buffer);
        if (this.inbox.length) await sched(this.readerTask);
      }
    } finally {
      this.reading = false;
    }
  }

  private dispatch(type: number, reqId: number, txId: number, payload: Buffer): void {
    if (type === XsdSockmsgType.XS_WATCH_EVENT) {
      const nul = payload.indexOf(0);
      const path = payload.toString('latin1', 0, nul < 0 ? payload.length : nul);
      let token = '';
      if (nul >= 0) {
        const nul2 = payload.indexOf(0, nul + 1);
        token = payload.toString('latin1', nul + 1, nul2 < 0 ? payload.length : nul2);
      }
      this.emit('watch', path, token);
      return;
    }
    const p = this.pending.take(reqId);
    if (p === undefined) return; // a reply nobody waits for: ignore, as libxenstore would
    if (this.resumable) this.track(p, type, payload);
    if (type === XsdSockmsgType.XS_ERROR) {
      const nul = payload.indexOf(0);
      p.reject(new XsError(payload.toString('latin1', 0, nul < 0 ? payload.length : nul), p.type));
    } else {
      p.resolve({ type, req_id: reqId, tx_id: txId, payload });
    }
  }

  /** Called once the socket is closed: fails what is still in flight and emits 'close'. */
  private shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    const err = this.closeError ?? new Error('xenstored connection closed');
    for (const p of this.pending.drain()) p.reject(err);
    this.emit('close', this.closeError);
  }
}
