// The xenstore state stream (xenstore_state.h; docs/designs/xenstore-migration.md): what a
// xenstored writes before a live update and the new instance reads back. A header - "xenstore",
// a big-endian version, flags (bit 0: the records' byte order) - then records, each a u32 type,
// a u32 body length, the body and zero padding to a multiple of 8, up to END.
// Pure: bytes in, records out and back. The reader takes the stream as hostile: every length is
// checked against what is left, every string must end with its NUL, and any flaw is a
// XsStateError naming the record and the field, never a crash or an out-of-bounds read.

/** Record types (XS_STATE_TYPE_*). */
export const enum XsStateType {
  END = 0,
  GLOBAL = 1,
  CONN = 2,
  WATCH = 3,
  TA = 4,
  NODE = 5,
  GLB_QUOTA = 6,
  DOMAIN = 7,
  /** Version 2 and up. */
  WATCH_EXT = 8,
}

export const XS_STATE_IDENT = 'xenstore';
/** The versions the design defines; C 4.17 writes (and reads only) 1. */
export const XS_STATE_VERSION_MIN = 1;
export const XS_STATE_VERSION_MAX = 2;
export const XS_STATE_CONN_TYPE_RING = 0;
export const XS_STATE_CONN_TYPE_SOCKET = 1;
/** CONNECTION_DATA `fields` bit: a u64 unique-id follows the data. */
export const XS_STATE_CONN_FIELDS_UNIQ_ID = 1;
export const XS_STATE_NODE_PERM_IGNORE = 1;
export const XS_STATE_NODE_TA_READ = 1;
export const XS_STATE_NODE_TA_WRITTEN = 2;
/** WATCH_DATA_EXTENDED depth meaning every level below. */
export const XS_STATE_WATCH_DEPTH_ALL = 0xffff;

export interface XsStateGlobal {
  readonly type: XsStateType.GLOBAL;
  readonly socketFd: number;
  readonly evtchnFd: number;
}

export type XsStateConnSpec =
  | { readonly kind: 'ring'; readonly domid: number; readonly tdomid: number; readonly evtchn: number }
  | { readonly kind: 'socket'; readonly fd: number };

export interface XsStateConnection {
  readonly type: XsStateType.CONN;
  /** Non-zero; watch and transaction records refer to it. */
  readonly connId: number;
  readonly spec: XsStateConnSpec;
  /** Bytes read and not yet processed (whole requests, then a partial one). */
  readonly inData: Uint8Array;
  /** Bytes of a partly written response at the head of outData (0: none). */
  readonly outRespLen: number;
  /** Bytes not yet written to the connection. */
  readonly outData: Uint8Array;
  readonly uniqueId?: bigint;
}

export interface XsStateWatch {
  readonly type: XsStateType.WATCH | XsStateType.WATCH_EXT;
  readonly connId: number;
  /** As the WATCH request gave it: a relative path stays relative. */
  readonly path: string;
  readonly token: string;
  /** WATCH_EXT only: levels below the path that match (XS_STATE_WATCH_DEPTH_ALL: all). */
  readonly depth?: number;
}

export interface XsStateTransaction {
  readonly type: XsStateType.TA;
  readonly connId: number;
  readonly txId: number;
}

export interface XsStatePerm {
  /** 'n', 'r', 'w' or 'b'. */
  readonly access: 'n' | 'r' | 'w' | 'b';
  readonly ignore: boolean;
  readonly domid: number;
}

export interface XsStateNode {
  readonly type: XsStateType.NODE;
  /** 0: a committed node; else the transaction's connection. */
  readonly connId: number;
  readonly txId: number;
  readonly access: number;
  readonly perms: readonly XsStatePerm[];
  readonly path: string;
  /** The value's bytes, one char per byte (latin1), NULs allowed. */
  readonly value: string;
}

export interface XsStateQuota {
  readonly name: string;
  readonly value: number;
}

export interface XsStateGlobalQuota {
  readonly type: XsStateType.GLB_QUOTA;
  /** Defaults applying per domain, then limits applying globally only. */
  readonly domain: readonly XsStateQuota[];
  readonly global: readonly XsStateQuota[];
}

