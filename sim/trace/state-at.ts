// The host as a trace shows it after N events: domains, split devices with the XenbusState of
// both ends, the xenstore tree with owners and permissions, watches and who holds them, event
// channels, grant mappings, the xenstore rings, and the timeline lanes. For teaching (`xensim ui`):
// step through a run, or jump back to any N - the reducer is pure, so state at N is the replay of
// events 0..N-1.
//
// Only what the trace says is shown. The trace sees xenstore through xenstored's messages, so
// the tree holds the nodes the run created (not xenstored's initial /tool); a write in a
// transaction enters the tree when XS_TRANSACTION_END commits it. Guests clear pending bits in
// their own shared_info, untraced: a port shows when Xen last set it pending, not a live bit.

import {
  type TraceRecord, type XsRecord, absolutePath, domainName, driverName, isNum, isStr, isXenstore,
  parseDevicePath, payloadFields, xenbusStateName, xsType,
} from './events.ts';
import { type ExplainContext } from './explain.ts';
import { type RingPageView, XenstoreRingPages } from './xenstore-ring-page.ts';

export type DomainRunState = 'running' | 'paused' | 'shutdown' | 'dying' | 'dead';

export interface DomainView {
  readonly domid: number;
  readonly name: string;
  readonly state: DomainRunState;
  readonly paused: boolean;
  readonly shutdownReason?: number;
  /** d->max_vcpus, once Xen has said it (getdomaininfo's max_vcpu_id + 1). */
  readonly vcpus?: number;
}

export interface DeviceEnd {
  readonly domid: number;
  readonly driver: string;
  readonly state: number | undefined;
  readonly stateName: string | undefined;
  readonly path: string;
}

export interface DeviceView {
  /** `vbd/1/51712`: type, frontend domain, devid. */
  readonly id: string;
  readonly type: string;
  readonly devid: string;
  readonly frontend: DeviceEnd | undefined;
  readonly backend: DeviceEnd | undefined;
}

export interface NodeView {
  readonly path: string;
  readonly value: string;
  /** As xenstore.txt spells them: the first entry is the owner and everyone else's access. */
  readonly perms: readonly string[];
  readonly owner: number;
}

export interface WatchView {
  readonly domid: number;
  readonly conn: number;
  readonly holder: string;
  readonly path: string;
  readonly token: string;
}

export interface PortView {
  readonly domid: number;
  readonly port: number;
  readonly state: 'unbound' | 'interdomain' | 'virq' | 'ipi' | 'pirq';
  readonly remoteDomid?: number;
  readonly remotePort?: number;
  readonly virq?: number;
  readonly vcpu?: number;
  /** The event Xen last set it pending at, and what delivery did then. */
  readonly pendingAt?: number;
  readonly delivery?: string;
  readonly masked?: boolean;
}

export interface GrantView {
  /** The granting domain and its grant reference. */
  readonly domid: number;
  readonly ref: number;
  /** Where the granter advertised it in xenstore (ring-ref...), if it did. */
  readonly advertised?: string;
  /** Who has it mapped, with the handle Xen gave. */
  readonly mappedBy: readonly { readonly domid: number; readonly handle: number }[];
}

export interface RingView {
  /** The guest whose xenstore ring page this is. */
  readonly domid: number;
  readonly req: { readonly cons: number; readonly prod: number };
  readonly rsp: { readonly cons: number; readonly prod: number };
  readonly lastBytes: number;
  readonly lastHalf: 'req' | 'rsp';
}

export interface TransactionView {
  readonly domid: number;
  readonly conn: number;
  readonly holder: string;
  readonly tx: number;
  readonly writes: readonly string[];
}

