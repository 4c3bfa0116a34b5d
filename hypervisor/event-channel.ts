// Event channels: xen/common/event_channel.c with the 2-level ABI (event_2l.c) every domain
// starts with, and the FIFO ABI (event_fifo.c) a domain switches to with EVTCHNOP_init_control.
//
// Each domain has a table of ports (struct evtchn); the pending and mask bits live in the
// domain's own memory (2-level: its shared_info page; FIFO: the event-array pages it gave), which
// its worker thread reads and clears concurrently, so every bit operation there is an Atomics
// operation in the order Xen's C uses (spec/hypervisor-and-xenbus.md §1.3). A domain only ever acts on its own table, except where
// Xen lets a privileged domain name another (alloc_unbound, status, reset).
import { type Domain, DomDying } from './domain.ts';
import { type Delivery2l, Evtchn2l } from './public/event_2l.ts';
import {
  type DeliveryFifo,
  EVTCHN_FIFO_LINK_BITS,
  EVTCHN_FIFO_NR_CHANNELS,
  EVTCHN_FIFO_PRIORITY_DEFAULT,
  EVTCHN_FIFO_PRIORITY_MIN,
  EvtchnFifo,
  EvtchnFifoControlBlock,
  fifoLostWakeup,
} from './public/event_fifo.ts';
import type { Frame } from './memory.ts';
import type { DomainHooks, Host } from './host.ts';
import {
  EvtchnOp,
  EvtchnStat,
  evtchnPort,
  type EvtchnOpArgs,
  type EvtchnOpModelled,
  type EvtchnOpResults,
  type EvtchnPort,
  type evtchn_alloc_unbound,
  type evtchn_bind_interdomain,
  type evtchn_bind_ipi,
  type evtchn_bind_vcpu,
  type evtchn_bind_virq,
  type evtchn_bind_pirq,
  type evtchn_close,
  type evtchn_expand_array,
  type evtchn_init_control,
  type evtchn_reset,
  type evtchn_set_priority,
  type evtchn_send,
  type evtchn_status,
  type evtchn_unmask,
} from './public/event_channel.ts';
import {
  type DomId,
  DOMID_INVALID,
  DOMID_SELF,
  Errno,
  EVTCHN_2L_NR_CHANNELS,
  NR_VIRQS,
  SharedInfo,
  Virq,
  XEN_PAGE_SIZE,
} from './public/xen.ts';

/** A hypercall failure: a negated Errno (-Errno.EINVAL). Successes are 0 or an OUT record. */
export type NegErrno = number;
export type EvtchnResult<T> = T | NegErrno;
export const isErrno = (r: unknown): r is NegErrno => typeof r === 'number' && r < 0;

/** struct evtchn's state (ECS_*, xen/include/xen/sched.h). */
export enum ECS {
  ECS_FREE = 0,
  ECS_RESERVED = 1,
  ECS_UNBOUND = 2,
  ECS_INTERDOMAIN = 3,
  ECS_PIRQ = 4,
  ECS_VIRQ = 5,
  ECS_IPI = 6,
}

/** Ports become valid a bucket at a time: a page of 64-byte struct evtchn (valid_evtchns). */
export const EVTCHNS_PER_BUCKET = 64;
/** d->nr_pirqs for a guest without passthrough (nr_static_irqs + extra_domU_irqs: 16 + 32 on x86). */
const NR_PIRQS = 48;

/** get_virq_type(): per-vCPU, per-domain, or global (one handler domain system-wide). */
export enum VirqType {
  VIRQ_GLOBAL = 0,
  VIRQ_DOMAIN = 1,
  VIRQ_VCPU = 2,
}

export function getVirqType(virq: number): VirqType {
  switch (virq) {
    case Virq.VIRQ_TIMER:
    case Virq.VIRQ_DEBUG:
    case Virq.VIRQ_XENOPROF:
    case Virq.VIRQ_XENPMU:
      return VirqType.VIRQ_VCPU;
    case Virq.VIRQ_ARGO:
      return VirqType.VIRQ_DOMAIN;
    default:
      // Everything else, including VIRQ_ARCH_0..7 on x86 (arch_virq_is_global()).
      return VirqType.VIRQ_GLOBAL;
  }
}

/** What the domain's ABI did with a notification (set_pending, or an unmask). */
export type Delivery =
  /** The port was not bound to anything that can be pending (evtchn_usable() false). */
  | 'unusable'
  | Delivery2l
  | DeliveryFifo;

/**
 * One step in the trace. Hypercalls are named EVTCHNOP_*, with `domid` the caller; what Xen does
 * on its own carries its function's name (evtchn_set_pending, evtchn_close, evtchn_destroy,
 * send_global_virq, set_global_virq_handler), with `domid` the domain whose port is concerned.
 */
export interface EvtchnTraceEvent {
  readonly kind: 'evtchn';
  readonly op: string;
  readonly domid: DomId;
  /** The OUT port of a successful allocation, else the port named or concerned. */
  readonly port?: EvtchnPort;
  /** 0 or a negative errno. */
  readonly result: number;
  /** The IN fields of a hypercall. */
  readonly args?: Readonly<Record<string, number>>;
  /** The other end (bind_interdomain, close and send of interdomain ports, peers unbound). */
  readonly remote?: { readonly domid: DomId; readonly port: EvtchnPort };
  readonly vcpu?: number;
  readonly virq?: Virq;
  readonly delivery?: Delivery;
}

/** struct evtchn. */
class Evtchn {
  state = ECS.ECS_FREE;
  /** notify_vcpu_id. */
  notifyVcpu = 0;
  /** u.unbound.remote_domid. */
  remoteDomid = 0 as DomId;
  /** u.interdomain.remote_dom / remote_port. */
  remoteDom: Domain | undefined = undefined;
  remotePort = 0 as EvtchnPort;
  /** u.virq. */
  virq = 0 as Virq;
  /** u.pirq.irq. */
  pirq = 0;

  constructor(readonly port: EvtchnPort) {}

  /** evtchn_usable(): only bound ports can be pending or unmasked by Xen. */
  get usable(): boolean {
    return this.state > ECS.ECS_RESERVED;
  }
}

