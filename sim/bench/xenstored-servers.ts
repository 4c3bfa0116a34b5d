// Starting and stopping the xenstored servers the benchmark compares:
//  - the reference daemons of ../shared/oracle (Debian's C xenstored or oxenstored, no hypervisor),
//  - xensim's own xenstored, as a child `node … sim/bin/xensim.mjs xenstored --socket PATH`.
// Every server started is registered for clean-up, so it is stopped on exit or error.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  REPO_ROOT, cmdlineOf, isAlive, makeTempDir, onCleanup, run, runSync, sleep,
} from './common.ts';

/** What can sit in a benchmark column. */
export type ServerKind = 'oracle-c' | 'oracle-ocaml' | 'xensim';
export const SERVER_KINDS: readonly ServerKind[] = ['oracle-c', 'oracle-ocaml', 'xensim'];

export interface ServerSpec {
  readonly kind: ServerKind;
  /** xensim's behaviour profile (`c` or `ocaml`); ignored by the oracle kinds. */
  readonly profile?: string;
}

export function serverLabel(spec: ServerSpec): string {
  switch (spec.kind) {
    case 'oracle-c': return 'C xenstored';
    case 'oracle-ocaml': return 'oxenstored';
    case 'xensim': return spec.profile && spec.profile !== 'c' ? `xensim (${spec.profile})` : 'xensim';
  }
}

export interface RunningServer {
  readonly spec: ServerSpec;
  readonly label: string;
  readonly socket: string;
  /** The server process itself (for xensim: the node process). */
  readonly pid: number;
  /** Environment for libxenstore clients of this server. */
  readonly clientEnv: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// The oracle and the Debian tools it needs

/** ../shared/oracle relative to the repo root (XS_ORACLE_DIR overrides). */
export const ORACLE_DIR = resolve(REPO_ROOT, process.env.XS_ORACLE_DIR ?? '../shared/oracle');
export const ORACLE_BIN = process.env.XS_ORACLE_BIN ?? '/tmp/xs-oracle-bin';
export const XS_BENCH = join(ORACLE_BIN, 'xs-bench');
const XENBIN = process.env.XENBIN ?? '/usr/lib/xen-4.17/bin';

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '/usr/bin:/bin').split(':').some((d) => d && existsSync(join(d, cmd)));
}

/**
 * Checks the Debian packages and oracle scripts the given columns need, and builds the oracle's
 * binaries (xs-shim.so, xs-bench) into $XS_ORACLE_BIN if they are missing. Throws a clear error.
 */
export async function prepareOracle(kinds: readonly ServerKind[]): Promise<void> {
  const missing = new Map<string, string>();
  const need = (ok: boolean, pkg: string, what: string): void => {
    if (!ok && !missing.has(pkg)) missing.set(pkg, what);
  };
  need(onPath('xenstore-exists'), 'xenstore-utils', 'xenstore-exists (readiness check)');
  if (kinds.includes('oracle-c')) need(existsSync(join(XENBIN, 'xenstored')), 'xen-utils-4.17', `${XENBIN}/xenstored`);
  if (kinds.includes('oracle-ocaml')) need(existsSync(join(XENBIN, 'oxenstored')), 'xen-utils-4.17', `${XENBIN}/oxenstored`);
  const built = existsSync(XS_BENCH) && existsSync(join(ORACLE_BIN, 'xs-shim.so'));
  if (!built) {
    need(onPath('gcc'), 'gcc', 'gcc (builds xs-bench and xs-shim.so)');
    need(existsSync('/usr/include/xenstore.h'), 'libxen-dev', '/usr/include/xenstore.h and libxenstore');
  }
  if (missing.size > 0) {
    const lines = [...missing].map(([pkg, what]) => `  ${pkg}: ${what}`).join('\n');
    throw new Error(
      `missing Debian packages for the xenstored benchmark:\n${lines}\n` +
      `install them with:\n  apt-get update && apt-get install -y --no-install-recommends ` +
      `${[...missing.keys()].join(' ')}`,
    );
  }
  for (const f of ['start.sh', 'stop.sh', 'build.sh']) {
    if (!existsSync(join(ORACLE_DIR, f))) {
      throw new Error(`oracle script ${join(ORACLE_DIR, f)} not found (expected ../shared/oracle ` +
        `next to the repository; set XS_ORACLE_DIR to override)`);
    }
  }
  if (!built) {
    const r = await run('sh', [join(ORACLE_DIR, 'build.sh')], { env: { ...process.env, XS_ORACLE_BIN: ORACLE_BIN } });
    if (r.code !== 0 || !existsSync(XS_BENCH)) {
      throw new Error(`building the oracle binaries failed (${join(ORACLE_DIR, 'build.sh')}):\n${r.stdout}${r.stderr}`);
    }
  }
}

