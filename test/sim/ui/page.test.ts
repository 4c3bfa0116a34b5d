// The page's own script, run against the real server with a minimal stand-in for the browser's
// DOM (no browser here): it loads the run, steps, runs to a breakpoint and goes back, and the
// panels say what the state says. Catches script errors and wrong API use; layout is not checked.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runInNewContext } from 'node:vm';
import { findScenario } from '../../../scenarios/index.ts';
import { runScenario } from '../../../sim/scenario/run.ts';
import type { TraceRecord } from '../../../sim/trace/events.ts';
import { TraceModel } from '../../../sim/ui/model.ts';
import { startUiServer, type UiServer } from '../../../sim/ui/server.ts';

/** Just the element surface app.js touches. */
class El {
  textContent = '';
  innerHTML = '';
  value = '';
  max = '';
  height = 0;
  width = 0;
  readonly clientWidth = 1000;
  readonly clientHeight = 800;
  readonly offsetTop = 0;
  scrollTop = 0;
  options: { value: string }[] = [];
  checked = false;
  readonly tagName = 'DIV';
  readonly style: Record<string, string> = {};
  readonly dataset: Record<string, string> = {};
  onclick: ((ev?: unknown) => void) | null = null;
  onchange: (() => void) | null = null;
  oninput: (() => void) | null = null;
  onsubmit: ((ev: { preventDefault(): void }) => void) | null = null;
  onscroll: (() => void) | null = null;
  /** The canvas calls made, with the styles in force: enough to tell spans and arrows apart. */
  readonly drawn: string[] = [];
  getContext(): unknown {
    const style: Record<string, string> = { fillStyle: '', strokeStyle: '', font: '' };
    return new Proxy(style, {
      get: (t, k) => (typeof k === 'string' && k in t ? t[k] : (..._args: unknown[]) => void this.drawn.push(`${String(k)} ${t.fillStyle} ${t.strokeStyle}`)),
      set: (t, k, v) => {
        t[k as string] = String(v);
        return true;
      },
    });
  }
  getBoundingClientRect(): { left: number; width: number } {
    return { left: 0, width: 1000 };
  }
}

describe('xensim ui page script', function () {
  let ui: UiServer;
  let events: readonly TraceRecord[];
  const els = new Map<string, El>();
  const $ = (id: string): El => {
    if (!els.has(id)) els.set(id, new El());
    return els.get(id)!;
  };
  /** Lets the page's fetches and renders run; bounded by turns, not time. */
  async function settle(done: () => boolean): Promise<void> {
    for (let i = 0; i < 2000 && !done(); i++) await new Promise((r) => setTimeout(r, 1));
    assert.ok(done(), `page did not settle: ${$('sentence').textContent} / ${$('bp-result').textContent}`);
  }

  before(async () => {
    events = (await runScenario(findScenario('boot-and-shutdown')!, { seed: 1 })).trace as readonly TraceRecord[];
    ui = await startUiServer(new TraceModel(events, 'boot-and-shutdown seed 1'), 0);
    const script = readFileSync(fileURLToPath(new URL('../../../sim/ui/static/app.js', import.meta.url)), 'utf8');
    const document = { getElementById: $, addEventListener: () => undefined, body: $('body'), title: '' };
    runInNewContext(script, {
      document, fetch: (p: string) => fetch(new URL(p, ui.url)), URLSearchParams, console, setTimeout,
      history: { replaceState: () => undefined }, location: { hash: '' }, window: {},
      requestAnimationFrame: (f: () => void) => setTimeout(f, 0),
    });
    await settle(() => String($('count').textContent) === String(events.length) && $('body').dataset.n === '0');
  });
  after(() => ui.close());

  it('opens at the state before any event, with the run\'s title and lanes', () => {
    assert.match($('title').textContent, /boot-and-shutdown seed 1/);
    assert.match($('sentence').textContent, /before any event/);
    assert.match($('domains').innerHTML, /Domain-0/);
  });

  it('steps one event and explains it', async () => {
    $('step').onclick!();
    await settle(() => $('body').dataset.n === '1');
    assert.match($('sentence').textContent, /^#1 /);
    assert.match($('log').innerHTML, /class="cur"/);
  });

  it('runs to a breakpoint on the frontend reaching Connected, draws both ends, and steps back', async () => {
    $('bp-what').value = 'state';
    $('bp-state').value = '4';
    $('bp-device').value = 'vbd/51712';
    $('bp-role').value = 'frontend';
    $('breakpoint').onsubmit!({ preventDefault: () => undefined });
    await settle(() => /stopped at event/.test($('bp-result').textContent) && $('body').dataset.n !== '1');
    const n = Number($('body').dataset.n);
    assert.equal(events[n - 1].kind, 'xenbus');
    assert.match($('sentence').textContent, /blkfront has switched vbd\/51712 to XenbusStateConnected/);
    const vbd = $('devices').innerHTML.split('<div data-device=').find((d) => d.startsWith('"vbd/1/51712"'))!;
    assert.equal([...vbd.matchAll(/<span class="on"[^>]*>Connected</g)].length, 2, 'both ends Connected');
    assert.match($('grants').innerHTML, /ring-ref/);
    $('back').onclick!();
    await settle(() => $('body').dataset.n === String(n - 1));
    $('back').onclick!();
    await settle(() => $('body').dataset.n === String(n - 2));
    const before = $('devices').innerHTML.split('<div data-device=').find((d) => d.startsWith('"vbd/1/51712"'))!;
    assert.equal([...before.matchAll(/<span class="on"[^>]*>Connected</g)].length, 1, 'before the commit only the backend is Connected');
  });

  it('draws transactions as spans and watch firings as arrows on the timeline', () => {
    const drawn = $('timeline').drawn.slice(-5000);
    assert.ok(drawn.some((d) => d.startsWith('fillRect rgba(31, 111, 235')), 'a transaction span');
    assert.ok(drawn.some((d) => d.startsWith('stroke ') && d.includes('rgba(209, 47, 47')), 'an arrow from a change to the watch event it fired');
  });

  it('highlights the node the last event changed in the tree', async () => {
    $('bp-what').value = 'path';
    $('bp-path').value = '/local/domain/1/device/vbd/51712/ring-ref';
    $('bp-back').onclick!();
    await settle(() => /stopped at event|no earlier/.test($('bp-result').textContent) && $('tree-window').innerHTML.includes('changed'));
    assert.match($('tree-window').innerHTML, /class="node changed" data-path="\/local\/domain\/1\/device\/vbd\/51712\/ring-ref"/);
  });
});
