// The seed's xenstored replication (not in Xen; `--seed-replicas N`, off by default): the primary
// publishes each batch's committed changes on a shared-memory log before the batch's replies
// leave, N standbys apply it, and when the primary dies standby 0 writes its state as a
// migration stream the new daemon is read from. Specified here: a standby's state is the
// primary's after every batch (tree with ACLs, generations' effect and child order; connections,
// watches, transaction ids; domains), failover keeps every acknowledged write and the clients'
// connections, and the log's indexes hold (whole batches, in order, never overwritten unread).
import assert from 'node:assert/strict';
import { dumpState, readState } from '../../../domains/dom0/xenstored/lu.ts';
import type { Xenstored } from '../../../domains/dom0/xenstored/core.ts';
import { formatPerms } from '../../../domains/dom0/xenstored/permissions.ts';
import { Standby } from '../../../domains/dom0/xenstored/replica.ts';
import { createReplicationLog, ReplicationLogReader, ReplicationLogWriter } from '../../../domains/dom0/xenstored/replication-log.ts';
import { nulJoin } from '../../../hypervisor/public/io/xs_wire.ts';
import { type Client, Harness, T } from './harness.ts';

const noBytes = { input: () => new Uint8Array(0), output: () => ({ data: new Uint8Array(0), respLen: 0 }) };

/** Everything a new daemon would be built with, as comparable lines. */
function picture(xs: Xenstored): string[] {
  const out: string[] = [];
  for (const [p, n] of xs.store.walk('/')) out.push(`node ${p} ${formatPerms(n.perms).join(',')} ${JSON.stringify(n.value)}`);
  for (const c of xs.connections.values()) {
    out.push(`conn ${c.id} ${c.kind} dom${c.domid} target ${c.target} tx ${[...c.transactions.keys()].join(',')}`);
    for (const w of c.watches) out.push(`watch ${c.id} ${w.node} ${w.token} ${w.relativeTo}`);
  }
  for (const d of xs.domains.values()) out.push(`domain ${d.domid} ${d.introduced} ${d.port}`);
  for (const [name, perms] of xs.special) out.push(`special ${name} ${formatPerms(perms).join(',')}`);
  out.push(`quotas ${JSON.stringify(xs.quotas)}`);
  return out;
}

/** The primary's state as restart() would restore it, and standby `i`'s as failover() would. */
function compare(h: Harness, i: number, what: string): void {
  // A batch ends (connections opened outside a request count from the next publish on).
  h.daemon.flush();
  const r = h.daemon.replication!;
  const standby = r.standbys[i];
  standby.pump();
  assert.equal(standby.applied, r.recorder.seq, `${what}: standby ${i} applied every published batch`);
  const primary = readState(dumpState(h.xs, noBytes, { transactions: true }), h.daemon.opts, { transactions: true }).xs;
  const replica = readState(standby.stream(h.daemon.opts), h.daemon.opts, { transactions: true }).xs;
  assert.deepEqual(picture(replica), picture(primary), what);
}

