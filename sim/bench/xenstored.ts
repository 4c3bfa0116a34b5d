// Benchmark section "xenstored": xensim's xenstored against Debian's C xenstored 4.17, side by side.
//   1client   one xs-bench client, per phase ops/s, p50, p99           target ≥ 0.5× C ops/s
//   8clients  eight xs-bench clients at once, aggregate ops/s per phase target ≥ 1.0× C ops/s
//   mem       1,000,000 nodes held: load time and server RSS           target ≤ 300 MB
// The servers are run alternately (ref, subject, ref, subject, …) and medians are taken, because
// client and servers share the 2 cores of this machine and single runs vary by ±30 %.
import {
  type BenchOptions, type BenchSection, fmtFixed, fmtInt, fmtMB, fmtRatio, median, memOf, run, sleep, table,
} from './common.ts';
import { loadNodes, nodePath } from './xs-loader.ts';
import { PHASES, PHASE_NOTES, type Phase, type PhaseResult, xsBench } from './xs-bench.ts';
import {
  type RunningServer, SERVER_KINDS, type ServerKind, type ServerSpec, prepareOracle, serverLabel, startServer,
  xensimDaemonPresent,
} from './xenstored-servers.ts';

const TARGET_1 = 0.5;
const TARGET_8 = 1.0;
const TARGET_MEM_MB = 300;
const MEM_NODES = 1_000_000;
const MB = 1024 * 1024;

interface Settings {
  readonly ref: ServerSpec;
  readonly subject: ServerSpec;
  readonly rounds: number;
  /** xs-bench -n for the single client. */
  readonly n1: number;
  /** xs-bench -n per client with 8 clients. */
  readonly n8: number;
  readonly clients: number;
  readonly nodes: number;
  /** Time cap (s) for loading an oracle server (C xenstored 4.17 slows down as its tdb grows). */
  readonly memSeconds: number;
  readonly conns: number;
  readonly inflight: number;
}

type Log = (line: string) => void;
const progress: Log = (line) => process.stderr.write(`  … ${line}\n`);

function kindOption(v: unknown, name: string, dflt: ServerKind): ServerKind {
  if (v === undefined) return dflt;
  if (typeof v === 'string' && (SERVER_KINDS as readonly string[]).includes(v)) return v as ServerKind;
  throw new Error(`--${name} must be one of ${SERVER_KINDS.join(', ')} (got ${String(v)})`);
}

