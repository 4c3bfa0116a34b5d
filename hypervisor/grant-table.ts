// Grant tables v1, after xen/common/grant_table.c: the shared table in frames the domain owns,
// active entries with pin counts, the mapper's maptrack, and HYPERVISOR_grant_table_op.
//
// What the model keeps from Xen, on purpose:
//  - the shared entry is guest memory: Xen reads it and sets/clears GTF_reading/GTF_writing
//    with atomics on the same SharedArrayBuffer the granter writes;
//  - only the first pin validates the entry (type, domid); later maps by the same domain check
//    only GTF_readonly, and only when they add the first writable pin;
//  - there is no forced revoke: overwriting an entry leaves existing mappings alone;
//  - a mapper's death releases its mappings (gnttab_release_mappings); a granter's death
//    leaves a zombie (domid still taken) while its frames stay mapped.
// What it leaves out: v2 and transitive grants, transfer, unmap_and_replace, per-vCPU maptrack
// free lists (one list per domain), IOMMU and page-type accounting.
import type { Domain } from './domain.ts';
import { DomDying } from './domain.ts';
import { type DomainHooks, type Host, HypervisorError } from './host.ts';
import type { Frame } from './memory.ts';
import {
  GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly, GNTCOPY_dest_gref, GNTCOPY_source_gref,
  GRANT_ENTRIES_PER_PAGE_V1, GTF_permit_access, GTF_readonly, GTF_reading, GTF_sub_page,
  GTF_type_mask, GTF_writing, GntSt, GnttabOp, type GnttabCopy, type GnttabCopyResult,
  type GnttabMapGrantRef, type GnttabMapGrantRefResult, type GnttabOpArgs, type GnttabQuerySize,
  type GnttabQuerySizeResult, type GnttabSetupTable, type GnttabSetupTableResult,
  type GnttabUnmapGrantRef, type GnttabUnmapGrantRefResult, type GrantEntryV1Words,
  type GrantHandle, type GrantRef, copyPtrGmfn, copyPtrRef, grantEntryV1Words,
  gnttabGrantForeignAccessRef, grantHandle, grantRef,
} from './public/grant_table.ts';
import { type DomId, DOMID_SELF, Errno, XEN_PAGE_SIZE } from './public/xen.ts';
import { ShutdownReason } from './public/sched.ts';

/** gnttab_max_frames default. */
export const DEFAULT_MAX_GRANT_FRAMES = 64;
/** gnttab_max_maptrack_frames default. */
export const DEFAULT_MAX_MAPTRACK_FRAMES = 1024;
/** INITIAL_NR_GRANT_FRAMES: every table starts with one frame and grows on setup_table. */
export const INITIAL_NR_GRANT_FRAMES = 1;
/** MAPTRACK_PER_PAGE: 4096 / sizeof(struct grant_mapping) (16 bytes). */
export const MAPTRACK_PER_PAGE = XEN_PAGE_SIZE / 16;

// Pin counts: four 8-bit counters in one u32, as in the active entry.
export const GNTPIN_hstw_inc = 1 << 0;
export const GNTPIN_hstr_inc = 1 << 8;
export const GNTPIN_devw_inc = 1 << 16;
export const GNTPIN_devr_inc = 1 << 24;
const GNTPIN_hstw_mask = 0xff << 0;
const GNTPIN_devw_mask = 0xff << 16;
const WRITE_PINS = GNTPIN_hstw_mask | GNTPIN_devw_mask;
/** GNTPIN_incr2oflow_mask: a counter at 128 would overflow on the next increment. */
const oflowMask = (incr: number): number => (incr << 7) >>> 0;

/** What a grant-table operation looks like in the trace. */
export interface GnttabTraceEvent {
  readonly kind: 'gnttab';
  /** The GNTTABOP_ name without its prefix; release_mappings is domain_kill's implicit unmap. */
  readonly op: 'map_grant_ref' | 'unmap_grant_ref' | 'setup_table' | 'copy' | 'query_size' | 'release_mappings';
  /** The calling (or dying) domain. */
  readonly domid: DomId;
  /** The other domain: granter for map/unmap/release, the table's owner for setup/query. */
  readonly dom?: DomId;
  readonly ref?: GrantRef;
  readonly handle?: GrantHandle;
  readonly status: GntSt;
}

