// Live update as C xenstored 4.17 does it (xenstored_control.c's lu_* and the dump_state_* /
// read_state_* functions): CONTROL `live-update` sub-commands, the wait for open transactions,
// the daemon's whole state written as a state stream (xenstore-state.ts) and a new instance built
// from it. Pure: the daemon (daemon.ts) moves the bytes and swaps the instances.
//
// 4.17 facts kept: -f/-c/-s/-a answer with text ("OK" or a sentence), only bad arguments are
// errors (EINVAL); -b/-d are the stub domain's and EINVAL for a daemon; `-s` is held (never
// answered BUSY: xenstore-control's BUSY retry loop is for older daemons) until no transaction
// is open, or until `-t` seconds, after which it is refused with the list of long-running
// transactions, or, with -F, done anyway (the open transactions are lost); from `-f` on, a
// TRANSACTION_START from a connection with none open is held, and so is everything after it on
// an unprivileged connection (C stalls it); held requests travel in the stream as unprocessed
// input. The OK for `-s` is the last thing in its connection's pending output.
// Where xensim differs: no binary is executed (`-f` takes any path; the new instance is built in
// the same process), and domains known only from ACLs are carried in DOMAIN_DATA records (C 4.17
// forgets them, so their ACL entries turn ignored after the update).
import {
  XENSTORE_PAYLOAD_MAX, XSD_SOCKMSG_SIZE, type XsError, type XsMessage, encodeMessage,
} from '../../../hypervisor/public/io/xs_wire.ts';
import assert from 'node:assert/strict';
import { atoi, asDomId, DOMID_INVALID } from './domain.ts';
import { canonicalize, isValidNodename, join, parentOf } from './path.ts';
import { internPerms, permLetter, type Perms, XsPerm } from './permissions.ts';
import type { Quotas } from './quota.ts';
import type { Xenstored, XenstoredOptions } from './core.ts';
import { type XsNode } from './store.ts';
import {
  XsStateError, type XsStateNodeView, type XsStatePathRef, type XsStatePerm, type XsStateQuota, XsStateReader, type XsStateRecord,
  type XsStateSink, XsStateType, XsStateWriter,
} from './xenstore-state.ts';

/** lu_status: the session from `-f` (the "binary") to the switch or an abort. */
export interface LiveUpdate {
  readonly conn: number;
  readonly filename: string;
  cmdline: string | undefined;
}

/** The held `-s` request and its terms. */
export interface LuStart {
  readonly conn: number;
  readonly req: XsMessage;
  readonly force: boolean;
  /** Seconds (`-t`; 0 if not given, as the daemon defaults). */
  readonly timeout: number;
  readonly startedAt: number;
}

export type LuControlResult = { readonly text: string } | { readonly error: XsError } | { readonly delayed: true };

/** do_control_lu(): `args` are the parameters after `live-update` (at most four). */
export function controlLiveUpdate(xs: Xenstored, conn: number, msg: XsMessage, args: readonly string[]): LuControlResult {
  if (args.length < 1) return { error: 'EINVAL' };
  switch (args[0]) {
    case '-a':
      if (args.length !== 1) return { error: 'EINVAL' };
      if (xs.lu === undefined) return { text: 'No live-update session active.' };
      // Any connection may abort; a held -s learns it at its next check.
      xs.lu = undefined;
      return { text: 'OK' };
    case '-c':
      if (args.length !== 2) return { error: 'EINVAL' };
      if (xs.lu === undefined || xs.lu.conn !== conn) return { text: 'Not in live-update session.' };
      xs.lu.cmdline = args[1];
      return { text: 'OK' };
    case '-s': {
      let force = false;
      let timeout = 0;
      for (let i = 1; i < args.length; i++) {
        if (args[i] === '-F') force = true;
        else if (args[i] === '-t' && i < args.length - 1) timeout = atoi(args[++i]) >>> 0;
        else return { error: 'EINVAL' };
      }
      if (xs.lu === undefined || xs.lu.conn !== conn) return { text: 'Not in live-update session.' };
      xs.luStart = { conn, req: msg, force, timeout, startedAt: xs.clock() };
      return { delayed: true };
    }
    case '-f':
      // lu_arch() of the daemon build: exactly `-f <file>`.
      if (args.length !== 2) return { error: 'EINVAL' };
      if (xs.lu !== undefined) return { text: 'live-update session already active.' };
      xs.lu = { conn, filename: args[1], cmdline: undefined };
      return { text: 'OK' };
    default:
      return { error: 'EINVAL' };
  }
}

