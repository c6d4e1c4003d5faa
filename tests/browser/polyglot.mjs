// Drives headless Chromium through hmr-proxy in front of a real dev server (tests/polyglot.rs):
// opens a page through the proxy, then runs a list of steps — check text, edit a file, wait for
// the page to reload (or to update without reloading), check Vite's own websocket.
//
//   node tests/browser/polyglot.mjs <proxy-origin> '<json [step, …]>'
//
// Steps (each one object, run in order; every wait is bounded by STEP_TIMEOUT_MS):
//   {"goto": "/path"}             load the page; wait for the client script (200) and the page's
//                                 EventSource on /changes to be answered, so edits after this
//                                 step are seen by a subscribed tab
//   {"text": ["#sel", "text"]}    wait until the element's textContent (trimmed) equals text
//   {"color": ["#sel", "rgb(…)"]} wait until the element's computed color equals it
//   {"clientTags": 1}             the DOM holds exactly this many /__hmr/client.js scripts
//   {"mark": true}                set a marker on window (a full reload clears it)
//   {"write": ["/abs/path", "content"], "then": "reload" | "update" | "any"}
//                                 write the file; "reload": wait until the page has navigated
//                                 again and loaded (the marker is gone); "update": go on at once
//                                 (a later {"marked": true} checks that no reload happened);
//                                 "any": go on at once, a reload is neither required nor ruled
//                                 out (the following steps wait for what the page must show)
//   {"marked": true}              the marker is still there (no reload happened)
//   {"console": "text"}           wait until a console message containing text was logged (since
//                                 the browser started, across reloads)
//   {"noConsole": "text"}         no console message so far contains text
//   {"websocket": "protocol-less url prefix"}
//                                 every WebSocket the page opened starts with this prefix (e.g.
//                                 ws://<proxy>/), and at least one did
//
// Prints `ok <step>` per step, or `FAIL <step>: reason` and the page's console, and exits 1.

import { writeFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [origin, spec] = process.argv.slice(2);
if (!origin || !spec) {
  console.error("usage: node polyglot.mjs <proxy-origin> '<json [step, …]>'");
  process.exit(2);
}
const steps = JSON.parse(spec);

/** Per-step budget: a loaded CI box starts Chromium and dev servers slowly. */
const STEP_TIMEOUT_MS = 20_000;
const MARK = `polyglot-${process.pid}-${Date.now()}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
});

const consoleLines = [];
/** Waiters for a console message: [needle, resolve]. */
const consoleWaiters = [];
const sockets = [];
let navigations = 0;
let failed = false;
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on('console', (msg) => logged(`[${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (err) => logged(`[pageerror] ${err.message}`));
  page.on('websocket', (ws) => sockets.push(ws.url()));
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });

  for (const step of steps) {
    const name = JSON.stringify(step).slice(0, 160);
    try {
      await run(page, step);
      console.log(`ok ${name}`);
    } catch (err) {
      failed = true;
      console.log(`FAIL ${name}: ${err.message.split('\n')[0]}`);
      break;
    }
  }
  const errors = consoleLines.filter((l) => l.startsWith('[pageerror]'));
  if (!failed && errors.length > 0) {
    failed = true;
    console.log(`FAIL page errors: ${errors.join(' | ')}`);
  }
} finally {
  await browser.close();
}
if (failed) {
  console.log(`console of the page:\n  ${consoleLines.join('\n  ')}`);
  console.log(`websockets: ${sockets.join(', ') || 'none'}`);
}
process.exit(failed ? 1 : 0);

