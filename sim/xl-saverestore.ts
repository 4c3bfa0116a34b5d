// The libxc half of `xl save` / `xl restore` (xg_sr_save.c, xg_sr_restore.c) against the host's
// domains: a suspended domain's memory, shared_info and vCPU state as a SaveImage, and a restored
// image's pages put into a new domain's frames. xl's own half (the suspend request, the config,
// the devices) is in xl.ts; the stream's encoding is domains/dom0/toolstack/migration.
import { createHash } from 'node:crypto';
import type { Domain } from '../hypervisor/domain.ts';
import { DhdrType, MAX_BATCH_SIZE, PAGE_SIZE, VCPU_GUEST_CONTEXT_SIZE, XenDomctlPfinfo } from '../domains/dom0/toolstack/migration/libxc-stream.ts';
import type { RestorePageSink, RestoredImage } from '../domains/dom0/toolstack/migration/restore-image.ts';
import { type CheckpointState, type GuestPage, type MutableGuestPage, SaveStreamWriter, newGuestPage, type SaveStreamWriterOptions, type StreamSink } from '../domains/dom0/toolstack/migration/stream-writer.ts';
import { HvmParam } from '../hypervisor/public/hvm/params.ts';

/** vcpu_guest_context.flags: VGCF_in_kernel | VGCF_online (public/arch-x86/xen.h). */
const VGCF_IN_KERNEL = 1n << 2n;
const VGCF_ONLINE = 1n << 5n;
/** Offset of flags in vcpu_guest_context_x86_64 (after the 512-byte fpu_ctxt). */
const VGC_FLAGS_OFFSET = 512;
/** xensim's guest clock counts nanoseconds: its TSC is a 1 GHz one. */
const TSC_KHZ = 1_000_000;
/** TSC_MODE_DEFAULT. */
const TSC_MODE_DEFAULT = 0;
/**
 * sizeof(struct xen_domctl_ext_vcpucontext) on x86-64 (vcpu, size, the syscall32/sysenter
 * callbacks, the vMCE state): XEN_DOMCTL_get_ext_vcpucontext's blob, which save sends whole.
 */
const EXT_VCPUCONTEXT_SIZE = 64;
/** A 64-bit PV guest's p2m holds 512 entries per frame. */
const P2M_PER_FRAME = PAGE_SIZE / 8;

/** sha256 over (pfn, contents) of every populated pfn, ascending: equal memory, equal hash. */
export function memoryHash(pages: Iterable<readonly [number, Uint8Array]>): string {
  const h = createHash('sha256');
  const pfn = new DataView(new ArrayBuffer(8));
  for (const [n, bytes] of [...pages].sort((a, b) => a[0] - b[0])) {
    pfn.setBigUint64(0, BigInt(n), true);
    h.update(new Uint8Array(pfn.buffer));
    h.update(bytes);
  }
  return h.digest('hex');
}

/** A domain's populated frames, by pfn (live views, not copies). */
export function domainFrames(d: Domain): [number, Uint8Array][] {
  const out: [number, Uint8Array][] = [];
  d.p2m.forEach((f, pfn) => {
    if (f) out.push([pfn, f.bytes]);
  });
  return out;
}

export interface SavedDomain {
  /** The writer's counts (bytes, records, pages). */
  readonly stats: SaveStreamWriter['stats'];
  /** memoryHash() of the pages sent, taken while the domain was suspended (unless not asked for). */
  readonly hash: string | undefined;
  /** Populated pages sent. */
  readonly pages: number;
}

/** What the stream says before any page: the guest type and, for PV, its p2m's shape. */
export function saveStreamOptions(d: Domain, config: string): SaveStreamWriterOptions {
  if (d.hvm) return { guestType: DhdrType.DHDR_TYPE_X86_HVM, config };
  const p2mSize = d.p2m.length;
  // xensim guests keep no p2m list in their memory (the host's p2m is the only one), so the
  // X86_PV_P2M_FRAMES record names the frames just past the last pfn, where such a list would go;
  // xensim's restore does not read them.
  const frames = Math.floor((p2mSize - 1) / P2M_PER_FRAME) + 1;
  return {
    guestType: DhdrType.DHDR_TYPE_X86_PV,
    config,
    pvInfo: { guestWidth: 8, ptLevels: 4 },
    p2mFrames: { startPfn: 0, endPfn: p2mSize - 1, p2mPfns: Array.from({ length: frames }, (_, i) => BigInt(p2mSize + i)) },
  };
}

