// xen/include/public/io/blkif.h (native x86_64 layout, "x86_64-abi"), io/protocols.h, and the vbd
// numbering of docs/man/xen-vbd-interface.7.pandoc. spec/hypervisor-and-xenbus.md §3.2, §4.3.
//
// Decoders read slots a frontend wrote and a backend must distrust: they never throw, keep every
// field as written, and leave judging it to the validate* functions.
import { ringSize } from './ring.ts';

/** blkif_request.operation. */
export enum BlkifOp {
  BLKIF_OP_READ = 0,
  BLKIF_OP_WRITE = 1,
  BLKIF_OP_WRITE_BARRIER = 2,
  BLKIF_OP_FLUSH_DISKCACHE = 3,
  /** Was BLKIF_OP_TRIM in an old Citrix PV driver; never to be reused. */
  BLKIF_OP_RESERVED_1 = 4,
  BLKIF_OP_DISCARD = 5,
  BLKIF_OP_INDIRECT = 6,
}

/** blkif_response.status. */
export enum BlkifRsp {
  /** Operation not supported (unknown operation, or a feature the backend did not advertise). */
  BLKIF_RSP_EOPNOTSUPP = -2,
  BLKIF_RSP_ERROR = -1,
  BLKIF_RSP_OKAY = 0,
}

/** Segments that fit in the ring entry itself (the ring must stay within one page). */
export const BLKIF_MAX_SEGMENTS_PER_REQUEST = 11;
export const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST = 8;
/** Segment descriptors per indirect page (4096 / 8; Linux's SEGS_PER_INDIRECT_FRAME). */
export const BLKIF_SEGS_PER_INDIRECT_FRAME = 512;
/** sector_number, first_sect and last_sect count 512-byte units, whatever the disk's sector size. */
export const BLKIF_SECTOR_SIZE = 512;
/** Sectors in one granted page: last_sect may be at most 7. */
export const BLKIF_SECTORS_PER_PAGE = 4096 / BLKIF_SECTOR_SIZE;
/** blkif_request_discard.flag. */
export const BLKIF_DISCARD_SECURE = 1 << 0;

/** `info` bits the backend publishes (VDISK_*). */
export const VDISK_CDROM = 0x1;
export const VDISK_REMOVABLE = 0x2;
export const VDISK_READONLY = 0x4;

/** Values of the frontend's `protocol` node. */
export const XEN_IO_PROTO_ABI_X86_32 = 'x86_32-abi';
export const XEN_IO_PROTO_ABI_X86_64 = 'x86_64-abi';
export const XEN_IO_PROTO_ABI_ARM = 'arm-abi';
/** Every simulated guest is x86_64; a missing `protocol` node means this one. */
export const XEN_IO_PROTO_ABI_NATIVE = XEN_IO_PROTO_ABI_X86_64;

/** struct blkif_request_segment: 8 bytes (the 2 trailing bytes are alignment padding). */
export const BlkifRequestSegment = {
  gref: 0,
  first_sect: 4,
  last_sect: 5,
  SIZE: 8,
} as const;

/** struct blkif_request: 112 bytes (id is 8-aligned on x86_64; the x86_32 ABI packs it at 4). */
export const BlkifRequest = {
  operation: 0,
  nr_segments: 1,
  handle: 2,
  id: 8,
  sector_number: 16,
  seg: 24,
  SIZE: 112,
} as const;

/** struct blkif_request_discard: same head as a request, nr_sectors where the segments start. */
export const BlkifRequestDiscard = {
  operation: 0,
  flag: 1,
  handle: 2,
  id: 8,
  sector_number: 16,
  nr_sectors: 24,
  SIZE: 32,
} as const;

/** struct blkif_request_indirect: note handle moves to 24 and nr_segments widens to u16. */
export const BlkifRequestIndirect = {
  operation: 0,
  indirect_op: 1,
  nr_segments: 2,
  id: 8,
  sector_number: 16,
  handle: 24,
  indirect_grefs: 28,
  SIZE: 64,
} as const;

/** struct blkif_response: 16 bytes. */
export const BlkifResponse = {
  id: 0,
  operation: 8,
  status: 10,
  SIZE: 16,
} as const;

/** sizeof(union blkif_sring_entry): the request is the larger member. */
export const BLKIF_RING_ENTRY_SIZE = BlkifRequest.SIZE;
/** __CONST_RING_SIZE(blkif, 4096): 32. */
export const BLKIF_RING_SIZE = ringSize(BLKIF_RING_ENTRY_SIZE);

