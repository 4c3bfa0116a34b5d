// xenstored's domains as its kernel sees them (C's xenstored_domain.c around the core): an
// INTRODUCE binds the domain's store event channel, then its ring page (grant ref
// GNTTAB_RESERVED_XENSTORE) is mapped and served; a connection that goes unmaps and closes them;
// VIRQ_DOM_EXC asks the hypervisor which domains shut down or died. The same whether xenstored
// runs in dom0 or in a xenstore domain of its own, where dom0 is one more ring (introduceDom0).
import { DOMID_FIRST_RESERVED, Errno, Hypercall, Virq } from '../../../hypervisor/public/xen.ts';
import { Domctl } from '../../../hypervisor/public/domctl.ts';
import { GNTTAB_RESERVED_XENSTORE } from '../../../hypervisor/public/grant_table.ts';
import { XS_ERRNO, type XsError } from '../../../hypervisor/public/io/xs_wire.ts';
import { HypercallFailed, type Kernel } from '../../kernel/kernel.ts';
import type { XenstoredDaemon } from './daemon.ts';
import assert from 'node:assert/strict';
import { XsRingConnection } from './domain-ring.ts';

interface MappedRing {
  readonly ring: XsRingConnection;
  readonly conn: number;
  readonly handle: number;
  readonly port: number;
}

export class DomainRings {
  private readonly rings = new Map<number, MappedRing>();
  /** Ports bound at INTRODUCE, waiting for their ring to be mapped after the request. */
  private readonly boundAtIntroduce = new Map<number, number>();
  private seenEpoch = -1;
  /** A restarted daemon maps the rings its state names: no introduction. */
  private reattaching = false;

  constructor(private readonly k: Kernel, private readonly daemon: XenstoredDaemon, private readonly trace: boolean) {}

  /** Hooks the daemon: binds at INTRODUCE, maps after each batch. */
  start(): void {
    const { k, daemon } = this;
    // INTRODUCE binds the guest's store event channel (new_domain(): a failure, e.g. -ENOSPC when
    // the ports run out, fails that INTRODUCE with its errno and leaves the daemon serving).
    daemon.xs.setUpDomain = (domid, port) => {
      if (domid === 0) return undefined;
      try {
        this.boundAtIntroduce.set(domid, k.bindInterdomain(domid, port));
        return undefined;
      } catch (e) {
        if (!(e instanceof HypercallFailed) || typeof e.ret !== 'number') throw e;
        const name = Errno[-e.ret];
        // xsd_errors[] has no ESRCH: C's send_error() answers what it cannot translate as EINVAL.
        return name !== undefined && Object.hasOwn(XS_ERRNO, name) ? (name as XsError) : 'EINVAL';
      }
    };
    daemon.afterBatch = () => this.sync();
  }

  /** Maps the rings of newly introduced domains; lets go of those whose connection went. */
  sync(): void {
    const { k, daemon } = this;
    if (daemon.xs.domainEpoch === this.seenEpoch) return;
    this.seenEpoch = daemon.xs.domainEpoch;
    for (const [domid, d] of daemon.xs.domains) {
      // conn 0: dom0 served in-process (xenstored runs in dom0).
      if (!d.introduced || d.conn === undefined || d.conn === 0) continue;
      const have = this.rings.get(domid);
      if (have?.conn === d.conn) continue;
      const mapped = k.mapGrant(domid, GNTTAB_RESERVED_XENSTORE, false);
      if (!mapped.page) continue;
      // Bound at INTRODUCE; dom0 (in a xenstore domain) and a restarted daemon's domains here.
      let port = this.boundAtIntroduce.get(domid);
      this.boundAtIntroduce.delete(domid);
      if (port === undefined) {
        try {
          port = k.bindInterdomain(domid, d.port);
        } catch (e) {
          k.unmapGrant(mapped.handle);
          k.trace({ kind: 'oops', where: 'xenstored', error: `domain ${domid}: ${e instanceof Error ? e.message : String(e)}` });
          continue;
        }
      }
      const evtchn = port;
      const onRing = this.trace ? (ev: object) => k.trace({ ...ev, kind: 'ring', peer: domid }) : undefined;
      const ring = new XsRingConnection(daemon, d.conn, mapped.page, () => k.notify(evtchn), { onRing });
      if (this.reattaching) ring.reattach();
      else ring.introduce();
      k.on(evtchn, () => ring.kick());
      this.rings.set(domid, { ring, conn: d.conn, handle: mapped.handle, port: evtchn });
    }
    for (const [domid, r] of this.rings) {
      if (daemon.xs.connections.has(r.conn)) continue;
      this.rings.delete(domid);
      k.close(r.port);
      k.unmapGrant(r.handle);
    }
  }

