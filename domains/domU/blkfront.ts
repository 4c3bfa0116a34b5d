// blkfront: the vbd frontend in a guest. When the backend waits (InitWait) it grants a ring page,
// allocates an event channel, publishes ring-ref/event-channel/protocol in one transaction and
// goes Initialised; when the backend is Connected it reads the disk's geometry and connects.
// I/O: each request's data pages are granted to the backend for the request's lifetime.
import { FrontRing } from '../../hypervisor/public/io/ring.ts';
import {
  BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_RING_ENTRY_SIZE, BLKIF_SECTOR_SIZE, BLKIF_SECTORS_PER_PAGE, BlkifOp, BlkifRsp,
  decodeBlkifResponse, encodeBlkifRequest, XEN_IO_PROTO_ABI_NATIVE,
} from '../../hypervisor/public/io/blkif.ts';
import { parseXenbusState, XenbusState } from '../../hypervisor/public/io/xenbus.ts';
import type { XenbusDevice, XenbusDriver } from '../kernel/xenbus-probe.ts';
import type { SavedBlkRequest, SavedFrontend } from './kernel-state.ts';

export interface BlkfrontQuirks {
  /**
   * R20 (partial publish): announce Initialised first, then write ring-ref, event-channel and
   * protocol one by one without a transaction - a backend that reacts at once reads half a group.
   */
  readonly publishAfterState?: boolean;
  /** R06: on backend Closing before we connected, touch the disk anyway (Linux's NULL gendisk). */
  readonly closeBeforeConnectOops?: boolean;
  /**
   * R08 (XSA-396, before Linux abf1fd5919d6): on completion ask whether the backend maps each
   * data grant (gnttab_query_foreign_access); keep it if so, else end access without looking at
   * the result and put the page back for reuse - although the backend may have mapped it since.
   */
  readonly queryThenEndAccess?: boolean;
}

/**
 * The task finishing a completion: blkif_interrupt runs on the guest's vCPU while the backend runs
 * on its own, so a backend step may fall between two of its steps (here, between asking about a
 * grant and ending it).
 */
const COMPLETION_TASK = 'blkif_interrupt';

/** What blkfront reports to the simulator's trace (Linux's pr_alert lines). */
export interface BlkfrontAlertEvent {
  readonly kind: 'blkfront';
  readonly device: string;
  readonly alert: string;
  readonly ref?: number;
}

interface Pending {
  readonly op: BlkifOp;
  readonly sector: number;
  readonly pages: { gfn: number; bytes: Uint8Array; ref: number }[];
  readonly resolve: (r: { status: number; data?: Uint8Array }) => void;
  readonly sectors: number;
}

/** The disk a connected blkfront exposes (Linux's gendisk, roughly). */
export interface Vbd {
  readonly sectors: number;
  readonly sectorSize: number;
  readonly info: number;
  readonly flush: boolean;
}

interface Blkfront {
  vdev: number;
  ring?: FrontRing;
  ringGfn?: number;
  ringRef?: number;
  port?: number;
  disk?: Vbd;
  readonly pending: Map<bigint, Pending>;
  nextId: bigint;
  /** BLKIF_STATE_ERROR: the backend kept a grant mapped past its response; no more I/O. */
  broken?: boolean;
  /**
   * Restored kernel: the ring this frontend had in the saved domain (its page is this memory's,
   * its grant ref and port were the old domain's). Until the resume hook lets it go, `ring` is it.
   */
  presuspend?: { readonly ring: FrontRing; readonly gfn: number; readonly ref: number; readonly port: number };
}

export class BlkfrontError extends Error {}

/** A request blkif_recover re-queued after a restore, and how it ended. */
export interface RecoveredRequest {
  readonly device: string;
  readonly op: number;
  readonly sector: number;
  readonly sectors: number;
  status?: number;
}

export class BlkfrontDriver implements XenbusDriver {
  readonly type = 'vbd';
  /** Restored kernel: requests in flight at suspend, by device name, to re-queue once connected. */
  private readonly toRecover = new Map<string, SavedBlkRequest[]>();
  /** Every request re-queued after a restore. */
  readonly recovered: RecoveredRequest[] = [];

