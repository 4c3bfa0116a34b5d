// Replay of a field trace: the -T file of a real C xenstored (the format trace.ts writes too) is
// re-run against xensim's daemon, connection by connection, and every reply or event that differs
// from the recorded one is reported.
//
// The trace does not say which transaction a request belonged to (C's trace_io() prints the type
// and payload only), and a client may mix requests inside and outside its open transactions. So
// a request of a connection with an open transaction is a choice (its newest open transaction,
// older ones, or none), and the replay searches the choices depth-first: the first assignment
// under which every reply matches wins. The core is deterministic, so a run is rebuilt from the
// start with a list of choices instead of snapshotting the daemon.

import { XsdSockmsgType as T, xsTypeName, type XsMessage } from '../../../hypervisor/public/io/xs_wire.ts';
import type { Xenstored } from './core.ts';

const enc = (s: string): Uint8Array => Buffer.from(s);

/** A message in or out, as traced. */
export interface TraceIo {
  readonly kind: 'IN' | 'OUT';
  readonly conn: string;
  readonly type: number;
  readonly body: string;
  readonly line: number;
}

export type TraceEntry =
  | { readonly kind: 'session'; readonly line: number }
  | { readonly kind: 'create' | 'destroy'; readonly conn: string; readonly line: number }
  | TraceIo;

const TYPE_BY_NAME = new Map<string, number>();
for (const [name, value] of Object.entries(T)) {
  if (typeof value === 'number') TYPE_BY_NAME.set(name.slice(3), value);
}

// "IN 0x55d0c1b2c3d0 20261206 08:11:41 READ (path )": direction, connection, date, time, type.
const IO = /^(?:io: )?(IN|OUT) (\S+) \d{8} \d\d:\d\d:\d\d (\S+) \(/;
const CONN = /^(CREATE|DESTROY) connection (\S+)$/;

/** Parses a trace file; lines it does not know (wrl:, DESTROY transaction, store checks) are skipped. */
export function parseTrace(text: string): TraceEntry[] {
  const lines = text.split('\n');
  const out: TraceEntry[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === '***') {
      out.push({ kind: 'session', line: i + 1 });
      continue;
    }
    const c = CONN.exec(line);
    if (c) {
      out.push({ kind: c[1] === 'CREATE' ? 'create' : 'destroy', conn: c[2], line: i + 1 });
      continue;
    }
    const m = IO.exec(line);
    if (!m) continue;
    // A payload may hold newlines: the entry runs on to the first line ending in ")".
    let text = line.slice(m[0].length);
    const first = i;
    while (!text.endsWith(')') && i + 1 < lines.length) text += `\n${lines[++i]}`;
    const type = TYPE_BY_NAME.get(m[3]) ?? Number(m[3]);
    if (!Number.isInteger(type)) continue;
    out.push({ kind: m[1] as 'IN' | 'OUT', conn: m[2], type, body: text.slice(0, -1), line: first + 1 });
  }
  return out;
}

/**
 * The request's payload back from its traced form, where every NUL was printed as a blank. Paths,
 * permissions and numbers hold no blanks; a WRITE's value (after the path) and a watch token (up to
 * the final NUL) are taken as printed.
 */
export function payloadOf(type: number, body: string): Uint8Array {
  const nul = (s: string): string => s.replaceAll(' ', '\0');
  const firstBlank = body.indexOf(' ');
  switch (type) {
    case T.XS_WRITE:
      return enc(firstBlank < 0 ? body : `${body.slice(0, firstBlank)}\0${body.slice(firstBlank + 1)}`);
    case T.XS_WATCH:
    case T.XS_UNWATCH: {
      if (firstBlank < 0 || !body.endsWith(' ')) return enc(nul(body));
      return enc(`${body.slice(0, firstBlank)}\0${body.slice(firstBlank + 1, -1)}\0`);
    }
    default:
      return enc(nul(body));
  }
}

/** A message as the trace prints it: type name and payload with NULs as blanks. */
export function traced(msg: XsMessage): string {
  return `${xsTypeName(msg.type)} (${Buffer.from(msg.payload).toString('latin1').replaceAll('\0', ' ')})`;
}

