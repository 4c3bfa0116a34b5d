// Every trace event in one sentence, in Xen's names, ending with the Xen or Linux function it
// models: "dom1 blkfront writes state=3 XenbusStateInitialised (xenbus_switch_state)". For
// teaching (`xensim ui`): a reader who steps through a run reads what each step means.
//
// Table-driven: a table per kind (xenstore by message type, evtchn and gnttab by op, hypercalls
// by number), each entry a function from the event to its sentence. `explain` answers undefined
// for an event no table knows, so a test can require that every event of a real run is explained.

import { HvmOp } from '../../hypervisor/public/hvm/hvm_op.ts';
import { VMEXIT_IO_INSTRUCTION } from '../../hypervisor/public/hvm/ioreq.ts';
import { Domctl } from '../../hypervisor/public/domctl.ts';
import { EvtchnOp } from '../../hypervisor/public/event_channel.ts';
import { GnttabOp } from '../../hypervisor/public/grant_table.ts';
import { SchedOp, ShutdownReason } from '../../hypervisor/public/sched.ts';
import { Virq } from '../../hypervisor/public/xen.ts';
import {
  type TraceRecord, type XsRecord, absolutePath, domainName, driverName, isNum, isStr, isXenstore, oneLine,
  parseDevicePath, payloadFields, xenbusOf, xenbusStateName, xsType,
} from './events.ts';

/** What a reader of one event may know from the rest of the run. */
export interface ExplainContext {
  /** Who a xenstore connection belongs to ("xl", "dom1 xenbus"), if known. */
  readonly connName?: (domid: number, conn: number) => string | undefined;
  /** Domain names (xl's), by domid. */
  readonly names?: Readonly<Record<number, string>>;
}

type Explainer<E extends TraceRecord = TraceRecord> = (e: E, ctx: ExplainContext) => string;

const dom = (d: unknown, ctx: ExplainContext): string => (isNum(d) ? (d < 0 ? 'an unknown domain' : domainName(d, ctx.names)) : 'Xen');
const q = (s: string, max = 60): string => {
  const t = oneLine(s);
  return `"${t.length > max ? `${t.slice(0, max)}...` : t}"`;
};
const virqName = (v: unknown): string => (isNum(v) && Virq[v] ? Virq[v] : `VIRQ ${String(v)}`);
const rc = (e: TraceRecord, field = 'result'): string => (isNum(e[field]) && e[field] !== 0 ? ` - fails with ${String(e[field])}` : '');

/** Who sent a request or gets a reply: the connection's owner if known, else the domain. */
function who(e: XsRecord, ctx: ExplainContext): string {
  return ctx.connName?.(e.domid, e.conn) ?? `${dom(e.domid, ctx)} (conn ${e.conn})`;
}

/** A path with what it means when it is a split device's node: "dom1's blkfront ring-ref". */
function pathText(path: string, domid: number): string {
  const abs = absolutePath(path, domid);
  const dev = parseDevicePath(abs);
  if (!dev || dev.rest === '') return oneLine(path);
  return `${dev.side === 'frontend' ? `dom${dev.frontendDomid}` : `dom${dev.backendDomid}`}'s ${driverName(dev.type, dev.side)} ${oneLine(dev.rest)} (${oneLine(abs)})`;
}

