// What xenstored knows of each domain: introduced or not, its connection, quota counters.

declare const domIdBrand: unique symbol;
/** A Xen domain id (domid_t). */
export type DomId = number & { readonly [domIdBrand]: true };
export const asDomId = (n: number): DomId => (n >>> 0) as DomId;

export const DOMID_FIRST_RESERVED = 0x7ff0;
export const DOMID_SELF = 0x7ff0;
export const DOMID_INVALID = 0x7ff4;

export interface XsDomain {
  readonly domid: DomId;
  /** Global generation when xenstored first learned of this domain (stale-ACL rule). */
  readonly generation: number;
  introduced: boolean;
  /** Connection id once introduced. */
  conn: number | undefined;
  /** Store ring frame and event channel from INTRODUCE. */
  mfn: number;
  port: number;
  /** @releaseDomain already fired for this domain's shutdown (cleared by RESUME). */
  shutdownReported: boolean;
}

/** C atoi(): optional blanks and sign, then digits; anything else stops it. */
export function atoi(s: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?\d+)/.exec(s);
  if (!m) return 0;
  const v = parseInt(m[1], 10);
  return Number.isFinite(v) ? v | 0 : 0;
}
