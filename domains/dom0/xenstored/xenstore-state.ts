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
  buf: Buffer;
  len = 0;

  constructor(readonly be: boolean, sizeHint = 1 << 16) {
    this.buf = Buffer.allocUnsafe(Math.max(64, sizeHint));
  }

  room(n: number): void {
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

function put16(b: Buffer, at: number, v: number, be: boolean): void {
  if (be) {
    b[at] = v >>> 8;
    b[at + 1] = v;
  } else {
    b[at] = v;
    b[at + 1] = v >>> 8;
  }
}

function put32(b: Buffer, at: number, v: number, be: boolean): void {
  if (be) {
    b[at] = v >>> 24;
    b[at + 1] = v >>> 16;
    b[at + 2] = v >>> 8;
    b[at + 3] = v;
  } else {
    b[at] = v;
    b[at + 1] = v >>> 8;
    b[at + 2] = v >>> 16;
    b[at + 3] = v >>> 24;
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

/**
 * Where a NODE_DATA record's path is, as the sink that took it knows it: nodeUnder() builds a
 * child's path from it (a tree walk then writes no path strings).
 */
export type XsStatePathRef = number;

/** Where records go one by one (a writer, or anything collecting them). */
export interface XsStateSink {
  record(r: XsStateRecord): void;
  /** A committed NODE_DATA record (or a transaction's, with connId, txId and access). */
  node(path: string, value: string, perms: readonly XsStatePerm[], connId?: number, txId?: number, access?: number): XsStatePathRef;
  /** A committed NODE_DATA record whose path is that of `parent` (a node given before) plus `/name`. */
  nodeUnder(parent: XsStatePathRef, name: string, value: string, perms: readonly XsStatePerm[]): XsStatePathRef;
}

/** Strings shorter than this are copied by a loop: a native call costs more than a few bytes. */
const SHORT = 32;

/**
 * Writes a stream record by record (a daemon's million nodes need no record objects): the
 * header at once, then record() or node() per record, then finish() adds END.
 */
export class XsStateWriter implements XsStateSink {
  private readonly o: Out;
  /** Encoded permission lists, by list (callers share one list between nodes with one ACL). */
  private readonly permBytes = new WeakMap<readonly XsStatePerm[], Uint8Array>();
  /** The list encoded last: neighbouring nodes mostly share their ACL. */
  private lastPerms: readonly XsStatePerm[] | undefined;
  private lastPermBytes: Uint8Array = new Uint8Array(0);

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
    if (r.type === XsStateType.NODE && !('unknown' in r)) return void this.node(r.path, r.value, r.perms, r.connId, r.txId, r.access);
    const start = this.open(r.type);
    writeBody(this.o, r, this.version);
    this.close(start);
  }

  /** A NODE_DATA record (committed unless connId is given). The ref is the record body's offset. */
  node(path: string, value: string, perms: readonly XsStatePerm[], connId = 0, txId = 0, access = 0): XsStatePathRef {
    if (path.includes('\0')) throw new XsStateError('a node path holds a NUL');
    u32ok(connId, 'conn-id');
    u32ok(txId, 'tx-id');
    u16ok(access, 'access');
    const body = this.nodeHead(path.length + 1, value.length, perms, connId, txId, access);
    const o = this.o;
    o.len += (o.buf as Latin1Buffer).latin1Write(path, o.len);
    o.buf[o.len++] = 0;
    this.nodeTail(body, value);
    return body;
  }

  /**
   * A committed NODE_DATA record under one written before: its path is copied from the
   * parent's record, `/name` added (no path string is built).
   */
  nodeUnder(parent: XsStatePathRef, name: string, value: string, perms: readonly XsStatePerm[]): XsStatePathRef {
    const o = this.o;
    const be = o.be;
    let b = o.buf;
    // The parent's path (without its NUL) starts after its 16-byte header and ACL.
    const parentLen = (be ? b[parent + 8] << 8 | b[parent + 9] : b[parent + 8] | b[parent + 9] << 8) - 1;
    const parentPerms = be ? b[parent + 14] << 8 | b[parent + 15] : b[parent + 14] | b[parent + 15] << 8;
    const from = parent + 16 + 4 * parentPerms;
    // Under the root ("/") the separator is the root's own slash.
    const prefix = parentLen === 1 ? 0 : parentLen;
    const n = name.length;
    const body = this.nodeHead(prefix + 1 + n + 1, value.length, perms, 0, 0, 0);
    b = o.buf;
    let at = o.len;
    if (prefix < SHORT) for (let i = 0; i < prefix; i++) b[at + i] = b[from + i];
    else b.copyWithin(at, from, from + prefix);
    at += prefix;
    b[at++] = 0x2f;
    for (let i = 0; i < n; i++) {
      const c = name.charCodeAt(i);
      if (c === 0) throw new XsStateError('a node name holds a NUL');
      b[at + i] = c;
    }
    at += n;
    b[at++] = 0;
    o.len = at;
    this.nodeTail(body, value);
    return body;
  }

  /**
   * A NODE_DATA record's header, fields and ACL, with room made for the whole record; returns
   * the body's offset, the path goes next.
   */
  private nodeHead(pathLen: number, valueLen: number, perms: readonly XsStatePerm[], connId: number, txId: number, access: number): number {
    if (pathLen > 0xffff) throw new XsStateError(`path-len ${pathLen} does not fit 16 bits`);
    if (valueLen > 0xffff) throw new XsStateError(`value-len ${valueLen} does not fit 16 bits`);
    if (perms.length > 0xffff) throw new XsStateError(`perm-count ${perms.length} does not fit 16 bits`);
    const pb = perms === this.lastPerms ? this.lastPermBytes : this.perms(perms);
    const len = 16 + pb.length + pathLen + valueLen;
    const o = this.o;
    // The record, its padding and the next record's header.
    o.room(8 + len + 8);
    const b = o.buf;
    const at = o.len;
    const be = o.be;
    put32(b, at, XsStateType.NODE, be);
    // The length covers the padding too, as C's ROUNDUP(head.length, 3) does.
    put32(b, at + 4, pad8(len), be);
    put32(b, at + 8, connId, be);
    put32(b, at + 12, txId, be);
    put16(b, at + 16, pathLen, be);
    put16(b, at + 18, valueLen, be);
    put16(b, at + 20, access, be);
    put16(b, at + 22, perms.length, be);
    for (let i = 0; i < pb.length; i++) b[at + 24 + i] = pb[i];
    o.len = at + 24 + pb.length;
    return at + 8;
  }

  /** The value and the padding after the path. */
  private nodeTail(body: number, value: string): void {
    const o = this.o;
    const b = o.buf;
    let at = o.len;
    const n = value.length;
    if (n < SHORT) {
      for (let i = 0; i < n; i++) b[at + i] = value.charCodeAt(i);
      at += n;
    } else {
      at += (b as Latin1Buffer).latin1Write(value, at);
    }
    const end = body + pad8(at - body);
    while (at < end) b[at++] = 0;
    o.len = at;
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
    if (b === undefined) {
      const o = new Out(this.o.be);
      for (const p of perms) {
        if (!PERM_LETTERS.has(p.access)) throw new XsStateError(`permission letter "${p.access}"`);
        o.u8(p.access.charCodeAt(0));
        o.u8(p.ignore ? XS_STATE_NODE_PERM_IGNORE : 0);
        o.u16(u16ok(p.domid, 'perm domid'));
      }
      b = Uint8Array.from(o.result());
      this.permBytes.set(perms, b);
    }
    this.lastPerms = perms;
    this.lastPermBytes = b;
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
  index = 0;
  private type = 0;
  at = 0;

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

/**
 * A NODE_DATA record as read, before any string is made of it: offsets into the stream, every
 * length checked against its record. One object, reused from one record to the next.
 */
export interface XsStateNodeView {
  /** The stream. */
  readonly bytes: Buffer;
  /** The record's number (1-based) and its header's offset, for errors. */
  readonly index: number;
  readonly at: number;
  readonly connId: number;
  readonly txId: number;
  readonly access: number;
  /** Checked letters; one list per ACL met in the stream (it may be shared between records). */
  readonly perms: readonly XsStatePerm[];
  /** The path's bytes (no NUL among them; the NUL after them is checked and not counted). */
  readonly pathAt: number;
  readonly pathLen: number;
  readonly valueAt: number;
  readonly valueLen: number;
}

/** What read() calls per record; NODE_DATA goes to nodeAt() or node() when there is one, without a record object. */
export interface XsStateVisitor {
  record(r: XsStateRecord): void;
  node?(path: string, value: string, perms: readonly XsStatePerm[], connId: number, txId: number, access: number): void;
  /** Takes NODE_DATA as bytes (node() is then not called). */
  nodeAt?(n: XsStateNodeView): void;
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
  /** The last record's list and where its bytes are: a neighbour with the same bytes shares it. */
  private lastPerms: readonly XsStatePerm[] = Object.freeze([]);
  private lastPermsAt = 0;
  private readonly view = {
    bytes: Buffer.alloc(0) as Buffer, index: 0, at: 0, connId: 0, txId: 0, access: 0,
    perms: [] as readonly XsStatePerm[], pathAt: 0, pathLen: 0, valueAt: 0, valueLen: 0,
  };

  constructor(bytes: Uint8Array, private readonly limits: XsStateLimits = {}) {
    this.b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    this.view.bytes = this.b;
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

  /** NODE_DATA: the fixed fields read at once (one bounds check), then the ACL, path and value. */
  private node(r: In, visit: XsStateVisitor): void {
    const b = this.b;
    const be = this.bigEndian;
    const o = r.off;
    const end = r.end;
    if (end - o < 16) {
      // Too short: the field reads name the one cut off.
      r.u32('conn-id');
      r.u32('tx-id');
      r.u16('path-len');
      r.u16('value-len');
      r.u16('access');
      r.u16('perm-count');
    }
    const connId = be ? b.readUInt32BE(o) : b.readUInt32LE(o);
    const txId = be ? b.readUInt32BE(o + 4) : b.readUInt32LE(o + 4);
    const pathLen = be ? b[o + 8] << 8 | b[o + 9] : b[o + 8] | b[o + 9] << 8;
    const valueLen = be ? b[o + 10] << 8 | b[o + 11] : b[o + 10] | b[o + 11] << 8;
    const access = be ? b[o + 12] << 8 | b[o + 13] : b[o + 12] | b[o + 13] << 8;
    const n = be ? b[o + 14] << 8 | b[o + 15] : b[o + 14] | b[o + 15] << 8;
    const permsAt = o + 16;
    if (permsAt + 4 * n > end) throw new XsStateError(`${r.what}: perm runs past the record's end`);
    const perms = this.permsAt(permsAt, n, r);
    const pathAt = permsAt + 4 * n;
    if (pathLen === 0) throw new XsStateError(`${r.what}: path has length 0 (it counts its NUL)`);
    if (pathAt + pathLen > end) throw new XsStateError(`${r.what}: path runs past the record's end`);
    const nul = pathAt + pathLen - 1;
    let i = pathAt;
    while (i < nul && b[i] !== 0) i++;
    if (i !== nul || b[nul] !== 0) throw new XsStateError(`${r.what}: path is not a string of ${pathLen - 1} bytes and its NUL`);
    const valueAt = pathAt + pathLen;
    if (valueAt + valueLen > end) throw new XsStateError(`${r.what}: value runs past the record's end`);
    if (visit.nodeAt) {
      const v = this.view;
      v.index = r.index;
      v.at = r.at;
      v.connId = connId;
      v.txId = txId;
      v.access = access;
      v.perms = perms;
      v.pathAt = pathAt;
      v.pathLen = pathLen - 1;
      v.valueAt = valueAt;
      v.valueLen = valueLen;
      visit.nodeAt(v);
      return;
    }
    const path = (b as Latin1Buffer).latin1Slice(pathAt, nul);
    const value = (b as Latin1Buffer).latin1Slice(valueAt, valueAt + valueLen);
    if (visit.node) visit.node(path, value, perms, connId, txId, access);
    else visit.record({ type: XsStateType.NODE, connId, txId, access, perms, path, value });
  }

  /** The (checked, shared) list of the `n` entries at `at`. */
  private permsAt(at: number, n: number, r: In): readonly XsStatePerm[] {
    const b = this.b;
    const last = this.lastPerms;
    if (last.length === n) {
      const from = this.lastPermsAt;
      let i = 0;
      while (i < 4 * n && b[from + i] === b[at + i]) i++;
      if (i === 4 * n) {
        this.lastPermsAt = at;
        return last;
      }
    }
    const key = (b as Latin1Buffer).latin1Slice(at, at + 4 * n);
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
    this.lastPerms = perms;
    this.lastPermsAt = at;
    return perms;
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
