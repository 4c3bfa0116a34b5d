// A 64-bit fingerprint of a 4 KiB page: how log-dirty (paging.ts) sees that a guest wrote a page
// with no write fault to take. A big guest's extents are shared WebAssembly memories
// (memory.ts), so their pages are fingerprinted by a small WebAssembly SIMD function, about four
// times faster than JavaScript's scalar loop - a live migration passes over the whole guest at
// enable and at each CLEAN. Pages of other buffers (single frames) take the scalar loop.
//
// Both are multiply-rotate lanes over the page's 32-bit words, folded into two 32-bit halves:
// each step of a lane is a bijection of the lane's state and of the word read, so a page that
// differs in one word always differs in its fingerprint; more changes collide with odds of about
// 2^-64. A page is always fingerprinted the same way (a frame's buffer does not change).
import { XEN_PAGE_SIZE } from './public/xen.ts';

const WORDS_PER_PAGE = XEN_PAGE_SIZE / 4;

/** One Int32Array per buffer: fingerprinting a page in JavaScript makes no object. */
const wordViews = new WeakMap<SharedArrayBuffer, Int32Array>();

function words(sab: SharedArrayBuffer): Int32Array {
  let w = wordViews.get(sab);
  if (!w) wordViews.set(sab, (w = new Int32Array(sab)));
  return w;
}

/** The scalar fingerprint of the page at byte `offset` of `sab`, into out[2 * i], out[2 * i + 1]. */
export function scalarFingerprint(sab: SharedArrayBuffer, offset: number, out: Int32Array, i: number): void {
  const w = words(sab);
  const base = offset >> 2;
  let a = 0x243f6a88 | 0;
  let b = 0x85a308d3 | 0;
  for (let j = base, end = base + WORDS_PER_PAGE; j < end; j += 2) {
    a = Math.imul(a ^ w[j], 0x9e3779b1);
    a = (a << 13) | (a >>> 19);
    b = Math.imul(b ^ w[j + 1], 0x85ebca77);
    b = (b << 17) | (b >>> 15);
  }
  out[2 * i] = Math.imul(a ^ (b >>> 16), 0xc2b2ae35);
  out[2 * i + 1] = Math.imul(b ^ (a >>> 13), 0x27d4eb2f);
}

// The WebAssembly module, assembled here (a few opcodes; no toolchain needed): it imports one
// shared memory and exports fp(offset) -> lo and hi() -> the same page's hi, and two loops over a
// run of pages: run() folds their prints into one digest, prints() stores each in the scratch.
// Eight v128 accumulators (32 lanes of 32 bits) take 128 bytes a step: lane = rotl((lane ^ word)
// * K, r); then every lane is folded into lo and hi in turn by the same step with other constants.
const uleb = (n: number): number[] => {
  const o: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    o.push(b);
  } while (n);
  return o;
};
const sleb = (n: number): number[] => {
  const o: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) return [...o, b];
    o.push(b | 0x80);
  }
};
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, bytes: number[]): number[] => [id, ...uleb(bytes.length), ...bytes];
const name = (s: string): number[] => vec([...new TextEncoder().encode(s)].map((x) => [x]));
const I32 = 0x7f;
const V128 = 0x7b;
const op = {
  localGet: (i: number) => [0x20, ...uleb(i)],
  localSet: (i: number) => [0x21, ...uleb(i)],
  localTee: (i: number) => [0x22, ...uleb(i)],
  globalGet: (i: number) => [0x23, ...uleb(i)],
  globalSet: (i: number) => [0x24, ...uleb(i)],
  i32Const: (n: number) => [0x41, ...sleb(n | 0)],
  i32Add: [0x6a], i32Mul: [0x6c], i32Xor: [0x73], i32ShrU: [0x76], i32Rotl: [0x77], i32LtU: [0x49], i32GeU: [0x4f],
  call: (i: number) => [0x10, ...uleb(i)],
  simd: (n: number) => [0xfd, ...uleb(n)],
};
const v128Load = (offset: number): number[] => [...op.simd(0x00), 4, ...uleb(offset)];
const i32Store = (offset: number): number[] => [0x36, 2, ...uleb(offset)];
const v128Const = (lanes: readonly number[]): number[] => {
  const b = new DataView(new ArrayBuffer(16));
  lanes.forEach((x, i) => b.setUint32(4 * i, x >>> 0, true));
  return [...op.simd(0x0c), ...new Uint8Array(b.buffer)];
};
const V128_XOR = op.simd(0x51);
const V128_OR = op.simd(0x50);
const I32X4_SHL = op.simd(0xab);
const I32X4_SHR_U = op.simd(0xad);
const I32X4_MUL = op.simd(0xb5);
const i32x4ExtractLane = (l: number): number[] => [...op.simd(0x1b), l];

