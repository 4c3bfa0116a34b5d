// oxenstored 4.17's bounds on queued watch events (XSA-326, tools/ocaml/xenstored/connection.ml
// and libs/xb/xb.ml), for the transports that carry its connections:
//  - a connection's output queue (Xb's pkt_out) holds at most quota-maxwatchevents (1024) events
//    not yet taken by the peer, beside quota-maxoutstanding replies;
//  - each watch keeps the events that did not fit in a pipe of its own, again at most
//    maxwatchevents;
//  - what does not fit there stays with the connection whose request fired it (its pending
//    source events, unbounded), and that connection is not read until they are all passed on.
// So a guest that never reads its events holds at most two queues' worth, and the writer whose
// requests fire them stops being served once they are full - on the oracle, dom0's 2,050th write
// under a watched path got no reply, and none came after the guest was released either (the
// events stay queued for a watch that is gone, whose queue never drains). Both are modelled.
// A watch is told apart by its token (the event's second string): two watches of one connection
// with one token and different paths share a pipe here.
import { XENSTORE_PAYLOAD_MAX, type XsMessage, XsdSockmsgType } from '../../../hypervisor/public/io/xs_wire.ts';

const E2BIG = Buffer.from('E2BIG\0', 'latin1');

/**
 * oxenstored's packet_of(): a message over XENSTORE_PAYLOAD_MAX goes out as it is on a socket; a
 * guest's ring (Xb's mmap backend) gets an E2BIG error in its place, for a watch event too.
 */
export function packetOf(msg: XsMessage, ring: boolean): XsMessage {
  if (!ring || msg.payload.length <= XENSTORE_PAYLOAD_MAX) return msg;
  return { type: XsdSockmsgType.XS_ERROR, req_id: msg.req_id, tx_id: msg.tx_id, payload: E2BIG };
}

/** oxenstored's quota-maxwatchevents default (oxenstored.conf, define.ml). */
export const OXENSTORED_MAXWATCHEVENTS = 1024;

/** One connection's side: what its transport does with an event it may send now. */
export interface XbPeer {
  /**
   * Hands an event to the transport (counted in flight until taken()); false if the transport
   * dropped it (a connection no longer served), which then is not in flight.
   */
  write(msg: XsMessage): boolean | void;
  /** Pushes written events out (outside a request's batch). */
  flush(): void;
  /** Its pending source events were all passed on: it may be read again. */
  unblocked(): void;
  /** A guest's ring (Xb's mmap backend), where a long event goes as an E2BIG error (packet_of). */
  readonly ring?: boolean;
}

interface Pending { readonly target: XbConnection; readonly watch: string; readonly msg: XsMessage }

/**
 * An event waiting in a watch's pipe, its payload held as a latin1 string: a pipe of a guest that
 * never reads holds a thousand events for as long as the guest stays, and in V8's heap their
 * memory goes back to the OS once they are collected (a malloc'd Uint8Array's would stay in the
 * daemon's RSS after the guest went).
 */
interface Piped { readonly type: number; readonly req_id: number; readonly tx_id: number; readonly payload: string }

const toPiped = (m: XsMessage): Piped =>
  ({ type: m.type, req_id: m.req_id, tx_id: m.tx_id, payload: Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.length).toString('latin1') });
const fromPiped = (p: Piped): XsMessage => ({ type: p.type, req_id: p.req_id, tx_id: p.tx_id, payload: Buffer.from(p.payload, 'latin1') });

export class XbConnection {
  /** Events handed to the transport and not yet taken by the peer (Xb's Watchevent class). */
  inFlight = 0;
  /** Per watch (token): events waiting for room in the output queue. */
  readonly pipes = new Map<string, Piped[]>();
  /** Events this connection's requests fired that no watch pipe had room for. */
  readonly sourcePending: Pending[] = [];
  /** The connection is gone: nothing it is sent is ever taken. */
  dead = false;

  constructor(readonly peer: XbPeer) {}

  /** Whether it may not be read (can_input): it still holds events it fired. */
  get blocked(): boolean {
    return this.sourcePending.length > 0;
  }
}

/** The token of a watch event ("path\0token\0"). */
function tokenOf(msg: XsMessage): string {
  const p = msg.payload;
  const a = p.indexOf(0);
  const b = a < 0 ? -1 : p.indexOf(0, a + 1);
  return a < 0 ? '' : Buffer.from(p.buffer, p.byteOffset + a + 1, (b < 0 ? p.length : b) - a - 1).toString('latin1');
}

