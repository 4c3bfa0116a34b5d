// The text log: one line per event, dmesg-style virtual time, domain, kind, compact details.
import assert from 'node:assert/strict';
import type { TraceRecord } from '../../../sim/trace/events.ts';
import { formatEvent, formatTimestamp, toTextLog } from '../../../sim/trace/text-log.ts';
import { handshake } from './fixture.ts';

describe('text log', () => {
  it('stamps virtual time like the kernel log: seconds, six digits of µs, truncated, fixed width', () => {
    assert.equal(formatTimestamp(12_345_678_901), '[   12.345678]');
    assert.equal(formatTimestamp(0), '[    0.000000]');
    assert.equal(formatTimestamp(999), '[    0.000000]');
    assert.equal(formatTimestamp(123_456_000_000_000), '[123456.000000]');
    // No time (free-running): a dash, same width, so columns still line up.
    assert.equal(formatTimestamp(undefined), '[           -]');
    assert.equal(formatTimestamp(undefined).length, formatTimestamp(1).length);
  });

  it('a xenstore message: direction, type, transaction, payload as traced, then its connection and request', () => {
    const e: TraceRecord = {
      kind: 'xenstore', dir: 'IN', conn: 2, domid: 1, type: 'WRITE', req_id: 7, tx_id: 0, payload: 'device/vbd/51712/state\\03', t: 12_345_678_901,
    };
    assert.equal(formatEvent(e), '[   12.345678] d1  xenstore IN  XS_WRITE tx=0 device/vbd/51712/state\\03 (conn 2 req 7)');
    assert.equal(formatEvent({ ...e, dir: 'OUT', payload: 'OK\\0' }), '[   12.345678] d1  xenstore OUT XS_WRITE tx=0 OK\\0 (conn 2 req 7)');
    // A connection xenstored cannot place, and the XS_ spelling of the type.
    assert.equal(formatEvent({ ...e, domid: -1, type: 'XS_READ', payload: '' }), '[   12.345678] d?  xenstore IN  XS_READ tx=0 (conn 2 req 7)');
  });

  it('the known kinds, compactly: channels with their peer, grants, hypercalls, xenbus states, steps', () => {
    const lines = toTextLog(handshake()).split('\n');
    assert.ok(lines.includes('[    0.000028] d0  evtchn EVTCHNOP_bind_interdomain port=7 -> d1:5 remote_dom=1 remote_port=5'));
    assert.ok(lines.includes('[    0.000032] d1  evtchn EVTCHNOP_send port=5 -> d0:7'));
    assert.ok(lines.includes('[    0.000032] d0  evtchn evtchn_set_pending port=7 delivery=upcall vcpu=0'));
    assert.ok(lines.includes('[    0.000027] d0  gnttab map_grant_ref dom=1 ref=8 handle=0'));
    assert.ok(lines.includes('[    0.000016] d1  hypercall event_channel_op cmd=6 ret={"port":5}'));
    assert.ok(lines.includes('[    0.000015] d0  xenbus backend vbd/1/51712 XenbusStateInitWait (2)'));
    assert.equal(lines[0], '[    0.000000] d-  step attach vbd/51712 to dom1');
    // Failures show their code; successes do not repeat 0.
    assert.equal(formatEvent({ kind: 'evtchn', op: 'EVTCHNOP_send', domid: 3, port: 9, result: -22, t: 0 }),
      '[    0.000000] d3  evtchn EVTCHNOP_send port=9 rc=-22');
    assert.equal(formatEvent({ kind: 'gnttab', op: 'map_grant_ref', domid: 0, dom: 1, ref: 8, status: -4, t: 0 }),
      '[    0.000000] d0  gnttab map_grant_ref dom=1 ref=8 status=-4');
  });

  it('a xenbus event with only a state number names the state', () => {
    assert.equal(formatEvent({ kind: 'xenbus', domid: 1, role: 'frontend', device: 'vif/0', state: 6, t: 0 }),
      '[    0.000000] d1  xenbus frontend vif/0 XenbusStateClosed (6)');
  });

  it('any other kind prints all its fields as key=value, keys sorted; a known kind\'s new fields are kept too', () => {
    assert.equal(formatEvent({ kind: 'fault', target: 'conn 3', name: 'drop-watch', args: { n: 1, a: [2] }, t: 1_500_000_000 }),
      '[    1.500000] d-  fault args={"a":[2],"n":1} name=drop-watch target=conn 3');
    assert.equal(formatEvent({ kind: 'hypercall', domid: 2, op: '__HYPERVISOR_sched_op', cmd: 1, ret: 0, vcpu: 0 }),
      '[           -] d2  hypercall sched_op cmd=1 ret=0 vcpu=0');
  });

  it('stays one line whatever the payload holds: control characters are spelled out', () => {
    const line = formatEvent({ kind: 'console', domid: 1, line: 'a\nb\rc\u0000d\u001b[0m', t: 0 });
    assert.equal(line, '[    0.000000] d1  console line=a\\nb\\rc\\0d\\x1b[0m');
    assert.ok(!toTextLog(handshake()).trimEnd().split('\n').some((l) => l === ''));
  });

  it('can cut long payloads, saying how long they were', () => {
    const e: TraceRecord = { kind: 'xenstore', dir: 'OUT', conn: 1, domid: 0, type: 'DIRECTORY', req_id: 1, tx_id: 0, payload: 'x'.repeat(50), t: 0 };
    assert.equal(formatEvent(e, { maxPayload: 8 }), '[    0.000000] d0  xenstore OUT XS_DIRECTORY tx=0 xxxxxxxx...(50 chars) (conn 1 req 1)');
  });

  it('is deterministic: a line per event, each ended by a newline, the same whatever the key order', () => {
    const events = handshake();
    const log = toTextLog(events);
    assert.equal(log.split('\n').length, events.length + 1);
    assert.ok(log.endsWith('\n'));
    const reversed = events.map((e) => Object.fromEntries(Object.entries(e).reverse()) as TraceRecord);
    assert.equal(toTextLog(reversed), log);
    assert.equal(toTextLog([]), '');
  });
});
