// When a standalone daemon goes quiet after clients left, it asks for one full garbage
// collection. Not in Xen (C xenstored frees a connection's memory as it closes it): V8 only
// collects when the program allocates, so a daemon that goes idle right after hostile guests left
// would keep their dead buffers, and the new space grown under their load, for as long as it stays
// idle - on Node 20 its memory reducer did not step in within 45 s in the soak bench.
// Time comes from the injected timer: the host's (the CLI's) clock, not a domain's.

export interface IdleCollectOptions {
  /** How long the daemon must have read nothing from any client before it collects. */
  readonly quietMs: number;
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
  /** Stops the running look, if one runs. */
  private stop: (() => void) | undefined;
  /** Collections made. */
  collections = 0;

  constructor(private readonly opts: IdleCollectOptions) {
    if (!(opts.quietMs > 0 && opts.pollMs > 0)) throw new Error(`quietMs and pollMs must be positive, got ${opts.quietMs}, ${opts.pollMs}`);
  }

  /** A client's bytes came in. */
  read(): void {
    this.input++;
  }

  /** A client went away: collect once nothing was read for a whole quietMs. */
  clientGone(): void {
    this.seen = this.input;
    this.quietSince = this.opts.now();
    this.stop ??= this.opts.every(() => this.look(), this.opts.pollMs);
  }

  private look(): void {
    const now = this.opts.now();
    if (this.input !== this.seen) {
      this.seen = this.input;
      this.quietSince = now;
      return;
    }
    if (now - this.quietSince < this.opts.quietMs) return;
    const stop = this.stop;
    this.stop = undefined;
    stop?.();
    this.collections++;
    this.opts.collect();
  }
}
