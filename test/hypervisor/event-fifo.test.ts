// Event channels, FIFO ABI (xen/include/public/event_channel.h, xen/common/event_fifo.c), as a
// guest uses it: EVTCHNOP_init_control names vCPU 0's control block, EVTCHNOP_expand_array adds
// event-array pages, and every port then has an event word (PENDING, MASKED, LINKED, BUSY, LINK)
// on a queue per priority.
//
// Cast: dom0 (privileged), fifo (domid 1, switched to FIFO by each test that needs it, one page
// for its control block at gfn 0 and up to 129 more for its array) and peer (domid 2, 2-level).
// Event words, READY and head[] are read from the guest's page bytes (little endian, as the
// guest's C sees them), never from the model's state; the guest's consumer is FifoConsumer.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Host } from '../../hypervisor/host.ts';
import type { Domain } from '../../hypervisor/domain.ts';
import { EventChannels, type EvtchnTraceEvent } from '../../hypervisor/event-channel.ts';
import { EvtchnOp, evtchnPort } from '../../hypervisor/public/event_channel.ts';
import {
  EVTCHN_FIFO_BUSY, EVTCHN_FIFO_LINKED, EVTCHN_FIFO_LINK_BITS, EVTCHN_FIFO_LINK_MASK, EVTCHN_FIFO_MASKED, EVTCHN_FIFO_NR_CHANNELS,
  EVTCHN_FIFO_PENDING, EVTCHN_FIFO_PRIORITY_DEFAULT, EvtchnFifo, EvtchnFifoControlBlock, FifoConsumer,
} from '../../hypervisor/public/event_fifo.ts';
import { PeerSharedInfo, setPendingFast } from '../../hypervisor/public/evtchn_fast_path.ts';
import { DOMID_SELF } from '../../hypervisor/public/xen.ts';
import { ok, rc } from '../helpers/evtchn-result.ts';

const SELF = DOMID_SELF;
const P = 1 << EVTCHN_FIFO_PENDING;
const M = 1 << EVTCHN_FIFO_MASKED;
const L = 1 << EVTCHN_FIFO_LINKED;
const B = 1 << EVTCHN_FIFO_BUSY;

interface World {
  readonly host: Host;
  readonly ec: EventChannels;
  readonly dom0: Domain;
  readonly fifo: Domain;
  readonly peer: Domain;
  readonly upcalls: string[];
  readonly trace: EvtchnTraceEvent[];
  /** The guest's own view of its FIFO state (pages it gave Xen), and its upcall handler. */
  guest?: { state: EvtchnFifo; consumer: FifoConsumer };
}

function world(): World {
  const host = new Host();
  const ec = new EventChannels(host);
  const dom0 = host.createDomain({ domid: 0, privileged: true });
  const fifo = host.createDomain({ maxPages: 256 });
  const peer = host.createDomain();
  host.populate(fifo, 0, 131);
  const upcalls: string[] = [];
  ec.onUpcall((d, v) => upcalls.push(`d${d}v${v}`));
  const trace: EvtchnTraceEvent[] = [];
  ec.onTrace((ev) => trace.push(ev));
  return { host, ec, dom0, fifo, peer, upcalls, trace };
}


/** The guest's page `gfn` as 32-bit little-endian words. */
function page(d: Domain, gfn: number): DataView {
  const f = d.p2m[gfn]!;
  return new DataView(f.sab, f.offset, 4096);
}

/** The guest switches to FIFO: control block at gfn 0, then `pages` array pages (gfn 1..). */
function switchToFifo(w: World, pages = 1, opts: { masked?: boolean } = {}): void {
  const r = ok(w.ec.dispatch(w.fifo, EvtchnOp.EVTCHNOP_init_control, { control_gfn: 0, offset: 0, vcpu: 0 }));
  assert.equal(r.link_bits, EVTCHN_FIFO_LINK_BITS);
  const cb = w.fifo.p2m[0]!;
  const state = new EvtchnFifo(w.fifo.sharedInfo!.sab);
  state.mapControlBlock(0, cb.sab, cb.offset);
  w.guest = { state, consumer: new FifoConsumer(state, 0) };
  for (let i = 0; i < pages; i++) expand(w, opts);
}

