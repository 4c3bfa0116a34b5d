// What a swarm reports: failures grouped by a signature that ignores what varies per seed, rates
// per variant, shards that cover a seed range exactly once, and merged shards that summarise as
// one big swarm would.
import assert from 'node:assert/strict';
import {
  failureSignature, parseShard, parseSwarmLines, shardSeeds, type SwarmAnswer, summarise,
} from '../../../sim/scenario/swarm-report.ts';

const answer = (seed: number, result: string, message?: string, extra: Partial<SwarmAnswer> = {}): SwarmAnswer => ({
  scenario: 'race-x', variant: 'buggy', seed, faultSelection: { spec: 'default' }, faults: {}, result, message,
  events: 100 + (seed % 7), hash: `h${seed}`, wallMs: 1, ...extra,
});

describe('swarm report: signatures, rates, shards, merging', () => {
  it('a signature keeps the failing expectation and drops the numbers that change with the seed', () => {
    const a = failureSignature({ result: 'FAILURE', message: 'invariant "both ends agree" after step "boot": guest1 vbd/51712: frontend 4, backend absent' });
    const b = failureSignature({ result: 'FAILURE', message: 'invariant "both ends agree" after step "boot": guest1 vbd/51728: frontend 3, backend absent' });
    assert.equal(a, b);
    assert.equal(a, 'FAILURE: invariant "both ends agree" after step "boot": guest# vbd/#: frontend #, backend absent');
    assert.equal(failureSignature({ result: 'CRASH', message: 'ring at 0xfffffffe overran' }), 'CRASH: ring at 0x# overran');
    assert.notEqual(a, failureSignature({ result: 'CRASH', message: 'invariant "both ends agree" after step "boot": guest1 vbd/51712: frontend 4, backend absent' }));
    assert.notEqual(a, failureSignature({ result: 'FAILURE', message: 'invariant "no orphans" after step "boot"' }));
  });

  it('summaries give the rate, the first failing seed, the shortest run, and groups most frequent first', () => {
    const list = [
      answer(1, 'SUCCESS'), answer(2, 'FAILURE', 'lost 3 writes'), answer(3, 'FAILURE', 'lost 9 writes'),
      answer(4, 'CRASH', 'domain 2 oops'), answer(5, 'SUCCESS'), answer(6, 'FAILURE', 'lost 1 writes'),
      answer(1, 'SUCCESS', undefined, { variant: 'fixed' }), answer(2, 'SUCCESS', undefined, { variant: 'fixed' }),
    ];
    const [buggy, fixed] = summarise(list, (a) => (a.variant === 'buggy' ? 'fail' : 'pass'));
    assert.equal(buggy.runs, 6);
    assert.equal(buggy.failures.length, 4);
    assert.equal(buggy.rate, 4 / 6);
    assert.equal(buggy.firstFailingSeed, 2);
    assert.equal(buggy.shortest?.seed, 2, 'seed 2 has the fewest events (102)');
    assert.deepEqual(buggy.signatures.map((g) => [g.signature, g.count, g.seed]), [
      ['FAILURE: lost # writes', 3, 2], ['CRASH: domain # oops', 1, 4],
    ]);
    assert.deepEqual([buggy.ok, buggy.verdict], [true, 'found']);
    assert.deepEqual([fixed.runs, fixed.rate, fixed.ok, fixed.verdict], [2, 0, true, 'ok']);
    const [failingFixed] = summarise([answer(1, 'FAILURE', 'x', { variant: 'fixed' })], () => 'pass');
    assert.deepEqual([failingFixed.ok, failingFixed.verdict], [false, 'FAILING']);
    const [notFound] = summarise([answer(1, 'SUCCESS')], () => 'fail');
    assert.deepEqual([notFound.ok, notFound.verdict], [false, 'NOT FOUND']);
  });

  it('shards I/N split the seed range into contiguous parts that cover it exactly once', () => {
    for (const [first, count, of] of [[1, 1000, 4], [1, 10, 3], [7, 5, 8], [1, 0, 2]]) {
      const seen: number[] = [];
      for (let index = 0; index < of; index++) {
        const r = shardSeeds(first, count, { index, of });
        for (let s = r.first; s < r.first + r.count; s++) seen.push(s);
      }
      assert.deepEqual(seen, Array.from({ length: count }, (_, i) => first + i), `${first} +${count} in ${of}`);
    }
    assert.deepEqual(shardSeeds(1, 1000, { index: 2, of: 4 }), { first: 501, count: 250 });
    assert.deepEqual(shardSeeds(1, 100, undefined), { first: 1, count: 100 });
    assert.deepEqual(parseShard('3/8'), { index: 3, of: 8 });
    for (const bad of ['4/4', '1/0', '-1/2', 'a/b', '1']) assert.throws(() => parseShard(bad), RangeError, bad);
  });

  it('merged shards summarise as the one swarm they split, a seed seen twice counting once', () => {
    const all = Array.from({ length: 40 }, (_, i) => answer(i + 1, (i + 1) % 5 === 0 ? 'FAILURE' : 'SUCCESS', `seed ${i + 1} lost a write`));
    const line = (a: SwarmAnswer): string => JSON.stringify({ kind: 'run', ...a, expect: 'fail', replay: 'x' });
    const shard = (lo: number, hi: number): string => all.filter((a) => a.seed >= lo && a.seed <= hi).map(line).join('\n');
    // The second shard overlaps the first by one seed, as a re-run shard would.
    const merged = [...parseSwarmLines(shard(1, 20), 'a'), ...parseSwarmLines(`${shard(20, 40)}\n\n`, 'b')];
    const strip = (s: ReturnType<typeof summarise>): unknown => s.map((v) => ({
      ...v, failures: v.failures.map((f) => f.seed), shortest: v.shortest?.seed,
      signatures: v.signatures.map((g) => [g.signature, g.count, g.seed, g.shortest.seed]),
    }));
    assert.deepEqual(strip(summarise(merged, () => 'fail')), strip(summarise(all, () => 'fail')));
    assert.equal(summarise(merged, () => 'fail')[0].runs, 40);
    assert.throws(() => parseSwarmLines('{"kind":"run","seed":1}', 'f.jsonl'), /f\.jsonl:1: not a swarm run line/);
    assert.throws(() => parseSwarmLines('garbage', 'f.jsonl'), /f\.jsonl:1: not JSON/);
    assert.deepEqual(parseSwarmLines('{"kind":"other"}', 'f'), [], 'lines of other kinds are skipped');
  });
});
