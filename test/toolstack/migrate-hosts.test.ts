// xl migrate between two `xensim up` hosts, each its own process, as a user runs them: the guest
// writes its disk (a file both hosts name: shared storage) and dirties its memory, `xensim xl migrate` moves it to the other host's control
// socket (and, with -s '', through a `xensim xl migrate-receive` command, stream captured for
// Debian's verify-stream-v2). Afterwards the destination holds memory equal to the source's at its
// final suspend, the devices are Connected at both ends, the guest's disk has what it wrote and its
// watch fires with its token; the source has no domain and no xenstore nodes left for it. Over TCP
// on 127.0.0.1 too (the destination's --migrate-listen), where a peer sending garbage is told why
// and cut off while the host goes on.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { xlRequest } from '../../sim/xl-control.ts';
import type { NodeDump } from '../../domains/dom0/toolstack/toolstack.ts';
import { writeSaveImage } from '../../domains/dom0/toolstack/migration/save-image.ts';
import { page, pvImage, pvState } from '../helpers/save-image.ts';

const XENSIM = fileURLToPath(new URL('../../sim/bin/xensim.mjs', import.meta.url));
const VERIFY_STREAM_V2 = '/usr/lib/xen-4.17/bin/verify-stream-v2';
const XEN_PYTHONPATH = '/usr/lib/xen-4.17/lib/python';

interface UpHost {
  readonly proc: ChildProcess;
  readonly control: string;
  /** With --migrate-listen: the tcp:// URL it printed. */
  readonly tcp?: string;
  /** What the host wrote on stderr so far (its log). */
  err(): string;
}

/** Boots `xensim up CONFIG --control SOCK` and waits for it to say it is ready. */
async function up(dir: string, name: string, config: string, ...extra: string[]): Promise<UpHost> {
  const cfg = path.join(dir, `${name}.yaml`);
  writeFileSync(cfg, config);
  const control = path.join(dir, `${name}.sock`);
  const proc = spawn(process.execPath, [XENSIM, 'up', cfg, '--control', control, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr!.on('data', (c: Buffer) => void (err += c.toString()));
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('xensim: ready')) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`xensim up ${name} exited (${code}): ${err}`)));
  });
  return { proc, control, tcp: /^MIGRATE_LISTEN=(\S+)$/m.exec(out)?.[1], err: () => err };
}

/** `xensim xl --host SOCK ARGS...` as a user runs it. */
function xl(host: UpHost, ...args: string[]): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [XENSIM, 'xl', '--host', host.control, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => void (stdout += c.toString()));
    p.stderr.on('data', (c: Buffer) => void (stderr += c.toString()));
    p.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * The domain's disks and NICs once both ends say Connected, asking at most 50 times: the resumed
 * guest reconnects its frontends on its own after `xl migrate` returns, and a lockstep host runs
 * its guests on as it answers each request.
 */
async function devicesConnected(h: UpHost, domain: string): Promise<{ state: number; beState: number }[]> {
  let devs: { state: number; beState: number }[] = [];
  for (let i = 0; i < 50; i++) {
    const blk = await xlRequest(h.control, 'block-list', { domain }) as { state: number; beState: number }[];
    const nic = await xlRequest(h.control, 'network-list', { domain }) as { state: number; beState: number }[];
    devs = [...blk, ...nic];
    if (devs.every((d) => d.state === 4 && d.beState === 4)) break;
  }
  return devs;
}

const guest = <T = Record<string, unknown>>(h: UpHost, domain: string, command: Record<string, unknown>): Promise<T> =>
  xlRequest(h.control, 'guest', { domain, command }) as Promise<T>;

/** The guest: its disk a file both hosts reach (shared storage, which xl migrate requires). */
const guestConfig = (dir: string): string => `
  - name: mover
    disks:
      - { vdev: xvda, target: ${path.join(dir, 'mover-root.img')}, sizeMiB: 4 }
    vifs:
      - { bridge: xenbr0 }
`;