/**
 * The suspended domain's state after its last pages (end_of_checkpoint()): TSC, then shared_info
 * and vCPU 0's context (PV; the simulator runs one vCPU per domain) or HVM_CONTEXT and the
 * non-zero params write_hvm_params() sends (HVM).
 */
export function suspendedState(d: Domain, opts: { nowNs: number; store: number; console: number }): CheckpointState {
  if (!d.isShutDown) throw new Error(`domain ${d.domid} is not suspended`);
  const tsc = { mode: TSC_MODE_DEFAULT, khz: TSC_KHZ, nsec: BigInt(Math.max(0, Math.floor(opts.nowNs))), incarnation: 0 };
  if (d.hvm) {
    // Here the store and console pfns, the only params xensim's HVM guests have.
    return {
      type: DhdrType.DHDR_TYPE_X86_HVM, tsc, hvmContext: hvmContextBlob(),
      hvmParams: [
        { index: BigInt(HvmParam.HVM_PARAM_STORE_PFN), value: BigInt(opts.store) },
        { index: BigInt(HvmParam.HVM_PARAM_CONSOLE_PFN), value: BigInt(opts.console) },
      ],
    };
  }
  const basic = new Uint8Array(VCPU_GUEST_CONTEXT_SIZE[8]);
  // The simulator has no register file: the context says only that vCPU 0 is up, in kernel mode,
  // with rax (SCHEDOP_shutdown's return) 0 - a new domain.
  new DataView(basic.buffer).setBigUint64(VGC_FLAGS_OFFSET, VGCF_IN_KERNEL | VGCF_ONLINE, true);
  // No callbacks registered, no vMCE: vcpu 0 and the size, the rest zero.
  const extended = new Uint8Array(EXT_VCPUCONTEXT_SIZE);
  new DataView(extended.buffer).setUint32(4, EXT_VCPUCONTEXT_SIZE, true);
  return { type: DhdrType.DHDR_TYPE_X86_PV, tsc, sharedInfo: d.sharedInfo!.bytes.slice(), vcpus: [{ vcpuId: 0, basic, extended }] };
}

/**
 * A pfn's page as the saver sends it: its frame in place - its offset in a view of the frame's
 * whole buffer, so an extent's pages are copied into the record a run at a time (the stream
 * writer copies at once) - or XTAB for a hole.
 */
export function savedPage(d: Domain, pfn: number): GuestPage {
  const f = d.p2m[pfn];
  return f ? { pfn, mapping: bufferBytes(f.sab), offset: f.offset } : { pfn, type: XenDomctlPfinfo.XEN_DOMCTL_PFINFO_XTAB };
}

/**
 * savedPage() into a page object of the caller's (reused batch after batch), for the pfns of one
 * domain: the view of an extent's buffer is looked up once for its run of pages.
 */
export function savedPageFiller(d: Domain): (pfn: number, page: MutableGuestPage) => void {
  let sab: SharedArrayBuffer | undefined;
  let whole: Uint8Array | undefined;
  return (pfn, page) => {
    const f = d.p2m[pfn];
    page.pfn = pfn;
    page.bytes = undefined;
    if (f) {
      if (f.sab !== sab) whole = bufferBytes((sab = f.sab));
      page.type = undefined;
      page.mapping = whole;
      page.offset = f.offset;
    } else {
      page.type = XenDomctlPfinfo.XEN_DOMCTL_PFINFO_XTAB;
      page.mapping = undefined;
      page.offset = undefined;
    }
  };
}

/** copyUnaligned()'s bounce buffer: small enough to stay in the cache between its two copies. */
const BOUNCE = new Uint8Array(64 * 1024);

/**
 * A copy into a shared buffer (a frame's) from bytes not 8-aligned as the frame is (a stream's
 * pages where a socket read cut them): V8 copies into shared memory word by word only when both
 * sides are aligned alike, else byte by byte, several times slower - so through an aligned buffer
 * of our own.
 */
function copyUnaligned(to: Uint8Array, at: number, from: Uint8Array): void {
  for (let done = 0; done < from.length; done += BOUNCE.length) {
    const n = Math.min(BOUNCE.length, from.length - done);
    BOUNCE.set(from.subarray(done, done + n));
    to.set(n === BOUNCE.length ? BOUNCE : BOUNCE.subarray(0, n), at + done);
  }
}

