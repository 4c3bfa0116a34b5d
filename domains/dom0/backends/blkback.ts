// blkback: the vbd backend in dom0. Probe advertises what it supports and waits in InitWait for
// the hotplug script's physical-device; once the disk is open and the frontend's ring is mapped it
// publishes the disk's geometry, goes Connected and starts the ring's kernel thread (xenblkd),
// which serves the requests arriving on the blkif ring; each segment is a granted page, mapped
// for the I/O (read-only for writes) and unmapped after.
import { BackRing } from '../../../hypervisor/public/io/ring.ts';
import {
  BLKIF_RING_ENTRY_SIZE, BLKIF_SECTOR_SIZE, BlkifOp, BlkifRsp, blkifRequestOperation, blkifSegmentBytes, decodeBlkifRequest,
  encodeBlkifResponse, validateBlkifRequest, VDISK_CDROM, VDISK_READONLY, XEN_IO_PROTO_ABI_NATIVE,
} from '../../../hypervisor/public/io/blkif.ts';
import { XenbusState } from '../../../hypervisor/public/io/xenbus.ts';
import { GntSt } from '../../../hypervisor/public/grant_table.ts';
import type { XenbusDevice, XenbusDriver } from '../../kernel/xenbus-probe.ts';
import type { XenbusWatch } from '../../kernel/xenbus-watch.ts';
import { type Kthread, kthreadRun } from '../../kernel/kthread.ts';
import type { DiskImage, DiskImages } from './disk-image.ts';

export interface BlkbackQuirks {
  /**
   * R07 (XSA-350, before Linux 1c728719a4da): xen_blkif_disconnect stops xenblkd but leaves the
   * ring's handle to it set, for the thread's own exit path to clear. A thread stopped before it
   * ever ran never takes that path, so the handle outlives the thread and the next disconnect
   * stops a freed task.
   */
  readonly keepXenblkdAfterStop?: boolean;
  /**
   * Fault: a slow disk. Each read or write is done and answered this long after it was taken off
   * the ring (ns), so requests are in flight for that long; one whose ring is gone by then (the
   * device disconnected or removed) is dropped unanswered, as the frontend's domain is gone.
   */
  readonly diskLatencyNs?: number;
  /**
   * R02 (before xen 473e020902): connect the ring only when the frontend's state reads
   * Initialised. The watch handler re-reads the state, so a frontend that says Initialised and
   * Connected back to back (blkfront's resume path) may be seen at Connected only - and ignored.
   */
  readonly connectOnlyOnInitialised?: boolean;
  /**
   * Hostile backend (R08, the driver-domain threat model): once a read or write is answered,
   * xenblkd's next step maps the request's first data page again, read-only, and keeps it mapped
   * until the ring disconnects. Xen allows it - the grant is the frontend's to revoke - so only a
   * frontend that ends its grants atomically keeps the page from being reached after reuse.
   */
  readonly mapAnsweredGrantLate?: boolean;
}

interface Blkif {
  physWatch?: XenbusWatch;
  disk?: DiskImage;
  mode?: string;
  cdrom?: boolean;
  ring?: BackRing;
  ringHandle?: number;
  port?: number;
  /** The ring's kernel thread (ring->xenblkd), started once Connected. */
  xenblkd?: Kthread;
  /** Requests in flight (mapped segments not yet answered). */
  inflight: number;
  /** mapAnsweredGrantLate: the grant handles of answered requests' pages it still maps. */
  readonly lateMaps: number[];
}

export class Blkback implements XenbusDriver {
  readonly type = 'vbd';
  /** Requests answered, by status (for tests and the bench). */
  readonly stats = { okay: 0, error: 0, notsupp: 0 };

  constructor(private readonly images: DiskImages, private readonly quirks: BlkbackQuirks = {}) {}

  private blkif(dev: XenbusDevice): Blkif {
    return dev.data as Blkif;
  }

  async probe(dev: XenbusDevice): Promise<void> {
    const be: Blkif = { inflight: 0, lateMaps: [] };
    dev.data = be;
    // Advertised before InitWait so the frontend can size its rings (one page, one queue here).
    await dev.xs.write(`${dev.nodename}/feature-max-indirect-segments`, '0').catch(() => undefined);
    await dev.xs.write(`${dev.nodename}/multi-queue-max-queues`, '1').catch(() => undefined);
    await dev.xs.write(`${dev.nodename}/max-ring-page-order`, '0').catch(() => undefined);
    // The hotplug script's result; its first firing also covers a script that already ran.
    be.physWatch = await dev.bus.watch.register(`${dev.nodename}/physical-device`, () => this.physicalDeviceChanged(dev));
    await dev.switchState(XenbusState.XenbusStateInitWait);
  }

