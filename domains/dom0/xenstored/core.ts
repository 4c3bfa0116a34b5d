// xenstored's pure core: (state, connection, message) -> replies and watch events.
// No I/O, clocks or threads: transports feed whole messages in and move the returned bytes.
// Behaviour follows C xenstored 4.17 (profile `c`) or oxenstored 4.17 (profile `ocaml`).
import {
  XENSTORE_PAYLOAD_MAX, XsdSockmsgType as T, type XsError, type XsMessage,
} from '../../../hypervisor/public/io/xs_wire.ts';
import { asDomId, atoi, DOMID_FIRST_RESERVED, DOMID_SELF, type DomId, type XsDomain } from './domain.ts';
import {
  canonicalize, domainPath, isChild, isSpecial, isValidNodename, parentOf, basename, join,
} from './path.ts';
import {
  type EntryValidator, formatPerms, internPerms, parsePerms, permForConn, type PermEntry, type Perms, XsPerm,
} from './permissions.ts';
import { BEHAVIOURS, type Behaviours, type Profile } from './profile.ts';
import {
  DEFAULT_BUFFER_SIZE, EntryQuota, MemoryQuota, nodeRecordSize, type Quotas, SeedRateLimit, type SyslogLevel, WriteRateLimit, XS_BUFFERED_HDR,
} from './quota.ts';
import { control, debugOcaml } from './control.ts';
import { controlLiveUpdate, type LiveUpdate, type LuStart, registerXenstored } from './lu.ts';
import { Store, type XsNode } from './store.ts';
import { TransactionHistory } from './history.ts';
import { PendingEvents } from './pending-events.ts';
import { type AclAt, CommittedDb, type Db, NO_GENERATION, type NodeData, type RecordedOp, type Removed, Transaction, TxCorruptError, TxQuotaError } from './transaction.ts';

export type { Profile } from './profile.ts';

export interface XenstoredOptions {
  readonly profile?: Profile;
  /** Overrides of the profile's default quotas. */
  readonly quotas?: Partial<Quotas>;
  /** Whether a domain exists in the hypervisor (default: every non-reserved domid, as the oracle's shim says). */
  readonly domainExists?: (domid: number) => boolean;
  /** -K: re-own a dead domain's nodes to dom0 instead of deleting them. */
  readonly keepOrphans?: boolean;
  /**
   * The daemon runs in a xenstore domain, where dom0 is a ring client (introduceDom0): its state
   * stream may then name dom0's ring connection.
   */
  readonly dom0Ring?: boolean;
  /** Value of /tool/xenstored in profile ocaml (the daemon's path there). */
  readonly ocamlToolPath?: string;
  /** The scenario engine's knobs: faults, and buggy variants of fixed bugs. */
  readonly faults?: XenstoredFaults;
  /**
   * Seconds, for live update's transaction timeout (`-s -t`) and its report of long-running
   * transactions; the host's clock in `xensim xenstored`. Without one time stands still.
   */
  readonly clock?: () => number;
  /**
   * Milliseconds on the daemon's monotonic clock (C: CLOCK_MONOTONIC), for the write-rate
   * limiter, the watch-event timeout and the seed's rate limit. Default: `clock` in milliseconds.
   */
  readonly clockMs?: () => number;
  /**
   * The seed's "20 operations per second per unprivileged domain", as an option: requests read
   * per second per unprivileged domain (0 or absent: off, as in Xen).
   */
  readonly seedRateLimit?: number;
  /** Profile ocaml: conflict-max-history-seconds (oxenstored.conf), the transaction history's window. */
  readonly conflictMaxHistorySeconds?: number;
  /**
   * Start with only the root node, as setup_structure(true) does for a daemon started to read
   * a live-update state stream (the stream brings /tool and everything else).
   */
  readonly restoring?: boolean;
}

export interface XenstoredFaults {
  /** Seeds the fault choices (the core stays deterministic). */
  readonly seed?: number;
  /** Fail this fraction of committing TRANSACTION_ENDs with EAGAIN, as a real conflict would. */
  readonly spuriousEagain?: number;
  /**
   * R15's buggy variant (before XSA-322): ACL entries are honoured by domid alone, so a new
   * domain that reuses a domid inherits the old one's access.
   */
  readonly aclByDomidOnly?: boolean;
  /**
   * C xenstored before per-node conflicts (xen f2bebf72c4, 4.9): TRANSACTION_END T fails with
   * EAGAIN if anything in the store changed since the transaction started, not only what it
   * accessed - so concurrent transactions on unrelated devices conflict (R04's 2006 setting).
   */
  readonly conflictOnAnyChange?: boolean;
}

export interface Watch {
  /** Canonical path (or @name) as matched. */
  readonly node: string;
  readonly token: string;
  /** Home prefix stripped from event paths for a relative watch. */
  readonly relativeTo: string | undefined;
}

export interface Connection {
  readonly id: number;
  readonly domid: DomId;
  /**
   * Socket connections and the privileged domain bypass permissions and quotas (in oxenstored
   * also a domain whose SET_TARGET is dom0: it counts as dom0).
   */
  privileged: boolean;
  readonly kind: 'socket' | 'domain';
  readonly home: string;
  target: DomId | undefined;
  readonly watches: Watch[];
  readonly transactions: Map<number, Transaction>;
  nextTxId: number;
  closed: boolean;
  /** When its oldest open transaction started (clock seconds; C's ta_start_time). */
  txStartedAt: number;
  /**
   * Bytes of replies and watch events queued and not completely sent, each with its 16-byte
   * header, as C charges them to the domain's memory (XSA-326). The transport reports them.
   */
  queuedMemory: number;
  /** Watch events the transport holds for it, unsent (C's out_list, for the duplicate check). */
  readonly pendingEvents: PendingEvents;
}

/** One message for one connection, in the order the daemon produces them. */
export interface Delivery {
  readonly conn: number;
  readonly msg: XsMessage;
}

export interface Outcome {
  readonly deliveries: Delivery[];
  /** Connections the daemon drops (protocol violation, RELEASE, domain death). */
  readonly closed: number[];
}

/** An invariant of the daemon's own state (never of what a client sent). */
function assert(ok: boolean, what: string): asserts ok {
  if (!ok) throw new Error(`xenstored invariant: ${what}`);
}

/** Outcome.closed of a request that closed nothing (shared: nobody changes an outcome). */
const NONE_CLOSED = Object.freeze([]) as unknown as number[];

/** Dispatch flags, as C xenstored's wire_funcs[] carries them. */
const enum Flag {
  NONE = 0,
  /** Only the privileged domain (and dom0 sockets) may send it. */
  PRIV = 1,
  /** tx_id is not looked up (WATCH, UNWATCH). */
  NOTID = 2,
}

type Handler = (ctx: RequestContext) => void;

/** Thrown inside a handler to answer with an error reply. */
class XsFail extends Error {
  constructor(readonly code: XsError | 'EQUOTA', readonly setsErrno = true) {
    super(code);
  }
}
const fail = (code: XsError | 'EQUOTA'): never => {
  throw new XsFail(code);
};
/** An error C returns as a value without setting errno (which a later stale-errno answer shows). */
const failQuiet = (code: XsError | 'EQUOTA'): never => {
  throw new XsFail(code, false);
};

interface RequestContext {
  readonly conn: Connection;
  readonly msg: XsMessage;
  readonly tx: Transaction | undefined;
  readonly db: Db;
  /** Reply payload (set by the handler), and whether events go first even in profile ocaml. */
  reply?: Uint8Array;
  eventsFirst?: boolean;
  /** Sent right after the reply (WATCH's initial event). */
  afterReply?: XsMessage;
}

/** Operations an oxenstored transaction can replay, and those of them that change the store. */
const RECORDED = new Set<number>([T.XS_READ, T.XS_DIRECTORY, T.XS_GET_PERMS, T.XS_WRITE, T.XS_MKDIR, T.XS_RM, T.XS_SET_PERMS, T.XS_GET_DOMAIN_PATH]);
const WRITES = new Set<number>([T.XS_WRITE, T.XS_MKDIR, T.XS_RM, T.XS_SET_PERMS]);

/**
 * How oxenstored's replay (function_of_type_simple_op) takes a recorded request: data operations
 * run again; WATCH_EVENT and ERROR answer ENOSYS again (as they did); anything else raises.
 */
function replayKind(type: number): 'run' | 'enosys' | 'throws' {
  if (RECORDED.has(type)) return 'run';
  return type === T.XS_WATCH_EVENT || type === T.XS_ERROR ? 'enosys' : 'throws';
}

/** Pre-order of oxenstored's watch trie: component by component, children in sorted order. */
function triePathOrder(a: string, b: string): number {
  const x = a === '/' ? [] : a.split('/');
  const y = b === '/' ? [] : b.split('/');
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return x.length - y.length;
}

const enc = (s: string): Uint8Array => Buffer.from(s, 'latin1');
const OK = enc('OK\0');
/** latin1 text of b[0, end) (all of it by default), without a view when b is a Buffer already. */
const dec = (b: Uint8Array, end = b.length): string =>
  (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length)).toString('latin1', 0, end);

/** Splits a payload into its NUL-terminated strings (get_strings: an unterminated tail is not one). */
function strings(payload: Uint8Array, max = Infinity): string[] {
  const out: string[] = [];
  let off = 0;
  while (out.length < max) {
    const nul = payload.indexOf(0, off);
    if (nul < 0) break;
    out.push(dec(payload.subarray(off, nul)));
    off = nul + 1;
  }
  return out;
}

/**
 * oxenstored's String.split ~limit NUL (process.ml's split, 8 pieces unless told): the pieces
 * between NULs, the last one unterminated (an empty string after a final NUL), the limit-th
 * holding the rest whole.
 */
function ocamlSplit(payload: Uint8Array, limit = 8): string[] {
  const out: string[] = [];
  let off = 0;
  for (;;) {
    const nul = out.length === limit - 1 ? -1 : payload.indexOf(0, off);
    if (nul < 0) {
      out.push(dec(payload.subarray(off)));
      return out;
    }
    out.push(dec(payload.subarray(off, nul)));
    off = nul + 1;
  }
}

/**
 * OCaml's int_of_string (63-bit int) or Nativeint.of_string (64-bit): optional sign, decimal or
 * 0x/0o/0b/0u digits, underscores allowed; a value out of range fails as OCaml's parse_intnat does
 * (decimal: signed range; other bases: up to 2^bits - 1, wrapping to negative).
 */
function ocamlIntOfString(s: string, bits: 63 | 64 = 63): number | undefined {
  const m = /^([+-]?)(?:0([xX])([0-9a-fA-F][0-9a-fA-F_]*)|0([oO])([0-7][0-7_]*)|0([bB])([01][01_]*)|0([uU])([0-9][0-9_]*)|([0-9][0-9_]*))$/.exec(s);
  if (!m) return undefined;
  const [radix, digits] = m[3] !== undefined ? [16, m[3]] : m[5] !== undefined ? [8, m[5]] : m[7] !== undefined ? [2, m[7]]
    : m[9] !== undefined ? [0, m[9]] : [10, m[10]];
  const body = digits.replaceAll('_', '');
  const prefix = radix === 16 ? '0x' : radix === 8 ? '0o' : radix === 2 ? '0b' : '';
  const res = BigInt(prefix + body);
  const half = 1n << BigInt(bits - 1);
  if (radix === 10 ? res > half || (res === half && m[1] !== '-') : res >= half * 2n) return undefined;
  return Number(BigInt.asIntN(bits, m[1] === '-' ? -res : res));
}

/** oxenstored's c_int_of_string: the first run of digits, whatever precedes it (0 if none). */
function cIntOfString(s: string): number {
  const m = /\d+/.exec(s);
  return m ? Number(m[0]) : 0;
}

export class Xenstored {
  readonly profile: Profile;
  /** What the profile's daemon does where the two differ (profile.ts). */
  readonly b: Behaviours;
  readonly quotas: Quotas;
  readonly store: Store;
  readonly db: CommittedDb;
  readonly domains = new Map<number, XsDomain>();
  readonly connections = new Map<number, Connection>();
  /** ACLs of @introduceDomain / @releaseDomain. */
  readonly special = new Map<string, Perms>();
  /**
   * C: the process's errno as the daemon's requests leave it (Behaviours.staleErrno): each error
   * answered, and ENOENT from the lookup of a node about to be created; ENOENT after start-up.
   */
  private errno: XsError = 'ENOENT';
  private nextConnId = 1;
  /**
   * Bumped whenever a domain gains or loses its connection, so transports that follow
   * introductions (rings, guest sockets) look only when something changed.
   */
  domainEpoch = 0;
  /**
   * Bumped by what changes connections, their watches or transactions, or domains from outside a
   * request's handling (a transport dropping or resetting a connection, the hypervisor's domain
   * news, held requests run) and by some of what requests do: the seed's replication
   * (replica.ts) sends that part of the state again only when this or a request says it may have
   * changed.
   */
  metaChanges = 0;
  /**
   * The transport's part of introducing a domain (new_domain() in C: map its interface, bind its
   * event channel `port`); an error fails the INTRODUCE with it and leaves the domain unintroduced.
   */
  setUpDomain: ((domid: number, port: number) => XsError | undefined) | undefined;
  private readonly domainExists: (domid: number) => boolean;
  private readonly keepOrphans: boolean;
  private readonly table: ReadonlyArray<readonly [Handler, Flag] | undefined>;
  /** Messages produced by the request being handled. */
  private out: Delivery[] = [];
  private selfEvents: XsMessage[] = [];
  private current: Connection | undefined;
  private closing: number[] = [];
  /**
   * C RELEASE of a domain whose connection follows the requester's in the connection list: the
   * main loop holds a reference on that connection, so the domain is destroyed (its nodes removed,
   * @releaseDomain fired) only after the requester's turn, behind the RELEASE reply.
   */
  private deferredRelease: XsDomain | undefined;
  /**
   * C: talloc references on a domain's connection, newest first - the connection ids of the
   * domains SET_TARGET made its device models (talloc_reference(domain->conn, target->conn)).
   * RELEASE's talloc_free() of a referenced connection only drops the newest reference: the
   * domain stays, introduced, and the next RELEASE frees it.
   */
  private readonly talloc = new Map<number, number[]>();
  /** Applying a committed oxenstored transaction: its events are fired afterwards, not now. */
  private silent = false;
  /**
   * Events produced by the current request, per connection, for C's duplicate check on
   * transports that do not report what they still hold (in-process connections).
   */
  private readonly unsent = new Map<number, PendingEvents>();

