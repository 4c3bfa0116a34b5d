// xen/include/public/event_channel.h: HYPERVISOR_event_channel_op commands, their argument
// structs (IN and OUT fields, as the hypercall copies them back) and the status values.
// Shared by the hypervisor model and the guest kernels' hypercall stubs.
import type { DomId, Virq } from './xen.ts';

declare const evtchnPortBrand: unique symbol;
/** evtchn_port_t (uint32_t): an index into one domain's own port table. */
export type EvtchnPort = number & { readonly [evtchnPortBrand]: true };
export const evtchnPort = (n: number): EvtchnPort => (n >>> 0) as EvtchnPort;

/** `enum event_channel_op`: the cmd argument of HYPERVISOR_event_channel_op. */
export enum EvtchnOp {
  EVTCHNOP_bind_interdomain = 0,
  EVTCHNOP_bind_virq = 1,
  EVTCHNOP_bind_pirq = 2,
  EVTCHNOP_close = 3,
  EVTCHNOP_send = 4,
  EVTCHNOP_status = 5,
  EVTCHNOP_alloc_unbound = 6,
  EVTCHNOP_bind_ipi = 7,
  EVTCHNOP_bind_vcpu = 8,
  EVTCHNOP_unmask = 9,
  EVTCHNOP_reset = 10,
  /** The FIFO ABI (event_fifo.ts): a domain's first init_control switches it from 2-level. */
  EVTCHNOP_init_control = 11,
  EVTCHNOP_expand_array = 12,
  EVTCHNOP_set_priority = 13,
}

/** evtchn_status.status (EVTCHNSTAT_*). */
export enum EvtchnStat {
  /** Channel is not in use (also what the reserved port 0 reports). */
  EVTCHNSTAT_closed = 0,
  /** Channel is waiting for an interdomain connection from u.unbound.dom. */
  EVTCHNSTAT_unbound = 1,
  /** Channel is connected to u.interdomain.{dom,port}. */
  EVTCHNSTAT_interdomain = 2,
  /** Channel is bound to a physical IRQ line (not modelled). */
  EVTCHNSTAT_pirq = 3,
  /** Channel is bound to VIRQ u.virq. */
  EVTCHNSTAT_virq = 4,
  /** Channel is bound to a virtual IPI line. */
  EVTCHNSTAT_ipi = 5,
}

/**
 * EVTCHNOP_alloc_unbound: allocate a port in <dom> accepting a binding from <remote_dom>.
 * IN dom (DOMID_SELF unless the caller is privileged), remote_dom (DOMID_SELF = loopback);
 * OUT port.
 */
export interface evtchn_alloc_unbound {
  readonly dom: DomId;
  readonly remote_dom: DomId;
  readonly port: EvtchnPort;
}

/**
 * EVTCHNOP_bind_interdomain: connect to <remote_dom, remote_port>, which must be unbound and
 * waiting for the caller. IN remote_dom (may be DOMID_SELF), remote_port; OUT local_port, which
 * is always left pending.
 */
export interface evtchn_bind_interdomain {
  readonly remote_dom: DomId;
  readonly remote_port: EvtchnPort;
  readonly local_port: EvtchnPort;
}

/** EVTCHNOP_bind_virq: IN virq, vcpu (0 for global and per-domain VIRQs); OUT port. */
export interface evtchn_bind_virq {
  readonly virq: Virq;
  readonly vcpu: number;
  readonly port: EvtchnPort;
}

/** EVTCHNOP_bind_pirq: IN pirq, flags (BIND_PIRQ__WILL_SHARE); OUT port. */
export interface evtchn_bind_pirq {
  readonly pirq: number;
  readonly flags: number;
  readonly port: EvtchnPort;
}

export const BIND_PIRQ__WILL_SHARE = 1;

/** EVTCHNOP_bind_ipi: IN vcpu; OUT port. */
export interface evtchn_bind_ipi {
  readonly vcpu: number;
  readonly port: EvtchnPort;
}

/** EVTCHNOP_close: IN port (of the caller). An interdomain peer becomes unbound. */
export interface evtchn_close {
  readonly port: EvtchnPort;
}

/** EVTCHNOP_send: IN port (of the caller); notifies the remote end. */
export interface evtchn_send {
  readonly port: EvtchnPort;
}

/** The union `u` of evtchn_status, keyed by `status`. */
export type evtchn_status_u =
  | { readonly status: EvtchnStat.EVTCHNSTAT_closed; readonly u: Readonly<Record<never, never>> }
  | { readonly status: EvtchnStat.EVTCHNSTAT_unbound; readonly u: { readonly unbound: { readonly dom: DomId } } }
  | {
      readonly status: EvtchnStat.EVTCHNSTAT_interdomain;
      readonly u: { readonly interdomain: { readonly dom: DomId; readonly port: EvtchnPort } };
    }
  | { readonly status: EvtchnStat.EVTCHNSTAT_pirq; readonly u: { readonly pirq: number } }
  | { readonly status: EvtchnStat.EVTCHNSTAT_virq; readonly u: { readonly virq: Virq } }
  | { readonly status: EvtchnStat.EVTCHNSTAT_ipi; readonly u: Readonly<Record<never, never>> };

