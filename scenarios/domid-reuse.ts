// Domids are reused. Guest A (domid 5) was granted read on a dom0 node and created a node outside
// its home, in a directory dom0 let it write. After A is destroyed, guest B is created with the
// same domid 5: the ACL entry naming 5 was A's and gives B nothing (XSA-322: xenstored ignores
// entries older than the domain they name), and A's stray node died with A (XSA-419) instead of
// being left to dom0 - or to B. The variant before-xsa-322 honours ACL entries by domid alone:
// B then reads A's grant on every schedule (a plain bug once a domid is reused, not a race, so it
// lives here rather than among the planted races).
import { XsdSockmsgType } from '../hypervisor/public/io/xs_wire.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const DOMID = 5;
const GRANTED = '/scenario/granted';
const SHARED = '/scenario/shared';
const read = (path: string) => ({ cmd: 'xs' as const, type: XsdSockmsgType.XS_READ, payload: `${path}\0` });

export default defineScenario({
  name: 'domid-reuse',
  title: 'a new guest reusing a dead guest\'s domid inherits neither its ACL grants nor its stray nodes',
  tags: ['xenstore', 'lifecycle', 'permissions'],
  variants: {
    fixed: { description: 'ACL entries of a domain newer than the node are ignored (XSA-322)' },
    'before-xsa-322': { description: 'ACL entries honoured by domid alone', dom0: { xenstored: { aclByDomidOnly: true } } },
  },
  expect: { fixed: 'pass', 'before-xsa-322': 'fail' },
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 } },
  async run(s) {
    await s.step(`xl create guest A with domid ${DOMID}`, () => s.create('a', guestConfig('guest-a', { domid: DOMID })));
    await s.step(`dom0 grants domain ${DOMID} read on ${GRANTED} and write on ${SHARED}`, async () => {
      await s.rt.toolstackWrite(GRANTED, 'meant-for-A', ['n0', `r${DOMID}`]);
      await s.rt.toolstackWrite(SHARED, '', ['n0', `b${DOMID}`]);
    });
    await s.step('A reads the granted node and creates a node of its own outside its home', async () => {
      const r = await s.guest<{ payload?: string; error?: string }>('a', read(GRANTED));
      s.expect(r.payload === 'meant-for-A', `A reads ${GRANTED}: ${JSON.stringify(r)}`);
      const w = await s.guest<{ results: string[] }>('a', { cmd: 'xs-batch', ops: [['write', `${SHARED}/a-stray`, 'left by A']] });
      s.expect(w.results[0] === 'OK', `A writes ${SHARED}/a-stray: ${w.results[0]}`);
      const owner = (await s.dump(`${SHARED}/a-stray`))[0]?.perms[0];
      s.expect(/^[nrwb]\d+$/.test(owner ?? '') && owner!.slice(1) === String(DOMID), `A owns its stray node (ACL ${owner})`);
    });
    await s.step('xl destroy A', () => s.xl.destroy(DOMID));
    await s.step(`domain ${DOMID} is freed`, async () => {
      for (let i = 0; i < 10 && s.rt.host.domains.has(DOMID); i++) await s.xl.settled();
      s.expect(!s.rt.host.domains.has(DOMID), `domain ${DOMID} is still a zombie`);
    });
    await s.step('A\'s stray node died with A (XSA-419)', async () => {
      s.expect(await s.read(`${SHARED}/a-stray`) === undefined, `${SHARED}/a-stray survived its owner`);
      s.expect(await s.read(SHARED) === '', `dom0's ${SHARED} itself stays`);
    });
    await s.step(`xl create guest B with the same domid ${DOMID}`, () => s.create('b', guestConfig('guest-b', { domid: DOMID })));
    await s.step('B cannot read what was granted to A (XSA-322)', async () => {
      const r = await s.guest<{ payload?: string; error?: string }>('b', read(GRANTED));
      s.expect(r.error === 'EACCES', `B reads ${GRANTED}: ${JSON.stringify(r)}`);
      const stray = await s.guest<{ payload?: string; error?: string }>('b', read(`${SHARED}/a-stray`));
      s.expect(stray.payload === undefined, `B reads A's stray node: ${JSON.stringify(stray)}`);
    });
    await s.expectNoOrphans();
  },
});
