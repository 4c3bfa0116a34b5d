// The `xensim ui` page in a real browser (Debian's chromium, headless): a teacher's lesson on a
// boot-and-shutdown run without faults. Open it, step to the vbd handshake, watch the device
// pictures and the xenstore tree follow the events, run to a breakpoint on the frontend reaching
// XenbusStateConnected and step back; then each view the issue lists is checked against the run,
// and a screenshot of each is written under test-output/ui/ (CI keeps that folder).
//
// No chromium is a failure, not a skip (test/helpers/chromium.ts).
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { findScenario } from '../../../scenarios/index.ts';
import { runScenario } from '../../../sim/scenario/run.ts';
import type { TraceRecord } from '../../../sim/trace/events.ts';
import { TraceModel } from '../../../sim/ui/model.ts';
import { startUiServer, type UiServer } from '../../../sim/ui/server.ts';
import { launchChromium } from '../../helpers/chromium.ts';

// What the functions run inside the page (page.evaluate) touch: the tests' own lib has no DOM.
interface PageElement {
  readonly textContent: string | null;
  readonly classList: { contains(c: string): boolean };
  readonly dataset: Record<string, string | undefined>;
  readonly scrollHeight: number;
  readonly clientHeight: number;
  scrollTop: number;
  querySelector(sel: string): PageElement | null;
  dispatchEvent(e: unknown): boolean;
}
interface PageCanvas extends PageElement {
  readonly width: number;
  readonly height: number;
  getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { readonly data: ArrayLike<number> } } | null;
}
declare const document: { readonly body: PageElement; getElementById(id: string): PageElement | null; querySelector(sel: string): PageElement | null };
declare const CSS: { escape(s: string): string };
declare function requestAnimationFrame(f: () => void): number;
declare const scrollX: number;
declare const scrollY: number;

const OUT = fileURLToPath(new URL('../../../test-output/ui/', import.meta.url));
const XENBUS = ['Unknown', 'Initialising', 'InitWait', 'Initialised', 'Connected', 'Closing', 'Closed'];
const VBD = 'vbd/1/51712';
const FRONT_STATE = '/local/domain/1/device/vbd/51712/state';
const BACK_STATE = '/local/domain/0/backend/vbd/1/51712/state';

