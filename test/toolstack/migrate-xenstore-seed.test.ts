// `xl migrate --xenstore seed`: the project seed's migration of a guest's xenstore state, which
// is not Xen's. By default (Xen) nothing of xenstore travels: the destination's libxl writes a
// fresh tree, the guest writes its own nodes again and registers its watches again. With the
// seed's option the source's xenstored exports the guest's nodes (ACLs moved to the new domid),
// its watches (tokens kept) and its open transactions, and the destination's imports them before
// the guest runs - seen here with the domain left paused after the go (xl migrate -p).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { DomainConfig } from '../../domains/dom0/toolstack/config.ts';
import type { SeedXenstoreState } from '../../domains/dom0/xenstored/seed-migration.ts';
import { XsdSockmsgType } from '../../hypervisor/public/io/xs_wire.ts';
import { MigratePipe, type PipeWriter } from '../../sim/migrate-pipe.ts';
import { type MigrateXenstore, migrateReceive, migrateSend } from '../../sim/xl-migrate.ts';
import { LibxlRecType } from '../../domains/dom0/toolstack/migration/libxl-stream.ts';
import { XlMigrateMessage, xlMigrateMessageBytes } from '../../domains/dom0/toolstack/migration/xl-migrate-channel.ts';
import { SaveStreamReader } from '../../domains/dom0/toolstack/migration/stream-reader.ts';
import { bootHost, type TestHost } from '../helpers/host.ts';

const VERIFY_STREAM_V2 = '/usr/lib/xen-4.17/bin/verify-stream-v2';
const XEN_PYTHONPATH = '/usr/lib/xen-4.17/lib/python';
/** xl's "permission to go", which the sender writes after the stream. */
const GO_BYTES = xlMigrateMessageBytes(XlMigrateMessage.migrate_permission_to_go).length;

