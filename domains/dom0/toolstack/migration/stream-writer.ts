// Writes a save file or migration stream the way `xl save` / `xl migrate` produce it: xl's header
// (save_domain_core_writeconfig), libxl's header and LIBXC_CONTEXT (libxl_stream_write.c), then
// libxc's stream in xg_sr_save.c's order - headers, static data, STATIC_DATA_END, start of stream,
// PAGE_DATA batches of at most MAX_BATCH_SIZE pfns, the end-of-checkpoint state - and finally
// libxc END, the emulator records of an HVM guest and libxl END. A checkpointed (Remus/COLO)
// stream puts CHECKPOINT and libxl's checkpoint records (ending in CHECKPOINT_END) after each
// checkpoint instead. The phases are asserted: a stream out of order is a caller bug.
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { RHDR_SIZE } from './sr-record.ts';
import { encodeXlSaveHeader } from './xl-save-header.ts';
import { LibxlEmulator, LibxlRecType, encodeLibxlHeader, encodeLibxlRecord } from './libxl-stream.ts';
import {
  DhdrType, IHDR_OPT_LITTLE_ENDIAN, IHDR_VERSION, LibxcRecType, MAX_BATCH_SIZE, PAGE_DATA_PFN_MASK, PAGE_SIZE, XC_PAGE_SHIFT, XenDomctlPfinfo,
  encodeDomainHeader, encodeImageHeader, encodeLibxcRecord, isKnownPageType, p2mFrameCount, pageTypeHasStreamData, pvVcpuBlobProblem,
  type HvmParamEntry, type LibxcRecord, type X86PvP2mFramesRecord, type X86TscInfo, type XenCpuidLeaf, type XenMsrEntry,
} from './libxc-stream.ts';
import type { StreamFormat, XcStreamType } from './stream-reader.ts';

/** A guest page as the saver sends it: its pfn, type (NOTAB unless a PV page table) and contents. */
export interface GuestPage {
  readonly pfn: number;
  readonly type?: XenDomctlPfinfo;
  /** 4 KiB for types with stream data; absent for XTAB, XALLOC and BROKEN. */
  readonly bytes?: Uint8Array;
  /**
   * Instead of bytes: the page where it is mapped, PAGE_SIZE bytes at `offset` of `mapping` (a
   * batch's frames mapped together, as xenforeignmemory_map() maps them); pages next to each other
   * in one mapping are copied into the record in one go, with no view made of each.
   */
  readonly mapping?: Uint8Array;
  readonly offset?: number;
}

/**
 * A GuestPage a saver fills in anew for each batch: the writer copies a batch's pages during
 * sendPages(), so one set of page objects serves every batch (a big guest has 262,144 pages a GiB).
 */
export type MutableGuestPage = { -readonly [K in keyof GuestPage]: GuestPage[K] };

/** A page object for readPageInto()-style fillers, with every field there (one shape for all). */
export const newGuestPage = (): MutableGuestPage => ({ pfn: 0, type: undefined, bytes: undefined, mapping: undefined, offset: undefined });

/** A PV vCPU's four context blobs (XEN_DOMCTL_getvcpucontext and friends). */
export interface PvVcpuContext {
  readonly vcpuId: number;
  readonly basic: Uint8Array;
  readonly extended: Uint8Array;
  /** Empty blobs are elided, as write_one_vcpu_xsave()/msrs() do. */
  readonly xsave?: Uint8Array;
  readonly msrs?: Uint8Array;
}

/** x86_pv_end_of_checkpoint(): TSC, shared_info, then each online vCPU's records. */
export interface PvCheckpointState {
  readonly type: DhdrType.DHDR_TYPE_X86_PV;
  readonly tsc: X86TscInfo;
  readonly sharedInfo: Uint8Array;
  readonly vcpus: readonly PvVcpuContext[];
}

/**
 * x86_hvm_end_of_checkpoint(): TSC, HVM_CONTEXT, HVM_PARAMS - the code's order, although the spec's
 * layout lists HVM_PARAMS first; restore sets params at once and loads the context only at the end.
 */
export interface HvmCheckpointState {
  readonly type: DhdrType.DHDR_TYPE_X86_HVM;
  readonly tsc: X86TscInfo;
  readonly hvmContext: Uint8Array;
  /** Only the params write_hvm_params() lists, and only non-zero ones (it skips zeros). */
  readonly hvmParams: readonly HvmParamEntry[];
}

export type CheckpointState = PvCheckpointState | HvmCheckpointState;

