// `npm run bench -- --only migration`: xl save and xl migrate of 256 MiB and 1 GiB guests, idle
// and dirtying (issue 11). Per case: throughput (stream bytes over wall time), precopy rounds and
// pages per round, downtime in virtual time, peak RSS against the guest's memory. Each case runs
// in a process of its own (migration-case.ts) so its peak RSS is its own. The reference, measured
// in the same run: this machine copying and writing as many bytes - the ceiling save and migrate
// work under (a receiver's new frames cost what a copy into new memory costs).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type BenchSection, REPO_ROOT, fmtFixed, fmtInt, fmtMB, makeTempDir, onCleanup, table } from './common.ts';
import { DIRTY_PAGES_PER_S, type MigrationCase, type MigrationCaseResult } from './migration-case.ts';

const CASE = join(REPO_ROOT, 'sim/bench/migration-case.ts');

/** Targets of issue 11. */
const TARGET_GBPS = 1;
const TARGET_RSS_RATIO = 2.5;

/** Save files on tmpfs when there is one: the disk is not what is measured. */
function fileDir(): { path: string; where: string } {
  if (existsSync('/dev/shm')) {
    const path = mkdtempSync('/dev/shm/xensim-bench-migration-');
    onCleanup(() => rmSync(path, { recursive: true, force: true }));
    return { path, where: 'tmpfs (/dev/shm)' };
  }
  return { path: makeTempDir('migration').path, where: 'the temp dir' };
}

function runCase(c: MigrationCase): Promise<MigrationCaseResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', './scripts/tsx-preload.mjs', CASE, JSON.stringify(c)], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const forget = onCleanup(() => child.kill('SIGKILL'));
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('close', (code) => {
      forget();
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line.startsWith('{')) reject(new Error(`${c.op} ${c.mib} MiB ${c.workload}: exit ${code}: ${err.trim().split('\n').slice(-3).join(' / ')}`));
      else resolve(JSON.parse(line) as MigrationCaseResult);
    });
  });
}

const gbps = (r: MigrationCaseResult): number => r.bytes / 1e9 / (r.wallMs / 1000);

/** Pages per round, shortened when there are many rounds. */
function roundsText(rounds: readonly number[]): string {
  return rounds.map((n) => fmtInt(n)).join(' / ');
}

