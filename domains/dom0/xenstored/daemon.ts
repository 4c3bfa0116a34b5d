// Routes messages between the core and the connection layer (connection.ts) under every
// transport (a Unix socket, a guest's ring page, an in-process stream). Whole decoded messages
// come in; the daemon hands back, per connection, the messages to send, flushing each touched
// connection once per batch.
import { type XsMessage, XsdSockmsgType, xsTypeName } from '../../../hypervisor/public/io/xs_wire.ts';
import { type Outcome, Xenstored, type XenstoredOptions } from './core.ts';
import { dumpState, luReply, luStep, outputMessages, readState, restoreOffline, type RestoredState } from './lu.ts';
import { ReplicationRecorder, Standby } from './replica.ts';
import { createReplicationLog, ReplicationLogReader, type ReplicationLogShared, ReplicationLogWriter } from './replication-log.ts';
import type { TraceFile } from './trace.ts';
import { packetOf, type XbConnection, XbWatchEvents } from './xb-watch-events.ts';

/** What the connection layer offers the daemon for one connection. */
export interface Sink {
  /** Queue a message (reply or watch event) for the peer; false if the transport dropped it. */
  send(msg: XsMessage): boolean | void;
  /** Push queued bytes out (one write / one ring update + notify). */
  flush(): void;
  /** The core ended this connection (RELEASE, domain death, protocol violation). */
  ended(): void;
  /** Live update: bytes read from the peer and not yet handled (a message read in part). */
  pendingInput?(): Uint8Array;
  /** Live update: the new instance's connection continues that partial message. */
  restoreInput?(bytes: Uint8Array): void;
  /** Live update: raw bytes to send first (the rest of a reply sent in part). */
  sendBytes?(bytes: Uint8Array): void;
  /** Live update: the output not yet sent, handed over (see XsTransport.takeOutput). */
  takeOutput?(): { data: Uint8Array; respLen: number };
  /** Restart: read what the peer sent while the daemon was down. */
  resume?(): void;
  /**
   * The transport tells the daemon when the peer took each watch event (eventsTaken()), so
   * profile ocaml bounds the events queued for it (xb-watch-events.ts). Without it, events go
   * straight to the transport.
   */
  readonly countsTaken?: boolean;
  /** Profile ocaml: the connection's held events were passed on; it may be read again. */
  unblocked?(): void;
}

export interface DaemonOptions extends XenstoredOptions {
  readonly trace?: TraceFile;
  /**
   * Where a live update's state stream goes and the new instance reads it from (C: the file
   * <rundir>/state_dump, removed once read). Default: kept in memory.
   */
  readonly stateDump?: {
    write(bytes: Uint8Array): void;
    /** May read into `into` (the written stream's buffer, no longer needed) when the file fits it. */
    read(into?: Uint8Array): Uint8Array;
    remove(): void;
  };
  /** Options of the new instance after a live update with `-c <cmdline>` (default: these). */
  readonly liveUpdateOptions?: (cmdline: string | undefined) => XenstoredOptions;
  /** Calls `fn` after `ms` milliseconds (a held live update looks again each second, as C polls). */
  readonly timer?: (fn: () => void, ms: number) => void;
  /** Start from a state stream written earlier (`xensim xenstored --restore`). */
  readonly restoreFrom?: Uint8Array;
  /**
   * The seed's replication (not in Xen: `--seed-replicas N`): N standbys follow every committed
   * change over a shared-memory log (replica.ts) and one takes over when this daemon dies
   * (failover()). Default 0: none, as real xenstored.
   */
  readonly seedReplicas?: number;
  /** The replication log's ring, in bytes (a power of two; default 16 MiB). */
  readonly seedReplicationLogBytes?: number;
  /**
   * Where the standbys run: 'inline' (default), objects of this thread that read the log after
   * each publish unless the host runs them as tasks of their own (Replication.onPublish);
   * 'threads', the host hands Replication.shared to standby threads (standby-thread.ts).
   */
  readonly seedStandbys?: 'inline' | 'threads';
}

