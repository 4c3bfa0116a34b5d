// Whether a Unix socket path is free for a new listener, checked before a host boots: a host
// that cannot have its sockets must not take another's over, or remove them when it gives up.
import { lstatSync } from 'node:fs';
import { createConnection } from 'node:net';
import { socketPathTooLong } from '../domains/dom0/xenstored/unix-socket.ts';

/**
 * Why `path` cannot be listened on, or undefined when it is free: nothing there, or a socket
 * nobody answers on (left by a host that died; its listener replaces it).
 */
export async function socketPathBusy(path: string): Promise<string | undefined> {
  const tooLong = socketPathTooLong(path);
  if (tooLong) return tooLong;
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return `${path}: ${(e as Error).message}`;
  }
  if (!isSocket) return `${path}: exists and is not a socket`;
  const live = await new Promise<boolean>((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  return live ? `${path}: another process is listening on this socket (another host?)` : undefined;
}
