// Reads a save file or migration stream as it arrives: xl's header, the libxl stream, and the libxc
// stream inline after LIBXC_CONTEXT, handing control between the layers at the points Xen does (libxc
// END or, in a checkpointed stream, CHECKPOINT; libxl CHECKPOINT_END back to libxc). Besides each
// record's own checks it enforces the order restore depends on. Every length is checked against its
// bound before the reader waits for that many bytes, and nothing is allocated beyond bytes received.
import { ByteQueue } from './byte-queue.ts';
import { RHDR_SIZE, REC_LENGTH_MAX, StreamError, copyOf, decodeRecordHeader, firstNonZero, roundUp, type StreamLayer } from './sr-record.ts';
import {
  DHDR_SIZE, DhdrType, IHDR_SIZE, LibxcRecType, PAGE_SIZE, RecordError, decodeDomainHeader, decodeImageHeader, decodeLibxcRecord, decodePageDataHead,
  libxcRecName, p2mFrameCount, pageDataCount, pvVcpuBlobProblem,
  type DomainHeader, type ImageHeader, type LibxcRecord, type PageDataHead,
} from './libxc-stream.ts';
import { LIBXL_HDR_SIZE, LibxlRecType, decodeLibxlHeader, decodeLibxlRecord, libxlRecName, type LibxlHeader, type LibxlRecord } from './libxl-stream.ts';
import { SAVE_FILE_HEADER_SIZE, decodeXlOptionalData, decodeXlSaveHeaderFixed, type XlSaveHeader } from './xl-save-header.ts';

/** Where the stream starts: at xl's header (a save file, xl's migration channel), libxl's or libxc's. */
export type StreamFormat = 'xl' | 'libxl' | 'libxc';
/** xc_stream_type_t: a plain save/migration, or Remus/COLO checkpoints. */
export type XcStreamType = 'plain' | 'remus' | 'colo';

export interface SaveStreamReaderOptions {
  readonly format?: StreamFormat;
  readonly streamType?: XcStreamType;
  /** The restoring domain's p2m size: pfns at or above it are refused ("outside domain maximum"). */
  readonly p2mSize?: number;
  /** The restoring domain's vCPUs: PV vCPU records for others are refused. */
  readonly maxVcpus?: number;
}

export type SaveStreamEvent =
  | { readonly layer: 'xl'; readonly header: XlSaveHeader }
  | { readonly layer: 'libxl'; readonly header: LibxlHeader }
  | { readonly layer: 'libxl'; readonly record: LibxlRecord }
  | { readonly layer: 'libxc'; readonly imageHeader: ImageHeader; readonly domainHeader: DomainHeader }
  | { readonly layer: 'libxc'; readonly record: LibxcRecord }
  /** A streamed PAGE_DATA record (streamPages()): its pfn list, checked, before its pages. */
  | { readonly layer: 'libxc'; readonly pageDataHead: PageDataHead }
  /**
   * Pages of the streamed PAGE_DATA record last headed: its pages with data number first.. in
   * order, back to back in `bytes` (a view of the stream's bytes, as a record's pages are).
   */
  | { readonly layer: 'libxc'; readonly pageData: { readonly first: number; readonly bytes: Uint8Array } };

/** How a stream ended: its final END, or (checkpointed streams) the sender gone after a checkpoint. */
export type StreamEnd = 'complete' | 'failover';

type Step =
  | { kind: 'xl-header'; need: number }
  | { kind: 'xl-optdata'; need: number; fixed: { mandatoryFlags: number; optionalFlags: number } }
  | { kind: 'libxl-header'; need: number }
  | { kind: 'libxc-headers'; need: number }
  | { kind: 'record-header'; need: number; layer: 'libxl' | 'libxc' }
  | { kind: 'record-body'; need: number; layer: 'libxl' | 'libxc'; type: number; length: number; at: number }
  | { kind: 'page-data'; need: number; phase: 'count' | 'head' | 'pages'; length: number; at: number; next: number; left: number }
  | { kind: 'done'; need: 0 };

/** A lent chunk's release as the reader sees it: giving it back is the caller's business. */
const NOT_OURS = (): void => {};