/** What the held `-s` comes to now (do_lu_start()). */
export type LuStep =
  | { readonly kind: 'none' }
  /** Transactions are open and the timeout has not passed: look again later (C: each second). */
  | { readonly kind: 'wait' }
  /** The update is off; the -s gets this answer (and the session is gone). */
  | { readonly kind: 'reply'; readonly conn: number; readonly msg: XsMessage }
  /** Dump the state now. */
  | { readonly kind: 'go'; readonly start: LuStart; readonly lu: LiveUpdate };

export function luStep(xs: Xenstored): LuStep {
  const st = xs.luStart;
  if (st === undefined) return { kind: 'none' };
  if (xs.lu === undefined) {
    xs.luStart = undefined;
    return luReply(st, 'Cancellation was requested');
  }
  const now = xs.clock();
  if (!luAllowed(xs, st, now)) {
    if (now < st.startedAt + st.timeout) return { kind: 'wait' };
    if (!st.force) {
      xs.luStart = undefined;
      xs.lu = undefined;
      return luReply(st, luRejectReason(xs, st, now));
    }
  }
  return { kind: 'go', start: st, lu: xs.lu };
}

/** The answer to a held `-s` (send_reply with the saved request's header). */
export function luReply(st: LuStart, text: string): { kind: 'reply'; conn: number; msg: XsMessage } {
  return { kind: 'reply', conn: st.conn, msg: { type: st.req.type, req_id: st.req.req_id, tx_id: st.req.tx_id, payload: Buffer.from(`${text}\0`, 'latin1') } };
}

/** lu_check_lu_allowed(): no transaction open, or forced and every open one older than the timeout. */
function luAllowed(xs: Xenstored, st: LuStart, now: number): boolean {
  let total = 0;
  let long = 0;
  for (const c of xs.connections.values()) {
    if (c.transactions.size === 0) continue;
    total++;
    if (now - c.txStartedAt >= st.timeout) long++;
  }
  return total === 0 || (st.force && long === total);
}

/** lu_reject_reason(): C names the connection by its domain id ("Domain 0" for every socket). */
function luRejectReason(xs: Xenstored, st: LuStart, now: number): string {
  let ret: string | undefined;
  for (const c of xs.connections.values()) {
    if (c.transactions.size !== 0 && now - c.txStartedAt >= st.timeout) {
      ret = `${ret ?? 'Domains with long running transactions:'}\nDomain ${c.domid}: ${now - c.txStartedAt} s`;
    }
  }
  return ret ?? 'Overlapping transactions';
}

// ------------------------------------------------------------------ dump (dump_state_*)

/** What the transports hold for a connection: bytes read but not handled, bytes not yet sent. */
export interface ConnectionBytes {
  input(conn: number): Uint8Array;
  /** Whole messages, the first `respLen` bytes being the rest of one sent in part. */
  output(conn: number): { data: Uint8Array; respLen: number };
}

export interface DumpOptions {
  /** Stream version (C 4.17: 1). */
  readonly version?: number;
  /** GLOBAL_DATA's descriptors (-1: none, as xensim keeps its socket and event channels in-process). */
  readonly socketFd?: number;
  readonly evtchnFd?: number;
  /** The live update's own `-s`: its OK goes at the end of that connection's output. */
  readonly start?: LuStart;
  /**
   * A TRANSACTION_DATA record per open transaction (a restart's state; C 4.17's live update
   * writes none). Its reads and writes are not written (no pending NODE_DATA): restored, it
   * cannot commit.
   */
  readonly transactions?: boolean;
  /** false: no NODE_DATA records for the tree (special nodes still): the seed's replication sends the tree apart. */
  readonly nodes?: boolean;
}

/** GLOBAL_QUOTA_DATA names (the record's names, as GET/SET_QUOTA know them) and xensim's fields. */
const QUOTA_RECORD_NAMES: readonly (readonly [string, keyof Quotas])[] = [
  ['nodes', 'nodes'],
  ['watches', 'watches'],
  ['outstanding', 'outstanding'],
  ['memory', 'memory'],
  ['soft-memory', 'memorySoft'],
  ['transactions', 'transactions'],
  ['transaction-nodes', 'transactionNodes'],
  ['node-permissions', 'permissions'],
  ['path-max', 'pathMax'],
  ['node-size', 'nodeSize'],
];

