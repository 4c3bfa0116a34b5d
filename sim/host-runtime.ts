// A running Xen host: the hypervisor model on this thread, each domain's vCPU in a worker.
// It plays the domain builder (libxenguest) for new guests: memory, xenstore ring page, store
// event channel, grant ref 1 for xenstored, start_info; dom0's toolstack then INTRODUCEs them.
import { EXTENT_PAGES } from '../hypervisor/memory.ts';
import { VcpuPool } from '../hypervisor/vcpu-pool.ts';
import { ShutdownReason } from '../hypervisor/public/sched.ts';
import { EvtchnRoutes } from '../hypervisor/evtchn-fast-path.ts';
import { EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES } from '../hypervisor/public/event_fifo.ts';
import { EvtchnOp } from '../hypervisor/public/event_channel.ts';
import type { Domain } from '../hypervisor/domain.ts';
import { DomainThread } from '../hypervisor/domain-thread.ts';
import { InlineVcpu, LocalPort } from '../hypervisor/inline-vcpu.ts';
import type { VcpuRunner } from '../hypervisor/vcpu-runner.ts';
import { EventChannels } from '../hypervisor/event-channel.ts';
import { GrantTables } from '../hypervisor/grant-table.ts';
import { Hypercalls } from '../hypervisor/hypercall.ts';
import { Host } from '../hypervisor/host.ts';
import { GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE, grantRef } from '../hypervisor/public/grant_table.ts';
import { type DomId, SharedInfo, type StartInfo, VcpuInfo, Virq } from '../hypervisor/public/xen.ts';
import type { ControlPort, DomainProgram, RunMode } from '../hypervisor/public/vcpu.ts';
import type { Dom0Args, Dom0Command } from '../domains/dom0/dom0.ts';
import type { XenstoreStubdomArgs } from '../domains/xenstore-stubdom/xenstore-stubdom.ts';
import { kernelImage } from '../domains/kernel/image.ts';
import { defaultChoice, RandomStrategy, type SchedItem, ScheduleRecord, type ScheduleStrategy } from './scheduler/strategy.ts';
import { XenbusCommitOrder } from './trace/xenbus-commit-order.ts';
import { type Footprint, type SharedFrames, StepWatcher } from './scheduler/footprint.ts';

/** '.ts' when running the sources under tsx, '.js' when running dist/: domains load the same kind. */
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const DOM0_PROGRAM = new URL(`../domains/dom0/dom0${EXT}`, import.meta.url).href;
const XENSTORE_STUBDOM_PROGRAM = new URL(`../domains/xenstore-stubdom/xenstore-stubdom${EXT}`, import.meta.url).href;

export interface GuestOptions {
  /** The guest kernel's program: module URL and arguments. */
  readonly program: DomainProgram;
  readonly pages?: number;
  readonly domid?: number;
  /** vCPUs (xl.cfg's vcpus; default 1): the domain's max_vcpus, which its kernel boots with. */
  readonly vcpus?: number;
  /** Leave the new domain paused (as `xl create -p`); unpause() lets it run. */
  readonly paused?: boolean;
  /** An HVM guest (emulated platform with ACPI); PV otherwise. */
  readonly hvm?: boolean;
  /** A console ring page and port (start_info.console), as for every real guest. */
  readonly console?: boolean;
  /**
   * Have dom0 INTRODUCE the domain right away (default). The toolstack (xl create) does it
   * itself after writing the skeleton, so it builds with this off.
   */
  readonly introduce?: boolean;
}

/** What the domain builder handed the new guest: its special pages and ports. */
export interface BuiltDomain {
  readonly domid: number;
  readonly store: { readonly gfn: number; readonly port: number };
  readonly console?: { readonly gfn: number; readonly port: number };
}

export interface HostOptions {
  /** Seeds the domains' PRNGs and, in lockstep, the scheduler's choices. */
  readonly seed?: number;
  /** Keep trace events in `trace` (true) or hand each to a function (e.g. a JSON-lines file). */
  readonly trace?: boolean | ((e: TraceEvent) => void);
  /**
   * free: every vCPU runs on its own thread at once (real time). lockstep: one vCPU runs at a
   * time until it blocks, the next is chosen by the seeded PRNG, and virtual time advances only
   * when all are idle - the same seed replays the same run.
   */
  readonly mode?: RunMode;
  /**
   * Lockstep: how the next thing to run is chosen among every domain's interrupts and parked
   * tasks (sim/scheduler/strategy.ts); default `random` from the seed.
   */
  readonly schedule?: ScheduleStrategy;
  /** Lockstep: keep `choicePoints` (every step that had a choice). */
  readonly recordChoices?: boolean;
  /**
   * Lockstep, traced: keep `stepLog` - every step's ready items, choice and footprint (what it
   * touched that another domain can see), for partial-order reduction.
   */
  readonly recordFootprints?: boolean;
  /**
   * Pack guests onto this many shared threads (free-running only) instead of one thread each,
   * so a thousand guests fit on this machine. A pool thread sleeps on one doorbell and serves
   * every guest on it that got an event per wake-up; fast-path senders ring that doorbell.
   */
  readonly pool?: number;
  /**
   * Lockstep only: run every vCPU on this thread instead of one worker each. Same schedule and
   * trace semantics, no thread hand-offs: what the scenario engine and its swarm use.
   */
  readonly inline?: boolean;
  /**
   * Free-running: run EVTCHNOP_send in the sender's thread (default on unless tracing), and
   * let an idle vCPU (or pool thread, polling its doorbell) poll for an event this many µs before
   * it sleeps (default 0: sleep at once; worth it only while busy vCPU threads <= cores).
   */
  readonly fastEvtchn?: boolean;
  readonly spin?: number;
  /**
   * MiB of RAM populated at boot as the hypervisor's heap (2 MiB extents whose pages the host
   * OS has backed), from which big guests' memory comes with no first-touch cost, as on Xen;
   * default 0: every extent is a new buffer.
   */
  readonly heapMiB?: number;
}