/** map_grant_ref's OUT record plus the frame itself, which the worker layer hands to the mapper. */
export interface MapGrantRefOutcome extends GnttabMapGrantRefResult {
  readonly frame?: Frame;
}
/** setup_table's OUT record plus the table frames, which the worker layer hands to the domain. */
export interface SetupTableOutcome extends GnttabSetupTableResult {
  readonly frames: readonly Frame[];
}

/** What dispatch() fills for each command. */
export interface GnttabDispatchResults {
  [GnttabOp.GNTTABOP_map_grant_ref]: MapGrantRefOutcome;
  [GnttabOp.GNTTABOP_unmap_grant_ref]: GnttabUnmapGrantRefResult;
  [GnttabOp.GNTTABOP_setup_table]: SetupTableOutcome;
  [GnttabOp.GNTTABOP_copy]: GnttabCopyResult;
  [GnttabOp.GNTTABOP_query_size]: GnttabQuerySizeResult;
}
export interface GnttabDispatch<C extends keyof GnttabOpArgs> {
  /** The hypercall's own return: 0, or -errno (-EINVAL, -ENOSYS). */
  readonly rc: number;
  readonly results: GnttabDispatchResults[C][];
}

/** Per-domain limits (XEN_DOMCTL_createdomain's max_grant_frames / max_maptrack_frames). */
export interface GrantLimits {
  readonly maxGrantFrames?: number;
  readonly maxMaptrackFrames?: number;
}

/** struct active_grant_entry: Xen's private shadow of a pinned shared entry. */
interface ActiveGrantEntry {
  pin: number;
  /** The domain holding the pins. */
  readonly domid: DomId;
  readonly frame: Frame;
  readonly gfn: number;
}

/** struct grant_mapping: one maptrack slot of the mapper. flags 0 = free. */
interface GrantMapping {
  ref: GrantRef;
  flags: number;
  domid: DomId;
}

/** struct grant_table of one domain. */
class GrantTable {
  /** The shared v1 entries, in frames the domain owns. */
  readonly frames: Frame[] = [];
  readonly active = new Map<number, ActiveGrantEntry>();
  readonly maptrack: GrantMapping[] = [];
  maptrackLimit = 0;
  /** The maptrack free list, head first; its last entry is never handed out (Xen's tail rule). */
  freeHandles: number[] = [];
  /** The host mappings grant maps created, by host_addr (what replace_grant_host_mapping checks). */
  readonly hostMappings = new Map<number, Frame>();

  constructor(public maxGrantFrames: number, public maxMaptrackFrames: number) {}

  get nrEntries(): number {
    return this.frames.length * GRANT_ENTRIES_PER_PAGE_V1;
  }

  entry(ref: number): GrantEntryV1Words {
    return grantEntryV1Words(this.frames.map((f) => f.bytes), ref);
  }
}

type Status = Exclude<GntSt, GntSt.GNTST_okay>;

export class GrantTables implements DomainHooks {
  private readonly tables = new Map<Domain, GrantTable>();
  private readonly listeners: ((ev: GnttabTraceEvent) => void)[] = [];
  private readonly maxGrantFrames: number;
  private readonly maxMaptrackFrames: number;

  constructor(readonly host: Host, opts: GrantLimits = {}) {
    this.maxGrantFrames = opts.maxGrantFrames ?? DEFAULT_MAX_GRANT_FRAMES;
    this.maxMaptrackFrames = opts.maxMaptrackFrames ?? DEFAULT_MAX_MAPTRACK_FRAMES;
    host.addHooks(this);
    for (const d of host.domains.values()) if (!this.tables.has(d)) this.domainCreated(d);
  }

  onTrace(f: (ev: GnttabTraceEvent) => void): void {
    this.listeners.push(f);
  }

  private trace(ev: Omit<GnttabTraceEvent, 'kind'>): void {
    if (this.listeners.length === 0) return;
    const full: GnttabTraceEvent = { kind: 'gnttab', ...ev };
    for (const f of this.listeners) f(full);
  }

  // ---- DomainHooks ----------------------------------------------------------------------------

