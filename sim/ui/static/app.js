// xensim ui: the page. Plain browser JavaScript, served by xensim itself (no CDN, no build):
// it asks the server's JSON API for the state after N events and the events around N, and draws.
// Drawing happens once per animation frame whatever the number of answers (a live host streams
// faster than a screen refreshes), and the xenstore tree draws only the rows in view (a host of
// a hundred guests has thousands of nodes).
'use strict';

const SHUTDOWN = ['poweroff', 'reboot', 'suspend', 'crash', 'watchdog', 'soft_reset'];
const XENBUS = ['Unknown', 'Initialising', 'InitWait', 'Initialised', 'Connected', 'Closing', 'Closed', 'Reconfiguring', 'Reconfigured'];
const KIND_COLOURS = { xenstore: '#1f6feb', xenbus: '#d12f2f', hypercall: '#6e40c9', evtchn: '#2da44e', gnttab: '#bf8700', ring: '#57606a', step: '#000', fault: '#cf222e' };
const $ = (id) => document.getElementById(id);
/** The HTML last given to each element: an unchanged panel is not parsed and laid out again. */
const drawn = new Map();
function setHtml(el, html) {
  if (drawn.get(el) === html) return;
  drawn.set(el, html);
  el.innerHTML = html;
}
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));

const ui = {
  n: 0, count: 0, lanes: [], state: null, window: [], loading: 0, live: false,
  /** The ring page shown: a guest's domid, or 'auto' (the guest of the last ring or xenstore event). */
  ringPick: 'auto', ring: null,
  /** What the tree draws: the rows, and the first changed one to bring into view once. */
  treeRows: [], treeScrollTo: -1,
  frame: 0,
};
const TREE_ROW = 16;

async function api(path) {
  const r = await fetch(path);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function start() {
  const meta = await api('/api/meta');
  ui.count = meta.count;
  ui.lanes = meta.lanes.map((l) => l.id);
  $('title').textContent = `xensim ui - ${meta.title}`;
  document.title = `xensim ui - ${meta.title}`;
  $('count').textContent = meta.count;
  $('n').max = meta.count;
  $('slider').max = meta.count;
  ui.live = meta.live === true;
  $('live').style.display = ui.live ? '' : 'none';
  const fromHash = Number(location.hash.slice(1));
  await go(Number.isInteger(fromHash) && fromHash > 0 ? fromHash : 0);
  if (ui.live) void follow();
}

/** A live host: learn how many events there are now and, when following, show the latest. */
async function follow() {
  for (;;) {
    try {
      const meta = await api('/api/meta');
      ui.count = meta.count;
      ui.lanes = meta.lanes.map((l) => l.id);
      $('count').textContent = meta.count;
      $('n').max = meta.count;
      $('slider').max = meta.count;
      if ($('follow').checked && meta.count !== ui.n) await go(meta.count);
    } catch (e) {
      $('bp-result').textContent = `live: ${e.message}`;
    }
    // At most one update per frame and a few per second: the host is never waited for.
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 100)));
  }
}

/** The guest whose ring page to show after this state. */
function ringDomid(state) {
  if (ui.ringPick !== 'auto') return Number(ui.ringPick);
  const e = state.last && state.last.event;
  if (e && e.kind === 'ring' && typeof e.peer === 'number') return e.peer;
  if (e && e.kind === 'xenstore' && e.domid > 0) return e.domid;
  if (ui.ring && state.rings.some((r) => r.domid === ui.ring.domid)) return ui.ring.domid;
  return state.rings.length ? state.rings[0].domid : undefined;
}

/** Show the state after n events. */
async function go(n) {
  n = Math.max(0, Math.min(ui.count, n | 0));
  const seq = ++ui.loading;
  const from = Math.max(0, n - 150);
  const [state, events] = await Promise.all([api(`/api/state?n=${n}`), api(`/api/events?from=${from}&to=${from + 300}`)]);
  if (seq !== ui.loading) return; // a later request won
  const d = shown('p-ring') ? ringDomid(state) : undefined;
  const ring = d === undefined ? null : await api(`/api/ring?n=${n}&domid=${d}`);
  if (seq !== ui.loading) return;
  ui.n = n;
  ui.state = state;
  ui.window = events;
  // A ring page not fetched (its panel out of view) keeps the last one until it is.
  if (shown('p-ring')) ui.ring = ring && !ring.none ? ring : null;
  history.replaceState(null, '', `#${n}`);
  scheduleRender();
  await rendered();
}