export interface HostState {
  /** How many events are applied: the state after events 0..n-1. */
  readonly n: number;
  readonly t: number | undefined;
  readonly domains: readonly DomainView[];
  readonly devices: readonly DeviceView[];
  readonly nodes: readonly NodeView[];
  /** Paths the last applied event changed (written, created, removed, perms set). */
  readonly changed: readonly string[];
  readonly removed: readonly string[];
  readonly watches: readonly WatchView[];
  readonly transactions: readonly TransactionView[];
  readonly ports: readonly PortView[];
  readonly grants: readonly GrantView[];
  readonly rings: readonly RingView[];
  /** Connection owners by `domid/conn`. */
  readonly connections: Readonly<Record<string, string>>;
}

/** A request waiting for xenstored's reply, and a transaction's not yet committed changes. */
type StoreOp =
  | { readonly op: 'write'; readonly path: string; readonly value: string }
  | { readonly op: 'mkdir'; readonly path: string }
  | { readonly op: 'rm'; readonly path: string }
  | { readonly op: 'perms'; readonly path: string; readonly perms: readonly string[] }
  | { readonly op: 'watch' | 'unwatch'; readonly path: string; readonly token: string }
  | { readonly op: 'get_perms'; readonly path: string }
  | { readonly op: 'tx_end'; readonly commit: boolean }
  | { readonly op: 'release'; readonly domid: number };

interface MutableNode { value: string; perms: string[] }
interface MutablePort { state: PortView['state']; remoteDomid?: number; remotePort?: number; virq?: number; vcpu?: number; pendingAt?: number; delivery?: string; masked?: boolean }
interface MutableDomain { state: DomainRunState; shutdownReason?: number; name?: string; vcpus?: number }

/** DOMID_SELF in event-channel arguments. */
const DOMID_SELF = 0x7ff0;
/** Bound on pending requests remembered (a request xenstored never answers must not grow memory). */
const MAX_PENDING = 65536;

export class TraceReducer {
  private n = 0;
  private t: number | undefined;
  private readonly domains = new Map<number, MutableDomain>();
  private readonly nodes = new Map<string, MutableNode>();
  private readonly requests = new Map<string, { tx: number; op: StoreOp }>();
  private readonly txOps = new Map<string, StoreOp[]>();
  private readonly watches = new Map<string, WatchView>();
  private readonly ports = new Map<string, MutablePort & { domid: number; port: number }>();
  private readonly mappings = new Map<string, { granter: number; ref: number; domid: number; handle: number }>();
  private readonly advertised = new Map<string, string>();
  private readonly rings = new Map<number, RingView>();
  private readonly ringPages = new XenstoreRingPages();
  private readonly conns = new Map<string, string>();
  private changed: string[] = [];
  private removed: string[] = [];

  constructor() {
    this.nodes.set('/', { value: '', perms: ['n0'] });
    this.domains.set(0, { state: 'running' });
  }

  /** Names for the explainer: connections by owner, domains by xl name. */
  context(): ExplainContext {
    const names: Record<number, string> = {};
    for (const [d, v] of this.domains) if (v.name) names[d] = d === 0 ? v.name : `${v.name} (dom${d})`;
    return { connName: (d, c) => this.conns.get(`${d}/${c}`), names };
  }

  apply(e: TraceRecord): void {
    this.n++;
    if (isNum(e.t)) this.t = e.t;
    this.changed = [];
    this.removed = [];
    const d = e.domid;
    if (isNum(d) && d >= 0 && d < DOMID_SELF && e.kind !== 'xenbus' && e.kind !== 'evtchn' && !(e.kind === 'xenstore' && e.dir === 'OUT')) {
      // A domain acting (a hypercall, a request) is running, unless the trace says it stopped.
      const dom = this.domain(d);
      if (dom.state === 'paused') dom.state = 'running';
    }
    if (isXenstore(e)) this.xenstore(e);
    else if (e.kind === 'hypercall') this.hypercall(e);
    else if (e.kind === 'evtchn') this.evtchn(e);
    else if (e.kind === 'gnttab') this.gnttab(e);
    else if (e.kind === 'ring' && isNum(e.peer)) {
      const prev = this.rings.get(e.peer) ?? { domid: e.peer, req: { cons: 0, prod: 0 }, rsp: { cons: 0, prod: 0 }, lastBytes: 0, lastHalf: 'req' as const };
      const half = e.half === 'rsp' ? 'rsp' : 'req';
      this.rings.set(e.peer, { ...prev, [half]: { cons: Number(e.cons), prod: Number(e.prod) }, lastBytes: Number(e.bytes), lastHalf: half });
      this.ringPages.ring(e.peer, half, Number(e.cons), Number(e.prod), Number(e.bytes));
    }
  }

