// Debian's xenstore-utils (libxenstore clients) against xensim xenstored, differentially: the same
// command sequence runs against xensim and against the real daemon of the same profile (C
// xenstored for `c`, oxenstored for `ocaml`), and the transcripts (command, exit code, stdout,
// stderr) must be equal. A few absolute checks guard against both sides failing alike.
import assert from 'node:assert/strict';
import {
  TOOLS, XENSTORE_UTILS, Proc, assertSameText, requireOracle, requireTools, run, startOracle,
  startTarget, stopAll, type Daemon, type Profile, type Tool,
} from '../helpers/daemons.ts';

type Step = [Tool, ...string[]];

/** Runs the steps one after another; returns the transcript. */
async function transcript(d: Daemon, steps: Step[]): Promise<string> {
  let out = '';
  for (const [tool, ...args] of steps) {
    const r = await run(TOOLS[tool].file, args, { env: d.env });
    out += `$ ${tool} ${args.map((a) => (/^[\w/@.=-]+$/.test(a) ? a : JSON.stringify(a))).join(' ')}\n`;
    out += `[exit ${r.code}${r.signal ? ` signal ${r.signal}` : ''}]\n${r.stdout}`;
    if (r.stderr) out += `stderr: ${r.stderr}`;
  }
  return out;
}

/** Starts `xenstore-watch -n count path`, waits for its initial event, runs the steps, and
 * returns the watcher's output followed by the steps' transcript. */
async function watchTranscript(d: Daemon, count: number, wpath: string, initial: string,
  steps: Step[]): Promise<string> {
  const w = new Proc(TOOLS['xenstore-watch'].file, ['-n', String(count), wpath], { env: d.env });
  try {
    await w.until((s) => s.split('\n').includes(initial), `the initial watch event ${initial} from ${d.kind}`);
    const t = await transcript(d, steps);
    const r = await w.exit();
    return `$ xenstore-watch -n ${count} ${wpath}\n[exit ${r.code}${r.signal ? ` signal ${r.signal}` : ''}]\n` +
      `${r.stdout}${r.stderr ? `stderr: ${r.stderr}` : ''}--- while watching:\n${t}`;
  } finally {
    w.kill();
  }
}

const LONG = 'L'.repeat(150);

const GROUPS: { name: string; steps: Step[]; check?: (t: string) => void }[] = [
  {
    name: 'write and read',
    steps: [
      ['xenstore-write', '/t/a', '1', '/t/b', 'two words', '/t/c/d', '3'],
      ['xenstore-write', '/t/e', ''],
      ['xenstore-write', '/t/long', LONG],
      ['xenstore-write', '/t/esc', 'tab\\there'],
      ['xenstore-write', 'rel/x', 'relval'],
      ['xenstore-write', '/t/odd'],
      ['xenstore-read', '/t/a', '/t/b'],
      ['xenstore-read', '-p', '/t/a', '/t/c/d'],
      ['xenstore-read', '/t/c', '/t/e'],
      ['xenstore-read', '/t/long', '/t/esc'],
      ['xenstore-read', '/local/domain/0/rel/x'],
      ['xenstore-read', 'rel/x'],
      ['xenstore-read', '/t/none'],
      ['xenstore-read', '/t/none/deeper'],
      ['xenstore-read', '/t/a', '/t/none'],
      ['xenstore-read', '/t/'],
      ['xenstore-read', '/t//a'],
      ['xenstore-write', '/t/a', '1b'],
      ['xenstore-read', '/t/a'],
    ],
    check: (t) => {
      assert.match(t, /\$ xenstore-read \/t\/a \/t\/b\n\[exit 0\]\n1\ntwo words\n/);
      assert.match(t, /\$ xenstore-read rel\/x\n\[exit 0\]\nrelval\n/);
    },
  },
  {
    name: 'list and ls (-f, -p)',
    steps: [
      ['xenstore-list', '/t'],
      ['xenstore-list', '-p', '/t'],
      ['xenstore-list', '/t/c', '/t/a'],
      ['xenstore-list', '/t/none'],
      ['xenstore-list', 'rel'],
      ['xenstore-list', '/'],
      ['xenstore-ls', '/t'],
      ['xenstore-ls', '-f', '/t'],
      ['xenstore-ls', '-p', '/t'],
      ['xenstore-ls', '-f', '-p', '/t'],
      ['xenstore-ls', '-f', '/t/c/d'],
      ['xenstore-ls', '-f', '/t/none'],
      ['xenstore-ls', '-f', '/local'],
      ['xenstore-ls', '-f'],
      ['xenstore-ls', '-fp', '/'],
    ],
    check: (t) => assert.match(t, /\$ xenstore-ls -f \/t\n\[exit 0\]\n\/t\/a = "1b"\n/),
  },
  {
    name: 'exists',
    steps: [
      ['xenstore-exists', '/t/a'],
      ['xenstore-exists', '/t/none'],
      ['xenstore-exists', '/t/c/d', '/t/a'],
      ['xenstore-exists', '/t/a', '/t/none'],
      ['xenstore-exists', 'rel'],
      ['xenstore-exists', '/'],
      ['xenstore-exists', '/t/'],
    ],
    check: (t) => assert.match(t, /\$ xenstore-exists \/t\/none\n\[exit 1\]\n/),
  },
  {
    name: 'chmod',
    steps: [
      ['xenstore-chmod', '/t/a', 'n1', 'r2', 'w3', 'b4'],
      ['xenstore-ls', '-fp', '/t'],
      ['xenstore-chmod', '/t/b', 'r0'],
      ['xenstore-chmod', '-r', '/t/c', 'n5', 'r6'],
      ['xenstore-ls', '-fp', '/t'],
      ['xenstore-chmod', '-u', '/t/c/d', 'b7'],
      ['xenstore-ls', '-fp', '/t'],
      ['xenstore-chmod', '/t/none', 'n0'],
      ['xenstore-chmod', '/t/a', 'x1'],
      ['xenstore-chmod', '/t/a', 'n0'],
      ['xenstore-ls', '-p', '/t'],
    ],
    check: (t) => assert.match(t, /\/t\/a = "1b" +\(n1,r2,w3,b4\)/),
  },
  {
    name: 'rm',
    steps: [
      ['xenstore-rm', '/t/a'],
      ['xenstore-rm', '/t/a'],
      ['xenstore-rm', '/t/x/y'],
      ['xenstore-rm', '-t', '/t/c/d'],
      ['xenstore-ls', '-f', '/t'],
      ['xenstore-rm', '/t/b', '/t/e'],
      ['xenstore-rm', 'rel'],
      ['xenstore-list', '/t'],
      ['xenstore-rm', '/t'],
      ['xenstore-exists', '/t'],
      ['xenstore-ls', '-fp', '/'],
    ],
    check: (t) => assert.match(t, /\$ xenstore-exists \/t\n\[exit 1\]\n/),
  },
];

