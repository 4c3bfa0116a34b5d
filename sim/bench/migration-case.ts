// One case of the migration bench, in a process of its own so that its peak RSS (VmHWM) is its
// own: `node --import ./scripts/tsx-preload.mjs sim/bench/migration-case.ts JSON` prints one JSON
// line. Cases: `xl save` of a guest to a file, `xl migrate` between two lockstep hosts in this
// process (the guest exists twice here: once per host), and the reference - plain copies and
// writes of as many bytes, this machine's ceiling for what save and migrate do with them.
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import net from 'node:net';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { HostRuntime } from '../host-runtime.ts';
import { MigratePipe, type PipeWriter } from '../migrate-pipe.ts';
import { fdPipe, socketPipe, tcpLentPipe } from '../xl-migrate-transport.ts';
import { Xl } from '../xl.ts';
import { NS_PER_PAGE, migrateReceive, migrateSend } from '../xl-migrate.ts';
import { type PrecopyPolicy, PrecopyPolicyDecision, simplePrecopyPolicy } from '../../domains/dom0/toolstack/migration/precopy.ts';
import { EXTENT_PAGES, Frame, type Mfn } from '../../hypervisor/memory.ts';
import { LogDirty } from '../../hypervisor/paging.ts';
import { fingerprintableBuffer, printerOf } from '../../hypervisor/page-fingerprint.ts';
import { Hypercall, XEN_PAGE_SIZE } from '../../hypervisor/public/xen.ts';
import { Domctl } from '../../hypervisor/public/domctl.ts';
import { memOf } from './proc-mem.ts';

export interface MigrationCase {
  readonly op: 'save' | 'migrate' | 'migrate-1p' | 'reference';
  readonly mib: number;
  readonly workload: 'idle' | 'dirtying';
  /** Where save files (and the reference's writes) go. */
  readonly dir: string;
  /** migrate: the stream over TCP on 127.0.0.1 (else a socket pair). */
  readonly tcp?: boolean;
  /** The destination process: the source's listening port (TCP). */
  readonly port?: number;
}

export interface MigrationCaseResult {
  readonly op: MigrationCase['op'];
  readonly mib: number;
  readonly workload: MigrationCase['workload'];
  /** Stream bytes (save, migrate) or bytes copied (reference). */
  readonly bytes: number;
  readonly wallMs: number;
  /** Pages per round: precopy rounds, then the one after suspend (migrate); one round (save). */
  readonly rounds: readonly number[];
  readonly liveRounds: number;
  /** Virtual time from the guest's suspend to the go (migrate). */
  readonly downtimeNs?: number;
  /** Process RSS before the guest existed, and its peak over the whole case. */
  readonly baseRss: number;
  readonly peakRss: number;
  /** Populated pages whose contents differ between source and destination (migrate). */
  readonly mismatched?: number;
  readonly compared?: number;
  /**
   * Reference only, GB/s: the ceilings (copies, writes), and two costs of the hypervisor model
   * over as many bytes: one log-dirty fingerprint pass (an idle migration makes three: at enable,
   * after round 1, after suspend) and making a 4 KiB view per frame (a domain's build).
   */
  readonly reference?: { readonly memcpyWarm: number; readonly memcpyFresh: number; readonly write: number; readonly fingerprint: number; readonly frameViews: number };
  readonly fillMs?: number;
  /**
   * Migrate only: wall time inside two of the hypervisor model's costs - log-dirty at the source
   * (its shadow ops: enable and each CLEAN fingerprint every page; and its look at each record
   * sent, LogDirty.observe) and the destination's frame allocation (a Frame, a view of a shared
   * buffer, per page).
   */
  readonly logDirtyMs?: number;
  readonly frameAllocMs?: number;
  /** CPU time (user + system, all threads of the process) over the timed part. */
  readonly cpuMs?: number;
  /**
   * Migrate: the destination host's process (the fields above are the source's): its RSS before
   * its host booted, its peak, its CPU time from its banner to the guest running.
   */
  readonly destination?: { readonly baseRss: number; readonly peakRss: number; readonly cpuMs: number };
}