  constructor(private readonly quirks: BlkfrontQuirks = {}) {}

  /** What is on the ring now (the shadow Linux keeps in guest memory), for the kernel state. */
  inflight(dev: XenbusDevice): SavedBlkRequest[] {
    const fe = this.info(dev);
    if (!fe) return [];
    return [...fe.pending.values()].map((p) => ({ device: dev.name, op: p.op, sector: p.sector, sectors: p.sectors, gfns: p.pages.map((pg) => pg.gfn) }));
  }

  /** A restored kernel's shadow: re-queued when the device connects to its new backend. */
  recoverOnConnect(reqs: readonly SavedBlkRequest[]): void {
    for (const r of reqs) {
      let list = this.toRecover.get(r.device);
      if (!list) this.toRecover.set(r.device, (list = []));
      list.push(r);
    }
  }

  /**
   * blkif_recover: the requests of the old ring go again on the new one, their data pages (restored
   * with the rest of memory) granted to the new backend. Their callers were user space of the
   * saved domain; the outcome is kept in `recovered`.
   */
  private recover(dev: XenbusDevice): void {
    const reqs = this.toRecover.get(dev.name);
    this.toRecover.delete(dev.name);
    for (const r of reqs ?? []) {
      const rec: RecoveredRequest = { device: r.device, op: r.op, sector: r.sector, sectors: r.sectors };
      this.recovered.push(rec);
      const pages = r.gfns.map((gfn) => ({ gfn, bytes: dev.kernel.page(gfn) }));
      this.queue(dev, r.op, r.sector, r.sectors, pages).then((res) => (rec.status = res.status), () => (rec.status = BlkifRsp.BLKIF_RSP_ERROR));
    }
  }

  private info(dev: XenbusDevice): Blkfront {
    return dev.data as Blkfront;
  }

  /** What a resumed kernel needs of this device (the state of blkfront_info in guest memory). */
  saved(dev: XenbusDevice): SavedFrontend {
    const fe = this.info(dev);
    return {
      name: dev.name, state: dev.state, vdev: fe?.vdev ?? 0,
      ...(fe?.ringGfn !== undefined && fe.ringRef !== undefined && fe.port !== undefined ? { ring: { gfn: fe.ringGfn, ref: fe.ringRef, port: fe.port } } : {}),
      ...(fe?.disk ? { disk: { sectors: fe.disk.sectors, sectorSize: fe.disk.sectorSize, info: fe.disk.info, flush: fe.disk.flush } } : {}),
    };
  }

  /**
   * A restored kernel's blkfront_info as it was at suspend: the disk, and the ring still pointing
   * at the page it used (its page reserved by the caller). The grant ref and port it names were
   * the old domain's: xen_irq_resume has forgotten the port, and the new grant table is empty.
   */
  restore(dev: XenbusDevice, saved: SavedFrontend): void {
    const fe: Blkfront = { vdev: saved.vdev, pending: new Map(), nextId: 1n };
    if (saved.disk) fe.disk = { ...saved.disk };
    if (saved.ring) {
      fe.ring = FrontRing.attach(dev.kernel.page(saved.ring.gfn), BLKIF_RING_ENTRY_SIZE);
      fe.ringGfn = saved.ring.gfn;
      fe.presuspend = { ring: fe.ring, ...saved.ring };
    }
    dev.data = fe;
  }

  /** The ring a frontend uses now and what it published, for invariants. */
  describe(dev: XenbusDevice): { ringRef?: number; port?: number; presuspendRing: boolean } {
    const fe = this.info(dev);
    return { ringRef: fe?.ringRef, port: fe?.port, presuspendRing: fe?.ring !== undefined && fe.ring === fe.presuspend?.ring };
  }

