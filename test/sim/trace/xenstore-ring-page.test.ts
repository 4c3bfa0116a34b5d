// A guest's xenstore ring page rebuilt from the trace: the bytes xs_wire.h puts there, at the
// offsets xenstored's indexes say, whatever pieces the messages were read or written in.
import assert from 'node:assert/strict';
import { findScenario } from '../../../scenarios/index.ts';
import { runScenario } from '../../../sim/scenario/run.ts';
import type { TraceRecord, XsRecord } from '../../../sim/trace/events.ts';
import { TraceReducer } from '../../../sim/trace/state-at.ts';
import { type RingHalfView, XenstoreRingPages, encodeTraced } from '../../../sim/trace/xenstore-ring-page.ts';

const xs = (dir: 'IN' | 'OUT', type: string, payload: string, req_id = 7, tx_id = 0): XsRecord =>
  ({ kind: 'xenstore', domid: 1, conn: 6, dir, type, req_id, tx_id, payload });
const bytesOf = (h: RingHalfView, at: number, n: number): number[] =>
  Array.from({ length: n }, (_, k) => parseInt(h.hex.slice(((at + k) & 1023) * 2, ((at + k) & 1023) * 2 + 2), 16));

describe('xenstore ring page from a trace', function () {

  it('encodes a traced message as xs_wire.h does: a 16-byte little-endian header, then the payload with its NULs', () => {
    const enc = encodeTraced(xs('IN', 'WATCH', 'control/shutdown\\0fe1\\0', 1))!;
    assert.equal(enc.bytes.length, 16 + 21);
    assert.deepEqual([...enc.bytes.subarray(0, 16)], [4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 21, 0, 0, 0]);
    assert.equal(Buffer.from(enc.bytes.subarray(16)).toString('latin1'), 'control/shutdown\0fe1\0');
    assert.equal(enc.header.type, 'XS_WATCH');
    assert.equal(encodeTraced(xs('IN', 'NO_SUCH_TYPE', '')), undefined);
  });

  it('places a request read over two batches where it lies, once it is whole', () => {
    const p = new XenstoreRingPages();
    const msg = xs('IN', 'READ', 'device/vbd\\0');
    p.ring(1, 'req', 10, 10, 10); // the header's first 10 bytes: not traced yet
    assert.equal(p.view(1)!.req.unsynced, undefined);
    p.message(msg);
    p.ring(1, 'req', 27, 27, 17);
    const req = p.view(1)!.req;
    assert.equal(req.unsynced, undefined);
    assert.deepEqual(bytesOf(req, 0, 27), [...encodeTraced(msg)!.bytes]);
    assert.deepEqual(req.messages.map((m) => [m.at, m.type, m.len]), [[0, 'XS_READ', 11]]);
    assert.deepEqual([req.cons, req.prod], [27, 27]);
  });

  it('places a reply written in two pieces across the end of rsp[]: it wraps to offset 0', () => {
    const p = new XenstoreRingPages();
    const reply = xs('OUT', 'READ', '4\\0');
    p.message(reply); // queued in xenstored: not on the page yet
    assert.deepEqual(bytesOf(p.view(1)!.rsp, 1016, 8), [0, 0, 0, 0, 0, 0, 0, 0]);
    p.ring(1, 'rsp', 1000, 1024, 8);
    p.ring(1, 'rsp', 1000, 1034, 10);
    const rsp = p.view(1)!.rsp;
    const want = [...encodeTraced(reply)!.bytes];
    assert.deepEqual(bytesOf(rsp, 1016, 18), want);
    assert.deepEqual(bytesOf(rsp, 0, 10), want.slice(8), 'masked with XENSTORE_RING_SIZE - 1');
    assert.deepEqual(rsp.messages.map((m) => m.at), [1016]);
    assert.equal(rsp.unsynced, undefined);
  });

  it('says so when the traced messages and xenstored\'s indexes disagree', () => {
    const p = new XenstoreRingPages();
    p.message(xs('IN', 'READ', 'a\\0'));
    p.ring(1, 'req', 9000, 9000, 9000);
    assert.match(p.view(1)!.req.unsynced!, /req_cons is 9000/);
    const q = new XenstoreRingPages();
    q.message(xs('OUT', 'READ', 'a\\0'));
    q.ring(1, 'rsp', 0, 40, 40);
    assert.match(q.view(1)!.rsp.unsynced!, /the trace queued 18/);
  });

  it('keeps in step with three guests booting: every header listed is the bytes at its offset', async () => {
    const r = await runScenario(findScenario('boot-three-guests')!, { seed: 2, faults: { spec: 'none' } });
    const red = new TraceReducer();
    let checked = 0;
    for (const e of r.trace as readonly TraceRecord[]) {
      red.apply(e);
      if (e.kind !== 'ring' || typeof e.peer !== 'number') continue;
      const page = red.ringPage(e.peer)!;
      for (const h of [page.req, page.rsp]) {
        assert.equal(h.unsynced, undefined, `dom${e.peer}: ${h.unsynced}`);
        for (const m of h.messages) {
          const b = bytesOf(h, m.at, 16);
          const u32 = (k: number): number => b[k] + b[k + 1] * 256 + b[k + 2] * 65536 + b[k + 3] * 16777216;
          assert.deepEqual([u32(0), u32(4), u32(8), u32(12)], [m.typeCode, m.req_id, m.tx_id, m.len]);
          checked++;
        }
      }
      const half = e.half === 'req' ? page.req : page.rsp;
      assert.deepEqual([half.cons, half.prod], [e.cons, e.prod], 'the indexes xenstored traced');
    }
    assert.ok(checked > 1000, `${checked} headers checked`);
  });
});
