// A simulator trace as a Mermaid sequence diagram: who said what to whom during a device
// handshake. Participants are roles - "blkfront (dom1)", "xenstored", "blkback (dom0)",
// "toolstack" - rather than connections, because one guest connection serves every driver.
// Requests are arrows to xenstored, watch events dashed arrows back, xenbus state changes notes
// over their driver, event-channel notifications async arrows between the ends.
//
// By default the traffic is folded so a handshake fits on a slide: a reply is said in its
// request's arrow, a party's run of reads and writes is one arrow, a transaction one arrow at its
// commit, a commit's watch events one arrow per watcher (see foldedStatements for what may not be
// reordered). `fold: false` draws one arrow per message, replies dashed back. toMermaidDiagrams
// cuts a diagram past Mermaid's default size limits into parts.
//
// Pure: events in, diagram text out. Only kinds the diagram can place are drawn by default;
// a predicate filter can pick any event, unknown kinds becoming notes.

import {
  type DevicePath, type TraceRecord, type XsRecord, absolutePath, domOf, driverName, isNum, isStr, isXenstore,
  oneLine, otherFields, compactValue, parseDevicePath, payloadFields, summary, xenbusOf, xsName, xsPath, xsType,
} from './events.ts';
import { type FoldItem, foldItems, homeRelative, wrapLabel } from './mermaid-fold.ts';
import { Virq } from '../../hypervisor/public/xen.ts';

export interface MermaidOptions {
  /**
   * Which events to draw. A string names a device ('vbd/51712': both of its ends), a device
   * directory ('/local/domain/1/device/vbd/51712': that frontend's device and its backend) or
   * any other absolute path prefix; a function chooses events itself. Replies follow their
   * requests, and a transaction's start and end follow the operations inside it. Without a
   * filter, everything but raw hypercalls, the scheduler's task and preempt events, xenstore
   * ring index moves and channels or grants no device uses is drawn.
   */
  readonly filter?: string | ((e: TraceRecord) => boolean);
  /** Participants declared first, in this order (as labelled, e.g. 'blkfront (dom1)'). */
  readonly participants?: readonly string[];
  /** Names the role an event's actor plays, overriding the inference (undefined: infer). */
  readonly roleOf?: (e: TraceRecord) => string | undefined;
  /** Message texts longer than this are cut (default 120 characters; not folded arrows, whose lines wrap). */
  readonly maxLabel?: number;
  /**
   * Fold the traffic into arrows a slide can hold (default true): a reply in its request's arrow,
   * a party's consecutive reads or writes in one, a transaction in one, a commit's watch events in
   * one per watcher. false: one arrow per xenstore message.
   */
  readonly fold?: boolean;
}

/** The scheduler's bookkeeping and xenstore ring index moves: a note each would drown the messages. */
const SCHEDULER_KINDS = new Set(['task', 'preempt', 'ring']);

const XENSTORED = 'xenstored';
const TOOLSTACK = 'toolstack';
const SCENARIO = 'scenario';
/** The hypervisor's lifeline: event-channel and grant-table hypercalls go to it, VIRQs come from it. */
const XEN = 'Xen';

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
/** A VIRQ by its Xen name (xen.h's VIRQ_* numbers). */
const virqLabel = (v: unknown): string => (isNum(v) && Virq[v] !== undefined ? Virq[v] : `VIRQ ${String(v)}`);
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

