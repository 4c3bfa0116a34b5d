// The standalone daemon's collection once it goes quiet after clients left (idle-collect.ts),
// on a hand-driven clock: the hostile guests of the soak bench leave their dead buffers behind,
// and an idle V8 heap never collects them by itself.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { IdleCollect } from '../../../domains/dom0/xenstored/idle-collect.ts';
import { XenstoredServer } from '../../../domains/dom0/xenstored/unix-socket.ts';
import { XsHandle } from '../../../domains/libs/store/xs.ts';

/** An IdleCollect on a clock the spec moves; `tick` runs the poll once per pollMs passed. */
function rig(quietMs: readonly number[] = [6000], pollMs = 250) {
  let now = 0;
  let poll: (() => void) | undefined;
  const r = {
    collected: 0,
    get polling() {
      return poll !== undefined;
    },
    ic: undefined as unknown as IdleCollect,
    /** Lets `ms` pass, polling as the timer would. */
    pass(ms: number): void {
      for (let t = 0; t < ms; t += pollMs) {
        now += pollMs;
        poll?.();
      }
    },
  };
  r.ic = new IdleCollect({
    quietMs,
    pollMs,
    now: () => now,
    every: (fn) => {
      assert.equal(poll, undefined, 'one poll at a time');
      poll = fn;
      return () => void (poll = undefined);
    },
    collect: () => void r.collected++,
  });
  return r;
}

describe('xenstored: a full collection once the daemon is quiet after a client left', () => {
  it('nothing is collected while no client has gone, however long the daemon idles', () => {
    const r = rig();
    r.ic.read();
    r.pass(60_000);
    assert.equal(r.collected, 0);
    assert.equal(r.polling, false);
  });

  it('a client goes and nothing more is read: one collection after quietMs, then the poll stops', () => {
    const r = rig();
    r.ic.clientGone();
    r.pass(5750);
    assert.equal(r.collected, 0, 'not before quietMs');
    r.pass(250);
    assert.equal(r.collected, 1);
    assert.equal(r.polling, false);
    r.pass(60_000);
    assert.equal(r.collected, 1, 'once per quiet period');
  });

  it('input from the clients still there puts the collection off until they are quiet for quietMs', () => {
    const r = rig();
    r.ic.clientGone();
    for (let i = 0; i < 40; i++) {
      r.ic.read();
      r.pass(1000);
    }
    assert.equal(r.collected, 0, 'busy: V8 collects as the daemon allocates');
    r.pass(6000);
    assert.equal(r.collected, 1);
  });

  it('another client going while it waits starts the quiet period again, on the same poll', () => {
    const r = rig();
    r.ic.clientGone();
    r.pass(5000);
    r.ic.clientGone();
    r.pass(5000);
    assert.equal(r.collected, 0);
    r.pass(1000);
    assert.equal(r.collected, 1);
  });

  it('a client going after a collection arms it again', () => {
    const r = rig();
    r.ic.clientGone();
    r.pass(6000);
    r.ic.clientGone();
    r.pass(6000);
    assert.equal(r.collected, 2);
  });

  it('several quiet times: one collection as each is reached, then the poll stops', () => {
    const r = rig([1500, 7000]);
    r.ic.clientGone();
    r.pass(1500);
    assert.equal(r.collected, 1);
    assert.equal(r.polling, true);
    r.pass(5250);
    assert.equal(r.collected, 1, 'the second waits for 7 s of quiet in all');
    r.pass(250);
    assert.equal(r.collected, 2);
    assert.equal(r.polling, false);
  });

  it('input between the collections of a quiet period starts it over from the first', () => {
    const r = rig([1500, 7000]);
    r.ic.clientGone();
    r.pass(2000);
    r.ic.read();
    r.pass(1500);
    assert.equal(r.collected, 1, 'the quiet period started over with the input');
    r.pass(250);
    assert.equal(r.collected, 2, 'its first collection again');
    r.pass(5500);
    assert.equal(r.collected, 3);
    assert.equal(r.polling, false);
  });

  it('refuses quiet times that are not positive and increasing, or a poll that is not positive', () => {
    const opts = { quietMs: [1], pollMs: 1, now: () => 0, every: () => () => undefined, collect: () => undefined };
    assert.throws(() => new IdleCollect({ ...opts, quietMs: [0] }), /positive/);
    assert.throws(() => new IdleCollect({ ...opts, quietMs: [] }), /positive/);
    assert.throws(() => new IdleCollect({ ...opts, quietMs: [2, 2] }), /increasing/);
    assert.throws(() => new IdleCollect({ ...opts, pollMs: -1 }), /positive/);
  });
});

describe('xenstored: the Unix-socket server tells IdleCollect of client input and of clients leaving', () => {
  for (const profile of ['c', 'ocaml'] as const) {
    it(`${profile}: a dom0 client and a guest-directory client each read from, then each gone`, async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-idle-'));
      const seen = { read: 0, gone: 0 };
      const server = new XenstoredServer({
        socketPath: path.join(dir, 'socket'), guestDir: path.join(dir, 'g'), profile,
        clients: { read: () => void seen.read++, clientGone: () => void seen.gone++ },
      });
      await server.listen();
      try {
        const dom0 = await XsHandle.open(path.join(dir, 'socket'));
        await dom0.introduce(5, 4716, 14);
        const before = seen.read;
        const guest = await XsHandle.open(path.join(dir, 'g', '5'));
        assert.equal(await guest.getDomainPath(5), '/local/domain/5');
        assert.ok(seen.read > before, 'the guest\'s request was read');
        assert.equal(seen.gone, 0);
        await guest.close();
        await until(() => seen.gone === 1);
        await dom0.close();
        await until(() => seen.gone === 2);
      } finally {
        await server.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

/** Waits (on events, not on a time bound) until `cond` holds. */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}
