// oxenstored 4.17's bounds on queued watch events (xb-watch-events.ts), with its defaults and the
// numbers its daemon showed on the oracle (../shared/oracle, Debian 4.17.7): guest 5 watched
// /churn with a 3.9 KB token and never read its ring; dom0 wrote under /churn. dom0's first 2,049
// writes were answered (2,050 events with the watch's first: one in the ring, 1,024 in the
// output queue, 1,024 in the watch's pipe, the last held by dom0's connection), its next write
// got no reply, nor did any after the guest was RELEASEd; a second dom0 connection was served.
import assert from 'node:assert/strict';
import { XsdSockmsgType as T, type XsMessage } from '../../../hypervisor/public/io/xs_wire.ts';
import { OXENSTORED_MAXWATCHEVENTS, type XbConnection, XbWatchEvents } from '../../../domains/dom0/xenstored/xb-watch-events.ts';

const event = (path: string, token: string): XsMessage => ({ type: T.XS_WATCH_EVENT, req_id: 0, tx_id: 0, payload: Buffer.from(`${path}\0${token}\0`, 'latin1') });

/** A connection whose peer records what reached it, and whether it was let go again. */
function peer(xb: XbWatchEvents): { c: XbConnection; got: string[]; unblocked: number } {
  const p = { c: undefined as unknown as XbConnection, got: [] as string[], unblocked: 0 };
  p.c = xb.open({ write: (m) => void p.got.push(Buffer.from(m.payload).toString('latin1')), flush: () => undefined, unblocked: () => void p.unblocked++ });
  return p;
}

describe('oxenstored watch-event bounds (quota-maxwatchevents)', () => {
  it('the default is oxenstored.conf\'s 1024', () => {
    assert.equal(new XbWatchEvents().maxWatchEvents, 1024);
    assert.equal(OXENSTORED_MAXWATCHEVENTS, 1024);
  });

  it('a guest that never reads: 1,024 events in its queue, 1,024 in its watch\'s pipe, then the writer is held (the oracle\'s 2,050th event)', () => {
    const xb = new XbWatchEvents();
    const dom0 = peer(xb);
    const guest = peer(xb);
    // The watch's first event, which the ring took in part (one event the peer took).
    xb.event(guest.c, event('/churn', 'tok'), undefined);
    xb.taken(guest.c, 1);
    let answered = 0;
    for (let i = 0; i < 3000 && !dom0.c.blocked; i++) {
      xb.event(guest.c, event(`/churn/k${i % 100}`, 'tok'), dom0.c);
      answered++; // the write that fired it is answered; only the next is not read
    }
    assert.equal(answered, 2049);
    assert.equal(guest.got.length, 1 + 1024, 'in the ring and the output queue');
    assert.equal(guest.c.pipes.get('tok')?.length, 1024);
    assert.ok(dom0.c.blocked);
    // The guest goes; what dom0 holds is for a watch whose queue never drains: dom0 stays held.
    xb.close(guest.c);
    xb.taken(dom0.c, 0);
    assert.ok(dom0.c.blocked);
    assert.equal(dom0.unblocked, 0);
    // dom0's connection closing frees what it held.
    xb.close(dom0.c);
    assert.equal(dom0.c.sourcePending.length, 0);
  });

  it('once the guest reads, the held events move on in order and the writer is read again', () => {
    const xb = new XbWatchEvents(2);
    const dom0 = peer(xb);
    const guest = peer(xb);
    for (let i = 0; i < 6; i++) xb.event(guest.c, event(`/e${i}`, 't'), dom0.c);
    assert.deepEqual(guest.got, ['/e0\0t\0', '/e1\0t\0']);
    assert.equal(dom0.c.sourcePending.length, 2);
    xb.taken(guest.c, 2);
    assert.deepEqual(guest.got.map((s) => s.split('\0')[0]), ['/e0', '/e1', '/e2', '/e3']);
    assert.equal(dom0.unblocked, 1);
    assert.ok(!dom0.c.blocked);
    xb.taken(guest.c, 2);
    xb.taken(guest.c, 2);
    assert.deepEqual(guest.got.map((s) => s.split('\0')[0]), ['/e0', '/e1', '/e2', '/e3', '/e4', '/e5']);
  });

  it('each watch (token) has a pipe of its own; a full one holds the writer even for other watches\' events', () => {
    const xb = new XbWatchEvents(1);
    const dom0 = peer(xb);
    const guest = peer(xb);
    const other = peer(xb);
    xb.event(guest.c, event('/a', 'x'), dom0.c); // queue
    xb.event(guest.c, event('/a', 'y'), dom0.c); // pipe y
    xb.event(guest.c, event('/a', 'x'), dom0.c); // pipe x
    assert.ok(!dom0.c.blocked);
    xb.event(guest.c, event('/b', 'x'), dom0.c); // pipe x full: held
    assert.ok(dom0.c.blocked);
    xb.event(other.c, event('/b', 'z'), dom0.c); // behind it, in order
    assert.deepEqual(other.got, []);
    xb.taken(guest.c, 1);
    assert.deepEqual(other.got, ['/b\0z\0']);
    assert.ok(!dom0.c.blocked);
  });
});