describe('xl migrate between two xensim up processes', function () {
  this.timeout(180_000);
  let dir: string;
  let a: UpHost;
  let b: UpHost;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'xensim-migrate-'));
    // The destination already runs a guest: the incoming one gets another domid than it had.
    [a, b] = await Promise.all([
      up(dir, 'a', `seed: 11\nguests:${guestConfig(dir)}`),
      up(dir, 'b', 'seed: 12\nguests:\n  - name: resident\n'),
    ]);
  });
  after(() => {
    for (const h of [a, b]) if (h && h.proc.exitCode === null) h.proc.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });

  it('moves a guest under disk I/O and a dirtying workload; it runs on at the destination with equal memory, its devices, its data and its watches', async () => {
    const src = (await xlRequest(a.control, 'domid', { domain: 'mover' }) as { domid: number }).domid;
    const data = Buffer.from(Uint8Array.from({ length: 4096 }, (_, i) => (i * 31 + 7) & 0xff));
    const w = await guest<{ status: number }>(a, 'mover', { cmd: 'blk', device: 'vbd/51712', op: 'write', sector: 16, sectors: 8, data: data.toString('base64') });
    assert.equal(w.status, 0);
    await guest(a, 'mover', { cmd: 'mem-fill', pages: 48 });
    await guest(a, 'mover', { cmd: 'xs-watch', path: 'data/probe', token: 'tok-mig' });
    // A lockstep host runs its guests' due timers to the end whenever it lets time pass, so a
    // timer workload started now would be over before the migration; instead user space is told
    // to dirty 8 pages, again and again, one request at a time, while `xl migrate` runs (the
    // request the suspended or gone guest never answers is left pending: no more are sent). How
    // many land in which round is up to the machine's speed: only the outcome is asserted here
    // (test/toolstack/migrate.test.ts asserts the rounds). One at a time, so a loaded machine
    // gets no flood of requests piling up in the host while it migrates.
    let migrating = true;
    void (async () => {
      while (migrating) await guest(a, 'mover', { cmd: 'mem-dirty', pages: 8, everyNs: 1000, times: 1 }).catch(() => undefined);
    })();
    let r;
    try {
      r = await xl(a, 'migrate', 'mover', b.control);
    } finally {
      migrating = false;
    }
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /migration sender: Target reports successful startup\.\nMigration successful\./);
    const m = /Migrated domain (\d+): (\d+) bytes, (\d+) live round\(s\) of ([\d/]+) pages, (\d+) after suspend, downtime [\d.]+ ms, memory sha256 ([0-9a-f]{64})/.exec(r.stderr);
    assert.ok(m, r.stderr);

    // The source: no domain, nothing of it in xenstore.
    assert.deepEqual((await xlRequest(a.control, 'list', {}) as { name: string }[]).map((d) => d.name), ['Domain-0']);
    const left = (await xlRequest(a.control, 'xenstore-ls', { path: '/' }) as NodeDump[]).map((n) => n.path)
      .filter((p) => p.startsWith(`/local/domain/${src}`) || p.startsWith(`/libxl/${src}`) || new RegExp(`/backend/[a-z]+/${src}(/|$)`).test(p));
    assert.deepEqual(left, [], "the source's tree is clean");

    // The destination: a new domid, memory as the source's at its final suspend, devices Connected.
    const dst = (await xlRequest(b.control, 'domid', { domain: 'mover' }) as { domid: number }).domid;
    assert.notEqual(dst, src);
    const recv = new RegExp(`migrate-receive: domain ${dst} running \\((\\d+) pages, (\\d+) resent, memory sha256 ([0-9a-f]{64})\\)`).exec(b.err());
    assert.ok(recv, b.err());
    assert.equal(recv[3], m[6], 'memory at the destination before it ran = the source\'s at its final suspend');
    assert.equal(Number(recv[2]), Number(m[5]) + [...m[4].split('/')].slice(1).reduce((x, y) => x + Number(y), 0), 'every page after the first round counted as resent');
    const devs = await devicesConnected(b, 'mover');
    for (const dev of devs) assert.deepEqual([dev.state, dev.beState], [4, 4], 'frontend and backend Connected');
    assert.equal(devs.length, 2);
    const seen = await guest<{ resumes: number; devices: { stateName: string }[] }>(b, 'mover', { cmd: 'devices' });
    assert.equal(seen.resumes, 1, 'the kernel resumed in a new domain');
    const back = await guest<{ status: number; data: string }>(b, 'mover', { cmd: 'blk', device: 'vbd/51712', op: 'read', sector: 16, sectors: 8 });
    assert.equal(back.status, 0);
    assert.ok(Buffer.from(back.data, 'base64').equals(data), 'the (shared) disk has what the guest wrote before it moved');

    // Its watch, registered again by xs_resume, fires with its token.
    await guest(b, 'mover', { cmd: 'xs-events' });
    await guest(b, 'mover', { cmd: 'xs', type: 11, payload: 'data/probe\0x' });
    const events: { path: string; token: string }[] = [];
    for (let i = 0; i < 50 && !events.some((e) => e.token === 'tok-mig'); i++) {
      events.push(...(await guest<{ events: { path: string; token: string }[] }>(b, 'mover', { cmd: 'xs-events' })).events);
    }
    assert.ok(events.some((e) => e.token === 'tok-mig' && e.path === 'data/probe'), `watch fired with its token: ${JSON.stringify(events)}`);
  });

  it("and back through `xensim xl migrate-receive` run as xl's command (-s ''): the captured stream passes Debian's verify-stream-v2", async () => {
    const stream = path.join(dir, 'stream.bin');
    const receiver = `tee ${stream} | ${process.execPath} ${XENSIM} xl --host ${a.control} migrate-receive`;
    const r = await xl(b, 'migrate', '-s', '', 'mover', receiver);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Migration successful\./);
    assert.deepEqual((await xlRequest(b.control, 'list', {}) as { name: string }[]).map((d) => d.name), ['Domain-0', 'resident']);
    const blk = (await xlRequest(a.control, 'block-list', { domain: 'mover' }) as { state: number; beState: number }[]);
    assert.deepEqual(blk.map((d) => [d.state, d.beState]), [[4, 4]]);
    const seen = await guest<{ resumes: number }>(a, 'mover', { cmd: 'devices' });
    assert.equal(seen.resumes, 2, 'resumed twice: there and back');
    // What the receiver read: the stream, then the sender's "permission to go" (44 bytes).
    const bytes = readFileSync(stream);
    const bytesSent = Number(/Migrated domain \d+: (\d+) bytes/.exec(r.stderr)![1]);
    assert.equal(bytes.length, bytesSent + 44);
    writeFileSync(`${stream}.xl`, bytes.subarray(0, bytesSent));
    const v = spawnSync(VERIFY_STREAM_V2, ['-v', '-f', 'xl', '-i', `${stream}.xl`], { env: { ...process.env, PYTHONPATH: XEN_PYTHONPATH }, encoding: 'utf8', timeout: 60_000 });
    assert.equal(v.status, 0, `verify-stream-v2 refused the stream:\n${v.stdout}${v.stderr}`);
    assert.match(v.stdout + v.stderr, /Libxl Record: End/);
  });
});

