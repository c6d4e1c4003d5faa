// Save-to-browser latency, for bench/bench.py: headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core) with one tab per configuration, all open at once; for each kind of
// measurement and each sample the configurations take turns (the order rotates every sample).
//
//   node bench/latency.mjs <config.json>
//
// config: { chromium, samples, settleMs, timeoutMs, out, targets: [{ name, kind: "hmr"|"bs",
//           origin, base, dir }] }   (`base` is the URL prefix of `dir` on `origin`)
//
// Kinds, timed from just before the file write (Node) to a timestamp taken in the page, both on
// the wall clock (performance.timeOrigin + performance.now()); the page clock's offset from
// Node's is calibrated per document by the evaluate round trip with the smallest RTT:
//
//   event   the change notification reaches JavaScript in the page. hmr-proxy: an EventSource
//           on /changes opened by the page itself (a text/plain page, so no client reloads it);
//           browser-sync: its client's socket.io `file:reload` for a stylesheet no page links.
//   css     a linked stylesheet is rewritten; the page's own probe script reports when
//           getComputedStyle of #probe shows the new width (checked on every `load` event in
//           the document, every DOM mutation and every 2 ms). Whether it happened by a hot swap
//           (same document) or a full reload (new document) is recorded as `mode`.
//   reload  a 2 KB page is rewritten; the reloaded document's `load` event (it carries the
//           version written, so an older document cannot count).
//
// Prints a JSON summary and writes it to `out`.

import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const SAMPLES = cfg.samples ?? 20;
const SETTLE_MS = cfg.settleMs ?? 150;
const TIMEOUT_MS = cfg.timeoutMs ?? 5000;
const KINDS = cfg.kinds ?? ['event', 'css', 'reload'];

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function quantile(values, p) {
  if (values.length === 0) return null;
  const v = [...values].sort((a, b) => a - b);
  const k = ((v.length - 1) * p) / 100;
  const lo = Math.floor(k);
  const hi = Math.min(lo + 1, v.length - 1);
  return v[lo] + (v[hi] - v[lo]) * (k - lo);
}

/** Counts EventSources that opened in this document (the hmr-proxy client's, or the page's). */
function countEventSources() {
  const Native = window.EventSource;
  if (!Native || Native.__benchWrapped) return;
  window.__esOpen = 0;
  class Counted extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('open', () => {
        window.__esOpen += 1;
      });
    }
  }
  Counted.__benchWrapped = true;
  window.EventSource = Counted;
}

class Tab {
  constructor(target) {
    this.t = target;
    this.waiters = [];
    this.reports = [];
    this.offsets = new Map();
    this.lastOffset = 0;
  }

  async open(browser) {
    this.reloadTemplate = fs.readFileSync(`${this.t.dir}/reload.html`, 'utf8');
    this.context = await browser.newContext();
    this.page = await this.context.newPage();
    this.page.setDefaultTimeout(15_000);
    await this.page.exposeBinding('__benchReport', (_source, report) => this.onReport(report));
    await this.page.addInitScript(countEventSources);
    this.page.on('pageerror', (e) => console.error(`[${this.t.name}] page error: ${e.message}`));
  }

  onReport(report) {
    this.reports.push(report);
    for (const w of [...this.waiters]) {
      if (w.pred(report)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(report);
      }
    }
  }

