// io/netif.h tx and rx rings (spec/hypervisor-and-xenbus.md §3.3). Expected bytes are built
// independently with a DataView at the offsets the spec lists.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  NETRXF_csum_blank, NETRXF_data_validated, NETRXF_extra_info, NETRXF_gso_prefix, NETRXF_more_data,
  NETTXF_csum_blank, NETTXF_data_validated, NETTXF_extra_info, NETTXF_more_data, NET_RX_RING_ENTRY_SIZE,
  NET_RX_RING_SIZE, NET_TX_RING_ENTRY_SIZE, NET_TX_RING_SIZE, NetifRsp, XEN_NETIF_EXTRA_FLAG_MORE,
  XEN_NETIF_MAX_TX_SIZE, XEN_NETIF_NR_SLOTS_MIN, XenNetifExtraType, XenNetifGsoType,
  decodeNetifExtraInfo, decodeNetifExtraInfoGso, decodeNetifRxRequest, decodeNetifRxResponse,
  decodeNetifTxRequest, decodeNetifTxResponse, encodeNetifExtraInfo, encodeNetifExtraInfoGso,
  encodeNetifRxRequest, encodeNetifRxResponse, encodeNetifTxRequest, encodeNetifTxResponse,
} from '../../../hypervisor/public/io/netif.ts';
import { BackRing, FrontRing } from '../../../hypervisor/public/io/ring.ts';
import { property } from '../../helpers/property.ts';

const dv = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

