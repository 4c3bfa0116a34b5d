// xl destroy of a guest caught in the middle of its vbd handshake: the moment its frontend says
// Initialised (ring granted, event channel bound), the toolstack pauses it and removes every
// device by force. The backends must still close (unmapping the ring the dead frontend granted)
// and their directories vanish; nothing of the guest may survive; and a new guest that gets the
// same domid must find none of its predecessor's nodes and connect normally.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const XVDA = 51712;

export default defineScenario({
  name: 'guest-dies-during-handshake',
  title: 'a guest destroyed as its frontend reaches Initialised leaves no backend or node behind; its domid is reusable',
  tags: ['lifecycle', 'devices', 'teardown'],
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 }, hotplugDelayNs: [0, 5e6] },
  async run(s) {
    s.devicesAgree('reuse');
    const cfg = guestConfig('doomed', { disks: [{ vdev: 'xvda', target: 'doomed-root', sizeMiB: 8 }], vifs: [{}] });
    const id = await s.step('xl create -p doomed (xvda, vif 0), with a node of its own under data/', () =>
      s.create('doomed', cfg, { paused: true, guest: { data: { secret: 'the-old-guest' } } }));
    const fe = `/local/domain/${id}/device/vbd/${XVDA}/state`;
    await s.step('unpause it and xl destroy it the moment xvda\'s frontend is Initialised', async () => {
      // Caught in the trace as the frontend writes its state, not once the host is quiet: by then
      // the handshake would be over.
      const initialised = await s.runUntil(() => s.xl.unpause(id), (e) =>
        e.kind === 'xenbus' && e.role === 'frontend' && e.domid === id && e.path === fe && e.state === 3);
      s.expect(initialised, 'the frontend reached Initialised');
      await s.xl.destroy(id);
    });
    await s.step('the backends closed and their directories vanished', async () => {
      const be = s.trace.filter((e) => e.kind === 'xenbus' && e.role === 'backend' && e.device === `vbd/${id}/${XVDA}`).map((e) => e.state);
      s.expect(be.at(-1) === 6, `blkback's last state is Closed (saw ${be.join(' ')})`);
      // Every grant dom0 mapped from the dead guest (rings; refs 0 and 1 are console and store) was
      // unmapped - if blkback got as far as mapping the ring before the destroy came.
      const handles = (op: string): string => s.trace.filter((e) => e.kind === 'gnttab' && e.op === op && e.domid === 0 && e.dom === id
        && (e.ref as number) > 1 && e.status === 0).map((e) => e.handle as number).sort((a, b) => a - b).join(',');
      s.expect(handles('unmap_grant_ref') === handles('map_grant_ref'),
        `ring mappings undone: mapped [${handles('map_grant_ref')}], unmapped [${handles('unmap_grant_ref')}]`);
      for (const kind of ['vbd', 'vif', 'console']) {
        s.expect(await s.read(`/local/domain/0/backend/${kind}/${id}`) === undefined, `backend/${kind}/${id} is gone`);
      }
      s.expect(await s.read(`/local/domain/${id}`) === undefined, `/local/domain/${id} is gone`);
    });
    await s.step(`domain ${id} is freed`, async () => {
      // A destroyed domain lingers as a zombie until the last foreign mapping of its pages goes.
      for (let i = 0; i < 10 && s.rt.host.domains.has(id); i++) await s.xl.settled();
      s.expect(!s.rt.host.domains.has(id), `domain ${id} is still a zombie`);
    });
    await s.expectNoOrphans();
    await s.step(`xl create reuse with domid ${id}`, () => s.create('reuse', guestConfig('reuse', { ...cfg, name: 'reuse', domid: id })));
    await s.step('the new guest connects every device and sees nothing of the old one', async () => {
      for (const d of [`vbd/${XVDA}`, 'vif/0']) {
        s.expect(await s.waitFor(`/local/domain/${id}/device/${d}/state`, '4'), `${d} frontend Connected`);
      }
      s.expect(await s.read(`/local/domain/${id}/data/secret`) === undefined, 'the old guest\'s data/secret is not there');
      s.expect(await s.read(`/local/domain/${id}/name`) === 'reuse', 'the domain is the new one');
    });
  },
});