/** A domain's event channel state: d->evtchn, d->valid_evtchns, v->virq_to_evtchn[]. */
class DomainEvtchn {
  /** chn.length is valid_evtchns: buckets allocated so far. */
  readonly chn: Evtchn[] = [];
  /** virqToEvtchn[vcpu][virq]: bound port or 0. */
  readonly virqToEvtchn: Uint16Array[];
  /** IRQs mapped to this domain (pirq_info), and the ports bound to them. */
  readonly mappedPirqs = new Set<number>();
  readonly pirqToEvtchn = new Map<number, number>();
  readonly bits: Evtchn2l;
  /** d->evtchn_fifo: set by the first EVTCHNOP_init_control, for good. */
  fifo: EvtchnFifo | undefined;
  /** The frames behind the FIFO state (what a fast-path sender is handed). */
  readonly fifoFrames: { control: (Frame | undefined)[]; array: Frame[] } = { control: [], array: [] };
  /** Every port below this one is in use (a search hint; Xen scans from 0, with the same result). */
  private freeHint = 0;

  constructor(readonly d: Domain) {
    if (!d.sharedInfo) throw new Error(`d${d.domid} has no shared_info page`);
    this.bits = new Evtchn2l(d.sharedInfo.sab);
    const vcpus = Math.min(d.maxVcpus, SharedInfo.XEN_LEGACY_MAX_VCPUS);
    this.virqToEvtchn = Array.from({ length: vcpus }, () => new Uint16Array(NR_VIRQS));
    this.growBucket();
    // evtchn_init(): port 0 is ECS_RESERVED for ever.
    this.chn[0].state = ECS.ECS_RESERVED;
  }

  /** domain_vcpu(d, id) != NULL. */
  hasVcpu(vcpu: number): boolean {
    return Number.isInteger(vcpu) && vcpu >= 0 && vcpu < this.virqToEvtchn.length;
  }

  /** _evtchn_from_port(): the channel if the port is valid (its bucket exists). */
  lookup(port: number): Evtchn | undefined {
    return Number.isInteger(port) && port >= 0 && port < this.chn.length ? this.chn[port] : undefined;
  }

  private growBucket(): void {
    const first = this.chn.length;
    for (let p = first; p < first + EVTCHNS_PER_BUCKET; p++) this.chn.push(new Evtchn(evtchnPort(p)));
  }

  /** max_evtchns(): the ABI's port count (4096 for 2-level, 1 << 17 for FIFO). */
  get maxEvtchns(): number {
    return this.fifo ? EVTCHN_FIFO_NR_CHANNELS : EVTCHN_2L_NR_CHANNELS;
  }

  /**
   * get_free_port(): the lowest free port, growing the table a bucket at a time; a FIFO port still
   * LINKED on a queue is busy (evtchn_is_busy) until the guest unlinks it. -ENOSPC past the
   * ABI's last port.
   */
  getFreePort(): Evtchn | NegErrno {
    if (this.d.dying !== DomDying.DOMDYING_alive) return -Errno.EINVAL;
    const max = this.maxEvtchns;
    let hint = true;
    for (let port = this.freeHint; port < max; port++) {
      if (port >= this.chn.length) this.growBucket();
      if (this.chn[port].state !== ECS.ECS_FREE) continue;
      if (this.fifo?.isLinked(port)) {
        hint = false;
        continue;
      }
      if (hint) this.freeHint = port;
      if (this.fifo) this.fifo.setPriority(port, EVTCHN_FIFO_PRIORITY_DEFAULT);
      return this.chn[port];
    }
    if (hint) this.freeHint = max;
    return -Errno.ENOSPC;
  }

  // ---- the port ops of the domain's ABI (d->evtchn_port_ops)

  /** evtchn_port_set_pending(). */
  setPending(vcpu: number, chn: Evtchn): Delivery {
    if (!this.fifo) return this.bits.setPending(vcpu, chn.port);
    const r = this.fifo.setPending(vcpu, chn.port);
    if (r !== undefined) return r;
    // No array page holds the port yet: remember it for expand_array.
    this.fifo.setSavedPending(chn.port, true);
    return 'no-array-page';
  }

  /** evtchn_port_unmask(). */
  unmask(chn: Evtchn): Delivery {
    if (!this.fifo) return this.bits.unmask(chn.notifyVcpu, chn.port);
    return this.fifo.unmask(chn.notifyVcpu, chn.port) ?? 'no-array-page';
  }

  /** evtchn_port_clear_pending(). */
  clearPending(port: number): void {
    if (!this.fifo) {
      this.bits.clearPending(port);
      return;
    }
    this.fifo.clearPending(port);
    this.fifo.setSavedPending(port, false);
  }

  isPending(port: number): boolean {
    return this.fifo ? this.fifo.isPending(port) : this.bits.isPending(port);
  }

  isMasked(port: number): boolean {
    return this.fifo ? this.fifo.isMasked(port) : this.bits.isMasked(port);
  }

  /** A port went back to ECS_FREE. */
  freed(port: number): void {
    if (port < this.freeHint) this.freeHint = port;
  }
}

const U16 = 0xffff;
const U32 = 0xffffffff;

/** do_event_channel_op()'s table: the IN fields each command reads (for -EFAULT) and its method. */
const EVTCHN_OPS: {
  readonly [C in EvtchnOpModelled]: {
    readonly fields: Readonly<Record<keyof EvtchnOpArgs[C], number>>;
    readonly run: (ec: EventChannels, caller: Domain, arg: EvtchnOpArgs[C]) => EvtchnResult<EvtchnOpResults[C]>;
  };
} = {
  [EvtchnOp.EVTCHNOP_bind_interdomain]: {
    fields: { remote_dom: U16, remote_port: U32 },
    run: (ec, c, a) => ec.bindInterdomain(c, a),
  },
  [EvtchnOp.EVTCHNOP_bind_virq]: { fields: { virq: U32, vcpu: U32 }, run: (ec, c, a) => ec.bindVirq(c, a) },
  [EvtchnOp.EVTCHNOP_bind_pirq]: { fields: { pirq: U32, flags: U32 }, run: (ec, c, a) => ec.bindPirq(c, a) },
  [EvtchnOp.EVTCHNOP_close]: { fields: { port: U32 }, run: (ec, c, a) => ec.close(c, a) },
  [EvtchnOp.EVTCHNOP_send]: { fields: { port: U32 }, run: (ec, c, a) => ec.send(c, a) },
  [EvtchnOp.EVTCHNOP_status]: { fields: { dom: U16, port: U32 }, run: (ec, c, a) => ec.status(c, a) },
  [EvtchnOp.EVTCHNOP_alloc_unbound]: {
    fields: { dom: U16, remote_dom: U16 },
    run: (ec, c, a) => ec.allocUnbound(c, a),
  },
  [EvtchnOp.EVTCHNOP_bind_ipi]: { fields: { vcpu: U32 }, run: (ec, c, a) => ec.bindIpi(c, a) },
  [EvtchnOp.EVTCHNOP_bind_vcpu]: { fields: { port: U32, vcpu: U32 }, run: (ec, c, a) => ec.bindVcpu(c, a) },
  [EvtchnOp.EVTCHNOP_unmask]: { fields: { port: U32 }, run: (ec, c, a) => ec.unmask(c, a) },
  [EvtchnOp.EVTCHNOP_reset]: { fields: { dom: U16 }, run: (ec, c, a) => ec.reset(c, a) },
  [EvtchnOp.EVTCHNOP_init_control]: {
    fields: { control_gfn: Number.MAX_SAFE_INTEGER, offset: U32, vcpu: U32 },
    run: (ec, c, a) => ec.initControl(c, a),
  },
  [EvtchnOp.EVTCHNOP_expand_array]: {
    fields: { array_gfn: Number.MAX_SAFE_INTEGER },
    run: (ec, c, a) => ec.expandArray(c, a),
  },
  [EvtchnOp.EVTCHNOP_set_priority]: { fields: { port: U32, priority: U32 }, run: (ec, c, a) => ec.setPriority(c, a) },
};

