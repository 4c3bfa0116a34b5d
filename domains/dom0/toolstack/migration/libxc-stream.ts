// The libxc migration stream, v2/v3 (docs/specs/libxc-migration-stream.pandoc,
// tools/libs/guest/xg_sr_stream_format.h): image header, domain header, then records up to END.
// Byte-exact encoders for every record and strict decoders of their bodies. A decoder refuses what
// Xen's restore (xg_sr_restore*.c) refuses and also what Debian's verify-stream-v2 refuses
// (non-zero reserved fields and padding, which Xen only ignores), so a stream this reader accepts
// is one both accept. Record order is checked by the stream reader, not here.
import assert from 'node:assert/strict';
import { REC_LENGTH_MAX, copyOf, frameRecord, view } from './sr-record.ts';

// ---- Image header (always big-endian) ----

export const IHDR_MARKER = 0xffffffffffffffffn;
/** "XENF" in ASCII. */
export const IHDR_ID = 0x58454e46;
/** The version Xen 4.14 and later write; restore takes 2 <= version <= 3. */
export const IHDR_VERSION = 3;
export const IHDR_OPT_LITTLE_ENDIAN = 0;
export const IHDR_OPT_BIG_ENDIAN = 1 << 0;
export const IHDR_SIZE = 24;

export interface ImageHeader {
  readonly version: 2 | 3;
  /** Bit 0 endianness; only little-endian streams are restorable (as on x86 and ARM). */
  readonly options: number;
}

// ---- Domain header (stream byte order) ----

/** struct xc_sr_dhdr.type. Xen defines no ARM type ("Not Yet Included: ARM"); 3 and up are reserved. */
export enum DhdrType {
  DHDR_TYPE_X86_PV = 0x00000001,
  DHDR_TYPE_X86_HVM = 0x00000002,
}
export const DHDR_SIZE = 16;
/** XC_PAGE_SHIFT: restore of x86 PV and HVM domains takes 4 KiB pages only. */
export const XC_PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << XC_PAGE_SHIFT;

export interface DomainHeader {
  readonly type: DhdrType;
  readonly pageShift: number;
  /** 0 means "converted from a legacy stream", xen_minor then being the converter's version. */
  readonly xenMajor: number;
  readonly xenMinor: number;
}

// ---- Records ----

export enum LibxcRecType {
  REC_TYPE_END = 0x00000000,
  REC_TYPE_PAGE_DATA = 0x00000001,
  REC_TYPE_X86_PV_INFO = 0x00000002,
  REC_TYPE_X86_PV_P2M_FRAMES = 0x00000003,
  REC_TYPE_X86_PV_VCPU_BASIC = 0x00000004,
  REC_TYPE_X86_PV_VCPU_EXTENDED = 0x00000005,
  REC_TYPE_X86_PV_VCPU_XSAVE = 0x00000006,
  REC_TYPE_SHARED_INFO = 0x00000007,
  REC_TYPE_X86_TSC_INFO = 0x00000008,
  REC_TYPE_HVM_CONTEXT = 0x00000009,
  REC_TYPE_HVM_PARAMS = 0x0000000a,
  /** Deprecated: only ever in development streams; restore does not handle it. */
  REC_TYPE_TOOLSTACK = 0x0000000b,
  REC_TYPE_X86_PV_VCPU_MSRS = 0x0000000c,
  REC_TYPE_VERIFY = 0x0000000d,
  REC_TYPE_CHECKPOINT = 0x0000000e,
  /** COLO's back channel (secondary to primary) only. */
  REC_TYPE_CHECKPOINT_DIRTY_PFN_LIST = 0x0000000f,
  REC_TYPE_STATIC_DATA_END = 0x00000010,
  REC_TYPE_X86_CPUID_POLICY = 0x00000011,
  REC_TYPE_X86_MSR_POLICY = 0x00000012,
}
/** Bit 31 of a record type: a restorer that does not know the record may skip it. */
export const REC_TYPE_OPTIONAL = 0x80000000;

/** rec_type_to_str(): Xen's names in its error messages. */
export function libxcRecName(type: number): string {
  if ((type & REC_TYPE_OPTIONAL) === 0 && LibxcRecType[type] !== undefined) return LibxcRecType[type].slice('REC_TYPE_'.length);
  return 'Reserved';
}

/** Largest batch of pfns the saver puts in one PAGE_DATA record. */
export const MAX_BATCH_SIZE = 1024;