/**
 * Adds the wall time of each call of obj[name] to spent.ms (a bench probe, not product code). On
 * a prototype it times the method of every instance (`this` is the instance called on).
 */
function timeCalls<T extends object, K extends keyof T>(obj: T, name: K, spent: { ms: number }, only: (...args: never[]) => boolean = () => true): void {
  const orig = obj[name] as (...args: unknown[]) => unknown;
  (obj as Record<K, unknown>)[name] = function (this: unknown, ...args: unknown[]): unknown {
    const self = this ?? obj;
    if (!only(...(args as never[]))) return orig.apply(self, args);
    const t = performance.now();
    try {
      return orig.apply(self, args);
    } finally {
      spent.ms += performance.now() - t;
    }
  };
}

const PAGES_PER_MIB = 256;

const cpuSince = (start: NodeJS.CpuUsage): number => {
  const u = process.cpuUsage(start);
  return (u.user + u.system) / 1000;
};

/** A lockstep host as the toolstack specs boot it (inline vCPUs, seeded). */
/**
 * A lockstep host whose hypervisor heap holds `heapMiB` of populated RAM (Xen owns its RAM from
 * boot: a guest's pages cost no page fault when it is built or restored).
 */
async function host(seed: number, heapMiB: number): Promise<{ rt: HostRuntime; xl: Xl }> {
  const rt = new HostRuntime({ seed, mode: 'lockstep', inline: true, trace: false, heapMiB });
  await rt.bootDom0();
  return { rt, xl: new Xl(rt) };
}

/** The guest: `mib` MiB, every page but the kernel's filled with data (a guest in use, not zero pages). */
async function guest(xl: Xl, c: MigrationCase): Promise<{ domid: number; fillMs: number }> {
  const domid = await xl.create({ name: 'bench', memory: c.mib });
  // The kernel takes commands once booted (its command handler goes in after xenbus is up).
  await xl.rt.idle(100e6);
  const t0 = performance.now();
  const fill = await xl.guest<{ gfns: number[]; error?: string }>(domid, { cmd: 'mem-fill', pages: c.mib * PAGES_PER_MIB - 64 });
  if (fill.error) throw new Error(`mem-fill: ${fill.error}`);
  return { domid, fillMs: performance.now() - t0 };
}

/** The dirtying guest's rate: pages rewritten per second of its (virtual) time. */
export const DIRTY_PAGES_PER_S = 80_000;
const DIRTY_PAGES_PER_TICK = 64;

/**
 * libxc's default policy, and a guest dirtying its memory while each round is on the wire. A
 * lockstep host runs a guest's pending timers to the end whenever it lets time pass, so a
 * workload started once would be over in round 1; instead, as each round starts, the guest is
 * told to rewrite as many pages as DIRTY_PAGES_PER_S gives for the time the round takes on the
 * wire (NS_PER_PAGE a page) - a guest writing at a steady rate, the pages it rewrites (from the
 * start of its memory) dirty again.
 */
function dirtyingPolicy(xl: Xl, domid: number): PrecopyPolicy {
  return (st) => {
    const decision = simplePrecopyPolicy(st);
    if (decision === PrecopyPolicyDecision.XGS_POLICY_CONTINUE_PRECOPY && st.dirtyCount > 0) {
      const pages = Math.round((DIRTY_PAGES_PER_S * st.dirtyCount * NS_PER_PAGE) / 1e9);
      const times = Math.ceil(pages / DIRTY_PAGES_PER_TICK);
      if (times > 0) void xl.guest(domid, { cmd: 'mem-dirty', pages: DIRTY_PAGES_PER_TICK, everyNs: Math.max(1, Math.floor((st.dirtyCount * NS_PER_PAGE) / times)), times });
    }
    return decision;
  };
}

/** What the bench's pipe holds unread before the writer must wait: a socket's buffers, roughly. */
const PIPE_WINDOW = 8 * 1024 * 1024;

/**
 * Two pipe ends joined in memory: the writer's chunks are passed as they are, lent ones lent on
 * (the reader's pipe gives them back once read past); a writer more than PIPE_WINDOW ahead of its
 * reader waits (drain) as on a socket.
 */
