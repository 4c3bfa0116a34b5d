// xenstored's side of one introduced domain's xenstore ring page (struct xenstore_domain_interface):
// the transport between the guest's xenbus and the daemon, as tools/xenstore/xenstored_domain.c
// (C xenstored 4.17: readchn/writechn, check_indexes, domain_can_read/write, ignore_connection,
// domain_conn_reset) and tools/ocaml/libs/xb (oxenstored 4.17) do it.
//
// The page is shared with another thread. Index loads and stores are single aligned 32-bit Atomics
// on an Int32Array view; data is copied before the producer index moves (Atomics.store is a full
// barrier); every index update is followed by an event-channel notification.
//
// Reading follows C's handle_input(): a header (16 bytes) is read, checked, then its payload, and a
// whole message goes to the daemon before the next header is looked at. Framing and the policy for
// a protocol violation are the connection layer's (connection.ts, shared with the socket and the
// in-process transports): bytes are copied from req[] straight into the message being read. Profile c stops reading
// while the connection has `quotas.outstanding` (20) or more requests whose replies are not yet
// completely in the ring (nboutstanding; the privileged domain is exempt), so a guest that never
// consumes replies cannot make the daemon buffer without bound.
//
// Behaviour pinned against Debian's xenstored / oxenstored 4.17.7 on a shared ring page
// (../shared/oracle, fake guests):
//   c     INTRODUCE (first or again): all four indexes 0, `connection` 1 -> 0, server_features
//         untouched (4.17 advertises nothing and never writes the field).
//         Garbage indexes (prod - cons > 1024) on a read or a write: `error` = 2 (RINGIDX), the
//         connection is ignored for good; a header with len > 4096: the 16 header bytes are
//         consumed, `error` = 3 (PROTO), ignored (replies to the requests before it are written
//         first, as far as rsp[] has room: the connection layer's one policy). A later INTRODUCE resets the indexes but the
//         connection stays ignored (and `error` stays set). The guest writing `connection` = 1 has
//         no effect (no reconnection feature).
//   ocaml INTRODUCE writes server_features = 1 (RECONNECTION) and nothing else: indexes and
//         `connection` stay as the guest left them. The guest writing `connection` = 1 makes the
//         next read or write reset the ring: partial input, queued output, watches and
//         transactions dropped, indexes 0, `connection` 0, notify.
//         Garbage indexes: the domain is marked bad and no longer served, `error` not written.
//         A header with len > 4096 is not an error: the length is clamped to 4096 (Partial.of_string)
//         and the bytes after those 4096 are taken as the next header.
//         Reading stops (Xb.can_input, XSA-326) while quota-maxoutstanding (1024) replies wait
//         in the output queue, and while events this ring's requests fired wait for room with
//         their watchers; the events queued for the ring are bounded by the daemon
//         (xb-watch-events.ts: quota-maxwatchevents), told here when each starts into rsp[].
// Profile c also stops reading while the domain is at its hard memory quota or in debt with the
// write-rate limiter (the core's readBlockedFor), charges every queued reply and event to the
// domain's memory and drops a watch event that would reach the hard quota (XSA-326) or that is
// identical to one still queued (send_event; pending-events.ts), and drops a
// watch event still unsent after the watch-event timeout (-w watch-event=, 20 s) - measured on
// ../shared/oracle, see test/dom0/xenstored/limits.test.ts. Not modelled: C's charging of queued
// events to the domain whose request caused them as outstanding requests.
import {
  XENSTORE_RING_SIZE, XENSTORE_SERVER_FEATURE_RECONNECTION,
  XS_RING_REQ, XS_RING_RSP, XenstoreConnection, XenstoreDomainInterface as I, XenstoreError, XsDecodeStep,
  type XsMessage, XsdSockmsgType, type XsRingHalf, encodeMessage, xsRingCopyInRange, xsRingCopyOutRange,
  xsRingIndexesValid,
} from '../../../hypervisor/public/io/xs_wire.ts';
import { XsWireConnection } from './connection.ts';
import type { XenstoredDaemon } from './daemon.ts';

/** One ring update, for the simulator's trace: which half, the indexes after it, bytes moved. */
export interface XsRingEvent {
  readonly kind: 'ring';
  readonly ring: 'xenstore';
  readonly half: 'req' | 'rsp';
  readonly cons: number;
  readonly prod: number;
  readonly bytes: number;
}

