// Teaching with the Mermaid output (issue 13): the vbd handshake of a clean boot-and-shutdown run
// is one readable slide, and the whole run's diagram is something Mermaid draws with its default
// configuration. Checked on what the CLI writes, read back with Mermaid's own parser.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type TraceRecord, absolutePath, isXenstore, payloadFields } from '../../../sim/trace/events.ts';
import { MERMAID_LIMITS, toMermaidDiagrams, toMermaidSequence } from '../../../sim/trace/mermaid.ts';
import { HANG_MS } from '../../helpers/wait.ts';
import { parse } from './mermaid-parse.ts';

const BIN = fileURLToPath(new URL('../../../sim/bin/xensim.mjs', import.meta.url));
const FRONT = '/local/domain/1/device/vbd/51712';
const BACK = '/local/domain/0/backend/vbd/1/51712';

async function xensim(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [BIN, ...args], { timeout: HANG_MS });
}

const isArrow = (s: string): boolean => !s.startsWith('note over ');

/**
 * The device's state writes as xenstored committed them, in commit order, leaving out the
 * toolstack's (xl creates both nodes at XenbusStateInitialising; the toolstack's connection is
 * the one of dom0 that writes into dom1's tree): "frontend 3", "backend 4"...
 */
function driverStateCommits(trace: readonly TraceRecord[]): string[] {
  const toolstack = new Set<string>();
  const writes = new Map<string, { path: string; value: string; tx: number }>();
  const inTx = new Map<string, { path: string; value: string }[]>();
  const out: string[] = [];
  const commit = (conn: string, w: { path: string; value: string }): void => {
    if (toolstack.has(conn)) return;
    if (w.path === `${FRONT}/state`) out.push(`frontend ${w.value}`);
    if (w.path === `${BACK}/state`) out.push(`backend ${w.value}`);
  };
  for (const e of trace) {
    if (!isXenstore(e)) continue;
    const conn = `${e.domid}/${e.conn}`;
    if (e.dir === 'IN' && e.type === 'WRITE') {
      const [path, value = ''] = payloadFields(e.payload);
      const abs = absolutePath(path, e.domid);
      if (e.domid === 0 && abs.startsWith('/local/domain/1/')) toolstack.add(conn);
      writes.set(`${conn}/${e.req_id}`, { path: abs, value, tx: e.tx_id });
    } else if (e.dir === 'OUT' && e.type === 'WRITE') {
      const w = writes.get(`${conn}/${e.req_id}`);
      if (w && w.tx === 0) commit(conn, w);
      else if (w) inTx.set(`${conn}/${w.tx}`, [...inTx.get(`${conn}/${w.tx}`) ?? [], w]);
    } else if (e.dir === 'OUT' && e.type === 'TRANSACTION_END') {
      for (const w of inTx.get(`${conn}/${e.tx_id}`) ?? []) commit(conn, w);
      inTx.delete(`${conn}/${e.tx_id}`);
    } else if (e.dir === 'OUT' && e.type === 'ERROR') {
      inTx.delete(`${conn}/${e.tx_id}`);
    }
  }
  return out;
}

