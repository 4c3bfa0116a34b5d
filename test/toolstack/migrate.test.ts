// xl migrate between two lockstep hosts in this process, joined by a pipe (the bytes an ssh
// command would carry): the live stream with log-dirty precopy, xl's handshake, the new domain on
// the destination, the source destroyed - and every failure before the go resumes the source.
import assert from 'node:assert/strict';
import type { DomainConfig } from '../../domains/dom0/toolstack/config.ts';
import { MigratePipe, type PipeWriter } from '../../sim/migrate-pipe.ts';
import { MigrateError, migrateReceive, migrateSend } from '../../sim/xl-migrate.ts';
import { type PrecopyPolicy, PrecopyPolicyDecision, SPP_MAX_ITERATIONS, simplePrecopyPolicy } from '../../domains/dom0/toolstack/migration/precopy.ts';
import { XlMigrateMessage, xlMigrateMessageBytes } from '../../domains/dom0/toolstack/migration/xl-migrate-channel.ts';
import { bootHost, type TestHost } from '../helpers/host.ts';

const CFG: DomainConfig = { name: 'mover', disks: [{ vdev: 'xvda', target: 'mover-root', sizeMiB: 4 }], vifs: [{}] };
const DEVICES = ['vbd/51712', 'vif/0'];

/**
 * Two pipe ends: what one writes, the other reads. The sender's bytes past `cutAfter` are lost and
 * its side closed (a connection reset); with `loseGo` its "permission to go" never arrives.
 */
function pipes(cutAfter = Infinity, loseGo = false): { sender: MigratePipe; receiver: MigratePipe } {
  const go = Buffer.from(xlMigrateMessageBytes(XlMigrateMessage.migrate_permission_to_go));
  let sent = 0;
  const link: { sender?: MigratePipe; receiver?: MigratePipe } = {};
  const to = (peer: () => MigratePipe | undefined, cut: boolean): PipeWriter => ({
    write: (b) => {
      if (cut && loseGo && Buffer.from(b).equals(go)) {
        peer()!.end(new Error('connection reset'));
        return true;
      }
      if (cut) {
        const room = Math.max(0, cutAfter - sent);
        sent += b.length;
        if (room < b.length) {
          if (room > 0) peer()!.push(b.slice(0, room));
          peer()!.end(new Error('connection reset'));
          return true;
        }
      }
      if (!peer()!.closed) peer()!.push(b.slice());
      return true;
    },
    drain: () => new Promise((r) => setImmediate(r)),
    end: () => peer()!.end(),
  });
  link.sender = new MigratePipe(to(() => link.receiver, true), 'sender');
  link.receiver = new MigratePipe(to(() => link.sender, false), 'receiver');
  return link as { sender: MigratePipe; receiver: MigratePipe };
}

async function connected(h: TestHost, domid: number): Promise<void> {
  for (const d of DEVICES) {
    const w = await h.rt.toolstack<{ ok: boolean }>('wait', { path: `/local/domain/${domid}/device/${d}/state`, value: '4' });
    assert.ok(w.ok, `${d} Connected in domain ${domid}`);
  }
}