function sequence(events: Iterable<TraceRecord>, opts: MermaidOptions): Sequence {
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
    if (e.kind === 'hypercall' || SCHEDULER_KINDS.has(e.kind)) return false;
    if (e.kind === 'evtchn' || e.kind === 'gnttab') {
      // Xen's own VIRQs (VIRQ_DOM_EXC to dom0...) are drawn when no device is asked for.
      if (e.kind === 'evtchn' && e.op === 'send_global_virq') return !matcher;
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

  // ---- statements.
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
  const stmts: Stmt[] = [];
  const note = (over: string, text: string): void => void stmts.push({ from: use(over), lines: [text] });
  const arrow = (from: string, arrowText: string, to: string, text: string | string[]): void =>
    void stmts.push({ from: use(from), arrow: arrowText, to: use(to), lines: typeof text === 'string' ? [text] : text });

  /** What a drawn event that is neither a xenstore message nor a xenbus state change draws. */
  const otherStmt = (e: TraceRecord, override: string | undefined): Stmt => {
    const res = resourceOf(e);
    if (res && isNum(e.domid)) {
      const who = override ?? resourceRole(res, e.domid);
      if (e.kind === 'evtchn') {
        const remote = (e.remote ?? {}) as Record<string, unknown>;
        const peer = isNum(remote.domid) ? ports.get(`${remote.domid}:${String(remote.port)}`) : undefined;
        const rc = isNum(e.result) && e.result !== 0 ? ` rc=${e.result}` : '';
        if (e.op === 'EVTCHNOP_send' && peer && isNum(remote.domid)) {
          return { from: who, arrow: '-)', to: resourceRole(peer, remote.domid), lines: [cut(`notify (port ${String(e.port)})${rc}`)] };
        }
        const to = isNum(remote.domid) ? ` to dom${remote.domid} port ${String(remote.port)}` : '';
        return { from: who, arrow: '->>', to: XEN, lines: [cut(`${String(e.op)} port ${String(e.port)}${to}${rc}`)] };
      }
      const st = isNum(e.status) && e.status !== 0 ? ` status=${e.status}` : '';
      const what = e.op === 'map_grant_ref' ? `map grant ref ${String(e.ref)} of dom${String(e.dom)}` : `${String(e.op)} handle ${String(e.handle)}`;
      return { from: who, arrow: '->>', to: XEN, lines: [cut(what + st)] };
    }
    if (e.kind === 'evtchn' && e.op === 'send_global_virq') {
      return { from: XEN, arrow: '-)', to: override ?? plainRole(domOf(e)), lines: [cut(`${virqLabel(e.virq)}${isNum(e.port) ? ` (port ${e.port})` : ''}`)] };
    }
    if (e.kind === 'step' || e.kind === 'fault') {
      const rest = otherFields(e, ['name']).map(([k, v]) => `${k}=${compactValue(v)}`).join(' ');
      const name = isStr(e.name) ? e.name : '';
      return { all: true, lines: [cut(`${e.kind}${name ? ` ${name}` : ''}${rest ? ` ${rest}` : ''}`)] };
    }
    return { from: override ?? (e.kind === 'toolstack' ? TOOLSTACK : plainRole(domOf(e))), lines: [cut(summary(e))] };
  };
  /** Whom a watch event goes to: the path that fired names the driver that cares better than a broad watch's owner does. */
  const watchTarget = (e: XsRecord, override: string | undefined): string => override ?? roleForPath(absOf.get(e), e.domid, e.conn)
    ?? watchRole.get(`${e.conn}:${payloadFields(e.payload)[1] ?? ''}`) ?? lastRoleOfConn.get(e.conn) ?? plainRole(domOf(e));
  /** Who a xenbus state change is a note over. */
  const xenbusWho = (e: TraceRecord, role: string, override: string | undefined): string => {
    const d = deviceOf(e);
    const dom = domOf(e);
    const side = role === 'frontend' || role === 'backend' ? role : undefined;
    return override ?? (d && side && dom !== undefined
      ? (side === 'frontend' ? frontLabel(d.type, dom) : backLabel(d.type, dom)) : plainRole(dom));
  };

  if (opts.fold === false) {
    // One arrow per xenstore message.
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
          arrow(XENSTORED, '-->>', watchTarget(e, override), cut(`${xsName(e)} ${fields[0] ?? ''}`));
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
        note(xenbusWho(e, xb.role, override), cut(xb.stateName));
        continue;
      }
      const s = otherStmt(e, override);
      stmts.push('all' in s ? s : { ...s, from: use(s.from), ...(s.to !== undefined ? { to: use(s.to) } : {}) });
    }
  } else {
    foldedStatements({
      all, drawn, absOf, requestOf, txOfStart, requestRole, watchTarget, xenbusWho, otherStmt,
      roleOf: opts.roleOf, arrow, note, push: (s) => void stmts.push(s), use,
    });
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
    if (label === XEN) return 6;
    return 5;
  };
  const sorted = order.map((label, i) => ({ label, i })).sort((a, b) => rank(a.label) - rank(b.label) || a.i - b.i).map((x) => x.label);
  return { participants: sorted, stmts };
}