function pipes(tee?: number): { sender: MigratePipe; receiver: MigratePipe } {
  const link: { sender?: MigratePipe; receiver?: MigratePipe } = {};
  const to = (peer: () => MigratePipe, copyTo?: number): PipeWriter => ({
    write: (b, release) => {
      if (copyTo !== undefined) writeSync(copyTo, b);
      if (!peer().closed) peer().push(b, release);
      else release?.();
      return peer().queued < PIPE_WINDOW;
    },
    drain: async () => {
      while (!peer().closed && peer().queued >= PIPE_WINDOW) await new Promise((r) => setImmediate(r));
    },
    end: () => peer().end(),
  });
  link.sender = new MigratePipe(to(() => link.receiver!, tee), 'sender');
  link.receiver = new MigratePipe(to(() => link.sender!), 'receiver');
  return link as { sender: MigratePipe; receiver: MigratePipe };
}

/**
 * XENSIM_BENCH_CPUPROF=DIR: a CPU profile of the timed part alone (not the hosts' boot or the
 * guest's fill) into DIR/NAME.cpuprofile; returns the function that stops and writes it.
 */
async function profileStart(): Promise<((name: string) => Promise<void>) | undefined> {
  const dir = process.env.XENSIM_BENCH_CPUPROF;
  if (!dir) return undefined;
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async (name) => {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
    session.disconnect();
  };
}

async function runSave(c: MigrationCase): Promise<MigrationCaseResult> {
  const baseRss = memOf(process.pid).rss;
  const { rt, xl } = await host(1, c.mib);
  try {
    const { domid, fillMs } = await guest(xl, c);
    const file = join(c.dir, `save-${c.mib}-${c.workload}.xl`);
    const prof = await profileStart();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const r = await xl.save(domid, file, { hash: false });
    const wallMs = performance.now() - t0;
    const cpuMs = cpuSince(cpu0);
    await prof?.(`save-${c.mib}-${c.workload}`);
    if (!process.env.XENSIM_BENCH_KEEP) rmSync(file, { force: true });
    return { op: c.op, mib: c.mib, workload: c.workload, bytes: r.bytes, wallMs, rounds: [r.pages], liveRounds: 0, baseRss, peakRss: memOf(process.pid).hwm, fillMs, cpuMs };
  } finally {
    await rt.shutdown();
  }
}

/** sha256 of each page, 32 bytes per pfn in p2m order (zeros for a hole): the pages compared across processes. */
function pageDigests(p2m: readonly (Frame | undefined)[], skip: ReadonlySet<number> = new Set()): Buffer {
  const out = Buffer.alloc(32 * p2m.length);
  p2m.forEach((f, pfn) => {
    if (f && !skip.has(pfn)) createHash('sha256').update(f.bytes).digest().copy(out, 32 * pfn);
  });
  return out;
}

/** What the destination process reports (one JSON line on its stdout). */
interface ReceiveReport {
  readonly baseRss: number;
  readonly peakRss: number;
  readonly cpuMs: number;
  readonly frameAllocMs: number;
  readonly pages: number;
}

/**
 * The destination host in a process of its own, as `xensim up` is: the stream on fd 3 (a socket
 * pair with the source's process, what the ssh command's stdin/stdout are to xl). It says "ready"
 * once booted, then reports, after the migration, its RSS and CPU and (in c.dir) the digests of its
 * new domain's pages.
 */
async function runReceive(c: MigrationCase): Promise<void> {
  const baseRss = memOf(process.pid).rss;
  const b = await host(4, c.mib);
  try {
    const { socket, pipe } = c.port ? tcpLentPipe({ host: '127.0.0.1', port: c.port }, 'migration receiver') : fdPipe(3, 'migration receiver');
    const frameAlloc = { ms: 0 };
    timeCalls(b.rt.host.memory, 'allocateExtent', frameAlloc);
    process.stdout.write('ready\n');
    const prof = await profileStart();
    const cpu0 = process.cpuUsage();
    const got = await migrateReceive(b.xl, pipe, { hash: false });
    const cpuMs = cpuSince(cpu0);
    await prof?.(`receive-${c.mib}-${c.workload}`);
    const peakRss = memOf(process.pid).hwm;
    // The destination's kernel has run since (its store and console rings): the source leaves those out.
    writeFileSync(join(c.dir, `digests-${c.mib}-${c.workload}.bin`), pageDigests(b.rt.host.domains.get(got.domid)!.p2m));
    socket.destroy();
    const r: ReceiveReport = { baseRss, peakRss, cpuMs, frameAllocMs: frameAlloc.ms, pages: got.pages };
    process.stdout.write(`${JSON.stringify(r)}\n`);
  } finally {
    await b.rt.shutdown();
  }
}

