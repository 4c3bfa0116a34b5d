// An in-process connection to dom0's xenstored for dom0's own components (the toolstack, the
// backend drivers): the same wire bytes a Unix-socket client sends, without a socket.
import { Duplex } from 'node:stream';
import { XsHandle } from '../tools/xs.ts';
import type { XenstoredDaemon } from './daemon.ts';
import { MessageReader } from './message-reader.ts';

export function connectLocal(daemon: XenstoredDaemon, name: string, opts: { untraced?: boolean } = {}): XsHandle {
  const conn = daemon.xs.connectSocket();
  // The simulator looking at the tree (invariant checks) is not part of the story the trace tells.
  if (opts.untraced) daemon.untraced.add(conn);
  const reader = new MessageReader(daemon.xs.profile);
  let out: Uint8Array[] = [];
  const stream = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      daemon.input(conn, reader.push(chunk));
      cb();
    },
    read() {},
  });
  daemon.attach(conn, {
    send: (b) => out.push(b),
    flush: () => {
      for (const b of out) stream.push(Buffer.from(b));
      out = [];
    },
    ended: () => stream.push(null),
  });
  return XsHandle.fromStream(stream, name);
}
