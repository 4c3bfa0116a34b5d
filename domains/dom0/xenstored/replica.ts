// The seed's xenstored replication (not in Xen, whose xenstored has no standbys; off unless
// `--seed-replicas N`): the primary streams every committed change over a replication log
// (replication-log.ts) to N standbys, each of which keeps the tree, the domains and every
// connection with its watches and open transaction ids. When the primary dies a standby writes
// what it holds as a state stream (xenstore-migration.md, as a live update or a restart would)
// and the new daemon is read from it (daemon.ts: failover()).
//
// What the log carries, per batch of the daemon:
// - PUT / DEL: a node as it now is (value, ACL, generation) or gone; a parent's change (its child
//   list, its generation) is a PUT of the parent. Told by the Store (StoreObserver) as it happens.
// - META: the rest of the state - quotas, connections, watches, transaction ids, the special
//   nodes' ACLs, domains - as migration records (the nodes left out) plus each domain's
//   generation, which the stale-ACL rule compares node generations with. Sent only when it may
//   have changed (a request other than a plain node operation, or its fingerprint moved).
// - ORDER: a node's children in a new order (a committed C transaction leaves them as it saw them).
// - RESET: what follows is the whole state again (first sync, after a live update or failover).
// - BATCH n: the batch is complete; a standby applies a batch whole or not at all.
//
// Acknowledged means: the reply left the daemon (a sink's flush). The daemon publishes a batch
// before it flushes that batch's replies, so every acknowledged write is in the log. What the
// primary did after its last publish was never acknowledged; its standbys never see it.
import { XsdSockmsgType as T } from '../../../hypervisor/public/io/xs_wire.ts';
import { Xenstored, type XenstoredOptions } from './core.ts';
import { asDomId } from './domain.ts';
import { statePerms, writeState } from './lu.ts';
import { internPerms, type PermEntry, type Perms } from './permissions.ts';
import type { ReplicationLogReader, ReplicationLogWriter } from './replication-log.ts';
import type { StoreObserver, XsNode } from './store.ts';
import { XsStateReader, type XsStateRecord, XsStateType, XsStateWriter } from './xenstore-state.ts';

const enum Rec {
  PUT = 1,
  DEL = 2,
  RESET = 3,
  META = 4,
  BATCH = 5,
  ORDER = 6,
}

/** Requests that change nothing but nodes: a batch of only these cannot change the META part. */
const PLAIN = new Uint8Array(64);
for (const t of [
  T.XS_READ, T.XS_WRITE, T.XS_MKDIR, T.XS_RM, T.XS_DIRECTORY, T.XS_DIRECTORY_PART, T.XS_GET_PERMS,
  T.XS_GET_DOMAIN_PATH, T.XS_IS_DOMAIN_INTRODUCED,
]) PLAIN[t] = 1;

/** Buffer's own latin1 writer: Buffer.write() checks its arguments on every call, which shows in the primary's cost. */
type Latin1Buffer = Buffer & { latin1Write(s: string, offset: number): number };
/** And its reader, for the standbys' (toString() normalises its arguments on every call). */
type Latin1Reader = Buffer & { latin1Slice(start: number, end: number): string };

/**
 * Strings this long or longer go through Buffer's latin1 writer (one call into C++); shorter ones
 * (most paths and values) are cheaper copied a character at a time.
 */
const LONG = 64;

/** Commits between two checks of the META part's fingerprint (it walks every connection and domain). */
const CHECK_EVERY = 64;

/**
 * Little-endian stores by hand (Buffer's writeUInt*LE check their arguments on every call), at
 * positions modulo m + 1 (the ring's mask; -1 where nothing wraps).
 */
function u16(b: Uint8Array, m: number, at: number, v: number): void {
  b[at & m] = v;
  b[(at + 1) & m] = v >>> 8;
}

function r16(b: Uint8Array, at: number): number {
  return b[at] | (b[at + 1] << 8);
}

function r32(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}

function u32(b: Uint8Array, m: number, at: number, v: number): void {
  b[at & m] = v;
  b[(at + 1) & m] = v >>> 8;
  b[(at + 2) & m] = v >>> 16;
  b[(at + 3) & m] = v >>> 24;
}

