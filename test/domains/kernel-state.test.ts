// The page a guest kernel leaves in its own memory for its resumed self: what it writes it reads
// back, and bytes that are not what it wrote (the page comes back from a file) are refused.
import assert from 'node:assert/strict';
import { KernelStateError, readKernelState, writeKernelState, type KernelState } from '../../domains/domU/kernel-state.ts';

const STATE: KernelState = {
  workload: [3, 4, 9],
  watches: [{ path: 'data/x', token: 'tok', reread: false, delayNs: 0, via: 'dev' as const }],
  blk: [{ device: 'vbd/51712', op: 1, sector: 40, sectors: 8, gfns: [12, 13] }],
  frontends: [{ name: 'vbd/51712', state: 4, vdev: 51712, ring: { gfn: 20, ref: 8, port: 5 }, disk: { sectors: 16384, sectorSize: 512, info: 0, flush: true } }],
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

  it("keeps a big guest's workload (every page, in order) as runs that fit the page", () => {
    const page = new Uint8Array(4096);
    const workload = [...Array.from({ length: 60_000 }, (_, i) => 100 + i), 7, 8, ...Array.from({ length: 200_000 }, (_, i) => 62_000 + i)];
    writeKernelState(page, { ...STATE, workload });
    assert.deepEqual(readKernelState(page, 262_144).workload, workload);
    assert.throws(() => readKernelState(page, 200_000), /workload/, 'pages past the domain');
  });

  it('refuses frontends that are not vbds, named twice, or whose ring page is outside memory or a workload page', () => {
    const page = new Uint8Array(4096);
    const [f] = STATE.frontends;
    const bad = (frontends: unknown[], why: RegExp): void => {
      writeKernelState(page, { ...STATE, frontends } as KernelState);
      assert.throws(() => readKernelState(page, 64), why);
    };
    bad([{ ...f, name: '../vbd/1' }], /frontend/);
    bad([f, f], /frontend/);
    bad([{ ...f, state: 9 }], /frontend/);
    bad([{ ...f, ring: { ...f.ring, gfn: 64 } }], /ring/);
    bad([{ ...f, ring: { ...f.ring, gfn: 3 } }], /workload/);
    bad([{ ...f, disk: { ...f.disk, flush: 1 } }], /disk/);
  });

  it('a state too big for its page is refused at suspend', () => {
    const watches = Array.from({ length: 200 }, (_, i) => ({ path: `data/${'p'.repeat(20)}${i}`, token: `t${i}`, reread: false, delayNs: 0, via: 'dev' as const }));
    assert.throws(() => writeKernelState(new Uint8Array(4096), { ...STATE, watches }), /does not fit/);
  });
});
