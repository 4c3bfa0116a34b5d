// A migration stream over a unix socket gets a send buffer the size of a PAGE_DATA record
// (sim/socket-buffer.ts, through the addon sim/native/socket-buffer.c): the default 208 KiB made
// sender and receiver hand a GiB back and forth about 5,000 times. TCP is left to Linux.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildSocketBuffer } from '../../sim/bin/build-native.mjs';
import { MIGRATE_SEND_BUFFER, loadSocketBuffer, widenSendBuffer } from '../../sim/socket-buffer.ts';
import { socketPipe } from '../../sim/xl-migrate-transport.ts';

const fdOf = (s: net.Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;

/** Both ends of a connection over `listen` (a unix path or TCP on 127.0.0.1). */
async function connection(listen: string | undefined): Promise<{ client: net.Socket; server: net.Socket; close: () => Promise<void> }> {
  const srv = net.createServer();
  await new Promise<void>((r) => (listen ? srv.listen(listen, r) : srv.listen(0, '127.0.0.1', r)));
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const client = listen ? net.connect(listen) : net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise<void>((r) => client.once('connect', () => r()));
  const server = await accepted;
  return {
    client,
    server,
    close: async () => {
      client.destroy();
      server.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

describe('migration stream: the send buffer of a unix socket (SO_SNDBUF)', () => {
  let dir: string;
  before(function () {
    if (process.platform !== 'linux') this.skip();
    dir = mkdtempSync(path.join(tmpdir(), 'xensim-sndbuf-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  // Linux keeps twice what is asked, up to twice net.core.wmem_max.
  const expected = (): number => 2 * Math.min(MIGRATE_SEND_BUFFER, Number(readFileSync('/proc/sys/net/core/wmem_max', 'utf8')));

  it('the addon compiles with the C compiler and Node headers, loads, and sets and reads SO_SNDBUF', async () => {
    const out = path.join(dir, 'socket-buffer.node');
    assert.equal(buildSocketBuffer(out), null);
    const addon = createRequire(import.meta.url)(out) as { setSendBuffer: (fd: number, n: number) => number; sendBuffer: (fd: number) => number };
    const c = await connection(path.join(dir, 'a.sock'));
    try {
      assert.equal(addon.setSendBuffer(fdOf(c.client), 256 * 1024), 512 * 1024);
      assert.equal(addon.sendBuffer(fdOf(c.client)), 512 * 1024);
      assert.throws(() => addon.sendBuffer(-1), /getsockopt\(SO_SNDBUF\): Bad file descriptor/);
      assert.throws(() => addon.setSendBuffer(fdOf(c.client), 0), TypeError);
    } finally {
      await c.close();
    }
  });

  it("npm ci's prepare built the one xl migrate loads (dist/native/socket-buffer.node)", () => {
    assert.ok(loadSocketBuffer(), 'dist/native/socket-buffer.node is missing: run node sim/bin/build-native.mjs');
  });

  it("a unix socket's sender gets a record-sized buffer through socketPipe; its peer keeps the default", async () => {
    const addon = loadSocketBuffer()!;
    const c = await connection(path.join(dir, 'b.sock'));
    try {
      const before = addon.sendBuffer(fdOf(c.server));
      assert.ok(before < expected(), `default ${before}`);
      const pipe = socketPipe(c.client, new Uint8Array(0), 'test sender');
      assert.equal(addon.sendBuffer(fdOf(c.client)), expected());
      assert.equal(addon.sendBuffer(fdOf(c.server)), before);
      await pipe.close();
    } finally {
      await c.close();
    }
  });

  it('a TCP socket is left alone: Linux grows its buffers itself, and SO_SNDBUF would stop that', async () => {
    const addon = loadSocketBuffer()!;
    const c = await connection(undefined);
    try {
      const before = addon.sendBuffer(fdOf(c.client));
      assert.equal(widenSendBuffer(c.client), undefined);
      assert.equal(addon.sendBuffer(fdOf(c.client)), before);
    } finally {
      await c.close();
    }
  });
});
