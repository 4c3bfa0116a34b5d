// What every guest kernel has: hypercall stubs, event-channel upcalls (the 2-level ABI, or FIFO
// once the kernel asks for it; Linux's handler shapes), grant tables, its own pages, a clock and a seeded PRNG. Domain code takes time
// and randomness only from here, so a run can be replayed.
import { performance } from 'node:perf_hooks';
import { type HandedFrame, HypercallClient, type HypercallPort } from '../../hypervisor/public/hypercall_page.ts';
import { Evtchn2l } from '../../hypervisor/public/event_2l.ts';
import { EvtchnFifo, EVTCHN_FIFO_LINK_BITS, FifoConsumer } from '../../hypervisor/public/event_fifo.ts';
import { PeerSharedInfo, routeDomid, routePort, routeValid, setPendingFast } from '../../hypervisor/public/evtchn_fast_path.ts';
import { EvtchnOp } from '../../hypervisor/public/event_channel.ts';
import {
  GNTMAP_host_map, GNTMAP_readonly, GNTTAB_NR_RESERVED_ENTRIES, GnttabOp, GntSt, gnttabEndForeignAccessRef, gnttabGrantForeignAccessRef, gnttabQueryForeignAccess, grantRef,
} from '../../hypervisor/public/grant_table.ts';
import { SchedOp, type ShutdownReason } from '../../hypervisor/public/sched.ts';
import { VMEXIT_IO_INSTRUCTION } from '../../hypervisor/public/hvm/ioreq.ts';
import { DOMID_SELF, type DomId, Hypercall, type StartInfo, VcpuInfo, XEN_PAGE_SIZE } from '../../hypervisor/public/xen.ts';
import { TaskScheduler } from './sched.ts';
import { EventsBase, type EventsQuirks } from './events-base.ts';
import {
  KERNEL_COUNTERS, type KernelBoot, KernelCounter, type RunMode, VcpuControl, vcpuGateClosed, vcpuParkAck,
} from '../../hypervisor/public/vcpu.ts';

/** Lockstep settling: event-loop turns a run always lets pass, and at most while work goes on. */
const SETTLE_HOPS = 2;
const SETTLE_MAX = 16;

export class HypercallFailed extends Error {
  constructor(readonly what: string, readonly ret: unknown) {
    super(`${what} failed: ${JSON.stringify(ret)}`);
  }
}

/** xorshift128+: small, fast and fully determined by its seed. */
export class Prng {
  private s0: bigint;
  private s1: bigint;

