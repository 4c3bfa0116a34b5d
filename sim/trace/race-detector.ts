// The race detector: reads any run's trace, passing or failing, and reports the xenstore access
// patterns that let a race bite on another schedule. It models xenstored's store from the
// trace's requests and replies (transactions take effect at commit, as in C xenstored), names
// every connection's party (toolstack, a domain's kernel xenbus and its drivers, user space), and
// checks:
//
//   read-then-write     a party reads N, another party writes N, the first writes N without
//                       having re-read it and without a transaction that read N (lost update);
//                       or a transaction-free read-modify-write of N while another party's
//                       transaction writing N is open (only the commit order saved it);
//   watch-then-read     a watch fires for N and N changes again before the watcher reads it (the
//                       watcher never sees the value the event was for), or a watch on exactly a
//                       device node fires and the watcher never reads N at all (dropped event);
//   read-without-watch  a party reads N with no watch on it, acts on it (writes into the same
//                       device), then another party writes N and the reader never looks again;
//   foreign-write       a party writes a node in a split device's directory it does not own
//                       (spec: hypervisor-and-xenbus.md section 4: libxl creates both ends in
//                       one transaction and later writes only online, hotplug keys and Closing);
//   retry-dropped-write a transaction that wrote N failed with EAGAIN and the party never wrote
//                       N again (a state cached across the retry, R04).
//
// What counts as synchronised: a read and a write in one transaction that committed (xenstored
// fails the commit if anything read inside it changed); any read in a transaction (it was current
// at commit, or the body runs again); a re-read of the node by the same party after the other
// party's write (a watch event that triggered that re-read orders the write before it); a watch
// of the reader on the node, or on a directory above it inside the device, when the node was
// written. A xenbus bus watch (`backend`, `device`) does not count: its handler never reads the
// keys of a device. Pure: events in, findings out.
import {
  absolutePath, driverName, isNum, isStr, isXenstore, oneLine, parseDevicePath, payloadFields, type TraceRecord, xsType,
} from './events.ts';

export type RaceKind = 'read-then-write' | 'watch-then-read' | 'read-without-watch' | 'foreign-write' | 'retry-dropped-write';

export const RACE_KINDS: readonly RaceKind[] = ['read-then-write', 'watch-then-read', 'read-without-watch', 'foreign-write', 'retry-dropped-write'];

export interface RaceFinding {
  readonly kind: RaceKind;
  /** The node the finding is about (absolute). */
  readonly path: string;
  /** Indexes of the trace events involved, in trace order. */
  readonly events: readonly number[];
  /** The parties involved, as the message names them. */
  readonly parties: readonly string[];
  /** One sentence in Xen's names, with event indexes and virtual times. */
  readonly message: string;
}

/** What a connection is, from what it does in the trace. */
type ConnRole = 'toolstack' | 'kernel' | 'user' | 'unknown';

interface Conn {
  readonly id: number;
  /** Where the connection first appears. */
  readonly first: number;
  domid: number | undefined;
  role: ConnRole;
}

/** One request with its reply. */
interface Op {
  readonly idx: number;
  readonly conn: number;
  readonly type: string;
  readonly path: string | undefined;
  /** WRITE: the value written. READ: the value read (undefined when absent). */
  value: string | undefined;
  readonly tx: number;
  /** The transaction this op belongs to (tx != 0). */
  txn: Txn | undefined;
  replyIdx: number | undefined;
  error: string | undefined;
  readonly token?: string;
}

interface Txn {
  readonly conn: number;
  readonly id: number;
  readonly startIdx: number;
  endIdx: number | undefined;
  /** true: committed; false: aborted or failed (EAGAIN...). */
  committed: boolean | undefined;
  error: string | undefined;
  readonly ops: Op[];
}

/** A change of the store, at the position it took effect (IN of the request, or the commit). */
interface Effect {
  readonly at: number;
  readonly op: Op | undefined;
  readonly conn: number;
  readonly kind: 'write' | 'rm' | 'mkdir' | 'perms';
  readonly path: string;
  readonly value: string | undefined;
}

