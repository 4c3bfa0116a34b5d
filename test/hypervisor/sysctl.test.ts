// XEN_SYSCTL_getdomaininfolist: how a toolstack lists the host (xenopsd's rescan on
// @introduceDomain / @releaseDomain); the domain handle it reports is the one given at
// XEN_DOMCTL_createdomain.
import assert from 'node:assert/strict';
import { EventChannels } from '../../hypervisor/event-channel.ts';
import { GrantTables } from '../../hypervisor/grant-table.ts';
import { Host } from '../../hypervisor/host.ts';
import { Hypercalls } from '../../hypervisor/hypercall.ts';
import { Domctl } from '../../hypervisor/public/domctl.ts';
import { Sysctl } from '../../hypervisor/public/sysctl.ts';
import { Errno, Hypercall } from '../../hypervisor/public/xen.ts';

function host(): { hc: Hypercalls; h: Host } {
  const h = new Host();
  h.createDomain({ domid: 0, privileged: true });
  return { h, hc: new Hypercalls(h, new EventChannels(h), new GrantTables(h)) };
}

const list = (hc: Hypercalls, caller: number, first = 0, max = 100): unknown =>
  hc.call(caller, Hypercall.__HYPERVISOR_sysctl, { cmd: Sysctl.XEN_SYSCTL_getdomaininfolist, first_domain: first, max_domains: max }).ret;

describe('XEN_SYSCTL_getdomaininfolist', () => {
  it('lists domains from first_domain up, in domid order, at most max_domains, each with its handle', () => {
    const { hc } = host();
    const uuid = '0a0b0c0d-0000-4000-8000-000000000001';
    const made = hc.call(0, Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_createdomain, handle: uuid }).ret as { domid: number };
    hc.call(0, Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_createdomain });
    const all = list(hc, 0) as { domain: number; handle: string; dying: number; shutdown: boolean }[];
    assert.deepEqual(all.map((d) => d.domain), [0, made.domid, made.domid + 1]);
    assert.equal(all[1].handle, uuid);
    assert.equal(all[2].handle, '00000000-0000-0000-0000-000000000000', 'no handle given: all zeros');
    assert.deepEqual((list(hc, 0, made.domid, 1) as { domain: number }[]).map((d) => d.domain), [made.domid]);
    const info = hc.call(0, Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_getdomaininfo, domain: made.domid }).ret as { handle: string };
    assert.equal(info.handle, uuid, 'getdomaininfo reports the same handle');
  });

  it('a domain that went is no longer listed', () => {
    const { hc } = host();
    const { domid } = hc.call(0, Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_createdomain }).ret as { domid: number };
    hc.call(0, Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_destroydomain, domain: domid });
    assert.deepEqual((list(hc, 0) as { domain: number }[]).map((d) => d.domain), [0]);
  });

  it('is for the control domain only, and other sysctls are not implemented', () => {
    const { hc } = host();
    const { domid } = hc.call(0, Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_createdomain }).ret as { domid: number };
    assert.equal(list(hc, domid), -Errno.EPERM);
    assert.equal(hc.call(0, Hypercall.__HYPERVISOR_sysctl, { cmd: 1 }).ret, -Errno.ENOSYS);
  });
});