  /** grant_table_init(): v1, one frame. */
  domainCreated(d: Domain): void {
    const gt = new GrantTable(this.maxGrantFrames, this.maxMaptrackFrames);
    this.tables.set(d, gt);
    if (!this.grow(d, gt, INITIAL_NR_GRANT_FRAMES)) throw new HypervisorError(Errno.ENOMEM, 'grant_table_init');
  }

  /** gnttab_release_mappings(): drop every mapping the dying domain holds. */
  domainKilled(d: Domain): void {
    const lgt = this.tables.get(d);
    if (!lgt) return;
    const granters = new Set<Domain>();
    for (let handle = lgt.maptrackLimit - 1; handle >= 0; handle--) {
      const map = lgt.maptrack[handle];
      if (!map || !(map.flags & (GNTMAP_device_map | GNTMAP_host_map))) continue;
      const rd = this.host.domains.get(map.domid);
      const rgt = rd && this.tables.get(rd);
      if (rd && rgt) {
        const act = rgt.active.get(map.ref);
        if (act) {
          this.dropPins(rgt, map.ref, act, map.flags);
          granters.add(rd);
        }
      }
      this.trace({ op: 'release_mappings', domid: d.domid, dom: map.domid, ref: map.ref, handle: grantHandle(handle), status: GntSt.GNTST_okay });
      map.flags = 0;
    }
    lgt.maptrack.length = 0;
    lgt.maptrackLimit = 0;
    lgt.freeHandles = [];
    lgt.hostMappings.clear();
    for (const rd of granters) if (rd !== d && rd.dying === DomDying.DOMDYING_dead) this.host.tryFree(rd);
  }

  /** grant_table_destroy(): the table frames go with the domain struct. */
  domainFreed(d: Domain): void {
    const gt = this.tables.get(d);
    if (!gt) return;
    for (const f of gt.frames) this.host.memory.release(f);
    this.tables.delete(d);
  }

  // ---- toolstack / builder side ---------------------------------------------------------------

  /** Per-domain limits, as xl's max_grant_frames / max_maptrack_frames set them at creation. */
  setLimits(d: Domain, limits: GrantLimits): void {
    const gt = this.table(d);
    if (limits.maxGrantFrames !== undefined) {
      if (limits.maxGrantFrames < INITIAL_NR_GRANT_FRAMES) throw new HypervisorError(Errno.EINVAL, 'max_grant_frames');
      gt.maxGrantFrames = limits.maxGrantFrames;
    }
    if (limits.maxMaptrackFrames !== undefined) gt.maxMaptrackFrames = limits.maxMaptrackFrames;
  }

  /** The domain's table frames (what setup_table lists). */
  tableFrames(d: Domain): readonly Frame[] {
    return this.table(d).frames;
  }

  /**
   * gnttab_seed_entry() / xc_dom_gnttab_seed(): the domain builder pre-fills a reserved entry
   * (GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE) for a backend domain.
   */
  seedEntry(d: Domain, ref: GrantRef, beDomid: DomId, gfn: number): void {
    gnttabGrantForeignAccessRef(this.table(d).frames.map((f) => f.bytes), ref, beDomid, gfn, false);
  }

  /** act->pin of (d, ref): 0 when not pinned. Introspection for tests and trace views. */
  activePin(d: Domain, ref: GrantRef): number {
    return this.tables.get(d)?.active.get(ref)?.pin ?? 0;
  }

  /** The pinned entries of a granter's table: who pins each and which of its frames (by gfn). */
  activeEntries(d: Domain): { ref: GrantRef; domid: DomId; gfn: number; pin: number }[] {
    const gt = this.tables.get(d);
    if (!gt) return [];
    return [...gt.active].map(([ref, act]) => ({ ref: grantRef(ref), domid: act.domid, gfn: act.gfn, pin: act.pin }));
  }

  /** The live maptrack entries of a mapper. */
  mappings(d: Domain): { handle: GrantHandle; dom: DomId; ref: GrantRef; flags: number }[] {
    const gt = this.tables.get(d);
    if (!gt) return [];
    const out: { handle: GrantHandle; dom: DomId; ref: GrantRef; flags: number }[] = [];
    gt.maptrack.forEach((m, h) => {
      if (m.flags) out.push({ handle: grantHandle(h), dom: m.domid, ref: m.ref, flags: m.flags });
    });
    return out;
  }

