// The restorer's view of a stream: what xc_domain_restore() and libxl's stream reader would put into
// the new domain - final page contents (a resent page replaces the earlier copy), vCPU and platform
// state, the emulator's records. Checkpointed streams are applied a checkpoint at a time, as Xen
// buffers them: libxc applies a checkpoint's records only once libxl has read its part up to
// CHECKPOINT_END, so a checkpoint cut short anywhere by a failover is dropped whole.
import { LibxcRecType, PAGE_SIZE, XenDomctlPfinfo, pageTypeHasStreamData, type DomainHeader, type PageDataHead, type HvmParamEntry, type ImageHeader, type LibxcRecord, type X86PvP2mFramesRecord, type X86TscInfo, type XenCpuidLeaf, type XenMsrEntry } from './libxc-stream.ts';
import assert from 'node:assert/strict';
import { LibxlRecType, type LibxlRecord } from './libxl-stream.ts';
import { SaveStreamReader, type SaveStreamEvent, type SaveStreamReaderOptions, type StreamEnd } from './stream-reader.ts';
import { xlConfigText, type XlSaveHeader } from './xl-save-header.ts';
import { StreamError, copyOf } from './sr-record.ts';

export interface RestoredPvVcpu {
  basic?: Uint8Array;
  extended?: Uint8Array;
  xsave?: Uint8Array;
  msrs?: Uint8Array;
}

export interface RestoredImage {
  xl?: XlSaveHeader;
  /** The saved config as text (xl's JSON). */
  config?: string;
  imageHeader?: ImageHeader;
  domainHeader?: DomainHeader;
  /** Final contents of every pfn that carries data. */
  readonly pages: Map<number, Uint8Array>;
  /** Last XEN_DOMCTL_PFINFO_* type of every pfn named in the stream. */
  readonly pageTypes: PfnTypes;
  pvInfo?: { guestWidth: 4 | 8; ptLevels: 3 | 4 };
  p2mFrames?: Omit<X86PvP2mFramesRecord, 'type'>;
  cpuidPolicy?: readonly XenCpuidLeaf[];
  msrPolicy?: readonly XenMsrEntry[];
  tsc?: X86TscInfo;
  sharedInfo?: Uint8Array;
  readonly vcpus: Map<number, RestoredPvVcpu>;
  hvmContext?: Uint8Array;
  hvmParams?: readonly HvmParamEntry[];
  emulatorXenstore?: readonly (readonly [string, string])[];
  emulatorContext?: Uint8Array;
  /** xensim's XENSIM_SEED_XENSTORE record (`xl migrate --xenstore seed`), opaque. */
  seedXenstore?: Uint8Array;
  readonly stats: {
    pageDataRecords: number;
    pagesReceived: number;
    /** Pages received more than once (precopy resends). */
    pagesResent: number;
    checkpoints: number;
    optionalRecordsSkipped: number;
    /** pfns whose VERIFY pass differed from what was restored (Xen logs each one). */
    verifyMismatches: number[];
  };
  end?: StreamEnd;
}

/**
 * Where a streaming restorer puts pages instead of RestoredImage.pages: the new domain's frames,
 * written as each PAGE_DATA record arrives.
 */
export interface RestorePageSink {
  /** The page is src[offset, offset + PAGE_SIZE), valid during the call only. */
  put(pfn: number, src: Uint8Array, offset: number): void;
  /** Pages pfn..pfn+count-1, back to back in src from offset (a run of a record): as many put()s. */
  putRun?(pfn: number, count: number, src: Uint8Array, offset: number): void;
  /** The page as restored so far (VERIFY compares with it), or undefined if none yet. */
  get(pfn: number): Uint8Array | undefined;
  /** The pfn left the guest (XTAB): it has no page any more. */
  drop(pfn: number): void;
}

export interface ImageRestorerOptions {
  /** A Remus/COLO stream. */
  readonly checkpointed?: boolean;
  /** The stream is libxc's alone: a checkpoint is whole at CHECKPOINT, not at libxl's CHECKPOINT_END. */
  readonly libxcOnly?: boolean;
  /** A plain stream's pages go there as they come (RestoredImage.pages stays empty). */
  readonly pageSink?: RestorePageSink;
  /**
   * The events' pages are views of lent stream bytes (SaveStreamReader.push(chunk, true)), valid
   * only while their event is applied: a page kept longer is copied.
   */
  readonly lent?: boolean;
}

/**
 * pfns below this (a 64 GiB guest) are kept in a byte array; a hostile stream's far pfns (up to
 * 2^52) in a map, so that none sizes an allocation.
 */
const SEEN_DENSE = 1 << 24;

/**
 * pfn -> its last XEN_DOMCTL_PFINFO_* type, read like a Map: a byte per pfn below SEEN_DENSE
 * (0xff: not named), a map for far pfns - a Map of a big guest's 262,144 pfns costs its restore
 * more than the pages' copies.
 */