  /**
   * A dying domain: xenstored drops its connection (watches, transactions) when VIRQ_DOM_EXC
   * tells it (domain_cleanup), untraced as a message, and its ring page is no more.
   */
  private gone(domid: number): void {
    for (const [k, w] of this.watches) if (w.domid === domid) this.watches.delete(k);
    for (const k of this.txOps.keys()) if (k.startsWith(`${domid}/`)) this.txOps.delete(k);
    this.rings.delete(domid);
    this.ringPages.drop(domid);
  }

  private domain(domid: number): MutableDomain {
    let d = this.domains.get(domid);
    if (!d) this.domains.set(domid, (d = { state: 'paused' }));
    return d;
  }

  // ------------------------------------------------------------------ xenstore

  private xenstore(e: XsRecord): void {
    const key = `${e.domid}/${e.conn}`;
    const req = `${key}/${e.req_id}`;
    const t = xsType(e);
    const f = payloadFields(e.payload);
    const abs = (p: string | undefined): string => absolutePath(p ?? '', e.domid);
    this.ringPages.message(e);
    if (e.dir === 'IN') {
      this.nameConnection(e, t, f);
      let op: StoreOp | undefined;
      switch (t) {
        case 'WRITE': op = { op: 'write', path: abs(f[0]), value: f.slice(1).join('\0') }; break;
        case 'MKDIR': op = { op: 'mkdir', path: abs(f[0]) }; break;
        case 'RM': op = { op: 'rm', path: abs(f[0]) }; break;
        case 'SET_PERMS': op = { op: 'perms', path: abs(f[0]), perms: f.slice(1) }; break;
        case 'GET_PERMS': op = { op: 'get_perms', path: abs(f[0]) }; break;
        case 'WATCH': op = { op: 'watch', path: abs(f[0]), token: f[1] ?? '' }; break;
        case 'UNWATCH': op = { op: 'unwatch', path: abs(f[0]), token: f[1] ?? '' }; break;
        case 'TRANSACTION_END': op = { op: 'tx_end', commit: f[0] === 'T' }; break;
        case 'RELEASE': op = { op: 'release', domid: Number(f[0]) }; break;
        default: break;
      }
      if (op) {
        this.requests.set(req, { tx: e.tx_id, op });
        if (this.requests.size > MAX_PENDING) this.requests.delete(this.requests.keys().next().value!);
      }
      return;
    }
    if (t === 'TRANSACTION_START') {
      this.txOps.set(`${key}/${f[0]}`, []);
      return;
    }
    const r = this.requests.get(req);
    if (!r) return;
    this.requests.delete(req);
    const ok = t !== 'ERROR';
    const { op, tx } = r;
    if (op.op === 'tx_end') {
      const ops = this.txOps.get(`${key}/${tx}`) ?? [];
      this.txOps.delete(`${key}/${tx}`);
      if (ok && op.commit) for (const o of ops) this.store(o, e.domid);
      return;
    }
    if (!ok) return;
    if (op.op === 'get_perms') {
      // xenstored's answer is authoritative: correct what the reducer inferred.
      const node = this.nodes.get(op.path);
      if (node) node.perms = f;
      return;
    }
    if (op.op === 'watch') {
      this.watches.set(`${key}/${op.path}/${op.token}`, { domid: e.domid, conn: e.conn, holder: this.holder(e.domid, e.conn), path: op.path, token: op.token });
      return;
    }
    if (op.op === 'unwatch') {
      this.watches.delete(`${key}/${op.path}/${op.token}`);
      return;
    }
    if (op.op === 'release') {
      for (const [k, w] of this.watches) if (w.domid === op.domid) this.watches.delete(k);
      return;
    }
    if (tx !== 0) {
      const list = this.txOps.get(`${key}/${tx}`);
      if (list) list.push(op);
      return;
    }
    this.store(op, e.domid);
  }

