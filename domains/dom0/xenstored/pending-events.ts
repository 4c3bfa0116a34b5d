// The watch events queued for one connection and not yet sent, for C's duplicate check in
// send_event() (XSA-326): an event whose payload (path and token) equals one still in the
// connection's out_list is dropped, so a peer that never reads holds at most one event per
// distinct payload. C walks the list with memcmp; here payloads are bucketed by a hash of their
// length and ends (the path differs at the front, the token at the back) and compared whole,
// so a guest's 4 KB tokens cost neither a string per event nor a walk of every pending event.

/** FNV-1a over the length and the first and last 32 bytes: a bucket, never the answer. */
function bucketOf(p: Uint8Array): number {
  let h = (0x811c9dc5 ^ p.length) >>> 0;
  const n = p.length;
  const head = Math.min(32, n);
  for (let i = 0; i < head; i++) h = Math.imul(h ^ p[i], 0x01000193);
  for (let i = Math.max(head, n - 32); i < n; i++) h = Math.imul(h ^ p[i], 0x01000193);
  return h >>> 0;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

export class PendingEvents {
  private readonly buckets = new Map<number, Uint8Array[]>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Records a queued event; false if an identical one is pending (the caller drops this one). */
  add(payload: Uint8Array): boolean {
    const h = bucketOf(payload);
    const b = this.buckets.get(h);
    if (b === undefined) {
      this.buckets.set(h, [payload]);
    } else {
      for (const p of b) if (same(p, payload)) return false;
      b.push(payload);
    }
    this.count++;
    return true;
  }

  /** An event left the queue (sent, timed out or discarded): an identical one may queue again. */
  remove(payload: Uint8Array): void {
    const h = bucketOf(payload);
    const b = this.buckets.get(h);
    const i = b === undefined ? -1 : b.findIndex((p) => same(p, payload));
    if (b === undefined || i < 0) throw new Error('xenstored: a pending watch event left the queue twice or was never queued');
    b.splice(i, 1);
    if (b.length === 0) this.buckets.delete(h);
    this.count--;
  }

  clear(): void {
    this.buckets.clear();
    this.count = 0;
  }
}
