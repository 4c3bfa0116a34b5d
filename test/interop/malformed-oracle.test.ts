// The malformed-input table (test/dom0/xenstored/malformed-wire.ts) on the live real daemons:
// the recording in malformed-oracle.json must still be what Debian's C xenstored and oxenstored
// 4.17 answer, on a dom0 socket and from a guest's ring page (through ring-bridge.py), and a client streaming without end after a 0xFFFFFFFF header gets the same answers
// from xensim's Unix socket as from the real daemon of its profile.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XenstoredServer } from '../../domains/dom0/xenstored/unix-socket.ts';
import { XENSTORE_PAYLOAD_MAX, XSD_SOCKMSG_SIZE, XsdSockmsgType as T, encodeHeader } from '../../hypervisor/public/io/xs_wire.ts';
import { startOracle, type Daemon, type Profile } from '../helpers/daemons.ts';
import {
  CASES, type MalformedCase, type Transcript, runOnOracleRing, runOnSocket,
} from '../dom0/xenstored/malformed-wire.ts';

const RECORDED = JSON.parse(readFileSync(new URL('../dom0/xenstored/malformed-oracle.json', import.meta.url), 'utf8')) as
  Record<'socket' | 'ring', Record<Profile, Record<string, Transcript>>>;

const MESSAGE_MAX = XSD_SOCKMSG_SIZE + XENSTORE_PAYLOAD_MAX;
const STREAMED = 1 << 20;

/** 0xFFFFFFFF announced, 1 MiB streamed, padded so that the probe starts a header of its own. */
const STREAM: MalformedCase = {
  name: 'a header with len 0xFFFFFFFF, then 1 MiB',
  bytes: Buffer.concat([encodeHeader({ type: T.XS_WRITE, req_id: 7, tx_id: 0, len: 0xffffffff }),
    Buffer.alloc(STREAMED + MESSAGE_MAX - ((STREAMED + XSD_SOCKMSG_SIZE) % MESSAGE_MAX), 0x41)]),
  state: [],
};

const isPrefix = (a: readonly unknown[], b: readonly unknown[]): boolean =>
  JSON.stringify(a) === JSON.stringify(b.slice(0, a.length));

for (const profile of ['c', 'ocaml'] as const) {
  describe(`interop: the malformed-input table on the real ${profile === 'c' ? 'C xenstored' : 'oxenstored'}`, function () {
    let oracle: Daemon;
    before(async () => {
      oracle = await startOracle(profile);
    });
    after(async () => {
      await oracle?.stop();
    });

    for (const [i, k] of CASES.entries()) {
      for (const channel of ['socket', 'ring'] as const) {
        it(`${channel}: ${k.name}`, async () => {
          const live = channel === 'socket' ? await runOnSocket(oracle.socket, k) : await runOnOracleRing(oracle, 10 + i, k);
          const rec = RECORDED[channel][profile][k.name];
          assert.equal(live.closed, rec.closed);
          assert.deepEqual(live.state, rec.state);
          // C loses replies still queued when it drops a socket, depending on its poll rounds.
          if (rec.closed) assert.ok(isPrefix(live.replies, rec.replies) || isPrefix(rec.replies, live.replies));
          else assert.deepEqual(live.replies, rec.replies);
        });
      }
    }

    it('0xFFFFFFFF then 1 MiB: xensim\'s Unix socket answers as the real daemon does', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-stream-'));
      const server = new XenstoredServer({ socketPath: path.join(dir, 'socket'), profile });
      await server.listen();
      try {
        const real = await runOnSocket(oracle.socket, STREAM);
        const ours = await runOnSocket(path.join(dir, 'socket'), STREAM);
        assert.equal(ours.closed, real.closed);
        if (profile === 'c') {
          assert.equal(real.closed, true);
        } else {
          assert.equal(real.replies.length, (STREAM.bytes.length / MESSAGE_MAX) + 1);
          assert.deepEqual(ours.replies, real.replies);
        }
      } finally {
        await server.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
