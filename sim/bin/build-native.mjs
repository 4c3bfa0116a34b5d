#!/usr/bin/env node
// Run by `npm ci` (the prepare script): compiles the Node-API addons in sim/native with the C
// compiler and Node's own headers, each to dist/native/NAME.node:
// - malloc-trim.c calls glibc's malloc_trim(0) (the standalone xenstored, sim/malloc-trim.ts);
// - socket-buffer.c sets SO_SNDBUF on a migration stream's unix socket (sim/socket-buffer.ts).
// Optional: where the compiler or the headers are missing (or, for malloc-trim, the C library is
// not glibc) nothing is built, and the simulator goes on without: the daemon keeps freed native
// memory after a busy spell, a migration over a unix socket keeps the default send buffer.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Compiles sim/native/NAME.c to `out`; returns null when built, else why not. */
function buildAddon(name, out) {
  if (process.platform !== 'linux') return 'not Linux';
  // Node's headers as installed beside its binary (PREFIX/bin/node, PREFIX/include/node).
  const headers = join(dirname(dirname(process.execPath)), 'include', 'node');
  if (!existsSync(join(headers, 'node_api.h'))) return `no Node headers in ${headers}`;
  mkdirSync(dirname(out), { recursive: true });
  const cc = process.env.CC ?? 'cc';
  const r = spawnSync(cc, ['-shared', '-fPIC', '-O2', '-Wall', '-I', headers, '-o', out, join(root, 'sim', 'native', `${name}.c`)], { stdio: 'inherit' });
  return r.status === 0 ? null : `${cc} failed (${r.error?.message ?? `status ${r.status}`})`;
}

/** Compiles the malloc_trim addon to `out`; returns null when built, else why not. */
export function buildMallocTrim(out) {
  const glibc = process.platform === 'linux' && process.report?.getReport().header.glibcVersionRuntime !== undefined;
  if (!glibc) return 'not glibc';
  return buildAddon('malloc-trim', out);
}

/** Compiles the SO_SNDBUF addon to `out`; returns null when built, else why not. */
export function buildSocketBuffer(out) {
  return buildAddon('socket-buffer', out);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const [name, build] of [['malloc-trim', buildMallocTrim], ['socket-buffer', buildSocketBuffer]]) {
    const out = join(root, 'dist', 'native', `${name}.node`);
    const why = build(out);
    console.log(why === null ? `build-native: built dist/native/${name}.node` : `build-native: ${why}: dist/native/${name}.node not built`);
  }
}
