// The libxl migration stream v2 (docs/specs/libxl-migration-stream.pandoc,
// tools/libs/light/libxl_sr_stream_format.h): a big-endian header, then records. LIBXC_CONTEXT is an
// empty marker after which the libxc stream follows inline; the emulator records carry QEMU's
// xenstore keys and device state for HVM guests. Decoders refuse what libxl_stream_read.c refuses
// and what verify-stream-v2 refuses.
import { copyOf, frameRecord, view } from './sr-record.ts';
import { RecordError } from './libxc-stream.ts';

/** "LibxlFmt" in ASCII. */
export const RESTORE_STREAM_IDENT = 0x4c6962786c466d74n;
export const RESTORE_STREAM_VERSION = 2;
export const RESTORE_OPT_BIG_ENDIAN = 1 << 0;
/** Set by the legacy conversion helper on streams it converted. */
export const RESTORE_OPT_LEGACY = 1 << 1;
export const LIBXL_HDR_SIZE = 16;

export interface LibxlHeader {
  readonly version: number;
  readonly options: number;
}

export enum LibxlRecType {
  REC_TYPE_END = 0x00000000,
  REC_TYPE_LIBXC_CONTEXT = 0x00000001,
  REC_TYPE_EMULATOR_XENSTORE_DATA = 0x00000002,
  REC_TYPE_EMULATOR_CONTEXT = 0x00000003,
  REC_TYPE_CHECKPOINT_END = 0x00000004,
  REC_TYPE_CHECKPOINT_STATE = 0x00000005,
  /**
   * xensim's own, not libxl's (which refuses it: "Unrecognised record"): the guest's xenstore
   * state as the project seed describes migration - see xenstored/seed-migration.ts. Written only
   * with `xl migrate --xenstore seed`; a stream carrying it is xensim-specific.
   */
  REC_TYPE_XENSIM_SEED_XENSTORE = 0x78730001,
}

export const libxlRecName = (type: number): string => LibxlRecType[type]?.slice('REC_TYPE_'.length) ?? `0x${type.toString(16).padStart(8, '0')}`;

/** libxl__sr_emulator_hdr.id. */
export enum LibxlEmulator {
  EMULATOR_UNKNOWN = 0x00000000,
  /** Dropped in Xen 4.21; still restorable by 4.17. */
  EMULATOR_QEMU_TRADITIONAL = 0x00000001,
  EMULATOR_QEMU_UPSTREAM = 0x00000002,
}

/** libxl_sr_checkpoint_state.id (COLO). */
export enum CheckpointStateId {
  CHECKPOINT_NEW = 0x00000000,
  CHECKPOINT_SVM_SUSPENDED = 0x00000001,
  CHECKPOINT_SVM_READY = 0x00000002,
  CHECKPOINT_SVM_RESUMED = 0x00000003,
}

export interface EmulatorHeader {
  readonly emulatorId: LibxlEmulator;
  readonly index: number;
}

export interface EmptyLibxlRecord {
  readonly type: LibxlRecType.REC_TYPE_END | LibxlRecType.REC_TYPE_LIBXC_CONTEXT | LibxlRecType.REC_TYPE_CHECKPOINT_END;
}
export interface EmulatorXenstoreDataRecord extends EmulatorHeader {
  readonly type: LibxlRecType.REC_TYPE_EMULATOR_XENSTORE_DATA;
  /** Keys relative to the device model's dir for the domain (/local/domain/$dm/device-model/$domid/). */
  readonly entries: readonly (readonly [string, string])[];
}
export interface EmulatorContextRecord extends EmulatorHeader {
  readonly type: LibxlRecType.REC_TYPE_EMULATOR_CONTEXT;
  /** The emulator's own device state (QEMU's save file); opaque to libxl. */
  readonly context: Uint8Array;
}
export interface CheckpointStateRecord {
  readonly type: LibxlRecType.REC_TYPE_CHECKPOINT_STATE;
  readonly id: CheckpointStateId;
}

export interface SeedXenstoreRecord {
  readonly type: LibxlRecType.REC_TYPE_XENSIM_SEED_XENSTORE;
  /** The source xenstored's export (xenstored/seed-migration.ts's encoding), opaque here. */
  readonly state: Uint8Array;
}

export type LibxlRecord = EmptyLibxlRecord | EmulatorXenstoreDataRecord | EmulatorContextRecord | CheckpointStateRecord | SeedXenstoreRecord;

export function encodeLibxlHeader(h: LibxlHeader = { version: RESTORE_STREAM_VERSION, options: 0 }): Uint8Array {
  const b = new Uint8Array(LIBXL_HDR_SIZE);
  const v = view(b);
  v.setBigUint64(0, RESTORE_STREAM_IDENT, false);
  v.setUint32(8, h.version, false);
  v.setUint32(12, h.options, false);
  return b;
}

export function decodeLibxlHeader(b: Uint8Array): LibxlHeader {
  const v = view(b);
  const ident = v.getBigUint64(0, false);
  if (ident !== RESTORE_STREAM_IDENT) throw new RecordError(`Invalid ident: expected 0x${RESTORE_STREAM_IDENT.toString(16)}, got 0x${ident.toString(16).padStart(16, '0')}`);
  const version = v.getUint32(8, false);
  if (version !== RESTORE_STREAM_VERSION) throw new RecordError(`Unexpected stream version: expected ${RESTORE_STREAM_VERSION}, got ${version}`);
  const options = v.getUint32(12, false);
  if (options & RESTORE_OPT_BIG_ENDIAN) throw new RecordError('Unable to handle big endian streams');
  if (options & ~(RESTORE_OPT_BIG_ENDIAN | RESTORE_OPT_LEGACY)) throw new RecordError(`Reserved bits set in image options field: 0x${options.toString(16)}`);
  return { version, options };
}

