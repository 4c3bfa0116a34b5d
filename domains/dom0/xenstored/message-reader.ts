// Splits a connection's byte stream into xs_wire messages (handle_input). Pure: transports
// push the bytes they received and act on what comes out.
import {
  XENSTORE_PAYLOAD_MAX, XSD_SOCKMSG_SIZE, decodeHeader, type XsMessage,
} from '../../../hypervisor/public/io/xs_wire.ts';
import type { Profile } from './core.ts';

export type ReaderItem =
  | { readonly kind: 'message'; readonly msg: XsMessage }
  /** oxenstored reads and discards an oversized payload, then answers E2BIG. */
  | { readonly kind: 'too-big'; readonly req_id: number; readonly tx_id: number }
  /** C xenstored drops a connection whose header announces more than 4096 bytes. */
  | { readonly kind: 'violation' };

export class MessageReader {
  private buf: Uint8Array = EMPTY;
  private broken = false;

  /**
   * `kind`: oxenstored's hold on an empty payload is a property of its socket reader; its ring
   * reader completes the message at once (a guest's RESET_WATCHES is answered straight away).
   */
  constructor(private readonly profile: Profile, private readonly kind: 'socket' | 'domain' = 'socket') {}

  /** Bytes buffered but not yet a whole message. */
  get pending(): number {
    return this.buf.length;
  }

  push(data: Uint8Array): ReaderItem[] {
    if (this.broken) return [];
    // Socket chunks are never reused by Node, so payloads can point into them without a copy.
    const buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    const out: ReaderItem[] = [];
    let off = 0;
    while (buf.length - off >= XSD_SOCKMSG_SIZE) {
      const h = decodeHeader(buf, off);
      if (h.len > XENSTORE_PAYLOAD_MAX && this.profile === 'c') {
        this.broken = true;
        this.buf = EMPTY;
        out.push({ kind: 'violation' });
        return out;
      }
      const end = off + XSD_SOCKMSG_SIZE + h.len;
      if (buf.length < end) break;
      // oxenstored only completes an empty-payload message on a socket once more bytes arrive.
      if (h.len === 0 && this.profile === 'ocaml' && this.kind === 'socket' && buf.length === end) break;
      if (h.len > XENSTORE_PAYLOAD_MAX) {
        out.push({ kind: 'too-big', req_id: h.req_id, tx_id: h.tx_id });
      } else {
        const payload = buf.subarray(off + XSD_SOCKMSG_SIZE, end);
        out.push({ kind: 'message', msg: { type: h.type, req_id: h.req_id, tx_id: h.tx_id, payload } });
      }
      off = end;
    }
    this.buf = off === buf.length ? EMPTY : Buffer.from(buf.subarray(off));
    return out;
  }
}

const EMPTY = Buffer.alloc(0);
