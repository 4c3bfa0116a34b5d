// Test results in the Xen Test Framework's terms, so scenario runs report as XTF tests do and CI
// scripts written for xtf-runner read our exit codes unchanged.
//
// Source: xtf-runner in the Xen Test Framework (andyhhp/xtf, same in commits 04ebde85 and
// 4172faef): `all_results = ('SUCCESS', 'SKIP', 'ERROR', 'FAILURE', 'CRASH')`, ordered from best
// to worst; run_tests() keeps the result with the highest index over all tests; exit_code() maps
// SUCCESS 0, SKIP 3, ERROR 4, FAILURE 5, CRASH 6 (1 and 2 are left to the Python interpreter;
// xtf-runner itself exits 1 on its own errors). interpret_result() reads the guest's last console
// line: CRASH unless it says "Test result:" and one of the names. include/xtf/report.h gives the
// meanings: ERROR is a bug in the test or its environment, FAILURE a bug in what is tested, and
// CRASH (unknown to the C side) covers every run that left no valid result.

export enum XtfResult {
  SUCCESS = 'SUCCESS',
  SKIP = 'SKIP',
  ERROR = 'ERROR',
  FAILURE = 'FAILURE',
  CRASH = 'CRASH',
}

/** Best to worst, as xtf-runner's all_results. */
export const XTF_RESULTS: readonly XtfResult[] = [
  XtfResult.SUCCESS, XtfResult.SKIP, XtfResult.ERROR, XtfResult.FAILURE, XtfResult.CRASH,
];

const EXIT_CODES: Readonly<Record<XtfResult, number>> = {
  [XtfResult.SUCCESS]: 0,
  [XtfResult.SKIP]: 3,
  [XtfResult.ERROR]: 4,
  [XtfResult.FAILURE]: 5,
  [XtfResult.CRASH]: 6,
};

/** xtf-runner's exit status when the runner itself fails (RunnerError, Ctrl-C). */
export const RUNNER_ERROR_EXIT = 1;

/** The process exit code xtf-runner gives for a (combined) result. */
export function exitCode(result: XtfResult): number {
  return EXIT_CODES[result];
}

/** The more severe of two results: what a run of both reports. */
export function worst(a: XtfResult, b: XtfResult): XtfResult {
  return XTF_RESULTS.indexOf(b) > XTF_RESULTS.indexOf(a) ? b : a;
}

/** The combined result of many tests; SUCCESS for none, as xtf-runner starts from SUCCESS. */
export function worstOf(results: Iterable<XtfResult>): XtfResult {
  let r = XtfResult.SUCCESS;
  for (const x of results) r = worst(r, x);
  return r;
}

/** A test's result from its last console line, as xtf-runner's interpret_result. */
export function interpretResult(line: string): XtfResult {
  if (!line.includes('Test result:')) return XtfResult.CRASH;
  return XTF_RESULTS.find((r) => line.includes(r)) ?? XtfResult.CRASH;
}

export function isXtfResult(s: unknown): s is XtfResult {
  return typeof s === 'string' && (XTF_RESULTS as readonly string[]).includes(s);
}