export interface TraceEvent {
  readonly kind: string;
  readonly domid?: number;
  readonly [k: string]: unknown;
}

/** init-xenstore-domain's default --name for the xenstore domain. */
export const XENSTORE_DOMAIN_NAME = 'Xenstore';

/** A toolstack verb failed in dom0 (libxl's error): the system under test said no. */
/** A guest the host could not create: which step failed, with the errno it failed with. */
export class CreateGuestError extends Error {
  constructor(readonly domid: number, readonly step: string, readonly errno: string) {
    super(`domain ${domid}: ${step} failed: ${errno}${errno === 'ENOSPC' ? ' (no event channel left in dom0 for its xenstore ring)' : ''}`);
    this.name = 'CreateGuestError';
  }
}

export class ToolstackCallError extends Error {
  constructor(readonly op: string, message: string) {
    super(message);
  }
}

export class HostRuntime {
  readonly host: Host;
  readonly evtchn: EventChannels;
  readonly gnttab: GrantTables;
  readonly hypercalls: Hypercalls;
  /** Every domain's vCPU, whatever runs it (its own thread, a pool thread, inline). */
  readonly vcpus = new Map<number, VcpuRunner>();
  readonly trace: TraceEvent[] = [];
  readonly mode: RunMode;
  private seed: number;
  /** Lockstep: virtual time (ns), the scheduler's PRNG, next deadlines, vCPUs owed a run. */
  private now = 0;

  /** Lockstep: the host's virtual time (ns). */
  get virtualNow(): number {
    return this.now;
  }
  /** Lockstep: the strategy choosing each step, and what it chose. */
  readonly schedule: ScheduleStrategy;
  readonly scheduleRecord = new ScheduleRecord();
  /**
   * Lockstep, when asked (exhaustive search, shrinking): every step that had a choice, with what
   * could run (as "dom1 xenbus reader") and what ran.
   */
  readonly choicePoints: { step: number; items: string[]; ids: readonly SchedItem[]; chosen: number; dflt: number }[] | undefined;
  /** Lockstep, when asked: every step, what could run, what ran and its footprint. */
  readonly stepLog: { ids: readonly SchedItem[]; chosen: number; fp: Footprint }[] | undefined;
  private readonly stepWatch: StepWatcher | undefined;
  /** Set by whoever drives the host: whether it acts on trace events as they come (footprints then say unknown). */
  observing: () => boolean = () => false;
  private readonly deadlines = new Map<number, number>();
  private readonly owed = new Set<number>();
  private scheduling: Promise<void> | undefined;
  private tracing = false;
  private traceStamp: ((e: object) => void) | undefined;
  private traceSink: ((e: TraceEvent) => void) | undefined;
  /** Lockstep: trace events of the current run, dom0's xenstore events (tagged with how many
   * hypercalls dom0 had made), and dom0's hypercalls traced so far - to merge them in order. */
  private runEvents: TraceEvent[] | undefined;
  private posted = new Map<number, (TraceEvent & { hc: number })[]>();
  private hypercallsSeen = new Map<number, number>();
  /** The send fast path's routes (free-running, untraced), and the spin before sleeping. */
  private readonly routes: EvtchnRoutes | undefined;
  private readonly spin: number;
  readonly inline: boolean;
  /** Packed guests: the pool threads they share. */
  readonly pool: VcpuPool | undefined;
  /** Lockstep: vCPUs that have not run yet (an unpause by hypercall owes them their first run). */
  private readonly neverRan = new Set<number>();

