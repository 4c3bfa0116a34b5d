// netback: the vif backend in dom0. Probe advertises features, creates the vif net device
// (vif<domid>.<handle>) and waits in InitWait; when the frontend is Connected it maps the tx and
// rx rings and binds the event channel, but publishes Connected only once the vif-bridge script
// has reported hotplug-status=connected (R03's gate). TX: frontend packets (one or more granted
// slots) go to the bridge; RX: frames from the bridge are copied into buffers the frontend posted.
// Everything on the rings is untrusted: a malformed request drops the packet, a protocol
// violation disables this vif only.
import { BackRing, sharedRingInit } from '../../../hypervisor/public/io/ring.ts';
import {
  decodeNetifExtraInfo, decodeNetifRxRequest, decodeNetifTxRequest, encodeNetifRxResponse, encodeNetifTxResponse,
  NET_RX_RING_ENTRY_SIZE, NET_TX_RING_ENTRY_SIZE, NETRXF_more_data, NETTXF_extra_info, NETTXF_more_data, NetifRsp,
  type NetifTxRequestValue, XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_MAX, XEN_NETIF_NR_SLOTS_MIN,
} from '../../../hypervisor/public/io/netif.ts';
import { XenbusState } from '../../../hypervisor/public/io/xenbus.ts';
import { GntSt } from '../../../hypervisor/public/grant_table.ts';
import { XEN_PAGE_SIZE } from '../../../hypervisor/public/xen.ts';
import type { XenbusDevice, XenbusDriver } from '../../kernel/xenbus-probe.ts';
import type { XenbusWatch } from '../../kernel/xenbus-watch.ts';
import { type Bridge, type BridgePort, ETH_HLEN, type Network, vifName } from './bridge.ts';

/**
 * R03 (netback-hotplug-gate) variants. 'fixed': always watch hotplug-status, keep the node until
 * the vif is removed. The others are the reverted Linux changes:
 * - 'no-gate': write Connected as soon as the rings are mapped;
 * - 'watch-if-exists' (2afeec08ab5c): arm the watch only if the node exists;
 * - 'delete-once-seen' (1f2565780e9b): delete the node once the gate opened;
 * - 'delete-on-disconnect' (0f4558ae9187): delete it when the frontend disconnects.
 */
export type HotplugGate = 'fixed' | 'no-gate' | 'watch-if-exists' | 'delete-once-seen' | 'delete-on-disconnect';

export interface NetbackQuirks {
  readonly hotplugGate?: HotplugGate;
  /**
   * R10 (ring-ownership), a MirageOS netback before mirage-net-xen #68: set up each ring it maps
   * as if it were the ring's owner (Ring.Rpc.of_buf, SHARED_RING_INIT), zeroing the producer
   * indexes, so requests the frontend already posted are lost. The fix (shared-memory-ring #36,
   * of_buf_no_init) attaches without touching the page: only the front end initialises a ring.
   */
  readonly initRingsOnAttach?: boolean;
}

/** Frames held for a frontend that has no RX buffer posted before further ones are dropped. */
export const NETBACK_RX_QUEUE_MAX = 64;
/**
 * A frame that has waited this long for buffers is dropped (Linux's rx_drain_timeout), so one
 * the frontend can never take - more slots than it posts - does not block the queue forever.
 */
export const NETBACK_RX_DRAIN_NS = 10e9;

/** What netback reports to the simulator's trace (drops and disabled vifs). */
export interface NetbackEvent {
  readonly kind: 'net';
  readonly role: 'backend';
  readonly vif: string;
  readonly event: 'fatal' | 'tx-error';
  readonly reason: string;
}

