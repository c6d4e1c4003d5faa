// The proxy's waiting page in headless Chromium: a form posted while the dev server is down gets
// the page that reloads by itself once the server is back, and the form reaches the server once.
// First, a page open while the dev server goes down for longer than a restart takes says so in
// a note, and reloads without it once the server is back.
//
// Run by tests/client.rs:  node tests/browser/waiting.mjs <proxy-origin> <upstream-port>
// The proxy fronts http://127.0.0.1:<upstream-port>, which this script serves itself, stops and
// starts again. Two things reload that page when the server is back: its own poll, and the
// injected client when the proxy sees the server answer. Each alone reloads it once; both used to
// reload it twice, and a page that answered a POST sent the form twice. The server holds the
// resent POST's answer for a while, so that both have come round while the first reload waits:
// without the shared mark, the second POST is certain, not a race. When the server is back after
// the note, a second tab asks for the page at once, and the server holds its answer until the
// proxy has published its reload for the comeback: the page was asked for before that reload
// (its position is older) and gets it replayed, yet it must stay, as the server that came back
// served it. (The waiting page, reloading itself the moment its poll saw the server, was
// loaded twice that way: a rare failure of this test before.) Exits 0, or 1 with what happened.
// Every wait is on an event, bounded by WAIT_MS.

import http from 'node:http';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const [origin, port] = process.argv.slice(2);
if (!origin || !port) {
  console.error('usage: node waiting.mjs <proxy-origin> <upstream-port>');
  process.exit(2);
}

const WAIT_MS = 20_000;
/** How long the server holds its answer to the resent form: past the poll's longest pause. */
const HOLD_MS = 4_000;

let posts = 0;

/**
 * The dev server: a form, and a POST handler that counts and (once back) answers late. With
 * `pagesAfter` (a promise), the form is answered once it settles.
 */
function serve(holdMs, pagesAfter = null) {
  const server = http.createServer(async (req, res) => {
    if (req.method === 'POST') {
      posts += 1;
      req.resume();
      req.on('end', () =>
        setTimeout(() => res.writeHead(200, { 'content-type': 'text/html' }).end(
          '<!doctype html><html><head><title>sent</title></head><body><p id="sent">sent</p></body></html>',
        ), holdMs),
      );
      return;
    }
    await pagesAfter;
    res.writeHead(200, { 'content-type': 'text/html' }).end(
      '<!doctype html><html><head><title>form</title></head><body>' +
        '<form method="post" action="/submit"><input name="q" value="1"><button>send</button></form>' +
        '</body></html>',
    );
  });
  return new Promise((resolve) => server.listen(Number(port), '127.0.0.1', () => resolve(server)));
}

/**
 * Listen to the proxy's change stream as a tab does; resolves, once it is open, to a promise of
 * the next reload for a dev server's comeback (`{id, restart}`), after which it closes.
 */
async function nextComeback() {
  const closed = new AbortController();
  const res = await fetch(`${origin}/changes`, {
    headers: { accept: 'text/event-stream' },
    signal: closed.signal,
  });
  assert.equal(res.status, 200);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const batch = (async () => {
    let text = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the change stream ended before a comeback');
      text += value;
      let end;
      while ((end = text.indexOf('\n\n')) >= 0) {
        const event = text.slice(0, end).split('\n');
        text = text.slice(end + 2);
        if (!event.includes('event: change')) continue;
        const data = JSON.parse(event.find((line) => line.startsWith('data: ')).slice(6));
        if (data.reload && data.restart) {
          closed.abort();
          return data;
        }
      }
    }
  })();
  // Seen by whoever awaits it; this one only keeps an early failure from going unhandled.
  batch.catch(() => {});
  return { batch };
}

/** How many documents `page` has asked for from now on (reloads included), as a function. */
function countLoads(page) {
  let n = 0;
  page.on('request', (r) => {
    if (r.isNavigationRequest() && r.frame() === page.mainFrame()) n += 1;
  });
  return () => n;
}

/**
 * Once `page` has taken in the batch `id` (from its position, replayed, or live), it has acted
 * on it: `page` did not reload for it, and `loads` (see countLoads) counts one document.
 */
