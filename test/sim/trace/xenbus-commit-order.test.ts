// The trace teaches the xenbus handshake in the order xenstore saw it: a state change appears at
// xenstored's commit of the write, never when the writer's reply happened to get back to it.
import assert from 'node:assert/strict';
import { findScenario } from '../../../scenarios/index.ts';
import { runScenario } from '../../../sim/scenario/run.ts';
import { type TraceRecord, absolutePath, isXenstore, payloadFields } from '../../../sim/trace/events.ts';
import { XenbusCommitOrder } from '../../../sim/trace/xenbus-commit-order.ts';

/** Every write of a `.../state` node that xenstored committed, at the index of the committing reply. */
function committedStateWrites(trace: readonly TraceRecord[]): { at: number; domid: number; path: string; value: string }[] {
  const reqs = new Map<string, { path: string; value: string; tx: number }>();
  const inTx = new Map<string, { path: string; value: string }[]>();
  const out: { at: number; domid: number; path: string; value: string }[] = [];
  trace.forEach((e, at) => {
    if (!isXenstore(e)) return;
    const conn = `${e.domid}/${e.conn}`;
    if (e.dir === 'IN' && e.type === 'WRITE') {
      const [path, value = ''] = payloadFields(e.payload);
      if (path.endsWith('/state')) reqs.set(`${conn}/${e.req_id}`, { path: absolutePath(path, e.domid), value, tx: e.tx_id });
    } else if (e.dir === 'OUT' && e.type === 'WRITE') {
      const w = reqs.get(`${conn}/${e.req_id}`);
      if (!w) return;
      if (w.tx === 0) out.push({ at, domid: e.domid, path: w.path, value: w.value });
      else inTx.set(`${conn}/${w.tx}`, [...inTx.get(`${conn}/${w.tx}`) ?? [], w]);
    } else if (e.dir === 'OUT' && e.type === 'TRANSACTION_END') {
      for (const w of inTx.get(`${conn}/${e.tx_id}`) ?? []) out.push({ at, domid: e.domid, ...w });
      inTx.delete(`${conn}/${e.tx_id}`);
    } else if (e.dir === 'OUT' && e.type === 'ERROR') {
      inTx.delete(`${conn}/${e.tx_id}`);
    }
  });
  return out;
}

describe('xenbus state changes are traced in commit order', function () {

  for (const seed of [1, 2, 3]) {
    it(`boot-and-shutdown seed ${seed}: each state change follows the xenstored reply that committed it`, async () => {
      const r = await runScenario(findScenario('boot-and-shutdown')!, { seed });
      const trace = r.trace as readonly TraceRecord[];
      const commits = committedStateWrites(trace);
      const changes = trace.map((e, i) => [e, i] as const).filter(([e]) => e.kind === 'xenbus');
      assert.ok(changes.length >= 12, `a boot and shutdown moves vbd and vif through their states (${changes.length})`);
      let lastCommit = -1;
      for (const [e, i] of changes) {
        // The committing reply, then only other state changes of that same commit.
        let j = i - 1;
        while (trace[j].kind === 'xenbus') j--;
        const c = commits.find((w) => w.at === j && w.domid === e.domid && w.path === e.path && w.value === String(e.state));
        assert.ok(c, `event ${i} (${String(e.role)} ${String(e.device)} state ${String(e.state)}) is not right after its commit: ${JSON.stringify(trace[j])}`);
        assert.ok(c.at >= lastCommit, 'state changes appear in the order xenstored committed them');
        assert.equal(e.t, trace[j].t, 'stamped with the commit\'s time');
        lastCommit = c.at;
      }
      // The handshake as taught: the frontend's Initialised is committed before the backend connects.
      const vbd = changes.map(([e]) => `${String(e.role)} ${String(e.state)}`).filter((s) => s !== undefined);
      assert.ok(vbd.indexOf('frontend 3') < vbd.indexOf('backend 4'), vbd.join(', '));
    });
  }
});

