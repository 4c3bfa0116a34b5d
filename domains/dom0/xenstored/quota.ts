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

// ---------------------------------------------------------------------- memory quota

/** A reply up to this long goes in the buffer's own array, charged without a quota check. */
/**
 * oxenstored's Quota.cur: entries per domain, its own bookkeeping rather than a count of what a
 * domain owns. Creating a node adds one to its parent's owner, removing one takes one from each
 * removed node's owner, SET_PERMS moves one from the old owner to the new (the root included);
 * RELEASE drops the domain's entry whatever it owns, and a merged transaction adds only the
 * changes of domains still in its map. So the two part ways, and a domain's count can go negative.
 */
export class EntryQuota {
  private constructor(private readonly cur: Map<number, number>) {}

  static of(counts: Iterable<[number, number]>): EntryQuota {
    const m = new Map<number, number>();
    for (const [id, n] of counts) if (n !== 0) m.set(id, n);
    return new EntryQuota(m);
  }

  copy(): EntryQuota {
    return new EntryQuota(new Map(this.cur));
  }

  /** undefined: no entry (Quota.to_string says "not set"; Quota.check lets it pass). */
  get(domid: number): number | undefined {
    return this.cur.get(domid);
  }

  /** Quota.update_entry: an entry that reaches 0 is removed. */
  add(domid: number, diff: number): void {
    const n = (this.cur.get(domid) ?? 0) + diff;
    if (n === 0) this.cur.delete(domid);
    else this.cur.set(domid, n);
  }

  /** Quota.del (Store.reset_permissions at RELEASE). */
  drop(domid: number): void {
    this.cur.delete(domid);
  }

  /** Quota.merge: this += changed - orig, for the domains `changed` still has an entry for. */
  merge(orig: EntryQuota, changed: EntryQuota): void {
    for (const [id, n] of changed.cur) {
      const diff = n - (orig.cur.get(id) ?? 0);
      if (diff !== 0) this.add(id, diff);
    }
  }
}

export const DEFAULT_BUFFER_SIZE = 16;
/** sizeof(bdata->hdr): what C charges for a queued reply or event besides its payload. */
export const XS_BUFFERED_HDR = 16;
/** domain_chk_quota() reports a change of quota state at most this often (seconds). */
export const MEM_WARN_MINTIME_SEC = 10;

export type SyslogLevel = 'err' | 'warning' | 'info';

/** Per-domain state of domain_chk_quota(): which quota it was last reported over, and when. */
interface MemoryReport {
  softReported: boolean;
  hardReported: boolean;
  lastMsg: number;
}

/**
 * domain_chk_quota() of C 4.17: whether `mem` bytes would put a domain at or over the hard
 * quota (then the charge is refused), logging crossings of either quota as C's syslog() does.
 * Only unprivileged domains are checked; 0 disables a quota.
 */
export class MemoryQuota {
  private readonly reports = new Map<number, MemoryReport>();

  constructor(
    private readonly quotas: Quotas,
    /** Seconds (C's time(NULL)). */
    private readonly clock: () => number,
    private readonly syslog: (level: SyslogLevel, text: string) => void,
  ) {}

  /** True: over the hard quota (the caller fails with ENOMEM, or drops what it charges). */
  check(domid: number, mem: number): boolean {
    let r = this.reports.get(domid);
    if (r === undefined) {
      r = { softReported: false, hardReported: false, lastMsg: 0 };
      this.reports.set(domid, r);
    }
    const now = this.clock();
    const hard = this.quotas.memory;
    const soft = this.quotas.memorySoft;
    if (hard > 0 && mem >= hard) {
      if (r.hardReported) return true;
      this.syslog('err', `Domain ${domid} exceeds hard memory quota, Xenstore interface to domain stalled`);
      r.lastMsg = now;
      r.hardReported = true;
      return true;
    }
    if (now - r.lastMsg >= MEM_WARN_MINTIME_SEC) {
      if (r.hardReported) {
        r.lastMsg = now;
        r.hardReported = false;
        this.syslog('info', `Domain ${domid} below hard memory quota again`);
      }
      if (soft > 0 && mem >= soft && !r.softReported) {
        r.lastMsg = now;
        r.softReported = true;
        this.syslog('warning', `Domain ${domid} exceeds soft memory quota`);
      }
      if (mem < soft && r.softReported) {
        r.lastMsg = now;
        r.softReported = false;
        this.syslog('info', `Domain ${domid} below soft memory quota again`);
      }
    }
    return false;
  }

  forget(domid: number): void {
    this.reports.delete(domid);
  }
}

// ---------------------------------------------------------------------- write rate limiting

/** C 4.17's compile-time write-rate limits (xenstored_domain.h): no option changes them. */
export const WRL_FACTOR = 1000;
export const WRL_RATE = 200;
export const WRL_DBURST = 10;
export const WRL_GBURST = 1000;
export const WRL_NEWDOMS = 5;
const WRL_CREDIT_MAX = 1000 * 1000 * 1000;

/**
 * C 4.17's write-rate limiter (wrl_* in xenstored_domain.c). While any transaction is open, each
 * node an unprivileged domain writes outside a transaction (and each commit while another
 * transaction is open) costs one write's credit; credit returns at WRL_RATE writes a second shared
 * by all domains, each domain holding at most WRL_DBURST and a global reserve WRL_GBURST. A domain
 * in debt is not read from (domain_can_read) until its credit is back to zero: no error, a stall.
 * Times are milliseconds on the daemon's clock (C: CLOCK_MONOTONIC).
 */
