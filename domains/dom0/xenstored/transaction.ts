// Database views: the committed tree, and a transaction's private view of it.
//
// C xenstored (profile c) is optimistic per node: the first look at a node records its
// generation (or its absence) and keeps a private copy; commit fails with EAGAIN if any
// recorded node changed meanwhile. oxenstored (profile ocaml) reads a snapshot of the whole
// tree taken at TRANSACTION_START; here the snapshot is built lazily from pre-images the store
// hands over before it changes a node.
import type { EntryQuota } from './quota.ts';
import type { Perms } from './permissions.ts';
import { join, parentOf, basename, isChild } from './path.ts';
import type { PreImage, SnapshotListener, Store, XsNode } from './store.ts';

export interface NodeData {
  readonly value: string;
  readonly perms: Perms;
  readonly gen: number;
}

/** An ACL with the generation of the node carrying it (stale entries are judged by it). */
export interface AclAt {
  readonly perms: Perms;
  readonly gen: number;
}

/** A removed node, reported children first. */
export interface Removed {
  readonly path: string;
  readonly node: AclAt;
  readonly parent: AclAt;
}

/** What the request handlers see: the same operations on the committed tree or in a transaction. */
export interface Db {
  read(path: string): NodeData | undefined;
  /** The node as this view has it, without recording a look (a transaction's access list stays). */
  peek(path: string): NodeData | undefined;
  children(path: string): readonly string[];
  /** Creates a node whose parent exists in this view. */
  create(path: string, value: string, perms: Perms): void;
  setValue(path: string, value: string): void;
  setPerms(path: string, perms: Perms): void;
  /** Removes an existing subtree; returns what went, children before parents. */
  remove(path: string): Removed[];
  /** Owner's node count as this view would leave it. */
  ownedBy(domid: number): number;
}

export class CommittedDb implements Db {
  constructor(readonly store: Store) {}

  read(path: string): NodeData | undefined {
    return this.store.get(path);
  }

  peek(path: string): NodeData | undefined {
    return this.store.get(path);
  }

  children(path: string): readonly string[] {
    const n = this.store.get(path);
    return n ? this.store.childNames(n) : [];
  }

  create(path: string, value: string, perms: Perms): void {
    const parentPath = parentOf(path);
    this.store.create(parentPath, this.store.get(parentPath)!, basename(path), value, perms);
  }

  setValue(path: string, value: string): void {
    this.store.setValue(path, this.store.get(path)!, value);
  }

  setPerms(path: string, perms: Perms): void {
    this.store.setPerms(path, this.store.get(path)!, perms);
  }

  remove(path: string): Removed[] {
    const out: Removed[] = [];
    this.store.remove(path, (p: string, n: XsNode, parent: XsNode) =>
      out.push({ path: p, node: { perms: n.perms, gen: n.gen }, parent: { perms: parent.perms, gen: parent.gen } }));
    return out;
  }

  ownedBy(domid: number): number {
    return this.store.ownedBy(domid);
  }
}

export const NO_GENERATION = -1;

/** Child-name sets of large pre-images: every name created under a big directory asks. */
const childSets = new WeakMap<PreImage, Set<string>>();

function hadChild(img: PreImage, name: string): boolean {
  const kids = img.children;
  if (kids === undefined) return false;
  if (kids.length <= 16) return kids.includes(name);
  let set = childSets.get(img);
  if (set === undefined) childSets.set(img, (set = new Set(kids)));
  return set.has(name);
}

/** A snapshot's view of a node: not there at its start, or there as the tree has it now. */
const ABSENT = Symbol('absent at the start');
const LIVE = Symbol('unchanged since the start');

/** A transaction's view lost track of a parent's child (C: corrupt(), EIO). */
export class TxCorruptError extends Error {
  constructor() {
    super('EIO');
  }
}

/** accessed_node: one node a transaction looked at. */
interface Accessed {
  /** Generation seen at first access; NO_GENERATION when the node was absent. */
  readonly seenGen: number;
  /** The node as this transaction sees it; undefined = absent. */
  data: { value: string; perms: Perms; gen: number } | undefined;
  /** `data` was created inside this transaction (it is written at commit whatever its value). */
  created: boolean;
  /** Child names, copied on first need. */
  kids: string[] | undefined;
  modified: boolean;
  /** Watch events to fire at commit. */
  fire: boolean;
  exact: boolean;
  /** ACLs that qualify readers for the commit-time event (old ones count too). */
  firePerms: AclAt[];
}

