// Every event of a real run reads as one sentence in Xen's names with the function it models.
import assert from 'node:assert/strict';
import { findScenario } from '../../../scenarios/index.ts';
import { runScenario } from '../../../sim/scenario/run.ts';
import type { TraceRecord } from '../../../sim/trace/events.ts';
import { explain } from '../../../sim/trace/explain.ts';

/** A key per event kind as the tables distinguish them (xenstore by direction and type, others by op). */
const kindKey = (e: TraceRecord): string => (e.kind === 'xenstore' ? `xenstore ${String(e.dir)} ${String(e.type)}`
  : ['evtchn', 'gnttab', 'hypercall'].includes(e.kind) ? `${e.kind} ${String(e.op)}` : e.kind);

describe('explain: every trace event in one sentence', function () {
  let trace: readonly TraceRecord[];
  before(async () => {
    trace = (await runScenario(findScenario('boot-and-shutdown')!, { seed: 1 })).trace as readonly TraceRecord[];
  });

  it('explains every event kind of a boot-and-shutdown run, each sentence naming the function it models', () => {
    const kinds = new Map<string, string>();
    for (const e of trace) {
      const s = explain(e);
      assert.ok(s, `no sentence for ${JSON.stringify(e)}`);
      assert.match(s, /\([^()]*\w+[^()]*\)$/, `ends with the modelled function: ${s}`);
      assert.doesNotMatch(s, /undefined|NaN|\[object/, s);
      if (!kinds.has(kindKey(e))) kinds.set(kindKey(e), s);
    }
    // The run exercises the whole split-device story: the kinds below all occur.
    for (const k of ['xenstore IN WRITE', 'xenstore OUT WATCH_EVENT', 'xenstore IN INTRODUCE', 'evtchn EVTCHNOP_bind_interdomain',
      'evtchn evtchn_set_pending', 'gnttab map_grant_ref', 'hypercall __HYPERVISOR_domctl', 'xenbus', 'ring', 'step']) {
      assert.ok(kinds.has(k), `the run has ${k}`);
    }
    assert.ok(kinds.size >= 30, `${kinds.size} kinds`);
  });

  it('says the handshake in Xen\'s words', () => {
    const sentences = trace.map((e) => explain(e)!);
    assert.ok(sentences.some((s) => /^Domain-0 maps grant \d+ of dom1 as handle \d+ \(gnttab_map_grant_ref\)$/.test(s)), 'blkback maps the ring');
    assert.ok(sentences.some((s) => /dom1 \(conn \d+\) writes state=3 XenbusStateInitialised for dom1's blkfront state .*\(xenbus_switch_state\)$/.test(s)));
    assert.ok(sentences.some((s) => /^dom1 blkfront has switched vbd\/51712 to XenbusStateConnected \(4\)/.test(s)));
    assert.ok(sentences.some((s) => /reads dom1's blkfront ring-ref .*\(xs_read \/ xenbus_read\)$/.test(s)));
    assert.ok(sentences.some((s) => /binds VIRQ_DOM_EXC to port \d+ on vCPU 0 \(evtchn_bind_virq\)$/.test(s)));
  });

  it('names a connection by its owner when the reader knows it', () => {
    const w = trace.find((e) => e.kind === 'xenstore' && e.dir === 'IN' && e.type === 'WRITE' && e.domid === 1)!;
    assert.match(explain(w, { connName: () => 'dom1 xenbus' })!, /^dom1 xenbus writes /);
  });

  for (const name of ['acpi-power-and-sleep', 'suspend-resume', 'xenstored-crash', 'xenstored-restart', 'guest-crashes-at-random-point', 'boot-three-guests']) {
    it(`explains every event of ${name} too (HVM traps, suspend, faults, crashes)`, async () => {
      const r = await runScenario(findScenario(name)!, { seed: 1 });
      for (const e of r.trace as readonly TraceRecord[]) {
        const s = explain(e);
        assert.ok(s && !/undefined|NaN|\[object/.test(s), `${JSON.stringify(e)} => ${s}`);
      }
    });
  }

  it('has no sentence for a kind no table knows (no fallback text)', () => {
    assert.equal(explain({ kind: 'made-up' }), undefined);
    assert.equal(explain({ kind: 'evtchn', op: 'EVTCHNOP_nonsense' }), undefined);
    assert.equal(explain({ kind: 'xenstore', dir: 'IN', conn: 1, domid: 1, type: 'NONSENSE', req_id: 1, tx_id: 0, payload: '' }), undefined);
  });
});