/** What libxl adds for an HVM guest's device model (qemu-upstream, index 0); PVH guests have none. */
export interface EmulatorState {
  /** device-model/$domid/ keys; libxl writes the record only when there are some. */
  readonly xenstore?: readonly (readonly [string, string])[];
  /** QEMU's saved device state; libxl always writes it for HVM. */
  readonly context: Uint8Array;
}

export interface SaveStreamWriterOptions {
  readonly format?: StreamFormat;
  readonly streamType?: XcStreamType;
  readonly guestType: DhdrType;
  /** Written in the domain header; xensim models Xen 4.17. */
  readonly xenMajor?: number;
  readonly xenMinor?: number;
  /** The domain's config for xl's header (libxl JSON). */
  readonly config?: string;
  /** X86_PV_INFO (PV only). */
  readonly pvInfo?: { readonly guestWidth: 4 | 8; readonly ptLevels: 3 | 4 };
  /** X86_PV_P2M_FRAMES (PV only): where the guest keeps its p2m. */
  readonly p2mFrames?: Omit<X86PvP2mFramesRecord, 'type'>;
  readonly cpuidPolicy?: readonly XenCpuidLeaf[];
  readonly msrPolicy?: readonly XenMsrEntry[];
  /** Makes a PAGE_DATA record buffer of at least `bytes` (default: a Buffer of the process's own). */
  readonly recordBuffer?: (bytes: number) => Uint8Array;
  /**
   * Told, for each PAGE_DATA record, what its pages hold as sent: pages[from, to) of the batch,
   * those with data back to back in `record` from byte `dataAt` - before the record goes to the
   * sink (a live saver's look at the pages it read; see xl-migrate.ts).
   */
  readonly pagesCopied?: (pages: readonly GuestPage[], from: number, to: number, record: Uint8Array, dataAt: number) => void;
}

/**
 * Takes each chunk of the stream in order. A chunk passed without `release` is the sink's to keep
 * (the writer never changes it). A chunk passed with `release` (a PAGE_DATA record) is lent: the
 * writer will fill its buffer with a later record once `release` has been called, so the sink -
 * and whoever it hands the bytes on to - calls it exactly once, when nobody will read them again
 * (a file write: on return; a transport: once the other side has read past them). A sink that
 * never calls it may keep the chunk: the writer takes a new buffer instead.
 */
export type StreamSink = (chunk: Uint8Array, release?: () => void) => void;

/** Free buffers the writer keeps for later records (the rest of those given back are dropped). */
const BATCH_POOL_MAX = 8;
/** The largest PAGE_DATA record: header, MAX_BATCH_SIZE pfn words and pages. */
const BATCH_RECORD_MAX = RHDR_SIZE + 8 + (8 + PAGE_SIZE) * MAX_BATCH_SIZE;

/**
 * The PAGE_DATA buffers a writer lends its sink. Writing a batch into a buffer of the process's
 * own that was touched before costs a copy; a new one costs the host OS's page faults as well
 * (several times the copy here) and leaves garbage the size of the stream.
 */
class BatchBuffers {
  private readonly free: Uint8Array[] = [];

  constructor(private readonly make: (bytes: number) => Uint8Array = (bytes) => Buffer.allocUnsafe(bytes)) {}
  /** Buffers lent and not given back: a sink that keeps chunks holds them, no harm done. */
  lent = 0;
  /** Buffers made (the pool's high-water mark while sinks give them back). */
  made = 0;

  /** A buffer for a record of `bytes` and the release that gives it back (asserted once only). */
  take(bytes: number): { chunk: Uint8Array; release: () => void } {
    assert(bytes <= BATCH_RECORD_MAX, `PAGE_DATA record of ${bytes} bytes`);
    let buf = this.free.pop();
    if (!buf) {
      buf = this.make(BATCH_RECORD_MAX);
      assert(buf.length >= BATCH_RECORD_MAX, `a PAGE_DATA buffer of ${buf.length} bytes`);
      this.made++;
    }
    this.lent++;
    let back = false;
    const release = (): void => {
      assert(!back, 'a PAGE_DATA buffer given back twice');
      back = true;
      this.lent--;
      if (this.free.length < BATCH_POOL_MAX) this.free.push(buf);
    };
    return { chunk: buf.subarray(0, bytes), release };
  }
}

const PAGE_DATA_PFN_MAX = Number(PAGE_DATA_PFN_MASK);

type Phase = 'new' | 'memory' | 'state-sent' | 'libxc-ended' | 'finished';