function intOption(v: unknown, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer (got ${String(v)})`);
  return n;
}

function settingsFrom(o: BenchOptions): Settings {
  const v = o.values;
  const profile = typeof v.profile === 'string' ? v.profile : 'c';
  return {
    ref: { kind: kindOption(v.ref, 'ref', 'oracle-c') },
    subject: { kind: kindOption(v.subject, 'subject', 'xensim'), profile },
    rounds: o.rounds,
    n1: intOption(v.n, 'n', o.quick ? 2000 : 10000),
    n8: intOption(v['n8'], 'n8', o.quick ? 500 : 2000),
    clients: intOption(v.clients, 'clients', 8),
    nodes: intOption(v.nodes, 'nodes', o.quick ? 100_000 : MEM_NODES),
    memSeconds: intOption(v['mem-seconds'], 'mem-seconds', o.quick ? 10 : 45),
    conns: 4,
    inflight: 64,
  };
}

function verdict(ok: boolean): string {
  return ok ? 'ok' : 'MISS';
}

// ---------------------------------------------------------------------------------------------
// 1 client and N clients

interface PhaseStats {
  ops: number;
  p50: number;
  p99: number;
}

/** Median over rounds of each phase's numbers. */
function medians(rounds: readonly Map<string, PhaseStats>[]): Map<string, PhaseStats> {
  const out = new Map<string, PhaseStats>();
  for (const phase of PHASES) {
    const rs = rounds.map((r) => r.get(phase)).filter((x): x is PhaseStats => x !== undefined);
    if (rs.length === 0) continue;
    out.set(phase, { ops: median(rs.map((r) => r.ops)), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)) });
  }
  return out;
}

function toStats(results: readonly PhaseResult[]): Map<string, PhaseStats> {
  return new Map(results.map((r) => [r.phase, { ops: r.ops_per_s, p50: r.p50_us, p99: r.p99_us }]));
}

function comparisonTable(
  ref: RunningServer, sub: RunningServer,
  refStats: Map<string, PhaseStats>, subStats: Map<string, PhaseStats>, target: number,
): { text: string; met: number; geo: number } {
  const rows: string[][] = [];
  let met = 0;
  let logSum = 0;
  let count = 0;
  for (const phase of PHASES) {
    const r = refStats.get(phase);
    const s = subStats.get(phase);
    if (!r || !s) continue;
    const ratio = s.ops / r.ops;
    if (ratio >= target) met++;
    logSum += Math.log(ratio);
    count++;
    rows.push([
      phase, fmtInt(r.ops), fmtInt(s.ops), fmtRatio(ratio), `≥ ${target.toFixed(1)}× ${verdict(ratio >= target)}`,
      fmtFixed(r.p50), fmtFixed(s.p50), fmtFixed(r.p99), fmtFixed(s.p99),
    ]);
  }
  const a = ref.label;
  const b = sub.label;
  const text = table(
    ['phase', `${a} ops/s:`, `${b} ops/s:`, `${b}/C:`, 'target', `${a} p50 µs:`, `${b} p50 µs:`,
      `${a} p99 µs:`, `${b} p99 µs:`],
    rows,
  );
  return { text, met, geo: Math.exp(logSum / Math.max(1, count)) };
}

/** One line of the section's summary table. */
type SummaryRow = [target: string, measured: string, verdict: string];

function throughputSummary(what: string, target: number, t: { met: number; geo: number }): SummaryRow {
  return [
    `${what} ≥ ${target.toFixed(1)}× C ops/s`,
    `${t.met}/${PHASES.length} phases; geometric mean ${fmtRatio(t.geo)}`,
    t.met === PHASES.length ? 'ok' : `MISS in ${PHASES.length - t.met} phase${PHASES.length - t.met === 1 ? '' : 's'}`,
  ];
}

async function oneClient(s: Settings, ref: RunningServer, sub: RunningServer, out: Log): Promise<SummaryRow> {
  const per = new Map<RunningServer, Map<string, PhaseStats>[]>([[ref, []], [sub, []]]);
  for (let round = 1; round <= s.rounds; round++) {
    for (const srv of [ref, sub]) {
      progress(`1 client, round ${round}/${s.rounds}: ${srv.label}`);
      per.get(srv)!.push(toStats(await xsBench(srv.clientEnv, { n: s.n1, prefix: '/bench/one' })));
    }
  }
  const t = comparisonTable(ref, sub, medians(per.get(ref)!), medians(per.get(sub)!), TARGET_1);
  out(`### 1 client (xs-bench -n ${s.n1}; median of ${s.rounds} alternating rounds)`);
  out('');
  out(t.text);
  out('');
  out(`Target: 1 client ≥ ${TARGET_1.toFixed(1)}× C ops/s — met in ${t.met}/${PHASES.length} phases ` +
    `(geometric mean ${fmtRatio(t.geo)}).`);
  out('');
  return throughputSummary('1 client', TARGET_1, t);
}

/** One phase with N concurrent xs-bench processes: aggregate ops/s, median of the p50s and p99s. */
async function concurrentPhase(srv: RunningServer, phase: Phase, s: Settings): Promise<PhaseStats> {
  const runs = Array.from({ length: s.clients }, (_, i) =>
    xsBench(srv.clientEnv, { n: s.n8, prefix: `/bench/c${i}`, phases: [phase] }));
  const results = (await Promise.all(runs)).map((r) => r.find((x) => x.phase === phase));
  const ok = results.filter((x): x is PhaseResult => x !== undefined);
  if (ok.length !== s.clients) throw new Error(`xs-bench printed no ${phase} result`);
  return {
    ops: ok.reduce((sum, r) => sum + r.ops_per_s, 0),
    p50: median(ok.map((r) => r.p50_us)),
    p99: median(ok.map((r) => r.p99_us)),
  };
}

