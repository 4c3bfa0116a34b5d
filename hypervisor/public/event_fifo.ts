// The FIFO event-channel ABI (xen/include/public/event_channel.h; Xen's half as in
// xen/common/event_fifo.c, the guest's half in the shape of Linux's events_fifo.c), written once
// for both ends. A domain that asks for it (EVTCHNOP_init_control) gives Xen a control block per
// vCPU (a READY bit and a queue head per priority) and, a page at a time (EVTCHNOP_expand_array),
// an event array: one 32-bit event word per port with PENDING, MASKED, LINKED and BUSY bits and a
// 17-bit LINK to the next port of the same queue - so up to 1 << 17 ports instead of the 2-level
// ABI's 4096. Guest and Xen touch the words at the same time: every access is an Atomics
// operation, and the word changes the guest may make to a LINKED word (set/clear MASKED, clear
// PENDING, clear LINKED and LINK) are the only ones Xen's compare-exchange has to survive.
//
// Xen's private per-domain state (each queue's tail and lock, each port's priority and last
// queue) is hypervisor memory; it lives in a SharedArrayBuffer so that a sender on the event
// fast path (evtchn_fast_path.ts) links events under the same lock as the hypervisor's thread.
import { SharedInfo, VcpuInfo, XEN_PAGE_SIZE } from './xen.ts';

// ------------------------------------------------------------------ the ABI (wire values)

/** event_word_t bit numbers. */
export const EVTCHN_FIFO_PENDING = 31;
export const EVTCHN_FIFO_MASKED = 30;
export const EVTCHN_FIFO_LINKED = 29;
export const EVTCHN_FIFO_BUSY = 28;

export const EVTCHN_FIFO_LINK_BITS = 17;
export const EVTCHN_FIFO_LINK_MASK = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
export const EVTCHN_FIFO_NR_CHANNELS = 1 << EVTCHN_FIFO_LINK_BITS;

/** Priorities: 0 is served first, 7 is what a port starts with, 15 is the last. */
export const EVTCHN_FIFO_PRIORITY_MAX = 0;
export const EVTCHN_FIFO_PRIORITY_DEFAULT = 7;
export const EVTCHN_FIFO_PRIORITY_MIN = 15;
export const EVTCHN_FIFO_MAX_QUEUES = EVTCHN_FIFO_PRIORITY_MIN + 1;

/** struct evtchn_fifo_control_block: byte offsets and size (72 bytes). */
export const EvtchnFifoControlBlock = {
  ready: 0,
  _rsvd: 4,
  head: 8,
  SIZE: 8 + 4 * EVTCHN_FIFO_MAX_QUEUES,
} as const;

/** Event words per event-array page, and the most pages an array can have (128). */
export const EVTCHN_FIFO_EVENT_WORDS_PER_PAGE = XEN_PAGE_SIZE / 4;
export const EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES = EVTCHN_FIFO_NR_CHANNELS / EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;

const P = 1 << EVTCHN_FIFO_PENDING;
const M = 1 << EVTCHN_FIFO_MASKED;
const L = 1 << EVTCHN_FIFO_LINKED;
const B = 1 << EVTCHN_FIFO_BUSY;
const HEAD = EvtchnFifoControlBlock.head / 4;
const READY = EvtchnFifoControlBlock.ready / 4;

// Static checks of the layout: a LINK field must hold every port, and the four bits sit above it.
if (EVTCHN_FIFO_NR_CHANNELS - 1 !== EVTCHN_FIFO_LINK_MASK || (EVTCHN_FIFO_LINK_MASK & (P | M | L | B)) !== 0) {
  throw new Error('event_fifo: LINK overlaps the flag bits');
}
if (EvtchnFifoControlBlock.SIZE !== 72) throw new Error('event_fifo: control block is not 72 bytes');

// ------------------------------------------------------------------ Xen's private state

/**
 * Layout of Xen's private FIFO state of one domain (i32 words): a lock serialising every link,
 * each vCPU queue's tail, and per port its priority, last queue (Xen's fifo_lastq)
 * and the pending state saved while its array page was missing (evtchn->pending).
 */
const PRIV_LOCK = 0;
const PRIV_TAIL = 1;
const PRIV_PORT = PRIV_TAIL + SharedInfo.XEN_LEGACY_MAX_VCPUS * EVTCHN_FIFO_MAX_QUEUES;
export const FIFO_PRIVATE_BYTES = (PRIV_PORT + EVTCHN_FIFO_NR_CHANNELS) * 4;
/** Per-port word: priority (bits 0-3), last priority (4-7), last vCPU (8-15), saved pending (16). */
const PORT_PRIO = 0xf;
const PORT_LASTP_SHIFT = 4;
const PORT_LASTV_SHIFT = 8;
const PORT_SAVED = 1 << 16;

