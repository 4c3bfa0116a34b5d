// Debian's own migration stream validator (xen-utils-4.17: verify-stream-v2, with Xen's
// xen.migration Python package) reads the streams xensim's writer produces, unchanged: `xl save`
// files of PV and HVM guests, a live migration with precopy rounds and a VERIFY pass, the libxl and
// libxc layers on their own, and a checkpointed libxc stream. It checks framing, zero padding and
// reserved fields, record sizes and the v3-only records. Missing tools fail these specs, never skip.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readSaveImage } from '../../domains/dom0/toolstack/migration/restore-image.ts';
import { memoryHash } from '../../sim/xl-saverestore.ts';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { concat } from '../../domains/dom0/toolstack/migration/sr-record.ts';
import { saveImageChunks, type SaveImage } from '../../domains/dom0/toolstack/migration/save-image.ts';
import { SaveStreamWriter } from '../../domains/dom0/toolstack/migration/stream-writer.ts';
import { sendDomainMemoryLive } from '../../domains/dom0/toolstack/migration/precopy.ts';
import { XEN_BIN } from '../helpers/daemons.ts';
import { DhdrType, PAGE_SIZE } from '../../domains/dom0/toolstack/migration/libxc-stream.ts';
import { bootHost, type TestHost } from '../helpers/host.ts';
import { DirtyingGuest, EMULATOR, TSC, blob, hvmImage, page, pages, pvImage } from '../helpers/save-image.ts';

const VERIFY_STREAM_V2 = path.join(XEN_BIN, 'verify-stream-v2');
const XEN_PYTHONPATH = '/usr/lib/xen-4.17/lib/python';

function requireVerifier(): void {
  const missing = [VERIFY_STREAM_V2, path.join(XEN_PYTHONPATH, 'xen/migration/libxc.py')].filter((f) => !existsSync(f));
  if (missing.length) {
    throw new Error(`required tool(s) missing:\n  ${missing.join('\n  ')}  (Debian package xen-utils-4.17)\n`
      + 'install with: apt-get install -y --no-install-recommends xen-utils-4.17');
  }
}

interface Verdict {
  readonly code: number | null;
  readonly out: string;
}

let dir: string;
let files = 0;