/** One more event-array page, its words as Linux leaves them (MASKED) or all zero. */
function expand(w: World, opts: { masked?: boolean } = {}): number {
  const gfn = 1 + w.guest!.state.array.length;
  const f = w.fifo.p2m[gfn]!;
  const words = new Int32Array(f.sab, f.offset, 1024);
  if (opts.masked) EvtchnFifo.initArrayPage(words);
  const r = w.ec.dispatch(w.fifo, EvtchnOp.EVTCHNOP_expand_array, { array_gfn: gfn });
  if (r === 0) w.guest!.state.addArrayPage(f.sab, f.offset);
  return r as number;
}

/** The raw event word of a port, from the guest's array page. */
function word(w: World, port: number): number {
  return page(w.fifo, 1 + Math.floor(port / 1024)).getUint32((port % 1024) * 4, true);
}

function setWord(w: World, port: number, v: number): void {
  page(w.fifo, 1 + Math.floor(port / 1024)).setUint32((port % 1024) * 4, v >>> 0, true);
}

function bits(v: number): string {
  const f = [(v & P) !== 0 ? 'P' : '', (v & M) !== 0 ? 'M' : '', (v & L) !== 0 ? 'L' : '', (v & B) !== 0 ? 'B' : ''].join('');
  const link = v & EVTCHN_FIFO_LINK_MASK;
  return `${f || '-'}${link ? `>${link}` : ''}`;
}

const ready = (w: World): number => page(w.fifo, 0).getUint32(EvtchnFifoControlBlock.ready, true);
const head = (w: World, prio: number): number => page(w.fifo, 0).getUint32(EvtchnFifoControlBlock.head + 4 * prio, true);
const upcall = (d: Domain): number => d.sharedInfo!.bytes[0];

/** An interdomain channel: a port offered by `fifo` bound by `peer`; returns both ends. */
function channel(w: World): { local: number; remote: number } {
  const local = ok(w.ec.allocUnbound(w.fifo, { dom: SELF, remote_dom: w.peer.domid })).port;
  const remote = ok(w.ec.bindInterdomain(w.peer, { remote_dom: w.fifo.domid, remote_port: local })).local_port;
  return { local, remote };
}

function send(w: World, from: Domain, port: number): string | undefined {
  w.trace.length = 0;
  assert.equal(w.ec.send(from, { port: evtchnPort(port) }), 0);
  return w.trace.find((e) => e.op === 'evtchn_set_pending')?.delivery;
}

/** The guest's upcall: the ports its handler saw, in order. */
function handle(w: World): number[] {
  const seen: number[] = [];
  w.guest!.consumer.handleEvents((p) => seen.push(p));
  return seen;
}