/** The daemon's replication log and, when inline, its standbys. */
export interface Replication {
  readonly shared: ReplicationLogShared;
  readonly writer: ReplicationLogWriter;
  readonly recorder: ReplicationRecorder;
  /** In-process standbys ('inline'); empty when standby threads read the log. */
  readonly standbys: readonly Standby[];
  /** Told after each publish (a lockstep host wakes its standby tasks); default: inline standbys read once the ring is a quarter full. */
  onPublish: (() => void) | undefined;
}

/** One live update done: the stream's size, and its connections. */
export interface LiveUpdateDone {
  readonly bytes: number;
  readonly restored: RestoredState;
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
  /** The daemon instance; a live update replaces it with one read from the state stream. */
  xs: Xenstored;
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
  /**
   * Profile ocaml: Xb's bounds on queued watch events, over the connections of every transport
   * (xb-watch-events.ts); per connection, its side and whether its transport counts what the
   * peer takes (one that does not is still held as the source of events it fires).
   */
  private readonly xb: XbWatchEvents | undefined;
  private readonly xbConns = new Map<number, { readonly sink: Sink; readonly xbc: XbConnection }>();
  /** The connection whose request is being handled: what its request fires is held with it. */
  private source: number | undefined;
  /** Called after every batch, so transports can follow domain introductions and releases. */
  afterBatch: (() => void) | undefined;
  /** Structured trace of every message in and out (the simulator's trace stream). */
  onTrace: ((ev: XenstoreTraceEvent) => void) | undefined;

  constructor(readonly opts: DaemonOptions = {}) {
    this.xs = opts.restoreFrom !== undefined ? restoreOffline(opts.restoreFrom, opts) : new Xenstored(opts);
    if (this.xs.profile === 'ocaml') this.xb = new XbWatchEvents();
    if ((opts.seedReplicas ?? 0) > 0) this.startReplication();
  }

  /** The seed's replication, when asked for (`seedReplicas`). */
  replication: Replication | undefined;

  /** A new log and standbys following this.xs, its whole state published as the first batch. */
  private startReplication(): void {
    const n = this.opts.seedReplicas!;
    const shared = createReplicationLog(n, this.opts.seedReplicationLogBytes);
    const writer = new ReplicationLogWriter(shared);
    const inline = (this.opts.seedStandbys ?? 'inline') === 'inline';
    const standbys = inline ? Array.from({ length: n }, (_, i) => new Standby(new ReplicationLogReader(shared, i))) : [];
    const readAll = (): void => {
      for (const s of standbys) s.pump();
    };
    const r: Replication = { shared, writer, recorder: new ReplicationRecorder(writer), standbys, onPublish: undefined };
    // Inline standbys read once a quarter of the ring waits (reading each batch as it comes
    // costs the primary's thread their whole work every time); the host may run them sooner.
    writer.onPublish = () => {
      if (r.onPublish !== undefined) r.onPublish();
      else if (writer.room <= (3 * writer.capacity) / 4) {
        readAll();
        writer.refreshRoom();
      }
    };
    // A full ring: inline standbys read now; standby threads are waited for (a stalled thread
    // stalls the primary: acknowledging without the record would be a lie).
    writer.makeRoom = inline ? () => (readAll(), true) : () => {
      const nap = new Int32Array(new SharedArrayBuffer(4));
      for (let ms = 0; ms < 10_000; ms++) {
        if (writer.used() < writer.capacity) return true;
        Atomics.wait(nap, 0, 0, 1);
      }
      return false;
    };
    this.replication = r;
    r.recorder.follow(this.xs);
    // The host starts its standbys before the whole state goes out (it may not fit the ring).
    this.onReplicationRestarted?.();
    r.recorder.commit();
  }

  /** Told when a new log and standbys replace the old (after a failover or restart): the host runs them. */
  onReplicationRestarted: (() => void) | undefined;

  /** Publishes the batch so far: from here on its replies may leave (be acknowledged). */
  private replicate(): void {
    if (this.replication !== undefined && !this.crashed) this.replication.recorder.commit();
  }

