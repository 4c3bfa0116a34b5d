// The Mermaid text xensim writes, drawn by Mermaid itself with its default configuration in a
// real headless Chromium (Debian's, driven by playwright-core as the ui page's specs do): no
// "Maximum text size in diagram exceeded", no syntax error, every arrow and note drawn.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { type Browser, type Page, chromium } from 'playwright-core';
import { findScenario } from '../../../scenarios/index.ts';
import { runScenario } from '../../../sim/scenario/run.ts';
import type { TraceRecord } from '../../../sim/trace/events.ts';
import { filterTrace } from '../../../sim/trace/filter.ts';
import { toMermaidDiagrams } from '../../../sim/trace/mermaid.ts';
import { parse } from './mermaid-parse.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

interface Drawn { error?: string; svg: boolean; messages: number; notes: number; width: number; height: number; exceeded: boolean }

/** The little of the page's DOM used here (the specs compile without the DOM's types). */
interface PageElement {
  innerHTML: string;
  querySelector(sel: string): { getAttribute(name: string): string | null } | null;
  querySelectorAll(sel: string): { length: number };
}
interface PageGlobals {
  mermaid: { initialize(c: object): void; render(id: string, t: string): Promise<{ svg: string }> };
  document: { body: { childElementCount: number; appendChild(e: PageElement): void }; createElement(tag: string): PageElement };
}

/** Mermaid's render() of `text` in the page, with mermaid.initialize's defaults. */
async function draw(page: Page, text: string): Promise<Drawn> {
  return page.evaluate(async (text) => {
    const { mermaid: m, document } = globalThis as unknown as PageGlobals;
    m.initialize({ startOnLoad: false });
    try {
      const { svg } = await m.render(`d${document.body.childElementCount}`, text);
      const div = document.createElement('div');
      div.innerHTML = svg;
      document.body.appendChild(div);
      const el = div.querySelector('svg');
      const box = el?.getAttribute('viewBox')?.split(' ').map(Number) ?? [0, 0, 0, 0];
      return {
        svg: el !== null,
        // A message's label is one text element per line; count the arrows' lines instead.
        messages: div.querySelectorAll('line.messageLine0, line.messageLine1, path.messageLine0, path.messageLine1').length,
        notes: div.querySelectorAll('.noteText').length,
        width: box[2], height: box[3],
        exceeded: svg.includes('Maximum text size in diagram exceeded'),
      };
    } catch (e) {
      return { error: String(e), svg: false, messages: 0, notes: 0, width: 0, height: 0, exceeded: false };
    }
  }, text);
}

describe('Mermaid draws what xensim writes (headless Chromium, default config)', function () {
  let browser: Browser;
  let page: Page;
  let trace: TraceRecord[];
  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    page = await browser.newPage();
    await page.setContent('<!doctype html><html><body></body></html>');
    await page.addScriptTag({ content: readFileSync(createRequire(import.meta.url).resolve('mermaid/dist/mermaid.min.js'), 'utf8') });
    trace = (await runScenario(findScenario('boot-and-shutdown')!, { seed: 1, faults: { spec: 'none' } })).trace as TraceRecord[];
  });
  after(async () => browser?.close());

  it('the vbd slide: every arrow and XenbusState note drawn', async () => {
    const [text, ...more] = toMermaidDiagrams(filterTrace(trace, { only: ['xenstore', 'xenbus'] }), { filter: 'vbd/51712' });
    assert.equal(more.length, 0);
    const parsed = await parse(text);
    const d = await draw(page, text);
    assert.equal(d.error, undefined);
    assert.ok(d.svg && !d.exceeded);
    assert.equal(d.messages, parsed.statements.filter((s) => !s.startsWith('note over ')).length);
    assert.ok(d.messages <= 60);
    assert.equal(d.notes, parsed.statements.filter((s) => s.startsWith('note over ')).length);
  });

  it('the whole run, and each part of the one-arrow-per-message diagram', async () => {
    for (const text of [...toMermaidDiagrams(trace), ...toMermaidDiagrams(trace, { fold: false })]) {
      const parsed = await parse(text);
      const d = await draw(page, text);
      assert.equal(d.error, undefined);
      assert.ok(d.svg && !d.exceeded, 'drawn, not "Maximum text size in diagram exceeded"');
      assert.equal(d.messages, parsed.statements.filter((s) => !s.startsWith('note over ')).length);
    }
  });
});
