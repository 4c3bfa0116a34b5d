// Lent stream buffers. The saver lends its PAGE_DATA buffers to the transport and reuses each one
// once it is given back; a transport may lend what it delivers the same way. The contract: bytes
// come back only when nobody reads them again, so the receiving side copies whatever it keeps past
// the record it is processing (vCPU blobs, shared_info, HVM and emulator context, the config, the
// pages of a Remus checkpoint or of an image read whole). These specs lend every byte and
// overwrite each buffer the moment it comes back: a view kept too long reads garbage.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { MigratePipe, linkedPipes, streamWriter } from '../../sim/migrate-pipe.ts';
import { MigrateError, migrateReceive, migrateSend } from '../../sim/xl-migrate.ts';
import { LibxcRecType, MAX_BATCH_SIZE, PAGE_SIZE } from '../../domains/dom0/toolstack/migration/libxc-stream.ts';
import { SaveStreamReader } from '../../domains/dom0/toolstack/migration/stream-reader.ts';
import { SaveStreamWriter } from '../../domains/dom0/toolstack/migration/stream-writer.ts';
import { writeSaveImage, type SaveImage } from '../../domains/dom0/toolstack/migration/save-image.ts';
import { ImageRestorer, readSaveImage, type RestoredImage } from '../../domains/dom0/toolstack/migration/restore-image.ts';
import { concat, copyOf } from '../../domains/dom0/toolstack/migration/sr-record.ts';
import { EMULATOR, hvmImage, page, pageBytes, pages, pvImage } from '../helpers/save-image.ts';
import { bootHost, type TestHost } from '../helpers/host.ts';
import type { DomainConfig } from '../../domains/dom0/toolstack/config.ts';

const POISON = 0xa5;

/**
 * A transport with a pool of `buffers` receive buffers of its own: it copies the sender's bytes
 * into them in pieces of pseudo-random sizes (so records are cut anywhere), lends each piece to the
 * receiving pipe and, when it comes back, fills the buffer with POISON before using it again. The
 * sender's lent buffers go back as soon as they are copied (as a kernel pipe's write does).
 */
class PoisoningTransport {
  private readonly free: Uint8Array[] = [];
  private written: Uint8Array[] = [];
  /** What was written, joined once the writer is done; `at` is what has been lent so far. */
  private stream: Uint8Array | undefined;
  private at = 0;
  /** Pieces lent and not given back. */
  out = 0;
  piecesLent = 0;
  private x: number;

  constructor(private readonly pipe: MigratePipe, seed: number, private readonly maxPiece: number, buffers = 2) {
    this.x = seed;
    for (let i = 0; i < buffers; i++) this.free.push(new Uint8Array(maxPiece));
  }

  /** The writer's sink. */
  sink = (chunk: Uint8Array, release?: () => void): void => {
    assert.equal(this.stream, undefined, 'written to after the transport started lending');
    this.written.push(new Uint8Array(chunk));
    if (release) {
      chunk.fill(POISON);
      release();
    }
  };

  /** Every byte written has been lent. */
  get drained(): boolean {
    return this.stream !== undefined && this.at === this.stream.length;
  }

  /** Lends the next piece of what was written; false when nothing is left or no buffer is free. */
  lendPiece(): boolean {
    this.stream ??= concat(this.written);
    if (this.drained || this.free.length === 0) return false;
    this.x = (this.x * 1103515245 + 12345) % 2 ** 31;
    const n = Math.min(this.stream.length - this.at, 1 + (this.x % this.maxPiece));
    const buf = this.free.pop()!;
    buf.set(this.stream.subarray(this.at, this.at + n));
    this.at += n;
    this.out++;
    this.piecesLent++;
    let back = false;
    this.pipe.push(buf.subarray(0, n), () => {
      assert(!back, 'a piece given back twice');
      back = true;
      buf.fill(POISON);
      this.out--;
      this.free.push(buf);
    });
    return true;
  }
}

/** Reads a stream from a pipe as xl migrate-receive does (lent chunks), into an image (or a page map). */
async function receive(pipe: MigratePipe, transport: PoisoningTransport, opts: { checkpointed?: boolean; streamType?: 'remus'; sinkPages?: Map<number, Uint8Array> } = {}): Promise<RestoredImage> {
  const reader = new SaveStreamReader({ streamType: opts.streamType });
  const sink = opts.sinkPages;
  const restorer = new ImageRestorer({
    checkpointed: opts.checkpointed, lent: true,
    pageSink: sink && {
      put: (pfn, src, at) => sink.set(pfn, copyOf(src, at, at + PAGE_SIZE)),
      get: (pfn) => sink.get(pfn),
      drop: (pfn) => sink.delete(pfn),
    },
  });
  for (;;) {
    // Only as many pieces as the transport has buffers: each must come back for the next.
    while (transport.lendPiece()) { /* lent */ }
    if (pipe.queued === 0 && transport.drained) pipe.end();
    const chunk = await pipe.readSome();
    if (chunk === null) break;
    for (const ev of reader.push(chunk, true)) restorer.apply(ev);
  }
  restorer.end(reader.end());
  return restorer.image;
}

