// The project seed's xenstore migration - NOT what Xen does. The seed says that during live
// migration "xenstored copies the guest node tree to the target host", open transactions are
// transferred and watch IDs preserved. In Xen nothing of xenstore travels: the destination's libxl
// writes a fresh tree and the guest's kernel registers its watches again (xs_resume); Xen's
// docs/designs/xenstore-migration.md only sketches such records for a future non-cooperative
// migration (spec/xenstore.md §6, §9). Offered as an option, `xl migrate --xenstore seed`, off by
// default; the state travels in xensim's own XENSIM_SEED_XENSTORE libxl record.
//
// What travels: the nodes below the guest's home (value, ACL with the old domid rewritten to the
// new one), its connection's watches (tokens unchanged; paths in the old home moved to the new)
// and the ids of its open transactions. The encoding is JSON (values are latin1 strings).
// Importing is all or nothing, and the stream is hostile: every path, ACL, token and count is
// checked before the tree changes. Nodes the destination already has (libxl's fresh ones: name,
// domid, device/...) keep its values. ACL entries naming any domain but dom0 and the guest are
// dropped: they name domains of the source host (a later domain with that id here must not
// inherit them, XSA-417). No watch fires for the copied nodes (the guest is paused and nothing
// of the destination asked for them). A transaction carried over has lost what it read and wrote
// at the source, so its commit says EAGAIN: the client retries it, as it must on any conflict.
import { XENSTORE_PAYLOAD_MAX } from '../../../hypervisor/public/io/xs_wire.ts';
import type { Xenstored } from './core.ts';
import { DOMID_FIRST_RESERVED, asDomId } from './domain.ts';
import { basename, domainPath, isSpecial, isValidNodename, parentOf } from './path.ts';
import { type PermEntry, formatPerms, internPerms, parsePerms } from './permissions.ts';

/** One node below the home: its path relative to the home, its value (latin1) and its ACL ("b5"...). */
export type SeedNode = readonly [path: string, value: string, perms: readonly string[]];

/** One watch: canonical path (or @name), token, and whether the guest gave it relative to its home. */
export type SeedWatch = readonly [path: string, token: string, relative: boolean];

export interface SeedXenstoreState {
  readonly version: 1;
  /** The guest's domid at the source. */
  readonly domid: number;
  /** Parents before children. */
  readonly nodes: readonly SeedNode[];
  readonly watches: readonly SeedWatch[];
  readonly transactions: readonly number[];
}

export interface SeedImportSummary {
  /** Nodes created at the destination. */
  readonly nodes: number;
  /** Nodes the destination already had (its values kept). */
  readonly kept: number;
  readonly watches: number;
  readonly transactions: number;
}

export class SeedStateError extends Error {
  override readonly name = 'SeedStateError';
}

/** The seed's export at the source: the guest's subtree, watches and open transactions. */
export function exportSeedState(xs: Xenstored, domid: number): Uint8Array {
  const home = domainPath(domid);
  const nodes: SeedNode[] = [];
  for (const [path, node] of xs.store.walk(home)) {
    if (path === home) continue;
    nodes.push([path.slice(home.length + 1), node.value, formatPerms(node.perms)]);
  }
  const connId = xs.domainConnection(domid);
  const conn = connId === undefined ? undefined : xs.connections.get(connId);
  const state: SeedXenstoreState = {
    version: 1, domid, nodes,
    watches: (conn?.watches ?? []).map((w) => [w.node, w.token, w.relativeTo !== undefined] as const),
    transactions: conn ? [...conn.transactions.keys()] : [],
  };
  return new TextEncoder().encode(JSON.stringify(state));
}

const isLatin1 = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
};

/** The decoded state, its shape checked (not yet its meaning). */
function decode(bytes: Uint8Array): SeedXenstoreState {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new SeedStateError('not JSON');
  }
  const bad = (what: string): never => {
    throw new SeedStateError(what);
  };
  if (typeof raw !== 'object' || raw === null) return bad('not an object');
  const s = raw as Record<string, unknown>;
  if (s.version !== 1) bad(`version ${String(s.version)}, expected 1`);
  if (!Number.isInteger(s.domid) || (s.domid as number) <= 0 || (s.domid as number) >= DOMID_FIRST_RESERVED) bad('bad domid');
  if (!Array.isArray(s.nodes) || !Array.isArray(s.watches) || !Array.isArray(s.transactions)) return bad('nodes, watches and transactions must be lists');
  for (const n of s.nodes as unknown[]) {
    if (!Array.isArray(n) || n.length !== 3 || typeof n[0] !== 'string' || typeof n[1] !== 'string' || !Array.isArray(n[2])
      || !(n[2] as unknown[]).every((p) => typeof p === 'string')) bad('a node is not [path, value, [perms]]');
  }
  for (const w of s.watches as unknown[]) {
    if (!Array.isArray(w) || w.length !== 3 || typeof w[0] !== 'string' || typeof w[1] !== 'string' || typeof w[2] !== 'boolean') bad('a watch is not [path, token, relative]');
  }
  for (const t of s.transactions as unknown[]) if (!Number.isInteger(t)) bad('a transaction id is not an integer');
  return s as unknown as SeedXenstoreState;
}

