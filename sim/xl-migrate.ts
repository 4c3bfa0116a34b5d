// `xl migrate` and `xl migrate-receive` (tools/xl/xl_migrate.c) against this host's Xl, over a
// MigratePipe whatever carries it. The sender waits for the receiver's banner, writes xl's header
// and a live libxl/libxc stream - log-dirty on (XEN_DOMCTL_shadow_op), precopy rounds, suspend,
// the last dirty pages, the suspended state - then waits for "ready", gives "permission to go" and
// reads the report: success destroys the source, a failure before the go resumes it
// (suspend_cancel). The receiver builds the domain paused from the stream (a new domid), says
// ready, and unpauses it on the go; if that fails it destroys its copy and gives the sender
// permission to resume.
import { MigratePipeClosed, type MigratePipe } from './migrate-pipe.ts';
import { SaveRestoreError, type Xl } from './xl.ts';
import type { GuestArgs } from '../domains/domU/guest.ts';
import { domainFrames, memoryHash, savedPage, saveStreamOptions, suspendedState } from './xl-saverestore.ts';
import { SaveStreamReader } from '../domains/dom0/toolstack/migration/stream-reader.ts';
import { ImageRestorer } from '../domains/dom0/toolstack/migration/restore-image.ts';
import { SaveStreamWriter } from '../domains/dom0/toolstack/migration/stream-writer.ts';
import { type LiveDomain, type PrecopyPolicy, sendDomainMemoryLive, simplePrecopyPolicy } from '../domains/dom0/toolstack/migration/precopy.ts';
import { XlMigrateMessage, checkXlMigrateMessage, xlMigrateMessageBytes, xlMigrateReportBytes } from '../domains/dom0/toolstack/migration/xl-migrate-channel.ts';
import { dirtyPfns } from '../hypervisor/paging.ts';
import { Domctl, DomctlShadowOp } from '../hypervisor/public/domctl.ts';
import { Hypercall } from '../hypervisor/public/xen.ts';
import { ShutdownReason } from '../hypervisor/public/sched.ts';

/** A migration that failed: the message is xl's story (and where the domain is now). */
export class MigrateError extends Error {
  override readonly name = 'MigrateError';
  constructor(message: string, readonly log: readonly string[]) {
    super(message);
  }
}

/** libxl's ERROR_FAIL: the receiver reports -rc in its status byte. */
const ERROR_FAIL = -3;

/**
 * Lockstep hosts: the virtual time one page takes on the wire (4 KiB at about 1 GB/s, what a
 * 10 GbE link gives xl); the guest runs meanwhile, so it can dirty pages between rounds.
 */
export const NS_PER_PAGE = 4096;

export interface MigrateSendResult {
  readonly domid: number;
  /** Pages sent in each precopy round, then in the round after suspend. */
  readonly rounds: readonly number[];
  readonly liveRounds: number;
  /** Stream bytes written (xl header to libxl END). */
  readonly bytes: number;
  readonly pagesSent: number;
  /** memoryHash() of every frame of the source at its final suspend, after the last round. */
  readonly hash: string;
  /** The source's clock from the guest suspended to the go (virtual time in lockstep). */
  readonly downtimeNs: number;
  readonly log: readonly string[];
}

export interface MigrateReceiveResult {
  readonly domid: number;
  /** memoryHash() of the new domain's memory once received, before it ran. */
  readonly hash: string;
  readonly pages: number;
  readonly pagesResent: number;
  readonly log: readonly string[];
}

const msgLen = (m: XlMigrateMessage): number => xlMigrateMessageBytes(m).length;

const why = (e: unknown): string => (e instanceof Error ? e.message : String(e));

async function readMessage(pipe: MigratePipe, m: XlMigrateMessage, what: string): Promise<void> {
  checkXlMigrateMessage(m, await pipe.readExact(msgLen(m), what), pipe.name);
}

/** XEN_DOMCTL_shadow_op from dom0, as libxc's xc_shadow_control() makes it. */
function shadowOp(xl: Xl, domid: number, op: DomctlShadowOp, pages = 0): unknown {
  return xl.rt.hypercalls.call(0, Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_shadow_op, domain: domid, op, pages }).ret;
}