/** xenstore requests (IN): what the client asks, and the client library call that sends it. */
const XS_REQUESTS: Readonly<Record<string, Explainer<XsRecord>>> = {
  READ: (e, c) => `${who(e, c)} reads ${pathText(xsArg(e, 0), e.domid)}${txText(e)} (xs_read / xenbus_read)`,
  WRITE: (e, c) => {
    const [path, value = ''] = payloadFields(e.payload);
    const dev = parseDevicePath(absolutePath(path, e.domid));
    if (dev?.rest === 'state' && /^\d+$/.test(value)) {
      return `${who(e, c)} writes state=${value} ${xenbusStateName(Number(value))} for ${pathText(path, e.domid)}${txText(e)} (xenbus_switch_state)`;
    }
    return `${who(e, c)} writes ${pathText(path, e.domid)} = ${q(value)}${txText(e)} (xs_write / xenbus_write)`;
  },
  MKDIR: (e, c) => `${who(e, c)} creates the directory ${pathText(xsArg(e, 0), e.domid)}${txText(e)} (xs_mkdir)`,
  RM: (e, c) => `${who(e, c)} removes ${pathText(xsArg(e, 0), e.domid)} and everything under it${txText(e)} (xs_rm)`,
  DIRECTORY: (e, c) => `${who(e, c)} lists the children of ${pathText(xsArg(e, 0), e.domid)}${txText(e)} (xs_directory / xenbus_directory)`,
  DIRECTORY_PART: (e, c) => `${who(e, c)} lists part of the children of ${pathText(xsArg(e, 0), e.domid)} (xs_directory_part)`,
  GET_PERMS: (e, c) => `${who(e, c)} asks who may access ${pathText(xsArg(e, 0), e.domid)} (xs_get_permissions)`,
  SET_PERMS: (e, c) => {
    const [path, ...perms] = payloadFields(e.payload);
    return `${who(e, c)} sets the permissions of ${pathText(path ?? '', e.domid)} to ${perms.map(permText).join(', ')}${txText(e)} (xs_set_permissions)`;
  },
  WATCH: (e, c) => `${who(e, c)} watches ${pathText(xsArg(e, 0), e.domid)} with token ${q(xsArg(e, 1))} (xs_watch / register_xenbus_watch)`,
  UNWATCH: (e, c) => `${who(e, c)} removes its watch on ${pathText(xsArg(e, 0), e.domid)} (token ${q(xsArg(e, 1))}) (xs_unwatch / unregister_xenbus_watch)`,
  TRANSACTION_START: (e, c) => `${who(e, c)} starts a transaction (xs_transaction_start / xenbus_transaction_start)`,
  TRANSACTION_END: (e, c) => `${who(e, c)} ${xsArg(e, 0) === 'T' ? 'commits' : 'aborts'} transaction ${e.tx_id} (xs_transaction_end / xenbus_transaction_end)`,
  INTRODUCE: (e, c) => {
    const [domid, mfn, port] = payloadFields(e.payload);
    return `${who(e, c)} introduces dom${domid} to xenstored: its ring is at mfn ${mfn}, event channel port ${port} (xs_introduce_domain)`;
  },
  RELEASE: (e, c) => `${who(e, c)} tells xenstored dom${xsArg(e, 0)} is gone, so its connection and watches go (xs_release_domain)`,
  GET_DOMAIN_PATH: (e, c) => `${who(e, c)} asks for dom${xsArg(e, 0)}'s home path (xs_get_domain_path)`,
  IS_DOMAIN_INTRODUCED: (e, c) => `${who(e, c)} asks whether dom${xsArg(e, 0)} is introduced (xs_is_domain_introduced)`,
  RESUME: (e, c) => `${who(e, c)} tells xenstored dom${xsArg(e, 0)} resumed after suspend (xs_resume_domain)`,
  SET_TARGET: (e, c) => `${who(e, c)} lets dom${xsArg(e, 0)} act for dom${xsArg(e, 1)} (xs_set_target)`,
  RESET_WATCHES: (e, c) => `${who(e, c)} drops all its watches and transactions (xs_reset_watches)`,
  CONTROL: (e, c) => `${who(e, c)} sends xenstored the control command ${q(xsArg(e, 0))} (xs_control_command)`,
  DEBUG: (e, c) => `${who(e, c)} sends xenstored the debug command ${q(xsArg(e, 0))} (xs_debug_command)`,
};