const te = new TextEncoder();
const td = new TextDecoder('utf-8', { fatal: true });

function emulatorHeader(h: EmulatorHeader): Uint8Array {
  const b = new Uint8Array(8);
  view(b).setUint32(0, h.emulatorId, true);
  view(b).setUint32(4, h.index, true);
  return b;
}

export function encodeLibxlRecord(rec: LibxlRecord): Uint8Array[] {
  switch (rec.type) {
    case LibxlRecType.REC_TYPE_END:
    case LibxlRecType.REC_TYPE_LIBXC_CONTEXT:
    case LibxlRecType.REC_TYPE_CHECKPOINT_END:
      return frameRecord(rec.type, []);
    case LibxlRecType.REC_TYPE_EMULATOR_XENSTORE_DATA: {
      // libxl__save_emulator_xenstore_data() packs "key\0value\0" tuples.
      for (const [k] of rec.entries) assertXenstoreKey(k);
      const data = te.encode(rec.entries.map(([k, val]) => `${k}\0${val}\0`).join(''));
      return frameRecord(rec.type, [emulatorHeader(rec), data]);
    }
    case LibxlRecType.REC_TYPE_EMULATOR_CONTEXT:
      return frameRecord(rec.type, [emulatorHeader(rec), rec.context]);
    case LibxlRecType.REC_TYPE_CHECKPOINT_STATE: {
      // libxl writes sizeof(libxl_sr_checkpoint_state), 4 bytes; framing pads it to 8.
      const b = new Uint8Array(4);
      view(b).setUint32(0, rec.id, true);
      return frameRecord(rec.type, [b]);
    }
    case LibxlRecType.REC_TYPE_XENSIM_SEED_XENSTORE:
      return frameRecord(rec.type, [rec.state]);
  }
}

function assertXenstoreKey(k: string): void {
  if (!/^[A-Za-z0-9\-/_@]+$/.test(k) || k.startsWith('/')) throw new RangeError(`emulator xenstore key ${JSON.stringify(k)} is not a relative xenstore path`);
}

function decodeEmulatorHeader(name: string, body: Uint8Array): EmulatorHeader {
  if (body.length < 8) throw new RecordError(`${name} record too short to contain header: length ${body.length}`);
  const emulatorId = view(body).getUint32(0, true);
  if (LibxlEmulator[emulatorId] === undefined) throw new RecordError(`Unrecognised emulator id 0x${emulatorId.toString(16)}`);
  return { emulatorId, index: view(body).getUint32(4, true) };
}

/** Decodes one libxl record body; libxl refuses unknown types whether or not bit 31 is set. */
export function decodeLibxlRecord(type: number, body: Uint8Array): LibxlRecord {
  switch (type) {
    case LibxlRecType.REC_TYPE_END:
    case LibxlRecType.REC_TYPE_LIBXC_CONTEXT:
    case LibxlRecType.REC_TYPE_CHECKPOINT_END:
      if (body.length !== 0) throw new RecordError(`${libxlRecName(type)} record with non-zero length ${body.length}`);
      return { type };
    case LibxlRecType.REC_TYPE_EMULATOR_XENSTORE_DATA: {
      const h = decodeEmulatorHeader('Emulator xenstore data', body);
      const data = body.subarray(8);
      if (data.length === 0) return { type, ...h, entries: [] };
      if (data[data.length - 1] !== 0) throw new RecordError('Emulator xenstore data not NUL terminated');
      let text: string;
      try {
        text = td.decode(data.subarray(0, data.length - 1));
      } catch {
        throw new RecordError('Emulator xenstore data is not valid UTF-8');
      }
      const parts = text.split('\0');
      if (parts.length % 2 !== 0) throw new RecordError(`Emulator xenstore data: expected an even number of strings, got ${parts.length}`);
      const entries: [string, string][] = [];
      for (let i = 0; i < parts.length; i += 2) {
        if (!/^[A-Za-z0-9\-/_@]+$/.test(parts[i]) || parts[i].startsWith('/')) throw new RecordError(`Emulator xenstore data: bad key ${JSON.stringify(parts[i])}`);
        entries.push([parts[i], parts[i + 1]]);
      }
      return { type, ...h, entries };
    }
    case LibxlRecType.REC_TYPE_EMULATOR_CONTEXT:
      return { type, ...decodeEmulatorHeader('Emulator context', body), context: copyOf(body, 8) };
    case LibxlRecType.REC_TYPE_CHECKPOINT_STATE: {
      if (body.length !== 4) throw new RecordError(`CHECKPOINT_STATE record wrong size: length ${body.length}, expected 4`);
      const id = view(body).getUint32(0, true);
      if (CheckpointStateId[id] === undefined) throw new RecordError(`Unknown checkpoint state 0x${id.toString(16)}`);
      return { type, id };
    }
    case LibxlRecType.REC_TYPE_XENSIM_SEED_XENSTORE:
      if (body.length === 0) throw new RecordError('XENSIM_SEED_XENSTORE record with no state');
      return { type, state: copyOf(body) };
    default:
      throw new RecordError(`Unrecognised record 0x${(type >>> 0).toString(16).padStart(8, '0')}`);
  }
}
