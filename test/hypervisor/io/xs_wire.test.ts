// xs_wire's incremental reader (XsWireDecoder): the one framing under xenstored's transports and
// the client library. Whatever the chunking, the same messages come out; it never holds more than
// one message; an oversized header is refused ('reject') or clamped to 4096 bytes ('clamp').
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  XENSTORE_PAYLOAD_MAX, XSD_SOCKMSG_SIZE, XsDecodeStep, type XsMessage, XsWireDecoder, type XsOversize,
  encodeHeader, encodeMessage,
} from '../../../hypervisor/public/io/xs_wire.ts';
import { chunks } from '../../helpers/chunks.ts';
import { property } from '../../helpers/property.ts';

const flat = (m: XsMessage) => [m.type, m.req_id, m.tx_id, Buffer.from(m.payload).toString('hex')];

/** Decodes `chunks` with push(); stops at a violation. */
function viaPush(oversize: XsOversize, chunks: Uint8Array[]): { out: unknown[]; violation: boolean; maxPending: number } {
  const d = new XsWireDecoder(oversize);
  const out: unknown[] = [];
  let maxPending = 0;
  for (const c of chunks) {
    let off = 0;
    while (off < c.length) {
      off += d.push(c, off);
      maxPending = Math.max(maxPending, d.pending);
      if (d.step === XsDecodeStep.MESSAGE) out.push(flat(d.message()));
      if (d.step === XsDecodeStep.VIOLATION) return { out, violation: true, maxPending };
    }
  }
  return { out, violation: false, maxPending };
}

/** Decodes `chunks` through the fill API, as the ring does (at most `n` bytes per copy). */
function viaFill(oversize: XsOversize, chunks: Uint8Array[], n: number): { out: unknown[]; violation: boolean } {
  const d = new XsWireDecoder(oversize);
  const out: unknown[] = [];
  for (const c of chunks) {
    let off = 0;
    while (off < c.length) {
      const k = Math.min(n, c.length - off, d.fillLength);
      d.fillBuffer.set(c.subarray(off, off + k), d.fillOffset);
      off += k;
      const step = d.filled(k);
      if (step === XsDecodeStep.MESSAGE) out.push(flat(d.message()));
      if (step === XsDecodeStep.VIOLATION) return { out, violation: true };
    }
  }
  return { out, violation: false };
}

const arbMsg = fc.record({
  type: fc.nat(),
  req_id: fc.nat(),
  tx_id: fc.nat(),
  payload: fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ minLength: 4000, maxLength: XENSTORE_PAYLOAD_MAX })),
});

describe('xs_wire: XsWireDecoder', () => {
  it('property: any chunking, through push() or the fill API, gives back the messages sent', () => {
    fc.assert(fc.property(fc.array(arbMsg, { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 10 }), fc.integer({ min: 1, max: 1100 }),
      (msgs, cuts, n) => {
        const data = Buffer.concat(msgs.map((m) => encodeMessage(m)));
        const want = msgs.map(flat);
        for (const oversize of ['reject', 'clamp'] as const) {
          const p = viaPush(oversize, chunks(data, cuts));
          assert.deepEqual(p.out, want);
          assert.equal(p.violation, false);
          assert.ok(p.maxPending <= XSD_SOCKMSG_SIZE + XENSTORE_PAYLOAD_MAX);
          assert.deepEqual(viaFill(oversize, chunks(data, cuts), n), { out: want, violation: false });
        }
      }), property(200));
  });

  it("'reject': the messages before an oversized header come out, then a violation and nothing more", () => {
    const first = encodeMessage({ type: 11, req_id: 1, tx_id: 0, payload: Buffer.from('a\0b') });
    const bad = encodeHeader({ type: 2, req_id: 2, tx_id: 0, len: XENSTORE_PAYLOAD_MAX + 1 });
    const after = encodeMessage({ type: 2, req_id: 3, tx_id: 0, payload: Buffer.from('x\0') });
    const r = viaPush('reject', [Buffer.concat([first, bad, after])]);
    assert.deepEqual(r.out, [[11, 1, 0, Buffer.from('a\0b').toString('hex')]]);
    assert.equal(r.violation, true);
    const d = new XsWireDecoder('reject');
    d.push(bad, 0);
    assert.equal(d.step, XsDecodeStep.VIOLATION);
    assert.deepEqual(d.violation, { type: 2, req_id: 2, tx_id: 0, len: XENSTORE_PAYLOAD_MAX + 1 });
    assert.equal(d.push(after, 0), 0);
    assert.equal(d.fillLength, 0);
  });

  it("'clamp': 0xFFFFFFFF reads 4096 payload bytes, the next 16 are a header", () => {
    const payload = Buffer.alloc(XENSTORE_PAYLOAD_MAX, 0x41);
    const next = encodeMessage({ type: 2, req_id: 9, tx_id: 0, payload: Buffer.from('x\0') });
    const r = viaPush('clamp', [encodeHeader({ type: 11, req_id: 8, tx_id: 0, len: 0xffffffff }), payload, next]);
    assert.deepEqual(r.out, [[11, 8, 0, payload.toString('hex')], [2, 9, 0, Buffer.from('x\0').toString('hex')]]);
  });

  it('a message lying whole inside a chunk is a view of it (no copy)', () => {
    const wire = encodeMessage({ type: 2, req_id: 1, tx_id: 0, payload: Buffer.from('abc') });
    const chunk = Buffer.alloc(wire.length); // not from the pool: its own ArrayBuffer
    chunk.set(wire);
    const d = new XsWireDecoder('reject');
    d.push(chunk, 0);
    const p = d.message().payload;
    assert.equal(p.buffer, chunk.buffer);
    assert.equal(p.byteOffset, chunk.byteOffset + XSD_SOCKMSG_SIZE);
  });
});