/** xenstored's messages out: replies (send_reply), errors (send_error), watch events (fire_watches). */
const XS_REPLIES: Readonly<Record<string, Explainer<XsRecord>>> = {
  ERROR: (e, c) => `xenstored answers ${who(e, c)}'s request ${e.req_id} with ${xsArg(e, 0)} (send_error)`,
  WATCH_EVENT: (e, c) => `xenstored fires ${who(e, c)}'s watch ${q(xsArg(e, 1))}: ${pathText(xsArg(e, 0), e.domid)} changed (fire_watches)`,
  READ: (e, c) => `xenstored returns ${q(e.payload)} to ${who(e, c)} (send_reply)`,
  DIRECTORY: (e, c) => `xenstored returns the children [${payloadFields(e.payload).join(', ')}] to ${who(e, c)} (send_reply)`,
  GET_PERMS: (e, c) => `xenstored returns the permissions ${payloadFields(e.payload).map(permText).join(', ')} to ${who(e, c)} (send_reply)`,
  TRANSACTION_START: (e, c) => `xenstored opens transaction ${xsArg(e, 0)} for ${who(e, c)} (do_transaction_start)`,
  TRANSACTION_END: (e, c) => `xenstored ends ${who(e, c)}'s transaction ${e.tx_id}: if it was a commit, its writes are now visible to all at once (do_transaction_end)`,
  GET_DOMAIN_PATH: (e, c) => `xenstored tells ${who(e, c)} the home path is ${q(xsArg(e, 0))} (send_reply)`,
  IS_DOMAIN_INTRODUCED: (e, c) => `xenstored tells ${who(e, c)} ${xsArg(e, 0) === 'T' ? 'yes' : 'no'} (send_reply)`,
};

/** Any other reply is an acknowledgement. */
const ack: Explainer<XsRecord> = (e, c) => `xenstored acknowledges ${who(e, c)}'s XS_${xsType(e)} with ${q(e.payload)} (send_ack)`;
const KNOWN_TYPES = new Set([...Object.keys(XS_REQUESTS), 'WATCH_EVENT', 'ERROR']);

function xsArg(e: XsRecord, i: number): string {
  return payloadFields(e.payload)[i] ?? '';
}

const txText = (e: XsRecord): string => (e.tx_id !== 0 ? ` in transaction ${e.tx_id}` : '');

/** A xenstore permission as docs/misc/xenstore.txt spells it: n0 = owner dom0, no one else. */
function permText(p: string, i: number): string {
  const m = /^([nrwb])(\d+)$/.exec(p);
  if (!m) return q(p);
  const what = { n: 'none', r: 'read', w: 'write', b: 'read+write' }[m[1]]!;
  // The first entry names the owner (who may do anything) and what every other domain may do.
  return i === 0 ? `${p} (owner dom${m[2]}, others ${what})` : `${p} (dom${m[2]} ${what})`;
}

function explainXenstore(e: XsRecord, ctx: ExplainContext): string | undefined {
  const t = xsType(e);
  if (e.dir === 'IN') return XS_REQUESTS[t]?.(e, ctx);
  const f = XS_REPLIES[t] ?? (KNOWN_TYPES.has(t) ? ack : undefined);
  return f?.(e, ctx);
}

const portText = (e: TraceRecord): string => (isNum(e.port) ? `port ${e.port}` : 'a port');
const remoteText = (e: TraceRecord, ctx: ExplainContext): string => {
  const r = e.remote as { domid?: unknown; port?: unknown } | undefined;
  return r && isNum(r.domid) ? ` (peer ${dom(r.domid, ctx)} port ${String(r.port)})` : '';
};
const args = (e: TraceRecord): Record<string, unknown> => (e.args && typeof e.args === 'object' ? e.args as Record<string, unknown> : {});

