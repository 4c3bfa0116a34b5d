// XSA-481 (CVE-2026-23555), C xenstored: a path ending in `/local/domain/` (an empty domid
// component) went through the node lookup with errno left at 0; the daemon then hit an
// assertion or spun. Fixed: such a name is invalid - EINVAL - like any name with a trailing
// slash, and the daemon goes on serving the guest and everyone else.
// Unfixed daemon: it aborts (or busy-loops) at the first request; every later request hangs.
import { XsdSockmsgType as T } from '../hypervisor/public/io/xs_wire.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'xsa-481-empty-domid-component',
  title: 'XSA-481: requests naming /local/domain/ are EINVAL and xenstored keeps serving',
  tags: ['xsa', 'xenstore'],
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    await s.step('xl create guest', () => s.create('guest', guestConfig('guest')));
    await s.step('xl create bystander', () => s.create('bystander', guestConfig('bystander')));
    const xs = (role: string, type: T, payload: string) =>
      s.guest<{ payload?: string; error?: string; timedOut?: boolean }>(role, { cmd: 'xs', type, payload, timeoutNs: 1e9 });
    await s.step('READ, WRITE, MKDIR, RM, DIRECTORY and GET_PERMS of /local/domain/ are EINVAL', async () => {
      const tries: [string, T, string][] = [
        ['READ', T.XS_READ, '/local/domain/\0'], ['WRITE', T.XS_WRITE, '/local/domain/\0x'], ['MKDIR', T.XS_MKDIR, '/local/domain/\0'],
        ['RM', T.XS_RM, '/local/domain/\0'], ['DIRECTORY', T.XS_DIRECTORY, '/local/domain/\0'], ['GET_PERMS', T.XS_GET_PERMS, '/local/domain/\0'],
      ];
      for (const [what, type, payload] of tries) {
        const r = await xs('guest', type, payload);
        s.expect(r.error === 'EINVAL', `${what} /local/domain/: ${JSON.stringify(r)}`);
      }
    });
    await s.step('the guest, another guest and dom0 are still served', async () => {
      s.expect((await xs('guest', T.XS_READ, 'name\0')).payload === 'guest', 'the guest reads its name');
      s.expect((await xs('bystander', T.XS_READ, 'name\0')).payload === 'bystander', 'the bystander reads its name');
      s.expect(await s.read(`/local/domain/${s.domid('guest')}/name`) === 'guest', 'dom0 reads');
    });
  },
});
