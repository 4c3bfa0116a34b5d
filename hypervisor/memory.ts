// Machine frames. A frame is a 4 KiB view of a SharedArrayBuffer. Single frames (the default
// guests, shared_info, grant tables) each have a SharedArrayBuffer of their own, so handing one
// page to a worker (a grant map) gives it that page and nothing else. A big guest's memory comes
// in extents: one SharedArrayBuffer of up to EXTENT_PAGES frames, all owned by that domain, each
// frame a view at its offset (a whole extent's buffer also holds log-dirty's scratch past its
// frames, page-fingerprint.ts) - 262,144 buffers of 4 KiB each for a 1 GiB guest would cost far
// more to create and hold. A worker handed one frame of an extent holds the whole buffer (only
// the frame's view is made from it): the isolation is per domain there, not per page.
//
// Xen owns all of the machine's RAM from boot; populating a guest takes pages from its heap and
// costs no page fault. Here a new buffer's pages are faulted in by the host OS on first touch
// (about 0.3 GB/s on this machine, far below a copy into touched memory), so a host can populate
// a heap at boot (`populate`): whole extents, touched once, handed out by allocateExtent and
// taken back when their last frame is freed. A whole extent's buffer is a shared WebAssembly
// memory's, which log-dirty fingerprints with SIMD (page-fingerprint.ts).
import assert from 'node:assert/strict';
import { fingerprintableBuffer } from './page-fingerprint.ts';
import { XEN_PAGE_SIZE, type DomId } from './public/xen.ts';

declare const mfnBrand: unique symbol;
/** Machine frame number. */
export type Mfn = number & { readonly [mfnBrand]: true };
declare const gfnBrand: unique symbol;
/** Guest frame number: an index into one domain's own memory. */
export type Gfn = number & { readonly [gfnBrand]: true };

/** Frames per extent: 2 MiB, a superpage (PAGE_ORDER_2M). */
export const EXTENT_PAGES = 512;

/** The mfn of a heap frame not yet handed out (none: mfns are given in allocation order). */
const HEAP_MFN = -1 as Mfn;

export class Frame {
  /** Mappings of this frame by other domains (grant maps); a dead owner lingers while > 0. */
  foreignRefs = 0;
  private view: Uint8Array | undefined = undefined;

  constructor(
    /**
     * Fixed when the frame is first handed out (a heap's frames are made at boot, before their
     * mfns are known: mfns go in allocation order, as before) and never changed after.
     */
    public mfn: Mfn,
    readonly sab: SharedArrayBuffer,
    public owner: DomId | undefined,
    /** Byte offset of this frame in `sab` (0 for a frame with a buffer of its own). */
    readonly offset = 0,
  ) {
    if (offset % XEN_PAGE_SIZE !== 0 || offset + XEN_PAGE_SIZE > sab.byteLength) throw new RangeError(`frame at offset ${offset} of a ${sab.byteLength}-byte buffer`);
  }

  /**
   * The frame's 4 KiB, made on first use: a view of a shared buffer costs more to make (and to
   * collect) than a page's copy, and most frames of a big guest are never looked at one by one.
   */
  get bytes(): Uint8Array {
    return (this.view ??= new Uint8Array(this.sab, this.offset, XEN_PAGE_SIZE));
  }

  /** Part of a multi-frame extent (never reused for another domain: its buffer is shared). */
  get inExtent(): boolean {
    return this.sab.byteLength > XEN_PAGE_SIZE;
  }
}

/** The host's frame allocator. */
export class MachineMemory {
  private nextMfn = 0x1000;
  /** Live single frames by mfn (an extent's frames are in `extents`). */
  private readonly frames = new Map<number, Frame>();
  private readonly free: Frame[] = [];
  /**
   * Whole free extents, their pages already touched (Xen's heap): never used, so still zero; each
   * with its frames, made at boot as Xen's frame table is - a big guest's build then makes no
   * object per page (262,144 a GiB cost it more in garbage collection than anything else).
   */
  private readonly heap: { readonly sab: SharedArrayBuffer; readonly frames: Frame[] }[] = [];
  /** Whole free extents a dead domain left: zeroed when handed out again. */
  private readonly heapDirty: SharedArrayBuffer[] = [];
  /**
   * Each extent handed out, by buffer: its frames and how many are live. A whole extent goes back
   * to the heap with its last frame; a smaller one is dropped. (No map entry per frame: a big
   * guest's build and teardown would pay one per page.)
   */
  private readonly extents = new Map<SharedArrayBuffer, { readonly frames: readonly Frame[]; live: number }>();
  private extentFramesLive = 0;

  constructor(readonly totalFrames = 1 << 22) {}

  get allocated(): number {
    return this.frames.size + this.extentFramesLive;
  }

  /** Extents in the heap, ready to hand out. */
  get heapExtents(): number {
    return this.heap.length + this.heapDirty.length;
  }