export class SaveStreamWriter {
  private phase: Phase = 'new';
  private readonly format: StreamFormat;
  private readonly streamType: XcStreamType;
  private readonly hvm: boolean;
  /** PAGE_DATA records and pages written (pages count resends). */
  readonly stats = { pageDataRecords: 0, pagesSent: 0, bytes: 0, checkpoints: 0 };
  private readonly batches: BatchBuffers;

  constructor(private readonly sink: StreamSink, private readonly opts: SaveStreamWriterOptions) {
    this.batches = new BatchBuffers(opts.recordBuffer);
    this.format = opts.format ?? 'xl';
    this.streamType = opts.streamType ?? 'plain';
    this.hvm = opts.guestType === DhdrType.DHDR_TYPE_X86_HVM;
    assert(this.hvm || opts.guestType === DhdrType.DHDR_TYPE_X86_PV, `domain type ${opts.guestType}`);
    if (!this.hvm) {
      assert(opts.pvInfo && opts.p2mFrames, 'a PV stream needs X86_PV_INFO and X86_PV_P2M_FRAMES');
      const { startPfn, endPfn, p2mPfns } = opts.p2mFrames;
      assert.equal(p2mPfns.length, p2mFrameCount(startPfn, endPfn, opts.pvInfo.guestWidth), 'X86_PV_P2M_FRAMES lists one frame per PAGE_SIZE/width pfns');
    } else {
      assert(!opts.pvInfo && !opts.p2mFrames, 'X86_PV_* records in an HVM stream');
    }
  }

  private emit(chunks: readonly Uint8Array[]): void {
    for (const c of chunks) {
      this.stats.bytes += c.length;
      this.sink(c);
    }
  }

  private libxc(rec: LibxcRecord): void {
    this.emit(encodeLibxcRecord(rec));
  }

  /** Everything before the first page: headers, static data, STATIC_DATA_END, start of stream. */
  start(): void {
    assert.equal(this.phase, 'new');
    if (this.format === 'xl') this.emit([encodeXlSaveHeader(this.opts.config)]);
    if (this.format !== 'libxc') {
      this.emit([encodeLibxlHeader()]);
      this.emit(encodeLibxlRecord({ type: LibxlRecType.REC_TYPE_LIBXC_CONTEXT }));
    }
    this.emit([
      encodeImageHeader({ version: IHDR_VERSION, options: IHDR_OPT_LITTLE_ENDIAN }),
      encodeDomainHeader({ type: this.opts.guestType, pageShift: XC_PAGE_SHIFT, xenMajor: this.opts.xenMajor ?? 4, xenMinor: this.opts.xenMinor ?? 17 }),
    ]);
    if (this.opts.pvInfo) this.libxc({ type: LibxcRecType.REC_TYPE_X86_PV_INFO, ...this.opts.pvInfo });
    if (this.opts.cpuidPolicy?.length) this.libxc({ type: LibxcRecType.REC_TYPE_X86_CPUID_POLICY, leaves: this.opts.cpuidPolicy });
    if (this.opts.msrPolicy?.length) this.libxc({ type: LibxcRecType.REC_TYPE_X86_MSR_POLICY, msrs: this.opts.msrPolicy });
    this.libxc({ type: LibxcRecType.REC_TYPE_STATIC_DATA_END });
    if (this.opts.p2mFrames) this.libxc({ type: LibxcRecType.REC_TYPE_X86_PV_P2M_FRAMES, ...this.opts.p2mFrames });
    this.phase = 'memory';
  }

  /** PAGE_DATA buffers made so far and lent now (a sink that gives them back keeps both small). */
  get batchBuffers(): { readonly made: number; readonly lent: number } {
    return { made: this.batches.made, lent: this.batches.lent };
  }