export class PfnTypes {
  private dense = new Uint8Array(0);
  private readonly sparse = new Map<number, XenDomctlPfinfo>();
  private count = 0;

  get size(): number {
    return this.count + this.sparse.size;
  }

  set(pfn: number, type: XenDomctlPfinfo): this {
    if (pfn >= SEEN_DENSE) {
      this.sparse.set(pfn, type);
      return this;
    }
    if (pfn >= this.dense.length) {
      const grown = new Uint8Array(Math.min(SEEN_DENSE, Math.max(pfn + 1, this.dense.length * 2, 1024))).fill(NOT_NAMED);
      grown.set(this.dense);
      this.dense = grown;
    }
    if (this.dense[pfn] === NOT_NAMED) this.count++;
    this.dense[pfn] = type;
    return this;
  }

  get(pfn: number): XenDomctlPfinfo | undefined {
    if (pfn >= SEEN_DENSE) return this.sparse.get(pfn);
    const t = pfn < this.dense.length ? this.dense[pfn] : NOT_NAMED;
    return t === NOT_NAMED ? undefined : t;
  }

  has(pfn: number): boolean {
    return this.get(pfn) !== undefined;
  }

  /** Ascending pfns. */
  *keys(): IterableIterator<number> {
    for (const [pfn] of this) yield pfn;
  }

  /** [pfn, type], ascending pfns. */
  *[Symbol.iterator](): IterableIterator<[number, XenDomctlPfinfo]> {
    for (let pfn = 0; pfn < this.dense.length; pfn++) if (this.dense[pfn] !== NOT_NAMED) yield [pfn, this.dense[pfn]];
    yield* [...this.sparse].sort((a, b) => a[0] - b[0]);
  }
}
const NOT_NAMED = 0xff;

/** Applies a reader's events to a RestoredImage. */
export class ImageRestorer {
  readonly image: RestoredImage = {
    pages: new Map(), pageTypes: new PfnTypes(), vcpus: new Map(),
    stats: { pageDataRecords: 0, pagesReceived: 0, pagesResent: 0, checkpoints: 0, optionalRecordsSkipped: 0, verifyMismatches: [] },
  };
  private verifying = false;
  /** After the first checkpoint, records wait here until the next one completes. */
  private buffering = false;
  private libxcBuffer: LibxcRecord[] = [];
  private libxlBuffer: LibxlRecord[] = [];
  private readonly checkpointed: boolean;
  private readonly libxcOnly: boolean;
  private readonly pageSink: RestorePageSink | undefined;
  private readonly lent: boolean;
  /** The streamed PAGE_DATA record's pfns with data, in order (pageDataHead()). */
  private streamedPfns: number[] | undefined;

  constructor(opts: ImageRestorerOptions = {}) {
    this.checkpointed = opts.checkpointed ?? false;
    this.libxcOnly = opts.libxcOnly ?? false;
    this.pageSink = opts.pageSink;
    this.lent = opts.lent ?? false;
    if (this.pageSink && this.checkpointed) throw new Error('a checkpointed stream is applied a checkpoint at a time, not page by page');
  }

  apply(ev: SaveStreamEvent): void {
    if (ev.layer === 'xl') {
      this.image.xl = ev.header;
      this.image.config = xlConfigText(ev.header);
    } else if ('imageHeader' in ev) {
      this.image.imageHeader = ev.imageHeader;
      this.image.domainHeader = ev.domainHeader;
    } else if (ev.layer === 'libxc' && 'record' in ev) {
      this.libxc(ev.record);
    } else if ('pageDataHead' in ev) {
      this.pageDataHead(ev.pageDataHead);
    } else if ('pageData' in ev) {
      this.pageData(ev.pageData.first, ev.pageData.bytes);
    } else if (ev.layer === 'libxl' && 'record' in ev) {
      this.libxl(ev.record);
    }
  }

  /**
   * A streamed PAGE_DATA record's pfn list (SaveStreamReader.streamPages()): what the record does
   * but its pages, which come after it (pageData()) - only into a page sink, outside checkpoints.
   */
  private pageDataHead(head: PageDataHead): void {
    const sink = this.pageSink;
    assert(sink?.putRun && !this.checkpointed && !this.verifying, 'a streamed PAGE_DATA record needs a page sink, no checkpoints and no VERIFY pass');
    const img = this.image;
    img.stats.pageDataRecords++;
    const withData: number[] = [];
    for (let i = 0; i < head.pfnList.length; i++) {
      const pfn = head.pfnList[i];
      const type: XenDomctlPfinfo = head.typeList[i];
      img.stats.pagesReceived++;
      if (img.pageTypes.has(pfn)) img.stats.pagesResent++;
      img.pageTypes.set(pfn, type);
      if (pageTypeHasStreamData(type)) {
        withData.push(pfn);
      } else if (type === XenDomctlPfinfo.XEN_DOMCTL_PFINFO_XTAB) {
        img.pages.delete(pfn);
        sink.drop(pfn);
      }
    }
    this.streamedPfns = withData;
  }

