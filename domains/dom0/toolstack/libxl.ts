// The toolstack's xenstore side, as libxl does it in dom0: the domain's skeleton, devices added
// in one transaction each (frontend and backend dirs with their owners and ACLs, libxl's private
// copy), the hotplug step after the backend reaches InitWait, device removal, the control/shutdown
// protocol, and cleanup on destroy.
import { XsError, type XsHandle } from '../../libs/store/xs.ts';
import { parseXenbusState, XenbusState } from '../../../hypervisor/public/io/xenbus.ts';
import { vdevFromName, XEN_IO_PROTO_ABI_NATIVE } from '../../../hypervisor/public/io/blkif.ts';
import type { Kernel } from '../../kernel/kernel.ts';
import type { Xenwatch } from '../../kernel/xenbus-watch.ts';
import { configUuid, defaultMac, type DiskConfig, type DomainConfig, type VifConfig } from './config.ts';

/** libxl's timeouts (libxl_internal.h), in ns of the domain's clock. */
export const LIBXL_INIT_TIMEOUT = 10e9;
export const LIBXL_DESTROY_TIMEOUT = 10e9;
export const LIBXL_HOTPLUG_TIMEOUT = 40e9;
/** How long xl waits for the guest to acknowledge control/shutdown. */
export const LIBXL_SHUTDOWN_ACK_TIMEOUT = 60e9;
/** libxl's default vif MTU, published read-only in the frontend dir. */
export const LIBXL_DEVICE_NIC_MTU_DEFAULT = 1500;

export type DeviceKind = 'vbd' | 'vif' | 'console';

export interface DeviceRef {
  readonly kind: DeviceKind;
  readonly devid: number;
  readonly frontend: number;
  readonly backend: number;
}

export const frontendPath = (d: DeviceRef): string =>
  d.kind === 'console' && d.devid === 0 ? `/local/domain/${d.frontend}/console` : `/local/domain/${d.frontend}/device/${d.kind}/${d.devid}`;
export const backendPath = (d: DeviceRef): string => `/local/domain/${d.backend}/backend/${d.kind}/${d.frontend}/${d.devid}`;
export const libxlPath = (d: DeviceRef): string => `/libxl/${d.frontend}/device/${d.kind}/${d.devid}`;

type Entries = readonly (readonly [string, string])[];

export class ToolstackError extends Error {}

/** A hotplug script's work (block, vif-bridge), run by the toolstack once the backend waits. */
export type HotplugRunner = (dev: DeviceRef, action: 'add' | 'remove') => Promise<void>;

/** Buggy variants of fixed libxl behaviour (planted races). */
export interface LibxlQuirks {
  /**
   * R18 (before xen f393b48c18): a suspend request that timed out is withdrawn with a plain
   * write, even when the guest acknowledged it at the last moment - so both "cancelled" and
   * "the guest suspends" happen.
   */
  readonly suspendCancelPlainWrite?: boolean;
  /**
   * R03(c) (before xen 0bdc43c8de): no empty hotplug-status in a new vif's backend dir, so a
   * netback that gates only on an existing node may race from InitWait to Connected before the
   * toolstack's wait for InitWait looks.
   */
  readonly noEmptyHotplugStatus?: boolean;
}

export class Libxl {
  constructor(
    readonly xs: XsHandle,
    readonly watch: Xenwatch,
    readonly kernel: Kernel,
    readonly hotplug: HotplugRunner,
    readonly quirks: LibxlQuirks = {},
  ) {}

  // ------------------------------------------------------------------ helpers

  async read(path: string, tx = 0): Promise<string | undefined> {
    try {
      return (await this.xs.read(path, tx)).toString('latin1');
    } catch (e) {
      if (e instanceof XsError) return undefined;
      throw e;
    }
  }

  /** Runs `body` in a transaction until it commits (EAGAIN: run it again). */
  async transaction(body: (tx: number) => Promise<void>): Promise<void> {
    await this.xs.transaction(body);
  }