type Stmt = { readonly from: string; readonly to?: string; readonly arrow?: string; readonly lines: readonly string[] }
  | { readonly all: true; readonly lines: readonly string[] };

/** A diagram before it is written: participants in order, then statements in order. */
interface Sequence {
  readonly participants: readonly string[];
  readonly stmts: readonly Stmt[];
}

// ------------------------------------------------------------------------------ folding

/** Requests that change nothing in the store: a party's run of them folds into one arrow. */
const LOOKS = new Set(['READ', 'DIRECTORY', 'DIRECTORY_PART', 'GET_PERMS', 'WATCH', 'UNWATCH', 'GET_DOMAIN_PATH']);
/** A folded arrow's lines: at most this wide, at most this many. */
const LINE_WIDTH = 100;
const MAX_LINES = 10;
/** A value shown in a folded arrow is cut past this. */
const MAX_VALUE = 48;

interface FoldInput {
  readonly all: readonly TraceRecord[];
  readonly drawn: ReadonlySet<TraceRecord>;
  readonly absOf: ReadonlyMap<XsRecord, string>;
  readonly requestOf: ReadonlyMap<XsRecord, XsRecord>;
  readonly txOfStart: ReadonlyMap<XsRecord, string>;
  readonly requestRole: (e: XsRecord) => string;
  readonly watchTarget: (e: XsRecord, override: string | undefined) => string;
  readonly xenbusWho: (e: TraceRecord, role: string, override: string | undefined) => string;
  readonly otherStmt: (e: TraceRecord, override: string | undefined) => Stmt;
  readonly roleOf?: (e: TraceRecord) => string | undefined;
  readonly arrow: (from: string, arrowText: string, to: string, text: string | string[]) => void;
  readonly note: (over: string, text: string) => void;
  readonly push: (s: Stmt) => void;
  readonly use: (label: string) => string;
}

interface Op { readonly req: XsRecord; reply?: XsRecord }
interface Fold {
  /** Trace index it is drawn at: its first operation's, a transaction's XS_TRANSACTION_END's. */
  pos: number;
  readonly role: string;
  /** 'op' (reads and writes), 'tx', another request type, 'events' (watch events only) or 'stmt'. */
  readonly kind: string;
  /** Another party committed since this arrow opened: a write of its own may no longer join it. */
  sawCommit?: boolean;
  readonly ops: Op[];
  tx?: { start?: Op; end?: Op; id: string; others: number };
  readonly events: { to: string; item: FoldItem }[];
  readonly notes: { who: string; text: string }[];
  stmt?: Stmt;
}

const related = (a: string, b: string): boolean => a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
/**
 * Whether a write (or removal) of path `w` can change what a look of type `t` at `path` sees:
 * a node's value changes with a write of it or a removal above it, a listing with any change
 * below it, a watch or a domain's path with nothing.
 */
function changes(w: string, t: string, path: string): boolean {
  if (t === 'READ' || t === 'GET_PERMS') return path === w || path.startsWith(`${w}/`);
  if (t === 'DIRECTORY' || t === 'DIRECTORY_PART') return related(path, w);
  return false;
}

/**
 * The statements of a folded diagram: each xenstore reply said in its request's arrow
 * (`XS_READ state -> 1`), a party's consecutive reads or writes in one arrow, a transaction in
 * one arrow at its commit, the watch events a commit fires as one arrow per watcher and token,
 * a XenbusState change as a note right after the arrow that committed it.
 *
 * Folding must not reorder what teaches the handshake: a commit drawn by one party closes every
 * other party's open arrow, so commits stay in xenstored's order; a read arrow stays open across
 * others' commits only when they touch none of its paths; a watch event to a party closes its
 * open arrow (what it does next is a reaction).
 */
