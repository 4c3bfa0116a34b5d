// The hypercall table: what a domain's trap into the hypervisor does. Each entry checks its
// caller (toolstack operations are for the privileged domain only) and answers with Xen's return
// value; pages the caller gains (a mapped grant, its grant-table frames) are handed over with it.
import type { Domain } from './domain.ts';
import type { EventChannels } from './event-channel.ts';
import type { GrantTables } from './grant-table.ts';
import type { HandedFrame } from './public/hypercall_page.ts';
import { type Host, HypervisorError } from './host.ts';
import type { Frame } from './memory.ts';
import { GnttabOp } from './public/grant_table.ts';
import { SchedOp, ShutdownReason } from './public/sched.ts';
import { DOMID_FIRST_RESERVED, Errno, Hypercall } from './public/xen.ts';
import { HvmAcpi } from './hvm/acpi.ts';
import { Domctl, DomctlCdf, DomctlShadowOp, DomctlTrigger, XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY } from './public/domctl.ts';
import { LogDirty } from './paging.ts';
import { HvmOp } from './public/hvm/hvm_op.ts';
import { ACPI_SCI_PIRQ, PWRBTN_STS, SLPBTN_STS, VMEXIT_IO_INSTRUCTION } from './public/hvm/ioreq.ts';
import { HvmParam } from './public/hvm/params.ts';
import { Sysctl } from './public/sysctl.ts';

export interface HypercallOutcome {
  readonly ret: unknown;
  readonly frames?: HandedFrame[];
}

export interface HypercallTrace {
  readonly kind: 'hypercall';
  readonly domid: number;
  readonly op: string;
  readonly cmd?: number;
  readonly ret: unknown;
}

const handed = (f: Frame): HandedFrame => ({ mfn: f.mfn, sab: f.sab, offset: f.offset });

type Entry = (caller: Domain, args: Record<string, unknown>) => HypercallOutcome;

export class Hypercalls {
  private readonly table = new Map<number, Entry>();
  private readonly listeners: ((ev: HypercallTrace) => void)[] = [];
  /** Runs after each event-channel op (the send fast path keeps its routes with it). */
  afterEvtchn: ((caller: Domain, cmd: number, arg: Record<string, number>, ret: unknown) => HandedFrame[] | undefined) | undefined;

  constructor(
    readonly host: Host,
    readonly evtchn: EventChannels,
    readonly gnttab: GrantTables,
  ) {
    this.table.set(Hypercall.__HYPERVISOR_event_channel_op, (d, a) => {
      const ret = this.evtchn.dispatch(d, Number(a.cmd), a.arg);
      const frames = this.afterEvtchn?.(d, Number(a.cmd), (a.arg ?? {}) as Record<string, number>, ret);
      return { ret, frames };
    });
    this.table.set(Hypercall.__HYPERVISOR_grant_table_op, (d, a) => this.grantTableOp(d, a));
    this.table.set(Hypercall.__HYPERVISOR_sched_op, (d, a) => this.schedOp(d, a));
    this.table.set(Hypercall.__HYPERVISOR_domctl, (d, a) => this.domctl(d, a));
    this.table.set(Hypercall.__HYPERVISOR_sysctl, (d, a) => this.sysctl(d, a));
    this.table.set(Hypercall.__HYPERVISOR_console_io, (_d, _a) => ({ ret: 0 }));
    this.table.set(Hypercall.__HYPERVISOR_hvm_op, (d, a) => this.hvmOp(d, a));
    this.table.set(VMEXIT_IO_INSTRUCTION, (d, a) => this.ioInstruction(d, a));
    host.addHooks({
      domainCreated: (d) => {
        if (!d.hvm) return;
        this.acpi.set(d, new HvmAcpi(d, {
          sci: (x) => this.evtchn.sendGuestPirq(x, ACPI_SCI_PIRQ),
          // hvm_s3_suspend pauses the domain; leaving S3 unpauses it.
          s3: (x, entering) => (entering ? this.host.pause(x) : this.host.unpause(x)),
          poweroff: (x) => this.host.shutdown(x, ShutdownReason.SHUTDOWN_poweroff),
        }));
        this.evtchn.mapPirq(d, ACPI_SCI_PIRQ);
      },
      domainKilled: () => undefined,
      domainFreed: (d) => void this.acpi.delete(d),
    });
  }

