#!/usr/bin/env node
// Entry point of `npx xensim`. Runs the compiled CLI in dist/ (built by `npm ci` through the
// `prepare` script, or `npm run build`), which starts in a fraction of a second. Runs the
// TypeScript sources under tsx instead (about 2 s of compiling first) when dist/ is missing or
// older than a source, or when this process already runs under tsx (tests, development), so what
// runs is always the current sources. Which one runs changes speed only, never output: the CLI's
// stderr is compared byte for byte with the real tools', so the choice is not announced there.
import { readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** What tsconfig.build.json compiles (sim/bench runs under tsx only). */
const SOURCES = ['hypervisor', 'domains', 'sim', 'scenarios'];
const NOT_BUILT = /^sim\/bench\//;

function underTsx() {
  return process.execArgv.some((a) => a.includes('tsx'));
}

/** True when every compiled source has a dist/ file at least as new as itself. */
function distIsFresh() {
  for (const dir of SOURCES) {
    let entries;
    try {
      entries = readdirSync(ROOT + dir, { recursive: true, withFileTypes: true });
    } catch {
      return false;
    }
    for (const e of entries) {
      if (!e.isFile() || !e.name.endsWith('.ts') || e.name.endsWith('.d.ts')) continue;
      const rel = `${(e.parentPath ?? e.path).slice(ROOT.length)}/${e.name}`;
      if (NOT_BUILT.test(rel)) continue;
      const js = statSync(`${ROOT}dist/${rel.slice(0, -3)}.js`, { throwIfNoEntry: false });
      if (!js || js.mtimeMs < statSync(ROOT + rel).mtimeMs) return false;
    }
  }
  return true;
}

let cli;
if (!underTsx() && distIsFresh()) {
  cli = await import('../../dist/sim/cli.js');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import('../cli.ts');
}
await cli.main(process.argv.slice(2));
