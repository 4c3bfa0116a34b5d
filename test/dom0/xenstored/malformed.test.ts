// Malformed input: whatever bytes a client sends, the daemon answers (or drops that client) and
// keeps serving everybody else. Bytes go through the transport's MessageReader
// (domains/dom0/xenstored/message-reader.ts), then the core, as the socket transport does.
// Expected answers were checked on Debian's 4.17.7 daemons (../shared/oracle).
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  XENSTORE_PAYLOAD_MAX, XSD_SOCKMSG_SIZE, encodeHeader, encodeMessage,
} from '../../../hypervisor/public/io/xs_wire.ts';
import { type Client, ERROR_NAMES, Harness, T, latin1, splitNul } from './harness.ts';

const PROFILES = ['c', 'ocaml'] as const;

const header = (type: number, len: number, reqId = 7, tx = 0): Uint8Array =>
  encodeHeader({ type, req_id: reqId, tx_id: tx, len });
const message = (type: number, payload: string | Uint8Array, reqId = 7, tx = 0): Uint8Array =>
  encodeMessage({ type, req_id: reqId, tx_id: tx, payload: typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload });

/** A fresh connection can still do the basics, with correct replies. */
function assertHealthy(h: Harness, tag: string): void {
  const c = h.socket(`check-${tag}`);
  const path = `/healthy/${tag}`;
  assert.equal(c.write(path, 'value'), 'OK');
  assert.equal(c.read(path), 'value');
  assert.equal(c.getPerms(path), 'n0');
  assert.equal(c.watch(path, 'tok'), 'OK');
  assert.deepEqual(c.eventStrings(), [`${path} tok`]);
  const t = c.txStart();
  assert.equal(c.write(path, 'in-tx', t), 'OK');
  assert.equal(c.commit(t), 'OK');
  assert.deepEqual(c.eventStrings(), [`${path} tok`]);
  assert.equal(c.read(path), 'in-tx');
  assert.equal(c.rm(path), 'OK');
}

/** Splits bytes at the given cut points (positions modulo the length). */
function chunks(data: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => (data.length ? c % data.length : 0)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of at) {
    out.push(data.subarray(prev, c));
    prev = c;
  }
  out.push(data.subarray(prev));
  return out;
}

