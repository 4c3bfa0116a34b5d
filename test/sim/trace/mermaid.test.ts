// The Mermaid sequence diagram of a handshake, checked with Mermaid's own parser: the text must be
// a diagram Mermaid accepts, and what Mermaid reads from it (participants, arrows, notes, texts)
// must be the handshake.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { type TraceRecord, oneLine } from '../../../sim/trace/events.ts';
import { type MermaidOptions, escapeMermaidText, toMermaidDiagrams, toMermaidSequence } from '../../../sim/trace/mermaid.ts';
import { BACK, handshake, xs } from './fixture.ts';
import { parse } from './mermaid-parse.ts';
import { foldItems, homeRelative, wrapLabel } from '../../../sim/trace/mermaid-fold.ts';

/** The diagram with one arrow per xenstore message. */
const detail = (events: Iterable<TraceRecord>, opts: MermaidOptions = {}): string => toMermaidSequence(events, { ...opts, fold: false });

describe('mermaid sequence diagram, one arrow per message (--mermaid-detail)', () => {
  it('is valid Mermaid for the whole handshake, every device, every filter, and an empty trace', async () => {
    for (const filter of [undefined, 'vbd/51712', 'vif/0', '/local/domain/1', BACK, () => true]) {
      await parse(detail(handshake(), { filter }));
    }
    const empty = await parse(detail([]));
    assert.deepEqual(empty, { actors: [], statements: [] });
    // Only a step: it still needs someone to stand over.
    assert.deepEqual(await parse(detail([{ kind: 'step', name: 'boot' }])), { actors: ['scenario'], statements: ['note over scenario: step boot'] });
  });

  it('participants are roles: the frontend driver, xenstored in the middle, the backend driver, the toolstack, Xen last', async () => {
    const d = await parse(detail(handshake(), { filter: 'vbd/51712' }));
    assert.deepEqual(d.actors, ['blkfront (dom1)', 'xenstored', 'blkback (dom0)', 'toolstack', 'Xen']);
  });

  it('requests are arrows to xenstored; replies come back dashed to whoever asked', async () => {
    const d = await parse(detail(handshake(), { filter: 'vbd/51712' }));
    const i = d.statements.indexOf('blkback (dom0) ->> xenstored: XS_READ /local/domain/1/device/vbd/51712/ring-ref');
    assert.ok(i >= 0, d.statements.join('\n'));
    assert.equal(d.statements[i + 1], 'xenstored -->> blkback (dom0): 8');
    assert.ok(d.statements.includes('blkfront (dom1) ->> xenstored: XS_WRITE device/vbd/51712/state=4'));
  });

  it('the toolstack is the connection that writes into another domain; its transaction is drawn whole', async () => {
    const d = await parse(detail(handshake(), { filter: 'vbd/51712' }));
    const tool = d.statements.filter((s) => s.startsWith('toolstack ') || s.includes('-->> toolstack:'));
    assert.deepEqual(tool.slice(0, 4), [
      'toolstack ->> xenstored: XS_TRANSACTION_START',
      'xenstored -->> toolstack: tx=7',
      'toolstack ->> xenstored: XS_WRITE /local/domain/1/device/vbd/51712/backend-id=0 [tx 7]',
      'xenstored -->> toolstack: OK',
    ]);
    assert.ok(tool.includes('toolstack ->> xenstored: XS_TRANSACTION_END commit [tx 7]'));
  });

  it('watch events go dashed to the driver whose device fired them', async () => {
    const d = await parse(detail(handshake(), { filter: 'vbd/51712' }));
    assert.ok(d.statements.includes(`xenstored -->> blkback (dom0): XS_WATCH_EVENT ${BACK}`));
    assert.ok(d.statements.includes('xenstored -->> blkfront (dom1): XS_WATCH_EVENT device/vbd/51712'));
  });

  it('XenbusState changes are notes over their driver, in handshake order', async () => {
    const d = await parse(detail(handshake(), { filter: 'vbd/51712' }));
    const states = d.statements.filter((s) => s.includes(': XenbusState'));
    assert.deepEqual(states, [
      'note over blkback (dom0): XenbusStateInitWait',
      'note over blkfront (dom1): XenbusStateInitialised',
      'note over blkback (dom0): XenbusStateConnected',
      'note over blkfront (dom1): XenbusStateConnected',
    ]);
  });

  it('the device event channel: allocated by the frontend, bound by the backend (hypercalls to the Xen lifeline), a notification as an async arrow', async () => {
    const d = await parse(detail(handshake(), { filter: 'vbd/51712' }));
    assert.ok(d.statements.includes('blkfront (dom1) ->> Xen: EVTCHNOP_alloc_unbound port 5'), d.statements.join('\n'));
    assert.ok(d.statements.includes('blkback (dom0) ->> Xen: EVTCHNOP_bind_interdomain port 7 to dom1 port 5'));
    assert.ok(d.statements.includes('blkback (dom0) ->> Xen: map grant ref 8 of dom1'));
    assert.equal(d.statements[d.statements.length - 1], 'blkfront (dom1) -) blkback (dom0): notify (port 5)');
  });

  it('a device filter leaves out other devices, the guest\'s own keys, its xenstore channel and raw hypercalls', async () => {
    const text = detail(handshake(), { filter: 'vbd/51712' });
    for (const absent of ['vif/0', 'data/xenbus', 'port 1', 'hypercall', 'set_pending', 'console', 'XS_WATCH ']) {
      assert.ok(!text.includes(absent), `${absent} in\n${text}`);
    }
    // The step that frames the scenario stays, across all participants.
    const d = await parse(text);
    assert.equal(d.statements[0], 'note over blkfront (dom1),Xen: step attach vbd/51712 to dom1');
  });

  it('a device directory filter is the same device; a path prefix keeps what is under it', async () => {
    assert.equal(
      detail(handshake(), { filter: '/local/domain/1/device/vbd/51712' }),
      detail(handshake(), { filter: 'vbd/51712' }),
    );
    const d = await parse(detail(handshake(), { filter: '/local/domain/1/data' }));
    assert.deepEqual(d.statements, [
      'note over dom1,xenstored: step attach vbd/51712 to dom1',
      'dom1 ->> xenstored: XS_WRITE data/xenbus=connected',
      'xenstored -->> dom1: OK',
    ]);
  });

  it('a predicate chooses any events; kinds the diagram does not know become notes', async () => {
    const d = await parse(detail(handshake(), { filter: (e) => e.kind === 'console' || e.kind === 'hypercall' }));
    assert.deepEqual(d.statements, [
      'note over dom1: event_channel_op',
      'note over dom1: event_channel_op',
      'note over dom1: console blkfront: xvda: 8 sectors; #1 <ok>',
    ]);
  });

  it('participants given are declared first, in the order given; roleOf renames an actor', async () => {
    const d = await parse(detail(handshake(), {
      filter: 'vbd/51712',
      participants: ['toolstack', 'blkback (dom0)'],
      roleOf: (e) => (e.kind === 'xenstore' && e.conn === 1 ? 'xl' : undefined),
    }));
    assert.deepEqual(d.actors, ['toolstack', 'blkback (dom0)', 'blkfront (dom1)', 'xenstored', 'xl', 'Xen']);
    assert.ok(d.statements.includes('xl ->> xenstored: XS_TRANSACTION_START'));
  });

  it('characters Mermaid cannot take (; # newline NUL < > &) survive as the same text', async () => {
    const nasty = 'a;b#c\nd\u0000e<f>&g %% wrap: end';
    const events: TraceRecord[] = [xs('IN', 2, 1, 'WRITE', 1, 0, `device/vbd/51712/x\\0${nasty}`), xs('OUT', 2, 1, 'ERROR', 1, 0, 'EINVAL#;\\0')];
    const d = await parse(detail(events));
    assert.deepEqual(d.statements, [
      'blkfront (dom1) ->> xenstored: XS_WRITE device/vbd/51712/x=a;b#c\\nd\\0e<f>&g %% wrap: end',
      'xenstored -->> blkfront (dom1): XS_ERROR EINVAL#;',
    ]);
  });

  it('any payload text parses and reads back as written (property)', async function () {
    // No backslashes: the trace spells NUL as \0, so a value ending in those two characters would
    // read as one ending in NUL - the trace's ambiguity, not the diagram's.
    // Characters Mermaid's lexer or renderer treat specially, mixed with any others.
    const unit = fc.oneof(
      fc.constantFrom(';', '#', '\n', '\r', '\0', '<', '>', '&', '%', ':', ',', '@', ' ', '-', ')', '{', '}', '"', 'w', 'r', 'a', 'p', '\u2028'),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
    );
    const value = fc.string({ unit, maxLength: 40 }).filter((v) => !v.includes('\\'));
    await fc.assert(fc.asyncProperty(value, fc.string({ unit, maxLength: 20 }), async (value, label) => {
      const events: TraceRecord[] = [
        xs('IN', 9, 3, 'WRITE', 1, 0, `data/k\\0${value}`),
        { kind: 'toolstack', domid: 0, action: label, t: 1 },
      ];
      const name = label.trim() === '' ? 'p' : label;
      const d = await parse(detail(events, { participants: [name] }));
      assert.equal(d.actors[0], oneLine(name).trim());
      assert.equal(d.statements.length, 2);
      // Mermaid trims message texts: compare trimmed.
      assert.equal(d.statements[0], `dom3 ->> xenstored: ${`XS_WRITE data/k=${oneLine(value)}`.trim()}`);
    }), { numRuns: 200, seed: 7 });
  });

  it('escapeMermaidText leaves plain text alone and spells out the rest', () => {
    assert.equal(escapeMermaidText('XS_WRITE device/vbd/51712/state=4'), 'XS_WRITE device/vbd/51712/state=4');
    assert.equal(escapeMermaidText('a;b#c'), 'a#59;b#35;c');
    assert.equal(escapeMermaidText('x\ny\u0000'), 'x\\ny\\0');
    assert.equal(escapeMermaidText('wrap: x'), 'wrap#58; x');
  });
});