export interface XsStateDomain {
  readonly type: XsStateType.DOMAIN;
  readonly domid: number;
  /** The ring page's server_features (version 2; 0 in version 1). */
  readonly features: number;
  readonly quotas: readonly XsStateQuota[];
}

/** A record of a type this codec does not know: kept as it came (C skips them). */
export interface XsStateUnknown {
  readonly type: number;
  readonly unknown: true;
  readonly body: Uint8Array;
}

export type XsStateRecord =
  | XsStateGlobal | XsStateConnection | XsStateWatch | XsStateTransaction | XsStateNode
  | XsStateGlobalQuota | XsStateDomain | XsStateUnknown;

export interface XsState {
  readonly version: number;
  /** Byte order of every field after the header (default little, as x86 and Arm write). */
  readonly bigEndian?: boolean;
  /** Every record but END, which the writer adds and the reader drops. */
  readonly records: readonly XsStateRecord[];
}

export class XsStateError extends Error {}

const PERM_LETTERS = new Set(['n', 'r', 'w', 'b']);

/**
 * Buffer's own latin1 methods, without toString()/write()'s argument handling: a million nodes
 * read and write two strings each. Bounds are checked by the callers.
 */
interface Latin1Buffer extends Buffer {
  latin1Write(s: string, offset: number): number;
  latin1Slice(start: number, end: number): string;
}
const pad8 = (n: number): number => (n + 7) & ~7;

// ------------------------------------------------------------------ writer

/** A growing little/big-endian byte buffer. */
class Out {
  private buf: Buffer;
  len = 0;

