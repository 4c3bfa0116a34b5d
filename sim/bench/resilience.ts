// Bench section `resilience`: what a xenstored live update and the seed's replication cost.
// - `live-update`: the pause - from the `live-update -s` request that finds no transaction open
//   to the new instance answering - with 1k, 100k and 1M nodes and 100 socket connections each
//   holding a watch (target: <= 100 ms at 100k nodes). Measured in-process on the daemon
//   (daemon.ts) with the state stream going through a state_dump file as under
//   `xensim xenstored`; the daemon handles nothing else meanwhile, so that time is the pause
//   every client sees. Split into the dump (the stream written) and the rest (read back,

//   restored). Building the tree is not timed, nor the check (after the pause) that the new
//   instance holds the same tree.
// - `replication`: the seed's standbys (`--seed-replicas 2`, not in Xen): 8 socket clients'
//   throughput (each request its own batch, as a client waiting for each reply gives) without
//   standbys and with 2 - inline (standbys read the log on the primary's thread) and on threads
//   of their own (the design: the primary only publishes) - in the same run, rounds alternating
//   (target: <= 20 % slower). Write-only (every request publishes) and 1 write : 4 reads.
// - `failover`: from the primary's death to the new daemon serving: standby 0 (a thread) sees
//   the log marked dead, reads the rest, writes its state stream; the daemon reads it and takes
//   over every connection. With 1k and 100k nodes and 8 watching connections.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Xenstored } from '../../domains/dom0/xenstored/core.ts';
import { XenstoredDaemon } from '../../domains/dom0/xenstored/daemon.ts';

import { permsEqual } from '../../domains/dom0/xenstored/permissions.ts';
import { stateDumpFile } from '../../domains/dom0/xenstored/state-dump-file.ts';
import { type Promoted, startStandbyThreads } from '../../domains/dom0/xenstored/standby-thread.ts';
import { XsdSockmsgType as T, nulJoin } from '../../hypervisor/public/io/xs_wire.ts';
import { type BenchSection, fmtMB, makeTempDir, median, table } from './common.ts';

interface Pause {
  readonly totalMs: number;
  /** CPU time of this process over the pause (wall time on a shared machine counts others' work too). */
  readonly cpuMs: number;
  readonly dumpMs: number;
  readonly bytes: number;
}

/** One daemon with `nodes` nodes and `conns` watching sockets; times one live update. */
export function measure(nodes: number, conns: number, dir: string): Pause {
  const file = join(dir, 'state_dump');
  let dumpMs = 0;
  let t0 = 0;
  // The file as `xensim xenstored` writes and reads it.
  const dumpFile = stateDumpFile(file);
  const daemon = new XenstoredDaemon({
    stateDump: {
      write: (b) => {
        dumpFile.write(b);
        dumpMs = performance.now() - t0;
      },
      read: (into) => dumpFile.read(into),
      remove: () => dumpFile.remove(),
    },
  });
  const sinks = (): { send: () => void; flush: () => void; ended: () => void } => ({ send: () => undefined, flush: () => undefined, ended: () => undefined });
  const ids: number[] = [];
  for (let i = 0; i < conns; i++) {
    const id = daemon.xs.connectSocket();
    daemon.attach(id, sinks());
    ids.push(id);
    daemon.input(id, { type: T.XS_WATCH, req_id: 1, tx_id: 0, payload: nulJoin(`/bench/c${i}`, `tok${i}`) });
  }
  const tool = ids[0];
  // 1000 children per directory: a tree of the shape the toolstack builds, wide and shallow.
  let req = 2;
  for (let n = 0; n < nodes; n++) {
    daemon.request(tool, { type: T.XS_WRITE, req_id: req++, tx_id: 0, payload: Buffer.from(`/bench/d${Math.floor(n / 1000)}/n${n % 1000}\0value-${n}`, 'latin1') });
    if (n % 1000 === 999) daemon.flush();
  }
  daemon.flush();
  daemon.input(tool, { type: T.XS_CONTROL, req_id: req++, tx_id: 0, payload: nulJoin('live-update', '-f', '/usr/sbin/xenstored') });
  const before = daemon.xs;
  let bytes = 0;
  daemon.onLiveUpdate = (d) => {
    bytes = d.bytes;
  };
  const cpu0 = process.cpuUsage();
  t0 = performance.now();
  daemon.input(tool, { type: T.XS_CONTROL, req_id: req++, tx_id: 0, payload: nulJoin('live-update', '-s', '-t', '60') });
  const totalMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  if (daemon.xs === before) throw new Error('the live update did not happen');
  if (daemon.xs.store.size !== before.store.size) throw new Error(`restored ${daemon.xs.store.size} nodes of ${before.store.size}`);
  sameTree(before, daemon.xs);
  return { totalMs, cpuMs: (cpu.user + cpu.system) / 1000, dumpMs, bytes };
}