/** Draw at the next frame, once, with the newest state. */
function scheduleRender() {
  if (ui.frame) return;
  ui.frame = requestAnimationFrame(() => {
    ui.frame = 0;
    render();
    for (const f of ui.waiting.splice(0)) f();
  });
}
ui.waiting = [];
/** Resolves once what was asked is drawn (so a step's promise means the page shows it). */
const rendered = () => (ui.frame ? new Promise((r) => ui.waiting.push(r)) : Promise.resolve());

async function find(params, dir = 'next') {
  const q = new URLSearchParams({ n: String(ui.n), dir, ...params });
  const r = await api(`/api/find?${q}`);
  return r.n;
}

/** Where an element sits in its scrolling panel: read before a render writes (one layout a frame, not one per list). */
function geometry(id, panel) {
  if (ui.geo && ui.geo.has(id)) return ui.geo.get(id);
  const el = $(id);
  const box = $(panel);
  return { scrollTop: box.scrollTop || 0, clientHeight: box.clientHeight || 800, offsetTop: el.offsetTop || 0, clientWidth: el.clientWidth || 1000 };
}
const GEOMETRY = [['domains', 'p-domains'], ['ports', 'p-evtchn'], ['grants', 'p-grants'], ['watches', 'p-watches'], ['transactions', 'p-watches'], ['tree', 'p-tree'], ['timeline', 'timeline-box']];

function render() {
  const s = ui.state;
  ui.geo = null; // a render that threw left its geometry behind
  ui.geo = new Map(GEOMETRY.map(([id, panel]) => [id, geometry(id, panel)]));
  $('n').value = ui.n;
  $('slider').value = ui.n;
  document.body.dataset.n = String(ui.n);
  if (s.last) {
    $('sentence').textContent = `#${s.last.i + 1} ${s.t !== undefined ? `[${(s.t / 1e9).toFixed(6)} s] ` : ''}${s.last.text}`;
    $('raw').textContent = JSON.stringify(s.last.event);
  } else {
    $('sentence').textContent = 'The state before any event. Step to start.';
    $('raw').textContent = '';
  }
  for (const [panel, draw] of PANELS) if (shown(panel)) draw(s);
  ui.geo = null;
}

// The timeline first: canvas text needs the document's styles, which are clean before the other
// panels' HTML changes them (after, each frame would pay a style recalculation there).
const PANELS = [
  ['p-timeline', renderTimeline], ['p-domains', renderDomains], ['p-devices', renderDevices], ['p-tree', renderTree],
  ['p-watches', renderWatches], ['p-evtchn', renderPorts], ['p-grants', renderGrants], ['p-ring', renderRing], ['p-log', renderLog],
];

/**
 * Following a live host, a panel out of view is not drawn (it is when scrolled to): a hundred
 * guests' events come faster than anyone reads, and the screen is what must stay smooth. When
 * stepping, every panel is drawn at every step.
 */
const inView = new Set(PANELS.map(([p]) => p));
const shown = (panel) => !(ui.live && $('follow').checked) || inView.has(panel);
if (typeof IntersectionObserver === 'function') {
  const io = new IntersectionObserver((entries) => {
    let more = false;
    for (const e of entries) {
      if (e.isIntersecting && !inView.has(e.target.id)) more = true;
      if (e.isIntersecting) inView.add(e.target.id);
      else inView.delete(e.target.id);
    }
    if (more && ui.state) scheduleRender();
  });
  for (const [p] of PANELS) io.observe($(p));
}

const ROW = 16;
/** Lists that grow with the guests: their rows, to redraw the part in view when the panel scrolls. */
const vtables = new Map();
const VPANEL = { domains: 'p-domains', ports: 'p-evtchn', grants: 'p-grants', watches: 'p-watches', transactions: 'p-watches' };
const cell = (v, cls = '') => ({ v: String(v), cls });

/**
 * A table of fixed-height rows of which only those in view (and a screenful either side) are in
 * the document: a host of a hundred guests has hundreds of ports, grants and watches.
 */
function vtable(id, head, rows) {
  vtables.set(id, { head, rows });
  drawVtable(id);
}

