// oxenstored.conf as `xensim xenstored --profile ocaml --config-file FILE` reads it.
import assert from 'node:assert/strict';
import { parseOxenstoredConf } from '../../../domains/dom0/xenstored/oxenstored-conf.ts';
import { Harness } from './harness.ts';

describe('oxenstored.conf (--config-file, profile ocaml)', () => {
  it("reads Debian's keys: quotas and conflict-max-history-seconds; the rest are named as not modelled", () => {
    const conf = parseOxenstoredConf([
      '# generated', 'conflict-max-history-seconds = 0.25', 'quota-maxentity = 500', 'quota-maxsize = 1024',
      'quota-maxwatch = 7', 'quota-transaction = 3', 'quota-maxrequests = -1', 'quota-path-max = 256',
      'quota-maxoutstanding = 64', 'merge-activate = true', 'persistent = false   # a comment', '',
    ].join('\n'));
    assert.equal(conf.conflictMaxHistorySeconds, 0.25);
    assert.deepEqual(conf.quotas, { nodes: 500, nodeSize: 1024, watches: 7, transactions: 3, transactionNodes: 0, pathMax: 256, outstanding: 64 });
    assert.deepEqual(conf.ignored, ['merge-activate', 'persistent']);
  });

  it('a malformed line or value is an error naming its line', () => {
    assert.throws(() => parseOxenstoredConf('quota-maxentity = 10\nnonsense\n'), /line 2/);
    assert.throws(() => parseOxenstoredConf('quota-maxwatch = lots\n'), /line 1: quota-maxwatch needs an integer/);
    assert.throws(() => parseOxenstoredConf('conflict-max-history-seconds = -1\n'), /non-negative/);
  });

  it("the history's window follows conflict-max-history-seconds", () => {
    let now = 100;
    const h = new Harness({ profile: 'ocaml', clock: () => now, conflictMaxHistorySeconds: 10 });
    const guest = h.introduce(6, { data: true });
    const t = h.dom0.txStart();
    assert.equal(guest.write('/local/domain/6/data/x', 'v'), 'OK');
    now += 5;
    assert.equal(h.dom0.read('/local/domain/6/data/x'), 'v');
    assert.equal(h.xs.history?.size, 1, 'within 10 s the record stays');
    now += 6;
    assert.equal(h.dom0.read('/local/domain/6/data/x'), 'v');
    assert.equal(h.xs.history?.size, 0, 'past 10 s it goes');
    assert.equal(h.dom0.abort(t), 'OK');
  });
});
