// INTRODUCE's arguments as each daemon parses them. C xenstored reads them with atoi() (any text
// is a number, "x" is dom0). oxenstored builds (domid, mfn, port) right to left with OCaml's
// parsers: a bad port or domid is int_of_string's Failure (EINVAL), a bad mfn is
// Nativeint.of_string's, which it does not name (EIO); dom0 is known from the start with mfn 0,
// so another mfn for it is EINVAL, the same mfn rebinds the port (OK). Answers recorded from
// Debian's 4.17.7 daemons in this order (xs-difffuzz.py, repro ocaml-o41-introduce-args.txt).
import assert from 'node:assert/strict';
import { Harness, T } from './harness.ts';

/** [domid, mfn, port, C xenstored, oxenstored] */
const TABLE: readonly (readonly [string, string, string, string, string])[] = [
  ['x', 'y', 'z', 'EINVAL', 'EINVAL'],
  ['x', 'y', '5', 'OK', 'EIO'],
  ['x', '5', '5', 'OK', 'EINVAL'],
  ['5', 'y', 'z', 'EINVAL', 'EINVAL'],
  ['5', '-', '5', 'OK', 'EIO'],
  ['5', '0x', '5', 'OK', 'EIO'],
  ['0', '0', '1', 'OK', 'OK'],
  ['0', '0', '2', 'OK', 'OK'],
  ['0', '1', '1', 'OK', 'EINVAL'],
  ['0', '', '1', 'OK', 'EIO'],
  ['99999999999999999999', '4705', '9', 'EINVAL', 'EINVAL'],
  ['5', '99999999999999999999', '9', 'OK', 'EIO'],
  ['5', '4705', '99999999999999999999', 'OK', 'EINVAL'],
  ['5', '4705', '4294967305', 'OK', 'OK'],
  ['5', '4705', '-9', 'OK', 'OK'],
];

describe('xenstored INTRODUCE arguments (atoi in C; right-to-left OCaml parsers in oxenstored)', () => {
  for (const profile of ['c', 'ocaml'] as const) {
    it(`${profile}: the answers of the real daemon, in sequence`, () => {
      const h = new Harness({ profile });
      const got = TABLE.map(([domid, mfn, port]) => {
        const r = h.dom0.request(T.XS_INTRODUCE, `${domid}\0${mfn}\0${port}\0`);
        return r.error ?? 'OK';
      });
      assert.deepEqual(got, TABLE.map((row) => row[profile === 'c' ? 3 : 4]));
    });
  }
});

describe('xenstored ocaml: INTRODUCE takes the first three pieces of split (repro ocaml-edge-domain-args.txt)', () => {
  it('the third needs no NUL after it, and pieces after it are ignored', () => {
    const h = new Harness({ profile: 'ocaml' });
    const ask = (payload: string): string => h.dom0.request(T.XS_INTRODUCE, payload).error ?? 'OK';
    assert.equal(ask('//\x001e3\x0032768'), 'EIO');
    assert.equal(ask('5\x004705\x009'), 'OK');
    assert.equal(ask('6\x004706\x0010\x00extra\x00'), 'OK');
    assert.equal(ask('7\x004707'), 'EINVAL');
  });
});
