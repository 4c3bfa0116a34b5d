// `xensim up`: boots a host - dom0 running xenstored (on a Unix socket for Debian's tools), its
// toolstack and backends, and guests - and keeps it running until interrupted.
//
//   xensim up CONFIG   the guests a YAML host config describes (sim/config.ts), created with xl,
//                      and a control socket for `xensim xl` (sim/xl-control.ts)
//                      (and, with --migrate-listen, a TCP port taking `xl migrate` streams)
//   xensim up          --guests N idle guests (no devices, no toolstack verbs), as before
import { createWriteStream, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import { HostRuntime, type TraceEvent } from './host-runtime.ts';
import { ConfigError, type HostConfig, loadHostConfig, tooManyGuests } from './config.ts';
import { Xl } from './xl.ts';
import { DEFAULT_CONTROL, XlControl, XlControlServer, XlError } from './xl-control.ts';
import { formatList } from './xl-cli.ts';
import { backendPath, frontendPath } from '../domains/dom0/toolstack/libxl.ts';
import { socketPathBusy } from './socket-path.ts';
import { MigrateListener, parseListenAddress, tcpUrl } from './migrate-listener.ts';

/** '.ts' when running the sources under tsx, '.js' when running dist/: domains load the same kind. */
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const IDLE = new URL(`../domains/domU/idle${EXT}`, import.meta.url).href;
const DEFAULT_SOCKET = '/tmp/xensim/xenstored.sock';

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`not a non-negative integer: ${v}`);
  return n;
};

interface UpOptions {
  socket?: string; control?: string; guests?: number; seed?: number; lockstep?: boolean; pool?: number;
  profile?: 'c' | 'ocaml'; trace?: string; migrateListen?: string; migrateAllowRemote?: boolean;
  xenstoreDomain?: boolean; seedReplicas?: number;
}

/** A mistake on the command line or in the config: printed as one message, exit status 1. */
class UsageError extends Error {}

export function registerUp(program: Command): void {
  program
    .command('up')
    .description('boot a host: dom0 with xenstored and the toolstack, and guests; Ctrl-C stops it')
    .argument('[config]', 'a host config (YAML): seed, mode, guests (see scenarios/hosts/)')
    .option('--socket <path>', `dom0's xenstored socket (XENSTORED_PATH for Debian's tools); runs the host free (default ${DEFAULT_SOCKET} when free)`)
    .option('--control <path>', `with CONFIG: the control socket for \`xensim xl\` (default $XENSIM_CONTROL, else SOCKET.xl, else ${DEFAULT_CONTROL})`)
    .option('--guests <n>', 'without CONFIG: number of idle guests (default 2)', int)
    .option('--seed <n>', "seed for the run (and, in lockstep, the scheduler); overrides the config's", int)
    .option('--lockstep', 'run one vCPU at a time in seeded order (replayable; no xenstored socket)')
    .option('--pool <n>', 'pack guests onto N shared threads (free-running)', int)
    .option('--profile <profile>', 'xenstored behaviour: c or ocaml')
    .option('--xenstore-domain', "run xenstored in a xenstore domain of its own (init-xenstore-domain), not in dom0: dom0's tools reach it over dom0's ring, and the socket is dom0's /dev/xen/xenbus")
    .option('--seed-replicas <n>', "the seed's replication (not in Xen): N standbys follow dom0's xenstored and one takes over if it dies (default 0)", int)
    .option('--trace <file>', 'write every hypercall, event-channel and grant operation as JSON lines')
    .option('--migrate-listen <addr:port>', 'with CONFIG: receive `xl migrate` streams on this TCP address (port 0 picks one, printed as MIGRATE_LISTEN=tcp://ADDR:PORT); loopback only: the stream is unauthenticated and creates domains')
    .option('--migrate-allow-remote', '--migrate-listen may bind a non-loopback address (anyone reaching it can create domains here)')
    .addHelpText('after', `
With CONFIG the host runs free (real time, guests on their own threads) when --socket is given
or the config says mode: free, and in inline lockstep (one thread, replayable from the seed, no
xenstored socket) otherwise or with --lockstep. Without CONFIG it runs free on ${DEFAULT_SOCKET}
unless --lockstep, as it always did.`)
    .action(async (config: string | undefined, o: UpOptions) => {
      try {
        if (config === undefined) await upGuests(o);
        else await upConfig(config, o);
      } catch (e) {
        if (!(e instanceof UsageError || e instanceof ConfigError || e instanceof XlError)) throw e;
        process.stderr.write(`xensim up: ${e.message}\n`);
        process.exitCode = 1;
      }
    });
}

