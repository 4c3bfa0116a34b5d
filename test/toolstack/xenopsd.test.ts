// The xenopsd-like toolstack in dom0: its worker creates, builds and destroys VMs' domains, and its
// watch thread, told only that some domain came or went, rescans the domain list and watches the
// nodes of exactly the running domains whose VM is in its metadata DB.
import assert from 'node:assert/strict';
import { interestingPaths, type XenopsdState } from '../../domains/dom0/toolstack/xenopsd.ts';
import { bootHost, SEEDS } from '../helpers/host.ts';
import type { HostRuntime } from '../../sim/host-runtime.ts';

const VM = 'abcdefab-cdef-4abc-8def-abcdefabcdef';

const state = (rt: HostRuntime): Promise<XenopsdState> => rt.toolstack<XenopsdState>('xenopsd-state', {});

/** The watch thread's watches in xenstored, other than @introduceDomain and @releaseDomain. */
async function perVmWatches(rt: HostRuntime): Promise<string[]> {
  await rt.quiesce();
  return (await state(rt)).server.filter((w) => !w.path.startsWith('@')).map((w) => `${w.path}|${w.token}`).sort();
}

describe('xenopsd: VM lifecycle and the watch thread', function () {
  this.timeout(60_000);

  for (const seed of SEEDS) {
    it(`seed ${seed}: VM_create + VM_build give a domain with the VM's uuid, its tree, and the per-VM watches; VM_destroy takes them all away`, async () => {
      const { rt, xl } = await bootHost(seed, { xenopsd: true });
      try {
        assert.deepEqual(await perVmWatches(rt), [], 'no VM yet, no per-VM watch');
        const domid = await rt.toolstack<number>('VM_create', { uuid: VM, name: 'web' });
        await rt.toolstack('VM_build', { uuid: VM });
        assert.equal(rt.host.domains.get(domid)?.handle, VM, 'the domain handle is the VM uuid');
        const nodes = new Map((await xl.dump('/')).map((n) => [n.path, n.value]));
        assert.equal(nodes.get(`/local/domain/${domid}/vm`), `/vm/${VM}`);
        assert.equal(nodes.get(`/vm/${VM}/domains/${domid}`), `/local/domain/${domid}`);
        assert.equal(nodes.has(`/local/domain/${domid}/action-request`), false, 'a built domain has no pending action-request');
        assert.deepEqual(await perVmWatches(rt), interestingPaths(domid, VM).map((p) => `${p}|${p}`).sort());
        assert.deepEqual((await state(rt)).db, [{ uuid: VM, domid }]);

        await rt.toolstack('VM_destroy', { uuid: VM });
        assert.equal(rt.host.domains.has(domid), false, 'the domain is gone');
        const after = (await xl.dump('/')).map((n) => n.path);
        assert.deepEqual(after.filter((p) => p.startsWith(`/local/domain/${domid}`) || p.startsWith(`/vm/${VM}/domains/`)), []);
        assert.deepEqual(await perVmWatches(rt), [], 'the watch thread let go of the dead domain');
        assert.deepEqual((await state(rt)).db, []);
      } finally {
        await rt.shutdown();
      }
    });
  }

  it('a domain xenopsd did not create (xl create) is not managed: no per-VM watches for it', async () => {
    const { rt, xl, trace } = await bootHost(1, { xenopsd: true });
    try {
      const domid = await xl.create({ name: 'other', memory: 128, vcpus: 1, type: 'pv' });
      await xl.settled();
      assert.deepEqual(await perVmWatches(rt), []);
      assert.ok(trace.some((e) => e.kind === 'xenopsd' && e.event === 'unmanaged' && e.dom === domid), 'the watch thread saw the domain and let it be');
    } finally {
      await rt.shutdown();
    }
  });

  it('refuses what is not a VM operation on a VM uuid, and a VM it has no domain for', async () => {
    const { rt } = await bootHost(1, { xenopsd: true });
    try {
      await assert.rejects(rt.toolstack('VM_create', { uuid: 'not-a-uuid' }), /bad VM uuid/);
      await assert.rejects(rt.toolstack('VM_frobnicate', { uuid: VM }), /unknown xenopsd operation VM_frobnicate/);
      await assert.rejects(rt.toolstack('VM_destroy', { uuid: VM }), /has no domain/);
      await rt.toolstack('VM_create', { uuid: VM });
      await assert.rejects(rt.toolstack('VM_create', { uuid: VM }), /already has a domain/);
    } finally {
      await rt.shutdown();
    }
  });
});