  constructor(opts: XenstoredOptions = {}) {
    this.profile = opts.profile ?? 'c';
    this.b = BEHAVIOURS[this.profile];
    this.quotas = { ...this.b.defaultQuotas, ...opts.quotas };
    // A domid is unsigned in C (atoi's -1 is 4294967295): no such domain.
    this.domainExists = opts.domainExists ?? ((d) => d >>> 0 < DOMID_FIRST_RESERVED);
    this.keepOrphans = opts.keepOrphans ?? false;
    this.faults = opts.faults ?? {};
    this.faultState = ((this.faults.seed ?? 1) >>> 0) || 1;
    const n0 = internPerms([{ perms: XsPerm.XS_PERM_NONE, id: asDomId(0) }]);
    this.store = new Store(n0, { trackSubtrees: this.b.commitRule === 'merge-replay' });
    this.db = new CommittedDb(this.store);
    if (this.b.staleAclByGeneration) this.store.adjustPerms = (perms, gen) => this.settlePerms(perms, gen);
    this.special.set('@introduceDomain', n0);
    this.special.set('@releaseDomain', n0);
    this.clock = opts.clock ?? (() => 0);
    const clockMs = opts.clockMs ?? (() => this.clock() * 1000);
    this.clockMs = clockMs;
    this.memoryQuota = new MemoryQuota(this.quotas, this.clock, (level, text) => this.syslog(level, text));
    this.wrl = this.b.writeRateLimit ? new WriteRateLimit(clockMs) : undefined;
    this.seedRate = opts.seedRateLimit ? new SeedRateLimit(opts.seedRateLimit, clockMs) : undefined;
    // The history's 50 ms window needs the monotonic clock: `clock` may be whole seconds (time()).
    this.history = this.b.commitRule === 'merge-replay' ? new TransactionHistory(this.store, () => clockMs() / 1000, opts.conflictMaxHistorySeconds) : undefined;
    this.table = this.buildTable();
    // Dom0 is known, introduced and connected from the start.
    this.domains.set(0, {
      domid: asDomId(0), generation: 0, introduced: true, conn: 0, mfn: 0, port: 0, shutdownReported: false,
    });
    this.wrl?.domainNew(0);
    if (opts.restoring) return;
    // setup_structure(): the tree a fresh daemon starts with.
    const tool = this.store.create('/', this.store.root, 'tool', '', n0);
    this.store.create('/tool', tool, 'xenstored', this.b.toolPathValue ? (opts.ocamlToolPath ?? '/usr/lib/xen-4.17/bin/oxenstored') : '', n0);
    if (this.b.specialNodesInTree) {
      this.store.create('/', this.store.root, 'local', '', n0);
      this.store.create('/', this.store.root, '@introduceDomain', '', n0);
      this.store.create('/', this.store.root, '@releaseDomain', '', n0);
    }
  }

  // ------------------------------------------------------------------ connections

  /** A new dom0 tool connection on the Unix socket: always privileged, home /local/domain/0. */
  connectSocket(): number {
    return this.addConnection(asDomId(0), true, 'socket');
  }

  private addConnection(domid: DomId, privileged: boolean, kind: 'socket' | 'domain', given?: number): number {
    const id = given ?? this.nextConnId++;
    this.metaChanges++;
    if (given !== undefined) this.nextConnId = Math.max(this.nextConnId, given + 1);
    assert(!this.connections.has(id), `connection ${id} exists already`);
    this.connections.set(id, {
      id, domid, privileged, kind, home: domainPath(domid), target: undefined,
      watches: [], transactions: new Map(), nextTxId: 1, closed: false, txStartedAt: 0, queuedMemory: 0,
      pendingEvents: new PendingEvents(),
    });
    return id;
  }

  /**
   * dom0_init() of a xenstored that runs in a domain of its own (a xenstore domain): dom0 is a
   * ring client like any guest - privileged by its domid - its ring the page its kernel granted
   * (GNTTAB_RESERVED_XENSTORE) and `port` the event channel it allocated (--event). No
   * @introduceDomain: dom0 is the master domain, known from the start.
   */
  introduceDom0(port: number): number {
    const d = this.domains.get(0);
    assert(d !== undefined && d.conn === 0, 'dom0 is introduced once, before it has a ring');
    d.port = port;
    d.conn = this.addConnection(asDomId(0), true, 'domain');
    this.domainEpoch++;
    return d.conn;
  }

  /** The connection serving an introduced domain, if any. */
  domainConnection(domid: number): number | undefined {
    const d = this.domains.get(domid);
    return d?.introduced && d.conn !== 0 ? d.conn : undefined;
  }

  /** A socket or ring transport went away: forget the connection (not the domain). */
  disconnect(connId: number): void {
    const c = this.connections.get(connId);
    if (!c) return;
    this.metaChanges++;
    this.dropLiveUpdateOf(connId);
    this.dropConnectionState(c);
    c.closed = true;
    this.connections.delete(connId);
  }

  /**
   * Forgets a connection's watches and transactions without ending it (what XS_RESET_WATCHES
   * does): a guest-directory client that went away leaves nothing behind for the next one.
   */
  resetConnection(connId: number): void {
    const c = this.connections.get(connId);
    if (c) this.dropConnectionState(c);
  }

  // ------------------------------------------------------------------ memory quota, rate limits

  /** Where domain_chk_quota() and the rate limiter log (C: syslog). */
  syslog: (level: SyslogLevel, text: string) => void = () => undefined;
  /** Milliseconds (C's CLOCK_MONOTONIC). */
  readonly clockMs: () => number;
  readonly memoryQuota: MemoryQuota;
  /** C 4.17's write-rate limiter (profile c; oxenstored has none). */
  readonly wrl: WriteRateLimit | undefined;
  /** The seed's per-domain request rate (option; off by default). */
  readonly seedRate: SeedRateLimit | undefined;
  /** oxenstored's transaction history, for the judge of a failed replay (profile ocaml). */
  readonly history: TransactionHistory | undefined;

  /** The connection of a domain, if introduced and connected. */
  private connOfDomain(domid: number): Connection | undefined {
    const d = this.domains.get(domid);
    return d?.conn !== undefined && d.conn !== 0 ? this.connections.get(d.conn) : undefined;
  }

  /**
   * C's domain->memory: the node records the domain owns (with their paths), its connection's
   * watches (path and token), its open transactions' node copies and its queued output.
   */
  domainMemory(domid: number): number {
    let m = this.store.memoryOf(domid);
    const c = this.connOfDomain(domid);
    if (c !== undefined) {
      for (const w of c.watches) m += w.node.length + w.token.length;
      for (const t of c.transactions.values()) m += t.memory;
      m += c.queuedMemory;
    }
    return m;
  }

  /** Whether the memory quota applies to a domain: unprivileged, known (domid_is_unprivileged). */
  private memoryChecked(domid: number): boolean {
    if (!this.b.memoryQuota || domid === 0) return false;
    if (!this.domains.has(domid)) return false;
    return !(this.connOfDomain(domid)?.privileged ?? false);
  }

  /** domain_memory_add_chk(): true if adding `mem` bytes would reach the hard quota. */
  private overMemory(domid: number, mem: number, base = this.domainMemory(domid)): boolean {
    if (!this.memoryChecked(domid)) return false;
    return this.memoryQuota.check(domid, base + mem);
  }

  /**
   * The transport queues a message for a connection (send_reply / send_event). A reply is always
   * charged; a watch event that would put an unprivileged domain at its hard memory quota is
   * dropped (XSA-326: a guest that does not read its events cannot make the daemon hoard them).
   * Returns whether the message is queued.
   */
  outputQueued(connId: number, msg: XsMessage): boolean {
    const c = this.connections.get(connId);
    if (c === undefined) return true;
    const pending = this.tracksDuplicate(msg);
    // send_event(): an event identical to one still queued is dropped before its memory counts.
    if (pending && !c.pendingEvents.add(msg.payload)) return false;
    if (c.kind !== 'domain' || !this.b.memoryQuota) return true;
    const mem = msg.payload.length + XS_BUFFERED_HDR;
    if (msg.type === T.XS_WATCH_EVENT) {
      if (this.overMemory(c.domid, mem)) {
        if (pending) c.pendingEvents.remove(msg.payload);
        return false;
      }
    } else if (this.memoryChecked(c.domid)) {
      // A reply is charged whatever the quota says (handle() refused the long ones already);
      // the check still logs a crossing.
      this.memoryQuota.check(c.domid, this.domainMemory(c.domid) + mem);
    }
    c.queuedMemory += mem;
    return true;
  }

  /**
   * What a transport keeps of a message outputQueued() took, to report it with outputDone(): the
   * payload of a watch event the duplicate check tracks, else only the payload's length.
   */
  outputRecord(msg: XsMessage): Uint8Array | number {
    return this.tracksDuplicate(msg) ? msg.payload : msg.payload.length;
  }

  /** A message outputQueued() took is completely sent, dropped (watch-event timeout) or discarded with the queue. */
  outputDone(connId: number, record: Uint8Array | number): void {
    const c = this.connections.get(connId);
    if (c === undefined) return;
    if (typeof record !== 'number') c.pendingEvents.remove(record);
    if (c.kind !== 'domain' || !this.b.memoryQuota) return;
    c.queuedMemory -= (typeof record === 'number' ? record : record.length) + XS_BUFFERED_HDR;
    assert(c.queuedMemory >= 0, `queued memory of connection ${connId} below zero`);
  }

  /** C merges identical queued watch events; special events (@...) are never merged. */
  private tracksDuplicate(msg: { readonly type: T; readonly payload: Uint8Array }): boolean {
    return this.b.dropDuplicateEvents && msg.type === T.XS_WATCH_EVENT && msg.payload[0] !== 0x40;
  }

  /**
   * domain_can_read() beyond the outstanding-request quota: 0 if the daemon may read a request
   * from this connection now; Infinity while the domain is at its hard memory quota (until its
   * memory drops or the quota rises); else the milliseconds until the write-rate limiter or the
   * seed's limit lets it read again.
   */
  readBlockedFor(connId: number): number {
    const c = this.connections.get(connId);
    if (c === undefined || c.privileged || c.kind !== 'domain') return 0;
    let wait = this.wrl?.blockedFor(c.domid) ?? 0;
    if (this.seedRate) wait = Math.max(wait, this.seedRate.blockedFor(c.domid));
    if (wait === 0 && this.memoryChecked(c.domid) && this.quotas.memory > 0
      && this.domainMemory(c.domid) >= this.quotas.memory) return Infinity;
    return wait;
  }

  /** wrl_domain_destroy() and the rest of a domain's limit state. */
  private forgetDomainLimits(domid: number): void {
    this.wrl?.domainDestroy(domid);
    this.seedRate?.forget(domid);
    this.memoryQuota.forget(domid);
  }

  private openTransactions(): number {
    let n = 0;
    for (const c of this.connections.values()) n += c.transactions.size;
    return n;
  }

  /** wrl_apply_debit_direct() for `n` nodes written outside a transaction. */
  private wrlDebit(conn: Connection, n: number): void {
    if (this.wrl === undefined || conn.privileged || conn.kind !== 'domain') return;
    this.wrl.ntransactions = this.openTransactions();
    for (let i = 0; i < n; i++) this.wrl.debitDirect(conn.domid);
  }

  /**
   * do_tdb_write()'s charge for writing node records in C's order (bottom up, the existing
   * parent last): each step moves the old record's bytes off its owner unchecked, then adds the
   * new record to its owner, which must stay below the hard quota (else EIO, and nothing is
   * written). Inside a transaction the records are the transaction's copies, charged to the
   * connection's domain with the transaction's key prefix.
   */
  private chargeRecords(ctx: RequestContext, steps: readonly { path: string; old?: { owner: number; bytes: number }; owner: number; bytes: number }[]): void {
    if (!this.b.memoryQuota) return;
    const running = new Map<number, number>();
    const total = (d: number): number => running.get(d) ?? this.domainMemory(d);
    const tx = ctx.tx;
    for (const st of steps) {
      if (tx !== undefined) {
        const d = ctx.conn.domid;
        const key = st.path.length + tx.keyPrefix.length;
        const before = tx.charged.get(st.path);
        const add = st.bytes - st.path.length + key;
        const base = total(d) - (before ?? 0);
        if (this.overMemory(d, add, base)) {
          tx.failed = true;
          fail('EIO');
        }
        running.set(d, base + add);
        continue;
      }
      if (st.old) running.set(st.old.owner, total(st.old.owner) - st.old.bytes);
      const base = total(st.owner);
      if (this.overMemory(st.owner, st.bytes, base)) fail('EIO');
      running.set(st.owner, base + st.bytes);
    }
    if (tx !== undefined) for (const st of steps) tx.charge(st.path, st.bytes + tx.keyPrefix.length);
  }

  /** A node's charge as it is in `db` (record and path). */
  private recordOf(db: Db, path: string, node: NodeData, value = node.value, perms = node.perms, extraChild = ''): number {
    let kids = extraChild === '' ? 0 : extraChild.length + 1;
    for (const k of db.children(path)) kids += k.length + 1;
    return nodeRecordSize(value, perms, []) + kids + path.length;
  }

