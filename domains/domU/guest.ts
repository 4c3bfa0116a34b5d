// A PV guest kernel, Linux-shaped: it brings up xenbus over its store ring, probes its frontends
// (blkfront, netfront), runs manage.c's control/shutdown handler, and writes
// boot messages to its console. The simulator drives its "user space" with messages: block I/O,
// frames to send, the device list.
import { createHash } from 'node:crypto';
import { XsError, XsHandle } from '../libs/store/xs.ts';
import { KERNEL_STATE_GFN, readKernelState, writeKernelState, type KernelState } from './kernel-state.ts';
import { BlkifOp } from '../../hypervisor/public/io/blkif.ts';
import { consoleWrite } from '../../hypervisor/public/io/console.ts';
import { XenbusState, xenbusStateName } from '../../hypervisor/public/io/xenbus.ts';
import { ShutdownReason } from '../../hypervisor/public/sched.ts';
import { Hypercall } from '../../hypervisor/public/xen.ts';
import { SchedOp } from '../../hypervisor/public/sched.ts';
import type { Kernel } from '../kernel/kernel.ts';
import { xenbusInit } from '../kernel/xenbus.ts';
import { XenbusBus, type XenbusQuirks } from '../kernel/xenbus-probe.ts';
import { Xenwatch } from '../kernel/xenbus-watch.ts';
import { XsState } from '../kernel/xenbus-xs.ts';
import { XenbusDevFile } from '../kernel/xenbus-dev-frontend.ts';
import type { EventsQuirks } from '../kernel/events-base.ts';
import { Freezer, userPoint } from '../kernel/freezer.ts';
import { BlkfrontDriver, type BlkfrontQuirks } from './blkfront.ts';
import { NetfrontDriver, type NetfrontOptions } from './netfront.ts';
import type { NetifTxRequestValue } from '../../hypervisor/public/io/netif.ts';
import { acpiInit } from './acpi.ts';
import { XsUser, type XsUserCommand } from './xs-user.ts';
import type { ControlPort } from '../../hypervisor/public/vcpu.ts';
import { Netback, type NetbackQuirks } from '../dom0/backends/netback.ts';
import { Network, vifName } from '../dom0/backends/bridge.ts';
import { DiskImages } from '../dom0/backends/disk-image.ts';
import { hotplugScripts } from '../dom0/toolstack/hotplug.ts';
import { type DevdQuirks, XlDevd } from './xl-devd.ts';

export interface GuestArgs {
  /** hvm guests also answer ACPI power/sleep buttons (see acpi). */
  readonly type?: 'pv' | 'hvm';
  /** Preemption faults: watch deliveries may be delayed (drawn from the kernel's PRNG). */
  readonly jitter?: { readonly p: number; readonly maxNs: number };
  /** The seed's (non-Xen) ACPI flow: see acpi.ts. Off by default. */
  readonly acpiSeedFlow?: boolean;
  readonly quirks?: {
    readonly xenbus?: XenbusQuirks; readonly blkfront?: BlkfrontQuirks; readonly manage?: ManageQuirks; readonly events?: EventsQuirks;
  };
  /**
   * How long an orderly shutdown waits for each Connected frontend's backend to close (ns);
   * Linux waits up to 5 s.
   */
  readonly closeTimeoutNs?: number;
  readonly netfront?: NetfrontOptions;
  /** What a guest agent writes under its own data/ once xenstore is up (before the frontends probe). */
  readonly data?: Readonly<Record<string, string>>;
  /**
   * Set by xl restore: this kernel is the saved one coming back in a new domain, where its
   * SCHEDOP_shutdown(SHUTDOWN_suspend) returned 0. It reads what it left in its own memory
   * (kernel-state.ts) and resumes xenbus instead of booting.
   */
  readonly resumed?: boolean;
  /**
   * A network driver domain (xl.cfg driver_domain=1): the kernel runs netback for the vifs
   * other domains' configs give this domain as backend=, with net devices and bridges of its
   * own, and user space runs `xl devd`, which runs their hotplug scripts here.
   */
  readonly driverDomain?: DriverDomainArgs;
}