  private async physicalDeviceChanged(dev: XenbusDevice): Promise<void> {
    const be = this.blkif(dev);
    if (dev.removed || be.disk) return;
    const phys = await dev.read('physical-device');
    if (!phys) return;
    const params = await dev.read('params');
    be.mode = (await dev.read('mode')) ?? 'w';
    be.cdrom = (await dev.readOtherend('device-type')) === 'cdrom';
    const disk = params ? this.images.get(params) : undefined;
    if (!disk) {
      await dev.devFatal(2, `opening backend device ${params ?? ''}`);
      return;
    }
    be.disk = disk;
    await this.maybeConnect(dev);
  }

  async otherendChanged(dev: XenbusDevice, state: XenbusState): Promise<void> {
    switch (state) {
      case XenbusState.XenbusStateInitialising:
        // A frontend restarting while we are Closed: get ready to reconnect.
        if (dev.state === XenbusState.XenbusStateClosed) await dev.switchState(XenbusState.XenbusStateInitWait);
        break;
      case XenbusState.XenbusStateInitialised:
      case XenbusState.XenbusStateConnected:
        if (this.quirks.connectOnlyOnInitialised && state === XenbusState.XenbusStateConnected) break;
        // Two events in close succession may both read Connected: connect once.
        if (dev.state === XenbusState.XenbusStateConnected) break;
        // Whatever an earlier handshake left is let go before mapping again (idempotent).
        this.disconnect(dev);
        if (!(await this.connectRing(dev))) return;
        await this.maybeConnect(dev);
        break;
      case XenbusState.XenbusStateClosing:
        // The ring stays mapped: the frontend may still be completing requests on it. It is
        // let go only once the frontend says Closed.
        await dev.switchState(XenbusState.XenbusStateClosing);
        break;
      case XenbusState.XenbusStateClosed:
        this.disconnect(dev);
        await dev.switchState(XenbusState.XenbusStateClosed);
        // An online backend stays for a frontend that comes back; an offline one goes.
        if ((await dev.read('online')) === '1') break;
        await dev.bus.unregister(dev);
        break;
      case XenbusState.XenbusStateUnknown:
        // The frontend is gone: remove (which disconnects), and - as xenbus_dev_remove does for
        // a driver that cannot be re-bound - leave the backend Closed.
        await dev.bus.unregister(dev);
        await dev.switchState(XenbusState.XenbusStateClosed);
        break;
      case XenbusState.XenbusStateInitWait:
      case XenbusState.XenbusStateReconfiguring:
      case XenbusState.XenbusStateReconfigured:
        break;
    }
  }

  /** connect_ring: the frontend's ring-ref, event-channel and protocol. */
  private async connectRing(dev: XenbusDevice): Promise<boolean> {
    const be = this.blkif(dev);
    const protocol = (await dev.readOtherend('protocol')) ?? XEN_IO_PROTO_ABI_NATIVE;
    if (protocol !== XEN_IO_PROTO_ABI_NATIVE) {
      await dev.devFatal(22, `unknown fe protocol ${protocol}`);
      return false;
    }
    const ref = await dev.readOtherend('ring-ref');
    const evtchn = await dev.readOtherend('event-channel');
    if (ref === undefined || evtchn === undefined || !/^\d+$/.test(ref) || !/^\d+$/.test(evtchn)) {
      await dev.devFatal(2, `reading ${dev.otherend}/ring-ref and event-channel`);
      return false;
    }
    const k = dev.kernel;
    const mapped = k.mapGrant(dev.otherendId, Number(ref), false);
    if (mapped.status !== GntSt.GNTST_okay || !mapped.page) {
      await dev.devFatal(12, `mapping ring-ref ${ref} port ${evtchn}`);
      return false;
    }
    let port: number;
    try {
      port = k.bindInterdomain(dev.otherendId, Number(evtchn));
    } catch {
      k.unmapGrant(mapped.handle);
      await dev.devFatal(22, `binding event-channel ${evtchn}`);
      return false;
    }
    be.ring = BackRing.attach(mapped.page, BLKIF_RING_ENTRY_SIZE);
    be.ringHandle = mapped.handle;
    be.port = port;
    // The interrupt wakes xenblkd; before it runs (or after it stopped) requests wait on the ring.
    k.on(port, () => {
      if (be.xenblkd?.running) this.serve(dev);
    });
    return true;
  }

