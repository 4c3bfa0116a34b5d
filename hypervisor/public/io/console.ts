// xen/include/public/io/console.h: the PV console page (struct xencons_interface), two byte
// streams with free-running u32 indexes, and the copy loops both ends run over it (Linux
// hvc_xen on the guest side, xenconsoled on dom0's). spec/hypervisor-and-xenbus.md §3.4.
//
// The page is shared with the peer: indexes are re-read and checked on every call, and an
// impossible pair (prod - cons > ring size) is reported, never looped on or thrown.
import { XEN_PAGE_SIZE } from '../xen.ts';

/** XENCONS_RING_IDX. */
export type XenconsRingIdx = number;

/** Byte offsets of struct xencons_interface (one 4 KiB page). */
export const XenconsInterface = {
  /** char in[1024]: backend -> guest (keyboard input). */
  in: 0,
  /** char out[2048]: guest -> backend (console output). */
  out: 1024,
  in_cons: 3072,
  in_prod: 3076,
  out_cons: 3080,
  out_prod: 3084,
  /** u8 connection (Xen HEAD; absent from older headers, where the struct ends here). */
  connection: 3088,
} as const;

/** sizeof(in) and sizeof(out), which MASK_XENCONS_IDX masks with. */
export const XENCONS_IN_SIZE = 1024;
export const XENCONS_OUT_SIZE = 2048;

/** Values of the `connection` byte. */
export enum XenconsConnection {
  XENCONS_CONNECTED = 0,
  XENCONS_DISCONNECTED = 1,
}

/** MASK_XENCONS_IDX(idx, ring): the ring sizes are powers of two. */
export const maskXenconsIdx = (idx: XenconsRingIdx, size: number): number => idx & (size - 1);

/** One direction of the page: its buffer, size and index words. */
export interface XenconsRingHalf {
  readonly name: 'in' | 'out';
  readonly buf: number;
  readonly size: number;
  readonly cons: number;
  readonly prod: number;
}

export const XENCONS_RING_IN: XenconsRingHalf = {
  name: 'in', buf: XenconsInterface.in, size: XENCONS_IN_SIZE,
  cons: XenconsInterface.in_cons, prod: XenconsInterface.in_prod,
};
export const XENCONS_RING_OUT: XenconsRingHalf = {
  name: 'out', buf: XenconsInterface.out, size: XENCONS_OUT_SIZE,
  cons: XenconsInterface.out_cons, prod: XenconsInterface.out_prod,
};

/**
 * What a copy returns instead of data when the indexes are impossible. Linux hvc_xen logs
 * "Illegal ring page indices" and fails the call; the ring is unusable until the peer fixes it.
 */
export interface XenconsBroken {
  readonly broken: 'in' | 'out';
  readonly cons: XenconsRingIdx;
  readonly prod: XenconsRingIdx;
}

export const isXenconsBroken = (r: unknown): r is XenconsBroken =>
  typeof r === 'object' && r !== null && 'broken' in r;

function words(page: Uint8Array): Uint32Array {
  if (page.byteOffset % 4 !== 0) throw new RangeError('console page must be 4-byte aligned');
  if (page.byteLength < XEN_PAGE_SIZE) throw new RangeError(`console page is ${page.byteLength} bytes, not ${XEN_PAGE_SIZE}`);
  return new Uint32Array(page.buffer, page.byteOffset, XEN_PAGE_SIZE / 4);
}

/**
 * Producer side of one half: copies as much of `data` as fits, then publishes the new prod
 * (after the bytes: Atomics.store orders it). Returns the count copied (0 when full).
 */
export function xenconsRingWrite(page: Uint8Array, half: XenconsRingHalf, data: Uint8Array): number | XenconsBroken {
  const w = words(page);
  const cons = Atomics.load(w, half.cons / 4);
  const prod = Atomics.load(w, half.prod / 4);
  const used = (prod - cons) >>> 0;
  if (used > half.size) return { broken: half.name, cons, prod };
  const n = Math.min(data.length, half.size - used);
  let done = 0;
  while (done < n) {
    const at = maskXenconsIdx(prod + done, half.size);
    const chunk = Math.min(n - done, half.size - at);
    page.set(data.subarray(done, done + chunk), half.buf + at);
    done += chunk;
  }
  Atomics.store(w, half.prod / 4, (prod + n) >>> 0);
  return n;
}

/** Consumer side of one half: takes everything published, then publishes the new cons. */
export function xenconsRingRead(page: Uint8Array, half: XenconsRingHalf): Uint8Array | XenconsBroken {
  const w = words(page);
  const cons = Atomics.load(w, half.cons / 4);
  const prod = Atomics.load(w, half.prod / 4);
  const avail = (prod - cons) >>> 0;
  if (avail > half.size) return { broken: half.name, cons, prod };
  const out = new Uint8Array(avail);
  let done = 0;
  while (done < avail) {
    const at = maskXenconsIdx(cons + done, half.size);
    const chunk = Math.min(avail - done, half.size - at);
    out.set(page.subarray(half.buf + at, half.buf + at + chunk), done);
    done += chunk;
  }
  Atomics.store(w, half.cons / 4, prod);
  return out;
}

/** Guest: console output into `out`; returns how many bytes fit (the rest is the caller's). */
export const consoleWrite = (page: Uint8Array, bytes: Uint8Array): number | XenconsBroken =>
  xenconsRingWrite(page, XENCONS_RING_OUT, bytes);

/** Backend (xenconsoled): drains the guest's output. */
export const consoleReadOut = (page: Uint8Array): Uint8Array | XenconsBroken => xenconsRingRead(page, XENCONS_RING_OUT);

/** Backend: input for the guest into `in`; returns how many bytes fit. */
export const consoleWriteIn = (page: Uint8Array, bytes: Uint8Array): number | XenconsBroken =>
  xenconsRingWrite(page, XENCONS_RING_IN, bytes);

/** Guest: drains its input. */
export const consoleReadIn = (page: Uint8Array): Uint8Array | XenconsBroken => xenconsRingRead(page, XENCONS_RING_IN);