async function manyClients(s: Settings, ref: RunningServer, sub: RunningServer, out: Log): Promise<SummaryRow> {
  const per = new Map<RunningServer, Map<string, PhaseStats>[]>([[ref, []], [sub, []]]);
  for (let round = 1; round <= s.rounds; round++) {
    progress(`${s.clients} clients, round ${round}/${s.rounds}`);
    const stats = new Map<RunningServer, Map<string, PhaseStats>>([[ref, new Map()], [sub, new Map()]]);
    for (const phase of PHASES) {
      for (const srv of [ref, sub]) stats.get(srv)!.set(phase, await concurrentPhase(srv, phase, s));
    }
    for (const srv of [ref, sub]) per.get(srv)!.push(stats.get(srv)!);
  }
  const t = comparisonTable(ref, sub, medians(per.get(ref)!), medians(per.get(sub)!), TARGET_8);
  out(`### ${s.clients} concurrent clients (${s.clients} xs-bench processes per phase, -n ${s.n8} each, ` +
    `own prefix each; ops/s = sum, p50/p99 = median over clients; median of ${s.rounds} alternating rounds)`);
  out('');
  out(t.text);
  out('');
  out(`Target: ${s.clients} clients ≥ ${TARGET_8.toFixed(1)}× C ops/s — met in ${t.met}/${PHASES.length} phases ` +
    `(geometric mean ${fmtRatio(t.geo)}).`);
  out('');
  return throughputSummary(`${s.clients} clients`, TARGET_8, t);
}

// ---------------------------------------------------------------------------------------------
// Memory: N nodes held

interface MemRow {
  label: string;
  loaded: number;
  seconds: number;
  complete: boolean;
  idle: number;
  rss: number;
  hwm: number;
  /** RSS for s.nodes nodes: measured, or extrapolated linearly from the part loaded. */
  rssAtTarget: number;
  verified: string;
}

async function memoryOf(spec: ServerSpec, s: Settings): Promise<MemRow> {
  const label = serverLabel(spec);
  progress(`memory: starting ${label}`);
  const srv = await startServer(spec, 'mem');
  try {
    await sleep(300);
    const idle = memOf(srv.pid).rss;
    // The oracles get a time cap: C xenstored 4.17 slows down as its tdb grows (≈ 10k creates/s at
    // 100k nodes, ≈ 2.5k/s at 250k on this machine), so a full load would take ~10 min.
    const capped = spec.kind !== 'xensim';
    const t0 = Date.now();
    const opts = {
      nodes: s.nodes, conns: s.conns, inflight: s.inflight, base: '/bench/mem', fanout: 1000,
      deadline: capped ? t0 + s.memSeconds * 1000 : undefined,
      progress: (done: number) => {
        const secs = Math.round((Date.now() - t0) / 1000);
        if (secs % 5 === 0) progress(`memory: ${label}: ${fmtInt(done)} nodes after ${secs} s`);
      },
    };
    const r = await loadNodes(srv.socket, opts);
    await sleep(1000); // let a node server settle (GC) before reading its RSS
    const m = memOf(srv.pid);
    // Check the last node and the number of a* directories.
    const last = nodePath(opts, r.nodes - 1);
    const read = await run('xenstore-read', [last], { env: srv.clientEnv, timeoutMs: 10000 });
    const list = await run('xenstore-list', ['/bench/mem'], { env: srv.clientEnv, timeoutMs: 30000 });
    const dirs = list.stdout.split('\n').filter(Boolean).length;
    const okRead = read.code === 0 && read.stdout.trim() === `v${r.nodes - 1}`;
    const okDirs = dirs === Math.ceil(r.nodes / opts.fanout);
    const verified = okRead && okDirs ? 'ok' : `FAILED (read ${last}: ${okRead ? 'ok' : 'bad'}, ${dirs} dirs)`;
    return {
      label, loaded: r.nodes, seconds: r.seconds, complete: r.complete, idle, rss: m.rss, hwm: m.hwm,
      rssAtTarget: r.complete ? m.rss : idle + ((m.rss - idle) * s.nodes) / Math.max(1, r.nodes),
      verified,
    };
  } finally {
    progress(`memory: stopping ${label}`);
    await srv.stop();
  }
}

