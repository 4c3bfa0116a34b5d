// xen/include/public/xen.h: domain ids, VIRQs, shared_info / vcpu_info layout, errno values.

declare const domIdBrand: unique symbol;
/** domid_t. */
export type DomId = number & { readonly [domIdBrand]: true };
export const domid = (n: number): DomId => (n & 0xffff) as DomId;

export const DOMID_FIRST_RESERVED = 0x7ff0;
export const DOMID_SELF = 0x7ff0 as DomId;
export const DOMID_IO = 0x7ff1 as DomId;
export const DOMID_XEN = 0x7ff2 as DomId;
export const DOMID_COW = 0x7ff3 as DomId;
export const DOMID_INVALID = 0x7ff4 as DomId;
export const DOMID_IDLE = 0x7fff as DomId;
export const DOMID_ANY = 0x7ff5 as DomId;

export const XEN_PAGE_SIZE = 4096;

/** VIRQs (NR_VIRQS = 24). */
export enum Virq {
  VIRQ_TIMER = 0,
  VIRQ_DEBUG = 1,
  VIRQ_CONSOLE = 2,
  VIRQ_DOM_EXC = 3,
  VIRQ_TBUF = 4,
  VIRQ_DEBUGGER = 6,
  VIRQ_XENOPROF = 7,
  VIRQ_CON_RING = 8,
  VIRQ_PCPU_STATE = 9,
  VIRQ_MEM_EVENT = 10,
  VIRQ_ARGO = 11,
  VIRQ_ENOMEM = 12,
  VIRQ_XENPMU = 13,
}
export const NR_VIRQS = 24;

/** Linux errno values hypercalls return negated. */
export enum Errno {
  EPERM = 1,
  ENOENT = 2,
  ESRCH = 3,
  EINTR = 4,
  EIO = 5,
  E2BIG = 7,
  EAGAIN = 11,
  ENOMEM = 12,
  EACCES = 13,
  EFAULT = 14,
  EBUSY = 16,
  EEXIST = 17,
  EINVAL = 22,
  ENOSPC = 28,
  ENOSYS = 38,
  EOVERFLOW = 75,
  EOPNOTSUPP = 95,
}

/**
 * struct shared_info (x86_64): vcpu_info[32] at 0 (64 bytes each), evtchn_pending[64] (u64) at
 * 2048, evtchn_mask[64] at 2560, then wallclock fields.
 */
export const SharedInfo = {
  vcpu_info: 0,
  VCPU_INFO_SIZE: 64,
  XEN_LEGACY_MAX_VCPUS: 32,
  evtchn_pending: 2048,
  evtchn_mask: 2560,
  wc_version: 3072,
  wc_sec: 3076,
  wc_nsec: 3080,
} as const;

/** struct vcpu_info field offsets. */
export const VcpuInfo = {
  evtchn_upcall_pending: 0,
  evtchn_upcall_mask: 1,
  evtchn_pending_sel: 8,
} as const;

/** 2-level event channel ABI: 64 words of 64 bits on x86_64. */
export const EVTCHN_2L_NR_CHANNELS = 64 * 64;

/** Hypercall numbers (enum hypercall_num) of the hypercalls xensim implements. */
export enum Hypercall {
  __HYPERVISOR_memory_op = 12,
  __HYPERVISOR_xen_version = 17,
  __HYPERVISOR_console_io = 18,
  __HYPERVISOR_grant_table_op = 20,
  __HYPERVISOR_vcpu_op = 24,
  __HYPERVISOR_sched_op = 29,
  __HYPERVISOR_event_channel_op = 32,
  __HYPERVISOR_hvm_op = 34,
  __HYPERVISOR_sysctl = 35,
  __HYPERVISOR_domctl = 36,
}

/**
 * struct start_info: what the domain builder hands a new kernel - its special pages and ports
 * (the fields xensim uses), plus the seed of the domain's PRNG (the run's determinism).
 */
export interface StartInfo {
  readonly domid: number;
  readonly nr_pages: number;
  /** Guest frame of the xenstore ring page and its event channel. */
  readonly store_mfn: number;
  readonly store_evtchn: number;
  readonly console_mfn?: number;
  readonly console_evtchn?: number;
  /** PRNG seed for this domain (derived from the run's seed). */
  readonly seed: number;
}