function foldedStatements(f: FoldInput): void {
  const folds: Fold[] = [];
  const open = new Map<string, Fold>();
  const foldOfReq = new Map<XsRecord, Fold>();
  const opOfReq = new Map<XsRecord, Op>();
  const txFolds = new Map<string, Fold>();
  const txPaths = new Map<string, string[]>();
  /** Transactions that wrote something (any operation but a look). */
  const txWrites = new Set<string>();
  const commitFold = new Map<string, Fold>();
  const eventsOf = new Map<XsRecord | undefined, Fold>();
  const replyOf = new Map<XsRecord, XsRecord>();
  for (const [rep, req] of f.requestOf) replyOf.set(req, rep);
  const newFold = (pos: number, role: string, kind: string): Fold => ({ pos, role, kind, ops: [], events: [], notes: [] });
  /** The paths a fold's operations of one sort (looks or writes) name. */
  const opPaths = (fold: Fold, sort: ReadonlySet<string>): { type: string; path: string }[] => fold.ops
    .filter((o) => sort.has(xsType(o.req)))
    .map((o) => ({ type: xsType(o.req), path: f.absOf.get(o.req) }))
    .filter((x): x is { type: string; path: string } => x.path !== undefined);
  const lookTouched = (fold: Fold, paths: readonly string[]): boolean =>
    opPaths(fold, LOOKS).some((l) => paths.some((w) => changes(w, l.type, l.path)));
  /**
   * A commit: it closes other parties' arrows that hold writes (commits stay in order) and the
   * looks it may change; a look-only arrow it does not touch stays open for more looks.
   */
  const barrier = (writer: string | undefined, paths: readonly string[]): void => {
    for (const [role, fold] of open) {
      if (role === writer) continue;
      if (lookTouched(fold, paths) || (writer !== undefined && opPaths(fold, WRITES).length > 0)) open.delete(role);
      else if (writer !== undefined) fold.sawCommit = true;
    }
  };
  /** Whether `op` can join `fold` without reordering anything that matters inside it. */
  const joins = (fold: Fold, t: string, abs: string | undefined): boolean => {
    if (fold.kind !== 'op') return false;
    if (WRITES.has(t)) return !fold.sawCommit && (abs === undefined || !lookTouched(fold, [abs]));
    return abs === undefined || !opPaths(fold, WRITES).some((w) => changes(w.path, t, abs));
  };
  let lastIn: XsRecord | undefined;
  /** Whether request `req` fired watch event `ev`, which xenstored sent while handling it. */
  const fired = (req: XsRecord, ev: XsRecord): boolean => {
    const t = xsType(req);
    const path = f.absOf.get(ev) ?? '';
    if (path.startsWith('@')) return true;
    if (t === 'WATCH') return req.conn === ev.conn && req.domid === ev.domid;
    if (t === 'TRANSACTION_END') return (txPaths.get(`${req.conn}:${req.tx_id}`) ?? []).some((p) => related(p, path));
    const abs = f.absOf.get(req);
    return WRITES.has(t) && abs !== undefined && related(abs, path);
  };

  f.all.forEach((e, i) => {
    const override = f.roleOf?.(e);
    if (isXenstore(e) && e.dir === 'IN') {
      lastIn = e;
      const role = f.requestRole(e);
      const t = xsType(e);
      const abs = f.absOf.get(e);
      const txKey = `${e.conn}:${e.tx_id}`;
      if (e.tx_id !== 0 && abs !== undefined) txPaths.set(txKey, [...txPaths.get(txKey) ?? [], abs]);
      if (e.tx_id !== 0 && !LOOKS.has(t) && t !== 'TRANSACTION_END') txWrites.add(txKey);
      const rep = replyOf.get(e);
      if (!f.drawn.has(e) && !(rep && f.drawn.has(rep))) {
        if (t === 'TRANSACTION_END') barrier(undefined, txPaths.get(txKey) ?? []);
        else if (WRITES.has(t) && e.tx_id === 0 && abs !== undefined) barrier(undefined, [abs]);
        else if (e.tx_id !== 0) { const tx = txFolds.get(txKey); if (tx?.tx) tx.tx.others++; }
        return;
      }
      const op: Op = { req: e };
      opOfReq.set(e, op);
      if (t === 'TRANSACTION_START') {
        // Its id is in the reply; without one (--hide replies) the transaction's first operation opens it.
        const key = f.txOfStart.get(e);
        if (key === undefined) return;
        const fold = newFold(i, role, 'tx');
        fold.tx = { start: op, id: key.split(':')[1] ?? '?', others: 0 };
        txFolds.set(key, fold);
        foldOfReq.set(e, fold);
        return;
      }
      if (e.tx_id !== 0) {
        let fold = txFolds.get(txKey);
        if (!fold) {
          fold = newFold(i, role, 'tx');
          fold.tx = { id: String(e.tx_id), others: 0 };
          txFolds.set(txKey, fold);
        }
        foldOfReq.set(e, fold);
        if (t !== 'TRANSACTION_END') {
          fold.ops.push(op);
          return;
        }
        fold.tx!.end = op;
        txFolds.delete(txKey);
        if (!txWrites.has(txKey) && fold.ops.length > 0) {
          // A transaction that only reads commits nothing: its reads join the party's arrow.
          let reads = open.get(role);
          if (!reads || !fold.ops.every((o) => joins(reads!, xsType(o.req), f.absOf.get(o.req)))) {
            reads = newFold(fold.pos, role, 'op');
            folds.push(reads);
            open.set(role, reads);
          }
          for (const o of fold.ops) {
            reads.ops.push(o);
            foldOfReq.set(o.req, reads);
          }
          foldOfReq.set(e, reads);
          return;
        }
        fold.pos = i;
        folds.push(fold);
        barrier(role, txPaths.get(txKey) ?? []);
        open.delete(role);
        return;
      }
      if (WRITES.has(t) && abs !== undefined) barrier(role, [abs]);
      const kind = LOOKS.has(t) || WRITES.has(t) ? 'op' : t;
      let fold = open.get(role);
      if (!fold || (kind === 'op' ? !joins(fold, t, abs) : fold.kind !== kind)) {
        fold = newFold(i, role, kind);
        folds.push(fold);
        open.set(role, fold);
      }
      fold.ops.push(op);
      foldOfReq.set(e, fold);
      return;
    }
    if (isXenstore(e) && xsType(e) !== 'WATCH_EVENT') {
      const req = f.requestOf.get(e);
      const op = req && opOfReq.get(req);
      if (!req || !op) return;
      op.reply = e;
      const fold = foldOfReq.get(req);
      if (!fold || xsType(e) === 'ERROR') return;
      // Remember which arrow committed each write, for the state change announced after it.
      const committed = (w: XsRecord): void => {
        const [path, value = ''] = payloadFields(w.payload);
        if (path !== undefined) commitFold.set(`${w.domid} ${absolutePath(path, w.domid)} ${value}`, fold);
      };
      if (xsType(req) === 'WRITE' && req.tx_id === 0) committed(req);
      if (xsType(req) === 'TRANSACTION_END') for (const o of fold.ops) if (xsType(o.req) === 'WRITE') committed(o.req);
      return;
    }
    if (!f.drawn.has(e)) return;
    if (isXenstore(e)) {
      // A watch event: with the arrow of the request that fired it.
      const to = f.watchTarget(e, override);
      const src = lastIn && fired(lastIn, e) ? foldOfReq.get(lastIn) : undefined;
      let fold = src;
      if (!fold) {
        fold = eventsOf.get(lastIn);
        if (!fold) {
          fold = newFold(i, XENSTORED, 'events');
          folds.push(fold);
          eventsOf.set(lastIn, fold);
        }
      }
      const path = payloadFields(e.payload)[0] ?? '';
      fold.events.push({ to, item: { name: 'XS_WATCH_EVENT', path: homeRelative(absolutePath(path, domOf(e)), domOf(e)), tail: '' } });
      if (open.get(to) !== fold) open.delete(to);
      return;
    }
    const xb = xenbusOf(e);
    if (xb) {
      const who = f.xenbusWho(e, xb.role, override);
      const text = `${xb.stateName} (${xb.state})`;
      const key = `${String(e.domid)} ${absolutePath(xb.path ?? '', domOf(e))} ${xb.state}`;
      const fold = commitFold.get(key);
      if (fold) {
        commitFold.delete(key);
        fold.notes.push({ who, text });
      } else {
        const alone = newFold(i, who, 'stmt');
        alone.stmt = { from: who, lines: [text] };
        folds.push(alone);
      }
      return;
    }
    const s = f.otherStmt(e, override);
    if ('all' in s) open.clear();
    else open.delete(s.from);
    const alone = newFold(i, 'all' in s ? SCENARIO : s.from, 'stmt');
    alone.stmt = s;
    folds.push(alone);
  });
  // Transactions the trace ends inside.
  for (const fold of txFolds.values()) {
    fold.pos = fold.ops.length > 0 ? f.all.indexOf(fold.ops[fold.ops.length - 1].req) : fold.pos;
    folds.push(fold);
  }

  const stmts: Stmt[] = [];
  const emit = (s: Stmt): void => void stmts.push(s);
  for (const fold of folds.sort((a, b) => a.pos - b.pos)) {
    // Watch events a party's own writes fire back to it are said in the writer's arrow.
    const own = fold.stmt || fold.ops.length === 0 ? [] : fold.events.filter((ev) => ev.to === fold.role);
    const ownText = own.length > 0 ? [`XS_WATCH_EVENT to itself: ${foldItems(own.map((ev) => ev.item)).map((x) => x.replace(/^XS_WATCH_EVENT /, '')).join(', ')}`] : [];
    if (fold.stmt) emit(fold.stmt);
    else if (fold.kind === 'tx') emit({ from: fold.role, arrow: '->>', to: XENSTORED, lines: txLines(fold, ownText) });
    else if (fold.ops.length > 0) {
      emit({ from: fold.role, arrow: '->>', to: XENSTORED, lines: wrapLabel([...foldItems(fold.ops.map(opItem)), ...ownText].join('; '), LINE_WIDTH, MAX_LINES) });
    }
    for (const n of fold.notes) emit({ from: n.who, lines: [n.text] });
    const byWatcher = new Map<string, { to: string; items: FoldItem[] }>();
    for (const ev of fold.events) {
      if (own.includes(ev)) continue;
      const g = byWatcher.get(ev.to) ?? { to: ev.to, items: [] };
      g.items.push(ev.item);
      byWatcher.set(ev.to, g);
    }
    for (const g of byWatcher.values()) {
      emit({ from: XENSTORED, arrow: '-->>', to: g.to, lines: wrapLabel(foldItems(g.items).join('; '), LINE_WIDTH, 2) });
    }
  }
  // The same statement again and again (a notification per request...) is said once, counted.
  let prev: Stmt | undefined;
  let count = 1;
  const flush = (): void => {
    if (!prev) return;
    const lines = count > 1 ? [...prev.lines.slice(0, -1), `${prev.lines[prev.lines.length - 1]} x${count}`] : prev.lines;
    if ('all' in prev) f.push({ all: true, lines });
    else if (prev.to === undefined) f.note(prev.from, lines.join(' '));
    else f.arrow(prev.from, prev.arrow ?? '->>', prev.to, [...lines]);
  };
  const same = (a: Stmt, b: Stmt): boolean => JSON.stringify(a) === JSON.stringify(b);
  for (const s of stmts) {
    if (prev && same(prev, s)) {
      count++;
      continue;
    }
    flush();
    prev = s;
    count = 1;
  }
  flush();
}

