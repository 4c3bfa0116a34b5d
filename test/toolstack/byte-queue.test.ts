// ByteQueue as a lent-chunk reader uses it (SaveStreamReader.push(chunk, true)): chunks pushed
// lent, takes of records that span them, keepUnread() and settle() after each push. What it
// hands out must be the stream's bytes in order, and the views of the assembly buffers it keeps
// cut records in must stay as they were through the next push's takes (the reader's contract asks
// less: the caller uses a push's events before its next push), while every lent chunk goes back.
import assert from 'node:assert/strict';
import { ByteQueue } from '../../domains/dom0/toolstack/migration/byte-queue.ts';

/** A small deterministic generator (xorshift32): the test's chunk and record sizes. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  };
}

describe('ByteQueue: lent chunks kept in reused assembly buffers', () => {
  for (const seed of [1, 2, 3, 42, 1234]) {
    it(`seed ${seed}: takes see the stream in order; views last through the next push's takes; lent chunks all go back`, () => {
      const rand = rng(seed);
      const total = 3 * 1024 * 1024;
      const stream = new Uint8Array(total);
      for (let i = 0; i < total; i++) stream[i] = (i * 2654435761) >>> 24;
      const q = new ByteQueue();
      let pushed = 0;
      let taken = 0;
      let lentOut = 0;
      // Record sizes from a few bytes to more than several chunks (records cut by many reads).
      let need = 1 + rand(300_000);
      /** Views handed out by the previous push, with what they held. */
      let previous: { view: Uint8Array; at: number }[] = [];
      const buffer = new Uint8Array(256 * 1024);
      while (taken < total) {
        const n = Math.min(1 + rand(buffer.length), total - pushed);
        if (n > 0) {
          // The transport's one buffer, lent: overwritten once it comes back.
          buffer.set(stream.subarray(pushed, pushed + n));
          lentOut++;
          q.push(buffer.subarray(0, n), () => {
            lentOut--;
            buffer.fill(0xee);
          });
          pushed += n;
        }
        const now: { view: Uint8Array; at: number }[] = [];
        while (q.length >= Math.min(need, total - taken) && taken < total) {
          const want = Math.min(need, total - taken);
          const v = q.take(want);
          assert.deepEqual(Buffer.from(v), Buffer.from(stream.subarray(taken, taken + want)), `take of ${want} at ${taken}`);
          now.push({ view: v, at: taken });
          taken += want;
          need = 1 + rand(rand(2) ? 300_000 : 5_000);
        }
        // The previous push's views are still as they were through this push's takes (what is
        // kept afresh at its end may reuse their buffer: by then their push is two pushes ago).
        for (const p of previous) assert.deepEqual(Buffer.from(p.view), Buffer.from(stream.subarray(p.at, p.at + p.view.length)), `view at ${p.at} overwritten`);
        q.keepUnread();
        q.settle();
        assert.equal(lentOut, 0, 'a lent chunk not given back after keepUnread() and settle()');
        // Views of lent chunks end with the push (copies are the caller's); assembly views stay.
        previous = now.filter((p) => p.view.buffer !== buffer.buffer);
        if (n === 0 && q.length < need) break;
      }
      assert.equal(taken, total);
    });
  }
});
