// XSA-352 and XSA-353 (2020), oxenstored. 352: a guest could change the owner of its nodes,
// giving them (and their quota cost) to dom0 or to another guest. 353: the root node's
// permissions were not checked for writes, removals, permission changes or listings, so a guest
// could add nodes at the top, chmod / or even `rm /`. Fixed: an unprivileged owner change is
// EACCES (C says EPERM), and / is dom0's like any node it owns.
// Unfixed daemon: the owner changes; /x353 appears, / becomes the guest's, `rm /` empties the store.
import { XsdSockmsgType as T } from '../hypervisor/public/io/xs_wire.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'xsa-352-353-ocaml-owner-and-root',
  title: 'XSA-352/353: under oxenstored a guest can neither give its nodes away nor touch the root node',
  tags: ['xsa', 'xenstore', 'permissions', 'ocaml'],
  variants: { fixed: { description: 'oxenstored', dom0: { profile: 'ocaml' } } },
  async run(s) {
    const id = await s.step('xl create guest', () => s.create('guest', guestConfig('guest')));
    const other = await s.step('xl create other', () => s.create('other', guestConfig('other')));
    const xs = (type: T, payload: string) => s.guest<{ payload?: string; error?: string }>('guest', { cmd: 'xs', type, payload });
    const mine = `/local/domain/${id}/data/mine`;
    await s.step('the guest creates data/mine (it owns it)', async () => {
      s.expect((await xs(T.XS_WRITE, 'data/mine\0v')).error === undefined, 'write data/mine');
      s.expect((await s.dump(mine))[0]?.perms[0] === `n${id}`, 'owned by the guest');
    });
    await s.step('XSA-352: giving data/mine to dom0 or to the other guest is EACCES; it stays the guest\'s', async () => {
      for (const owner of ['n0', `n${other}`, `b${other}`]) {
        const r = await xs(T.XS_SET_PERMS, `data/mine\0${owner}\0`);
        s.expect(r.error === 'EACCES', `SET_PERMS data/mine ${owner}: ${r.error ?? 'OK'}`);
      }
      s.expect((await s.dump(mine))[0]?.perms.join(',') === `n${id}`, `ACL now ${(await s.dump(mine))[0]?.perms.join(',')}`);
    });
    await s.step('XSA-353: writing under /, chmod /, listing / and rm / are all EACCES', async () => {
      const tries: [string, T, string][] = [
        ['write /x353', T.XS_WRITE, '/x353\0v'], ['mkdir /x353', T.XS_MKDIR, '/x353\0'],
        ['chmod /', T.XS_SET_PERMS, `/\0b${id}\0`], ['ls /', T.XS_DIRECTORY, '/\0'], ['rm /', T.XS_RM, '/\0'],
      ];
      for (const [what, type, payload] of tries) {
        const r = await xs(type, payload);
        s.expect(r.error === 'EACCES', `${what}: ${r.error ?? 'OK'}`);
      }
    });
    await s.step('the store is intact', async () => {
      s.expect(await s.read('/x353') === undefined, '/x353 was not created');
      s.expect((await s.dump('/'))[0]?.perms.join(',') === 'n0', 'the root is still dom0\'s');
      s.expect(await s.read(`/local/domain/${other}/name`) === 'other', 'the other guest\'s home survived');
    });
  },
});