/**
 * What a fast-path sender is handed to link events into a FIFO domain's queues itself: Xen's
 * private state and where the control blocks and event-array pages are.
 */
export interface FifoShare {
  readonly priv: SharedArrayBuffer;
  readonly control: readonly ({ readonly sab: SharedArrayBuffer; readonly offset: number } | undefined)[];
  readonly array: readonly { readonly sab: SharedArrayBuffer; readonly offset: number }[];
}

/** What Xen's half did with a notification (set_pending) or an unmask. */
export type DeliveryFifo =
  /** No event-array page holds the port yet: its pending state is kept for expand_array. */
  | 'no-array-page'
  /** The vCPU has no control block: PENDING set, nothing linked (Xen drops the link). */
  | 'no-control-block'
  /** PENDING set (or already set), but MASKED: not linked until unmasked. */
  | 'masked'
  /** The port was already LINKED on a queue: nothing more to do. */
  | 'already-linked'
  /** Linked behind the queue's tail: the guest will reach it from there. */
  | 'linked-to-tail'
  /** The new head of an empty queue, but that priority's READY bit was already set. */
  | 'ready-already-set'
  /** New head, READY newly set, but evtchn_upcall_pending was already 1 (no new kick). */
  | 'upcall-already-pending'
  /** evtchn_upcall_pending went 0 -> 1: the vCPU must be kicked (the caller does it). */
  | 'upcall'
  /** unmask: the port was not pending (MASKED cleared, nothing linked). */
  | 'not-pending';

/**
 * One domain's FIFO state seen through shared memory: Xen's private words, the control blocks
 * and the event-array pages. The hypervisor's thread holds every page; a fast-path sender holds
 * the pages it was handed, and traps for a port beyond them.
 */
export class EvtchnFifo {
  /** Xen's private state: the hypervisor's thread and fast-path senders have it, the guest not. */
  readonly priv: Int32Array | undefined;
  /** event_array[]: a 1024-word view per page, in the order expand_array added them. */
  readonly array: Int32Array[] = [];
  /** Control block of each vCPU (18 words), once init_control named it. */
  readonly control: (Int32Array | undefined)[] = [];
  /** The domain's shared_info bytes (evtchn_upcall_pending lives in vcpu_info). */
  readonly si: Uint8Array;

  /** A sender's view of a FIFO domain from what it was handed. */
  static fromShare(sharedInfo: SharedArrayBuffer, share: FifoShare): EvtchnFifo {
    const f = new EvtchnFifo(sharedInfo, share.priv);
    share.control.forEach((c, v) => c && f.mapControlBlock(v, c.sab, c.offset));
    for (const a of share.array) f.addArrayPage(a.sab, a.offset);
    return f;
  }

  /** `priv`: Xen's private state (the hypervisor makes it with `EvtchnFifo.xenPrivate()`). */
  constructor(sharedInfo: SharedArrayBuffer, priv?: SharedArrayBuffer) {
    this.si = new Uint8Array(sharedInfo);
    this.priv = priv ? new Int32Array(priv) : undefined;
    if (this.priv && this.priv.byteLength !== FIFO_PRIVATE_BYTES) throw new RangeError('event_fifo: private state of the wrong size');
  }

  static xenPrivate(): SharedArrayBuffer {
    return new SharedArrayBuffer(FIFO_PRIVATE_BYTES);
  }

  private get xen(): Int32Array {
    if (!this.priv) throw new Error("event_fifo: Xen's half run without Xen's private state");
    return this.priv;
  }

  /** num_evtchns as this holder sees it: the ports its array pages cover. */
  get numEvtchns(): number {
    return this.array.length * EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;
  }

  /** evtchn_fifo_word_from_port(): the page holding the port's word, or undefined past the array. */
  private word(port: number): Int32Array | undefined {
    return port >= 0 ? this.array[(port / EVTCHN_FIFO_EVENT_WORDS_PER_PAGE) | 0] : undefined;
  }

  /** Whether this holder has the page of `port` (a fast-path sender may not, yet). */
  hasWord(port: number): boolean {
    return this.word(port) !== undefined;
  }

  /** The raw event word (0 past the array). */
  eventWord(port: number): number {
    const a = this.word(port);
    return a ? Atomics.load(a, port % EVTCHN_FIFO_EVENT_WORDS_PER_PAGE) : 0;
  }

  // ------------------------------------------------------------ Xen's half: set-up

