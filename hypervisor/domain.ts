// struct domain: identity, privilege, run state, memory. Event channels and grant tables hang
// off it (event-channel.ts, grant-table.ts).
import type { Frame, Gfn } from './memory.ts';
import type { LogDirty } from './paging.ts';
import type { BootPages } from './public/vcpu.ts';
import { type DomId, DOMID_FIRST_RESERVED, XEN_PAGE_SIZE } from './public/xen.ts';
import type { ShutdownReason } from './public/sched.ts';

/** d->is_dying. */
export enum DomDying {
  DOMDYING_alive = 0,
  DOMDYING_dying = 1,
  DOMDYING_dead = 2,
}

/** What `xl list` and getinfo show, derived from the flags below. */
export type DomainRunState = 'running' | 'blocked' | 'paused' | 'shutdown' | 'dying' | 'dead';

export class Domain {
  /** controller_pause_count: a new domain starts paused once. */
  pauseCount = 1;
  /** The vCPU waits for an event (SCHEDOP_block). */
  blocked = false;
  isShutDown = false;
  shutdownCode: ShutdownReason | undefined = undefined;
  dying = DomDying.DOMDYING_alive;
  /** p2m: guest frame -> machine frame. */
  readonly p2m: (Frame | undefined)[] = [];
  /** Frame holding struct shared_info (event channel bitmaps). */
  sharedInfo: Frame | undefined;
  maxPages: number;
  /** d->max_vcpus: vCPUs 0..maxVcpus-1 exist (their vcpu_info lives in shared_info, so <= 32). */
  maxVcpus = 1;
  /** An HVM guest (XEN_DOMCTL_CDF_hvm): emulated platform, ACPI. PV otherwise. */
  hvm = false;
  /** xen_domain_handle_t: the toolstack's uuid for the domain, set at createdomain (zeros if none). */
  handle = '00000000-0000-0000-0000-000000000000';
  /** is_xenstore_domain(d): created with XEN_DOMCTL_CDF_xs_domain. */
  xenstore = false;
  /** paging_mode_log_dirty(d): set while XEN_DOMCTL_shadow_op has log-dirty mode on. */
  logDirty: LogDirty | undefined = undefined;

  constructor(
    readonly domid: DomId,
    /** The control domain (dom0): may use domctls and foreign operations. */
    readonly privileged: boolean,
    maxPages: number,
  ) {
    this.maxPages = maxPages;
  }

  get runState(): DomainRunState {
    if (this.dying === DomDying.DOMDYING_dead) return 'dead';
    if (this.dying === DomDying.DOMDYING_dying) return 'dying';
    if (this.isShutDown) return 'shutdown';
    if (this.pauseCount > 0) return 'paused';
    return this.blocked ? 'blocked' : 'running';
  }

  frame(gfn: Gfn | number): Frame | undefined {
    return this.p2m[gfn];
  }
}

/** Domids a host can give domains other than dom0: 1 to DOMID_FIRST_RESERVED - 1 (32,751). */
export const GUEST_DOMIDS = DOMID_FIRST_RESERVED - 1;

/**
 * Domid allocation as Xen does it for "any id": the lowest free id after the last one handed out,
 * wrapping to 1 (0 is never auto-assigned), below DOMID_FIRST_RESERVED. An id is free again only
 * when its domain struct is freed (zombies keep theirs).
 */
export class DomidAllocator {
  private last = 0;
  private readonly used = new Set<number>();

  isUsed(id: number): boolean {
    return this.used.has(id);
  }

  /** A specific id: -EEXIST (as undefined) if taken or reserved. */
  claim(id: number): DomId | undefined {
    if (id < 0 || id >= DOMID_FIRST_RESERVED || this.used.has(id)) return undefined;
    this.used.add(id);
    return id as DomId;
  }

  allocate(): DomId | undefined {
    for (let i = 1; i < DOMID_FIRST_RESERVED; i++) {
      const id = ((this.last + i - 1) % (DOMID_FIRST_RESERVED - 1)) + 1;
      if (!this.used.has(id)) {
        this.used.add(id);
        this.last = id;
        return id as DomId;
      }
    }
    return undefined;
  }

  release(id: number): void {
    this.used.delete(id);
  }
}

/** The domain's pages for its kernel's boot record: consecutive gfns in one buffer make one run. */
export function bootPages(d: Domain): BootPages[] {
  const out: BootPages[] = [];
  let last: { gfn: number; count: number; sab: SharedArrayBuffer; offset: number } | undefined;
  d.p2m.forEach((f, gfn) => {
    if (!f) return;
    if (last && last.sab === f.sab && last.gfn + last.count === gfn && last.offset + last.count * XEN_PAGE_SIZE === f.offset) {
      last.count++;
      return;
    }
    last = { gfn, count: 1, sab: f.sab, offset: f.offset };
    out.push(last);
  });
  return out;
}
