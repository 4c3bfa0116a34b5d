// Log-dirty mode (XEN_DOMCTL_shadow_op): how a live save learns which pages the guest wrote since
// it last looked. Guests write their frames directly, as a running guest writes its RAM.
import assert from 'node:assert/strict';
import { EventChannels } from '../../hypervisor/event-channel.ts';
import { GrantTables } from '../../hypervisor/grant-table.ts';
import { Host } from '../../hypervisor/host.ts';
import { EXTENT_PAGES } from '../../hypervisor/memory.ts';
import { Hypercalls } from '../../hypervisor/hypercall.ts';
import { dirtyPfns } from '../../hypervisor/paging.ts';
import { fingerprintableBuffer } from '../../hypervisor/page-fingerprint.ts';
import { Domctl, DomctlShadowOp, XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY } from '../../hypervisor/public/domctl.ts';
import { DOMID_SELF, Errno, Hypercall, XEN_PAGE_SIZE, domid as domidOf } from '../../hypervisor/public/xen.ts';
import { GNTCOPY_dest_gref, GNTMAP_host_map, GntSt, gnttabGrantForeignAccessRef, grantRef } from '../../hypervisor/public/grant_table.ts';

const PAGES = 64;

function setup(): { h: Host; hc: Hypercalls; gt: GrantTables; domid: number } {
  const h = new Host();
  h.createDomain({ domid: 0, privileged: true });
  const gt = new GrantTables(h);
  const hc = new Hypercalls(h, new EventChannels(h), gt);
  const d = h.createDomain({ maxPages: PAGES + 8 });
  h.populate(d, 0, PAGES);
  return { h, hc, gt, domid: d.domid };
}

type Answer = { pages: number; dirty_bitmap: Uint8Array; stats: { fault_count: number; dirty_count: number } };

const shadow = (hc: Hypercalls, domain: number, op: DomctlShadowOp, extra: Record<string, unknown> = {}, caller = 0): unknown =>
  hc.call(caller, Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_shadow_op, domain, op, ...extra }).ret;

const clean = (hc: Hypercalls, domid: number): Answer => shadow(hc, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_CLEAN, { pages: PAGES }) as Answer;
const peek = (hc: Hypercalls, domid: number): Answer => shadow(hc, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_PEEK, { pages: PAGES }) as Answer;