function drawVtable(id) {
  const { head, rows } = vtables.get(id);
  const el = $(id);
  if (!rows.length) {
    setHtml(el, '<i>none</i>');
    return;
  }
  const g = geometry(id, VPANEL[id]);
  const view = g.clientHeight;
  const scrolled = g.scrollTop - g.offsetTop;
  // What is in view and half a view either side (scrolling redraws; a frame needs no more).
  const first = Math.max(0, Math.floor(scrolled / ROW) - Math.ceil(view / ROW / 2));
  const last = Math.min(rows.length, first + 2 * Math.ceil(view / ROW) + 1);
  const line = (r) => `<div class="vr" ${r.attrs || ''}>${r.cells.map((c) => `<span class="${c.cls}" title="${c.v.replace(/<[^>]*>/g, '').replace(/"/g, '&quot;')}">${c.v}</span>`).join('')}</div>`;
  setHtml(el, `<div class="vt" style="--cols: ${head.length}"><div class="vr vh">${head.map((h) => `<span>${esc(h)}</span>`).join('')}</div>`
    + `<div class="vbody" style="height: ${rows.length * ROW}px"><div class="vwin" style="transform: translateY(${first * ROW}px)">${rows.slice(first, last).map(line).join('')}</div></div></div>`);
}

function table(head, rows, attrs = []) {
  if (!rows.length) return '<i>none</i>';
  return `<table><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${rows.map((r, i) => `<tr ${attrs[i] || ''}>${r.join('')}</tr>`).join('')}</table>`;
}
const td = (v, cls = '') => `<td class="${cls}">${v}</td>`;

function renderDomains(s) {
  vtable('domains', ['domid', 'name', 'state', 'vCPUs', 'paused'], s.domains.map((d) => ({
    attrs: `data-domid="${d.domid}"`,
    cells: [
      cell(d.domid), cell(esc(d.name)),
      cell(`${d.state}${d.shutdownReason !== undefined ? ` (SHUTDOWN_${SHUTDOWN[d.shutdownReason] ?? d.shutdownReason})` : ''}`, `state-${d.state}`),
      cell(d.vcpus !== undefined ? d.vcpus : '?', d.vcpus !== undefined ? '' : 'unknown'),
      cell(d.paused ? 'paused' : d.state === 'running' ? 'running' : '-', d.paused ? 'state-paused' : ''),
    ],
  })));
}

function fsm(end) {
  const cur = end ? end.state : undefined;
  // The states in the order a handshake walks them; the arrows are the transitions it makes.
  return `<div class="fsm">${[1, 2, 3, 4, 5, 6].map((i) => `<span class="${i === cur ? `on${i >= 5 ? ' closing' : ''}` : ''}" title="XenbusState${XENBUS[i]} (${i})">${XENBUS[i]}</span>`).join('<i>&#x2192;</i>')}</div>`;
}

function renderDevices(s) {
  if (!s.devices.length) {
    setHtml($('devices'), '<i>no split devices in xenstore</i>');
    return;
  }
  setHtml($('devices'), s.devices.map((d) => {
    const side = (role, end) => `<div class="end" data-role="${role}"><div><span class="end-label">${end ? `dom${end.domid} ${esc(end.driver)} (${role})` : `${role}: not in xenstore`}</span>${end ? `<code>${end.stateName ?? 'no state node'}</code>` : ''}</div>${end ? fsm(end) : ''}</div>`;
    return `<div data-device="${esc(d.id)}"><b>${esc(d.id)}</b>${side('frontend', d.frontend)}${side('backend', d.backend)}</div>`;
  }).join(''));
}

/** The tree's rows (removed nodes last, struck out); the first changed one is brought into view. */
function renderTree(s) {
  const changed = new Set(s.changed);
  ui.treeRows = s.nodes.map((node) => ({ node, changed: changed.has(node.path) }))
    .concat(s.removed.map((p) => ({ removed: p })));
  ui.treeScrollTo = ui.treeRows.findIndex((r) => r.changed || r.removed);
  $('tree-count').textContent = `${s.nodes.length} nodes`;
  drawTreeWindow();
}

function treeRowHtml(r) {
  if (r.removed) return `<div class="node removed" data-path="${esc(r.removed)}">${esc(r.removed)} (removed)</div>`;
  const node = r.node;
  const depth = node.path === '/' ? 0 : node.path.split('/').length - 1;
  const name = node.path === '/' ? '/' : node.path.slice(node.path.lastIndexOf('/') + 1);
  const owner = `owner ${node.owner === 0 ? 'dom0' : `dom${node.owner}`}`;
  return `<div class="${r.changed ? 'node changed' : 'node'}" data-path="${esc(node.path)}" title="${esc(node.path)} (${owner})">${'&nbsp;&nbsp;'.repeat(depth)}${esc(name)}${node.value !== '' ? ` = <span class="v">"${esc(node.value)}"</span>` : ''} <span class="p">[${node.perms.map(esc).join(' ')}]</span></div>`;
}