/** Event-channel operations: the hypercalls (evtchn_* in xen/common/event_channel.c) and what Xen does on its own. */
const EVTCHN: Readonly<Record<string, Explainer>> = {
  EVTCHNOP_alloc_unbound: (e, c) => `${dom(e.domid, c)} allocates unbound ${portText(e)} in ${args(e).dom === e.domid ? 'its own table' : `${dom(args(e).dom, c)}'s table`} for ${dom(args(e).remote_dom, c)} to bind${rc(e)} (evtchn_alloc_unbound)`,
  EVTCHNOP_bind_interdomain: (e, c) => `${dom(e.domid, c)} binds ${portText(e)} to ${dom(args(e).remote_dom, c)}'s port ${String(args(e).remote_port)}${rc(e)} (evtchn_bind_interdomain)`,
  EVTCHNOP_bind_virq: (e, c) => `${dom(e.domid, c)} binds ${virqName(args(e).virq)} to ${portText(e)} on vCPU ${String(args(e).vcpu ?? 0)}${rc(e)} (evtchn_bind_virq)`,
  EVTCHNOP_bind_ipi: (e, c) => `${dom(e.domid, c)} binds an IPI to ${portText(e)}${rc(e)} (evtchn_bind_ipi)`,
  EVTCHNOP_bind_pirq: (e, c) => `${dom(e.domid, c)} binds a physical IRQ to ${portText(e)}${rc(e)} (evtchn_bind_pirq)`,
  EVTCHNOP_close: (e, c) => `${dom(e.domid, c)} closes ${portText(e)}${remoteText(e, c)}${rc(e)} (evtchn_close)`,
  EVTCHNOP_send: (e, c) => `${dom(e.domid, c)} notifies through ${portText(e)}${remoteText(e, c)}${rc(e)} (evtchn_send)`,
  EVTCHNOP_status: (e, c) => `${dom(e.domid, c)} asks the status of ${portText(e)}${rc(e)} (evtchn_status)`,
  EVTCHNOP_bind_vcpu: (e, c) => `${dom(e.domid, c)} moves ${portText(e)} to vCPU ${String(args(e).vcpu)}${rc(e)} (evtchn_bind_vcpu)`,
  EVTCHNOP_unmask: (e, c) => `${dom(e.domid, c)} unmasks ${portText(e)}${e.delivery ? ` (${String(e.delivery)})` : ''}${rc(e)} (evtchn_unmask)`,
  EVTCHNOP_reset: (e, c) => `${dom(e.domid, c)} closes all event channels of ${dom(args(e).dom, c)}${rc(e)} (evtchn_reset)`,
  EVTCHNOP_init_control: (e, c) => `${dom(e.domid, c)} asks for the FIFO ABI${rc(e)} (evtchn_fifo_init_control)`,
  EVTCHNOP_expand_array: (e, c) => `${dom(e.domid, c)} expands its FIFO event array${rc(e)} (evtchn_fifo_expand_array)`,
  EVTCHNOP_set_priority: (e, c) => `${dom(e.domid, c)} sets the priority of ${portText(e)}${rc(e)} (evtchn_fifo_set_priority)`,
  evtchn_close: (e, c) => `Xen closes ${dom(e.domid, c)}'s ${portText(e)}${remoteText(e, c)} as the domain is torn down (evtchn_close)`,
  evtchn_destroy: (e, c) => `Xen closes every event channel of ${dom(e.domid, c)}, which is dying (evtchn_destroy)`,
  evtchn_set_pending: (e, c) => `Xen marks ${dom(e.domid, c)}'s ${portText(e)} pending for vCPU ${String(e.vcpu ?? 0)}: ${deliveryText(e.delivery)} (evtchn_set_pending)`,
  send_global_virq: (e, c) => `Xen raises ${virqName(e.virq)} for its handler ${dom(e.domid, c)} (send_global_virq)`,
  send_guest_pirq: (e, c) => `Xen delivers a physical IRQ to ${dom(e.domid, c)} on ${portText(e)} (send_guest_pirq)`,
  set_global_virq_handler: (e, c) => `${dom(e.domid, c)} becomes the handler of ${virqName(e.virq)}${rc(e)} (set_global_virq_handler)`,
  fault_notify_held: (e, c) => `injected fault: Xen holds the notification to ${dom(e.domid, c)}'s ${portText(e)} for ${Math.round(Number(args(e).delayNs) / 1000)} µs (xensim fault notifyHold; evtchn_send's delivery delayed)`,
  fault_notify_released: (e, c) => `injected fault: the held notification reaches ${dom(e.domid, c)}'s ${portText(e)} (xensim fault notifyHold; evtchn_set_pending)`,
  fault_notify_dropped: (e, c) => `injected fault: the notification to ${dom(e.domid, c)}'s ${portText(e)} is dropped (xensim fault notifyDrop)`,
};

