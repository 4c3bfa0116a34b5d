// `xl`: the toolstack verbs against a running host. The domain builder's part (memory, special
// pages, start_info, the vCPU) is the host's; everything xenstore is dom0's toolstack (libxl in
// dom0), reached by message. Like the `xl create` process, this object stays as each domain's
// monitor: SHUTDOWN events from dom0's @releaseDomain watch trigger on_poweroff/on_reboot/...
import type { DomainConfig, ShutdownAction, VifConfig } from '../domains/dom0/toolstack/config.ts';
import type { DeviceRef } from '../domains/dom0/toolstack/libxl.ts';
import type { DomainEvent, NodeDump } from '../domains/dom0/toolstack/toolstack.ts';
import type { GuestArgs, GuestCommand } from '../domains/domU/guest.ts';
import { vdevFromName } from '../hypervisor/public/io/blkif.ts';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { type BuiltDomain, type HostRuntime, ToolstackCallError, XENSTORE_DOMAIN_NAME } from './host-runtime.ts';
import { configUuid, defaultMac } from '../domains/dom0/toolstack/config.ts';
import { readSaveImage, type RestoredImage } from '../domains/dom0/toolstack/migration/restore-image.ts';
import { HypervisorError } from '../hypervisor/host.ts';
import { ShutdownReason } from '../hypervisor/public/sched.ts';
import { GuestSchema } from './config.ts';
import { imageP2mSize, restoreMemory, saveDomain } from './xl-saverestore.ts';
import { XenstoreConnection, XenstoreDomainInterface } from '../hypervisor/public/io/xs_wire.ts';

/** Omit over each member of a union (plain Omit keeps only the keys all members share). */
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

/** '.ts' when running the sources under tsx, '.js' when running dist/: domains load the same kind. */
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const GUEST = new URL(`../domains/domU/guest${EXT}`, import.meta.url).href;

export interface XlDomain {
  readonly domid: number;
  readonly cfg: DomainConfig;
  state: 'running' | 'paused' | 'shutdown' | 'dying';
  shutdownReason?: string;
  /** The store and console pfns the builder chose (HVM_PARAM_STORE_PFN / CONSOLE_PFN). */
  readonly store: number;
  readonly console: number;
}

export interface CreateOptions {
  /** xl create -p: leave it paused. */
  readonly paused?: boolean;
  /** The guest kernel's options (quirks, timeouts). */
  readonly guest?: GuestArgs;
  /** A guest program other than the default PV kernel. */
  readonly program?: string;
  /**
   * A dom0less-style start (R16): Xen's builder marks the store page XENSTORE_RECONNECT, the
   * guest is started without waiting for xenstored, and init-dom0less's XS_INTRODUCE comes as
   * it boots (the skeleton and devices are written first).
   */
  readonly dom0less?: boolean;
}

/** Pages in a MiB of guest memory. */
const PAGES_PER_MIB = (1 << 20) / 4096;

/**
 * The pseudo-physical memory xl create gives a guest: `memory` MiB when the config says so (as
 * xl does). Without it xl would give 128 MiB; xensim gives only what the kernel uses - 64 pages
 * plus 16 per device for rings and buffers (about 100 pages, 0.4 MiB) - because swarms create
 * thousands of guests and a frame costs a buffer of its own.
 */
export function guestPages(cfg: DomainConfig): number {
  return cfg.memory !== undefined ? cfg.memory * PAGES_PER_MIB : 64 + 16 * ((cfg.disks?.length ?? 0) + (cfg.vifs?.length ?? 0));
}

/** An xl create that failed (and was cleaned up): the message says which step and why. */
export class CreateError extends ToolstackCallError {}

export interface RestoreOptions extends CreateOptions {
  /**
   * `xl restore CONFIG FILE`: this config instead of the one saved in the stream (a new name, say;
   * without a uuid of its own the domain gets a new one). Memory comes from the stream whatever it says.
   */
  readonly config?: DomainConfig;
  /** memoryHash() the restored memory (the default; a simulator check, not xl's work). */
  readonly hash?: boolean;
}