  private dropConnectionState(c: Connection): void {
    this.metaChanges++;
    c.watches.length = 0;
    for (const t of c.transactions.values()) t.close();
    c.transactions.clear();
    this.delayed.delete(c.id);
  }

  // ------------------------------------------------------------------ live update (lu.ts)

  /** Seconds (C's time(NULL)). */
  readonly clock: () => number;
  /** The live-update session (lu_status), from `-f` until the switch or an abort. */
  lu: LiveUpdate | undefined;
  /** The `-s` request waiting for the transactions to end (do_lu_start's delayed request). */
  luStart: LuStart | undefined;
  /**
   * Requests held while a live update is pending (delay_request): a TRANSACTION_START from a
   * connection with none open, and, once an unprivileged connection has one held, everything
   * after it (C stalls that connection: it reads nothing more). Arrival order per connection.
   */
  readonly delayed = new Map<number, XsMessage[]>();

  /** The session goes with its connection (lu_status is that connection's talloc child). */
  private dropLiveUpdateOf(connId: number): void {
    if (this.lu?.conn === connId) this.lu = undefined;
    if (this.luStart?.conn === connId) this.luStart = undefined;
  }

  /** Whether the request is held back until the live update happens or is aborted. */
  private delayRequest(conn: Connection, msg: XsMessage): boolean {
    if (this.lu === undefined) return false;
    const held = this.delayed.get(conn.id);
    // A stalled connection is not read: what it sends waits behind what is held.
    if (held !== undefined && !conn.privileged) {
      held.push(msg);
      return true;
    }
    if (msg.type !== T.XS_TRANSACTION_START || conn.transactions.size !== 0) return false;
    if (held !== undefined) held.push(msg);
    else this.delayed.set(conn.id, [msg]);
    return true;
  }

  /**
   * Handles the requests held for a live update that is no longer pending (aborted, failed, or
   * this is the new instance that read them from the stream), in arrival order per connection.
   */
  runDelayed(): Outcome {
    this.metaChanges++;
    const deliveries: Delivery[] = [];
    const closed: number[] = [];
    while (this.lu === undefined && this.delayed.size !== 0) {
      const [connId, msgs] = this.delayed.entries().next().value as [number, XsMessage[]];
      this.delayed.delete(connId);
      for (const m of msgs) {
        const o = this.handle(connId, m);
        for (const d of o.deliveries) deliveries.push(d);
        for (const c of o.closed) closed.push(c);
      }
    }
    return { deliveries, closed };
  }

  /** A connection's record for the state stream as a new instance re-creates it (lu.ts). */
  restoreConnection(id: number, spec: { kind: 'socket' } | { kind: 'ring'; domid: number; port: number; target: number | undefined }): void {
    assert(id > 0, 'connection ids are non-zero');
    if (spec.kind === 'socket') {
      this.addConnection(asDomId(0), true, 'socket', id);
      return;
    }
    let d = this.domains.get(spec.domid);
    if (d === undefined) {
      d = { domid: asDomId(spec.domid), generation: 0, introduced: false, conn: undefined, mfn: 0, port: 0, shutdownReported: false };
      this.domains.set(spec.domid, d);
      this.wrl?.domainNew(spec.domid);
    }
    // introduce_domain(restore): the ring is the transport's; no @introduceDomain.
    d.introduced = true;
    d.port = spec.port;
    // Privileged by its domid, as at introduction: dom0's ring (a xenstore domain's daemon) is.
    d.conn = this.addConnection(asDomId(spec.domid), spec.domid === 0, 'domain', id);
    this.domainEpoch++;
    if (spec.target !== undefined) {
      const c = this.connections.get(id)!;
      c.target = asDomId(spec.target);
      const t = this.domains.get(spec.target);
      if (t?.conn !== undefined) {
        const refs = this.talloc.get(t.conn) ?? [];
        refs.unshift(id);
        this.talloc.set(t.conn, refs);
      }
    }
  }

  // ------------------------------------------------------------------ requests

  /** Handles one request from a connection; returns everything to send, in order. */
  handle(connId: number, msg: XsMessage): Outcome {
    const conn = this.connections.get(connId);
    // Fresh per request; an empty one is reused (none of these leaves handle() but as a copy).
    if (this.out.length !== 0) this.out = [];
    if (this.selfEvents.length !== 0) this.selfEvents = [];
    if (this.closing.length !== 0) this.closing = [];
    if (this.unsent.size !== 0) this.unsent.clear();
    if (!conn) return { deliveries: [], closed: [] };
    if (this.seedRate && !conn.privileged && conn.kind === 'domain') this.seedRate.take(conn.domid);
    if (this.delayRequest(conn, msg)) return { deliveries: [], closed: NONE_CLOSED };
    this.current = conn;
    const reply = this.dispatch(conn, msg);
    // send_reply(): a reply longer than its default buffer is charged with the quota checked; at
    // the quota the answer is ENOMEM instead (short replies, errors included, always go).
    if (reply.msg.type !== T.XS_ERROR && reply.msg.payload.length > DEFAULT_BUFFER_SIZE && conn.kind === 'domain'
      && this.overMemory(conn.domid, reply.msg.payload.length + XS_BUFFERED_HDR)) {
      reply.msg = { ...reply.msg, type: T.XS_ERROR, payload: enc('ENOMEM\0') };
    }
    if (this.heldBack) {
      // The request waits (live-update -s): its reply comes later, or from the new instance.
      this.heldBack = false;
      this.current = undefined;
      return { deliveries: [], closed: NONE_CLOSED };
    }
    const deliveries: Delivery[] = [];
    const ownFirst = this.b.ownEventsBeforeReply || reply.eventsFirst;
    if (ownFirst) for (const m of this.selfEvents) deliveries.push({ conn: connId, msg: m });
    deliveries.push({ conn: connId, msg: reply.msg });
    if (reply.afterReply) deliveries.push({ conn: connId, msg: reply.afterReply });
    if (!ownFirst) for (const m of this.selfEvents) deliveries.push({ conn: connId, msg: m });
    for (const d of this.out) deliveries.push(d);
    this.current = undefined;
    if (this.deferredRelease !== undefined) {
      const d = this.deferredRelease;
      this.deferredRelease = undefined;
      this.out = [];
      // The main loop's own talloc_free() of the connection drops a reference, or frees it.
      if (!this.dropReference(d)) this.destroyDomain(d);
      for (const x of this.out) deliveries.push(x);
    }
    const closed = this.closing;
    if (closed.length !== 0) this.closing = [];
    return { deliveries, closed: closed.length === 0 ? NONE_CLOSED : closed };
  }

  private dispatch(conn: Connection, msg: XsMessage): { msg: XsMessage; eventsFirst: boolean; afterReply?: XsMessage } {
    this.history?.tick();
    // oxenstored: a change outside a transaction goes into the history (record_commit), whatever
    // its answer; only a guest's is kept, and only while a transaction could be judged against it.
    if (this.history && msg.tx_id === 0 && WRITES.has(msg.type)) {
      if (conn.kind !== 'domain' || conn.domid === 0 || !this.history.wanted()) {
        this.history.count();
        return this.dispatchRequest(conn, msg);
      }
      const before = this.history.snapshot();
      const out = this.dispatchRequest(conn, msg);
      this.history.push(conn, before);
      return out;
    }
    return this.dispatchRequest(conn, msg);
  }

  private dispatchRequest(conn: Connection, msg: XsMessage): { msg: XsMessage; eventsFirst: boolean; afterReply?: XsMessage } {
    if (this.b.recordEveryRequestInTx && msg.tx_id !== 0 && msg.type !== T.XS_WATCH && msg.type !== T.XS_UNWATCH) {
      return this.dispatchInTxOcaml(conn, msg);
    }
    const entry = msg.type < this.table.length ? this.table[msg.type] : undefined;
    if (entry === undefined) return this.errorReply(msg, 'ENOSYS', false);
    const [handler, flags] = entry;
    if (flags & Flag.PRIV && !conn.privileged) {
      // oxenstored answers CONTROL (its DEBUG) from anyone.
      if (!(this.b.controlIsDebug && msg.type === T.XS_CONTROL)) return this.errorReply(msg, 'EACCES', false);
    }
    let tx: Transaction | undefined;
    if (!(flags & Flag.NOTID) && msg.tx_id !== 0) {
      tx = conn.transactions.get(msg.tx_id);
      if (tx === undefined) return this.errorReply(msg, this.b.unknownTxError, false);
    }
    return this.finish(msg, handler, { conn, msg, tx, db: tx ?? this.db });
  }

  /**
   * oxenstored, any request but WATCH/UNWATCH with a tx_id: the transaction is looked up first
   * (EIO), then the request runs and is recorded with its reply, whatever its type, for a replay.
   */
  private dispatchInTxOcaml(conn: Connection, msg: XsMessage): { msg: XsMessage; eventsFirst: boolean; afterReply?: XsMessage } {
    const tx = conn.transactions.get(msg.tx_id);
    if (tx === undefined) return this.errorReply(msg, 'EIO');
    if (!conn.privileged && this.quotas.transactionNodes > 0 && tx.ops.length >= this.quotas.transactionNodes) {
      tx.failed = true;
      return this.errorReply(msg, 'EQUOTA');
    }
    const entry = msg.type < this.table.length ? this.table[msg.type] : undefined;
    let out: { msg: XsMessage; eventsFirst: boolean; afterReply?: XsMessage };
    if (entry === undefined) out = this.errorReply(msg, 'ENOSYS');
    else if (entry[1] & Flag.PRIV && !conn.privileged && msg.type !== T.XS_CONTROL) out = this.errorReply(msg, 'EACCES');
    else out = this.finish(msg, entry[0], { conn, msg, tx, db: tx });
    if (!RECORDED.has(msg.type)) {
      tx.ops.push({ type: msg.type, payload: msg.payload, reply: out.msg.type === T.XS_ERROR ? dec(out.msg.payload).slice(0, -1) : '' });
    }
    return out;
  }

  private finish(msg: XsMessage, handler: Handler, ctx: RequestContext): { msg: XsMessage; eventsFirst: boolean; afterReply?: XsMessage } {
    const { tx } = ctx;
    // oxenstored keeps a transaction's operations and their replies, to replay them at commit.
    const record = this.b.recordEveryRequestInTx && tx !== undefined && RECORDED.has(msg.type);
    const code = this.run(handler, ctx);
    if (record && tx) tx.ops.push({ type: msg.type, payload: msg.payload, reply: code ?? dec(ctx.reply ?? OK) });
    if (code !== undefined) return this.errorReply(msg, code);
    let payload = ctx.reply ?? OK;
    let type = msg.type;
    // oxenstored decides at the transport (daemon.ts, packetOf).
    if (payload.length > XENSTORE_PAYLOAD_MAX && this.b.longMessages === 'core') {
      payload = enc('E2BIG\0');
      type = T.XS_ERROR;
    }
    return {
      msg: { type, req_id: msg.req_id, tx_id: this.replyTxId(msg), payload },
      eventsFirst: ctx.eventsFirst ?? false,
      afterReply: ctx.afterReply,
    };
  }

  /** Runs a handler; returns the error code it failed with, dropping what it had queued. */
  private run(handler: Handler, ctx: RequestContext): string | undefined {
    const mark = this.out.length;
    const selfMark = this.selfEvents.length;
    const txMark = ctx.tx?.events.length ?? 0;
    try {
      handler(ctx);
      return undefined;
    } catch (e) {
      this.out.length = mark;
      this.selfEvents.length = selfMark;
      if (ctx.tx) ctx.tx.events.length = txMark;
      if (e instanceof XsFail) {
        if (!e.setsErrno) this.errnoKept = true;
        return e.code;
      }
      if (e instanceof TxQuotaError) return this.b.txQuotaError;
      if (e instanceof TxCorruptError) return 'EIO';
      // A bug in the daemon must not take the daemon down: answer as oxenstored does.
      return 'EIO';
    }
  }

  /** The reply's tx_id: the request's, but oxenstored answers WATCH and UNWATCH with 0. */
  private replyTxId(msg: XsMessage): number {
    if (this.b.watchReplyTxZero && (msg.type === T.XS_WATCH || msg.type === T.XS_UNWATCH)) return 0;
    return msg.tx_id;
  }

  /**
   * C's errno as a stale-errno answer shows it: most failures leave theirs, but checks made
   * before the handler runs and errors returned as values (errnoKept) leave it as it was.
   */
  private errorReply(msg: XsMessage, code: string, setsErrno = true): { msg: XsMessage; eventsFirst: boolean } {
    if (code !== 'EQUOTA' && setsErrno && !this.errnoKept) this.errno = code as XsError;
    this.errnoKept = false;
    return {
      msg: { type: T.XS_ERROR, req_id: msg.req_id, tx_id: this.replyTxId(msg), payload: enc(`${code}\0`) },
      eventsFirst: false,
    };
  }

