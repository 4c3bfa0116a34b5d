// io/blkif.h, native x86_64 ABI (spec/hypervisor-and-xenbus.md §3.2), and vbd numbering (§4.3,
// docs/man/xen-vbd-interface.7.pandoc). Expected bytes are built independently with a DataView
// at the offsets the spec lists.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  BLKIF_DISCARD_SECURE, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_RING_ENTRY_SIZE, BLKIF_RING_SIZE, BlkifOp, BlkifRsp, type BlkifRequestValue,
  VDISK_CDROM, VDISK_READONLY, VDISK_REMOVABLE, XEN_IO_PROTO_ABI_NATIVE, XEN_IO_PROTO_ABI_X86_32,
  XEN_IO_PROTO_ABI_X86_64, blkifIndirectPages, blkifRequestOperation, blkifSegmentBytes,
  decodeBlkifRequest, decodeBlkifRequestDiscard, decodeBlkifRequestIndirect, decodeBlkifResponse,
  encodeBlkifRequest, encodeBlkifRequestDiscard, encodeBlkifRequestIndirect, encodeBlkifResponse,
  validateBlkifRequest, validateBlkifRequestIndirect, vdevDecode, vdevFromName, vdevName,
} from '../../../hypervisor/public/io/blkif.ts';
import { BackRing, FrontRing } from '../../../hypervisor/public/io/ring.ts';
import { property } from '../../helpers/property.ts';

const entry = (): Uint8Array => new Uint8Array(BLKIF_RING_ENTRY_SIZE);
const dv = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

const READ: BlkifRequestValue = {
  operation: BlkifOp.BLKIF_OP_READ,
  nr_segments: 2,
  handle: 51712,
  id: 0xfedcba9876543210n,
  sector_number: 0x1_0000_0002n,
  seg: [{ gref: 0x11223344, first_sect: 0, last_sect: 7 }, { gref: 9, first_sect: 2, last_sect: 3 }],
};

