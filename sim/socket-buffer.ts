// A migration stream's unix socket with a send buffer the size of a PAGE_DATA record, through the
// optional addon `npm ci` builds (sim/native/socket-buffer.c, sim/bin/build-native.mjs).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type net from 'node:net';
import { fileURLToPath } from 'node:url';

/** dist/native/socket-buffer.node, seen from sim/socket-buffer.ts or from its compiled copy. */
const ADDON = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../dist/native/socket-buffer.node' : '../native/socket-buffer.node', import.meta.url));

interface SocketBufferAddon {
  /** setsockopt(SO_SNDBUF) then getsockopt: what the kernel keeps (twice what was asked). */
  setSendBuffer(fd: number, bytes: number): number;
  sendBuffer(fd: number): number;
}

let addon: SocketBufferAddon | null | undefined;

/**
 * The addon; undefined where it was not built (no C compiler or Node headers). One that is there
 * but fails to load throws.
 */
export function loadSocketBuffer(): SocketBufferAddon | undefined {
  if (addon === undefined) {
    if (!existsSync(ADDON)) addon = null;
    else {
      const a = createRequire(import.meta.url)(ADDON) as Partial<SocketBufferAddon>;
      if (typeof a.setSendBuffer !== 'function' || typeof a.sendBuffer !== 'function') throw new Error(`${ADDON}: no setSendBuffer()/sendBuffer()`);
      addon = a as SocketBufferAddon;
    }
  }
  return addon ?? undefined;
}

/**
 * What a migration stream's unix socket asks for: Linux's largest TCP send buffer by default
 * (tcp_wmem's maximum), which a loopback TCP stream grows to by itself; within the default
 * net.core.wmem_max of many hosts it is capped lower, which is still no worse than before.
 */
export const MIGRATE_SEND_BUFFER = 4 * 1024 * 1024;

/**
 * Widens the send buffer of `socket` if it is a unix socket (not TCP, whose buffers Linux sizes
 * itself) with a descriptor: returns the size the kernel now keeps, or undefined when nothing was
 * done (no addon, TCP, no descriptor).
 */
export function widenSendBuffer(socket: net.Socket, bytes = MIGRATE_SEND_BUFFER): number | undefined {
  if (socket.remoteFamily !== undefined) return undefined;
  // Node keeps the descriptor on the socket's handle (a Pipe for unix sockets); not a public API.
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  return loadSocketBuffer()?.setSendBuffer(fd, bytes);
}