/** XEN_DOMCTL_PFINFO_* (public/domctl.h) as PAGE_DATA carries them: bits 63-60 of a pfn word. */
export enum XenDomctlPfinfo {
  XEN_DOMCTL_PFINFO_NOTAB = 0x0,
  XEN_DOMCTL_PFINFO_L1TAB = 0x1,
  XEN_DOMCTL_PFINFO_L2TAB = 0x2,
  XEN_DOMCTL_PFINFO_L3TAB = 0x3,
  XEN_DOMCTL_PFINFO_L4TAB = 0x4,
  /** Flag on L1-L4: the table is pinned. 0x5-0x8 are reserved as types. */
  XEN_DOMCTL_PFINFO_LPINTAB = 0x8,
  XEN_DOMCTL_PFINFO_BROKEN = 0xd,
  /** Allocate only (a synthetic type of Xen 4.2-4.5). */
  XEN_DOMCTL_PFINFO_XALLOC = 0xe,
  /** Invalid page: the saver's type for pfns that left the guest's p2m during migration. */
  XEN_DOMCTL_PFINFO_XTAB = 0xf,
}
export const PAGE_DATA_PFN_MASK = (1n << 52n) - 1n;
const PAGE_DATA_TYPE_SHIFT = 60n;

/** is_known_page_type(). */
export const isKnownPageType = (t: number): boolean => Number.isInteger(t) && t >= 0 && t <= 0xf && !(t >= 0x5 && t <= 0x8);
/** page_type_has_stream_data(): normal pages and page tables carry a page of data, the rest none. */
export const pageTypeHasStreamData = (t: number): boolean => isKnownPageType(t) && t < XenDomctlPfinfo.XEN_DOMCTL_PFINFO_BROKEN;

export interface PageDataRecord {
  readonly type: LibxcRecType.REC_TYPE_PAGE_DATA;
  /** pfn[i] and its XEN_DOMCTL_PFINFO_* type, in stream order. */
  readonly pfns: readonly { readonly pfn: number; readonly type: XenDomctlPfinfo }[];
  /**
   * One 4 KiB page for each pfn whose type has stream data, in pfn order. Decoded, they are views
   * of the stream's bytes (see decodeLibxcRecord), made when first asked for.
   */
  readonly pages: readonly Uint8Array[];
  /**
   * Decoded records: the same pages back to back (page i at i * PAGE_SIZE), a view of the stream's
   * bytes - the restorer copies each page from here without a view of it.
   */
  readonly data?: Uint8Array;
  /**
   * Decoded records: pfn[i] and type[i] as arrays (what the reader and restorer walk: a big
   * guest's stream is 262,144 pfns a GiB); `pfns` is made from them when first asked for.
   */
  readonly pfnList?: Float64Array;
  readonly typeList?: Uint8Array;
}

export interface X86PvInfoRecord {
  readonly type: LibxcRecType.REC_TYPE_X86_PV_INFO;
  /** Guest width in octets: 8 for a 64-bit guest, 4 for 32-bit. */
  readonly guestWidth: 4 | 8;
  readonly ptLevels: 3 | 4;
}

export interface X86PvP2mFramesRecord {
  readonly type: LibxcRecType.REC_TYPE_X86_PV_P2M_FRAMES;
  readonly startPfn: number;
  readonly endPfn: number;
  /** The guest frames holding its p2m table for pfns startPfn..endPfn. */
  readonly p2mPfns: readonly bigint[];
}

export type X86PvVcpuRecType =
  | LibxcRecType.REC_TYPE_X86_PV_VCPU_BASIC
  | LibxcRecType.REC_TYPE_X86_PV_VCPU_EXTENDED
  | LibxcRecType.REC_TYPE_X86_PV_VCPU_XSAVE
  | LibxcRecType.REC_TYPE_X86_PV_VCPU_MSRS;

/** X86_PV_VCPU_{BASIC,EXTENDED,XSAVE,MSRS}: a vCPU's blob from the matching get-context domctl. */
export interface X86PvVcpuRecord {
  readonly type: X86PvVcpuRecType;
  readonly vcpuId: number;
  readonly context: Uint8Array;
}

export interface SharedInfoRecord {
  readonly type: LibxcRecType.REC_TYPE_SHARED_INFO;
  /** Exactly one page. */
  readonly sharedInfo: Uint8Array;
}