/** One vif: the xenbus device's backend data and the dom0 net device at once. */
export class Vif implements BridgePort {
  master: Bridge | undefined;
  /** Netback's own view of its state (be->state); the xenbus one may lag behind the gate. */
  state = XenbusState.XenbusStateInitialising;
  mac = '';
  tx: BackRing | undefined;
  rx: BackRing | undefined;
  txHandle: number | undefined;
  rxHandle: number | undefined;
  port: number | undefined;
  /** The hotplug-status watch while the Connected write is held back. */
  gate: XenbusWatch | undefined;
  /** A protocol violation stopped this vif until the frontend reconnects. */
  disabled = false;
  readonly rxQueue: { frame: Uint8Array; at: number }[] = [];
  private drainTimer: { cancel(): void } | undefined;
  readonly stats = { txPackets: 0, txBytes: 0, txErrors: 0, txNoBridge: 0, rxPackets: 0, rxBytes: 0, rxDropped: 0, fatal: 0 };

  constructor(readonly name: string, readonly dev: XenbusDevice) {}

  get connected(): boolean {
    return this.tx !== undefined && this.rx !== undefined && !this.disabled;
  }

  /** The bridge sends a frame towards the guest: queue it and fill what buffers there are. */
  transmit(frame: Uint8Array): void {
    if (!this.connected || this.rxQueue.length >= NETBACK_RX_QUEUE_MAX) {
      this.stats.rxDropped++;
      return;
    }
    this.rxQueue.push({ frame, at: this.dev.kernel.now() });
    this.guarded(() => this.serveRx());
  }

  /** The event channel: new TX requests and/or new RX buffers. */
  kick(): void {
    this.guarded(() => {
      this.serveTx();
      this.serveRx();
    });
  }

