// A host beyond 4096 event channels: dom0 runs the FIFO ABI (as a Linux dom0 does), so guests
// whose store channels land on dom0 ports past the 2-level limit work; and when dom0's ports do
// run out, that one create fails with Xen's error (ENOSPC) while the host goes on serving.
// Domids run out before FIFO ports do: Xen has 32,751 for guests; past them createdomain fails
// with -ENOMEM, xl says libxl's "domain creation fail", and the host goes on; a host config
// asking for more guests than that is refused before anything boots.
//
// Building thousands of guests costs minutes (the bench's `bighost` section does it); here the
// ports those guests would hold in dom0 are taken by IPIs bound in dom0's name through the
// hypervisor's own entry point, so a guest created next gets the ports past them; and the domids
// they would hold are taken in the hypervisor's allocator (32,751 domains cost seconds).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { XsHandle } from '../../domains/libs/store/xs.ts';
import type { WorkloadArgs } from '../../domains/domU/xenstore-workload.ts';
import { CreateGuestError, HostRuntime } from '../../sim/host-runtime.ts';
import { EVTCHN_FIFO_NR_CHANNELS } from '../../hypervisor/public/event_fifo.ts';
import { evtchnPort } from '../../hypervisor/public/event_channel.ts';
import { DomidAllocator, GUEST_DOMIDS } from '../../hypervisor/domain.ts';
import { EventChannels } from '../../hypervisor/event-channel.ts';
import { GrantTables } from '../../hypervisor/grant-table.ts';
import { Host } from '../../hypervisor/host.ts';
import { Hypercalls } from '../../hypervisor/hypercall.ts';
import { Domctl } from '../../hypervisor/public/domctl.ts';
import { DOMID_FIRST_RESERVED, Errno, Hypercall } from '../../hypervisor/public/xen.ts';
import { ConfigError, parseHostConfig, tooManyGuests } from '../../sim/config.ts';
import { CreateError } from '../../sim/xl.ts';
import { bootHost, tree } from '../helpers/host.ts';
import { XsdSockmsgType } from '../../hypervisor/public/io/xs_wire.ts';

const WORKLOAD = new URL('../../domains/domU/xenstore-workload.ts', import.meta.url).href;

interface Done { cmd: string; domid: number; results: unknown[] }

function done(rt: HostRuntime, domid: number): Promise<Done> {
  return new Promise((resolve) => rt.control(domid).on('message', (m: Done) => m.cmd === 'done' && resolve(m)));
}

/** Takes dom0's free ports (IPIs) until `upTo` is in use, or until none is left; returns the last. */
function takeDom0Ports(rt: HostRuntime, upTo = Infinity): number {
  const dom0 = rt.host.domains.get(0)!;
  let last = 0;
  while (last < upTo) {
    const r = rt.evtchn.bindIpi(dom0, { vcpu: 0 });
    if (typeof r === 'number') break;
    last = r.port;
  }
  return last;
}

