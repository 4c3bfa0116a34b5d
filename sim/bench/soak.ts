// Bench section `soak`: hostile guests against xensim's standalone xenstored (a child process,
// `xensim xenstored --guest-dir`, so RSS is the daemon's own), on each profile. Guests reach it on
// their guest-dir sockets (DIR/<domid>, the transport that stands for a ring):
//  - replies: writes requests without end and never reads a reply;
//  - events:  watches the churned subtree with a 3.9 KB token and never reads;
//  - txns:    opens every transaction its quota allows, reads the churned nodes in each, and
//             holds them open.
// Meanwhile dom0 churns (writes under /churn as fast as its replies come) and a well-behaved dom0
// client times read+write pairs. Each profile runs an idle phase (churn and probe only), the
// hostile phase (RSS sampled ten times), then the guests go (sockets closed, RELEASE) and RSS is
// read again after a pause. Bounds from issue 14: the probe's p99 within 2x of idle, RSS back
// within 10 % of its start.
// Not measured here (left for later): guests on real rings (a HostRuntime with hostile guest
// kernels) and the 10-minute mixed-churn run with domains coming and going.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { XsHandle } from '../../domains/libs/store/xs.ts';
import { encodeMessage, nulJoin, XsdSockmsgType as T } from '../../hypervisor/public/io/xs_wire.ts';
import { type BenchSection, REPO_ROOT, isAlive, makeTempDir, memOf, onCleanup, sleep, table } from './common.ts';

type Profile = 'c' | 'ocaml';
type Kind = 'replies' | 'events' | 'txns';
// The transaction holders first: they need replies to set up, which a flood may slow down.
const KINDS: readonly Kind[] = ['txns', 'events', 'replies'];

interface Daemon { readonly pid: number; readonly socket: string; readonly guestDir: string; stop(): void }

async function startDaemon(profile: Profile): Promise<Daemon> {
  const dir = makeTempDir('soak');
  const socket = join(dir.path, 'socket');
  const guestDir = join(dir.path, 'guests');
  const log = openSync(join(dir.path, 'xenstored.log'), 'w');
  const args = ['--import', './scripts/tsx-preload.mjs', 'sim/bin/xensim.mjs', 'xenstored', '--socket', socket, '--guest-dir', guestDir, '--profile', profile];
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', log, log] });
  closeSync(log);
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not spawn xensim xenstored');
  const stop = onCleanup(() => {
    if (isAlive(pid)) child.kill('SIGKILL');
    dir.remove();
  });
  const deadline = Date.now() + 60_000;
  while (!existsSync(socket)) {
    if (Date.now() > deadline || !isAlive(pid)) throw new Error(`xensim xenstored did not start (see ${dir.path})`);
    await sleep(100);
  }
  mkdirSync(guestDir, { recursive: true });
  return { pid, socket, guestDir, stop };
}

const rssMb = (pid: number): number => memOf(pid).rss / 2 ** 20;

function p99(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))];
}

interface Load {
  /** The probe's latencies (ms). */
  readonly lat: number[];
  /** dom0's churn writes answered. */
  readonly writes: number;
  /** The churn's last write was still unanswered at the end (oxenstored stopped reading it). */
  readonly held: boolean;
}

/** dom0 churn and the timed probe, until `until()` says stop. */
async function load(socket: string, until: () => boolean): Promise<Load> {
  const churn = await XsHandle.open(socket);
  const probe = await XsHandle.open(socket);
  const lat: number[] = [];
  const value = 'v'.repeat(100);
  let writes = 0;
  let held = false;
  try {
    let churnDone = false;
    const churning = (async () => {
      for (let i = 0; !until(); i++) {
        await churn.write(`/churn/k${i % 100}`, `${value}${i}`);
        writes++;
      }
    })().finally(() => void (churnDone = true));
    for (let i = 0; !until(); i++) {
      const t0 = performance.now();
      await probe.write('/probe/x', String(i));
      await probe.read('/probe/x');
      lat.push(performance.now() - t0);
    }
    // oxenstored stops reading a writer whose events wait for a guest that never reads them, and
    // does not read it again: its last write may never be answered.
    await Promise.race([churning, sleep(2000)]);
    held = !churnDone;
  } finally {
    await churn.close();
    await probe.close();
  }
  return { lat, writes, held };
}