  /**
   * xen_update_blkif_status: once the disk is open and the ring mapped, publish the disk, go
   * Connected, and only then start the ring's thread - which gets the CPU whenever the scheduler
   * says, maybe after this handler returned and the next watch event was handled.
   */
  private async maybeConnect(dev: XenbusDevice): Promise<void> {
    const be = this.blkif(dev);
    if (!be.disk || !be.ring || dev.removed) return;
    if (dev.state === XenbusState.XenbusStateConnected) return;
    const info = (be.cdrom ? VDISK_CDROM : 0) | (be.mode === 'r' || be.disk.readonly ? VDISK_READONLY : 0);
    const d = dev.nodename;
    await dev.bus.transactionWrite([
      [`${d}/feature-flush-cache`, '1'], [`${d}/feature-discard`, '0'], [`${d}/feature-barrier`, '0'],
      [`${d}/feature-persistent`, '0'], [`${d}/sectors`, String(be.disk.sectors)], [`${d}/info`, String(info)],
      [`${d}/sector-size`, String(BLKIF_SECTOR_SIZE)], [`${d}/physical-sector-size`, String(BLKIF_SECTOR_SIZE)],
    ]);
    await dev.switchState(XenbusState.XenbusStateConnected);
    // Not Connected after all (the directory went away meanwhile): no thread.
    if ((dev.state as XenbusState) !== XenbusState.XenbusStateConnected || !be.ring) return;
    const name = `blkback.${dev.otherendId}.${dev.name.slice(dev.name.lastIndexOf('/') + 1)}-0`;
    const thread: Kthread = kthreadRun(dev.kernel, name, {
      // xen_blkif_schedule: first what the frontend queued before anyone listened.
      start: () => this.serve(dev),
      // Its way out clears the ring's handle to it.
      exit: () => {
        if (be.xenblkd === thread) be.xenblkd = undefined;
      },
    });
    be.xenblkd = thread;
  }

  /** The ring's event: take every request, answer each, notify if the frontend asked. */
  private serve(dev: XenbusDevice): void {
    const be = this.blkif(dev);
    const ring = be.ring;
    if (!ring || !be.disk) return;
    for (;;) {
      if (ring.requestOverflow()) {
        // A frontend claiming more requests than the ring holds is broken: stop serving it.
        void dev.devFatal(71, 'ring overflow');
        return;
      }
      let slot = ring.consumeRequest();
      while (slot) {
        const req = decodeBlkifRequest(slot);
        const op = blkifRequestOperation(slot);
        const latency = this.quirks.diskLatencyNs ?? 0;
        if (latency > 0 && (op === BlkifOp.BLKIF_OP_READ || op === BlkifOp.BLKIF_OP_WRITE)) {
          dev.kernel.setTimer(latency, () => this.complete(dev, be, ring, req, op));
          slot = ring.consumeRequest();
          continue;
        }
        const status = this.handle(dev, be, req, op);
        if (status === BlkifRsp.BLKIF_RSP_OKAY) this.stats.okay++;
        else if (status === BlkifRsp.BLKIF_RSP_EOPNOTSUPP) this.stats.notsupp++;
        else this.stats.error++;
        const rsp = ring.produceResponse();
        if (rsp) encodeBlkifResponse(rsp, { id: req.id, operation: op, status });
        this.maybeMapLate(dev, be, ring, req, op);
        slot = ring.consumeRequest();
      }
      if (ring.pushResponsesAndCheckNotify() && be.port !== undefined) dev.kernel.notify(be.port);
      if (!ring.finalCheckForRequests()) return;
    }
  }

