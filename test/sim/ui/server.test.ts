// `xensim ui`'s server, over HTTP on a real port: the page and its script come from xensim
// itself, and the JSON API steps through a real run - to the vbd handshake, to breakpoints on a
// path, a XenbusState and a domain state, and back.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findScenario } from '../../../scenarios/index.ts';
import { runScenario } from '../../../sim/scenario/run.ts';
import type { TraceRecord } from '../../../sim/trace/events.ts';
import { TraceModel } from '../../../sim/ui/model.ts';
import { waitFor } from '../../helpers/wait.ts';
import { startUiServer, type UiServer } from '../../../sim/ui/server.ts';

interface Dev { id: string; frontend?: { state?: number }; backend?: { state?: number } }
interface State { n: number; devices: Dev[]; changed: string[]; domains: { domid: number; state: string }[]; last?: { i: number; text: string; kind: string } }

describe('xensim ui server', function () {
  let ui: UiServer;
  let events: readonly TraceRecord[];
  const get = async <T>(path: string): Promise<{ status: number; body: T; type: string | null }> => {
    const r = await fetch(new URL(path, ui.url));
    const type = r.headers.get('content-type');
    return { status: r.status, body: (type?.startsWith('application/json') ? await r.json() : await r.text()) as T, type };
  };
  const json = async <T>(path: string): Promise<T> => {
    const r = await get<T>(path);
    assert.equal(r.status, 200, `${path}: ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const vbd = (s: State): Dev | undefined => s.devices.find((d) => d.id === 'vbd/1/51712');

  before(async () => {
    const r = await runScenario(findScenario('boot-and-shutdown')!, { seed: 1 });
    events = r.trace as readonly TraceRecord[];
    ui = await startUiServer(new TraceModel(events, 'boot-and-shutdown seed 1'), 0);
  });
  after(() => ui.close());

  it('serves the page and its script itself: nothing loaded from elsewhere', async () => {
    const page = await get<string>('/');
    assert.equal(page.status, 200);
    assert.match(page.type!, /^text\/html/);
    const refs = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(refs.sort(), ['/static/app.css', '/static/app.js']);
    for (const ref of refs) {
      const r = await get<string>(ref);
      assert.equal(r.status, 200, ref);
      assert.doesNotMatch(r.body, /https?:\/\//, `${ref} fetches nothing from the internet`);
    }
    assert.match((await get<string>('/static/app.js')).body, /\/api\/state\?n=/);
  });

  it('tells the page the run: its event count and lanes', async () => {
    const meta = await json<{ count: number; lanes: { id: string }[] }>('/api/meta');
    assert.equal(meta.count, events.length);
    assert.ok(meta.lanes.some((l) => l.id === 'xenstored') && meta.lanes.some((l) => l.id === 'dom1 blkfront'));
  });

  it('steps one event at a time, each with its sentence', async () => {
    const s1 = await json<State>('/api/state?n=1');
    assert.equal(s1.n, 1);
    assert.equal(s1.last?.i, 0);
    const rows = await json<{ i: number; text: string; lane: string }[]>('/api/events?from=0&to=50');
    assert.equal(rows.length, 50);
    assert.equal(rows[0].text, s1.last?.text);
    assert.ok(rows.every((r, k) => r.i === k && r.text.endsWith(')') && r.lane));
  });

  it('runs to the vbd handshake: the next xenbus state change, then a breakpoint on the frontend reaching Connected', async () => {
    let n = 0;
    const seen: string[] = [];
    for (;;) {
      const next = await json<{ n: number | null }>(`/api/find?n=${n}&what=xenbus`);
      assert.ok(next.n !== null, 'the handshake happens');
      n = next.n;
      const s = await json<State>(`/api/state?n=${n}`);
      assert.equal(s.last?.kind, 'xenbus');
      const d = vbd(s);
      if (d) seen.push(`${d.frontend?.state}/${d.backend?.state}`);
      if (d?.frontend?.state === 3) break;
    }
    assert.deepEqual(seen.slice(-2), ['1/2', '3/2'], 'InitWait at the backend, then the frontend Initialised');
    const bp = await json<{ n: number }>(`/api/find?n=${n}&what=state&state=4&device=vbd/51712&role=frontend`);
    const at = await json<State>(`/api/state?n=${bp.n}`);
    assert.equal(vbd(at)?.frontend?.state, 4);
    assert.match(at.last!.text, /blkfront has switched vbd\/51712 to XenbusStateConnected/);
    // One step back: the commit that made it so is the event before.
    const back = await json<State>(`/api/state?n=${bp.n - 2}`);
    assert.notEqual(vbd(back)?.frontend?.state, 4);
  });

  it('runs to a path written, to a domain state, and back to the previous match', async () => {
    const path = '/local/domain/1/device/vbd/51712/ring-ref';
    const w = await json<{ n: number }>(`/api/find?n=0&what=path&path=${encodeURIComponent(path)}`);
    assert.ok((await json<State>(`/api/state?n=${w.n}`)).changed.includes(path));
    assert.ok(!(await json<State>(`/api/state?n=${w.n - 1}`)).changed.includes(path));
    const dead = await json<{ n: number }>('/api/find?n=0&what=domain&state=dead&domid=1');
    assert.equal((await json<State>(`/api/state?n=${dead.n}`)).domains.find((d) => d.domid === 1)?.state, 'dead');
    assert.notEqual((await json<State>(`/api/state?n=${dead.n - 1}`)).domains.find((d) => d.domid === 1)?.state, 'dead');
    const last = await json<{ n: number }>(`/api/find?n=${events.length}&what=xenbus&dir=prev`);
    assert.equal(events[last.n - 1].kind, 'xenbus');
    assert.ok(events.slice(last.n).every((e) => e.kind !== 'xenbus'));
    assert.deepEqual(await json('/api/find?n=0&what=path&path=/no/such/node'), { n: null });
  });

  it('answers a bad question with 400 and an unknown endpoint with 404', async () => {
    assert.equal((await get('/api/state?n=abc')).status, 400);
    assert.equal((await get('/api/find?n=0&what=bogus')).status, 400);
    assert.equal((await get('/api/nothing')).status, 404);
    assert.equal((await get('/static/../../cli.ts')).status, 404);
  });
});

describe('xensim ui from the command line', function () {

  it('serves a --trace file on the port it prints, until stopped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xensim-ui-'));
    const file = join(dir, 'run.jsonl');
    const r = await runScenario(findScenario('boot-and-shutdown')!, { seed: 2 });
    // As `xensim run --trace` writes it: a header, the events, a footer.
    const lines = [{ kind: 'run', scenario: r.scenario, seed: r.seed, variant: r.variant }, ...r.trace, { kind: 'end', result: r.result, hash: r.hash, events: r.events }];
    writeFileSync(file, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
    const bin = fileURLToPath(new URL('../../../sim/bin/xensim.mjs', import.meta.url));
    const child = spawn(process.execPath, [bin, 'ui', file, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (b: Buffer) => {
          out += b.toString();
          const m = /xensim ui: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
          if (m) resolve(m[1]);
        });
        child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
      });
      const meta = await (await fetch(new URL('/api/meta', url))).json() as { count: number; title: string };
      assert.equal(meta.count, r.events, 'the file\'s events, header and footer left out');
      assert.match(meta.title, /boot-and-shutdown seed 2/);
    } finally {
      child.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('xensim ui --host: a live host from a config', function () {

  it('boots the config\'s guests free-running and serves their events as they come, devices connecting', async () => {
    const bin = fileURLToPath(new URL('../../../sim/bin/xensim.mjs', import.meta.url));
    const config = fileURLToPath(new URL('../../../scenarios/hosts/three-guests.yaml', import.meta.url));
    const child = spawn(process.execPath, [bin, 'ui', '--host', config, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      let out = '';
      child.stdout.on('data', (b: Buffer) => void (out += b.toString()));
      await waitFor(() => /xensim ui: http/.test(out), 'the URL printed', () => out);
      const url = /xensim ui: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out)![1];
      const meta = await (await fetch(new URL('/api/meta', url))).json() as { live: boolean; title: string };
      assert.equal(meta.live, true);
      assert.match(meta.title, /three-guests\.yaml \(live\)/);
      // Both ends of every disk and NIC of the three guests reach Connected, seen through the page's API.
      let devices: Dev[] = [];
      await waitFor(async () => {
        const { count } = await (await fetch(new URL('/api/meta', url))).json() as { count: number };
        devices = ((await (await fetch(new URL(`/api/state?n=${count}`, url))).json()) as State).devices.filter((d) => !d.id.startsWith('console/'));
        return devices.length === 9 && devices.every((d) => d.frontend?.state === 4 && d.backend?.state === 4);
      }, 'every vbd and vif Connected at both ends', () => JSON.stringify(devices.map((d) => [d.id, d.frontend?.state, d.backend?.state])));
      assert.match(out, /created web \(dom1\)\n.*created db \(dom2\)\n.*created cache \(dom3\)/s);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  });
});

describe('TraceModel', function () {

  it('grows with a live host\'s events, answering as the recorded trace does', async () => {
    const events = (await runScenario(findScenario('boot-and-shutdown')!, { seed: 4 })).trace as readonly TraceRecord[];
    const recorded = new TraceModel(events, 'recorded');
    assert.throws(() => recorded.append(events[0]), /given whole/);
    const live = new TraceModel([], 'live', true);
    const ui = await startUiServer(live, 0);
    try {
      const meta = async (): Promise<{ count: number; live: boolean }> => (await fetch(new URL('/api/meta', ui.url))).json() as Promise<{ count: number; live: boolean }>;
      assert.deepEqual(await meta().then((m) => [m.count, m.live]), [0, true]);
      for (const e of events.slice(0, 1500)) live.append(e);
      assert.equal((await meta()).count, 1500);
      const { last: _a, ...now } = live.stateAt(1500);
      const { last: _b, ...then } = recorded.stateAt(1500);
      assert.deepEqual(now, then);
      for (const e of events.slice(1500)) live.append(e);
      assert.equal(live.find(0, { what: 'state', state: 4, device: 'vbd/51712', role: 'frontend' }),
        recorded.find(0, { what: 'state', state: 4, device: 'vbd/51712', role: 'frontend' }));
    } finally {
      await ui.close();
    }
  });

  it('answers the same state at N whether reached forwards, backwards or afresh', async () => {
    const events = (await runScenario(findScenario('boot-and-shutdown')!, { seed: 3 })).trace as readonly TraceRecord[];
    const m = new TraceModel(events, 't');
    const fresh = (n: number): unknown => new TraceModel(events, 't').stateAt(n);
    const at1000 = m.stateAt(1000);
    const at1001 = m.stateAt(1001);
    assert.deepEqual(at1000, fresh(1000));
    assert.deepEqual(at1001, fresh(1001));
    assert.deepEqual(m.stateAt(500), fresh(500), 'back');
    assert.deepEqual(m.stateAt(1000), at1000, 'forward again');
  });
});