  constructor(readonly be: boolean, sizeHint = 1 << 16) {
    this.buf = Buffer.allocUnsafe(Math.max(64, sizeHint));
  }

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const b = Buffer.allocUnsafe(size);
    this.buf.copy(b, 0, 0, this.len);
    this.buf = b;
  }

  u8(v: number): void {
    this.room(1);
    this.buf[this.len++] = v;
  }

  u16(v: number): void {
    this.room(2);
    const b = this.buf;
    const i = this.len;
    if (this.be) {
      b[i] = v >>> 8;
      b[i + 1] = v;
    } else {
      b[i] = v;
      b[i + 1] = v >>> 8;
    }
    this.len = i + 2;
  }

  u32(v: number): void {
    this.room(4);
    const b = this.buf;
    const i = this.len;
    if (this.be) {
      b[i] = v >>> 24;
      b[i + 1] = v >>> 16;
      b[i + 2] = v >>> 8;
      b[i + 3] = v;
    } else {
      b[i] = v;
      b[i + 1] = v >>> 8;
      b[i + 2] = v >>> 16;
      b[i + 3] = v >>> 24;
    }
    this.len = i + 4;
  }

  i32(v: number): void {
    this.room(4);
    if (this.be) this.buf.writeInt32BE(v, this.len);
    else this.buf.writeInt32LE(v, this.len);
    this.len += 4;
  }

  u64(v: bigint): void {
    this.room(8);
    if (this.be) this.buf.writeBigUInt64BE(v, this.len);
    else this.buf.writeBigUInt64LE(v, this.len);
    this.len += 8;
  }

  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  /** latin1 text, then a NUL if asked. */
  text(s: string, nul: boolean): void {
    this.room(s.length + 1);
    this.len += (this.buf as Latin1Buffer).latin1Write(s, this.len);
    if (nul) this.buf[this.len++] = 0;
  }

  align(from: number): void {
    const n = pad8(this.len - from) - (this.len - from);
    this.room(n);
    this.buf.fill(0, this.len, this.len + n);
    this.len += n;
  }

  patchU32(at: number, v: number): void {
    if (this.be) this.buf.writeUInt32BE(v >>> 0, at);
    else this.buf.writeUInt32LE(v >>> 0, at);
  }

  result(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

const u16ok = (v: number, what: string): number => {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new XsStateError(`${what} ${v} does not fit 16 bits`);
  return v;
};

const u32ok = (v: number, what: string): number => {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new XsStateError(`${what} ${v} does not fit 32 bits`);
  return v;
};

function quotaRecord(o: Out, quotas: readonly XsStateQuota[]): void {
  for (const q of quotas) o.u32(u32ok(q.value, `quota ${q.name}`));
  for (const q of quotas) {
    if (q.name.length === 0 || q.name.includes('\0')) throw new XsStateError(`quota name "${q.name}" is empty or holds a NUL`);
    o.text(q.name, true);
  }
}

/** Where records go one by one (a writer, or anything collecting them). */
export interface XsStateSink {
  record(r: XsStateRecord): void;
  /** A committed NODE_DATA record (or a transaction's, with connId, txId and access). */
  node(path: string, value: string, perms: readonly XsStatePerm[], connId?: number, txId?: number, access?: number): void;
}

/**
 * Writes a stream record by record (a daemon's million nodes need no record objects): the
 * header at once, then record() or node() per record, then finish() adds END.
 */
export class XsStateWriter implements XsStateSink {
  private readonly o: Out;
  /** Encoded permission lists, by list (callers share one list between nodes with one ACL). */
  private readonly permBytes = new WeakMap<readonly XsStatePerm[], Uint8Array>();

  /** `sizeHint`: the stream's expected size in bytes (it grows as needed). */
  constructor(readonly version: number, bigEndian = false, sizeHint?: number) {
    if (version < XS_STATE_VERSION_MIN || version > XS_STATE_VERSION_MAX) throw new XsStateError(`no state stream version ${version}`);
    const o = this.o = new Out(bigEndian, sizeHint);
    o.text(XS_STATE_IDENT, false);
    // The header is big-endian whatever the flags say.
    o.u8(version >>> 24);
    o.u8((version >>> 16) & 0xff);
    o.u8((version >>> 8) & 0xff);
    o.u8(version & 0xff);
    o.u32(bigEndian ? 1 : 0);
  }

  record(r: XsStateRecord): void {
    if ('unknown' in r && r.type <= XsStateType.WATCH_EXT) throw new XsStateError(`record type ${r.type} is a known one: give it as such`);
    if (r.type === XsStateType.END) throw new XsStateError('END is written by the writer, not given as a record');
    if (r.type === XsStateType.NODE && !('unknown' in r)) return this.node(r.path, r.value, r.perms, r.connId, r.txId, r.access);
    const start = this.open(r.type);
    writeBody(this.o, r, this.version);
    this.close(start);
  }

  /** A NODE_DATA record (committed unless connId is given). */
  node(path: string, value: string, perms: readonly XsStatePerm[], connId = 0, txId = 0, access = 0): void {
    if (path.includes('\0')) throw new XsStateError('a node path holds a NUL');
    const o = this.o;
    const start = this.open(XsStateType.NODE);
    o.u32(u32ok(connId, 'conn-id'));
    o.u32(u32ok(txId, 'tx-id'));
    o.u16(u16ok(path.length + 1, 'path-len'));
    o.u16(u16ok(value.length, 'value-len'));
    o.u16(u16ok(access, 'access'));
    o.u16(u16ok(perms.length, 'perm-count'));
    o.bytes(this.perms(perms));
    o.text(path, true);
    o.text(value, false);
    this.close(start);
  }

  /** The stream so far plus END. */
  finish(): Uint8Array {
    this.o.u32(XsStateType.END);
    this.o.u32(0);
    return this.o.result();
  }

  private open(type: number): number {
    this.o.u32(type);
    this.o.u32(0);
    return this.o.len;
  }

  private close(start: number): void {
    this.o.align(start);
    // The length covers the padding too, as C's ROUNDUP(head.length, 3) does.
    this.o.patchU32(start - 4, this.o.len - start);
  }

  private perms(perms: readonly XsStatePerm[]): Uint8Array {
    let b = this.permBytes.get(perms);
    if (b !== undefined) return b;
    const o = new Out(this.o.be);
    for (const p of perms) {
      if (!PERM_LETTERS.has(p.access)) throw new XsStateError(`permission letter "${p.access}"`);
      o.u8(p.access.charCodeAt(0));
      o.u8(p.ignore ? XS_STATE_NODE_PERM_IGNORE : 0);
      o.u16(u16ok(p.domid, 'perm domid'));
    }
    b = Uint8Array.from(o.result());
    this.permBytes.set(perms, b);
    return b;
  }
}

/** Serialises a state: header, the records in the order given, END. */
export function encodeState(state: XsState): Uint8Array {
  const w = new XsStateWriter(state.version, state.bigEndian ?? false);
  for (const r of state.records) w.record(r);
  return w.finish();
}

function writeBody(o: Out, r: XsStateRecord, version: number): void {
  if ('unknown' in r) return void o.bytes(r.body);
  switch (r.type) {
    case XsStateType.GLOBAL:
      o.i32(r.socketFd);
      o.i32(r.evtchnFd);
      return;
    case XsStateType.CONN: {
      if (r.connId === 0) throw new XsStateError('a connection id must be non-zero');
      o.u32(u32ok(r.connId, 'conn-id'));
      o.u16(r.spec.kind === 'ring' ? XS_STATE_CONN_TYPE_RING : XS_STATE_CONN_TYPE_SOCKET);
      o.u16(r.uniqueId !== undefined ? XS_STATE_CONN_FIELDS_UNIQ_ID : 0);
      if (r.spec.kind === 'ring') {
        o.u16(u16ok(r.spec.domid, 'domid'));
        o.u16(u16ok(r.spec.tdomid, 'tdomid'));
        o.u32(u32ok(r.spec.evtchn, 'evtchn'));
      } else {
        o.i32(r.spec.fd);
        o.u32(0);
      }
      if (r.outRespLen > r.outData.length) throw new XsStateError('out-resp-len exceeds the output data');
      o.u16(u16ok(r.inData.length, 'in-data-len'));
      o.u16(u16ok(r.outRespLen, 'out-resp-len'));
      o.u32(u32ok(r.outData.length, 'out-data-len'));
      o.bytes(r.inData);
      o.bytes(r.outData);
      if (r.uniqueId !== undefined) {
        // The optional fields start 8-aligned after the data (record bodies start 8-aligned).
        o.align(0);
        o.u64(r.uniqueId);
      }
      return;
    }
    case XsStateType.WATCH:
    case XsStateType.WATCH_EXT:
      if (r.type === XsStateType.WATCH_EXT && version < 2) throw new XsStateError('WATCH_DATA_EXTENDED needs stream version 2');
      if (r.path.includes('\0') || r.token.includes('\0')) throw new XsStateError('a watch path or token holds a NUL');
      o.u32(u32ok(r.connId, 'conn-id'));
      o.u16(u16ok(r.path.length + 1, 'wpath-len'));
      o.u16(u16ok(r.token.length + 1, 'token-len'));
      if (r.type === XsStateType.WATCH_EXT) {
        o.u16(u16ok(r.depth ?? XS_STATE_WATCH_DEPTH_ALL, 'depth'));
        o.u16(0);
      }
      o.text(r.path, true);
      o.text(r.token, true);
      return;
    case XsStateType.TA:
      o.u32(u32ok(r.connId, 'conn-id'));
      o.u32(u32ok(r.txId, 'tx-id'));
      return;
    case XsStateType.NODE:
      throw new Error('XsStateWriter.node() writes NODE_DATA');
    case XsStateType.GLB_QUOTA:
      o.u16(u16ok(r.domain.length, 'n-dom-quota'));
      o.u16(u16ok(r.global.length, 'n-glob-quota'));
      quotaRecord(o, [...r.domain, ...r.global]);
      return;
    case XsStateType.DOMAIN:
      o.u16(u16ok(r.domid, 'domain-id'));
      o.u16(u16ok(r.quotas.length, 'n-quota'));
      o.u32(version >= 2 ? u32ok(r.features, 'features') : 0);
      quotaRecord(o, r.quotas);
      return;
  }
}

// ------------------------------------------------------------------ reader

/** Bounds on what a stream may ask the reader to build. */
export interface XsStateLimits {
  /** Most records before END (default: 16M). */
  readonly maxRecords?: number;
}

/** One record body being read: every access checked against its end. */
class In {
  off = 0;
  end = 0;
  private index = 0;
  private type = 0;
  private at = 0;

  constructor(readonly b: Buffer, private readonly be: boolean) {}

  /** Starts on the body of record `index` (1-based) of `type` whose header is at byte `at`. */
  start(index: number, type: number, at: number, len: number): void {
    this.index = index;
    this.type = type;
    this.at = at;
    this.off = at + 8;
    this.end = at + 8 + len;
  }

  /** Names the record in errors (built only for one). */
  get what(): string {
    return `record ${this.index} (type ${this.type}) at byte ${this.at}`;
  }

  private need(n: number, field: string): void {
    if (this.off + n > this.end) throw new XsStateError(`${this.what}: ${field} runs past the record's end`);
  }

  u8(field: string): number {
    this.need(1, field);
    return this.b[this.off++];
  }

  u16(field: string): number {
    this.need(2, field);
    const v = this.be ? this.b.readUInt16BE(this.off) : this.b.readUInt16LE(this.off);
    this.off += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.be ? this.b.readUInt32BE(this.off) : this.b.readUInt32LE(this.off);
    this.off += 4;
    return v;
  }

  i32(field: string): number {
    this.need(4, field);
    const v = this.be ? this.b.readInt32BE(this.off) : this.b.readInt32LE(this.off);
    this.off += 4;
    return v;
  }

  u64(field: string): bigint {
    this.need(8, field);
    const v = this.be ? this.b.readBigUInt64BE(this.off) : this.b.readBigUInt64LE(this.off);
    this.off += 8;
    return v;
  }

  bytes(n: number, field: string): Uint8Array {
    this.need(n, field);
    const v = new Uint8Array(this.b.subarray(this.off, this.off + n));
    this.off += n;
    return v;
  }

  /** `n` bytes whose last is the only NUL (a string with its terminator). */
  cstring(n: number, field: string): string {
    if (n === 0) throw new XsStateError(`${this.what}: ${field} has length 0 (it counts its NUL)`);
    this.need(n, field);
    const nul = this.b.indexOf(0, this.off);
    if (nul !== this.off + n - 1) throw new XsStateError(`${this.what}: ${field} is not a string of ${n - 1} bytes and its NUL`);
    const s = (this.b as Latin1Buffer).latin1Slice(this.off, nul);
    this.off += n;
    return s;
  }

  text(n: number, field: string): string {
    this.need(n, field);
    const s = (this.b as Latin1Buffer).latin1Slice(this.off, this.off + n);
    this.off += n;
    return s;
  }

  /** NUL-terminated names, `n` of them, each non-empty, none past the end. */
  names(n: number, field: string): string[] {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const nul = this.b.indexOf(0, this.off);
      if (nul < 0 || nul >= this.end) throw new XsStateError(`${this.what}: ${field} ${i + 1} of ${n} is not NUL-terminated within the record`);
      out.push(this.b.toString('latin1', this.off, nul));
      this.off = nul + 1;
    }
    return out;
  }
}