/**
 * EVTCHNOP_status: IN dom (may be DOMID_SELF; another domain needs privilege), port;
 * OUT status, vcpu (the notification vCPU) and the union u.
 */
export type evtchn_status = {
  readonly dom: DomId;
  readonly port: EvtchnPort;
  readonly vcpu: number;
} & evtchn_status_u;

/** EVTCHNOP_bind_vcpu: IN port, vcpu. Not for IPI or per-vCPU VIRQ ports. */
export interface evtchn_bind_vcpu {
  readonly port: EvtchnPort;
  readonly vcpu: number;
}

/** EVTCHNOP_unmask: IN port; delivers a notification if the port is pending. */
export interface evtchn_unmask {
  readonly port: EvtchnPort;
}

/** EVTCHNOP_reset: IN dom (DOMID_SELF, or another domain if privileged); closes all its ports. */
export interface evtchn_reset {
  readonly dom: DomId;
}

/**
 * EVTCHNOP_init_control: vCPU `vcpu`'s FIFO control block is at byte `offset` (8-aligned, not
 * crossing the page) of the caller's page `control_gfn`. IN control_gfn (uint64), offset, vcpu;
 * OUT link_bits (EVTCHN_FIFO_LINK_BITS). Ports pending at the switch go pending again as their
 * event-array page arrives.
 */
export interface evtchn_init_control {
  readonly control_gfn: number;
  readonly offset: number;
  readonly vcpu: number;
  readonly link_bits: number;
}

/** EVTCHNOP_expand_array: the caller's page `array_gfn` becomes the next event-array page. */
export interface evtchn_expand_array {
  readonly array_gfn: number;
}

/** EVTCHNOP_set_priority: IN port, priority (0 highest .. 15). FIFO only: -ENOSYS on 2-level. */
export interface evtchn_set_priority {
  readonly port: number;
  readonly priority: number;
}

/** What each command reads (its IN fields). */
export interface EvtchnOpArgs {
  [EvtchnOp.EVTCHNOP_bind_interdomain]: Omit<evtchn_bind_interdomain, 'local_port'>;
  [EvtchnOp.EVTCHNOP_bind_virq]: Omit<evtchn_bind_virq, 'port'>;
  [EvtchnOp.EVTCHNOP_bind_pirq]: Omit<evtchn_bind_pirq, 'port'>;
  [EvtchnOp.EVTCHNOP_close]: evtchn_close;
  [EvtchnOp.EVTCHNOP_send]: evtchn_send;
  [EvtchnOp.EVTCHNOP_status]: Pick<evtchn_status, 'dom' | 'port'>;
  [EvtchnOp.EVTCHNOP_alloc_unbound]: Omit<evtchn_alloc_unbound, 'port'>;
  [EvtchnOp.EVTCHNOP_bind_ipi]: Omit<evtchn_bind_ipi, 'port'>;
  [EvtchnOp.EVTCHNOP_bind_vcpu]: evtchn_bind_vcpu;
  [EvtchnOp.EVTCHNOP_unmask]: evtchn_unmask;
  [EvtchnOp.EVTCHNOP_reset]: evtchn_reset;
  [EvtchnOp.EVTCHNOP_init_control]: Omit<evtchn_init_control, 'link_bits'>;
  [EvtchnOp.EVTCHNOP_expand_array]: evtchn_expand_array;
  [EvtchnOp.EVTCHNOP_set_priority]: evtchn_set_priority;
}

/** What each command hands back on success: the whole struct with its OUT fields, or 0. */
export interface EvtchnOpResults {
  [EvtchnOp.EVTCHNOP_bind_interdomain]: evtchn_bind_interdomain;
  [EvtchnOp.EVTCHNOP_bind_virq]: evtchn_bind_virq;
  [EvtchnOp.EVTCHNOP_bind_pirq]: evtchn_bind_pirq;
  [EvtchnOp.EVTCHNOP_close]: 0;
  [EvtchnOp.EVTCHNOP_send]: 0;
  [EvtchnOp.EVTCHNOP_status]: evtchn_status;
  [EvtchnOp.EVTCHNOP_alloc_unbound]: evtchn_alloc_unbound;
  [EvtchnOp.EVTCHNOP_bind_ipi]: evtchn_bind_ipi;
  [EvtchnOp.EVTCHNOP_bind_vcpu]: 0;
  [EvtchnOp.EVTCHNOP_unmask]: 0;
  [EvtchnOp.EVTCHNOP_reset]: 0;
  [EvtchnOp.EVTCHNOP_init_control]: evtchn_init_control;
  [EvtchnOp.EVTCHNOP_expand_array]: 0;
  [EvtchnOp.EVTCHNOP_set_priority]: 0;
}

/** The commands the model implements. */
export type EvtchnOpModelled = keyof EvtchnOpArgs & EvtchnOp;