  private async writeAll(tx: number, dir: string, perms: readonly string[] | undefined, entries: Entries): Promise<void> {
    if (perms) {
      await this.xs.write(dir, '', tx);
      await this.xs.setPerms(dir, perms, tx);
    }
    for (const [k, v] of entries) await this.xs.write(`${dir}/${k}`, v, tx);
  }

  /** libxl__xs_writev_perms: each key written, then given `perms`. */
  private async writevPerms(tx: number, dir: string, entries: Entries, perms: readonly string[]): Promise<void> {
    for (const [k, v] of entries) {
      await this.xs.write(`${dir}/${k}`, v, tx);
      await this.xs.setPerms(`${dir}/${k}`, perms, tx);
    }
  }

  /**
   * Waits until `pred` holds for the value at `path` (re-read at every firing of a watch on it),
   * or `timeoutNs` passes on the domain's clock. Resolves with the last value and whether it held.
   */
  async waitFor(path: string, pred: (v: string | undefined) => boolean, timeoutNs: number): Promise<{ ok: boolean; value: string | undefined }> {
    return new Promise((resolve) => {
      let done = false;
      let last: string | undefined;
      const finish = (ok: boolean): void => {
        if (done) return;
        done = true;
        timer.cancel();
        void w.then((h) => h.unregister());
        resolve({ ok, value: last });
      };
      const timer = this.kernel.setTimer(timeoutNs, () => finish(false));
      const w = this.watch.register(path, async () => {
        if (done) return;
        last = await this.read(path);
        if (pred(last)) finish(true);
      });
    });
  }

  /** Whether the device's backend runs in this toolstack's own domain (else a driver domain's). */
  backendIsHere(dev: DeviceRef): boolean {
    return dev.backend === this.kernel.domid;
  }

  // ------------------------------------------------------------------ domain

