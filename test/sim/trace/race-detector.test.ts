// The race detector as a spec: hand-built traces for every finding kind, each with the pattern
// that must be reported and the synchronised twin that must not; then real runs of the planted
// races, whose buggy variants must show a finding on the racing node and whose fixed variants
// must show none of that kind.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../../helpers/daemons.ts';
import { RACES } from '../../../scenarios/races.ts';
import { runScenario } from '../../../sim/scenario/run.ts';
import type { TraceRecord } from '../../../sim/trace/events.ts';
import { detectRaces, type RaceFinding, type RaceKind } from '../../../sim/trace/race-detector.ts';

const FE = '/local/domain/1/device/vbd/51712';
const BE = '/local/domain/0/backend/vbd/1/51712';

/** The connections of a small host: libxl, dom0's kernel xenbus (blkback), dom1's kernel xenbus (blkfront). */
const TS = { conn: 3, domid: 0 };
const BK = { conn: 2, domid: 0 };
const FK = { conn: 5, domid: 1 };
/** dom1's user space, on its own connection (/dev/xen/xenbus). */
const FU = { conn: 7, domid: 1 };
type Party = typeof TS;

/** Builds a trace the way xenstored's daemon emits it: IN, any watch events, then the reply. */
class Trace {
  readonly events: TraceRecord[] = [];
  private readonly reqs = new Map<number, number>();
  private readonly txs = new Map<number, number>();
  private clock = 0;

  private push(p: Party, dir: 'IN' | 'OUT', type: string, req: number, tx: number, payload: string): number {
    this.clock += 1000;
    this.events.push({ kind: 'xenstore', dir, conn: p.conn, domid: p.domid, type, req_id: req, tx_id: tx, payload, t: this.clock });
    return this.events.length - 1;
  }

  /** One request and its reply (an error name makes the reply XS_ERROR); the IN's index. */
  rr(p: Party, type: string, payload: string, reply = 'OK\\0', tx = 0, error?: string): number {
    const req = (this.reqs.get(p.conn) ?? 0) + 1;
    this.reqs.set(p.conn, req);
    const i = this.push(p, 'IN', type, req, tx, payload);
    this.push(p, 'OUT', error ? 'ERROR' : type, req, tx, error ? `${error}\\0` : reply);
    return i;
  }

  read(p: Party, path: string, value: string | undefined, tx = 0): number {
    return value === undefined ? this.rr(p, 'READ', `${path}\\0`, '', tx, 'ENOENT') : this.rr(p, 'READ', `${path}\\0`, value, tx);
  }

  write(p: Party, path: string, value: string, tx = 0): number {
    return this.rr(p, 'WRITE', `${path}\\0${value}`, 'OK\\0', tx);
  }

  watch(p: Party, path: string, token: string): number {
    const i = this.rr(p, 'WATCH', `${path}\\0${token}\\0`);
    this.fire(p, path, token);
    return i;
  }

  fire(p: Party, path: string, token: string): number {
    return this.push(p, 'OUT', 'WATCH_EVENT', 0, 0, `${path}\\0${token}\\0`);
  }

  start(p: Party): number {
    const id = (this.txs.get(p.conn) ?? 0) + 1;
    this.txs.set(p.conn, id);
    this.rr(p, 'TRANSACTION_START', '\\0', `${id}\\0`);
    return id;
  }

  end(p: Party, tx: number, result: 'commit' | 'abort' | 'EAGAIN' = 'commit'): number {
    return result === 'EAGAIN' ? this.rr(p, 'TRANSACTION_END', 'T\\0', '', tx, 'EAGAIN')
      : this.rr(p, 'TRANSACTION_END', result === 'commit' ? 'T\\0' : 'F\\0', 'OK\\0', tx);
  }
}

/** The host's connections say who they are: libxl watches @releaseDomain, the kernels their bus roots. */
function host(): Trace {
  const t = new Trace();
  t.watch(TS, '@releaseDomain', 'xl1');
  t.watch(BK, '/local/domain/0/backend', 'be1');
  t.watch(FK, '/local/domain/1/device', 'fe1');
  return t;
}