/** Odd multipliers, four per accumulator; and each accumulator's rotation. */
const MUL = [
  0x9e3779b1, 0x85ebca77, 0xc2b2ae3d, 0x27d4eb2f, 0x165667b1, 0xd3a2646d, 0xfd7046c5, 0xb55a4f09,
  0x243f6a89, 0x85a308d3, 0x13198a2f, 0x03707345, 0x299f31d1, 0x082efa99, 0xec4e6c89, 0x452821e7,
  0x38d01377, 0xbe5466cf, 0x34e90c6d, 0xc0ac29b7, 0xc97c50dd, 0x3f84d5b5, 0xb5470917, 0x9216d5d9,
  0x8979fb1b, 0xd1310ba7, 0x98dfb5ad, 0x2ffd72db, 0xd01adfb7, 0xb8e1afed, 0x6a267e97, 0xba7c9045,
];
const ROT = [13, 17, 11, 15, 19, 7, 9, 21];
const ACC = 8;

/**
 * A run's digest: its pages' fingerprints folded in order, each half by a multiply-rotate step
 * (a bijection of the digest and of the print folded in, so a run one of whose pages' prints
 * differs always differs). Log-dirty compares a whole extent's digest with one call into
 * WebAssembly and looks at its pages one by one only when it differs.
 */
const RUN_LO = { init: 0x3c6ef372, mul: 0xa54ff53b, rot: 11 };
const RUN_HI = { init: 0x510e527f, mul: 0x9b05688d, rot: 15 };

/** One fold step of a run's digest half (as the WebAssembly run function makes it). */
const foldStep = (d: number, x: number, k: typeof RUN_LO): number => {
  const m = Math.imul(d ^ x, k.mul);
  return (m << k.rot) | (m >>> (32 - k.rot));
};

/**
 * The digest of `count` pages whose fingerprints are prints[2 * first..], into out[2 * i] and
 * out[2 * i + 1]: what runDigest() gives for those pages when each still has that fingerprint.
 */
export function foldPrints(prints: Int32Array, first: number, count: number, out: Int32Array, i: number): void {
  let lo = RUN_LO.init | 0;
  let hi = RUN_HI.init | 0;
  for (let j = 2 * first, end = 2 * (first + count); j < end; j += 2) {
    lo = foldStep(lo, prints[j], RUN_LO);
    hi = foldStep(hi, prints[j + 1], RUN_HI);
  }
  out[2 * i] = lo;
  out[2 * i + 1] = hi;
}