/** oxenstored stores its executable's path in /tool/xenstored (C xenstored stores ""): with the
 * ocaml profile that value differs by construction, so it is masked on both sides. */
function normalise(t: string, profile: Profile): string {
  return profile === 'ocaml' ? t.replace(/^(\/tool\/xenstored = )"[^"\n]*"/gm, '$1"<executable>"') : t;
}

for (const profile of ['c', 'ocaml'] as const) {
  const refName = profile === 'c' ? 'C xenstored' : 'oxenstored';
  describe(`interop: xenstore-utils, xensim --profile ${profile} vs ${refName}`, function () {
    let d: Daemon;
    let ref: Daemon;

    before(async () => {
      requireTools(...XENSTORE_UTILS);
      requireOracle();
      [d, ref] = await Promise.all([startTarget(profile), startOracle(profile)]);
    });
    after(async () => { await stopAll(d, ref); });

    for (const g of GROUPS) {
      it(`${g.name}: same transcript`, async () => {
        const [mine, theirs] = (await Promise.all([transcript(d, g.steps), transcript(ref, g.steps)]))
          .map((t) => normalise(t, profile));
        await assertSameText(mine, theirs, `${refName}: ${g.name}`);
        g.check?.(mine);
      });
    }

    it('xenstore-watch -n sees the initial event and the subtree events', async () => {
      const steps: Step[] = [
        ['xenstore-write', '/w/x', '1'],
        ['xenstore-write', '/w', 'top'],
        ['xenstore-write', '/other', 'no event'],
        ['xenstore-chmod', '/w/x', 'n0', 'r1'],
        ['xenstore-rm', '/w'],
      ];
      const [mine, theirs] = await Promise.all([
        watchTranscript(d, 5, '/w', '/w', steps), watchTranscript(ref, 5, '/w', '/w', steps)]);
      await assertSameText(mine, theirs, `${refName}: watch /w`);
      assert.match(mine, /^\$ xenstore-watch -n 5 \/w\n\[exit 0\]\n\/w\n\/w\/x\n\/w\n\/w\/x\n\/w\n/);
    });

    it('xenstore-watch on a relative path reports relative paths', async () => {
      const steps: Step[] = [
        ['xenstore-write', 'wrel/a', '1'],
        ['xenstore-rm', 'wrel'],
      ];
      const [mine, theirs] = await Promise.all([
        watchTranscript(d, 3, 'wrel', 'wrel', steps), watchTranscript(ref, 3, 'wrel', 'wrel', steps)]);
      await assertSameText(mine, theirs, `${refName}: watch wrel`);
      assert.match(mine, /^\$ xenstore-watch -n 3 wrel\n\[exit 0\]\nwrel\nwrel\/a\nwrel\n/);
    });
  });
}
