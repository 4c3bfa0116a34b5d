// Dom0's program: xenstored serving every introduced domain over its ring (and dom0 tools over
// a Unix socket, when asked), plus the toolstack's side of domain introduction and death - or,
// with a xenstore domain, dom0 as that xenstored's ring client (xenstoreDomainDom0).
import type { MessagePort } from 'node:worker_threads';
import { decodeHeader, encodeMessage, nulJoin, XsdSockmsgType } from '../../hypervisor/public/io/xs_wire.ts';
import { GNTTAB_RESERVED_XENSTORE } from '../../hypervisor/public/grant_table.ts';
import type { Kernel } from '../kernel/kernel.ts';
import { XenbusRing } from '../kernel/xenbus-comms.ts';
import { XenbusDevFile } from '../kernel/xenbus-dev-frontend.ts';
import { XsState } from '../kernel/xenbus-xs.ts';
import { XsError, XsHandle } from '../libs/store/xs.ts';
import type { Profile, XenstoredFaults } from './xenstored/core.ts';
import { XenstoredDaemon } from './xenstored/daemon.ts';
import { DomainRings, domainExists, traceDaemon } from './xenstored/domain-rings.ts';
import { serveXenbusDevice } from './xenbus-device-socket.ts';
import { XenstoredServer } from './xenstored/unix-socket.ts';
import { connectLocal } from './xenstored/local-connection.ts';
import { exportSeedState, importSeedState } from './xenstored/seed-migration.ts';
import { XenbusBus, type XenbusQuirks } from '../kernel/xenbus-probe.ts';
import { Xenwatch } from '../kernel/xenbus-watch.ts';
import { Blkback, type BlkbackQuirks } from './backends/blkback.ts';
import { DiskImages } from './backends/disk-image.ts';
import { Netback, type NetbackQuirks } from './backends/netback.ts';
import { Network } from './backends/bridge.ts';
import { Toolstack, type ToolstackQuirks } from './toolstack/toolstack.ts';
import { Xenopsd, type XenopsdQuirks } from './toolstack/xenopsd.ts';

export interface Dom0Args {
  readonly profile?: Profile;
  /**
   * Dom0's event-channel ABI: 'fifo' (default), as a Linux dom0 on Xen >= 4.4 runs, so the host
   * holds more than 4096 ports' worth of guests; '2l' keeps the 2-level ABI (4095 ports).
   */
  readonly evtchn?: 'fifo' | '2l';
  /**
   * xenstored runs in a xenstore domain of its own (xencommons' XENSTORETYPE=domain, set up by
   * init-xenstore-domain), not in dom0: dom0's kernel and tools reach it over dom0's store ring.
   * The host builds that domain (HostRuntime.bootDom0).
   */
  readonly xenstoreDomain?: boolean;
  /**
   * Serve dom0 tools on this Unix socket too (free-running only): xenstored's socket, or with a
   * xenstore domain dom0's /dev/xen/xenbus (there is no xenstored in dom0 to connect to).
   */
  readonly socketPath?: string;
  /** Send every xenstore message to the simulator's trace. */
  readonly trace?: boolean;
  /**
   * Preemption faults (the scenario engine's knobs): dom0's watch deliveries and toolstack
   * requests may be delayed, drawn from dom0's seeded PRNG.
   */
  readonly jitter?: { readonly p: number; readonly maxNs: number };
  /** Faults and buggy variants of xenstored (the scenario engine's knobs). */
  readonly xenstored?: XenstoredFaults;
  /**
   * The seed's replication (not Xen; `--seed-replicas N`): N standbys follow xenstored over a
   * shared-memory log and one takes over when it dies. Default 0.
   */
  readonly seedReplicas?: number;
  /**
   * Where absolute disk targets (`target=/...`) live on this host: a directory standing for shared
   * storage mounted at / (hosts given the same one share images). Default: this machine's paths.
   */
  readonly storageRoot?: string;
  /** Run the backend drivers and the toolstack (xl create and friends); default on. */
  readonly devices?: boolean;
  /** Also run a xenopsd-like toolstack (its verbs: VM_create, VM_build, VM_destroy, xenopsd-state). */
  readonly xenopsd?: boolean;
  /** Buggy variants of known races and fault knobs, by component. */
  readonly quirks?: {
    readonly xenbus?: XenbusQuirks; readonly blkback?: BlkbackQuirks; readonly netback?: NetbackQuirks; readonly toolstack?: ToolstackQuirks;
    readonly xenopsd?: XenopsdQuirks;
  };
}