describe('event channels (FIFO ABI)', () => {
  describe('the ABI', () => {
    it('has the wire values of event_channel.h', () => {
      assert.deepEqual(
        [EvtchnOp.EVTCHNOP_init_control, EvtchnOp.EVTCHNOP_expand_array, EvtchnOp.EVTCHNOP_set_priority],
        [11, 12, 13],
      );
      assert.deepEqual([EVTCHN_FIFO_PENDING, EVTCHN_FIFO_MASKED, EVTCHN_FIFO_LINKED, EVTCHN_FIFO_BUSY], [31, 30, 29, 28]);
      assert.equal(EVTCHN_FIFO_LINK_BITS, 17);
      assert.equal(EVTCHN_FIFO_LINK_MASK, 0x1ffff);
      assert.equal(EVTCHN_FIFO_NR_CHANNELS, 131072);
      assert.equal(EVTCHN_FIFO_PRIORITY_DEFAULT, 7);
      assert.deepEqual(EvtchnFifoControlBlock, { ready: 0, _rsvd: 4, head: 8, SIZE: 72 });
    });
  });

  describe('EVTCHNOP_init_control', () => {
    const rows: { spec: string; arg: Record<string, number>; expect: string; before?: (w: World) => void }[] = [
      { spec: 'vCPU 0, offset 0: link_bits 17', arg: { control_gfn: 0, offset: 0, vcpu: 0 }, expect: 'record' },
      { spec: 'the last offset that fits the page (4096 - 72)', arg: { control_gfn: 0, offset: 4024, vcpu: 0 }, expect: 'record' },
      { spec: '-EINVAL: crossing the page', arg: { control_gfn: 0, offset: 4032, vcpu: 0 }, expect: '-EINVAL' },
      { spec: '-EINVAL: not 8-byte aligned', arg: { control_gfn: 0, offset: 4, vcpu: 0 }, expect: '-EINVAL' },
      { spec: '-ENOENT: no such vCPU', arg: { control_gfn: 0, offset: 0, vcpu: 1 }, expect: '-ENOENT' },
      { spec: '-EINVAL: a gfn the caller has no page at', arg: { control_gfn: 5000, offset: 0, vcpu: 0 }, expect: '-EINVAL' },
      {
        spec: '-EINVAL: the vCPU already has its control block', arg: { control_gfn: 0, offset: 0, vcpu: 0 }, expect: '-EINVAL',
        before: (w) => void ok(w.ec.dispatch(w.fifo, EvtchnOp.EVTCHNOP_init_control, { control_gfn: 0, offset: 0, vcpu: 0 })),
      },
      { spec: '-EFAULT: an offset that is no uint32', arg: { control_gfn: 0, offset: -8, vcpu: 0 }, expect: '-EFAULT' },
    ];
    for (const row of rows) {
      it(row.spec, () => {
        const w = world();
        row.before?.(w);
        const r = w.ec.dispatch(w.fifo, EvtchnOp.EVTCHNOP_init_control, row.arg);
        assert.equal(rc(r), row.expect);
        if (row.expect === 'record') assert.equal((r as { link_bits: number }).link_bits, 17);
      });
    }

    it('switches only the caller: 4096 ports stay the limit of a 2-level domain', () => {
      const w = world();
      switchToFifo(w);
      assert.equal(w.ec.isFifo(w.fifo), true);
      assert.equal(w.ec.isFifo(w.peer), false);
      for (let i = 1; i < 4096; i++) ok(w.ec.bindIpi(w.peer, { vcpu: 0 }));
      assert.equal(rc(w.ec.bindIpi(w.peer, { vcpu: 0 })), '-ENOSPC');
    });
  });

  describe('EVTCHNOP_expand_array and the port limit', () => {
    it('-EOPNOTSUPP before init_control; -EINVAL for a page the caller lacks', () => {
      const w = world();
      assert.equal(rc(w.ec.dispatch(w.fifo, EvtchnOp.EVTCHNOP_expand_array, { array_gfn: 1 })), '-EOPNOTSUPP');
      switchToFifo(w, 0);
      assert.equal(rc(w.ec.dispatch(w.fifo, EvtchnOp.EVTCHNOP_expand_array, { array_gfn: 9999 })), '-EINVAL');
    });

    it('a FIFO domain binds every port below 1 << 17, then -ENOSPC; 128 pages, then -ENOSPC', () => {
      const w = world();
      switchToFifo(w, 128);
      let last = 0;
      for (;;) {
        const r = w.ec.bindIpi(w.fifo, { vcpu: 0 });
        if (typeof r === 'number') {
          assert.equal(rc(r), '-ENOSPC');
          break;
        }
        last = r.port;
      }
      assert.equal(last, EVTCHN_FIFO_NR_CHANNELS - 1);
      assert.equal(rc(expand(w)), '-ENOSPC');
    });

    it('beyond 1024 ports: a port sent to before its page exists goes pending when the page comes', () => {
      const w = world();
      switchToFifo(w, 1);
      for (let i = 1; i < 1500; i++) ok(w.ec.bindIpi(w.fifo, { vcpu: 0 }));
      const { local } = channel(w);
      assert.equal(local, 1500);
      // bind_interdomain leaves the peer's port pending; this one had no word yet.
      assert.equal(send(w, w.peer, 1), 'no-array-page');
      assert.equal(upcall(w.fifo), 0);
      assert.equal(expand(w), 0);
      assert.equal(bits(word(w, 1500)), 'PL');
      assert.equal(head(w, EVTCHN_FIFO_PRIORITY_DEFAULT), 1500);
      assert.equal(upcall(w.fifo), 1);
      assert.deepEqual(handle(w), [1500]);
    });

    it('a port pending under 2-level is pending again under FIFO once its page is added', () => {
      const w = world();
      const { remote } = channel(w);
      assert.equal(send(w, w.peer, remote), 'upcall');
      w.fifo.sharedInfo!.bytes[0] = 0;
      switchToFifo(w, 1);
      assert.equal(bits(word(w, 1)), 'PL');
      assert.deepEqual(handle(w), [1]);
    });
  });

  describe('EVTCHNOP_set_priority', () => {
    const rows: { spec: string; fifo: boolean; arg: { port: number; priority: number }; expect: string }[] = [
      { spec: '-ENOSYS on the 2-level ABI', fifo: false, arg: { port: 1, priority: 0 }, expect: '-ENOSYS' },
      { spec: 'priority 0 (the highest)', fifo: true, arg: { port: 1, priority: 0 }, expect: '0' },
      { spec: 'priority 15 (the lowest)', fifo: true, arg: { port: 1, priority: 15 }, expect: '0' },
      { spec: '-EINVAL: priority 16', fifo: true, arg: { port: 1, priority: 16 }, expect: '-EINVAL' },
      { spec: '-EINVAL: a port past the table', fifo: true, arg: { port: 4000, priority: 3 }, expect: '-EINVAL' },
    ];
    for (const row of rows) {
      it(row.spec, () => {
        const w = world();
        if (row.fifo) switchToFifo(w);
        ok(w.ec.bindIpi(w.fifo, { vcpu: 0 }));
        assert.equal(rc(w.ec.dispatch(w.fifo, EvtchnOp.EVTCHNOP_set_priority, row.arg)), row.expect);
      });
    }
  });

  describe('send, mask, unmask: the event word and the queues', () => {
    // Each row: the steps (s = the peer sends on channel i; m/u = the guest masks/unmasks it in
    // its word; U = EVTCHNOP_unmask; h = the guest's upcall), then the words, READY, heads and
    // what the handler saw.
    type Step = `s${number}` | `m${number}` | `u${number}` | `U${number}` | 'h' | `p${number}:${number}`;
    const rows: { spec: string; steps: Step[]; words: string[]; ready?: number; handled?: number[]; deliveries?: string[] }[] = [
      {
        spec: 'a send links the port as head of its queue, sets READY and the upcall',
        steps: ['s0'], words: ['PL', '-', '-'], ready: 1 << 7, deliveries: ['upcall'],
      },
      {
        spec: 'a second send of a linked port changes nothing',
        steps: ['s0', 's0'], words: ['PL', '-', '-'], deliveries: ['upcall', 'already-linked'],
      },
      {
        spec: 'sends on three ports link them in order: LINK of each names the next',
        steps: ['s0', 's1', 's2'], words: ['PL>2', 'PL>3', 'PL'], deliveries: ['upcall', 'linked-to-tail', 'linked-to-tail'],
      },
      {
        spec: 'the upcall takes them in the order they were linked, clearing PENDING and LINKED',
        steps: ['s2', 's0', 's1', 'h'], words: ['-', '-', '-'], ready: 0, handled: [3, 1, 2],
      },
      {
        spec: 'a masked port goes pending but is not linked',
        steps: ['m0', 's0'], words: ['PM', '-', '-'], ready: 0, deliveries: ['masked'],
      },
      {
        spec: 'EVTCHNOP_unmask of a pending port links it and raises the upcall',
        steps: ['m0', 's0', 'U0'], words: ['PL', '-', '-'], ready: 1 << 7,
      },
      {
        spec: 'the guest clears MASKED itself when nothing is pending (no hypercall needed)',
        steps: ['m0', 'u0', 's0', 'h'], words: ['-', '-', '-'], handled: [1],
      },
      {
        spec: 'a port masked after it was linked is unlinked by the upcall but not handled',
        steps: ['s0', 's1', 'm0', 'h'], words: ['PM', '-', '-'], handled: [2],
      },
      {
        spec: 'priority order: 0 before 7 before 15, whatever the order of the sends',
        steps: ['p0:15', 'p1:7', 'p2:0', 's0', 's1', 's2', 'h'], words: ['-', '-', '-'], handled: [3, 2, 1],
      },
      {
        spec: 'each priority has its own queue and READY bit',
        steps: ['p0:15', 'p2:0', 's0', 's1', 's2'], words: ['PL', 'PL', 'PL'], ready: (1 << 15) | (1 << 7) | 1,
      },
      {
        spec: 'after the queue drained, the stale tail is not linked to: the next send is a new head',
        steps: ['s0', 'h', 's1'], words: ['-', 'PL', '-'], ready: 1 << 7, handled: [1],
      },
    ];
    for (const row of rows) {
      it(row.spec, () => {
        const w = world();
        switchToFifo(w, 1, { masked: true });
        const ch = [channel(w), channel(w), channel(w)];
        for (const c of ch) {
          // Linux's unmask on bind; bind_interdomain's own pending of the peer's port is not ours.
          assert.equal(w.guest!.state.guestUnmaskNeedsHypercall(c.local), false);
        }
        const deliveries: string[] = [];
        let handled: number[] = [];
        for (const st of row.steps) {
          const i = Number(st.slice(1).split(':')[0]);
          if (st.startsWith('s')) deliveries.push(String(send(w, w.peer, ch[i].remote)));
          else if (st.startsWith('m')) w.guest!.state.guestMask(ch[i].local);
          else if (st.startsWith('u')) assert.equal(w.guest!.state.guestUnmaskNeedsHypercall(ch[i].local), false);
          else if (st.startsWith('U')) assert.equal(w.ec.unmask(w.fifo, { port: evtchnPort(ch[i].local) }), 0);
          else if (st.startsWith('p')) assert.equal(w.ec.dispatch(w.fifo, EvtchnOp.EVTCHNOP_set_priority, { port: ch[i].local, priority: Number(st.split(':')[1]) }), 0);
          else handled = handled.concat(handle(w));
        }
        assert.deepEqual(ch.map((c) => bits(word(w, c.local))), row.words);
        if (row.ready !== undefined) assert.equal(ready(w), row.ready);
        if (row.handled) assert.deepEqual(handled, row.handled);
        if (row.deliveries) assert.deepEqual(deliveries, row.deliveries);
        assert.equal(w.ec.lostWakeup(w.fifo), undefined);
      });
    }

    it('a priority changed while linked applies to the next event only', () => {
      const w = world();
      switchToFifo(w);
      const a = channel(w);
      send(w, w.peer, a.remote);
      assert.equal(head(w, 7), a.local);
      assert.equal(w.ec.dispatch(w.fifo, EvtchnOp.EVTCHNOP_set_priority, { port: a.local, priority: 2 }), 0);
      assert.deepEqual(handle(w), [a.local]);
      send(w, w.peer, a.remote);
      assert.equal(head(w, 2), a.local);
      assert.equal(ready(w), 1 << 2);
    });

    it('a port that moved to another queue is no longer its old queue\'s tail (no event goes down the wrong queue)', () => {
      const w = world();
      switchToFifo(w);
      const a = channel(w);
      const b = channel(w);
      send(w, w.peer, a.remote);
      assert.deepEqual(handle(w), [a.local]);
      assert.equal(w.ec.dispatch(w.fifo, EvtchnOp.EVTCHNOP_set_priority, { port: a.local, priority: 2 }), 0);
      send(w, w.peer, a.remote);
      send(w, w.peer, b.remote);
      assert.equal(bits(word(w, a.local)), 'PL');
      assert.equal(head(w, 7), b.local);
      assert.equal(ready(w), (1 << 2) | (1 << 7));
      assert.deepEqual(handle(w), [a.local, b.local]);
    });
  });

  describe('every guest byte is hostile', () => {
    it('a guest that clears LINKED of its tail under Xen gets the next event as a new head', () => {
      const w = world();
      switchToFifo(w);
      const a = channel(w);
      const b = channel(w);
      send(w, w.peer, a.remote);
      w.fifo.sharedInfo!.bytes[0] = 0;
      setWord(w, a.local, word(w, a.local) & ~L);
      assert.equal(send(w, w.peer, b.remote), 'ready-already-set');
      assert.equal(head(w, 7), b.local);
    });

    it('a guest that rewrites its tail word without end cannot keep Xen linking (BUSY, then gives up)', () => {
      const w = world();
      switchToFifo(w);
      const a = channel(w);
      const b = channel(w);
      send(w, w.peer, a.remote);
      // Every read of the tail word sees a value the guest has just changed: a compare-exchange
      // against it never succeeds.
      const arr = w.guest!.state.array[0];
      const realCas = Atomics.compareExchange;
      let flips = 0;
      (Atomics as { compareExchange: typeof Atomics.compareExchange }).compareExchange = ((t: Int32Array, i: number, e: number, r: number) => {
        if (t.buffer === arr.buffer && i === a.local + (arr.byteOffset / 4) - (t.byteOffset / 4)) {
          flips++;
          Atomics.xor(t, i, 1 << 20);
        }
        return realCas(t, i, e, r);
      }) as typeof Atomics.compareExchange;
      try {
        assert.equal(send(w, w.peer, b.remote), 'linked-to-tail');
      } finally {
        (Atomics as { compareExchange: typeof Atomics.compareExchange }).compareExchange = realCas;
      }
      assert.equal(flips, 5);
      assert.equal(word(w, a.local) & B, 0, 'BUSY dropped again');
    });

    it('a LINKED port that is closed is busy: not reused until the guest unlinks it', () => {
      const w = world();
      switchToFifo(w);
      const a = channel(w);
      send(w, w.peer, a.remote);
      assert.equal(w.ec.close(w.fifo, { port: evtchnPort(a.local) }), 0);
      const next = ok(w.ec.bindIpi(w.fifo, { vcpu: 0 })).port;
      assert.notEqual(next, a.local);
      assert.deepEqual(handle(w), []);
      assert.equal(ok(w.ec.bindIpi(w.fifo, { vcpu: 0 })).port, a.local);
    });

    it('a READY bit without a head, or a head past the array, is skipped by the consumer', () => {
      const w = world();
      switchToFifo(w);
      const cb = page(w.fifo, 0);
      cb.setUint32(EvtchnFifoControlBlock.ready, (1 << 3) | (1 << 4), true);
      cb.setUint32(EvtchnFifoControlBlock.head + 4 * 4, 99999, true);
      w.fifo.sharedInfo!.bytes[0] = 1;
      assert.deepEqual(handle(w), []);
    });
  });

  describe('the fast path (a sender linking in its own thread)', () => {
    it('links exactly as the hypervisor does, under the same lock, and traps for a page it lacks', () => {
      const w = world();
      switchToFifo(w, 1);
      const a = channel(w);
      const b = channel(w);
      const share = w.ec.fifoShare(w.fifo)!;
      const sender = new PeerSharedInfo(w.fifo.sharedInfo!.sab, undefined, share);
      assert.equal(setPendingFast(sender, a.local), 'upcall');
      assert.equal(send(w, w.peer, b.remote), 'linked-to-tail');
      assert.equal(bits(word(w, a.local)), `PL>${b.local}`);
      // The guest grows its array; the sender's copy does not have page 2 yet.
      for (let i = b.local + 1; i < 1100; i++) ok(w.ec.bindIpi(w.fifo, { vcpu: 0 }));
      const c = channel(w);
      assert.ok(c.local >= 1024);
      assert.equal(expand(w), 0);
      assert.equal(setPendingFast(sender, c.local), undefined);
      // Its tail is now on page 2: a send on page 1 cannot link behind it without that page.
      handle(w);
      assert.equal(send(w, w.peer, c.remote), 'upcall');
      assert.equal(setPendingFast(sender, a.local), undefined);
      assert.deepEqual(handle(w), [c.local]);
    });
  });

  it('two sender threads and the hypervisor link concurrently while the guest consumes: no event lost', async function () {
    const w = world();
    switchToFifo(w, 1);
    const ports: number[] = [];
    for (let i = 0; i < 300; i++) ports.push(ok(w.ec.bindIpi(w.fifo, { vcpu: 0 })).port);
    const share = w.ec.fifoShare(w.fifo)!;
    const sent = new Int32Array(new SharedArrayBuffer(1024 * 4));
    const handled = new Int32Array(1024);
    const preload = fileURLToPath(new URL('../../scripts/tsx-preload.mjs', import.meta.url));
    const execArgv = process.execArgv.some((a) => a.includes('tsx-preload')) ? process.execArgv : [...process.execArgv, '--import', preload];
    const workers = [1, 2].map((seed) => new Worker(new URL('../helpers/fifo-sender.ts', import.meta.url), {
      execArgv,
      workerData: { sharedInfo: w.fifo.sharedInfo!.sab, share, ports, sends: 20_000, seed, sent: sent.buffer },
    }));
    const finished = workers.map((wk) => new Promise<void>((resolve, reject) => {
      wk.on('error', reject);
      wk.on('message', () => resolve());
    }));
    let running = true;
    void Promise.all(finished).finally(() => (running = false));
    let seed = 99;
    const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    // The guest's upcall and the hypervisor's own sends (IPIs) interleave with the threads' links.
    while (running) {
      for (let i = 0; i < 20; i++) {
        const p = ports[rand(ports.length)];
        Atomics.add(sent, p, 1);
        assert.equal(w.ec.send(w.fifo, { port: evtchnPort(p) }), 0);
      }
      w.guest!.consumer.handleEvents((p) => handled[p]++);
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(finished);
    await Promise.all(workers.map((wk) => wk.terminate()));
    w.guest!.consumer.handleEvents((p) => handled[p]++);
    assert.equal(w.ec.lostWakeup(w.fifo), undefined);
    for (const p of ports) {
      assert.equal(bits(word(w, p)), '-', `port ${p} left on a queue or pending`);
      // Sends to a port already pending coalesce, so a port is handled at most as often as sent.
      if (sent[p] > 0) assert.ok(handled[p] >= 1 && handled[p] <= sent[p], `port ${p}: sent ${sent[p]}, handled ${handled[p]}`);
    }
  });

  it('the trace names the FIFO hypercalls with their IN fields', () => {
    const w = world();
    switchToFifo(w, 1);
    assert.deepEqual(
      w.trace.filter((e) => e.op.startsWith('EVTCHNOP_')).map((e) => [e.op, e.domid, e.result, e.args]),
      [['EVTCHNOP_init_control', 1, 0, { control_gfn: 0, offset: 0, vcpu: 0 }], ['EVTCHNOP_expand_array', 1, 0, { array_gfn: 1 }]],
    );
  });
});
