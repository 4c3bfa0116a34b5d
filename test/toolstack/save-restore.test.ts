// xl save / xl restore end to end on a lockstep host: the guest suspends as Linux does, the file
// carries every page, the restored domain (a new domid) has byte-equal memory before it runs, its
// kernel resumes from what it left in its own memory, and every frontend reconnects to the new
// backends. With -c the guest goes on in place, its suspend cancelled.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { DomainConfig } from '../../domains/dom0/toolstack/config.ts';
import { readSaveImage } from '../../domains/dom0/toolstack/migration/restore-image.ts';
import { memoryHash } from '../../sim/xl-saverestore.ts';
import { SaveRestoreError } from '../../sim/xl.ts';
import { bootHost, type TestHost } from '../helpers/host.ts';

const CFG: DomainConfig = { name: 'saved', disks: [{ vdev: 'xvda', target: 'saved-root', sizeMiB: 4 }], vifs: [{}] };
const DEVICES = ['vbd/51712', 'vif/0'];

type Devices = { devices: { name: string; stateName: string }[]; recovered: unknown[]; resumes: number };

/** Both ends of every device Connected (a backend follows its frontend's Connected on its own schedule). */
async function connected(h: TestHost, domid: number): Promise<void> {
  for (const d of DEVICES) {
    const w = await h.rt.toolstack<{ ok: boolean }>('wait', { path: `/local/domain/${domid}/device/${d}/state`, value: '4' });
    assert.ok(w.ok, `${d} Connected in domain ${domid}`);
    const [kind, devid] = d.split('/');
    const b = await h.rt.toolstack<{ ok: boolean }>('wait', { path: `/local/domain/0/backend/${kind}/${domid}/${devid}/state`, value: '4' });
    assert.ok(b.ok, `${d} backend Connected for domain ${domid}`);
  }
}

/** A domain's nodes (its home, its backends, libxl's dir) with their ACLs, its domid as {d}. */
async function layout(h: TestHost, domid: number): Promise<string[]> {
  const mine = (p: string): boolean => p.startsWith(`/local/domain/${domid}/`) || new RegExp(`^/local/domain/0/backend/[a-z]+/${domid}/`).test(p) || p.startsWith(`/libxl/${domid}/`);
  const norm = (x: string): string => x.replace(new RegExp(`(^|/|[a-z])${domid}(?=/|$|,)`, 'g'), '$1{d}');
  return (await h.xl.dump('/')).filter((n) => mine(n.path)).map((n) => `${norm(n.path)} (${norm(n.perms.join(','))})`).sort();
}

