// A simulator trace as a text log, one line per event, stamped like the Linux kernel log:
//
//   [    0.001234] d1  xenstore IN  XS_WRITE tx=0 device/vbd/51712/state\03 (conn 2 req 7)
//
// virtual time in seconds (µs digits, truncated as printk does), the domain, the kind, then the
// kind's details. The same events give the same text byte for byte: unknown kinds and fields
// not known to a kind print as key=value with keys sorted, so key order in the input is irrelevant.

import {
  type TraceRecord, compactValue, genericDetails, isNum, isStr, isXenstore, oneLine, xenbusOf, xsName,
} from './events.ts';

export interface TextLogOptions {
  /** Cut xenstore payloads longer than this many characters (default: never). */
  readonly maxPayload?: number;
}

/** `[sssss.uuuuuu]` from a time in ns; events without a time get a dash in the same width. */
export function formatTimestamp(t: unknown): string {
  if (!isNum(t) || t < 0) return `[${'-'.padStart(12)}]`;
  const ns = Math.floor(t);
  const sec = Math.floor(ns / 1e9);
  const us = Math.floor((ns % 1e9) / 1000);
  return `[${String(sec).padStart(5)}.${String(us).padStart(6, '0')}]`;
}

/** d<N>; d? for a domain xenstored could not name (-1); d- for events of no domain. */
function domainColumn(domid: unknown): string {
  if (!isNum(domid)) return 'd-';
  return domid < 0 ? 'd?' : `d${domid}`;
}

/** Fields beyond the ones a kind's format shows, so a new field never goes missing. */
const extra = (e: TraceRecord, shown: readonly string[]): string => {
  const rest = genericDetails(e, shown);
  return rest ? ` ${rest}` : '';
};

const opt = (label: string, v: unknown): string => (v === undefined ? '' : ` ${label}=${compactValue(v)}`);

function details(e: TraceRecord, opts: TextLogOptions): string {
  if (isXenstore(e)) {
    let payload = oneLine(e.payload);
    if (opts.maxPayload !== undefined && payload.length > opts.maxPayload) {
      payload = `${payload.slice(0, opts.maxPayload)}...(${payload.length} chars)`;
    }
    return `${e.dir.padEnd(3)} ${xsName(e)} tx=${e.tx_id}${payload ? ` ${payload}` : ''} (conn ${e.conn} req ${e.req_id})`
      + extra(e, ['dir', 'conn', 'type', 'req_id', 'tx_id', 'payload']);
  }
  const xb = xenbusOf(e);
  if (xb) {
    return `${oneLine(xb.role)} ${oneLine(xb.device)} ${xb.stateName} (${xb.state})`
      + extra(e, ['role', 'device', 'state', 'stateName', 'path']);
  }
  switch (e.kind) {
    case 'evtchn': {
      // The hypercall's IN fields, less the port already shown.
      const args = e.args && typeof e.args === 'object' ? Object.entries(e.args as Record<string, unknown>) : [];
      const argText = args.filter(([k]) => !(k === 'port' && e.args && (e.args as Record<string, unknown>).port === e.port))
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => ` ${k}=${compactValue(v)}`).join('');
      const remote = e.remote as { domid?: unknown; port?: unknown } | undefined;
      const remoteText = remote && isNum(remote.domid) ? ` -> d${remote.domid}:${String(remote.port)}` : '';
      const rc = isNum(e.result) && e.result !== 0 ? ` rc=${e.result}` : '';
      return `${isStr(e.op) ? e.op : '?'}${opt('port', e.port)}${remoteText}${argText}${rc}`
        + extra(e, ['op', 'port', 'remote', 'args', 'result']);
    }
    case 'gnttab': {
      const st = isNum(e.status) && e.status !== 0 ? ` status=${e.status}` : '';
      return `${isStr(e.op) ? e.op : '?'}${opt('dom', e.dom)}${opt('ref', e.ref)}${opt('handle', e.handle)}${st}`
        + extra(e, ['op', 'dom', 'ref', 'handle', 'status']);
    }
    case 'hypercall':
      return `${isStr(e.op) ? e.op.replace(/^__HYPERVISOR_/, '') : '?'}${opt('cmd', e.cmd)}${opt('ret', e.ret)}`
        + extra(e, ['op', 'cmd', 'ret']);
    case 'step':
      return `${isStr(e.name) ? oneLine(e.name) : '?'}${isStr(e.role) ? ` (${oneLine(e.role)})` : ''}` + extra(e, ['name', 'role']);
    default:
      return genericDetails(e);
  }
}

/** One event as one line (no newline). */
export function formatEvent(e: TraceRecord, opts: TextLogOptions = {}): string {
  return `${formatTimestamp(e.t)} ${domainColumn(e.domid).padEnd(3)} ${oneLine(e.kind)} ${details(e, opts)}`.trimEnd();
}

/** The whole trace, a line per event, each ended by a newline. */
export function toTextLog(events: Iterable<TraceRecord>, opts: TextLogOptions = {}): string {
  let out = '';
  for (const e of events) out += `${formatEvent(e, opts)}\n`;
  return out;
}