  constructor(seed: number) {
    // splitmix64 to spread the seed over both words
    let z = BigInt.asUintN(64, BigInt(seed >>> 0) + 0x9e3779b97f4a7c15n);
    const next = (): bigint => {
      z = BigInt.asUintN(64, z + 0x9e3779b97f4a7c15n);
      let x = z;
      x = BigInt.asUintN(64, (x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n);
      x = BigInt.asUintN(64, (x ^ (x >> 27n)) * 0x94d049bb133111ebn);
      return x ^ (x >> 31n);
    };
    this.s0 = next();
    this.s1 = next();
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    let s1 = this.s0;
    const s0 = this.s1;
    this.s0 = s0;
    s1 = BigInt.asUintN(64, s1 ^ (s1 << 23n));
    this.s1 = s1 ^ s0 ^ (s1 >> 17n) ^ (s0 >> 26n);
    return Number(BigInt.asUintN(64, this.s1 + s0) >> 32n);
  }

  /** A uniform integer in [0, n). */
  below(n: number): number {
    return Math.floor((this.u32() / 0x1_0000_0000) * n);
  }
}

export class Kernel {
  readonly domid: DomId;
  readonly startInfo: StartInfo;
  /** The domain's vCPUs (d->max_vcpus, from the boot record). */
  readonly vcpus: number;
  readonly rng: Prng;
  private readonly hc: HypercallPort;
  /**
   * This domain's memory as its boot record gives it (runs of consecutive gfns in one buffer,
   * ascending), and the views of its pages made so far: a view is made when a page is first used
   * (a 1 GiB guest has 262,144 pages, and a view of a shared buffer costs microseconds to make).
   */
  private readonly runs: readonly { readonly gfn: number; readonly count: number; readonly sab: SharedArrayBuffer; readonly offset: number }[];
  private readonly pages = new Map<number, Uint8Array>();
  /** Pages of other domains this kernel mapped, by grant handle. */
  private readonly foreign = new Map<number, Uint8Array>();
  /** Ports' irq_info and the upcall's dispatch (Linux's events_base.c). */
  private readonly events = new EventsBase(this);
  private readonly si: Uint8Array;
  private readonly siWords: Int32Array;
  /** This domain's shared_info through the 2-level ABI (the guest's half). */
  private readonly evtchn: Evtchn2l;
  /** The FIFO ABI once initFifo() switched to it: the event array and vCPU 0's consumer. */
  private fifo: { readonly state: EvtchnFifo; readonly consumer: FifoConsumer } | undefined;
  private readonly sharedInfoSab: SharedArrayBuffer;
  private gntTable: Uint8Array[] = [];
  /** performance.now() at boot: the free-running clock without a BigInt per reading. */
  private readonly bootMs = performance.now();
  private readonly routes: Int32Array | undefined;
  private readonly peers = new Map<number, PeerSharedInfo>();
  private running = false;
  readonly mode: RunMode;
  /** The vCPU control page (VcpuControl): the run token in lockstep, the pause gate free-running. */
  readonly vcpuControl: Int32Array | undefined;
  private readonly ctl64: BigInt64Array | undefined;
  /** Lockstep timers on virtual time, ordered by deadline then creation. */
  private timers: { at: number; seq: number; fn: () => void; live: boolean }[] = [];
  private timerSeq = 0;
  /** Whether the simulator keeps a trace (cheap to test before building an event). */
  readonly tracing: boolean;
  /** Where trace events go (set by whoever runs the kernel: the worker or the inline vCPU). */
  traceSink: ((ev: object) => void) | undefined;

  /** Adds an event to the simulator's trace, placed after this domain's last hypercall. */
  trace(ev: { readonly kind: string; readonly [k: string]: unknown } | { readonly kind: string }): void {
    if (this.tracing) this.traceSink?.({ domid: this.domid, ...ev, hc: this.hypercalls });
  }

  /** `hc`: the vCPU's trap page when several domains share one thread (a packed pool). */
  constructor(boot: KernelBoot, hc?: HypercallPort) {
    this.domid = boot.domid as DomId;
    this.startInfo = boot.startInfo;
    if (!Number.isInteger(boot.vcpus) || boot.vcpus < 1) throw new Error(`domain ${boot.domid}: boot record gives ${boot.vcpus} vCPUs`);
    this.vcpus = boot.vcpus;
    this.rng = new Prng(boot.startInfo.seed);
    this.hc = hc ?? new HypercallClient(boot.hypercallPage!, boot.port!);
    this.si = new Uint8Array(boot.sharedInfo);
    this.siWords = new Int32Array(boot.sharedInfo);
    this.evtchn = new Evtchn2l(boot.sharedInfo);
    this.sharedInfoSab = boot.sharedInfo;
    this.runs = [...boot.pages].sort((a, b) => a.gfn - b.gfn);
    for (let i = 1; i < this.runs.length; i++) {
      if (this.runs[i].gfn < this.runs[i - 1].gfn + this.runs[i - 1].count) throw new Error(`domain ${this.domid}: boot page runs overlap at gfn ${this.runs[i].gfn}`);
    }
    this.mode = boot.mode ?? 'free';
    this.routes = boot.evtchnRoutes ? new Int32Array(boot.evtchnRoutes) : undefined;
    this.tracing = boot.tracing ?? false;
    this.counters = new Float64Array(boot.counters ?? new ArrayBuffer(KERNEL_COUNTERS * 8));
    if (boot.vcpuControl) {
      this.vcpuControl = new Int32Array(boot.vcpuControl);
      this.ctl64 = new BigInt64Array(boot.vcpuControl);
      if (this.mode === 'lockstep') {
        const tasks = new TaskScheduler(this.vcpuControl, (id, name) => this.trace({ kind: 'task', task: name, id }));
        this.tasks = tasks;
        this.point = (task) => tasks.point(task);
      }
    }
  }