  constructor(opts: HostOptions = {}) {
    this.host = new Host({ heapExtents: Math.ceil(((opts.heapMiB ?? 0) * 256) / EXTENT_PAGES) });
    this.seed = opts.seed ?? 1;
    this.mode = opts.mode ?? 'free';
    this.schedule = opts.schedule ?? new RandomStrategy(this.seed);
    if (opts.recordChoices) this.choicePoints = [];
    if (opts.recordFootprints) {
      // Read off the hypervisor's events and the inline vCPUs' mail: a traced, inline lockstep run.
      if (!opts.trace || this.mode !== 'lockstep' || !opts.inline) throw new Error('footprints need a traced lockstep run with inline vCPUs');
      this.stepLog = [];
      this.stepWatch = new StepWatcher({
        sharedFrames: () => this.sharedFrames(),
        sharedInfos: () => new Map([...this.host.domains].filter(([, d]) => d.sharedInfo).map(([id, d]) => [id, d.sharedInfo!.bytes])),
        hostState: () => this.hostState(),
        observing: () => this.observing(),
      });
    }
    this.evtchn = new EventChannels(this.host);
    this.gnttab = new GrantTables(this.host);
    this.hypercalls = new Hypercalls(this.host, this.evtchn, this.gnttab);
    this.spin = opts.spin ?? 0;
    this.inline = opts.inline ?? false;
    if (this.inline && this.mode !== 'lockstep') throw new Error('inline vCPUs run in lockstep only');
    if (this.inline && opts.pool !== undefined) throw new Error('inline vCPUs already share one thread; no pool');
    if (this.mode === 'free' && !opts.trace && opts.fastEvtchn !== false) {
      const routes = new EvtchnRoutes(this.host, this.evtchn);
      this.routes = routes;
      this.hypercalls.afterEvtchn = (caller, cmd, arg, ret) => {
        routes.afterHypercall(caller, cmd, arg, ret);
        // A send that trapped hands the sender its peer's shared_info, so the next ones need not.
        if (cmd !== EvtchnOp.EVTCHNOP_send || ret !== 0) return undefined;
        const st = this.evtchn.status(this.host.domains.get(0)!, { dom: caller.domid, port: arg.port } as never);
        if (typeof st !== 'object' || !('interdomain' in st.u)) return undefined;
        const peer = this.host.domains.get(st.u.interdomain.dom);
        if (!peer?.sharedInfo) return undefined;
        // A packed peer sleeps on its pool thread's doorbell, not on its upcall word: hand that too.
        const doorbell = this.pool?.doorbell(peer.domid);
        // A FIFO peer: its queues' lock and tails, control block and event array, to link with.
        const fifo = this.evtchn.fifoShare(peer);
        return [{ mfn: peer.sharedInfo.mfn, sab: peer.sharedInfo.sab, sharedInfoOf: peer.domid, ...(doorbell ? { doorbell } : {}), ...(fifo ? { fifo } : {}) }];
      };
    }
    if (opts.pool !== undefined) {
      if (this.mode === 'lockstep') throw new Error('packing runs free; lockstep gives each vCPU its own thread');
      const pool = new VcpuPool(opts.pool, this.hypercalls, kernelImage.poolWorker, { spin: this.spin });
      this.pool = pool;
      this.evtchn.onUpcall((domid) => pool.ring(domid));
    }
    // Whoever pauses, unpauses or kills a domain (a hypercall, xl, a scenario's fault), its vCPU's
    // runner hears of it here.
    this.host.addHooks({
      domainCreated: () => undefined,
      domainKilled: (d) => this.vcpuKilled(d.domid),
      domainFreed: () => undefined,
      domainPaused: (d) => this.vcpus.get(d.domid)?.pause(),
      domainUnpaused: (d) => {
        this.vcpus.get(d.domid)?.unpause();
        const mail = this.heldMail.get(d.domid);
        this.heldMail.delete(d.domid);
        for (const m of mail ?? []) this.control(d.domid).postMessage(m);
        // A lockstep vCPU unpaused before it ever ran is owed its first run. The scheduler is
        // not poked from here: an unpause by hypercall lands while it runs, and one from outside
        // pokes once every domain it names is unpaused (so their first runs race as one).
        if (this.neverRan.has(d.domid)) this.owed.add(d.domid);
      },
    });
    this.evtchn.defer = (ns, fn) => this.deferOnHost(ns, fn);
    if (opts.trace) {
      this.tracing = true;
      const out = typeof opts.trace === 'function' ? opts.trace : (e: TraceEvent) => void this.trace.push(e);
      // Xenbus state changes go out at xenstored's commit of their write, not when announced.
      const order = new XenbusCommitOrder((e) => out(e as TraceEvent));
      const sink = (e: TraceEvent): void => order.push(e);
      this.traceSink = sink;
      const stamp = (e: object): void => {
        const ev = { t: this.mode === 'lockstep' ? this.now : undefined, ...e } as unknown as TraceEvent;
        if (this.runEvents) this.runEvents.push(ev);
        else sink(ev);
      };
      this.evtchn.onTrace(stamp);
      this.gnttab.onTrace(stamp);
      this.hypercalls.onTrace(stamp);
      this.traceStamp = stamp;
    }
  }

  // ---------------------------------------------------------------- lockstep scheduling

  /**
   * What can run now, by domid: a vCPU's interrupts (task 0: an upcall pending, a timer due, a
   * run owed for boot or a message), then each task its kernel parked at a preemption point.
   */
  private runnable(): SchedItem[] {
    const out: SchedItem[] = [];
    for (const [domid, t] of this.vcpus) {
      const d = this.host.domains.get(domid);
      // A paused domain's events still get set pending, but its vCPU does not run.
      // Paused or shut down (Xen pauses every vCPU of a domain that shut down): not runnable.
      if (!d || !t.lockstep || d.pauseCount > 0 || d.isShutDown) continue;
      if ((this.stalledUntil.get(domid) ?? -1) > this.now) continue;
      const upcall = Atomics.load(d.sharedInfo!.bytes, VcpuInfo.evtchn_upcall_pending) !== 0;
      const dl = this.deadlines.get(domid) ?? -1;
      const mail = t.hasMail;
      if (upcall || mail || this.owed.has(domid) || (dl >= 0 && dl <= this.now)) out.push({ domid, task: 0 });
      for (const task of t.readyTasks()) out.push({ domid, task });
    }
    return out.sort((a, b) => a.domid - b.domid);
  }

