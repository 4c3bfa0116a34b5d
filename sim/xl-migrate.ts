// `xl migrate` and `xl migrate-receive` (tools/xl/xl_migrate.c) against this host's Xl, over a
// MigratePipe whatever carries it. The sender waits for the receiver's banner, writes xl's header
// and a live libxl/libxc stream - log-dirty on (XEN_DOMCTL_shadow_op), precopy rounds, suspend,
// the last dirty pages, the suspended state - then waits for "ready", gives "permission to go" and
// reads the report: success destroys the source, a failure before the go resumes it
// (suspend_cancel). The receiver builds the domain paused from the stream (a new domid), says
// ready, and unpauses it on the go; if that fails it destroys its copy and gives the sender
// permission to resume. With `xenstore: 'seed'` (the project seed's description, not Xen) the
// source's xenstored also exports the guest's subtree, watches and open transactions into the
// stream (xensim's XENSIM_SEED_XENSTORE libxl record), and the destination's imports them for the
// new domid before the guest runs; such a stream is xensim's own (libxl refuses the record).
import { MigratePipeClosed, type MigratePipe } from './migrate-pipe.ts';
import { SaveRestoreError, type Xl } from './xl.ts';
import type { GuestArgs } from '../domains/domU/guest.ts';
import { FrameFiller, domainFrames, memoryHash, savedPage, savedPageFiller, saveStreamOptions, suspendedState } from './xl-saverestore.ts';
import { SaveStreamReader, type SaveStreamEvent } from '../domains/dom0/toolstack/migration/stream-reader.ts';
import { ImageRestorer, type RestorePageSink } from '../domains/dom0/toolstack/migration/restore-image.ts';
import { DhdrType, LibxcRecType } from '../domains/dom0/toolstack/migration/libxc-stream.ts';
import type { DomainConfig } from '../domains/dom0/toolstack/config.ts';
import type { Domain } from '../hypervisor/domain.ts';
import type { BuiltDomain } from './host-runtime.ts';
import { SaveStreamWriter } from '../domains/dom0/toolstack/migration/stream-writer.ts';
import { type LiveDomain, type PrecopyPolicy, sendDomainMemoryLive, simplePrecopyPolicy } from '../domains/dom0/toolstack/migration/precopy.ts';
import { XlMigrateMessage, checkXlMigrateMessage, xlMigrateMessageBytes, xlMigrateReportBytes } from '../domains/dom0/toolstack/migration/xl-migrate-channel.ts';
import type { SeedImportSummary } from '../domains/dom0/xenstored/seed-migration.ts';
import { dirtyPfns } from '../hypervisor/paging.ts';
import { Domctl, DomctlShadowOp } from '../hypervisor/public/domctl.ts';
import { Hypercall, XEN_PAGE_SIZE } from '../hypervisor/public/xen.ts';
import { ShutdownReason } from '../hypervisor/public/sched.ts';
import { fingerprintableBuffer } from '../hypervisor/page-fingerprint.ts';

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
  /** memoryHash() of every frame of the source at its final suspend, after the last round (unless hash: false). */
  readonly hash: string | undefined;
  /** The source's clock from the guest suspended to the go (virtual time in lockstep). */
  readonly downtimeNs: number;
  readonly log: readonly string[];
}