/** Everything a restore keeps, comparable with deepEqual (pages as plain arrays of bytes). */
function contents(img: RestoredImage, pagesFrom: ReadonlyMap<number, Uint8Array> = img.pages): unknown {
  return {
    config: img.config, pvInfo: img.pvInfo, p2mFrames: img.p2mFrames, cpuid: img.cpuidPolicy, msr: img.msrPolicy, tsc: img.tsc,
    sharedInfo: img.sharedInfo && [...img.sharedInfo],
    vcpus: [...img.vcpus].map(([id, v]) => [id, [v.basic, v.extended, v.xsave, v.msrs].map((b) => b && [...b])]),
    hvmContext: img.hvmContext && [...img.hvmContext], hvmParams: img.hvmParams,
    emulatorContext: img.emulatorContext && [...img.emulatorContext], emulatorXenstore: img.emulatorXenstore,
    pages: [...pagesFrom].sort((a, b) => a[0] - b[0]).map(([pfn, b]) => [pfn, Buffer.from(b).toString('base64')]),
    pageTypes: [...img.pageTypes], stats: img.stats, end: img.end,
  };
}

async function roundTrip(image: SaveImage, seed: number, maxPiece: number, opts: { streamType?: 'remus'; sink?: boolean } = {}): Promise<{ got: RestoredImage; want: RestoredImage; sinkPages?: Map<number, Uint8Array>; transport: PoisoningTransport }> {
  const pipe = new MigratePipe({ write: () => true, drain: async () => undefined, end: () => undefined }, 'receiver');
  const transport = new PoisoningTransport(pipe, seed, maxPiece);
  const whole: Uint8Array[] = [];
  // The reference: the same image written with nothing lent (the sink keeps every chunk).
  writeSaveImage(image, (c) => whole.push(new Uint8Array(c)));
  writeSaveImage(image, transport.sink);
  const sinkPages = opts.sink ? new Map<number, Uint8Array>() : undefined;
  const got = await receive(pipe, transport, { checkpointed: opts.streamType !== undefined, streamType: opts.streamType, sinkPages });
  const want = readSaveImage(concat(whole), { streamType: opts.streamType });
  return { got, want, sinkPages, transport };
}

describe('migration stream: lent buffers, overwritten the moment they come back', () => {
  /** Largest piece, and guest pages (fewer for tiny pieces: each piece is one read). */
  const cases = [[64, 40], [4096, 1100], [3 * PAGE_SIZE + 5, 2100], [1 << 20, 2100]] as const;

  it('PV: every page, shared_info, each vCPU\'s four blobs and the config come back whatever the pieces', async () => {
    for (const [i, [maxPiece, n]] of cases.entries()) {
      const { got, want, transport } = await roundTrip(pvImage(n), i + 1, maxPiece);
      assert.deepEqual(contents(got), contents(want), `pieces of at most ${maxPiece} bytes`);
      assert.equal(transport.out, 0, 'every piece came back');
      assert.ok(transport.piecesLent > 2, 'the buffers were reused');
    }
  });

  it('PV pages straight into a page sink (as into frames), resent pages replacing the first copy', async () => {
    for (const [i, [maxPiece, n]] of cases.entries()) {
      const base = pvImage(n);
      const image = { ...base, checkpoints: [{ ...base.checkpoints[0], rounds: [pages(0, n), [page(5, 1), page(n - 1, 3)]] }] };
      const { got, want, sinkPages } = await roundTrip(image, 10 + i, maxPiece, { sink: true });
      assert.equal(got.pages.size, 0);
      assert.deepEqual(contents(got, sinkPages), contents(want));
      assert.deepEqual(sinkPages!.get(5), pageBytes(5, 1));
    }
  });

  it('HVM read whole: HVM_CONTEXT, HVM_PARAMS, QEMU\'s context and keys, and the pages the image keeps', async () => {
    for (const [i, [maxPiece, n]] of cases.entries()) {
      const base = hvmImage(n);
      const image = { ...base, checkpoints: [{ ...base.checkpoints[0], emulator: { ...EMULATOR, xenstore: [['physmap/f0000000/size', '800000']] as const } }] };
      const { got, want } = await roundTrip(image, 20 + i, maxPiece);
      assert.deepEqual(contents(got), contents(want), `pieces of at most ${maxPiece} bytes`);
      assert.equal(got.hvmContext?.length, 1234);
    }
  });

  it('Remus: a checkpoint\'s records are held until CHECKPOINT_END, its pages copied', async () => {
    const base = hvmImage(40);
    const cp1 = base.checkpoints[0];
    const cp2 = { ...cp1, rounds: [[page(2, 1), page(39, 4)]], emulator: { context: new Uint8Array([9, 8, 7]) } };
    const image: SaveImage = { ...base, streamType: 'remus', checkpoints: [cp1, cp2] };
    for (const [i, [maxPiece]] of cases.entries()) {
      const { got, want } = await roundTrip(image, 30 + i, maxPiece, { streamType: 'remus' });
      assert.deepEqual(contents(got), contents(want));
      assert.deepEqual(got.pages.get(39), pageBytes(39, 4));
    }
  });
});