  /**
   * libxl__domain_make (the skeleton in one transaction), store_libxl_entry, then
   * libxl__build_post (memory, domid, store, vCPUs, /vm's image keys) and XS_INTRODUCE.
   */
  async domainMake(domid: number, cfg: DomainConfig, store: { gfn: number; port: number }, opts: { introduce?: boolean } = {}): Promise<void> {
    const home = `/local/domain/${domid}`;
    const uuid = configUuid(cfg, domid);
    const vm = `/vm/${uuid}`;
    const roperm = ['n0', `r${domid}`];
    const rwperm = [`n${domid}`];
    const noperm = ['n0'];
    const hvm = cfg.type === 'hvm';
    const mknod = async (tx: number, path: string, perms: readonly string[]): Promise<void> => this.writeAll(tx, path, perms, []);
    await this.transaction(async (tx) => {
      await this.xs.rm(home, tx).catch(() => undefined);
      await mknod(tx, home, roperm);
      await this.xs.rm(vm, tx).catch(() => undefined);
      await mknod(tx, vm, roperm);
      await this.xs.rm(`/libxl/${domid}`, tx).catch(() => undefined);
      await mknod(tx, `/libxl/${domid}`, noperm);
      await mknod(tx, `/libxl/${domid}/device`, noperm);
      await this.xs.write(`${home}/vm`, vm, tx);
      await this.xs.write(`${home}/name`, cfg.name, tx);
      await mknod(tx, `${home}/cpu`, roperm);
      await mknod(tx, `${home}/memory`, roperm);
      // A guest that can be suspended through an event channel publishes its port here (Linux
      // does not); device/suspend itself is created on the way, with device's ACL.
      await mknod(tx, `${home}/device`, roperm);
      await mknod(tx, `${home}/device/suspend/event-channel`, rwperm);
      await mknod(tx, `${home}/control`, roperm);
      if (hvm) await mknod(tx, `${home}/hvmloader`, roperm);
      // Guest-owned: the guest acks shutdown requests and advertises what it supports.
      const control = ['shutdown', 'feature-poweroff', 'feature-reboot', 'feature-suspend'];
      if (hvm) control.push('feature-s3', 'feature-s4');
      for (const c of [...control, 'sysrq']) await mknod(tx, `${home}/control/${c}`, rwperm);
      for (const d of ['data', 'drivers', 'feature', 'attr', 'error']) await mknod(tx, `${home}/${d}`, rwperm);
      if (cfg.driver_domain) {
        // A driver domain may run libxl and a device model of its own.
        await mknod(tx, `${home}/libxl`, rwperm);
        await mknod(tx, `${home}/device-model`, rwperm);
      }
      await this.writeAll(tx, vm, undefined, [['uuid', uuid], ['name', cfg.name]]);
      await this.writeAll(tx, `${home}/control`, undefined, [
        ['platform-feature-multiprocessor-suspend', '1'], ['platform-feature-xs_reset_watches', '1'],
      ]);
      await this.xs.write(`/libxl/${domid}/type`, hvm ? 'hvm' : 'pv', tx);
    });
    // store_libxl_entry: the device model libxl would use (its default even with no DM running).
    await this.xs.write(`/libxl/${domid}/dm-version`, 'qemu_xen');
    const kib = (cfg.memory ?? 128) * 1024;
    // libxl__domain_build's start_time (seconds.centiseconds); xensim's dom0 clock counts from
    // the host's boot, not from the epoch.
    const now = this.kernel.now();
    const startTime = `${Math.floor(now / 1e9)}.${String(Math.floor((now % 1e9) / 1e7)).padStart(2, '0')}`;
    const vments: Entries = hvm
      ? [['rtc/timeoffset', ''], ['image/ostype', 'hvm'], ['start_time', startTime]]
      : [['image/ostype', 'linux'], ['start_time', startTime]];
    const localents: Entries = hvm
      ? [['platform/acpi', '1'], ['platform/acpi_s3', '1'], ['platform/acpi_s4', '1'], ['platform/acpi_laptop_slate', '0'],
        ['platform/device-model', 'qemu_xen']]
      : [];
    await this.transaction(async (tx) => {
      await this.writeAll(tx, home, undefined, [
        ['memory/static-max', String(kib)], ['memory/target', String(kib)], ['memory/videoram', hvm ? '8192' : '-1'],
        ['domid', String(domid)], ['store/port', String(store.port)], ['store/ring-ref', String(store.gfn)],
      ]);
      for (let i = 0; i < (cfg.vcpus ?? 1); i++) await this.xs.write(`${home}/cpu/${i}/availability`, 'online', tx);
      await this.writeAll(tx, home, undefined, localents);
      await this.writeAll(tx, vm, undefined, vments);
    });
    if (opts.introduce ?? true) await this.xs.introduce(domid, store.gfn, store.port);
  }

  /** libxl__destroy_domid's xenstore part: everything the toolstack wrote for the domain. */
  async domainCleanup(domid: number): Promise<void> {
    const vm = await this.read(`/local/domain/${domid}/vm`);
    await this.transaction(async (tx) => {
      if (vm) await this.xs.rm(vm, tx).catch(() => undefined);
      await this.xs.rm(`/local/domain/${domid}`, tx).catch(() => undefined);
      await this.xs.rm(`/libxl/${domid}`, tx).catch(() => undefined);
    });
  }

  /** The devices libxl recorded for a domain (its private /libxl copy). */
  async devices(domid: number): Promise<DeviceRef[]> {
    const out: DeviceRef[] = [];
    const list = async (p: string): Promise<string[]> => this.xs.directory(p).catch(() => []);
    for (const kind of await list(`/libxl/${domid}/device`)) {
      for (const id of await list(`/libxl/${domid}/device/${kind}`)) {
        // libxl__parse_backend_path: the backend's domid is in its path.
        const be = /^\/local\/domain\/(\d+)\/backend\//.exec((await this.read(`/libxl/${domid}/device/${kind}/${id}/backend`)) ?? '');
        out.push({ kind: kind as DeviceKind, devid: Number(id), frontend: domid, backend: Number(be?.[1] ?? 0) });
      }
    }
    return out;
  }