export const migrationSection: BenchSection = {
  name: 'migration',
  title: 'xl save and xl migrate: throughput, precopy rounds, downtime, peak memory (256 MiB and 1 GiB guests)',
  parts: ['reference', 'save', 'migrate'],
  async run(opts, parts, out) {
    const sizes = opts.quick ? [256] : [256, 1024];
    const dir = fileDir();
    const rows: string[][] = [];
    const notes: string[] = [];
    if (parts.has('reference')) {
      for (const mib of sizes) {
        process.stderr.write(`migration: reference ${mib} MiB\n`);
        const r = await runCase({ op: 'reference', mib, workload: 'idle', dir: dir.path });
        const ref = r.reference!;
        rows.push([`reference: memcpy into touched memory`, `${mib} MiB`, '', fmtFixed(ref.memcpyWarm, 2), '', '', '', '', '', '', '', '']);
        rows.push([`reference: memcpy into new memory`, `${mib} MiB`, '', fmtFixed(ref.memcpyFresh, 2), '', '', '', '', '', '', '', '']);
        rows.push([`reference: write(2) to ${dir.where}`, `${mib} MiB`, '', fmtFixed(ref.write, 2), '', '', '', '', '', '', '', '']);
        rows.push([`reference: log-dirty fingerprint pass (model)`, `${mib} MiB`, '', fmtFixed(ref.fingerprint, 2), '', '', '', '', '', '', '', '']);
        rows.push([`reference: a 4 KiB view per frame (model)`, `${mib} MiB`, '', fmtFixed(ref.frameViews, 2), '', '', '', '', '', '', '', '']);
      }
    }
    for (const op of ['save', 'migrate'] as const) {
      if (!parts.has(op)) continue;
      for (const mib of sizes) {
        // xl save suspends the guest before it streams a page: a dirtying guest saves as an idle one.
        for (const workload of op === 'save' ? ['idle'] as const : ['idle', 'dirtying'] as const) {
          process.stderr.write(`migration: ${op} ${mib} MiB ${workload}\n`);
          const r = await runCase({ op, mib, workload, dir: dir.path });
          const guestBytes = mib * 1024 * 1024;
          const ratio = r.peakRss / guestBytes;
          const model = r.logDirtyMs === undefined ? undefined : r.logDirtyMs + (r.frameAllocMs ?? 0);
          const precopy = op === 'migrate' ? `${r.liveRounds} + 1` : '–';
          const downtime = r.downtimeNs !== undefined ? `${fmtFixed(r.downtimeNs / 1e6, 2)} ms` : '–';
          const check = r.mismatched === undefined ? '' : r.mismatched === 0 ? ` (${fmtInt(r.compared!)} pages equal)` : ` (${r.mismatched} PAGES DIFFER)`;
          rows.push([
            `xl ${op === 'save' ? 'save to file' : 'migrate (in-process pipe)'}${check}`, `${mib} MiB`, workload, fmtFixed(gbps(r), 2), r.cpuMs === undefined ? '–' : fmtFixed(r.cpuMs / 1000, 2), precopy, roundsText(r.rounds), downtime,
            `${fmtMB(r.peakRss)} (base ${fmtMB(r.baseRss)})`, `${fmtFixed(ratio, 2)}× (${fmtFixed((r.peakRss - r.baseRss) / guestBytes, 2)}× above base)`,
            model === undefined ? '–' : fmtFixed(model / 1000, 2), model === undefined ? '–' : fmtFixed(r.bytes / 1e9 / ((r.wallMs - model) / 1000), 2),
          ]);
          if (op === 'save' && mib === 1024 && workload === 'idle') notes.push(`idle 1 GiB guest, xl save: ${fmtFixed(gbps(r), 2)} GB/s (target >= ${TARGET_GBPS}: ${gbps(r) >= TARGET_GBPS ? 'met' : 'NOT met'})`);
          if (op === 'migrate' && mib === 1024 && workload === 'idle') notes.push(`idle 1 GiB guest, xl migrate: ${fmtFixed(gbps(r), 2)} GB/s (target >= ${TARGET_GBPS}: ${gbps(r) >= TARGET_GBPS ? 'met' : 'NOT met'})`);
          if (ratio > TARGET_RSS_RATIO) notes.push(`${op} ${mib} MiB ${workload}: peak RSS ${fmtFixed(ratio, 2)}× the guest's memory (target <= ${TARGET_RSS_RATIO}×: NOT met)`);
        }
      }
    }
    out(table(['case', 'guest', 'workload', 'GB/s:', 'CPU s:', 'precopy rounds (live + last)', 'pages per round', 'downtime (virtual):', 'peak RSS MiB', 'peak RSS / guest:', 'model s:', 'GB/s less model:'], rows));
    out('');
    out('GB/s: stream bytes (xl header to libxl END) over the wall time of `xl save` (suspend, stream, file closed) or of');
    out('`xl migrate` + `xl migrate-receive` (banner to the source destroyed); the simulator\'s memory hashes are off.');
    out('CPU s: the case process\'s CPU time (user + system, all its threads) over that same wall time.');
    out('Migrate runs both lockstep hosts in one process, so the guest exists twice in its RSS; its pages are compared');
    out(`source against destination afterwards. Dirtying: while each round is on the wire (4 us of virtual time a page) the`);
    out(`guest rewrites ${fmtInt(DIRTY_PAGES_PER_S)} pages a second; libxc's policy: stop below 50 dirty pages or after 5 rounds. xl save`);
    out('suspends the guest first (no precopy): a dirtying guest saves as an idle one. Peak RSS: the case process\'s VmHWM.');
    out('Model costs: xensim\'s guests write their frames with no trap, so log-dirty fingerprints every page at enable and at');
    out('each CLEAN (an idle migration passes over the guest 3 times; WebAssembly SIMD over a big guest\'s extents), and the');
    out('destination\'s build makes a Frame per page (its view of the shared buffer made only when first used); the reference');
    out('rows time one fingerprint pass and a view per frame alone, and each migrate row\'s "model" column the wall time spent');
    out('in shadow ops at the source and frame allocation at the destination during that migration, so that GB/s without');
    out('them is the migration\'s own.');
    for (const n of notes) out(`- ${n}`);
  },
};
