// The wire end of one xenstored connection, the same under every transport (a Unix socket, a
// guest's ring page, an in-process stream): C xenstored's handle_input() and oxenstored's Xb
// input. Transports only move bytes: a byte stream (socket, in-process) hands each chunk to
// received(), the ring copies from its page straight into the decoder (fill API) and calls
// deliver() per message.
//
// One policy for a protocol violation (a header announcing more than XENSTORE_PAYLOAD_MAX bytes in
// profile c): every message before it is handled and answered in order, then the connection
// ends (the transport drops the socket, or ignores the ring with `error` = XENSTORE_ERROR_PROTO).
// Checked on C xenstored 4.17: a WRITE followed by such a header in one write() is applied, then
// the socket closes. (C may also lose that WRITE's reply: it frees output still queued when it
// drops the connection, depending on its poll rounds. xensim always sends it.)
// Profile ocaml has no violation: oxenstored clamps the length to XENSTORE_PAYLOAD_MAX and reads
// the bytes after those as the next header, so a client announcing 0xFFFFFFFF and streaming
// gets an error per 4 KiB and is never buffered beyond one message.
import { XsDecodeStep, type XsMessage, XsWireDecoder } from '../../../hypervisor/public/io/xs_wire.ts';
import type { Sink, XenstoredDaemon } from './daemon.ts';

/** Why a connection ended. */
export type XsConnectionEnd =
  /** The core ended it (RELEASE, domain death). */
  | 'released'
  /** The client broke the protocol; output for the messages before was flushed. */
  | 'violation';

/** What a transport offers the connection layer. */
export interface XsTransport {
  /** Queue a message (reply or watch event) for the peer; false if it dropped it instead. */
  send(msg: XsMessage): boolean | void;
  /** Push queued output out (one write; one ring update and notify). */
  flush(): void;
  /**
   * 'violation': nothing more is read; the transport ends the link as its daemon does (drops the
   * socket, ignores the ring), and the core connection with it. 'released': the core ended the
   * connection (possibly after a violation); nothing more is sent either.
   */
  ended(why: XsConnectionEnd): void;
  /**
   * Whether the daemon should stop reading from this connection for now (the outstanding-request
   * quota: too many replies the peer has not taken). The rest of a stream chunk then waits for
   * resume().
   */
  throttled?(): boolean;
  /**
   * Live update: hands over the output not yet sent (and forgets it): whole messages, the first
   * possibly sent in part already (`respLen` bytes of it left).
   */
  takeOutput?(): { data: Uint8Array; respLen: number };
  /** Live update: raw bytes to send before anything else (the rest of a reply sent in part). */
  sendBytes?(bytes: Uint8Array): void;
  /**
   * The transport reports each watch event the peer takes off its queue (eventsTaken()), so that
   * profile ocaml bounds what is queued for the peer as Xb does (xb-watch-events.ts).
   */
  readonly countsTaken?: boolean;
  /**
   * Profile ocaml: the daemon may read this connection again (the events its requests fired were
   * passed on). Default: read the stream bytes that waited (resume()).
   */
  unblocked?(): void;
}

export interface XsWireConnectionOptions {
  /**
   * A dom0 socket connection (or its in-process equivalent): in profile ocaml a message with an
   * empty payload whose header ends the bytes read so far is only handled once more bytes
   * arrive - oxenstored completes such a packet on the socket's next readable event. A guest's
   * ring (and xensim's guest-directory socket standing for one) is read when kicked and does not
   * wait.
   */
  readonly socket: boolean;
}

export class XsWireConnection {
  readonly decoder: XsWireDecoder;
  private readonly holdEmpty: boolean;
  /** An empty-payload message waiting for more bytes (profile ocaml on a stream). */
  private held: XsMessage | undefined;
  private isEnded = false;
  private readonly sink: Sink;
  /** Why it ended, once it has. */
  endReason: XsConnectionEnd | undefined;
  /** Stream bytes not yet read because the connection was throttled. */
  private unread: Uint8Array | undefined;

  constructor(
    private readonly daemon: XenstoredDaemon,
    readonly conn: number,
    private readonly transport: XsTransport,
    opts: XsWireConnectionOptions,
  ) {
    const profile = daemon.xs.profile;
    this.decoder = new XsWireDecoder(profile === 'c' ? 'reject' : 'clamp');
    this.holdEmpty = opts.socket && profile === 'ocaml';
    this.sink = {
      send: (m) => transport.send(m),
      flush: () => transport.flush(),
      ended: () => this.end('released'),
      pendingInput: () => this.pendingInput(),
      restoreInput: (b) => this.restoreInput(b),
      takeOutput: transport.takeOutput ? () => transport.takeOutput!() : undefined,
      sendBytes: transport.sendBytes ? (b) => transport.sendBytes!(b) : undefined,
      resume: () => this.resume(),
      countsTaken: transport.countsTaken,
      unblocked: () => (transport.unblocked ? transport.unblocked() : this.resume()),
    };
    daemon.attach(conn, this.sink);
  }

