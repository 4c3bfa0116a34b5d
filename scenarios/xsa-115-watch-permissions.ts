// XSA-115 (2020), C and oxenstored: watch events leaked what happened to nodes the watcher cannot
// read; any guest could watch @introduceDomain/@releaseDomain and so follow every domain's life;
// and IS_DOMAIN_INTRODUCED answered guests. Fixed: an event goes only to a connection that may
// read the node or its parent; special events need read on the special node (dom0-only by
// default); IS_DOMAIN_INTRODUCED is privileged (EACCES).
// Unfixed daemon: the watcher sees /scenario/hidden/... and another guest's introduction, and
// IS_DOMAIN_INTRODUCED answers T.
import { XsdSockmsgType } from '../hypervisor/public/io/xs_wire.ts';
import type { WatchLogEntry } from '../domains/domU/xs-user.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'xsa-115-watch-permissions',
  title: 'XSA-115: no watch events for unreadable nodes or for special nodes without permission; IS_DOMAIN_INTRODUCED is EACCES for guests',
  tags: ['xsa', 'xenstore', 'watches', 'permissions'],
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const w = await s.step('xl create watcher', () => s.create('watcher', guestConfig('watcher')));
    await s.step('the watcher watches /scenario (the whole subtree) and @introduceDomain', async () => {
      for (const [path, token] of [['/scenario', 'tree'], ['@introduceDomain', 'intro']]) {
        const r = await s.guest<{ error?: string }>('watcher', { cmd: 'xs-watch', path, token });
        s.expect(r.error === undefined, `XS_WATCH ${path}: ${r.error}`);
      }
    });
    await s.step('dom0 writes a node the watcher may read and one under a directory it may not', async () => {
      await s.rt.toolstackWrite('/scenario/open', '', ['n0', `r${w}`]);
      await s.rt.toolstackWrite('/scenario/open/public', 'hello', ['n0', `r${w}`]);
      await s.rt.toolstackWrite('/scenario/hidden', '', ['n0']);
      await s.rt.toolstackWrite('/scenario/hidden/secret', 'dom0 only', ['n0']);
    });
    await s.step('xl create another guest (fires @introduceDomain)', () => s.create('other', guestConfig('other')));
    await s.step('the watcher heard only of what it may read', async () => {
      const { events } = await s.guest<{ events: WatchLogEntry[] }>('watcher', { cmd: 'xs-events' });
      const tree = events.filter((e) => e.token === 'tree').map((e) => e.path);
      const intro = events.filter((e) => e.token === 'intro').map((e) => e.path);
      s.note(`watcher's events: tree ${tree.join(' ')}; intro ${intro.join(' ')}`);
      s.expect(tree.includes('/scenario/open/public'), 'the readable node\'s event arrived (the watch works)');
      s.expect(!tree.some((p) => p.startsWith('/scenario/hidden')), `events leaked from /scenario/hidden: ${tree.join(' ')}`);
      // Only the initial event every new watch gets, whatever the permissions.
      s.expect(intro.length === 1, `@introduceDomain events: ${intro.length} (another domain's introduction leaked)`);
    });
    await s.step('IS_DOMAIN_INTRODUCED from a guest is EACCES', async () => {
      const r = await s.guest<{ payload?: string; error?: string }>('watcher',
        { cmd: 'xs', type: XsdSockmsgType.XS_IS_DOMAIN_INTRODUCED, payload: `${s.domid('other')}\0` });
      s.expect(r.error === 'EACCES', `IS_DOMAIN_INTRODUCED: ${r.payload ?? r.error}`);
    });
  },
});
