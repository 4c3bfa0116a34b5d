// The xenbus device model of a Linux kernel, both ends: a bus watches its root (`device` in a
// guest, `backend` in a backend domain), probes a new device directory whose own state is
// Initialising, reads who the other end is, watches the other end's state and hands every change
// to the driver. Devices whose directory vanishes are removed. Helpers follow xenbus_client.c:
// switch_state (cached, transactional, never resurrecting a deleted dir), dev_fatal, grant_ring,
// alloc_evtchn.
import { XsError, type XsHandle } from '../libs/store/xs.ts';
import { parseXenbusState, XenbusState, xenbusStateName } from '../../hypervisor/public/io/xenbus.ts';
import type { Kernel } from './kernel.ts';
import { type XenbusWatch, Xenwatch } from './xenbus-watch.ts';

export type XenbusRole = 'frontend' | 'backend';

/** The task that resumes devices after a suspend (the 2006 kernels' xen_suspend thread). */
export const RESUME_TASK = 'suspend';

/** A driver for one device type (vbd, vif, console). */
export interface XenbusDriver {
  readonly type: string;
  probe(dev: XenbusDevice): Promise<void>;
  /** The other end's state changed (or was read for the first time). */
  otherendChanged(dev: XenbusDevice, state: XenbusState): Promise<void>;
  /** The device is going away (its directory vanished, or the driver unregistered it). */
  remove(dev: XenbusDevice): Promise<void>;
  /**
   * drv->resume: the domain came back from suspend (maybe in a new domain, with a new other end);
   * drop what the old connection held and set up a new one.
   */
  resume?(dev: XenbusDevice): Promise<void>;
}

/** Knobs for the buggy variants of known races (off = the fixed code). */
export interface XenbusQuirks {
  /** R01: the xenbus client records a watch's token after XS_WATCH's reply (see Xenwatch). */
  readonly watchRecordAfterReply?: boolean;
  /** Fault: shared rings start at this index instead of 0 (drivers must not assume 0). */
  readonly ringStart?: number;
  /**
   * R04 (xen f207095aac): cache the new state before the transaction commits, so an aborted
   * commit leaves the cache saying a state that xenstore never got - and the retry is skipped.
   */
  readonly cacheStateInsideTransaction?: boolean;
  /**
   * R17 (before Linux d10e0cc113c9): transactions of /dev/xen/xenbus users count for xs_suspend,
   * which runs after user space is frozen, so one left open stops the suspend for good.
   */
  readonly userTransactionsBlockSuspend?: boolean;
  /**
   * R16 (before Linux a3607581cd49): use the xenstore ring as soon as the page is there, though
   * its `connection` field still says XENSTORE_RECONNECT (a dom0less guest booted before
   * xenstored introduced it): requests written then are wiped by the introduction's reset.
   */
  readonly ringBeforeConnected?: boolean;
  /**
   * The guest implements the ring's reconnection protocol (docs/misc/xenstore-ring.txt): after
   * this long (virtual ns) with a request unanswered and the server silent, it asks for a ring
   * reset and sends again what was lost (see xenbus.ts). Unset: as Linux, it waits for ever.
   */
  readonly ringReconnectAfterNs?: number;
  /**
   * R05 (b), before xen 9f640de2b0: xenbus_dev_resume arms the otherend watch before the driver's
   * resume hook, so the watch's initial firing may run the driver's otherend handler while it
   * still holds its pre-suspend ring - and the hook then tears down what that handler set up.
   */
  readonly watchOtherendBeforeResume?: boolean;
  /**
   * A kernel before Linux's "xen/xenbus: better handle backend crash": a watch event under an
   * existing frontend never makes xenbus_dev_changed take it for a replaced device. With the
   * check, its read of the state and its look at the cached state are not atomic: a resume's
   * switch to Initialised landing between them reads as a reset, and the device is dropped.
   */
  readonly noStateResetCheck?: boolean;
}

/**
 * What a bus reports to the simulator's trace: a device's own state as it is being committed in
 * transaction `tx_id`. The trace shows it at that commit, or not at all if the commit fails.
 */
export interface XenbusStateEvent {
  readonly kind: 'xenbus';
  readonly role: XenbusRole;
  readonly device: string;
  readonly path: string;
  readonly state: XenbusState;
  readonly stateName: string;
  readonly tx_id: number;
}