  // ---- HYPERVISOR_grant_table_op --------------------------------------------------------------

  /** do_grant_table_op(cmd, ops, count): 0 / -errno, per-op status in each result. */
  dispatch<C extends keyof GnttabOpArgs>(caller: Domain, cmd: C, ops: readonly GnttabOpArgs[C][]): GnttabDispatch<C> {
    const out = (rc: number, results: unknown[]): GnttabDispatch<C> => ({ rc, results: results as GnttabDispatchResults[C][] });
    switch (cmd as number) {
      case GnttabOp.GNTTABOP_map_grant_ref:
        return out(0, (ops as readonly GnttabMapGrantRef[]).map((op) => this.mapGrantRef(caller, op)));
      case GnttabOp.GNTTABOP_unmap_grant_ref:
        return out(0, (ops as readonly GnttabUnmapGrantRef[]).map((op) => this.unmapGrantRef(caller, op)));
      case GnttabOp.GNTTABOP_copy:
        return out(0, (ops as readonly GnttabCopy[]).map((op) => this.copy(caller, op)));
      case GnttabOp.GNTTABOP_setup_table:
        if (ops.length !== 1) return out(-Errno.EINVAL, []);
        return out(0, [this.setupTable(caller, ops[0] as GnttabSetupTable)]);
      case GnttabOp.GNTTABOP_query_size:
        if (ops.length !== 1) return out(-Errno.EINVAL, []);
        return out(0, [this.querySize(caller, ops[0] as GnttabQuerySize)]);
      default:
        // dump_table, transfer, unmap_and_replace, set_version, get_status_frames,
        // get_version, swap_grant_ref, cache_flush: not modelled (v1 only, no PV transfer).
        return out(-Errno.ENOSYS, []);
    }
  }

  /** GNTTABOP_map_grant_ref (map_grant_ref()). */
  mapGrantRef(caller: Domain, op: GnttabMapGrantRef): MapGrantRefOutcome {
    const ref = grantRef(op.ref);
    const dom = (op.dom & 0xffff) as DomId;
    const r = this.doMap(caller, op, ref, dom);
    const res: MapGrantRefOutcome = typeof r === 'number'
      ? { status: r, handle: grantHandle(0), dev_bus_addr: 0 }
      : { status: GntSt.GNTST_okay, handle: r.handle, dev_bus_addr: r.frame.mfn * XEN_PAGE_SIZE, frame: r.frame };
    this.trace({
      op: 'map_grant_ref', domid: caller.domid, dom, ref,
      handle: res.status === GntSt.GNTST_okay ? res.handle : undefined, status: res.status,
    });
    return res;
  }