/** Starts the destination process (this program, as it was run: tsx or compiled), ready for the stream. */
async function startReceiver(c: MigrationCase): Promise<{ socket: net.Socket; report: Promise<ReceiveReport> }> {
  const server = c.tcp ? net.createServer() : undefined;
  if (server) await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = server ? (server.address() as net.AddressInfo).port : undefined;
  const connected = server ? new Promise<net.Socket>((r) => server.once('connection', (s: net.Socket) => { server.close(); r(s); })) : undefined;
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1], JSON.stringify({ ...c, op: 'receive', port })], { stdio: ['ignore', 'pipe', 'inherit', 'pipe'] });
  let out = '';
  const lines: string[] = [];
  let onLine: (() => void) | undefined;
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString();
    const parts = out.split('\n');
    out = parts.pop()!;
    lines.push(...parts);
    onLine?.();
  });
  const exited = new Promise<number | null>((r) => child.once('close', r));
  const next = (): Promise<string> => new Promise((resolve, reject) => {
    const look = (): void => {
      if (lines.length) resolve(lines.shift()!);
    };
    onLine = look;
    void exited.then((code) => reject(new Error(`the destination process exited (${code})`)));
    look();
  });
  if ((await next()) !== 'ready') throw new Error('the destination process did not say ready');
  return { socket: connected ? await connected : (child.stdio[3] as net.Socket), report: next().then((l) => JSON.parse(l) as ReceiveReport) };
}

/**
 * xl migrate between two hosts in two processes: this one the source, a child the destination,
 * the stream over a socket pair as xl's over its ssh command's pipes.
 */
async function runMigrate(c: MigrationCase): Promise<MigrationCaseResult> {
  const baseRss = memOf(process.pid).rss;
  const a = await host(3, c.mib);
  try {
    const dst = await startReceiver(c);
    const { domid, fillMs } = await guest(a.xl, c);
    const srcDomain = a.rt.host.domains.get(domid)!;
    // The source's frames, kept to compare with the destination's once it is gone (its extents
    // go back to the source host's heap, zeroed only when handed out again, which nothing does).
    const srcFrames = [...srcDomain.p2m];
    const special = new Set([a.xl.domains.get(domid)!.store, a.xl.domains.get(domid)!.console]);
    // XENSIM_BENCH_KEEP: the sender's bytes kept in c.dir - the stream (its first `bytes`), then xl's go message.
    const tee = process.env.XENSIM_BENCH_KEEP ? openSync(join(c.dir, `migrate-${c.mib}-${c.workload}.xl`), 'w') : undefined;
    const sender = socketPipe(dst.socket, new Uint8Array(0), 'migration sender', tee === undefined ? undefined : (w) => ({ ...w, write: (b, release) => (writeSync(tee, b), w.write(b, release)) }));

    const logDirty = { ms: 0 };
    timeCalls(a.rt.hypercalls, 'call', logDirty, ((_domid: number, op: number, args: { cmd?: number }) => op === Hypercall.__HYPERVISOR_domctl && args?.cmd === Domctl.XEN_DOMCTL_shadow_op) as never);
    timeCalls(LogDirty.prototype, 'observe', logDirty);
    const prof = await profileStart();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const policy = c.workload === 'dirtying' ? dirtyingPolicy(a.xl, domid) : simplePrecopyPolicy;
    const sent = await migrateSend(a.xl, domid, sender, { hash: false, policy });
    const wallMs = performance.now() - t0;
    const cpuMs = cpuSince(cpu0);
    await prof?.(`migrate-${c.mib}-${c.workload}`);
    const peakRss = memOf(process.pid).hwm;
    if (tee !== undefined) closeSync(tee);
    const got = await dst.report;

    // Every page but those two must be as the source's was at its final suspend.
    const mine = pageDigests(srcFrames, special);
    const theirs = readFileSync(join(c.dir, `digests-${c.mib}-${c.workload}.bin`));
    rmSync(join(c.dir, `digests-${c.mib}-${c.workload}.bin`), { force: true });
    let mismatched = 0;
    let compared = 0;
    srcFrames.forEach((f: Frame | undefined, pfn) => {
      if (!f || special.has(pfn)) return;
      compared++;
      if (32 * (pfn + 1) > theirs.length || mine.compare(theirs, 32 * pfn, 32 * (pfn + 1), 32 * pfn, 32 * (pfn + 1)) !== 0) mismatched++;
    });
    return {
      op: c.op, mib: c.mib, workload: c.workload, bytes: sent.bytes, wallMs, rounds: sent.rounds, liveRounds: sent.liveRounds,
      downtimeNs: sent.downtimeNs, baseRss, peakRss, mismatched, compared, fillMs, logDirtyMs: logDirty.ms, frameAllocMs: got.frameAllocMs, cpuMs,
      destination: { baseRss: got.baseRss, peakRss: got.peakRss, cpuMs: got.cpuMs },
    };
  } finally {
    await a.rt.shutdown();
  }
}