  /** map_control_block(): vCPU `vcpu`'s control block is `bytes` (72 bytes, 8-aligned). */
  mapControlBlock(vcpu: number, sab: SharedArrayBuffer, byteOffset: number): void {
    if (byteOffset % 8 !== 0) throw new RangeError('control block not 8-byte aligned');
    this.control[vcpu] = new Int32Array(sab, byteOffset, EvtchnFifoControlBlock.SIZE / 4);
  }

  /**
   * add_page_to_event_array(): the next page of the array (its words as the guest left them).
   * Returns the first port it covers; the caller re-raises ports pending meanwhile.
   */
  addArrayPage(sab: SharedArrayBuffer, byteOffset: number): number {
    const first = this.numEvtchns;
    if (this.array.length >= EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES) throw new RangeError('event_fifo: event array full');
    this.array.push(new Int32Array(sab, byteOffset, EVTCHN_FIFO_EVENT_WORDS_PER_PAGE));
    return first;
  }

  // ------------------------------------------------------------ Xen's half: per-port state

  priority(port: number): number {
    return Atomics.load(this.xen, PRIV_PORT + port) & PORT_PRIO;
  }

  /** evtchn_fifo_init() / evtchn_fifo_set_priority(): future events go to this priority's queue. */
  setPriority(port: number, priority: number): void {
    if (!Number.isInteger(priority) || priority < EVTCHN_FIFO_PRIORITY_MAX || priority > EVTCHN_FIFO_PRIORITY_MIN) {
      throw new RangeError(`priority ${priority}`);
    }
    for (;;) {
      const old = Atomics.load(this.xen, PRIV_PORT + port);
      if (Atomics.compareExchange(this.xen, PRIV_PORT + port, old, (old & ~PORT_PRIO) | priority) === old) return;
    }
  }

  /** evtchn->pending: set while the port had no array page. */
  savedPending(port: number): boolean {
    return (Atomics.load(this.xen, PRIV_PORT + port) & PORT_SAVED) !== 0;
  }

  setSavedPending(port: number, on: boolean): void {
    if (on) Atomics.or(this.xen, PRIV_PORT + port, PORT_SAVED);
    else Atomics.and(this.xen, PRIV_PORT + port, ~PORT_SAVED);
  }

  /** A queue's tail (0: empty), Xen's q->tail. */
  tail(vcpu: number, priority: number): number {
    return Atomics.load(this.xen, PRIV_TAIL + vcpu * EVTCHN_FIFO_MAX_QUEUES + priority);
  }

  private lock(): void {
    const xen = this.xen;
    while (Atomics.compareExchange(xen, PRIV_LOCK, 0, 1) !== 0) {
      // The holder is on another thread and holds the lock for a few word operations only.
    }
  }

  private unlock(): void {
    Atomics.store(this.xen, PRIV_LOCK, 0);
  }

  // ------------------------------------------------------------ Xen's half: events

  /**
   * evtchn_fifo_set_pending() for `port` towards vCPU `vcpu`: PENDING; and, unless MASKED or
   * already LINKED, link it at the tail of its priority's queue (or make it the head of an empty
   * queue and set READY). `undefined` when this holder lacks the port's page (the hypervisor's
   * thread then saves the pending state, setSavedPending) or, a fast-path sender, the page of the
   * queue's tail: then nothing changed and the sender traps.
   */
  setPending(vcpu: number, port: number): DeliveryFifo | undefined {
    const a = this.word(port);
    if (!a) return undefined;
    const xen = this.xen;
    const w = port % EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;
    let prio: number;
    this.lock();
    try {
      const st = Atomics.load(xen, PRIV_PORT + port);
      prio = st & PORT_PRIO;
      const lastP = (st >>> PORT_LASTP_SHIFT) & 0xf;
      const lastV = (st >>> PORT_LASTV_SHIFT) & 0xff;
      const tailIx = PRIV_TAIL + vcpu * EVTCHN_FIFO_MAX_QUEUES + prio;
      const tail = Atomics.load(xen, tailIx);
      // A sender whose copy of the array lacks the tail's page changes nothing and traps.
      if (tail !== 0 && !this.word(tail)) return undefined;
      Atomics.or(a, w, P);
      if (!this.control[vcpu]) return 'no-control-block';
      if ((Atomics.load(a, w) & M) !== 0) return 'masked';
      if ((Atomics.or(a, w, L) & L) !== 0) return 'already-linked';
      // Its old queue's tail, if it is still this port, is stale now: that queue is empty.
      const oldTail = PRIV_TAIL + lastV * EVTCHN_FIFO_MAX_QUEUES + lastP;
      if (Atomics.load(xen, oldTail) === port) Atomics.store(xen, oldTail, 0);
      if (lastV !== vcpu || lastP !== prio) {
        const keep = st & (PORT_PRIO | PORT_SAVED);
        Atomics.store(xen, PRIV_PORT + port, keep | (prio << PORT_LASTP_SHIFT) | (vcpu << PORT_LASTV_SHIFT));
      }
      // (The old queue's tail may have been this queue's: read it again.)
      const tailNow = Atomics.load(xen, tailIx);
      const linked = tailNow !== 0 && this.setLink(tailNow, port);
      if (!linked) Atomics.store(this.control[vcpu]!, HEAD + prio, port);
      Atomics.store(xen, tailIx, port);
      if (linked) return 'linked-to-tail';
    } finally {
      this.unlock();
    }
    // Only a new head sets READY (a READY set for every link could send the guest down a queue
    // it already emptied).
    const bit = 1 << prio;
    if ((Atomics.or(this.control[vcpu]!, READY, bit) & bit) !== 0) return 'ready-already-set';
    return Atomics.exchange(this.si, upcallByte(vcpu), 1) !== 0 ? 'upcall-already-pending' : 'upcall';
  }

