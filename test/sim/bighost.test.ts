// A host beyond 4096 event channels: dom0 runs the FIFO ABI (as a Linux dom0 does), so guests
// whose store channels land on dom0 ports past the 2-level limit work; and when dom0's ports do
// run out, that one create fails with Xen's error (ENOSPC) while the host goes on serving.
//
// Building thousands of guests costs minutes (the bench's `bighost` section does it); here the
// ports those guests would hold in dom0 are taken by IPIs bound in dom0's name through the
// hypervisor's own entry point, so a guest created next gets the ports past them.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { XsHandle } from '../../domains/libs/store/xs.ts';
import type { WorkloadArgs } from '../../domains/domU/xenstore-workload.ts';
import { CreateGuestError, HostRuntime } from '../../sim/host-runtime.ts';
import { EVTCHN_FIFO_NR_CHANNELS } from '../../hypervisor/public/event_fifo.ts';
import { evtchnPort } from '../../hypervisor/public/event_channel.ts';

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