describe('blkif (vbd) wire format, x86_64 ABI', () => {
  describe('constants', () => {
    it('operations have their wire values (4 is reserved)', () => {
      assert.deepEqual(
        [BlkifOp.BLKIF_OP_READ, BlkifOp.BLKIF_OP_WRITE, BlkifOp.BLKIF_OP_WRITE_BARRIER, BlkifOp.BLKIF_OP_FLUSH_DISKCACHE,
          BlkifOp.BLKIF_OP_RESERVED_1, BlkifOp.BLKIF_OP_DISCARD, BlkifOp.BLKIF_OP_INDIRECT],
        [0, 1, 2, 3, 4, 5, 6],
      );
    });
    it('statuses: OKAY 0, ERROR -1, EOPNOTSUPP -2', () => {
      assert.deepEqual([BlkifRsp.BLKIF_RSP_OKAY, BlkifRsp.BLKIF_RSP_ERROR, BlkifRsp.BLKIF_RSP_EOPNOTSUPP], [0, -1, -2]);
    });
    it('11 segments per request, 8 indirect pages, VDISK_* 1/2/4, DISCARD_SECURE 1', () => {
      assert.equal(BLKIF_MAX_SEGMENTS_PER_REQUEST, 11);
      assert.equal(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, 8);
      assert.deepEqual([VDISK_CDROM, VDISK_REMOVABLE, VDISK_READONLY, BLKIF_DISCARD_SECURE], [1, 2, 4, 1]);
    });
    it('entries are 112 bytes, 32 to a one-page ring', () => {
      assert.equal(BLKIF_RING_ENTRY_SIZE, 112);
      assert.equal(BLKIF_RING_SIZE, 32);
    });
    it('protocol names: native is x86_64-abi, the 32-bit one is x86_32-abi', () => {
      assert.equal(XEN_IO_PROTO_ABI_X86_64, 'x86_64-abi');
      assert.equal(XEN_IO_PROTO_ABI_X86_32, 'x86_32-abi');
      assert.equal(XEN_IO_PROTO_ABI_NATIVE, 'x86_64-abi');
    });
  });

  describe('blkif_request', () => {
    it('puts operation@0, nr_segments@1, handle@2, id@8, sector_number@16, seg[i]@24+8i', () => {
      const got = entry().fill(0xee);
      encodeBlkifRequest(got, READ);
      const want = entry();
      const w = dv(want);
      w.setUint8(0, 0);
      w.setUint8(1, 2);
      w.setUint16(2, 51712, true);
      w.setBigUint64(8, 0xfedcba9876543210n, true);
      w.setBigUint64(16, 0x1_0000_0002n, true);
      w.setUint32(24, 0x11223344, true);
      w.setUint8(28, 0);
      w.setUint8(29, 7);
      w.setUint32(32, 9, true);
      w.setUint8(36, 2);
      w.setUint8(37, 3);
      assert.deepEqual(got, want);
    });

    it('decodes back to what was encoded', () => {
      const b = entry();
      encodeBlkifRequest(b, READ);
      assert.deepEqual(decodeBlkifRequest(b), READ);
      assert.equal(blkifRequestOperation(b), BlkifOp.BLKIF_OP_READ);
    });

    it('keeps an nr_segments above 11 as written, decoding only the 11 slots the entry has', () => {
      const b = entry();
      encodeBlkifRequest(b, { ...READ, nr_segments: 200 });
      const r = decodeBlkifRequest(b);
      assert.equal(r.nr_segments, 200);
      assert.equal(r.seg.length, 11);
    });

    it('refuses to encode more than 11 segments (they would spill into the next entry)', () => {
      const seg = Array.from({ length: 12 }, () => ({ gref: 1, first_sect: 0, last_sect: 7 }));
      assert.throws(() => encodeBlkifRequest(entry(), { ...READ, nr_segments: 12, seg }), RangeError);
    });

    it('segment byte ranges: [first_sect*512, (last_sect+1)*512)', () => {
      assert.deepEqual(blkifSegmentBytes({ gref: 0, first_sect: 0, last_sect: 7 }), { offset: 0, length: 4096 });
      assert.deepEqual(blkifSegmentBytes({ gref: 0, first_sect: 2, last_sect: 3 }), { offset: 1024, length: 1024 });
    });
  });

  describe('validating a request a frontend wrote', () => {
    const seg = (first_sect: number, last_sect: number) => ({ gref: 5, first_sect, last_sect });
    const ROWS: readonly { row: string; req: Partial<BlkifRequestValue>; reason: RegExp | undefined }[] = [
      { row: 'read, 2 sound segments', req: {}, reason: undefined },
      { row: 'write, 11 segments', req: { operation: BlkifOp.BLKIF_OP_WRITE, nr_segments: 11, seg: Array(11).fill(seg(0, 7)) }, reason: undefined },
      { row: 'nr_segments 12', req: { nr_segments: 12, seg: Array(11).fill(seg(0, 7)) }, reason: /nr_segments 12/ },
      { row: 'nr_segments 255', req: { nr_segments: 255, seg: Array(11).fill(seg(0, 7)) }, reason: /nr_segments 255/ },
      { row: 'read with no segments', req: { nr_segments: 0, seg: [] }, reason: /no segments/ },
      { row: 'flush with no segments', req: { operation: BlkifOp.BLKIF_OP_FLUSH_DISKCACHE, nr_segments: 0, seg: [] }, reason: undefined },
      { row: 'barrier with no segments', req: { operation: BlkifOp.BLKIF_OP_WRITE_BARRIER, nr_segments: 0, seg: [] }, reason: undefined },
      { row: 'first_sect > last_sect', req: { seg: [seg(0, 7), seg(4, 3)] }, reason: /seg\[1\].*first_sect 4 > last_sect 3/ },
      { row: 'last_sect 8 (beyond the page)', req: { seg: [seg(0, 8), seg(0, 0)] }, reason: /seg\[0\].*last_sect 8/ },
      { row: 'last_sect 255', req: { seg: [seg(0, 7), seg(255, 255)] }, reason: /seg\[1\].*last_sect 255/ },
      { row: 'first_sect = last_sect = 7', req: { seg: [seg(7, 7), seg(0, 0)] }, reason: undefined },
      { row: 'discard (another layout)', req: { operation: BlkifOp.BLKIF_OP_DISCARD }, reason: /BLKIF_OP_DISCARD/ },
      { row: 'indirect (another layout)', req: { operation: BlkifOp.BLKIF_OP_INDIRECT }, reason: /BLKIF_OP_INDIRECT/ },
      { row: 'reserved operation 4', req: { operation: 4 }, reason: /unknown operation 4/ },
      { row: 'operation 200', req: { operation: 200 }, reason: /unknown operation 200/ },
    ];
    for (const r of ROWS) {
      it(`${r.row} -> ${r.reason ? 'invalid' : 'valid'}`, () => {
        // Through the bytes, as a backend sees it.
        const b = entry();
        encodeBlkifRequest(b, { ...READ, ...r.req });
        const why = validateBlkifRequest(decodeBlkifRequest(b));
        if (r.reason) assert.match(why ?? '(valid)', r.reason);
        else assert.equal(why, undefined);
      });
    }

    it('decoding and validating any 112 bytes never throws', () => {
      fc.assert(fc.property(fc.uint8Array({ minLength: 112, maxLength: 112 }), (bytes) => {
        const r = decodeBlkifRequest(bytes);
        const why = validateBlkifRequest(r);
        assert.ok(why === undefined || typeof why === 'string');
        validateBlkifRequestIndirect(decodeBlkifRequestIndirect(bytes));
        decodeBlkifRequestDiscard(bytes);
        decodeBlkifResponse(bytes);
      }), property(100));
    });
  });

  describe('blkif_request_discard and blkif_request_indirect', () => {
    it('discard: operation@0, flag@1, handle@2, id@8, sector_number@16, nr_sectors@24', () => {
      const b = entry().fill(0xee);
      const d = { operation: BlkifOp.BLKIF_OP_DISCARD, flag: BLKIF_DISCARD_SECURE, handle: 7, id: 3n, sector_number: 100n, nr_sectors: 2048n };
      encodeBlkifRequestDiscard(b, d);
      const v = dv(b);
      assert.deepEqual([v.getUint8(0), v.getUint8(1), v.getUint16(2, true)], [5, 1, 7]);
      assert.deepEqual([v.getBigUint64(8, true), v.getBigUint64(16, true), v.getBigUint64(24, true)], [3n, 100n, 2048n]);
      assert.ok(b.subarray(32).every((x) => x === 0));
      assert.deepEqual(decodeBlkifRequestDiscard(b), d);
    });

    it('indirect: indirect_op@1, u16 nr_segments@2, id@8, sector_number@16, handle@24, indirect_grefs@28', () => {
      const b = entry();
      const ind = {
        operation: BlkifOp.BLKIF_OP_INDIRECT, indirect_op: BlkifOp.BLKIF_OP_WRITE, nr_segments: 600, id: 9n,
        sector_number: 8n, handle: 51728, indirect_grefs: [70, 71, 0, 0, 0, 0, 0, 0],
      };
      encodeBlkifRequestIndirect(b, ind);
      const v = dv(b);
      assert.deepEqual([v.getUint8(0), v.getUint8(1), v.getUint16(2, true), v.getUint16(24, true)], [6, 1, 600, 51728]);
      assert.deepEqual([v.getUint32(28, true), v.getUint32(32, true)], [70, 71]);
      assert.deepEqual(decodeBlkifRequestIndirect(b), ind);
      assert.equal(blkifIndirectPages(600), 2);
    });

    const IND_ROWS: readonly [row: string, indirect_op: number, nr: number, max: number | undefined, reason: RegExp | undefined][] = [
      ['read, 512 segments', BlkifOp.BLKIF_OP_READ, 512, undefined, undefined],
      ['write, 4096 segments (8 full pages)', BlkifOp.BLKIF_OP_WRITE, 4096, undefined, undefined],
      ['4097 segments', BlkifOp.BLKIF_OP_WRITE, 4097, undefined, /4097/],
      ['more than the backend advertised', BlkifOp.BLKIF_OP_READ, 257, 256, /257 > the 256/],
      ['no segments', BlkifOp.BLKIF_OP_READ, 0, undefined, /no segments/],
      ['indirect flush', BlkifOp.BLKIF_OP_FLUSH_DISKCACHE, 1, undefined, /indirect_op 3/],
    ];
    for (const [row, indirect_op, nr, max, reason] of IND_ROWS) {
      it(`indirect ${row} -> ${reason ? 'invalid' : 'valid'}`, () => {
        const why = validateBlkifRequestIndirect({
          operation: BlkifOp.BLKIF_OP_INDIRECT, indirect_op, nr_segments: nr, id: 1n, sector_number: 0n, handle: 0,
          indirect_grefs: [1, 2, 3, 4, 5, 6, 7, 8],
        }, max);
        if (reason) assert.match(why ?? '(valid)', reason);
        else assert.equal(why, undefined);
      });
    }
  });

  describe('blkif_response', () => {
    it('is id@0 (u64), operation@8 (u8), status@10 (i16), 16 bytes, the rest of the entry untouched', () => {
      const b = entry().fill(0xee);
      encodeBlkifResponse(b, { id: 0x8000000000000001n, operation: BlkifOp.BLKIF_OP_WRITE, status: BlkifRsp.BLKIF_RSP_EOPNOTSUPP });
      const v = dv(b);
      assert.equal(v.getBigUint64(0, true), 0x8000000000000001n);
      assert.equal(v.getUint8(8), 1);
      assert.equal(v.getUint8(9), 0);
      assert.equal(v.getInt16(10, true), -2);
      assert.deepEqual([...b.subarray(10, 12)], [0xfe, 0xff]);
      assert.ok(b.subarray(16).every((x) => x === 0xee));
      assert.deepEqual(decodeBlkifResponse(b), { id: 0x8000000000000001n, operation: 1, status: -2 });
    });
  });

  describe('over a ring', () => {
    it('a request and its response travel through the same slot, id echoed', () => {
      const page = new Uint8Array(new SharedArrayBuffer(4096));
      const front = FrontRing.init(page, BLKIF_RING_ENTRY_SIZE);
      const back = BackRing.attach(page, BLKIF_RING_ENTRY_SIZE);
      assert.equal(front.size, BLKIF_RING_SIZE);
      encodeBlkifRequest(front.produceRequest()!, READ);
      assert.equal(front.pushRequestsAndCheckNotify(), true);
      const req = decodeBlkifRequest(back.consumeRequest()!);
      assert.equal(validateBlkifRequest(req), undefined);
      encodeBlkifResponse(back.produceResponse()!, { id: req.id, operation: req.operation, status: BlkifRsp.BLKIF_RSP_OKAY });
      assert.equal(back.pushResponsesAndCheckNotify(), true);
      assert.deepEqual(decodeBlkifResponse(front.consumeResponse()!), { id: READ.id, operation: 0, status: 0 });
    });
  });

  describe('vbd numbers (virtual-device)', () => {
    const ROWS: readonly [name: string, devid: number | undefined, canonical?: string][] = [
      ['xvda', 51712],
      ['xvdb', 51728],
      ['xvda1', 51713],
      ['xvdb2', (202 << 8) | (1 << 4) | 2],
      ['xvdp15', (202 << 8) | (15 << 4) | 15],
      ['xvdq', (1 << 28) | (16 << 8)],
      ['xvda16', (1 << 28) | 16],
      ['xvdz', (1 << 28) | (25 << 8)],
      ['xvdaa', (1 << 28) | (26 << 8)],
      ['xvdtq37', (1 << 28) | (536 << 8) | 37],
      ['xvda255', (1 << 28) | 255],
      ['xvda256', undefined],
      ['d0', 51712, 'xvda'],
      ['d0p0', 51712, 'xvda'],
      ['d1p2', (202 << 8) | (1 << 4) | 2, 'xvdb2'],
      ['d536p37', (1 << 28) | (536 << 8) | 37, 'xvdtq37'],
      ['d1048575', (1 << 28) | (1048575 << 8), 'xvdbgqcv'],
      ['d1048576', undefined],
      ['sda', 8 << 8],
      ['sdb3', (8 << 8) | (1 << 4) | 3],
      ['sdp15', (8 << 8) | (15 << 4) | 15],
      ['sdq', undefined],
      ['sda16', undefined],
      ['hda', 3 << 8],
      ['hdb', (3 << 8) | (1 << 6)],
      ['hda63', (3 << 8) | 63],
      ['hdc2', (22 << 8) | 2],
      ['hdd', (22 << 8) | (1 << 6)],
      ['hde', undefined],
      ['hda64', undefined],
      ['51712', 51712, 'xvda'],
      ['0xca00', 51712, 'xvda'],
      ['0145000', 51712, 'xvda'],
      ['xvd', undefined],
      ['xvdA', undefined],
      ['xvda01', undefined],
      ['vda', undefined],
      ['', undefined],
    ];
    for (const [name, devid, canonical] of ROWS) {
      it(`${JSON.stringify(name)} -> ${devid ?? 'not encodable'}`, () => {
        assert.equal(vdevFromName(name), devid);
        if (devid !== undefined) assert.equal(vdevName(devid), canonical ?? name);
      });
    }

    const UNNAMED: readonly [devid: number, why: string][] = [
      [2 << 28, 'reserved (2<<28 onwards)'],
      [0xffffffff, 'reserved'],
      [(9 << 8) | 1, 'deprecated major 9'],
      [0, 'deprecated'],
      [-1, 'not a u32'],
      [1.5, 'not an integer'],
    ];
    for (const [devid, why] of UNNAMED) {
      it(`${devid} has no name (${why})`, () => {
        assert.equal(vdevName(devid), undefined);
        assert.equal(vdevDecode(devid), undefined);
      });
    }

    it('every canonical name survives name -> number -> name', () => {
      const letters = (n: number): string => (n < 26 ? '' : letters(Math.floor(n / 26) - 1)) + String.fromCharCode(97 + (n % 26));
      fc.assert(fc.property(fc.integer({ min: 0, max: (1 << 20) - 1 }), fc.integer({ min: 0, max: 255 }), (disk, part) => {
        const name = `xvd${letters(disk)}${part || ''}`;
        assert.equal(vdevName(vdevFromName(name)!), name);
        assert.deepEqual(vdevDecode(vdevFromName(name)!), { type: 'xvd', disk, partition: part });
      }), property(100));
    });
  });
});
