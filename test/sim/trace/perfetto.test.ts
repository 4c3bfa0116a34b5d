// Chrome Trace Event Format output for Perfetto: processes per domain, threads per component,
// transactions as async spans, XenbusStates as slices, and a validator for the format's fields.
import assert from 'node:assert/strict';
import type { TraceRecord } from '../../../sim/trace/events.ts';
import { type ChromeTraceEvent, HOST_PID, perfettoJson, toPerfetto, validateTraceEventJson } from '../../../sim/trace/perfetto.ts';
import { handshake, xs } from './fixture.ts';

const threadName = (evs: ChromeTraceEvent[], pid: number, tid: number): string | undefined =>
  evs.find((e) => e.ph === 'M' && e.name === 'thread_name' && e.pid === pid && e.tid === tid)?.args?.name as string | undefined;

describe('perfetto (Chrome Trace Event Format)', () => {
  it('writes the JSON object format in ns display units, and the validator finds nothing wrong', () => {
    const trace = toPerfetto(handshake());
    assert.equal(trace.displayTimeUnit, 'ns');
    assert.deepEqual(validateTraceEventJson(trace), []);
    // The file form is one JSON document with the same content.
    assert.deepEqual(JSON.parse(perfettoJson(trace)), JSON.parse(JSON.stringify(trace)));
  });

  it('each domain is a process named as xl names it (Domain-0, dom1) or as asked, sorted by domid', () => {
    const names = (evs: ChromeTraceEvent[]): [number, unknown][] =>
      evs.filter((e) => e.name === 'process_name').map((e) => [e.pid, e.args?.name]);
    assert.deepEqual(names(toPerfetto(handshake()).traceEvents), [[0, 'Domain-0'], [1, 'dom1'], [HOST_PID, 'host']]);
    assert.deepEqual(names(toPerfetto(handshake(), { names: { 1: 'guest-a' } }).traceEvents).slice(0, 2), [[0, 'Domain-0'], [1, 'guest-a']]);
  });

  it('each component is a thread: a xenstored connection, the hypervisor, each device by driver', () => {
    const evs = toPerfetto(handshake()).traceEvents;
    const threads = evs.filter((e) => e.name === 'thread_name').map((e) => `${e.pid}:${String(e.args?.name)}`);
    assert.deepEqual(threads, [
      '0:xenstored conn 3', '0:xenstored conn 1', '0:blkback vbd/1/51712', '0:hypervisor',
      '1:xenstored conn 2', '1:hypervisor', '1:blkfront vbd/51712', '1:netfront vif/0', '1:console',
      `${HOST_PID}:scenario`,
    ]);
  });

  it('every event but a state change is an instant with its fields as args, on its component\'s thread', () => {
    const evs = toPerfetto(handshake()).traceEvents;
    const write = evs.find((e) => e.ph === 'i' && e.name === 'IN XS_WRITE device/vbd/51712/ring-ref')!;
    assert.equal(write.cat, 'xenstore');
    assert.equal(write.s, 't');
    assert.equal(threadName(evs, write.pid, write.tid), 'xenstored conn 2');
    assert.deepEqual(write.args, {
      conn: 2, dir: 'IN', domid: 1, payload: 'device/vbd/51712/ring-ref\\08', req_id: 3, t: 18000, tx_id: 3, type: 'WRITE',
    });
    const send = evs.find((e) => e.ph === 'i' && e.name === 'EVTCHNOP_send port 5')!;
    assert.equal(threadName(evs, send.pid, send.tid), 'hypervisor');
    const instants = evs.filter((e) => e.ph === 'i').length;
    assert.equal(instants, handshake().filter((e) => e.kind !== 'xenbus').length);
  });

  it('a transaction becomes one async span from TRANSACTION_START\'s reply to TRANSACTION_END\'s reply', () => {
    const evs = toPerfetto(handshake()).traceEvents;
    const span = evs.filter((e) => e.id === '1:7');
    assert.deepEqual(span.map((e) => [e.ph, e.name, e.cat, e.ts, e.pid]), [
      ['b', 'transaction 7', 'transaction', 4, 0],
      ['e', 'transaction 7', 'transaction', 14, 0],
    ]);
    assert.deepEqual(span[1].args, { commit: true, result: 'OK' });
    // The frontend's own transaction, in its own domain, on its connection's thread.
    const fe = evs.filter((e) => e.id === '2:3');
    assert.deepEqual(fe.map((e) => [e.ph, e.pid, threadName(evs, e.pid, e.tid)]), [['b', 1, 'xenstored conn 2'], ['e', 1, 'xenstored conn 2']]);
  });

  it('a commit that fails (EAGAIN) ends its span with the error; a refused start opens none', () => {
    const evs = toPerfetto([
      xs('IN', 4, 2, 'TRANSACTION_START', 1, 0, '\\0'),
      xs('OUT', 4, 2, 'TRANSACTION_START', 1, 0, '9\\0'),
      xs('IN', 4, 2, 'TRANSACTION_END', 2, 9, 'T\\0'),
      xs('OUT', 4, 2, 'ERROR', 2, 9, 'EAGAIN\\0'),
      xs('IN', 4, 2, 'TRANSACTION_START', 3, 0, '\\0'),
      xs('OUT', 4, 2, 'ERROR', 3, 0, 'EQUOTA\\0'),
    ]).traceEvents;
    const spans = evs.filter((e) => e.cat === 'transaction');
    assert.deepEqual(spans.map((e) => [e.ph, e.id]), [['b', '4:9'], ['e', '4:9']]);
    assert.deepEqual(spans[1].args, { commit: true, result: 'EAGAIN' });
  });

  it('a transaction the trace leaves open ends with the trace, marked unfinished', () => {
    const trace = toPerfetto([
      xs('IN', 4, 2, 'TRANSACTION_START', 1, 0, '\\0'),
      xs('OUT', 4, 2, 'TRANSACTION_START', 1, 0, '9\\0'),
      xs('IN', 4, 2, 'WRITE', 2, 9, 'a\\0b', 50),
    ]);
    const end = trace.traceEvents.find((e) => e.ph === 'e')!;
    assert.deepEqual([end.id, end.ts, end.args], ['4:9', trace.traceEvents[trace.traceEvents.length - 1].ts, { unfinished: true }]);
    assert.deepEqual(validateTraceEventJson(trace), []);
  });

  it('each XenbusState is a slice on its device\'s thread lasting until the next state, the last until the trace ends', () => {
    const evs = toPerfetto(handshake()).traceEvents;
    const back = evs.filter((e) => e.ph === 'X' && threadName(evs, e.pid, e.tid) === 'blkback vbd/1/51712');
    assert.deepEqual(back.map((e) => [e.name, e.ts, e.dur]), [
      ['XenbusStateInitWait', 15.002, 14],
      ['XenbusStateConnected', 29.002, 5.998], // the console line at 35 µs ends the trace
    ]);
    assert.equal(back[0].cat, 'xenbus');
    assert.equal(back[0].args?.state, 2);
  });

  it('timestamps: ns become µs; events at one virtual instant are 1 ns apart in trace order; the true time stays in args', () => {
    const evs = toPerfetto([
      { kind: 'a', domid: 1, t: 5000 }, { kind: 'b', domid: 1, t: 5000 }, { kind: 'c', domid: 1, t: 5000 }, { kind: 'd', domid: 1, t: 9000 },
    ]).traceEvents.filter((e) => e.ph === 'i');
    assert.deepEqual(evs.map((e) => [e.name, e.ts, e.args?.t]), [['a', 5, 5000], ['b', 5.001, 5000], ['c', 5.002, 5000], ['d', 9, 9000]]);
  });

  it('events without a time (free-running) get increasing synthetic times, keeping their order', () => {
    const evs = toPerfetto([{ kind: 'x', domid: 0 }, { kind: 'y', domid: 2 }, { kind: 'z', domid: 0 }], { untimedStepNs: 1000 })
      .traceEvents.filter((e) => e.ph === 'i');
    assert.deepEqual(evs.map((e) => [e.name, e.ts]), [['x', 0], ['y', 1], ['z', 2]]);
  });

  it('any kind is drawn: unknown kinds are instants on a thread of their kind; no domain means the host process', () => {
    const evs = toPerfetto([
      { kind: 'fault', name: 'drop-watch', target: 'conn 3', t: 1 },
      { kind: 'toolstack', domid: 0, action: 'create dom1', t: 2 },
    ]).traceEvents;
    const fault = evs.find((e) => e.ph === 'i' && e.cat === 'fault')!;
    assert.deepEqual([fault.name, fault.pid, threadName(evs, fault.pid, fault.tid), fault.args],
      ['fault drop-watch', HOST_PID, 'fault', { name: 'drop-watch', t: 1, target: 'conn 3' }]);
    const tool = evs.find((e) => e.ph === 'i' && e.cat === 'toolstack')!;
    assert.deepEqual([tool.name, tool.pid, threadName(evs, tool.pid, tool.tid)], ['toolstack create dom1', 0, 'toolstack']);
  });

  it('the same events give the same output whatever the order of their keys', () => {
    const reversed = handshake().map((e) => Object.fromEntries(Object.entries(e).reverse()) as TraceRecord);
    assert.equal(perfettoJson(toPerfetto(reversed)), perfettoJson(toPerfetto(handshake())));
  });

  describe('validateTraceEventJson', () => {
    const ok = { name: 'x', ph: 'i', ts: 1, pid: 1, tid: 1 };
    const errs = (ev: Record<string, unknown>): string[] => validateTraceEventJson({ traceEvents: [ev] });

    it('accepts the array form and the object form', () => {
      assert.deepEqual(validateTraceEventJson([ok]), []);
      assert.deepEqual(validateTraceEventJson({ traceEvents: [ok], displayTimeUnit: 'ms' }), []);
    });

    it('requires name, ph, ts, pid and tid', () => {
      assert.match(errs({ ...ok, name: undefined }).join(), /name must be a string/);
      assert.match(errs({ ...ok, ph: 'Q' }).join(), /not a Trace Event Format phase/);
      assert.match(errs({ ...ok, ts: '1' }).join(), /ts must be a number/);
      assert.match(errs({ ...ok, pid: undefined }).join(), /pid must be an integer/);
      assert.match(errs({ ...ok, tid: 1.5 }).join(), /tid must be an integer/);
    });

    it('async begin and end need cat and id; an end needs a begin before it', () => {
      assert.match(errs({ ...ok, ph: 'b', id: '1' }).join(), /cat is required/);
      assert.match(errs({ ...ok, ph: 'b', cat: 'c' }).join(), /id \(or id2\) is required/);
      assert.deepEqual(errs({ ...ok, ph: 'b', cat: 'c', id2: { local: '0x1' } }), []);
      assert.match(errs({ ...ok, ph: 'e', cat: 'c', id: '1' }).join(), /async end with no begin/);
      assert.deepEqual(validateTraceEventJson([{ ...ok, ph: 'e', cat: 'c', id: '1', ts: 5 }, { ...ok, ph: 'b', cat: 'c', id: '1', ts: 2 }]), []);
    });

    it('metadata needs args.name (or sort_index), but no ts; complete events need dur; counters numeric args', () => {
      assert.deepEqual(errs({ name: 'process_name', ph: 'M', pid: 1, tid: 0, args: { name: 'dom1' } }), []);
      assert.match(errs({ name: 'process_name', ph: 'M', pid: 1, tid: 0, args: {} }).join(), /needs args.name/);
      assert.match(errs({ name: 'thread_sort_index', ph: 'M', pid: 1, tid: 0, args: {} }).join(), /sort_index/);
      assert.match(errs({ name: 'colour', ph: 'M', pid: 1, tid: 0, args: {} }).join(), /unknown metadata name/);
      assert.match(errs({ ...ok, ph: 'X' }).join(), /needs dur/);
      assert.match(errs({ ...ok, ph: 'C', args: { v: 'high' } }).join(), /numeric series/);
      assert.match(errs({ ...ok, s: 'x' }).join(), /scope/);
    });

    it('does not require sorted timestamps', () => {
      assert.deepEqual(validateTraceEventJson([{ ...ok, ts: 9 }, { ...ok, ts: 1 }]), []);
    });

    it('rejects what is not a trace', () => {
      assert.notDeepEqual(validateTraceEventJson(42), []);
      assert.notDeepEqual(validateTraceEventJson({ events: [] }), []);
      assert.notDeepEqual(validateTraceEventJson({ traceEvents: [ok], displayTimeUnit: 's' }), []);
    });
  });
});