const NO_BYTES = new Uint8Array(0);

function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 0) return NO_BYTES;
  if (parts.length === 1) return parts[0];
  return Buffer.concat(parts);
}

/** The stream's form of an ACL; one list per (interned) ACL, so the writer encodes each once. */
const statePermsOf = new WeakMap<Perms, readonly XsStatePerm[]>();
export function statePerms(perms: Perms): readonly XsStatePerm[] {
  let sp = statePermsOf.get(perms);
  if (sp === undefined) {
    sp = Object.freeze(perms.map((p) => Object.freeze({
      access: permLetter(p.perms) as XsStatePerm['access'],
      ignore: (p.perms & XsPerm.XS_PERM_IGNORE) !== 0,
      domid: p.id,
    })));
    statePermsOf.set(perms, sp);
  }
  return sp;
}

/** Our ACL for a stream's list (lists of one stream are shared, so each is converted once). */
const permsOfState = new WeakMap<readonly XsStatePerm[], Perms>();
function fromStatePerms(perms: readonly XsStatePerm[]): Perms {
  let p = permsOfState.get(perms);
  if (p === undefined) {
    const bits = { n: XsPerm.XS_PERM_NONE, r: XsPerm.XS_PERM_READ, w: XsPerm.XS_PERM_WRITE, b: XsPerm.XS_PERM_READ | XsPerm.XS_PERM_WRITE };
    p = internPerms(perms.map((e) => ({ perms: bits[e.access] | (e.ignore ? XsPerm.XS_PERM_IGNORE : 0), id: asDomId(e.domid) })));
    permsOfState.set(perms, p);
  }
  return p;
}

/**
 * Writes a daemon's whole state, in C's order (GLOBAL_QUOTA and DOMAIN as later C writes
 * them): global data, per connection its record and its watches, the special nodes, every node
 * from / in pre-order, the domains.
 */
export function writeState(w: XsStateSink, xs: Xenstored, io: ConnectionBytes, opts: DumpOptions = {}): void {
  w.record({ type: XsStateType.GLOBAL, socketFd: opts.socketFd ?? -1, evtchnFd: opts.evtchnFd ?? -1 });
  w.record({
    type: XsStateType.GLB_QUOTA, global: [],
    domain: QUOTA_RECORD_NAMES.map(([name, k]) => ({ name, value: xs.quotas[k] })),
  });
  for (const c of xs.connections.values()) {
    const held = xs.delayed.get(c.id) ?? [];
    const input = concat([...held.map(encodeMessage), io.input(c.id)]);
    const pending = io.output(c.id);
    const out = [pending.data];
    if (opts.start?.conn === c.id) {
      // lu_write_response(): the -s request's header, length 3, "OK\0".
      out.push(encodeMessage({ type: opts.start.req.type, req_id: opts.start.req.req_id, tx_id: opts.start.req.tx_id, payload: Buffer.from('OK\0', 'latin1') }));
    }
    const d = c.kind === 'domain' ? xs.domains.get(c.domid) : undefined;
    w.record({
      type: XsStateType.CONN, connId: c.id,
      spec: c.kind === 'domain'
        ? { kind: 'ring', domid: c.domid, tdomid: c.target ?? DOMID_INVALID, evtchn: d?.port ?? 0 }
        // xensim's transports know their sockets by connection number: it stands for the descriptor.
        : { kind: 'socket', fd: c.id },
      inData: input, outRespLen: pending.respLen, outData: concat(out.filter((b) => b.length !== 0)),
    });
    for (const wt of c.watches) {
      // get_watch_path(): a relative watch is given back relative.
      let path = wt.node;
      if (wt.relativeTo !== undefined) {
        path = path.slice(wt.relativeTo.length);
        if (path.startsWith('/')) path = path.slice(1);
      }
      w.record({ type: XsStateType.WATCH, connId: c.id, path, token: wt.token });
    }
    if (opts.transactions) for (const id of c.transactions.keys()) w.record({ type: XsStateType.TA, connId: c.id, txId: id });
  }
  // dump_state_special_nodes(): the ACLs of @releaseDomain and @introduceDomain.
  for (const name of ['@releaseDomain', '@introduceDomain']) {
    const perms = xs.special.get(name);
    if (perms !== undefined) w.node(name, '', statePerms(perms));
  }
  if (opts.nodes !== false) writeNodes(w, xs);
  for (const d of xs.domains.values()) w.record({ type: XsStateType.DOMAIN, domid: d.domid, features: 0, quotas: [] });
}

