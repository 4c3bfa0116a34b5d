// Unix-socket transport: moves bytes between sockets and the core, nothing more.
// Dom0 tools connect to the main socket; with a guest directory, DIR/<domid> appears once a
// domain is INTRODUCEd and carries that domain's (unprivileged) connection.
import { mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { type DaemonOptions, XenstoredDaemon } from './daemon.ts';
import type { Xenstored } from './core.ts';
import { MessageReader } from './message-reader.ts';
import { TraceFile } from './trace.ts';
import { XENSTORE_RING_SIZE } from '../../../hypervisor/public/io/xs_wire.ts';

export interface ServerOptions extends DaemonOptions {
  readonly socketPath: string;
  readonly guestDir?: string;
}

interface Peer {
  readonly socket: Socket;
  readonly reader: MessageReader;
  /** Bytes produced for this peer by the input being handled. */
  out: Uint8Array[];
}

export class XenstoredServer {
  readonly daemon: XenstoredDaemon;
  readonly xs: Xenstored;
  private readonly main: Server;
  private readonly peers = new Map<number, Peer>();
  /** Guest-directory listeners by domid, with the connection id each one serves. */
  private readonly guestServers = new Map<number, { server: Server; conn: number; path: string }>();

  constructor(private readonly opts: ServerOptions, daemon?: XenstoredDaemon) {
    this.daemon = daemon ?? new XenstoredDaemon(opts);
    this.xs = this.daemon.xs;
    // Bind DIR/<domid> before the INTRODUCE reply leaves, so the file exists once dom0 sees OK.
    if (opts.guestDir) this.daemon.afterBatch = () => this.syncGuestServers();
    this.main = createServer((s) => this.attach(s, this.xs.connectSocket()));
  }

  listen(): Promise<void> {
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

  /** `held`: what the guest left in its ring while unmapped, read along with its next kick. */
  private attach(socket: Socket, conn: number, held?: Buffer): void {
    // A guest-directory socket stands for the domain's ring, and reads as the ring does.
    const kind = this.xs.connections.get(conn)?.kind ?? 'socket';
    const domid = kind === 'domain' ? this.xs.connections.get(conn)!.domid : undefined;
    const peer: Peer = { socket, reader: new MessageReader(this.xs.profile, kind), out: [] };
    this.peers.set(conn, peer);
    this.daemon.attach(conn, {
      send: (bytes) => peer.out.push(bytes),
      flush: () => {
        if (peer.out.length === 0) return;
        socket.write(peer.out.length === 1 ? peer.out[0] : Buffer.concat(peer.out));
        peer.out = [];
      },
      // A released or dead domain's client is not hung up on: like an unmapped ring, its
      // socket just goes silent (input ignored) until the client closes it, or until the domain
      // gets a connection again (its ring page is mapped anew).
      ended: () => {
        if (this.peers.get(conn) !== peer) return;
        this.peers.delete(conn);
        if (domid !== undefined && !socket.destroyed) this.unmapped.set(domid, { socket, bytes: Buffer.alloc(0) });
      },
    });
    this.opts.trace?.event(`CREATE connection ${TraceFile.connName(conn)}`);
    socket.setNoDelay?.(true);
    socket.on('data', (data) => {
      if (this.peers.get(conn) !== peer) {
        // What a guest writes into an unmapped ring stays there, up to the ring's size.
        const held = domid !== undefined ? this.unmapped.get(domid) : undefined;
        if (held?.socket === socket) held.bytes = Buffer.concat([held.bytes, data]).subarray(0, XENSTORE_RING_SIZE);
        return;
      }
      if (held !== undefined) {
        data = Buffer.concat([held, data]);
        held = undefined;
      }
      const items = peer.reader.push(data);
      if (items.some((i) => i.kind === 'violation')) {
        // C xenstored drops a socket that announces an oversized message.
        socket.destroy();
        return;
      }
      this.daemon.input(conn, items);
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      if (this.peers.get(conn) !== peer) return;
      this.peers.delete(conn);
      this.daemon.detach(conn);
      this.opts.trace?.event(`DESTROY connection ${TraceFile.connName(conn)}`);
      // A guest socket closing is not the domain going away: its connection stays, but the
      // client's watches and transactions go with the client.
      if (this.xs.connections.get(conn)?.kind === 'socket') this.xs.disconnect(conn);
      else this.xs.resetConnection(conn);
    });
  }

  /** Opens DIR/<domid> for newly introduced domains and removes it for released ones. */
  private seenEpoch = -1;
  /** The silent client of each domain whose connection went away (see `ended`). */
  private readonly unmapped = new Map<number, { socket: Socket; bytes: Buffer }>();

  private syncGuestServers(): void {
    const dir = this.opts.guestDir;
    if (!dir || this.xs.domainEpoch === this.seenEpoch) return;
    this.seenEpoch = this.xs.domainEpoch;
    for (const [domid, d] of this.xs.domains) {
      if (domid === 0 || !d.introduced || d.conn === undefined) continue;
      const g = this.guestServers.get(domid);
      if (g && g.conn === d.conn) continue;
      if (g) this.closeGuestServer(g);
      const conn = d.conn;
      const path = join(dir, String(domid));
      try {
        unlinkSync(path);
      } catch {
        /* not there */
      }
      const server = createServer((s) => {
        // One client at a time plays the domain's side of its ring.
        const current = this.peers.get(conn);
        if (current) current.socket.destroy();
        this.attach(s, conn);
      });
      server.listen(path);
      this.guestServers.set(domid, { server, conn, path });
      // oxenstored can give a domain a new connection without a successful INTRODUCE (it
      // answers EINVAL once dom0 was released): the guest's ring is served again as it is.
      // (C's INTRODUCE resets the ring's indexes: what it held is gone; oxenstored reads it.)
      const old = this.unmapped.get(domid);
      this.unmapped.delete(domid);
      if (old && !old.socket.destroyed) {
        old.socket.removeAllListeners('data');
        old.socket.removeAllListeners('close');
        this.attach(old.socket, conn, this.xs.profile === 'ocaml' && old.bytes.length ? old.bytes : undefined);
      }
    }
    for (const [domid, g] of this.guestServers) {
      if (!this.xs.connections.has(g.conn)) {
        this.closeGuestServer(g);
        this.guestServers.delete(domid);
      }
    }
  }

  private closeGuestServer(g: { server: Server; path: string; conn: number }): void {
    g.server.close();
    try {
      unlinkSync(g.path);
    } catch {
      /* gone */
    }
  }
}