interface Watch {
  readonly conn: number;
  readonly path: string;
  readonly token: string;
  readonly from: number;
  until: number;
}

interface WatchEvent {
  readonly idx: number;
  readonly conn: number;
  readonly path: string;
  readonly token: string;
}

/** Whether two nodes belong to one split device (either end's directory), or neither is in a device. */
function sameDevice(a: string, b: string): boolean {
  const da = parseDevicePath(a);
  const db = parseDevicePath(b);
  if (!da || !db) return !da && !db;
  return da.type === db.type && da.devid === db.devid && da.frontendDomid === db.frontendDomid;
}

/** The xenbus bus roots a kernel watches to find devices. */
const BUS_ROOT = /^\/local\/domain\/\d+\/(?:backend|device)$/;

const isUnder = (path: string, dir: string): boolean => path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);

/** The model of one trace that the rules query. */
class TraceModel {
  readonly conns = new Map<number, Conn>();
  readonly ops: Op[] = [];
  readonly txns: Txn[] = [];
  readonly effects: Effect[] = [];
  readonly watches: Watch[] = [];
  readonly events: WatchEvent[] = [];
  /** Index at which a domain's xenstore presence ended (RELEASE, its home removed, owned nodes reaped). */
  readonly domainGone = new Map<number, number[]>();
  private readonly byPath = new Map<string, Effect[]>();
  private readonly rms: Effect[] = [];
  private readonly readsByConnPath = new Map<string, Op[]>();

  constructor(readonly trace: readonly TraceRecord[]) {
    const pending = new Map<string, Op>();
    const openTx = new Map<string, Txn>();
    const startReq = new Map<string, number>();
    for (const [idx, e] of trace.entries()) {
      if (e.kind === 'xenstored' && e.op === 'owned_nodes_removed' && isNum(e.owner)) {
        this.gone(e.owner, idx);
        if (Array.isArray(e.paths)) {
          for (const p of e.paths) if (isStr(p)) this.effects.push({ at: idx, op: undefined, conn: -1, kind: 'rm', path: p, value: undefined });
        }
        continue;
      }
      if (!isXenstore(e)) continue;
      const conn = this.conn(e.conn, e.domid, idx);
      const type = xsType(e);
      const fields = payloadFields(e.payload);
      if (e.dir === 'IN') {
        const raw = fields[0];
        const path = ['READ', 'WRITE', 'MKDIR', 'RM', 'DIRECTORY', 'DIRECTORY_PART', 'GET_PERMS', 'SET_PERMS', 'WATCH', 'UNWATCH'].includes(type) && raw !== undefined
          ? absolutePath(raw, conn.domid) : undefined;
        let value: string | undefined;
        if (type === 'WRITE') {
          const nul = e.payload.indexOf('\\0');
          value = nul < 0 ? '' : e.payload.slice(nul + 2);
        }
        const op: Op = {
          idx, conn: e.conn, type, path, value, tx: e.tx_id, txn: undefined, replyIdx: undefined, error: undefined,
          ...(type === 'WATCH' || type === 'UNWATCH' ? { token: fields[1] ?? '' } : {}),
        };
        if (e.tx_id !== 0) {
          const t = openTx.get(`${e.conn}:${e.tx_id}`);
          if (t) {
            op.txn = t;
            t.ops.push(op);
          }
        }
        this.ops.push(op);
        pending.set(`${e.conn}:${e.req_id}`, op);
        if (type === 'TRANSACTION_START') startReq.set(`${e.conn}:${e.req_id}`, idx);
        this.classify(conn, op);
        continue;
      }
      if (type === 'WATCH_EVENT') {
        const path = fields[0];
        if (path !== undefined) this.events.push({ idx, conn: e.conn, path: absolutePath(path, conn.domid), token: fields[1] ?? '' });
        continue;
      }
      const op = pending.get(`${e.conn}:${e.req_id}`);
      if (!op) continue;
      pending.delete(`${e.conn}:${e.req_id}`);
      op.replyIdx = idx;
      if (type === 'ERROR') op.error = fields[0] ?? 'E?';
      this.complete(op, e.payload, fields, openTx, idx);
    }
    // A second connection of a domain whose kernel xenbus is known is user space (/dev/xen/xenbus).
    for (const c of this.conns.values()) {
      if (c.role !== 'unknown' || c.domid === undefined || c.domid === 0) continue;
      if ([...this.conns.values()].some((k) => k.role === 'kernel' && k.domid === c.domid)) c.role = 'user';
    }
    this.effects.sort((a, b) => a.at - b.at);
    for (const f of this.effects) {
      if (f.kind === 'rm') this.rms.push(f);
      const list = this.byPath.get(f.path) ?? [];
      list.push(f);
      this.byPath.set(f.path, list);
    }
    for (const op of this.ops) {
      if (op.type !== 'READ' || op.path === undefined || op.replyIdx === undefined) continue;
      if (op.error !== undefined && op.error !== 'ENOENT') continue;
      const k = `${op.conn}\0${op.path}`;
      const list = this.readsByConnPath.get(k) ?? [];
      list.push(op);
      this.readsByConnPath.set(k, list);
    }
  }