  attach(conn: number, sink: Sink): void {
    this.sinks.set(conn, sink);
    this.replication?.recorder.touched();
    if (this.xb === undefined) return;
    const old = this.xbConns.get(conn);
    if (old !== undefined) this.xb.close(old.xbc);
    const xbc = this.xb.open({
      write: (m) => this.send(sink, m),
      ring: this.xs.connections.get(conn)?.kind === 'domain',
      flush: () => sink.flush(),
      unblocked: () => sink.unblocked?.(),
    });
    this.xbConns.set(conn, { sink, xbc });
  }

  /**
   * Profile ocaml (Xb.can_input): whether the daemon must not read this connection now - events
   * its requests fired still wait for room with their watchers.
   */
  inputHeld(conn: number): boolean {
    return this.xbConns.get(conn)?.xbc.blocked ?? false;
  }

  /**
   * Profile ocaml: watch events the daemon keeps for `conn` - handed to its transport and not
   * yet taken by the peer, and waiting in its watches' pipes - and those its requests fired that
   * wait for room with their watchers (undefined in profile c).
   */
  heldEvents(conn: number): { queued: number; piped: number; fired: number } | undefined {
    const e = this.xbConns.get(conn);
    if (e === undefined) return undefined;
    let piped = 0;
    for (const p of e.xbc.pipes.values()) piped += p.length;
    return { queued: e.xbc.inFlight, piped, fired: e.xbc.sourcePending.length };
  }

  /**
   * The transport of `conn` reports that its peer took `n` watch events off its queue (they left
   * the output queue, as Xb pops them): held events move on, and what they go to is flushed.
   */
  eventsTaken(conn: number, n: number, sink: Sink): void {
    const e = this.xbConns.get(conn);
    // A sink replaced or detached meanwhile (a gone peer took nothing).
    if (e === undefined || e.sink !== sink || !sink.countsTaken || n === 0) return;
    this.xb!.taken(e.xbc, n);
    this.flushTouched();
  }

  /** Stops output to a connection (only if `only` is given: while that sink is the attached one). */
  detach(conn: number, only?: Sink): void {
    const sink = this.sinks.get(conn);
    if (sink === undefined || (only !== undefined && sink !== only)) return;
    const i = this.touched.indexOf(sink);
    if (i >= 0) this.touched.splice(i, 1);
    this.touchedIn.delete(sink);
    this.sinks.delete(conn);
    this.replication?.recorder.touched();
    const e = this.xbConns.get(conn);
    if (e !== undefined && e.sink === sink) {
      this.xb!.close(e.xbc);
      this.xbConns.delete(conn);
    }
  }

  /** Set by crash(): the daemon is gone; nothing is read or answered any more. */
  crashed = false;
  /** crash() armed to strike while handling the next request from this domain's connection. */
  private crashOnRequestFrom: number | undefined;
  /** Told when the daemon dies (at once, or at the request an armed crash waited for). */
  onCrash: (() => void) | undefined;

  /**
   * The daemon process dies (a fault): requests stay unanswered, rings unread - clients hang, as
   * under real Xen without xenstored. With `whileHandling`, it dies on reading the next request
   * from that domain (a request that crashes xenstored): the request is consumed and never
   * answered, the state is what the batches before it left.
   */
  crash(opts: { readonly whileHandlingRequestFrom?: number } = {}): void {
    if (opts.whileHandlingRequestFrom !== undefined) {
      this.crashOnRequestFrom = opts.whileHandlingRequestFrom;
      return;
    }
    this.die();
  }

  private die(): void {
    // What was staged since the last publish was never acknowledged: it dies with the process.
    this.replication?.recorder.drop();
    this.replication?.writer.markDead();
    this.crashed = true;
    this.crashOnRequestFrom = undefined;
    this.onCrash?.();
  }

