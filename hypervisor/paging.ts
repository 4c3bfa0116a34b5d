// Log-dirty mode (xen/arch/x86/mm/paging.c): while a domain is saved live, which of its pages
// changed since the saver last looked (XEN_DOMCTL_shadow_op).
//
// Xen write-protects the guest's page tables and sets a bit in the dirty bitmap on the first
// write fault to each page (and marks the pages it writes itself: grant copies, unmapped writable
// grant maps). xensim's guests write their frames directly in SharedArrayBuffers, with no trap to
// take, so the model keeps a 64-bit fingerprint of every page (page-fingerprint.ts), taken at enable and refreshed
// whenever the bitmap is read: a page whose fingerprint changed was written (a "fault"); pages the
// hypervisor writes itself are marked explicitly (markDirtyFrame), as paging_mark_dirty() does.
// A fingerprint rather than a copy of the page: a copy would double a big guest's memory for the
// whole migration. A write that leaves a page's bytes unchanged is not seen, nor (with odds of
// 2^-64 for an accident) one that leaves its fingerprint unchanged - a guest crafting that only
// corrupts its own migrated memory; the saver does not need the rest (the page it already sent
// is still right). A guest writing while its page is fingerprinted is seen now or at the next
// read, never lost: the fingerprint stored is of bytes the page held at some point, so if the page
// ends up otherwise, the next read differs.
// The live saver's reads are looks too (observe): a page it read (and sent) as other than its
// print was written since the last read, so it is dirty even if the guest writes it back before
// the next - else the destination would keep what it was sent.
// A read compares a big guest's 2 MiB blocks first, each by one digest of its pages' prints
// (page-fingerprint.ts runDigesterOf), and only a block whose digest changed page by page.
import assert from 'node:assert/strict';
import type { Domain } from './domain.ts';
import { EXTENT_PAGES, type Frame } from './memory.ts';
import { PRINTER_MAX_PAGES, fingerprinterOf, foldPrints, printerOf, runDigesterOf, scalarFingerprint } from './page-fingerprint.ts';
import { XEN_PAGE_SIZE } from './public/xen.ts';

/** struct xen_domctl_shadow_op_stats. */
export interface ShadowOpStats {
  /** Guest writes that dirtied a clean page (write faults in Xen). */
  readonly fault_count: number;
  /** Bits newly set in the bitmap. */
  readonly dirty_count: number;
}

export class LogDirty {
  /** Each pfn's fingerprint when the bitmap was last read (two words per pfn). */
  private prints: Int32Array;
  /** Which frame each pfn had then; undefined for a pfn with no page. */
  private readonly frameAt: (Frame | undefined)[];
  /** d->arch.paging.log_dirty's bitmap, one bit per pfn. */
  private bitmap: Uint8Array;
  private faultCount = 0;
  private dirtyCount = 0;
  /**
   * get_gpfn_from_mfn() for this domain's frames: made when the hypervisor first marks a frame
   * (a map of every frame costs a big guest's enable more than its fingerprints do).
   */
  private pfnOf: Map<Frame, number> | undefined;
  private readonly scratch = new Int32Array(2);
  /** scanPages()'s prints of a block's pages as they are now. */
  private readonly fresh = new Int32Array(2 * EXTENT_PAGES);
  private readonly folded = new Int32Array(2);
  /**
   * Per block of EXTENT_PAGES pfns: the digest (foldPrints) of its pages' prints, valid where
   * `blockOk` is 1 - the block's frames, as frameAt has them, are one run of pages of one buffer
   * fingerprinted with SIMD. A scan then digests the block with one call and looks at its pages
   * one by one only when that differs (an idle guest's CLEAN is then one call per 2 MiB).
   */
  private digests: Int32Array;
  private blockOk: Uint8Array;

  constructor(private readonly d: Domain) {
    this.bitmap = new Uint8Array(Math.ceil(d.p2m.length / 8));
    this.prints = new Int32Array(2 * d.p2m.length);
    const { p2m } = d;
    // A copy of the p2m in one go (not grown a pfn at a time).
    this.frameAt = p2m.slice();
    printPages(p2m, 0, p2m.length, this.prints, 0);
    const blocks = Math.ceil(p2m.length / EXTENT_PAGES);
    this.digests = new Int32Array(2 * blocks);
    this.blockOk = new Uint8Array(blocks);
    for (let b = 0; b < blocks; b++) this.redigest(b);
  }

