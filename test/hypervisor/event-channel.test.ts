// Event channels, 2-level ABI, as spec/hypervisor-and-xenbus.md §1 and §9 describe Xen's
// (xen/common/event_channel.c, event_2l.c).
//
// Cast: dom0 (privileged, the hardware domain, so the default handler of global VIRQs), guest1
// (domid 1, two vCPUs) and guest2 (domid 2, one vCPU). Every row names the caller, the call and
// what Xen answers. Pending/mask/selector/upcall bits are read from the shared_info page bytes
// the way a guest kernel reads them (GuestView), never from the model's own state.
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { Host } from '../../hypervisor/host.ts';
import type { Domain } from '../../hypervisor/domain.ts';
import {
  EventChannels,
  type EvtchnTraceEvent,
} from '../../hypervisor/event-channel.ts';
import {
  EvtchnOp,
  EvtchnStat,
  evtchnPort,
  type EvtchnPort,
  type evtchn_status,
} from '../../hypervisor/public/event_channel.ts';
import { type DomId, DOMID_SELF, domid, Errno, Virq } from '../../hypervisor/public/xen.ts';
import { EvtchnRoutes } from '../../hypervisor/evtchn-fast-path.ts';
import { PeerSharedInfo, routeDomid, routePort, routeValid, setPendingFast } from '../../hypervisor/public/evtchn_fast_path.ts';
import { waitFor } from '../helpers/wait.ts';
import { ok, rc } from '../helpers/evtchn-result.ts';
import { property } from '../helpers/property.ts';

const P = evtchnPort;
const SELF = DOMID_SELF;

// ---- the cast ----------------------------------------------------------------------------------

interface World {
  readonly host: Host;
  readonly ec: EventChannels;
  readonly dom0: Domain;
  readonly guest1: Domain;
  readonly guest2: Domain;
  /** `d<domid>v<vcpu>` for every onUpcall. */
  readonly upcalls: string[];
  readonly trace: EvtchnTraceEvent[];
}

function world(): World {
  const host = new Host({ totalFrames: 64 });
  const ec = new EventChannels(host);
  const dom0 = host.createDomain({ domid: 0, privileged: true });
  const guest1 = host.createDomain({ vcpus: 2 });
  const guest2 = host.createDomain();
  const upcalls: string[] = [];
  ec.onUpcall((d, v) => upcalls.push(`d${d}v${v}`));
  const trace: EvtchnTraceEvent[] = [];
  ec.onTrace((ev) => trace.push(ev));
  return { host, ec, dom0, guest1, guest2, upcalls, trace };
}

/** What a guest kernel sees of its shared_info page (x86_64 layout, little endian). */
class GuestView {
  private readonly u8: Uint8Array;
  private readonly dv: DataView;

  constructor(d: Domain) {
    this.u8 = d.sharedInfo!.bytes;
    this.dv = new DataView(d.sharedInfo!.sab);
  }

  /** evtchn_pending[] at 2048: port p is byte 2048 + p/8, bit p%8. */
  pending(p: number): boolean {
    return ((this.u8[2048 + (p >> 3)] >> (p & 7)) & 1) === 1;
  }

  /** evtchn_mask[] at 2560. */
  masked(p: number): boolean {
    return ((this.u8[2560 + (p >> 3)] >> (p & 7)) & 1) === 1;
  }

  mask(p: number): void {
    Atomics.or(this.u8, 2560 + (p >> 3), 1 << (p & 7));
  }

  /** vcpu_info[v].evtchn_pending_sel at 64v + 8. */
  sel(v = 0): bigint {
    return this.dv.getBigUint64(v * 64 + 8, true);
  }

  /** vcpu_info[v].evtchn_upcall_pending at 64v. */
  upcall(v = 0): number {
    return this.u8[v * 64];
  }

  /** vcpu_info[v].evtchn_upcall_mask at 64v + 1. */
  setUpcallMask(v: number, m: number): void {
    this.u8[v * 64 + 1] = m;
  }

  upcallMask(v = 0): number {
    return this.u8[v * 64 + 1];
  }

  /** Linux's handler: clear upcall_pending, take the selector, handle pending & ~mask ports. */
  handle(v = 0): number[] {
    Atomics.store(this.u8, v * 64, 0);
    const sel = this.dv.getBigUint64(v * 64 + 8, true);
    this.dv.setBigUint64(v * 64 + 8, 0n, true);
    const out: number[] = [];
    for (let w = 0; w < 64; w++) {
      if (!((sel >> BigInt(w)) & 1n)) continue;
      for (let b = 0; b < 64; b++) {
        const p = w * 64 + b;
        if (this.pending(p) && !this.masked(p)) {
          Atomics.and(this.u8, 2048 + (p >> 3), ~(1 << (p & 7)));
          out.push(p);
        }
      }
    }
    return out;
  }

  /** The whole page, to prove that nothing touched it. */
  snapshot(): Uint8Array {
    return this.u8.slice();
  }
}

const view = (d: Domain): GuestView => new GuestView(d);


function status(w: World, caller: Domain, dom: DomId, port: number): evtchn_status {
  return ok(w.ec.status(caller, { dom, port: P(port) }));
}

/** Short form of a port's status: 'closed', 'unbound:1', 'interdomain:0/5', 'virq:3', 'ipi'. */
function st(w: World, d: Domain, port: number): string {
  const s = status(w, w.dom0, d.domid, port);
  switch (s.status) {
    case EvtchnStat.EVTCHNSTAT_closed:
      return 'closed';
    case EvtchnStat.EVTCHNSTAT_unbound:
      return `unbound:${s.u.unbound.dom}`;
    case EvtchnStat.EVTCHNSTAT_interdomain:
      return `interdomain:${s.u.interdomain.dom}/${s.u.interdomain.port}`;
    case EvtchnStat.EVTCHNSTAT_pirq:
      return 'pirq';
    case EvtchnStat.EVTCHNSTAT_virq:
      return `virq:${s.u.virq}`;
    case EvtchnStat.EVTCHNSTAT_ipi:
      return 'ipi';
  }
}

/** The xenbus pattern: `front` offers a port to `back`, which binds it. */
function connect(w: World, front: Domain, back: Domain): { front: EvtchnPort; back: EvtchnPort } {
  const offered = ok(w.ec.allocUnbound(front, { dom: SELF, remote_dom: back.domid })).port;
  const bound = ok(w.ec.bindInterdomain(back, { remote_dom: front.domid, remote_port: offered })).local_port;
  return { front: offered, back: bound };
}

/** Allocates unbound ports in `d` until its table is full (ports 1..4095). */
function fill(w: World, d: Domain): void {
  for (;;) {
    if (typeof w.ec.allocUnbound(d, { dom: SELF, remote_dom: domid(0) }) === 'number') return;
  }
}

/** A domain killed while another domain still maps one of its pages: dying, but not freed. */
function zombie(w: World): Domain {
  const d = w.host.createDomain();
  w.host.populate(d, 0, 1);
  d.frame(0)!.foreignRefs = 1;
  w.host.destroy(d);
  assert.ok(w.host.domains.has(d.domid));
  return d;
}

/** One table row: a call and Xen's answer (an errno, or fields of the OUT record). */
interface Row {
  readonly spec: string;
  readonly run: (w: World) => unknown;
  readonly expect: number | Readonly<Record<string, unknown>>;
  /** Anything more the row promises, checked after the call. */
  readonly then?: (w: World, r: unknown) => void;
}

function rows(table: readonly Row[]): void {
  for (const row of table) {
    it(row.spec, () => {
      const w = world();
      const r = row.run(w);
      if (typeof row.expect === 'number') {
        assert.equal(rc(r), rc(row.expect));
      } else {
        assert.equal(typeof r, 'object', `expected a record, got ${rc(r)}`);
        for (const [k, v] of Object.entries(row.expect)) {
          assert.deepEqual((r as Record<string, unknown>)[k], v, k);
        }
      }
      row.then?.(w, r);
    });
  }
}

const EINVAL = -Errno.EINVAL;
const EPERM = -Errno.EPERM;
const ESRCH = -Errno.ESRCH;
const ENOSPC = -Errno.ENOSPC;
const ENOENT = -Errno.ENOENT;
const EEXIST = -Errno.EEXIST;
const EBUSY = -Errno.EBUSY;

// ---- §1.1: the hypercall table -----------------------------------------------------------------

