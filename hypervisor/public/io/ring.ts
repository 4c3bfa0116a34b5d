// xen/include/public/io/ring.h: the generic shared request/response ring every split PV driver
// (blkif, netif tx/rx, ...) lays over one or more granted pages (DEFINE_RING_TYPES), and the two
// private ends that drive it (FRONT_RING_* / BACK_RING_*, RING_PUSH_*_AND_CHECK_NOTIFY,
// RING_FINAL_CHECK_FOR_*). spec/hypervisor-and-xenbus.md §3.1.
//
// The page is shared with a peer that may be buggy or hostile: every value read from it is taken
// as untrusted. Nothing here throws or loops on what the peer wrote; an impossible producer index
// marks the ring as overflowed (sticky), and the end then reports no more work.
import { XEN_PAGE_SIZE } from '../xen.ts';

/** RING_IDX: free-running u32; the slot is idx & (size - 1). */
export type RingIdx = number;

/** struct <name>_sring header: four u32 indexes, 4 private bytes, padding up to the entries. */
export const SringHeader = {
  req_prod: 0,
  req_event: 4,
  rsp_prod: 8,
  rsp_event: 12,
  /** pvt.pvt_pad[4] (netif's old smartpoll_active lived here). */
  pvt: 16,
  __pad: 20,
  /** ring[]: the union { req; rsp; } entries. */
  ring: 64,
} as const;
export const SRING_HEADER_SIZE = SringHeader.ring;

// u32 word numbers of the indexes in the header (for the Uint32Array view).
const REQ_PROD = SringHeader.req_prod / 4;
const REQ_EVENT = SringHeader.req_event / 4;
const RSP_PROD = SringHeader.rsp_prod / 4;
const RSP_EVENT = SringHeader.rsp_event / 4;

const u32 = (n: number): number => n >>> 0;

/**
 * __RING_SIZE: entries in a ring of `pages` pages whose union entry is `entryBytes` long - the
 * largest power of two not above (4096 * pages - 64) / entryBytes (a power of two so the slot is a
 * mask of the free-running index, and the index wrap at 2^32 lands on slot 0).
 */
export function ringSize(entryBytes: number, pages = 1): number {
  if (!Number.isInteger(entryBytes) || entryBytes <= 0) throw new RangeError(`bad ring entry size ${entryBytes}`);
  if (!Number.isInteger(pages) || pages <= 0) throw new RangeError(`bad ring page count ${pages}`);
  const fit = Math.floor((XEN_PAGE_SIZE * pages - SRING_HEADER_SIZE) / entryBytes);
  if (fit < 1) return 0;
  let size = 1;
  while (size * 2 <= fit) size *= 2;
  return size;
}

/** The four shared indexes of a ring page, as single aligned 32-bit atomics. */
function indexWords(page: Uint8Array): Uint32Array {
  if (page.byteOffset % 4 !== 0) throw new RangeError('ring page must be 4-byte aligned');
  if (page.byteLength < XEN_PAGE_SIZE) throw new RangeError(`ring page is ${page.byteLength} bytes, not ${XEN_PAGE_SIZE}`);
  return new Uint32Array(page.buffer, page.byteOffset, 4);
}

/**
 * SHARED_RING_INIT, done by the front end only, before it grants the page: producers at `start`,
 * events at `start + 1` (notify on the first message), private bytes and padding zeroed. Xen's
 * macro always starts at 0; a nonzero `start` is the "indexes that do not start at 0" fault, which
 * correct peers must survive since indexes are only ever compared by difference.
 */
export function sharedRingInit(page: Uint8Array, start: RingIdx = 0): void {
  const w = indexWords(page);
  page.fill(0, SringHeader.pvt, SringHeader.ring);
  Atomics.store(w, REQ_PROD, u32(start));
  Atomics.store(w, RSP_PROD, u32(start));
  Atomics.store(w, REQ_EVENT, u32(start + 1));
  Atomics.store(w, RSP_EVENT, u32(start + 1));
}

