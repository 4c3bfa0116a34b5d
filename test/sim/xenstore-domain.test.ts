// A xenstore domain (issue 12; xencommons' XENSTORETYPE=domain): init-xenstore-domain builds a
// domain with XEN_DOMCTL_CDF_xs_domain whose xenstored serves every domain over its ring, dom0
// included; dom0's kernel and tools reach the store through dom0's ring; guests' store rings are
// granted to and introduced at that domain; a crash of dom0 leaves the store answering.
// Inline lockstep throughout, under several seeds.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { XsHandle } from '../../domains/libs/store/xs.ts';
import { HostRuntime, type TraceEvent } from '../../sim/host-runtime.ts';
import { SCENARIOS } from '../../scenarios/index.ts';
import { XtfResult } from '../../sim/report/xtf.ts';
import { runScenario } from '../../sim/scenario/run.ts';
import { Virq } from '../../hypervisor/public/xen.ts';
import { bootHost, SEEDS, type TestHost } from '../helpers/host.ts';

/** Successful maps of `dom`'s GNTTAB_RESERVED_XENSTORE (ref 1) grant, with who mapped it. */
const storeMaps = (h: TestHost, dom: number): TraceEvent[] =>
  h.trace.filter((e) => e.kind === 'gnttab' && e.op === 'map_grant_ref' && e.dom === dom && e.ref === 1 && e.status === 0);

const read = (h: TestHost, path: string): Promise<string | null> => h.rt.toolstack<string | null>('read', { path });

describe('xenstore domain', function () {

  for (const seed of SEEDS) {
    describe(`seed ${seed}`, () => {
      let h: TestHost;
      beforeEach(async () => {
        h = await bootHost(seed, { xenstoreDomain: true });
      });
      afterEach(async () => {
        await h.rt.shutdown();
      });

      it('init-xenstore-domain builds domain 1 as the xenstore domain, its VIRQ_DOM_EXC handler, named in the store', async () => {
        const xsd = h.rt.host.domains.get(1);
        assert.ok(xsd, 'domain 1 exists');
        assert.equal(h.rt.xenstoreDomid, 1);
        assert.equal(xsd.xenstore, true, 'created with XEN_DOMCTL_CDF_xs_domain');
        assert.equal(xsd.privileged, false, 'not a control domain');
        assert.equal(h.rt.evtchn.globalVirqHandler(Virq.VIRQ_DOM_EXC), xsd);
        assert.equal(await read(h, '/tool/xenstored/domid'), '1');
        assert.equal(await read(h, '/local/domain/1/name'), 'Xenstore');
        assert.equal(await read(h, '/local/domain/1/domid'), '1');
      });

      it('dom0 is a ring client of that xenstored: its requests come over the ring it granted domain 1, none in-process', async () => {
        await read(h, '/tool/xenstored/domid');
        // dom0_init(): dom0's GNTTAB_RESERVED_XENSTORE grant mapped by domain 1, and served.
        assert.ok(storeMaps(h, 0).length === 1 && storeMaps(h, 0)[0].domid === 1, `dom0's store ring mapped by ${storeMaps(h, 0).map((e) => e.domid).join(', ')}`);
        assert.ok(h.trace.some((e) => e.kind === 'ring' && e.peer === 0 && e.half === 'req'), 'xenstored in domain 1 consumed requests from dom0\'s ring');
        // Every dom0 message xenstored saw arrived on the one connection of dom0's ring.
        const conns = new Set(h.trace.filter((e) => e.kind === 'xenstore' && e.dir === 'IN' && e.domid === 0).map((e) => e.conn));
        assert.equal(conns.size, 1, `dom0's connections: ${[...conns].join(', ')}`);
      });

      it('xl create: the guest\'s store port and ring are the xenstore domain\'s; it is introduced there and its disk connects; xl list shows Xenstore', async () => {
        const id = await h.xl.create({ name: 'g', vcpus: 1, type: 'pv', disks: [{ vdev: 'xvda', target: 'g-root', sizeMiB: 8 }] });
        await h.rt.quiesce();
        assert.equal(await read(h, `/local/domain/${id}/device/vbd/51712/state`), '4');
        assert.equal(await read(h, `/local/domain/0/backend/vbd/${id}/51712/state`), '4');
        const introduce = h.trace.find((e) => e.kind === 'xenstore' && e.dir === 'IN' && e.type === 'INTRODUCE' && String(e.payload).startsWith(`${id}\\0`));
        assert.ok(introduce, 'dom0\'s toolstack sent XS_INTRODUCE');
        assert.ok(h.trace.some((e) => e.kind === 'ring' && e.peer === id), 'xenstored in domain 1 serves the guest\'s ring');
        assert.deepEqual(storeMaps(h, id).map((e) => e.domid), [1], 'the guest\'s store ring is mapped by domain 1 only');
        const rows = h.xl.list();
        assert.deepEqual(rows.map((r) => [r.name, r.id]), [['Domain-0', 0], ['Xenstore', 1], ['g', id]]);
      });
    });
  }

  it('free-running, the host\'s socket is dom0\'s /dev/xen/xenbus: a dom0 tool reads, writes and watches through dom0\'s ring', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'xensim-xsd-'));
    const rt = new HostRuntime({ seed: 7 });
    try {
      await rt.bootDom0({ socketPath: path.join(dir, 'xs.sock'), xenstoreDomain: true });
      const xs = await XsHandle.open(path.join(dir, 'xs.sock'));
      try {
        assert.equal((await xs.read('/tool/xenstored/domid')).toString(), '1');
        const fired = new Promise<string>((resolve) => {
          xs.on('watch', (p: string, token: string) => {
            if (token === 'tok' && p === '/local/domain/0/probe') resolve(p);
          });
        });
        await xs.watch('/local/domain/0/probe', 'tok');
        await xs.write('/local/domain/0/probe', 'hello');
        assert.equal((await xs.read('/local/domain/0/probe')).toString(), 'hello');
        assert.equal(await fired, '/local/domain/0/probe');
      } finally {
        await xs.close();
      }
    } finally {
      await rt.shutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('scenario dom0-crash-with-xenstore-domain', () => {
    const def = SCENARIOS.find((s) => s.name === 'dom0-crash-with-xenstore-domain')!;
    for (const variant of ['fixed', 'xenstored-in-dom0']) {
      it(`${variant}: SUCCESS on seeds ${SEEDS.join(', ')} (the guest's store survives dom0 only with a xenstore domain)`, async () => {
        for (const seed of SEEDS) {
          const r = await runScenario(def, { seed, variant, faults: { spec: 'none' } });
          assert.equal(r.result, XtfResult.SUCCESS, `seed ${seed}, step "${r.step ?? ''}": ${r.message ?? ''}`);
        }
      });
    }
  });
});
