// pyxs (Debian's python3-pyxs, for /usr/bin/python3) against xensim xenstored: basic operations,
// permissions, a transaction that conflicts (commit() returns False) and is retried until it
// commits, and watch events. test/interop/pyxs-scenario.py does the talking and prints what it
// saw as JSON; the expected values below are what C xenstored and oxenstored both give.
import assert from 'node:assert/strict';
import path from 'node:path';
import { PYTHON3, REPO_ROOT, requireTools, run, startTarget, type Daemon } from '../helpers/daemons.ts';

const SCENARIO = path.join(REPO_ROOT, 'test', 'interop', 'pyxs-scenario.py');

const EXPECTED = {
  read_a: '1',
  getitem_b: 'two',
  read_missing: 'error:ENOENT',
  read_default: 'dflt',
  read_mkdir: '',
  list: ['a', 'b', 'dir'],
  list_empty: [],
  exists_a: true,
  exists_none: false,
  read_bin: [0x61, 0x00, 0x62, 0x7f],
  list_after_delete: ['a', 'b', 'bin'],
  delete_missing_parent: 'error:ENOENT',
  walk: [
    ['/pyxs', '', ['a', 'b', 'bin']],
    ['/pyxs/a', '1', []],
    ['/pyxs/b', 'two', []],
    ['/pyxs/bin', 'a\u0000b\u007f', []],
  ],
  domain_path: '/local/domain/7',
  is_introduced_0: true,
  is_introduced_9: false,
  perms_default: ['n0'],
  perms_set: ['n1', 'r2', 'w3'],
  perms_inherited: ['n1', 'r2', 'w3'],
  perms_missing: 'error:ENOENT',
  read_other_conn: '1',
  tx_in_tx_read: '1',
  tx_attempts: [false, true],
  tx_final: '11',
  rollback_exists: false,
  ev_initial: ['/pyxs/w', 'tok'],
  ev_write_child: ['/pyxs/w/x', 'tok'],
  ev_write_self: ['/pyxs/w', 'tok'],
  ev_before_commit: 'none',
  tx2_commit: true,
  ev_commit: ['/pyxs/w/y', 'tok'],
  ev_delete: ['/pyxs/w', 'tok'],
  ev_after_unwatch: 'none',
  cleaned: true,
};

for (const profile of ['c', 'ocaml'] as const) {
  describe(`interop: pyxs against xensim xenstored --profile ${profile}`, function () {
    let d: Daemon;

    before(async () => {
      requireTools('python3', 'pyxs');
      d = await startTarget(profile);
    });
    after(async () => { await d?.stop(); });

    it('read/write/list/perms, a conflicting transaction retried to success, watch events', async () => {
      const r = await run(PYTHON3, [SCENARIO, d.socket]);
      const info = `exit ${r.code} signal ${r.signal}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}\n` +
        `daemon log (tail):\n${d.log().slice(-3000)}`;
      assert.equal(r.code, 0, info);
      const got = JSON.parse(r.stdout) as Record<string, unknown>;
      // Compare key by key first, so that a failure names the step.
      for (const [k, v] of Object.entries(EXPECTED)) assert.deepEqual(got[k], v, `step ${k}\n${info}`);
      assert.deepEqual(got, EXPECTED);
    });
  });
}