/** Only the rows in view (and a screenful either side) are in the document. */
function drawTreeWindow() {
  const box = $('p-tree');
  const list = $('tree');
  const g = geometry('tree', 'p-tree');
  let scrollTop = g.scrollTop;
  if (ui.treeScrollTo >= 0) {
    const y = ui.treeScrollTo * TREE_ROW;
    const top = g.offsetTop;
    if (y + top < scrollTop || y + top + TREE_ROW > scrollTop + g.clientHeight) box.scrollTop = scrollTop = Math.max(0, y + top - g.clientHeight / 3);
    ui.treeScrollTo = -1;
  }
  const view = g.clientHeight;
  const first = Math.max(0, Math.floor((scrollTop - g.offsetTop) / TREE_ROW) - Math.ceil(view / TREE_ROW / 2));
  const last = Math.min(ui.treeRows.length, first + 2 * Math.ceil(view / TREE_ROW) + 1);
  list.style.height = `${ui.treeRows.length * TREE_ROW}px`;
  $('tree-window').style.transform = `translateY(${first * TREE_ROW}px)`;
  setHtml($('tree-window'), ui.treeRows.slice(first, last).map(treeRowHtml).join(''));
}

function renderWatches(s) {
  vtable('watches', ['holder', 'path', 'token'], s.watches.map((w) => ({ cells: [cell(esc(w.holder)), cell(`<code>${esc(w.path)}</code>`), cell(`<code>${esc(w.token)}</code>`)] })));
  vtable('transactions', ['holder', 'tx', 'pending changes'], s.transactions.map((t) => ({ cells: [cell(esc(t.holder)), cell(t.tx), cell(`<code>${t.writes.map(esc).join(', ')}</code>`)] })));
}

const VIRQ = ['VIRQ_TIMER', 'VIRQ_DEBUG', 'VIRQ_CONSOLE', 'VIRQ_DOM_EXC', 'VIRQ_TBUF', 'VIRQ_DEBUGGER', 'VIRQ_XENOPROF', 'VIRQ_CON_RING', 'VIRQ_PCPU_STATE', 'VIRQ_MEM_EVENT', 'VIRQ_ARGO', 'VIRQ_ENOMEM', 'VIRQ_XENPMU'];

/** Pending: Xen set the bit at this event (guests clear theirs untraced, so older is history). */
function renderPorts(s) {
  vtable('ports', ['dom', 'port', 'bound to', 'pending (last set by Xen)', 'masked'], s.ports.map((p) => {
    let to = p.state;
    if (p.state === 'interdomain') to = `interdomain: dom${p.remoteDomid} port ${p.remotePort}`;
    else if (p.state === 'unbound') to = `unbound, for dom${p.remoteDomid}`;
    else if (p.state === 'virq') to = `${VIRQ[p.virq] ?? `VIRQ ${p.virq}`} on vCPU ${p.vcpu}`;
    const now = p.pendingAt === ui.n - 1;
    const pend = p.pendingAt !== undefined ? `${now ? 'PENDING now' : 'set'} at #${p.pendingAt + 1} (${esc(p.delivery ?? '')})` : '';
    return {
      attrs: `data-port="${p.domid}/${p.port}"`,
      cells: [cell(p.domid), cell(p.port), cell(esc(to)), cell(pend, now ? 'pending' : ''), cell(p.masked ? 'masked' : '', p.masked ? 'pending' : '')],
    };
  }));
}

function renderGrants(s) {
  vtable('grants', ['granter', 'ref', 'advertised at', 'mapped by'], s.grants.map((g) => ({
    attrs: `data-grant="${g.domid}/${g.ref}"`,
    cells: [
      cell(`dom${g.domid}`), cell(g.ref), cell(g.advertised ? `<code>${esc(g.advertised)}</code>` : ''),
      cell(g.mappedBy.length ? g.mappedBy.map((m) => `dom${m.domid} (handle ${m.handle})`).join(', ') : 'not mapped'),
    ],
  })));
}