export interface DriverDomainArgs {
  readonly netback?: NetbackQuirks;
  readonly devd?: DevdQuirks;
  /**
   * When init starts `xl devd`: once the kernel's boot devices are Connected ('boot', the
   * default), or only when told ('command': the scenario's `devd-start`, as an administrator's
   * `systemctl start xendriverdomain`).
   */
  readonly devdStart?: 'boot' | 'command';
}

export interface ManageQuirks {
  /** Ignore control/shutdown entirely (a guest without PV drivers, or a hung one). */
  readonly ignoreShutdown?: boolean;
  /** Acknowledge a suspend request only after this long (R18's slow guest), ns. */
  readonly suspendAckDelayNs?: number;
}

/** Commands from the simulator to the guest's user space. */
export type GuestCommand =
  | { cmd: 'blk'; id: number; device: string; op: 'read' | 'write' | 'flush'; sector: number; sectors: number; data?: Uint8Array }
  /** Send one Ethernet frame on a vif ('vif/0'); replies {status} (0 = sent). */
  | { cmd: 'net-send'; id: number; device: string; frame: Uint8Array }
  /** The frames a vif received since the last call; replies {frames}. */
  | { cmd: 'net-recv'; id: number; device: string }
  /** A hostile frontend: raw tx requests, req_prod moved `bump` further; replies {}. */
  | { cmd: 'net-raw-tx'; id: number; device: string; requests: NetifTxRequestValue[]; bump?: number }
  /** Restart the vif's frontend (Closed, then Initialising again); replies {} once restarted. */
  | { cmd: 'net-reconnect'; id: number; device: string }
  /**
   * Every vbd through blkfront's resume path, one after another as xenbus_resume does (each first
   * brought to Closed on both ends, see blkfront.closeForResume); replies {} once all said Connected.
   */
  | { cmd: 'blk-resume'; id: number }
  | { cmd: 'devices'; id: number }
  | { cmd: 'printk'; id: number; text: string }
  | { cmd: 'shutdown'; id: number; reason: 'poweroff' | 'reboot' | 'crash' }
  /** A driver domain's init starts `xl devd` now; replies {} once its watch is armed (and, fixed, its walk done). */
  | { cmd: 'devd-start'; id: number }
  /** The memory workload: fill `pages` more pages with bytes from the kernel's PRNG; replies {gfns}. */
  | { cmd: 'mem-fill'; id: number; pages: number }
  /** sha256 of the workload's pages as this kernel reads them; replies {hash, pages}. */
  | { cmd: 'mem-hash'; id: number }
  /**
   * A user process dirtying memory (a live migration's load): every `everyNs` it rewrites the next
   * `pages` workload pages (round robin) from the kernel's PRNG, `times` times, frozen with user
   * space. Replies {} at once; the process runs on.
   */
  | { cmd: 'mem-dirty'; id: number; pages: number; everyNs: number; times: number }
  /** Scenario tools: a user process's xenstore requests, watches, transactions over /dev/xen/xenbus (xs-user.ts). */
  | XsUserCommand;

/**
 * Overwrites a page with data from one draw of the kernel's PRNG, spread by xorshift32 over its
 * words (a draw per word made filling a big guest take minutes).
 */
function scribble(page: Uint8Array, seed: number): void {
  const w = new Int32Array(page.buffer, page.byteOffset, page.byteLength >> 2);
  let x = seed | 1;
  for (let i = 0; i < w.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    w[i] = x;
  }
}

