// The watch events queued for one connection and not yet sent, for C's duplicate check in
// send_event() (XSA-326): an event whose payload (path and token) equals one still in the
// connection's out_list is dropped, so a peer that never reads holds at most one event per
// distinct payload. C walks the list with memcmp; here events are kept by path, each with its
// tokens, so the core can ask before it builds an event (has): a guest that never reads, watching
// a busy tree with a 4 KB token, then costs a lookup per write, not a 4 KB message.

const latin1 = (b: Uint8Array, from: number, to: number): string => Buffer.from(b.buffer, b.byteOffset + from, to - from).toString('latin1');

export class PendingEvents {
  /** Event path -> the tokens of the events pending for it (usually one). */
  private readonly byPath = new Map<string, string[]>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Whether an event "path\0token\0" is pending. */
  has(path: string, token: string): boolean {
    const t = this.byPath.get(path);
    return t !== undefined && t.includes(token);
  }

  /** Records a queued event; false if an identical one is pending (the caller drops this one). */
  add(payload: Uint8Array): boolean {
    const [path, token] = split(payload);
    const t = this.byPath.get(path);
    if (t === undefined) {
      this.byPath.set(path, [token]);
    } else {
      if (t.includes(token)) return false;
      t.push(token);
    }
    this.count++;
    return true;
  }

  /** An event left the queue (sent, timed out or discarded): an identical one may queue again. */
  remove(payload: Uint8Array): void {
    const [path, token] = split(payload);
    const t = this.byPath.get(path);
    const i = t === undefined ? -1 : t.indexOf(token);
    if (t === undefined || i < 0) throw new Error('xenstored: a pending watch event left the queue twice or was never queued');
    t.splice(i, 1);
    if (t.length === 0) this.byPath.delete(path);
    this.count--;
  }

  clear(): void {
    this.byPath.clear();
    this.count = 0;
  }
}

/** "path\0token\0" -> [path, token] (a payload without its NULs is kept whole as the path). */
function split(p: Uint8Array): [string, string] {
  const nul = p.indexOf(0);
  if (nul < 0) return [latin1(p, 0, p.length), ''];
  const end = p[p.length - 1] === 0 && p.length - 1 > nul ? p.length - 1 : p.length;
  return [latin1(p, 0, nul), latin1(p, nul + 1, end)];
}
