// R11: xenopsd's watch thread answers @introduceDomain by listing the domains and diffing the list
// with the one it knew; a new domain whose VM uuid is in the metadata DB gets the per-VM watches,
// any other is "not managed by us" and is remembered as seen. Before xenopsd f81ab3f4 VM_create
// stored the DB entry only after the domain and its xenstore tree existed. One worker starts two
// VMs back to back: if the watch thread handles the first VM's @introduceDomain while the second
// VM's domain exists but its DB entry does not, the second domain is filed as unmanaged, and as
// later rescans act only on differences, nobody ever watches that VM's nodes.
import { defineScenario } from '../sim/scenario/scenario.ts';
import { interestingPaths, type XenopsdState } from '../domains/dom0/toolstack/xenopsd.ts';

const VMS = ['11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222'];

export default defineScenario({
  name: 'race-r11-introduce-before-metadata',
  title: 'xenopsd starts two VMs while its watch thread rescans the domains on @introduceDomain',
  tags: ['race', 'lifecycle', 'xenstore', 'xenopsd'],
  race: { id: 'R11', name: 'introduce-before-metadata', source: 'xenopsd f81ab3f4 (CA-286115)' },
  variants: {
    fixed: { description: 'VM_create stores the VM metadata before creating the domain', dom0: { xenopsd: true } },
    buggy: {
      description: 'VM_create stores the VM metadata once the domain exists',
      dom0: { xenopsd: true, quirks: { xenopsd: { metadataAfterCreate: true } } },
    },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  async run(s) {
    s.invariant('every running domain of a VM in xenopsd\'s DB has its per-VM watches', async () => {
      const st = await s.rt.toolstack<XenopsdState>('xenopsd-state', {});
      const known = new Set(st.db.map((v) => v.uuid));
      const server = new Set(st.server.map((w) => `${w.path}\0${w.token}`));
      for (const [domid, d] of s.rt.host.domains) {
        if (domid === 0 || d.isShutDown || d.runState === 'dying' || d.runState === 'dead' || !known.has(d.handle)) continue;
        const missing = interestingPaths(domid, d.handle).filter((p) => !server.has(`${p}\0${p}`));
        if (missing.length) {
          return `domain ${domid} (VM ${d.handle}) is xenopsd's, but its watch thread does not watch ${missing.join(', ')}`
            + ' - it filed the domain as unmanaged before the VM\'s metadata was stored';
        }
      }
      return undefined;
    });
    await s.step('xenopsd: VM_create and VM_build of two VMs, queued on one worker', async () => {
      const ops: Promise<unknown>[] = [];
      for (const [i, uuid] of VMS.entries()) {
        ops.push(s.rt.toolstack('VM_create', { uuid, name: `vm${i + 1}` }));
        ops.push(s.rt.toolstack('VM_build', { uuid }));
      }
      await Promise.all(ops);
    });
    await s.step('both VMs run', async () => {
      const st = await s.rt.toolstack<XenopsdState>('xenopsd-state', {});
      s.expect(st.db.length === 2 && st.db.every((v) => v.domid !== undefined && s.rt.host.domains.has(v.domid)),
        `xenopsd's DB: ${JSON.stringify(st.db)}`);
    });
  },
});
