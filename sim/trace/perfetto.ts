// A simulator trace as Chrome Trace Event Format JSON (the "JSON Object Format"), which the
// Perfetto UI and chrome://tracing open: one process per domain, one thread per component
// (its xenstored connection, the hypervisor, each xenbus device, the scenario), an instant per
// event, xenstore transactions as async spans and xenbus states as slices.
//
// Pure: events in, a JSON-ready object out.

import {
  type TraceRecord, driverName, domOf, domainName, isNum, isStr, isXenstore, payloadFields,
  stableJson, summary, timeOf, xenbusOf, xsType,
} from './events.ts';

/** One Chrome trace event (the subset of fields this module writes). */
export interface ChromeTraceEvent {
  readonly name: string;
  readonly ph: string;
  readonly ts: number;
  readonly pid: number;
  readonly tid: number;
  readonly cat?: string;
  readonly id?: string;
  readonly s?: 'g' | 'p' | 't';
  readonly dur?: number;
  readonly args?: Readonly<Record<string, unknown>>;
}

export interface ChromeTrace {
  readonly traceEvents: ChromeTraceEvent[];
  readonly displayTimeUnit: 'ns';
}

export interface PerfettoOptions {
  /** Process names by domid (default Domain-0, dom1, ...). */
  readonly names?: Readonly<Record<number, string>>;
  /**
   * Lockstep runs many events at one virtual instant. Each event that would not come after its
   * predecessor is placed this many ns after it, so the viewer keeps the trace's order (default
   * 1 ns, far below the steps virtual time takes). The true time stays in args.t.
   */
  readonly tieStepNs?: number;
  /** Events without a time (free-running traces) are spaced this many ns apart (default 1000). */
  readonly untimedStepNs?: number;
}

/** The process for events that name no domain (scenario steps, faults): above any real domid. */
export const HOST_PID = 0x8000;

/** The component an event belongs to: its thread's name within its domain's process. */
function componentOf(e: TraceRecord): string {
  if (isXenstore(e)) return `xenstored conn ${e.conn}`;
  const xb = xenbusOf(e);
  if (xb) {
    const type = xb.device.split('/')[0];
    const side = xb.role === 'frontend' || xb.role === 'backend' ? xb.role : undefined;
    return side ? `${driverName(type, side)} ${xb.device}` : `${xb.role} ${xb.device}`;
  }
  switch (e.kind) {
    case 'evtchn':
    case 'gnttab':
    case 'hypercall':
      return 'hypervisor';
    case 'step':
      return 'scenario';
    default:
      return e.kind;
  }
}

/** The event's fields as slice arguments (everything but the kind, keys sorted for stable output). */
function argsOf(e: TraceRecord): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  for (const k of Object.keys(e).sort()) if (k !== 'kind' && e[k] !== undefined) args[k] = e[k];
  return args;
}

const usOf = (ns: number): number => ns / 1000;