async function readOr(xs: XsHandle, path: string, tx = 0): Promise<string | undefined> {
  try {
    return (await xs.read(path, tx)).toString('latin1');
  } catch (e) {
    if (e instanceof XsError) return undefined;
    throw e;
  }
}

export class XenbusDevice {
  /** The state this end last wrote (dev->state). */
  state = XenbusState.XenbusStateInitialising;
  otherend = '';
  otherendId = -1;
  otherendWatch: XenbusWatch | undefined;
  /** The driver's per-device data. */
  data: unknown;
  removed = false;
  /**
   * The device's directory was taken away under it (forced removal, or removed and re-added
   * before the bus looked): its xenstore nodes now belong to whoever comes next, so this end
   * writes nothing there any more.
   */
  vanished = false;

  constructor(
    readonly bus: XenbusBus,
    /** Absolute directory of this end, e.g. /local/domain/1/device/vbd/51712. */
    readonly nodename: string,
    /** `vbd/51712` (frontend) or `vbd/1/51712` (backend). */
    readonly name: string,
    readonly devicetype: string,
  ) {}

  get xs(): XsHandle {
    return this.bus.xs;
  }

  get kernel(): Kernel {
    return this.bus.kernel;
  }

  async read(key: string): Promise<string | undefined> {
    return readOr(this.xs, `${this.nodename}/${key}`);
  }

  async readOtherend(key: string): Promise<string | undefined> {
    return readOr(this.xs, `${this.otherend}/${key}`);
  }

  /**
   * xenbus_switch_state: nothing if already there; otherwise write `state` in a transaction, but
   * only while the directory's state node still exists (a removed device is not brought back).
   */
  async switchState(s: XenbusState): Promise<void> {
    if (s === this.state || this.vanished) return;
    const quirk = this.bus.quirks.cacheStateInsideTransaction;
    for (;;) {
      const tx = await this.xs.transactionStart();
      const current = await readOr(this.xs, `${this.nodename}/state`, tx);
      if (current === undefined) {
        await this.xs.transactionEnd(tx, false).catch(() => undefined);
        return;
      }
      // Back at Initialising though this end wrote something else: the toolstack replaced the
      // device, and the state node is the new one's (Linux "xen/xenbus: better handle backend crash").
      if (parseXenbusState(current) === XenbusState.XenbusStateInitialising && this.state !== XenbusState.XenbusStateInitialising) {
        this.vanished = true;
        await this.xs.transactionEnd(tx, false).catch(() => undefined);
        return;
      }
      await this.xs.write(`${this.nodename}/state`, String(s), tx);
      if (quirk) this.state = s;
      // Announced before the commit: the simulator places it at xenstored's commit of `tx`
      // (sim/trace/xenbus-commit-order.ts), so the trace shows state changes in commit order.
      this.bus.traceState(this, s, tx);
      let ok: boolean;
      try {
        ok = await this.xs.transactionEnd(tx, true);
      } catch (e) {
        if (e instanceof XsError && e.code === 'EAGAIN') ok = false;
        else throw e;
      }
      if (ok) break;
      // EAGAIN: the buggy variant's cache already says `s`, so its retry writes nothing.
      if (quirk && this.state === s) return;
    }
    this.state = s;
  }

  /** xenbus_dev_fatal: record the error under error/<nodename> and head for Closing. */
  async devFatal(errno: number, msg: string): Promise<void> {
    const rel = this.nodename.replace(/^\/local\/domain\/\d+\//, '');
    await this.xs.write(`${this.bus.home}/error/${rel}/error`, `${errno} ${msg}`).catch(() => undefined);
    await this.switchState(XenbusState.XenbusStateClosing);
  }

  /** xenbus_grant_ring: grant the other end our ring page, read-write. */
  grantRing(gfn: number): number {
    return this.kernel.grantForeignAccess(this.otherendId, gfn, false);
  }

  /** xenbus_alloc_evtchn: an unbound port for the other end to bind. */
  allocEvtchn(): number {
    return this.kernel.allocUnbound(this.otherendId);
  }
}

export interface XenbusBusOptions {
  readonly role: XenbusRole;
  readonly quirks?: XenbusQuirks;
  /** The simulator's trace of device states. */
  readonly trace?: (ev: XenbusStateEvent) => void;
}

export class XenbusBus {
  readonly devices = new Map<string, XenbusDevice>();
  private readonly drivers = new Map<string, XenbusDriver>();
  readonly watch: Xenwatch;
  readonly role: XenbusRole;
  readonly quirks: XenbusQuirks;
  /** /local/domain/<self>. */
  readonly home: string;
  private readonly root: string;
  private readonly trace: ((ev: XenbusStateEvent) => void) | undefined;