/**
 * Outside the timing: the new instance holds the old one's tree - values, ACLs as the stream
 * carries them (entries no longer honoured flagged), child order - with one generation per node
 * in pre-order, as C's read_state_node gives them.
 */
function sameTree(old: Xenstored, now: Xenstored): void {
  const a = old.store.walk('/');
  const b = now.store.walk('/');
  let gen = -1;
  for (let i = 0; ; i++) {
    const x = a.next();
    const y = b.next();
    if (x.done === true || y.done === true) {
      if (x.done !== y.done) throw new Error(`restored tree: ${x.done === true ? 'more' : 'fewer'} nodes than the old one`);
      return;
    }
    const [path, n] = x.value;
    const [path2, m] = y.value;
    const perms = old.b.staleAclByGeneration ? old.settlePerms(n.perms, n.gen) : n.perms;
    if (path2 !== path || m.value !== n.value || !permsEqual(m.perms, perms)) throw new Error(`restored tree: node ${i} is ${path2}, not ${path} as it was (or its value or ACL differ)`);
    if (i !== 0 && m.gen !== gen + 1) throw new Error(`restored tree: ${path} has generation ${m.gen} after ${gen}`);
    gen = m.gen;
  }
}

type Standbys = 'none' | 'inline' | 'threads';

const sink = (): { send: () => void; flush: () => void; ended: () => void } => ({ send: () => undefined, flush: () => undefined, ended: () => undefined });

/** A daemon with 8 socket clients, each watching its own subtree; standbys as asked. */
async function clients(standbys: Standbys): Promise<{ daemon: XenstoredDaemon; ids: number[]; stop: () => Promise<void>; promoted?: Promise<Promoted> }> {
  const daemon = new XenstoredDaemon(standbys === 'none' ? {} : { seedReplicas: 2, seedStandbys: standbys });
  const threads = standbys === 'threads' ? startStandbyThreads(daemon.replication!, {}) : undefined;
  await threads?.ready;
  const ids: number[] = [];
  for (let i = 0; i < 8; i++) {
    const id = daemon.xs.connectSocket();
    daemon.attach(id, sink());
    ids.push(id);
    daemon.input(id, { type: T.XS_WATCH, req_id: 1, tx_id: 0, payload: nulJoin(`/bench/c${i}`, `tok${i}`) });
  }
  return { daemon, ids, stop: async () => threads?.stop(), promoted: threads?.promoted };
}

/**
 * CPU time of this (the primary's) thread in ms, from /proc (Linux; undefined elsewhere):
 * process.cpuUsage() would count the standby threads too, and wall time counts whatever else
 * the machine runs.
 */
function threadCpuMs(): number | undefined {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'latin1');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime (fields 14 and 15), in clock ticks of 10 ms.
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return undefined;
  }
}

