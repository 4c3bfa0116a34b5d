// xl.cfg's vcpus builds a domain with that many vCPUs, whichever runner carries it: Xen's
// getdomaininfo, xl list, the guest kernel and the hypervisor's per-vCPU state all say the same.
import assert from 'node:assert/strict';
import { Domctl } from '../../hypervisor/public/domctl.ts';
import { Errno, Hypercall } from '../../hypervisor/public/xen.ts';
import { HostRuntime, type HostOptions } from '../../sim/host-runtime.ts';
import { bootHost } from '../helpers/host.ts';
import type { VcpuReport } from '../helpers/vcpu-probe.ts';

const PROBE = new URL('../helpers/vcpu-probe.ts', import.meta.url).href;

function maxVcpuId(rt: HostRuntime, domid: number): number {
  const info = rt.hypercalls.call(0, Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_getdomaininfo, domain: domid }).ret as { max_vcpu_id: number };
  return info.max_vcpu_id;
}

const RUNNERS: { name: string; opts: HostOptions }[] = [
  { name: 'a thread of its own (free-running)', opts: { seed: 1 } },
  { name: 'a thread of its own (lockstep)', opts: { seed: 1, mode: 'lockstep' } },
  { name: 'packed on a pool thread', opts: { seed: 1, pool: 1 } },
  { name: 'inline on the hypervisor\'s thread (lockstep)', opts: { seed: 1, mode: 'lockstep', inline: true } },
];

describe('vCPUs: a domain has the vCPUs its config asks for', function () {
  for (const { name, opts } of RUNNERS) {
    it(`two vCPUs, ${name}: getdomaininfo, the kernel and EVTCHNOP_bind_vcpu agree`, async () => {
      const rt = new HostRuntime(opts);
      try {
        await rt.bootDom0();
        const built = await rt.buildGuest({ vcpus: 2, paused: true, program: { module: PROBE } });
        const report = new Promise<VcpuReport>((resolve) => rt.control(built.domid).on('message', (m: VcpuReport) => {
          if (m.cmd === 'vcpus') resolve(m);
        }));
        await rt.unpause(built.domid);
        const r = await report;
        assert.equal(maxVcpuId(rt, built.domid), 1, 'XEN_DOMCTL_getdomaininfo: max_vcpu_id');
        assert.equal(r.vcpus, 2, 'the kernel boots with two');
        assert.deepEqual(r.bindVcpu, [0, 0, -Errno.ENOENT], 'vCPUs 0 and 1 exist, 2 does not');
      } finally {
        await rt.shutdown();
      }
    });
  }

  it('xl create with vcpus = 2: xl list and getdomaininfo both say 2', async () => {
    const { rt, xl } = await bootHost(1);
    try {
      const domid = await xl.create({ name: 'two', vcpus: 2 });
      assert.equal(maxVcpuId(rt, domid), 1);
      assert.equal(xl.list().find((row) => row.id === domid)?.vcpus, 2);
      assert.equal(xl.list()[0].vcpus, maxVcpuId(rt, 0) + 1, 'Domain-0 as Xen says too');
    } finally {
      await rt.shutdown();
    }
  });

  it('more vCPUs than shared_info holds (33) is refused with why, and leaves no domain', async () => {
    const { rt, xl } = await bootHost(1);
    try {
      await assert.rejects(xl.create({ name: 'wide', vcpus: 33 }), /vcpus = 33: this host gives a domain at most 32 vCPUs/);
      assert.deepEqual([...rt.host.domains.keys()], [0]);
    } finally {
      await rt.shutdown();
    }
  });
});
