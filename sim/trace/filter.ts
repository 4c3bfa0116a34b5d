// Which events the log, Mermaid and Perfetto exporters show: `--only xenstore,xenbus` keeps
// those kinds, `--hide replies` drops xenstored's answers, `--domain 1` keeps one domain's.
// A teaching aid: the same run, less to read. The --trace file always keeps every event (replay
// needs them all).

import { type TraceRecord, isNum, isXenstore, xsType } from './events.ts';

/** The kinds a trace has, and groups of events `--hide` understands beyond them. */
export const EVENT_KINDS = ['xenstore', 'xenbus', 'evtchn', 'gnttab', 'hypercall', 'ring', 'step', 'fault', 'net', 'blkfront', 'oops', 'xenstored', 'task', 'preempt'] as const;
export const HIDE_GROUPS = {
  /** xenstored's answers to requests (XS_WATCH_EVENT is no answer: it stays). */
  replies: (e: TraceRecord): boolean => isXenstore(e) && e.dir === 'OUT' && xsType(e) !== 'WATCH_EVENT',
  'watch-events': (e: TraceRecord): boolean => isXenstore(e) && xsType(e) === 'WATCH_EVENT',
  /** Xen marking ports pending: two events per notification. */
  'set-pending': (e: TraceRecord): boolean => e.kind === 'evtchn' && e.op === 'evtchn_set_pending',
  /** Injected faults' own events (held and released notifications...). */
  faults: (e: TraceRecord): boolean => e.kind === 'fault' || (e.kind === 'evtchn' && typeof e.op === 'string' && e.op.startsWith('fault_')),
} as const satisfies Record<string, (e: TraceRecord) => boolean>;

export interface TraceFilter {
  /** Keep only these kinds. */
  readonly only?: readonly string[];
  /** Drop these kinds or groups (HIDE_GROUPS). */
  readonly hide?: readonly string[];
  /** Keep only events of these domains (events of no domain - steps, faults - stay). */
  readonly domains?: readonly number[];
}

/** Checks the names of a filter; returns what is wrong, or undefined. */
export function filterError(f: TraceFilter): string | undefined {
  const kinds: readonly string[] = EVENT_KINDS;
  const bad = f.only?.find((k) => !kinds.includes(k));
  if (bad !== undefined) return `--only ${bad}: expected kinds among ${EVENT_KINDS.join(', ')}`;
  const badHide = f.hide?.find((k) => !kinds.includes(k) && !Object.hasOwn(HIDE_GROUPS, k));
  if (badHide !== undefined) return `--hide ${badHide}: expected kinds or ${Object.keys(HIDE_GROUPS).join(', ')}`;
  return undefined;
}

export function keeps(f: TraceFilter): (e: TraceRecord) => boolean {
  const only = f.only && new Set(f.only);
  const hide = f.hide ?? [];
  const doms = f.domains && new Set(f.domains);
  return (e) => {
    if (only && !only.has(e.kind)) return false;
    for (const h of hide) {
      if (h === e.kind) return false;
      const g = (HIDE_GROUPS as Record<string, (e: TraceRecord) => boolean>)[h];
      if (g?.(e)) return false;
    }
    if (doms && isNum(e.domid) && !doms.has(e.domid)) return false;
    return true;
  };
}

export function filterTrace<E extends TraceRecord>(events: readonly E[], f: TraceFilter): E[] {
  if (!f.only && !f.hide && !f.domains) return [...events];
  return events.filter(keeps(f));
}

/** A comma-separated option as a list ('' and spaces ignored). */
export const listOption = (v: string): string[] => v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
