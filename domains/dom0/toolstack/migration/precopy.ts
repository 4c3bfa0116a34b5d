// Live migration's memory phase as xg_sr_save.c runs it (send_domain_memory_live()): with log-dirty
// mode on, round 1 sends every pfn; each later round sends the pfns the guest dirtied meanwhile
// (XEN_DOMCTL_SHADOW_OP_CLEAN) until the precopy policy says stop; then the domain is suspended and
// the pages dirtied since the last round are sent (suspend_and_send_dirty()). The hypervisor side
// (the dirty bitmap, the suspend) comes in through LiveDomain, so the loop itself is pure.
import { MAX_BATCH_SIZE } from './libxc-stream.ts';
import { type GuestPage, type MutableGuestPage, type SaveStreamWriter, newGuestPage } from './stream-writer.ts';

/** struct precopy_stats. */
export interface PrecopyStats {
  /** Rounds completed. */
  readonly iteration: number;
  readonly totalWritten: number;
  /** Pages dirty for the next round, or -1 when not yet known. */
  readonly dirtyCount: number;
}

export enum PrecopyPolicyDecision {
  XGS_POLICY_ABORT = -1,
  XGS_POLICY_CONTINUE_PRECOPY = 0,
  XGS_POLICY_STOP_AND_COPY = 1,
}

export type PrecopyPolicy = (stats: PrecopyStats) => PrecopyPolicyDecision;

/** Stop after this many rounds... */
export const SPP_MAX_ITERATIONS = 5;
/** ...or once fewer pages than this are dirty. */
export const SPP_TARGET_DIRTY_COUNT = 50;

/** simple_precopy_policy(): libxc's default when the toolstack gives none (xl gives none). */
export function simplePrecopyPolicy(s: PrecopyStats): PrecopyPolicyDecision {
  return (s.dirtyCount >= 0 && s.dirtyCount < SPP_TARGET_DIRTY_COUNT) || s.iteration >= SPP_MAX_ITERATIONS
    ? PrecopyPolicyDecision.XGS_POLICY_STOP_AND_COPY
    : PrecopyPolicyDecision.XGS_POLICY_CONTINUE_PRECOPY;
}

/** The running domain as the saver sees it. */
export interface LiveDomain {
  /** Number of pfns in its p2m (xc_domain_nr_gpfns). */
  readonly p2mSize: number;
  /**
   * The page now: a view of the frame, or the frame in place in a mapping, will do (the writer
   * copies it into its record at once).
   * Type XTAB for a pfn with no page behind it.
   */
  readPage(pfn: number): GuestPage;
  /** readPage() into a page object of the saver's (reused batch after batch: no object a page). */
  readPageInto?(pfn: number, page: MutableGuestPage): void;
  /** XEN_DOMCTL_SHADOW_OP_CLEAN: pfns dirtied since log-dirty was enabled or last cleaned, ascending. */
  logdirtyClean(): Promise<readonly number[]>;
  /** Suspends the domain (libxl's suspend callback); resolves once it is shut down for suspend. */
  suspend(): Promise<void>;
  /** Between batches: the guest runs and the transport drains. */
  afterBatch?(): Promise<void>;
}

export class PrecopyAborted extends Error {}

export interface PrecopyReport {
  /** Pages sent in each live round, then (last) in the round after suspend. */
  readonly rounds: readonly number[];
  /** Rounds sent while the guest ran. */
  readonly liveRounds: number;
}

/** Sends `count` pfns: pfns[0..count), or (pfns undefined) 0..count-1, round 1's every pfn. */
async function sendPfns(w: SaveStreamWriter, dom: LiveDomain, pfns: readonly number[] | undefined, count: number): Promise<void> {
  const batch: MutableGuestPage[] = [];
  for (let i = 0; i < count; i += MAX_BATCH_SIZE) {
    const n = Math.min(MAX_BATCH_SIZE, count - i);
    batch.length = Math.min(batch.length, n);
    for (let j = 0; j < n; j++) {
      const pfn = pfns ? pfns[i + j] : i + j;
      if (dom.readPageInto) dom.readPageInto(pfn, (batch[j] ??= newGuestPage()));
      else batch[j] = dom.readPage(pfn);
    }
    w.sendPages(batch);
    await dom.afterBatch?.();
  }
}

/**
 * Precopy, suspend, last round. The caller has written the stream's start (w.start()) and enabled
 * log-dirty mode; afterwards it writes the suspended state (w.endOfCheckpoint()) and the end.
 */
export async function sendDomainMemoryLive(w: SaveStreamWriter, dom: LiveDomain, policy: PrecopyPolicy = simplePrecopyPolicy): Promise<PrecopyReport> {
  const rounds: number[] = [];
  // Round 1 is every pfn (no list of them made); later rounds the dirty ones.
  let dirty: readonly number[] | undefined;
  let dirtyCount = dom.p2mSize;
  let stats: PrecopyStats = { iteration: 0, totalWritten: 0, dirtyCount: dom.p2mSize };
  let decision: PrecopyPolicyDecision;
  for (let x = 1; ; x++) {
    decision = policy(stats);
    if (dirtyCount > 0 && decision !== PrecopyPolicyDecision.XGS_POLICY_ABORT) {
      await sendPfns(w, dom, dirty, dirtyCount);
      rounds.push(dirtyCount);
    }
    if (decision !== PrecopyPolicyDecision.XGS_POLICY_CONTINUE_PRECOPY) break;
    stats = { iteration: x, totalWritten: stats.totalWritten + dirtyCount, dirtyCount: -1 };
    decision = policy(stats);
    if (decision !== PrecopyPolicyDecision.XGS_POLICY_CONTINUE_PRECOPY) break;
    dirty = await dom.logdirtyClean();
    dirtyCount = dirty.length;
    stats = { ...stats, dirtyCount };
  }
  if (decision === PrecopyPolicyDecision.XGS_POLICY_ABORT) throw new PrecopyAborted('Abort precopy loop');
  const liveRounds = rounds.length;
  await dom.suspend();
  const last = await dom.logdirtyClean();
  await sendPfns(w, dom, last, last.length);
  rounds.push(last.length);
  return { rounds, liveRounds };
}
