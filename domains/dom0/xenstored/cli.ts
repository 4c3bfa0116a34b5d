// `xensim xenstored`: the daemon on a Unix socket, with C xenstored 4.17's quota options.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Command } from 'commander';
import { C_DEFAULT_QUOTAS, OCAML_DEFAULT_QUOTAS, parseQuotaAssignment, type Quotas } from './quota.ts';
import { type Profile, Xenstored } from './core.ts';
import { parseOxenstoredConf } from './oxenstored-conf.ts';
import { parseTrace, replayTrace } from './trace-replay.ts';
import { TraceFile } from './trace.ts';
import { DB_DEBUG_FILE, dbDebug } from './db-debug.ts';
import { XenstoredServer } from './unix-socket.ts';
import type { XenstoredDaemon } from './daemon.ts';
import { startStandbyThreads } from './standby-thread.ts';
import { stateDumpFile } from './state-dump-file.ts';
import { IdleCollect } from './idle-collect.ts';
import { loadMallocTrim } from '../../../sim/malloc-trim.ts';

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`not a non-negative integer: ${v}`);
  return n;
};
const collect = (v: string, prev: string[]): string[] => [...prev, v];

/** The daemon options a live update's `-c <cmdline>` may give again (C's command line). */
function quotaOptions(cmd: Command): Command {
  return cmd
    .option('-E, --entry-nb <n>', 'nodes a domain may own', int)
    .option('-S, --entry-size <n>', 'largest node size in bytes', int)
    .option('-W, --watch-nb <n>', 'watches a domain may have', int)
    .option('-t, --transaction <n>', 'transactions a domain may have open', int)
    .option('-A, --perm-nb <n>', 'ACL entries a node may have', int)
    .option('-M, --path-max <n>', 'longest relative path', int)
    .option('-Q, --quota <name=value>', 'set a quota (nodes, watches, transactions, outstanding, transaction-nodes, memory, node-size, permissions, path-max)', collect, [])
    .option('-q, --quota-soft <name=value>', 'set a soft quota (memory)', collect, [])
    .option('-w, --timeout <name=value>', 'watch-event=<seconds>', collect, [])
    .option('-K, --keep-orphans', "re-own a dead domain's nodes to dom0 instead of deleting them")
    .option('--seed-rate-limit <n>', "the seed's limit (not in Xen): read at most N requests a second from each unprivileged domain (default: off)", int);
}

/** The quotas given explicitly (the rest are the profile's defaults, or a restored stream's). */
function quotasFrom(o: Record<string, unknown>, profile: Profile): Partial<Quotas> {
  const quotas: Partial<Quotas> = {};
  const base = profile === 'c' ? C_DEFAULT_QUOTAS : OCAML_DEFAULT_QUOTAS;
  if (o.entryNb !== undefined) quotas.nodes = o.entryNb as number;
  if (o.entrySize !== undefined) quotas.nodeSize = o.entrySize as number;
  if (o.watchNb !== undefined) quotas.watches = o.watchNb as number;
  if (o.transaction !== undefined) quotas.transactions = o.transaction as number;
  if (o.permNb !== undefined) quotas.permissions = o.permNb as number;
  // C caps -M at XENSTORE_REL_PATH_MAX.
  if (o.pathMax !== undefined) quotas.pathMax = Math.min(o.pathMax as number, base.pathMax);
  for (const q of o.quota as string[]) {
    const [k, v] = parseQuotaAssignment(q);
    quotas[k] = v;
  }
  for (const q of o.quotaSoft as string[]) {
    const [k, v] = parseQuotaAssignment(q);
    if (k !== 'memory') throw new Error(`no soft quota "${q}"`);
    quotas.memorySoft = v;
  }
  for (const t of o.timeout as string[]) {
    const m = /^watch-event=(\d+)$/.exec(t);
    if (!m) throw new Error(`unknown timeout "${t}"`);
    quotas.watchEventTimeout = Number(m[1]);
  }
  return quotas;
}

/** The options of `-c <cmdline>` (blank-separated, as C's strtok splits it); -U is implied. */
function cmdlineQuotas(cmdline: string, profile: Profile): Partial<Quotas> {
  const cmd = quotaOptions(new Command().exitOverride().allowUnknownOption().allowExcessArguments().configureOutput({ writeErr: () => undefined }));
  cmd.option('-U, --live-update', 'ignored');
  cmd.parse(cmdline.split(/[ \t]+/).filter((t) => t !== ''), { from: 'user' });
  return quotasFrom(cmd.opts(), profile);
}

