// The guest end of the event-channel fast path (EVTCHNOP_send without a trap): the route table
// the hypervisor publishes per domain (local port -> peer domain and port; the hypervisor alone
// writes it, hypervisor/evtchn-fast-path.ts), the peer's shared_info as the sender holds it, and
// the wake of the peer's vCPU. The set-pending itself is Xen's, from event_2l.ts or, for a peer
// that switched to the FIFO ABI, event_fifo.ts (linking under the lock the hypervisor takes).
import { type Delivery2l, Evtchn2l } from './event_2l.ts';
import { type DeliveryFifo, EvtchnFifo, type FifoShare } from './event_fifo.ts';

/**
 * route = peer domid << 17 | peer port (a FIFO port needs all 17 bits; a domid below
 * DOMID_FIRST_RESERVED the other 15); 0 = take the hypercall. Port 0 is never a peer's port, so
 * a route with port 0 is no route.
 */
const PORT_BITS = 17;
const PORT_MASK = (1 << PORT_BITS) - 1;

export const encodeRoute = (domid: number, port: number): number => {
  if (!Number.isInteger(domid) || domid < 0 || domid >= 1 << (32 - PORT_BITS)) throw new RangeError(`route to domain ${domid}`);
  if (!Number.isInteger(port) || port <= 0 || port > PORT_MASK) throw new RangeError(`route to port ${port}`);
  return ((domid << PORT_BITS) | port) | 0;
};
export const routePeer = (route: number): { domid: number; port: number } | undefined =>
  routeValid(route) ? { domid: routeDomid(route), port: routePort(route) } : undefined;
/** The parts of a valid route, without an object (the send path runs these for every send). */
export const routeValid = (route: number): boolean => (route & PORT_MASK) !== 0;
export const routeDomid = (route: number): number => route >>> PORT_BITS;
export const routePort = (route: number): number => route & PORT_MASK;

/**
 * A peer's shared_info page as the sender holds it; and, when the peer's vCPU runs on a shared
 * pool thread (packing), that thread's doorbell word, which is what its vCPU sleeps on.
 */
export class PeerSharedInfo {
  readonly evtchn: Evtchn2l;
  readonly bell: Int32Array | undefined;
  /** The peer's FIFO state, when it runs that ABI. */
  readonly fifo: EvtchnFifo | undefined;

  constructor(sab: SharedArrayBuffer, doorbell?: SharedArrayBuffer, fifo?: FifoShare) {
    this.evtchn = new Evtchn2l(sab);
    this.bell = doorbell ? new Int32Array(doorbell) : undefined;
    this.fifo = fifo ? EvtchnFifo.fromShare(sab, fifo) : undefined;
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
 * EVTCHNOP_send's set-pending run by the sender (evtchn_2l_set_pending or
 * evtchn_fifo_set_pending, vCPU 0 as the kernel binds every port), and a wake of the peer's vCPU
 * on a new upcall. Returns what it did, or undefined when the sender lacks the port's FIFO page
 * (the peer grew its event array since): then the send must trap.
 */
export function setPendingFast(peer: PeerSharedInfo, port: number): Delivery2l | DeliveryFifo | undefined {
  const d = peer.fifo ? peer.fifo.setPending(0, port) : peer.evtchn.setPending(0, port);
  if (d === 'upcall') kickVcpu(peer);
  return d;
}
