// libxl__lock_domain_userdata: libxl takes a per-domain lock around every operation that changes
// a domain's configuration (its skeleton, each device added or removed, the cleanup on destroy),
// so a destroy never interleaves with half of a device being written. Here one toolstack serves
// every xl command, so the lock is a per-domain queue: operations on one domain run one at a time,
// in the order they asked; other domains are not held up.

export class DomainUserdataLocks {
  /** Per domain: settles once the last operation queued on it is done. */
  private readonly tails = new Map<number, Promise<void>>();

  /** Runs `op` once every earlier operation on `domid` is done. */
  async with<T>(domid: number, op: () => Promise<T>): Promise<T> {
    const before = this.tails.get(domid) ?? Promise.resolve();
    let release!: () => void;
    const tail = before.then(() => new Promise<void>((r) => (release = r)));
    this.tails.set(domid, tail);
    await before;
    try {
      return await op();
    } finally {
      release();
      if (this.tails.get(domid) === tail) this.tails.delete(domid);
    }
  }

  /** Whether an operation on `domid` is running or queued. */
  held(domid: number): boolean {
    return this.tails.has(domid);
  }
}