/** XEN_DOMCTL_{get,set}tscinfo. */
export interface X86TscInfo {
  /** TSC_MODE_* (0 default, 1 always emulate, 2 never emulate). */
  readonly mode: number;
  readonly khz: number;
  /** Elapsed time, in ns. */
  readonly nsec: bigint;
  readonly incarnation: number;
}
export interface X86TscInfoRecord extends X86TscInfo {
  readonly type: LibxcRecType.REC_TYPE_X86_TSC_INFO;
}

export interface HvmContextRecord {
  readonly type: LibxcRecType.REC_TYPE_HVM_CONTEXT;
  /** The XEN_DOMCTL_gethvmcontext blob; never empty. */
  readonly context: Uint8Array;
}

export interface HvmParamEntry {
  readonly index: bigint;
  readonly value: bigint;
}
export interface HvmParamsRecord {
  readonly type: LibxcRecType.REC_TYPE_HVM_PARAMS;
  readonly params: readonly HvmParamEntry[];
}

export interface ToolstackRecord {
  readonly type: LibxcRecType.REC_TYPE_TOOLSTACK;
  readonly data: Uint8Array;
}

export interface EmptyLibxcRecord {
  readonly type:
    | LibxcRecType.REC_TYPE_END
    | LibxcRecType.REC_TYPE_VERIFY
    | LibxcRecType.REC_TYPE_CHECKPOINT
    | LibxcRecType.REC_TYPE_STATIC_DATA_END;
}

export interface CheckpointDirtyPfnListRecord {
  readonly type: LibxcRecType.REC_TYPE_CHECKPOINT_DIRTY_PFN_LIST;
  readonly pfns: readonly bigint[];
}

/** xen_cpuid_leaf_t. */
export interface XenCpuidLeaf {
  readonly leaf: number;
  readonly subleaf: number;
  readonly a: number;
  readonly b: number;
  readonly c: number;
  readonly d: number;
}
export interface X86CpuidPolicyRecord {
  readonly type: LibxcRecType.REC_TYPE_X86_CPUID_POLICY;
  readonly leaves: readonly XenCpuidLeaf[];
}

/** xen_msr_entry_t. */
export interface XenMsrEntry {
  readonly idx: number;
  readonly flags: number;
  readonly val: bigint;
}
export interface X86MsrPolicyRecord {
  readonly type: LibxcRecType.REC_TYPE_X86_MSR_POLICY;
  readonly msrs: readonly XenMsrEntry[];
}

/** A record with bit 31 set that this reader does not know: kept as bytes, skipped by restore. */
export interface OptionalLibxcRecord {
  readonly type: 'optional';
  readonly recType: number;
  readonly body: Uint8Array;
}

export type LibxcRecord =
  | EmptyLibxcRecord
  | PageDataRecord
  | X86PvInfoRecord
  | X86PvP2mFramesRecord
  | X86PvVcpuRecord
  | SharedInfoRecord
  | X86TscInfoRecord
  | HvmContextRecord
  | HvmParamsRecord
  | ToolstackRecord
  | CheckpointDirtyPfnListRecord
  | X86CpuidPolicyRecord
  | X86MsrPolicyRecord
  | OptionalLibxcRecord;

const CPUID_LEAF_SIZE = 24;
const MSR_ENTRY_SIZE = 16;

/** A body the decoder refuses; the stream reader adds layer and offset. */
export class RecordError extends Error {}

/** sizeof(vcpu_guest_context_x86_64_t) and sizeof(vcpu_guest_context_x86_32_t). */
export const VCPU_GUEST_CONTEXT_SIZE = { 8: 5168, 4: 2800 } as const;
/** Largest X86_PV_VCPU_EXTENDED blob (struct xen_domctl_ext_vcpucontext's payload). */
export const X86_PV_VCPU_EXTENDED_MAX = 128;
/** Smallest X86_PV_VCPU_XSAVE blob (xcr0 and xcr0_accum). */
export const X86_PV_VCPU_XSAVE_MIN = 16;
/** sizeof(xen_domctl_vcpu_msr_t): X86_PV_VCPU_MSRS is an array of them. */
export const XEN_DOMCTL_VCPU_MSR_SIZE = 16;

/**
 * handle_x86_pv_vcpu_blob()'s per-record checks, which depend on the guest width from X86_PV_INFO.
 * Returns Xen's complaint, or undefined when the blob is acceptable.
 */
