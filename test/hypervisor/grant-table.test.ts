// Grant tables v1 (spec/hypervisor-and-xenbus.md §2, §9.4), checked against xen/common/grant_table.c.
//
// Cast: dom0 (privileged), a granter (d1) and a mapper (d2), each with 16 populated frames, and a
// bystander (d3). The granter writes its own table the way Linux does, through the bytes of its
// table frames; the mapper asks Xen through GNTTABOP_* and gets GNTST_* back. Unless a row says
// otherwise, ref 10 grants the granter's gfn 5 to the mapper, writable.
import assert from 'node:assert/strict';
import { Host } from '../../hypervisor/host.ts';
import type { Domain } from '../../hypervisor/domain.ts';
import { GNTPIN_hstw_inc, GrantTables, type GnttabTraceEvent } from '../../hypervisor/grant-table.ts';
import {
  GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly,
  GNTTAB_RESERVED_XENSTORE, GRANT_ENTRIES_PER_PAGE_V1, GTF_accept_transfer, GTF_permit_access,
  GTF_readonly, GTF_reading, GTF_sub_page, GTF_writing, GntSt, GnttabOp, type GnttabCopy,
  type GnttabCopyPtr, type GrantHandle, type GrantRef, grantHandle, grantRef,
  gnttabEndForeignAccessRef, gnttabGrantForeignAccessRef, gnttabQueryForeignAccess,
  readGrantEntryV1,
} from '../../hypervisor/public/grant_table.ts';
import { type DomId, DOMID_SELF, Errno, XEN_PAGE_SIZE, domid } from '../../hypervisor/public/xen.ts';

const REF = grantRef(10);
const GFN = 5;
const HOST_ADDR = 0x7f00_0000_0000;

class World {
  readonly host = new Host();
  readonly gnttab = new GrantTables(this.host);
  readonly trace: GnttabTraceEvent[] = [];
  readonly dom0: Domain;
  readonly granter: Domain;
  readonly mapper: Domain;
  readonly bystander: Domain;

  constructor() {
    this.gnttab.onTrace((ev) => this.trace.push(ev));
    this.dom0 = this.host.createDomain({ domid: 0, privileged: true });
    this.granter = this.host.createDomain();
    this.mapper = this.host.createDomain();
    this.bystander = this.host.createDomain();
    for (const d of [this.dom0, this.granter, this.mapper, this.bystander]) this.host.populate(d, 0, 16);
  }

  /** A domain's grant table as the domain itself sees it (its table frames). */
  table(d: Domain = this.granter): Uint8Array[] {
    return this.gnttab.tableFrames(d).map((f) => f.bytes);
  }

  grant(opts: { ref?: GrantRef; to?: Domain; gfn?: number; readonly?: boolean; by?: Domain } = {}): GrantRef {
    const ref = opts.ref ?? REF;
    gnttabGrantForeignAccessRef(this.table(opts.by), ref, (opts.to ?? this.mapper).domid, opts.gfn ?? GFN, opts.readonly ?? false);
    return ref;
  }

  map(opts: { by?: Domain; dom?: number; ref?: number; flags?: number; host_addr?: number } = {}) {
    return this.gnttab.mapGrantRef(opts.by ?? this.mapper, {
      host_addr: opts.host_addr ?? HOST_ADDR,
      flags: opts.flags ?? GNTMAP_host_map,
      ref: grantRef(opts.ref ?? REF),
      dom: domid(opts.dom ?? this.granter.domid),
    });
  }

  unmap(handle: GrantHandle, opts: { by?: Domain; host_addr?: number; dev_bus_addr?: number } = {}): GntSt {
    return this.gnttab.unmapGrantRef(opts.by ?? this.mapper, {
      host_addr: opts.host_addr ?? HOST_ADDR, dev_bus_addr: opts.dev_bus_addr ?? 0, handle,
    }).status;
  }

  flags(ref: GrantRef = REF, d: Domain = this.granter): number {
    return readGrantEntryV1(this.table(d), ref).flags;
  }

  page(d: Domain, gfn: number): Uint8Array {
    return d.frame(gfn)!.bytes;
  }
}

const st = (s: GntSt): string => GntSt[s];