export interface BlkifRequestSegmentValue {
  /** grant_ref_t of the data page. */
  readonly gref: number;
  /** First and last 512-byte sector of that page to transfer, both inclusive (0..7). */
  readonly first_sect: number;
  readonly last_sect: number;
}

/** blkif_request as read/write/barrier/flush requests use it. */
export interface BlkifRequestValue {
  readonly operation: number;
  /** As written, even when above 11; `seg` then holds only the 11 the entry has room for. */
  readonly nr_segments: number;
  /** blkif_vdev_t. */
  readonly handle: number;
  /** Opaque to the backend, echoed in the response. */
  readonly id: bigint;
  readonly sector_number: bigint;
  readonly seg: readonly BlkifRequestSegmentValue[];
}

export interface BlkifRequestDiscardValue {
  readonly operation: number;
  readonly flag: number;
  readonly handle: number;
  readonly id: bigint;
  readonly sector_number: bigint;
  readonly nr_sectors: bigint;
}

export interface BlkifRequestIndirectValue {
  readonly operation: number;
  /** The real operation: BLKIF_OP_READ or BLKIF_OP_WRITE. */
  readonly indirect_op: number;
  readonly nr_segments: number;
  readonly id: bigint;
  readonly sector_number: bigint;
  readonly handle: number;
  /** Grant refs of the pages holding the segment descriptors (all 8 slots, used or not). */
  readonly indirect_grefs: readonly number[];
}

export interface BlkifResponseValue {
  readonly id: bigint;
  readonly operation: number;
  readonly status: number;
}

const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** The operation byte of a request slot, to pick the layout to decode it with. */
export function blkifRequestOperation(slot: Uint8Array): number {
  return slot[BlkifRequest.operation] ?? 0;
}

export function decodeBlkifSegment(buf: Uint8Array, at = 0): BlkifRequestSegmentValue {
  const v = view(buf);
  return {
    gref: v.getUint32(at + BlkifRequestSegment.gref, true),
    first_sect: v.getUint8(at + BlkifRequestSegment.first_sect),
    last_sect: v.getUint8(at + BlkifRequestSegment.last_sect),
  };
}

export function encodeBlkifSegment(buf: Uint8Array, at: number, seg: BlkifRequestSegmentValue): void {
  const v = view(buf);
  v.setUint32(at + BlkifRequestSegment.gref, seg.gref >>> 0, true);
  v.setUint8(at + BlkifRequestSegment.first_sect, seg.first_sect & 0xff);
  v.setUint8(at + BlkifRequestSegment.last_sect, seg.last_sect & 0xff);
  v.setUint16(at + 6, 0, true);
}

/** Reads a 112-byte entry as blkif_request. */
export function decodeBlkifRequest(slot: Uint8Array): BlkifRequestValue {
  const v = view(slot);
  const L = BlkifRequest;
  const nr = v.getUint8(L.nr_segments);
  const seg: BlkifRequestSegmentValue[] = [];
  for (let i = 0; i < Math.min(nr, BLKIF_MAX_SEGMENTS_PER_REQUEST); i++) {
    seg.push(decodeBlkifSegment(slot, L.seg + i * BlkifRequestSegment.SIZE));
  }
  return {
    operation: v.getUint8(L.operation),
    nr_segments: nr,
    handle: v.getUint16(L.handle, true),
    id: v.getBigUint64(L.id, true),
    sector_number: v.getBigUint64(L.sector_number, true),
    seg,
  };
}

/**
 * Writes `req` over the entry (padding and unused segments zeroed). nr_segments is written as
 * given, so a test can make it disagree with `seg`; more than 11 segments do not fit and throw.
 */
export function encodeBlkifRequest(slot: Uint8Array, req: BlkifRequestValue): void {
  if (req.seg.length > BLKIF_MAX_SEGMENTS_PER_REQUEST) {
    throw new RangeError(`${req.seg.length} segments do not fit in a blkif_request`);
  }
  const L = BlkifRequest;
  slot.fill(0, 0, L.SIZE);
  const v = view(slot);
  v.setUint8(L.operation, req.operation & 0xff);
  v.setUint8(L.nr_segments, req.nr_segments & 0xff);
  v.setUint16(L.handle, req.handle & 0xffff, true);
  v.setBigUint64(L.id, BigInt.asUintN(64, req.id), true);
  v.setBigUint64(L.sector_number, BigInt.asUintN(64, req.sector_number), true);
  req.seg.forEach((s, i) => encodeBlkifSegment(slot, L.seg + i * BlkifRequestSegment.SIZE, s));
}

