// Bench section `startup`: how long one `xensim` call takes, from spawn to exit, as a user pays
// it for every xl verb. Compares the compiled CLI in dist/ with the sources under tsx, and shows
// what `npx` adds on top (npm's own start and a shell; the bin is linked into node_modules/.bin by
// the prepare script, so npx does not install the project into its cache first).
// - `version`: `xensim --version`, the floor (node, the bin, the CLI's modules);
// - `xl-list`: `xensim xl list` against a host booted by `xensim up` (target: under 1 s).
// The section builds dist/ first, so dist/ is as new as the sources and the bin runs it.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type BenchSection, REPO_ROOT, isAlive, makeTempDir, median, onCleanup, run, sleep, table } from './common.ts';

const BIN = 'sim/bin/xensim.mjs';

interface Way {
  readonly label: string;
  readonly file: string;
  readonly prefix: readonly string[];
}

const WAYS: readonly Way[] = [
  { label: 'dist/ (`xensim` on PATH: node_modules/.bin)', file: process.execPath, prefix: [BIN] },
  { label: 'sources under tsx (`node --import ./scripts/tsx-preload.mjs`)', file: process.execPath, prefix: ['--import', './scripts/tsx-preload.mjs', BIN] },
  { label: '`npx xensim` (dist/, plus npm resolving the bin)', file: 'npx', prefix: ['xensim'] },
];

async function buildDist(): Promise<number> {
  const t0 = performance.now();
  const r = await run(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { cwd: REPO_ROOT });
  if (r.code !== 0) throw new Error(`tsc -p tsconfig.build.json failed: ${(r.stdout + r.stderr).split('\n').slice(0, 5).join('\n')}`);
  return performance.now() - t0;
}

/** Boots `xensim up` with the three-guest host config; resolves once `xl list` answers. */
async function bootHost(): Promise<{ control: string; stop: () => void }> {
  const dir = makeTempDir('startup');
  const control = join(dir.path, 'xl.sock');
  const logPath = join(dir.path, 'up.log');
  const logFd = openSync(logPath, 'w');
  const args = [BIN, 'up', 'scenarios/hosts/three-guests.yaml', '--socket', join(dir.path, 'xs.sock'), '--control', control];
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  let exited: string | undefined;
  child.on('exit', (code, sig) => { exited = sig ?? `exit code ${code}`; });
  const stop = onCleanup(() => {
    if (exited === undefined && child.pid !== undefined && isAlive(child.pid)) child.kill('SIGKILL');
  });
  const deadline = Date.now() + 120_000;
  for (;;) {
    const r = await run(process.execPath, [BIN, 'xl', '--host', control, 'list'], { cwd: REPO_ROOT, timeoutMs: 60_000 });
    if (r.code === 0 && r.stdout.includes('cache')) break;
    if (exited !== undefined || Date.now() > deadline) {
      stop();
      throw new Error(`xensim up ${exited ? `exited (${exited})` : 'did not answer xl list within 120 s'}: ${readFileSync(logPath, 'utf8').slice(-2000)}`);
    }
    await sleep(200);
  }
  return { control, stop: () => { stop(); dir.remove(); } };
}

/** Wall time of each of `n` calls per way, the ways alternating so drift in load hits all alike. */
async function timeCalls(ways: readonly Way[], args: readonly string[], n: number): Promise<number[][]> {
  const times = ways.map(() => [] as number[]);
  for (let i = 0; i < n; i++) {
    for (const [w, way] of ways.entries()) {
      const t0 = performance.now();
      const r = await run(way.file, [...way.prefix, ...args], { cwd: REPO_ROOT, timeoutMs: 120_000 });
      const ms = performance.now() - t0;
      if (r.code !== 0) throw new Error(`${way.file} ${[...way.prefix, ...args].join(' ')}: exit ${r.code}: ${r.stderr.slice(0, 500)}`);
      times[w].push(ms);
    }
  }
  return times;
}

export const startupSection: BenchSection = {
  name: 'startup',
  title: 'CLI start-up: one `xensim` call, spawn to exit',
  parts: ['version', 'xl-list'],
  async run(opts, parts, out) {
    const n = opts.quick ? 5 : 15;
    const buildMs = await buildDist();
    const rows: string[][] = [];
    const add = (command: string, times: number[][], target: string): void => {
      for (const [w, way] of WAYS.entries()) {
        const med = median(times[w]);
        rows.push([command, way.label, String(n), med.toFixed(0), Math.min(...times[w]).toFixed(0),
          Math.max(...times[w]).toFixed(0), target === '' || w === 1 ? '' : `${target}: ${med < 1000 ? 'met' : 'MISS'}`]);
      }
    };
    if (parts.has('version')) add('xensim --version', await timeCalls(WAYS, ['--version'], n), '');
    if (parts.has('xl-list')) {
      const host = await bootHost();
      try {
        add('xensim xl list', await timeCalls(WAYS, ['xl', '--host', host.control, 'list'], n), '< 1 s');
      } finally {
        host.stop();
      }
    }
    out(`dist/ built first (tsc -p tsconfig.build.json): ${(buildMs / 1000).toFixed(1)} s. Times in ms, median of ${n} calls per row.`);
    out('');
    out(table(['command', 'runs', 'calls:', 'median:', 'min:', 'max:', 'target'], rows));
  },
};