export class XbWatchEvents {
  private readonly conns = new Set<XbConnection>();

  constructor(readonly maxWatchEvents: number = OXENSTORED_MAXWATCHEVENTS) {
    if (!(maxWatchEvents > 0)) throw new Error(`maxwatchevents must be positive, got ${maxWatchEvents}`);
  }

  open(peer: XbPeer): XbConnection {
    const c = new XbConnection(peer);
    this.conns.add(c);
    return c;
  }

  /**
   * The connection went away: its watches and pipes go, and so do the events it fired and still
   * held. Events others hold for it stay (their watch is gone, not their queue): they never drain.
   */
  close(c: XbConnection): void {
    c.dead = true;
    c.sourcePending.length = 0;
    this.conns.delete(c);
  }

  /**
   * The daemon process died and a new one took over: what it held in pipes and for sources was
   * its memory and is gone. What the transports hold (in flight) stays with them.
   */
  forgetHeld(): void {
    for (const c of this.conns) {
      c.pipes.clear();
      c.sourcePending.length = 0;
    }
  }

  /**
   * A watch event for `target`, fired by a request of `source` (undefined: fired by no connection
   * of this transport, which cannot be held back; it then goes to the pipe whatever its length).
   */
  event(target: XbConnection, msg: XsMessage, source: XbConnection | undefined): void {
    const watch = tokenOf(msg);
    if (source === undefined || source.dead) {
      if (!this.pipePush(target, watch, msg)) this.pipe(target, watch).push(toPiped(msg));
      return;
    }
    // Everything goes through the source's queue, so events keep their order behind ones held.
    source.sourcePending.push({ target, watch, msg });
    this.sourceFlush(source);
  }

  /** `target`'s peer took `n` events: the pipes move on, then the sources waiting for them. */
  taken(target: XbConnection, n: number): void {
    // A socket destroyed under its writes reports them done: a gone peer took nothing.
    if (target.dead) return;
    target.inFlight -= n;
    if (target.inFlight < 0) throw new Error(`xb: more events taken than were sent (${target.inFlight})`);
    // In the order of oxenstored's watch set (by token, as String.compare orders bytes).
    for (const w of [...target.pipes.keys()].sort()) this.pipeFlush(target, w);
    target.peer.flush();
    for (const s of this.conns) {
      if (!s.blocked) continue;
      this.sourceFlush(s);
      if (!s.blocked) s.peer.unblocked();
    }
  }

  private pipe(c: XbConnection, watch: string): Piped[] {
    let p = c.pipes.get(watch);
    if (p === undefined) c.pipes.set(watch, (p = []));
    return p;
  }

  /** Xb.queue for each event of the pipe while the output queue has room. */
  private pipeFlush(c: XbConnection, watch: string): void {
    const p = c.pipes.get(watch);
    if (p === undefined) return;
    let i = 0;
    while (i < p.length && c.inFlight < this.maxWatchEvents) {
      this.write(c, fromPiped(p[i]));
      i++;
    }
    if (i === p.length) c.pipes.delete(watch);
    else if (i > 0) p.splice(0, i);
  }

  /**
   * Xb.queue of one event. oxenstored's packet_of() has made a long event an E2BIG error on a
   * ring; Xb classifies that packet as a reply, so it is not counted among the events in flight.
   */
  private write(c: XbConnection, msg: XsMessage): void {
    const out = packetOf(msg, c.peer.ring ?? false);
    const counted = out.type === XsdSockmsgType.XS_WATCH_EVENT;
    if (counted) c.inFlight++;
    if (!c.dead && c.peer.write(out) === false && counted) c.inFlight--;
  }

  /** BoundedPipe.push on the watch's pipe: false if it is full. */
  private pipePush(c: XbConnection, watch: string, msg: XsMessage): boolean {
    this.pipeFlush(c, watch);
    if (!c.pipes.has(watch) && c.inFlight < this.maxWatchEvents) {
      // Nothing ahead of it and room in the output queue: it passes through the pipe at once.
      this.write(c, msg);
      return true;
    }
    const p = this.pipe(c, watch);
    if (p.length >= this.maxWatchEvents) return false;
    p.push(toPiped(msg));
    return true;
  }

  private sourceFlush(s: XbConnection): void {
    const q = s.sourcePending;
    let i = 0;
    while (i < q.length && this.pipePush(q[i].target, q[i].watch, q[i].msg)) i++;
    if (i > 0) q.splice(0, i);
  }
}
