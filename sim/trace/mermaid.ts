// A simulator trace as a Mermaid sequence diagram: who said what to whom during a device
// handshake. Participants are roles - "blkfront (dom1)", "xenstored", "blkback (dom0)",
// "toolstack" - rather than connections, because one guest connection serves every driver.
// Requests are arrows to xenstored, replies and watch events dashed arrows back, xenbus state
// changes notes over their driver, event-channel notifications async arrows between the ends.
//
// Pure: events in, diagram text out. Only kinds the diagram can place are drawn by default;
// a predicate filter can pick any event, unknown kinds becoming notes.

import {
  type DevicePath, type TraceRecord, type XsRecord, absolutePath, domOf, driverName, isNum, isStr, isXenstore,
  oneLine, otherFields, compactValue, parseDevicePath, payloadFields, summary, xenbusOf, xsName, xsPath, xsType,
} from './events.ts';

export interface MermaidOptions {
  /**
   * Which events to draw. A string names a device ('vbd/51712': both of its ends), a device
   * directory ('/local/domain/1/device/vbd/51712': that frontend's device and its backend) or
   * any other absolute path prefix; a function chooses events itself. Replies follow their
   * requests, and a transaction's start and end follow the operations inside it. Without a
   * filter, everything but raw hypercalls and channels or grants no device uses is drawn.
   */
  readonly filter?: string | ((e: TraceRecord) => boolean);
  /** Participants declared first, in this order (as labelled, e.g. 'blkfront (dom1)'). */
  readonly participants?: readonly string[];
  /** Names the role an event's actor plays, overriding the inference (undefined: infer). */
  readonly roleOf?: (e: TraceRecord) => string | undefined;
  /** Message texts longer than this are cut (default 120 characters). */
  readonly maxLabel?: number;
}

const XENSTORED = 'xenstored';
const TOOLSTACK = 'toolstack';
const SCENARIO = 'scenario';

/** A device both ends agree on: its frontend domain, type and id. */
interface DeviceId {
  readonly frontendDomid: number;
  readonly type: string;
  readonly devid: string;
}
const devKey = (d: DeviceId): string => `${d.frontendDomid}:${d.type}/${d.devid}`;

/** Requests a toolstack makes and no driver does. */
const TOOLSTACK_REQUESTS = new Set(['INTRODUCE', 'RELEASE', 'SET_TARGET', 'IS_DOMAIN_INTRODUCED', 'RESUME']);
const WRITES = new Set(['WRITE', 'MKDIR', 'RM', 'SET_PERMS']);
/** Event-channel operations a guest asks for; the rest are Xen's own steps (set_pending...). */
const isEvtchnOp = (e: TraceRecord): boolean => e.kind === 'evtchn' && isStr(e.op) && e.op.startsWith('EVTCHNOP_');

// ------------------------------------------------------------------------------ escaping

/**
 * Text as Mermaid takes it after `:` in a message or note. Its lexer ends the text at ';' and
 * newlines and reads '#' as a comment, so those (and '<', '>', '&', which the renderer would take
 * as HTML) become entity codes like #59;, which Mermaid turns back into the character when it
 * draws. Control characters, NULs included, are spelled out as \0, \n, \xNN.
 */