/** A small PRNG: the workload is the same every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

describe('xenstored replication (the seed\'s --seed-replicas)', () => {
  it('is off by default: no log, no standby', () => {
    const h = new Harness();
    assert.equal(h.daemon.replication, undefined);
  });

  /**
   * A seeded mix of every kind of change from guests and tools; each standby is compared with the
   * primary every 7 steps. `long`: some values long (encoded another way, and past a small ring's room).
   */
  function followsEveryBatch(profile: 'c' | 'ocaml', seed: number, opts: { ring?: number; long?: boolean } = {}): void {
    const h = new Harness({ profile, seedReplicas: 2, seedReplicationLogBytes: opts.ring });
    const next = rng(seed);
    const pick = <X>(xs: readonly X[]): X => xs[Math.floor(next() * xs.length)];
    const guests: Client[] = [h.introduce(1, { data: true }), h.introduce(2, { data: true })];
    const tools: Client[] = [h.dom0, h.socket()];
    const open = new Map<Client, number>();
    for (let step = 0; step < 400; step++) {
      const c = pick([...tools, ...guests]);
      const home = c.domid === 0 ? '/tool/t' : `/local/domain/${c.domid}/data`;
      const path = `${home}/${pick(['a', 'b', 'a/x', 'b/y/z'])}`;
      const tx = open.get(c) ?? 0;
      switch (pick(['write', 'write', 'mkdir', 'rm', 'perms', 'watch', 'unwatch', 'tx', 'tx', 'dead'])) {
        case 'write': c.write(path, opts.long === true && step % 3 === 0 ? `v${step}`.padEnd(Math.floor(next() * 4000), 'x') : `v${step}`, tx); break;
        case 'mkdir': c.mkdir(path, tx); break;
        case 'rm': c.rm(path, tx); break;
        case 'perms': c.setPerms(path, pick([`n${c.domid}`, `n${c.domid} r1`, `b${c.domid} r2 w7`]), tx); break;
        case 'watch': c.watch(path, `t${step % 3}`); break;
        case 'unwatch': c.unwatch(path, `t${step % 3}`); break;
        case 'tx':
          if (tx === 0) open.set(c, c.txStart());
          else {
            c.commit(tx);
            open.delete(c);
          }
          break;
        case 'dead':
          // A domain dies and comes back as a new one with the same domid (generations move on).
          if (c.domid !== 0 && step % 4 === 0) {
            h.domainState(c.domid, 'dead');
            // C xenstored waits for the toolstack's RELEASE; oxenstored has let go already (EINVAL).
            h.release(c.domid);
            guests[guests.indexOf(c)] = h.introduce(c.domid, { data: true });
            open.delete(c);
          }
          break;
      }
      if (step % 7 === 0) for (const i of [0, 1]) compare(h, i, `${profile} step ${step}`);
    }
    compare(h, 1, `${profile} at the end`);
  }

  for (const profile of ['c', 'ocaml'] as const) {
    it(`profile ${profile}: after every batch each standby holds the primary's state`, () => {
      followsEveryBatch(profile, profile === 'c' ? 7 : 11);
    });
  }

  it('a 4 KiB ring, the same mix with long values: each standby holds the primary\'s state', () => {
    followsEveryBatch('c', 5, { ring: 4096, long: true });
  });

  it('a 4 KiB ring: records of every length wrap around its end; a batch bigger than the ring arrives whole', () => {
    const h = new Harness({ seedReplicas: 1, seedReplicationLogBytes: 4096 });
    const next = rng(3);
    for (let i = 0; i < 300; i++) {
      // Short values (copied a byte at a time) and long ones (up to a record nearly the ring's size).
      const len = i % 4 === 0 ? Math.floor(next() * 4000) : Math.floor(next() * 100);
      assert.equal(h.dom0.write(`/tool/k${i % 17}`, String(i).padEnd(len, 'x')), 'OK');
      if (i % 10 === 0) compare(h, 0, `write ${i}`);
    }
    // One commit: a batch of 15 KB, published in parts as the standby frees room.
    const tx = h.dom0.txStart();
    for (let i = 0; i < 5; i++) assert.equal(h.dom0.write(`/tool/big${i}`, 'y'.repeat(3000), tx), 'OK');
    assert.equal(h.dom0.commit(tx), 'OK');
    compare(h, 0, 'after the big commit');
  });

  it('a transport dropping or resetting a connection (outside any request): the standbys follow', () => {
    const h = new Harness({ seedReplicas: 1 });
    const a = h.socket('a');
    const b = h.socket('b');
    assert.equal(a.watch('/tool', 'ta'), 'OK');
    assert.equal(b.watch('/tool', 'tb'), 'OK');
    compare(h, 0, 'two watching sockets');
    // b's client went away; a's transport reset it (as a guest ring's reconnection does).
    h.xs.disconnect(b.id);
    h.xs.resetConnection(a.id);
    compare(h, 0, 'one socket gone, the other reset');
  });

  it('a change to the connections that nothing tells the replication of is caught within 64 batches', () => {
    const h = new Harness({ seedReplicas: 1 });
    const a = h.socket('a');
    a.read('/tool');
    // Behind every hook's back: as if a new code path forgot to say so.
    h.xs.connections.get(a.id)!.nextTxId += 5;
    assert.throws(() => {
      for (let i = 0; i < 64; i++) a.read('/tool');
    }, /changed and nothing said so/);
  });

  it('after a live update the standbys follow the new instance (its state sent whole)', () => {
    const h = new Harness({ seedReplicas: 1 });
    h.dom0.write('/tool/kept', 'yes');
    const before = h.xs;
    assert.equal(h.dom0.request(T.XS_CONTROL, nulJoin('live-update', '-f', '/usr/sbin/xenstored')).payload, 'OK\0');
    h.dom0.request(T.XS_CONTROL, nulJoin('live-update', '-s'));
    assert.notEqual(h.xs, before);
    h.dom0.write('/tool/after', 'too');
    compare(h, 0, 'after the live update');
  });

  it('failover: every acknowledged write is there, clients carry on, open transactions end in EAGAIN', () => {
    const h = new Harness({ seedReplicas: 2 });
    const g = h.introduce(3, { data: true });
    const tool = h.socket('tool');
    assert.equal(tool.watch('/local/domain/3/data', 'w'), 'OK');
    for (let i = 0; i < 50; i++) assert.equal(g.write(`data/k${i}`, `v${i}`), 'OK');
    const tx = tool.txStart();
    assert.equal(tool.write('/tool/in-tx', 'x', tx), 'OK');
    const dead = h.xs;
    h.daemon.crash();
    // A request to the dead daemon is never answered, never acknowledged.
    assert.equal(g.request(T.XS_WRITE, 'data/lost\0never acknowledged').error, 'NOREPLY');
    h.daemon.failover();
    assert.notEqual(h.xs, dead);
    for (let i = 0; i < 50; i++) assert.equal(g.read(`data/k${i}`), `v${i}`);
    assert.equal(g.read('data/lost'), 'ENOENT');
    assert.equal(tool.commit(tx), 'EAGAIN');
    tool.events();
    assert.equal(g.write('data/after', '1'), 'OK');
    assert.deepEqual(tool.events(), [['/local/domain/3/data/after', 'w']], 'the watch came over');
    // The new primary has standbys of its own.
    compare(h, 0, 'after failover');
  });

  it('the primary staged but had not published: that batch is lost with it, nothing after the last publish leaks', () => {
    const h = new Harness({ seedReplicas: 1 });
    assert.equal(h.dom0.write('/tool/acked', '1'), 'OK');
    // Handled, not yet flushed (no reply sent): the process dies before its batch is published.
    h.daemon.request(h.dom0.id, { type: T.XS_WRITE, req_id: 99, tx_id: 0, payload: Buffer.from('/tool/unacked\0x', 'latin1') });
    h.daemon.crash();
    h.daemon.failover();
    assert.equal(h.dom0.read('/tool/acked'), '1');
    assert.equal(h.dom0.read('/tool/unacked'), 'ENOENT');
  });

  it('standbys on threads of their own: the primary dies, standby 0 sends a stream with every acknowledged write', async function () {
    this.timeout(30_000);
    const { startStandbyThreads } = await import('../../../domains/dom0/xenstored/standby-thread.ts');
    const h = new Harness({ seedReplicas: 2, seedStandbys: 'threads' });
    const threads = startStandbyThreads(h.daemon.replication!, {});
    try {
      await threads.ready;
      for (let i = 0; i < 200; i++) assert.equal(h.dom0.write(`/tool/k${i}`, `v${i}`), 'OK');
      h.daemon.crash();
      const promoted = await threads.promoted;
      assert.equal(promoted.applied, h.daemon.replication!.recorder.seq, 'standby 0 applied every published batch');
      h.daemon.failover(promoted.stream);
      for (let i = 0; i < 200; i++) assert.equal(h.dom0.read(`/tool/k${i}`), `v${i}`);
    } finally {
      await threads.stop();
    }
  });

  describe('the log', () => {
    it('publishes whole batches; a reader never reads past the tail', () => {
      const shared = createReplicationLog(2, 4096);
      const w = new ReplicationLogWriter(shared);
      const r0 = new ReplicationLogReader(shared, 0);
      const r1 = new ReplicationLogReader(shared, 1);
      w.publish(new Uint8Array(1000).fill(1));
      assert.equal(r0.available(), 1000);
      assert.deepEqual(r0.take(), new Uint8Array(1000).fill(1));
      assert.equal(r0.available(), 0);
      assert.equal(r1.available(), 1000);
      assert.equal(w.used(), 1000, 'the slowest reader holds the space');
    });

    it('a full ring asks for room (a standby must read) and wraps around', () => {
      const shared = createReplicationLog(1, 4096);
      const w = new ReplicationLogWriter(shared);
      const r = new ReplicationLogReader(shared, 0);
      const got: number[] = [];
      let asked = 0;
      w.makeRoom = () => {
        asked++;
        got.push(...r.take());
        return true;
      };
      const big = Uint8Array.from({ length: 10_000 }, (_, i) => i & 0xff);
      w.publish(big);
      got.push(...r.take());
      assert.equal(asked, 2);
      assert.deepEqual(Uint8Array.from(got), big);
    });

    it('a standby mapping the ring in changes no byte of it, published or not', () => {
      const shared = createReplicationLog(1, 1 << 16);
      const w = new ReplicationLogWriter(shared);
      const r = new ReplicationLogReader(shared, 0);
      const bytes = Uint8Array.from({ length: 40_000 }, (_, i) => (i * 7) & 0xff);
      w.publish(bytes);
      // A batch being placed, not yet published.
      const at = w.place(3);
      w.data.set([1, 2, 3], at);
      r.mapIn();
      assert.deepEqual(r.take(), bytes);
      w.publishPlaced();
      assert.deepEqual(r.take(), Uint8Array.of(1, 2, 3));
    });

    it('a full ring with no reader is an error, not an overwrite', () => {
      const w = new ReplicationLogWriter(createReplicationLog(1, 4096));
      assert.throws(() => w.publish(new Uint8Array(5000)), /ring full/);
    });

    it('a standby refuses a batch out of order', () => {
      const shared = createReplicationLog(1, 4096);
      const w = new ReplicationLogWriter(shared);
      const standby = new Standby(new ReplicationLogReader(shared, 0));
      // BATCH records (length 5: kind 5, u32 number): 1, then 3 - a gap in the numbering.
      w.publish(Uint8Array.of(5, 0, 0, 0, 5, 1, 0, 0, 0));
      assert.equal(standby.pump(), 1);
      w.publish(Uint8Array.of(5, 0, 0, 0, 5, 3, 0, 0, 0));
      assert.throws(() => standby.pump(), /batch 3 after batch 1/);
    });

    it('publishing after the primary died is refused', () => {
      const w = new ReplicationLogWriter(createReplicationLog(1, 4096));
      w.markDead();
      assert.throws(() => w.publish(new Uint8Array(1)), /after the primary died/);
    });
  });
});
