// `xensim up --migrate-listen ADDR:PORT`: a TCP listener whose every connection is `xl
// migrate-receive` on this host - what `nc -l PORT | xl migrate-receive` (with its replies going
// back) gives a real dom0. xl itself has no listener; `xensim xl migrate DOM tcp://ADDR:PORT`
// (or any command that carries the bytes, `-s '' DOM 'nc ADDR PORT'`) is the sending side.
// Whoever reaches the port can create a domain here: it binds loopback only unless told
// otherwise, takes one migration at a time, and a peer that stalls or sends garbage loses its
// connection with the reason, while the host goes on.
import net from 'node:net';
import { MigratePipe, streamWriter, type PipeWriter } from './migrate-pipe.ts';
import { MigrateError } from './xl-migrate.ts';
import { lendReads } from './xl-migrate-transport.ts';
import type { XlControl } from './xl-control.ts';

/** A connection that moves no byte either way for this long is dropped (its receive fails). */
export const MIGRATE_IDLE_MS = 60_000;

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** Loopback: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return net.isIPv4(host) && host.split('.')[0] === '127';
}

/**
 * `ADDR:PORT`, `[IPV6]:PORT` or `PORT` (on 127.0.0.1); port 0 lets the system pick. A
 * non-loopback address only with `allowRemote`: the stream is unauthenticated.
 */
export function parseListenAddress(spec: string, allowRemote = false): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d+)$/.exec(spec) ?? /^()()(\d+)$/.exec(spec);
  if (!m) throw new Error(`--migrate-listen ${spec}: expected ADDR:PORT, [IPV6]:PORT or PORT`);
  const host = m[1] || m[2] || '127.0.0.1';
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`--migrate-listen ${spec}: port ${port} out of range`);
  if (!allowRemote && !isLoopback(host)) {
    throw new Error(`--migrate-listen ${spec}: ${host} is not a loopback address; anyone reaching it could create domains here (--migrate-allow-remote to mean it)`);
  }
  return { host, port };
}

/** The `tcp://ADDR:PORT` a sender names. */
export const tcpUrl = (a: ListenAddress): string => `tcp://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;

export class MigrateListener {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  /** The connection whose migration is being received (one at a time). */
  private active: net.Socket | undefined;

  constructor(private readonly want: ListenAddress, private readonly control: XlControl, private readonly log: (line: string) => void, private readonly idleMs = MIGRATE_IDLE_MS) {
    // Half-open: a peer that has sent all it will still hears how its migration ended.
    this.server = net.createServer({ allowHalfOpen: true }, (s) => this.serve(s));
    this.server.maxConnections = 8;
  }

  /** Binds; resolves with the address really bound (the port picked for 0). */
  async listen(): Promise<ListenAddress> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.want.host, port: this.want.port }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const a = this.server.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  private serve(socket: net.Socket): void {
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    if (this.active) {
      this.log(`migrate-listen: ${peer}: refused, a migration is being received`);
      socket.end('xensim migrate-receive: busy: another migration is being received here\n');
      return;
    }
    this.active = socket;
    // The receiver's own close is held back so the reason can follow what it wrote.
    const out = streamWriter(socket);
    const held: PipeWriter = { write: (b, release) => out.write(b, release), drain: () => out.drain(), end: () => undefined };
    const pipe = new MigratePipe(held, `migration stream from ${peer}`);
    // Reads lent to the pipe (the 'data' listener only where this Node cannot: lendReads).
    if (!lendReads(socket, pipe)) socket.on('data', (c: Buffer) => pipe.push(c));
    socket.once('end', () => pipe.end());
    socket.once('close', () => pipe.end());
    socket.setTimeout(this.idleMs, () => {
      pipe.end(new Error(`no data for ${this.idleMs / 1000} s`));
      socket.destroy();
    });
    this.log(`migrate-listen: ${peer}: receiving`);
    void this.control.migrateReceive(pipe).then(
      (r) => {
        for (const l of r.log) this.log(l);
        this.log(`migrate-receive: domain ${r.domid} running (${r.pages} pages, ${r.pagesResent} resent, memory sha256 ${r.hash})`);
        socket.end();
      },
      (e: unknown) => {
        for (const l of e instanceof MigrateError ? e.log : []) this.log(l);
        const why = e instanceof Error ? e.message : String(e);
        this.log(`migrate-receive: ${peer}: ${why}`);
        // A person at the other end (nc, telnet) reads why; an xl sender sees a closed stream.
        socket.end(`\nxensim migrate-receive: ${why}\n`);
      },
    ).finally(() => {
      socket.setTimeout(0);
      if (this.active === socket) this.active = undefined;
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
