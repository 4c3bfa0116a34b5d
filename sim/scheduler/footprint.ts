// What one scheduler step touched that another domain can see: its footprint, for partial-order
// reduction (sim/scenario/explore.ts). Two steps commute - either order leaves every domain, the
// hypervisor and the scenario in the same state - when their footprints do not conflict (one
// writes what the other reads or writes). The footprint is built from what the host sees of a
// step, conservatively:
//   - `dom:D`, read and written by every step of domain D: its kernel's memory, its tasks, its
//     event-channel ports and pending bits, its grant table. Two steps of one domain never commute.
//   - an event-channel or grant-table operation naming another domain R (a send to R's port, a
//     bind to it, a map of R's grant): writes `dom:R` (R's next step sees it).
//   - every page shared between domains (a frame another domain maps: xenstore and console rings,
//     blkif and netif rings, granted data pages): read by every step of a domain that owns or maps
//     it - nothing tells which bytes a step looked at, and a producer may fill a ring without an
//     event (notify suppression) - and written by a step during which its bytes changed. A step
//     that stores the same bytes again is no write, which is sound because the other party reads
//     the page at every step anyway.
//   - unknown: anything else - a domctl, sysctl, memory or HVM op, a grant copy, a shutdown, a
//     message between a domain and the simulator (an xl command's answer, the scenario's reaction),
//     the scenario watching the trace as it goes (runUntil, when), a change to a domain's pause or
//     run state, another domain's event pending with no operation that names it - conflicts with
//     every step.
import type { TraceEvent } from '../host-runtime.ts';

export interface Footprint {
  /** Conflicts with every step (an effect the host cannot attribute). */
  readonly global: boolean;
  readonly reads: ReadonlySet<string>;
  readonly writes: ReadonlySet<string>;
  /** Why it is global (the first reason), for the explore report and tests. */
  readonly why?: string;
}

/** Whether two steps' order can matter: either is global, or one writes what the other touches. */
export function conflicts(a: Footprint, b: Footprint): boolean {
  if (a.global || b.global) return true;
  for (const w of a.writes) if (b.writes.has(w) || b.reads.has(w)) return true;
  for (const w of b.writes) if (a.reads.has(w)) return true;
  return false;
}

/** A domain's private state. */
export const domObject = (domid: number): string => `dom:${domid}`;
/** A shared page, by machine frame. */
export const frameObject = (mfn: number): string => `mfn:${mfn}`;

/** DOMID_SELF (xen.h): an operation naming the caller itself. */
const DOMID_SELF = 0x7ff0;

/** sched_op commands that touch nobody but the caller (SCHEDOP_yield, SCHEDOP_block). */
const LOCAL_SCHED_OPS = new Set([0, 1]);
/** grant_table_op commands whose effects the gnttab trace events name (map, unmap, setup_table, query_size). */
const NAMED_GNTTAB_OPS = new Set([0, 1, 2, 6]);

/** Builds one step's footprint. */
export class FootprintBuilder {
  private readonly reads = new Set<string>();
  private readonly writes = new Set<string>();
  private why: string | undefined;

  constructor(readonly domid: number) {
    this.reads.add(domObject(domid));
    this.writes.add(domObject(domid));
  }

  /** Conflicts with everything from now on. */
  unknown(why: string): void {
    this.why ??= why;
  }

  read(obj: string): void {
    this.reads.add(obj);
  }

  write(obj: string): void {
    this.writes.add(obj);
  }

  /** Whether the step already says it wrote `obj` (or is global). */
  wrote(obj: string): boolean {
    return this.why !== undefined || this.writes.has(obj);
  }

  private touchDomain(domid: unknown): void {
    if (typeof domid !== 'number' || domid === DOMID_SELF || domid === this.domid) return;
    this.writes.add(domObject(domid));
  }

  /**
   * One hypervisor trace event emitted during the step: hypercalls are classified by what they
   * can reach; event-channel and grant-table events name the other domain they touch.
   */
  event(e: TraceEvent): void {
    const ev = e as unknown as Record<string, unknown>;
    switch (e.kind) {
      case 'hypercall': {
        if (ev.domid !== this.domid) return this.unknown(`a hypercall by domain ${String(ev.domid)} during domain ${this.domid}'s step`);
        const op = String(ev.op);
        const cmd = Number(ev.cmd);
        if (op === '__HYPERVISOR_event_channel_op') return; // its 'evtchn' events name the domains
        if (op === '__HYPERVISOR_grant_table_op') {
          if (!NAMED_GNTTAB_OPS.has(cmd)) this.unknown(`grant_table_op ${cmd}`);
          return;
        }
        if (op === '__HYPERVISOR_sched_op' && LOCAL_SCHED_OPS.has(cmd)) return;
        if (op === '__HYPERVISOR_console_io') return this.write('console');
        return this.unknown(Number.isNaN(cmd) ? op : `${op} ${cmd}`);
      }
      case 'evtchn': {
        this.touchDomain(ev.domid);
        this.touchDomain((ev.remote as { domid?: number } | undefined)?.domid);
        const args = ev.args as Record<string, number> | undefined;
        this.touchDomain(args?.dom);
        this.touchDomain(args?.remote_dom);
        const delivery = ev.delivery as { domid?: number } | undefined;
        this.touchDomain(delivery?.domid);
        return;
      }
      case 'gnttab':
        this.touchDomain(ev.domid);
        this.touchDomain(ev.dom);
        return;
      default:
        // A domain's own story (xenstored's messages, xenbus states, tasks) is its private state.
        return;
    }
  }