  private doMap(ld: Domain, op: GnttabMapGrantRef, ref: GrantRef, dom: DomId): Status | { handle: GrantHandle; frame: Frame } {
    const ro = (op.flags & GNTMAP_readonly) !== 0;
    let pinIncr = 0;
    if (op.flags & GNTMAP_device_map) pinIncr += ro ? GNTPIN_devr_inc : GNTPIN_devw_inc;
    if (op.flags & GNTMAP_host_map) pinIncr += ro ? GNTPIN_hstr_inc : GNTPIN_hstw_inc;
    if (!pinIncr) return GntSt.GNTST_bad_gntref;

    // rcu_lock_domain_by_id(): a real id only (DOMID_SELF is not one); zombies are still found.
    const rd = this.host.domains.get(dom);
    if (!rd) return GntSt.GNTST_bad_domain;
    const lgt = this.table(ld);
    const handle = this.getMaptrackHandle(lgt);
    if (handle === undefined) return GntSt.GNTST_no_space;

    const fail = (rc: Status): Status => {
      this.putMaptrackHandle(lgt, handle);
      return rc;
    };
    const rgt = this.table(rd);
    if (ref >= rgt.nrEntries) return fail(GntSt.GNTST_bad_gntref);
    const shah = rgt.entry(ref);
    let act = rgt.active.get(ref);
    // Already pinned: only by the same domain, and no counter may overflow.
    if (act && (act.domid !== ld.domid || (act.pin & oflowMask(pinIncr)) !== 0)) return fail(GntSt.GNTST_general_error);

    if (!act || (!ro && !(act.pin & WRITE_PINS))) {
      const rc = setStatusV1(shah, act?.pin ?? 0, ro, true, ld.domid);
      if (rc !== GntSt.GNTST_okay) return fail(rc);
      if (!act) {
        const gfn = Atomics.load(shah.u32, 1);
        const frame = getPagedFrame(rd, gfn);
        if (typeof frame === 'number') {
          reduceStatusForPin(shah, 0, ro);
          return fail(frame);
        }
        act = { pin: 0, domid: ld.domid, frame, gfn };
        rgt.active.set(ref, act);
      }
    }
    // A pinned entry of a dying granter can still take more maps by its pinner: Xen's page
    // reference succeeds while the frame is still owned (the zombie case).
    act.pin += pinIncr;

    // One page reference per mapping kind, as map_grant_ref takes them.
    if (op.flags & GNTMAP_device_map) act.frame.foreignRefs++;
    if (op.flags & GNTMAP_host_map) {
      act.frame.foreignRefs++;
      lgt.hostMappings.set(op.host_addr, act.frame);
    }
    lgt.maptrack[handle] = { ref, flags: op.flags, domid: rd.domid };
    return { handle: grantHandle(handle), frame: act.frame };
  }

  /** GNTTABOP_unmap_grant_ref (unmap_common() + unmap_common_complete()). */
  unmapGrantRef(caller: Domain, op: GnttabUnmapGrantRef): GnttabUnmapGrantRefResult {
    const handle = grantHandle(op.handle);
    const lgt = this.table(caller);
    const map = handle < lgt.maptrackLimit ? lgt.maptrack[handle] : undefined;
    let status: GntSt;
    let rd: Domain | undefined;
    if (!map || !map.flags) {
      status = GntSt.GNTST_bad_handle;
    } else if (!(rd = this.host.domains.get(map.domid))) {
      // Cannot happen while the granter is a zombie; Xen crashes the caller ("naughty").
      this.host.shutdown(caller, ShutdownReason.SHUTDOWN_crash);
      status = GntSt.GNTST_general_error;
    } else {
      status = this.doUnmap(lgt, handle, map, rd, op);
    }
    this.trace({ op: 'unmap_grant_ref', domid: caller.domid, dom: map?.domid, ref: map?.ref, handle, status });
    if (status === GntSt.GNTST_okay && rd && rd.dying === DomDying.DOMDYING_dead) this.host.tryFree(rd);
    return { status };
  }

  private doUnmap(lgt: GrantTable, handle: number, map: GrantMapping, rd: Domain, op: GnttabUnmapGrantRef): GntSt {
    const rgt = this.table(rd);
    const act = map.ref < rgt.nrEntries ? rgt.active.get(map.ref) : undefined;
    if (!act) return GntSt.GNTST_bad_handle;
    const flags = map.flags;
    const devBusAddr = act.frame.mfn * XEN_PAGE_SIZE;
    if (op.dev_bus_addr && (flags & GNTMAP_device_map) && op.dev_bus_addr !== devBusAddr) return GntSt.GNTST_bad_dev_addr;

    let done = 0;
    if (op.host_addr && (flags & GNTMAP_host_map)) {
      // replace_grant_host_mapping(): the address must still map this frame.
      if (lgt.hostMappings.get(op.host_addr) !== act.frame) return GntSt.GNTST_general_error;
      lgt.hostMappings.delete(op.host_addr);
      map.flags &= ~GNTMAP_host_map;
      done |= GNTMAP_host_map;
    }
    if (op.dev_bus_addr && (flags & GNTMAP_device_map)) {
      map.flags &= ~GNTMAP_device_map;
      done |= GNTMAP_device_map;
    }
    if (!(map.flags & (GNTMAP_device_map | GNTMAP_host_map))) {
      map.flags = 0;
      this.putMaptrackHandle(lgt, handle);
    }
    if (done) this.dropPins(rgt, map.ref, act, done | (flags & GNTMAP_readonly));
    // gnttab_mark_dirty(): a page another domain had writable may have changed under log-dirty.
    if (done && !(flags & GNTMAP_readonly)) rd.logDirty?.markDirtyFrame(act.frame);
    return GntSt.GNTST_okay;
  }

