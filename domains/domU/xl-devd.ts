// `xl devd` (libxl_device_events_handler): the toolstack's daemon in a driver domain. Dom0's libxl
// adds a device whose backend is another domain without running its hotplug script there (it
// cannot: the vif is that domain's net device), so the driver domain's devd watches its own
// backend/ directory and runs the script itself - `add` for a backend in InitWait that is online,
// `remove` for one that is Closed and offline - then removes a removed device's backend dir. It
// is a user process: its xenstore connection is a /dev/xen/xenbus file, its scripts processes of
// their own, and libxl's event loop handles one watch event at a time while scripts run on.
//
// R13(a), xen 7d9fa19ec4 (QubesOS/qubes-issues#1990): devd started after a backend had reached
// InitWait never ran its script, since it only acted on watch events and the transition was
// over before its watch existed. Fixed: arm the watch, then walk what is already there and
// handle each device as if an event had come (watch first, so nothing falls in between; the
// handler is idempotent, so a device seen both ways is added once).
//
// R13(b), xen fd519a5119: a device removed while its add script still ran had its one record
// freed by the remove, and the add's completion then used it. Fixed: each operation works on a
// copy it owns.
import type { XsHandle } from '../libs/store/xs.ts';
import { parseXenbusState, XenbusState } from '../../hypervisor/public/io/xenbus.ts';
import { backendPath, type DeviceKind, type DeviceRef, type HotplugRunner } from '../dom0/toolstack/libxl.ts';

export interface DevdQuirks {
  /**
   * R13(a) (before xen 7d9fa19ec4): act only on watch events, with no walk of the backend
   * directory after the watch is armed - a device that reached InitWait before devd started
   * never has its script run.
   */
  readonly onlyEventsAfterStart?: boolean;
  /**
   * R13(b) (before xen fd519a5119): a device's add and its remove work on the one record devd
   * keeps for it, which the remove frees when it completes - an add still running then
   * (its script is slow) touches freed memory when it completes.
   */
  readonly addRemoveShareRecord?: boolean;
}

/**
 * devd's record of a device (libxl__ddomain_device and the libxl__device in it). Freed memory
 * is modelled: any use after free() throws, as an allocator's debug mode would abort.
 */
class DeviceRecord {
  private freed = false;

  constructor(private readonly ref: DeviceRef, readonly be: string) {}

  get dev(): DeviceRef {
    if (this.freed) throw new Error(`xl devd: use after free of the record of ${this.be}`);
    return this.ref;
  }

  /** The copy an asynchronous operation owns (fd519a5119's fix). */
  copy(): DeviceRecord {
    return new DeviceRecord({ ...this.dev }, this.be);
  }

  free(): void {
    void this.dev;
    this.freed = true;
  }
}

/** What devd reports to the simulator's trace: a script it started or finished. */
export interface DevdEvent {
  readonly kind: 'devd';
  readonly event: 'add' | 'add-done' | 'remove' | 'remove-done' | 'script-failed';
  readonly device: string;
  readonly error?: string;
}

/** The kernel side devd needs: its preemption points, the trace. */
export interface DevdKernel {
  readonly point: ((task: string) => Promise<void>) | undefined;
  /** A DevdEvent, or the daemon's crash (kind 'oops'). */
  trace(ev: DevdEvent | { readonly kind: 'oops'; readonly where: string; readonly error: string }): void;
}

/** libxl's token for the backend watch (any unique string; the watch is devd's only one). */
const TOKEN = 'devd-backend';
const KINDS: readonly DeviceKind[] = ['vbd', 'vif'];

export class XlDevd {
  /** Devices an add was started for and no remove yet (libxl's ddev list), by backend path. */
  private readonly added = new Map<string, DeviceRecord>();
  private readonly queue: string[] = [];
  private draining = false;
  /** Its own domid, as libxl__get_domid reads it (`domid` in its home). */
  private domid = -1;
  /** /local/domain/<domid>/backend. */
  root = '';

  constructor(
    private readonly k: DevdKernel,
    private readonly xs: XsHandle,
    private readonly hotplug: HotplugRunner,
    private readonly quirks: DevdQuirks = {},
    /** The task this process is (its libxl event loop). */
    private readonly task = 'xl devd',
  ) {}