  /** Asserted before every ring operation: never on the ring of the saved domain. */
  private liveRing(dev: XenbusDevice, fe: Blkfront): FrontRing | undefined {
    if (fe.ring && fe.ring === fe.presuspend?.ring) {
      throw new BlkfrontError(`BUG: ${dev.nodename}: ring operation on the pre-suspend ring (gfn ${fe.presuspend.gfn}, old ring-ref ${fe.presuspend.ref})`);
    }
    return fe.ring;
  }

  async probe(dev: XenbusDevice): Promise<void> {
    const vdev = Number((await dev.read('virtual-device')) ?? NaN);
    if (!Number.isInteger(vdev)) {
      await dev.devFatal(22, 'reading virtual-device');
      return;
    }
    const fe: Blkfront = { vdev, pending: new Map(), nextId: 1n };
    dev.data = fe;
  }

  async otherendChanged(dev: XenbusDevice, state: XenbusState): Promise<void> {
    const fe = this.info(dev);
    if (!fe) return;
    switch (state) {
      case XenbusState.XenbusStateInitWait:
        if (dev.state !== XenbusState.XenbusStateInitialising) break;
        await this.talkToBlkback(dev);
        break;
      case XenbusState.XenbusStateConnected:
        await this.connect(dev);
        break;
      case XenbusState.XenbusStateClosed:
        if (dev.state === XenbusState.XenbusStateClosed) break;
        await this.closing(dev);
        break;
      case XenbusState.XenbusStateClosing:
        await this.closing(dev);
        break;
      case XenbusState.XenbusStateUnknown:
      case XenbusState.XenbusStateInitialising:
      case XenbusState.XenbusStateInitialised:
      case XenbusState.XenbusStateReconfiguring:
      case XenbusState.XenbusStateReconfigured:
        break;
    }
  }

  /** talk_to_blkback: ring, event channel, keys, Initialised. */
  private async talkToBlkback(dev: XenbusDevice): Promise<void> {
    const fe = this.info(dev);
    const k = dev.kernel;
    fe.broken = false;
    const page = k.allocPage();
    fe.ring = FrontRing.init(page.bytes, BLKIF_RING_ENTRY_SIZE, dev.bus.ringStart());
    fe.ringGfn = page.gfn;
    fe.ringRef = dev.grantRing(page.gfn);
    fe.port = dev.allocEvtchn();
    k.on(fe.port, () => this.interrupt(dev));
    const d = dev.nodename;
    const keys: [string, string][] = [
      [`${d}/ring-ref`, String(fe.ringRef)], [`${d}/event-channel`, String(fe.port)],
      [`${d}/protocol`, XEN_IO_PROTO_ABI_NATIVE], [`${d}/feature-persistent`, '0'],
    ];
    if (this.quirks.publishAfterState) {
      await dev.switchState(XenbusState.XenbusStateInitialised);
      for (const [k, v] of keys) await dev.xs.write(k, v);
      return;
    }
    await dev.bus.transactionWrite(keys);
    await dev.switchState(XenbusState.XenbusStateInitialised);
  }

  /** blkfront_connect: read the geometry (again, on a capacity change) and go Connected. */
  private async connect(dev: XenbusDevice): Promise<void> {
    const fe = this.info(dev);
    if (!fe.ring) return;
    const num = async (key: string): Promise<number> => Number((await dev.readOtherend(key)) ?? 0);
    const sectors = await num('sectors');
    if (dev.state === XenbusState.XenbusStateConnected) {
      if (fe.disk && fe.disk.sectors !== sectors) fe.disk = { ...fe.disk, sectors };
      return;
    }
    fe.disk = {
      sectors, sectorSize: (await num('sector-size')) || BLKIF_SECTOR_SIZE, info: await num('info'),
      flush: (await dev.readOtherend('feature-flush-cache')) === '1',
    };
    await dev.switchState(XenbusState.XenbusStateConnected);
    this.recover(dev);
  }

