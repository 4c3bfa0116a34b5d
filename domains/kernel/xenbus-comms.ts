// The guest's end of the xenstore ring page, as Linux's drivers/xen/xenbus/xenbus_comms.c has it
// (xb_write, xb_read, xb_init_comms), offered as a byte stream: requests written to the stream go
// into req[], replies and watch events read from rsp[] come out of it, so
// `XsHandle.fromStream(new XenbusRing(page, notify), 'xenbus')` is a full xenbus client.
//
// The page is shared with xenstored's thread: indexes are loaded and stored with Atomics on an
// Int32Array view (single aligned 32-bit accesses; Atomics.store is a full barrier, so data is
// copied before the producer index moves and read before the consumer index moves), and every
// index update is followed by `notify` (the store event channel).
//
// Nothing assumes the indexes start at 0: a restored or hostile server may leave them anywhere,
// and the ring works from wherever they are (free-running u32, wrapping mod 2^32). Indexes that
// claim more than 1024 bytes in flight are Linux's -EIO: that half's indexes are reset to 0 and
// the stream is destroyed with an EIO error.
import { Duplex } from 'node:stream';
import type { XsDirectTransport } from '../libs/store/xs.ts';
import {
  XENSTORE_RING_SIZE, XENSTORE_SERVER_FEATURE_RECONNECTION, XenstoreConnection, XenstoreDomainInterface, XS_RING_REQ, XS_RING_RSP, type XsRingHalf, xsRingCopyInRange, xsRingCopyOut, xsRingIndexesValid,
} from '../../hypervisor/public/io/xs_wire.ts';

export interface XenbusRingOptions {
  /**
   * xb_init_comms(): responses already in rsp[] belong to a previous kernel (kexec, restore) and
   * are skipped by moving rsp_cons up to rsp_prod. Default true.
   */
  readonly skipStaleResponses?: boolean;
  /**
   * R16's buggy variant: touch the ring though `connection` says XENSTORE_RECONNECT. Linux
   * (a3607581cd49) waits for xenstored to say XENSTORE_CONNECTED, with an event, before first use.
   */
  readonly ignoreConnection?: boolean;
}

/** An errno-style error, as the kernel reports it. */
function eio(what: string): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error(`xenbus: ${what}: EIO`);
  e.code = 'EIO';
  e.errno = -5;
  return e;
}

interface PendingWrite {
  readonly data: Uint8Array;
  used: number;
  readonly cb: ((error?: Error | null) => void) | undefined;
}

export class XenbusRing extends Duplex implements XsDirectTransport {
  private readonly words: Int32Array;
  private pending: PendingWrite | undefined;
  /**
   * The direct path (XsDirectTransport, what XsHandle uses): whole messages waiting behind
   * `pending`, and whether the tick that hands them over is queued. The ring sees the same
   * updates, in the same order and at the same moments, as through the stream with XsHandle's
   * cork/uncork, without a stream's per-chunk bookkeeping and ticks.
   */
  private readonly queued: Uint8Array[] = [];
  private flushQueued = false;
  onDirectData: ((chunk: Buffer) => void) | undefined;
  private busy = false;
  private again = false;
  private writing = false;
  private readonly ignoreConnection: boolean;
  /** A ring reset asked for (`connection` = XENSTORE_RECONNECT), not yet done by the server. */
  private reconnecting = false;
  /** The server reset the ring as asked: the client sends again what it lost (XsHandle.reconnected). */
  onReconnected: (() => void) | undefined;
  /** A request is handed to the ring (the reconnection watchdog's cue). */
  onRequest: (() => void) | undefined;
  /** Bytes read from rsp[] so far: a sign of life from the server. */
  received = 0;

  constructor(
    private readonly page: Uint8Array,
    private readonly notify: () => void,
    opts: XenbusRingOptions = {},
  ) {
    super({ decodeStrings: true });
    if (page.byteLength < 4096 || page.byteOffset % 4 !== 0) throw new RangeError('xenstore ring: need an aligned 4 KiB page');
    this.words = new Int32Array(page.buffer, page.byteOffset, 1024);
    this.ignoreConnection = opts.ignoreConnection ?? false;
    if ((opts.skipStaleResponses ?? true) && this.connected()) {
      const cons = this.load(XS_RING_RSP.cons);
      const prod = this.load(XS_RING_RSP.prod);
      if (cons !== prod) {
        this.store(XS_RING_RSP.cons, prod);
        this.notify();
      }
    }
  }

