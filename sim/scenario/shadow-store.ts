// The "every committed write is present" invariant: a shadow of the XenStore tree rebuilt from
// the trace alone - each WRITE, MKDIR and RM xenstored answered OK outside a transaction, each
// transaction's operations when its TRANSACTION_END answered OK, and the subtrees xenstored
// deleted for a dead owner - compared with the live tree. A committed write missing from the
// tree, or a change no committed request explains, is a lost or phantom write.
import type { NodeDump } from '../../domains/dom0/toolstack/toolstack.ts';
import { canonicalize, domainPath, isSpecial, parentOf } from '../../domains/dom0/xenstored/path.ts';
import type { TraceEvent } from '../host-runtime.ts';

type Op = { readonly type: 'WRITE'; readonly path: string; readonly value: string } | { readonly type: 'MKDIR' | 'RM'; readonly path: string };

const NUL = '\\0';

export class ShadowStore {
  private readonly nodes = new Map<string, string>();
  /** Requests awaiting their reply, by connection and req_id. */
  private readonly pending = new Map<string, { type: string; tx: number; payload: string; domid: number }>();
  /** Operations of open transactions, by connection and tx id. */
  private readonly txs = new Map<string, Op[]>();

  constructor(initial: readonly NodeDump[]) {
    for (const n of initial) this.nodes.set(n.path, n.value);
  }

  private op(type: string, payload: string, domid: number): Op | undefined {
    const cut = payload.indexOf(NUL);
    const raw = cut < 0 ? payload : payload.slice(0, cut);
    if (raw === '' || isSpecial(raw)) return undefined;
    const path = canonicalize(domainPath(domid), raw);
    if (type === 'WRITE') return { type, path, value: cut < 0 ? '' : payload.slice(cut + NUL.length) };
    if (type === 'MKDIR' || type === 'RM') return { type, path };
    return undefined;
  }

  private apply(o: Op): void {
    if (o.type === 'RM') {
      for (const p of [...this.nodes.keys()]) if (p === o.path || p.startsWith(`${o.path}/`)) this.nodes.delete(p);
      return;
    }
    // Missing ancestors come into being with empty values.
    for (let p = parentOf(o.path); p !== '/' && !this.nodes.has(p); p = parentOf(p)) this.nodes.set(p, '');
    if (o.type === 'WRITE') this.nodes.set(o.path, o.value);
    else if (!this.nodes.has(o.path)) this.nodes.set(o.path, '');
  }

  /** Feeds one trace event (in trace order). */
  see(e: TraceEvent): void {
    if (e.kind === 'xenstored' && e.op === 'owned_nodes_removed') {
      for (const p of e.paths as string[]) this.apply({ type: 'RM', path: p });
      return;
    }
    if (e.kind !== 'xenstore') return;
    const key = `${String(e.conn)}:${String(e.req_id)}`;
    const type = String(e.type);
    const payload = String(e.payload);
    if (e.dir === 'IN') {
      this.pending.set(key, { type, tx: Number(e.tx_id), payload, domid: Number(e.domid) });
      return;
    }
    if (type === 'WATCH_EVENT') return;
    const req = this.pending.get(key);
    if (!req) return;
    this.pending.delete(key);
    if (type === 'ERROR') return;
    const txKey = (tx: number): string => `${String(e.conn)}:${tx}`;
    if (req.type === 'TRANSACTION_START') {
      this.txs.set(txKey(Number(payload.split(NUL)[0])), []);
      return;
    }
    if (req.type === 'TRANSACTION_END') {
      const ops = this.txs.get(txKey(req.tx));
      this.txs.delete(txKey(req.tx));
      if (ops && req.payload.startsWith('T')) for (const o of ops) this.apply(o);
      return;
    }
    const o = this.op(req.type, req.payload, req.domid);
    if (!o) return;
    if (req.tx === 0) this.apply(o);
    else this.txs.get(txKey(req.tx))?.push(o);
  }

  /** What differs between the shadow and the live tree (undefined if nothing). */
  diff(live: readonly NodeDump[]): string | undefined {
    const seen = new Set<string>();
    const problems: string[] = [];
    for (const n of live) {
      seen.add(n.path);
      const want = this.nodes.get(n.path);
      if (want === undefined) problems.push(`${n.path} exists, but no committed request created it`);
      else if (want !== n.value) problems.push(`${n.path} = "${n.value}", committed "${want}"`);
    }
    for (const p of this.nodes.keys()) if (!seen.has(p)) problems.push(`${p} was committed but is gone`);
    return problems.length ? `${problems.slice(0, 5).join('; ')}${problems.length > 5 ? ` (+${problems.length - 5} more)` : ''}` : undefined;
  }
}