/** An xl save or restore that failed (the source resumed, or nothing built): the whole story. */
export class SaveRestoreError extends Error {
  override readonly name = 'SaveRestoreError';
}

/** libxl's wait for a guest to suspend after it acked the request (LIBXL_SUSPEND_TIMEOUT-ish: 60 s). */
const LIBXL_SUSPEND_TIMEOUT_NS = 60e9;

export interface SaveResult {
  readonly domid: number;
  readonly file: string;
  /** Bytes written (the whole stream). */
  readonly bytes: number;
  /** Pages of memory in the stream. */
  readonly pages: number;
  /** memoryHash() of the domain's memory at suspend (unless saved with hash: false). */
  readonly hash: string | undefined;
  readonly checkpoint: boolean;
}


/** write(2) until every byte of `chunk` is in the file. */
function writeAll(fd: number, chunk: Uint8Array): void {
  for (let at = 0; at < chunk.length;) at += writeSync(fd, chunk, at);
}

export interface RestoreResult {
  readonly domid: number;
  readonly pages: number;
  /** memoryHash() of the new domain's memory once restored, before it ran (unless hash: false). */
  readonly hash: string | undefined;
}


export class Xl {
  readonly domains = new Map<number, XlDomain>();
  private readonly guestArgs = new Map<number, CreateOptions>();
  private readonly actions = new Set<Promise<unknown>>();
  /** Every SHUTDOWN/DEATH event, in order, for tests and the trace. */
  readonly events: DomainEvent[] = [];
  private nextReq = 1;
  /** Errors from actions run on events (restart failing, ...). */
  readonly errors: unknown[] = [];

  constructor(readonly rt: HostRuntime) {
    rt.dom0.on('message', (m: DomainEvent) => {
      if (m.cmd === 'domain-event') this.onEvent(m);
    });
  }

  /** Resolves once the actions started by domain events (destroy, restart) are done. */
  async settled(): Promise<void> {
    // Quiet hosts produce no events; events (shutdown -> restart) may come while quieting.
    for (;;) {
      await this.rt.quiesce();
      if (this.actions.size === 0) return;
      await Promise.all([...this.actions]);
    }
  }

  private track(p: Promise<unknown>): void {
    const q = p.catch((e: unknown) => void this.errors.push(e)).finally(() => this.actions.delete(q));
    this.actions.add(q);
  }

  /** Who waits for a domain's next SHUTDOWN or DEATH (xl shutdown -w in free-running mode). */
  private readonly waiters = new Map<number, Set<() => void>>();

  private nextShutdown(domid: number): { done: Promise<void>; cancel(): void } {
    let set = this.waiters.get(domid);
    if (!set) this.waiters.set(domid, (set = new Set()));
    let fire!: () => void;
    const done = new Promise<void>((resolve) => (fire = resolve));
    set.add(fire);
    return { done, cancel: () => set.delete(fire) };
  }

  private wake(domid: number): void {
    const set = this.waiters.get(domid);
    this.waiters.delete(domid);
    for (const f of set ?? []) f();
  }

  private onEvent(ev: DomainEvent): void {
    this.events.push(ev);
    this.wake(ev.domid);
    const d = this.domains.get(ev.domid);
    if (!d) return;
    if (ev.event === 'death') {
      this.domains.delete(ev.domid);
      return;
    }
    d.state = 'shutdown';
    d.shutdownReason = ev.reason;
    const action = this.actionFor(d.cfg, ev.reason ?? '');
    if (action === 'destroy') this.track(this.destroy(ev.domid));
    else if (action === 'restart') this.track(this.restart(ev.domid));
  }

  private actionFor(cfg: DomainConfig, reason: string): ShutdownAction | undefined {
    switch (reason) {
      case 'SHUTDOWN_poweroff': return cfg.on_poweroff ?? 'destroy';
      case 'SHUTDOWN_reboot': return cfg.on_reboot ?? 'restart';
      case 'SHUTDOWN_crash': return cfg.on_crash ?? 'destroy';
      case 'SHUTDOWN_watchdog': return cfg.on_watchdog ?? 'destroy';
      default: return undefined;
    }
  }

