// The guest's end of the xenstore ring (domains/kernel/xenbus-comms.ts): a Duplex over the page,
// tested against a scripted server that pokes the page directly, and end to end under XsHandle
// against the real daemon and its ring transport (domains/dom0/xenstored/domain-ring.ts).
import { deferredPort } from '../../helpers/deferred-port.ts';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { XsHandle, XsError } from '../../../domains/libs/store/xs.ts';
import type { Profile } from '../../../domains/dom0/xenstored/core.ts';
import { XenstoredDaemon } from '../../../domains/dom0/xenstored/daemon.ts';
import { XsRingConnection } from '../../../domains/dom0/xenstored/domain-ring.ts';
import { XenbusRing } from '../../../domains/kernel/xenbus-comms.ts';
import {
  XENSTORE_RING_SIZE, XenstoreDomainInterface as I, XsdSockmsgType as T, encodeMessage, nulJoin,
} from '../../../hypervisor/public/io/xs_wire.ts';
import { property } from '../../helpers/property.ts';

const newPage = (): Uint8Array => new Uint8Array(new SharedArrayBuffer(4096));
const idx = (page: Uint8Array, off: number): number => new Int32Array(page.buffer)[off >> 2] >>> 0;
const setIdx = (page: Uint8Array, off: number, v: number): void => {
  Atomics.store(new Int32Array(page.buffer), off >> 2, v | 0);
};
const setAll = (page: Uint8Array, v: number): void => {
  for (const off of [I.req_cons, I.req_prod, I.rsp_cons, I.rsp_prod]) setIdx(page, off, v);
};

/** The scripted server's consumer: everything in req[]. */
function serverTake(page: Uint8Array, max = XENSTORE_RING_SIZE): Buffer {
  const cons = idx(page, I.req_cons);
  const n = Math.min((idx(page, I.req_prod) - cons) >>> 0, max);
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = page[I.req + ((cons + i) & 1023)];
  setIdx(page, I.req_cons, cons + n);
  return out;
}

/** The scripted server's producer: what fits of `data` into rsp[]. */
function serverPut(page: Uint8Array, data: Uint8Array): number {
  const prod = idx(page, I.rsp_prod);
  const n = Math.min(XENSTORE_RING_SIZE - ((prod - idx(page, I.rsp_cons)) >>> 0), data.length);
  for (let i = 0; i < n; i++) page[I.rsp + ((prod + i) & 1023)] = data[i];
  setIdx(page, I.rsp_prod, prod + n);
  return n;
}

