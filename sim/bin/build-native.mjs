#!/usr/bin/env node
// Run by `npm ci` (the prepare script): compiles sim/native/malloc-trim.c, a Node-API addon that calls
// glibc's malloc_trim(0), to dist/native/malloc-trim.node with the C compiler and Node's own headers.
// Optional: where either is missing (or the C library is not glibc) nothing is built, and the
// standalone xenstored keeps freed native memory after a busy spell as before (sim/malloc-trim.ts).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Compiles the addon to `out`; returns null when built, else why not. */
export function buildMallocTrim(out) {
  const glibc = process.platform === 'linux' && process.report?.getReport().header.glibcVersionRuntime !== undefined;
  if (!glibc) return 'not glibc';
  // Node's headers as installed beside its binary (PREFIX/bin/node, PREFIX/include/node).
  const headers = join(dirname(dirname(process.execPath)), 'include', 'node');
  if (!existsSync(join(headers, 'node_api.h'))) return `no Node headers in ${headers}`;
  mkdirSync(dirname(out), { recursive: true });
  const cc = process.env.CC ?? 'cc';
  const r = spawnSync(cc, ['-shared', '-fPIC', '-O2', '-Wall', '-I', headers, '-o', out, join(root, 'sim', 'native', 'malloc-trim.c')], { stdio: 'inherit' });
  return r.status === 0 ? null : `${cc} failed (${r.error?.message ?? `status ${r.status}`})`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const why = buildMallocTrim(join(root, 'dist', 'native', 'malloc-trim.node'));
  console.log(why === null ? 'build-native: built dist/native/malloc-trim.node' : `build-native: ${why}: dist/native/malloc-trim.node not built`);
}