function deliveryText(d: unknown): string {
  switch (d) {
    case 'upcall': return 'the vCPU gets an upcall';
    case 'already-pending': return 'it was pending already, nothing more';
    case 'masked': return 'masked, so no upcall until unmasked';
    case 'selector-already-set': return 'its selector bit was set already, no new upcall';
    case 'upcall-already-pending': return 'an upcall is pending already';
    case 'unusable': return 'the port is not usable';
    default: return `delivery ${String(d)}`;
  }
}

const gntStatus = (e: TraceRecord): string => (isNum(e.status) && e.status !== 0 ? ` - fails with GNTST ${e.status}` : '');

/** Grant-table operations (gnttab_* in xen/common/grant_table.c). */
const GNTTAB: Readonly<Record<string, Explainer>> = {
  map_grant_ref: (e, c) => `${dom(e.domid, c)} maps grant ${String(e.ref)} of ${dom(e.dom, c)}${isNum(e.handle) ? ` as handle ${e.handle}` : ''}${gntStatus(e)} (gnttab_map_grant_ref)`,
  unmap_grant_ref: (e, c) => `${dom(e.domid, c)} unmaps grant ${String(e.ref)} of ${dom(e.dom, c)} (handle ${String(e.handle)})${gntStatus(e)} (gnttab_unmap_grant_ref)`,
  release_mappings: (e, c) => `Xen drops ${dom(e.domid, c)}'s mapping of grant ${String(e.ref)} of ${dom(e.dom, c)} as the mapper dies (gnttab_release_mappings)`,
  setup_table: (e, c) => `${dom(e.domid, c)} sets up the grant table of ${dom(e.dom, c)}${gntStatus(e)} (gnttab_setup_table)`,
  query_size: (e, c) => `${dom(e.domid, c)} asks the grant table size of ${dom(e.dom, c)}${gntStatus(e)} (gnttab_query_size)`,
  copy: (e, c) => `${dom(e.domid, c)} copies through grant ${String(e.ref)} of ${dom(e.dom, c)}${gntStatus(e)} (gnttab_copy)`,
};