/** A folded operation: its name, its path from the requester's home, what it wrote or got back. */
function opItem(op: Op): FoldItem {
  const req = op.req;
  const t = xsType(req);
  const fields = payloadFields(req.payload);
  const rep = op.reply;
  const err = rep && xsType(rep) === 'ERROR' ? payloadFields(rep.payload)[0] ?? 'ERROR' : undefined;
  const got = rep ? payloadFields(rep.payload) : undefined;
  const value = (v: string): string => {
    const s = oneLine(v);
    if (s === '') return '""';
    return s.length > MAX_VALUE ? `${s.slice(0, MAX_VALUE - 3)}...` : s;
  };
  // No reply (--hide replies, or the trace ends first): the arrow says nothing of a result.
  const result = err;
  const answer = (text: (got: string[]) => string): string => (result ? ` -> ${result}` : got ? ` -> ${text(got)}` : '');
  const name = xsName(req);
  const path = PATHED.has(t) && fields[0] !== undefined ? homeRelative(absolutePath(oneLine(fields[0]), req.domid), req.domid) : '';
  let tail: string;
  switch (t) {
    case 'READ': tail = answer((g) => value(g.join('\\0'))); break;
    case 'DIRECTORY': case 'DIRECTORY_PART': tail = answer((g) => `[${value(g.filter((x) => x !== '').join(', '))}]`); break;
    case 'GET_PERMS': tail = answer((g) => g.join(' ')); break;
    case 'WRITE': tail = `=${value(fields.slice(1).join('\\0'))}${result ? ` -> ${result}` : ''}`; break;
    case 'SET_PERMS': case 'WATCH': case 'UNWATCH':
      tail = `${fields.length > 1 ? ` ${value(fields.slice(1).join(' '))}` : ''}${result ? ` -> ${result}` : ''}`; break;
    case 'MKDIR': case 'RM': tail = result ? ` -> ${result}` : ''; break;
    default: {
      const args = fields.filter((x) => x !== '').join(' ');
      const ok = got && got.length === 1 && got[0] === 'OK';
      tail = `${args ? ` ${value(args)}` : ''}${ok ? '' : answer((g) => value(g.join(' ')))}`;
    }
  }
  return { name, path, tail };
}
const PATHED = new Set(['READ', 'WRITE', 'MKDIR', 'RM', 'DIRECTORY', 'DIRECTORY_PART', 'GET_PERMS', 'SET_PERMS', 'WATCH', 'UNWATCH']);