const PV_RECORDS = new Set<number>([
  LibxcRecType.REC_TYPE_X86_PV_INFO, LibxcRecType.REC_TYPE_X86_PV_P2M_FRAMES, LibxcRecType.REC_TYPE_X86_PV_VCPU_BASIC,
  LibxcRecType.REC_TYPE_X86_PV_VCPU_EXTENDED, LibxcRecType.REC_TYPE_X86_PV_VCPU_XSAVE, LibxcRecType.REC_TYPE_X86_PV_VCPU_MSRS,
  LibxcRecType.REC_TYPE_SHARED_INFO,
]);
const HVM_RECORDS = new Set<number>([LibxcRecType.REC_TYPE_HVM_CONTEXT, LibxcRecType.REC_TYPE_HVM_PARAMS]);

export class SaveStreamReader {
  private readonly q = new ByteQueue();
  private readonly format: StreamFormat;
  private readonly streamType: XcStreamType;
  private readonly p2mSize: number | undefined;
  private readonly maxVcpus: number | undefined;
  private step: Step;
  private failed: StreamError | undefined;
  // libxl layer
  private libxcContextSeen = false;
  private libxcEnded = false;
  private inCheckpoint = false;
  private checkpointsEnded = 0;
  private seedXenstoreSeen = false;
  // libxc layer
  private version: 2 | 3 = 3;
  private guestType: DhdrType | undefined;
  private staticDataEnd = false;
  /** X86_PV_INFO's guest width, once seen. */
  private pvWidth: 4 | 8 | undefined;
  private p2mFrames = false;
  private cpuidPolicy = false;
  private msrPolicy = false;
  private vcpu0Basic = false;
  private hvmContext = false;
  /** streamPages(): PAGE_DATA records go out as their pfn list, then their pages as they come. */
  private streamPageData = false;

  constructor(opts: SaveStreamReaderOptions = {}) {
    this.format = opts.format ?? 'xl';
    this.streamType = opts.streamType ?? 'plain';
    this.p2mSize = opts.p2mSize;
    this.maxVcpus = opts.maxVcpus;
    this.step = this.format === 'xl' ? { kind: 'xl-header', need: SAVE_FILE_HEADER_SIZE }
      : this.format === 'libxl' ? { kind: 'libxl-header', need: LIBXL_HDR_SIZE }
        : { kind: 'libxc-headers', need: IHDR_SIZE + DHDR_SIZE };
  }

  get done(): boolean {
    return this.step.kind === 'done';
  }

  /**
   * From the next PAGE_DATA record on, each goes out as its pfn list (checked as the whole record
   * would be) and then its pages as they arrive - whole pages, viewed where they lie in one chunk
   * - rather than as one record once it is all there: a consumer that puts pages straight into
   * frames never has the record copied together (as xc_domain_restore() reads a batch's pages into
   * its mapping). Not for a VERIFY pass (the pages are compared whole), which turns it off.
   */
  streamPages(): void {
    this.streamPageData = true;
  }

  /**
   * Feeds bytes; returns the headers and records they complete, in stream order. Every record
   * decoded owns its bytes except PAGE_DATA's pages, which are views of the stream's bytes.
   * Without `lent` the reader keeps views of `chunk` (the caller must not change it); with it the
   * chunk is only lent for this call: the reader copies the part it has not read yet, and the
   * pages of the events returned are valid until the caller changes the chunk (whoever keeps a
   * page longer copies it).
   */
  push(chunk: Uint8Array, lent = false): SaveStreamEvent[] {
    if (this.failed) throw this.failed;
    this.q.push(chunk, lent ? NOT_OURS : undefined);
    const out: SaveStreamEvent[] = [];
    try {
      while (this.step.kind !== 'done' && this.q.length >= this.step.need) this.advance(out);
    } catch (e) {
      if (e instanceof StreamError) this.failed = e;
      throw e;
    } finally {
      // A record cut by the chunk's end waits for the next chunk in bytes of the reader's own.
      if (lent) {
        this.q.keepUnread();
        this.q.settle();
      }
    }
    return out;
  }