export function escapeMermaidText(s: string): string {
  let out = oneLine(s).replace(/[#;<>&%]/g, (c) => `#${c.charCodeAt(0)};`);
  // A leading "wrap:" or "nowrap:" would be taken as a directive rather than text.
  out = out.replace(/^(\s*(?:no)?wrap):/i, '$1#58;');
  return out;
}

/** A participant's label: its lexer also stops at ':', ',' and '@'. */
const escapeLabel = (s: string): string => escapeMermaidText(s).replace(/[:,@]/g, (c) => `#${c.charCodeAt(0)};`);

const KEYWORDS = new Set([
  'participant', 'actor', 'create', 'destroy', 'as', 'loop', 'rect', 'opt', 'alt', 'else', 'par', 'par_over', 'and',
  'critical', 'option', 'break', 'end', 'left', 'right', 'of', 'links', 'link', 'properties', 'details', 'over', 'note',
  'activate', 'deactivate', 'title', 'acctitle', 'accdescr', 'sequencediagram', 'autonumber', 'off', 'box',
]);

/** An identifier for a participant label: letters, digits and '_', never a keyword, unique. */
function makeId(label: string, taken: Set<string>): string {
  let id = label.replace(/[^A-Za-z0-9_]+/g, '_').replace(/^_+|_+$/g, '');
  if (!/^[A-Za-z]/.test(id)) id = `p_${id}`;
  if (KEYWORDS.has(id.toLowerCase())) id = `${id}_`;
  let unique = id;
  for (let n = 2; taken.has(unique.toLowerCase()); n++) unique = `${id}_${n}`;
  taken.add(unique.toLowerCase());
  return unique;
}

// ------------------------------------------------------------------------------ the filter

type Matcher = {
  path(abs: string): boolean;
  device(d: DeviceId): boolean;
};

/** What a string filter means: a device by type/id, a device directory, or a path prefix. */
function stringMatcher(filter: string): Matcher {
  const short = /^([^/]+)\/([^/]+)$/.exec(filter);
  const dir = filter.startsWith('/') ? parseDevicePath(filter.replace(/\/+$/, '')) : undefined;
  if (short || (dir && dir.rest === '')) {
    const want = short ? { type: short[1], devid: short[2], fe: undefined } : { type: dir!.type, devid: dir!.devid, fe: dir!.frontendDomid };
    const device = (d: DeviceId): boolean => d.type === want.type && d.devid === want.devid && (want.fe === undefined || d.frontendDomid === want.fe);
    return {
      device,
      path: (abs) => {
        const p = parseDevicePath(abs);
        return p !== undefined && device(p);
      },
    };
  }
  const prefix = filter.replace(/\/+$/, '');
  const under = (abs: string): boolean => abs === prefix || abs.startsWith(`${prefix}/`);
  return { path: under, device: (d) => under(`/local/domain/${d.frontendDomid}/device/${d.type}/${d.devid}`) };
}

// ------------------------------------------------------------------------------ the diagram

interface Resource { readonly dev: DeviceId; readonly side: 'frontend' | 'backend' }

export function toMermaidSequence(events: Iterable<TraceRecord>, opts: MermaidOptions = {}): string {
  const all = [...events];
  const maxLabel = opts.maxLabel ?? 120;

  // ---- pass 1: what the trace says about connections and devices, whatever is drawn.
  const toolstackConns = new Set<number>();
  const backendOf = new Map<string, number>();
  const ports = new Map<string, Resource>(); // "domid:port"
  const refs = new Map<string, Resource>(); // "granter:ref"
  const handles = new Map<string, Resource>(); // "mapper:handle"
  const absOf = new Map<XsRecord, string>();
  for (const e of all) {
    if (isXenstore(e)) {
      const p = xsPath(e);
      const abs = p === undefined ? undefined : absolutePath(p, domOf(e));
      if (abs !== undefined) absOf.set(e, abs);
      if (e.dir !== 'IN') continue;
      const type = xsType(e);
      // A connection that introduces domains or writes into another domain's tree is a toolstack's.
      if (TOOLSTACK_REQUESTS.has(type)) toolstackConns.add(e.conn);
      const owner = abs ? /^\/local\/domain\/(\d+)(?:\/|$)/.exec(abs) : null;
      if (WRITES.has(type) && owner && Number(owner[1]) !== e.domid) toolstackConns.add(e.conn);
      const dev = abs ? parseDevicePath(abs) : undefined;
      if (!dev) continue;
      if (dev.backendDomid !== undefined) backendOf.set(devKey(dev), dev.backendDomid);
      if (type === 'WRITE' && dev.side === 'frontend') {
        // The frontend publishes its ring's grant references and its event channel.
        const value = payloadFields(e.payload)[1];
        const key = dev.rest.split('/').pop() ?? '';
        if (value !== undefined && /^\d+$/.test(value)) {
          if (/^event-channel/.test(key)) ports.set(`${dev.frontendDomid}:${value}`, { dev, side: 'frontend' });
          else if (/ring-ref/.test(key)) refs.set(`${dev.frontendDomid}:${value}`, { dev, side: 'frontend' });
          else if (key === 'backend-id') backendOf.set(devKey(dev), Number(value));
        }
      }
    } else if (e.kind === 'evtchn' && e.op === 'EVTCHNOP_bind_interdomain' && e.result === 0 && isNum(e.domid) && isNum(e.port)) {
      // The backend binds to the frontend's published port: its local port is the device's too.
      const a = (e.args ?? {}) as Record<string, unknown>;
      const remote = (e.remote ?? {}) as Record<string, unknown>;
      const front = ports.get(`${String(a.remote_dom ?? remote.domid)}:${String(a.remote_port ?? remote.port)}`);
      if (front) {
        ports.set(`${e.domid}:${e.port}`, { dev: front.dev, side: 'backend' });
        if (!backendOf.has(devKey(front.dev))) backendOf.set(devKey(front.dev), e.domid);
      }
    } else if (e.kind === 'gnttab' && e.op === 'map_grant_ref' && e.status === 0 && isNum(e.domid)) {
      const ref = refs.get(`${String(e.dom)}:${String(e.ref)}`);
      if (ref) handles.set(`${e.domid}:${String(e.handle)}`, { dev: ref.dev, side: 'backend' });
    }
  }
  const resourceOf = (e: TraceRecord): Resource | undefined => {
    if (e.kind === 'evtchn' && isNum(e.domid)) return ports.get(`${e.domid}:${String(e.port)}`);
    if (e.kind === 'gnttab' && isNum(e.domid)) {
      if (e.op !== 'map_grant_ref') return handles.get(`${e.domid}:${String(e.handle)}`);
      // The granting frontend publishes the ref; the domain mapping it is the backend.
      const ref = refs.get(`${String(e.dom)}:${String(e.ref)}`);
      return ref && { dev: ref.dev, side: 'backend' };
    }
    return undefined;
  };

  // ---- which events to draw.
  const matcher = typeof opts.filter === 'string' ? stringMatcher(opts.filter) : undefined;
  const predicate = typeof opts.filter === 'function' ? opts.filter : undefined;
  /** A device an event concerns, from its path or a device field. */
  const deviceOf = (e: TraceRecord): DevicePath | DeviceId | undefined => {
    const abs = isXenstore(e) ? absOf.get(e) : isStr(e.path) ? absolutePath(e.path, domOf(e)) : undefined;
    const p = abs ? parseDevicePath(abs) : undefined;
    if (p) return p;
    if (!isStr(e.device)) return undefined;
    const parts = e.device.split('/');
    if (parts.length === 2 && isNum(e.domid)) return { frontendDomid: e.domid, type: parts[0], devid: parts[1] };
    if (parts.length === 3 && /^\d+$/.test(parts[1])) return { frontendDomid: Number(parts[1]), type: parts[0], devid: parts[2] };
    return undefined;
  };
  const primary = (e: TraceRecord): boolean => {
    if (predicate) return predicate(e);
    if (e.kind === 'hypercall') return false;
    if (e.kind === 'evtchn' || e.kind === 'gnttab') {
      if (e.kind === 'evtchn' && !isEvtchnOp(e)) return false;
      const r = resourceOf(e);
      return r !== undefined && (!matcher || matcher.device(r.dev));
    }
    if (!matcher) return true;
    if (e.kind === 'step' || e.kind === 'fault') return true;
    if (isXenstore(e)) {
      const abs = absOf.get(e);
      return abs !== undefined && matcher.path(abs);
    }
    const abs = isStr(e.path) ? absolutePath(e.path, domOf(e)) : undefined;
    if (abs !== undefined && matcher.path(abs)) return true;
    const d = deviceOf(e);
    return d !== undefined && matcher.device(d);
  };

  // Replies follow their requests; transactions follow the operations drawn inside them.
  const drawn = new Set<TraceRecord>();
  const requestOf = new Map<XsRecord, XsRecord>();
  const txOfStart = new Map<XsRecord, string>(); // TRANSACTION_START request -> "conn:tx"
  const relevantTx = new Set<string>();
  {
    const pending = new Map<string, XsRecord>();
    for (const e of all) {
      if (!isXenstore(e)) continue;
      const key = `${e.conn}:${e.req_id}`;
      if (e.dir === 'IN') pending.set(key, e);
      else if (xsType(e) !== 'WATCH_EVENT') {
        const req = pending.get(key);
        if (!req) continue;
        pending.delete(key);
        requestOf.set(e, req);
        if (xsType(req) === 'TRANSACTION_START' && xsType(e) === 'TRANSACTION_START') {
          txOfStart.set(req, `${e.conn}:${payloadFields(e.payload)[0] ?? ''}`);
        }
      }
    }
  }
  for (const e of all) {
    if (!primary(e)) continue;
    drawn.add(e);
    if (isXenstore(e) && e.dir === 'IN' && e.tx_id !== 0) relevantTx.add(`${e.conn}:${e.tx_id}`);
  }
  for (const e of all) {
    if (!isXenstore(e) || drawn.has(e)) continue;
    const req = e.dir === 'OUT' ? requestOf.get(e) : e;
    if (!req) continue;
    if (e.dir === 'OUT' && drawn.has(req)) drawn.add(e);
    const t = xsType(req);
    if (t === 'TRANSACTION_START' && relevantTx.has(txOfStart.get(req) ?? '')) drawn.add(e);
    if (t === 'TRANSACTION_END' && relevantTx.has(`${req.conn}:${req.tx_id}`)) drawn.add(e);
  }

  // ---- roles.
  const frontLabel = (type: string, domid: number): string => `${driverName(type, 'frontend')} (dom${domid})`;
  const backLabel = (type: string, domid: number): string => `${driverName(type, 'backend')} (dom${domid})`;
  const plainRole = (domid: number | undefined): string => (domid === undefined ? SCENARIO : `dom${domid}`);
  /** Whom a xenstore request by domain D on this path stands for. */
  const roleForPath = (abs: string | undefined, domid: number, conn: number): string | undefined => {
    if (toolstackConns.has(conn)) return TOOLSTACK;
    if (abs === undefined) return undefined;
    const dev = parseDevicePath(abs);
    if (dev) {
      const backend = dev.backendDomid ?? backendOf.get(devKey(dev));
      if (dev.side === 'backend' && domid === dev.backendDomid) return backLabel(dev.type, domid);
      if (domid === dev.frontendDomid) return frontLabel(dev.type, domid);
      if (domid === backend) return backLabel(dev.type, domid);
      return domid === 0 ? TOOLSTACK : plainRole(domid);
    }
    // A driver's watch or listing of its whole area: /local/domain/N/device/vbd, .../backend/vbd.
    const area = /^\/local\/domain\/(\d+)\/(device|backend)\/([^/]+)(?:\/[^/]+)?$/.exec(abs);
    if (area && Number(area[1]) === domid) {
      return area[2] === 'device' ? frontLabel(area[3], domid) : backLabel(area[3], domid);
    }
    return undefined;
  };

  const rolesOfRequest = new Map<XsRecord, string>();
  const lastRoleOfConn = new Map<number, string>();
  const roleOfTx = new Map<string, string>();
  const watchRole = new Map<string, string>(); // "conn:token"
  // Transactions are named after the first operation inside them, which comes after their start.
  for (const e of all) {
    if (!isXenstore(e) || e.dir !== 'IN' || e.tx_id === 0) continue;
    const key = `${e.conn}:${e.tx_id}`;
    if (roleOfTx.has(key)) continue;
    const r = opts.roleOf?.(e) ?? roleForPath(absOf.get(e), e.domid, e.conn);
    if (r) roleOfTx.set(key, r);
  }
  const requestRole = (e: XsRecord): string => {
    let r = rolesOfRequest.get(e);
    if (r) return r;
    const t = xsType(e);
    const abs = absOf.get(e);
    // A request on a path no driver owns is its domain's; one without a path (GET_DOMAIN_PATH,
    // a transaction's start and end) is whoever spoke last on the connection.
    r = opts.roleOf?.(e)
      ?? roleForPath(abs, e.domid, e.conn)
      ?? (t === 'TRANSACTION_START' ? roleOfTx.get(txOfStart.get(e) ?? '') : undefined)
      ?? (e.tx_id !== 0 ? roleOfTx.get(`${e.conn}:${e.tx_id}`) : undefined)
      ?? (abs === undefined ? lastRoleOfConn.get(e.conn) : undefined)
      ?? plainRole(domOf(e));
    rolesOfRequest.set(e, r);
    lastRoleOfConn.set(e.conn, r);
    if (t === 'WATCH') watchRole.set(`${e.conn}:${payloadFields(e.payload)[1] ?? ''}`, r);
    return r;
  };
  const resourceRole = (r: Resource, domid: number): string =>
    (r.side === 'frontend' ? frontLabel(r.dev.type, domid) : backLabel(r.dev.type, domid));

  // ---- statements, in trace order.
  const order: string[] = [];
  const seen = new Set<string>();
  const use = (label: string): string => {
    if (!seen.has(label)) {
      seen.add(label);
      order.push(label);
    }
    return label;
  };
  for (const p of opts.participants ?? []) use(p);
  const cut = (s: string): string => (s.length > maxLabel ? `${s.slice(0, maxLabel - 3)}...` : s);
  type Stmt = { readonly from: string; readonly to?: string; readonly arrow?: string; readonly text: string } | { readonly all: true; readonly text: string };
  const stmts: Stmt[] = [];
  const note = (over: string, text: string): void => void stmts.push({ from: use(over), text });
  const arrow = (from: string, arrowText: string, to: string, text: string): void =>
    void stmts.push({ from: use(from), arrow: arrowText, to: use(to), text });

  for (const e of all) {
    // Roles of requests are learnt in order even for requests not drawn (for later pathless ones).
    if (isXenstore(e) && e.dir === 'IN') requestRole(e);
    if (!drawn.has(e)) continue;
    const override = opts.roleOf?.(e);
    if (isXenstore(e)) {
      const type = xsType(e);
      const fields = payloadFields(e.payload).filter((f, i, a) => !(f === '' && a.length === 1));
      const tx = e.tx_id !== 0 ? ` [tx ${e.tx_id}]` : '';
      if (e.dir === 'IN') {
        let text: string;
        if (type === 'WRITE') text = `${xsName(e)} ${fields[0] ?? ''}=${fields.slice(1).join('\\0')}`;
        else if (type === 'TRANSACTION_END') text = `${xsName(e)} ${fields[0] === 'T' ? 'commit' : fields[0] === 'F' ? 'abort' : fields.join(' ')}`;
        else text = `${xsName(e)}${fields.length ? ` ${fields.join(' ')}` : ''}`;
        arrow(requestRole(e), '->>', XENSTORED, cut(text + tx));
      } else if (type === 'WATCH_EVENT') {
        // The path that fired names the driver that cares better than a broad watch's owner does.
        const to = override ?? roleForPath(absOf.get(e), e.domid, e.conn)
          ?? watchRole.get(`${e.conn}:${fields[1] ?? ''}`) ?? lastRoleOfConn.get(e.conn) ?? plainRole(domOf(e));
        arrow(XENSTORED, '-->>', to, cut(`${xsName(e)} ${fields[0] ?? ''}`));
      } else {
        const req = requestOf.get(e);
        const to = override ?? (req ? requestRole(req) : lastRoleOfConn.get(e.conn) ?? plainRole(domOf(e)));
        let text: string;
        if (type === 'ERROR') text = `${xsName(e)} ${fields.join(' ')}`;
        else if (type === 'TRANSACTION_START') text = `tx=${fields[0] ?? '?'}`;
        else text = fields.length === 0 || (fields.length === 1 && fields[0] === '') ? '""' : fields.join(' ');
        arrow(XENSTORED, '-->>', to, cut(text));
      }
      continue;
    }
    const xb = xenbusOf(e);
    if (xb) {
      const d = deviceOf(e);
      const dom = domOf(e);
      const side = xb.role === 'frontend' || xb.role === 'backend' ? xb.role : undefined;
      const who = override ?? (d && side && dom !== undefined
        ? (side === 'frontend' ? frontLabel(d.type, dom) : backLabel(d.type, dom)) : plainRole(dom));
      note(who, cut(xb.stateName));
      continue;
    }
    const res = resourceOf(e);
    if (res && isNum(e.domid)) {
      const who = override ?? resourceRole(res, e.domid);
      if (e.kind === 'evtchn') {
        const remote = (e.remote ?? {}) as Record<string, unknown>;
        const peer = isNum(remote.domid) ? ports.get(`${remote.domid}:${String(remote.port)}`) : undefined;
        const rc = isNum(e.result) && e.result !== 0 ? ` rc=${e.result}` : '';
        if (e.op === 'EVTCHNOP_send' && peer && isNum(remote.domid)) {
          arrow(who, '-)', resourceRole(peer, remote.domid), cut(`notify (port ${String(e.port)})${rc}`));
        } else {
          const to = isNum(remote.domid) ? ` to dom${remote.domid} port ${String(remote.port)}` : '';
          note(who, cut(`${String(e.op)} port ${String(e.port)}${to}${rc}`));
        }
      } else {
        const st = isNum(e.status) && e.status !== 0 ? ` status=${e.status}` : '';
        const what = e.op === 'map_grant_ref' ? `map grant ref ${String(e.ref)} of dom${String(e.dom)}` : `${String(e.op)} handle ${String(e.handle)}`;
        note(who, cut(what + st));
      }
      continue;
    }
    if (e.kind === 'step' || e.kind === 'fault') {
      const rest = otherFields(e, ['name']).map(([k, v]) => `${k}=${compactValue(v)}`).join(' ');
      const name = isStr(e.name) ? e.name : '';
      stmts.push({ all: true, text: cut(`${e.kind}${name ? ` ${name}` : ''}${rest ? ` ${rest}` : ''}`) });
      continue;
    }
    const who = override ?? (e.kind === 'toolstack' ? TOOLSTACK : plainRole(domOf(e)));
    note(who, cut(summary(e)));
  }

  // ---- participants: frontends, xenstored in the middle, backends, then the rest.
  if (order.length === 0 && stmts.length > 0) use(SCENARIO);
  const declared = new Set(opts.participants ?? []);
  const rank = (label: string): number => {
    if (declared.has(label)) return -1;
    if (/front \(dom\d+\)$|frontend \(dom\d+\)$/.test(label)) return 0;
    if (/^dom\d+$/.test(label)) return 1;
    if (label === XENSTORED) return 2;
    if (/back \(dom\d+\)$|backend \(dom\d+\)$/.test(label)) return 3;
    if (label === TOOLSTACK) return 4;
    return 5;
  };
  const sorted = order.map((label, i) => ({ label, i })).sort((a, b) => rank(a.label) - rank(b.label) || a.i - b.i).map((x) => x.label);
  const taken = new Set<string>();
  const ids = new Map(sorted.map((label) => [label, makeId(label, taken)]));

  const lines = ['sequenceDiagram'];
  for (const label of sorted) lines.push(`  participant ${ids.get(label)} as ${escapeLabel(label)}`);
  const first = ids.get(sorted[0]);
  const last = ids.get(sorted[sorted.length - 1]);
  for (const s of stmts) {
    const text = escapeMermaidText(s.text);
    if ('all' in s) lines.push(`  Note over ${first === last ? first : `${first},${last}`}: ${text}`);
    else if (s.to === undefined) lines.push(`  Note over ${ids.get(s.from)}: ${text}`);
    else lines.push(`  ${ids.get(s.from)}${s.arrow}${ids.get(s.to)}: ${text}`);
  }
  return `${lines.join('\n')}\n`;
}