export interface ReplayDifference {
  /** Line of the trace where the recorded message is (or of the request, if xensim sent more). */
  readonly line: number;
  readonly conn: string;
  /** The request that produced it, as traced. */
  readonly request: string;
  readonly expected: string | undefined;
  readonly got: string | undefined;
}

export interface ReplayReport {
  readonly sessions: number;
  readonly requests: number;
  /** Replies and events compared. */
  readonly compared: number;
  /** Requests whose transaction the trace left open to choice, and runs the search took. */
  readonly choices: number;
  readonly runs: number;
  readonly differences: ReplayDifference[];
}

/** Requests a client may send inside a transaction (TRANSACTION_END only inside one). */
const IN_TX = new Set<number>([T.XS_READ, T.XS_WRITE, T.XS_MKDIR, T.XS_RM, T.XS_DIRECTORY, T.XS_DIRECTORY_PART,
  T.XS_GET_PERMS, T.XS_SET_PERMS, T.XS_TRANSACTION_END]);

interface Run {
  /** Choices met (number of options each), in order. */
  readonly options: number[];
  readonly requests: number;
  readonly compared: number;
  readonly differences: ReplayDifference[];
  /** Index in the entries of the first difference (Infinity: none). */
  readonly failedAt: number;
}

/**
 * Runs one session's entries on a fresh daemon with the given choices (an index per choice met;
 * missing ones take 0). Stops at the first difference unless `all`.
 */
function runSession(entries: readonly TraceEntry[], daemon: Xenstored, choices: readonly number[], all: boolean, tolerated: ReadonlySet<number> = new Set()): Run {
  const conns = new Map<string, number>();
  const names = new Map<number, string>();
  const open = new Map<string, number[]>();
  const expected = new Map<string, { text: string; line: number }[]>();
  const produced = new Map<string, { text: string; request: TraceIo }[]>();
  const options: number[] = [];
  const differences: ReplayDifference[] = [];
  let requests = 0;
  let compared = 0;
  let pendingDomain: number | undefined;
  // The request each connection sent last: an event it receives is reported after it.
  const lastRequest = new Map<string, TraceIo>();
  const queue = <V>(m: Map<string, V[]>, k: string): V[] => {
    let q = m.get(k);
    if (q === undefined) m.set(k, (q = []));
    return q;
  };
  const compare = (conn: string, at: number): boolean => {
    const want = queue(expected, conn);
    const got = queue(produced, conn);
    while (want.length > 0 && got.length > 0) {
      const w = want.shift()!;
      const g = got.shift()!;
      compared++;
      if (w.text !== g.text) {
        differences.push({ line: w.line, conn, request: `${xsTypeName(g.request.type)} (${g.request.body})`, expected: w.text, got: g.text });
        if (!all && !tolerated.has(at)) return false;
      }
    }
    return true;
  };
  const connect = (name: string): number => {
    let id = conns.get(name);
    if (id !== undefined) return id;
    id = daemon.connectSocket();
    conns.set(name, id);
    names.set(id, name);
    return id;
  };
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    switch (e.kind) {
      case 'session':
        break;
      case 'create': {
        // C traces a domain's connection when INTRODUCE creates it: the next one after it.
        const id = pendingDomain !== undefined ? daemon.domainConnection(pendingDomain) : undefined;
        pendingDomain = undefined;
        if (id !== undefined) {
          conns.set(e.conn, id);
          names.set(id, e.conn);
        } else {
          conns.delete(e.conn);
          connect(e.conn);
        }
        open.set(e.conn, []);
        break;
      }
      case 'destroy': {
        const id = conns.get(e.conn);
        if (id !== undefined) daemon.disconnect(id);
        conns.delete(e.conn);
        break;
      }
      case 'OUT':
        queue(expected, e.conn).push({ text: `${xsTypeName(e.type)} (${e.body})`, line: e.line });
        if (!compare(e.conn, i) && !all) return { options, requests, compared, differences, failedAt: i };
        break;
      case 'IN': {
        requests++;
        const id = connect(e.conn);
        const txs = queue(open, e.conn);
        let tx = 0;
        if (IN_TX.has(e.type) && txs.length > 0) {
          // Newest open transaction first, then older ones, then none (not for TRANSACTION_END).
          const candidates = [...txs].reverse();
          if (e.type !== T.XS_TRANSACTION_END) candidates.push(0);
          if (candidates.length > 1) {
            const k = choices[options.length] ?? 0;
            options.push(candidates.length);
            tx = candidates[k];
          } else {
            tx = candidates[0];
          }
        }
        const payload = payloadOf(e.type, e.body);
        const out = daemon.handle(id, { type: e.type, req_id: requests, tx_id: tx, payload });
        lastRequest.set(e.conn, e);
        for (const d of out.deliveries) {
          const who = names.get(d.conn);
          if (who === undefined) continue;
          queue(produced, who).push({ text: traced(d.msg), request: lastRequest.get(who) ?? e });
          if (d.conn === id && d.msg.type === T.XS_TRANSACTION_START) txs.push(Number(Buffer.from(d.msg.payload).toString('latin1').split('\0')[0]));
        }
        if (e.type === T.XS_TRANSACTION_END && tx !== 0) {
          const at = txs.indexOf(tx);
          if (at >= 0) txs.splice(at, 1);
        }
        if (e.type === T.XS_INTRODUCE) pendingDomain = Number(e.body.split(' ')[0]);
        for (const who of new Set(out.deliveries.map((d) => names.get(d.conn)))) {
          if (who !== undefined && !compare(who, i) && !all) return { options, requests, compared, differences, failedAt: i };
        }
        break;
      }
    }
  }
  // Whatever is left unmatched: recorded messages xensim did not send, or the other way round.
  for (const [conn, want] of expected) {
    for (const w of want) differences.push({ line: w.line, conn, request: '', expected: w.text, got: undefined });
  }
  for (const [conn, got] of produced) {
    for (const g of got) differences.push({ line: g.request.line, conn, request: `${xsTypeName(g.request.type)} (${g.request.body})`, expected: undefined, got: g.text });
  }
  // (Left over at the end - a trace cut short - is reported, but no choice can mend it.)
  return { options, requests, compared, differences, failedAt: Infinity };
}