  /**
   * Fault (lockstep): asked at each step with the domains that could run; an answer keeps that
   * domain's vCPU off the CPU for `ns` of virtual time, as a busy Xen scheduler can.
   */
  stall: ((runnable: readonly number[]) => { readonly domid: number; readonly ns: number } | undefined) | undefined;
  private readonly stalledUntil = new Map<number, number>();

  /** Lockstep: the names a domain's kernel gave its tasks (trace events 'task'), by "domid:id". */
  private readonly taskNames = new Map<string, string>();

  private taskName(domid: number, task: number): string {
    return task === 0 ? 'interrupts' : this.taskNames.get(`${domid}:${task}`) ?? `task ${task}`;
  }

  /** The hypervisor's own timers on virtual time (a held event-channel notification). */
  private hostTimers: { at: number; seq: number; fn: () => void }[] = [];
  private hostTimerSeq = 0;

  private runHostTimers(): void {
    while (this.hostTimers.length && this.hostTimers[0].at <= this.now) {
      const h = this.hostTimers.shift()!;
      if (this.tracing) this.runEvents = [];
      h.fn();
      this.flushRunTrace(-1);
    }
  }

  /** Lockstep: runs `fn` on the host after `ns` of virtual time (free-running: real time). */
  deferOnHost(ns: number, fn: () => void): void {
    if (this.mode !== 'lockstep') {
      setTimeout(fn, ns / 1e6);
      return;
    }
    this.hostTimers.push({ at: this.now + Math.max(1, Math.round(ns)), seq: this.hostTimerSeq++, fn });
    this.hostTimers.sort((a, b) => a.at - b.at || a.seq - b.seq);
  }

  private mayRun(domid: number): boolean {
    const d = this.host.domains.get(domid);
    return d !== undefined && d.pauseCount === 0 && !d.isShutDown && this.vcpus.has(domid);
  }

  /** Frames some domain maps from another (grant maps), with the domains on either side. */
  private sharedFrames(): SharedFrames {
    const out: SharedFrames = new Map();
    for (const d of this.host.domains.values()) {
      for (const a of this.gnttab.activeEntries(d)) {
        const f = d.p2m[a.gfn];
        if (!f || a.pin === 0) continue;
        let s = out.get(f.mfn);
        if (!s) out.set(f.mfn, (s = { bytes: f.bytes, parties: new Set([d.domid]) }));
        s.parties.add(a.domid);
      }
    }
    return out;
  }

  /** What only the host or the scenario changes (a step that changes it has an unknown footprint). */
  private hostState(): string {
    const doms = [...this.host.domains.values()].map((d) => `${d.domid}:${d.pauseCount}:${d.isShutDown}:${d.dying}`).join(',');
    const mail = [...this.vcpus.values()].reduce((n, t) => n + (t.control instanceof LocalPort ? t.control.sent : 0), 0);
    return `${doms}|${[...this.vcpus.keys()].join(',')}|${this.hostTimers.length}:${this.hostTimerSeq}|${this.owed.size}|${mail}|${this.heldMail.size}`;
  }

