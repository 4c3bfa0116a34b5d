// Quotas and limits, with C xenstored 4.17's defaults and option names, and oxenstored's.
// All C quotas spare the privileged domain (4.17 applies path-max to everyone); 0 disables one.
import type { Perms } from './permissions.ts';

export interface Quotas {
  /** nodes owned per domain (-E, -Q nodes=). */
  nodes: number;
  /** node size in bytes: header + ACL + value + child names (-S, -Q node-size=). */
  nodeSize: number;
  /** watches per domain (-W). */
  watches: number;
  /** open transactions per domain (-t). */
  transactions: number;
  /** ACL entries per node (-A). */
  permissions: number;
  /** length of a path's relative part (-M, -Q path-max=). */
  pathMax: number;
  /** requests whose replies are not yet read (-Q outstanding=): the daemon stops reading. */
  outstanding: number;
  /** nodes one transaction may touch (-Q transaction-nodes=). */
  transactionNodes: number;
  /** memory per domain, hard (-Q memory=) and soft (-q memory=) in bytes. */
  memory: number;
  memorySoft: number;
  /** seconds an unsent watch event of a guest may wait (-w watch-event=). */
  watchEventTimeout: number;
}

export const C_DEFAULT_QUOTAS: Readonly<Quotas> = {
  nodes: 1000,
  nodeSize: 2048,
  watches: 128,
  transactions: 10,
  permissions: 5,
  pathMax: 2048,
  outstanding: 20,
  transactionNodes: 1024,
  memory: 2 * 1024 * 1024 + 512 * 1024,
  memorySoft: 2 * 1024 * 1024,
  watchEventTimeout: 20,
};

/** oxenstored with Debian's shipped oxenstored.conf. */
export const OCAML_DEFAULT_QUOTAS: Readonly<Quotas> = {
  nodes: 1000,
  nodeSize: 2048,
  watches: 100,
  transactions: 10,
  permissions: 0,
  pathMax: 1024,
  outstanding: 1024,
  transactionNodes: 1024,
  memory: 0,
  memorySoft: 0,
  watchEventTimeout: 0,
};

/** `-Q name=value` names (C xenstored 4.17) mapped to fields. */
export const QUOTA_NAMES: Readonly<Record<string, keyof Quotas>> = {
  nodes: 'nodes',
  watches: 'watches',
  transactions: 'transactions',
  outstanding: 'outstanding',
  'transaction-nodes': 'transactionNodes',
  memory: 'memory',
  'node-size': 'nodeSize',
  permissions: 'permissions',
  'path-max': 'pathMax',
};

/** Parses `name=value` as -Q/-q take it; throws with a message for the CLI. */
export function parseQuotaAssignment(arg: string): [keyof Quotas, number] {
  const eq = arg.indexOf('=');
  const name = eq < 0 ? arg : arg.slice(0, eq);
  const field = QUOTA_NAMES[name];
  if (field === undefined) throw new Error(`unknown quota "${name}"`);
  const v = Number(arg.slice(eq + 1));
  if (eq < 0 || !Number.isInteger(v) || v < 0) throw new Error(`bad quota value in "${arg}"`);
  return [field, v];
}

/** 4.17's node record size, which node-size limits: 24-byte header, 8 bytes per ACL entry, value, child names. */
export function nodeRecordSize(value: string, perms: Perms, children: readonly string[]): number {
  let kids = 0;
  for (const k of children) kids += k.length + 1;
  return 24 + 8 * perms.length + value.length + kids;
}
