// io/console.h, struct xencons_interface (spec/hypervisor-and-xenbus.md §3.4): the guest writes
// `out` and reads `in`, the backend the other way round; indexes are free-running u32.
import assert from 'node:assert/strict';
import {
  XENCONS_IN_SIZE, XENCONS_OUT_SIZE, XenconsConnection, XenconsInterface, consoleReadIn,
  consoleReadOut, consoleWrite, consoleWriteIn, isXenconsBroken,
} from '../../../hypervisor/public/io/console.ts';

const newPage = (): Uint8Array => new Uint8Array(new SharedArrayBuffer(4096));
const dv = (p: Uint8Array): DataView => new DataView(p.buffer, p.byteOffset, p.byteLength);
const bytes = (n: number, from = 0): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A fresh page whose `half` has the index pair (cons, prod). */
function pageAt(half: 'in' | 'out', cons: number, prod: number): Uint8Array {
  const p = newPage();
  dv(p).setUint32(XenconsInterface[`${half}_cons`], cons >>> 0, true);
  dv(p).setUint32(XenconsInterface[`${half}_prod`], prod >>> 0, true);
  return p;
}

describe('console ring (xencons_interface)', () => {
  it('lays out in[1024]@0, out[2048]@1024, in_cons@3072, in_prod@3076, out_cons@3080, out_prod@3084, connection@3088', () => {
    assert.deepEqual(
      [XenconsInterface.in, XenconsInterface.out, XenconsInterface.in_cons, XenconsInterface.in_prod,
        XenconsInterface.out_cons, XenconsInterface.out_prod, XenconsInterface.connection],
      [0, 1024, 3072, 3076, 3080, 3084, 3088],
    );
    assert.deepEqual([XENCONS_IN_SIZE, XENCONS_OUT_SIZE], [1024, 2048]);
    assert.deepEqual([XenconsConnection.XENCONS_CONNECTED, XenconsConnection.XENCONS_DISCONNECTED], [0, 1]);
  });

  it('guest output lands in out[] at out_prod, out_prod advances, the backend drains it and advances out_cons', () => {
    const p = newPage();
    assert.equal(consoleWrite(p, text('hello\r\n')), 7);
    assert.equal(new TextDecoder().decode(p.subarray(1024, 1031)), 'hello\r\n');
    assert.equal(dv(p).getUint32(3084, true), 7);
    assert.equal(dv(p).getUint32(3080, true), 0);
    const got = consoleReadOut(p);
    assert.ok(got instanceof Uint8Array);
    assert.equal(new TextDecoder().decode(got), 'hello\r\n');
    assert.equal(dv(p).getUint32(3080, true), 7);
    assert.deepEqual(consoleReadOut(p), new Uint8Array(0));
  });

  it('backend input lands in in[] at in_prod and the guest reads it back', () => {
    const p = newPage();
    assert.equal(consoleWriteIn(p, text('ls\r')), 3);
    assert.equal(dv(p).getUint32(3076, true), 3);
    assert.deepEqual(consoleReadIn(p), text('ls\r'));
    assert.equal(dv(p).getUint32(3072, true), 3);
  });

  describe('a write stops when the ring is full', () => {
    const ROWS: readonly [row: string, half: 'in' | 'out', used: number, len: number, written: number][] = [
      ['out: empty ring, 3000 bytes offered', 'out', 0, 3000, 2048],
      ['out: 2000 in flight, 100 offered', 'out', 2000, 100, 48],
      ['out: full', 'out', 2048, 1, 0],
      ['out: nothing offered', 'out', 0, 0, 0],
      ['in: empty ring, 1500 bytes offered', 'in', 0, 1500, 1024],
      ['in: 1000 in flight, 100 offered', 'in', 1000, 100, 24],
      ['in: full', 'in', 1024, 5, 0],
    ];
    for (const [row, half, used, len, written] of ROWS) {
      it(`${row} -> ${written} written`, () => {
        const p = pageAt(half, 5, 5 + used);
        const n = half === 'out' ? consoleWrite(p, bytes(len)) : consoleWriteIn(p, bytes(len));
        assert.equal(n, written);
        assert.equal(dv(p).getUint32(XenconsInterface[`${half}_prod`], true), 5 + used + written);
      });
    }
  });

  describe('indexes wrap around both the buffer and 2^32', () => {
    const STARTS = [0, 2040, 0xfffffffa, 0xffffff00, 0x7ffffffe];
    for (const start of STARTS) {
      it(`out, starting at 0x${start.toString(16)}: bytes come back in order`, () => {
        const p = pageAt('out', start, start);
        let sent = 0;
        let got = 0;
        for (let round = 0; round < 6; round++) {
          const n = consoleWrite(p, bytes(1500, sent));
          assert.equal(typeof n, 'number');
          sent += n as number;
          const out = consoleReadOut(p);
          assert.ok(out instanceof Uint8Array);
          assert.deepEqual(out, bytes(out.length, got));
          got += out.length;
        }
        assert.equal(got, 9000);
        assert.equal(dv(p).getUint32(XenconsInterface.out_cons, true), (start + 9000) >>> 0);
      });

      it(`in, starting at 0x${start.toString(16)}: bytes come back in order`, () => {
        const p = pageAt('in', start, start);
        let got = 0;
        for (let round = 0; round < 4; round++) {
          assert.equal(consoleWriteIn(p, bytes(700, got)), 700);
          assert.deepEqual(consoleReadIn(p), bytes(700, got));
          got += 700;
        }
      });
    }
  });

  describe('impossible indexes (prod - cons > ring size) are reported, not trusted', () => {
    const ROWS: readonly [row: string, half: 'in' | 'out', cons: number, prod: number][] = [
      ['out: prod a byte past a full ring', 'out', 0, 2049],
      ['out: prod behind cons', 'out', 100, 99],
      ['out: prod 2^31 ahead', 'out', 0xfffffff0, 0x7ffffff0],
      ['in: prod a byte past a full ring', 'in', 4, 4 + 1025],
      ['in: prod behind cons', 'in', 1, 0],
    ];
    for (const [row, half, cons, prod] of ROWS) {
      it(`${row}: reader and writer both get "broken", nothing moves`, () => {
        const p = pageAt(half, cons, prod);
        const before = p.slice();
        const w = half === 'out' ? consoleWrite(p, bytes(10)) : consoleWriteIn(p, bytes(10));
        const r = half === 'out' ? consoleReadOut(p) : consoleReadIn(p);
        for (const res of [w, r]) {
          assert.ok(isXenconsBroken(res));
          assert.deepEqual(res, { broken: half, cons: cons >>> 0, prod: prod >>> 0 });
        }
        assert.deepEqual(p, before);
      });
    }

    it('a full ring (prod - cons = size) is not broken: the reader gets all of it', () => {
      const p = pageAt('out', 0xffffffff, 2047);
      const r = consoleReadOut(p);
      assert.ok(r instanceof Uint8Array);
      assert.equal(r.length, 2048);
    });

    it('a broken `in` half does not stop the `out` half', () => {
      const p = pageAt('in', 0, 5000);
      assert.equal(consoleWrite(p, text('still here')), 10);
      assert.deepEqual(consoleReadOut(p), text('still here'));
    });
  });
});
