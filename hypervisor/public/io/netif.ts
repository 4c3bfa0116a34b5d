// xen/include/public/io/netif.h: the vif tx and rx rings (one page each) and their entries.
// spec/hypervisor-and-xenbus.md §3.3.
//
// Decoders read what the peer wrote and never throw; every field comes back as written.
import { ringSize } from './ring.ts';

/** struct netif_tx_request: 12 bytes, frontend -> backend, one per packet slot. */
export const NetifTxRequest = {
  gref: 0,
  offset: 4,
  flags: 6,
  id: 8,
  /** The whole packet's size in its first slot, the fragment's own size in later ones. */
  size: 10,
  SIZE: 12,
} as const;

/** struct netif_tx_response: 4 bytes. */
export const NetifTxResponse = {
  id: 0,
  status: 2,
  SIZE: 4,
} as const;

/** struct netif_rx_request: 8 bytes, a buffer page the frontend posts for the backend to fill. */
export const NetifRxRequest = {
  id: 0,
  pad: 2,
  gref: 4,
  SIZE: 8,
} as const;

/** struct netif_rx_response: 8 bytes; status >= 0 is the byte count. */
export const NetifRxResponse = {
  id: 0,
  offset: 2,
  flags: 4,
  status: 6,
  SIZE: 8,
} as const;

/**
 * struct netif_extra_info: 8 bytes, occupying a tx request slot or an rx response slot right
 * after one flagged extra_info. `u` is a union of the type-specific records below.
 */
export const NetifExtraInfo = {
  type: 0,
  flags: 1,
  u: 2,
  SIZE: 8,
} as const;
/** netif_extra_info.u.gso. */
export const NetifExtraInfoGso = { size: 2, type: 4, pad: 5, features: 6 } as const;
/** netif_extra_info.u.mcast: a 6-byte MAC address. */
export const NetifExtraInfoMcast = { addr: 2 } as const;
/** netif_extra_info.u.hash: type, algorithm, then the 4-byte hash value. */
export const NetifExtraInfoHash = { type: 2, algorithm: 3, value: 4 } as const;

/** The union entries: tx is max(12, 4), rx is max(8, 8). */
export const NET_TX_RING_ENTRY_SIZE = NetifTxRequest.SIZE;
export const NET_RX_RING_ENTRY_SIZE = NetifRxRequest.SIZE;
/** __CONST_RING_SIZE(netif_tx, 4096): 336 entries fit, rounded down to 256. */
export const NET_TX_RING_SIZE = ringSize(NET_TX_RING_ENTRY_SIZE);
/** __CONST_RING_SIZE(netif_rx, 4096): 504 fit, rounded down to 256. */
export const NET_RX_RING_SIZE = ringSize(NET_RX_RING_ENTRY_SIZE);

// netif_tx_request.flags.
/** The protocol checksum is blank; the backend (or the NIC) must fill it in. */
export const NETTXF_csum_blank = 1 << 0;
export const NETTXF_data_validated = 1 << 1;
/** The packet continues in the next slot. */
export const NETTXF_more_data = 1 << 2;
/** The next slot holds a netif_extra_info, not a fragment. */
export const NETTXF_extra_info = 1 << 3;

// netif_rx_response.flags (note csum_blank and data_validated swap bits relative to tx).
export const NETRXF_data_validated = 1 << 0;
export const NETRXF_csum_blank = 1 << 1;
export const NETRXF_more_data = 1 << 2;
export const NETRXF_extra_info = 1 << 3;
/** Deprecated, kept for old frontends. */
export const NETRXF_gso_prefix = 1 << 4;

/** netif_tx_response.status / netif_rx_response.status when negative or NULL. */
export enum NetifRsp {
  NETIF_RSP_DROPPED = -2,
  NETIF_RSP_ERROR = -1,
  NETIF_RSP_OKAY = 0,
  /** The slot held an extra-info descriptor, not data. */
  NETIF_RSP_NULL = 1,
}

/** netif_extra_info.type. */
export enum XenNetifExtraType {
  XEN_NETIF_EXTRA_TYPE_NONE = 0,
  XEN_NETIF_EXTRA_TYPE_GSO = 1,
  XEN_NETIF_EXTRA_TYPE_MCAST_ADD = 2,
  XEN_NETIF_EXTRA_TYPE_MCAST_DEL = 3,
  XEN_NETIF_EXTRA_TYPE_HASH = 4,
}
export const XEN_NETIF_EXTRA_TYPE_MAX = 5;
/** netif_extra_info.flags: another extra-info slot follows. */
export const XEN_NETIF_EXTRA_FLAG_MORE = 1 << 0;

/** netif_extra_info.u.gso.type. */
export enum XenNetifGsoType {
  XEN_NETIF_GSO_TYPE_NONE = 0,
  XEN_NETIF_GSO_TYPE_TCPV4 = 1,
  XEN_NETIF_GSO_TYPE_TCPV6 = 2,
}

/** Slots per packet every backend must accept (a frontend may use up to this many). */
export const XEN_NETIF_NR_SLOTS_MIN = 18;
/** The largest packet the tx size field can describe. */
export const XEN_NETIF_MAX_TX_SIZE = 0xffff;

export interface NetifTxRequestValue {
  readonly gref: number;
  readonly offset: number;
  readonly flags: number;
  readonly id: number;
  readonly size: number;
}

export interface NetifTxResponseValue {
  readonly id: number;
  readonly status: number;
}

export interface NetifRxRequestValue {
  readonly id: number;
  readonly gref: number;
}

