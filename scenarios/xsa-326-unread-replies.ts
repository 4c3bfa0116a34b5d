// XSA-326 (CVE-2022-42311..42318), C xenstored: a guest could make the daemon hold unbounded
// memory, e.g. by sending requests and never reading the replies. Fixed (among other bounds): a
// domain may have at most `outstanding` (20) requests whose replies are not yet in its ring;
// beyond that xenstored stops reading the ring until the guest catches up. Here a guest queues
// 200 reads and reads nothing: xenstored takes in only what fits its rsp[] plus 20, everyone else
// is served meanwhile, and once the guest drains its ring every reply arrives, in order.
// Unfixed daemon: it takes in all 200 requests and buffers their replies.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';
import type { XsFloodCommand } from '../domains/domU/xs-flood.ts';
import type { ScenarioRun } from '../sim/scenario/run.ts';

/** '.ts' when running the sources under tsx, '.js' when running dist/: domains load the same kind. */
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const FLOOD = new URL(`../domains/domU/xs-flood${EXT}`, import.meta.url).href;
const COUNT = 200;
const OUTSTANDING = 20;

/** A command to the flooding program (not the standard guest kernel). */
type FloodMessage = XsFloodCommand extends infer C ? (C extends unknown ? Omit<C, 'id'> : never) : never;
const flooder = <T>(s: ScenarioRun, m: FloodMessage): Promise<T> => s.xl.guest<T>(s.domid('flooder'), m as never);

export default defineScenario({
  name: 'xsa-326-unread-replies',
  title: 'XSA-326: a guest that never reads its replies gets at most 20 requests buffered; others are served; all replies come once it reads',
  tags: ['xsa', 'xenstore', 'quota'],
  async run(s) {
    await s.step('xl create flooder (a kernel that floods its xenstore ring)', () => s.create('flooder', guestConfig('flooder'), { program: FLOOD }));
    await s.step('xl create bystander', () => s.create('bystander', guestConfig('bystander')));
    await s.step(`the flooder queues ${COUNT} reads and reads no reply`, () => flooder(s, { cmd: 'flood', count: COUNT, path: 'name' }));
    await s.step(`xenstored stopped reading at ${OUTSTANDING} replies it could not deliver`, async () => {
      const st = await flooder<{ written: number; consumed: number; repliesInRing: number }>(s, { cmd: 'status' });
      s.note(`flooder: ${st.written} written, ${st.consumed} taken by xenstored, ${st.repliesInRing} replies waiting in its ring`);
      s.expect(st.consumed < COUNT, `xenstored took in all ${COUNT} requests`);
      const held = st.consumed - st.repliesInRing;
      s.expect(held <= OUTSTANDING, `xenstored holds ${held} replies, more than ${OUTSTANDING}`);
    });
    await s.step('the bystander and dom0 are served meanwhile', async () => {
      const r = await s.guest<{ results: string[] }>('bystander', { cmd: 'xs-batch', ops: [['read', 'name']] });
      s.expect(r.results[0] === 'bystander', `bystander read: ${r.results[0]}`);
      s.expect(await s.read(`/local/domain/${s.domid('flooder')}/name`) === 'flooder', 'dom0 read');
    });
    await s.step('the flooder drains its ring: every reply arrives, in order', async () => {
      const r = await flooder<{ replies: number[] }>(s, { cmd: 'drain' });
      s.expect(r.replies.length === COUNT && r.replies.every((id, i) => id === i + 1),
        `replies: ${r.replies.length}, first out of order at ${r.replies.findIndex((id, i) => id !== i + 1)}`);
    });
  },
});