describe('log-dirty mode (XEN_DOMCTL_shadow_op)', () => {
  it('once enabled, a guest write dirties exactly its page; CLEAN returns the bitmap and clears it', () => {
    const { h, hc, domid } = setup();
    const d = h.domains.get(domid)!;
    assert.equal(shadow(hc, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY), 0);
    assert.deepEqual(dirtyPfns(clean(hc, domid).dirty_bitmap), [], 'nothing written yet');
    d.p2m[5]!.bytes[100] = 0xaa;
    d.p2m[40]!.bytes[4095] = 1;
    const first = clean(hc, domid);
    assert.equal(first.pages, PAGES);
    assert.equal(first.dirty_bitmap.length, PAGES / 8);
    assert.deepEqual(dirtyPfns(first.dirty_bitmap), [5, 40]);
    assert.deepEqual(first.stats, { fault_count: 2, dirty_count: 2 });
    const second = clean(hc, domid);
    assert.deepEqual(dirtyPfns(second.dirty_bitmap), [], 'CLEAN cleared the bitmap');
    assert.deepEqual(second.stats, { fault_count: 0, dirty_count: 0 }, 'and the stats');
    d.p2m[5]!.bytes[100] = 0xbb;
    assert.deepEqual(dirtyPfns(clean(hc, domid).dirty_bitmap), [5], 'a page dirties again after a CLEAN');
  });

  it("a big guest's frames share 2 MiB extents: a write dirties its own page only, not its neighbours in the buffer", () => {
    const h = new Host();
    h.createDomain({ domid: 0, privileged: true });
    const hc = new Hypercalls(h, new EventChannels(h), new GrantTables(h));
    const pages = 3 * EXTENT_PAGES;
    const d = h.createDomain({ maxPages: pages });
    h.populate(d, 0, pages);
    assert.equal(d.p2m[0]!.sab, d.p2m[EXTENT_PAGES - 1]!.sab, 'one buffer per extent');
    assert.notEqual(d.p2m[0]!.sab, d.p2m[EXTENT_PAGES]!.sab);
    assert.equal(d.p2m[EXTENT_PAGES + 1]!.offset, XEN_PAGE_SIZE);
    assert.equal(shadow(hc, d.domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY), 0);
    // Through the extent's buffer, as a kernel holding it would write.
    new Uint8Array(d.p2m[EXTENT_PAGES + 1]!.sab)[XEN_PAGE_SIZE + 17] = 1;
    d.p2m[pages - 1]!.bytes[0] = 2;
    const r = shadow(hc, d.domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_CLEAN, { pages }) as Answer;
    assert.deepEqual(dirtyPfns(r.dirty_bitmap, pages), [EXTENT_PAGES + 1, pages - 1]);
  });

  it("a big guest's 2 MiB blocks, compared by one digest each: a write anywhere in a block is its page's alone, round after round; a frame swapped under a pfn dirties it", () => {
    const h = new Host();
    h.createDomain({ domid: 0, privileged: true });
    const hc = new Hypercalls(h, new EventChannels(h), new GrantTables(h));
    const pages = 4 * EXTENT_PAGES;
    const d = h.createDomain({ maxPages: pages + 1 });
    h.populate(d, 0, pages);
    const dirty = (): number[] => dirtyPfns((shadow(hc, d.domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_CLEAN, { pages }) as Answer).dirty_bitmap, pages);
    assert.equal(shadow(hc, d.domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY), 0);
    d.p2m[EXTENT_PAGES + 300]!.bytes[9] = 1;
    assert.deepEqual(dirty(), [EXTENT_PAGES + 300]);
    // The block just written is looked at page by page; the others by their digests.
    d.p2m[EXTENT_PAGES + 300]!.bytes[9] = 2;
    d.p2m[3 * EXTENT_PAGES + 511]!.bytes[4095] = 3;
    assert.deepEqual(dirty(), [EXTENT_PAGES + 300, 3 * EXTENT_PAGES + 511]);
    assert.deepEqual(dirty(), [], 'nothing written since');
    d.p2m[EXTENT_PAGES + 1]!.bytes[0] = 4;
    d.p2m[3 * EXTENT_PAGES]!.bytes[100] = 5;
    assert.deepEqual(dirty(), [EXTENT_PAGES + 1, 3 * EXTENT_PAGES], 'blocks found clean get their digests again');
    // Written and written back between two looks: the page is as it was (not seen, as before).
    d.p2m[5]!.bytes[5] = 1;
    d.p2m[5]!.bytes[5] = 0;
    assert.deepEqual(dirty(), []);
    // Another frame under a pfn of an extent (its bytes equal to the old ones): that pfn only.
    const old = d.p2m[2 * EXTENT_PAGES + 17]!;
    const f = h.memory.allocate(d.domid)!;
    f.bytes.set(old.bytes);
    d.p2m[2 * EXTENT_PAGES + 17] = f;
    assert.deepEqual(dirty(), [2 * EXTENT_PAGES + 17]);
    f.bytes[1] = 1;
    assert.deepEqual(dirty(), [2 * EXTENT_PAGES + 17], 'a single frame in the block: page by page');
    assert.deepEqual(dirty(), []);
  });

  it("a backend writing a big guest's page through its grant map, still mapped, dirties that page in that round only; the extent's other pages stay clean", () => {
    const h = new Host();
    h.createDomain({ domid: 0, privileged: true });
    const gt = new GrantTables(h);
    const hc = new Hypercalls(h, new EventChannels(h), gt);
    const pages = 2 * EXTENT_PAGES;
    const d = h.createDomain({ maxPages: pages });
    h.populate(d, 0, pages);
    const gfn = EXTENT_PAGES + 7;
    const ref = grantRef(10);
    gnttabGrantForeignAccessRef(gt.tableFrames(d).map((f) => f.bytes), ref, domidOf(0), gfn, false);
    const dom0 = h.domains.get(0)!;
    const m = gt.mapGrantRef(dom0, { host_addr: 0x2000, flags: GNTMAP_host_map, ref, dom: d.domid });
    assert.equal(m.status, GntSt.GNTST_okay);
    const cleanAll = (): number[] => dirtyPfns((shadow(hc, d.domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_CLEAN, { pages }) as Answer).dirty_bitmap, pages);
    assert.equal(shadow(hc, d.domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY), 0);
    // The backend's view of the granted frame (what its kernel would make from the map's frame).
    const backend = new Uint8Array(m.frame!.sab, m.frame!.offset, XEN_PAGE_SIZE);
    backend[2048] ^= 0x80;
    assert.deepEqual(cleanAll(), [gfn], 'written through the map during round 1: dirty, no unmap needed');
    assert.deepEqual(cleanAll(), [], 'not written since: clean, and none of its neighbours in the extent ever were');
    backend[0] = backend[0] + 1;
    assert.deepEqual(cleanAll(), [gfn], 'written again in a later round: dirty again');
  });

  it('a page written, then read by the saver (observe), then written back as it was at the last look is dirty: Xen\'s bitmap has its write fault', () => {
    for (const pages of [PAGES, 2 * EXTENT_PAGES]) {
      const h = new Host();
      h.createDomain({ domid: 0, privileged: true });
      const hc = new Hypercalls(h, new EventChannels(h), new GrantTables(h));
      const d = h.createDomain({ maxPages: pages + 8 });
      h.populate(d, 0, pages);
      const cleanAll = (): number[] => dirtyPfns((shadow(hc, d.domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_CLEAN, { pages }) as Answer).dirty_bitmap, pages);
      assert.equal(shadow(hc, d.domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY), 0);
      const pfn = pages - 3;
      // What a live saver's record holds (a shared WebAssembly memory, as xl migrate's are).
      const record = fingerprintableBuffer(65536);
      const sent = new Uint8Array(record);
      // Unchanged pages read: nothing dirty.
      for (let i = 0; i < 4; i++) sent.set(d.p2m[pages - 4 + i]!.bytes, i * XEN_PAGE_SIZE);
      d.logDirty!.observe(pages - 4, 4, record, 0);
      assert.deepEqual(cleanAll(), [], `${pages} pages: pages read as they were are clean`);
      const page = d.p2m[pfn]!.bytes;
      page[7] = 0x5a;
      for (let i = 0; i < 4; i++) sent.set(d.p2m[pages - 4 + i]!.bytes, i * XEN_PAGE_SIZE);
      d.logDirty!.observe(pages - 4, 4, record, 0);
      page[7] = 0;
      assert.deepEqual(cleanAll(), [pfn], `${pages} pages: the page read while written is dirty though it is back as it was`);
      assert.deepEqual(cleanAll(), []);
    }
  });

  it('PEEK returns the bitmap without clearing it', () => {
    const { h, hc, domid } = setup();
    shadow(hc, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE, { mode: XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY });
    h.domains.get(domid)!.p2m[9]!.bytes[0] = 7;
    assert.deepEqual(dirtyPfns(peek(hc, domid).dirty_bitmap), [9]);
    assert.deepEqual(peek(hc, domid).stats, { fault_count: 1, dirty_count: 1 });
    assert.deepEqual(dirtyPfns(clean(hc, domid).dirty_bitmap), [9], 'still there for the CLEAN');
    assert.deepEqual(dirtyPfns(peek(hc, domid).dirty_bitmap), []);
  });

  it('a page the hypervisor writes (a grant copy into it) is dirty though no guest write faulted', () => {
    const { h, hc, gt, domid } = setup();
    const d = h.domains.get(domid)!;
    const ref = grantRef(8);
    gnttabGrantForeignAccessRef(gt.tableFrames(d).map((f) => f.bytes), ref, domidOf(0), 12, false);
    shadow(hc, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY);
    const dom0 = h.domains.get(0)!;
    h.populate(dom0, 0, 1);
    dom0.p2m[0]!.bytes[0] = 0x55;
    const r = gt.copy(dom0, { source: { u: { gmfn: 0 }, domid: DOMID_SELF, offset: 0 }, dest: { u: { ref }, domid: d.domid, offset: 0 }, len: 1, flags: GNTCOPY_dest_gref });
    assert.equal(r.status, GntSt.GNTST_okay);
    const a = clean(hc, domid);
    assert.deepEqual(dirtyPfns(a.dirty_bitmap), [12]);
    assert.deepEqual(a.stats, { fault_count: 0, dirty_count: 1 }, 'marked by Xen, not faulted');
  });

  it('unmapping a writable grant map marks the granted page dirty (gnttab_mark_dirty)', () => {
    const { h, hc, gt, domid } = setup();
    const d = h.domains.get(domid)!;
    const ref = grantRef(9);
    gnttabGrantForeignAccessRef(gt.tableFrames(d).map((f) => f.bytes), ref, domidOf(0), 20, false);
    const dom0 = h.domains.get(0)!;
    const m = gt.mapGrantRef(dom0, { host_addr: 0x1000, flags: GNTMAP_host_map, ref, dom: d.domid });
    assert.equal(m.status, GntSt.GNTST_okay);
    shadow(hc, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY);
    assert.equal(gt.unmapGrantRef(dom0, { host_addr: 0x1000, dev_bus_addr: 0, handle: m.handle! }).status, GntSt.GNTST_okay);
    const a = clean(hc, domid);
    assert.deepEqual(dirtyPfns(a.dirty_bitmap), [20]);
    assert.deepEqual(a.stats, { fault_count: 0, dirty_count: 1 }, 'marked by Xen at unmap, no guest write');
  });

  it('OFF stops logging; CLEAN with log-dirty off answers an empty bitmap, as Xen with no bitmap does', () => {
    const { h, hc, domid } = setup();
    const d = h.domains.get(domid)!;
    shadow(hc, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY);
    assert.equal(shadow(hc, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_OFF), 0);
    d.p2m[3]!.bytes[0] = 1;
    const a = clean(hc, domid);
    assert.deepEqual(dirtyPfns(a.dirty_bitmap), []);
    assert.deepEqual(a.stats, { fault_count: 0, dirty_count: 0 });
    assert.equal(shadow(hc, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY), 0, 'enabling again after OFF');
    d.p2m[3]!.bytes[0] = 2;
    assert.deepEqual(dirtyPfns(clean(hc, domid).dirty_bitmap), [3]);
  });

  it('refuses as Xen does: enabling twice, a paging op on oneself, a bad domid, a non-control caller', () => {
    const { hc, domid } = setup();
    assert.equal(shadow(hc, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY), 0);
    assert.equal(shadow(hc, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY), -Errno.EINVAL, 'paging_log_dirty_enable: already on');
    assert.equal(shadow(hc, 0, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY), -Errno.EINVAL, 'dom0 on itself: "Tried to do a paging op on itself"');
    assert.equal(shadow(hc, 0, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_CLEAN, { pages: 8 }), -Errno.EINVAL);
    assert.equal(shadow(hc, 4321, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_CLEAN, { pages: 8 }), -Errno.ESRCH);
    assert.equal(shadow(hc, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_CLEAN, { pages: 8 }, domid), -Errno.EPERM, 'domctls are the control domain\'s');
  });

  it('a dying domain\'s paging op is ignored (0)', () => {
    const { h, hc, domid } = setup();
    const d = h.domains.get(domid)!;
    d.p2m[0]!.foreignRefs++; // someone still maps a page: the dead domain lingers
    h.destroy(d);
    assert.equal(shadow(hc, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY), 0);
    assert.equal(d.logDirty, undefined);
  });
});
