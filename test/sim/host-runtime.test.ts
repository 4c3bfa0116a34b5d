// A running host: dom0 serves xenstore over each guest's ring while guests, each in its own
// vCPU thread, work through their xenbus at the same time as dom0 tools on the Unix socket.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { XsHandle } from '../../domains/libs/store/xs.ts';
import type { WorkloadArgs } from '../../domains/domU/xenstore-workload.ts';
import { HostRuntime } from '../../sim/host-runtime.ts';
import { waitFor } from '../helpers/wait.ts';

const WORKLOAD = new URL('../../domains/domU/xenstore-workload.ts', import.meta.url).href;
const HOSTILE = new URL('../../domains/domU/hostile-ring.ts', import.meta.url).href;

interface Done { cmd: string; domid: number; results: unknown[]; retries: number }

function done(rt: HostRuntime, domid: number): Promise<Done> {
  return new Promise((resolve, reject) => {
    const w = rt.control(domid);
    w.once('error', reject);
    w.on('message', (m: Done) => {
      if (m.cmd === 'done') resolve(m);
    });
  });
}

describe('host: guests use xenstore through their rings', function () {
  let dir: string;
  let rt: HostRuntime;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'xensim-host-'));
    rt = new HostRuntime({ seed: 7 });
    await rt.bootDom0({ socketPath: path.join(dir, 'xs.sock') });
  });

  afterEach(async () => {
    await rt.shutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  // Each guest's home (n0 rN, data/ guest-owned) is made by dom0's toolstack at INTRODUCE, as
  // libxl__domain_make does; a SET_PERMS naming a domain before it exists would be refused (XSA-417).

  it('three guests and a dom0 socket client work at once; racing transactional increments all land', async () => {
    const xs = await XsHandle.open(path.join(dir, 'xs.sock'));
    try {
      await xs.write('/shared', '0');
      await xs.setPerms('/shared', ['b0']);
      const args = (id: number): WorkloadArgs => ({
        ops: [
          ['write', 'data/hello', `from ${id}`],
          ['read', 'data/hello'],
          ['read', '/local/domain/1/data/hello'],
          ['txIncrement', '/shared', 20],
        ],
      });
      const guests = [];
      for (const id of [1, 2, 3]) {
        const started = rt.createGuest({ domid: id, program: { module: WORKLOAD, args: args(id) } });
        guests.push(started.then(() => done(rt, id)));
      }
      // Dom0 keeps writing the shared counter's neighbour while guests run.
      for (let i = 0; i < 20; i++) await xs.write('/dom0-progress', String(i));
      const results = await Promise.all(guests);
      for (const r of results) {
        assert.equal(r.results[0], 'OK');
        assert.equal(r.results[1], `from ${r.domid}`);
        // A guest cannot read another guest's data (n1 is guest 1's own node).
        assert.equal(r.results[2], r.domid === 1 ? 'from 1' : 'EACCES');
        assert.equal(r.results[3], 'OK');
      }
      // Every increment committed exactly once.
      assert.equal((await xs.read('/shared')).toString(), '60');
      // Debian-tool view: dom0 sees what the guests wrote.
      for (const id of [1, 2, 3]) assert.equal((await xs.read(`/local/domain/${id}/data/hello`)).toString(), `from ${id}`);
    } finally {
      await xs.close();
    }
  });

  for (const attack of ['garbage-indexes', 'oversized'] as const) {
    it(`a guest that corrupts its ring (${attack}) loses its connection; others keep being served`, async () => {
      const xs = await XsHandle.open(path.join(dir, 'xs.sock'));
      try {
        const bad = rt.createGuest({ domid: 1, program: { module: HOSTILE, args: { attack } } }).then(() => done(rt, 1));
        const r = await bad;
        // XENSTORE_ERROR_RINGIDX (2) or XENSTORE_ERROR_PROTO (3), as C xenstored writes them.
        assert.equal(r.results[0], attack === 'garbage-indexes' ? 2 : 3);
        const good = rt.createGuest({ domid: 2, program: { module: WORKLOAD, args: { ops: [['write', 'data/x', 'fine'], ['read', 'data/x']] } } })
          .then(() => done(rt, 2));
        assert.deepEqual((await good).results, ['OK', 'fine']);
        await xs.write('/after', 'committed');
        assert.equal((await xs.read('/after')).toString(), 'committed');
        // The ignored domain is still known until it dies (its @releaseDomain comes at death).
        assert.equal(await xs.isDomainIntroduced(1), true);
      } finally {
        await xs.close();
      }
    });
  }

  it('destroying a guest: VIRQ_DOM_EXC, @releaseDomain, its connection and owned nodes gone', async () => {
    const xs = await XsHandle.open(path.join(dir, 'xs.sock'));
    try {
      const g = rt.createGuest({ domid: 3, program: { module: WORKLOAD, args: { ops: [['write', 'data/mine', 'x']] } } }).then(() => done(rt, 3));
      assert.deepEqual((await g).results, ['OK']);
      assert.equal(await xs.isDomainIntroduced(3), true);
      const events: string[] = [];
      xs.on('watch', (p) => events.push(p));
      await xs.watch('@releaseDomain', 'rel');
      await xs.watch('/local/domain/3/data', 'data');
      // Each watch fires once when set; those events are not the ones under test.
      await waitFor(() => events.includes('@releaseDomain') && events.includes('/local/domain/3/data'),
        'the watches\' initial events', () => `events: ${events.join(' ')}`);
      events.length = 0;
      await rt.destroy(3);
      await waitFor(() => events.includes('@releaseDomain'), '@releaseDomain', () => `events: ${events.join(' ')}`);
      assert.ok(events.includes('/local/domain/3/data'), 'removal of the guest-owned data dir');
      assert.equal(await xs.isDomainIntroduced(3), false);
      await assert.rejects(xs.read('/local/domain/3/data'), { code: 'ENOENT' });
      // dom0 still owns and keeps the home directory itself; the toolstack removes it.
      assert.equal((await xs.read('/local/domain/3')).toString(), '');
      // Once xenstored unmapped the ring, the domain is gone and its domid free again.
      await waitFor(() => !rt.host.domains.has(3), 'domain 3 to leave the hypervisor');
    } finally {
      await xs.close();
    }
  });
});