  /**
   * Sends pages in PAGE_DATA batches of at most MAX_BATCH_SIZE pfns (write_batch()). Each record
   * goes to the sink as one lent buffer with the pages copied in, so the caller may pass live
   * views of the guest's frames: what is sent is what they held during this call.
   */
  sendPages(pages: readonly GuestPage[]): void {
    assert.equal(this.phase, 'memory');
    for (let i = 0; i < pages.length; i += MAX_BATCH_SIZE) {
      const end = Math.min(pages.length, i + MAX_BATCH_SIZE);
      let withData = 0;
      for (let j = i; j < end; j++) {
        const p = pages[j];
        const type = p.type ?? XenDomctlPfinfo.XEN_DOMCTL_PFINFO_NOTAB;
        if (!Number.isSafeInteger(p.pfn) || p.pfn < 0 || p.pfn > PAGE_DATA_PFN_MAX) throw new RangeError(`pfn ${p.pfn} out of range`);
        if (!isKnownPageType(type)) throw new RangeError(`unknown page type ${type}`);
        const has = pageTypeHasStreamData(type);
        // The messages are made only when failing: this runs for every page of a migration.
        if ((p.bytes !== undefined || p.mapping !== undefined) !== has) assert.fail(`pfn 0x${p.pfn.toString(16)}: page data ${has ? 'missing' : 'given'} for type ${type}`);
        if (has) {
          if (p.bytes) {
            if (p.mapping !== undefined) assert.fail(`pfn 0x${p.pfn.toString(16)}: both bytes and a mapping`);
            if (p.bytes.length !== PAGE_SIZE) throw new RangeError(`page of ${p.bytes.length} bytes`);
          } else {
            const at = p.offset ?? 0;
            if (!Number.isSafeInteger(at) || at < 0 || at + PAGE_SIZE > p.mapping!.length) throw new RangeError(`page at ${at} of a ${p.mapping!.length}-byte mapping`);
          }
          withData++;
        }
      }
      const n = end - i;
      // struct xc_sr_rhdr, then xc_sr_rec_page_data_header (count, reserved), the pfn words and
      // the pages: a multiple of 8 bytes, so no padding.
      const length = 8 + 8 * n + PAGE_SIZE * withData;
      const { chunk: rec, release } = this.batches.take(RHDR_SIZE + length);
      const v = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
      v.setUint32(0, LibxcRecType.REC_TYPE_PAGE_DATA, true);
      v.setUint32(4, length, true);
      v.setUint32(8, n, true);
      v.setUint32(12, 0, true);
      for (let j = i; j < end; j++) {
        const p = pages[j];
        const type = p.type ?? XenDomctlPfinfo.XEN_DOMCTL_PFINFO_NOTAB;
        // pfn in bits 0-51, the type in bits 60-63 (the pfn is below 2^52: a safe integer).
        const w = RHDR_SIZE + 8 + 8 * (j - i);
        v.setUint32(w, p.pfn % 0x1_0000_0000, true);
        v.setUint32(w + 4, (Math.floor(p.pfn / 0x1_0000_0000) | (type << 28)) >>> 0, true);
      }
      let at = RHDR_SIZE + 8 + 8 * n;
      for (let j = i; j < end;) {
        const p = pages[j];
        if (p.bytes) {
          rec.set(p.bytes, at);
          at += PAGE_SIZE;
          j++;
        } else if (p.mapping) {
          // The run of pages back to back in the same mapping from here: one copy.
          const from = p.offset ?? 0;
          let k = j + 1;
          while (k < end && pages[k].mapping === p.mapping && (pages[k].offset ?? 0) === from + (k - j) * PAGE_SIZE) k++;
          rec.set(p.mapping.subarray(from, from + (k - j) * PAGE_SIZE), at);
          at += (k - j) * PAGE_SIZE;
          j = k;
        } else {
          j++;
        }
      }
      this.opts.pagesCopied?.(pages, i, end, rec, RHDR_SIZE + 8 + 8 * n);
      this.stats.bytes += rec.length;
      this.sink(rec, release);
      this.stats.pageDataRecords++;
      this.stats.pagesSent += n;
    }
  }

