// A hand-written trace of a vbd handshake in the simulator's trace format (fields as the xenstored
// daemon, the event-channel and grant-table models and the xenbus bus emit them; NULs in payloads
// shown as the two characters \0). The toolstack (dom0, conn 1) creates vbd/51712 for dom1 in a
// transaction; blkback (dom0, conn 3) and blkfront (dom1, conn 2) walk their XenbusStates; the
// frontend publishes ring-ref 8 and event channel 5, the backend maps and binds them; then the
// frontend notifies. Noise around it: another device (vif/0), dom1's own xenstore traffic and
// its xenstore event channel, raw hypercalls, a console line.

import type { TraceRecord } from '../../../sim/trace/events.ts';

const US = 1000;
let clock = 0;
/** Time advances by `dus` µs before the event (0: same instant, as lockstep often has). */
const at = (dus: number): number => (clock += dus * US);

export function xs(
  dir: 'IN' | 'OUT', conn: number, domid: number, type: string, req_id: number, tx_id: number, payload: string, dus = 1,
): TraceRecord {
  return { kind: 'xenstore', dir, conn, domid, type, req_id, tx_id, payload, t: at(dus) };
}

/** A request and its reply. */
function rr(conn: number, domid: number, type: string, req: number, tx: number, payload: string, reply = 'OK\\0'): TraceRecord[] {
  return [xs('IN', conn, domid, type, req, tx, payload), xs('OUT', conn, domid, type, req, tx, reply, 0)];
}

function xenbus(domid: number, role: 'frontend' | 'backend', device: string, path: string, state: number, stateName: string): TraceRecord {
  return { kind: 'xenbus', domid, role, device, path, state, stateName, t: at(0) };
}

export const FRONT = '/local/domain/1/device/vbd/51712';
export const BACK = '/local/domain/0/backend/vbd/1/51712';

export function handshake(): TraceRecord[] {
  clock = 0;
  return [
    { kind: 'step', name: 'attach vbd/51712 to dom1', t: at(0) },
    // Both drivers watch their areas.
    ...rr(3, 0, 'WATCH', 1, 0, '/local/domain/0/backend/vbd\\0be\\0'),
    ...rr(2, 1, 'WATCH', 1, 0, 'device\\0fe\\0'),
    // The toolstack writes both directories in one transaction (tx 7).
    xs('IN', 1, 0, 'TRANSACTION_START', 1, 0, '\\0'),
    xs('OUT', 1, 0, 'TRANSACTION_START', 1, 0, '7\\0'),
    ...rr(1, 0, 'WRITE', 2, 7, `${FRONT}/backend-id\\00`),
    ...rr(1, 0, 'WRITE', 3, 7, `${FRONT}/state\\01`),
    ...rr(1, 0, 'WRITE', 4, 7, `${BACK}/frontend-id\\01`),
    ...rr(1, 0, 'WRITE', 5, 7, `${BACK}/state\\01`),
    xs('IN', 1, 0, 'TRANSACTION_END', 6, 7, 'T\\0'),
    xs('OUT', 1, 0, 'TRANSACTION_END', 6, 7, 'OK\\0', 5),
    xs('OUT', 3, 0, 'WATCH_EVENT', 0, 0, `${BACK}\\0be\\0`, 0),
    xs('OUT', 2, 1, 'WATCH_EVENT', 0, 0, 'device/vbd/51712\\0fe\\0', 0),
    // blkback: InitWait.
    ...rr(3, 0, 'WRITE', 2, 0, `${BACK}/state\\02`),
    xenbus(0, 'backend', 'vbd/1/51712', `${BACK}/state`, 2, 'XenbusStateInitWait'),
    // blkfront: an event channel, then ring-ref, port and Initialised in a transaction (tx 3).
    { kind: 'evtchn', op: 'EVTCHNOP_alloc_unbound', domid: 1, port: 5, result: 0, args: { dom: 1, remote_dom: 0 }, t: at(1) },
    { kind: 'hypercall', domid: 1, op: '__HYPERVISOR_event_channel_op', cmd: 6, ret: { port: 5 }, t: at(0) },
    xs('IN', 2, 1, 'TRANSACTION_START', 2, 0, '\\0'),
    xs('OUT', 2, 1, 'TRANSACTION_START', 2, 0, '3\\0', 0),
    ...rr(2, 1, 'WRITE', 3, 3, 'device/vbd/51712/ring-ref\\08'),
    ...rr(2, 1, 'WRITE', 4, 3, 'device/vbd/51712/event-channel\\05'),
    ...rr(2, 1, 'WRITE', 5, 3, 'device/vbd/51712/state\\03'),
    xs('IN', 2, 1, 'TRANSACTION_END', 6, 3, 'T\\0'),
    xs('OUT', 2, 1, 'TRANSACTION_END', 6, 3, 'OK\\0', 0),
    xenbus(1, 'frontend', 'vbd/51712', `${FRONT}/state`, 3, 'XenbusStateInitialised'),
    // Another device of dom1 and dom1's own business: not part of vbd/51712.
    ...rr(2, 1, 'WRITE', 7, 0, 'device/vif/0/state\\01'),
    xenbus(1, 'frontend', 'vif/0', '/local/domain/1/device/vif/0/state', 1, 'XenbusStateInitialising'),
    ...rr(2, 1, 'WRITE', 8, 0, 'data/xenbus\\0connected'),
    { kind: 'evtchn', op: 'EVTCHNOP_send', domid: 1, port: 1, result: 0, args: { port: 1 }, remote: { domid: 0, port: 2 }, t: at(1) },
    // blkback reads the frontend's details, maps the ring, binds the channel: Connected.
    ...rr(3, 0, 'READ', 3, 0, `${FRONT}/ring-ref\\0`, '8'),
    ...rr(3, 0, 'READ', 4, 0, `${FRONT}/event-channel\\0`, '5'),
    { kind: 'gnttab', op: 'map_grant_ref', domid: 0, dom: 1, ref: 8, handle: 0, status: 0, t: at(1) },
    {
      kind: 'evtchn', op: 'EVTCHNOP_bind_interdomain', domid: 0, port: 7, result: 0,
      args: { remote_dom: 1, remote_port: 5 }, remote: { domid: 1, port: 5 }, t: at(1),
    },
    ...rr(3, 0, 'WRITE', 5, 0, `${BACK}/state\\04`),
    xenbus(0, 'backend', 'vbd/1/51712', `${BACK}/state`, 4, 'XenbusStateConnected'),
    // blkfront: Connected, then the first request's notification.
    ...rr(2, 1, 'WRITE', 9, 0, 'device/vbd/51712/state\\04'),
    xenbus(1, 'frontend', 'vbd/51712', `${FRONT}/state`, 4, 'XenbusStateConnected'),
    { kind: 'evtchn', op: 'EVTCHNOP_send', domid: 1, port: 5, result: 0, args: { port: 5 }, remote: { domid: 0, port: 7 }, t: at(2) },
    { kind: 'evtchn', op: 'evtchn_set_pending', domid: 0, port: 7, vcpu: 0, result: 0, delivery: 'upcall', t: at(0) },
    { kind: 'hypercall', domid: 1, op: '__HYPERVISOR_event_channel_op', cmd: 4, ret: 0, t: at(0) },
    { kind: 'console', domid: 1, line: 'blkfront: xvda: 8 sectors; #1 <ok>', t: at(3) },
  ];
}
