// Node names: canonical form, validity and the relative part that path-max applies to.

/** The home of a domain, where relative paths resolve: /local/domain/<domid>. */
export function domainPath(domid: number): string {
  return `/local/domain/${domid >>> 0}`;
}

/** canonicalize(): relative names resolve under the caller's home; absolute and @ names stay. */
export function canonicalize(home: string, name: string): string {
  if (name.startsWith('/') || name.startsWith('@')) return name;
  return `${home}/${name}`;
}

const VALID_CHARS = /^[A-Za-z0-9\-/_@]*$/;
const LOCAL_DOMAIN = /^\/local\/domain\/\d{1,5}\//;

/** Length of the part of a canonical name after a /local/domain/<n>/ prefix (what path-max limits). */
export function relativeLength(name: string): number {
  const m = LOCAL_DOMAIN.exec(name);
  return name.length - (m ? m[0].length : 0);
}

/**
 * is_valid_nodename(): absolute (or @ when special names are allowed), no trailing or double
 * slash, only [A-Za-z0-9-/_@], relative part within pathMax (0 = no limit).
 */
export function isValidNodename(name: string, allowSpecial: boolean, pathMax: number): boolean {
  if (!name.startsWith('/') && !(allowSpecial && name.startsWith('@'))) return false;
  if (name.endsWith('/') && name !== '/') return false;
  if (name.includes('//')) return false;
  if (pathMax > 0 && relativeLength(name) > pathMax) return false;
  return VALID_CHARS.test(name);
}

export function isSpecial(name: string): boolean {
  return name.startsWith('@');
}

export function parentOf(name: string): string {
  const i = name.lastIndexOf('/');
  return i <= 0 ? '/' : name.slice(0, i);
}

export function basename(name: string): string {
  return name.slice(name.lastIndexOf('/') + 1);
}

export function join(parent: string, child: string): string {
  return parent === '/' ? `/${child}` : `${parent}/${child}`;
}

/** Watch matching: is `name` the watched node or below it ("/" watches everything). */
export function isChild(name: string, watched: string): boolean {
  if (watched === '/') return true;
  if (!name.startsWith(watched)) return false;
  return name.length === watched.length || name.charCodeAt(watched.length) === 0x2f;
}
