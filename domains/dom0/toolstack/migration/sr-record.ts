// Record framing shared by the libxc and libxl migration streams (xg_sr_common.c, libxl_stream_*.c):
// a record is a little-endian { u32 type; u32 length } header, `length` bytes of body and zero
// padding up to the next 8-byte boundary.
import assert from 'node:assert/strict';

/** Which layer of the save file a byte belongs to: xl's header, libxl's stream, libxc's stream. */
export type StreamLayer = 'xl' | 'libxl' | 'libxc';

/** All records are aligned up to an 8 octet boundary. */
export const REC_ALIGN = 8;
/** xg_sr_stream_format.h: "Somewhat arbitrary - 128MB"; libxc refuses longer records on both sides. */
export const REC_LENGTH_MAX = 128 * 1024 * 1024;
/** sizeof(struct xc_sr_rhdr) == sizeof(libxl__sr_rec_hdr). */
export const RHDR_SIZE = 8;

/** A stream the reader refuses: which layer, what is wrong, and where. */
export class StreamError extends Error {
  constructor(
    readonly layer: StreamLayer,
    readonly reason: string,
    /** Byte offset in the whole stream of the header or record at fault. */
    readonly offset: number,
  ) {
    super(`${layer} stream: ${reason} (at byte ${offset})`);
    this.name = 'StreamError';
  }
}

export const roundUp = (n: number): number => Math.ceil(n / REC_ALIGN) * REC_ALIGN;

export interface RecordHeader {
  readonly type: number;
  readonly length: number;
}

export function decodeRecordHeader(b: Uint8Array): RecordHeader {
  assert.equal(b.length, RHDR_SIZE);
  const v = view(b);
  return { type: v.getUint32(0, true), length: v.getUint32(4, true) };
}

/** Header, body parts and zero padding of one record, as write_split_record() emits them. */
export function frameRecord(type: number, body: readonly Uint8Array[]): Uint8Array[] {
  const length = body.reduce((n, part) => n + part.length, 0);
  assert(roundUp(length) <= REC_LENGTH_MAX, `record 0x${type.toString(16)} length ${length} exceeds REC_LENGTH_MAX`);
  const hdr = new Uint8Array(RHDR_SIZE);
  const v = view(hdr);
  v.setUint32(0, type >>> 0, true);
  v.setUint32(4, length, true);
  const pad = roundUp(length) - length;
  return [hdr, ...body.filter((p) => p.length > 0), ...(pad ? [new Uint8Array(pad)] : [])];
}

/** Index of the first non-zero byte, or -1. */
export function firstNonZero(b: Uint8Array): number {
  return b.findIndex((x) => x !== 0);
}

/**
 * A copy of b[start, end) in memory of its own. Not b.slice(): on a Node Buffer (a socket's
 * chunk) slice() is a view.
 */
export function copyOf(b: Uint8Array, start = 0, end = b.length): Uint8Array {
  const out = new Uint8Array(Math.max(0, end - start));
  out.set(b.subarray(start, end));
  return out;
}

export const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** Concatenates chunks (tests and small headers; streams are written chunk by chunk). */
export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
