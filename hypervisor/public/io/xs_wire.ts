// XenStore wire protocol, as in xen/include/public/io/xs_wire.h.
// Shared by xenstored, the guest xenbus client and the dom0 tools.

/** enum xsd_sockmsg_type: message types with their wire values. */
export enum XsdSockmsgType {
  XS_CONTROL = 0,
  XS_DIRECTORY = 1,
  XS_READ = 2,
  XS_GET_PERMS = 3,
  XS_WATCH = 4,
  XS_UNWATCH = 5,
  XS_TRANSACTION_START = 6,
  XS_TRANSACTION_END = 7,
  XS_INTRODUCE = 8,
  XS_RELEASE = 9,
  XS_GET_DOMAIN_PATH = 10,
  XS_WRITE = 11,
  XS_MKDIR = 12,
  XS_RM = 13,
  XS_SET_PERMS = 14,
  XS_WATCH_EVENT = 15,
  XS_ERROR = 16,
  XS_IS_DOMAIN_INTRODUCED = 17,
  XS_RESUME = 18,
  XS_SET_TARGET = 19,
  /** XS_RESTRICT: removed from Xen; always ENOSYS. */
  XS_RESTRICT = 20,
  XS_RESET_WATCHES = 21,
  XS_DIRECTORY_PART = 22,
  XS_INVALID = 0xffff,
}

/** XS_DEBUG is the old name of XS_CONTROL. */
export const XS_DEBUG = XsdSockmsgType.XS_CONTROL;

/** Names without the XS_ prefix, as libxenstore's and the probe's tables print them. */
export function xsTypeName(type: number): string {
  const name = XsdSockmsgType[type];
  return name === undefined ? String(type) : name.slice(3);
}

/** xsd_errors[]: the order is part of the ABI (new names are only appended). */
export const XSD_ERRORS = [
  'EINVAL', 'EACCES', 'EEXIST', 'EISDIR', 'ENOENT', 'ENOMEM', 'ENOSPC', 'EIO',
  'ENOTEMPTY', 'ENOSYS', 'EROFS', 'EBUSY', 'EAGAIN', 'EISCONN', 'E2BIG', 'EPERM',
] as const;
export type XsError = (typeof XSD_ERRORS)[number];

/** Linux errno values of the names above (what libxenstore hands its callers). */
export const XS_ERRNO: Readonly<Record<XsError, number>> = {
  EINVAL: 22, EACCES: 13, EEXIST: 17, EISDIR: 21, ENOENT: 2, ENOMEM: 12, ENOSPC: 28, EIO: 5,
  ENOTEMPTY: 39, ENOSYS: 38, EROFS: 30, EBUSY: 16, EAGAIN: 11, EISCONN: 106, E2BIG: 7, EPERM: 1,
};

/** struct xsd_sockmsg: 16 bytes, little endian on every architecture Xen runs on. */
export interface XsdSockmsg {
  readonly type: number;
  readonly req_id: number;
  readonly tx_id: number;
  readonly len: number;
}

export const XSD_SOCKMSG_SIZE = 16;
export const XENSTORE_PAYLOAD_MAX = 4096;
export const XENSTORE_ABS_PATH_MAX = 3072;
export const XENSTORE_REL_PATH_MAX = 2048;

/** xenstore_domain_interface ring buffers. */
export const XENSTORE_RING_SIZE = 1024;

/** Byte offsets of struct xenstore_domain_interface (one 4 KiB page). */
export const XenstoreDomainInterface = {
  req: 0,
  rsp: 1024,
  req_cons: 2048,
  req_prod: 2052,
  rsp_cons: 2056,
  rsp_prod: 2060,
  server_features: 2064,
  connection: 2068,
  error: 2072,
  evtchn_port: 2076,
} as const;

/** server_features bits. */
export const XENSTORE_SERVER_FEATURE_RECONNECTION = 1;
export const XENSTORE_SERVER_FEATURE_ERROR = 2;
export const XENSTORE_SERVER_FEATURE_WATCHDEPTH = 4;
export const XENSTORE_SERVER_FEATURE_DOMID_ANY = 8;

/** Values of the `connection` field. */
export enum XenstoreConnection {
  XENSTORE_CONNECTED = 0,
  XENSTORE_RECONNECT = 1,
}