export function decodeBlkifRequestDiscard(slot: Uint8Array): BlkifRequestDiscardValue {
  const v = view(slot);
  const L = BlkifRequestDiscard;
  return {
    operation: v.getUint8(L.operation),
    flag: v.getUint8(L.flag),
    handle: v.getUint16(L.handle, true),
    id: v.getBigUint64(L.id, true),
    sector_number: v.getBigUint64(L.sector_number, true),
    nr_sectors: v.getBigUint64(L.nr_sectors, true),
  };
}

export function encodeBlkifRequestDiscard(slot: Uint8Array, req: BlkifRequestDiscardValue): void {
  const L = BlkifRequestDiscard;
  slot.fill(0, 0, BlkifRequest.SIZE);
  const v = view(slot);
  v.setUint8(L.operation, req.operation & 0xff);
  v.setUint8(L.flag, req.flag & 0xff);
  v.setUint16(L.handle, req.handle & 0xffff, true);
  v.setBigUint64(L.id, BigInt.asUintN(64, req.id), true);
  v.setBigUint64(L.sector_number, BigInt.asUintN(64, req.sector_number), true);
  v.setBigUint64(L.nr_sectors, BigInt.asUintN(64, req.nr_sectors), true);
}

export function decodeBlkifRequestIndirect(slot: Uint8Array): BlkifRequestIndirectValue {
  const v = view(slot);
  const L = BlkifRequestIndirect;
  const indirect_grefs: number[] = [];
  for (let i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) {
    indirect_grefs.push(v.getUint32(L.indirect_grefs + 4 * i, true));
  }
  return {
    operation: v.getUint8(L.operation),
    indirect_op: v.getUint8(L.indirect_op),
    nr_segments: v.getUint16(L.nr_segments, true),
    id: v.getBigUint64(L.id, true),
    sector_number: v.getBigUint64(L.sector_number, true),
    handle: v.getUint16(L.handle, true),
    indirect_grefs,
  };
}

export function encodeBlkifRequestIndirect(slot: Uint8Array, req: BlkifRequestIndirectValue): void {
  if (req.indirect_grefs.length > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST) {
    throw new RangeError(`${req.indirect_grefs.length} indirect pages do not fit in a blkif_request_indirect`);
  }
  const L = BlkifRequestIndirect;
  slot.fill(0, 0, BlkifRequest.SIZE);
  const v = view(slot);
  v.setUint8(L.operation, req.operation & 0xff);
  v.setUint8(L.indirect_op, req.indirect_op & 0xff);
  v.setUint16(L.nr_segments, req.nr_segments & 0xffff, true);
  v.setBigUint64(L.id, BigInt.asUintN(64, req.id), true);
  v.setBigUint64(L.sector_number, BigInt.asUintN(64, req.sector_number), true);
  v.setUint16(L.handle, req.handle & 0xffff, true);
  req.indirect_grefs.forEach((g, i) => v.setUint32(L.indirect_grefs + 4 * i, g >>> 0, true));
}

export function decodeBlkifResponse(slot: Uint8Array): BlkifResponseValue {
  const v = view(slot);
  const L = BlkifResponse;
  return {
    id: v.getBigUint64(L.id, true),
    operation: v.getUint8(L.operation),
    status: v.getInt16(L.status, true),
  };
}

/** Writes the 16 response bytes only; the rest of the (shared) entry is left alone. */
export function encodeBlkifResponse(slot: Uint8Array, rsp: BlkifResponseValue): void {
  const L = BlkifResponse;
  slot.fill(0, 0, L.SIZE);
  const v = view(slot);
  v.setBigUint64(L.id, BigInt.asUintN(64, rsp.id), true);
  v.setUint8(L.operation, rsp.operation & 0xff);
  v.setInt16(L.status, rsp.status, true);
}

/** Why a backend must refuse this segment descriptor, or undefined if it is sound. */
export function validateBlkifSegment(seg: BlkifRequestSegmentValue): string | undefined {
  if (seg.last_sect >= BLKIF_SECTORS_PER_PAGE) return `last_sect ${seg.last_sect} is beyond the page (max ${BLKIF_SECTORS_PER_PAGE - 1})`;
  if (seg.first_sect > seg.last_sect) return `first_sect ${seg.first_sect} > last_sect ${seg.last_sect}`;
  return undefined;
}

