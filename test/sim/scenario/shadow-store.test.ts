// The committed-writes invariant: a shadow tree rebuilt from the trace's requests and replies.
import assert from 'node:assert/strict';
import { ShadowStore } from '../../../sim/scenario/shadow-store.ts';
import type { TraceEvent } from '../../../sim/host-runtime.ts';

const node = (path: string, value = ''): { path: string; value: string; perms: string[] } => ({ path, value, perms: ['n0'] });
const base = [node('/'), node('/local'), node('/local/domain'), node('/local/domain/1')];

let req = 1;
/** A request and its reply on connection `conn` (domid `domid`), as xenstored traces them. */
function exchange(type: string, payload: string, reply: string, opts: { conn?: number; domid?: number; tx?: number; replyType?: string } = {}): TraceEvent[] {
  const r = req++;
  const c = { kind: 'xenstore', conn: opts.conn ?? 2, domid: opts.domid ?? 0, req_id: r, tx_id: opts.tx ?? 0 };
  return [{ ...c, dir: 'IN', type, payload }, { ...c, dir: 'OUT', type: opts.replyType ?? type, payload: reply }];
}

function shadowOf(events: TraceEvent[]): ShadowStore {
  const s = new ShadowStore(base);
  for (const e of events) s.see(e);
  return s;
}

describe('shadow store: every committed write is present', () => {
  it('a WRITE answered OK must be in the tree (with its new parents); a lost one is reported', () => {
    const s = shadowOf(exchange('WRITE', '/local/domain/1/data/x\\0hello', 'OK\\0'));
    assert.equal(s.diff([...base, node('/local/domain/1/data'), node('/local/domain/1/data/x', 'hello')]), undefined);
    assert.match(s.diff([...base, node('/local/domain/1/data')]) ?? '', /data\/x was committed but is gone/);
    assert.match(s.diff([...base, node('/local/domain/1/data'), node('/local/domain/1/data/x', 'bye')]) ?? '', /= "bye", committed "hello"/);
  });

  it('a relative path is the caller\'s home; a refused WRITE commits nothing', () => {
    const s = shadowOf([
      ...exchange('WRITE', 'data/y\\01', 'OK\\0', { conn: 4, domid: 1 }),
      ...exchange('WRITE', '/local/domain/1/z\\02', 'EACCES\\0', { conn: 4, domid: 1, replyType: 'ERROR' }),
    ]);
    assert.equal(s.diff([...base, node('/local/domain/1/data'), node('/local/domain/1/data/y', '1')]), undefined);
  });

  it('transaction writes land only when TRANSACTION_END says OK; EAGAIN and F drop them', () => {
    const committed = shadowOf([
      ...exchange('TRANSACTION_START', '\\0', '7\\0'),
      ...exchange('WRITE', '/a\\0v', 'OK\\0', { tx: 7 }),
      ...exchange('TRANSACTION_END', 'T\\0', 'OK\\0', { tx: 7 }),
    ]);
    assert.equal(committed.diff([...base, node('/a', 'v')]), undefined);
    const conflicted = shadowOf([
      ...exchange('TRANSACTION_START', '\\0', '8\\0'),
      ...exchange('WRITE', '/a\\0v', 'OK\\0', { tx: 8 }),
      ...exchange('TRANSACTION_END', 'T\\0', 'EAGAIN\\0', { tx: 8, replyType: 'ERROR' }),
    ]);
    assert.match(conflicted.diff([...base, node('/a', 'v')]) ?? '', /\/a exists, but no committed request created it/);
  });

  it('RM removes the subtree; xenstored\'s removal of a dead owner\'s nodes is followed', () => {
    const s = shadowOf([
      ...exchange('WRITE', '/t/u/v\\0x', 'OK\\0'),
      ...exchange('RM', '/t/u\\0', 'OK\\0'),
      ...exchange('WRITE', '/stray/n\\0y', 'OK\\0', { conn: 4, domid: 1 }),
      { kind: 'xenstored', op: 'owned_nodes_removed', owner: 1, paths: ['/stray/n'] },
    ]);
    assert.equal(s.diff([...base, node('/t'), node('/stray')]), undefined);
  });
});