/** Requests a second from 8 clients in turn; `readsPerWrite` reads follow each write. */
export async function throughput(standbys: Standbys, requests: number, readsPerWrite: number): Promise<{ perSec: number; cpuUsPerRequest: number | undefined; applied: boolean }> {
  const { daemon, ids, stop, promoted } = await clients(standbys);
  const write = (c: number, n: number): void => daemon.input(ids[c], { type: T.XS_WRITE, req_id: n, tx_id: 0, payload: Buffer.from(`/bench/c${c}/k${n % 200}\0value-${n}`, 'latin1') });
  const read = (c: number, n: number): void => daemon.input(ids[c], { type: T.XS_READ, req_id: n, tx_id: 0, payload: Buffer.from(`/bench/c${c}/k${n % 200}\0`, 'latin1') });
  const go = (count: number): void => {
    for (let n = 0; n < count; n++) {
      const c = n % 8;
      if (n % (1 + readsPerWrite) === 0) write(c, n);
      else read(c, n);
    }
  };
  go(2000);
  const c0 = threadCpuMs();
  const t0 = performance.now();
  go(requests);
  const ms = performance.now() - t0;
  const c1 = threadCpuMs();
  // The standbys must hold it all: the primary dies and the new daemon, read from standby 0, has every node.
  let applied = true;
  if (standbys !== 'none') {
    daemon.crash();
    const want = daemon.xs.store.size;
    const restored = standbys === 'threads' ? daemon.failover((await promoted!).stream) : daemon.failover();
    applied = restored.xs.store.size === want;
  }
  await stop();
  return { perSec: (requests / ms) * 1000, cpuUsPerRequest: c0 === undefined || c1 === undefined ? undefined : ((c1 - c0) * 1000) / requests, applied };
}

/** From the primary's death to the new daemon: `nodes` nodes, 8 watching clients, standbys on threads. */
export async function failoverTime(nodes: number): Promise<{ totalMs: number; readMs: number; bytes: number }> {
  const { daemon, ids, stop, promoted } = await clients('threads');
  let req = 2;
  for (let n = 0; n < nodes; n++) {
    daemon.request(ids[n % 8], { type: T.XS_WRITE, req_id: req++, tx_id: 0, payload: Buffer.from(`/bench/d${Math.floor(n / 1000)}/n${n % 1000}\0value-${n}`, 'latin1') });
    if (n % 1000 === 999) daemon.flush();
  }
  daemon.flush();
  const r = daemon.replication!;
  // The standbys have caught up (in steady state they keep up with the primary).
  while (r.writer.used() !== 0) await new Promise((res) => setTimeout(res, 5));
  const want = daemon.xs.store.size;
  const t0 = performance.now();
  daemon.crash();
  const got = await promoted!;
  const t1 = performance.now();
  // The new primary's standbys (its whole state is their first batch).
  let next: ReturnType<typeof startStandbyThreads> | undefined;
  daemon.onReplicationRestarted = () => {
    next = startStandbyThreads(daemon.replication!, {});
  };
  const restored = daemon.failover(got.stream);
  const t2 = performance.now();
  if (restored.xs.store.size !== want) throw new Error(`failover: ${restored.xs.store.size} nodes of ${want}`);
  await stop();
  await next?.stop();
  return { totalMs: t2 - t0, readMs: t2 - t1, bytes: got.stream.length };
}

export const resilienceSection: BenchSection = {
  name: 'resilience',
  title: 'xenstored resilience: live-update pause, the seed\'s replication and failover',
  parts: ['live-update', 'replication', 'failover'],
  async run(opts, parts, out) {
    if (parts.has('replication')) await replicationRows(opts, out);
    if (parts.has('failover')) await failoverRows(opts, out);
    if (!parts.has('live-update')) return;
    const sizes = opts.quick ? [1000, 100_000] : [1000, 100_000, 1_000_000];
    const conns = 100;
    const dir = makeTempDir('resilience');
    const rows: string[][] = [];
    try {
      for (const nodes of sizes) {
        const runs: Pause[] = [];
        for (let r = 0; r < opts.rounds; r++) {
          process.stderr.write(`resilience: live update with ${nodes} nodes, round ${r + 1}\n`);
          runs.push(measure(nodes, conns, dir.path));
          await new Promise((res) => setImmediate(res));
        }
        const total = median(runs.map((p) => p.totalMs));
        rows.push([
          String(nodes), String(conns), fmtMB(runs[0].bytes), median(runs.map((p) => p.dumpMs)).toFixed(1),
          total.toFixed(1), median(runs.map((p) => p.cpuMs)).toFixed(1), nodes === 100_000 ? `<= 100 ms: ${total <= 100 ? 'met' : 'MISS'}` : '',
        ]);
      }
    } finally {
      dir.remove();
    }
    out(`Pause of one live update (dump to a state_dump file, read back, restore), median of ${opts.rounds} runs, ms.`);
    out('');
    out(table(['nodes:', 'connections:', 'stream MB:', 'dump ms:', 'pause ms:', 'pause cpu ms:', 'target'], rows));
  },
};