/** A transaction's arrow: its start, the operations drawn in it, its end and what the end got. */
function txLines(fold: Fold, after: readonly string[]): string[] {
  const tx = fold.tx!;
  const parts = [`XS_TRANSACTION_START -> ${tx.id}`, ...foldItems(fold.ops.map(opItem))];
  if (tx.others > 0) parts.push(`(${tx.others} more on other paths)`);
  if (tx.end) {
    const how = payloadFields(tx.end.req.payload)[0] ?? '';
    const rep = tx.end.reply;
    const result = !rep ? '' : xsType(rep) === 'ERROR' ? ` -> ${payloadFields(rep.payload)[0] ?? 'ERROR'}` : ' -> OK';
    parts.push(`XS_TRANSACTION_END ${oneLine(how)}${result}`);
  } else parts.push('(no XS_TRANSACTION_END in the trace)');
  parts.push(...after);
  return wrapLabel(parts.join('; '), LINE_WIDTH, MAX_LINES);
}

// ------------------------------------------------------------------------------ writing

/** Mermaid's defaults (mermaid's config: maxTextSize, maxEdges) that a diagram must stay within. */
export const MERMAID_LIMITS = { maxTextSize: 50_000, maxEdges: 500 } as const;

function arrowCount(stmts: readonly Stmt[]): number {
  return stmts.filter((s) => !('all' in s) && s.to !== undefined).length;
}