  /** Lockstep: this vCPU's tasks and the preemption points they park at. */
  readonly tasks: TaskScheduler | undefined;

  /**
   * A preemption point of task `task` (lockstep): resolves when the simulator's scheduler lets
   * that task go on. Undefined free-running, where real threads interleave by themselves, so the
   * hot paths pay nothing: `if (k.point) await k.point('xl')`.
   */
  readonly point: ((task: string) => Promise<void>) | undefined;

  // ---------------------------------------------------------------- time

  /** Nanoseconds on the domain's clock: real time since boot, or the host's virtual time. */
  now(): number {
    if (this.mode === 'lockstep' && this.ctl64) return Number(Atomics.load(this.ctl64, VcpuControl.NOW));
    return Math.round((performance.now() - this.bootMs) * 1e6);
  }

  /** A one-shot timer on the domain's clock. */
  setTimer(ns: number, fn: () => void): { cancel(): void } {
    if (this.mode === 'lockstep') {
      const t = { at: this.now() + Math.max(0, ns), seq: this.timerSeq++, fn, live: true };
      this.timers.push(t);
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      return { cancel: () => { t.live = false; } };
    }
    // A paused vCPU runs nothing: a timer that fires meanwhile runs at unpause.
    const t = setTimeout(() => (this.paused() ? void this.unpaused().then((open) => open && fn()) : fn()), Math.max(0, ns / 1e6));
    return { cancel: () => clearTimeout(t) };
  }

  /**
   * Fault knob: at a preemption point a task is descheduled with probability `p` for up to
   * `maxNs` of the domain's clock. Drawn from the kernel's PRNG, so a seed replays it.
   */
  jitter: { readonly p: number; readonly maxNs: number } | undefined;

  /** A preemption point (watch delivery, a toolstack request): maybe sleep a little. */
  async preempt(): Promise<void> {
    const j = this.jitter;
    if (!j || j.p <= 0) return;
    if (this.rng.u32() / 0x1_0000_0000 >= j.p) return;
    const ns = 1 + this.rng.below(Math.max(1, j.maxNs));
    await new Promise<void>((r) => void this.setTimer(ns, r));
  }

  private timerDue(): boolean {
    const now = this.now();
    return this.timers.some((t) => t.live && t.at <= now);
  }

  /** Changes whenever the domain does something observable: a hypercall, a send, a task parking. */
  private activity(): number {
    return this.hypercalls + this.counters[KernelCounter.sends] + (this.tasks?.parks ?? 0);
  }

  /** Runs the lockstep timers that are due; returns whether any ran. */
  private runTimers(): boolean {
    let ran = false;
    const now = this.now();
    while (this.timers.length && this.timers[0].at <= now) {
      const t = this.timers.shift()!;
      if (!t.live) continue;
      ran = true;
      t.fn();
    }
    return ran;
  }

  // ---------------------------------------------------------------- memory

  /** One of this domain's own pages. */
  page(gfn: number): Uint8Array {
    let p = this.pages.get(gfn);
    if (!p) {
      const r = this.runOf(gfn);
      if (!r) throw new RangeError(`domain ${this.domid} has no page at gfn ${gfn}`);
      p = new Uint8Array(r.sab, r.offset + (gfn - r.gfn) * XEN_PAGE_SIZE, XEN_PAGE_SIZE);
      this.pages.set(gfn, p);
    }
    return p;
  }

  /** The run holding gfn (binary search), or undefined. */
  private runOf(gfn: number): (typeof this.runs)[number] | undefined {
    let lo = 0;
    let hi = this.runs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.runs[mid];
      if (gfn < r.gfn) hi = mid - 1;
      else if (gfn >= r.gfn + r.count) lo = mid + 1;
      else return r;
    }
    return undefined;
  }

  private freeGfns: number[] | undefined;
  /** Which gfns are free (1), by gfn: reservePage takes one out in O(1), allocPage skips it in freeGfns. */
  private freeSet: Uint8Array | undefined;