/** Debian's verify-stream-v2 on an xl stream: its exit status and what it printed. */
function verifyStreamV2(stream: Uint8Array): { status: number | null; out: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'xensim-seed-stream-'));
  try {
    const file = path.join(dir, 'stream.xl');
    writeFileSync(file, stream);
    const v = spawnSync(VERIFY_STREAM_V2, ['-v', '-f', 'xl', '-i', file], { env: { ...process.env, PYTHONPATH: XEN_PYTHONPATH }, encoding: 'utf8', timeout: 60_000 });
    return { status: v.status, out: v.stdout + v.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const CFG: DomainConfig = { name: 'mover', disks: [{ vdev: 'xvda', target: 'mover-root', sizeMiB: 4 }], vifs: [{}] };

/** Two pipe ends joined in this process; `tap` sees every byte the sender writes. */
function pipes(tap: (b: Uint8Array) => void): { sender: MigratePipe; receiver: MigratePipe } {
  const link: { sender?: MigratePipe; receiver?: MigratePipe } = {};
  const to = (peer: () => MigratePipe, sent?: (b: Uint8Array) => void): PipeWriter => ({
    write: (b) => {
      sent?.(b.slice());
      if (!peer().closed) peer().push(b.slice());
      return true;
    },
    drain: () => new Promise((r) => setImmediate(r)),
    end: () => peer().end(),
  });
  link.sender = new MigratePipe(to(() => link.receiver!, tap), 'sender');
  link.receiver = new MigratePipe(to(() => link.sender!), 'receiver');
  return link as { sender: MigratePipe; receiver: MigratePipe };
}

async function connected(h: TestHost, domid: number): Promise<void> {
  for (const d of ['vbd/51712', 'vif/0']) {
    const w = await h.rt.toolstack<{ ok: boolean }>('wait', { path: `/local/domain/${domid}/device/${d}/state`, value: '4' });
    assert.ok(w.ok, `${d} Connected in domain ${domid}`);
  }
}

/** What the destination's xenstored holds for the guest, as the seed's export reads it. */
async function xenstoreState(h: TestHost, domid: number): Promise<SeedXenstoreState> {
  const bytes = await h.rt.toolstack<Uint8Array>('xenstore-seed-export', { domid });
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as SeedXenstoreState;
}

/** The libxl record types in a captured xl stream. */
function libxlRecords(stream: Uint8Array): number[] {
  const r = new SaveStreamReader();
  const types: number[] = [];
  for (const ev of r.push(stream)) if (ev.layer === 'libxl' && 'record' in ev) types.push(ev.record.type);
  return types;
}

describe('xl migrate --xenstore seed (the project seed\'s xenstore copy, not Xen)', function () {
  this.timeout(120_000);
  let a: TestHost;
  let b: TestHost;
  beforeEach(async () => {
    a = await bootHost(7);
    b = await bootHost(8);
    // The destination already runs a guest: the incoming one gets another domid.
    await b.xl.create({ name: 'resident' });
  });
  afterEach(async () => {
    await a.rt.shutdown();
    await b.rt.shutdown();
  });

  /**
   * The guest writes a node, watches another on its ring with its own token, and leaves a
   * user-space transaction open; then it is migrated and left paused at the destination.
   */
  async function moveWith(xenstore: MigrateXenstore): Promise<{ src: number; dst: number; tx: number; stream: Uint8Array }> {
    const src = await a.xl.create(CFG);
    await connected(a, src);
    const wrote = await a.xl.guest(src, { cmd: 'xs', type: XsdSockmsgType.XS_WRITE, payload: 'data/seed-node\0written before the move' });
    assert.equal(wrote.error, undefined);
    const watched = await a.xl.guest(src, { cmd: 'xs-watch', path: 'data/seed-probe', token: 'tok-seed', ring: true });
    assert.equal(watched.error, undefined);
    const started = await a.xl.guest(src, { cmd: 'xs', type: XsdSockmsgType.XS_TRANSACTION_START, payload: '\0' });
    const tx = Number(String(started.payload).replace(/\0$/, ''));
    assert.ok(tx > 0, JSON.stringify(started));
    const chunks: Uint8Array[] = [];
    const { sender, receiver } = pipes((c) => chunks.push(c));
    const [sent, got] = await Promise.all([migrateSend(a.xl, src, sender, { xenstore }), migrateReceive(b.xl, receiver, { paused: true })]);
    assert.equal(got.hash, sent.hash);
    assert.deepEqual(a.xl.list().map((d) => d.name), ['Domain-0'], 'the source is gone');
    return { src, dst: got.domid, tx, stream: Buffer.concat(chunks) };
  }

  it('with it, the guest\'s node, its watch with its token and its open transaction are at the destination before it runs', async () => {
    const { src, dst, tx, stream } = await moveWith('seed');
    assert.notEqual(dst, src);
    assert.ok(libxlRecords(stream).includes(LibxlRecType.REC_TYPE_XENSIM_SEED_XENSTORE), 'the stream carries xensim\'s record');
    const v = verifyStreamV2(stream.subarray(0, stream.length - GO_BYTES));
    assert.notEqual(v.status, 0, 'xensim-specific: Xen\'s checker refuses the record');
    assert.match(v.out, /Unrecognised record type 78730001/);
    const here = await xenstoreState(b, dst);
    assert.deepEqual(here.nodes.find(([p]) => p === 'data/seed-node'), ['data/seed-node', 'written before the move', [`n${dst}`]],
      'the node, its ACL moved to the new domid');
    assert.ok(here.watches.some(([p, t, rel]) => p === `/local/domain/${dst}/data/seed-probe` && t === 'tok-seed' && rel), JSON.stringify(here.watches));
    assert.deepEqual(here.transactions, [tx]);
    // libxl's own nodes stay as the destination wrote them.
    assert.equal((await b.xl.dump(`/local/domain/${dst}/domid`))[0]?.value, String(dst));

    // Running, the guest's watch fires with its token (its own XS_WATCH again met EEXIST and left
    // it). (The carried transaction's commit, EAGAIN, is test/dom0/xenstored/seed-migration's:
    // this guest's restored user space has a new /dev/xen/xenbus, which no longer knows it.)
    await b.xl.unpause(dst);
    await connected(b, dst);
    await b.xl.guest(dst, { cmd: 'xs-events' });
    await b.xl.guest(dst, { cmd: 'xs', type: XsdSockmsgType.XS_WRITE, payload: 'data/seed-probe\0x' });
    // The event follows the write's reply on the guest's own schedule: collect a while of virtual time.
    const events: { path: string; token: string }[] = [];
    for (let i = 0; i < 20 && !events.some((e) => e.token === 'tok-seed'); i++) {
      events.push(...(await b.xl.guest<{ events: { path: string; token: string }[] }>(dst, { cmd: 'xs-events' })).events);
      await b.rt.idle(1e6);
    }
    assert.ok(events.some((e) => e.token === 'tok-seed' && e.path === 'data/seed-probe'), JSON.stringify(events));
    const devs = await b.xl.guest(dst, { cmd: 'devices' });
    assert.equal(devs.resumes, 1);
  });

  it('without it (Xen), nothing of xenstore travels: the node is not there, nor the watch or transaction, until the guest writes them', async () => {
    const { dst, stream } = await moveWith('xen');
    assert.ok(!libxlRecords(stream).includes(LibxlRecType.REC_TYPE_XENSIM_SEED_XENSTORE));
    const v = verifyStreamV2(stream.subarray(0, stream.length - GO_BYTES));
    assert.equal(v.status, 0, `a plain libxl v2 stream:\n${v.out}`);
    const here = await xenstoreState(b, dst);
    assert.equal(here.nodes.find(([p]) => p === 'data/seed-node'), undefined);
    assert.deepEqual(here.watches, []);
    assert.deepEqual(here.transactions, []);
    await b.xl.unpause(dst);
    await connected(b, dst);
    // xs_resume registers the watch again; the node the guest wrote before is gone.
    await b.xl.guest(dst, { cmd: 'xs-events' });
    const after = await xenstoreState(b, dst);
    assert.ok(after.watches.some(([p, t]) => p === `/local/domain/${dst}/data/seed-probe` && t === 'tok-seed'), JSON.stringify(after.watches));
    assert.equal(after.nodes.find(([p]) => p === 'data/seed-node'), undefined);
  });

  it('a hostile state is refused whole, with the reason, and changes nothing', async () => {
    const resident = b.xl.list().find((d) => d.name === 'resident')!.id;
    const dataNodes = async (): Promise<string[]> => (await xenstoreState(b, resident)).nodes.map(([p]) => p).filter((p) => p.startsWith('data/'));
    const before = await dataNodes();
    const attempt = (state: unknown): Promise<unknown> =>
      b.rt.toolstack('xenstore-seed-import', { domid: resident, state: new TextEncoder().encode(typeof state === 'string' ? state : JSON.stringify(state)) });
    const good = { version: 1, domid: 3, nodes: [['data/ok', 'v', ['n3']]], watches: [], transactions: [] };
    await assert.rejects(attempt('{"version":1,'), /not JSON/);
    await assert.rejects(attempt({ ...good, nodes: [['data/ok', 'v', ['n3']], ['../../0/x', 'v', ['n3']]] }), /bad node path/);
    await assert.rejects(attempt({ ...good, nodes: [['orphan/child', 'v', ['n3']]] }), /parent/);
    await assert.rejects(attempt({ ...good, nodes: [['data/ok', 'v', ['x3']]] }), /bad ACL/);
    await assert.rejects(attempt({ ...good, watches: [['/local/domain/3/data', 'tok\0en', true]] }), /bad watch token/);
    await assert.rejects(attempt({ ...good, transactions: [0] }), /bad transaction id/);
    await assert.rejects(attempt({ ...good, nodes: Array.from({ length: 2000 }, (_, i) => [`data/n${i}`, '', ['n3']]) }), /node quota/);
    assert.deepEqual(await dataNodes(), before, 'nothing changed');
    // The good one goes in, its ACL moved to the domain it is for; a foreign domain's entry dropped.
    await attempt({ ...good, nodes: [['data/ok', 'v', ['n3', 'r9', 'r0']]] });
    assert.deepEqual((await xenstoreState(b, resident)).nodes.find(([p]) => p === 'data/ok'), ['data/ok', 'v', [`n${resident}`, 'r0']]);
  });
});