export class WriteRateLimit {
  private readonly writecost = WRL_FACTOR;
  private readonly rate = WRL_RATE * WRL_FACTOR;
  private readonly dburst = WRL_DBURST * WRL_FACTOR;
  private readonly gburst = WRL_GBURST * WRL_FACTOR;
  private readonly newdomsDburst = WRL_DBURST * WRL_NEWDOMS * WRL_FACTOR;
  private reserve = 0;
  private readonly credit = new Map<number, { credit: number; stamp: number }>();
  /** Open transactions, of every connection (wrl_ntransactions). */
  ntransactions = 0;

  constructor(private readonly clockMs: () => number) {}

  /** Moves as much as possible from debit to credit keeping debit >= floor and credit <= ceil. */
  private static xfer(from: number, floor: number, to: number, ceil: number): number {
    const x = Math.min(from - floor, ceil - to);
    return x > 0 ? x : 0;
  }

  /** wrl_domain_new(): a domain steals up to DBURST from the reserve. */
  domainNew(domid: number): void {
    const d = { credit: 0, stamp: this.clockMs() };
    this.credit.set(domid, d);
    const x = WriteRateLimit.xfer(this.reserve, -this.newdomsDburst, d.credit, this.dburst);
    this.reserve -= x;
    d.credit += x;
  }

  /** wrl_domain_destroy(): its credit goes back to the reserve. */
  domainDestroy(domid: number): void {
    const d = this.credit.get(domid);
    if (d === undefined) return;
    this.credit.delete(domid);
    const x = WriteRateLimit.xfer(d.credit, 0, this.reserve, this.dburst);
    this.reserve += x;
  }

  /** wrl_credit_update(): credit for the whole milliseconds since the domain's last update. */
  private update(d: { credit: number; stamp: number }, now: number): void {
    const msec = Math.max(0, Math.min(now - d.stamp, 1000 * 1000 * 1000));
    d.credit = Math.min(d.credit + Math.floor((msec * this.rate) / (this.credit.size * 1000)), WRL_CREDIT_MAX);
    let x = WriteRateLimit.xfer(this.reserve, 0, d.credit, 0);
    this.reserve -= x;
    d.credit += x;
    let surplus = 0;
    x = WriteRateLimit.xfer(d.credit, this.dburst, surplus, WRL_CREDIT_MAX);
    d.credit -= x;
    surplus += x;
    x = WriteRateLimit.xfer(surplus, 0, this.reserve, this.gburst);
    this.reserve += x;
    d.stamp = now;
  }

  /** wrl_apply_debit_actual(). */
  private debit(domid: number): void {
    const d = this.credit.get(domid);
    if (d === undefined) return;
    this.update(d, this.clockMs());
    d.credit -= this.writecost;
  }

  /** wrl_apply_debit_direct(): a node written outside a transaction. */
  debitDirect(domid: number): void {
    if (this.ntransactions !== 0) this.debit(domid);
  }

  /** wrl_apply_debit_trans_commit(): a commit, if another transaction is open. */
  debitCommit(domid: number): void {
    if (this.ntransactions > 1) this.debit(domid);
  }

  /**
   * wrl_check_timeout(): 0 if the domain may be read now, else the milliseconds until its
   * credit is back to zero.
   */
  blockedFor(domid: number): number {
    const d = this.credit.get(domid);
    if (d === undefined) return 0;
    // C's main loop updates every domain's credit each time round (initialize_fds), so idle
    // domains' surplus reaches the reserve, which a domain in debt draws on.
    const now = this.clockMs();
    for (const other of this.credit.values()) if (other !== d) this.update(other, now);
    this.update(d, now);
    if (d.credit >= 0) return 0;
    return Math.max(1, Math.floor((-d.credit * 1000 * this.credit.size) / this.rate));
  }

  creditOf(domid: number): number | undefined {
    return this.credit.get(domid)?.credit;
  }
}

/**
 * The seed's limiter, an option (`--seed-rate-limit N`, off by default): each unprivileged
 * domain's requests are read at most N a second (a bucket of N requests refilled continuously);
 * a domain over it is not read from until the bucket has a request's worth again. Not in Xen.
 */
export class SeedRateLimit {
  private readonly buckets = new Map<number, { tokens: number; stamp: number }>();

  constructor(readonly perSecond: number, private readonly clockMs: () => number) {}

  private bucket(domid: number): { tokens: number; stamp: number } {
    const now = this.clockMs();
    let b = this.buckets.get(domid);
    if (b === undefined) {
      b = { tokens: this.perSecond, stamp: now };
      this.buckets.set(domid, b);
    }
    b.tokens = Math.min(this.perSecond, b.tokens + ((now - b.stamp) * this.perSecond) / 1000);
    b.stamp = now;
    return b;
  }

  /** One request read from the domain. */
  take(domid: number): void {
    this.bucket(domid).tokens -= 1;
  }

  /** 0 if the domain may be read now, else the milliseconds until it may. */
  blockedFor(domid: number): number {
    const b = this.bucket(domid);
    return b.tokens >= 1 ? 0 : Math.max(1, Math.ceil(((1 - b.tokens) * 1000) / this.perSecond));
  }

  forget(domid: number): void {
    this.buckets.delete(domid);
  }
}