export interface XsRingConnectionOptions {
  /** Every ring update (xenstored consuming req[], producing rsp[]). */
  readonly onRing?: (ev: XsRingEvent) => void;
  /** Called once when the connection becomes ignored (a fatal client error), with the reason. */
  readonly onIgnored?: (reason: XenstoreError) => void;
}

/** One queued outgoing message and how much of it is in the ring already. */
interface OutMsg {
  readonly bytes: Uint8Array;
  used: number;
  /** A reply (counts as outstanding until completely written), not a watch event. */
  readonly reply: boolean;
  /** What the daemon keeps to report it sent (outputRecord; none: raw bytes restored by a live update). */
  readonly record: Uint8Array | number | undefined;
  /** A guest's watch event is dropped if still unsent at this time (ms, daemon clock; 0: never). */
  readonly expiresAt: number;
}

const W = (off: number): number => off >> 2;

export class XsRingConnection {
  private readonly words: Int32Array;
  private readonly profile: 'c' | 'ocaml';
  /** The connection layer: framing, the violation policy, the way to the daemon. */
  private readonly wire: XsWireConnection;
  private out: OutMsg[] = [];
  private nOutstanding = 0;
  private isIgnored = false;
  private reason: XenstoreError = XenstoreError.XENSTORE_ERROR_NONE;
  private isEnded = false;
  /** Bumped whenever the indexes are reset, so a read loop interrupted by a reset stops. */
  private resets = 0;
  private busy = false;
  private again = false;

  constructor(
    private readonly daemon: XenstoredDaemon,
    readonly connId: number,
    private readonly page: Uint8Array,
    private readonly notify: () => void,
    private readonly opts: XsRingConnectionOptions = {},
  ) {
    if (page.byteLength < 4096 || page.byteOffset % 4 !== 0) throw new RangeError('xenstore ring: need an aligned 4 KiB page');
    this.words = new Int32Array(page.buffer, page.byteOffset, 1024);
    this.profile = daemon.xs.profile;
    this.wire = new XsWireConnection(daemon, connId, {
      send: (m) => this.queue(m),
      flush: () => this.flush(),
      // Profile ocaml: the daemon bounds the events queued here (xb-watch-events.ts), told when
      // each one starts into rsp[] (Xb pops it off its queue then), and holds this ring unread
      // while events its requests fired wait for room elsewhere.
      countsTaken: true,
      unblocked: () => this.kick(),
      takeOutput: () => this.takeOutput(),
      sendBytes: (b) => {
        // C restores it as a reply (XS_INVALID in its trace): outstanding until written.
        this.out.push({ bytes: b, used: 0, reply: true, record: undefined, expiresAt: 0 });
        this.nOutstanding++;
      },
      ended: (why) => {
        if (why === 'violation') this.ignore(XenstoreError.XENSTORE_ERROR_PROTO);
        else this.end();
      },
    }, { socket: false });
  }

  /** The connection is ignored after a fatal client error (bad indexes, oversized header). */
  get ignored(): boolean {
    return this.isIgnored;
  }

  /** Why it is ignored (XENSTORE_ERROR_NONE while it is not); profile c also writes it to `error`. */
  get errorCode(): XenstoreError {
    return this.reason;
  }

  /** RELEASE or death ended it: no more I/O. */
  get ended(): boolean {
    return this.isEnded;
  }

  /** Requests whose replies are not yet completely in the ring (C's nboutstanding). */
  get outstanding(): number {
    return this.nOutstanding;
  }

  /** Bytes of replies and watch events waiting for room in rsp[]. */
  get queuedBytes(): number {
    let n = 0;
    for (const m of this.out) n += m.bytes.length - m.used;
    return n;
  }

  /**
   * XS_INTRODUCE succeeded for this domain (first time or again). Profile c: domain_conn_reset()
   * (partial input and queued output dropped, all four indexes 0) and `connection` 1 -> 0, then a
   * notify. Profile ocaml: server_features = RECONNECTION, nothing else. The core has already
   * dropped watches and transactions where the daemon does.
   */
  introduce(): void {
    if (this.isEnded) return;
    if (this.profile === 'ocaml') {
      Atomics.store(this.words, W(I.server_features), XENSTORE_SERVER_FEATURE_RECONNECTION);
      return;
    }
    this.dropBuffers();
    this.resets++;
    for (const off of [I.req_cons, I.req_prod, I.rsp_cons, I.rsp_prod]) Atomics.store(this.words, W(off), 0);
    if (Atomics.load(this.words, W(I.connection)) === XenstoreConnection.XENSTORE_RECONNECT) {
      Atomics.store(this.words, W(I.connection), XenstoreConnection.XENSTORE_CONNECTED);
    }
    this.notify();
  }