async function run(page, step) {
  if ('goto' in step) return goto(page, step.goto);
  if ('text' in step) {
    const [selector, text] = step.text;
    return page
      .waitForFunction(
        ([s, t]) => document.querySelector(s)?.textContent.trim() === t,
        [selector, text],
      )
      .catch(async () => {
        const now = await page.evaluate((s) => document.querySelector(s)?.textContent, selector);
        throw new Error(`${selector} shows ${JSON.stringify(now)}, not ${JSON.stringify(text)}`);
      });
  }
  if ('color' in step) {
    const [selector, color] = step.color;
    return page
      .waitForFunction(
        ([s, c]) => {
          const el = document.querySelector(s);
          return el !== null && getComputedStyle(el).color === c;
        },
        [selector, color],
      )
      .catch(async () => {
        const now = await page.evaluate(
          (s) => document.querySelector(s) && getComputedStyle(document.querySelector(s)).color,
          selector,
        );
        throw new Error(`${selector} has color ${now}, not ${color}`);
      });
  }
  if ('clientTags' in step) {
    const tags = await page.evaluate(
      () => document.querySelectorAll('script[src^="/__hmr/client.js"]').length,
    );
    if (tags !== step.clientTags) throw new Error(`${tags} client script tags in the DOM`);
    return;
  }
  if ('mark' in step) {
    return page.evaluate((m) => {
      window.__polyglotMark = m;
    }, MARK);
  }
  if ('marked' in step) {
    const mark = await page.evaluate(() => window.__polyglotMark);
    if (mark !== MARK) throw new Error('the page reloaded: its marker is gone');
    return;
  }
  if ('write' in step) return write(page, step);
  if ('console' in step) return consoleMessage(step.console);
  if ('noConsole' in step) {
    const seen = consoleLines.find((l) => l.includes(step.noConsole));
    if (seen) throw new Error(`console: ${seen}`);
    return;
  }
  if ('websocket' in step) {
    if (sockets.length === 0) throw new Error('the page opened no WebSocket');
    const stray = sockets.filter((url) => !url.startsWith(step.websocket));
    if (stray.length > 0) throw new Error(`WebSockets bypassing ${step.websocket}: ${stray}`);
    return;
  }
  throw new Error('unknown step');
}

function logged(line) {
  consoleLines.push(line);
  for (const [needle, resolve] of consoleWaiters) {
    if (line.includes(needle)) resolve();
  }
}

/** Resolve once a console message containing `needle` was logged (or already was). */
function consoleMessage(needle) {
  if (consoleLines.some((l) => l.includes(needle))) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no console message contains ${JSON.stringify(needle)}`)),
      STEP_TIMEOUT_MS,
    );
    consoleWaiters.push([needle, () => {
      clearTimeout(timer);
      resolve();
    }]);
  });
}

/** Load `path` and wait until the injected client is subscribed to the change stream. */
async function goto(page, path) {
  const client = page.waitForResponse((res) => new URL(res.url()).pathname === '/__hmr/client.js');
  const changes = page.waitForResponse((res) => new URL(res.url()).pathname === '/changes');
  // Handlers attached at once: a timeout must not become an unhandled rejection.
  client.catch(() => {});
  changes.catch(() => {});
  const response = await page.goto(origin + path, { waitUntil: 'load' });
  if (!response || response.status() !== 200) {
    throw new Error(`page status ${response && response.status()}`);
  }
  const script = await client.catch(() => null);
  if (!script || script.status() !== 200) {
    throw new Error(`the client script was not loaded (${script ? script.status() : 'no request'})`);
  }
  const stream = await changes.catch(() => null);
  if (!stream || stream.status() !== 200) {
    throw new Error(`no open event stream on /changes (${stream ? stream.status() : 'no request'})`);
  }
}

/** Write a file the page depends on and wait for the page to take the change in. */
async function write(page, step) {
  const [file, content] = step.write;
  const before = navigations;
  if (step.then === 'reload') {
    // The next load and the reloaded page's event stream, awaited from before the edit so
    // neither can be missed.
    const reloaded = page.waitForEvent('load');
    const changes = page.waitForResponse((res) => new URL(res.url()).pathname === '/changes');
    reloaded.catch(() => {});
    changes.catch(() => {});
    writeFileSync(file, content);
    await reloaded.catch(() => {
      throw new Error(`no reload after writing ${file}`);
    });
    const mark = await page.evaluate(() => window.__polyglotMark);
    if (mark === MARK || navigations === before) {
      throw new Error(`the page loaded again but did not reload after writing ${file}`);
    }
    await changes.catch(() => {
      throw new Error('the reloaded page opened no event stream on /changes');
    });
    return;
  }
  if (step.then === 'update' || step.then === 'any') {
    writeFileSync(file, content);
    return;
  }
  throw new Error(`write needs then: "reload", "update" or "any", not ${step.then}`);
}