  /**
   * A new daemon process started after a crash from the dead one's last state: what a daemon
   * that persists its state after every batch (oxenstored's `persistent` database, read back with
   * `--restart`) would find - the tree with its ACLs, the quotas, the domains with their rings and
   * event channels, every connection and its watches, in the stream format of a live update
   * (xenstore-migration.md). The daemon changes state only inside a batch and dies between two,
   * so that state is the dead instance's own, taken here once rather than written after every
   * batch of every run. What lived only in the dead process is gone: partial input, replies not
   * yet written, what open transactions read and wrote. Their ids are kept (TRANSACTION_DATA
   * records without their pending nodes): a commit fails with EAGAIN and the client starts the
   * transaction over, where an unknown id would be an error no client retries. The transports
   * re-attach the rings (the caller); in-process clients' sinks carry on with what they sent
   * meanwhile.
   */
  restart(): RestoredState {
    if (!this.crashed) throw new Error('xenstored restart: the daemon is running');
    const empty = new Uint8Array(0);
    const bytes = dumpState(this.xs, { input: () => empty, output: () => ({ data: empty, respLen: 0 }) }, { transactions: true });
    return this.takeOver(bytes);
  }

  /**
   * The seed's failover: the daemon died and a standby takes over. Standby 0 reads the rest of
   * the log (batches the primary published: every acknowledged one) and the new daemon is read
   * from the stream it writes, as restart() reads the dead one's (the same connections, watches
   * and transaction ids; what only the dead process held is gone). `stream`: a standby thread's,
   * written there (seedStandbys 'threads'). The new daemon starts a fresh set of standbys.
   */
  failover(stream?: Uint8Array): RestoredState {
    if (!this.crashed) throw new Error('xenstored failover: the daemon is running');
    const r = this.replication;
    if (r === undefined) throw new Error('xenstored failover: no standbys (seedReplicas 0)');
    let bytes = stream;
    if (bytes === undefined) {
      const standby = r.standbys[0];
      if (standby === undefined) throw new Error('xenstored failover: the standbys are threads: give their stream');
      standby.catchUp();
      // Log indexes: the standby holds every batch published, and nothing else.
      if (standby.applied !== r.recorder.seq || standby.reader.available() !== 0) {
        throw new Error(`xenstored failover: standby applied batch ${standby.applied} of ${r.recorder.seq}`);
      }
      bytes = standby.stream(this.opts);
    }
    return this.takeOver(bytes);
  }

  /** A new daemon instance from a dead one's state stream takes over every connection it names. */
  private takeOver(bytes: Uint8Array): RestoredState {
    const restored = readState(bytes, this.opts, { transactions: true });
    restored.xs.setUpDomain = this.xs.setUpDomain;
    restored.xs.syslog = this.xs.syslog;
    this.xs = restored.xs;
    this.crashed = false;
    this.xb?.forgetHeld();
    this.touched.length = 0;
    this.generation++;
    if (this.replication !== undefined) this.startReplication();
    for (const [conn, sink] of [...this.sinks]) {
      if (this.xs.connections.has(conn)) continue;
      this.detach(conn);
      sink.ended();
    }
    for (const sink of [...this.sinks.values()]) sink.resume?.();
    this.flush();
    return restored;
  }

  /** One whole request from a connection; its output waits for flush() (one per batch). */
  request(conn: number, msg: XsMessage): void {
    if (this.crashed) return;
    if (this.crashOnRequestFrom !== undefined && this.xs.connections.get(conn)?.domid === this.crashOnRequestFrom) {
      this.die();
      return;
    }
    this.opts.trace?.io(conn, 'IN', msg);
    if (this.onTrace) this.traceMsg(conn, 'IN', msg);
    const rec = this.replication?.recorder;
    if (rec !== undefined) {
      rec.request(msg.type);
      this.inRequest = true;
    }
    const prev = this.source;
    try {
      const outcome = this.xs.handle(conn, msg);
      // Profile ocaml: the events this request fires are held against this connection.
      this.source = conn;
      this.route(outcome);
    } finally {
      this.source = prev;
      this.inRequest = false;
    }
  }