  /** A slow request's end: done and answered on the ring it came from, if that is still mapped. */
  private complete(dev: XenbusDevice, be: Blkif, ring: BackRing, req: ReturnType<typeof decodeBlkifRequest>, op: number): void {
    if (be.ring !== ring || !be.disk) return;
    const status = this.handle(dev, be, req, op);
    if (status === BlkifRsp.BLKIF_RSP_OKAY) this.stats.okay++;
    else this.stats.error++;
    const rsp = ring.produceResponse();
    if (rsp) encodeBlkifResponse(rsp, { id: req.id, operation: op, status });
    if (ring.pushResponsesAndCheckNotify() && be.port !== undefined) dev.kernel.notify(be.port);
    this.maybeMapLate(dev, be, ring, req, op);
  }

  /**
   * mapAnsweredGrantLate: the request is answered; as xenblkd's next step (whenever the scheduler
   * gives it the CPU) map its first page again and keep it. Nothing happens once the ring is gone.
   */
  private maybeMapLate(dev: XenbusDevice, be: Blkif, ring: BackRing, req: ReturnType<typeof decodeBlkifRequest>, op: number): void {
    if (!this.quirks.mapAnsweredGrantLate || (op !== BlkifOp.BLKIF_OP_READ && op !== BlkifOp.BLKIF_OP_WRITE) || req.seg.length === 0) return;
    const k = dev.kernel;
    const task = be.xenblkd?.name;
    const gref = req.seg[0].gref;
    void (async () => {
      if (k.point && task) await k.point(task);
      if (be.ring !== ring) return;
      const m = k.mapGrant(dev.otherendId, gref, true);
      if (m.status === GntSt.GNTST_okay) be.lateMaps.push(m.handle);
    })();
  }

  private handle(dev: XenbusDevice, be: Blkif, req: ReturnType<typeof decodeBlkifRequest>, op: number): BlkifRsp {
    const disk = be.disk!;
    switch (op) {
      case BlkifOp.BLKIF_OP_FLUSH_DISKCACHE:
        disk.flushes++;
        return BlkifRsp.BLKIF_RSP_OKAY;
      case BlkifOp.BLKIF_OP_READ:
      case BlkifOp.BLKIF_OP_WRITE:
        break;
      default:
        return BlkifRsp.BLKIF_RSP_EOPNOTSUPP;
    }
    if (validateBlkifRequest(req) !== undefined) return BlkifRsp.BLKIF_RSP_ERROR;
    const write = op === BlkifOp.BLKIF_OP_WRITE;
    if (write && (be.mode === 'r' || disk.readonly)) return BlkifRsp.BLKIF_RSP_ERROR;
    let sector = Number(req.sector_number);
    const total = req.seg.reduce((n, s) => n + s.last_sect - s.first_sect + 1, 0);
    if (sector + total > disk.sectors) return BlkifRsp.BLKIF_RSP_ERROR;
    const k = dev.kernel;
    be.inflight++;
    try {
      for (const seg of req.seg) {
        const { offset, length } = blkifSegmentBytes(seg);
        const n = length / BLKIF_SECTOR_SIZE;
        if (write) {
          const m = k.mapGrant(dev.otherendId, seg.gref, true);
          if (!m.page) return BlkifRsp.BLKIF_RSP_ERROR;
          disk.write(sector, n, m.page.subarray(offset, offset + length));
          k.unmapGrant(m.handle);
        } else {
          const m = k.mapGrant(dev.otherendId, seg.gref, false);
          if (!m.page) return BlkifRsp.BLKIF_RSP_ERROR;
          disk.read(sector, n, m.page, offset);
          k.unmapGrant(m.handle);
        }
        sector += n;
      }
      return BlkifRsp.BLKIF_RSP_OKAY;
    } finally {
      be.inflight--;
    }
  }

  /** xen_blkif_disconnect: stop xenblkd, unbind and unmap the ring. Idempotent (but in R07's buggy variant). */
  private disconnect(dev: XenbusDevice): void {
    const be = this.blkif(dev);
    const k = dev.kernel;
    if (be.xenblkd) {
      be.xenblkd.stop();
      if (!this.quirks.keepXenblkdAfterStop) be.xenblkd = undefined;
    }
    if (be.port !== undefined) k.close(be.port);
    if (be.ringHandle !== undefined) k.unmapGrant(be.ringHandle);
    for (const handle of be.lateMaps.splice(0)) k.unmapGrant(handle);
    be.port = undefined;
    be.ringHandle = undefined;
    be.ring = undefined;
  }

  async remove(dev: XenbusDevice): Promise<void> {
    const be = this.blkif(dev);
    this.disconnect(dev);
    await be.physWatch?.unregister();
  }
}