/**
 * xl migrate between two lockstep hosts in this process (the guest exists twice in its RSS), over
 * in-memory pipes: no socket, no second process.
 */
async function runMigrateOneProcess(c: MigrationCase): Promise<MigrationCaseResult> {
  const baseRss = memOf(process.pid).rss;
  const a = await host(3, c.mib);
  const b = await host(4, c.mib);
  try {
    const { domid, fillMs } = await guest(a.xl, c);
    const srcDomain = a.rt.host.domains.get(domid)!;
    // The source's frames, kept to compare with the destination's once it is gone (its extents
    // go back to the source host's heap, zeroed only when handed out again, which nothing does).
    const srcFrames = [...srcDomain.p2m];
    const special = new Set([a.xl.domains.get(domid)!.store, a.xl.domains.get(domid)!.console]);
    // XENSIM_BENCH_KEEP: the sender's bytes kept in c.dir - the stream (its first `bytes`), then xl's go message.
    const tee = process.env.XENSIM_BENCH_KEEP ? openSync(join(c.dir, `migrate-${c.mib}-${c.workload}.xl`), 'w') : undefined;
    const { sender, receiver } = pipes(tee);

    const logDirty = { ms: 0 };
    const frameAlloc = { ms: 0 };
    timeCalls(a.rt.hypercalls, 'call', logDirty, ((_domid: number, op: number, args: { cmd?: number }) => op === Hypercall.__HYPERVISOR_domctl && args?.cmd === Domctl.XEN_DOMCTL_shadow_op) as never);
    timeCalls(LogDirty.prototype, 'observe', logDirty);
    timeCalls(b.rt.host.memory, 'allocateExtent', frameAlloc);
    const prof = await profileStart();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const policy = c.workload === 'dirtying' ? dirtyingPolicy(a.xl, domid) : simplePrecopyPolicy;
    const [sent, got] = await Promise.all([migrateSend(a.xl, domid, sender, { hash: false, policy }), migrateReceive(b.xl, receiver, { hash: false })]);
    const wallMs = performance.now() - t0;
    const cpuMs = cpuSince(cpu0);
    await prof?.(`migrate-${c.mib}-${c.workload}`);

    const peakRss = memOf(process.pid).hwm;
    // The destination's kernel has run since (its store and console rings): those two aside,
    // every page must be as the source's was at its final suspend.
    const dst = b.rt.host.domains.get(got.domid)!;
    let mismatched = 0;
    let compared = 0;
    srcFrames.forEach((f: Frame | undefined, pfn) => {
      if (!f || special.has(pfn)) return;
      compared++;
      const g = dst.p2m[pfn];
      if (!g || Buffer.compare(f.bytes, g.bytes) !== 0) mismatched++;
    });
    return {
      op: c.op, mib: c.mib, workload: c.workload, bytes: sent.bytes, wallMs, rounds: sent.rounds, liveRounds: sent.liveRounds,
      downtimeNs: sent.downtimeNs, baseRss, peakRss, mismatched, compared, fillMs, logDirtyMs: logDirty.ms, frameAllocMs: frameAlloc.ms, cpuMs,
    };
  } finally {
    await a.rt.shutdown();
    await b.rt.shutdown();
  }
}