  /** The sender closed the stream: how it ended, or a StreamError saying what was cut short. */
  end(): StreamEnd {
    if (this.failed) throw this.failed;
    if (this.step.kind === 'done') return 'complete';
    // Remus/COLO: once a checkpoint is whole, the primary going away anywhere is a failover to it
    // (xc_domain_restore's remus_failover); what came after it is dropped by the restorer.
    if (this.streamType !== 'plain' && this.checkpointsEnded > 0) return 'failover';
    if (this.step.kind === 'page-data') {
      // As for a record read whole: how much of its body came.
      const got = this.step.length - (this.step.phase === 'pages' ? this.step.left : this.step.length) + this.q.length;
      this.failed = new StreamError('libxc', `Stream truncated: ${got} bytes of PAGE_DATA record body (${this.step.length} bytes)`, this.step.at + RHDR_SIZE);
      throw this.failed;
    }
    const layer: StreamLayer = this.step.kind === 'xl-header' || this.step.kind === 'xl-optdata' ? 'xl'
      : this.step.kind === 'libxl-header' ? 'libxl'
        : this.step.kind === 'libxc-headers' ? 'libxc' : this.step.layer;
    const what = this.step.kind === 'record-body' ? `${this.recName(this.step.layer, this.step.type)} record body (${this.step.need} bytes)`
      : this.step.kind === 'record-header' ? 'record header' : this.step.kind.replace('-', ' ');
    this.failed = new StreamError(layer, `Stream truncated: ${this.q.length} bytes of ${what}`, this.q.offset);
    throw this.failed;
  }

  /** Bytes after the final END (on xl's migration channel, the sender's next message): a copy. */
  trailing(): Uint8Array {
    if (this.step.kind !== 'done') throw new Error('trailing() before the stream is done');
    return copyOf(this.q.takeAll());
  }

  private recName(layer: 'libxl' | 'libxc', type: number): string {
    return layer === 'libxl' ? libxlRecName(type) : libxcRecName(type);
  }

  private fail(layer: StreamLayer, at: number, e: unknown): never {
    if (e instanceof RecordError) throw new StreamError(layer, e.message, at);
    throw e;
  }

  private advance(out: SaveStreamEvent[]): void {
    const step = this.step;
    if (step.kind === 'page-data') {
      this.pageDataStep(step, out);
      return;
    }
    const at = this.q.offset;
    const bytes = this.q.take(step.need);
    switch (step.kind) {
      case 'xl-header': {
        let fixed;
        try {
          fixed = decodeXlSaveHeaderFixed(bytes);
        } catch (e) {
          this.fail('xl', at, e);
        }
        this.step = { kind: 'xl-optdata', need: fixed.optionalDataLen, fixed: { mandatoryFlags: fixed.mandatoryFlags, optionalFlags: fixed.optionalFlags } };
        return;
      }
      case 'xl-optdata':
        try {
          out.push({ layer: 'xl', header: decodeXlOptionalData(step.fixed, bytes) });
        } catch (e) {
          this.fail('xl', at, e);
        }
        this.step = { kind: 'libxl-header', need: LIBXL_HDR_SIZE };
        return;
      case 'libxl-header':
        try {
          out.push({ layer: 'libxl', header: decodeLibxlHeader(bytes) });
        } catch (e) {
          this.fail('libxl', at, e);
        }
        this.step = { kind: 'record-header', need: RHDR_SIZE, layer: 'libxl' };
        return;
      case 'libxc-headers': {
        let imageHeader: ImageHeader;
        let domainHeader: DomainHeader;
        try {
          imageHeader = decodeImageHeader(bytes.subarray(0, IHDR_SIZE));
          domainHeader = decodeDomainHeader(bytes.subarray(IHDR_SIZE));
        } catch (e) {
          this.fail('libxc', at, e);
        }
        this.version = imageHeader.version;
        this.guestType = domainHeader.type;
        out.push({ layer: 'libxc', imageHeader, domainHeader });
        this.step = { kind: 'record-header', need: RHDR_SIZE, layer: 'libxc' };
        return;
      }
      case 'record-header': {
        const { type, length } = decodeRecordHeader(bytes);
        if (length > REC_LENGTH_MAX) {
          throw new StreamError(step.layer, `Record (0x${type.toString(16).padStart(8, '0')}, ${this.recName(step.layer, type)}) length 0x${length.toString(16)} exceeds max (0x${REC_LENGTH_MAX.toString(16)})`, at);
        }
        if (this.streamPageData && step.layer === 'libxc' && type === LibxcRecType.REC_TYPE_PAGE_DATA && length >= 8) {
          this.step = { kind: 'page-data', need: 8, phase: 'count', length, at, next: 0, left: 0 };
          return;
        }
        this.step = { kind: 'record-body', need: roundUp(length), layer: step.layer, type, length, at };
        return;
      }
      case 'record-body': {
        const pad = firstNonZero(bytes.subarray(step.length));
        if (pad >= 0) throw new StreamError(step.layer, `${this.recName(step.layer, step.type)} record: padding containing non0 bytes found`, step.at);
        const body = bytes.subarray(0, step.length);
        this.step = { kind: 'record-header', need: RHDR_SIZE, layer: step.layer };
        if (step.layer === 'libxc') this.libxcRecord(step.type, body, step.at, out);
        else this.libxlRecord(step.type, body, step.at, out);
        return;
      }
      case 'done':
        return;
    }
  }