  /** blkfront_closing: fail what is in flight, free the ring, Closed. */
  private async closing(dev: XenbusDevice): Promise<void> {
    const fe = this.info(dev);
    if (this.quirks.closeBeforeConnectOops && !fe.disk) {
      throw new BlkfrontError(`BUG: ${dev.nodename}: backend closing before connect, no disk to tear down`);
    }
    await this.teardown(dev, BlkifRsp.BLKIF_RSP_ERROR);
    fe.disk = undefined;
    await dev.switchState(XenbusState.XenbusStateClosed);
  }

  /**
   * blkif_free: disconnected first (an interrupt still running finds no ring and returns), what
   * is in flight fails, the event channel is unbound - which waits for an upcall dispatching it
   * on another vCPU - and only then is the ring page let go.
   */
  private async teardown(dev: XenbusDevice, status: number): Promise<void> {
    const fe = this.info(dev);
    const k = dev.kernel;
    const { port, ringRef, ringGfn } = fe;
    // The saved domain's ring: no grant or port of this domain names it, its page is just memory.
    const presuspendRing = fe.ring !== undefined && fe.ring === fe.presuspend?.ring;
    fe.port = fe.ringRef = fe.ringGfn = undefined;
    fe.ring = undefined;
    fe.presuspend = undefined;
    for (const [id, p] of fe.pending) {
      fe.pending.delete(id);
      this.release(dev, p);
      p.resolve({ status });
    }
    if (port !== undefined) await k.unbindFromIrqhandler(port);
    if (ringRef !== undefined && k.endForeignAccess(ringRef) && ringGfn !== undefined) k.freePage(ringGfn);
    else if (ringRef === undefined && ringGfn !== undefined && presuspendRing) k.freePage(ringGfn);
  }

  private release(dev: XenbusDevice, p: Pending): void {
    // A page the backend still maps stays granted (and is leaked, as Linux defers it).
    for (const pg of p.pages) if (dev.kernel.endForeignAccess(pg.ref)) dev.kernel.freePage(pg.gfn);
  }

  /**
   * blkif_completion's grant handling; false when the backend still maps a grant it answered
   * (the device must not be used again). Each grant is ended with the atomic try-end: one still
   * mapped keeps its page out of circulation (leaked, as Linux defers it). The R08 quirk asks
   * first and trusts the answer.
   */
  private async endGrants(dev: XenbusDevice, p: Pending): Promise<boolean> {
    const k = dev.kernel;
    for (const pg of p.pages) {
      if (this.quirks.queryThenEndAccess) {
        if (k.queryForeignAccess(pg.ref)) {
          // Linux kept such a grant, page and all, to be used again as a persistent grant (with
          // an alert); here it is just kept.
          this.alert(dev, 'backend has not unmapped grant', pg.ref);
          continue;
        }
        if (k.point) await k.point(COMPLETION_TASK);
        // gnttab_end_foreign_access(ref, 0, 0): a failure defers the ref but not the page, which
        // goes back for reuse either way.
        k.endForeignAccess(pg.ref);
        k.freePage(pg.gfn);
        continue;
      }
      if (k.point) await k.point(COMPLETION_TASK);
      if (k.endForeignAccess(pg.ref)) {
        k.freePage(pg.gfn);
        continue;
      }
      this.alert(dev, 'backend has not unmapped grant', pg.ref);
      return false;
    }
    return true;
  }

  private alert(dev: XenbusDevice, alert: string, ref?: number): void {
    if (!dev.kernel.tracing) return;
    const ev: BlkfrontAlertEvent = { kind: 'blkfront', device: dev.name, alert, ref };
    dev.kernel.trace(ev);
  }

  /**
   * The rest of a response after the ring: grants ended, then the caller told. A device whose
   * backend kept a grant is disabled (BLKIF_STATE_ERROR); Linux leaves that request pending for
   * ever, here it fails.
   */
  private async complete(dev: XenbusDevice, fe: Blkfront, p: Pending, status: number, data: Uint8Array | undefined): Promise<void> {
    if (await this.endGrants(dev, p)) {
      p.resolve({ status, data });
      return;
    }
    fe.broken = true;
    this.alert(dev, 'disabled for further use');
    p.resolve({ status: BlkifRsp.BLKIF_RSP_ERROR });
  }

