// The dom0 XenStore client side against Debian's real C xenstored (../shared/oracle):
//  - `xensim xenstore <verb>` must print exactly what xenstore-utils 4.17 prints (stdout, stderr,
//    exit status), for the same store;
//  - XsHandle (domains/libs/store/xs.ts): request matching, watch events, transactions, errors.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { XsdSockmsgType } from '../../../hypervisor/public/io/xs_wire.ts';
import { atoi, getoptLong } from '../../../domains/dom0/tools/getopt.ts';
import {
  runXenstoreTool,
  sanitiseValue,
  unsanitiseValue,
  type XenstoreVerb,
} from '../../../domains/dom0/tools/xenstore-cli.ts';
import { XsError, XsHandle } from '../../../domains/libs/store/xs.ts';
import { HANG_MS, waitFor } from '../../helpers/wait.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const ORACLE = path.resolve(REPO, '..', 'shared', 'oracle');
const XENSTORED = '/usr/lib/xen-4.17/bin/xenstored';
const XENSTORE_UTILS = ['ls', 'read', 'write', 'rm', 'list', 'exists', 'watch', 'chmod'];
const INSTALL =
  'apt-get update && apt-get install -y --no-install-recommends xen-utils-4.17 xenstore-utils libxen-dev gcc';

/** `xensim` itself once sim/cli.ts can load all its modules, else a stand-in with only our tools. */
const CLI_ENTRY = existsSync(path.join(REPO, 'domains/dom0/xenstored/cli.ts'))
  ? 'sim/bin/xensim.mjs'
  : 'test/dom0/tools/xenstore-entry.ts';

interface Result {
  code: number | null;
  stdout: string; // latin1: one char per byte
  stderr: string;
}

function run(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv, argv0?: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: REPO, env, argv0, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    // A hang guard: a hung child is killed, so its output shows in the failure.
    const hung = setTimeout(() => child.kill('SIGKILL'), HANG_MS);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(hung);
      resolve({
        code,
        stdout: Buffer.concat(out).toString('latin1'),
        stderr: Buffer.concat(err).toString('latin1'),
      });
    });
  });
}