  /**
   * libxl_device_events_handler: its own domid, the backend watch, then (fixed) a look at what
   * is there already.
   */
  async start(): Promise<void> {
    this.xs.on('watch', (path: string, token: string) => {
      if (token !== TOKEN) return;
      this.queue.push(path);
      void this.drain();
    });
    const domid = await this.read('domid');
    if (domid === undefined || !/^\d+$/.test(domid)) throw new Error(`xl devd: cannot read this domain's domid (${domid ?? 'absent'})`);
    this.domid = Number(domid);
    this.root = `/local/domain/${this.domid}/backend`;
    await this.xs.watch(this.root, TOKEN);
    if (this.quirks.onlyEventsAfterStart) return;
    for (const kind of await this.list(this.root)) {
      for (const fe of await this.list(`${this.root}/${kind}`)) {
        for (const id of await this.list(`${this.root}/${kind}/${fe}`)) this.queue.push(`${this.root}/${kind}/${fe}/${id}/state`);
      }
    }
    await this.drain();
  }

  private async list(path: string): Promise<string[]> {
    return this.xs.directory(path).catch(() => []);
  }

  private async read(path: string): Promise<string | undefined> {
    try {
      return (await this.xs.read(path)).toString('latin1');
    } catch {
      return undefined;
    }
  }

  /** libxl's event loop: one event at a time. */
  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.queue.length) {
        const path = this.queue.shift()!;
        if (this.k.point) await this.k.point(this.task);
        await this.backendChanged(path);
      }
    } finally {
      this.draining = false;
    }
  }

  /**
   * backend_watch_callback: which device the path is under (the watch fires for the directory
   * itself and for every node below it; anything that is not a device of a known kind is
   * ignored), then its state and online decide.
   */
  private async backendChanged(path: string): Promise<void> {
    const m = new RegExp(`^${this.root}/([a-z]+)/(\\d+)/(\\d+)(?:/|$)`).exec(path);
    if (!m || !KINDS.includes(m[1] as DeviceKind)) return;
    const dev: DeviceRef = { kind: m[1] as DeviceKind, frontend: Number(m[2]), devid: Number(m[3]), backend: this.domid };
    const be = `${this.root}/${dev.kind}/${dev.frontend}/${dev.devid}`;
    const state = parseXenbusState(await this.read(`${be}/state`));
    const online = await this.read(`${be}/online`);
    const shared = this.quirks.addRemoveShareRecord ?? false;
    if (state === XenbusState.XenbusStateInitWait && online === '1' && !this.added.has(be)) {
      const rec = new DeviceRecord(dev, be);
      this.added.set(be, rec);
      this.spawn(shared ? rec : rec.copy(), 'add', !shared);
    } else if (state === XenbusState.XenbusStateClosed && online === '0' && this.added.has(be)) {
      const rec = this.added.get(be)!;
      this.added.delete(be);
      if (shared) {
        this.spawn(rec, 'remove', true);
      } else {
        this.spawn(rec.copy(), 'remove', true);
        rec.free();
      }
    }
  }

  /**
   * The script runs as a process of its own; the event loop goes on meanwhile. Its completion
   * reads the record again (libxl's callback gets the device from it) and frees it if `owned`.
   */
  private spawn(rec: DeviceRecord, action: 'add' | 'remove', owned: boolean): void {
    const be = rec.be;
    this.k.trace({ kind: 'devd', event: action, device: be });
    void (async () => {
      let failed = false;
      try {
        await this.hotplug(rec.dev, action);
      } catch (e) {
        failed = true;
        this.k.trace({ kind: 'devd', event: 'script-failed', device: be, error: e instanceof Error ? e.message : String(e) });
      }
      // libxl__device_destroy in the backend's domain: the removed device's backend dir goes.
      const dev = rec.dev;
      if (action === 'remove') await this.xs.rm(backendPath(dev)).catch(() => undefined);
      if (owned) rec.free();
      if (!failed) this.k.trace({ kind: 'devd', event: action === 'add' ? 'add-done' : 'remove-done', device: be });
    })().catch((e: unknown) => this.k.trace({ kind: 'oops', where: 'xl devd', error: e instanceof Error ? e.message : String(e) }));
  }
}