/** An operation of an oxenstored-style transaction, replayed at commit when others changed the store. */
export interface RecordedOp {
  readonly type: number;
  readonly payload: Uint8Array;
  reply: string;
}

export type TxStyle = 'c' | 'ocaml';

export class Transaction implements Db, SnapshotListener {
  readonly accessed = new Map<string, Accessed>();
  /** Set when a failure inside the transaction means it can no longer commit (ENOMEM at end). */
  failed = false;
  /**
   * Carried over by the seed's migration (seed-migration.ts, not Xen): what it read and wrote at
   * the source is gone, so its commit fails with EAGAIN and the client retries.
   */
  carriedOver = false;
  /** Changes in node ownership made inside, for the node quota at commit. */
  readonly ownerDelta = new Map<number, number>();
  /** oxenstored: the store's generation at start, recorded operations, snapshot pre-images. */
  readonly startGen: number;
  readonly ops: RecordedOp[] = [];
  private readonly pre = new Map<string, PreImage>();
  /** oxenstored: the events this transaction's writes raised, to fire at commit. */
  readonly events: { path: string; exact: boolean; perms: AclAt[]; removed?: Removed[]; setPerms?: boolean }[] = [];

  /**
   * C 4.17 keeps a transaction's node copies in the data base under `<generation>/<path>` and
   * charges them to the connection's domain: bytes charged per path (record plus that key).
   */
  readonly charged = new Map<string, number>();
  private chargedTotal = 0;

  /** The key prefix of this transaction's node copies (C: trans->generation and a slash). */
  get keyPrefix(): string {
    return `${this.startGen - 1}/`;
  }

  /** Memory charged for this transaction's node copies. */
  get memory(): number {
    return this.chargedTotal;
  }

  /** A node copy written (its new size replaces what was charged for that path). */
  charge(path: string, bytes: number): void {
    this.chargedTotal += bytes - (this.charged.get(path) ?? 0);
    this.charged.set(path, bytes);
  }

  constructor(
    readonly id: number,
    readonly store: Store,
    readonly style: TxStyle,
    /** transaction-nodes quota for this connection (0 = unlimited). */
    private readonly nodeQuota: number,
    /**
     * C: every change inside the transaction takes a global generation count (access_node()
     * for a write or delete), so domains that become known later are younger than the copy,
     * and the node copy carries that count for the stale-ACL rule.
     */
    private readonly stampWrites = false,
  ) {
    this.startGen = store.generation;
    store.snapshots.add(this);
  }

  close(): void {
    this.store.snapshots.delete(this);
  }

  /**
   * A new scratch transaction over this one's start tree (none of its own changes): oxenstored's
   * Store.copy of a kept tree. Synchronous use only, then close() it.
   */
  forkStart(): Transaction {
    const t = new Transaction(0, this.store, 'ocaml', 0);
    for (const [path, image] of this.pre) t.pre.set(path, image);
    return t;
  }

  /** Pre-images kept of nodes changed since the start (what holding it open costs). */
  get preImages(): number {
    return this.pre.size;
  }

  // --- SnapshotListener ---
  /**
   * oxenstored reads the tree as it was at the start. C copies a node's record (children
   * included) at the first look: only an accessed node whose child list was not taken yet needs
   * its pre-image kept.
   */
  has(path: string): boolean {
    // oxenstored: a node that was not there at the start needs no pre-image (its parent's says
    // so), or a transaction held open would grow with every new name created meanwhile.
    if (this.style === 'ocaml') return this.pre.has(path) || this.start(path) === ABSENT;
    if (this.pre.has(path)) return true;
    const a = this.accessed.get(path);
    return a === undefined || a.kids !== undefined;
  }
  preserve(path: string, image: PreImage): void {
    this.pre.set(path, image);
  }

