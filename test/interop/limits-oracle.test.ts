// The real daemon's answers that test/dom0/xenstored/limits.test.ts quotes must still be what
// Debian's C xenstored 4.17 prints: the deterministic parts of test/interop/xs-limits-probe.py are
// re-run on a fresh oracle daemon each, and each transcript must appear whole in
// test/dom0/xenstored/limits-oracle.txt. (The watch-event timeout and write-rate parts take real
// seconds and print rates, so they are recorded, not re-checked here.)
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ORACLE_DIR, PYTHON3, REPO_ROOT, requireOracle, requireTools, run, startOracle } from '../helpers/daemons.ts';

const PROBE = path.join(REPO_ROOT, 'test', 'interop', 'xs-limits-probe.py');
const STORED = path.join(REPO_ROOT, 'test', 'dom0', 'xenstored', 'limits-oracle.txt');

const PARTS: readonly [part: string, serverArgs: string[]][] = [
  ['memory', ['-Q', 'memory=8192', '-q', 'memory=4096']],
  ['boundary', []],
  ['replies', []],
  ['events', ['-Q', 'memory=8192']],
  ['duplicates', []],
];

describe('interop: the recorded answers of C xenstored 4.17 for the limits (limits-oracle.txt)', function () {
  this.timeout(60_000);
  before(() => {
    requireTools('python3');
    requireOracle();
  });

  for (const [part, args] of PARTS) {
    it(`xs-limits-probe.py ${part} on a fresh oracle daemon${args.length ? ` (${args.join(' ')})` : ''} prints what is stored`, async () => {
      const d = await startOracle('c', args);
      try {
        const r = await run(PYTHON3, [PROBE, ORACLE_DIR, part, d.socket]);
        assert.equal(r.code, 0, r.stderr);
        const out = r.stdout.split('\n').map((l) => l.trimEnd()).join('\n');
        assert.ok(out.length > 200, `short transcript:\n${out}`);
        assert.ok(readFileSync(STORED, 'latin1').includes(out), `transcript not in ${path.basename(STORED)}:\n${out}`);
      } finally {
        await d.stop();
      }
    });
  }
});