  /** A streamed PAGE_DATA record (streamPages()): its count, its pfn list, then its pages. */
  private pageDataStep(step: Extract<Step, { kind: 'page-data' }>, out: SaveStreamEvent[]): void {
    switch (step.phase) {
      case 'count': {
        const count = pageDataCount(this.q.peek(8), step.length);
        if (count === undefined) {
          // A record the checks refuse before its pfn list: read whole, it fails as it would.
          this.step = { kind: 'record-body', need: roundUp(step.length), layer: 'libxc', type: LibxcRecType.REC_TYPE_PAGE_DATA, length: step.length, at: step.at };
          return;
        }
        step.phase = 'head';
        step.need = 8 + 8 * count;
        return;
      }
      case 'head': {
        let head: PageDataHead;
        try {
          head = decodePageDataHead(this.q.take(step.need), step.length);
        } catch (e) {
          this.fail('libxc', step.at, e);
        }
        this.checkPageData(head.pfnList, (reason) => {
          throw new StreamError('libxc', reason, step.at);
        });
        out.push({ layer: 'libxc', pageDataHead: head });
        step.left = head.withData * PAGE_SIZE;
        if (step.left === 0) {
          this.step = { kind: 'record-header', need: RHDR_SIZE, layer: 'libxc' };
          return;
        }
        step.phase = 'pages';
        step.need = PAGE_SIZE;
        return;
      }
      case 'pages': {
        // The whole pages in the first chunk as one view; a page cut by a chunk's end on its own.
        const inChunk = Math.floor(this.q.firstChunkLength / PAGE_SIZE) * PAGE_SIZE;
        const n = Math.min(step.left, Math.max(inChunk, PAGE_SIZE));
        out.push({ layer: 'libxc', pageData: { first: step.next, bytes: this.q.take(n) } });
        step.next += n / PAGE_SIZE;
        step.left -= n;
        if (step.left === 0) this.step = { kind: 'record-header', need: RHDR_SIZE, layer: 'libxc' };
        return;
      }
    }
  }

  /** What a PAGE_DATA record needs of the stream before it (both ways of reading one). */
  private checkPageData(pfns: Float64Array, refuse: (reason: string) => never): void {
    // v2 streams have no STATIC_DATA_END; its place is inferred (spec: "v3 compat with v2").
    if (this.version < 3 && !this.staticDataEnd) this.staticDataEnd = true;
    if (!this.staticDataEnd) refuse('No STATIC_DATA_END seen');
    if (this.guestType !== DhdrType.DHDR_TYPE_X86_HVM && !this.p2mFrames) refuse('PAGE_DATA record before X86_PV_P2M_FRAMES');
    if (this.p2mSize !== undefined) {
      const bad = pfns.findIndex((pfn) => pfn >= this.p2mSize!);
      if (bad >= 0) refuse(`pfn 0x${pfns[bad].toString(16)} (index ${bad}) outside domain maximum`);
    }
  }

