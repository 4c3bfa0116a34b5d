// Dom0's program: xenstored serving every introduced domain over its ring (and dom0 tools over
// a Unix socket, when asked), plus the toolstack's side of domain introduction and death.
import type { MessagePort } from 'node:worker_threads';
import { decodeHeader, encodeMessage, nulJoin, XS_ERRNO, type XsError, XsdSockmsgType } from '../../hypervisor/public/io/xs_wire.ts';
import { Errno, Virq } from '../../hypervisor/public/xen.ts';
import { Domctl } from '../../hypervisor/public/domctl.ts';
import { Hypercall } from '../../hypervisor/public/xen.ts';
import { HypercallFailed, type Kernel } from '../kernel/kernel.ts';
import type { Profile, XenstoredFaults } from './xenstored/core.ts';
import { XenstoredDaemon } from './xenstored/daemon.ts';
import { DOMID_FIRST_RESERVED } from './xenstored/domain.ts';
import { XsRingConnection } from './xenstored/domain-ring.ts';
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
  /** Serve dom0 tools on this Unix socket too (free-running only). */
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
  const daemon = new XenstoredDaemon({
    profile: args.profile ?? 'c', faults: args.xenstored,
    // find_or_alloc_existing_domain() asks the hypervisor (xc_domain_getinfo): an ACL entry for a
    // domid without a domain is flagged ignored at SET_PERMS, so a later domain cannot inherit it
    // (XSA-417). Without this every domid "existed" and the scenario xsa-417 failed.
    domainExists: (domid) => domid < DOMID_FIRST_RESERVED
      && typeof k.hypercall(Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_getdomaininfo, domain: domid }) !== 'number',
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
  if (args.trace) {
    daemon.onTrace = (ev) => k.trace(ev);
    daemon.onRemovedOwned = (ev) => k.trace(ev);
    // What C xenstored sends to syslog (memory quota crossings), in the simulator's trace.
    const syslog = (level: string, text: string): void => k.trace({ kind: 'xenstored', op: 'syslog', level, text });
    daemon.xs.syslog = syslog;
    const lu = daemon.onLiveUpdate;
    daemon.onLiveUpdate = (d) => {
      daemon.xs.syslog = syslog;
      lu?.(d);
    };
  }
  if (args.socketPath) await new XenstoredServer({ socketPath: args.socketPath, profile: args.profile }, daemon).listen();

  // The toolstack's own privileged connection (libxl's xs handle).
  const tool = daemon.xs.connectSocket();
  let reqId = 1;
  const replies: Uint8Array[] = [];
  daemon.attach(tool, { send: (m) => replies.push(encodeMessage(m)), flush: () => undefined, ended: () => undefined });
  const toolSend = (type: XsdSockmsgType, payload: Uint8Array): void => {
    daemon.input(tool, { type, req_id: reqId++, tx_id: 0, payload });
  };
  const toolRequest = (type: XsdSockmsgType, ...parts: string[]): void => toolSend(type, nulJoin(...parts));
  /** XS_WRITE: the value follows the path's NUL and has none of its own. */
  const toolWrite = (path: string, value: string): void =>
    toolSend(XsdSockmsgType.XS_WRITE, Buffer.concat([nulJoin(path), Buffer.from(value, 'latin1')]));

  // INTRODUCE binds the guest's store event channel (new_domain(): a failure, e.g. -ENOSPC when
  // dom0's ports run out, fails that INTRODUCE with its errno and leaves the daemon serving),
  // then the ring (grant ref 1) is mapped once the request is done.
  const rings = new Map<number, { ring: XsRingConnection; conn: number; handle: number; port: number }>();
  const boundAtIntroduce = new Map<number, number>();
  daemon.xs.setUpDomain = (domid, port) => {
    if (domid === 0) return undefined;
    try {
      boundAtIntroduce.set(domid, k.bindInterdomain(domid, port));
      return undefined;
    } catch (e) {
      if (!(e instanceof HypercallFailed) || typeof e.ret !== 'number') throw e;
      const name = Errno[-e.ret];
      // xsd_errors[] has no ESRCH: C's send_error() answers what it cannot translate as EINVAL.
      return name !== undefined && Object.hasOwn(XS_ERRNO, name) ? (name as XsError) : 'EINVAL';
    }
  };
  let seenEpoch = -1;
  /** A restarted daemon maps the rings its state names: no introduction. */
  let reattaching = false;
  const syncRings = (): void => {
    if (daemon.xs.domainEpoch === seenEpoch) return;
    seenEpoch = daemon.xs.domainEpoch;
    for (const [domid, d] of daemon.xs.domains) {
      if (domid === 0 || !d.introduced || d.conn === undefined) continue;
      const have = rings.get(domid);
      if (have?.conn === d.conn) continue;
      const mapped = k.mapGrant(domid, 1, false);
      if (!mapped.page) continue;
      // Bound at INTRODUCE; a restarted daemon's domains are bound here, from its state.
      let port = boundAtIntroduce.get(domid);
      boundAtIntroduce.delete(domid);
      if (port === undefined) {
        try {
          port = k.bindInterdomain(domid, d.port);
        } catch (e) {
          k.unmapGrant(mapped.handle);
          k.trace({ kind: 'oops', where: 'xenstored', error: `domain ${domid}: ${e instanceof Error ? e.message : String(e)}` });
          continue;
        }
      }
      const evtchn = port;
      const onRing = args.trace ? (ev: object) => k.trace({ ...ev, kind: 'ring', peer: domid }) : undefined;
      const ring = new XsRingConnection(daemon, d.conn, mapped.page, () => k.notify(evtchn), { onRing });
      if (reattaching) ring.reattach();
      else ring.introduce();
      k.on(evtchn, () => ring.kick());
      rings.set(domid, { ring, conn: d.conn, handle: mapped.handle, port: evtchn });
    }
    for (const [domid, r] of rings) {
      if (daemon.xs.connections.has(r.conn)) continue;
      rings.delete(domid);
      k.close(r.port);
      k.unmapGrant(r.handle);
    }
  };
  daemon.afterBatch = syncRings;

  // VIRQ_DOM_EXC: some domain shut down or died; ask the hypervisor which.
  const virq = k.bindVirq(Virq.VIRQ_DOM_EXC);
  k.on(virq, () => {
    for (const [domid, d] of daemon.xs.domains) {
      if (domid === 0 || !d.introduced) continue;
      const info = k.hypercall(Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_getdomaininfo, domain: domid });
      const state = typeof info === 'number' ? 'dead' : (info as { state: string }).state;
      if (state === 'dead' || state === 'dying') daemon.route(daemon.xs.domainStateChanged(domid, 'dead'));
      else if (state === 'shutdown') daemon.route(daemon.xs.domainStateChanged(domid, 'shutdown'));
    }
    daemon.flush();
  });

  // The backend domain's kernel xenbus and the toolstack: each its own xenstore connection, and
  // each a task of its own in lockstep: the kernel's xenbus (its reader and xenwatch threads), the
  // toolstack (xl), the hotplug scripts it runs.
  const local = (name: string, opts?: { untraced?: boolean; onConnection?: (conn: number) => void }) => {
    const h = connectLocal(daemon, name, opts);
    h.sched = k.point;
    return h;
  };
  const toolstack = args.devices === false ? undefined : await (async () => {
    const images = new DiskImages(args.storageRoot);
    const network = new Network();
    k.jitter = args.jitter;
    const bexs = local('xenbus');
    const bewatch = new Xenwatch(bexs, 'be');
    bewatch.sched = k.point;
    if (args.jitter) bewatch.beforeDispatch = () => k.preempt();
    bewatch.onError = (e) => k.trace({ kind: 'oops', where: 'xenwatch', error: e instanceof Error ? e.message : String(e) });
    const bus = new XenbusBus(k, bexs, { role: 'backend', quirks: args.quirks?.xenbus, trace: (ev) => k.trace(ev) }, bewatch);
    bus.register(new Blkback(images, args.quirks?.blkback));
    bus.register(new Netback(network, args.quirks?.netback));
    await bus.start();
    const xlxs = local('xl');
    // The toolstack is a user process: it can be descheduled before any request.
    if (args.jitter) xlxs.beforeRequest = () => k.preempt();
    const ts = new Toolstack(k, xlxs, images, bus, control, args.quirks?.toolstack, network, connectLocal(daemon, 'inspect', { untraced: true }), local('hotplug'));
    await ts.start();
    return ts;
  })();

  // xenopsd: its worker's connection and its watch thread's, each a task of its own.
  const xenopsd = args.xenopsd !== true ? undefined : await (async () => {
    let watchConn: number | undefined;
    const watchXs = local('xenopsd watch', { onConnection: (c) => (watchConn = c) });
    const xo = new Xenopsd(k, local('xenopsd'), watchXs, args.quirks?.xenopsd, () => {
      const c = watchConn === undefined ? undefined : daemon.xs.connections.get(watchConn);
      return c && { conn: c.id, watches: c.watches.map((w) => ({ path: w.node, token: w.token })) };
    });
    await xo.start();
    return xo;
  })();

  // xenstored dies (a fault), and, when asked, is started again after a while (as systemd's
  // Restart= with RestartSec would): the new process maps every ring its last state names.
  let restartAfterNs: number | undefined;
  const restart = (how: 'restart' | 'failover'): void => {
    for (const r of rings.values()) {
      k.close(r.port);
      k.unmapGrant(r.handle);
    }
    rings.clear();
    if (how === 'failover') {
      const batches = daemon.replication!.recorder.seq;
      const restored = daemon.failover();
      k.trace({ kind: 'xenstored', op: 'failed-over', batches, connections: restored.xs.connections.size, nodes: restored.xs.store.size });
    } else {
      const restored = daemon.restart();
      k.trace({ kind: 'xenstored', op: 'restarted', connections: restored.xs.connections.size, nodes: restored.xs.store.size });
    }
    seenEpoch = -1;
    reattaching = true;
    try {
      syncRings();
    } finally {
      reattaching = false;
    }
    daemon.flush();
  };
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
    if (m.cmd === 'toolstack' && (m.op.startsWith('VM_') || m.op.startsWith('xenopsd'))) {
      if (!xenopsd) {
        control.postMessage({ cmd: 'toolstackd', id: m.id, error: 'dom0 runs without xenopsd' });
        return;
      }
      xenopsd.call(m.op, m.args).then(
        (result) => control.postMessage({ cmd: 'toolstackd', id: m.id, result }),
        (e: unknown) => control.postMessage({ cmd: 'toolstackd', id: m.id, error: e instanceof Error ? e.message : String(e) }),
      );
      return;
    }
    if (m.cmd === 'toolstack') {
      if (!toolstack) {
        control.postMessage({ cmd: 'toolstackd', id: m.id, error: 'dom0 runs without a toolstack' });
        return;
      }
      toolstack.call(m.op, m.args).then(
        (result) => control.postMessage({ cmd: 'toolstackd', id: m.id, result }),
        (e: unknown) => control.postMessage({ cmd: 'toolstackd', id: m.id, error: e instanceof Error ? e.message : String(e) }),
      );
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
