// The committed node tree. One object per node; children in insertion order (C xenstored's
// DIRECTORY order), values kept as latin1 strings (one byte per char, far smaller than a
// Uint8Array per node), ACLs shared between nodes.
import type { Perms } from './permissions.ts';
import { join } from './path.ts';

/** sizeof(struct xs_tdb_record_hdr) and of one ACL entry in it (C 4.17's node record). */
export const XS_TDB_RECORD_HDR = 24;
export const XS_PERM_SIZE = 8;

export class XsNode {
  /** Raw value bytes, one char per byte. */
  value: string;
  perms: Perms;
  /** Children by name, in insertion order; null for a leaf (saves a Map per leaf). */
  children: Map<string, XsNode> | null = null;
  /** Generation of this node's last change (value, ACL, child list). */
  gen: number;

  constructor(value: string, perms: Perms, gen: number) {
    this.value = value;
    this.perms = perms;
    this.gen = gen;
  }
}

/** What an open snapshot (oxenstored-style transaction) saw of a node before it changed. */
export interface PreImage {
  readonly node: { value: string; perms: Perms; gen: number } | undefined;
  readonly children: readonly string[] | undefined;
}

export interface SnapshotListener {
  /** Called once before the node at `path` (or its child list) first changes. */
  preserve(path: string, image: PreImage): void;
  has(path: string): boolean;
}

/** Told of every change to the committed tree (the seed's replication, replica.ts). */
export interface StoreObserver {
  /** `node` at `path` was created or changed (value, ACL, generation, child list). */
  put(path: string, node: XsNode): void;
  /** The node at `path` is gone (called for each node of a removed subtree, children first). */
  removed(path: string): void;
  /** `node`'s children are now in another order. */
  reordered(path: string, node: XsNode): void;
}

export class Store {
  readonly root: XsNode;
  /** Replication: every change is told here (off by default). */
  observer: StoreObserver | undefined;
  /** Global modification counter (C xenstored's `generation`). */
  generation = 1;
  /** The generation of the newest change to this tree (0: none yet). */
  changedAt = 0;
  /**
   * C xenstored: every node written (a parent whose child list changed too) gets its ACL entries
   * for domains gone or younger than the node marked ignored, for good (domain_adjust_node_perms).
   */
  adjustPerms: ((perms: Perms, gen: number) => Perms) | undefined;
  /** Nodes owned per domid, for the nodes quota. */
  readonly owned = new Map<number, number>();
  /**
   * Bytes of node records per owner, as C 4.17 charges them to the memory quota (do_tdb_write):
   * the record (24-byte header, 8 per ACL entry, value, child names) plus the path.
   */
  readonly memory = new Map<number, number>();
  private nodeCount = 1;
  /** Generation at which every node was rebuilt (oxenstored's reset_permissions): no merge across it. */
  rebuiltAt = -1;
  /** Open snapshots that must see the tree as it was when they started. */
  readonly snapshots = new Set<SnapshotListener>();

  constructor(rootPerms: Perms, opts: { trackSubtrees?: boolean } = {}) {
    this.subGens = opts.trackSubtrees ? new WeakMap() : undefined;
    this.root = new XsNode('', rootPerms, 0);
    this.count(rootPerms[0].id, 1);
    this.charge(rootPerms[0].id, XS_TDB_RECORD_HDR + XS_PERM_SIZE * rootPerms.length + 1);
  }

  get size(): number {
    return this.nodeCount;
  }

  private count(owner: number, delta: number): void {
    const n = (this.owned.get(owner) ?? 0) + delta;
    if (n === 0) this.owned.delete(owner);
    else this.owned.set(owner, n);
  }

  ownedBy(domid: number): number {
    return this.owned.get(domid) ?? 0;
  }

  /** Nodes owned, per owner. */
  owners(): Iterable<[number, number]> {
    return this.owned.entries();
  }

  private charge(owner: number, delta: number): void {
    if (delta === 0) return;
    const n = (this.memory.get(owner) ?? 0) + delta;
    if (n === 0) this.memory.delete(owner);
    else this.memory.set(owner, n);
  }

  /** Node memory charged to a domain (C's domain->memory without watches and queued output). */
  memoryOf(domid: number): number {
    return this.memory.get(domid) ?? 0;
  }

