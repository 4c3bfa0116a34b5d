// Machine memory: Xen's heap as a pool of populated 2 MiB extents (pages the host OS has backed
// at boot), handed out whole and taken back with their last frame, never handing a dead
// domain's bytes to the next owner.
import assert from 'node:assert/strict';
import { EXTENT_PAGES, MachineMemory } from '../../hypervisor/memory.ts';
import type { DomId } from '../../hypervisor/public/xen.ts';

const asDomId = (n: number): DomId => n as DomId;

describe('machine memory: the heap of populated extents', () => {
  it('a populated heap hands out whole extents (zero) and takes nothing for a partial one', () => {
    const m = new MachineMemory();
    m.populate(2);
    assert.equal(m.heapExtents, 2);
    const a = m.allocateExtent(asDomId(1), EXTENT_PAGES)!;
    assert.equal(a.length, EXTENT_PAGES);
    assert.equal(m.heapExtents, 1);
    assert.ok(a.every((f) => f.sab === a[0].sab && f.bytes.every((b) => b === 0)));
    const part = m.allocateExtent(asDomId(1), 16)!;
    assert.equal(m.heapExtents, 1, 'a partial extent is a buffer of its own');
    assert.notEqual(part[0].sab, a[0].sab);
  });

  it("an extent goes back to the heap with its last frame and comes out zeroed for the next owner", () => {
    const m = new MachineMemory();
    const a = m.allocateExtent(asDomId(1), EXTENT_PAGES)!;
    for (const f of a) f.bytes.fill(0xa5);
    for (const f of a.slice(1)) m.release(f);
    assert.equal(m.heapExtents, 0, 'one frame still lives');
    m.release(a[0]);
    assert.equal(m.heapExtents, 1);
    const b = m.allocateExtent(asDomId(2), EXTENT_PAGES)!;
    assert.equal(b[0].sab, a[0].sab, 'the same buffer, reused');
    assert.ok(b.every((f) => f.owner === 2 && f.bytes.every((x) => x === 0)), "nothing of domain 1's left");
    assert.ok(b.every((f) => a.every((g) => g.mfn !== f.mfn)), 'new frame numbers');
  });

  it("a populated heap's frames (made at boot) get mfns in allocation order, as frames made at allocation do", () => {
    const numbers = (m: MachineMemory): number[] => {
      const single = m.allocate(asDomId(1))!;
      const a = m.allocateExtent(asDomId(1), EXTENT_PAGES)!;
      const part = m.allocateExtent(asDomId(2), 3)!;
      const b = m.allocateExtent(asDomId(2), EXTENT_PAGES)!;
      assert.ok(a.every((f) => f.owner === 1) && b.every((f) => f.owner === 2));
      assert.notEqual(a, b);
      return [single, ...a, ...part, ...b].map((f) => f.mfn);
    };
    const heap = new MachineMemory();
    heap.populate(2);
    const mfns = numbers(heap);
    assert.deepEqual(mfns, numbers(new MachineMemory()), 'the same numbers with no heap');
    assert.deepEqual(mfns, mfns.map((_, i) => mfns[0] + i), 'consecutive, in allocation order');
    assert.equal(heap.get(mfns[1 + 7])?.offset, 7 * 4096, 'found by mfn');
  });

  it('releasing a frame twice does not return its extent early', () => {
    const m = new MachineMemory();
    const a = m.allocateExtent(asDomId(1), EXTENT_PAGES)!;
    m.release(a[0]);
    m.release(a[0]);
    assert.equal(m.heapExtents, 0);
  });
});
