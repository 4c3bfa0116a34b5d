// Dom0's toolstack process (xl with libxl inside): the verbs the simulator's `xl` asks for, and
// the domain-death monitor that turns @releaseDomain into SHUTDOWN/DEATH events.
import type { XsHandle } from '../../libs/store/xs.ts';
import { type NodeDump, xenstoreLs } from '../../libs/store/ls.ts';
import { Domctl, DomctlTrigger } from '../../../hypervisor/public/domctl.ts';
import { Errno, Hypercall } from '../../../hypervisor/public/xen.ts';
import { HvmOp } from '../../../hypervisor/public/hvm/hvm_op.ts';
import { HvmParam } from '../../../hypervisor/public/hvm/params.ts';
import { ShutdownReason } from '../../../hypervisor/public/sched.ts';
import type { Kernel } from '../../kernel/kernel.ts';
import type { XenbusBus } from '../../kernel/xenbus-probe.ts';
import { Xenwatch } from '../../kernel/xenbus-watch.ts';
import type { DiskImages } from '../backends/disk-image.ts';
import { type Network, vifName } from '../backends/bridge.ts';
import { Consoled } from '../backends/consoled.ts';
import type { DiskConfig, DomainConfig, VifConfig } from './config.ts';
import { hotplugScripts } from './hotplug.ts';
import { type DeviceRef, Libxl, ToolstackError } from './libxl.ts';
import { DomainUserdataLocks } from './userdata-lock.ts';

export interface ToolstackQuirks {
  /** Fault: hotplug scripts take this long (ns). */
  readonly hotplugDelayNs?: number;
  /** Shutdown acknowledgement timeout (ns); libxl's is 60 s. */
  readonly shutdownTimeoutNs?: number;
  /**
   * The seed's ACPI flow (not Xen): mirror what an HVM guest writes to control/shutdown ("S3",
   * "S5") at /local/domain/0/acpi/state. Off by default.
   */
  readonly acpiSeedFlow?: boolean;
  /** R18's buggy suspend cancel (see LibxlQuirks). */
  readonly suspendCancelPlainWrite?: boolean;
  /** R03(c): no empty hotplug-status for new vifs (see LibxlQuirks). */
  readonly noEmptyHotplugStatus?: boolean;
  /** R19(d): the hotplug scripts' xenstore-read prints inside its transaction (see HotplugOptions). */
  readonly xenstoreReadPrintsInBody?: boolean;
  /**
   * R14(a) (before xen d3ec7b04d0): the death machinery counts a domain as dead only once it has
   * vanished from the domain list. xenstored fires @releaseDomain when the domain turns dying and
   * then forgets it, so if the rescan finds it still dying (some mapping of its memory still
   * held), no later event comes when it finally goes.
   */
  readonly deathOnlyWhenGone?: boolean;
}

/** What the death monitor reports to the simulator's xl. */
export interface DomainEvent {
  readonly cmd: 'domain-event';
  readonly domid: number;
  readonly event: 'shutdown' | 'death';
  readonly reason?: string;
}

interface ControlLike {
  postMessage(m: unknown): void;
}

export type { NodeDump };

export class Toolstack {
  readonly libxl: Libxl;
  readonly watch: Xenwatch;
  readonly consoled: Consoled;
  /** Domains the monitor follows, with what it last reported. */
  private readonly monitored = new Map<number, 'running' | 'shutdown'>();
  /** One configuration change per domain at a time (libxl's domain userdata lock). */
  private readonly locks = new DomainUserdataLocks();
  /** Other xl processes waiting for a domain's death (libxl_evenable_domain_death), by domid. */
  private readonly deathWaiters = new Map<number, Set<() => void>>();
  /** Domains an xl destroy was asked for and has not finished: their create steps fail at once. */
  private readonly destroying = new Set<number>();

