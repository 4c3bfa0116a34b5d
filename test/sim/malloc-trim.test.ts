// The addon behind the standalone xenstored's malloc_trim(0) once quiet (issue 14): it compiles as
// `npm ci`'s prepare compiles it, loads, and calls glibc. What it gives back is measured by the soak
// bench (part churn), not here.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildMallocTrim } from '../../sim/bin/build-native.mjs';
import { loadMallocTrim } from '../../sim/malloc-trim.ts';

describe('sim/native/malloc-trim.c: malloc_trim(0) for the daemon', () => {
  let dir: string | undefined;
  before(function () {
    const { header } = process.report.getReport() as { header: { glibcVersionRuntime?: string } };
    if (process.platform !== 'linux' || header.glibcVersionRuntime === undefined) this.skip();
    dir = mkdtempSync(path.join(tmpdir(), 'xensim-trim-'));
  });
  after(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('compiles with the C compiler and Node headers, loads, and answers whether glibc gave memory back', () => {
    const out = path.join(dir!, 'malloc-trim.node');
    assert.equal(buildMallocTrim(out), null);
    const addon = createRequire(import.meta.url)(out) as { mallocTrim?: () => unknown };
    assert.equal(typeof addon.mallocTrim, 'function');
    assert.equal(typeof addon.mallocTrim!(), 'boolean');
  });

  it("npm ci's prepare built the one the daemon loads (dist/native/malloc-trim.node)", () => {
    const trim = loadMallocTrim();
    assert.ok(trim, 'dist/native/malloc-trim.node is missing: run node sim/bin/build-native.mjs');
    assert.equal(typeof trim(), 'boolean');
  });
});