export function pvVcpuBlobProblem(type: X86PvVcpuRecType, guestWidth: 4 | 8, blobLength: number): string | undefined {
  const name = libxcRecName(type);
  switch (type) {
    case LibxcRecType.REC_TYPE_X86_PV_VCPU_BASIC:
      return blobLength === VCPU_GUEST_CONTEXT_SIZE[guestWidth] ? undefined : `${name} record wrong size: expected ${8 + VCPU_GUEST_CONTEXT_SIZE[guestWidth]}, got ${8 + blobLength}`;
    case LibxcRecType.REC_TYPE_X86_PV_VCPU_EXTENDED:
      return blobLength <= X86_PV_VCPU_EXTENDED_MAX ? undefined : `${name} record too long: max ${8 + X86_PV_VCPU_EXTENDED_MAX}, got ${8 + blobLength}`;
    case LibxcRecType.REC_TYPE_X86_PV_VCPU_XSAVE:
      return blobLength >= X86_PV_VCPU_XSAVE_MIN ? undefined : `${name} record too short: min ${8 + X86_PV_VCPU_XSAVE_MIN}, got ${8 + blobLength}`;
    case LibxcRecType.REC_TYPE_X86_PV_VCPU_MSRS:
      return blobLength % XEN_DOMCTL_VCPU_MSR_SIZE === 0 ? undefined : `${name} record payload size ${blobLength} expected to be a multiple of ${XEN_DOMCTL_VCPU_MSR_SIZE}`;
  }
}

/** Frames of p2m the X86_PV_P2M_FRAMES record lists for pfns start..end (PAGE_SIZE / width entries each). */
export function p2mFrameCount(startPfn: number, endPfn: number, guestWidth: 4 | 8): number {
  const fpp = PAGE_SIZE / guestWidth;
  return Math.floor(endPfn / fpp) + 1 - Math.floor(startPfn / fpp);
}

// ---- Encoding ----

export function encodeImageHeader(h: ImageHeader = { version: IHDR_VERSION, options: IHDR_OPT_LITTLE_ENDIAN }): Uint8Array {
  const b = new Uint8Array(IHDR_SIZE);
  const v = view(b);
  v.setBigUint64(0, IHDR_MARKER, false);
  v.setUint32(8, IHDR_ID, false);
  v.setUint32(12, h.version, false);
  v.setUint16(16, h.options, false);
  return b;
}

export function encodeDomainHeader(h: DomainHeader): Uint8Array {
  const b = new Uint8Array(DHDR_SIZE);
  const v = view(b);
  v.setUint32(0, h.type, true);
  v.setUint16(4, h.pageShift, true);
  v.setUint32(8, h.xenMajor, true);
  v.setUint32(12, h.xenMinor, true);
  return b;
}

/** The framed bytes of one record (header, body parts, padding); page data is not copied. */
export function encodeLibxcRecord(rec: LibxcRecord): Uint8Array[] {
  if (rec.type === 'optional') {
    if ((rec.recType & REC_TYPE_OPTIONAL) === 0) throw new RangeError(`record type 0x${rec.recType.toString(16)} is not optional`);
    return frameRecord(rec.recType, [rec.body]);
  }
  return frameRecord(rec.type, libxcBody(rec));
}

