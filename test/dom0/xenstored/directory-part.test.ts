// XS_DIRECTORY_PART (C xenstored 4.17; oxenstored answers ENOSYS): its two arguments are counted
// by NULs, as xs_count_strings() does. Rows recorded from Debian's 4.17.7 C xenstored (repro
// c-edge-directory-part-2.txt); '<gen>' is the node's generation, which differs between daemons.
import assert from 'node:assert/strict';
import { Harness, T, latin1 } from './harness.ts';

const ROWS: readonly [payload: string, answer: string][] = [
  ['/a\x000\x00', 'b\x00c\x00\x00'],
  ['/a\x002\x00', 'c\x00\x00'],
  ['/a\x00\x00', 'b\x00c\x00\x00'],
  ['/a\x00\x00junk', 'b\x00c\x00\x00'],
  ['/a\x002\x00junk', 'c\x00\x00'],
  ['/a\x00x\x00', 'b\x00c\x00\x00'],
  ['/a\x00 2\x00', 'c\x00\x00'],
  ['/a\x002', 'EINVAL'],
  ['/a\x002\x00\x00', 'EINVAL'],
  ['\x00\x00', 'EINVAL'],
  ['/a', 'EINVAL'],
  ['/nope\x000\x00', 'ENOENT'],
  ['/a\x00-1\x00', '\x00'],
  ['/a\x004294967296\x00', 'b\x00c\x00\x00'],
];

describe('xenstored c: DIRECTORY_PART arguments', () => {
  it('exactly two NULs, wherever they are; the offset is atoi() of the second string', () => {
    const h = new Harness({ profile: 'c' });
    assert.equal(h.dom0.write('/a/b', 'v'), 'OK');
    assert.equal(h.dom0.write('/a/c', 'v'), 'OK');
    for (const [payload, answer] of ROWS) {
      const r = h.dom0.request(T.XS_DIRECTORY_PART, payload);
      const got = r.error ?? latin1(r.msg!.payload).replace(/^\d+\0/, '');
      assert.equal(got, answer, JSON.stringify(payload));
    }
  });
});