async function loadedOnce(page, loads, id, what) {
  const verdict = await page.waitForFunction((reload) => {
    const state = window[Symbol.for('hmr-proxy')]?.state;
    return state?.lastId >= reload && (window.hmrReloading ? 'reloading' : 'stayed');
  }, id);
  assert.equal(await verdict.jsonValue(), 'stayed', `${what} reloads for batch ${id}`);
  assert.equal(loads(), 1, `${what} was loaded ${loads()} times`);
}

function stop(server) {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(resolve));
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
});
const transcript = [];
let server = null;
try {
  server = await serve(0);
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('console', (m) => transcript.push(`[console] ${m.text()}`));
  page.on('request', (r) => transcript.push(`[request] ${r.method()} ${r.url()}`));
  await page.goto(`${origin}/form`);
  await page.waitForFunction(() => window.__hmrProxy === true);

  // Down for longer than a restart takes: the page says so in its corner, and when the server
  // is back the proxy reloads it (without the note). As the tab that holds the stream, and as
  // one that hears it through the SharedWorker (no Web Locks: an address that is no secure
  // context).
  const noLocks = await browser.newContext();
  await noLocks.addInitScript(() => delete Navigator.prototype.locks);
  const shared = await noLocks.newPage();
  shared.setDefaultTimeout(WAIT_MS);
  shared.on('console', (m) => transcript.push(`[shared console] ${m.text()}`));
  await shared.goto(`${origin}/form`);
  for (const [tab, role] of [[page, 'leader'], [shared, 'shared']]) {
    await tab.waitForFunction(() => window.__hmrProxy === true);
    const roleNow = await tab.evaluate(() => window[Symbol.for('hmr-proxy')].state.role);
    assert.equal(roleNow, role);
    await stop(server);
    const stopped = Date.now();
    const note = await tab.waitForSelector('#hmr-proxy-down');
    assert.ok(Date.now() - stopped >= 2_000, 'no note for what may be a restart');
    assert.equal(await note.getAttribute('data-down'), `http://127.0.0.1:${port}`);
    const text = await note.evaluate((host) => host.shadowRoot.textContent);
    assert.match(text, /is down; this page reloads once it is back/);
    assert.ok(transcript.some((line) => line.includes(`http://127.0.0.1:${port} is down`)));
    if (role === 'leader') {
      // Reloaded meanwhile: the proxy's waiting page, which says so itself, without the note.
      const told = tab.waitForEvent('console', (m) => m.text().includes(`${port} is down`));
      await tab.reload();
      await tab.waitForSelector('text=reloads by itself');
      await told;
      assert.equal(await tab.$('#hmr-proxy-down'), null, 'no note on the waiting page');
    }
    const reloaded = tab.waitForEvent('load');
    const loads = countLoads(tab);
    // A page asked for the moment the server is back, before the proxy's probe (every 500 ms)
    // sees it, and answered after its reload was published, which it gets replayed.
    const late = role === 'leader' ? await tab.context().newPage() : null;
    late?.on('console', (m) => transcript.push(`[late console] ${m.text()}`));
    const lateLoads = late && countLoads(late);
    const comeback = await nextComeback();
    server = await serve(0, comeback.batch);
    const lateLoaded = late?.goto(`${origin}/form`);
    await reloaded;
    const { id } = await comeback.batch;
    await loadedOnce(tab, loads, id, 'the reloaded page');
    assert.equal(await tab.$('#hmr-proxy-down'), null, 'the reloaded page has no note');
    if (late) {
      await lateLoaded;
      await loadedOnce(late, lateLoads, id, 'a page served after the comeback');
      await late.close();
    }
    console.log(`ok note while down (${role})`);
  }
  await noLocks.close();

  await stop(server);
  // Sent while the server is down: the proxy's waiting page, with the client in it.
  await page.click('button');
  await page.waitForSelector('text=reloads by itself');
  await page.waitForFunction(() => window.__hmrProxy === true);
  assert.equal(posts, 0);
  server = await serve(HOLD_MS);
  await page.waitForSelector('#sent', { timeout: WAIT_MS + HOLD_MS });
  assert.equal(posts, 1, 'the form reached the server once');
  console.log('ok waiting page');
} catch (err) {
  console.log(`FAIL waiting page: ${err.stack || err}\n  posts: ${posts}\n  ${transcript.join('\n  ')}`);
  process.exitCode = 1;
} finally {
  // A server still listening would keep this process (and the test) waiting for ever.
  if (server?.listening) await stop(server);
  await browser.close();
  process.exit();
}
