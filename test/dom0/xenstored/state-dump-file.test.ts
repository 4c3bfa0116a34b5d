// The state_dump file a live update goes through under `xensim xenstored`: written, read back
// into the dump's own buffer when it fits (fresh memory costs a page fault per 4 KiB), removed.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XenstoredDaemon } from '../../../domains/dom0/xenstored/daemon.ts';
import { stateDumpFile } from '../../../domains/dom0/xenstored/state-dump-file.ts';
import { XsdSockmsgType as T, nulJoin } from '../../../hypervisor/public/io/xs_wire.ts';

describe('xenstored state_dump file', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-statedump-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads the file into the given buffer when it fits, into a new one when not', () => {
    const f = stateDumpFile(path.join(dir, 'state_dump'));
    const bytes = Buffer.from('xenstore stream bytes', 'latin1');
    f.write(bytes);
    const into = Buffer.alloc(64, 0xaa);
    const got = f.read(into);
    assert.equal(got.buffer, into.buffer, 'read into the given buffer');
    assert.equal(got.length, bytes.length);
    assert.deepEqual(Buffer.from(got), bytes);
    const small = Buffer.alloc(4);
    const fresh = f.read(small);
    assert.notEqual(fresh.buffer, small.buffer);
    assert.deepEqual(Buffer.from(fresh), bytes);
    assert.deepEqual(Buffer.from(f.read()), bytes);
    f.remove();
    assert.equal(existsSync(path.join(dir, 'state_dump')), false);
  });

  it('gives back what the file holds, not what the buffer held', () => {
    const file = path.join(dir, 'state_dump');
    const f = stateDumpFile(file);
    f.write(Buffer.from('first', 'latin1'));
    writeFileSync(file, 'other');
    const into = Buffer.from('first', 'latin1');
    assert.equal(Buffer.from(f.read(into)).toString('latin1'), 'other');
  });

  it('carries a daemon through a live update: the new instance has the tree', () => {
    const f = stateDumpFile(path.join(dir, 'state_dump'));
    const daemon = new XenstoredDaemon({ stateDump: f });
    const id = daemon.xs.connectSocket();
    daemon.attach(id, { send: () => undefined, flush: () => undefined, ended: () => undefined });
    for (let n = 0; n < 50; n++) daemon.input(id, { type: T.XS_WRITE, req_id: n, tx_id: 0, payload: Buffer.from(`/lu/d${n % 5}/n${n}\0value-${n}`, 'latin1') });
    const before = daemon.xs;
    daemon.input(id, { type: T.XS_CONTROL, req_id: 100, tx_id: 0, payload: nulJoin('live-update', '-f', '/usr/sbin/xenstored') });
    daemon.input(id, { type: T.XS_CONTROL, req_id: 101, tx_id: 0, payload: nulJoin('live-update', '-s') });
    assert.notEqual(daemon.xs, before, 'the live update happened');
    assert.equal(daemon.xs.store.size, before.store.size);
    for (let n = 0; n < 50; n++) assert.equal(daemon.xs.store.get(`/lu/d${n % 5}/n${n}`)?.value, `value-${n}`);
    assert.equal(existsSync(path.join(dir, 'state_dump')), false, 'the file is removed once read');
  });
});
