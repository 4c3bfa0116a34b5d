// One Xen host: the hypervisor instance that owns every domain, frame and channel.
// Runs on the main thread; domains reach it only through hypercalls.
import { Domain, DomDying, DomidAllocator, GUEST_DOMIDS } from './domain.ts';
import { EXTENT_PAGES, type Gfn, MachineMemory } from './memory.ts';
import { type DomId, Errno, DOMID_SELF, SharedInfo } from './public/xen.ts';
import type { ShutdownReason } from './public/sched.ts';

export interface CreateDomainOptions {
  /** Ask for a particular domid (XEN_DOMCTL_createdomain with a non-zero id). */
  readonly domid?: number;
  readonly privileged?: boolean;
  /** Pages the domain may own (memory in KiB / 4). */
  readonly maxPages?: number;
  /** vCPUs (xl.cfg `vcpus`); 1 to XEN_LEGACY_MAX_VCPUS (32). */
  readonly vcpus?: number;
  /** XEN_DOMCTL_CDF_hvm. */
  readonly hvm?: boolean;
  /** The domain handle (the toolstack's VM uuid). */
  readonly handle?: string;
  /** XEN_DOMCTL_CDF_xs_domain: the xenstore domain. */
  readonly xenstore?: boolean;
}

/** A subsystem that keeps per-domain state (event channels, grant tables). */
export interface DomainHooks {
  /** After a domain struct exists, before anyone can use it. */
  domainCreated(d: Domain): void;
  /** domain_kill(): release what the dying domain holds. */
  domainKilled(d: Domain): void;
  /** The struct is being freed (last reference gone). */
  domainFreed(d: Domain): void;
  /**
   * The domain's vCPUs may no longer run (vcpu_pause of each): its pause count rose from 0, or
   * it shut down. Whatever carries the vCPUs stops them.
   */
  domainPaused?(d: Domain): void;
  /** The domain's vCPUs may run again (vcpu_unpause of each): the inverse edge. */
  domainUnpaused?(d: Domain): void;
}

export class HypervisorError extends Error {
  /** `why` is the simulator's word on the cause (Xen returns only the errno). */
  constructor(readonly errno: Errno, readonly what: string, why?: string) {
    super(`${what}: -${Errno[errno]}${why === undefined ? '' : ` (${why})`}`);
  }
}

export class Host {
  readonly memory: MachineMemory;
  readonly domains = new Map<number, Domain>();
  readonly domids = new DomidAllocator();
  private readonly hooks: DomainHooks[] = [];
  /** Listeners for VIRQ_DOM_EXC-worthy changes (the event channel layer raises the VIRQ). */
  private readonly domExc: ((d: Domain) => void)[] = [];

  constructor(opts: { totalFrames?: number; heapExtents?: number } = {}) {
    this.memory = new MachineMemory(opts.totalFrames);
    if (opts.heapExtents) this.memory.populate(opts.heapExtents);
  }

  addHooks(h: DomainHooks): void {
    this.hooks.push(h);
  }

  onDomExc(f: (d: Domain) => void): void {
    this.domExc.push(f);
  }

  private raiseDomExc(d: Domain): void {
    for (const f of this.domExc) f(d);
  }

  /** Finds a live (or zombie) domain; DOMID_SELF means the caller. */
  lookup(id: number, caller?: Domain): Domain | undefined {
    if (id === DOMID_SELF) return caller;
    return this.domains.get(id);
  }