  // ------------------------------------------------------------------ lifecycle

  /**
   * xl create: build, skeleton + INTRODUCE, disks, console, NICs, then unpause (unless -p). A step
   * that fails fails the create with what failed, and the domain is destroyed (libxl's
   * domcreate_complete), so a failed create leaves nothing behind.
   */
  async create(cfg: DomainConfig, opts: CreateOptions = {}): Promise<number> {
    const pages = guestPages(cfg);
    let built: BuiltDomain;
    try {
      built = await this.rt.buildGuest({
        domid: cfg.domid, pages, console: true, introduce: false, paused: true, hvm: cfg.type === 'hvm',
        vcpus: cfg.vcpus,
        program: { module: opts.program ?? GUEST, args: { type: cfg.type ?? 'pv', ...opts.guest } },
      });
    } catch (e) {
      // libxl__domain_make's "domain creation fail" with Xen's errno (-ENOMEM once every domid
      // is in use, -EEXIST for a domid taken): no domain was made, so nothing to clean up.
      if (e instanceof HypervisorError && e.what === 'createdomain') {
        throw new CreateError('createdomain', `xl create: ${cfg.name}: domain creation fail: ${e.message}`);
      }
      throw e;
    }
    await this.createDevices(built, cfg, opts, 'xl create');
    return built.domid;
  }

  /**
   * libxl's domcreate steps after the domain is built (and, restoring, its memory is back): the
   * xenstore skeleton and INTRODUCE, disks, console, NICs, unpause. A failing step destroys the
   * domain and fails with why.
   */
  private async createDevices(built: BuiltDomain, cfg: DomainConfig, opts: CreateOptions, verb: string): Promise<void> {
    const domid = built.domid;
    if (!built.console) throw new Error(`domain ${domid} was built without a console`);
    if (opts.dom0less) {
      // alloc_xenstore_page of dom0less-build.c: connection = XENSTORE_RECONNECT until introduced.
      const page = this.rt.host.domains.get(domid)?.p2m[built.store.gfn]?.bytes;
      if (!page) throw new Error(`domain ${domid}: no store page`);
      Atomics.store(new Int32Array(page.buffer, page.byteOffset, 1024), XenstoreDomainInterface.connection >> 2, XenstoreConnection.XENSTORE_RECONNECT);
    }
    this.domains.set(domid, { domid, cfg, state: 'paused', store: built.store.gfn, console: built.console.gfn });
    this.guestArgs.set(domid, opts);
    const step = async (what: string, run: () => Promise<unknown>): Promise<void> => {
      try {
        await run();
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        // The cleanup's own failure is part of the answer, not a second, silent one.
        const cleanup = await this.destroy(domid).then(() => '', (c: unknown) => `; cleaning up failed too: ${c instanceof Error ? c.message : String(c)}`);
        throw new CreateError(what, `${verb}: domain ${domid}: ${what}: ${why}${cleanup}`);
      }
    };
    await step('domain-make', () => this.rt.toolstack('domain-make', { domid, cfg, store: built.store, introduce: !opts.dom0less }));
    for (const disk of cfg.disks ?? []) {
      await step(`disk-image ${disk.target}`, () => this.rt.toolstack('disk-image', { name: disk.target, sizeMiB: disk.sizeMiB ?? 16 }));
      await step(`disk-add ${disk.vdev}`, () => this.rt.toolstack('disk-add', { domid, disk }));
    }
    await step('console-add', () => this.rt.toolstack('console-add', { domid, ring: built.console }));
    for (const [i, vif] of (cfg.vifs ?? []).entries()) await step(`nic-add ${i}`, () => this.rt.toolstack('nic-add', { domid, vif, index: i }));
    // Destroyed after its last device (xl destroy from elsewhere): nothing is left to run.
    await step(opts.paused ? 'finish' : 'unpause', async () => {
      const d = this.rt.host.domains.get(domid);
      if (!d || d.runState === 'dying' || d.runState === 'dead') throw new Error(`domain ${domid} no longer exists`);
      if (opts.dom0less) {
        // The guest boots as init-dom0less introduces it: which gets there first is the schedule's.
        if (!opts.paused) await this.unpause(domid);
        await this.rt.toolstack('introduce', { domid, store: built.store });
      } else if (!opts.paused) {
        await this.unpause(domid);
      }
    });
  }