export function toPerfetto(events: Iterable<TraceRecord>, opts: PerfettoOptions = {}): ChromeTrace {
  const tieStep = opts.tieStepNs ?? 1;
  const untimedStep = opts.untimedStepNs ?? 1000;

  // Processes and their threads, numbered in order of first appearance (deterministic output).
  const threads = new Map<number, Map<string, number>>();
  const place = (e: TraceRecord): { pid: number; tid: number } => {
    const pid = domOf(e) ?? HOST_PID;
    let byName = threads.get(pid);
    if (!byName) threads.set(pid, (byName = new Map()));
    const name = componentOf(e);
    let tid = byName.get(name);
    if (tid === undefined) byName.set(name, (tid = byName.size + 1));
    return { pid, tid };
  };

  const out: ChromeTraceEvent[] = [];
  // xenstore: requests awaiting their reply, and transactions open, by connection.
  const pending = new Map<string, { type: string; tx_id: number; payload: string }>();
  const openTx = new Map<string, { name: string; pid: number; tid: number }>();
  // xenbus: each device thread's state changes, turned into slices once the next change is known.
  const states = new Map<string, { pid: number; tid: number; at: { ns: number; name: string; args: Record<string, unknown> }[] }>();

  let prev: number | undefined;
  for (const e of events) {
    const t = timeOf(e);
    const ns = prev === undefined ? t ?? 0 : t === undefined ? prev + untimedStep : Math.max(t, prev + tieStep);
    prev = ns;
    const { pid, tid } = place(e);
    const ts = usOf(ns);

    const xb = xenbusOf(e);
    if (xb) {
      const key = `${pid}/${tid}`;
      let dev = states.get(key);
      if (!dev) states.set(key, (dev = { pid, tid, at: [] }));
      dev.at.push({ ns, name: xb.stateName, args: argsOf(e) });
      continue;
    }

    out.push({ name: summary(e), ph: 'i', s: 't', ts, pid, tid, cat: e.kind, args: argsOf(e) });

    if (!isXenstore(e)) continue;
    const type = xsType(e);
    const reqKey = `${e.conn}:${e.req_id}`;
    if (e.dir === 'IN') {
      pending.set(reqKey, { type, tx_id: e.tx_id, payload: e.payload });
      continue;
    }
    // A reply (or a watch event, which answers no request): what was asked decides what it ends.
    const req = type === 'WATCH_EVENT' ? undefined : pending.get(reqKey);
    if (req) pending.delete(reqKey);
    const asked = req?.type ?? type;
    if (asked === 'TRANSACTION_START' && type === 'TRANSACTION_START') {
      // The reply's payload is the new transaction's id.
      const txid = payloadFields(e.payload)[0] ?? '?';
      const id = `${e.conn}:${txid}`;
      const name = `transaction ${txid}`;
      openTx.set(id, { name, pid, tid });
      out.push({ name, ph: 'b', cat: 'transaction', id, ts, pid, tid, args: { conn: e.conn, tx_id: Number(txid) } });
    } else if (asked === 'TRANSACTION_END') {
      const id = `${e.conn}:${req?.tx_id ?? e.tx_id}`;
      const tx = openTx.get(id);
      if (!tx) continue;
      openTx.delete(id);
      const commit = req ? payloadFields(req.payload)[0] === 'T' : undefined;
      const result = type === 'ERROR' ? payloadFields(e.payload)[0] ?? 'ERROR' : 'OK';
      out.push({ name: tx.name, ph: 'e', cat: 'transaction', id, ts, pid: tx.pid, tid: tx.tid, args: { commit, result } });
    }
  }

  const endNs = prev ?? 0;
  // Transactions the trace leaves open end with it, marked so.
  for (const [id, tx] of openTx) {
    out.push({ name: tx.name, ph: 'e', cat: 'transaction', id, ts: usOf(endNs), pid: tx.pid, tid: tx.tid, args: { unfinished: true } });
  }
  // Each state lasts until the device's next state change, the last one until the trace ends.
  for (const dev of states.values()) {
    dev.at.forEach((s, i) => {
      const until = dev.at[i + 1]?.ns ?? endNs;
      out.push({ name: s.name, ph: 'X', ts: usOf(s.ns), dur: usOf(until - s.ns), pid: dev.pid, tid: dev.tid, cat: 'xenbus', args: s.args });
    });
  }
  out.sort((a, b) => a.ts - b.ts);

  const meta: ChromeTraceEvent[] = [];
  for (const pid of [...threads.keys()].sort((a, b) => a - b)) {
    const pname = pid === HOST_PID ? 'host' : domainName(pid, opts.names);
    meta.push({ name: 'process_name', ph: 'M', ts: 0, pid, tid: 0, args: { name: pname } });
    meta.push({ name: 'process_sort_index', ph: 'M', ts: 0, pid, tid: 0, args: { sort_index: pid } });
    for (const [tname, tid] of threads.get(pid)!) {
      meta.push({ name: 'thread_name', ph: 'M', ts: 0, pid, tid, args: { name: tname } });
      meta.push({ name: 'thread_sort_index', ph: 'M', ts: 0, pid, tid, args: { sort_index: tid } });
    }
  }
  return { traceEvents: [...meta, ...out], displayTimeUnit: 'ns' };
}

/** JSON text of a trace, one event per line (readable diffs, still one JSON document). */
export function perfettoJson(trace: ChromeTrace): string {
  return `{"displayTimeUnit":${JSON.stringify(trace.displayTimeUnit)},"traceEvents":[\n${
    trace.traceEvents.map((e) => stableJson(e)).join(',\n')}\n]}\n`;
}

// ------------------------------------------------------------------------------ validation

/** Every phase the Trace Event Format defines ('I' and 'F' are its deprecated spellings). */
const PHASES = new Set([
  'B', 'E', 'X', 'i', 'I', 'C', 'b', 'n', 'e', 'S', 'T', 'p', 'F', 's', 't', 'f', 'P', 'N', 'O', 'D', 'M', 'V', 'v', 'R', 'c', '(', ')',
]);
/** Async and flow phases: matched by cat and id (or id2), so both are required. */
const ID_PHASES = new Set(['b', 'n', 'e', 'S', 'T', 'p', 'F', 's', 't', 'f', 'N', 'O', 'D']);
const METADATA = new Set(['process_name', 'process_labels', 'process_sort_index', 'thread_name', 'thread_sort_index']);

const hasId = (ev: Record<string, unknown>): boolean => {
  if (isStr(ev.id) || isNum(ev.id)) return true;
  const id2 = ev.id2;
  return typeof id2 === 'object' && id2 !== null && (isStr((id2 as Record<string, unknown>).local)
    || isStr((id2 as Record<string, unknown>).global) || isNum((id2 as Record<string, unknown>).local)
    || isNum((id2 as Record<string, unknown>).global));
};

