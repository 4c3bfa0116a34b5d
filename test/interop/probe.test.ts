// The oracle's raw-wire probe (../shared/oracle/xs-probe.py) against a FRESH xensim xenstored must
// print exactly the stored transcript of the real daemon of the same profile
// (../shared/oracle/results/probe-xenstored.txt for c, probe-oxenstored.txt for ocaml).
//
// The probe's guest part talks to the fake ring files of the oracle's shim, which xensim does not
// have. So:
// * the original probe runs without RINGDIR, and its transcript must equal the stored one minus
//   the guest section (everything before it, plus the final destructive section);
// * test/interop/xs-probe-guestdir.py, a copy of the probe whose guest reaches domain 5 through
//   xensim's --guest-dir socket GUESTDIR/5, runs with the guest part, and its transcript must equal
//   the whole stored file. A third test checks that the copy sends exactly the requests of the
//   original, in the same order.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  ORACLE_DIR, PYTHON3, Proc, REPO_ROOT, assertSameText, requireOracle, requireTools, run, startTarget,
  targetIsOracle, type Daemon, type Profile, type RunResult,
} from '../helpers/daemons.ts';

const PROBE = path.join(ORACLE_DIR, 'xs-probe.py');
const VARIANT = path.join(REPO_ROOT, 'test', 'interop', 'xs-probe-guestdir.py');
const BRIDGE = path.join(REPO_ROOT, 'test', 'interop', 'ring-bridge.py');
const RESULTS: Record<Profile, string> = {
  c: path.join(ORACLE_DIR, 'results', 'probe-xenstored.txt'),
  ocaml: path.join(ORACLE_DIR, 'results', 'probe-oxenstored.txt'),
};

const GUEST_HEADER = '## unprivileged guest domain 5 over the shared ring\n';
const TAIL_HEADER = '## destructive: rm of the root node (last, oxenstored allows it)\n';

/** The stored transcript without its guest section: what the probe prints without RINGDIR. */
function withoutGuestSection(full: string): string {
  const g = full.indexOf(GUEST_HEADER);
  const t = full.indexOf(TAIL_HEADER);
  assert.ok(g > 0 && t > g, 'stored transcript lacks the guest or the destructive section header');
  return full.slice(0, g) + full.slice(t);
}

interface ProbeRun { daemon: Daemon; result: RunResult }

async function probeOnFreshDaemon(profile: Profile, variant: boolean): Promise<ProbeRun> {
  const daemon = await startTarget(profile, { guestDir: variant });
  try {
    if (!variant) return { daemon, result: await run(PYTHON3, [PROBE, daemon.socket]) };
    if (daemon.guestDir) {
      return { daemon, result: await run(PYTHON3, [VARIANT, daemon.socket, daemon.guestDir]) };
    }
    // Harness check against a real daemon (XENSIM_INTEROP_DAEMON=oracle): ring-bridge.py serves
    // GUESTDIR/5 by relaying to the shim's ring page, so the variant runs end to end there too.
    const guestDir = path.join(daemon.dir, 'guests');
    const bridge = new Proc(PYTHON3, [BRIDGE, PROBE, daemon.ringDir!, guestDir, '5']);
    try {
      await bridge.until((o) => o.includes('listening'), 'ring-bridge.py');
      return { daemon, result: await run(PYTHON3, [VARIANT, daemon.socket, guestDir]) };
    } finally {
      bridge.kill();
    }
  } catch (e) {
    await daemon.stop();
    throw e;
  }
}

function info(r: ProbeRun): string {
  return `probe exit ${r.result.code} signal ${r.result.signal}\nprobe stderr:\n${r.result.stderr}\n` +
    `daemon log (tail):\n${r.daemon.log().slice(-3000)}`;
}

for (const profile of ['c', 'ocaml'] as const) {
  describe(`interop: xs-probe transcript, xensim --profile ${profile} vs ${path.basename(RESULTS[profile])}`,
    function () {
      let expected: string;
      let basic: ProbeRun | undefined;
      let guest: ProbeRun | undefined;

      before(async () => {
        requireTools('python3');
        requireOracle();
        expected = readFileSync(RESULTS[profile], 'latin1');
        // Both runs at once, each on its own fresh daemon (each probe mostly sleeps).
        const [b, g] = await Promise.allSettled([
          probeOnFreshDaemon(profile, false), probeOnFreshDaemon(profile, true)]);
        if (b.status === 'fulfilled') basic = b.value;
        if (g.status === 'fulfilled') guest = g.value;
        if (b.status === 'rejected') throw b.reason;
        if (g.status === 'rejected') throw g.reason;
      });
      after(async () => { await Promise.all([basic?.daemon.stop(), guest?.daemon.stop()]); });

      it('original probe (no RINGDIR): stored transcript minus its guest section', async () => {
        assert.ok(basic);
        await assertSameText(basic.result.stdout, withoutGuestSection(expected),
          `${path.basename(RESULTS[profile])} without the guest section\n${info(basic)}`);
        assert.equal(basic.result.code, 0, info(basic));
      });

      it(`guest-dir variant (basic + guest parts): the whole stored transcript${
        targetIsOracle() ? ' [oracle mode: through ring-bridge.py]' : ''}`, async () => {
        assert.ok(guest);
        await assertSameText(guest.result.stdout, expected,
          `${path.basename(RESULTS[profile])}\n${info(guest)}`);
        assert.equal(guest.result.code, 0, info(guest));
      });
    });
}

describe('interop: xs-probe-guestdir.py is the original probe but for the guest transport', () => {
  /** The statements of main() and guest() that send, drain or print, comments stripped. */
  function script(file: string): string[] {
    const src = readFileSync(file, 'utf8');
    const body = src.slice(src.indexOf('\ndef main():'));
    return body.split('\n')
      .map((l) => l.replace(/\s+#.*$/, '').trimEnd())
      .filter((l) => /\.(req|drain)\(|print\(|^\s*(if|for|t\d?|g|a|b)\b.*[=:]/.test(l))
      .filter((l) => !/RingConn\(|GuestSocketConn\(/.test(l))
      .map((l) => l.replace(/\bringdir\b/g, 'DIR').replace(/\bguestdir\b/g, 'DIR'));
  }

  it('sends the same requests in the same order', () => {
    const original = script(PROBE);
    const variant = script(VARIANT);
    assert.ok(original.length > 150, `only ${original.length} request lines found in ${PROBE}`);
    assert.deepEqual(variant, original);
  });

  it('replaces only the guest connection', () => {
    const src = readFileSync(VARIANT, 'utf8');
    const guest = src.slice(src.indexOf('\ndef guest('));
    assert.match(guest, /g = GuestSocketConn\(guestdir, 5, "G"\)/);
    assert.doesNotMatch(guest, /RingConn\(/);
    // The classes the basic part uses are byte-for-byte those of the original.
    const orig = readFileSync(PROBE, 'utf8');
    const cls = (s: string, name: string) => s.slice(s.indexOf(`\nclass ${name}`),
      s.indexOf('\nclass ', s.indexOf(`\nclass ${name}`) + 1));
    assert.equal(cls(src, 'Conn:'), cls(orig, 'Conn:'));
    const head = (s: string) => s.slice(s.indexOf('\nimport '), s.indexOf('\nclass Conn:'));
    assert.equal(head(src), head(orig));
  });
});