  /** Undo the pins and page references of the mapping kinds in `flags`, then fix the status bits. */
  private dropPins(rgt: GrantTable, ref: GrantRef, act: ActiveGrantEntry, flags: number): void {
    const ro = (flags & GNTMAP_readonly) !== 0;
    if (flags & GNTMAP_device_map) {
      act.pin -= ro ? GNTPIN_devr_inc : GNTPIN_devw_inc;
      act.frame.foreignRefs--;
    }
    if (flags & GNTMAP_host_map) {
      act.pin -= ro ? GNTPIN_hstr_inc : GNTPIN_hstw_inc;
      act.frame.foreignRefs--;
    }
    reduceStatusForPin(rgt.entry(ref), act.pin, ro);
    if (act.pin === 0) rgt.active.delete(ref);
  }

  /** GNTTABOP_setup_table: grow the table to at least nr_frames and list its first nr_frames. */
  setupTable(caller: Domain, op: GnttabSetupTable): SetupTableOutcome {
    const nr = op.nr_frames >>> 0;
    const d = this.host.lookup(op.dom & 0xffff, caller);
    let res: SetupTableOutcome;
    if (!d) {
      res = { status: GntSt.GNTST_bad_domain, frame_list: [], frames: [] };
    } else if (d !== caller && !caller.privileged) {
      res = { status: GntSt.GNTST_permission_denied, frame_list: [], frames: [] };
    } else {
      const gt = this.table(d);
      if (nr > gt.maxGrantFrames || (nr > gt.frames.length && !this.grow(d, gt, nr))) {
        res = { status: GntSt.GNTST_general_error, frame_list: [], frames: [] };
      } else {
        const frames = gt.frames.slice(0, nr);
        res = { status: GntSt.GNTST_okay, frame_list: frames.map((f) => f.mfn), frames };
      }
    }
    this.trace({ op: 'setup_table', domid: caller.domid, dom: d?.domid, status: res.status });
    return res;
  }

  /** GNTTABOP_query_size. */
  querySize(caller: Domain, op: GnttabQuerySize): GnttabQuerySizeResult {
    const d = this.host.lookup(op.dom & 0xffff, caller);
    let res: GnttabQuerySizeResult;
    if (!d) res = { status: GntSt.GNTST_bad_domain, nr_frames: 0, max_nr_frames: 0 };
    else if (d !== caller && !caller.privileged) res = { status: GntSt.GNTST_permission_denied, nr_frames: 0, max_nr_frames: 0 };
    else {
      const gt = this.table(d);
      res = { status: GntSt.GNTST_okay, nr_frames: gt.frames.length, max_nr_frames: gt.maxGrantFrames };
    }
    this.trace({ op: 'query_size', domid: caller.domid, dom: d?.domid, status: res.status });
    return res;
  }

  /** GNTTABOP_copy (gnttab_copy_one()): each side by grant ref, or by the caller's own gmfn. */
  copy(caller: Domain, op: GnttabCopy): GnttabCopyResult {
    const status = this.doCopy(caller, op);
    const side = op.flags & GNTCOPY_source_gref ? op.source : op.dest;
    const byRef = (op.flags & (GNTCOPY_source_gref | GNTCOPY_dest_gref)) !== 0;
    this.trace({
      op: 'copy', domid: caller.domid, dom: (side.domid & 0xffff) as DomId,
      ref: byRef ? copyPtrRef(side) : undefined, status,
    });
    return { status };
  }