describe('grant tables v1', () => {
  describe('the shared entry (grant_entry_v1)', () => {
    it('is 8 bytes, 512 to a page: u16 flags @0, u16 domid @2, u32 frame @4', () => {
      const w = new World();
      assert.equal(GRANT_ENTRIES_PER_PAGE_V1, 512);
      w.grant({ ref: grantRef(3), gfn: 0x12345678, readonly: true });
      const dv = new DataView(w.table()[0]!.buffer, 3 * 8, 8);
      assert.equal(dv.getUint16(0, true), GTF_permit_access | GTF_readonly);
      assert.equal(dv.getUint16(2, true), w.mapper.domid);
      assert.equal(dv.getUint32(4, true), 0x12345678);
    });

    it('lives in frames the granter owns, one at creation (INITIAL_NR_GRANT_FRAMES)', () => {
      const w = new World();
      const frames = w.gnttab.tableFrames(w.granter);
      assert.equal(frames.length, 1);
      assert.equal(frames[0]!.owner, w.granter.domid);
    });
  });

  describe('GNTTABOP_map_grant_ref status codes', () => {
    const ROWS: readonly {
      readonly row: string;
      readonly setup?: (w: World) => void;
      readonly map?: (w: World) => ReturnType<World['map']>;
      readonly status: GntSt;
    }[] = [
      { row: 'writable grant, host map', status: GntSt.GNTST_okay },
      { row: 'writable grant, device map only', map: (w) => w.map({ flags: GNTMAP_device_map }), status: GntSt.GNTST_okay },
      { row: 'readonly grant, readonly map', setup: (w) => w.grant({ readonly: true }), map: (w) => w.map({ flags: GNTMAP_host_map | GNTMAP_readonly }), status: GntSt.GNTST_okay },
      { row: 'neither GNTMAP_host_map nor GNTMAP_device_map', map: (w) => w.map({ flags: GNTMAP_readonly }), status: GntSt.GNTST_bad_gntref },
      { row: 'unknown granter domid', map: (w) => w.map({ dom: 77 }), status: GntSt.GNTST_bad_domain },
      { row: 'granter given as DOMID_SELF (map wants a real id)', map: (w) => w.map({ dom: DOMID_SELF }), status: GntSt.GNTST_bad_domain },
      { row: 'mapper out of maptrack handles', setup: (w) => w.gnttab.setLimits(w.mapper, { maxMaptrackFrames: 0 }), status: GntSt.GNTST_no_space },
      { row: 'ref beyond the table (512 entries in one frame)', map: (w) => w.map({ ref: 512 }), status: GntSt.GNTST_bad_gntref },
      { row: 'entry GTF_invalid (never granted)', map: (w) => w.map({ ref: 11 }), status: GntSt.GNTST_general_error },
      { row: 'entry revoked by the granter', setup: (w) => assert.ok(gnttabEndForeignAccessRef(w.table(), REF)), status: GntSt.GNTST_general_error },
      {
        row: 'entry is GTF_accept_transfer', status: GntSt.GNTST_general_error,
        setup: (w) => Atomics.store(new Uint16Array(w.table()[0]!.buffer, REF * 8, 1), 0, GTF_accept_transfer),
      },
      {
        row: 'entry has GTF_sub_page (copy only)', status: GntSt.GNTST_general_error,
        setup: (w) => Atomics.store(new Uint16Array(w.table()[0]!.buffer, REF * 8, 1), 0, GTF_permit_access | GTF_sub_page),
      },
      { row: 'entry grants another domain', setup: (w) => w.grant({ to: w.bystander }), status: GntSt.GNTST_general_error },
      { row: 'writable map of a GTF_readonly grant', setup: (w) => w.grant({ readonly: true }), status: GntSt.GNTST_general_error },
      {
        row: 'entry already pinned by another domain', status: GntSt.GNTST_general_error,
        setup: (w) => {
          w.grant({ to: w.bystander });
          assert.equal(w.map({ by: w.bystander }).status, GntSt.GNTST_okay);
          w.grant(); // the granter now names the mapper, but the bystander holds the pin
        },
      },
      { row: 'granted gfn not populated', setup: (w) => w.grant({ gfn: 999 }), status: GntSt.GNTST_bad_page },
      {
        row: 'granted gfn is a frame the granter itself only maps (foreign)', status: GntSt.GNTST_bad_page,
        setup: (w) => {
          // Gfn 20 of the granter holds a frame owned by the bystander (as a foreign map puts
          // it in the p2m); passing it on through a grant is refused.
          w.granter.p2m[20] = w.bystander.frame(7)!;
          w.grant({ gfn: 20 });
        },
      },
    ];

    for (const r of ROWS) {
      it(`${r.row} -> ${st(r.status)}`, () => {
        const w = new World();
        w.grant();
        r.setup?.(w);
        const res = (r.map ?? ((x: World) => x.map()))(w);
        assert.equal(st(res.status), st(r.status));
        if (r.status === GntSt.GNTST_okay) {
          assert.equal(res.frame, w.granter.frame(GFN));
          assert.equal(res.dev_bus_addr, res.frame!.mfn * XEN_PAGE_SIZE);
        } else {
          assert.equal(res.frame, undefined);
        }
      });
    }

    it('XSM refusal (GNTST_permission_denied) never happens: the model runs the dummy XSM policy', () => {
      const w = new World();
      w.grant({ to: w.bystander });
      assert.equal(st(w.map({ by: w.bystander }).status), 'GNTST_okay');
    });

    it('an 8-bit pin counter at 128 refuses the next pin of that kind', () => {
      const w = new World();
      w.grant();
      for (let i = 0; i < 128; i++) assert.equal(w.map({ host_addr: HOST_ADDR + i * 4096 }).status, GntSt.GNTST_okay);
      assert.equal(st(w.map().status), 'GNTST_general_error');
      // Read pins count separately.
      assert.equal(st(w.map({ flags: GNTMAP_host_map | GNTMAP_readonly }).status), 'GNTST_okay');
    });
  });

  describe('a DomU cannot map a page that was not granted to it', () => {
    const ROWS = [
      { row: 'the entry names another domain', setup: (w: World) => w.grant({ to: w.bystander }), ref: REF, status: GntSt.GNTST_general_error },
      { row: 'the entry is invalid', setup: () => {}, ref: grantRef(12), status: GntSt.GNTST_general_error },
      { row: 'the ref is out of range', setup: () => {}, ref: grantRef(100_000), status: GntSt.GNTST_bad_gntref },
    ];
    for (const r of ROWS) {
      it(`${r.row}: ${st(r.status)}, no frame, no flags set, no page reference`, () => {
        const w = new World();
        r.setup(w);
        const before = r.ref < 512 ? w.flags(r.ref) : 0;
        const res = w.map({ ref: r.ref });
        assert.equal(st(res.status), st(r.status));
        assert.equal(res.frame, undefined);
        if (r.ref < 512) assert.equal(w.flags(r.ref), before);
        assert.equal(w.granter.frame(GFN)!.foreignRefs, 0);
        assert.deepEqual(w.gnttab.mappings(w.mapper), []);
      });
    }

    it('a readonly grant cannot be mapped writable, by host or device map, but can be read', () => {
      const w = new World();
      w.grant({ readonly: true });
      assert.equal(st(w.map({ flags: GNTMAP_host_map }).status), 'GNTST_general_error');
      assert.equal(st(w.map({ flags: GNTMAP_device_map }).status), 'GNTST_general_error');
      assert.equal(w.flags(), GTF_permit_access | GTF_readonly);
      const ro = w.map({ flags: GNTMAP_host_map | GNTMAP_readonly });
      assert.equal(st(ro.status), 'GNTST_okay');
      assert.equal(w.flags(), GTF_permit_access | GTF_readonly | GTF_reading);
      // Already pinned for reading: a writable map still re-checks GTF_readonly.
      assert.equal(st(w.map({ flags: GNTMAP_host_map, host_addr: HOST_ADDR + 4096 }).status), 'GNTST_general_error');
      assert.equal(w.flags(), GTF_permit_access | GTF_readonly | GTF_reading);
    });
  });

  describe('mapping and unmapping', () => {
    it('map sets GTF_reading|GTF_writing (readonly maps: GTF_reading); the last unmap clears them', () => {
      const w = new World();
      w.grant();
      const ro = w.map({ flags: GNTMAP_host_map | GNTMAP_readonly });
      assert.equal(w.flags(), GTF_permit_access | GTF_reading);
      const rw = w.map({ host_addr: HOST_ADDR + 4096 });
      assert.equal(w.flags(), GTF_permit_access | GTF_reading | GTF_writing);
      assert.equal(w.unmap(rw.handle, { host_addr: HOST_ADDR + 4096 }), GntSt.GNTST_okay);
      assert.equal(w.flags(), GTF_permit_access | GTF_reading, 'last writable mapping gone: GTF_writing cleared');
      assert.equal(w.unmap(ro.handle), GntSt.GNTST_okay);
      assert.equal(w.flags(), GTF_permit_access, 'last mapping gone: GTF_reading cleared');
      assert.equal(w.gnttab.activePin(w.granter, REF), 0);
    });

    it('the mapper gets the granter\'s own page: writes show on both sides', () => {
      const w = new World();
      w.grant();
      const m = w.map();
      m.frame!.bytes[100] = 0xab;
      assert.equal(w.page(w.granter, GFN)[100], 0xab);
      w.page(w.granter, GFN)[101] = 0xcd;
      assert.equal(new Uint8Array(m.frame!.sab)[101], 0xcd);
    });

    it('each mapping kind holds one page reference (Frame.foreignRefs)', () => {
      const w = new World();
      w.grant();
      const f = w.granter.frame(GFN)!;
      const both = w.map({ flags: GNTMAP_host_map | GNTMAP_device_map });
      assert.equal(f.foreignRefs, 2);
      const dev = both.dev_bus_addr;
      // Unmapping the host part alone leaves the handle (and the device part) alive.
      assert.equal(w.unmap(both.handle, { dev_bus_addr: 0 }), GntSt.GNTST_okay);
      assert.equal(f.foreignRefs, 1);
      assert.equal(w.gnttab.mappings(w.mapper).length, 1);
      assert.equal(w.unmap(both.handle, { host_addr: 0, dev_bus_addr: dev }), GntSt.GNTST_okay);
      assert.equal(f.foreignRefs, 0);
      assert.deepEqual(w.gnttab.mappings(w.mapper), []);
    });

    it('only the first pin validates the entry: later maps by the same domain ignore a changed domid', () => {
      const w = new World();
      w.grant();
      const first = w.map();
      w.grant({ to: w.bystander }); // the entry now names d3, but d2's pin stands
      assert.equal(st(w.map({ host_addr: HOST_ADDR + 4096 }).status), 'GNTST_okay');
      assert.equal(st(w.map({ by: w.bystander }).status), 'GNTST_general_error', 'pinned by d2');
      assert.equal(w.unmap(first.handle), GntSt.GNTST_okay);
      assert.equal(w.unmap(grantHandle(1), { host_addr: HOST_ADDR + 4096 }), GntSt.GNTST_okay);
      assert.equal(st(w.map().status), 'GNTST_general_error', 'unpinned: validated again');
    });

    it('adding the first writable pin re-checks GTF_readonly only, not the domid', () => {
      const w = new World();
      w.grant({ readonly: true });
      assert.equal(st(w.map({ flags: GNTMAP_host_map | GNTMAP_readonly }).status), 'GNTST_okay');
      w.grant({ to: w.bystander }); // now writable, and for d3
      assert.equal(st(w.map({ host_addr: HOST_ADDR + 4096 }).status), 'GNTST_okay', 'still d2\'s pin');
      assert.equal(w.flags(), GTF_permit_access | GTF_reading | GTF_writing);
    });

    it('maptrack handles come off a FIFO free list; a maptrack frame gives 255 of its 256 slots', () => {
      const w = new World();
      w.grant();
      const a = w.map();
      assert.equal(a.handle, 0);
      assert.equal(w.unmap(a.handle), GntSt.GNTST_okay);
      assert.equal(w.map().handle, 1, 'a freed handle goes to the tail');

      const v = new World();
      v.grant();
      v.gnttab.setLimits(v.mapper, { maxMaptrackFrames: 1 });
      for (let i = 0; i < 127; i++) assert.equal(v.map({ host_addr: i }).status, GntSt.GNTST_okay);
      for (let i = 127; i < 255; i++) assert.equal(v.map({ host_addr: i, flags: GNTMAP_host_map | GNTMAP_readonly }).status, GntSt.GNTST_okay);
      assert.equal(st(v.map({ flags: GNTMAP_host_map | GNTMAP_readonly }).status), 'GNTST_no_space');
    });
  });

  describe('GNTTABOP_unmap_grant_ref status codes', () => {
    const ROWS: readonly { row: string; run: (w: World, h: GrantHandle, devBus: number) => GntSt; status: GntSt }[] = [
      { row: 'the handle map returned', run: (w, h, d) => w.unmap(h, { dev_bus_addr: d }), status: GntSt.GNTST_okay },
      { row: 'a handle never issued', run: (w) => w.unmap(grantHandle(4000)), status: GntSt.GNTST_bad_handle },
      { row: 'a free slot of an existing maptrack frame', run: (w) => w.unmap(grantHandle(5)), status: GntSt.GNTST_bad_handle },
      { row: 'the same handle twice', run: (w, h, d) => (w.unmap(h, { dev_bus_addr: d }), w.unmap(h, { dev_bus_addr: d })), status: GntSt.GNTST_bad_handle },
      { row: 'another domain\'s handle', run: (w, h) => w.unmap(h, { by: w.bystander }), status: GntSt.GNTST_bad_handle },
      { row: 'dev_bus_addr of another frame', run: (w, h, d) => w.unmap(h, { dev_bus_addr: d + 4096 }), status: GntSt.GNTST_bad_dev_addr },
      { row: 'host_addr that does not map the frame', run: (w, h) => w.unmap(h, { host_addr: HOST_ADDR + 4096 }), status: GntSt.GNTST_general_error },
    ];
    for (const r of ROWS) {
      it(`${r.row} -> ${st(r.status)}`, () => {
        const w = new World();
        w.grant();
        const m = w.map({ flags: GNTMAP_host_map | GNTMAP_device_map });
        assert.equal(st(r.run(w, m.handle, m.dev_bus_addr)), st(r.status));
      });
    }
  });

  describe('revocation while mapped (no forced revoke)', () => {
    it('end_foreign_access reports "still in use"; the mapping stays valid; after unmap it succeeds', () => {
      const w = new World();
      w.grant();
      const m = w.map();
      assert.equal(gnttabQueryForeignAccess(w.table(), REF), GTF_reading | GTF_writing);
      assert.equal(gnttabEndForeignAccessRef(w.table(), REF), false, 'still in use');
      assert.equal(w.flags(), GTF_permit_access | GTF_reading | GTF_writing, 'entry untouched');

      m.frame!.bytes[0] = 42;
      assert.equal(w.page(w.granter, GFN)[0], 42, 'mapper still writes the page');

      assert.equal(w.unmap(m.handle), GntSt.GNTST_okay);
      assert.equal(gnttabQueryForeignAccess(w.table(), REF), 0);
      assert.equal(gnttabEndForeignAccessRef(w.table(), REF), true);
      assert.equal(w.flags(), 0);
      assert.equal(st(w.map().status), 'GNTST_general_error', 'revoked for good');
    });

    it('a query is only a hint (XSA-396): a map landing after "not mapped" makes the atomic end fail, and Xen\'s active entry names the pinned frame', () => {
      const w = new World();
      w.grant();
      assert.equal(gnttabQueryForeignAccess(w.table(), REF), 0, 'not mapped yet');
      const m = w.map();
      assert.deepEqual(w.gnttab.activeEntries(w.granter), [{ ref: REF, domid: w.mapper.domid, gfn: GFN, pin: GNTPIN_hstw_inc }]);
      assert.equal(gnttabEndForeignAccessRef(w.table(), REF), false, 'the compare-and-swap sees GTF_reading|GTF_writing');
      m.frame!.bytes[1] = 7;
      assert.equal(w.page(w.granter, GFN)[1], 7, 'a granter trusting the query would reuse a page the mapper still writes');
      assert.equal(w.unmap(m.handle), GntSt.GNTST_okay);
      assert.deepEqual(w.gnttab.activeEntries(w.granter), []);
    });

    it('a granter overwriting its entry does not invalidate the mapping, and unmap still works', () => {
      const w = new World();
      w.grant();
      const m = w.map();
      w.grant({ to: w.bystander, gfn: 6, readonly: true }); // clobbers flags, domid and frame
      m.frame!.bytes[7] = 9;
      assert.equal(w.page(w.granter, GFN)[7], 9, 'the old frame is still the mapped one');
      assert.equal(w.page(w.granter, 6)[7], 0);
      assert.equal(w.unmap(m.handle), GntSt.GNTST_okay);
      assert.equal(w.granter.frame(GFN)!.foreignRefs, 0);
    });
  });

  describe('death with grants mapped', () => {
    it('the mapper dies: its mappings go, the granter\'s entries are cleared, the grant can be revoked', () => {
      const w = new World();
      w.grant();
      w.grant({ ref: grantRef(11), gfn: 6, readonly: true });
      w.map();
      w.map({ ref: 11, flags: GNTMAP_host_map | GNTMAP_readonly, host_addr: 1 });
      w.host.destroy(w.mapper);
      assert.equal(w.flags(), GTF_permit_access);
      assert.equal(w.flags(grantRef(11)), GTF_permit_access | GTF_readonly);
      assert.equal(w.granter.frame(GFN)!.foreignRefs, 0);
      assert.equal(gnttabEndForeignAccessRef(w.table(), REF), true);
      assert.equal(w.host.domains.has(w.mapper.domid), false, 'the mapper itself is freed');
      assert.deepEqual(w.trace.filter((e) => e.op === 'release_mappings').map((e) => [e.domid, e.dom, e.ref]), [
        [w.mapper.domid, w.granter.domid, 11],
        [w.mapper.domid, w.granter.domid, REF],
      ]);
    });

    it('the granter dies while mapped: a zombie keeps its domid until the mapper unmaps', () => {
      const w = new World();
      const id = w.granter.domid;
      w.grant();
      w.grant({ ref: grantRef(11), gfn: 6 });
      const m = w.map();
      w.host.destroy(w.granter);

      assert.equal(w.granter.runState, 'dead');
      assert.equal(w.host.domains.get(id), w.granter, 'still findable');
      assert.equal(w.host.domids.isUsed(id), true);
      assert.throws(() => w.host.createDomain({ domid: id }), /EEXIST/);

      m.frame!.bytes[1] = 5;
      assert.equal(w.page(w.granter, GFN)[1], 5, 'the page is still there');
      assert.equal(st(w.map({ ref: 11, host_addr: 2 }).status), 'GNTST_bad_page', 'no new pins on a dead domain');

      assert.equal(w.unmap(m.handle), GntSt.GNTST_okay, 'the late unmap succeeds');
      assert.equal(w.host.domains.has(id), false, 'zombie freed');
      assert.equal(w.host.domids.isUsed(id), false);
      assert.equal(w.host.createDomain({ domid: id }).domid, id, 'domid reusable');
    });

    it('a zombie whose last mapper dies is freed with it, table frames included', () => {
      const w = new World();
      const baseline = w.host.memory.allocated;
      w.grant();
      w.map();
      w.host.destroy(w.granter);
      assert.equal(w.host.domains.has(w.granter.domid), true);
      w.host.destroy(w.mapper);
      assert.equal(w.host.domains.has(w.granter.domid), false);
      // granter and mapper: 16 RAM frames, shared_info and one table frame each.
      assert.equal(w.host.memory.allocated, baseline - 2 * 18);
    });

    it('a domain mapping its own grant releases it when it dies', () => {
      const w = new World();
      w.grant({ to: w.granter });
      assert.equal(w.map({ by: w.granter }).status, GntSt.GNTST_okay);
      w.host.destroy(w.granter);
      assert.equal(w.host.domains.has(w.granter.domid), false);
    });
  });

  describe('GNTTABOP_copy', () => {
    const ptr = (u: GnttabCopyPtr['u'], domid: DomId, offset = 0): GnttabCopyPtr => ({ u, domid, offset });

    /** Rows copy from the mapper's own gfn 1 into the granter's grant REF, unless they say otherwise. */
    const ROWS: readonly { row: string; setup?: (w: World) => void; op: (w: World) => GnttabCopy; status: GntSt }[] = [
      {
        row: 'own gmfn -> writable grant', status: GntSt.GNTST_okay,
        op: (w) => ({ source: ptr({ gmfn: 1 }, DOMID_SELF), dest: ptr({ ref: REF }, w.granter.domid, 8), len: 16, flags: GNTCOPY_dest_gref }),
      },
      {
        row: 'readonly grant -> own gmfn (source only needs read)', status: GntSt.GNTST_okay, setup: (w) => w.grant({ readonly: true }),
        op: (w) => ({ source: ptr({ ref: REF }, w.granter.domid), dest: ptr({ gmfn: 1 }, DOMID_SELF), len: 16, flags: GNTCOPY_source_gref }),
      },
      {
        row: 'len 0 is a no-op, whatever the rest says', status: GntSt.GNTST_okay,
        op: () => ({ source: ptr({ gmfn: 999 }, domid(77), 5000), dest: ptr({ ref: grantRef(9999) }, domid(78)), len: 0, flags: 0 }),
      },
      {
        row: 'readonly grant as destination', status: GntSt.GNTST_general_error, setup: (w) => w.grant({ readonly: true }),
        op: (w) => ({ source: ptr({ gmfn: 1 }, DOMID_SELF), dest: ptr({ ref: REF }, w.granter.domid), len: 16, flags: GNTCOPY_dest_gref }),
      },
      {
        row: 'frame side named by a domid other than DOMID_SELF (even the caller\'s own)', status: GntSt.GNTST_permission_denied,
        op: (w) => ({ source: ptr({ gmfn: 1 }, w.mapper.domid), dest: ptr({ ref: REF }, w.granter.domid), len: 16, flags: GNTCOPY_dest_gref }),
      },
      {
        row: 'foreign frame without a grant', status: GntSt.GNTST_permission_denied,
        op: (w) => ({ source: ptr({ gmfn: 1 }, DOMID_SELF), dest: ptr({ gmfn: GFN }, w.granter.domid), len: 16, flags: 0 }),
      },
      {
        row: 'grant of an unknown domain', status: GntSt.GNTST_bad_domain,
        op: () => ({ source: ptr({ gmfn: 1 }, DOMID_SELF), dest: ptr({ ref: REF }, domid(77)), len: 16, flags: GNTCOPY_dest_gref }),
      },
      {
        row: 'ref beyond the table', status: GntSt.GNTST_bad_gntref,
        op: (w) => ({ source: ptr({ ref: grantRef(512) }, w.granter.domid), dest: ptr({ gmfn: 1 }, DOMID_SELF), len: 16, flags: GNTCOPY_source_gref }),
      },
      {
        row: 'invalid entry', status: GntSt.GNTST_general_error,
        op: (w) => ({ source: ptr({ ref: grantRef(11) }, w.granter.domid), dest: ptr({ gmfn: 1 }, DOMID_SELF), len: 16, flags: GNTCOPY_source_gref }),
      },
      {
        row: 'entry granted to another domain', status: GntSt.GNTST_general_error, setup: (w) => w.grant({ to: w.bystander }),
        op: (w) => ({ source: ptr({ ref: REF }, w.granter.domid), dest: ptr({ gmfn: 1 }, DOMID_SELF), len: 16, flags: GNTCOPY_source_gref }),
      },
      {
        row: 'own gmfn not populated', status: GntSt.GNTST_bad_page,
        op: (w) => ({ source: ptr({ gmfn: 999 }, DOMID_SELF), dest: ptr({ ref: REF }, w.granter.domid), len: 16, flags: GNTCOPY_dest_gref }),
      },
      {
        row: 'source offset + len > 4096', status: GntSt.GNTST_bad_copy_arg,
        op: (w) => ({ source: ptr({ gmfn: 1 }, DOMID_SELF, 4000), dest: ptr({ ref: REF }, w.granter.domid), len: 97, flags: GNTCOPY_dest_gref }),
      },
      {
        row: 'dest offset + len > 4096', status: GntSt.GNTST_bad_copy_arg,
        op: (w) => ({ source: ptr({ gmfn: 1 }, DOMID_SELF), dest: ptr({ ref: REF }, w.granter.domid, 1), len: 4096, flags: GNTCOPY_dest_gref }),
      },
      {
        row: 'offset + len == 4096 exactly', status: GntSt.GNTST_okay,
        op: (w) => ({ source: ptr({ gmfn: 1 }, DOMID_SELF, 96), dest: ptr({ ref: REF }, w.granter.domid, 4000), len: 96, flags: GNTCOPY_dest_gref }),
      },
      {
        row: 'grant pinned by another domain\'s mapping', status: GntSt.GNTST_general_error,
        setup: (w) => {
          w.grant({ to: w.bystander });
          assert.equal(w.map({ by: w.bystander }).status, GntSt.GNTST_okay);
          w.grant();
        },
        op: (w) => ({ source: ptr({ gmfn: 1 }, DOMID_SELF), dest: ptr({ ref: REF }, w.granter.domid), len: 16, flags: GNTCOPY_dest_gref }),
      },
    ];

    for (const r of ROWS) {
      it(`${r.row} -> ${st(r.status)}`, () => {
        const w = new World();
        w.grant();
        r.setup?.(w);
        const flagsBefore = w.flags();
        const pinBefore = w.gnttab.activePin(w.granter, REF);
        assert.equal(st(w.gnttab.copy(w.mapper, r.op(w)).status), st(r.status));
        assert.equal(w.flags(), flagsBefore, 'copy pins are transient: GTF_* as before');
        assert.equal(w.gnttab.activePin(w.granter, REF), pinBefore);
      });
    }

    it('copies the bytes, both ways, between the caller\'s frame and the granted one', () => {
      const w = new World();
      w.grant();
      w.page(w.mapper, 1).set([1, 2, 3, 4], 10);
      const out = w.gnttab.copy(w.mapper, {
        source: ptr({ gmfn: 1 }, DOMID_SELF, 10), dest: ptr({ ref: REF }, w.granter.domid, 100), len: 4, flags: GNTCOPY_dest_gref,
      });
      assert.equal(out.status, GntSt.GNTST_okay);
      assert.deepEqual([...w.page(w.granter, GFN).subarray(99, 105)], [0, 1, 2, 3, 4, 0]);
      const back = w.gnttab.copy(w.mapper, {
        source: ptr({ ref: REF }, w.granter.domid, 100), dest: ptr({ gmfn: 2 }, DOMID_SELF, 0), len: 4, flags: GNTCOPY_source_gref,
      });
      assert.equal(back.status, GntSt.GNTST_okay);
      assert.deepEqual([...w.page(w.mapper, 2).subarray(0, 4)], [1, 2, 3, 4]);
    });

    it('gref to gref: dom0 copies between two guests that both granted to it', () => {
      const w = new World();
      w.grant({ to: w.dom0, readonly: true });
      w.grant({ by: w.mapper, to: w.dom0, ref: grantRef(20), gfn: 3 });
      w.page(w.granter, GFN)[0] = 77;
      const res = w.gnttab.copy(w.dom0, {
        source: ptr({ ref: REF }, w.granter.domid), dest: ptr({ ref: grantRef(20) }, w.mapper.domid), len: 1,
        flags: GNTCOPY_source_gref | GNTCOPY_dest_gref,
      });
      assert.equal(res.status, GntSt.GNTST_okay);
      assert.equal(w.page(w.mapper, 3)[0], 77);
    });

    it('copying from a grant the caller itself maps keeps that mapping\'s flags', () => {
      const w = new World();
      w.grant();
      const m = w.map({ flags: GNTMAP_host_map | GNTMAP_readonly });
      const res = w.gnttab.copy(w.mapper, {
        source: ptr({ gmfn: 1 }, DOMID_SELF), dest: ptr({ ref: REF }, w.granter.domid), len: 8, flags: GNTCOPY_dest_gref,
      });
      assert.equal(res.status, GntSt.GNTST_okay);
      assert.equal(w.flags(), GTF_permit_access | GTF_reading, 'the transient write pin is gone, the read pin stays');
      assert.equal(w.unmap(m.handle), GntSt.GNTST_okay);
      assert.equal(w.flags(), GTF_permit_access);
    });

    it('a dying granter\'s grant cannot be copied, even while it is mapped', () => {
      const w = new World();
      w.grant();
      w.map();
      w.host.destroy(w.granter);
      const res = w.gnttab.copy(w.mapper, {
        source: ptr({ ref: REF }, w.granter.domid), dest: ptr({ gmfn: 1 }, DOMID_SELF), len: 8, flags: GNTCOPY_source_gref,
      });
      assert.equal(st(res.status), 'GNTST_bad_domain');
    });
  });

  describe('GNTTABOP_setup_table and GNTTABOP_query_size', () => {
    it('setup_table grows the table on demand and lists its first nr_frames frames', () => {
      const w = new World();
      const res = w.gnttab.setupTable(w.granter, { dom: DOMID_SELF, nr_frames: 4 });
      assert.equal(st(res.status), 'GNTST_okay');
      assert.equal(res.frame_list.length, 4);
      assert.deepEqual(res.frame_list, res.frames.map((f) => f.mfn));
      assert.ok(res.frames.every((f) => f.owner === w.granter.domid));
      assert.deepEqual(w.gnttab.querySize(w.granter, { dom: DOMID_SELF }), { status: GntSt.GNTST_okay, nr_frames: 4, max_nr_frames: 64 });
      // 4 frames: 2048 entries. Ref 2047 is mappable, 2048 is not.
      w.grant({ ref: grantRef(2047) });
      assert.equal(st(w.map({ ref: 2047 }).status), 'GNTST_okay');
      assert.equal(st(w.map({ ref: 2048 }).status), 'GNTST_bad_gntref');
      // Asking for fewer never shrinks it.
      assert.equal(w.gnttab.setupTable(w.granter, { dom: DOMID_SELF, nr_frames: 1 }).frame_list.length, 1);
      assert.equal(w.gnttab.querySize(w.granter, { dom: DOMID_SELF }).nr_frames, 4);
    });

    const ROWS: readonly { row: string; call: (w: World) => GntSt; status: GntSt }[] = [
      { row: 'setup_table, 64 frames (the default limit)', call: (w) => w.gnttab.setupTable(w.granter, { dom: DOMID_SELF, nr_frames: 64 }).status, status: GntSt.GNTST_okay },
      { row: 'setup_table, 65 frames', call: (w) => w.gnttab.setupTable(w.granter, { dom: DOMID_SELF, nr_frames: 65 }).status, status: GntSt.GNTST_general_error },
      {
        row: 'setup_table beyond a per-domain max_grant_frames', status: GntSt.GNTST_general_error,
        call: (w) => (w.gnttab.setLimits(w.granter, { maxGrantFrames: 2 }), w.gnttab.setupTable(w.granter, { dom: DOMID_SELF, nr_frames: 3 }).status),
      },
      { row: 'setup_table of an unknown domain', call: (w) => w.gnttab.setupTable(w.dom0, { dom: domid(77), nr_frames: 1 }).status, status: GntSt.GNTST_bad_domain },
      { row: 'setup_table of another domain by a DomU', call: (w) => w.gnttab.setupTable(w.mapper, { dom: w.granter.domid, nr_frames: 1 }).status, status: GntSt.GNTST_permission_denied },
      { row: 'setup_table of another domain by dom0', call: (w) => w.gnttab.setupTable(w.dom0, { dom: w.granter.domid, nr_frames: 1 }).status, status: GntSt.GNTST_okay },
      { row: 'query_size of an unknown domain', call: (w) => w.gnttab.querySize(w.dom0, { dom: domid(77) }).status, status: GntSt.GNTST_bad_domain },
      { row: 'query_size of another domain by a DomU', call: (w) => w.gnttab.querySize(w.mapper, { dom: w.granter.domid }).status, status: GntSt.GNTST_permission_denied },
      { row: 'query_size of another domain by dom0', call: (w) => w.gnttab.querySize(w.dom0, { dom: w.granter.domid }).status, status: GntSt.GNTST_okay },
    ];
    for (const r of ROWS) {
      it(`${r.row} -> ${st(r.status)}`, () => {
        assert.equal(st(r.call(new World())), st(r.status));
      });
    }
  });

  describe('dispatch (HYPERVISOR_grant_table_op)', () => {
    it('runs a batch, one status per op, and returns 0', () => {
      const w = new World();
      w.grant();
      const { rc, results } = w.gnttab.dispatch(w.mapper, GnttabOp.GNTTABOP_map_grant_ref, [
        { host_addr: 1, flags: GNTMAP_host_map, ref: REF, dom: w.granter.domid },
        { host_addr: 2, flags: GNTMAP_host_map, ref: grantRef(11), dom: w.granter.domid },
      ]);
      assert.equal(rc, 0);
      assert.deepEqual(results.map((r) => st(r.status)), ['GNTST_okay', 'GNTST_general_error']);
      assert.equal(results[0]!.frame, w.granter.frame(GFN));
    });

    const RC_ROWS: readonly { row: string; cmd: GnttabOp; count: number; rc: number }[] = [
      { row: 'setup_table with count 2', cmd: GnttabOp.GNTTABOP_setup_table, count: 2, rc: -Errno.EINVAL },
      { row: 'query_size with count 0', cmd: GnttabOp.GNTTABOP_query_size, count: 0, rc: -Errno.EINVAL },
      { row: 'transfer (not modelled)', cmd: GnttabOp.GNTTABOP_transfer, count: 1, rc: -Errno.ENOSYS },
      { row: 'set_version (v1 only)', cmd: GnttabOp.GNTTABOP_set_version, count: 1, rc: -Errno.ENOSYS },
      { row: 'an unknown command', cmd: 99 as GnttabOp, count: 1, rc: -Errno.ENOSYS },
    ];
    for (const r of RC_ROWS) {
      it(`${r.row} -> ${r.rc}`, () => {
        const w = new World();
        const ops = Array.from({ length: r.count }, () => ({ dom: DOMID_SELF, nr_frames: 1 }));
        assert.equal(w.gnttab.dispatch(w.mapper, r.cmd as GnttabOp.GNTTABOP_setup_table, ops).rc, r.rc);
      });
    }
  });

  describe('the domain builder and the trace', () => {
    it('seeds GNTTAB_RESERVED_XENSTORE for dom0, which can then map the xenstore ring', () => {
      const w = new World();
      w.gnttab.seedEntry(w.granter, GNTTAB_RESERVED_XENSTORE, w.dom0.domid, 15);
      assert.deepEqual(readGrantEntryV1(w.table(), GNTTAB_RESERVED_XENSTORE), { flags: GTF_permit_access, domid: 0, frame: 15 });
      const m = w.map({ by: w.dom0, ref: GNTTAB_RESERVED_XENSTORE });
      assert.equal(m.frame, w.granter.frame(15));
    });

    it('traces every op with kind gnttab, op, domid, ref and status', () => {
      const w = new World();
      w.grant();
      const m = w.map();
      w.unmap(m.handle);
      w.map({ ref: 11 });
      assert.deepEqual(w.trace.map((e) => [e.kind, e.op, e.domid, e.dom, e.ref, e.handle, e.status]), [
        ['gnttab', 'map_grant_ref', w.mapper.domid, w.granter.domid, REF, 0, GntSt.GNTST_okay],
        ['gnttab', 'unmap_grant_ref', w.mapper.domid, w.granter.domid, REF, 0, GntSt.GNTST_okay],
        ['gnttab', 'map_grant_ref', w.mapper.domid, w.granter.domid, 11, undefined, GntSt.GNTST_general_error],
      ]);
    });
  });
});