const hex2 = (n) => n.toString(16).padStart(2, '0');
const MASK = 1023;

/** One half of the page as 64 lines of 16 bytes: unread bytes (cons..prod) and headers marked. */
function halfHtml(h, name) {
  const unread = (i) => ((i - (h.cons & MASK)) & MASK) < ((h.prod - h.cons) >>> 0);
  const hdr = new Set();
  for (const m of h.messages) for (let k = 0; k < 16; k++) hdr.add((m.at + k) & MASK);
  const lines = [];
  for (let row = 0; row < 64; row++) {
    // Bytes of one kind run together in one span: a few elements a line, not sixteen.
    let line = `<span class="off">${hex2(row >> 4)}${hex2((row * 16) & 0xff)}</span>`;
    let run = '';
    let runCls = '';
    for (let c = 0; c < 16; c++) {
      const i = row * 16 + c;
      const cls = [unread(i) ? 'u' : '', hdr.has(i) ? 'h' : '', i === (h.cons & MASK) ? 'c' : '', i === (h.prod & MASK) ? 'q' : ''].filter(Boolean).join(' ');
      if (cls !== runCls || cls.includes('c') || cls.includes('q')) {
        line += runCls ? `<span class="${runCls}">${run}</span>` : run;
        run = '';
        runCls = cls;
      }
      run += ` ${h.hex.slice(i * 2, i * 2 + 2)}`;
    }
    lines.push(line + (runCls ? `<span class="${runCls}">${run}</span>` : run));
  }
  const msgs = table(['offset', 'type', 'req_id', 'tx_id', 'len', 'payload'], h.messages.slice().reverse().map((m) => [
    td(`${m.at & MASK}`), td(`${esc(m.type)} (${m.typeCode})`), td(m.req_id), td(m.tx_id), td(m.len), td(`<code>${esc(m.payload)}</code>`),
  ]));
  return `<div class="half" data-half="${name}"><b>${name}[1024]</b> ${name}_cons=<code data-idx="${name}_cons">${h.cons}</code> ${name}_prod=<code data-idx="${name}_prod">${h.prod}</code>`
    + ` <small>(${((h.prod - h.cons) >>> 0)} bytes unread)</small>${h.unsynced ? ` <span class="pending">not in step with the trace: ${esc(h.unsynced)}</span>` : ''}`
    + `<pre class="hex">${lines.join('\n')}</pre><details open><summary>headers on the page (struct xsd_sockmsg, newest first)</summary>${msgs}</details></div>`;
}

function renderRing(s) {
  const pick = $('ring-pick');
  const want = ['auto', ...s.rings.map((r) => String(r.domid))];
  if ([...pick.options].map((o) => o.value).join() !== want.join()) {
    pick.innerHTML = want.map((v) => `<option value="${v}">${v === 'auto' ? 'the guest of the last event' : `dom${v}`}</option>`).join('');
    pick.value = want.includes(ui.ringPick) ? ui.ringPick : 'auto';
  }
  const r = ui.ring;
  setHtml($('ring'), r
    ? `<div>dom${r.domid}'s page (xenstore_domain_interface), as xenstored last saw the indexes; <span class="u">unread</span> <span class="h">header</span></div>${halfHtml(r.req, 'req')}${halfHtml(r.rsp, 'rsp')}`
    : '<i>no guest ring yet</i>');
}

function renderLog() {
  const lo = ui.n - 20;
  const hi = ui.n + 20;
  setHtml($('log'), ui.window.filter((r) => r.i >= lo && r.i < hi).map((r) =>
    `<div data-n="${r.i + 1}" class="${r.i === ui.n - 1 ? 'cur' : ''}"><span class="k">#${r.i + 1} ${esc(r.kind)}</span><span class="l">${esc(r.lane)}</span> ${esc(r.text)}</div>`).join(''));
}

