// The host as the trace shows it after N events, on a real boot-and-shutdown run: what a
// teacher steps through. Every claim is checked against the trace's own events.
import assert from 'node:assert/strict';
import { findScenario } from '../../../scenarios/index.ts';
import { runScenario } from '../../../sim/scenario/run.ts';
import { type TraceRecord, absolutePath, payloadFields } from '../../../sim/trace/events.ts';
import { lanes, stateAt } from '../../../sim/trace/state-at.ts';

describe('stateAt: the host after N events of a real run', function () {
  let ev: readonly TraceRecord[];
  const vbd = 'vbd/1/51712';
  const at = (pred: (e: TraceRecord) => boolean, from = 0): number => {
    const i = ev.findIndex((e, j) => j >= from && pred(e));
    assert.ok(i >= 0, 'the run has the event');
    return i;
  };
  before(async () => {
    ev = (await runScenario(findScenario('boot-and-shutdown')!, { seed: 1 })).trace as readonly TraceRecord[];
  });

  it('shows each xenbus state change in both the device picture and the tree, from the event on', () => {
    for (const [i, e] of ev.entries()) {
      if (e.kind !== 'xenbus') continue;
      const before = stateAt(ev, i);
      const after = stateAt(ev, i + 1);
      const dev = after.devices.find((d) => d.id.startsWith(`${String(e.device).split('/')[0]}/`) && d[e.role as 'frontend' | 'backend']?.path === String(e.path).replace(/\/state$/, ''));
      assert.ok(dev, `device of ${JSON.stringify(e)}`);
      assert.equal(dev[e.role as 'frontend' | 'backend']!.state, e.state);
      assert.equal(after.nodes.find((n) => n.path === e.path)?.value, String(e.state));
      // Committed by the xenstored reply just before: already in the tree then, as it should be.
      assert.equal(before.nodes.find((n) => n.path === e.path)?.value, String(e.state));
    }
  });

  it('walks the vbd handshake: Initialising, InitWait, Initialised, Connected on both ends, then Closed and gone', () => {
    const fe3 = at((e) => e.kind === 'xenbus' && e.role === 'frontend' && e.device === 'vbd/51712' && e.state === 3);
    const be4 = at((e) => e.kind === 'xenbus' && e.role === 'backend' && e.device === vbd && e.state === 4);
    const fe4 = at((e) => e.kind === 'xenbus' && e.role === 'frontend' && e.device === 'vbd/51712' && e.state === 4);
    const dev = (n: number): [number | undefined, number | undefined] => {
      const d = stateAt(ev, n).devices.find((x) => x.id === vbd);
      return [d?.frontend?.state, d?.backend?.state];
    };
    assert.deepEqual(dev(fe3 - 1), [1, 2], 'before the commit the xenbus event follows');
    assert.deepEqual(dev(fe3 + 1), [3, 2]);
    assert.deepEqual(dev(be4 + 1), [3, 4]);
    assert.deepEqual(dev(fe4 + 1), [4, 4]);
    assert.equal(stateAt(ev, ev.length).devices.find((x) => x.id === vbd), undefined, 'removed at destroy');
  });

  it('lists the changed nodes of the last step, and keeps a transaction\'s writes out of the tree until it commits', () => {
    const w = at((e) => e.kind === 'xenstore' && e.dir === 'IN' && e.type === 'WRITE' && e.tx_id !== 0 && e.domid === 1);
    const path = absolutePath(payloadFields(String(w && ev[w].payload))[0], 1);
    const end = at((e) => e.kind === 'xenstore' && e.dir === 'OUT' && e.type === 'TRANSACTION_END' && e.domid === 1 && e.tx_id === ev[w].tx_id, w);
    const value = payloadFields(String(ev[w].payload))[1];
    assert.notEqual(stateAt(ev, end).nodes.find((n) => n.path === path)?.value, value, 'not visible before the commit');
    assert.ok(stateAt(ev, end).transactions.some((t) => t.domid === 1 && t.writes.includes(`write ${path}`)), 'shown as the open transaction\'s write');
    const committed = stateAt(ev, end + 1);
    assert.equal(committed.nodes.find((n) => n.path === path)?.value, value);
    assert.ok(committed.changed.includes(path));
  });

  it('shows watches with their holders, event channels paired both ways, grants advertised and mapped', () => {
    const fe4 = at((e) => e.kind === 'xenbus' && e.role === 'frontend' && e.device === 'vbd/51712' && e.state === 4);
    const s = stateAt(ev, fe4 + 1);
    assert.ok(s.watches.some((w) => w.holder === 'dom1 xenbus' && w.path === `/local/domain/0/backend/${vbd}/state`));
    assert.ok(s.watches.some((w) => w.holder === 'Domain-0 xenbus (backends)' && w.path === '/local/domain/1/device/vbd/51712/state'));
    for (const p of s.ports.filter((x) => x.state === 'interdomain')) {
      const peer = s.ports.find((x) => x.domid === p.remoteDomid && x.port === p.remotePort);
      assert.ok(peer && peer.remoteDomid === p.domid && peer.remotePort === p.port, `port ${p.domid}:${p.port} has its peer`);
    }
    const ringRef = s.nodes.find((n) => n.path === '/local/domain/1/device/vbd/51712/ring-ref')!.value;
    const g = s.grants.find((x) => x.domid === 1 && x.ref === Number(ringRef));
    assert.ok(g?.advertised && g.mappedBy.some((m) => m.domid === 0), 'blkback has mapped the ring-ref blkfront advertised');
    assert.equal(s.domains.find((d) => d.domid === 1)?.name, 'guest');
    assert.equal(s.rings.find((r) => r.domid === 1)?.req.prod, s.rings.find((r) => r.domid === 1)?.req.cons);
  });

  it('ends with the guest dead and nothing of it left: no watches, ports, grants or devices', () => {
    const s = stateAt(ev, ev.length);
    assert.equal(s.domains.find((d) => d.domid === 1)?.state, 'dead');
    assert.equal(s.watches.filter((w) => w.domid === 1).length, 0);
    assert.equal(s.ports.filter((p) => p.domid === 1).length, 0);
    assert.equal(s.grants.length, 0);
    assert.equal(s.devices.length, 0);
  });

  it('is pure: going back to N gives what N gave the first time', () => {
    const a = stateAt(ev, 1500);
    stateAt(ev, 3000);
    assert.deepEqual(stateAt(ev, 1500), a);
    assert.deepEqual(stateAt(ev, -5), stateAt(ev, 0));
  });

  it('puts every event in a lane per domain and component', () => {
    const { lanes: ls, of } = lanes(ev);
    assert.equal(of.length, ev.length);
    for (const id of ['xenstored', 'Xen', 'xl', 'dom1 xenbus', 'dom1 blkfront', 'dom0 blkback', 'dom1 kernel']) assert.ok(ls.some((l) => l.id === id), id);
  });
});