/** A snapshot of the shared indexes (for traces and tests). */
export interface SringIndexes {
  readonly req_prod: RingIdx;
  readonly req_event: RingIdx;
  readonly rsp_prod: RingIdx;
  readonly rsp_event: RingIdx;
}

export function readSringIndexes(page: Uint8Array): SringIndexes {
  const w = indexWords(page);
  return {
    req_prod: Atomics.load(w, REQ_PROD),
    req_event: Atomics.load(w, REQ_EVENT),
    rsp_prod: Atomics.load(w, RSP_PROD),
    rsp_event: Atomics.load(w, RSP_EVENT),
  };
}

/**
 * Notification hold-off: the peer asked to be woken when the producer passes `event`; we moved
 * it from `oldProd` to `newProd`. True iff oldProd < event <= newProd in free-running u32 order.
 */
export function ringNeedsNotify(oldProd: RingIdx, newProd: RingIdx, event: RingIdx): boolean {
  return u32(newProd - event) < u32(newProd - oldProd);
}

/** What both ends share: the page, its index words, and slot addressing. */
abstract class RingEnd {
  readonly page: Uint8Array;
  /** sizeof(union { req; rsp; }). */
  readonly entryBytes: number;
  /** nr_ents. */
  readonly size: number;
  protected readonly idx: Uint32Array;
  protected overflowed = false;

  protected constructor(page: Uint8Array, entryBytes: number, pages: number) {
    if (page.byteLength < XEN_PAGE_SIZE * pages) {
      throw new RangeError(`a ${pages}-page ring needs ${XEN_PAGE_SIZE * pages} bytes, got ${page.byteLength}`);
    }
    this.idx = indexWords(page);
    this.page = page;
    this.entryBytes = entryBytes;
    this.size = ringSize(entryBytes, pages);
    if (this.size === 0) throw new RangeError(`a ${entryBytes}-byte entry does not fit in ${pages} page(s)`);
  }

  /** True once the peer published an impossible producer index; the ring is then dead. */
  get overflow(): boolean {
    return this.overflowed;
  }

  /** Byte offset in the page of the entry for free-running index `i`. */
  slotOffset(i: RingIdx): number {
    return SRING_HEADER_SIZE + (i & (this.size - 1)) * this.entryBytes;
  }

  /** The entry for free-running index `i`, as a view into the shared page (not a copy). */
  slot(i: RingIdx): Uint8Array {
    const at = this.slotOffset(i);
    return this.page.subarray(at, at + this.entryBytes);
  }

  /** RING_GET_REQUEST: requests and responses share slots (the entry is a union). */
  requestSlot(i: RingIdx): Uint8Array {
    return this.slot(i);
  }

  /** RING_GET_RESPONSE. */
  responseSlot(i: RingIdx): Uint8Array {
    return this.slot(i);
  }

  /** The shared indexes as they are now. */
  shared(): SringIndexes {
    return {
      req_prod: Atomics.load(this.idx, REQ_PROD),
      req_event: Atomics.load(this.idx, REQ_EVENT),
      rsp_prod: Atomics.load(this.idx, RSP_PROD),
      rsp_event: Atomics.load(this.idx, RSP_EVENT),
    };
  }

  /**
   * Publishes our private producer into the shared word and says whether the peer asked to be
   * notified. Atomics.store is sequentially consistent, so it is both the write barrier (entries
   * before index) and the full barrier (index before reading the event) of the C macro.
   */
  protected push(prodWord: number, eventWord: number, newProd: RingIdx): boolean {
    const old = Atomics.load(this.idx, prodWord);
    Atomics.store(this.idx, prodWord, newProd);
    return ringNeedsNotify(old, newProd, Atomics.load(this.idx, eventWord));
  }
}

/**
 * The front end (requester): produces requests, consumes responses. Private state is
 * req_prod_pvt and rsp_cons, as in struct <name>_front_ring.
 */
export class FrontRing extends RingEnd {
  req_prod_pvt: RingIdx;
  rsp_cons: RingIdx;