  constructor(
    readonly kernel: Kernel,
    readonly xs: XsHandle,
    readonly images: DiskImages,
    readonly backends: XenbusBus,
    private readonly control: ControlLike,
    readonly quirks: ToolstackQuirks = {},
    /** Dom0's net devices and bridges, for vif-bridge (none: vifs are left unbridged). */
    readonly network?: Network,
    /** An untraced connection for the simulator's own look at the tree (dump with quiet). */
    readonly inspector?: XsHandle,
    /** The hotplug scripts' own connection (each script is a process of its own); default `xs`. */
    hotplugXs: XsHandle = xs,
  ) {
    this.watch = new Xenwatch(xs, 'xl');
    this.watch.sched = xs.sched;
    this.watch.task = 'xl watches';
    this.consoled = new Consoled(kernel, xs);
    const bridge = network && {
      plug: (dev: DeviceRef, br: string): void => network.addif(br, vifName(dev.frontend, dev.devid)),
      unplug: (dev: DeviceRef): void => network.delif(vifName(dev.frontend, dev.devid)),
    };
    this.libxl = new Libxl(xs, this.watch, kernel, hotplugScripts(hotplugXs, kernel, images, {
      delayNs: quirks.hotplugDelayNs, bridge, xenstoreReadPrintsInBody: quirks.xenstoreReadPrintsInBody,
    }), {
      suspendCancelPlainWrite: quirks.suspendCancelPlainWrite, noEmptyHotplugStatus: quirks.noEmptyHotplugStatus,
    });
  }

  async start(): Promise<void> {
    await this.libxl.initDom0();
    await this.watch.register('@releaseDomain', () => this.domainsChanged());
    await this.consoled.start();
  }

  /** Whether getdomaininfo's answer means the domain is dead to libxl: gone, or (fixed) dying. */
  private dead(info: unknown): boolean {
    if (typeof info === 'number') return true;
    const state = (info as { state: string }).state;
    return (state === 'dying' || state === 'dead') && !this.quirks.deathOnlyWhenGone;
  }