  /** Runs vCPUs one at a time until every one is blocked with nothing due. */
  private async scheduleLoop(): Promise<void> {
    for (;;) {
      this.runHostTimers();
      const ready = this.runnable();
      if (ready.length === 0) {
        // Only a vCPU that may run can make time pass: a paused or shut-down domain's timers wait.
        // A stalled vCPU's due timer waits for the stall to end.
        const next = [...this.deadlines].filter(([id, v]) => v >= 0 && this.mayRun(id)).map(([id, v]) => Math.max(v, this.stalledUntil.get(id) ?? -1))
          .concat(this.hostTimers.map((h) => h.at))
          .concat([...this.stalledUntil].filter(([id, v]) => v > this.now && this.mayRun(id)).map(([, v]) => v))
          .sort((a, b) => a - b)[0];
        if (next === undefined) return;
        this.now = Math.max(this.now, next);
        continue;
      }
      // A stall fault is drawn apart from the strategy (its own stream, before the pick), so a
      // schedule written as replay:... means the same steps with the same faults.
      if (this.stall) {
        const s = this.stall([...new Set(ready.map((i) => i.domid))]);
        if (s && s.ns > 0) {
          this.stalledUntil.set(s.domid, this.now + s.ns);
          if (this.tracing) this.traceSink?.({ t: this.now, kind: 'fault', fault: 'vcpu-stall', domid: s.domid, ns: s.ns } as unknown as TraceEvent);
          continue;
        }
      }
      const pick = this.schedule.pick(ready);
      if (!(pick >= 0 && pick < ready.length)) throw new Error(`scheduler ${this.schedule.spec} picked ${pick} of ${ready.length}`);
      const dflt = defaultChoice(ready, this.scheduleRecord.lastItem);
      const labels = (): string[] => ready.map((i) => `dom${i.domid} ${this.taskName(i.domid, i.task)}`);
      if (this.choicePoints && ready.length > 1) this.choicePoints.push({ step: this.scheduleRecord.steps, items: labels(), ids: ready.map((i) => ({ domid: i.domid, task: i.task })), chosen: pick, dflt });
      const kind = this.scheduleRecord.note(ready, pick);
      const { domid, task } = ready[pick];
      this.owed.delete(domid);
      this.neverRan.delete(domid);
      const t = this.vcpus.get(domid)!;
      if (this.tracing) {
        this.runEvents = [];
        // A choice other than the default is what a shrunk failing run is made of: say it.
        if (kind !== 'default') {
          this.runEvents.push({
            t: this.now, kind: 'preempt', step: this.scheduleRecord.steps - 1, domid, task: this.taskName(domid, task),
            // Whether it took the CPU from the task that ran last (CHESS's preemption), or chose
            // another than the first ready after that one blocked.
            preempts: kind === 'switch',
            over: { domid: ready[dflt].domid, task: this.taskName(ready[dflt].domid, ready[dflt].task) },
            ready: labels(),
          } as unknown as TraceEvent);
        }
      }
      this.stepWatch?.begin(domid);
      this.deadlines.set(domid, await t.run(this.now, task));
      if (this.stepWatch) {
        for (const e of this.runEvents ?? []) this.stepWatch.event(e);
        this.stepLog!.push({ ids: ready.map((i) => ({ domid: i.domid, task: i.task })), chosen: pick, fp: this.stepWatch.end() });
      }
      this.flushRunTrace(domid);
    }
  }

  /**
   * Emits a lockstep run's events. What the domain posted itself (xenstored's messages, xenbus
   * states) travels apart from its hypercalls, so each posted event is placed after the
   * hypercall it followed - the same order whether the vCPU ran on a thread or inline.
   */
  private flushRunTrace(domid: number): void {
    const events = this.runEvents;
    this.runEvents = undefined;
    const sink = this.traceSink;
    if (!events || !sink) return;
    const posted = this.posted.get(domid) ?? [];
    let seen = this.hypercallsSeen.get(domid) ?? 0;
    const emitPosted = (all = false): void => {
      while (posted.length && (all || posted[0].hc <= seen)) {
        const { hc: _hc, ...ev } = posted.shift()!;
        sink({ ...ev, t: this.now });
      }
    };
    emitPosted();
    for (const ev of events) {
      sink(ev);
      if (ev.kind === 'hypercall' && ev.domid === domid) {
        seen++;
        emitPosted();
      }
    }
    emitPosted(true);
    this.hypercallsSeen.set(domid, seen);
  }

  /** A trace event a domain posted (tagged with how many hypercalls it had made by then). */
  private onPosted(domid: number, ev: TraceEvent & { hc: number }): void {
    if (this.mode !== 'lockstep') {
      const { hc: _hc, ...rest } = ev;
      this.traceStamp?.(rest);
      return;
    }
    let q = this.posted.get(domid);
    if (!q) this.posted.set(domid, (q = []));
    q.push(ev);
  }

  /** Lockstep: make sure the scheduler is running (after anything that may wake a vCPU). */
  private poke(): void {
    if (this.mode !== 'lockstep' || this.scheduling) return;
    this.scheduling = this.scheduleLoop().finally(() => {
      this.scheduling = undefined;
    });
  }

  /** Resolves once every vCPU is blocked with nothing due (lockstep), or at once (free). */
  async quiesce(): Promise<void> {
    while (this.scheduling) await this.scheduling;
  }

  private nextSeed(): number {
    this.seed = (Math.imul(this.seed, 1103515245) + 12345) >>> 0;
    return this.seed;
  }

  get dom0(): ControlPort {
    return this.control(0);
  }

  /** Where a domain's program talks to the simulator (its thread, its port in a pool, inline). */
  control(domid: number): ControlPort {
    const t = this.vcpus.get(domid);
    if (!t) throw new Error(`no domain ${domid}`);
    return t.control;
  }

  /** The runner of a domain's vCPU. */
  vcpu(domid: number): VcpuRunner | undefined {
    return this.vcpus.get(domid);
  }

  /**
   * The xenstore domain, when xenstored runs in one (Dom0Args.xenstoreDomain): its domid, which
   * libxl reads from /tool/xenstored/domid as the store's backend domain for every new guest.
   */
  xenstoreDomid: number | undefined;

  /** The domain whose xenstored serves guests' rings: 0, or the xenstore domain. */
  get storeDomid(): number {
    return this.xenstoreDomid ?? 0;
  }