  /** freeSet, made on first use: every page of the domain but the special ones. */
  private freeMap(): Uint8Array {
    if (!this.freeSet) {
      const last = this.runs.at(-1);
      const set = new Uint8Array(last ? last.gfn + last.count : 0);
      for (const r of this.runs) set.fill(1, r.gfn, r.gfn + r.count);
      for (const g of [this.startInfo.store_mfn, this.startInfo.console_mfn]) if (g !== undefined && g >= 0 && g < set.length) set[g] = 0;
      this.freeSet = set;
    }
    return this.freeSet;
  }

  /**
   * allocPage's stack, made on first use from the pages free then (a resumed kernel reserves every
   * page of its workload first: a big guest's list is then a few pages, not all of them). A page
   * reserved later stays in it and is skipped when popped; one freed goes on top.
   */
  private freeList(): number[] {
    if (!this.freeGfns) {
      const set = this.freeMap();
      const free: number[] = [];
      // Descending, so that pop() hands out the lowest gfn first.
      for (let i = this.runs.length - 1; i >= 0; i--) {
        const r = this.runs[i];
        for (let g = r.gfn + r.count - 1; g >= r.gfn; g--) if (set[g] === 1) free.push(g);
      }
      this.freeGfns = free;
    }
    return this.freeGfns;
  }

  /** A page of this domain's own memory that nothing uses yet (rings, I/O buffers). */
  allocPage(): { gfn: number; bytes: Uint8Array } {
    const free = this.freeList();
    let gfn: number | undefined;
    do gfn = free.pop();
    while (gfn !== undefined && this.freeSet![gfn] !== 1);
    if (gfn === undefined) throw new HypercallFailed('allocPage', 'out of memory');
    this.freeSet![gfn] = 0;
    const bytes = this.page(gfn);
    bytes.fill(0);
    return { gfn, bytes };
  }

  /**
   * Takes a page out of allocPage's free list without clearing it: memory the kernel image itself
   * occupies at a fixed place (what a resumed kernel finds there is what it left before suspend).
   */
  reservePage(gfn: number): Uint8Array {
    this.reserve(gfn);
    return this.page(gfn);
  }

  /** reservePage() without making a view of the page (a resumed kernel reserves every page its workload had). */
  reserve(gfn: number): void {
    if (!this.runOf(gfn)) throw new RangeError(`domain ${this.domid} has no page at gfn ${gfn}`);
    const set = this.freeMap();
    if (set[gfn] !== 1) throw new RangeError(`gfn ${gfn} is not free to reserve`);
    set[gfn] = 0;
  }

  freePage(gfn: number): void {
    if (!this.freeSet || this.freeSet[gfn] === 1 || !this.runOf(gfn)) return;
    // The stack first (made from the pages free before this one), then this page on top.
    this.freeList().push(gfn);
    this.freeSet[gfn] = 1;
  }

  // ---------------------------------------------------------------- hypercalls

  /** Hypercalls made so far (lets the simulator place this domain's own trace events among them). */
  hypercalls = 0;

  /** Event-channel counters, indexed by KernelCounter (one writer: this vCPU). */
  readonly counters: Float64Array;

  hypercall(op: Hypercall, args: unknown): unknown {
    const r = this.hc.call(this.domid, op, args);
    this.hypercalls++;
    this.adopt(r.frames);
    const ret = r.ret as { error?: string } | number | null;
    if (ret !== null && typeof ret === 'object' && 'error' in ret) throw new HypercallFailed(Hypercall[op], ret);
    return r.ret;
  }

  private lastFrames: HandedFrame[] = [];
  private adopt(frames: HandedFrame[]): void {
    this.lastFrames = frames.filter((f) => {
      if (f.sharedInfoOf === undefined) return true;
      this.peers.set(f.sharedInfoOf, new PeerSharedInfo(f.sab, f.doorbell, f.fifo));
      return false;
    });
  }

  private evtchnOp(cmd: EvtchnOp, arg: Record<string, number>): unknown {
    const r = this.hypercall(Hypercall.__HYPERVISOR_event_channel_op, { cmd, arg });
    if (typeof r === 'number' && r < 0) throw new HypercallFailed(EvtchnOp[cmd], r);
    return r;
  }