  /**
   * Puts `extents` whole extents in the heap, each page written once so the host OS has
   * backed it (what Xen's boot-time heap is: RAM it owns).
   */
  populate(extents: number): void {
    if (!Number.isInteger(extents) || extents < 0) throw new RangeError(`heap of ${extents} extents`);
    for (let i = 0; i < extents; i++) {
      const sab = fingerprintableBuffer(EXTENT_PAGES * XEN_PAGE_SIZE);
      // The pages only: past them is the fingerprinter's scratch (not the guest's, left untouched).
      const words = new Int32Array(sab, 0, (EXTENT_PAGES * XEN_PAGE_SIZE) / 4);
      for (let w = 0; w < words.length; w += XEN_PAGE_SIZE / 4) words[w] = 0;
      const frames = new Array<Frame>(EXTENT_PAGES);
      for (let k = 0; k < EXTENT_PAGES; k++) frames[k] = new Frame(HEAP_MFN, sab, undefined, k * XEN_PAGE_SIZE);
      this.heap.push({ sab, frames });
    }
  }

  allocate(owner: DomId): Frame | undefined {
    let f = this.free.pop();
    if (f) {
      f.bytes.fill(0);
      f.owner = owner;
      f.foreignRefs = 0;
    } else {
      if (this.allocated >= this.totalFrames) return undefined;
      f = new Frame(this.nextMfn++ as Mfn, new SharedArrayBuffer(XEN_PAGE_SIZE), owner);
    }
    this.frames.set(f.mfn, f);
    return f;
  }

  /**
   * `count` (1..EXTENT_PAGES) zeroed frames at consecutive mfns in one new buffer, all `owner`'s
   * (alloc_domheap_pages of an order > 0). A new buffer is zero: nothing of a dead domain's.
   */
  allocateExtent(owner: DomId, count: number): readonly Frame[] | undefined {
    if (!Number.isInteger(count) || count < 1 || count > EXTENT_PAGES) throw new RangeError(`extent of ${count} frames`);
    if (this.allocated + count > this.totalFrames) return undefined;
    // A whole extent comes from the heap when it has one (zeroed: nothing of a dead domain's).
    let sab: SharedArrayBuffer;
    let out: Frame[];
    if (count === EXTENT_PAGES && this.heapDirty.length === 0 && this.heap.length > 0) {
      // The boot-time frames, given their mfns now (a dead domain's extents get new Frames:
      // its old ones may still be held, by a grant map's mapper or a log-dirty table).
      ({ sab, frames: out } = this.heap.pop()!);
      for (let i = 0; i < count; i++) {
        out[i].mfn = this.nextMfn++ as Mfn;
        out[i].owner = owner;
      }
    } else {
      if (count === EXTENT_PAGES && this.heapDirty.length > 0) {
        sab = this.heapDirty.pop()!;
        new Uint8Array(sab, 0, EXTENT_PAGES * XEN_PAGE_SIZE).fill(0);
      } else {
        sab = count === EXTENT_PAGES ? fingerprintableBuffer(EXTENT_PAGES * XEN_PAGE_SIZE) : new SharedArrayBuffer(count * XEN_PAGE_SIZE);
      }
      out = new Array<Frame>(count);
      for (let i = 0; i < count; i++) out[i] = new Frame(this.nextMfn++ as Mfn, sab, owner, i * XEN_PAGE_SIZE);
    }
    this.extents.set(sab, { frames: out, live: count });
    this.extentFramesLive += count;
    // The allocator's own list (read-only to the caller: no copy of it made).
    return out;
  }

  get(mfn: number): Frame | undefined {
    const f = this.frames.get(mfn);
    if (f) return f;
    for (const e of this.extents.values()) {
      const g = e.frames[mfn - e.frames[0].mfn];
      if (g?.mfn === mfn) return g.owner === undefined ? undefined : g;
    }
    return undefined;
  }

  /** release() of each frame (a dead domain's teardown: an extent's frames come in a row). */
  releaseAll(frames: readonly (Frame | undefined)[]): void {
    let sab: SharedArrayBuffer | undefined;
    let e: ReturnType<typeof this.extents.get>;
    for (let i = 0; i < frames.length; i++) {
      const f = frames[i];
      if (!f) continue;
      if (f.sab !== sab) e = this.extents.get((sab = f.sab));
      this.releaseIn(f, e);
    }
  }

  release(f: Frame): void {
    this.releaseIn(f, this.extents.get(f.sab));
  }

  /** Releases f, of extent e (undefined for a single frame). */
  private releaseIn(f: Frame, e: ReturnType<typeof this.extents.get>): void {
    if (!e) {
      if (this.frames.get(f.mfn) !== f) return;
      this.frames.delete(f.mfn);
      f.owner = undefined;
      this.free.push(f);
      return;
    }
    // An extent's frame shares its buffer with the owner's other frames: handing it to another
    // domain would hand it those too, so it is dropped (the buffer goes with its last frame).
    if (f.owner === undefined || e.frames[f.offset / XEN_PAGE_SIZE] !== f) return;
    f.owner = undefined;
    this.extentFramesLive--;
    assert(e.live > 0, 'extent frame count underflow');
    if (--e.live > 0) return;
    this.extents.delete(f.sab);
    // A whole extent whose frames are all free again goes back to the heap.
    if (e.frames.length === EXTENT_PAGES) this.heapDirty.push(f.sab);
  }
}