  private conn(id: number, domid: number, idx: number): Conn {
    let c = this.conns.get(id);
    if (!c) {
      c = { id, first: idx, domid: domid >= 0 ? domid : undefined, role: 'unknown' };
      this.conns.set(id, c);
    }
    if (c.domid === undefined && domid >= 0) c.domid = domid;
    return c;
  }

  private gone(domid: number, idx: number): void {
    const list = this.domainGone.get(domid) ?? [];
    list.push(idx);
    this.domainGone.set(domid, list);
  }

  /**
   * A connection's role, from Xen facts about who does what: the kernel's xenbus watches its
   * bus roots (`device` for frontends, `backend` for backends, Linux xenbus_probe); libxl
   * introduces and releases domains, watches @releaseDomain and keeps /libxl and /vm.
   */
  private classify(c: Conn, op: Op): void {
    const p = op.path;
    if (op.type === 'WATCH' && p !== undefined && c.domid !== undefined
      && (p === `/local/domain/${c.domid}/device` || p === `/local/domain/${c.domid}/backend`)) {
      c.role = 'kernel';
      return;
    }
    if (c.role !== 'unknown') return;
    if (op.type === 'INTRODUCE' || op.type === 'RELEASE' || (op.type === 'WATCH' && (p === '@releaseDomain' || p === '@introduceDomain'))
      || (op.type === 'WRITE' && p !== undefined && (p.startsWith('/libxl/') || p.startsWith('/vm/')))) {
      c.role = 'toolstack';
    }
  }

  private complete(op: Op, payload: string, fields: readonly string[], openTx: Map<string, Txn>, idx: number): void {
    const ok = op.error === undefined;
    if (op.type === 'TRANSACTION_START' && ok) {
      const id = Number(fields[0]);
      if (Number.isInteger(id) && id !== 0) {
        const t: Txn = { conn: op.conn, id, startIdx: op.idx, endIdx: undefined, committed: undefined, error: undefined, ops: [] };
        openTx.set(`${op.conn}:${id}`, t);
        this.txns.push(t);
      }
      return;
    }
    if (op.type === 'TRANSACTION_END') {
      const t = openTx.get(`${op.conn}:${op.tx}`);
      if (!t) return;
      openTx.delete(`${op.conn}:${op.tx}`);
      t.endIdx = op.idx;
      t.committed = ok && this.endWasCommit(op);
      t.error = op.error;
      if (t.committed) for (const o of t.ops) this.effect(o, op.idx);
      return;
    }
    if (op.type === 'READ') {
      op.value = ok ? payload : undefined;
      return;
    }
    if (op.type === 'RELEASE' && ok) {
      const d = Number(this.inPayload(op)?.[0]);
      if (Number.isInteger(d)) this.gone(d, idx);
      return;
    }
    if (op.type === 'WATCH' && ok && op.path !== undefined) {
      this.watches.push({ conn: op.conn, path: op.path, token: op.token ?? '', from: op.idx, until: Infinity });
      return;
    }
    if (op.type === 'UNWATCH' && ok && op.path !== undefined) {
      const w = this.watches.find((x) => x.conn === op.conn && x.path === op.path && x.token === op.token && x.until === Infinity);
      if (w) w.until = op.idx;
      return;
    }
    if (!ok) return;
    if (op.type === 'RM' && op.path !== undefined) {
      const m = /^\/local\/domain\/(\d+)$/.exec(op.path);
      if (m) this.gone(Number(m[1]), op.idx);
    }
    if (op.tx === 0) this.effect(op, op.idx);
  }