/** Values of the `error` field. */
export enum XenstoreError {
  XENSTORE_ERROR_NONE = 0,
  XENSTORE_ERROR_COMM = 1,
  XENSTORE_ERROR_RINGIDX = 2,
  XENSTORE_ERROR_PROTO = 3,
}

/** Watch event payload: path then token, both NUL-terminated. */
export const XS_WATCH_PATH = 0;
export const XS_WATCH_TOKEN = 1;

function putU32(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v & 0xff;
  buf[at + 1] = (v >>> 8) & 0xff;
  buf[at + 2] = (v >>> 16) & 0xff;
  buf[at + 3] = (v >>> 24) & 0xff;
}

function getU32(buf: Uint8Array, at: number): number {
  return (buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16) | (buf[at + 3] << 24)) >>> 0;
}

export function encodeHeader(h: XsdSockmsg, into?: Uint8Array, at = 0): Uint8Array {
  const buf = into ?? new Uint8Array(XSD_SOCKMSG_SIZE);
  putU32(buf, at, h.type);
  putU32(buf, at + 4, h.req_id);
  putU32(buf, at + 8, h.tx_id);
  putU32(buf, at + 12, h.len);
  return buf;
}

export function decodeHeader(buf: Uint8Array, at = 0): XsdSockmsg {
  return {
    type: getU32(buf, at),
    req_id: getU32(buf, at + 4),
    tx_id: getU32(buf, at + 8),
    len: getU32(buf, at + 12),
  };
}

/** A whole message: header fields plus payload bytes. */
export interface XsMessage {
  readonly type: number;
  readonly req_id: number;
  readonly tx_id: number;
  readonly payload: Uint8Array;
}

export function encodeMessage(m: XsMessage): Uint8Array {
  const out = Buffer.allocUnsafe(XSD_SOCKMSG_SIZE + m.payload.length);
  encodeHeader({ type: m.type, req_id: m.req_id, tx_id: m.tx_id, len: m.payload.length }, out);
  out.set(m.payload, XSD_SOCKMSG_SIZE);
  return out;
}

/** Joins strings as `a\0b\0`: the payload form of most requests and replies. */
export function nulJoin(...parts: (string | Uint8Array)[]): Uint8Array {
  const bufs = parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p));
  const total = bufs.reduce((n, b) => n + b.length + 1, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const b of bufs) {
    out.set(b, o);
    o += b.length + 1;
  }
  return out;
}

/**
 * One direction of the xenstore ring page (xenstore_domain_interface): a 1024-byte buffer and
 * its free-running u32 producer/consumer indexes. Both sides use these with the page's
 * Int32Array view, so index loads and stores are single aligned 32-bit accesses.
 */
export interface XsRingHalf {
  readonly buf: number;
  readonly cons: number;
  readonly prod: number;
}

export const XS_RING_REQ: XsRingHalf = {
  buf: XenstoreDomainInterface.req,
  cons: XenstoreDomainInterface.req_cons,
  prod: XenstoreDomainInterface.req_prod,
};
export const XS_RING_RSP: XsRingHalf = {
  buf: XenstoreDomainInterface.rsp,
  cons: XenstoreDomainInterface.rsp_cons,
  prod: XenstoreDomainInterface.rsp_prod,
};

/** MASK_XENSTORE_IDX. */
export const maskXenstoreIdx = (idx: number): number => idx & (XENSTORE_RING_SIZE - 1);

/** check_indexes(): bytes in flight must never exceed the ring size. */
export const xsRingIndexesValid = (cons: number, prod: number): boolean => ((prod - cons) >>> 0) <= XENSTORE_RING_SIZE;

/** Below this many bytes a copy loops over the bytes instead of making views for set(). */
const SMALL_COPY = 64;

/** Copies `data` into a ring half's buffer starting at free-running index `idx` (wrapping). */
export function xsRingCopyIn(page: Uint8Array, half: XsRingHalf, idx: number, data: Uint8Array): void {
  xsRingCopyInRange(page, half, idx, data, 0, data.length);
}

/** Fills `into` from a ring half's buffer starting at free-running index `idx` (wrapping). */
export function xsRingCopyOut(page: Uint8Array, half: XsRingHalf, idx: number, into: Uint8Array): void {
  xsRingCopyOutRange(page, half, idx, into, 0, into.length);
}

