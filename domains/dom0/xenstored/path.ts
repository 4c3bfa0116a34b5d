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

const LOCAL_DOMAIN = '/local/domain/';

/** Length of a /local/domain/<1-5 digits>/ prefix of `name`, or 0 (the regex ^/local/domain/\d{1,5}/). */
function localDomainPrefix(name: string): number {
  if (!name.startsWith(LOCAL_DOMAIN)) return 0;
  let i = LOCAL_DOMAIN.length;
  while (i < name.length && i - LOCAL_DOMAIN.length < 5 && isDigit(name.charCodeAt(i))) i++;
  if (i === LOCAL_DOMAIN.length || i >= name.length || name.charCodeAt(i) !== 0x2f) return 0;
  return i + 1;
}

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;

/** [A-Za-z0-9-/_@]: the characters a node name may have. */
function isValidChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || isDigit(c) || c === 0x2d || c === 0x2f || c === 0x5f || c === 0x40;
}

/** Length of the part of a canonical name after a /local/domain/<n>/ prefix (what path-max limits). */
export function relativeLength(name: string): number {
  return name.length - localDomainPrefix(name);
}

/**
 * is_valid_nodename(): absolute (or @ when special names are allowed), no trailing or double
 * slash, only [A-Za-z0-9-/_@], relative part within pathMax (0 = no limit). One pass over the
 * characters, no regular expression: every request's path comes through here.
 */
export function isValidNodename(name: string, allowSpecial: boolean, pathMax: number): boolean {
  const n = name.length;
  if (n === 0) return false;
  const first = name.charCodeAt(0);
  if (first !== 0x2f && !(allowSpecial && first === 0x40)) return false;
  if (n > 1 && name.charCodeAt(n - 1) === 0x2f) return false;
  if (pathMax > 0 && relativeLength(name) > pathMax) return false;
  let prev = 0;
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i);
    if (!isValidChar(c) || (c === 0x2f && prev === 0x2f)) return false;
    prev = c;
  }
  return true;
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