export interface NetifRxResponseValue {
  readonly id: number;
  readonly offset: number;
  readonly flags: number;
  readonly status: number;
}

/** An extra-info slot: `data` is the 6-byte union, to be read per `type`. */
export interface NetifExtraInfoValue {
  readonly type: number;
  readonly flags: number;
  readonly data: Uint8Array;
}

export interface NetifExtraInfoGsoValue {
  readonly size: number;
  readonly type: number;
  readonly features: number;
}

const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

export function decodeNetifTxRequest(slot: Uint8Array): NetifTxRequestValue {
  const v = view(slot);
  const L = NetifTxRequest;
  return {
    gref: v.getUint32(L.gref, true),
    offset: v.getUint16(L.offset, true),
    flags: v.getUint16(L.flags, true),
    id: v.getUint16(L.id, true),
    size: v.getUint16(L.size, true),
  };
}

export function encodeNetifTxRequest(slot: Uint8Array, req: NetifTxRequestValue): void {
  const v = view(slot);
  const L = NetifTxRequest;
  v.setUint32(L.gref, req.gref >>> 0, true);
  v.setUint16(L.offset, req.offset & 0xffff, true);
  v.setUint16(L.flags, req.flags & 0xffff, true);
  v.setUint16(L.id, req.id & 0xffff, true);
  v.setUint16(L.size, req.size & 0xffff, true);
}

export function decodeNetifTxResponse(slot: Uint8Array): NetifTxResponseValue {
  const v = view(slot);
  return { id: v.getUint16(NetifTxResponse.id, true), status: v.getInt16(NetifTxResponse.status, true) };
}

export function encodeNetifTxResponse(slot: Uint8Array, rsp: NetifTxResponseValue): void {
  const v = view(slot);
  v.setUint16(NetifTxResponse.id, rsp.id & 0xffff, true);
  v.setInt16(NetifTxResponse.status, rsp.status, true);
}

export function decodeNetifRxRequest(slot: Uint8Array): NetifRxRequestValue {
  const v = view(slot);
  return { id: v.getUint16(NetifRxRequest.id, true), gref: v.getUint32(NetifRxRequest.gref, true) };
}

export function encodeNetifRxRequest(slot: Uint8Array, req: NetifRxRequestValue): void {
  const v = view(slot);
  v.setUint16(NetifRxRequest.id, req.id & 0xffff, true);
  v.setUint16(NetifRxRequest.pad, 0, true);
  v.setUint32(NetifRxRequest.gref, req.gref >>> 0, true);
}

export function decodeNetifRxResponse(slot: Uint8Array): NetifRxResponseValue {
  const v = view(slot);
  const L = NetifRxResponse;
  return {
    id: v.getUint16(L.id, true),
    offset: v.getUint16(L.offset, true),
    flags: v.getUint16(L.flags, true),
    status: v.getInt16(L.status, true),
  };
}

export function encodeNetifRxResponse(slot: Uint8Array, rsp: NetifRxResponseValue): void {
  const v = view(slot);
  const L = NetifRxResponse;
  v.setUint16(L.id, rsp.id & 0xffff, true);
  v.setUint16(L.offset, rsp.offset & 0xffff, true);
  v.setUint16(L.flags, rsp.flags & 0xffff, true);
  v.setInt16(L.status, rsp.status, true);
}

/** Reads an extra-info slot; `data` is a copy, so the peer cannot change it afterwards. */
export function decodeNetifExtraInfo(slot: Uint8Array): NetifExtraInfoValue {
  return {
    type: slot[NetifExtraInfo.type] ?? 0,
    flags: slot[NetifExtraInfo.flags] ?? 0,
    data: slot.slice(NetifExtraInfo.u, NetifExtraInfo.SIZE),
  };
}

export function encodeNetifExtraInfo(slot: Uint8Array, extra: NetifExtraInfoValue): void {
  slot[NetifExtraInfo.type] = extra.type;
  slot[NetifExtraInfo.flags] = extra.flags;
  slot.fill(0, NetifExtraInfo.u, NetifExtraInfo.SIZE);
  slot.set(extra.data.subarray(0, NetifExtraInfo.SIZE - NetifExtraInfo.u), NetifExtraInfo.u);
}

/** u.gso of an extra-info slot (meaningful when its type is XEN_NETIF_EXTRA_TYPE_GSO). */
export function decodeNetifExtraInfoGso(slot: Uint8Array): NetifExtraInfoGsoValue {
  const v = view(slot);
  return {
    size: v.getUint16(NetifExtraInfoGso.size, true),
    type: v.getUint8(NetifExtraInfoGso.type),
    features: v.getUint16(NetifExtraInfoGso.features, true),
  };
}

/** Writes a GSO extra-info slot (type XEN_NETIF_EXTRA_TYPE_GSO, the given flags). */
export function encodeNetifExtraInfoGso(slot: Uint8Array, gso: NetifExtraInfoGsoValue, flags = 0): void {
  const v = view(slot);
  v.setUint8(NetifExtraInfo.type, XenNetifExtraType.XEN_NETIF_EXTRA_TYPE_GSO);
  v.setUint8(NetifExtraInfo.flags, flags & 0xff);
  v.setUint16(NetifExtraInfoGso.size, gso.size & 0xffff, true);
  v.setUint8(NetifExtraInfoGso.type, gso.type & 0xff);
  v.setUint8(NetifExtraInfoGso.pad, 0);
  v.setUint16(NetifExtraInfoGso.features, gso.features & 0xffff, true);
}