/** One hostile guest on DIR/<domid>: what it does until told to go, and how it goes. */
async function hostile(kind: Kind, path: string, domid: number): Promise<() => Promise<void>> {
  if (kind === 'txns') {
    const xs = await XsHandle.open(path);
    for (let i = 0; i < 20; i++) {
      try {
        const tx = await xs.transactionStart();
        for (let k = 0; k < 10; k++) await xs.read(`/churn/k${k}`, tx);
      } catch (e) {
        // The transaction quota (ENOSPC in C, EQUOTA in oxenstored) ends it; anything else is news.
        if (!/ENOSPC|EQUOTA/.test(String(e))) throw e;
        break;
      }
    }
    return () => xs.close();
  }
  const s: Socket = connect(path);
  await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  s.on('error', () => undefined);
  // Never reads: pause the socket so nothing is taken from the kernel's receive buffer.
  s.pause();
  let reqId = 1;
  let stopped = false;
  const msg = (type: T, payload: Uint8Array): Uint8Array => encodeMessage({ type, req_id: reqId++, tx_id: 0, payload });
  if (kind === 'events') {
    s.write(msg(T.XS_WATCH, nulJoin('/churn', `tok${domid}-${'t'.repeat(3900)}`)));
  } else {
    const req = msg(T.XS_READ, nulJoin('/churn/k1'));
    const pump = (): void => {
      // What this process would buffer on its side is not the daemon's: keep ours small.
      while (!stopped && s.writableLength < 1 << 20) s.write(req);
      if (!stopped) setTimeout(pump, 10);
    };
    pump();
  }
  return async () => {
    stopped = true;
    s.destroy();
  };
}

interface Result {
  readonly profile: Profile;
  readonly guests: number;
  readonly rssStart: number;
  readonly rssIdleEnd: number;
  readonly rssSeries: number[];
  readonly rssAfter: number;
  readonly p99Idle: number;
  readonly p99Hostile: number;
  readonly churnIdle: number;
  readonly churnHostile: number;
  readonly churnHeld: boolean;
}

const note = (s: string): void => void process.stderr.write(`soak: ${s}\n`);

async function soak(profile: Profile, kinds: readonly Kind[], perKind: number, phaseMs: number, settleMs: number): Promise<Result> {
  const d = await startDaemon(profile);
  note(`${profile}: daemon ${d.pid} up`);
  try {
    await sleep(1000);
    const rssStart = rssMb(d.pid);
    // Guests may read (and watch) what dom0 churns: owner dom0, everyone else read.
    const setup = await XsHandle.open(d.socket);
    await setup.write('/churn', '');
    await setup.setPerms('/churn', ['r0']);
    for (let k = 0; k < 100; k++) await setup.write(`/churn/k${k}`, '');
    await setup.close();
    let end = performance.now() + phaseMs;
    const idle = await load(d.socket, () => performance.now() > end);
    const rssIdleEnd = rssMb(d.pid);
    note(`${profile}: idle phase done (${idle.lat.length} probes, ${idle.writes} churn writes)`);
    const dom0 = await XsHandle.open(d.socket);
    const leave: (() => Promise<void>)[] = [];
    const domids: number[] = [];
    try {
      let domid = 1;
      for (const kind of KINDS.filter((k) => kinds.includes(k))) {
        for (let i = 0; i < perKind; i++, domid++) {
          await dom0.introduce(domid, 4711 + domid, 9 + domid);
          domids.push(domid);
          leave.push(await hostile(kind, join(d.guestDir, String(domid)), domid));
          note(`${profile}: guest ${domid} (${kind}) in`);
        }
      }
      const series: number[] = [];
      end = performance.now() + phaseMs;
      const sampler = (async () => {
        for (let i = 1; i <= 10; i++) {
          await sleep(phaseMs / 10);
          series.push(rssMb(d.pid));
        }
      })();
      const during = await load(d.socket, () => performance.now() > end);
      await sampler;
      note(`${profile}: hostile phase done (${during.lat.length} probes, ${during.writes} churn writes${during.held ? ', the churn held' : ''})`);
      for (const go of leave) await go();
      for (const id of domids) await dom0.release(id);
      await dom0.rm('/churn');
      await sleep(settleMs);
      return {
        profile, guests: domids.length, rssStart, rssIdleEnd, rssSeries: series, rssAfter: rssMb(d.pid),
        p99Idle: p99(idle.lat), p99Hostile: p99(during.lat),
        churnIdle: idle.writes, churnHostile: during.writes, churnHeld: during.held,
      };
    } finally {
      await dom0.close();
    }
  } finally {
    d.stop();
  }
}

