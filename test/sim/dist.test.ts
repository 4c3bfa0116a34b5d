// `npx xensim` runs dist/ only while it is as new as the sources it is compiled from; otherwise
// the bin runs the sources under tsx, so a stale build is never what runs.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SOURCES, distIsFresh } from '../../sim/bin/dist.mjs';
import { REPO_ROOT } from '../helpers/daemons.ts';

describe('sim/bin/dist.mjs: is dist/ as new as the sources', () => {
  let root: string;
  /** Writes `rel` with the given modification time (seconds since the epoch). */
  const file = (rel: string, mtime: number): void => {
    const p = path.join(root, rel);
    mkdirSync(path.dirname(p), { recursive: true });
    writeFileSync(p, '');
    utimesSync(p, mtime, mtime);
  };

  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'xensim-dist-'));
    for (const dir of SOURCES) mkdirSync(path.join(root, dir));
    file('hypervisor/public/xen.ts', 1000);
    file('sim/cli.ts', 1000);
    file('dist/hypervisor/public/xen.js', 2000);
    file('dist/sim/cli.js', 2000);
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('fresh when every source has a newer or equally old compiled file', () => {
    assert.equal(distIsFresh(root), true);
    file('sim/cli.ts', 2000);
    assert.equal(distIsFresh(root), true);
  });

  it('stale when a source was changed after the build', () => {
    file('hypervisor/public/xen.ts', 3000);
    assert.equal(distIsFresh(root), false);
  });

  it('stale when a source has no compiled file (added after the build), or dist/ is missing', () => {
    file('domains/kernel/worker.ts', 1000);
    assert.equal(distIsFresh(root), false);
    rmSync(path.join(root, 'dist'), { recursive: true });
    rmSync(path.join(root, 'domains/kernel/worker.ts'));
    assert.equal(distIsFresh(root), false);
  });

  it('ignores what the build does not compile: sim/bench, declaration files, other files', () => {
    file('sim/bench/bench.ts', 9000);
    file('sim/bin/dist.d.mts', 9000);
    file('hypervisor/types.d.ts', 9000);
    file('scenarios/hosts/three-guests.yaml', 9000);
    assert.equal(distIsFresh(root), true);
  });

  it('looks at the folders tsconfig.build.json compiles', () => {
    const text = readFileSync(path.join(REPO_ROOT, 'tsconfig.build.json'), 'utf8').replace(/^\s*\/\/.*$/gm, '');
    const build = JSON.parse(text) as { include: string[]; exclude: string[] };
    assert.deepEqual(build.include, SOURCES);
    assert.deepEqual(build.exclude, ['sim/bench']);
  });

  it('with extra sources (a bench file the build compiles on its own): stale until each has a newer compiled file', () => {
    file('sim/bench/migration-case.ts', 1000);
    assert.equal(distIsFresh(root), true);
    assert.equal(distIsFresh(root, ['sim/bench/migration-case.ts']), false);
    file('dist/sim/bench/migration-case.js', 2000);
    assert.equal(distIsFresh(root, ['sim/bench/migration-case.ts']), true);
    file('sim/bench/migration-case.ts', 3000);
    assert.equal(distIsFresh(root, ['sim/bench/migration-case.ts']), false);
  });

  it('builds the migration bench case files the bench runs compiled', () => {
    const text = readFileSync(path.join(REPO_ROOT, 'tsconfig.build.json'), 'utf8').replace(/^\s*\/\/.*$/gm, '');
    const build = JSON.parse(text) as { files?: string[] };
    assert.deepEqual(build.files, ['sim/bench/migration-case.ts']);
  });

  it('stale when a source folder is missing', () => {
    rmSync(path.join(root, 'scenarios'), { recursive: true });
    assert.equal(distIsFresh(root), false);
  });
});