  /** A bug here must not take dom0 down: the vif is disabled instead. */
  private guarded(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.fatal(`internal error: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** Protocol violation: stop serving the rings and head for Closing (the frontend follows). */
  fatal(reason: string): void {
    if (this.disabled) return;
    this.disabled = true;
    this.stats.fatal++;
    this.dropQueue();
    this.trace('fatal', reason);
    void this.dev.devFatal(71, `${this.name}: ${reason}`).catch(() => undefined);
  }

  private trace(event: NetbackEvent['event'], reason: string): void {
    const ev: NetbackEvent = { kind: 'net', role: 'backend', vif: this.name, event, reason };
    this.dev.kernel.trace(ev);
  }

  private notify(): void {
    if (this.port !== undefined) this.dev.kernel.notify(this.port);
  }

  // ---------------------------------------------------------------- TX (guest -> bridge)

  private serveTx(): void {
    const ring = this.tx;
    if (!ring || this.disabled) return;
    for (;;) {
      if (ring.requestOverflow()) {
        this.fatal('tx ring overflow');
        return;
      }
      for (let avail = ring.unconsumedRequests(); avail > 0; avail = ring.unconsumedRequests()) {
        if (!this.txPacket(ring, avail)) return;
      }
      if (ring.pushResponsesAndCheckNotify()) this.notify();
      if (!ring.finalCheckForRequests()) return;
    }
  }

  /**
   * One packet: its first request, any extra-info slots, then fragments while more_data is set.
   * Each slot is read once; the packet must be complete within what the frontend published.
   * False when the vif had to be disabled.
   */
  private txPacket(ring: BackRing, avail: number): boolean {
    const at = ring.req_cons;
    const first = decodeNetifTxRequest(ring.requestSlot(at));
    let used = 1;
    let extras = 0;
    if (first.flags & NETTXF_extra_info) {
      for (;;) {
        if (used >= avail) return this.violation('extra info missing');
        const ex = decodeNetifExtraInfo(ring.requestSlot(at + used));
        used++;
        extras++;
        if (ex.type === 0 || ex.type >= XEN_NETIF_EXTRA_TYPE_MAX || extras >= XEN_NETIF_EXTRA_TYPE_MAX) {
          return this.violation(`bad extra info type ${ex.type}`);
        }
        if (!(ex.flags & XEN_NETIF_EXTRA_FLAG_MORE)) break;
      }
    }
    const frags: NetifTxRequestValue[] = [];
    let more = (first.flags & NETTXF_more_data) !== 0;
    while (more) {
      if (frags.length + 1 >= XEN_NETIF_NR_SLOTS_MIN) return this.violation(`more than ${XEN_NETIF_NR_SLOTS_MIN} slots in a packet`);
      if (used >= avail) return this.violation('packet continues past the published requests');
      const f = decodeNetifTxRequest(ring.requestSlot(at + used));
      used++;
      frags.push(f);
      more = (f.flags & NETTXF_more_data) !== 0;
    }
    // The first slot's size is the packet's; its own data is what the fragments leave.
    let firstLen = first.size;
    for (const f of frags) {
      if (f.size > firstLen) return this.violation(`fragment of ${f.size} bytes in a ${first.size}-byte packet`);
      firstLen -= f.size;
    }
    const pieces = [{ req: first, len: firstLen }, ...frags.map((f) => ({ req: f, len: f.size }))];
    for (const p of pieces) {
      if (p.req.offset + p.len > XEN_PAGE_SIZE) return this.violation(`slot crosses its page (offset ${p.req.offset}, ${p.len} bytes)`);
    }
    for (let i = 0; i < used; i++) ring.consumeRequest();

    let status = NetifRsp.NETIF_RSP_OKAY;
    let frame: Uint8Array | undefined;
    if (first.size < ETH_HLEN) {
      status = this.txError(`bad packet size ${first.size}`);
    } else {
      frame = new Uint8Array(first.size);
      let pos = 0;
      const k = this.dev.kernel;
      for (const p of pieces) {
        if (p.len === 0) continue;
        const m = k.mapGrant(this.dev.otherendId, p.req.gref, true);
        if (m.status !== GntSt.GNTST_okay || !m.page) {
          status = this.txError(`cannot map tx gref ${p.req.gref} (${GntSt[m.status] ?? m.status})`);
          break;
        }
        frame.set(m.page.subarray(p.req.offset, p.req.offset + p.len), pos);
        k.unmapGrant(m.handle);
        pos += p.len;
      }
    }
    // One response per slot consumed, in order: the first, the extras (NULL), the fragments.
    this.txRespond(ring, first.id, status);
    for (let i = 0; i < extras; i++) this.txRespond(ring, 0, NetifRsp.NETIF_RSP_NULL);
    for (const f of frags) this.txRespond(ring, f.id, status);
    if (status !== NetifRsp.NETIF_RSP_OKAY || !frame) return true;
    this.stats.txPackets++;
    this.stats.txBytes += frame.length;
    if (this.master) this.master.input(this, frame);
    else this.stats.txNoBridge++;
    return true;
  }

  private txRespond(ring: BackRing, id: number, status: number): void {
    const slot = ring.produceResponse();
    if (slot) encodeNetifTxResponse(slot, { id, status });
  }

  private txError(reason: string): NetifRsp {
    this.stats.txErrors++;
    this.trace('tx-error', reason);
    return NetifRsp.NETIF_RSP_ERROR;
  }

  private violation(reason: string): false {
    this.fatal(reason);
    return false;
  }

  // ---------------------------------------------------------------- RX (bridge -> guest)

  /** Copies queued frames into posted buffers, one page each, answering in the request's slot. */
  private serveRx(): void {
    const ring = this.rx;
    if (!ring || this.disabled) return;
    const k = this.dev.kernel;
    let produced = false;
    for (;;) {
      if (ring.requestOverflow()) {
        this.fatal('rx ring overflow');
        return;
      }
      while (this.rxQueue.length) {
        const { frame } = this.rxQueue[0];
        const need = Math.max(1, Math.ceil(frame.length / XEN_PAGE_SIZE));
        if (ring.unconsumedRequests() < need) break;
        this.rxQueue.shift();
        for (let s = 0; s < need; s++) {
          const req = decodeNetifRxRequest(ring.consumeRequest()!);
          const chunk = frame.subarray(s * XEN_PAGE_SIZE, (s + 1) * XEN_PAGE_SIZE);
          let status: number = chunk.length;
          const m = k.mapGrant(this.dev.otherendId, req.gref, false);
          if (m.status !== GntSt.GNTST_okay || !m.page) {
            status = NetifRsp.NETIF_RSP_ERROR;
          } else {
            m.page.set(chunk, 0);
            k.unmapGrant(m.handle);
          }
          const rsp = ring.produceResponse();
          if (rsp) encodeNetifRxResponse(rsp, { id: req.id, offset: 0, flags: s < need - 1 ? NETRXF_more_data : 0, status });
        }
        this.stats.rxPackets++;
        this.stats.rxBytes += frame.length;
        produced = true;
      }
      if (produced && ring.pushResponsesAndCheckNotify()) this.notify();
      produced = false;
      if (!this.rxQueue.length) {
        this.drainTimer?.cancel();
        this.drainTimer = undefined;
        return;
      }
      // Still waiting for buffers: ask to be woken when the frontend posts some.
      const need = Math.max(1, Math.ceil(this.rxQueue[0].frame.length / XEN_PAGE_SIZE));
      ring.finalCheckForRequests();
      if (ring.unconsumedRequests() < need) {
        this.armDrain();
        return;
      }
    }
  }

  /** One timer for the head of the queue: drop what expired, then try again. */
  private armDrain(): void {
    if (this.drainTimer || !this.rxQueue.length) return;
    const k = this.dev.kernel;
    this.drainTimer = k.setTimer(this.rxQueue[0].at + NETBACK_RX_DRAIN_NS - k.now(), () => {
      this.drainTimer = undefined;
      while (this.rxQueue.length && this.rxQueue[0].at + NETBACK_RX_DRAIN_NS <= k.now()) {
        this.rxQueue.shift();
        this.stats.rxDropped++;
      }
      this.guarded(() => this.serveRx());
    });
  }

  dropQueue(): void {
    this.stats.rxDropped += this.rxQueue.length;
    this.rxQueue.length = 0;
    this.drainTimer?.cancel();
    this.drainTimer = undefined;
  }
}

export class Netback implements XenbusDriver {
  readonly type = 'vif';

  constructor(private readonly network: Network, private readonly quirks: NetbackQuirks = {}) {}

  private get gateMode(): HotplugGate {
    return this.quirks.hotplugGate ?? 'fixed';
  }

  vif(dev: XenbusDevice): Vif | undefined {
    return dev.data as Vif | undefined;
  }

  async probe(dev: XenbusDevice): Promise<void> {
    const handle = await dev.read('handle');
    if (handle === undefined || !/^\d+$/.test(handle)) {
      await dev.devFatal(22, 'reading handle');
      return;
    }
    const vif = new Vif(vifName(dev.otherendId, Number(handle)), dev);
    try {
      this.network.register(vif);
    } catch (e) {
      await dev.devFatal(17, `creating ${vif.name}: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    dev.data = vif;
    const d = dev.nodename;
    // One queue, one event channel, copying receive path, scatter-gather but no offloads.
    await dev.bus.transactionWrite([
      [`${d}/feature-sg`, '1'], [`${d}/feature-gso-tcpv4`, '0'], [`${d}/feature-gso-tcpv6`, '0'],
      [`${d}/feature-ipv6-csum-offload`, '0'], [`${d}/feature-rx-copy`, '1'], [`${d}/feature-rx-flip`, '0'],
      [`${d}/feature-multicast-control`, '0'], [`${d}/feature-dynamic-multicast-control`, '0'],
    ]).catch(() => undefined);
    for (const [k, v] of [['feature-split-event-channels', '0'], ['multi-queue-max-queues', '1'], ['feature-ctrl-ring', '0']]) {
      await dev.xs.write(`${d}/${k}`, v).catch(() => undefined);
    }
    // InitWait comes with the first otherend event (frontend Initialising).
  }

  async otherendChanged(dev: XenbusDevice, state: XenbusState): Promise<void> {
    const vif = this.vif(dev);
    if (!vif) return;
    switch (state) {
      case XenbusState.XenbusStateInitialising:
        await this.setState(dev, vif, XenbusState.XenbusStateInitWait);
        break;
      case XenbusState.XenbusStateConnected:
        await this.setState(dev, vif, XenbusState.XenbusStateConnected);
        break;
      case XenbusState.XenbusStateClosing:
        await this.setState(dev, vif, XenbusState.XenbusStateClosing);
        break;
      case XenbusState.XenbusStateClosed:
      case XenbusState.XenbusStateUnknown:
        await this.setState(dev, vif, XenbusState.XenbusStateClosed);
        // An online vif waits for the frontend to come back; an offline (or orphaned) one goes.
        if (state === XenbusState.XenbusStateUnknown || (await dev.read('online')) !== '1') await dev.bus.unregister(dev);
        break;
      case XenbusState.XenbusStateInitialised:
      case XenbusState.XenbusStateInitWait:
      case XenbusState.XenbusStateReconfiguring:
      case XenbusState.XenbusStateReconfigured:
        break;
    }
  }

  /**
   * Walks netback's state graph towards `target` one legal step at a time:
   * Initialising -> InitWait -> Connected; Connected -> Closing -> Closed; Closed -> InitWait.
   */
  private async setState(dev: XenbusDevice, vif: Vif, target: XenbusState): Promise<void> {
    const S = XenbusState;
    while (vif.state !== target && !dev.removed) {
      switch (vif.state) {
        case S.XenbusStateInitialising:
          await this.step(dev, vif, target === S.XenbusStateClosed ? S.XenbusStateClosed : S.XenbusStateInitWait);
          break;
        case S.XenbusStateInitWait:
          if (target === S.XenbusStateConnected) {
            if (!(await this.connect(dev, vif))) return;
          } else {
            await this.step(dev, vif, S.XenbusStateClosing);
          }
          break;
        case S.XenbusStateConnected:
          await this.disconnect(dev, vif);
          await this.step(dev, vif, S.XenbusStateClosing);
          break;
        case S.XenbusStateClosing:
          await this.step(dev, vif, S.XenbusStateClosed);
          break;
        case S.XenbusStateClosed:
          await this.step(dev, vif, target === S.XenbusStateClosing ? S.XenbusStateClosing : S.XenbusStateInitWait);
          break;
        case S.XenbusStateUnknown:
        case S.XenbusStateInitialised:
        case S.XenbusStateReconfiguring:
        case S.XenbusStateReconfigured:
          // Never set by this driver.
          return;
      }
    }
  }

  private async step(dev: XenbusDevice, vif: Vif, s: XenbusState): Promise<void> {
    vif.state = s;
    await dev.switchState(s);
  }

  /** The frontend is Connected: read its keys, map the rings, bind, then pass the gate. */
  private async connect(dev: XenbusDevice, vif: Vif): Promise<boolean> {
    const fail = async (errno: number, msg: string): Promise<false> => {
      vif.state = XenbusState.XenbusStateClosing;
      await dev.devFatal(errno, msg);
      return false;
    };
    vif.mac = (await dev.read('mac')) ?? '';
    if ((await dev.readOtherend('request-rx-copy')) !== '1') return fail(95, 'frontend does not request rx-copy (rx-flip unsupported)');
    if ((await dev.readOtherend('feature-rx-notify')) !== '1') return fail(22, 'feature-rx-notify is mandatory');
    const queues = await dev.readOtherend('multi-queue-num-queues');
    if (queues !== undefined && queues !== '1') return fail(22, `guest requested ${queues} queues, exceeding the maximum of 1`);
    const keys: string[] = [];
    for (const key of ['tx-ring-ref', 'rx-ring-ref', 'event-channel']) {
      const v = await dev.readOtherend(key);
      if (v === undefined || !/^\d+$/.test(v)) return fail(2, `reading ${dev.otherend}/tx-ring-ref, rx-ring-ref and event-channel`);
      keys.push(v);
    }
    const [txRef, rxRef, evtchn] = keys.map(Number);
    const k = dev.kernel;
    const tx = k.mapGrant(dev.otherendId, txRef, false);
    if (tx.status !== GntSt.GNTST_okay || !tx.page) return fail(12, `mapping tx-ring-ref ${txRef}`);
    const rx = k.mapGrant(dev.otherendId, rxRef, false);
    if (rx.status !== GntSt.GNTST_okay || !rx.page) {
      k.unmapGrant(tx.handle);
      return fail(12, `mapping rx-ring-ref ${rxRef}`);
    }
    let port: number;
    try {
      port = k.bindInterdomain(dev.otherendId, evtchn);
    } catch {
      k.unmapGrant(tx.handle);
      k.unmapGrant(rx.handle);
      return fail(22, `binding event-channel ${evtchn}`);
    }
    // The rings are mapped; dom0 may run anyone else before netback first looks at them (Linux
    // starts the vif's kernel threads here), and the frontend may post its RX buffers meanwhile.
    if (k.point) await k.point(dev.bus.watch.task);
    if (dev.removed) {
      k.close(port);
      k.unmapGrant(tx.handle);
      k.unmapGrant(rx.handle);
      return false;
    }
    if (this.quirks.initRingsOnAttach) {
      sharedRingInit(tx.page);
      sharedRingInit(rx.page);
    }
    vif.tx = BackRing.attach(tx.page, NET_TX_RING_ENTRY_SIZE);
    vif.rx = BackRing.attach(rx.page, NET_RX_RING_ENTRY_SIZE);
    vif.txHandle = tx.handle;
    vif.rxHandle = rx.handle;
    vif.port = port;
    vif.disabled = false;
    vif.state = XenbusState.XenbusStateConnected;
    k.on(port, () => vif.kick());
    // The data path runs from here (as Linux turns the carrier on); only the state write waits.
    vif.kick();
    await this.armGate(dev, vif);
    return true;
  }

  /** Connected is written only once the hotplug script said so (see HotplugGate). */
  private async armGate(dev: XenbusDevice, vif: Vif): Promise<void> {
    const mode = this.gateMode;
    if (vif.disabled) return;
    if (mode === 'no-gate' || (mode === 'watch-if-exists' && (await dev.read('hotplug-status')) === undefined)) {
      await dev.switchState(XenbusState.XenbusStateConnected);
      return;
    }
    await vif.gate?.unregister();
    // The first firing covers a script that already finished.
    vif.gate = await dev.bus.watch.register(`${dev.nodename}/hotplug-status`, () => this.hotplugStatusChanged(dev, vif));
  }

  private async hotplugStatusChanged(dev: XenbusDevice, vif: Vif): Promise<void> {
    const gate = vif.gate;
    if (dev.removed || !gate || vif.disabled || vif.state !== XenbusState.XenbusStateConnected) return;
    if ((await dev.read('hotplug-status')) !== 'connected') return;
    vif.gate = undefined;
    await gate.unregister();
    if (this.gateMode === 'delete-once-seen') await dev.xs.rm(`${dev.nodename}/hotplug-status`).catch(() => undefined);
    await dev.switchState(XenbusState.XenbusStateConnected);
  }

  /** Unbind and unmap; the net device stays (and on its bridge) for a reconnect. */
  private async disconnect(dev: XenbusDevice, vif: Vif): Promise<void> {
    const k = dev.kernel;
    if (vif.port !== undefined) k.close(vif.port);
    if (vif.txHandle !== undefined) k.unmapGrant(vif.txHandle);
    if (vif.rxHandle !== undefined) k.unmapGrant(vif.rxHandle);
    vif.port = vif.txHandle = vif.rxHandle = undefined;
    vif.tx = vif.rx = undefined;
    vif.dropQueue();
    const gate = vif.gate;
    vif.gate = undefined;
    await gate?.unregister();
    if (this.gateMode === 'delete-on-disconnect') await dev.xs.rm(`${dev.nodename}/hotplug-status`).catch(() => undefined);
  }

  async remove(dev: XenbusDevice): Promise<void> {
    const vif = this.vif(dev);
    if (!vif) return;
    await this.disconnect(dev, vif);
    this.network.unregister(vif);
    // The script runs once per vif: its result goes only with the vif itself (c55f34b6aec2).
    await dev.xs.rm(`${dev.nodename}/hotplug-status`).catch(() => undefined);
  }
}