describe('xensim ui in headless Chromium: a boot-and-shutdown lesson', function () {
  let browser: Browser;
  let page: Page;
  let ui: UiServer;
  let events: readonly TraceRecord[];
  const errors: string[] = [];

  const n = async (): Promise<number> => Number(await page.evaluate(() => document.body.dataset.n));
  const text = async (sel: string): Promise<string> => (await page.locator(sel).first().textContent()) ?? '';
  /** Clicks and waits until the page shows another event than before. */
  async function clickAndMove(sel: string): Promise<number> {
    const before = await n();
    await page.click(sel);
    await page.waitForFunction((b) => document.body.dataset.n !== String(b), before);
    return n();
  }
  /** The highlighted box of one end's state-machine picture, or '' when no box is lit. */
  async function pictured(role: 'frontend' | 'backend'): Promise<string> {
    const on = page.locator(`[data-device="${VBD}"] .end[data-role="${role}"] .fsm span.on`);
    return (await on.count()) === 0 ? '' : ((await on.textContent()) ?? '');
  }
  /** A node of the tree, scrolled to as a reader would (the tree draws only the rows in view). */
  function treeRow(path: string): Promise<{ value: string | undefined; changed: boolean; removed: boolean; perms: string } | undefined> {
    // No named functions inside: the TypeScript loader would wrap them in a helper the page lacks.
    return page.evaluate(async (p) => {
      const box = document.getElementById('p-tree')!;
      const sel = `#tree [data-path="${CSS.escape(p)}"]`;
      for (let top = 0; !document.querySelector(sel) && top <= box.scrollHeight; top += Math.max(100, box.clientHeight / 2)) {
        box.scrollTop = top;
        box.dispatchEvent(new Event('scroll'));
        await new Promise<void>((r) => requestAnimationFrame(() => r()));
      }
      const row = document.querySelector(sel);
      if (!row) return undefined;
      const v = row.querySelector('.v')?.textContent;
      return {
        value: v === undefined || v === null ? undefined : v.replace(/^"|"$/g, ''),
        changed: row.classList.contains('changed'),
        removed: row.classList.contains('removed'),
        perms: row.querySelector('.p')?.textContent ?? '',
      };
    }, path);
  }
  /** The whole page, or one view cut out of it (a view's own screenshot would sit under the sticky header). */
  async function shot(name: string, sel?: string): Promise<void> {
    const path = `${OUT}${name}.png`;
    if (!sel) {
      await page.screenshot({ path, fullPage: true });
      return;
    }
    const box = await page.locator(sel).evaluate((el: unknown) => {
      const r = (el as { getBoundingClientRect(): { x: number; y: number; width: number; height: number } }).getBoundingClientRect();
      return { x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height };
    });
    await page.screenshot({ path, fullPage: true, clip: box });
  }

  before(async function () {
    mkdirSync(OUT, { recursive: true });
    browser = await launchChromium();
    const r = await runScenario(findScenario('boot-and-shutdown')!, { seed: 1, faults: { spec: 'none' } });
    assert.equal(r.result, 'SUCCESS');
    events = r.trace as readonly TraceRecord[];
    ui = await startUiServer(new TraceModel(events, 'boot-and-shutdown seed 1 (no faults)'), 0);
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/favicon/.test(m.location().url)) errors.push(m.text());
    });
    await page.goto(ui.url);
    await page.waitForFunction((count) => document.getElementById('count')!.textContent === String(count) && document.body.dataset.n === '0', events.length);
  });
  after(async () => {
    await browser?.close();
    await ui?.close();
  });
  afterEach(() => assert.deepEqual(errors, [], 'the page logged no errors'));

  it('opens at the state before any event, with the run\'s title, and dom0 alone', async () => {
    assert.match(await text('#title'), /boot-and-shutdown seed 1/);
    assert.match(await text('#sentence'), /before any event/);
    assert.deepEqual(await page.locator('#domains .vr[data-domid]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-domid'))), ['0']);
    await shot('00-start');
  });

  it('steps one event at a time, each explained in one sentence naming the function it models', async () => {
    for (let i = 1; i <= 3; i++) {
      assert.equal(await clickAndMove('#step'), i);
      const sentence = await text('#sentence');
      assert.match(sentence, new RegExp(`^#${i} `));
      assert.match(sentence, /\([\w /]+\)$/, `ends with the Xen/Linux function: ${sentence}`);
      assert.equal(JSON.parse(await text('#raw')).kind, events[i - 1].kind);
    }
    assert.equal(await clickAndMove('#back'), 2);
  });

  it('steps to the vbd handshake: blkback\'s InitWait is pictured, the frontend still Initialising', async () => {
    for (let k = 0; k < 40 && !/vbd\/1\/51712 to XenbusStateInitWait/.test(await text('#sentence')); k++) await clickAndMove('#next-xenbus');
    assert.match(await text('#sentence'), /blkback has switched vbd\/1\/51712 to XenbusStateInitWait \(2\).*\(xenbus_switch_state\)$/);
    assert.equal(await pictured('backend'), 'InitWait');
    assert.equal(await pictured('frontend'), 'Initialising');
    assert.equal((await treeRow(BACK_STATE))?.value, '2');
    assert.equal((await treeRow(FRONT_STATE))?.value, '1');
    await shot('01-vbd-handshake');
  });

  it('follows each write of the frontend\'s state node: the tree highlights it and the picture agrees', async () => {
    await page.selectOption('#bp-what', 'path');
    await page.fill('#bp-path', FRONT_STATE);
    const seen: string[] = [];
    for (let k = 0; k < 8; k++) {
      const before = await n();
      await page.click('#bp-run');
      await page.waitForFunction((b) => document.body.dataset.n !== String(b) || /no later/.test(document.getElementById('bp-result')!.textContent!), before);
      if (/no later/.test(await text('#bp-result'))) break;
      const row = await treeRow(FRONT_STATE);
      assert.ok(row, `${FRONT_STATE} in the tree at event ${await n()}`);
      if (row.removed) {
        // The device's directory removed at shutdown: shown struck out, then gone.
        seen.push('removed');
        break;
      }
      assert.ok(row.changed, `event ${await n()} changed ${FRONT_STATE}: highlighted`);
      assert.match(row.value!, /^[1-6]$/);
      assert.equal(await pictured('frontend'), XENBUS[Number(row.value)], 'the picture shows what the tree holds');
      assert.match(row.perms, /^\[n1 r0\]$|^\[n1 .*r0/, 'owned by the frontend\'s domain, readable by the backend\'s');
      seen.push(row.value!);
      // The step before, the node held its old value, unhighlighted.
      await clickAndMove('#back');
      const prev = await treeRow(FRONT_STATE);
      assert.ok(!prev?.changed);
      assert.notEqual(prev?.value, row.value);
      await clickAndMove('#step');
    }
    const order = seen.join(' ');
    assert.match(order, /3 4/, `Initialised then Connected (frontend states written: ${order})`);
    assert.match(order, /4 (5 )?6 removed$/, `closed at shutdown, then removed (${order})`);
  });

  it('runs to a breakpoint on the frontend reaching XenbusStateConnected (4), then steps back before it', async () => {
    await clickAndMove('#first');
    await page.selectOption('#bp-what', 'state');
    await page.selectOption('#bp-state', '4');
    await page.fill('#bp-device', 'vbd/51712');
    await page.selectOption('#bp-role', 'frontend');
    await page.click('#bp-run');
    await page.waitForFunction(() => /stopped at event/.test(document.getElementById('bp-result')!.textContent!) && document.body.dataset.n !== '0');
    const at = await n();
    assert.equal(events[at - 1].kind, 'xenbus');
    assert.equal(events[at - 1].state, 4);
    assert.match(await text('#sentence'), /blkfront has switched vbd\/51712 to XenbusStateConnected \(4\)/);
    assert.equal(await pictured('frontend'), 'Connected');
    assert.equal(await pictured('backend'), 'Connected');
    assert.equal((await treeRow(FRONT_STATE))?.value, '4');
    await shot('02-breakpoint-frontend-connected');
    // Back, event by event, to before the commit that made it Connected.
    let back = at;
    while (await pictured('frontend') === 'Connected') {
      back = await clickAndMove('#back');
      assert.ok(at - back <= 20, 'the commit is just before the state change is reported');
    }
    assert.equal(back, at - (at - back));
    assert.notEqual((await treeRow(FRONT_STATE))?.value, '4');
    assert.equal(await pictured('frontend'), 'Initialised');
    assert.match(JSON.stringify(events[back]), /TRANSACTION_END|"WRITE"/, 'the event stepped back over committed the write');
    // And forward again with the breakpoint.
    await page.click('#bp-run');
    await page.waitForFunction((a) => document.body.dataset.n === String(a), at);
  });

  it('shows each view of the host at that point, checked against the run, with a screenshot of each', async () => {
    // Domains: name, domid, state, vCPUs, paused or running.
    const doms = await page.locator('#domains .vr[data-domid]').evaluateAll((rows) => rows.map((r) => [...r.children].map((c) => c.textContent)));
    assert.deepEqual(doms.map((d) => d.slice(0, 3)), [['0', 'Domain-0', 'running'], ['1', 'guest', 'running']]);
    assert.equal(doms[1][3], '1', 'dom1 has one vCPU (getdomaininfo max_vcpu_id 0)');
    assert.equal(doms[1][4], 'running');
    await shot('10-domains', '#p-domains');
    await shot('11-devices', '#p-devices');

    // Event channels: the interdomain pairs both ways, pending and masked columns.
    const ports = await text('#ports');
    assert.match(ports, /pending/);
    assert.match(ports, /masked/);
    const pairs = await page.locator('#ports .vr[data-port]').evaluateAll((rows) => rows.map((r) => `${r.getAttribute('data-port')} ${r.children[2].textContent}`));
    assert.ok(pairs.some((p) => /^1\/\d+ interdomain: dom0 port \d+$/.test(p)), pairs.join('; '));
    assert.ok(pairs.some((p) => /^0\/\d+ VIRQ_DOM_EXC on vCPU 0$/.test(p)), pairs.join('; '));
    await shot('12-event-channels', '#p-evtchn');

    // Grant tables: dom1's ring-ref, advertised in xenstore and mapped by dom0.
    const grants = await page.locator('#grants .vr[data-grant]').evaluateAll((rows) => rows.map((r) => r.textContent));
    assert.ok(grants.some((g) => /^dom1\d+\/local\/domain\/1\/device\/vbd\/51712\/ring-refdom0 \(handle \d+\)$/.test(g!)), grants.join('; '));
    await shot('13-grant-tables', '#p-grants');

    // The xenstore tree and the watches (who holds them).
    assert.ok((await treeRow('/local/domain/1/device/vbd/51712/ring-ref'))?.value?.match(/^\d+$/));
    const watches = await text('#watches');
    assert.match(watches, /dom1 xenbus\s*\/local\/domain\/0\/backend\/vbd\/1\/51712\/state/);
    await shot('14-xenstore-tree', '#p-tree');
    await shot('15-watches', '#p-watches');

    // The ring page: both halves' 1024 bytes, the indexes, and headers that decode the bytes shown.
    await page.selectOption('#ring-pick', '1');
    await page.waitForFunction(() => /dom1's page/.test(document.getElementById('ring')!.textContent!));
    for (const half of ['req', 'rsp']) {
      const hex = await page.locator(`#ring [data-half="${half}"] pre.hex`).textContent();
      const lines = hex!.split('\n');
      assert.equal(lines.length, 64, `${half}: 64 lines of 16 bytes`);
      const bytes = lines.flatMap((l) => l.trim().split(/\s+/).slice(1)).map((b) => parseInt(b, 16));
      assert.equal(bytes.length, 1024);
      const cons = Number(await text(`#ring [data-idx="${half}_cons"]`));
      const prod = Number(await text(`#ring [data-idx="${half}_prod"]`));
      assert.ok(prod > 0 && cons <= prod, `${half} indexes ${cons}/${prod}`);
      const heads = await page.locator(`#ring [data-half="${half}"] tr`).evaluateAll((rows) => rows.slice(1).map((r) => [...r.children].map((c) => c.textContent!)));
      assert.ok(heads.length > 3, `${half}: headers listed`);
      for (const [off, type, reqId, txId, len] of heads) {
        const u32 = (k: number): number => [0, 1, 2, 3].reduce((v, j) => v + bytes[(Number(off) + k + j) & 1023] * 2 ** (8 * j), 0);
        assert.equal(`${u32(0)}`, /\((\d+)\)/.exec(type)![1], `${half} @${off}: type`);
        assert.deepEqual([u32(4), u32(8), u32(12)].map(String), [reqId, txId, len], `${half} @${off}: req_id, tx_id, len`);
      }
    }
    // The last ring event's indexes are the ones shown.
    const lastRing = events.slice(0, await n()).filter((e) => e.kind === 'ring' && e.peer === 1 && e.half === 'rsp').pop()!;
    assert.equal(Number(await text('#ring [data-idx="rsp_prod"]')), lastRing.prod);
    await shot('16-xenstore-ring-page', '#p-ring');

    // The timeline: one lane per domain and component, painted.
    const paint = await page.evaluate(() => {
      const c = document.getElementById('timeline') as PageCanvas;
      const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      const colours = new Set<string>();
      let inked = 0;
      for (let i = 0; i < d.length; i += 4) {
        const rgb = `${d[i]},${d[i + 1]},${d[i + 2]}`;
        colours.add(rgb);
        if (rgb !== '255,255,255' && rgb !== '244,244,244') inked++;
      }
      return { inked, colours: colours.size, height: document.getElementById('timeline-box')!.scrollHeight };
    });
    const lanes = (await (await fetch(new URL('/api/meta', ui.url))).json() as { lanes: unknown[] }).lanes.length;
    assert.ok(paint.height >= lanes * 18, `a lane per domain and component (${lanes})`);
    assert.ok(paint.inked > 2000 && paint.colours > 8, JSON.stringify(paint));
    await shot('17-timeline', '#p-timeline');

    // The log: the current event highlighted, every line a sentence.
    assert.match(await text('#log .cur'), /XenbusStateConnected/);
    await shot('18-events', '#p-log');
    await shot('19-explanation', '#explain');
    await shot('20-whole-page');
  });
});

