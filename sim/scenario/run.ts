// One run of a scenario with one seed: a fresh host in inline lockstep (the seed drives the
// scheduler, every domain's PRNG and the fault knobs), the scenario's steps with invariants after
// each, and a result in Xen Test Framework terms. The trace's hash is what replays are compared by.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Dom0Args } from '../../domains/dom0/dom0.ts';
import type { DomainConfig } from '../../domains/dom0/toolstack/config.ts';
import type { NodeDump } from '../../domains/dom0/toolstack/toolstack.ts';
import type { GuestArgs, GuestCommand } from '../../domains/domU/guest.ts';
import { Prng } from '../../domains/kernel/kernel.ts';
import { parseSchedule, ReplayStrategy, type SchedItem } from '../scheduler/strategy.ts';
import { HostRuntime, ToolstackCallError, type TraceEvent } from '../host-runtime.ts';
import { XtfResult } from '../report/xtf.ts';
import { type CreateOptions, Xl } from '../xl.ts';
import { linkedPipes } from '../migrate-pipe.ts';
import { type MigrateReceiveResult, type MigrateSendResult, migrateReceive, migrateSend } from '../xl-migrate.ts';
import type { PrecopyPolicy } from '../../domains/dom0/toolstack/migration/precopy.ts';
import { XlMigrateMessage, xlMigrateMessageBytes } from '../../domains/dom0/toolstack/migration/xl-migrate-channel.ts';
import { applyFaults, DEFAULT_FAULTS, describeFaults, type FaultSelection, type Faults, sampleFaults } from './faults.ts';
import type { FaultHost } from './fault-registry.ts';
import { ShadowStore } from './shadow-store.ts';
import { type ScenarioDef, ScenarioFailure, ScenarioSkip, type VariantDef } from './scenario.ts';

/** Hang guards of one run (none of them a bound on how long a healthy run may take). */
const MAX_STEPS = 5_000_000;
const HANG_CHECK_MS = 1_000;
const IDLE_HANG_MS = 15_000;
const WALL_HANG_MS = 600_000;

export interface RunOptions {
  readonly seed: number;
  readonly variant?: string;
  /** Also hand each trace event to this sink (a --trace file). */
  readonly onTrace?: (e: TraceEvent) => void;
  /** Print progress lines (the fault draw, steps) here. */
  readonly log?: (line: string) => void;
  /** Which fault kinds this run may draw (default: the scenario's own fault space). */
  readonly faults?: FaultSelection;
  /** How the scheduler picks each step: random (default), pct:D[:K], replay:STEPS (sim/scheduler/strategy.ts). */
  readonly schedule?: string;
  /** Keep every step that had a choice (RunResult.choicePoints), for searching schedules. */
  readonly recordChoices?: boolean;
  /** Keep every step's ready items, choice and footprint (RunResult.stepLog), for partial-order reduction. */
  readonly recordFootprints?: boolean;
}

export interface RunResult {
  readonly scenario: string;
  readonly seed: number;
  readonly variant: string;
  /** The fault selection the run drew from (printed in its replay command). */
  readonly faultSelection: FaultSelection;
  readonly result: XtfResult;
  readonly message?: string;
  /** The step that was running when the run ended badly. */
  readonly step?: string;
  readonly faults: Faults;
  /** The schedule as the replay line names it (default random). */
  readonly schedule: string;
  /** Scheduler steps, and the steps where the choice was not the default one (preemptions). */
  readonly steps: number;
  readonly preemptions: readonly { readonly step: number; readonly choice: number; readonly domid: number; readonly task: number }[];
  /** Of those, the ones that took the CPU from a task that could have gone on (CHESS's count). */
  readonly switches: number;
  /**
   * A replay: the first forced choice this run could not make (fewer tasks ready than asked) -
   * the schedule was written for another run (seed, variant, faults or xensim version).
   */
  readonly diverged?: { readonly step: number; readonly asked: number; readonly ready: number };
  readonly choicePoints?: readonly { readonly step: number; readonly items: readonly string[]; readonly ids: readonly SchedItem[]; readonly chosen: number; readonly dflt: number }[];
  /** Every step of the run's own host: what could run, what ran, what it touched (when asked). */
  readonly stepLog?: HostRuntime['stepLog'];
  readonly events: number;
  /** sha256 of the trace as JSON lines. */
  readonly hash: string;
  /** Virtual time at the end (ns). */
  readonly virtualNs: number;
  readonly wallMs: number;
  readonly trace: readonly TraceEvent[];
}