describe('the Mermaid output as teaching material (boot-and-shutdown, no faults)', function () {
  let dir: string;
  let slide: { actors: string[]; statements: string[] };
  let slideText: string;
  let trace: TraceRecord[];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'xensim-mermaid-'));
    const out = join(dir, 'vbd.mmd');
    await xensim(['run', 'boot-and-shutdown', '--no-faults', '--mermaid', out, '--device', 'vbd/51712', '--only', 'xenstore,xenbus',
      '--trace', join(dir, 'run.jsonl'), '-q']);
    slideText = readFileSync(out, 'utf8');
    slide = await parse(slideText);
    trace = readFileSync(join(dir, 'run.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as TraceRecord)
      .filter((e) => e.kind !== 'run' && e.kind !== 'end');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('--device vbd/51712 --only xenstore,xenbus is one diagram Mermaid parses, of at most 60 arrows', () => {
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.mmd')), ['vbd.mmd'], 'one file: no parts');
    const arrows = slide.statements.filter(isArrow).length;
    assert.ok(arrows <= 60 && arrows >= 20, `${arrows} arrows`);
    assert.ok(slideText.length <= MERMAID_LIMITS.maxTextSize);
    assert.deepEqual(slide.actors, ['blkfront (dom1)', 'xenstored', 'blkback (dom0)', 'toolstack']);
  });

  it('the slide\'s XenbusState changes are in the order xenstored committed the drivers\' state writes', () => {
    const notes = slide.statements.flatMap((s) => {
      const m = /^note over blk(front|back) \(dom\d\): XenbusState\w+ \((\d)\)$/.exec(s);
      return m ? [`${m[1]}end ${m[2]}`] : [];
    });
    const commits = driverStateCommits(trace);
    assert.ok(commits.length >= 8, `InitWait to Closed on both sides: ${commits.join(', ')}`);
    assert.deepEqual(notes, commits);
    // The handshake as taught: the frontend's Initialised before the backend's Connected.
    assert.ok(notes.indexOf('frontend 3') < notes.indexOf('backend 4'), notes.join(', '));
  });

  it('the ring-ref, the event channel and both sides\' feature keys are on the slide', () => {
    // A label's lines read as one.
    const said = (who: string, re: RegExp): boolean =>
      slide.statements.some((s) => s.startsWith(`${who} ->> xenstored:`) && re.test(s.replaceAll('<br>', ' ').replace(/ +/g, ' ')));
    assert.ok(said('blkfront (dom1)', /XS_WRITE device\/vbd\/51712\/\{ring-ref=\d+, event-channel=\d+,.*feature-persistent=0/), 'blkfront publishes them');
    assert.ok(said('blkback (dom0)', /XS_READ \/local\/domain\/1\/device\/vbd\/51712\/\{.*ring-ref -> \d+, event-channel -> \d+\}/), 'blkback reads them');
    assert.ok(said('blkback (dom0)', /XS_WRITE backend\/vbd\/1\/51712\/\{feature-flush-cache=1/), 'blkback publishes its features');
  });

  it('the whole run (no filter) is within Mermaid\'s default limits and parses', async () => {
    const out = join(dir, 'all.mmd');
    const r = await xensim(['run', 'boot-and-shutdown', '--no-faults', '--mermaid', out, '-q']);
    assert.equal(r.stderr, '', 'folded, it fits in one diagram');
    const text = readFileSync(out, 'utf8');
    assert.ok(text.length <= MERMAID_LIMITS.maxTextSize, `${text.length} characters`);
    const d = await parse(text);
    const arrows = d.statements.filter(isArrow).length;
    assert.ok(arrows <= MERMAID_LIMITS.maxEdges, `${arrows} arrows`);
    for (const who of ['blkfront (dom1)', 'netfront (dom1)', 'blkback (dom0)', 'netback (dom0)', 'toolstack', 'Xen']) assert.ok(d.actors.includes(who), who);
    // A Xen lifeline: the hypercalls go to it, VIRQs come from it (the guest's death reaching dom0).
    assert.ok(d.statements.some((s) => s.startsWith('blkfront (dom1) ->> Xen: EVTCHNOP_alloc_unbound')), 'hypercall arrow to Xen');
    assert.ok(d.statements.some((s) => s.startsWith('Xen -) dom0: VIRQ_DOM_EXC')), 'VIRQ arrow from Xen');
  });

  it('past the limits (--mermaid-detail, one arrow per message) the CLI writes parts, says so, and every part is within them', async () => {
    const out = join(dir, 'detail.mmd');
    const r = await xensim(['run', 'boot-and-shutdown', '--no-faults', '--mermaid', out, '--mermaid-detail', '-q']);
    const files = [out, ...[2, 3, 4, 5, 6, 7, 8].map((n) => join(dir, `detail.${n}.mmd`)).filter(existsSync)];
    assert.ok(files.length >= 2, 'split');
    assert.match(r.stderr, new RegExp(`over Mermaid's default limits .* written as ${files.length} diagrams: ${out.replaceAll('.', '\\.')}, `));
    let total = 0;
    for (const [i, f] of files.entries()) {
      const text = readFileSync(f, 'utf8');
      assert.ok(text.length <= MERMAID_LIMITS.maxTextSize, `${f}: ${text.length} characters`);
      const d = await parse(text);
      const arrows = d.statements.filter(isArrow).length;
      assert.ok(arrows <= MERMAID_LIMITS.maxEdges, `${f}: ${arrows} arrows`);
      assert.match(d.statements[0], new RegExp(`: part ${i + 1} of ${files.length}$`));
      total += arrows;
    }
    // Nothing lost: the parts hold every arrow of the unsplit diagram.
    const whole = toMermaidSequence(trace, { fold: false });
    assert.equal(total, whole.split('\n').filter((l) => /^ {2}\S+(?:->>|-->>|-\))\S+: /.test(l)).length);
    assert.equal(toMermaidDiagrams(trace, { fold: false }).length, files.length);
  });
});