  private libxlRecord(type: number, body: Uint8Array, at: number, out: SaveStreamEvent[]): void {
    let rec: LibxlRecord;
    try {
      rec = decodeLibxlRecord(type, body);
    } catch (e) {
      this.fail('libxl', at, e);
    }
    const refuse: (reason: string) => never = (reason) => {
      throw new StreamError('libxl', reason, at);
    };
    switch (rec.type) {
      case LibxlRecType.REC_TYPE_LIBXC_CONTEXT:
        if (this.libxcContextSeen) refuse('Second LIBXC_CONTEXT record in stream');
        if (this.inCheckpoint) refuse('LIBXC_CONTEXT record inside a checkpoint');
        this.libxcContextSeen = true;
        this.step = { kind: 'libxc-headers', need: IHDR_SIZE + DHDR_SIZE };
        break;
      case LibxlRecType.REC_TYPE_EMULATOR_XENSTORE_DATA:
      case LibxlRecType.REC_TYPE_EMULATOR_CONTEXT:
        if (this.guestType === undefined) refuse(`${libxlRecName(rec.type)} record before LIBXC_CONTEXT`);
        if (this.guestType !== DhdrType.DHDR_TYPE_X86_HVM) refuse(`Received an ${libxlRecName(rec.type)} record when none was expected (not an HVM guest)`);
        break;
      case LibxlRecType.REC_TYPE_CHECKPOINT_END:
        if (!this.inCheckpoint) refuse('Unexpected CHECKPOINT_END record in stream');
        this.inCheckpoint = false;
        this.checkpointsEnded++;
        this.step = { kind: 'record-header', need: RHDR_SIZE, layer: 'libxc' };
        break;
      case LibxlRecType.REC_TYPE_XENSIM_SEED_XENSTORE:
        // The suspended guest's xenstore state: after its memory and vCPUs, once.
        if (!this.libxcEnded) refuse('XENSIM_SEED_XENSTORE record before the libxc stream ended');
        if (this.seedXenstoreSeen) refuse('Second XENSIM_SEED_XENSTORE record in stream');
        this.seedXenstoreSeen = true;
        break;
      case LibxlRecType.REC_TYPE_CHECKPOINT_STATE:
        refuse('Unexpected CHECKPOINT_STATE record in stream (it belongs on COLO\'s back channel)');
        break;
      case LibxlRecType.REC_TYPE_END:
        if (!this.libxcContextSeen || !this.libxcEnded) refuse('END record before the libxc stream ended');
        if (this.inCheckpoint) refuse('END record inside a checkpoint');
        this.step = { kind: 'done', need: 0 };
        break;
    }
    out.push({ layer: 'libxl', record: rec });
  }

