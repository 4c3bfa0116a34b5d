// A xenopsd-like toolstack (xapi-project/xenopsd, xc/xenops_server_xen.ml): a worker that runs VM
// operations (VM_create, VM_build, VM_destroy) one at a time, and a watch thread on its own
// xenstore connection. @introduceDomain and @releaseDomain name no domain, so the watch thread
// lists every domain, diffs the list with the one it knew, and for each domain that changed
// decides by the VM metadata database (VmExtra's DB) whether the VM is "managed by us": a managed
// domain that runs gets the per-VM watches, one that stopped loses them. The worker and the watch
// thread share the DB and nothing else, so which of them goes first is the schedule's (R11, R12).
import type { XsHandle } from '../../libs/store/xs.ts';
import { Domctl } from '../../../hypervisor/public/domctl.ts';
import { EvtchnOp } from '../../../hypervisor/public/event_channel.ts';
import { Sysctl } from '../../../hypervisor/public/sysctl.ts';
import { Errno, Hypercall } from '../../../hypervisor/public/xen.ts';
import type { Kernel } from '../../kernel/kernel.ts';

export interface XenopsdQuirks {
  /**
   * R11 (before xenopsd f81ab3f4, CA-286115): VM_create stores the VM's metadata only once the
   * domain exists, so a rescan in between finds a domain "not managed by us".
   */
  readonly metadataAfterCreate?: boolean;
  /**
   * R12 (before xenopsd ac8df23b, CA-83264): the watch thread removes a domain's watches only if
   * its VM is still in the metadata DB; a VM_destroy that removed it first leaks them.
   */
  readonly unwatchOnlyManaged?: boolean;
}

/** What XEN_SYSCTL_getdomaininfolist reports of one domain (the fields xenopsd looks at). */
export interface DomainInfo {
  readonly domain: number;
  readonly shutdown: boolean;
  readonly shutdown_reason: number | null;
  /** d->is_dying: 0 alive, 1 dying, 2 dead. */
  readonly dying: number;
  /** The domain handle: the VM uuid given at createdomain. */
  readonly handle: string;
}

/** xenopsd's VmExtra entry: what it stores per VM (here only where the VM runs). */
interface VmExtra {
  domid?: number;
  /** The store port allocated for VM_build's XS_INTRODUCE. */
  storePort?: number;
}

/** Watch-thread and DB state for the simulator's checks (the `xenopsd-state` verb). */
export interface XenopsdState {
  /** VM uuids in the metadata DB, with their domid once created. */
  readonly db: readonly { readonly uuid: string; readonly domid?: number }[];
  /** The watch thread's table: per domid, the (path, token) pairs it believes are registered. */
  readonly installed: readonly { readonly domid: number; readonly uuid: string; readonly paths: readonly string[] }[];
  /** The watch thread's xenstore connection (to find its messages in the trace). */
  readonly conn: number | undefined;
  /** What xenstored holds for that connection: every (path, token). */
  readonly server: readonly { readonly path: string; readonly token: string }[];
}

export class XenopsdError extends Error {
  override readonly name = 'XenopsdError';
}

const INTRODUCE = '@introduceDomain';
const RELEASE = '@releaseDomain';

/**
 * interesting_paths_for_domain (a subset): the nodes xenopsd reacts to for one running VM. The
 * watch token is the path itself, as in xenopsd's 2012 watch thread, so a second XS_WATCH of the
 * same node is the same watch to xenstored (EEXIST).
 */
export function interestingPaths(domid: number, uuid: string): string[] {
  return [
    `/local/domain/${domid}/control`,
    `/local/domain/${domid}/data/updated`,
    `/local/domain/${domid}/memory/target`,
    `/local/domain/${domid}/device`,
    `/vm/${uuid}/rtc/timeoffset`,
  ];
}

/** domain_looks_different: appeared, vanished, or its shutdown state (or reason) changed. */
function looksDifferent(a: DomainInfo | undefined, b: DomainInfo | undefined): boolean {
  if (!a || !b) return a !== b;
  // The simulator frees a destroyed domain as soon as nothing maps it, but one still mapped
  // lingers dying: count that as a change too, or its watches would outlive it.
  return a.shutdown !== b.shutdown || (a.shutdown && a.shutdown_reason !== b.shutdown_reason) || (a.dying !== 0) !== (b.dying !== 0);
}

export class Xenopsd {
  /** VmExtra's DB, by VM uuid: a domain whose uuid is here is "managed by us". */
  private readonly db = new Map<string, VmExtra>();
  /** The watch thread's last domain list, by domid. */
  private domains = new Map<number, DomainInfo>();
  /** Domids with per-VM watches installed, with the uuid they were installed for (the fix's map). */
  private readonly watches = new Map<number, string>();
  /** Watch events waiting for the watch thread, in arrival order. */
  private readonly events: string[] = [];
  private draining = false;
  /** The worker: one VM operation at a time. */
  private worker: Promise<unknown> = Promise.resolve();
  /** The watch thread's task name in lockstep (its requests park under its handle's name). */
  readonly task: string;
  /** Per VM uuid, how many watch events the thread passed on (xenopsd's Updates.add). */
  readonly updates = new Map<string, number>();