export function registerXenstored(program: Command): void {
  quotaOptions(program
    .command('xenstored')
    .description('run a standalone XenStore daemon on a Unix socket')
    .option('--socket <path>', 'Unix socket for dom0 tools (what XENSTORED_PATH names); required but with --replay')
    .option('--profile <profile>', 'behaviour: c (C xenstored 4.17) or ocaml (oxenstored 4.17)', 'c')
    .option('--guest-dir <dir>', 'once domain N is introduced, socket DIR/N is its connection')
    .option('-T, --trace <file>', 'write every request and reply to FILE'))
    .option('-N, --no-fork', 'accepted for compatibility: xensim never forks')
    .option('--restore <file>', 'start from a state stream (xenstore-migration.md format) instead of an empty tree')
    .option('--dump <file>', 'write the state stream to FILE when stopped (SIGTERM, SIGINT) and on SIGUSR1 (the seed\'s "state dumped upon SIGUSR1", to a path you choose); profile ocaml also writes oxenstored\'s debug dump <rundir>/db.debug on SIGUSR1')
    .option('--config-file <file>', "profile ocaml: oxenstored's configuration (oxenstored.conf: its quota-* keys and conflict-max-history-seconds; other keys are read and said not modelled)")
    .option('--seed-replicas <n>', "the seed's replication (not in Xen): N standby threads follow every committed change over a shared-memory log; SIGUSR2 kills the primary (a fault to try it) and standby 0 takes over with every connection (default 0: none)", int)
    .option('--replay <trace>', "re-run the requests of a -T trace (a real C xenstored's or xensim's) on a fresh daemon of --profile and report every reply that differs; exit 1 if any does")
    .addHelpText('after', `
Live update (Debian's \`xenstore-control live-update [-c CMDLINE] [-t SECS] [-F] FILE\`,
XENSTORED_PATH naming --socket): as C xenstored 4.17 - the state stream goes to
<rundir>/state_dump (rundir: $XENSTORED_ROOTDIR, else the socket's directory) and a new
daemon instance in this process reads it and takes over every connection; FILE may be any
path (no binary is executed); -c may give the quota options above again.
--dump/--restore use the same stream: --restore keeps the tree, quotas and domains; socket
clients of the daemon that wrote it are gone.`)
    .action(async (o: Record<string, unknown>) => {
      const profile = o.profile as Profile;
      if (profile !== 'c' && profile !== 'ocaml') throw new Error(`unknown profile "${profile}" (c or ocaml)`);
      let quotas = quotasFrom(o, profile);
      let conflictMaxHistorySeconds: number | undefined;
      if (typeof o.configFile === 'string') {
        if (profile !== 'ocaml') throw new Error('--config-file is oxenstored\'s option: it needs --profile ocaml');
        const conf = parseOxenstoredConf(readFileSync(o.configFile, 'utf8'));
        // The command line's quota options win over the file's.
        quotas = { ...conf.quotas, ...quotas };
        conflictMaxHistorySeconds = conf.conflictMaxHistorySeconds;
        if (conf.ignored.length !== 0) process.stderr.write(`xensim xenstored: ${o.configFile}: not modelled, ignored: ${conf.ignored.join(', ')}\n`);
      }
      if (typeof o.replay === 'string') {
        process.exitCode = replayCommand(o.replay, profile, quotas);
        return;
      }
      if (typeof o.socket !== 'string') {
        process.stderr.write("xensim xenstored: required option '--socket <path>' not specified\n");
        process.exitCode = 2;
        return;
      }
      const rundir = process.env.XENSTORED_ROOTDIR ?? dirname(o.socket as string);
      const stateDumpPath = join(rundir, 'state_dump');
      const trace = typeof o.trace === 'string' ? new TraceFile(o.trace) : undefined;
      const clients = new IdleCollect({
        // The first collection frees what the clients left; V8 gives the new space grown under
        // their load back only at a collection that sees the allocation rate since the previous
        // one low over 5 s, hence a second one, 5.5 s later.
        quietMs: [1500, 7000],
        pollMs: 250,
        now: () => performance.now(),
        every: (fn, ms) => {
          const t = setInterval(fn, ms);
          t.unref();
          return () => clearInterval(t);
        },
        collect: idleCollection(),
      });
      const server = new XenstoredServer({
        clients,
        socketPath: o.socket as string,
        guestDir: o.guestDir as string | undefined,
        profile,
        quotas,
        trace,
        keepOrphans: o.keepOrphans === true,
        clock: () => Math.floor(Date.now() / 1000),
        // C's CLOCK_MONOTONIC, for the write-rate limiter and the watch-event timeout.
        clockMs: () => Math.floor(performance.now()),
        seedRateLimit: o.seedRateLimit as number | undefined,
        conflictMaxHistorySeconds,
        timer: (fn, ms) => void setTimeout(fn, ms).unref(),
        stateDump: stateDumpFile(stateDumpPath),
        liveUpdateOptions: (cmdline) => ({
          profile, keepOrphans: o.keepOrphans === true, clock: () => Math.floor(Date.now() / 1000),
          clockMs: () => Math.floor(performance.now()), seedRateLimit: o.seedRateLimit as number | undefined, conflictMaxHistorySeconds,
          quotas: cmdline === undefined ? quotas : cmdlineQuotas(cmdline, profile),
        }),
        restoreFrom: typeof o.restore === 'string' ? readFileSync(o.restore) : undefined,
        seedReplicas: o.seedReplicas as number | undefined,
        seedStandbys: 'threads',
      });
      // What C syslogs ("live-update: read state"), with the stream's size.
      // What C sends to syslog (memory quota crossings), on stderr.
      const syslog = (level: string, text: string): void => void process.stderr.write(`xenstored: ${level}: ${text}\n`);
      server.daemon.xs.syslog = syslog;
      server.daemon.onLiveUpdate = (d) => {
        server.daemon.xs.syslog = syslog;
        process.stderr.write(`xenstored: live-update: new instance read ${d.bytes} bytes of state, ${d.restored.connections.size} connections\n`);
      };
      await server.listen();
      if (server.daemon.replication !== undefined) standbysFor(server.daemon, profile, syslog);
      // Once the tree is big, let V8 keep less slack above the live heap (a million nodes: about
      // 270 MB RSS instead of 370 MB); small trees keep the default, which collects less often.
      const bigTree = setInterval(() => {
        if (server.xs.store.size < 200_000) return;
        v8.setFlagsFromString('--heap-growing-percent=20');
        clearInterval(bigTree);
      }, 500);
      bigTree.unref();
      const dumpTo = typeof o.dump === 'string' ? o.dump : undefined;
      const dump = (): void => {
        if (dumpTo !== undefined) writeFileSync(dumpTo, server.daemon.dump());
      };
      if (dumpTo !== undefined) process.on('SIGUSR1', dump);
      // oxenstored writes its debug dump of the tree on SIGUSR1 (and ignores any failure to).
      if (profile === 'ocaml') {
        process.on('SIGUSR1', () => {
          try {
            writeFileSync(join(rundir, DB_DEBUG_FILE), Buffer.from(dbDebug(server.xs.store), 'latin1'), { mode: 0o600 });
          } catch { /* as oxenstored: nothing */ }
        });
      }
      const stop = (): void => {
        dump();
        void server.close().then(() => trace?.close()).then(() => process.exit(0));
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
}

/**
 * A full garbage collection on demand. Node has no API for it but --expose-gc's gc(), and this
 * process is already running: the flag is set now, and gc() taken from a context made after it.
 */
function fullGc(): () => void {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as unknown;
  if (typeof gc !== 'function') throw new Error('--expose-gc did not expose gc()');
  return () => void (gc as () => void)();
}

/**
 * What the daemon does once quiet: a full collection, which frees the clients' dead buffers, then
 * malloc_trim(0) where the addon is built: glibc gives back only the top of its heap on free(), so
 * the freed pages below a block still in use would stay in RSS (after a 600 s churn with hostile
 * guests, 50 MB of the main arena's 56; measured in the soak bench's part churn).
 */
function idleCollection(): () => void {
  const gc = fullGc();
  const trim = loadMallocTrim();
  return () => {
    gc();
    trim?.();
  };
}

/** `--replay TRACE`: prints what was compared and each difference; 0 if none, 1 otherwise. */
function replayCommand(path: string, profile: Profile, quotas: Partial<Quotas>): number {
  let text: string;
  try {
    text = readFileSync(path, 'latin1');
  } catch (e) {
    process.stderr.write(`xensim xenstored: cannot read trace ${path}: ${(e as Error).message}\n`);
    return 2;
  }
  const entries = parseTrace(text);
  const r = replayTrace(entries, () => new Xenstored({ profile, quotas }));
  const out = process.stdout;
  out.write(`replayed ${path} on xensim (profile ${profile}): ${r.sessions} session(s), ${r.requests} requests, `
    + `${r.compared} replies and events compared; ${r.choices} requests whose transaction the trace does not say, `
    + `settled in ${r.runs} run(s)\n`);
  const shown = r.differences.slice(0, 50);
  for (const d of shown) {
    out.write(`  line ${d.line}, connection ${d.conn}: after ${d.request || '(end of trace)'}\n`
      + `    trace:  ${d.expected ?? '(nothing)'}\n    xensim: ${d.got ?? '(nothing)'}\n`);
  }
  if (r.differences.length > shown.length) out.write(`  ... and ${r.differences.length - shown.length} more\n`);
  out.write(`${r.differences.length} differing\n`);
  return r.differences.length === 0 ? 0 : 1;
}

/**
 * `--seed-replicas N`: the standby threads, started again for each new primary; SIGUSR2 kills the
 * primary and the one that takes over is read from standby 0's stream.
 */
function standbysFor(daemon: XenstoredDaemon, profile: Profile, syslog: (level: string, text: string) => void): void {
  let threads = startStandbyThreads(daemon.replication!, { profile });
  daemon.onReplicationRestarted = () => {
    threads = startStandbyThreads(daemon.replication!, { profile });
  };
  process.on('SIGUSR2', () => {
    if (daemon.crashed) return;
    const old = threads;
    const t0 = performance.now();
    daemon.crash();
    void old.promoted.then((p) => {
      const restored = daemon.failover(p.stream);
      daemon.xs.syslog = syslog;
      process.stderr.write(`xenstored: failover: standby 0 took over in ${(performance.now() - t0).toFixed(1)} ms (${p.applied} batches, ${p.stream.length} bytes of state, ${restored.xs.connections.size} connections)\n`);
      return old.stop();
    });
  });
}
