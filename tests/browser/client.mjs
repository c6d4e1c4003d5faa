// The browser client (client/hmr-client.js) in headless Chromium, through the real proxy: edits
// files in the served site and checks what every open tab does about it.
//
// Run by tests/client.rs:  node tests/browser/client.mjs <proxy-origin> <site-dir>
// The site is a copy of examples/container; this script adds its extras/ pages. Files are changed
// atomically (written beside the site, then renamed into it), as many editors do. For the restart
// scenario it prints `@@restart` and waits for one line on stdin: the caller restarts the proxy on
// the same port in between. ONLY=css,html runs a subset. Prints `ok <name> (<ms> ms)` or
// `FAIL <name>: …` (with the tabs' console) per scenario; exits 1 if any failed.
//
// Every wait is on an event or a condition in the page, bounded by WAIT_MS; nothing sleeps.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import readline from 'node:readline';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const [origin, site] = process.argv.slice(2);
if (!origin || !site) {
  console.error('usage: node client.mjs <proxy-origin> <site-dir>');
  process.exit(2);
}

/** Budget for one wait: generous for a loaded 2-core CI box; a healthy run needs milliseconds. */
const WAIT_MS = 15_000;

const scratch = fs.mkdtempSync(path.join(path.dirname(path.resolve(site)), 'scratch-'));
let serial = 0;
/** Console lines of every tab (and page errors), printed when a scenario fails. */
let transcript = [];

// ---- Files ---------------------------------------------------------------------------------------

function read(rel) {
  return fs.readFileSync(path.join(site, rel), 'utf8');
}

/**
 * Replace `rel` in one step: written outside the watched tree, renamed into it (with `mtime`, a
 * Date, last modified then).
 */
function write(rel, text, mtime) {
  const tmp = path.join(scratch, `f${++serial}`);
  fs.writeFileSync(tmp, text);
  if (mtime) fs.utimesSync(tmp, mtime, mtime);
  fs.mkdirSync(path.dirname(path.join(site, rel)), { recursive: true });
  fs.renameSync(tmp, path.join(site, rel));
}

/** An icon sprite: its `#dot` is a square of `size`. */
function sprite(size, fill) {
  const dot = `<g id="dot"><rect width="${size}" height="${size}" fill="${fill}"/></g>`;
  return `<svg xmlns="http://www.w3.org/2000/svg">${dot}</svg>\n`;
}

function svg(size, fill) {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" viewBox="0 0 ${size} ${size}"><rect width="${size}" height="${size}" fill="${fill}"/></svg>\n`;
}

/** A colour no earlier edit used, as getComputedStyle spells it. */
function freshColor() {
  serial += 1;
  return `rgb(${serial % 256}, ${Math.floor(serial / 256) % 256}, 77)`;
}

// ---- The proxy's own endpoints -------------------------------------------------------------------

async function status() {
  const res = await fetch(`${origin}/__hmr/status`);
  return res.json();
}

/** Poll the status endpoint until `pred` holds (the server side has no event to wait on). */
async function statusUntil(what, pred) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const s = await status();
    if (pred(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; status: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A `/changes` stream read by this script: resolves waits on the batches it sees. */
async function changeStream() {
  const abort = new AbortController();
  // Asked for as an event stream: a bare fetch sends `*/*` with fetch metadata, which the proxy
  // leaves to the app's own /changes.
  const res = await fetch(`${origin}/changes`, {
    signal: abort.signal,
    headers: { Accept: 'text/event-stream' },
  });
  assert.equal(res.status, 200);
  const batches = [];
  const waiters = new Set();
  (async () => {
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.match(/^data: (.*)$/m);
        if (/^event: change$/m.test(block) && data) {
          batches.push(JSON.parse(data[1]));
          for (const w of waiters) w();
        }
      }
    }
  })().catch(() => {});
  return {
    /** Wait for a batch satisfying `pred`. */
    until(what, pred) {
      return within(what, new Promise((resolve) => {
        const check = () => {
          const found = batches.find(pred);
          if (found) {
            waiters.delete(check);
            resolve(found);
          }
        };
        waiters.add(check);
        check();
      }));
    },
    close: () => abort.abort(),
  };
}

/**
 * Write `files` (site path → text) in order and wait until the proxy has published the last one:
 * a tab opened before then would hear the batch and reload.
 */
async function publish(files) {
  const stream = await changeStream();
  try {
    for (const [rel, text] of Object.entries(files)) write(rel, text);
    const last = `/${Object.keys(files).at(-1)}`;
    await stream.until(`${last} to be published`, (b) => b.urls.includes(last));
  } finally {
    stream.close();
  }
}

/** A page that loads the client and runs `script`, a module, after `head`. */
function modulePage(title, body, script, head = '') {
  return (
    `<!doctype html>\n<html><head><meta charset="utf-8"><title>${title}</title>${head}</head>\n` +
    `<body>${body}<script type="module">\nimport { container } from "/__hmr/client.js";\n` +
    `${script}\n</script></body></html>\n`
  );
}

function within(what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---- Tabs ----------------------------------------------------------------------------------------

let browser;

/** Headless Chromium, with Playwright's launch `options` (one scenario needs its own browser). */
function launch(options = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
    ...options,
  });
}

async function newContext(options = {}, from = browser) {
  const context = await from.newContext(options);
  // Counts documents loaded in each tab (frames share the tab's sessionStorage, so they do not
  // count): a reload shows up as 2.
  await context.addInitScript(() => {
    if (window === window.top) sessionStorage.loads = String(Number(sessionStorage.loads || 0) + 1);
  });
  return context;
}

/**
 * A context whose pages have no Web Locks, as on an address that is not a secure context (a LAN
 * address, http://app.test); with `sharedWorker: false`, no SharedWorker either.
 */
async function insecureContext({ sharedWorker = true } = {}) {
  const context = await newContext();
  await context.addInitScript((worker) => {
    delete Navigator.prototype.locks;
    if (!worker) delete globalThis.SharedWorker;
  }, sharedWorker);
  return context;
}

let tabNumber = 0;

/** A new tab whose console goes into the transcript. */
async function newTab(context) {
  const page = await context.newPage();
  const name = `tab${++tabNumber}`;
  page.setDefaultTimeout(WAIT_MS);
  page.on('console', (msg) => transcript.push(`${name} ${msg.type()}: ${msg.text()}`));
  page.on('pageerror', (err) => transcript.push(`${name} PAGE ERROR: ${err.message}`));
  return page;
}

async function openTab(context, urlPath = '/', base = origin) {
  const page = await newTab(context);
  const res = await page.goto(base + urlPath);
  assert.equal(res.status(), 200, `${urlPath} status`);
  await connected(page);
  return page;
}

/** The client knows the proxy instance: it is on the stream, or hears the tab that is. */
function connected(page) {
  return page.waitForFunction(() => window[Symbol.for('hmr-proxy')]?.state.instance != null);
}

function clientState(page) {
  return page.evaluate(() => ({ ...window[Symbol.for('hmr-proxy')].state }));
}

function loads(page) {
  return page.evaluate(() => Number(sessionStorage.loads));
}

function logged(text) {
  return transcript.some((line) => line.includes(text));
}

/** Give <h1> a new colour in css/app.css; returns it. */
function saveH1Color() {
  const color = freshColor();
  write('css/app.css', `${read('css/app.css')}h1 { color: ${color}; }\n`);
  return color;
}

/** Give <h1> a new colour in css/app.css and wait until every page shows it. */
async function cssProbe(pages) {
  const color = saveH1Color();
  await Promise.all(pages.map((page) => h1Color(page, color)));
  return color;
}

function h1Color(page, color) {
  return page.waitForFunction(
    (c) => getComputedStyle(document.querySelector('h1')).color === c,
    color,
  );
}

/**
 * Something in front of the proxy (another proxy, a tunnel): passes every request on and counts
 * the change streams asked for. With `refuse`, it answers the first with a 502 once that settles.
 * With `cached`, it lets the browser cache scripts for an hour, as a dev server that sends
 * `max-age` does; with `cachedSheets`, stylesheets. `intercept(req, res, pass)` sees each request
 * first: it answers it itself (or passes it on later, with `pass()`) and returns true, or returns
 * false to have it passed on at once. (Playwright's routes do not see a SharedWorker's requests,
 * and turn the HTTP cache off; this does neither.)
 */
