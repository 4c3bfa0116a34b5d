// glibc's malloc_trim(0), from the optional addon `npm ci` builds (sim/bin/build-native.mjs).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** dist/native/malloc-trim.node, seen from sim/malloc-trim.ts or from its compiled copy dist/sim/malloc-trim.js. */
const ADDON = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../dist/native/malloc-trim.node' : '../native/malloc-trim.node', import.meta.url));

/**
 * malloc_trim(0): true if glibc gave memory back. Undefined where the addon was not built (no C
 * compiler or Node headers, or not glibc); an addon that is there but fails to load throws.
 */
export function loadMallocTrim(): (() => boolean) | undefined {
  if (!existsSync(ADDON)) return undefined;
  const addon = createRequire(import.meta.url)(ADDON) as { mallocTrim?: unknown };
  if (typeof addon.mallocTrim !== 'function') throw new Error(`${ADDON}: no mallocTrim()`);
  return addon.mallocTrim as () => boolean;
}
