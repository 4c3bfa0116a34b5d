// Unix-socket transport: moves bytes between sockets and the core, nothing more.
// Dom0 tools connect to the main socket; with a guest directory, DIR/<domid> appears once a
// domain is INTRODUCEd and carries that domain's (unprivileged) connection.
import { mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { encodeMessage, XsdSockmsgType } from '../../../hypervisor/public/io/xs_wire.ts';
import { Xenstored, type Outcome, type XenstoredOptions } from './core.ts';
import { MessageReader } from './message-reader.ts';
import { TraceFile } from './trace.ts';

export interface ServerOptions extends XenstoredOptions {
  readonly socketPath: string;
  readonly guestDir?: string;
  readonly trace?: TraceFile;
}

interface Peer {
  readonly socket: Socket;
  readonly reader: MessageReader;
  /** Bytes produced for this peer by the input being handled. */
  out: Uint8Array[];
}

export class XenstoredServer {
  readonly xs: Xenstored;
  private readonly main: Server;
  private readonly peers = new Map<number, Peer>();
  /** Guest-directory listeners by domid, with the connection id each one serves. */
  private readonly guestServers = new Map<number, { server: Server; conn: number; path: string }>();

  constructor(private readonly opts: ServerOptions) {
    this.xs = new Xenstored(opts);
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

  private attach(socket: Socket, conn: number): void {
    const reader = new MessageReader(this.xs.profile);
    this.peers.set(conn, { socket, reader, out: [] });
    this.opts.trace?.event(`CREATE connection ${TraceFile.connName(conn)}`);
    socket.setNoDelay?.(true);
    socket.on('data', (data) => this.input(conn, data));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      if (this.peers.get(conn)?.socket !== socket) return;
      this.peers.delete(conn);
      this.opts.trace?.event(`DESTROY connection ${TraceFile.connName(conn)}`);
      // A guest socket closing is not the domain going away: its connection stays, but the
      // client's watches and transactions go with the client.
      if (this.xs.connections.get(conn)?.kind === 'socket') this.xs.disconnect(conn);
      else this.xs.resetConnection(conn);
    });
  }

  private input(conn: number, data: Buffer): void {
    const peer = this.peers.get(conn);
    if (!peer) return;
    const touched: Peer[] = [];
    for (const item of peer.reader.push(data)) {
      if (item.kind === 'violation') {
        peer.socket.destroy();
        return;
      }
      if (item.kind === 'too-big') {
        const msg = { type: XsdSockmsgType.XS_ERROR, req_id: item.req_id, tx_id: item.tx_id, payload: Buffer.from('E2BIG\0') };
        this.queue(touched, conn, encodeMessage(msg));
        continue;
      }
      this.opts.trace?.io(conn, 'IN', item.msg);
      this.deliver(touched, this.xs.handle(conn, item.msg));
    }
    // Bind DIR/<domid> before the INTRODUCE reply leaves, so the file exists once dom0 sees OK.
    if (this.opts.guestDir) this.syncGuestServers();
    // One write per socket per batch of input.
    for (const p of touched) {
      p.socket.write(p.out.length === 1 ? p.out[0] : Buffer.concat(p.out));
      p.out = [];
    }
  }

  private queue(touched: Peer[], conn: number, bytes: Uint8Array): void {
    const peer = this.peers.get(conn);
    if (!peer) return;
    if (peer.out.length === 0) touched.push(peer);
    peer.out.push(bytes);
  }

  private deliver(touched: Peer[], outcome: Outcome): void {
    for (const d of outcome.deliveries) {
      this.opts.trace?.io(d.conn, 'OUT', d.msg);
      this.queue(touched, d.conn, encodeMessage(d.msg));
    }
    for (const c of outcome.closed) {
      // A released or dead domain's client is not hung up on: like an unmapped ring, its socket
      // just goes silent (input ignored) until the client closes it.
      const peer = this.peers.get(c);
      if (peer) {
        if (peer.out.length) peer.socket.write(Buffer.concat(peer.out));
        peer.out = [];
        this.peers.delete(c);
      }
    }
  }

  /** Opens DIR/<domid> for newly introduced domains and removes it for released ones. */
  private syncGuestServers(): void {
    const dir = this.opts.guestDir;
    if (!dir) return;
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