const merge = <T extends object>(a: T | undefined, b: T | undefined): T | undefined => {
  if (!a) return b;
  if (!b) return a;
  const out: Record<string, unknown> = { ...(a as Record<string, unknown>) };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = prev && v && typeof prev === 'object' && typeof v === 'object' && !Array.isArray(v) ? merge(prev as object, v as object) : v;
  }
  return out as T;
};

/** The run's own host: its trace events carry no `host`; a peer's carry its name. */
export const MAIN_HOST = 'A';

/** One host of a run: its hypervisor and dom0 (HostRuntime) and its xl. */
export class ScenarioHost {
  constructor(readonly name: string, readonly rt: HostRuntime, readonly xl: Xl) {}

  async read(path: string): Promise<string | undefined> {
    return (await this.rt.toolstack<string | null>('read', { path })) ?? undefined;
  }

  /** Waits (watching the node) until `path` holds one of `values` (null = absent); false on timeout. */
  async waitFor(path: string, values: string | null | readonly (string | null)[], timeoutNs = 10e9): Promise<boolean> {
    const list = Array.isArray(values) ? values : [values];
    const r = await this.rt.toolstack<{ ok: boolean }>('wait', { path, values: list, timeoutNs });
    return r.ok;
  }

  /** The device states a guest's frontends and this dom0's backends published, per device dir. */
  async deviceStates(domid: number): Promise<{ kind: string; devid: string; frontend: string | undefined; backend: string | undefined }[]> {
    const out = [];
    for (const d of await this.xl.devices(domid)) {
      if (d.kind === 'console') continue;
      const fe = await this.read(`/local/domain/${domid}/device/${d.kind}/${d.devid}/state`);
      const be = await this.read(`/local/domain/${d.backend}/backend/${d.kind}/${domid}/${d.devid}/state`);
      out.push({ kind: d.kind, devid: String(d.devid), frontend: fe, backend: be });
    }
    return out;
  }

  /** Nodes left for a domain that does not exist on this host (the orphan check). */
  async orphans(): Promise<string[]> {
    const live = new Set([0, ...this.rt.host.domains.keys()]);
    const out: string[] = [];
    for (const n of await this.xl.dump('/')) {
      const m = /^\/local\/domain\/(\d+)$/.exec(n.path) ?? /^\/local\/domain\/0\/backend\/[^/]+\/(\d+)$/.exec(n.path)
        ?? /^\/libxl\/(\d+)$/.exec(n.path);
      if (m && !live.has(Number(m[1]))) out.push(n.path);
    }
    return out;
  }
}

/** How `ScenarioRun.migrate` runs one `xl migrate`, and what goes wrong on the way. */
export interface MigrateOptions {
  /** The link resets after the sender wrote this many bytes (draw it from s.rng). */
  readonly cutAfter?: number;
  /** The link resets this many bytes after the source domain has suspended (a destination dying late). */
  readonly cutAfterSuspend?: number;
  /** The sender's "permission to go" is lost: the receiver's side of the link resets (its replies still get through). */
  readonly loseGo?: boolean;
  /** libxc's precopy policy (default simplePrecopyPolicy). */
  readonly policy?: PrecopyPolicy;
}

/** Both sides of one `xl migrate`, each as it ended (a failure is an outcome, not a throw). */
export interface MigrateOutcome {
  readonly from: { readonly host: string; readonly domid: number };
  /** Where the role lives now: the destination's new domain, or still the source's. */
  readonly to: { readonly host: string; readonly domid: number };
  readonly send: PromiseSettledResult<MigrateSendResult>;
  readonly receive: PromiseSettledResult<MigrateReceiveResult>;
  readonly ok: boolean;
}

