// Power control through the PV control node (spec 5.4-5.6): xl shutdown poweroff, reboot and
// suspend/resume each end with exactly the expected xenstore tree - no orphan nodes, no leftover
// backend directories - and a guest that never answers is left running until xl destroy. The
// guest has two disks and one NIC; every spec runs in inline lockstep under several seeds.
import assert from 'node:assert/strict';
import { configUuid } from '../../domains/dom0/toolstack/config.ts';
import { BlkifRsp } from '../../hypervisor/public/io/blkif.ts';
import { SchedOp } from '../../hypervisor/public/sched.ts';
import { XenbusState } from '../../hypervisor/public/io/xenbus.ts';
import type { TraceEvent } from '../../sim/host-runtime.ts';
import { bootHost, SEEDS, tree, treeDiff } from '../helpers/host.ts';
import {
  assertBaseline, assertConnected, assertGone, DEVICES, domainNodes, twoDisksOneNic, value, XVDB,
} from '../helpers/toolstack.ts';

/** Index in `trace` of the first event matching `pred` at or after `from` (-1: none). */
const find = (trace: TraceEvent[], pred: (e: TraceEvent) => boolean, from = 0): number => {
  const i = trace.slice(from).findIndex(pred);
  return i < 0 ? -1 : from + i;
};

const isSchedShutdown = (domid: number) => (e: TraceEvent): boolean =>
  e.kind === 'hypercall' && e.domid === domid && e.op === '__HYPERVISOR_sched_op' && e.cmd === SchedOp.SCHEDOP_shutdown;

/**
 * The guest's ack: in one transaction it writes "" to its control/shutdown and commits. Returns
 * the index of the successful commit.
 */
function ackCommit(trace: TraceEvent[], domid: number, from: number): number {
  const write = find(trace, (e) => e.kind === 'xenstore' && e.dir === 'IN' && e.domid === domid && e.type === 'WRITE'
    && e.payload === 'control/shutdown\\0', from);
  if (write < 0) return -1;
  const tx = trace[write].tx_id;
  return find(trace, (e) => e.kind === 'xenstore' && e.dir === 'OUT' && e.domid === domid && e.type === 'TRANSACTION_END'
    && e.tx_id === tx && e.payload === 'OK\\0', write);
}

/** libxl read "" back from the node after its request (the ack it waits for). */
function toolstackSawAck(trace: TraceEvent[], domid: number, from: number): number {
  const node = `/local/domain/${domid}/control/shutdown\\0`;
  for (let i = from; i < trace.length; i++) {
    const e = trace[i];
    if (e.kind !== 'xenstore' || e.domid !== 0 || e.dir !== 'IN' || e.type !== 'READ' || e.payload !== node || e.tx_id !== 0) continue;
    const out = find(trace, (o) => o.kind === 'xenstore' && o.dir === 'OUT' && o.conn === e.conn && o.req_id === e.req_id && o.type === 'READ', i);
    if (out >= 0 && trace[out].payload === '') return out;
  }
  return -1;
}

