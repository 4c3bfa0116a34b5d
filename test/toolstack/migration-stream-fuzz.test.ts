// Every byte of a migration stream comes from the other host, possibly hostile or damaged: whatever
// is mutated in a valid stream, the reader either restores it or refuses it with a StreamError -
// never another exception, never waiting on more bytes than it was given. Mutations aim at the
// headers and record headers (where lengths and types live), not at page contents.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { StreamError, concat } from '../../domains/dom0/toolstack/migration/sr-record.ts';
import { saveImageChunks, type SaveImage } from '../../domains/dom0/toolstack/migration/save-image.ts';
import { readSaveImage } from '../../domains/dom0/toolstack/migration/restore-image.ts';
import { SaveStreamReader, type SaveStreamReaderOptions } from '../../domains/dom0/toolstack/migration/stream-reader.ts';
import { EMULATOR, hvmImage, page, pvImage } from '../helpers/save-image.ts';

interface Target {
  readonly bytes: Uint8Array;
  /** Offsets where headers and record headers start (chunks of at most 64 bytes). */
  readonly hot: readonly number[];
}

function target(image: SaveImage): Target {
  const chunks = saveImageChunks(image);
  const hot: number[] = [];
  let at = 0;
  for (const c of chunks) {
    if (c.length <= 64) hot.push(at);
    at += c.length;
  }
  return { bytes: concat(chunks), hot };
}

const base = hvmImage(3);
const TARGETS: [string, Target, SaveStreamReaderOptions][] = [
  ['PV xl save', target(pvImage(3, { checkpoints: [{ rounds: [[page(0), page(1)], [page(1, 1)]], state: pvImage(3).checkpoints[0].state }] })), {}],
  ['HVM xl save', target({ ...base, checkpoints: [{ ...base.checkpoints[0], emulator: { ...EMULATOR, xenstore: [['physmap/1/size', '8']] } }] }), {}],
  ['HVM Remus', target({ ...base, streamType: 'remus', checkpoints: [base.checkpoints[0], base.checkpoints[0]] }), { streamType: 'remus' }],
];

type Mutation =
  | { kind: 'set'; hot: number; delta: number; bytes: number[] }
  | { kind: 'truncate'; at: number }
  | { kind: 'splice'; from: number; to: number; len: number };

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), hot: fc.nat(), delta: fc.integer({ min: 0, max: 23 }), bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 4 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('splice' as const), from: fc.nat(), to: fc.nat(), len: fc.integer({ min: 1, max: 64 }) }),
);

function mutate(t: Target, ms: readonly Mutation[]): Uint8Array {
  let b: Uint8Array = t.bytes.slice();
  for (const m of ms) {
    if (m.kind === 'set') {
      const at = Math.min(b.length - 1, t.hot[m.hot % t.hot.length] + m.delta);
      m.bytes.forEach((x, i) => {
        if (at + i < b.length) b[at + i] = x;
      });
    } else if (m.kind === 'truncate') {
      b = b.subarray(0, m.at % b.length);
    } else {
      // Copy a slice from one header to another: a plausible record in the wrong place.
      const from = t.hot[m.from % t.hot.length];
      const to = t.hot[m.to % t.hot.length];
      b = concat([b.subarray(0, to), b.subarray(from, from + m.len), b.subarray(to)]);
    }
  }
  return b;
}

function readsOrRefuses(b: Uint8Array, opts: SaveStreamReaderOptions, chunk: number): void {
  for (const read of [
    () => readSaveImage(b, opts),
    () => {
      const r = new SaveStreamReader(opts);
      for (let at = 0; at < b.length; at += chunk) r.push(b.subarray(at, at + chunk));
      r.end();
    },
  ]) {
    try {
      read();
    } catch (e) {
      assert(e instanceof StreamError, `not a StreamError: ${e instanceof Error ? e.stack : String(e)}`);
    }
  }
}

describe('migration stream fuzz: mutated streams are restored or refused, never crash', function () {
  for (const [name, t, opts] of TARGETS) {
    it(`${name}: header and record-header mutations, truncations, misplaced records`, () => {
      fc.assert(fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.integer({ min: 1, max: 5000 }), (ms, chunk) => {
        readsOrRefuses(mutate(t, ms), opts, chunk);
      }), { seed: 0x5a7e, numRuns: 1500 });
    });
  }

  it('the unmutated streams are restored (so the properties above exercise refusals, not a broken writer)', () => {
    for (const [name, t, opts] of TARGETS) assert.doesNotThrow(() => readSaveImage(t.bytes, opts), name);
  });
});