/** The xensim daemon's entry point exists (it is being written concurrently). */
export function xensimDaemonPresent(): boolean {
  return existsSync(join(REPO_ROOT, 'domains/dom0/xenstored/cli.ts'));
}

// ---------------------------------------------------------------------------------------------
// Starting servers

async function answers(socket: string): Promise<boolean> {
  const r = await run('xenstore-exists', ['/'], {
    env: { ...process.env, XENSTORED_PATH: socket },
    timeoutMs: 2000,
  });
  return r.code === 0;
}

/** Stops an oracle server by PID with stop.sh (synchronous: usable in exit handlers). */
function stopOracleSync(pid: number): void {
  if (!isAlive(pid) || !cmdlineOf(pid).includes('xenstored')) return;
  const r = runSync('sh', [join(ORACLE_DIR, 'stop.sh'), String(pid)]);
  if (r.code !== 0 && isAlive(pid) && cmdlineOf(pid).includes('xenstored')) process.kill(pid, 'SIGKILL');
}

async function startOracle(spec: ServerSpec, tag: string): Promise<RunningServer> {
  const dir = makeTempDir(tag);
  const socket = join(dir.path, 'socket');
  const args = [join(ORACLE_DIR, 'start.sh'), ...(spec.kind === 'oracle-ocaml' ? ['--ocaml'] : []), socket];
  const env = { ...process.env, XS_ORACLE_BIN: ORACLE_BIN };
  const r = await run('sh', args, { env, timeoutMs: 30000 });
  const pid = Number(r.stdout.trim().split('\n').pop());
  if (r.code !== 0 || !Number.isInteger(pid) || pid <= 0) {
    // start.sh may have written the PID file before failing; stop what it started.
    try {
      const p = Number(readFileSync(`${socket}.pid`, 'latin1').trim());
      if (p > 0) stopOracleSync(p);
    } catch { /* nothing started */ }
    dir.remove();
    throw new Error(`${serverLabel(spec)} did not start (start.sh exit ${r.code}):\n${r.stdout}${r.stderr}`);
  }
  const stopNow = onCleanup(() => stopOracleSync(pid));
  return {
    spec,
    label: serverLabel(spec),
    socket,
    pid,
    clientEnv: { ...process.env, XENSTORED_PATH: socket },
    stop: async () => {
      stopNow();
      dir.remove();
      await Promise.resolve();
    },
  };
}

async function startXensim(spec: ServerSpec, tag: string): Promise<RunningServer> {
  if (!xensimDaemonPresent()) {
    throw new Error(
      `xensim's xenstored is not in this checkout yet (domains/dom0/xenstored/cli.ts is missing).\n` +
      `Benchmark a stand-in instead, e.g. \`npm run bench -- --subject oracle-ocaml\`.`,
    );
  }
  const dir = makeTempDir(tag);
  const socket = join(dir.path, 'socket');
  const logPath = join(dir.path, 'xensim.log');
  const logFd = openSync(logPath, 'w');
  const args = ['--import', './scripts/tsx-preload.mjs', 'sim/bin/xensim.mjs', 'xenstored', '--socket', socket];
  if (spec.profile && spec.profile !== 'c') args.push('--profile', spec.profile);
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not spawn node for xensim xenstored');
  let exited: string | undefined;
  child.on('exit', (code, sig) => { exited = sig ?? `exit code ${code}`; });
  child.on('error', (e) => { exited = String(e); });
  const kill = onCleanup(() => {
    if (exited === undefined && isAlive(pid)) child.kill('SIGKILL');
  });
  const log = (): string => {
    try {
      return readFileSync(logPath, 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      return '';
    }
  };
  const fail = (why: string): never => {
    const text = log();
    kill();
    dir.remove();
    throw new Error(`xensim xenstored ${why}; \`node ${args.join(' ')}\`${text ? `; its output:\n${text}` : ''}`);
  };
  // Ready when the socket answers; tsx start-up takes a few seconds on this machine.
  const deadline = Date.now() + 60000;
  for (;;) {
    if (exited !== undefined) fail(`exited during start-up (${exited})`);
    if (existsSync(socket) && (await answers(socket))) break;
    if (Date.now() > deadline) fail('did not answer on its socket within 60 s');
    await sleep(100);
  }
  return {
    spec,
    label: serverLabel(spec),
    socket,
    pid,
    clientEnv: { ...process.env, XENSTORED_PATH: socket },
    stop: async () => {
      if (exited === undefined) {
        child.kill('SIGTERM');
        for (let i = 0; i < 50 && exited === undefined; i++) await sleep(100);
      }
      kill();
      dir.remove();
    },
  };
}

/** Starts a server of the given kind in a fresh temp dir; it answers requests on return. */
export function startServer(spec: ServerSpec, tag: string): Promise<RunningServer> {
  return spec.kind === 'xensim' ? startXensim(spec, tag) : startOracle(spec, tag);
}
