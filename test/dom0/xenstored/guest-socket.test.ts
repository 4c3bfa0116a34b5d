// A guest socket (--guest-dir DIR: DIR/<domid> carries an introduced domain's connection) that
// cannot be bound fails that domain's INTRODUCE with an errno, as C xenstored answers INTRODUCE
// when new_domain() cannot set up the connection, and is reported; the daemon and every other
// connection go on. Socket paths longer than sun_path are refused, never cut short.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SUN_PATH_MAX, XenstoredServer } from '../../../domains/dom0/xenstored/unix-socket.ts';
import { XsdSockmsgType as T, encodeMessage } from '../../../hypervisor/public/io/xs_wire.ts';
import { type WireReply, play } from './malformed-wire.ts';

const msg = (type: number, reqId: number, payload: string): Uint8Array =>
  encodeMessage({ type, req_id: reqId, tx_id: 0, payload: Buffer.from(payload, 'latin1') });

/** One request on `socket`, its reply. */
async function ask(socket: string, type: number, payload: string): Promise<WireReply> {
  const c = await play(socket, msg(type, 1, payload), (col) => col.replies.some((r) => r[1] === 1));
  const r = c.replies.find((m) => m[1] === 1);
  if (r === undefined) throw new Error(`no reply from ${socket} (closed: ${c.closed})`);
  return r;
}

const introduce = (socket: string, domid: number): Promise<WireReply> =>
  ask(socket, T.XS_INTRODUCE, `${domid}\0${4711 + domid}\0${9 + domid}\0`);
const isIntroduced = async (socket: string, domid: number): Promise<string> =>
  (await ask(socket, T.XS_IS_DOMAIN_INTRODUCED, `${domid}\0`))[3];

for (const profile of ['c', 'ocaml'] as const) {
  describe(`${profile}: a guest socket that cannot be bound`, () => {
    let dir: string;
    let guests: string;
    let socket: string;
    let server: XenstoredServer;
    let reported: string[];

    beforeEach(async () => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-gsock-'));
      guests = path.join(dir, 'g');
      socket = path.join(dir, 'socket');
      reported = [];
      server = new XenstoredServer({ socketPath: socket, guestDir: guests, profile, report: (l) => reported.push(l) });
      await server.listen();
    });
    afterEach(async () => {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    });

    /** The daemon still serves: another domain is introduced and its guest socket answers. */
    async function stillServes(domid: number): Promise<void> {
      assert.deepEqual(await introduce(socket, domid), ['INTRODUCE', 1, 0, 'OK\0']);
      const r = await ask(path.join(guests, String(domid)), T.XS_GET_DOMAIN_PATH, `${domid}\0`);
      assert.deepEqual(r, ['GET_DOMAIN_PATH', 1, 0, `/local/domain/${domid}\0`]);
    }

    it('path taken by a directory: INTRODUCE answers EINVAL (EADDRINUSE has no xsd_errors name), the domain stays unintroduced', async () => {
      mkdirSync(path.join(guests, '5'));
      assert.deepEqual(await introduce(socket, 5), ['ERROR', 1, 0, 'EINVAL\0']);
      assert.equal(await isIntroduced(socket, 5), 'F\0');
      assert.equal(reported.length, 1);
      assert.match(reported[0], /domain 5: cannot listen on .*\/5: .*EADDRINUSE/);
      assert.ok(existsSync(path.join(guests, '5')), 'what was at the path is left alone');
      await stillServes(6);
    });

    it('guest directory missing: INTRODUCE answers ENOENT; once it is back, INTRODUCE works', async () => {
      rmSync(guests, { recursive: true });
      assert.deepEqual(await introduce(socket, 7), ['ERROR', 1, 0, 'ENOENT\0']);
      assert.equal(await isIntroduced(socket, 7), 'F\0');
      assert.match(reported.join('\n'), /domain 7: cannot listen/);
      mkdirSync(guests);
      await stillServes(7);
    });

    it(`path over the ${SUN_PATH_MAX}-byte sun_path limit: INTRODUCE answers EINVAL, nothing is bound at a cut-short path`, async () => {
      await server.close();
      // DIR/5 fits exactly; DIR/32000 is three bytes over (cut at sun_path, it would be DIR/3200).
      const base = path.join(dir, 'g');
      guests = `${base}${'x'.repeat(SUN_PATH_MAX - Buffer.byteLength(base) - 2)}`;
      mkdirSync(guests);
      server = new XenstoredServer({ socketPath: socket, guestDir: guests, profile, report: (l) => reported.push(l) });
      await server.listen();
      assert.deepEqual(await introduce(socket, 32000), ['ERROR', 1, 0, 'EINVAL\0']);
      assert.match(reported.join('\n'), /at most 107 bytes \(sun_path\)/);
      assert.ok(!existsSync(path.join(guests, '3200')), 'no socket at the truncated path');
      assert.equal(await isIntroduced(socket, 32000), 'F\0');
      await stillServes(5);
    });
  });
}

describe('the xenstored socket path', () => {
  it(`is refused with a clear error when over ${SUN_PATH_MAX} bytes`, async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-gsock-'));
    try {
      const server = new XenstoredServer({ socketPath: path.join(dir, 'x'.repeat(120)) });
      await assert.rejects(server.listen(), /at most 107 bytes \(sun_path\), this one has \d+/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