  private doCopy(ld: Domain, op: GnttabCopy): GntSt {
    const len = op.len & 0xffff;
    if (!len) return GntSt.GNTST_okay;
    const srcGref = (op.flags & GNTCOPY_source_gref) !== 0;
    const destGref = (op.flags & GNTCOPY_dest_gref) !== 0;

    // gnttab_copy_lock_domains(): only DOMID_SELF may be named by frame.
    const sd = this.copyLockDomain(ld, op.source.domid & 0xffff, srcGref);
    if (typeof sd === 'number') return sd;
    const dd = this.copyLockDomain(ld, op.dest.domid & 0xffff, destGref);
    if (typeof dd === 'number') return dd;

    const src = this.copyClaimBuf(ld, sd, op.source, srcGref, true);
    if (typeof src === 'number') return src;
    const dest = this.copyClaimBuf(ld, dd, op.dest, destGref, false);
    if (typeof dest === 'number') {
      src.release();
      return dest;
    }
    let rc: GntSt = GntSt.GNTST_okay;
    const soff = op.source.offset & 0xffff;
    const doff = op.dest.offset & 0xffff;
    if (soff + len > XEN_PAGE_SIZE || doff + len > XEN_PAGE_SIZE) rc = GntSt.GNTST_bad_copy_arg;
    else {
      dest.frame.bytes.set(src.frame.bytes.subarray(soff, soff + len), doff);
      // __gnttab_copy()'s paging_mark_dirty(): Xen wrote the page, no guest write fault says so.
      dd.logDirty?.markDirtyFrame(dest.frame);
    }
    src.release();
    dest.release();
    return rc;
  }

  private copyLockDomain(ld: Domain, domid: number, isGref: boolean): Domain | Status {
    if (domid !== DOMID_SELF && !isGref) return GntSt.GNTST_permission_denied;
    return this.host.lookup(domid, ld) ?? GntSt.GNTST_bad_domain;
  }

  /** gnttab_copy_claim_buf(): a frame to read (source) or write (dest), with a release. */
  private copyClaimBuf(
    ld: Domain, d: Domain, ptr: GnttabCopy['source'], isGref: boolean, readonly: boolean,
  ): { frame: Frame; release: () => void } | Status {
    if (!isGref) {
      const frame = getPagedFrame(d, copyPtrGmfn(ptr));
      return typeof frame === 'number' ? frame : { frame, release: () => {} };
    }
    const ref = copyPtrRef(ptr);
    const frame = this.acquireGrantForCopy(d, ref, ld.domid, readonly);
    if (typeof frame === 'number') return frame;
    return { frame, release: () => this.releaseGrantForCopy(d, ref, readonly) };
  }

  /** acquire_grant_for_copy() (v1, no transitive grants): a transient host pin. */
  private acquireGrantForCopy(rd: Domain, ref: GrantRef, ldom: DomId, readonly: boolean): Frame | Status {
    const rgt = this.table(rd);
    if (ref >= rgt.nrEntries) return GntSt.GNTST_bad_gntref;
    const shah = rgt.entry(ref);
    const pinIncr = readonly ? GNTPIN_hstr_inc : GNTPIN_hstw_inc;
    let act = rgt.active.get(ref);
    if (act && (act.domid !== ldom || (act.pin & oflowMask(pinIncr)) !== 0)) return GntSt.GNTST_general_error;
    const oldPin = act?.pin ?? 0;
    if (!oldPin || (!readonly && !(oldPin & WRITE_PINS))) {
      const rc = setStatusV1(shah, oldPin, readonly, false, ldom);
      if (rc !== GntSt.GNTST_okay) return rc;
      const frame = getPagedFrame(rd, Atomics.load(shah.u32, 1));
      if (typeof frame === 'number') {
        reduceStatusForPin(shah, oldPin, readonly);
        return frame;
      }
      if (!act) {
        act = { pin: 0, domid: ldom, frame, gfn: Atomics.load(shah.u32, 1) };
        rgt.active.set(ref, act);
      } else if (act.frame !== frame) {
        // The granter pointed the entry elsewhere since the first pin.
        reduceStatusForPin(shah, oldPin, readonly);
        return GntSt.GNTST_general_error;
      }
    } else if (rd.dying !== DomDying.DOMDYING_alive) {
      return GntSt.GNTST_bad_domain;
    }
    act!.pin += pinIncr;
    return act!.frame;
  }

  /** release_grant_for_copy(). */
  private releaseGrantForCopy(rd: Domain, ref: GrantRef, readonly: boolean): void {
    const rgt = this.table(rd);
    const act = rgt.active.get(ref);
    if (!act) return;
    act.pin -= readonly ? GNTPIN_hstr_inc : GNTPIN_hstw_inc;
    reduceStatusForPin(rgt.entry(ref), act.pin, readonly);
    if (act.pin === 0) rgt.active.delete(ref);
  }