export async function main(k: Kernel, args: GuestArgs = {}, control: ControlPort): Promise<void> {
  // The kernel image's own page first: a resumed kernel reads what it left there before anything
  // else may allocate (and clear) the pages it names.
  let saved: KernelState | undefined;
  if (args.resumed) {
    try {
      saved = readKernelState(k.page(KERNEL_STATE_GFN), k.startInfo.nr_pages);
      const rings = saved.frontends.flatMap((f) => (f.ring ? [f.ring.gfn] : []));
      // Indexed (no spread copy): a big guest's workload is every page it has.
      const { workload } = saved;
      for (let i = 0; i < workload.length; i++) k.reserve(workload[i]);
      for (const gfn of [...saved.blk.flatMap((r) => r.gfns), ...rings]) k.reserve(gfn);
    } catch (e) {
      // Memory that is not what this kernel left: nothing to resume from (Linux would oops).
      k.trace({ kind: 'oops', where: 'resume', error: e instanceof Error ? e.message : String(e) });
      k.hypercall(Hypercall.__HYPERVISOR_sched_op, { cmd: SchedOp.SCHEDOP_shutdown, reason: ShutdownReason.SHUTDOWN_crash });
      k.stop();
      return;
    }
  }
  const statePage = k.reservePage(KERNEL_STATE_GFN);
  k.configureEvents(args.quirks?.events);
  // readKernelState's list is this kernel's own: kept as it is (a big guest's is every page).
  const workload: number[] = saved ? (saved.workload as number[]) : [];
  const resumes = saved ? saved.resumes + 1 : 0;
  // xb_init_comms: the store ring of this domain (a new port after a restore).
  const xs = xenbusInit(k, { ignoreConnection: args.quirks?.xenbus?.ringBeforeConnected, reconnectAfterNs: args.quirks?.xenbus?.ringReconnectAfterNs });
  // xenbus_xs.c's suspend gate over every request of this kernel (R17's quirk: whether user
  // transactions hold suspend up).
  const xsState = new XsState({ userTransactionsBlockSuspend: args.quirks?.xenbus?.userTransactionsBlockSuspend });
  xs.gate = xsState;
  const freezer = new Freezer();
  // Linux's tokens are its watch structs' addresses. This kernel builds its watches anew after a
  // restore: another prefix per resume, so none of them takes the token of one the old kernel
  // left in xenstored (which the seed's migration copies) - that one's events find no watch here.
  const watch = new Xenwatch(xs, resumes === 0 ? 'fe' : `f${resumes % 10}`);
  watch.sched = k.point;
  watch.recordAfterReply = args.quirks?.xenbus?.watchRecordAfterReply ?? false;
  k.jitter = args.jitter;
  watch.onError = (e) => k.trace({ kind: 'oops', where: 'xenwatch', error: e instanceof Error ? e.message : String(e) });
  if (args.jitter) watch.beforeDispatch = () => k.preempt();
  const printk = (text: string): void => {
    if (k.startInfo.console_mfn === undefined || k.startInfo.console_evtchn === undefined) return;
    const n = consoleWrite(k.page(k.startInfo.console_mfn), Buffer.from(text, 'latin1'));
    if (typeof n === 'number' && n > 0) k.notify(k.startInfo.console_evtchn);
  };
  const bus = new XenbusBus(k, xs, {
    role: 'frontend', quirks: args.quirks?.xenbus,
    trace: (ev) => {
      k.trace(ev);
      // The console tells the devices' story as a kernel log would (connect, close).
      const line = ev.kind === 'xenbus' ? frontendConsoleLine(ev.device, ev.state) : undefined;
      if (line !== undefined) printk(line);
    },
  }, watch);
  const blkfront = new BlkfrontDriver(args.quirks?.blkfront);
  bus.register(blkfront);
  const netfront = new NetfrontDriver(args.netfront);
  bus.register(netfront);

  if (!saved) printk(`Linux version 6.1.0-xensim (domid ${k.domid})\n`);
  // The scenario's user process: its own /dev/xen/xenbus file, a task of its own, frozen at suspend.
  const xsUser = new XsUser(k, xs, () => {
    const user = XsHandle.fromStream(new XenbusDevFile({ xs, watch, state: xsState }), 'xenstore-user');
    user.sched = userPoint(k.point, freezer);
    return user;
  });

  /** Orderly shutdown: every Connected frontend heads for Closing and waits for the backend. */
  const closeFrontends = async (): Promise<void> => {
    const timeout = args.closeTimeoutNs ?? 5e9;
    for (const dev of [...bus.devices.values()]) {
      if (dev.state !== XenbusState.XenbusStateConnected) continue;
      await dev.switchState(XenbusState.XenbusStateClosing);
      await new Promise<void>((resolve) => {
        const t = k.setTimer(timeout, resolve);
        const poll = (): void => {
          if (dev.state === XenbusState.XenbusStateClosed || dev.removed) {
            t.cancel();
            resolve();
          } else {
            k.setTimer(1e6, poll);
          }
        };
        poll();
      });
    }
  };

  const schedShutdown = (reason: ShutdownReason): number =>
    k.hypercall(Hypercall.__HYPERVISOR_sched_op, { cmd: SchedOp.SCHEDOP_shutdown, reason }) as number;

  /** What manage.c does after acking a command. */
  const act = async (cmd: string): Promise<void> => {
    switch (cmd) {
      case 'poweroff':
      case 'halt':
        printk('reboot: Power down\n');
        await closeFrontends();
        schedShutdown(ShutdownReason.SHUTDOWN_poweroff);
        k.stop();
        break;
      case 'reboot':
        printk('reboot: Restarting system\n');
        await closeFrontends();
        schedShutdown(ShutdownReason.SHUTDOWN_reboot);
        k.stop();
        break;
      case 'suspend': {
        // do_suspend: freeze user space, then xs_suspend waits until no request is in flight
        // and no (counted) transaction open, and holds new ones back.
        printk('Freezing user space processes\n');
        freezer.freeze();
        await xsState.suspend();
        // Frozen: what a resumed kernel needs goes into its own memory, which the saver copies -
        // the watches xs_resume registers again and the block requests still on the rings (the
        // shadow blkif_recover re-queues).
        const vbds = [...bus.devices.values()].filter((d) => d.devicetype === 'vbd');
        const inflight = vbds.flatMap((d) => blkfront.inflight(d));
        try {
          writeKernelState(statePage, { workload, watches: xsUser.savedWatches(), blk: inflight, frontends: vbds.map((d) => blkfront.saved(d)), resumes });
        } catch (e) {
          // dpm_suspend_start failing: the suspend does not happen; the held requests go on.
          printk(`PM: Some devices failed to suspend: ${e instanceof Error ? e.message : String(e)}\n`);
          xsState.resume();
          freezer.thaw();
          break;
        }
        // SCHEDOP_shutdown(suspend) returns when the domain runs again. This program only goes on
        // in the domain that suspended, so here it returned 1: cancelled (xl save -c, a failed
        // save, a resume in place) - xenbus_suspend_cancel, the devices go on as they were. A
        // restored domain (return 0) enters main() again with `resumed`.
        schedShutdown(ShutdownReason.SHUTDOWN_suspend);
        await new Promise<void>((r) => void k.setTimer(1, r));
        // xs_resume / xs_suspend_cancel: a new generation, held requests go on; then thaw.
        xsState.resume();
        freezer.thaw();
        printk('Restarting tasks ... done.\n');
        break;
      }
    }
  };

  /** manage.c's shutdown_handler: ack a known command in a transaction, then act on it. */
  const shutdownHandler = async (): Promise<void> => {
    if (args.quirks?.manage?.ignoreShutdown) return;
    for (;;) {
      const tx = await xs.transactionStart();
      let cmd: string;
      try {
        cmd = (await xs.read('control/shutdown', tx)).toString('latin1');
      } catch {
        await xs.transactionEnd(tx, false).catch(() => undefined);
        return;
      }
      if (!['poweroff', 'halt', 'reboot', 'suspend'].includes(cmd)) {
        await xs.transactionEnd(tx, false).catch(() => undefined);
        return;
      }
      if (cmd === 'suspend' && args.quirks?.manage?.suspendAckDelayNs) {
        await new Promise<void>((r) => void k.setTimer(args.quirks!.manage!.suspendAckDelayNs!, r));
      }
      await xs.write('control/shutdown', '', tx);
      let ok: boolean;
      try {
        ok = await xs.transactionEnd(tx, true);
      } catch (e) {
        if (e instanceof XsError && e.code === 'EAGAIN') continue;
        throw e;
      }
      if (!ok) continue;
      // Like orderly_poweroff: the work runs outside xenwatch, which must stay free to deliver
      // the backends' state changes the device shutdown waits for.
      void act(cmd);
      return;
    }
  };

  if (args.type === 'hvm') {
    acpiInit(k, xs, { seedFlow: args.acpiSeedFlow, printk, beforePoweroff: closeFrontends });
  }

  // setup_shutdown_watcher: watch first, then advertise what we answer. (After a restore the
  // destination's tree is libxl's fresh one: the kernel's watch goes in again with xs_resume's.)
  await watch.register('control/shutdown', () => shutdownHandler());
  for (const f of ['feature-poweroff', 'feature-reboot', 'feature-suspend']) {
    await xs.write(`control/${f}`, '1').catch(() => undefined);
  }
  for (const [key, value] of Object.entries(args.data ?? {})) await xs.write(`data/${key}`, value);
  if (saved) {
    // xs_resume: user space's watches again, with their tokens.
    await xsUser.resumeWatches(saved.watches);
    blkfront.recoverOnConnect(saved.blk);
  }
  if (saved) {
    // dpm_resume: xenbus_dev_resume for each vbd the kernel had (its structs are in this memory),
    // which reconnects it to its new backend. (xensim's netfront keeps nothing across a restore:
    // its vifs are probed anew below, as if hot-plugged.)
    const vbds = saved.frontends.map((f) => {
      const dev = bus.adopt(f.name, 'vbd', f.state as XenbusState);
      blkfront.restore(dev, f);
      return dev;
    });
    for (const dev of vbds) {
      if (!(await bus.resumeDevice(dev))) printk(`xenbus: resume ${dev.nodename}: no backend\n`);
    }
  }
  // Booting: probe the frontends. Resumed: the root watch again, and any device the kernel did
  // not have before.
  await bus.start();
  const driverDomain = args.driverDomain ? await startDriverDomain(k, xs, watch, xsState, freezer, bus, args) : undefined;
  if (saved) printk(`xen: resumed in domain ${k.domid} (resume ${resumes})\nRestarting tasks ... done.\n`);

  const deviceByName = (name: string) => bus.devices.get(name) ?? bus.devices.get(`vbd/${name}`);
  const vifByName = (name: string) => bus.devices.get(name) ?? bus.devices.get(`vif/${name}`);
  const failed = (e: unknown): Record<string, unknown> => ({ error: e instanceof Error ? e.message : String(e) });

  control.on('message', (m: GuestCommand) => {
    const reply = (r: Record<string, unknown>): void => control.postMessage({ cmd: 'result', id: m.id, ...r });
    switch (m.cmd) {
      case 'blk': {
        const dev = deviceByName(m.device);
        if (!dev) {
          reply({ error: `no device ${m.device}` });
          return;
        }
        const op = m.op === 'read' ? BlkifOp.BLKIF_OP_READ : m.op === 'write' ? BlkifOp.BLKIF_OP_WRITE : BlkifOp.BLKIF_OP_FLUSH_DISKCACHE;
        blkfront.submit(dev, op, m.sector, m.sectors, m.data).then(
          (r) => reply({ status: r.status, data: r.data }),
          (e: unknown) => reply({ error: e instanceof Error ? e.message : String(e) }),
        );
        return;
      }
      case 'blk-resume': {
        const vbds = [...bus.devices.values()].filter((d) => d.devicetype === 'vbd');
        void (async () => {
          for (const dev of vbds) await blkfront.closeForResume(dev);
          // On a real restore the toolstack writes the fresh Initialising states before the guest
          // runs, and they fire no event of their own; here the guest wrote them, so the bus's
          // handlers for those writes run before the devices move on - else one that read
          // Initialising and then saw the device Initialised takes it for a replaced device.
          // (A read first: its reply follows the watch events of every earlier write.)
          if (vbds.length) await bus.xs.read(`${vbds[vbds.length - 1].nodename}/state`).catch(() => undefined);
          await bus.watch.idle();
          // What xenbus_dev_resume does once the other end is known: state back to Initialising,
          // the driver's hook, the otherend watch again.
          for (const dev of vbds) {
            dev.state = XenbusState.XenbusStateInitialising;
            await blkfront.resume(dev);
            if (!dev.removed) await bus.watchOtherend(dev);
          }
        })().then(() => reply({}), (e: unknown) => reply(failed(e)));
        return;
      }
      case 'net-send':
      case 'net-recv':
      case 'net-raw-tx':
      case 'net-reconnect': {
        const dev = vifByName(m.device);
        if (!dev || dev.devicetype !== 'vif') {
          reply({ error: `no device ${m.device}` });
          return;
        }
        if (m.cmd === 'net-recv') {
          reply({ frames: netfront.drain(dev) });
        } else if (m.cmd === 'net-send') {
          netfront.send(dev, m.frame).then((r) => reply({ status: r.status }), (e: unknown) => reply(failed(e)));
        } else if (m.cmd === 'net-reconnect') {
          netfront.reconnect(dev).then(() => reply({}), (e: unknown) => reply(failed(e)));
        } else {
          try {
            netfront.rawTx(dev, m.requests, m.bump);
            reply({});
          } catch (e) {
            reply(failed(e));
          }
        }
        return;
      }
      case 'devices':
        reply({
          devices: [...bus.devices.values()].map((d) => ({
            name: d.name, nodename: d.nodename, state: d.state, stateName: xenbusStateName(d.state),
            ...(d.devicetype === 'vbd' ? { disk: blkfront.disk(d), ring: blkfront.describe(d) } : {}),
            ...(d.devicetype === 'vif' ? { net: netfront.describe(d) } : {}),
          })),
          errors: watch.errors.map((e) => (e instanceof Error ? e.stack ?? e.message : String(e))),
          recovered: blkfront.recovered,
          resumes,
        });
        return;
      case 'mem-fill': {
        const gfns: number[] = [];
        try {
          for (let i = 0; i < m.pages; i++) {
            const pg = k.allocPage();
            scribble(pg.bytes, k.rng.u32());
            gfns.push(pg.gfn);
            workload.push(pg.gfn);
          }
          reply({ gfns });
        } catch (e) {
          reply({ gfns, ...failed(e) });
        }
        return;
      }
      case 'mem-dirty': {
        if (!workload.length || !(m.pages > 0) || !(m.everyNs > 0) || !(m.times > 0)) {
          reply({ error: 'mem-dirty: needs a workload (mem-fill) and positive pages, everyNs, times' });
          return;
        }
        let next = 0;
        const dirty = async (): Promise<void> => {
          for (let t = 0; t < m.times; t++) {
            await new Promise<void>((r) => void k.setTimer(m.everyNs, r));
            await freezer.tryToFreeze();
            for (let i = 0; i < m.pages; i++) {
              scribble(k.page(workload[next++ % workload.length]), k.rng.u32());
            }
          }
        };
        void dirty();
        reply({});
        return;
      }
      case 'mem-hash': {
        const h = createHash('sha256');
        for (const gfn of workload) h.update(k.page(gfn));
        reply({ hash: h.digest('hex'), pages: workload.length });
        return;
      }
      case 'printk':
        printk(m.text);
        reply({});
        return;
      case 'xs':
      case 'xs-watch':
      case 'xs-events':
      case 'xs-batch':
      case 'xs-increment':
      case 'xs-ring-corrupt':
        xsUser.run(m).then(reply, (e: unknown) => reply(failed(e)));
        return;
      case 'devd-start':
        if (!driverDomain) {
          reply({ error: 'not a driver domain' });
          return;
        }
        driverDomain.startDevd().then(() => reply({}), (e: unknown) => reply(failed(e)));
        return;
      case 'shutdown': {
        const reason = m.reason === 'crash' ? ShutdownReason.SHUTDOWN_crash : m.reason === 'reboot' ? ShutdownReason.SHUTDOWN_reboot : ShutdownReason.SHUTDOWN_poweroff;
        reply({});
        schedShutdown(reason);
        k.stop();
        return;
      }
    }
  });
  control.postMessage({ cmd: 'booted', domid: k.domid });
}