/**
 * xl save's stream of a suspended domain, written to `sink` as it is made: one round with every
 * pfn of its p2m (holes as XTAB) in batches straight from its frames, then its suspended state.
 * Nothing runs in the domain meanwhile, so the stream is memory as at suspend; with `hash` (the
 * default) the result has its memoryHash(). (No device model runs for xensim's HVM guests - the
 * ACPI registers are the hypervisor's model: no emulator records, as for a PVH guest.)
 */
export function saveDomain(
  d: Domain, opts: { config: string; nowNs: number; store: number; console: number; hash?: boolean }, sink: StreamSink,
): SavedDomain {
  if (!d.isShutDown) throw new Error(`domain ${d.domid} is not suspended`);
  const w = new SaveStreamWriter(sink, saveStreamOptions(d, opts.config));
  w.start();
  let pages = 0;
  // One set of page objects for every batch: the writer copies a batch's pages at once.
  const batch: MutableGuestPage[] = [];
  const fill = savedPageFiller(d);
  for (let first = 0; first < d.p2m.length; first += MAX_BATCH_SIZE) {
    const n = Math.min(MAX_BATCH_SIZE, d.p2m.length - first);
    batch.length = Math.min(batch.length, n);
    for (let j = 0; j < n; j++) {
      const p = (batch[j] ??= newGuestPage());
      fill(first + j, p);
      if (p.mapping) pages++;
    }
    w.sendPages(batch);
  }
  const hash = opts.hash === false ? undefined : memoryHash(domainFrames(d));
  w.endOfCheckpoint(suspendedState(d, opts));
  w.finish();
  return { stats: w.stats, hash, pages };
}

/** HVM_SAVE_MAGIC and HVM_SAVE_VERSION (public/arch-x86/hvm/save.h). */
const HVM_FILE_MAGIC = 0x54381286;
const HVM_FILE_VERSION = 1;
/** HVM_SAVE_CODE(HEADER) and HVM_SAVE_CODE(END). */
const HVM_SAVE_CODE_HEADER = 1;
const HVM_SAVE_CODE_END = 0;

/**
 * XEN_DOMCTL_gethvmcontext's blob as xensim can honestly give it: hvm_save_descriptor + struct
 * hvm_save_header (magic, version, changeset 0, cpuid 0, gtsc_khz), then END. The simulator has
 * no vCPU registers, LAPIC, PIC or PIT to save, so there are no records between the two.
 */
export function hvmContextBlob(): Uint8Array {
  const b = new Uint8Array(8 + 24 + 8);
  const v = new DataView(b.buffer);
  v.setUint16(0, HVM_SAVE_CODE_HEADER, true);
  v.setUint16(2, 0, true);
  v.setUint32(4, 24, true);
  v.setUint32(8, HVM_FILE_MAGIC, true);
  v.setUint32(12, HVM_FILE_VERSION, true);
  v.setBigUint64(16, 0n, true);
  v.setUint32(24, 0, true);
  v.setUint32(28, TSC_KHZ, true);
  v.setUint16(32, HVM_SAVE_CODE_END, true);
  return b;
}

/** The pfn count a restored image needs (its highest pfn + 1). */
export function imageP2mSize(img: RestoredImage): number {
  let max = -1;
  for (const pfn of img.pageTypes.keys()) max = Math.max(max, pfn);
  return max + 1;
}

/**
 * xc_domain_restore's memory part: every page of the image into the new domain's frames (which
 * the builder populated, zeroed). A pfn the domain lacks, or a populated pfn the image does not
 * fill, is refused: the new domain must have exactly the saved one's memory.
 */
export function restoreMemory(d: Domain, img: RestoredImage, opts: { hash?: boolean } = {}): string | undefined {
  checkImageFits(d, img);
  for (const [pfn, bytes] of img.pages) {
    const f = d.p2m[pfn];
    if (!f) throw new Error(`pfn 0x${pfn.toString(16)} of the image is not populated in domain ${d.domid}`);
    f.bytes.set(bytes);
  }
  d.p2m.forEach((f, pfn) => {
    if (f && !img.pages.has(pfn)) throw new Error(`pfn 0x${pfn.toString(16)} of domain ${d.domid} has no page in the image`);
  });
  return opts.hash === false ? undefined : memoryHash(domainFrames(d));
}