  /** The ring's event: take every response. */
  private interrupt(dev: XenbusDevice): void {
    const fe = this.info(dev);
    const ring = this.liveRing(dev, fe);
    if (!ring) return;
    do {
      let slot = ring.consumeResponse();
      while (slot) {
        const rsp = decodeBlkifResponse(slot);
        const p = fe.pending.get(rsp.id);
        if (p) {
          fe.pending.delete(rsp.id);
          let data: Uint8Array | undefined;
          if (p.op === BlkifOp.BLKIF_OP_READ && rsp.status === BlkifRsp.BLKIF_RSP_OKAY) {
            data = new Uint8Array(p.sectors * BLKIF_SECTOR_SIZE);
            let at = 0;
            for (const pg of p.pages) {
              const n = Math.min(BLKIF_SECTORS_PER_PAGE * BLKIF_SECTOR_SIZE, data.length - at);
              data.set(pg.bytes.subarray(0, n), at);
              at += n;
            }
          }
          void this.complete(dev, fe, p, rsp.status, data);
        }
        slot = ring.consumeResponse();
      }
    } while (ring.finalCheckForResponses());
  }

  /** The disk, once connected. */
  disk(dev: XenbusDevice): Vbd | undefined {
    return this.info(dev)?.disk;
  }

  /**
   * Submits one request: READ/WRITE of `sectors` sectors at `sector` (data pages granted to the
   * backend, read-only for writes), or FLUSH_DISKCACHE. Resolves with the response status.
   */
  submit(dev: XenbusDevice, op: BlkifOp, sector: number, sectors: number, data?: Uint8Array): Promise<{ status: number; data?: Uint8Array }> {
    const nPages = Math.ceil(sectors / BLKIF_SECTORS_PER_PAGE);
    if (nPages > BLKIF_MAX_SEGMENTS_PER_REQUEST) return Promise.reject(new BlkfrontError('request too large'));
    const pages: { gfn: number; bytes: Uint8Array }[] = [];
    for (let i = 0; i < nPages; i++) {
      const pg = dev.kernel.allocPage();
      const n = Math.min(BLKIF_SECTORS_PER_PAGE, sectors - i * BLKIF_SECTORS_PER_PAGE);
      if (op === BlkifOp.BLKIF_OP_WRITE && data) {
        pg.bytes.set(data.subarray(i * 4096, i * 4096 + n * BLKIF_SECTOR_SIZE));
      }
      pages.push(pg);
    }
    const done = this.queue(dev, op, sector, sectors, pages);
    done.catch(() => {
      for (const pg of pages) dev.kernel.freePage(pg.gfn);
    });
    return done;
  }

  /** Puts one request with its data pages on the ring (pages granted for its lifetime). */
  private queue(dev: XenbusDevice, op: BlkifOp, sector: number, sectors: number, data: readonly { gfn: number; bytes: Uint8Array }[]): Promise<{ status: number; data?: Uint8Array }> {
    const fe = this.info(dev);
    if (!fe?.ring || !fe.disk || dev.state !== XenbusState.XenbusStateConnected) {
      return Promise.reject(new BlkfrontError(`${dev.nodename}: not connected`));
    }
    if (fe.broken) return Promise.reject(new BlkfrontError(`${dev.nodename}: disabled for further use`));
    const ring = this.liveRing(dev, fe)!;
    const slot = ring.produceRequest();
    if (!slot) return Promise.reject(new BlkfrontError('ring full'));
    const k = dev.kernel;
    const pages: Pending['pages'] = [];
    const seg = [];
    for (const [i, pg] of data.entries()) {
      const n = Math.min(BLKIF_SECTORS_PER_PAGE, sectors - i * BLKIF_SECTORS_PER_PAGE);
      const ref = k.grantForeignAccess(dev.otherendId, pg.gfn, op === BlkifOp.BLKIF_OP_WRITE);
      pages.push({ gfn: pg.gfn, bytes: pg.bytes, ref });
      seg.push({ gref: ref, first_sect: 0, last_sect: n - 1 });
    }
    const id = fe.nextId++;
    encodeBlkifRequest(slot, { operation: op, nr_segments: seg.length, handle: fe.vdev, id, sector_number: BigInt(sector), seg });
    const done = new Promise<{ status: number; data?: Uint8Array }>((resolve) => {
      fe.pending.set(id, { op, sector, pages, resolve, sectors });
    });
    if (ring.pushRequestsAndCheckNotify() && fe.port !== undefined) k.notify(fe.port);
    return done;
  }