function fingerprintModule(): Uint8Array {
  // Locals: 0 offset (the parameter), 1 end, 2..9 the accumulators, 10 a temporary, 11 lo, 12 hi.
  const END = 1;
  const acc = (k: number): number => 2 + k;
  const TMP = 10;
  const LO = 11;
  const HI = 12;
  const code: number[] = [...op.localGet(0), ...op.i32Const(XEN_PAGE_SIZE), ...op.i32Add, ...op.localSet(END)];
  // Each lane starts at its own value: the multipliers of the accumulator two along.
  for (let k = 0; k < ACC; k++) code.push(...v128Const(MUL.slice(4 * ((k + 2) % ACC), 4 * ((k + 2) % ACC) + 4)), ...op.localSet(acc(k)));
  code.push(0x03, 0x40); // loop
  for (let k = 0; k < ACC; k++) {
    code.push(...op.localGet(acc(k)), ...op.localGet(0), ...v128Load(16 * k), ...V128_XOR, ...v128Const(MUL.slice(4 * k, 4 * k + 4)), ...I32X4_MUL, ...op.localTee(TMP));
    code.push(...op.i32Const(ROT[k]), ...I32X4_SHL, ...op.localGet(TMP), ...op.i32Const(32 - ROT[k]), ...I32X4_SHR_U, ...V128_OR, ...op.localSet(acc(k)));
  }
  code.push(...op.localGet(0), ...op.i32Const(16 * ACC), ...op.i32Add, ...op.localTee(0), ...op.localGet(END), ...op.i32LtU, 0x0d, 0, 0x0b); // br_if loop; end
  code.push(...op.i32Const(0x243f6a88), ...op.localSet(LO), ...op.i32Const(0x85a308d3), ...op.localSet(HI));
  for (let k = 0; k < ACC; k++) {
    for (let l = 0; l < 4; l++) {
      code.push(...op.localGet(LO), ...op.localGet(acc(k)), ...i32x4ExtractLane(l), ...op.i32Xor, ...op.i32Const(0x9e3779b1), ...op.i32Mul, ...op.i32Const(13), ...op.i32Rotl, ...op.localSet(LO));
      code.push(...op.localGet(HI), ...op.localGet(acc(k)), ...i32x4ExtractLane(l), ...op.i32Xor, ...op.i32Const(0x85ebca77), ...op.i32Mul, ...op.i32Const(17), ...op.i32Rotl, ...op.localSet(HI));
    }
  }
  // The high half goes to the global (hi() reads it), the low half is returned: two i32s, where a
  // multi-value return would make a JavaScript array a page.
  code.push(...op.localGet(HI), ...op.localGet(LO), ...op.i32Const(13), ...op.i32ShrU, ...op.i32Xor, ...op.i32Const(0x27d4eb2f), ...op.i32Mul, ...op.globalSet(0));
  code.push(...op.localGet(LO), ...op.localGet(HI), ...op.i32Const(16), ...op.i32ShrU, ...op.i32Xor, ...op.i32Const(0xc2b2ae35), ...op.i32Mul, 0x0b);
  const body = [...vec([[...uleb(1), I32], [...uleb(ACC + 1), V128], [...uleb(2), I32]]), ...code];
  const hiBody = [...vec([]), ...op.globalGet(0), 0x0b];
  // run(offset, count) -> the digest's low half (high half in the global): fp() of each page in
  // turn, folded. Locals: 0 offset, 1 count (then the end), 2 lo, 3 hi.
  const runCode: number[] = [
    ...op.localGet(0), ...op.localGet(1), ...op.i32Const(XEN_PAGE_SIZE), ...op.i32Mul, ...op.i32Add, ...op.localSet(1),
    ...op.i32Const(RUN_LO.init), ...op.localSet(2), ...op.i32Const(RUN_HI.init), ...op.localSet(3),
    0x02, 0x40, 0x03, 0x40, // block, loop
    ...op.localGet(0), ...op.localGet(1), ...op.i32GeU, 0x0d, 1, // br_if out
    ...op.localGet(2), ...op.localGet(0), ...op.call(0), ...op.i32Xor, ...op.i32Const(RUN_LO.mul), ...op.i32Mul, ...op.i32Const(RUN_LO.rot), ...op.i32Rotl, ...op.localSet(2),
    ...op.localGet(3), ...op.globalGet(0), ...op.i32Xor, ...op.i32Const(RUN_HI.mul), ...op.i32Mul, ...op.i32Const(RUN_HI.rot), ...op.i32Rotl, ...op.localSet(3),
    ...op.localGet(0), ...op.i32Const(XEN_PAGE_SIZE), ...op.i32Add, ...op.localSet(0),
    0x0c, 0, 0x0b, 0x0b, // br loop; end loop; end block
    ...op.localGet(3), ...op.globalSet(0), ...op.localGet(2), 0x0b,
  ];
  const runBody = [...vec([[...uleb(2), I32]]), ...runCode];
  // prints(offset, count, at): fp() of each page in turn, its low and high halves stored as two
  // i32s at byte `at`, `at` + 4 (then `at` + 8 for the next page). Locals: 0 offset, 1 count
  // (then the end), 2 at.
  const printsCode: number[] = [
    ...op.localGet(0), ...op.localGet(1), ...op.i32Const(XEN_PAGE_SIZE), ...op.i32Mul, ...op.i32Add, ...op.localSet(1),
    0x02, 0x40, 0x03, 0x40, // block, loop
    ...op.localGet(0), ...op.localGet(1), ...op.i32GeU, 0x0d, 1, // br_if out
    ...op.localGet(2), ...op.localGet(0), ...op.call(0), ...i32Store(0),
    ...op.localGet(2), ...op.globalGet(0), ...i32Store(4),
    ...op.localGet(0), ...op.i32Const(XEN_PAGE_SIZE), ...op.i32Add, ...op.localSet(0),
    ...op.localGet(2), ...op.i32Const(8), ...op.i32Add, ...op.localSet(2),
    0x0c, 0, 0x0b, 0x0b, // br loop; end loop; end block
    0x0b,
  ];
  const printsBody = [...vec([]), ...printsCode];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, vec([[0x60, ...vec([[I32]]), ...vec([[I32]])], [0x60, ...vec([]), ...vec([[I32]])], [0x60, ...vec([[I32], [I32]]), ...vec([[I32]])], [0x60, ...vec([[I32], [I32], [I32]]), ...vec([])]])), // types: (i32) -> i32, () -> i32, (i32, i32) -> i32, (i32, i32, i32) -> ()
    ...section(2, vec([[...name('e'), ...name('m'), 0x02, 0x03, ...uleb(1), ...uleb(65536)]])), // import a shared memory
    ...section(3, vec([[0], [1], [2], [3]])),
    ...section(6, vec([[I32, 0x01, ...op.i32Const(0), 0x0b]])), // a mutable i32: the last high half
    ...section(7, vec([[...name('fp'), 0x00, 0], [...name('hi'), 0x00, 1], [...name('run'), 0x00, 2], [...name('prints'), 0x00, 3]])),
    ...section(10, vec([[...uleb(body.length), ...body], [...uleb(hiBody.length), ...hiBody], [...uleb(runBody.length), ...runBody], [...uleb(printsBody.length), ...printsBody]])),
  ]);
}