describe('migration stream: the writer lends its PAGE_DATA buffers', () => {
  const opts = pvImage(1);

  it('a buffer given back is reused: one serves every batch of a sink that is done on return', () => {
    const w = new SaveStreamWriter((_c, release) => release?.(), opts);
    w.start();
    w.sendPages(pages(0, 3 * MAX_BATCH_SIZE));
    assert.deepEqual(w.batchBuffers, { made: 1, lent: 0 });
  });

  it('a sink that keeps its chunks (never gives them back) keeps them intact: each record has a buffer of its own', () => {
    const kept: Uint8Array[] = [];
    const w = new SaveStreamWriter((c, release) => {
      if (release) kept.push(c);
    }, opts);
    w.start();
    w.sendPages(pages(0, 3 * MAX_BATCH_SIZE + 7));
    assert.deepEqual(w.batchBuffers, { made: 4, lent: 4 });
    // Each kept record as it was sent: its count, its first page.
    kept.forEach((rec, i) => {
      const n = new DataView(rec.buffer, rec.byteOffset).getUint32(8, true);
      assert.equal(n, i < 3 ? MAX_BATCH_SIZE : 7);
      const first = rec.subarray(8 + 8 + 8 * n, 8 + 8 + 8 * n + PAGE_SIZE);
      assert.deepEqual(new Uint8Array(first), pageBytes(i * MAX_BATCH_SIZE));
    });
  });

  it('giving a buffer back twice is a sink bug: asserted', () => {
    const w = new SaveStreamWriter((_c, release) => {
      release?.();
      release?.();
    }, opts);
    w.start();
    assert.throws(() => w.sendPages([page(0)]), /given back twice/);
  });
});

describe('streamWriter: a stream that takes whole records at once still gives their buffers back before the writer goes on', () => {
  /** A Node stream that takes every write at once (as TCP with its buffers grown does) and calls back on the next tick. */
  class EagerStream extends Writable {
    override _write(_chunk: Buffer, _enc: string, done: (e?: Error | null) => void): void {
      process.nextTick(done);
    }
  }

  it('the writer is told to wait once the stream holds more than a few lent records, and its drain() ends when they are back', async () => {
    const s = new EagerStream({ highWaterMark: 64 * 1024 * 1024 });
    const pipe = new MigratePipe(streamWriter(s));
    const w = new SaveStreamWriter((c, release) => pipe.write(c, release), pvImage(1));
    w.start();
    let mostLent = 0;
    for (let batch = 0; batch < 12; batch++) {
      w.sendPages(pages(batch * MAX_BATCH_SIZE, MAX_BATCH_SIZE));
      mostLent = Math.max(mostLent, w.batchBuffers.lent);
      // What migrateSend() does between batches: wait for the transport, in a loop of microtasks only.
      await pipe.drain();
    }
    await new Promise((r) => setImmediate(r));
    assert.ok(mostLent <= 3, `${mostLent} records lent at once`);
    assert.ok(w.batchBuffers.made <= 4, `${w.batchBuffers.made} PAGE_DATA buffers made for 12 records`);
    assert.equal(w.batchBuffers.lent, 0);
  });

  it('a stream that goes away wakes a writer waiting in drain()', async () => {
    const s = new Writable({ write: () => undefined, highWaterMark: 1 });
    const pipe = new MigratePipe(streamWriter(s));
    pipe.write(new Uint8Array(4096), () => undefined);
    const waiting = pipe.drain();
    s.destroy();
    await waiting;
  });
});

