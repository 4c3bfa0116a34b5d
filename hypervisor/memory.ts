// Machine frames. Each 4 KiB frame is its own SharedArrayBuffer, so handing one page to a
// worker (a grant map) gives it that page and nothing else.
import { XEN_PAGE_SIZE, type DomId } from './public/xen.ts';

declare const mfnBrand: unique symbol;
/** Machine frame number. */
export type Mfn = number & { readonly [mfnBrand]: true };
declare const gfnBrand: unique symbol;
/** Guest frame number: an index into one domain's own memory. */
export type Gfn = number & { readonly [gfnBrand]: true };

export class Frame {
  readonly bytes: Uint8Array;
  /** Mappings of this frame by other domains (grant maps); a dead owner lingers while > 0. */
  foreignRefs = 0;

  constructor(
    readonly mfn: Mfn,
    readonly sab: SharedArrayBuffer,
    public owner: DomId | undefined,
  ) {
    this.bytes = new Uint8Array(sab);
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

  get(mfn: number): Frame | undefined {
    return this.frames.get(mfn);
  }

  release(f: Frame): void {
    if (this.frames.get(f.mfn) !== f) return;
    this.frames.delete(f.mfn);
    f.owner = undefined;
    this.free.push(f);
  }
}
