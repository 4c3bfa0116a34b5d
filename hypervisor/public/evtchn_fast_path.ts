// The guest end of the event-channel fast path (EVTCHNOP_send without a trap): the route table
// the hypervisor publishes per domain (local port -> peer domain and port; the hypervisor alone
// writes it, hypervisor/evtchn-fast-path.ts), the peer's shared_info as the sender holds it, and
// the wake of the peer's vCPU. The set-pending itself is Xen's, from event_2l.ts.
import { type Delivery2l, Evtchn2l } from './event_2l.ts';

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

/**
 * A peer's shared_info page as the sender holds it; and, when the peer's vCPU runs on a shared
 * pool thread (packing), that thread's doorbell word, which is what its vCPU sleeps on.
 */
export class PeerSharedInfo {
  readonly evtchn: Evtchn2l;
  readonly bell: Int32Array | undefined;

  constructor(sab: SharedArrayBuffer, doorbell?: SharedArrayBuffer) {
    this.evtchn = new Evtchn2l(sab);
    this.bell = doorbell ? new Int32Array(doorbell) : undefined;
  }
}

/** Wakes the thread that runs a vCPU: its upcall word, or its pool thread's doorbell. */
export function kickVcpu(peer: PeerSharedInfo): void {
  if (peer.bell) {
    Atomics.add(peer.bell, 0, 1);
    Atomics.notify(peer.bell, 0);
  } else {
    peer.evtchn.kick(0);
  }
}

/**
 * EVTCHNOP_send's set-pending run by the sender (evtchn_2l_set_pending, vCPU 0 as the kernel
 * binds every port), and a wake of the peer's vCPU on a new upcall. Returns what it did.
 */
export function setPendingFast(peer: PeerSharedInfo, port: number): Delivery2l {
  const d = peer.evtchn.setPending(0, port);
  if (d === 'upcall') kickVcpu(peer);
  return d;
}