describe('XenbusCommitOrder', () => {
  const xs = (dir: 'IN' | 'OUT', type: string, req: number, tx: number, payload: string, t = 0): TraceRecord =>
    ({ kind: 'xenstore', domid: 1, dir, conn: 5, type, req_id: req, tx_id: tx, payload, t });
  const announce = (tx: number, state = 4): TraceRecord =>
    ({ kind: 'xenbus', domid: 1, role: 'frontend', device: 'vbd/51712', path: '/local/domain/1/device/vbd/51712/state', state, stateName: 'x', tx_id: tx });

  function through(events: readonly TraceRecord[]): TraceRecord[] {
    const out: TraceRecord[] = [];
    const o = new XenbusCommitOrder((e) => out.push(e));
    for (const e of events) o.push(e);
    return out;
  }

  it('holds an announcement until XS_TRANSACTION_END commits its write, then emits it with the commit time and no tx_id', () => {
    const out = through([
      xs('IN', 'WRITE', 7, 3, 'device/vbd/51712/state\\04'), xs('OUT', 'WRITE', 7, 3, 'OK\\0'),
      announce(3),
      xs('IN', 'TRANSACTION_END', 8, 3, 'T\\0', 10), xs('OUT', 'TRANSACTION_END', 8, 3, 'OK\\0', 20),
    ]);
    assert.deepEqual(out.map((e) => e.kind), ['xenstore', 'xenstore', 'xenstore', 'xenstore', 'xenbus']);
    assert.equal(out[4].t, 20);
    assert.equal('tx_id' in out[4], false);
  });

  it('drops the change when the transaction fails with EAGAIN, and emits the retry\'s', () => {
    const out = through([
      xs('IN', 'WRITE', 7, 3, 'device/vbd/51712/state\\04'), xs('OUT', 'WRITE', 7, 3, 'OK\\0'), announce(3),
      xs('IN', 'TRANSACTION_END', 8, 3, 'T\\0'), xs('OUT', 'ERROR', 8, 3, 'EAGAIN\\0'),
    ]);
    assert.equal(out.filter((e) => e.kind === 'xenbus').length, 0);
    const retry = through([
      xs('IN', 'WRITE', 7, 3, 'device/vbd/51712/state\\04'), xs('OUT', 'WRITE', 7, 3, 'OK\\0'), announce(3),
      xs('IN', 'TRANSACTION_END', 8, 3, 'T\\0'), xs('OUT', 'ERROR', 8, 3, 'EAGAIN\\0'),
      xs('IN', 'WRITE', 9, 4, 'device/vbd/51712/state\\04'), xs('OUT', 'WRITE', 9, 4, 'OK\\0'), announce(4),
      xs('IN', 'TRANSACTION_END', 10, 4, 'T\\0'), xs('OUT', 'TRANSACTION_END', 10, 4, 'OK\\0'),
    ]);
    assert.equal(retry.filter((e) => e.kind === 'xenbus').length, 1);
  });

  it('emits an announcement that arrives after its commit (free-running threads) at once', () => {
    const out = through([
      xs('IN', 'WRITE', 7, 3, 'device/vbd/51712/state\\04'), xs('OUT', 'WRITE', 7, 3, 'OK\\0'),
      xs('IN', 'TRANSACTION_END', 8, 3, 'T\\0'), xs('OUT', 'TRANSACTION_END', 8, 3, 'OK\\0', 42),
      announce(3),
    ]);
    assert.deepEqual(out.map((e) => [e.kind, e.t]).at(-1), ['xenbus', 42]);
  });

  it('never emits a change whose value differs from what was committed', () => {
    const out = through([
      xs('IN', 'WRITE', 7, 3, 'device/vbd/51712/state\\05'), xs('OUT', 'WRITE', 7, 3, 'OK\\0'), announce(3, 4),
      xs('IN', 'TRANSACTION_END', 8, 3, 'T\\0'), xs('OUT', 'TRANSACTION_END', 8, 3, 'OK\\0'),
    ]);
    assert.equal(out.filter((e) => e.kind === 'xenbus').length, 0);
  });
});
