// What `xensim ui` serves about one trace: the events with their sentences and lanes, the state
// after any N (the reducer continued forwards, replayed from the start to go back: a few ms per
// thousand events), and where the next event of interest is - the stepping and breakpoint logic,
// kept out of the HTTP layer so it can be specified directly. A recorded trace is given whole; a
// live host's events are appended as they come (lanes then take the names known so far).

import { type TraceRecord, isNum, isStr, summary } from '../trace/events.ts';
import { explain } from '../trace/explain.ts';
import { type HostState, laneOf, type Lane, TraceReducer } from '../trace/state-at.ts';
import type { RingPageView } from '../trace/xenstore-ring-page.ts';

export interface EventRow {
  readonly i: number;
  readonly t: number | undefined;
  readonly kind: string;
  readonly domid: number | undefined;
  readonly lane: string;
  readonly summary: string;
  /** One sentence in Xen's names (explain.ts); the raw event is there for the rest. */
  readonly text: string;
  readonly event: TraceRecord;
}

/** What a step or breakpoint can stop at. */
export type Stop =
  | { readonly what: 'xenstore' | 'xenbus' | 'hypercall' | 'event' }
  /** A write (or creation, removal, perms change) of this path or a node under it. */
  | { readonly what: 'path'; readonly path: string }
  /** A device end reaching a XenbusState; device matches the end of the event's device name. */
  | { readonly what: 'state'; readonly state: number; readonly device?: string; readonly role?: string }
  /** A domain reaching a run state (paused, running, shutdown, dying, dead). */
  | { readonly what: 'domain'; readonly domid?: number; readonly state: string };

/** `vbd/51712` (a frontend's name) and `vbd/1/51712` (a backend's) name the same device. */
function sameDevice(a: string, b: string): boolean {
  if (a === b) return true;
  const pa = a.split('/');
  const pb = b.split('/');
  return pa[0] === pb[0] && pa[pa.length - 1] === pb[pb.length - 1] && (pa.length === 2 || pb.length === 2);
}

const NOTHING: readonly string[] = Object.freeze([]);

export class TraceModel {
  private readonly events_list: TraceRecord[] = [];
  private readonly rows_list: EventRow[] = [];
  private readonly laneMap = new Map<string, Lane>();
  /** Per event: the nodes it changed and the domain states after it, for breakpoints. */
  private readonly changed: (readonly string[])[] = [];
  private readonly domainStates: string[] = [];
  /** Every event so far (connection names for lanes and sentences), and the scan for breakpoints. */
  private readonly whole = new TraceReducer();
  private readonly scan = new TraceReducer();

  /** `live`: a host still running, whose events `append` adds. */
  constructor(events: readonly TraceRecord[], readonly title: string, readonly live = false) {
    // A recorded trace: connections are named by what they do, maybe only later - name with the whole run.
    for (const e of events) this.whole.apply(e);
    const ctx = this.whole.context();
    for (const e of events) this.add(e, ctx);
  }

  get events(): readonly TraceRecord[] {
    return this.events_list;
  }

  get rows(): readonly EventRow[] {
    return this.rows_list;
  }

  get lanes(): readonly Lane[] {
    return [...this.laneMap.values()];
  }

  /** A live host's next event. */
  append(e: TraceRecord): void {
    if (!this.live) throw new Error('TraceModel.append: a recorded trace is given whole');
    this.whole.apply(e);
    this.add(e, this.whole.context());
  }

  private add(e: TraceRecord, ctx: ReturnType<TraceReducer['context']>): void {
    const i = this.events_list.length;
    this.events_list.push(e);
    this.scan.apply(e);
    const changed = this.scan.lastChanges();
    this.changed.push(changed.length ? changed : NOTHING);
    // One string per change of the domains, not per event: a live host's events are many.
    const states = this.scan.domainStates();
    const prev = this.domainStates[this.domainStates.length - 1];
    this.domainStates.push(prev === states ? prev : states);
    const lane = laneOf(e, ctx);
    if (!this.laneMap.has(lane)) this.laneMap.set(lane, { id: lane, domid: lane === 'xenstored' || lane === 'Xen' || !isNum(e.domid) || e.domid < 0 ? undefined : e.domid });
    const text = explain(e, ctx);
    this.rows_list.push({
      i, t: isNum(e.t) ? e.t : undefined, kind: e.kind, domid: isNum(e.domid) ? e.domid : undefined, lane,
      summary: summary(e), text: text ?? `${e.kind}: ${summary(e)}`, event: e,
    });
  }

  get count(): number {
    return this.events.length;
  }

  /** The reducer of the last answer and how many events it has applied: stepping on continues it. */
  private cursor: { r: TraceReducer; n: number } = { r: new TraceReducer(), n: 0 };

  /** The reducer after the first n events (clamped to the trace). */
  private at(n: number): { r: TraceReducer; end: number } {
    const end = Math.max(0, Math.min(Math.trunc(n), this.events.length));
    // Forwards from the last answer; backwards is a replay from the start (the reducer is pure).
    if (end < this.cursor.n) this.cursor = { r: new TraceReducer(), n: 0 };
    const { r } = this.cursor;
    for (let i = this.cursor.n; i < end; i++) r.apply(this.events[i]);
    this.cursor.n = end;
    return { r, end };
  }

  /** The state after the first n events, with the event that got it there. */
  stateAt(n: number): HostState & { readonly last: EventRow | undefined } {
    const { r, end } = this.at(n);
    return { ...r.snapshot(), last: end > 0 ? this.rows[end - 1] : undefined };
  }

  /** A guest's xenstore ring page after the first n events. */
  ringPageAt(n: number, domid: number): RingPageView | undefined {
    return this.at(n).r.ringPage(domid);
  }

  events_(from: number, to: number): EventRow[] {
    const a = Math.max(0, Math.trunc(from));
    const b = Math.min(this.events.length, Math.trunc(to), a + 2000);
    return this.rows.slice(a, Math.max(a, b));
  }

  /** Does event i stop a run to `s`? */
  matches(i: number, s: Stop): boolean {
    const e = this.events[i];
    switch (s.what) {
      case 'event': return true;
      case 'xenstore': return e.kind === 'xenstore';
      case 'xenbus': return e.kind === 'xenbus';
      case 'hypercall': return e.kind === 'hypercall';
      case 'path': {
        const p = s.path.replace(/\/+$/, '') || '/';
        return this.changed[i].some((c) => c === p || c.startsWith(p === '/' ? '/' : `${p}/`));
      }
      case 'state':
        return e.kind === 'xenbus' && e.state === s.state && (s.role === undefined || e.role === s.role)
          && (s.device === undefined || (isStr(e.device) && sameDevice(e.device, s.device)));
      case 'domain': {
        const now = this.domainStates[i].split(' ');
        const before = i > 0 ? this.domainStates[i - 1].split(' ') : [];
        return now.some((d) => {
          const [id, st] = d.split(':');
          return st === s.state && (s.domid === undefined || Number(id) === s.domid) && !before.includes(d);
        });
      }
    }
  }

  /**
   * Where stepping from state n (n events applied) to `s` stops: the number of events applied
   * once the next matching event is. Backwards: the state just after the previous match before n.
   * Undefined if there is none.
   */
  find(n: number, s: Stop, dir: 'next' | 'prev' = 'next'): number | undefined {
    if (dir === 'next') {
      for (let i = Math.max(0, n); i < this.events.length; i++) if (this.matches(i, s)) return i + 1;
    } else {
      for (let i = Math.min(n, this.events.length) - 2; i >= 0; i--) if (this.matches(i, s)) return i + 1;
    }
    return undefined;
  }
}
