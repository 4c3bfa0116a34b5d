// Mermaid's own parser reading a diagram back: participants, and each arrow or note as
// "from ARROW to: text" with labels rather than ids, so specs compare what Mermaid would draw.
import assert from 'node:assert/strict';
import mermaid from 'mermaid';

export interface Parsed {
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
export const decode = (s: string): string =>
  s.replace(/ﬂ°°(\d+)¶ß/g, (_m, n: string) => String.fromCodePoint(Number(n)));

export async function parse(text: string): Promise<Parsed> {
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
