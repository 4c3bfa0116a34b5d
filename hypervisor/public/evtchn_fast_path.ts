// The guest end of the event-channel fast path (EVTCHNOP_send without a trap): the route table
// the hypervisor publishes per domain (local port -> peer domain and port; the hypervisor alone
// writes it, hypervisor/evtchn-fast-path.ts), the peer's shared_info as the sender holds it, and
// the wake of the peer's vCPU. The set-pending itself is evtchn_2l_set_pending (event_2l.ts).
import { SharedInfo, VcpuInfo } from './xen.ts';

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