  /** Block b's digest from its stored prints, when it is one run of a SIMD buffer's pages. */
  private redigest(b: number): void {
    const first = b * EXTENT_PAGES;
    const frameAt = this.frameAt;
    this.blockOk[b] = 0;
    if (first + EXTENT_PAGES > frameAt.length) return;
    const f0 = frameAt[first];
    if (!f0 || !runDigesterOf(f0.sab)) return;
    for (let i = 1; i < EXTENT_PAGES; i++) {
      const f = frameAt[first + i];
      if (!f || f.sab !== f0.sab || f.offset !== f0.offset + i * XEN_PAGE_SIZE) return;
    }
    foldPrints(this.prints, first, EXTENT_PAGES, this.digests, b);
    this.blockOk[b] = 1;
  }

  /** Whether block b is as its digest was taken (same frames) and its pages' prints unchanged. */
  private blockUnchanged(b: number, p2m: readonly (Frame | undefined)[]): boolean {
    if (!this.blockOk[b]) return false;
    const first = b * EXTENT_PAGES;
    const frameAt = this.frameAt;
    for (let i = first, end = first + EXTENT_PAGES; i < end; i++) if (p2m[i] !== frameAt[i]) return false;
    const f0 = frameAt[first]!;
    const now = this.scratch;
    runDigesterOf(f0.sab)!(f0.offset, EXTENT_PAGES, now, 0);
    return now[0] === this.digests[2 * b] && now[1] === this.digests[2 * b + 1];
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
    if (!this.pfnOf) {
      const m = new Map<Frame, number>();
      this.frameAt.forEach((g, pfn) => {
        if (g) m.set(g, pfn);
      });
      this.pfnOf = m;
    }
    const pfn = this.pfnOf.get(f) ?? this.d.p2m.indexOf(f);
    if (pfn < 0) return;
    this.setBit(pfn);
  }

  /**
   * The saver read pfns pfn..pfn+count-1 as the pages back to back at byte `offset` of `sab` (what
   * it sent): one that differs from its print at the last look was written since - a write fault
   * Xen would have taken - so it is dirty whatever it holds at the next read. Without this look, a
   * page written before its send and written back after compares clean while the destination
   * keeps what it was sent.
   */
  observe(pfn: number, count: number, sab: SharedArrayBuffer, offset: number): void {
    assert(Number.isSafeInteger(pfn) && pfn >= 0 && Number.isSafeInteger(count) && count >= 0, `observe(${pfn}, ${count})`);
    const n = Math.min(count, this.frameAt.length - pfn);
    if (n <= 0) return;
    const now = this.scratch;
    // A page's print is taken the way its frame's buffer is read (SIMD or the scalar loop): the
    // sent bytes are fingerprinted the same way.
    const run = runDigesterOf(sab);
    const f0 = this.frameAt[pfn];
    if (run && f0 && runDigesterOf(f0.sab)) {
      // A run as it was at the last look costs one call: its digest against its prints'.
      run(offset, n, now, 0);
      foldPrints(this.prints, pfn, n, this.folded, 0);
      if (now[0] === this.folded[0] && now[1] === this.folded[1]) return;
    }
    const simd = fingerprinterOf(sab);
    const { p2m } = this.d;
    // Whether the frames' buffer is read with SIMD, looked up once per buffer.
    let frameSab: SharedArrayBuffer | undefined;
    let frameSimd = false;
    for (let i = 0; i < n; i++) {
      const at = pfn + i;
      const f = this.frameAt[at];
      // A frame new since the last look is the scan's (dirty there whatever it holds).
      if (!f || f !== p2m[at]) continue;
      if (f.sab !== frameSab) frameSimd = runDigesterOf((frameSab = f.sab)) !== undefined;
      if (!frameSimd) {
        scalarFingerprint(sab, offset + i * XEN_PAGE_SIZE, now, 0);
      } else if (run) {
        simd(offset + i * XEN_PAGE_SIZE, now, 0);
      } else {
        // A SIMD print, and sent bytes the SIMD function cannot read: dirty, to be safe.
        if (this.setBit(at)) this.faultCount++;
        continue;
      }
      if (now[0] !== this.prints[2 * at] || now[1] !== this.prints[2 * at + 1]) {
        if (this.setBit(at)) this.faultCount++;
      }
    }
  }

