// Shared plumbing of `npm run bench`: the section interface, clean-up of everything a section
// starts, temp dirs, statistics, process helpers and markdown-like tables.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is sim/bench/common.ts). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface BenchOptions {
  /** Fewer operations and nodes: a smoke run. */
  readonly quick: boolean;
  /** Alternating rounds per measurement (medians are taken over them). */
  readonly rounds: number;
  /** Raw option values, for sections with options of their own. */
  readonly values: Readonly<Record<string, string | boolean | undefined>>;
}

/** One benchmark section: `--only NAME` or `--only NAME.PART` selects it. */
export interface BenchSection {
  readonly name: string;
  readonly title: string;
  /** Independent parts, in run order. */
  readonly parts: readonly string[];
  run(opts: BenchOptions, parts: ReadonlySet<string>, out: (line: string) => void): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Clean-up: every process and temp dir a section creates is registered here. The functions are
// synchronous so that they also work from process.on('exit') and signal handlers.

const cleanups = new Map<number, () => void>();
let nextCleanupId = 1;

/** Registers a synchronous clean-up; returns a function that runs it now (once) and forgets it. */
export function onCleanup(fn: () => void): () => void {
  const id = nextCleanupId++;
  cleanups.set(id, fn);
  return () => {
    if (cleanups.delete(id)) fn();
  };
}

/** Runs all pending clean-ups, newest first. Idempotent. */
export function runAllCleanups(): void {
  const fns = [...cleanups.entries()].reverse();
  cleanups.clear();
  for (const [, fn] of fns) {
    try {
      fn();
    } catch (e) {
      process.stderr.write(`bench: clean-up failed: ${String(e)}\n`);
    }
  }
}

let handlersInstalled = false;
/** Makes sure the clean-ups run on normal exit, on errors and on SIGINT/SIGTERM/SIGHUP. */
export function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', runAllCleanups);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping everything started\n`);
      runAllCleanups();
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    });
  }
}

/** A fresh temp dir, removed at clean-up. */
export function makeTempDir(tag: string): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), `xensim-bench-${tag}-`));
  const remove = onCleanup(() => rmSync(path, { recursive: true, force: true }));
  return { path, remove };
}

// ---------------------------------------------------------------------------------------------
// Processes

export function sleep(ms: number): Promise<void> {
  return new Promise((res) => setTimeout(res, ms));
}

/** True if PID exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The command line of PID joined with spaces, or '' if it is gone. */
export function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').join(' ');
  } catch {
    return '';
  }
}

export { type MemInfo, memOf } from './proc-mem.ts';

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program to completion (async), with a timeout; never throws for a non-zero exit. */
export function run(
  file: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((res) => {
    const child = execFile(
      file,
      args,
      {
        env: opts.env ?? process.env,
        timeout: opts.timeoutMs ?? 0,
        cwd: opts.cwd,
        maxBuffer: 64 * 1024 * 1024,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        forget();
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        res({ code, stdout, stderr: stderr || (err && code === null ? String(err) : '') });
      },
    );
    const pid = child.pid;
    const forget = onCleanup(() => {
      if (pid !== undefined && isAlive(pid)) child.kill('SIGKILL');
    });
  });
}

/** Runs a program synchronously (usable in exit handlers). */
export function runSync(file: string, args: readonly string[], env?: NodeJS.ProcessEnv): RunResult {
  const r = spawnSync(file, args, { env: env ?? process.env, encoding: 'utf8', timeout: 15000 });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error ?? '') };
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function fmtInt(x: number): string {
  return Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–';
}

export function fmtFixed(x: number, digits = 1): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '–';
}

export function fmtMB(bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / (1024 * 1024)).toFixed(1)}` : '–';
}

export function fmtRatio(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(2)}×` : '–';
}

/** A markdown table; columns whose header ends with ':' are right-aligned (the ':' is dropped). */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const right = headers.map((h) => h.endsWith(':'));
  const heads = headers.map((h) => (h.endsWith(':') ? h.slice(0, -1) : h));
  const widths = heads.map((h, i) => Math.max(h.length, 3, ...rows.map((r) => (r[i] ?? '').length)));
  const cell = (s: string, i: number): string => (right[i] ? s.padStart(widths[i]) : s.padEnd(widths[i]));
  const line = (cells: readonly string[]): string => `| ${cells.map((c, i) => cell(c, i)).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (right[i] ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(heads), sep, ...rows.map((r) => line(heads.map((_, i) => r[i] ?? '')))].join('\n');
}
