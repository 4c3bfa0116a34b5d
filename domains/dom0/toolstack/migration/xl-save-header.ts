// The header xl puts before the libxl stream in a save file and on the migration channel
// (tools/xl/xl.h struct save_file_header, xl_saverestore.c, xl_vmcontrol.c): 32 bytes of magic,
// four u32s in the saving host's byte order, then the optional data - a u32 config length and the
// domain's configuration (libxl JSON, NUL-terminated).
import { copyOf, view } from './sr-record.ts';
import { RecordError } from './libxc-stream.ts';

/** savefileheader_magic: 32 bytes including the embedded NUL. */
export const SAVEFILE_HEADER_MAGIC = new TextEncoder().encode('Xen saved domain, xl format\n \0 \r');
export const SAVEFILE_BYTEORDER_VALUE = 0x01020304;
/** Config data is in JSON format. */
export const XL_MANDATORY_FLAG_JSON = 1 << 0;
/** The stream after the header is a libxl migration stream v2 (else the pre-4.6 legacy stream). */
export const XL_MANDATORY_FLAG_STREAMV2 = 1 << 1;
export const XL_MANDATORY_FLAG_ALL = XL_MANDATORY_FLAG_JSON | XL_MANDATORY_FLAG_STREAMV2;
export const SAVE_FILE_HEADER_SIZE = 48;
/**
 * xensim's bound on optional_data_len (xl itself mallocs whatever the file says): a libxl JSON
 * config is a few KiB, so 16 MiB is generous and keeps a hostile length from holding memory.
 */
export const XL_OPTIONAL_DATA_MAX = 16 * 1024 * 1024;

export interface XlSaveHeader {
  readonly mandatoryFlags: number;
  /** Not interpreted by xl's restore (only the mandatory flags are checked). */
  readonly optionalFlags: number;
  /** The config bytes as saved (xl includes the trailing NUL); undefined when there is none. */
  readonly config: Uint8Array | undefined;
}

/** save_domain_core_writeconfig(): header and optional data; config gets the JSON flag. */
export function encodeXlSaveHeader(configJson: string | undefined): Uint8Array {
  const config = configJson === undefined ? new Uint8Array(0) : new TextEncoder().encode(`${configJson}\0`);
  const optLen = 4 + config.length;
  const b = new Uint8Array(SAVE_FILE_HEADER_SIZE + optLen);
  const v = view(b);
  b.set(SAVEFILE_HEADER_MAGIC, 0);
  v.setUint32(32, SAVEFILE_BYTEORDER_VALUE, true);
  v.setUint32(36, XL_MANDATORY_FLAG_STREAMV2 | (config.length ? XL_MANDATORY_FLAG_JSON : 0), true);
  v.setUint32(40, 0, true);
  v.setUint32(44, optLen, true);
  v.setUint32(48, config.length, true);
  b.set(config, 52);
  return b;
}

/** The fixed part; returns optional_data_len so the reader knows how much follows. */
export function decodeXlSaveHeaderFixed(b: Uint8Array): { mandatoryFlags: number; optionalFlags: number; optionalDataLen: number } {
  if (!SAVEFILE_HEADER_MAGIC.every((x, i) => b[i] === x)) throw new RecordError('File has wrong magic number - corrupt or for a different tool?');
  const v = view(b);
  if (v.getUint32(32, true) !== SAVEFILE_BYTEORDER_VALUE) throw new RecordError('File has wrong byte order');
  const mandatoryFlags = v.getUint32(36, true);
  const bad = mandatoryFlags & ~XL_MANDATORY_FLAG_ALL;
  if (bad) throw new RecordError(`Savefile has mandatory flag(s) 0x${bad.toString(16)} which are not supported; need newer xl`);
  if (!(mandatoryFlags & XL_MANDATORY_FLAG_STREAMV2)) throw new RecordError('Savefile is a legacy (pre-STREAMv2) stream, which xensim does not restore');
  const optionalDataLen = v.getUint32(44, true);
  if (optionalDataLen > XL_OPTIONAL_DATA_MAX) throw new RecordError(`Savefile optional data length ${optionalDataLen} exceeds ${XL_OPTIONAL_DATA_MAX}`);
  return { mandatoryFlags, optionalFlags: v.getUint32(40, true), optionalDataLen };
}

/** The optional data: u32 config length, config bytes; anything after is skipped, as xl does. */
export function decodeXlOptionalData(fixed: { mandatoryFlags: number; optionalFlags: number }, opt: Uint8Array): XlSaveHeader {
  if (opt.length === 0) return { ...fixed, config: undefined };
  if (opt.length < 4) throw new RecordError('Savefile truncated.');
  const configLen = view(opt).getUint32(0, true);
  if (opt.length - 4 < configLen) throw new RecordError('Savefile truncated.');
  return { ...fixed, config: configLen ? copyOf(opt, 4, 4 + configLen) : undefined };
}

/** The saved config as text (without xl's trailing NUL). */
export function xlConfigText(h: XlSaveHeader): string | undefined {
  if (h.config === undefined) return undefined;
  const end = h.config[h.config.length - 1] === 0 ? h.config.length - 1 : h.config.length;
  return new TextDecoder().decode(h.config.subarray(0, end));
}