describe('a host beyond 4096 event channels (FIFO dom0)', function () {

  it('lockstep: guests whose store channels are dom0 ports past 4096 do their xenstore work', async () => {
    const rt = new HostRuntime({ seed: 7, mode: 'lockstep', inline: true, trace: true });
    try {
      await rt.bootDom0();
      assert.equal(rt.evtchn.isFifo(rt.host.domains.get(0)!), true, 'dom0 switched to FIFO at boot');
      assert.equal(takeDom0Ports(rt, 4200), 4200);
      const args: WorkloadArgs = { ops: [['writes', 'data/k', 5], ['read', 'data/k']] };
      const finished: Promise<Done>[] = [];
      for (const id of [1, 2]) {
        await rt.createGuest({ domid: id, paused: true, program: { module: WORKLOAD, args } });
        finished.push(done(rt, id));
      }
      await rt.unpause(1, 2);
      for (const r of await Promise.all(finished)) assert.deepEqual(r.results, ['OK', '4'], `domain ${r.domid}`);
      await rt.quiesce();
      const binds = rt.trace.filter((e) => e.kind === 'evtchn' && e.op === 'EVTCHNOP_bind_interdomain' && e.domid === 0 && e.result === 0);
      assert.deepEqual(binds.map((e) => (e as { port?: number }).port), [4201, 4202]);
      const pages = rt.trace.filter((e) => e.kind === 'evtchn' && e.op === 'EVTCHNOP_expand_array' && e.domid === 0 && e.result === 0);
      assert.equal(pages.length, 5, 'dom0 grew its event array to cover port 4202 (five pages of 1024)');
      for (const d of rt.host.domains.values()) assert.equal(rt.evtchn.lostWakeup(d), undefined, `domain ${d.domid}`);
    } finally {
      await rt.shutdown();
    }
  });

  for (const abi of ['fifo', '2l'] as const) {
    const limit = abi === 'fifo' ? EVTCHN_FIFO_NR_CHANNELS - 1 : 4095;
    it(`dom0 on ${abi}: when its ${limit} ports are taken, that create fails with ENOSPC and the host goes on`, async () => {
      const rt = new HostRuntime({ seed: 3, pool: 1 });
      const dir = mkdtempSync(path.join(tmpdir(), 'xensim-bighost-'));
      const sock = path.join(dir, 'xs.sock');
      try {
        await rt.bootDom0({ socketPath: sock, evtchn: abi });
        const args: WorkloadArgs = { ops: [['writes', 'data/k', 3]] };
        await rt.createGuest({ domid: 1, program: { module: WORKLOAD, args } });
        assert.deepEqual((await done(rt, 1)).results, ['OK']);
        assert.equal(takeDom0Ports(rt), limit);

        await assert.rejects(rt.createGuest({ domid: 2, program: { module: WORKLOAD, args } }), (e: unknown) => {
          assert.ok(e instanceof CreateGuestError);
          assert.equal(e.errno, 'ENOSPC');
          assert.match(e.message, /^domain 2: XS_INTRODUCE failed: ENOSPC \(no event channel left in dom0/);
          return true;
        });
        // Nothing of domain 2 is left; dom0 and domain 1 are still served.
        assert.equal(rt.host.domains.get(2)?.runState ?? 'gone', 'gone');
        const xs = await XsHandle.open(sock);
        try {
          assert.equal(await xs.read('/local/domain/2').then(() => 'there', (e: Error) => e.message), 'READ: ENOENT');
          assert.equal((await xs.read('/local/domain/1/data/k')).toString(), '2');
          await xs.write('/still-up', 'yes');
        } finally {
          await xs.close();
        }
        // A port freed is a guest created.
        assert.equal(rt.evtchn.close(rt.host.domains.get(0)!, { port: evtchnPort(limit) }), 0);
        await rt.createGuest({ domid: 3, program: { module: WORKLOAD, args } });
        assert.deepEqual((await done(rt, 3)).results, ['OK']);
      } finally {
        await rt.shutdown();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('a host out of domain ids', function () {
  /** Takes every free domid in the hypervisor's allocator, as that many domains would. */
  function takeDomids(ids: DomidAllocator): number {
    let n = 0;
    for (let id = 1; id < DOMID_FIRST_RESERVED; id++) if (ids.claim(id) !== undefined) n++;
    return n;
  }

  it("Xen's allocator: 32,751 ids for guests from 1 up, then none; an id freed is found again past where it left off", () => {
    assert.equal(GUEST_DOMIDS, 32_751);
    const ids = new DomidAllocator();
    const got: number[] = [];
    for (let id = ids.allocate(); id !== undefined; id = ids.allocate()) got.push(id);
    assert.equal(got.length, GUEST_DOMIDS);
    assert.deepEqual([got[0], got.at(-1)], [1, 0x7fef]);
    assert.ok(got.every((id, i) => id === i + 1), 'each id once, in order');
    ids.release(100);
    assert.equal(ids.allocate(), 100, 'the search wraps round to the freed id');
    assert.equal(ids.allocate(), undefined);
  });

  it('XEN_DOMCTL_createdomain with every domid in use: -ENOMEM for "any id" (also DOMID_INVALID, as libxl asks), -EEXIST for a given one', () => {
    const h = new Host();
    h.createDomain({ domid: 0, privileged: true });
    const hc = new Hypercalls(h, new EventChannels(h), new GrantTables(h));
    const create = (domid?: number): unknown => hc.call(0, Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_createdomain, domid }).ret;
    const first = create() as { domid: number };
    assert.equal(first.domid, 1);
    assert.equal(takeDomids(h.domids), GUEST_DOMIDS - 1);
    assert.equal(create(), -Errno.ENOMEM);
    assert.equal(create(0x7ff4), -Errno.ENOMEM, 'DOMID_INVALID asks Xen to choose');
    assert.equal(create(7), -Errno.EEXIST);
    assert.deepEqual([...h.domains.keys()], [0, 1], 'no domain made by the failed calls');
    // A domain that goes gives its id back.
    assert.equal(hc.call(0, Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_destroydomain, domain: 1 }).ret, 0);
    assert.deepEqual(create(), { domid: 1 });
  });

  it('xl create with every domid in use fails as libxl says it (domain creation fail, -ENOMEM), leaves nothing, and the host goes on', async () => {
    const { rt, xl } = await bootHost(5);
    try {
      const first = await xl.create({ name: 'first' });
      assert.equal(first, 1);
      assert.equal(takeDomids(rt.host.domids), GUEST_DOMIDS - 1);
      const before = await tree(xl);
      for (const name of ['second', 'third']) {
        await assert.rejects(xl.create({ name }), (e: unknown) => {
          assert.ok(e instanceof CreateError);
          assert.equal(e.message, `xl create: ${name}: domain creation fail: createdomain: -ENOMEM (no free domid: all 32751 below DOMID_FIRST_RESERVED are in use)`);
          return true;
        });
      }
      assert.deepEqual(await tree(xl), before, 'xenstore as it was');
      assert.deepEqual(xl.list().map((r) => r.name), ['Domain-0', 'first']);
      assert.deepEqual(xl.errors, []);
      // The guest there still works, and its id, once Xen frees it, is the next guest's.
      const read = await xl.guest<{ payload: string }>(first, { cmd: 'xs', type: XsdSockmsgType.XS_READ, payload: 'name\0' });
      assert.equal(read.payload, 'first', 'the guest reads its name through its ring');
      await xl.destroy(first);
      await xl.settled();
      assert.equal(rt.host.domains.has(first), false, 'domain 1 freed');
      assert.equal(await xl.create({ name: 'again' }), first);
    } finally {
      await rt.shutdown();
    }
  });

  it('a host config of 40,000 guests is refused before anything boots, in one line naming the limit', () => {
    assert.equal(tooManyGuests(GUEST_DOMIDS), undefined);
    assert.match(tooManyGuests(GUEST_DOMIDS + 1) ?? '', /^32752 guests, but a Xen host has 32751 domids/);
    assert.equal(tooManyGuests(GUEST_DOMIDS - 1, 1), undefined, 'with a xenstore domain beside them');
    assert.match(tooManyGuests(GUEST_DOMIDS, 1) ?? '', /^32751 guests besides 1 other domain, but a Xen host has 32750 domids/);
    const text = `mode: free\nguests:\n${Array.from({ length: 40_000 }, (_, i) => `  - name: g${i + 1}\n`).join('')}`;
    assert.throws(() => parseHostConfig(text, 'h.yaml'), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.message, "h.yaml:3: guests: 40000 guests, but a Xen host has 32751 domids for them (1 to 32751: 0 is dom0's, DOMID_FIRST_RESERVED is 0x7ff0)");
      return true;
    });
  });
});
