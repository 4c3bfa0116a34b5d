// Waiting in tests: for a condition, never for a time. A test that waits a fixed time for
// something to happen fails on a busy machine; one that polls a condition only gets slower.

/**
 * How long a test waits for something that must happen before it calls it hung and fails with
 * what it saw. Not a performance bound: on a busy machine everything takes longer, never this
 * long. Mocha's own timeout (.mocharc) is longer, so this message, with its details, is reported.
 */
export const HANG_MS = 120_000;

/**
 * Polls `cond` (every `pollMs`) until it holds. Throws after HANG_MS, with `what` and the
 * details `explain` gives, so a hang reads as one.
 */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  what: string,
  explain: () => string = () => '',
  pollMs = 20,
): Promise<void> {
  const hung = Date.now() + HANG_MS;
  while (!(await cond())) {
    if (Date.now() > hung) {
      const details = explain();
      throw new Error(`hung: still waiting for ${what} after ${HANG_MS / 1000} s${details ? `; ${details}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