  // ------------------------------------------------------------------ devices

  /**
   * libxl__device_add_async + libxl__device_generic_add, in one transaction: libxl's copy
   * (frontend, backend and every backend key - libxl's record, which nothing updates), the
   * frontend dir (the guest's, readable by the backend; console 0's is the backend's, as it
   * holds keys the guest must not change) with `frontendKeys` owned by the guest and
   * `readonlyFrontendKeys` by the backend, and the backend dir. Then wait for the backend's
   * InitWait and run the hotplug script. Does not wait for Connected.
   */
  async deviceAdd(dev: DeviceRef, backendKeys: Entries, frontendKeys: Entries, readonlyFrontendKeys: Entries = []): Promise<void> {
    const fe = frontendPath(dev);
    const be = backendPath(dev);
    const initialising = String(XenbusState.XenbusStateInitialising);
    const bents: Entries = [['frontend-id', String(dev.frontend)], ['online', '1'], ['state', initialising], ...backendKeys];
    const frontendPerms = [`n${dev.frontend}`, `r${dev.backend}`];
    const roFrontendPerms = [`n${dev.backend}`, `r${dev.frontend}`];
    const primaryConsole = dev.kind === 'console' && dev.devid === 0;
    await this.transaction(async (tx) => {
      const copy = libxlPath(dev);
      await this.xs.rm(copy, tx).catch(() => undefined);
      await this.writeAll(tx, copy, undefined, [['frontend', fe], ['backend', be]]);
      await this.xs.rm(fe, tx).catch(() => undefined);
      await this.writeAll(tx, fe, primaryConsole ? roFrontendPerms : frontendPerms, [['backend', be]]);
      await this.writevPerms(tx, fe, frontendKeys, frontendPerms);
      await this.writevPerms(tx, fe, readonlyFrontendKeys, roFrontendPerms);
      await this.xs.rm(be, tx).catch(() => undefined);
      await this.writeAll(tx, be, [`n${dev.backend}`, `r${dev.frontend}`], [['frontend', fe], ...bents]);
      await this.writeAll(tx, copy, undefined, bents);
    });
    if (dev.kind === 'console') return;
    const init = await this.waitFor(`${be}/state`, (v) => parseXenbusState(v) === XenbusState.XenbusStateInitWait, LIBXL_INIT_TIMEOUT);
    if (!init.ok) throw new ToolstackError(`${dev.kind} ${dev.devid}: backend did not reach InitWait (state ${init.value ?? 'gone'})`);
    // device_hotplug: a backend in another domain (a driver domain) has its script run there, by
    // that domain's `xl devd`.
    if (this.backendIsHere(dev)) await this.hotplug(dev, 'add');
  }

  async diskAdd(domid: number, disk: DiskConfig, backend = 0): Promise<DeviceRef> {
    const devid = vdevFromName(disk.vdev);
    if (devid === undefined) throw new ToolstackError(`bad vdev ${disk.vdev}`);
    const dev: DeviceRef = { kind: 'vbd', devid, frontend: domid, backend };
    const devtype = disk.devtype ?? 'disk';
    // For PV kernels too old to write it themselves (blkfront before 2.6.26).
    const pv = (await this.read(`/libxl/${domid}/type`)) === 'pv';
    await this.deviceAdd(dev, [
      ['params', disk.target], ['script', '/etc/xen/scripts/block'], ['removable', devtype === 'cdrom' ? '1' : '0'],
      ['bootable', '1'], ['dev', disk.vdev], ['type', 'phy'], ['mode', disk.mode ?? 'w'], ['device-type', devtype],
      ['discard-enable', '0'],
    ], [
      ['backend-id', String(backend)], ['state', String(XenbusState.XenbusStateInitialising)], ['virtual-device', String(devid)],
      ['device-type', devtype], ['trusted', '1'], ...(pv ? [['protocol', XEN_IO_PROTO_ABI_NATIVE] as const] : []),
    ]);
    return dev;
  }