  // ---------------------------------------------------------------- event channels

  /**
   * Switches this kernel to the FIFO ABI (Linux's xen_evtchn_fifo_init; call before binding any
   * port): vCPU 0's control block on a page of its own. Every port bound from now on gets its
   * event-array page first (expand_array, a page of 1024 masked words at a time) and is unmasked.
   */
  initFifo(): void {
    if (this.fifo) return;
    const page = this.allocPage();
    const r = this.evtchnOp(EvtchnOp.EVTCHNOP_init_control, { control_gfn: page.gfn, offset: 0, vcpu: 0 }) as { link_bits: number };
    if (r.link_bits !== EVTCHN_FIFO_LINK_BITS) throw new HypercallFailed('EVTCHNOP_init_control', r);
    const state = new EvtchnFifo(this.sharedInfoSab);
    state.mapControlBlock(0, page.bytes.buffer as SharedArrayBuffer, page.bytes.byteOffset);
    this.fifo = { state, consumer: new FifoConsumer(state, 0) };
  }

  /** Whether this kernel runs the FIFO ABI. */
  get evtchnAbi(): '2l' | 'fifo' {
    return this.fifo ? 'fifo' : '2l';
  }

  /** A newly bound port: FIFO needs its event word (evtchn_fifo_setup) and an unmask. */
  private bound(port: number): number {
    if (!this.fifo) return port;
    const { state } = this.fifo;
    while (port >= state.numEvtchns) {
      const page = this.allocPage();
      EvtchnFifo.initArrayPage(new Int32Array(page.bytes.buffer, page.bytes.byteOffset, page.bytes.length / 4));
      this.evtchnOp(EvtchnOp.EVTCHNOP_expand_array, { array_gfn: page.gfn });
      state.addArrayPage(page.bytes.buffer as SharedArrayBuffer, page.bytes.byteOffset);
    }
    this.unmask(port);
    return port;
  }

  allocUnbound(remoteDom: number): number {
    const r = this.evtchnOp(EvtchnOp.EVTCHNOP_alloc_unbound, { dom: DOMID_SELF, remote_dom: remoteDom }) as { port: number };
    return this.bound(r.port);
  }

  bindInterdomain(remoteDom: number, remotePort: number): number {
    const r = this.evtchnOp(EvtchnOp.EVTCHNOP_bind_interdomain, { remote_dom: remoteDom, remote_port: remotePort }) as { local_port: number };
    return this.bound(r.local_port);
  }

  bindVirq(virq: number): number {
    const r = this.evtchnOp(EvtchnOp.EVTCHNOP_bind_virq, { virq, vcpu: 0 }) as { port: number };
    return this.bound(r.port);
  }

  /** EVTCHNOP_send: notify the other end (in this thread when the hypervisor routes the port). */
  notify(port: number): void {
    this.counters[KernelCounter.sends]++;
    if (this.routes && port > 0 && port < this.routes.length) {
      const route = Atomics.load(this.routes, port);
      const si = routeValid(route) ? this.peers.get(routeDomid(route)) : undefined;
      const d = si && setPendingFast(si, routePort(route));
      if (d) {
        if (d === 'upcall') this.counters[KernelCounter.kicks]++;
        return;
      }
    }
    // Linux's notify_remote_via_evtchn() ignores what EVTCHNOP_send returns: a port the other end
    // or a teardown has closed meanwhile is no error to the sender.
    this.hypercall(Hypercall.__HYPERVISOR_event_channel_op, { cmd: EvtchnOp.EVTCHNOP_send, arg: { port } });
  }

  /**
   * Frees the port's handler and closes it at once. Only where no upcall can be dispatching the
   * port meanwhile (a one-vCPU kernel); a frontend's teardown unbinds with unbindFromIrqhandler.
   */
  close(port: number): void {
    this.events.free(port);
    this.evtchnOp(EvtchnOp.EVTCHNOP_close, { port });
  }