  /**
   * A restarted daemon maps the ring of a domain its state names (introduce_domain with restore,
   * oxenstored's --restart): nothing is reset - the guest's requests still in req[] are read, as
   * the indexes say - and profile ocaml advertises RECONNECTION again, as on every introduction.
   * A guest that asked for a reset meanwhile (`connection` = 1) gets it at the first kick.
   */
  reattach(): void {
    if (this.profile === 'ocaml') Atomics.store(this.words, W(I.server_features), XENSTORE_SERVER_FEATURE_RECONNECTION);
    this.kick();
  }

  /** The guest notified the store event channel: read requests and write output as the ring allows. */
  kick(): void {
    // A dead daemon reads nothing: requests stay in req[], a reset asked for waits.
    if (this.daemon.crashed) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    try {
      do {
        this.again = false;
        let progress = true;
        while (progress && this.live()) {
          if (this.reconnectRequested()) {
            this.reconnect();
            continue;
          }
          progress = this.writeOut();
          if (this.readIn()) progress = true;
        }
      } while (this.again && this.live());
    } finally {
      this.busy = false;
    }
    if (this.live()) this.armIfStuck();
  }

  // ------------------------------------------------------------------ sink

  /** Live update: what waits for room in rsp[], handed to the state stream (C's out_list). */
  private takeOutput(): { data: Uint8Array; respLen: number } {
    const parts = this.out.map((m) => m.bytes.subarray(m.used));
    const respLen = this.out.length !== 0 && this.out[0].used !== 0 ? parts[0].length : 0;
    this.uncharge(this.out);
    // Reported with the next ring update: the stream's copies come back through the daemon.
    this.eventsLeft += this.unstartedEvents();
    this.out = [];
    this.nOutstanding = 0;
    return { data: parts.length === 1 ? parts[0] : Buffer.concat(parts), respLen };
  }

  private queue(msg: XsMessage): boolean {
    if (!this.live()) return false;
    const reply = msg.type !== XsdSockmsgType.XS_WATCH_EVENT;
    const xs = this.daemon.xs;
    // XSA-326: an event that would put the domain at its hard memory quota is dropped.
    if (!xs.outputQueued(this.connId, msg)) return false;
    let expiresAt = 0;
    const timeout = xs.quotas.watchEventTimeout;
    if (!reply && timeout > 0 && xs.b.watchEventTimeout && !(xs.connections.get(this.connId)?.privileged ?? true)) {
      expiresAt = xs.clockMs() + timeout * 1000;
    }
    this.out.push({ bytes: encodeMessage(msg), used: 0, reply, record: xs.outputRecord(msg), expiresAt });
    if (reply) this.nOutstanding++;
    return true;
  }

  /** Memory charged for messages leaving the queue goes back to the domain. */
  private uncharge(msgs: readonly OutMsg[]): void {
    const xs = this.daemon.xs;
    for (const m of msgs) if (m.record !== undefined) xs.outputDone(this.connId, m.record);
  }

  private expiryArmed = false;

  /**
   * After a write to the ring: if an event is still waiting for room, look again when it is due
   * (no timer while everything goes out at once, the usual case).
   */
  private armIfStuck(): void {
    if (this.expiryArmed) return;
    let next = 0;
    for (const m of this.out) if (m.expiresAt !== 0 && m.used === 0 && (next === 0 || m.expiresAt < next)) next = m.expiresAt;
    if (next !== 0) this.armExpiry(Math.max(0, next - this.daemon.xs.clockMs()));
  }

  /** Looks for timed-out events when the first queued one is due (C's poll timeout). */
  private armExpiry(ms: number): void {
    if (this.expiryArmed) return;
    this.expiryArmed = this.daemon.after(ms, () => {
      this.expiryArmed = false;
      if (!this.live()) return;
      this.expireEvents();
      this.flush();
    });
  }

