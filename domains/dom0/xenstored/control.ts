// XS_CONTROL as C xenstored 4.17 answers it (xenstored_control.c): check, log, logfile, print,
// help and the quota tables; and as oxenstored's do_debug (process.ml) answers its DEBUG.
import type { XsError } from '../../../hypervisor/public/io/xs_wire.ts';
import { atoi, type XsDomain } from './domain.ts';
import type { Quotas } from './quota.ts';
import type { Store } from './store.ts';

const CONTROL_HELP = 'check\t\nlog\ton|off\nlive-update\t[-c <cmdline>] [-F] [-t <timeout>] <file>\n'
  + '    Default timeout is 60 seconds.\nlogfile\t<file>\nmemreport\t[<file>]\nprint\t<string>\n'
  + 'quota\t[set <name> <val>|<domid>]\nquota-soft\t[set <name> <val>]\nhelp\t\n';

/** What CONTROL looks at (and, for `quota set`, changes) in the daemon. */
export interface ControlState {
  readonly quotas: Quotas;
  readonly store: Store;
  readonly domains: ReadonlyMap<number, XsDomain>;
  readonly connections: ReadonlyMap<number, { readonly watches: readonly unknown[]; readonly transactions: ReadonlyMap<number, unknown> }>;
  /** C's domain->memory (nodes, watches, transaction copies, queued output). */
  domainMemory(domid: number): number;
}

/** The reply text (none: a plain OK), or the error. */
export type ControlResult = { readonly text?: string } | { readonly error: XsError };

export function control(args: readonly string[], s: ControlState): ControlResult {
  const [cmd, ...rest] = args;
  switch (cmd) {
    case 'check':
      return rest.length ? { error: 'EINVAL' } : {};
    case 'log':
      return rest.length !== 1 || (rest[0] !== 'on' && rest[0] !== 'off') ? { error: 'EINVAL' } : {};
    case 'logfile':
    case 'print':
      return rest.length !== 1 ? { error: 'EINVAL' } : {};
    case 'help':
      return rest.length ? { error: 'EINVAL' } : { text: CONTROL_HELP };
    case 'quota':
      return quota(rest, false, s);
    case 'quota-soft':
      return quota(rest, true, s);
    default:
      // memreport needs a talloc-report build; live-update needs a daemon binary to exec.
      return { error: 'EINVAL' };
  }
}

/** CONTROL quota / quota-soft, with 4.17's table layout. */
function quota(args: readonly string[], soft: boolean, s: ControlState): ControlResult {
  const rows: [string, keyof Quotas, string][] = soft
    ? [['memory', 'memorySoft', 'Total Xenstore memory per domain (warning level)']]
    : [
        ['nodes', 'nodes', 'Nodes per domain'],
        ['watches', 'watches', 'Watches per domain'],
        ['transactions', 'transactions', 'Transactions per domain'],
        ['outstanding', 'outstanding', 'Outstanding requests per domain'],
        ['transaction-nodes', 'transactionNodes', 'Max. number of accessed nodes per transaction'],
        ['memory', 'memory', 'Total Xenstore memory per domain (error level)'],
        ['node-size', 'nodeSize', 'Max. size of a node'],
        ['path-max', 'pathMax', 'Max. length of a node path'],
        ['permissions', 'permissions', 'Max. number of permissions per node'],
      ];
  if (args.length === 0) {
    return { text: 'Quota settings:\n' + rows.map(([n, k, d]) => `${n.padEnd(17)}: ${String(s.quotas[k]).padStart(8)} ${d}\n`).join('') };
  }
  if (args[0] === 'set') {
    if (args.length !== 3) return { error: 'EINVAL' };
    const row = rows.find(([n]) => n === args[1]);
    const v = Number(args[2]);
    if (row === undefined || !/^\d+$/.test(args[2]) || v < 1) return { error: 'EINVAL' };
    s.quotas[row[1]] = v;
    return { text: 'OK' };
  }
  if (soft || args.length !== 1) return { error: 'EINVAL' };
  const d = s.domains.get(atoi(args[0]));
  if (d === undefined) return { error: 'ENOENT' };
  const c = d.conn !== undefined ? s.connections.get(d.conn) : undefined;
  const u = { nodes: s.store.ownedBy(d.domid), memory: s.domainMemory(d.domid) };
  const line = (n: string, v: number): string => `${n.padEnd(16)}: ${String(v).padStart(8)}\n`;
  return {
    text: `Domain ${d.domid}:\n` + line('nodes', u.nodes) + line('watches', c?.watches.length ?? 0)
      + line('transactions', c?.transactions.size ?? 0) + line('outstanding', 0) + line('memory', u.memory),
  };
}

/** What oxenstored's DEBUG looks at. */
export interface DebugState {
  /** Connection.is_dom0: a socket or dom0's ring; anyone else is answered OK (allow_debug off). */
  readonly dom0: boolean;
  /** A domain's entry in oxenstored's quota map, in the requester's view (its transaction's, if any). */
  entries(domid: number): number | undefined;
  /** quota-maxentity. */
  readonly maxEntries: number;
  /** The mfn of a domain whose connection exists. */
  mfnOf(domid: number): number | undefined;
  parseInt(s: string): number | undefined;
}

/**
 * oxenstored's do_debug: the reply payload (raw: some lack the NUL), or undefined for a plain OK.
 * Anything it does not know, and any exception on the way, is OK. Not modelled (answered OK):
 * `watches` and `xenbus` (dumps of oxenstored's own structures) and live-update's -f, -c and -s
 * (they run or re-exec the daemon's binary).
 */
export function debugOcaml(payload: string, s: DebugState): string | undefined {
  if (!s.dom0) return undefined;
  const [cmd, ...rest] = payload.split('\0');
  switch (cmd) {
    case 'live-update': {
      // The trailing NUL's empty piece is dropped (List.tl of an empty list fails: OK).
      if (rest.length === 0) return undefined;
      const args = rest.slice(0, -1);
      const known = (args.length === 2 && args[0] === '-f') || (args.length === 1 && args[0] === '-a') || args[0] === '-c' || args[0] === '-s';
      return known ? undefined : `Unknown arguments: ${args.join(',')}`;
    }
    case 'quota': {
      if (rest.length === 0) return undefined;
      const domid = s.parseInt(rest[0]);
      if (domid === undefined) return undefined;
      const n = s.entries(domid);
      return `dom${domid} quota: ${n === undefined ? 'not set' : `${n}/${s.maxEntries}`}\0`;
    }
    case 'mfn': {
      if (rest.length === 0) return undefined;
      const domid = s.parseInt(rest[0]);
      const mfn = domid === undefined ? undefined : s.mfnOf(domid);
      return mfn === undefined ? undefined : `${mfn}\0`;
    }
    default:
      return undefined;
  }
}