/**
 * dump_state_nodes(): pre-order from /, each ACL as read_node() leaves it (stale entries
 * flagged). Each path is its parent's plus a name (nodeUnder), so none is built here; a stack
 * of directories, each with its names and nodes: nothing allocated per node.
 */
function writeNodes(w: XsStateSink, xs: Xenstored): void {
  const settle = xs.b.staleAclByGeneration;
  let lastPerms: Perms | undefined;
  let lastState: readonly XsStatePerm[] = [];
  const acl = (n: XsNode): readonly XsStatePerm[] => {
    const p = settle ? xs.settlePerms(n.perms, n.gen) : n.perms;
    if (p !== lastPerms) {
      lastPerms = p;
      lastState = statePerms(p);
    }
    return lastState;
  };
  const root = xs.store.root;
  const rootRef = w.node('/', root.value, acl(root));
  const dirs: { ref: XsStatePathRef; names: string[]; nodes: XsNode[]; next: number }[] = [];
  if (root.children !== null) dirs.push({ ref: rootRef, names: [...root.children.keys()], nodes: [...root.children.values()], next: 0 });
  while (dirs.length !== 0) {
    const d = dirs[dirs.length - 1];
    if (d.next === d.nodes.length) {
      dirs.pop();
      continue;
    }
    const i = d.next++;
    const n = d.nodes[i];
    if (d.names[i].includes('\0')) {
      // A root child whose '@' name holds a '/' (profile ocaml; kept with NUL, core.ts name()):
      // recorded under the name as written, which no '/' path can be. It has no children.
      w.node(d.names[i].replaceAll('\0', '/'), n.value, acl(n));
      continue;
    }
    const ref = w.nodeUnder(d.ref, d.names[i], n.value, acl(n));
    if (n.children !== null && n.children.size !== 0) dirs.push({ ref, names: [...n.children.keys()], nodes: [...n.children.values()], next: 0 });
  }
}

/** The records of a daemon's whole state (writeState's, as objects: for inspection). */
export function stateRecords(xs: Xenstored, io: ConnectionBytes, opts: DumpOptions = {}): XsStateRecord[] {
  const records: XsStateRecord[] = [];
  const paths: string[] = [];
  const node = (path: string, value: string, perms: readonly XsStatePerm[], connId = 0, txId = 0, access = 0): XsStatePathRef => {
    records.push({ type: XsStateType.NODE, connId, txId, access, perms, path, value });
    return paths.push(path) - 1;
  };
  writeState({
    record: (r) => void records.push(r),
    node,
    nodeUnder: (parent, name, value, perms) => node(join(paths[parent], name), value, perms),
  }, xs, io, opts);
  return records;
}

/** lu_dump_state(): the stream a new instance reads. */
export function dumpState(xs: Xenstored, io: ConnectionBytes, opts: DumpOptions = {}): Uint8Array {
  // About 56 bytes per node record (header, one ACL entry, a path and a short value).
  const w = new XsStateWriter(opts.version ?? 1, false, 4096 + 64 * xs.store.size);
  writeState(w, xs, io, opts);
  return w.finish();
}

// ------------------------------------------------------------------ read (read_state_*)

/** What the transports get back per connection. */
export interface RestoredConnection {
  /** A message read in part (C's conn->in): the transport's decoder continues it. */
  readonly partialInput: Uint8Array;
  /** Bytes to send before anything new; the first `respLen` finish a partly sent reply. */
  readonly output: Uint8Array;
  readonly respLen: number;
}

export interface RestoredState {
  readonly xs: Xenstored;
  readonly connections: Map<number, RestoredConnection>;
  readonly socketFd: number | undefined;
  readonly evtchnFd: number | undefined;
}