/** The stream's version, checked without reading the records. */
export function stateVersion(bytes: Uint8Array): number {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (b.length < 16) throw new XsStateError(`state stream of ${b.length} bytes: shorter than its 16-byte header`);
  if (b.toString('latin1', 0, 8) !== XS_STATE_IDENT) throw new XsStateError('not a xenstore state stream (ident is not "xenstore")');
  return b.readUInt32BE(8);
}

/** What read() calls per record; NODE_DATA goes to node() when there is one, without a record object. */
export interface XsStateVisitor {
  record(r: XsStateRecord): void;
  node?(path: string, value: string, perms: readonly XsStatePerm[], connId: number, txId: number, access: number): void;
}

/**
 * Reads a stream record by record: the header is checked at once, read() hands each record to
 * the visitor as it is read (a restore needs no array of a million records) and throws
 * XsStateError on the first flaw, or when the stream ends without END.
 */
export class XsStateReader {
  readonly version: number;
  readonly bigEndian: boolean;
  private readonly b: Buffer;
  /** Permission lists by their bytes: nodes with one ACL share one (frozen) list. */
  private readonly perms = new Map<string, readonly XsStatePerm[]>();

  constructor(bytes: Uint8Array, private readonly limits: XsStateLimits = {}) {
    this.b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    this.version = stateVersion(bytes);
    if (this.version < XS_STATE_VERSION_MIN || this.version > XS_STATE_VERSION_MAX) throw new XsStateError(`unsupported state stream version ${this.version}`);
    const flags = this.b.readUInt32BE(12) === 1 ? 1 : this.b.readUInt32LE(12);
    if ((flags & ~1) !== 0) throw new XsStateError(`reserved flag bits set (flags 0x${flags.toString(16)})`);
    this.bigEndian = (flags & 1) === 1;
  }