describe('toolstack: shutdown, reboot, suspend/resume', function () {

  for (const seed of SEEDS) {
    describe(`seed ${seed}`, () => {
      it('shutdown poweroff -w: the guest acks, powers off, and the tree is exactly the boot tree (plus libxl\'s empty /vm and /libxl)', async () => {
        const { rt, xl, trace } = await bootHost(seed);
        try {
          const base = await tree(xl);
          const id = await xl.create(twoDisksOneNic('pw'));
          await rt.quiesce();
          await assertConnected(xl, id);
          const mark = trace.length;

          assert.deepEqual(await xl.shutdown(id, 'poweroff', { wait: true }), { acked: true });

          // The request went in, the guest acked with "" before it died, libxl read the "" back.
          const request = find(trace, (e) => e.kind === 'xenstore' && e.domid === 0 && e.dir === 'IN' && e.type === 'WRITE'
            && e.payload === `/local/domain/${id}/control/shutdown\\0poweroff`, mark);
          assert.ok(request >= 0, 'libxl wrote poweroff');
          const ack = ackCommit(trace, id, request);
          assert.ok(ack > request, 'the guest committed its "" ack');
          assert.ok(toolstackSawAck(trace, id, ack) > ack, 'libxl read "" back');
          const sched = find(trace, isSchedShutdown(id), mark);
          assert.ok(sched > ack, 'SCHEDOP_shutdown came after the ack');
          // Orderly: every frontend went Closing then Closed before the guest shut down.
          for (const [kind, devid] of DEVICES) {
            const fe = trace.slice(mark, sched).filter((e) => e.kind === 'xenbus' && e.role === 'frontend' && e.domid === id
              && e.device === `${kind}/${devid}`).map((e) => e.state);
            assert.deepEqual(fe, [XenbusState.XenbusStateClosing, XenbusState.XenbusStateClosed], `${kind} ${devid} frontend`);
          }
          // SCHEDOP_shutdown(poweroff), as the death monitor reported it.
          assert.deepEqual(xl.events.filter((e) => e.domid === id && e.event === 'shutdown').map((e) => e.reason), ['SHUTDOWN_poweroff']);

          assertGone(rt, xl, id);
          assertBaseline(base, await tree(xl));
        } finally {
          await rt.shutdown();
        }
      });

      it('reboot: a new domain with the same config runs with every device Connected, and nothing of the old domid is left', async () => {
        const { rt, xl } = await bootHost(seed);
        try {
          const base = await tree(xl);
          const cfg = twoDisksOneNic('rb');
          const old = await xl.create(cfg);
          await rt.quiesce();
          await assertConnected(xl, old);
          const oldUuid = configUuid(cfg, old);
          assert.ok(domainNodes(await tree(xl), old, oldUuid).length > 0);

          assert.deepEqual(await xl.shutdown(old, 'reboot', { wait: true }), { acked: true });
          assert.deepEqual(xl.errors, []);
          assert.deepEqual(xl.events.filter((e) => e.domid === old && e.event === 'shutdown').map((e) => e.reason), ['SHUTDOWN_reboot']);

          // on_reboot=restart: destroy, then create again from the same config under a new domid.
          const ids = [...xl.domains.keys()];
          assert.equal(ids.length, 1);
          const neu = ids[0];
          assert.notEqual(neu, old);
          assert.equal(xl.domains.get(neu)!.cfg, cfg);
          assert.equal(xl.domains.get(neu)!.state, 'running');
          assertGone(rt, xl, old);
          assert.equal(rt.host.domains.get(neu)?.runState, 'running');
          await assertConnected(xl, neu);
          assert.match(await xl.console(neu), new RegExp(`Linux version .* \\(domid ${neu}\\)`));

          const t = await tree(xl);
          assert.deepEqual(domainNodes(t, old, oldUuid), [], 'no node of the old domain');
          // What is left is the new domain's and the shared parents, nothing else.
          const newNodes = new Set([
            ...domainNodes(t, neu, configUuid(cfg, neu)),
            '/local/domain/0/backend', '/local/domain/0/backend/vbd', '/local/domain/0/backend/vif', '/local/domain/0/backend/console',
          ]);
          assertBaseline(base, new Map([...t].filter(([p]) => !newNodes.has(p))));
          // The new domain's nodes are its own, with the values of a fresh create.
          assert.equal(value(t, `/local/domain/${neu}/domid`), String(neu));
          assert.equal(value(t, `/local/domain/${neu}/vm`), `/vm/${configUuid(cfg, neu)}`);
          assert.equal(value(t, `/local/domain/${neu}/control/shutdown`), '');
        } finally {
          await rt.shutdown();
        }
      });

      it('suspend then resume in place: the guest says so on its console, its devices stay Connected and the tree is as before', async () => {
        const { rt, xl } = await bootHost(seed);
        try {
          const id = await xl.create(twoDisksOneNic('sr'));
          await rt.quiesce();
          await assertConnected(xl, id);
          const before = await tree(xl);

          assert.deepEqual(await xl.shutdown(id, 'suspend', { wait: true }), { acked: true });
          // Shut down for suspend: still there (its memory kept), not running, no on_* action.
          assert.deepEqual(xl.events.filter((e) => e.domid === id).map((e) => [e.event, e.reason]), [['shutdown', 'SHUTDOWN_suspend']]);
          assert.equal(rt.host.domains.get(id)?.runState, 'shutdown');
          assert.equal(xl.list().find((r) => r.id === id)?.state, '---s--');
          // Suspended, the tree is unchanged (the ack put control/shutdown back to "").
          const suspended = await tree(xl);
          assert.deepEqual(treeDiff(before, suspended), { added: [], removed: [] });
          for (const [p, v] of before) assert.equal(suspended.get(p), v, p);

          await xl.resume(id);
          await rt.quiesce();
          assert.equal(rt.host.domains.get(id)?.runState, 'running');
          assert.equal(xl.list().find((r) => r.id === id)?.state, '-b----');
          const con = await xl.console(id);
          // The console tells the devices' story as a kernel log does: each frontend connected.
          for (const line of ['blkfront: xvda: connected to the backend', 'blkfront: xvdb: connected to the backend', 'xen_netfront: eth0: connected to the backend']) {
            assert.ok(con.includes(line), `${line}\n${con}`);
          }
          const freeze = con.indexOf('Freezing user space processes');
          assert.ok(freeze >= 0, con);
          assert.ok(con.indexOf('Restarting tasks ... done.', freeze) > freeze, con);
          await assertConnected(xl, id);
          // Resumed in place (a cancelled suspend): no node and no value changed.
          const after = await tree(xl);
          assert.deepEqual(treeDiff(before, after), { added: [], removed: [] });
          for (const [p, v] of before) assert.equal(after.get(p), v, p);
          // And the disks still work.
          const data = new Uint8Array(4096).fill(seed);
          const w = await xl.guest<{ status: number }>(id, { cmd: 'blk', device: String(XVDB), op: 'write', sector: 8, sectors: 8, data });
          assert.equal(w.status, BlkifRsp.BLKIF_RSP_OKAY);
          const r = await xl.guest<{ status: number; data: Uint8Array }>(id, { cmd: 'blk', device: String(XVDB), op: 'read', sector: 8, sectors: 8 });
          assert.equal(r.status, BlkifRsp.BLKIF_RSP_OKAY);
          assert.deepEqual(Buffer.from(r.data), Buffer.from(data));
          // A second shutdown is reported again after XS_RESUME.
          assert.deepEqual(await xl.shutdown(id, 'poweroff', { wait: true }), { acked: true });
          assert.deepEqual(xl.events.filter((e) => e.domid === id && e.event === 'shutdown').map((e) => e.reason),
            ['SHUTDOWN_suspend', 'SHUTDOWN_poweroff']);
          assertGone(rt, xl, id);
        } finally {
          await rt.shutdown();
        }
      });

      it('a guest that ignores control/shutdown: the request times out unacked, the guest keeps running, xl destroy cleans everything', async () => {
        const { rt, xl } = await bootHost(seed);
        try {
          const base = await tree(xl);
          const id = await xl.create(twoDisksOneNic('deaf'), { guest: { quirks: { manage: { ignoreShutdown: true } } } });
          await rt.quiesce();
          await assertConnected(xl, id);

          assert.deepEqual(await xl.shutdown(id, 'poweroff', { wait: true, timeoutNs: 2e9 }), { acked: false });
          // Not withdrawn (libxl only withdraws a suspend); nobody acted on it.
          assert.equal(value(await tree(xl), `/local/domain/${id}/control/shutdown`), 'poweroff');
          assert.deepEqual(xl.events.filter((e) => e.domid === id), []);
          assert.equal(rt.host.domains.get(id)?.runState, 'running');
          assert.equal(xl.list().find((r) => r.id === id)?.state, '-b----');
          await assertConnected(xl, id);

          await xl.destroy(id);
          await xl.settled();
          assertGone(rt, xl, id);
          assertBaseline(base, await tree(xl));
        } finally {
          await rt.shutdown();
        }
      });
    });
  }
});