/** What a scenario's steps work with. */
export class ScenarioRun {
  readonly roles = new Map<string, number>();
  /** Which host each role's domain lives on (absent: the run's own, MAIN_HOST). */
  private readonly roleHosts = new Map<string, string>();
  /** Every host of the run by name, the run's own first. */
  readonly hosts = new Map<string, ScenarioHost>();
  readonly rng: Prng;
  private readonly invariants: { name: string; check: () => Promise<string | undefined> }[] = [];
  currentStep: string | undefined;

  constructor(
    readonly def: ScenarioDef,
    readonly seed: number,
    readonly variant: string,
    readonly variantDef: VariantDef,
    readonly faults: Faults,
    /** What the drawn faults give every guest. */
    private readonly faultGuestArgs: readonly GuestArgs[],
    readonly rt: HostRuntime,
    readonly xl: Xl,
    readonly trace: TraceEvent[],
    private readonly log: (line: string) => void,
    /** Boots a second host for this run (runScenario's, seeded from the run's seed and the name). */
    private readonly bootPeer?: (name: string) => Promise<ScenarioHost>,
  ) {
    this.rng = new Prng((seed ^ 0x5ce7a) >>> 0);
    this.hosts.set(MAIN_HOST, new ScenarioHost(MAIN_HOST, rt, xl));
  }

  /**
   * A second host (booted on first use) beside the run's own: its own hypervisor and dom0 with
   * the run's faults and the variant's dom0 options, its seed derived from the run's and its
   * name, its trace events in the run's trace labelled with `host: name`. Shut down with the run.
   */
  async peer(name: string): Promise<ScenarioHost> {
    const had = this.hosts.get(name);
    if (had) return had;
    if (!this.bootPeer) throw new Error('this run cannot boot a peer host');
    const h = await this.bootPeer(name);
    this.hosts.set(name, h);
    return h;
  }

  /** The host a role's domain lives on now. */
  hostOf(role: string): ScenarioHost {
    return this.hosts.get(this.roleHosts.get(role) ?? MAIN_HOST)!;
  }

  /**
   * xl migrate ROLE HOST: migrateSend on the role's host and migrateReceive on `to`, joined by an
   * in-process link (with the faults asked for, stamped in the trace); the destination's guest
   * gets this run's guest options. On success the role names the new domain on `to`; otherwise
   * it stays where it was. Both sides' hosts settle before this returns.
   */
  async migrate(role: string, to: string, opts: MigrateOptions = {}): Promise<MigrateOutcome> {
    const src = this.hostOf(role);
    const dst = to === MAIN_HOST ? this.hosts.get(MAIN_HOST)! : await this.peer(to);
    if (dst === src) throw new Error(`${role} already lives on host ${to}`);
    const domid = this.domid(role);
    const { sender, receiver } = linkedPipes({
      cutAfter: opts.cutAfter,
      cutLater: opts.cutAfterSuspend === undefined ? undefined
        : { when: () => src.rt.host.domains.get(domid)?.isShutDown === true, bytes: opts.cutAfterSuspend },
      loseWrite: opts.loseGo ? xlMigrateMessageBytes(XlMigrateMessage.migrate_permission_to_go) : undefined,
      onFault: (what, bytes) => this.fault(what === 'cut' ? 'migration-link-reset' : 'migration-go-lost', { from: src.name, to: dst.name, bytes }),
    });
    const [send, receive] = await Promise.allSettled([
      migrateSend(src.xl, domid, sender, { policy: opts.policy }),
      migrateReceive(dst.xl, receiver, { guest: this.guestArgs() }),
    ]);
    await src.xl.settled();
    await dst.xl.settled();
    const ok = send.status === 'fulfilled' && receive.status === 'fulfilled';
    if (ok) {
      this.roles.set(role, receive.value.domid);
      this.roleHosts.set(role, dst.name);
    }
    const where = ok ? { host: dst.name, domid: receive.value.domid } : { host: src.name, domid };
    this.stamp({ kind: 'step', name: `xl migrate ${role}: ${src.name}/${domid} -> ${dst.name}: ${ok ? `domain ${where.domid}` : 'failed'}` });
    return { from: { host: src.name, domid }, to: where, send, receive, ok };
  }

