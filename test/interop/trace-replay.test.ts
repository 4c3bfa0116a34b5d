// `xensim xenstored --replay TRACE` on traces recorded live: Debian's C xenstored 4.17 started with
// -T (through ../shared/oracle) serves Xen's test-xenstore, and its trace re-runs on xensim with no
// reply differing; so does the trace xensim's own daemon writes of the same run (same format).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REPO_ROOT, TOOLS, requireOracle, requireTools, run, startOracle, startXensim, type Daemon } from '../helpers/daemons.ts';

const XENSIM = path.join(REPO_ROOT, 'sim', 'bin', 'xensim.mjs');

async function replay(trace: string): Promise<string> {
  const r = await run(process.execPath, [XENSIM, 'xenstored', '--replay', trace]);
  assert.equal(r.code, 0, `replay of ${trace} reported differences:\n${r.stdout.slice(-4000)}\n${r.stderr}`);
  return r.stdout;
}

describe('interop: xenstored --replay of -T traces recorded from live daemons', function () {
  let d: Daemon | undefined;
  let dir: string;
  before(() => {
    requireOracle();
    requireTools('xenstored', 'test-xenstore');
    // The traces sit outside the daemons' temp dirs, which stop() removes.
    dir = mkdtempSync(path.join(tmpdir(), 'xensim-replay-'));
  });
  afterEach(async () => { await d?.stop(); d = undefined; });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("the real C xenstored's trace of test-xenstore -i 5: 0 differing replies", async () => {
    const trace = path.join(dir, 'c.trace');
    d = await startOracle('c', ['-T', trace]);
    const t = await run(TOOLS['test-xenstore'].file, ['-i', '5'], { env: d.env });
    assert.equal(t.code, 0, t.stdout + t.stderr);
    await d.stop();
    d = undefined;
    assert.ok((readFileSync(trace, 'latin1').match(/^IN /gm) ?? []).length > 300, 'the trace holds the run');
    assert.match(await replay(trace), /^0 differing$/m);
  });

  it("xensim's own trace of the same run replays too", async () => {
    const trace = path.join(dir, 'xensim.trace');
    d = await startXensim({ profile: 'c', args: ['--trace', trace] });
    const t = await run(TOOLS['test-xenstore'].file, ['-i', '5'], { env: d.env });
    assert.equal(t.code, 0, t.stdout + t.stderr);
    // Stopping flushes the trace.
    await d.stop();
    d = undefined;
    assert.match(await replay(trace), /^0 differing$/m);
  });
});