/**
 * The fault that kills dom0's xenstored: at once, or while it handles the next request from a
 * domain; with `restartAfterNs`, a new daemon starts from its last state that long after.
 */
export interface XenstoredCrashCommand {
  readonly cmd: 'xenstored-crash';
  readonly whileHandlingRequestFrom?: number;
  readonly restartAfterNs?: number;
}

/** Messages the simulator sends dom0's toolstack. */
export type Dom0Command =
  | { cmd: 'introduce'; domid: number; mfn: number; port: number }
  | { cmd: 'release'; domid: number }
  /** A toolstack write (with an ACL), e.g. to set up shared nodes for a scenario. */
  | { cmd: 'write'; domid: number; path: string; value: string; perms: string[] };

/** How long the standbys' watchdog takes to see the primary gone (a missed 10 ms heartbeat). */
const FAILOVER_AFTER_NS = 10e6;

export async function main(k: Kernel, args: Dom0Args, control: MessagePort): Promise<void> {
  // Linux's xen_init_IRQ picks FIFO before it binds anything (events pending before the switch
  // would wait for their array page).
  if ((args.evtchn ?? 'fifo') === 'fifo') k.initFifo();
  if (args.xenstoreDomain) {
    await xenstoreDomainDom0(k, args, control);
    return;
  }
  const daemon = new XenstoredDaemon({
    profile: args.profile ?? 'c', faults: args.xenstored,
    // find_or_alloc_existing_domain() asks the hypervisor (xc_domain_getinfo): an ACL entry for a
    // domid without a domain is flagged ignored at SET_PERMS, so a later domain cannot inherit it
    // (XSA-417). Without this every domid "existed" and the scenario xsa-417 failed.
    domainExists: (domid) => domainExists(k, domid),
    // A live update (CONTROL live-update from dom0's tools) waits for transactions in the
    // kernel's time; its state stream stays in memory (dom0 has no rundir here).
    clock: () => Math.floor(k.now() / 1e9),
    clockMs: () => Math.floor(k.now() / 1e6),
    timer: (fn, ms) => void k.setTimer(ms * 1e6, fn),
    seedReplicas: args.seedReplicas,
  });
  // In lockstep each standby is a task of its own: it reads the log when the scheduler lets it,
  // so schedules interleave the standbys with the primary (and replay exactly).
  const point = k.point;
  if (daemon.replication !== undefined && point !== undefined) {
    const wake: (() => void)[] = [];
    const hostStandbys = (): void => {
      daemon.replication!.onPublish = () => {
        for (const w of wake.splice(0)) w();
      };
    };
    hostStandbys();
    daemon.onReplicationRestarted = hostStandbys;
    for (let i = 0; i < args.seedReplicas!; i++) {
      void (async () => {
        for (;;) {
          await new Promise<void>((r) => wake.push(r));
          await point(`xenstored standby ${i}`);
          // The primary may have died meanwhile: the one taking over reads the rest itself.
          if (daemon.crashed) continue;
          try {
            daemon.replication!.standbys[i].pump();
          } catch (e) {
            // A standby that cannot follow the log (a replication bug) says so and stops.
            k.trace({ kind: 'oops', where: `xenstored standby ${i}`, error: e instanceof Error ? e.message : String(e) });
            return;
          }
        }
      })();
    }
  }
  // The instance changes with a live update: always daemon.xs.
  if (args.trace) traceDaemon(k, daemon);
  if (args.socketPath) await new XenstoredServer({ socketPath: args.socketPath, profile: args.profile }, daemon).listen();

  // The toolstack's own privileged connection (libxl's xs handle).
  const tool = daemon.xs.connectSocket();
  let reqId = 1;
  const replies: Uint8Array[] = [];
  daemon.attach(tool, { send: (m) => void replies.push(encodeMessage(m)), flush: () => undefined, ended: () => undefined });
  const toolSend = (type: XsdSockmsgType, payload: Uint8Array): void => {
    daemon.input(tool, { type, req_id: reqId++, tx_id: 0, payload });
  };
  const toolRequest = (type: XsdSockmsgType, ...parts: string[]): void => toolSend(type, nulJoin(...parts));
  /** XS_WRITE: the value follows the path's NUL and has none of its own. */
  const toolWrite = (path: string, value: string): void =>
    toolSend(XsdSockmsgType.XS_WRITE, Buffer.concat([nulJoin(path), Buffer.from(value, 'latin1')]));

  const rings = new DomainRings(k, daemon, args.trace ?? false);
  rings.start();
  rings.bindDomExc();

  // The backend domain's kernel xenbus and the toolstack: each its own xenstore connection, and
  // each a task of its own in lockstep: the kernel's xenbus (its reader and xenwatch threads), the
  // toolstack (xl), the hotplug scripts it runs.
  const local = (name: string, opts?: { untraced?: boolean; onConnection?: (conn: number) => void }) => {
    const h = connectLocal(daemon, name, opts);
    h.sched = k.point;
    return h;
  };
  let watchConn: number | undefined;
  const { toolstack, xenopsd } = await startServices(k, args, control, {
    kernel: () => {
      const xs = local('xenbus');
      return { xs, watch: new Xenwatch(xs, 'be') };
    },
    process: (name) => local(name, name === 'xenopsd watch' ? { onConnection: (c) => (watchConn = c) } : undefined),
    inspector: () => connectLocal(daemon, 'inspect', { untraced: true }),
    xenopsdWatches: () => {
      const c = watchConn === undefined ? undefined : daemon.xs.connections.get(watchConn);
      return c && { conn: c.id, watches: c.watches.map((w) => ({ path: w.node, token: w.token })) };
    },
  });

  // xenstored dies (a fault), and, when asked, is started again after a while (as systemd's
  // Restart= with RestartSec would): the new process maps every ring its last state names.
  let restartAfterNs: number | undefined;
  const restart = (how: 'restart' | 'failover'): void => rings.restart(how);
  daemon.onCrash = () => {
    k.trace({ kind: 'fault', fault: 'xenstored-crash' });
    // With standbys, one takes over once their watchdog has seen the primary gone.
    if (daemon.replication !== undefined) k.setTimer(FAILOVER_AFTER_NS, () => restart('failover'));
    else if (restartAfterNs !== undefined) k.setTimer(restartAfterNs, () => restart('restart'));
  };
  control.on('message', (m: Dom0Command | { cmd: 'toolstack'; id: number; op: string; args: unknown } | XenstoredCrashCommand) => {
    if (m.cmd === 'xenstored-crash') {
      restartAfterNs = m.restartAfterNs;
      daemon.crash({ whileHandlingRequestFrom: m.whileHandlingRequestFrom });
      control.postMessage({ cmd: 'xenstored-crashd', domid: 0 });
      return;
    }
    if (m.cmd === 'toolstack' && (m.op === 'xenstore-seed-export' || m.op === 'xenstore-seed-import')) {
      // The seed's migration of a guest's xenstore state (not Xen: xenstored/seed-migration.ts),
      // which only xenstored itself can take out and put back.
      const a = m.args as { domid: number; state?: Uint8Array };
      try {
        const result = m.op === 'xenstore-seed-export' ? exportSeedState(daemon.xs, a.domid) : importSeedState(daemon.xs, a.domid, a.state ?? new Uint8Array(0));
        control.postMessage({ cmd: 'toolstackd', id: m.id, result });
      } catch (e) {
        control.postMessage({ cmd: 'toolstackd', id: m.id, error: e instanceof Error ? e.message : String(e) });
      }
      return;
    }
    if (m.cmd === 'toolstack') {
      callService(m, { toolstack, xenopsd }, control);
      return;
    }
    if (m.cmd === 'introduce') {
      // libxl__domain_make: the guest's home (dom0-owned, guest-readable) and its writable data/.
      const home = `/local/domain/${m.domid}`;
      toolWrite(home, '');
      toolRequest(XsdSockmsgType.XS_SET_PERMS, home, 'n0', `r${m.domid}`);
      toolWrite(`${home}/data`, '');
      toolRequest(XsdSockmsgType.XS_SET_PERMS, `${home}/data`, `n${m.domid}`);
      toolRequest(XsdSockmsgType.XS_INTRODUCE, String(m.domid), String(m.mfn), String(m.port));
      const last = replies.at(-1);
      if (last && decodeHeader(last).type === XsdSockmsgType.XS_ERROR) {
        // The domain is not introduced (dom0's ports may have run out): as libxl's failed create,
        // take away what was built for it, and say why.
        const error = Buffer.from(last.subarray(16)).toString('latin1').replace(/\0$/, '');
        toolRequest(XsdSockmsgType.XS_RM, home);
        control.postMessage({ cmd: 'introduced', domid: m.domid, error, reply: replies.splice(0).map((b) => Buffer.from(b).toString('latin1')) });
        return;
      }
    } else if (m.cmd === 'write') {
      toolWrite(m.path, m.value);
      toolRequest(XsdSockmsgType.XS_SET_PERMS, m.path, ...m.perms);
    } else {
      toolRequest(XsdSockmsgType.XS_RELEASE, String(m.domid));
    }
    control.postMessage({ cmd: `${m.cmd}d`, domid: m.domid, reply: replies.splice(0).map((b) => Buffer.from(b).toString('latin1')) });
  });
  control.postMessage({ cmd: 'ready' });
}