  /** Each HVM guest's ACPI block (pmtimer.c plus the device model's PM1a_CNT). */
  readonly acpi = new Map<Domain, HvmAcpi>();

  /** IN/OUT from an HVM guest: the ports its platform decodes; reads of others give all ones. */
  private ioInstruction(d: Domain, a: Record<string, unknown>): HypercallOutcome {
    const acpi = this.acpi.get(d);
    if (!acpi) return { ret: -Errno.EINVAL };
    const port = Number(a.port);
    if (a.dir === 'out') {
      acpi.ioWrite(port, Number(a.value));
      return { ret: 0 };
    }
    return { ret: acpi.ioRead(port) ?? 0xffff };
  }

  /** HVMOP_set_param / get_param; another domain's params need privilege (the device model's). */
  private hvmOp(d: Domain, a: Record<string, unknown>): HypercallOutcome {
    const op = Number(a.op);
    const target = a.domid === undefined || Number(a.domid) === 0x7ff0 ? d : this.host.domains.get(Number(a.domid));
    if (!target) return { ret: -Errno.ESRCH };
    if (target !== d) this.host.requirePrivileged(d, 'hvm_op');
    const acpi = this.acpi.get(target);
    if (!acpi) return { ret: -Errno.EINVAL };
    const index = Number(a.index);
    if (op === HvmOp.HVMOP_get_param) {
      if (index === HvmParam.HVM_PARAM_ACPI_S_STATE) return { ret: { value: acpi.sState } };
      return { ret: -Errno.EINVAL };
    }
    if (op === HvmOp.HVMOP_set_param) {
      // A guest may not move itself between S-states through the param (hvm_allow_set_param).
      if (index !== HvmParam.HVM_PARAM_ACPI_S_STATE || target === d) return { ret: -Errno.EPERM };
      return { ret: acpi.setSState(Number(a.value)) ? 0 : -Errno.EINVAL };
    }
    return { ret: -Errno.ENOSYS };
  }

  onTrace(f: (ev: HypercallTrace) => void): void {
    this.listeners.push(f);
  }

  /** One hypercall from domain `domid`; an unknown number is -ENOSYS, as in Xen. */
  call(domid: number, op: number, args: unknown): HypercallOutcome {
    const d = this.host.domains.get(domid);
    if (d === undefined) return { ret: -Errno.ESRCH };
    const entry = this.table.get(op);
    const a = (typeof args === 'object' && args !== null ? args : {}) as Record<string, unknown>;
    let out: HypercallOutcome;
    try {
      out = entry ? entry(d, a) : { ret: -Errno.ENOSYS };
    } catch (e) {
      if (!(e instanceof HypervisorError)) throw e;
      out = { ret: -e.errno };
    }
    if (this.listeners.length) {
      const ev: HypercallTrace = { kind: 'hypercall', domid, op: Hypercall[op] ?? String(op), cmd: a.cmd as number | undefined, ret: out.ret };
      for (const f of this.listeners) f(ev);
    }
    return out;
  }

  private grantTableOp(d: Domain, a: Record<string, unknown>): HypercallOutcome {
    const cmd = Number(a.cmd);
    if (!Array.isArray(a.ops)) return { ret: -Errno.EFAULT };
    const r = this.gnttab.dispatch(d, cmd as GnttabOp.GNTTABOP_map_grant_ref, a.ops as never[]);
    const frames: HandedFrame[] = [];
    const results = (r.results as unknown as Record<string, unknown>[]).map((res) => {
      const { frame, frames: tableFrames, ...rest } = res as { frame?: Frame; frames?: Frame[] };
      if (frame) frames.push(handed(frame));
      if (cmd === GnttabOp.GNTTABOP_setup_table && tableFrames) for (const f of tableFrames) frames.push(handed(f));
      return rest;
    });
    return { ret: { rc: r.rc, results }, frames };
  }