  /** Boots dom0 running xenstored (or, asked, dom0 and a xenstore domain); resolves once it serves. */
  async bootDom0(args: Dom0Args = {}): Promise<void> {
    // Its kernel's own 16 pages, and room for the FIFO ABI's control block and a full event array.
    const fifoPages = 1 + EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES;
    const d = this.host.createDomain({ domid: 0, privileged: true, maxPages: 64 + fifoPages });
    this.host.populate(d, 0, 16 + fifoPages);
    this.host.unpause(d);
    const t = this.start(d, { store_mfn: 0, store_evtchn: 0 }, { module: DOM0_PROGRAM, args: { ...args, trace: this.tracing } });
    const ready = new Promise<void>((resolve, reject) => {
      t.control.once('error', reject);
      t.control.on('message', (m: { cmd: string }) => {
        if (m.cmd === 'ready') resolve();
      });
    });
    if (args.xenstoreDomain) {
      // xencommons (XENSTORETYPE=domain) runs init-xenstore-domain once dom0's kernel is up.
      await this.message<{ cmd: string }>(0, (m) => m.cmd === 'init-xenstore-domain');
      await this.initXenstoreDomain(args);
    }
    await ready;
  }

  /**
   * init-xenstore-domain, as dom0's xencommons runs it (its domctls are dom0's; the building is
   * the host's, as for every domain here): a domain with XEN_DOMCTL_CDF_xs_domain, dom0's kernel
   * asked for the store port and grant (IOCTL_XENBUS_BACKEND_SETUP), xenstored started with
   * `--event <port>`, VIRQ_DOM_EXC handed to it (XEN_DOMCTL_set_virq_handler), then unpaused.
   * Dom0's tools write /tool/xenstored/domid once xenstored answers them.
   */
  private async initXenstoreDomain(args: Dom0Args): Promise<void> {
    const xsd = this.host.createDomain({ xenstore: true, maxPages: 64 });
    this.host.populate(xsd, 0, 16);
    const setup = new Promise<{ port: number }>((resolve) => {
      const on = (m: { cmd: string; domid?: number; port?: number }): void => {
        if (m.cmd !== 'xenbus-backend-setupd' || m.domid !== xsd.domid) return;
        this.dom0.off('message', on);
        resolve({ port: Number(m.port) });
      };
      this.dom0.on('message', on);
    });
    this.send(0, { cmd: 'xenbus-backend-setup', domid: xsd.domid, name: XENSTORE_DOMAIN_NAME });
    const { port } = await setup;
    const rc = this.evtchn.setVirqHandler(xsd, Virq.VIRQ_DOM_EXC);
    if (rc !== 0) throw new Error(`XEN_DOMCTL_set_virq_handler(${xsd.domid}, VIRQ_DOM_EXC): ${rc}`);
    this.xenstoreDomid = xsd.domid;
    const program: DomainProgram = {
      module: XENSTORE_STUBDOM_PROGRAM,
      args: { event: port, profile: args.profile, xenstored: args.xenstored, trace: this.tracing } satisfies XenstoreStubdomArgs,
    };
    this.host.unpause(xsd);
    const t = this.start(xsd, { store_mfn: 0, store_evtchn: 0 }, program);
    await new Promise<void>((resolve, reject) => {
      t.control.once('error', reject);
      t.control.on('message', (m: { cmd: string }) => {
        if (m.cmd === 'ready') resolve();
      });
    });
  }

  /**
   * The whole tree as the xenstore domain's xenstored holds it, through an untraced connection of
   * its own (the simulator looking, not part of the story; dom0 may be gone).
   */
  xenstoreDomainDump(path = '/'): Promise<{ path: string; value: string; perms: string[] }[]> {
    const domid = this.xenstoreDomid;
    if (domid === undefined) return Promise.reject(new Error('this host has no xenstore domain'));
    const id = this.nextCall++;
    const w = this.control(domid);
    return new Promise((resolve, reject) => {
      const on = (r: { cmd: string; id: number; result?: { path: string; value: string; perms: string[] }[]; error?: string }): void => {
        if (r.cmd !== 'dumpd' || r.id !== id) return;
        w.off('message', on);
        if (r.error !== undefined) reject(new Error(r.error));
        else resolve(r.result ?? []);
      };
      w.on('message', on);
      this.send(domid, { cmd: 'dump', id, path });
    });
  }

  /** Starts a domain's vCPU on the runner this host uses for it; a paused domain's waits. */
  private start(d: Domain, store: { store_mfn: number; store_evtchn: number; console_mfn?: number; console_evtchn?: number }, program: DomainProgram): VcpuRunner {
    const si: StartInfo = { domid: d.domid, nr_pages: d.p2m.length, ...store, seed: this.nextSeed() };
    const paused = d.pauseCount > 0 || d.isShutDown;
    const routes = this.routes?.table(d.domid);
    let t: VcpuRunner;
    if (this.inline) t = new InlineVcpu(d, this.hypercalls, si, program, kernelImage, this.tracing);
    // Packing is for guests: dom0 keeps a thread of its own.
    else if (this.pool && d.domid !== 0) t = this.pool.place(d, si, program, { evtchnRoutes: routes, paused });
    else t = new DomainThread(d, this.hypercalls, si, program, kernelImage.worker, this.mode, { evtchnRoutes: routes, spin: this.spin, paused, tracing: this.tracing });
    this.vcpus.set(d.domid, t);
    const domid = d.domid;
    t.control.on('message', (m: { cmd: string; ev?: TraceEvent & { hc: number } }) => {
      if (m.cmd === 'trace' && m.ev) {
        if (m.ev.kind === 'task') this.taskNames.set(`${domid}:${String(m.ev.id)}`, String(m.ev.task));
        this.onPosted(domid, m.ev);
      } else this.stepWatch?.message(domid, m.cmd);
    });
    if (t.lockstep) this.neverRan.add(domid);
    if (!paused) {
      this.owed.add(d.domid);
      this.poke();
    }
    return t;
  }

