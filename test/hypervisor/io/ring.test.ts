// io/ring.h shared rings (spec/hypervisor-and-xenbus.md §3.1): the page header, ring sizes, the
// push/notify hold-off, final checks, flow control and the misbehaving-peer checks, with
// indexes starting anywhere in u32 space.
import assert from 'node:assert/strict';
import {
  BackRing, FrontRing, SRING_HEADER_SIZE, SringHeader, readSringIndexes, ringNeedsNotify, ringSize,
  sharedRingInit,
} from '../../../hypervisor/public/io/ring.ts';

const ENTRY = 112; // blkif-sized entries: 32 to a page
const SIZE = 32;

const newPage = (pages = 1): Uint8Array => new Uint8Array(new SharedArrayBuffer(4096 * pages));
const words = (page: Uint8Array): Uint32Array => new Uint32Array(page.buffer, page.byteOffset, 4);
const setWord = (page: Uint8Array, off: number, v: number): void => {
  Atomics.store(words(page), off / 4, v >>> 0);
};
const u32 = (n: number): number => n >>> 0;

/** A front end that has just initialised the page at `start`, and the back end attached to it. */
function pair(start = 0): { page: Uint8Array; front: FrontRing; back: BackRing } {
  const page = newPage();
  const front = FrontRing.init(page, ENTRY, start);
  const back = BackRing.attach(page, ENTRY);
  return { page, front, back };
}