describe('xl migrate (two hosts in one process)', function () {
  this.timeout(120_000);
  let a: TestHost;
  let b: TestHost;
  beforeEach(async () => {
    a = await bootHost(3);
    b = await bootHost(4);
  });
  afterEach(async () => {
    await a.rt.shutdown();
    await b.rt.shutdown();
  });

  it('moves a guest dirtying memory: precopy rounds then a short last round, equal memory, devices Connected, source gone', async () => {
    const src = await a.xl.create(CFG);
    await connected(a, src);
    await a.xl.guest(src, { cmd: 'mem-fill', pages: 64 });
    // A lockstep host runs the guest's timers whenever it lets time pass: the workload dirties
    // its pages while the first round is on the wire, then stops.
    await a.xl.guest(src, { cmd: 'mem-dirty', pages: 8, everyNs: 100e3, times: 16 });
    const { sender, receiver } = pipes();
    const [sent, got] = await Promise.all([migrateSend(a.xl, src, sender), migrateReceive(b.xl, receiver)]);
    assert.equal(got.hash, sent.hash, 'the destination holds every frame as at the final suspend');
    assert.equal(sent.liveRounds, 2, `the dirtied pages resent once while it ran: ${JSON.stringify(sent.rounds)}`);
    assert.ok(sent.rounds[1] >= 64, `every workload page dirtied during round 1: ${JSON.stringify(sent.rounds)}`);
    assert.ok(sent.rounds.at(-1)! < 50, `the last round is short: ${JSON.stringify(sent.rounds)}`);
    assert.ok(got.pagesResent > 0);
    assert.ok(!a.rt.host.domains.has(src), 'source destroyed');
    assert.ok(!(await a.xl.dump('/local/domain')).some((n) => n.path.startsWith(`/local/domain/${src}`)), "the source's tree is gone");
    assert.deepEqual(sent.log.slice(-1), ['Migration successful.']);
    await connected(b, got.domid);
    const seen = await b.xl.guest<{ resumes: number }>(got.domid, { cmd: 'devices' });
    assert.equal(seen.resumes, 1);
  });

  it('a page written after log-dirty is on, sent, then written back as it was at enable is sent again: the destination does not keep what it was sent', async () => {
    const src = await a.xl.create(CFG);
    await connected(a, src);
    await a.xl.guest(src, { cmd: 'mem-fill', pages: 16 });
    const d = a.rt.host.domains.get(src)!;
    const pfn = d.p2m.findIndex((f, i) => i > 0 && f !== undefined && f.bytes.some((x) => x !== 0));
    const page = d.p2m[pfn]!.bytes;
    const atEnable = Uint8Array.from(page);
    // The policy is asked once log-dirty is on, before round 1 sends a page, and again after it:
    // the guest's write lands between enable and the send, its undoing after the send. Xen's
    // bitmap has the page dirty (a write fault) whatever it holds at CLEAN.
    let asked = 0;
    const policy: PrecopyPolicy = (st) => {
      asked++;
      if (asked === 1) page[100] ^= 0xff;
      if (asked === 2) page.set(atEnable);
      return simplePrecopyPolicy(st);
    };
    const { sender, receiver } = pipes();
    const [sent, got] = await Promise.all([migrateSend(a.xl, src, sender, { policy }), migrateReceive(b.xl, receiver)]);
    assert.ok(asked >= 2);
    assert.equal(sent.liveRounds, 2, `the page resent in round 2: ${JSON.stringify(sent.rounds)}`);
    assert.equal(got.hash, sent.hash, 'the destination holds every frame as at the final suspend');
    assert.deepEqual(b.rt.host.domains.get(got.domid)!.p2m[pfn]!.bytes, atEnable);
  });

  it('a guest that dirties its pages every round never converges: SPP_MAX_ITERATIONS live rounds, then stop-and-copy', async () => {
    const src = await a.xl.create(CFG);
    await connected(a, src);
    await a.xl.guest(src, { cmd: 'mem-fill', pages: 64 });
    // Each round the workload rewrites all 64 pages while the round is on the wire (the policy is
    // asked at each round's start): more than SPP_TARGET_DIRTY_COUNT are dirty every time.
    const storm: PrecopyPolicy = (st) => {
      void a.xl.guest(src, { cmd: 'mem-dirty', pages: 64, everyNs: 1000, times: 1 });
      return simplePrecopyPolicy(st);
    };
    const { sender, receiver } = pipes();
    const [sent, got] = await Promise.all([migrateSend(a.xl, src, sender, { policy: storm }), migrateReceive(b.xl, receiver)]);
    assert.equal(sent.liveRounds, SPP_MAX_ITERATIONS, JSON.stringify(sent.rounds));
    assert.ok(sent.rounds.slice(1, -1).every((n) => n >= 64), JSON.stringify(sent.rounds));
    assert.equal(got.hash, sent.hash);
  });

  it('a receiver that goes away mid-stream: the source resumes (suspend cancelled) and goes on with its devices', async () => {
    const src = await a.xl.create(CFG);
    await connected(a, src);
    await a.xl.guest(src, { cmd: 'mem-fill', pages: 16 });
    const { sender, receiver } = pipes(200_000);
    const [s, r] = await Promise.allSettled([migrateSend(a.xl, src, sender), migrateReceive(b.xl, receiver)]);
    assert.equal(s.status, 'rejected');
    assert.ok((s as PromiseRejectedResult).reason instanceof MigrateError);
    assert.equal(r.status, 'rejected', 'the receiver saw a truncated stream');
    assert.match(String((r as PromiseRejectedResult).reason), /truncated|end of file|reset/i);
    assert.equal(b.xl.domains.size, 0, 'nothing built at the destination');
    await b.rt.quiesce();
    assert.deepEqual([...b.rt.host.domains.keys()], [0], 'the domain built for the stream is gone with it');
    const h = a.rt.host.domains.get(src);
    assert.ok(h && !h.isShutDown && h.logDirty === undefined, 'the source runs, log-dirty off');
    const seen = await a.xl.guest<{ resumes: number; devices: { stateName: string }[] }>(src, { cmd: 'devices' });
    assert.equal(seen.resumes, 0, 'cancelled: no resume path');
    assert.ok(seen.devices.every((d) => d.stateName === 'XenbusStateConnected'));
  });

  it('a destination that cannot take the guest (its name is taken there) refuses at its first page: the source, never suspended, runs on', async () => {
    const src = await a.xl.create(CFG);
    await connected(a, src);
    const there = await b.xl.create({ name: 'mover' });
    const { sender, receiver } = pipes();
    const [s, r] = await Promise.allSettled([migrateSend(a.xl, src, sender), migrateReceive(b.xl, receiver)]);
    assert.equal(r.status, 'rejected');
    assert.match(String((r as PromiseRejectedResult).reason), /Domain creation failed.*already exists/);
    assert.equal(s.status, 'rejected');
    // As libxl, the receiver creates the domain from the config before the pages it restores
    // into: it goes away while the sender is still in its first round.
    const e = (s as PromiseRejectedResult).reason as MigrateError;
    assert.match(e.message, /receiver went away.*not suspended and runs on/);
    assert.equal(e.log.at(-1), 'Migration failed; the domain was not suspended.');
    assert.equal(a.rt.host.domains.get(src)?.isShutDown, false, 'the source runs on');
    assert.deepEqual([...b.xl.domains.keys()], [there], 'nothing else at the destination');
  });

  it('a go that never arrives: the receiver reports failure, destroys its copy and lets the sender resume its own', async () => {
    const src = await a.xl.create(CFG);
    await connected(a, src);
    await a.xl.guest(src, { cmd: 'mem-fill', pages: 8 });
    const { sender, receiver } = pipes(Infinity, true);
    const [s, r] = await Promise.allSettled([migrateSend(a.xl, src, sender), migrateReceive(b.xl, receiver)]);
    assert.equal(r.status, 'rejected');
    assert.deepEqual(((r as PromiseRejectedResult).reason as MigrateError).log.slice(-2),
      ['migration target: Failure, destroying our copy.', 'migration target: Cleanup OK, granting sender permission to resume.']);
    assert.equal(b.xl.domains.size, 0);
    assert.ok(!(await b.xl.dump('/local/domain')).some((n) => /^\/local\/domain\/[1-9]/.test(n.path)), "the copy's tree is gone");
    assert.equal(s.status, 'rejected');
    const e = (s as PromiseRejectedResult).reason as MigrateError;
    assert.equal(e.message, 'Migration failed due to problems at target.');
    assert.ok(e.log.includes('migration sender: Target reports startup failure (status code 3).'), e.log.join('\n'));
    assert.equal(a.rt.host.domains.get(src)?.isShutDown, false, 'the source runs again');
    const seen = await a.xl.guest<{ resumes: number; devices: { stateName: string }[] }>(src, { cmd: 'devices' });
    assert.equal(seen.resumes, 0);
    assert.ok(seen.devices.every((d) => d.stateName === 'XenbusStateConnected'));
  });

  it('an HVM guest migrates too (HVM_CONTEXT and its params in the stream)', async () => {
    const src = await a.xl.create({ ...CFG, type: 'hvm' });
    await connected(a, src);
    await a.xl.guest(src, { cmd: 'mem-fill', pages: 16 });
    const before = await a.xl.guest<{ hash: string }>(src, { cmd: 'mem-hash' });
    const { sender, receiver } = pipes();
    const [sent, got] = await Promise.all([migrateSend(a.xl, src, sender), migrateReceive(b.xl, receiver)]);
    assert.equal(got.hash, sent.hash);
    assert.equal(b.rt.host.domains.get(got.domid)?.hvm, true);
    await connected(b, got.domid);
    assert.equal((await b.xl.guest<{ hash: string }>(got.domid, { cmd: 'mem-hash' })).hash, before.hash);
  });

  it('a policy abort before suspend leaves the guest running untouched', async () => {
    const src = await a.xl.create(CFG);
    await connected(a, src);
    const { sender, receiver } = pipes();
    const [s] = await Promise.allSettled([
      migrateSend(a.xl, src, sender, { policy: () => PrecopyPolicyDecision.XGS_POLICY_ABORT }), migrateReceive(b.xl, receiver),
    ]);
    assert.equal(s.status, 'rejected');
    assert.match(String((s as PromiseRejectedResult).reason), /was not suspended/);
    assert.equal(a.rt.host.domains.get(src)?.isShutDown, false);
  });
});