export interface MigrateReceiveResult {
  readonly domid: number;
  /** memoryHash() of the new domain's memory once received, before it ran (unless hash: false). */
  readonly hash: string | undefined;
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

/** What happens to the guest's xenstore state: nothing travels (Xen), or the seed's copy. */
export type MigrateXenstore = 'xen' | 'seed';

export interface MigrateSendOptions {
  readonly policy?: PrecopyPolicy;
  /** Default 'xen': nothing of xenstore in the stream. */
  readonly xenstore?: MigrateXenstore;
  /** memoryHash() the memory at the final suspend (the default; a simulator check, not xl's work). */
  readonly hash?: boolean;
}

/** xl migrate's sending side (migrate_domain()), over an open pipe to the receiver. */
export async function migrateSend(xl: Xl, domid: number, pipe: MigratePipe, opts: MigrateSendOptions = {}): Promise<MigrateSendResult> {
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
  const w = new SaveStreamWriter((c, release) => pipe.write(c, release), {
    ...saveStreamOptions(d, config),
    // Records in shared WebAssembly memory, so that log-dirty reads what was sent with SIMD.
    recordBuffer: (bytes) => {
      const n = Math.ceil(bytes / 65536) * 65536;
      return new Uint8Array(fingerprintableBuffer(n), 0, n);
    },
    pagesCopied: (pages, from, to, record, dataAt) => {
      // The saver's look at what it read (LogDirty.observe): a page changed since the last CLEAN
      // is dirty even if the guest puts it back before the next.
      const ld = d.logDirty;
      if (!ld) return;
      const sab = record.buffer as SharedArrayBuffer;
      let at = record.byteOffset + dataAt;
      for (let j = from; j < to;) {
        if (!pages[j].bytes && !pages[j].mapping) {
          j++;
          continue;
        }
        let k = j + 1;
        while (k < to && pages[k].pfn === pages[k - 1].pfn + 1 && (pages[k].bytes || pages[k].mapping)) k++;
        ld.observe(pages[j].pfn, k - j, sab, at);
        at += (k - j) * XEN_PAGE_SIZE;
        j = k;
      }
    },
  });
  let suspendedAt: number | undefined;
  let sentAtLastBatch = 0;
  const live: LiveDomain = {
    p2mSize: d.p2m.length,
    readPage: (pfn) => savedPage(d, pfn),
    readPageInto: savedPageFiller(d),
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
  let hash: string | undefined;
  try {
    w.start();
    const on = shadowOp(xl, domid, DomctlShadowOp.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY);
    if (on !== 0) throw new Error(`Failed to enable logdirty: ${String(on)}`);
    report = await sendDomainMemoryLive(w, live, opts.policy ?? simplePrecopyPolicy);
    // The simulator's check that the destination got it all, not xl's work: skippable (the bench).
    hash = opts.hash === false ? undefined : memoryHash(domainFrames(d));
    w.endOfCheckpoint(suspendedState(d, { nowNs: xl.nowNs(), store: x.store, console: x.console }));
    const seedXenstore = opts.xenstore === 'seed' ? await xl.rt.toolstack<Uint8Array>('xenstore-seed-export', { domid }) : undefined;
    if (seedXenstore) log.push(`migration sender: xenstore state of domain ${domid} in the stream (the seed's migration, not Xen's): ${seedXenstore.length} bytes`);
    w.finish(undefined, seedXenstore);
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
 * xl migrate-receive (migrate_receive()), over an open pipe from the sender. A PV stream's domain
 * is built as soon as the stream has said its size (X86_PV_P2M_FRAMES, before any page), and its
 * pages go into its frames as they arrive, as xc_domain_restore() does: the receiver holds no
 * second copy of the guest. (An HVM stream names no size before its pages: its image is read
 * whole first.) `paused` (xl migrate -p) leaves the domain paused after the go; `guest`: the
 * options of the kernel the domain resumes (xensim's choice of guest kernel, not xl's).
 */
export async function migrateReceive(xl: Xl, pipe: MigratePipe, opts: { hash?: boolean; paused?: boolean; guest?: GuestArgs } = {}): Promise<MigrateReceiveResult> {
  const log: string[] = ['migration target: Ready to receive domain.'];
  const fail = (m: string): MigrateError => new MigrateError(m, log);
  pipe.write(xlMigrateMessageBytes(XlMigrateMessage.migrate_receiver_banner));
  const verb = 'xl migrate-receive';
  const restoreOpts = { paused: true, hash: opts.hash, guest: opts.guest };
  const reader = new SaveStreamReader();
  let restorer: ImageRestorer | undefined;
  const early: SaveStreamEvent[] = [];
  let target: { built: BuiltDomain & { domain: Domain }; cfg: DomainConfig; filler: FrameFiller } | undefined;
  const sink: RestorePageSink = {
    put: (pfn, src, offset) => target!.filler.put(pfn, src, offset),
    putRun: (pfn, count, src, offset) => target!.filler.putRun(pfn, count, src, offset),
    get: (pfn) => target!.filler.get(pfn),
    drop: (pfn) => target!.filler.drop(pfn),
  };
  let streaming = false;
  /** From here a failure has destroyed the domain already (createDevices cleans up after itself). */
  let finishing = false;
  let r: { domid: number; hash: string | undefined; pages: number };
  try {
    while (!reader.done) {
      const chunk = await pipe.readSome();
      if (chunk === null) {
        reader.end();
        continue;
      }
      // The chunk may be lent (the pipe takes it back at its next read): the reader copies what
      // it still needs of it, the restorer the pages it keeps; PV pages go straight into frames.
      for (const ev of reader.push(chunk, true)) {
        if (!restorer) {
          // The domain header says which way: the events before it wait for the restorer.
          early.push(ev);
          if (!('imageHeader' in ev)) continue;
          streaming = ev.domainHeader.type === DhdrType.DHDR_TYPE_X86_PV;
          restorer = new ImageRestorer({ pageSink: streaming ? sink : undefined, lent: true });
          // PV pages go into frames as they come, the records never copied together.
          if (streaming) reader.streamPages();
          for (const e of early.splice(0)) restorer.apply(e);
          continue;
        }
        restorer.apply(ev);
        const frames = restorer.image.p2mFrames;
        if (streaming && !target && frames && ev.layer === 'libxc' && 'record' in ev && ev.record.type === LibxcRecType.REC_TYPE_X86_PV_P2M_FRAMES) {
          // The stream has said the guest's size: its domain is built now, as libxl makes the
          // domain before the pages come (and while a live sender enables log-dirty mode).
          const cfg = xl.restoreConfig(restorer.image, pipe.name, verb);
          const built = await xl.buildRestored(cfg, frames.endPfn + 1, restoreOpts);
          target = { built, cfg, filler: new FrameFiller(built.domain) };
        }
      }
    }
    if (!restorer) throw new Error('the stream has no libxc image header');
    restorer.end('complete');
    pipe.unread(reader.trailing());
    if (target) {
      const hash = target.filler.finish(restorer.image, { hash: opts.hash });
      finishing = true;
      await xl.finishRestored(target.built, target.cfg, restoreOpts, verb);
      r = { domid: target.built.domid, hash, pages: target.filler.pages };
    } else if (streaming) {
      throw new Error('the stream has no pages');
    } else {
      r = await xl.restoreImage(restorer.image, pipe.name, restoreOpts, verb);
    }
  } catch (e) {
    await pipe.close();
    // A domain built for the stream goes with it.
    if (target && !finishing) await xl.rt.destroy(target.built.domid);
    throw fail(`migration target: Domain creation failed: ${e instanceof SaveRestoreError ? e.message : why(e)}`);
  }
  const domid = r.domid;
  if (restorer.image.seedXenstore) {
    // The seed's copy (not Xen): into the new domain's tree and connection before it runs.
    try {
      const n = await xl.rt.toolstack<SeedImportSummary>('xenstore-seed-import', { domid, state: restorer.image.seedXenstore });
      log.push(`migration target: xenstore state carried over (the seed's migration, not Xen's): ${n.nodes} nodes (${n.kept} already here), ${n.watches} watches, ${n.transactions} transactions`);
    } catch (e) {
      await xl.destroy(domid);
      await pipe.close();
      throw fail(`migration target: Domain creation failed: xenstore state: ${why(e)}`);
    }
  }
  log.push('migration target: Transfer complete, requesting permission to start domain.');
  pipe.write(xlMigrateMessageBytes(XlMigrateMessage.migrate_receiver_ready));
  let rc = 0;
  let problem = '';
  try {
    await readMessage(pipe, XlMigrateMessage.migrate_permission_to_go, 'GO message');
    if (opts.paused) {
      log.push('migration target: Got permission, domain left paused (-p).');
    } else {
      log.push('migration target: Got permission, starting domain.');
      await xl.unpause(domid);
      log.push('migration target: Domain started successfully.');
    }
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
