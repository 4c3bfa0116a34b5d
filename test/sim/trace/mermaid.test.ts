// The Mermaid sequence diagram of a handshake, checked with Mermaid's own parser: the text must be
// a diagram Mermaid accepts, and what Mermaid reads from it (participants, arrows, notes, texts)
// must be the handshake.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import mermaid from 'mermaid';
import { type TraceRecord, oneLine } from '../../../sim/trace/events.ts';
import { escapeMermaidText, toMermaidSequence } from '../../../sim/trace/mermaid.ts';
import { BACK, handshake, xs } from './fixture.ts';

interface Parsed {
  /** Participant labels, in declaration order. */
  actors: string[];
  /** "from ARROW to: text" for arrows, "note over A[,B]: text" for notes, labels not ids. */
  statements: string[];
}

// Mermaid's db line types (sequenceDb LINETYPE): the arrows and the note this module writes.
const ARROWS: Record<number, string> = { 0: '->>', 1: '-->>', 24: '-)' };
const NOTE = 2;

/**
 * Entity codes are swapped for placeholders before parsing and turned back into characters
 * when Mermaid draws; do the drawing's part here to compare texts.
 */
const decode = (s: string): string =>
  s.replace(/ﬂ°°(\d+)¶ß/g, (_m, n: string) => String.fromCodePoint(Number(n)));

async function parse(text: string): Promise<Parsed> {
  // parse() registers the diagram types and throws on a syntax error.
  const res = await mermaid.parse(text);
  assert.ok(res && res.diagramType === 'sequence', 'a sequence diagram');
  const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
  const db = diagram.db as unknown as {
    getActors(): Map<string, { description: string }>;
    getActorKeys(): string[];
    getMessages(): { from: string; to: string; message: string; type: number; placement?: number }[];
  };
  const actors = db.getActors();
  const label = (id: string): string => decode(actors.get(id)?.description ?? id);
  const statements = db.getMessages().map((m) => {
    if (m.type === NOTE) return `note over ${m.from === m.to ? label(m.from) : `${label(m.from)},${label(m.to)}`}: ${decode(m.message)}`;
    return `${label(m.from)} ${ARROWS[m.type] ?? `?${m.type}`} ${label(m.to)}: ${decode(m.message)}`;
  });
  return { actors: [...actors.keys()].map(label), statements };
}