  /** The guest options this run gives every guest: the variant's and the drawn faults. */
  guestArgs(extra?: GuestArgs): GuestArgs {
    const fromFaults = this.faultGuestArgs.reduce<GuestArgs | undefined>((a, b) => merge(a, b), undefined);
    return merge(merge(fromFaults, this.variantDef.guest), extra) ?? {};
  }

  /** A knob of this run's variant (VariantDef.knobs); undefined where the variant sets none. */
  knob<T extends string | number | boolean = boolean>(name: string): T | undefined {
    return this.variantDef.knobs?.[name] as T | undefined;
  }

  /** xl create for a named role (guest1, frontend...), on the run's host or a peer. */
  async create(role: string, cfg: DomainConfig, opts: CreateOptions = {}, host = MAIN_HOST): Promise<number> {
    const h = host === MAIN_HOST ? this.hosts.get(MAIN_HOST)! : await this.peer(host);
    const domid = await h.xl.create(cfg, { ...opts, guest: this.guestArgs(opts.guest) });
    this.roles.set(role, domid);
    this.roleHosts.set(role, h.name);
    return domid;
  }

  domid(role: string): number {
    const d = this.roles.get(role);
    if (d === undefined) throw new Error(`no role ${role}`);
    return d;
  }

  /** Marks a point in the trace (and the timeline) without running anything. */
  note(text: string): void {
    this.stamp({ kind: 'step', name: text });
  }

  private stamp(e: TraceEvent): void {
    this.trace.push(e);
  }

  /** A named step: runs it, lets the host settle, then checks every invariant. */
  async step<T>(name: string, fn: () => Promise<T>): Promise<T> {
    this.currentStep = name;
    this.log(`  step: ${name}`);
    this.stamp({ kind: 'step', name });
    const r = await fn();
    for (const h of this.hosts.values()) await h.xl.settled();
    const stuck = this.stuckDomain();
    if (stuck) throw new ScenarioFailure(`invariant "no domain stuck without a pending event" after step "${name}": ${stuck}`);
    await this.checkShadow(`step "${name}"`);
    for (const inv of this.invariants) {
      const bad = await inv.check();
      if (bad !== undefined) throw new ScenarioFailure(`invariant "${inv.name}" after step "${name}": ${bad}`);
    }
    return r;
  }

  /**
   * Built in, after every step: at quiescence no running domain has an unmasked event pending
   * that its vCPU was never told about (a lost wake-up leaves a driver waiting for ever).
   */
  stuckDomain(): string | undefined {
    for (const h of this.hosts.values()) {
      for (const d of h.rt.host.domains.values()) {
        if (!d.sharedInfo || d.pauseCount > 0 || d.isShutDown || d.runState === 'dying' || d.runState === 'dead') continue;
        const lost = h.rt.evtchn.lostWakeup(d);
        const on = h.name === MAIN_HOST ? '' : ` on host ${h.name}`;
        if (lost) return `domain ${d.domid}${on} has ${lost}`;
      }
    }
    return undefined;
  }

  /** An invariant checked after every step (return a description of what is wrong, or undefined). */
  invariant(name: string, check: () => Promise<string | undefined>): void {
    this.invariants.push({ name, check });
  }

  expect(cond: unknown, message: string): void {
    if (!cond) throw new ScenarioFailure(message);
  }

  /** A fault the scenario injects itself (appears in the trace). */
  fault(name: string, detail: Record<string, unknown> = {}): void {
    this.stamp({ kind: 'fault', fault: name, ...detail });
    this.log(`  fault: ${name}`);
  }

