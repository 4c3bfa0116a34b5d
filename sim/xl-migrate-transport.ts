// What carries xl migrate's two byte streams. As xl does it, the sender runs a command whose
// stdin/stdout reach the receiver: by default `ssh HOST xensim xl migrate-receive`, with -s
// another ssh command, and with -s '' HOST is the whole command. xensim's shortcuts: a HOST that is
// a Unix socket here (another `xensim up`'s control socket) is reached directly - the receiving
// host sees a control-socket connection whose first request is `migrate-receive`, after whose
// reply line the connection carries the raw streams - and `tcp://ADDR:PORT` (no ssh host can be
// spelt so) connects to a host's `--migrate-listen` port, where the raw streams start at once.
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import net from 'node:net';
import { resolve as resolvePath } from 'node:path';
import { MigratePipe, type PipeWriter, streamWriter } from './migrate-pipe.ts';
import { widenSendBuffer } from './socket-buffer.ts';
import { XL_CONTROL_LINE_MAX, XlError, type XlResponse } from './xl-control-client.ts';

/** The remote command xl's default rune runs (xl runs `xl migrate-receive`). */
export const MIGRATE_RECEIVE_COMMAND = 'xensim xl migrate-receive';

/** xl's rune: `exec SSH HOST xensim xl migrate-receive`, or HOST itself when -s is empty. */
export function migrateRune(host: string, sshCommand = 'ssh'): string {
  return sshCommand === '' ? host : `exec ${sshCommand} ${host} ${MIGRATE_RECEIVE_COMMAND}`;
}

function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}

/**
 * Opens a control-socket connection and asks for `migrate-receive`: resolves with the socket and
 * the bytes that came after the reply line (the receiver's banner may already be there).
 */
export function connectMigrateReceive(path: string): Promise<{ socket: net.Socket; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(path);
    let buf = Buffer.alloc(0);
    const fail = (e: Error): void => {
      socket.destroy();
      reject(e);
    };
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(0x0a);
      if (nl < 0) {
        if (buf.length > XL_CONTROL_LINE_MAX) fail(new XlError(`${path}: reply too long`));
        return;
      }
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      let res: XlResponse;
      try {
        res = JSON.parse(buf.subarray(0, nl).toString('utf8')) as XlResponse;
      } catch {
        fail(new XlError(`${path}: not an xensim control socket (bad reply)`));
        return;
      }
      if (!res.ok) {
        fail(new XlError(res.error));
        return;
      }
      socket.pause();
      resolve({ socket, rest: buf.subarray(nl + 1) });
    };
    const onError = (e: Error): void => fail(new XlError(`cannot reach a host at ${path}: ${e.message}`));
    const onClose = (): void => fail(new XlError(`${path}: the host closed the connection`));
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
    socket.once('connect', () => socket.write(`${JSON.stringify({ id: 1, verb: 'migrate-receive', args: {} })}\n`));
  });
}

/** `tcp://ADDR:PORT` or `tcp://[IPV6]:PORT`, else undefined. */
export function parseTcpHost(host: string): { host: string; port: number } | undefined {
  const m = /^tcp:\/\/(?:\[([0-9a-fA-F:.]+)\]|([^:/[\]]+)):(\d+)\/?$/.exec(host);
  if (!m || Number(m[3]) > 65535) return undefined;
  return { host: m[1] ?? m[2], port: Number(m[3]) };
}

/** Connects to a `--migrate-listen` port: the receiver's banner is the first thing on it. */
export function connectTcp(url: string, to: { host: string; port: number }): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(to);
    socket.once('error', (e) => reject(new XlError(`cannot reach a migration listener at ${url}: ${e.message}`)));
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      socket.pause();
      resolve(socket);
    });
  });
}

/**
 * A MigratePipe over a connected socket (its remaining bytes first); `wrap` may stand between the
 * pipe and the socket's writer (the bench keeps a copy of what is sent). A unix socket's send
 * buffer is widened (sim/socket-buffer.ts): the sender's side of a stream.
 */
export function socketPipe(socket: net.Socket, rest: Uint8Array, name: string, wrap: (w: PipeWriter) => PipeWriter = (w) => w): MigratePipe {
  widenSendBuffer(socket);
  const pipe = new MigratePipe(wrap(streamWriter(socket)), name);
  if (rest.length) pipe.push(rest);
  socket.on('data', (c: Buffer) => pipe.push(c));
  socket.once('end', () => pipe.end());
  socket.once('close', () => pipe.end());
  socket.on('error', (e) => pipe.end(e));
  socket.resume();
  return pipe;
}

/** What one read(2) of a lent-reads socket may take: as much as a socket's buffers hold, and then some. */
const LENT_READ_BYTES = 1024 * 1024;

/**
 * A MigratePipe over an inherited socket (a socket pair a parent process made, as the bench's
 * hosts are joined): its reads go into buffers of the pipe's own that the pipe lends to its
 * reader and takes back once read past - one read(2) takes all the kernel holds, where a socket's
 * 'data' events give a new 64 KiB Buffer each (a quarter of the reads, none of the garbage).
 */