  constructor(readonly kernel: Kernel, readonly xs: XsHandle, opts: XenbusBusOptions, watch?: Xenwatch) {
    this.role = opts.role;
    this.quirks = opts.quirks ?? {};
    this.trace = opts.trace;
    this.home = `/local/domain/${kernel.domid}`;
    this.root = `${this.home}/${this.role === 'frontend' ? 'device' : 'backend'}`;
    this.watch = watch ?? new Xenwatch(xs, this.role === 'frontend' ? 'fe' : 'be');
  }

  register(driver: XenbusDriver): void {
    this.drivers.set(driver.type, driver);
  }

  /** Arm the watch on the root first, then enumerate what is already there (no lost device). */
  async start(): Promise<void> {
    await this.watch.register(this.root, (path) => this.changed(path));
    for (const type of await this.list(this.root)) {
      if (!this.drivers.has(type)) continue;
      if (this.role === 'frontend') {
        for (const id of await this.list(`${this.root}/${type}`)) await this.nodeChanged(type, [id]);
      } else {
        for (const fe of await this.list(`${this.root}/${type}`)) {
          for (const id of await this.list(`${this.root}/${type}/${fe}`)) await this.nodeChanged(type, [fe, id]);
        }
      }
    }
  }

  private async list(path: string): Promise<string[]> {
    try {
      return await this.xs.directory(path);
    } catch (e) {
      if (e instanceof XsError) return [];
      throw e;
    }
  }

  /** A watch event under the root: find which device directory it concerns. */
  private async changed(path: string): Promise<void> {
    if (!path.startsWith(`${this.root}/`)) return;
    const parts = path.slice(this.root.length + 1).split('/');
    const depth = this.role === 'frontend' ? 2 : 3;
    if (parts.length < depth) return;
    const type = parts[0];
    if (!this.drivers.has(type)) return;
    await this.nodeChanged(type, parts.slice(1, depth));
  }

  private async nodeChanged(type: string, ids: string[]): Promise<void> {
    const name = [type, ...ids].join('/');
    const nodename = `${this.root}/${name}`;
    const existing = this.devices.get(name);
    const exists = (await readOr(this.xs, nodename)) !== undefined;
    if (!exists) {
      // xenbus_cleanup_devices: removed from xenstore under the driver's feet.
      if (existing) {
        existing.vanished = true;
        await this.unregister(existing);
      }
      return;
    }
    if (existing && !(await this.replaced(existing))) return;
    // xenbus_probe_node: only a device still Initialising is probed.
    if (parseXenbusState(await readOr(this.xs, `${nodename}/state`)) !== XenbusState.XenbusStateInitialising) return;
    const dev = new XenbusDevice(this, nodename, name, type);
    this.devices.set(name, dev);
    if (!(await this.readOtherendDetails(dev))) {
      this.devices.delete(name);
      return;
    }
    await this.drivers.get(type)!.probe(dev);
    if (dev.removed) return;
    await this.watchOtherend(dev);
  }

  /**
   * A frontend whose directory was removed and re-added before this bus looked: the new device's
   * state reads Initialising while ours moved on, or its backend is another domain. The old device
   * is unregistered (writing nothing, it has vanished) so the new one is probed in its place.
   * Backends are created by the toolstack in dom0 and removed in order, so only frontends check.
   */
  private async replaced(dev: XenbusDevice): Promise<boolean> {
    if (this.role !== 'frontend') return dev.vanished;
    if (!dev.vanished && !this.quirks.noStateResetCheck) {
      const state = parseXenbusState(await dev.read('state'));
      const backendId = await dev.read('backend-id');
      const backend = backendId !== undefined && /^\d+$/.test(backendId) ? Number(backendId) : dev.otherendId;
      if (state === XenbusState.XenbusStateInitialising && (state !== dev.state || backend !== dev.otherendId)) dev.vanished = true;
    }
    if (!dev.vanished) return false;
    await this.unregister(dev);
    return true;
  }