  /** Pages first.. of the streamed record's pages with data, back to back in bytes. */
  private pageData(first: number, bytes: Uint8Array): void {
    const pfns = this.streamedPfns;
    const n = bytes.length / PAGE_SIZE;
    assert(pfns !== undefined && Number.isInteger(n) && first + n <= pfns.length, 'pages of a streamed PAGE_DATA record beyond its pfn list');
    // Runs of consecutive pfns go to the sink at once.
    for (let i = 0; i < n;) {
      let k = i + 1;
      while (k < n && pfns[first + k] === pfns[first + k - 1] + 1) k++;
      this.pageSink!.putRun!(pfns[first + i], k - i, bytes, i * PAGE_SIZE);
      i = k;
    }
  }

  /** The sender stopped: drop a checkpoint that did not complete. */
  end(how: StreamEnd): void {
    this.image.end = how;
    this.libxcBuffer = [];
    this.libxlBuffer = [];
  }

  private libxc(rec: LibxcRecord): void {
    if (rec.type === LibxcRecType.REC_TYPE_CHECKPOINT) {
      this.buffering = true;
      if (this.libxcOnly) this.commitCheckpoint();
      return;
    }
    if (rec.type === LibxcRecType.REC_TYPE_END) {
      // xc_domain_restore() stops at END without processing what it buffered since the last
      // CHECKPOINT: in a checkpointed stream only whole checkpoints count.
      this.libxcBuffer = [];
      this.buffering = false;
      return;
    }
    if (this.checkpointed && this.buffering) {
      // Held until the checkpoint is whole: lent pages are copied (the other records own their bytes).
      this.libxcBuffer.push(this.lent && rec.type === LibxcRecType.REC_TYPE_PAGE_DATA ? { type: rec.type, pfns: rec.pfns, pages: rec.pages.map((p) => copyOf(p)) } : rec);
    } else {
      this.applyLibxc(rec);
    }
  }

  private libxl(rec: LibxlRecord): void {
    if (rec.type === LibxlRecType.REC_TYPE_CHECKPOINT_END) {
      this.commitCheckpoint();
      return;
    }
    if (this.checkpointed && this.buffering) this.libxlBuffer.push(rec);
    else this.applyLibxl(rec);
  }

  private commitCheckpoint(): void {
    for (const r of this.libxcBuffer) this.applyLibxc(r);
    for (const r of this.libxlBuffer) this.applyLibxl(r);
    this.libxcBuffer = [];
    this.libxlBuffer = [];
    this.image.stats.checkpoints++;
  }

  private applyLibxl(rec: LibxlRecord): void {
    if (rec.type === LibxlRecType.REC_TYPE_EMULATOR_XENSTORE_DATA) this.image.emulatorXenstore = rec.entries;
    else if (rec.type === LibxlRecType.REC_TYPE_EMULATOR_CONTEXT) this.image.emulatorContext = rec.context;
    else if (rec.type === LibxlRecType.REC_TYPE_XENSIM_SEED_XENSTORE) this.image.seedXenstore = rec.state;
  }

  private vcpu(id: number): RestoredPvVcpu {
    let v = this.image.vcpus.get(id);
    if (!v) this.image.vcpus.set(id, (v = {}));
    return v;
  }