/** The image's domain type and (PV) width against the domain it is restored into. */
function checkImageFits(d: Domain, img: RestoredImage): void {
  if (img.domainHeader?.type === DhdrType.DHDR_TYPE_X86_PV) {
    if (img.pvInfo?.guestWidth !== 8) throw new Error('only 64-bit PV images are restorable by xensim');
    if (d.hvm) throw new Error('a PV image for an HVM domain');
  } else if (img.domainHeader?.type === DhdrType.DHDR_TYPE_X86_HVM) {
    const magic = img.hvmContext && img.hvmContext.length >= 16 ? new DataView(img.hvmContext.buffer, img.hvmContext.byteOffset).getUint32(8, true) : undefined;
    if (magic !== HVM_FILE_MAGIC) throw new Error('HVM image without a valid HVM context header');
    if (!d.hvm) throw new Error('an HVM image for a PV domain');
  } else {
    throw new Error('the image has no domain header');
  }
}

/** One Uint8Array over each extent's whole buffer, made once. */
const wholeViews = new WeakMap<SharedArrayBuffer, Uint8Array>();
function bufferBytes(sab: SharedArrayBuffer): Uint8Array {
  let v = wholeViews.get(sab);
  if (!v) wholeViews.set(sab, (v = new Uint8Array(sab)));
  return v;
}

/**
 * xc_domain_restore's memory part as the stream arrives (process_page_data()): each page goes
 * into the new domain's frame at once, so the receiver holds no copy of the guest's memory. A pfn
 * the domain lacks is refused at once; finish() refuses a populated pfn that got no page.
 */
export class FrameFiller implements RestorePageSink {
  private readonly filled: Uint8Array;

  constructor(private readonly d: Domain) {
    this.filled = new Uint8Array(d.p2m.length);
  }

  put(pfn: number, src: Uint8Array, offset: number): void {
    this.putRun(pfn, 1, src, offset);
  }

  /**
   * Pages pfn..pfn+count-1, back to back in src from offset: frames consecutive in one buffer (a
   * big guest's extents) take their part in one copy - a view per 4 KiB page costs more than its
   * copy.
   */
  putRun(pfn: number, count: number, src: Uint8Array, offset: number): void {
    for (let i = 0; i < count;) {
      const f = this.d.p2m[pfn + i];
      if (!f) throw new Error(`pfn 0x${(pfn + i).toString(16)} of the image is not populated in domain ${this.d.domid}`);
      let n = 1;
      while (i + n < count) {
        const g = this.d.p2m[pfn + i + n];
        if (!g || g.sab !== f.sab || g.offset !== f.offset + n * PAGE_SIZE) break;
        n++;
      }
      const from = offset + i * PAGE_SIZE;
      if ((src.byteOffset + from) & 7) copyUnaligned(bufferBytes(f.sab), f.offset, src.subarray(from, from + n * PAGE_SIZE));
      else if (n === 1) f.bytes.set(src.subarray(from, from + PAGE_SIZE));
      else bufferBytes(f.sab).set(src.subarray(from, from + n * PAGE_SIZE), f.offset);
      this.filled.fill(1, pfn + i, pfn + i + n);
      i += n;
    }
  }

  get(pfn: number): Uint8Array | undefined {
    return this.filled[pfn] ? this.d.p2m[pfn]?.bytes : undefined;
  }

  drop(pfn: number): void {
    if (pfn < this.filled.length) this.filled[pfn] = 0;
  }

  /** The stream is complete: the image must fit the domain and have filled every frame. */
  finish(img: RestoredImage, opts: { hash?: boolean } = {}): string | undefined {
    checkImageFits(this.d, img);
    this.d.p2m.forEach((f, pfn) => {
      if (f && !this.filled[pfn]) throw new Error(`pfn 0x${pfn.toString(16)} of domain ${this.d.domid} has no page in the image`);
    });
    return opts.hash === false ? undefined : memoryHash(domainFrames(this.d));
  }

  /** Pages filled (the pages of the image). */
  get pages(): number {
    let n = 0;
    for (let i = 0; i < this.filled.length; i++) n += this.filled[i];
    return n;
  }
}