  /**
   * evtchn_fifo_set_link(): set the tail word's LINK to `port` if it is still LINKED (the guest
   * may have consumed it meanwhile: then the queue is empty and `port` becomes the head). Marks
   * the word BUSY after a first failed try so that the guest cannot unmask under it, which
   * bounds the retries. Returns whether it linked.
   */
  private setLink(tail: number, port: number): boolean {
    const a = this.word(tail)!;
    const w = tail % EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;
    const tryOnce = (): 0 | 1 | -1 => {
      const old = Atomics.load(a, w);
      if ((old & L) === 0) return 0;
      const next = (old & ~(B | EVTCHN_FIFO_LINK_MASK)) | port;
      return Atomics.compareExchange(a, w, old, next) === old ? 1 : -1;
    };
    const first = tryOnce();
    if (first >= 0) return first === 1;
    Atomics.or(a, w, B);
    for (let i = 0; i < 4; i++) {
      const r = tryOnce();
      if (r === 1) return true;
      if (r === 0) {
        Atomics.and(a, w, ~B);
        return false;
      }
    }
    // A guest rewriting the word without end: Xen gives up and counts the event as linked.
    Atomics.and(a, w, ~B);
    return true;
  }

  /** evtchn_fifo_clear_pending(): PENDING only (the guest unlinks a non-pending event itself). */
  clearPending(port: number): void {
    const a = this.word(port);
    if (a) Atomics.and(a, port % EVTCHN_FIFO_EVENT_WORDS_PER_PAGE, ~P);
  }

  /** evtchn_fifo_unmask(): MASKED cleared; a pending port is linked again. */
  unmask(vcpu: number, port: number): DeliveryFifo | undefined {
    const a = this.word(port);
    if (!a) return undefined;
    const w = port % EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;
    Atomics.and(a, w, ~M);
    if ((Atomics.load(a, w) & P) === 0) return 'not-pending';
    return this.setPending(vcpu, port);
  }

  isPending(port: number): boolean {
    return (this.eventWord(port) & P) !== 0;
  }

  /** evtchn_fifo_is_masked(): a port without a word counts as masked. */
  isMasked(port: number): boolean {
    return !this.hasWord(port) || (this.eventWord(port) & M) !== 0;
  }

  /** evtchn_fifo_is_busy(): LINKED - the port may not be reused until the guest unlinks it. */
  isLinked(port: number): boolean {
    return (this.eventWord(port) & L) !== 0;
  }

  // ------------------------------------------------------------ the guest's half

  /** Linux's init_array_page(): a new page's ports all start MASKED. */
  static initArrayPage(page: Int32Array): void {
    page.fill(M);
  }

  /**
   * Linux's evtchn_fifo_unmask(): clear MASKED in place unless the port is pending or Xen holds
   * the word BUSY; then the hypercall (EVTCHNOP_unmask) must do it. Returns whether it must.
   */
  guestUnmaskNeedsHypercall(port: number): boolean {
    const a = this.word(port);
    if (!a) return true;
    const w = port % EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;
    for (;;) {
      const old = Atomics.load(a, w);
      if ((old & M) === 0) return false;
      if ((old & P) !== 0) return true;
      const expect = old & ~B;
      if (Atomics.compareExchange(a, w, expect, expect & ~M) === expect) return false;
      if ((Atomics.load(a, w) & B) !== 0) return true;
    }
  }