  private readonly traceHooks = new Set<(e: TraceEvent) => void>();

  /** Whether something acts on trace events as they are emitted (runUntil, when, atRandomPoint). */
  get observing(): boolean {
    return this.traceHooks.size > 0;
  }

  /** The runner hands every trace event here as it is emitted (a peer's carry `host`). */
  observe(e: TraceEvent): void {
    // The shadow follows the run's own xenstored only.
    if (e.host === undefined) {
      this.shadow?.see(e);
      if (e.kind === 'fault' && e.fault === 'xenstored-crash') this.shadowOff = true;
      // A restarted daemon (or a standby taken over) answers again: its tree must hold every write committed before the crash.
      if (e.kind === 'xenstored' && (e.op === 'restarted' || e.op === 'failed-over')) this.shadowOff = false;
    }
    for (const h of this.traceHooks) h(e);
  }

  private shadow: ShadowStore | undefined;
  /** Set when xenstored is gone (nothing can be read back any more), or by a scenario. */
  shadowOff = false;

  /** Starts the committed-writes shadow from the tree as it is now. */
  async startShadow(): Promise<void> {
    const initial = await this.quietDump();
    this.shadow = new ShadowStore(initial);
  }

  /**
   * The whole tree through an untraced inspection connection (not part of the story): dom0's, or
   * the xenstore domain's own when there is one (dom0's tools reach that one only over dom0's
   * ring, where nothing is untraced - and dom0 may have crashed).
   */
  private async quietDump(): Promise<NodeDump[]> {
    await this.rt.quiesce();
    if (this.rt.xenstoreDomid !== undefined) return this.rt.xenstoreDomainDump('/');
    return this.rt.toolstack<NodeDump[]>('dump', { path: '/', quiet: true });
  }

  /** Built-in invariant: every committed write is present, and nothing else changed the tree. */
  async checkShadow(after: string): Promise<void> {
    if (!this.shadow || this.shadowOff) return;
    const bad = this.shadow.diff(await this.quietDump());
    if (bad) throw new ScenarioFailure(`invariant "every committed write is present" after ${after}: ${bad}`);
  }

  /**
   * Calls `fn` once, at the first trace event (of any host) satisfying `pred`, as it is emitted -
   * to start something at that very moment while a step goes on. Returns the hook's remover.
   */
  when(pred: (e: TraceEvent) => boolean, fn: (e: TraceEvent) => void): () => void {
    const hook = (e: TraceEvent): void => {
      if (!pred(e)) return;
      this.traceHooks.delete(hook);
      fn(e);
    };
    this.traceHooks.add(hook);
    return () => void this.traceHooks.delete(hook);
  }

  /**
   * Starts `action`, then resolves with the first trace event satisfying `pred` as soon as it is
   * emitted - mid-run, not at quiescence - so the scenario can act at that very moment (xl destroy
   * as a frontend reaches Initialised); undefined if the host goes quiet without one. (waitFor
   * cannot do this: its timeout is a pending timer, and quiescing runs virtual time up to it.)
   */
  async runUntil(action: () => Promise<unknown>, pred: (e: TraceEvent) => boolean): Promise<TraceEvent | undefined> {
    let hook!: (e: TraceEvent) => void;
    const seen = new Promise<TraceEvent>((resolve) => {
      hook = (e) => {
        if (pred(e)) resolve(e);
      };
      this.traceHooks.add(hook);
    });
    try {
      await action();
      return await Promise.race([seen, this.xl.settled().then(() => undefined)]);
    } finally {
      this.traceHooks.delete(hook);
    }
  }

  /**
   * Runs `action` and, at a point drawn from the seed (after 0..maxEvents-1 further trace events),
   * injects `fault` - a crash "at a random point" that the same seed puts at the same place.
   */
  async atRandomPoint(action: () => Promise<unknown>, fault: () => void, maxEvents: number, name = 'fault'): Promise<void> {
    const at = this.rng.below(maxEvents);
    let n = 0;
    let fired = false;
    const hook = (): void => {
      if (fired || n++ < at) return;
      fired = true;
      this.fault(name, { afterEvents: at });
      fault();
    };
    this.traceHooks.add(hook);
    try {
      await action();
      await this.xl.settled();
    } finally {
      this.traceHooks.delete(hook);
    }
    if (!fired) {
      this.fault(name, { afterEvents: n, late: true });
      fault();
      await this.xl.settled();
    }
  }