/**
 * How dom0's kernel and processes reach xenstore: connections of their own to a xenstored in
 * dom0, or (a xenstore domain) the kernel's one ring and /dev/xen/xenbus files over it.
 */
interface Dom0Store {
  /** The kernel's xenbus connection and its watch thread (xenwatch). */
  kernel(): { xs: XsHandle; watch: Xenwatch };
  /** A user process's connection. */
  process(name: string): XsHandle;
  /** The simulator's own look at the tree (the toolstack's dump with quiet). */
  inspector(): XsHandle;
  /** The watches xenopsd's watch connection holds, as xenstored knows them (when it can tell). */
  xenopsdWatches(): { conn: number; watches: { path: string; token: string }[] } | undefined;
}

interface Dom0Services {
  readonly toolstack: Toolstack | undefined;
  readonly xenopsd: Xenopsd | undefined;
}

/**
 * Dom0's backend drivers and toolstack, then xenopsd when asked: the kernel's backend bus on its
 * xenbus connection, each process a task of its own in lockstep.
 */
async function startServices(k: Kernel, args: Dom0Args, control: MessagePort, store: Dom0Store): Promise<Dom0Services> {
  const toolstack = args.devices === false ? undefined : await (async () => {
    const images = new DiskImages(args.storageRoot);
    const network = new Network();
    k.jitter = args.jitter;
    const { xs: bexs, watch: bewatch } = store.kernel();
    bewatch.sched = k.point;
    if (args.jitter) bewatch.beforeDispatch = () => k.preempt();
    bewatch.onError = (e) => k.trace({ kind: 'oops', where: 'xenwatch', error: e instanceof Error ? e.message : String(e) });
    const bus = new XenbusBus(k, bexs, { role: 'backend', quirks: args.quirks?.xenbus, trace: (ev) => k.trace(ev) }, bewatch);
    bus.register(new Blkback(images, args.quirks?.blkback));
    bus.register(new Netback(network, args.quirks?.netback));
    await bus.start();
    const xlxs = store.process('xl');
    // The toolstack is a user process: it can be descheduled before any request.
    if (args.jitter) xlxs.beforeRequest = () => k.preempt();
    const ts = new Toolstack(k, xlxs, images, bus, control, args.quirks?.toolstack, network, store.inspector(), store.process('hotplug'));
    await ts.start();
    return ts;
  })();
  // xenopsd: its worker's connection and its watch thread's, each a task of its own.
  const xenopsd = args.xenopsd !== true ? undefined : await (async () => {
    const watchXs = store.process('xenopsd watch');
    const xo = new Xenopsd(k, store.process('xenopsd'), watchXs, args.quirks?.xenopsd, () => store.xenopsdWatches());
    await xo.start();
    return xo;
  })();
  return { toolstack, xenopsd };
}