  /** A node's charge: record size plus its path (the tdb key). */
  static recordMemory(path: string, value: string, perms: Perms, childBytes: number): number {
    return XS_TDB_RECORD_HDR + XS_PERM_SIZE * perms.length + value.length + childBytes + path.length;
  }

  /** Bytes of a node's child-name list (each name NUL-terminated). */
  static childBytes(node: XsNode): number {
    let n = 0;
    if (node.children) for (const k of node.children.keys()) n += k.length + 1;
    return n;
  }

  /** An ACL rewrite of `node` by adjustPerms: the owner and the entry count may change. */
  private reperm(node: XsNode, perms: Perms): void {
    if (perms === node.perms) return;
    if (perms[0].id !== node.perms[0].id || perms.length !== node.perms.length) {
      const kids = Store.childBytes(node);
      // The path does not change: only move the record part.
      this.charge(node.perms[0].id, -(XS_PERM_SIZE * node.perms.length + XS_TDB_RECORD_HDR + node.value.length + kids));
      this.charge(perms[0].id, XS_PERM_SIZE * perms.length + XS_TDB_RECORD_HDR + node.value.length + kids);
      if (perms[0].id !== node.perms[0].id) {
        this.count(node.perms[0].id, -1);
        this.count(perms[0].id, 1);
      }
    }
    node.perms = perms;
  }

  /**
   * Recent lookups: one request looks the same few paths up several times (node, parent, ACL
   * checks). A node object stays put until the tree's shape changes, which clears this.
   */
  private readonly recent = new Map<string, XsNode>();

  get(path: string): XsNode | undefined {
    if (path === '/') return this.root;
    const hit = this.recent.get(path);
    if (hit !== undefined) return hit;
    const found = this.walkTo(path);
    if (found !== undefined) {
      if (this.recent.size >= 64) this.recent.clear();
      this.recent.set(path, found);
    }
    return found;
  }

  private walkTo(path: string): XsNode | undefined {
    let node: XsNode | undefined = this.root;
    let start = 1;
    while (node !== undefined) {
      const end = path.indexOf('/', start);
      const name = end < 0 ? path.slice(start) : path.slice(start, end);
      node = node.children?.get(name);
      if (end < 0) return node;
      start = end + 1;
    }
    return undefined;
  }

  childNames(node: XsNode): string[] {
    return node.children ? [...node.children.keys()] : [];
  }

  private image(node: XsNode | undefined): PreImage {
    return node === undefined
      ? { node: undefined, children: undefined }
      : { node: { value: node.value, perms: node.perms, gen: node.gen }, children: this.childNames(node) };
  }

  private preserve(path: string, node: XsNode | undefined): void {
    for (const s of this.snapshots) if (!s.has(path)) s.preserve(path, this.image(node));
  }

  /**
   * Newest generation anywhere in a node's subtree, for oxenstored-style merges; kept beside
   * the nodes (only when asked for) so a million nodes in profile c carry no extra field.
   */
  readonly subGens: WeakMap<XsNode, number> | undefined;
  /** DIRECTORY reply payloads, kept until a node's child list changes (dom0 tools list a lot). */
  readonly listings = new WeakMap<XsNode, Uint8Array>();

  subGen(n: XsNode): number {
    return this.subGens?.get(n) ?? n.gen;
  }

  /** Bumps subGen along the path to a change. */
  private touchPath(path: string, gen: number): void {
    const sub = this.subGens;
    if (sub === undefined) return;
    let node: XsNode | undefined = this.root;
    sub.set(node, gen);
    if (path === '/') return;
    let start = 1;
    while (node !== undefined) {
      const end = path.indexOf('/', start);
      const name = end < 0 ? path.slice(start) : path.slice(start, end);
      node = node.children?.get(name);
      if (node === undefined) return;
      sub.set(node, gen);
      if (end < 0) return;
      start = end + 1;
    }
  }

  /**
   * oxenstored's Store.set_node when a transaction merges: the nodes above `path` are rebuilt
   * (new ones), whatever the transaction changed at or below it.
   */
  renewAbove(path: string): void {
    if (this.subGens === undefined || path === '/') return;
    const gen = this.changedAt = this.generation++;
    this.touchPath(path.slice(0, Math.max(1, path.lastIndexOf('/'))), gen);
  }

