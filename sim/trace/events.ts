// What the trace renderers (perfetto.ts, mermaid.ts, text-log.ts) share: a generic view of a
// trace event, readers for the kinds they know (xenstore, evtchn, gnttab, hypercall, xenbus, step),
// xenstore payload and device-path parsing, and one-line escaping.
//
// Events are read structurally, never by importing the emitters' interfaces: the renderers must
// also take JSON lines from `xensim up --trace` and kinds that do not exist yet, so every field is
// checked at run time and anything unknown falls back to a generic rendering.

/** Any trace event: a kind, usually a domain, in lockstep mode a virtual time in ns. */
export interface TraceRecord {
  readonly kind: string;
  readonly domid?: number;
  readonly t?: number;
  readonly [k: string]: unknown;
}

/** A xenstore message in or out of xenstored (XenstoreTraceEvent). */
export interface XsRecord extends TraceRecord {
  readonly kind: 'xenstore';
  readonly dir: 'IN' | 'OUT';
  readonly conn: number;
  readonly domid: number;
  readonly type: string;
  readonly req_id: number;
  readonly tx_id: number;
  readonly payload: string;
}

export const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
export const isStr = (v: unknown): v is string => typeof v === 'string';
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function isXenstore(e: TraceRecord): e is XsRecord {
  return e.kind === 'xenstore' && (e.dir === 'IN' || e.dir === 'OUT') && isNum(e.conn) && isStr(e.type)
    && isNum(e.req_id) && isNum(e.tx_id) && isStr(e.payload);
}

/** The event's virtual time, if it has one (free-running traces have none). */
export const timeOf = (e: TraceRecord): number | undefined => (isNum(e.t) ? e.t : undefined);

/** The event's domain, if it names a real one (xenstored says -1 for a connection it cannot place). */
export const domOf = (e: TraceRecord): number | undefined => (isNum(e.domid) && e.domid >= 0 ? e.domid : undefined);

/**
 * The xenstore message type without the XS_ prefix. xenstored's trace names types as
 * libxenstore's tables do ('WRITE'); accept 'XS_WRITE' too so either spelling matches.
 */
export const xsType = (e: XsRecord): string => e.type.replace(/^XS_/, '');

/** The type as Xen's headers spell it, for display. */
export const xsName = (e: XsRecord): string => `XS_${xsType(e)}`;

/**
 * A payload's NUL-separated fields. The trace shows each NUL as the two characters `\0`; a
 * trailing NUL ends the last field rather than starting an empty one.
 */
export function payloadFields(payload: string): string[] {
  const parts = payload.split('\\0');
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  return parts;
}

/** The requests whose first payload field is a path (the rest is a value, a token, perms...). */
const PATH_REQUESTS = new Set([
  'READ', 'WRITE', 'MKDIR', 'RM', 'DIRECTORY', 'DIRECTORY_PART', 'GET_PERMS', 'SET_PERMS', 'WATCH', 'UNWATCH',
]);

/** The path a request or watch event concerns, as written (maybe relative to the domain's home). */
export function xsPath(e: XsRecord): string | undefined {
  const t = xsType(e);
  if ((e.dir === 'IN' && PATH_REQUESTS.has(t)) || t === 'WATCH_EVENT') return payloadFields(e.payload)[0];
  return undefined;
}

/** A path made absolute: a relative path is relative to /local/domain/<domid>. */
export function absolutePath(path: string, domid: number | undefined): string {
  if (path.startsWith('/') || path.startsWith('@') || domid === undefined) return path;
  return `/local/domain/${domid}/${path}`;
}

/** XenbusState names (io/xenbus.h), for events that carry only the number. */
const XENBUS_STATES = [
  'XenbusStateUnknown', 'XenbusStateInitialising', 'XenbusStateInitWait', 'XenbusStateInitialised',
  'XenbusStateConnected', 'XenbusStateClosing', 'XenbusStateClosed', 'XenbusStateReconfiguring',
  'XenbusStateReconfigured',
];

export function xenbusStateName(state: number): string {
  return XENBUS_STATES[state] ?? `XenbusState(${state})`;
}

/** A xenbus state change as the bus reports it; undefined if the event is not one. */
export interface XenbusView {
  readonly role: string;
  readonly device: string;
  readonly path: string | undefined;
  readonly state: number;
  readonly stateName: string;
}

export function xenbusOf(e: TraceRecord): XenbusView | undefined {
  if (e.kind !== 'xenbus' || !isNum(e.state)) return undefined;
  const path = isStr(e.path) ? e.path : undefined;
  const dev = path ? parseDevicePath(absolutePath(path, domOf(e))) : undefined;
  return {
    role: isStr(e.role) ? e.role : dev?.side ?? 'device',
    device: isStr(e.device) ? e.device : dev ? `${dev.type}/${dev.devid}` : '?',
    path,
    state: e.state,
    stateName: isStr(e.stateName) ? e.stateName : xenbusStateName(e.state),
  };
}

/**
 * Where a path sits in a split device's xenstore layout:
 *   /local/domain/F/device/TYPE/ID/...        the frontend's directory (in frontend domain F)
 *   /local/domain/B/backend/TYPE/F/ID/...     the backend's directory (in backend domain B)
 */