  private schedOp(d: Domain, a: Record<string, unknown>): HypercallOutcome {
    switch (Number(a.cmd)) {
      case SchedOp.SCHEDOP_yield:
      case SchedOp.SCHEDOP_block:
        return { ret: 0 };
      case SchedOp.SCHEDOP_shutdown: {
        const reason = Number(a.reason);
        if (!(reason in ShutdownReason)) return { ret: -Errno.EINVAL };
        this.host.shutdown(d, reason as ShutdownReason);
        return { ret: 0 };
      }
      case SchedOp.SCHEDOP_remote_shutdown: {
        this.host.requirePrivileged(d, 'remote_shutdown');
        const target = this.host.domains.get(Number(a.domain_id));
        if (!target) return { ret: -Errno.ESRCH };
        this.host.shutdown(target, Number(a.reason) as ShutdownReason);
        return { ret: 0 };
      }
      default:
        return { ret: -Errno.ENOSYS };
    }
  }

  /** XEN_DOMCTL_sendtrigger: power/sleep buttons need an HVM guest; INIT and RESET are not on x86. */
  private sendTrigger(d: Domain, trigger: number): number {
    const acpi = this.acpi.get(d);
    switch (trigger) {
      case DomctlTrigger.XEN_DOMCTL_SENDTRIGGER_NMI:
        return 0;
      case DomctlTrigger.XEN_DOMCTL_SENDTRIGGER_POWER:
      case DomctlTrigger.XEN_DOMCTL_SENDTRIGGER_SLEEP:
        if (!acpi) return -Errno.EINVAL;
        acpi.pressButton(trigger === DomctlTrigger.XEN_DOMCTL_SENDTRIGGER_POWER ? PWRBTN_STS : SLPBTN_STS);
        return 0;
      case DomctlTrigger.XEN_DOMCTL_SENDTRIGGER_RESET:
      case DomctlTrigger.XEN_DOMCTL_SENDTRIGGER_INIT:
        return -Errno.ENOSYS;
      default:
        return -Errno.EINVAL;
    }
  }

  /**
   * XEN_DOMCTL_shadow_op, log-dirty part (paging_domctl()). Never on oneself (-EINVAL); a dying
   * domain's op is ignored (0). CLEAN and PEEK answer { pages, dirty_bitmap, stats } - with log-dirty
   * off Xen has no bitmap and answers all zeros. Shadow allocation and the other shadow modes are
   * not modelled (-ENOSYS).
   */
  private static shadowOp(caller: Domain, d: Domain, a: Record<string, unknown>): unknown {
    if (d === caller) return -Errno.EINVAL;
    if (d.dying) return 0;
    const op = Number(a.op);
    const mode = Number(a.mode ?? 0);
    switch (op) {
      case DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE:
      case DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY:
        if (op === DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE && !(mode & XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY)) return -Errno.ENOSYS;
        // paging_log_dirty_enable(): already on is -EINVAL.
        if (d.logDirty) return -Errno.EINVAL;
        d.logDirty = new LogDirty(d);
        return 0;
      case DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_OFF:
        d.logDirty = undefined;
        return 0;
      case DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_CLEAN:
      case DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_PEEK: {
        const pages = Math.max(0, Math.floor(Number(a.pages ?? 0)));
        if (!d.logDirty) return { pages, dirty_bitmap: new Uint8Array(Math.ceil(pages / 8)), stats: { fault_count: 0, dirty_count: 0 } };
        const { bitmap, stats } = d.logDirty.read(op === DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_CLEAN, pages);
        return { pages, dirty_bitmap: bitmap, stats };
      }
      default:
        return -Errno.ENOSYS;
    }
  }

  /** struct xen_domctl_getdomaininfo: what getdomaininfo and the getdomaininfolist sysctl report. */
  private static domainInfo(d: Domain): Record<string, unknown> {
    return {
      domain: d.domid,
      state: d.runState,
      shutdown: d.isShutDown,
      // XEN_DOMINF_xs_domain: a flag bit, reported only where set.
      ...(d.xenstore ? { xenstore: true } : {}),
      shutdown_reason: d.shutdownCode ?? null,
      dying: d.dying,
      max_pages: d.maxPages,
      // The highest vCPU id: every vCPU 0..max_vcpus-1 exists from createdomain on.
      max_vcpu_id: d.maxVcpus - 1,
      handle: d.handle,
    };
  }

