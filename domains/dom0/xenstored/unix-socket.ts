// Unix-socket transport: moves bytes between sockets and the core, nothing more.
// Dom0 tools connect to the main socket; with a guest directory, DIR/<domid> appears once a
// domain is INTRODUCEd and carries that domain's (unprivileged) connection.
import { lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { XENSTORE_RING_SIZE, XSD_ERRORS, type XsError, type XsMessage, XsdSockmsgType, encodeMessage } from '../../../hypervisor/public/io/xs_wire.ts';
import { type DaemonOptions, XenstoredDaemon } from './daemon.ts';
import type { Xenstored } from './core.ts';
import { XsWireConnection } from './connection.ts';
import { TraceFile } from './trace.ts';

export interface ServerOptions extends DaemonOptions {
  readonly socketPath: string;
  readonly guestDir?: string;
  /** Where a guest socket that cannot be set up is reported (default: stderr). */
  readonly report?: (line: string) => void;
  /** Told of each chunk read from a client and of each client that goes (idle-collect.ts). */
  readonly clients?: { read(): void; clientGone(): void };
}

/** sockaddr_un's sun_path holds 108 bytes, the last for the terminating NUL. */
export const SUN_PATH_MAX = 107;

/**
 * Why a Unix socket cannot be bound at `path` by its length, or undefined. Node hands bind() a
 * longer path cut at sun_path's size, so DIR/32000 would quietly become DIR/3200.
 */
export function socketPathTooLong(path: string): string | undefined {
  const n = Buffer.byteLength(path);
  return n > SUN_PATH_MAX ? `${path}: a Unix socket path holds at most ${SUN_PATH_MAX} bytes (sun_path), this one has ${n}` : undefined;
}

/** An errno as a reply carries it: C's send_error() answers EINVAL for one outside xsd_errors. */
const asXsError = (code: string | undefined): XsError =>
  (XSD_ERRORS as readonly string[]).includes(code ?? '') ? code as XsError : 'EINVAL';

interface GuestServer {
  readonly server: Server;
  readonly path: string;
  /** The domain connection it serves (set once the INTRODUCE went through). */
  conn: number | undefined;
}

interface Peer {
  readonly socket: Socket;
  readonly wire: XsWireConnection;
}

export class XenstoredServer {
  readonly daemon: XenstoredDaemon;
  /** The daemon's instance now (a live update replaces it). */
  get xs(): Xenstored {
    return this.daemon.xs;
  }
  private readonly main: Server;
  private readonly peers = new Map<number, Peer>();
  /** Guest-directory listeners by domid, with the connection id each one serves. */
  private readonly guestServers = new Map<number, GuestServer>();
  private readonly report: (line: string) => void;
  /** Per connection: what its output and input stand at (see outputState). */
  private readonly queued = new Map<number, () => { queuedBytes: number; throttled: boolean }>();
  /** The silent client of each domain whose connection went away, with what it wrote since. */
  private readonly unmapped = new Map<number, { socket: Socket; bytes: Buffer }>();

  /**
   * Bytes of output held for connection `conn`'s peer and not yet taken by the kernel, and
   * whether reading from it is stopped by the outstanding-request quota.
   */
  outputState(conn: number): { queuedBytes: number; throttled: boolean } {
    return this.queued.get(conn)?.() ?? { queuedBytes: 0, throttled: false };
  }

  constructor(private readonly opts: ServerOptions, daemon?: XenstoredDaemon) {
    this.daemon = daemon ?? new XenstoredDaemon(opts);
    this.report = opts.report ?? ((line) => void process.stderr.write(`xenstored: ${line}\n`));
    // DIR/<domid> is bound while the INTRODUCE is handled: the file exists once dom0 sees OK, and
    // a socket that cannot be bound fails that INTRODUCE, not the daemon.
    if (opts.guestDir) {
      this.xs.setUpDomain = (domid) => (domid === 0 ? undefined : this.openGuestServer(domid));
      this.daemon.afterBatch = () => this.syncGuestServers();
    }
    this.main = createServer((s) => this.attach(s, this.xs.connectSocket()));
  }

  listen(): Promise<void> {
    const tooLong = socketPathTooLong(this.opts.socketPath);
    if (tooLong) return Promise.reject(new Error(tooLong));
    try {
      unlinkSync(this.opts.socketPath);
    } catch {
      /* not there */
    }
    if (this.opts.guestDir) mkdirSync(this.opts.guestDir, { recursive: true });
    return new Promise((resolve, reject) => {
      this.main.once('error', reject);
      this.main.listen(this.opts.socketPath, () => resolve());
    });
  }

  async close(): Promise<void> {
    for (const p of this.peers.values()) p.socket.destroy();
    for (const g of this.guestServers.values()) this.closeGuestServer(g);
    this.guestServers.clear();
    await new Promise<void>((r) => this.main.close(() => r()));
  }

  /** `held`: what the guest left in its ring while unmapped, read with its next kick. */
  private attach(socket: Socket, conn: number, held?: Buffer): void {
    let out: Uint8Array[] = [];
    let outBytes = 0;
    // Replies queued or in Node's write buffer, not yet taken by the kernel: C's nboutstanding
    // for a guest's ring. Watch events do not count (as in C).
    let outReplies = 0;
    let queuedReplies = 0;
    const guest = this.xs.connections.get(conn)?.kind === 'domain';
    const domid = guest ? this.xs.connections.get(conn)!.domid : undefined;
    const quota = this.xs.quotas.outstanding;
    // Profile c throttles unprivileged guests' connections, as it does their rings (domain-ring.ts).
    const throttles = guest && this.xs.profile === 'c' && quota > 0;
    // Profile ocaml bounds every connection's output as Xb does: quota-maxoutstanding replies not
    // yet taken stop its input; the daemon bounds its watch events (xb-watch-events.ts), told
    // here when the kernel took them.
    const ocaml = this.xs.profile === 'ocaml';
    let queuedEvents = 0;
    const resume = (): void => {
      if (wire.paused && !wire.throttledNow()) {
        wire.resume();
        if (!wire.paused) socket.resume();
      }
    };
    let wakeArmed = false;
    // Output stays in the connection's out list (C's) until the kernel takes it: a guest's is
    // charged to its domain (XSA-326), so an event that would reach the hard memory quota is
    // dropped, and an event identical to one still held is dropped (C's send_event()), so a peer
    // that never reads its socket cannot make the daemon hoard events in Node's write buffer.
    // Told to the instance that queued it (a live update swaps it).
    let charged: (Uint8Array | number)[] = [];
    const write = (m: XsMessage): boolean => {
      if (!this.xs.outputQueued(conn, m)) return false;
      const b = encodeMessage(m);
      out.push(b);
      outBytes += b.length;
      charged.push(this.xs.outputRecord(m));
      if (m.type !== XsdSockmsgType.XS_WATCH_EVENT) queuedReplies++;
      else queuedEvents++;
      return true;
    };
    const flush = (): void => {
      if (out.length === 0) return;
      const replies = queuedReplies;
      outReplies += replies;
      queuedReplies = 0;
      const events = queuedEvents;
      queuedEvents = 0;
      const xs = this.xs;
      const done = charged;
      charged = [];
      const bytes = out.length === 1 ? out[0] : Buffer.concat(out);
      const done_ = (): void => {
        for (const r of done) xs.outputDone(conn, r);
        outReplies -= replies;
        wire.eventsTaken(events);
        resume();
      };
      // A peer that does not keep up (a guest that never reads) has what waits for it held as a
      // latin1 string, which net.Socket queues as it is, in V8's heap: once the peer is gone and
      // collected, V8 gives those pages back to the OS, where malloc'd buffers freed in the middle
      // of glibc's heap would stay in the daemon's RSS.
      if (socket.writableNeedDrain) socket.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1'), 'latin1', done_);
      else socket.write(bytes, done_);
      out = [];
      outBytes = 0;
    };
    const wire = new XsWireConnection(this.daemon, conn, {
      send: write,
      flush,
      countsTaken: true,
      unblocked: resume,
      ended: (why) => {
        if (this.peers.get(conn) === peer) this.peers.delete(conn);
        // A protocol violation drops the socket once the replies before it are written (C
        // xenstored frees the connection). A released or dead domain's client is not hung up
        // on: like an unmapped ring, its socket just goes silent until the client closes it.
        if (why === 'violation') {
          this.lost(conn);
          socket.end(() => socket.destroy());
        } else if (domid !== undefined && !socket.destroyed) {
          // Its ring page stays mapped by the guest: served again if the domain gets a new connection.
          this.unmapped.set(domid, { socket, bytes: Buffer.alloc(0) });
        }
      },
      throttled: ocaml
        ? () => {
          // Xb.can_input: room for one more reply, and no event of its own still held back.
          const full = (quota > 0 && outReplies + queuedReplies >= quota) || this.daemon.inputHeld(conn);
          if (full) socket.pause();
          return full;
        }
        : guest
        ? () => {
          let full = throttles && outReplies + queuedReplies >= quota && !(this.xs.connections.get(conn)?.privileged ?? false);
          // The memory quota, the write-rate limiter and the seed's limit (core.readBlockedFor).
          const wait = full ? 0 : this.xs.readBlockedFor(conn);
          if (wait !== 0) {
            full = true;
            const again = (): void => {
              wakeArmed = false;
              resume();
            };
            if (wait === Infinity) this.daemon.stalled.add(again);
            else if (!wakeArmed) wakeArmed = this.daemon.after(wait, again);
          }
          // Stop reading the socket too: what the client writes meanwhile waits in its kernel buffer.
          if (full) socket.pause();
          return full;
        }
        : undefined,
    }, { socket: this.xs.connections.get(conn)?.kind === 'socket' });
    const queuedBytes = (): { queuedBytes: number; throttled: boolean } => ({ queuedBytes: outBytes + socket.writableLength, throttled: wire.paused });
    this.queued.set(conn, queuedBytes);
    const peer: Peer = { socket, wire };
    this.peers.set(conn, peer);
    this.opts.trace?.event(`CREATE connection ${TraceFile.connName(conn)}`);
    socket.setNoDelay?.(true);
    socket.on('data', (data) => {
      this.opts.clients?.read();
      if (this.peers.get(conn) === peer) {
        // oxenstored reads what the ring held along with the guest's next kick, not before.
        if (held !== undefined) {
          data = Buffer.concat([held, data]);
          held = undefined;
        }
        return void wire.received(data);
      }
      // What a guest writes into an unmapped ring stays there, up to the ring's size.
      const u = domid !== undefined ? this.unmapped.get(domid) : undefined;
      if (u?.socket === socket) u.bytes = Buffer.concat([u.bytes, data]).subarray(0, XENSTORE_RING_SIZE);
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.opts.clients?.clientGone();
      if (domid !== undefined && this.unmapped.get(domid)?.socket === socket) this.unmapped.delete(domid);
      wire.detach();
      if (this.queued.get(conn) === queuedBytes) this.queued.delete(conn);
      if (this.peers.get(conn) !== peer) return;
      this.peers.delete(conn);
      this.lost(conn);
    });
  }

  /** The client is gone (socket closed, or dropped for a protocol violation). */
  private lost(conn: number): void {
    this.opts.trace?.event(`DESTROY connection ${TraceFile.connName(conn)}`);
    // A guest socket closing is not the domain going away: its connection stays, but the
    // client's watches and transactions go with the client.
    if (this.xs.connections.get(conn)?.kind === 'socket') this.xs.disconnect(conn);
    else this.xs.resetConnection(conn);
  }

  /** Opens DIR/<domid> for newly introduced domains and removes it for released ones. */
  private seenEpoch = -1;

  private syncGuestServers(): void {
    const dir = this.opts.guestDir;
    if (!dir || this.xs.domainEpoch === this.seenEpoch) return;
    this.seenEpoch = this.xs.domainEpoch;
    for (const [domid, d] of this.xs.domains) {
      if (domid === 0 || !d.introduced || d.conn === undefined) continue;
      let g = this.guestServers.get(domid);
      // oxenstored can give a domain a new connection without a successful INTRODUCE (it answers
      // EINVAL once dom0 was released): its socket appears as for an INTRODUCE.
      if (!g) {
        if (this.openGuestServer(domid) !== undefined) continue;
        g = this.guestServers.get(domid)!;
      }
      if (g.conn === d.conn) continue;
      g.conn = d.conn;
      this.reattach(domid, d.conn);
    }
    for (const [domid, g] of this.guestServers) {
      if (g.conn === undefined || !this.xs.connections.has(g.conn)) {
        this.closeGuestServer(g);
        this.guestServers.delete(domid);
      }
    }
  }

  /**
   * A domain's new connection serves the client it had before, as its ring page is served again.
   * C's INTRODUCE resets the ring's indexes, so what the guest wrote meanwhile is gone;
   * oxenstored reads it.
   */
  private reattach(domid: number, conn: number): void {
    const old = this.unmapped.get(domid);
    this.unmapped.delete(domid);
    if (!old || old.socket.destroyed) return;
    for (const ev of ['data', 'close', 'error']) old.socket.removeAllListeners(ev);
    this.attach(old.socket, conn, this.xs.b.ringKeepsUnmappedInput && old.bytes.length ? old.bytes : undefined);
  }

  /** Binds DIR/<domid> for a domain being introduced; the errno INTRODUCE answers if it cannot. */
  private openGuestServer(domid: number): XsError | undefined {
    const path = join(this.opts.guestDir!, String(domid));
    // A listener left from the domain's previous connection (RELEASE and INTRODUCE in one batch).
    const old = this.guestServers.get(domid);
    if (old) {
      this.closeGuestServer(old);
      this.guestServers.delete(domid);
    }
    const failed = (code: string, why: string): XsError => {
      this.report(`domain ${domid}: cannot listen on ${path}: ${why} (${code}); INTRODUCE fails`);
      return asXsError(code);
    };
    const tooLong = socketPathTooLong(path);
    if (tooLong) return failed('ENAMETOOLONG', tooLong);
    try {
      if (!statSync(dirname(path)).isDirectory()) return failed('ENOTDIR', 'not a directory');
    } catch (e) {
      return failed((e as NodeJS.ErrnoException).code ?? 'EIO', 'its directory is gone');
    }
    try {
      // Only a socket is replaced (one left by an earlier daemon); anything else is not ours.
      if (!lstatSync(path).isSocket()) return failed('EADDRINUSE', 'the path is taken by something that is not a socket');
      unlinkSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return failed((e as NodeJS.ErrnoException).code ?? 'EIO', (e as Error).message);
    }
    const g: GuestServer = { server: createServer((s) => {
      if (g.conn === undefined || !this.xs.connections.has(g.conn)) return void s.destroy();
      // One client at a time plays the domain's side of its ring.
      this.peers.get(g.conn)?.socket.destroy();
      this.attach(s, g.conn);
    }), path, conn: undefined };
    // bind() and listen() happen inside listen(); their error is only emitted on the next tick.
    let code = 'EIO';
    g.server.on('error', (e: NodeJS.ErrnoException) => {
      code = e.code ?? code;
      if (g.server.listening) this.report(`domain ${domid}: socket ${path}: ${e.message}`);
    });
    g.server.listen(path);
    if (!g.server.listening) return failed(code, 'bind or listen failed');
    this.guestServers.set(domid, g);
    return undefined;
  }

  private closeGuestServer(g: GuestServer): void {
    g.server.close();
    try {
      unlinkSync(g.path);
    } catch {
      /* gone */
    }
  }
}