/** Mermaid's text for each statement, given the participants' ids. */
function writer(seq: Sequence): { head: (title?: string) => string[]; line: (s: Stmt) => string } {
  const taken = new Set<string>();
  const ids = new Map(seq.participants.map((label) => [label, makeId(label, taken)]));
  const first = ids.get(seq.participants[0]);
  const last = ids.get(seq.participants[seq.participants.length - 1]);
  return {
    head: (title) => [
      'sequenceDiagram',
      ...seq.participants.map((label) => `  participant ${ids.get(label)} as ${escapeLabel(label)}`),
      // A note rather than Mermaid's title, whose sanitising needs a browser's DOM even to parse.
      ...(title !== undefined ? [`  Note over ${first === last ? first : `${first},${last}`}: ${escapeMermaidText(title)}`] : []),
    ],
    line: (s) => {
      // A label's lines: each escaped, joined with the line break Mermaid draws.
      const text = s.lines.map(escapeMermaidText).join('<br>');
      if ('all' in s) return `  Note over ${first === last ? first : `${first},${last}`}: ${text}`;
      if (s.to === undefined) return `  Note over ${ids.get(s.from)}: ${text}`;
      return `  ${ids.get(s.from)}${s.arrow}${ids.get(s.to)}: ${text}`;
    },
  };
}