  async nicAdd(domid: number, vif: VifConfig, index: number, backend = 0): Promise<DeviceRef> {
    const devid = vif.devid ?? index;
    const dev: DeviceRef = { kind: 'vif', devid, frontend: domid, backend };
    const mac = vif.mac ?? defaultMac(domid, devid);
    await this.deviceAdd(dev, [
      ['script', '/etc/xen/scripts/vif-bridge'], ['mac', mac], ['bridge', vif.bridge ?? 'xenbr0'], ['handle', String(devid)],
      ['type', 'vif'], ...(this.quirks.noEmptyHotplugStatus ? [] : [['hotplug-status', ''] as const]),
    ], [
      ['backend-id', String(backend)], ['state', String(XenbusState.XenbusStateInitialising)], ['handle', String(devid)],
      ['mac', mac], ['trusted', '1'],
    ], [['mtu', String(LIBXL_DEVICE_NIC_MTU_DEFAULT)]]);
    return dev;
  }

  /**
   * Console 0 (libxl__device_console_add with the build state): no xenbus handshake and no
   * frontend state; the ring page and port come from the domain builder. Only backend-id is
   * the guest's.
   */
  async consoleAdd(domid: number, ring: { gfn: number; port: number }, backend = 0): Promise<DeviceRef> {
    const dev: DeviceRef = { kind: 'console', devid: 0, frontend: domid, backend };
    await this.deviceAdd(dev, [['protocol', 'vt100']], [['backend-id', String(backend)]], [
      ['limit', '1048576'], ['type', 'xenconsoled'], ['output', 'pty'], ['tty', ''],
      ['port', String(ring.port)], ['ring-ref', String(ring.gfn)],
    ]);
    return dev;
  }

  /**
   * libxl_vdev_to_device_disk (libxl__device_disk_from_xenstore): the disk as xl block-detach
   * learns it, read key by key from libxl's own copy - the backend's path (which names the
   * backend's domain), params, type, dev, removable, mode, device-type. Undefined when libxl has
   * no such disk; an error when its copy lacks a key that every disk has.
   */
  async vdevToDeviceDisk(domid: number, devid: number): Promise<{ dev: DeviceRef; disk: DiskConfig } | undefined> {
    const copy = libxlPath({ kind: 'vbd', devid, frontend: domid, backend: 0 });
    const backend = await this.read(`${copy}/backend`);
    if (backend === undefined) return undefined;
    const be = /^\/local\/domain\/(\d+)\/backend\//.exec(backend);
    if (!be) throw new ToolstackError(`Unable to fetch device backend domid from ${backend}`);
    // "params" may be absent (an empty cdrom drive); every other key must be there.
    const params = await this.read(`${copy}/params`);
    const keys: Record<string, string> = {};
    for (const key of ['type', 'dev', 'removable', 'mode', 'device-type']) {
      const v = await this.read(`${copy}/${key}`);
      if (v === undefined) throw new ToolstackError(`Missing xenstore node ${copy}/${key}`);
      keys[key] = v;
    }
    return {
      dev: { kind: 'vbd', devid, frontend: domid, backend: Number(be[1]) },
      disk: { vdev: keys.dev, target: params ?? '', mode: keys.mode === 'w' ? 'w' : 'r', devtype: keys['device-type'] === 'cdrom' ? 'cdrom' : 'disk' },
    };
  }