  /**
   * Brings both ends to where a restored domain finds them: the backend a new one in InitWait,
   * the frontend's state node written anew (Initialising) by the toolstack. The simulator's xl has
   * no restore, so this stands in: a close handshake (Closing, then both ends Closed; an online
   * backend stays), the otherend watch dropped as talk_to_otherend does (its queued events go
   * with it: after a restore there is no old backend to hear from), Initialising written here,
   * and a wait for the backend's InitWait. The disk is kept for resume.
   */
  async closeForResume(dev: XenbusDevice, timeoutNs = 5e9): Promise<void> {
    const fe = this.info(dev);
    if (!fe?.disk) throw new BlkfrontError(`${dev.nodename}: not connected`);
    const disk = fe.disk;
    const k = dev.kernel;
    const deadline = k.now() + timeoutNs;
    const backendIs = async (...states: XenbusState[]): Promise<boolean> => states.includes(parseXenbusState(await dev.readOtherend('state')));
    const until = async (done: () => Promise<boolean>, what: string): Promise<void> => {
      while (!dev.removed && k.now() < deadline && !(await done())) await new Promise<void>((r) => void k.setTimer(1e6, r));
      if (dev.removed) throw new BlkfrontError(`${dev.nodename}: removed`);
      if (!(await done())) throw new BlkfrontError(`${dev.nodename}: ${what}`);
    };
    await dev.switchState(XenbusState.XenbusStateClosing);
    await until(async () => dev.state === XenbusState.XenbusStateClosed && (await backendIs(XenbusState.XenbusStateClosed)), 'the backend did not close');
    await this.teardown(dev, BlkifRsp.BLKIF_RSP_ERROR);
    fe.disk = disk;
    await dev.otherendWatch?.unregister();
    dev.otherendWatch = undefined;
    dev.state = XenbusState.XenbusStateInitialising;
    await dev.xs.write(`${dev.nodename}/state`, String(XenbusState.XenbusStateInitialising));
    await until(() => backendIs(XenbusState.XenbusStateInitWait), 'the backend did not come back to InitWait');
  }

  /**
   * blkfront_resume of 2006 (drv->resume, called by xenbus_dev_resume with the cached state back
   * at Initialising): blkif_free lets go of the ring it holds (requests on it are in the shadow),
   * talk_to_backend publishes a new one with Initialised and blkif_recover - the gendisk surviving
   * - requeues the shadow and says Connected right after, without waiting for the backend. The
   * backend's watch fires for each write but its handler reads the state node when it runs: it
   * may see Connected only (R02).
   */
  async resume(dev: XenbusDevice): Promise<void> {
    const fe = this.info(dev);
    if (!fe?.disk) throw new BlkfrontError(`${dev.nodename}: no disk to resume`);
    const disk = fe.disk;
    await this.teardown(dev, BlkifRsp.BLKIF_RSP_ERROR);
    fe.disk = disk;
    await this.talkToBlkback(dev);
    if (!fe.ring || dev.removed) return;
    await dev.switchState(XenbusState.XenbusStateConnected);
    if ((dev.state as XenbusState) === XenbusState.XenbusStateConnected) this.recover(dev);
  }

  async remove(dev: XenbusDevice): Promise<void> {
    if (this.info(dev)) await this.teardown(dev, BlkifRsp.BLKIF_RSP_ERROR);
  }
}