  /** Waits (watching the node) until `path` holds one of `values` (null = absent); false on timeout. */
  async waitFor(path: string, values: string | null | readonly (string | null)[], timeoutNs = 10e9): Promise<boolean> {
    return this.hosts.get(MAIN_HOST)!.waitFor(path, values, timeoutNs);
  }

  async read(path: string): Promise<string | undefined> {
    return this.hosts.get(MAIN_HOST)!.read(path);
  }

  async dump(path = '/'): Promise<NodeDump[]> {
    return this.xl.dump(path);
  }

  /** A command to a guest's user space (on whichever host the role lives now). */
  async guest<T = Record<string, unknown>>(role: string, m: Parameters<Xl['guest']>[1]): Promise<T> {
    return this.hostOf(role).xl.guest<T>(this.domid(role), m as Omit<GuestCommand, 'id'> as never);
  }

  /** The device states a guest's frontends and dom0's backends published, per device dir (this run's host). */
  async deviceStates(domid: number): Promise<{ kind: string; devid: string; frontend: string | undefined; backend: string | undefined }[]> {
    return this.hosts.get(MAIN_HOST)!.deviceStates(domid);
  }

  /** Built-in invariant: at quiescence both ends of every device of the named roles agree (wherever each lives). */
  devicesAgree(...roles: string[]): void {
    this.invariant('both ends of every device agree', async () => {
      for (const role of roles) {
        const domid = this.roles.get(role);
        const h = this.hostOf(role);
        if (domid === undefined || !h.xl.domains.has(domid)) continue;
        for (const d of await h.deviceStates(domid)) {
          if ((d.frontend === '4') !== (d.backend === '4')) {
            return `${role} ${d.kind}/${d.devid}: frontend ${d.frontend ?? 'absent'}, backend ${d.backend ?? 'absent'}`;
          }
        }
      }
      return undefined;
    });
  }

  /** Expectation: no node is left for a domain that does not exist (the orphan check). */
  async expectNoOrphans(): Promise<void> {
    for (const h of this.hosts.values()) {
      const orphans = await h.orphans();
      this.expect(orphans.length === 0, `orphan nodes${h.name === MAIN_HOST ? '' : ` on host ${h.name}`}: ${orphans.join(', ')}`);
    }
  }
}

/** A peer host's seed: the run's, mixed with the host's name (FNV-1a), never 0. */
export function peerSeed(seed: number, name: string): number {
  let h = 0x811c9dc5;
  for (const c of name) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193);
  return ((Math.imul(seed, 0x9e3779b1) ^ h) >>> 0) || 1;
}

