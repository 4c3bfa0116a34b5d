// An in-process connection to dom0's xenstored for dom0's own components (the toolstack, the
// backend drivers): the same wire bytes a Unix-socket client sends, through the same connection
// layer, without a socket.
import { Duplex } from 'node:stream';
import { encodeMessage } from '../../../hypervisor/public/io/xs_wire.ts';
import { XsHandle } from '../../libs/store/xs.ts';
import { XsWireConnection } from './connection.ts';
import type { XenstoredDaemon } from './daemon.ts';

export interface LocalConnectionOptions {
  /** Keep this connection out of the trace (the simulator looking at the tree). */
  readonly untraced?: boolean;
  /** Told the connection's number in xenstored (the simulator's look at its watches). */
  readonly onConnection?: (conn: number) => void;
}

/**
 * A privileged connection as a byte stream: what is written to it is read by xenstored, replies
 * and watch events come out of it. The stream ends when the daemon ends the connection
 * (a protocol violation); destroying it closes the connection (watches and transactions go).
 */
export function openLocalStream(daemon: XenstoredDaemon, opts: LocalConnectionOptions = {}): Duplex {
  const conn = daemon.xs.connectSocket();
  if (opts.untraced) daemon.untraced.add(conn);
  opts.onConnection?.(conn);
  let out: Uint8Array[] = [];
  let eof = false;
  const stream = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      wire.received(chunk);
      cb();
    },
    read() {},
    destroy(err, cb) {
      wire.detach();
      if (daemon.xs.connections.has(conn)) daemon.xs.disconnect(conn);
      cb(err);
    },
  });
  const wire: XsWireConnection = new XsWireConnection(daemon, conn, {
    send: (m) => void out.push(encodeMessage(m)),
    flush: () => {
      for (const b of out) stream.push(b);
      out = [];
    },
    ended: (why) => {
      if (why === 'violation' && daemon.xs.connections.has(conn)) daemon.xs.disconnect(conn);
      if (!stream.readableEnded && !eof) stream.push(null);
      eof = true;
    },
  }, { socket: true });
  return stream;
}

export function connectLocal(daemon: XenstoredDaemon, name: string, opts: LocalConnectionOptions = {}): XsHandle {
  return XsHandle.fromStream(openLocalStream(daemon, opts), name);
}