/** Splits in-data: whole requests (held, handled first) and a trailing partial one. */
function splitInput(data: Uint8Array, what: string): { whole: XsMessage[]; partial: Uint8Array } {
  const b = Buffer.from(data.buffer, data.byteOffset, data.length);
  const whole: XsMessage[] = [];
  let off = 0;
  while (b.length - off >= XSD_SOCKMSG_SIZE) {
    const len = b.readUInt32LE(off + 12);
    if (len > XENSTORE_PAYLOAD_MAX) throw new XsStateError(`${what}: unprocessed input announces a ${len}-byte payload`);
    if (b.length - off - XSD_SOCKMSG_SIZE < len) break;
    const start = off + XSD_SOCKMSG_SIZE;
    whole.push({ type: b.readUInt32LE(off), req_id: b.readUInt32LE(off + 4), tx_id: b.readUInt32LE(off + 8), payload: Buffer.from(b.subarray(start, start + len)) });
    off = start + len;
  }
  return { whole, partial: new Uint8Array(b.subarray(off)) };
}

/**
 * lu_read_state(): a new daemon instance from a stream. Nodes get new generation counts, one
 * each in stream order (`++generation`, as C's read_state_node): the stream has none; every
 * domain it knows counts as older than every node, and ACL entries that were no longer honoured
 * arrive flagged ignored. Throws XsStateError for a stream that cannot be restored.
 */
export function readState(bytes: Uint8Array, opts: XenstoredOptions, read: { readonly transactions?: boolean } = {}): RestoredState {
  const reader = new XsStateReader(bytes);
  const xs = newInstance(opts);
  const connections = new Map<number, RestoredConnection>();
  const carried: { conn: number; txId: number }[] = [];
  let socketFd: number | undefined;
  let evtchnFd: number | undefined;
  // Restored nodes keep the ACLs the stream gives; the stale-entry rule applies from now on.
  const adjust = xs.store.adjustPerms;
  xs.store.adjustPerms = undefined;
  try {
    let i = 0;
    const tree = new TreeRestorer(xs);
    reader.read({
      nodeAt: (n) => {
        i++;
        tree.node(n);
      },
      record: (r) => {
        i++;
        if ('unknown' in r) return;
        const what = `record ${i}`;
        switch (r.type) {
          case XsStateType.GLOBAL:
            socketFd = r.socketFd;
            evtchnFd = r.evtchnFd;
            break;
          case XsStateType.GLB_QUOTA:
            applyQuotas(xs, [...r.domain, ...r.global]);
            break;
          case XsStateType.CONN: {
            if (xs.connections.has(r.connId)) throw new XsStateError(`${what}: connection ${r.connId} given twice`);
            if (r.spec.kind === 'ring') {
              const d = xs.domains.get(r.spec.domid);
              // Dom0's own kernel reaches xenstored in dom0 in-process, never over a ring; a
              // xenstore domain's daemon serves dom0 over its ring.
              if (r.spec.domid === 0 && !opts.dom0Ring) throw new XsStateError(`${what}: a ring connection for domain 0`);
              if (d?.conn !== undefined && xs.connections.has(d.conn)) throw new XsStateError(`${what}: a second ring connection for domain ${r.spec.domid}`);
              const target = r.spec.tdomid === DOMID_INVALID ? undefined : r.spec.tdomid;
              xs.restoreConnection(r.connId, { kind: 'ring', domid: r.spec.domid, port: r.spec.evtchn, target });
            } else {
              xs.restoreConnection(r.connId, { kind: 'socket' });
            }
            const { whole, partial } = splitInput(r.inData, what);
            if (whole.length !== 0) xs.delayed.set(r.connId, whole);
            connections.set(r.connId, { partialInput: partial, output: r.outData, respLen: r.outRespLen });
            break;
          }
          case XsStateType.WATCH:
          case XsStateType.WATCH_EXT: {
            const c = xs.connections.get(r.connId);
            if (c === undefined) throw new XsStateError(`${what}: watch for unknown connection ${r.connId}`);
            if (r.type === XsStateType.WATCH_EXT && r.depth !== 0xffff) throw new XsStateError(`${what}: watch depth ${r.depth}: this daemon (4.17) has no watch depth`);
            // check_watch_path(): a path not starting with / or @ is relative to the connection's home.
            const relative = !r.path.startsWith('/') && !r.path.startsWith('@');
            c.watches.push({ node: canonicalize(c.home, r.path), token: r.token, relativeTo: relative ? c.home : undefined });
            break;
          }
          case XsStateType.TA: {
            // C 4.17 ignores transaction records (and never writes them). A restart keeps the
            // transaction's id, not its accesses: its commit fails with EAGAIN, as a conflict's
            // would, and its user starts it over.
            if (!read.transactions) break;
            const c = xs.connections.get(r.connId);
            if (c === undefined) throw new XsStateError(`${what}: transaction for unknown connection ${r.connId}`);
            if (r.txId === 0 || carried.some((t) => t.conn === c.id && t.txId === r.txId)) throw new XsStateError(`${what}: bad transaction id ${r.txId}`);
            // Made once the tree is read: a transaction starts from the tree as it is (the
            // records of the nodes follow those of the connections).
            carried.push({ conn: c.id, txId: r.txId });
            break;
          }
          case XsStateType.NODE:
            throw new Error('NODE_DATA goes to nodeAt()');
          case XsStateType.DOMAIN:
            if (!xs.domains.has(r.domid)) {
              xs.domains.set(r.domid, { domid: asDomId(r.domid), generation: 0, introduced: false, conn: undefined, mfn: 0, port: 0, shutdownReported: false });
            }
            break;
        }
      },
    });
    tree.done();
  } finally {
    xs.store.adjustPerms = adjust;
  }
  for (const { conn, txId } of carried) {
    const c = xs.connections.get(conn)!;
    const quota = c.privileged ? 0 : xs.quotas.transactionNodes;
    const tx = xs.newTransaction(txId, quota);
    tx.carriedOver = true;
    c.transactions.set(txId, tx);
    c.nextTxId = Math.max(c.nextTxId, txId + 1);
  }
  // Quotas given on the new instance's command line win over the recorded ones (4.17 takes
  // its quotas from the command line alone; later C restores the record's).
  if (opts.quotas) Object.assign(xs.quotas, opts.quotas);
  return { xs, connections, socketFd, evtchnFd };
}