  private dom0Command(m: Dom0Command): Promise<unknown> {
    const w = this.dom0;
    return new Promise((resolve) => {
      const on = (r: { cmd: string; domid: number }): void => {
        if (r.cmd === `${m.cmd}d` && r.domid === m.domid) {
          w.off('message', on);
          resolve(r);
        }
      };
      w.on('message', on);
      w.postMessage(m);
      this.owed.add(0);
      this.poke();
    });
  }

  /**
   * Builds and starts a guest, then has dom0 INTRODUCE it to xenstored. In lockstep, like every
   * action from outside the host, it waits until all vCPUs are idle, so it lands at the same point
   * of every replay.
   */
  async createGuest(opts: GuestOptions): Promise<Domain> {
    return (await this.buildGuest(opts)).domain;
  }

  /** The domain builder: memory, special pages, ports and grant refs, start_info, the vCPU. */
  async buildGuest(opts: GuestOptions): Promise<BuiltDomain & { domain: Domain }> {
    await this.quiesce();
    const vcpus = opts.vcpus ?? 1;
    // Every vCPU's vcpu_info is in shared_info here (no VCPUOP_register_vcpu_info), so Xen's
    // legacy limit is this host's; createdomain's bare -EINVAL would not say why.
    if (vcpus > SharedInfo.XEN_LEGACY_MAX_VCPUS) throw new Error(`vcpus = ${vcpus}: this host gives a domain at most ${SharedInfo.XEN_LEGACY_MAX_VCPUS} vCPUs (XEN_LEGACY_MAX_VCPUS)`);
    const d = this.host.createDomain({ domid: opts.domid, maxPages: opts.pages ?? 32, hvm: opts.hvm, vcpus });
    // A packed vCPU sleeps on its pool thread's doorbell: choose the thread now, before anyone
    // (dom0 at INTRODUCE) sends it an event, so fast-path senders are handed that doorbell.
    this.pool?.assign(d.domid);
    const nr = Math.min(opts.pages ?? 8, d.maxPages);
    this.host.populate(d, 0, nr);
    const dom0 = this.host.domains.get(0)!;
    // libxl__build_pre: the store and console ports are allocated in the new domain, for the
    // store's domain and the console's (dom0).
    const unbound = (remote: number): number => {
      const alloc = this.evtchn.allocUnbound(dom0, { dom: d.domid, remote_dom: remote as DomId });
      if (typeof alloc === 'number') throw new Error(`event channel for the new domain: ${alloc}`);
      return alloc.port;
    };
    const storeGfn = nr - 1;
    // libxl__build_pre: store_domid from /tool/xenstored/domid (dom0 unless a xenstore domain).
    const store = { gfn: storeGfn, port: unbound(this.storeDomid) };
    this.gnttab.seedEntry(d, grantRef(GNTTAB_RESERVED_XENSTORE), this.storeDomid as DomId, storeGfn);
    let console: { gfn: number; port: number } | undefined;
    if (opts.console) {
      console = { gfn: nr - 2, port: unbound(0) };
      this.gnttab.seedEntry(d, grantRef(GNTTAB_RESERVED_CONSOLE), 0 as DomId, console.gfn);
    }
    // As libxl: INTRODUCE (which resets the ring) while the domain is still paused, then unpause.
    if (opts.introduce !== false) {
      const r = (await this.dom0Command({ cmd: 'introduce', domid: d.domid, mfn: storeGfn, port: store.port })) as { error?: string };
      await this.quiesce();
      if (r.error !== undefined) {
        // xenstored could not take the domain (new_domain(): e.g. dom0 has no port left to bind
        // its store channel, ENOSPC): the create fails, the half-built domain goes, the host stays.
        this.host.destroy(d);
        this.poke();
        throw new CreateGuestError(d.domid, 'XS_INTRODUCE', r.error);
      }
    }
    const startStore = { store_mfn: storeGfn, store_evtchn: store.port, console_mfn: console?.gfn, console_evtchn: console?.port };
    if (!opts.paused) this.host.unpause(d);
    this.start(d, startStore, opts.program);
    return { domain: d, domid: d.domid, store, console };
  }

  /** domain_crash(): the domain shuts down with reason crash, now (a fault the scenarios inject). */
  crashDomain(domid: number): void {
    const d = this.host.domains.get(domid);
    if (!d || d.isShutDown || d.dying) return;
    this.host.shutdown(d, ShutdownReason.SHUTDOWN_crash);
    this.poke();
  }

  /**
   * A fault: the domain's pause count goes up now, wherever the run is (no waiting for the host
   * to go quiet, as `xl pause` does); its vCPU stops at its next preemption point.
   */
  faultPause(domid: number): void {
    const d = this.host.domains.get(domid);
    if (!d) throw new Error(`no domain ${domid}`);
    this.host.pause(d);
  }

