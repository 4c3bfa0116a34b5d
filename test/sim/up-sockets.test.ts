// `xensim up` and the sockets it serves: it checks they are free before it boots, and removes
// only what it bound. A second host on a live host's --socket refuses at once, with one line,
// and the live host keeps both its xenstored socket and its control socket.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XsdSockmsgType as T, encodeMessage } from '../../hypervisor/public/io/xs_wire.ts';
import { xlRequest } from '../../sim/xl-control.ts';
import { REPO_ROOT } from '../helpers/daemons.ts';
import { play } from '../dom0/xenstored/malformed-wire.ts';

const XENSIM = path.join(REPO_ROOT, 'sim/bin/xensim.mjs');

/** Starts `xensim up` and resolves once it says it is ready (rejects if it exits first). */
function upReady(args: string[]): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [XENSIM, 'up', ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('xensim: ready')) resolve(child);
    });
    child.stderr.on('data', (d: Buffer) => void (err += d.toString()));
    child.on('exit', (code) => reject(new Error(`xensim up exited (${code}) before it was ready: ${err}`)));
  });
}

const stopped = (child: ChildProcess): Promise<void> => new Promise((resolve) => {
  if (child.exitCode !== null) return resolve();
  child.on('exit', () => resolve());
  child.kill('SIGTERM');
});

/** dom0's home through the xenstored socket: the host behind it answers. */
async function xenstoredAnswers(socket: string): Promise<string> {
  const m = encodeMessage({ type: T.XS_GET_DOMAIN_PATH, req_id: 1, tx_id: 0, payload: Buffer.from('0\0') });
  const c = await play(socket, m, (col) => col.replies.length > 0);
  return c.replies[0]?.[3] ?? `closed: ${c.closed}`;
}

describe('xensim up: its sockets', function () {
  let dir: string;
  let cfg: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-upsock-'));
    cfg = path.join(dir, 'host.yaml');
    writeFileSync(cfg, 'mode: free\nguests: []\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("a second host on a live host's --socket refuses before it boots and leaves both of the live host's sockets", async () => {
    const socket = path.join(dir, 'xs');
    const first = await upReady([cfg, '--socket', socket]);
    try {
      const r = spawnSync(process.execPath, [XENSIM, 'up', cfg, '--socket', socket], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 50_000 });
      assert.equal(r.status, 1, r.stderr);
      assert.ok(existsSync(socket) && existsSync(`${socket}.xl`), 'both sockets of the live host are still there');
      assert.equal(r.stderr, `xensim up: ${socket}: another process is listening on this socket (another host?)\n`);
      assert.equal(r.stdout, '');
      assert.equal(await xenstoredAnswers(socket), '/local/domain/0\0');
      assert.deepEqual((await xlRequest(`${socket}.xl`, 'list') as { name: string }[]).map((d) => d.name), ['Domain-0']);
    } finally {
      await stopped(first);
    }
  });

  it('a path that is not a socket is refused and left alone; so is one over sun_path', () => {
    const taken = path.join(dir, 'taken');
    mkdirSync(taken);
    for (const [socket, why] of [[taken, `${taken}: exists and is not a socket`],
      [path.join(dir, 'x'.repeat(110)), 'a Unix socket path holds at most 107 bytes']] as const) {
      const r = spawnSync(process.execPath, [XENSIM, 'up', cfg, '--socket', socket], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 50_000 });
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stderr.split('\n').length, 2, r.stderr);
      assert.ok(r.stderr.startsWith('xensim up: ') && r.stderr.includes(why), r.stderr);
    }
    assert.ok(existsSync(taken));
  });
});