/** The byte range of its page a sound segment covers. */
export function blkifSegmentBytes(seg: BlkifRequestSegmentValue): { readonly offset: number; readonly length: number } {
  return { offset: seg.first_sect * BLKIF_SECTOR_SIZE, length: (seg.last_sect - seg.first_sect + 1) * BLKIF_SECTOR_SIZE };
}

/**
 * Why a backend must fail this read/write/barrier/flush request (BLKIF_RSP_ERROR), or undefined.
 * Reads and writes need 1..11 segments; barrier and flush may carry none. Other operations have
 * other layouts (discard, indirect) or are unknown (answer BLKIF_RSP_EOPNOTSUPP) and get a reason
 * saying so.
 */
export function validateBlkifRequest(req: BlkifRequestValue): string | undefined {
  switch (req.operation) {
    case BlkifOp.BLKIF_OP_READ:
    case BlkifOp.BLKIF_OP_WRITE:
      if (req.nr_segments === 0) return `${BlkifOp[req.operation]} with no segments`;
      break;
    case BlkifOp.BLKIF_OP_WRITE_BARRIER:
    case BlkifOp.BLKIF_OP_FLUSH_DISKCACHE:
      break;
    case BlkifOp.BLKIF_OP_DISCARD:
    case BlkifOp.BLKIF_OP_INDIRECT:
      return `${BlkifOp[req.operation]} does not use the blkif_request layout`;
    default:
      return `unknown operation ${req.operation}`;
  }
  if (req.nr_segments > BLKIF_MAX_SEGMENTS_PER_REQUEST) {
    return `nr_segments ${req.nr_segments} > BLKIF_MAX_SEGMENTS_PER_REQUEST (${BLKIF_MAX_SEGMENTS_PER_REQUEST})`;
  }
  for (let i = 0; i < req.nr_segments; i++) {
    const why = validateBlkifSegment(req.seg[i]!);
    if (why) return `seg[${i}]: ${why}`;
  }
  return undefined;
}

/**
 * Why a backend must fail this indirect request, or undefined. `maxSegments` is what the backend
 * advertised in feature-max-indirect-segments (default: all 8 pages' worth). The segment
 * descriptors themselves live in the indirect pages; check each with validateBlkifSegment.
 */
export function validateBlkifRequestIndirect(
  req: BlkifRequestIndirectValue,
  maxSegments = BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * BLKIF_SEGS_PER_INDIRECT_FRAME,
): string | undefined {
  if (req.operation !== BlkifOp.BLKIF_OP_INDIRECT) return `operation ${req.operation} is not BLKIF_OP_INDIRECT`;
  if (req.indirect_op !== BlkifOp.BLKIF_OP_READ && req.indirect_op !== BlkifOp.BLKIF_OP_WRITE) {
    return `indirect_op ${req.indirect_op} is neither READ nor WRITE`;
  }
  if (req.nr_segments === 0) return 'indirect request with no segments';
  if (req.nr_segments > maxSegments) return `nr_segments ${req.nr_segments} > the ${maxSegments} advertised`;
  return undefined;
}

/** Indirect pages an indirect request with `nrSegments` segments uses. */
export function blkifIndirectPages(nrSegments: number): number {
  return Math.ceil(nrSegments / BLKIF_SEGS_PER_INDIRECT_FRAME);
}

// ---------------------------------------------------------------------------------------------
// vbd numbers (the `virtual-device` node / devid) and the names a config file uses.

const XVD_MAJOR = 202;
const SD_MAJOR = 8;
const HD_MAJOR_01 = 3;
const HD_MAJOR_23 = 22;
const XVD_EXTENDED = 1 << 28;
/** The extended xvd form's limits. */
const XVD_EXT_MAX_DISK = (1 << 20) - 1;
const XVD_EXT_MAX_PART = 255;

/** Disk letters: bijective base 26, a=0 ... z=25, aa=26 ... ("xvdtq" is disk 536). */
function diskFromLetters(s: string): number | undefined {
  let n = 0;
  for (const c of s) {
    const d = c.charCodeAt(0) - 96;
    if (d < 1 || d > 26) return undefined;
    n = n * 26 + d;
    if (n > XVD_EXT_MAX_DISK + 1) return undefined;
  }
  return s.length === 0 ? undefined : n - 1;
}