/** xsRingCopyIn of data[start, start + len). */
export function xsRingCopyInRange(page: Uint8Array, half: XsRingHalf, idx: number, data: Uint8Array, start: number, len: number): void {
  let at = maskXenstoreIdx(idx);
  let done = 0;
  while (done < len) {
    const chunk = Math.min(len - done, XENSTORE_RING_SIZE - at);
    const to = half.buf + at;
    const from = start + done;
    if (chunk < SMALL_COPY) for (let i = 0; i < chunk; i++) page[to + i] = data[from + i];
    else page.set(data.subarray(from, from + chunk), to);
    done += chunk;
    at = 0;
  }
}

/** xsRingCopyOut into into[start, start + len). */
export function xsRingCopyOutRange(page: Uint8Array, half: XsRingHalf, idx: number, into: Uint8Array, start: number, len: number): void {
  let at = maskXenstoreIdx(idx);
  let done = 0;
  while (done < len) {
    const chunk = Math.min(len - done, XENSTORE_RING_SIZE - at);
    const from = half.buf + at;
    const to = start + done;
    if (chunk < SMALL_COPY) for (let i = 0; i < chunk; i++) into[to + i] = page[from + i];
    else into.set(page.subarray(from, from + chunk), to);
    done += chunk;
    at = 0;
  }
}

/**
 * What a reader does with a header announcing more than XENSTORE_PAYLOAD_MAX bytes:
 * 'reject' stops reading (C xenstored ends the connection; a client treats it as EIO),
 * 'clamp' reads exactly XENSTORE_PAYLOAD_MAX payload bytes and takes what follows as the next
 * header (oxenstored's Partial.of_string, on sockets and rings alike).
 */
export type XsOversize = 'reject' | 'clamp';

/** What XsWireDecoder.filled() found once its bytes were taken. */
export enum XsDecodeStep {
  /** The current header or payload is not complete yet. */
  MORE = 0,
  /** A whole message is ready: take it with message(). */
  MESSAGE = 1,
  /** A header broke the protocol ('reject'): nothing more is read. */
  VIOLATION = 2,
}

/**
 * Incremental xs_wire reader: a header, then exactly its payload, one message at a time. It
 * never holds more than one partial message (16 + XENSTORE_PAYLOAD_MAX bytes), and every byte is
 * copied at most once, into the message it belongs to. Used by both ends of every transport:
 * xenstored's connections (socket, ring page, in-process) and the client library.
 *
 * Two ways in: push() for byte streams, or fillBuffer/fillOffset/fillLength + filled(n) for a
 * transport that copies straight from shared memory (the ring page) into the pending message.
 */
export class XsWireDecoder {
  private readonly hdr = new Uint8Array(XSD_SOCKMSG_SIZE);
  private hdrUsed = 0;
  private body: Uint8Array | undefined;
  private bodyUsed = 0;
  private ready: XsMessage | undefined;
  private broken = false;
  /** The header that broke the protocol (after VIOLATION). */
  violation: XsdSockmsg | undefined;

  constructor(readonly oversize: XsOversize) {}

  /** No partial header or payload is held: the next byte starts a message. */
  get idle(): boolean {
    return this.hdrUsed === 0 && this.body === undefined;
  }

  /** A protocol violation was seen; input is ignored from then on. */
  get isBroken(): boolean {
    return this.broken;
  }

  /** Bytes held of the message being read (bounded by 16 + XENSTORE_PAYLOAD_MAX). */
  get pending(): number {
    return this.hdrUsed + this.bodyUsed;
  }

  /**
   * The bytes of the message being read, as they came (header, then payload so far): what a
   * live update carries to the new daemon as unprocessed input.
   */
  held(): Uint8Array {
    const out = new Uint8Array(this.hdrUsed + this.bodyUsed);
    out.set(this.hdr.subarray(0, this.hdrUsed));
    if (this.body !== undefined) out.set(this.body.subarray(0, this.bodyUsed), this.hdrUsed);
    return out;
  }

  /** Where the next bytes go: the rest of the header, or of the payload. */
  get fillBuffer(): Uint8Array {
    return this.body ?? this.hdr;
  }

