// `xensim xenstored --dump FILE` writes the daemon's state as the live-update state stream
// (xenstore-migration.md) when stopped and on SIGUSR1; `--restore FILE` starts a daemon from it.
// Seen through Debian's xenstore-ls -fp: the same tree, values and permissions.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeState, XsStateType } from '../../domains/dom0/xenstored/xenstore-state.ts';
import { TOOLS, XEN_BIN, requireTools, run, startXensim, stopAll, type Daemon } from '../helpers/daemons.ts';
import { waitFor } from '../helpers/wait.ts';

describe('xensim xenstored --dump / --restore', function () {
  this.timeout(120_000);
  let a: Daemon | undefined;
  let b: Daemon | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await stopAll(a, b);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const ls = async (d: Daemon): Promise<string> => {
    const r = await run(TOOLS['xenstore-ls'].file, ['-fp'], { env: d.env });
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };

  it('a tree dumped on SIGUSR1 and at exit comes back with its values and permissions', async () => {
    requireTools('xenstore-ls', 'xenstore-write', 'xenstore-chmod');
    dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-dump-'));
    const file = path.join(dir, 'state');
    a = await startXensim({ args: ['--dump', file, '-Q', 'nodes=77'] });
    for (const [p, v] of [['/a/b', 'one'], ['/a/c', 'two words'], ['/local/domain/5/x', '']]) {
      assert.equal((await run(TOOLS['xenstore-write'].file, [p, v], { env: a.env })).code, 0);
    }
    assert.equal((await run(TOOLS['xenstore-chmod'].file, ['/a/b', 'n5', 'r0', 'b7'], { env: a.env })).code, 0);
    process.kill(a.pid, 'SIGUSR1');
    await waitFor(async () => existsSync(file), 'the SIGUSR1 dump');
    const before = await ls(a);
    await a.stop();
    a = undefined;
    const records = decodeState(readFileSync(file)).records;
    assert.ok(records.some((r) => r.type === XsStateType.NODE && 'path' in r && r.path === '/a/b'));
    b = await startXensim({ args: ['--restore', file] });
    assert.equal(await ls(b), before);
    const q = await run(`${XEN_BIN}/xenstore-control`, ['quota'], { env: b.env });
    assert.match(q.stdout, /^nodes +: +77 /m, 'the quota came with the stream');
  });
});