  /** Who a connection is, from what it does first: the name Xen folk would use. */
  private nameConnection(e: XsRecord, t: string, f: readonly string[]): void {
    const key = `${e.domid}/${e.conn}`;
    if (this.conns.has(key)) return;
    const path = absolutePath(f[0] ?? '', e.domid);
    const home = `/local/domain/${e.domid}`;
    if (t === 'WATCH' && path === `${home}/backend`) this.conns.set(key, `${domainName(e.domid)} xenbus (backends)`);
    else if (t === 'WATCH' && path === `${home}/device`) this.conns.set(key, `dom${e.domid} xenbus`);
    else if (e.domid === 0 && (t === 'INTRODUCE' || t === 'RELEASE' || path.startsWith('/libxl') || path.startsWith('/vm')
      || (/^\/local\/domain\/[1-9]/.test(path) && t !== 'READ' && t !== 'WATCH' && t !== 'DIRECTORY'))) this.conns.set(key, 'xl');
  }

  private holder(domid: number, conn: number): string {
    return this.conns.get(`${domid}/${conn}`) ?? `${domainName(domid)} conn ${conn}`;
  }

  /** A committed change to the tree. */
  private store(op: StoreOp, writer: number): void {
    switch (op.op) {
      case 'write': this.ensure(op.path, writer).value = op.value; this.changed.push(op.path); this.noteWrite(op.path, op.value); break;
      case 'mkdir': this.ensure(op.path, writer); this.changed.push(op.path); break;
      case 'rm': {
        for (const p of [...this.nodes.keys()]) {
          if (p === op.path || p.startsWith(`${op.path}/`)) {
            this.nodes.delete(p);
            this.removed.push(p);
          }
        }
        break;
      }
      case 'perms': this.ensure(op.path, writer).perms = [...op.perms]; this.changed.push(op.path); break;
      // Not changes to the tree: answered where the reply is read.
      case 'get_perms': case 'watch': case 'unwatch': case 'tx_end': case 'release': break;
    }
  }

  /** A node, created with its missing parents as xenstored does: the parent's perms, owned by an unprivileged creator. */
  private ensure(path: string, writer: number): MutableNode {
    const existing = this.nodes.get(path);
    if (existing) return existing;
    const cut = path.lastIndexOf('/');
    const parent = cut <= 0 ? this.nodes.get('/')! : this.ensure(path.slice(0, cut), writer);
    const perms = [...parent.perms];
    if (writer !== 0 && perms.length) perms[0] = `${perms[0][0]}${writer}`;
    const node = { value: '', perms };
    this.nodes.set(path, node);
    this.changed.push(path);
    return node;
  }

  /** Side effects of committed values the views need: domain names, advertised grant refs. */
  private noteWrite(path: string, value: string): void {
    const name = /^\/local\/domain\/(\d+)\/name$/.exec(path);
    if (name) this.domain(Number(name[1])).name = value;
    const dev = parseDevicePath(path);
    if (dev && dev.side === 'frontend' && /(^|\/)(ring-ref\d*|tx-ring-ref|rx-ring-ref|page-ref)$/.test(dev.rest) && /^\d+$/.test(value)) {
      this.advertised.set(`${dev.frontendDomid}/${value}`, path);
    }
  }

  // ------------------------------------------------------------------ hypervisor