  /**
   * check_event_timeout(): watch events not yet started into the ring whose time is up are
   * freed (their memory returned); if some remain, look again when the next one is due.
   */
  private expireEvents(): void {
    const now = this.daemon.xs.clockMs();
    let next = 0;
    const keep: OutMsg[] = [];
    for (const m of this.out) {
      if (m.expiresAt !== 0 && m.used === 0 && m.expiresAt <= now) {
        this.uncharge([m]);
        this.eventsLeft++;
        continue;
      }
      if (m.expiresAt !== 0 && m.used === 0 && (next === 0 || m.expiresAt < next)) next = m.expiresAt;
      keep.push(m);
    }
    this.out = keep;
    if (next !== 0) this.armExpiry(next - now);
    this.reportTaken();
  }

  /** Watch events that left the queue (started into rsp[], expired, dropped) and are not yet reported. */
  private eventsLeft = 0;

  /** Tells the daemon which events left the queue (after the ring update: it may queue more). */
  private reportTaken(): void {
    const n = this.eventsLeft;
    if (n === 0) return;
    this.eventsLeft = 0;
    this.wire.eventsTaken(n);
  }

  /**
   * The daemon has output for this connection. Inside a kick, the kick's loop writes it (one ring
   * update per batch); otherwise (another connection's write fired a watch) push what fits now.
   */
  private flush(): void {
    if (!this.live()) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    if (this.reconnectRequested()) {
      this.reconnect();
      return;
    }
    this.writeOut();
    this.armIfStuck();
  }

  private end(): void {
    this.isEnded = true;
    this.dropBuffers();
  }

  // ------------------------------------------------------------------ ring I/O

  private live(): boolean {
    return !this.isEnded && !this.isIgnored;
  }

  private load(off: number): number {
    return Atomics.load(this.words, W(off)) >>> 0;
  }

  private store(off: number, v: number): void {
    Atomics.store(this.words, W(off), v | 0);
  }

  /** domain_can_write() + writechn(): as much queued output as rsp[] has room for. */
  private writeOut(): boolean {
    if (this.out.length === 0) return false;
    const h: XsRingHalf = XS_RING_RSP;
    const cons = this.load(h.cons);
    const prod = this.load(h.prod);
    if (((prod - cons) >>> 0) === XENSTORE_RING_SIZE) return false;
    if (!xsRingIndexesValid(cons, prod)) {
      this.ignore(XenstoreError.XENSTORE_ERROR_RINGIDX);
      return false;
    }
    let room = XENSTORE_RING_SIZE - ((prod - cons) >>> 0);
    let at = prod;
    while (room > 0 && this.out.length > 0) {
      const m = this.out[0];
      if (m.used === 0 && !m.reply) this.eventsLeft++;
      const n = Math.min(room, m.bytes.length - m.used);
      xsRingCopyInRange(this.page, h, at, m.bytes, m.used, n);
      m.used += n;
      at = (at + n) >>> 0;
      room -= n;
      if (m.used === m.bytes.length) {
        this.out.shift();
        this.uncharge([m]);
        if (m.reply) this.nOutstanding--;
      }
    }
    this.store(h.prod, at);
    this.opts.onRing?.({ kind: 'ring', ring: 'xenstore', half: 'rsp', cons, prod: at, bytes: (at - prod) >>> 0 });
    this.notify();
    this.reportTaken();
    return true;
  }

  /** domain_can_read() + handle_input(): whole messages to the daemon while allowed. */
  private readIn(): boolean {
    const h: XsRingHalf = XS_RING_REQ;
    const resets = this.resets;
    const cons = this.load(h.cons);
    const prod = this.load(h.prod);
    if (cons === prod || this.throttled()) return false;
    if (!xsRingIndexesValid(cons, prod)) {
      this.ignore(XenstoreError.XENSTORE_ERROR_RINGIDX);
      return false;
    }
    const avail = (prod - cons) >>> 0;
    const dec = this.wire.decoder;
    let used = 0;
    let violation = false;
    while (used < avail) {
      // A new message starts: C checks domain_can_read() before every read.
      if (dec.idle && this.throttled()) break;
      // Straight from the page into the message being read (its header, then its payload).
      const n = Math.min(avail - used, dec.fillLength);
      xsRingCopyOutRange(this.page, h, cons + used, dec.fillBuffer, dec.fillOffset, n);
      used += n;
      const step = dec.filled(n);
      if (step === XsDecodeStep.MORE) continue;
      if (step === XsDecodeStep.VIOLATION) {
        violation = true;
        break;
      }
      this.wire.deliver(dec.message());
      // The daemon may have reset, ended or ignored this connection meanwhile.
      if (this.resets !== resets || this.isEnded) return true;
      if (this.isIgnored) break;
    }
    if (used > 0) {
      this.store(h.cons, cons + used);
      this.opts.onRing?.({ kind: 'ring', ring: 'xenstore', half: 'req', cons: (cons + used) >>> 0, prod, bytes: used });
      this.notify();
    }
    // The header is consumed; replies to the messages before it go out, then the ring is ignored.
    if (violation) this.wire.violation();
    return used > 0;
  }