/**
 * The backend half of a driver domain: the kernel's xenbus backend bus with netback (sharing the
 * kernel's one xenwatch thread), then, once the kernel is up, init starts `xl devd` - a process
 * of its own, which may get going before or after a backend already waits in InitWait.
 */
async function startDriverDomain(
  k: Kernel, xs: XsHandle, watch: Xenwatch, state: XsState, freezer: Freezer, frontends: XenbusBus, args: GuestArgs,
): Promise<{ startDevd(): Promise<void> }> {
  const dd = args.driverDomain!;
  const network = new Network();
  const backends = new XenbusBus(k, xs, { role: 'backend', quirks: args.quirks?.xenbus, trace: (ev) => k.trace(ev) }, watch);
  backends.register(new Netback(network, dd.netback));
  await backends.start();
  const process = (name: string): XsHandle => {
    const h = XsHandle.fromStream(new XenbusDevFile({ xs, watch, state }), name);
    h.sched = userPoint(k.point, freezer);
    return h;
  };
  let started: Promise<void> | undefined;
  /** init forks and execs the daemon: it runs when the scheduler first picks it. */
  const startDevd = (): Promise<void> => started ??= (async () => {
    const scripts = hotplugScripts(process('hotplug'), k, new DiskImages(), {
      bridge: {
        plug: (dev, br) => network.addif(br, vifName(dev.frontend, dev.devid)),
        unplug: (dev) => network.delif(vifName(dev.frontend, dev.devid)),
      },
    });
    if (k.point) await k.point('xl devd');
    await new XlDevd(k, process('xl devd'), scripts, dd.devd).start();
  })();
  if ((dd.devdStart ?? 'boot') === 'boot') {
    // User space starts once the kernel has its devices (xenbus_probe_frontend's
    // wait_for_devices: the root disk is Connected).
    void frontendsConnected(frontends, watch).then(startDevd)
      .catch((e: unknown) => k.trace({ kind: 'oops', where: 'xl devd', error: e instanceof Error ? e.message : String(e) }));
  }
  return { startDevd };
}