describe('dom0 xenstore tools against the real C xenstored', function () {
  let dir = '';
  let sock = '';
  let pid = '';
  let env: NodeJS.ProcessEnv = {};

  // argv[0] as when run from $PATH: it appears in usage and getopt messages.
  const real = (verb: string, ...args: string[]) =>
    run(`/usr/bin/xenstore-${verb}`, args, env, `xenstore-${verb}`);
  const xensim = (verb: string, ...args: string[]) =>
    run(process.execPath, ['--import', './scripts/tsx-preload.mjs', CLI_ENTRY, 'xenstore', verb, ...args], env);
  /** Our tool in this process: same bytes, much faster than a child process. */
  const ours = async (verb: XenstoreVerb, args: string[], columns?: number): Promise<Result> => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const code = await runXenstoreTool(verb, args, {
      stdout: (b) => out.push(Buffer.from(b)),
      stderr: (b) => err.push(Buffer.from(b)),
      columns,
      env,
    });
    return { code, stdout: Buffer.concat(out).toString('latin1'), stderr: Buffer.concat(err).toString('latin1') };
  };
  const mustRun = async (verb: string, ...args: string[]) => {
    const r = await real(verb, ...args);
    assert.equal(r.code, 0, `xenstore-${verb} ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const sameAsReal = async (verb: XenstoreVerb, ...args: string[]) => {
    const [want, got] = await Promise.all([real(verb, ...args), ours(verb, args)]);
    assert.deepEqual(got, want, `xenstore-${verb} ${args.join(' ')}`);
  };

  before(async function () {
    if (!existsSync(XENSTORED)) {
      throw new Error(`${XENSTORED} is missing: install Debian's xen-utils-4.17 (${INSTALL})`);
    }
    for (const v of XENSTORE_UTILS) {
      if (!existsSync(`/usr/bin/xenstore-${v}`)) {
        throw new Error(`/usr/bin/xenstore-${v} is missing: install Debian's xenstore-utils (${INSTALL})`);
      }
    }
    if (!existsSync(path.join(ORACLE, 'start.sh'))) throw new Error(`missing ${ORACLE}/start.sh (../shared/oracle)`);
    dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-xs-cli-'));
    sock = path.join(dir, 'sock');
    const started = await run(path.join(ORACLE, 'start.sh'), [sock], process.env);
    assert.equal(started.code, 0, `oracle start.sh failed: ${started.stderr}`);
    pid = started.stdout.trim().split('\n').pop() ?? '';
    assert.match(pid, /^\d+$/, `start.sh printed no PID: ${started.stdout}`);
    env = { ...process.env, XENSTORED_PATH: sock };
    delete env.POSIXLY_CORRECT;

    // The tree every comparison reads, written with the real tools.
    await mustRun(
      'write',
      '/tree/a', 'hello',
      '/tree/a/b', 'with space "quotes" and \\\\ backslash',
      '/tree/bin', 'x\\001\\t\\n\\r\\x7f\\x80\\xffq\\',
      '/tree/utf8', 'caf\u00e9',
      `/tree/${'n'.repeat(90)}`, 'long name',
      `/tree/${'m'.repeat(70)}/${'o'.repeat(71)}`, 'x',
      '/tree/long', '0123456789'.repeat(10),
      '/tree/w', `a\\001\\002${'abcdefghijklmnopqrstuvwxyz'.repeat(3)}`,
      '/tree/y', '0123456789'.repeat(6) + '0123',
      '/tree/empty', '',
      '/tree/deep/1/2/3/4', 'd',
    );
    await mustRun('chmod', '/tree/a', 'n0', 'r5', 'w7');
    await mustRun('chmod', '-r', '/tree/deep', 'b3');
  });

  after(async function () {
    if (pid !== '') await run(path.join(ORACLE, 'stop.sh'), [pid], process.env);
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  describe('xensim xenstore (child processes) prints what xenstore-utils prints', function () {
    // Each child costs ~0.3 s of CPU (node + tsx), so only a few here; the in-process runs below
    // cover the details.
    it('ls -f, ls -p, read, list -p, exists, and a failing read', async function () {
      const cases: string[][] = [
        ['ls', '-f'],
        ['ls', '-p', '/tree'],
        ['read', '/tree/a', '/tree/bin', '/tree/utf8'],
        ['list', '-p', '/', '/tree'],
        ['exists', '/tree/a', '/tree/nope'],
        ['read', '--r', '-Z', '/tree/a', '--', '-p'],
      ];
      const results = await Promise.all(cases.map(async ([verb, ...args]) => {
        const [want, got] = await Promise.all([real(verb, ...args), xensim(verb, ...args)]);
        return { what: [verb, ...args].join(' '), want, got };
      }));
      for (const { what, want, got } of results) assert.deepEqual(got, want, `xenstore ${what}`);
      assert.match(results[0].want.stdout, /^\/tree\/bin = "x\\001\\t\\n\\r\\x7f\\x80\\xffq\\000"$/m);
      assert.equal(results[4].want.code, 1);
      assert.equal(results[5].want.code, 1);
    });

    it('watch -n N prints the paths of N events, the initial ones included', async function () {
      const base = '/watched';
      const start = (cmd: string, args: string[]) => {
        const child = spawn(cmd, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (b: Buffer) => (stdout += b.toString('latin1')));
        child.stderr.on('data', (b: Buffer) => (stderr += b.toString('latin1')));
        // A watcher that misses an event never exits: the hang guard kills it, and the output shows.
        const hung = setTimeout(() => child.kill('SIGKILL'), HANG_MS);
        const done = new Promise<Result>((resolve) => child.on('close', (code) => {
          clearTimeout(hung);
          resolve({ code, stdout, stderr });
        }));
        // The two initial events are printed once both watches are set up.
        const initial = waitFor(() => stdout.split('\n').length >= 3 || child.exitCode !== null,
          `the initial events from ${cmd}`, () => `stdout=${JSON.stringify(stdout)} stderr=${JSON.stringify(stderr)}`);
        return { done, initial };
      };
      const args = ['-n', '5', base, 'relative/one'];
      const w1 = start('/usr/bin/xenstore-watch', args);  // no message expected: argv[0] does not matter
      const w2 = start(process.execPath, ['--import', './scripts/tsx-preload.mjs', CLI_ENTRY, 'xenstore', 'watch', ...args]);
      await Promise.all([w1.initial, w2.initial]);
      await mustRun('write', `${base}/x`, '1');
      await mustRun('rm', base);
      await mustRun('write', `${base}/y`, '2');
      const [want, got] = await Promise.all([w1.done, w2.done]);
      assert.deepEqual(want, { code: 0, stdout: `${base}\nrelative/one\n${base}/x\n${base}\n${base}/y\n`, stderr: '' });
      assert.deepEqual(got, want);
    });
  });

  describe('output details (in-process runs, compared with the real tools)', function () {
    it('ls truncates names and values to 80 columns when stdout is not a terminal', async function () {
      await sameAsReal('ls');
      await sameAsReal('ls', '-fp');
      await sameAsReal('ls', '/tree');
      await sameAsReal('ls', '-p', '/tree');
      await sameAsReal('ls', '-f', '/tree', '/tool');
    });

    it('ls uses the terminal width (columns - 2) on a terminal, as under script(1)', async function () {
      for (const cols of [50, 1, 0]) {
        const r = await run('/usr/bin/script', ['-qc', `stty cols ${cols}; xenstore-ls /tree; xenstore-ls -fp /tree`, '/dev/null'], env);
        const [a, b] = await Promise.all([ours('ls', ['/tree'], cols), ours('ls', ['-fp', '/tree'], cols)]);
        assert.equal(a.stdout + b.stdout, r.stdout.replace(/\r\n/g, '\n'), `stty cols ${cols}`);
      }
    });

    it('read escapes values; -p prefixes keys; -R prints raw bytes', async function () {
      await sameAsReal('read', '/tree/bin', '/tree/utf8', '/tree/a/b', '/tree/empty');
      await sameAsReal('read', '-p', '/tree/a', '/tree/bin');
      await sameAsReal('read', '-R', '/tree/bin');
      await sameAsReal('read', '/tree/a', '/nonexistent');
    });

    it('list, list -p (4.17 prints "//name" for "/"), exists', async function () {
      await sameAsReal('list', '/tree');
      await sameAsReal('list', '-p', '/', '/tree/a');
      await sameAsReal('list', '/tree', '/nonexistent');
      await sameAsReal('exists', '/tree/deep/1');
      await sameAsReal('exists', '/nonexistent');
      await sameAsReal('exists', '/tree/deep/1', '/tree/deep/9');
    });

    it('option parsing: getopt_long messages, usage lines and exit status 1', async function () {
      for (const verb of XENSTORE_UTILS as XenstoreVerb[]) await sameAsReal(verb, '-h');
      await sameAsReal('read');
      await sameAsReal('write', '/tree/x');
      await sameAsReal('read', '-f', '/tree/a');
      await sameAsReal('read', '--raw=1', '--foo=2', '-Z', '/tree/a');
      await sameAsReal('read', '--pre', '-s', '/tree/a');
      await sameAsReal('ls', '--=x', '/tree/deep');
      await sameAsReal('watch', '-n');
      await sameAsReal('watch', '--number');
      await sameAsReal('exists', '-p', '/tree');
      await sameAsReal('rm', '-R', '/tree/nope');
      await sameAsReal('read', '/tree/a', '-p', '--', '-p');
    });

    it('ls, chmod and watch errors', async function () {
      await sameAsReal('ls', '/tree/');
      await sameAsReal('ls', 'relative');
      await sameAsReal('chmod', '/tree/a', 'x5');
      await sameAsReal('chmod', '/tree/a', '');
      await sameAsReal('chmod', '/nonexistent', 'r0');
      await sameAsReal('chmod', '/tree/a');
      await sameAsReal('chmod', '-u', 'rel/path', 'r0');
      await sameAsReal('watch', '-n', '1', '/bad//path');
      await sameAsReal('watch', '-n', '2', '/tree', '@releaseDomain');
      await sameAsReal('watch', '-n', '0', '/tree');
    });

    it('write unescapes like xenstore-write (\\t \\xNN \\ooo, trailing backslash, sscanf quirks) and -R', async function () {
      const specs = [
        'plain', 'a\\x', 'a\\x4', 'a\\x 41', 'a\\x+41', 'a\\x-1z', 'a\\x0x41', 'a\\xg', 'a\\777b',
        'a\\1234', 'a\\8', 'a\\q', 'a\\X41', 'a\\x-', 'a\\x+g', 'b\\', 'caf\u00e9\\t\\n\\r\\\\',
      ];
      const realArgs: string[] = [];
      const ourArgs: string[] = [];
      specs.forEach((s, i) => {
        realArgs.push(`/wr/real/${i}`, s);
        ourArgs.push(`/wr/ours/${i}`, Buffer.from(s, 'utf8').toString('latin1'));
      });
      const [want, got] = await Promise.all([real('write', ...realArgs), ours('write', ourArgs)]);
      assert.deepEqual(got, want);
      await mustRun('write', '-R', '/wr/real/raw', 'a\\x41');
      assert.equal((await ours('write', ['-R', '/wr/ours/raw', 'a\\x41'])).code, 0);
      const listing = async (side: string) => (await mustRun('ls', '-fp', `/wr/${side}`)).replaceAll(`/wr/${side}/`, '/');
      assert.equal(await listing('ours'), await listing('real'));
      assert.equal(await mustRun('read', '/wr/ours/5'), 'a\\xffz\n');
    });

    it('chmod -r / -u and atoi() ids; rm and rm -t', async function () {
      const tree = (side: string) => [`/ch/${side}/a/b/c`, '1', `/ch/${side}/a/d`, '2'];
      await mustRun('write', ...tree('real'), ...tree('ours'));
      for (const [opts, rel, perms] of [
        [['-r'], 'a', ['b3', 'r5']],
        [['-u'], 'a/b/c', ['n7', 'r-2', 'w99999999999', 'r 4x']],
      ] as const) {
        await mustRun('chmod', ...opts, `/ch/real/${rel}`, ...perms);
        assert.equal((await ours('chmod', [...opts, `/ch/ours/${rel}`, ...perms])).code, 0);
      }
      const perms = async (side: string) => (await mustRun('ls', '-p', `/ch/${side}`));
      assert.equal(await perms('ours'), await perms('real'));
      assert.match(await perms('real'), /\(n7,r-2,w1215752191,r4\)/);

      await mustRun('write', '/rm/real/q/w/e', '1', '/rm/real/k', 'v', '/rm/ours/q/w/e', '1', '/rm/ours/k', 'v');
      await sameAsReal('rm', '/rm/nothing/here');
      await mustRun('rm', '-t', '/rm/real/q/w/e');
      assert.equal((await ours('rm', ['-t', '/rm/ours/q/w/e'])).code, 0);
      const left = async (side: string) => (await mustRun('ls', `/rm/${side}`));
      assert.equal(await left('ours'), await left('real'));
      assert.equal(await left('ours'), 'k = "v"\n');
    });

    it('mkdir (xensim extra) creates empty nodes', async function () {
      assert.equal((await ours('mkdir', ['/mk/a', '/mk/b'])).code, 0);
      assert.equal(await mustRun('ls', '/mk'), 'a = ""\nb = ""\n');
    });
  });

  describe('escaping and option helpers', function () {
    it('sanitiseValue / unsanitiseValue', function () {
      assert.equal(sanitiseValue(Buffer.from([0x61, 0, 7, 8, 9, 10, 13, 0x5c, 0x7e, 0x7f, 0xff])), 'a\\000\\007\\x08\\t\\n\\r\\\\~\\x7f\\xff');
      assert.deepEqual(unsanitiseValue(Buffer.from('a\\000\\007\\x08\\t\\n\\r\\\\~\\x7f\\xff', 'latin1')),
        Buffer.from([0x61, 0, 7, 8, 9, 10, 13, 0x5c, 0x7e, 0x7f, 0xff]));
    });

    it('atoi and getopt_long', function () {
      assert.deepEqual(['5', ' -3x', '', 'x', '99999999999', '-99999999999999999999'].map(atoi), [5, -3, 0, 0, 1215752191, 0]);
      const r = getoptLong(['a', '-pn3', '--num', '4', 'b', '--', '-c'], 'hpn:', [{ name: 'number', hasArg: true, val: 'n' }], 'p');
      assert.deepEqual(r.items, [{ opt: 'p' }, { opt: 'n', optarg: '3' }, { opt: 'n', optarg: '4' }]);
      assert.deepEqual(r.operands, ['a', 'b', '-c']);
    });
  });

  describe('XsHandle', function () {
    let h: XsHandle;
    beforeEach(async function () {
      h = await XsHandle.open(sock);
    });
    afterEach(async function () {
      await h.close();
    });

    it('matches replies to requests with many in flight', async function () {
      const keys = Array.from({ length: 300 }, (_, i) => `/xsh/k${i}`);
      await Promise.all(keys.map((k, i) => h.write(k, `value ${i}`)));
      const vals = await Promise.all(keys.map((k) => h.read(k)));
      vals.forEach((v, i) => assert.equal(v.toString(), `value ${i}`));
      const [dir, perms, missing] = await Promise.all([
        h.directory('/xsh'),
        h.getPerms('/xsh/k1'),
        h.read('/xsh/nope').catch((e: unknown) => e),
      ]);
      assert.equal(dir.length, 300);
      assert.equal(dir[299], 'k299');
      assert.deepEqual(perms, ['n0']);
      assert.ok(missing instanceof XsError);
      assert.equal(missing.code, 'ENOENT');
      assert.equal(missing.errno, 2);
      await assert.rejects(h.rm('/'), { name: 'XsError', code: 'EINVAL', errno: 22 });
    });

    it('writes binary values, mkdir, setPerms, rm', async function () {
      await h.write('/xsh2/bin', Buffer.from([0, 1, 255]));
      assert.deepEqual(await h.read('/xsh2/bin'), Buffer.from([0, 1, 255]));
      await h.mkdir('/xsh2/dir');
      assert.deepEqual(await h.read('/xsh2/dir'), Buffer.alloc(0));
      await h.setPerms('/xsh2/dir', ['b5', 'r0']);
      assert.deepEqual(await h.getPerms('/xsh2/dir'), ['b5', 'r0']);
      await h.rm('/xsh2');
      await assert.rejects(h.read('/xsh2/bin'), { code: 'ENOENT' });
      // Over XENSTORE_PAYLOAD_MAX: refused without sending (xenstored would drop the connection).
      await assert.rejects(h.write('/xsh2/big', Buffer.alloc(5000)), { code: 'E2BIG' });
      assert.equal((await h.read('/tool/xenstored')).length, 0);
    });

    it('directory falls back to XS_DIRECTORY_PART when the list is too big', async function () {
      const names = Array.from({ length: 250 }, (_, i) => `a-rather-long-child-name-${i}`);
      await Promise.all(names.map((n) => h.write(`/big/${n}`, '')));
      await assert.rejects(h.request(XsdSockmsgType.XS_DIRECTORY, '/big'), { code: 'E2BIG' });
      assert.deepEqual(await h.directory('/big'), names);
      await h.rm('/big');
    });

    it('delivers watch events (initial one first) through on("watch") and watchEvents()', async function () {
      const seen: string[] = [];
      h.on('watch', (p, t) => seen.push(`${p} ${t}`));
      const ac = new AbortController();
      const iterated: string[] = [];
      const iterating = (async () => {
        for await (const ev of h.watchEvents(ac.signal)) {
          iterated.push(`${ev.path} ${ev.token}`);
          if (iterated.length === 3) break;
        }
      })();
      await h.watch('/xw', 'tok');
      await h.write('/xw/a', '1');
      // C xenstored sends a request's events before its reply.
      assert.deepEqual(seen, ['/xw tok', '/xw/a tok']);
      await h.unwatch('/xw', 'tok');
      await assert.rejects(h.unwatch('/xw', 'tok'), { code: 'ENOENT' });
      await h.watch('@introduceDomain', 'intro');
      await iterating;
      assert.deepEqual(iterated, ['/xw tok', '/xw/a tok', '@introduceDomain intro']);
      ac.abort();
    });

    it('transactionEnd returns false on EAGAIN and true on a clean commit', async function () {
      await h.write('/xt/v', 'start');
      const tx = await h.transactionStart();
      assert.ok(tx > 0);
      assert.equal((await h.read('/xt/v', tx)).toString(), 'start');
      await h.write('/xt/v', 'outside');
      await h.write('/xt/v', 'inside', tx);
      assert.equal(await h.transactionEnd(tx, true), false);
      assert.equal((await h.read('/xt/v')).toString(), 'outside');
      // After EAGAIN the transaction is gone.
      await assert.rejects(h.read('/xt/v', tx), { code: 'ENOENT' });

      const tx2 = await h.transactionStart();
      await h.write('/xt/v', 'committed', tx2);
      assert.equal((await h.read('/xt/v')).toString(), 'outside');
      assert.equal(await h.transactionEnd(tx2, true), true);
      assert.equal((await h.read('/xt/v')).toString(), 'committed');

      const tx3 = await h.transactionStart();
      await h.write('/xt/v', 'aborted', tx3);
      assert.equal(await h.transactionEnd(tx3, false), true);
      assert.equal((await h.read('/xt/v')).toString(), 'committed');
    });

    it('domain requests and control', async function () {
      assert.equal(await h.getDomainPath(7), '/local/domain/7');
      assert.equal(await h.isDomainIntroduced(0), true);
      assert.equal(await h.isDomainIntroduced(9), false);
      const events: string[] = [];
      h.on('watch', (p) => events.push(p));
      await h.watch('@releaseDomain', 'r');
      await h.introduce(9, 1234, 5);
      assert.equal(await h.isDomainIntroduced(9), true);
      await h.release(9);
      assert.equal(await h.isDomainIntroduced(9), false);
      await assert.rejects(h.release(9), { code: 'ENOENT' });
      assert.deepEqual(events, ['@releaseDomain', '@releaseDomain']);
      assert.match(await h.control('help'), /quota/);
    });
  });
});

