// XTF result categories: their order, xtf-runner's exit codes and its way of combining results.
import assert from 'node:assert/strict';
import {
  RUNNER_ERROR_EXIT, XTF_RESULTS, XtfResult, exitCode, interpretResult, isXtfResult, worst, worstOf,
} from '../../../sim/report/xtf.ts';

const { SUCCESS, SKIP, ERROR, FAILURE, CRASH } = XtfResult;

describe('xtf results', () => {
  it('exit codes are xtf-runner\'s: 0, 3, 4, 5, 6 (1 and 2 left to the interpreter and runner errors)', () => {
    assert.deepEqual(XTF_RESULTS.map((r) => [r, exitCode(r)]), [[SUCCESS, 0], [SKIP, 3], [ERROR, 4], [FAILURE, 5], [CRASH, 6]]);
    assert.equal(RUNNER_ERROR_EXIT, 1);
  });

  it('worst keeps the more severe: SUCCESS < SKIP < ERROR < FAILURE < CRASH, for every pair, either way round', () => {
    for (const [i, a] of XTF_RESULTS.entries()) {
      for (const [j, b] of XTF_RESULTS.entries()) {
        assert.equal(worst(a, b), XTF_RESULTS[Math.max(i, j)], `${a} vs ${b}`);
      }
    }
  });

  it('a run of many reports the worst of them, and SUCCESS for none (xtf-runner starts from SUCCESS)', () => {
    assert.equal(worstOf([SUCCESS, SKIP, SUCCESS]), SKIP);
    assert.equal(worstOf([FAILURE, ERROR, SKIP]), FAILURE);
    assert.equal(worstOf([]), SUCCESS);
    assert.equal(exitCode(worstOf([SUCCESS, CRASH, FAILURE])), 6);
  });

  it('reads a console line as xtf-runner does: no "Test result:" is a CRASH', () => {
    assert.equal(interpretResult('--- Xen Test Framework ---'), CRASH);
    assert.equal(interpretResult('Test result: SUCCESS'), SUCCESS);
    assert.equal(interpretResult('Test result: SKIP'), SKIP);
    assert.equal(interpretResult('Test result: FAILURE'), FAILURE);
    assert.equal(interpretResult('Test result: ERROR'), ERROR);
    assert.equal(interpretResult('Test result: garbled'), CRASH);
  });

  it('knows its own names', () => {
    assert.ok(isXtfResult('SKIP'));
    assert.ok(!isXtfResult('PASS'));
    assert.ok(!isXtfResult(3));
  });
});