  // ---- internals ------------------------------------------------------------------------------

  private table(d: Domain): GrantTable {
    const gt = this.tables.get(d);
    if (!gt) throw new Error(`d${d.domid} has no grant table`);
    return gt;
  }

  /** gnttab_grow_table(): new frames are owned by the domain and zeroed. */
  private grow(d: Domain, gt: GrantTable, nr: number): boolean {
    const added: Frame[] = [];
    while (gt.frames.length + added.length < nr) {
      const f = this.host.memory.allocate(d.domid);
      if (!f) {
        for (const g of added) this.host.memory.release(g);
        return false;
      }
      added.push(f);
    }
    gt.frames.push(...added);
    return true;
  }

  /**
   * get_maptrack_handle(): take the free-list head, but never its last entry (the tail); when only
   * the tail is left, add a maptrack frame (its first slot is the handle, the rest go to the head).
   */
  private getMaptrackHandle(gt: GrantTable): number | undefined {
    if (gt.freeHandles.length >= 2) return gt.freeHandles.shift();
    if (gt.maptrackLimit / MAPTRACK_PER_PAGE >= gt.maxMaptrackFrames) return undefined;
    const handle = gt.maptrackLimit;
    const fresh: number[] = [];
    for (let i = 1; i < MAPTRACK_PER_PAGE; i++) fresh.push(handle + i);
    gt.freeHandles = [...fresh, ...gt.freeHandles];
    gt.maptrackLimit += MAPTRACK_PER_PAGE;
    return handle;
  }

  /** put_maptrack_handle(): back on the tail, so handles are reused in FIFO order. */
  private putMaptrackHandle(gt: GrantTable, handle: number): void {
    gt.freeHandles.push(handle);
  }
}

/**
 * _set_status_v1(): set GTF_reading (and GTF_writing) with a cmpxchg on flags|domid. An
 * unpinned entry must be permit_access (not sub_page, for maps) for this domain; a writable
 * pin needs no GTF_readonly. Five lost races and the entry counts as unstable.
 */
function setStatusV1(shah: GrantEntryV1Words, pin: number, readonly: boolean, mapflag: boolean, ldomid: DomId): GntSt {
  const mask = GTF_type_mask | (mapflag ? GTF_sub_page : 0);
  let scombo = Atomics.load(shah.u32, 0);
  for (let retries = 0; ; retries++) {
    const flags = scombo & 0xffff;
    if (!pin && ((flags & mask) !== GTF_permit_access || scombo >>> 16 !== ldomid)) return GntSt.GNTST_general_error;
    let nflags = flags | GTF_reading;
    if (!readonly) {
      nflags |= GTF_writing;
      if (flags & GTF_readonly) return GntSt.GNTST_general_error;
    }
    const next = ((scombo & 0xffff0000) | nflags) >>> 0;
    const prev = Atomics.compareExchange(shah.u32, 0, scombo, next);
    if (prev === scombo) return GntSt.GNTST_okay;
    if (retries === 4) return GntSt.GNTST_general_error;
    scombo = prev;
  }
}

/** reduce_status_for_pin(): clear GTF_writing with the last write pin, GTF_reading with the last pin. */
function reduceStatusForPin(shah: GrantEntryV1Words, pin: number, readonly: boolean): void {
  let clear = pin ? 0 : GTF_reading;
  if (!readonly && !(pin & WRITE_PINS)) clear |= GTF_writing;
  if (clear) Atomics.and(shah.u16, 0, ~clear & 0xffff);
}

/**
 * get_paged_frame(): the granter's frame at gfn. A dying domain's p2m is gone (bad_page), and a
 * frame it only maps from someone else cannot be passed on (p2m_is_foreign: bad_page).
 */
function getPagedFrame(rd: Domain, gfn: number): Frame | Status {
  if (rd.dying !== DomDying.DOMDYING_alive) return GntSt.GNTST_bad_page;
  const f = rd.frame(gfn);
  if (!f || f.owner !== rd.domid) return GntSt.GNTST_bad_page;
  return f;
}