  private hypercall(e: TraceRecord): void {
    const r = e.ret as { domain?: unknown; state?: unknown; shutdown_reason?: unknown; max_vcpu_id?: unknown } | undefined;
    if (e.op === '__HYPERVISOR_domctl' && r && typeof r === 'object' && isNum(r.domain) && isStr(r.state)) {
      const d = this.domain(r.domain);
      const s = r.state;
      if (s === 'paused' || s === 'running' || s === 'shutdown' || s === 'dying' || s === 'dead') d.state = s;
      if (s === 'dying' || s === 'dead') this.gone(r.domain);
      if (isNum(r.shutdown_reason)) d.shutdownReason = r.shutdown_reason;
      if (isNum(r.max_vcpu_id)) d.vcpus = r.max_vcpu_id + 1;
    }
    if (e.op === '__HYPERVISOR_sched_op' && e.cmd === 2 && isNum(e.domid) && e.ret === 0) this.domain(e.domid).state = 'shutdown';
  }

  private port(domid: number, port: number): MutablePort & { domid: number; port: number } {
    const k = `${domid}/${port}`;
    let p = this.ports.get(k);
    if (!p) this.ports.set(k, (p = { domid, port, state: 'unbound' }));
    return p;
  }

  private evtchn(e: TraceRecord): void {
    if (!isNum(e.domid) || (isNum(e.result) && e.result !== 0)) return;
    const a = (e.args && typeof e.args === 'object' ? e.args : {}) as Record<string, unknown>;
    const remote = e.remote as { domid?: unknown; port?: unknown } | undefined;
    const self = (d: unknown): number => (d === DOMID_SELF || !isNum(d) ? e.domid as number : d);
    switch (e.op) {
      case 'EVTCHNOP_alloc_unbound':
        if (isNum(e.port)) Object.assign(this.port(self(a.dom), e.port), { state: 'unbound', remoteDomid: self(a.remote_dom), remotePort: undefined });
        break;
      case 'EVTCHNOP_bind_interdomain':
        if (isNum(e.port) && remote && isNum(remote.domid) && isNum(remote.port)) {
          Object.assign(this.port(e.domid, e.port), { state: 'interdomain', remoteDomid: remote.domid, remotePort: remote.port });
          Object.assign(this.port(remote.domid, remote.port), { state: 'interdomain', remoteDomid: e.domid, remotePort: e.port });
        }
        break;
      case 'EVTCHNOP_bind_virq':
        if (isNum(e.port)) Object.assign(this.port(e.domid, e.port), { state: 'virq', virq: a.virq, vcpu: a.vcpu ?? 0 });
        break;
      case 'EVTCHNOP_bind_ipi':
        if (isNum(e.port)) Object.assign(this.port(e.domid, e.port), { state: 'ipi' });
        break;
      case 'EVTCHNOP_bind_pirq':
        if (isNum(e.port)) Object.assign(this.port(e.domid, e.port), { state: 'pirq' });
        break;
      case 'EVTCHNOP_close':
      case 'evtchn_close':
        if (isNum(e.port)) {
          this.ports.delete(`${e.domid}/${e.port}`);
          // The peer's end goes back to unbound, waiting for this domain (evtchn_close).
          if (remote && isNum(remote.domid) && isNum(remote.port)) {
            const peer = this.ports.get(`${remote.domid}/${remote.port}`);
            if (peer) Object.assign(peer, { state: 'unbound', remoteDomid: e.domid, remotePort: undefined });
          }
        }
        break;
      case 'evtchn_destroy':
        for (const [k, p] of this.ports) if (p.domid === e.domid) this.ports.delete(k);
        this.domain(e.domid).state = 'dying';
        this.gone(e.domid);
        break;
      case 'evtchn_set_pending':
        if (isNum(e.port)) {
          const p = this.port(e.domid, e.port);
          p.pendingAt = this.n - 1;
          p.delivery = isStr(e.delivery) ? e.delivery : undefined;
          if (e.delivery === 'masked') p.masked = true;
        }
        break;
      case 'EVTCHNOP_unmask':
        if (isNum(e.port)) this.port(e.domid, e.port).masked = false;
        break;
      default: break;
    }
  }

