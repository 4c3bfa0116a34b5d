// Debian's own `xenstore-control live-update -f FILE` (xen-utils-4.17) drives live updates of
// `xensim xenstored` while dom0 socket clients keep working: a writer loops over writes, reads
// and read-modify-write transactions, a watcher counts its events. Every update must be a real
// switch (the daemon logs each new instance), and afterwards no write is lost or repeated, no
// watch event lost or doubled, no request failed.
// XENSIM_LU_COUNT sets how many updates (default 20; the acceptance asks for 100).
// XENSIM_INTEROP_DAEMON=oracle runs it against the real C xenstored 4.17 (../shared/oracle),
// which passes it too (it execs itself with -U each time).
import assert from 'node:assert/strict';
import { XsHandle } from '../../domains/libs/store/xs.ts';
import { requireTools, run, startTarget, stopAll, targetIsOracle, type Daemon, XEN_BIN } from '../helpers/daemons.ts';

const XENSTORE_CONTROL = `${XEN_BIN}/xenstore-control`;
const COUNT = Number(process.env.XENSIM_LU_COUNT ?? 20);

describe('live update through Debian\'s xenstore-control (C 4.17 protocol)', function () {
  this.timeout(600_000);
  let d: Daemon | undefined;
  afterEach(async () => stopAll(d));

  it(`${COUNT} live updates under a looping socket client: 0 errors, no lost or repeated write, no lost watch event`, async () => {
    requireTools('xenstored');
    d = await startTarget('c');
    const writer = await XsHandle.open(d.socket);
    const watcher = await XsHandle.open(d.socket);
    const events = new Map<string, number>();
    watcher.on('watch', (path) => events.set(path, (events.get(path) ?? 0) + 1));
    await writer.write('/loop/count', '0');
    await watcher.watch('/loop', 'w');
    const errors: string[] = [];
    let written = 0;
    let commits = 0;
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        try {
          const i = written + 1;
          await writer.write(`/loop/k${i}`, String(i));
          written = i;
          const back = (await writer.read(`/loop/k${i}`)).toString('latin1');
          if (back !== String(i)) errors.push(`read /loop/k${i}: ${back}`);
          await writer.transaction(async (tx) => {
            const v = Number((await writer.read('/loop/count', tx)).toString('latin1'));
            await writer.write('/loop/count', String(v + 1), tx);
          });
          commits++;
        } catch (e) {
          errors.push(String(e));
          if (errors.length > 20) break;
        }
      }
    })();
    for (let u = 0; u < COUNT; u++) {
      const r = await run(XENSTORE_CONTROL, ['live-update', '-f', `${XEN_BIN}/xenstored`], { env: d.env });
      assert.equal(r.code, 0, `update ${u + 1}: ${r.stdout}${r.stderr}`);
    }
    stop = true;
    await loop;
    // The watcher's own request comes back after every event queued for it before.
    const count = Number((await watcher.read('/loop/count')).toString('latin1'));
    const keys = (await writer.directory('/loop')).filter((k) => k.startsWith('k'));
    await writer.close();
    await watcher.close();

    assert.deepEqual(errors, []);
    if (!targetIsOracle()) {
      const switches = d.log().match(/live-update: new instance read/g)?.length ?? 0;
      assert.equal(switches, COUNT, `the daemon switched instances ${switches} times:\n${d.log()}`);
    }
    assert.ok(written > 0 && commits > 0, `the client made progress (${written} writes, ${commits} commits)`);
    assert.equal(count, commits, 'each committed increment once');
    assert.equal(keys.length, written, 'each write once');
    for (let i = 1; i <= written; i++) assert.equal(events.get(`/loop/k${i}`), 1, `one event for /loop/k${i}`);
    assert.equal(events.get('/loop/count'), commits, 'one event per commit');
    assert.equal(events.get('/loop'), 1, 'the initial event');
  });
});
