// A guest's xenstore ring page (struct xenstore_domain_interface) rebuilt from a trace: the bytes
// of req[XENSTORE_RING_SIZE] and rsp[XENSTORE_RING_SIZE] with the messages' 16-byte headers in
// them, at the offsets the traced producer and consumer indexes put them.
//
// The trace does not copy the page; it has every message xenstored read from or queued for the
// ring (kind 'xenstore', payload NULs written `\0`) and, after each read or write of the page,
// xenstored's indexes and how many bytes it moved (kind 'ring'). The bytes are the messages'
// encoding (xs_wire.h), so the page is determined: requests go where xenstored consumed them
// (a message is traced once whole, maybe read over two batches: placed from where the previous
// one ended), replies where xenstored produced them (a queued reply is copied out as room allows,
// maybe in pieces). Where the two stories disagree the page says so rather than guess.
//
// Limits: the guest's own index updates are not traced (req_prod and rsp_cons are as xenstored
// last saw them), and a payload holding the two characters `\0` reads back as a NUL.

import {
  XENSTORE_PAYLOAD_MAX, XENSTORE_RING_SIZE, XSD_SOCKMSG_SIZE, XsdSockmsgType, encodeHeader, maskXenstoreIdx,
} from '../../hypervisor/public/io/xs_wire.ts';
import { type XsRecord, isNum } from './events.ts';

/** One message's header as it sits on the page, and where it starts (a free-running index). */
export interface RingMessageView {
  readonly at: number;
  readonly type: string;
  readonly typeCode: number;
  readonly req_id: number;
  readonly tx_id: number;
  readonly len: number;
  /** The payload as the trace shows it (NULs as `\0`), cut for display. */
  readonly payload: string;
}

export interface RingHalfView {
  readonly cons: number;
  readonly prod: number;
  /** The 1024 bytes, two hex digits each. */
  readonly hex: string;
  /** The messages whose header is still on the page (not yet overwritten), oldest first. */
  readonly messages: readonly RingMessageView[];
  /** Why the bytes may be wrong, when the messages and the traced indexes disagree. */
  readonly unsynced?: string;
}

export interface RingPageView {
  readonly domid: number;
  readonly req: RingHalfView;
  readonly rsp: RingHalfView;
}

/** A message's bytes as xs_wire.h lays them out: the header, then the payload. */
export function encodeTraced(e: XsRecord): { bytes: Uint8Array; header: Omit<RingMessageView, 'at'> } | undefined {
  const name = `XS_${e.type.replace(/^XS_/, '')}`;
  const code = (XsdSockmsgType as unknown as Record<string, number>)[name];
  if (!isNum(code)) return undefined;
  const payload = Buffer.from(e.payload.replaceAll('\\0', '\0'), 'latin1');
  const bytes = new Uint8Array(XSD_SOCKMSG_SIZE + payload.length);
  encodeHeader({ type: code, req_id: e.req_id >>> 0, tx_id: e.tx_id >>> 0, len: payload.length }, bytes);
  bytes.set(payload, XSD_SOCKMSG_SIZE);
  return { bytes, header: { type: name, typeCode: code, req_id: e.req_id >>> 0, tx_id: e.tx_id >>> 0, len: payload.length, payload: e.payload.slice(0, 80) } };
}

/** How many message headers a half remembers: more than fit on 1024 bytes (a header is 16). */
const KEEP = XENSTORE_RING_SIZE / XSD_SOCKMSG_SIZE;

class Half {
  readonly page = new Uint8Array(XENSTORE_RING_SIZE);
  cons = 0;
  prod = 0;
  /** The free-running index the next traced byte goes to. */
  placed = 0;
  /** Traced bytes not on the page yet: replies queued in xenstored, requests awaiting their batch. */
  private queue: { bytes: Uint8Array; used: number; header: Omit<RingMessageView, 'at'> }[] = [];
  private messages: RingMessageView[] = [];
  unsynced: string | undefined;

  enqueue(bytes: Uint8Array, header: Omit<RingMessageView, 'at'>): void {
    this.queue.push({ bytes, used: 0, header });
    // A queue longer than any ring holds means the indexes stopped coming: keep memory bounded.
    while (this.queue.length > 4 * KEEP) this.queue.shift();
  }

