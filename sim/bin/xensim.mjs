#!/usr/bin/env node
// Entry point of `npx xensim`. Runs the compiled CLI in dist/ (built by `npm ci` through the
// `prepare` script, or `npm run build`), which starts in a fraction of a second. Runs the
// TypeScript sources under tsx instead (about 2 s of compiling first) when dist/ is missing or
// older than a source, or when this process already runs under tsx (tests, development), so what
// runs is always the current sources. Which one runs changes speed only, never output: the CLI's
// stderr is compared byte for byte with the real tools', so the choice is not announced there.
import { fileURLToPath } from 'node:url';
import { distIsFresh } from './dist.mjs';

const underTsx = process.execArgv.some((a) => a.includes('tsx'));
let cli;
if (!underTsx && distIsFresh(fileURLToPath(new URL('../../', import.meta.url)))) {
  cli = await import('../../dist/sim/cli.js');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import('../cli.ts');
}
await cli.main(process.argv.slice(2));