/** xl migrate's sending side (migrate_domain()), over an open pipe to the receiver. */
export async function migrateSend(xl: Xl, domid: number, pipe: MigratePipe, opts: { policy?: PrecopyPolicy } = {}): Promise<MigrateSendResult> {
  const log: string[] = [];
  const fail = (m: string): MigrateError => new MigrateError(m, log);
  if (!xl.domains.has(domid)) throw fail(`domain ${domid} is not a guest of this xl`);
  const config = xl.savedConfig(domid);
  try {
    await readMessage(pipe, XlMigrateMessage.migrate_receiver_banner, 'banner');
  } catch (e) {
    await pipe.close();
    throw fail(`${why(e)}; the domain was not touched`);
  }
  const d = xl.rt.host.domains.get(domid)!;
  const x = xl.domains.get(domid)!;
  const w = new SaveStreamWriter((c) => pipe.write(c), saveStreamOptions(d, config));
  let suspendedAt: number | undefined;
  let sentAtLastBatch = 0;
  const live: LiveDomain = {
    p2mSize: d.p2m.length,
    readPage: (pfn) => savedPage(d, pfn),
    logdirtyClean: async () => {
      const r = shadowOp(xl, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_CLEAN, d.p2m.length);
      if (typeof r === 'number') throw new Error(`Failed to retrieve logdirty bitmap: ${r}`);
      return dirtyPfns((r as { dirty_bitmap: Uint8Array }).dirty_bitmap, d.p2m.length);
    },
    suspend: async () => {
      await xl.suspendForSave(domid);
      suspendedAt = xl.nowNs();
    },
    afterBatch: async () => {
      await pipe.drain();
      if (pipe.closed) throw new MigratePipeClosed(`${pipe.name}: the receiver went away`);
      const pages = w.stats.pagesSent - sentAtLastBatch;
      sentAtLastBatch = w.stats.pagesSent;
      if (xl.rt.mode === 'lockstep') await xl.rt.idle(pages * NS_PER_PAGE);
    },
  };
  let report: { rounds: readonly number[]; liveRounds: number };
  let hash: string;
  try {
    w.start();
    const on = shadowOp(xl, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY);
    if (on !== 0) throw new Error(`Failed to enable logdirty: ${String(on)}`);
    report = await sendDomainMemoryLive(w, live, opts.policy ?? simplePrecopyPolicy);
    hash = memoryHash(domainFrames(d));
    w.endOfCheckpoint(suspendedState(d, { nowNs: xl.nowNs(), store: x.store, console: x.console }));
    w.finish();
    await pipe.drain();
  } catch (e) {
    shadowOp(xl, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_OFF);
    await pipe.close();
    log.push(`migration sender: libxl_domain_suspend failed (${why(e)})`);
    const h = xl.rt.host.domains.get(domid);
    if (h?.isShutDown && h.shutdownCode === ShutdownReason.SHUTDOWN_suspend) {
      // failed_resume: libxl_domain_resume(suspend_cancel).
      log.push('Migration failed, resuming at sender.');
      await xl.resume(domid);
      throw fail(`${why(e)}; domain ${domid} resumed at the sender`);
    }
    // Never suspended (the guest did not, or the stream failed first): it runs on as it was.
    log.push(suspendedAt === undefined && /suspend/.test(why(e)) ? 'Migration failed, failed to suspend at sender.' : 'Migration failed; the domain was not suspended.');
    throw fail(`${why(e)}; domain ${domid} was not suspended and runs on`);
  }
  shadowOp(xl, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_OFF);
  try {
    await readMessage(pipe, XlMigrateMessage.migrate_receiver_ready, 'ready message');
  } catch (e) {
    await pipe.close();
    log.push('Migration failed, resuming at sender.');
    await xl.resume(domid);
    throw fail(`${why(e)}; domain ${domid} resumed at the sender`);
  }
  log.push('migration sender: Target has acknowledged transfer.');
  log.push('migration sender: Giving target permission to start.');
  pipe.write(xlMigrateMessageBytes(XlMigrateMessage.migrate_permission_to_go));
  const downtimeNs = xl.nowNs() - suspendedAt!;
  let status: number;
  try {
    await readMessage(pipe, XlMigrateMessage.migrate_report, 'success/failure report message');
    status = (await pipe.readExact(1, 'success/failure status'))[0];
  } catch (e) {
    await pipe.close();
    // failed_badly: after the go, whose copy runs is unknown; xl leaves its copy suspended.
    throw fail(`** Migration failed during final handshake ** (${why(e)}): domain ${domid} is left suspended here; its state at the target is unknown`);
  }
  if (status !== 0) {
    log.push(`migration sender: Target reports startup failure (status code ${status}).`);
    try {
      await readMessage(pipe, XlMigrateMessage.migrate_permission_to_go, 'permission for sender to resume');
    } catch (e) {
      await pipe.close();
      throw fail(`** Migration failed during final handshake ** (${why(e)}): domain ${domid} is left suspended here`);
    }
    log.push('migration sender: Trying to resume at our end.');
    await pipe.close();
    await xl.resume(domid);
    log.push('migration sender: Resumed OK.');
    throw fail('Migration failed due to problems at target.');
  }
  log.push('migration sender: Target reports successful startup.');
  await pipe.close();
  await xl.destroy(domid);
  log.push('Migration successful.');
  return {
    domid, rounds: report.rounds, liveRounds: report.liveRounds, bytes: w.stats.bytes, pagesSent: w.stats.pagesSent, hash, downtimeNs, log,
  };
}

