// The two-level event-channel ABI's bit logic over one shared_info page, written once for both
// ends: Xen's half (xen/common/event_2l.c: set_pending, unmask) run by the hypervisor's model and
// by a sender on the fast path, and the guest's half (the shape of Linux's events_2l.c upcall
// handler) run by the kernel; plus the check that no wake-up was lost. Every bit is touched with
// an Atomics operation as wide as the C field (xen_ulong_t words, the u8 evtchn_upcall_pending),
// in the order event_2l.c uses, since guest and Xen work on the page at the same time.
import { EVTCHN_2L_NR_CHANNELS, SharedInfo, VcpuInfo } from './xen.ts';

/** 1n << i for i < 64, made once (the send path would otherwise build BigInts per send). */
const BIT: readonly bigint[] = Array.from({ length: 64 }, (_, i) => 1n << BigInt(i));

const WORDS = EVTCHN_2L_NR_CHANNELS / 64;
const PENDING = SharedInfo.evtchn_pending / 8;
const MASK = SharedInfo.evtchn_mask / 8;
const selWord = (vcpu: number): number => (vcpu * SharedInfo.VCPU_INFO_SIZE + VcpuInfo.evtchn_pending_sel) / 8;
const upcallByte = (vcpu: number): number => vcpu * SharedInfo.VCPU_INFO_SIZE + VcpuInfo.evtchn_upcall_pending;

/** What Xen's half did with a notification (set_pending) or an unmask. */
export type Delivery2l =
  /** set_pending: pending[p] was already 1, no new edge. */
  | 'already-pending'
  /** set_pending: pending[p] set, but the port is masked: the edge is lost until unmask. */
  | 'masked'
  /** unmask: the port was not masked. */
  | 'not-masked'
  /** unmask: unmasked, nothing pending. */
  | 'not-pending'
  /** The selector bit for the port's word was already set: the guest will find it anyway. */
  | 'selector-already-set'
  /** Selector newly set, but evtchn_upcall_pending was already 1 (no new kick). */
  | 'upcall-already-pending'
  /** evtchn_upcall_pending went 0 -> 1: the vCPU must be kicked (the caller does it). */
  | 'upcall';

/** A lost wake-up: unmasked ports pending in `word` that the vCPU was never told about. */
export interface LostWakeup {
  readonly word: number;
  readonly bits: bigint;
}

/** One shared_info page seen through the 2-level ABI. */
export class Evtchn2l {
  readonly big: BigInt64Array;
  readonly bytes: Uint8Array;
  /** i32 view: a vCPU sleeps on the word holding its evtchn_upcall_pending. */
  readonly words: Int32Array;

  constructor(sab: SharedArrayBuffer) {
    this.big = new BigInt64Array(sab);
    this.bytes = new Uint8Array(sab);
    this.words = new Int32Array(sab);
  }

  // ------------------------------------------------------------ Xen's half (event_2l.c)

  /** evtchn_2l_set_pending: pending[p], then (unmasked) the selector bit, then upcall_pending. */
  setPending(vcpu: number, port: number): Delivery2l {
    const bit = BIT[port & 63];
    const w = port >>> 6;
    if ((Atomics.or(this.big, PENDING + w, bit) & bit) !== 0n) return 'already-pending';
    if ((Atomics.load(this.big, MASK + w) & bit) !== 0n) return 'masked';
    return this.markWord(vcpu, w);
  }

  /** evtchn_2l_unmask: mask cleared; if it was set and the port is pending, deliver now. */
  unmask(vcpu: number, port: number): Delivery2l {
    const bit = BIT[port & 63];
    const w = port >>> 6;
    if ((Atomics.and(this.big, MASK + w, ~bit) & bit) === 0n) return 'not-masked';
    if ((Atomics.load(this.big, PENDING + w) & bit) === 0n) return 'not-pending';
    return this.markWord(vcpu, w);
  }

  /** Selector bit of word `w`, then vcpu_mark_events_pending. */
  private markWord(vcpu: number, w: number): Delivery2l {
    const sel = BIT[w];
    if ((Atomics.or(this.big, selWord(vcpu), sel) & sel) !== 0n) return 'selector-already-set';
    if (Atomics.exchange(this.bytes, upcallByte(vcpu), 1) !== 0) return 'upcall-already-pending';
    return 'upcall';
  }

  /** Wakes a thread sleeping on the word that holds the vCPU's evtchn_upcall_pending. */
  kick(vcpu: number): void {
    Atomics.notify(this.words, upcallByte(vcpu) >> 2);
  }

  isPending(port: number): boolean {
    return (Atomics.load(this.big, PENDING + (port >>> 6)) & BIT[port & 63]) !== 0n;
  }

  isMasked(port: number): boolean {
    return (Atomics.load(this.big, MASK + (port >>> 6)) & BIT[port & 63]) !== 0n;
  }

  /** Whether the selector bit of the port's word is set in the vCPU's evtchn_pending_sel. */
  selectorSet(vcpu: number, port: number): boolean {
    return (Atomics.load(this.big, selWord(vcpu)) & BIT[port >>> 6]) !== 0n;
  }

  /** evtchn_2l_clear_pending (a port closed or reset). */
  clearPending(port: number): void {
    Atomics.and(this.big, PENDING + (port >>> 6), ~BIT[port & 63]);
  }

  // ------------------------------------------------------------ the guest's half

  upcallPending(vcpu: number): boolean {
    return Atomics.load(this.bytes, upcallByte(vcpu)) !== 0;
  }

  /**
   * The upcall handler: while evtchn_upcall_pending is set, clear it, swap the selector out, and
   * for each selected word take every pending unmasked port (clearing its pending bit before
   * calling `handler`). Returns how many passes found the upcall pending.
   */
  handleEvents(vcpu: number, handler: (port: number) => void): number {
    let passes = 0;
    while (Atomics.load(this.bytes, upcallByte(vcpu)) !== 0) {
      passes++;
      Atomics.store(this.bytes, upcallByte(vcpu), 0);
      let sel = BigInt.asUintN(64, Atomics.exchange(this.big, selWord(vcpu), 0n));
      while (sel !== 0n) {
        const w = ctz(sel);
        sel &= ~BIT[w];
        let bits = BigInt.asUintN(64, Atomics.load(this.big, PENDING + w) & ~Atomics.load(this.big, MASK + w));
        while (bits !== 0n) {
          const b = ctz(bits);
          bits &= ~BIT[b];
          Atomics.and(this.big, PENDING + w, ~BIT[b]);
          handler(w * 64 + b);
        }
      }
    }
    return passes;
  }

  // ------------------------------------------------------------ the ABI's invariant

  /**
   * Every unmasked pending port is announced: its word's selector bit and upcall_pending are set
   * (else the vCPU may sleep for ever). The first word breaking that, or undefined.
   */
  lostWakeup(vcpu: number): LostWakeup | undefined {
    const upcall = this.upcallPending(vcpu);
    const sel = BigInt.asUintN(64, Atomics.load(this.big, selWord(vcpu)));
    for (let w = 0; w < WORDS; w++) {
      const live = BigInt.asUintN(64, Atomics.load(this.big, PENDING + w) & ~Atomics.load(this.big, MASK + w));
      if (live !== 0n && (!upcall || (sel & BIT[w]) === 0n)) return { word: w, bits: live };
    }
    return undefined;
  }
}

function ctz(x: bigint): number {
  let n = 0;
  while ((x & 1n) === 0n) {
    x >>= 1n;
    n++;
  }
  return n;
}
