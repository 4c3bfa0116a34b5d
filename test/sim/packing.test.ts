// Packing: many guests share a fixed pool of threads behind the same kernel API; each still has
// its own pages, event channels and xenstore ring, and is served as if it had a thread alone.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { XsHandle } from '../../domains/libs/store/xs.ts';
import { DomainThread } from '../../hypervisor/domain-thread.ts';
import type { ControlPort } from '../../hypervisor/public/vcpu.ts';
import type { WorkloadArgs } from '../../domains/domU/xenstore-workload.ts';
import { EvtchnOp } from '../../hypervisor/public/event_channel.ts';
import { Hypercall } from '../../hypervisor/public/xen.ts';
import { HostRuntime } from '../../sim/host-runtime.ts';

const WORKLOAD = new URL('../../domains/domU/xenstore-workload.ts', import.meta.url).href;

interface Done { cmd: string; domid: number; results: unknown[]; retries: number }

function done(port: ControlPort): Promise<Done> {
  return new Promise((resolve) => {
    const on = (m: Done): void => {
      if (m.cmd === 'done') resolve(m);
    };
    port.on('message', on);
  });
}

describe('packing: guests on a shared pool of vCPU threads', function () {

  it('60 guests on 2 threads each do 10 xenstore operations through their own ring', async () => {
    const rt = new HostRuntime({ pool: 2, seed: 3 });
    const dir = mkdtempSync(path.join(tmpdir(), 'xensim-pack-'));
    const sock = path.join(dir, 'xs.sock');
    try {
      await rt.bootDom0({ socketPath: sock });
      await rt.toolstackWrite('/shared', '0', ['b0']);
      const finished: Promise<Done>[] = [];
      for (let id = 1; id <= 60; id++) {
        const args: WorkloadArgs = {
          ops: [['writes', 'data/k', 8], ['read', 'data/k'], ['txIncrement', '/shared', 1]],
        };
        await rt.createGuest({ domid: id, program: { module: WORKLOAD, args } });
        finished.push(done(rt.control(id)));
      }
      const results = await Promise.all(finished);
      for (const r of results) assert.deepEqual(r.results, ['OK', '7', 'OK'], `domain ${r.domid}`);
      // Every guest's transactional increment landed once, whatever the conflicts.
      const xs = await XsHandle.open(sock);
      try {
        assert.equal((await xs.read('/shared')).toString(), '60');
      } finally {
        await xs.close();
      }
      assert.deepEqual([...rt.vcpus].filter(([, v]) => v instanceof DomainThread).map(([id]) => id), [0], 'only dom0 has a thread of its own');
    } finally {
      await rt.shutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('event-channel sends to and from packed guests run in the sender\'s thread and ring the pool\'s doorbell', async () => {
    const rt = new HostRuntime({ pool: 1, seed: 5 });
    // Count the EVTCHNOP_send hypercalls that trapped to this thread.
    let trapped = 0;
    const call = rt.hypercalls.call;
    rt.hypercalls.call = (domid, op, args) => {
      if (op === Hypercall.__HYPERVISOR_event_channel_op && (args as { cmd: number }).cmd === EvtchnOp.EVTCHNOP_send) trapped++;
      return call.call(rt.hypercalls, domid, op, args);
    };
    try {
      await rt.bootDom0();
      const guests = [1, 2, 3, 4];
      const finished: Promise<Done>[] = [];
      for (const id of guests) {
        const args: WorkloadArgs = { ops: [['writes', 'data/k', 20], ['read', 'data/k']] };
        await rt.createGuest({ domid: id, program: { module: WORKLOAD, args } });
        finished.push(done(rt.control(id)));
      }
      for (const r of await Promise.all(finished)) assert.deepEqual(r.results, ['OK', '19'], `domain ${r.domid}`);
      let guestSends = 0;
      for (const id of guests) guestSends += rt.vcpu(id)!.stats()!.sends;
      assert.ok(guestSends >= 4 * 21, `guest sends: ${guestSends}`);
      // Only a sender's first send on a channel traps (it is handed the peer's shared_info and,
      // for a packed peer, the doorbell of its pool thread): one per guest and one from dom0 per guest.
      assert.ok(trapped <= 2 * guests.length, `trapped sends: ${trapped} of ${guestSends} by the guests`);
    } finally {
      rt.hypercalls.call = call;
      await rt.shutdown();
    }
  });
});