function traceSink(file: string | undefined): { sink: ((e: TraceEvent) => void) | false; end(): Promise<void> } {
  if (!file) return { sink: false, end: async () => undefined };
  const out = createWriteStream(file);
  return {
    sink: (e: TraceEvent) => void out.write(`${JSON.stringify(e)}\n`),
    end: () => new Promise<void>((r) => out.end(() => r())),
  };
}

const unlinkQuiet = (path: string | undefined): void => {
  if (!path) return;
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
};

/** Refuses to boot onto sockets that are not free: a live host's, or paths that are not sockets. */
async function claimSockets(paths: readonly (string | undefined)[]): Promise<void> {
  for (const p of paths) {
    const busy = p === undefined ? undefined : await socketPathBusy(p);
    if (busy) throw new UsageError(busy);
  }
}

/** Runs `stop` once on SIGINT or SIGTERM, then exits. */
function onSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (): void => {
    if (stopping) return;
    stopping = true;
    void stop().finally(() => process.exit(0));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/** The old form: dom0 and N idle guests. */
async function upGuests(o: UpOptions): Promise<void> {
  if (o.control) throw new UsageError('--control serves a host booted from a CONFIG');
  if (o.migrateListen !== undefined) throw new UsageError('--migrate-listen serves a host booted from a CONFIG');
  if (o.lockstep && o.pool !== undefined) throw new UsageError('--pool runs guests free; it does not combine with --lockstep');
  const guests = o.guests ?? 2;
  const socket = o.socket ?? DEFAULT_SOCKET;
  const trace = traceSink(o.trace);
  const rt = new HostRuntime({ seed: o.seed ?? 1, mode: o.lockstep ? 'lockstep' : 'free', pool: o.pool, trace: trace.sink });
  if (!o.lockstep) await claimSockets([socket]);
  mkdirSync(dirname(socket), { recursive: true });
  // In lockstep the socket would let outside timing in; dom0 tools then see a frozen host.
  await rt.bootDom0({ socketPath: o.lockstep ? undefined : socket, profile: o.profile ?? 'c', xenstoreDomain: o.xenstoreDomain, seedReplicas: o.seedReplicas });
  const first = (rt.xenstoreDomid ?? 0) + 1;
  for (let id = first; id < first + guests; id++) await rt.createGuest({ domid: id, program: { module: IDLE } });
  await rt.quiesce();
  const where = o.lockstep ? '(lockstep: no socket)' : `XENSTORED_PATH=${socket}`;
  const xsd = rt.xenstoreDomid === undefined ? '' : `, xenstore domain ${rt.xenstoreDomid}`;
  process.stdout.write(`xensim: host up, dom0${xsd} and ${guests} guest(s); ${where}; Ctrl-C to stop\n`);
  onSignals(async () => {
    await rt.shutdown();
    await trace.end();
  });
}

/** How a CONFIG host runs, from the flags and the file (see the help text). */
export function upMode(cfg: HostConfig, o: UpOptions): { mode: 'free' | 'lockstep'; seed: number; socket?: string; control: string } {
  const mode = o.lockstep ? 'lockstep' : cfg.mode ?? (o.socket !== undefined || o.pool !== undefined ? 'free' : 'lockstep');
  if (mode === 'lockstep' && o.socket !== undefined) {
    throw new UsageError(`a lockstep host has no xenstored socket (outside clients would break replay): drop --socket, or run it free (mode: free)`);
  }
  if (mode === 'lockstep' && o.pool !== undefined) throw new UsageError('--pool runs guests free; it does not combine with lockstep');
  const socket = mode === 'free' ? o.socket ?? DEFAULT_SOCKET : undefined;
  const control = o.control ?? process.env.XENSIM_CONTROL ?? (o.socket !== undefined ? `${o.socket}.xl` : DEFAULT_CONTROL);
  return { mode, seed: o.seed ?? cfg.seed ?? 1, socket, control };
}

const STATE_NAMES = ['Unknown', 'Initialising', 'InitWait', 'Initialised', 'Connected', 'Closing', 'Closed', 'Reconfiguring', 'Reconfigured'];

async function upConfig(file: string, o: UpOptions): Promise<void> {
  if (o.guests !== undefined) throw new UsageError('--guests does not combine with a CONFIG (its guests: list says which guests)');
  const cfg = loadHostConfig(file);
  // The config's own check counts guests only; a xenstore domain takes one domid more.
  const many = o.xenstoreDomain ? tooManyGuests(cfg.guests.length, 1) : undefined;
  if (many) throw new UsageError(`${file}: guests: ${many} (with --xenstore-domain)`);
  const { mode, seed, socket, control } = upMode(cfg, o);
  let listenAt;
  try {
    listenAt = o.migrateListen === undefined ? undefined : parseListenAddress(o.migrateListen, o.migrateAllowRemote);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  await claimSockets([socket, control]);
  const trace = traceSink(o.trace);
  const rt = new HostRuntime(mode === 'free'
    ? { seed, mode, pool: o.pool, trace: trace.sink }
    : { seed, mode, inline: true, trace: trace.sink });
  if (socket) mkdirSync(dirname(socket), { recursive: true });
  mkdirSync(dirname(control), { recursive: true });
  const log = (s: string): void => void process.stderr.write(`xensim up: ${s}\n`);
  let server: XlControlServer | undefined;
  let listener: MigrateListener | undefined;
  // Only a socket this host bound is removed when it stops.
  let ownSocket = false;
  const stop = async (): Promise<void> => {
    await listener?.close();
    await server?.close();
    await rt.shutdown();
    if (ownSocket) unlinkQuiet(socket);
    await trace.end();
  };
  try {
    await rt.bootDom0({ socketPath: socket, profile: o.profile ?? cfg.profile ?? 'c', xenstoreDomain: o.xenstoreDomain, seedReplicas: o.seedReplicas });
    ownSocket = socket !== undefined;
    const xl = new Xl(rt);
    const ctl = new XlControl(xl);
    for (const [i, g] of cfg.guests.entries()) {
      try {
        await ctl.create(g);
      } catch (e) {
        throw new UsageError(`${file}: guests[${i}] (${g.name}): xl create failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    // Free-running guests connect their devices in their own time: wait for both ends (10 s).
    const devices = await deviceStates(xl, ctl, mode === 'free' ? 10e9 : 0);
    server = new XlControlServer(control, ctl, log);
    await server.listen();
    let listening: string | undefined;
    if (listenAt) {
      listener = new MigrateListener(listenAt, ctl, log);
      try {
        listening = tcpUrl(await listener.listen());
      } catch (e) {
        listener = undefined;
        throw new UsageError(`--migrate-listen ${o.migrateListen}: ${(e as Error).message}`);
      }
    }
    const out: string[] = [];
    out.push(`xensim: host up from ${file}: ${mode === 'free' ? 'free-running' : 'lockstep (inline)'}, seed ${seed}, dom0 and ${cfg.guests.length} guest(s)`);
    out.push(formatList(ctl.list()).trimEnd());
    out.push('Devices (frontend/backend state; 4 = Connected):');
    for (const d of devices) out.push(`  ${d.name.padEnd(16)} ${d.domid.toString().padStart(3)}  ${d.devices.join('  ') || '(none)'}`);
    if (socket) out.push(`XENSTORED_PATH=${socket}`);
    else out.push("(lockstep: no xenstored socket; `xensim xl xenstore-ls` shows the tree)");
    out.push(`XENSIM_CONTROL=${control}`);
    if (listening) out.push(`MIGRATE_LISTEN=${listening}`);
    out.push('xensim: ready; Ctrl-C to stop');
    process.stdout.write(`${out.join('\n')}\n`);
  } catch (e) {
    await stop();
    throw e;
  }
  onSignals(stop);
}

/** Each guest's devices as `vbd xvda 4/4`: frontend and backend states (waiting up to `waitNs` in all). */
async function deviceStates(xl: Xl, ctl: XlControl, waitNs: number): Promise<{ name: string; domid: number; devices: string[] }[]> {
  const out: { name: string; domid: number; devices: string[] }[] = [];
  const started = Date.now();
  for (const d of [...xl.domains.values()].sort((a, b) => a.domid - b.domid)) {
    const devs = (await xl.devices(d.domid)).filter((x) => x.kind !== 'console');
    for (const dev of devs) {
      for (const p of [frontendPath(dev), backendPath(dev)]) {
        const left = waitNs - (Date.now() - started) * 1e6;
        if (left > 0) await xl.rt.toolstack('wait', { path: `${p}/state`, value: '4', timeoutNs: left });
      }
    }
    await xl.rt.quiesce();
    const show = (fe: number, be: number): string => (fe === 4 && be === 4 ? '4/4' : `${fe}/${be} (${STATE_NAMES[fe] ?? fe}/${STATE_NAMES[be] ?? be})`);
    const blk = (await ctl.blockList(d.domid)).map((b) => `vbd ${b.dev} ${show(b.state, b.beState)}`);
    const nic = (await ctl.nicList(d.domid)).map((n) => `vif ${n.idx} ${show(n.state, n.beState)}`);
    out.push({ name: d.cfg.name, domid: d.domid, devices: [...blk, ...nic] });
  }
  return out;
}