function render(seq: Sequence, stmts: readonly Stmt[], title?: string): string {
  const w = writer(seq);
  return `${[...w.head(title), ...stmts.map(w.line)].join('\n')}\n`;
}

export function toMermaidSequence(events: Iterable<TraceRecord>, opts: MermaidOptions = {}): string {
  const seq = sequence(events, opts);
  return render(seq, seq.stmts);
}

/**
 * The diagram as one or more texts, each within Mermaid's default limits: past `maxTextSize`
 * characters Mermaid draws "Maximum text size in diagram exceeded" instead, and past `maxEdges`
 * arrows a diagram is no longer readable. Parts are cut between statements, at a scenario step
 * when one is near, each opening with a note "part N of M" and declaring every participant in
 * the same order.
 */
export function toMermaidDiagrams(
  events: Iterable<TraceRecord>, opts: MermaidOptions & { readonly limits?: { readonly maxTextSize: number; readonly maxEdges: number } } = {},
): string[] {
  const limits = opts.limits ?? MERMAID_LIMITS;
  const seq = sequence(events, opts);
  const whole = render(seq, seq.stmts);
  if (whole.length <= limits.maxTextSize && arrowCount(seq.stmts) <= limits.maxEdges) return [whole];
  // Room for the note each part opens with ("part 999 of 999").
  const w = writer(seq);
  const header = render(seq, [], 'part 999 of 999').length;
  const cost = (x: Stmt): number => w.line(x).length + 1;
  const isArrow = (x: Stmt): boolean => !('all' in x) && x.to !== undefined;
  const parts: Stmt[][] = [];
  let cur: { s: Stmt; cost: number }[] = [];
  let size = header;
  let arrows = 0;
  const fits = (c: number, s: Stmt): boolean => size + c <= limits.maxTextSize && arrows + (isArrow(s) ? 1 : 0) <= limits.maxEdges;
  const restart = (carry: { s: Stmt; cost: number }[]): void => {
    cur = carry;
    size = header + carry.reduce((n, x) => n + x.cost, 0);
    arrows = carry.filter((x) => isArrow(x.s)).length;
  };
  for (const s of seq.stmts) {
    const c = cost(s);
    if (header + c > limits.maxTextSize) throw new Error(`a diagram statement of ${c} characters cannot fit in maxTextSize ${limits.maxTextSize}`);
    if (!fits(c, s)) {
      // Cut at the last scenario step of this part if it is in its second half.
      const step = cur.findLastIndex((x) => 'all' in x.s);
      const carry = step > cur.length / 2 ? cur.slice(step) : [];
      parts.push(cur.slice(0, cur.length - carry.length).map((x) => x.s));
      restart(carry);
      if (!fits(c, s)) {
        parts.push(cur.map((x) => x.s));
        restart([]);
      }
    }
    cur.push({ s, cost: c });
    size += c;
    if (isArrow(s)) arrows++;
  }
  if (cur.length > 0) parts.push(cur.map((x) => x.s));
  return parts.map((p, i) => render(seq, p, `part ${i + 1} of ${parts.length}`));
}