describe('io/ring.h shared rings', () => {
  describe('ring size (__RING_SIZE): largest power of two of entries after the 64-byte header', () => {
    const ROWS: readonly [entry: number, pages: number, size: number][] = [
      [112, 1, 32], // blkif: 36 fit
      [12, 1, 256], // netif tx: 336 fit
      [8, 1, 256], // netif rx: 504 fit
      [64, 1, 32], // 63 fit
      [63, 1, 64], // exactly 64 fit
      [4032, 1, 1],
      [4033, 1, 0],
      [112, 2, 64], // 72 fit
      [112, 4, 128], // 145 fit
      [112, 16, 512], // multi-page blkif ring, ring-page-order 4
    ];
    for (const [entry, pages, size] of ROWS) {
      it(`${entry}-byte entries in ${pages} page(s) -> ${size}`, () => assert.equal(ringSize(entry, pages), size));
    }
  });

  describe('the shared header', () => {
    it('has req_prod@0, req_event@4, rsp_prod@8, rsp_event@12, private bytes@16, entries@64', () => {
      assert.deepEqual(
        [SringHeader.req_prod, SringHeader.req_event, SringHeader.rsp_prod, SringHeader.rsp_event, SringHeader.pvt, SRING_HEADER_SIZE],
        [0, 4, 8, 12, 16, 64],
      );
    });

    it('SHARED_RING_INIT: producers 0, events 1, private bytes and padding zeroed, entries untouched', () => {
      const page = newPage();
      page.fill(0xa5);
      sharedRingInit(page);
      const dv = new DataView(page.buffer);
      assert.deepEqual([0, 4, 8, 12].map((o) => dv.getUint32(o, true)), [0, 1, 0, 1]);
      assert.ok(page.subarray(16, 64).every((b) => b === 0));
      assert.ok(page.subarray(64).every((b) => b === 0xa5));
    });

    it('an init at a nonzero start puts both producers there and both events one past it', () => {
      const page = newPage();
      sharedRingInit(page, 0xffffffff);
      assert.deepEqual(readSringIndexes(page), { req_prod: 0xffffffff, req_event: 0, rsp_prod: 0xffffffff, rsp_event: 0 });
    });

    it('entry i lives at 64 + (i mod size) * entry size, for any free-running i', () => {
      const { front } = pair();
      for (const [i, off] of [[0, 64], [1, 176], [31, 64 + 31 * 112], [32, 64], [0xffffffff, 64 + 31 * 112]] as const) {
        assert.equal(front.slotOffset(i), off, `index ${i}`);
      }
      assert.equal(front.requestSlot(5).byteOffset, 64 + 5 * 112);
      assert.equal(front.requestSlot(5).length, 112);
    });
  });

  describe('push and check notify: notify iff old < event <= new (mod 2^32)', () => {
    const ROWS: readonly { row: string; old: number; pushed: number; event: number; notify: boolean }[] = [
      { row: 'first request on a fresh ring (event 1)', old: 0, pushed: 1, event: 1, notify: true },
      { row: 'batch crossing the event', old: 0, pushed: 5, event: 3, notify: true },
      { row: 'event exactly at the new producer', old: 4, pushed: 2, event: 6, notify: true },
      { row: 'event not reached yet', old: 4, pushed: 2, event: 7, notify: false },
      { row: 'event already passed (peer is busy and will look again)', old: 4, pushed: 2, event: 4, notify: false },
      { row: 'event far behind', old: 100, pushed: 1, event: 3, notify: false },
      { row: 'nothing pushed', old: 7, pushed: 0, event: 8, notify: false },
      { row: 'wrap: 0xffffffff -> 1 crossing event 0', old: 0xffffffff, pushed: 2, event: 0, notify: true },
      { row: 'wrap: 0xffffffff -> 1 with event 1', old: 0xffffffff, pushed: 2, event: 1, notify: true },
      { row: 'wrap: 0xffffffff -> 1 with event 2', old: 0xffffffff, pushed: 2, event: 2, notify: false },
      { row: 'wrap: event equal to the old producer', old: 0xffffffff, pushed: 2, event: 0xffffffff, notify: false },
      { row: 'wrap: 0xfffffff0 -> 0x10 crossing event 0xfffffffa', old: 0xfffffff0, pushed: 32, event: 0xfffffffa, notify: true },
      { row: 'a whole ring at once, event at its end', old: 0x7fffffe0, pushed: 32, event: 0x80000000, notify: true },
    ];

    for (const r of ROWS) {
      it(`${r.row}: requests -> ${r.notify ? 'notify' : 'no notify'}`, () => {
        const page = newPage();
        const front = FrontRing.init(page, ENTRY, r.old);
        setWord(page, SringHeader.req_event, r.event);
        for (let i = 0; i < r.pushed; i++) assert.ok(front.produceRequest());
        assert.equal(front.pushRequestsAndCheckNotify(), r.notify);
        assert.equal(readSringIndexes(page).req_prod, u32(r.old + r.pushed));
        assert.equal(ringNeedsNotify(r.old, u32(r.old + r.pushed), r.event), r.notify);
      });

      it(`${r.row}: responses -> ${r.notify ? 'notify' : 'no notify'}`, () => {
        const page = newPage();
        const front = FrontRing.init(page, ENTRY, r.old);
        const back = BackRing.attach(page, ENTRY);
        for (let i = 0; i < r.pushed; i++) front.produceRequest();
        front.pushRequests();
        for (let i = 0; i < r.pushed; i++) assert.ok(back.consumeRequest());
        for (let i = 0; i < r.pushed; i++) assert.ok(back.produceResponse());
        setWord(page, SringHeader.rsp_event, r.event);
        assert.equal(back.pushResponsesAndCheckNotify(), r.notify);
        assert.equal(readSringIndexes(page).rsp_prod, u32(r.old + r.pushed));
      });
    }

    it('a second push before the consumer re-arms does not notify again', () => {
      const { front } = pair();
      front.produceRequest();
      assert.equal(front.pushRequestsAndCheckNotify(), true);
      front.produceRequest();
      assert.equal(front.pushRequestsAndCheckNotify(), false);
    });
  });

  describe('final check before going idle', () => {
    it('with work pending: true, and the event is left alone', () => {
      const { page, front, back } = pair();
      front.produceRequest();
      front.pushRequests();
      setWord(page, SringHeader.req_event, 77);
      assert.equal(back.finalCheckForRequests(), true);
      assert.equal(readSringIndexes(page).req_event, 77);
    });

    it('with nothing pending: false, req_event = req_cons + 1, so the next push notifies', () => {
      const { page, front, back } = pair(10);
      for (let i = 0; i < 3; i++) front.produceRequest();
      assert.equal(front.pushRequestsAndCheckNotify(), true); // event 11 crossed
      while (back.consumeRequest());
      assert.equal(back.req_cons, 13);
      assert.equal(back.finalCheckForRequests(), false);
      assert.equal(readSringIndexes(page).req_event, 14);
      front.produceRequest();
      assert.equal(front.pushRequestsAndCheckNotify(), true);
      assert.equal(back.finalCheckForRequests(), true);
    });

    it('responses: false on an idle ring with rsp_event = rsp_cons + 1, then the next response notifies', () => {
      const { page, front, back } = pair();
      front.produceRequest();
      front.pushRequests();
      back.consumeRequest();
      assert.equal(front.finalCheckForResponses(), false);
      assert.equal(readSringIndexes(page).rsp_event, 1);
      back.produceResponse();
      assert.equal(back.pushResponsesAndCheckNotify(), true);
      assert.equal(front.finalCheckForResponses(), true);
      assert.ok(front.consumeResponse());
      assert.equal(front.finalCheckForResponses(), false);
      assert.equal(readSringIndexes(page).rsp_event, 2);
    });

    it('wraps the event past 2^32 (req_cons 0xffffffff -> req_event 0)', () => {
      const { page, front, back } = pair(0xfffffffe);
      front.produceRequest();
      front.pushRequests();
      back.consumeRequest();
      assert.equal(back.finalCheckForRequests(), false);
      assert.equal(readSringIndexes(page).req_event, 0);
      front.produceRequest();
      assert.equal(front.pushRequestsAndCheckNotify(), true);
    });
  });

  describe('flow control', () => {
    it('the front end fills exactly `size` slots, then is full until a response is consumed', () => {
      const { front, back } = pair();
      assert.equal(front.freeRequests(), SIZE);
      for (let i = 0; i < SIZE; i++) assert.ok(front.produceRequest(), `request ${i}`);
      assert.equal(front.isFull(), true);
      assert.equal(front.freeRequests(), 0);
      assert.equal(front.produceRequest(), undefined);
      front.pushRequests();
      // Consuming a request does not free its slot: the response still needs it.
      assert.ok(back.consumeRequest());
      assert.equal(front.isFull(), true);
      assert.ok(back.produceResponse());
      back.pushResponses();
      assert.equal(front.isFull(), true);
      assert.ok(front.consumeResponse());
      assert.equal(front.freeRequests(), 1);
    });

    it('the back end never counts more requests than it has slots left to answer in', () => {
      const { page, back } = pair();
      // A (misbehaving) front end publishes a whole ring's worth at once; the back end
      // consumes them all without answering...
      setWord(page, SringHeader.req_prod, SIZE);
      assert.equal(back.unconsumedRequests(), SIZE);
      for (let i = 0; i < SIZE; i++) back.consumeRequest();
      assert.equal(back.unconsumedRequests(), 0);
      assert.equal(back.consumeRequest(), undefined);
      // ...and answering one makes room for one more.
      back.produceResponse();
      setWord(page, SringHeader.req_prod, SIZE + 1);
      assert.equal(back.unconsumedRequests(), 1);
      assert.equal(back.overflow, false);
    });

    it('a response cannot be produced for a request not consumed', () => {
      const { back } = pair();
      assert.equal(back.produceResponse(), undefined);
    });

    it('requests and responses share the slot: the response lands where its request was', () => {
      const { front, back } = pair(5);
      const req = front.produceRequest()!;
      req[0] = 0x42;
      front.pushRequests();
      const seen = back.consumeRequest()!;
      assert.equal(seen[0], 0x42);
      const rsp = back.produceResponse()!;
      assert.equal(rsp.byteOffset, req.byteOffset);
      rsp[0] = 0x43;
      back.pushResponses();
      assert.equal(front.consumeResponse()![0], 0x43);
    });
  });

  describe('misbehaving peers (overflow checks)', () => {
    const BACK_ROWS: readonly [row: string, reqProd: (rspProdPvt: number) => number, overflow: boolean][] = [
      ['req_prod = rsp_prod_pvt + size (a full ring is legal)', (r) => r + SIZE, false],
      ['req_prod = rsp_prod_pvt + size + 1', (r) => r + SIZE + 1, true],
      ['req_prod far ahead (0x80000000)', (r) => r + 0x80000000, true],
      ['req_prod behind rsp_prod_pvt', (r) => r - 1, true],
    ];
    for (const [row, reqProd, overflow] of BACK_ROWS) {
      it(`back end, ${row}: ${overflow ? 'overflow, no work reported' : 'accepted'}`, () => {
        const { page, back } = pair(0xfffffff0);
        setWord(page, SringHeader.req_prod, reqProd(back.rsp_prod_pvt));
        const n = back.unconsumedRequests();
        assert.equal(back.overflow, overflow);
        assert.equal(back.requestOverflow(), overflow);
        assert.equal(n, overflow ? 0 : SIZE);
        if (overflow) {
          assert.equal(back.consumeRequest(), undefined);
          assert.equal(back.finalCheckForRequests(), false);
        }
      });
    }

    const FRONT_ROWS: readonly [row: string, rspProd: (rspCons: number) => number, overflow: boolean][] = [
      ['rsp_prod = rsp_cons + size', (c) => c + SIZE, false],
      ['rsp_prod = rsp_cons + size + 1', (c) => c + SIZE + 1, true],
      ['rsp_prod = rsp_cons - 1 (went backwards)', (c) => c - 1, true],
      ['rsp_prod = rsp_cons + 2^31', (c) => c + 0x80000000, true],
    ];
    for (const [row, rspProd, overflow] of FRONT_ROWS) {
      it(`front end, ${row}: ${overflow ? 'overflow, no responses reported' : 'accepted'}`, () => {
        const { page, front } = pair(3);
        setWord(page, SringHeader.rsp_prod, rspProd(front.rsp_cons));
        assert.equal(front.unconsumedResponses(), overflow ? 0 : SIZE);
        assert.equal(front.overflow, overflow);
        assert.equal(front.responseOverflow(), overflow);
        if (overflow) {
          assert.equal(front.consumeResponse(), undefined);
          assert.equal(front.finalCheckForResponses(), false);
        }
      });
    }

    it('overflow is sticky: the ring stays dead after the peer puts a sane value back', () => {
      const { page, front } = pair();
      setWord(page, SringHeader.rsp_prod, 1000);
      assert.equal(front.unconsumedResponses(), 0);
      setWord(page, SringHeader.rsp_prod, 0);
      assert.equal(front.overflow, true);
      assert.equal(front.unconsumedResponses(), 0);
    });

    it('a back end attaching to a ring whose req_prod is more than a ring ahead of rsp_prod refuses it', () => {
      const page = newPage();
      sharedRingInit(page, 500);
      setWord(page, SringHeader.req_prod, 500 + SIZE + 1);
      assert.equal(BackRing.attach(page, ENTRY).overflow, true);
      setWord(page, SringHeader.req_prod, 500 + SIZE);
      assert.equal(BackRing.attach(page, ENTRY).overflow, false);
    });
  });

  describe('indexes that do not start at 0', () => {
    const STARTS = [1, 31, 0x12345678, 0x7fffffff, 0xffffffff - SIZE, 0xfffffffb, 0xffffffff];
    for (const start of STARTS) {
      const wraps = start + 3 * SIZE > 2 ** 32 ? ', across the 2^32 wrap' : '';
      it(`start 0x${start.toString(16)}: three rings' worth of round trips${wraps}`, () => {
        const { page, front, back } = pair(start);
        assert.equal(back.req_cons, start);
        assert.equal(back.rsp_prod_pvt, start);
        assert.equal(back.overflow, false);
        const dv = new DataView(page.buffer);
        let sent = 0;
        let got = 0;
        let frontNotified = 0;
        while (got < 3 * SIZE) {
          // The front end sends bursts of up to 5 requests, each carrying its sequence number.
          for (let k = 0; k < 5 && !front.isFull(); k++) {
            const s = front.produceRequest()!;
            new DataView(s.buffer, s.byteOffset).setUint32(0, sent++, true);
          }
          if (front.pushRequestsAndCheckNotify()) {
            // The back end answers everything, echoing the number plus 1000.
            do {
              for (let s = back.consumeRequest(); s; s = back.consumeRequest()) {
                const n = new DataView(s.buffer, s.byteOffset).getUint32(0, true);
                const r = back.produceResponse()!;
                new DataView(r.buffer, r.byteOffset).setUint32(0, n + 1000, true);
              }
              if (back.pushResponsesAndCheckNotify()) frontNotified++;
            } while (back.finalCheckForRequests());
          }
          do {
            for (let s = front.consumeResponse(); s; s = front.consumeResponse()) {
              assert.equal(new DataView(s.buffer, s.byteOffset).getUint32(0, true), got + 1000);
              got++;
            }
          } while (front.finalCheckForResponses());
        }
        assert.equal(front.rsp_cons, u32(start + got));
        assert.equal(dv.getUint32(SringHeader.req_prod, true), u32(start + sent));
        assert.ok(frontNotified > 0);
        assert.equal(front.overflow || back.overflow, false);
      });
    }

    it('a front end attaching to a live ring picks up its indexes, outstanding requests included', () => {
      const { page, front, back } = pair(0xfffffffe);
      for (let i = 0; i < 4; i++) front.produceRequest();
      front.pushRequests();
      back.consumeRequest();
      back.produceResponse();
      back.pushResponses();
      const again = FrontRing.attach(page, ENTRY);
      assert.equal(again.req_prod_pvt, 2);
      assert.equal(again.rsp_cons, 0xffffffff);
      assert.equal(again.freeRequests(), SIZE - 3);
      assert.equal(again.unconsumedResponses(), 0);
      assert.equal(again.overflow, false);
    });

    it('a front end attaching to indexes more than a ring apart is flagged', () => {
      const page = newPage();
      sharedRingInit(page, 7);
      setWord(page, SringHeader.req_prod, 7 + SIZE + 1);
      assert.equal(FrontRing.attach(page, ENTRY).overflow, true);
    });
  });

  describe('multi-page rings', () => {
    it('a 4-page blkif ring has 128 entries spread over all four pages', () => {
      const page = newPage(4);
      const front = FrontRing.init(page, ENTRY, 0, 4);
      assert.equal(front.size, 128);
      assert.equal(front.slotOffset(127), 64 + 127 * 112);
      assert.ok(front.slotOffset(127) + 112 <= 4 * 4096);
      assert.throws(() => new FrontRing(newPage(1), ENTRY, 0, 4), RangeError);
    });
  });
});