/**
 * wait_for_devices: resolves once every frontend the kernel probed at boot is Connected (or has
 * gone), looked at again at each change of their states - the kernel's boot stops here before
 * it runs init.
 */
async function frontendsConnected(bus: XenbusBus, watch: Xenwatch): Promise<void> {
  const ready = (): boolean => [...bus.devices.values()].every((d) => d.removed || d.state === XenbusState.XenbusStateConnected);
  if (ready()) return;
  await new Promise<void>((resolve) => {
    const states = [...bus.devices.values()].map((d) => d.nodename);
    const w = Promise.all(states.map((p) => watch.register(`${p}/state`, () => {
      if (!ready()) return;
      resolve();
      void w.then((hs) => hs.forEach((h) => void h.unregister()));
    })));
  });
}

/** Linux's name for a xen vbd: xvda for 51712 (202:0), xvdb for 51728 (202:16), extended ids too. */
export function xvdName(vdev: number): string {
  const ext = (vdev & (1 << 28)) !== 0;
  if (!ext && vdev >> 8 !== 202) return `vbd-${vdev}`;
  let disk = ext ? (vdev & ~(1 << 28)) >> 8 : (vdev & 0xff) >> 4;
  let name = '';
  do {
    name = String.fromCharCode(97 + (disk % 26)) + name;
    disk = Math.floor(disk / 26) - 1;
  } while (disk >= 0);
  return `xvd${name}`;
}

/**
 * The console line a frontend's own state change is worth: its disk or interface connected to
 * the backend, closing, closed. Other states print nothing, as in Linux.
 */
export function frontendConsoleLine(device: string, state: number): string | undefined {
  const [type, id] = device.split('/');
  const what = type === 'vbd' ? `blkfront: ${xvdName(Number(id))}` : type === 'vif' ? `xen_netfront: eth${id}` : `xenbus: ${device}`;
  switch (state) {
    case 4: return `${what}: connected to the backend (XenbusStateConnected)\n`;
    case 5: return `${what}: closing (XenbusStateClosing)\n`;
    case 6: return `${what}: closed (XenbusStateClosed)\n`;
    default: return undefined;
  }
}