async function frontProxy({ refuse, cached, cachedSheets, intercept } = {}) {
  const target = new URL(origin);
  let streams = 0;
  let firstAsked;
  const asked = new Promise((r) => (firstAsked = r));
  const server = http.createServer((req, res) => {
    if (new URL(req.url, origin).pathname === '/changes') {
      firstAsked();
      if (streams++ === 0 && refuse) {
        refuse.then(() => res.writeHead(502).end('bad gateway'));
        return;
      }
    }
    if (intercept?.(req, res, () => pass(req, res))) return;
    pass(req, res);
  });
  const pass = (req, res) => {
    const { method, headers } = req;
    const upstream = http.request(
      { host: target.hostname, port: target.port, path: req.url, method, headers },
      (answer) => {
        const { pathname } = new URL(req.url, origin);
        const kept = (cached && /\.js$/.test(pathname)) || (cachedSheets && /\.css$/.test(pathname));
        const caching = kept ? { 'cache-control': 'max-age=3600' } : {};
        res.writeHead(answer.statusCode, { ...answer.headers, ...caching });
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy()); // a stream the browser drops ends at the proxy too
    req.pipe(upstream);
  };
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    /** Resolves once a change stream has been asked for. */
    asked,
    streams: () => streams,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

// ---- Scenarios -----------------------------------------------------------------------------------

/** CSS change: the new rule applies, nothing reloads, page state survives. */
async function css() {
  const context = await newContext();
  try {
    const page = await openTab(context);
    await page.fill('#notes', 'typed before the swap');
    await page.evaluate(() => {
      window.kept = 'yes';
      window.keptLink = document.querySelector('link[rel=stylesheet]');
      document.body.style.minHeight = '400vh';
      window.scrollTo(0, 700);
    });
    const own = (r) => new URL(r.url()).pathname === '/css/app.css' && !new URL(r.url()).search;
    const refetched = page.waitForResponse(own);
    const said = page.waitForEvent('console', (m) => m.text() === '[hmr] css swapped: /css/app.css');
    await cssProbe([page]);
    await said;
    await page.waitForFunction(() => document.querySelectorAll('link[rel=stylesheet]').length === 1);
    assert.match(await page.getAttribute('link[rel=stylesheet]', 'href'), /\/css\/app\.css\?t=\d+$/);
    assert.ok(
      await page.evaluate(() => document.querySelector('link[rel=stylesheet]') === window.keptLink),
      "the page's own link, pointed at the new sheet",
    );
    assert.equal(await page.evaluate(() => window.kept), 'yes', 'window variable kept');
    assert.equal(await page.evaluate(() => window.scrollY), 700, 'scroll position kept');
    assert.equal(await page.inputValue('#notes'), 'typed before the swap', 'form input kept');
    assert.equal(await loads(page), 1, 'no reload');
    // Fetched again for an upstream whose caching headers would keep the old copy, and only after
    // the copy has loaded, so that it does not hold the new styles up. (The first entry for the
    // sheet's own URL is the page's load.)
    // Asked for as a stylesheet: a server that answers by Accept must not cache something else.
    assert.match((await refetched).request().headers().accept, /^text\/css/);
    const handle = await page.waitForFunction(() => {
      const entries = performance.getEntriesByType('resource');
      const sheet = (e) => new URL(e.name).pathname === '/css/app.css';
      const copy = entries.find((e) => sheet(e) && new URL(e.name).searchParams.has('t'));
      const own = entries.filter((e) => sheet(e) && !new URL(e.name).search);
      return copy && own.length >= 2 && [copy.responseEnd, own.at(-1).startTime];
    });
    const [copy, again] = await handle.jsonValue();
    assert.ok(copy > 0 && again >= copy, `refetched at ${again} ms, the copy loaded at ${copy} ms`);
  } finally {
    await context.close();
  }
}

/**
 * Two links to one stylesheet (a partial included twice, or another live-reloader's copy: Vite
 * clones a link it swaps, and both react to a save when both watch the sources): one link is
 * left after a save, and it has the new rules. Each used to be swapped, and the other tool's
 * copies piled up, one more with every save.
 */
async function duplicates() {
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/twice.html');
    const sheets = () =>
      page.evaluate(() => [...document.querySelectorAll('link[rel=stylesheet]')].length);
    assert.equal(await sheets(), 2);
    await cssProbe([page]);
    await page.waitForFunction(() => document.querySelectorAll('link[rel=stylesheet]').length === 1);
    // Another tool's copy of the sheet, beside the swapped one.
    await page.evaluate(() => {
      const link = document.querySelector('link[rel=stylesheet]');
      const copy = link.cloneNode();
      copy.href = '/css/app.css?livereload=1733450000000'; // livereload.js's stamp
      link.after(copy);
    });
    await page.waitForFunction(() => [...document.styleSheets].length === 2);
    await cssProbe([page]);
    await page.waitForFunction(() => document.querySelectorAll('link[rel=stylesheet]').length === 1);
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * A copy that fails to load (a response cut short: a file read while it was written in place)
 * leaves the old styles as they were, and the next save swaps the sheet. The original used to
 * go anyway, and the page was unstyled until the next save.
 */
async function copyFails() {
  const context = await newContext();
  try {
    const page = await openTab(context);
    const before = await page.evaluate(() => getComputedStyle(document.querySelector('h1')).color);
    let aborted;
    const abort = new Promise((r) => (aborted = r));
    let copies = 0;
    await page.route(
      (url) => url.pathname === '/css/app.css' && url.searchParams.has('t'),
      async (route) => {
        if (copies++ === 0) {
          await route.abort();
          aborted();
        } else {
          await route.continue();
        }
      },
    );
    saveH1Color();
    await within('the copy to be cut off', abort);
    await page.waitForFunction(() => {
      const links = [...document.querySelectorAll('link[rel=stylesheet]')];
      return links.length === 1 && !new URL(links[0].href).searchParams.has('t');
    });
    assert.equal(
      await page.evaluate(() => getComputedStyle(document.querySelector('h1')).color),
      before,
      'the old styles stay',
    );
    await cssProbe([page]);
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * Hold the page's requests that `match` accepts until `gate` settles (with `first`, only the
 * first of them: later ones go through; with `nth`, only the nth). Resolves once the route is in
 * place, to `{ requested }`: a promise of the first held request's URL. (Not that promise itself,
 * which the async function would wait for.) A page with a route asks the network for everything:
 * Playwright switches the HTTP cache off.
 */
async function hold(page, match, gate, { first = false, nth = first ? 1 : 0 } = {}) {
  let held;
  const requested = new Promise((r) => (held = r));
  let seen = 0;
  await page.route(match, async (route) => {
    if (!nth || ++seen === nth) {
      held(route.request().url());
      await gate;
    }
    await route.continue().catch(() => {}); // the page may have dropped it by now
  });
  return { requested };
}

/** A cache-busted copy of css/app.css, as a swap asks for it. */
function sheetCopy(url) {
  return url.pathname === '/css/app.css' && url.searchParams.has('t');
}

/**
 * Two quick saves while the first copy is slow to load: once the second copy has loaded, it is the
 * only link left. (The first copy used to take the original out only on its own `load`, which a
 * link removed by the second never fires: the original stayed for good, with its deleted rules.)
 */
async function cssTwice() {
  const context = await newContext();
  const stream = await changeStream();
  let release;
  const gate = new Promise((r) => (release = r));
  try {
    write('css/app.css', `${read('css/app.css')}#step { outline: 3px solid rgb(0, 0, 255); }\n`);
    await stream.until('the batch adding the outline', (b) => b.urls.includes('/css/app.css'));
    const page = await openTab(context);
    const outline = () => page.$eval('#step', (el) => getComputedStyle(el).outlineStyle);
    assert.equal(await outline(), 'solid');
    await page.evaluate(() => (window.keptLink = document.querySelector('link[rel=stylesheet]')));

    // The first cache-busted copy is held until the end; the second goes through.
    const { requested: firstCopy } = await hold(page, sheetCopy, gate, { first: true });
    const first = freshColor();
    write('css/app.css', `${read('css/app.css').replace(/#step \{[^}]*\}\n/, '')}h1 { color: ${first}; }\n`);
    await within('the first copy to be requested', firstCopy);
    const second = freshColor();
    write('css/app.css', `${read('css/app.css')}h1 { color: ${second}; }\n`);
    await page.waitForFunction(
      (c) =>
        document.querySelectorAll('link[rel=stylesheet]').length === 1 &&
        getComputedStyle(document.querySelector('h1')).color === c,
      second,
    );
    assert.equal(await outline(), 'none', 'the rule deleted by the first save is gone');
    assert.ok(await page.evaluate(() => document.querySelector('link[rel=stylesheet]') === window.keptLink));
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    release();
    stream.close();
    await context.close();
  }
}

/**
 * `css swapped` is said when the new styles apply (the swap's copy has loaded), not when the swap
 * starts: a slow sheet was said to be swapped seconds before it showed.
 */
async function cssSaid() {
  const context = await newContext();
  let release;
  const gate = new Promise((r) => (release = r));
  try {
    const page = await openTab(context);
    const { requested } = await hold(page, sheetCopy, gate, { first: true });
    const said = page.waitForEvent('console', (m) => m.text() === '[hmr] css swapped: /css/app.css');
    const color = saveH1Color();
    await within('the copy to be asked for', requested);
    await page.evaluate(() => 0); // what the page said before this has reached the script
    assert.ok(!logged('css swapped'), 'not said while the copy loads');
    assert.notEqual(await page.$eval('h1', (h1) => getComputedStyle(h1).color), color);
    release();
    await said;
    assert.equal(await page.$eval('h1', (h1) => getComputedStyle(h1).color), color, 'said once they apply');
  } finally {
    release();
    await context.close();
  }
}

/** A sheet switched off through the CSSOM (a theme switcher) stays off when it is swapped. */
async function cssOff() {
  const context = await newContext();
  try {
    const page = await openTab(context);
    const before = await page.$eval('h1', (h1) => getComputedStyle(h1).color);
    await page.evaluate(() => (document.querySelector('link[rel=stylesheet]').sheet.disabled = true));
    const color = saveH1Color();
    await page.waitForFunction(() => {
      const links = document.querySelectorAll('link[rel=stylesheet]');
      return links.length === 1 && new URL(links[0].href).searchParams.has('t');
    });
    const link = await page.$eval('link[rel=stylesheet]', (l) => ({
      disabled: l.sheet.disabled,
      media: l.getAttribute('media'),
    }));
    assert.deepEqual(link, { disabled: true, media: null }, 'the copy is off, with the media it had');
    assert.notEqual(await page.$eval('h1', (h1) => getComputedStyle(h1).color), color);
    // Switched back on, it has the new rules.
    await page.evaluate(() => (document.querySelector('link[rel=stylesheet]').sheet.disabled = false));
    assert.equal(await page.$eval('h1', (h1) => getComputedStyle(h1).color), color);
    assert.notEqual(before, color);

    // Off again, then two quick saves, the first copy held until the second is in: a copy of a
    // copy still loading must give back the media the page wrote, not the one that hides it.
    let release;
    const gate = new Promise((r) => (release = r));
    try {
      await page.evaluate(() => (document.querySelector('link[rel=stylesheet]').sheet.disabled = true));
      const { requested: firstCopy } = await hold(page, sheetCopy, gate, { first: true });
      write('css/app.css', `${read('css/app.css')}h1 { color: ${freshColor()}; }\n`);
      const held = await within('the first copy to be requested', firstCopy);
      const last = freshColor();
      write('css/app.css', `${read('css/app.css')}h1 { color: ${last}; }\n`);
      await page.waitForFunction((heldUrl) => {
        const links = document.querySelectorAll('link[rel=stylesheet]');
        return links.length === 1 && links[0].href !== heldUrl && links[0].sheet;
      }, held);
      const twice = await page.$eval('link[rel=stylesheet]', (l) => ({
        disabled: l.sheet.disabled,
        media: l.getAttribute('media'),
      }));
      assert.deepEqual(twice, { disabled: true, media: null }, 'off, with the media it had');
      await page.evaluate(() => (document.querySelector('link[rel=stylesheet]').sheet.disabled = false));
      assert.equal(await page.$eval('h1', (h1) => getComputedStyle(h1).color), last);
    } finally {
      release();
    }
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * Stylesheet links the swap used to break: two that differ only in their query (a server may
 * answer them with two sheets; one was taken for a duplicate and removed), one switched off by
 * its `disabled` attribute (its copy never loaded, and the sheet never swapped again), one with
 * subresource integrity (its copy, with the old hash, was blocked).
 */
async function sheetKinds() {
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/kinds.html');
    const color = (sel) => page.$eval(sel, (el) => getComputedStyle(el).color);
    const until = (sel, c) =>
      page.waitForFunction(([s, want]) => getComputedStyle(document.querySelector(s)).color === want, [sel, c]);

    let c = freshColor();
    write('extras/kind.css', `#k { color: ${c}; }\n`);
    await until('#k', c);
    // Each link on its new address, and the copies that loaded it first gone (the colour shows
    // as soon as one copy has loaded: it shows the new sheet while its link loads that).
    await page.waitForFunction(() => {
      const links = [...document.querySelectorAll('link[href*="kind.css"]')];
      return links.length === 2 && links.every((l) => new URL(l.href).searchParams.has('t'));
    });
    const parts = await page.$$eval('link[href*="kind.css"]', (ls) => ls.map((l) => new URL(l.href).searchParams.get('part')));
    assert.deepEqual(parts.sort(), ['a', 'b'], 'both links stay');

    c = freshColor();
    write('extras/sri.css', `#s { color: ${c}; }\n`);
    await until('#s', c);

    const before = await color('#o');
    c = freshColor();
    write('extras/off.css', `#o { color: ${c}; }\n`);
    await page.waitForFunction(() => new URL(document.getElementById('off').href).searchParams.has('t'));
    assert.equal(await color('#o'), before, 'a sheet switched off stays off');
    await page.evaluate(() => (document.getElementById('off').disabled = false));
    await until('#o', c);
    c = freshColor();
    write('extras/off.css', `#o { color: ${c}; }\n`);
    await until('#o', c);
    // No copies left over (the one that shows the new sheet while the link loads it goes once the
    // link has).
    await page.waitForFunction(() => document.querySelectorAll('link[href*="off.css"]').length === 1);
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * What a page's script does with a stylesheet link it made and kept (React's
 * `{dark && <link rel="stylesheet" href="/dark.css"/>}`): extras/owned.html makes one in #app and
 * keeps it and its parent, as React does. Starts watching the colour of #own: every colour it has
 * had goes into `window.seen`, after each DOM change and each frame (a swap must never show it
 * unstyled). Returns the colour it has now.
 */
async function openOwned(context) {
  const page = await openTab(context, '/extras/owned.html');
  await page.waitForFunction(
    () => window.owned.sheet && getComputedStyle(document.getElementById('own')).color !== 'rgb(0, 0, 0)',
  );
  const color = await page.evaluate(() => {
    const own = document.getElementById('own');
    window.seen = new Set();
    const look = () => window.seen.add(getComputedStyle(own).color);
    new MutationObserver(look).observe(document, { subtree: true, childList: true, attributes: true });
    const frame = () => {
      look();
      requestAnimationFrame(frame);
    };
    frame();
    return getComputedStyle(own).color;
  });
  return [page, color];
}

function ownColor(page, color) {
  return page.waitForFunction((c) => getComputedStyle(document.getElementById('own')).color === c, color);
}

/** A cache-busted extras/owned.css: a swap's copy asks for it, then the link. */
function ownedBusted(url) {
  return url.pathname === '/extras/owned.css' && url.search !== '';
}

/** Wait until one link to extras/owned.css is left: a swap's copy has gone. */
function oneOwnedLink(page) {
  return page.waitForFunction(() => document.querySelectorAll('link[href*="owned.css"]').length === 1);
}

/**
 * Save extras/owned.css and hold the kept link's request for it (the second, after its copy's)
 * at `gate`: the swap is then midway, the copy showing the new colour, which it returns.
 */
async function midSwap(page, gate) {
  const { requested } = await hold(page, ownedBusted, gate, { nth: 2 });
  const color = freshColor();
  write('extras/owned.css', `#own { color: ${color}; }\n`);
  await within('the link to ask for the new sheet, after its copy', requested);
  assert.equal(await page.$eval('#own', (el) => getComputedStyle(el).color), color, 'the copy shows it meanwhile');
  return color;
}

/** The links to extras/owned.css in the page: the page's own, and whether it is the one it kept. */
function ownedLinks(page) {
  return page.evaluate(() => {
    const links = [...document.querySelectorAll('link[href*="owned.css"]')];
    return { count: links.length, kept: links[0] === window.owned };
  });
}

/**
 * A stylesheet link the page's script keeps (a framework's) is still that link after a swap, and
 * the script can take it out: no error, and its styles go with it. The swap used to replace it
 * with a copy: React's `parent.removeChild(link)` threw NotFoundError (Next.js: "Application
 * error: a client-side exception has occurred"), and the copy's styles stayed. The same when the
 * script takes it out while a swap's copy loads, or while the link loads the new sheet (the copy
 * that shows it meanwhile goes at once). Nothing shows unstyled meanwhile.
 */
async function keptRemoved() {
  const context = await newContext();
  let release;
  const gate = new Promise((r) => (release = r));
  let releaseLink;
  const linkGate = new Promise((r) => (releaseLink = r));
  try {
    const [page, before] = await openOwned(context);
    const color = freshColor();
    write('extras/owned.css', `#own { color: ${color}; }\n`);
    await ownColor(page, color);
    await oneOwnedLink(page);
    const seen = await page.evaluate(() => [...window.seen]);
    assert.deepEqual(seen.filter((c) => c !== before && c !== color), [], `never unstyled: ${seen}`);
    const removed = await page.evaluate(() => {
      try {
        window.ownedParent.removeChild(window.owned);
        return 'removed';
      } catch (err) {
        return String(err);
      }
    });
    assert.equal(removed, 'removed', "the page's removeChild of its own link");
    assert.equal(await page.$eval('#own', (el) => getComputedStyle(el).color), 'rgb(0, 0, 0)', 'its styles went with it');
    assert.equal((await ownedLinks(page)).count, 0, 'no copy left');

    // Made again (the component renders it again), and taken out while a swap's copy loads.
    await page.evaluate(() => window.makeOwned());
    await ownColor(page, color);
    const { requested } = await hold(page, ownedBusted, gate);
    write('extras/owned.css', `#own { color: ${freshColor()}; }\n`);
    await within('the copy to be requested', requested);
    await page.evaluate(() => window.ownedParent.removeChild(window.owned));
    release();
    await page.waitForFunction(() => document.querySelectorAll('link[href*="owned.css"]').length === 0);
    assert.equal(await page.$eval('#own', (el) => getComputedStyle(el).color), 'rgb(0, 0, 0)');

    // Made again, and taken out while it loads the new sheet, the copy showing that meanwhile:
    // the copy goes with it, before anything is drawn.
    await page.evaluate(() => window.makeOwned());
    await page.waitForFunction(() => window.owned.sheet);
    await midSwap(page, linkGate);
    const after = await page.evaluate(async () => {
      window.ownedParent.removeChild(window.owned);
      await null; // what the client does about it, it does now (a mutation observer)
      const links = document.querySelectorAll('link[href*="owned.css"]').length;
      return [getComputedStyle(document.getElementById('own')).color, links];
    });
    assert.deepEqual(after, ['rgb(0, 0, 0)', 0], 'the copy went with it at once');
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    release();
    releaseLink();
    await context.close();
  }
}

/**
 * A kept stylesheet link the page's script changes after a swap (its media, its `disabled`, its
 * sheet's `disabled`): each change takes effect, as on a link never swapped, and a later save
 * swaps it again. It used to be a link out of the document by then, and changing it did nothing.
 * Its media changed while it loads a new sheet applies at once (to the copy showing that
 * meanwhile too); pointed elsewhere (a theme switched) while a swap's copy loads, it keeps the
 * page's address.
 */
async function keptChanged() {
  const context = await newContext();
  let release;
  const gate = new Promise((r) => (release = r));
  let releaseLink;
  const linkGate = new Promise((r) => (releaseLink = r));
  try {
    const [page, before] = await openOwned(context);
    const unstyled = 'rgb(0, 0, 0)';
    const color = freshColor();
    write('extras/owned.css', `#own { color: ${color}; }\n`);
    await ownColor(page, color);
    await oneOwnedLink(page);
    // A media query takes effect at once (no load): the colour right after is the answer.
    const media = (value) =>
      page.evaluate((v) => {
        if (v === null) window.owned.removeAttribute('media');
        else window.owned.media = v;
        return getComputedStyle(document.getElementById('own')).color;
      }, value);
    assert.equal(await media('print'), unstyled, 'the media the page gives its link applies');
    assert.equal(await media(null), color);
    assert.deepEqual(await ownedLinks(page), { count: 1, kept: true }, 'the kept link is the one in the page');
    await page.evaluate(() => (window.owned.disabled = true));
    await ownColor(page, unstyled);
    await page.evaluate(() => (window.owned.disabled = false));
    await ownColor(page, color);
    await page.evaluate(() => (window.owned.sheet.disabled = true));
    await ownColor(page, unstyled);
    await page.evaluate(() => (window.owned.sheet.disabled = false));
    await ownColor(page, color);

    // Swapped again after all that.
    const again = freshColor();
    write('extras/owned.css', `#own { color: ${again}; }\n`);
    await ownColor(page, again);
    await oneOwnedLink(page);
    assert.deepEqual(await ownedLinks(page), { count: 1, kept: true });
    const seen = await page.evaluate(() => [...window.seen]);
    const swapped = [before, color, again, unstyled];
    assert.deepEqual(seen.filter((c) => !swapped.includes(c)), [], `only the colours it was given: ${seen}`);

    // Its media changed while it loads the new sheet, the copy showing that meanwhile: the copy
    // follows at once, and the link keeps the media once it has loaded.
    const third = await midSwap(page, linkGate);
    const printed = await page.evaluate(async () => {
      window.owned.media = 'print';
      await null; // what the client does about it, it does now (a mutation observer)
      return getComputedStyle(document.getElementById('own')).color;
    });
    assert.equal(printed, unstyled, 'the copy took the media at once');
    releaseLink();
    await oneOwnedLink(page);
    assert.equal(await page.evaluate(() => window.owned.getAttribute('media')), 'print');
    assert.equal(await media(null), third);

    // A theme switched while a swap's copy loads: the link stays on the page's address.
    const { requested } = await hold(page, ownedBusted, gate);
    write('extras/owned.css', `#own { color: ${freshColor()}; }\n`);
    await within('the copy to be requested', requested);
    await page.evaluate(() => (window.owned.href = '/extras/owned-alt.css'));
    await ownColor(page, 'rgb(7, 0, 2)');
    release();
    await page.waitForFunction(() => document.querySelectorAll('link[href*="owned"]').length === 1);
    assert.equal(await page.evaluate(() => window.owned.getAttribute('href')), '/extras/owned-alt.css');
    assert.equal(await page.$eval('#own', (el) => getComputedStyle(el).color), 'rgb(7, 0, 2)');
    assert.equal(await page.evaluate(() => window.owned.isConnected), true);
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    release();
    releaseLink();
    await context.close();
  }
}

/**
 * A `t` in the page's own URL (`?t=dark`: a server's theme, a thumbnail's size) names another
 * resource: the swap keeps it and stamps another parameter. It was overwritten with the stamp,
 * and the page got whatever the server answers without it.
 */
async function ownT() {
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/own-t.html');
    const color = freshColor();
    write('extras/own-t.css', `#ot { color: ${color}; }\n`);
    await page.waitForFunction((c) => getComputedStyle(document.getElementById('ot')).color === c, color);
    await page.waitForFunction(() => document.querySelectorAll('link[rel=stylesheet]').length === 1);
    const sheet = new URL(await page.$eval('link[rel=stylesheet]', (l) => l.href));
    assert.equal(sheet.searchParams.get('t'), 'dark', sheet.href);
    assert.match(sheet.search, /^\?t=dark&\w+=\d+$/, 'stamped in another parameter');
    // Swapped again: the stamp is replaced, not added to (the copy is the same sheet).
    const again = freshColor();
    write('extras/own-t.css', `#ot { color: ${again}; }\n`);
    await page.waitForFunction((c) => getComputedStyle(document.getElementById('ot')).color === c, again);
    await page.waitForFunction(() => document.querySelectorAll('link[rel=stylesheet]').length === 1);
    const swapped = new URL(await page.$eval('link[rel=stylesheet]', (l) => l.href));
    assert.match(swapped.search, /^\?t=dark&\w+=\d+$/);
    assert.notEqual(swapped.href, sheet.href, 'a new stamp');

    write('extras/own-t.svg', svg(20, '#c60'));
    await page.waitForFunction(() => {
      const img = document.getElementById('thumb');
      return img.complete && img.naturalWidth === 20 && new URL(img.src).search !== '?t=thumb';
    });
    const thumb = new URL(await page.$eval('#thumb', (img) => img.src));
    assert.equal(thumb.searchParams.get('t'), 'thumb', thumb.href);
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * A reload the page's user calls off (an "unsaved changes" prompt answered Stay): the page
 * listens again. It stayed deaf before, and so did every tab it led.
 */
async function stayed() {
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/guarded.html');
    const prompted = new Promise((resolve) =>
      page.on('dialog', (dialog) => {
        dialog.dismiss();
        resolve(dialog.type());
      }),
    );
    await page.fill('#draft', 'unsaved work'); // a prompt needs the user to have done something
    write('extras/guarded.html', read('extras/guarded.html').replace('</body>', '<p>more</p></body>'));
    assert.equal(await within('the unsaved-changes prompt', prompted), 'beforeunload');
    const color = saveH1Color();
    await h1Color(page, color);
    assert.ok(logged('the reload was cancelled'), 'the client says it stays');
    assert.equal(await page.inputValue('#draft'), 'unsaved work');
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * A page fetched first as a fragment (htmx) and then navigated to: the navigation gets the page
 * with the client. The browser revalidated the fragment's cached copy (no client) and showed it.
 */
async function fragmentFirst() {
  const context = await newContext();
  try {
    const page = await openTab(context);
    const fragment = await page.evaluate(() =>
      fetch('/extras/fragment.html', { headers: { 'HX-Request': 'true' } }).then((r) => r.text()),
    );
    assert.ok(!fragment.includes('/__hmr/'), 'the fragment request got no client');
    await page.goto(`${origin}/extras/fragment.html`);
    await connected(page);
  } finally {
    await context.close();
  }
}

/** Image change: the <img> gets a cache-busted src and the new picture, without a reload. */
async function image() {
  const context = await newContext();
  try {
    const page = await openTab(context);
    await page.evaluate(() => (window.kept = 'yes'));
    const before = await page.$eval('#logo', (img) => img.naturalWidth);
    const after = before === 64 ? 32 : 64;
    write('img/logo.svg', svg(after, '#c33'));
    await page.waitForFunction(
      (w) => {
        const img = document.getElementById('logo');
        return img.complete && img.naturalWidth === w && /[?&]t=\d+/.test(img.src);
      },
      after,
    );
    assert.equal(await page.evaluate(() => window.kept), 'yes', 'window variable kept');
    assert.equal(await loads(page), 1, 'no reload');
    assert.ok(logged('[hmr] image updated: /img/logo.svg'), 'console says image updated');
  } finally {
    await context.close();
  }
}

/**
 * A minified srcset (no space after the comma): the candidate after the comma is an image too,
 * busted in place, not a URL nothing uses (which reloaded the page).
 */
async function srcset() {
  const context = await newContext({ deviceScaleFactor: 2 }); // so the 2x candidate is shown
  try {
    const page = await openTab(context, '/extras/srcset.html');
    await page.evaluate(() => (window.kept = 'yes'));
    const size = 40 + (++serial % 20) * 2;
    write('extras/two.svg', svg(size, '#c3c'));
    await page.waitForFunction(
      (w) => {
        const img = document.getElementById('pic');
        return img.complete && /two\.svg\?t=\d+$/.test(img.currentSrc) && img.naturalWidth === w;
      },
      size / 2,
    );
    assert.match(
      await page.getAttribute('#pic', 'srcset'),
      /^\/extras\/one\.svg 1x, \S+\/extras\/two\.svg\?t=\d+ 2x$/,
    );
    assert.equal(await page.evaluate(() => window.kept), 'yes', 'window variable kept');
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * Images the client used to reload the page for. Swapped in place: an SVG sprite's `<use>`
 * (`href` and `xlink:href`), an `<image>` in an inline SVG, a `<video poster>`, the favicon. Left
 * alone: an image this page never loaded (another page's; every tab reloaded for it). Still a
 * reload: an image the page loaded, but not through anything the client can swap (drawn on a
 * canvas).
 */
async function imageRefs() {
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/refs.html');
    const uses = (width) =>
      page.waitForFunction(
        (w) =>
          ['u1', 'u2'].every((id) => {
            const use = document.getElementById(id);
            const href = use.getAttribute('href') ?? use.getAttributeNS('http://www.w3.org/1999/xlink', 'href');
            return use.getBBox().width === w && (w === 10 || /\/extras\/sprite\.svg\?t=\d+#dot$/.test(href));
          }),
        width,
      );
    await uses(10);
    await page.waitForFunction(() => window.drawn);
    await page.fill('#notes', 'typed before the swaps');
    await page.evaluate(() => (window.kept = 'yes'));

    write('extras/sprite.svg', sprite(14, '#c33'));
    await uses(14);
    assert.ok(logged('[hmr] image updated: /extras/sprite.svg'), 'console says image updated');
    /**
     * Wait until `attribute` of the element `selector` names a new copy of `file`, and the page
     * has fetched it (`fetched`: the browser, not the page, fetches a favicon).
     */
    const swapped = (selector, attribute, file, fetched = true) =>
      page.waitForFunction(
        ([sel, attr, name, page]) => {
          const copy = new RegExp(`/extras/${name}\\?t=\\d+$`);
          const entries = performance.getEntriesByType('resource');
          const named = copy.test(document.querySelector(sel).getAttribute(attr));
          return named && (!page || entries.some((e) => copy.test(e.name)));
        },
        [selector, attribute, file, fetched],
      );
    write('extras/pic.svg', svg(13, '#3c3'));
    await swapped('#si', 'href', 'pic.svg');
    write('extras/poster.svg', svg(17, '#33c'));
    await swapped('#v', 'poster', 'poster.svg');
    write('extras/icon.svg', svg(15, '#c3c'));
    await swapped('link[rel=icon]', 'href', 'icon.svg', false);
    assert.equal(await page.inputValue('#notes'), 'typed before the swaps', 'form input kept');
    assert.equal(await page.evaluate(() => window.kept), 'yes', 'window variable kept');
    assert.equal(await loads(page), 1, 'no reload');

    const heard = page.waitForEvent('console', (msg) => msg.text().includes('/extras/unused.svg'));
    write('extras/unused.svg', svg(7, '#3cc'));
    assert.equal((await heard).text(), '[hmr] not in this page, which never loaded it: /extras/unused.svg');
    assert.equal(await loads(page), 1, 'no reload for an image the page never loaded');

    const reloaded = page.waitForEvent('load');
    write('extras/drawn.svg', svg(7, '#cc3'));
    await reloaded;
    assert.ok(logged('[hmr] reloading: /extras/drawn.svg changed'), 'says why');
    assert.equal(await loads(page), 2, 'one reload');

    // The same page in a frame of a page that never loaded the image: the tab reloads all the
    // same (the top asks its frames what they would reload for).
    await page.close();
    const host = await openTab(context, '/extras/refs-host.html');
    const frame = host.frames().find((f) => f !== host.mainFrame());
    await connected(frame);
    await frame.waitForFunction(() => window.drawn);
    const hostReloaded = host.waitForEvent('load');
    write('extras/drawn.svg', svg(8, '#c3c'));
    await hostReloaded;
    assert.equal(await loads(host), 2, 'one reload');
  } finally {
    await context.close();
  }
}

/**
 * A stylesheet saved under a shorter path than the page links it by: its folder watched without
 * the URL prefix it is served under (here the page links /static/extras/prefixed.css, which the
 * server in front serves from /extras/prefixed.css). The sheet is swapped, not the page
 * reloaded, and the console says how to name it exactly. Such a save reloaded the page.
 */
async function savedShorter() {
  const context = await newContext();
  try {
    // Published before the tab opens, which would reload for its own file's batch.
    await publish({
      'extras/prefixed.css': `#pre { color: ${freshColor()}; }\n`,
      'extras/prefixed.html':
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>prefixed</title>\n' +
        '<link rel="stylesheet" href="/static/extras/prefixed.css"></head>\n' +
        '<body><p id="pre">prefixed</p></body></html>\n',
    });
    await context.route(
      (url) => url.pathname.startsWith('/static/'),
      (route) => route.continue({ url: route.request().url().replace('/static/', '/') }),
    );
    const page = await openTab(context, '/extras/prefixed.html');
    await page.evaluate(() => (window.kept = 'yes'));
    const color = freshColor();
    write('extras/prefixed.css', `#pre { color: ${color}; }\n`);
    await page.waitForFunction((c) => getComputedStyle(document.getElementById('pre')).color === c, color);
    assert.match(await page.getAttribute('link[rel=stylesheet]', 'href'), /\/static\/extras\/prefixed\.css\?t=\d+$/);
    assert.equal(await page.evaluate(() => window.kept), 'yes', 'window variable kept');
    assert.equal(await loads(page), 1, 'no reload');
    assert.ok(
      logged('/extras/prefixed.css changed and was taken for /static/extras/prefixed.css: map its folder to /static'),
      'console says how to name it exactly',
    );
    // A later batch that names the link exactly (a build tool's POST) swaps it without the hint.
    const before = await page.getAttribute('link[rel=stylesheet]', 'href');
    const posted = await fetch(`${origin}/__hmr/reload`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ paths: ['/static/extras/prefixed.css'] }),
    });
    assert.equal(posted.status, 202);
    await page.waitForFunction(
      (b) => document.querySelector('link[rel=stylesheet]').getAttribute('href') !== b,
      before,
    );
    await page.waitForFunction(() => !document.querySelector('link[data-hmr-copy]'));
    assert.equal(transcript.filter((l) => l.includes('was taken for')).length, 1, 'one hint');
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * A stylesheet no link of the page names, and that the page never loaded: another page's. Two
 * tabs, each page with its own sheet; a save of one page's sheet reloaded the other tab, and
 * what its user had typed went with it. The other page now loads its own same-origin sheets again
 * in place (its links, in the document and in a shadow root, and the @import of its <style>), as
 * livereload's `reloadMissingCSS` does; which also brings in a sheet it uses under another URL
 * than the batch names (here its <style> imports /static/extras/about-imp.css, which the server
 * in front serves from /extras/about-imp.css). A sheet the page did load, but not through
 * anything the client can swap (a CSS module in adoptedStyleSheets), still reloads it.
 */
async function cssElsewhere() {
  const context = await newContext();
  try {
    await context.route(
      (url) => url.pathname.startsWith('/static/'),
      (route) => route.continue({ url: route.request().url().replace('/static/', '/') }),
    );
    const home = await openTab(context, '/extras/home.html');
    const about = await openTab(context, '/extras/about.html');
    await about.waitForFunction(() => getComputedStyle(document.getElementById('mod')).color === 'rgb(8, 0, 4)');
    await about.fill('#notes', 'typed in the about tab');
    await about.evaluate(() => (window.kept = 'yes'));
    const sheets = () =>
      about.evaluate(() => {
        const shadow = document.getElementById('xa').shadowRoot;
        const links = [document, shadow].flatMap((root) => [...root.querySelectorAll('link[rel=stylesheet]')]);
        const imports = [...document.querySelector('style').sheet.cssRules].map((rule) => rule.href);
        return [...links.map((link) => link.getAttribute('href')), ...imports];
      });
    assert.deepEqual(await sheets(), ['/extras/about.css', '/extras/about.css', '/static/extras/about-imp.css']);

    // home.css: swapped in the home tab; the about tab loads its own sheets again, and stays.
    const copy = about.waitForRequest((req) => /\/extras\/about\.css\?t=\d+$/.test(req.url()));
    const color = freshColor();
    write('extras/home.css', `#home { color: ${color}; }\n`);
    await home.waitForFunction((c) => getComputedStyle(document.getElementById('home')).color === c, color);
    await within('the about tab to load its sheet again', copy);
    await about.waitForFunction(() => !document.querySelector('[data-hmr-copy]'));
    await about.waitForFunction(() => document.querySelector('style').sheet.cssRules.length === 1);
    const busted = await sheets();
    assert.equal(busted.length, 3, busted);
    assert.match(busted[0], /\/extras\/about\.css\?t=\d+$/, 'the link, loaded again');
    assert.match(busted[1], /\/extras\/about\.css\?t=\d+$/, "the shadow root's link");
    assert.match(busted[2], /\/static\/extras\/about-imp\.css\?t=\d+$/, "the <style>'s @import");
    assert.equal(await about.inputValue('#notes'), 'typed in the about tab', 'what was typed stays');
    assert.equal(await about.evaluate(() => window.kept), 'yes', 'window variable kept');
    assert.ok(
      logged(
        '/extras/home.css matched no stylesheet in this page; loading its own again in place: ' +
          '/extras/about.css, /static/extras/about-imp.css',
      ),
      'the console says what it did',
    );

    // A sheet the page uses under another URL (a folder mapped under the wrong prefix).
    const imported = freshColor();
    write('extras/about-imp.css', `#imp { color: ${imported}; }\n`);
    await about.waitForFunction((c) => getComputedStyle(document.getElementById('imp')).color === c, imported);
    for (const page of [home, about]) assert.equal(await loads(page), 1, 'no reload');

    // One batch with a sheet the about page has as a CSS module: it reloads, the home tab not.
    const reloaded = about.waitForEvent('load');
    const handled = home.waitForEvent('console', (msg) =>
      msg.text().startsWith('[hmr] /extras/about-mod.css matched no stylesheet in this page'),
    );
    const posted = await fetch(`${origin}/__hmr/reload`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ paths: ['/extras/home.css', '/extras/about-mod.css'] }),
    });
    assert.equal(posted.status, 202);
    await reloaded;
    await handled;
    assert.ok(logged('[hmr] reloading: /extras/about-mod.css changed'), 'says why');
    assert.equal(await loads(about), 2, 'the about tab reloaded');
    assert.equal(await loads(home), 1, 'the home tab did not');
  } finally {
    await context.close();
  }
}

/**
 * An XHTML page served as XML (`application/xhtml+xml`) runs no module script in Chromium: the
 * classic loader tag brings the client all the same, and a stylesheet swaps in place.
 */
async function xhtml() {
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/page.xhtml');
    assert.equal(await page.evaluate(() => document.contentType), 'application/xhtml+xml');
    const color = freshColor();
    write('extras/xhtml.css', `#x { color: ${color}; }\n`);
    await page.waitForFunction(
      (c) => getComputedStyle(document.getElementById('x')).color === c,
      color,
    );
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/** Container modules: update runs with the new module, once per batch; app state stays. */
async function modules() {
  const context = await newContext();
  try {
    const page = await openTab(context);
    await page.waitForFunction(() => window.app?.updates === 1);
    await page.click('#step');
    await page.click('#step');
    assert.equal(await page.evaluate(() => window.app.count), 2);

    // One module.
    const label = `Count (v${++serial}):`;
    write('js/view.js', read('js/view.js').replace(/Count[^:`]*:/, label));
    await page.waitForFunction((l) => document.getElementById('view').textContent.startsWith(l), label);
    assert.equal(await page.textContent('#view'), `${label} 2. Updates so far: 2.`);
    assert.ok(logged('[hmr] modules updated: /js/view.js'), 'console says modules updated');

    // Both modules at once: update runs once per batch that touched them (a save of two files
    // is usually one batch, but the watcher may split it; the console says which).
    const modelIn = page.waitForEvent('console', (m) => /modules updated: .*\/js\/model\.js/.test(m.text()));
    const label2 = `Count (v${++serial}):`;
    write('js/view.js', read('js/view.js').replace(/Count[^:`]*:/, label2));
    write('js/model.js', read('js/model.js').replace(/count \+ \d+/, 'count + 10'));
    await modelIn;
    await page.waitForFunction((l) => document.getElementById('view').textContent.startsWith(l), label2);
    await page.click('#step');
    assert.equal(await page.evaluate(() => window.app.count), 12, 'the new model steps by 10');
    const batches = transcript.filter((l) => l.includes('[hmr] modules updated')).length - 1;
    assert.equal(await page.evaluate(() => window.app.updates), 2 + batches, 'one update per batch');
    assert.equal(await loads(page), 1, 'no reload');

    // A reload now gets the new modules, not the copies the browser cached before the swap.
    await page.reload();
    await page.waitForFunction(() => window.app?.updates === 1);
    assert.ok((await page.textContent('#view')).startsWith(label2), 'the new view after a reload');
    await page.click('#step');
    assert.equal(await page.evaluate(() => window.app.count), 10, 'the new model after a reload');
  } finally {
    await context.close();
  }
}

/**
 * A container registered after its module changed (a route loaded later) gets the new copy, not
 * the one the browser holds under the plain URL.
 */
async function lateContainer() {
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/late.html');
    await page.waitForFunction(() => document.getElementById('first').textContent === 'v1');
    write('extras/widget.js', 'export const v = "v2";\n');
    await page.waitForFunction(() => document.getElementById('first').textContent === 'v2');
    await page.evaluate(() => window.lateRoute());
    await page.waitForFunction(() => document.getElementById('later').textContent !== '');
    assert.equal(await page.textContent('#later'), 'v2');
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * An update function that never returns (it awaits an event that never comes) holds later
 * changes back for a few seconds at most, not for good.
 */
async function stuckUpdate() {
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/stuck.html');
    await page.waitForFunction(() => document.getElementById('out').textContent === 'v1');
    write('extras/stuck.js', 'export const v = "v2";\n');
    await page.waitForFunction(() => document.getElementById('out').textContent === 'v2');
    const color = saveH1Color();
    await h1Color(page, color);
    assert.ok(logged('is still being applied after'), 'the client says it went on');
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/** A broken module or update: an overlay, no reload; dismissible; the next good save clears it. */
async function errors() {
  const context = await newContext();
  try {
    const page = await openTab(context);
    await page.waitForFunction(() => window.app?.updates === 1);
    const good = read('js/view.js');

    // The page's own error listener: finding where the module broke must not report to it.
    await page.evaluate(() => {
      window.pageErrors = 0;
      addEventListener('error', () => window.pageErrors++);
    });
    write('js/view.js', 'export const ok = 1;\nexport function describe(state {\n');
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'visible' });
    assert.match(await page.textContent('#hmr-proxy-overlay strong'), /\/js\/view\.js failed to load/);
    // Chromium's SyntaxError from import() names no place; the overlay does.
    assert.match(await page.textContent('#hmr-proxy-overlay pre'), /SyntaxError.*\n\s+at \/js\/view\.js:2:\d+/);
    assert.ok(transcript.some((l) => l.includes('error: [hmr] /js/view.js failed to load')), 'console error');
    assert.equal(await page.evaluate(() => window.pageErrors), 0, 'the page heard of the error');
    const uncaught = (l) => /PAGE ERROR|Uncaught/.test(l) && /SyntaxError|Unexpected/.test(l);
    assert.ok(!transcript.some(uncaught), 'reported as uncaught');
    await page.click('#hmr-proxy-overlay button');
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'detached' });

    // A SyntaxError thrown while the module ran (not one of parsing) says where in its stack:
    // the module must not run again, in the hidden frame, to find out.
    write('js/view.js', 'top.viewRuns = (top.viewRuns || 0) + 1;\nJSON.parse("{");\n');
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'visible' });
    assert.match(await page.textContent('#hmr-proxy-overlay pre'), /SyntaxError[\s\S]*\/js\/view\.js/);
    assert.equal(await page.evaluate(() => window.viewRuns), 1, 'it ran again to be located');
    await page.click('#hmr-proxy-overlay button');
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'detached' });

    // An import of a file that is not there: Chromium's error names only the module that imports
    // it ("Failed to fetch dynamically imported module: …/js/view.js?t=…"); the overlay names
    // the file, and what the server answered.
    write('js/view.js', `import { q } from './helperz.js';\n${good}`);
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'visible' });
    const missing = /\/js\/helperz\.js \(404\) imported by \/js\/view\.js could not be loaded/;
    assert.match(await page.textContent('#hmr-proxy-overlay strong'), missing);
    assert.ok(transcript.some((l) => l.includes('error: [hmr]') && missing.test(l)), 'console error');
    await page.click('#hmr-proxy-overlay button');
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'detached' });

    write('js/view.js', 'export function describe() { throw new Error("view exploded"); }\n');
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'visible' });
    assert.match(await page.textContent('#hmr-proxy-overlay strong'), /update function threw/);
    assert.match(await page.textContent('#hmr-proxy-overlay pre'), /view exploded/);

    const label = `Count (v${++serial}):`;
    write('js/view.js', good.replace(/Count[^:`]*:/, label));
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'detached' });
    await page.waitForFunction((l) => document.getElementById('view').textContent.startsWith(l), label);
    // The throwing update counted as a call; the broken import did not call it.
    assert.equal(await page.evaluate(() => window.app.updates), 3);
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * A save that breaks a script the page runs as it loads (not a container's module: the page
 * reloads for it) shows the overlay on the reloaded page: a module that does not parse (with its
 * line), one that imports a file that is not there, a module before the client's tag (its error
 * came before the client listened), a classic script the page cannot load. The page came back
 * blank, with the error in the console only. A first load shows none of the page's own errors,
 * and the next good save reloads to a page without an overlay.
 */
async function loadErrors() {
  const boot = (classic = '') =>
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>boot</title>\n' +
    (classic ? '' : '<script type="module" src="/extras/boot-head.js"></script>') +
    `</head>\n<body><p id="out"></p>${classic}\n` +
    '<script type="module" src="/extras/boot.js"></script></body></html>\n';
  const shows = (v) => `document.getElementById("out").textContent = "${v}";\n`;
  await publish({
    'extras/boot-head.js': 'window.head = "ok";\n',
    'extras/boot.js': `${shows('v1')}throw new Error("the page's own noise");\n`,
    'extras/boot.html': boot(),
  });
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/boot.html');
    const overlay = () => page.locator('#hmr-proxy-overlay');
    const title = () => page.textContent('#hmr-proxy-overlay strong');
    /** The client is done with this load's errors. */
    const watched = () =>
      page.waitForFunction(() => window[Symbol.for('hmr-proxy')]?.state.loadWatch === 'done');
    /**
     * Save, and wait for the reload it causes. Each save a second later than the one before:
     * Python's server answers the reload's If-Modified-Since by the second, and took two saves
     * within one for the same file (304, the broken copy again).
     */
    let mtime = Date.now();
    const reload = async (rel, text) => {
      const reloaded = page.waitForEvent('load');
      mtime = Math.max(mtime + 1000, Date.now());
      write(rel, text, new Date(mtime));
      await reloaded;
    };
    await page.waitForFunction(() => document.readyState === 'complete');
    assert.equal((await clientState(page)).loadWatch, 'none', 'a first load is not watched');
    assert.equal(await overlay().count(), 0, "the page's own error on a first load");

    await reload('extras/boot.js', `${shows('v2')}export const v = ;\n`);
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'visible' });
    assert.match(await title(), /\/extras\/boot\.js failed to load/);
    assert.match(await page.textContent('#hmr-proxy-overlay pre'), /SyntaxError.*\n\s+at \/extras\/boot\.js:2:\d+/);
    assert.ok(logged('error: [hmr] /extras/boot.js failed to load'), 'console error');
    await page.click('#hmr-proxy-overlay button');
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'detached' });

    await reload('extras/boot.js', `import "/extras/boot-gone.js";\n${shows('v3')}`);
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'visible' });
    assert.match(await title(), /\/extras\/boot-gone\.js \(404\) imported by \/extras\/boot\.js could not be loaded/);

    // The next good save: a page without an overlay.
    await reload('extras/boot.js', shows('v4'));
    await watched();
    assert.equal(await page.textContent('#out'), 'v4');
    assert.equal(await overlay().count(), 0, 'a stale overlay');

    // A module before the client's tag runs before the client listens: its error is asked for.
    await reload('extras/boot-head.js', 'window.head = "broken";\nexport const h = ;\n');
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'visible' });
    assert.match(await title(), /\/extras\/boot-head\.js failed to load/);
    assert.match(await page.textContent('#hmr-proxy-overlay pre'), /SyntaxError.*\n\s+at \/extras\/boot-head\.js:2:\d+/);
    assert.equal(await page.textContent('#out'), 'v4', 'the page ran on');

    // A classic script the page names, which fails before the client starts: told by its fetch.
    await reload('extras/boot.html', boot('<script src="/extras/boot-classic.js"></script>'));
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'visible' });
    assert.match(await title(), /\/extras\/boot-classic\.js \(404\) could not be loaded/);
    await watched();
    assert.equal(await loads(page), 6, 'one reload a save');
  } finally {
    await context.close();
  }
}

/**
 * A good save of one module while another is still broken: update waits (it would run with the
 * broken module's last good copy) and the overlay stays; the fix brings both in, in one update.
 */
async function stillBroken() {
  const context = await newContext();
  try {
    const page = await openTab(context);
    await page.waitForFunction(() => window.app?.updates === 1);
    const view = read('js/view.js');
    const model = read('js/model.js');

    write('js/view.js', 'export function describe(state {\n');
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'visible' });

    // The model's batch is done when the console says what came of it: an update, or none.
    const handled = page.waitForEvent('console', (m) =>
      /modules updated: \/js\/model\.js|\/js\/view\.js failed to load; the update waits/.test(m.text()),
    );
    write('js/model.js', model.replace(/count \+ \d+/, 'count + 5'));
    await handled;
    assert.equal(await page.evaluate(() => window.app.updates), 1, 'no update with the old view');
    assert.match(await page.textContent('#hmr-proxy-overlay strong'), /\/js\/view\.js failed to load/);

    const label = `Count (v${++serial}):`;
    write('js/view.js', view.replace(/Count[^:`]*:/, label));
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'detached' });
    await page.waitForFunction((l) => document.getElementById('view').textContent.startsWith(l), label);
    assert.equal(await page.evaluate(() => window.app.updates), 2, 'one update, with the fix');
    await page.click('#step');
    assert.equal(await page.evaluate(() => window.app.count), 5, 'the model saved meanwhile is in');
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * A good save while a module of the same container is broken: the container keeps the copy
 * `update` last had until the update runs with the fix, then takes the newest good one. The
 * app's container held the new module at once, though `update` had not run.
 */