  done(): Footprint {
    return { global: this.why !== undefined, reads: this.reads, writes: this.writes, ...(this.why ? { why: this.why } : {}) };
  }
}

/** The pages several domains can touch: frame -> the domains that own or map it. */
export type SharedFrames = Map<number, { readonly bytes: Uint8Array; readonly parties: Set<number> }>;

/** What the host lets a step watcher look at (sim/host-runtime.ts provides it). */
export interface StepView {
  /** Every frame another domain maps, with its owner and mappers. */
  sharedFrames(): SharedFrames;
  /** Each domain's shared_info page (its event pending bits). */
  sharedInfos(): Map<number, Uint8Array>;
  /** What only the host or the scenario changes: domains' pause and run states, vCPUs, host timers, mail, trace watchers. */
  hostState(): string;
  /** The scenario watches trace events as they come (it may act on any of them). */
  observing(): boolean;
}

/**
 * Watches one step at a time: snapshots what other domains can see before it, and after it
 * tells what it read and wrote.
 */
export class StepWatcher {
  private fb: FootprintBuilder | undefined;
  private frames: { mfn: number; before: Uint8Array; parties: Set<number> }[] = [];
  private infos: { domid: number; bytes: Uint8Array; before: Uint8Array }[] = [];
  private host = '';

  constructor(private readonly view: StepView) {}

  begin(domid: number): void {
    const fb = new FootprintBuilder(domid);
    this.fb = fb;
    if (this.view.observing()) fb.unknown('the scenario watches the trace (runUntil, when)');
    this.frames = [...this.view.sharedFrames()].map(([mfn, f]) => ({ mfn, before: f.bytes.slice(), parties: f.parties }));
    this.infos = [...this.view.sharedInfos()].filter(([d]) => d !== domid).map(([d, bytes]) => ({ domid: d, bytes, before: bytes.slice() }));
    this.host = this.view.hostState();
  }

  /** A hypervisor trace event during the step. */
  event(e: TraceEvent): void {
    this.fb?.event(e);
  }

  /** A message between a domain and the simulator during the step (not a trace event). */
  message(domid: number, what: string): void {
    this.fb?.unknown(`message '${what}' between domain ${domid} and the simulator`);
  }

  end(): Footprint {
    const fb = this.fb;
    if (!fb) throw new Error('StepWatcher.end without begin');
    this.fb = undefined;
    const d = fb.domid;
    if (this.view.observing()) fb.unknown('the scenario watches the trace (runUntil, when)');
    if (this.view.hostState() !== this.host) fb.unknown('the host changed (pause, run state, domains, host timers, mail)');
    const now = this.view.sharedFrames();
    for (const f of this.frames) {
      const after = now.get(f.mfn);
      if (f.parties.has(d) || after?.parties.has(d)) fb.read(frameObject(f.mfn));
      // Bytes that changed: the page itself, whoever mapped or unmapped it meanwhile.
      const bytes = after?.bytes;
      if (bytes && Buffer.compare(bytes, f.before) !== 0) fb.write(frameObject(f.mfn));
      else if (!bytes) fb.write(frameObject(f.mfn));
    }
    for (const [mfn, f] of now) {
      if (this.frames.some((x) => x.mfn === mfn)) continue;
      // Shared during the step (a map): its owner's grant named, so dom:owner is written; the page too.
      fb.read(frameObject(mfn));
      fb.write(frameObject(mfn));
      if (!f.parties.has(d)) fb.unknown(`frame ${mfn} became shared between other domains`);
    }
    for (const i of this.infos) {
      if (Buffer.compare(i.bytes, i.before) !== 0 && !fb.wrote(domObject(i.domid))) fb.unknown(`domain ${i.domid}'s shared_info changed with no operation naming it`);
    }
    this.frames = [];
    this.infos = [];
    return fb.done();
  }
}
