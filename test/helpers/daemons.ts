// Interop-test plumbing: starts and stops xenstore daemons and runs the Debian client tools.
//
//   startXensim(opts)        xensim xenstored as a child process, in a fresh temp dir
//   startOracle('c'|'ocaml') Debian's C xenstored / oxenstored through ../shared/oracle/start.sh
//   startTarget(profile)     the daemon under test: xensim, or (XENSIM_INTEROP_DAEMON=oracle) the
//                            real daemon of that profile, to debug the harness itself
//   run(cmd, args, opts)     a command to completion (never rejects on a non-zero exit)
//   Proc                     a long-running command whose output can be awaited (xenstore-watch)
//   requireTools(...)        fails loudly, naming the Debian package, when a tool is missing
//
// Paths: the repository root is found from this file, the shared folder is `<root>/../shared`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  XsDecodeStep,
  XsWireDecoder,
  XsdSockmsgType,
  encodeMessage,
  nulJoin,
} from '../../hypervisor/public/io/xs_wire.ts';
import { HANG_MS } from './wait.ts';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SHARED_DIR = path.resolve(REPO_ROOT, '..', 'shared');
export const ORACLE_DIR = path.join(SHARED_DIR, 'oracle');
export const XEN_BIN = '/usr/lib/xen-4.17/bin';
export const PYTHON3 = '/usr/bin/python3';

export type Profile = 'c' | 'ocaml';

// ---------------------------------------------------------------------------------------------
// Required Debian tools

const APT_HINT =
  'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ' +
  'xenstore-utils python3-pyxs xen-utils-4.17 libxen-dev gcc   (or run .ci/run)';

/** What each tool is, and which Debian package ships it. */
export const TOOLS = {
  'xenstore-read': { file: '/usr/bin/xenstore-read', pkg: 'xenstore-utils' },
  'xenstore-write': { file: '/usr/bin/xenstore-write', pkg: 'xenstore-utils' },
  'xenstore-ls': { file: '/usr/bin/xenstore-ls', pkg: 'xenstore-utils' },
  'xenstore-rm': { file: '/usr/bin/xenstore-rm', pkg: 'xenstore-utils' },
  'xenstore-chmod': { file: '/usr/bin/xenstore-chmod', pkg: 'xenstore-utils' },
  'xenstore-list': { file: '/usr/bin/xenstore-list', pkg: 'xenstore-utils' },
  'xenstore-exists': { file: '/usr/bin/xenstore-exists', pkg: 'xenstore-utils' },
  'xenstore-watch': { file: '/usr/bin/xenstore-watch', pkg: 'xenstore-utils' },
  'test-xenstore': { file: `${XEN_BIN}/test-xenstore`, pkg: 'xen-utils-4.17' },
  xenstored: { file: `${XEN_BIN}/xenstored`, pkg: 'xen-utils-4.17' },
  oxenstored: { file: `${XEN_BIN}/oxenstored`, pkg: 'xen-utils-4.17' },
  python3: { file: PYTHON3, pkg: 'python3 (pulled in by python3-pyxs)' },
  pyxs: { file: '/usr/lib/python3/dist-packages/pyxs/__init__.py', pkg: 'python3-pyxs' },
  'xenstore.h': { file: '/usr/include/xenstore.h', pkg: 'libxen-dev' },
  gcc: { file: '/usr/bin/gcc', pkg: 'gcc' },
  diff: { file: '/usr/bin/diff', pkg: 'diffutils' },
} as const;
export type Tool = keyof typeof TOOLS;

export const XENSTORE_UTILS: Tool[] = [
  'xenstore-read', 'xenstore-write', 'xenstore-ls', 'xenstore-rm', 'xenstore-chmod',
  'xenstore-list', 'xenstore-exists', 'xenstore-watch',
];

/** Throws (never skips) when a tool is missing, naming its Debian package. */
export function requireTools(...tools: Tool[]): void {
  const missing = tools.filter((t) => !existsSync(TOOLS[t].file));
  if (missing.length === 0) return;
  const lines = missing.map((t) => `  ${TOOLS[t].file}  (Debian package ${TOOLS[t].pkg})`);
  throw new Error(`required tool(s) missing:\n${lines.join('\n')}\ninstall with: ${APT_HINT}`);
}

/** The oracle folder must sit beside the repository (../shared/oracle). */
export function requireOracle(): void {
  for (const f of ['start.sh', 'stop.sh', 'build.sh', 'xs-probe.py']) {
    if (!existsSync(path.join(ORACLE_DIR, f))) {
      throw new Error(`missing ${path.join(ORACLE_DIR, f)}: the shared folder must be checked out ` +
        `beside the repository as ../shared`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Running commands

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  input?: string;
}

/**
 * Runs a command to completion. Resolves with its exit status and output, whatever they are; a
 * command still running after HANG_MS is killed (SIGKILL), and the result then has signal set.
 */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd ?? REPO_ROOT,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), HANG_MS);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code, signal,
        stdout: Buffer.concat(out).toString('latin1'),
        stderr: Buffer.concat(err).toString('latin1'),
      });
    });
    if (child.stdin) {
      child.stdin.on('error', () => { /* the command exited without reading all its input */ });
      child.stdin.end(opts.input);
    }
  });
}