export type UpcallListener = (domid: DomId, vcpu: number) => void;
export type TraceListener = (ev: EvtchnTraceEvent) => void;

/**
 * The host's event channels. `new EventChannels(host)` registers itself for domain creation and
 * death and raises VIRQ_DOM_EXC whenever the host reports a domain state change.
 */
export class EventChannels implements DomainHooks {
  private readonly tables = new Map<Domain, DomainEvtchn>();
  /** global_virq_handlers[]: explicitly set handlers; unset means the hardware domain. */
  private readonly globalVirqHandlers: (Domain | undefined)[] = new Array<Domain | undefined>(NR_VIRQS);
  private readonly upcallListeners: UpcallListener[] = [];
  private readonly traceListeners: TraceListener[] = [];
  /** Events of Xen's own doing during a hypercall, emitted after the hypercall's own event. */
  private deferred: EvtchnTraceEvent[] | undefined;

  constructor(readonly host: Host) {
    host.addHooks(this);
    host.onDomExc(() => this.sendGlobalVirq(Virq.VIRQ_DOM_EXC));
    for (const d of host.domains.values()) {
      if (d.dying === DomDying.DOMDYING_alive) this.domainCreated(d);
    }
  }

  // ---- listeners --------------------------------------------------------------------------

  /** Called when a vCPU's evtchn_upcall_pending goes 0 -> 1 (vcpu_kick). Returns an unsubscribe. */
  onUpcall(f: UpcallListener): () => void {
    return subscribe(this.upcallListeners, f);
  }

  onTrace(f: TraceListener): () => void {
    return subscribe(this.traceListeners, f);
  }

  // ---- DomainHooks ------------------------------------------------------------------------

  /** evtchn_init(). */
  domainCreated(d: Domain): void {
    this.tables.set(d, new DomainEvtchn(d));
  }

  /** evtchn_destroy(): close every port (peers become unbound, silently), drop global VIRQs. */
  domainKilled(d: Domain): void {
    const t = this.tables.get(d);
    if (!t) return;
    this.trace(() => ({ kind: 'evtchn', op: 'evtchn_destroy', domid: d.domid, result: 0 }));
    for (let port = t.chn.length - 1; port > 0; port--) this.closeTraced(t, port);
    // clear_global_virq_handlers()
    for (let virq = 0; virq < NR_VIRQS; virq++) {
      if (this.globalVirqHandlers[virq] === d) this.globalVirqHandlers[virq] = undefined;
    }
  }

  /** evtchn_destroy_final(). */
  domainFreed(d: Domain): void {
    this.tables.delete(d);
  }

  // ---- hypercalls: HYPERVISOR_event_channel_op ----------------------------------------------