  /**
   * FRONT_RING_ATTACH(r, s, start, 4096 * pages): private indexes at `start`, the shared page
   * untouched. For a fresh ring use FrontRing.init, which also writes the shared header.
   */
  constructor(page: Uint8Array, entryBytes: number, start: RingIdx = 0, pages = 1) {
    super(page, entryBytes, pages);
    this.req_prod_pvt = u32(start);
    this.rsp_cons = u32(start);
  }

  /** XEN_FRONT_RING_INIT: SHARED_RING_INIT (at `start`, see sharedRingInit) + FRONT_RING_INIT. */
  static init(page: Uint8Array, entryBytes: number, start: RingIdx = 0, pages = 1): FrontRing {
    sharedRingInit(page, start);
    return new FrontRing(page, entryBytes, start, pages);
  }

  /**
   * Takes over a ring page that is already live (its indexes need not start at 0): requests up to
   * the shared req_prod count as ours and outstanding, responses up to rsp_prod as consumed.
   * If those two are further apart than the ring allows, `overflow` is set.
   */
  static attach(page: Uint8Array, entryBytes: number, pages = 1): FrontRing {
    const r = new FrontRing(page, entryBytes, 0, pages);
    const s = r.shared();
    r.req_prod_pvt = s.req_prod;
    r.rsp_cons = s.rsp_prod;
    if (u32(s.req_prod - s.rsp_prod) > r.size) r.overflowed = true;
    return r;
  }

  /** RING_FREE_REQUESTS. */
  freeRequests(): number {
    return this.size - u32(this.req_prod_pvt - this.rsp_cons);
  }

  /** RING_FULL. */
  isFull(): boolean {
    return this.freeRequests() <= 0;
  }

  /**
   * The slot at req_prod_pvt, which is then advanced (the request is published by the next
   * push). Undefined when the ring is full.
   */
  produceRequest(): Uint8Array | undefined {
    if (this.isFull()) return undefined;
    const s = this.slot(this.req_prod_pvt);
    this.req_prod_pvt = u32(this.req_prod_pvt + 1);
    return s;
  }

  /** RING_PUSH_REQUESTS. */
  pushRequests(): void {
    Atomics.store(this.idx, REQ_PROD, this.req_prod_pvt);
  }

  /** RING_PUSH_REQUESTS_AND_CHECK_NOTIFY: true when the backend must be sent an event. */
  pushRequestsAndCheckNotify(): boolean {
    return this.push(REQ_PROD, REQ_EVENT, this.req_prod_pvt);
  }

  /**
   * RING_RESPONSE_PROD_OVERFLOW on the current shared rsp_prod: a backend can never have
   * answered more than the ring holds. Seeing it sets the sticky `overflow`.
   */
  responseOverflow(): boolean {
    if (u32(Atomics.load(this.idx, RSP_PROD) - this.rsp_cons) > this.size) this.overflowed = true;
    return this.overflowed;
  }

  /**
   * Responses published and not yet consumed (rsp_prod - rsp_cons). An impossible rsp_prod is
   * not trusted: it sets `overflow` and the answer is 0, now and from then on.
   */
  unconsumedResponses(): number {
    if (this.overflowed) return 0;
    const n = u32(Atomics.load(this.idx, RSP_PROD) - this.rsp_cons);
    if (n > this.size) {
      this.overflowed = true;
      return 0;
    }
    return n;
  }

  /** The slot at rsp_cons, which is then advanced; undefined when nothing is waiting. */
  consumeResponse(): Uint8Array | undefined {
    if (this.unconsumedResponses() === 0) return undefined;
    const s = this.slot(this.rsp_cons);
    this.rsp_cons = u32(this.rsp_cons + 1);
    return s;
  }

  /**
   * RING_FINAL_CHECK_FOR_RESPONSES, before going idle: if nothing is waiting, ask for an event on
   * the next response (rsp_event = rsp_cons + 1) and look once more, closing the race with a
   * backend that pushed in between. True means keep consuming.
   */
  finalCheckForResponses(): boolean {
    if (this.unconsumedResponses() > 0) return true;
    if (this.overflowed) return false;
    Atomics.store(this.idx, RSP_EVENT, u32(this.rsp_cons + 1));
    return this.unconsumedResponses() > 0;
  }
}

