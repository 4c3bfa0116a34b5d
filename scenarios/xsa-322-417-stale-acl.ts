// XSA-322 and XSA-417 (CVE-2022-42320), C xenstored: an ACL entry must name the domain that had
// the domid when it was written, never a later one. 322: entries of a dead domain were honoured
// for the next domain with its domid; fixed by ignoring entries older than the domain they name.
// 417: an entry naming a domid that had no domain at all when it was written was kept as valid;
// fixed by asking the hypervisor at SET_PERMS and flagging such entries ignored. Here dom0 grants
// read to an existing guest and to domid 7, which has no domain yet. The existing guest reads; the
// guest that later gets domid 7 is refused; so is the guest that reuses the first one's domid.
// Unfixed daemon: domain 7 (417) and the reborn domain (322) read the node.
import { XsdSockmsgType } from '../hypervisor/public/io/xs_wire.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const LATE = 7;
const NODE = '/scenario/pre-granted';
const read = { cmd: 'xs' as const, type: XsdSockmsgType.XS_READ, payload: `${NODE}\0` };

export default defineScenario({
  name: 'xsa-322-417-stale-acl',
  title: 'XSA-322/417: read granted to a dead domain or to a domid before its domain exists gives later domains nothing',
  tags: ['xsa', 'xenstore', 'permissions'],
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const early = await s.step('xl create early', () => s.create('early', guestConfig('early')));
    await s.step(`dom0 grants read on ${NODE} to domain ${early} and to domid ${LATE}, which has no domain yet`, () =>
      s.rt.toolstackWrite(NODE, 'secret', ['n0', `r${early}`, `r${LATE}`]));
    await s.step(`xl create late with domid ${LATE}`, () => s.create('late', guestConfig('late', { domid: LATE })));
    await s.step('XSA-417: the domain that existed reads the node; the late one is refused', async () => {
      const e = await s.guest<{ payload?: string; error?: string }>('early', read);
      s.expect(e.payload === 'secret', `early reads ${NODE}: ${e.payload ?? e.error}`);
      const l = await s.guest<{ payload?: string; error?: string }>('late', read);
      s.expect(l.error === 'EACCES', `domain ${LATE} reads ${NODE}: ${l.payload ?? l.error} (the grant predates it)`);
    });
    await s.step('xl destroy early', () => s.xl.destroy(early));
    await s.step(`domain ${early} is freed`, async () => {
      for (let i = 0; i < 10 && s.rt.host.domains.has(early); i++) await s.xl.settled();
      s.expect(!s.rt.host.domains.has(early), `domain ${early} is still a zombie`);
    });
    await s.step(`xl create reborn with domid ${early}`, () => s.create('reborn', guestConfig('reborn', { domid: early })));
    await s.step('XSA-322: the reborn domain is refused what the dead one was granted', async () => {
      const r = await s.guest<{ payload?: string; error?: string }>('reborn', read);
      s.expect(r.error === 'EACCES', `domain ${early} (reborn) reads ${NODE}: ${r.payload ?? r.error}`);
    });
  },
});