  /**
   * do_event_channel_op(cmd, arg) for the hypercall layer: -ENOSYS for commands not modelled,
   * -EFAULT when `arg` lacks an IN field or holds one that does not
   * fit its C type (what a bad guest pointer gets in Xen).
   */
  dispatch<C extends EvtchnOpModelled>(caller: Domain, cmd: C, arg: EvtchnOpArgs[C]): EvtchnResult<EvtchnOpResults[C]>;
  dispatch(caller: Domain, cmd: number, arg: unknown): EvtchnResult<EvtchnOpResults[EvtchnOpModelled]>;
  dispatch(caller: Domain, cmd: number, arg: unknown): EvtchnResult<EvtchnOpResults[EvtchnOpModelled]> {
    const entry = Object.hasOwn(EVTCHN_OPS, cmd) ? EVTCHN_OPS[cmd as EvtchnOpModelled] : undefined;
    const name = EvtchnOp[cmd] ?? `EVTCHNOP_${cmd}`;
    if (!entry) return this.failed(caller, name, -Errno.ENOSYS);
    if (typeof arg !== 'object' || arg === null) return this.failed(caller, name, -Errno.EFAULT);
    const copy: Record<string, number> = {};
    for (const [field, max] of Object.entries(entry.fields) as [string, number][]) {
      const v: unknown = (arg as Record<string, unknown>)[field];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
        return this.failed(caller, name, -Errno.EFAULT);
      }
      copy[field] = v;
    }
    return (entry.run as (ec: EventChannels, c: Domain, a: unknown) => EvtchnResult<EvtchnOpResults[EvtchnOpModelled]>)(
      this,
      caller,
      copy,
    );
  }

  /**
   * EVTCHNOP_alloc_unbound: a port in `dom` waiting for `remote_dom` (DOMID_SELF there is stored
   * as the caller's id). -ESRCH unknown dom, -EINVAL dom dying, -ENOSPC table full, -EPERM dom
   * is another domain and the caller is not privileged (checked in Xen's order).
   */
  allocUnbound(caller: Domain, arg: EvtchnOpArgs[EvtchnOp.EVTCHNOP_alloc_unbound]): EvtchnResult<evtchn_alloc_unbound> {
    const { dom, remote_dom } = arg;
    return this.hypercall(caller, 'EVTCHNOP_alloc_unbound', { dom, remote_dom }, () => {
      const d = this.host.lookup(dom, caller);
      const t = d && this.tables.get(d);
      if (!d || !t) return -Errno.ESRCH;
      const chn = t.getFreePort();
      if (typeof chn === 'number') return chn;
      if (!xsmTarget(caller, d)) return -Errno.EPERM;
      chn.state = ECS.ECS_UNBOUND;
      chn.remoteDomid = remote_dom === DOMID_SELF ? caller.domid : remote_dom;
      return { dom, remote_dom, port: chn.port };
    });
  }

  /**
   * EVTCHNOP_bind_interdomain: connects a new local port to <remote_dom, remote_port>, which
   * must be UNBOUND and waiting for the caller; the new local port is always left pending.
   * -ESRCH unknown remote, -EINVAL caller dying, -ENOSPC no local port, -EINVAL bad remote port.
   */
  bindInterdomain(
    caller: Domain,
    arg: EvtchnOpArgs[EvtchnOp.EVTCHNOP_bind_interdomain],
  ): EvtchnResult<evtchn_bind_interdomain> {
    const { remote_dom, remote_port } = arg;
    let remote: EvtchnTraceEvent['remote'];
    return this.hypercall(
      caller,
      'EVTCHNOP_bind_interdomain',
      { remote_dom, remote_port },
      () => {
        const lt = this.tables.get(caller);
        const rd = this.host.lookup(remote_dom, caller);
        const rt = rd && this.tables.get(rd);
        if (!lt || !rd || !rt) return -Errno.ESRCH;
        const lchn = lt.getFreePort();
        if (typeof lchn === 'number') return lchn;
        const rchn = rt.lookup(remote_port);
        if (!rchn || rchn.state !== ECS.ECS_UNBOUND || rchn.remoteDomid !== caller.domid) return -Errno.EINVAL;
        lchn.state = ECS.ECS_INTERDOMAIN;
        lchn.remoteDom = rd;
        lchn.remotePort = rchn.port;
        rchn.state = ECS.ECS_INTERDOMAIN;
        rchn.remoteDom = caller;
        rchn.remotePort = lchn.port;
        remote = { domid: rd.domid, port: rchn.port };
        // Notifications sent to the remote port while it was unbound were dropped: make up for
        // them by always leaving the new local port pending.
        this.setPending(lt, lchn.notifyVcpu, lchn);
        return { remote_dom, remote_port, local_port: lchn.port };
      },
      () => remote,
    );
  }

  /**
   * EVTCHNOP_bind_virq: -EINVAL virq >= NR_VIRQS or (not per-vCPU and vcpu != 0), -ENOENT no such
   * vCPU, -EBUSY global VIRQ whose handler is another domain, -EEXIST already bound on that vCPU,
   * -ENOSPC / -EINVAL (dying) from port allocation.
   */
  bindVirq(caller: Domain, arg: EvtchnOpArgs[EvtchnOp.EVTCHNOP_bind_virq]): EvtchnResult<evtchn_bind_virq> {
    const { virq, vcpu } = arg;
    return this.hypercall(caller, 'EVTCHNOP_bind_virq', { virq, vcpu }, () => {
      const t = this.tables.get(caller);
      if (!t) return -Errno.ESRCH;
      if (!Number.isInteger(virq) || virq < 0 || virq >= NR_VIRQS) return -Errno.EINVAL;
      const type = getVirqType(virq);
      if (type !== VirqType.VIRQ_VCPU && vcpu !== 0) return -Errno.EINVAL;
      if (!t.hasVcpu(vcpu)) return -Errno.ENOENT;
      if (type === VirqType.VIRQ_GLOBAL && this.globalVirqHandler(virq) !== caller) return -Errno.EBUSY;
      if (t.virqToEvtchn[vcpu][virq] !== 0) return -Errno.EEXIST;
      const chn = t.getFreePort();
      if (typeof chn === 'number') return chn;
      chn.state = ECS.ECS_VIRQ;
      chn.notifyVcpu = vcpu;
      chn.virq = virq;
      t.virqToEvtchn[vcpu][virq] = chn.port;
      return { virq, vcpu, port: chn.port };
    });
  }

  /**
   * EVTCHNOP_bind_pirq: a physical (or, for HVM, emulated) IRQ the hypervisor mapped for the
   * caller. -EINVAL pirq out of range or not mapped, -EEXIST already bound, -ENOSPC from port
   * allocation. (xensim maps only the emulated SCI of HVM guests.)
   */
  bindPirq(caller: Domain, arg: EvtchnOpArgs[EvtchnOp.EVTCHNOP_bind_pirq]): EvtchnResult<evtchn_bind_pirq> {
    const { pirq, flags } = arg;
    return this.hypercall(caller, 'EVTCHNOP_bind_pirq', { pirq, flags }, () => {
      const t = this.tables.get(caller);
      if (!t) return -Errno.ESRCH;
      if (!Number.isInteger(pirq) || pirq < 0 || pirq >= NR_PIRQS || !t.mappedPirqs.has(pirq)) return -Errno.EINVAL;
      if (t.pirqToEvtchn.has(pirq)) return -Errno.EEXIST;
      const chn = t.getFreePort();
      if (typeof chn === 'number') return chn;
      chn.state = ECS.ECS_PIRQ;
      chn.pirq = pirq;
      t.pirqToEvtchn.set(pirq, chn.port);
      return { pirq, flags, port: chn.port };
    });
  }

  /** PHYSDEVOP_map_pirq's effect, done by the hypervisor for an HVM guest's emulated IRQs. */
  mapPirq(d: Domain, pirq: number): void {
    this.tables.get(d)?.mappedPirqs.add(pirq);
  }

  /** send_guest_pirq(): the IRQ fired; its port (if bound) goes pending. */
  sendGuestPirq(d: Domain, pirq: number): void {
    const t = this.tables.get(d);
    const port = t?.pirqToEvtchn.get(pirq);
    if (!t || port === undefined) return;
    const chn = t.chn[port];
    this.trace(() => ({ kind: 'evtchn', op: 'send_guest_pirq', domid: d.domid, port: chn.port, result: 0 }));
    this.setPending(t, chn.notifyVcpu, chn);
  }

  /** EVTCHNOP_bind_ipi: -ENOENT no such vCPU, -ENOSPC / -EINVAL (dying) from port allocation. */
  bindIpi(caller: Domain, arg: EvtchnOpArgs[EvtchnOp.EVTCHNOP_bind_ipi]): EvtchnResult<evtchn_bind_ipi> {
    const { vcpu } = arg;
    return this.hypercall(caller, 'EVTCHNOP_bind_ipi', { vcpu }, () => {
      const t = this.tables.get(caller);
      if (!t) return -Errno.ESRCH;
      if (!t.hasVcpu(vcpu)) return -Errno.ENOENT;
      const chn = t.getFreePort();
      if (typeof chn === 'number') return chn;
      chn.state = ECS.ECS_IPI;
      chn.notifyVcpu = vcpu;
      return { vcpu, port: chn.port };
    });
  }

  /**
   * EVTCHNOP_close: frees one of the caller's ports; an interdomain peer becomes UNBOUND
   * (remote_domid = the caller) without any notification. -EINVAL invalid, free or reserved port.
   */
  close(caller: Domain, arg: evtchn_close): EvtchnResult<0> {
    const { port } = arg;
    let remote: EvtchnTraceEvent['remote'];
    return this.hypercall(
      caller,
      'EVTCHNOP_close',
      { port },
      () => {
        const t = this.tables.get(caller);
        if (!t) return -Errno.ESRCH;
        const r = this.closePort(t, port);
        remote = typeof r === 'object' ? r : undefined;
        return typeof r === 'number' ? r : 0;
      },
      () => remote,
    );
  }

  /**
   * Fault knob (the scenario engine's): an interdomain notification may be held back for a while
   * (notifications then arrive late and out of order) or lost. Xen itself never loses one; the
   * knob shows what drivers do when the other side's event comes late, or not at all.
   */
  notifyFault: ((from: Domain, to: Domain, port: EvtchnPort) => 'deliver' | 'drop' | { readonly delayNs: number }) | undefined;
  /** Runs `fn` after `ns` of the host's time (set by whoever owns the clock). */
  defer: ((ns: number, fn: () => void) => void) | undefined;

  private notifyInterdomain(from: Domain, to: Domain, rchn: Evtchn, deliver: () => void): void {
    const f = this.notifyFault?.(from, to, rchn.port) ?? 'deliver';
    if (f === 'deliver') {
      deliver();
      return;
    }
    const peer = rchn.remoteDom;
    if (f === 'drop') {
      this.trace(() => ({ kind: 'evtchn', op: 'fault_notify_dropped', domid: to.domid, port: rchn.port, result: 0 }));
      return;
    }
    this.trace(() => ({ kind: 'evtchn', op: 'fault_notify_held', domid: to.domid, port: rchn.port, result: 0, args: { delayNs: f.delayNs } }));
    this.defer?.(f.delayNs, () => {
      // The channel may have been closed or rebound meanwhile: deliver only to the same binding.
      if (rchn.state !== ECS.ECS_INTERDOMAIN || rchn.remoteDom !== peer || to.dying) return;
      this.trace(() => ({ kind: 'evtchn', op: 'fault_notify_released', domid: to.domid, port: rchn.port, result: 0 }));
      deliver();
    });
  }

  /**
   * EVTCHNOP_send: interdomain -> the peer port goes pending on its notify vCPU; IPI -> the port
   * itself; UNBOUND -> nothing, and 0. -EINVAL invalid port or any other state.
   */
  send(caller: Domain, arg: evtchn_send): EvtchnResult<0> {
    const { port } = arg;
    let remote: EvtchnTraceEvent['remote'];
    return this.hypercall(
      caller,
      'EVTCHNOP_send',
      { port },
      () => {
        const t = this.tables.get(caller);
        const lchn = t?.lookup(port);
        if (!t || !lchn) return -Errno.EINVAL;
        switch (lchn.state) {
          case ECS.ECS_INTERDOMAIN: {
            const rd = lchn.remoteDom!;
            const rt = this.tables.get(rd)!;
            const rchn = rt.chn[lchn.remotePort];
            remote = { domid: rd.domid, port: rchn.port };
            this.notifyInterdomain(caller, rd, rchn, () => this.setPending(rt, rchn.notifyVcpu, rchn));
            return 0;
          }
          case ECS.ECS_IPI:
            this.setPending(t, lchn.notifyVcpu, lchn);
            return 0;
          case ECS.ECS_UNBOUND:
            // Silently dropped: the peer closed or died, or has not bound yet.
            return 0;
          case ECS.ECS_FREE:
          case ECS.ECS_RESERVED:
          case ECS.ECS_PIRQ:
          case ECS.ECS_VIRQ:
            return -Errno.EINVAL;
        }
      },
      () => remote,
    );
  }

  /**
   * EVTCHNOP_status of <dom, port>; dom may be DOMID_SELF. -ESRCH unknown dom, -EINVAL port
   * invalid, -EPERM another domain without privilege (in that order, as Xen checks them).
   */
  status(caller: Domain, arg: EvtchnOpArgs[EvtchnOp.EVTCHNOP_status]): EvtchnResult<evtchn_status> {
    const { dom, port } = arg;
    return this.hypercall(caller, 'EVTCHNOP_status', { dom, port }, (): EvtchnResult<evtchn_status> => {
      const d = this.host.lookup(dom, caller);
      const t = d && this.tables.get(d);
      if (!d || !t) return -Errno.ESRCH;
      const chn = t.lookup(port);
      if (!chn) return -Errno.EINVAL;
      if (!xsmTarget(caller, d)) return -Errno.EPERM;
      const head = { dom, port: chn.port, vcpu: chn.notifyVcpu };
      switch (chn.state) {
        case ECS.ECS_FREE:
        case ECS.ECS_RESERVED:
          return { ...head, status: EvtchnStat.EVTCHNSTAT_closed, u: {} };
        case ECS.ECS_UNBOUND:
          return { ...head, status: EvtchnStat.EVTCHNSTAT_unbound, u: { unbound: { dom: chn.remoteDomid } } };
        case ECS.ECS_INTERDOMAIN:
          return {
            ...head,
            status: EvtchnStat.EVTCHNSTAT_interdomain,
            u: { interdomain: { dom: chn.remoteDom!.domid, port: chn.remotePort } },
          };
        case ECS.ECS_PIRQ:
          return { ...head, status: EvtchnStat.EVTCHNSTAT_pirq, u: { pirq: chn.pirq } };
        case ECS.ECS_VIRQ:
          return { ...head, status: EvtchnStat.EVTCHNSTAT_virq, u: { virq: chn.virq } };
        case ECS.ECS_IPI:
          return { ...head, status: EvtchnStat.EVTCHNSTAT_ipi, u: {} };
      }
    });
  }

  /**
   * EVTCHNOP_bind_vcpu: which vCPU a port notifies. Allowed for UNBOUND, INTERDOMAIN and
   * non-per-vCPU VIRQ ports. -ENOENT no such vCPU, -EINVAL invalid port or any other state.
   */
  bindVcpu(caller: Domain, arg: evtchn_bind_vcpu): EvtchnResult<0> {
    const { port, vcpu } = arg;
    return this.hypercall(caller, 'EVTCHNOP_bind_vcpu', { port, vcpu }, () => {
      const t = this.tables.get(caller);
      if (!t) return -Errno.ESRCH;
      if (!t.hasVcpu(vcpu)) return -Errno.ENOENT;
      const chn = t.lookup(port);
      if (!chn) return -Errno.EINVAL;
      switch (chn.state) {
        case ECS.ECS_VIRQ:
          if (getVirqType(chn.virq) === VirqType.VIRQ_VCPU) return -Errno.EINVAL;
          chn.notifyVcpu = vcpu;
          return 0;
        case ECS.ECS_UNBOUND:
        case ECS.ECS_INTERDOMAIN:
          chn.notifyVcpu = vcpu;
          return 0;
        case ECS.ECS_FREE:
        case ECS.ECS_RESERVED:
        case ECS.ECS_PIRQ:
        case ECS.ECS_IPI:
          return -Errno.EINVAL;
      }
    });
  }

  /**
   * EVTCHNOP_unmask: clears mask[port] and, if the port is pending, delivers the notification
   * that was held back (selector bit, then upcall). -EINVAL invalid port; a valid but unbound
   * (free) port is left alone and the answer is 0, as in Xen.
   */
  unmask(caller: Domain, arg: evtchn_unmask): EvtchnResult<0> {
    const { port } = arg;
    let delivery: Delivery | undefined;
    return this.hypercall(
      caller,
      'EVTCHNOP_unmask',
      { port },
      () => {
        const t = this.tables.get(caller);
        const chn = t?.lookup(port);
        if (!t || !chn) return -Errno.EINVAL;
        delivery = this.unmaskPort(t, chn);
        return 0;
      },
      undefined,
      () => delivery,
    );
  }

  /**
   * EVTCHNOP_reset: closes every port of `dom` (DOMID_SELF, or another domain if privileged).
   * -ESRCH unknown dom, -EPERM foreign without privilege, -EINVAL foreign and not paused.
   */
  reset(caller: Domain, arg: evtchn_reset): EvtchnResult<0> {
    const { dom } = arg;
    return this.hypercall(caller, 'EVTCHNOP_reset', { dom }, () => {
      const d = this.host.lookup(dom, caller);
      const t = d && this.tables.get(d);
      if (!d || !t) return -Errno.ESRCH;
      if (!xsmTarget(caller, d)) return -Errno.EPERM;
      if (d !== caller && d.pauseCount === 0) return -Errno.EINVAL;
      for (let port = 1; port < t.chn.length; port++) this.closeTraced(t, port);
      return 0;
    });
  }

  // ---- the FIFO ABI ---------------------------------------------------------------------------

  /**
   * EVTCHNOP_init_control (evtchn_fifo_init_control): vCPU `vcpu`'s control block is at `offset`
   * of the caller's page `control_gfn`. The first one switches the domain to FIFO for good: ports
   * pending under 2-level keep that as saved pending state, raised again when their array page
   * arrives. -ENOENT no such vCPU, -EINVAL offset crossing the page or not 8-aligned, a page the
   * caller does not have, or a vCPU whose control block is already set. OUT link_bits.
   */
  initControl(caller: Domain, arg: EvtchnOpArgs[EvtchnOp.EVTCHNOP_init_control]): EvtchnResult<evtchn_init_control> {
    const { control_gfn, offset, vcpu } = arg;
    return this.hypercall(caller, 'EVTCHNOP_init_control', { control_gfn, offset, vcpu }, () => {
      const t = this.tables.get(caller);
      if (!t) return -Errno.ESRCH;
      if (!t.hasVcpu(vcpu)) return -Errno.ENOENT;
      if (offset > XEN_PAGE_SIZE - EvtchnFifoControlBlock.SIZE || offset % 8 !== 0) return -Errno.EINVAL;
      const frame = caller.p2m[control_gfn];
      if (!frame) return -Errno.EINVAL;
      if (t.fifo?.control[vcpu]) return -Errno.EINVAL;
      if (!t.fifo) {
        const fifo = new EvtchnFifo(caller.sharedInfo!.sab, EvtchnFifo.xenPrivate());
        // setup_ports(): what was pending under 2-level is kept for when its array page comes.
        for (let port = 1; port < t.chn.length; port++) {
          if (t.chn[port].state !== ECS.ECS_FREE && t.bits.isPending(port)) fifo.setSavedPending(port, true);
          fifo.setPriority(port, EVTCHN_FIFO_PRIORITY_DEFAULT);
        }
        t.fifo = fifo;
      }
      t.fifo.mapControlBlock(vcpu, frame.sab, frame.offset + offset);
      t.fifoFrames.control[vcpu] = frame;
      return { control_gfn, offset, vcpu, link_bits: EVTCHN_FIFO_LINK_BITS };
    });
  }

  /**
   * EVTCHNOP_expand_array (add_page_to_event_array): the caller's page becomes the next 1024
   * ports' event words; ports that went pending while they had no page are raised now.
   * -EOPNOTSUPP before init_control, -ENOSPC past 128 pages, -EINVAL a page the caller lacks.
   */
  expandArray(caller: Domain, arg: evtchn_expand_array): EvtchnResult<0> {
    const { array_gfn } = arg;
    return this.hypercall(caller, 'EVTCHNOP_expand_array', { array_gfn }, () => {
      const t = this.tables.get(caller);
      if (!t) return -Errno.ESRCH;
      const fifo = t.fifo;
      if (!fifo) return -Errno.EOPNOTSUPP;
      if (fifo.numEvtchns >= EVTCHN_FIFO_NR_CHANNELS) return -Errno.ENOSPC;
      const frame = caller.p2m[array_gfn];
      if (!frame) return -Errno.EINVAL;
      const first = fifo.addArrayPage(frame.sab, frame.offset);
      t.fifoFrames.array.push(frame);
      for (let port = first; port < fifo.numEvtchns && port < t.chn.length; port++) {
        if (!fifo.savedPending(port)) continue;
        fifo.setSavedPending(port, false);
        const chn = t.chn[port];
        this.setPending(t, chn.notifyVcpu, chn);
      }
      return 0;
    });
  }

  /**
   * EVTCHNOP_set_priority: future events of the caller's port go to that priority's queue (one
   * already linked stays where it is). -EINVAL invalid port or priority > 15, -ENOSYS 2-level.
   */
  setPriority(caller: Domain, arg: evtchn_set_priority): EvtchnResult<0> {
    const { port, priority } = arg;
    return this.hypercall(caller, 'EVTCHNOP_set_priority', { port, priority }, () => {
      const t = this.tables.get(caller);
      const chn = t?.lookup(port);
      if (!t || !chn) return -Errno.EINVAL;
      if (!t.fifo) return -Errno.ENOSYS;
      if (priority > EVTCHN_FIFO_PRIORITY_MIN) return -Errno.EINVAL;
      t.fifo.setPriority(port, priority);
      return 0;
    });
  }

  /** How many of a domain's ports are bound (not ECS_FREE, port 0 aside), and its FIFO array pages. */
  usage(d: Domain): { readonly ports: number; readonly arrayPages: number } {
    const t = this.tables.get(d);
    if (!t) return { ports: 0, arrayPages: 0 };
    let ports = 0;
    for (let port = 1; port < t.chn.length; port++) if (t.chn[port].state !== ECS.ECS_FREE) ports++;
    return { ports, arrayPages: t.fifo?.array.length ?? 0 };
  }

  /** Whether the domain switched to the FIFO ABI. */
  isFifo(d: Domain): boolean {
    return this.tables.get(d)?.fifo !== undefined;
  }

  /**
   * What a sender on the fast path needs to link events into a FIFO domain's queues itself: Xen's
   * private state (lock, tails, priorities) and the frames of the control blocks and event array.
   */
  fifoShare(d: Domain): { priv: SharedArrayBuffer; control: ({ sab: SharedArrayBuffer; offset: number } | undefined)[]; array: { sab: SharedArrayBuffer; offset: number }[] } | undefined {
    const t = this.tables.get(d);
    if (!t?.fifo?.priv) return undefined;
    const cbOff = (v: number): number => t.fifo!.control[v]!.byteOffset;
    return {
      priv: t.fifo.priv.buffer as SharedArrayBuffer,
      control: t.fifoFrames.control.map((f, v) => (f ? { sab: f.sab, offset: cbOff(v) } : undefined)),
      array: t.fifoFrames.array.map((f) => ({ sab: f.sab, offset: f.offset })),
    };
  }

  /**
   * The ABI's no-lost-wakeup invariant for vCPU 0 of `d` at a quiet point: a description of the
   * first port breaking it, or undefined.
   */
  lostWakeup(d: Domain): string | undefined {
    const t = this.tables.get(d);
    if (!t) return undefined;
    if (t.fifo) {
      const lost = fifoLostWakeup(t.fifo, 0);
      return lost && `port ${lost.port} ${lost.why} (FIFO)`;
    }
    const lost = t.bits.lostWakeup(0);
    return lost && `port(s) pending in word ${lost.word} (bits 0x${lost.bits.toString(16)}) but no upcall pending`;
  }

  // ---- VIRQs ------------------------------------------------------------------------------

  /** get_global_virq_handler(): the explicitly set handler, else the hardware domain (dom0). */
  globalVirqHandler(virq: number): Domain | undefined {
    return this.globalVirqHandlers[virq] ?? this.host.domains.get(0);
  }

  /**
   * set_global_virq_handler() (XEN_DOMCTL_set_virq_handler; the domctl layer checks privilege).
   * -EINVAL not a global VIRQ or `d` dying, -EBUSY the current handler has the VIRQ bound.
   */
  setVirqHandler(d: Domain, virq: number): 0 | NegErrno {
    const rc = ((): 0 | NegErrno => {
      if (!Number.isInteger(virq) || virq < 0 || virq >= NR_VIRQS) return -Errno.EINVAL;
      if (getVirqType(virq) !== VirqType.VIRQ_GLOBAL) return -Errno.EINVAL;
      if (this.globalVirqHandlers[virq] === d) return 0;
      if (d.dying !== DomDying.DOMDYING_alive) return -Errno.EINVAL;
      const hdl = this.globalVirqHandler(virq);
      if (hdl && hdl !== d && (this.tables.get(hdl)?.virqToEvtchn[0][virq] ?? 0) !== 0) return -Errno.EBUSY;
      this.globalVirqHandlers[virq] = d;
      return 0;
    })();
    this.trace(() => ({ kind: 'evtchn', op: 'set_global_virq_handler', domid: d.domid, virq, result: rc }));
    return rc;
  }

  /** send_global_virq(): to the handler's port for `virq`, if it has bound one. */
  sendGlobalVirq(virq: Virq): void {
    const d = this.globalVirqHandler(virq);
    this.trace(() => ({ kind: 'evtchn', op: 'send_global_virq', domid: d?.domid ?? DOMID_INVALID, virq, result: 0 }));
    if (d) this.sendGuestDomainVirq(d, virq);
  }

  /** send_guest_domain_virq(): a global or per-domain VIRQ bound on vCPU 0's table. */
  sendGuestDomainVirq(d: Domain, virq: Virq): void {
    const t = this.tables.get(d);
    const port = t?.virqToEvtchn[0]?.[virq] ?? 0;
    if (!t || port === 0) return;
    const chn = t.chn[port];
    this.setPending(t, chn.notifyVcpu, chn);
  }

  /** send_guest_vcpu_virq(): a per-vCPU VIRQ (VIRQ_TIMER, VIRQ_DEBUG, ...). */
  sendGuestVcpuVirq(d: Domain, vcpu: number, virq: Virq): void {
    const t = this.tables.get(d);
    const port = t?.virqToEvtchn[vcpu]?.[virq] ?? 0;
    if (!t || port === 0) return;
    this.setPending(t, vcpu, t.chn[port]);
  }

  // ---- inspection -------------------------------------------------------------------------

  /** Xen's 'e' debug key for one domain: `port [p/m/s]: s=state n=vcpu x=0 d=.. p=.. v=..`. */
  dump(d: Domain): string {
    const t = this.tables.get(d);
    if (!t) return '';
    const lines = [`Event channel information for domain ${d.domid}:`, 'Polling vCPUs: {}', '    port [p/m/s]'];
    for (let port = 1; port < t.chn.length; port++) {
      const chn = t.chn[port];
      if (chn.state === ECS.ECS_FREE) continue;
      const p = Number(t.isPending(port));
      const m = Number(t.isMasked(port));
      // 2-level: the selector bit; FIFO: LINKED (on a queue).
      const s = Number(t.fifo ? t.fifo.isLinked(port) : t.bits.selectorSet(chn.notifyVcpu, port));
      let line = `    ${String(port).padStart(4)} [${p}/${m}/${s}]: s=${chn.state} n=${chn.notifyVcpu} x=0`;
      if (chn.state === ECS.ECS_UNBOUND) line += ` d=${chn.remoteDomid}`;
      else if (chn.state === ECS.ECS_INTERDOMAIN) line += ` d=${chn.remoteDom!.domid} p=${chn.remotePort}`;
      else if (chn.state === ECS.ECS_VIRQ) line += ` v=${chn.virq}`;
      lines.push(line);
    }
    return lines.join('\n');
  }

  // ---- internals --------------------------------------------------------------------------

  /**
   * evtchn_close(): frees the port and flips an interdomain peer to UNBOUND. Returns the peer
   * that was unbound, 0, or -EINVAL.
   */
  private closePort(t1: DomainEvtchn, port1: number): { domid: DomId; port: EvtchnPort } | 0 | NegErrno {
    const chn1 = t1.lookup(port1);
    if (!chn1) return -Errno.EINVAL;
    switch (chn1.state) {
      case ECS.ECS_FREE:
      case ECS.ECS_RESERVED:
        return -Errno.EINVAL;
      case ECS.ECS_UNBOUND:
      case ECS.ECS_IPI:
        break;
      case ECS.ECS_PIRQ:
        t1.pirqToEvtchn.delete(chn1.pirq);
        break;
      case ECS.ECS_VIRQ: {
        const v = getVirqType(chn1.virq) !== VirqType.VIRQ_VCPU ? 0 : chn1.notifyVcpu;
        t1.virqToEvtchn[v][chn1.virq] = 0;
        break;
      }
      case ECS.ECS_INTERDOMAIN: {
        const d2 = chn1.remoteDom!;
        const chn2 = this.tables.get(d2)!.chn[chn1.remotePort];
        this.freeChannel(t1, chn1);
        chn2.state = ECS.ECS_UNBOUND;
        chn2.remoteDomid = t1.d.domid;
        chn2.remoteDom = undefined;
        return { domid: d2.domid, port: chn2.port };
      }
    }
    this.freeChannel(t1, chn1);
    return 0;
  }

  /** closePort() for reset and destroy: one trace event per port that was in use. */
  private closeTraced(t: DomainEvtchn, port: number): void {
    const r = this.closePort(t, port);
    if (r === -Errno.EINVAL) return;
    this.trace(() => ({
      kind: 'evtchn',
      op: 'evtchn_close',
      domid: t.d.domid,
      port: evtchnPort(port),
      result: 0,
      ...(typeof r === 'object' ? { remote: r } : {}),
    }));
  }

  /** evtchn_free(): clear pending (so a rebind starts clean), back to FREE on vCPU 0. */
  private freeChannel(t: DomainEvtchn, chn: Evtchn): void {
    t.clearPending(chn.port);
    chn.state = ECS.ECS_FREE;
    t.freed(chn.port);
    chn.notifyVcpu = 0;
    chn.remoteDom = undefined;
    chn.remoteDomid = 0 as DomId;
    chn.remotePort = 0 as EvtchnPort;
    chn.virq = 0 as Virq;
  }

  /** evtchn_port_set_pending() -> evtchn_2l_set_pending(), in its strict order. */
  private setPending(t: DomainEvtchn, vcpu: number, chn: Evtchn): void {
    const delivery: Delivery = chn.usable ? this.kickOn(t, vcpu, t.setPending(vcpu, chn)) : 'unusable';
    this.trace(() => ({
      kind: 'evtchn',
      op: 'evtchn_set_pending',
      domid: t.d.domid,
      port: chn.port,
      vcpu,
      result: 0,
      delivery,
    }));
  }

  /** evtchn_port_unmask(): mask cleared; if it was set and the port is pending, deliver. */
  private unmaskPort(t: DomainEvtchn, chn: Evtchn): Delivery {
    if (!chn.usable) return 'unusable';
    return this.kickOn(t, chn.notifyVcpu, t.unmask(chn));
  }

  /** vcpu_mark_events_pending()'s kick: when upcall_pending went 0 -> 1, wake the vCPU. */
  private kickOn(t: DomainEvtchn, vcpu: number, d: Delivery): Delivery {
    if (d !== 'upcall') return d;
    t.bits.kick(vcpu);
    for (const f of [...this.upcallListeners]) f(t.d.domid, vcpu);
    return d;
  }

  /** Runs one hypercall and traces it (with what Xen did on the way, after it). */
  private hypercall<R extends object | number>(
    caller: Domain,
    op: string,
    args: Record<string, number>,
    body: () => R,
    remoteOf?: () => EvtchnTraceEvent['remote'],
    deliveryOf?: () => Delivery | undefined,
  ): R {
    if (this.traceListeners.length === 0) return body();
    const outer = this.deferred;
    const inner: EvtchnTraceEvent[] = [];
    this.deferred = inner;
    let r: R;
    try {
      r = body();
    } finally {
      this.deferred = outer;
    }
    const port = typeof r === 'object' ? outPort(r) : args.port;
    const remote = remoteOf?.();
    const delivery = deliveryOf?.();
    this.trace(() => ({
      kind: 'evtchn',
      op,
      domid: caller.domid,
      ...(port !== undefined ? { port: port as EvtchnPort } : {}),
      result: typeof r === 'number' ? r : 0,
      args,
      ...(remote ? { remote } : {}),
      ...(delivery ? { delivery } : {}),
    }));
    for (const ev of inner) this.trace(() => ev);
    return r;
  }

  private failed(caller: Domain, op: string, rc: NegErrno): NegErrno {
    this.trace(() => ({ kind: 'evtchn', op, domid: caller.domid, result: rc }));
    return rc;
  }

  private trace(make: () => EvtchnTraceEvent): void {
    if (this.traceListeners.length === 0) return;
    const ev = make();
    if (this.deferred) this.deferred.push(ev);
    else for (const f of [...this.traceListeners]) f(ev);
  }
}

/** XSM_TARGET under the dummy policy: the domain itself, or the control domain. */
function xsmTarget(caller: Domain, d: Domain): boolean {
  return caller === d || caller.privileged;
}

function outPort(r: object): number | undefined {
  const o = r as { port?: number; local_port?: number };
  return o.local_port ?? o.port;
}

function subscribe<F>(list: F[], f: F): () => void {
  list.push(f);
  return () => {
    const i = list.indexOf(f);
    if (i >= 0) list.splice(i, 1);
  };
}