/**
 * The seed's import at the destination, for the guest now `domid` (introduced, not yet running):
 * all of it or, with a SeedStateError saying why, nothing.
 */
export function importSeedState(xs: Xenstored, domid: number, bytes: Uint8Array): SeedImportSummary {
  const state = decode(bytes);
  const bad = (what: string): never => {
    throw new SeedStateError(what);
  };
  const connId = xs.domainConnection(domid);
  const conn = connId === undefined ? undefined : xs.connections.get(connId);
  if (!conn) return bad(`domain ${domid} has no xenstore connection here`);
  const oldHome = domainPath(state.domid);
  const home = domainPath(domid);
  const q = xs.quotas;

  // The nodes: each below the home, its parent there already or earlier in the list.
  if (state.nodes.length > 4 * q.nodes) bad(`${state.nodes.length} nodes (more than 4 x the node quota ${q.nodes})`);
  const moveId = (id: number): number => (id === state.domid ? domid : id);
  const planned = new Set<string>();
  const creates: { path: string; value: string; perms: PermEntry[] }[] = [];
  let kept = 0;
  for (const [rel, value, permStrings] of state.nodes) {
    const path = `${home}/${rel}`;
    if (rel === '' || rel.startsWith('/') || !isValidNodename(path, false, q.pathMax)) bad(`bad node path ${JSON.stringify(rel)}`);
    if (value.length > XENSTORE_PAYLOAD_MAX || !isLatin1(value)) bad(`${rel}: bad value`);
    if (permStrings.length === 0 || permStrings.length > 64) bad(`${rel}: bad ACL length ${permStrings.length}`);
    const parsed = parsePerms(permStrings);
    if (!parsed) return bad(`${rel}: bad ACL ${JSON.stringify(permStrings)}`);
    const parent = parentOf(path);
    if (!planned.has(parent) && xs.store.get(parent) === undefined) bad(`${rel}: its parent comes neither first nor is it here`);
    if (planned.has(path)) bad(`${rel}: twice`);
    if (xs.store.get(path) !== undefined) {
      kept++;
      continue;
    }
    const ours = (id: number): boolean => id === 0 || id === domid;
    const [owner, ...rest] = parsed.map((e) => ({ perms: e.perms, id: asDomId(moveId(e.id)) }));
    const perms: PermEntry[] = [ours(owner.id) ? owner : { perms: owner.perms, id: asDomId(0) }, ...rest.filter((e) => ours(e.id))];
    planned.add(path);
    creates.push({ path, value, perms });
  }
  const owned = creates.filter((c) => c.perms[0].id === domid).length;
  if (domid !== 0 && xs.store.ownedBy(domid) + owned > q.nodes) bad(`${owned} more nodes would pass domain ${domid}'s node quota ${q.nodes}`);

  // The watches: paths in the old home move to the new one; tokens stay.
  const watches: { node: string; token: string; relativeTo: string | undefined }[] = [];
  for (const [path, token, relative] of state.watches) {
    let node = path;
    if (node === oldHome || node.startsWith(`${oldHome}/`)) node = home + node.slice(oldHome.length);
    if (isSpecial(node)) {
      if (node.length > 2048 || relative) bad(`bad watch ${JSON.stringify(path)}`);
    } else if (!isValidNodename(node, false, xs.b.watchPathLengthChecked ? q.pathMax : 0)) {
      bad(`bad watch path ${JSON.stringify(path)}`);
    }
    if (relative && !node.startsWith(`${home}/`)) bad(`relative watch ${JSON.stringify(path)} outside the home`);
    if (token.includes('\0') || !isLatin1(token) || node.length + token.length + 2 > XENSTORE_PAYLOAD_MAX) bad(`bad watch token for ${JSON.stringify(path)}`);
    if ([...conn.watches, ...watches].some((w) => w.node === node && w.token === token)) continue;
    watches.push({ node, token, relativeTo: relative ? home : undefined });
  }
  if (!conn.privileged && conn.watches.length + watches.length > q.watches) bad(`${watches.length} watches would pass the watch quota ${q.watches}`);

  // The transactions: ids this connection does not use.
  const txIds = new Set<number>();
  for (const id of state.transactions) {
    if (id <= 0 || id > xs.b.txIdLimit || txIds.has(id) || conn.transactions.has(id)) bad(`bad transaction id ${id}`);
    txIds.add(id);
  }
  if (!conn.privileged && conn.transactions.size + txIds.size > q.transactions) bad(`${txIds.size} transactions would pass the transaction quota ${q.transactions}`);

  // Checked: now the tree, the watches and the transactions change.
  for (const c of creates) {
    const parentPath = parentOf(c.path);
    xs.store.create(parentPath, xs.store.get(parentPath)!, basename(c.path), c.value, internPerms(c.perms));
  }
  if (creates.length) xs.resetEntryQuota();
  conn.watches.push(...watches);
  const quota = conn.privileged ? 0 : q.transactionNodes;
  for (const id of txIds) {
    const tx = xs.newTransaction(id, quota);
    tx.carriedOver = true;
    conn.transactions.set(id, tx);
  }
  return { nodes: creates.length, kept, watches: watches.length, transactions: txIds.size };
}