/** A broken invariant (messages built only then: checks sit on hot paths). */
function fail(what: string): never {
  throw new Error(`xenstored replication: ${what}`);
}

function check(ok: boolean, what: string): asserts ok {
  if (!ok) fail(what);
}

const NO_IO = {
  input: (): Uint8Array => new Uint8Array(0),
  output: (): { data: Uint8Array; respLen: number } => ({ data: new Uint8Array(0), respLen: 0 }),
};

/**
 * The primary's side: encodes each batch's records straight into the log's ring, past its tail
 * where no standby reads (ReplicationLogWriter.place()), and publishes them before the batch is
 * acknowledged. A batch the ring has no room for (a new primary's whole state, standbys behind)
 * goes on in a buffer of its own and out through publish(), which waits for room.
 */
export class ReplicationRecorder implements StoreObserver {
  /** Where the current record's bytes go: the ring, or `spill` (positions taken modulo m + 1). */
  private t: Uint8Array;
  private m: number;
  /** `t` as a Buffer, for long strings. */
  private big: Latin1Buffer;
  private readonly ring: Uint8Array;
  private readonly ringBuf: Latin1Buffer;
  /** The rest of a batch the ring had no room for; its first `len` bytes are staged. */
  private spill = Buffer.allocUnsafe(1 << 16) as Latin1Buffer;
  private spillView = new Uint8Array(this.spill.buffer, this.spill.byteOffset, this.spill.length);
  private len = 0;
  private spilling = false;
  /** Records staged since the last publish. */
  private records = 0;
  /** Batches published. */
  seq = 0;
  private metaDirty = true;
  /** Xenstored's metaChanges and domainEpoch as last seen. */
  private seenChanges = -1;
  private seenEpoch = -1;
  /** Commits until the fingerprint is checked next. */
  private untilCheck = CHECK_EVERY;
  private readonly sig: number[] = [0, 0, 0, 0, 0, 0, 0, 0];
  private readonly now: number[] = [0, 0, 0, 0, 0, 0, 0, 0];
  private xs: Xenstored | undefined;
  /** Each ACL as the log carries it: u16 count, then u8 perms and u32 domid per entry. */
  private readonly permBytes = new WeakMap<Perms, Uint8Array>();
  private readonly f64 = new DataView(new ArrayBuffer(8));

  constructor(readonly log: ReplicationLogWriter) {
    this.ring = log.data;
    this.ringBuf = Buffer.from(log.data.buffer, log.data.byteOffset, log.data.length) as Latin1Buffer;
    this.t = this.ring;
    this.m = log.mask;
    this.big = this.ringBuf;
  }

  /** Follows `xs` from now on; its whole state goes first (a new instance has new generations). */
  follow(xs: Xenstored): void {
    if (this.xs !== undefined) this.xs.store.observer = undefined;
    this.xs = xs;
    this.drop();
    this.open(Rec.RESET, 0);
    for (const [path, node] of xs.store.walk()) this.put(path, node);
    this.metaDirty = true;
    xs.store.observer = this;
  }

  /** A request is about to be handled. */
  request(type: number): void {
    if (!(type < PLAIN.length && PLAIN[type] === 1)) this.metaDirty = true;
  }

  /** Something outside a request changed the daemon (a domain died, a connection came or went). */
  touched(): void {
    this.metaDirty = true;
  }

  put(path: string, node: XsNode): void {
    let perms = this.permBytes.get(node.perms);
    if (perms === undefined) {
      perms = new Uint8Array(2 + 5 * node.perms.length);
      u16(perms, -1, 0, node.perms.length);
      node.perms.forEach((e, i) => {
        perms![2 + 5 * i] = e.perms;
        u32(perms!, -1, 3 + 5 * i, e.id);
      });
      this.permBytes.set(node.perms, perms);
    }
    const plen = path.length;
    const vlen = node.value.length;
    const at = this.open(Rec.PUT, 8 + 2 + 4 + perms.length + plen + vlen);
    const t = this.t;
    const m = this.m;
    // The generation as two 32-bit halves (it stays below 2^53).
    u32(t, m, at, node.gen >>> 0);
    u32(t, m, at + 4, Math.floor(node.gen / 2 ** 32));
    u16(t, m, at + 8, plen);
    u32(t, m, at + 10, vlen);
    const o = at + 14;
    for (let i = 0; i < perms.length; i++) t[(o + i) & m] = perms[i];
    this.latin1(path, o + perms.length);
    this.latin1(node.value, o + perms.length + plen);
  }