async function heldBack() {
  const mod = (v) => `export const v = "${v}";\n`;
  await publish({
    'extras/held-a.js': mod('a1'),
    'extras/held-b.js': mod('b1'),
    'extras/held.html': modulePage(
      'held back',
      '<p id="out"></p>',
      'window.updates = 0;\n' +
        'container({ "/extras/held-a.js": "a", "/extras/held-b.js": "b" }, (c) => {\n' +
        '  window.c = c;\n  window.updates += 1;\n' +
        '  document.getElementById("out").textContent = `${c.a.v} ${c.b.v}`;\n});',
    ),
  });
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/held.html');
    await page.waitForFunction(() => document.getElementById('out').textContent === 'a1 b1');
    write('extras/held-b.js', 'export const v = ;\n');
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'visible' });
    for (const v of ['a2', 'a3']) {
      const waits = page.waitForEvent('console', (m) =>
        /\/extras\/held-b\.js failed to load; the update waits/.test(m.text()),
      );
      write('extras/held-a.js', mod(v));
      await waits;
    }
    assert.equal(await page.evaluate(() => window.c.a.v), 'a1', 'the new a.js waits outside');
    assert.equal(await page.evaluate(() => window.updates), 1, 'no update yet');
    write('extras/held-b.js', mod('b2'));
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'detached' });
    assert.equal(await page.textContent('#out'), 'a3 b2', 'the newest a.js goes in with the fix');
    assert.equal(await page.evaluate(() => window.updates), 2, 'one update, with the fix');
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * One container's update throws; another's then updates: the overlay stays (the first still
 * fails), and goes when the first one's own update runs through. The second's update took it
 * away.
 */