  private endWasCommit(op: Op): boolean {
    const f = this.inPayload(op)?.[0];
    return f !== 'F';
  }

  private inPayload(op: Op): string[] | undefined {
    const e = this.trace[op.idx];
    return e && isXenstore(e) ? payloadFields(e.payload) : undefined;
  }

  private effect(op: Op, at: number): void {
    if (op.path === undefined || op.error !== undefined) return;
    const kind = op.type === 'WRITE' ? 'write' : op.type === 'RM' ? 'rm' : op.type === 'MKDIR' ? 'mkdir' : op.type === 'SET_PERMS' ? 'perms' : undefined;
    if (!kind) return;
    this.effects.push({ at, op, conn: op.conn, kind, path: op.path, value: op.value });
  }

  /** Effects that changed `path`'s value (writes of it, removals of it or an ancestor), in order. */
  changesOf(path: string): Effect[] {
    const own = (this.byPath.get(path) ?? []).filter((f) => f.kind === 'write' || f.kind === 'rm' || f.kind === 'mkdir');
    const anc = this.rms.filter((f) => f.path !== path && isUnder(path, f.path));
    return anc.length === 0 ? own : [...own, ...anc].sort((a, b) => a.at - b.at);
  }

  /** The value of `path` just before trace index `idx` (undefined: absent or never seen). */
  valueBefore(path: string, idx: number): { known: boolean; value: string | undefined; by?: number } {
    let last: Effect | undefined;
    for (const f of this.changesOf(path)) {
      if (f.at >= idx) break;
      last = f;
    }
    if (!last) return { known: false, value: undefined };
    if (last.kind === 'rm') return { known: true, value: undefined, by: last.conn };
    if (last.kind === 'mkdir') return { known: true, value: '', by: last.conn };
    return { known: true, value: last.value, by: last.conn };
  }

  readsOf(conn: number, path: string): Op[] {
    return this.readsByConnPath.get(`${conn}\0${path}`) ?? [];
  }

  /**
   * Whether `conn` had a watch covering `path` at trace index `idx`. A xenbus bus watch
   * (`/local/domain/D/backend` or `device`) does not count for nodes inside a device: its
   * handler only probes and removes devices and never re-reads their keys (Linux xenbus_probe).
   */
  watched(conn: number, path: string, idx: number): boolean {
    const inDevice = parseDevicePath(path) !== undefined;
    return this.watches.some((w) => w.conn === conn && w.from < idx && idx < w.until && isUnder(path, w.path)
      && !(inDevice && BUS_ROOT.test(w.path)));
  }

  /** Index after which `conn`'s domain no longer exists in xenstore (Infinity if never). */
  connEnd(conn: number): number {
    const c = this.conns.get(conn);
    if (!c || c.domid === undefined || c.domid === 0) return Infinity;
    return (this.domainGone.get(c.domid) ?? []).find((i) => i > c.first) ?? Infinity;
  }

  /** The party a connection acts as when it touches `path`: `blkback`, `dom1 blkfront`, `toolstack`... */
  party(conn: number, path?: string): string {
    if (conn === -1) return 'xenstored';
    const c = this.conns.get(conn);
    const dom = c?.domid === undefined ? `conn ${conn}` : c.domid === 0 ? 'Domain-0' : `dom${c.domid}`;
    if (!c) return dom;
    if (c.role === 'toolstack') return 'toolstack';
    if (c.role === 'user') return `${dom} user space (conn ${conn})`;
    if (c.role === 'unknown' && c.domid === 0) return `Domain-0 conn ${conn}`;
    const dev = path !== undefined ? parseDevicePath(path) : undefined;
    if (dev) {
      const side = c.domid === dev.frontendDomid && (dev.side === 'frontend' || dev.backendDomid !== c.domid) ? 'frontend' : 'backend';
      const drv = driverName(dev.type, side);
      return c.domid === 0 ? drv : `${dom} ${drv}`;
    }
    return `${dom} xenbus`;
  }

