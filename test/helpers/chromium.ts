// Debian's chromium driven by playwright-core (no browser download): for the `xensim ui` page's
// specs and the ui bench. A missing browser is an error with the fix in it, never a skip: a spec
// that silently does nothing when chromium is absent would pass in CI having checked nothing.
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** Debian's package puts it here; CHROMIUM overrides (another distribution, a local build). */
export const CHROMIUM_PATH = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Headless, and quiet: no network of its own (updates, sync, QUIC), no GPU, no sandbox (root in CI). */
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`no chromium at ${CHROMIUM_PATH}${process.env.CI ? ' (CI: .ci/run installs it)' : ''}: `
      + 'install Debian\'s (apt-get install -y chromium) or point CHROMIUM at one');
  }
  // No --user-data-dir: playwright makes its own temporary profile and removes it on close.
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: ARGS, headless: true });
}