async function twoContainers() {
  const mod = (v) => `export const text = () => "${v}";\n`;
  const show = (id, url) =>
    `container({ "${url}": "m" }, (c) => { document.getElementById("${id}").textContent = c.m.text(); });`;
  await publish({
    'extras/box-a.js': mod('a1'),
    'extras/box-b.js': mod('b1'),
    'extras/boxes.html': modulePage(
      'two containers',
      '<p id="a"></p><p id="b"></p>',
      `${show('a', '/extras/box-a.js')}\n${show('b', '/extras/box-b.js')}`,
    ),
  });
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/boxes.html');
    const text = () =>
      page.evaluate(() => ['a', 'b'].map((id) => document.getElementById(id).textContent).join(' '));
    await page.waitForFunction(() => document.getElementById('b').textContent === 'b1');
    assert.equal(await text(), 'a1 b1');
    write('extras/box-a.js', 'export const text = () => { throw new Error("a exploded"); };\n');
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'visible' });
    assert.match(await page.textContent('#hmr-proxy-overlay strong'), /update function threw/);

    // The overlay goes (or not) right after the console line, in the same task.
    const bIn = page.waitForEvent('console', (m) => m.text().includes('modules updated: /extras/box-b.js'));
    write('extras/box-b.js', mod('b2'));
    await bIn;
    assert.equal(await text(), 'a1 b2');
    assert.equal(await page.locator('#hmr-proxy-overlay').count(), 1, 'a.js still throws: the overlay stays');

    write('extras/box-a.js', mod('a2'));
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'detached' });
    assert.equal(await text(), 'a2 b2');
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * A module's dispose callback runs once per copy, before the next copy's top level: a timer or
 * listener it set up does not pile up save after save. One that throws is logged, and the swap
 * goes on; a module in two containers is retired once.
 */
async function disposeCallbacks() {
  const mod = (v, extra = '') =>
    'import { dispose } from "/__hmr/client.js";\n' +
    `window.trail.push("run ${v}");\n` +
    'const timer = setInterval(() => {}, 1000);\n' +
    `dispose(import.meta.url, () => { clearInterval(timer); window.trail.push("dispose ${v}"); ${extra} });\n` +
    `export const v = "${v}";\n`;
  const show = (id) =>
    `container({ "/extras/disposing.js": "m" }, (c) => { document.getElementById("${id}").textContent = c.m.v; });`;
  await publish({
    'extras/disposing.js': mod('v1'),
    'extras/disposing.html': modulePage(
      'dispose',
      '<p id="a"></p><p id="b"></p>',
      `window.trail = [];\n${show('a')}\n${show('b')}`,
    ),
  });
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/disposing.html');
    const shown = (v) =>
      page.waitForFunction((v) => ['a', 'b'].every((id) => document.getElementById(id).textContent === v), v);
    await shown('v1');
    write('extras/disposing.js', mod('v2', 'throw new Error("v2 would not go");'));
    await shown('v2');
    write('extras/disposing.js', mod('v3'));
    await shown('v3');
    assert.deepEqual(await page.evaluate(() => window.trail), [
      'run v1',
      'dispose v1',
      'run v2',
      'dispose v2',
      'run v3',
    ]);
    assert.ok(
      transcript.some((l) => l.includes('[hmr] a dispose callback of /extras/disposing.js threw')),
      'the throw is logged',
    );
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * One file in two containers under two queries. A copy that takes longer than the batch
 * patience is overtaken by the next save; when it finally loads it disposes itself only, not
 * the other container's live copy of the same file.
 */
async function overtakenDispose() {
  const mod = (v, slow = false) =>
    'import { dispose } from "/__hmr/client.js";\n' +
    `const who = (new URL(import.meta.url).searchParams.get("variant") || "a") + " ${v}";\n` +
    'top.trail.push("run " + who);\n' +
    'dispose(import.meta.url, () => top.trail.push("dispose " + who));\n' +
    (slow ? 'if (who.startsWith("b")) await new Promise((r) => setTimeout(r, 6000));\n' : '') +
    'top.trail.push("loaded " + who);\n' +
    `export const v = "${v}";\n`;
  const show = (id, url) =>
    `container({ "${url}": "m" }, (c) => { document.getElementById("${id}").textContent = c.m.v; });`;
  await publish({
    'extras/overtaken.js': mod('v1'),
    'extras/overtaken.html': modulePage(
      'overtaken',
      '<p id="a"></p><p id="b"></p>',
      `window.trail = [];\n${show('a', '/extras/overtaken.js')}\n${show('b', '/extras/overtaken.js?variant=b')}`,
    ),
  });
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/overtaken.html');
    const shown = (v) =>
      page.waitForFunction((v) => ['a', 'b'].every((id) => document.getElementById(id).textContent === v), v);
    await shown('v1');
    const wentOn = page.waitForEvent('console', (m) => m.text().includes('is still being applied after'));
    write('extras/overtaken.js', mod('v2', true));
    await wentOn;
    write('extras/overtaken.js', mod('v3'));
    await shown('v3');
    // The slow copy of b's v2 loads last; the client has taken it in by the next task.
    await page.waitForFunction(() => window.trail.includes('loaded b v2'), null, { timeout: 15000 });
    const trail = await page.evaluate(() => window.trail);
    assert.ok(!trail.includes('dispose a v3'), `a's live copy was disposed: ${trail}`);
    assert.ok(!trail.includes('dispose b v3'), `b's live copy was disposed: ${trail}`);
    assert.ok(trail.includes('dispose b v2'), `b's overtaken copy was never disposed: ${trail}`);
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * A module the page swaps is a Web Worker's too: in the worker, where nothing is swapped, its
 * dispose() and the worker's own container() do nothing, and the worker runs. It died on a
 * TypeError (the client is the page's, and a worker has none).
 */
async function workerDispose() {
  const ticker = (v) =>
    'import { dispose } from "/__hmr/client.js";\n' +
    'const timer = setInterval(() => {}, 1000);\n' +
    'dispose(import.meta.url, () => clearInterval(timer));\n' +
    `export const v = "${v}";\n`;
  await publish({
    'extras/wk-ticker.js': ticker('v1'),
    'extras/wk-worker.js':
      'import { container } from "/__hmr/client.js";\n' +
      'import { v } from "/extras/wk-ticker.js";\n' +
      'container({ "/extras/wk-ticker.js": "t" }, () => postMessage("updated"));\n' +
      'postMessage(`worker has ${v}`);\n',
    'extras/wk.html': modulePage(
      'worker',
      '<p id="page"></p><p id="worker"></p>',
      'container({ "/extras/wk-ticker.js": "t" }, (c) => {\n' +
        '  document.getElementById("page").textContent = c.t.v;\n});\n' +
        'const worker = new Worker("/extras/wk-worker.js", { type: "module" });\n' +
        'worker.onmessage = (e) => { document.getElementById("worker").textContent += e.data; };\n' +
        'worker.onerror = (e) => { document.getElementById("worker").textContent += e.message; };',
    ),
  });
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/wk.html');
    await page.waitForFunction(() => document.getElementById('worker').textContent !== '');
    assert.equal(await page.textContent('#worker'), 'worker has v1');
    write('extras/wk-ticker.js', ticker('v2'));
    await page.waitForFunction(() => document.getElementById('page').textContent === 'v2');
    assert.equal(await page.textContent('#worker'), 'worker has v1', 'the worker keeps its copy');
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * A container's module deleted, behind a dev server that lets the browser cache scripts: the
 * page's next load fails on it as the swap did, and does not run the deleted module from the
 * cache. (That is why a failed swap fetches the module's plain URL again too, a second 404 in
 * the console.)
 */
async function deletedCached() {
  await publish({
    'extras/gone.js': 'export const v = "here";\n',
    'extras/gone.html': modulePage(
      'gone',
      '<p id="out"></p>',
      'container({ "/extras/gone.js": "m" }, (c) => { document.getElementById("out").textContent = c.m.v; });',
    ),
  });
  const front = await frontProxy({ cached: true });
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/gone.html', front.origin);
    await page.waitForFunction(() => document.getElementById('out').textContent === 'here');
    const plain = `${front.origin}/extras/gone.js`;
    const refetched = page.waitForResponse((r) => r.url() === plain && r.status() === 404);
    fs.rmSync(path.join(site, 'extras/gone.js'));
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'visible' });
    assert.match(await page.textContent('#hmr-proxy-overlay strong'), /\/extras\/gone\.js \(404\)/);
    await refetched;
    await page.reload();
    await page.waitForFunction(
      () => document.getElementById('hmr-proxy-overlay') || document.getElementById('out').textContent,
    );
    assert.equal(await page.textContent('#out'), '', 'the deleted module ran, from the cache');
    assert.match(await page.textContent('#hmr-proxy-overlay strong'), /\/extras\/gone\.js \(404\)/);
  } finally {
    await context.close();
    front.close();
  }
}

/**
 * A reload for a changed file the page loaded, from a dev server that sends `max-age`: the
 * reloaded page runs the new copy. A reload revalidates the page, not what it loads: the helper
 * its module imports came back from the HTTP cache, and so did the old text.
 */
async function cachedReload() {
  const page =
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>cached</title></head>\n' +
    '<body><p id="out"></p><script type="module">\n' +
    `import { v } from "/extras/cached/helper.js";\ndocument.getElementById("out").textContent = v;\n` +
    '</script></body></html>\n';
  await publish({
    'extras/cached/helper.js': 'export const v = "one";\n',
    'extras/cached/page.html': page,
  });
  const front = await frontProxy({ cached: true });
  const context = await newContext();
  try {
    const tab = await openTab(context, '/extras/cached/page.html', front.origin);
    await tab.waitForFunction(() => document.getElementById('out').textContent === 'one');
    const reloaded = tab.waitForEvent('load');
    write('extras/cached/helper.js', 'export const v = "two";\n');
    await within('the reload', reloaded);
    await tab.waitForFunction(() => document.getElementById('out').textContent !== '');
    assert.equal(await tab.textContent('#out'), 'two', 'the reloaded page ran the cached copy');
  } finally {
    await context.close();
    front.close();
  }
}

/**
 * JSON and CSS modules in a container: imported with their type, swapped on a save like
 * JavaScript ones (a JSON module without `with { type: 'json' }` failed to load).
 */
async function dataModules() {
  const data = (title) => `{ "title": "${title}" }\n`;
  const look = (rgb) => `#t { color: rgb(${rgb}); }\n`;
  await publish({
    'extras/data.json': data('one'),
    'extras/look.css': look('1, 2, 3'),
    'extras/data.html': modulePage(
      'data modules',
      '<p id="t"></p>',
      'container({ "/extras/data.json": "data", "/extras/look.css": "look" }, (c) => {\n' +
        '  document.getElementById("t").textContent = c.data.default.title;\n' +
        '  document.adoptedStyleSheets = [c.look.default];\n' +
        '});',
    ),
  });
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/data.html');
    const color = () => page.evaluate(() => getComputedStyle(document.getElementById('t')).color);
    await page.waitForFunction(() => document.getElementById('t').textContent === 'one');
    assert.equal(await color(), 'rgb(1, 2, 3)');
    write('extras/data.json', data('two'));
    await page.waitForFunction(() => document.getElementById('t').textContent === 'two');
    write('extras/look.css', look('4, 5, 6'));
    await page.waitForFunction(() => getComputedStyle(document.getElementById('t')).color === 'rgb(4, 5, 6)');
    assert.equal(await loads(page), 1, 'no reload');
    assert.ok(!logged('failed to load'), 'no overlay');
  } finally {
    await context.close();
  }
}

/**
 * A registered module that defines a custom element cannot run twice in a page (the name is
 * taken): its save reloads the page, once, and says why. It showed the overlay on every save and
 * held back every other module of its container.
 */
async function definedElement() {
  const card = (v) =>
    `customElements.define("x-hmr-card", class extends HTMLElement {\n` +
    `  connectedCallback() { this.textContent = "card ${v}"; }\n});\nexport const v = "${v}";\n`;
  await publish({
    'extras/ce-card.js': card('v1'),
    'extras/ce.html': modulePage(
      'custom element',
      '<x-hmr-card id="card"></x-hmr-card>',
      'container({ "/extras/ce-card.js": "card" }, () => {});',
    ),
  });
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/ce.html');
    await page.waitForFunction(() => document.getElementById('card').textContent === 'card v1');
    const reloaded = page.waitForEvent('load');
    write('extras/ce-card.js', card('v2'));
    await reloaded;
    await page.waitForFunction(() => document.getElementById('card').textContent === 'card v2');
    assert.equal(await loads(page), 2, 'one reload');
    assert.ok(logged('[hmr] reloading: /extras/ce-card.js defines a custom element'), 'says why');
    assert.ok(!logged('failed to load'), 'no overlay');
  } finally {
    await context.close();
  }
}

/**
 * A source map saved with its module (tsc, esbuild, swc and babel write both): the module is
 * swapped, and the map, which nothing in the page claims (only DevTools reads it), reloads
 * nothing. It reloaded the page.
 */
async function sourceMap() {
  const js = (v) => `export const v = "${v}";\n//# sourceMappingURL=sm.js.map\n`;
  const map = (v) => `{"version":3,"file":"sm.js","sources":["sm-${v}.ts"],"mappings":"AAAA"}\n`;
  await publish({
    'extras/sm.js': js('v1'),
    'extras/sm.js.map': map('v1'),
    'extras/sm.html': modulePage(
      'source map',
      '<p id="out"></p>',
      'container({ "/extras/sm.js": "m" }, (c) => { document.getElementById("out").textContent = c.m.v; });',
    ),
  });
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/sm.html');
    await page.waitForFunction(() => document.getElementById('out').textContent === 'v1');
    // The map first: should the watcher split the save, the module's batch comes last, so its
    // swap shows that the map's batch has been applied too.
    write('extras/sm.js.map', map('v2'));
    write('extras/sm.js', js('v2'));
    await page.waitForFunction(() => document.getElementById('out').textContent === 'v2');
    assert.equal(await loads(page), 1, 'no reload');
    assert.ok(logged('[hmr] modules updated: /extras/sm.js'), 'swapped');
  } finally {
    await context.close();
  }
}

/**
 * Container keys go through the page's import map: a bare specifier, and a path the map points
 * at another file, whose save swaps the file the page runs. Absolute and relative keys (on a
 * page in a subfolder) still resolve against the page. The busted key (`mapped.js?t=…`) missed
 * the map and ran the unmapped file, saving the mapped one reloaded, and a bare key was a 404.
 * A module that imports a name a bare specifier's module does not export is shown with its file,
 * line and column: the hidden frame that finds them had no import map, and failed otherwise.
 */
async function importMap() {
  const mod = (v) => `export const v = "${v}";\n`;
  const map = { imports: { 'app/bare': '/extras/im/bare.js', '/extras/im/mapped.js': '/extras/im/impl.js' } };
  const show = (id, keys) =>
    `container({ ${keys} }, (c) => {\n` +
    `  const text = Object.keys(c).sort().map((k) => c[k].v).join(" ");\n` +
    `  document.getElementById("${id}").textContent = text;\n});`;
  await publish({
    'extras/im/abs.js': mod('abs1'),
    'extras/im/rel.js': mod('rel1'),
    'extras/im/bare.js': mod('bare1'),
    'extras/im/mapped.js': mod('unmapped!'),
    'extras/im/impl.js': mod('impl1'),
    'extras/im/index.html': modulePage(
      'import map',
      '<p id="paths"></p><p id="bare"></p>',
      `${show('paths', '"/extras/im/abs.js": "a", "./rel.js": "b", "/extras/im/mapped.js": "c"')}\n` +
        // Its own container: a key the client cannot resolve holds back only its own.
        show('bare', '"app/bare": "a"'),
      `\n<script type="importmap">${JSON.stringify(map)}</script>`,
    ),
  });
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/im/');
    const text = () =>
      page.evaluate(() => ['paths', 'bare'].map((id) => document.getElementById(id).textContent).join(' | '));
    await page.waitForFunction(() => document.getElementById('paths').textContent !== '');
    await page.waitForFunction(() => document.getElementById('bare').textContent !== '');
    assert.equal(await text(), 'abs1 rel1 impl1 | bare1');
    for (const [file, v] of [['abs', 'abs2'], ['rel', 'rel2'], ['bare', 'bare2'], ['impl', 'impl2']]) {
      write(`extras/im/${file}.js`, mod(v));
    }
    await page.waitForFunction(() =>
      document.getElementById('paths').textContent === 'abs2 rel2 impl2' &&
      document.getElementById('bare').textContent === 'bare2',
    );

    write('extras/im/abs.js', '// a link error\nimport { nope } from "app/bare";\nexport const v = nope;\n');
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'visible' });
    assert.match(await page.textContent('#hmr-proxy-overlay strong'), /\/extras\/im\/abs\.js failed to load/);
    const where = /SyntaxError.*'app\/bare'.*'nope'\n\s+at \/extras\/im\/abs\.js:2:\d+/;
    assert.match(await page.textContent('#hmr-proxy-overlay pre'), where);
    write('extras/im/abs.js', mod('abs3'));
    await page.waitForSelector('#hmr-proxy-overlay', { state: 'detached' });
    await page.waitForFunction(() => document.getElementById('paths').textContent === 'abs3 rel2 impl2');
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/** An @imported sheet swaps its importer; url() images in sheets and inline styles get busted. */
async function extras() {
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/');
    await page.evaluate(() => (window.kept = 'yes'));
    const color = freshColor();
    const line = '[hmr] css swapped: /extras/theme.css (imported by /extras/main.css)';
    const said = page.waitForEvent('console', (m) => m.text() === line);
    write('extras/theme.css', `#box { color: ${color}; }\n`);
    await page.waitForFunction(
      (c) => getComputedStyle(document.getElementById('box')).color === c,
      color,
    );
    await said;

    write('extras/dot.svg', svg(8, '#3c3'));
    await page.waitForFunction(() =>
      ['bg', 'inline'].every((id) =>
        /dot\.svg\?t=\d+/.test(getComputedStyle(document.getElementById(id)).backgroundImage),
      ),
    );
    assert.equal(await page.evaluate(() => window.kept), 'yes', 'window variable kept');
    assert.equal(await loads(page), 1, 'no reload');

    // A reload now gets the new imported sheet, not the one cached before the swap.
    await page.reload();
    assert.equal(await page.$eval('#box', (el) => getComputedStyle(el).color), color);
  } finally {
    await context.close();
  }
}