  /** The guest's own writes since the last look, as the faults Xen would have taken. */
  private scan(): void {
    const { p2m } = this.d;
    if (this.prints.length < 2 * p2m.length) {
      const grown = new Int32Array(2 * p2m.length);
      grown.set(this.prints);
      this.prints = grown;
    }
    const blocks = Math.ceil(p2m.length / EXTENT_PAGES);
    if (this.blockOk.length < blocks) {
      const grown = new Int32Array(2 * blocks);
      grown.set(this.digests);
      this.digests = grown;
      const ok = new Uint8Array(blocks);
      ok.set(this.blockOk);
      this.blockOk = ok;
    }
    for (let b = 0; b < blocks; b++) {
      if (this.blockUnchanged(b, p2m)) continue;
      // A block the guest wrote in is likely written again by the next look: it goes page by page
      // then too (its digest would only cost a pass more); one found unchanged gets its digest.
      if (this.scanPages(b * EXTENT_PAGES, Math.min(p2m.length, (b + 1) * EXTENT_PAGES))) this.blockOk[b] = 0;
      else this.redigest(b);
    }
  }

  /**
   * scan() of pfns [from, to) (at most EXTENT_PAGES) one by one; whether any of them changed
   * (frame or print).
   */
  private scanPages(from: number, to: number): boolean {
    assert(to - from <= EXTENT_PAGES, `scanPages(${from}, ${to})`);
    let changed = false;
    const { p2m } = this.d;
    const prints = this.prints;
    const now = this.fresh;
    printPages(p2m, from, to, now, -from);
    for (let pfn = from; pfn < to; pfn++) {
      const f = p2m[pfn];
      if (!f) {
        if (this.frameAt[pfn]) changed = true;
        this.frameAt[pfn] = undefined;
        continue;
      }
      const lo = now[2 * (pfn - from)];
      const hi = now[2 * (pfn - from) + 1];
      if (this.frameAt[pfn] !== f) {
        // Populated since enable: whatever it holds the saver has not sent.
        this.frameAt[pfn] = f;
        this.pfnOf?.set(f, pfn);
        prints[2 * pfn] = lo;
        prints[2 * pfn + 1] = hi;
        if (this.setBit(pfn)) this.faultCount++;
        changed = true;
        continue;
      }
      if (lo !== prints[2 * pfn] || hi !== prints[2 * pfn + 1]) {
        prints[2 * pfn] = lo;
        prints[2 * pfn + 1] = hi;
        if (this.setBit(pfn)) this.faultCount++;
        changed = true;
      }
    }
    return changed;
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

/**
 * The prints of pfns [from, to) of `p2m` as their pages are now, into out[2 * (pfn + shift)] and
 * the word after (a pfn with no page is left alone). Runs of pages in a row in a SIMD buffer are
 * printed with one call each (printerOf), other pages one by one.
 */
function printPages(p2m: readonly (Frame | undefined)[], from: number, to: number, out: Int32Array, shift: number): void {
  let sab: SharedArrayBuffer | undefined;
  let fp: ReturnType<typeof fingerprinterOf> = () => {};
  let printer: ReturnType<typeof printerOf>;
  for (let pfn = from; pfn < to;) {
    const f = p2m[pfn];
    if (!f) {
      pfn++;
      continue;
    }
    if (f.sab !== sab) {
      fp = fingerprinterOf((sab = f.sab));
      printer = printerOf(sab);
    }
    let end = pfn + 1;
    if (printer) {
      const limit = Math.min(to, pfn + PRINTER_MAX_PAGES);
      while (end < limit && p2m[end]?.sab === sab && p2m[end]!.offset === f.offset + (end - pfn) * XEN_PAGE_SIZE) end++;
      printer(f.offset, end - pfn, out, pfn + shift);
    } else {
      fp(f.offset, out, pfn + shift);
    }
    pfn = end;
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
