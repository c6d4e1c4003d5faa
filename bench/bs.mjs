// Starts one browser-sync instance in proxy mode for bench/bench.py and keeps it running until
// the process is told to stop (SIGTERM / SIGINT).
//
//   node bench/bs.mjs <upstream-origin> <port> [<watched-dir> [<reloadDebounce-ms>]]
//
// Listens on 127.0.0.1 only, with no browser opened, no notification overlay and no UI server.
// Everything else (reloadDebounce 500, injectChanges, ghostMode, …) is browser-sync's default
// unless a debounce is given. Prints `READY <port>` once it serves.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const browserSync = require('browser-sync');

const [upstream, port, dir, debounce] = process.argv.slice(2);
if (!upstream || !port) {
  console.error('usage: node bs.mjs <upstream-origin> <port> [<watched-dir> [<reloadDebounce-ms>]]');
  process.exit(2);
}

const options = {
  proxy: upstream,
  port: Number(port),
  listen: '127.0.0.1',
  open: false,
  notify: false,
  ui: false,
  online: false,
  logLevel: 'silent',
  files: dir ? [dir] : false,
};
if (debounce !== undefined) {
  options.reloadDebounce = Number(debounce);
}

const bs = browserSync.create();
bs.init(options, (err) => {
  if (err) {
    console.error(`browser-sync failed to start: ${err.message || err}`);
    process.exit(1);
  }
  console.log(`READY ${port}`);
});

const stop = () => {
  bs.exit();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
