/**
 * A real browser for tests: Debian's Chromium (or whatever KEYNODE_CHROMIUM names) driven by playwright-core,
 * which downloads nothing. A machine without one fails the test with how to install one; it never passes.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { defer } from './containers.js';

const NAMES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'];

export function findChromium(): string {
  const named = process.env.KEYNODE_CHROMIUM;
  const candidates = named ? [named] : (process.env.PATH ?? '').split(delimiter).flatMap((dir) => NAMES.map((n) => join(dir, n)));
  for (const path of candidates) {
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  throw new Error(
    `no Chromium found${named ? ` at KEYNODE_CHROMIUM=${named}` : ` on the PATH (looked for ${NAMES.join(', ')})`}: the dashboard test needs a real browser. ` +
      'Install one with `apt-get install -y chromium` (Debian/Ubuntu; .ci/run does this), or point KEYNODE_CHROMIUM at a Chrome or Chromium executable.',
  );
}

/** A headless browser, closed after the test file. */
export async function launchBrowser(): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: findChromium(), headless: true, args: ['--disable-gpu', '--disable-dev-shm-usage'] });
  defer(() => browser.close());
  return browser;
}