  /**
   * domain_can_read() of an unprivileged domain: too many replies not yet written (profile c),
   * the hard memory quota reached, the write-rate limiter's debt or the seed's limit (the core's
   * readBlockedFor). A stalled ring looks again after the daemon's next batch or when its wait is
   * over.
   */
  private throttled(): boolean {
    const xs = this.daemon.xs;
    if (this.profile === 'c') {
      const quota = xs.quotas.outstanding;
      if (quota > 0 && this.nOutstanding >= quota && !(xs.connections.get(this.connId)?.privileged ?? false)) return true;
    }
    if (this.profile === 'ocaml') {
      // Xb.can_input: quota-maxoutstanding replies still in the output queue (the one partly in
      // rsp[] has left it), or events this ring's requests fired waiting for room - the daemon
      // kicks it when they are passed on (unblocked).
      const quota = xs.quotas.outstanding;
      const started = this.out.length !== 0 && this.out[0].reply && this.out[0].used !== 0 ? 1 : 0;
      if (quota > 0 && this.nOutstanding - started >= quota) return true;
      if (this.daemon.inputHeld(this.connId)) return true;
    }
    const wait = xs.readBlockedFor(this.connId);
    if (wait === 0) return false;
    if (wait === Infinity) this.daemon.stalled.add(this.rekick);
    else if (!this.wakeArmed) {
      this.wakeArmed = this.daemon.after(wait, () => {
        this.wakeArmed = false;
        this.kick();
      });
    }
    return true;
  }

  private wakeArmed = false;
  private readonly rekick = (): void => this.kick();

  // ------------------------------------------------------------------ errors and resets

  /** ignore_connection(): fatal client error. The domain stays (its @releaseDomain still fires). */
  private ignore(reason: XenstoreError): void {
    if (this.isIgnored) return;
    // What is queued for the requests before a protocol violation goes out as far as rsp[] has
    // room (C frees what it has not written yet).
    if (reason === XenstoreError.XENSTORE_ERROR_PROTO && !this.isEnded) this.writeOut();
    this.isIgnored = true;
    this.reason = reason;
    if (this.profile === 'c') Atomics.store(this.words, W(I.error), reason);
    this.dropBuffers();
    this.daemon.xs.resetConnection(this.connId);
    this.opts.onIgnored?.(reason);
  }

  /** oxenstored only: the guest asked for a reconnect by writing `connection` = 1. */
  private reconnectRequested(): boolean {
    return this.profile === 'ocaml' && Atomics.load(this.words, W(I.connection)) === XenstoreConnection.XENSTORE_RECONNECT;
  }

  private reconnect(): void {
    this.dropBuffers();
    this.daemon.xs.resetConnection(this.connId);
    this.resets++;
    for (const off of [I.req_cons, I.req_prod, I.rsp_cons, I.rsp_prod]) Atomics.store(this.words, W(off), 0);
    Atomics.store(this.words, W(I.connection), XenstoreConnection.XENSTORE_CONNECTED);
    this.notify();
  }

  private dropBuffers(): void {
    this.wire.decoder.reset();
    this.uncharge(this.out);
    this.eventsLeft += this.unstartedEvents();
    this.out = [];
    this.nOutstanding = 0;
    this.reportTaken();
  }

  /** Watch events queued and not yet started into rsp[] (the started one was counted then). */
  private unstartedEvents(): number {
    let n = 0;
    for (const m of this.out) if (!m.reply && m.used === 0) n++;
    return n;
  }
}
