// The page fingerprint log-dirty compares (page-fingerprint.ts): SIMD over a big guest's extents
// (shared WebAssembly memories), a scalar loop over single frames. Each must see any one changed
// word of a page, whatever the word and the bit, and only that page's bytes may count.
import assert from 'node:assert/strict';
import { FINGERPRINT_SCRATCH_BYTES, PRINTER_MAX_PAGES, fingerprint, fingerprintableBuffer, foldPrints, printerOf, runDigesterOf } from '../../hypervisor/page-fingerprint.ts';
import { XEN_PAGE_SIZE } from '../../hypervisor/public/xen.ts';

/** A page of bytes from a fixed xorshift stream (no Math.random: the same page every run). */
function fill(bytes: Uint8Array, seed: number): void {
  let x = seed | 1;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
}

const print = (sab: SharedArrayBuffer, offset: number): [number, number] => {
  const out = new Int32Array(2);
  fingerprint(sab, offset, out, 0);
  return [out[0], out[1]];
};

for (const kind of ['an extent (WebAssembly SIMD)', 'a single frame (scalar)'] as const) {
  describe(`page fingerprint: ${kind}`, () => {
    const make = (): { sab: SharedArrayBuffer; offset: number } =>
      kind.startsWith('an extent') ? { sab: fingerprintableBuffer(32 * XEN_PAGE_SIZE), offset: 5 * XEN_PAGE_SIZE } : { sab: new SharedArrayBuffer(XEN_PAGE_SIZE), offset: 0 };

    it('flipping any one bit of any word changes it; flipping it back restores it', () => {
      const { sab, offset } = make();
      const page = new Uint8Array(sab, offset, XEN_PAGE_SIZE);
      fill(page, 0x2545f491);
      const words = new Int32Array(sab, offset, XEN_PAGE_SIZE / 4);
      const before = print(sab, offset);
      for (let w = 0; w < words.length; w++) {
        for (const bit of [0, (w * 7) % 32, 31]) {
          words[w] ^= 1 << bit;
          assert.notDeepEqual(print(sab, offset), before, `word ${w}, bit ${bit}`);
          words[w] ^= 1 << bit;
        }
      }
      assert.deepEqual(print(sab, offset), before);
    });

    it('two words swapped, or a zero page made non-zero in its last byte, change it', () => {
      const { sab, offset } = make();
      const words = new Int32Array(sab, offset, XEN_PAGE_SIZE / 4);
      const zero = print(sab, offset);
      new Uint8Array(sab, offset, XEN_PAGE_SIZE)[XEN_PAGE_SIZE - 1] = 1;
      assert.notDeepEqual(print(sab, offset), zero);
      fill(new Uint8Array(sab, offset, XEN_PAGE_SIZE), 0x9e3779b9);
      const before = print(sab, offset);
      [words[3], words[700]] = [words[700], words[3]];
      assert.notDeepEqual(print(sab, offset), before);
    });

    if (!kind.startsWith('an extent')) return;
    it('reads its own page only: writes next to it in the buffer leave it as it was', () => {
      const { sab, offset } = make();
      fill(new Uint8Array(sab), 0x1234567);
      const before = print(sab, offset);
      const all = new Uint8Array(sab);
      all[offset - 1] ^= 0xff;
      all[offset + XEN_PAGE_SIZE] ^= 0xff;
      assert.deepEqual(print(sab, offset), before);
    });
  });
}

describe('page fingerprint: a run digest (one WebAssembly call for many pages)', () => {
  it("is the fold of the run's page prints; any one page's change changes it; single-frame buffers have none", () => {
    const pages = 16;
    const sab = fingerprintableBuffer(pages * XEN_PAGE_SIZE);
    fill(new Uint8Array(sab), 0x1234567);
    const prints = new Int32Array(2 * pages);
    for (let p = 0; p < pages; p++) fingerprint(sab, p * XEN_PAGE_SIZE, prints, p);
    const run = runDigesterOf(sab)!;
    const digest = (first: number, count: number): [number, number] => {
      const out = new Int32Array(2);
      run(first * XEN_PAGE_SIZE, count, out, 0);
      return [out[0], out[1]];
    };
    const folded = (first: number, count: number): [number, number] => {
      const out = new Int32Array(2);
      foldPrints(prints, first, count, out, 0);
      return [out[0], out[1]];
    };
    assert.deepEqual(digest(0, pages), folded(0, pages));
    assert.deepEqual(digest(3, 9), folded(3, 9));
    const before = digest(0, pages);
    const bytes = new Uint8Array(sab);
    for (let p = 0; p < pages; p++) {
      bytes[p * XEN_PAGE_SIZE + ((p * 331) % XEN_PAGE_SIZE)] ^= 0x40;
      assert.notDeepEqual(digest(0, pages), before, `page ${p}`);
      bytes[p * XEN_PAGE_SIZE + ((p * 331) % XEN_PAGE_SIZE)] ^= 0x40;
    }
    assert.deepEqual(digest(0, pages), before);
    // Two pages' prints swapped (pages swapped): the fold is in order.
    const a = bytes.slice(0, XEN_PAGE_SIZE);
    bytes.copyWithin(0, XEN_PAGE_SIZE, 2 * XEN_PAGE_SIZE);
    bytes.set(a, XEN_PAGE_SIZE);
    assert.notDeepEqual(digest(0, pages), before);
    assert.equal(runDigesterOf(new SharedArrayBuffer(XEN_PAGE_SIZE)), undefined);
  });
});

describe('page fingerprint: a run of prints (one WebAssembly call for many pages)', () => {
  it("gives each page's own print, in order, into the caller's array; the buffer's bytes are left as they were", () => {
    const pages = 16;
    const sab = fingerprintableBuffer(pages * XEN_PAGE_SIZE);
    assert.equal(sab.byteLength, pages * XEN_PAGE_SIZE + FINGERPRINT_SCRATCH_BYTES);
    const bytes = new Uint8Array(sab, 0, pages * XEN_PAGE_SIZE);
    fill(bytes, 0x7654321);
    const before = bytes.slice();
    const out = new Int32Array(2 * (pages + 3)).fill(-1);
    printerOf(sab)!(2 * XEN_PAGE_SIZE, 11, out, 3);
    assert.deepEqual([...out.subarray(0, 6)], [-1, -1, -1, -1, -1, -1], 'nothing before out[2 * i]');
    for (let k = 0; k < 11; k++) assert.deepEqual([out[2 * (3 + k)], out[2 * (3 + k) + 1]], print(sab, (2 + k) * XEN_PAGE_SIZE), `page ${2 + k}`);
    assert.deepEqual([...out.subarray(2 * 14)], [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1], 'nothing after the run');
    assert.deepEqual(bytes, before);
  });

  it('refuses a run past the buffer\'s own bytes or longer than its scratch holds; single-frame buffers have none', () => {
    const sab = fingerprintableBuffer(16 * XEN_PAGE_SIZE);
    const out = new Int32Array(2 * PRINTER_MAX_PAGES + 2);
    assert.throws(() => printerOf(sab)!(XEN_PAGE_SIZE, 16, out, 0), RangeError);
    assert.throws(() => printerOf(sab)!(0, PRINTER_MAX_PAGES + 1, out, 0), RangeError);
    assert.equal(printerOf(new SharedArrayBuffer(XEN_PAGE_SIZE)), undefined);
  });
});