  /** Copies up to n queued bytes to the page from `placed` on. */
  private place(n: number): number {
    let done = 0;
    while (done < n && this.queue.length) {
      const m = this.queue[0];
      if (m.used === 0) {
        this.messages.push({ at: this.placed, ...m.header });
        if (this.messages.length > KEEP) this.messages.shift();
      }
      const k = Math.min(n - done, m.bytes.length - m.used);
      for (let i = 0; i < k; i++) this.page[maskXenstoreIdx(this.placed + i)] = m.bytes[m.used + i];
      this.placed = (this.placed + k) >>> 0;
      m.used += k;
      done += k;
      if (m.used === m.bytes.length) this.queue.shift();
    }
    return done;
  }

  /**
   * xenstored consumed requests up to `cons`: the whole messages traced by now are on the page
   * from where the last one ended. The batch may end inside a message traced later; more than one
   * message's worth unplaced means the stories disagree.
   */
  consumed(cons: number, prod: number): void {
    this.cons = cons;
    this.prod = prod;
    this.place(Infinity);
    const behind = (cons - this.placed) | 0;
    if (behind < 0 || behind > XSD_SOCKMSG_SIZE + XENSTORE_PAYLOAD_MAX) {
      this.unsynced = `the traced requests end at index ${this.placed}, xenstored's req_cons is ${cons}`;
      this.placed = cons;
    }
  }

  /** xenstored produced `bytes` of replies ending at `prod`: the next queued bytes, there. */
  produced(cons: number, prod: number, bytes: number): void {
    this.cons = cons;
    this.prod = prod;
    const from = (prod - bytes) >>> 0;
    if (from !== this.placed) {
      if (this.messages.length) this.unsynced = `replies were placed up to index ${this.placed}, xenstored wrote from ${from}`;
      this.placed = from;
    }
    const got = this.place(bytes);
    if (got < bytes) this.unsynced = `xenstored wrote ${bytes} bytes at ${from}, the trace queued ${got}`;
  }

  view(): RingHalfView {
    // A header still on the page: its 16 bytes are within the last 1024 placed.
    const oldest = (this.placed - XENSTORE_RING_SIZE) | 0;
    return {
      cons: this.cons,
      prod: this.prod,
      hex: Buffer.from(this.page).toString('hex'),
      messages: this.messages.filter((m) => ((m.at - oldest) | 0) >= 0),
      ...(this.unsynced ? { unsynced: this.unsynced } : {}),
    };
  }
}

/** Every guest's ring page, fed the trace's xenstore and ring events in order. */
export class XenstoreRingPages {
  private readonly pages = new Map<number, { req: Half; rsp: Half }>();

  private of(domid: number): { req: Half; rsp: Half } {
    let p = this.pages.get(domid);
    if (!p) this.pages.set(domid, (p = { req: new Half(), rsp: new Half() }));
    return p;
  }

  /** A message xenstored read from (IN) or queued for (OUT) a guest; dom0 talks over a socket. */
  message(e: XsRecord): void {
    if (e.domid <= 0) return;
    const enc = encodeTraced(e);
    if (!enc) return;
    const p = this.of(e.domid);
    (e.dir === 'IN' ? p.req : p.rsp).enqueue(enc.bytes, enc.header);
  }

  /** xenstored moved a half's index (domain_read / domain_write): kind 'ring', peer = the guest. */
  ring(peer: number, half: 'req' | 'rsp', cons: number, prod: number, bytes: number): void {
    const p = this.of(peer);
    if (half === 'req') p.req.consumed(cons >>> 0, prod >>> 0);
    else p.rsp.produced(cons >>> 0, prod >>> 0, bytes >>> 0);
  }

  /** The guest's page is gone (the domain died): a new one starts empty. */
  drop(domid: number): void {
    this.pages.delete(domid);
  }

  domids(): number[] {
    return [...this.pages.keys()].sort((a, b) => a - b);
  }

  view(domid: number): RingPageView | undefined {
    const p = this.pages.get(domid);
    return p && { domid, req: p.req.view(), rsp: p.rsp.view() };
  }
}