  private buildTable(): (readonly [Handler, Flag] | undefined)[] {
    const t: (readonly [Handler, Flag] | undefined)[] = [];
    t[T.XS_CONTROL] = [(c) => this.doControl(c), Flag.PRIV];
    t[T.XS_DIRECTORY] = [(c) => this.doDirectory(c), Flag.NONE];
    t[T.XS_READ] = [(c) => this.doRead(c), Flag.NONE];
    t[T.XS_GET_PERMS] = [(c) => this.doGetPerms(c), Flag.NONE];
    t[T.XS_WATCH] = [(c) => this.doWatch(c), Flag.NOTID];
    t[T.XS_UNWATCH] = [(c) => this.doUnwatch(c), Flag.NOTID];
    t[T.XS_TRANSACTION_START] = [(c) => this.doTransactionStart(c), Flag.NONE];
    t[T.XS_TRANSACTION_END] = [(c) => this.doTransactionEnd(c), Flag.NONE];
    t[T.XS_INTRODUCE] = [(c) => this.doIntroduce(c), Flag.PRIV];
    t[T.XS_RELEASE] = [(c) => this.doRelease(c), Flag.PRIV];
    t[T.XS_GET_DOMAIN_PATH] = [(c) => this.doGetDomainPath(c), Flag.NONE];
    t[T.XS_WRITE] = [(c) => this.doWrite(c), Flag.NONE];
    t[T.XS_MKDIR] = [(c) => this.doMkdir(c), Flag.NONE];
    t[T.XS_RM] = [(c) => this.doRm(c), Flag.NONE];
    t[T.XS_SET_PERMS] = [(c) => this.doSetPerms(c), Flag.NONE];
    t[T.XS_IS_DOMAIN_INTRODUCED] = [(c) => this.doIsDomainIntroduced(c), Flag.PRIV];
    t[T.XS_RESUME] = [(c) => this.doResume(c), Flag.PRIV];
    t[T.XS_SET_TARGET] = [(c) => this.doSetTarget(c), Flag.PRIV];
    t[T.XS_RESET_WATCHES] = [(c) => this.doResetWatches(c), Flag.NONE];
    if (this.b.directoryPart) t[T.XS_DIRECTORY_PART] = [(c) => this.doDirectoryPart(c), Flag.NONE];
    return t;
  }

  // ------------------------------------------------------------------ helpers

  /**
   * Stale-ACL rule: an entry counts only for a domain known since before the node last changed.
   * A node created inside an oxenstored-style transaction has no generation (NO_GENERATION: every
   * known domain passes); C stamps every change in a transaction with the next count.
   */
  readonly staleAcl: EntryValidator = {
    entryValid: (e: PermEntry, gen: number): boolean => {
      const d = this.domains.get(e.id);
      if (this.faults.aclByDomidOnly) return d !== undefined;
      return d !== undefined && (gen === NO_GENERATION || d.generation <= gen);
    },
  };

  /** For ACLs seen without their node (watch filtering): the domain must still be known. */
  private readonly knownDomain: EntryValidator = {
    entryValid: (e: PermEntry): boolean => this.domains.has(e.id),
  };

  private perm(conn: Connection, node: AclAt): number {
    return permForConn(conn, node.perms, node.gen, this.b.staleAclByGeneration ? this.staleAcl : undefined, this.b.aclPerIdentity);
  }

  private permsOnly(conn: Connection, perms: Perms): number {
    return permForConn(conn, perms, 0, this.b.staleAclByGeneration ? this.knownDomain : undefined, this.b.aclPerIdentity);
  }

  /** onearg(): exactly one NUL-terminated string filling the payload, else `err`. */
  private onearg(msg: XsMessage, err: XsError = 'EINVAL'): string {
    const p = msg.payload;
    const nul = p.indexOf(0);
    if (nul < 0 || nul !== p.length - 1) fail(err);
    return dec(p, nul);
  }

  /**
   * The path argument of READ, DIRECTORY, GET_PERMS, MKDIR and RM. C xenstored answers a malformed
   * one with whatever errno was left over (and may abort); xensim fixes ENOENT, which keeps the
   * reference transcript, and oxenstored's EINVAL in profile ocaml.
   */
  private patharg(msg: XsMessage): string {
    return this.onearg(msg, this.b.malformedPathError as XsError);
  }

  /** oxenstored's `domid :: _` match: the text up to the first NUL, or all of it. */
  private firstArg(msg: XsMessage): string {
    const nul = msg.payload.indexOf(0);
    return dec(msg.payload, nul < 0 ? msg.payload.length : nul);
  }

  /** Canonical, validated name (EINVAL otherwise); `pathMax` 0 checks no length. */
  private name(conn: Connection, raw: string, allowSpecial = false, pathMax = this.quotas.pathMax): string {
    const name = canonicalize(conn.home, raw);
    // oxenstored keeps @introduceDomain/@releaseDomain as real nodes at the top of the tree: any
    // path starting with '@' is one name (Store.Path.of_string), whatever bytes follow - '@x/y' is
    // a root child, not y under @x. A '/' in it is kept as NUL, which no path can carry, so the
    // name cannot meet a nested path; atNameShown() turns it back.
    if (this.b.specialPathsAreNodes && isSpecial(name) && !allowSpecial) {
      if (pathMax > 0 && name.length > pathMax) fail('EINVAL');
      return `/${name.replaceAll('/', '\0')}`;
    }
    // 4.17 applies path-max to every connection, dom0 included; so does oxenstored.
    if (!isValidNodename(name, allowSpecial, pathMax)) fail('EINVAL');
    return name;
  }

  /**
   * get_node(): the node if the connection has `want` on it. Otherwise the error C gives: EACCES
   * when denied; ENOENT when missing, unless the nearest existing ancestor grants none of `want`
   * (errno_from_parents: existence is not leaked), which is EACCES.
   */
  private getNode(ctx: RequestContext, name: string, want: number): NodeData {
    const node = ctx.db.read(name);
    if (node !== undefined) {
      if ((this.perm(ctx.conn, node) & want) === want) return node;
      // C still asks the parents (errno_from_parents), which a transaction records as read.
      if (this.b.errnoFromParents && name !== '/') ctx.db.read(parentOf(name));
      return fail('EACCES');
    }
    this.missingForCreate(ctx, name, want);
    return fail('ENOENT');
  }

  private checkNodeSize(conn: Connection, value: string, perms: Perms, children: readonly string[], tx?: Transaction): void {
    if (this.b.nodeSizeRule === 'value-first') {
      if (this.quotas.nodeSize > 0 && value.length > this.quotas.nodeSize) fail('E2BIG');
      return;
    }
    if (conn.privileged) return;
    if (nodeRecordSize(value, perms, children) >= this.quotas.nodeSize) {
      // A failed node write inside a transaction dooms it (commit answers ENOMEM).
      if (tx) tx.failed = true;
      fail('ENOSPC');
    }
  }

  /** Marks ACL entries no longer honoured as ignored before a node is rewritten (C keeps them so). */
  private settle(node: NodeData): Perms {
    return this.b.staleAclByGeneration ? this.settlePerms(node.perms, node.gen) : node.perms;
  }

  /** The ACL as C keeps it once read: entries no longer honoured flagged ignored (domain_adjust_node_perms). */
  settlePerms(perms: Perms, gen: number): Perms {
    if (perms.length < 2) return perms;
    let changed = false;
    const out = perms.map((e, i) => {
      if (i === 0 || e.perms & XsPerm.XS_PERM_IGNORE || this.staleAcl.entryValid(e, gen)) return e;
      changed = true;
      return { perms: e.perms | XsPerm.XS_PERM_IGNORE, id: e.id };
    });
    return changed ? internPerms(out) : perms;
  }

  /** construct_node() + create_node(): creates name and missing ancestors with inherited ACLs. */
  private createNode(ctx: RequestContext, name: string, value: string): void {
    const { conn, db } = ctx;
    // read_node() of the missing node said ENOENT on the way.
    this.errno = 'ENOENT';
    const missing: string[] = [name];
    let parentName = parentOf(name);
    let parent = db.read(parentName);
    while (parent === undefined) {
      missing.push(parentName);
      parentName = parentOf(parentName);
      parent = db.read(parentName);
    }
    const quota = this.quotas.nodes;
    if (this.b.entryQuota) return this.createNodeOcaml(ctx, missing, parentName, parent, value);
    if (!(this.perm(conn, parent) & XsPerm.XS_PERM_WRITE)) fail('EACCES');
    let perms = this.settle(parent);
    if (!conn.privileged && this.b.creatorOwnsNewNode) {
      perms = internPerms([{ perms: perms[0].perms, id: conn.domid }, ...perms.slice(1)]);
    }
    // Check everything first, so a failure leaves nothing half-created (XSA-414/415).
    if (!conn.privileged && (quota > 0 || this.b.nodeQuotaRule === 'creator-enospc')) {
      if (ctx.tx) {
        // Inside a transaction 4.17 compares the committed count; the commit checks the result.
        if (this.store.ownedBy(conn.domid) >= quota) fail('ENOSPC');
      } else if (this.store.ownedBy(conn.domid) + missing.length > quota) {
        fail('ENOSPC');
      }
    }
    // ta_node_created(): construct_node() got this far (a size refusal comes after).
    if (ctx.tx) ctx.tx.nodeCreated = true;
    const top = missing[missing.length - 1];
    this.checkNodeSize(conn, parent.value, parent.perms, [...db.children(parentName), basename(top)], ctx.tx);
    for (let i = missing.length - 1; i >= 0; i--) {
      const kids = i > 0 ? [basename(missing[i - 1])] : [];
      this.checkNodeSize(conn, i === 0 ? value : '', perms, kids, ctx.tx);
    }
    // C writes bottom up: the new node, its new ancestors, then the existing parent.
    if (this.charges(ctx, perms[0].id, parent.perms[0].id)) this.chargeCreate(ctx, missing, value, perms, parentName, parent);
    for (let i = missing.length - 1; i >= 0; i--) db.create(missing[i], i === 0 ? value : '', perms);
    if (!ctx.tx) this.wrlDebit(conn, missing.length + 1);
    ctx.tx?.lowWrite(parentName);
  }

  /**
   * oxenstored: create_implicit_path's MKDIRs make the missing ancestors one at a time from the
   * top, then Store.write or Store.mkdir the node; each new node inherits its parent's ACL. Before
   * each one the parent owner's entry quota is checked, before the permission, and a refusal
   * half-way keeps the ancestors made so far (no event: those MKDIRs are silent).
   */
  private createNodeOcaml(ctx: RequestContext, missing: readonly string[], parentName: string, parent: NodeData, value: string): void {
    const { conn, db } = ctx;
    const perms = this.settle(parent);
    const owner = perms[0].id;
    const entries = this.entries(ctx.tx);
    const quota = this.quotas.nodes;
    for (let i = missing.length - 1; i >= 0; i--) {
      // Quota.check: only a domain (id > 0) with an entry at or over quota-maxentity is refused.
      if (!conn.privileged && quota > 0 && owner > 0 && (entries.get(owner) ?? 0) >= quota) fail('EQUOTA');
      // Every node on the way inherits the same ACL: the first permission check decides.
      if (i === missing.length - 1 && !(this.perm(conn, parent) & XsPerm.XS_PERM_WRITE)) fail('EACCES');
      db.create(missing[i], i === 0 ? value : '', perms);
      entries.add(owner, 1);
      ctx.tx?.lowWrite(i === missing.length - 1 ? parentName : missing[i + 1]);
    }
  }

  /**
   * Whether a write must be charged here: inside an unprivileged connection's transaction (its
   * copies count for it), or to an owner the quota applies to. (Computing a record's size walks
   * its children, which the privileged toolstack's writes need not pay for.)
   */
  private charges(ctx: RequestContext, ...owners: number[]): boolean {
    if (!this.b.memoryQuota) return false;
    if (ctx.tx) return !ctx.conn.privileged;
    return owners.some((o) => this.memoryChecked(o));
  }

  private chargeCreate(ctx: RequestContext, missing: readonly string[], value: string, perms: Perms, parentName: string, parent: NodeData): void {
    const top = missing[missing.length - 1];
    const steps: { path: string; old?: { owner: number; bytes: number }; owner: number; bytes: number }[] = [];
    for (let i = 0; i < missing.length; i++) {
      const kids = i > 0 ? [basename(missing[i - 1])] : [];
      steps.push({ path: missing[i], owner: perms[0].id, bytes: nodeRecordSize(i === 0 ? value : '', perms, kids) + missing[i].length });
    }
    const parentOld = this.recordOf(ctx.db, parentName, parent);
    steps.push({
      path: parentName, old: { owner: parent.perms[0].id, bytes: parentOld },
      owner: parent.perms[0].id, bytes: parentOld + basename(top).length + 1,
    });
    this.chargeRecords(ctx, steps);
  }

  // ------------------------------------------------------------------ watch events

  private eventFor(conn: Connection, w: Watch, name: string): XsMessage | undefined {
    let path = name;
    if (w.relativeTo !== undefined && name.startsWith(`${w.relativeTo}/`)) path = name.slice(w.relativeTo.length + 1);
    // C's duplicate check, asked before the event is built: one that queueEvent() or the
    // transport would drop costs no message (a guest that never reads, with a 4 KB token).
    if (this.b.dropDuplicateEvents && path[0] !== '@' && !this.silent
      && (conn.pendingEvents.has(path, w.token) || this.unsent.get(conn.id)?.has(path, w.token))) return undefined;
    const payload = enc(`${path}\0${w.token}\0`);
    // C drops an event that cannot fit a message; oxenstored leaves it to the transport.
    if (payload.length > XENSTORE_PAYLOAD_MAX && this.b.longMessages === 'core') return undefined;
    return { type: T.XS_WATCH_EVENT, req_id: 0, tx_id: 0, payload };
  }

  private queueEvent(conn: Connection, msg: XsMessage): void {
    if (this.silent) return;
    // C drops an event identical to one still queued and unsent for that connection (XSA-326);
    // eventFor() asked already, so this only records it for the events after it in this request.
    if (this.tracksDuplicate(msg)) {
      let u = this.unsent.get(conn.id);
      if (u === undefined) this.unsent.set(conn.id, (u = new PendingEvents()));
      assert(u.add(msg.payload), 'eventFor() let through an event identical to one unsent');
    }
    if (conn === this.current) this.selfEvents.push(msg);
    else this.out.push({ conn: conn.id, msg });
  }