/**
 * A sheet @imported two levels below a <link> (deep.css imports deep-mid.css, which imports
 * deep-leaf.css): its new rule applies and the link's other rules stay. An @import inserted into
 * deep-mid.css switched off every rule of the link in Chromium. Saved with the link's own sheet,
 * both changes apply. Two levels below a <style>, too.
 */
async function deepImport() {
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/deep.html');
    const colors = () =>
      page.evaluate(() => ['da', 'db', 'dc'].map((id) => getComputedStyle(document.getElementById(id)).color));
    const [a, b] = await colors();
    assert.deepEqual([a, b], ['rgb(4, 0, 1)', 'rgb(4, 0, 2)']);
    const leaf = freshColor();
    const line = '[hmr] css swapped: /extras/deep-leaf.css (imported by /extras/deep-mid.css)';
    const said = page.waitForEvent('console', (m) => m.text() === line);
    write('extras/deep-leaf.css', `#dc { color: ${leaf}; }\n`);
    await page.waitForFunction((c) => getComputedStyle(document.getElementById('dc')).color === c, leaf);
    assert.deepEqual(await colors(), [a, b, leaf], "the link's other rules stay");
    await said;

    // The link's own sheet and the deep one, saved together.
    const top = freshColor();
    const leaf2 = freshColor();
    write('extras/deep.css', read('extras/deep.css').replace(/#da \{[^}]*\}/, `#da { color: ${top}; }`));
    write('extras/deep-leaf.css', `#dc { color: ${leaf2}; }\n`);
    await page.waitForFunction(
      ([t, l]) =>
        getComputedStyle(document.getElementById('da')).color === t &&
        getComputedStyle(document.getElementById('dc')).color === l,
      [top, leaf2],
    );
    assert.equal((await colors())[1], b, "the middle sheet's rule stays");
    await page.waitForFunction(() => document.querySelectorAll('link[rel=stylesheet]').length === 1);
    assert.equal(await loads(page), 1, 'no reload');

    // Under a <style>, the @import two levels down is replaced in place.
    const styled = freshColor();
    write('extras/deep-sleaf.css', `#dd { color: ${styled}; }\n`);
    await page.waitForFunction((c) => getComputedStyle(document.getElementById('dd')).color === c, styled);
    assert.deepEqual(await colors(), [top, b, leaf2]);
    assert.equal(await loads(page), 1, 'no reload');

    // A reload gets the new sheets, not copies cached before the swap.
    await page.reload();
    assert.deepEqual(await colors(), [top, b, leaf2]);
    assert.equal(await page.$eval('#dd', (el) => getComputedStyle(el).color), styled);
  } finally {
    await context.close();
  }
}

/**
 * Open shadow roots (custom elements of a design system): extras/shadow.html links css/app.css
 * in its head and again in <x-card>'s shadow root; <x-inner>, inside that root, links
 * extras/shadow-only.css, shows extras/shadow.svg, and has a <style> that @imports
 * extras/shadow-imp.css and sets a background url(), in a shadow root of its own. The client
 * looked at the document only: the card kept the old sheet (the URL counted as handled, so nothing
 * reloaded either), and a sheet or image only a shadow root uses reloaded the page.
 */
async function shadowRoots() {
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/shadow.html');
    await page.fill('#notes', 'typed before the swap');
    await page.evaluate(() => (window.kept = 'yes'));

    // The document's link and the card's are two uses of one sheet: both swapped, neither removed.
    const color = saveH1Color();
    await page.waitForFunction((c) => {
      const card = document.getElementById('card').shadowRoot;
      const swapped = (root) => {
        const links = [...root.querySelectorAll('link[rel=stylesheet]')];
        return links.length === 1 && /\/css\/app\.css\?t=\d+$/.test(links[0].href);
      };
      return (
        getComputedStyle(document.getElementById('doc')).color === c &&
        getComputedStyle(card.getElementById('in')).color === c &&
        swapped(document) &&
        swapped(card)
      );
    }, color);
    assert.equal(await loads(page), 1, 'no reload for a sheet used in both');

    // A sheet only the inner shadow root links: swapped in place.
    const only = freshColor();
    const said = page.waitForEvent('console', (m) => m.text() === '[hmr] css swapped: /extras/shadow-only.css');
    write('extras/shadow-only.css', `#so { color: ${only}; }\n`);
    await page.waitForFunction((c) => {
      const inner = document.getElementById('card').shadowRoot.getElementById('inner').shadowRoot;
      const links = [...inner.querySelectorAll('link[rel=stylesheet]')];
      return (
        getComputedStyle(inner.getElementById('so')).color === c &&
        links.length === 1 &&
        /\/extras\/shadow-only\.css\?t=\d+$/.test(links[0].href)
      );
    }, only);
    await said;
    assert.equal(await loads(page), 1, 'no reload for a sheet only a shadow root uses');

    // An image in the inner shadow root: cache-busted in place.
    const size = 20 + (++serial % 20) * 2;
    write('extras/shadow.svg', svg(size, '#36c'));
    await page.waitForFunction((w) => {
      const inner = document.getElementById('card').shadowRoot.getElementById('inner').shadowRoot;
      const img = inner.getElementById('simg');
      return img.complete && img.naturalWidth === w && /[?&]t=\d+/.test(img.src);
    }, size);
    assert.ok(logged('[hmr] image updated: /extras/shadow.svg'), 'console says image updated');
    assert.equal(await loads(page), 1, 'no reload for an image in a shadow root');

    // An @import in the inner root's <style>, and a url() in it: replaced in place.
    const imported = freshColor();
    write('extras/shadow-imp.css', `#si { color: ${imported}; }\n`);
    await page.waitForFunction((c) => {
      const inner = document.getElementById('card').shadowRoot.getElementById('inner').shadowRoot;
      return getComputedStyle(inner.getElementById('si')).color === c;
    }, imported);
    assert.equal(await loads(page), 1, 'no reload for an @import in a shadow root');
    write('extras/shadow-dot.svg', svg(8, '#c63'));
    await page.waitForFunction(() => {
      const inner = document.getElementById('card').shadowRoot.getElementById('inner').shadowRoot;
      return /shadow-dot\.svg\?t=\d+/.test(getComputedStyle(inner.getElementById('bgs')).backgroundImage);
    });

    assert.equal(await page.evaluate(() => window.kept), 'yes', 'window variable kept');
    assert.equal(await page.inputValue('#notes'), 'typed before the swap', 'form input kept');
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/** HTML change: exactly one full reload, after which the page is live again. */
async function html() {
  const context = await newContext();
  try {
    const page = await openTab(context);
    const version = String(++serial);
    const reloaded = page.waitForEvent('load');
    write('index.html', read('index.html').replace(/<main[^>]*>/, `<main data-version="${version}">`));
    await reloaded;
    await connected(page);
    assert.equal(await page.getAttribute('main', 'data-version'), version);
    assert.equal(await loads(page), 2, 'one reload');
    await cssProbe([page]);
    assert.equal(await loads(page), 2, 'still one reload');
    assert.ok(logged('[hmr] reloading: /index.html changed'));
    // A checkout's batch is named in a line, not listed in full. (Scripts, which reload a page
    // whether it loaded them or not: in static mode, pages it never loaded reload nothing.)
    const again = page.waitForEvent('load');
    const paths = Array.from({ length: 8 }, (_, i) => `/p${i + 1}.js`);
    const posted = await fetch(`${origin}/__hmr/reload`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ paths }),
    });
    assert.equal(posted.status, 202);
    await again;
    assert.ok(
      logged('[hmr] reloading: /p1.js, /p2.js, /p3.js, /p4.js, /p5.js and 3 more changed'),
      'names five and counts the rest',
    );
    // A batch of more than 500 files lists 500 and counts the others: one reload, whose line
    // counts them all.
    await connected(page);
    const big = page.waitForEvent('load');
    const many = Array.from({ length: 600 }, (_, i) => `/q${i + 1}.js`);
    const postedMany = await fetch(`${origin}/__hmr/reload`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ paths: many }),
    });
    assert.equal(postedMany.status, 202);
    await big;
    assert.ok(
      logged('[hmr] reloading: q1.js, q2.js, q3.js, q4.js, q5.js and 595 more changed'),
      'counts the files not listed',
    );
    // A reload a build tool asks for says so.
    await connected(page);
    const third = page.waitForEvent('load');
    assert.equal((await fetch(`${origin}/__hmr/reload`, { method: 'POST' })).status, 202);
    await third;
    assert.ok(logged('[hmr] reloading: POST /__hmr/reload'), 'names who asked');
  } finally {
    await context.close();
  }
}

/**
 * A reload the client makes keeps the scroll position, on a page that builds its content after
 * `load` (a container app rendering from a module it imports then), in the page and in a frame:
 * the browser's own restoration gives up while the page is still too short, and the page came
 * back at the top. Scrolling before the content is in keeps the user's position.
 */
async function scrollKept() {
  const context = await newContext();
  const gates = [];
  /** Hold the next request for the view module (in `page`'s frames too) until released. */
  const holdView = async (page) => {
    let release;
    gates.push(new Promise((r) => (release = r)));
    const match = (url) => url.pathname === '/extras/later-view.js';
    // The newest route answers alone: an earlier hold's no longer sees the requests.
    const { requested } = await hold(page, match, gates.at(-1), { first: true });
    return { requested, release };
  };
  try {
    const page = await openTab(context, '/extras/later.html');
    const rendered = (frame) => frame.waitForFunction(() => document.getElementById('app').textContent === 'rendered');
    const at = (frame) => frame.evaluate(() => scrollY);
    await rendered(page);
    await page.evaluate(() => scrollTo(0, 1500));

    /** Reload the page through the client (a change to `file`), the view module held. */
    const reloadHeld = async (file) => {
      const { requested, release } = await holdView(page);
      const reloaded = page.waitForEvent('load');
      write(file, read(file).replace('</body>', '<p>more</p></body>'));
      await reloaded;
      await within('the view module to be asked for', requested);
      return release;
    };
    let release = await reloadHeld('extras/later.html');
    assert.equal(await at(page), 0, 'loaded, too short: the browser gave up on the position');
    release();
    await rendered(page);
    await page.waitForFunction(() => scrollY === 1500);
    assert.equal(await loads(page), 2, 'one reload');

    // The user scrolls (here a wheel turn on the short page) before the content is in.
    release = await reloadHeld('extras/later.html');
    await page.mouse.wheel(0, 40);
    release();
    await rendered(page);
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    assert.equal(await at(page), 0, "the user's position stays");

    // A same-origin frame the client runs in: its position comes back too.
    await page.close(); // (it would reload for the host page's change)
    const host = await openTab(context, '/extras/later-host.html');
    const frameOf = () => host.frames().find((f) => f !== host.mainFrame());
    await rendered(frameOf());
    await frameOf().evaluate(() => scrollTo(0, 900));
    const { requested, release: go } = await holdView(host);
    const reloaded = host.waitForEvent('load');
    write('extras/later-host.html', read('extras/later-host.html').replace('</body>', '<p>more</p></body>'));
    await reloaded;
    await within('the view module to be asked for', requested);
    assert.equal(await at(frameOf()), 0, 'loaded, too short');
    go();
    await rendered(frameOf());
    await frameOf().waitForFunction(() => scrollY === 900);
  } finally {
    await context.close();
  }
}

/**
 * The proxy behind a front that holds the tab's requests for /extras/arrive.html, and its form
 * posts to /extras/posted (which it answers itself, and counts), until `release()`; it answers
 * /extras/empty with a 204, and /extras/report.csv as a download: a navigation that takes seconds,
 * and ones that end without a page. `next()` resolves when the next of those is asked for.
 */
async function leavingFront() {
  let release;
  let gate = new Promise((r) => (release = r));
  const seen = { posts: 0 };
  let heard = () => {};
  const front = await frontProxy({
    intercept(req, res, pass) {
      const { pathname } = new URL(req.url, origin);
      if (pathname === '/extras/arrive.html') {
        gate.then(pass);
      } else if (pathname === '/extras/posted' && req.method === 'POST') {
        seen.posts += 1;
        req.resume();
        const page = '<!doctype html>\n<html><head><title>posted</title></head><body><p id="posted">posted</p></body></html>\n';
        gate.then(() => res.writeHead(200, { 'content-type': 'text/html' }).end(page));
      } else if (pathname === '/extras/empty') {
        res.writeHead(204).end();
      } else if (pathname === '/extras/report.csv') {
        const download = { 'content-type': 'text/csv', 'content-disposition': 'attachment; filename="report.csv"' };
        res.writeHead(200, download).end('a,b\n1,2\n');
      } else {
        return false;
      }
      heard(pathname);
      return true;
    },
  });
  return {
    ...front,
    seen,
    next: () => new Promise((resolve) => (heard = resolve)),
    release() {
      release();
      gate = new Promise((r) => (release = r));
    },
  };
}

/** Change extras/leave.html, the page the navigation scenarios leave (see leavingFront). */
function touchLeave() {
  write('extras/leave.html', read('extras/leave.html').replace('</body>', '<p>more</p></body>'));
}

/**
 * A save while the tab loads another page (a link to a page that takes seconds, a form that sends
 * a file) leaves that navigation alone: the client's reload cancelled it, and the tab stayed on
 * the old page, the click undone and the upload lost. The page that arrives is current.
 */
async function navigating() {
  const context = await newContext();
  const front = await leavingFront();
  try {
    const page = await openTab(context, '/extras/leave.html', front.origin);
    const leave = async (button, arrived) => {
      const waits = page.waitForEvent('console', (m) => m.text().includes('the reload waits'));
      const asked = front.next();
      await page.click(button, { noWaitAfter: true });
      await within(`the page ${button} opens to be asked for`, asked);
      touchLeave();
      await waits;
      front.release();
      await page.waitForSelector(arrived);
    };
    await leave('#slow', '#arrived');
    await connected(page);
    await cssProbe([page]); // caught up: it was asked for after the save
    assert.equal(await loads(page), 2, 'left once, for the page the link opens');

    await page.goto(`${front.origin}/extras/leave.html`);
    await connected(page);
    await page.fill('#file', 'fifty megabytes');
    await leave('#send', '#posted');
    assert.equal(front.seen.posts, 1, 'the form was sent once');
    assert.equal(await loads(page), 4, 'no reload between the page and its answer');
  } finally {
    await context.close();
    front.close();
  }
}

/**
 * A navigation that ends without a page (a 204, a download) leaves the page as it was, and tells
 * it nothing (Chromium neither aborts its navigate event's signal nor fires navigateerror): the
 * reload it held back is made once the navigation has been under way for the client's patience,
 * and a save after that reloads at once. (The page's clock is Playwright's, moved on by hand.)
 */
async function noPage() {
  const context = await newContext();
  await context.clock.install();
  const front = await leavingFront();
  try {
    const page = await openTab(context, '/extras/leave.html', front.origin);
    await page.fill('#file', 'typed');
    const waits = page.waitForEvent('console', (m) => m.text().includes('the reload waits'));
    const answered = front.next();
    await page.click('#empty', { noWaitAfter: true });
    await within('the 204 to be asked for', answered);
    touchLeave();
    await waits;
    assert.equal(await page.inputValue('#file'), 'typed', 'held: the page is as it was');
    let reloaded = page.waitForEvent('load');
    await page.clock.fastForward(30_000);
    await reloaded;
    await connected(page);
    assert.equal(await loads(page), 2, 'reloaded once the navigation was taken for over');

    const downloaded = page.waitForEvent('download');
    await page.click('#report', { noWaitAfter: true });
    await downloaded;
    await page.clock.fastForward(30_000);
    reloaded = page.waitForEvent('load');
    touchLeave();
    await reloaded;
    assert.equal(await loads(page), 3, 'a later save reloads');
  } finally {
    await context.close();
    front.close();
  }
}

/**
 * A page that answers a form sent with POST (the proxy says so: `Server-Timing: hmr-post`) is
 * reloaded with a GET, for a save and for the proxy's own reload batches, in place of its history
 * entry: `location.reload()` sent the form again each time (a row added, a mail sent). Only in
 * front of an upstream (Python's answers the POST with its 501 page): the proxy's own files take
 * no POST.
 */
async function postAnswer() {
  if ((await status()).upstream === null) return;
  let posts = 0;
  const front = await frontProxy({
    intercept(req) {
      if (req.method === 'POST') posts += 1;
      return false;
    },
  });
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/form.html', front.origin);
    const send = async () => {
      const answered = page.waitForEvent('load');
      await page.click('#send');
      await answered;
      await connected(page);
      const metrics = await page.evaluate(() =>
        performance.getEntriesByType('navigation')[0].serverTiming.map((m) => m.name),
      );
      assert.ok(metrics.includes('hmr-post'), `the proxy says the page answers a POST: ${metrics}`);
    };
    await send();
    const entries = await page.evaluate(() => history.length);
    const reloaded = page.waitForEvent('load');
    write('extras/sent.html', read('extras/sent.html').replace('</body>', '<p>more</p></body>'));
    await reloaded;
    assert.equal(await page.textContent('#got'), 'got', 'the answer to a GET');
    assert.equal(posts, 1, 'the form was sent once');
    assert.equal(await page.evaluate(() => history.length), entries, 'in place of its history entry');
    assert.ok(logged('[hmr] reloading with GET: /extras/sent.html changed'), 'the console says why');

    await page.goto(`${front.origin}/extras/form.html`);
    await connected(page);
    await send();
    const again = page.waitForEvent('load');
    assert.equal((await fetch(`${origin}/__hmr/reload`, { method: 'POST' })).status, 202);
    await again;
    await page.waitForSelector('#got');
    assert.equal(posts, 2, 'the proxy\'s reload did not send it again');
  } finally {
    await context.close();
    front.close();
  }
}

/**
 * The proxy's waiting page, answering a form sent while the dev server was down, is reloaded as
 * before, sending the form again: it never reached the server, and the page is there to send it
 * once the server is back (its poll reloads it then). A reload with a GET lost it. (A stand-in
 * here, answered by the front with the page's `Server-Timing` and its poll, which never runs: the
 * upstream of these runs is up.)
 */