  /**
   * oxenstored style: `path` as it was at the start - its pre-image; ABSENT when the nearest
   * ancestor with a pre-image did not have it below (no node without a pre-image changed since
   * the start, so nothing between that ancestor and `path` did); LIVE when the tree has it as
   * it was.
   */
  private start(path: string): PreImage | typeof ABSENT | typeof LIVE {
    const img = this.pre.get(path);
    if (img !== undefined) return img;
    for (let child = path; child !== '/';) {
      const p = parentOf(child);
      const up = this.pre.get(p);
      if (up !== undefined) return up.node !== undefined && hadChild(up, basename(child)) ? LIVE : ABSENT;
      child = p;
    }
    return LIVE;
  }

  /** The base the transaction reads from: live tree (c) or its start snapshot (ocaml). */
  private base(path: string): { data: NodeData | undefined; kids: () => string[] } {
    const img = this.style === 'ocaml' ? this.start(path) : this.pre.get(path) ?? LIVE;
    if (img === ABSENT) return { data: undefined, kids: () => [] };
    if (img !== LIVE) {
      return { data: img.node, kids: () => [...(img.children ?? [])] };
    }
    const n = this.store.get(path);
    return { data: n, kids: () => (n ? this.store.childNames(n) : []) };
  }

  /** access_node(): records the first look at a node. Throws 'ENOSPC' over the quota. */
  private access(path: string): Accessed {
    let a = this.accessed.get(path);
    if (a !== undefined) return a;
    if (this.nodeQuota > 0 && this.accessed.size >= this.nodeQuota) {
      this.failed = true;
      throw new TxQuotaError();
    }
    const b = this.base(path);
    a = {
      seenGen: b.data ? b.data.gen : NO_GENERATION,
      data: b.data ? { value: b.data.value, perms: b.data.perms, gen: b.data.gen } : undefined,
      created: false,
      kids: undefined,
      modified: false,
      fire: false,
      exact: false,
      firePerms: [],
    };
    this.accessed.set(path, a);
    return a;
  }

  private kidsOf(path: string, a: Accessed): string[] {
    if (a.kids === undefined) a.kids = this.base(path).kids();
    return a.kids;
  }

  read(path: string): NodeData | undefined {
    return this.access(path).data;
  }

  peek(path: string): NodeData | undefined {
    const a = this.accessed.get(path);
    return a !== undefined ? a.data : this.base(path).data;
  }

  /** The node as the tree was when the transaction started (oxenstored's oldroot; open transactions only). */
  startNode(path: string): NodeData | undefined {
    return this.base(path).data;
  }

  children(path: string): readonly string[] {
    const a = this.access(path);
    return a.data ? this.kidsOf(path, a) : [];
  }

  private own(domid: number, delta: number): void {
    this.ownerDelta.set(domid, (this.ownerDelta.get(domid) ?? 0) + delta);
  }

  create(path: string, value: string, perms: Perms): void {
    const a = this.access(path);
    const parentPath = parentOf(path);
    const p = this.access(parentPath);
    this.kidsOf(parentPath, p).push(basename(path));
    p.modified = true;
    const gen = this.stamp();
    if (gen !== NO_GENERATION) p.data = { ...p.data!, gen };
    a.data = { value, perms, gen };
    a.created = true;
    a.kids = [];
    a.modified = true;
    this.own(perms[0].id, 1);
  }

  setValue(path: string, value: string): void {
    const a = this.access(path);
    a.data = { ...a.data!, value, gen: this.stamp(a.data!.gen) };
    a.modified = true;
  }

  setPerms(path: string, perms: Perms): void {
    const a = this.access(path);
    this.own(a.data!.perms[0].id, -1);
    this.own(perms[0].id, 1);
    a.data = { ...a.data!, perms, gen: this.stamp(a.data!.gen) };
    a.modified = true;
  }

  /** A change's generation: the next global count (C), else `keep` (NO_GENERATION for a new node). */
  private stamp(keep = NO_GENERATION): number {
    return this.stampWrites ? this.store.generation++ : keep;
  }

