// The words of a folded Mermaid arrow: several xenstore operations of one party said in one
// label, e.g. `XS_READ backend/vbd/1/51712/{physical-device -> 7:0, mode -> w}`, and a label
// broken into short lines so a diagram stays as narrow as a slide.
//
// Pure text: operations in, label lines out. mermaid.ts decides what folds together.

/** One operation of a folded arrow: its XS_ name, the path it names and what follows the path. */
export interface FoldItem {
  readonly name: string;
  /** The path as shown (relative to the party's home when under it, as a Linux driver writes it). */
  readonly path: string;
  /** What follows the path: `=value`, ` -> result`, ` n1 r0`... ('' for nothing). */
  readonly tail: string;
}

/** A path under /local/domain/<domid>/ as that domain's relative path; others as they are. */
export function homeRelative(abs: string, domid: number | undefined): string {
  if (domid === undefined) return abs;
  const home = `/local/domain/${domid}/`;
  return abs.startsWith(home) && abs.length > home.length ? abs.slice(home.length) : abs;
}

const dirname = (p: string): string => {
  const i = p.lastIndexOf('/');
  return i <= 0 ? '' : p.slice(0, i);
};

/**
 * Items said per XS_ name and directory, in the order first met: one item as `XS_WRITE a/b=1`,
 * several as `XS_WRITE a/{b=1, c=2}`, a directory written with its children as `.`. The same
 * item met again is counted (`x2`) rather than repeated.
 */
export function foldItems(items: readonly FoldItem[]): string[] {
  const paths = new Set(items.map((i) => i.path));
  // A path that is the parent of another item's path is the group's directory itself.
  const parents = new Set([...paths].map(dirname));
  const groups = new Map<string, { name: string; dir: string; entries: Map<string, { rel: string; tail: string; n: number }> }>();
  for (const it of items) {
    // An operation without a path (XS_GET_DOMAIN_PATH 1, XS_INTRODUCE ...) is said on its own.
    const dir = it.path === '' ? '\u0000' : parents.has(it.path) ? it.path : dirname(it.path);
    const key = `${it.name}\u0000${dir}`;
    let g = groups.get(key);
    if (!g) groups.set(key, g = { name: it.name, dir, entries: new Map() });
    const rel = it.path === '' ? '' : it.path === dir ? '.' : dir === '' ? it.path : it.path.slice(dir.length + 1);
    const e = g.entries.get(`${rel}${it.tail}`);
    if (e) e.n++;
    else g.entries.set(`${rel}${it.tail}`, { rel, tail: it.tail, n: 1 });
  }
  const times = (n: number): string => (n > 1 ? ` x${n}` : '');
  return [...groups.values()].map((g) => {
    const entries = [...g.entries.values()];
    if (g.dir === '\u0000') return entries.map((e) => `${g.name}${e.tail}${times(e.n)}`).join(', ');
    if (entries.length === 1) {
      const { rel, tail, n } = entries[0];
      const path = rel === '.' ? g.dir : g.dir === '' ? rel : `${g.dir}/${rel}`;
      return `${g.name} ${path}${tail}${times(n)}`;
    }
    // The same permissions or token on every node (XS_SET_PERMS n1 r0 on each) are said once,
    // after them; values written and results read stay with their node.
    const shared = entries[0].tail;
    const tail = /^ (?!->)/.test(shared) && entries.every((e) => e.tail === shared && e.n === entries[0].n) ? `${shared}${times(entries[0].n)}` : undefined;
    const list = entries.map((e) => (tail !== undefined ? e.rel : `${e.rel}${e.tail}${times(e.n)}`)).join(', ');
    return `${g.name} ${g.dir === '' ? '' : `${g.dir}/`}{${list}}${tail ?? ''}`;
  });
}

/**
 * Text broken into lines of at most `width` characters where it can be (after ', ' and '; '),
 * at most `maxLines` of them: what does not fit is cut, and the last line says so.
 */
export function wrapLabel(text: string, width: number, maxLines: number): string[] {
  const pieces = text.split(/(?<=, |; )/);
  const lines: string[] = [];
  let cur = '';
  for (const p of pieces) {
    if (cur !== '' && cur.length + p.trimEnd().length > width) {
      lines.push(cur.trimEnd());
      cur = '';
    }
    cur += p;
  }
  if (cur !== '') lines.push(cur.trimEnd());
  // A single piece longer than the width is cut where it must be.
  const cutLines = lines.map((l) => (l.length > width * 2 ? `${l.slice(0, width * 2 - 3)}...` : l));
  if (cutLines.length <= maxLines) return cutLines;
  const kept = cutLines.slice(0, maxLines);
  kept[maxLines - 1] = `${kept[maxLines - 1]} ... (cut: ${cutLines.length - maxLines} more lines)`;
  return kept;
}