  // ------------------------------------------------------------------ save / restore

  /**
   * libxl's guest suspend for a save: control/shutdown "suspend", acked by the guest, then wait
   * (libxl's suspend timeout) until Xen reports it shut down for suspend.
   */
  async suspendForSave(domid: number): Promise<void> {
    const r = await this.rt.toolstack<{ acked: boolean; shutDown?: string }>('shutdown', { domid, command: 'suspend' });
    if (r.shutDown !== undefined) throw new SaveRestoreError(`domain ${domid} is already shut down (${r.shutDown})`);
    if (!r.acked) throw new SaveRestoreError(`domain ${domid} did not acknowledge the suspend request (no PV control interface?)`);
    const stepNs = 1e6;
    for (let waited = 0; ; waited += stepNs) {
      await this.rt.quiesce();
      const d = this.rt.host.domains.get(domid);
      if (!d || d.dying) throw new SaveRestoreError(`domain ${domid} died while suspending`);
      if (d.isShutDown) {
        if (d.shutdownCode !== ShutdownReason.SHUTDOWN_suspend) throw new SaveRestoreError(`domain ${domid} shut down with ${ShutdownReason[d.shutdownCode!]} instead of suspending`);
        return;
      }
      if (waited >= LIBXL_SUSPEND_TIMEOUT_NS) throw new SaveRestoreError(`domain ${domid} acknowledged the suspend but did not suspend in ${LIBXL_SUSPEND_TIMEOUT_NS / 1e9} s`);
      await this.rt.idle(stepNs);
    }
  }

  /**
   * The config xl keeps in a save file or migration stream: what the domain really has (its uuid,
   * its vifs' MACs), so the restored domain looks the same whatever domid it gets.
   */
  savedConfig(domid: number): string {
    const x = this.domains.get(domid)!;
    const { domid: _fixed, ...cfg } = x.cfg;
    const config: DomainConfig = {
      ...cfg, uuid: configUuid(x.cfg, domid),
      ...(cfg.vifs ? { vifs: cfg.vifs.map((v, i) => ({ ...v, mac: v.mac ?? defaultMac(domid, i) })) } : {}),
    };
    return JSON.stringify(config);
  }

  /** The host's clock as the TSC record gives it. */
  nowNs(): number {
    return this.rt.mode === 'lockstep' ? this.rt.virtualNow : performance.now() * 1e6;
  }

  /**
   * xl save [-c] DOM FILE: suspend the guest, write xl's header, libxl's stream and libxc's (every
   * page, vCPU context, shared_info, TSC) to FILE, then destroy the domain - or with -c
   * (checkpoint) resume it, the guest seeing its suspend cancelled. A save that fails after the
   * suspend resumes the guest (cancelled) and loses nothing.
   */
  async save(domid: number, file: string, opts: { checkpoint?: boolean; hash?: boolean } = {}): Promise<SaveResult> {
    const x = this.domains.get(domid);
    if (!x) throw new SaveRestoreError(`domain ${domid} is not a guest of this xl`);
    const config = this.savedConfig(domid);
    await this.suspendForSave(domid);
    let result: SaveResult;
    try {
      const d = this.rt.host.domains.get(domid)!;
      const fd = openSync(file, 'w');
      let saved;
      try {
        // Written as it is made: writeSync is done with each chunk when it returns, so a lent
        // PAGE_DATA buffer goes back at once and one serves every batch.
        saved = saveDomain(d, { config, store: x.store, console: x.console, nowNs: this.nowNs(), hash: opts.hash }, (chunk, release) => {
          writeAll(fd, chunk);
          release?.();
        });
      } finally {
        closeSync(fd);
      }
      result = { domid, file, bytes: saved.stats.bytes, pages: saved.pages, hash: saved.hash, checkpoint: Boolean(opts.checkpoint) };
    } catch (e) {
      // libxl_domain_resume(suspend_cancel): the guest goes on where it was.
      await this.resume(domid);
      throw new SaveRestoreError(`xl save: domain ${domid}: ${e instanceof Error ? e.message : String(e)}; domain resumed`);
    }
    if (opts.checkpoint) await this.resume(domid);
    else await this.destroy(domid);
    return result;
  }