  remove(path: string): Removed[] {
    const out: Removed[] = [];
    const parentPath = parentOf(path);
    const p = this.access(parentPath);
    const walk = (at: string, parentAcl: AclAt): void => {
      // Explicit stack: transactions may remove deep trees too.
      const stack: { at: string; parentAcl: AclAt; expanded: boolean }[] = [{ at, parentAcl, expanded: false }];
      while (stack.length) {
        const top = stack[stack.length - 1];
        const a = this.access(top.at);
        if (!top.expanded) {
          top.expanded = true;
          const kids = this.kidsOf(top.at, a);
          for (let i = kids.length - 1; i >= 0; i--) {
            stack.push({ at: join(top.at, kids[i]), parentAcl: { perms: a.data!.perms, gen: a.data!.gen }, expanded: false });
          }
          continue;
        }
        stack.pop();
        out.push({ path: top.at, node: { perms: a.data!.perms, gen: a.data!.gen }, parent: top.parentAcl });
        this.own(a.data!.perms[0].id, -1);
        a.data = undefined;
        a.kids = undefined;
        a.modified = true;
      }
    };
    walk(path, { perms: p.data!.perms, gen: p.data!.gen });
    const kids = this.kidsOf(parentPath, p);
    const i = kids.indexOf(basename(path));
    // The node was copied in before someone else removed it, the parent is read only now:
    // C's delete_child() finds no such child ("corrupt") and the RM fails with EIO.
    if (i < 0) throw new TxCorruptError();
    kids.splice(i, 1);
    p.modified = true;
    const gen = this.stamp();
    if (gen !== NO_GENERATION) p.data = { ...p.data!, gen };
    return out;
  }

  /** Counts as a write of `path` without changing it (oxenstored's MKDIR / records one). */
  touchWrite(path: string): void {
    this.access(path).modified = true;
  }

  ownedBy(domid: number): number {
    return this.store.ownedBy(domid) + (this.ownerDelta.get(domid) ?? 0);
  }

  /** queue_watches(): remember an event to fire at commit. */
  queueWatch(path: string, exact: boolean, perms: AclAt[]): void {
    const a = this.accessed.get(path);
    if (a === undefined) {
      this.failed = true;
      return;
    }
    if (!a.fire) {
      a.fire = true;
      a.exact = exact;
    } else if (!exact) {
      // A node removed as a child (exact) and then written again fires for watches above it too.
      a.exact = false;
    }
    a.firePerms.push(...perms);
  }

  /** C rule: does every node this transaction looked at still have the generation it saw? */
  unchanged(): boolean {
    for (const [path, a] of this.accessed) {
      const n = this.store.get(path);
      if ((n ? n.gen : NO_GENERATION) !== a.seenGen) return false;
    }
    return true;
  }

  /**
   * oxenstored's lowpaths: the common prefix of the paths its successful reads (read_lowpath)
   * and changes (write_lowpath: the node, or the parent it gained or lost a child in) reached.
   * Failed lookups, no-op MKDIRs and RMs of missing nodes set neither.
   */
  readLow: string | undefined;
  writeLow: string | undefined;
  /** oxenstored's write operations (its `paths`): WRITE, MKDIR, RM and SET_PERMS that changed something. */
  wops = 0;
  /** C's trans->node_created: a node was constructed in it (the commit then checks owners' quota). */
  nodeCreated = false;
  /**
   * oxenstored: a RELEASE inside the transaction reset the permissions of its own store (not the
   * committed one); its changes reach the store only as part of the transaction's tree.
   */
  releasedInside = false;
  /**
   * oxenstored (profile ocaml): the store's entry quota when the transaction started (t.quota),
   * and the transaction's own copy its operations change (its store's quota).
   */
  entriesAtStart: EntryQuota | undefined;
  entries: EntryQuota | undefined;

  lowRead(path: string): void {
    this.readLow = this.readLow === undefined ? path : commonPrefix(this.readLow, path);
  }

  lowWrite(path: string): void {
    this.writeLow = this.writeLow === undefined ? path : commonPrefix(this.writeLow, path);
  }

  /**
   * oxenstored's merge test (test_coalesce), for the read and the write lowpath each: the node
   * there is the very node the transaction started from (nothing below it changed since) and
   * every node above it kept its permissions; or it is missing then and now under a parent that
   * exists now.
   */
  canCoalesce(): boolean {
    return this.coalesces(this.readLow) && this.coalesces(this.writeLow);
  }

