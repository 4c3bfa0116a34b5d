// xen/include/public/grant_table.h: grant table v1 ABI (entry layout, GTF_* flags, GNTTABOP_*
// commands and their argument records, GNTMAP_* / GNTCOPY_* flags, GNTST_* status codes),
// plus the guest-side accessors Linux uses on its own shared table (drivers/xen/grant-table.c).
// Shared by the hypervisor model and guest kernels; only the v1 layout is modelled.
import { XEN_PAGE_SIZE, type DomId } from './xen.ts';

declare const grantRefBrand: unique symbol;
/** grant_ref_t: index into a granter's table. */
export type GrantRef = number & { readonly [grantRefBrand]: true };
export const grantRef = (n: number): GrantRef => (n >>> 0) as GrantRef;

declare const grantHandleBrand: unique symbol;
/** grant_handle_t: index into the mapper's maptrack, returned by map_grant_ref. */
export type GrantHandle = number & { readonly [grantHandleBrand]: true };
export const grantHandle = (n: number): GrantHandle => (n >>> 0) as GrantHandle;

/** struct grant_entry_v1: u16 flags @0, u16 domid @2, u32 frame @4. */
export const GrantEntryV1 = {
  flags: 0,
  domid: 2,
  frame: 4,
  SIZE: 8,
} as const;
/** v1 entries per table frame (4096 / 8). */
export const GRANT_ENTRIES_PER_PAGE_V1 = XEN_PAGE_SIZE / GrantEntryV1.SIZE;

/** Refs 0-7 survive version changes and may be pre-filled by the domain builder. */
export const GNTTAB_NR_RESERVED_ENTRIES = 8;
export const GNTTAB_RESERVED_CONSOLE = 0 as GrantRef;
export const GNTTAB_RESERVED_XENSTORE = 1 as GrantRef;

// Entry type: flags & GTF_type_mask.
export const GTF_invalid = 0;
export const GTF_permit_access = 1;
export const GTF_accept_transfer = 2;
export const GTF_transitive = 3;
export const GTF_type_mask = 3;
// GTF_permit_access sub-flags.
/** Granter: the grantee may only read. */
export const GTF_readonly = 1 << 2;
/** Xen: the frame is pinned/mapped for reading. */
export const GTF_reading = 1 << 3;
/** Xen: the frame is pinned/mapped for writing. */
export const GTF_writing = 1 << 4;
export const GTF_PWT = 1 << 5;
export const GTF_PCD = 1 << 6;
export const GTF_PAT = 1 << 7;
/** v2 sub-page grant: copy only, never mappable. */
export const GTF_sub_page = 1 << 8;
// GTF_accept_transfer sub-flags (same bit positions as readonly/reading).
export const GTF_transfer_committed = 1 << 2;
export const GTF_transfer_completed = 1 << 3;

/** HYPERVISOR_grant_table_op commands. */
export enum GnttabOp {
  GNTTABOP_map_grant_ref = 0,
  GNTTABOP_unmap_grant_ref = 1,
  GNTTABOP_setup_table = 2,
  GNTTABOP_dump_table = 3,
  GNTTABOP_transfer = 4,
  GNTTABOP_copy = 5,
  GNTTABOP_query_size = 6,
  GNTTABOP_unmap_and_replace = 7,
  GNTTABOP_set_version = 8,
  GNTTABOP_get_status_frames = 9,
  GNTTABOP_get_version = 10,
  GNTTABOP_swap_grant_ref = 11,
  GNTTABOP_cache_flush = 12,
}

/** enum grant_status: per-op results (the hypercall itself returns 0 / -errno). */
export enum GntSt {
  GNTST_okay = 0,
  GNTST_general_error = -1,
  GNTST_bad_domain = -2,
  GNTST_bad_gntref = -3,
  GNTST_bad_handle = -4,
  GNTST_bad_virt_addr = -5,
  GNTST_bad_dev_addr = -6,
  GNTST_no_device_space = -7,
  GNTST_permission_denied = -8,
  GNTST_bad_page = -9,
  GNTST_bad_copy_arg = -10,
  GNTST_address_too_big = -11,
  GNTST_eagain = -12,
  GNTST_no_space = -13,
}