  /** An event to a served domain (dom0_init's notify of dom0, whatever the profile's introduction did). */
  notify(domid: number): void {
    const r = this.rings.get(domid);
    assert(r !== undefined, `domain ${domid} has no ring here`);
    this.k.notify(r.port);
  }

  /**
   * VIRQ_DOM_EXC (Xen sends it to whichever domain is its handler: dom0, or the xenstore domain):
   * some domain shut down or died; ask the hypervisor which.
   */
  bindDomExc(): void {
    const { k, daemon } = this;
    const virq = k.bindVirq(Virq.VIRQ_DOM_EXC);
    k.on(virq, () => {
      for (const [domid, d] of daemon.xs.domains) {
        if (domid === 0 || !d.introduced) continue;
        const info = k.hypercall(Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_getdomaininfo, domain: domid });
        const state = typeof info === 'number' ? 'dead' : (info as { state: string }).state;
        if (state === 'dead' || state === 'dying') daemon.route(daemon.xs.domainStateChanged(domid, 'dead'));
        else if (state === 'shutdown') daemon.route(daemon.xs.domainStateChanged(domid, 'shutdown'));
      }
      daemon.flush();
    });
  }

  /**
   * A new daemon after a crash: every ring let go, then mapped again as its state names them -
   * the state the dead daemon left ('restart'), or a standby's (the seed's replication, 'failover').
   */
  restart(how: 'restart' | 'failover' = 'restart'): void {
    const { k, daemon } = this;
    for (const r of this.rings.values()) {
      k.close(r.port);
      k.unmapGrant(r.handle);
    }
    this.rings.clear();
    if (how === 'failover') {
      const batches = daemon.replication!.recorder.seq;
      const restored = daemon.failover();
      k.trace({ kind: 'xenstored', op: 'failed-over', batches, connections: restored.xs.connections.size, nodes: restored.xs.store.size });
    } else {
      const restored = daemon.restart();
      k.trace({ kind: 'xenstored', op: 'restarted', connections: restored.xs.connections.size, nodes: restored.xs.store.size });
    }
    this.seenEpoch = -1;
    this.reattaching = true;
    try {
      this.sync();
    } finally {
      this.reattaching = false;
    }
    daemon.flush();
  }
}

/** Whether a domain exists, as find_or_alloc_existing_domain() asks the hypervisor (xc_domain_getinfo). */
export function domainExists(k: Kernel, domid: number): boolean {
  return domid >>> 0 < DOMID_FIRST_RESERVED
    && typeof k.hypercall(Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_getdomaininfo, domain: domid }) !== 'number';
}

/** Every xenstore message, and what C xenstored sends to syslog, in the simulator's trace. */
export function traceDaemon(k: Kernel, daemon: XenstoredDaemon): void {
  daemon.onTrace = (ev) => k.trace(ev);
  daemon.onRemovedOwned = (ev) => k.trace(ev);
  const syslog = (level: string, text: string): void => k.trace({ kind: 'xenstored', op: 'syslog', level, text });
  daemon.xs.syslog = syslog;
  // The instance changes with a live update: its successor logs the same way.
  const lu = daemon.onLiveUpdate;
  daemon.onLiveUpdate = (d) => {
    daemon.xs.syslog = syslog;
    lu?.(d);
  };
}