/** A long-running command whose output can be awaited while it runs. */
export class Proc {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<RunResult>;
  private waiters: (() => void)[] = [];

  constructor(cmd: string, args: readonly string[], opts: RunOptions = {}) {
    this.child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd ?? REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (b: Buffer) => { this.stdout += b.toString('latin1'); this.wake(); });
    this.child.stderr!.on('data', (b: Buffer) => { this.stderr += b.toString('latin1'); this.wake(); });
    this.exited = new Promise((resolve) => {
      this.child.on('error', (e) => {
        this.stderr += `spawn error: ${e.message}\n`;
        resolve({ code: null, signal: null, stdout: this.stdout, stderr: this.stderr });
      });
      this.child.on('close', (code, signal) => {
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr });
        this.wake();
      });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Waits until `pred(stdout)` holds, checked at each output; throws if the process ends first
   * (or after HANG_MS). */
  async until(pred: (stdout: string) => boolean, what = 'output'): Promise<void> {
    const hung = Date.now() + HANG_MS;
    while (!pred(this.stdout)) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`process ended before ${what}; stdout=${JSON.stringify(this.stdout)} ` +
          `stderr=${JSON.stringify(this.stderr)}`);
      }
      if (Date.now() > hung) {
        throw new Error(`no ${what} after ${HANG_MS / 1000} s: hung; stdout=${JSON.stringify(this.stdout)} ` +
          `stderr=${JSON.stringify(this.stderr)}`);
      }
      // Woken by output or exit; the timer only bounds the wait for the hang check.
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  /** Waits for the process to exit by itself; kills it after HANG_MS (the result then has signal set). */
  async exit(): Promise<RunResult> {
    const t = setTimeout(() => this.kill(), HANG_MS);
    try {
      return await this.exited;
    } finally {
      clearTimeout(t);
    }
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/** Throws an AssertionError-like error carrying a unified diff when two texts differ. */
export async function assertSameText(actual: string, expected: string, label: string): Promise<void> {
  if (actual === expected) return;
  requireTools('diff');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-diff-'));
  try {
    writeFileSync(path.join(dir, 'expected'), expected, 'latin1');
    writeFileSync(path.join(dir, 'actual'), actual, 'latin1');
    const d = await run('diff', ['-u', '--label', `expected (${label})`, '--label', 'actual',
      path.join(dir, 'expected'), path.join(dir, 'actual')]);
    const e = new Error(`${label}: output differs\n${d.stdout}`);
    e.name = 'AssertionError';
    throw e;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Daemons

export interface Daemon {
  /** 'xensim', or 'c' / 'ocaml' for the real daemons. */
  readonly kind: 'xensim' | 'c' | 'ocaml';
  readonly profile: Profile;
  readonly socket: string;
  /** The temp dir holding the socket and side files (removed by stop()). */
  readonly dir: string;
  readonly pid: number;
  /** DIR of --guest-dir (xensim) or the fake-ring dir (real daemons). */
  readonly guestDir?: string;
  /** For the real daemons: their fake-guest ring directory (XS_SHIM_RINGDIR). */
  readonly ringDir?: string;
  /** process.env plus XENSTORED_PATH for libxenstore clients. */
  readonly env: NodeJS.ProcessEnv;
  /** The daemon's stdout+stderr so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

export interface XensimOptions {
  profile?: Profile;
  /** Pass --guest-dir DIR/guests. */
  guestDir?: boolean;
  /** Pass --trace DIR/trace. */
  trace?: boolean;
  /** Extra options, e.g. the C xenstored quota options ['-Q', 'name=value']. */
  args?: string[];
}

const live = new Set<Daemon>();

process.on('exit', () => {
  // Last resort after a crashed test run: stop what we started, by PID.
  for (const d of live) {
    try {
      if (d.kind === 'xensim') process.kill(d.pid, 'SIGKILL');
      else spawnSync('sh', [path.join(ORACLE_DIR, 'stop.sh'), String(d.pid)], { stdio: 'ignore' });
    } catch { /* already gone */ }
  }
});

/** One request on a fresh connection; resolves true when a reply with our req_id arrives, false
 * when the connection fails or closes first (or after HANG_MS). */
export function pingSocket(socket: string, timeoutMs = HANG_MS): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection(socket);
    const rx = new XsWireDecoder('reject');
    const done = (ok: boolean) => { clearTimeout(t); s.destroy(); resolve(ok); };
    const t = setTimeout(() => done(false), timeoutMs);
    s.on('error', () => done(false));
    s.on('close', () => done(false));
    s.on('connect', () => {
      s.write(encodeMessage({ type: XsdSockmsgType.XS_DIRECTORY, req_id: 0x7e57, tx_id: 0,
        payload: nulJoin('/') }));
    });
    s.on('data', (b: Buffer) => {
      let off = 0;
      while (off < b.length) {
        off += rx.push(b, off);
        if (rx.step === XsDecodeStep.VIOLATION) return done(false);
        if (rx.step !== XsDecodeStep.MESSAGE) continue;
        const m = rx.message();
        if (m.req_id === 0x7e57 && m.type !== XsdSockmsgType.XS_WATCH_EVENT) return done(true);
      }
    });
  });
}

