// SIGUSR1 to oxenstored writes its tree to /var/run/xenstored/db.debug; `xensim xenstored --profile
// ocaml` writes the same file in its run directory (the socket's). Same requests, same bytes.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { TOOLS, requireOracle, requireTools, run, startOracle, startXensim, type Daemon } from '../helpers/daemons.ts';

const ORACLE_DUMP = '/var/run/xenstored/db.debug';

async function fill(d: Daemon): Promise<void> {
  const steps: [keyof typeof TOOLS, string[]][] = [
    ['xenstore-write', ['/a/b', 'x y', '/c', 'tab\there "q" back\\\\slash', '/local/domain/3/name', 'g']],
    ['xenstore-chmod', ['/a/b', 'n0', 'r5', 'w6']],
    ['xenstore-chmod', ['/local/domain/3', 'n3', 'r0']],
    // A path starting with '@' is one root child name, '/' and all.
    ['xenstore-write', ['@x/y', 'v', '@x', 'w', '@x-', 'z']],
  ];
  for (const [tool, args] of steps) {
    const r = await run(TOOLS[tool].file, args, { env: d.env });
    assert.equal(r.code, 0, `${tool} ${args.join(' ')}: ${r.stderr}`);
  }
}

/** Sends SIGUSR1 and waits for the file to appear (a few seconds at most). */
async function dumpOf(d: Daemon, file: string): Promise<string> {
  rmSync(file, { force: true });
  process.kill(d.pid, 'SIGUSR1');
  for (let i = 0; i < 200; i++) {
    try {
      const text = readFileSync(file, 'latin1');
      if (text.endsWith('\n')) return text;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no ${file} after SIGUSR1`);
}

describe('interop: the SIGUSR1 debug dump against oxenstored 4.17', function () {
  let ref: Daemon | undefined;
  let sim: Daemon | undefined;
  before(() => {
    requireOracle();
    requireTools('oxenstored', 'xenstore-write', 'xenstore-chmod');
    mkdirSync(path.dirname(ORACLE_DUMP), { recursive: true });
  });
  after(async () => {
    await ref?.stop();
    await sim?.stop();
  });

  it('db.debug holds the same lines, in the same order', async () => {
    ref = await startOracle('ocaml');
    sim = await startXensim({ profile: 'ocaml' });
    await fill(ref);
    await fill(sim);
    const want = await dumpOf(ref, ORACLE_DUMP);
    const got = await dumpOf(sim, path.join(sim.dir, 'db.debug'));
    assert.ok(want.includes('a/b{n0\\000r5\\000w6} = x y'), want);
    assert.equal(got, want);
  });
});
