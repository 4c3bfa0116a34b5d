// R14(a): @releaseDomain names no domain, so every watcher rescans the domain list. xenstored
// fires it once, when Xen reports the domain dying, and then forgets the domain. A destroyed
// domain lingers while dom0 still maps its memory - here xenconsoled's console page, which it
// lets go of on its own rescan of the same event. Before xen d3ec7b04d0 libxl counted a domain
// as dead only once it had vanished: if its rescan ran before xenconsoled's, it found the domain
// still dying, and the domain's final disappearance fired nothing, so an xl waiting for the
// death waited for ever. Which watcher runs first is up to the schedule.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'race-r14-releasedomain-lost',
  title: 'an xl waiting for a domain\'s death hears it although xenconsoled still maps the domain at @releaseDomain',
  tags: ['race', 'lifecycle', 'xenstore'],
  race: { id: 'R14', name: 'releaseDomain-lost (a: dying forgotten)', source: 'xen d3ec7b04d0' },
  variants: {
    fixed: { description: 'libxl counts a dying domain as dead' },
    buggy: {
      description: 'libxl counts a domain as dead only once it has vanished',
      dom0: { quirks: { toolstack: { deathOnlyWhenGone: true } } },
    },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  async run(s) {
    const id = await s.step('xl create guest', () => s.create('guest', guestConfig('guest')));
    let death: Promise<boolean> | undefined;
    await s.step('an xl waits for the guest\'s death while another destroys it', async () => {
      death = s.rt.toolstack<boolean>('wait-death', { domid: id, timeoutNs: 5e9 });
      await s.xl.destroy(id);
    });
    await s.step('the domain is gone', async () => {
      s.expect(!s.rt.host.domains.has(id), `domain ${id} still exists (${s.rt.host.domains.get(id)?.runState})`);
    });
    await s.step('the waiting xl heard of the death', async () => {
      s.expect(await death!, `no death reported for domain ${id} within 5 s: its @releaseDomain rescan found it dying, and no event followed when it went`);
    });
  },
});