describe('event channels (2-level ABI)', () => {
  describe('EVTCHNOP_alloc_unbound', () => {
    rows([
      {
        spec: 'a guest offers its first port (1) to dom0',
        run: (w) => w.ec.allocUnbound(w.guest1, { dom: SELF, remote_dom: domid(0) }),
        expect: { dom: SELF, remote_dom: 0, port: 1 },
        then: (w) => assert.equal(st(w, w.guest1, 1), 'unbound:0'),
      },
      {
        spec: 'remote_dom DOMID_SELF is stored as the caller\'s id (loopback)',
        run: (w) => w.ec.allocUnbound(w.guest1, { dom: SELF, remote_dom: SELF }),
        expect: { port: 1 },
        then: (w) => assert.equal(st(w, w.guest1, 1), 'unbound:1'),
      },
      {
        spec: 'a guest may name itself by its id',
        run: (w) => w.ec.allocUnbound(w.guest1, { dom: w.guest1.domid, remote_dom: domid(0) }),
        expect: { port: 1 },
      },
      {
        spec: 'the remote domain need not exist (yet)',
        run: (w) => w.ec.allocUnbound(w.guest1, { dom: SELF, remote_dom: domid(77) }),
        expect: { port: 1 },
        then: (w) => assert.equal(st(w, w.guest1, 1), 'unbound:77'),
      },
      {
        spec: 'dom0 (privileged) allocates in a guest\'s table',
        run: (w) => w.ec.allocUnbound(w.dom0, { dom: w.guest2.domid, remote_dom: w.guest1.domid }),
        expect: { port: 1 },
        then: (w) => {
          assert.equal(st(w, w.guest2, 1), 'unbound:1');
          assert.equal(st(w, w.dom0, 1), 'closed');
        },
      },
      {
        spec: '-EPERM: a guest allocates in another domain\'s table',
        run: (w) => w.ec.allocUnbound(w.guest1, { dom: w.guest2.domid, remote_dom: domid(0) }),
        expect: EPERM,
        then: (w) => assert.equal(st(w, w.guest2, 1), 'closed'),
      },
      {
        spec: '-ESRCH: no such domain',
        run: (w) => w.ec.allocUnbound(w.dom0, { dom: domid(42), remote_dom: domid(0) }),
        expect: ESRCH,
      },
      {
        spec: '-ENOSPC: the table is full (4095 ports in use)',
        run: (w) => {
          fill(w, w.guest1);
          return w.ec.allocUnbound(w.guest1, { dom: SELF, remote_dom: domid(0) });
        },
        expect: ENOSPC,
      },
      {
        spec: '-ENOSPC comes before -EPERM (Xen looks for a port first)',
        run: (w) => {
          fill(w, w.guest2);
          return w.ec.allocUnbound(w.guest1, { dom: w.guest2.domid, remote_dom: domid(0) });
        },
        expect: ENOSPC,
      },
      {
        spec: '-EINVAL: the domain is dying',
        run: (w) => w.ec.allocUnbound(w.dom0, { dom: zombie(w).domid, remote_dom: domid(0) }),
        expect: EINVAL,
      },
    ]);
  });

  describe('EVTCHNOP_bind_interdomain', () => {
    rows([
      {
        spec: 'dom0 binds a guest\'s offer: both ends interdomain, lowest free local port',
        run: (w) => {
          const offered = ok(w.ec.allocUnbound(w.guest1, { dom: SELF, remote_dom: domid(0) })).port;
          ok(w.ec.allocUnbound(w.dom0, { dom: SELF, remote_dom: domid(5) }));
          return w.ec.bindInterdomain(w.dom0, { remote_dom: w.guest1.domid, remote_port: offered });
        },
        expect: { remote_dom: 1, remote_port: 1, local_port: 2 },
        then: (w) => {
          assert.equal(st(w, w.dom0, 2), 'interdomain:1/1');
          assert.equal(st(w, w.guest1, 1), 'interdomain:0/2');
        },
      },
      {
        spec: 'the new local port is always left pending; the remote port is not',
        run: (w) => connect(w, w.guest1, w.dom0),
        expect: { front: 1, back: 1 },
        then: (w) => {
          assert.equal(view(w.dom0).pending(1), true);
          assert.equal(view(w.guest1).pending(1), false);
          assert.deepEqual(w.upcalls, ['d0v0']);
        },
      },
      {
        spec: 'loopback: remote_dom DOMID_SELF binds the caller\'s own offer',
        run: (w) => {
          const offered = ok(w.ec.allocUnbound(w.guest1, { dom: SELF, remote_dom: SELF })).port;
          return w.ec.bindInterdomain(w.guest1, { remote_dom: SELF, remote_port: offered });
        },
        expect: { local_port: 2 },
        then: (w) => {
          assert.equal(st(w, w.guest1, 1), 'interdomain:1/2');
          assert.equal(st(w, w.guest1, 2), 'interdomain:1/1');
        },
      },
      {
        spec: '-ESRCH: no such remote domain',
        run: (w) => w.ec.bindInterdomain(w.dom0, { remote_dom: domid(42), remote_port: P(1) }),
        expect: ESRCH,
      },
      {
        spec: '-EINVAL: remote port beyond the remote table',
        run: (w) => w.ec.bindInterdomain(w.dom0, { remote_dom: w.guest1.domid, remote_port: P(4095) }),
        expect: EINVAL,
      },
      {
        spec: '-EINVAL: remote port 0 (reserved)',
        run: (w) => w.ec.bindInterdomain(w.dom0, { remote_dom: w.guest1.domid, remote_port: P(0) }),
        expect: EINVAL,
      },
      {
        spec: '-EINVAL: remote port free',
        run: (w) => w.ec.bindInterdomain(w.dom0, { remote_dom: w.guest1.domid, remote_port: P(1) }),
        expect: EINVAL,
      },
      {
        spec: '-EINVAL: remote port unbound, but waiting for another domain',
        run: (w) => {
          const offered = ok(w.ec.allocUnbound(w.guest1, { dom: SELF, remote_dom: w.guest2.domid })).port;
          return w.ec.bindInterdomain(w.dom0, { remote_dom: w.guest1.domid, remote_port: offered });
        },
        expect: EINVAL,
        then: (w) => assert.equal(st(w, w.guest1, 1), 'unbound:2'),
      },
      {
        spec: '-EINVAL: remote port already bound (a second bind of the same offer)',
        run: (w) => {
          const { front } = connect(w, w.guest1, w.dom0);
          return w.ec.bindInterdomain(w.dom0, { remote_dom: w.guest1.domid, remote_port: front });
        },
        expect: EINVAL,
      },
      {
        spec: '-ENOSPC: no free local port',
        run: (w) => {
          const offered = ok(w.ec.allocUnbound(w.guest1, { dom: SELF, remote_dom: w.guest2.domid })).port;
          fill(w, w.guest2);
          return w.ec.bindInterdomain(w.guest2, { remote_dom: w.guest1.domid, remote_port: offered });
        },
        expect: ENOSPC,
      },
      {
        spec: '-EINVAL: the caller is dying',
        run: (w) => {
          const z = zombie(w);
          const offered = ok(w.ec.allocUnbound(w.guest1, { dom: SELF, remote_dom: z.domid })).port;
          return w.ec.bindInterdomain(z, { remote_dom: w.guest1.domid, remote_port: offered });
        },
        expect: EINVAL,
      },
    ]);
  });

  describe('EVTCHNOP_bind_virq', () => {
    rows([
      {
        spec: 'VIRQ_TIMER (per-vCPU) on vCPU 0 and on vCPU 1',
        run: (w) => {
          ok(w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_TIMER, vcpu: 0 }));
          return w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_TIMER, vcpu: 1 });
        },
        expect: { virq: Virq.VIRQ_TIMER, vcpu: 1, port: 2 },
        then: (w) => {
          assert.equal(st(w, w.guest1, 1), 'virq:0');
          assert.equal(status(w, w.guest1, SELF, 2).vcpu, 1);
        },
      },
      {
        spec: 'VIRQ_DOM_EXC (global) by dom0, its default handler',
        run: (w) => w.ec.bindVirq(w.dom0, { virq: Virq.VIRQ_DOM_EXC, vcpu: 0 }),
        expect: { port: 1 },
      },
      {
        spec: 'VIRQ_ARGO (per-domain) by a guest on vCPU 0',
        run: (w) => w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_ARGO, vcpu: 0 }),
        expect: { port: 1 },
      },
      {
        spec: 'a guest made handler of a global VIRQ (XEN_DOMCTL_set_virq_handler) binds it',
        run: (w) => {
          assert.equal(w.ec.setVirqHandler(w.guest2, Virq.VIRQ_DOM_EXC), 0);
          return w.ec.bindVirq(w.guest2, { virq: Virq.VIRQ_DOM_EXC, vcpu: 0 });
        },
        expect: { port: 1 },
        then: (w) => assert.equal(rc(w.ec.bindVirq(w.dom0, { virq: Virq.VIRQ_DOM_EXC, vcpu: 0 })), rc(EBUSY)),
      },
      {
        spec: '-EINVAL: virq >= NR_VIRQS (24)',
        run: (w) => w.ec.bindVirq(w.guest1, { virq: 24 as Virq, vcpu: 0 }),
        expect: EINVAL,
      },
      {
        spec: '-EINVAL: a global VIRQ on vCPU 1 (checked before ownership)',
        run: (w) => w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_DOM_EXC, vcpu: 1 }),
        expect: EINVAL,
      },
      {
        spec: '-EINVAL: a per-domain VIRQ on vCPU 1',
        run: (w) => w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_ARGO, vcpu: 1 }),
        expect: EINVAL,
      },
      {
        spec: '-ENOENT: no such vCPU',
        run: (w) => w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_TIMER, vcpu: 2 }),
        expect: ENOENT,
      },
      {
        spec: '-EEXIST: already bound on that vCPU',
        run: (w) => {
          ok(w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_TIMER, vcpu: 1 }));
          return w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_TIMER, vcpu: 1 });
        },
        expect: EEXIST,
      },
      {
        spec: '-EBUSY: a global VIRQ whose handler is another domain',
        run: (w) => w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_DOM_EXC, vcpu: 0 }),
        expect: EBUSY,
      },
      {
        spec: '-ENOSPC: no free port',
        run: (w) => {
          fill(w, w.guest1);
          return w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_TIMER, vcpu: 0 });
        },
        expect: ENOSPC,
      },
    ]);
  });

  describe('EVTCHNOP_bind_pirq (the emulated SCI of an HVM guest)', () => {
    rows([
      {
        spec: 'a mapped pirq binds to a fresh port; status says pirq',
        run: (w) => {
          w.ec.mapPirq(w.guest1, 9);
          return w.ec.bindPirq(w.guest1, { pirq: 9, flags: 0 });
        },
        expect: { pirq: 9, port: 1 },
        then: (w) => {
          assert.equal(st(w, w.guest1, 1), 'pirq');
          assert.deepEqual(status(w, w.guest1, SELF, 1).u, { pirq: 9 });
        },
      },
      { spec: '-EINVAL: a pirq the hypervisor did not map', run: (w) => w.ec.bindPirq(w.guest1, { pirq: 9, flags: 0 }), expect: EINVAL },
      { spec: '-EINVAL: a pirq beyond nr_pirqs', run: (w) => w.ec.bindPirq(w.guest1, { pirq: 4096, flags: 0 }), expect: EINVAL },
      {
        spec: '-EEXIST: the pirq is already bound',
        run: (w) => {
          w.ec.mapPirq(w.guest1, 9);
          ok(w.ec.bindPirq(w.guest1, { pirq: 9, flags: 0 }));
          return w.ec.bindPirq(w.guest1, { pirq: 9, flags: 0 });
        },
        expect: EEXIST,
      },
      {
        spec: 'send_guest_pirq sets the bound port pending; after close the pirq can be bound again',
        run: (w) => {
          w.ec.mapPirq(w.guest1, 9);
          const { port } = ok(w.ec.bindPirq(w.guest1, { pirq: 9, flags: 0 }));
          w.ec.sendGuestPirq(w.guest1, 9);
          assert.equal(view(w.guest1).pending(port), true);
          ok(w.ec.close(w.guest1, { port }));
          return w.ec.bindPirq(w.guest1, { pirq: 9, flags: 0 });
        },
        expect: { pirq: 9 },
      },
    ]);
  });

  describe('EVTCHNOP_bind_ipi', () => {
    rows([
      {
        spec: 'an IPI port notifying vCPU 1',
        run: (w) => w.ec.bindIpi(w.guest1, { vcpu: 1 }),
        expect: { vcpu: 1, port: 1 },
        then: (w) => {
          assert.equal(st(w, w.guest1, 1), 'ipi');
          assert.equal(status(w, w.guest1, SELF, 1).vcpu, 1);
        },
      },
      { spec: '-ENOENT: no such vCPU', run: (w) => w.ec.bindIpi(w.guest2, { vcpu: 1 }), expect: ENOENT },
      {
        spec: '-ENOSPC: no free port',
        run: (w) => {
          fill(w, w.guest2);
          return w.ec.bindIpi(w.guest2, { vcpu: 0 });
        },
        expect: ENOSPC,
      },
    ]);
  });

  describe('EVTCHNOP_close', () => {
    rows([
      {
        spec: 'an unbound port: closed',
        run: (w) => {
          ok(w.ec.allocUnbound(w.guest1, { dom: SELF, remote_dom: domid(0) }));
          return w.ec.close(w.guest1, { port: P(1) });
        },
        expect: 0,
        then: (w) => assert.equal(st(w, w.guest1, 1), 'closed'),
      },
      {
        spec: 'an interdomain port: closed, the peer unbound and waiting for the closer, silently',
        run: (w) => {
          const { back } = connect(w, w.guest1, w.dom0);
          view(w.dom0).handle();
          w.upcalls.length = 0;
          return w.ec.close(w.dom0, { port: back });
        },
        expect: 0,
        then: (w) => {
          assert.equal(st(w, w.guest1, 1), 'unbound:0');
          assert.equal(view(w.guest1).pending(1), false);
          assert.equal(view(w.guest1).upcall(), 0);
          assert.deepEqual(w.upcalls, []);
        },
      },
      {
        spec: 'a VIRQ port: closed, and the VIRQ can be bound again',
        run: (w) => {
          ok(w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_TIMER, vcpu: 1 }));
          assert.equal(w.ec.close(w.guest1, { port: P(1) }), 0);
          return w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_TIMER, vcpu: 1 });
        },
        expect: { port: 1 },
      },
      {
        spec: 'an IPI port: closed',
        run: (w) => {
          ok(w.ec.bindIpi(w.guest1, { vcpu: 0 }));
          return w.ec.close(w.guest1, { port: P(1) });
        },
        expect: 0,
      },
      {
        spec: 'closing clears the port\'s pending bit (a rebind starts clean)',
        run: (w) => {
          const { back } = connect(w, w.guest1, w.dom0);
          assert.equal(view(w.dom0).pending(back), true);
          return w.ec.close(w.dom0, { port: back });
        },
        expect: 0,
        then: (w) => assert.equal(view(w.dom0).pending(1), false),
      },
      { spec: '-EINVAL: port 0 (reserved)', run: (w) => w.ec.close(w.guest1, { port: P(0) }), expect: EINVAL },
      { spec: '-EINVAL: a free port', run: (w) => w.ec.close(w.guest1, { port: P(1) }), expect: EINVAL },
      { spec: '-EINVAL: beyond the table', run: (w) => w.ec.close(w.guest1, { port: P(5000) }), expect: EINVAL },
      {
        spec: '-EINVAL: closed twice',
        run: (w) => {
          ok(w.ec.bindIpi(w.guest1, { vcpu: 0 }));
          assert.equal(w.ec.close(w.guest1, { port: P(1) }), 0);
          return w.ec.close(w.guest1, { port: P(1) });
        },
        expect: EINVAL,
      },
    ]);
  });

  describe('EVTCHNOP_send', () => {
    rows([
      {
        spec: 'interdomain: the peer port goes pending and its vCPU gets an upcall',
        run: (w) => {
          connect(w, w.guest1, w.dom0);
          return w.ec.send(w.dom0, { port: P(1) });
        },
        expect: 0,
        then: (w) => {
          assert.equal(view(w.guest1).pending(1), true);
          assert.deepEqual(w.upcalls, ['d0v0', 'd1v0']);
        },
      },
      {
        spec: 'IPI: the port itself goes pending, on its vCPU',
        run: (w) => {
          ok(w.ec.bindIpi(w.guest1, { vcpu: 1 }));
          return w.ec.send(w.guest1, { port: P(1) });
        },
        expect: 0,
        then: (w) => {
          assert.equal(view(w.guest1).pending(1), true);
          assert.equal(view(w.guest1).sel(1), 1n);
          assert.deepEqual(w.upcalls, ['d1v1']);
        },
      },
      {
        spec: 'unbound: success, and nothing happens anywhere',
        run: (w) => {
          ok(w.ec.allocUnbound(w.guest1, { dom: SELF, remote_dom: domid(0) }));
          return w.ec.send(w.guest1, { port: P(1) });
        },
        expect: 0,
        then: (w) => {
          assert.equal(view(w.guest1).pending(1), false);
          assert.equal(view(w.dom0).pending(1), false);
          assert.deepEqual(w.upcalls, []);
        },
      },
      {
        spec: '-EINVAL: a VIRQ port',
        run: (w) => {
          ok(w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_TIMER, vcpu: 0 }));
          return w.ec.send(w.guest1, { port: P(1) });
        },
        expect: EINVAL,
      },
      { spec: '-EINVAL: port 0', run: (w) => w.ec.send(w.guest1, { port: P(0) }), expect: EINVAL },
      { spec: '-EINVAL: a free port', run: (w) => w.ec.send(w.guest1, { port: P(3) }), expect: EINVAL },
      { spec: '-EINVAL: beyond the table', run: (w) => w.ec.send(w.guest1, { port: P(4096) }), expect: EINVAL },
    ]);
  });

  describe('EVTCHNOP_status', () => {
    rows([
      {
        spec: 'a guest asks about its own port with DOMID_SELF',
        run: (w) => {
          ok(w.ec.bindIpi(w.guest2, { vcpu: 0 }));
          return w.ec.status(w.guest2, { dom: SELF, port: P(1) });
        },
        expect: { dom: SELF, port: 1, status: EvtchnStat.EVTCHNSTAT_ipi, vcpu: 0, u: {} },
      },
      {
        spec: 'a guest asks about its own port by its id',
        run: (w) => {
          ok(w.ec.allocUnbound(w.guest2, { dom: SELF, remote_dom: domid(0) }));
          return w.ec.status(w.guest2, { dom: w.guest2.domid, port: P(1) });
        },
        expect: { status: EvtchnStat.EVTCHNSTAT_unbound, u: { unbound: { dom: 0 } } },
      },
      {
        spec: 'port 0 (reserved) reports closed',
        run: (w) => w.ec.status(w.guest2, { dom: SELF, port: P(0) }),
        expect: { status: EvtchnStat.EVTCHNSTAT_closed },
      },
      {
        spec: 'a free port inside the table reports closed',
        run: (w) => w.ec.status(w.guest2, { dom: SELF, port: P(63) }),
        expect: { status: EvtchnStat.EVTCHNSTAT_closed },
      },
      {
        spec: 'dom0 (privileged) asks about a guest\'s port',
        run: (w) => {
          connect(w, w.guest1, w.dom0);
          return w.ec.status(w.dom0, { dom: w.guest1.domid, port: P(1) });
        },
        expect: { status: EvtchnStat.EVTCHNSTAT_interdomain, u: { interdomain: { dom: 0, port: 1 } } },
      },
      {
        spec: '-EINVAL: beyond the table (only 64 ports exist until more are needed)',
        run: (w) => w.ec.status(w.guest2, { dom: SELF, port: P(64) }),
        expect: EINVAL,
      },
      {
        spec: '-ESRCH: no such domain',
        run: (w) => w.ec.status(w.dom0, { dom: domid(42), port: P(1) }),
        expect: ESRCH,
      },
      {
        spec: '-EPERM: a guest asks about another domain\'s port',
        run: (w) => w.ec.status(w.guest2, { dom: w.guest1.domid, port: P(1) }),
        expect: EPERM,
      },
      {
        spec: '-EINVAL before -EPERM: a guest asks about an invalid port of another domain',
        run: (w) => w.ec.status(w.guest2, { dom: w.guest1.domid, port: P(999) }),
        expect: EINVAL,
      },
    ]);
  });

  describe('EVTCHNOP_bind_vcpu', () => {
    rows([
      {
        spec: 'an interdomain port moves to vCPU 1',
        run: (w) => {
          const { back } = connect(w, w.dom0, w.guest1);
          view(w.guest1).handle(0);
          return w.ec.bindVcpu(w.guest1, { port: back, vcpu: 1 });
        },
        expect: 0,
        then: (w) => {
          assert.equal(status(w, w.guest1, SELF, 1).vcpu, 1);
          assert.equal(w.ec.send(w.dom0, { port: P(1) }), 0);
          assert.equal(view(w.guest1).sel(1), 1n);
          assert.equal(view(w.guest1).upcall(1), 1);
        },
      },
      {
        spec: 'an unbound port moves to vCPU 1',
        run: (w) => {
          ok(w.ec.allocUnbound(w.guest1, { dom: SELF, remote_dom: domid(0) }));
          return w.ec.bindVcpu(w.guest1, { port: P(1), vcpu: 1 });
        },
        expect: 0,
      },
      {
        spec: 'a global VIRQ port moves to vCPU 1',
        run: (w) => {
          w.ec.setVirqHandler(w.guest1, Virq.VIRQ_CON_RING);
          ok(w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_CON_RING, vcpu: 0 }));
          return w.ec.bindVcpu(w.guest1, { port: P(1), vcpu: 1 });
        },
        expect: 0,
        then: (w) => {
          w.ec.sendGlobalVirq(Virq.VIRQ_CON_RING);
          assert.deepEqual(w.upcalls, ['d1v1']);
        },
      },
      {
        spec: '-EINVAL: a per-vCPU VIRQ port',
        run: (w) => {
          ok(w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_TIMER, vcpu: 0 }));
          return w.ec.bindVcpu(w.guest1, { port: P(1), vcpu: 1 });
        },
        expect: EINVAL,
      },
      {
        spec: '-EINVAL: an IPI port',
        run: (w) => {
          ok(w.ec.bindIpi(w.guest1, { vcpu: 0 }));
          return w.ec.bindVcpu(w.guest1, { port: P(1), vcpu: 1 });
        },
        expect: EINVAL,
      },
      { spec: '-EINVAL: a free port', run: (w) => w.ec.bindVcpu(w.guest1, { port: P(1), vcpu: 1 }), expect: EINVAL },
      {
        spec: '-ENOENT: no such vCPU (checked before the port)',
        run: (w) => w.ec.bindVcpu(w.guest1, { port: P(9999), vcpu: 2 }),
        expect: ENOENT,
      },
    ]);
  });

  describe('EVTCHNOP_unmask', () => {
    rows([
      {
        spec: 'a masked port: mask cleared',
        run: (w) => {
          ok(w.ec.bindIpi(w.guest1, { vcpu: 0 }));
          view(w.guest1).mask(1);
          return w.ec.unmask(w.guest1, { port: P(1) });
        },
        expect: 0,
        then: (w) => assert.equal(view(w.guest1).masked(1), false),
      },
      {
        spec: 'a free port inside the table: 0, and Xen leaves its mask alone',
        run: (w) => {
          view(w.guest1).mask(5);
          return w.ec.unmask(w.guest1, { port: P(5) });
        },
        expect: 0,
        then: (w) => assert.equal(view(w.guest1).masked(5), true),
      },
      { spec: '-EINVAL: beyond the table', run: (w) => w.ec.unmask(w.guest1, { port: P(64) }), expect: EINVAL },
    ]);
  });

  describe('EVTCHNOP_reset', () => {
    rows([
      {
        spec: 'DOMID_SELF: every port closed, interdomain peers left unbound',
        run: (w) => {
          connect(w, w.guest1, w.dom0);
          ok(w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_TIMER, vcpu: 0 }));
          ok(w.ec.bindIpi(w.guest1, { vcpu: 1 }));
          return w.ec.reset(w.guest1, { dom: SELF });
        },
        expect: 0,
        then: (w) => {
          assert.deepEqual([0, 1, 2, 3].map((p) => st(w, w.guest1, p)), ['closed', 'closed', 'closed', 'closed']);
          assert.equal(st(w, w.dom0, 1), 'unbound:1');
          ok(w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_TIMER, vcpu: 0 }));
        },
      },
      {
        spec: 'dom0 resets a paused guest',
        run: (w) => {
          connect(w, w.guest1, w.dom0);
          return w.ec.reset(w.dom0, { dom: w.guest1.domid });
        },
        expect: 0,
        then: (w) => assert.equal(st(w, w.guest1, 1), 'closed'),
      },
      {
        spec: '-EINVAL: dom0 resets a running guest',
        run: (w) => {
          w.host.unpause(w.guest1);
          return w.ec.reset(w.dom0, { dom: w.guest1.domid });
        },
        expect: EINVAL,
      },
      {
        spec: '-EPERM: a guest resets another domain',
        run: (w) => w.ec.reset(w.guest2, { dom: w.guest1.domid }),
        expect: EPERM,
      },
      { spec: '-ESRCH: no such domain', run: (w) => w.ec.reset(w.dom0, { dom: domid(42) }), expect: ESRCH },
    ]);
  });

  describe('dispatch(caller, cmd, arg): do_event_channel_op', () => {
    rows([
      {
        spec: 'EVTCHNOP_alloc_unbound (6) reaches allocUnbound',
        run: (w) => w.ec.dispatch(w.guest1, EvtchnOp.EVTCHNOP_alloc_unbound, { dom: SELF, remote_dom: domid(0) }),
        expect: { port: 1 },
      },
      {
        spec: 'a raw cmd number and a plain object (what the hypercall layer decodes)',
        run: (w) => {
          ok(w.ec.dispatch(w.guest1, 7, { vcpu: 0 }));
          return w.ec.dispatch(w.guest1, 5, { dom: 0x7ff0, port: 1 });
        },
        expect: { status: EvtchnStat.EVTCHNSTAT_ipi },
      },
      {
        spec: 'only the IN fields are read',
        run: (w) => w.ec.dispatch(w.guest1, 7, { vcpu: 1, port: 99, extra: 'x' }),
        expect: { vcpu: 1, port: 1 },
      },
      { spec: '-EFAULT: EVTCHNOP_bind_pirq without flags', run: (w) => w.ec.dispatch(w.dom0, 2, { pirq: 1 }), expect: -Errno.EFAULT },
      { spec: '-EFAULT: EVTCHNOP_init_control without its IN fields', run: (w) => w.ec.dispatch(w.dom0, 11, {}), expect: -Errno.EFAULT },
      { spec: '-EOPNOTSUPP: EVTCHNOP_expand_array before init_control', run: (w) => w.ec.dispatch(w.dom0, 12, { array_gfn: 0 }), expect: -Errno.EOPNOTSUPP },
      { spec: '-ENOSYS: EVTCHNOP_set_priority on the 2-level ABI', run: (w) => w.ec.dispatch(w.guest1, 13, { port: 0, priority: 0 }), expect: -Errno.ENOSYS },
      { spec: '-ENOSYS: an unknown command', run: (w) => w.ec.dispatch(w.dom0, 99, {}), expect: -Errno.ENOSYS },
      { spec: '-EFAULT: no argument', run: (w) => w.ec.dispatch(w.dom0, 4, null), expect: -Errno.EFAULT },
      { spec: '-EFAULT: a missing IN field', run: (w) => w.ec.dispatch(w.dom0, 4, {}), expect: -Errno.EFAULT },
      {
        spec: '-EFAULT: a domid that does not fit domid_t',
        run: (w) => w.ec.dispatch(w.dom0, 6, { dom: 0x10000, remote_dom: 0 }),
        expect: -Errno.EFAULT,
      },
      { spec: '-EFAULT: a negative port', run: (w) => w.ec.dispatch(w.dom0, 3, { port: -1 }), expect: -Errno.EFAULT },
      { spec: '-EFAULT: a port that is not a number', run: (w) => w.ec.dispatch(w.dom0, 3, { port: '1' }), expect: -Errno.EFAULT },
    ]);

    it('every modelled command is in the table, with the ABI numbers of event_channel.h', () => {
      const w = world();
      assert.deepEqual(
        [0, 1, 3, 4, 5, 6, 7, 8, 9, 10].map((c) => EvtchnOp[c]),
        ['EVTCHNOP_bind_interdomain', 'EVTCHNOP_bind_virq', 'EVTCHNOP_close', 'EVTCHNOP_send', 'EVTCHNOP_status',
          'EVTCHNOP_alloc_unbound', 'EVTCHNOP_bind_ipi', 'EVTCHNOP_bind_vcpu', 'EVTCHNOP_unmask', 'EVTCHNOP_reset'],
      );
      for (const cmd of [0, 1, 3, 4, 5, 6, 7, 8, 9, 10]) {
        // An all-zero argument: every command answers with something other than ENOSYS/EFAULT.
        const r = w.ec.dispatch(w.guest2, cmd, { remote_dom: 0, remote_port: 0, virq: 0, vcpu: 0, port: 0, dom: 2 });
        assert.ok(rc(r) !== rc(-Errno.ENOSYS) && rc(r) !== rc(-Errno.EFAULT), `${EvtchnOp[cmd]}: ${rc(r)}`);
      }
      assert.deepEqual(
        [EvtchnStat.EVTCHNSTAT_closed, EvtchnStat.EVTCHNSTAT_unbound, EvtchnStat.EVTCHNSTAT_interdomain,
          EvtchnStat.EVTCHNSTAT_pirq, EvtchnStat.EVTCHNSTAT_virq, EvtchnStat.EVTCHNSTAT_ipi],
        [0, 1, 2, 3, 4, 5],
      );
    });
  });

  // ---- allocation ------------------------------------------------------------------------------

  describe('port allocation', () => {
    it('port 0 is reserved: the first port handed out is 1, and 0 can never be closed', () => {
      const w = world();
      assert.equal(ok(w.ec.bindIpi(w.guest1, { vcpu: 0 })).port, 1);
      assert.equal(rc(w.ec.close(w.guest1, { port: P(0) })), '-EINVAL');
      assert.equal(st(w, w.guest1, 0), 'closed');
    });

    it('allocation takes the lowest free port, whatever the kind of binding', () => {
      const w = world();
      const a = ok(w.ec.allocUnbound(w.guest1, { dom: SELF, remote_dom: domid(0) })).port;
      const b = ok(w.ec.bindIpi(w.guest1, { vcpu: 0 })).port;
      const c = ok(w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_TIMER, vcpu: 0 })).port;
      assert.deepEqual([a, b, c], [1, 2, 3]);
      assert.equal(w.ec.close(w.guest1, { port: b }), 0);
      assert.equal(ok(w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_DEBUG, vcpu: 0 })).port, 2);
      assert.equal(ok(w.ec.bindIpi(w.guest1, { vcpu: 1 })).port, 4);
    });

    it('4096 ports (EVTCHN_2L_NR_CHANNELS): 4095 usable, then -ENOSPC until one is closed', () => {
      const w = world();
      fill(w, w.guest1);
      assert.equal(st(w, w.guest1, 4095), 'unbound:0');
      assert.equal(rc(w.ec.status(w.guest1, { dom: SELF, port: P(4096) })), '-EINVAL');
      assert.equal(rc(w.ec.bindIpi(w.guest1, { vcpu: 0 })), '-ENOSPC');
      assert.equal(w.ec.close(w.guest1, { port: P(2000) }), 0);
      assert.equal(ok(w.ec.bindIpi(w.guest1, { vcpu: 0 })).port, 2000);
    });

    it('the table grows 64 ports at a time, as Xen allocates buckets', () => {
      const w = world();
      for (let i = 1; i < 64; i++) ok(w.ec.bindIpi(w.guest1, { vcpu: 0 }));
      assert.equal(rc(w.ec.status(w.guest1, { dom: SELF, port: P(64) })), '-EINVAL');
      assert.equal(ok(w.ec.bindIpi(w.guest1, { vcpu: 0 })).port, 64);
      assert.equal(st(w, w.guest1, 127), 'closed');
      assert.equal(rc(w.ec.status(w.guest1, { dom: SELF, port: P(128) })), '-EINVAL');
    });

    it('any sequence of allocations and closes matches a lowest-free model', () => {
      type Step = { op: 'alloc' } | { op: 'close'; port: number };
      const step = fc.oneof(
        fc.constant<Step>({ op: 'alloc' }),
        fc.nat({ max: 140 }).map((port): Step => ({ op: 'close', port })),
      );
      fc.assert(
        fc.property(fc.array(step, { maxLength: 300 }), (steps) => {
          const w = world();
          const used = new Set<number>();
          for (const s of steps) {
            if (s.op === 'alloc') {
              let want = 1;
              while (used.has(want)) want++;
              assert.equal(ok(w.ec.bindIpi(w.guest2, { vcpu: 0 })).port, want);
              used.add(want);
            } else {
              const r = w.ec.close(w.guest2, { port: P(s.port) });
              assert.equal(rc(r), used.has(s.port) ? '0' : '-EINVAL', `close ${s.port}`);
              used.delete(s.port);
            }
          }
          for (let p = 1; p <= 140; p++) {
            const r = w.ec.status(w.guest2, { dom: SELF, port: P(p) });
            if (typeof r === 'number') assert.ok(!used.has(p));
            else assert.equal(r.status, used.has(p) ? EvtchnStat.EVTCHNSTAT_ipi : EvtchnStat.EVTCHNSTAT_closed);
          }
        }),
        property(60),
      );
    });
  });

  // ---- §1.3: delivery through shared_info ----------------------------------------------------

  describe('2-level delivery in the shared_info page (set_pending order)', () => {
    it('a send sets pending[p], then the selector bit of p/64, then evtchn_upcall_pending, then kicks', () => {
      const w = world();
      for (let i = 1; i <= 65; i++) ok(w.ec.bindIpi(w.guest1, { vcpu: 0 }));
      const g = view(w.guest1);
      assert.equal(w.ec.send(w.guest1, { port: P(65) }), 0);
      assert.equal(g.pending(65), true, 'pending: byte 2048 + 65/8, bit 65%8');
      assert.equal(g.sel(0), 0b10n, 'selector: word 1');
      assert.equal(g.upcall(0), 1);
      assert.deepEqual(w.upcalls, ['d1v0']);
      assert.deepEqual(g.handle(0), [65]);
    });

    it('a port already pending gives no new edge: no selector change, no upcall', () => {
      const w = world();
      const { front } = connect(w, w.guest1, w.dom0);
      const g = view(w.guest1);
      assert.equal(w.ec.send(w.dom0, { port: P(1) }), 0);
      // The guest acknowledges the upcall and the selector but leaves the port pending.
      Atomics.store(w.guest1.sharedInfo!.bytes, 0, 0);
      new DataView(w.guest1.sharedInfo!.sab).setBigUint64(8, 0n, true);
      w.upcalls.length = 0;
      assert.equal(w.ec.send(w.dom0, { port: P(1) }), 0);
      assert.equal(g.pending(front), true);
      assert.equal(g.sel(0), 0n);
      assert.equal(g.upcall(0), 0);
      assert.deepEqual(w.upcalls, []);
    });

    it('onUpcall fires only when evtchn_upcall_pending goes 0 -> 1', () => {
      const w = world();
      const a = ok(w.ec.bindIpi(w.guest1, { vcpu: 0 })).port;
      for (let i = 2; i < 65; i++) ok(w.ec.bindIpi(w.guest1, { vcpu: 0 }));
      const b = ok(w.ec.bindIpi(w.guest1, { vcpu: 0 })).port;
      const g = view(w.guest1);
      w.ec.send(w.guest1, { port: a });
      w.ec.send(w.guest1, { port: b }); // another word: selector bit set, upcall already pending
      assert.equal(g.sel(0), 0b11n);
      assert.deepEqual(w.upcalls, ['d1v0']);
      assert.deepEqual(g.handle(0), [a, b]);
      w.ec.send(w.guest1, { port: b });
      assert.deepEqual(w.upcalls, ['d1v0', 'd1v0']);
    });

    it('Xen ignores evtchn_upcall_mask: the flag is set anyway and the guest defers the upcall', () => {
      const w = world();
      const g = view(w.guest1);
      g.setUpcallMask(0, 1);
      connect(w, w.dom0, w.guest1);
      assert.equal(g.upcall(0), 1);
      assert.equal(g.upcallMask(0), 1);
      assert.deepEqual(w.upcalls, ['d1v0']);
    });

    it('a masked port goes pending but loses its edge until EVTCHNOP_unmask delivers it', () => {
      const w = world();
      const { front } = connect(w, w.guest1, w.dom0);
      const g = view(w.guest1);
      g.mask(front);
      w.upcalls.length = 0;
      assert.equal(w.ec.send(w.dom0, { port: P(1) }), 0);
      assert.equal(g.pending(front), true);
      assert.equal(g.sel(0), 0n);
      assert.equal(g.upcall(0), 0);
      assert.deepEqual(w.upcalls, []);
      assert.equal(w.ec.unmask(w.guest1, { port: front }), 0);
      assert.equal(g.masked(front), false);
      assert.equal(g.sel(0), 1n);
      assert.equal(g.upcall(0), 1);
      assert.deepEqual(w.upcalls, ['d1v0']);
    });

    it('unmasking a port with nothing pending delivers nothing', () => {
      const w = world();
      const { front } = connect(w, w.guest1, w.dom0);
      const g = view(w.guest1);
      g.mask(front);
      assert.equal(w.ec.unmask(w.guest1, { port: front }), 0);
      assert.equal(g.sel(0), 0n);
      assert.deepEqual(w.upcalls, ['d0v0']);
    });

    it('a guest thread clearing bits concurrently never misses a wakeup', async function () {
      const w = world();
      const ports: EvtchnPort[] = [];
      for (let i = 0; i < 200; i++) ports.push(ok(w.ec.bindIpi(w.guest2, { vcpu: 0 })).port);
      const handled = new Int32Array(new SharedArrayBuffer(4096 * 4));
      const stop = new Int32Array(new SharedArrayBuffer(4));
      const worker = new Worker(GUEST_HANDLER, {
        eval: true,
        execArgv: [],
        workerData: { page: w.guest2.sharedInfo!.sab, handled: handled.buffer, stop: stop.buffer },
      });
      const exited = new Promise<void>((resolve, reject) => {
        worker.on('error', reject);
        worker.on('exit', () => resolve());
      });
      try {
        let seed = 12345;
        const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
        const sentTo = new Set<number>();
        for (let burst = 0; burst < 200; burst++) {
          for (let i = 0; i < 50; i++) {
            const p = ports[rand(ports.length)];
            sentTo.add(p);
            assert.equal(w.ec.send(w.guest2, { port: p }), 0);
          }
          if (burst % 20 === 0) await new Promise((r) => setImmediate(r));
        }
        const g = view(w.guest2);
        // A missed wakeup leaves ports pending for good: the wait hangs and says which.
        await waitFor(() => !ports.some((p) => g.pending(p)), 'the guest to handle every pending port',
          () => `ports left pending while the guest sleeps: ${ports.filter((p) => g.pending(p)).join(' ')}`, 2);
        for (const p of sentTo) assert.ok(Atomics.load(handled, p) >= 1, `port ${p} never handled`);
      } finally {
        Atomics.store(stop, 0, 1);
        Atomics.notify(new Int32Array(w.guest2.sharedInfo!.sab), 0);
        await exited;
      }
    });
  });

  // ---- §1.3 again, for both places a send's set-pending runs ---------------------------------

  /**
   * An interdomain send sets the peer's bits either in the hypervisor (the trap) or in the
   * sender's own thread (the fast path: the route the hypervisor published, then
   * evtchn_2l_set_pending on the peer's shared_info). Both must write the same bits in the same
   * order and kick the peer exactly when upcall_pending goes 0 -> 1.
   */
  interface Sender {
    readonly name: string;
    /** EVTCHNOP_send from `from` on its port `port`. */
    send(w: World, from: Domain, port: EvtchnPort): void;
    /** `d<domid>v<vcpu>` for every kick of a vCPU so far. */
    kicks(w: World): readonly string[];
  }

  const fastKicks = new WeakMap<World, string[]>();
  const fastRoutes = new WeakMap<World, EvtchnRoutes>();
  const SENDERS: readonly Sender[] = [
    {
      name: 'the hypervisor (EVTCHNOP_send trap)',
      send: (w, from, port) => assert.equal(w.ec.send(from, { port }), 0),
      kicks: (w) => w.upcalls,
    },
    {
      name: 'the sender\'s thread (fast path)',
      send: (w, from, port) => {
        let routes = fastRoutes.get(w);
        if (!routes) fastRoutes.set(w, (routes = new EvtchnRoutes(w.host, w.ec)));
        routes.refresh(from.domid, port);
        const route = Atomics.load(new Int32Array(routes.table(from.domid)), port);
        assert.ok(routeValid(route), `a route for d${from.domid} port ${port}`);
        const peer = w.host.domains.get(routeDomid(route))!;
        const d = setPendingFast(new PeerSharedInfo(peer.sharedInfo!.sab), routePort(route));
        let k = fastKicks.get(w);
        if (!k) fastKicks.set(w, (k = []));
        if (d === 'upcall') k.push(`d${peer.domid}v0`);
      },
      kicks: (w) => fastKicks.get(w) ?? [],
    },
  ];

  for (const sender of SENDERS) {
    describe(`2-level delivery of an interdomain send, set pending by ${sender.name}`, () => {
      it('pending[p], then the selector bit of p/64, then evtchn_upcall_pending, then a kick', () => {
        const w = world();
        for (let i = 1; i <= 64; i++) ok(w.ec.bindIpi(w.guest1, { vcpu: 0 }));
        const { front, back } = connect(w, w.guest1, w.dom0);
        assert.equal(front, 65);
        const g = view(w.guest1);
        sender.send(w, w.dom0, back);
        assert.equal(g.pending(65), true);
        assert.equal(g.sel(0), 0b10n, 'selector: word 1');
        assert.equal(g.upcall(0), 1);
        assert.deepEqual(sender.kicks(w).filter((k) => k === 'd1v0'), ['d1v0']);
        assert.deepEqual(g.handle(0), [65]);
      });

      it('a port already pending gives no new edge: no selector change, no upcall, no kick', () => {
        const w = world();
        const { front, back } = connect(w, w.guest1, w.dom0);
        const g = view(w.guest1);
        sender.send(w, w.dom0, back);
        Atomics.store(w.guest1.sharedInfo!.bytes, 0, 0);
        new DataView(w.guest1.sharedInfo!.sab).setBigUint64(8, 0n, true);
        const before = sender.kicks(w).length;
        sender.send(w, w.dom0, back);
        assert.equal(g.pending(front), true);
        assert.equal(g.sel(0), 0n);
        assert.equal(g.upcall(0), 0);
        assert.equal(sender.kicks(w).length, before);
      });

      it('a second word while the upcall is pending: its selector bit is set, but no new kick', () => {
        const w = world();
        const a = connect(w, w.guest1, w.dom0);
        for (let i = 2; i < 65; i++) ok(w.ec.bindIpi(w.guest1, { vcpu: 0 }));
        const b = connect(w, w.guest1, w.dom0);
        assert.equal(b.front, 65);
        const g = view(w.guest1);
        const before = sender.kicks(w).length;
        sender.send(w, w.dom0, a.back);
        sender.send(w, w.dom0, b.back);
        assert.equal(g.sel(0), 0b11n);
        assert.equal(sender.kicks(w).length, before + 1);
        assert.deepEqual(g.handle(0), [a.front, b.front]);
        sender.send(w, w.dom0, b.back);
        assert.equal(sender.kicks(w).length, before + 2);
      });

      it('a masked port goes pending but loses its edge until EVTCHNOP_unmask delivers it', () => {
        const w = world();
        const { front, back } = connect(w, w.guest1, w.dom0);
        const g = view(w.guest1);
        g.mask(front);
        const before = sender.kicks(w).length;
        sender.send(w, w.dom0, back);
        assert.equal(g.pending(front), true);
        assert.equal(g.sel(0), 0n);
        assert.equal(g.upcall(0), 0);
        assert.equal(sender.kicks(w).length, before);
        assert.equal(w.ec.unmask(w.guest1, { port: front }), 0);
        assert.equal(g.sel(0), 1n);
        assert.equal(g.upcall(0), 1);
        assert.deepEqual(g.handle(0), [front]);
      });
    });
  }

  // ---- §1.2: close and death are silent ------------------------------------------------------

  describe('closing and dying (silent to the peer)', () => {
    it('close: the peer port becomes unbound, sends on it succeed and go nowhere, and the closer may rebind', () => {
      const w = world();
      const { front, back } = connect(w, w.guest1, w.dom0);
      assert.equal(w.ec.close(w.guest1, { port: front }), 0);
      assert.equal(st(w, w.dom0, back), 'unbound:1');
      view(w.dom0).handle();
      w.upcalls.length = 0;
      assert.equal(w.ec.send(w.dom0, { port: back }), 0);
      assert.equal(view(w.guest1).pending(front), false);
      assert.deepEqual(w.upcalls, []);
      const again = ok(w.ec.bindInterdomain(w.guest1, { remote_dom: domid(0), remote_port: back }));
      assert.equal(again.local_port, front);
      assert.equal(st(w, w.dom0, back), `interdomain:1/${front}`);
      assert.equal(view(w.guest1).pending(front), true, 'the rebound port is pending');
    });

    it('death: every peer port becomes unbound (remote = the dead domid), with no event on it', () => {
      const w = world();
      const a = connect(w, w.guest1, w.dom0);
      const b = connect(w, w.dom0, w.guest1);
      const c = connect(w, w.guest1, w.guest2);
      for (const d of [w.dom0, w.guest1, w.guest2]) view(d).handle();
      w.upcalls.length = 0;
      w.host.destroy(w.guest1);
      assert.equal(st(w, w.dom0, a.back), 'unbound:1');
      assert.equal(st(w, w.dom0, b.front), 'unbound:1');
      assert.equal(st(w, w.guest2, c.back), 'unbound:1');
      assert.equal(view(w.dom0).pending(a.back) || view(w.dom0).pending(b.front), false);
      assert.equal(view(w.guest2).pending(c.back), false);
      assert.deepEqual(w.upcalls, [], 'nobody bound VIRQ_DOM_EXC, so nobody hears of it');
      assert.equal(w.ec.send(w.dom0, { port: a.back }), 0);
      assert.equal(w.ec.send(w.guest2, { port: c.back }), 0);
    });

    it('death raises VIRQ_DOM_EXC at its handler (dom0 by default)', () => {
      const w = world();
      const virq = ok(w.ec.bindVirq(w.dom0, { virq: Virq.VIRQ_DOM_EXC, vcpu: 0 })).port;
      connect(w, w.guest2, w.dom0);
      view(w.dom0).handle();
      w.upcalls.length = 0;
      w.host.destroy(w.guest2);
      assert.deepEqual(view(w.dom0).handle(), [virq], 'only the VIRQ port: the peer port stays quiet');
      assert.deepEqual(w.upcalls, ['d0v0']);
    });

    it('a shutdown raises VIRQ_DOM_EXC too', () => {
      const w = world();
      const virq = ok(w.ec.bindVirq(w.dom0, { virq: Virq.VIRQ_DOM_EXC, vcpu: 0 })).port;
      w.host.shutdown(w.guest1, 0);
      assert.deepEqual(view(w.dom0).handle(), [virq]);
    });

    it('VIRQ_DOM_EXC goes to the domain made its handler, not to dom0', () => {
      const w = world();
      assert.equal(w.ec.setVirqHandler(w.guest1, Virq.VIRQ_DOM_EXC), 0);
      const virq = ok(w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_DOM_EXC, vcpu: 0 })).port;
      w.host.destroy(w.guest2);
      assert.deepEqual(view(w.guest1).handle(), [virq]);
      assert.deepEqual(w.upcalls, ['d1v0']);
    });

    it('a dying handler releases its global VIRQs: dom0 is the handler again', () => {
      const w = world();
      assert.equal(w.ec.setVirqHandler(w.guest1, Virq.VIRQ_DOM_EXC), 0);
      ok(w.ec.bindVirq(w.guest1, { virq: Virq.VIRQ_DOM_EXC, vcpu: 0 }));
      assert.equal(rc(w.ec.bindVirq(w.dom0, { virq: Virq.VIRQ_DOM_EXC, vcpu: 0 })), '-EBUSY');
      w.host.destroy(w.guest1);
      assert.equal(w.ec.globalVirqHandler(Virq.VIRQ_DOM_EXC), w.dom0);
      ok(w.ec.bindVirq(w.dom0, { virq: Virq.VIRQ_DOM_EXC, vcpu: 0 }));
    });

    it('set_virq_handler: -EBUSY while the current handler has it bound, -EINVAL for non-global VIRQs', () => {
      const w = world();
      ok(w.ec.bindVirq(w.dom0, { virq: Virq.VIRQ_DOM_EXC, vcpu: 0 }));
      assert.equal(rc(w.ec.setVirqHandler(w.guest1, Virq.VIRQ_DOM_EXC)), '-EBUSY');
      assert.equal(rc(w.ec.setVirqHandler(w.guest1, Virq.VIRQ_TIMER)), '-EINVAL');
      assert.equal(rc(w.ec.setVirqHandler(w.guest1, Virq.VIRQ_ARGO)), '-EINVAL');
      assert.equal(w.ec.close(w.dom0, { port: P(1) }), 0);
      assert.equal(w.ec.setVirqHandler(w.guest1, Virq.VIRQ_DOM_EXC), 0);
    });

    it('a zombie keeps its domid and its peers stay unbound to it; after it is freed, ops on it fail', () => {
      const w = world();
      const z = w.host.createDomain();
      const { back } = connect(w, z, w.dom0);
      w.host.populate(z, 0, 1);
      z.frame(0)!.foreignRefs = 1;
      w.host.destroy(z);
      assert.equal(st(w, w.dom0, back), `unbound:${z.domid}`);
      assert.equal(rc(w.ec.bindIpi(z, { vcpu: 0 })), '-EINVAL');
      z.frame(0)!.foreignRefs = 0;
      assert.ok(w.host.tryFree(z));
      assert.equal(rc(w.ec.status(w.dom0, { dom: z.domid, port: P(1) })), '-ESRCH');
      assert.equal(rc(w.ec.send(z, { port: P(1) })), '-EINVAL');
    });
  });

  // ---- isolation -------------------------------------------------------------------------------

  describe('isolation: a guest only ever acts on its own table', () => {
    rows([
      {
        spec: 'guest2 closing "port 1" closes nothing of guest1\'s',
        run: (w) => {
          connect(w, w.guest1, w.dom0);
          return w.ec.close(w.guest2, { port: P(1) });
        },
        expect: EINVAL,
        then: (w) => assert.equal(st(w, w.guest1, 1), 'interdomain:0/1'),
      },
      {
        spec: 'guest2 sending on "port 1" reaches neither guest1\'s peer nor guest1',
        run: (w) => {
          connect(w, w.guest1, w.dom0);
          view(w.dom0).handle();
          return w.ec.send(w.guest2, { port: P(1) });
        },
        expect: EINVAL,
        then: (w) => assert.equal(view(w.dom0).pending(1), false),
      },
      {
        spec: 'guest2 cannot bind a port guest1 offered to dom0',
        run: (w) => {
          ok(w.ec.allocUnbound(w.guest1, { dom: SELF, remote_dom: domid(0) }));
          return w.ec.bindInterdomain(w.guest2, { remote_dom: w.guest1.domid, remote_port: P(1) });
        },
        expect: EINVAL,
        then: (w) => assert.equal(st(w, w.guest1, 1), 'unbound:0'),
      },
      { spec: 'guest2 cannot read guest1\'s status', run: (w) => w.ec.status(w.guest2, { dom: w.guest1.domid, port: P(0) }), expect: EPERM },
      { spec: 'guest2 cannot reset guest1', run: (w) => w.ec.reset(w.guest2, { dom: w.guest1.domid }), expect: EPERM },
      {
        spec: 'guest2 reads its own status with DOMID_SELF',
        run: (w) => w.ec.status(w.guest2, { dom: SELF, port: P(0) }),
        expect: { dom: SELF, status: EvtchnStat.EVTCHNSTAT_closed },
      },
    ]);

    it('whatever guest2 calls, guest1\'s ports and shared_info page stay as they were', () => {
      const arg = fc.record({
        cmd: fc.integer({ min: 0, max: 13 }),
        port: fc.oneof(fc.nat({ max: 70 }), fc.nat()),
        vcpu: fc.nat({ max: 3 }),
        virq: fc.nat({ max: 30 }),
        dom: fc.constantFrom(1, 2, 0x7ff0, 9),
        remote_dom: fc.constantFrom(0, 1, 2, 0x7ff0),
        remote_port: fc.nat({ max: 70 }),
      });
      fc.assert(
        fc.property(fc.array(arg, { maxLength: 40 }), (calls) => {
          const w = world();
          connect(w, w.guest1, w.dom0);
          connect(w, w.dom0, w.guest1);
          ok(w.ec.allocUnbound(w.guest1, { dom: SELF, remote_dom: domid(0) }));
          ok(w.ec.bindIpi(w.guest1, { vcpu: 1 }));
          const before = view(w.guest1).snapshot();
          const ports = [0, 1, 2, 3, 4, 5].map((p) => st(w, w.guest1, p));
          for (const { cmd, ...a } of calls) {
            // guest2 speaks of guest1 (domid 1) wherever a domid goes, never of itself.
            w.ec.dispatch(w.guest2, cmd, { ...a, dom: a.dom === 2 ? 1 : a.dom, remote_dom: a.remote_dom === 2 ? 1 : a.remote_dom });
          }
          assert.deepEqual(view(w.guest1).snapshot(), before);
          assert.deepEqual([0, 1, 2, 3, 4, 5].map((p) => st(w, w.guest1, p)), ports);
        }),
        property(80),
      );
    });
  });

  // ---- trace -----------------------------------------------------------------------------------

  describe('trace', () => {
    it('a hypercall is one event, followed by what Xen did on its behalf', () => {
      const w = world();
      connect(w, w.guest1, w.dom0);
      w.trace.length = 0;
      w.ec.send(w.dom0, { port: P(1) });
      assert.deepEqual(w.trace, [
        {
          kind: 'evtchn', op: 'EVTCHNOP_send', domid: 0, port: 1, result: 0, args: { port: 1 },
          remote: { domid: 1, port: 1 },
        },
        { kind: 'evtchn', op: 'evtchn_set_pending', domid: 1, port: 1, vcpu: 0, result: 0, delivery: 'upcall' },
      ]);
    });

    it('failures carry the negative errno', () => {
      const w = world();
      w.ec.close(w.guest1, { port: P(0) });
      w.ec.dispatch(w.guest1, 12, {});
      assert.deepEqual(
        w.trace.map((e) => [e.op, e.domid, rc(e.result)]),
        [['EVTCHNOP_close', 1, '-EINVAL'], ['EVTCHNOP_expand_array', 1, '-EFAULT']],
      );
    });

    it('a death reads as: evtchn_destroy, one evtchn_close per port (with the peer), send_global_virq', () => {
      const w = world();
      ok(w.ec.bindVirq(w.dom0, { virq: Virq.VIRQ_DOM_EXC, vcpu: 0 }));
      const { front, back } = connect(w, w.guest2, w.dom0);
      w.trace.length = 0;
      w.host.destroy(w.guest2);
      assert.deepEqual(
        w.trace.slice(0, 4).map((e) => [e.op, e.domid, e.port, e.remote, e.virq]),
        [
          ['evtchn_destroy', 2, undefined, undefined, undefined],
          ['evtchn_close', 2, front, { domid: 0, port: back }, undefined],
          ['send_global_virq', 0, undefined, undefined, Virq.VIRQ_DOM_EXC],
          ['evtchn_set_pending', 0, 1, undefined, undefined],
        ],
      );
    });

    it('dump() prints Xen\'s \'e\' debug-key table', () => {
      const w = world();
      connect(w, w.guest1, w.dom0);
      ok(w.ec.bindVirq(w.dom0, { virq: Virq.VIRQ_DOM_EXC, vcpu: 0 }));
      assert.equal(
        w.ec.dump(w.dom0),
        [
          'Event channel information for domain 0:',
          'Polling vCPUs: {}',
          '    port [p/m/s]',
          '       1 [1/0/1]: s=3 n=0 x=0 d=1 p=1',
          '       2 [0/0/1]: s=5 n=0 x=0 v=3',
        ].join('\n'),
      );
    });
  });
});