  /**
   * unbind_from_irqhandler: frees the port's handler - waiting, unless the R09 quirk drops the
   * lock, for an upcall dispatching it on another vCPU to finish - and closes the port.
   */
  unbindFromIrqhandler(port: number): Promise<void> {
    return this.events.unbind(port, () => void this.evtchnOp(EvtchnOp.EVTCHNOP_close, { port }));
  }

  /**
   * The kernel's event-dispatch knobs (the guest sets them at boot). With two vCPUs or more, in
   * lockstep, the upcall runs as a task of its own (events-base.ts).
   */
  configureEvents(quirks?: EventsQuirks): void {
    this.events.configure(this.vcpus, quirks);
  }

  /** Unmasks a port: FIFO clears MASKED in place unless the port is pending (Linux's unmask). */
  unmask(port: number): void {
    if (this.fifo && !this.fifo.state.guestUnmaskNeedsHypercall(port)) return;
    this.evtchnOp(EvtchnOp.EVTCHNOP_unmask, { port });
  }

  /** Handler run for each event on `port` (in the upcall, one at a time). */
  on(port: number, handler: (port: number) => void): void {
    this.events.bind(port, handler);
  }

  /**
   * The vCPU comes up: from now on runSlice runs it. Whoever runs the kernel drives it: a thread's
   * run loop (run-loop.ts) or, inline, the host calling runSlice.
   */
  start(): void {
    this.running = true;
  }

  /**
   * One lockstep run of this vCPU: upcalls and due timers, each followed by letting the tasks
   * they started settle, until nothing is left; then publish the next deadline and return it.
   * `settle` lets the caller deliver its own messages between rounds (an inline vCPU's port).
   */
  async runSlice(settle?: () => boolean): Promise<number> {
    // Mail is taken once per run: what arrives during the run waits for the next one, so a
    // sender that answers every reply at once cannot keep this vCPU on the CPU for ever.
    let mail = settle?.() ?? false;
    // The one task the scheduler lets go on this run, after the interrupts (as an upcall pending
    // on an unmasked vCPU is taken before the interrupted task resumes).
    let choice = this.tasks?.takeChoice() ?? 0;
    for (;;) {
      const upcall = Atomics.load(this.si, VcpuInfo.evtchn_upcall_pending) !== 0;
      if (upcall) this.handleEvents();
      const timers = this.runTimers();
      const inbox = mail;
      mail = false;
      const resumed = choice !== 0 && !upcall && !timers && !inbox;
      if (resumed) {
        this.tasks!.resume(choice);
        choice = 0;
      }
      // Let promise chains and immediates started by the handlers run to their next wait: at
      // least SETTLE_HOPS turns of the event loop, and on while the last one still did something.
      for (let i = 0, seen = -1; i < SETTLE_HOPS || (seen !== this.activity() && i < SETTLE_MAX); i++) {
        seen = this.activity();
        await new Promise<void>((r) => setImmediate(r));
      }
      if (!this.running) return -1;
      // Quiet: nothing taken this round and nothing new (the resumed task ran to its next wait).
      if (!upcall && !timers && !inbox && Atomics.load(this.si, VcpuInfo.evtchn_upcall_pending) === 0 && !this.timerDue()) break;
    }
    this.tasks?.publish();
    const next = this.timers.find((t) => t.live);
    const deadline = next ? next.at : -1;
    if (this.ctl64) Atomics.store(this.ctl64, VcpuControl.DEADLINE, BigInt(deadline));
    return deadline;
  }

  stop(): void {
    this.running = false;
    this.tasks?.clear();
    this.stopped = true;
    Atomics.notify(this.siWords, 0);
    if (this.vcpuControl) Atomics.notify(this.vcpuControl, VcpuControl.RUN);
  }

  /**
   * Free-running: the domain is paused (its pause count is up, or it shut down): the runner
   * closed the RUN gate. A paused vCPU runs nothing - no upcall, no timer - until it opens.
   */
  paused(): boolean {
    return this.mode === 'free' && this.vcpuControl !== undefined && vcpuGateClosed(this.vcpuControl);
  }