  /**
   * fire_watches(): an event for every watch on `name` (or above it, unless `exact`) of every
   * connection allowed to know. `perms` are the ACLs that qualify a reader (node, old node, parent).
   */
  private fire(ctx: RequestContext | undefined, name: string, exact: boolean, perms: AclAt[]): void {
    if (ctx?.tx) {
      ctx.tx.queueWatch(name, exact, perms);
      // oxenstored fires a commit's events from the transaction's own writes, as it saw them.
      if (this.b.commitRule === 'merge-replay') ctx.tx.events.push({ path: name, exact, perms });
      return;
    }
    try {
      this.fireNow(name, exact, perms);
    } catch (e) {
      if (!(e instanceof WatchPathError)) throw e;
      // The request was acknowledged before process_watch raised: process_packet's handler then
      // sends EIO with the same request id.
      if (ctx) ctx.afterReply = { type: T.XS_ERROR, req_id: ctx.msg.req_id, tx_id: 0, payload: enc('EIO\0') };
    }
  }

  /** `view`: the tree a special event's readers are judged in (oxenstored: the request's transaction's). */
  private fireNow(name: string, exact: boolean, perms: AclAt[], view: Db = this.db): void {
    if (name === '/' && this.b.rootEventFiresForNobody) return;
    let shown = name;
    if (name.startsWith('/@') && name.indexOf('/', 2) < 0 && this.b.specialPathsAreNodes) {
      // An '@' root child (profile ocaml), its name perhaps holding a '/'. oxenstored's event path is
      // "/" ^ the name, which fire_single_watch parses again as an ordinary path: one that does
      // not parse raises at the first watch it would fire (only a watch on / can match), and a
      // valid one finds its ACLs at the nested path it spells.
      if (this.silent) return;
      shown = atNameShown(name);
      if (!/^(\/[A-Za-z0-9_@-]+)+$/.test(shown)) {
        for (const c of this.connections.values()) {
          if (c.watches.some((w) => !isSpecial(w.node) && isChild(name, w.node))) throw new WatchPathError();
        }
        return;
      }
      if (shown !== name) {
        // The ACLs of the nested path it spells (the operation did not change those nodes).
        perms = treeAcls((q) => this.store.get(q), shown);
        // Perms.can_fire_watch: with no ACL found nobody hears it, dom0 included.
        if (perms.length === 0) return;
      }
    }
    const special = isSpecial(name);
    for (const c of this.connections.values()) {
      if (c.watches.length === 0) continue;
      if (!c.privileged) {
        if (special && this.b.specialWatchReadFromNodes) {
          // oxenstored looks the name up as /@name: the root's or that node's ACL lets a reader know.
          const acls = [view.peek('/'), view.peek(`/${name}`)].filter((n) => n !== undefined);
          if (!acls.some((n) => this.perm(c, n) & XsPerm.XS_PERM_READ)) continue;
        } else if (special) {
          const sp = this.special.get(name);
          if (sp === undefined || !(this.permsOnly(c, sp) & XsPerm.XS_PERM_READ)) continue;
        } else if (!perms.some((p) => this.perm(c, p) & XsPerm.XS_PERM_READ)) continue;
      }
      let matched = c.watches.filter((w) =>
        special === isSpecial(w.node) && (exact ? w.node === name : isChild(name, w.node)));
      // oxenstored keeps watches in a trie: fired from the root down, newest first per path.
      if (this.b.watchTrieOrder && matched.length > 1) {
        const at = new Map(c.watches.map((w, i) => [w, i]));
        matched = matched.sort((a, b) => triePathOrder(a.node, b.node) || at.get(b)! - at.get(a)!);
      }
      for (const w of matched) {
        const ev = this.eventFor(c, w, shown);
        if (ev) this.queueEvent(c, ev);
      }
    }
  }

  /**
   * ACLs that qualify a reader for an event on `name`: the node's and its parent's. Inside a
   * transaction the parent is left out (looking it up would record it as read and turn others'
   * changes to it into conflicts); the commit adds the committed parent's ACL.
   */
  private nodePerms(db: Db, name: string, node: NodeData | undefined): AclAt[] {
    const out: AclAt[] = [];
    if (node) out.push(node);
    if (name !== '/' && !(db instanceof Transaction)) {
      const parent = db.read(parentOf(name));
      if (parent) out.push(parent);
    }
    return out;
  }

  // ------------------------------------------------------------------ handlers: nodes

  private doRead(ctx: RequestContext): void {
    const name = this.name(ctx.conn, this.patharg(ctx.msg));
    ctx.reply = this.valueBytes(this.getNode(ctx, name, XsPerm.XS_PERM_READ).value);
    ctx.tx?.lowRead(name);
  }

  /**
   * A value's bytes for a READ reply. Short values recently read are kept encoded (reply payloads
   * are only ever copied out, as DIRECTORY's cached listings are), so a node read again and again
   * is not encoded again each time.
   */
  private valueBytes(value: string): Uint8Array {
    if (value.length > 256) return enc(value);
    let b = this.readCache.get(value);
    if (b === undefined) {
      if (this.readCache.size >= 256) this.readCache.clear();
      b = enc(value);
      this.readCache.set(value, b);
    }
    return b;
  }
  private readonly readCache = new Map<string, Uint8Array>();

  private sortedIfOcaml(kids: readonly string[]): readonly string[] {
    return this.b.sortedChildren ? [...kids].sort() : kids;
  }

  private doDirectory(ctx: RequestContext): void {
    const name = this.name(ctx.conn, this.patharg(ctx.msg));
    this.getNode(ctx, name, XsPerm.XS_PERM_READ);
    const node = ctx.tx === undefined ? this.store.get(name) : undefined;
    const cached = node && this.store.listings.get(node);
    if (cached !== undefined) {
      ctx.reply = cached;
      return;
    }
    let kids = ctx.db.children(name);
    // An '@' name holding a '/' is listed as it was written, in order of that spelling.
    if (name === '/' && this.b.specialPathsAreNodes) kids = kids.map(atNameShown);
    kids = this.sortedIfOcaml(kids);
    ctx.tx?.lowRead(name);
    ctx.reply = enc(kids.map((k) => `${k}\0`).join(''));
    if (node !== undefined) this.store.listings.set(node, ctx.reply);
  }

  private doDirectoryPart(ctx: RequestContext): void {
    // xs_count_strings() counts NULs: exactly two, wherever they are (bytes may follow the second).
    const p = ctx.msg.payload;
    const first = p.indexOf(0);
    const second = first < 0 ? -1 : p.indexOf(0, first + 1);
    if (second < 0 || p.indexOf(0, second + 1) >= 0) fail('EINVAL');
    const args = [dec(p, first), dec(p.subarray(first + 1, second))];
    const name = this.name(ctx.conn, args[0]);
    const node = this.getNode(ctx, name, XsPerm.XS_PERM_READ);
    const list = ctx.db.children(name).map((k) => `${k}\0`).join('');
    const off = atoi(args[1]) >>> 0;
    const gen = `${Math.max(node.gen, 0)}\0`;
    if (off >= list.length) {
      ctx.reply = enc(`${gen}\0`);
      return;
    }
    const maxlen = XENSTORE_PAYLOAD_MAX - gen.length - 1;
    let len = 0;
    let at = off;
    for (;;) {
      const end = list.indexOf('\0', at);
      const child = list.slice(at, end);
      if (len + child.length >= maxlen) break;
      len += child.length + 1;
      at = end + 1;
      if (off + len === list.length) break;
    }
    ctx.reply = enc(gen + list.slice(off, off + len) + (off + len === list.length ? '\0' : ''));
  }

  private doGetPerms(ctx: RequestContext): void {
    const raw = this.patharg(ctx.msg);
    // 4.17 C xenstored validates GET_PERMS paths as plain node names: @ names are EINVAL.
    if (isSpecial(raw) && !this.b.specialPathsAreNodes) fail('EINVAL');
    // oxenstored: @name is the real node /@name (name() maps it), with its own ACL.
    const name = this.name(ctx.conn, raw);
    const node = this.getNode(ctx, name, XsPerm.XS_PERM_READ);
    ctx.tx?.lowRead(name);
    // oxenstored prints an owner it invalidated (RELEASE of dom0 hits the root) with %u of -1;
    // C prints the unsigned id with %i into 12 bytes (r4294967295 reads r-1, r3000000000 reads
    // r-129496729).
    if (this.b.aclIdFormat === 'int32') {
      ctx.reply = enc(node.perms.map((e) => `${formatPerms([{ perms: e.perms, id: (e.id | 0) as DomId }])[0].slice(0, 11)}\0`).join(''));
      return;
    }
    ctx.reply = enc(formatPerms(node.perms).map((s) => `${s.replace(/^([nrwb])-1$/, '$19223372036854775807')}\0`).join(''));
  }

  private doWrite(ctx: RequestContext): void {
    const p = ctx.msg.payload;
    const nul = p.indexOf(0);
    if (nul < 0) fail('EINVAL');
    const name = this.name(ctx.conn, dec(p, nul));
    const value = dec(p.subarray(nul + 1));
    // oxenstored makes the missing parents first (create_implicit_path: their permission, no
    // event), then Store.write checks the value's size before the node's permission.
    if (this.b.nodeSizeRule === 'value-first' && this.quotas.nodeSize > 0 && value.length > this.quotas.nodeSize) {
      const parent = parentOf(name);
      if (ctx.db.read(parent) === undefined) this.createNode(ctx, parent, '');
      fail('E2BIG');
    }
    let node = ctx.db.read(name);
    if (node !== undefined) {
      node = this.getNode(ctx, name, XsPerm.XS_PERM_WRITE);
      this.checkNodeSize(ctx.conn, value, node.perms, ctx.db.children(name), ctx.tx);
      const settled = this.settle(node);
      if (this.charges(ctx, node.perms[0].id, settled[0].id)) {
        this.chargeRecords(ctx, [{
          path: name, old: { owner: node.perms[0].id, bytes: this.recordOf(ctx.db, name, node) },
          owner: settled[0].id, bytes: this.recordOf(ctx.db, name, node, value, settled),
        }]);
      }
      if (!ctx.tx) this.wrlDebit(ctx.conn, 1);
      if (settled !== node.perms) ctx.db.setPerms(name, settled);
      ctx.db.setValue(name, value);
      ctx.tx?.lowWrite(name);
    } else {
      this.missingForCreate(ctx, name);
      this.createNode(ctx, name, value);
    }
    if (ctx.tx) ctx.tx.wops++;
    this.fire(ctx, name, false, this.nodePerms(ctx.db, name, ctx.db.read(name)));
  }

  /**
   * For a missing node: EACCES unless its nearest existing ancestor grants some of `want` (C);
   * oxenstored says ENOENT regardless.
   */
  private missingForCreate(ctx: RequestContext, name: string, want: number = XsPerm.XS_PERM_WRITE): void {
    if (!this.b.errnoFromParents) return;
    let p = name;
    let anc: NodeData | undefined;
    do {
      p = parentOf(p);
      anc = ctx.db.read(p);
    } while (anc === undefined && p !== '/');
    if (anc === undefined || !(this.perm(ctx.conn, anc) & want)) fail('EACCES');
  }

  private doMkdir(ctx: RequestContext): void {
    const name = this.name(ctx.conn, this.patharg(ctx.msg));
    // oxenstored's path_mkdir returns the root untouched for `/`: OK for anyone, no event.
    // In a transaction it still counts as a write at / (so the commit may need a replay).
    if (this.b.mkdirRootNoop && name === '/') {
      if (ctx.tx) {
        ctx.tx.touchWrite('/');
        ctx.tx.lowWrite('/');
        ctx.tx.wops++;
      }
      return;
    }
    if (this.b.mkdirExistingUntracked) {
      const seen = ctx.db.peek(name);
      if (seen !== undefined) {
        if (!(this.perm(ctx.conn, seen) & XsPerm.XS_PERM_WRITE)) fail('EACCES');
        return;
      }
    }
    const node = ctx.db.read(name);
    if (node !== undefined) {
      this.getNode(ctx, name, XsPerm.XS_PERM_WRITE);
      return;
    }
    this.missingForCreate(ctx, name);
    this.createNode(ctx, name, '');
    if (ctx.tx) ctx.tx.wops++;
    this.fire(ctx, name, false, this.nodePerms(ctx.db, name, ctx.db.read(name)));
  }

  private doRm(ctx: RequestContext): void {
    const name = this.name(ctx.conn, this.patharg(ctx.msg));
    const node = ctx.db.read(name);
    if (node === undefined) {
      this.missingForCreate(ctx, name);
      // Missing leaf under an existing parent is fine; a missing parent is not.
      if (ctx.db.read(parentOf(name)) === undefined) fail('ENOENT');
      return;
    }
    this.getNode(ctx, name, XsPerm.XS_PERM_WRITE);
    if (name === '/') {
      if (!this.b.rmRootWipes) fail('EINVAL');
      // oxenstored empties the store; the event on `/` itself never fires (no ACL is found for
      // it), every watch below fires with its own path, in trie order.
      const removed: Removed[] = [];
      for (const k of [...ctx.db.children('/')]) removed.push(...ctx.db.remove(join('/', k)));
      // Store.rm takes an entry from the owner of every node it walked, the root it keeps included.
      if (this.b.entryQuota) {
        const entries = this.entries(ctx.tx);
        for (const r of removed) entries.add(r.node.perms[0].id, -1);
        entries.add(ctx.db.peek('/')!.perms[0].id, -1);
      }
      if (ctx.tx) {
        ctx.tx.lowWrite('/');
        ctx.tx.wops++;
      }
      // (Inside a transaction nothing fires: the commit replays the RM.)
      if (!ctx.tx) this.fireBelowOcaml('/', removed);
      return;
    }
    // rm_node() reads the parent first: inside a transaction the node may have been copied in
    // while someone else has since removed its parent (C: EINVAL).
    if (ctx.db.read(parentOf(name)) === undefined) fail('EINVAL');
    const before = this.store.size;
    this.removeSubtree(ctx, name);
    // Each node deleted and the parent rewritten is a write access (unchecked for memory).
    if (!ctx.tx) this.wrlDebit(ctx.conn, before - this.store.size + 1);
    if (ctx.tx) {
      ctx.tx.lowWrite(parentOf(name));
      ctx.tx.wops++;
    }
  }

