// Every bad input at the CLI and the xl control socket gets a one-line error, never a stack trace
// or a wait: verbs that are Object.prototype's names, a YAML alias bomb, nesting past the bound
// (YAML and xl.cfg), and a shutdown request to a domain that is already shut down.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CONFIG_DEPTH_MAX, ConfigError, parseGuestFile, parseHostConfig, YAML_ALIAS_MAX } from '../../sim/config.ts';
import { XlControl, XlControlServer, XlError } from '../../sim/xl-control.ts';
import type { Xl } from '../../sim/xl.ts';
import { bootHost } from '../helpers/host.ts';

/** One request line on the control socket, its reply. */
function ask(socketPath: string, line: string): Promise<{ ok: boolean; error?: string }> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(socketPath);
    let text = '';
    s.on('connect', () => s.write(`${line}\n`));
    s.on('data', (b: Buffer) => {
      text += b.toString('utf8');
      const nl = text.indexOf('\n');
      if (nl >= 0) {
        s.destroy();
        resolve(JSON.parse(text.slice(0, nl)) as { ok: boolean; error?: string });
      }
    });
    s.on('error', reject);
  });
}

/** The ConfigError `f` throws: a single line. */
function oneLineConfigError(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `a ConfigError, not ${e instanceof Error ? e.stack : String(e)}`);
    assert.equal(e.message.split('\n').length, 1, e.message);
    return e.message;
  }
  assert.fail('accepted');
}

describe('bad input at the xl control socket', () => {
  let dir: string;
  let server: XlControlServer;
  const logged: string[] = [];
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'xensim-badin-'));
    // These requests never reach a domain: unknown verbs are refused before the Xl is used.
    server = new XlControlServer(path.join(dir, 'xl.sock'), new XlControl({} as Xl), (l) => logged.push(l));
    await server.listen();
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const verb of ['toString', 'constructor', '__proto__', 'hasOwnProperty', 'valueOf']) {
    it(`verb ${JSON.stringify(verb)} is an unknown verb, not a handler crash`, async () => {
      const r = await ask(path.join(dir, 'xl.sock'), JSON.stringify({ id: 1, verb, args: {} }));
      assert.equal(r.ok, false);
      assert.match(r.error!, new RegExp(`^unknown verb ${JSON.stringify(verb)} \\(verbs: list, create,`));
      assert.deepEqual(logged, [], 'nothing unexpected was thrown');
    });
  }
});

describe('bad input in config files', () => {
  it(`a YAML alias bomb: one line, stopped at ${YAML_ALIAS_MAX} alias expansions`, () => {
    const levels = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++) levels.push(`l${i}: &l${i} [${Array(9).fill(i === 1 ? '*a' : `*l${i - 1}`).join(', ')}]`);
    const msg = oneLineConfigError(() => parseHostConfig(`${levels.join('\n')}\nguests: []\n`, 'h.yaml'));
    assert.equal(msg, `h.yaml: aliases expand too much (more than ${YAML_ALIAS_MAX} expansions; an alias bomb?)`);
  });

  it(`YAML nested past ${CONFIG_DEPTH_MAX} levels: one line naming the line`, () => {
    for (const n of [CONFIG_DEPTH_MAX + 1, 100_000]) {
      const msg = oneLineConfigError(() => parseHostConfig(`seed: 1\nguests: ${'['.repeat(n)}${']'.repeat(n)}\n`, 'h.yaml'));
      assert.equal(msg, `h.yaml:2: nested more than ${CONFIG_DEPTH_MAX} levels deep`);
    }
    // Brackets inside quotes and comments are not nesting.
    assert.deepEqual(parseHostConfig(`# ${'['.repeat(100)}\nguests: [{ name: a }] # ]]]\n`, 'h.yaml').guests.length, 1);
    const quoted = oneLineConfigError(() => parseHostConfig(`guests: [{ name: a, type: "${'['.repeat(100)}" }]\n`, 'h.yaml'));
    assert.match(quoted, /^h\.yaml:1: guests\[0\]\.type: /);
  });

  it(`xl.cfg lists nested past ${CONFIG_DEPTH_MAX} levels: one line naming the line`, () => {
    for (const n of [CONFIG_DEPTH_MAX + 2, 100_000]) {
      const msg = oneLineConfigError(() => parseGuestFile(`name = "a"\ndisk = ${'['.repeat(n)}`, 'g.cfg'));
      assert.equal(msg, `g.cfg:2: lists nested more than ${CONFIG_DEPTH_MAX} levels deep`);
    }
  });
});

describe('a verb on a shut-down domain', function () {
  it('xl shutdown of a domain already shut down answers at once (no wait for an ack that cannot come)', async () => {
    const { rt, xl } = await bootHost(1);
    try {
      const ctl = new XlControl(xl);
      const id = await xl.create({ name: 'kept', on_poweroff: 'preserve' });
      await rt.quiesce();
      assert.deepEqual(await xl.shutdown(id, 'poweroff', { wait: true }), { acked: true });
      assert.equal(rt.host.domains.get(id)?.runState, 'shutdown');
      for (const verb of ['shutdown', 'reboot']) {
        const before = rt.virtualNow;
        await assert.rejects(ctl.handle(verb, { domain: id }), (e: unknown) =>
          e instanceof XlError && e.message === `domain ${id} is already shut down (reason poweroff)`);
        // Virtual time, so the bound is exact: libxl's ack timeout is 60 s of it.
        assert.ok(rt.virtualNow - before < 1e9, `${verb} waited ${(rt.virtualNow - before) / 1e9} s of virtual time`);
      }
    } finally {
      await rt.shutdown();
    }
  });
});