/**
 * xl migrate-receive (migrate_receive()), over an open pipe from the sender. `guest`: the options
 * of the kernel the destination's domain resumes (xensim's choice of guest kernel, not xl's).
 */
export async function migrateReceive(xl: Xl, pipe: MigratePipe, opts: { guest?: GuestArgs } = {}): Promise<MigrateReceiveResult> {
  const log: string[] = ['migration target: Ready to receive domain.'];
  const fail = (m: string): MigrateError => new MigrateError(m, log);
  pipe.write(xlMigrateMessageBytes(XlMigrateMessage.migrate_receiver_banner));
  const reader = new SaveStreamReader();
  const restorer = new ImageRestorer(false);
  try {
    while (!reader.done) {
      const chunk = await pipe.readSome();
      if (chunk === null) reader.end();
      else for (const ev of reader.push(chunk)) restorer.apply(ev);
    }
    restorer.end('complete');
    pipe.unread(reader.trailing());
  } catch (e) {
    await pipe.close();
    throw fail(`migration target: Domain creation failed: ${why(e)}`);
  }
  let domid: number;
  let r;
  try {
    r = await xl.restoreImage(restorer.image, pipe.name, { paused: true, guest: opts.guest }, 'xl migrate-receive');
    domid = r.domid;
  } catch (e) {
    await pipe.close();
    throw fail(`migration target: Domain creation failed: ${e instanceof SaveRestoreError ? e.message : why(e)}`);
  }
  log.push('migration target: Transfer complete, requesting permission to start domain.');
  pipe.write(xlMigrateMessageBytes(XlMigrateMessage.migrate_receiver_ready));
  let rc = 0;
  let problem = '';
  try {
    await readMessage(pipe, XlMigrateMessage.migrate_permission_to_go, 'GO message');
    log.push('migration target: Got permission, starting domain.');
    await xl.unpause(domid);
    log.push('migration target: Domain started successfully.');
  } catch (e) {
    rc = ERROR_FAIL;
    problem = why(e);
  }
  pipe.write(xlMigrateReportBytes(-rc));
  if (rc) {
    log.push('migration target: Failure, destroying our copy.');
    await xl.destroy(domid);
    log.push('migration target: Cleanup OK, granting sender permission to resume.');
    pipe.write(xlMigrateMessageBytes(XlMigrateMessage.migrate_permission_to_go));
    await pipe.close();
    throw fail(`migration target: ${problem}; our copy (domain ${domid}) destroyed`);
  }
  await pipe.close();
  return { domid, hash: r.hash, pages: r.pages, pagesResent: restorer.image.stats.pagesResent, log };
}
