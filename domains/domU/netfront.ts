// netfront: the vif frontend in a guest (one queue, one event channel). When the backend waits
// (InitWait) it grants a tx and an rx ring page, allocates the event channel, publishes the keys
// in one transaction, keeps the offloads the backend offers, posts its receive buffers and goes
// straight to Connected (netfront never says Initialised), as Linux's xennet_connect does.
// Sending grants each page of a frame read-only to the backend until the response; received
// frames are kept for the guest's user space to drain.
import { FrontRing, type SringIndexes } from '../../hypervisor/public/io/ring.ts';
import {
  decodeNetifExtraInfo, decodeNetifRxResponse, decodeNetifTxResponse, encodeNetifRxRequest, encodeNetifTxRequest,
  NET_RX_RING_ENTRY_SIZE, NET_TX_RING_ENTRY_SIZE, NET_TX_RING_SIZE, NETRXF_extra_info, NETRXF_more_data, NETTXF_more_data,
  NetifRsp, type NetifTxRequestValue, XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_MAX_TX_SIZE,
} from '../../hypervisor/public/io/netif.ts';
import { parseXenbusState, XenbusState } from '../../hypervisor/public/io/xenbus.ts';
import { XEN_PAGE_SIZE } from '../../hypervisor/public/xen.ts';
import type { Kernel } from '../kernel/kernel.ts';
import type { XenbusDevice, XenbusDriver } from '../kernel/xenbus-probe.ts';

export interface NetfrontOptions {
  /**
   * Receive buffers (one page each) kept posted. Linux fills the whole ring; guests here are
   * small, and 16 is what the largest frame (64 KiB) needs.
   */
  readonly rxBuffers?: number;
  /** Received frames kept for user space before the oldest are dropped. */
  readonly rxQueueMax?: number;
}

/** What netfront reports to the simulator's trace. */
export interface NetfrontEvent {
  readonly kind: 'net';
  readonly role: 'frontend';
  readonly device: string;
  readonly dir: 'tx' | 'rx';
  readonly bytes: number;
}

interface Page {
  readonly gfn: number;
  readonly bytes: Uint8Array;
  readonly ref: number;
}

interface TxPacket {
  remaining: number;
  status: number;
  readonly pages: Page[];
  readonly resolve: (r: { status: number }) => void;
}

interface Netfront {
  mac: string;
  tx?: FrontRing;
  rx?: FrontRing;
  rings: Page[];
  port?: number;
  /** Free tx request ids, and the packet each id in flight belongs to. */
  readonly txIds: number[];
  readonly txInflight: Map<number, TxPacket>;
  /** Posted rx buffers by request id (= slot index, the slot the backend answers in). */
  readonly rxBufs: Map<number, Page>;
  /** The fragments of a multi-slot frame being received; bad once any slot failed. */
  rxParts: Uint8Array[];
  rxBad: boolean;
  /** The next response slot(s) carry extra info, not data. */
  rxExtra: boolean;
  readonly received: Uint8Array[];
  /** The offloads in use: those the backend offered (xennet_fix_features). */
  features: { sg: boolean; ipv6CsumOffload: boolean; tso: boolean; tso6: boolean };
  readonly stats: { txPackets: number; txErrors: number; rxPackets: number; rxErrors: number; rxOverrun: number };
}

export class NetfrontError extends Error {}

/**
 * Ends a grant and frees the page; while the peer still maps it, retries later (Linux defers such
 * pages too), giving up - leaking the page - after a while.
 */
function endAndFree(k: Kernel, pg: Page, tries = 12, delayNs = 1e6): void {
  if (k.endForeignAccess(pg.ref)) {
    k.freePage(pg.gfn);
    return;
  }
  if (tries > 0) k.setTimer(delayNs, () => endAndFree(k, pg, tries - 1, delayNs * 2));
}

export class NetfrontDriver implements XenbusDriver {
  readonly type = 'vif';
  private readonly rxBuffers: number;
  private readonly rxQueueMax: number;

  constructor(opts: NetfrontOptions = {}) {
    this.rxBuffers = opts.rxBuffers ?? 16;
    this.rxQueueMax = opts.rxQueueMax ?? 1024;
  }