/** A toolstack or xenopsd verb from the simulator's xl; the answer goes back by message. */
function callService(m: { id: number; op: string; args: unknown }, services: Dom0Services, control: MessagePort): void {
  const xenopsdVerb = m.op.startsWith('VM_') || m.op.startsWith('xenopsd');
  const service = xenopsdVerb ? services.xenopsd : services.toolstack;
  if (!service) {
    control.postMessage({ cmd: 'toolstackd', id: m.id, error: xenopsdVerb ? 'dom0 runs without xenopsd' : 'dom0 runs without a toolstack' });
    return;
  }
  service.call(m.op, m.args).then(
    (result) => control.postMessage({ cmd: 'toolstackd', id: m.id, result }),
    (e: unknown) => control.postMessage({ cmd: 'toolstackd', id: m.id, error: e instanceof Error ? e.message : String(e) }),
  );
}

/** init-xenstore-domain's IOCTL_XENBUS_BACKEND_SETUP: the domid dom0's kernel sets the store ring up for. */
export interface XenbusBackendSetupCommand {
  readonly cmd: 'xenbus-backend-setup';
  readonly domid: number;
  /** init-xenstore-domain's --name, which it writes to the domain's name node. */
  readonly name: string;
}

/**
 * Dom0 when xenstored runs in a xenstore domain (xencommons' XENSTORETYPE=domain). Its kernel
 * (XS_LOCAL) has a store page of its own; init-xenstore-domain's IOCTL_XENBUS_BACKEND_SETUP on
 * /dev/xen/xenbus_backend allocates an unbound port for the xenstore domain and grants it that
 * page as GNTTAB_RESERVED_XENSTORE; the port goes to the new domain's xenstored (--event). The
 * kernel's xenbus waits for xenstored's first event on it (xenstored_ready), then the backends
 * probe and the tools - /dev/xen/xenbus files over the kernel's one connection - start.
 * init-xenstore-domain ends by writing /tool/xenstored/domid and the domain's name.
 */