  /**
   * Resolves once the RUN gate is open (at once unless paused). Parked here, the vCPU runs no
   * guest code, and says so to the runner (which waits for that before a pause completes).
   */
  async unpaused(): Promise<boolean> {
    while (!this.stopped && this.paused()) {
      vcpuParkAck(this.vcpuControl!);
      const w = Atomics.waitAsync(this.vcpuControl!, VcpuControl.RUN, 0);
      if (w.async) await w.value;
    }
    return !this.stopped;
  }

  /** Set by stop(): this kernel never runs again. */
  private stopped = false;

  /** Whether stop() was called: this kernel never runs again. */
  get halted(): boolean {
    return this.stopped;
  }

  /**
   * One pass of a free-running vCPU, the same on its own thread and on a pool thread: parked at a
   * closed gate it acknowledges the pause and takes nothing (returns false); otherwise it takes
   * its pending upcalls (returns true).
   */
  takeUpcalls(): boolean {
    if (this.stopped) return false;
    if (this.paused()) {
      vcpuParkAck(this.vcpuControl!);
      return false;
    }
    this.handleEvents();
    return true;
  }

  /** The upcall handler (events_2l's or events_fifo's shape): every pending unmasked port, to its handler. */
  handleEvents(): void {
    const fifo = this.fifo;
    this.counters[KernelCounter.upcalls] += this.events.handle((dispatch) => (fifo ? fifo.consumer.handleEvents(dispatch) : this.evtchn.handleEvents(0, dispatch)));
  }

  // ---------------------------------------------------------------- grant tables

  /** GNTTABOP_setup_table: learn (and gain) this domain's grant-table frames. */
  setupGrantTable(nrFrames = 1): void {
    const r = this.hypercall(Hypercall.__HYPERVISOR_grant_table_op, {
      cmd: GnttabOp.GNTTABOP_setup_table, ops: [{ dom: DOMID_SELF, nr_frames: nrFrames }],
    }) as { rc: number; results: { status: number }[] };
    if (r.rc !== 0 || r.results[0].status !== GntSt.GNTST_okay) throw new HypercallFailed('setup_table', r);
    this.gntTable = this.lastFrames.map((f) => new Uint8Array(f.sab, f.offset ?? 0, XEN_PAGE_SIZE));
  }

  private freeRefs: number[] = [];
  private nextRef = GNTTAB_NR_RESERVED_ENTRIES;

  /** gnttab_claim_grant_reference: a free entry of our grant table (past the reserved ones). */
  allocGrantRef(): number {
    return this.freeRefs.pop() ?? this.nextRef++;
  }

  /** gnttab_grant_foreign_access: a fresh ref granting `domid` our page `gfn`. */
  grantForeignAccess(domid: number, gfn: number, readonly: boolean): number {
    const ref = this.allocGrantRef();
    this.grantAccess(ref, domid, gfn, readonly);
    return ref;
  }

  /** gnttab_end_foreign_access: revoke and recycle the ref; false (ref kept) while still mapped. */
  endForeignAccess(ref: number): boolean {
    if (!this.endAccess(ref)) return false;
    this.freeRefs.push(ref);
    return true;
  }

  /** gnttab_grant_foreign_access_ref: let `domid` map our page `gfn`. */
  grantAccess(ref: number, domid: number, gfn: number, readonly: boolean): void {
    if (this.gntTable.length === 0) this.setupGrantTable();
    gnttabGrantForeignAccessRef(this.gntTable, grantRef(ref), domid as DomId, gfn, readonly);
  }

  /** gnttab_end_foreign_access_ref: false while the peer still maps it. */
  endAccess(ref: number): boolean {
    return gnttabEndForeignAccessRef(this.gntTable, grantRef(ref));
  }

  /**
   * gnttab_query_foreign_access: whether the peer maps the grant right now. Only a hint - the
   * peer may map it the moment after (XSA-396); endAccess is the test that holds.
   */
  queryForeignAccess(ref: number): boolean {
    return gnttabQueryForeignAccess(this.gntTable, grantRef(ref)) !== 0;
  }