  /** The fault's end: the pause count goes down again now. */
  faultUnpause(domid: number): void {
    const d = this.host.domains.get(domid);
    if (!d) throw new Error(`no domain ${domid}`);
    this.host.unpause(d);
    this.poke();
  }

  /**
   * Lets `ns` of the host's time pass: lockstep, virtual time, running the scheduler through it
   * (hypervisor steps: every vCPU that may run does); free-running, real time.
   */
  async idle(ns: number): Promise<void> {
    if (this.mode !== 'lockstep') {
      await new Promise((r) => setTimeout(r, ns / 1e6));
      return;
    }
    await this.quiesce();
    await new Promise<void>((resolve) => {
      this.deferOnHost(ns, resolve);
      this.poke();
    });
    await this.quiesce();
  }

  /** A message to a domain's program (its vCPU runs to take it). */
  send(domid: number, m: unknown): void {
    const t = this.vcpus.get(domid);
    const d = this.host.domains.get(domid);
    // A free-running thread would take the message at once; a paused domain takes it at unpause.
    // (A lockstep vCPU takes its mail only when the scheduler runs it.)
    if (t && !t.lockstep && d && (d.pauseCount > 0 || d.isShutDown)) {
      let q = this.heldMail.get(domid);
      if (!q) this.heldMail.set(domid, (q = []));
      q.push(m);
      return;
    }
    this.control(domid).postMessage(m);
    this.owed.add(domid);
    this.poke();
  }

  /** Messages for paused free-running domains, delivered at unpause. */
  private readonly heldMail = new Map<number, unknown[]>();

  /** A call into dom0's toolstack (libxl in dom0): resolves with its result, rejects with its error. */
  toolstack<T = unknown>(op: string, args: unknown): Promise<T> {
    const id = this.nextCall++;
    const w = this.dom0;
    return new Promise<T>((resolve, reject) => {
      const on = (r: { cmd: string; id: number; result?: T; error?: string }): void => {
        if (r.cmd !== 'toolstackd' || r.id !== id) return;
        w.off('message', on);
        if (r.error !== undefined) reject(new ToolstackCallError(op, r.error));
        else resolve(r.result as T);
      };
      w.on('message', on);
      this.send(0, { cmd: 'toolstack', id, op, args });
    });
  }
  private nextCall = 1;

  /** Waits for a message from a domain's program that satisfies `pred`. */
  message<T>(domid: number, pred: (m: T) => boolean): Promise<T> {
    const w = this.control(domid);
    return new Promise((resolve) => {
      const on = (m: T): void => {
        if (!pred(m)) return;
        w.off('message', on);
        resolve(m);
      };
      w.on('message', on);
    });
  }

  /** domain_kill stops the vCPUs, whoever asked (dom0's toolstack by hypercall, or destroy()). */
  private vcpuKilled(domid: number): void {
    const t = this.vcpus.get(domid);
    if (!t || domid === 0) return;
    this.vcpus.delete(domid);
    this.deadlines.delete(domid);
    this.owed.delete(domid);
    this.neverRan.delete(domid);
    this.heldMail.delete(domid);
    this.halting.push(t.destroy());
  }
  private halting: Promise<void>[] = [];

  /**
   * XEN_DOMCTL_pausedomain from outside (xl pause, a scenario): resolves once the vCPU runs
   * nothing - no upcall, no timer - as domain_pause waits for its vCPUs to be descheduled.
   */
  async pause(domid: number): Promise<void> {
    await this.quiesce();
    const d = this.host.domains.get(domid);
    if (!d) throw new Error(`no domain ${domid}`);
    this.host.pause(d);
    await this.vcpus.get(domid)?.stopped();
  }

  /** XEN_DOMCTL_unpausedomain for domains created or put paused. */
  async unpause(...domids: number[]): Promise<void> {
    await this.quiesce();
    for (const id of domids) {
      const d = this.host.domains.get(id);
      if (!d) continue;
      this.host.unpause(d);
      if (d.pauseCount === 0) this.owed.add(id);
    }
    this.poke();
  }

  /** A toolstack write in dom0 (scenario setup): value and ACL. */
  async toolstackWrite(path: string, value: string, perms: string[]): Promise<void> {
    await this.quiesce();
    await this.dom0Command({ cmd: 'write', domid: 0, path, value, perms });
  }

  /** XEN_DOMCTL_destroydomain after stopping the vCPU. */
  async destroy(domid: number): Promise<void> {
    await this.quiesce();
    this.vcpuKilled(domid);
    await Promise.all(this.halting.splice(0));
    const d = this.host.domains.get(domid);
    if (d && d.runState !== 'dying' && d.runState !== 'dead') this.host.destroy(d);
    this.poke();
  }

  async shutdown(): Promise<void> {
    await this.quiesce();
    for (const [domid, t] of [...this.vcpus].reverse()) {
      this.vcpus.delete(domid);
      await t.destroy();
    }
    await this.pool?.close();
    await Promise.all(this.halting.splice(0));
  }
}
