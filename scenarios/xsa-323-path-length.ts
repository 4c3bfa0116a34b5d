// XSA-323 (2020), oxenstored: the path-length limit was checked on the path as the guest spelled
// it, before its home prefix was added, so a guest could create a node through a relative path
// whose absolute name was over the limit - a node nobody, dom0 included, could then name. Fixed:
// the limit applies to the part after /local/domain/<domid>/, whatever the spelling, so relative
// and absolute names of one node always get the same answer.
// Unfixed daemon: the absolute reads of the 1024-byte node fail with EINVAL.
import { XsdSockmsgType } from '../hypervisor/public/io/xs_wire.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

/** oxenstored's shipped quota-path-max. */
const PATH_MAX = 1024;
const rel = (len: number): string => `data/${'p'.repeat(len - 'data/'.length)}`;

export default defineScenario({
  name: 'xsa-323-path-length',
  title: 'XSA-323: path-max applies to the relative part, so a node\'s relative and absolute names get the same answer',
  tags: ['xsa', 'xenstore', 'ocaml'],
  variants: { fixed: { description: 'oxenstored (quota-path-max 1024)', dom0: { profile: 'ocaml' } } },
  async run(s) {
    const id = await s.step('xl create guest', () => s.create('guest', guestConfig('guest')));
    const home = `/local/domain/${id}/`;
    const xs = (type: XsdSockmsgType, payload: string) => s.guest<{ payload?: string; error?: string }>('guest', { cmd: 'xs', type, payload });
    await s.step(`the guest writes a node by a ${PATH_MAX}-byte relative name, then reads it by both names`, async () => {
      const w = await xs(XsdSockmsgType.XS_WRITE, `${rel(PATH_MAX)}\0at the limit`);
      s.expect(w.error === undefined, `relative write: ${w.error}`);
      for (const name of [rel(PATH_MAX), home + rel(PATH_MAX)]) {
        const r = await xs(XsdSockmsgType.XS_READ, `${name}\0`);
        s.expect(r.payload === 'at the limit', `read by the ${name.length}-byte name: ${r.payload ?? r.error}`);
      }
      s.expect(await s.read(home + rel(PATH_MAX)) === 'at the limit', 'dom0 reads it by its absolute name');
    });
    await s.step(`one byte more is EINVAL by either name`, async () => {
      for (const name of [rel(PATH_MAX + 1), home + rel(PATH_MAX + 1)]) {
        const w = await xs(XsdSockmsgType.XS_WRITE, `${name}\0over`);
        s.expect(w.error === 'EINVAL', `write by the ${name.length}-byte name: ${w.error ?? 'OK'}`);
      }
    });
  },
});