/** Hypercalls by number, with the sub-command's name where Xen's headers give one. */
const HYPERCALLS: Readonly<Record<string, Explainer>> = {
  __HYPERVISOR_event_channel_op: (e, c) => `${dom(e.domid, c)} traps into Xen: HYPERVISOR_event_channel_op(${EvtchnOp[e.cmd as number] ?? String(e.cmd)}) (do_event_channel_op)`,
  __HYPERVISOR_grant_table_op: (e, c) => `${dom(e.domid, c)} traps into Xen: HYPERVISOR_grant_table_op(GNTTABOP_${GnttabOp[e.cmd as number]?.replace(/^GNTTABOP_/, '') ?? String(e.cmd)}) (do_grant_table_op)`,
  __HYPERVISOR_domctl: (e, c) => `${dom(e.domid, c)} (the toolstack) calls HYPERVISOR_domctl(${Domctl[e.cmd as number] ?? String(e.cmd)})${domctlTarget(e)} (do_domctl)`,
  __HYPERVISOR_sched_op: (e, c) => {
    const op = SchedOp[e.cmd as number] ?? String(e.cmd);
    return `${dom(e.domid, c)} calls HYPERVISOR_sched_op(${op})${e.cmd === SchedOp.SCHEDOP_shutdown ? ' - the guest shuts itself down' : ''} (do_sched_op)`;
  },
  __HYPERVISOR_memory_op: (e, c) => `${dom(e.domid, c)} calls HYPERVISOR_memory_op${isNum(e.cmd) ? `(${e.cmd})` : ''} (do_memory_op)`,
  __HYPERVISOR_xen_version: (e, c) => `${dom(e.domid, c)} asks Xen its version (do_xen_version)`,
  __HYPERVISOR_console_io: (e, c) => `${dom(e.domid, c)} writes to Xen's console (do_console_io)`,
  __HYPERVISOR_vcpu_op: (e, c) => `${dom(e.domid, c)} calls HYPERVISOR_vcpu_op${isNum(e.cmd) ? `(${e.cmd})` : ''} (do_vcpu_op)`,
  __HYPERVISOR_hvm_op: (e, c) => `${dom(e.domid, c)} calls HYPERVISOR_hvm_op${isNum(e.cmd) ? `(${HvmOp[e.cmd] ?? e.cmd})` : ''} (do_hvm_op)`,
  // Not a hypercall: a guest's IN/OUT to an emulated port traps (VMX exit reason 30), here the ACPI PM1 registers.
  [String(VMEXIT_IO_INSTRUCTION)]: (e, c) => `${dom(e.domid, c)} executes an IN/OUT on an emulated I/O port and traps to Xen: VM exit EXIT_REASON_IO_INSTRUCTION (handle_pio / hvmemul_do_io)`,
  __HYPERVISOR_sysctl: (e, c) => `${dom(e.domid, c)} calls HYPERVISOR_sysctl${isNum(e.cmd) ? `(${e.cmd})` : ''} (do_sysctl)`,
};

function domctlTarget(e: TraceRecord): string {
  const r = e.ret as { domain?: unknown; state?: unknown; shutdown_reason?: unknown } | undefined;
  if (!r || typeof r !== 'object' || !isNum(r.domain)) return '';
  const reason = isNum(r.shutdown_reason) ? `, ${ShutdownReason[r.shutdown_reason] ?? r.shutdown_reason}` : '';
  return ` on dom${r.domain}${isStr(r.state) ? ` (now ${r.state}${reason})` : ''}`;
}

