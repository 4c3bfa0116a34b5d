// EVTCHNOP_send without leaving the caller's thread. In Xen a hypercall runs on the calling
// pCPU; here the hypervisor publishes, per domain, a route table it alone writes (local port ->
// peer domain and port) and hands the sender the peer's shared_info page, so the send's
// set-pending runs where it was called. Every other operation still traps to the main thread,
// and lockstep or traced runs keep the trap too (the scheduler and the trace see every send).
import type { Domain } from './domain.ts';
import type { EventChannels } from './event-channel.ts';
import type { Host } from './host.ts';
import { EvtchnOp, EvtchnStat } from './public/event_channel.ts';
import { DOMID_SELF, EVTCHN_2L_NR_CHANNELS, SharedInfo, VcpuInfo } from './public/xen.ts';

/** route = ROUTE_VALID | peer domid << 12 | peer port; 0 = take the hypercall. */
const ROUTE_VALID = 0x40000000;
const PORT_BITS = 12;

export const encodeRoute = (domid: number, port: number): number => ROUTE_VALID | (domid << PORT_BITS) | port;
export const routePeer = (route: number): { domid: number; port: number } | undefined =>
  route & ROUTE_VALID ? { domid: routeDomid(route), port: routePort(route) } : undefined;
/** The parts of a valid route, without an object (the send path runs these for every send). */
export const routeValid = (route: number): boolean => (route & ROUTE_VALID) !== 0;
export const routeDomid = (route: number): number => (route & ~ROUTE_VALID) >>> PORT_BITS;
export const routePort = (route: number): number => route & ((1 << PORT_BITS) - 1);

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

  /** The route table of a domain (created on first use). */
  table(domid: number): SharedArrayBuffer {
    let t = this.tables.get(domid);
    if (!t) {
      t = new Int32Array(new SharedArrayBuffer(EVTCHN_2L_NR_CHANNELS * 4));
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
    const old = t ? routePeer(Atomics.load(t, port)) : undefined;
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
    if (!t) return;
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

/** 1n << i for i < 64, made once (the send path would otherwise build two BigInts per send). */
const BIT: readonly bigint[] = Array.from({ length: 64 }, (_, i) => 1n << BigInt(i));

const PENDING_WORD = SharedInfo.evtchn_pending / 8;
const MASK_WORD = SharedInfo.evtchn_mask / 8;
const SEL_WORD = (SharedInfo.vcpu_info + VcpuInfo.evtchn_pending_sel) / 8;

/**
 * Views on a peer's shared_info page, kept by the sender; and, when the peer's vCPU runs on a
 * shared pool thread (packing), that thread's doorbell word, which is what its vCPU sleeps on.
 */
export class PeerSharedInfo {
  readonly big: BigInt64Array;
  readonly bytes: Uint8Array;
  readonly words: Int32Array;
  readonly bell: Int32Array | undefined;

  constructor(sab: SharedArrayBuffer, doorbell?: SharedArrayBuffer) {
    this.big = new BigInt64Array(sab);
    this.bytes = new Uint8Array(sab);
    this.words = new Int32Array(sab);
    this.bell = doorbell ? new Int32Array(doorbell) : undefined;
  }
}

/** Wakes the thread that runs a vCPU: its upcall word, or its pool thread's doorbell. */
export function kickVcpu(peer: PeerSharedInfo): void {
  if (peer.bell) {
    Atomics.add(peer.bell, 0, 1);
    Atomics.notify(peer.bell, 0);
  } else {
    Atomics.notify(peer.words, 0);
  }
}

/**
 * evtchn_2l_set_pending() run by the sender: pending bit, then (unmasked) selector bit, then
 * upcall_pending, and a wake of the peer's vCPU on a new upcall - in Xen's order. Returns whether
 * it made a new upcall (and so kicked the peer's vCPU).
 */
export function setPendingFast(peer: PeerSharedInfo, port: number): boolean {
  const bit = BIT[port & 63];
  const word = port >>> 6;
  if ((Atomics.or(peer.big, PENDING_WORD + word, bit) & bit) !== 0n) return false;
  if ((Atomics.load(peer.big, MASK_WORD + word) & bit) !== 0n) return false;
  const selBit = BIT[word];
  if ((Atomics.or(peer.big, SEL_WORD, selBit) & selBit) !== 0n) return false;
  if (Atomics.exchange(peer.bytes, VcpuInfo.evtchn_upcall_pending, 1) !== 0) return false;
  kickVcpu(peer);
  return true;
}
