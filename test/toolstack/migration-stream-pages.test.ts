// Streamed PAGE_DATA (SaveStreamReader.streamPages(), what xl migrate-receive reads a PV guest
// with): each record goes out as its pfn list, checked as the whole record would be, then its
// pages as they arrive - the record is never copied together. These specs hold it to reading
// records whole: the same image whatever the chunks, the same refusals with the same words.
import assert from 'node:assert/strict';
import { LibxcRecType, PAGE_SIZE, XenDomctlPfinfo } from '../../domains/dom0/toolstack/migration/libxc-stream.ts';
import { SaveStreamReader, type SaveStreamReaderOptions } from '../../domains/dom0/toolstack/migration/stream-reader.ts';
import { ImageRestorer, readSaveImage, type RestorePageSink, type RestoredImage } from '../../domains/dom0/toolstack/migration/restore-image.ts';
import { saveImageChunks, type SaveImage } from '../../domains/dom0/toolstack/migration/save-image.ts';
import { StreamError, concat } from '../../domains/dom0/toolstack/migration/sr-record.ts';
import { page, pageBytes, pages, pvImage } from '../helpers/save-image.ts';

const POISON = 0xa5;

/** A sink holding copies of the pages put into it (as frames would). */
function memorySink(): RestorePageSink & { readonly mem: Map<number, Uint8Array> } {
  const mem = new Map<number, Uint8Array>();
  return {
    mem,
    put: (pfn, src, offset) => mem.set(pfn, src.slice(offset, offset + PAGE_SIZE)),
    putRun: (pfn, count, src, offset) => {
      for (let i = 0; i < count; i++) mem.set(pfn + i, src.slice(offset + i * PAGE_SIZE, offset + (i + 1) * PAGE_SIZE));
    },
    get: (pfn) => mem.get(pfn),
    drop: (pfn) => mem.delete(pfn),
  };
}

/** Reads `bytes` streamed, cut into the given piece sizes (cycled), each piece lent and poisoned once read. */
function readStreamed(bytes: Uint8Array, pieces: readonly number[], opts: SaveStreamReaderOptions = {}): { image: RestoredImage; mem: Map<number, Uint8Array>; heads: number; parts: number } {
  const reader = new SaveStreamReader(opts);
  reader.streamPages();
  const sink = memorySink();
  const restorer = new ImageRestorer({ pageSink: sink, lent: true, libxcOnly: opts.format === 'libxc' });
  const buf = new Uint8Array(Math.max(...pieces));
  let heads = 0;
  let parts = 0;
  for (let at = 0, k = 0; at < bytes.length; k++) {
    const n = Math.min(pieces[k % pieces.length], bytes.length - at);
    buf.set(bytes.subarray(at, at + n));
    for (const ev of reader.push(buf.subarray(0, n), true)) {
      if ('pageDataHead' in ev) heads++;
      if ('pageData' in ev) parts++;
      restorer.apply(ev);
    }
    buf.fill(POISON);
    at += n;
  }
  restorer.end(reader.end());
  return { image: restorer.image, mem: sink.mem, heads, parts };
}

function errorOf(fn: () => unknown): StreamError {
  try {
    fn();
  } catch (e) {
    assert(e instanceof StreamError, `expected a StreamError, got ${String(e)}`);
    return e;
  }
  assert.fail('accepted');
}

const bytesOf = (image: SaveImage): Uint8Array => concat(saveImageChunks(image));