/** libxl__device_generic_add: both directories in one transaction, state 1/1. */
function createVbd(t: Trace): void {
  const tx = t.start(TS);
  t.write(TS, FE, '', tx);
  t.write(TS, `${FE}/state`, '1', tx);
  t.write(TS, BE, '', tx);
  t.write(TS, `${BE}/state`, '1', tx);
  t.write(TS, `${BE}/online`, '1', tx);
  t.end(TS, tx);
}

const ofKind = (fs: readonly RaceFinding[], kind: RaceKind): RaceFinding[] => fs.filter((f) => f.kind === kind);

interface Case {
  readonly name: string;
  readonly kind: RaceKind;
  readonly build: (t: Trace) => void;
  /** The node the finding must name, or null: no finding of this kind. */
  readonly node: string | null;
  /** Words the sentence must contain. */
  readonly says?: readonly string[];
}

const CASES: readonly Case[] = [
  // read-then-write
  {
    name: 'lost update: libxl reads control/shutdown, the guest writes it, libxl writes it without re-reading',
    kind: 'read-then-write', node: '/local/domain/1/control/shutdown', says: ['toolstack read', 'dom1 xenbus wrote', 'lost update'],
    build: (t) => {
      t.write(TS, '/local/domain/1/control/shutdown', 'suspend');
      t.read(TS, '/local/domain/1/control/shutdown', 'suspend');
      t.write(FK, 'control/shutdown', '');
      t.write(TS, '/local/domain/1/control/shutdown', '');
    },
  },
  {
    name: 'not a lost update: the write is in a transaction that read the node and committed',
    kind: 'read-then-write', node: null,
    build: (t) => {
      t.write(TS, '/local/domain/1/control/shutdown', 'suspend');
      t.read(TS, '/local/domain/1/control/shutdown', 'suspend');
      t.write(FK, 'control/shutdown', '');
      const tx = t.start(TS);
      t.read(TS, '/local/domain/1/control/shutdown', '', tx);
      t.write(TS, '/local/domain/1/control/shutdown', '', tx);
      t.end(TS, tx);
    },
  },
  {
    name: 'not a lost update: the writer re-read the node after the other party wrote it',
    kind: 'read-then-write', node: null,
    build: (t) => {
      t.read(TS, '/local/domain/1/control/shutdown', 'suspend');
      t.write(FK, 'control/shutdown', '');
      t.read(TS, '/local/domain/1/control/shutdown', '');
      t.write(TS, '/local/domain/1/control/shutdown', 'poweroff');
    },
  },
  {
    name: 'a transaction-free read-modify-write while another party\'s transaction writing the node is open',
    kind: 'read-then-write', node: '/local/domain/1/control/shutdown', says: ['outside a transaction', 'transaction 1', 'EAGAIN'],
    build: (t) => {
      t.write(TS, '/local/domain/1/control/shutdown', 'suspend');
      const tx = t.start(FK);
      t.read(FK, 'control/shutdown', 'suspend', tx);
      t.read(TS, '/local/domain/1/control/shutdown', 'suspend');
      t.write(TS, '/local/domain/1/control/shutdown', '');
      t.write(FK, 'control/shutdown', '', tx);
      t.end(FK, tx, 'EAGAIN');
    },
  },
  {
    name: 'not racing: both parties update the node in transactions',
    kind: 'read-then-write', node: null,
    build: (t) => {
      t.write(TS, '/local/domain/1/control/shutdown', 'suspend');
      const a = t.start(FK);
      t.read(FK, 'control/shutdown', 'suspend', a);
      const b = t.start(TS);
      t.read(TS, '/local/domain/1/control/shutdown', 'suspend', b);
      t.write(TS, '/local/domain/1/control/shutdown', '', b);
      t.end(TS, b);
      t.write(FK, 'control/shutdown', '', a);
      t.end(FK, a, 'EAGAIN');
    },
  },
  // watch-then-read
  {
    name: 'stale window: blkback\'s otherend watch fires for Initialised, the frontend moves on to Closed before blkback reads',
    kind: 'watch-then-read', node: `${FE}/state`, says: ['blkback', 'never saw "3"', 'dom1 blkfront wrote "6"'],
    build: (t) => {
      createVbd(t);
      t.watch(BK, `${FE}/state`, 'be2');
      t.read(BK, `${FE}/state`, '1');
      t.write(FK, `${FE}/state`, '3');
      t.fire(BK, `${FE}/state`, 'be2');
      t.write(FK, `${FE}/state`, '6');
      t.fire(BK, `${FE}/state`, 'be2');
      t.read(BK, `${FE}/state`, '6');
    },
  },
  {
    name: 'no window: blkback reads each state before the next one is written',
    kind: 'watch-then-read', node: null,
    build: (t) => {
      createVbd(t);
      t.watch(BK, `${FE}/state`, 'be2');
      t.read(BK, `${FE}/state`, '1');
      t.write(FK, `${FE}/state`, '3');
      t.fire(BK, `${FE}/state`, 'be2');
      t.read(BK, `${FE}/state`, '3');
      t.write(FK, `${FE}/state`, '6');
      t.fire(BK, `${FE}/state`, 'be2');
      t.read(BK, `${FE}/state`, '6');
    },
  },
  {
    name: 'dropped event: blkfront arms its otherend watch after the backend reached InitWait and never reads the state',
    kind: 'watch-then-read', node: `${BE}/state`, says: ['dom1 blkfront', 'never read', 'dropped'],
    build: (t) => {
      createVbd(t);
      const tx = t.start(BK);
      t.read(BK, `${BE}/state`, '1', tx);
      t.write(BK, `${BE}/state`, '2', tx);
      t.end(BK, tx);
      t.watch(FK, `${BE}/state`, 'fe3');
    },
  },
  {
    name: 'no dropped event: blkfront reads the state its watch fired for',
    kind: 'watch-then-read', node: null,
    build: (t) => {
      createVbd(t);
      t.write(BK, `${BE}/state`, '2');
      t.watch(FK, `${BE}/state`, 'fe3');
      t.read(FK, `${BE}/state`, '2');
    },
  },
  {
    name: 'a bus watch (backend/) firing for keys its handler never reads is no window',
    kind: 'watch-then-read', node: null,
    build: (t) => {
      createVbd(t);
      t.write(TS, `${BE}/hotplug-status`, '');
      t.fire(BK, `${BE}/hotplug-status`, 'be1');
      t.write(TS, `${BE}/hotplug-status`, 'connected');
      t.fire(BK, `${BE}/hotplug-status`, 'be1');
      t.read(BK, `${BE}/hotplug-status`, 'connected');
    },
  },
  // read-without-watch
  {
    name: 'partial publish: blkback reads ring-ref before blkfront wrote it, acts, and never looks again',
    kind: 'read-without-watch', node: `${FE}/ring-ref`, says: ['blkback read', '(absent)', 'dom1 blkfront wrote "8"'],
    build: (t) => {
      createVbd(t);
      t.write(FK, `${FE}/state`, '3');
      t.read(BK, `${FE}/ring-ref`, undefined);
      t.write(BK, `${BE}/state`, '5');
      t.write(FK, `${FE}/ring-ref`, '8');
    },
  },
  {
    name: 'not unwatched: the reader watches the node it read',
    kind: 'read-without-watch', node: null,
    build: (t) => {
      createVbd(t);
      t.watch(BK, `${FE}/ring-ref`, 'be9');
      t.read(BK, `${FE}/ring-ref`, undefined);
      t.write(BK, `${BE}/state`, '5');
      t.write(FK, `${FE}/ring-ref`, '8');
      t.fire(BK, `${FE}/ring-ref`, 'be9');
    },
  },
  {
    name: 'not unwatched: the reader read again after the write',
    kind: 'read-without-watch', node: null,
    build: (t) => {
      createVbd(t);
      t.read(BK, `${FE}/ring-ref`, undefined);
      t.write(BK, `${BE}/state`, '2');
      t.write(FK, `${FE}/ring-ref`, '8');
      t.read(BK, `${FE}/ring-ref`, '8');
    },
  },
  {
    name: 'a look that leads to nothing (a status query) is no race',
    kind: 'read-without-watch', node: null,
    build: (t) => {
      createVbd(t);
      t.read(TS, `${FE}/state`, '1');
      t.write(FK, `${FE}/state`, '4');
    },
  },
  // foreign-write
  {
    name: 'blkback writes the frontend\'s state',
    kind: 'foreign-write', node: `${FE}/state`, says: ['blkback wrote', 'belongs to dom1 blkfront'],
    build: (t) => {
      createVbd(t);
      t.write(BK, `${FE}/state`, '4');
    },
  },
  {
    name: 'the toolstack writes the guest\'s state outside the transaction that created the device',
    kind: 'foreign-write', node: `${FE}/state`, says: ['toolstack wrote', 'belongs to dom1 blkfront'],
    build: (t) => {
      createVbd(t);
      t.write(TS, `${FE}/state`, '5');
    },
  },
  {
    name: 'dom1 writes into the backend\'s directory',
    kind: 'foreign-write', node: `${BE}/state`, says: ['dom1', 'belongs to blkback'],
    build: (t) => {
      createVbd(t);
      t.write(FK, `${BE}/state`, '4');
    },
  },
  {
    name: 'owners and libxl\'s own keys are fine: creation, online=0 and state=Closing at teardown, hotplug-status, each end its own state',
    kind: 'foreign-write', node: null,
    build: (t) => {
      createVbd(t);
      t.write(TS, `${BE}/hotplug-status`, 'connected');
      t.write(BK, `${BE}/state`, '2');
      t.write(FK, `${FE}/state`, '3');
      const tx = t.start(TS);
      t.write(TS, `${BE}/online`, '0', tx);
      t.write(TS, `${BE}/state`, '5', tx);
      t.end(TS, tx);
    },
  },
  {
    name: 'a guest user process writes its own frontend\'s state (the driver owns it)',
    kind: 'foreign-write', node: `${FE}/state`, says: ['dom1 user space (conn 7)', 'belongs to dom1 blkfront'],
    build: (t) => {
      createVbd(t);
      t.write(FU, `${FE}/state`, '6');
    },
  },
  // retry-dropped-write
  {
    name: 'a state write in a transaction that failed with EAGAIN and was never redone',
    kind: 'retry-dropped-write', node: `${BE}/state`, says: ['blkback wrote', 'EAGAIN', 'never wrote it again'],
    build: (t) => {
      createVbd(t);
      const tx = t.start(BK);
      t.read(BK, `${BE}/state`, '1', tx);
      t.write(BK, `${BE}/state`, '2', tx);
      t.end(BK, tx, 'EAGAIN');
    },
  },
  {
    name: 'a failed transaction whose retry writes the state again',
    kind: 'retry-dropped-write', node: null,
    build: (t) => {
      createVbd(t);
      const a = t.start(BK);
      t.write(BK, `${BE}/state`, '2', a);
      t.end(BK, a, 'EAGAIN');
      const b = t.start(BK);
      t.write(BK, `${BE}/state`, '2', b);
      t.end(BK, b);
    },
  },
];

