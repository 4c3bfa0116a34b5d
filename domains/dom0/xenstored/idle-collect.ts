// When a standalone daemon goes quiet after clients left, it asks for one full garbage
// collection. Not in Xen (C xenstored frees a connection's memory as it closes it): V8 only
// collects when the program allocates, so a daemon that goes idle right after hostile guests left
// would keep their dead buffers, and the new space grown under their load, for as long as it stays
// idle - on Node 20 its memory reducer did not step in within 45 s in the soak bench.
// Time comes from the injected timer: the host's (the CLI's) clock, not a domain's.

export interface IdleCollectOptions {
  /**
   * How long the daemon must have read nothing from any client before each collection of a
   * quiet period, increasing (see cli.ts for why more than one).
   */
  readonly quietMs: readonly number[];
  /** How often it looks whether it is quiet (a fraction of quietMs). */
  readonly pollMs: number;
  /** Milliseconds, monotonic. */
  readonly now: () => number;
  /** Calls `fn` every `ms` milliseconds until the returned function is called. */
  readonly every: (fn: () => void, ms: number) => () => void;
  /** One full collection. */
  readonly collect: () => void;
}

export class IdleCollect {
  /** Chunks read from clients so far. */
  private input = 0;
  /** `input` as the last look saw it, and since when it stands there. */
  private seen = 0;
  private quietSince = 0;
  /** Collections made in this quiet period. */
  private made = 0;
  /** Stops the running look, if one runs. */
  private stop: (() => void) | undefined;
  /** Collections made. */
  collections = 0;

  constructor(private readonly opts: IdleCollectOptions) {
    const q = opts.quietMs;
    if (!(q.length > 0 && q[0] > 0 && q.every((ms, i) => i === 0 || ms > q[i - 1]) && opts.pollMs > 0)) {
      throw new Error(`quietMs must be positive and increasing, pollMs positive; got [${q.join(', ')}], ${opts.pollMs}`);
    }
  }

  /** A client's bytes came in. */
  read(): void {
    this.input++;
  }

  /** A client went away: collect as nothing is read for each of quietMs. */
  clientGone(): void {
    this.seen = this.input;
    this.quietSince = this.opts.now();
    this.made = 0;
    this.stop ??= this.opts.every(() => this.look(), this.opts.pollMs);
  }

  private look(): void {
    const now = this.opts.now();
    if (this.input !== this.seen) {
      // Busy again: the quiet period starts over (V8 collects as the daemon allocates).
      this.seen = this.input;
      this.quietSince = now;
      this.made = 0;
      return;
    }
    if (now - this.quietSince < this.opts.quietMs[this.made]) return;
    this.made++;
    this.collections++;
    if (this.made === this.opts.quietMs.length) {
      const stop = this.stop;
      this.stop = undefined;
      stop?.();
    }
    this.opts.collect();
  }
}
