// Debian's own `xenstore-control live-update FILE` (xen-utils-4.17) drives live updates of
// xensim's xenstored while dom0 socket clients keep working: a writer loops over writes, reads
// and read-modify-write transactions, a watcher counts its events. Afterwards no write is lost or
// repeated, no watch event lost or doubled, no request failed.
// - against `xensim xenstored`: every update must be a real switch (the daemon logs each new
//   instance). XENSIM_INTEROP_DAEMON=oracle runs it against the real C xenstored 4.17
//   (../shared/oracle), which passes it too (it execs itself with -U each time).
// - against dom0's xenstored in `xensim up` (three guests): afterwards the guests' ring
//   connections still work - xl block-detach and xl shutdown -w go through the guests' xenbus.
// - against a daemon serving its socket and two guests' rings (the guests' xenbus stack on ring
//   pages in this process), the guests looping too: the acceptance 1.
// XENSIM_LU_COUNT sets how many updates (default 20; the acceptance asks for 100).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XenstoredDaemon } from '../../domains/dom0/xenstored/daemon.ts';
import { XsRingConnection } from '../../domains/dom0/xenstored/domain-ring.ts';
import { XenstoredServer } from '../../domains/dom0/xenstored/unix-socket.ts';
import { XenbusRing } from '../../domains/kernel/xenbus-comms.ts';
import { XsHandle } from '../../domains/libs/store/xs.ts';
import {
  Proc, REPO_ROOT, requireTools, run, startTarget, stopAll, targetIsOracle, type Daemon, XEN_BIN,
} from '../helpers/daemons.ts';
import { HANG_MS } from '../helpers/wait.ts';

const XENSTORE_CONTROL = `${XEN_BIN}/xenstore-control`;
const COUNT = Number(process.env.XENSIM_LU_COUNT ?? 20);

/** Keys a looper cycles through: a guest may own 1000 nodes, and a node's child list is limited. */
const SLOTS = 100;

/**
 * A client looping over writes (write i goes to key i mod SLOTS, each read back),
 * read-modify-write transactions and a watch on its directory until stopped; check() then
 * asserts no request failed, every key holds the last write to it, the counter every commit
 * once, and each write and commit fired exactly one watch event.
 */
class Looper {
  private readonly events = new Map<string, number>();
  private readonly errors: string[] = [];
  private written = 0;
  private commits = 0;
  private stopped = false;
  private running: Promise<void> | undefined;

  /** `base`: its directory as the client names it (relative for a guest); `abs` the same, absolute. */
  constructor(private readonly xs: XsHandle, private readonly watcher: XsHandle, private readonly base: string) {
    watcher.on('watch', (p) => this.events.set(p, (this.events.get(p) ?? 0) + 1));
  }

  async start(): Promise<void> {
    await this.xs.write(`${this.base}/count`, '0');
    await this.watcher.watch(this.base, 'w');
    const { xs, base } = this;
    this.running = (async () => {
      while (!this.stopped) {
        try {
          const i = this.written + 1;
          const key = `${base}/k${i % SLOTS}`;
          await xs.write(key, String(i));
          this.written = i;
          const back = (await xs.read(key)).toString('latin1');
          if (back !== String(i)) this.errors.push(`read ${key}: ${back}, wrote ${i}`);
          await xs.transaction(async (tx) => {
            const v = Number((await xs.read(`${base}/count`, tx)).toString('latin1'));
            await xs.write(`${base}/count`, String(v + 1), tx);
          });
          this.commits++;
        } catch (e) {
          this.errors.push(String(e));
          if (this.errors.length > 20) break;
        }
      }
    })();
  }

