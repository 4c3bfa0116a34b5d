// XSA-324 (2020), C xenstored: a guest registered a watch with a token so long that an event
// path plus the token no longer fit in a 4096-byte message; building that event dereferenced
// NULL and killed the daemon. Fixed: such an event is silently dropped, everything else goes on.
// Here the token leaves room for the watched node's own name but not for a child's.
// Unfixed daemon: it dies at the child's write, and every later request hangs. The guest's own
// kernel sends the XS_WATCH on its ring: /dev/xen/xenbus would refuse a message that big and
// would show xenstored a kernel token instead.
import { XENSTORE_PAYLOAD_MAX, XsdSockmsgType } from '../hypervisor/public/io/xs_wire.ts';
import type { WatchLogEntry } from '../domains/domU/xs-user.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const WATCHED = 'data/w';
/** `data/w\0<token>\0` fills a message exactly. */
const TOKEN = 't'.repeat(XENSTORE_PAYLOAD_MAX - WATCHED.length - 2);

export default defineScenario({
  name: 'xsa-324-huge-watch-token',
  title: 'XSA-324: a watch event too big for a message is dropped and xenstored stays alive',
  tags: ['xsa', 'xenstore', 'watches'],
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    await s.step('xl create guest', () => s.create('guest', guestConfig('guest')));
    await s.step('xl create bystander', () => s.create('bystander', guestConfig('bystander')));
    await s.step(`the guest watches ${WATCHED} with a ${TOKEN.length}-byte token`, async () => {
      const r = await s.guest<{ error?: string }>('guest', { cmd: 'xs-watch', path: WATCHED, token: TOKEN, ring: true });
      s.expect(r.error === undefined, `XS_WATCH: ${r.error}`);
    });
    await s.step(`the guest writes ${WATCHED}/child (its event cannot fit), then ${WATCHED} (its event fits)`, async () => {
      const r = await s.guest<{ results: string[] }>('guest', { cmd: 'xs-batch', ops: [['write', `${WATCHED}/child`, 'x'], ['write', WATCHED, 'y']] });
      s.expect(r.results.join(',') === 'OK,OK', `writes: ${r.results.join(',')}`);
    });
    await s.step('the oversized event was dropped, the others delivered', async () => {
      const { events } = await s.guest<{ events: WatchLogEntry[] }>('guest', { cmd: 'xs-events' });
      const paths = events.map((e) => e.path);
      s.expect(events.every((e) => e.token === TOKEN), 'events carry the whole token');
      s.expect(paths.join(' ') === `${WATCHED} ${WATCHED}`, `events: ${paths.join(' ')} (expected the initial one and the write of ${WATCHED})`);
    });
    await s.step('xenstored still answers the guest, another guest and dom0', async () => {
      const read = { cmd: 'xs' as const, type: XsdSockmsgType.XS_READ, payload: `${WATCHED}/child\0`, timeoutNs: 1e9 };
      const g = await s.guest<{ payload?: string; timedOut?: boolean }>('guest', read);
      s.expect(g.payload === 'x', `guest read: ${JSON.stringify(g)}`);
      const b = await s.guest<{ payload?: string; timedOut?: boolean }>('bystander', { ...read, payload: 'name\0' });
      s.expect(b.payload === 'bystander', `bystander read: ${JSON.stringify(b)}`);
      s.expect(await s.read(`/local/domain/${s.domid('guest')}/${WATCHED}`) === 'y', 'dom0 reads the guest\'s node');
    });
  },
});