const collect = (ring: XenbusRing): Buffer[] => {
  const got: Buffer[] = [];
  ring.on('data', (b: Buffer) => got.push(b));
  return got;
};

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('guest xenbus ring (xenbus-comms.ts)', () => {
  describe('against a scripted server', () => {
    it('writes only what req[] has room for; the rest goes out on later events', async () => {
      const page = newPage();
      let notified = 0;
      const ring = new XenbusRing(page, () => notified++);
      const data = Buffer.alloc(2500);
      for (let i = 0; i < data.length; i++) data[i] = i * 7;
      let done = false;
      ring.write(data, () => {
        done = true;
      });
      await tick();
      assert.equal(idx(page, I.req_prod), 1024);
      assert.equal(done, false);
      assert.equal(notified, 1);
      // An event without room changes nothing.
      ring.onEvent();
      assert.equal(idx(page, I.req_prod), 1024);
      let got = serverTake(page, 600);
      ring.onEvent();
      assert.equal(idx(page, I.req_prod), 1624);
      got = Buffer.concat([got, serverTake(page)]);
      ring.onEvent();
      got = Buffer.concat([got, serverTake(page)]);
      ring.onEvent();
      await tick();
      assert.equal(done, true);
      assert.deepEqual(got, data);
      assert.equal(idx(page, I.req_prod), 2500);
      ring.destroy();
    });

    it('drains rsp[] on an event and pushes the bytes', async () => {
      const page = newPage();
      const ring = new XenbusRing(page, () => undefined);
      const got = collect(ring);
      const msg = encodeMessage({ type: T.XS_READ, req_id: 7, tx_id: 0, payload: Buffer.from('value') });
      serverPut(page, msg);
      ring.onEvent();
      await tick();
      assert.deepEqual(Buffer.concat(got), Buffer.from(msg));
      assert.equal(idx(page, I.rsp_cons), msg.length);
      ring.destroy();
    });

    it('works from whatever indexes it finds (near 2^32, across the wrap)', async () => {
      const page = newPage();
      setAll(page, 0xfffffff0);
      const ring = new XenbusRing(page, () => undefined);
      const got = collect(ring);
      const data = Buffer.from('x'.repeat(100));
      ring.write(data);
      await tick();
      assert.equal(idx(page, I.req_prod), 0x54);
      assert.deepEqual(Buffer.concat([page.subarray(I.req + 0x3f0, I.req + 0x400), page.subarray(I.req, I.req + 0x54)]), data);
      serverPut(page, Buffer.from('reply bytes across the wrap'));
      ring.onEvent();
      await tick();
      assert.equal(Buffer.concat(got).toString(), 'reply bytes across the wrap');
      assert.equal(idx(page, I.rsp_cons), (0xfffffff0 + 27) >>> 0);
      ring.destroy();
    });

    it('skips responses left in rsp[] by a previous kernel (xb_init_comms), unless told not to', () => {
      const page = newPage();
      setIdx(page, I.rsp_cons, 500);
      setIdx(page, I.rsp_prod, 530);
      let notified = 0;
      const ring = new XenbusRing(page, () => notified++);
      assert.equal(idx(page, I.rsp_cons), 530);
      assert.equal(notified, 1);
      ring.destroy();
      setIdx(page, I.rsp_cons, 500);
      const keep = new XenbusRing(page, () => undefined, { skipStaleResponses: false });
      assert.equal(idx(page, I.rsp_cons), 500);
      keep.destroy();
    });

    it('garbage response indexes: both reset to 0 and the stream fails with EIO', async () => {
      const page = newPage();
      setAll(page, 40);
      const ring = new XenbusRing(page, () => undefined);
      const failed = new Promise<NodeJS.ErrnoException>((resolve) => ring.on('error', resolve));
      setIdx(page, I.rsp_prod, 40 + 1025);
      ring.onEvent();
      const e = await failed;
      assert.equal(e.code, 'EIO');
      assert.equal(idx(page, I.rsp_cons), 0);
      assert.equal(idx(page, I.rsp_prod), 0);
      assert.equal(idx(page, I.req_prod), 40);
      assert.equal(ring.destroyed, true);
    });

    it('garbage request indexes: both reset to 0 and EIO (Linux xb_write)', async () => {
      const page = newPage();
      setIdx(page, I.req_cons, 5000);
      const ring = new XenbusRing(page, () => undefined);
      const failed = new Promise<NodeJS.ErrnoException>((resolve) => ring.on('error', resolve));
      ring.write(Buffer.from('request'));
      assert.equal((await failed).code, 'EIO');
      assert.equal(idx(page, I.req_cons), 0);
      assert.equal(idx(page, I.req_prod), 0);
    });

    it('an XsHandle over a failing ring rejects its requests', async () => {
      const page = newPage();
      const ring = new XenbusRing(page, () => undefined);
      const xs = XsHandle.fromStream(ring, 'xenbus');
      const p = xs.read('/x');
      await tick();
      setIdx(page, I.rsp_prod, 2000);
      ring.onEvent();
      await assert.rejects(p, (e: NodeJS.ErrnoException) => e.code === 'EIO');
      assert.equal(xs.isClosed, true);
    });

    it('every index it moves is followed by a notify', async () => {
      const page = newPage();
      setAll(page, 1000);
      const snap = (): string => `${idx(page, I.req_prod)}/${idx(page, I.rsp_cons)}`;
      const seen: string[] = [];
      const ring = new XenbusRing(page, () => seen.push(snap()));
      collect(ring);
      for (let i = 0; i < 20; i++) {
        ring.write(Buffer.alloc(150, i));
        await tick();
        assert.equal(seen.at(-1) ?? '1000/1000', snap());
        serverTake(page, 200);
        serverPut(page, Buffer.alloc(90, i));
        ring.onEvent();
        await tick();
        assert.equal(seen.at(-1), snap());
      }
      for (let i = 1; i < seen.length; i++) assert.notEqual(seen[i], seen[i - 1]);
      ring.destroy();
    });

    it("XsHandle's direct path moves the indexes and notifies exactly as the stream path does", async () => {
      // The same requests (a burst too big for req[], then more while replies trickle back) over a
      // ring used as a stream and over one used directly; a scripted server answers each request
      // with its path, in small pieces. Both must log the same index moves at the same notifies.
      async function run(direct: boolean): Promise<{ log: string[]; values: string[] }> {
        const page = newPage();
        setAll(page, 0xfffffe00);
        const log: string[] = [];
        const ring = new XenbusRing(page, () => log.push(`notify ${idx(page, I.req_prod)}/${idx(page, I.rsp_cons)}`));
        // Hidden from XsHandle, the direct methods leave it the stream path.
        if (!direct) Object.defineProperty(ring, 'sendDirect', { value: undefined });
        const xs = XsHandle.fromStream(ring, 'xenbus');
        const values: Promise<string>[] = [];
        const read = (i: number): void => void values.push(xs.read(`data/key-${i}`).then((b) => b.toString()));
        let taken = Buffer.alloc(0);
        let replies = Buffer.alloc(0);
        let next = 0;
        for (let i = 0; i < 30; i++) read(next++);
        for (let step = 0; step < 400 && (values.length < 40 || taken.length > 0 || replies.length > 0 || idx(page, I.req_cons) !== idx(page, I.req_prod)); step++) {
          await tick();
          if (step === 5 || step === 9) for (let i = 0; i < 5; i++) read(next++);
          taken = Buffer.concat([taken, serverTake(page, 90)]);
          // Whole requests in `taken` become replies carrying the request's path as the value.
          while (taken.length >= 16 && taken.length >= 16 + taken.readUInt32LE(12)) {
            const len = taken.readUInt32LE(12);
            const path = taken.subarray(16, 16 + len - 1);
            const msg = encodeMessage({ type: T.XS_READ, req_id: taken.readUInt32LE(4), tx_id: 0, payload: path });
            replies = Buffer.concat([replies, msg]);
            taken = taken.subarray(16 + len);
          }
          replies = replies.subarray(serverPut(page, replies.subarray(0, 70)));
          log.push(`server ${idx(page, I.req_cons)}/${idx(page, I.rsp_prod)}`);
          ring.onEvent();
        }
        const out = await Promise.all(values);
        ring.destroy();
        return { log, values: out };
      }
      const stream = await run(false);
      const direct = await run(true);
      assert.equal(direct.values.length, 40);
      assert.deepEqual(direct.values, direct.values.map((_, i) => `data/key-${i}`));
      assert.deepEqual(direct.values, stream.values);
      assert.deepEqual(direct.log, stream.log);
    });

    it('property: any chunking of writes and of server transfers carries the bytes unchanged', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.uint8Array({ minLength: 0, maxLength: 1500 }), { minLength: 1, maxLength: 8 }),
          fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 10 }),
          fc.integer({ min: 0, max: 0xffffffff }),
          async (writes, steps, start) => {
            const page = newPage();
            setAll(page, start);
            const ring = new XenbusRing(page, () => undefined);
            const got = collect(ring);
            for (const w of writes) ring.write(w);
            const total = writes.reduce((n, w) => n + w.length, 0);
            // The server echoes what it reads, in pieces of the given sizes.
            let backlog = Buffer.alloc(0);
            let echoed = 0;
            for (let i = 0; echoed < total && i < 10_000; i++) {
              await tick();
              backlog = Buffer.concat([backlog, serverTake(page, steps[i % steps.length])]);
              const n = serverPut(page, backlog.subarray(0, steps[(i + 1) % steps.length]));
              backlog = backlog.subarray(n);
              echoed += n;
              ring.onEvent();
            }
            await tick();
            assert.deepEqual(Buffer.concat(got), Buffer.concat(writes));
            ring.destroy();
          },
        ),
        property(40),
      );
    });
  });

  describe('XsHandle.fromStream(new XenbusRing(...)) against the real daemon', () => {
    const port = deferredPort;

    async function boot(profile: Profile, domid: number) {
      const daemon = new XenstoredDaemon({ profile });
      const tool = daemon.xs.connectSocket();
      let rid = 1;
      const dom0 = (type: number, ...parts: string[]): void => {
        daemon.input(tool, { type, req_id: rid++, tx_id: 0, payload: nulJoin(...parts) });
      };
      dom0(T.XS_MKDIR, `/local/domain/${domid}`);
      dom0(T.XS_SET_PERMS, `/local/domain/${domid}`, `n${domid}`);
      dom0(T.XS_INTRODUCE, String(domid), '1', '9');
      const page = newPage();
      const toGuest = port();
      const toServer = port();
      const server = new XsRingConnection(daemon, daemon.xs.domainConnection(domid)!, page, toGuest.notify);
      server.introduce();
      const ring = new XenbusRing(page, toServer.notify);
      toServer.handler = () => server.kick();
      toGuest.handler = () => ring.onEvent();
      return { daemon, dom0, xs: XsHandle.fromStream(ring, 'xenbus') };
    }

    for (const profile of ['c', 'ocaml'] as const) {
      it(`${profile}: a full client (read, write, directory, permissions, watches, transactions)`, async () => {
        const { dom0, xs } = await boot(profile, 2);
        await xs.write('device/vbd/768/state', '1');
        assert.equal((await xs.read('device/vbd/768/state')).toString(), '1');
        assert.deepEqual(await xs.directory('device/vbd'), ['768']);
        assert.deepEqual(await xs.getPerms('device'), ['n2']);
        await assert.rejects(xs.write('/tool/x', '1'), (e: XsError) => e.code === 'EACCES');
        const events: string[] = [];
        xs.on('watch', (p) => events.push(p));
        await xs.watch('device', 'd');
        dom0(T.XS_WRITE, '/local/domain/2/device/vbd/768/backend', '/local/domain/0/backend/vbd/2/768');
        const tx = await xs.transactionStart();
        await xs.write('device/vbd/768/ring-ref', '8', tx);
        await xs.write('device/vbd/768/event-channel', '5', tx);
        assert.equal(await xs.transactionEnd(tx, true), true);
        assert.equal((await xs.read('device/vbd/768/ring-ref')).toString(), '8');
        while (events.length < 4) await tick();
        assert.equal(events[0], 'device');
        assert.ok(events.includes('device/vbd/768/backend'));
        assert.ok(events.includes('device/vbd/768/ring-ref'));
        await xs.close();
      });
    }

    it('hundreds of requests in flight: each gets its own reply; a close rejects the rest in submission order', async () => {
      const { xs } = await boot('c', 3);
      // More in flight than XsHandle's first table of requests has slots (ids 1 and 65 meet).
      await Promise.all(Array.from({ length: 300 }, (_, i) => xs.write(`data/k${i}`, `v${i}`)));
      const got = await Promise.all(Array.from({ length: 300 }, (_, i) => xs.read(`data/k${i}`)));
      assert.deepEqual(got.map((b) => b.toString()), Array.from({ length: 300 }, (_, i) => `v${i}`));
      const order: number[] = [];
      const left = Array.from({ length: 100 }, (_, i) => xs.read(`data/k${i}`).then(() => -1, () => order.push(i)));
      await xs.close();
      await Promise.all(left);
      assert.deepEqual(order, Array.from({ length: 100 }, (_, i) => i));
    });
  });
});