  private libxcRecord(type: number, body: Uint8Array, at: number, out: SaveStreamEvent[]): void {
    let rec: LibxcRecord;
    try {
      rec = decodeLibxcRecord(type, body, this.version);
    } catch (e) {
      this.fail('libxc', at, e);
    }
    const refuse: (reason: string) => never = (reason) => {
      throw new StreamError('libxc', reason, at);
    };
    const hvm = this.guestType === DhdrType.DHDR_TYPE_X86_HVM;
    if (rec.type !== 'optional' && ((hvm && PV_RECORDS.has(rec.type)) || (!hvm && HVM_RECORDS.has(rec.type)))) {
      refuse(`Mandatory record 0x${rec.type.toString(16)} (${libxcRecName(rec.type)}) not handled for an ${hvm ? 'x86 HVM' : 'x86 PV'} domain`);
    }
    const inferStaticDataEnd = (): void => {
      // v2 streams have no STATIC_DATA_END; its place is inferred (spec: "v3 compat with v2").
      if (this.version < 3 && !this.staticDataEnd) this.staticDataEnd = true;
    };
    switch (rec.type) {
      case 'optional':
        break;
      case LibxcRecType.REC_TYPE_STATIC_DATA_END:
        if (this.staticDataEnd) refuse('Multiple STATIC_DATA_END records found');
        if (!hvm && !this.pvWidth) refuse('STATIC_DATA_END before X86_PV_INFO');
        this.staticDataEnd = true;
        break;
      case LibxcRecType.REC_TYPE_X86_PV_INFO:
        if (this.pvWidth) refuse('Already received X86_PV_INFO record');
        if (this.staticDataEnd) refuse('X86_PV_INFO record after STATIC_DATA_END');
        this.pvWidth = rec.guestWidth;
        break;
      case LibxcRecType.REC_TYPE_X86_CPUID_POLICY:
      case LibxcRecType.REC_TYPE_X86_MSR_POLICY: {
        const cpuid = rec.type === LibxcRecType.REC_TYPE_X86_CPUID_POLICY;
        if (cpuid ? this.cpuidPolicy : this.msrPolicy) refuse(`Duplicate ${libxcRecName(rec.type)} record`);
        if (this.staticDataEnd) refuse(`${libxcRecName(rec.type)} record after STATIC_DATA_END`);
        if (cpuid) this.cpuidPolicy = true;
        else this.msrPolicy = true;
        break;
      }
      case LibxcRecType.REC_TYPE_X86_PV_P2M_FRAMES:
        if (!this.pvWidth) refuse('Not yet received X86_PV_INFO record');
        inferStaticDataEnd();
        if (!this.staticDataEnd) refuse('No STATIC_DATA_END seen');
        {
          const frames = p2mFrameCount(rec.startPfn, rec.endPfn, this.pvWidth);
          if (rec.p2mPfns.length !== frames) {
            refuse(`X86_PV_P2M_FRAMES record wrong size: start_pfn 0x${rec.startPfn.toString(16)}, end_pfn 0x${rec.endPfn.toString(16)}, length ${8 + 8 * rec.p2mPfns.length}, expected 8 + ${frames} * 8`);
          }
        }
        this.p2mFrames = true;
        break;
      case LibxcRecType.REC_TYPE_PAGE_DATA:
        this.checkPageData(rec.pfnList ?? Float64Array.from(rec.pfns, (p) => p.pfn), refuse);
        break;
      case LibxcRecType.REC_TYPE_X86_PV_VCPU_BASIC:
      case LibxcRecType.REC_TYPE_X86_PV_VCPU_EXTENDED:
      case LibxcRecType.REC_TYPE_X86_PV_VCPU_XSAVE:
      case LibxcRecType.REC_TYPE_X86_PV_VCPU_MSRS:
        if (!this.pvWidth) refuse('Not yet received X86_PV_INFO record');
        if (!this.p2mFrames) refuse(`${libxcRecName(rec.type)} record before X86_PV_P2M_FRAMES`);
        if (this.maxVcpus !== undefined && rec.vcpuId >= this.maxVcpus) refuse(`${libxcRecName(rec.type)} record vcpu_id (${rec.vcpuId}) exceeds domain max (${this.maxVcpus - 1})`);
        {
          const problem = pvVcpuBlobProblem(rec.type, this.pvWidth, rec.context.length);
          if (problem) refuse(problem);
        }
        if (rec.type === LibxcRecType.REC_TYPE_X86_PV_VCPU_BASIC && rec.vcpuId === 0) this.vcpu0Basic = true;
        break;
      case LibxcRecType.REC_TYPE_HVM_CONTEXT:
        this.hvmContext = true;
        break;
      case LibxcRecType.REC_TYPE_CHECKPOINT:
        if (this.streamType === 'plain') refuse('Found checkpoint in non-checkpointed stream');
        this.requireConsistentState(refuse);
        if (this.format !== 'libxc') {
          // libxc hands the fd back to libxl, which reads its records up to CHECKPOINT_END.
          this.inCheckpoint = true;
          this.step = { kind: 'record-header', need: RHDR_SIZE, layer: 'libxl' };
        } else {
          this.checkpointsEnded++;
        }
        break;
      case LibxcRecType.REC_TYPE_END:
        this.requireConsistentState(refuse);
        this.libxcEnded = true;
        this.step = this.format === 'libxc' ? { kind: 'done', need: 0 } : { kind: 'record-header', need: RHDR_SIZE, layer: 'libxl' };
        break;
      case LibxcRecType.REC_TYPE_TOOLSTACK:
      case LibxcRecType.REC_TYPE_CHECKPOINT_DIRTY_PFN_LIST:
        refuse(`Mandatory record 0x${rec.type.toString(16)} (${libxcRecName(rec.type)}) not handled`);
        break;
      case LibxcRecType.REC_TYPE_SHARED_INFO:
        if (!this.pvWidth) refuse('Not yet received X86_PV_INFO record');
        break;
      case LibxcRecType.REC_TYPE_VERIFY:
        // The pages after VERIFY are compared whole with what was restored.
        this.streamPageData = false;
        break;
      case LibxcRecType.REC_TYPE_X86_TSC_INFO:
      case LibxcRecType.REC_TYPE_HVM_PARAMS:
        break;
    }
    out.push({ layer: 'libxc', record: rec });
  }

  /** What stream_complete() needs before the domain can run: static data and the vCPU state. */
  private requireConsistentState(refuse: (reason: string) => never): void {
    if (!this.staticDataEnd) refuse('No STATIC_DATA_END seen');
    if (this.guestType === DhdrType.DHDR_TYPE_X86_HVM && !this.hvmContext) refuse('HVM_CONTEXT record not received');
    if (this.guestType === DhdrType.DHDR_TYPE_X86_PV && !this.vcpu0Basic) refuse('Sender didn\'t send vcpu0\'s basic state');
  }
}