function lettersFromDisk(disk: number): string {
  let s = '';
  for (let n = disk + 1; n > 0; n = Math.floor((n - 1) / 26)) s = String.fromCharCode(97 + ((n - 1) % 26)) + s;
  return s;
}

/** A decimal without leading zeros ("0" itself allowed). */
function decimal(s: string | undefined): number | undefined {
  if (s === undefined || s === '') return 0;
  if (!/^(0|[1-9][0-9]{0,6})$/.test(s)) return undefined;
  return Number(s);
}

function xvdNumber(disk: number, part: number): number | undefined {
  if (disk <= 15 && part <= 15) return (XVD_MAJOR << 8) | (disk << 4) | part;
  if (disk > XVD_EXT_MAX_DISK || part > XVD_EXT_MAX_PART) return undefined;
  return (XVD_EXTENDED | (disk << 8) | part) >>> 0;
}

/**
 * The vbd number a disk spec names, as libxl computes it: `xvd<letters>[part]`,
 * `sd<letters>[part]`, `hd<letters>[part]`, `d<disk>[p<part>]`, or a bare number (hex with 0x,
 * octal with 0, decimal) kept as is. Undefined when it names nothing encodable (sd beyond disk or
 * partition 15, hd beyond disk 3 or partition 63, xvd beyond disk 2^20-1 or partition 255).
 */
export function vdevFromName(name: string): number | undefined {
  let m = /^(?:0x([0-9a-f]+)|(0[0-7]*)|([1-9][0-9]*))$/i.exec(name);
  if (m) {
    const n = m[1] !== undefined ? parseInt(m[1], 16) : m[2] !== undefined ? parseInt(m[2], 8) : Number(m[3]);
    return n <= 0xffffffff ? n : undefined;
  }
  m = /^d([0-9]+)(?:p([0-9]+))?$/.exec(name);
  if (m) {
    const disk = decimal(m[1]);
    const part = decimal(m[2]);
    return disk === undefined || part === undefined ? undefined : xvdNumber(disk, part);
  }
  m = /^(xvd|sd|hd)([a-z]+)([0-9]*)$/.exec(name);
  if (!m) return undefined;
  const disk = diskFromLetters(m[2]!);
  const part = decimal(m[3]);
  if (disk === undefined || part === undefined) return undefined;
  switch (m[1]) {
    case 'xvd':
      return xvdNumber(disk, part);
    case 'sd':
      return disk <= 15 && part <= 15 ? (SD_MAJOR << 8) | (disk << 4) | part : undefined;
    default:
      if (disk > 3 || part > 63) return undefined;
      return ((disk < 2 ? HD_MAJOR_01 : HD_MAJOR_23) << 8) | ((disk & 1) << 6) | part;
  }
}

/** The parts of a vbd number in one of the specified encodings. */
export interface VbdNumber {
  readonly type: 'xvd' | 'sd' | 'hd';
  readonly disk: number;
  readonly partition: number;
}

/**
 * Decodes a vbd number; undefined for the reserved and deprecated ranges (guests "SHOULD ignore
 * numbers that they do not understand").
 */
export function vdevDecode(devid: number): VbdNumber | undefined {
  if (!Number.isInteger(devid) || devid < 0 || devid > 0xffffffff) return undefined;
  if (devid >= XVD_EXTENDED) {
    if (devid >= 2 * XVD_EXTENDED) return undefined;
    return { type: 'xvd', disk: (devid >>> 8) & XVD_EXT_MAX_DISK, partition: devid & XVD_EXT_MAX_PART };
  }
  const major = devid >>> 8;
  switch (major) {
    case XVD_MAJOR:
      return { type: 'xvd', disk: (devid >>> 4) & 15, partition: devid & 15 };
    case SD_MAJOR:
      return { type: 'sd', disk: (devid >>> 4) & 15, partition: devid & 15 };
    case HD_MAJOR_01:
    case HD_MAJOR_23:
      return { type: 'hd', disk: (major === HD_MAJOR_23 ? 2 : 0) + ((devid >>> 6) & 1), partition: devid & 63 };
    default:
      return undefined;
  }
}

/** The conventional name of a vbd number ('xvda', 'xvdb2', 'sdc', 'hdc2'), or undefined. */
export function vdevName(devid: number): string | undefined {
  const d = vdevDecode(devid);
  if (!d) return undefined;
  return `${d.type}${lettersFromDisk(d.disk)}${d.partition === 0 ? '' : d.partition}`;
}