/** The lanes in view of the timeline's box are drawn; the box scrolls over all of them. */
function renderTimeline() {
  const c = $('timeline');
  const laneH = 18;
  const left = 190;
  const total = ui.lanes.length * laneH + 10;
  const viewH = Math.max(60, Math.min(total, 330));
  $('timeline-spacer').style.height = `${Math.max(0, total - viewH)}px`;
  const geo = geometry('timeline', 'timeline-box');
  const width = geo.clientWidth;
  if (c.width !== width) c.width = width;
  if (c.height !== viewH) c.height = viewH;
  const top0 = Math.min(geo.scrollTop, Math.max(0, total - viewH));
  const g = c.getContext('2d');
  g.clearRect(0, 0, c.width, c.height);
  g.font = '11px system-ui, sans-serif';
  const laneIndex = new Map(ui.lanes.map((l, i) => [l, i]));
  const firstLane = Math.floor(top0 / laneH);
  const lastLane = Math.min(ui.lanes.length, Math.ceil((top0 + viewH) / laneH));
  for (let i = firstLane; i < lastLane; i++) {
    g.fillStyle = i % 2 ? '#f4f4f4' : '#fff';
    g.fillRect(0, i * laneH - top0, c.width, laneH);
    g.fillStyle = '#333';
    g.fillText(ui.lanes[i], 4, i * laneH - top0 + 13);
  }
  const first = ui.window.length ? ui.window[0].i : 0;
  const span = 300;
  const x = (i) => left + ((i - first) / span) * (c.width - left - 4);
  const y = (lane) => (laneIndex.has(lane) ? laneIndex.get(lane) : -10) * laneH - top0;
  drawTransactions(g, x, y, laneH);
  // One colour at a time: a canvas state change per kind, not per mark.
  const byColour = new Map();
  for (const r of ui.window) {
    const top = y(r.lane);
    if (top < -laneH || top > viewH) continue;
    const colour = KIND_COLOURS[r.kind] || '#888';
    if (!byColour.has(colour)) byColour.set(colour, []);
    byColour.get(colour).push([r, top]);
  }
  for (const [colour, marks] of byColour) {
    g.fillStyle = colour;
    for (const [r, top] of marks) {
      const big = r.kind === 'xenbus' || r.kind === 'step';
      g.fillRect(x(r.i), top + (big ? 1 : 4), big ? 4 : 2, big ? laneH - 2 : laneH - 8);
      if (r.kind === 'xenbus') g.fillText(XENBUS[r.event.state] || '', x(r.i) + 5, top + 13);
    }
  }
  drawWatchArrows(g, x, y, laneH);
  g.strokeStyle = '#d00';
  g.beginPath();
  g.moveTo(x(ui.n - 0.5), 0);
  g.lineTo(x(ui.n - 0.5), c.height);
  g.stroke();
  c.onclick = (ev) => {
    const rect = c.getBoundingClientRect();
    const px = ((ev.clientX - rect.left) / rect.width) * c.width;
    if (px < left) return;
    void go(Math.round(first + ((px - left) / (c.width - left - 4)) * span) + 1);
  };
}

/** A xenstore path made absolute, as the reducer does (relative to the domain's home). */
const absPath = (p, domid) => (p.startsWith('/') || p.startsWith('@') ? p : `/local/domain/${domid}/${p}`);
const fields = (payload) => String(payload).split('\\0');

/** Transactions as spans in their client's lane: from xenstored opening one to its end. */
function drawTransactions(g, x, y, laneH) {
  const laneOfConn = new Map();
  const open = new Map();
  g.fillStyle = 'rgba(31, 111, 235, 0.12)';
  for (const r of ui.window) {
    const e = r.event;
    if (r.kind !== 'xenstore') continue;
    const conn = `${e.domid}/${e.conn}`;
    if (e.dir === 'IN') laneOfConn.set(conn, r.lane);
    else if (e.type === 'TRANSACTION_START') open.set(`${conn}/${fields(e.payload)[0]}`, r.i);
    else if ((e.type === 'TRANSACTION_END' || e.type === 'ERROR') && e.tx_id !== 0 && laneOfConn.has(conn)) {
      const key = `${conn}/${e.tx_id}`;
      const from = open.has(key) ? open.get(key) : ui.window[0].i;
      open.delete(key);
      g.fillRect(x(from), y(laneOfConn.get(conn)) + 1, Math.max(2, x(r.i) - x(from)), laneH - 2);
    }
  }
}

const CHANGES = new Set(['WRITE', 'MKDIR', 'RM', 'SET_PERMS', 'TRANSACTION_END']);