  private gnttab(e: TraceRecord): void {
    if (!isNum(e.domid) || (isNum(e.status) && e.status !== 0)) return;
    if (e.op === 'map_grant_ref' && isNum(e.dom) && isNum(e.ref) && isNum(e.handle)) {
      this.mappings.set(`${e.domid}/${e.handle}`, { granter: e.dom, ref: e.ref, domid: e.domid, handle: e.handle });
    } else if ((e.op === 'unmap_grant_ref' || e.op === 'release_mappings') && isNum(e.handle)) {
      this.mappings.delete(`${e.domid}/${e.handle}`);
    }
  }

  // ------------------------------------------------------------------ the view

  /** What the last event changed in the tree (written, created, removed). */
  lastChanges(): string[] {
    return [...this.changed, ...this.removed];
  }

  /** A guest's xenstore ring page as the trace rebuilds it (bytes, headers, indexes). */
  ringPage(domid: number): RingPageView | undefined {
    return this.ringPages.view(domid);
  }

  /** `domid:state` of every domain, for spotting a domain's state change cheaply. */
  domainStates(): string {
    return [...this.domains].map(([d, v]) => `${d}:${v.state}`).join(' ');
  }

  snapshot(): HostState {
    const domains = [...this.domains].sort(([a], [b]) => a - b).map(([domid, d]): DomainView => ({
      domid, name: d.name ?? domainName(domid), state: d.state, paused: d.state === 'paused',
      ...(d.shutdownReason !== undefined ? { shutdownReason: d.shutdownReason } : {}),
      ...(d.vcpus !== undefined ? { vcpus: d.vcpus } : {}),
    }));
    const nodes = [...this.nodes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([path, n]): NodeView => ({
      path, value: n.value, perms: [...n.perms], owner: Number(n.perms[0]?.slice(1) ?? 0),
    }));
    const grants = new Map<string, { domid: number; ref: number; advertised?: string; mappedBy: { domid: number; handle: number }[] }>();
    for (const [k, path] of this.advertised) {
      const [domid, ref] = k.split('/').map(Number);
      if (this.nodes.get(path)?.value === String(ref)) grants.set(k, { domid, ref, advertised: path, mappedBy: [] });
    }
    for (const m of this.mappings.values()) {
      const k = `${m.granter}/${m.ref}`;
      if (!grants.has(k)) grants.set(k, { domid: m.granter, ref: m.ref, mappedBy: [] });
      grants.get(k)!.mappedBy.push({ domid: m.domid, handle: m.handle });
    }
    return {
      n: this.n,
      t: this.t,
      domains,
      devices: this.devices(),
      nodes,
      changed: [...new Set(this.changed)],
      removed: this.removed,
      watches: [...this.watches.values()].map((w) => ({ ...w, holder: this.holder(w.domid, w.conn) })),
      transactions: [...this.txOps].map(([k, ops]) => {
        const [domid, conn, tx] = k.split('/').map(Number);
        return { domid, conn, tx, holder: this.holder(domid, conn), writes: ops.map((o) => ('path' in o ? `${o.op} ${o.path}` : o.op)) };
      }),
      ports: [...this.ports.values()].sort((a, b) => a.domid - b.domid || a.port - b.port).map((p) => ({ ...p })),
      grants: [...grants.values()].sort((a, b) => a.domid - b.domid || a.ref - b.ref),
      rings: [...this.rings.values()].sort((a, b) => a.domid - b.domid),
      connections: Object.fromEntries(this.conns),
    };
  }