  /**
   * xl restore FILE: read and check the whole stream, build a new domain (a new domid) with the
   * saved memory, then libxl's layout and devices as a create does, and unpause (unless paused).
   * The guest's kernel comes back from its saved pages: its program is entered with `resumed`
   * (SCHEDOP_shutdown returned 0 - a new domain) and reconnects every frontend.
   */
  async restore(file: string, opts: RestoreOptions = {}): Promise<RestoreResult> {
    let img: RestoredImage;
    try {
      img = readSaveImage(readFileSync(file));
    } catch (e) {
      throw new SaveRestoreError(`xl restore: ${file}: ${e instanceof Error ? e.message : String(e)}`);
    }
    return this.restoreImage(img, file, opts, 'xl restore');
  }

  /** A whole stream's image into a new domain (xl restore). */
  async restoreImage(img: RestoredImage, from: string, opts: RestoreOptions, verb: string): Promise<RestoreResult> {
    if (img.end !== 'complete') throw new SaveRestoreError(`${verb}: ${from}: the stream ends early (${img.end ?? 'no END'})`);
    const cfg = this.restoreConfig(img, from, verb, opts.config);
    const built = await this.buildRestored(cfg, imageP2mSize(img), opts);
    let hash: string | undefined;
    try {
      hash = restoreMemory(built.domain, img, { hash: opts.hash });
    } catch (e) {
      await this.rt.destroy(built.domid);
      throw new SaveRestoreError(`${verb}: ${from}: ${e instanceof Error ? e.message : String(e)}`);
    }
    await this.createDevices(built, cfg, opts, verb);
    return { domid: built.domid, pages: img.pages.size, hash };
  }