  /** `#812 (50.110 ms)` */
  at(idx: number): string {
    const t = this.trace[idx]?.t;
    return isNum(t) ? `#${idx} (${(t / 1e6).toFixed(3)} ms)` : `#${idx}`;
  }
}

const show = (v: string | undefined): string => (v === undefined ? '(absent)' : `"${oneLine(v)}"`);
const assign = (path: string, v: string | undefined): string => (v === undefined ? `${path} (absent)` : `${path}=${show(v)}`);

function txnReads(t: Txn, path: string): boolean {
  return t.ops.some((o) => o.type === 'READ' && o.path === path && o.replyIdx !== undefined);
}

/** A party reads N; another party writes N; the first writes N with no re-read and no transaction covering both. */
function readThenWrite(m: TraceModel, out: RaceFinding[]): void {
  const seen = new Set<string>();
  for (const w of m.effects) {
    if (w.kind !== 'write' || !w.op) continue;
    const a = w.conn;
    // Synchronised: the write's transaction read the node itself and committed.
    if (w.op.txn && txnReads(w.op.txn, w.path)) continue;
    const reads = m.readsOf(a, w.path).filter((r) => r.idx < w.at && !(r.txn && r.txn.committed === false));
    const r = reads[reads.length - 1];
    if (!r) continue;
    // A read inside a committed transaction stands for the value at its commit.
    const readAt = r.txn?.endIdx ?? r.idx;
    const other = m.changesOf(w.path).filter((f) => f.conn !== a && f.kind !== 'rm' && f.at > readAt && f.at < w.at);
    const b = other[other.length - 1];
    if (!b) {
      if (!w.op.txn) racingTransaction(m, r, w, out, seen);
      continue;
    }
    const key = `${a}\0${w.path}\0${b.at}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const pa = m.party(a, w.path);
    const pb = m.party(b.conn, w.path);
    const how = w.op.txn ? `in a transaction that did not read it (committed ${m.at(w.at)})` : 'outside a transaction';
    out.push({
      kind: 'read-then-write', path: w.path, events: [r.idx, b.at, w.op.idx], parties: [pa, pb],
      message: `${pa} read ${assign(w.path, r.value)} at ${m.at(r.idx)}, then ${pb} wrote ${show(b.value)} at ${m.at(b.at)}, then ${pa} wrote ${show(w.value)} at ${m.at(w.op.idx)} ${how} without re-reading: a lost update`,
    });
  }
}

/**
 * A transaction-free read-modify-write of N while another party's transaction that writes N is
 * open across it: nothing was lost on this schedule only because of the order the two ended in.
 */
function racingTransaction(m: TraceModel, r: Op, w: Effect, out: RaceFinding[], seen: Set<string>): void {
  const t = m.txns.find((u) => u.conn !== w.conn && u.startIdx < w.at && (u.endIdx ?? Infinity) > r.idx
    && u.ops.some((o) => (o.type === 'WRITE' || o.type === 'RM') && o.path !== undefined && isUnder(w.path, o.path)));
  if (!t || !w.op) return;
  const key = `${w.conn}\0${w.path}\0tx${t.conn}:${t.startIdx}`;
  if (seen.has(key)) return;
  seen.add(key);
  const tw = t.ops.find((o) => (o.type === 'WRITE' || o.type === 'RM') && o.path !== undefined && isUnder(w.path, o.path))!;
  const pa = m.party(w.conn, w.path);
  const pb = m.party(t.conn, w.path);
  const ending = t.endIdx === undefined ? 'still open at the end' : t.committed ? `committed at ${m.at(t.endIdx)}` : `ended at ${m.at(t.endIdx)}${t.error ? ` with ${t.error}` : ' (aborted)'}`;
  out.push({
    kind: 'read-then-write', path: w.path, events: [r.idx, w.op.idx, t.startIdx, tw.idx], parties: [pa, pb],
    message: `${pa} read ${assign(w.path, r.value)} at ${m.at(r.idx)} and wrote ${show(w.value)} at ${m.at(w.op.idx)} outside a transaction, while ${pb}'s transaction ${t.id} (started ${m.at(t.startIdx)}, ${tw.type === 'RM' ? 'removing' : `writing ${show(tw.value)} at ${m.at(tw.idx)}`}, ${ending}) was open: which update survives depends on the order`,
  });
}

