// oxenstored's debug dump (profile ocaml): on SIGUSR1 it writes the whole tree to
// /var/run/xenstored/db.debug, one line per node, depth first: the parent path without its leading
// slash, a slash, the name, the ACL in braces, and " = value" when the value is not empty. Children
// come in descending byte order of their names (the order of its map), and every field is escaped
// as OCaml's String.escaped does.
import type { Store, XsNode } from './store.ts';
import { formatPerms } from './permissions.ts';

/** The name of the file in the daemon's run directory (Paths.xen_run_stored). */
export const DB_DEBUG_FILE = 'db.debug';

/** OCaml's String.escaped over bytes held one per char. */
export function ocamlEscaped(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    switch (c) {
      case 0x22: out += '\\"'; break;
      case 0x5c: out += '\\\\'; break;
      case 0x0a: out += '\\n'; break;
      case 0x09: out += '\\t'; break;
      case 0x0d: out += '\\r'; break;
      case 0x08: out += '\\b'; break;
      default:
        out += c >= 0x20 && c <= 0x7e ? s[i] : `\\${String(c).padStart(3, '0')}`;
    }
  }
  return out;
}

const descending = (a: string, b: string): number => (a < b ? 1 : a > b ? -1 : 0);

/** The dump as oxenstored writes it (latin1: one char per byte). */
export function dbDebug(store: Store): string {
  const lines: string[] = [];
  const visit = (parent: string, name: string, node: XsNode): void => {
    let line = `${parent}/${name}{${ocamlEscaped(formatPerms(node.perms).join('\0'))}}`;
    if (node.value.length > 0) line += ` = ${ocamlEscaped(node.value)}`;
    lines.push(line);
    if (node.children === null) return;
    // The root's children are listed under "" (its own name is empty): "/tool", then "tool/x".
    const under = parent === '' && name === '' ? '' : parent === '' ? name : `${parent}/${name}`;
    // A root child's '@' name holding a '/' is kept with NUL in its place (core.ts name()).
    const kids = [...node.children.keys()].map((k): [string, string] => [k.replaceAll('\0', '/'), k]);
    for (const [shown, k] of kids.sort((a, b) => descending(a[0], b[0]))) visit(under, shown, node.children.get(k)!);
  };
  visit('', '', store.root);
  return lines.map((l) => `${l}\n`).join('');
}