  /**
   * Restore's first step: the saved config from the stream's xl header (or `config`, as
   * `xl restore CONFIG FILE` gives one in its place), checked; its name must be free here.
   */
  restoreConfig(img: RestoredImage, from: string, verb: string, config?: unknown): DomainConfig {
    if (img.config === undefined && config === undefined) throw new SaveRestoreError(`${verb}: ${from}: no domain config in the stream`);
    let raw: unknown = config;
    if (raw === undefined) {
      try {
        raw = JSON.parse(img.config!);
      } catch {
        throw new SaveRestoreError(`${verb}: ${from}: the saved config is not JSON`);
      }
    }
    const parsed = GuestSchema.safeParse(raw);
    if (!parsed.success) throw new SaveRestoreError(`${verb}: ${from}: bad saved config: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    const cfg = parsed.data as DomainConfig;
    if ([...this.domains.values()].some((d) => d.cfg.name === cfg.name)) throw new SaveRestoreError(`${verb}: domain with name "${cfg.name}" already exists`);
    return cfg;
  }

  /** Restore's domain: `pages` pfns, paused, its kernel to be entered as resumed. */
  buildRestored(cfg: DomainConfig, pages: number, opts: RestoreOptions): ReturnType<HostRuntime['buildGuest']> {
    // libxc refuses a pfn outside the domain's maximum, which the config sets (the stream may be
    // a hostile peer's: a page at pfn 2^40 must not make this host try to build that).
    if (pages > guestPages(cfg)) throw new SaveRestoreError(`restore: pfn ${pages - 1} outside the domain's maximum (${guestPages(cfg)} pages for its config)`);
    return this.rt.buildGuest({
      pages, console: true, introduce: false, paused: true, hvm: cfg.type === 'hvm',
      vcpus: cfg.vcpus,
      program: { module: opts.program ?? GUEST, args: { type: cfg.type ?? 'pv', ...opts.guest, resumed: true } },
    });
  }

  /** Restore's last step once the memory is in: libxl's layout and devices, as create does. */
  async finishRestored(built: BuiltDomain, cfg: DomainConfig, opts: RestoreOptions, verb: string): Promise<void> {
    await this.createDevices(built, cfg, opts, verb);
  }

  async unpause(domid: number): Promise<void> {
    await this.rt.unpause(domid);
    const d = this.domains.get(domid);
    if (d) d.state = 'running';
  }

  async pause(domid: number): Promise<void> {
    await this.rt.pause(domid);
    const x = this.domains.get(domid);
    if (x) x.state = 'paused';
  }

  /** xl destroy: dom0's toolstack removes devices and trees, then XEN_DOMCTL_destroydomain. */
  async destroy(domid: number): Promise<void> {
    const d = this.domains.get(domid);
    if (d) d.state = 'dying';
    this.domains.delete(domid);
    // The toolstack stops monitoring first, so no DEATH event: whoever waits hears it here.
    this.wake(domid);
    await this.rt.toolstack('destroy', { domid });
    await this.rt.destroy(domid);
  }

  /** on_reboot=restart: destroy, then create again from the same config (a new domid). */
  private async restart(domid: number): Promise<number> {
    const d = this.domains.get(domid);
    const opts = this.guestArgs.get(domid) ?? {};
    await this.destroy(domid);
    if (!d) return -1;
    // The old domid may be reused only if the config asked for it explicitly.
    return this.create(d.cfg, opts);
  }

  /**
   * xl shutdown / reboot: the control/shutdown request, acked by the guest. With `wait`, also
   * wait for the domain to be gone (and restarted, for reboot).
   */
  async shutdown(domid: number, command: 'poweroff' | 'reboot' | 'suspend' = 'poweroff', opts: { wait?: boolean; timeoutNs?: number } = {}): Promise<{ acked: boolean; shutDown?: string }> {
    // Free-running, settling does not wait for the guest: wait for its SHUTDOWN (or DEATH) as
    // xl's wait_for_domain_deaths does, then for what on_poweroff/on_reboot started.
    const down = opts.wait && this.rt.mode === 'free' ? this.nextShutdown(domid) : undefined;
    let r: { acked: boolean; shutDown?: string };
    try {
      r = await this.rt.toolstack<{ acked: boolean; shutDown?: string }>('shutdown', { domid, command, timeoutNs: opts.timeoutNs });
    } catch (e) {
      down?.cancel();
      throw e;
    }
    if (down && r.acked) await down.done;
    else down?.cancel();
    if (opts.wait) await this.settled();
    return r;
  }

  async reboot(domid: number, opts: { wait?: boolean } = {}): Promise<{ acked: boolean; shutDown?: string }> {
    return this.shutdown(domid, 'reboot', opts);
  }

  /** Resume a domain that suspended in place (checkpoint): XEN_DOMCTL_resumedomain + XS_RESUME. */
  async resume(domid: number): Promise<void> {
    await this.rt.toolstack('resume', { domid });
    const d = this.domains.get(domid);
    if (d) d.state = 'running';
  }

  /**
   * xl trigger: power and sleep press the HVM guest's ACPI buttons (XEN_DOMCTL_sendtrigger);
   * s3resume wakes it from S3 (libxl asks QEMU, which sets HVM_PARAM_ACPI_S_STATE to 0).
   */
  async trigger(domid: number, name: 'power' | 'sleep' | 's3resume' | 'nmi' | 'init' | 'reset'): Promise<number> {
    return this.rt.toolstack<number>('trigger', { domid, name });
  }

  /** HVM_PARAM_ACPI_S_STATE as the toolstack reads it (0 = S0, 3 = S3). */
  async acpiSState(domid: number): Promise<number> {
    return this.rt.toolstack<number>('acpi-s-state', { domid });
  }

  list(): { name: string; id: number; mem: number; vcpus: number; state: string }[] {
    // vCPUs as getdomaininfo reports them (max_vcpu_id + 1), not as the config asked.
    const rows = [{ name: 'Domain-0', id: 0, mem: 1024, vcpus: this.rt.host.domains.get(0)?.maxVcpus ?? 1, state: 'r-----' }];
    // The xenstore domain: not xl's (init-xenstore-domain built it), listed as xl lists any domain.
    const xsd = this.rt.xenstoreDomid === undefined ? undefined : this.rt.host.domains.get(this.rt.xenstoreDomid);
    if (xsd) {
      const st = xsd.isShutDown ? '---s--' : xsd.pauseCount > 0 ? '--p---' : '-b----';
      rows.push({ name: XENSTORE_DOMAIN_NAME, id: xsd.domid, mem: Math.ceil(xsd.p2m.length / PAGES_PER_MIB), vcpus: xsd.maxVcpus, state: st });
    }
    for (const d of [...this.domains.values()].sort((a, b) => a.domid - b.domid)) {
      const h = this.rt.host.domains.get(d.domid);
      const st = !h ? '------' : h.isShutDown ? '---s--' : h.pauseCount > 0 ? '--p---' : '-b----';
      rows.push({ name: d.cfg.name, id: d.domid, mem: d.cfg.memory ?? 128, vcpus: h?.maxVcpus ?? 0, state: st });
    }
    return rows;
  }

  // ------------------------------------------------------------------ devices

  async blockAttach(domid: number, disk: NonNullable<DomainConfig['disks']>[number]): Promise<DeviceRef> {
    await this.rt.toolstack('disk-image', { name: disk.target, sizeMiB: disk.sizeMiB ?? 16 });
    return this.rt.toolstack<DeviceRef>('disk-add', { domid, disk });
  }

  async blockDetach(domid: number, vdev: string, force = false): Promise<{ clean: boolean }> {
    const devid = vdevFromName(vdev) ?? Number(vdev);
    return this.rt.toolstack('disk-remove', { domid, devid, force });
  }

  /** xl network-attach: the lowest free devid unless the config names one. */
  async networkAttach(domid: number, vif: VifConfig = {}): Promise<DeviceRef> {
    const used = new Set((await this.devices(domid)).filter((d) => d.kind === 'vif').map((d) => d.devid));
    let index = 0;
    while (used.has(index)) index++;
    return this.rt.toolstack<DeviceRef>('nic-add', { domid, vif, index });
  }

  async networkDetach(domid: number, devid: number, force = false): Promise<{ clean: boolean }> {
    // The vif's backend domain as libxl recorded it (dom0, or a driver domain).
    const dev = (await this.devices(domid)).find((d) => d.kind === 'vif' && d.devid === devid) ?? { kind: 'vif', devid, frontend: domid, backend: 0 };
    return this.rt.toolstack('device-remove', { dev, force });
  }

  async devices(domid: number): Promise<DeviceRef[]> {
    return this.rt.toolstack('devices', { domid });
  }

  /** What the guest wrote to its console (xl console, non-interactive). */
  async console(domid: number): Promise<string> {
    await this.rt.quiesce();
    return this.rt.toolstack('console', { domid });
  }

  /** Every node under `path` (xenstore-ls -fp's content), read by dom0's toolstack. */
  async dump(path = '/'): Promise<NodeDump[]> {
    await this.rt.quiesce();
    return this.rt.toolstack('dump', { path });
  }

  // ------------------------------------------------------------------ the guest's user space

  /** Runs a command in the guest and resolves with its result. */
  async guest<T = Record<string, unknown>>(domid: number, m: WithoutId<GuestCommand>): Promise<T> {
    const id = this.nextReq++;
    const answer = this.rt.message<{ cmd: string; id: number }>(domid, (r) => r.cmd === 'result' && r.id === id);
    this.rt.send(domid, { ...m, id });
    return (await answer) as T;
  }
}
