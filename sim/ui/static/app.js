// xensim ui: the page. Plain browser JavaScript, served by xensim itself (no CDN, no build):
// it asks the server's JSON API for the state after N events and the events around N, and draws.
'use strict';

const XENBUS = ['Unknown', 'Initialising', 'InitWait', 'Initialised', 'Connected', 'Closing', 'Closed', 'Reconfiguring', 'Reconfigured'];
const KIND_COLOURS = { xenstore: '#1f6feb', xenbus: '#d12f2f', hypercall: '#6e40c9', evtchn: '#2da44e', gnttab: '#bf8700', ring: '#57606a', step: '#000', fault: '#cf222e' };
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));

const ui = { n: 0, count: 0, lanes: [], state: null, window: [], loading: 0 };

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
  const fromHash = Number(location.hash.slice(1));
  await go(Number.isInteger(fromHash) && fromHash > 0 ? fromHash : 0);
}

/** Show the state after n events. */
async function go(n) {
  n = Math.max(0, Math.min(ui.count, n | 0));
  const seq = ++ui.loading;
  const from = Math.max(0, n - 150);
  const [state, events] = await Promise.all([api(`/api/state?n=${n}`), api(`/api/events?from=${from}&to=${from + 300}`)]);
  if (seq !== ui.loading) return; // a later request won
  ui.n = n;
  ui.state = state;
  ui.window = events;
  history.replaceState(null, '', `#${n}`);
  render();
}

async function find(params, dir = 'next') {
  const q = new URLSearchParams({ n: String(ui.n), dir, ...params });
  const r = await api(`/api/find?${q}`);
  return r.n;
}

function render() {
  const s = ui.state;
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
  renderDomains(s);
  renderDevices(s);
  renderTree(s);
  renderWatches(s);
  renderPorts(s);
  renderGrants(s);
  renderLog();
  renderTimeline();
}

function table(head, rows) {
  if (!rows.length) return '<i>none</i>';
  return `<table><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${rows.map((r) => `<tr>${r.join('')}</tr>`).join('')}</table>`;
}
const td = (v, cls = '') => `<td class="${cls}">${v}</td>`;

function renderDomains(s) {
  $('domains').innerHTML = table(['domid', 'name', 'state'], s.domains.map((d) => [
    td(d.domid), td(esc(d.name)), td(`${d.state}${d.shutdownReason !== undefined ? ` (reason ${d.shutdownReason})` : ''}`, `state-${d.state}`),
  ]));
}

function fsm(end) {
  const cur = end ? end.state : undefined;
  return `<div class="fsm">${[1, 2, 3, 4, 5, 6].map((i) => `<span class="${i === cur ? `on${i >= 5 ? ' closing' : ''}` : ''}" title="XenbusState${XENBUS[i]} (${i})">${XENBUS[i]}</span>`).join('')}</div>`;
}

function renderDevices(s) {
  if (!s.devices.length) {
    $('devices').innerHTML = '<i>no split devices in xenstore</i>';
    return;
  }
  $('devices').innerHTML = s.devices.map((d) => {
    const side = (name, end) => `<div><span class="end-label">${end ? `dom${end.domid} ${esc(end.driver)}` : `${name}: not in xenstore`}</span>${end ? `<code>${end.stateName ?? 'no state'}</code>` : ''}</div>${end ? fsm(end) : ''}`;
    return `<div data-device="${esc(d.id)}"><b>${esc(d.id)}</b>${side('frontend', d.frontend)}${side('backend', d.backend)}</div>`;
  }).join('');
}

function renderTree(s) {
  const changed = new Set(s.changed);
  const rows = s.nodes.map((node) => {
    const depth = node.path === '/' ? 0 : node.path.split('/').length - 1;
    const name = node.path === '/' ? '/' : node.path.slice(node.path.lastIndexOf('/') + 1);
    const cls = changed.has(node.path) ? 'node changed' : 'node';
    return `<div class="${cls}" data-path="${esc(node.path)}" title="${esc(node.path)}">${'&nbsp;&nbsp;'.repeat(depth)}${esc(name)}${node.value !== '' ? ` = <span class="v">"${esc(node.value)}"</span>` : ''} <span class="p">[${node.perms.map(esc).join(' ')}]</span></div>`;
  });
  const gone = s.removed.map((p) => `<div class="node removed">${esc(p)}</div>`);
  $('tree').innerHTML = rows.join('') + gone.join('');
}