  private removeSubtree(ctx: RequestContext, name: string): void {
    const removed = ctx.db.remove(name);
    if (this.b.entryQuota) {
      const entries = this.entries(ctx.tx);
      for (const r of removed) entries.add(r.node.perms[0].id, -1);
    }
    if (this.b.rmFiresWatchesBelow) {
      this.fireRemovedOcaml(ctx, name, removed);
      return;
    }
    // Watches on the removed node or above it fire with its path; a watch on a removed
    // descendant fires once, with its own path. In a transaction C keeps only the node's own ACL
    // for the commit (its accessed_node's perms): the parent is not asked for a node that is gone.
    for (const r of removed) this.fire(ctx, r.path, r.path !== name, ctx.tx ? [r.node] : [r.node, r.parent]);
  }

  /**
   * oxenstored: watches at or above a removed node fire with its path; every watch below it
   * fires with its own path, if that node or its parent existed (their ACL decides).
   */
  private fireRemovedOcaml(ctx: RequestContext, name: string, removed: Removed[]): void {
    const top = removed[removed.length - 1];
    this.fire(ctx, name, false, [top.node, top.parent]);
    // In a transaction the commit fires the watches below too (oxenstored's recursive fire_watches).
    if (ctx.tx) {
      ctx.tx.events[ctx.tx.events.length - 1].removed = removed;
      return;
    }
    this.fireBelowOcaml(name, removed);
  }

  private fireBelowOcaml(name: string, removed: Removed[], trees?: { before: (q: string) => AclAt | undefined; after: (q: string) => AclAt | undefined }): void {
    const permsAt = new Map(removed.map((r) => [r.path, r.node]));
    // Before the removal a node it did not take (the root an RM of / keeps) is as it is now.
    const before = trees?.before ?? ((q: string) => permsAt.get(q) ?? this.store.get(q));
    const after = trees?.after ?? ((q: string) => this.store.get(q));
    for (const c of this.connections.values()) {
      const below = c.watches.filter((w) => !isSpecial(w.node) && w.node !== name && isChild(w.node, name));
      const at = new Map(c.watches.map((w, i) => [w, i]));
      for (const w of below.sort((a, b) => triePathOrder(a.node, b.node) || at.get(b)! - at.get(a)!)) {
        // lookup_watch_perms: the parent's ACL and the node's, in the tree before the removal and
        // in the tree after it (where the parent exists); any one granting READ will do, none
        // found means no event.
        const parent = parentOf(w.node);
        const acls: AclAt[] = [];
        for (const get of [before, after]) {
          const pa = get(parent);
          if (pa === undefined) continue;
          acls.push(pa);
          const n = get(w.node);
          if (n !== undefined) acls.push(n);
        }
        if (acls.length === 0) continue;
        if (!c.privileged && !acls.some((acl) => this.perm(c, acl) & XsPerm.XS_PERM_READ)) continue;
        const ev = this.eventFor(c, w, w.node);
        if (ev) this.queueEvent(c, ev);
      }
    }
  }

  private doSetPerms(ctx: RequestContext): void {
    const { conn, msg } = ctx;
    const all = strings(msg.payload);
    // xs_count_strings counts NULs: path plus at least one entry.
    if (all.length < 2) fail('EINVAL');
    const n = all.length - 1;
    if (this.b.permissionsQuota && !conn.privileged && n > this.quotas.permissions) {
      fail('ENOSPC');
    }
    // oxenstored parses ids with int_of_string ("r 5" is EINVAL) before it looks at the path.
    const parsed = parsePerms(all.slice(1), this.b.aclIdParser === 'int_of_string' ? ocamlIntOfString : undefined);
    if (parsed === undefined) return fail('EINVAL');
    // domain_alloc_permrefs(): entries for domains that do not exist are kept but ignored.
    const entries = parsed.map((e) => {
      if (!this.b.ignoreUnknownAclDomains) return e;
      if (!this.knowDomain(e.id)) return { perms: e.perms | XsPerm.XS_PERM_IGNORE, id: e.id };
      return e;
    });
    if (entries[0].perms & XsPerm.XS_PERM_IGNORE) fail('ENOENT');
    const perms = internPerms(entries);
    const raw = all[0];
    // oxenstored: @name is the real node /@name, set like any other (`@foo` once written, too).
    if (isSpecial(raw) && !this.b.specialPathsAreNodes) {
      // set_perms_special() returns EINVAL / EACCES, but do_set_perms() answers errno, which it
      // never set: whatever the daemon's last request left there (test/dom0/xenstored/special-perms-oracle-c.txt).
      const refused = (code: XsError): never => fail(this.b.staleErrno ? this.errno : code);
      const sp = this.special.get(raw);
      if (sp === undefined) return refused('EINVAL');
      const want = XsPerm.XS_PERM_WRITE | XsPerm.XS_PERM_OWNER;
      if ((this.permsOnly(conn, sp) & want) !== want) refused('EACCES');
      this.special.set(raw, perms);
      return;
    }
    const name = this.name(conn, raw);
    const node = this.getNode(ctx, name, XsPerm.XS_PERM_WRITE | XsPerm.XS_PERM_OWNER);
    if (!conn.privileged && perms[0].id !== node.perms[0].id) fail(this.b.giveAwayError);
    if (!conn.privileged && this.b.ownerQuotaOnChown && perms[0].id !== node.perms[0].id) {
      const q = this.quotas.nodes;
      if (ctx.db.ownedBy(perms[0].id) >= q) fail('ENOSPC');
    }
    this.checkNodeSize(conn, node.value, perms, ctx.db.children(name), ctx.tx);
    if (this.charges(ctx, node.perms[0].id, perms[0].id)) {
      this.chargeRecords(ctx, [{
        path: name, old: { owner: node.perms[0].id, bytes: this.recordOf(ctx.db, name, node) },
        owner: perms[0].id, bytes: this.recordOf(ctx.db, name, node, node.value, perms),
      }]);
    }
    if (!ctx.tx) this.wrlDebit(conn, 1);
    const old: AclAt = { perms: node.perms, gen: node.gen };
    if (this.b.entryQuota) {
      // Store.setperms moves one entry from the old owner to the new, the root's too.
      const quota = this.entries(ctx.tx);
      quota.add(node.perms[0].id, -1);
      quota.add(perms[0].id, 1);
    }
    ctx.db.setPerms(name, perms);
    if (ctx.tx) {
      ctx.tx.lowWrite(name);
      ctx.tx.wops++;
    }
    this.fire(ctx, name, false, [old, ...this.nodePerms(ctx.db, name, ctx.db.read(name))]);
    if (ctx.tx && this.b.commitRule === 'merge-replay') ctx.tx.events[ctx.tx.events.length - 1].setPerms = true;
  }

  // ------------------------------------------------------------------ handlers: watches

  /** WATCH/UNWATCH take exactly path and token (4.17 has no depth argument). */
  private watchArgs(msg: XsMessage): [string, string] {
    const args = strings(msg.payload);
    if (args.length !== 2) failQuiet('EINVAL');
    // oxenstored splits at every NUL and wants exactly [path; token; ""]: no unterminated tail.
    if (this.b.watchArgsTerminated && msg.payload[msg.payload.length - 1] !== 0) failQuiet('EINVAL');
    return [args[0], args[1]];
  }

  private doWatch(ctx: RequestContext): void {
    const { conn, msg } = ctx;
    const args = this.watchArgs(msg);
    const [raw, token] = args;
    let node: string;
    let relativeTo: string | undefined;
    if (isSpecial(raw)) {
      if (raw.length > 2048) fail('EINVAL');
      node = raw;
    } else {
      // oxenstored checks a watch path's characters but not its length.
      node = this.name(conn, raw, false, this.b.watchPathLengthChecked ? this.quotas.pathMax : 0);
      if (!raw.startsWith('/')) relativeTo = conn.home;
    }
    if (conn.watches.some((w) => w.node === node && w.token === token)) failQuiet('EEXIST');
    // 4.17 and oxenstored both refuse only once the count already exceeds the limit.
    if (!conn.privileged && conn.watches.length > this.quotas.watches) failQuiet(this.b.watchQuotaError);
    // add_watch(): the path and token are charged to the domain's memory.
    if (conn.kind === 'domain' && this.overMemory(conn.domid, node.length + token.length)) fail('ENOMEM');
    const w: Watch = { node, token, relativeTo };
    conn.watches.push(w);
    // "We fire once up front": the initial event, whatever the node's existence or ACL.
    ctx.afterReply = this.eventFor(conn, w, node);
  }

  private doUnwatch(ctx: RequestContext): void {
    const { conn, msg } = ctx;
    const [raw, token] = this.watchArgs(msg);
    // C compares the canonical spelling without validating it: a bad path just matches nothing.
    // (oxenstored likewise just looks the prefixed string up: ENOENT.)
    // (An empty path is no path at all: oxenstored says EINVAL.)
    if (raw === '' && this.b.watchArgsTerminated) failQuiet('EINVAL');
    const node = isSpecial(raw) ? raw : canonicalize(conn.home, raw);
    const i = conn.watches.findIndex((w) => w.node === node && w.token === token);
    if (i < 0) failQuiet('ENOENT');
    conn.watches.splice(i, 1);
  }

  private doResetWatches(ctx: RequestContext): void {
    this.dropConnectionState(ctx.conn);
  }

  // ------------------------------------------------------------------ handlers: transactions

  private doTransactionStart(ctx: RequestContext): void {
    const { conn } = ctx;
    if (ctx.tx) fail('EBUSY');
    if (!conn.privileged && conn.transactions.size > this.quotas.transactions) fail(this.b.transactionQuotaError);
    const id = this.allocTxId(conn);
    if (conn.transactions.size === 0) conn.txStartedAt = this.clock();
    const quota = conn.privileged ? 0 : this.quotas.transactionNodes;
    // C: a transaction takes a generation of its own (domains known from now on are younger).
    if (this.b.txStartTakesGeneration) this.store.generation++;
    const tx = this.newTransaction(id, quota);
    conn.transactions.set(id, tx);
    this.history?.started(tx);
    ctx.reply = enc(`${id}\0`);
  }

  /** A client's transaction as this profile runs it (`quota`: its transaction-nodes bound, 0 = none). */
  newTransaction(id: number, quota: number): Transaction {
    const style = this.b.commitRule === 'merge-replay' ? 'ocaml' : 'c';
    const tx = new Transaction(id, this.store, style, this.b.txNodeQuotaOnAccess ? quota : 0, this.b.txStartTakesGeneration);
    if (this.b.entryQuota) {
      tx.entriesAtStart = this.entries(undefined).copy();
      tx.entries = tx.entriesAtStart.copy();
    }
    return tx;
  }

  /**
   * oxenstored's Quota.cur of the store, or of a transaction's own store. Until something makes it
   * part from ownership it is what each domain owns, the root aside (no entry is added for it), so
   * it is built from ownership when first needed, and again after the tree is loaded wholesale.
   * A scratch transaction (a replay) copies the store's when it first needs one.
   */
  private entries(tx: Transaction | undefined): EntryQuota {
    if (tx !== undefined) return tx.entries ??= this.entries(undefined).copy();
    if (this.storeEntries === undefined) {
      const rootOwner = this.store.root.perms[0].id;
      this.storeEntries = EntryQuota.of([...this.store.owners()].map(([id, n]): [number, number] => [id, id === rootOwner ? n - 1 : n]));
    }
    return this.storeEntries;
  }
  private storeEntries: EntryQuota | undefined;

  /** The tree was loaded without its operations (a seed migration): count its entries again. */
  resetEntryQuota(): void {
    this.storeEntries = undefined;
  }

  private allocTxId(conn: Connection): number {
    const limit = this.b.txIdLimit;
    let id = conn.nextTxId;
    while (id === 0 || conn.transactions.has(id)) id = id >= limit ? 1 : id + 1;
    conn.nextTxId = id >= limit ? 1 : id + 1;
    return id;
  }


  readonly faults: XenstoredFaults;
  private faultState: number;

  /** xorshift32 for fault choices. */
  private faultRoll(): number {
    let x = this.faultState;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.faultState = x >>> 0;
    return this.faultState / 0x1_0000_0000;
  }

  private doTransactionEnd(ctx: RequestContext): void {
    const { conn, tx } = ctx;
    // oxenstored takes the first NUL-separated piece (split on NUL): anything after is ignored,
    // and the NUL is not needed.
    const p = ctx.msg.payload;
    const nul = p.indexOf(0);
    const arg = this.b.txEndFirstPiece ? dec(p, nul < 0 ? p.length : nul) : this.onearg(ctx.msg);
    if (arg !== 'T' && arg !== 'F') fail('EINVAL');
    if (!tx) return fail('ENOENT');
    conn.transactions.delete(tx.id);
    // The start snapshot is kept through the commit: oxenstored's events read the start tree.
    let kept = false;
    try {
      if (arg === 'F') return this.history?.trim(tx);
      if (tx.carriedOver) this.failTrimmed(tx, 'EAGAIN');
      if (this.faults.spuriousEagain && this.faultRoll() < this.faults.spuriousEagain) this.failTrimmed(tx, 'EAGAIN');
      ctx.eventsFirst = true;
      if (this.b.commitRule === 'generations') return this.commitC(ctx, tx);
      let changed: boolean;
      try {
        changed = this.commitOcaml(ctx, tx);
      } catch (e) {
        if (!(e instanceof WatchPathError)) throw e;
        // Committed, but process_watch raised (an '@' name): EINVAL, and the commit is not
        // recorded in the history (record_commit comes after).
        this.history?.trim(tx);
        return fail('EINVAL');
      }
      // History.end_transaction trims, then a guest's commit that changed the store is recorded
      // with the tree it started from: the transaction itself keeps that tree.
      if (this.history) {
        this.history.trim(tx);
        if (changed) {
          kept = true;
          this.history.push(conn, tx);
        }
      }
    } finally {
      if (!kept) tx.close();
    }
  }

