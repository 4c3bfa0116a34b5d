// xenstored --replay: a -T trace of a real C xenstored re-run on xensim, every differing reply
// reported. The fixture test-xenstore-c417.trace is Debian's C xenstored 4.17 (-T) serving one
// default run of Xen's test-xenstore (through ../shared/oracle).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { XsdSockmsgType as T } from '../../../hypervisor/public/io/xs_wire.ts';
import { Xenstored } from '../../../domains/dom0/xenstored/core.ts';
import { parseTrace, payloadOf, replayTrace } from '../../../domains/dom0/xenstored/trace-replay.ts';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'test-xenstore-c417.trace');
const fresh = (): Xenstored => new Xenstored({ profile: 'c' });
const latin1 = (b: Uint8Array): string => Buffer.from(b).toString('latin1');

describe('xenstored --replay: a field trace re-run on xensim', () => {
  describe('payloads back from their traced form (NULs were printed as blanks)', () => {
    const CASES: readonly [string, number, string, string][] = [
      ['READ: the path and its NUL', T.XS_READ, 'a/b ', 'a/b\0'],
      ['WRITE: path, then the value as printed (blanks kept)', T.XS_WRITE, 'a/b x y', 'a/b\0x y'],
      ['WRITE of an empty value', T.XS_WRITE, 'a/b ', 'a/b\0'],
      ['WATCH: path, token with its blanks, final NUL', T.XS_WATCH, '/p my token ', '/p\0my token\0'],
      ['SET_PERMS: every field NUL-terminated', T.XS_SET_PERMS, 'a n0 r5 ', 'a\0n0\0r5\0'],
      ['TRANSACTION_START: an empty string', T.XS_TRANSACTION_START, ' ', '\0'],
      ['TRANSACTION_END T', T.XS_TRANSACTION_END, 'T ', 'T\0'],
      ['INTRODUCE: domid, mfn, port', T.XS_INTRODUCE, '5 4096 10 ', '5\x004096\x0010\0'],
    ];
    for (const [what, type, body, want] of CASES) {
      it(what, () => assert.equal(latin1(payloadOf(type, body)), want));
    }
  });

  it('reads IN/OUT lines (with or without "io: "), connections, sessions; a payload may span lines', () => {
    const e = parseTrace([
      '', '***', 'CREATE connection 0x1', 'wrl: dom    0      1  msec',
      'IN 0x1 20261206 08:11:41 WRITE (a x', 'y)', 'io: OUT 0x1 20261206 08:11:41 WRITE (OK )',
      'DESTROY transaction 0x2', 'DESTROY connection 0x1',
    ].join('\n'));
    assert.deepEqual(e.map((x) => x.kind), ['session', 'create', 'IN', 'OUT', 'destroy']);
    const w = e[2] as { body: string; type: number; line: number };
    assert.deepEqual([w.type, w.body, w.line], [T.XS_WRITE, 'a x\ny', 5]);
  });

  it("the real C daemon's trace of test-xenstore replays with 0 differing replies", () => {
    const r = replayTrace(parseTrace(readFileSync(FIXTURE, 'latin1')), fresh);
    assert.deepEqual(r.differences, []);
    assert.equal(r.requests, 84);
    assert.equal(r.compared, 84);
    // "ta err" writes outside its open transaction: the trace does not say so, the search finds it.
    assert.ok(r.choices > 0 && r.runs > 1, `choices ${r.choices}, runs ${r.runs}`);
  });

  it('a reply changed in the trace is reported at its line, and only it', () => {
    const lines = readFileSync(FIXTURE, 'latin1').split('\n');
    const at = lines.findIndex((l) => l.endsWith('TRANSACTION_START (3 )'));
    assert.ok(at > 0);
    lines[at] = lines[at].replace('(3 )', '(4 )');
    const r = replayTrace(parseTrace(lines.join('\n')), fresh);
    assert.equal(r.differences.length, 1, JSON.stringify(r.differences));
    assert.deepEqual([r.differences[0].line, r.differences[0].expected, r.differences[0].got],
      [at + 1, 'TRANSACTION_START (4 )', 'TRANSACTION_START (3 )']);
  });

  it('a trace cut short: what the trace lacks is reported, not searched for', () => {
    const lines = readFileSync(FIXTURE, 'latin1').split('\n');
    const lastOut = lines.findLastIndex((l) => l.startsWith('OUT '));
    const r = replayTrace(parseTrace(lines.slice(0, lastOut).join('\n')), fresh);
    assert.equal(r.differences.length, 1);
    assert.equal(r.differences[0].expected, undefined);
    assert.equal(r.differences[0].got, 'TRANSACTION_END (OK )');
  });
});