function renderWatches(s) {
  $('watches').innerHTML = table(['holder', 'path', 'token'], s.watches.map((w) => [td(esc(w.holder)), td(`<code>${esc(w.path)}</code>`), td(`<code>${esc(w.token)}</code>`)]));
  $('transactions').innerHTML = table(['holder', 'tx', 'pending changes'], s.transactions.map((t) => [td(esc(t.holder)), td(t.tx), td(`<code>${t.writes.map(esc).join('<br>')}</code>`)]));
}

function renderPorts(s) {
  $('ports').innerHTML = table(['dom', 'port', 'bound to', 'last set pending'], s.ports.map((p) => {
    let to = p.state;
    if (p.state === 'interdomain') to = `dom${p.remoteDomid} port ${p.remotePort}`;
    else if (p.state === 'unbound') to = `unbound, for dom${p.remoteDomid}`;
    else if (p.state === 'virq') to = `VIRQ ${p.virq} on vCPU ${p.vcpu}`;
    const pend = p.pendingAt !== undefined ? `#${p.pendingAt + 1} (${esc(p.delivery ?? '')})${p.masked ? ' masked' : ''}` : '';
    return [td(p.domid), td(p.port), td(esc(to)), td(pend, p.pendingAt === ui.n - 1 ? 'pending' : '')];
  }));
}

function renderGrants(s) {
  $('grants').innerHTML = table(['granter', 'ref', 'advertised at', 'mapped by'], s.grants.map((g) => [
    td(`dom${g.domid}`), td(g.ref), td(g.advertised ? `<code>${esc(g.advertised)}</code>` : ''),
    td(g.mappedBy.length ? g.mappedBy.map((m) => `dom${m.domid} (handle ${m.handle})`).join(', ') : 'not mapped'),
  ]));
  $('rings').innerHTML = table(['guest', 'req cons / prod', 'rsp cons / prod', 'last'], s.rings.map((r) => [
    td(`dom${r.domid}`), td(`${r.req.cons} / ${r.req.prod}`), td(`${r.rsp.cons} / ${r.rsp.prod}`), td(`${r.lastBytes} bytes ${r.lastHalf}`),
  ]));
}

function renderLog() {
  const lo = ui.n - 20;
  const hi = ui.n + 20;
  $('log').innerHTML = ui.window.filter((r) => r.i >= lo && r.i < hi).map((r) =>
    `<div data-n="${r.i + 1}" class="${r.i === ui.n - 1 ? 'cur' : ''}"><span class="k">#${r.i + 1} ${esc(r.kind)}</span><span class="l">${esc(r.lane)}</span> ${esc(r.text)}</div>`).join('');
}

function renderTimeline() {
  const c = $('timeline');
  const laneH = 18;
  const left = 190;
  c.height = Math.max(60, ui.lanes.length * laneH + 10);
  c.width = c.clientWidth || 1000;
  const g = c.getContext('2d');
  g.clearRect(0, 0, c.width, c.height);
  g.font = '11px system-ui, sans-serif';
  ui.lanes.forEach((l, i) => {
    g.fillStyle = i % 2 ? '#f4f4f4' : '#fff';
    g.fillRect(0, i * laneH, c.width, laneH);
    g.fillStyle = '#333';
    g.fillText(l, 4, i * laneH + 13);
  });
  const first = ui.window.length ? ui.window[0].i : 0;
  const span = 300;
  const x = (i) => left + ((i - first) / span) * (c.width - left - 4);
  const y = (lane) => ui.lanes.indexOf(lane) * laneH;
  drawTransactions(g, x, y, laneH);
  for (const r of ui.window) {
    const top = y(r.lane);
    g.fillStyle = KIND_COLOURS[r.kind] || '#888';
    const big = r.kind === 'xenbus' || r.kind === 'step';
    g.fillRect(x(r.i), top + (big ? 1 : 4), big ? 4 : 2, big ? laneH - 2 : laneH - 8);
    if (r.kind === 'xenbus') g.fillText(XENBUS[r.event.state] || '', x(r.i) + 5, top + 13);
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
