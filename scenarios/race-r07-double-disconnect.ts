// R07 (XSA-350): blkback starts the ring's kernel thread (xenblkd) as it goes Connected, and the
// thread first runs whenever the scheduler says. A frontend that says Closed while blkback is
// connecting makes blkback disconnect right after and stop the thread; if it had not run yet it
// never clears the ring's handle to itself, so before the fix the handle outlived the thread and
// the next disconnect (the frontend closing again, or saying Connected again) stopped a freed
// task - a guest crashing dom0. Whether blkback handles the Closed before its thread got the CPU
// is up to the schedule; on most schedules the thread ran first.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const XVDA = 51712;

export default defineScenario({
  name: 'race-r07-double-disconnect',
  title: 'a frontend says Closed while its backend connects; the backend stops each ring thread once',
  tags: ['race', 'vbd', 'xsa'],
  race: { id: 'R07', name: 'double-disconnect (XSA-350)', source: 'Linux 1c728719a4da' },
  variants: {
    fixed: { description: 'the ring\'s thread handle is cleared right after kthread_stop' },
    buggy: {
      description: 'the handle is cleared only by the thread\'s own exit path', dom0: { quirks: { blkback: { keepXenblkdAfterStop: true } } },
    },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const id = await s.step('xl create -p guest with a disk', () =>
      s.create('guest', guestConfig('guest', { disks: [{ vdev: 'xvda', target: 'r07' }] }), { paused: true }));
    const fe = `/local/domain/${id}/device/vbd/${XVDA}`;
    await s.step('unpause it; the moment blkback maps its ring, the guest writes Closed to its state node', async () => {
      // A guest sees the mapping in its own grant entry (Xen sets GTF_reading/GTF_writing there).
      // Caught in the trace as it happens, not once the host is quiet: by then blkback's thread ran.
      const mapped = await s.runUntil(() => s.xl.unpause(id), (e) =>
        e.kind === 'gnttab' && e.op === 'map_grant_ref' && e.domid === 0 && e.dom === id && (e.ref as number) > 1 && e.status === 0);
      s.expect(mapped, 'blkback mapped the ring');
      // The guest's root writes its frontend's state node itself (a hostile frontend).
      const r = await s.guest<{ results: string[] }>('guest', { cmd: 'xs-batch', ops: [['write', `${fe}/state`, '6']] });
      s.expect(r.results[0] === 'OK', `the write went through (${r.results[0]})`);
    });
    await s.step('dom0 holds at most one mapping of each of the guest\'s grants', async () => {
      const live = new Map<string, number>();
      for (const e of s.trace) {
        if (e.kind !== 'gnttab' || e.domid !== 0 || e.dom !== id || e.status !== 0) continue;
        const key = String(e.ref);
        if (e.op === 'map_grant_ref') live.set(key, (live.get(key) ?? 0) + 1);
        if (e.op === 'unmap_grant_ref' && e.ref !== undefined) live.set(key, (live.get(key) ?? 0) - 1);
      }
      const twice = [...live].filter(([, n]) => n > 1);
      s.expect(twice.length === 0, `dom0 mapped grant ref ${twice.map(([r, n]) => `${r} x${n}`).join(', ')} more than once`);
    });
  },
});
