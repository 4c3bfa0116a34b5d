// xl save and xl restore of a guest with a disk and a NIC. The guest writes to its disk through
// blkfront, fills memory with a workload and sets a watch; xl save suspends it (control/shutdown
// "suspend", SCHEDOP_shutdown(SHUTDOWN_suspend)), writes every page to the file and destroys it;
// xl restore builds a new domain from the file (a new domid) whose memory hashes equal before it
// runs, and whose resumed kernel reconnects every frontend to the new backends and registers its
// watch again. The checkpoint variant (xl save -c) leaves the guest running: its suspend is
// cancelled and it goes on with the devices it had.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readSaveImage } from '../domains/dom0/toolstack/migration/restore-image.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';
import type { ScenarioRun } from '../sim/scenario/run.ts';
import { memoryHash } from '../sim/xl-saverestore.ts';

const DEVICES = ['vbd/51712', 'vif/0'] as const;
const SECTOR = 64;
const SECTORS = 16;

interface Seen {
  devices: { name: string; stateName: string }[];
  resumes: number;
}

async function everyDeviceConnected(s: ScenarioRun, id: number): Promise<void> {
  for (const d of DEVICES) s.expect(await s.waitFor(`/local/domain/${id}/device/${d}/state`, '4'), `domain ${id}: ${d} frontend Connected`);
  for (const d of await s.deviceStates(id)) s.expect(d.frontend === '4' && d.backend === '4', `domain ${id}: ${d.kind}/${d.devid} frontend ${d.frontend}, backend ${d.backend}`);
  const seen = await s.guest<Seen>('guest', { cmd: 'devices' });
  s.expect(seen.devices.length === DEVICES.length && seen.devices.every((d) => d.stateName === 'XenbusStateConnected'),
    `the guest's drivers see ${seen.devices.map((d) => `${d.name}=${d.stateName}`).join(', ')}`);
}

export default defineScenario({
  name: 'save-restore',
  title: 'xl save then xl restore brings a guest back in a new domain with equal memory, its disk data and every device Connected; xl save -c leaves it running',
  tags: ['lifecycle', 'devices', 'migration'],
  variants: {
    fixed: { description: 'xl save (the guest is destroyed), then xl restore from the file' },
    checkpoint: { description: 'xl save -c: the guest goes on in place, its suspend cancelled', knobs: { checkpoint: true } },
  },
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 }, suspendAckDelayNs: [0, 5e6] },
  async run(s) {
    s.devicesAgree('guest');
    const checkpoint = s.knob('checkpoint') === true;
    const src = await s.step('xl create guest (xvda, vif 0)', () =>
      s.create('guest', guestConfig('keeper', { disks: [{ vdev: 'xvda', target: 'keeper-root', sizeMiB: 8 }], vifs: [{}] })));
    await s.step('every device connects', () => everyDeviceConnected(s, src));

    const data = new Uint8Array(SECTORS * 512);
    for (let i = 0; i < data.length; i++) data[i] = s.rng.below(256);
    const before = await s.step('the guest writes its disk, fills memory and sets a watch', async () => {
      const w = await s.guest<{ status?: number; error?: string }>('guest', { cmd: 'blk', device: 'vbd/51712', op: 'write', sector: SECTOR, sectors: SECTORS, data });
      s.expect(w.status === 0, `write through blkfront: ${w.error ?? w.status}`);
      const fill = await s.guest<{ gfns: number[]; error?: string }>('guest', { cmd: 'mem-fill', pages: 1 + s.rng.below(24) });
      s.expect(fill.error === undefined, `memory workload: ${fill.error}`);
      const w2 = await s.guest<{ error?: string }>('guest', { cmd: 'xs-watch', path: 'data/kept', token: 'kept-token' });
      s.expect(w2.error === undefined, `xs-watch: ${w2.error}`);
      await s.guest('guest', { cmd: 'xs-events' });
      return s.guest<{ hash: string; pages: number }>('guest', { cmd: 'mem-hash' });
    });

    const dir = mkdtempSync(path.join(tmpdir(), 'xensim-save-restore-'));
    try {
      const file = path.join(dir, 'keeper.xl');
      const saved = await s.step(`xl save${checkpoint ? ' -c' : ''} guest`, () => s.xl.save(src, file, { checkpoint }));
      const img = readSaveImage(readFileSync(file));
      s.expect(memoryHash(img.pages) === saved.hash && img.pages.size === saved.pages, 'the file holds every page as it was at suspend');

      let id = src;
      if (checkpoint) {
        await s.step('the guest goes on in place (suspend cancelled)', async () => {
          s.expect(s.rt.host.domains.get(src)?.isShutDown === false, 'the domain runs again');
          const seen = await s.guest<Seen>('guest', { cmd: 'devices' });
          s.expect(seen.resumes === 0, 'cancelled: the kernel did not resume as a new domain');
        });
      } else {
        await s.step('the source domain is gone', async () => {
          s.expect(!s.rt.host.domains.has(src) && !s.xl.domains.has(src), `domain ${src} still exists`);
          const left = (await s.dump('/')).filter((n) => n.path === `/local/domain/${src}` || new RegExp(`^/local/domain/0/backend/[a-z]+/${src}(/|$)`).test(n.path));
          s.expect(left.length === 0, `nodes of the saved domain left: ${left.map((n) => n.path).join(', ')}`);
        });
        const restored = await s.step('xl restore', () => s.xl.restore(file, { guest: s.guestArgs() }));
        id = restored.domid;
        s.roles.set('guest', id);
        s.expect(id !== src, 'the restored domain has a new domid');
        s.expect(restored.hash === saved.hash, `memory hash after restore ${restored.hash?.slice(0, 12)} != at suspend ${saved.hash?.slice(0, 12)}`);
      }

      await s.step('every device Connected on both ends', () => everyDeviceConnected(s, id));
      await s.step('disk data, memory and watch as before', async () => {
        const r = await s.guest<{ status?: number; data?: Uint8Array; error?: string }>('guest', { cmd: 'blk', device: 'vbd/51712', op: 'read', sector: SECTOR, sectors: SECTORS });
        s.expect(r.status === 0 && r.data !== undefined && Buffer.from(r.data).equals(Buffer.from(data)), `read back: ${r.error ?? r.status}, data ${r.data ? 'differs' : 'missing'}`);
        const after = await s.guest<{ hash: string; pages: number }>('guest', { cmd: 'mem-hash' });
        s.expect(after.hash === before.hash && after.pages === before.pages, "the workload's pages as the kernel reads them now");
        const seen = await s.guest<Seen>('guest', { cmd: 'devices' });
        s.expect(seen.resumes === (checkpoint ? 0 : 1), `resumes: ${seen.resumes}`);
        await s.guest('guest', { cmd: 'xs-events' });
        await s.guest('guest', { cmd: 'xs-batch', ops: [['write', 'data/kept', 'x']] });
        // The event comes after the write's reply: wait for it (virtual time in lockstep).
        const events: { path: string; token: string }[] = [];
        for (let i = 0; i < 100 && !events.some((e) => e.token === 'kept-token'); i++) {
          events.push(...(await s.guest<{ events: { path: string; token: string }[] }>('guest', { cmd: 'xs-events' })).events);
          await s.rt.idle(1e6);
        }
        s.expect(events.some((e) => e.token === 'kept-token' && e.path === 'data/kept'), `the watch fires with its token: ${JSON.stringify(events)}`);
      });
      const log = await s.xl.console(id);
      s.expect(log.includes('Restarting tasks ... done.'), 'the guest came back from SCHEDOP_shutdown(suspend)');
      await s.expectNoOrphans();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
});