/** A watch fired for N; N changed again before the watcher read it, or the watcher never read it. */
function watchThenRead(m: TraceModel, out: RaceFinding[]): void {
  const reported = new Set<string>();
  const stale = new Map<string, { n: number; finding: RaceFinding }>();
  for (const ev of m.events) {
    if (ev.path.startsWith('@')) continue;
    const w = m.watches.find((x) => x.conn === ev.conn && x.token === ev.token && x.from < ev.idx && ev.idx <= x.until && isUnder(ev.path, x.path));
    if (!w) continue;
    // A bus watch's handler probes and removes devices; it never reads their keys.
    if (BUS_ROOT.test(w.path) && parseDevicePath(ev.path) !== undefined) continue;
    const cause = m.valueBefore(ev.path, ev.idx);
    // The firing on registration: 'look now', no news of a change (xenstored watch.c).
    const initial = ev.path === w.path && m.events.find((x) => x.conn === ev.conn && x.token === w.token && x.idx > w.from)?.idx === ev.idx
      && !m.changesOf(ev.path).some((f) => f.at > w.from && f.at < ev.idx);
    const readsAfter = m.readsOf(ev.conn, ev.path).filter((r) => r.idx > ev.idx);
    const next = readsAfter[0];
    const pw = m.party(ev.conn, ev.path);
    if (!next) {
      // Dropped event: only for a watch on exactly this node (a handler that must look), with
      // news in it, while the watcher's domain still exists.
      // Only xenbus otherend-style watches on a node of a split device: their handler must read
      // the node to learn anything (Linux otherend_changed); other watchers may just count events.
      if (w.path !== ev.path || parseDevicePath(ev.path) === undefined) continue;
      if (!cause.known || cause.value === undefined || cause.value === '') continue;
      if (m.connEnd(ev.conn) < Infinity || ev.idx >= w.until) continue;
      const key = `lost\0${ev.conn}\0${ev.path}`;
      if (reported.has(key)) continue;
      reported.add(key);
      out.push({
        kind: 'watch-then-read', path: ev.path, events: [ev.idx], parties: [pw],
        message: `${pw}'s watch ${token(ev.token)} fired for ${assign(ev.path, cause.value)} at ${m.at(ev.idx)}, and ${pw} never read ${ev.path} afterwards: the event was dropped or ignored`,
      });
      continue;
    }
    if (!cause.known || cause.value === undefined || initial) continue;
    // The watcher's own write: it knows the value without reading.
    if (cause.by === ev.conn) continue;
    const later = m.changesOf(ev.path).filter((f) => f.at > ev.idx && f.at < next.idx && f.conn !== ev.conn && f.kind !== 'rm' && f.value !== cause.value);
    const j = later[0];
    if (!j || next.value === cause.value) continue;
    const key = `stale\0${ev.conn}\0${ev.path}`;
    const again = stale.get(key);
    if (again) {
      again.n++;
      continue;
    }
    const pj = m.party(j.conn, ev.path);
    stale.set(key, {
      n: 1,
      finding: {
        kind: 'watch-then-read', path: ev.path, events: [ev.idx, j.at, next.idx], parties: [pw, pj],
        message: `${pw}'s watch ${token(ev.token)} fired for ${assign(ev.path, cause.value)} at ${m.at(ev.idx)}, but ${pj} wrote ${show(j.value)} at ${m.at(j.at)} before ${pw} read it at ${m.at(next.idx)}: ${pw} never saw ${show(cause.value)}`,
      },
    });
  }
  for (const { n, finding } of stale.values()) {
    out.push(n === 1 ? finding : { ...finding, message: `${finding.message} (and ${n - 1} more such window${n > 2 ? 's' : ''} on this node)` });
  }
}

