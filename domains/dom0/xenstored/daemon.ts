// Routes messages between the core and the connection layer (connection.ts) under every
// transport (a Unix socket, a guest's ring page, an in-process stream). Whole decoded messages
// come in; the daemon hands back, per connection, the messages to send, flushing each touched
// connection once per batch.
import { type XsMessage, xsTypeName } from '../../../hypervisor/public/io/xs_wire.ts';
import { type Outcome, Xenstored, type XenstoredOptions } from './core.ts';
import type { TraceFile } from './trace.ts';

/** What the connection layer offers the daemon for one connection. */
export interface Sink {
  /** Queue a message (reply or watch event) for the peer. */
  send(msg: XsMessage): void;
  /** Push queued bytes out (one write / one ring update + notify). */
  flush(): void;
  /** The core ended this connection (RELEASE, domain death, protocol violation). */
  ended(): void;
}

export interface DaemonOptions extends XenstoredOptions {
  readonly trace?: TraceFile;
}

/** A request in, or a reply or watch event out, as a structured trace event. */
export interface XenstoreTraceEvent {
  readonly kind: 'xenstore';
  readonly dir: 'IN' | 'OUT';
  readonly conn: number;
  /** The domain behind the connection (0 for dom0 sockets). */
  readonly domid: number;
  readonly type: string;
  readonly req_id: number;
  readonly tx_id: number;
  /** Payload with NULs shown as \0 (values are bytes; latin1 keeps them one to one). */
  readonly payload: string;
}

export class XenstoredDaemon {
  readonly xs: Xenstored;
  private readonly sinks = new Map<number, Sink>();
  /**
   * Sinks with output since the last flush, each once, in the order first touched. An array, not
   * a Set: a Set cleared after every message gets a fresh hash table each time, and V8 links every
   * old table to the next, which ties dead tables together for the scavenger.
   */
  private readonly touched: Sink[] = [];
  /** The flush generation in which each sink was last added to `touched` (entries change in place). */
  private readonly touchedIn = new Map<Sink, number>();
  private generation = 0;
  /** Called after every batch, so transports can follow domain introductions and releases. */
  afterBatch: (() => void) | undefined;
  /** Structured trace of every message in and out (the simulator's trace stream). */
  onTrace: ((ev: XenstoreTraceEvent) => void) | undefined;

  constructor(readonly opts: DaemonOptions = {}) {
    this.xs = new Xenstored(opts);
  }

  attach(conn: number, sink: Sink): void {
    this.sinks.set(conn, sink);
  }

  /** Stops output to a connection (only if `only` is given: while that sink is the attached one). */
  detach(conn: number, only?: Sink): void {
    const sink = this.sinks.get(conn);
    if (sink === undefined || (only !== undefined && sink !== only)) return;
    const i = this.touched.indexOf(sink);
    if (i >= 0) this.touched.splice(i, 1);
    this.touchedIn.delete(sink);
    this.sinks.delete(conn);
  }

  /** Set by crash(): the daemon is gone; nothing is read or answered any more. */
  crashed = false;

  /**
   * The daemon process dies (a fault): requests stay unanswered, rings unread - clients hang, as
   * under real Xen without xenstored.
   */
  crash(): void {
    this.crashed = true;
  }

  /** One whole request from a connection; its output waits for flush() (one per batch). */
  request(conn: number, msg: XsMessage): void {
    if (this.crashed) return;
    this.opts.trace?.io(conn, 'IN', msg);
    if (this.onTrace) this.traceMsg(conn, 'IN', msg);
    this.route(this.xs.handle(conn, msg));
  }

  /** One request, its output flushed at once. */
  input(conn: number, msg: XsMessage): void {
    this.request(conn, msg);
    this.flush();
  }


  /** Delivers an outcome produced outside a request (domain death seen by the hypervisor). */
  route(outcome: Outcome): void {
    if (this.crashed) return;
    for (const d of outcome.deliveries) {
      this.opts.trace?.io(d.conn, 'OUT', d.msg);
      if (this.onTrace) this.traceMsg(d.conn, 'OUT', d.msg);
      this.queue(d.conn, d.msg);
    }
    for (const c of outcome.closed) {
      const sink = this.sinks.get(c);
      if (sink) {
        sink.flush();
        this.detach(c);
        sink.ended();
      }
    }
  }

  /** Connections kept out of the trace (the simulator's own inspection of the tree). */
  readonly untraced = new Set<number>();

  private traceMsg(conn: number, dir: 'IN' | 'OUT', msg: XsMessage): void {
    if (this.untraced.has(conn)) return;
    this.onTrace!({
      kind: 'xenstore', dir, conn, domid: this.xs.connections.get(conn)?.domid ?? -1,
      type: xsTypeName(msg.type), req_id: msg.req_id, tx_id: msg.tx_id,
      payload: Buffer.from(msg.payload.buffer, msg.payload.byteOffset, msg.payload.length).toString('latin1').replaceAll('\0', '\\0'),
    });
  }

  /** Nodes xenstored deleted on its own (a dead domain's, XSA-419), for the simulator's trace. */
  onRemovedOwned: ((ev: { kind: 'xenstored'; op: 'owned_nodes_removed'; owner: number; paths: string[] }) => void) | undefined;

  flush(): void {
    if (this.xs.removedOwned.length !== 0) {
      for (const r of this.xs.removedOwned.splice(0)) this.onRemovedOwned?.({ kind: 'xenstored', op: 'owned_nodes_removed', owner: r.domid, paths: r.paths });
    }
    this.afterBatch?.();
    // A sink's flush may touch others (and they are flushed too), as iterating a Set would.
    for (let i = 0; i < this.touched.length; i++) this.touched[i].flush();
    this.touched.length = 0;
    this.generation++;
  }

  private queue(conn: number, msg: XsMessage): void {
    const sink = this.sinks.get(conn);
    if (!sink) return;
    sink.send(msg);
    if (this.touchedIn.get(sink) !== this.generation) {
      this.touchedIn.set(sink, this.generation);
      this.touched.push(sink);
    }
  }
}