  /** Split devices from the tree: both ends' directories and their `state` nodes. */
  private devices(): DeviceView[] {
    const out = new Map<string, { type: string; devid: string; frontend?: DeviceEnd; backend?: DeviceEnd }>();
    for (const path of this.nodes.keys()) {
      const dev = parseDevicePath(path);
      if (!dev || dev.rest !== '') continue;
      const id = `${dev.type}/${dev.frontendDomid}/${dev.devid}`;
      const v = out.get(id) ?? { type: dev.type, devid: dev.devid };
      const state = this.nodes.get(`${path}/state`)?.value;
      const s = state !== undefined && /^\d+$/.test(state) ? Number(state) : undefined;
      const end: DeviceEnd = {
        domid: dev.side === 'frontend' ? dev.frontendDomid : dev.backendDomid!, driver: driverName(dev.type, dev.side),
        state: s, stateName: s === undefined ? undefined : xenbusStateName(s), path,
      };
      v[dev.side] = end;
      out.set(id, v);
    }
    // A device has a state node at one end at least (device/suspend/event-channel is no device).
    return [...out].filter(([, v]) => v.frontend?.state !== undefined || v.backend?.state !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, v]) => ({ id, type: v.type, devid: v.devid, frontend: v.frontend, backend: v.backend }));
  }
}

/** The state after the first `n` events (all of them if n is past the end). */
export function stateAt(events: readonly TraceRecord[], n: number): HostState {
  const r = new TraceReducer();
  const end = Math.max(0, Math.min(n, events.length));
  for (let i = 0; i < end; i++) r.apply(events[i]);
  return r.snapshot();
}

/** A timeline lane: one per domain and component ("dom1 blkfront", "xenstored", "Xen"). */
export interface Lane {
  readonly id: string;
  readonly domid: number | undefined;
}

/** Xen's own work (not a domain's hypercall): it goes in the Xen lane. */
const XEN_OPS = new Set(['evtchn_set_pending', 'evtchn_close', 'evtchn_destroy', 'send_global_virq', 'send_guest_pirq',
  'release_mappings', 'fault_notify_held', 'fault_notify_released', 'fault_notify_dropped']);

/** The lane of one event, given the connection names known so far. */
export function laneOf(e: TraceRecord, ctx: ExplainContext = {}): string {
  const d = isNum(e.domid) && e.domid >= 0 ? e.domid : undefined;
  const dn = d === undefined ? '?' : `dom${d}`;
  switch (e.kind) {
    case 'xenstore':
      if (e.dir === 'OUT' || d === undefined) return 'xenstored';
      return ctx.connName?.(d, e.conn as number) ?? `${dn} conn ${String(e.conn)}`;
    case 'ring': case 'xenstored': return 'xenstored';
    case 'xenbus': {
      const dev = isStr(e.path) ? parseDevicePath(absolutePath(e.path, d)) : undefined;
      return `${dn} ${dev ? driverName(dev.type, dev.side) : String(e.role)}`;
    }
    case 'evtchn': case 'gnttab':
      return XEN_OPS.has(String(e.op)) ? 'Xen' : `${dn} kernel`;
    case 'hypercall': case 'oops': return `${dn} kernel`;
    case 'net': return `${dn} ${e.role === 'frontend' ? 'netfront' : 'netback'}`;
    case 'blkfront': return `${dn} blkfront`;
    default: return 'scenario';
  }
}

/** Every event's lane, and the lanes in order of first appearance. */
export function lanes(events: readonly TraceRecord[]): { lanes: Lane[]; of: string[] } {
  // Connections are named by what they do, maybe only later: name lanes with the whole run's names.
  const r = new TraceReducer();
  for (const e of events) r.apply(e);
  const ctx = r.context();
  const seen = new Map<string, Lane>();
  const of: string[] = [];
  for (const e of events) {
    const id = laneOf(e, ctx);
    of.push(id);
    if (!seen.has(id)) seen.set(id, { id, domid: isNum(e.domid) && e.domid >= 0 && id !== 'xenstored' && id !== 'Xen' ? e.domid : undefined });
  }
  return { lanes: [...seen.values()], of };
}