/** GNTTABOP_error_msgs, indexed by -status. */
export const GNTTABOP_error_msgs: readonly string[] = [
  'okay',
  'undefined error',
  'unrecognised domain id',
  'invalid grant reference',
  'invalid mapping handle',
  'invalid virtual address',
  'invalid device address',
  'no spare translation slot in the I/O MMU',
  'permission denied',
  'bad page',
  'copy arguments cross page boundary',
  'page address size too large',
  'operation not done; try again',
  'out of space',
];

// GNTMAP_* (gnttab_map_grant_ref.flags).
export const GNTMAP_device_map = 1 << 0;
export const GNTMAP_host_map = 1 << 1;
export const GNTMAP_readonly = 1 << 2;
export const GNTMAP_application_map = 1 << 3;
export const GNTMAP_contains_pte = 1 << 4;
export const GNTMAP_guest_avail_mask = 0xffff0000;

// GNTCOPY_* (gnttab_copy.flags): which sides are given as grant refs.
export const GNTCOPY_source_gref = 1 << 0;
export const GNTCOPY_dest_gref = 1 << 1;

/** struct gnttab_map_grant_ref, IN part. */
export interface GnttabMapGrantRef {
  /** Where the mapper wants the frame (a guest virtual or physical address, u64). */
  readonly host_addr: number;
  /** GNTMAP_*. */
  readonly flags: number;
  readonly ref: GrantRef;
  /** The granter. DOMID_SELF is not accepted (bad_domain), as in Xen. */
  readonly dom: DomId;
}
/** struct gnttab_map_grant_ref, OUT part. */
export interface GnttabMapGrantRefResult {
  readonly status: GntSt;
  readonly handle: GrantHandle;
  /** Machine address of the frame (mfn << 12). */
  readonly dev_bus_addr: number;
}

/** struct gnttab_unmap_grant_ref, IN part. A zero address means "not that part". */
export interface GnttabUnmapGrantRef {
  readonly host_addr: number;
  readonly dev_bus_addr: number;
  readonly handle: GrantHandle;
}
export interface GnttabUnmapGrantRefResult {
  readonly status: GntSt;
}

/** struct gnttab_setup_table, IN part. */
export interface GnttabSetupTable {
  readonly dom: DomId;
  readonly nr_frames: number;
}
export interface GnttabSetupTableResult {
  readonly status: GntSt;
  /** xen_pfn_t frame_list[nr_frames]: the table frames (machine frames, as a PV guest sees them). */
  readonly frame_list: readonly number[];
}

/** struct gnttab_query_size, IN part. */
export interface GnttabQuerySize {
  readonly dom: DomId;
}
export interface GnttabQuerySizeResult {
  readonly status: GntSt;
  readonly nr_frames: number;
  readonly max_nr_frames: number;
}

/**
 * struct gnttab_copy_ptr. `u` is a C union of `grant_ref_t ref` and `xen_pfn_t gmfn`; the
 * GNTCOPY_*_gref flag says which one Xen reads (and, as in C, reading the other member of the
 * union reinterprets the same bytes).
 */
export interface GnttabCopyPtr {
  readonly u: { readonly ref: GrantRef } | { readonly gmfn: number };
  readonly domid: DomId;
  readonly offset: number;
}
/** struct gnttab_copy, IN part. */
export interface GnttabCopy {
  readonly source: GnttabCopyPtr;
  readonly dest: GnttabCopyPtr;
  readonly len: number;
  /** GNTCOPY_*. */
  readonly flags: number;
}
export interface GnttabCopyResult {
  readonly status: GntSt;
}

/** copy_ptr.u.ref, whichever member was written (the low 32 bits of the union). */
export function copyPtrRef(p: GnttabCopyPtr): GrantRef {
  return 'ref' in p.u ? p.u.ref : grantRef(p.u.gmfn % 2 ** 32);
}
/** copy_ptr.u.gmfn, whichever member was written. */
export function copyPtrGmfn(p: GnttabCopyPtr): number {
  return 'gmfn' in p.u ? p.u.gmfn : p.u.ref;
}