/**
 * A stream read by a daemon started on its own (`xensim xenstored --restore`): the tree,
 * quotas, domains and their connections; socket connections (and their watches) belonged to
 * clients of the process that wrote it and are gone, as is every connection's unsent traffic.
 */
export function restoreOffline(bytes: Uint8Array, opts: XenstoredOptions): Xenstored {
  const { xs } = readState(bytes, opts);
  for (const c of [...xs.connections.values()]) {
    if (c.kind === 'socket') xs.disconnect(c.id);
  }
  xs.delayed.clear();
  return xs;
}

/** The Xenstored class, bound by core.ts (lu.ts and core.ts import each other). */
let XenstoredClass: (new (opts: XenstoredOptions) => Xenstored) | undefined;
export function registerXenstored(c: new (opts: XenstoredOptions) => Xenstored): void {
  XenstoredClass = c;
}

function newInstance(opts: XenstoredOptions): Xenstored {
  if (XenstoredClass === undefined) throw new Error('lu.ts: core.ts not loaded');
  return new XenstoredClass({ ...opts, restoring: true });
}

function applyQuotas(xs: Xenstored, quotas: readonly XsStateQuota[]): void {
  for (const q of quotas) {
    const name = q.name === 'permissions' ? 'node-permissions' : q.name;
    const field = QUOTA_RECORD_NAMES.find(([n]) => n === name)?.[1];
    // Names this daemon does not know have no effect (the design says so).
    if (field !== undefined) xs.quotas[field] = q.value;
  }
}

/** [A-Za-z0-9-_@]: the bytes a node name may have (path.ts's node-name characters but '/'). */
const NAME_BYTE = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  NAME_BYTE[c] = Number((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f || c === 0x40);
}

/**
 * The stream's strings. Short ones are made in JS (a native decode per string costs several
 * times that), longer ones decoded. Names repeat all over a tree (state, backend, device ids),
 * and so do short values: each gets one string, not one per node, from a direct-mapped table (a
 * miss costs one decode, as without it).
 */
class StreamStrings {
  private readonly slots: string[] = new Array<string>(4096).fill('');

  constructor(private readonly b: Buffer) {}

  /** `len` bytes at `at`, shared with earlier equal ones when `len` <= `shareUpTo`. */
  get(at: number, len: number, shareUpTo: number): string {
    if (len === 0) return '';
    const b = this.b;
    if (len > shareUpTo) return latin1(b, at, len);
    let h = len;
    for (let i = 0; i < len; i++) h = Math.imul(h ^ b[at + i], 0x01000193);
    const slot = (h ^ (h >>> 12)) & 4095;
    const s = this.slots[slot];
    if (s.length === len) {
      let i = 0;
      while (i < len && s.charCodeAt(i) === b[at + i]) i++;
      if (i === len) return s;
    }
    return (this.slots[slot] = latin1(b, at, len));
  }
}