  /** A commit that fails after History.end_transaction ran: the history is trimmed first. */
  private failTrimmed(tx: Transaction, code: 'EAGAIN'): never {
    this.history?.trim(tx);
    return fail(code);
  }

  private commitC(ctx: RequestContext, tx: Transaction): void {
    if (tx.failed) fail('ENOMEM');
    // transaction_fix_domains(trans, chk_quota, false), before the conflict check: each owner whose
    // count the transaction touched gets a domain struct if the hypervisor has the domain (kept
    // even if the commit then fails: its generation is today's count - repro c-d25); an unknown one
    // is ENOMEM. With a node created by a guest, an unprivileged owner must end below quota.
    const chkQuota = tx.nodeCreated && !ctx.conn.privileged;
    for (const domid of tx.ownerDelta.keys()) {
      if (this.knowDomain(domid) === undefined) fail('ENOMEM');
      if (chkQuota && domid !== 0 && Math.max(0, tx.ownedBy(domid)) >= this.quotas.nodes) fail('ENOSPC');
    }
    if (this.faults.conflictOnAnyChange ? this.store.changedAt >= tx.startGen : !tx.unchanged()) fail('EAGAIN');
    if (this.wrl && !ctx.conn.privileged && ctx.conn.kind === 'domain') {
      // wrl_apply_debit_trans_commit(), for a commit that succeeds: this transaction still counts
      // among the open ones.
      this.wrl.ntransactions = this.openTransactions() + 1;
      this.wrl.debitCommit(ctx.conn.domid);
    }
    // finalize_transaction() writes the nodes one by one in first-access order and fires each
    // one's watches right after writing it: a parent written later is still the old one when a
    // child's event is checked (repro c-d26). Keep the old ACLs of what the commit overwrites.
    const order = tx.modifiedInOrder();
    const position = new Map(order.map((p, i) => [p, i]));
    const before = new Map<string, AclAt | undefined>();
    for (const p of order) {
      const n = this.store.get(p);
      before.set(p, n && { perms: n.perms, gen: n.gen });
    }
    for (const ev of tx.apply(true)) {
      // C keeps a node's ACL for the commit's event only if the node existed when the transaction
      // first looked at it; for one it created and removed again, watch_permitted() finds neither
      // that nor the node, and nobody - dom0 included - hears of it.
      if (ev.firstSeenMissing && this.store.get(ev.path) === undefined) continue;
      const at = position.get(ev.path) ?? order.length;
      const asWritten = (q: string): AclAt | undefined => {
        const i = position.get(q);
        return i !== undefined && i > at ? before.get(q) : this.store.get(q);
      };
      this.fireCommitted(ev.path, ev.exact, ev.perms, asWritten);
    }
  }

  private fireCommitted(path: string, exact: boolean, recorded: AclAt[], asWritten: (path: string) => AclAt | undefined): void {
    // watch_permitted(): the ACL the transaction recorded first; then the node as committed and
    // its parent - but a node the commit removed cannot be read, and C looks no further (no parent).
    const node = asWritten(path);
    if (node === undefined) return this.fireNow(path, exact, recorded);
    const parent = path === '/' ? undefined : asWritten(parentOf(path));
    this.fireNow(path, exact, parent ? [node, parent, ...recorded] : [node, ...recorded]);
  }

  /**
   * oxenstored: commit if nothing changed since the start, or if the nodes at its read and write
   * lowpaths are untouched (merge); otherwise replay its operations on the current store and
   * commit only if every reply is the same. Read-only transactions always commit.
   */
  /** Returns whether the commit wrote (a read-only transaction commits without writing). */
  private commitOcaml(ctx: RequestContext, tx: Transaction): boolean {
    if (tx.failed) fail('EQUOTA');
    // Read-only (no write operation done): committed as it is, nothing replayed.
    if (tx.wops === 0) return false;
    if (this.store.generation === tx.startGen) {
      if (tx.releasedInside) {
        // The transaction's tree (and quota) becomes the store's, reset and all: its operations
        // alone would not make it again. Every node of it was rebuilt.
        tx.apply(false);
        this.storeEntries = tx.entries!.copy();
        this.store.rebuiltAt = this.store.generation++;
        this.fireOcaml(tx);
        return true;
      }
      this.applyOcaml(ctx, tx);
      return true;
    }
    // Merged: the subtree at the write lowpath is grafted as the transaction left it, so an
    // operation that changed nothing there (RM of a missing node) is not run again on today's tree.
    if (tx.canCoalesce()) {
      // oxenstored grafts the transaction's nodes: one it wrote unchanged keeps its identity.
      // (A RELEASE's reset inside it reaches the store only below the write lowpath.)
      if (!tx.releasedInside) tx.apply(false);
      else if (tx.writeLow !== undefined) tx.apply(false, tx.writeLow);
      // set_node at the write lowpath rebuilds the path above it (repro o44), and merges the
      // transaction's entry quota into the store's (Quota.merge: domains it still has an entry for).
      if (tx.writeLow !== undefined) {
        this.store.renewAbove(tx.writeLow);
        this.entries(undefined).merge(tx.entriesAtStart!, tx.entries!);
      }
      this.fireOcaml(tx);
      return true;
    }
    // The replay runs in a transaction of its own, which takes an id.
    this.allocTxId(ctx.conn);
    const scratch = new Transaction(0, this.store, 'c', 0);
    const replay = this.replayOn(ctx.conn, tx.ops, scratch);
    if (replay === 'mismatch') this.judge(ctx.conn, tx);
    if (replay !== 'match') this.failTrimmed(tx, 'EAGAIN');
    this.applyOcaml(ctx, tx);
    return true;
  }

  /**
   * A replay that failed on a different answer looks for the guest to blame: the transaction's
   * requests are run again on the tree before each recent guest change. A request oxenstored
   * cannot replay throws there, uncaught, and the commit answers EINVAL (with no trim).
   */
  private judge(conn: Connection, tx: Transaction): void {
    if (!this.history) return;
    // Only a transaction holding such a request can throw; any other's judge shows nothing.
    const k = tx.ops.findIndex((op) => replayKind(op.type) === 'throws');
    if (k < 0) return;
    const head = tx.ops.slice(0, k + 1);
    for (const before of this.history.beforeTrees(tx, conn.id)) {
      const trial = before.forkStart();
      // Runs the requests up to the one that throws, or stops at the first different answer.
      if (this.replayOn(conn, head, trial) === 'throws') fail('EINVAL');
    }
  }

  /** Applies a transaction by running its operations again outside it, silently; then its events. */
  private applyOcaml(ctx: RequestContext, tx: Transaction): void {
    this.silent = true;
    try {
      for (const op of tx.ops) {
        // A write that failed in the transaction changed nothing there: it is not applied (on
        // today's store it might succeed) - except a WRITE refused E2BIG, whose missing parents
        // were made first (create_implicit_path), in the transaction as in oxenstored's replay.
        // The store is the one the transaction or its replay ran on, so it fails the same way.
        if (!WRITES.has(op.type)) continue;
        if (op.reply !== 'OK\0' && !(op.type === T.XS_WRITE && op.reply === 'E2BIG')) continue;
        this.run(this.table[op.type]![0], this.subRequest(ctx.conn, op, undefined));
      }
    } finally {
      this.silent = false;
    }
    this.fireOcaml(tx);
  }

  /** The events the transaction's own writes raised, with the ACLs it saw (process_watch at commit). */
  private fireOcaml(tx: Transaction): void {
    for (const ev of tx.events) {
      // process_watch looks a WRITE's or MKDIR's readers up in the transaction's final tree (node
      // and parent), an RM's in its start tree only, a SET_PERMS's in both.
      const start = (q: string): NodeData | undefined => tx.startNode(q);
      const final = (q: string): NodeData | undefined => tx.peek(q);
      const perms = ev.setPerms ? [...treeAcls(start, ev.path), ...treeAcls(final, ev.path)]
        : ev.removed !== undefined ? treeAcls(start, ev.path) : treeAcls(final, ev.path);
      // No ACL found at all (the node and its parent gone by the end): can_fire_watch fails for
      // everyone, dom0 included.
      if (perms.length !== 0) this.fireNow(ev.path, ev.exact, perms);
      // Watches below an RM too: their readers in the start tree only (a node the transaction
      // created later does not count).
      if (ev.removed) this.fireBelowOcaml(ev.path, ev.removed, { before: start, after: () => undefined });
    }
  }


  private subRequest(conn: Connection, op: RecordedOp, tx: Transaction | undefined): RequestContext {
    return { conn, msg: { type: op.type, req_id: 0, tx_id: 0, payload: op.payload }, tx, db: tx ?? this.db };
  }

  /**
   * Dry-run of recorded operations in `scratch` (closed after): 'match' if every reply is the same,
   * 'mismatch' at the first that differs, 'throws' at an operation oxenstored cannot replay.
   */
  private replayOn(conn: Connection, ops: readonly RecordedOp[], scratch: Transaction): 'match' | 'mismatch' | 'throws' {
    const saveOut = this.out;
    const saveSelf = this.selfEvents;
    try {
      for (const op of ops) {
        const kind = replayKind(op.type);
        if (kind === 'throws') return 'throws';
        if (kind === 'enosys') continue;
        const sub = this.subRequest(conn, op, scratch);
        const code = this.run(this.table[op.type]![0], sub);
        if ((code ?? dec(sub.reply ?? OK)) !== op.reply) return 'mismatch';
      }
      return 'match';
    } finally {
      scratch.close();
      this.out = saveOut;
      this.selfEvents = saveSelf;
    }
  }

  // ------------------------------------------------------------------ handlers: domains

  /** find_or_alloc_existing_domain(): a domain struct for a domain the hypervisor has. */
  private knowDomain(domid: number): XsDomain | undefined {
    let d = this.domains.get(domid);
    if (d === undefined && this.domainExists(domid)) {
      d = {
        // C copies the global count without bumping it: a node written last before the domain
        // became known carries that same count, so its ACL entries do count for the domain.
        domid: asDomId(domid), generation: this.store.generation - 1, introduced: false, conn: undefined,
        mfn: 0, port: 0, shutdownReported: false,
      };
      this.domains.set(domid, d);
      this.wrl?.domainNew(domid);
    }
    return d;
  }

  private doIntroduce(ctx: RequestContext): void {
    // oxenstored takes the first three pieces of split: the third needs no NUL after it.
    const args = this.b.domidParser === 'int_of_string' ? ocamlSplit(ctx.msg.payload) : strings(ctx.msg.payload, 3);
    if (args.length < 3) fail('EINVAL');
    let domid: number, mfn: number, port: number;
    if (this.b.domidParser === 'int_of_string') {
      // oxenstored builds (domid, mfn, port) right to left: port first; the mfn's
      // Nativeint.of_string failure is not one it names, so it ends as EIO.
      port = this.domidArg(args[2]);
      mfn = ocamlIntOfString(args[1], 64) ?? fail('EIO');
      domid = this.domidArg(args[0]);
    } else {
      domid = this.domidArg(args[0]);
      mfn = this.domidArg(args[1]);
      port = this.domidArg(args[2]);
    }
    // The port lands in an evtchn_port_t: unsigned, so only 0 is refused (-3 is a port).
    if (port >>> 0 === 0 && this.b.introducePortMustBeSet) fail('EINVAL');
    const known = this.domains.get(domid);
    // oxenstored knows dom0 from the start with mfn 0: another mfn is EINVAL for it too.
    if (this.b.introduceMfnMustMatch && known?.introduced && known.mfn !== mfn) fail('EINVAL');
    // oxenstored queues @introduceDomain/@releaseDomain ahead of the reply.
    ctx.eventsFirst = true;
    const d = this.knowDomain(domid);
    if (d === undefined) return fail('EINVAL');
    if (domid === 0 && this.b.domainOpsOcaml && d.introduced) return;
    if (!d.introduced) {
      const setUp = this.setUpDomain?.(domid, port >>> 0);
      if (setUp !== undefined) fail(setUp);
      d.introduced = true;
      d.mfn = mfn;
      d.port = port;
      d.conn = this.addConnection(asDomId(domid), false, 'domain');
      this.domainEpoch++;
      // oxenstored fires with dom0's connection as the source: after RELEASE 0 that lookup fails
      // and the (already added) domain is answered EINVAL.
      if (this.b.domainOpsOcaml && !this.domains.get(0)?.introduced) fail('EINVAL');
      if (domid !== 0 || this.b.domainOpsOcaml) this.fireNow('@introduceDomain', false, [], ctx.db);
    } else {
      d.port = port;
      // Re-INTRODUCE rebinds the event channel and resets the connection.
      const c = d.conn !== undefined ? this.connections.get(d.conn) : undefined;
      if (c && this.b.reintroduceResets) this.dropConnectionState(c);
    }
  }

  /** A domid argument: C's atoi(), or oxenstored's int_of_string (EINVAL when it is not one). */
  private domidArg(s: string): number {
    if (this.b.domidParser === 'atoi') return atoi(s);
    const v = ocamlIntOfString(s);
    if (v === undefined) return fail('EINVAL');
    return v;
  }

