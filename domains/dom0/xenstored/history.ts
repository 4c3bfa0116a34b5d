// oxenstored's transaction history (profile ocaml): what guests changed while transactions were
// open, kept so that a failed replay can find the domain whose change made it fail. Nothing of
// it shows on the wire but one answer: a transaction holding a request oxenstored cannot replay
// (TRANSACTION_START, WATCH, INTRODUCE... sent with its tx_id) whose replay failed gets EINVAL
// instead of EAGAIN when a history record's "before" tree would have let its earlier requests
// pass — the judge re-runs the requests there and trips over the one it cannot run.
//
// A record's tree is a snapshot kept by pre-images (Transaction as a SnapshotListener), so each
// costs what changed after it. oxenstored bounds the history by time only (records older than
// the oldest transaction started in the last conflict-max-history-seconds go at every
// TRANSACTION_END, and at the main loop's frequent_ops once that many seconds have passed since
// the last); here it is also capped at MAX_RECORDS, the oldest record going first.

import type { Connection } from './core.ts';
import type { Store } from './store.ts';
import { Transaction } from './transaction.ts';

/** conflict-max-history-seconds: oxenstored's default (and the value its packaged config sets). */
export const CONFLICT_MAX_HISTORY_SECONDS = 0.05;

/** A bound oxenstored does not have: records kept at most (a guest cannot grow the daemon with them). */
export const MAX_RECORDS = 256;

interface HistoryRecord {
  /** The connection whose change this is (kept after it closes, as oxenstored keeps `con`). */
  readonly conn: number;
  /** Transaction.counter after this record (finish_count). */
  readonly seq: number;
  /** The tree before the change: a request outside a transaction, or a transaction's start. */
  readonly before: Transaction;
}

interface ShortRunning {
  readonly startedAt: number;
  readonly tx: Transaction;
}

export class TransactionHistory {
  /** Newest last. */
  private records: HistoryRecord[] = [];
  /** Transactions started in the last maxAge seconds (short_running_txns), oldest first. */
  private shortRunning: ShortRunning[] = [];
  private seq = 0;
  /** frequent_ops' next_frequent_ops: when the main loop trims again (0: at its first turn). */
  private nextTrim = 0;
  /** Transaction.counter when each open transaction started (start_count). */
  private readonly startSeq = new WeakMap<Transaction, number>();

  constructor(
    private readonly store: Store,
    private readonly clock: () => number,
    private readonly maxAge = CONFLICT_MAX_HISTORY_SECONDS,
  ) {}

  get size(): number {
    return this.records.length;
  }

  /** Transaction.make for a client's transaction (not the replay's own). */
  started(tx: Transaction): void {
    this.startSeq.set(tx, this.seq);
    this.shortRunning.push({ startedAt: this.clock(), tx });
  }

  /**
   * Whether a change made now could matter to a judge: only while some transaction is open. Every
   * open transaction and every record is a snapshot of the store, so more snapshots than records
   * means one is open (a scratch snapshot of the daemon's own errs towards keeping a record).
   */
  wanted(): boolean {
    return this.store.snapshots.size > this.records.length;
  }

  /** The tree as it is now, to be the `before` of a record pushed after the change. */
  snapshot(): Transaction {
    return new Transaction(0, this.store, 'ocaml', 0);
  }

  /**
   * record_commit(): a guest's change is remembered (dom0 and sockets are free to conflict and
   * leave no record). Takes ownership of `before` (closed when the record goes).
   */
  push(conn: Connection, before: Transaction): void {
    this.seq++;
    if (conn.kind !== 'domain' || conn.domid === 0) {
      before.close();
      return;
    }
    this.records.push({ conn: conn.id, seq: this.seq, before });
    if (this.records.length > MAX_RECORDS) this.records.shift()!.before.close();
  }

  /** A change by dom0 or a socket: counted (finish_count moves on), never recorded. */
  count(): void {
    this.seq++;
  }

  /**
   * History.trim at the end of a transaction: forget short-running transactions older than
   * maxAge and `ended`; keep only records newer than the oldest one left (none left: none kept).
   */
  trim(ended?: Transaction): void {
    const cutoff = this.clock() - this.maxAge;
    this.shortRunning = this.shortRunning.filter((s) => s.startedAt >= cutoff && s.tx !== ended);
    const oldest = this.shortRunning[0];
    const since = oldest === undefined ? Infinity : this.startSeq.get(oldest.tx) ?? Infinity;
    const keep: HistoryRecord[] = [];
    for (const r of this.records) {
      if (r.seq > since) keep.push(r);
      else r.before.close();
    }
    this.records = keep;
  }

  /**
   * frequent_ops, at the top of each turn of oxenstored's main loop (here: before each request):
   * once conflict-max-history-seconds have passed since the last, History.trim () with no
   * transaction ended - a transaction older than that protects nothing any more.
   */
  tick(): void {
    const now = this.clock();
    if (now <= this.nextTrim) return;
    this.trim();
    this.nextTrim = now + this.maxAge;
  }

  /**
   * The `before` trees of records made after `tx` started by connections other than `conn`,
   * newest first (History.filter_connections' order).
   */
  beforeTrees(tx: Transaction, conn: number): Transaction[] {
    const since = this.startSeq.get(tx);
    if (since === undefined) return [];
    const out: Transaction[] = [];
    for (let i = this.records.length - 1; i >= 0; i--) {
      const r = this.records[i];
      if (r.seq > since && r.conn !== conn) out.push(r.before);
    }
    return out;
  }
}