/** The part of the WebAssembly API used here (the project's type libraries do not declare it). */
interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}
interface WasmApi {
  Memory: new (d: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { readonly exports: Record<string, unknown> };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let module: object | undefined;
/** A wasm memory's functions: fp(offset) gives a page's low half, then hi() its high half. */
interface WasmFp {
  readonly fp: (offset: number) => number;
  readonly hi: () => number;
  readonly run: (offset: number, count: number) => number;
  readonly prints: (offset: number, count: number, at: number) => void;
}
/** Each wasm memory's functions, made with the memory (fingerprintableBuffer). */
const wasmFp = new WeakMap<SharedArrayBuffer, WasmFp>();
/** The WebAssembly.Memory behind a buffer that is one (memory.ts registers its extents). */
const wasmMemories = new WeakMap<SharedArrayBuffer, WasmMemory>();

/**
 * The fingerprinter's own bytes at the end of every buffer fingerprintableBuffer() makes, past the
 * `bytes` asked for: printerOf() writes a run's prints there, where JavaScript reads them in one go
 * (a WebAssembly function writes only to its memory). One wasm page; only its first 8 bytes per
 * page printed at once are ever touched.
 */
export const FINGERPRINT_SCRATCH_BYTES = 65536;

/**
 * A new shared buffer of `bytes` (a multiple of 64 KiB) and FINGERPRINT_SCRATCH_BYTES more, zeroed,
 * that fingerprint() reads with the SIMD function: the buffer of a shared WebAssembly memory. Its
 * user's bytes are the first `bytes`; the rest is the fingerprinter's.
 */
export function fingerprintableBuffer(bytes: number): SharedArrayBuffer {
  const pages = bytes / 65536;
  if (!Number.isInteger(pages) || pages < 1) throw new RangeError(`a wasm memory of ${bytes} bytes`);
  const whole = pages + FINGERPRINT_SCRATCH_BYTES / 65536;
  const mem = new wasm.Memory({ initial: whole, maximum: whole, shared: true });
  const sab = mem.buffer as SharedArrayBuffer;
  wasmMemories.set(sab, mem);
  // Its functions now, and a first use of them (its scratch's first page written): each memory's
  // first costs tens of microseconds (instance, first access, the page fault), paid here once
  // rather than in a big guest's enable, which would pay it for every 2 MiB at once.
  wasmFingerprinter(sab)!.prints(0, 1, bytes);
  return sab;
}

function wasmFingerprinter(sab: SharedArrayBuffer): WasmFp | undefined {
  let f = wasmFp.get(sab);
  if (f) return f;
  const mem = wasmMemories.get(sab);
  if (!mem) return undefined;
  module ??= new wasm.Module(fingerprintModule());
  const { exports } = new wasm.Instance(module, { e: { m: mem } });
  f = { fp: exports.fp as WasmFp['fp'], hi: exports.hi as WasmFp['hi'], run: exports.run as WasmFp['run'], prints: exports.prints as WasmFp['prints'] };
  wasmFp.set(sab, f);
  return f;
}

/** A page's fingerprint, into out[2 * i] and out[2 * i + 1]. */
export function fingerprint(sab: SharedArrayBuffer, offset: number, out: Int32Array, i: number): void {
  fingerprinterOf(sab)(offset, out, i);
}

/**
 * A fingerprinter for the pages of one buffer (a scan walks an extent's pages in a row: the
 * buffer's function is looked up once).
 */
export function fingerprinterOf(sab: SharedArrayBuffer): (offset: number, out: Int32Array, i: number) => void {
  const f = wasmFingerprinter(sab);
  if (!f) return (offset, out, i) => scalarFingerprint(sab, offset, out, i);
  const { fp, hi } = f;
  return (offset, out, i) => {
    out[2 * i] = fp(offset);
    out[2 * i + 1] = hi();
  };
}

/**
 * For a buffer fingerprint() reads with the SIMD function: the digest (foldPrints()) of the
 * `count` pages from byte `offset`, fingerprinted now, into out[2 * i] and out[2 * i + 1] - one
 * call into WebAssembly for them all. Undefined for other buffers.
 */
export function runDigesterOf(sab: SharedArrayBuffer): ((offset: number, count: number, out: Int32Array, i: number) => void) | undefined {
  const f = wasmFingerprinter(sab);
  if (!f) return undefined;
  const { run, hi } = f;
  return (offset, count, out, i) => {
    out[2 * i] = run(offset, count);
    out[2 * i + 1] = hi();
  };
}

/** The most pages printerOf() takes in one call: their prints fill the scratch. */
export const PRINTER_MAX_PAGES = FINGERPRINT_SCRATCH_BYTES / 8;

/**
 * For a buffer fingerprint() reads with the SIMD function: the fingerprints of the `count` pages
 * from byte `offset`, into out[2 * i..2 * (i + count)) - each as fingerprint() gives it, with one
 * call into WebAssembly for them all (a call per page from JavaScript costs a big guest's enable
 * more than the pages' reading). Undefined for other buffers.
 */
export function printerOf(sab: SharedArrayBuffer): ((offset: number, count: number, out: Int32Array, i: number) => void) | undefined {
  const f = wasmFingerprinter(sab);
  if (!f) return undefined;
  const { prints } = f;
  const at = sab.byteLength - FINGERPRINT_SCRATCH_BYTES;
  const scratch = new Int32Array(sab, at, FINGERPRINT_SCRATCH_BYTES / 4);
  return (offset, count, out, i) => {
    if (!(count >= 0 && count <= PRINTER_MAX_PAGES && offset >= 0 && offset % 4 === 0 && offset + count * XEN_PAGE_SIZE <= at)) {
      throw new RangeError(`prints of ${count} pages at ${offset} of a ${at}-byte buffer`);
    }
    prints(offset, count, at);
    out.set(scratch.subarray(0, 2 * count), 2 * i);
  };
}