async function waitingPost() {
  let posts = 0;
  const front = await frontProxy({
    intercept(req, res) {
      if (new URL(req.url, origin).pathname !== '/extras/waiting') return false;
      if (req.method !== 'POST') {
        res.writeHead(200, { 'content-type': 'text/html' }).end('<p id="lost">the form is lost</p>');
        return true;
      }
      posts += 1;
      req.resume();
      const page =
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>502 · waiting</title>\n' +
        '<script type="module" src="/__hmr/client.js"></script></head>\n' +
        '<body><p class="wait">This page reloads by itself as soon as the dev server answers.</p>\n' +
        '<script>const poll = () => fetch("/__hmr/upstream?path=" + location.pathname);</script></body></html>\n';
      res.writeHead(502, { 'content-type': 'text/html', 'server-timing': 'hmr-post' }).end(page);
      return true;
    },
  });
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/leave.html', front.origin);
    await page.evaluate(() => {
      const form = document.querySelector('form');
      form.action = '/extras/waiting';
      form.submit();
    });
    await page.waitForSelector('.wait');
    await connected(page);
    const reloaded = page.waitForEvent('load');
    assert.equal((await fetch(`${origin}/__hmr/reload`, { method: 'POST' })).status, 202);
    await reloaded;
    await page.waitForSelector('.wait');
    assert.equal(posts, 2, 'sent again, to wait for the server');
    assert.ok(logged('[hmr] reloading: POST /__hmr/reload'));
  } finally {
    await context.close();
    front.close();
  }
}

/**
 * Resolves once the tab's console has said `not in this page, which never loaded it` of every path
 * in `paths` (the watcher may split them over batches).
 */
function saidUnused(page, paths) {
  const left = new Set(paths);
  return within(`${paths.join(', ')} to be passed over`, new Promise((resolve) => {
    const heard = (msg) => {
      const said = /not in this page, which never loaded it: (.*)$/.exec(msg.text());
      for (const p of said ? said[1].split(', ') : []) left.delete(p);
      if (left.size) return;
      page.off('console', heard);
      resolve();
    };
    page.on('console', heard);
  }));
}

/**
 * Documents, media, archives and fonts that nothing in the page embeds and that it never loaded
 * reload nothing: an app storing an upload in its public folder (a link to it in the page) reloaded
 * the tab right after its redirect, and the flash message went. A font the page loaded, one its
 * `@font-face` names that no text has needed yet, and a video it plays without preloading it
 * still reload it.
 */
async function inert() {
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/inert.html');
    await page.waitForFunction(() =>
      performance.getEntriesByType('resource').some((e) => e.name.endsWith('/extras/used.woff2')),
    );
    await page.fill('#notes', 'the flash message');
    const files = ['uploads/doc.pdf', 'uploads/all.zip', 'extras/song.mp3', 'extras/clip.mp4', 'extras/other.woff2', 'extras/slides.pptx'];
    const passed = saidUnused(page, files.map((f) => `/${f}`));
    for (const file of files) write(file, `${file} ${++serial}\n`);
    await passed;
    await cssProbe([page]);
    assert.equal(await page.inputValue('#notes'), 'the flash message', 'form input kept');
    assert.equal(await loads(page), 1, 'no reload');

    let count = 1;
    for (const file of ['extras/used.woff2', 'extras/later.woff2', 'extras/clip.webm']) {
      const reloaded = page.waitForEvent('load');
      write(file, `${file} ${++serial}\n`);
      await reloaded;
      await connected(page);
      assert.equal(await loads(page), ++count, `${file}: one reload`);
      assert.ok(logged(`[hmr] reloading: /${file} changed`), file);
    }
  } finally {
    await context.close();
  }
}

/**
 * Where the proxy serves the files as they are (static mode: the batch says `served`), a file the
 * page never fetched reloads nothing: a note, an unused data file, another page. Saving one used
 * to reload the page, and what the user had typed went. A file the page fetched, the page itself
 * and a script (a worker may import it unseen) still reload it. In front of an upstream, which
 * may render pages from any file, a note reloads it as ever.
 */
async function servedOnly() {
  const upstream = (await status()).upstream !== null;
  const context = await newContext();
  try {
    const page = await openTab(context, '/');
    if (upstream) {
      const reloaded = page.waitForEvent('load');
      write('NOTES.md', `# notes ${++serial}\n`);
      await reloaded;
      assert.ok(logged('[hmr] reloading: /NOTES.md changed'));
      return;
    }
    await page.fill('#notes', 'typed');
    const files = ['NOTES.md', 'about.html', 'data/x.json', 'extras/home.html'];
    const passed = saidUnused(page, files.map((f) => `/${f}`));
    for (const file of files) write(file, `${file} ${++serial}\n`);
    await passed;
    await cssProbe([page]);
    assert.equal(await page.inputValue('#notes'), 'typed', 'form input kept');
    assert.equal(await loads(page), 1, 'no reload');

    // Fetched by the page; a script it never loaded; the page itself.
    write('data/used.json', '{"v": 1}\n');
    await page.evaluate(() => fetch('/data/used.json').then((r) => r.json()));
    let count = 1;
    for (const [file, text] of [['data/used.json', '{"v": 2}\n'], ['extras/worker-only.js', 'self.v = 1;\n']]) {
      const reloaded = page.waitForEvent('load');
      write(file, text);
      await reloaded;
      await connected(page);
      assert.equal(await loads(page), ++count, `${file}: one reload`);
    }
    // The home page's file is that page's alone (no --spa here): a tab on another page stays.
    const written = saidUnused(page, ['/about.html']);
    write('about.html', '<!doctype html><title>about</title><p>about</p>\n');
    await written; // its batch is out before the tab opens, which would reload for its own file
    const about = await openTab(context, '/about.html');
    const passedOver = saidUnused(about, ['/index.html']);
    const reloaded = page.waitForEvent('load');
    write('index.html', read('index.html').replace('</body>', '<p>more</p></body>'));
    await reloaded;
    assert.equal(await loads(page), ++count, 'index.html: one reload');
    await passedOver;
    assert.equal(await loads(about), 1, 'another page: no reload for index.html');
  } finally {
    await context.close();
  }
}

/**
 * A page not written yet: its 404 carries the client, and the tab shows the page once it exists:
 * the file its address names, a folder's index.html, and (in static mode, which answers clean
 * URLs) `/contact`'s contact.html. In static mode a file no page fetched reloads nothing, but
 * these are the page's own.
 */
async function missing() {
  const context = await newContext();
  const upstream = (await status()).upstream !== null;
  try {
    const page = await newTab(context);
    const n = ++serial;
    const cases = [[`later-${n}.html`, `later-${n}.html`], [`dir-${n}/`, `dir-${n}/index.html`]];
    if (!upstream) cases.push([`clean-${n}`, `clean-${n}.html`]);
    for (const [address, file] of cases) {
      const res = await page.goto(`${origin}/${address}`);
      assert.equal(res.status(), 404, `${address} status`);
      await connected(page);
      const reloaded = page.waitForEvent('load');
      write(file, `<!doctype html>\n<html><head><title>later</title></head><body><p id="later">${file}</p></body></html>\n`);
      await reloaded;
      assert.equal(await page.textContent('#later'), file);
    }
  } finally {
    await context.close();
  }
}

/**
 * A URL that does not parse (`<img src="https://">` while a tag is being typed, a CSS url()
 * with a bad port) is passed over: an image the page uses is still swapped, and a change to the
 * page still reloads it. Each such URL threw, and from then on no change did anything. A page the
 * client cannot look through (here one that took a name the client asks for) reloads instead.
 */
async function badUrls() {
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/bad-url.html');
    write('extras/bad-url.svg', svg(18, '#6c0'));
    await page.waitForFunction(() => {
      const img = document.getElementById('good');
      return img.complete && img.naturalWidth === 18 && /[?&]t=\d+/.test(img.src);
    });
    assert.equal(await loads(page), 1, 'no reload');
    const reloaded = page.waitForEvent('load');
    write('extras/bad-url.html', read('extras/bad-url.html').replace('</body>', '<p>more</p></body>'));
    await reloaded;
    await connected(page);
    assert.equal(await loads(page), 2, 'one reload');

    const clobbered = await openTab(context, '/extras/clobbered.html');
    const again = clobbered.waitForEvent('load');
    write('extras/bad-url.svg', svg(22, '#0c6'));
    await again;
    assert.ok(logged('this page could not be patched'), 'the client says why it reloads');
  } finally {
    await context.close();
  }
}

/**
 * A page global named `navigation` or `frames` (a classic script's `var navigation =
 * $('.nav')`) replaces the browser's own. The client used them: the leader tab then never
 * reloaded and relayed nothing more to the other tabs, and a page with `frames` never reloaded.
 */
async function globalNames() {
  const context = await newContext();
  try {
    const nav = await openTab(context, '/extras/nav.html');
    await nav.waitForFunction(() => window[Symbol.for('hmr-proxy')].state.role === 'leader');
    const other = await openTab(context, '/');
    // Both reload (for a script, which a page may use unseen, whether it loaded it or not), and
    // hear changes after that.
    const reloaded = [nav, other].map((page) => page.waitForEvent('load'));
    write('extras/nav.js', `// ${++serial}\n`);
    await Promise.all(reloaded);
    await Promise.all([nav, other].map(connected));
    await cssProbe([nav, other]);
    for (const page of [nav, other]) assert.equal(await loads(page), 2, 'one reload');

    // `frames`: the frame's own sheet still swaps without a reload (the top finds its frame),
    // and a change to the page reloads it.
    const anim = await openTab(context, '/extras/anim.html');
    const frame = anim.frames().find((f) => f !== anim.mainFrame());
    await connected(frame);
    await cssProbe([nav, other, frame]);
    assert.equal(await loads(anim), 1, 'no reload for a sheet only the frame uses');
    const animReloaded = anim.waitForEvent('load');
    write('extras/anim.html', read('extras/anim.html').replace('</body>', '<p>more</p></body>'));
    await animReloaded;
    assert.equal(await loads(anim), 2, 'one reload');
  } finally {
    await context.close();
  }
}