function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

const XENSIM_CLI = ['--import', './scripts/tsx-preload.mjs', 'sim/bin/xensim.mjs', 'xenstored'];

/** Starts `xensim xenstored` in the foreground as our child, and waits until its socket answers. */
export async function startXensim(opts: XensimOptions = {}): Promise<Daemon> {
  const profile = opts.profile ?? 'c';
  const dir = tempDir('xensim-xs-');
  const socket = path.join(dir, 'socket');
  const args = [...XENSIM_CLI, '--socket', socket, '--profile', profile];
  let guestDir: string | undefined;
  if (opts.guestDir) {
    guestDir = path.join(dir, 'guests');
    args.push('--guest-dir', guestDir);
  }
  if (opts.trace) args.push('--trace', path.join(dir, 'trace'));
  args.push(...(opts.args ?? []));

  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (b: Buffer) => { output += b.toString(); });
  child.stderr.on('data', (b: Buffer) => { output += b.toString(); });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  let spawnError: Error | undefined;
  child.on('error', (e) => { spawnError = e; });

  const daemon: Daemon = {
    kind: 'xensim', profile, socket, dir, pid: child.pid ?? -1, guestDir,
    env: { ...process.env, XENSTORED_PATH: socket },
    log: () => output,
    async stop() {
      live.delete(daemon);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  live.add(daemon);

  const cmdline = `node ${args.join(' ')}`;
  const hung = Date.now() + HANG_MS;
  for (;;) {
    if (spawnError || child.exitCode !== null || child.signalCode !== null) {
      await daemon.stop();
      throw new Error(`xensim xenstored exited before it was ready ` +
        `(${spawnError?.message ?? `code ${child.exitCode}, signal ${child.signalCode}`})\n` +
        `command: ${cmdline}\noutput:\n${output}`);
    }
    if (existsSync(socket) && await pingSocket(socket)) return daemon;
    if (Date.now() > hung) {
      await daemon.stop();
      throw new Error(`xensim xenstored not ready after ${HANG_MS / 1000} s: hung\n` +
        `command: ${cmdline}\noutput:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts the real C xenstored ('c') or oxenstored ('ocaml') through ../shared/oracle/start.sh. */
export async function startOracle(kind: Profile, serverArgs: string[] = []): Promise<Daemon> {
  requireOracle();
  requireTools(kind === 'c' ? 'xenstored' : 'oxenstored', 'xenstore-exists');
  const bin = process.env.XS_ORACLE_BIN ?? '/tmp/xs-oracle-bin';
  if (!existsSync(path.join(bin, 'xs-shim.so'))) requireTools('gcc', 'xenstore.h'); // start.sh builds it
  const dir = tempDir(`xs-oracle-${kind}-`);
  const socket = path.join(dir, 'socket');
  const args = [path.join(ORACLE_DIR, 'start.sh'), ...(kind === 'ocaml' ? ['--ocaml'] : []), socket,
    ...serverArgs];
  const r = await run('sh', args);
  const pid = Number(r.stdout.trim().split('\n').pop());
  if (r.code !== 0 || !Number.isInteger(pid) || pid <= 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`oracle start.sh failed (code ${r.code}):\n${r.stdout}${r.stderr}`);
  }
  const daemon: Daemon = {
    kind, profile: kind, socket, dir, pid, ringDir: `${socket}.rings`,
    env: { ...process.env, XENSTORED_PATH: socket },
    log: () => {
      try { return readFileSync(`${socket}.log`, 'utf8'); } catch { return ''; }
    },
    async stop() {
      live.delete(daemon);
      await run('sh', [path.join(ORACLE_DIR, 'stop.sh'), String(pid)]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  live.add(daemon);
  return daemon;
}

/**
 * The daemon under test for a profile. Normally xensim; with XENSIM_INTEROP_DAEMON=oracle the
 * real daemon of that profile instead (to check the harness itself: every interop test must pass
 * against the real daemons, except where a test needs xensim-only features such as --guest-dir).
 */
export function targetIsOracle(): boolean {
  return process.env.XENSIM_INTEROP_DAEMON === 'oracle';
}

export async function startTarget(profile: Profile = 'c', opts: Omit<XensimOptions, 'profile'> = {}):
Promise<Daemon> {
  if (targetIsOracle()) return startOracle(profile, opts.args ?? []);
  return startXensim({ ...opts, profile });
}

/** Stops daemons, ignoring ones that were never started. */
export async function stopAll(...ds: (Daemon | undefined)[]): Promise<void> {
  await Promise.all(ds.map((d) => d?.stop()));
}