/** A watch token for a message (a hostile one can be kilobytes long). */
const token = (t: string): string => (t.length > 24 ? `${oneLine(t.slice(0, 24))}...` : oneLine(t));

/** A read with no watch on the node; its owner writes it later; the reader never looks again. */
function readWithoutWatch(m: TraceModel, out: RaceFinding[]): void {
  const reported = new Set<string>();
  for (const r of m.ops) {
    if (r.type !== 'READ' || r.path === undefined || r.replyIdx === undefined) continue;
    if (r.error !== undefined && r.error !== 'ENOENT') continue;
    // A read in a transaction was current when it committed, or the transaction failed and its
    // body runs again (a retry re-reads).
    if (r.txn) continue;
    if (m.watched(r.conn, r.path, r.idx)) continue;
    const key = `${r.conn}\0${r.path}`;
    if (reported.has(key)) continue;
    const readAt = r.idx;
    const w = m.changesOf(r.path).find((f) => f.at > readAt && f.conn !== r.conn && f.kind === 'write' && f.value !== r.value);
    if (!w) continue;
    // Not this reader's problem if it re-reads after the write or is told by a watch by then.
    if (m.readsOf(r.conn, r.path).some((x) => x.idx > w.at)) continue;
    if (m.watched(r.conn, r.path, w.at)) continue;
    if (m.connEnd(r.conn) < w.at) continue;
    // Only a read the reader acted on: it changed the same device (or, outside devices, the
    // store) after it - before or after the write landed, it acted on what it had read. A look
    // that leads to nothing (a status query) is no race.
    const acted = m.effects.find((f) => f.conn === r.conn && f.at > readAt && sameDevice(f.path, r.path!));
    if (!acted) continue;
    // Teardown: the writer removes the device afterwards, so no stale view of it survives.
    const dev = parseDevicePath(r.path);
    if (dev && m.effects.some((f) => f.kind === 'rm' && f.at > w.at && f.conn === w.conn && isUnder(dev.dir, f.path))) continue;
    reported.add(key);
    const pr = m.party(r.conn, r.path);
    const pw = m.party(w.conn, r.path);
    out.push({
      kind: 'read-without-watch', path: r.path, events: [r.idx, acted.at, w.at], parties: [pr, pw],
      message: `${pr} read ${assign(r.path, r.value)} at ${m.at(r.idx)} without a watch on it and acted on it (wrote ${acted.path} at ${m.at(acted.at)}), `
        + `while ${pw} wrote ${show(w.value)} at ${m.at(w.at)}, and ${pr} never read it again`,
    });
  }
}

/** Backend keys libxl and the hotplug scripts write after creation (spec 4.3, 4.8). */
const TOOLSTACK_BACKEND_KEYS = new Set(['online', 'hotplug-status', 'hotplug-error', 'physical-device', 'physical-device-path']);