/** Causal arrows: from the request whose change fired a watch to the watch event it fired. */
function drawWatchArrows(g, x, y, laneH) {
  let cause;
  g.strokeStyle = 'rgba(209, 47, 47, 0.6)';
  for (const r of ui.window) {
    const e = r.event;
    if (r.kind !== 'xenstore') continue;
    if (e.dir === 'IN' && CHANGES.has(e.type) && !(e.type === 'TRANSACTION_END' && fields(e.payload)[0] !== 'T')) cause = r;
    if (e.dir !== 'OUT' || e.type !== 'WATCH_EVENT' || !cause) continue;
    // Only when the fired path is the node the request changed, or under or over it (a transaction's changes are many).
    const fired = absPath(fields(e.payload)[0], e.domid);
    const changed = cause.event.type === 'TRANSACTION_END' ? undefined : absPath(fields(cause.event.payload)[0], cause.event.domid);
    if (changed !== undefined && !(fired === changed || fired.startsWith(`${changed}/`) || changed.startsWith(`${fired}/`))) continue;
    g.beginPath();
    g.moveTo(x(cause.i) + 1, y(cause.lane) + laneH / 2);
    g.lineTo(x(r.i) + 1, y(r.lane) + laneH / 2);
    g.stroke();
  }
}

async function stepTo(params, dir = 'next') {
  const n = await find(params, dir);
  $('bp-result').textContent = n === null ? `no ${dir === 'next' ? 'later' : 'earlier'} match` : `stopped at event ${n}`;
  if (n !== null) await go(n);
}

function breakpointParams() {
  const what = $('bp-what').value;
  if (what === 'path') return { what, path: $('bp-path').value.trim() || '/' };
  if (what === 'state') {
    const p = { what, state: $('bp-state').value };
    if ($('bp-device').value.trim()) p.device = $('bp-device').value.trim();
    if ($('bp-role').value) p.role = $('bp-role').value;
    return p;
  }
  const p = { what: 'domain', state: $('bp-domstate').value };
  if ($('bp-domid').value.trim()) p.domid = $('bp-domid').value.trim();
  return p;
}

function showBreakpointFields() {
  const what = $('bp-what').value;
  for (const [id, on] of [['bp-path', what === 'path'], ['bp-device', what === 'state'], ['bp-role', what === 'state'], ['bp-state', what === 'state'], ['bp-domid', what === 'domain'], ['bp-domstate', what === 'domain']]) {
    $(id).style.display = on ? '' : 'none';
  }
}

const guard = (f) => () => { f().catch((e) => { $('bp-result').textContent = `error: ${e.message}`; }); };
$('first').onclick = guard(() => go(0));
$('back').onclick = guard(() => go(ui.n - 1));
$('step').onclick = guard(() => go(ui.n + 1));
$('next-xenstore').onclick = guard(() => stepTo({ what: 'xenstore' }));
$('next-xenbus').onclick = guard(() => stepTo({ what: 'xenbus' }));
$('next-hypercall').onclick = guard(() => stepTo({ what: 'hypercall' }));
$('n').onchange = guard(() => go(Number($('n').value)));
$('slider').oninput = guard(() => go(Number($('slider').value)));
$('bp-what').onchange = showBreakpointFields;
$('ring-pick').onchange = guard(() => {
  ui.ringPick = $('ring-pick').value;
  return go(ui.n);
});
$('p-tree').onscroll = () => drawTreeWindow();
for (const [panel, ids] of [['p-domains', ['domains']], ['p-evtchn', ['ports']], ['p-grants', ['grants']], ['p-watches', ['watches', 'transactions']]]) {
  $(panel).onscroll = () => { for (const id of ids) if (vtables.has(id)) drawVtable(id); };
}
$('timeline-box').onscroll = () => { if (ui.state) renderTimeline(); };
$('follow').onchange = guard(() => ($('follow').checked ? go(ui.count) : Promise.resolve()));
$('breakpoint').onsubmit = (ev) => { ev.preventDefault(); guard(() => stepTo(breakpointParams()))(); };
$('bp-back').onclick = guard(() => stepTo(breakpointParams(), 'prev'));
$('log').onclick = (ev) => {
  const row = ev.target.closest('[data-n]');
  if (row) guard(() => go(Number(row.dataset.n)))();
};
document.addEventListener('keydown', (ev) => {
  if (ev.target.tagName === 'INPUT' || ev.target.tagName === 'SELECT') return;
  if (ev.key === 'ArrowRight') guard(() => go(ui.n + 1))();
  else if (ev.key === 'ArrowLeft') guard(() => go(ui.n - 1))();
  else if (ev.key === 'Home') guard(() => go(0))();
  else if (ev.key === 'End') guard(() => go(ui.count))();
});
showBreakpointFields();
guard(start)();