async function memory(s: Settings, out: Log): Promise<SummaryRow> {
  const rows: MemRow[] = [];
  for (const spec of [s.ref, s.subject]) rows.push(await memoryOf(spec, s));
  const isTarget = s.nodes === MEM_NODES;
  const nodesLabel = fmtInt(s.nodes);
  out(`### ${nodesLabel} nodes held (pipelined XS_WRITE, ${s.conns} connections × ${s.inflight} in flight; ` +
    `/bench/mem/aN/bM, ≤ 1000 children per directory)`);
  out('');
  out(table(
    ['server', 'nodes loaded:', 'load s:', 'writes/s:', 'idle RSS MB:', 'RSS MB:', 'peak RSS MB:',
      `RSS at ${nodesLabel} MB:`, 'bytes/node:', 'target', 'check'],
    rows.map((r, i) => {
      const isSubject = i === 1;
      const target = !isSubject ? '' : isTarget
        ? `≤ ${TARGET_MEM_MB} MB ${verdict(r.rssAtTarget <= TARGET_MEM_MB * MB)}`
        : `≤ ${TARGET_MEM_MB} MB at 1M (not run: ${nodesLabel} nodes)`;
      return [
        r.label, fmtInt(r.loaded), fmtFixed(r.seconds), fmtInt(r.loaded / r.seconds), fmtMB(r.idle), fmtMB(r.rss),
        fmtMB(r.hwm), `${fmtMB(r.rssAtTarget)}${r.complete ? '' : ' (extrapolated)'}`,
        fmtInt((r.rss - r.idle) / Math.max(1, r.loaded)), target, r.verified,
      ];
    }),
  ));
  out('');
  const cut = rows.filter((r) => !r.complete).map((r) => r.label);
  if (cut.length > 0) {
    out(`${cut.join(', ')}: load stopped after the ${s.memSeconds} s cap (--mem-seconds); its RSS at ` +
      `${nodesLabel} nodes is extrapolated linearly from idle RSS + bytes/node.`);
  }
  out(`Target: ${fmtInt(MEM_NODES)} nodes ≤ ${TARGET_MEM_MB} MB RSS (xensim; for the node process).`);
  out('');
  const sub = rows[1];
  const ok = sub.rssAtTarget <= TARGET_MEM_MB * MB;
  return [
    `${fmtInt(MEM_NODES)} nodes ≤ ${TARGET_MEM_MB} MB RSS`,
    `${fmtMB(sub.rssAtTarget)} MB at ${nodesLabel} nodes${sub.complete ? '' : ' (extrapolated)'}`,
    !isTarget ? `n/a (${nodesLabel} nodes)` : sub.verified !== 'ok' ? 'load not verified' : verdict(ok),
  ];
}

// ---------------------------------------------------------------------------------------------

export const xenstoredSection: BenchSection = {
  name: 'xenstored',
  title: 'xenstored: xensim vs Debian C xenstored 4.17',
  parts: ['1client', '8clients', 'mem'],
  async run(o, parts, out) {
    const s = settingsFrom(o);
    await prepareOracle([s.ref.kind, s.subject.kind]);
    if (s.subject.kind === 'xensim' && !xensimDaemonPresent()) {
      throw new Error(
        `xensim's xenstored is not in this checkout yet (domains/dom0/xenstored/cli.ts is missing).\n` +
        `Benchmark a stand-in in its column instead: \`npm run bench -- --subject oracle-ocaml\`.`,
      );
    }
    out(`Reference: ${serverLabel(s.ref)} (../shared/oracle/start.sh, no hypervisor). ` +
      `Subject: ${serverLabel(s.subject)}` +
      `${s.subject.kind === 'xensim' ? ` (sim/bin/xensim.mjs xenstored, profile ${s.subject.profile ?? 'c'})` : ' (stand-in)'}. ` +
      `Client: ../shared/oracle/xs-bench (libxenstore over the Unix socket).`);
    out('');
    out(`Phases: ${PHASES.map((p) => `${p} = ${PHASE_NOTES[p]}`).join('; ')}.`);
    out('');

    const summary: SummaryRow[] = [];
    if (parts.has('1client') || parts.has('8clients')) {
      progress(`starting ${serverLabel(s.ref)} and ${serverLabel(s.subject)}`);
      const ref = await startServer(s.ref, 'ref');
      try {
        const sub = await startServer(s.subject, 'sub');
        try {
          progress('warm-up (not counted)');
          for (const srv of [ref, sub]) await xsBench(srv.clientEnv, { n: Math.min(2000, s.n1), prefix: '/bench/warm' });
          if (parts.has('1client')) summary.push(await oneClient(s, ref, sub, out));
          if (parts.has('8clients')) summary.push(await manyClients(s, ref, sub, out));
        } finally {
          await sub.stop();
        }
      } finally {
        await ref.stop();
      }
    }
    if (parts.has('mem')) summary.push(await memory(s, out));
    out(`### Targets (${serverLabel(s.subject)} vs ${serverLabel(s.ref)})`);
    out('');
    out(table(['target', 'measured', 'verdict'], summary));
    out('');
  },
};
