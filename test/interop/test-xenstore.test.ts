// Xen's own xenstore test suite (/usr/lib/xen-4.17/bin/test-xenstore, tools/tests/xenstore) run
// against xensim xenstored over its Unix socket (libxenstore finds it through XENSTORED_PATH).
//
// test-xenstore prints one line per test, "<name>: <n> ns" or "<name>: avg: ..." on success and
// "<name>: failed (ret = <errno>, stage <stage>)" on failure, stops at the first failure and then
// exits 3. `-r SECS` runs randomly chosen tests until time(NULL) reaches start+SECS (so it bounds
// itself, to within a second) and prints only failures. On success it removes its own nodes.
import assert from 'node:assert/strict';
import { TOOLS, requireTools, run, startTarget, type Daemon } from '../helpers/daemons.ts';

const TEST_XENSTORE = TOOLS['test-xenstore'].file;

const TESTS = ['read 1', 'read 2000', 'write 1', 'write 2000', 'dir', 'rm node', 'rm dir',
  'ta empty', 'ta empty x', 'ta rmw', 'ta rmw x', 'ta err'];

function describeRun(r: { code: number | null; signal: string | null; stdout: string; stderr: string },
  d: Daemon): string {
  return `exit ${r.code} signal ${r.signal}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}\n` +
    `daemon log (tail):\n${d.log().slice(-3000)}`;
}

for (const profile of ['c', 'ocaml'] as const) {
  describe(`interop: Xen test-xenstore against xensim xenstored --profile ${profile}`, function () {
    let d: Daemon;

    before(async function () {
      requireTools('test-xenstore', 'xenstore-exists');
      d = await startTarget(profile);
    });
    after(async () => { await d?.stop(); });

    it('lists the 12 tests this harness expects', async () => {
      const r = await run(TEST_XENSTORE, ['-l'], { env: d.env });
      assert.equal(r.code, 0, r.stderr);
      const names = r.stdout.trim().split('\n').map((l) => l.split(':')[0].trim());
      assert.deepEqual(names, TESTS);
    });

    it('passes all its tests (10 iterations each)', async () => {
      const r = await run(TEST_XENSTORE, ['-i', '10'], { env: d.env });
      const info = describeRun(r, d);
      assert.doesNotMatch(r.stdout, /failed/, info);
      assert.equal(r.code, 0, info);
      const lines = r.stdout.trim().split('\n');
      for (const t of TESTS) {
        const ok = lines.some((l) => l.startsWith(t.padEnd(10) + ':') && /avg: \d+ ns/.test(l));
        assert.ok(ok, `no success line for test "${t}"\n${info}`);
      }
      assert.doesNotMatch(r.stdout, /Exhaustive transaction retries/, info);
    });

    it('runs each test singly with -t', async () => {
      for (const t of TESTS) {
        const r = await run(TEST_XENSTORE, ['-t', t], { env: d.env });
        const info = describeRun(r, d);
        assert.equal(r.code, 0, `test "${t}": ${info}`);
        assert.match(r.stdout, new RegExp(`^${t.padEnd(10)}: \\d+ ns$`, 'm'), info);
      }
    });

    if (profile === 'c') {
      // Random mode on the default profile only, to keep the suite short.
      it('survives 10 s of random mode (-r 10)', async function () {
        const started = Date.now();
        const r = await run(TEST_XENSTORE, ['-r', '10'], { env: d.env });
        const secs = (Date.now() - started) / 1000;
        const info = describeRun(r, d);
        assert.equal(r.signal, null, `test-xenstore -r 10 killed after ${secs} s: ${info}`);
        assert.doesNotMatch(r.stdout, /failed/, info);
        assert.equal(r.code, 0, info);
        assert.ok(secs >= 8.5, `random mode ended after only ${secs} s: ${info}`);
      });
    }

    it('leaves no xenstore-test node behind', async () => {
      // test-xenstore works under xenstore-test/<pid>, relative to dom0's home, and removes it.
      const r = await run(TOOLS['xenstore-exists'].file, ['/local/domain/0/xenstore-test'],
        { env: d.env });
      assert.equal(r.code, 1, `xenstore-test still exists: ${r.stdout}${r.stderr}`);
    });
  });
}