  /**
   * System control, privileged only. XEN_SYSCTL_getdomaininfolist: up to max_domains domains
   * from first_domain up, in domid order (how libxc's domain_getinfolist lists the host).
   */
  private sysctl(d: Domain, a: Record<string, unknown>): HypercallOutcome {
    this.host.requirePrivileged(d, 'sysctl');
    if (Number(a.cmd) !== Sysctl.XEN_SYSCTL_getdomaininfolist) return { ret: -Errno.ENOSYS };
    const first = Number(a.first_domain ?? 0);
    const max = Number(a.max_domains ?? 0);
    const ids = [...this.host.domains.keys()].filter((id) => id >= first).sort((x, y) => x - y).slice(0, Math.max(0, max));
    return { ret: ids.map((id) => Hypercalls.domainInfo(this.host.domains.get(id)!)) };
  }

  /**
   * Domain control: the privileged domain only (-EPERM for others), as XSM's default policy -
   * except getdomaininfo, which is XSM_XS_PRIV: the xenstore domain may ask it too (its
   * xenstored checks which domains exist and which died).
   */
  private domctl(d: Domain, a: Record<string, unknown>): HypercallOutcome {
    const cmd = Number(a.cmd);
    if (!(cmd === Domctl.XEN_DOMCTL_getdomaininfo && d.xenstore)) this.host.requirePrivileged(d, 'domctl');
    if (cmd === Domctl.XEN_DOMCTL_createdomain) {
      // Any other id (0, DOMID_INVALID as libxl passes it) asks Xen to choose one.
      const asked = typeof a.domid === 'number' && a.domid > 0 && a.domid < DOMID_FIRST_RESERVED ? a.domid : undefined;
      const nd = this.host.createDomain({
        domid: asked,
        maxPages: typeof a.max_pages === 'number' ? a.max_pages : undefined,
        vcpus: typeof a.max_vcpus === 'number' ? a.max_vcpus : undefined,
        hvm: (Number(a.flags) & DomctlCdf.XEN_DOMCTL_CDF_hvm) !== 0,
        xenstore: (Number(a.flags) & DomctlCdf.XEN_DOMCTL_CDF_xs_domain) !== 0,
        handle: typeof a.handle === 'string' ? a.handle : undefined,
      });
      return { ret: { domid: nd.domid } };
    }
    const target = this.host.domains.get(Number(a.domain));
    if (!target) return { ret: -Errno.ESRCH };
    switch (cmd) {
      case Domctl.XEN_DOMCTL_destroydomain:
        this.host.destroy(target);
        return { ret: 0 };
      case Domctl.XEN_DOMCTL_pausedomain:
        this.host.pause(target);
        return { ret: 0 };
      case Domctl.XEN_DOMCTL_unpausedomain:
        this.host.unpause(target);
        return { ret: 0 };
      case Domctl.XEN_DOMCTL_resumedomain:
        this.host.resume(target);
        return { ret: 0 };
      case Domctl.XEN_DOMCTL_max_mem:
        target.maxPages = Math.ceil(Number(a.max_memkb) / 4);
        return { ret: 0 };
      case Domctl.XEN_DOMCTL_sendtrigger:
        return { ret: this.sendTrigger(target, Number(a.trigger)) };
      case Domctl.XEN_DOMCTL_set_virq_handler:
        return { ret: this.evtchn.setVirqHandler(target, Number(a.virq)) };
      case Domctl.XEN_DOMCTL_getdomaininfo:
        return { ret: Hypercalls.domainInfo(target) };
      case Domctl.XEN_DOMCTL_shadow_op:
        return { ret: Hypercalls.shadowOp(d, target, a) };
      default:
        return { ret: -Errno.ENOSYS };
    }
  }
}
