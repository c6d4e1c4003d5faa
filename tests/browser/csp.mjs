// Loads pages through the proxy in headless Chromium and checks, for each, that the injected
// client runs (it sets window.__hmrProxy), that it opens its EventSource on /changes, that the
// page's own inline script still runs where the page has one, and that no Content-Security-Policy
// violation happens (report-only policies block nothing and are not counted).
//
// Run by tests/inject.rs:  node tests/browser/csp.mjs <proxy-origin> '<json [{path, pageScript}]>'
// Prints one line per page (`ok …` / `FAIL …: reasons`) and exits 1 if any page failed.

import { chromium } from 'playwright-core';

const [origin, spec] = process.argv.slice(2);
if (!origin || !spec) {
  console.error("usage: node csp.mjs <proxy-origin> '<json [{path, pageScript}]>'");
  process.exit(2);
}
const pages = JSON.parse(spec);

/** Per-page budget: a loaded CI box starts Chromium slowly, a page here loads in milliseconds. */
const PAGE_TIMEOUT_MS = 15_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
});

let failed = 0;
try {
  for (const { path, pageScript } of pages) {
    const problems = await check(path, pageScript).catch((e) => [`error: ${e.message}`]);
    if (problems.length === 0) {
      console.log(`ok ${path}`);
    } else {
      failed += 1;
      console.log(`FAIL ${path}: ${problems.join('; ')}`);
    }
  }
} finally {
  await browser.close();
}
process.exit(failed === 0 ? 0 : 1);

async function check(path, pageScript) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(PAGE_TIMEOUT_MS);
  const problems = [];

  // Violation reports are collected from before the first byte of the page is parsed.
  await page.addInitScript(() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__violations.push(
        `${e.disposition} ${e.effectiveDirective} blocked ${e.blockedURI || '(inline)'}` +
          ` from ${e.sourceFile || '?'}:${e.lineNumber}`,
      );
    });
  });
  page.on('console', (msg) => {
    const text = msg.text();
    if (/Content Security Policy/i.test(text) && !/report[- ]only/i.test(text)) {
      problems.push(`console: ${text}`);
    }
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));

  // EventSource requests only reach the network when connect-src allows them.
  // Handlers attached at once: a timeout must not become an unhandled rejection.
  const changes = page
    .waitForRequest((req) => new URL(req.url()).pathname === '/changes')
    .then(() => true, () => false);
  const clientScript = page
    .waitForResponse((res) => new URL(res.url()).pathname === '/__hmr/client.js')
    .then((res) => res.status(), () => 'none');

  const response = await page.goto(origin + path, { waitUntil: 'load' });
  if (!response || response.status() !== 200) {
    problems.push(`page status ${response && response.status()}`);
  }
  const clientStatus = await clientScript;
  if (clientStatus !== 200) problems.push(`client script status ${clientStatus}`);

  const ran = await page
    .waitForFunction(() => window.__hmrProxy === true)
    .then(() => true, () => false);
  if (!ran) problems.push('the client did not run (window.__hmrProxy is not set)');

  if (!(await changes)) problems.push('no EventSource request to /changes');

  if (pageScript) {
    const own = await page.evaluate(() => window.__page);
    if (own !== 'ran') problems.push(`the page's own inline script did not run (${own})`);
  }

  const tags = await page.evaluate(
    () => document.querySelectorAll('script[src="/__hmr/client.js"]').length,
  );
  if (tags !== 1) problems.push(`${tags} client tags in the DOM`);

  // Two task turns, so violation events queued by the last fetches are dispatched.
  await page.evaluate(() => new Promise((r) => setTimeout(r, 0)));
  await page.evaluate(() => new Promise((r) => setTimeout(r, 0)));
  const violations = await page.evaluate(() => window.__violations);
  for (const v of violations) {
    if (v.startsWith('enforce')) problems.push(`violation: ${v}`);
  }

  await context.close();
  return problems;
}