function libxcBody(rec: Exclude<LibxcRecord, OptionalLibxcRecord>): Uint8Array[] {
  switch (rec.type) {
    case LibxcRecType.REC_TYPE_END:
    case LibxcRecType.REC_TYPE_VERIFY:
    case LibxcRecType.REC_TYPE_CHECKPOINT:
    case LibxcRecType.REC_TYPE_STATIC_DATA_END:
      return [];
    case LibxcRecType.REC_TYPE_PAGE_DATA: {
      const n = rec.pfns.length;
      if (n < 1) throw new RangeError('PAGE_DATA needs at least 1 pfn');
      const hdr = new Uint8Array(8 + 8 * n);
      const v = view(hdr);
      v.setUint32(0, n, true);
      let withData = 0;
      rec.pfns.forEach(({ pfn, type }, i) => {
        if (!Number.isSafeInteger(pfn) || pfn < 0 || BigInt(pfn) > PAGE_DATA_PFN_MASK) throw new RangeError(`pfn ${pfn} out of range`);
        if (!isKnownPageType(type)) throw new RangeError(`unknown page type ${type}`);
        if (pageTypeHasStreamData(type)) withData++;
        v.setBigUint64(8 + 8 * i, (BigInt(type) << PAGE_DATA_TYPE_SHIFT) | BigInt(pfn), true);
      });
      if (rec.pages.length !== withData) throw new RangeError(`PAGE_DATA has ${withData} pfns with data but ${rec.pages.length} pages`);
      for (const p of rec.pages) if (p.length !== PAGE_SIZE) throw new RangeError(`page of ${p.length} bytes`);
      return [hdr, ...rec.pages];
    }
    case LibxcRecType.REC_TYPE_X86_PV_INFO: {
      const b = new Uint8Array(8);
      b[0] = rec.guestWidth;
      b[1] = rec.ptLevels;
      return [b];
    }
    case LibxcRecType.REC_TYPE_X86_PV_P2M_FRAMES: {
      const b = new Uint8Array(8 + 8 * rec.p2mPfns.length);
      const v = view(b);
      v.setUint32(0, rec.startPfn, true);
      v.setUint32(4, rec.endPfn, true);
      rec.p2mPfns.forEach((p, i) => v.setBigUint64(8 + 8 * i, p, true));
      return [b];
    }
    case LibxcRecType.REC_TYPE_X86_PV_VCPU_BASIC:
    case LibxcRecType.REC_TYPE_X86_PV_VCPU_EXTENDED:
    case LibxcRecType.REC_TYPE_X86_PV_VCPU_XSAVE:
    case LibxcRecType.REC_TYPE_X86_PV_VCPU_MSRS: {
      const hdr = new Uint8Array(8);
      view(hdr).setUint32(0, rec.vcpuId, true);
      return [hdr, rec.context];
    }
    case LibxcRecType.REC_TYPE_SHARED_INFO:
      if (rec.sharedInfo.length !== PAGE_SIZE) throw new RangeError(`shared_info of ${rec.sharedInfo.length} bytes`);
      return [rec.sharedInfo];
    case LibxcRecType.REC_TYPE_X86_TSC_INFO: {
      const b = new Uint8Array(24);
      const v = view(b);
      v.setUint32(0, rec.mode, true);
      v.setUint32(4, rec.khz, true);
      v.setBigUint64(8, rec.nsec, true);
      v.setUint32(16, rec.incarnation, true);
      return [b];
    }
    case LibxcRecType.REC_TYPE_HVM_CONTEXT:
      return [rec.context];
    case LibxcRecType.REC_TYPE_HVM_PARAMS: {
      const b = new Uint8Array(8 + 16 * rec.params.length);
      const v = view(b);
      v.setUint32(0, rec.params.length, true);
      rec.params.forEach((p, i) => {
        v.setBigUint64(8 + 16 * i, p.index, true);
        v.setBigUint64(16 + 16 * i, p.value, true);
      });
      return [b];
    }
    case LibxcRecType.REC_TYPE_TOOLSTACK:
      return [rec.data];
    case LibxcRecType.REC_TYPE_CHECKPOINT_DIRTY_PFN_LIST: {
      const b = new Uint8Array(8 * rec.pfns.length);
      rec.pfns.forEach((p, i) => view(b).setBigUint64(8 * i, p, true));
      return [b];
    }
    case LibxcRecType.REC_TYPE_X86_CPUID_POLICY: {
      const b = new Uint8Array(CPUID_LEAF_SIZE * rec.leaves.length);
      const v = view(b);
      rec.leaves.forEach((l, i) => [l.leaf, l.subleaf, l.a, l.b, l.c, l.d].forEach((x, j) => v.setUint32(i * CPUID_LEAF_SIZE + 4 * j, x, true)));
      return [b];
    }
    case LibxcRecType.REC_TYPE_X86_MSR_POLICY: {
      const b = new Uint8Array(MSR_ENTRY_SIZE * rec.msrs.length);
      const v = view(b);
      rec.msrs.forEach((m, i) => {
        v.setUint32(i * MSR_ENTRY_SIZE, m.idx, true);
        v.setUint32(i * MSR_ENTRY_SIZE + 4, m.flags, true);
        v.setBigUint64(i * MSR_ENTRY_SIZE + 8, m.val, true);
      });
      return [b];
    }
  }
}

// ---- Decoding ----