describe('xl migrate over TCP on 127.0.0.1 (a --migrate-listen host)', function () {
  this.timeout(180_000);
  let dir: string;
  let a: UpHost;
  let b: UpHost;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'xensim-migrate-tcp-'));
    [a, b] = await Promise.all([
      up(dir, 'a', `seed: 21\nguests:${guestConfig(dir)}`, '--migrate-listen', '127.0.0.1:0'),
      up(dir, 'b', 'seed: 22\nguests:\n  - name: resident\n', '--migrate-listen', '127.0.0.1:0'),
    ]);
  });
  after(() => {
    for (const h of [a, b]) if (h && h.proc.exitCode === null) h.proc.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });

  it('a listener on a non-loopback address is refused unless asked for', async () => {
    const proc = spawn(process.execPath, [XENSIM, 'up', path.join(dir, 'b.yaml'), '--control', path.join(dir, 'c.sock'), '--migrate-listen', '0.0.0.0:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr.on('data', (c: Buffer) => void (err += c.toString()));
    const code = await new Promise<number | null>((r) => proc.once('exit', r));
    assert.equal(code, 1);
    assert.match(err, /0\.0\.0\.0 is not a loopback address/);
  });

  it('a peer sending garbage is told why and cut off; the host stays up', async () => {
    assert.match(b.tcp ?? '', /^tcp:\/\/127\.0\.0\.1:\d+$/, 'the listener printed where it listens');
    const port = Number(/:(\d+)$/.exec(b.tcp!)![1]);
    const reply = await new Promise<string>((resolve, reject) => {
      const s = net.createConnection({ host: '127.0.0.1', port });
      let got = '';
      s.on('data', (c: Buffer) => void (got += c.toString('latin1')));
      s.once('error', reject);
      s.once('close', () => resolve(got));
      s.write('GET / HTTP/1.0\r\n\r\n'.padEnd(64, 'x'));
    });
    assert.ok(reply.startsWith('xl migration receiver ready, send binary domain data.\n'), `xl's banner first: ${JSON.stringify(reply)}`);
    assert.match(reply, /xensim migrate-receive: migration target: Domain creation failed: .*\n$/);
    assert.equal(b.proc.exitCode, null, 'the host is still running');
    assert.deepEqual((await xlRequest(b.control, 'list', {}) as { name: string }[]).map((d) => d.name), ['Domain-0', 'resident']);
    assert.match(b.err(), /migrate-receive: 127\.0\.0\.1:\d+: migration target: Domain creation failed/);

    // One migration at a time: while a peer holds the listener, another is told it is busy.
    const first = net.createConnection({ host: '127.0.0.1', port });
    let firstGot = '';
    const firstClosed = new Promise<void>((r) => first.once('close', () => r()));
    await new Promise<void>((resolve) => first.on('data', (c: Buffer) => {
      firstGot += c.toString('latin1');
      if (firstGot.includes('\n')) resolve();
    }));
    const busy = await new Promise<string>((resolve, reject) => {
      const s = net.createConnection({ host: '127.0.0.1', port });
      let got = '';
      s.on('data', (c: Buffer) => void (got += c.toString('latin1')));
      s.once('error', reject);
      s.once('close', () => resolve(got));
    });
    assert.equal(busy, 'xensim migrate-receive: busy: another migration is being received here\n');
    first.end();
    await firstClosed;
    assert.match(firstGot, /xensim migrate-receive: migration target: Domain creation failed: xl stream: Stream truncated: 0 bytes of xl header/);

        // A well-formed stream whose one page sits at pfn 100000: no host builds a domain that big
    // for a guest whose config gives it 64 pages.
    const chunks: Uint8Array[] = [];
    const n = 100_001;
    writeSaveImage({
      ...pvImage(1), config: JSON.stringify({ name: 'huge' }),
      p2mFrames: { startPfn: 0, endPfn: n - 1, p2mPfns: Array.from({ length: Math.floor((n - 1) / 512) + 1 }, (_, i) => BigInt(n + i)) },
      checkpoints: [{ rounds: [[page(0), page(n - 1)]], state: pvState(1) }],
    }, (c) => chunks.push(c));
    const huge = await new Promise<string>((resolve, reject) => {
      const s = net.createConnection({ host: '127.0.0.1', port });
      let got = '';
      s.on('data', (c: Buffer) => void (got += c.toString('latin1')));
      s.once('error', reject);
      s.once('close', () => resolve(got));
      s.end(Buffer.concat(chunks));
    });
    assert.match(huge, /xensim migrate-receive: migration target: Domain creation failed: .*pfn 100000 outside the domain's maximum \(64 pages/);
    assert.deepEqual((await xlRequest(b.control, 'list', {}) as { name: string }[]).map((d) => d.name), ['Domain-0', 'resident']);
  });

  it('moves a guest to tcp://127.0.0.1:PORT: memory equal, devices Connected, the source gone', async () => {
    const src = (await xlRequest(a.control, 'domid', { domain: 'mover' }) as { domid: number }).domid;
    await guest(a, 'mover', { cmd: 'mem-fill', pages: 32 });
    const r = await xl(a, 'migrate', 'mover', b.tcp!);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Migration successful\./);
    const m = /memory sha256 ([0-9a-f]{64})/.exec(r.stderr);
    assert.ok(m, r.stderr);
    assert.deepEqual((await xlRequest(a.control, 'list', {}) as { name: string }[]).map((d) => d.name), ['Domain-0']);
    const left = (await xlRequest(a.control, 'xenstore-ls', { path: '/' }) as NodeDump[]).map((n) => n.path)
      .filter((p) => p.startsWith(`/local/domain/${src}`) || new RegExp(`/backend/[a-z]+/${src}(/|$)`).test(p));
    assert.deepEqual(left, [], "the source's tree is clean");
    const dst = (await xlRequest(b.control, 'domid', { domain: 'mover' }) as { domid: number }).domid;
    const recv = new RegExp(`migrate-receive: domain ${dst} running \\(\\d+ pages, \\d+ resent, memory sha256 ([0-9a-f]{64})\\)`).exec(b.err());
    assert.ok(recv, b.err());
    assert.equal(recv[1], m[1], "memory at the destination = the source's at its final suspend");
    const devs = await devicesConnected(b, 'mover');
    for (const dev of devs) assert.deepEqual([dev.state, dev.beState], [4, 4], 'frontend and backend Connected');
    assert.equal(devs.length, 2);
    const seen = await guest<{ resumes: number }>(b, 'mover', { cmd: 'devices' });
    assert.equal(seen.resumes, 1);
  });

  it("and back through a netcat-like command as xl's receiver (-s '' DOM 'nc 127.0.0.1 PORT')", async () => {
    // nc is not installed everywhere: a few lines of node do what `nc -N ADDR PORT` does.
    const nc = path.join(dir, 'nc.mjs');
    writeFileSync(nc, [
      "import net from 'node:net';",
      'const s = net.createConnection({ host: process.argv[2], port: Number(process.argv[3]) });',
      's.pipe(process.stdout);',
      'process.stdin.pipe(s);',
      "s.on('close', () => process.exit(0));",
      '',
    ].join('\n'));
    const [, host, port] = /^tcp:\/\/(.+):(\d+)$/.exec(a.tcp!)!;
    const r = await xl(b, 'migrate', '-s', '', 'mover', `${process.execPath} ${nc} ${host} ${port}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Migration successful\./);
    assert.deepEqual((await xlRequest(b.control, 'list', {}) as { name: string }[]).map((d) => d.name), ['Domain-0', 'resident']);
    const devs = await devicesConnected(a, 'mover');
    assert.deepEqual(devs.map((d) => [d.state, d.beState]), [[4, 4], [4, 4]]);
    assert.equal((await guest<{ resumes: number }>(a, 'mover', { cmd: 'devices' })).resumes, 2, 'resumed twice: there and back');
  });

  it('with --xenstore seed (the seed\'s migration, not Xen) the node the guest wrote is at the destination too', async () => {
    const w = await guest<{ error?: string }>(a, 'mover', { cmd: 'xs', type: 11, payload: 'data/seed-node\0before the move' });
    assert.equal(w.error, undefined);
    const r = await xl(a, 'migrate', '--xenstore', 'seed', 'mover', b.tcp!);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /xenstore state of domain \d+ in the stream \(the seed's migration, not Xen's\)/);
    assert.match(b.err(), /migration target: xenstore state carried over \(the seed's migration, not Xen's\): [1-9]\d* nodes/);
    const dst = (await xlRequest(b.control, 'domid', { domain: 'mover' }) as { domid: number }).domid;
    const node = (await xlRequest(b.control, 'xenstore-ls', { path: `/local/domain/${dst}/data/seed-node` }) as NodeDump[])[0];
    assert.deepEqual([node?.value, node?.perms], ['before the move', [`n${dst}`]]);
    const bad = await xl(b, 'migrate', '--xenstore', 'all', 'mover', a.tcp!);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /Allowed choices are xen, seed/);
  });
});
