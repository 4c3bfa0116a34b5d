// Bench section `ui`: the `xensim ui` page showing a live host of 100 packed guests while their
// events stream in, drawn by Debian's chromium (headless, through playwright-core). The page
// follows the host: it asks for the newest state and draws it, at most once per frame. Measured
// in the browser: frames per second (requestAnimationFrame callbacks counted over a few seconds
// while the events stream) and how often the page showed a newer state; in the host: how many
// events streamed. Target (issue 13): >= 30 frames per second.
import { loadavg } from 'node:os';
import type { WorkloadArgs } from '../../domains/domU/xenstore-workload.ts';
import type { Page } from 'playwright-core';
import { launchChromium } from '../../test/helpers/chromium.ts';
import { HostRuntime } from '../host-runtime.ts';
import type { TraceRecord } from '../trace/events.ts';
import { TraceModel } from '../ui/model.ts';
import { startUiServer } from '../ui/server.ts';
import { type BenchSection, onCleanup, table } from './common.ts';

const WORKLOAD = new URL('../../domains/domU/xenstore-workload.ts', import.meta.url).href;

/**
 * Run in the page (as text: the TypeScript loader would wrap named functions in a helper the
 * page lacks): counts animation frames and the page's updates (its data-n attribute) for ms.
 */
const MEASURE = `(ms) => new Promise((resolve) => {
  let frames = 0, updates = 0, worst = 0, last = 0, start = 0;
  const firstN = Number(document.body.dataset.n);
  const seen = new MutationObserver(() => { updates++; });
  seen.observe(document.body, { attributes: true, attributeFilter: ['data-n'] });
  const tick = (t) => {
    if (start === 0) start = t;
    else { frames++; worst = Math.max(worst, t - last); }
    last = t;
    if (t - start < ms) requestAnimationFrame(tick);
    else {
      seen.disconnect();
      resolve({ frames, updates, seconds: (t - start) / 1000, worstFrameMs: worst, firstN, lastN: Number(document.body.dataset.n) });
    }
  };
  requestAnimationFrame(tick);
})`;

interface Window { frames: number; updates: number; seconds: number; worstFrameMs: number; events: number; firstN: number; lastN: number }

interface Measured extends Window { nodes: number; lanes: number; load: string }

/** The page's frames and updates over `seconds`, and the events the host streamed meanwhile. */
async function window_(page: Page, model: TraceModel, seconds: number): Promise<Measured> {
  const before = model.count;
  const w = await page.evaluate(`(${MEASURE})(${seconds * 1000})`) as Omit<Window, 'events'>;
  const state = model.stateAt(model.count);
  return { ...w, events: model.count - before, nodes: state.nodes.length, lanes: model.lanes.length, load: loadavg().map((x) => x.toFixed(2)).join(' ') };
}

/**
 * Streaming, then the same page with every guest paused (nothing streams): the second is the
 * control - what this machine's load alone leaves of the frame rate.
 */
async function measure(guests: number, seconds: number): Promise<{ live: Measured; still: Measured }> {
  const model = new TraceModel([], `${guests} packed guests, live`, true);
  const server = await startUiServer(model, 0);
  const rt = new HostRuntime({ pool: 2, seed: 1, trace: (e) => model.append(e as unknown as TraceRecord) });
  const browser = await launchChromium();
  const forget = onCleanup(() => void browser.close());
  try {
    await rt.bootDom0();
    // Each guest writes one node over and over through its ring, until the host stops.
    const args: WorkloadArgs = { ops: [['writes', 'data/counter', 1e9]] };
    for (let id = 1; id <= guests; id++) await rt.createGuest({ domid: id, program: { module: WORKLOAD, args } });
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(server.url);
    // Following the host: the page has shown a state with every guest in it.
    await page.waitForFunction(`Number(document.body.dataset.n) > ${model.count}`, undefined, { timeout: 120_000 });
    const live = await window_(page, model, seconds);
    pauseAll(rt, guests);
    // The page catches up with the last events, then has nothing new to show.
    await new Promise((r) => setTimeout(r, 500));
    await page.waitForFunction(`Number(document.body.dataset.n) >= ${model.count}`, undefined, { timeout: 120_000 });
    const still = await window_(page, model, seconds);
    return { live, still };
  } finally {
    await browser.close();
    forget();
    // Stop the writers first: a guest still notifying while the host is torn down finds its port
    // closed, and the kernel's notify throws on the failed EVTCHNOP_send (traced hosts take the
    // hypercall path, not the untraced fast path).
    pauseAll(rt, guests);
    await new Promise((r) => setTimeout(r, 200));
    await rt.shutdown();
    await server.close();
  }
}

function pauseAll(rt: HostRuntime, guests: number): void {
  for (let id = 1; id <= guests; id++) {
    const d = rt.host.domains.get(id);
    if (d && d.pauseCount === 0 && !d.isShutDown) rt.host.pause(d);
  }
}

export const uiSection: BenchSection = {
  name: 'ui',
  title: 'xensim ui: a live host of packed guests in headless Chromium while their events stream',
  parts: ['live'],
  async run(opts, _parts, out) {
    const seconds = opts.quick ? 3 : 5;
    const rows: string[][] = [];
    for (const guests of [100]) {
      const { live, still } = await measure(guests, seconds);
      for (const [what, r] of [['events streaming', live], ['all paused (control)', still]] as const) {
        const fps = r.frames / r.seconds;
        rows.push([
          String(guests), what, String(r.nodes), String(r.lanes), (r.events / r.seconds).toFixed(0), (r.updates / r.seconds).toFixed(1),
          `${r.firstN}..${r.lastN}`, fps.toFixed(1), r.worstFrameMs.toFixed(0), r.load, r === live ? `>= 30 fps: ${fps >= 30 ? 'met' : 'MISS'}` : '',
        ]);
      }
    }
    out(table(['guests', 'host', 'xenstore nodes', 'timeline lanes', 'events streamed/s:', 'page updates/s:', 'events shown', 'frames/s:', 'worst frame (ms):', 'load average', 'target'], rows));
    out('');
    out(`Measured over ${seconds} s once every guest runs (each writes a node over and over through its ring); frames are requestAnimationFrame callbacks in the page.`);
  },
};