  /** Creates `path` under its existing parent; appended last among the parent's children. */
  create(parentPath: string, parent: XsNode, name: string, value: string, perms: Perms): XsNode {
    const path = join(parentPath, name);
    if (this.snapshots.size) {
      this.preserve(parentPath, parent);
      this.preserve(path, undefined);
    }
    if (this.adjustPerms) this.reperm(parent, this.adjustPerms(parent.perms, parent.gen));
    const gen = this.generation++;
    this.changedAt = gen;
    const node = new XsNode(value, perms, gen);
    this.recent.clear();
    (parent.children ??= new Map()).set(name, node);
    parent.gen = gen;
    this.listings.delete(parent);
    this.touchPath(parentPath, gen);
    this.nodeCount++;
    this.count(perms[0].id, 1);
    this.charge(parent.perms[0].id, name.length + 1);
    this.charge(perms[0].id, Store.recordMemory(path, value, perms, 0));
    if (this.observer) {
      this.observer.put(parentPath, parent);
      this.observer.put(path, node);
    }
    return node;
  }

  /**
   * A restored node (read_state_node): appended under `parent`, which keeps its generation
   * (C's write_node_raw of the parent). For a new store being filled (no snapshot, no ACL rule,
   * no listing yet); `pathLength` is the node's path's. Undefined if `parent` had such a child
   * already: it is replaced, and the store is not to be used (the restore fails). The accounting
   * of a run of nodes with one owner is added up and charged at the owner's change or at
   * restored().
   */
  restoreChild(parent: XsNode, name: string, value: string, perms: Perms, pathLength: number): XsNode | undefined {
    const gen = this.generation++;
    const node = new XsNode(value, perms, gen);
    let kids = parent.children;
    if (kids === null) kids = parent.children = new Map();
    const size = kids.size;
    kids.set(name, node);
    if (kids.size === size) return undefined;
    this.changedAt = gen;
    this.nodeCount++;
    const owner = perms[0].id;
    if (owner !== this.batchOwner) {
      this.chargeBatch();
      this.batchOwner = owner;
    }
    this.batchNodes++;
    this.batchBytes += XS_TDB_RECORD_HDR + XS_PERM_SIZE * perms.length + value.length + pathLength;
    // The parent's record grows by the name and its NUL.
    const parentOwner = parent.perms[0].id;
    if (parentOwner === owner) this.batchBytes += name.length + 1;
    else this.charge(parentOwner, name.length + 1);
    this.restoredAny = true;
    return node;
  }

  private batchOwner = -1;
  private batchNodes = 0;
  private batchBytes = 0;
  private restoredAny = false;

  private chargeBatch(): void {
    if (this.batchOwner !== -1) {
      this.count(this.batchOwner, this.batchNodes);
      this.charge(this.batchOwner, this.batchBytes);
    }
    this.batchOwner = -1;
    this.batchNodes = 0;
    this.batchBytes = 0;
  }

  /** The end of restoreChild() calls: what they added up is charged, subtree generations set. */
  restored(): void {
    this.chargeBatch();
    this.recent.clear();
    if (this.restoredAny && this.subGens !== undefined) this.setSubGens();
    this.restoredAny = false;
  }

  /**
   * Every directory's subGen as the creations in generation order would have left it (touchPath):
   * the newest generation below it. Iterative post-order.
   */
  private setSubGens(): void {
    const sub = this.subGens!;
    const stack: { node: XsNode; kids: XsNode[]; next: number; max: number }[] = [];
    const open = (n: XsNode): void => void stack.push({ node: n, kids: n.children ? [...n.children.values()] : [], next: 0, max: -1 });
    open(this.root);
    while (stack.length !== 0) {
      const top = stack[stack.length - 1];
      if (top.next < top.kids.length) {
        const k = top.kids[top.next++];
        if (k.children !== null && k.children.size !== 0) open(k);
        else top.max = Math.max(top.max, k.gen);
        continue;
      }
      stack.pop();
      if (top.max >= 0) sub.set(top.node, top.max);
      const up = stack[stack.length - 1];
      if (up !== undefined) up.max = Math.max(up.max, top.max, top.node.gen);
    }
  }

