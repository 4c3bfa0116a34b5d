// Puts a xenbus state change in the trace where it happened: at the commit of the transaction
// that wrote `.../state`, as xenstored saw it - not when the writer's XS_TRANSACTION_END reply got
// back to it. Replies reach domains in scheduler order, so ordering by return could show a backend
// Connected before the frontend Initialised it reacted to.
//
// A bus announces the change it is committing (a xenbus event carrying the `tx_id` of its
// transaction) before it sends XS_TRANSACTION_END. That announcement is held here and emitted
// right after xenstored's reply that committed the write: XS_TRANSACTION_END OK for the
// transaction, or XS_WRITE OK outside one. A transaction that fails (EAGAIN) commits nothing, so
// its announcement is dropped when the retry replaces it or never emitted.
//
// Pure and streaming: events go in one at a time and come out in commit order.

import { type TraceRecord, absolutePath, isNum, isStr, isXenstore, payloadFields, type XsRecord } from './events.ts';

/** At most this many remembered writes/commits with no announcement yet (a hostile guest may write many state paths). */
const MAX_REMEMBERED = 4096;

interface Announced {
  readonly ev: TraceRecord;
  readonly tx: number;
}

interface StateWrite {
  readonly path: string;
  readonly value: string;
  readonly tx: number;
}

const isStatePath = (p: string): boolean => p.endsWith('/state');

/** A bounded insertion-ordered map: the oldest entry goes when full. */
function remember<K, V>(m: Map<K, V>, k: K, v: V): void {
  m.delete(k);
  m.set(k, v);
  if (m.size > MAX_REMEMBERED) m.delete(m.keys().next().value as K);
}

export class XenbusCommitOrder {
  /** Announced state changes by `domid path`, waiting for their commit. */
  private readonly announced = new Map<string, Announced>();
  /** XS_WRITEs of a state node awaiting their reply, by `domid conn req_id`. */
  private readonly writes = new Map<string, StateWrite>();
  /** State writes done inside a transaction, by `domid conn tx`: they commit with it. */
  private readonly inTx = new Map<string, StateWrite[]>();
  /** XS_TRANSACTION_END requests awaiting their reply, by `domid conn req_id` -> tx. */
  private readonly ends = new Map<string, number>();
  /** Commits no announcement was waiting for (free-running threads may deliver it late). */
  private readonly committed = new Map<string, { tx: number; value: string; t: number | undefined }>();

  constructor(private readonly emit: (e: TraceRecord) => void) {}

  push(e: TraceRecord): void {
    if (e.kind === 'xenbus' && isNum(e.tx_id) && isNum(e.domid) && isStr(e.path)) {
      this.announce(e);
      return;
    }
    this.emit(e);
    if (isXenstore(e)) this.xenstore(e);
  }

  private announce(e: TraceRecord): void {
    const { tx_id: tx, ...ev } = e;
    const key = `${String(e.domid)} ${absolutePath(e.path as string, e.domid)}`;
    const done = this.committed.get(key);
    if (done && done.tx === tx && done.value === String(e.state)) {
      // Its commit was seen first: emit now, stamped with the commit's time.
      this.committed.delete(key);
      this.emit({ ...ev, ...(done.t !== undefined ? { t: done.t } : {}) } as TraceRecord);
      return;
    }
    this.announced.set(key, { ev: ev as TraceRecord, tx: tx as number });
    if (this.announced.size > MAX_REMEMBERED) this.announced.delete(this.announced.keys().next().value!);
  }

  private xenstore(e: XsRecord): void {
    const conn = `${e.domid} ${e.conn}`;
    const req = `${conn} ${e.req_id}`;
    if (e.dir === 'IN') {
      if (e.type === 'WRITE' || e.type === 'XS_WRITE') {
        const [path, value = ''] = payloadFields(e.payload);
        if (path !== undefined && isStatePath(path)) remember(this.writes, req, { path: absolutePath(path, e.domid), value, tx: e.tx_id });
      } else if ((e.type === 'TRANSACTION_END' || e.type === 'XS_TRANSACTION_END') && this.inTx.has(`${conn} ${e.tx_id}`)) {
        remember(this.ends, req, e.tx_id);
      }
      return;
    }
    const w = this.writes.get(req);
    if (w) {
      this.writes.delete(req);
      if (e.type !== 'WRITE' && e.type !== 'XS_WRITE') return;
      if (w.tx === 0) this.commit(e, w);
      else {
        const k = `${conn} ${w.tx}`;
        const list = this.inTx.get(k) ?? [];
        list.push(w);
        remember(this.inTx, k, list);
      }
      return;
    }
    const tx = this.ends.get(req);
    if (tx === undefined) return;
    this.ends.delete(req);
    const list = this.inTx.get(`${conn} ${tx}`) ?? [];
    this.inTx.delete(`${conn} ${tx}`);
    if (e.type !== 'TRANSACTION_END' && e.type !== 'XS_TRANSACTION_END') return;
    for (const w of list) this.commit(e, w);
  }

  /** `w` is now in the store: the announcement waiting for it is emitted here. */
  private commit(at: XsRecord, w: StateWrite): void {
    const key = `${at.domid} ${w.path}`;
    const a = this.announced.get(key);
    if (a && a.tx === w.tx && String(a.ev.state) === w.value) {
      this.announced.delete(key);
      this.emit({ ...a.ev, ...(at.t !== undefined ? { t: at.t } : {}) });
      return;
    }
    remember(this.committed, key, { tx: w.tx, value: w.value, t: at.t });
  }
}
