// `xensim up CONFIG --socket PATH` as a user runs it (the bin, a child process, free-running),
// looked at with Debian's xenstore-ls through dom0's xenstored socket, and driven with
// `xensim xl` through its control socket: the live tree has every guest's devices Connected on
// both ends, and xl's verbs change it as xl's do.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Proc, REPO_ROOT, TOOLS, requireTools, run, type RunResult } from '../helpers/daemons.ts';
import { waitFor } from '../helpers/wait.ts';

const BIN = path.join(REPO_ROOT, 'sim/bin/xensim.mjs');
const CONFIG = 'scenarios/hosts/three-guests.yaml';
const XVDA = 51712;
const XVDB = 51728;
/** The example's guests, in creation order (domids 1, 2, 3). */
const GUESTS = [
  { name: 'web', domid: 1, mem: 256, vcpus: 1 },
  { name: 'db', domid: 2, mem: 512, vcpus: 2 },
  { name: 'cache', domid: 3, mem: 128, vcpus: 1 },
];

describe('xensim up CONFIG + Debian xenstore-ls + xensim xl', function () {
  let dir: string;
  let socket: string;
  let control: string;
  let host: Proc | undefined;

  /** `xenstore-ls -f` of the live tree: path -> value. */
  async function tree(): Promise<Map<string, string>> {
    const r = await run(TOOLS['xenstore-ls'].file, ['-f'], { env: { ...process.env, XENSTORED_PATH: socket } });
    assert.equal(r.code, 0, `xenstore-ls -f failed: ${r.stderr}`);
    const t = new Map<string, string>();
    for (const line of r.stdout.split('\n')) {
      const m = /^(\/\S*) = "(.*)"$/.exec(line);
      if (m) t.set(m[1], m[2]);
    }
    return t;
  }

  async function xl(...args: string[]): Promise<RunResult> {
    // No --host: the control socket comes from XENSIM_CONTROL, as a user would set it.
    return run(process.execPath, [BIN, 'xl', ...args], { env: { ...process.env, XENSIM_CONTROL: control } });
  }

  before(async () => {
    // Debian's tool is part of the test: missing, the test fails (CI installs xenstore-utils).
    requireTools('xenstore-ls');
    dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-xlup-'));
    socket = path.join(dir, 'sock');
    control = `${socket}.xl`;
    const env = { ...process.env };
    delete env.XENSIM_CONTROL;
    host = new Proc(process.execPath, [BIN, 'up', CONFIG, '--socket', socket], { env });
    await host.until((s) => s.includes('xensim: ready'), '`xensim up` to report ready');
  });

  after(async () => {
    if (host && host.child.exitCode === null && host.child.signalCode === null) {
      host.child.kill('SIGTERM');
      const t = setTimeout(() => host?.kill(), 5000);
      await host.exited;
      clearTimeout(t);
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('reports each guest with its domid and both ends of every device Connected, and both sockets', () => {
    const out = host!.stdout;
    assert.match(out, /free-running, seed 42, dom0 and 3 guest\(s\)/);
    for (const g of GUESTS) {
      assert.match(out, new RegExp(`^  ${g.name} +${g.domid}  vbd xvda 4/4  vbd xvdb 4/4  vif 0 4/4$`, 'm'), out);
    }
    assert.ok(out.includes(`XENSTORED_PATH=${socket}\n`), out);
    assert.ok(out.includes(`XENSIM_CONTROL=${control}\n`), out);
  });

  it("xenstore-ls -f shows every guest's vbd and vif frontend and backend dirs in state 4, control/ and console/", async () => {
    const t = await tree();
    assert.equal(t.get('/local/domain/0/name'), 'Domain-0');
    for (const g of GUESTS) {
      const home = `/local/domain/${g.domid}`;
      assert.equal(t.get(`${home}/name`), g.name);
      assert.equal(t.get(`${home}/memory/target`), String(g.mem * 1024));
      for (const [kind, devid] of [['vbd', XVDA], ['vbd', XVDB], ['vif', 0]] as const) {
        const fe = `${home}/device/${kind}/${devid}`;
        const be = `/local/domain/0/backend/${kind}/${g.domid}/${devid}`;
        assert.ok(t.has(fe), `${fe} missing`);
        assert.ok(t.has(be), `${be} missing`);
        assert.equal(t.get(`${fe}/state`), '4', `${fe}/state`);
        assert.equal(t.get(`${be}/state`), '4', `${be}/state`);
        assert.equal(t.get(`${fe}/backend`), be);
        assert.equal(t.get(`${be}/frontend`), fe);
        for (const k of kind === 'vbd' ? ['ring-ref', 'event-channel'] : ['tx-ring-ref', 'rx-ring-ref', 'event-channel']) {
          assert.match(t.get(`${fe}/${k}`) ?? '', /^\d+$/, `${fe}/${k}`);
        }
      }
      assert.equal(t.get(`/local/domain/0/backend/vbd/${g.domid}/${XVDB}/mode`), g.name === 'cache' ? 'r' : 'w');
      // control/: the shutdown node the toolstack writes and the features the guest announces.
      assert.equal(t.get(`${home}/control/shutdown`), '');
      for (const f of ['feature-poweroff', 'feature-reboot', 'feature-suspend']) assert.equal(t.get(`${home}/control/${f}`), '1', `${home}/control/${f}`);
      // console/: the ring page and port from the domain builder, for xenconsoled.
      assert.match(t.get(`${home}/console/ring-ref`) ?? '', /^\d+$/, `${home}/console/ring-ref`);
      assert.match(t.get(`${home}/console/port`) ?? '', /^\d+$/, `${home}/console/port`);
      assert.equal(t.get(`${home}/console/type`), 'xenconsoled');
    }
    assert.equal(t.get('/local/domain/2/device/vif/0/mac'), '00:16:3e:00:00:22');
  });

  it("xl list prints xl's columns: Name ID Mem VCPUs State Time(s)", async () => {
    const r = await xl('list');
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines[0], 'Name                                        ID   Mem VCPUs\tState\tTime(s)');
    assert.match(lines[1], new RegExp(`^${'Domain-0'.padEnd(40)}     0  1024     1     r----- +\\d+\\.\\d$`));
    assert.equal(lines.length, 1 + 1 + GUESTS.length);
    for (const [i, g] of GUESTS.entries()) {
      const cols = `${g.name.padEnd(40)} ${String(g.domid).padStart(5)} ${String(g.mem).padStart(5)} ${String(g.vcpus).padStart(5)}     -b----`;
      assert.ok(lines[2 + i].startsWith(cols), `${JSON.stringify(lines[2 + i])} vs ${JSON.stringify(cols)}`);
      assert.match(lines[2 + i].slice(cols.length), /^ +\d+\.\d$/);
    }
    const one = await xl('list', 'db');
    assert.equal(one.stdout.trimEnd().split('\n').length, 2);
    const bad = await xl('list', 'nosuch');
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, 'xl: nosuch is an invalid domain identifier\n');
  });

  it("xl console prints what the guest wrote to its console", async () => {
    const r = await xl('console', 'web');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Linux version 6\.1\.0-xensim \(domid 1\)$/m);
  });

  it("xl block-detach removes the disk's frontend, backend and libxl dirs; the other disk stays Connected", async () => {
    const r = await xl('block-detach', 'web', 'xvdb');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout + r.stderr, '');
    const t = await tree();
    for (const p of [`/local/domain/1/device/vbd/${XVDB}`, `/local/domain/0/backend/vbd/1/${XVDB}`, `/libxl/1/device/vbd/${XVDB}`]) {
      assert.ok(!t.has(p), `${p} still there`);
    }
    assert.equal(t.get(`/local/domain/1/device/vbd/${XVDA}/state`), '4');
    assert.equal(t.get(`/local/domain/0/backend/vbd/1/${XVDA}/state`), '4');
    // The other guests' xvdb are untouched.
    assert.equal(t.get(`/local/domain/3/device/vbd/${XVDB}/state`), '4');
    const again = await xl('block-detach', 'web', 'xvdb');
    assert.equal(again.code, 1);
    assert.equal(again.stderr, 'xl: Device xvdb not connected.\n');
    const list = await xl('block-list', 'web');
    assert.deepEqual(list.stdout.trimEnd().split('\n').map((l) => l.split(/ +/)[0]), ['Vdev', String(XVDA)]);
  });

  it('xl shutdown -w returns once the guest has shut down; on_poweroff=destroy leaves nothing of it', async () => {
    const r = await xl('shutdown', '-w', 'db');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, 'Shutting down domain 2\nWaiting for 1 domains\nDomain 2 has been shut down, reason code 0\n');
    const t = await tree();
    const left = [...t.keys()].filter((p) => p.startsWith('/local/domain/2') || /^\/local\/domain\/0\/backend\/[a-z]+\/2(\/|$)/.test(p) || p.startsWith('/libxl/2'));
    assert.deepEqual(left, []);
    // The others still run, Connected.
    assert.equal(t.get(`/local/domain/3/device/vif/0/state`), '4');
    const list = await xl('list');
    assert.deepEqual(list.stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/ +/)[0]), ['Domain-0', 'web', 'cache']);
  });

  it('xl pause stops a free-running guest: a shutdown request waits for xl unpause', async () => {
    const node = '/local/domain/3/control/shutdown';
    assert.equal((await xl('pause', 'cache')).code, 0);
    assert.match((await xl('list', 'cache')).stdout, /^cache +3 +128 +1 +--p--- /m);
    // The request as the toolstack writes it, with Debian's xenstore-write.
    const env = { ...process.env, XENSTORED_PATH: socket };
    const w = await run(TOOLS['xenstore-write'].file, [node, 'poweroff'], { env });
    assert.equal(w.code, 0, w.stderr);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await tree()).get(node), 'poweroff', 'a paused guest acked the request');
    assert.equal((await xl('unpause', 'cache')).code, 0);
    // Unpaused, it acks, powers off, and on_poweroff=destroy removes it.
    await waitFor(async () => !(await tree()).has('/local/domain/3'), 'the unpaused guest to shut down', undefined, 200);
    assert.deepEqual((await xl('list')).stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/ +/)[0]), ['Domain-0', 'web']);
  });

  it('xl save writes the file and removes the guest; xl restore brings it back under a new domid, every device Connected; xl restore CONFIG FILE under the name in CONFIG', async () => {
    const file = path.join(dir, 'web.xl');
    const s = await xl('save', 'web', file);
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stderr, /^Saving to .*web\.xl new xl format\nSaved domain 1: \d+ pages, \d+ bytes\n$/);
    assert.ok(existsSync(file));
    assert.ok(![...(await tree()).keys()].some((p) => p.startsWith('/local/domain/1/') || p === '/local/domain/1'), "the saved guest's tree is gone");
    const r = await xl('restore', file);
    assert.equal(r.code, 0, r.stderr);
    const m = /Restored domain web as (\d+)/.exec(r.stderr);
    assert.ok(m, r.stderr);
    const id = Number(m[1]);
    assert.notEqual(id, 1);
    await waitFor(async () => {
      const t = await tree();
      return [`/local/domain/${id}/device/vbd/${XVDA}/state`, `/local/domain/0/backend/vbd/${id}/${XVDA}/state`].every((p) => t.get(p) === '4');
    }, 'the restored guest to reconnect its disk', undefined, 200);
    const again = await xl('restore', file);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /domain with name "web" already exists/);
    // xl restore CONFIG FILE: the guest file's config in place of the saved one - a new name.
    assert.equal((await xl('destroy', 'web')).code, 0);
    const cfg = path.join(dir, 'web2.yaml');
    writeFileSync(cfg, 'name: web2\nmemory: 256\ndisks:\n  - { vdev: xvda, target: web-root, sizeMiB: 64 }\nvifs:\n  - { bridge: xenbr0 }\n');
    const renamed = await xl('restore', cfg, file);
    assert.equal(renamed.code, 0, renamed.stderr);
    const m2 = /Restored domain web2 as (\d+)/.exec(renamed.stderr);
    assert.ok(m2, renamed.stderr);
    const names = (await xl('list')).stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/ +/)[0]);
    assert.ok(names.includes('web2') && !names.includes('web'), names.join(', '));
    await waitFor(async () => (await tree()).get(`/local/domain/${m2[1]}/device/vbd/${XVDA}/state`) === '4', 'the renamed guest to reconnect its disk', undefined, 200);
    assert.equal((await tree()).get(`/local/domain/${m2[1]}/name`), 'web2');
  });

  it('stops on SIGTERM and removes both sockets', async () => {
    assert.ok(existsSync(socket) && existsSync(control));
    host!.child.kill('SIGTERM');
    const r = await host!.exited;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!existsSync(socket), 'xenstored socket left behind');
    assert.ok(!existsSync(control), 'control socket left behind');
  });
});
