// R15 (XSA-322): dom0 granted domain 7 read access to a node; domain 7 went away and a new guest
// got domid 7. Before the fix xenstored honoured ACL entries by domid alone, so the newcomer read
// what was meant for its predecessor.
import { XsdSockmsgType } from '../hypervisor/public/io/xs_wire.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'race-r15-domid-reuse-inheritance',
  title: 'a new guest that reuses a domid must not inherit the old one\'s access',
  tags: ['race', 'xsa', 'xenstored'],
  race: { id: 'R15', name: 'domid-reuse-inheritance (XSA-322)', source: 'xen 496306324d (XSA-322), 755d3f9deb (XSA-419)' },
  variants: {
    fixed: { description: 'ACL entries of a domain newer than the node are ignored' },
    buggy: { description: 'ACL entries honoured by domid alone', dom0: { xenstored: { aclByDomidOnly: true } } },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const read = (role: string, path: string) =>
      s.guest<{ payload?: string; error?: string }>(role, { cmd: 'xs', type: XsdSockmsgType.XS_READ, payload: `${path}\u0000` } as never);
    const a = await s.step('xl create tenant A as domain 7', () => s.create('tenantA', guestConfig('tenantA', { domid: 7 })));
    await s.step('dom0 shares /shared/for-7 with domain 7', async () => {
      await s.rt.toolstackWrite('/shared/for-7', 'secret of tenant A', ['n0', `r${a}`]);
    });
    await s.step('tenant A reads it', async () => {
      s.expect((await read('tenantA', '/shared/for-7')).payload === 'secret of tenant A', 'A can read its node');
    });
    await s.step('xl destroy tenant A', () => s.xl.destroy(a));
    await s.step('xl create tenant B, which gets domid 7 again', async () => {
      const b = await s.create('tenantB', guestConfig('tenantB', { domid: 7 }));
      s.expect(b === 7, 'B reuses domid 7');
    });
    await s.step('tenant B tries to read A\'s node', async () => {
      const r = await read('tenantB', '/shared/for-7');
      s.expect(r.error === 'EACCES', `B read "${r.payload ?? ''}" - it inherited A's access (expected EACCES, got ${r.error ?? 'the value'})`);
    });
  },
});