/** Decodes an image header; throws RecordError with read_headers()'s complaint. */
export function decodeImageHeader(b: Uint8Array): ImageHeader {
  const v = view(b);
  const marker = v.getBigUint64(0, false);
  if (marker !== IHDR_MARKER) throw new RecordError(`Invalid marker: Got 0x${marker.toString(16).padStart(16, '0')}`);
  const id = v.getUint32(8, false);
  if (id !== IHDR_ID) throw new RecordError(`Invalid ID: Expected 0x${IHDR_ID.toString(16)}, Got 0x${id.toString(16).padStart(8, '0')}`);
  const version = v.getUint32(12, false);
  if (version < 2 || version > 3) throw new RecordError(`Invalid Version: Expected 2 <= ver <= 3, Got ${version}`);
  const options = v.getUint16(16, false);
  if (options & IHDR_OPT_BIG_ENDIAN) throw new RecordError('Unable to handle big endian streams');
  if (options & ~IHDR_OPT_BIG_ENDIAN) throw new RecordError(`Reserved bits set in image options field: 0x${options.toString(16)}`);
  if (v.getUint16(18, false) !== 0 || v.getUint32(20, false) !== 0) throw new RecordError('Reserved bits set in image header');
  return { version: version as 2 | 3, options };
}

export function decodeDomainHeader(b: Uint8Array): DomainHeader {
  const v = view(b);
  const type = v.getUint32(0, true);
  if (DhdrType[type] === undefined) throw new RecordError(`Unrecognised domain type 0x${type.toString(16)}`);
  const pageShift = v.getUint16(4, true);
  if (pageShift !== XC_PAGE_SHIFT) throw new RecordError(`Invalid page size ${2 ** pageShift} for x86 domains`);
  if (v.getUint16(6, true) !== 0) throw new RecordError('Reserved bits set in domain header');
  return { type, pageShift, xenMajor: v.getUint32(8, true), xenMinor: v.getUint32(12, true) };
}

const u64s = (b: Uint8Array, from: number, n: number): bigint[] =>
  Array.from({ length: n }, (_, i) => view(b).getBigUint64(from + 8 * i, true));

function expectEmpty(name: string, body: Uint8Array): void {
  if (body.length !== 0) throw new RecordError(`${name} record with non-zero length ${body.length}`);
}

/**
 * Decodes one record body (without padding) of a stream of the given image version. Unknown
 * mandatory types are refused ("Mandatory record not handled"); unknown optional ones are kept.
 * The record owns its bytes (copies: the stream's buffers may be reused once it is decoded),
 * except PAGE_DATA's pages, views of `body` - the one record big enough for a copy to matter,
 * whose pages the restorer puts straight into frames.
 */