describe('mermaid sequence diagram, folded (the default): a handshake on one slide', () => {
  /** Arrows and notes Mermaid reads, a label's lines joined by ' | '. */
  /** dom0 reading a frontend's keys is its toolstack unless the trace says it is the backend: here it is. */
  const blkbackConn3 = (e: TraceRecord): string | undefined => (e.kind === 'xenstore' && e.conn === 3 ? 'blkback (dom0)' : undefined);
  const folded = async (events: Iterable<TraceRecord>, opts: MermaidOptions = {}): Promise<string[]> =>
    (await parse(toMermaidSequence(events, opts))).statements.map((s) => s.replaceAll('<br>', ' | '));

  it('a transaction is one arrow at its commit: start, what it wrote, end and its result', async () => {
    const d = await folded(handshake(), { filter: 'vbd/51712' });
    assert.ok(d.includes('blkfront (dom1) ->> xenstored: XS_TRANSACTION_START -> 3; '
      + 'XS_WRITE device/vbd/51712/{ring-ref=8, event-channel=5, state=3}; | XS_TRANSACTION_END T -> OK'), d.join('\n'));
    // The toolstack's: both directories, paths in dom0's own tree relative to its home as Linux writes them.
    assert.ok(d.includes('toolstack ->> xenstored: XS_TRANSACTION_START -> 7; XS_WRITE /local/domain/1/device/vbd/51712/{backend-id=0, state=1}; | '
      + 'XS_WRITE backend/vbd/1/51712/{frontend-id=1, state=1}; XS_TRANSACTION_END T -> OK'), d.join('\n'));
  });

  it('a reply is said in its request\'s arrow, and a party\'s consecutive reads are one arrow', async () => {
    const d = await folded(handshake(), { filter: 'vbd/51712' });
    assert.ok(d.includes('blkback (dom0) ->> xenstored: XS_READ /local/domain/1/device/vbd/51712/{ring-ref -> 8, event-channel -> 5}'), d.join('\n'));
    assert.ok(!d.some((s) => s.startsWith('xenstored -->>') && !s.includes('XS_WATCH_EVENT')), 'no reply arrow');
  });

  it('a XenbusState change is a note with its number right after the arrow that committed it, then the watch events it fired', async () => {
    const d = await folded(handshake(), { filter: 'vbd/51712' });
    const i = d.indexOf('note over blkfront (dom1): XenbusStateInitialised (3)');
    assert.ok(i > 0 && d[i - 1].startsWith('blkfront (dom1) ->> xenstored: XS_TRANSACTION_START -> 3;'), d.join('\n'));
    assert.deepEqual(d.filter((s) => s.includes(': XenbusState')), [
      'note over blkback (dom0): XenbusStateInitWait (2)',
      'note over blkfront (dom1): XenbusStateInitialised (3)',
      'note over blkback (dom0): XenbusStateConnected (4)',
      'note over blkfront (dom1): XenbusStateConnected (4)',
    ]);
    // The toolstack's commit fires both drivers' watches: one arrow per watcher.
    const t = d.findIndex((s) => s.startsWith('toolstack ->> xenstored: XS_TRANSACTION_START -> 7'));
    assert.deepEqual(d.slice(t + 1, t + 3), [
      'xenstored -->> blkback (dom0): XS_WATCH_EVENT backend/vbd/1/51712',
      'xenstored -->> blkfront (dom1): XS_WATCH_EVENT device/vbd/51712',
    ]);
  });

  it('transactions are drawn in the order xenstored committed them, not the order they started', async () => {
    const F = '/local/domain/1/device/vbd/51712';
    const B = '/local/domain/0/backend/vbd/1/51712';
    const trace: TraceRecord[] = [
      xs('IN', 3, 0, 'TRANSACTION_START', 1, 0, '\\0'), xs('OUT', 3, 0, 'TRANSACTION_START', 1, 0, '4\\0'),
      xs('IN', 2, 1, 'TRANSACTION_START', 1, 0, '\\0'), xs('OUT', 2, 1, 'TRANSACTION_START', 1, 0, '9\\0'),
      xs('IN', 3, 0, 'WRITE', 2, 4, `${B}/state\\04`), xs('OUT', 3, 0, 'WRITE', 2, 4, 'OK\\0'),
      xs('IN', 2, 1, 'WRITE', 2, 9, `${F}/state\\03`), xs('OUT', 2, 1, 'WRITE', 2, 9, 'OK\\0'),
      xs('IN', 2, 1, 'TRANSACTION_END', 3, 9, 'T\\0'), xs('OUT', 2, 1, 'TRANSACTION_END', 3, 9, 'OK\\0'),
      { kind: 'xenbus', domid: 1, role: 'frontend', device: 'vbd/51712', path: `${F}/state`, state: 3, stateName: 'XenbusStateInitialised' },
      xs('IN', 3, 0, 'TRANSACTION_END', 3, 4, 'T\\0'), xs('OUT', 3, 0, 'TRANSACTION_END', 3, 4, 'OK\\0'),
      { kind: 'xenbus', domid: 0, role: 'backend', device: 'vbd/1/51712', path: `${B}/state`, state: 4, stateName: 'XenbusStateConnected' },
    ];
    assert.deepEqual(await folded(trace), [
      'blkfront (dom1) ->> xenstored: XS_TRANSACTION_START -> 9; XS_WRITE device/vbd/51712/state=3; XS_TRANSACTION_END T -> OK',
      'note over blkfront (dom1): XenbusStateInitialised (3)',
      'blkback (dom0) ->> xenstored: XS_TRANSACTION_START -> 4; XS_WRITE backend/vbd/1/51712/state=4; XS_TRANSACTION_END T -> OK',
      'note over blkback (dom0): XenbusStateConnected (4)',
    ]);
  });

  it('a run of reads folds across others\' commits that touch none of its paths, and is cut by one that does', async () => {
    const F = '/local/domain/1/device/vbd/51712';
    const read = (req: number, key: string, value: string): TraceRecord[] => [xs('IN', 3, 0, 'READ', req, 0, `${F}/${key}\\0`), xs('OUT', 3, 0, 'READ', req, 0, value)];
    const write = (req: number, key: string, value: string): TraceRecord[] => [xs('IN', 2, 1, 'WRITE', req, 0, `${F}/${key}\\0${value}`), xs('OUT', 2, 1, 'WRITE', req, 0, 'OK\\0')];
    const trace = [...read(1, 'ring-ref', '8'), ...write(1, 'feature-persistent', '0'), ...read(2, 'event-channel', '5'), ...write(2, 'ring-ref', '9'), ...read(3, 'ring-ref', '9')];
    // The frontend's two writes are one arrow too: only another party's commit cuts a run of writes.
    assert.deepEqual(await folded(trace, { roleOf: blkbackConn3 }), [
      `blkback (dom0) ->> xenstored: XS_READ ${F}/{ring-ref -> 8, event-channel -> 5}`,
      'blkfront (dom1) ->> xenstored: XS_WRITE device/vbd/51712/{feature-persistent=0, ring-ref=9}',
      `blkback (dom0) ->> xenstored: XS_READ ${F}/ring-ref -> 9`,
    ]);
  });

  it('a watch event ends the watcher\'s run: what it reads next is its reaction; errors and repeats are said', async () => {
    const F = '/local/domain/1/device/vbd/51712';
    const trace: TraceRecord[] = [
      xs('IN', 3, 0, 'READ', 1, 0, `${F}\\0`), xs('OUT', 3, 0, 'READ', 1, 0, ''),
      xs('IN', 3, 0, 'READ', 2, 0, `${F}\\0`), xs('OUT', 3, 0, 'READ', 2, 0, ''),
      xs('IN', 2, 1, 'RM', 1, 0, `${F}/state\\0`), xs('OUT', 2, 1, 'RM', 1, 0, 'OK\\0'),
      xs('OUT', 3, 0, 'WATCH_EVENT', 0, 0, `${F}/state\\0be3\\0`),
      xs('IN', 3, 0, 'READ', 3, 0, `${F}/state\\0`), xs('OUT', 3, 0, 'ERROR', 3, 0, 'ENOENT\\0'),
    ];
    assert.deepEqual(await folded(trace, { roleOf: blkbackConn3 }), [
      `blkback (dom0) ->> xenstored: XS_READ ${F} -> "" x2`,
      'blkfront (dom1) ->> xenstored: XS_RM device/vbd/51712/state',
      `xenstored -->> blkback (dom0): XS_WATCH_EVENT ${F}/state`,
      `blkback (dom0) ->> xenstored: XS_READ ${F}/state -> ENOENT`,
    ]);
  });

  it('any payload text parses and reads back as written, line breaks aside (property)', async function () {
    const unit = fc.oneof(
      fc.constantFrom(';', '#', '\n', '\0', '<', '>', '&', '%', ':', ',', '@', ' ', '-', ')', '{', '}', '"', 'b', 'r', '/'),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
    );
    const value = fc.string({ unit, minLength: 1, maxLength: 40 }).filter((v) => !v.includes('\\') && v.trim() === v);
    await fc.assert(fc.asyncProperty(value, async (value) => {
      const events: TraceRecord[] = [xs('IN', 9, 3, 'WRITE', 1, 0, `data/k\\0${value}`), xs('OUT', 9, 3, 'WRITE', 1, 0, 'OK\\0')];
      const d = await parse(toMermaidSequence(events));
      assert.equal(d.statements.length, 1);
      const shown = oneLine(value).length > 48 ? `${oneLine(value).slice(0, 45)}...` : oneLine(value);
      assert.equal(d.statements[0].replaceAll('<br>', ''), `dom3 ->> xenstored: XS_WRITE data/k=${shown}`);
    }), { numRuns: 150, seed: 11 });
  });
});