export interface DevicePath {
  readonly side: 'frontend' | 'backend';
  readonly type: string;
  readonly devid: string;
  readonly frontendDomid: number;
  /** Only a backend path names its backend's domain. */
  readonly backendDomid: number | undefined;
  /** The device's directory, and what follows it ('' for the directory itself). */
  readonly dir: string;
  readonly rest: string;
}

const FRONT_RE = /^\/local\/domain\/(\d+)\/device\/([^/]+)\/([^/]+)(?:\/(.*))?$/;
const BACK_RE = /^\/local\/domain\/(\d+)\/backend\/([^/]+)\/(\d+)\/([^/]+)(?:\/(.*))?$/;

export function parseDevicePath(abs: string): DevicePath | undefined {
  let m = FRONT_RE.exec(abs);
  if (m) {
    return {
      side: 'frontend', type: m[2], devid: m[3], frontendDomid: Number(m[1]), backendDomid: undefined,
      dir: `/local/domain/${m[1]}/device/${m[2]}/${m[3]}`, rest: m[4] ?? '',
    };
  }
  m = BACK_RE.exec(abs);
  if (m) {
    return {
      side: 'backend', type: m[2], devid: m[4], frontendDomid: Number(m[3]), backendDomid: Number(m[1]),
      dir: `/local/domain/${m[1]}/backend/${m[2]}/${m[3]}/${m[4]}`, rest: m[5] ?? '',
    };
  }
  return undefined;
}

/** Driver names by device type, as Linux calls them (blkfront/blkback...). */
const DRIVERS: Readonly<Record<string, string>> = {
  vbd: 'blk', vif: 'net', vkbd: 'kbd', vfb: 'fb', pci: 'pci', vtpm: 'tpm', vscsi: 'scsi', vusb: 'usb', '9pfs': '9pfs',
};

/** The driver's name for one side of a device type: vbd -> blkfront / blkback. */
export function driverName(type: string, side: 'frontend' | 'backend'): string {
  const base = DRIVERS[type];
  if (base) return `${base}${side === 'frontend' ? 'front' : 'back'}`;
  return `${type} ${side}`;
}

/** The printable name of a domain: Domain-0 for dom0 (as xl list says), else dom<N>. */
export function domainName(domid: number, names?: Readonly<Record<number, string>>): string {
  return names?.[domid] ?? (domid === 0 ? 'Domain-0' : `dom${domid}`);
}

/**
 * A string made safe for one line: control characters as \n, \r, \t or \xNN, a real NUL as \0
 * (the trace's own spelling of NUL), lone surrogates as \u{...}. Printable text is left alone.
 */
export function oneLine(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c === 0) out += '\\0';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === 0x09) out += '\\t';
    else if (c < 0x20 || c === 0x7f || (c >= 0x80 && c < 0xa0)) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else if (c >= 0xd800 && c <= 0xdfff) out += `\\u{${c.toString(16)}}`;
    else out += ch;
  }
  return out;
}

/** A value for display: strings escaped, everything else as compact JSON with sorted keys. */
export function compactValue(v: unknown): string {
  if (isStr(v)) return oneLine(v);
  return oneLine(stableJson(v));
}

/** JSON with object keys sorted, so the same event renders the same whatever its key order. */
export function stableJson(v: unknown): string {
  if (v === undefined) return 'undefined';
  return JSON.stringify(v, (_k, val: unknown) => {
    if (!isObj(val)) return val;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(val).sort()) sorted[k] = val[k];
    return sorted;
  });
}

/** The fields of an event beyond kind, domid and t, sorted by name: the generic details. */
export function otherFields(e: TraceRecord, skip: readonly string[] = []): [string, unknown][] {
  const omit = new Set(['kind', 'domid', 't', ...skip]);
  return Object.keys(e).filter((k) => !omit.has(k) && e[k] !== undefined).sort().map((k) => [k, e[k]]);
}

/** `key=value` pairs of the generic details. */
export function genericDetails(e: TraceRecord, skip: readonly string[] = []): string {
  return otherFields(e, skip).map(([k, v]) => `${k}=${compactValue(v)}`).join(' ');
}

/** A short human name for any event, used as Perfetto slice names and diagram notes. */
export function summary(e: TraceRecord): string {
  if (isXenstore(e)) {
    const path = xsPath(e);
    return `${e.dir} ${xsName(e)}${path !== undefined ? ` ${oneLine(path)}` : ''}`;
  }
  const xb = xenbusOf(e);
  if (xb) return `${xb.device} ${xb.stateName}`;
  switch (e.kind) {
    case 'evtchn': return `${isStr(e.op) ? e.op : 'evtchn'}${isNum(e.port) ? ` port ${e.port}` : ''}`;
    case 'gnttab': return `GNTTABOP_${isStr(e.op) ? e.op : '?'}${isNum(e.ref) ? ` ref ${e.ref}` : ''}`;
    case 'hypercall': return isStr(e.op) ? e.op.replace(/^__HYPERVISOR_/, '') : 'hypercall';
    case 'step': return `step ${isStr(e.name) ? oneLine(e.name) : '?'}`;
    default: {
      // Unknown kinds: the kind and the first of the usual naming fields that is present.
      for (const k of ['name', 'op', 'action', 'type', 'message', 'line']) {
        if (isStr(e[k])) return `${e.kind} ${oneLine(e[k])}`;
      }
      return e.kind;
    }
  }
}
