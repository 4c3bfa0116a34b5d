// Log-dirty mode (xen/arch/x86/mm/paging.c): while a domain is saved live, which of its pages
// changed since the saver last looked (XEN_DOMCTL_shadow_op).
//
// Xen write-protects the guest's page tables and sets a bit in the dirty bitmap on the first
// write fault to each page (and marks the pages it writes itself: grant copies, unmapped writable
// grant maps). xensim's guests write their frames directly in SharedArrayBuffers, with no trap to
// take, so the model keeps a shadow copy of every page, taken at enable and refreshed whenever the
// bitmap is read: a page whose contents differ from its shadow was written (a "fault"); pages the
// hypervisor writes itself are marked explicitly (markDirtyFrame), as paging_mark_dirty() does.
// A write that leaves a page's bytes unchanged is not seen; the saver does not need it (the page
// it already sent is still right). Reading copies the page first and compares the copy, so a guest
// writing meanwhile is seen now or at the next read, never lost.
import { Buffer } from 'node:buffer';
import type { Domain } from './domain.ts';
import type { Frame } from './memory.ts';
import { XEN_PAGE_SIZE } from './public/xen.ts';

/** struct xen_domctl_shadow_op_stats. */
export interface ShadowOpStats {
  /** Guest writes that dirtied a clean page (write faults in Xen). */
  readonly fault_count: number;
  /** Bits newly set in the bitmap. */
  readonly dirty_count: number;
}

export class LogDirty {
  /** What each pfn held when the bitmap was last read; undefined for a pfn with no page. */
  private readonly shadow: (Uint8Array | undefined)[] = [];
  /** d->arch.paging.log_dirty's bitmap, one bit per pfn. */
  private bitmap: Uint8Array;
  private faultCount = 0;
  private dirtyCount = 0;
  /** get_gpfn_from_mfn() for this domain's frames. */
  private readonly pfnOf = new Map<Frame, number>();
  private readonly scratch = new Uint8Array(XEN_PAGE_SIZE);

  constructor(private readonly d: Domain) {
    this.bitmap = new Uint8Array(Math.ceil(d.p2m.length / 8));
    d.p2m.forEach((f, pfn) => {
      if (!f) return;
      this.shadow[pfn] = f.bytes.slice();
      this.pfnOf.set(f, pfn);
    });
  }

  private setBit(pfn: number): boolean {
    if (pfn >= this.bitmap.length * 8) {
      const grown = new Uint8Array(Math.ceil((pfn + 1) / 8));
      grown.set(this.bitmap);
      this.bitmap = grown;
    }
    const was = (this.bitmap[pfn >> 3] >> (pfn & 7)) & 1;
    this.bitmap[pfn >> 3] |= 1 << (pfn & 7);
    if (!was) this.dirtyCount++;
    return !was;
  }

  /** paging_mark_dirty(): the hypervisor wrote this frame of the domain. */
  markDirtyFrame(f: Frame): void {
    const pfn = this.pfnOf.get(f) ?? this.d.p2m.indexOf(f);
    if (pfn < 0) return;
    this.setBit(pfn);
  }

  /** The guest's own writes since the last look, as the faults Xen would have taken. */
  private scan(): void {
    const { p2m } = this.d;
    for (let pfn = 0; pfn < p2m.length; pfn++) {
      const f = p2m[pfn];
      if (!f) {
        this.shadow[pfn] = undefined;
        continue;
      }
      const old = this.shadow[pfn];
      if (!old) {
        // Populated since enable: whatever it holds the saver has not sent.
        this.pfnOf.set(f, pfn);
        this.shadow[pfn] = f.bytes.slice();
        if (this.setBit(pfn)) this.faultCount++;
        continue;
      }
      this.scratch.set(f.bytes);
      if (Buffer.compare(this.scratch, old) !== 0) {
        old.set(this.scratch);
        if (this.setBit(pfn)) this.faultCount++;
      }
    }
  }

  /**
   * paging_log_dirty_op(): the first `pages` bits of the bitmap and the stats; CLEAN then clears
   * both. `pages` 0 is a NULL bitmap handle (stats only).
   */
  read(clean: boolean, pages: number): { bitmap: Uint8Array; stats: ShadowOpStats } {
    this.scan();
    const stats = { fault_count: this.faultCount, dirty_count: this.dirtyCount };
    const bitmap = new Uint8Array(Math.ceil(pages / 8));
    bitmap.set(this.bitmap.subarray(0, bitmap.length));
    // Bits past `pages` in the last byte are the caller's buffer's padding: Xen copies whole
    // bytes, so they may be set, as here.
    if (clean) {
      this.bitmap.fill(0);
      this.faultCount = 0;
      this.dirtyCount = 0;
    }
    return { bitmap, stats };
  }
}

/** The pfns whose bits are set in `bitmap`, ascending (what xg_sr_save.c walks). */
export function dirtyPfns(bitmap: Uint8Array, pages = bitmap.length * 8): number[] {
  const out: number[] = [];
  for (let i = 0; i < bitmap.length; i++) {
    const b = bitmap[i];
    if (b === 0) continue;
    for (let j = 0; j < 8; j++) {
      const pfn = i * 8 + j;
      if (b & (1 << j) && pfn < pages) out.push(pfn);
    }
  }
  return out;
}