  removed(path: string): void {
    const at = this.open(Rec.DEL, 2 + path.length);
    u16(this.t, this.m, at, path.length);
    this.latin1(path, at + 2);
  }

  reordered(path: string, node: XsNode): void {
    const names = node.children === null ? [] : [...node.children.keys()];
    let bytes = 2 + path.length + 4;
    for (const k of names) bytes += 2 + k.length;
    let o = this.open(Rec.ORDER, bytes);
    u16(this.t, this.m, o, path.length);
    this.latin1(path, o + 2);
    o += 2 + path.length;
    u32(this.t, this.m, o, names.length);
    o += 4;
    for (const k of names) {
      u16(this.t, this.m, o, k.length);
      this.latin1(k, o + 2);
      o += 2 + k.length;
    }
  }

  /**
   * Publishes what the batch changed (nothing if it changed nothing). Called before the batch's
   * replies leave: from here on they may be acknowledged.
   */
  commit(): void {
    const xs = this.xs!;
    if (this.metaChanged(xs)) this.meta(xs);
    if (this.records === 0) return;
    const at = this.open(Rec.BATCH, 4);
    u32(this.t, this.m, at, ++this.seq);
    // What went into the ring comes first; what did not follows it.
    this.log.publishPlaced();
    if (this.spilling) this.log.publish(this.spill, this.len);
    this.reset();
  }

  /** Everything staged since the last commit is dropped (the primary died: none of it was acknowledged). */
  drop(): void {
    this.log.unplace();
    this.reset();
  }

  private reset(): void {
    this.records = 0;
    this.len = 0;
    this.spilling = false;
    this.t = this.ring;
    this.m = this.log.mask;
    this.big = this.ringBuf;
  }

  /**
   * Whether the META part may have changed since the last commit: a request other than a plain
   * node operation, something outside a request the daemon saw (touched()), or one Xenstored
   * counts (metaChanges, domainEpoch). A fingerprint of that part, taken whenever it goes out,
   * is checked every CHECK_EVERY commits: if it moved while nothing said so, a change went
   * untold and a standby would promote a stale copy.
   */
  private metaChanged(xs: Xenstored): boolean {
    const changed = this.metaDirty || xs.metaChanges !== this.seenChanges || xs.domainEpoch !== this.seenEpoch;
    this.metaDirty = false;
    this.seenChanges = xs.metaChanges;
    this.seenEpoch = xs.domainEpoch;
    if (changed) this.fingerprintMoved(xs);
    else if (--this.untilCheck <= 0) {
      this.untilCheck = CHECK_EVERY;
      if (this.fingerprintMoved(xs)) fail('connections, watches, transactions or domains changed and nothing said so');
    }
    return changed;
  }

  /**
   * Takes a cheap fingerprint of the META part (not of quotas or special nodes: only requests
   * change those); whether it differs from the last one.
   */
  private fingerprintMoved(xs: Xenstored): boolean {
    let conns = 0;
    let watches = 0;
    let txs = 0;
    let priv = 0;
    for (const c of xs.connections.values()) {
      conns += c.id;
      watches += c.watches.length;
      txs += c.transactions.size + c.nextTxId;
      priv += (c.privileged ? 1 : 0) + (c.target ?? -1);
    }
    let gens = 0;
    for (const d of xs.domains.values()) gens += d.generation + d.port + (d.introduced ? 1 : 0);
    const now = this.now;
    now[0] = xs.connections.size;
    now[1] = conns;
    now[2] = watches;
    now[3] = txs;
    now[4] = priv;
    now[5] = xs.domains.size;
    now[6] = xs.domainEpoch;
    now[7] = gens;
    let moved = false;
    for (let i = 0; i < now.length; i++) {
      if (this.sig[i] !== now[i]) moved = true;
      this.sig[i] = now[i];
    }
    return moved;
  }

