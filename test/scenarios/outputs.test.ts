// What people look at: the trace of a real run renders as valid Chrome/Perfetto trace-event
// JSON and as a Mermaid diagram Mermaid's own parser accepts; the CLI replays a recorded run
// byte for byte and reports results in xtf-runner's exit codes and JUnit.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import mermaid from 'mermaid';
import { XMLParser } from 'fast-xml-parser';
import { findScenario } from '../../scenarios/index.ts';
import { runScenario } from '../../sim/scenario/run.ts';
import { toMermaidSequence } from '../../sim/trace/mermaid.ts';
import { perfettoJson, toPerfetto, validateTraceEventJson } from '../../sim/trace/perfetto.ts';
import { toTextLog } from '../../sim/trace/text-log.ts';
import { HANG_MS } from '../helpers/wait.ts';

const BIN = fileURLToPath(new URL('../../sim/bin/xensim.mjs', import.meta.url));
const run = promisify(execFile);

async function xensim(args: string[], cwd: string): Promise<{ code: number; stdout: string }> {
  try {
    const r = await run(process.execPath, [BIN, ...args], { cwd, timeout: HANG_MS });
    return { code: 0, stdout: r.stdout };
  } catch (e) {
    const err = e as { code: number; stdout: string };
    return { code: err.code, stdout: err.stdout };
  }
}

describe('scenario outputs from a real run', function () {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'xensim-out-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('perfetto: boot-and-shutdown\'s trace is valid trace-event JSON with a process per domain and transaction spans', async () => {
    const r = await runScenario(findScenario('boot-and-shutdown')!, { seed: 4 });
    const json = JSON.parse(perfettoJson(toPerfetto(r.trace))) as { traceEvents: { ph: string; pid: number; args?: { name?: string } }[] };
    assert.deepEqual(validateTraceEventJson(json), []);
    const processes = json.traceEvents.filter((e) => e.ph === 'M' && e.args?.name).map((e) => e.args!.name);
    assert.ok(processes.includes('Domain-0') && processes.some((n) => n === 'dom1'), processes.join(','));
    assert.ok(json.traceEvents.some((e) => e.ph === 'b') && json.traceEvents.some((e) => e.ph === 'e'), 'transactions as async spans');
  });

  it('mermaid: the vbd handshake of a real run parses with Mermaid, both drivers and the toolstack on stage', async () => {
    const r = await runScenario(findScenario('boot-and-shutdown')!, { seed: 4 });
    const text = toMermaidSequence(r.trace, { filter: 'vbd/51712' });
    assert.ok(await mermaid.parse(text), 'Mermaid accepts it');
    for (const who of ['blkfront (dom1)', 'blkback (dom0)', 'xenstored', 'toolstack']) assert.ok(text.includes(who), who);
    assert.match(text, /XenbusStateConnected/);
    assert.match(toTextLog(r.trace), /xenbus backend vbd\/1\/51712 XenbusStateInitWait \(2\)/);
  });

  it('cli: run --trace then replay says "replayed exactly"; exit codes and JUnit follow xtf-runner', async () => {
    const trace = join(dir, 'run.jsonl');
    const junit = join(dir, 'run.xml');
    const ok = await xensim(['run', 'boot-and-shutdown', '--seed', '5', '-q', '--trace', trace, '--junit', junit], dir);
    assert.equal(ok.code, 0, ok.stdout);
    assert.match(ok.stdout, /^SUCCESS: boot-and-shutdown seed 5/m);
    const replay = await xensim(['replay', trace], dir);
    assert.equal(replay.code, 0, replay.stdout);
    assert.match(replay.stdout, /replayed exactly: \d+ events, sha256 [0-9a-f]{64}/);
    const xml = new XMLParser({ ignoreAttributes: false }).parse(readFileSync(junit, 'utf8')) as { testsuites: { testsuite: { testcase: unknown } } };
    assert.ok(xml.testsuites.testsuite.testcase, 'a JUnit testcase');

    const bad = await xensim(['run', 'domid-reuse', '--variant', 'before-xsa-322', '-q'], dir);
    assert.equal(bad.code, 5, 'FAILURE exits 5');
    assert.match(bad.stdout, /replay: npx xensim run domid-reuse --seed 1 --variant before-xsa-322/);
  });

  it('cli: swarm finds a planted race and prints the command that replays it', async () => {
    const r = await xensim(['swarm', 'race-r20-partial-publish', '--seeds', '20', '--jobs', '2', '--variant', 'buggy', '--stop'], dir);
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, /race-r20-partial-publish \[buggy\]: .* found \(first at seed \d+\)/);
    assert.match(r.stdout, /replay: npx xensim run race-r20-partial-publish --seed \d+ --variant buggy/);
  });
});