  async check(): Promise<{ written: number; commits: number }> {
    this.stopped = true;
    // A request that never gets its answer hangs the loop: a failure, not a wait.
    let guard: NodeJS.Timeout | undefined;
    const hung = new Promise<never>((_, reject) => {
      guard = setTimeout(() => reject(new Error(`${this.base}: the client hung (a request never answered)`)), HANG_MS);
    });
    try {
      await Promise.race([this.running, hung]);
    } finally {
      clearTimeout(guard);
    }
    const { xs, base, events } = this;
    // The watcher's own request comes back after every event queued for it before.
    const count = Number((await this.watcher.read(`${base}/count`)).toString('latin1'));
    const keys = (await xs.directory(base)).filter((k) => k.startsWith('k'));
    assert.deepEqual(this.errors, [], `${base}: errors`);
    assert.ok(this.written > 0 && this.commits > 0, `${base}: the client made progress (${this.written} writes, ${this.commits} commits)`);
    assert.equal(count, this.commits, `${base}: each committed increment once`);
    const last = new Map<string, number>();
    const writes = new Map<string, number>();
    for (let i = 1; i <= this.written; i++) {
      const k = `k${i % SLOTS}`;
      last.set(k, i);
      writes.set(k, (writes.get(k) ?? 0) + 1);
    }
    assert.deepEqual(keys.sort(), [...last.keys()].sort(), `${base}: the keys written`);
    for (const [k, i] of last) {
      assert.equal((await xs.read(`${base}/${k}`)).toString('latin1'), String(i), `${base}/${k} holds the last write to it`);
      assert.equal(events.get(`${base}/${k}`), writes.get(k), `${base}/${k}: one event per write`);
    }
    assert.equal(events.get(`${base}/count`), this.commits, `${base}: one event per commit`);
    assert.equal(events.get(base), 1, `${base}: the initial event`);
    return { written: this.written, commits: this.commits };
  }
}

/** `updates` live updates through xenstore-control against `socket`. */
async function liveUpdates(socket: string, updates: number): Promise<void> {
  const env = { ...process.env, XENSTORED_PATH: socket };
  for (let u = 0; u < updates; u++) {
    const r = await run(XENSTORE_CONTROL, ['live-update', `${XEN_BIN}/xenstored`], { env });
    assert.equal(r.code, 0, `update ${u + 1}: ${r.stdout}${r.stderr}`);
  }
}

/** Live updates while a dom0 socket client loops; then the client's checks. */
async function updatesUnderLoad(socket: string, updates: number): Promise<void> {
  const writer = await XsHandle.open(socket);
  const watcher = await XsHandle.open(socket);
  const loop = new Looper(writer, watcher, '/loop');
  await loop.start();
  try {
    await liveUpdates(socket, updates);
  } finally {
    await loop.check();
    await writer.close();
    await watcher.close();
  }
}

/** An event channel between the test's ring ends: the handler runs once per batch of notifies. */
class Port {
  private pending = false;
  handler: (() => void) | undefined;
  readonly notify = (): void => {
    if (this.pending) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      this.handler?.();
    });
  };
}

