#!/usr/bin/env node
// Run by `npm ci` (the prepare script): links node_modules/.bin/xensim to this checkout's bin, so
// `npx xensim` runs it at once. The package declares no "bin" on purpose: npm 11's npx, when the
// project's own package.json names the command, installs the project into its npx cache on every
// call (an arborist reify, about 0.7 s of CPU) before running it; a plain link in
// node_modules/.bin is what npx finds first otherwise, as for any dependency's bin.
import { lstatSync, mkdirSync, symlinkSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(root, 'node_modules', '.bin');
const link = join(bin, 'xensim');
mkdirSync(bin, { recursive: true });
try {
  if (lstatSync(link)) unlinkSync(link);
} catch {
  // not there yet
}
symlinkSync(join('..', '..', 'sim', 'bin', 'xensim.mjs'), link);
