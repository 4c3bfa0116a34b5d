// Less to read for a lesson: the exporters' --only/--hide/--domain filters, and a clean
// --no-faults run, on a real boot-and-shutdown.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { findScenario } from '../../../scenarios/index.ts';
import { runScenario } from '../../../sim/scenario/run.ts';
import type { TraceRecord } from '../../../sim/trace/events.ts';
import { filterError, filterTrace } from '../../../sim/trace/filter.ts';

const BIN = fileURLToPath(new URL('../../../sim/bin/xensim.mjs', import.meta.url));

async function xensim(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await promisify(execFile)(process.execPath, [BIN, ...args]);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('trace filters for the exporters', function () {
  let ev: readonly TraceRecord[];
  let dir: string;
  before(async () => {
    ev = (await runScenario(findScenario('boot-and-shutdown')!, { seed: 1 })).trace as readonly TraceRecord[];
    dir = mkdtempSync(join(tmpdir(), 'xensim-filter-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('--only keeps those kinds, in order', () => {
    const kept = filterTrace(ev, { only: ['xenstore', 'xenbus'] });
    assert.deepEqual(kept, ev.filter((e) => e.kind === 'xenstore' || e.kind === 'xenbus'));
    assert.ok(kept.some((e) => e.kind === 'xenbus'));
  });

  it('--hide replies drops xenstored\'s answers but keeps watch events and requests', () => {
    const kept = filterTrace(ev, { hide: ['replies'] });
    assert.equal(kept.filter((e) => e.kind === 'xenstore' && e.dir === 'OUT' && e.type !== 'WATCH_EVENT').length, 0);
    assert.equal(kept.filter((e) => e.kind === 'xenstore' && e.type === 'WATCH_EVENT').length, ev.filter((e) => e.kind === 'xenstore' && e.type === 'WATCH_EVENT').length);
    assert.equal(kept.filter((e) => e.kind === 'xenstore' && e.dir === 'IN').length, ev.filter((e) => e.kind === 'xenstore' && e.dir === 'IN').length);
  });

  it('--domain keeps one domain\'s events and those of no domain', () => {
    const kept = filterTrace(ev, { domains: [1] });
    assert.ok(kept.length > 0 && kept.every((e) => e.domid === undefined || e.domid === 1));
    assert.ok(kept.some((e) => e.kind === 'step'));
  });

  it('names what it does not know', () => {
    assert.match(filterError({ only: ['xenstor'] })!, /--only xenstor/);
    assert.match(filterError({ hide: ['reply'] })!, /--hide reply/);
    assert.equal(filterError({ only: ['xenstore'], hide: ['replies', 'set-pending'] }), undefined);
  });

  it('xensim run --no-faults --only xenstore,xenbus --hide replies: a log of requests, watch events and state changes, with no fault drawn', async () => {
    const log = join(dir, 'clean.log');
    const trace = join(dir, 'clean.jsonl');
    const r = await xensim(['run', 'boot-and-shutdown', '--no-faults', '-q', '--only', 'xenstore,xenbus', '--hide', 'replies', '--log', log, '--trace', trace]);
    assert.equal(r.code, 0, r.stderr);
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    assert.ok(lines.every((l) => / xenstore (IN |OUT XS_WATCH_EVENT)| xenbus /.test(l)), lines.find((l) => !/ xenstore (IN |OUT XS_WATCH_EVENT)| xenbus /.test(l)));
    const header = JSON.parse(readFileSync(trace, 'utf8').split('\n')[0]) as { faults: Record<string, unknown>; faultSelection: { spec: string } };
    assert.equal(header.faultSelection.spec, 'none');
    assert.deepEqual(header.faults, {});
    const all = readFileSync(trace, 'utf8').trim().split('\n');
    assert.ok(all.length > lines.length, 'the --trace file keeps every event');
  });

  it('xensim run --log - --explain tells the run in sentences: the handshake in commit order', async () => {
    const r = await xensim(['run', 'boot-and-shutdown', '--no-faults', '-q', '--log', '-', '--explain', '--only', 'xenbus']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('['));
    assert.ok(lines.length >= 12 && lines.every((l) => l.endsWith('(xenbus_switch_state)')), lines.join('\n'));
    const vbd = lines.filter((l) => l.includes('vbd/')).map((l) => /(blkfront|blkback) has switched \S+ to XenbusState(\w+)/.exec(l)!.slice(1).join(' '));
    assert.deepEqual(vbd.slice(0, 4), ['blkback InitWait', 'blkfront Initialised', 'blkback Connected', 'blkfront Connected']);
  });

  it('xensim run --mermaid --device that matches nothing is an error, not an empty diagram', async () => {
    const r = await xensim(['run', 'boot-and-shutdown', '-q', '--mermaid', join(dir, 'none.mmd'), '--device', 'vbd/9999']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no message to draw for --device vbd\/9999/);
  });
});
