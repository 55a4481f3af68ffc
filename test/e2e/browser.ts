// Headless Chromium (Debian's `chromium`, driven by playwright-core) for the dashboard tests, with
// every page error, console error and failed response recorded for the test to assert on.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

export interface WatchedPage {
  browser: Browser;
  page: Page;
  /** Uncaught page errors and console errors (not the browser's "Failed to load resource", which `failedResponses` names). */
  pageErrors: string[];
  /** Responses with a status of 400 or more: `"<status> <path>"`. */
  failedResponses: string[];
}

/** Launches Chromium and opens one 1440×900 page that records its errors. */
export async function launchWatchedPage(): Promise<WatchedPage> {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
  const pageErrors: string[] = [];
  const failedResponses: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) pageErrors.push(`console: ${msg.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) failedResponses.push(`${r.status()} ${new URL(r.url()).pathname}`);
  });
  page.setDefaultTimeout(15_000);
  return { browser, page, pageErrors, failedResponses };
}