function verify(image: SaveImage, format: 'xl' | 'libxl' | 'libxc'): Verdict {
  const file = path.join(dir, `stream-${files++}.${format}`);
  writeFileSync(file, concat(saveImageChunks({ ...image, format })));
  const r = spawnSync(VERIFY_STREAM_V2, ['-v', '-f', format, '-i', file], {
    env: { ...process.env, PYTHONPATH: XEN_PYTHONPATH }, encoding: 'utf8', timeout: 60_000,
  });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

function accepted(v: Verdict): string {
  assert.equal(v.code, 0, `verify-stream-v2 refused the stream:\n${v.out}`);
  return v.out;
}

/** A live migration: every page, two precopy rounds resending dirtied pages, the round after suspend. */
const migration = (base: SaveImage): SaveImage => ({
  ...base,
  checkpoints: [{
    ...base.checkpoints[0],
    rounds: [pages(0, 2500), [page(3, 1), page(1100, 1), ...pages(2000, 300, 1)], [page(3, 2), page(7, 1)], [page(3, 3)]],
  }],
});

describe('interop: Debian verify-stream-v2 accepts the streams xensim writes', function () {

  before(function () {
    requireVerifier();
    dir = mkdtempSync(path.join(tmpdir(), 'xensim-stream-'));
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('xl save (and xl save -c, the same stream) of a PV guest (-f xl): xl header, libxl stream, libxc stream with every PV record', function () {
    const out = accepted(verify(pvImage(1500), 'xl'));
    assert.match(out, /Processed xl header/);
    assert.match(out, /Domain Header: x86 PV from Xen 4\.17/);
    assert.match(out, /64bit guest, 4 levels of pagetables/);
    assert.match(out, /Squashed 2 Page Data records together/); // 1500 pages: 1024 + 476
    for (const r of ['x86 CPUID policy', 'x86 MSR policy', 'Static data end', 'x86 PV P2M frames', 'TSC info', 'Shared info',
      'x86 PV vcpu basic', 'x86 PV vcpu extended', 'x86 PV vcpu xsave', 'x86 PV vcpu msrs']) {
      assert.match(out, new RegExp(`Libxc Record: ${r}`), r);
    }
    assert.match(out, /Libxc Record: End[\s\S]*Libxl Record: End/);
  });

  it('xl save of a 32-bit PV guest (-f xl): width 4, 3 pagetable levels, 2800-byte vCPU context, 1024 p2m entries a frame', function () {
    const base = pvImage(1500);
    const out = accepted(verify({
      ...base,
      pvInfo: { guestWidth: 4, ptLevels: 3 },
      p2mFrames: { startPfn: 0, endPfn: 1499, p2mPfns: [1500n, 1501n] },
      checkpoints: [{
        ...base.checkpoints[0],
        state: { type: DhdrType.DHDR_TYPE_X86_PV, tsc: TSC, sharedInfo: blob(PAGE_SIZE, 1), vcpus: [{ vcpuId: 0, basic: blob(2800, 2), extended: blob(128, 3) }] },
      }],
    }, 'xl'));
    assert.match(out, /32bit guest, 3 levels of pagetables/);
    assert.match(out, /vcpu0 basic context, 2800 bytes/);
  });

  it('xl save of an HVM guest (-f xl): TSC, HVM_CONTEXT, HVM_PARAMS, then QEMU\'s context', function () {
    const out = accepted(verify(hvmImage(700), 'xl'));
    assert.match(out, /Domain Header: x86 HVM from Xen 4\.17/);
    assert.match(out, /Libxc Record: TSC info[\s\S]*HVM context[\s\S]*HVM params[\s\S]*Libxc Record: End/);
    assert.match(out, /Libxl Record: Emulator context, length 3008\n {2}Index 0, type Qemu Upstream/);
  });

  it('live migration streams (-f xl): precopy rounds, resent pages, the last round after suspend, a VERIFY pass', function () {
    for (const base of [pvImage(2500), hvmImage(2500)]) {
      const out = accepted(verify({ ...migration(base), verify: pages(0, 2500, 0) }, 'xl'));
      // 3 records for round 1, 1 each for the later rounds, then 3 for the VERIFY pass.
      assert.match(out, /Squashed 6 Page Data records together/);
      assert.match(out, /Libxc Record: Verify[\s\S]*Squashed 3 Page Data records together/);
    }
  });

  it('streams written by the precopy loop against a guest that keeps dirtying memory (PV and HVM)', async function () {
    for (const base of [pvImage(3000), hvmImage(3000)]) {
      const chunks: Uint8Array[] = [];
      const w = new SaveStreamWriter((c) => chunks.push(c), base);
      w.start();
      const report = await sendDomainMemoryLive(w, new DirtyingGuest(3000, () => 300));
      w.endOfCheckpoint(base.checkpoints[0].state);
      w.finish(base.checkpoints[0].emulator);
      assert.equal(report.liveRounds, 5);
      const file = path.join(dir, `stream-${files++}.xl`);
      writeFileSync(file, concat(chunks));
      const v = spawnSync(VERIFY_STREAM_V2, ['-v', '-f', 'xl', '-i', file], { env: { ...process.env, PYTHONPATH: XEN_PYTHONPATH }, encoding: 'utf8', timeout: 60_000 });
      const out = accepted({ code: v.status, out: `${v.stdout}${v.stderr}` });
      assert.match(out, new RegExp(`Squashed ${w.stats.pageDataRecords} Page Data records together`));
    }
  });

  it('the libxl layer alone (-f libxl) and the libxc layer alone (-f libxc)', function () {
    for (const base of [pvImage(100), hvmImage(100)]) {
      assert.match(accepted(verify(base, 'libxl')), /Libxl Header: little endian/);
      assert.match(accepted(verify(base, 'libxc')), /Libxc Image Header: Version 3, little endian/);
    }
  });

  it('a checkpointed (Remus) libxc stream (-f libxc): CHECKPOINT after each checkpoint, then END', function () {
    for (const base of [pvImage(60), hvmImage(60)]) {
      const cp = base.checkpoints[0];
      const image: SaveImage = {
        ...base, streamType: 'remus',
        checkpoints: [cp, { rounds: [[page(5, 1)]], state: cp.state, emulator: cp.emulator }],
      };
      const out = accepted(verify(image, 'libxc'));
      assert.equal(out.match(/Libxc Record: Checkpoint/g)?.length, 2);
    }
  });

  // Limits of the Debian tool, kept as specs so a fixed verifier is noticed.
  it('limit: under Python 3 it refuses any non-empty EMULATOR_XENSTORE_DATA (compares bytes with a str)', function () {
    const base = hvmImage(10);
    const v = verify({ ...base, checkpoints: [{ ...base.checkpoints[0], emulator: { ...EMULATOR, xenstore: [['physmap/f0000000/size', '800000']] } }] }, 'xl');
    assert.equal(v.code, 1, v.out);
    assert.match(v.out, /RecordError: Data not NUL terminated/);
  });

  it('limit: it cannot follow a checkpointed libxl stream (libxl records between libxc checkpoints)', function () {
    const base = hvmImage(10);
    const v = verify({ ...base, streamType: 'remus', checkpoints: [base.checkpoints[0], base.checkpoints[0]] }, 'xl');
    assert.equal(v.code, 1, v.out);
    // CHECKPOINT_END (libxl type 4) read as libxc's X86_PV_VCPU_BASIC (type 4) with no body.
    assert.match(v.out, /X86_PV_VCPU_basic record length must be at least 8 bytes long/);
  });
});

describe('interop: verify-stream-v2 accepts the file `xl save` writes for a running guest', function () {
  let sdir: string;
  let h: TestHost;

  before(async function () {
    requireVerifier();
    sdir = mkdtempSync(path.join(tmpdir(), 'xensim-xlsave-'));
    h = await bootHost(11);
  });
  after(async () => {
    await h?.rt.shutdown();
    if (sdir) rmSync(sdir, { recursive: true, force: true });
  });

  it('a PV guest with a disk, a NIC and a console, its memory dirtied by a workload (-f xl): accepted, every page in it', async function () {
    const domid = await h.xl.create({ name: 'real', disks: [{ vdev: 'xvda', target: 'real-root', sizeMiB: 4 }], vifs: [{}] });
    for (const d of ['vbd/51712', 'vif/0']) {
      const w = await h.rt.toolstack<{ ok: boolean }>('wait', { path: `/local/domain/${domid}/device/${d}/state`, value: '4' });
      assert.ok(w.ok, `${d} Connected`);
    }
    await h.xl.guest(domid, { cmd: 'mem-fill', pages: 16 });
    const file = path.join(sdir, 'real.xl');
    const saved = await h.xl.save(domid, file);
    const r = spawnSync(VERIFY_STREAM_V2, ['-v', '-f', 'xl', '-i', file], {
      env: { ...process.env, PYTHONPATH: XEN_PYTHONPATH }, encoding: 'utf8', timeout: 60_000,
    });
    const out = accepted({ code: r.status, out: `${r.stdout}${r.stderr}` });
    assert.match(out, /Processed xl header/);
    assert.match(out, /Domain Header: x86 PV from Xen 4\.17/);
    assert.match(out, /Libxc Record: x86 PV vcpu basic/);
    assert.match(out, /Libxc Record: Shared info/);
    assert.doesNotMatch(out, /Warning/);
    assert.equal(saved.bytes, statSync(file).size);
    // Every page of the guest went into the stream, as it was at suspend.
    const img = readSaveImage(readFileSync(file));
    assert.equal(img.pages.size, saved.pages);
    assert.equal(memoryHash(img.pages), saved.hash);
  });

  it('an HVM guest with a disk, a NIC and a console (-f xl): accepted, with its HVM context and params', async function () {
    const domid = await h.xl.create({ name: 'real-hvm', type: 'hvm', disks: [{ vdev: 'xvda', target: 'real-hvm-root', sizeMiB: 4 }], vifs: [{}] });
    for (const d of ['vbd/51712', 'vif/0']) {
      const w = await h.rt.toolstack<{ ok: boolean }>('wait', { path: `/local/domain/${domid}/device/${d}/state`, value: '4' });
      assert.ok(w.ok, `${d} Connected`);
    }
    const file = path.join(sdir, 'real-hvm.xl');
    await h.xl.save(domid, file);
    const r = spawnSync(VERIFY_STREAM_V2, ['-v', '-f', 'xl', '-i', file], {
      env: { ...process.env, PYTHONPATH: XEN_PYTHONPATH }, encoding: 'utf8', timeout: 60_000,
    });
    const out = accepted({ code: r.status, out: `${r.stdout}${r.stderr}` });
    assert.match(out, /Domain Header: x86 HVM from Xen 4\.17/);
    assert.match(out, /Libxc Record: HVM context/);
    assert.match(out, /Libxc Record: HVM params/);
    assert.doesNotMatch(out, /Warning/);
  });
});