/** How many of the latest choices before a difference the search may revisit (2^WINDOW runs at most). */
const WINDOW = 10;

/**
 * Replays every session of a trace (each on a daemon from `daemon()`), searching at most `budget`
 * runs per session for an assignment of requests to transactions under which all replies match.
 */
export function replayTrace(entries: readonly TraceEntry[], daemon: () => Xenstored, budget = 20_000): ReplayReport {
  const sessions: TraceEntry[][] = [];
  for (const e of entries) {
    if (e.kind === 'session' || sessions.length === 0) sessions.push([]);
    if (e.kind !== 'session') sessions[sessions.length - 1].push(e);
  }
  let requests = 0;
  let compared = 0;
  let choices = 0;
  let runs = 0;
  const differences: ReplayDifference[] = [];
  for (const session of sessions) {
    let picks: number[] = [];
    let best: { picks: number[]; failedAt: number } = { picks: [], failedAt: -1 };
    // Differences no choice near them explains: real ones, reported, and the search goes on past.
    const tolerated = new Set<number>();
    let done: Run | undefined;
    let floor = 0;
    for (let n = 0; n < budget; n++) {
      runs++;
      const r = runSession(session, daemon(), picks, false, tolerated);
      if (r.failedAt === Infinity) {
        done = r;
        break;
      }
      if (r.failedAt > best.failedAt) best = { picks: [...picks], failedAt: r.failedAt };
      // Depth-first: the last choice before the difference that has an option left moves on,
      // among the latest WINDOW choices (and none fixed by an earlier settlement).
      const low = Math.max(floor, r.options.length - WINDOW);
      let j = r.options.length - 1;
      while (j >= low && (picks[j] ?? 0) + 1 >= r.options[j]) j--;
      if (j < low) {
        tolerated.add(best.failedAt);
        picks = [...best.picks];
        floor = picks.length;
        best = { picks: [...picks], failedAt: -1 };
        continue;
      }
      const next: number[] = [];
      for (let k = 0; k < j; k++) next.push(picks[k] ?? 0);
      next.push((picks[j] ?? 0) + 1);
      picks = next;
    }
    // Every difference under the assignment that went furthest.
    const final = done ?? runSession(session, daemon(), best.picks, true);
    requests += final.requests;
    compared += final.compared;
    choices += final.options.length;
    differences.push(...final.differences);
  }
  return { sessions: sessions.length, requests, compared, choices, runs, differences };
}