  private inRequest = false;

  /** One request, its output flushed at once. */
  input(conn: number, msg: XsMessage): void {
    this.request(conn, msg);
    this.flush();
  }

  /** Delivers an outcome produced outside a request (domain death seen by the hypervisor). */
  route(outcome: Outcome): void {
    if (this.crashed) return;
    if (!this.inRequest) this.replication?.recorder.touched();
    for (const d of outcome.deliveries) {
      this.opts.trace?.io(d.conn, 'OUT', d.msg);
      if (this.onTrace) this.traceMsg(d.conn, 'OUT', d.msg);
      this.queue(d.conn, d.msg);
    }
    for (const c of outcome.closed) {
      const sink = this.sinks.get(c);
      if (sink) {
        this.replicate();
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
    if (this.xs.luStart !== undefined || this.xs.delayed.size !== 0) this.liveUpdateStep();
    if (this.xs.removedOwned.length !== 0) {
      for (const r of this.xs.removedOwned.splice(0)) this.onRemovedOwned?.({ kind: 'xenstored', op: 'owned_nodes_removed', owner: r.domid, paths: r.paths });
    }
    this.afterBatch?.();
    // Connections that stopped reading (memory quota) look again, as C's main loop does.
    if (this.stalled.size !== 0) {
      const again = [...this.stalled];
      this.stalled.clear();
      for (const f of again) f();
    }
    // The batch is in the log before any of its replies leaves (acknowledged = sent).
    this.replicate();
    this.flushTouched();
  }

  private flushTouched(): void {
    // A sink's flush may touch others (and they are flushed too), as iterating a Set would.
    for (let i = 0; i < this.touched.length; i++) this.touched[i].flush();
    this.touched.length = 0;
    this.generation++;
  }

  /** Transports that stopped reading a connection and want to look again after the next batch. */
  readonly stalled = new Set<() => void>();

  /**
   * Calls `fn` after `ms` milliseconds of the daemon's clock (C's poll timeout for the write-rate
   * limiter and the watch-event timeout); false if this daemon has no timer.
   */
  after(ms: number, fn: () => void): boolean {
    if (!this.opts.timer) return false;
    this.opts.timer(fn, ms);
    return true;
  }

  /** Told after each live update (the transports' and the tests' hook). */
  onLiveUpdate: ((done: LiveUpdateDone) => void) | undefined;
  private luTimer = false;

  /**
   * The held live update (do_lu_start) and the requests held for it (process_delayed_message):
   * looked at after every batch, and each second while it waits for transactions to end.
   */
  private liveUpdateStep(): void {
    const step = luStep(this.xs);
    if (step.kind === 'wait') {
      if (!this.luTimer && this.opts.timer) {
        this.luTimer = true;
        this.opts.timer(() => {
          this.luTimer = false;
          this.flush();
        }, 1000);
      }
    } else if (step.kind === 'reply') {
      this.route({ deliveries: [{ conn: step.conn, msg: step.msg }], closed: [] });
    } else if (step.kind === 'go') {
      const failure = this.liveUpdate();
      if (failure !== undefined) {
        this.xs.luStart = undefined;
        this.xs.lu = undefined;
        const r = luReply(step.start, failure);
        this.route({ deliveries: [{ conn: r.conn, msg: r.msg }], closed: [] });
      }
    }
    // Held requests run once no update is pending (aborted, refused, or done: the new instance's).
    if (this.xs.lu === undefined && this.xs.delayed.size !== 0) this.route(this.xs.runDelayed());
  }

  /**
   * The switch: what is queued goes out, the state is dumped (the -s's OK inside), a new
   * instance reads it and takes over every connection. Returns the failure text if it could
   * not (the old instance carries on, as C does when the new binary cannot be started).
   */
  private liveUpdate(): string | undefined {
    const old = this.xs;
    const start = old.luStart!;
    this.replicate();
    for (let i = 0; i < this.touched.length; i++) this.touched[i].flush();
    this.touched.length = 0;
    this.generation++;
    const empty = new Uint8Array(0);
    // Output handed over by the transports, given back if the new instance does not start.
    const taken = new Map<number, { data: Uint8Array; respLen: number }>();
    const bytes = dumpState(old, {
      input: (c) => this.sinks.get(c)?.pendingInput?.() ?? empty,
      output: (c) => {
        const t = this.sinks.get(c)?.takeOutput?.() ?? { data: empty, respLen: 0 };
        if (t.data.length !== 0) taken.set(c, t);
        return t;
      },
    }, { start });
    let restored: RestoredState;
    try {
      let stream: Uint8Array = bytes;
      if (this.opts.stateDump) {
        this.opts.stateDump.write(bytes);
        stream = this.opts.stateDump.read(bytes);
        this.opts.stateDump.remove();
      }
      const opts = this.opts.liveUpdateOptions?.(old.lu!.cmdline) ?? this.opts;
      restored = readState(stream, opts);
    } catch (e) {
      for (const [conn, t] of taken) this.resend(conn, t.data, t.respLen);
      return `Error activating new binary: ${(e as Error).message}`;
    }
    const xs = restored.xs;
    xs.setUpDomain = old.setUpDomain;
    this.xs = xs;
    // The new instance numbers its generations afresh: the standbys get its whole state.
    this.replication?.recorder.follow(xs);
    for (const [conn, rc] of restored.connections) {
      const sink = this.sinks.get(conn);
      if (sink === undefined) continue;
      sink.restoreInput?.(rc.partialInput);
      this.resend(conn, rc.output, rc.respLen);
    }
    // Sinks of connections the stream did not carry have nothing to talk to any more.
    for (const [conn, sink] of [...this.sinks]) {
      if (restored.connections.has(conn) || xs.connections.has(conn)) continue;
      this.detach(conn);
      sink.ended();
    }
    this.onLiveUpdate?.({ bytes: bytes.length, restored });
    return undefined;
  }

  /** Output carried over a live update, sent before anything new: raw bytes, then whole messages. */
  private resend(conn: number, output: Uint8Array, respLen: number): void {
    const sink = this.sinks.get(conn);
    if (sink === undefined || output.length === 0) return;
    const { raw, messages } = outputMessages(output, respLen);
    if (raw.length !== 0) {
      if (sink.sendBytes === undefined) throw new Error(`xenstored: connection ${conn} cannot take the rest of a reply sent in part`);
      sink.sendBytes(raw);
    }
    for (const m of messages) {
      this.opts.trace?.io(conn, 'OUT', m);
      if (this.onTrace) this.traceMsg(conn, 'OUT', m);
      this.queue(conn, m);
    }
  }

  /** The whole state as a stream (`xensim xenstored --dump`): what a live update writes, without a -s. */
  dump(): Uint8Array {
    const empty = new Uint8Array(0);
    return dumpState(this.xs, { input: (c) => this.sinks.get(c)?.pendingInput?.() ?? empty, output: () => ({ data: empty, respLen: 0 }) });
  }

  private queue(conn: number, msg: XsMessage): void {
    const sink = this.sinks.get(conn);
    if (!sink) return;
    const e = this.xbConns.get(conn);
    // Events held in oxenstored's pipes keep their watch: the pipe applies packet_of as it sends.
    if (e !== undefined && sink.countsTaken && msg.type === XsdSockmsgType.XS_WATCH_EVENT) {
      const source = this.source !== undefined ? this.xbConns.get(this.source)?.xbc : undefined;
      this.xb!.event(e.xbc, msg, source);
      return;
    }
    // In profile c the core has refused long replies and dropped long events already.
    this.send(sink, packetOf(msg, this.xs.connections.get(conn)?.kind === 'domain'));
  }

  private send(sink: Sink, msg: XsMessage): boolean | void {
    const queued = sink.send(msg);
    if (this.touchedIn.get(sink) !== this.generation) {
      this.touchedIn.set(sink, this.generation);
      this.touched.push(sink);
    }
    return queued;
  }
}