  /** Every record, in stream order. */
  records(): XsStateRecord[] {
    const out: XsStateRecord[] = [];
    this.read({ record: (r) => out.push(r) });
    return out;
  }

  read(visit: XsStateVisitor): void {
    const b = this.b;
    const be = this.bigEndian;
    const maxRecords = this.limits.maxRecords ?? 1 << 24;
    const r = new In(b, be);
    let n = 0;
    let off = 16;
    for (;;) {
      if (off + 8 > b.length) throw new XsStateError(`stream ends at byte ${off} without an END record`);
      const type = be ? b.readUInt32BE(off) : b.readUInt32LE(off);
      const len = be ? b.readUInt32BE(off + 4) : b.readUInt32LE(off + 4);
      if (len > b.length - off - 8) throw new XsStateError(`record ${n + 1} (type ${type}) at byte ${off}: length ${len} runs past the stream's end`);
      if (type === XsStateType.END) {
        if (len !== 0) throw new XsStateError(`END record with length ${len}`);
        return;
      }
      if (n >= maxRecords) throw new XsStateError(`more than ${maxRecords} records`);
      r.start(++n, type, off, len);
      // Records are 8-byte multiples; a shorter length still has its padding (up to the next 8).
      const next = off + 8 + pad8(len);
      if (next > b.length) throw new XsStateError(`${r.what}: padding runs past the stream's end`);
      if (type !== XsStateType.NODE) visit.record(readBody(r, type, this.version));
      else this.node(r, visit);
      off = next;
    }
  }