export function decodeLibxcRecord(type: number, body: Uint8Array, version: 2 | 3): LibxcRecord {
  if (body.length > REC_LENGTH_MAX) throw new RecordError(`length ${body.length} exceeds max (${REC_LENGTH_MAX})`);
  const v = view(body);
  switch (type) {
    case LibxcRecType.REC_TYPE_END:
    case LibxcRecType.REC_TYPE_VERIFY:
    case LibxcRecType.REC_TYPE_CHECKPOINT:
    case LibxcRecType.REC_TYPE_STATIC_DATA_END:
      expectEmpty(libxcRecName(type), body);
      if (type === LibxcRecType.REC_TYPE_STATIC_DATA_END && version < 3) throw new RecordError('STATIC_DATA_END record found in v2 stream');
      return { type };
    case LibxcRecType.REC_TYPE_PAGE_DATA:
      return decodePageData(body);
    case LibxcRecType.REC_TYPE_X86_PV_INFO: {
      if (body.length !== 8) throw new RecordError(`X86_PV_INFO record wrong size: length ${body.length}, expected 8`);
      const guestWidth = body[0];
      const ptLevels = body[1];
      // valid_x86_pv_info_combination(): 64-bit guests use 4 levels, 32-bit (PAE) guests 3.
      if (!((guestWidth === 8 && ptLevels === 4) || (guestWidth === 4 && ptLevels === 3))) throw new RecordError(`Invalid X86_PV_INFO combination: width ${guestWidth}, pt_levels ${ptLevels}`);
      if (body.subarray(2).some((x) => x !== 0)) throw new RecordError('Reserved bits set in X86_PV_INFO');
      return { type, guestWidth, ptLevels } as X86PvInfoRecord;
    }
    case LibxcRecType.REC_TYPE_X86_PV_P2M_FRAMES: {
      if (body.length < 8 || body.length % 8 !== 0) throw new RecordError(`X86_PV_P2M_FRAMES record length ${body.length}: expected a multiple of 8, at least 8`);
      const startPfn = v.getUint32(0, true);
      const endPfn = v.getUint32(4, true);
      if (startPfn > endPfn) throw new RecordError(`End pfn in stream (0x${endPfn.toString(16)}) exceeds Start (0x${startPfn.toString(16)})`);
      return { type, startPfn, endPfn, p2mPfns: u64s(body, 8, (body.length - 8) / 8) };
    }
    case LibxcRecType.REC_TYPE_X86_PV_VCPU_BASIC:
    case LibxcRecType.REC_TYPE_X86_PV_VCPU_EXTENDED:
    case LibxcRecType.REC_TYPE_X86_PV_VCPU_XSAVE:
    case LibxcRecType.REC_TYPE_X86_PV_VCPU_MSRS: {
      if (body.length < 8) throw new RecordError(`${libxcRecName(type)} record truncated: length ${body.length}, header size 8`);
      if (v.getUint32(4, true) !== 0) throw new RecordError(`Reserved bits set in ${libxcRecName(type)} record`);
      return { type, vcpuId: v.getUint32(0, true), context: copyOf(body, 8) };
    }
    case LibxcRecType.REC_TYPE_SHARED_INFO:
      if (body.length !== PAGE_SIZE) throw new RecordError(`SHARED_INFO record wrong size: length ${body.length}, expected ${PAGE_SIZE}`);
      return { type, sharedInfo: copyOf(body) };
    case LibxcRecType.REC_TYPE_X86_TSC_INFO:
      if (body.length !== 24) throw new RecordError(`X86_TSC_INFO record wrong size: length ${body.length}, expected 24`);
      if (v.getUint32(20, true) !== 0) throw new RecordError('Reserved bits set in X86_TSC_INFO');
      return { type, mode: v.getUint32(0, true), khz: v.getUint32(4, true), nsec: v.getBigUint64(8, true), incarnation: v.getUint32(16, true) };
    case LibxcRecType.REC_TYPE_HVM_CONTEXT:
      if (body.length === 0) throw new RecordError('Zero length HVM context');
      return { type, context: copyOf(body) };
    case LibxcRecType.REC_TYPE_HVM_PARAMS: {
      if (body.length < 8) throw new RecordError(`HVM_PARAMS record truncated: length ${body.length}, header size 8`);
      const count = v.getUint32(0, true);
      if (v.getUint32(4, true) !== 0) throw new RecordError('Reserved bits set in HVM_PARAMS');
      if (body.length !== 8 + 16 * count) throw new RecordError(`HVM_PARAMS record truncated: header 8, count ${count}, length ${body.length}, expected ${8 + 16 * count}`);
      return { type, params: Array.from({ length: count }, (_, i) => ({ index: v.getBigUint64(8 + 16 * i, true), value: v.getBigUint64(16 + 16 * i, true) })) };
    }
    case LibxcRecType.REC_TYPE_TOOLSTACK:
      return { type, data: copyOf(body) };
    case LibxcRecType.REC_TYPE_CHECKPOINT_DIRTY_PFN_LIST:
      if (body.length % 8 !== 0) throw new RecordError(`CHECKPOINT_DIRTY_PFN_LIST length ${body.length} is not a multiple of 8`);
      return { type, pfns: u64s(body, 0, body.length / 8) };
    case LibxcRecType.REC_TYPE_X86_CPUID_POLICY:
    case LibxcRecType.REC_TYPE_X86_MSR_POLICY: {
      const cpuid = type === LibxcRecType.REC_TYPE_X86_CPUID_POLICY;
      const size = cpuid ? CPUID_LEAF_SIZE : MSR_ENTRY_SIZE;
      if (version < 3) throw new RecordError(`${libxcRecName(type)} record found in v2 stream`);
      if (body.length === 0 || body.length % size !== 0) throw new RecordError(`${libxcRecName(type)} size ${body.length} should be multiple of ${size}`);
      const n = body.length / size;
      if (cpuid) {
        return {
          type,
          leaves: Array.from({ length: n }, (_, i) => {
            const w = (j: number) => v.getUint32(i * size + 4 * j, true);
            return { leaf: w(0), subleaf: w(1), a: w(2), b: w(3), c: w(4), d: w(5) };
          }),
        };
      }
      return { type, msrs: Array.from({ length: n }, (_, i) => ({ idx: v.getUint32(i * size, true), flags: v.getUint32(i * size + 4, true), val: v.getBigUint64(i * size + 8, true) })) };
    }
    default:
      if (type & REC_TYPE_OPTIONAL) return { type: 'optional', recType: type >>> 0, body: copyOf(body) };
      throw new RecordError(`Mandatory record 0x${type.toString(16)} (${libxcRecName(type)}) not handled`);
  }
}