/** The other kinds: the simulator's own events and those of drivers and daemons. */
const OTHER: Readonly<Record<string, Explainer>> = {
  xenbus: (e, c) => {
    const xb = xenbusOf(e)!;
    const dev = xb.path ? parseDevicePath(absolutePath(xb.path, isNum(e.domid) ? e.domid : undefined)) : undefined;
    const drv = dev ? driverName(dev.type, dev.side) : `${xb.role}`;
    return `${dom(e.domid, c)} ${drv} has switched ${oneLine(xb.device)} to ${xb.stateName} (${xb.state}): committed in xenstore, the other end's watch will fire (xenbus_switch_state)`;
  },
  ring: (e, c) => {
    const peer = dom(e.peer, c);
    return e.half === 'req'
      ? `xenstored consumes ${String(e.bytes)} bytes of requests from ${peer}'s ring page (req_cons=${String(e.cons)}, req_prod=${String(e.prod)}) (domain_read / xb_read)`
      : `xenstored puts ${String(e.bytes)} bytes of replies on ${peer}'s ring page (rsp_prod=${String(e.prod)}, rsp_cons=${String(e.cons)}) (domain_write / xb_write)`;
  },
  step: (e) => `the scenario starts its step ${q(String(e.name), 120)} (xensim scenario step)`,
  run: (e) => `xensim runs scenario ${String(e.scenario)} with seed ${String(e.seed)}, variant ${String(e.variant)} (xensim run)`,
  end: (e) => `the run ends: ${String(e.result)} after ${String(e.events)} events (xensim run)`,
  fault: (e) => `injected fault: ${String(e.fault)}${e.fault === 'xenstored-crash' ? ' - xenstored dies: nothing reads the rings or answers any more' : ''} (xensim fault)`,
  xenbus_comms: (e, c) => `${dom(e.domid, c)}'s xenbus: ${String(e.op)} with ${String(e.inFlight ?? e.resent)} request(s) unanswered (the ring reconnection of docs/misc/xenstore-ring.txt)`,
  oops: (e, c) => `${dom(e.domid, c)}'s kernel reports an error in ${String(e.where)}: ${q(String(e.error), 100)} (${String(e.where).startsWith('evtchn upcall') ? 'a fault in the event upcall, in interrupt context' : 'the xenwatch thread\'s WARN'})`,
  net: (e, c) => (e.role === 'frontend'
    ? `${dom(e.domid, c)} netfront ${e.dir === 'tx' ? 'sends' : 'receives'} ${String(e.bytes)} bytes on ${String(e.device)} (xennet_start_xmit / xennet_poll)`
    : `${dom(e.domid, c)} netback ${String(e.event)} on ${String(e.vif)}${e.reason ? `: ${String(e.reason)}` : ''} (xenvif)`),
  task: (e, c) => `${dom(e.domid, c)}'s task ${q(String(e.task), 40)} first waits at a preemption point: from now on the scheduler decides when it goes on (schedule)`,
  preempt: (e, c) => {
    const over = e.over as { domid?: unknown; task?: unknown } | undefined;
    return e.preempts
      ? `the scheduler preempts ${dom(over?.domid, c)}'s ${String(over?.task)}, which could go on, to run ${dom(e.domid, c)}'s ${String(e.task)} (step ${String(e.step)}) (schedule / context_switch)`
      : `the scheduler runs ${dom(e.domid, c)}'s ${String(e.task)} before ${dom(over?.domid, c)}'s ${String(over?.task)}, the first ready (step ${String(e.step)}) (schedule)`;
  },
  xenstored: (e) => e.op === 'restarted'
    ? `a new xenstored starts from the dead one's last state (${String(e.nodes)} nodes, ${String(e.connections)} connections) and maps the guests' rings again (oxenstored --restart)`
    : `xenstored removes the nodes dom${String(e.owner)} owned as it is released: ${(e.paths as unknown[] ?? []).length} paths (domain_cleanup)`,
};

/** The sentence for one event, or undefined if no table knows it. */
export function explain(e: TraceRecord, ctx: ExplainContext = {}): string | undefined {
  if (isXenstore(e)) return explainXenstore(e, ctx);
  switch (e.kind) {
    case 'evtchn': return isStr(e.op) ? EVTCHN[e.op]?.(e, ctx) : undefined;
    case 'gnttab': return isStr(e.op) ? GNTTAB[e.op]?.(e, ctx) : undefined;
    case 'hypercall': return isStr(e.op) ? HYPERCALLS[e.op]?.(e, ctx) : undefined;
    case 'xenbus': return xenbusOf(e) ? OTHER.xenbus(e, ctx) : undefined;
    default: return Object.hasOwn(OTHER, e.kind) ? OTHER[e.kind](e, ctx) : undefined;
  }
}

/**
 * The run told in sentences, one line per event: `[time] sentence` (the sentence names who
 * acts). Events no table knows keep their JSON, marked with `?` so none passes unnoticed.
 */
export function toExplainedLog(events: readonly TraceRecord[], ctx: ExplainContext, stamp: (t: unknown) => string): string {
  let out = '';
  for (const e of events) out += `${stamp(e.t)} ${explain(e, ctx) ?? `? ${oneLine(JSON.stringify(e))}`}\n`;
  return out;
}