/**
 * Checks a Chrome trace (object or array form) for the fields the Trace Event Format requires
 * of each phase. Returns the problems found, none for a valid trace. Timestamps need not be
 * sorted (the format does not ask it); an async end with no begin before it is reported.
 */
export function validateTraceEventJson(obj: unknown): string[] {
  const errors: string[] = [];
  let list: unknown;
  if (Array.isArray(obj)) list = obj;
  else if (typeof obj === 'object' && obj !== null) {
    const root = obj as Record<string, unknown>;
    list = root.traceEvents;
    if (!Array.isArray(list)) return ['traceEvents: missing or not an array'];
    if (root.displayTimeUnit !== undefined && root.displayTimeUnit !== 'ms' && root.displayTimeUnit !== 'ns') {
      errors.push(`displayTimeUnit: must be "ms" or "ns", not ${JSON.stringify(root.displayTimeUnit)}`);
    }
  } else return ['trace: neither an array of events nor an object with traceEvents'];

  const events = list as unknown[];
  const asyncBegun = new Set<string>();
  const ends: { at: string; key: string; ts: number }[] = [];
  const begins: { key: string; ts: number }[] = [];
  events.forEach((raw, i) => {
    const at = `traceEvents[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      errors.push(`${at}: not an object`);
      return;
    }
    const ev = raw as Record<string, unknown>;
    const ph = ev.ph;
    if (!isStr(ph) || !PHASES.has(ph)) {
      errors.push(`${at}: ph ${JSON.stringify(ph)} is not a Trace Event Format phase`);
      return;
    }
    const where = `${at} (ph '${ph}')`;
    // An end event may omit its name: it closes whatever B is open on its thread.
    if (ph !== 'E' && !isStr(ev.name)) errors.push(`${where}: name must be a string`);
    if (!Number.isInteger(ev.pid)) errors.push(`${where}: pid must be an integer`);
    if (!Number.isInteger(ev.tid)) errors.push(`${where}: tid must be an integer`);
    // Metadata carries no time; every other phase places its event on the timeline.
    if (ph !== 'M' && !isNum(ev.ts)) errors.push(`${where}: ts must be a number (microseconds)`);
    if (ev.args !== undefined && (typeof ev.args !== 'object' || ev.args === null || Array.isArray(ev.args))) {
      errors.push(`${where}: args must be an object`);
    }
    const args = (ev.args ?? {}) as Record<string, unknown>;
    if (ph === 'X' && !(isNum(ev.dur) && ev.dur >= 0)) errors.push(`${where}: a complete event needs dur >= 0`);
    if ((ph === 'i' || ph === 'I') && ev.s !== undefined && ev.s !== 'g' && ev.s !== 'p' && ev.s !== 't') {
      errors.push(`${where}: instant scope s must be g, p or t`);
    }
    if (ph === 'C') {
      const values = Object.values(args);
      if (ev.args === undefined || values.length === 0 || !values.every(isNum)) {
        errors.push(`${where}: a counter needs args with numeric series values`);
      }
    }
    if (ID_PHASES.has(ph)) {
      if (!isStr(ev.cat)) errors.push(`${where}: cat is required (async events are matched by cat and id)`);
      if (!hasId(ev)) errors.push(`${where}: id (or id2) is required`);
      const key = `${String(ev.cat)}\u0000${stableJson(ev.id ?? ev.id2)}`;
      const ts = isNum(ev.ts) ? ev.ts : 0;
      if (ph === 'b') begins.push({ key, ts });
      if (ph === 'e') ends.push({ at: where, key, ts });
    }
    if (ph === 'M') {
      const name = ev.name;
      if (!isStr(name) || !METADATA.has(name)) errors.push(`${where}: unknown metadata name ${JSON.stringify(name)}`);
      else if ((name === 'process_name' || name === 'thread_name') && !isStr(args.name)) {
        errors.push(`${where}: ${name} needs args.name`);
      } else if (name.endsWith('_sort_index') && !Number.isInteger(args.sort_index)) {
        errors.push(`${where}: ${name} needs an integer args.sort_index`);
      } else if (name === 'process_labels' && !isStr(args.labels)) {
        errors.push(`${where}: process_labels needs args.labels`);
      }
    }
  });
  // An async end must follow a begin with the same cat and id (in time, not in file order).
  begins.sort((a, b) => a.ts - b.ts);
  let next = 0;
  for (const end of [...ends].sort((a, b) => a.ts - b.ts)) {
    for (; next < begins.length && begins[next].ts <= end.ts; next++) asyncBegun.add(begins[next].key);
    if (!asyncBegun.has(end.key)) errors.push(`${end.at}: async end with no begin of the same cat and id before it`);
  }
  return errors;
}

