// The tree reads as layers, as Xen's does: the hypervisor knows no guest or simulator code, and
// guests (dom0 included) reach the hypervisor only through its public ABI (hypervisor/public,
// like xen/include/public). Checked on every module reference in the sources: static and dynamic
// imports, and module URLs (a worker entry is a reference too).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.(ts|mts|mjs|js)$/.test(f))
    .map((f) => path.join(dir, f));
}

/** Every relative module reference in a file, resolved to a path from the repository root. */
function references(file: string): string[] {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const specs = [
    ...text.matchAll(/\bfrom\s+['"]([^'"]+)['"]/g),
    ...text.matchAll(/\bimport\s*\(\s*['"`]([^'"`]+)['"`]/g),
    ...text.matchAll(/\bimport\s+['"]([^'"]+)['"]/g),
    ...text.matchAll(/new URL\(\s*['"`]([^'"`]+)['"`]\s*,\s*import\.meta\.url/g),
  ].map((m) => m[1]);
  return specs.filter((s) => s.startsWith('.')).map((s) => path.relative(ROOT, path.resolve(path.dirname(path.join(ROOT, file)), s)));
}

function violations(dir: string, bad: (target: string) => boolean): string[] {
  return sources(dir).flatMap((f) => references(f).filter(bad).map((t) => `${f} -> ${t}`));
}

const under = (p: string, dir: string): boolean => p === dir || p.startsWith(`${dir}${path.sep}`);

describe('layering', () => {
  it('the scan sees imports, dynamic imports and worker URLs', () => {
    // The rule below would be vacuous if the scan found nothing: the kernel does use the ABI.
    assert.ok(references(path.join('domains', 'kernel', 'kernel.ts')).some((t) => under(t, path.join('hypervisor', 'public'))));
    assert.ok(references(path.join('domains', 'kernel', 'image.ts')).some((t) => t.startsWith(path.join('domains', 'kernel', 'worker'))));
  });

  it('nothing in hypervisor/ refers to domains/ or sim/', () => {
    assert.deepEqual(violations('hypervisor', (t) => under(t, 'domains') || under(t, 'sim')), []);
  });

  it('nothing in domains/ refers to hypervisor/ outside hypervisor/public/', () => {
    const pub = path.join('hypervisor', 'public');
    assert.deepEqual(violations('domains', (t) => under(t, 'hypervisor') && !under(t, pub)), []);
  });

  it('hypervisor/public/ is self-contained: the ABI refers to nothing but itself', () => {
    const pub = path.join('hypervisor', 'public');
    assert.deepEqual(violations(pub, (t) => !under(t, pub)), []);
  });
});