  private meta(xs: Xenstored): void {
    const w = new XsStateWriter(1, false, 4096);
    writeState(w, xs, NO_IO, { transactions: true, nodes: false });
    const stream = w.finish();
    let o = this.open(Rec.META, 4 + 12 * xs.domains.size + 4 + stream.length);
    u32(this.t, this.m, o, xs.domains.size);
    o += 4;
    for (const d of xs.domains.values()) {
      u32(this.t, this.m, o, d.domid);
      this.f64.setFloat64(0, d.generation, true);
      for (let i = 0; i < 8; i++) this.t[(o + 4 + i) & this.m] = this.f64.getUint8(i);
      o += 12;
    }
    u32(this.t, this.m, o, stream.length);
    o = (o + 4) & this.m;
    const first = Math.min(stream.length, this.t.length - o);
    this.t.set(stream.subarray(0, first), o);
    if (first < stream.length) this.t.set(stream.subarray(first), 0);
  }

  /**
   * Starts a record: u32 length of kind and body, u8 kind; returns where the body goes (in
   * `t`, modulo m + 1).
   */
  private open(kind: Rec, body: number): number {
    const size = 5 + body;
    this.records++;
    let at = -1;
    if (!this.spilling) {
      at = this.log.place(size);
      // No room in the ring: this record and the rest of the batch go to the spill buffer.
      if (at < 0) {
        this.spilling = true;
        this.t = this.spillView;
        this.m = -1;
        this.big = this.spill;
      }
    }
    if (this.spilling) {
      const need = this.len + size;
      if (need > this.spill.length) {
        const grown = Buffer.allocUnsafe(Math.max(need, 2 * this.spill.length)) as Latin1Buffer;
        this.spill.copy(grown, 0, 0, this.len);
        this.spill = grown;
        this.spillView = new Uint8Array(grown.buffer, grown.byteOffset, grown.length);
        this.t = this.spillView;
        this.big = grown;
      }
      at = this.len;
      this.len = need;
    }
    u32(this.t, this.m, at, 1 + body);
    this.t[(at + 4) & this.m] = kind;
    return at + 5;
  }

  /** A string's chars as bytes (values are latin1: one byte each) at `at` in `t`. */
  private latin1(s: string, at: number): void {
    const n = s.length;
    const t = this.t;
    const m = this.m;
    if (n >= LONG) {
      const o = at & m;
      if (o + n <= t.length) {
        this.big.latin1Write(s, o);
        return;
      }
    }
    for (let i = 0; i < n; i++) t[(at + i) & m] = s.charCodeAt(i);
  }
}

interface MirrorNode {
  value: string;
  /** ACL entries as sent (interned when promoted). */
  perms: readonly PermEntry[];
  gen: number;
  /** Child names in DIRECTORY order. */
  kids: Set<string> | null;
}

type Change =
  | { readonly kind: Rec.PUT; readonly path: string; readonly node: MirrorNode }
  | { readonly kind: Rec.DEL; readonly path: string }
  | { readonly kind: Rec.ORDER; readonly path: string; readonly names: readonly string[] }
  | { readonly kind: Rec.RESET }
  | { readonly kind: Rec.META; readonly gens: readonly (readonly [number, number])[]; readonly records: XsStateRecord[] };

/** A standby: a reader of the log, keeping what the primary committed (nodes by path, each with its child names). */
export class Standby {
  readonly nodes = new Map<string, MirrorNode>();
  private meta: XsStateRecord[] = [];
  private gens: readonly (readonly [number, number])[] = [];
  /** Batches applied (the last BATCH's number). */
  applied = 0;
  /** Bytes read from the log and not yet parsed (a record cut where a batch was split). */
  private carry = new Uint8Array(0);
  /** Records of the batch being read. */
  private batch: Change[] = [];
  private readonly permCache = new Map<string, readonly PermEntry[]>();
  /** The last ACL read, as encoded and as entries. */
  private lastPermBytes: Uint8Array = new Uint8Array(0);
  private lastPerms: readonly PermEntry[] = [];

