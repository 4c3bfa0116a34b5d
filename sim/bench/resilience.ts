// Bench section `resilience`: what a xenstored live update costs.
// - `live-update`: the pause - from the `live-update -s` request that finds no transaction open
//   to the new instance answering - with 1k, 100k and 1M nodes and 100 socket connections each
//   holding a watch (target: <= 100 ms at 100k nodes). Measured in-process on the daemon
//   (daemon.ts) with the state stream going through a state_dump file as under
//   `xensim xenstored`; the daemon handles nothing else meanwhile, so that time is the pause
//   every client sees. Split into the dump (the stream written) and the rest (read back,
//   restored). Building the tree is not timed, nor the check (after the pause) that the new
//   instance holds the same tree.
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Xenstored } from '../../domains/dom0/xenstored/core.ts';
import { XenstoredDaemon } from '../../domains/dom0/xenstored/daemon.ts';
import { permsEqual } from '../../domains/dom0/xenstored/permissions.ts';
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
  const daemon = new XenstoredDaemon({
    stateDump: {
      write: (b) => {
        writeFileSync(file, b);
        dumpMs = performance.now() - t0;
      },
      read: () => readFileSync(file),
      remove: () => unlinkSync(file),
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

export const resilienceSection: BenchSection = {
  name: 'resilience',
  title: 'xenstored resilience: live-update pause',
  parts: ['live-update'],
  async run(opts, parts, out) {
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
