// The scheduler from the command line: --schedule on run (and its replay line), explore and
// shrink, and a clear message for a schedule that does not parse.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { HANG_MS } from '../../helpers/wait.ts';
import vbdHandshake from '../../../scenarios/vbd-handshake.ts';
import { runScenario } from '../../../sim/scenario/run.ts';

const BIN = fileURLToPath(new URL('../../../sim/bin/xensim.mjs', import.meta.url));
const run = promisify(execFile);

async function xensim(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [BIN, ...args], { timeout: HANG_MS });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('scheduler: the command line', function () {
  it('run --schedule pct:2 measures K as a swarm does and names pct:2:K in its replay line, and the replay line runs the same failure', async () => {
    let failing: string | undefined;
    for (let seed = 1; seed <= 12 && !failing; seed++) {
      const r = await xensim('run', 'race-r01-watch-first-event-lost', '--variant', 'buggy', '--faults', 'none', '--schedule', 'pct:2', '--seed', String(seed), '-q');
      if (r.code !== 0) failing = r.stdout;
    }
    assert.ok(failing, 'pct:2 fails R01 on one of seeds 1..12');
    const replay = /replay: npx xensim (.*)/.exec(failing)![1];
    assert.match(replay, /--schedule pct:2:\d+( |$)/);
    const again = await xensim(...replay.split(' '), '-q');
    assert.equal(again.stdout.split('\n')[0].replace(/\d+ ms\]/, ''), failing.split('\n')[0].replace(/\d+ ms\]/, ''));
  });

  it('a schedule that does not parse is refused with a one-line message and no run', async () => {
    const r = await xensim('run', 'vbd-handshake', '--schedule', 'sometimes');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--schedule: 'sometimes' is not one of random, pct:D\[:K\], replay:STEPS, at:STEP.DOMID:TASK, raise:STEP.DOMID:TASK, lower:STEP.DOMID:TASK/);
    assert.equal(r.stdout, '');
  });

  it('a replay schedule that does not fit the run is run with the default where it cannot, and says so', async () => {
    const r = await xensim('run', 'vbd-handshake', '--faults', 'none', '--schedule', 'replay:5.9', '-q');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: the schedule does not fit this run: step 5 asks for choice 9 but \d+ could run/);
    const fits = await xensim('run', 'vbd-handshake', '--faults', 'none', '--schedule', 'replay:-', '-q');
    assert.doesNotMatch(fits.stderr, /does not fit/);
  });

  it('explore --bound 0 runs exactly the default schedule; shrink of a passing run says there is nothing to shrink', async () => {
    const e = await xensim('explore', 'vbd-handshake', '--bound', '0');
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /vbd-handshake \[fixed\]: every 1 schedule\(s\) with <= 0 step\(s\) off the default schedule/);
    assert.match(e.stdout, /0 failing \(0\.0 %\)/);
    const s = await xensim('shrink', 'vbd-handshake', '--seed', '1');
    assert.notEqual(s.code, 0);
    assert.match(s.stderr, /passes: nothing to shrink/);
  });

  it('swarm --schedule pct:2 measures K, the steps of the default schedule, and every run and replay line carries pct:2:K', async () => {
    const r = await xensim('swarm', 'vbd-handshake', '--variant', 'fixed', '--seeds', '2', '--jobs', '1', '--schedule', 'pct:2', '--json', '-');
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { schedule?: string });
    assert.equal(lines.length, 2);
    const base = await runScenario(vbdHandshake, { seed: 1, faults: { spec: 'none' }, schedule: 'replay:-' });
    for (const l of lines) assert.equal(l.schedule, `pct:2:${base.steps}`);
  });
});