  /**
   * An xl that waits for a domain's death (xl shutdown -w, xl create's monitor): a rescan now
   * (the watch's first firing does that in libxl) and at every @releaseDomain. False after
   * `timeoutNs` without it.
   */
  private waitDeath(domid: number, timeoutNs: number): Promise<boolean> {
    if (this.dead(this.domctl(Domctl.XEN_DOMCTL_getdomaininfo, domid))) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      let set = this.deathWaiters.get(domid);
      if (!set) this.deathWaiters.set(domid, (set = new Set()));
      const done = (): void => {
        timer.cancel();
        resolve(true);
      };
      const timer = this.kernel.setTimer(timeoutNs, () => {
        set.delete(done);
        resolve(false);
      });
      set.add(done);
    });
  }

  private domctl(cmd: Domctl, domain: number): unknown {
    return this.kernel.hypercall(Hypercall.__HYPERVISOR_domctl, { cmd, domain });
  }

  /** libxl's death machinery: @releaseDomain says nothing about which domain, so look at all. */
  private domainsChanged(): void {
    for (const [domid, set] of this.deathWaiters) {
      if (!this.dead(this.domctl(Domctl.XEN_DOMCTL_getdomaininfo, domid))) continue;
      this.deathWaiters.delete(domid);
      for (const f of set) f();
    }
    for (const [domid, last] of this.monitored) {
      const info = this.domctl(Domctl.XEN_DOMCTL_getdomaininfo, domid);
      if (this.dead(info)) {
        this.monitored.delete(domid);
        this.control.postMessage({ cmd: 'domain-event', domid, event: 'death' } satisfies DomainEvent);
        continue;
      }
      const i = info as { shutdown: boolean; shutdown_reason: number | null };
      if (i.shutdown && last !== 'shutdown') {
        this.monitored.set(domid, 'shutdown');
        const reason = i.shutdown_reason === null ? 'unknown' : (ShutdownReason[i.shutdown_reason] ?? String(i.shutdown_reason));
        this.control.postMessage({ cmd: 'domain-event', domid, event: 'shutdown', reason } satisfies DomainEvent);
      } else if (!i.shutdown) {
        this.monitored.set(domid, 'running');
      }
    }
  }

  /**
   * A create step may only change a domain that is still there: one destroyed under it (xl
   * destroy from another xl) fails the step with why, and the create's cleanup runs.
   */
  private assertAlive(domid: number): void {
    if (this.destroying.has(domid)) throw new ToolstackError(`domain ${domid} is being destroyed`);
    const info = this.domctl(Domctl.XEN_DOMCTL_getdomaininfo, domid);
    if (typeof info === 'number') throw new ToolstackError(`domain ${domid} no longer exists`);
    const state = (info as { state: string }).state;
    if (state === 'dying' || state === 'dead') throw new ToolstackError(`domain ${domid} is being destroyed`);
  }

  /** A create step: under the domain's lock, on a domain still alive. */
  private creating<T>(domid: number, step: () => Promise<T>): Promise<T> {
    return this.locks.with(domid, async () => {
      this.assertAlive(domid);
      return step();
    });
  }

  /** One verb from the simulator's xl. */
  call(op: string, a: unknown): Promise<unknown> {
    const args = (a ?? {}) as Record<string, unknown>;
    const domid = Number(args.domid);
    switch (op) {
      case 'domain-make':
      case 'disk-add':
      case 'nic-add':
      case 'console-add':
        return this.creating(domid, () => this.verb(op, args, domid));
      case 'device-remove':
        return this.locks.with((args.dev as DeviceRef).frontend, () => this.verb(op, args, domid));
      case 'disk-remove':
        return this.locks.with(domid, () => this.verb(op, args, domid));
      case 'destroy':
        // Steps already queued on the domain fail at once rather than build what is torn down.
        this.destroying.add(domid);
        return this.locks.with(domid, () => this.destroy(domid)).finally(() => {
          if (!this.locks.held(domid)) this.destroying.delete(domid);
        });
      default:
        return this.verb(op, args, domid);
    }
  }

  private async verb(op: string, args: Record<string, unknown>, domid: number): Promise<unknown> {
    switch (op) {
      case 'domain-make':
        this.monitored.set(domid, 'running');
        await this.libxl.domainMake(domid, args.cfg as DomainConfig, args.store as { gfn: number; port: number }, { introduce: args.introduce !== false });
        if (this.quirks.acpiSeedFlow && (args.cfg as DomainConfig).type === 'hvm') {
          const node = `/local/domain/${domid}/control/shutdown`;
          await this.watch.register(node, async () => {
            const v = await this.libxl.read(node);
            if (v === 'S3' || v === 'S5') await this.xs.write('/local/domain/0/acpi/state', v);
            else if (v === '' && (await this.libxl.read('/local/domain/0/acpi/state')) === 'S3') {
              await this.xs.write('/local/domain/0/acpi/state', 'S0');
            }
          });
        }
        return null;
      case 'disk-image':
        this.images.open(String(args.name), Number(args.sizeMiB ?? 16));
        return null;
      case 'disk-add':
        return this.libxl.diskAdd(domid, args.disk as DiskConfig);
      case 'nic-add':
        return this.libxl.nicAdd(domid, args.vif as VifConfig, Number(args.index ?? 0), (args.vif as VifConfig).backend ?? 0);
      case 'console-add': {
        const dev = await this.libxl.consoleAdd(domid, args.ring as { gfn: number; port: number });
        await this.consoled.connect(domid);
        return dev;
      }
      case 'console':
        return this.consoled.output(domid);
      case 'device-remove':
        return this.libxl.deviceRemove(args.dev as DeviceRef, Boolean(args.force));
      case 'disk-remove': {
        // xl block-detach: the disk as libxl recorded it, then its removal.
        const found = await this.libxl.vdevToDeviceDisk(domid, Number(args.devid));
        if (!found) throw new ToolstackError(`Device ${String(args.devid)} not connected.`);
        return this.libxl.deviceRemove(found.dev, Boolean(args.force));
      }
      case 'devices':
        return this.libxl.devices(domid);
      case 'shutdown': {
        // A shut-down domain runs no more: its guest will never ack, so there is nothing to wait
        // for (xl's death machinery reports it shut down at once).
        const info = this.domctl(Domctl.XEN_DOMCTL_getdomaininfo, domid);
        if (typeof info === 'number') throw new ToolstackError(`domain ${domid}: getdomaininfo: ${Errno[-info] ?? info}`);
        const i = info as { shutdown: boolean; shutdown_reason: number | null };
        if (i.shutdown) {
          const reason = i.shutdown_reason === null ? 'unknown' : (ShutdownReason[i.shutdown_reason] ?? String(i.shutdown_reason));
          return { acked: false, shutDown: reason };
        }
        return this.libxl.shutdownRequest(domid, args.command as 'poweroff', Number(args.timeoutNs ?? this.quirks.shutdownTimeoutNs ?? 60e9));
      }
      case 'resume':
        // xc_domain_resume (the guest sees SCHEDOP_shutdown return) and XS_RESUME, which lets
        // xenstored report this domain's next shutdown again.
        this.domctl(Domctl.XEN_DOMCTL_resumedomain, domid);
        await this.xs.resume(domid);
        this.monitored.set(domid, 'running');
        return null;
      case 'introduce': {
        // init-dom0less: XS_INTRODUCE for a domain that has been running since Xen booted it.
        const store = args.store as { gfn: number; port: number };
        await this.xs.introduce(domid, store.gfn, store.port);
        return null;
      }
      case 'wait-death':
        return this.waitDeath(domid, Number(args.timeoutNs ?? 10e9));
      case 'wait': {
        // Any of `values` (undefined in the list = the node is absent).
        const values = (Array.isArray(args.values) ? args.values : [args.value]) as (string | null)[];
        return this.libxl.waitFor(String(args.path), (v) => values.includes(v ?? null), Number(args.timeoutNs ?? 10e9));
      }
      case 'trigger':
        return this.trigger(domid, String(args.name));
      case 'acpi-s-state': {
        const r = this.kernel.hypercall(Hypercall.__HYPERVISOR_hvm_op, { op: HvmOp.HVMOP_get_param, domid, index: HvmParam.HVM_PARAM_ACPI_S_STATE });
        if (typeof r === 'number') throw new ToolstackError(`get HVM_PARAM_ACPI_S_STATE: ${r}`);
        return (r as { value: number }).value;
      }
      case 'dump':
        return this.dump(String(args.path ?? '/'), args.quiet === true && this.inspector ? this.inspector : this.xs);
      case 'read':
        return (await this.libxl.read(String(args.path))) ?? null;
      case 'tx-increment':
        return this.txIncrement(String(args.path), Number(args.times ?? 1));
      default:
        throw new ToolstackError(`unknown toolstack verb ${op}`);
    }
  }

  /** libxl_send_trigger: a domctl, except s3resume, which goes to the device model. */
  private trigger(domid: number, name: string): number {
    const triggers: Record<string, DomctlTrigger> = {
      nmi: DomctlTrigger.XEN_DOMCTL_SENDTRIGGER_NMI, reset: DomctlTrigger.XEN_DOMCTL_SENDTRIGGER_RESET,
      init: DomctlTrigger.XEN_DOMCTL_SENDTRIGGER_INIT, power: DomctlTrigger.XEN_DOMCTL_SENDTRIGGER_POWER,
      sleep: DomctlTrigger.XEN_DOMCTL_SENDTRIGGER_SLEEP,
    };
    let r: unknown;
    if (name === 's3resume') {
      // QEMU's system_wakeup: HVM_PARAM_ACPI_S_STATE = 0, and Xen's hvm_s3_resume unpauses.
      r = this.kernel.hypercall(Hypercall.__HYPERVISOR_hvm_op, { op: HvmOp.HVMOP_set_param, domid, index: HvmParam.HVM_PARAM_ACPI_S_STATE, value: 0 });
    } else if (name in triggers) {
      r = this.kernel.hypercall(Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_sendtrigger, domain: domid, trigger: triggers[name], vcpu: 0 });
    } else {
      throw new ToolstackError(`invalid trigger ${name}`);
    }
    if (typeof r === 'number' && r < 0) throw new ToolstackError(`trigger ${name}: ${Errno[-r] ?? r}`);
    return 0;
  }

  /**
   * libxl__destroy_domid: pause, remove every device (forced: the guest has no say), the
   * domain's xenstore trees, then XEN_DOMCTL_destroydomain.
   */
  async destroy(domid: number): Promise<null> {
    this.monitored.delete(domid);
    const exists = typeof this.domctl(Domctl.XEN_DOMCTL_getdomaininfo, domid) !== 'number';
    if (exists) this.domctl(Domctl.XEN_DOMCTL_pausedomain, domid);
    for (const dev of await this.libxl.devices(domid)) await this.libxl.deviceRemove(dev, true);
    // xenconsoled lets go of the console by itself, on the @releaseDomain the death fires.
    await this.libxl.domainCleanup(domid);
    if (exists) this.domctl(Domctl.XEN_DOMCTL_destroydomain, domid);
    return null;
  }

  /**
   * A dom0 tool's read-modify-write of a counter: `times` increments, each in its own transaction
   * retried on EAGAIN (the scenarios' concurrent writer). Returns how many commits were retried.
   */
  private async txIncrement(path: string, times: number): Promise<{ retries: number }> {
    let retries = 0;
    for (let i = 0; i < times; i++) {
      retries += (await this.xs.transaction(async (tx) => {
        const v = Number((await this.xs.read(path, tx)).toString('latin1'));
        await this.xs.write(path, String(v + 1), tx);
      })).retries;
    }
    return { retries };
  }

  /** Every node under `path` with its value and permissions (xenstore-ls -fp's content). */
  dump(path: string, xs: XsHandle = this.xs): Promise<NodeDump[]> {
    return xenstoreLs(xs, path);
  }
}
