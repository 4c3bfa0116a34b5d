// A race written outside the repository (issue 10, acceptance 3): a scenario file in a temp dir,
// importing xensim's API as `xensim/scenario` from a linked install, with a race id of its own,
// a buggy knob it declares and reads itself, and a fault kind of its own, runs, swarms (in shards
// merged back into one summary) and replays through the CLI - without editing xensim.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { resolveScenarioArg, ScenarioLoadError } from '../../sim/scenario/load.ts';
import { parseSwarmLines } from '../../sim/scenario/swarm-report.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(REPO, 'sim/bin/xensim.mjs');
const run = promisify(execFile);

async function xensim(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [BIN, ...args], { cwd, maxBuffer: 16 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** The user's race: two processes claim a node by reading it free, then writing their name. */
const MY_RACE = `import { declareFault, defineScenario, guestConfig } from 'xensim/scenario';

// A fault of this scenario's own: how long a process thinks between its read and its write.
declareFault({
  name: 'claimGapNs', owner: 'acme claim scenario', description: 'a claimer pauses between read and write',
  defaultRange: [1e5, 2e6], draw: (r, rng) => Math.round(rng.between(r)), describe: (v) => 'claim gap ' + v + 'ns',
});

const owner = (id) => '/local/domain/' + id + '/data/owner';

export default defineScenario({
  name: 'double-claim',
  title: 'two user processes claim one node by reading it free, then writing their name',
  race: { id: 'ACME-7', name: 'double claim', source: 'our own tracker' },
  variants: {
    fixed: { description: 'read and write in one transaction', knobs: { transaction: true } },
    buggy: { description: 'read, then write, outside a transaction', knobs: { transaction: false } },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { claimGapNs: [1e5, 2e6] },
  async run(s) {
    const id = await s.step('xl create guest', () => s.create('guest', guestConfig('guest')));
    await s.step('the node starts free', () => s.guest('guest', { cmd: 'xs-batch', ops: [['write', owner(id), 'free']] }));
    const won = await s.step('two processes claim it at once', async () => {
      const claim = (who) => s.guest('guest', {
        cmd: 'xs-batch', ops: [['read', owner(id)], ['write', owner(id), who]],
        tx: s.knob('transaction'), gapNs: s.faults.claimGapNs ?? 1e6,
      }).then((r) => r.results[0] === 'free' && r.committed !== false);
      return Promise.all([claim('a'), claim('b')]);
    });
    s.expect(won.filter(Boolean).length <= 1, 'both processes think they own the node (' + won.join(', ') + ')');
  },
});
`;

/** Summary lines of a swarm's output (the run counts and timing differ between runs). */
const summaryOf = (out: string): string[] => out.split('\n').filter((l) => l !== '' && !/ runs (in|from) /.test(l) && !l.startsWith('shard '));

describe('a scenario of one\'s own, outside the repository', function () {
  let dir: string;
  let file: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'xensim-user-'));
    // An ES-module project with xensim installed (linked, as `npm link xensim` does).
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(REPO, join(dir, 'node_modules', 'xensim'), 'dir');
    mkdirSync(join(dir, 'races'));
    file = join(dir, 'races', 'double-claim.ts');
    writeFileSync(file, MY_RACE);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('run: its buggy knob fails, printing a replay command that names the file; the fixed variant passes', async () => {
    const bad = await xensim(['run', './races/double-claim.ts', '--variant', 'buggy', '--seed', '2'], dir);
    assert.equal(bad.code, 5, bad.stdout + bad.stderr);
    assert.match(bad.stdout, /^double-claim seed 2 variant buggy; faults: claim gap \d+ns$/m);
    assert.match(bad.stdout, /^FAILURE: double-claim seed 2 variant buggy - both processes think they own the node \(true, true\)/m);
    assert.ok(bad.stdout.includes(`replay: npx xensim run ${file}#double-claim --seed 2 --variant buggy\n`), bad.stdout);
    const ok = await xensim(['run', file, '--seed', '2', '-q'], dir);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /^SUCCESS: double-claim seed 2 /m);
  });

  it('run: --faults and --fault-swarm choose the faults apart from the seed, and the replay command repeats them', async () => {
    const none = await xensim(['run', file, '--variant', 'buggy', '--faults', 'none'], dir);
    assert.match(none.stdout, /; faults: none$/m);
    assert.ok(none.stdout.includes(`--variant buggy --faults none\n`), none.stdout);
    const swarmed = await xensim(['run', file, '--variant', 'buggy', '--faults', 'claimGapNs,jitter', '--fault-swarm', '--seed', '3'], dir);
    assert.equal(swarmed.code, 5, swarmed.stdout + swarmed.stderr);
    assert.ok(swarmed.stdout.includes('--seed 3 --variant buggy --faults claimGapNs,jitter --fault-swarm\n'), swarmed.stdout);
    const unknown = await xensim(['run', file, '--faults', 'nosuch'], dir);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no fault kind "nosuch" \(known: .*claimGapNs/);
  });

  it('run --trace of the file replays exactly', async () => {
    const trace = join(dir, 'claim.jsonl');
    const r = await xensim(['run', file, '--variant', 'buggy', '--seed', '4', '-q', '--trace', trace], dir);
    assert.equal(r.code, 5, r.stdout + r.stderr);
    const replay = await xensim(['replay', trace], dir);
    assert.match(replay.stdout, /replayed exactly: \d+ events, sha256 [0-9a-f]{64}/);
    assert.equal(replay.code, 5, 'the replay ends as the run did');
  });

  it('swarm: finds the buggy variant, passes the fixed one, one JSON line per seed; shards merge into the same summary', async () => {
    const json = join(dir, 'all.jsonl');
    const whole = await xensim(['swarm', file, '--seeds', '6', '--jobs', '2', '--json', json], dir);
    assert.equal(whole.code, 0, whole.stdout + whole.stderr);
    assert.match(whole.stdout, /^double-claim \[fixed\]: 6 runs, 0 failing \(0\.0 %\) - ok$/m);
    assert.match(whole.stdout, /^double-claim \[buggy\]: 6 runs, 6 failing \(100\.0 %\) - found \(first at seed 1\)$/m);
    assert.match(whole.stdout, /^ {2}6 x FAILURE: both processes think they own the node \(true, true\)$/m);
    const lines = parseSwarmLines(readFileSync(json, 'utf8'), json);
    assert.equal(lines.length, 12);
    for (const l of lines) {
      assert.equal(l.file, file);
      assert.equal(l.expect, l.variant === 'buggy' ? 'fail' : 'pass');
      assert.equal(l.result, l.variant === 'buggy' ? 'FAILURE' : 'SUCCESS');
      assert.equal(typeof (l.faults as { claimGapNs?: unknown }).claimGapNs, 'number', 'the drawn faults are recorded');
      if (l.variant === 'buggy') assert.equal(l.signature, 'FAILURE: both processes think they own the node (true, true)');
      assert.ok(l.replay.startsWith(`npx xensim run ${file}#double-claim --seed ${l.seed}`), l.replay);
    }

    const shards = [join(dir, 'shard0.jsonl'), join(dir, 'shard1.jsonl')];
    for (const [i, out] of shards.entries()) {
      const r = await xensim(['swarm', file, '--seeds', '6', '--shard', `${i}/2`, '--jobs', '1', '--json', out], dir);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, new RegExp(`^shard ${i}/2: seeds ${i === 0 ? '1\\.\\.3' : '4\\.\\.6'}$`, 'm'));
    }
    const merged = await xensim(['swarm-merge', ...shards], dir);
    assert.equal(merged.code, 0, merged.stdout + merged.stderr);
    assert.match(merged.stdout, /^12 runs from 2 files$/m);
    assert.deepEqual(summaryOf(merged.stdout), summaryOf(whole.stdout));
  });

  it('swarm over a directory of files, and a file that is not an ES module says how to make it one', async () => {
    const second = join(dir, 'races', 'double-claim-too.mts');
    writeFileSync(second, MY_RACE.replace("name: 'double-claim'", "name: 'double-claim-too'").replaceAll('claimGapNs', 'claimGapNsToo'));
    const r = await xensim(['swarm', file, second, '--seeds', '2', '--variant', 'buggy', '--json', '-'], dir);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const lines = parseSwarmLines(r.stdout, 'stdout');
    assert.deepEqual(lines.map((l) => `${l.scenario} ${l.seed}`).sort(), ['double-claim 1', 'double-claim 2', 'double-claim-too 1', 'double-claim-too 2']);
    assert.match(r.stderr, /^double-claim-too \[buggy\]: 2 runs, 2 failing/m, 'the summary goes to stderr when JSON takes stdout');

    // A variant expected to fail that no seed fails: one shard is no verdict, the merge is.
    const never = join(dir, 'races', 'never-found.ts');
    writeFileSync(never, MY_RACE.replace("name: 'double-claim'", "name: 'never-found'").replaceAll('claimGapNs', 'claimGapNsNever')
      .replace("expect: { fixed: 'pass', buggy: 'fail' }", "expect: { fixed: 'fail', buggy: 'fail' }"));
    const part = join(dir, 'never.jsonl');
    const shard = await xensim(['swarm', never, '--variant', 'fixed', '--seeds', '2', '--shard', '0/2', '--json', part], dir);
    assert.match(shard.stdout, /^never-found \[fixed\]: 1 runs, 0 failing \(0\.0 %\) - NOT FOUND$/m);
    assert.equal(shard.code, 0, 'a shard that did not find it does not fail');
    const verdict = await xensim(['swarm-merge', part], dir);
    assert.equal(verdict.code, 5, 'the merge says NOT FOUND is a FAILURE');

    const cjsDir = mkdtempSync(join(tmpdir(), 'xensim-cjs-'));
    try {
      writeFileSync(join(cjsDir, 'race.ts'), MY_RACE);
      await assert.rejects(resolveScenarioArg(join(cjsDir, 'race.ts')), (e: unknown) => e instanceof ScenarioLoadError && /"type": "module"/.test(e.message));
    } finally {
      rmSync(cjsDir, { recursive: true, force: true });
    }
  });
});