/** Eight tabs share one stream and all react; a ninth still loads; closing the leader loses nothing. */
async function tabs() {
  const context = await newContext();
  try {
    const pages = await Promise.all(Array.from({ length: 8 }, () => openTab(context)));
    await statusUntil('one /changes stream for eight tabs', (s) => s.clients === 1);
    await cssProbe(pages);

    // A ninth tab and its subresources load: the connection pool is not exhausted.
    const ninth = await openTab(context);
    await ninth.waitForFunction(() => document.getElementById('logo').complete && window.app?.updates === 1);
    pages.push(ninth);
    for (const page of pages) assert.equal(await loads(page), 1, 'no reload');

    // The leader goes away while a batch is published; the next leader's stream is held back
    // until the batch is out, so it can only arrive by replay after the last seen id.
    const roles = await Promise.all(pages.map((p) => clientState(p).then((s) => s.role)));
    assert.equal(roles.filter((r) => r === 'leader').length, 1, `one leader: ${roles}`);
    const leader = pages[roles.indexOf('leader')];
    const rest = pages.filter((p) => p !== leader);
    const lastId = (await clientState(rest[0])).lastId;
    let release;
    const gate = new Promise((r) => (release = r));
    let reconnect;
    const reconnecting = new Promise((r) => (reconnect = r));
    await context.route(
      (url) => url.pathname === '/changes',
      async (route) => {
        reconnect(route.request().url());
        await gate;
        await route.continue();
      },
    );
    const stream = await changeStream();
    await leader.close();
    const url = await within('a new leader to open the stream', reconnecting);
    assert.equal(new URL(url).searchParams.get('lastEventId'), String(lastId), url);
    const color = saveH1Color();
    await stream.until('the batch for css/app.css', (b) => b.id > lastId);
    stream.close();
    release();
    await Promise.all(rest.map((page) => h1Color(page, color)));
    const after = await Promise.all(rest.map((p) => clientState(p).then((s) => s.role)));
    assert.equal(after.filter((r) => r === 'leader').length, 1, `one new leader: ${after}`);
    await context.unrouteAll();
    await statusUntil('one stream again', (s) => s.clients === 1);
    for (const page of rest) assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/** A frame never opens a stream: it hears its tab's, and swaps all the same. */
async function frames() {
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/frame.html');
    const frame = page.frames().find((f) => f !== page.mainFrame());
    await connected(frame);
    assert.equal((await clientState(page)).role, 'leader');
    assert.equal((await clientState(frame)).role, 'frame');
    await statusUntil('one stream for a tab and its frame', (s) => s.clients === 1);
    await cssProbe([page, frame]);
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * A stylesheet or container module only a frame uses is the frame's to swap: the page around it
 * keeps its state (it reloaded, as for a URL nothing in the tab uses).
 */
async function frameOnly() {
  const context = await newContext();
  try {
    const page = await openTab(context, '/extras/host.html');
    const frame = page.frames().find((f) => f !== page.mainFrame());
    await connected(frame);
    await frame.waitForFunction(() => window.app?.updates === 1);
    await page.fill('#notes', 'typed in the host');
    await page.evaluate(() => (window.kept = 'yes'));
    await cssProbe([frame]);
    const label = `Count (v${++serial}):`;
    write('js/view.js', read('js/view.js').replace(/Count[^:`]*:/, label));
    await frame.waitForFunction((l) => document.getElementById('view').textContent.startsWith(l), label);
    // The host applies batches in order: once it has swapped its own image, saved after both,
    // it has been through them.
    write('extras/mark.svg', svg(12, `#${serial % 10}c${serial % 10}`));
    await page.waitForFunction(() => /mark\.svg\?t=\d+$/.test(document.getElementById('mark').src));
    assert.equal(await page.evaluate(() => window.kept), 'yes', 'host window variable kept');
    assert.equal(await page.inputValue('#notes'), 'typed in the host', 'host form input kept');
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * The app in a frame of a page that does not run the client (another origin: an IDE's preview,
 * a dev portal): the frame is a tab of its own, with its stream, and swaps what it uses. (It
 * used to wait for a tab to relay to it, and never heard a change.)
 */
async function lonelyFrame() {
  const context = await newContext();
  try {
    const page = await newTab(context);
    await page.setContent(`<iframe src="${origin}/"></iframe>`);
    const frame = await within('the frame', (async () => {
      for (;;) {
        const found = page.frames().find((f) => f !== page.mainFrame() && f.url().startsWith(origin));
        if (found) return found;
        await page.waitForEvent('frameattached');
      }
    })());
    await frame.waitForLoadState();
    await connected(frame);
    // A leader, or shared (or solo) where the browser keeps Web Locks from frames under an opaque
    // top.
    assert.ok(['leader', 'shared', 'solo'].includes((await clientState(frame)).role));
    await cssProbe([frame]);
  } finally {
    await context.close();
  }
}

/**
 * Without Web Locks (an address other than localhost is not a secure context), a SharedWorker
 * holds one stream for all tabs, frames included, and keeps it when the tab that opened it
 * closes. Each tab used to open a stream of its own, and the seventh tab's page never loaded:
 * six streams held every connection the browser allows a site.
 */
async function shared() {
  const context = await insecureContext();
  const front = await frontProxy();
  try {
    const pages = [];
    for (let i = 0; i < 7; i++) pages.push(await openTab(context, '/', front.origin));
    const framed = await openTab(context, '/extras/frame.html', front.origin);
    const frame = framed.frames().find((f) => f !== framed.mainFrame());
    await connected(frame);
    for (const page of [...pages, framed, frame]) {
      assert.equal((await clientState(page)).role, 'shared');
    }
    await statusUntil('one stream for every tab', (s) => s.clients === 1);
    await cssProbe([...pages, frame]);
    await pages.shift().close(); // the tab whose position opened the stream
    await cssProbe(pages);
    assert.equal(front.streams(), 1, 'the stream outlives the tab that opened it');
    for (const page of pages) assert.equal(await loads(page), 1, 'no reload');
    await context.close();
    await statusUntil('the stream closed with the last tab', (s) => s.clients === 0);
  } finally {
    await context.close();
    front.close();
  }
}

/**
 * The first stream refused (a 502 from something in front of the proxy) while a save goes out:
 * the page still gets that save, from a tab's own stream or the SharedWorker's. The worker used to
 * open its next stream from the newest batch it knew of, none yet, and the save was lost.
 */
async function refusedFirst() {
  for (const role of ['shared', 'solo']) {
    let release;
    const refuse = new Promise((r) => (release = r));
    const front = await frontProxy({ refuse });
    const context = await insecureContext({ sharedWorker: role === 'shared' });
    const stream = await changeStream();
    try {
      const page = await newTab(context);
      await page.goto(front.origin + '/');
      await within('the first stream to be asked for', front.asked);
      const color = saveH1Color();
      await stream.until('the batch for css/app.css', (b) => b.urls.includes('/css/app.css'));
      release();
      await connected(page);
      assert.equal((await clientState(page)).role, role);
      await h1Color(page, color);
      assert.equal(await loads(page), 1, 'no reload');
    } finally {
      release();
      stream.close();
      await context.close();
      front.close();
    }
  }
}

/** A page whose policy forbids workers (`worker-src 'none'`) is solo, and hears changes. */
async function workerRefused() {
  const context = await insecureContext();
  try {
    await context.route(
      (url) => url.pathname === '/',
      async (route) => {
        const response = await route.fetch();
        const headers = { ...response.headers(), 'content-security-policy': "worker-src 'none'" };
        await route.fulfill({ response, headers });
      },
    );
    const page = await openTab(context);
    assert.equal((await clientState(page)).role, 'solo');
    await cssProbe([page]);
  } finally {
    await context.close();
  }
}

/**
 * Without Web Locks and without SharedWorker every tab has its own stream; a stream refused with
 * a 502 (by something in front of the proxy) is opened again.
 */
async function fallback() {
  const context = await insecureContext({ sharedWorker: false });
  try {
    let requests = 0;
    await context.route(
      (url) => url.pathname === '/changes',
      (route) => (requests++ === 0 ? route.fulfill({ status: 502, body: 'down' }) : route.continue()),
    );
    const pages = [await openTab(context), await openTab(context)];
    for (const page of pages) assert.equal((await clientState(page)).role, 'solo');
    assert.ok(logged('[hmr] no Web Locks and no SharedWorker here'), 'a solo tab says why and what it costs');
    assert.ok(logged('[hmr] stream closed; retrying in 1 s'), 'the refused stream is retried');
    await statusUntil('a stream per tab', (s) => s.clients === 2);
    await cssProbe(pages);
    for (const page of pages) assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * A page served before a save whose client starts after it (a slow script, a reload while
 * another save goes out) is behind: it catches up on that save, whether it is its tab's leader
 * (asking the proxy for what followed its position) or a follower whose leader has seen it
 * (a stream of its own, closed once it has caught up). It used to take the newest batch for
 * one it had applied, and kept the old styles until the next save.
 */
async function behind() {
  // The same where a SharedWorker holds the stream (no Web Locks): the page opens it, or joins it.
  for (const [follower, locks] of [[false, true], [true, true], [false, false], [true, false]]) {
    const context = locks ? await newContext() : await insecureContext();
    const stream = await changeStream();
    try {
      const leader = follower ? await openTab(context) : null;
      const page = await newTab(context);
      let release;
      const gate = new Promise((r) => (release = r));
      // Once the page asks for its client, its HTML and stylesheet are in, from before the save.
      const client = (url) => url.pathname === '/__hmr/client.js';
      const { requested } = await hold(page, client, gate);
      const navigation = page.goto(origin + '/');
      await within('the page to ask for its client', requested);
      const old = await page.evaluate(() => getComputedStyle(document.querySelector('h1')).color);
      const color = saveH1Color();
      await stream.until('the batch for css/app.css', (b) => b.urls.includes('/css/app.css'));
      if (leader) await h1Color(leader, color);
      assert.notEqual(old, color);
      release();
      await navigation;
      await connected(page);
      await h1Color(page, color);
      const role = !locks ? 'shared' : follower ? 'follower' : 'leader';
      assert.equal((await clientState(page)).role, role);
      assert.equal(await loads(page), 1, 'no reload');
      stream.close();
      if (follower) await statusUntil('the catch-up stream closed', (s) => s.clients === 1);
    } finally {
      stream.close();
      await context.close();
    }
  }
}

/**
 * Tabs that have kept up through more batches than the proxy keeps stay put when another tab
 * opens (the leader's answer to it reaches them all). They used to measure how far behind they
 * were from their page's position, asked the proxy for what followed it, and were told to reload.
 */
async function keptUp() {
  const context = await newContext();
  try {
    const pages = [await openTab(context), await openTab(context)];
    let last;
    for (let i = 0; i < 70; i++) {
      const res = await fetch(`${origin}/__hmr/reload`, {
        method: 'POST',
        body: JSON.stringify({ paths: ['/css/app.css'] }),
      });
      assert.equal(res.status, 202);
      last = (await res.json()).id;
    }
    await Promise.all(
      pages.map((page) =>
        page.waitForFunction((id) => window[Symbol.for('hmr-proxy')].state.lastId === id, last),
      ),
    );
    pages.push(await openTab(context));
    await cssProbe(pages);
    for (const page of pages) assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
  }
}

/**
 * A page whose position never moves (something in front keeps old headers: here every page says
 * a batch from long ago) reloads once for the replay it cannot get, then goes by its stream's
 * position, frames and all. (The guard was one key for the tab, and a frame took the top's.)
 */
async function stuckPosition() {
  const context = await newContext();
  try {
    await context.route(
      (url) => url.pathname.endsWith('.html') || url.pathname.endsWith('/'),
      async (route) => {
        const response = await route.fetch();
        const headers = { ...response.headers(), 'server-timing': 'hmr;desc=1000' };
        await route.fulfill({ response, headers });
      },
    );
    const page = await newTab(context);
    await page.goto(`${origin}/extras/frame.html`);
    await page.waitForFunction(() => Number(sessionStorage.loads) === 2);
    await connected(page);
    const frame = page.frames().find((f) => f !== page.mainFrame());
    await connected(frame);
    await cssProbe([page, frame]);
    assert.equal(await loads(page), 2, 'one reload');
  } finally {
    await context.close();
  }
}

/**
 * The leader reloads slowly (a dev server rendering its page for a while) while the others have
 * reloaded and a stylesheet is saved: the leader on its way out relays nothing, and the tab that
 * takes over asks the proxy for what followed its own page, so every tab gets the new styles.
 */
async function slowLeader() {
  const context = await newContext();
  const stream = await changeStream();
  try {
    const pages = [await openTab(context), await openTab(context), await openTab(context)];
    const roles = await Promise.all(pages.map((p) => clientState(p).then((s) => s.role)));
    const leader = pages[roles.indexOf('leader')];
    const rest = pages.filter((p) => p !== leader);
    let release;
    const gate = new Promise((r) => (release = r));
    const { requested: held } = await hold(leader, (url) => url.pathname === '/', gate);
    const reloaded = rest.map((page) => page.waitForEvent('load'));
    const version = String(++serial);
    write('index.html', read('index.html').replace(/<main[^>]*>/, `<main data-version="${version}">`));
    await Promise.all(reloaded);
    // Started, and waiting: the leader on its way out answers nobody.
    await Promise.all(
      rest.map((page) =>
        page.waitForFunction(() => window[Symbol.for('hmr-proxy')]?.state.role === 'follower'),
      ),
    );
    await within("the leader's reload to be held", held);
    const color = saveH1Color();
    await stream.until('the batch for css/app.css', (b) => b.urls.includes('/css/app.css'));
    release();
    await Promise.all(pages.map((page) => h1Color(page, color)));
    for (const page of pages) assert.equal(await loads(page), 2, 'one reload, for index.html');
  } finally {
    stream.close();
    await context.close();
  }
}

/**
 * What the page away does about a save of index.html: in front of an upstream, which may make
 * any page from it, a reload; serving a folder (no --spa), nothing, as it is another page's file.
 */
async function awayHears(page) {
  const upstream = (await status()).upstream !== null;
  // Wrapped: listening before the save is written, awaited after.
  const heard = upstream
    ? page.waitForEvent('load')
    : page.waitForEvent('console', (msg) =>
        msg.text().includes('not in this page, which never loaded it: /index.html'),
      );
  return { heard };
}

/**
 * Back to a page the browser takes from its cache, as it was before the saves made while the tab
 * was elsewhere: its client catches up (a stylesheet swapped, a changed page reloaded).
 */
async function back() {
  const context = await newContext();
  try {
    const page = await openTab(context);
    const away = async () => {
      await page.goto(`${origin}/extras/srcset.html`);
      await connected(page);
    };
    // A stylesheet the page uses: swapped on return.
    await away();
    // The page away has no stylesheet of its own: it hears the batch, and stays.
    const heard = page.waitForEvent('console', (msg) => msg.text().includes('matched no stylesheet'));
    const color = saveH1Color();
    await heard;
    await page.goBack();
    await connected(page);
    await h1Color(page, color);
    // The page itself: reloaded on return.
    await away();
    const { heard: heardIndex } = await awayHears(page);
    const version = String(++serial);
    write('index.html', read('index.html').replace(/<main[^>]*>/, `<main data-version="${version}">`));
    await heardIndex;
    await page.goBack();
    await page.waitForFunction((v) => document.querySelector('main')?.dataset.version === v, version);
    await connected(page);
  } finally {
    await context.close();
  }
}

/**
 * Back and forward within the app with the back-forward cache on (Playwright turns it off, so
 * this scenario has a browser of its own): the page comes back from the cache, its state kept,
 * and catches up on the saves made while it was away (a stylesheet swapped, a changed page
 * reloaded), alone in its browser (it leads again) and beside another tab (which leads once the
 * page away lets the lock go; the page back follows it). The next page's client evicted it from
 * the cache (its ask on the BroadcastChannel, its request for the Web Lock the page held), and
 * back ran the page anew.
 */
async function bfcache() {
  const cached = await launch({ ignoreDefaultArgs: ['--disable-back-forward-cache'] });
  try {
    for (const beside of [false, true]) {
      const context = await newContext({}, cached);
      // Counts the returns from the cache (`pageshow` persisted) in each tab, and says why one
      // was not (the page may reload as soon as it is back).
      await context.addInitScript(() => {
        addEventListener('pageshow', (event) => {
          const [navigation] = performance.getEntriesByType('navigation');
          if (event.persisted) sessionStorage.restored = String(Number(sessionStorage.restored || 0) + 1);
          else if (navigation.type === 'back_forward') {
            sessionStorage.notRestored = JSON.stringify(navigation.notRestoredReasons);
          }
        });
      });
      try {
        const page = await openTab(context);
        const away = async () => {
          await page.goto(`${origin}/extras/srcset.html`);
          await connected(page);
        };
        const restored = async (times) => {
          const { count, reasons } = await page.evaluate(() => ({
            count: Number(sessionStorage.restored || 0),
            reasons: sessionStorage.notRestored,
          }));
          assert.equal(count, times, `not restored from the bfcache: ${reasons}`);
        };
        // A stylesheet the page uses: swapped on its return. The page away has no stylesheet of
        // its own: it hears the batch, and stays.
        await page.evaluate(() => (window.kept = 'yes'));
        await away();
        // The other tab waits for the lock the page away holds, and leads once that page goes
        // into the cache. (The page shown again asked for the lock at once, before the page it
        // left had let it go, and Chromium then gave it to neither.)
        if (beside) await openTab(context, '/extras/home.html');
        const heard = page.waitForEvent('console', (msg) => msg.text().includes('matched no stylesheet'));
        const color = saveH1Color();
        await heard;
        await page.goBack({ waitUntil: 'commit' }); // a page from the cache fires no `load`
        await h1Color(page, color);
        await restored(1);
        assert.equal(await page.evaluate(() => window.kept), 'yes', 'window variable kept');
        // The stream the page led with before it went into the cache is not kept beside the one
        // that leads now (the browser reopens it when the page is shown).
        await statusUntil('one stream for all tabs', (s) => s.clients === 1);
        // The page itself: reloaded on its return.
        await away();
        const { heard: heardIndex } = await awayHears(page);
        const version = String(++serial);
        write('index.html', read('index.html').replace(/<main[^>]*>/, `<main data-version="${version}">`));
        await heardIndex;
        await page.goBack({ waitUntil: 'commit' });
        await page.waitForFunction((v) => document.querySelector('main')?.dataset.version === v, version);
        await restored(2);
      } finally {
        await context.close();
      }
    }
  } finally {
    await cached.close();
  }
}

/** The proxy restarts: the tabs reconnect, see a new instance, and reload once. */
async function restart() {
  // Tabs sharing a leader's stream, then tabs sharing a SharedWorker's (no Web Locks).
  for (const locks of [true, false]) {
    const context = locks ? await newContext() : await insecureContext();
    try {
      const pages = [await openTab(context), await openTab(context)];
      const before = (await clientState(pages[0])).instance;
      const reloaded = pages.map((page) => page.waitForEvent('load', { timeout: 2 * WAIT_MS }));
      console.log('@@restart');
      const answer = await within('the proxy to restart (a line on stdin)', stdinLines.next());
      assert.equal(answer.value, 'restarted');
      // A tab opened at once, before the stream is back, must not take the old run for its own
      // (from a worker that had not heard the new one yet) and reload when the new one speaks.
      const late = await openTab(context);
      await Promise.all(reloaded);
      await Promise.all(pages.map(connected));
      const now = (await clientState(pages[0])).instance;
      assert.notEqual(now, before, 'a new proxy instance');
      if (!locks) assert.equal((await clientState(pages[1])).role, 'shared');
      await statusUntil('one stream for all tabs', (s) => s.clients === 1);
      await cssProbe([...pages, late]);
      // Exactly once: a tab on its way out must not hand the old instance to a tab starting up,
      // or the two take turns reloading each other.
      for (const page of pages) assert.equal(await loads(page), 2, 'reloaded once after the restart');
      assert.equal(await loads(late), 1, 'the tab opened after the restart did not reload');
      assert.ok(logged('[hmr] reloading: the proxy restarted'));
    } finally {
      await context.close();
    }
  }
}

// ---- Run -----------------------------------------------------------------------------------------

const stdinLines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Extra pages for the @import, background-image and srcset checks, published before any tab opens. */
async function prepare() {
  const stream = await changeStream();
  const turbo = new URL('node_modules/@hotwired/turbo/dist/turbo.es2017-esm.js', import.meta.url);
  write('extras/turbo/turbo.js', fs.readFileSync(turbo, 'utf8'));
  write('extras/turbo/cache.css', 'h1 { font-size: 20px; }\n');
  write('extras/turbo/track.css', 'h1 { font-size: 20px; }\n');
  for (const name of ['a', 'b', 'c']) {
    write(`extras/turbo/${name}.html`, turboPage(name, '/extras/turbo/cache.css'));
  }
  const attrs = ' data-turbo-track="reload"';
  for (const name of ['ta', 'tb']) {
    write(`extras/turbo/${name}.html`, turboPage(name, '/extras/turbo/track.css', { attrs }));
  }
  write('extras/turbo/tc.html', turboPage('tc', '/extras/turbo/track.css?v=2', { attrs }));
  write('extras/turbo/m.html', morphPage(1));
  write('extras/turbo/n.html', turboPage('n', '/extras/turbo/cache.css', { main: '<p id="v">1</p>' }));
  write('extras/theme.css', '#box { color: rgb(1, 2, 3); }\n');
  write(
    'extras/main.css',
    '@import url("theme.css");\n#bg { width: 8px; height: 8px; background-image: url(dot.svg); }\n',
  );
  write('extras/dot.svg', svg(8, '#33c'));
  write(
    'extras/index.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>extras</title>\n' +
      '<link rel="stylesheet" href="main.css"></head>\n<body><p id="box">box</p><div id="bg"></div>\n' +
      '<div id="inline" style="width: 8px; height: 8px; background-image: url(\'/extras/dot.svg\')"></div>\n' +
      '</body></html>\n',
  );
  write('extras/one.svg', svg(16, '#3cc'));
  write('extras/two.svg', svg(32, '#cc3'));
  write(
    'extras/srcset.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>srcset</title></head>\n' +
      '<body><img id="pic" srcset="/extras/one.svg 1x,/extras/two.svg 2x" src="/extras/one.svg" alt="">\n' +
      '</body></html>\n',
  );
  // Files last changed two days ago: a server without caching headers (Python's) lets the
  // browser cache them heuristically for hours, which a swap must not fall for.
  const past = new Date(Date.now() - 2 * 24 * 3600 * 1000);
  for (const entry of fs.readdirSync(site, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) fs.utimesSync(path.join(entry.parentPath ?? entry.path, entry.name), past, past);
  }
  write(
    'extras/frame.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>frame host</title>\n' +
      '<link rel="stylesheet" href="/css/app.css"></head>\n' +
      '<body><h1>frame host</h1><iframe src="/"></iframe></body></html>\n',
  );
  write('extras/mark.svg', svg(12, '#999'));
  write(
    'extras/host.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>frame only</title></head>\n' +
      '<body><img id="mark" src="/extras/mark.svg" alt=""><input id="notes">\n' +
      '<iframe src="/"></iframe></body></html>\n',
  );
  write('extras/xhtml.css', '#x { color: rgb(9, 9, 9); }\n');
  write(
    'extras/page.xhtml',
    '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n' +
      '<html xmlns="http://www.w3.org/1999/xhtml"><head><meta charset="utf-8"/><title>xhtml</title>\n' +
      '<link rel="stylesheet" href="/extras/xhtml.css"/></head>\n' +
      '<body><p id="x">xhtml</p></body></html>\n',
  );
  write(
    'extras/twice.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>twice</title>\n' +
      '<link rel="stylesheet" href="/css/app.css"><link rel="stylesheet" href="/css/app.css">\n' +
      '</head><body><h1>twice</h1></body></html>\n',
  );
  write('extras/kind.css', '#k { color: rgb(1, 1, 1); }\n');
  write('extras/off.css', '#o { color: rgb(2, 2, 2); }\n');
  write('extras/sri.css', '#s { color: rgb(3, 3, 3); }\n');
  const sri = `sha256-${crypto.createHash('sha256').update(read('extras/sri.css')).digest('base64')}`;
  write(
    'extras/kinds.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>kinds</title>\n' +
      '<link rel="stylesheet" href="/extras/kind.css?part=a"><link rel="stylesheet" href="/extras/kind.css?part=b">\n' +
      '<link rel="stylesheet" id="off" href="/extras/off.css" disabled>\n' +
      `<link rel="stylesheet" href="/extras/sri.css" integrity="${sri}" crossorigin="anonymous">\n` +
      '</head><body><p id="k">k</p><p id="o">o</p><p id="s">s</p></body></html>\n',
  );
  write(
    'extras/guarded.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>guarded</title>\n' +
      '<link rel="stylesheet" href="/css/app.css"></head>\n<body><h1>guarded</h1><textarea id="draft"></textarea>\n' +
      // A nav component's `class Navigation` hides the API's constructor from the client.
      '<script>class Navigation {}\naddEventListener("beforeunload", (e) => { if (document.getElementById("draft").value) ' +
      '{ e.preventDefault(); e.returnValue = ""; } });</script></body></html>\n',
  );
  write('extras/widget.js', 'export const v = "v1";\n');
  write(
    'extras/late.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>late</title></head>\n' +
      '<body><p id="first"></p><p id="later"></p><script type="module">\n' +
      'import { container } from "/__hmr/client.js";\n' +
      'const show = (id) => (c) => { document.getElementById(id).textContent = c.w.v; };\n' +
      'container({ "/extras/widget.js": "w" }, show("first"));\n' +
      'window.lateRoute = () => container({ "/extras/widget.js": "w" }, show("later"));\n' +
      '</script></body></html>\n',
  );
  write('extras/stuck.js', 'export const v = "v1";\n');
  write(
    'extras/stuck.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>stuck</title>\n' +
      '<link rel="stylesheet" href="/css/app.css"></head>\n<body><h1>stuck</h1><p id="out"></p><script type="module">\n' +
      'import { container } from "/__hmr/client.js";\n' +
      'let first = true;\n' +
      'container({ "/extras/stuck.js": "m" }, async (c) => {\n' +
      '  document.getElementById("out").textContent = c.m.v;\n' +
      '  if (!first) await new Promise(() => {});\n' +
      '  first = false;\n' +
      '});\n</script></body></html>\n',
  );
  write(
    'extras/fragment.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>fragment</title></head>\n' +
      '<body><p>fetched, then opened</p></body></html>\n',
  );
  write('extras/deep-leaf.css', '#dc { color: rgb(4, 0, 3); }\n');
  write('extras/deep-mid.css', '@import url("deep-leaf.css");\n#db { color: rgb(4, 0, 2); }\n');
  write('extras/deep.css', '@import url("deep-mid.css");\n#da { color: rgb(4, 0, 1); }\n');
  write('extras/deep-sleaf.css', '#dd { color: rgb(4, 0, 4); }\n');
  write('extras/deep-smid.css', '@import url("deep-sleaf.css");\n');
  write(
    'extras/deep.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>deep</title>\n' +
      '<link rel="stylesheet" href="/extras/deep.css">\n' +
      '<style>@import url("/extras/deep-smid.css");</style></head>\n' +
      '<body><p id="da">a</p><p id="db">b</p><p id="dc">c</p><p id="dd">d</p></body></html>\n',
  );
  write('extras/owned.css', '#own { color: rgb(7, 0, 1); }\n');
  write('extras/owned-alt.css', '#own { color: rgb(7, 0, 2); }\n');
  write(
    'extras/owned.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>owned</title></head>\n' +
      '<body><div id="app"></div><p id="own">owned</p><script>\n' +
      // What React does with `{dark && <link rel="stylesheet" href="/dark.css"/>}`: it makes the
      // link, keeps it and its parent, and later calls parent.removeChild(link).
      'window.ownedParent = document.getElementById("app");\n' +
      'window.makeOwned = () => {\n' +
      '  const link = document.createElement("link");\n' +
      '  link.rel = "stylesheet";\n' +
      '  link.href = "/extras/owned.css";\n' +
      '  window.ownedParent.append(link);\n' +
      '  window.owned = link;\n' +
      '};\n' +
      'window.makeOwned();\n' +
      '</script></body></html>\n',
  );
  write('extras/own-t.css', '#ot { color: rgb(5, 0, 1); }\n');
  write('extras/own-t.svg', svg(10, '#666'));
  write(
    'extras/own-t.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>own t</title>\n' +
      '<link rel="stylesheet" href="/extras/own-t.css?t=dark"></head>\n' +
      '<body><p id="ot">t</p><img id="thumb" src="/extras/own-t.svg?t=thumb" alt=""></body></html>\n',
  );
  write('extras/bad-url.svg', svg(10, '#999'));
  write(
    'extras/bad-url.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>bad url</title></head>\n' +
      '<body><img src="https://" alt=""><img id="good" src="/extras/bad-url.svg" alt="">\n' +
      '<div style="background-image: url(\'http://localhost:PORT/a.png\')"></div></body></html>\n',
  );
  write(
    'extras/clobbered.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>clobbered</title>\n' +
      '<style>p { margin: 1px; }</style>\n' +
      '<script>var CSSStyleRule = "the page\'s own";</script></head>\n' +
      '<body><img src="/extras/bad-url.svg" alt=""></body></html>\n',
  );
  write(
    'extras/nav.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>nav</title>\n' +
      '<link rel="stylesheet" href="/css/app.css">\n' +
      '<script>var navigation = { items: ["Home", "About"] };</script></head>\n' +
      '<body><h1>nav</h1></body></html>\n',
  );
  write(
    'extras/anim.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>anim</title>\n' +
      '<script>var frames = ["walk1.png", "walk2.png"];</script></head>\n' +
      '<body><iframe src="/"></iframe></body></html>\n',
  );
  write('extras/shadow-only.css', '#so { color: rgb(6, 0, 1); }\n');
  write('extras/shadow.svg', svg(14, '#999'));
  write('extras/shadow-imp.css', '#si { color: rgb(6, 0, 2); }\n');
  write('extras/shadow-dot.svg', svg(8, '#999'));
  write(
    'extras/shadow.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>shadow</title>\n' +
      '<link rel="stylesheet" href="/css/app.css"></head>\n' +
      '<body><h1 id="doc">document</h1><x-card id="card"></x-card><input id="notes">\n' +
      '<script>\n' +
      'const shadow = (name, html) => customElements.define(name, class extends HTMLElement {\n' +
      '  constructor() { super(); this.attachShadow({ mode: "open" }).innerHTML = html; }\n' +
      '});\n' +
      'shadow("x-card", \'<link rel="stylesheet" href="/css/app.css"><h1 id="in">card</h1>\' +\n' +
      '  \'<x-inner id="inner"></x-inner>\');\n' +
      'shadow("x-inner", \'<link rel="stylesheet" href="/extras/shadow-only.css"><p id="so">only</p>\' +\n' +
      '  \'<img id="simg" src="/extras/shadow.svg" alt=""><p id="si">imported</p><div id="bgs"></div>\' +\n' +
      '  \'<style>@import url("/extras/shadow-imp.css");\' +\n' +
      '  \'#bgs { width: 8px; height: 8px; background-image: url(/extras/shadow-dot.svg); }</style>\');\n' +
      '</script></body></html>\n',
  );
  write('extras/home.css', '#home { color: rgb(8, 0, 1); }\n');
  write(
    'extras/home.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>home</title>\n' +
      '<link rel="stylesheet" href="/extras/home.css"></head>\n<body><p id="home">home</p></body></html>\n',
  );
  write('extras/about.css', '#about { color: rgb(8, 0, 2); }\n');
  write('extras/about-imp.css', '#imp { color: rgb(8, 0, 3); }\n');
  write('extras/about-mod.css', '#mod { color: rgb(8, 0, 4); }\n');
  write(
    'extras/about.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>about</title>\n' +
      '<link rel="stylesheet" href="/extras/about.css">\n' +
      // Served from /extras/ by the route the scenario adds: a prefix the batch does not name.
      '<style>@import url("/static/extras/about-imp.css");</style></head>\n' +
      '<body><p id="about">about</p><p id="imp">imported</p><p id="mod">module</p><x-about id="xa"></x-about>\n' +
      '<textarea id="notes"></textarea>\n' +
      '<script>customElements.define("x-about", class extends HTMLElement {\n' +
      '  constructor() { super(); this.attachShadow({ mode: "open" }).innerHTML = ' +
      '\'<link rel="stylesheet" href="/extras/about.css"><p id="about">in a shadow root</p>\'; }\n' +
      '});</script>\n' +
      '<script type="module">import sheet from "/extras/about-mod.css" with { type: "css" };\n' +
      'document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];</script></body></html>\n',
  );
  write('extras/sprite.svg', sprite(10, '#999'));
  write('extras/pic.svg', svg(12, '#999'));
  write('extras/poster.svg', svg(16, '#999'));
  write('extras/icon.svg', svg(16, '#999'));
  write('extras/drawn.svg', svg(6, '#999'));
  write('extras/unused.svg', svg(6, '#999'));
  write(
    'extras/refs.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>refs</title>\n' +
      '<link rel="icon" href="/extras/icon.svg"></head>\n<body>\n' +
      '<svg width="20" height="20"><use id="u1" href="/extras/sprite.svg#dot"/></svg>\n' +
      '<svg width="20" height="20"><use id="u2" xlink:href="/extras/sprite.svg#dot"/></svg>\n' +
      '<svg width="20" height="20"><image id="si" href="/extras/pic.svg" width="12" height="12"/></svg>\n' +
      '<video id="v" poster="/extras/poster.svg" width="16" height="16"></video>\n' +
      '<canvas id="c" width="6" height="6"></canvas><textarea id="notes"></textarea>\n' +
      // A sprite sheet drawn on a canvas: nothing in the page names it.
      '<script>const drawn = new Image();\ndrawn.onload = () => {\n' +
      '  document.getElementById("c").getContext("2d").drawImage(drawn, 0, 0);\n  window.drawn = true;\n};\n' +
      'drawn.src = "/extras/drawn.svg";</script></body></html>\n',
  );
  write(
    'extras/refs-host.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>refs host</title></head>\n' +
      '<body><iframe src="/extras/refs.html"></iframe></body></html>\n',
  );
  write(
    'extras/later-view.js',
    'export function render(app) {\n  app.style.height = "4000px";\n  app.textContent = "rendered";\n}\n',
  );
  write(
    'extras/later.html',
    modulePage(
      'later',
      '<div id="app"></div>',
      // Built after `load`, from a module imported then: the browser restores no position there.
      'addEventListener("load", () =>\n' +
        '  container({ "/extras/later-view.js": "view" }, (c) => c.view.render(document.getElementById("app"))),\n' +
        ');',
    ),
  );
  write(
    'extras/later-host.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>later host</title></head>\n' +
      '<body><iframe src="/extras/later.html" style="width: 300px; height: 300px"></iframe></body></html>\n',
  );
  write(
    'extras/leave.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>leave</title></head>\n' +
      '<body><a id="slow" href="/extras/arrive.html">slow</a> <a id="empty" href="/extras/empty">nothing</a>\n' +
      '<a id="report" href="/extras/report.csv">report</a>\n' +
      '<form method="post" action="/extras/posted"><input id="file" name="file"><button id="send">send</button></form>\n' +
      '</body></html>\n',
  );
  write(
    'extras/arrive.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>arrive</title>\n' +
      '<link rel="stylesheet" href="/css/app.css"></head>\n<body><h1 id="arrived">arrived</h1></body></html>\n',
  );
  write(
    'extras/form.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>form</title></head>\n' +
      '<body><form method="post" action="/extras/sent.html"><input name="row" value="1">' +
      '<button id="send">send</button></form></body></html>\n',
  );
  write(
    'extras/sent.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>sent</title></head>\n' +
      '<body><p id="got">got</p></body></html>\n',
  );
  write(
    'extras/inert.html',
    '<!doctype html>\n<html><head><meta charset="utf-8"><title>inert</title>\n' +
      '<link rel="stylesheet" href="/css/app.css">\n' +
      '<style>@font-face { font-family: "Used"; src: url("/extras/used.woff2") format("woff2"); }\n' +
      '@font-face { font-family: "Later"; src: url("/extras/later.woff2") format("woff2"); }\n' +
      '#used { font-family: "Used", sans-serif; }</style></head>\n' +
      '<body><h1>inert</h1><p id="used">in the font</p><video src="/extras/clip.webm" preload="none"></video>\n' +
      '<a href="/uploads/doc.pdf">the upload</a><textarea id="notes"></textarea></body></html>\n',
  );
  for (const file of ['extras/used.woff2', 'extras/later.woff2', 'extras/clip.webm']) write(file, `${file}\n`);
  write('extras/ready.txt', 'ready\n');
  await stream.until('the prepared files to be published', (b) => b.urls.includes('/extras/ready.txt'));
  stream.close();
}

// ---- Turbo ---------------------------------------------------------------------------------------

/**
 * A page of the Turbo site (extras/turbo/, see prepare), which links `sheet` (its attributes as
 * `attrs`) and Turbo 8 (the real one, from node_modules), with `head` and `main`. `window.shown`
 * is the path of the page Turbo showed last (its `turbo:load`).
 */
function turboPage(name, sheet, { attrs = '', head = '', main = '' } = {}) {
  return (
    `<!doctype html>\n<html><head><meta charset="utf-8"><title>turbo ${name}</title>${head}\n` +
    `<link rel="stylesheet" href="${sheet}"${attrs}>\n` +
    '<script type="module" src="/extras/turbo/turbo.js"></script>\n' +
    '<script>addEventListener("turbo:load", () => (window.shown = location.pathname));</script>\n' +
    `</head>\n<body><nav>${['a', 'b', 'c', 'ta', 'tb', 'tc', 'm', 'n']
      .map((p) => `<a href="/extras/turbo/${p}.html">${p}</a>`)
      .join(' ')}</nav>\n<h1>turbo ${name}</h1>${main}</body></html>\n`
  );
}

/** Open a page of the Turbo site, once Turbo has shown it. */
async function openTurbo(context, name, base) {
  const page = await openTab(context, `/extras/turbo/${name}.html`, base);
  await page.waitForFunction((p) => window.shown === p, `/extras/turbo/${name}.html`);
  return page;
}

/** Follow the page's link to another page of the Turbo site: Turbo visits it. */
async function turboVisit(page, name) {
  const to = `/extras/turbo/${name}.html`;
  await page.click(`nav a[href="${to}"]`);
  // Its `turbo:load`: the page is rendered, after Turbo has waited for the head's new sheets.
  await page.waitForFunction((p) => window.shown === p && location.pathname === p, to);
}

/** The page's stylesheet links: `href` as written, and whether it is a swap's copy. */
function sheetLinks(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('link[rel=stylesheet]')].map((l) => ({
      href: l.getAttribute('href'),
      copy: l.hasAttribute('data-hmr-copy'),
      media: l.getAttribute('media'),
    })),
  );
}

function h1Now(page) {
  return page.$eval('h1', (h1) => getComputedStyle(h1).color);
}

/**
 * Turbo's snapshot cache does not bring back an older copy of a swapped sheet. After a save,
 * visits a → b → a leave the swapped address in the snapshot of b; after a second save, which
 * deleted a rule, the visit to b put Turbo's head merge to work: it added the older address
 * back, and the one the server wrote, so the head had three links to the sheet, and with
 * `max-age` (served from the cache, not asked again) the deleted rule applied again. Without
 * it, each save and visit added a link more. A link the page puts back alone (a framework that
 * renders the head again) takes the newest copy.
 */
async function turboCache() {
  const front = await frontProxy({ cachedSheets: true });
  const context = await newContext();
  const sheet = '/extras/turbo/cache.css';
  const base = 'h1 { font-size: 20px; }\n';
  try {
    const page = await openTurbo(context, 'a', front.origin);
    const plain = await h1Now(page);
    await publish({ 'extras/turbo/cache.css': `${base}h1 { color: rgb(255, 0, 0); }\n` });
    await h1Color(page, 'rgb(255, 0, 0)');
    await turboVisit(page, 'b');
    await turboVisit(page, 'a');
    assert.equal(await h1Now(page), 'rgb(255, 0, 0)');
    // The rule goes: the page is as it was before the first save.
    await publish({ 'extras/turbo/cache.css': base });
    await h1Color(page, plain);
    await page.waitForFunction(() => !document.querySelector('link[data-hmr-copy]'));
    const [{ href: newest }] = await sheetLinks(page);
    assert.match(newest, /\/extras\/turbo\/cache\.css\?t=\d+$/);
    await turboVisit(page, 'b');
    assert.deepEqual(
      { color: await h1Now(page), links: await sheetLinks(page) },
      { color: plain, links: [{ href: newest, copy: false, media: null }] },
      'after a visit from the snapshot cache: the newest copy, once',
    );
    await turboVisit(page, 'c');
    await turboVisit(page, 'b');
    assert.deepEqual(await sheetLinks(page), [{ href: newest, copy: false, media: null }]);

    // The head rendered again: the link the server wrote, alone, in place of the page's.
    const renewed = await page.evaluate((href) => {
      const fresh = document.createElement('link');
      fresh.rel = 'stylesheet';
      fresh.href = href;
      document.querySelector('link[rel=stylesheet]').replaceWith(fresh);
      window.fresh = fresh;
      return Promise.resolve().then(() => fresh.getAttribute('href'));
    }, sheet);
    assert.equal(renewed, newest, 'a link put back alone takes the newest copy');
    await page.waitForFunction(() => window.fresh.sheet);
    assert.equal(await h1Now(page), plain);
    assert.equal(await loads(page), 1, 'no reload');
  } finally {
    await context.close();
    front.close();
  }
}

/**
 * A stylesheet Turbo tracks (`data-turbo-track="reload"`, Rails' default layout) keeps its
 * address through a swap: Turbo compares the tracked head elements of each page it visits with
 * the page's, by their HTML, and reloaded on the first visit after a CSS save, taking the page's
 * state along. A copy carries the new styles, on Turbo visits too, stands in for the link on the
 * next save, and does not come back from Turbo's snapshot cache in an older version. A page whose
 * tracked sheet really is another still reloads.
 */
async function turboTrack() {
  const context = await newContext();
  try {
    const page = await openTurbo(context, 'ta');
    const link = () => page.$eval('link[data-turbo-track]', (l) => l.outerHTML);
    const written = await link();
    await page.evaluate(() => (window.kept = 'yes'));
    const first = freshColor();
    write('extras/turbo/track.css', `h1 { color: ${first}; }\n`);
    await h1Color(page, first);
    const [, { href: firstCopy } = {}] = await sheetLinks(page);

    await turboVisit(page, 'tb');
    assert.equal(await loads(page), 1, 'no reload on the visit after the swap');
    assert.equal(await page.evaluate(() => window.kept), 'yes');
    assert.equal(await h1Now(page), first);
    assert.equal(await link(), written, 'the tracked link as the server wrote it');
    const carried = (href) => [
      { href: '/extras/turbo/track.css', copy: false, media: null },
      { href, copy: true, media: null },
    ];
    assert.match(firstCopy, /track\.css\?t=\d+$/);
    assert.deepEqual(await sheetLinks(page), carried(firstCopy));

    // The next save: a new copy takes over from the first.
    const second = freshColor();
    write('extras/turbo/track.css', `h1 { color: ${second}; }\n`);
    await h1Color(page, second);
    const [, { href: secondCopy }] = await sheetLinks(page);
    assert.notEqual(secondCopy, firstCopy);
    assert.deepEqual(await sheetLinks(page), carried(secondCopy));
    assert.equal(await link(), written);

    // Back to a page Turbo has a snapshot of, from before the second save: its copy does not
    // come back.
    await turboVisit(page, 'ta');
    assert.equal(await h1Now(page), second);
    assert.deepEqual(await sheetLinks(page), carried(secondCopy));
    assert.equal(await loads(page), 1, 'no reload');
    assert.equal(await page.evaluate(() => window.kept), 'yes');

    // The head rendered again: the tracked link as the server wrote it, in place of the page's,
    // takes the newest copy, carried as well; the old copy leaves with the old link.
    await page.evaluate(() => {
      const old = document.querySelector('link[data-turbo-track]');
      old.replaceWith(old.cloneNode());
    });
    await page.waitForFunction(
      (color) =>
        document.querySelector('link[data-turbo-track]').sheet?.disabled &&
        document.querySelector('link[data-hmr-copy]').sheet &&
        getComputedStyle(document.querySelector('h1')).color === color,
      second,
    );
    assert.deepEqual(await sheetLinks(page), carried(secondCopy));

    // A page whose tracked sheet is another: Turbo reloads, as it would without the proxy.
    await page.click('nav a[href="/extras/turbo/tc.html"]');
    await page.waitForFunction(() => sessionStorage.loads === '2' && window.shown === location.pathname);
    assert.equal(new URL(page.url()).pathname, '/extras/turbo/tc.html');
  } finally {
    await context.close();
  }
}

/** The Turbo page that asks Turbo to refresh by morphing, in its `version`. */
function morphPage(version) {
  const head = '\n<meta name="turbo-refresh-method" content="morph">';
  const main = `<p id="v">${version}</p><div style="height: 400vh"></div>`;
  return turboPage('m', '/extras/turbo/cache.css', { head, main });
}

/**
 * A template saved on a page that runs Turbo 8 and asks it to refresh by morphing: Turbo
 * refreshes it, and the page's state stays (its scripts' variables, the scroll position), as
 * hotwire-spark does. It was reloaded. A Turbo page that does not ask for morphing reloads.
 */
async function turboMorph() {
  const context = await newContext();
  try {
    const page = await openTurbo(context, 'm');
    await page.evaluate(() => {
      window.kept = 'yes';
      window.scrollTo(0, 700);
    });
    write('extras/turbo/m.html', morphPage(2));
    await page.waitForFunction(() => document.getElementById('v').textContent === '2');
    assert.equal(await loads(page), 1, 'no reload');
    assert.equal(await page.evaluate(() => window.kept), 'yes');
    assert.equal(await page.evaluate(() => window.scrollY), 700, 'scroll position kept');
    assert.ok(logged('[hmr] refreshing through Turbo: /extras/turbo/m.html changed'));
    // Again, once Turbo is done with the first.
    await page.waitForFunction(() => !document.documentElement.hasAttribute('aria-busy'));
    write('extras/turbo/m.html', morphPage(3));
    await page.waitForFunction(() => document.getElementById('v').textContent === '3');
    assert.equal(await loads(page), 1, 'no reload');

    // Turbo's visit takes the page's meta out with its head.
    await turboVisit(page, 'n');
    assert.equal(await page.$('meta[name="turbo-refresh-method"]'), null);
    const reloaded = page.waitForEvent('load');
    write('extras/turbo/n.html', read('extras/turbo/n.html').replace('<p id="v">1</p>', '<p id="v">2</p>'));
    await reloaded;
    assert.equal(await page.textContent('#v'), '2');
    assert.equal(await loads(page), 2, 'reloaded');
  } finally {
    await context.close();
  }
}

const all = {
  css,
  duplicates,
  copyFails,
  cssTwice,
  cssSaid,
  cssOff,
  sheetKinds,
  keptRemoved,
  keptChanged,
  turboCache,
  turboTrack,
  turboMorph,
  ownT,
  stayed,
  fragmentFirst,
  image,
  srcset,
  imageRefs,
  savedShorter,
  cssElsewhere,
  xhtml,
  modules,
  lateContainer,
  stuckUpdate,
  errors,
  loadErrors,
  stillBroken,
  heldBack,
  twoContainers,
  disposeCallbacks,
  overtakenDispose,
  workerDispose,
  deletedCached,
  cachedReload,
  dataModules,
  definedElement,
  sourceMap,
  importMap,
  extras,
  deepImport,
  shadowRoots,
  html,
  navigating,
  noPage,
  postAnswer,
  waitingPost,
  inert,
  servedOnly,
  scrollKept,
  missing,
  badUrls,
  globalNames,
  tabs,
  frames,
  frameOnly,
  lonelyFrame,
  shared,
  refusedFirst,
  workerRefused,
  fallback,
  behind,
  keptUp,
  stuckPosition,
  slowLeader,
  back,
  bfcache,
  restart,
};
const only = process.env.ONLY ? process.env.ONLY.split(',') : Object.keys(all);
let failed = 0;
const started = Date.now();
try {
  await prepare();
  browser = await launch();
  for (const name of only) {
    transcript = [];
    const t0 = Date.now();
    try {
      await all[name]();
      console.log(`ok ${name} (${Date.now() - t0} ms)`);
    } catch (err) {
      failed += 1;
      console.log(`FAIL ${name} (${Date.now() - t0} ms): ${err.stack || err}`);
      console.log(transcript.map((l) => `    ${l}`).join('\n'));
    }
  }
} finally {
  await browser?.close();
  fs.rmSync(scratch, { recursive: true, force: true });
}
console.log(`${failed ? 'FAILED' : 'passed'}: ${only.length - failed}/${only.length} in ${Date.now() - started} ms`);
process.exit(failed ? 1 : 0);