  private node(r: In, visit: XsStateVisitor): void {
    const connId = r.u32('conn-id');
    const txId = r.u32('tx-id');
    const pathLen = r.u16('path-len');
    const valueLen = r.u16('value-len');
    const access = r.u16('access');
    const n = r.u16('perm-count');
    const key = r.text(4 * n, 'perm');
    let perms = this.perms.get(key);
    if (perms === undefined) {
      const list: XsStatePerm[] = [];
      for (let i = 0; i < n; i++) {
        const letter = key[4 * i];
        const flags = key.charCodeAt(4 * i + 1);
        const domid = this.bigEndian ? key.charCodeAt(4 * i + 2) << 8 | key.charCodeAt(4 * i + 3) : key.charCodeAt(4 * i + 2) | key.charCodeAt(4 * i + 3) << 8;
        if (!PERM_LETTERS.has(letter)) throw new XsStateError(`${r.what}: permission ${i + 1} has letter 0x${letter.charCodeAt(0).toString(16)}`);
        list.push(Object.freeze({ access: letter as XsStatePerm['access'], ignore: (flags & XS_STATE_NODE_PERM_IGNORE) !== 0, domid }));
      }
      perms = Object.freeze(list);
      if (this.perms.size < 4096) this.perms.set(key, perms);
    }
    const path = r.cstring(pathLen, 'path');
    const value = r.text(valueLen, 'value');
    if (visit.node) visit.node(path, value, perms, connId, txId, access);
    else visit.record({ type: XsStateType.NODE, connId, txId, access, perms, path, value });
  }
}