/**
 * The back end (responder): consumes requests, produces responses. Private state is
 * rsp_prod_pvt and req_cons, as in struct <name>_back_ring. The back end never initialises the
 * shared page; it attaches to what the front end set up.
 */
export class BackRing extends RingEnd {
  rsp_prod_pvt: RingIdx;
  req_cons: RingIdx;

  /** BACK_RING_ATTACH(r, s, start, 4096 * pages). */
  constructor(page: Uint8Array, entryBytes: number, start: RingIdx = 0, pages = 1) {
    super(page, entryBytes, pages);
    this.rsp_prod_pvt = u32(start);
    this.req_cons = u32(start);
  }

  /**
   * How Linux blkback and netback connect: start from the shared rsp_prod (whatever it is, so a
   * front end whose indexes do not start at 0 works), and refuse - `overflow` set - when the
   * front end already claims more requests than the ring holds.
   */
  static attach(page: Uint8Array, entryBytes: number, pages = 1): BackRing {
    const r = new BackRing(page, entryBytes, 0, pages);
    const start = Atomics.load(r.idx, RSP_PROD);
    r.rsp_prod_pvt = start;
    r.req_cons = start;
    r.requestOverflow();
    return r;
  }

  /**
   * RING_REQUEST_PROD_OVERFLOW on the current shared req_prod: a front end can never have more
   * requests outstanding than the ring holds. Seeing it sets the sticky `overflow` (Linux
   * blkback: "Frontend provided bogus ring requests ... Halting ring processing").
   */
  requestOverflow(): boolean {
    return this.checkRequestProd(Atomics.load(this.idx, REQ_PROD));
  }

  private checkRequestProd(reqProd: RingIdx): boolean {
    if (u32(reqProd - this.rsp_prod_pvt) > this.size) this.overflowed = true;
    return this.overflowed;
  }

  /**
   * RING_HAS_UNCONSUMED_REQUESTS as a count: min(req_prod - req_cons, size - (req_cons -
   * rsp_prod_pvt)), the second term keeping a slot free for each response still owed. 0 once
   * `overflow` is set (checked here too).
   */
  unconsumedRequests(): number {
    // One read of the peer's index for both the check and the count.
    const reqProd = Atomics.load(this.idx, REQ_PROD);
    if (this.checkRequestProd(reqProd)) return 0;
    const req = u32(reqProd - this.req_cons);
    const room = this.size - u32(this.req_cons - this.rsp_prod_pvt);
    return Math.max(0, Math.min(req, room));
  }

  /** The slot at req_cons, which is then advanced; undefined when nothing is waiting. */
  consumeRequest(): Uint8Array | undefined {
    if (this.unconsumedRequests() === 0) return undefined;
    const s = this.slot(this.req_cons);
    this.req_cons = u32(this.req_cons + 1);
    return s;
  }

  /**
   * The slot at rsp_prod_pvt, which is then advanced (published by the next push). Undefined
   * when every consumed request has been answered already.
   */
  produceResponse(): Uint8Array | undefined {
    if (this.rsp_prod_pvt === this.req_cons) return undefined;
    const s = this.slot(this.rsp_prod_pvt);
    this.rsp_prod_pvt = u32(this.rsp_prod_pvt + 1);
    return s;
  }

  /** RING_PUSH_RESPONSES. */
  pushResponses(): void {
    Atomics.store(this.idx, RSP_PROD, this.rsp_prod_pvt);
  }

  /** RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: true when the front end must be sent an event. */
  pushResponsesAndCheckNotify(): boolean {
    return this.push(RSP_PROD, RSP_EVENT, this.rsp_prod_pvt);
  }

  /** RING_FINAL_CHECK_FOR_REQUESTS: req_event = req_cons + 1, then look again. */
  finalCheckForRequests(): boolean {
    if (this.unconsumedRequests() > 0) return true;
    if (this.overflowed) return false;
    Atomics.store(this.idx, REQ_EVENT, u32(this.req_cons + 1));
    return this.unconsumedRequests() > 0;
  }
}