const chr = String.fromCharCode;

/**
 * `n` bytes at `a` as a string: up to 12 made at once from their codes (no native call, no
 * intermediate string), longer ones decoded.
 */
function latin1(b: Buffer, a: number, n: number): string {
  switch (n) {
    case 1: return chr(b[a]);
    case 2: return chr(b[a], b[a + 1]);
    case 3: return chr(b[a], b[a + 1], b[a + 2]);
    case 4: return chr(b[a], b[a + 1], b[a + 2], b[a + 3]);
    case 5: return chr(b[a], b[a + 1], b[a + 2], b[a + 3], b[a + 4]);
    case 6: return chr(b[a], b[a + 1], b[a + 2], b[a + 3], b[a + 4], b[a + 5]);
    case 7: return chr(b[a], b[a + 1], b[a + 2], b[a + 3], b[a + 4], b[a + 5], b[a + 6]);
    case 8: return chr(b[a], b[a + 1], b[a + 2], b[a + 3], b[a + 4], b[a + 5], b[a + 6], b[a + 7]);
    case 9: return chr(b[a], b[a + 1], b[a + 2], b[a + 3], b[a + 4], b[a + 5], b[a + 6], b[a + 7], b[a + 8]);
    case 10: return chr(b[a], b[a + 1], b[a + 2], b[a + 3], b[a + 4], b[a + 5], b[a + 6], b[a + 7], b[a + 8], b[a + 9]);
    case 11: return chr(b[a], b[a + 1], b[a + 2], b[a + 3], b[a + 4], b[a + 5], b[a + 6], b[a + 7], b[a + 8], b[a + 9], b[a + 10]);
    case 12: return chr(b[a], b[a + 1], b[a + 2], b[a + 3], b[a + 4], b[a + 5], b[a + 6], b[a + 7], b[a + 8], b[a + 9], b[a + 10], b[a + 11]);
    default: return (b as Latin1Buffer).latin1Slice(a, a + n);
  }
}

/** Names are shared up to this length, values (mostly unique) only when shorter. */
const SHARED_NAME = 24;
const SHARED_VALUE = 8;

interface Latin1Buffer extends Buffer {
  latin1Slice(start: number, end: number): string;
}

/**
 * read_state_node() for a whole stream: builds the tree from NODE_DATA records as bytes. A
 * pre-order stream (any xenstored's) finds each parent on a stack of the nodes restored last,
 * compared by their path bytes in the stream; another order looks the parent up. Every name is
 * checked (the parent's path was, or is a node's); no path string is made.
 */
class TreeRestorer {
  /** The stack: each node's path in the stream (offset, length) and the node, root first. */
  private readonly at: number[] = [];
  private readonly len: number[] = [];
  private readonly nodes: XsNode[] = [];
  private depth = 0;
  private strings: StreamStrings | undefined;
  private lastPerms: readonly XsStatePerm[] | undefined;
  private lastAcl: Perms = [];

  constructor(private readonly xs: Xenstored) {
    assert(xs.store.snapshots.size === 0 && xs.store.adjustPerms === undefined, 'a restore fills a new store');
  }