  private coalesces(low: string | undefined): boolean {
    if (low === undefined) return true;
    const then = this.base(low).data;
    const now = this.store.get(low);
    if (then === undefined && now === undefined) return low !== '/' && this.store.get(parentOf(low)) !== undefined;
    if (then === undefined || now === undefined) return false;
    if (this.store.subGen(now) >= this.startGen || this.store.rebuiltAt >= this.startGen) return false;
    for (let p = low; ; p = parentOf(p)) {
      const a = this.base(p).data;
      const b = this.store.get(p);
      if (a === undefined || b === undefined || !samePerms(a.perms, b.perms)) return false;
      if (p === '/') return true;
    }
  }

  /**
   * Applies the private copies to the committed tree (finalize_transaction); returns the events
   * to fire, in first-access order. The caller has checked the commit may proceed.
   */
  /** Paths finalize_transaction() writes or deletes, in its (first-access) order. */
  modifiedInOrder(): string[] {
    const out: string[] = [];
    for (const [path, a] of this.accessed) if (a.modified) out.push(path);
    return out;
  }

  apply(rewriteAll: boolean, under?: string): { path: string; exact: boolean; perms: AclAt[]; firstSeenMissing: boolean }[] {
    const store = this.store;
    // `under`: oxenstored's merge grafts the subtree at the write lowpath only.
    const entries = [...this.accessed].filter(([path, a]) => a.modified && (under === undefined || isChild(path, under)));
    // Deletions first (a re-created node keeps its entry as a write), then writes by depth.
    for (const [path, a] of entries) {
      if (a.data === undefined && path !== '/' && store.get(path)) store.remove(path);
    }
    const depth = (p: string): number => (p === '/' ? 0 : p.split('/').length);
    const writes = entries.filter(([, a]) => a.data !== undefined).sort((x, y) => depth(x[0]) - depth(y[0]));
    for (const [path, a] of writes) {
      const d = a.data!;
      const n = store.get(path);
      if (n === undefined) {
        const parentPath = parentOf(path);
        store.create(parentPath, store.get(parentPath)!, basename(path), d.value, d.perms);
        continue;
      }
      let written = false;
      if (n.value !== d.value || a.created) {
        store.setValue(path, n, d.value);
        written = true;
      }
      if (n.perms !== d.perms) {
        store.setPerms(path, n, d.perms);
        written = true;
      }
      // C's finalize_transaction() writes every modified node back with a new generation, even
      // one the transaction left as it found it: other transactions that read it must retry.
      if (!written && rewriteAll) store.setValue(path, n, n.value);
    }
    // Child order as the transaction left it (a child re-created inside goes last, as in C).
    for (const [path, a] of writes) {
      if (a.kids === undefined) continue;
      const n = store.get(path);
      if (n?.children && !sameOrder(n.children, a.kids)) store.reorder(path, n, a.kids);
    }
    const events: { path: string; exact: boolean; perms: AclAt[]; firstSeenMissing: boolean }[] = [];
    for (const [path, a] of this.accessed) {
      if (a.fire) events.push({ path, exact: a.exact, perms: a.firePerms, firstSeenMissing: a.seenGen === NO_GENERATION });
    }
    return events;
  }
}

/** Store.Path.get_common_prefix: the longest common run of path components. */
function commonPrefix(a: string, b: string): string {
  if (a === b) return a;
  const x = a.split('/');
  const y = b.split('/');
  let i = 1;
  while (i < x.length && i < y.length && x[i] === y[i]) i++;
  return i === 1 ? '/' : x.slice(0, i).join('/');
}

function samePerms(a: Perms, b: Perms): boolean {
  return a === b || (a.length === b.length && a.every((e, i) => e.id === b[i].id && e.perms === b[i].perms));
}

function sameOrder(m: Map<string, unknown>, list: readonly string[]): boolean {
  if (m.size !== list.length) return false;
  let i = 0;
  for (const k of m.keys()) if (k !== list[i++]) return false;
  return true;
}

export class TxQuotaError extends Error {
  constructor() {
    super('transaction-nodes quota');
  }
}