async function xenstoreDomainDom0(k: Kernel, args: Dom0Args, control: MessagePort): Promise<void> {
  const storePage = k.allocPage();
  const setup = await new Promise<XenbusBackendSetupCommand>((resolve) => {
    const on = (m: { cmd: string }): void => {
      if (m.cmd !== 'xenbus-backend-setup') return;
      control.off('message', on);
      resolve(m as XenbusBackendSetupCommand);
    };
    control.on('message', on);
    // xencommons: XENSTORETYPE=domain, so init-xenstore-domain rather than xenstored.
    control.postMessage({ cmd: 'init-xenstore-domain' });
  });
  // xenbus_backend_ioctl -> xenbus_alloc(): the port and the grant, for the xenstore domain.
  const port = k.allocUnbound(setup.domid);
  k.grantAccess(GNTTAB_RESERVED_XENSTORE, setup.domid, storePage.gfn, false);
  const ring = new XenbusRing(storePage.bytes, () => k.notify(port));
  let ready!: () => void;
  const xenstoredReady = new Promise<void>((resolve) => (ready = resolve));
  // wake_waiting(): the first event from xenstored says it serves this ring.
  k.on(port, () => {
    ready();
    ring.onEvent();
  });
  control.postMessage({ cmd: 'xenbus-backend-setupd', domid: setup.domid, port });
  await xenstoredReady;
  k.trace({ kind: 'xenbus_comms', op: 'xenstored ready', xenstoreDomain: setup.domid, port });

  const xs = XsHandle.fromStream(ring, 'xenbus');
  xs.sched = k.point;
  const state = new XsState();
  xs.gate = state;
  const watch = new Xenwatch(xs, 'be');
  const process = (name: string): XsHandle => {
    const h = XsHandle.fromStream(new XenbusDevFile({ xs, watch, state }), name);
    h.sched = k.point;
    return h;
  };
  // init-xenstore-domain's last writes, through xs_open() (no socket: /dev/xen/xenbus).
  const init = process('init-xenstore-domain');
  await init.write('/tool/xenstored/domid', String(setup.domid));
  await init.write(`/local/domain/${setup.domid}/domid`, String(setup.domid));
  await init.write(`/local/domain/${setup.domid}/name`, setup.name);
  await init.close();

  // Outside tools (free-running only) reach the store as dom0's processes do: /dev/xen/xenbus.
  if (args.socketPath) await serveXenbusDevice(args.socketPath, () => new XenbusDevFile({ xs, watch, state }));

  const services = await startServices(k, args, control, {
    kernel: () => ({ xs, watch }),
    process,
    // One ring carries all of dom0: the look at the tree cannot be kept apart from the rest.
    inspector: () => process('inspect'),
    xenopsdWatches: () => undefined,
  });
  const xl = process('xl commands');
  control.on('message', (m: Dom0Command | { cmd: 'toolstack'; id: number; op: string; args: unknown } | XenstoredCrashCommand) => {
    if (m.cmd === 'toolstack') {
      if (m.op === 'xenstore-seed-export' || m.op === 'xenstore-seed-import') {
        control.postMessage({ cmd: 'toolstackd', id: m.id, error: `${m.op}: xenstored runs in the xenstore domain, not in dom0` });
        return;
      }
      callService(m, services, control);
      return;
    }
    if (m.cmd === 'xenstored-crash') {
      control.postMessage({ cmd: 'xenstored-crashd', domid: 0, error: 'xenstored runs in the xenstore domain, not in dom0' });
      return;
    }
    void dom0Command(xl, m).then(
      (error) => control.postMessage({ cmd: `${m.cmd}d`, domid: m.domid, ...(error === undefined ? {} : { error }) }),
      (e: unknown) => control.postMessage({ cmd: `${m.cmd}d`, domid: m.domid, error: e instanceof Error ? e.message : String(e) }),
    );
  });
  control.postMessage({ cmd: 'ready' });
}

/**
 * The simulator's dom0 commands through a xenstore connection of dom0's (as libxl makes them):
 * undefined when done, else the error xenstored answered INTRODUCE with.
 */
async function dom0Command(xs: XsHandle, m: Dom0Command): Promise<string | undefined> {
  if (m.cmd === 'introduce') {
    // libxl__domain_make: the guest's home (dom0-owned, guest-readable) and its writable data/.
    const home = `/local/domain/${m.domid}`;
    await xs.write(home, '');
    await xs.setPerms(home, ['n0', `r${m.domid}`]);
    await xs.write(`${home}/data`, '');
    await xs.setPerms(`${home}/data`, [`n${m.domid}`]);
    try {
      await xs.introduce(m.domid, m.mfn, m.port);
    } catch (e) {
      if (!(e instanceof XsError)) throw e;
      // As libxl's failed create: take away what was built for it, and say why.
      await xs.rm(home);
      return e.code;
    }
    return undefined;
  }
  if (m.cmd === 'write') {
    await xs.write(m.path, m.value);
    await xs.setPerms(m.path, m.perms);
    return undefined;
  }
  await xs.release(m.domid);
  return undefined;
}