export const soakSection: BenchSection = {
  name: 'soak',
  title: 'Hostile guests on guest-dir sockets (never read replies, never read events, hold transactions) while dom0 churns',
  parts: ['hostile'],
  async run(opts, parts, out) {
    if (!parts.has('hostile')) return;
    const phaseMs = Number(opts.values['soak-seconds'] ?? (opts.quick ? 20 : 120)) * 1000;
    const perKind = opts.quick ? 2 : 5;
    const list = <T extends string>(v: unknown, all: readonly T[], what: string): T[] => {
      const xs = typeof v === 'string' ? v.split(',').map((x) => x.trim()) : [...all];
      for (const x of xs) if (!(all as readonly string[]).includes(x)) throw new Error(`--soak-${what}: unknown '${x}' (${all.join(', ')})`);
      return xs as T[];
    };
    const kinds = list<Kind>(opts.values['soak-kinds'], KINDS, 'kinds');
    const profiles = list<Profile>(opts.values['soak-profiles'], ['c', 'ocaml'], 'profiles');
    const rows: string[][] = [];
    const series: string[] = [];
    for (const profile of profiles) {
      const r = await soak(profile, kinds, perKind, phaseMs, 10_000);
      const ratio = r.p99Hostile / r.p99Idle;
      const back = (r.rssAfter - r.rssIdleEnd) / r.rssIdleEnd;
      rows.push([
        profile, String(r.guests), r.rssStart.toFixed(0), r.rssIdleEnd.toFixed(0), Math.max(...r.rssSeries).toFixed(0), r.rssAfter.toFixed(0),
        // Issue 14 asks that RSS come back (within 10 %) once the guests go: memory kept is the
        // miss, not RSS below where the hostile phase started (the idle churn grows V8's new space,
        // which the daemon gives back once quiet).
        `${(back * 100).toFixed(0)} % ${back <= 0.1 ? 'met' : 'MISS'}`,
        r.p99Idle.toFixed(2), r.p99Hostile.toFixed(2), `${ratio.toFixed(2)}x ${ratio <= 2 ? 'met' : 'MISS'}`,
        String(r.churnIdle), `${r.churnHostile}${r.churnHeld ? ' (then held)' : ''}`,
      ]);
      series.push(`${profile}: RSS (MB) every ${(phaseMs / 10000).toFixed(0)} s of the hostile phase: ${r.rssSeries.map((x) => x.toFixed(0)).join(' ')}`);
    }
    out(table([
      'profile', 'hostile guests', 'RSS start (MB)', 'RSS after idle churn', 'RSS max, hostile', 'RSS 10 s after they go', 'after vs idle (<= +10 %)',
      'probe p99 idle (ms)', 'probe p99 hostile (ms)', 'p99 ratio (<= 2x)', 'dom0 churn writes, idle', 'hostile',
    ], rows));
    out('');
    for (const s of series) out(s);
  },
};
