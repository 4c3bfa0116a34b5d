// Whether dist/ (what tsconfig.build.json compiles) is as new as the sources it comes from, so
// that running it runs the current sources. Plain JavaScript: the bin asks before any TypeScript
// can be loaded.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

/** The folders tsconfig.build.json compiles, and the one it leaves out (run under tsx only). */
export const SOURCES = ['hypervisor', 'domains', 'sim', 'scenarios'];
const NOT_BUILT = 'sim/bench/';

/**
 * True when every compiled source under `root` has a dist/ file at least as new as itself, and so
 * have the `extra` sources (paths under root, e.g. a bench file the build compiles on its own).
 */
export function distIsFresh(root, extra = []) {
  for (const rel of extra) {
    const js = statSync(join(root, 'dist', `${rel.slice(0, -3)}.js`), { throwIfNoEntry: false });
    if (!js || js.mtimeMs < statSync(join(root, rel)).mtimeMs) return false;
  }
  for (const dir of SOURCES) {
    let entries;
    try {
      entries = readdirSync(join(root, dir), { recursive: true, withFileTypes: true });
    } catch {
      return false;
    }
    for (const e of entries) {
      if (!e.isFile() || !e.name.endsWith('.ts') || e.name.endsWith('.d.ts')) continue;
      const rel = relative(root, join(e.parentPath ?? e.path, e.name)).split('\\').join('/');
      if (rel.startsWith(NOT_BUILT)) continue;
      const js = statSync(join(root, 'dist', `${rel.slice(0, -3)}.js`), { throwIfNoEntry: false });
      if (!js || js.mtimeMs < statSync(join(root, rel)).mtimeMs) return false;
    }
  }
  return true;
}
