// A small, fast XenStore socket client that fills a server with nodes: XS_WRITE requests
// pipelined over several connections (a fixed number in flight on each), so loading a million
// nodes is bound by the server, not by round trips.
//
// Node i is written at BASE/a<i / FANOUT>/b<i % FANOUT> with the value "v<i>", so no directory
// has more than FANOUT children.
import { createConnection, type Socket } from 'node:net';
import { XSD_SOCKMSG_SIZE, XsdSockmsgType } from '../../hypervisor/public/io/xs_wire.ts';

export interface LoadOptions {
  readonly nodes: number;
  /** Parallel connections. */
  readonly conns: number;
  /** Requests in flight per connection. */
  readonly inflight: number;
  readonly base: string;
  readonly fanout: number;
  /** Stop issuing writes at this Date.now() value (the load is then incomplete). */
  readonly deadline?: number;
  /** Called about once a second with the number of nodes written so far. */
  readonly progress?: (done: number) => void;
}

export interface LoadResult {
  /** Nodes written (all of o.nodes unless the deadline cut the load short). */
  readonly nodes: number;
  readonly seconds: number;
  readonly complete: boolean;
}

export function nodePath(o: Pick<LoadOptions, 'base' | 'fanout'>, i: number): string {
  return `${o.base}/a${Math.floor(i / o.fanout)}/b${i % o.fanout}`;
}

/**
 * Opens a Unix socket connection. C xenstored listens with a backlog of 1, so a burst of connects
 * gets EAGAIN: retry for a while.
 */
export async function connectUnix(socketPath: string, timeoutMs = 10000): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const sock = createConnection(socketPath);
        sock.once('connect', () => {
          sock.removeAllListeners('error');
          resolve(sock);
        });
        sock.once('error', reject);
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code !== 'EAGAIN' && code !== 'ECONNREFUSED') || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

/** Writes o.nodes nodes; rejects on the first error reply or lost connection. */
export async function loadNodes(socketPath: string, o: LoadOptions): Promise<LoadResult> {
  const sockets: Socket[] = [];
  try {
    for (let c = 0; c < Math.max(1, Math.min(o.conns, o.nodes)); c++) sockets.push(await connectUnix(socketPath));
  } catch (e) {
    for (const s of sockets) s.destroy();
    throw new Error(`loader: cannot connect to ${socketPath}: ${(e as Error).message}`);
  }
  const t0 = process.hrtime.bigint();
  let next = 0;
  let done = 0;
  let end = o.nodes; // lowered to `next` when the deadline passes
  let settled = false;

  return new Promise<LoadResult>((resolve, reject) => {
    const ticker = setInterval(() => {
      if (o.deadline !== undefined && Date.now() >= o.deadline) end = Math.min(end, next);
      o.progress?.(done);
    }, 1000);
    const fail = (e: Error): void => {
      if (settled) return;
      settled = true;
      clearInterval(ticker);
      for (const s of sockets) s.destroy();
      reject(e);
    };

    // Encodes up to `count` further requests into one buffer (one syscall per batch).
    const encodeBatch = (count: number): { buf: Buffer; count: number } | undefined => {
      const ids: number[] = [];
      const paths: string[] = [];
      const values: string[] = [];
      let size = 0;
      while (ids.length < count && next < end) {
        const id = next++;
        const path = nodePath(o, id);
        const value = `v${id}`;
        ids.push(id);
        paths.push(path);
        values.push(value);
        size += XSD_SOCKMSG_SIZE + path.length + 1 + value.length;
      }
      if (ids.length === 0) return undefined;
      const buf = Buffer.allocUnsafe(size);
      let at = 0;
      for (let k = 0; k < ids.length; k++) {
        const len = paths[k].length + 1 + values[k].length;
        buf.writeUInt32LE(XsdSockmsgType.XS_WRITE, at);
        buf.writeUInt32LE(ids[k] >>> 0, at + 4);
        buf.writeUInt32LE(0, at + 8);
        buf.writeUInt32LE(len, at + 12);
        at += XSD_SOCKMSG_SIZE;
        at += buf.write(paths[k], at, 'latin1');
        buf[at++] = 0;
        at += buf.write(values[k], at, 'latin1');
      }
      return { buf, count: ids.length };
    };

    let open = sockets.length;
    for (const sock of sockets) {
      let inFlight = 0;
      let rest: Buffer | undefined;
      const send = (count: number): void => {
        const batch = encodeBatch(count);
        if (!batch) return;
        inFlight += batch.count;
        sock.write(batch.buf);
      };
      const finished = (): void => {
        sock.end();
        if (--open === 0 && !settled) {
          settled = true;
          clearInterval(ticker);
          resolve({ nodes: done, seconds: Number(process.hrtime.bigint() - t0) / 1e9, complete: done === o.nodes });
        }
      };
      sock.on('data', (chunk: Buffer) => {
        const buf = rest ? Buffer.concat([rest, chunk]) : chunk;
        let at = 0;
        let replies = 0;
        while (buf.length - at >= XSD_SOCKMSG_SIZE) {
          const len = buf.readUInt32LE(at + 12);
          if (buf.length - at < XSD_SOCKMSG_SIZE + len) break;
          const type = buf.readUInt32LE(at);
          if (type !== XsdSockmsgType.XS_WRITE) {
            const id = buf.readUInt32LE(at + 4);
            const payload = buf.subarray(at + XSD_SOCKMSG_SIZE, at + XSD_SOCKMSG_SIZE + len);
            fail(new Error(`write of ${nodePath(o, id)} answered with type ${type}: ` +
              `${payload.toString('latin1').replace(/\0/g, ' ').trim()}`));
            return;
          }
          at += XSD_SOCKMSG_SIZE + len;
          replies++;
        }
        rest = at < buf.length ? Buffer.from(buf.subarray(at)) : undefined;
        inFlight -= replies;
        done += replies;
        // Refill the pipeline: as many new requests as replies received.
        if (next < end) send(replies);
        if (inFlight === 0 && next >= end) finished();
      });
      sock.on('error', (e) => fail(new Error(`loader connection to ${socketPath}: ${e.message}`)));
      sock.on('close', () => {
        if (inFlight > 0 || next < end) fail(new Error(`server closed a loader connection after ${done} writes`));
      });
      send(o.inflight);
      if (inFlight === 0) finished();
    }
  });
}
