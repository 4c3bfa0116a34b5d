// R07 (XSA-350): blkback connected again whenever the frontend's state said Connected, even when
// already connected: a (hostile) frontend rewriting its state made the backend map the ring and
// bind the event channel a second time, leaking the first mapping.
import { XsdSockmsgType } from '../hypervisor/public/io/xs_wire.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'race-r07-double-disconnect',
  title: 'a frontend rewrites Connected; the backend must not connect twice',
  tags: ['race', 'vbd', 'xsa'],
  race: { id: 'R07', name: 'double-disconnect (XSA-350)', source: 'Linux 1c728719a4da' },
  variants: {
    fixed: { description: 'connect only when not yet Connected' },
    buggy: { description: 'connect on every Connected event', dom0: { quirks: { blkback: { reconnectWhenConnected: true } } } },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const id = await s.step('xl create guest with a disk', () => s.create('guest', guestConfig('guest', { disks: [{ vdev: 'xvda', target: 'r07' }] })));
    const fe = `/local/domain/${id}/device/vbd/51712`;
    await s.step('both ends Connected', async () => {
      s.expect(await s.waitFor(`/local/domain/0/backend/vbd/${id}/51712/state`, '4', 5e9), 'backend Connected');
    });
    await s.step('the guest writes Connected to its own state node again', async () => {
      const r = await s.guest<{ error?: string }>('guest', { cmd: 'xs', type: XsdSockmsgType.XS_WRITE, payload: `${fe}/state\u00004` } as never);
      s.expect(r.error === undefined, `the write went through (${r.error})`);
    });
    // dom0's live mappings of the guest's pages: one for the xenstore ring, one console, one blkif ring.
    const live = new Map<string, number>();
    for (const e of s.trace) {
      if (e.kind !== 'gnttab' || e.domid !== 0 || e.dom !== id || e.status !== 0) continue;
      const key = String(e.ref);
      if (e.op === 'map_grant_ref') live.set(key, (live.get(key) ?? 0) + 1);
      if (e.op === 'unmap_grant_ref' && e.ref !== undefined) live.set(key, (live.get(key) ?? 0) - 1);
    }
    const ringRef = await s.read(`${fe}/ring-ref`);
    const mapped = [...live].filter(([, n]) => n > 1);
    s.expect(mapped.length === 0, `blkback mapped grant ref ${mapped.map(([r, n]) => `${r} x${n}`).join(', ')} (ring-ref ${ringRef}) more than once`);
  },
});