describe('race detector: synthetic traces', () => {
  for (const c of CASES) {
    it(`${c.kind}: ${c.name}`, () => {
      const t = host();
      c.build(t);
      const found = ofKind(detectRaces(t.events), c.kind);
      if (c.node === null) {
        assert.deepEqual(found.map((f) => f.message), []);
        return;
      }
      assert.equal(found.length, 1, found.map((f) => f.message).join('\n') || 'no finding');
      const [f] = found;
      assert.equal(f.path, c.node);
      for (const w of c.says ?? []) assert.ok(f.message.includes(w), `"${w}" not in: ${f.message}`);
      // Every event index the finding cites is in the trace and named in its sentence.
      for (const i of f.events) {
        assert.ok(i >= 0 && i < t.events.length);
      }
      assert.match(f.message, /#\d+ \(\d+\.\d{3} ms\)/);
    });
  }

  it('takes any events: unknown kinds, replies without requests and free-running traces without times', () => {
    const t = host();
    const events: TraceRecord[] = [
      { kind: 'evtchn', op: 'send', port: 3 },
      { kind: 'xenstore', dir: 'OUT', conn: 9, domid: -1, type: 'READ', req_id: 77, tx_id: 0, payload: 'x' },
      ...t.events.map(({ t: _t, ...rest }) => rest as TraceRecord),
    ];
    assert.deepEqual(detectRaces(events), []);
    assert.deepEqual(detectRaces([]), []);
  });
});

/** The planted races: the node each buggy variant races on, and the kind of finding that points at it. */
const PLANTED: readonly { race: string; variant: string; kind: RaceKind; node: RegExp; fixedClean: boolean }[] = [
  { race: 'race-r01-watch-first-event-lost', variant: 'buggy', kind: 'watch-then-read', node: /\/backend\/vbd\/\d+\/51712\/state$/, fixedClean: true },
  { race: 'race-r04-cached-state-in-aborted-txn', variant: 'buggy', kind: 'retry-dropped-write', node: /\/state$/, fixedClean: true },
  { race: 'race-r18-suspend-ack-vs-timeout', variant: 'buggy', kind: 'read-then-write', node: /^\/local\/domain\/\d+\/control\/shutdown$/, fixedClean: true },
  { race: 'race-r20-partial-publish', variant: 'buggy', kind: 'read-without-watch', node: /\/device\/vbd\/51712\/(ring-ref|event-channel|protocol)$/, fixedClean: true },
  { race: 'race-r03-netback-hotplug-gate', variant: 'no-empty-hotplug-status', kind: 'read-without-watch', node: /\/backend\/vif\/\d+\/0\/hotplug-status$/, fixedClean: true },
];

describe('race detector: the planted races', function () {
  for (const p of PLANTED) {
    const def = RACES.find((d) => d.name === p.race);
    it(`${p.race} [${p.variant}]: a ${p.kind} finding names the racing node on one of seeds 1-8, with or without faults`, async () => {
      assert.ok(def, `no scenario ${p.race}`);
      const tried: string[] = [];
      for (const [seed, spec] of [1, 2, 3, 4, 5, 6, 7, 8].flatMap((n) => [[n, 'none'], [n, 'default']] as const)) {
        const r = await runScenario(def, { seed, variant: p.variant, faults: { spec } });
        const hits = ofKind(detectRaces(r.trace), p.kind).filter((f) => p.node.test(f.path));
        if (hits.length > 0) return;
        tried.push(`seed ${seed} faults ${spec}: ${r.result}`);
      }
      assert.fail(`no ${p.kind} finding on ${p.node} (${tried.join(', ')})`);
    });
    if (p.fixedClean) {
      it(`${p.race} [fixed]: no ${p.kind} finding on seeds 1-2`, async () => {
        for (let seed = 1; seed <= 2; seed++) {
          const r = await runScenario(def!, { seed, variant: 'fixed' });
          assert.deepEqual(ofKind(detectRaces(r.trace), p.kind).map((f) => `seed ${seed}: ${f.message}`), []);
        }
      });
    }
  }
});

describe('race detector: the command line', function () {
  const xensim = (...args: string[]): { status: number | null; stdout: string; stderr: string } =>
    spawnSync(process.execPath, ['--import', './scripts/tsx-preload.mjs', 'sim/bin/xensim.mjs', ...args], { cwd: REPO_ROOT, encoding: 'utf8' });

  it('xensim detect reads a saved trace (header and footer included) and prints one line per finding; --json and --kind too', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'xensim-detect-'));
    try {
      const t = host();
      createVbd(t);
      t.write(BK, `${FE}/state`, '4');
      const file = path.join(dir, 'trace.jsonl');
      const lines = [{ kind: 'run', scenario: 'x', seed: 1, variant: 'fixed', faults: {} }, ...t.events, { kind: 'end', result: 'SUCCESS', hash: '', events: t.events.length }];
      writeFileSync(file, lines.map((l) => JSON.stringify(l)).join('\n'));
      const text = xensim('detect', file);
      assert.equal(text.status, 0, text.stderr);
      assert.match(text.stdout, /^race detector: 1 finding\nrace: foreign-write: blkback wrote \/local\/domain\/1\/device\/vbd\/51712\/state="4" at #\d+/);
      const json = xensim('detect', '--json', file);
      const found = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as RaceFinding);
      assert.deepEqual(found.map((f) => [f.kind, f.path]), [['foreign-write', `${FE}/state`]]);
      assert.equal(xensim('detect', '--kind', 'read-then-write', file).stdout, 'race detector: 0 findings\n');
      assert.notEqual(xensim('detect', '--kind', 'nonsense', file).status, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('xensim run --detect-races prints the findings after the result line', () => {
    const r = xensim('run', 'race-r20-partial-publish', '--variant', 'buggy', '--seed', '1', '-q', '--detect-races');
    const out = r.stdout.split('\n');
    const result = out.findIndex((l) => /^(SUCCESS|FAILURE|ERROR|CRASH|SKIP): race-r20-partial-publish/.test(l));
    const header = out.findIndex((l) => /^race detector: \d+ findings?$/.test(l));
    assert.ok(result >= 0 && header > result, r.stdout);
  });
});