/**
 * The ceilings for the same number of bytes, in 2 MiB extents as a big guest's memory is: memcpy
 * into memory already touched (a sender's copy into its record buffer), memcpy into new memory
 * (a receiver's fresh frames: the kernel's page faults), write(2) to a file in c.dir in 4 MiB
 * pieces (xl save's file).
 */
function runReference(c: MigrationCase): MigrationCaseResult {
  const baseRss = memOf(process.pid).rss;
  const bytes = c.mib * 1024 * 1024;
  const extent = 2 * 1024 * 1024;
  const src: Uint8Array[] = [];
  // Extents as the hypervisor makes them (shared WebAssembly memories: log-dirty's SIMD path).
  for (let at = 0; at < bytes; at += extent) src.push(randomFillSync(new Uint8Array(fingerprintableBuffer(extent), 0, extent)));
  const gbps = (ms: number): number => bytes / 1e9 / (ms / 1000);
  const copyInto = (dst: Uint8Array[]): number => {
    const t0 = performance.now();
    src.forEach((s, i) => dst[i].set(s));
    return performance.now() - t0;
  };
  const fresh = (): Uint8Array[] => src.map(() => new Uint8Array(new SharedArrayBuffer(extent)));
  const freshMs = copyInto(fresh());
  const warm = fresh();
  copyInto(warm);
  const warmMs = copyInto(warm);
  const file = join(c.dir, `reference-${c.mib}.bin`);
  const fd = openSync(file, 'w');
  const piece = Buffer.allocUnsafe(2 * extent);
  const t0 = performance.now();
  for (let i = 0; i < src.length; i += 2) {
    piece.set(src[i], 0);
    if (src[i + 1]) piece.set(src[i + 1], extent);
    const n = src[i + 1] ? 2 * extent : extent;
    for (let at = 0; at < n;) at += writeSync(fd, piece, at, n - at);
  }
  closeSync(fd);
  const writeMs = performance.now() - t0;
  rmSync(file, { force: true });
  const t1 = performance.now();
  const frames = src.flatMap((s, e) => Array.from({ length: EXTENT_PAGES }, (_, i) => new Frame((e * EXTENT_PAGES + i) as Mfn, s.buffer as SharedArrayBuffer, undefined, i * XEN_PAGE_SIZE)));
  // A frame's view is made at its first use.
  for (const f of frames) void f.bytes;
  const viewsMs = performance.now() - t1;
  const prints = new Int32Array(2 * frames.length);
  const t2 = performance.now();
  // As log-dirty's enable takes them: each extent's pages with one call (printerOf).
  src.forEach((s, e) => printerOf(s.buffer as SharedArrayBuffer)!(0, EXTENT_PAGES, prints, e * EXTENT_PAGES));
  const fingerprintMs = performance.now() - t2;
  return {
    op: c.op, mib: c.mib, workload: c.workload, bytes, wallMs: writeMs, rounds: [], liveRounds: 0, baseRss, peakRss: memOf(process.pid).hwm,
    reference: { memcpyWarm: gbps(warmMs), memcpyFresh: gbps(freshMs), write: gbps(writeMs), fingerprint: gbps(fingerprintMs), frameViews: gbps(viewsMs) },
  };
}

async function main(): Promise<void> {
  const c = JSON.parse(process.argv[2] ?? '') as MigrationCase | (Omit<MigrationCase, 'op'> & { op: 'receive' });
  if (c.op === 'receive') return runReceive({ ...c, op: 'migrate' });
  const r = c.op === 'save' ? await runSave(c) : c.op === 'migrate' ? await runMigrate(c) : c.op === 'migrate-1p' ? await runMigrateOneProcess(c) : runReference(c);
  process.stdout.write(`${JSON.stringify(r)}\n`);
}

// Run as a program (the bench section imports only its types and constants).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