  /**
   * A device the kernel had before it suspended: its struct survived in guest memory, so it is
   * this bus's again without a probe (the driver restores its own data), still holding the state
   * it cached before suspend. resumeDevice brings it back to life.
   */
  adopt(name: string, devicetype: string, state: XenbusState): XenbusDevice {
    if (!this.drivers.get(devicetype)?.resume) throw new Error(`xenbus: no ${devicetype} driver with a resume hook for ${name}`);
    const dev = new XenbusDevice(this, `${this.root}/${name}`, name, devicetype);
    dev.state = state;
    this.devices.set(name, dev);
    return dev;
  }

  /**
   * xenbus_dev_resume (fixed order, xen 9f640de2b0 and Linux since): talk_to_otherend re-reads
   * who and where the other end is now (a restore brings new backends), the cached state goes back
   * to Initialising, the driver's resume hook runs, and only then is the otherend watch armed again,
   * whose initial firing finds the driver set up anew. It runs in the suspend thread (in the kernels
   * of that time a thread of its own, so xenwatch runs beside it), which may lose the CPU between
   * these steps. False if the other end is not there (the device stays, unconnected).
   */
  async resumeDevice(dev: XenbusDevice): Promise<boolean> {
    const k = this.kernel;
    const driver = this.drivers.get(dev.devicetype);
    await dev.otherendWatch?.unregister();
    dev.otherendWatch = undefined;
    if (!(await this.readOtherendDetails(dev))) return false;
    if (this.quirks.watchOtherendBeforeResume) {
      // The watch goes in as soon as the other end is known, before the state reset and the hook
      // (the placement of the reset in the 2006 code was not read: an assumption). A handler that
      // runs before the reset sees the stale cached state and leaves the device alone.
      await this.watchOtherend(dev);
      if (k.point) await k.point(RESUME_TASK);
      dev.state = XenbusState.XenbusStateInitialising;
      if (k.point) await k.point(RESUME_TASK);
      if (!dev.removed) await driver?.resume?.(dev);
      return true;
    }
    dev.state = XenbusState.XenbusStateInitialising;
    if (k.point) await k.point(RESUME_TASK);
    await driver?.resume?.(dev);
    if (k.point) await k.point(RESUME_TASK);
    if (!dev.removed) await this.watchOtherend(dev);
    return true;
  }

  /** xenbus_read_otherend_details: the peer's id and directory, which must exist. */
  private async readOtherendDetails(dev: XenbusDevice): Promise<boolean> {
    const [idKey, pathKey] = this.role === 'frontend' ? ['backend-id', 'backend'] : ['frontend-id', 'frontend'];
    const id = await dev.read(idKey);
    const path = await dev.read(pathKey);
    if (id === undefined || path === undefined || !/^\d+$/.test(id) || path === '') return false;
    if ((await readOr(this.xs, path)) === undefined) return false;
    dev.otherendId = Number(id);
    dev.otherend = path;
    return true;
  }

  /** The otherend watch: every firing (the first included) re-reads the peer's state. */
  async watchOtherend(dev: XenbusDevice): Promise<void> {
    await dev.otherendWatch?.unregister();
    const driver = this.drivers.get(dev.devicetype)!;
    dev.otherendWatch = await this.watch.register(`${dev.otherend}/state`, async (path) => {
      if (dev.removed || (path !== dev.otherend && !path.startsWith(`${dev.otherend}/`))) return;
      const state = parseXenbusState(await readOr(this.xs, `${dev.otherend}/state`));
      await driver.otherendChanged(dev, state);
    });
  }

  /** device_unregister: the driver's remove, then forget the device. */
  async unregister(dev: XenbusDevice): Promise<void> {
    if (dev.removed) return;
    dev.removed = true;
    this.devices.delete(dev.name);
    await dev.otherendWatch?.unregister();
    await this.drivers.get(dev.devicetype)?.remove(dev);
  }

  /** Where a new shared ring's indexes start (0 unless a fault says otherwise). */
  ringStart(): number {
    return this.quirks.ringStart ?? 0;
  }

  /** Several keys in one transaction (retried on EAGAIN), as drivers publish their details. */
  async transactionWrite(entries: readonly (readonly [string, string])[]): Promise<void> {
    await this.xs.transaction(async (tx) => {
      for (const [k, v] of entries) await this.xs.write(k, v, tx);
    });
  }

  traceState(dev: XenbusDevice, s: XenbusState, tx: number): void {
    this.trace?.({
      kind: 'xenbus', role: this.role, device: dev.name, path: `${dev.nodename}/state`, state: s, stateName: xenbusStateName(s), tx_id: tx,
    });
  }
}