/** The argument record each implemented command takes. */
export interface GnttabOpArgs {
  [GnttabOp.GNTTABOP_map_grant_ref]: GnttabMapGrantRef;
  [GnttabOp.GNTTABOP_unmap_grant_ref]: GnttabUnmapGrantRef;
  [GnttabOp.GNTTABOP_setup_table]: GnttabSetupTable;
  [GnttabOp.GNTTABOP_copy]: GnttabCopy;
  [GnttabOp.GNTTABOP_query_size]: GnttabQuerySize;
}
/** The OUT record each implemented command fills. */
export interface GnttabOpResults {
  [GnttabOp.GNTTABOP_map_grant_ref]: GnttabMapGrantRefResult;
  [GnttabOp.GNTTABOP_unmap_grant_ref]: GnttabUnmapGrantRefResult;
  [GnttabOp.GNTTABOP_setup_table]: GnttabSetupTableResult;
  [GnttabOp.GNTTABOP_copy]: GnttabCopyResult;
  [GnttabOp.GNTTABOP_query_size]: GnttabQuerySizeResult;
}

// ---------------------------------------------------------------------------------------------
// The shared table as memory: one Uint8Array per table frame, ref r at page r / 512, slot r % 512.

/** A grant table as the guest (or Xen) sees it: its frames in order, or a single frame. */
export type GrantTablePages = Uint8Array | readonly Uint8Array[];

/**
 * Word views of one v1 entry, for atomic access: `u16[0]` flags, `u16[1]` domid, `u32[0]` the
 * flags|domid<<16 combo Xen cmpxchg's, `u32[1]` frame. Little endian, as on every Xen host.
 */
export interface GrantEntryV1Words {
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
}

export function grantEntryV1Words(table: GrantTablePages, ref: number): GrantEntryV1Words {
  const pages: readonly Uint8Array[] = table instanceof Uint8Array ? [table] : table;
  const page = pages[Math.floor(ref / GRANT_ENTRIES_PER_PAGE_V1)];
  if (!Number.isInteger(ref) || ref < 0 || !page) throw new RangeError(`grant ref ${ref} is outside the table`);
  const off = page.byteOffset + (ref % GRANT_ENTRIES_PER_PAGE_V1) * GrantEntryV1.SIZE;
  return { u16: new Uint16Array(page.buffer, off, 4), u32: new Uint32Array(page.buffer, off, 2) };
}

/** A snapshot of one v1 entry. */
export interface GrantEntryV1Value {
  readonly flags: number;
  readonly domid: DomId;
  readonly frame: number;
}

export function readGrantEntryV1(table: GrantTablePages, ref: number): GrantEntryV1Value {
  const w = grantEntryV1Words(table, ref);
  const combo = Atomics.load(w.u32, 0);
  return { flags: combo & 0xffff, domid: (combo >>> 16) as DomId, frame: Atomics.load(w.u32, 1) };
}

/**
 * Linux gnttab_grant_foreign_access_ref() (v1 update_entry): domid, frame, barrier, then flags,
 * so Xen never sees a valid type with a stale domid or frame.
 */
export function gnttabGrantForeignAccessRef(
  table: GrantTablePages, ref: GrantRef, domid: DomId, frame: number, readonly: boolean,
): void {
  const w = grantEntryV1Words(table, ref);
  Atomics.store(w.u16, 1, domid);
  Atomics.store(w.u32, 1, frame);
  Atomics.store(w.u16, 0, GTF_permit_access | (readonly ? GTF_readonly : 0));
}

/**
 * Linux gnttab_end_foreign_access_ref() (v1): clears the entry with a compare-and-swap of the
 * flags, but only while neither GTF_reading nor GTF_writing is set. Returns false when the grant
 * is still in use (Linux logs "g.e. … still in use" and retries later); the entry is untouched.
 */
export function gnttabEndForeignAccessRef(table: GrantTablePages, ref: GrantRef): boolean {
  const w = grantEntryV1Words(table, ref);
  let flags = Atomics.load(w.u16, 0);
  for (;;) {
    if (flags & (GTF_reading | GTF_writing)) return false;
    const prev = Atomics.compareExchange(w.u16, 0, flags, 0);
    if (prev === flags) return true;
    flags = prev;
  }
}

/** Linux gnttab_query_foreign_access(): non-zero while the grantee has the frame pinned. */
export function gnttabQueryForeignAccess(table: GrantTablePages, ref: GrantRef): number {
  return Atomics.load(grantEntryV1Words(table, ref).u16, 0) & (GTF_reading | GTF_writing);
}