  get fillOffset(): number {
    return this.body ? this.bodyUsed : this.hdrUsed;
  }

  /** How many bytes complete the current header or payload (0 once broken). */
  get fillLength(): number {
    if (this.broken) return 0;
    return this.body ? this.body.length - this.bodyUsed : XSD_SOCKMSG_SIZE - this.hdrUsed;
  }

  /** `n` (at most fillLength) bytes were copied to fillBuffer at fillOffset. */
  filled(n: number): XsDecodeStep {
    if (this.broken) return XsDecodeStep.VIOLATION;
    if (!(n >= 0 && n <= this.fillLength)) throw new RangeError(`XsWireDecoder: filled ${n} of ${this.fillLength} bytes`);
    if (this.body === undefined) {
      this.hdrUsed += n;
      if (this.hdrUsed < XSD_SOCKMSG_SIZE) return XsDecodeStep.MORE;
      const len = getU32(this.hdr, 12);
      if (len > XENSTORE_PAYLOAD_MAX && this.oversize === 'reject') return this.fail();
      // A Buffer, so that the core and the client can read strings from it directly.
      this.body = Buffer.allocUnsafe(Math.min(len, XENSTORE_PAYLOAD_MAX));
      this.bodyUsed = 0;
    } else {
      this.bodyUsed += n;
    }
    if (this.bodyUsed < this.body.length) return XsDecodeStep.MORE;
    this.ready = {
      type: getU32(this.hdr, 0), req_id: getU32(this.hdr, 4), tx_id: getU32(this.hdr, 8), payload: this.body,
    };
    this.hdrUsed = 0;
    this.body = undefined;
    this.bodyUsed = 0;
    return XsDecodeStep.MESSAGE;
  }

  /** The message completed by the last filled() or push() step that returned MESSAGE. */
  message(): XsMessage {
    const m = this.ready;
    if (m === undefined) throw new Error('XsWireDecoder: no message ready');
    this.ready = undefined;
    return m;
  }

  /** What the last push() reached. */
  step: XsDecodeStep = XsDecodeStep.MORE;

  /**
   * Byte-stream input: takes bytes from data[off..] up to the end of the next whole message and
   * returns how many it took; `step` says what it reached (MESSAGE: call message(); MORE: all of
   * data from off was taken; VIOLATION). A message lying whole in `data` is not copied: its
   * payload is a view of `data` (stream chunks are never reused, so the view stays valid).
   */
  push(data: Uint8Array, off: number): number {
    if (this.broken) {
      this.step = XsDecodeStep.VIOLATION;
      return 0;
    }
    const left = data.length - off;
    if (this.idle && left >= XSD_SOCKMSG_SIZE) {
      const len = getU32(data, off + 12);
      if (len <= XENSTORE_PAYLOAD_MAX && left >= XSD_SOCKMSG_SIZE + len) {
        const start = off + XSD_SOCKMSG_SIZE;
        const payload = Buffer.isBuffer(data) ? data.subarray(start, start + len)
          : Buffer.from(data.buffer, data.byteOffset + start, len);
        this.ready = { type: getU32(data, off), req_id: getU32(data, off + 4), tx_id: getU32(data, off + 8), payload };
        this.step = XsDecodeStep.MESSAGE;
        return XSD_SOCKMSG_SIZE + len;
      }
    }
    let took = 0;
    while (took < left) {
      const n = Math.min(left - took, this.fillLength);
      const at = off + took;
      const into = this.fillBuffer;
      const to = this.fillOffset;
      if (n < SMALL_COPY) for (let i = 0; i < n; i++) into[to + i] = data[at + i];
      else into.set(data.subarray(at, at + n), to);
      took += n;
      const step = this.filled(n);
      if (step !== XsDecodeStep.MORE) {
        this.step = step;
        return took;
      }
    }
    this.step = XsDecodeStep.MORE;
    return took;
  }

  /** Drops a partial message (a ring reset). A violation stays. */
  reset(): void {
    this.hdrUsed = 0;
    this.body = undefined;
    this.bodyUsed = 0;
    this.ready = undefined;
  }

  private fail(): XsDecodeStep {
    this.broken = true;
    this.violation = decodeHeader(this.hdr);
    this.hdrUsed = 0;
    return XsDecodeStep.VIOLATION;
  }
}