describe('xl save / xl restore', function () {
  this.timeout(120_000);
  let dir: string;
  let h: TestHost;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'xensim-save-'));
    h = await bootHost(7);
  });
  afterEach(async () => {
    await h.rt.shutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('save destroys the guest; restore brings it back in a new domain with equal memory, its data and every device Connected', async () => {
    const src = await h.xl.create(CFG);
    await connected(h, src);
    const data = new Uint8Array(4096).map((_, i) => (i * 7 + 3) & 0xff);
    const w = await h.xl.guest<{ status: number }>(src, { cmd: 'blk', device: 'vbd/51712', op: 'write', sector: 16, sectors: 8, data });
    assert.equal(w.status, 0);
    await h.xl.guest(src, { cmd: 'mem-fill', pages: 8 });
    const before = await h.xl.guest<{ hash: string; pages: number }>(src, { cmd: 'mem-hash' });
    assert.equal(before.pages, 8);
    await h.xl.guest(src, { cmd: 'xs-watch', path: 'data/probe', token: 'tok-1' });

    const file = path.join(dir, 'saved.xl');
    const saved = await h.xl.save(src, file);
    assert.ok(!h.rt.host.domains.has(src), 'the source domain is gone');
    assert.ok(!h.xl.domains.has(src));
    assert.equal(saved.bytes, readFileSync(file).length);

    const restored = await h.xl.restore(file);
    assert.notEqual(restored.domid, src, 'a new domid');
    assert.equal(restored.hash, saved.hash, 'memory restored byte-equal (hash taken before the guest ran)');
    assert.equal(restored.pages, saved.pages);
    const dst = restored.domid;
    await connected(h, dst);
    const seen = await h.xl.guest<Devices>(dst, { cmd: 'devices' });
    assert.deepEqual(seen.devices.map((d) => `${d.name}=${d.stateName}`).sort(), DEVICES.map((d) => `${d}=XenbusStateConnected`).sort());
    assert.equal(seen.resumes, 1, 'the kernel resumed (not booted) once');
    for (const d of DEVICES) {
      assert.equal(await h.xl.rt.toolstack('read', { path: `/local/domain/0/backend/${d.split('/')[0]}/${dst}/${d.split('/')[1]}/state` }), '4', `${d} backend Connected`);
    }
    const after = await h.xl.guest<{ hash: string; pages: number }>(dst, { cmd: 'mem-hash' });
    assert.deepEqual([after.hash, after.pages], [before.hash, before.pages], "the workload's pages as the resumed kernel reads them");
    const r = await h.xl.guest<{ status: number; data: Uint8Array }>(dst, { cmd: 'blk', device: 'vbd/51712', op: 'read', sector: 16, sectors: 8 });
    assert.equal(r.status, 0);
    assert.deepEqual(new Uint8Array(r.data), data, 'what the guest wrote before the save reads back after the restore');
    // xs_resume registered the user watch again with its token: it fires on a write.
    await h.xl.guest(dst, { cmd: 'xs-events' });
    await h.xl.guest(dst, { cmd: 'xs', type: 11, payload: 'data/probe\0x' });
    // The event follows the write's reply and reaches the process through /dev/xen/xenbus on its
    // own schedule: collect for a while of virtual time.
    const events: { path: string; token: string }[] = [];
    for (let i = 0; i < 20 && !events.some((e) => e.token === 'tok-1'); i++) {
      events.push(...(await h.xl.guest<{ events: { path: string; token: string }[] }>(dst, { cmd: 'xs-events' })).events);
      await h.rt.idle(1e6);
    }
    assert.ok(events.some((e) => e.token === 'tok-1' && e.path === 'data/probe'), `watch fired with its token: ${JSON.stringify(events)}`);
    assert.equal(h.xl.domains.get(dst)?.cfg.name, 'saved');
    // The console is reconnected: xenconsoled reads the new domain's ring, where the resumed kernel writes.
    assert.match(await h.xl.console(dst), new RegExp(`xen: resumed in domain ${dst} \\(resume 1\\)`));
    assert.ok(!(await h.xl.dump('/local/domain')).some((n) => n.path === `/local/domain/${src}`), "the source's tree is gone");
    // libxl's layout rebuilt: the same nodes with the same permissions as a guest created afresh
    // from the same config (domids, and the user watch's data/probe, aside).
    const fresh = await h.xl.create({ ...CFG, name: 'fresh', disks: [{ vdev: 'xvda', target: 'fresh-root', sizeMiB: 4 }] });
    await connected(h, fresh);
    await h.xl.guest(fresh, { cmd: 'xs', type: 11, payload: 'data/probe\0x' });
    const restoredLayout = await layout(h, dst);
    assert.ok(restoredLayout.length > 40 && restoredLayout.some((l) => l.startsWith('/local/domain/0/backend/vif/{d}/0/state (n0,r{d})')), restoredLayout.join('\n'));
    assert.deepEqual(restoredLayout, await layout(h, fresh));
  });

  it('save -c: the guest goes on in place (suspend cancelled) with its devices; the file holds memory as at suspend; a restore under the same name is refused', async () => {
    const src = await h.xl.create(CFG);
    await connected(h, src);
    await h.xl.guest(src, { cmd: 'mem-fill', pages: 4 });
    const file = path.join(dir, 'ckpt.xl');
    const saved = await h.xl.save(src, file, { checkpoint: true });
    assert.ok(saved.checkpoint);
    assert.ok(h.rt.host.domains.get(src)?.isShutDown === false, 'the guest runs again');
    const seen = await h.xl.guest<Devices>(src, { cmd: 'devices' });
    assert.ok(seen.devices.every((d) => d.stateName === 'XenbusStateConnected'));
    assert.equal(seen.resumes, 0, 'cancelled: the kernel did not go through resume');
    const io = await h.xl.guest<{ status: number }>(src, { cmd: 'blk', device: 'vbd/51712', op: 'read', sector: 0, sectors: 8 });
    assert.equal(io.status, 0);
    // xl restore refuses a second domain of the same name.
    await assert.rejects(h.xl.restore(file), (e: unknown) => e instanceof SaveRestoreError && /already exists/.test(e.message));
    // The image holds the memory as it was at suspend.
    const img = readSaveImage(readFileSync(file));
    assert.equal(memoryHash(img.pages), saved.hash);
  });

  it('an HVM guest: saved with HVM_CONTEXT and its store/console params, restored as HVM with equal memory and its devices', async () => {
    const src = await h.xl.create({ ...CFG, type: 'hvm' });
    await connected(h, src);
    await h.xl.guest(src, { cmd: 'mem-fill', pages: 4 });
    const before = await h.xl.guest<{ hash: string }>(src, { cmd: 'mem-hash' });
    const file = path.join(dir, 'hvm.xl');
    const saved = await h.xl.save(src, file);
    const img = readSaveImage(readFileSync(file));
    assert.equal(img.domainHeader?.type, 2, 'DHDR_TYPE_X86_HVM');
    const x = { store: img.hvmParams?.find((p) => p.index === 1n)?.value, console: img.hvmParams?.find((p) => p.index === 17n)?.value };
    assert.deepEqual(x, { store: BigInt(saved.pages - 1), console: BigInt(saved.pages - 2) }, 'HVM_PARAM_STORE_PFN and CONSOLE_PFN');
    const r = await h.xl.restore(file);
    assert.equal(r.hash, saved.hash);
    assert.equal(h.rt.host.domains.get(r.domid)?.hvm, true);
    await connected(h, r.domid);
    assert.equal((await h.xl.guest<{ hash: string }>(r.domid, { cmd: 'mem-hash' })).hash, before.hash);
  });

  it('restore -p leaves the new domain paused: its kernel runs (and reconnects) only once unpaused', async () => {
    const src = await h.xl.create(CFG);
    await connected(h, src);
    const file = path.join(dir, 'paused.xl');
    await h.xl.save(src, file);
    const r = await h.xl.restore(file, { paused: true });
    await h.rt.idle(100e6);
    assert.ok((h.rt.host.domains.get(r.domid)?.pauseCount ?? 0) > 0, 'paused');
    assert.notEqual(await h.rt.toolstack('read', { path: `/local/domain/${r.domid}/device/vbd/51712/state` }), '4', 'no frontend ran yet');
    await h.xl.unpause(r.domid);
    await connected(h, r.domid);
  });

  it('a write still in flight at suspend (slow disk) is re-queued by the restored kernel (blkif_recover) and lands on the disk', async () => {
    await h.rt.shutdown();
    h = await bootHost(7, { quirks: { blkback: { diskLatencyNs: 50e6 } } });
    const src = await h.xl.create(CFG);
    await connected(h, src);
    const data = new Uint8Array(8 * 512).map((_, i) => (i * 13 + 5) & 0xff);
    // Not awaited: its caller is user space of the domain being saved, which never hears back.
    void h.xl.guest(src, { cmd: 'blk', device: 'vbd/51712', op: 'write', sector: 40, sectors: 8, data });
    const file = path.join(dir, 'inflight.xl');
    await h.xl.save(src, file);
    const { domid } = await h.xl.restore(file);
    await connected(h, domid);
    let seen: { recovered: { op: number; sector: number; sectors: number; status?: number }[] } | undefined;
    for (let i = 0; i < 200; i++) {
      seen = await h.xl.guest(domid, { cmd: 'devices' });
      if (seen!.recovered.length && seen!.recovered.every((r) => r.status !== undefined)) break;
      await h.rt.idle(1e6);
    }
    assert.deepEqual(seen!.recovered, [{ device: 'vbd/51712', op: 1, sector: 40, sectors: 8, status: 0 }], 'the write was re-queued and completed');
    const r = await h.xl.guest<{ status: number; data: Uint8Array }>(domid, { cmd: 'blk', device: 'vbd/51712', op: 'read', sector: 40, sectors: 8 });
    assert.equal(r.status, 0);
    assert.deepEqual(new Uint8Array(r.data), data);
  });

  it('a save that cannot write its file fails with why, and the guest resumes (suspend cancelled) with its devices', async () => {
    const src = await h.xl.create(CFG);
    await connected(h, src);
    await assert.rejects(h.xl.save(src, path.join(dir, 'no-such-dir', 'g.xl')),
      (e: unknown) => e instanceof SaveRestoreError && /ENOENT/.test(e.message) && /domain resumed/.test(e.message));
    assert.equal(h.rt.host.domains.get(src)?.isShutDown, false, 'the guest runs again');
    const seen = await h.xl.guest<Devices>(src, { cmd: 'devices' });
    assert.ok(seen.devices.every((d) => d.stateName === 'XenbusStateConnected'));
    assert.equal(seen.resumes, 0);
    const io = await h.xl.guest<{ status: number }>(src, { cmd: 'blk', device: 'vbd/51712', op: 'read', sector: 0, sectors: 8 });
    assert.equal(io.status, 0);
  });

  it('restore refuses a truncated or corrupt file with a clear error and builds nothing', async () => {
    const src = await h.xl.create(CFG);
    await connected(h, src);
    const file = path.join(dir, 'g.xl');
    await h.xl.save(src, file);
    const bytes = readFileSync(file);
    const cut = path.join(dir, 'cut.xl');
    writeFileSync(cut, bytes.subarray(0, bytes.length - 5000));
    const domains = h.rt.host.domains.size;
    await assert.rejects(h.xl.restore(cut), (e: unknown) => e instanceof SaveRestoreError && /cut\.xl/.test(e.message));
    const bad = Buffer.from(bytes);
    bad[0] ^= 0xff;
    writeFileSync(cut, bad);
    await assert.rejects(h.xl.restore(cut), (e: unknown) => e instanceof SaveRestoreError && /magic/.test(e.message));
    assert.equal(h.rt.host.domains.size, domains, 'no domain left behind');
  });

  it('memory = 256 gives the guest 256 MiB; filled, it saves and restores with equal memory, its kernel finding its pages', async () => {
    const src = await h.xl.create({ name: 'big', memory: 256 });
    assert.equal(h.rt.host.domains.get(src)!.p2m.filter(Boolean).length, 256 * 256, '65,536 pages');
    // Its kernel takes commands once booted.
    await h.rt.idle(100e6);
    const fill = await h.xl.guest<{ gfns: number[] }>(src, { cmd: 'mem-fill', pages: 256 * 256 - 64 });
    assert.equal(fill.gfns.length, 256 * 256 - 64);
    const before = await h.xl.guest<{ hash: string; pages: number }>(src, { cmd: 'mem-hash' });
    const file = path.join(dir, 'big.xl');
    const saved = await h.xl.save(src, file);
    assert.equal(saved.pages, 256 * 256);
    const restored = await h.xl.restore(file);
    assert.equal(restored.hash, saved.hash, 'every frame as at suspend');
    await h.rt.idle(100e6);
    const after = await h.xl.guest<{ hash: string; pages: number }>(restored.domid, { cmd: 'mem-hash' });
    assert.deepEqual([after.hash, after.pages], [before.hash, before.pages], 'the resumed kernel hashes the same workload pages');
  });
});