describe('live update through Debian\'s xenstore-control (C 4.17 protocol)', function () {
  this.timeout(600_000);

  describe('xensim xenstored', () => {
    let d: Daemon | undefined;
    afterEach(async () => stopAll(d));

    it(`${COUNT} live updates under a looping socket client: 0 errors, no lost or repeated write, no lost watch event`, async () => {
      requireTools('xenstored');
      d = await startTarget('c');
      await updatesUnderLoad(d.socket, COUNT);
      if (!targetIsOracle()) {
        const switches = d.log().match(/live-update: new instance read/g)?.length ?? 0;
        assert.equal(switches, COUNT, `the daemon switched instances ${switches} times:\n${d.log()}`);
      }
    });
  });

  describe('xenstored serving a dom0 socket and two guests\' rings', () => {
    let dir: string | undefined;
    let server: XenstoredServer | undefined;
    const handles: XsHandle[] = [];
    after(async () => {
      for (const h of handles) await h.close();
      await server?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it(`${COUNT} live updates while a dom0 client and two guests loop over writes, reads, transactions and watches: no error, no lost or repeated write, no lost event`, async () => {
      if (targetIsOracle()) return; // the guests' rings are in-process: xensim only
      dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-lu-rings-'));
      const socket = path.join(dir, 'sock');
      const daemon = new XenstoredDaemon({ clock: () => Math.floor(Date.now() / 1000), timer: (fn, ms) => void setTimeout(fn, ms) });
      server = new XenstoredServer({ socketPath: socket }, daemon);
      await server.listen();
      const dom0 = await XsHandle.open(socket);
      handles.push(dom0);
      const loops: Looper[] = [];
      for (const domid of [1, 2]) {
        // As libxl does: the guest's home, then INTRODUCE; the ring page and event channels are the test's.
        await dom0.mkdir(`/local/domain/${domid}`);
        await dom0.setPerms(`/local/domain/${domid}`, [`n${domid}`]);
        await dom0.introduce(domid, 0x1000 + domid, 10 + domid);
        const conn = daemon.xs.domainConnection(domid)!;
        const page = new Uint8Array(new SharedArrayBuffer(4096));
        const toGuest = new Port();
        const toServer = new Port();
        const ring = new XsRingConnection(daemon, conn, page, toGuest.notify);
        ring.introduce();
        toServer.handler = () => ring.kick();
        const guestRing = new XenbusRing(page, toServer.notify);
        toGuest.handler = () => guestRing.onEvent();
        const xs = XsHandle.fromStream(guestRing, `dom${domid}`);
        handles.push(xs);
        // One handle for requests and watch: a guest kernel's xenbus has one ring.
        loops.push(new Looper(xs, xs, 'data'));
      }
      const writer = await XsHandle.open(socket);
      const watcher = await XsHandle.open(socket);
      handles.push(writer, watcher);
      loops.push(new Looper(writer, watcher, '/loop'));
      let switches = 0;
      daemon.onLiveUpdate = () => void switches++;
      for (const l of loops) await l.start();
      try {
        await liveUpdates(socket, COUNT);
      } finally {
        for (const l of loops) await l.check();
      }
      assert.equal(switches, COUNT, 'each update a switch to a new instance');
    });
  });

  describe('xensim xenstored: -c gives the new instance its command line', () => {
    let d: Daemon | undefined;
    afterEach(async () => stopAll(d));

    it('quota options on -c apply after the update; a quota set by CONTROL and not on -c is kept', async function () {
      if (targetIsOracle()) return; // the real daemon would exec itself with these options: nothing to compare
      d = await startTarget('c', { args: ['-Q', 'nodes=300'] });
      const ctl = (...args: string[]) => run(XENSTORE_CONTROL, args, { env: d!.env });
      assert.equal((await ctl('quota', 'set', 'watches', '99')).code, 0);
      const r = await ctl('live-update', '-c', '-Q nodes=55 -W 7', `${XEN_BIN}/xenstored`);
      assert.equal(r.code, 0, r.stderr);
      const q = (await ctl('quota')).stdout;
      assert.match(q, /^nodes +: +55 /m);
      assert.match(q, /^watches +: +7 /m);
      const r2 = await ctl('live-update', `${XEN_BIN}/xenstored`);
      assert.equal(r2.code, 0, r2.stderr);
      const q2 = (await ctl('quota')).stdout;
      assert.match(q2, /^nodes +: +300 /m, 'without -c: the original command line');
      assert.match(q2, /^watches +: +7 /m, 'not on that command line: as recorded');
    });
  });

  describe('dom0\'s xenstored in xensim up', () => {
    let dir: string | undefined;
    let host: Proc | undefined;
    after(async () => {
      if (host && host.child.exitCode === null && host.child.signalCode === null) {
        host.child.kill('SIGTERM');
        const t = setTimeout(() => host?.kill(), 5000);
        await host.exited;
        clearTimeout(t);
      }
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it(`${COUNT} live updates under a looping socket client; the guests' rings still carry xl's device and shutdown work`, async () => {
      // xensim up has no oracle counterpart: under XENSIM_INTEROP_DAEMON=oracle only the first spec applies.
      if (targetIsOracle()) return;
      requireTools('xenstored');
      dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-lu-up-'));
      const socket = path.join(dir, 'sock');
      const bin = path.join(REPO_ROOT, 'sim/bin/xensim.mjs');
      const env = { ...process.env };
      delete env.XENSIM_CONTROL;
      host = new Proc(process.execPath, [bin, 'up', 'scenarios/hosts/three-guests.yaml', '--socket', socket], { env });
      await host.until((s) => s.includes('xensim: ready'), '`xensim up` to report ready');
      await updatesUnderLoad(socket, COUNT);
      const xl = (...args: string[]) => run(process.execPath, [bin, 'xl', ...args], { env: { ...env, XENSIM_CONTROL: `${socket}.xl` } });
      const bd = await xl('block-detach', 'web', 'xvdb');
      assert.equal(bd.code, 0, bd.stderr);
      const sd = await xl('shutdown', '-w', 'db');
      assert.equal(sd.code, 0, sd.stderr);
      assert.equal(sd.stderr, 'Shutting down domain 2\nWaiting for 1 domains\nDomain 2 has been shut down, reason code 0\n');
      const list = await xl('list');
      assert.deepEqual(list.stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/ +/)[0]), ['Domain-0', 'web', 'cache']);
    });
  });
});