async function replicationRows(opts: { quick: boolean; rounds: number }, out: (line: string) => void): Promise<void> {
  const requests = opts.quick ? 20_000 : 100_000;
  const modes: Standbys[] = ['none', 'inline', 'threads'];
  const rows: string[][] = [];
  for (const readsPerWrite of [0, 4]) {
    const runs = new Map<Standbys, number[]>(modes.map((m) => [m, []]));
    const cpu = new Map<Standbys, number[]>(modes.map((m) => [m, []]));
    for (let r = 0; r < opts.rounds; r++) {
      for (const m of modes) {
        process.stderr.write(`resilience: 8 clients, standbys ${m}, ${readsPerWrite} reads per write, round ${r + 1}\n`);
        const t = await throughput(m, requests, readsPerWrite);
        if (!t.applied) throw new Error(`standbys ${m}: the new daemon misses nodes`);
        runs.get(m)!.push(t.perSec);
        if (t.cpuUsPerRequest !== undefined) cpu.get(m)!.push(t.cpuUsPerRequest);
      }
    }
    const base = median(runs.get('none')!);
    const baseCpu = cpu.get('none')!.length === 0 ? undefined : median(cpu.get('none')!);
    for (const m of modes) {
      const v = median(runs.get(m)!);
      const slower = (1 - v / base) * 100;
      const us = cpu.get(m)!.length === 0 ? undefined : median(cpu.get(m)!);
      const more = us === undefined || baseCpu === undefined ? undefined : (us / baseCpu - 1) * 100;
      rows.push([readsPerWrite === 0 ? 'writes only' : `1 write : ${readsPerWrite} reads`, m === 'none' ? '0' : `2 (${m})`, Math.round(v).toLocaleString('en-US'),
        m === 'none' ? '' : `${slower.toFixed(1)} %`, us === undefined ? '-' : us.toFixed(2), m === 'none' || more === undefined ? '' : `${more.toFixed(1)} %`,
        m === 'threads' ? `<= 20 %: wall ${slower <= 20 ? 'met' : 'MISS'}, primary cpu ${more !== undefined && more <= 20 ? 'met' : 'MISS'}` : '']);
    }
  }
  out(`8 socket clients in turn, one request per batch, ${requests.toLocaleString('en-US')} requests, median of ${opts.rounds} alternating rounds (same run). `
    + 'requests/s is wall time (the standby threads compete for the same cores); primary cpu is the primary thread\'s own CPU time per request.');
  out('');
  out(table(['workload:', 'standbys:', 'requests/s:', 'slower:', 'primary cpu us/req:', 'more cpu:', 'target'], rows));
  out('');
}

async function failoverRows(opts: { quick: boolean; rounds: number }, out: (line: string) => void): Promise<void> {
  const sizes = opts.quick ? [1000, 10_000] : [1000, 100_000];
  const rows: string[][] = [];
  for (const nodes of sizes) {
    const runs: { totalMs: number; readMs: number; bytes: number }[] = [];
    for (let r = 0; r < opts.rounds; r++) {
      process.stderr.write(`resilience: failover with ${nodes} nodes, round ${r + 1}\n`);
      runs.push(await failoverTime(nodes));
    }
    rows.push([String(nodes), fmtMB(runs[0].bytes), median(runs.map((x) => x.totalMs - x.readMs)).toFixed(1), median(runs.map((x) => x.readMs)).toFixed(1), median(runs.map((x) => x.totalMs)).toFixed(1)]);
  }
  out(`Failover (2 standbys on threads, 8 watching connections): the primary dies, standby 0 writes its state stream, the daemon reads it and takes over. Median of ${opts.rounds} runs, ms; the standbys' watchdog delay not included.`);
  out('');
  out(table(['nodes:', 'stream MB:', 'standby ms:', 'take-over ms:', 'failover ms:'], rows));
  out('');
}