describe('mermaid diagrams within limits (toMermaidDiagrams)', () => {
  it('a diagram within the limits is one part, the same text as toMermaidSequence', () => {
    assert.deepEqual(toMermaidDiagrams(handshake()), [toMermaidSequence(handshake())]);
  });

  it('past them, parts each within the limits, every statement kept in order, each opening with "part N of M"', async () => {
    const events = handshake();
    const limits = { maxTextSize: 1200, maxEdges: 4 };
    const parts = toMermaidDiagrams(events, { fold: false, limits });
    assert.ok(parts.length >= 3, `${parts.length} parts`);
    const whole = await parse(toMermaidSequence(events, { fold: false }));
    const seen: string[] = [];
    for (const [i, text] of parts.entries()) {
      assert.ok(text.length <= limits.maxTextSize, `part ${i + 1}: ${text.length} characters`);
      const d = await parse(text);
      assert.deepEqual(d.actors, whole.actors, 'every part declares the same participants in the same order');
      assert.equal(d.statements[0], `note over ${whole.actors[0]},${whole.actors[whole.actors.length - 1]}: part ${i + 1} of ${parts.length}`);
      assert.ok(d.statements.filter((s) => !s.startsWith('note over ')).length <= limits.maxEdges);
      seen.push(...d.statements.slice(1));
    }
    assert.deepEqual(seen, whole.statements);
  });

  it('a statement that cannot fit in any part is an error, not a diagram Mermaid would refuse', () => {
    assert.throws(() => toMermaidDiagrams(handshake(), { limits: { maxTextSize: 300, maxEdges: 500 } }), /cannot fit in maxTextSize 300/);
  });
});