export function fdPipe(fd: number, name: string): { socket: net.Socket; pipe: MigratePipe } {
  return lentReadPipe((onread) => new net.Socket({ fd, readable: true, writable: true, onread } as net.SocketConstructorOpts), name);
}

/** A lent-reads MigratePipe (fdPipe) over a TCP connection this side opens. */
export function tcpLentPipe(to: { host: string; port: number }, name: string): { socket: net.Socket; pipe: MigratePipe } {
  return lentReadPipe((onread) => net.connect({ ...to, onread }), name);
}

type OnRead = { buffer: () => Uint8Array; callback: (n: number, buf: Uint8Array) => boolean };

/** Node's onread for reads lent to `pipe()`: each read goes into a buffer of ours, given back once read past. */
function lentReads(pipe: () => MigratePipe): OnRead {
  const free: Buffer[] = [];
  return {
    buffer: () => free.pop() ?? Buffer.allocUnsafe(LENT_READ_BYTES),
    callback: (n: number, buf: Uint8Array) => {
      pipe().push(buf.subarray(0, n), () => free.push(buf as Buffer));
      return true;
    },
  };
}

function lentReadPipe(open: (onread: OnRead) => net.Socket, name: string): { socket: net.Socket; pipe: MigratePipe } {
  // Made once the socket is (its writer writes to it); nothing is read before this function returns.
  const late: { pipe?: MigratePipe } = {};
  // Node's Socket takes onread as net.connect() does (its types name it for connect() only).
  const socket = open(lentReads(() => late.pipe!));
  const pipe = (late.pipe = new MigratePipe(streamWriter(socket), name));
  socket.once('end', () => pipe.end());
  socket.once('close', () => pipe.end());
  socket.on('error', (e) => pipe.end(e));
  return { socket, pipe };
}

/**
 * Turns a socket that is already open and reading - a connection a server accepted, whose first
 * bytes may have been a request - into a lent-reads one (fdPipe) from its next read on: what it
 * reads goes to `pipe` and no longer to its 'data' listeners (which must have taken everything
 * before; 'end', 'close' and its idle timeout stay as they were). A receiving host takes a
 * migration stream this way: 'data' events would give a new 64 KiB Buffer a read, twice the
 * receiver's CPU for a GiB. Node offers onread only to a socket it makes, so this sets the same
 * fields Node's constructor sets for it (its internal symbols, found by name); false, and nothing
 * changed, where this Node has not got them - the 'data' listeners then go on as before.
 */
export function lendReads(socket: net.Socket, pipe: MigratePipe): boolean {
  const field = (name: string): symbol | undefined => Object.getOwnPropertySymbols(socket).find((k) => k.description === name);
  const kBuffer = field('kBuffer');
  const kBufferCb = field('kBufferCb');
  const kBufferGen = field('kBufferGen');
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void } })._handle;
  const fields = socket as unknown as Record<symbol, unknown>;
  if (!kBuffer || !kBufferCb || !kBufferGen || typeof handle?.useUserBuffer !== 'function' || fields[kBuffer] !== null) return false;
  const onread = lentReads(() => pipe);
  const first = onread.buffer();
  fields[kBufferGen] = onread.buffer;
  fields[kBufferCb] = onread.callback;
  fields[kBuffer] = first;
  handle.useUserBuffer(first);
  return true;
}

/**
 * The sender's channel to the receiver: HOST's control socket directly (no -s and HOST a socket
 * here), else xl's rune in `sh -c` (its stderr lines go to `log`, as xl passes them through).
 */
export async function openMigrateChannel(host: string, opts: { sshCommand?: string; cwd?: string; log: (line: string) => void }): Promise<MigratePipe> {
  const cwd = opts.cwd ?? process.cwd();
  const tcp = opts.sshCommand === undefined ? parseTcpHost(host) : undefined;
  if (tcp) return socketPipe(await connectTcp(host, tcp), new Uint8Array(0), `migration stream to ${host}`);
  if (opts.sshCommand === undefined && host.startsWith('tcp://')) throw new XlError(`${host}: expected tcp://ADDR:PORT`);
  const path = resolvePath(cwd, host);
  if (opts.sshCommand === undefined && isSocket(path)) {
    const { socket, rest } = await connectMigrateReceive(path);
    return socketPipe(socket, rest, `migration stream to ${path}`);
  }
  const rune = migrateRune(host, opts.sshCommand);
  const child = spawn('sh', ['-c', rune], { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  // The command's stdin is a unix socket pair: a record-sized send buffer, as socketPipe's.
  widenSendBuffer(child.stdin as net.Socket);
  const pipe = new MigratePipe(streamWriter(child.stdin), `migration receiver (${rune})`);
  child.stdin.on('error', () => undefined);
  child.stdout.on('data', (c: Buffer) => pipe.push(c));
  let err = '';
  child.stderr.on('data', (c: Buffer) => {
    err += c.toString('utf8');
    const parts = err.split('\n');
    err = parts.pop()!;
    for (const l of parts) if (l.trim()) opts.log(l);
  });
  child.once('error', (e) => pipe.end(e));
  child.once('close', (code) => {
    if (err.trim()) opts.log(err);
    pipe.end(code ? new Error(`${rune}: exited with status ${code}`) : undefined);
  });
  return pipe;
}
