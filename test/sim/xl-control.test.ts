// The xl control socket (sim/xl-control.ts) bounds what it holds of a request line: a client that
// sends more than XL_CONTROL_LINE_MAX bytes without a newline gets one clear error and is cut off,
// and everybody else is still served.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { LineSplitter, XL_CONTROL_LINE_MAX, XlControl, XlControlServer } from '../../sim/xl-control.ts';
import type { Xl } from '../../sim/xl.ts';

/** Sends `data`, collects the reply lines until the server closes or `until` lines arrived. */
function talk(socketPath: string, data: Buffer[], until = Infinity): Promise<{ lines: string[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(socketPath);
    let text = '';
    const lines = () => text.split('\n').filter((l) => l !== '');
    s.on('connect', () => {
      for (const d of data) s.write(d);
    });
    s.on('data', (b: Buffer) => {
      text += b.toString('utf8');
      if (lines().length >= until) {
        s.destroy();
        resolve({ lines: lines(), closed: false });
      }
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') reject(e);
    });
    s.on('close', () => resolve({ lines: lines(), closed: true }));
  });
}

describe('xl control socket: bounded request lines', () => {
  describe('LineSplitter', () => {
    it('joins a line from the pieces it came in, and splits several lines in one chunk', () => {
      const l = new LineSplitter(100);
      assert.deepEqual(l.push(Buffer.from('{"a"')), []);
      assert.deepEqual(l.push(Buffer.from(':1}\n{"b":2}\n{"c"')), ['{"a":1}', '{"b":2}']);
      assert.deepEqual(l.push(Buffer.from(':3}\n')), ['{"c":3}']);
    });

    it('a line of exactly max bytes is taken; one byte more without a newline is an overflow, for good', () => {
      const ok = new LineSplitter(8);
      assert.deepEqual(ok.push(Buffer.from('1234')), []);
      assert.deepEqual(ok.push(Buffer.from('5678\n')), ['12345678']);
      const over = new LineSplitter(8);
      assert.deepEqual(over.push(Buffer.from('12345')), []);
      assert.equal(over.push(Buffer.from('6789')), 'overflow');
      assert.equal(over.push(Buffer.from('\n{}\n')), 'overflow');
    });

    it('a multi-byte character split across chunks comes out whole', () => {
      const l = new LineSplitter(100);
      const e = Buffer.from('"é"\n');
      assert.deepEqual(l.push(e.subarray(0, 2)), []);
      assert.deepEqual(l.push(e.subarray(2)), ['"é"']);
    });
  });

  describe('XlControlServer', () => {
    let dir: string;
    let server: XlControlServer;
    before(async () => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-xlctl-'));
      // These requests never reach a domain: unknown verbs are refused before the Xl is used.
      server = new XlControlServer(path.join(dir, 'xl.sock'), new XlControl({} as Xl));
      await server.listen();
    });
    after(async () => {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('a line over the bound without a newline: one error reply, then the connection ends', async () => {
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const data = [Buffer.from('{"id":1,"verb":"nosuch"}\n')];
      for (let sent = 0; sent <= XL_CONTROL_LINE_MAX; sent += chunk.length) data.push(chunk);
      data.push(Buffer.from('\n{"id":2,"verb":"nosuch"}\n'));
      const r = await talk(path.join(dir, 'xl.sock'), data);
      assert.equal(r.closed, true);
      const replies = r.lines.map((l) => JSON.parse(l) as { id?: number; ok: boolean; error: string });
      assert.equal(replies.length, 2, JSON.stringify(replies));
      // The request before the long line is answered; the long line gets the bound; nothing after.
      assert.equal(replies[0].id, 1);
      assert.match(replies[0].error, /unknown verb "nosuch"/);
      assert.equal(replies[1].ok, false);
      assert.equal(replies[1].error, `bad request: a line longer than ${XL_CONTROL_LINE_MAX} bytes without a newline`);
    });

    it('others are still served', async () => {
      const r = await talk(path.join(dir, 'xl.sock'), [Buffer.from('{"id":7,"verb":"nosuch"}\n')], 1);
      assert.equal((JSON.parse(r.lines[0]) as { id: number }).id, 7);
    });
  });
});