describe('the words of a folded arrow (mermaid-fold)', () => {
  it('foldItems: one item as a full path; several per XS_ name and directory in braces, the directory itself as ".", repeats counted', () => {
    assert.deepEqual(foldItems([{ name: 'XS_READ', path: 'backend/vbd/1/51712/state', tail: ' -> 1' }]), ['XS_READ backend/vbd/1/51712/state -> 1']);
    assert.deepEqual(foldItems([
      { name: 'XS_WRITE', path: 'device/vbd/51712', tail: '=""' },
      { name: 'XS_WRITE', path: 'device/vbd/51712/ring-ref', tail: '=8' },
      { name: 'XS_READ', path: 'device/vbd/51712/state', tail: ' -> 1' },
      { name: 'XS_WRITE', path: 'device/vbd/51712/event-channel', tail: '=5' },
      { name: 'XS_READ', path: 'device/vbd/51712/state', tail: ' -> 1' },
      { name: 'XS_GET_DOMAIN_PATH', path: '', tail: ' 1 -> /local/domain/1' },
    ]), [
      'XS_WRITE device/vbd/51712/{.="", ring-ref=8, event-channel=5}',
      'XS_READ device/vbd/51712/state -> 1 x2',
      'XS_GET_DOMAIN_PATH 1 -> /local/domain/1',
    ]);
  });

  it('foldItems: the same permissions or token on every node are said once; values and results stay with their node', () => {
    const perms = ['state', 'backend-id'].map((k) => ({ name: 'XS_SET_PERMS', path: `/local/domain/1/device/vbd/51712/${k}`, tail: ' n1 r0' }));
    assert.deepEqual(foldItems(perms), ['XS_SET_PERMS /local/domain/1/device/vbd/51712/{state, backend-id} n1 r0']);
    const writes = ['state', 'online'].map((k) => ({ name: 'XS_WRITE', path: `backend/vbd/1/51712/${k}`, tail: '=1' }));
    assert.deepEqual(foldItems(writes), ['XS_WRITE backend/vbd/1/51712/{state=1, online=1}']);
  });

  it('homeRelative: a path in the party\'s own tree as its relative path, any other as it is', () => {
    assert.equal(homeRelative('/local/domain/0/backend/vbd/1/51712/state', 0), 'backend/vbd/1/51712/state');
    assert.equal(homeRelative('/local/domain/1/device/vbd/51712/state', 0), '/local/domain/1/device/vbd/51712/state');
    assert.equal(homeRelative('/local/domain/10/x', 1), '/local/domain/10/x');
    assert.equal(homeRelative('@releaseDomain', 0), '@releaseDomain');
  });

  it('wrapLabel: lines up to the width, broken after ", " or "; "; past the last line allowed, cut and said so', () => {
    assert.deepEqual(wrapLabel('aaaa, bbbb; cccc', 10, 5), ['aaaa,', 'bbbb; cccc']);
    assert.deepEqual(wrapLabel('a1, a2, a3, a4, a5', 6, 2), ['a1,', 'a2, ... (cut: 2 more lines)']);
  });
});