/** A PAGE_DATA record's pfn list, decoded and checked before its pages (decodePageDataHead()). */
export interface PageDataHead {
  readonly pfnList: Float64Array;
  readonly typeList: Uint8Array;
  /** Pages with stream data (they follow the pfn list, in its order). */
  readonly withData: number;
}

/**
 * The pfn count of a PAGE_DATA record of `length` bytes from its first 8 bytes, when the record
 * is one whose pfn list can be decoded ahead of its pages (decodePageDataHead()); else undefined
 * (the whole record decoded gives the error).
 */
export function pageDataCount(first8: Uint8Array, length: number): number | undefined {
  if (length < 8 || first8.length < 8) return undefined;
  const v = view(first8);
  const count = v.getUint32(0, true);
  if (count < 1 || v.getUint32(4, true) !== 0 || length < 8 + count * 8) return undefined;
  return count;
}

/**
 * handle_page_data(): count >= 1, every pfn word known, length exactly header + pfns + pages.
 * A PAGE_DATA record's checks and pfn list from its first bytes (`head`, at least the count and
 * the pfn words) and its length: what decodePageData() finds wrong, it finds wrong here, with the
 * same words, before any page of the record is read.
 */
export function decodePageDataHead(head: Uint8Array, length: number): PageDataHead {
  if (length < 8) throw new RecordError(`PAGE_DATA record truncated: length ${length}, min 8`);
  const v = view(head);
  const count = v.getUint32(0, true);
  if (count < 1) throw new RecordError('Expected at least 1 pfn in PAGE_DATA record');
  if (v.getUint32(4, true) !== 0) throw new RecordError('Reserved bits set in PAGE_DATA record');
  // count * 8 is below 2^35, exact in a double; compared before anything is sized by it.
  if (length < 8 + count * 8) throw new RecordError(`PAGE_DATA record (length ${length}) too short to contain ${count} pfns worth of information`);
  assert(head.length >= 8 + count * 8, 'decodePageDataHead() without the whole pfn list');
  const pfnList = new Float64Array(count);
  const typeList = new Uint8Array(count);
  let withData = 0;
  for (let i = 0; i < count; i++) {
    // The word as two halves (no BigInt a page): pfn in bits 0-51, reserved 52-59, type 60-63.
    const lo = v.getUint32(8 + 8 * i, true);
    const hi = v.getUint32(12 + 8 * i, true);
    const pfn = lo + (hi & 0xfffff) * 0x1_0000_0000;
    const type = hi >>> 28;
    if (hi & 0x0ff00000) {
      const word = v.getBigUint64(8 + 8 * i, true);
      throw new RecordError(`Reserved bits set in pfn[${i}]: 0x${word.toString(16).padStart(16, '0')}`);
    }
    if (!isKnownPageType(type)) throw new RecordError(`Unknown type 0x${(type << 28 >>> 0).toString(16)} for pfn 0x${pfn.toString(16)} (index ${i})`);
    if (pageTypeHasStreamData(type)) withData++;
    pfnList[i] = pfn;
    typeList[i] = type;
  }
  const expected = 8 + 8 * count + PAGE_SIZE * withData;
  if (length !== expected) throw new RecordError(`PAGE_DATA record wrong size: length ${length}, expected 8 + ${8 * count} + ${PAGE_SIZE * withData}`);
  return { pfnList, typeList, withData };
}

function decodePageData(body: Uint8Array): PageDataRecord {
  const { pfnList, typeList, withData } = decodePageDataHead(body, body.length);
  const data = body.subarray(8 + 8 * pfnList.length);
  // An object and a view per page only for whoever asks (the restorer does not).
  let pfns: { pfn: number; type: XenDomctlPfinfo }[] | undefined;
  let pages: Uint8Array[] | undefined;
  return {
    type: LibxcRecType.REC_TYPE_PAGE_DATA, data, pfnList, typeList,
    get pfns() {
      pfns ??= Array.from(pfnList, (pfn, i) => ({ pfn, type: typeList[i] as XenDomctlPfinfo }));
      return pfns;
    },
    get pages() {
      pages ??= Array.from({ length: withData }, (_, i) => data.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
      return pages;
    },
  };
}