describe('MigratePipe: a lent chunk goes back once its reader reads again, or closes', () => {
  const writer = { write: () => true, drain: async () => undefined, end: () => undefined };

  it('readSome() hands the chunk over; it is given back at the next read, once', async () => {
    const pipe = new MigratePipe(writer);
    const back: number[] = [];
    pipe.push(new Uint8Array([1, 2, 3]), () => back.push(1));
    pipe.push(new Uint8Array([4]), () => back.push(2));
    assert.deepEqual([...(await pipe.readSome())!], [1, 2, 3]);
    assert.equal(back.length, 0, 'still the reader\'s');
    assert.deepEqual([...(await pipe.readSome())!], [4]);
    assert.deepEqual(back, [1]);
    pipe.push(new Uint8Array([5, 6]), () => back.push(3));
    assert.deepEqual([...(await pipe.readExact(1, 'one byte'))], [5]);
    assert.deepEqual(back, [1, 2], 'readExact copies: its chunk goes back once read to its end and read again');
    await pipe.close();
    assert.deepEqual(back, [1, 2, 3], 'closing gives back what is unread');
    pipe.push(new Uint8Array([7]), () => back.push(4));
    assert.deepEqual(back, [1, 2, 3, 4], 'after close, at once');
  });

  it('the reader copies a record cut by a lent chunk\'s end, so the chunk can go back before the record is whole', () => {
    const bytes = concat((() => {
      const out: Uint8Array[] = [];
      writeSaveImage(pvImage(3), (c) => out.push(new Uint8Array(c)));
      return out;
    })());
    const reader = new SaveStreamReader();
    const buf = new Uint8Array(bytes.length);
    let records = 0;
    for (let at = 0; at < bytes.length; at += 1000) {
      const n = Math.min(1000, bytes.length - at);
      buf.set(bytes.subarray(at, at + n));
      for (const ev of reader.push(buf.subarray(0, n), true)) {
        if ('record' in ev && ev.layer === 'libxc' && ev.record.type === LibxcRecType.REC_TYPE_PAGE_DATA) records++;
      }
      buf.fill(POISON);
    }
    assert.equal(reader.end(), 'complete');
    assert.equal(records, 1);
  });
});

describe('xl migrate with every buffer lent and overwritten when given back (two hosts in one process)', function () {
  this.timeout(120_000);
  const CFG: DomainConfig = { name: 'lent', memory: 16, disks: [{ vdev: 'xvda', target: 'lent-root', sizeMiB: 4 }], vifs: [{}] };
  let a: TestHost;
  let b: TestHost;
  beforeEach(async () => {
    a = await bootHost(5);
    b = await bootHost(6);
  });
  afterEach(async () => {
    await a.rt.shutdown();
    await b.rt.shutdown();
  });

  async function connected(h: TestHost, domid: number): Promise<void> {
    for (const d of ['vbd/51712', 'vif/0']) {
      const w = await h.rt.toolstack<{ ok: boolean }>('wait', { path: `/local/domain/${domid}/device/${d}/state`, value: '4' });
      assert.ok(w.ok, `${d} Connected in domain ${domid}`);
    }
  }

  /** linkedPipes passes the writer's lent buffers through; each is poisoned as it comes back. */
  function poisonedLink(): { sender: MigratePipe; receiver: MigratePipe; stats: { lent: number; back: number } } {
    const link = linkedPipes();
    const stats = { lent: 0, back: 0 };
    const write = link.sender.write.bind(link.sender);
    link.sender.write = (bytes, release) => {
      if (!release) return write(bytes);
      stats.lent++;
      write(bytes, () => {
        stats.back++;
        bytes.fill(POISON);
        release();
      });
    };
    return { ...link, stats };
  }

  for (const type of ['pv', 'hvm'] as const) {
    it(`${type.toUpperCase()}: equal memory at the destination, which starts (its context read from the stream)`, async () => {
      const src = await a.xl.create({ ...CFG, type });
      await connected(a, src);
      await a.xl.guest(src, { cmd: 'mem-fill', pages: 3 * MAX_BATCH_SIZE });
      const before = await a.xl.guest<{ hash: string }>(src, { cmd: 'mem-hash' });
      const { sender, receiver, stats } = poisonedLink();
      const [sent, got] = await Promise.all([migrateSend(a.xl, src, sender), migrateReceive(b.xl, receiver)]).catch((e: unknown) => {
        throw e instanceof MigrateError ? new Error(`${e.message}\n${e.log.join('\n')}`) : e;
      });
      assert.equal(got.hash, sent.hash);
      assert.equal(b.rt.host.domains.get(got.domid)?.hvm, type === 'hvm');
      await connected(b, got.domid);
      assert.equal((await b.xl.guest<{ hash: string }>(got.domid, { cmd: 'mem-hash' })).hash, before.hash);
      assert.ok(stats.lent >= 4, `PAGE_DATA buffers lent: ${stats.lent}`);
      assert.equal(stats.back, stats.lent, 'every lent buffer came back');
    });
  }
});