  /** XEN_DOMCTL_createdomain: a paused domain with its shared_info page. */
  createDomain(opts: CreateDomainOptions = {}): Domain {
    const vcpus = opts.vcpus ?? 1;
    if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > SharedInfo.XEN_LEGACY_MAX_VCPUS) {
      throw new HypervisorError(Errno.EINVAL, 'createdomain');
    }
    const id = opts.domid !== undefined ? this.domids.claim(opts.domid) : this.domids.allocate();
    // Xen's domctl: -EEXIST for an id asked for and taken; -ENOMEM when its search for a free
    // id comes back round to where it started.
    if (id === undefined && opts.domid !== undefined) throw new HypervisorError(Errno.EEXIST, 'createdomain', `domid ${opts.domid} is taken or reserved`);
    if (id === undefined) throw new HypervisorError(Errno.ENOMEM, 'createdomain', `no free domid: all ${GUEST_DOMIDS} below DOMID_FIRST_RESERVED are in use`);
    const d = new Domain(id, opts.privileged ?? false, opts.maxPages ?? 256);
    d.maxVcpus = vcpus;
    d.hvm = opts.hvm ?? false;
    d.xenstore = opts.xenstore ?? false;
    if (opts.handle !== undefined) d.handle = opts.handle;
    const si = this.memory.allocate(id);
    if (!si) {
      this.domids.release(id);
      throw new HypervisorError(Errno.ENOMEM, 'createdomain');
    }
    d.sharedInfo = si;
    this.domains.set(id, d);
    for (const h of this.hooks) h.domainCreated(d);
    return d;
  }

  /**
   * XENMEM_populate_physmap: gives a domain frames at consecutive gfns from `first`. A request of
   * at least an extent's worth is served in extents (2 MiB-aligned gfn runs in one buffer, as
   * the builder asks for superpages); a smaller one frame by frame (the cheap default guests).
   * Returns how many frames it gave (gfns already populated are skipped).
   */
  populate(d: Domain, first: number, count: number): number {
    // A count, not the frames: a list of a big guest's 262,144 frames a GiB would be garbage.
    let given = 0;
    let owned = this.ownedFrames(d);
    const end = first + count;
    for (let g = first; g < end;) {
      if (d.p2m[g] !== undefined) {
        g++;
        continue;
      }
      // The run of holes from g, cut at the next extent boundary.
      let run = 0;
      const stop = count >= EXTENT_PAGES ? Math.min(end, (Math.floor(g / EXTENT_PAGES) + 1) * EXTENT_PAGES) : g + 1;
      while (g + run < stop && d.p2m[g + run] === undefined) run++;
      if (owned + run > d.maxPages) throw new HypervisorError(Errno.ENOMEM, 'populate_physmap');
      if (run > 1) {
        const fs = this.memory.allocateExtent(d.domid, run);
        if (!fs) throw new HypervisorError(Errno.ENOMEM, 'populate_physmap');
        for (let i = 0; i < fs.length; i++) d.p2m[(g + i) as Gfn] = fs[i];
        owned += fs.length;
        given += fs.length;
      } else {
        const f = this.memory.allocate(d.domid);
        if (!f) throw new HypervisorError(Errno.ENOMEM, 'populate_physmap');
        d.p2m[g as Gfn] = f;
        owned++;
        given++;
      }
      g += run;
    }
    return given;
  }

  private ownedFrames(d: Domain): number {
    let n = 0;
    for (const f of d.p2m) if (f) n++;
    return n;
  }

  /** Whether the domain's vCPUs may run: alive, not paused, not shut down. */
  private static vcpusRun(d: Domain): boolean {
    return d.dying === DomDying.DOMDYING_alive && d.pauseCount === 0 && !d.isShutDown;
  }

  /** Applies a change of run state and tells the hooks when the vCPUs' may-run edge moved. */
  private runStateChange(d: Domain, change: () => void): void {
    const before = Host.vcpusRun(d);
    change();
    const after = Host.vcpusRun(d);
    if (before === after) return;
    for (const h of this.hooks) (after ? h.domainUnpaused : h.domainPaused)?.call(h, d);
  }

  /** XEN_DOMCTL_pausedomain: reference counted, capped at 255. */
  pause(d: Domain): void {
    if (d.dying !== DomDying.DOMDYING_alive) throw new HypervisorError(Errno.EINVAL, 'pausedomain');
    if (d.pauseCount >= 255) throw new HypervisorError(Errno.EOVERFLOW, 'pausedomain');
    this.runStateChange(d, () => void d.pauseCount++);
  }

  /** XEN_DOMCTL_unpausedomain. */
  unpause(d: Domain): void {
    if (d.pauseCount <= 0) throw new HypervisorError(Errno.EINVAL, 'unpausedomain');
    this.runStateChange(d, () => void d.pauseCount--);
  }

  /**
   * SCHEDOP_shutdown / domain_shutdown(): the first reason latched wins; the vCPUs are paused
   * (paused_for_shutdown); then VIRQ_DOM_EXC.
   */
  shutdown(d: Domain, reason: ShutdownReason): void {
    if (d.isShutDown || d.dying !== DomDying.DOMDYING_alive) return;
    this.runStateChange(d, () => {
      d.isShutDown = true;
      d.shutdownCode = reason;
    });
    this.raiseDomExc(d);
  }

  /** A suspended or shut-down domain resumed (XEN_DOMCTL_resumedomain): its vCPUs run again. */
  resume(d: Domain): void {
    this.runStateChange(d, () => {
      d.isShutDown = false;
      d.shutdownCode = undefined;
    });
  }

  /**
   * XEN_DOMCTL_destroydomain -> domain_kill(): dying, channels closed, mappings released,
   * memory freed; VIRQ_DOM_EXC. The struct (and its domid) lingers while others map its pages.
   */
  destroy(d: Domain): void {
    if (d.dying !== DomDying.DOMDYING_alive) return;
    d.dying = DomDying.DOMDYING_dying;
    for (const h of this.hooks) h.domainKilled(d);
    d.dying = DomDying.DOMDYING_dead;
    this.raiseDomExc(d);
    this.tryFree(d);
  }

  /** Frees a dead domain once no other domain maps its frames; returns whether it went. */
  tryFree(d: Domain): boolean {
    if (d.dying !== DomDying.DOMDYING_dead || !this.domains.has(d.domid)) return false;
    // Called at each unmap of a dead domain's page: a walk, no copy of a big guest's p2m.
    if (d.sharedInfo!.foreignRefs > 0) return false;
    for (let pfn = 0; pfn < d.p2m.length; pfn++) if (d.p2m[pfn] && d.p2m[pfn]!.foreignRefs > 0) return false;
    this.memory.releaseAll(d.p2m);
    this.memory.release(d.sharedInfo!);
    d.p2m.length = 0;
    for (const h of this.hooks) h.domainFreed(d);
    this.domains.delete(d.domid);
    this.domids.release(d.domid);
    this.raiseDomExc(d);
    return true;
  }

  /** Dom0-only operations (domctls) check this. */
  requirePrivileged(caller: Domain, what: string): void {
    if (!caller.privileged) throw new HypervisorError(Errno.EPERM, what);
  }

  domid(d: Domain): DomId {
    return d.domid;
  }
}
