// A receiving host's connection turns to lent reads when its migration stream starts
// (lendReads, sim/xl-migrate-transport.ts): the control socket reads request lines with 'data'
// events first, then every read of the stream goes into a buffer of the pipe's own, given back
// once read past - no new 64 KiB Buffer a read. Bytes must arrive whole and in order across the
// switch, and the end of the connection must still end the pipe.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MigratePipe, streamWriter } from '../../sim/migrate-pipe.ts';
import { lendReads } from '../../sim/xl-migrate-transport.ts';

/** `n` bytes of a fixed pattern (no two neighbouring MiB alike). */
const pattern = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + (i >> 20)) & 0xff);

describe('migration stream: a receiving connection lends its reads once the stream starts', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(path.join(tmpdir(), 'xensim-lend-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const where of ['unix', 'tcp'] as const) {
    it(`${where}: after a request line read with 'data' events, every byte of the stream reaches the pipe in order in its own buffers, and the end ends it`, async () => {
      const stream = pattern(5 * 1024 * 1024 + 13);
      let switched: boolean | undefined;
      let dataAfter = 0;
      const got = new Promise<{ chunks: Uint8Array[]; sizes: Set<number> }>((resolve, reject) => {
        const srv = net.createServer((socket) => {
          let line = '';
          socket.on('data', (c: Buffer) => {
            if (switched !== undefined) {
              dataAfter++;
              return;
            }
            line += c.toString('latin1');
            if (!line.endsWith('\n')) return;
            const pipe = new MigratePipe(streamWriter(socket), 'test stream');
            socket.once('end', () => pipe.end());
            switched = lendReads(socket, pipe);
            socket.write('ok\n');
            void (async () => {
              const chunks: Uint8Array[] = [];
              const sizes = new Set<number>();
              for (let c = await pipe.readSome(); c !== null; c = await pipe.readSome()) {
                chunks.push(Uint8Array.from(c));
                sizes.add(c.buffer.byteLength);
              }
              socket.end();
              srv.close();
              resolve({ chunks, sizes });
            })().catch(reject);
          });
        });
        const at = where === 'unix' ? path.join(dir, 'lend.sock') : 0;
        srv.listen(at, () => {
          const client = where === 'unix' ? net.connect(at as string) : net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
          client.once('connect', () => client.write('migrate-receive\n'));
          client.once('data', () => {
            // The stream in uneven writes, as a sender's records and socket pieces come.
            for (let off = 0; off < stream.length;) {
              const n = Math.min(stream.length - off, 1 + ((off * 31) % 700_000));
              client.write(stream.subarray(off, off + n));
              off += n;
            }
            client.end();
          });
          client.on('error', reject);
        });
      });
      const { chunks, sizes } = await got;
      assert.equal(switched, true, "this Node's sockets take lent reads (lendReads found the fields it sets)");
      assert.equal(dataAfter, 0, "no 'data' event once lent");
      assert.deepEqual([...sizes], [1024 * 1024], 'every chunk a view of one of the pipe\'s own 1 MiB buffers');
      const all = Buffer.concat(chunks);
      assert.equal(all.length, stream.length);
      assert.ok(all.equals(stream), 'the bytes as sent, in order');
    });
  }
});
