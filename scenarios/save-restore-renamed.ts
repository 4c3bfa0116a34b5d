// xl save -c, xl destroy, then xl restore CONFIG FILE with a config that names the guest anew (as
// `xl restore` with a config file does: the given config in place of the one in the image). While
// the checkpointed guest still runs, restoring the image as it is is refused - the saved name is
// taken. After the destroy, the renamed restore builds a new domain (a new domid, a new uuid, the
// new name in its tree and under /vm) with the memory of the checkpoint; every device Connected,
// the disk data back, and nothing of the old name or domid left.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SaveRestoreError } from '../sim/xl.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';
import { DISK, everyDeviceConnected, expectDomainGone } from './migration-checks.ts';

const SECTOR = 24;
const SECTORS = 8;

export default defineScenario({
  name: 'save-restore-renamed',
  title: 'xl save -c, xl destroy, xl restore under another name: a new domain with the checkpointed memory, the new name, nothing of the old',
  tags: ['migration', 'lifecycle', 'devices'],
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 }, suspendAckDelayNs: [0, 5e6] },
  async run(s) {
    s.devicesAgree('guest');
    const cfg = guestConfig('original', { memory: 16, disks: [{ vdev: 'xvda', target: 'original-root', sizeMiB: 1 }], vifs: [{}] });
    const src = await s.step('xl create guest "original" (xvda, vif 0)', () => s.create('guest', cfg));
    const oldVm = (await s.read(`/local/domain/${src}/vm`))!;
    await s.step('every device connects', () => everyDeviceConnected(s, 'guest'));
    const data = new Uint8Array(SECTORS * 512);
    for (let i = 0; i < data.length; i++) data[i] = s.rng.below(256);
    const before = await s.step('the guest writes its disk and fills memory', async () => {
      const w = await s.guest<{ status?: number; error?: string }>('guest', { cmd: 'blk', device: DISK, op: 'write', sector: SECTOR, sectors: SECTORS, data });
      s.expect(w.status === 0, `write: ${w.error ?? w.status}`);
      await s.guest('guest', { cmd: 'mem-fill', pages: 1 + s.rng.below(16) });
      return s.guest<{ hash: string; pages: number }>('guest', { cmd: 'mem-hash' });
    });
    const dir = mkdtempSync(path.join(tmpdir(), 'xensim-renamed-'));
    try {
      const file = path.join(dir, 'original.xl');
      const saved = await s.step('xl save -c guest', () => s.xl.save(src, file, { checkpoint: true }));
      await s.step('xl restore of the image as it is, while "original" runs: refused', async () => {
        const r = await s.xl.restore(file, { guest: s.guestArgs() }).then(() => undefined, (e: unknown) => e);
        s.expect(r instanceof SaveRestoreError && /"original" already exists/.test(r.message), `restore: ${r instanceof Error ? r.message : 'it succeeded'}`);
        s.expect(s.xl.domains.size === 1, `domains: ${[...s.xl.domains.keys()].join(',')}`);
      });
      // The hash is of the checkpoint: the guest ran on in between, but wrote nothing more.
      await s.step('xl destroy guest', () => s.xl.destroy(src));
      await s.step('nothing of "original" is left', () => expectDomainGone(s, s.hosts.get('A')!, src));
      const restored = await s.step('xl restore renamed.cfg FILE: the guest comes back as "renamed"', async () => {
        const r = await s.xl.restore(file, { guest: s.guestArgs(), config: { ...cfg, name: 'renamed' } });
        s.roles.set('guest', r.domid);
        s.expect(r.domid !== src, `the restored domain reuses domid ${src}`);
        s.expect(r.hash !== undefined && r.hash === saved.hash, `memory after restore ${r.hash?.slice(0, 12)} != at the checkpoint ${saved.hash?.slice(0, 12)}`);
        return r.domid;
      });
      await s.step('its tree names it "renamed", under a new uuid', async () => {
        s.expect((await s.read(`/local/domain/${restored}/name`)) === 'renamed', 'name in /local/domain');
        const vm = await s.read(`/local/domain/${restored}/vm`);
        s.expect(vm !== undefined && vm !== oldVm, `vm path ${vm}, the original's ${oldVm}`);
        s.expect((await s.read(`${vm}/name`)) === 'renamed', `name under ${vm}`);
        s.expect((await s.read(`${oldVm}/name`)) === undefined, `${oldVm} is still there`);
        const names = s.xl.list().map((d) => d.name);
        s.expect(!names.includes('original') && names.includes('renamed'), `xl list: ${names.join(', ')}`);
      });
      await s.step('devices, disk data and memory as at the checkpoint', async () => {
        const seen = await everyDeviceConnected(s, 'guest');
        s.expect(seen.resumes === 1, `resumes ${seen.resumes}`);
        const r = await s.guest<{ status?: number; data?: Uint8Array; error?: string }>('guest', { cmd: 'blk', device: DISK, op: 'read', sector: SECTOR, sectors: SECTORS });
        s.expect(r.status === 0 && r.data !== undefined && Buffer.from(r.data).equals(Buffer.from(data)), `read back: ${r.error ?? r.status}`);
        const after = await s.guest<{ hash: string; pages: number }>('guest', { cmd: 'mem-hash' });
        s.expect(after.hash === before.hash && after.pages === before.pages, "the workload's pages as the kernel reads them now");
      });
      await s.expectNoOrphans();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
});