/** Parses a whole stream; throws XsStateError on the first flaw. */
export function decodeState(bytes: Uint8Array, limits: XsStateLimits = {}): XsState {
  const reader = new XsStateReader(bytes, limits);
  const records = reader.records();
  return { version: reader.version, bigEndian: reader.bigEndian, records };
}

function readQuotas(r: In, n: number): XsStateQuota[] {
  const values: number[] = [];
  for (let i = 0; i < n; i++) values.push(r.u32('quota-val'));
  const names = r.names(n, 'quota name');
  return names.map((name, i) => ({ name, value: values[i] }));
}

function readBody(r: In, type: number, version: number): XsStateRecord {
  const what = r.what;
  switch (type) {
    case XsStateType.GLOBAL:
      return { type, socketFd: r.i32('rw-socket-fd'), evtchnFd: r.i32('evtchn-fd') };
    case XsStateType.CONN: {
      const connId = r.u32('conn-id');
      if (connId === 0) throw new XsStateError(`${what}: conn-id 0`);
      const ctype = r.u16('conn-type');
      const fields = r.u16('fields');
      let spec: XsStateConnSpec;
      if (ctype === XS_STATE_CONN_TYPE_RING) {
        spec = { kind: 'ring', domid: r.u16('domid'), tdomid: r.u16('tdomid'), evtchn: r.u32('evtchn') };
      } else if (ctype === XS_STATE_CONN_TYPE_SOCKET) {
        spec = { kind: 'socket', fd: r.i32('socket-fd') };
        r.u32('pad');
      } else {
        throw new XsStateError(`${what}: unknown conn-type ${ctype}`);
      }
      const inLen = r.u16('in-data-len');
      const respLen = r.u16('out-resp-len');
      const outLen = r.u32('out-data-len');
      if (respLen > outLen) throw new XsStateError(`${what}: out-resp-len ${respLen} exceeds out-data-len ${outLen}`);
      const inData = r.bytes(inLen, 'in-data');
      const outData = r.bytes(outLen, 'out-data');
      let uniqueId: bigint | undefined;
      if (fields & XS_STATE_CONN_FIELDS_UNIQ_ID) {
        // After padding to 8 (record bodies start 8-aligned in the stream).
        r.off = pad8(r.off);
        uniqueId = r.u64('unique-id');
      }
      const conn = { type, connId, spec, inData, outRespLen: respLen, outData } as const;
      return uniqueId === undefined ? conn : { ...conn, uniqueId };
    }
    case XsStateType.WATCH:
    case XsStateType.WATCH_EXT: {
      if (type === XsStateType.WATCH_EXT && version < 2) throw new XsStateError(`${what}: WATCH_DATA_EXTENDED in a version ${version} stream`);
      const connId = r.u32('conn-id');
      const pathLen = r.u16('wpath-len');
      const tokenLen = r.u16('token-len');
      let depth: number | undefined;
      if (type === XsStateType.WATCH_EXT) {
        depth = r.u16('depth');
        r.u16('pad');
      }
      const path = r.cstring(pathLen, 'wpath');
      const token = r.cstring(tokenLen, 'token');
      return depth === undefined ? { type, connId, path, token } : { type, connId, path, token, depth };
    }
    case XsStateType.TA:
      return { type, connId: r.u32('conn-id'), txId: r.u32('tx-id') };
    case XsStateType.GLB_QUOTA: {
      const nDom = r.u16('n-dom-quota');
      const nGlob = r.u16('n-glob-quota');
      const all = readQuotas(r, nDom + nGlob);
      return { type, domain: all.slice(0, nDom), global: all.slice(nDom) };
    }
    case XsStateType.DOMAIN: {
      const domid = r.u16('domain-id');
      const n = r.u16('n-quota');
      const features = r.u32('features');
      // Only valid from version 2: an older stream's field is ignored.
      return { type, domid, features: version >= 2 ? features : 0, quotas: readQuotas(r, n) };
    }
    default:
      return { type, unknown: true, body: r.bytes(r.end - r.off, 'body') };
  }
}