describe('netif (vif) wire format', () => {
  describe('constants', () => {
    const FLAGS: readonly [name: string, value: number, bit: number][] = [
      ['NETTXF_csum_blank', NETTXF_csum_blank, 0],
      ['NETTXF_data_validated', NETTXF_data_validated, 1],
      ['NETTXF_more_data', NETTXF_more_data, 2],
      ['NETTXF_extra_info', NETTXF_extra_info, 3],
      ['NETRXF_data_validated', NETRXF_data_validated, 0],
      ['NETRXF_csum_blank', NETRXF_csum_blank, 1],
      ['NETRXF_more_data', NETRXF_more_data, 2],
      ['NETRXF_extra_info', NETRXF_extra_info, 3],
      ['NETRXF_gso_prefix', NETRXF_gso_prefix, 4],
    ];
    for (const [name, value, bit] of FLAGS) it(`${name} is bit ${bit}`, () => assert.equal(value, 1 << bit));

    it('statuses: DROPPED -2, ERROR -1, OKAY 0, NULL 1', () => {
      assert.deepEqual([NetifRsp.NETIF_RSP_DROPPED, NetifRsp.NETIF_RSP_ERROR, NetifRsp.NETIF_RSP_OKAY, NetifRsp.NETIF_RSP_NULL], [-2, -1, 0, 1]);
    });
    it('extra types GSO 1, MCAST_ADD 2, MCAST_DEL 3, HASH 4; GSO types TCPV4 1, TCPV6 2; FLAG_MORE 1', () => {
      assert.deepEqual(
        [XenNetifExtraType.XEN_NETIF_EXTRA_TYPE_GSO, XenNetifExtraType.XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
          XenNetifExtraType.XEN_NETIF_EXTRA_TYPE_MCAST_DEL, XenNetifExtraType.XEN_NETIF_EXTRA_TYPE_HASH],
        [1, 2, 3, 4],
      );
      assert.deepEqual([XenNetifGsoType.XEN_NETIF_GSO_TYPE_TCPV4, XenNetifGsoType.XEN_NETIF_GSO_TYPE_TCPV6], [1, 2]);
      assert.equal(XEN_NETIF_EXTRA_FLAG_MORE, 1);
    });
    it('18 slots per packet must be accepted; packets up to 65535 bytes', () => {
      assert.equal(XEN_NETIF_NR_SLOTS_MIN, 18);
      assert.equal(XEN_NETIF_MAX_TX_SIZE, 65535);
    });
    it('tx entries are 12 bytes, rx entries 8; both rings hold 256 per page', () => {
      assert.equal(NET_TX_RING_ENTRY_SIZE, 12);
      assert.equal(NET_RX_RING_ENTRY_SIZE, 8);
      assert.equal(NET_TX_RING_SIZE, 256);
      assert.equal(NET_RX_RING_SIZE, 256);
    });
  });

  describe('layouts', () => {
    it('netif_tx_request: gref@0 u32, offset@4, flags@6, id@8, size@10 (u16s)', () => {
      const b = new Uint8Array(12);
      const req = { gref: 0xdeadbeef, offset: 0x0ffe, flags: NETTXF_more_data | NETTXF_csum_blank, id: 255, size: 1514 };
      encodeNetifTxRequest(b, req);
      const v = dv(b);
      assert.deepEqual(
        [v.getUint32(0, true), v.getUint16(4, true), v.getUint16(6, true), v.getUint16(8, true), v.getUint16(10, true)],
        [0xdeadbeef, 0x0ffe, 5, 255, 1514],
      );
      assert.deepEqual(decodeNetifTxRequest(b), req);
    });

    it('netif_tx_response: id@0 u16, status@2 i16, leaving the rest of the 12-byte entry alone', () => {
      const b = new Uint8Array(12).fill(0xee);
      encodeNetifTxResponse(b, { id: 0x1234, status: NetifRsp.NETIF_RSP_DROPPED });
      assert.deepEqual([...b.subarray(0, 4)], [0x34, 0x12, 0xfe, 0xff]);
      assert.ok(b.subarray(4).every((x) => x === 0xee));
      assert.deepEqual(decodeNetifTxResponse(b), { id: 0x1234, status: -2 });
    });

    it('netif_rx_request: id@0 u16, pad@2 (zeroed), gref@4 u32', () => {
      const b = new Uint8Array(8).fill(0xee);
      encodeNetifRxRequest(b, { id: 7, gref: 0x01020304 });
      assert.deepEqual([...b], [7, 0, 0, 0, 4, 3, 2, 1]);
      assert.deepEqual(decodeNetifRxRequest(b), { id: 7, gref: 0x01020304 });
    });

    it('netif_rx_response: id@0, offset@2, flags@4 (u16s), status@6 i16 (a byte count when >= 0)', () => {
      const b = new Uint8Array(8);
      const rsp = { id: 3, offset: 66, flags: NETRXF_data_validated | NETRXF_more_data, status: 1448 };
      encodeNetifRxResponse(b, rsp);
      const v = dv(b);
      assert.deepEqual([v.getUint16(0, true), v.getUint16(2, true), v.getUint16(4, true), v.getInt16(6, true)], [3, 66, 5, 1448]);
      assert.deepEqual(decodeNetifRxResponse(b), rsp);
      encodeNetifRxResponse(b, { ...rsp, status: NetifRsp.NETIF_RSP_ERROR });
      assert.equal(decodeNetifRxResponse(b).status, -1);
    });

    it('netif_extra_info (GSO): type@0, flags@1, u.gso.size@2, u.gso.type@4, pad@5, u.gso.features@6', () => {
      const b = new Uint8Array(12).fill(0xee);
      encodeNetifExtraInfoGso(b, { size: 1448, type: XenNetifGsoType.XEN_NETIF_GSO_TYPE_TCPV4, features: 0 }, XEN_NETIF_EXTRA_FLAG_MORE);
      assert.deepEqual([...b.subarray(0, 8)], [1, 1, 0xa8, 0x05, 1, 0, 0, 0]);
      assert.deepEqual(decodeNetifExtraInfoGso(b), { size: 1448, type: 1, features: 0 });
      const raw = decodeNetifExtraInfo(b);
      assert.equal(raw.type, XenNetifExtraType.XEN_NETIF_EXTRA_TYPE_GSO);
      assert.equal(raw.flags, XEN_NETIF_EXTRA_FLAG_MORE);
      assert.deepEqual([...raw.data], [0xa8, 0x05, 1, 0, 0, 0]);
    });

    it('netif_extra_info (multicast): the 6-byte address follows type and flags; decode copies it', () => {
      const b = new Uint8Array(8);
      const mac = Uint8Array.of(0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb);
      encodeNetifExtraInfo(b, { type: XenNetifExtraType.XEN_NETIF_EXTRA_TYPE_MCAST_ADD, flags: 0, data: mac });
      assert.deepEqual([...b], [2, 0, ...mac]);
      const got = decodeNetifExtraInfo(b);
      b[2] = 0xff; // the peer rewriting the slot afterwards does not change what was read
      assert.deepEqual([...got.data], [...mac]);
    });

    it('decoding any entry bytes never throws', () => {
      fc.assert(fc.property(fc.uint8Array({ minLength: 12, maxLength: 12 }), (b) => {
        decodeNetifTxRequest(b);
        decodeNetifTxResponse(b);
        decodeNetifRxRequest(b);
        decodeNetifRxResponse(b);
        decodeNetifExtraInfo(b);
        decodeNetifExtraInfoGso(b);
      }), property(100));
    });
  });

  describe('over the rings', () => {
    it('tx: a two-slot packet (first slot carries the total size), answered OKAY per slot', () => {
      const page = new Uint8Array(new SharedArrayBuffer(4096));
      const front = FrontRing.init(page, NET_TX_RING_ENTRY_SIZE);
      const back = BackRing.attach(page, NET_TX_RING_ENTRY_SIZE);
      assert.equal(front.size, 256);
      encodeNetifTxRequest(front.produceRequest()!, { gref: 10, offset: 0, flags: NETTXF_more_data, id: 0, size: 5000 });
      encodeNetifTxRequest(front.produceRequest()!, { gref: 11, offset: 0, flags: 0, id: 1, size: 904 });
      assert.equal(front.pushRequestsAndCheckNotify(), true);
      const slots = [back.consumeRequest()!, back.consumeRequest()!].map(decodeNetifTxRequest);
      assert.deepEqual(slots.map((s) => [s.gref, s.size, s.flags]), [[10, 5000, NETTXF_more_data], [11, 904, 0]]);
      for (const s of slots) encodeNetifTxResponse(back.produceResponse()!, { id: s.id, status: NetifRsp.NETIF_RSP_OKAY });
      assert.equal(back.pushResponsesAndCheckNotify(), true);
      assert.deepEqual([decodeNetifTxResponse(front.consumeResponse()!), decodeNetifTxResponse(front.consumeResponse()!)],
        [{ id: 0, status: 0 }, { id: 1, status: 0 }]);
    });

    it('rx: the backend answers in the same slot index as the buffer it consumed', () => {
      const page = new Uint8Array(new SharedArrayBuffer(4096));
      const front = FrontRing.init(page, NET_RX_RING_ENTRY_SIZE);
      const back = BackRing.attach(page, NET_RX_RING_ENTRY_SIZE);
      for (let id = 0; id < 256; id++) encodeNetifRxRequest(front.produceRequest()!, { id, gref: 100 + id });
      assert.equal(front.isFull(), true);
      front.pushRequests();
      const posted = back.consumeRequest()!;
      const at = posted.byteOffset;
      assert.deepEqual(decodeNetifRxRequest(posted), { id: 0, gref: 100 });
      const rsp = back.produceResponse()!;
      assert.equal(rsp.byteOffset, at);
      encodeNetifRxResponse(rsp, { id: 0, offset: 0, flags: NETRXF_data_validated, status: 60 });
      back.pushResponses();
      assert.equal(decodeNetifRxResponse(front.consumeResponse()!).status, 60);
    });
  });
});
