// `xensim xenstored`: the daemon on a Unix socket, with C xenstored 4.17's quota options.
import v8 from 'node:v8';
import type { Command } from 'commander';
import { C_DEFAULT_QUOTAS, OCAML_DEFAULT_QUOTAS, parseQuotaAssignment, type Quotas } from './quota.ts';
import type { Profile } from './core.ts';
import { TraceFile } from './trace.ts';
import { XenstoredServer } from './unix-socket.ts';

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`not a non-negative integer: ${v}`);
  return n;
};
const collect = (v: string, prev: string[]): string[] => [...prev, v];

export function registerXenstored(program: Command): void {
  program
    .command('xenstored')
    .description('run a standalone XenStore daemon on a Unix socket')
    .requiredOption('--socket <path>', 'Unix socket for dom0 tools (what XENSTORED_PATH names)')
    .option('--profile <profile>', 'behaviour: c (C xenstored 4.17) or ocaml (oxenstored 4.17)', 'c')
    .option('--guest-dir <dir>', 'once domain N is introduced, socket DIR/N is its connection')
    .option('-T, --trace <file>', 'write every request and reply to FILE')
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
    .option('-N, --no-fork', 'accepted for compatibility: xensim never forks')
    .action(async (o: Record<string, unknown>) => {
      const profile = o.profile as Profile;
      if (profile !== 'c' && profile !== 'ocaml') throw new Error(`unknown profile "${profile}" (c or ocaml)`);
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
      const trace = typeof o.trace === 'string' ? new TraceFile(o.trace) : undefined;
      const server = new XenstoredServer({
        socketPath: o.socket as string,
        guestDir: o.guestDir as string | undefined,
        profile,
        quotas,
        trace,
        keepOrphans: o.keepOrphans === true,
      });
      await server.listen();
      // Once the tree is big, let V8 keep less slack above the live heap (a million nodes: about
      // 270 MB RSS instead of 370 MB); small trees keep the default, which collects less often.
      const bigTree = setInterval(() => {
        if (server.xs.store.size < 200_000) return;
        v8.setFlagsFromString('--heap-growing-percent=20');
        clearInterval(bigTree);
      }, 500);
      bigTree.unref();
      const stop = (): void => {
        void server.close().then(() => trace?.close()).then(() => process.exit(0));
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
}