/** Runs one seed of a scenario. Never throws: every outcome is a result. */
export async function runScenario(def: ScenarioDef, opts: RunOptions): Promise<RunResult> {
  const t0 = performance.now();
  const variant = opts.variant ?? 'fixed';
  const log = opts.log ?? (() => undefined);
  const variantDef: VariantDef = def.variants?.[variant] ?? (variant === 'fixed' ? { description: 'as Xen does it' } : undefined)!;
  const faultSelection = opts.faults ?? DEFAULT_FAULTS;
  const schedule = opts.schedule ?? 'random';
  const none = { schedule, steps: 0, preemptions: [], switches: 0 };
  const trace: TraceEvent[] = [];
  let faults: Faults;
  try {
    faults = sampleFaults(def.faults, opts.seed, faultSelection);
  } catch (e) {
    const base = { scenario: def.name, seed: opts.seed, variant, faultSelection, faults: {}, ...none };
    return { ...base, result: XtfResult.ERROR, message: e instanceof Error ? e.message : String(e), events: 0, hash: '', virtualNs: 0, wallMs: 0, trace };
  }
  const base = { scenario: def.name, seed: opts.seed, variant, faultSelection, faults, ...none };
  if (!variantDef) {
    return { ...base, result: XtfResult.ERROR, message: `no variant ${variant}`, events: 0, hash: '', virtualNs: 0, wallMs: 0, trace };
  }
  let strategy;
  try {
    strategy = parseSchedule(schedule, opts.seed);
  } catch (e) {
    return { ...base, result: XtfResult.ERROR, message: e instanceof Error ? e.message : String(e), events: 0, hash: '', virtualNs: 0, wallMs: 0, trace };
  }
  log(`${def.name} seed ${opts.seed} variant ${variant}; faults: ${describeFaults(faults)}${schedule === 'random' ? '' : `; schedule ${schedule}`}`);
  const rt = new HostRuntime({
    seed: opts.seed, mode: 'lockstep', inline: true, schedule: strategy, recordChoices: opts.recordChoices, recordFootprints: opts.recordFootprints,
    trace: (e) => {
      trace.push(e);
      opts.onTrace?.(e);
      run?.observe(e);
    },
  });
  const faultHost: FaultHost = { evtchn: rt.evtchn, seed: opts.seed };
  const fromFaults = applyFaults(faults, faultHost);
  rt.stall = faultHost.stall;
  // The run's shared storage: absolute disk targets live here, on every host of the run alike
  // (a path of its own per run, not in the trace, so a seed replays to the same hash).
  const storageRoot = mkdtempSync(path.join(tmpdir(), 'xensim-storage-'));
  const dom0: Dom0Args = { ...merge<Dom0Args>(fromFaults.dom0.reduce<Dom0Args | undefined>((a, b) => merge(a, b), undefined), variantDef.dom0), storageRoot };
  let run: ScenarioRun | undefined;
  const peers: HostRuntime[] = [];
  // A scenario acting on trace events as they come, or a second host beside this one, makes
  // every step's footprint unknown (sim/scheduler/footprint.ts).
  rt.observing = () => (run?.observing ?? false) || peers.length > 0;
  // A second host: the same faults and dom0 options, a seed of its own from the run's and its
  // name, a random schedule from that seed (a replayed or PCT schedule steers the run's own host
  // only), its events in the run's trace labelled with its name.
  const bootPeer = async (name: string): Promise<ScenarioHost> => {
    if (name === MAIN_HOST) throw new Error(`host ${MAIN_HOST} is the run's own`);
    const seed = peerSeed(opts.seed, name);
    const peer = new HostRuntime({
      seed, mode: 'lockstep', inline: true,
      trace: (e) => {
        const labelled = { ...e, host: name };
        trace.push(labelled);
        opts.onTrace?.(labelled);
        run?.observe(labelled);
      },
    });
    peers.push(peer);
    const peerFaults: FaultHost = { evtchn: peer.evtchn, seed };
    const applied = applyFaults(faults, peerFaults);
    peer.stall = peerFaults.stall;
    await peer.bootDom0({ ...merge<Dom0Args>(applied.dom0.reduce<Dom0Args | undefined>((a, b) => merge(a, b), undefined), variantDef.dom0), storageRoot });
    log(`  host ${name} booted (seed ${seed})`);
    return new ScenarioHost(name, peer, new Xl(peer));
  };
  let result = XtfResult.SUCCESS;
  let message: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    const body = (async () => {
      await rt.bootDom0(dom0);
      const xl = new Xl(rt);
      run = new ScenarioRun(def, opts.seed, variant, variantDef, faults, fromFaults.guest, rt, xl, trace, log, bootPeer);
      await run.startShadow();
      await def.run(run);
      await run.checkShadow('the end');
      for (const h of run.hosts.values()) {
        await h.xl.settled();
        if (h.xl.errors.length) throw h.xl.errors[0];
      }
    })();
    const guard = new Promise<never>((_, reject) => {
      const t0 = performance.now();
      let elu = performance.eventLoopUtilization();
      let idleSince: number | undefined;
      timer = setInterval(() => {
        // A hang, never a slow run: how loaded the machine is decides nothing. A livelock takes
        // scheduler steps without end; a deadlock leaves this thread's event loop with nothing
        // to do (a starved run is still busy); the wall-clock bound is the last resort only.
        const now = performance.now();
        const d = performance.eventLoopUtilization(elu);
        elu = performance.eventLoopUtilization();
        idleSince = d.utilization < 0.01 ? idleSince ?? now - HANG_CHECK_MS : undefined;
        if (rt.scheduleRecord.steps + peers.reduce((n, p) => n + p.scheduleRecord.steps, 0) > MAX_STEPS) reject(new Error(`no result after ${MAX_STEPS} scheduler steps (livelock)`));
        else if (idleSince !== undefined && now - idleSince >= IDLE_HANG_MS) reject(new Error(`no result, and nothing left to run for ${IDLE_HANG_MS / 1000} s (deadlock)`));
        else if (now - t0 >= (def.timeoutMs ?? WALL_HANG_MS)) reject(new Error(`no result after ${(def.timeoutMs ?? WALL_HANG_MS) / 1000} s of wall time (hung)`));
      }, HANG_CHECK_MS);
    });
    await Promise.race([body, guard]);
  } catch (e) {
    const name = e instanceof Error ? e.name : '';
    if (e instanceof ScenarioFailure || e instanceof ToolstackCallError || name === 'ScenarioFailure') result = XtfResult.FAILURE;
    else if (e instanceof ScenarioSkip || name === 'ScenarioSkip') result = XtfResult.SKIP;
    else result = XtfResult.ERROR;
    message = e instanceof Error ? e.message : String(e);
  } finally {
    clearInterval(timer);
  }
  // A domain's program died or a kernel oopsed: the run crashed, whatever the steps said.
  const oops = trace.find((e) => e.kind === 'oops');
  const dead = [rt, ...peers].flatMap((h) => [...h.vcpus.values()]).find((t) => t.failure !== undefined);
  if (oops || dead) {
    result = XtfResult.CRASH;
    message = oops ? `domain ${oops.domid} oops in ${String(oops.where)}: ${String(oops.error)}` : `domain crashed: ${String(dead!.failure)}`;
  }
  await rt.shutdown().catch(() => undefined);
  for (const p of peers) await p.shutdown().catch(() => undefined);
  rmSync(storageRoot, { recursive: true, force: true });
  const hash = createHash('sha256');
  for (const e of trace) hash.update(JSON.stringify(e)).update('\n');
  const rec = rt.scheduleRecord;
  return {
    ...base, steps: rec.steps, switches: rec.switches,
    ...(strategy instanceof ReplayStrategy && strategy.divergedAt ? { diverged: strategy.divergedAt } : {}), preemptions: rec.preemptions.map((step, k) => ({ step, choice: rec.choices[step], domid: rec.preemptedTo[k].domid, task: rec.preemptedTo[k].task })), choicePoints: rt.choicePoints,
    ...(rt.stepLog ? { stepLog: rt.stepLog } : {}),
    result, message, step: result === XtfResult.SUCCESS ? undefined : run?.currentStep,
    events: trace.length, hash: hash.digest('hex'), virtualNs: rt.virtualNow, wallMs: Math.round(performance.now() - t0), trace,
  };
}

/**
 * PCT wants K, the number of steps of a run. `pct:D` without one gets the steps of the scenario's
 * default schedule (fixed variant, no faults, this seed) measured here; anything else is returned
 * as it is.
 */
export async function withMeasuredSteps(def: ScenarioDef, schedule: string, seed: number): Promise<string> {
  const m = /^pct:(\d+)$/.exec(schedule);
  if (!m) return schedule;
  const r = await runScenario(def, { seed, faults: { spec: 'none' }, schedule: 'replay:-' });
  return r.steps > 0 ? `pct:${m[1]}:${r.steps}` : schedule;
}