  node(v: XsStateNodeView): void {
    const b = v.bytes;
    const strings = this.strings ??= new StreamStrings(b);
    const p = v.pathAt;
    const len = v.pathLen;
    if (v.connId !== 0) throw new XsStateError(`record ${v.index}: node ${this.path(v)} belongs to a transaction (conn-id ${v.connId}); this daemon restores committed nodes only`);
    if (v.perms.length === 0) throw new XsStateError(`record ${v.index}: node ${this.path(v)} has no owner (perm-count 0)`);
    if (v.perms !== this.lastPerms) {
      this.lastPerms = v.perms;
      this.lastAcl = fromStatePerms(v.perms);
    }
    const acl = this.lastAcl;
    const store = this.xs.store;
    if (len === 0 || b[p] !== 0x2f) return this.other(v, acl);
    if (len === 1) {
      const root = store.root;
      if (root.children !== null) throw new XsStateError(`record ${v.index}: / comes after nodes below it`);
      // One generation, as for every node.
      store.setPerms('/', root, acl);
      root.value = strings.get(v.valueAt, v.valueLen, SHARED_VALUE);
      this.depth = 0;
      this.push(p, 1, root);
      return;
    }
    // The name: after the last slash, non-empty, of node-name characters only.
    let i = p + len - 1;
    while (b[i] !== 0x2f) {
      if (NAME_BYTE[b[i]] === 0) throw new XsStateError(`record ${v.index}: ${JSON.stringify(this.path(v))} is not a node path`);
      i--;
    }
    const nameAt = i + 1;
    if (nameAt === p + len) throw new XsStateError(`record ${v.index}: ${JSON.stringify(this.path(v))} is not a node path`);
    // The parent's path: up to that slash, or "/" (the first byte) for a child of the root.
    const parentLen = i === p ? 1 : i - p;
    let d = this.depth;
    while (d !== 0 && !(this.len[d - 1] === parentLen && same(b, this.at[d - 1], p, parentLen))) d--;
    this.depth = d;
    let parent: XsNode;
    if (d !== 0) {
      parent = this.nodes[d - 1];
    } else {
      // Not a pre-order stream: the parent must be in the tree already.
      const path = this.path(v);
      if (!isValidNodename(path, false, 0)) throw new XsStateError(`record ${v.index}: ${JSON.stringify(path)} is not a node path`);
      const found = store.get(parentOf(path));
      if (found === undefined) throw new XsStateError(`record ${v.index}: node ${path} comes before its parent`);
      parent = found;
      this.push(p, parentLen, parent);
    }
    const name = strings.get(nameAt, p + len - nameAt, SHARED_NAME);
    const value = strings.get(v.valueAt, v.valueLen, SHARED_VALUE);
    // add_child() + write_node_raw(parent): the parent keeps its generation.
    const node = store.restoreChild(parent, name, value, acl, len);
    if (node === undefined) throw new XsStateError(`record ${v.index}: node ${this.path(v)} given twice`);
    this.push(p, len, node);
  }

  /** After the last record. */
  done(): void {
    this.xs.store.restored();
  }

  private push(at: number, len: number, node: XsNode): void {
    const d = this.depth++;
    this.at[d] = at;
    this.len[d] = len;
    this.nodes[d] = node;
  }

  private path(v: XsStateNodeView): string {
    return (v.bytes as Latin1Buffer).latin1Slice(v.pathAt, v.pathAt + v.pathLen);
  }

  /** A path not starting with '/': @releaseDomain and @introduceDomain carry their ACLs. */
  private other(v: XsStateNodeView, acl: Perms): void {
    const path = this.path(v);
    if (path.startsWith('@') && path !== '@releaseDomain' && path !== '@introduceDomain' && this.xs.b.specialPathsAreNodes) {
      // oxenstored: an '@' path is one root child name, whatever it holds (writeNodes() records
      // the ones holding a '/' so).
      const store = this.xs.store;
      const value = this.strings!.get(v.valueAt, v.valueLen, SHARED_VALUE);
      if (store.restoreChild(store.root, path.replaceAll('/', '\0'), value, acl, path.length + 1) === undefined) {
        throw new XsStateError(`record ${v.index}: node ${path} given twice`);
      }
      return;
    }
    if (path.startsWith('@')) {
      if (path !== '@releaseDomain' && path !== '@introduceDomain') throw new XsStateError(`record ${v.index}: unknown special node ${path}`);
      this.xs.special.set(path, acl);
      return;
    }
    throw new XsStateError(`record ${v.index}: ${JSON.stringify(path)} is not a node path`);
  }
}

/** Whether the `n` bytes at `a` and at `b` are the same. */
function same(buf: Buffer, a: number, b: number, n: number): boolean {
  // From the end: paths of one stream share their beginnings.
  for (let i = n - 1; i >= 0; i--) if (buf[a + i] !== buf[b + i]) return false;
  return true;
}

/** Decodes pending output into the messages it holds (after `respLen` raw bytes). */
export function outputMessages(out: Uint8Array, respLen: number): { raw: Uint8Array; messages: XsMessage[] } {
  const { whole, partial } = splitInput(out.subarray(respLen), 'pending output');
  if (partial.length !== 0) throw new XsStateError('pending output ends inside a message');
  return { raw: out.subarray(0, respLen), messages: whole };
}