  /** The suspended domain's state, after its last pages (end_of_checkpoint()). */
  endOfCheckpoint(state: CheckpointState): void {
    assert.equal(this.phase, 'memory');
    assert.equal(state.type, this.opts.guestType, 'checkpoint state of another domain type');
    this.libxc({ type: LibxcRecType.REC_TYPE_X86_TSC_INFO, ...state.tsc });
    if (state.type === DhdrType.DHDR_TYPE_X86_HVM) {
      this.libxc({ type: LibxcRecType.REC_TYPE_HVM_CONTEXT, context: state.hvmContext });
      if (state.hvmParams.length) this.libxc({ type: LibxcRecType.REC_TYPE_HVM_PARAMS, params: state.hvmParams });
    } else {
      this.libxc({ type: LibxcRecType.REC_TYPE_SHARED_INFO, sharedInfo: state.sharedInfo });
      assert(state.vcpus.some((v) => v.vcpuId === 0), 'vcpu0 must be online');
      const width = this.opts.pvInfo!.guestWidth;
      for (const v of state.vcpus) {
        const blobs = [[LibxcRecType.REC_TYPE_X86_PV_VCPU_BASIC, v.basic], [LibxcRecType.REC_TYPE_X86_PV_VCPU_EXTENDED, v.extended],
          [LibxcRecType.REC_TYPE_X86_PV_VCPU_XSAVE, v.xsave?.length ? v.xsave : undefined], [LibxcRecType.REC_TYPE_X86_PV_VCPU_MSRS, v.msrs]] as const;
        for (const [t, b] of blobs) if (b) assert.equal(pvVcpuBlobProblem(t, width, b.length), undefined, `vcpu${v.vcpuId}`);
        this.libxc({ type: LibxcRecType.REC_TYPE_X86_PV_VCPU_BASIC, vcpuId: v.vcpuId, context: v.basic });
        this.libxc({ type: LibxcRecType.REC_TYPE_X86_PV_VCPU_EXTENDED, vcpuId: v.vcpuId, context: v.extended });
        if (v.xsave?.length) this.libxc({ type: LibxcRecType.REC_TYPE_X86_PV_VCPU_XSAVE, vcpuId: v.vcpuId, context: v.xsave });
        if (v.msrs?.length) this.libxc({ type: LibxcRecType.REC_TYPE_X86_PV_VCPU_MSRS, vcpuId: v.vcpuId, context: v.msrs });
      }
    }
    this.phase = 'state-sent';
  }

  /** Debug mode of a plain live migration (verify_frames()): VERIFY, then every page again. */
  verify(pages: readonly GuestPage[]): void {
    assert.equal(this.phase, 'state-sent');
    assert.equal(this.streamType, 'plain', 'VERIFY belongs to plain streams');
    this.libxc({ type: LibxcRecType.REC_TYPE_VERIFY });
    this.phase = 'memory';
    this.sendPages(pages);
    this.phase = 'state-sent';
  }

  /**
   * Remus/COLO: CHECKPOINT hands the stream to libxl, which writes the emulator's records and
   * CHECKPOINT_END; the next checkpoint's pages follow in libxc's stream.
   */
  checkpoint(emulator?: EmulatorState): void {
    assert.equal(this.phase, 'state-sent');
    assert.notEqual(this.streamType, 'plain', 'CHECKPOINT in a plain stream');
    this.libxc({ type: LibxcRecType.REC_TYPE_CHECKPOINT });
    if (this.format !== 'libxc') {
      this.emulatorRecords(emulator);
      this.emit(encodeLibxlRecord({ type: LibxlRecType.REC_TYPE_CHECKPOINT_END }));
    }
    this.stats.checkpoints++;
    this.phase = 'memory';
  }

  /**
   * Ends the stream: libxc END, then (libxl) the emulator records, xensim's XENSIM_SEED_XENSTORE
   * when given (`xl migrate --xenstore seed`), and END.
   */
  finish(emulator?: EmulatorState, seedXenstore?: Uint8Array): void {
    assert(seedXenstore === undefined || this.format !== 'libxc', 'XENSIM_SEED_XENSTORE is a libxl record');
    assert(this.phase === 'state-sent' || (this.phase === 'memory' && this.stats.checkpoints > 0), `finish() in phase ${this.phase}`);
    this.libxc({ type: LibxcRecType.REC_TYPE_END });
    this.phase = 'libxc-ended';
    if (this.format !== 'libxc') {
      this.emulatorRecords(emulator);
      if (seedXenstore) this.emit(encodeLibxlRecord({ type: LibxlRecType.REC_TYPE_XENSIM_SEED_XENSTORE, state: seedXenstore }));
      this.emit(encodeLibxlRecord({ type: LibxlRecType.REC_TYPE_END }));
    }
    this.phase = 'finished';
  }

  private emulatorRecords(emulator: EmulatorState | undefined): void {
    // A PVH guest is an HVM container without a device model: no emulator records.
    assert(this.hvm || emulator === undefined, 'emulator state for a PV guest');
    if (!emulator) return;
    const hdr = { emulatorId: LibxlEmulator.EMULATOR_QEMU_UPSTREAM, index: 0 };
    if (emulator.xenstore?.length) this.emit(encodeLibxlRecord({ type: LibxlRecType.REC_TYPE_EMULATOR_XENSTORE_DATA, ...hdr, entries: emulator.xenstore }));
    this.emit(encodeLibxlRecord({ type: LibxlRecType.REC_TYPE_EMULATOR_CONTEXT, ...hdr, context: emulator.context }));
  }
}
