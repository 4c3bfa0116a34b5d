// XSA-325 (2020), C xenstored: when a guest broke the ring protocol, its connection was freed
// on the spot - @releaseDomain fired while the domain was alive, and when the domain really died
// nothing fired any more, so the toolstack never cleaned it up (a zombie). Fixed: the connection
// is only ignored; the domain object stays until the hypervisor reports its death, and
// @releaseDomain fires then.
// Unfixed daemon: an early @releaseDomain here, none at the crash; xl never sees SHUTDOWN_crash.
import { XenstoreError, XsdSockmsgType } from '../hypervisor/public/io/xs_wire.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'xsa-325-bad-client-release',
  title: 'XSA-325: a guest that breaks its ring is ignored, and @releaseDomain fires only when it really dies',
  tags: ['xsa', 'xenstore', 'lifecycle'],
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const id = await s.step('xl create bad', () => s.create('bad', guestConfig('bad')));
    const releases = (from: number): number => s.trace.slice(from).filter((e) => e.kind === 'xenstore' && e.dir === 'OUT'
      && e.type === 'WATCH_EVENT' && String(e.payload).startsWith('@releaseDomain\\0')).length;
    const broken = s.trace.length;
    await s.step('the guest writes a request header announcing 5000 bytes', async () => {
      const r = await s.guest<{ error: number }>('bad', { cmd: 'xs-ring-corrupt' });
      s.expect(r.error === XenstoreError.XENSTORE_ERROR_PROTO, `the ring's error field is ${r.error}, expected PROTO`);
    });
    await s.step('xenstored ignores the guest from now on', async () => {
      const r = await s.guest<{ timedOut?: boolean }>('bad', { cmd: 'xs', type: XsdSockmsgType.XS_READ, payload: 'name\0', timeoutNs: 1e9 });
      s.expect(r.timedOut === true, `a request after the violation was answered: ${JSON.stringify(r)}`);
    });
    await s.step('but the domain lives on: no @releaseDomain, its nodes stay', async () => {
      s.expect(releases(broken) === 0, `@releaseDomain fired ${releases(broken)} times for a live domain`);
      s.expect(await s.read(`/local/domain/${id}/name`) === 'bad', 'its home is still there');
      s.expect(s.xl.list().some((d) => d.id === id), 'xl still lists it');
    });
    const crash = s.trace.length;
    await s.step('the guest crashes (SCHEDOP_shutdown crash); on_crash=destroy', () => s.guest('bad', { cmd: 'shutdown', reason: 'crash' }));
    s.expect(releases(crash) > 0, '@releaseDomain fired when the domain died');
    s.expect(s.xl.events.some((e) => e.domid === id && e.reason === 'SHUTDOWN_crash'), 'xl saw the crash');
    s.expect(!s.rt.host.domains.has(id), 'the domain was destroyed');
    await s.expectNoOrphans();
  },
});