  constructor(readonly reader: ReplicationLogReader) {}

  /** Applies every whole batch published so far; returns how many. */
  pump(): number {
    const got = this.reader.take();
    if (got.length === 0) return 0;
    let bytes = got;
    if (this.carry.length !== 0) {
      bytes = new Uint8Array(this.carry.length + got.length);
      bytes.set(this.carry);
      bytes.set(got, this.carry.length);
    }
    const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length) as Latin1Reader;
    const before = this.applied;
    let off = 0;
    while (b.length - off >= 4) {
      const len = b.readUInt32LE(off);
      if (!(len >= 1 && len <= 1 << 30)) fail(`record length ${len} at log offset ${off}`);
      if (b.length - off - 4 < len) break;
      this.record(b, off + 4, len);
      off += 4 + len;
    }
    this.carry = bytes.slice(off);
    return this.applied - before;
  }

  private record(b: Latin1Reader, at: number, len: number): void {
    const kind = b.readUInt8(at) as Rec;
    const body = at + 1;
    switch (kind) {
      case Rec.PUT: {
        check(len >= 17, 'PUT record length');
        // Reads by hand and latin1Slice: Buffer's readers and toString() check their arguments on every call.
        const gen = r32(b, body) + r32(b, body + 4) * 2 ** 32;
        const plen = r16(b, body + 8);
        const vlen = r32(b, body + 10);
        const pstart = body + 16 + 5 * r16(b, body + 14);
        check(pstart + plen + vlen === at + len, 'PUT record length');
        const perms = this.perms(b, body + 14, pstart);
        this.batch.push({ kind, path: b.latin1Slice(pstart, pstart + plen), node: { value: b.latin1Slice(pstart + plen, pstart + plen + vlen), perms, gen, kids: null } });
        return;
      }
      case Rec.DEL: {
        const plen = b.readUInt16LE(body);
        check(body + 2 + plen === at + len, 'DEL record length');
        this.batch.push({ kind, path: b.latin1Slice(body + 2, body + 2 + plen) });
        return;
      }
      case Rec.RESET:
        this.batch.push({ kind });
        return;
      case Rec.ORDER: {
        const plen = b.readUInt16LE(body);
        const path = b.toString('latin1', body + 2, body + 2 + plen);
        let o = body + 2 + plen;
        const n = b.readUInt32LE(o);
        o += 4;
        const names: string[] = [];
        for (let i = 0; i < n; i++) {
          const k = b.readUInt16LE(o);
          names.push(b.toString('latin1', o + 2, o + 2 + k));
          o += 2 + k;
        }
        check(o === at + len, 'ORDER record length');
        this.batch.push({ kind, path, names });
        return;
      }
      case Rec.META: {
        const n = b.readUInt32LE(body);
        const gens: (readonly [number, number])[] = [];
        let o = body + 4;
        for (let i = 0; i < n; i++, o += 12) gens.push([b.readUInt32LE(o), b.readDoubleLE(o + 4)]);
        const slen = b.readUInt32LE(o);
        check(o + 4 + slen === at + len, 'META record length');
        const records = new XsStateReader(new Uint8Array(b.subarray(o + 4, o + 4 + slen))).records();
        this.batch.push({ kind, gens, records });
        return;
      }
      case Rec.BATCH: {
        const seq = b.readUInt32LE(body);
        // Batches come whole and in order: a gap or a repeat is a log bug, never a state to promote.
        if (seq !== ((this.applied + 1) >>> 0)) fail(`batch ${seq} after batch ${this.applied}`);
        for (const c of this.batch) this.apply(c);
        this.batch = [];
        this.applied = seq;
        return;
      }
      default:
        fail(`unknown record kind ${kind as number}`);
    }
  }

  /** The ACL encoded in b[from, to) (u16 count, then u8 perms and u32 domid each): most nodes have the one before's. */
  private perms(b: Latin1Reader, from: number, to: number): readonly PermEntry[] {
    const last = this.lastPermBytes;
    if (last.length === to - from) {
      let same = true;
      for (let i = 0; i < last.length && same; i++) same = last[i] === b[from + i];
      if (same) return this.lastPerms;
    }
    const pkey = b.latin1Slice(from, to);
    let perms = this.permCache.get(pkey);
    if (perms === undefined) {
      const list: PermEntry[] = [];
      for (let o = from + 2; o < to; o += 5) list.push({ perms: b[o], id: asDomId(r32(b, o + 1)) });
      perms = list;
      this.permCache.set(pkey, perms);
    }
    this.lastPermBytes = b.slice(from, to);
    this.lastPerms = perms;
    return perms;
  }

  private apply(c: Change): void {
    switch (c.kind) {
      case Rec.PUT: {
        const have = this.nodes.get(c.path);
        if (have !== undefined) {
          have.value = c.node.value;
          have.perms = c.node.perms;
          have.gen = c.node.gen;
          return;
        }
        this.nodes.set(c.path, c.node);
        if (c.path === '/') return;
        const slash = c.path.lastIndexOf('/');
        const parent = this.nodes.get(slash === 0 ? '/' : c.path.slice(0, slash));
        if (parent === undefined) fail(`node ${c.path} before its parent`);
        (parent.kids ??= new Set()).add(c.path.slice(slash + 1));
        return;
      }
      case Rec.DEL: {
        const gone = this.nodes.get(c.path);
        if (gone === undefined || (gone.kids !== null && gone.kids.size !== 0)) fail(`removal of unknown node or one with children: ${c.path}`);
        this.nodes.delete(c.path);
        const slash = c.path.lastIndexOf('/');
        this.nodes.get(slash === 0 ? '/' : c.path.slice(0, slash))?.kids?.delete(c.path.slice(slash + 1));
        return;
      }
      case Rec.ORDER: {
        const n = this.nodes.get(c.path);
        if (n === undefined) fail(`order of unknown node ${c.path}`);
        n.kids = new Set(c.names);
        return;
      }
      case Rec.RESET:
        this.nodes.clear();
        this.meta = [];
        this.gens = [];
        return;
      case Rec.META:
        this.meta = c.records;
        this.gens = c.gens;
        return;
    }
  }

  /** Reads the rest of the log (the primary is dead: nothing more comes). */
  catchUp(): void {
    while (this.pump() !== 0 || this.reader.available() !== 0) { /* each pump frees ring space */ }
  }

  /**
   * The standby's state as a state stream for the daemon that takes over: GLOBAL, quotas,
   * connections with their watches and transaction ids, special nodes, the tree in creation
   * order (each ACL as the primary's read_node() would leave it), domains.
   */
  stream(opts: XenstoredOptions): Uint8Array {
    check(this.meta.length !== 0 && this.nodes.has('/'), 'nothing replicated yet');
    // The stale-ACL rule needs the domains' generations: a scratch instance knowing them applies it.
    const probe = new Xenstored({ ...opts, restoring: true });
    for (const [domid, generation] of this.gens) {
      probe.domains.set(domid, { domid: asDomId(domid), generation, introduced: false, conn: undefined, mfn: 0, port: 0, shutdownReported: false });
    }
    const settle = probe.b.staleAclByGeneration;
    const w = new XsStateWriter(1, false, 4096 + 64 * this.nodes.size);
    const domains: XsStateRecord[] = [];
    for (const r of this.meta) {
      if (r.type === XsStateType.DOMAIN) domains.push(r);
      else w.record(r);
    }
    // Pre-order from / (children in DIRECTORY order), as dump_state_nodes() writes them.
    const stack: string[] = ['/'];
    while (stack.length !== 0) {
      const path = stack.pop()!;
      const n = this.nodes.get(path);
      if (n === undefined) fail(`child ${path} without its node`);
      const perms = internPerms(n.perms);
      w.node(path, n.value, statePerms(settle ? probe.settlePerms(perms, n.gen) : perms));
      if (n.kids === null) continue;
      const kids = [...n.kids];
      const base = path === '/' ? '' : path;
      for (let i = kids.length - 1; i >= 0; i--) stack.push(`${base}/${kids[i]}`);
    }
    for (const r of domains) w.record(r);
    return w.finish();
  }
}