  setValue(path: string, node: XsNode, value: string): void {
    if (this.subGens !== undefined && node.value === value && path !== '/') {
      // oxenstored's Node.set_value hands back the very node when the value does not change:
      // the root and the ancestors are new, the node and its subtree are not (what a merge at
      // commit compares).
      this.renewAbove(path);
      this.observer?.put(path, node);
      return;
    }
    if (this.snapshots.size) this.preserve(path, node);
    this.charge(node.perms[0].id, value.length - node.value.length);
    node.value = value;
    node.gen = this.changedAt = this.generation++;
    this.touchPath(path, node.gen);
    this.observer?.put(path, node);
  }

  setPerms(path: string, node: XsNode, perms: Perms): void {
    if (this.snapshots.size) this.preserve(path, node);
    if (perms[0].id !== node.perms[0].id) {
      this.count(node.perms[0].id, -1);
      this.count(perms[0].id, 1);
    }
    const old = Store.recordMemory(path, node.value, node.perms, Store.childBytes(node));
    this.charge(node.perms[0].id, -old);
    this.charge(perms[0].id, old + XS_PERM_SIZE * (perms.length - node.perms.length));
    node.perms = perms;
    node.gen = this.changedAt = this.generation++;
    this.touchPath(path, node.gen);
    this.observer?.put(path, node);
  }

  /**
   * Removes the subtree at `path` and calls `visit` for every removed node, children before
   * their parent (the order C xenstored fires the removal events in).
   */
  remove(path: string, visit?: (path: string, node: XsNode, parent: XsNode) => void): void {
    const parentPath = path.slice(0, Math.max(1, path.lastIndexOf('/')));
    const parent = this.get(parentPath);
    const name = path.slice(path.lastIndexOf('/') + 1);
    const node = parent?.children?.get(name);
    if (parent === undefined || node === undefined) return;
    this.recent.clear();
    if (this.snapshots.size) this.preserve(parentPath, parent);
    // Iterative post-order walk: deep trees must not exhaust the stack (XSA-418).
    const stack: { path: string; node: XsNode; parent: XsNode; expanded: boolean }[] = [
      { path, node, parent, expanded: false },
    ];
    while (stack.length) {
      const top = stack[stack.length - 1];
      if (!top.expanded && top.node.children?.size) {
        top.expanded = true;
        const kids = [...top.node.children];
        for (let i = kids.length - 1; i >= 0; i--) {
          stack.push({ path: join(top.path, kids[i][0]), node: kids[i][1], parent: top.node, expanded: false });
        }
        continue;
      }
      stack.pop();
      if (this.snapshots.size) this.preserve(top.path, top.node);
      this.nodeCount--;
      this.count(top.node.perms[0].id, -1);
      this.charge(top.node.perms[0].id, -Store.recordMemory(top.path, top.node.value, top.node.perms, Store.childBytes(top.node)));
      visit?.(top.path, top.node, top.parent);
      this.observer?.removed(top.path);
    }
    parent.children!.delete(name);
    if (parent.children!.size === 0) parent.children = null;
    this.charge(parent.perms[0].id, -(name.length + 1));
    this.listings.delete(parent);
    if (this.adjustPerms) this.reperm(parent, this.adjustPerms(parent.perms, parent.gen));
    parent.gen = this.changedAt = this.generation++;
    this.touchPath(parentPath, parent.gen);
    this.observer?.put(parentPath, parent);
  }

  /** Puts `node`'s children in the order of `names` (names of no child are skipped; children left out are dropped). */
  reorder(path: string, node: XsNode, names: readonly string[]): void {
    if (node.children === null) return;
    const m = new Map<string, XsNode>();
    for (const k of names) {
      const c = node.children.get(k);
      if (c) m.set(k, c);
    }
    node.children = m;
    this.listings.delete(node);
    this.observer?.reordered(path, node);
  }

  /** Pre-order walk of the whole tree (iterative). */
  *walk(from = '/'): Generator<[string, XsNode]> {
    const start = this.get(from);
    if (start === undefined) return;
    const stack: [string, XsNode][] = [[from, start]];
    while (stack.length) {
      const [p, n] = stack.pop()!;
      yield [p, n];
      if (n.children) {
        const kids = [...n.children];
        for (let i = kids.length - 1; i >= 0; i--) stack.push([join(p, kids[i][0]), kids[i][1]]);
      }
    }
  }
}
