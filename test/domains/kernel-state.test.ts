// The page a guest kernel leaves in its own memory for its resumed self: what it writes it reads
// back, and bytes that are not what it wrote (the page comes back from a file) are refused.
import assert from 'node:assert/strict';
import { KernelStateError, readKernelState, writeKernelState, type KernelState } from '../../domains/domU/kernel-state.ts';

const STATE: KernelState = {
  workload: [3, 4, 9],
  watches: [{ path: 'data/x', token: 'tok', reread: false, delayNs: 0, via: 'dev' as const }],
  blk: [{ device: 'vbd/51712', op: 1, sector: 40, sectors: 8, gfns: [12, 13] }],
  resumes: 2,
};

describe('guest kernel state page', () => {
  it('reads back what was written', () => {
    const page = new Uint8Array(4096).fill(0xee);
    writeKernelState(page, STATE);
    assert.deepEqual(readKernelState(page, 64), STATE);
  });

  it('refuses a page without the magic, with a bad length, bad JSON, or gfns outside memory', () => {
    const page = new Uint8Array(4096);
    assert.throws(() => readKernelState(page, 64), KernelStateError);
    writeKernelState(page, STATE);
    const v = new DataView(page.buffer);
    const len = v.getUint32(8, true);
    v.setUint32(8, 5000, true);
    assert.throws(() => readKernelState(page, 64), /length/);
    v.setUint32(8, len, true);
    assert.throws(() => readKernelState(page, 10), /workload|block request/, 'gfn 12 past a 10-page domain');
    page[12] = 0x7b + 1;
    assert.throws(() => readKernelState(page, 64), /JSON/);
    writeKernelState(page, { ...STATE, workload: [0] });
    assert.throws(() => readKernelState(page, 64), /workload/, 'the state page itself is not a workload page');
    writeKernelState(page, { ...STATE, workload: [5, 5] });
    assert.throws(() => readKernelState(page, 64), /workload/);
  });

  it('a state too big for its page is refused at suspend', () => {
    const watches = Array.from({ length: 200 }, (_, i) => ({ path: `data/${'p'.repeat(20)}${i}`, token: `t${i}`, reread: false, delayNs: 0, via: 'dev' as const }));
    assert.throws(() => writeKernelState(new Uint8Array(4096), { ...STATE, watches }), /does not fit/);
  });
});