  /** Compare-exchange of a port's event word (the guest's unlink). */
  casEventWord(port: number, old: number, next: number): boolean {
    const a = this.word(port);
    return a !== undefined && Atomics.compareExchange(a, port % EVTCHN_FIFO_EVENT_WORDS_PER_PAGE, old, next) === old;
  }

  /** Linux's mask: set MASKED (allowed on a LINKED word). */
  guestMask(port: number): void {
    const a = this.word(port);
    if (a) Atomics.or(a, port % EVTCHN_FIFO_EVENT_WORDS_PER_PAGE, M);
  }
}

/**
 * The guest's consumer of one vCPU's queues (Linux's evtchn_fifo_handle_events and
 * consume_one_event): its own copy of each queue's head between passes, as Linux keeps per CPU.
 */
export class FifoConsumer {
  private readonly head = new Uint32Array(EVTCHN_FIFO_MAX_QUEUES);

  constructor(private readonly fifo: EvtchnFifo, private readonly vcpu: number) {}

  /**
   * The upcall: while evtchn_upcall_pending is set, clear it, take READY, and consume one event
   * of the highest-priority ready queue at a time (taking READY again after each), so a higher
   * priority overtakes a lower one between any two events. A port found pending and unmasked has
   * PENDING cleared (Linux's ack) before `handler` runs. Returns how many passes found the upcall.
   */
  handleEvents(handler: (port: number) => void): number {
    const cb = this.fifo.control[this.vcpu];
    if (!cb) throw new Error(`vCPU ${this.vcpu} has no FIFO control block`);
    const up = upcallByte(this.vcpu);
    let passes = 0;
    while (Atomics.load(this.fifo.si, up) !== 0) {
      passes++;
      Atomics.store(this.fifo.si, up, 0);
      let ready = Atomics.exchange(cb, READY, 0) >>> 0;
      while (ready !== 0) {
        const q = 31 - Math.clz32(ready & -ready);
        ready = this.consumeOne(cb, q, ready, handler);
        ready = (ready | Atomics.exchange(cb, READY, 0)) >>> 0;
      }
    }
    return passes;
  }

  private consumeOne(cb: Int32Array, q: number, ready: number, handler: (port: number) => void): number {
    let head = this.head[q];
    // A head of 0 means this pass has not started the queue: the control block's is the start.
    if (head === 0) head = Atomics.load(cb, HEAD + q);
    const port = head;
    if (port === 0 || !this.fifo.hasWord(port)) {
      // READY without a head: nothing of this queue to take (a hostile or confused Xen).
      this.head[q] = 0;
      return ready & ~(1 << q);
    }
    const next = this.clearLinked(port);
    if (next === 0) ready &= ~(1 << q);
    const word = this.fifo.eventWord(port);
    if ((word & P) !== 0 && (word & M) === 0) {
      this.fifo.clearPending(port);
      handler(port);
    }
    this.head[q] = next;
    return ready;
  }

  /** clear_linked(): LINKED and LINK cleared together; returns the LINK that was there. */
  private clearLinked(port: number): number {
    for (;;) {
      const old = this.fifo.eventWord(port);
      if (this.fifo.casEventWord(port, old, old & ~(L | EVTCHN_FIFO_LINK_MASK))) return old & EVTCHN_FIFO_LINK_MASK;
    }
  }
}


/** The problem with a FIFO domain's events at a quiet point, or undefined (see lostWakeup). */
export interface FifoLostWakeup {
  readonly port: number;
  readonly why: string;
}

/**
 * The ABI's invariant at a quiet point of vCPU `vcpu` (its upcall not running): every port
 * pending and unmasked is LINKED on a queue, and while anything is linked the vCPU's upcall is
 * pending (else it may sleep for ever). Ports on one vCPU's queues only: the kernel binds all on 0.
 */
export function fifoLostWakeup(fifo: EvtchnFifo, vcpu: number): FifoLostWakeup | undefined {
  if (!fifo.control[vcpu]) return undefined;
  const upcall = Atomics.load(fifo.si, upcallByte(vcpu)) !== 0;
  const n = fifo.numEvtchns;
  for (let port = 1; port < n; port++) {
    const w = fifo.eventWord(port);
    if ((w & P) !== 0 && (w & M) === 0 && (w & L) === 0) return { port, why: 'pending and unmasked but on no queue' };
    if ((w & L) !== 0 && !upcall) return { port, why: 'linked on a queue, but no upcall pending' };
  }
  return undefined;
}

const upcallByte = (vcpu: number): number => vcpu * SharedInfo.VCPU_INFO_SIZE + VcpuInfo.evtchn_upcall_pending;