  private info(dev: XenbusDevice): Netfront | undefined {
    return dev.data as Netfront | undefined;
  }

  async probe(dev: XenbusDevice): Promise<void> {
    const mac = (await dev.read('mac')) ?? '';
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac)) {
      await dev.devFatal(2, 'parsing mac');
      return;
    }
    const fe: Netfront = {
      mac: mac.toLowerCase(), rings: [], txIds: [], txInflight: new Map(), rxBufs: new Map(), rxParts: [], rxBad: false,
      rxExtra: false, received: [], features: { sg: false, ipv6CsumOffload: false, tso: false, tso6: false }, stats: { txPackets: 0, txErrors: 0, rxPackets: 0, rxErrors: 0, rxOverrun: 0 },
    };
    dev.data = fe;
  }

  async otherendChanged(dev: XenbusDevice, state: XenbusState): Promise<void> {
    const fe = this.info(dev);
    if (!fe) return;
    switch (state) {
      case XenbusState.XenbusStateInitWait:
        if (dev.state !== XenbusState.XenbusStateInitialising) break;
        await this.talkToNetback(dev, fe);
        break;
      case XenbusState.XenbusStateClosing:
      case XenbusState.XenbusStateClosed:
        if (dev.state === XenbusState.XenbusStateClosed) break;
        // Restarting (see reconnect): the backend's old Closed is what we wait to see end.
        if (dev.state === XenbusState.XenbusStateInitialising && state === XenbusState.XenbusStateClosed) break;
        await this.teardown(dev, fe);
        await dev.switchState(XenbusState.XenbusStateClosed);
        break;
      case XenbusState.XenbusStateConnected:
      case XenbusState.XenbusStateUnknown:
      case XenbusState.XenbusStateInitialising:
      case XenbusState.XenbusStateInitialised:
      case XenbusState.XenbusStateReconfiguring:
      case XenbusState.XenbusStateReconfigured:
        break;
    }
  }

  /** talk_to_netback and xennet_connect: rings, one event channel, keys in one transaction, offloads, rx buffers, Connected. */
  private async talkToNetback(dev: XenbusDevice, fe: Netfront): Promise<void> {
    if ((await dev.readOtherend('feature-rx-copy')) !== '1') {
      await dev.devFatal(95, 'backend does not support copying receive path');
      return;
    }
    const k = dev.kernel;
    const txPage = k.allocPage();
    const rxPage = k.allocPage();
    fe.tx = FrontRing.init(txPage.bytes, NET_TX_RING_ENTRY_SIZE, dev.bus.ringStart());
    fe.rx = FrontRing.init(rxPage.bytes, NET_RX_RING_ENTRY_SIZE, dev.bus.ringStart());
    fe.rings = [{ ...txPage, ref: dev.grantRing(txPage.gfn) }, { ...rxPage, ref: dev.grantRing(rxPage.gfn) }];
    fe.txIds.length = 0;
    for (let id = NET_TX_RING_SIZE - 1; id >= 0; id--) fe.txIds.push(id);
    fe.port = dev.allocEvtchn();
    k.on(fe.port, () => this.interrupt(dev, fe));
    const d = dev.nodename;
    await dev.bus.transactionWrite([
      [`${d}/tx-ring-ref`, String(fe.rings[0].ref)], [`${d}/rx-ring-ref`, String(fe.rings[1].ref)],
      [`${d}/event-channel`, String(fe.port)], [`${d}/request-rx-copy`, '1'], [`${d}/feature-rx-notify`, '1'],
      [`${d}/feature-sg`, '1'], [`${d}/feature-gso-tcpv4`, '0'], [`${d}/feature-gso-tcpv6`, '0'],
      [`${d}/feature-ipv6-csum-offload`, '0'],
    ]);
    // As xennet_connect: the offloads the backend offers (under rtnl_lock), then the receive
    // buffers, and only then Connected - which is what wakes netback to map the rings, so they
    // are never empty when it looks (a backend that re-initialises them loses the buffers on
    // every schedule: scenarios/ring-ownership.ts).
    if (k.point) await k.point(dev.bus.watch.task);
    await this.fixFeatures(dev, fe);
    this.fillRx(dev, fe);
    await dev.switchState(XenbusState.XenbusStateConnected);
  }

  /**
   * netdev_update_features -> xennet_fix_features: each offload the device would use is kept
   * only if the backend says it takes it. Without feature-sg a frame must fit one slot.
   */
  private async fixFeatures(dev: XenbusDevice, fe: Netfront): Promise<void> {
    const offers = async (key: string): Promise<boolean> => (await dev.readOtherend(key)) === '1';
    fe.features = {
      sg: await offers('feature-sg'),
      ipv6CsumOffload: await offers('feature-ipv6-csum-offload'),
      tso: await offers('feature-gso-tcpv4'),
      tso6: await offers('feature-gso-tcpv6'),
    };
  }

  /** Posts receive buffers up to the target, each a page granted writable to the backend. */
  private fillRx(dev: XenbusDevice, fe: Netfront): void {
    const ring = fe.rx;
    if (!ring) return;
    const k = dev.kernel;
    while (fe.rxBufs.size < this.rxBuffers && !ring.isFull()) {
      let page: { gfn: number; bytes: Uint8Array };
      try {
        page = k.allocPage();
      } catch {
        break;
      }
      this.post(fe, ring, { ...page, ref: k.grantForeignAccess(dev.otherendId, page.gfn, false) });
    }
    if (ring.pushRequestsAndCheckNotify() && fe.port !== undefined) k.notify(fe.port);
  }

  private post(fe: Netfront, ring: FrontRing, buf: Page): void {
    const id = ring.req_prod_pvt & (ring.size - 1);
    encodeNetifRxRequest(ring.produceRequest()!, { id, gref: buf.ref });
    fe.rxBufs.set(id, buf);
  }

  /**
   * Stops I/O: fails what is in flight, ends every grant, unbinds the event channel (waiting for
   * an upcall dispatching it on another vCPU) and then lets the rings go.
   */
  private async teardown(dev: XenbusDevice, fe: Netfront): Promise<void> {
    const k = dev.kernel;
    const { port, rings } = fe;
    fe.port = fe.tx = fe.rx = undefined;
    fe.rings = [];
    const packets = new Set(fe.txInflight.values());
    fe.txInflight.clear();
    for (const p of packets) {
      for (const pg of p.pages) endAndFree(k, pg);
      p.resolve({ status: NetifRsp.NETIF_RSP_ERROR });
    }
    for (const buf of fe.rxBufs.values()) endAndFree(k, buf);
    fe.rxBufs.clear();
    fe.rxParts = [];
    fe.rxBad = fe.rxExtra = false;
    if (port !== undefined) await k.unbindFromIrqhandler(port);
    // The backend may still map the rings until it sees us Closed.
    for (const pg of rings) endAndFree(k, pg);
  }

  /** The event channel: tx completions and received frames. */
  private interrupt(dev: XenbusDevice, fe: Netfront): void {
    this.txGc(dev, fe);
    this.rxPoll(dev, fe);
  }

  private txGc(dev: XenbusDevice, fe: Netfront): void {
    const ring = fe.tx;
    if (!ring) return;
    do {
      for (let slot = ring.consumeResponse(); slot; slot = ring.consumeResponse()) {
        const rsp = decodeNetifTxResponse(slot);
        if (rsp.status === NetifRsp.NETIF_RSP_NULL) continue;
        // An id we do not have in flight is the backend's mistake; ignore it.
        const p = fe.txInflight.get(rsp.id);
        if (!p) continue;
        fe.txInflight.delete(rsp.id);
        fe.txIds.push(rsp.id);
        if (rsp.status !== NetifRsp.NETIF_RSP_OKAY && p.status === NetifRsp.NETIF_RSP_OKAY) p.status = rsp.status;
        if (--p.remaining > 0) continue;
        for (const pg of p.pages) endAndFree(dev.kernel, pg);
        if (p.status === NetifRsp.NETIF_RSP_OKAY) fe.stats.txPackets++;
        else fe.stats.txErrors++;
        p.resolve({ status: p.status });
      }
    } while (ring.finalCheckForResponses());
  }

  private rxPoll(dev: XenbusDevice, fe: Netfront): void {
    const ring = fe.rx;
    if (!ring) return;
    do {
      for (let idx = ring.rsp_cons, slot = ring.consumeResponse(); slot; idx = ring.rsp_cons, slot = ring.consumeResponse()) {
        // Linux ignores the response id: the buffer is the one posted in this slot.
        const id = idx & (ring.size - 1);
        const buf = fe.rxBufs.get(id);
        fe.rxBufs.delete(id);
        this.rxSlot(dev, fe, slot, buf);
        // Recycle the buffer (still granted) into the slot just freed.
        if (buf) this.post(fe, ring, buf);
      }
      // Pushes the recycled buffers (and replaces any a confused backend made us lose).
      this.fillRx(dev, fe);
    } while (ring.finalCheckForResponses());
  }

  private rxSlot(dev: XenbusDevice, fe: Netfront, slot: Uint8Array, buf: Page | undefined): void {
    if (fe.rxExtra) {
      fe.rxExtra = (decodeNetifExtraInfo(slot).flags & XEN_NETIF_EXTRA_FLAG_MORE) !== 0;
      return;
    }
    const rsp = decodeNetifRxResponse(slot);
    if (rsp.status < 0 || !buf || rsp.offset + rsp.status > XEN_PAGE_SIZE) fe.rxBad = true;
    else fe.rxParts.push(buf.bytes.slice(rsp.offset, rsp.offset + rsp.status));
    if (rsp.flags & NETRXF_extra_info) fe.rxExtra = true;
    if (rsp.flags & NETRXF_more_data) return;
    const parts = fe.rxParts;
    const bad = fe.rxBad;
    fe.rxParts = [];
    fe.rxBad = false;
    if (bad) {
      fe.stats.rxErrors++;
      return;
    }
    const frame = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      frame.set(p, at);
      at += p.length;
    }
    fe.stats.rxPackets++;
    if (fe.received.length >= this.rxQueueMax) {
      fe.received.shift();
      fe.stats.rxOverrun++;
    }
    fe.received.push(frame);
    this.trace(dev, 'rx', frame.length);
  }

  private trace(dev: XenbusDevice, dir: NetfrontEvent['dir'], bytes: number): void {
    if (!dev.kernel.tracing) return;
    const ev: NetfrontEvent = { kind: 'net', role: 'frontend', device: dev.name, dir, bytes };
    dev.kernel.trace(ev);
  }

  // ---------------------------------------------------------------- the guest's side

  /**
   * The MAC, counters and offloads of a probed vif, and its rx ring as this end sees it: what it
   * produced (req_prod_pvt) against what the shared page says now (R10: only we move req_prod).
   */
  describe(dev: XenbusDevice): {
    mac: string; queued: number; stats: Netfront['stats']; features: Netfront['features'];
    rx?: { posted: number; req_prod_pvt: number; rsp_cons: number; shared: SringIndexes };
  } | undefined {
    const fe = this.info(dev);
    if (!fe) return undefined;
    const rx = fe.rx && { posted: fe.rxBufs.size, req_prod_pvt: fe.rx.req_prod_pvt, rsp_cons: fe.rx.rsp_cons, shared: fe.rx.shared() };
    return { mac: fe.mac, queued: fe.received.length, stats: { ...fe.stats }, features: { ...fe.features }, ...(rx ? { rx } : {}) };
  }

  /** Frames received since the last call. */
  drain(dev: XenbusDevice): Uint8Array[] {
    const fe = this.info(dev);
    return fe ? fe.received.splice(0) : [];
  }

  /**
   * Sends one Ethernet frame: one slot per page (the first carries the total size, more_data on
   * all but the last). Resolves with the status once every slot was answered.
   */
  send(dev: XenbusDevice, frame: Uint8Array): Promise<{ status: number }> {
    const fe = this.info(dev);
    if (!fe?.tx || dev.state !== XenbusState.XenbusStateConnected) return Promise.reject(new NetfrontError(`${dev.nodename}: not connected`));
    if (frame.length === 0 || frame.length > XEN_NETIF_MAX_TX_SIZE) return Promise.reject(new NetfrontError(`bad frame size ${frame.length}`));
    const ring = fe.tx;
    const n = Math.ceil(frame.length / XEN_PAGE_SIZE);
    if (n > 1 && !fe.features.sg) return Promise.reject(new NetfrontError(`a ${frame.length}-byte frame needs scatter-gather, which the backend does not offer`));
    if (ring.freeRequests() < n || fe.txIds.length < n) return Promise.reject(new NetfrontError('tx ring full'));
    const k = dev.kernel;
    const pages: Page[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const pg = k.allocPage();
        pg.bytes.set(frame.subarray(i * XEN_PAGE_SIZE, (i + 1) * XEN_PAGE_SIZE));
        pages.push({ ...pg, ref: k.grantForeignAccess(dev.otherendId, pg.gfn, true) });
      }
    } catch (e) {
      for (const pg of pages) endAndFree(k, pg);
      return Promise.reject(e instanceof Error ? e : new NetfrontError(String(e)));
    }
    const done = new Promise<{ status: number }>((resolve) => {
      const packet: TxPacket = { remaining: n, status: NetifRsp.NETIF_RSP_OKAY, pages, resolve };
      pages.forEach((pg, i) => {
        const id = fe.txIds.pop()!;
        const len = Math.min(XEN_PAGE_SIZE, frame.length - i * XEN_PAGE_SIZE);
        encodeNetifTxRequest(ring.produceRequest()!, {
          gref: pg.ref, offset: 0, flags: i < n - 1 ? NETTXF_more_data : 0, id, size: i === 0 ? frame.length : len,
        });
        fe.txInflight.set(id, packet);
      });
    });
    this.trace(dev, 'tx', frame.length);
    if (ring.pushRequestsAndCheckNotify() && fe.port !== undefined) k.notify(fe.port);
    return done;
  }

  /**
   * A hostile frontend, for tests: writes these tx requests as they are (grefs, sizes, flags
   * unchecked), then moves req_prod `bump` further than what was written, and kicks the backend.
   */
  rawTx(dev: XenbusDevice, requests: readonly NetifTxRequestValue[], bump = 0): void {
    const fe = this.info(dev);
    if (!fe?.tx) throw new NetfrontError(`${dev.nodename}: not connected`);
    const ring = fe.tx;
    for (const r of requests) {
      encodeNetifTxRequest(ring.slot(ring.req_prod_pvt), r);
      ring.req_prod_pvt = (ring.req_prod_pvt + 1) >>> 0;
    }
    ring.req_prod_pvt = (ring.req_prod_pvt + bump) >>> 0;
    ring.pushRequests();
    if (fe.port !== undefined) dev.kernel.notify(fe.port);
  }

  /**
   * A frontend restart with the backend left in place (iPXE handing over to the OS, kexec): close
   * (backend follows to Closed), then Initialising again; the handshake reruns on InitWait.
   */
  async reconnect(dev: XenbusDevice, timeoutNs = 5e9): Promise<void> {
    const fe = this.info(dev);
    if (!fe) throw new NetfrontError(`${dev.nodename}: not probed`);
    const k = dev.kernel;
    // A function, not a narrowed property: the otherend handler changes it while we sleep.
    const closed = (): boolean => dev.state === XenbusState.XenbusStateClosed;
    // As xennet_bus_close, wait for the backend's Closed as well as our own: restarting while it
    // still says Closing, the otherend handler would read that and close us again.
    const backendClosed = async (): Promise<boolean> => {
      const s = parseXenbusState(await dev.readOtherend('state'));
      return s === XenbusState.XenbusStateClosed || s === XenbusState.XenbusStateUnknown;
    };
    if (!closed()) await dev.switchState(XenbusState.XenbusStateClosing);
    const deadline = k.now() + timeoutNs;
    while (!dev.removed && k.now() < deadline && !(closed() && (await backendClosed()))) {
      await new Promise<void>((r) => void k.setTimer(1e6, r));
    }
    if (dev.removed) throw new NetfrontError(`${dev.nodename}: removed`);
    await this.teardown(dev, fe);
    await dev.switchState(XenbusState.XenbusStateInitialising);
  }

  async remove(dev: XenbusDevice): Promise<void> {
    const fe = this.info(dev);
    if (fe) await this.teardown(dev, fe);
  }
}