  waitFor(pred, timeoutMs) {
    return new Promise((resolve) => {
      const w = { pred, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          resolve(null);
        }
      }, timeoutMs);
    });
  }

  /** The page clock minus Node's, for the current document. */
  async calibrate() {
    let best = null;
    for (let i = 0; i < 5; i += 1) {
      const a = now();
      const b = await this.page.evaluate(() => ({
        doc: performance.timeOrigin,
        t: performance.timeOrigin + performance.now(),
      }));
      const c = now();
      if (!best || c - a < best.rtt) best = { rtt: c - a, off: b.t - (a + c) / 2, doc: b.doc };
    }
    this.offsets.set(best.doc, best.off);
    this.lastOffset = best.off;
    return best;
  }

  async doc() {
    return this.page.evaluate(() => performance.timeOrigin);
  }

  async goto(file) {
    await this.page.goto(this.t.origin + this.t.base + file, { waitUntil: 'load' });
  }

  /** Wait until the page will hear about the next write. */
  async ready(kind) {
    if (this.t.kind === 'bs') {
      await this.page.waitForFunction(
        () => window.___browserSync___?.socket?.connected === true,
        null,
        { timeout: 10_000, polling: 10 },
      );
      if (kind === 'event') await this.hookBrowserSync();
    } else {
      if (kind === 'event') await this.openOwnStream();
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline) {
        const open = await this.page.evaluate(() => window.__esOpen || 0).catch(() => 0);
        if (open > 0) break;
        await sleep(10);
      }
    }
  }

  async openOwnStream() {
    await this.page.evaluate(
      (changes) =>
        new Promise((resolve) => {
          if (window.__benchStream) return resolve();
          const es = new EventSource(changes);
          window.__benchStream = es;
          es.addEventListener('change', (e) =>
            window.__benchReport({
              kind: 'event',
              doc: performance.timeOrigin,
              t: performance.timeOrigin + performance.now(),
              data: e.data,
            }),
          );
          es.addEventListener('hello', () => resolve(), { once: true });
        }),
      this.t.changes || '/changes',
    );
  }

  async hookBrowserSync() {
    await this.page.evaluate(() => {
      if (window.__benchHooked) return;
      window.__benchHooked = true;
      window.___browserSync___.socket.onAny((name, data) =>
        window.__benchReport({
          kind: 'event',
          doc: performance.timeOrigin,
          t: performance.timeOrigin + performance.now(),
          ev: name,
          path: data && (data.path || data.basename || ''),
        }),
      );
    });
  }

  async prepare(kind) {
    const file = { event: this.t.kind === 'bs' ? 'a.html' : 'plain.txt', css: 'css.html', reload: 'reload.html' }[kind];
    await this.goto(file);
    await this.ready(kind);
    await this.calibrate();
  }

  /** One sample: write, wait for the page's report, convert to ms since the write. */
  async measure(kind, n) {
    await this.ready(kind);
    await sleep(SETTLE_MS + Math.random() * 50);
    // Calibrated again for every sample: one calibration per document once put a whole kind's
    // samples 13 ms early (a page-to-Node offset that was off), where one bad sample would not
    // move the median.
    const docBefore = (await this.calibrate()).doc;
    let file;
    let content;
    let pred;
    if (kind === 'event') {
      file = this.t.kind === 'bs' ? 'other.css' : 'a.txt';
      content = `/* ${n} */\n`;
      pred =
        this.t.kind === 'bs'
          ? (r) => r.kind === 'event' && r.ev === 'file:reload' && String(r.path).includes('other.css')
          : (r) => r.kind === 'event' && String(r.data).includes('a.txt');
    } else if (kind === 'css') {
      file = 'style.css';
      const width = 100 + n;
      content = `#probe { width: ${width}px; height: 10px; background: #c33; }\n`;
      pred = (r) => r.kind === 'css' && r.width === `${width}px`;
    } else {
      file = 'reload.html';
      // The 2 KB page as bench.py wrote it, with version `n` on <html>.
      content = this.reloadTemplate.replace(/data-v="\d+"/, `data-v="${n}"`);
      pred = (r) => r.kind === 'load' && r.version === String(n);
    }
    const waiter = this.waitFor(pred, TIMEOUT_MS);
    const reportsBefore = this.reports.length;
    const t0 = now();
    fs.writeFileSync(`${this.t.dir}/${file}`, content);
    const r = await waiter;
    if (!r) return { ms: null, timeout: true };
    // Calibrate against the document that reported, if it is still the current one.
    let off = this.offsets.get(r.doc);
    if (off === undefined) {
      const cal = await this.calibrate().catch(() => null);
      off = cal && cal.doc === r.doc ? cal.off : this.lastOffset;
    }
    const ms = r.t - off - t0;
    // Let the page go quiet; count extra loads a single save caused (a burst not folded).
    await sleep(SETTLE_MS);
    const after = this.reports.slice(reportsBefore);
    const loads = after.filter((x) => x.kind === 'load').length;
    return { ms, mode: r.doc === docBefore ? 'same document' : 'reloaded', loads };
  }
}


const browser = await chromium.launch({
  executablePath: cfg.chromium || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
});

const result = { samples: SAMPLES, settle_ms: SETTLE_MS, targets: {} };
try {
  const tabs = [];
  for (const t of cfg.targets) {
    const tab = new Tab(t);
    await tab.open(browser);
    tabs.push(tab);
    result.targets[t.name] = {};
  }
  let n = 1;
  for (const kind of KINDS) {
    for (const tab of tabs) {
      await tab.prepare(kind);
      result.targets[tab.t.name][kind] = { ms: [], timeouts: 0, modes: {}, loads: [] };
    }
    for (let s = 0; s < SAMPLES; s += 1) {
      for (let i = 0; i < tabs.length; i += 1) {
        const tab = tabs[(s + i) % tabs.length];
        const out = result.targets[tab.t.name][kind];
        let r;
        try {
          r = await tab.measure(kind, n);
        } catch (e) {
          console.error(`[${tab.t.name}] ${kind} sample ${s}: ${e.message}`);
          r = { ms: null, timeout: true };
        }
        n += 1;
        if (r.ms === null) {
          out.timeouts += 1;
          // Start the next sample from a clean page.
          await tab.prepare(kind).catch(() => {});
          continue;
        }
        out.ms.push(r.ms);
        out.modes[r.mode] = (out.modes[r.mode] || 0) + 1;
        if (kind === 'reload') out.loads.push(r.loads);
      }
    }
    for (const tab of tabs) {
      const out = result.targets[tab.t.name][kind];
      out.p50 = quantile(out.ms, 50);
      out.p95 = quantile(out.ms, 95);
      console.error(
        `  ${tab.t.name.padEnd(14)} ${kind.padEnd(7)} p50 ${out.p50?.toFixed(1)} ms  p95 ${out.p95?.toFixed(1)} ms` +
          `  (${out.ms.length} samples, ${out.timeouts} timeouts, ${JSON.stringify(out.modes)})`,
      );
    }
  }
} finally {
  await browser.close();
}
fs.writeFileSync(cfg.out, JSON.stringify(result, null, 1));
console.log(JSON.stringify(result));
