// Node ACLs (xs_permissions): entry 0 is the owner and the default right for unlisted domains.
import type { DomId } from './domain.ts';

/** enum xs_perm_type bits, plus the daemon-internal flags C xenstored keeps next to them. */
export const enum XsPerm {
  XS_PERM_NONE = 0,
  XS_PERM_READ = 1,
  XS_PERM_WRITE = 2,
  XS_PERM_OWNER = 8,
  /** Entry for a domain that no longer exists (or never did): kept, listed, never honoured. */
  XS_PERM_IGNORE = 16,
}

export interface PermEntry {
  readonly perms: number;
  readonly id: DomId;
}
/** A node's ACL. Shared between nodes (interned), so never mutate one in place. */
export type Perms = readonly PermEntry[];

const LETTER: Record<string, number> = {
  n: XsPerm.XS_PERM_NONE,
  r: XsPerm.XS_PERM_READ,
  w: XsPerm.XS_PERM_WRITE,
  b: XsPerm.XS_PERM_READ | XsPerm.XS_PERM_WRITE,
};

export function permLetter(perms: number): string {
  switch (perms & (XsPerm.XS_PERM_READ | XsPerm.XS_PERM_WRITE)) {
    case XsPerm.XS_PERM_READ: return 'r';
    case XsPerm.XS_PERM_WRITE: return 'w';
    case XsPerm.XS_PERM_READ | XsPerm.XS_PERM_WRITE: return 'b';
    default: return 'n';
  }
}

/**
 * strtol(s, &end, 0) over the whole string, as C xenstored parses the id of an entry, kept in
 * an unsigned int (struct xs_permissions): r70000 stays 70000 (a domain that cannot exist),
 * r4294967297 becomes r1.
 */
function strtolWhole(s: string): number | undefined {
  const m = /^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(s);
  if (!m) return undefined;
  const body = m[2];
  let v: number;
  if (/^0[xX]/.test(body)) v = parseInt(body.slice(2), 16);
  else if (body.length > 1 && body[0] === '0') v = parseInt(body, 8);
  else v = parseInt(body, 10);
  return (m[1] === '-' ? -v : v) >>> 0;
}

/** Parses "r5" style entries (xs_strings_to_perms). Returns undefined on any malformed entry. */
export function parsePerms(
  strings: readonly string[],
  parseId: (s: string) => number | undefined = strtolWhole,
): PermEntry[] | undefined {
  const out: PermEntry[] = [];
  for (const s of strings) {
    const bits = LETTER[s[0] ?? ''];
    if (bits === undefined) return undefined;
    const id = parseId(s.slice(1));
    if (id === undefined) return undefined;
    out.push({ perms: bits, id: id as DomId });
  }
  return out;
}

export function formatPerms(perms: Perms): string[] {
  return perms.map((p) => permLetter(p.perms) + String(p.id));
}

const interned = new Map<string, Perms>();

/** Returns the shared copy of an ACL, so a million nodes with `n0` hold one array. */
export function internPerms(perms: readonly PermEntry[]): Perms {
  let key = '';
  for (const p of perms) key += `${p.perms}:${p.id},`;
  let found = interned.get(key);
  if (found === undefined) {
    found = Object.freeze(perms.map((p) => Object.freeze({ perms: p.perms, id: p.id })));
    if (interned.size > 100_000) interned.clear();
    interned.set(key, found);
  }
  return found;
}

export function permsEqual(a: Perms, b: Perms): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i].perms !== b[i].perms || a[i].id !== b[i].id) return false;
  return true;
}

/** Who is asking, for a permission check. */
export interface PermSubject {
  readonly privileged: boolean;
  readonly domid: DomId;
  /** SET_TARGET: a device-model domain acts with its target's identity too. */
  readonly target: DomId | undefined;
}

/** Says whether ACL entry i (i >= 1) of a node last changed at `gen` is still honoured. */
export interface EntryValidator {
  entryValid(e: PermEntry, gen: number): boolean;
}

/**
 * perm_for_conn: the rights a connection has on a node with this ACL. Entries the validator
 * rejects are skipped (stale-ACL rule, XSA-322/417).
 */
export function permForConn(who: PermSubject, perms: Perms, gen: number, validator: EntryValidator | undefined, perIdentity = false): number {
  const all = XsPerm.XS_PERM_READ | XsPerm.XS_PERM_WRITE | XsPerm.XS_PERM_OWNER;
  if (who.privileged) return all;
  const owner = perms[0];
  if (owner === undefined) return XsPerm.XS_PERM_NONE;
  if (owner.id === who.domid || (who.target !== undefined && owner.id === who.target)) return all;
  if (perIdentity && who.target !== undefined) {
    // oxenstored (Perms.lacks): each identity the connection has - its domain, then its target -
    // gets its own first ACL entry or the node's default, and any of them may grant the request.
    return entryFor(who.domid, perms, gen, validator) | entryFor(who.target, perms, gen, validator);
  }
  for (let i = 1; i < perms.length; i++) {
    const e = perms[i];
    if (e.perms & XsPerm.XS_PERM_IGNORE) continue;
    if (e.id !== who.domid && !(who.target !== undefined && e.id === who.target)) continue;
    if (validator !== undefined && !validator.entryValid(e, gen)) continue;
    return e.perms & (XsPerm.XS_PERM_READ | XsPerm.XS_PERM_WRITE);
  }
  return owner.perms & (XsPerm.XS_PERM_READ | XsPerm.XS_PERM_WRITE);
}

/** One domain's rights from an ACL: its first honoured entry, else the node's default. */
function entryFor(id: number, perms: Perms, gen: number, validator: EntryValidator | undefined): number {
  for (let i = 1; i < perms.length; i++) {
    const e = perms[i];
    if (e.perms & XsPerm.XS_PERM_IGNORE || e.id !== id) continue;
    if (validator !== undefined && !validator.entryValid(e, gen)) continue;
    return e.perms & (XsPerm.XS_PERM_READ | XsPerm.XS_PERM_WRITE);
  }
  return perms[0].perms & (XsPerm.XS_PERM_READ | XsPerm.XS_PERM_WRITE);
}