/** Writes into a split device's directory by a party that does not own the node. */
function foreignWrite(m: TraceModel, out: RaceFinding[]): void {
  for (const f of m.effects) {
    if (!f.op || (f.kind !== 'write' && f.kind !== 'mkdir')) continue;
    const dev = parseDevicePath(f.path);
    if (!dev) continue;
    const c = m.conns.get(f.conn);
    if (!c || c.domid === undefined) continue;
    const ownerDom = dev.side === 'frontend' ? dev.frontendDomid : dev.backendDomid;
    const writer = m.party(f.conn, f.path);
    const ownerName = dev.side === 'frontend' ? `dom${dev.frontendDomid} ${driverName(dev.type, 'frontend')}`
      : ownerDom === 0 ? driverName(dev.type, 'backend') : `dom${ownerDom} ${driverName(dev.type, 'backend')}`;
    if (c.role === 'toolstack') {
      // libxl__device_generic_add: the transaction that creates the directory writes its keys.
      const t = f.op.txn;
      if (t && t.ops.some((o) => (o.type === 'WRITE' || o.type === 'MKDIR' || o.type === 'RM') && o.path === dev.dir)) continue;
      if (dev.side === 'backend' && TOOLSTACK_BACKEND_KEYS.has(dev.rest)) continue;
      // Teardown: libxl asks the backend to close (online=0, state=Closing) - section 4.8.
      if (dev.side === 'backend' && dev.rest === 'state' && f.value === '5') continue;
    } else if (c.domid === ownerDom && c.role !== 'user') {
      continue;
    }
    const key = dev.rest === '' ? 'the directory' : `${dev.rest}`;
    out.push({
      kind: 'foreign-write', path: f.path, events: [f.op.idx], parties: [writer, ownerName],
      message: `${writer} wrote ${assign(f.path, f.value)} at ${m.at(f.op.idx)}${f.op.txn ? ` (transaction committed ${m.at(f.at)})` : ''}: ${key} of ${dev.type}/${dev.devid} belongs to ${ownerName}`,
    });
  }
}

/**
 * A transaction that wrote N failed with EAGAIN, and the party never wrote N again: a retry that
 * skipped the write because something outside the store (a cached state) said it was done.
 */
function retryDroppedWrite(m: TraceModel, out: RaceFinding[]): void {
  for (const t of m.txns) {
    if (t.committed !== false || t.error !== 'EAGAIN' || t.endIdx === undefined) continue;
    const end = t.endIdx;
    for (const o of t.ops) {
      if (o.type !== 'WRITE' || o.path === undefined || o.error !== undefined) continue;
      // Written again (by a retry or outside a transaction): nothing was lost.
      if (m.changesOf(o.path).some((f) => f.conn === t.conn && f.at > end)) continue;
      // The retry read the node and found the value there already (another party wrote it).
      if (m.readsOf(t.conn, o.path).some((r) => r.idx > end && r.value === o.value)) continue;
      const p = m.party(t.conn, o.path);
      const retry = m.txns.find((u) => u.conn === t.conn && u.startIdx > end && u.committed === true);
      out.push({
        kind: 'retry-dropped-write', path: o.path, events: [o.idx, end], parties: [p],
        message: `${p} wrote ${assign(o.path, o.value)} at ${m.at(o.idx)} in transaction ${t.id}, which failed with EAGAIN at ${m.at(end)}, `
          + `and ${p} never wrote it again${retry?.endIdx !== undefined ? ` (its next transaction committed at ${m.at(retry.endIdx)} without it)` : ''}: the write is lost`,
      });
    }
  }
}

export interface DetectOptions {
  /** Only these kinds (default: all). */
  readonly kinds?: readonly RaceKind[];
}

/** Every finding of the trace, in trace order of their first event. */
export function detectRaces(trace: readonly TraceRecord[], opts: DetectOptions = {}): RaceFinding[] {
  const m = new TraceModel(trace);
  const out: RaceFinding[] = [];
  const kinds = new Set(opts.kinds ?? RACE_KINDS);
  if (kinds.has('read-then-write')) readThenWrite(m, out);
  if (kinds.has('watch-then-read')) watchThenRead(m, out);
  if (kinds.has('read-without-watch')) readWithoutWatch(m, out);
  if (kinds.has('foreign-write')) foreignWrite(m, out);
  if (kinds.has('retry-dropped-write')) retryDroppedWrite(m, out);
  return out.sort((a, b) => a.events[0] - b.events[0] || RACE_KINDS.indexOf(a.kind) - RACE_KINDS.indexOf(b.kind));
}

/** The findings as text, one line each (`race: <kind>: <sentence>`). */
export function formatFindings(findings: readonly RaceFinding[]): string {
  return findings.map((f) => `race: ${f.kind}: ${f.message}\n`).join('');
}