describe('streamed PAGE_DATA: a record\'s pfn list checked first, then its pages into the sink as they come', () => {
  const base = pvImage(3000);
  // Round 1 every page; later rounds resend some, one pfn goes (XTAB), one run is not consecutive.
  const rounds = [pages(0, 3000), [page(3, 1), page(2999, 1), page(1500, 1)], [page(3, 2), { pfn: 10, type: XenDomctlPfinfo.XEN_DOMCTL_PFINFO_XTAB }, page(11, 3)]];
  const stream = bytesOf({ ...base, checkpoints: [{ ...base.checkpoints[0], rounds }] });
  const whole = readSaveImage(stream);

  // Piece sizes: one byte at a time for a while would take long over 12 MiB; these cut records,
  // pfn lists and pages everywhere (a page across three pieces, a piece across records).
  for (const pieces of [[1 << 20], [65536, 4097, 3], [212_992, 8191], [4096], [100_000, 1, 4095, 12_289]]) {
    it(`pieces of ${pieces.join(', ')} bytes: the same pages, types and counts as the records read whole`, () => {
      const { image, mem, heads, parts } = readStreamed(stream, pieces);
      assert.equal(heads, image.stats.pageDataRecords);
      assert.equal(image.stats.pageDataRecords, whole.stats.pageDataRecords);
      assert.equal(image.stats.pagesReceived, whole.stats.pagesReceived);
      assert.equal(image.stats.pagesResent, whole.stats.pagesResent);
      assert.deepEqual([...image.pageTypes], [...whole.pageTypes]);
      assert.equal(mem.size, whole.pages.size);
      for (const [pfn, bytes] of whole.pages) assert.deepEqual(mem.get(pfn), bytes, `pfn ${pfn}`);
      assert.deepEqual(mem.get(3), pageBytes(3, 2));
      assert.equal(mem.has(10), false, 'XTAB dropped the page');
      assert.ok(parts >= heads, 'pages came in parts');
      assert.equal(image.vcpus.size, whole.vcpus.size);
    });
  }

  it('a truncated stream: cut all through a PAGE_DATA record (every 7th byte of its head, then every 1531st), the error reading it whole gives', () => {
    const small = bytesOf(pvImage(40));
    // The one PAGE_DATA record: from its header (type 1) to its end.
    const dv = new DataView(small.buffer, small.byteOffset);
    let rec = -1;
    for (let o = 0; o + 16 <= small.length; o++) {
      if (dv.getUint32(o, true) === LibxcRecType.REC_TYPE_PAGE_DATA && dv.getUint32(o + 4, true) === 8 + 8 * 40 + 40 * PAGE_SIZE && dv.getUint32(o + 8, true) === 40) {
        rec = o;
        break;
      }
    }
    assert.ok(rec > 0, 'the PAGE_DATA record is in the stream');
    const end = rec + 8 + 8 + 8 * 40 + 40 * PAGE_SIZE;
    for (let cut = rec + 8; cut < end; cut += cut < rec + 400 ? 7 : 1531) {
      const expected = errorOf(() => readSaveImage(small.subarray(0, cut)));
      const got = errorOf(() => readStreamed(small.subarray(0, cut), [777]));
      assert.equal(got.message, expected.message, `cut at ${cut}`);
    }
  });

  it('a hostile record is refused before any of its pages reaches the sink, with the words it gets read whole', () => {
    const ok = bytesOf(pvImage(8));
    const dv = new DataView(ok.buffer, ok.byteOffset);
    let rec = -1;
    for (let o = 0; o + 16 <= ok.length; o++) {
      if (dv.getUint32(o, true) === LibxcRecType.REC_TYPE_PAGE_DATA && dv.getUint32(o + 8, true) === 8) {
        rec = o;
        break;
      }
    }
    assert.ok(rec > 0);
    const patched = (at: number, value: number): Uint8Array => {
      const b = ok.slice();
      new DataView(b.buffer).setUint32(at, value, true);
      return b;
    };
    const cases: [string, Uint8Array, SaveStreamReaderOptions?][] = [
      ['no pfns', patched(rec + 8, 0)],
      ['reserved word', patched(rec + 12, 1)],
      ['count beyond the record', patched(rec + 8, 0xffffffff)],
      ['unknown page type', patched(rec + 16 + 4, 0x50000000)],
      ['reserved pfn bits', patched(rec + 16 + 4, 0x00100000)],
      ['a page type without data: the record too long', patched(rec + 16 + 8 * 3 + 4, XenDomctlPfinfo.XEN_DOMCTL_PFINFO_XTAB << 28)],
      ['a pfn outside the domain', ok, { p2mSize: 4 }],
    ];
    for (const [what, bytes, opts] of cases) {
      const expected = errorOf(() => readSaveImage(bytes, opts));
      let seen = 0;
      const got = errorOf(() => {
        const reader = new SaveStreamReader(opts);
        reader.streamPages();
        const sink = memorySink();
        const restorer = new ImageRestorer({ pageSink: { ...sink, putRun: (...a) => { seen++; sink.putRun!(...a); } }, lent: true });
        for (const ev of reader.push(bytes)) restorer.apply(ev);
        reader.end();
      });
      assert.equal(got.message, expected.message, what);
      assert.equal(got.layer, expected.layer, what);
      assert.equal(seen, 0, `${what}: no page reached the sink`);
    }
  });

  it('after VERIFY the pages are read whole again and compared', () => {
    const img = pvImage(20);
    const { image, mem } = readStreamed(bytesOf({ ...img, verify: [...pages(0, 19), page(19, 9)] }), [5000]);
    assert.deepEqual(image.stats.verifyMismatches, [19]);
    assert.deepEqual(mem.get(19), pageBytes(19, 0));
  });
});