  /**
   * GNTTABOP_map_grant_ref: a page another domain granted us; status and, on success, the page -
   * writable, or (GNTMAP_readonly) behind an accessor that can only read it.
   */
  mapGrant(dom: number, ref: number, readonly: true): { status: GntSt; handle: number; page?: ReadonlyPage };
  mapGrant(dom: number, ref: number, readonly: false): { status: GntSt; handle: number; page?: Uint8Array };
  mapGrant(dom: number, ref: number, readonly: boolean): { status: GntSt; handle: number; page?: Uint8Array | ReadonlyPage };
  mapGrant(dom: number, ref: number, readonly: boolean): { status: GntSt; handle: number; page?: Uint8Array | ReadonlyPage } {
    const flags = GNTMAP_host_map | (readonly ? GNTMAP_readonly : 0);
    // A fresh address each time: reusing one still mapped (as counting live maps did once an
    // earlier one was unmapped) makes Xen refuse to unmap the older mapping.
    const hostAddr = (0x100000 + ++this.mapSlots) * XEN_PAGE_SIZE;
    const r = this.hypercall(Hypercall.__HYPERVISOR_grant_table_op, {
      cmd: GnttabOp.GNTTABOP_map_grant_ref, ops: [{ host_addr: hostAddr, flags, ref, dom }],
    }) as { results: { status: GntSt; handle: number }[] };
    const res = r.results[0];
    if (res.status !== GntSt.GNTST_okay) return { status: res.status, handle: res.handle };
    const bytes = new Uint8Array(this.lastFrames[0].sab, this.lastFrames[0].offset ?? 0, XEN_PAGE_SIZE);
    this.foreign.set(res.handle, bytes);
    this.mapAddr.set(res.handle, hostAddr);
    return { status: res.status, handle: res.handle, page: readonly ? new ReadonlyPage(bytes) : bytes };
  }

  private readonly mapAddr = new Map<number, number>();
  private mapSlots = 0;

  unmapGrant(handle: number): GntSt {
    const r = this.hypercall(Hypercall.__HYPERVISOR_grant_table_op, {
      cmd: GnttabOp.GNTTABOP_unmap_grant_ref, ops: [{ host_addr: this.mapAddr.get(handle) ?? 0, dev_bus_addr: 0, handle }],
    }) as { results: { status: GntSt }[] };
    this.foreign.delete(handle);
    this.mapAddr.delete(handle);
    return r.results[0].status;
  }

  // ---------------------------------------------------------------- port I/O (HVM)

  /** IN: traps to the hypervisor's emulation (a VM exit, carried like a hypercall). */
  inw(port: number): number {
    return this.hypercall(VMEXIT_IO_INSTRUCTION, { dir: 'in', port, size: 2 }) as number;
  }

  /** OUT. */
  outw(port: number, value: number): void {
    this.hypercall(VMEXIT_IO_INSTRUCTION, { dir: 'out', port, size: 2, value });
  }

  /** EVTCHNOP_bind_pirq. */
  bindPirq(pirq: number): number {
    const r = this.evtchnOp(EvtchnOp.EVTCHNOP_bind_pirq, { pirq, flags: 0 }) as { port: number };
    return r.port;
  }

  // ---------------------------------------------------------------- scheduling

  /** SCHEDOP_shutdown: the domain stops; the toolstack decides what happens next. */
  shutdown(reason: ShutdownReason): void {
    this.hypercall(Hypercall.__HYPERVISOR_sched_op, { cmd: SchedOp.SCHEDOP_shutdown, reason });
    this.stop();
  }
}

/**
 * A page mapped with GNTMAP_readonly. Without an MMU the shared bytes cannot be write-protected,
 * so the kernel never hands them out: this accessor reads (and copies) but has no way to write.
 */
export class ReadonlyPage {
  readonly #bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  get length(): number {
    return this.#bytes.length;
  }

  at(i: number): number | undefined {
    return this.#bytes[i];
  }

  indexOf(value: number, from?: number): number {
    return this.#bytes.indexOf(value, from);
  }

  /** A copy of bytes [start, end). */
  subarray(start?: number, end?: number): Uint8Array {
    return this.#bytes.slice(start, end);
  }
}