  constructor(
    readonly kernel: Kernel,
    /** The worker's connection (with_xc_and_xs). */
    readonly xs: XsHandle,
    /** The watch thread's own connection. */
    readonly watchXs: XsHandle,
    readonly quirks: XenopsdQuirks = {},
    /** Simulator introspection: xenstored's watch list for the watch thread's connection. */
    private readonly serverWatches?: () => { conn: number; watches: { path: string; token: string }[] } | undefined,
  ) {
    this.task = watchXs.path;
    watchXs.on('watch', (path: string) => {
      this.events.push(path);
      void this.drain();
    });
  }

  /** The watch thread starts: @introduceDomain and @releaseDomain, each firing once at once. */
  async start(): Promise<void> {
    await this.watchXs.watch(INTRODUCE, '');
    await this.watchXs.watch(RELEASE, '');
  }

  /** One verb from the simulator, queued on the worker. */
  call(op: string, a: unknown): Promise<unknown> {
    const args = (a ?? {}) as Record<string, unknown>;
    if (op === 'xenopsd-state') return Promise.resolve(this.state());
    const uuid = String(args.uuid ?? '');
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(uuid)) {
      return Promise.reject(new XenopsdError(`${op}: bad VM uuid "${uuid}"`));
    }
    const run = (): Promise<unknown> => {
      switch (op) {
        case 'VM_create': return this.vmCreate(uuid, String(args.name ?? uuid));
        case 'VM_build': return this.vmBuild(uuid);
        case 'VM_destroy': return this.vmDestroy(uuid);
        default: return Promise.reject(new XenopsdError(`unknown xenopsd operation ${op}`));
      }
    };
    const p = this.worker.then(run);
    this.worker = p.catch(() => undefined);
    return p;
  }

  private hypercall(op: Hypercall, args: Record<string, unknown>, what: string): unknown {
    const r = this.kernel.hypercall(op, args);
    if (typeof r === 'number' && r < 0) throw new XenopsdError(`${what}: ${Errno[-r] ?? r}`);
    return r;
  }

  // ------------------------------------------------------------------ the worker

  /** Domain.make: the domain, then its xenstore tree; the DB entry before (fixed) or after. */
  private async vmCreate(uuid: string, name: string): Promise<number> {
    if (this.db.get(uuid)?.domid !== undefined) throw new XenopsdError(`VM ${uuid} already has a domain`);
    // f81ab3f4: the DB entry first, so the watch thread never sees the domain without it.
    if (!this.quirks.metadataAfterCreate) this.db.set(uuid, {});
    let domid: number;
    try {
      ({ domid } = this.hypercall(Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_createdomain, handle: uuid }, 'domain_create') as { domid: number });
    } catch (e) {
      // No domain after all: drop the entry stored for it.
      if (this.db.get(uuid)?.domid === undefined) this.db.delete(uuid);
      throw e;
    }
    const dom = `/local/domain/${domid}`;
    const vm = `/vm/${uuid}`;
    await this.xs.transaction(async (t) => {
      // Clear any rubbish a previous domain with this domid left.
      await this.xs.rm(dom, t).catch(() => undefined);
      await this.xs.write(dom, '', t);
      await this.xs.setPerms(dom, ['n0', `r${domid}`], t);
      await this.xs.write(`${vm}/uuid`, uuid, t);
      await this.xs.write(`${vm}/name`, name, t);
      await this.xs.write(`${vm}/domains/${domid}`, dom, t);
      await this.xs.write(`${dom}/vm`, vm, t);
      await this.xs.write(`${dom}/name`, name, t);
      for (const sub of ['control', 'data', 'device', 'memory']) {
        await this.xs.write(`${dom}/${sub}`, '', t);
        await this.xs.setPerms(`${dom}/${sub}`, [`n${domid}`], t);
      }
    });
    // A toolstack finding its domain in this state knows the create did not finish.
    await this.xs.write(`${dom}/action-request`, 'poweroff');
    const extra = this.db.get(uuid) ?? {};
    extra.domid = domid;
    this.db.set(uuid, extra);
    return domid;
  }

  /** Domain.build's end: the store port, XS_INTRODUCE (@introduceDomain), no more action-request. */
  private async vmBuild(uuid: string): Promise<null> {
    const extra = this.db.get(uuid);
    if (extra?.domid === undefined) throw new XenopsdError(`VM ${uuid} has no domain`);
    const domid = extra.domid;
    const { port } = this.hypercall(Hypercall.__HYPERVISOR_event_channel_op, {
      cmd: EvtchnOp.EVTCHNOP_alloc_unbound, arg: { dom: domid, remote_dom: 0 },
    }, 'evtchn_alloc_unbound') as { port: number };
    extra.storePort = port;
    // No store page: the domain stays paused and never talks to xenstored, and dom0 finds no
    // ring to map; what matters here is the introduction.
    await this.xs.introduce(domid, 0, port);
    await this.xs.rm(`/local/domain/${domid}/action-request`);
    return null;
  }

  /** Domain.destroy: the domain goes, then its xenstore tree, then the VM's DB entry. */
  private async vmDestroy(uuid: string): Promise<null> {
    const extra = this.db.get(uuid);
    if (extra?.domid === undefined) throw new XenopsdError(`VM ${uuid} has no domain`);
    const domid = extra.domid;
    this.hypercall(Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_destroydomain, domain: domid }, 'domain_destroy');
    await this.xs.rm(`/local/domain/${domid}`).catch(() => undefined);
    await this.xs.rm(`/vm/${uuid}/domains/${domid}`).catch(() => undefined);
    this.db.delete(uuid);
    return null;
  }

  // ------------------------------------------------------------------ the watch thread

  /** One event at a time, each to completion; the thread may lose the CPU before each. */
  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.events.length) {
        const path = this.events.shift()!;
        if (this.watchXs.sched) await this.watchXs.sched(this.task);
        if (path === INTRODUCE || path === RELEASE) await this.lookForDifferentDomains();
        else this.watchFired(path);
      }
    } catch (e) {
      // xenopsd's thread logs, waits and starts over; here the run reports it.
      this.kernel.trace({ kind: 'oops', where: 'xenopsd watch', error: e instanceof Error ? e.message : String(e) });
    } finally {
      this.draining = false;
    }
  }

  /** Xenctrl.domain_getinfolist. */
  private listDomains(): Map<number, DomainInfo> {
    const infos = this.hypercall(Hypercall.__HYPERVISOR_sysctl, {
      cmd: Sysctl.XEN_SYSCTL_getdomaininfolist, first_domain: 0, max_domains: 1024,
    }, 'getdomaininfolist') as DomainInfo[];
    return new Map(infos.map((i) => [i.domain, i]));
  }

  private async lookForDifferentDomains(): Promise<void> {
    const now = this.listDomains();
    const ids = [...new Set([...this.domains.keys(), ...now.keys()])].sort((a, b) => a - b);
    const before = this.domains;
    for (const domid of ids) {
      // Dom0 is a VM of xenopsd's too; its watches play no part here.
      if (domid === 0 || !looksDifferent(before.get(domid), now.get(domid))) continue;
      // The uuid is in the new list, or (a domain that went) in the old one.
      const di = now.get(domid) ?? before.get(domid)!;
      if (!this.db.has(di.handle)) {
        this.kernel.trace({ kind: 'xenopsd', event: 'unmanaged', dom: domid, uuid: di.handle });
        // ac8df23b: watches installed for this domid go whatever the DB says now.
        if (!this.quirks.unwatchOnlyManaged && this.watches.has(domid)) await this.removeWatches(domid);
        continue;
      }
      const running = now.has(domid) && !now.get(domid)!.shutdown && now.get(domid)!.dying === 0;
      const has = this.watches.has(domid);
      if (!has && running) await this.addWatches(domid, di.handle);
      else if (has && !running) await this.removeWatches(domid);
    }
    this.domains = now;
  }

  private async addWatches(domid: number, uuid: string): Promise<void> {
    this.kernel.trace({ kind: 'xenopsd', event: 'add-watches', dom: domid, uuid });
    this.watches.set(domid, uuid);
    for (const p of interestingPaths(domid, uuid)) {
      // xenopsd's watch wrapper logs EEXIST and goes on.
      await this.watchXs.watch(p, p).catch((e: unknown) => this.logXsError('watch', p, e));
    }
  }

  private async removeWatches(domid: number): Promise<void> {
    const uuid = this.watches.get(domid)!;
    this.kernel.trace({ kind: 'xenopsd', event: 'remove-watches', dom: domid, uuid });
    this.watches.delete(domid);
    for (const p of interestingPaths(domid, uuid)) {
      await this.watchXs.unwatch(p, p).catch((e: unknown) => this.logXsError('unwatch', p, e));
    }
  }

  private logXsError(op: string, path: string, e: unknown): void {
    const code = (e as { code?: string }).code ?? (e instanceof Error ? e.message : String(e));
    this.kernel.trace({ kind: 'xenopsd', event: `${op}-failed`, path, error: code });
  }

  /** A per-VM node changed: tell the VM's listeners (Updates.add), if it is a domain we watch. */
  private watchFired(path: string): void {
    const m = /^\/local\/domain\/(\d+)\//.exec(path);
    const uuid = m ? this.watches.get(Number(m[1])) : /^\/vm\/([^/]+)\//.exec(path)?.[1];
    if (uuid === undefined) return;
    this.updates.set(uuid, (this.updates.get(uuid) ?? 0) + 1);
  }

  state(): XenopsdState {
    const server = this.serverWatches?.();
    return {
      db: [...this.db].map(([uuid, e]) => ({ uuid, ...(e.domid !== undefined ? { domid: e.domid } : {}) })),
      installed: [...this.watches].map(([domid, uuid]) => ({ domid, uuid, paths: interestingPaths(domid, uuid) })),
      conn: server?.conn,
      server: server?.watches ?? [],
    };
  }
}