describe('xensim ui in headless Chromium: a live host', function () {
  let browser: Browser;
  let ui: UiServer;

  before(async () => {
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await ui?.close();
  });

  it('follows the host as its events come, and stops following when asked', async () => {
    const events = (await runScenario(findScenario('boot-and-shutdown')!, { seed: 1, faults: { spec: 'none' } })).trace as readonly TraceRecord[];
    const model = new TraceModel([], 'a live host', true);
    ui = await startUiServer(model, 0);
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(ui.url);
    await page.waitForFunction(() => document.body.dataset.n === '0');
    assert.ok(await page.locator('#follow').isVisible(), 'the follow switch is shown for a live host');
    // The guest appears once the events that name it have come.
    for (const e of events.slice(0, 1000)) model.append(e);
    await page.waitForFunction(() => document.body.dataset.n === '1000');
    assert.match((await page.locator('#domains').textContent())!, /guest/);
    await page.uncheck('#follow');
    const held = Number(await page.evaluate(() => document.body.dataset.n));
    for (const e of events.slice(1000)) model.append(e);
    await page.waitForFunction((count) => document.getElementById('count')!.textContent === String(count), events.length);
    assert.equal(Number(await page.evaluate(() => document.body.dataset.n)), held, 'not following: the page stays where it was');
    await page.check('#follow');
    await page.waitForFunction((count) => document.body.dataset.n === String(count), events.length);
    assert.deepEqual(errors, []);
  });
});