  private applyLibxc(rec: LibxcRecord): void {
    const img = this.image;
    switch (rec.type) {
      case 'optional':
        img.stats.optionalRecordsSkipped++;
        return;
      case LibxcRecType.REC_TYPE_PAGE_DATA: {
        img.stats.pageDataRecords++;
        let data = 0;
        // A run of consecutive pfns with data goes to the sink at once (round 1 of a big guest is
        // all runs); it is flushed before anything else is done with a page.
        let run: { pfn: number; count: number; at: number } | undefined;
        const flush = (): void => {
          if (run) this.pageSink!.putRun!(run.pfn, run.count, rec.data!, run.at);
          run = undefined;
        };
        const runs = Boolean(rec.data && this.pageSink?.putRun && !this.verifying);
        // A decoded record's arrays when it has them (no object per pfn), else its list.
        const { pfnList, typeList } = rec;
        const n = pfnList ? pfnList.length : rec.pfns.length;
        for (let i = 0; i < n; i++) {
          const pfn = pfnList ? pfnList[i] : rec.pfns[i].pfn;
          const type: XenDomctlPfinfo = typeList ? typeList[i] : rec.pfns[i].type;
          img.stats.pagesReceived++;
          if (img.pageTypes.has(pfn)) img.stats.pagesResent++;
          img.pageTypes.set(pfn, type);
          if (runs && pageTypeHasStreamData(type)) {
            if (run && run.pfn + run.count === pfn) {
              run.count++;
            } else {
              flush();
              run = { pfn, count: 1, at: data * PAGE_SIZE };
            }
            data++;
            continue;
          }
          if (runs) flush();
          if (!pageTypeHasStreamData(type)) {
            if (type === XenDomctlPfinfo.XEN_DOMCTL_PFINFO_XTAB) {
              img.pages.delete(pfn);
              this.pageSink?.drop(pfn);
            }
            continue;
          }
          // The page is src[at, at + PAGE_SIZE): from the decoded record's data (no view made), or its own.
          const src = rec.data ?? rec.pages[data];
          const at = rec.data ? data * PAGE_SIZE : 0;
          data++;
          if (this.verifying) {
            const have = this.pageSink ? this.pageSink.get(pfn) : img.pages.get(pfn);
            const page = src.subarray(at, at + PAGE_SIZE);
            if (!have || !have.every((b, i) => b === page[i])) img.stats.verifyMismatches.push(pfn);
          } else if (this.pageSink) {
            this.pageSink.put(pfn, src, at);
          } else {
            img.pages.set(pfn, this.lent ? copyOf(src, at, at + PAGE_SIZE) : src.subarray(at, at + PAGE_SIZE));
          }
        }
        if (runs) flush();
        return;
      }
      case LibxcRecType.REC_TYPE_VERIFY:
        this.verifying = true;
        return;
      case LibxcRecType.REC_TYPE_X86_PV_INFO:
        img.pvInfo = { guestWidth: rec.guestWidth, ptLevels: rec.ptLevels };
        return;
      case LibxcRecType.REC_TYPE_X86_PV_P2M_FRAMES:
        img.p2mFrames = { startPfn: rec.startPfn, endPfn: rec.endPfn, p2mPfns: rec.p2mPfns };
        return;
      case LibxcRecType.REC_TYPE_X86_PV_VCPU_BASIC:
        this.vcpu(rec.vcpuId).basic = rec.context;
        return;
      case LibxcRecType.REC_TYPE_X86_PV_VCPU_EXTENDED:
        this.vcpu(rec.vcpuId).extended = rec.context;
        return;
      case LibxcRecType.REC_TYPE_X86_PV_VCPU_XSAVE:
        this.vcpu(rec.vcpuId).xsave = rec.context;
        return;
      case LibxcRecType.REC_TYPE_X86_PV_VCPU_MSRS:
        this.vcpu(rec.vcpuId).msrs = rec.context;
        return;
      case LibxcRecType.REC_TYPE_SHARED_INFO:
        img.sharedInfo = rec.sharedInfo;
        return;
      case LibxcRecType.REC_TYPE_X86_TSC_INFO:
        img.tsc = { mode: rec.mode, khz: rec.khz, nsec: rec.nsec, incarnation: rec.incarnation };
        return;
      case LibxcRecType.REC_TYPE_HVM_CONTEXT:
        img.hvmContext = rec.context;
        return;
      case LibxcRecType.REC_TYPE_HVM_PARAMS:
        img.hvmParams = rec.params;
        return;
      case LibxcRecType.REC_TYPE_X86_CPUID_POLICY:
        img.cpuidPolicy = rec.leaves;
        return;
      case LibxcRecType.REC_TYPE_X86_MSR_POLICY:
        img.msrPolicy = rec.msrs;
        return;
      case LibxcRecType.REC_TYPE_STATIC_DATA_END:
      case LibxcRecType.REC_TYPE_END:
      case LibxcRecType.REC_TYPE_CHECKPOINT:
      case LibxcRecType.REC_TYPE_TOOLSTACK:
      case LibxcRecType.REC_TYPE_CHECKPOINT_DIRTY_PFN_LIST:
        return;
    }
  }
}

/**
 * Reads a whole stream held in memory (a save file): the restored image, or a StreamError. Bytes
 * after the final END are refused - a save file ends there.
 */
export function readSaveImage(bytes: Uint8Array, opts: SaveStreamReaderOptions = {}): RestoredImage {
  const reader = new SaveStreamReader(opts);
  const restorer = new ImageRestorer({ checkpointed: (opts.streamType ?? 'plain') !== 'plain', libxcOnly: opts.format === 'libxc' });
  for (const ev of reader.push(bytes)) restorer.apply(ev);
  const how = reader.end();
  if (how === 'complete') {
    const rest = reader.trailing();
    if (rest.length) throw new StreamError(opts.format ?? 'xl', `${rest.length} bytes of trailing data after END`, bytes.length - rest.length);
  }
  restorer.end(how);
  return restorer.image;
}