  /**
   * The store event channel fired: drain rsp[] into the stream, then put pending request bytes
   * into whatever room req[] has now.
   */
  onEvent(): void {
    if (this.reconnecting) {
      // xenstore-ring.txt: wait for the server to say CONNECTED (indexes reset) and notify.
      if (this.load(XenstoreDomainInterface.connection) !== XenstoreConnection.XENSTORE_CONNECTED) return;
      this.reconnecting = false;
      this.onReconnected?.();
    }
    // Not introduced yet (a dom0less guest up before xenstored): the ring is not ours to touch.
    if (!this.connected()) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    try {
      do {
        this.again = false;
        if (this.destroyed) return;
        if (!this.drain()) return;
        this.pumpWrite();
      } while (this.again);
    } finally {
      this.busy = false;
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (error?: Error | null) => void): void {
    this.pending = { data: chunk, used: 0, cb };
    this.pumpWrite();
  }

  sendDirect(data: Uint8Array): void {
    if (this.destroyed) return;
    this.onRequest?.();
    this.queued.push(data);
    if (this.flushQueued) return;
    this.flushQueued = true;
    // Where XsHandle's uncork would run: the messages of this tick go out together.
    process.nextTick(() => {
      this.flushQueued = false;
      this.pumpWrite();
    });
  }

  /** The server advertises the ring reconnection feature (server_features bit 0). */
  get serverCanReconnect(): boolean {
    return (this.load(XenstoreDomainInterface.server_features) & XENSTORE_SERVER_FEATURE_RECONNECTION) !== 0;
  }

  /**
   * Asks the server for a ring reset (xenstore-ring.txt, "Ring reconnection"): `connection` =
   * XENSTORE_RECONNECT and a notify; nothing more is read or written until the server has set
   * the indexes to 0 and `connection` back to XENSTORE_CONNECTED. What was not yet in req[] is
   * dropped here: the client sends its unanswered requests again once the reset is done.
   * False if the server does not offer the feature (the ring cannot be recovered).
   */
  requestReconnect(): boolean {
    if (this.reconnecting) return true;
    if (!this.serverCanReconnect || this.destroyed) return false;
    // Replies already in rsp[] are taken first: their requests are answered, not sent again.
    if (this.connected() && !this.drain()) return false;
    this.reconnecting = true;
    const p = this.pending;
    this.pending = undefined;
    this.queued.length = 0;
    this.store(XenstoreDomainInterface.connection, XenstoreConnection.XENSTORE_RECONNECT);
    this.notify();
    p?.cb?.();
    return true;
  }

  override _read(): void {
    // Bytes are pushed as events arrive.
  }

  override _final(cb: (error?: Error | null) => void): void {
    cb();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.pending = undefined;
    this.queued.length = 0;
    cb(err);
  }

  /**
   * Whether xenstored serves the ring: `connection` is XENSTORE_RECONNECT from the domain
   * builder of a dom0less guest until XS_INTRODUCE's reset sets XENSTORE_CONNECTED and notifies.
   */
  private connected(): boolean {
    if (this.reconnecting) return false;
    if (this.ignoreConnection) return true;
    return this.load(XenstoreDomainInterface.connection) !== XenstoreConnection.XENSTORE_RECONNECT;
  }

  // ------------------------------------------------------------------ ring halves

  private load(off: number): number {
    return Atomics.load(this.words, off >> 2) >>> 0;
  }

  private store(off: number, v: number): void {
    Atomics.store(this.words, off >> 2, v | 0);
  }

  /** Garbage indexes in one half: reset them as Linux does and fail the stream. */
  private corrupt(h: XsRingHalf, what: string): void {
    this.store(h.cons, 0);
    this.store(h.prod, 0);
    this.notify();
    this.destroy(eio(`${what} ring indexes corrupt`));
  }

  /** xb_read(): everything in rsp[]; false if the stream died. */
  private drain(): boolean {
    const h = XS_RING_RSP;
    for (;;) {
      const cons = this.load(h.cons);
      const prod = this.load(h.prod);
      if (cons === prod) return true;
      if (!xsRingIndexesValid(cons, prod)) {
        this.corrupt(h, 'response');
        return false;
      }
      const avail = (prod - cons) >>> 0;
      const out = Buffer.allocUnsafe(avail);
      xsRingCopyOut(this.page, h, cons, out);
      this.store(h.cons, cons + avail);
      this.received += avail;
      this.notify();
      if (this.onDirectData) this.onDirectData(out);
      else this.push(out);
      if (this.destroyed) return false;
    }
  }

  /**
   * xb_write(): as much of the pending chunk as req[] has room for; the rest waits for an event.
   * Not re-entered: a notify may run the server and an event synchronously, and the loop reloads
   * the indexes before every chunk anyway.
   */
  private pumpWrite(): void {
    if (this.writing || !this.connected()) return;
    this.writing = true;
    try {
      const h = XS_RING_REQ;
      for (;;) {
        let p = this.pending;
        if (p === undefined) {
          // Direct path: the next queued message, unless the flush tick has yet to run.
          const next = this.flushQueued ? undefined : this.queued.shift();
          if (next === undefined) return;
          p = this.pending = { data: next, used: 0, cb: undefined };
        }
        if (this.destroyed) return;
        if (p.used === p.data.length) {
          this.pending = undefined;
          p.cb?.(); // may hand over the next chunk synchronously
          continue;
        }
        const cons = this.load(h.cons);
        const prod = this.load(h.prod);
        if (!xsRingIndexesValid(cons, prod)) {
          this.corrupt(h, 'request');
          return;
        }
        const room = XENSTORE_RING_SIZE - ((prod - cons) >>> 0);
        if (room === 0) return;
        const n = Math.min(room, p.data.length - p.used);
        xsRingCopyInRange(this.page, h, prod, p.data, p.used, n);
        p.used += n;
        this.store(h.prod, prod + n);
        this.notify();
      }
    } finally {
      this.writing = false;
    }
  }
}
