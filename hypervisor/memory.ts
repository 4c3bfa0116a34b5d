// Machine frames. A frame is a 4 KiB view of a SharedArrayBuffer. Single frames (the default
// guests, shared_info, grant tables) each have a SharedArrayBuffer of their own, so handing one
// page to a worker (a grant map) gives it that page and nothing else. A big guest's memory comes
// in extents: one SharedArrayBuffer of up to EXTENT_PAGES frames, all owned by that domain, each
// frame a view at its offset - 262,144 buffers of 4 KiB each for a 1 GiB guest would cost far
// more to create and hold. A worker handed one frame of an extent holds the whole buffer (only
// the frame's view is made from it): the isolation is per domain there, not per page.
import { XEN_PAGE_SIZE, type DomId } from './public/xen.ts';

declare const mfnBrand: unique symbol;
/** Machine frame number. */
export type Mfn = number & { readonly [mfnBrand]: true };
declare const gfnBrand: unique symbol;
/** Guest frame number: an index into one domain's own memory. */
export type Gfn = number & { readonly [gfnBrand]: true };

/** Frames per extent: 2 MiB, a superpage (PAGE_ORDER_2M). */
export const EXTENT_PAGES = 512;

export class Frame {
  readonly bytes: Uint8Array;
  /** Mappings of this frame by other domains (grant maps); a dead owner lingers while > 0. */
  foreignRefs = 0;

  constructor(
    readonly mfn: Mfn,
    readonly sab: SharedArrayBuffer,
    public owner: DomId | undefined,
    /** Byte offset of this frame in `sab` (0 for a frame with a buffer of its own). */
    readonly offset = 0,
  ) {
    if (offset % XEN_PAGE_SIZE !== 0 || offset + XEN_PAGE_SIZE > sab.byteLength) throw new RangeError(`frame at offset ${offset} of a ${sab.byteLength}-byte buffer`);
    this.bytes = new Uint8Array(sab, offset, XEN_PAGE_SIZE);
  }

  /** Part of a multi-frame extent (never reused for another domain: its buffer is shared). */
  get inExtent(): boolean {
    return this.sab.byteLength > XEN_PAGE_SIZE;
  }
}

/** The host's frame allocator. */
export class MachineMemory {
  private nextMfn = 0x1000;
  private readonly frames = new Map<number, Frame>();
  private readonly free: Frame[] = [];

  constructor(readonly totalFrames = 1 << 22) {}

  get allocated(): number {
    return this.frames.size;
  }

  allocate(owner: DomId): Frame | undefined {
    let f = this.free.pop();
    if (f) {
      f.bytes.fill(0);
      f.owner = owner;
      f.foreignRefs = 0;
    } else {
      if (this.frames.size >= this.totalFrames) return undefined;
      f = new Frame(this.nextMfn++ as Mfn, new SharedArrayBuffer(XEN_PAGE_SIZE), owner);
    }
    this.frames.set(f.mfn, f);
    return f;
  }

  /**
   * `count` (1..EXTENT_PAGES) zeroed frames at consecutive mfns in one new buffer, all `owner`'s
   * (alloc_domheap_pages of an order > 0). A new buffer is zero: nothing of a dead domain's.
   */
  allocateExtent(owner: DomId, count: number): Frame[] | undefined {
    if (!Number.isInteger(count) || count < 1 || count > EXTENT_PAGES) throw new RangeError(`extent of ${count} frames`);
    if (this.frames.size + count > this.totalFrames) return undefined;
    const sab = new SharedArrayBuffer(count * XEN_PAGE_SIZE);
    const out: Frame[] = [];
    for (let i = 0; i < count; i++) {
      const f = new Frame(this.nextMfn++ as Mfn, sab, owner, i * XEN_PAGE_SIZE);
      this.frames.set(f.mfn, f);
      out.push(f);
    }
    return out;
  }

  get(mfn: number): Frame | undefined {
    return this.frames.get(mfn);
  }

  release(f: Frame): void {
    if (this.frames.get(f.mfn) !== f) return;
    this.frames.delete(f.mfn);
    f.owner = undefined;
    // An extent's frame shares its buffer with the owner's other frames: handing it to another
    // domain would hand it those too, so it is dropped (the buffer goes with its last frame).
    if (!f.inExtent) this.free.push(f);
  }
}