describe('xenstored malformed input', () => {
  describe('property: random byte streams never break the daemon', () => {
    for (const profile of PROFILES) {
      it(`${profile}: any bytes, cut anywhere`, () => {
        fc.assert(
          fc.property(
            fc.uint8Array({ maxLength: 600 }),
            fc.array(fc.nat(), { maxLength: 8 }),
            (data, cuts) => {
              const h = new Harness({ profile });
              const victim = h.socket('victim');
              for (const piece of chunks(data, cuts)) victim.feed(piece);
              assertHealthy(h, 'after');
            },
          ),
          { numRuns: 300 },
        );
      });
    }
  });

  describe('property: well-framed messages of any type with any payload get exactly one reply', () => {
    const SPECIAL_TYPES = [15, 16, 20, 21, 22, 23, 24, 25, 26, 27, 99, 0xffff, 0xdeadbeef];
    const arbType = fc.oneof(
      fc.integer({ min: 0, max: 22 }),
      fc.constantFrom(...SPECIAL_TYPES),
      fc.nat(),
    );
    const arbWord = fc.oneof(
      fc.constantFrom('', '/', '/a', '/a/b', 'rel', '@introduceDomain', '@releaseDomain', '@x', '/local/domain/',
        '/local/domain/1', 'T', 'F', '0', '1', '5', '-1', '65536', 'n0', 'r1', 'b2', 'x9', 'tok', '/a//b', '/a/',
        'print', 'quota', 'check', 'log', 'help', 'memreport'),
      fc.string({ maxLength: 12 }),
      fc.string({ unit: 'binary-ascii', maxLength: 20 }),
    );
    const arbPayload = fc.oneof(
      fc.array(arbWord, { maxLength: 4 }).map((ws) => Buffer.from(ws.map((w) => `${w}\0`).join(''), 'latin1')),
      fc.array(arbWord, { minLength: 1, maxLength: 4 }).map((ws) => Buffer.from(ws.join('\0'), 'latin1')),
      fc.uint8Array({ maxLength: 64 }),
      fc.integer({ min: 0, max: XENSTORE_PAYLOAD_MAX }).map((n) => Buffer.from(`/big\0${'x'.repeat(Math.max(0, n - 5))}`)),
    );
    const arbMsg = fc.record({
      type: arbType,
      req_id: fc.nat(),
      tx_id: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3 }), fc.nat()),
      payload: arbPayload,
    });

    for (const profile of PROFILES) {
      it(`${profile}: from dom0 and from a guest`, () => {
        fc.assert(
          fc.property(fc.array(arbMsg, { minLength: 1, maxLength: 25 }), fc.boolean(), (msgs, fromGuest) => {
            const h = new Harness({ profile });
            const sender = fromGuest ? h.introduce(1, { data: true }) : h.socket('sender');
            for (const m of msgs) {
              const payload = m.payload.subarray(0, XENSTORE_PAYLOAD_MAX);
              // Through the reader, as a transport would: oxenstored holds a message with an empty
              // payload until more bytes come, so check each message the core was actually given.
              const { handled } = sender.feed(encodeMessage({ ...m, payload }));
              for (const { msg, got } of handled) {
                const what = JSON.stringify({ ...msg, payload: latin1(msg.payload) });
                const replies = got.filter((r) => r.type !== T.XS_WATCH_EVENT);
                assert.equal(replies.length, 1, `exactly one reply to ${what}`);
                const [reply] = replies;
                assert.equal(reply.req_id, msg.req_id, what);
                // oxenstored answers WATCH and UNWATCH with tx_id 0, whatever the request said.
                const watchOp = msg.type === T.XS_WATCH || msg.type === T.XS_UNWATCH;
                assert.equal(reply.tx_id, profile === 'ocaml' && watchOp ? 0 : msg.tx_id, what);
                assert.ok(reply.type === msg.type || reply.type === T.XS_ERROR, `reply type ${reply.type} to ${what}`);
                assert.ok(reply.payload.length <= XENSTORE_PAYLOAD_MAX);
                if (reply.type === T.XS_ERROR) {
                  const [name] = splitNul(latin1(reply.payload));
                  assert.ok(ERROR_NAMES.has(name), `unknown error name ${JSON.stringify(name)} for ${what}`);
                }
              }
              if (sender.closed) break; // a guest dom0 released by a random RELEASE
            }
            assertHealthy(h, 'after');
          }),
          { numRuns: 200 },
        );
      });
    }
  });

  describe('oversized messages (len > 4096)', () => {
    it('c: the header alone makes the reader report a violation; the connection is dropped', () => {
      const h = new Harness({ profile: 'c' });
      const bad = h.socket('bad');
      assert.deepEqual(bad.feed(header(T.XS_WRITE, XENSTORE_PAYLOAD_MAX + 1)), { handled: [], violation: true });
      assert.equal(bad.closed, true);
      assert.equal(h.xs.connections.has(bad.id), false);
      // Nothing more is read from it.
      assert.deepEqual(bad.feed(message(T.XS_READ, '/\0')), { handled: [], violation: false });
      assert.deepEqual(bad.inbox, []);
      assertHealthy(h, 'c');
    });

    it('c: messages before the bad header are still answered; exactly 4096 is fine', () => {
      const h = new Harness({ profile: 'c' });
      const c = h.socket('c');
      const ok = message(T.XS_WRITE, `/big\0${'x'.repeat(XENSTORE_PAYLOAD_MAX - 5)}`, 1);
      assert.equal(ok.length, XSD_SOCKMSG_SIZE + XENSTORE_PAYLOAD_MAX);
      const r = c.feed(Buffer.concat([ok, header(T.XS_READ, 5000, 2)]));
      assert.equal(r.handled.length, 1);
      assert.equal(r.violation, true);
      assert.deepEqual(c.inbox.map((m) => [m.req_id, latin1(m.payload)]), [[1, 'OK\0']]);
      assert.equal(h.dom0.read('/big').length, XENSTORE_PAYLOAD_MAX - 5);
    });

    it('ocaml: the message is answered with E2BIG (same req_id), the connection stays', () => {
      const h = new Harness({ profile: 'ocaml' });
      const c = h.socket('c');
      const big = Buffer.concat([header(T.XS_WRITE, 5000, 77), Buffer.from(`/z\0${'q'.repeat(4997)}`)]);
      const r = c.feed(big);
      assert.equal(r.violation, false);
      assert.deepEqual(c.inbox.map((m) => [m.type, m.req_id, latin1(m.payload)]), [[T.XS_ERROR, 77, 'E2BIG\0']]);
      assert.equal(c.closed, false);
      assert.equal(h.dom0.read('/z'), 'ENOENT');
      assertHealthy(h, 'ocaml');
    });

    it('ocaml: a value over 2048 bytes in a 4096-byte message is E2BIG too (value quota)', () => {
      const h = new Harness({ profile: 'ocaml' });
      assert.equal(h.dom0.write('/big', 'x'.repeat(XENSTORE_PAYLOAD_MAX - 5)), 'E2BIG');
    });
  });

  describe('message types a client may not send', () => {
    const CASES: readonly (readonly [type: number, what: string, c: string, ocaml: string])[] = [
      [T.XS_WATCH_EVENT, 'WATCH_EVENT (server only)', 'ENOSYS', 'ENOSYS'],
      [T.XS_ERROR, 'ERROR (server only)', 'ENOSYS', 'ENOSYS'],
      [T.XS_RESTRICT, 'RESTRICT (removed)', 'ENOSYS', 'ENOSYS'],
      [T.XS_DIRECTORY_PART, 'DIRECTORY_PART (C only; bad offset)', 'EINVAL', 'ENOSYS'],
      [23, 'GET_FEATURE (4.21+)', 'ENOSYS', 'ENOSYS'],
      [24, 'SET_FEATURE (4.21+)', 'ENOSYS', 'ENOSYS'],
      [25, 'GET_QUOTA (4.22+)', 'ENOSYS', 'ENOSYS'],
      [26, 'SET_QUOTA (4.22+)', 'ENOSYS', 'ENOSYS'],
      [27, 'first unassigned', 'ENOSYS', 'ENOSYS'],
      [99, 'unknown', 'ENOSYS', 'ENOSYS'],
      [T.XS_INVALID, 'XS_INVALID', 'ENOSYS', 'ENOSYS'],
      [0xdeadbeef, 'huge', 'ENOSYS', 'ENOSYS'],
    ];
    for (const profile of PROFILES) {
      for (const [type, what, c, o] of CASES) {
        const want = profile === 'c' ? c : o;
        it(`${profile}: type ${type} ${what} -> ${want}`, () => {
          const h = new Harness({ profile });
          const r = h.dom0.request(type, '/x\0', 0, 4242);
          assert.equal(r.error, want);
          assert.equal(r.msg?.req_id, 4242);
          assert.equal(h.dom0.write('/x', 'fine'), 'OK');
        });
      }
    }
  });

  describe('malformed arguments', () => {
    // C 4.17 answers a path argument without its NUL with a leftover errno (and may abort);
    // xensim answers ENOENT in profile c (the probe transcript) and EINVAL in profile ocaml.
    const NO_NUL: readonly (readonly [type: number, name: string])[] = [
      [T.XS_READ, 'READ'], [T.XS_DIRECTORY, 'DIRECTORY'], [T.XS_GET_PERMS, 'GET_PERMS'], [T.XS_MKDIR, 'MKDIR'], [T.XS_RM, 'RM'],
    ];
    for (const profile of PROFILES) {
      for (const [type, name] of NO_NUL) {
        it(`${profile}: ${name} of a path without its NUL -> ${profile === 'c' ? 'ENOENT' : 'EINVAL'}`, () => {
          const h = new Harness({ profile });
          assert.equal(h.dom0.write('/x', 'v'), 'OK');
          assert.equal(h.dom0.request(type, '/x').error, profile === 'c' ? 'ENOENT' : 'EINVAL');
          assert.equal(h.dom0.read('/x'), 'v');
        });
      }
    }

    const BAD_PATHS: readonly (readonly [what: string, path: string])[] = [
      ['empty', ''],
      ['trailing slash', '/probe/'],
      ['double slash at the start', '//probe'],
      ['double slash inside', '/probe//a'],
      ['a blank', '/pro be'],
      ['a non-ASCII byte', '/probe/\xc3\xa9'],
      ['longer than 3072', `/${'x'.repeat(3100)}`],
      ['empty domid component (XSA-481)', '/local/domain/'],
    ];
    for (const profile of PROFILES) {
      for (const [what, path] of BAD_PATHS) {
        it(`${profile}: path ${what} -> EINVAL for READ and WRITE, and the daemon carries on`, () => {
          const h = new Harness({ profile });
          assert.equal(h.dom0.read(path), 'EINVAL');
          assert.equal(h.dom0.write(path, 'v'), 'EINVAL');
          assertHealthy(h, 'x');
        });
      }
    }

    for (const profile of PROFILES) {
      it(`${profile}: '@' paths are only for watches and ACLs (READ -> ${profile === 'c' ? 'EINVAL' : 'ENOENT'})`, () => {
        const h = new Harness({ profile });
        assert.equal(h.dom0.read('@foo'), profile === 'c' ? 'EINVAL' : 'ENOENT');
        assert.equal(h.dom0.watch('@foo', 't'), 'OK');
      });
    }

    it('c: a failing SET_PERMS on an @ path while watches exist is just an error (4.17 aborted here)', () => {
      const h = new Harness({ profile: 'c' });
      const w = h.socket('w');
      assert.equal(w.watch('/a', 't'), 'OK');
      assert.equal(w.watch('@introduceDomain', 'i'), 'OK');
      assert.equal(h.dom0.setPerms('@introduceDomain', 'x1'), 'EINVAL');
      assert.equal(h.dom0.setPerms('@nosuch', 'n0'), 'EINVAL'); // oxenstored: ENOENT
      assertHealthy(h, 'x');
    });

    it('c: RM / is EINVAL; ocaml empties the store', () => {
      const c = new Harness({ profile: 'c' });
      assert.equal(c.dom0.rm('/'), 'EINVAL');
      assert.equal(c.dom0.dir('/'), 'tool');
      const o = new Harness({ profile: 'ocaml' });
      assert.equal(o.dom0.rm('/'), 'OK');
      assert.equal(o.dom0.dir('/'), '');
      assertHealthy(o, 'x');
    });

    it('c: WATCH with a garbage tx_id works (XSA-115); other requests check it', () => {
      const h = new Harness({ profile: 'c' });
      const r = h.dom0.request(T.XS_WATCH, '/a\0tok\0', 12345);
      assert.equal(r.error, undefined);
      assert.equal(h.dom0.request(T.XS_UNWATCH, '/a\0tok\0', 999).error, undefined);
      assert.equal(h.dom0.request(T.XS_GET_DOMAIN_PATH, '1\0', 999).error, 'ENOENT');
    });
  });

  describe('a bad client does not disturb others', () => {
    for (const profile of PROFILES) {
      it(`${profile}: interleaved garbage on one connection, normal traffic on another`, () => {
        const h = new Harness({ profile });
        const bad = h.socket('bad');
        const good: Client = h.socket('good');
        assert.equal(good.watch('/g', 'w'), 'OK');
        good.events();
        for (let i = 0; i < 20; i++) {
          bad.feed(Buffer.from([0xff, i, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 3, 0, 0, 0, 0x2f, 0x67, 0]));
          assert.equal(good.write(`/g/${i}`, String(i)), 'OK');
          assert.equal(good.read(`/g/${i}`), String(i));
          assert.deepEqual(good.eventStrings(), [`/g/${i} w`]);
        }
      });
    }
  });
});