describe('mermaid sequence diagram', () => {
  it('is valid Mermaid for the whole handshake, every device, every filter, and an empty trace', async () => {
    for (const filter of [undefined, 'vbd/51712', 'vif/0', '/local/domain/1', BACK, () => true]) {
      await parse(toMermaidSequence(handshake(), { filter }));
    }
    const empty = await parse(toMermaidSequence([]));
    assert.deepEqual(empty, { actors: [], statements: [] });
    // Only a step: it still needs someone to stand over.
    assert.deepEqual(await parse(toMermaidSequence([{ kind: 'step', name: 'boot' }])), { actors: ['scenario'], statements: ['note over scenario: step boot'] });
  });

  it('participants are roles: the frontend driver, xenstored in the middle, the backend driver, the toolstack', async () => {
    const d = await parse(toMermaidSequence(handshake(), { filter: 'vbd/51712' }));
    assert.deepEqual(d.actors, ['blkfront (dom1)', 'xenstored', 'blkback (dom0)', 'toolstack']);
  });

  it('requests are arrows to xenstored; replies come back dashed to whoever asked', async () => {
    const d = await parse(toMermaidSequence(handshake(), { filter: 'vbd/51712' }));
    const i = d.statements.indexOf('blkback (dom0) ->> xenstored: XS_READ /local/domain/1/device/vbd/51712/ring-ref');
    assert.ok(i >= 0, d.statements.join('\n'));
    assert.equal(d.statements[i + 1], 'xenstored -->> blkback (dom0): 8');
    assert.ok(d.statements.includes('blkfront (dom1) ->> xenstored: XS_WRITE device/vbd/51712/state=4'));
  });

  it('the toolstack is the connection that writes into another domain; its transaction is drawn whole', async () => {
    const d = await parse(toMermaidSequence(handshake(), { filter: 'vbd/51712' }));
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
    const d = await parse(toMermaidSequence(handshake(), { filter: 'vbd/51712' }));
    assert.ok(d.statements.includes(`xenstored -->> blkback (dom0): XS_WATCH_EVENT ${BACK}`));
    assert.ok(d.statements.includes('xenstored -->> blkfront (dom1): XS_WATCH_EVENT device/vbd/51712'));
  });

  it('XenbusState changes are notes over their driver, in handshake order', async () => {
    const d = await parse(toMermaidSequence(handshake(), { filter: 'vbd/51712' }));
    const states = d.statements.filter((s) => s.includes(': XenbusState'));
    assert.deepEqual(states, [
      'note over blkback (dom0): XenbusStateInitWait',
      'note over blkfront (dom1): XenbusStateInitialised',
      'note over blkback (dom0): XenbusStateConnected',
      'note over blkfront (dom1): XenbusStateConnected',
    ]);
  });

  it('the device event channel: allocated by the frontend, bound by the backend, a notification as an async arrow', async () => {
    const d = await parse(toMermaidSequence(handshake(), { filter: 'vbd/51712' }));
    assert.ok(d.statements.includes('note over blkfront (dom1): EVTCHNOP_alloc_unbound port 5'));
    assert.ok(d.statements.includes('note over blkback (dom0): EVTCHNOP_bind_interdomain port 7 to dom1 port 5'));
    assert.ok(d.statements.includes('note over blkback (dom0): map grant ref 8 of dom1'));
    assert.equal(d.statements[d.statements.length - 1], 'blkfront (dom1) -) blkback (dom0): notify (port 5)');
  });

  it('a device filter leaves out other devices, the guest\'s own keys, its xenstore channel and raw hypercalls', async () => {
    const text = toMermaidSequence(handshake(), { filter: 'vbd/51712' });
    for (const absent of ['vif/0', 'data/xenbus', 'port 1', 'hypercall', 'set_pending', 'console', 'XS_WATCH ']) {
      assert.ok(!text.includes(absent), `${absent} in\n${text}`);
    }
    // The step that frames the scenario stays, across all participants.
    const d = await parse(text);
    assert.equal(d.statements[0], 'note over blkfront (dom1),toolstack: step attach vbd/51712 to dom1');
  });

  it('a device directory filter is the same device; a path prefix keeps what is under it', async () => {
    assert.equal(
      toMermaidSequence(handshake(), { filter: '/local/domain/1/device/vbd/51712' }),
      toMermaidSequence(handshake(), { filter: 'vbd/51712' }),
    );
    const d = await parse(toMermaidSequence(handshake(), { filter: '/local/domain/1/data' }));
    assert.deepEqual(d.statements, [
      'note over dom1,xenstored: step attach vbd/51712 to dom1',
      'dom1 ->> xenstored: XS_WRITE data/xenbus=connected',
      'xenstored -->> dom1: OK',
    ]);
  });

  it('a predicate chooses any events; kinds the diagram does not know become notes', async () => {
    const d = await parse(toMermaidSequence(handshake(), { filter: (e) => e.kind === 'console' || e.kind === 'hypercall' }));
    assert.deepEqual(d.statements, [
      'note over dom1: event_channel_op',
      'note over dom1: event_channel_op',
      'note over dom1: console blkfront: xvda: 8 sectors; #1 <ok>',
    ]);
  });

  it('participants given are declared first, in the order given; roleOf renames an actor', async () => {
    const d = await parse(toMermaidSequence(handshake(), {
      filter: 'vbd/51712',
      participants: ['toolstack', 'blkback (dom0)'],
      roleOf: (e) => (e.kind === 'xenstore' && e.conn === 1 ? 'xl' : undefined),
    }));
    assert.deepEqual(d.actors, ['toolstack', 'blkback (dom0)', 'blkfront (dom1)', 'xenstored', 'xl']);
    assert.ok(d.statements.includes('xl ->> xenstored: XS_TRANSACTION_START'));
  });

  it('characters Mermaid cannot take (; # newline NUL < > &) survive as the same text', async () => {
    const nasty = 'a;b#c\nd\u0000e<f>&g %% wrap: end';
    const events: TraceRecord[] = [xs('IN', 2, 1, 'WRITE', 1, 0, `device/vbd/51712/x\\0${nasty}`), xs('OUT', 2, 1, 'ERROR', 1, 0, 'EINVAL#;\\0')];
    const d = await parse(toMermaidSequence(events));
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
      const d = await parse(toMermaidSequence(events, { participants: [name] }));
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