  private domainArg(ctx: RequestContext): XsDomain {
    const domid = this.domidArg(this.onearg(ctx.msg));
    if (domid === 0) fail('EINVAL');
    if (this.b.domainOpsOcaml) {
      const d = this.domains.get(domid);
      if (d === undefined || !d.introduced) return fail('EINVAL');
      return d;
    }
    return this.connectedDomain(domid);
  }

  /**
   * find_connected_domain(): ENOENT unless introduced (a domain known only from an ACL is not
   * found), EINVAL once its connection is gone.
   */
  private connectedDomain(domid: number): XsDomain {
    const d = this.domains.get(domid);
    if (d === undefined || !d.introduced) return fail('ENOENT');
    if (d.conn === undefined) return fail('EINVAL');
    return d;
  }

  private doRelease(ctx: RequestContext): void {
    if (this.b.domainOpsOcaml) return this.doReleaseOcaml(ctx);
    const d = this.domainArg(ctx);
    ctx.eventsFirst = true;
    // talloc_free(domain->conn): the main loop holds the newest reference on the connection
    // after the requester's; dropping it defers the free to the loop, behind the reply.
    if (this.connectionAfter(ctx.conn) === d.conn) this.deferredRelease = d;
    else if (!this.dropReference(d)) this.destroyDomain(d);
  }

  /** talloc_free() of a referenced domain connection: drops its newest reference, if any. */
  private dropReference(d: XsDomain): boolean {
    const refs = d.conn !== undefined ? this.talloc.get(d.conn) : undefined;
    if (refs === undefined || refs.length === 0) return false;
    refs.shift();
    return true;
  }

  /** The connection after `conn` in creation order (C's connection list), if any. */
  private connectionAfter(conn: Connection): number | undefined {
    let seen = false;
    for (const id of this.connections.keys()) {
      if (seen) return id;
      if (id === conn.id) seen = true;
    }
    return undefined;
  }

  /**
   * oxenstored's do_release: forgets the domain and strips it from the store (even when it was
   * never introduced), then fires @releaseDomain with dom0's connection as the source, which
   * fails (ENOENT) once dom0 itself was released.
   */
  private doReleaseOcaml(ctx: RequestContext): void {
    const domid = this.domidArg(this.onearg(ctx.msg));
    const d = this.domains.get(domid);
    const existed = d?.introduced === true;
    if (d !== undefined) this.dropDomain(d);
    this.resetPermissionsOcaml(domid, ctx.tx);
    if (!existed) fail('EINVAL');
    if (!this.domains.has(0)) fail('ENOENT');
    ctx.eventsFirst = true;
    // fire_spec_watches (Transaction.get_root t): inside a transaction, its tree's ACLs.
    this.fireNow('@releaseDomain', false, [], ctx.db);
  }

  /** The domain's connection goes: its watches, transactions, and the transport's end. */
  private closeDomainConnection(d: XsDomain): void {
    const c = d.conn !== undefined ? this.connections.get(d.conn) : undefined;
    if (c) {
      this.dropConnectionState(c);
      this.connections.delete(c.id);
      c.closed = true;
      this.closing.push(c.id);
    }
  }

  private dropDomain(d: XsDomain): void {
    this.closeDomainConnection(d);
    this.domains.delete(d.domid);
    this.forgetDomainLimits(d.domid);
    this.domainEpoch++;
  }

  /**
   * oxenstored's Store.reset_permissions: nodes the domain owns go with their subtrees (the
   * root is kept, its owner made invalid), its ACL entries go elsewhere; no watch fires, and
   * every node is rebuilt, so no open transaction can merge afterwards.
   */
  private resetPermissionsOcaml(domid: number, tx?: Transaction): void {
    // RELEASE inside a transaction resets the transaction's store (Transaction.get_store t).
    const db: Db = tx ?? this.db;
    // Quota.del: the domain's entry goes, whoever owns what this removes.
    this.entries(tx).drop(domid);
    const stack = ['/'];
    while (stack.length) {
      const p = stack.pop()!;
      const n = db.peek(p)!;
      // recurse_filter_map drops every node whose owner is invalid, not just the ones it invalidates.
      if (n.perms[0].id === domid || n.perms[0].id === -1) {
        if (p !== '/') {
          db.remove(p);
          continue;
        }
        if (n.perms[0].id !== -1) db.setPerms(p, internPerms([{ perms: n.perms[0].perms, id: -1 as DomId }, ...n.perms.slice(1)]));
      }
      const cur = db.peek(p)!;
      const kept = cur.perms.filter((e, i) => i === 0 || e.id !== domid);
      if (kept.length !== cur.perms.length) db.setPerms(p, internPerms(kept));
      for (const k of db.children(p)) stack.push(join(p, k));
    }
    if (tx) tx.releasedInside = true;
    else this.store.rebuiltAt = this.store.generation++;
  }

  /**
   * Subtrees deleted because their owner went away (XSA-419), oldest first: the transports drain
   * it to tell the simulator's trace, whose shadow store must forget them too.
   */
  readonly removedOwned: { domid: number; paths: string[] }[] = [];

  /** Domain gone (RELEASE or death): its connection, watches, transactions and owned nodes go. */
  destroyDomain(d: XsDomain): void {
    this.domainEpoch++;
    this.metaChanges++;
    if (this.b.domainOpsOcaml) {
      this.dropDomain(d);
      this.resetPermissionsOcaml(d.domid);
      this.fireNow('@releaseDomain', false, []);
      return;
    }
    this.closeDomainConnection(d);
    if (d.conn !== undefined) this.forgetReferences(d.conn);
    // XSA-419: nodes the domain owns are deleted (re-owned to dom0 with -K), while the domain is
    // still known: the parents rewritten keep its ACL entries valid.
    if (d.domid !== 0 && this.store.ownedBy(d.domid) > 0) {
      const owned = this.topmostOwned(d.domid);
      if (!this.keepOrphans) this.removedOwned.push({ domid: d.domid, paths: owned.filter((p) => p !== '/') });
      for (const p of owned) {
        if (this.keepOrphans || p === '/') {
          const n = this.store.get(p)!;
          this.store.setPerms(p, n, internPerms([{ perms: n.perms[0].perms, id: asDomId(0) }, ...n.perms.slice(1)]));
        } else {
          const removed = this.db.remove(p);
          for (const r of removed) this.fireNow(r.path, r.path !== p, [r.node, r.parent]);
        }
      }
    }
    // remove_domid_from_perm(): the special names' ACLs forget the domain (an owner becomes dom0)
    // before @releaseDomain fires, so a connection whose target is dom0 may now hear it.
    for (const [name, perms] of this.special) {
      if (!perms.some((e) => e.id === d.domid)) continue;
      const owner = perms[0].id === d.domid ? { perms: perms[0].perms, id: asDomId(0) } : perms[0];
      this.special.set(name, internPerms([owner, ...perms.slice(1).filter((e) => e.id !== d.domid)]));
    }
    this.domains.delete(d.domid);
    this.forgetDomainLimits(d.domid);
    this.fireNow('@releaseDomain', false, []);
  }

  /** A freed connection: nobody references it any more, and the references it held go. */
  private forgetReferences(conn: number): void {
    this.talloc.delete(conn);
    for (const refs of this.talloc.values()) {
      for (let i = refs.indexOf(conn); i >= 0; i = refs.indexOf(conn)) refs.splice(i, 1);
    }
  }

  /** Paths of the highest nodes a domain owns (their subtrees go with them). */
  private topmostOwned(domid: number): string[] {
    const out: string[] = [];
    const stack: [string, XsNode][] = [['/', this.store.root]];
    while (stack.length) {
      const [p, n] = stack.pop()!;
      if (n.perms[0].id === domid && p !== '/') {
        out.push(p);
        continue;
      }
      // Pre-order, children in their listed order (walk_node_tree): the events come in that order.
      if (n.children) for (const [k, c] of [...n.children].reverse()) stack.push([join(p, k), c]);
    }
    return out;
  }

  private doResume(ctx: RequestContext): void {
    if (this.b.domainOpsOcaml) {
      // oxenstored: any existing domain, dom0 too; resuming is a no-op.
      if (!this.domains.get(this.domidArg(this.firstArg(ctx.msg)))?.introduced) fail('EINVAL');
      return;
    }
    const d = this.domainArg(ctx);
    d.shutdownReported = false;
  }

  private doSetTarget(ctx: RequestContext): void {
    if (this.b.domainOpsOcaml) return this.doSetTargetOcaml(ctx);
    const args = strings(ctx.msg.payload, 2);
    if (args.length < 2) fail('EINVAL');
    const domid = this.domidArg(args[0]);
    const tdomid = this.domidArg(args[1]);
    const d = this.connectedDomain(domid);
    this.connectedDomain(tdomid);
    const c = d.conn !== undefined ? this.connections.get(d.conn) : undefined;
    if (c) c.target = asDomId(tdomid);
    const t = this.domains.get(tdomid)!;
    const refs = this.talloc.get(t.conn!) ?? [];
    refs.unshift(d.conn!);
    this.talloc.set(t.conn!, refs);
  }

  /**
   * oxenstored: exactly `domid\0target\0`, each read as the first run of digits; the domain must
   * have a connection, the target is not looked at.
   */
  private doSetTargetOcaml(ctx: RequestContext): void {
    const p = ctx.msg.payload;
    const args = strings(p);
    if (args.length !== 2 || p[p.length - 1] !== 0) fail('EINVAL');
    const [domid, tdomid] = args.map(cIntOfString);
    const d = this.domains.get(domid);
    if (d === undefined || !d.introduced) return fail('ENOENT');
    const c = d.conn !== undefined ? this.connections.get(d.conn) : undefined;
    if (c) {
      c.target = asDomId(tdomid);
      // Perms.Connection.is_dom0: the connection's own id or its target's is 0.
      c.privileged = c.domid === 0 || tdomid === 0;
    }
  }

  private doIsDomainIntroduced(ctx: RequestContext): void {
    const domid = this.domidArg(this.b.domainOpsOcaml ? this.firstArg(ctx.msg) : this.onearg(ctx.msg));
    const yes = domid === DOMID_SELF || this.domains.get(domid)?.introduced === true;
    ctx.reply = enc(yes ? 'T\0' : 'F\0');
  }

  private doGetDomainPath(ctx: RequestContext): void {
    const s = this.onearg(ctx.msg);
    if (this.b.domainOpsOcaml) {
      // oxenstored formats the first run of digits it finds, as text.
      const digits = /\d+/.exec(s);
      ctx.reply = enc(`/local/domain/${digits ? BigInt(digits[0]).toString() : '0'}\0`);
      return;
    }
    ctx.reply = enc(`${domainPath(atoi(s))}\0`);
  }

  /**
   * The hypervisor says which domains shut down or died (VIRQ_DOM_EXC). Shutdown fires
   * @releaseDomain once (until RESUME); death destroys the domain's connection and nodes.
   */
  domainStateChanged(domid: number, state: 'shutdown' | 'dead'): Outcome {
    this.metaChanges++;
    this.out = [];
    this.selfEvents = [];
    this.closing = [];
    this.unsent.clear();
    const d = this.domains.get(domid);
    if (d?.introduced && domid !== 0) {
      if (state === 'dead') this.destroyDomain(d);
      else if (!d.shutdownReported || !this.b.shutdownReportedOnce) {
        d.shutdownReported = true;
        this.fireNow('@releaseDomain', false, []);
      }
    }
    const out = { deliveries: this.out, closed: this.closing };
    this.out = [];
    this.closing = [];
    return out;
  }

  // ------------------------------------------------------------------ CONTROL

  /** Set by a handler whose request waits for a later answer (live-update -s). */
  private heldBack = false;
  /** The failing request's error was returned as a value: errno keeps its last value. */
  private errnoKept = false;

  private doControl(ctx: RequestContext): void {
    if (this.b.controlIsDebug) {
      const conn = ctx.conn;
      const text = debugOcaml(dec(ctx.msg.payload), {
        // Connection.is_dom0: a socket, dom0, or a guest whose target is dom0 (set_target keeps it in privileged).
        dom0: conn.privileged,
        entries: (domid) => this.entries(ctx.tx).get(domid),
        maxEntries: this.quotas.nodes,
        mfnOf: (domid) => {
          const d = this.domains.get(domid);
          // dom0's ring connection exists from the start (until a RELEASE 0 forgets dom0).
          return d?.introduced && (domid === 0 || (d.conn !== undefined && this.connections.has(d.conn))) ? d.mfn : undefined;
        },
        parseInt: (v) => ocamlIntOfString(v),
      });
      if (text !== undefined) ctx.reply = enc(text);
      return;
    }
    const args = strings(ctx.msg.payload);
    if (args[0] === 'live-update') {
      // max_pars 5: the command and four parameters; any more are not looked at.
      const r = controlLiveUpdate(this, ctx.conn.id, ctx.msg, args.slice(1, 5));
      if ('error' in r) fail(r.error);
      else if ('delayed' in r) this.heldBack = true;
      else ctx.reply = enc(`${r.text}\0`);
      return;
    }
    const r = control(args, this);
    if ('error' in r) fail(r.error);
    else if (r.text !== undefined) ctx.reply = enc(`${r.text}\0`);
  }
}

registerXenstored(Xenstored);

/** lookup_watch_perm: the ACLs of a node and its parent in one tree (those that exist there). */
/** The spelling of a root child's '@' name that holds a '/' (kept as NUL in the store). */
function atNameShown(name: string): string {
  return name.replaceAll('\0', '/');
}

/** oxenstored's process_watch raised Define.Invalid_path while firing a watch (an '@' name). */
class WatchPathError extends Error {}

function treeAcls(get: (q: string) => AclAt | undefined, path: string): AclAt[] {
  const out: AclAt[] = [];
  const node = get(path);
  if (node) out.push(node);
  if (path !== '/') {
    const parent = get(parentOf(path));
    if (parent) out.push(parent);
  }
  return out;
}