  /**
   * libxl__initiate_device_generic_remove: online=0 and Closing on the backend, wait for Closed,
   * then the hotplug script's remove (a driver domain's devd runs it and deletes the backend dir,
   * which is waited for) and the directories. `force` deletes the frontend dir first
   * (the guest gets no say) and does not wait.
   */
  async deviceRemove(dev: DeviceRef, force = false): Promise<{ clean: boolean }> {
    const fe = frontendPath(dev);
    const be = backendPath(dev);
    let clean = true;
    if (dev.kind !== 'console') {
      if (force) await this.xs.rm(fe).catch(() => undefined);
      let exists = true;
      await this.transaction(async (tx) => {
        const state = await this.read(`${be}/state`, tx);
        exists = state !== undefined;
        if (!exists) return;
        await this.xs.write(`${be}/online`, '0', tx);
        if (parseXenbusState(state) !== XenbusState.XenbusStateClosed) {
          await this.xs.write(`${be}/state`, String(XenbusState.XenbusStateClosing), tx);
        }
      });
      if (exists) {
        const closed = await this.waitFor(`${be}/state`,
          (v) => v === undefined || parseXenbusState(v) === XenbusState.XenbusStateClosed, LIBXL_DESTROY_TIMEOUT);
        clean = closed.ok;
      }
      if (this.backendIsHere(dev)) {
        await this.hotplug(dev, 'remove');
      } else if (exists) {
        // The driver domain's devd runs the remove script and then deletes the backend dir:
        // wait for that (libxl's xswait on the backend path), then clean up regardless.
        const gone = await this.waitFor(be, (v) => v === undefined, LIBXL_DESTROY_TIMEOUT);
        clean &&= gone.ok;
      }
    }
    await this.transaction(async (tx) => {
      await this.pathCleanup(tx, fe);
      await this.pathCleanup(tx, libxlPath(dev));
      await this.pathCleanup(tx, be);
    });
    return { clean };
  }

  /** libxl__xs_path_cleanup: remove the node, then each parent left empty by it. */
  async pathCleanup(tx: number, path: string): Promise<void> {
    await this.xs.rm(path, tx).catch(() => undefined);
    for (let p = path.slice(0, path.lastIndexOf('/')); p.length > 1; p = p.slice(0, p.lastIndexOf('/'))) {
      const kids = await this.xs.directory(p, tx).catch(() => undefined);
      if (kids === undefined || kids.length > 0) return;
      await this.xs.rm(p, tx).catch(() => undefined);
    }
  }

  /** xen-init-dom0: dom0's own entries, which the toolstack expects to find. */
  async initDom0(): Promise<void> {
    await this.transaction(async (tx) => {
      await this.xs.write('/local/domain/0/name', 'Domain-0', tx);
      await this.xs.write('/local/domain/0/domid', '0', tx);
    });
  }

  // ------------------------------------------------------------------ power

  /**
   * libxl_domain_shutdown/_reboot/suspend's request: write the command to control/shutdown and
   * wait for the guest's ack ("" or the node gone). A suspend that times out is withdrawn.
   */
  async shutdownRequest(domid: number, cmd: 'poweroff' | 'reboot' | 'suspend' | 'halt', timeoutNs = LIBXL_SHUTDOWN_ACK_TIMEOUT): Promise<{ acked: boolean }> {
    const node = `/local/domain/${domid}/control/shutdown`;
    let present = true;
    await this.transaction(async (tx) => {
      present = (await this.read(node, tx)) !== undefined;
      if (present) await this.xs.write(node, cmd, tx);
    });
    if (!present) throw new ToolstackError(`domain ${domid} has no PV control node (ERROR_NOPARAVIRT)`);
    const ack = await this.waitFor(node, (v) => v === undefined || v === '', timeoutNs);
    if (!ack.ok && cmd === 'suspend') {
      if (this.quirks.suspendCancelPlainWrite) {
        await this.xs.write(node, '');
        return { acked: false };
      }
      // Withdraw the request unless a late ack raced in (R18's fix): then it counts as acked.
      let late = false;
      await this.transaction(async (tx) => {
        const v = await this.read(node, tx);
        late = v !== cmd;
        if (!late) await this.xs.write(node, '', tx);
      });
      return { acked: late };
    }
    return { acked: ack.ok };
  }
}
