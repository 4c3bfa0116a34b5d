// A watcher slower than the writer: each watch handler sleeps before it looks, so events pile up
// while a guest writes a counter 20 times in quick succession. Watch events carry no value - a
// handler re-reads the node when it runs - so the slow watcher sees the same late value many times
// over (duplicates are fine) but never an older value after a newer one, and its last look finds
// the final value: no final state is missed.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';
import type { WatchLogEntry, XsBatchOp } from '../domains/domU/xs-user.ts';

const NODE = '/scenario/slow/value';
const WRITES = 20;

export default defineScenario({
  name: 'slow-watcher',
  title: 'a slow watcher re-reading on each event converges to the final value with no older value after a newer one',
  tags: ['xenstore', 'watches'],
  faults: { jitter: { p: [0, 0.5], maxNs: 2e6 } },
  async run(s) {
    const writer = await s.step('xl create writer', () => s.create('writer', guestConfig('writer')));
    const watcher = await s.step('xl create watcher', () => s.create('watcher', guestConfig('watcher')));
    await s.step(`dom0 creates ${NODE} = 0 (writer may write, watcher may read)`, () =>
      s.rt.toolstackWrite(NODE, '0', ['n0', `b${writer}`, `r${watcher}`]));
    await s.step('the watcher watches it with a handler that takes 3 ms before it re-reads', async () => {
      const r = await s.guest('watcher', { cmd: 'xs-watch', path: NODE, token: 'slow', reread: true, delayNs: 3e6 });
      s.expect(!('error' in r), `XS_WATCH: ${JSON.stringify(r)}`);
    });
    await s.step(`the writer writes 1..${WRITES}, 0.5 ms apart`, async () => {
      const ops: XsBatchOp[] = Array.from({ length: WRITES }, (_, i) => ['write', NODE, String(i + 1)] as const);
      const r = await s.guest<{ results: string[] }>('writer', { cmd: 'xs-batch', ops, gapNs: 5e5 });
      s.expect(r.results.every((x) => x === 'OK'), `writes: ${r.results.join(',')}`);
    });
    const { events } = await s.guest<{ events: WatchLogEntry[] }>('watcher', { cmd: 'xs-events' });
    const seen = events.map((e) => Number(e.value));
    s.note(`the watcher handled ${events.length} events and saw ${seen.join(' ')}`);
    s.expect(events.length > 0 && seen.at(-1) === WRITES, `the watcher's last look found ${seen.at(-1)}, not the final ${WRITES}`);
    s.expect(seen.every((v, i) => i === 0 || v >= seen[i - 1]), 'a newer value was followed by an older one');
    s.expect(new Set(seen).size < seen.length, 'the watcher kept up with the writer (nothing accumulated)');
  },
});