  /** No more input is taken (a violation, or the connection ended). */
  get ended(): boolean {
    return this.isEnded || this.decoder.isBroken;
  }

  /**
   * Bytes from a stream. Each whole message is handled before the next header is looked at;
   * the output of the chunk goes out in one flush.
   */
  received(chunk: Uint8Array): void {
    if (this.ended) return;
    if (this.daemon.crashed) {
      // Nobody reads: the bytes wait, as in a socket's buffer, for a restarted daemon.
      this.keepUnread(chunk);
      return;
    }
    if (this.held !== undefined && chunk.length > 0) {
      const m = this.held;
      this.held = undefined;
      this.daemon.request(this.conn, m);
    }
    if (this.unread === undefined && this.throttledNow()) {
      this.unread = chunk.slice();
      return;
    }
    if (this.unread !== undefined) {
      // Still throttled: keep the bytes in arrival order (the transport stops reading meanwhile).
      this.keepUnread(chunk);
      return;
    }
    const dec = this.decoder;
    let off = 0;
    while (off < chunk.length && !this.ended) {
      off += dec.push(chunk, off);
      if (dec.step === XsDecodeStep.MESSAGE) {
        const m = dec.message();
        if (this.holdEmpty && m.payload.length === 0 && off === chunk.length) this.held = m;
        else this.daemon.request(this.conn, m);
        if (off < chunk.length && this.throttledNow()) {
          this.daemon.flush();
          this.unread = chunk.slice(off);
          return;
        }
      } else if (dec.step === XsDecodeStep.VIOLATION) {
        this.violation();
        return;
      }
    }
    this.daemon.flush();
  }

  private keepUnread(chunk: Uint8Array): void {
    const u = this.unread;
    if (u === undefined) {
      this.unread = chunk.slice();
      return;
    }
    this.unread = new Uint8Array(u.length + chunk.length);
    this.unread.set(u);
    this.unread.set(chunk, u.length);
  }

  /** The transport took replies off the queue, or the daemon restarted: read what waited. */
  resume(): void {
    const u = this.unread;
    if (u === undefined || this.daemon.crashed || this.throttledNow()) return;
    this.unread = undefined;
    this.received(u);
  }

  /**
   * Whether the connection is not to be read now: the transport throttles it, or (profile ocaml)
   * the daemon holds it while events it fired wait for room.
   */
  throttledNow(): boolean {
    return (this.transport.throttled?.() ?? false) || this.daemon.inputHeld(this.conn);
  }

  /** The peer took `n` watch events off the transport's queue. */
  eventsTaken(n: number): void {
    this.daemon.eventsTaken(this.conn, n, this.sink);
  }

  /** Whether stream bytes wait for resume(). */
  get paused(): boolean {
    return this.unread !== undefined;
  }

  /**
   * Live update: what was read and not handled - the message read in part, then bytes left
   * unread while throttled - in arrival order.
   */
  private pendingInput(): Uint8Array {
    const part = this.decoder.held();
    const u = this.unread;
    if (u === undefined) return part;
    const all = new Uint8Array(part.length + u.length);
    all.set(part);
    all.set(u, part.length);
    return all;
  }

  /**
   * Live update: the new instance's view of this connection's unread bytes (what pendingInput()
   * gave, less the whole messages it handles itself): the decoder starts over with them.
   */
  private restoreInput(bytes: Uint8Array): void {
    this.decoder.reset();
    this.unread = undefined;
    const dec = this.decoder;
    let off = 0;
    while (off < bytes.length && !this.ended) {
      off += dec.push(bytes, off);
      // Whole messages were split off by the reader; a violation is reported as on input.
      if (dec.step === XsDecodeStep.MESSAGE) this.daemon.request(this.conn, dec.message());
      else if (dec.step === XsDecodeStep.VIOLATION) return this.violation();
    }
  }

  /** A whole message read by the transport through the decoder's fill API (the ring). */
  deliver(msg: XsMessage): void {
    if (this.ended) return;
    this.daemon.input(this.conn, msg);
  }

  /** The decoder reported a violation: answer what came before, then end the connection. */
  violation(): void {
    if (this.isEnded || this.endReason === 'violation') return;
    this.endReason = 'violation';
    this.held = undefined;
    this.daemon.flush();
    this.transport.ended('violation');
  }

  /** The transport went away (socket closed, ring unmapped): no more output. */
  detach(): void {
    if (this.isEnded) return;
    this.isEnded = true;
    this.held = undefined;
    this.daemon.detach(this.conn, this.sink);
  }

  private end(why: XsConnectionEnd): void {
    if (this.isEnded) return;
    this.isEnded = true;
    this.endReason ??= why;
    this.held = undefined;
    this.daemon.detach(this.conn, this.sink);
    this.transport.ended(why);
  }
}
