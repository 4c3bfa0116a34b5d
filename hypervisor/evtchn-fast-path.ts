// EVTCHNOP_send without leaving the caller's thread. In Xen a hypercall runs on the calling
// pCPU; here the hypervisor publishes, per domain, a route table it alone writes (local port ->
// peer domain and port) and hands the sender the peer's shared_info page, so the send's
// set-pending runs where it was called. Every other operation still traps to the main thread,
// and lockstep or traced runs keep the trap too (the scheduler and the trace see every send).
import type { Domain } from './domain.ts';
import type { EventChannels } from './event-channel.ts';
import type { Host } from './host.ts';
import { EvtchnOp, EvtchnStat } from './public/event_channel.ts';
import { DOMID_SELF, EVTCHN_2L_NR_CHANNELS } from './public/xen.ts';
import { EVTCHN_FIFO_NR_CHANNELS } from './public/event_fifo.ts';
import { encodeRoute, routePeer } from './public/evtchn_fast_path.ts';

/** Main-thread side: keeps every domain's route table in step with its port table. */
export class EvtchnRoutes {
  private readonly tables = new Map<number, Int32Array>();
  /** Which (domain, port) routes point at each domain, to clear them when it dies. */
  private readonly pointingAt = new Map<number, Set<string>>();

  constructor(private readonly host: Host, private readonly evtchn: EventChannels) {
    for (const d of host.domains.values()) this.table(d.domid);
    host.addHooks({
      domainCreated: (d) => void this.table(d.domid),
      domainKilled: (d) => this.forget(d.domid),
      domainFreed: (d) => this.tables.delete(d.domid),
    });
  }

  /**
   * The route table of a domain (created on first use): a port per 2-level port, and for a
   * privileged domain (dom0, whose kernel switches to FIFO as Linux's does) a port per FIFO port.
   * Ports past a table's end take the hypercall.
   */
  table(domid: number): SharedArrayBuffer {
    let t = this.tables.get(domid);
    if (!t) {
      const ports = this.host.domains.get(domid)?.privileged ? EVTCHN_FIFO_NR_CHANNELS : EVTCHN_2L_NR_CHANNELS;
      t = new Int32Array(new SharedArrayBuffer(ports * 4));
      this.tables.set(domid, t);
    }
    return t.buffer as SharedArrayBuffer;
  }

  /** After an event-channel hypercall: refresh the routes it may have changed. */
  afterHypercall(caller: Domain, cmd: number, arg: Record<string, number>, ret: unknown): void {
    switch (cmd) {
      case EvtchnOp.EVTCHNOP_bind_interdomain: {
        const r = ret as { local_port?: number } | number;
        if (typeof r === 'object' && r.local_port !== undefined) this.refresh(caller.domid, r.local_port);
        return;
      }
      case EvtchnOp.EVTCHNOP_close:
        this.refresh(caller.domid, arg.port);
        return;
      case EvtchnOp.EVTCHNOP_reset:
        this.forget(arg.dom === DOMID_SELF ? caller.domid : arg.dom);
        return;
      default:
    }
  }

  /** Sets (or clears) the routes of a port and of its peer from the port table. */
  refresh(domid: number, port: number): void {
    const t = this.tables.get(domid);
    const old = t && port < t.length ? routePeer(Atomics.load(t, port)) : undefined;
    const route = this.routeOf(domid, port);
    this.set(domid, port, route);
    const peer = routePeer(route) ?? old;
    if (peer) this.set(peer.domid, peer.port, this.routeOf(peer.domid, peer.port));
  }

  private routeOf(domid: number, port: number): number {
    const dom0 = this.host.domains.get(0);
    if (!dom0 || !this.host.domains.has(domid)) return 0;
    const st = this.evtchn.status(dom0, { dom: domid, port } as never);
    if (typeof st !== 'object' || st.status !== EvtchnStat.EVTCHNSTAT_interdomain) return 0;
    const { dom, port: peerPort } = st.u.interdomain;
    return encodeRoute(dom, peerPort);
  }

  private set(domid: number, port: number, route: number): void {
    const t = this.tables.get(domid);
    if (!t || port >= t.length) return;
    const old = routePeer(Atomics.load(t, port));
    if (old) this.pointingAt.get(old.domid)?.delete(`${domid}:${port}`);
    Atomics.store(t, port, route);
    const peer = routePeer(route);
    if (peer) {
      let s = this.pointingAt.get(peer.domid);
      if (!s) this.pointingAt.set(peer.domid, (s = new Set()));
      s.add(`${domid}:${port}`);
    }
  }

  /** A domain's channels are gone: nobody routes to it, it routes nowhere. */
  private forget(domid: number): void {
    for (const key of this.pointingAt.get(domid) ?? []) {
      const [d, p] = key.split(':').map(Number);
      const t = this.tables.get(d);
      if (t) Atomics.store(t, p, 0);
    }
    this.pointingAt.delete(domid);
    this.tables.get(domid)?.fill(0);
  }
}

