// xl migrate of a guest whose user space has xenstore watches set (relative paths, tokens of its
// own): the suspended kernel keeps them in its memory, and on the destination xs_resume registers
// each again with its token on the new domain's connection - so writes there fire them, each
// event with the token it was set with and the path as the process named it.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';
import { everyDeviceConnected, expectMigrated } from './migration-checks.ts';

interface WatchEvent {
  path: string;
  token: string;
}

export default defineScenario({
  name: 'migrate-with-watches',
  title: "xl migrate of a guest with xenstore watches set: they fire at the destination with their tokens",
  tags: ['migration', 'xenstore'],
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 }, suspendAckDelayNs: [0, 5e6] },
  async run(s) {
    s.devicesAgree('guest');
    await s.peer('B');
    await s.step('xl create guest on host A (xvda, vif 0)', () =>
      s.create('guest', guestConfig('watcher', { memory: 16, disks: [{ vdev: 'xvda', target: 'watcher-root', sizeMiB: 1 }], vifs: [{}] })));
    await s.step('every device connects', () => everyDeviceConnected(s, 'guest'));
    const watches = Array.from({ length: 2 + s.rng.below(3) }, (_, i) => ({ path: `data/w${i}`, token: `tok${i}-${s.rng.below(1e6)}` }));
    await s.step(`a user process sets ${watches.length} watches`, async () => {
      for (const w of watches) {
        const r = await s.guest<{ error?: string }>('guest', { cmd: 'xs-watch', path: w.path, token: w.token });
        s.expect(r.error === undefined, `xs-watch ${w.path}: ${r.error}`);
      }
      await s.guest('guest', { cmd: 'xs-events' });
    });
    const out = await s.step('xl migrate guest B', () => s.migrate('guest', 'B'));
    await s.step('host B runs the guest with its memory; host A has none of it', () => expectMigrated(s, out));
    await s.step('every device Connected at host B', () => everyDeviceConnected(s, 'guest'));
    await s.step('writes at host B fire every watch with its token', async () => {
      // xs_resume's registrations each fire once: drop those, then write every path.
      await s.rt.idle(1e6);
      await s.guest('guest', { cmd: 'xs-events' });
      const r = await s.guest<{ results: string[] }>('guest', { cmd: 'xs-batch', ops: watches.map((w) => ['write', w.path, 'after'] as const) });
      s.expect(r.results.every((x) => x === 'OK'), `writes: ${r.results.join(', ')}`);
      const events: WatchEvent[] = [];
      const missing = (): typeof watches => watches.filter((w) => !events.some((e) => e.token === w.token && e.path === w.path));
      // Each event comes after its write's reply: let host B's time pass until all are in.
      for (let i = 0; i < 100 && missing().length; i++) {
        events.push(...(await s.guest<{ events: WatchEvent[] }>('guest', { cmd: 'xs-events' })).events);
        await s.hostOf('guest').rt.idle(1e6);
      }
      s.expect(missing().length === 0, `no event for ${missing().map((w) => `${w.path} (${w.token})`).join(', ')}; got ${JSON.stringify(events)}`);
      const stray = events.filter((e) => !watches.some((w) => w.token === e.token && e.path.startsWith(w.path)));
      s.expect(stray.length === 0, `events nobody asked for: ${JSON.stringify(stray)}`);
    });
    await s.expectNoOrphans();
  },
});