describe('XsHandle framing (fake server)', function () {
  let dir = '';
  let server: net.Server | undefined;
  after(function () {
    server?.close();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('matches out-of-order replies by req_id across split and merged chunks', async function () {
    dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-xs-fake-'));
    const sockPath = path.join(dir, 's');
    const reply = (type: number, reqId: number, payload: Buffer) => {
      const hdr = Buffer.alloc(16);
      hdr.writeUInt32LE(type, 0);
      hdr.writeUInt32LE(reqId, 4);
      hdr.writeUInt32LE(0, 8);
      hdr.writeUInt32LE(payload.length, 12);
      return Buffer.concat([hdr, payload]);
    };
    server = net.createServer((conn) => {
      let buf = Buffer.alloc(0);
      const reqs: { type: number; reqId: number; path: string }[] = [];
      conn.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 16 && buf.length >= 16 + buf.readUInt32LE(12)) {
          const len = buf.readUInt32LE(12);
          reqs.push({ type: buf.readUInt32LE(0), reqId: buf.readUInt32LE(4), path: buf.toString('latin1', 16, 16 + len - 1) });
          buf = buf.subarray(16 + len);
        }
        if (reqs.length < 3) return;
        // Answer in reverse order, with a watch event in the middle and an error, then send the
        // whole lot one byte per write for the first half and in one chunk for the rest.
        const out = Buffer.concat([
          reply(XsdSockmsgType.XS_READ, reqs[2].reqId, Buffer.from(`value of ${reqs[2].path}`)),
          reply(XsdSockmsgType.XS_WATCH_EVENT, 0, Buffer.from('/some/path\0tok\0')),
          reply(XsdSockmsgType.XS_ERROR, reqs[1].reqId, Buffer.from('EACCES\0')),
          reply(XsdSockmsgType.XS_READ, reqs[0].reqId, Buffer.from(`value of ${reqs[0].path}`)),
        ]);
        const half = out.length >> 1;
        let i = 0;
        const drip = () => {
          if (i < half) {
            conn.write(out.subarray(i, i + 1));
            i++;
            setImmediate(drip);
          } else {
            conn.write(out.subarray(half));
          }
        };
        drip();
      });
    });
    await new Promise<void>((resolve) => server!.listen(sockPath, resolve));
    const h = await XsHandle.open(sockPath);
    try {
      const events: string[] = [];
      h.on('watch', (p, t) => events.push(`${p}|${t}`));
      const [a, b, c] = await Promise.allSettled([h.read('/a'), h.read('/b'), h.read('/c')]);
      assert.equal(a.status === 'fulfilled' && a.value.toString(), 'value of /a');
      assert.equal(c.status === 'fulfilled' && c.value.toString(), 'value of /c');
      assert.ok(b.status === 'rejected' && b.reason instanceof XsError && b.reason.code === 'EACCES');
      assert.deepEqual(events, ['/some/path|tok']);
    } finally {
      await h.close();
    }
    // Requests after close fail instead of hanging.
    await assert.rejects(h.read('/a'));
  });
});
