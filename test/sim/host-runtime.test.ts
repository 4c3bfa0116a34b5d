// A running host: dom0 serves xenstore over each guest's ring while guests, each in its own
// vCPU thread, work through their xenbus at the same time as dom0 tools on the Unix socket.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { XsHandle } from '../../domains/dom0/tools/xs.ts';
import type { WorkloadArgs } from '../../domains/domU/xenstore-workload.ts';
import { HostRuntime } from '../../sim/host-runtime.ts';

const WORKLOAD = new URL('../../domains/domU/xenstore-workload.ts', import.meta.url).href;

interface Done { cmd: string; domid: number; results: unknown[]; retries: number }

function done(rt: HostRuntime, domid: number): Promise<Done> {
  return new Promise((resolve, reject) => {
    const w = rt.threads.get(domid)!.worker;
    w.once('error', reject);
    w.on('message', (m: Done) => {
      if (m.cmd === 'done') resolve(m);
    });
  });
}

describe('host: guests use xenstore through their rings', function () {
  this.timeout(60_000);
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

  /** Dom0 prepares the guest's home as libxl does (n0 rN, data/ guest-owned). */
  async function prepareHome(xs: XsHandle, domid: number): Promise<void> {
    await xs.write(`/local/domain/${domid}`, '');
    await xs.setPerms(`/local/domain/${domid}`, ['n0', `r${domid}`]);
    await xs.write(`/local/domain/${domid}/data`, '');
    await xs.setPerms(`/local/domain/${domid}/data`, [`n${domid}`]);
  }

  it('three guests and a dom0 socket client work at once; their transactions conflict and retry', async () => {
    const xs = await XsHandle.open(path.join(dir, 'xs.sock'));
    try {
      for (const id of [1, 2, 3]) await prepareHome(xs, id);
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
});