/**
 * A guest kernel's event loop (Linux's shape) in plain JavaScript for a worker thread: sleep on
 * the word holding evtchn_upcall_pending; on wakeup clear it, swap the selector to 0 and clear
 * and count each pending, unmasked port. Before each sleep it publishes the epoch it read
 * before reading upcall_pending (GuestSync).
 */
const GUEST_HANDLER = `
const { workerData } = require('node:worker_threads');
const page = workerData.page;
const u8 = new Uint8Array(page);
const i32 = new Int32Array(page);
const pending = new BigUint64Array(page, 2048, 64);
const mask = new BigUint64Array(page, 2560, 64);
const sel = new BigUint64Array(page, 8, 1);
const handled = new Int32Array(workerData.handled);
const stop = new Int32Array(workerData.stop);
for (;;) {
  for (;;) {
    if (Atomics.load(stop, 0)) process.exit(0);
    const word = Atomics.load(i32, 0);
    if ((word & 0xff) !== 0) break;
    Atomics.wait(i32, 0, word);
  }
  Atomics.store(u8, 0, 0);
  let s = Atomics.exchange(sel, 0, 0n);
  for (let w = 0; s !== 0n; w++, s >>= 1n) {
    if ((s & 1n) === 0n) continue;
    let bits = Atomics.load(pending, w) & ~Atomics.load(mask, w);
    for (let b = 0n; bits !== 0n; b++, bits >>= 1n) {
      if ((bits & 1n) === 0n) continue;
      Atomics.and(pending, w, ~(1n << b));
      Atomics.add(handled, w * 64 + Number(b), 1);
    }
  }
}
`;
