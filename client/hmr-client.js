// hmr-proxy's browser client: served by the proxy at /__hmr/client.js and loaded by the tag it
// injects into HTML pages. A plain ES module without dependencies; the wire protocol and the
// container API are documented in client/README.md.
//
// On each change batch from the proxy's event stream:
//   a <link rel=stylesheet> (or a sheet it @imports)  -> pointed at a cache-busted address (one
//                                                        Turbo tracks keeps it: a copy carries
//                                                        the new sheet); older copies coming
//                                                        back (Turbo's cache) leave
//   a stylesheet the page neither links nor loaded    -> the page's own sheets, loaded again
//   <img>/<source> src and srcset, CSS url() values,  -> cache-busted in place
//   SVG <use>/<image> href, <video poster>, icons
//   (in the document and in every open shadow root in it)
//   an image the page never loaded                    -> nothing (another page's)
//   a document, media file, archive or font the page  -> nothing (an upload)
//   neither embeds nor loaded
//   a file the page neither loaded nor embeds,        -> nothing (a note, another page)
//   in static mode (`served`), but a script or the page's own file
//   modules registered with container()               -> re-imported, update(c) called once
//   a source map (`app.js.map`, `site.css.map`)       -> nothing (only DevTools reads it)
//   anything else, or `reload: true`                  -> one full reload, which keeps the
//                                                        scroll position; the reloaded page
//                                                        shows its load errors on the overlay
//                                                        (templates, on a page Turbo 8 morphs:
//                                                        refreshed through Turbo); held while
//                                                        the tab loads another page, which a
//                                                        reload would cancel; a page answering
//                                                        a POST is loaded again with a GET
//
// One stream per browser and origin: the tab holding a Web Lock opens the EventSource and relays
// what it hears to the other tabs and frames over a BroadcastChannel. When it closes, the next tab
// in the lock's queue takes over and resumes after the last batch it saw, so nothing is lost.
// Where there are no Web Locks (an address other than localhost is not a secure context), a
// SharedWorker running this same file holds the one stream and passes it on to every page.

const KEY = Symbol.for('hmr-proxy');

/**
 * Register swappable modules. `map` says which module fills which property of the container
 * (module URL → property name, URLs resolved against the page, then through its import map, as
 * is a bare specifier); `update(c)` is called once all are imported, then again after every
 * change batch that touched one of them — once per batch, with only the changed modules
 * re-imported. Returns a promise of the container after the first update. Each property holds
 * the module's namespace object.
 *
 *   container({ '/js/view.js': 'view' }, (c) => c.view.render(state));
 *
 * Outside a page (a Web Worker) there is nothing to swap: it says so, and the promise never
 * settles.
 */
export function container(map, update) {
  if (client) return client.container(map, update);
  log('container() in a worker swaps nothing: its update function is never called');
  return new Promise(() => {});
}

/**
 * Undo what a swappable module's top level set up (a timer, a listener on the page, a global)
 * when a new copy replaces it: `callback` runs once, just before the new copy is imported, as
 * Vite's `import.meta.hot.dispose` does. `moduleUrl` is the module's own `import.meta.url`, which
 * names this copy. Without it each save adds another timer or listener beside the old ones.
 *
 *   const timer = setInterval(tick, 1000);
 *   dispose(import.meta.url, () => clearInterval(timer));
 *
 * Outside a page it does nothing: a module the page swaps may be a Web Worker's too, whose copy
 * is never replaced.
 */
export function dispose(moduleUrl, callback) {
  if (typeof callback !== 'function') {
    throw new TypeError('dispose(import.meta.url, callback): callback is not a function');
  }
  client?.dispose(moduleUrl, callback);
}

/** A stream the browser gave up on (a non-200 answer) is reopened after this, doubling. */
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 10000;

/**
 * The queue of batches waits this long for one (a module's import, the update function) before
 * it lets the next go ahead; the slow one still finishes. An update that never returns (awaiting
 * an event that never comes) held back every later change in the tab.
 */
const BATCH_PATIENCE_MS = 5000;

/** How long a reload waits for the changed files it fetches again first (see refreshFetched). */
const REFRESH_PATIENCE_MS = 1000;

/**
 * How long a navigation to another document holds a reload back (see beingLeft): one whose page
 * has not come by then is taken for one that ended without a page (an answer with no content, a
 * download), which Chromium tells the page nothing of. Long, as cancelling one loses what it
 * carried (an upload, a click), where waiting only leaves the page as it was a while longer.
 */
const NAVIGATION_PATIENCE_MS = 30_000;

/** How long the overlay waits for a broken module's line and column (see `locate`). */
const LOCATE_PATIENCE_MS = 1000;

/** The proxy serves this file with its --changes-path here. */
const CHANGES_PATH = '/changes';

/** The change stream's URL (a `changes` query parameter on this file's URL overrides the path). */
function changesUrl(selfUrl) {
  return new URL(new URL(selfUrl).searchParams.get('changes') || CHANGES_PATH, selfUrl);
}

/** What the Web Lock, the BroadcastChannel and the SharedWorker of one stream are called. */
function streamName(changes) {
  return `hmr-proxy ${changes.pathname}`;
}

function start(selfUrl) {
  const changes = changesUrl(selfUrl);
  const name = streamName(changes);
  /**
   * Where the batches stood when the proxy served this page (see pagePosition): its content
   * reflects every batch up to that one and none after. Null when the page does not say.
   */
  const since = trustedPosition(pagePosition());
  /**
   * For debugging and tests (not an API): role is leader, follower, frame, shared or solo;
   * lastId is the newest batch this page has taken in (its position, to start with); loadWatch
   * is `watching` while the errors of this load go on the overlay (see watchLoad), then `done`,
   * and `none` on a load that is not watched.
   */
  const state = {
    role: 'none',
    instance: null,
    connected: false,
    since,
    loadWatch: 'none',
    get lastId() {
      return seen.size ? Math.max(floor ?? -Infinity, ...seen) : floor;
    },
  };
  /**
   * Batches up to this id are in the page already: its position (else the first stream's), moved
   * on over every batch taken in since without a gap.
   */
  let floor = since;
  /** Ids above the floor taken in (after a gap): a batch may come twice, relayed and replayed. */
  const seen = new Set();
  /** The newest batch id known to exist (from a `hello`, or a batch). */
  let newest = since;
  /** Ends the stream of this page's own that is catching it up (see catchUp); null when none. */
  let catchingUp = null;
  /** One per container() call: its module entries, the container object, the update function. */
  const boxes = [];
  /** Module key → the batch id of the newest copy imported (absent: the plain URL's). */
  const imported = new Map();
  /** Batches are applied one after the other (module imports are asynchronous). */
  let queue = Promise.resolve();
  /** What this document has fetched, and which of its scripts failed to (see fetchRecord). */
  const fetched = fetchRecord();
  /** This page answers a form sent with POST: it reloads with a GET (see reloadWithGet). */
  const answersPost = pageAnswersPost();
  /** The newest dev server comeback this page was served after (see pageRestart). */
  const restart = pageRestart();
  let reloading = false;
  /**
   * A navigation to another document under way (see watchDepartures): `at`, when it began
   * (`performance.now()`), and its `navigate` event (none from `beforeunload`). Null when none.
   */
  let departure = null;
  /** The navigate event this document heard last (see watchDepartures). */
  let lastNavigate = null;
  /** Why the page would have reloaded, while a navigation holds the reload back (see hold). */
  let held = null;
  let heldTimer = null;
  /** A refresh through Turbo is under way (see turboRefresh). */
  let refreshing = false;
  let retryMs = RETRY_MIN_MS;
  /**
   * To and from the other pages of the origin (see listen): null without BroadcastChannel, and
   * while the page is in the back-forward cache (see away).
   */
  let channel = null;
  /** The stream this page opened (see connect), and the timer that opens another. */
  let stream = null;
  let retry = null;
  /** Aborted when the page goes into the back-forward cache: it gives up the Web Lock. */
  let leaving = null;
  /** Set while a page shown again from the back-forward cache waits to join (see back). */
  let rejoin = null;
  /** The dev servers the proxy says are down, for longer than a restart takes (see upstream). */
  let down = [];

  window.__hmrProxy = true;
  restoreScroll();
  watchLoad();
  watchDepartures();

  // ---- Who holds the connection ---------------------------------------------------------------

  listen();
  const locks = channel && navigator.locks;
  if (!locks && typeof SharedWorker === 'function') {
    share(); // frames too: without a leader, nothing would relay to them
  } else if (window.top !== window && (topClient() || topHasTag())) {
    // A frame in a page that runs the client never opens a stream: the tab relays to it. One
    // whose page does not (a page on another origin: an IDE's preview, a dev portal) is a tab
    // of its own here, or it would never hear a change.
    state.role = 'frame';
    channel?.postMessage({ type: 'ask' });
  } else if (locks) {
    follow();
  } else {
    solo(); // neither Web Locks nor a SharedWorker: a stream per tab
  }
  addEventListener('pagehide', (event) => event.persisted && away());
  addEventListener('pageshow', (event) => event.persisted && back());

  function listen() {
    if (typeof BroadcastChannel !== 'function') return;
    channel = new BroadcastChannel(name);
    channel.onmessage = (event) => heard(event.data);
  }

  /** Ask how far the stream is, and queue for the Web Lock: the page that holds it leads. */
  function follow() {
    state.role = 'follower';
    channel.postMessage({ type: 'ask' });
    const { signal } = (leaving = new AbortController());
    navigator.locks
      .request(name, { signal }, () => {
        if (signal.aborted) return; // granted as the page went into the bfcache: given back
        state.role = 'leader';
        connect();
        // Held until this page goes away, or into the back-forward cache.
        return new Promise((resolve) => signal.addEventListener('abort', resolve));
      })
      .catch(() => {
        // Not for the place in the queue the page gave up (see away): that rejects too.
        if (!signal.aborted) solo();
      });
  }

  /**
   * The page goes into the back-forward cache. Chromium evicts a cached page that a message on
   * its BroadcastChannel reaches, or that holds a Web Lock another page asks for, and the next
   * page of the app does both as its client starts: back and forward within the app ran every
   * page anew, and its state was lost. So the page closes its channel and gives up what it
   * holds: the lock (or its place in the lock's queue), the stream it leads with, a catch-up.
   * (The SharedWorker's pages leave it: see share. A solo page's stream is the browser's to
   * resume: its EventSource reconnects, sending Last-Event-ID.)
   */
  function away() {
    clearTimeout(rejoin);
    channel?.close();
    channel = null;
    leaving?.abort();
    catchingUp?.();
    if (state.role !== 'leader') return;
    state.role = 'follower';
    state.connected = false;
    clearTimeout(retry);
    stream.close();
  }

  /**
   * Shown again from the back-forward cache (see away): it joins as a starting page does, and
   * the answer to its ask (or the stream it then leads with, from its floor) brings what it
   * missed meanwhile. In a task of its own: Chromium shows it before the page it leaves has gone
   * into the cache (that page lets the lock go in its `pagehide`), and a lock asked for in
   * between was granted to nobody, in any tab, ever again.
   */
  function back() {
    listen();
    rejoin = setTimeout(() => {
      if (state.role === 'frame') channel?.postMessage({ type: 'ask' });
      else if (state.role === 'follower') follow();
    });
  }

  function solo() {
    state.role = 'solo';
    // Said, because it fails silently: a stream holds one of the six connections a browser
    // allows an origin, and a sixth tab like this one leaves page loads nothing to go over.
    log(
      'no Web Locks and no SharedWorker here: this tab opens a stream of its own, and six ' +
        'such tabs use up the connections a browser allows a site; open it on ' +
        'http://localhost or 127.0.0.1 to share one',
    );
    connect();
  }

  /**
   * Hear the stream through the SharedWorker that holds it for every page of this origin (see
   * sharedStream). The page that opens it gets its stream from its own position, as a leader
   * does; the others are followers, and catch up by themselves when behind. A worker that cannot
   * start (a policy that forbids workers) leaves the page solo.
   */
  function share() {
    state.role = 'shared';
    let worker;
    try {
      worker = new SharedWorker(selfUrl, { type: 'module', name });
    } catch {
      solo();
      return;
    }
    const { port } = worker;
    worker.addEventListener('error', () => {
      if (state.role !== 'shared' || state.connected) return;
      port.close();
      solo();
    });
    port.onmessage = ({ data }) => {
      if (data.type === 'hello' && !reloading) {
        if (state.instance === null) log(`connected to ${changes.pathname} (shared)`);
        state.connected = true;
      }
      heard(data);
    };
    port.postMessage({ type: 'join', floor });
    // A page kept for back and forward leaves too (the stream closes with the last page), and
    // joins again when shown: the answer tells it how far behind it is.
    addEventListener('pagehide', () => port.postMessage({ type: 'leave' }));
    addEventListener('pageshow', (event) => event.persisted && port.postMessage({ type: 'join', floor }));
  }

  function connect() {
    const url = new URL(changes);
    // A new EventSource cannot send Last-Event-ID; the proxy reads it from the query as well.
    // From the floor, not the newest batch taken in: what a gap below that lacks is replayed.
    if (floor !== null) url.searchParams.set('lastEventId', String(floor));
    const source = new EventSource(url);
    stream = source;
    source.addEventListener('hello', (event) => {
      const { instance, last } = JSON.parse(event.data);
      if (state.instance === null) log(`connected to ${changes.pathname} (${state.role})`);
      retryMs = RETRY_MIN_MS;
      hello(instance, last, false);
      if (reloading) return; // a new proxy run: this page is going, and speaks for it no more
      state.connected = true;
      relay({ type: 'hello', instance, last: newest });
      // A stream opens with the list when it is not empty (right after this): none, none down.
      if (down.length) {
        relay({ type: 'upstream', down: [] });
        upstream([]);
      }
    });
    source.addEventListener('change', (event) => {
      const batch = JSON.parse(event.data);
      relay({ type: 'change', batch });
      receive(batch, true);
    });
    source.addEventListener('upstream', (event) => {
      const { down: list } = JSON.parse(event.data);
      relay({ type: 'upstream', down: list });
      upstream(list);
    });
    source.addEventListener('error', () => {
      state.connected = false;
      // CONNECTING: the browser retries by itself (the stream's `retry`, Last-Event-ID).
      // CLOSED: it gave up, e.g. on a 502 from something in front; open a new one, later.
      if (source.readyState !== EventSource.CLOSED) return;
      log(`stream closed; retrying in ${retryMs / 1000} s`);
      retry = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    });
  }

  function relay(message) {
    // A page on its way out (reloading) speaks for the stream no more: a batch it still receives
    // (the proxy's catch-up reload after a restart) would reach tabs that have already reloaded.
    if (state.role === 'leader' && !reloading) channel.postMessage(message);
  }

  /**
   * A message from the channel (a leader's relay, or a page asking), or from the SharedWorker,
   * which says whether the stream it passes on is this page's own (`mine`).
   */
  function heard(message) {
    // A page on its way out neither answers nor acts: its instance may be the previous proxy
    // run's, and a starting tab that adopted it would reload again as soon as it connected —
    // two tabs reloading after a restart would then take turns reloading each other.
    if (reloading) return;
    if (message.type === 'ask') {
      // A tab or frame just started: tell it which proxy run this is and where we are.
      if (state.role === 'leader' && state.connected) {
        channel.postMessage({ type: 'hello', instance: state.instance, last: newest });
        if (down.length) channel.postMessage({ type: 'upstream', down });
      }
    } else if (message.type === 'hello') {
      hello(message.instance, message.last, !message.mine);
      // The list follows a hello when it is not empty (a page back from the back-forward cache
      // may hold one from before).
      if (down.length && !reloading) upstream([]);
    } else if (message.type === 'change') {
      receive(message.batch, message.mine === true);
    } else if (message.type === 'upstream') {
      upstream(message.down);
    }
  }

  /**
   * The proxy's list of the dev servers down for longer than a restart takes (a crash, a syntax
   * error its reloader waits on): said in the console and in a note in the page's corner until
   * they answer again. The reload when one is back is the proxy's, as after any restart. Frames
   * leave the note to their page, and the proxy's waiting page has no need of it.
   */
  function upstream(list) {
    const was = down;
    down = Array.isArray(list) ? list.filter((origin) => typeof origin === 'string') : [];
    for (const origin of down) {
      if (!was.includes(origin)) {
        log(`${origin} is down (its terminal says why); this page reloads once it is back`);
      }
    }
    for (const origin of was) if (!down.includes(origin)) log(`${origin} answers again`);
    // The proxy's waiting page says so itself.
    if (window.top === window && !pollsForServer()) downNote(down);
  }

  /** A stream's greeting (`relayed`: the leader's, passed on): the proxy run, its newest batch. */
  function hello(instance, last, relayed) {
    if (state.instance !== null && instance !== state.instance) {
      reload('the proxy restarted');
      if (reloading) return;
      // Kept by its user: the page goes on with the new run, from where that stands.
      floor = null;
    }
    state.instance = instance;
    if (typeof last !== 'number') return;
    newest = Math.max(newest ?? last, last);
    if (floor === null) {
      // A page that does not know its position (not injected, or Server-Timing hidden from
      // it) takes the stream's: what it has not heard of yet is in it, as far as it can tell.
      floor = last;
      advance();
      return;
    }
    // The leader relays what it hears from now on, not what was published before this page
    // listened: a page that is behind is caught up by a stream of its own. A stream of its own
    // replays what came after the page's position already (it asks with lastEventId).
    if (relayed) catchUp();
  }

  /**
   * Catch up on the batches published between this page's position and the newest one that
   * neither the relay nor the page has: a tab that reloaded while another save went out, a page
   * from the browser's cache (back and forward), a frame that started late. A stream of its own,
   * asking for the batches after the page's position, closed once they are in. A position the
   * proxy no longer holds (another run, too long ago) is answered with a reload batch.
   */
  function catchUp() {
    // Behind: the floor is below the newest batch (ids of one proxy run are consecutive, and the
    // floor moves on over what came in).
    if (catchingUp || reloading || floor === null || newest === null || newest <= floor) return;
    const target = newest;
    const url = new URL(changes);
    url.searchParams.set('lastEventId', String(floor));
    const source = new EventSource(url);
    const finish = () => {
      source.close();
      catchingUp = null;
    };
    catchingUp = finish;
    source.addEventListener('hello', (event) => {
      const { instance, last } = JSON.parse(event.data);
      if (instance !== state.instance || last <= floor) {
        finish();
        hello(instance, last, false);
      }
    });
    source.addEventListener('change', (event) => {
      const batch = JSON.parse(event.data);
      receive(batch, true);
      if (batch.reload || batch.id >= target) finish();
    });
    source.addEventListener('error', () => {
      log('catching up on missed changes failed');
      finish();
    });
  }

  /** Move the floor on over the batches taken in right above it. */
  function advance() {
    if (floor === null) return;
    while (seen.has(floor + 1)) seen.delete(++floor);
    for (const id of seen) if (id <= floor) seen.delete(id);
  }

  /**
   * One batch, from this page's own stream (`mine`) or relayed. Taken in once: a batch may come
   * twice (relayed, and replayed to a page catching up). A reload batch on a page's own stream is
   * never skipped: the proxy sends one, with the newest id, to a page it cannot catch up, which
   * may have taken that id in. Relayed, it is the leader's own: a page that has that id is
   * current.
   */
  function receive(batch, mine) {
    const again = (floor !== null && batch.id <= floor) || seen.has(batch.id);
    if (again && !(mine && batch.reload)) return;
    seen.add(batch.id);
    advance();
    if (seen.size > 512) {
      // A gap that never fills (a batch lost for good): the oldest go. A Set iterates in
      // insertion order.
      for (const id of seen) if (seen.size > 256) seen.delete(id);
    }
    newest = Math.max(newest ?? batch.id, batch.id);
    enqueue(() => apply(batch), `change ${batch.id}`);
  }

  /**
   * Run `work` after the batches before it, in order, but hold the next ones back for at most
   * BATCH_PATIENCE_MS: what is still running then finishes on its own.
   */
  function enqueue(work, what) {
    queue = queue.then(() => {
      const running = Promise.resolve()
        .then(work)
        .catch((err) => console.error('[hmr]', err));
      let timer;
      const patience = new Promise((resolve) => {
        timer = setTimeout(() => {
          log(`${what} is still being applied after ${BATCH_PATIENCE_MS / 1000} s; going on`);
          resolve();
        }, BATCH_PATIENCE_MS);
      });
      return Promise.race([running, patience]).finally(() => clearTimeout(timer));
    });
  }

  function reload(reason) {
    // The proxy's waiting page reloads itself too when the dev server is back (`hmrReloading`
    // is its mark as well): a second reload of a page that answered a POST sent the form twice.
    if (reloading || window.hmrReloading) return;
    if (beingLeft()) {
      hold(reason);
      return;
    }
    reloading = window.hmrReloading = true;
    const get = answersPost && !pollsForServer();
    if (get) {
      log(`reloading with GET: ${reason} (this page answers a form sent with POST, which a reload would send again)`);
    } else {
      log(`reloading: ${reason}`);
    }
    // The reload may not happen: a page that asks before it is left (unsaved changes) may be
    // kept by its user. A page that stayed must listen again, or it would hear no change more,
    // and neither would the other tabs if it leads them. The Navigation API tells: the reload's
    // `navigate` event is fired before `reload()` returns, and by then its signal is aborted if
    // the user kept the page. Nothing later is taken for a sign (a slow answer, a newer
    // navigation taking over): a page that is going must not speak for the stream again.
    // Without the API a page that stayed stays deaf until it is reloaded.
    let signal = null;
    const caught = (event) => (signal = event.signal);
    const api = navigationApi();
    try {
      // Where this page and its frames are scrolled, and that their next documents show the
      // errors they load with (see expectReload). A frame's client keeps its own: its window is
      // not ours to read.
      expectReload(true);
      for (const frame of frameClients(window)) frame.expectReload?.(true);
      api?.addEventListener('navigate', caught);
    } finally {
      // Whatever went wrong above, the page goes: one that stayed `reloading` without reloading
      // would never act on a change again, nor relay one to the tabs it leads.
      if (get) reloadWithGet();
      else location.reload();
    }
    api?.removeEventListener('navigate', caught);
    if (signal?.aborted) stayed();
  }

  /**
   * Load this page again with a GET, where it answers a form sent with POST (see answersPost):
   * `location.reload()` sent the form again with every save and every restart of the dev server
   * (a row added, a mail sent each time). In place of this history entry, as a reload is: pushed,
   * it would leave the POST's entry behind it, which going back asks to send again. Without the
   * URL's fragment, which would make it a navigation within this document, and no load at all
   * (the client keeps the scroll position itself: see keepScroll).
   */
  function reloadWithGet() {
    location.replace(location.href.split('#')[0]);
  }

  function stayed() {
    reloading = window.hmrReloading = false;
    expectReload(false);
    for (const frame of frameClients(window)) frame.expectReload?.(false);
    log('the reload was cancelled: this page stays, and the next change that needs one asks again');
  }

  // ---- A reload waits while the page is being left --------------------------------------------

  /**
   * Follow the navigations that leave this document (see beingLeft). With the Navigation API: its
   * `navigate` events to another document, but for a download (`<a download>`) and the client's
   * own reload. Whether the page intercepts one (a router's, which stays in the page) is known
   * only once every listener has run: `navigation.transition` while it runs, `navigatesuccess`
   * when it is over. What Chromium does once one has begun, as seen in it: its signal aborts when
   * it is stopped (the user's Esc, `window.stop()`) or when a newer navigation begins, and then
   * a `navigate` event for the newer one follows at once; a same-document one (a hash, a
   * `pushState`) aborts it too, but the document still goes. When the answer has no page to show
   * (a 204 or 205, a download by `Content-Disposition: attachment`), nothing at all happens: the
   * signal stays as it was, no `navigateerror`, no `pagehide`, until the next navigation. So a
   * navigation stopped is over at once, and one that ended without a page is taken for over after
   * NAVIGATION_PATIENCE_MS. Without the API, `beforeunload` says one began, and nothing says when
   * one ended without a page (or its page's user answered Stay): the same patience.
   */
  function watchDepartures() {
    const api = navigationApi();
    if (!api) {
      addEventListener('beforeunload', () => {
        if (!reloading) departure = { at: performance.now(), event: null };
      });
    } else {
      api.addEventListener('navigate', (event) => {
        lastNavigate = event;
        if (reloading || event.destination.sameDocument || event.downloadRequest !== null) return;
        const mine = { at: performance.now(), event };
        departure = mine;
        const aborted = () => {
          // A task later, when a newer navigation has had its event: none, it was stopped.
          setTimeout(() => {
            if (departure === mine && lastNavigate === event) arrived();
          });
        };
        event.signal.addEventListener('abort', aborted, { once: true });
      });
      // An intercepted navigation that finished: the page's own, which stays.
      api.addEventListener('navigatesuccess', () => {
        if (departure && departure.event === lastNavigate) arrived();
      });
    }
    // Shown again from the back-forward cache: the page it went to has been and gone.
    addEventListener('pageshow', (event) => event.persisted && arrived());
  }

  /** No navigation holds a reload back any more (see watchDepartures): a held one is made. */
  function arrived() {
    departure = null;
    resume();
  }

  /**
   * Whether this document is being left for another (see watchDepartures): a link to a page that
   * takes seconds, a form uploading a file. `location.reload()` would cancel that navigation (the
   * upload lost, the click undone), and the page it opens is current anyway: it carries its batch
   * position (Server-Timing) and catches up on what came after. Not a navigation the page
   * intercepted or cancelled (`preventDefault`), nor one under way for longer than
   * NAVIGATION_PATIENCE_MS.
   */
  function beingLeft() {
    if (departure === null) return false;
    const { at, event } = departure;
    if (performance.now() - at >= NAVIGATION_PATIENCE_MS) return false;
    if (event === null) return true;
    const intercepted = navigationApi()?.transition && lastNavigate === event;
    return !event.defaultPrevented && !intercepted;
  }

  /**
   * Hold a reload back while the page is being left (see beingLeft): made once the navigation is
   * stopped, or after NAVIGATION_PATIENCE_MS (it ended without a page). A page that goes takes
   * it along, needing none.
   */
  function hold(reason) {
    held = reason;
    log(`${reason}: the reload waits, as this tab is loading another page (a reload would cancel it)`);
    clearTimeout(heldTimer);
    const left = departure.at + NAVIGATION_PATIENCE_MS - performance.now();
    heldTimer = setTimeout(resume, Math.max(0, left));
  }

  /** Make the reload held back (see hold), unless a newer navigation holds it again. */
  function resume() {
    clearTimeout(heldTimer);
    if (held === null) return;
    const reason = held;
    held = null;
    reload(reason);
  }

  /**
   * Refresh the page through Turbo, as a reload would, where the page runs Turbo 8 and asks it to
   * refresh by morphing (`<meta name="turbo-refresh-method" content="morph">`), as it does when
   * the server broadcasts a refresh: the page's scripts keep their state (variables, Stimulus
   * controllers, Alpine components), as hotwire-spark does for HTML changes. Only for templates
   * (see isTemplate): a script or server code changed needs the page loaded anew. The visit is
   * the one `Turbo.session.refresh` makes (Turbo 8 has it), made at once: that one waits 150 ms
   * first, and does nothing when a visit is under way. The scroll position stays, as on the
   * client's reloads. Whether Turbo took it is told by its `turbo:visit`, dispatched as the visit
   * starts: none when Turbo refuses (the page's `turbo:before-visit` called it off, an address
   * Turbo does not visit); then, and in a frame, while a visit (or an earlier refresh) is under
   * way, the page reloads. Once started, the visit is Turbo's, which loads the page in full
   * itself when it cannot fetch it.
   */
  function turboRefresh(reason) {
    const turbo = window.Turbo;
    const method = document.querySelector('meta[name="turbo-refresh-method"]');
    if (window.top !== window || refreshing || method?.getAttribute('content') !== 'morph') {
      return false;
    }
    if (typeof turbo?.session?.refresh !== 'function' || typeof turbo.visit !== 'function') {
      return false;
    }
    // A visit to another page under way: the refresh would call it off.
    if (turbo.navigator?.currentVisit) return false;
    let started = false;
    const visit = () => (started = true);
    addEventListener('turbo:visit', visit, { once: true });
    try {
      const refresh = { method: 'morph', scroll: 'preserve' };
      turbo.visit(location.href, { action: 'replace', shouldCacheSnapshot: false, refresh });
    } catch (err) {
      console.error('[hmr]', err);
    } finally {
      removeEventListener('turbo:visit', visit);
    }
    if (!started) return false;
    refreshing = true;
    addEventListener('turbo:load', () => (refreshing = false), { once: true });
    log(`refreshing through Turbo: ${reason}`);
    return true;
  }

  // ---- The scroll position across a reload ----------------------------------------------------

  /**
   * Ready this document's next load in the tab for the reload the client is making (`going`), or
   * take that back (a reload its user called off): where it is scrolled (see keepScroll), and a
   * mark that has the next load show its errors on the overlay (see watchLoad).
   */
  function expectReload(going) {
    keepScroll(going);
    if (going) remember(documentKey('watch'), Date.now());
    else recall(documentKey('watch'));
  }

  /**
   * Keep where this document is scrolled for its next load in the tab (`keep`), or forget it (a
   * reload its user called off). Not for a page that restores its own (`history.scrollRestoration
   * = 'manual'`), nor for one at the top left.
   */
  function keepScroll(keep) {
    const name = documentKey('scroll');
    if (!keep) {
      recall(name);
      return;
    }
    const { scrollLeft: x, scrollTop: y } = scroller();
    if (history.scrollRestoration === 'manual' || (x === 0 && y === 0)) return;
    remember(name, JSON.stringify({ x, y, at: Date.now() }));
  }

  /**
   * After a reload the client made, scroll back to where the page was (see keepScroll). The
   * browser restores the position by itself, but only while the page loads: a page that builds
   * its content after `load` (an app whose `update` renders from modules it imports) is too short
   * then, and the browser gives up, at the top. So it is checked once a frame, and the page is
   * scrolled there as soon as it is tall (or wide) enough; at once, if the browser has done so
   * already (the two agree). It stops there, or as soon as the user scrolls, clicks, touches or
   * types (their own position wins), or when SCROLL_PATIENCE_MS of frames have passed (the page
   * may never be that tall again). A hidden tab renders no frames, so its wait starts when it is
   * shown. The page leaving before it got there (the proxy's waiting page, which reloads by itself
   * when the dev server answers) hands the position on to the next one.
   */
  function restoreScroll() {
    let saved;
    try {
      saved = JSON.parse(recall(documentKey('scroll')));
    } catch {
      return;
    }
    if (!saved || !(Date.now() - saved.at < RELOAD_KEEP_MS)) return;
    if (history.scrollRestoration === 'manual') return;
    const stop = new AbortController();
    const options = { capture: true, passive: true, signal: stop.signal };
    for (const type of ['wheel', 'touchstart', 'keydown', 'pointerdown']) {
      addEventListener(type, () => stop.abort(), options);
    }
    addEventListener('pagehide', () => remember(documentKey('scroll'), JSON.stringify(saved)), options);
    let waited = 0;
    let last = null;
    const check = (now) => {
      if (stop.signal.aborted) return;
      // Frames apart, so that a tab hidden for a minute does not use up the wait at once.
      waited += last === null ? 0 : Math.min(now - last, SCROLL_FRAME_MAX_MS);
      last = now;
      const page = scroller();
      const there = Math.abs(page.scrollLeft - saved.x) < 1 && Math.abs(page.scrollTop - saved.y) < 1;
      const room =
        page.scrollHeight - page.clientHeight >= saved.y - 1 &&
        page.scrollWidth - page.clientWidth >= saved.x - 1;
      if (there || room) {
        // At once, not with the page's `scroll-behavior: smooth`: this is where it was.
        if (!there) page.scrollTo({ left: saved.x, top: saved.y, behavior: 'instant' });
        stop.abort();
      } else if (waited >= SCROLL_PATIENCE_MS) {
        stop.abort();
      } else {
        requestAnimationFrame(check);
      }
    };
    requestAnimationFrame(check);
  }

  /**
   * A position to go by, unless this page is the reload that a reload batch asked for and still
   * says the same: then something kept the old headers (a cache), and going by them would
   * reload again and again. It then goes by the stream's, as a page that says nothing does.
   */
  function trustedPosition(position) {
    const before = recall(documentKey('reloaded'));
    return position !== null && before === String(position) ? null : position;
  }

  // ---- One batch ------------------------------------------------------------------------------

  async function apply(batch) {
    if (reloading) return;
    if (batch.reload) {
      if (batch.paths.length) {
        // A batch of thousands of files names the first few hundred and counts the rest
        // (`unlisted`): a reload, whatever they are. Only the named can be fetched again.
        await refreshFetched(batch.urls);
        reload(`${listed(batch.paths, 5, batch.unlisted || 0)} changed`);
        return;
      }
      if (batch.restart && restart !== null && batch.restart <= restart) {
        // The reload for a dev server's comeback, and this page is that server's already: the
        // proxy answered it after it saw the server back. Its position is older (read when its
        // request came in), so the reload came replayed, and loaded the page a second time
        // (after the waiting page reloaded itself the moment the server took connections).
        log(`${batch.reason}: this page was served since, no reload`);
        return;
      }
      remember(documentKey('reloaded'), since);
      // The proxy says why (the dev server restarted, a build tool asked, this page missed
      // changes); an older one did not.
      reload(batch.reason || 'the proxy asked for it');
      return;
    }
    let found;
    try {
      // `served`: false, true, or 'spa' (the folder's top index.html answers any page address).
      const served = batch.served === true && (batch.spa === true ? 'spa' : true);
      found = surveyTab(batch.urls, served);
    } catch (err) {
      // Something in the page the survey could not read must not leave the change unseen (and
      // every later one with it): the reload shows it.
      reload(`${listed(batch.paths)} changed, and this page could not be patched (${err})`);
      return;
    }
    const { changed, rest, unused, links, imports, modules, images, roots, savedAs } = found;
    if (rest.length) {
      const why = `${listed(rest.map((k) => changed.get(k)))} changed`;
      // Refreshed through Turbo, the page goes on: the rest of the batch is swapped as usual.
      if (!rest.every(isTemplate) || !turboRefresh(why)) {
        await refreshFetched(rest.map((k) => changed.get(k)));
        reload(why);
        return;
      }
    }
    // An image nothing here names and the page never loaded is another page's, an inert file
    // nothing here embeds is no page's at all, and a file the proxy serves as it is that this page
    // never loaded is not in it: a reload would show nothing new, and lose what the user had typed
    // or scrolled to (the flash message of an app that stored an upload). A stylesheet is said
    // below.
    const unusedFiles = [...unused].filter((k) => !isStylesheet(k));
    if (unusedFiles.length) {
      const names = unusedFiles.map((k) => path(changed.get(k)));
      log(`not in this page, which never loaded it: ${names.join(', ')}`);
    }
    // A stylesheet that matches none of this page's, and that it never loaded: another page's
    // (it reloaded this one, and took what the user had typed with it), or one served under
    // another URL than the batch names (a folder mapped under the wrong prefix, a build that
    // writes elsewhere). As livereload's `reloadMissingCSS` does, every same-origin sheet of the
    // page is loaded again in place: what changed is among them, if the page uses it at all.
    const missing = [...unused].filter(isStylesheet).map((k) => path(changed.get(k)));
    const none = { links: [], imports: [], nested: [] };
    const again = missing.length ? ownSheets(roots, links, imports) : none;
    if (missing.length) {
      const names = new Set([
        ...again.links.map((link) => path(link.href)),
        ...again.imports.map((i) => i.url.pathname),
      ]);
      const what = names.size
        ? `loading its own again in place: ${[...names].join(', ')}`
        : 'it has none of its own to load again';
      log(`${missing.join(', ')} matched no stylesheet in this page; ${what}`);
    }

    // Whatever is swapped in under a cache-busting URL is also fetched again under its own URL,
    // so the next full page load cannot take a stale copy from the HTTP cache (an upstream that
    // sends `max-age` is cached; the proxy adds `no-cache` only where it sends no caching
    // headers at all).
    /** URL → the Accept header the browser sends for that kind of resource. */
    const refresh = new Map();
    // A copy left over from a clone of the page (Turbo's snapshot of it, brought back) is no
    // swap's: it applies nothing, and goes.
    for (const root of roots) {
      for (const stray of root.querySelectorAll(`link[${COPY_MARK}]`)) {
        if (!copies.has(stray)) stray.remove();
      }
    }
    // A sheet @imported below the top of a <link>'s sheet cannot be replaced in place (see
    // replaceImport): that link is swapped whole, as a changed one is; so is a link whose swap is
    // still loading (what it loads may be from before this change). A link's copy takes the
    // sheets it imports from the browser's cache, so the changed ones are fetched into it first.
    const inWhole = (i) => belowLink(i) || swapOf.has(ownerOf(i));
    const every = [...imports, ...again.imports];
    const whole = [...new Set([...links, ...again.links, ...every.filter(inWhole).map(ownerOf)])];
    const carried = every.filter((i) => whole.includes(ownerOf(i)));
    // Sheets imported below a <style>'s own @import come with the new copy of the one above them
    // (see ownSheets), from the cache too.
    await Promise.all([...carried, ...again.nested].map(({ url }) => refetch(url, ACCEPT_CSS)));
    /**
     * What to say of a changed imported sheet once its new styles apply (its rule may have left
     * its sheet by then); the ones loaded again for a missing sheet were said above.
     */
    const sayImport = ({ rule, url }) => {
      const line = `css swapped: ${url.pathname} (imported by ${importer(rule)})`;
      const changedOne = imports.some((i) => i.rule === rule);
      return () => changedOne && log(line);
    };
    const swaps = [];
    for (const [link, ...duplicates] of sameSheets(whole)) {
      const name = path(link.href);
      const own = [link, ...duplicates].some((l) => links.includes(l));
      // The sheets it imports that changed come with it (see above).
      const inIt = carried.filter((i) => [link, ...duplicates].includes(ownerOf(i))).map(sayImport);
      const said = () => {
        if (own) log(`css swapped: ${name}`);
        for (const say of inIt) say();
      };
      swaps.push(swapStylesheet(link, batch.id, duplicates, said));
      const saved = [link, ...duplicates].map((l) => savedAs.get(l)).find(Boolean);
      if (saved) {
        const prefix = path(link.href).slice(0, -saved.length);
        log(
          `${saved} changed and was taken for ${path(link.href)}: map its folder to ${prefix} ` +
            `(--watch DIR=${prefix}) for an exact match`,
        );
      }
    }
    // A swapped sheet's own URL is fetched again only once the copies have loaded: fetched beside
    // them, it competed with them for the connection and the server and put off the new styles.
    // Not awaited: the next batch does not wait for a sheet.
    const sheets = [...new Set([...links, ...again.links].map((link) => unbust(link.href)))];
    Promise.all(swaps).then(() => sheets.forEach((url) => refetch(url, ACCEPT_CSS)));
    for (const { rule, url } of every) {
      const owner = ownerOf({ rule });
      if (whole.includes(owner)) continue; // loaded again with its link
      if (!replaceImport(rule, url, batch.id, sayImport({ rule, url }))) return;
      refresh.set(url.href, ACCEPT_CSS);
    }
    for (const image of images) {
      image.set(batch.id);
      refresh.set(image.url, ACCEPT_IMAGE);
    }
    for (const url of new Set(images.map((i) => path(i.url)))) log(`image updated: ${url}`);
    for (const { box, entries } of modules) {
      // A copy that fails to load too (deleted, broken): the next page load must fail on it as
      // well, not run the old one from the cache.
      for (const e of entries) refresh.set(e.url.href, '*/*');
      await load(box, entries, batch.id);
    }
    refresh.forEach((accept, url) => refetch(url, accept));
  }

  /**
   * What this document would patch for the changed `urls`: the stylesheet links, @import rules,
   * container modules and images naming them, in it and in its open shadow roots; `claimed`
   * holds their keys, `changed` maps every key to its URL. `served`: the proxy serves every one
   * of them as it is, from its folder (the batch says so: see unused); `'spa'` when it answers
   * every page address that is no file with its top index.html (`--spa`).
   */
  function survey(urls, served = false) {
    const changed = new Map(urls.map((u) => [key(new URL(u, location.href)), u]));
    const claimed = new Set();
    /** Is `url` one of the changed ones? Marks it as handled. */
    const hit = (url) => {
      const k = key(url);
      if (!changed.has(k)) return false;
      claimed.add(k);
      return true;
    };
    // A design system's element links the page's sheet in its shadow root too, or a sheet of
    // its own: each root's links and sheets are live uses, looked through like the document's.
    const roots = documentRoots();
    const every = stylesheetLinks(roots);
    /** Link → the path the batch named it by, when that is only the end of its own. */
    const savedAs = new Map();
    const links = every.filter((link) => {
      const url = parse(link.href);
      return url !== null && hit(url);
    });
    // A stylesheet saved under a path that is the end of a linked sheet's: a folder watched
    // without the URL prefix it is served under (`--watch static`, served at /static/) names
    // `/css/app.css` for `/static/css/app.css`. Swapped, not reloaded, as browser-sync does by
    // file name; the console says how to name it exactly.
    for (const [k, u] of changed) {
      if (claimed.has(k) || !/\.css$/i.test(k)) continue;
      const saved = new URL(u, location.href);
      const longer = every.filter((link) => {
        const url = parse(link.href);
        if (url === null || url.origin !== saved.origin || links.includes(link)) return false;
        return url.pathname.length > saved.pathname.length && key(url).endsWith(k.slice(saved.origin.length));
      });
      if (!longer.length) continue;
      claimed.add(k);
      for (const link of longer) {
        links.push(link);
        savedAs.set(link, saved.pathname);
      }
    }
    const sheets = roots.flatMap(liveSheets);
    const imports = sheets.flatMap((sheet) => importRules(sheet, hit));
    const modules = boxes
      .map((box) => ({ box, entries: box.entries.filter((e) => hit(e.url)) }))
      .filter((m) => m.entries.length);
    // Reading every rule is the costly part: skipped when only sheets and modules changed.
    const images =
      claimed.size < changed.size ? [...imageAttributes(hit, roots), ...cssUrls(hit, roots)] : [];
    // An image or a stylesheet nothing here names, which this document never fetched either: it
    // is another page's (two tabs, each with its own sheet), not one this page uses in a way the
    // client cannot patch (a sprite sheet drawn on a canvas, a CSS module in adoptedStyleSheets,
    // an SVG in an <object>), which it would have fetched. So is an inert file (a document, a
    // video, an archive, a font: see isInert) that nothing here embeds: an upload the app stored
    // (a link to it changes nothing in the page). And, where the proxy serves the files as they
    // are (no upstream: no server makes a page from them), any file this document never fetched,
    // but a script (a worker or a service worker may import it where the page cannot see) and the
    // document's own file (see ownFiles): a note, a data file, another page.
    // What the page embeds but may not have fetched yet is used all the same (see embeds).
    const unclaimed = [...changed.keys()].filter((k) => !claimed.has(k) && !mayHaveFetched(k));
    const embedded = served || unclaimed.some(isInert) ? embeds(roots) : new Set();
    const own = served ? ownFiles(served === 'spa') : new Set();
    const unused = new Set(
      unclaimed.filter(
        (k) =>
          !embedded.has(k) &&
          (isImage(k) ||
            isStylesheet(k) ||
            isInert(k) ||
            (served && !isScript(k) && !own.has(k))),
      ),
    );
    return { changed, claimed, unused, links, imports, modules, images, roots, savedAs };
  }

  /**
   * The keys of what the page (the document and the shadow roots in `roots`) embeds but may not
   * have fetched yet: a video or an audio file it plays (`preload="none"` fetches nothing until
   * then), their sources and tracks, an embedded document (`<embed>`, `<object>`, `<iframe>`: a
   * PDF), and a font a same-origin sheet's `@font-face` names (fetched when text first needs it).
   * A change to one of those reloads the page, as before. A link (`<a href>`) embeds nothing.
   */
  function embeds(roots) {
    const found = new Set();
    const add = (text, base) => {
      const url = text ? parse(text, base) : null;
      if (url !== null) found.add(key(url));
    };
    const selector =
      'video[src], audio[src], source[src], track[src], embed[src], iframe[src], object[data]';
    for (const el of roots.flatMap((root) => [...root.querySelectorAll(selector)])) {
      add(el.getAttribute(el.localName === 'object' ? 'data' : 'src'), document.baseURI);
    }
    const walk = (group, base) => {
      for (const rule of rules(group)) {
        if (rule instanceof CSSImportRule) walk(rule.styleSheet, rule.styleSheet?.href || base);
        else if (rule instanceof CSSFontFaceRule) {
          const src = rule.style.getPropertyValue('src');
          for (const m of src.matchAll(URL_IN_CSS)) add(m[2], base);
        }
        if (rule.cssRules) walk(rule, base); // @media, @supports, @layer
      }
    };
    for (const root of roots) {
      for (const sheet of liveSheets(root)) walk(sheet, sheet.href || document.baseURI);
    }
    return found;
  }

  /**
   * The keys of the files the proxy may have answered this document's address with, when it
   * serves a folder: the address's own file, a folder's `index.html` (`/docs/` is
   * `/docs/index.html`), a clean URL's page (`/contact` is `/contact.html`), with `spa` the top
   * `index.html` (`--spa` answers any route with it; without, a save of the home page reloaded
   * a tab on every page of a site), and, on a 404, the site's `404.html`.
   * A tab on a file not written yet (its 404) reloads once it is.
   */
  function ownFiles(spa) {
    const here = new URL(location.href);
    const own = new Set([key(here)]);
    if (spa) own.add(`${location.origin}/index.html`);
    const { pathname } = here;
    const clean = !pathname.split('/').pop().includes('.');
    if (pathname.endsWith('/')) own.add(key(new URL(`${pathname}index.html`, here)));
    else if (clean) own.add(key(new URL(`${pathname}.html`, here)));
    const status = performance.getEntriesByType?.('navigation')[0]?.responseStatus;
    if (status === undefined || status === 404) own.add(`${location.origin}/404.html`);
    return own;
  }

  /**
   * survey(), and `rest`: the keys of the changed `urls` that no document in the tab would
   * patch, and some document in it may use. A URL only a frame uses is that frame's to swap: its
   * client hears the same batch. So the top reloads (taking its frames along) only for what no
   * document in the tab can patch, and a frame that can see the top's client leaves that call to
   * it. (Frames hear batches only from a leader's relay: a solo top has nobody to leave them to,
   * and reloads for what they use.) `unused` keeps the keys that no document in the tab uses (see
   * survey): they reload nothing. A source map is never in `rest` (see isSourceMap).
   */
  function surveyTab(urls, served) {
    const found = survey(urls, served);
    const open = [...found.changed.keys()].filter((k) => !found.claimed.has(k) && !isSourceMap(k));
    let rest = open.filter((k) => !found.unused.has(k));
    let unused = found.unused;
    if (window.top !== window) {
      if (topClient()) rest = [];
    } else if (open.length) {
      const none = { patches: [], needs: [] };
      const answers = frameClients(window).map((c) => c.claims?.(urls, served) ?? none);
      const patched = new Set(answers.flatMap((a) => a.patches));
      const needed = new Set(answers.flatMap((a) => a.needs));
      if (state.role === 'solo') {
        for (const k of patched) needed.add(k); // they hear nothing: a reload shows it to them
        patched.clear();
      }
      rest = open.filter((k) => !patched.has(k) && (!unused.has(k) || needed.has(k)));
      unused = new Set([...unused].filter((k) => !patched.has(k) && !needed.has(k)));
    }
    return { ...found, rest, unused };
  }

  /**
   * What this document would do about the changed `urls`, for the top, which asks its frames:
   * the keys it would patch (`patches`), and those it may use and cannot patch (`needs`: a
   * reload would show them).
   */
  function claims(urls, served = false) {
    if (reloading) return { patches: [], needs: [] };
    const { changed, claimed, unused } = survey(urls, served);
    const needs = [...changed.keys()].filter(
      (k) => !claimed.has(k) && !unused.has(k) && !isSourceMap(k),
    );
    return { patches: [...claimed], needs };
  }

  /**
   * The same-origin stylesheets of the page (the document and the shadow roots in `roots`) that
   * a stylesheet matching none of them loads again (see apply), beside the changed `links` and
   * `imports` the survey found: `links`; `imports`, the @import rules of a link's sheet, at any
   * depth (they come with the link, fetched first, as a changed link's do), and those at the top
   * of a <style>'s sheet (replaced in place); `nested`, the ones below those, which come with the
   * new copy of the sheet above them: only fetched first (a new @import in both would be two
   * copies, the lower one inserted into a sheet on its way out).
   */
  function ownSheets(roots, links, imports) {
    const own = (url) => url.origin === location.origin;
    const found = { links: [], imports: [], nested: [] };
    found.links = stylesheetLinks(roots).filter((link) => {
      const url = parse(link.href);
      return url !== null && own(url) && !links.includes(link);
    });
    for (const entry of roots.flatMap(liveSheets).flatMap((sheet) => importRules(sheet, own))) {
      const inStyle = !(importOwner(entry) instanceof HTMLLinkElement);
      if (inStyle && entry.rule.parentStyleSheet.parentStyleSheet !== null) found.nested.push(entry);
      else if (!imports.some((i) => i.rule === entry.rule)) found.imports.push(entry);
    }
    return found;
  }

  /**
   * Whether this document may have fetched the resource `k` names (see fetchRecord): true when
   * the record may lack it.
   */
  function mayHaveFetched(k) {
    // The favicon a page links none for is fetched by the browser, not the page: no entry.
    if (k === `${location.origin}/favicon.ico` && !document.querySelector('link[rel~="icon" i]')) {
      return true;
    }
    return fetched.mayHave(k);
  }

  /**
   * Fetch `url` (without its cache-busting parameter) past the HTTP cache, to update it, asking
   * as the browser does for that kind of resource: a server that answers by `Accept` would
   * otherwise put something else in the cache under its URL (Vite answers a request for a
   * stylesheet that accepts anything with a JavaScript module).
   */
  function refetch(url, accept) {
    return fetch(unbust(url), { cache: 'reload', headers: { Accept: accept } }).catch(() => {});
  }

  /**
   * Before a reload for changed files: fetch again, past the HTTP cache, the ones this page
   * fetched (a helper a swapped module imports, a dynamically imported module, a worker's
   * script, a font), as a swap does for what it swaps. From a dev server that sends `max-age`
   * they were cached, and the reloaded page took the old copies: a reload revalidates the page,
   * not what it loads. Only what the page fetched: templates and server code have no URL the
   * server answers. Waits for them at most REFRESH_PATIENCE_MS.
   */
  async function refreshFetched(urls) {
    const loaded = urls
      .map((u) => parse(u))
      .filter((url) => url !== null && url.origin === location.origin && fetched.has(key(url)));
    if (!loaded.length) return;
    const accept = (url) =>
      isStylesheet(key(url)) ? ACCEPT_CSS : isImage(key(url)) ? ACCEPT_IMAGE : '*/*';
    let timer;
    const patience = new Promise((resolve) => (timer = setTimeout(resolve, REFRESH_PATIENCE_MS)));
    await Promise.race([Promise.all(loaded.map((url) => refetch(url.href, accept(url)))), patience]);
    clearTimeout(timer);
  }

  // ---- Stylesheets ----------------------------------------------------------------------------

  /**
   * The stylesheet links of the document and of the shadow roots in `roots`, but for a swap's
   * copies and the links on their way out (see phaseOut).
   */
  function stylesheetLinks(roots) {
    return roots
      .flatMap((root) => [...root.querySelectorAll(SHEET_LINK)])
      .filter((link) => !isCopy(link) && !outgoing.has(link));
  }

  /**
   * The changed links grouped by the sheet they load (address, media, title) and the root they
   * are in: the last of each group first, then the ones before it. Only the last is swapped; the
   * others go with its old copy. Two links to one sheet in one root are one too many: another
   * live-reloader's copy (Vite's, when both watch the sources), a partial included twice. Swapped
   * each, they stayed two, and the other tool added one more with every save. The same sheet in
   * the document and in a shadow root (or in two shadow roots) is two live uses: each is swapped,
   * as a link in one root styles nothing in another.
   */
  function sameSheets(links) {
    const groups = new Map();
    for (const link of links) {
      const id = sheetUse(link);
      const inRoot = groups.get(link.getRootNode()) ?? new Map();
      groups.set(link.getRootNode(), inRoot);
      const group = inRoot.get(id) ?? [];
      group.push(link);
      inRoot.set(id, group);
    }
    return [...groups.values()].flatMap((inRoot) => [...inRoot.values()]).map((g) => g.reverse());
  }

  /**
   * What tells one use of a sheet from another in a root (see sameSheets): its address without
   * stamps, and the media (the one the page gave it, not the one a swap loads it under: see
   * swapStylesheet), title and rel it is linked with.
   */
  function sheetUse(link) {
    const swap = swapOf.get(link);
    const media = swap?.hidden ? (swap.media ?? '') : link.media;
    return [sheetAddress(link.href), media, link.title, link.rel.toLowerCase()].join('\n');
  }

  /** The @import rules below `sheet`, at any depth, whose URL `test` accepts. */
  function importRules(sheet, test) {
    const found = [];
    for (const rule of rules(sheet)) {
      if (!(rule instanceof CSSImportRule)) continue;
      const url = parse(rule.href, sheet.href || document.baseURI);
      if (url !== null && test(url)) found.push({ rule, url });
      found.push(...importRules(rule.styleSheet, test));
    }
    return found;
  }

  /**
   * The swap in progress of each link (see swapStylesheet): `stage` 1 while its copy loads, 2
   * while the link loads the new address; `before`, the swap of the same link still in stage 2
   * when it started, which it waits for; `hidden` while the link loads under a media query that
   * matches nothing, and `media`, the page's own, to give back; `end()` stops it, gives back what
   * it changed but the address, and takes its copy out.
   */
  const swapOf = new WeakMap();

  /** The address a swap last gave each link: one it has now that is neither is the page's. */
  const given = new WeakMap();

  /**
   * This page's copies still in use → the link each is a copy of (a copy found elsewhere is a
   * clone of one: see apply).
   */
  const copies = new WeakMap();

  /** The address of each sheet swapped (see sheetAddress) → the batch id of its newest swap. */
  const freshest = new Map();

  /**
   * A link Turbo tracks → what carries its new styles (see carry): `copy`; `off`, whether the
   * page had switched its sheet off itself; `href`, its address as the server wrote it; `stop`,
   * which ends the link's listeners.
   */
  const carriers = new Map();

  /** Each root a sheet was swapped in → the observer that guards it (see guard). */
  const guards = new WeakMap();

  /** The links on their way out (see phaseOut). */
  const outgoing = new WeakSet();

  /**
   * The sheets of a document or shadow root, as the page has them: with the old sheet of a link
   * loading a swapped one, which the root's list leaves out meanwhile (its @imports and url()s
   * are the page's still), and the sheet of its copy, whose @imports stand for the link's.
   */
  function liveSheets(root) {
    const listed = [...root.styleSheets];
    return listed.flatMap((sheet) => {
      if (!isCopy(sheet.ownerNode)) return [sheet];
      // The copy's too, complete (the same address, the same @imports): the link's new sheet
      // may be in the list before the sheets it imports have loaded, and a change to one of
      // those then found no user and reloaded the page.
      const own = copies.get(sheet.ownerNode)?.sheet;
      return own && !listed.includes(own) ? [sheet, own] : [sheet];
    });
  }

  /** The element an @import rule's sheet belongs to: for a swap's copy, the page's link. */
  function ownerOf(found) {
    const owner = importOwner(found);
    return copies.get(owner) ?? owner;
  }

  /**
   * A changed stylesheet's link is pointed at a cache-busted address, and stays the element it
   * was: a framework that rendered it removes it, switches it or changes its attributes later as
   * if nothing had happened (it used to be replaced by a copy, and React's removal of the link it
   * knew threw). A link that fails to load has no styles at all, and one that is loading may have
   * none either (Chromium leaves a loading link's old sheet out whenever it recounts the sheets of
   * its document or shadow root: another sheet loading or changing). So a copy of it first loads
   * the new address under a media query that matches nothing: it puts the sheet in the cache and
   * tells whether it loads, and a copy that fails leaves the link as it was. Once it has loaded,
   * it takes the link's media, and shows the new styles while the link loads them (from the
   * cache); it leaves once the link has loaded, or as soon as the page takes the link out, points
   * it elsewhere or switches it off. (Changed sheets it @imports are in the browser's cache by
   * now: see apply.) Settles when the link has loaded the new sheet, the copy failed, or a newer
   * swap of the link took over. A link Turbo tracks keeps its address, and the copy stays to
   * carry the new styles (see carry). `applied` is called once the new styles apply (the copy has
   * loaded; at once for a link switched off, which shows nothing), not when a copy fails or the
   * page took the link out meanwhile: a slow sheet was said to be swapped seconds before it was.
   */
  function swapStylesheet(link, id, duplicates = [], applied = () => {}) {
    const prev = swapOf.get(link);
    // A swap whose copy still loads is overtaken, and its copy goes. One whose link loads already
    // finishes first (it gives back what it changed on the link): this one waits for it.
    const before = prev ? (prev.stage === 2 ? prev.done : prev.before) : null;
    if (prev?.stage === 1) prev.end();
    if (!link.isConnected) return Promise.resolve(); // taken out by the page meanwhile
    const url = bust(link.href, id);
    noteSwap(link, id);
    if (link.hasAttribute('disabled') && isTracked(link)) {
      // A copy switched off by the same attribute would never load: it carries the new address
      // at once, and loads it when both are switched on.
      const copy = copyOf(link, url);
      link.after(copy);
      carry(link, copy);
      applied();
      return Promise.resolve();
    }
    if (link.hasAttribute('disabled')) {
      // Switched off by its attribute (a theme switcher's `link.disabled = true`): it has no
      // sheet and loads nothing, so a copy would never load and never settle. It shows nothing
      // either: it takes the new address itself, loaded when it is switched on.
      point(link, url);
      applied();
      return Promise.resolve();
    }
    const href = link.getAttribute('href');
    const copy = copyOf(link, url);
    const swap = {
      stage: 1,
      before,
      hidden: false,
      media: null,
      kept: false, // the copy stays: it carries a tracked link's new styles (see carry)
      end: null,
      done: null,
    };
    const undo = [];
    let over = false;
    swap.done = new Promise((resolve) => {
      swap.end = () => {
        if (over) return;
        over = true;
        for (const step of undo.reverse()) step();
        if (!swap.kept) {
          copy.remove();
          copies.delete(copy);
        }
        if (swapOf.get(link) === swap) swapOf.delete(link);
        resolve();
      };
    });
    swapOf.set(link, swap);
    const copyLoaded = loaded(copy, undo);
    link.after(copy);
    (async () => {
      if (!(await copyLoaded)) {
        // The old styles stay, and the link can be swapped again: a copy fails on a response cut
        // short (a file read while it was being written in place), and the next save loads the
        // sheet as it is. (A deleted sheet keeps its last styles until the page reloads.)
        log(`could not load ${path(url)}; the old styles stay`);
        swap.end();
        return;
      }
      await before;
      if (over) return;
      const now = link.getAttribute('href');
      if (!link.isConnected || (now !== href && now !== given.get(link))) {
        swap.end(); // the page took the link out, or pointed it elsewhere: nothing to swap
        return;
      }
      const dropDuplicates = () => {
        for (const duplicate of duplicates) {
          swapOf.get(duplicate)?.end();
          duplicate.remove();
        }
      };
      if (isTracked(link)) {
        carry(link, copy);
        applied();
        swap.kept = true;
        dropDuplicates();
        swap.end();
        return;
      }
      if (link.hasAttribute('disabled')) {
        point(link, url); // switched off by its attribute meanwhile (see above)
        applied();
        swap.end();
        return;
      }
      swap.stage = 2;
      const old = link.sheet;
      const integrity = link.getAttribute('integrity');
      if (old?.disabled) {
        // Switched off through the CSSOM (a theme switcher's `sheet.disabled = true`): the copy
        // shows nothing, and neither may the link's new sheet, which comes in switched on a task
        // before its `load`. It loads under a media query that matches nothing; the load handler
        // switches it off and gives back the media the page wrote.
        swap.hidden = true;
        swap.media = link.getAttribute('media');
        link.media = 'not all';
        undo.push(() => {
          if (link.getAttribute('media') !== 'not all') return; // the page set one since
          setMedia(link, swap.media);
        });
      } else {
        setMedia(copy, link.getAttribute('media'));
      }
      applied();
      const linkLoaded = loaded(link, undo);
      point(link, url);
      // The page's changes to the link while it loads: the copy follows its media, and goes the
      // moment the link goes (before the next frame), or is pointed elsewhere, or switched off;
      // that link fires no `load` for this address. The timer catches what no observer sees (a
      // shadow host taken out).
      const check = () => {
        const mine = link.isConnected && link.getAttribute('href') === url && !link.disabled;
        if (!mine) swap.end();
        else if (!swap.hidden) setMedia(copy, link.getAttribute('media'));
      };
      const observer = new MutationObserver(check);
      observer.observe(link, { attributes: true });
      observer.observe(link.getRootNode(), { childList: true, subtree: true });
      const watch = setInterval(check, LINK_WATCH_MS);
      undo.push(() => {
        observer.disconnect();
        clearInterval(watch);
      });
      const ok = await linkLoaded;
      if (over) return;
      if (link.getAttribute('href') !== url) {
        swap.end(); // the `load` of an address the page gave it
        return;
      }
      if (!ok) {
        // It loaded for the copy a moment ago. The link goes back to what it had, from the
        // cache, and the next save tries again.
        log(`could not load ${path(url)}; the old styles stay`);
        point(link, href);
        if (integrity !== null) link.setAttribute('integrity', integrity);
        swap.end();
        return;
      }
      // The state of the old sheet now: the page may have switched it while the link loaded.
      if (old?.disabled && link.sheet) link.sheet.disabled = true;
      dropDuplicates();
      swap.end();
    })();
    return swap.done;
  }

  /**
   * A copy of `link` loading `url` under a media query that matches nothing (see
   * swapStylesheet): what decides how the sheet is fetched and where it applies (CORS mode,
   * referrer policy, the CSP nonce, rel and title), without what names the link to the page's
   * scripts (id, inline event handlers, Turbo's `data-turbo-track`, Turbolinks' own), holds up
   * rendering (`blocking`) or pins the old content (integrity).
   */
  function copyOf(link, url) {
    const copy = link.cloneNode();
    for (const { name } of [...copy.attributes]) {
      if (/^(id|integrity|blocking|on.*|data-turbo-track|data-turbolinks-track)$/i.test(name)) {
        copy.removeAttribute(name);
      }
    }
    copy.setAttribute(COPY_MARK, '');
    copy.media = 'not all';
    copy.href = url;
    copies.set(copy, link);
    return copy;
  }

  /** Set or remove `link`'s media attribute (null: none), if it is not that already. */
  function setMedia(link, media) {
    if (link.getAttribute('media') === media) return;
    if (media === null) link.removeAttribute('media');
    else link.setAttribute('media', media);
  }

  /** Give `link` the address `url` (integrity names the old content: the new would be blocked). */
  function point(link, url) {
    link.removeAttribute('integrity');
    link.setAttribute('href', url);
    given.set(link, url);
  }

  /**
   * Whether `link` loads (true) or fails (false), from its next `load` or `error`; the listeners
   * go with the steps in `undo`.
   */
  function loaded(link, undo) {
    const stop = new AbortController();
    undo.push(() => stop.abort());
    return new Promise((resolve) => {
      const options = { once: true, signal: stop.signal };
      link.addEventListener('load', () => resolve(true), options);
      link.addEventListener('error', () => resolve(false), options);
    });
  }

  // ---- Stylesheets after a swap ---------------------------------------------------------------

  /** A swap of `link` to batch `id` began: its root is guarded from now on (see guard). */
  function noteSwap(link, id) {
    const sheet = sheetAddress(link.href);
    freshest.set(sheet, Math.max(freshest.get(sheet) ?? id, id));
    guard(link.getRootNode());
  }

  /**
   * Have `copy` (loaded, or switched off by the `disabled` attribute: it loads when switched on)
   * carry the new styles of `link`, a link Turbo tracks, which keeps its attributes as the server
   * wrote them: Turbo reloads the page on a visit whose tracked head elements differ from the
   * page's, by their HTML, and a swapped address made every visit after a CSS save a full reload,
   * which took the state of the page along. The link's sheet is switched off through the CSSOM,
   * which its HTML does not show, now and whenever it loads again (switched on by its `disabled`
   * attribute, put back in the page); the copy follows its media and its `disabled` attribute,
   * stays right after it (where it is in the cascade), stands in for it on the next save, and
   * leaves with it: when the page takes it out, or points it elsewhere. A page whose tracked
   * asset really changed still reloads, as its HTML says. A sheet the page had switched off
   * through the CSSOM stays off, in the copy; the page's later switches of the link's sheet do
   * not reach the copy.
   */
  function carry(link, copy) {
    const held = carriers.get(link);
    const off = held ? held.off : link.sheet?.disabled === true;
    if (!copy.isConnected) link.after(copy);
    setMedia(copy, link.getAttribute('media'));
    copy.toggleAttribute('disabled', link.hasAttribute('disabled'));
    if (off && copy.sheet) copy.sheet.disabled = true;
    if (link.sheet) link.sheet.disabled = true;
    if (held) {
      held.copy.remove();
      copies.delete(held.copy);
    }
    const stop = held?.stop ?? new AbortController();
    if (!held) {
      link.addEventListener(
        'load',
        () => {
          if (carriers.has(link) && link.sheet) link.sheet.disabled = true;
        },
        { signal: stop.signal },
      );
      guard(link.getRootNode()).observe(link, {
        attributes: true,
        attributeFilter: ['href', 'media', 'disabled'],
      });
    }
    carriers.set(link, { copy, off, href: link.getAttribute('href'), stop });
  }

  /** `link` carries its own sheet again (see carry): the page took it out, or re-pointed it. */
  function uncarry(link) {
    const held = carriers.get(link);
    carriers.delete(link);
    held.stop.abort();
    held.copy.remove();
    copies.delete(held.copy);
  }

  /**
   * Watch `root` for older copies of the sheets swapped in it coming back, and for the tracked
   * links whose new styles a copy carries (see carry) changing or leaving. Turbo puts the head of
   * a page it shows from its snapshot cache together with the current one, and adds every
   * stylesheet link the current head lacks, by its HTML: an older stamp from the snapshot (and
   * the address the server wrote, which the new page has), which with `max-age` brought back the
   * rules a later save had deleted, and without it another copy of the sheet, one more with
   * every save and visit. htmx's head support, or a framework that renders the head again, do
   * the same.
   */
  function guard(root) {
    let observer = guards.get(root);
    if (observer) return observer;
    observer = new MutationObserver((records) => {
      try {
        cameBack(root, records);
      } catch (err) {
        console.error('[hmr]', err);
      }
    });
    observer.observe(root, { childList: true, subtree: true });
    guards.set(root, observer);
    return observer;
  }

  /** What `guard` sees in `root`. */
  function cameBack(root, records) {
    const added = [];
    for (const record of records) {
      const held = record.type === 'attributes' ? carriers.get(record.target) : null;
      if (held && record.attributeName === 'href') {
        if (record.target.getAttribute('href') !== held.href) uncarry(record.target);
      } else if (held && record.attributeName === 'media') {
        setMedia(held.copy, record.target.getAttribute('media'));
      } else if (held && record.attributeName === 'disabled') {
        held.copy.toggleAttribute('disabled', record.target.hasAttribute('disabled'));
      }
      for (const node of record.addedNodes) added.push(...sheetLinksIn(node));
    }
    for (const [link, held] of carriers) {
      if (!link.isConnected || link.getRootNode() !== held.copy.getRootNode()) uncarry(link);
    }
    const stale = new Map();
    for (const link of added) {
      // Added and taken out again since, or moved to another root.
      if (!link.isConnected || link.getRootNode() !== root) continue;
      if (isCopy(link)) {
        if (!copies.has(link)) phaseOut(link); // a clone of a copy: Turbo's snapshot had it
      } else if (carriers.has(link)) {
        if (link.sheet) link.sheet.disabled = true; // moved: its sheet was made anew
      } else if (older(link)) {
        const use = sheetUse(link);
        stale.set(use, [...(stale.get(use) ?? []), link]);
      }
    }
    // As two links of a sheet are at a save (see sameSheets): one stays. The link already there
    // is where the page has the sheet in the cascade; one that came back alone takes the newest
    // copy: its address as the server wrote it may be an older copy in the browser's memory
    // cache, under `max-age`, even after the swap fetched it again.
    for (const [use, links] of stale) {
      const others = stylesheetLinks([root]).filter(
        (l) => !links.includes(l) && !outgoing.has(l) && sheetUse(l) === use,
      );
      const keep = others.length ? null : links.at(-1);
      for (const link of links) if (link !== keep) phaseOut(link, use);
      if (keep) renew(keep);
    }
  }

  /**
   * Whether `link` loads an older copy of a swapped sheet than the newest: an older stamp, or
   * none. Not one another live reloader stamped (livereload, browser-sync): that is its swap, and
   * it takes the old link out itself once its copy has loaded (the next save takes out what is
   * left, as duplicates).
   */
  function older(link) {
    const url = parse(link.href);
    if (url === null) return false;
    const sheet = sheetAddress(url.href);
    const newest = freshest.get(sheet);
    if (newest === undefined || sheet !== unbust(url.href)) return false;
    const stamp = stampOf(url);
    return stamp === null || stamp < newest;
  }

  /** Point `link`, an older copy of a swapped sheet, at the newest copy (see carry for Turbo's). */
  function renew(link) {
    const url = bust(link.href, freshest.get(sheetAddress(link.href)));
    if (!isTracked(link)) {
      point(link, url);
      return;
    }
    const copy = copyOf(link, url);
    link.after(copy);
    carry(link, copy);
  }

  /**
   * Take out `link`, a link that came back with an older copy of a sheet the page has (see
   * cameBack), once it has loaded (or failed), and show nothing of it meanwhile. Not at once:
   * Turbo waits for the `load` of each stylesheet link it adds before it shows the page (for 2 s,
   * when none comes). A link that has the sheet's `use` (see sheetUse) and finds none other left
   * by then (the page took the other out after adding it) stays, with its media, and is swapped
   * to the newest copy (its own shows until that has loaded, as on a save).
   */
  function phaseOut(link, use = null) {
    outgoing.add(link);
    const media = link.getAttribute('media');
    link.media = 'not all';
    const stop = new AbortController();
    const settle = () => {
      stop.abort();
      clearTimeout(timer);
      outgoing.delete(link);
      if (!link.isConnected) return;
      const alone =
        use !== null &&
        !stylesheetLinks([link.getRootNode()]).some(
          (l) => l !== link && !outgoing.has(l) && sheetUse(l) === use,
        );
      if (!alone) {
        link.remove();
        return;
      }
      setMedia(link, media);
      swapStylesheet(link, freshest.get(sheetAddress(link.href)));
    };
    link.addEventListener('load', settle, { once: true, signal: stop.signal });
    link.addEventListener('error', settle, { once: true, signal: stop.signal });
    const timer = setTimeout(settle, PHASE_OUT_FALLBACK_MS);
  }

  /**
   * A changed @imported sheet: a cache-busted @import goes in right after the rule, which is
   * deleted once the new sheet has loaded (the owning <link> or <style> fires `load` again; a
   * timer covers browsers that do not). Lighter than swapping the link, which loads every sheet
   * of it again. Not below the top of a <link>'s sheet (see belowLink): there Chromium switches
   * off every rule of the link. `applied` is called once the new sheet has loaded (or the timer
   * ran out), not when it failed.
   */
  function replaceImport(rule, url, id, applied = () => {}) {
    const sheet = rule.parentStyleSheet;
    const text = rule.cssText.replace(IMPORT_URL, `@import url("${bust(url, id)}")`);
    try {
      sheet.insertRule(text, [...sheet.cssRules].indexOf(rule) + 1);
    } catch (err) {
      reload(`cannot replace ${url.pathname}: ${err}`);
      return false;
    }
    let over = false;
    const done = (ok) => {
      if (over) return;
      over = true;
      const index = [...sheet.cssRules].indexOf(rule);
      if (index >= 0) sheet.deleteRule(index);
      if (ok) applied();
    };
    const node = ownerNode(sheet);
    node?.addEventListener('load', () => done(true), { once: true });
    node?.addEventListener('error', () => done(false), { once: true });
    setTimeout(() => done(true), IMPORT_FALLBACK_MS);
    return true;
  }

  // ---- Images ---------------------------------------------------------------------------------

  /**
   * The images naming a changed URL, in the document and the shadow roots in `roots`: `<img src>`,
   * `<img>`/`<source>` `srcset` candidates, `<video poster>`, the icons the page links (the tab's
   * favicon, `apple-touch-icon`), and SVG's `<use>` and `<image>` (`href`, or the older
   * `xlink:href`): an icon sprite whose symbols the page shows, a picture in an inline SVG. Each
   * of those reloaded the page.
   */
  function imageAttributes(hit, roots) {
    const found = [];
    const selector = `img[src], img[srcset], source[srcset], video[poster], use, image, ${ICON_LINKS}`;
    for (const el of roots.flatMap((root) => [...root.querySelectorAll(selector)])) {
      const src = el.localName === 'img' && parse(el.getAttribute('src'), document.baseURI);
      if (src && hit(src)) {
        found.push({ url: el.src, set: (id) => (el.src = bust(el.src, id)) });
      }
      const ref = reference(el);
      const url = ref && parse(ref.value, document.baseURI);
      if (url && !inDocument(ref.value, url) && hit(url)) {
        found.push({ url: url.href, set: (id) => ref.set(bust(url, id)) });
      }
      const srcset = el.getAttribute('srcset');
      if (!srcset) continue;
      const candidates = parseSrcset(srcset);
      for (const candidate of candidates) {
        const url = parse(candidate.url, document.baseURI);
        if (url === null || !hit(url)) continue;
        found.push({
          url: url.href,
          set: (id) => {
            candidate.url = bust(url, id);
            el.srcset = candidates.map((c) => `${c.url} ${c.descriptors}`.trim()).join(', ');
          },
        });
      }
    }
    return found;
  }

  /**
   * `url()` values naming a changed URL, in inline styles and in the style rules of every readable
   * sheet, in the document and the shadow roots in `roots`; rewritten through the CSSOM, so a
   * background image changes without a sheet swap.
   */
  function cssUrls(hit, roots) {
    const found = [];
    const scan = (style, base) => {
      for (const prop of [...style]) {
        const value = style.getPropertyValue(prop);
        if (!value.includes('url(')) continue;
        const urls = [...value.matchAll(URL_IN_CSS)].map((m) => parse(m[2], base));
        const hits = urls.filter((url) => url !== null && hit(url));
        if (!hits.length) continue;
        const keys = new Set(hits.map(key));
        const priority = style.getPropertyPriority(prop);
        found.push({
          url: hits[0].href,
          set: (id) => {
            const next = value.replace(URL_IN_CSS, (all, quote, raw) => {
              const url = parse(raw, base);
              return url && keys.has(key(url)) ? `url("${bust(url, id)}")` : all;
            });
            style.setProperty(prop, next, priority);
          },
        });
      }
    };
    const walk = (group, base) => {
      for (const rule of rules(group)) {
        if (rule instanceof CSSImportRule) walk(rule.styleSheet, rule.styleSheet?.href || base);
        else if (rule instanceof CSSStyleRule) scan(rule.style, base);
        if (rule.cssRules) walk(rule, base); // @media, @supports, @layer, nesting
      }
    };
    for (const root of roots) {
      for (const el of root.querySelectorAll('[style*="url("]')) scan(el.style, document.baseURI);
      for (const sheet of liveSheets(root)) walk(sheet, sheet.href || document.baseURI);
    }
    return found;
  }

  // ---- Modules --------------------------------------------------------------------------------

  function container(map, update) {
    let first;
    const box = {
      entries: Object.entries(map).map(([url, prop]) => ({ url: moduleUrl(url), prop })),
      update,
      c: {},
      /** Module URL → why its last import failed (`{err, title}`), until one succeeds. */
      broken: new Map(),
      /**
       * Property → the newest copy imported that is not in `c` yet: it goes in when `update` runs
       * (a broken module of the box holds it back).
       */
      staged: new Map(),
      /** Its last `update` threw: the overlay stays until one runs through. */
      failing: false,
      ready: new Promise((resolve) => (first = resolve)),
    };
    box.first = first;
    boxes.push(box);
    enqueue(() => load(box, box.entries, null), 'loading the modules');
    return box.ready;
  }

  /**
   * Import `entries` (cache-busted with the batch id, if any), then update if every module of the
   * box is in and none is broken: a good save of one module while another still fails to load
   * must not run `update` with the broken one's last good copy (the file on disk is not that), nor
   * take the overlay away. The good one goes in with the fix, and not before: the container is
   * the app's, and what it runs meanwhile (an event handler reading `c.view`) must not see a
   * module `update` has not taken in.
   */
  async function load(box, entries, id) {
    // The copy of each module to import: this batch's; for a container registered later, the
    // newest one imported (its plain URL is the copy the browser holds from before the change,
    // or from a failed import); for a batch the queue stopped waiting for, that a later one has
    // overtaken, the later one's.
    const versions = entries.map((e) => {
      const newest = imported.get(key(e.url)) ?? null;
      if (id === null || (newest !== null && newest > id)) return newest;
      imported.set(key(e.url), id);
      // The copies before this one go first (a module in two containers is retired once).
      if (newest !== id) retire(key(e.url), bust(e.url, id));
      return id;
    });
    const hrefs = entries.map((e, i) => (versions[i] === null ? e.url.href : bust(e.url, versions[i])));
    const options = entries.map((e) => importOptions(e.url));
    const began = performance.now();
    const results = await Promise.allSettled(hrefs.map((href, i) => import(href, options[i])));
    // A JSON module's SyntaxError says where already; a module script of its URL would not parse.
    const probes = results.map(
      (r, i) => r.status === 'rejected' && !options[i] && locate(r.reason, hrefs[i]),
    );
    await Promise.all(probes);
    let failed = false;
    for (const [i, result] of results.entries()) {
      const { url, prop } = entries[i];
      // Overtaken while it was imported: the later batch puts its own copy in, and this one,
      // never used, is disposed (its top level ran after the copies before it were retired).
      if ((imported.get(key(url)) ?? null) !== versions[i]) {
        retireCopy(hrefs[i]);
        continue;
      }
      if (result.status === 'fulfilled') {
        box.staged.set(prop, result.value);
        box.broken.delete(url.href);
        continue;
      }
      failed = true;
      box.staged.delete(prop);
      // A file of its graph that could not be fetched, named (see notFetched): the browser's
      // TypeError, which no module threw (one that did, or one that does not parse, says where
      // itself, and is not blamed on another's fetch). A failed copy of another module of this
      // load is that one's.
      const fetchFailed = result.reason instanceof TypeError && !stackFrames(result.reason);
      const mine = (f) => f.href === hrefs[i] || !hrefs.includes(f.href);
      const missing = fetchFailed ? fetched.failedScripts(began).filter(mine) : [];
      const title = notFetched(url.pathname, hrefs[i], missing) ?? `${url.pathname} failed to load`;
      box.broken.set(url.href, { err: result.reason, title });
      // A module that defines a custom element at its top level runs once per page: every new
      // copy fails on the name it defined before, save after save, and holds back its box.
      if (id !== null && definedAgain(result.reason)) {
        const why = `${url.pathname} defines a custom element, which a page defines only once`;
        reload(`${why} (${result.reason})`);
        if (reloading) return; // else kept by its user: the overlay says why nothing changes
      }
      showError(title, result.reason);
    }
    if (failed) return;
    if (box.broken.size) {
      // Shown again, after a dismissal too: it says why this save changed nothing.
      const { err, title } = box.broken.values().next().value;
      showError(`${title}; the update waits for it`, err);
      return;
    }
    if (!box.entries.every((e) => e.prop in box.c || box.staged.has(e.prop))) return;
    for (const [prop, namespace] of box.staged) box.c[prop] = namespace;
    box.staged.clear();
    try {
      await box.update(box.c);
    } catch (err) {
      box.failing = true;
      showError('the update function threw', err);
      return;
    }
    box.failing = false;
    if (id !== null) log(`modules updated: ${entries.map((e) => e.url.pathname).join(', ')}`);
    // The overlay is the page's: it stays while another container has a broken module or an
    // update that threw; and the page's load errors stay too (see watchLoad): the module that
    // broke the load is none of the containers', and a save of one of theirs fixes nothing there.
    if (!boxes.some((b) => b.broken.size || b.failing)) hideError('load');
    box.first(box.c);
  }

  /**
   * Where a module that failed to parse went wrong, for the overlay: the SyntaxError `import()`
   * rejects with has no file, line or column in Chromium (a typo in a saved module said only
   * "Unexpected token"). A module script of the same URL reports its error with them, to its
   * window's error listeners: so it is loaded in a hidden blank frame, a realm of its own, where
   * the page's listeners (an error reporter, a framework's own overlay) and its console do not
   * hear it. Only a module that failed to parse or link is probed, one whose error has no stack
   * frame: such a graph is never evaluated, so nothing runs there. (A SyntaxError thrown while a
   * module ran, `JSON.parse` at its top level, has a stack that says where, and its graph would
   * run again.) A file fixed between the import and the probe does run there, once, and the frame
   * goes as soon as it has loaded. Gives up after a second, or when the page forbids the frame's
   * script (a policy, Trusted Types): the overlay then shows the message alone. A report about
   * another error (the file broke differently meanwhile) is not taken for this one.
   */
  function locate(err, href) {
    if (!(err instanceof SyntaxError) || located.has(err) || stackFrames(err)) return null;
    return new Promise((resolve) => {
      const frame = document.createElement('iframe');
      const done = () => {
        clearTimeout(timer);
        frame.remove();
        resolve();
      };
      const timer = setTimeout(done, LOCATE_PATIENCE_MS);
      try {
        frame.hidden = true;
        document.documentElement.append(frame);
        const realm = frame.contentWindow;
        // The page's import maps first: without them a bare specifier the module imports
        // (`lib/format`) did not resolve there, and the frame's error was another one. Before
        // the listener: a map that does not parse (the page's did not either) is not the
        // module's error.
        for (const map of document.querySelectorAll('script[type="importmap" i]')) {
          const copy = realm.document.createElement('script');
          copy.type = 'importmap';
          copy.nonce = map.nonce; // the page's policy may allow inline scripts by nonce
          copy.textContent = map.textContent;
          realm.document.head.append(copy);
        }
        realm.addEventListener('error', (event) => {
          event.preventDefault();
          if (event.filename && String(event.message).includes(err.message)) {
            located.set(err, `${path(event.filename)}:${event.lineno}:${event.colno}`);
          }
          done();
        });
        const script = realm.document.createElement('script');
        script.type = 'module';
        script.onerror = done;
        script.onload = done;
        script.src = href;
        realm.document.head.append(script);
      } catch {
        done();
      }
    });
  }

  // ---- Errors while the page loads ------------------------------------------------------------

  /**
   * Show what went wrong while this document loaded on the overlay, when the load follows a
   * reload the client made (see expectReload): a save that broke a script the page runs as it
   * loads (the module that calls container(), a classic script, one they import) reloaded the
   * page, and it came back blank, with the error in the console only. Not on other loads: the
   * client cannot tell a page's own errors (a widget that throws, an error it expects) from one a
   * save brought, and an overlay over every page that has some would be noise; a save that breaks
   * the load is followed by this client's reload.
   *
   * From the client's start until a task after `load` (the page's own `load` listeners have run):
   * a same-origin script's uncaught error (the window's `error` events: a script that does not
   * parse, with its file, line and column, or throws at its top level; another site's, which
   * has no detail, and the browser's own, which names no file, are not the page's) and a
   * same-origin <script> that could not be loaded (its own `error` event, heard in the capture
   * phase), with the file that failed (see notFetched). The client is a module script at the end
   * of the head, so it runs after every classic script the HTML names (unless deferred) and every
   * module script before its tag: their errors came before it listened. Once the parser's
   * scripts have run (DOMContentLoaded), two things tell of those: the script fetches that
   * failed before it started (resource timing), and, when none did, an import of each module
   * script of the page whose error it did not hear, which hands back the error its run met
   * without running it again (a graph that failed to fetch would be fetched again, and might
   * run: so not then). What it cannot see is a classic script before it that did not parse or
   * threw. The overlay shows the first error of the load (those before the client started come
   * first), and how many more there were; dismissed, it stays away for the rest of this load.
   */
  function watchLoad() {
    if (!(Date.now() - Number(recall(documentKey('watch'))) < RELOAD_KEEP_MS)) return;
    state.loadWatch = 'watching';
    const started = performance.now();
    /** What went wrong, in the order the client heard it: `{early, title, err}`. */
    const found = [];
    /** Errors already said: a module's comes to the listener and to its probe, as one object. */
    const said = new WeakSet();
    /** The <script> elements whose `error` was heard: not probed, which would fetch again. */
    const failedElements = new Set();
    /** The failed fetches already named. */
    const named = new Set();
    let dismissed = false;
    const stop = new AbortController();

    const note = (early, title, err) => {
      console.error(`[hmr] ${title}:`, err);
      found.push({ early, title, err });
      const [first] = [...found].sort((a, b) => Number(b.early) - Number(a.early));
      const shown = document.getElementById(OVERLAY_ID);
      // Not over a container's: what a save of its module did just now is news.
      if (dismissed || (shown && kinds.get(shown) !== 'load')) return;
      const more = found.length - 1;
      const tail = more ? `\n\n…and ${more} more while the page loaded (see the console)` : '';
      showOverlay(first.title, describe(first.err) + tail, 'load', () => (dismissed = true));
    };

    /** Failed fetches no error has named yet (see notFetched), named from now on. */
    const unnamed = () => {
      const failed = fetched.failedScripts(0).filter((f) => !named.has(f.href));
      for (const f of failed) named.add(f.href);
      return failed;
    };

    const thrown = ({ error: err, filename, lineno, colno, message }) => {
      const file = filename ? parse(filename) : null;
      if (file === null || file.origin !== location.origin) return;
      if (isObject(err)) {
        if (said.has(err)) return;
        said.add(err);
      }
      const where = `${path(file.href)}:${lineno}:${colno}`;
      // A script that does not parse has no stack: the event says where.
      if (err instanceof Error && !stackFrames(err)) located.set(err, where);
      const inline = file.href.split('#')[0] === document.URL.split('#')[0];
      const name = inline ? 'a script in this page' : path(file.href);
      const parsing = err instanceof SyntaxError && !stackFrames(err);
      const title = parsing ? `${name} failed to load` : `${name} threw while the page loaded`;
      note(false, title, err instanceof Error ? err : `${message}\n    at ${where}`);
    };

    const unloaded = (script) => {
      const url = script.src ? parse(script.src) : null;
      if (url === null || url.origin !== location.origin) return;
      failedElements.add(script);
      const name = path(url.href);
      const title = notFetched(name, url.href, unnamed()) ?? `${name} could not be loaded`;
      note(false, title, script.outerHTML.slice(0, 300));
    };

    addEventListener(
      'error',
      (event) => {
        if (event instanceof ErrorEvent) thrown(event);
        else if (event.target instanceof HTMLScriptElement) unloaded(event.target);
      },
      { capture: true, signal: stop.signal },
    );

    /** The errors from before the client started (see above). */
    const before = async () => {
      const failed = fetched.failedScripts(0);
      for (const f of failed.filter((f) => f.at < started && !named.has(f.href))) {
        named.add(f.href);
        const status = f.status === 'no response' ? 'no response' : `HTTP ${f.status}`;
        note(true, `${path(f.href)} (${f.status}) could not be loaded`, `${f.href}: ${status}`);
      }
      if (failed.length) return;
      const self = key(new URL(selfUrl));
      // Not `async` ones: they run once loaded, maybe not yet, and the import would run them.
      const scripts = [...document.scripts].filter((script) => {
        const url = script.src ? parse(script.src) : null;
        return (
          url?.origin === location.origin &&
          /^\s*module\s*$/i.test(script.type) &&
          !script.async &&
          !failedElements.has(script) &&
          key(url) !== self
        );
      });
      const results = await Promise.allSettled(scripts.map((script) => import(script.src)));
      const errs = results.map((r) => (r.status === 'rejected' ? r.reason : undefined));
      const fresh = errs.map((err) => err !== undefined && !(isObject(err) && said.has(err)));
      await Promise.all(errs.map((err, i) => fresh[i] && locate(err, scripts[i].src)));
      for (const [i, err] of errs.entries()) {
        if (!fresh[i]) continue;
        if (isObject(err)) said.add(err);
        const name = path(scripts[i].src);
        // No stack: it did not parse, or (a TypeError of the browser's) could not be fetched.
        const bare = err instanceof Error && !stackFrames(err);
        const failure = err instanceof SyntaxError ? 'failed to load' : 'could not be loaded';
        note(true, `${name} ${bare ? failure : 'threw while the page loaded'}`, err);
      }
    };

    // Every module script but an `async` one has run by DOMContentLoaded, after the client.
    const [navigation] = performance.getEntriesByType('navigation');
    const parsed = navigation?.domContentLoadedEventStart > 0 || document.readyState === 'complete';
    const ready = new Promise((resolve) => {
      if (parsed) resolve();
      else addEventListener('DOMContentLoaded', resolve, { once: true });
    });
    const loaded = new Promise((resolve) => {
      if (document.readyState === 'complete') resolve();
      else addEventListener('load', () => setTimeout(resolve), { once: true });
    });
    // A probe waits for a module still awaiting at its top level (data it fetches): the listener
    // does not wait with it.
    const probed = ready.then(before).catch((err) => console.error('[hmr]', err));
    loaded.then(() => stop.abort());
    Promise.all([probed, loaded]).then(() => (state.loadWatch = 'done'));
  }

  /**
   * What to say of a script that could not be loaded (`name`, fetched from `href`), from the
   * failed same-origin script fetches in `failed` (see fetchRecord): which file failed, with its
   * status. Chromium rejects an `import()` with "Failed to fetch dynamically imported module:
   * <the module>" whichever file of its graph failed (an import of `./helperz.js` that is not
   * there), and a <script> fires a bare `error`: the overlay blamed a file that is there. A
   * failed file that is not the script's own is one of the modules it imports, directly or
   * through others. Null when `failed` is empty (a browser that says no status; a failure that
   * has none: a MIME type, a policy).
   */
  function notFetched(name, href, failed) {
    if (!failed.length) return null;
    const own = failed.find((f) => f.href === href);
    if (own) return `${name} (${own.status}) could not be loaded`;
    const files = [...new Set(failed.map((f) => `${path(f.href)} (${f.status})`))];
    return `${files.join(', ')} imported by ${name} could not be loaded`;
  }

  // ---- The error overlay (built node by node: no innerHTML, so CSP and Trusted Types hold) ----

  /** Whose each overlay is: `load` (see watchLoad), or `module` (a container's). */
  const kinds = new WeakMap();

  function showError(title, err) {
    console.error(`[hmr] ${title}:`, err);
    showOverlay(title, describe(err), 'module');
  }

  /** The overlay, `title` over `text`, in place of any other; `dismissed` is called on its ×. */
  function showOverlay(title, text, kind, dismissed = () => {}) {
    hideError();
    const host = element('div', {
      position: 'fixed',
      right: '1rem',
      bottom: '1rem',
      zIndex: '2147483647',
      maxWidth: 'min(40rem, calc(100vw - 2rem))',
    });
    host.id = OVERLAY_ID;
    kinds.set(host, kind);
    const panel = element('div', {
      background: '#fff5f5',
      color: '#611',
      border: '1px solid #d33',
      borderRadius: '6px',
      boxShadow: '0 4px 16px rgba(0, 0, 0, .2)',
      padding: '.75rem 1rem',
      font: '14px/1.4 system-ui, sans-serif',
    });
    const head = element('div', { display: 'flex', gap: '1rem', alignItems: 'baseline' });
    const close = element('button', { font: 'inherit', border: '0', background: 'none' }, '×');
    close.type = 'button';
    close.title = 'Dismiss';
    close.addEventListener('click', () => {
      host.remove();
      dismissed();
    });
    head.append(element('strong', { flex: '1' }, `hmr-proxy: ${title}`), close);
    const detail = element(
      'pre',
      { margin: '.5rem 0 0', whiteSpace: 'pre-wrap', font: '12px/1.4 ui-monospace, monospace' },
      text,
    );
    panel.append(head, detail);
    // A shadow root keeps the page's CSS off the overlay.
    host.attachShadow({ mode: 'open' }).append(panel);
    (document.body || document.documentElement).append(host);
  }

  /** Take the overlay away, unless it is of the kind `keep`. */
  function hideError(keep = null) {
    const host = document.getElementById(OVERLAY_ID);
    if (host && !(keep && kinds.get(host) === keep)) host.remove();
  }

  /**
   * The note that dev servers are down (see upstream), bottom left (the error overlay is bottom
   * right), or none when `origins` is empty. It takes no clicks: the page stays usable under it.
   */
  function downNote(origins) {
    document.getElementById(DOWN_ID)?.remove();
    if (!origins.length) return;
    const host = element('div', {
      position: 'fixed',
      left: '1rem',
      bottom: '1rem',
      zIndex: '2147483647',
      pointerEvents: 'none',
    });
    host.id = DOWN_ID;
    host.dataset.down = origins.join(' ');
    const note = element(
      'div',
      {
        background: '#222',
        color: '#fff',
        borderRadius: '6px',
        boxShadow: '0 4px 16px rgba(0, 0, 0, .2)',
        padding: '.4rem .75rem',
        font: '13px/1.4 system-ui, sans-serif',
        opacity: '.92',
      },
      origins.length === 1
        ? `hmr-proxy: ${origins[0]} is down; this page reloads once it is back`
        : `hmr-proxy: ${origins.join(' and ')} are down; this page reloads once they are back`,
    );
    host.attachShadow({ mode: 'open' }).append(note);
    (document.body || document.documentElement).append(host);
  }

  // ---- Dispose callbacks ----------------------------------------------------------------------

  /** A module copy's URL (its `import.meta.url`) → the callbacks it registered. */
  const disposers = new Map();

  function dispose(moduleUrl, callback) {
    const href = new URL(moduleUrl, location.href).href;
    if (!disposers.has(href)) disposers.set(href, []);
    disposers.get(href).push(callback);
  }

  /**
   * Run the dispose callbacks of every copy of the module `moduleKey` but `keep`, each once. One
   * that throws (or rejects) is logged; the swap goes on.
   */
  function retire(moduleKey, keep) {
    for (const href of [...disposers.keys()]) {
      if (href !== keep && key(new URL(href)) === moduleKey) retireCopy(href);
    }
  }

  /** Run the dispose callbacks the copy at `href` registered, once. */
  function retireCopy(href) {
    const callbacks = disposers.get(href) ?? [];
    disposers.delete(href);
    for (const callback of callbacks) {
      const failed = (err) => console.error(`[hmr] a dispose callback of ${path(href)} threw:`, err);
      try {
        Promise.resolve(callback()).catch(failed);
      } catch (err) {
        failed(err);
      }
    }
  }

  return { container, dispose, state, claims, expectReload };
}

// ---- Helpers ----------------------------------------------------------------------------------

const URL_IN_CSS = /url\(\s*(['"]?)([^'")]+)\1\s*\)/g;

/** The URL at the start of an @import rule's text, quoted or in url(). */
const IMPORT_URL =
  /^@import\s+(?:url\((?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^)]*)\)|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')/;

/** How long a replaced @import waits for its owner's `load` before the old rule goes anyway. */
const IMPORT_FALLBACK_MS = 3000;

/** How often a link loading a swapped sheet is looked at: is it still loading that address? */
const LINK_WATCH_MS = 250;

/**
 * How long a link that came back with an older copy of a sheet waits for its `load` before it
 * goes anyway (see phaseOut).
 */
const PHASE_OUT_FALLBACK_MS = 3000;

/** The attribute that marks a swap's inert copy of a link (see swapStylesheet). */
const COPY_MARK = 'data-hmr-copy';

/** The links of the icons a browser shows for a page (tab, bookmark, home screen). */
const ICON_LINKS =
  'link[rel~="icon" i][href], link[rel~="apple-touch-icon" i][href], ' +
  'link[rel~="apple-touch-icon-precomposed" i][href]';

const SVG_NS = 'http://www.w3.org/2000/svg';
const XLINK_NS = 'http://www.w3.org/1999/xlink';

/**
 * The one image address of `el` that imageAttributes swaps beside `<img src>` and `srcset`: its
 * text (`value`) and how to set it, or null. SVG's `href` wins over `xlink:href` when both are
 * there, as it does for the browser.
 */
function reference(el) {
  const attribute = (ns, name, qualified = name) => {
    const value = el.getAttributeNS(ns, name);
    return value === null ? null : { value, set: (url) => el.setAttributeNS(ns, qualified, url) };
  };
  if (el.namespaceURI === SVG_NS) {
    if (el.localName !== 'use' && el.localName !== 'image') return null;
    return attribute(null, 'href') ?? attribute(XLINK_NS, 'href', 'xlink:href');
  }
  if (el.localName === 'video') return attribute(null, 'poster');
  return el.localName === 'link' ? attribute(null, 'href') : null;
}

/**
 * Whether a reference is to this document itself (`<use href="#icon">`, a sprite inlined in the
 * page): its address is the page's, which a change to the page would take for a swap.
 */
function inDocument(text, url) {
  return text.trim().startsWith('#') || url.href.split('#')[0] === document.URL.split('#')[0];
}

/** The stylesheet links `node` is or holds. */
function sheetLinksIn(node) {
  if (node.nodeType !== 1) return [];
  const own = node.matches(SHEET_LINK) ? [node] : [];
  // Most of what a page adds has no elements inside (a text, a list item): not searched.
  return node.firstElementChild ? [...own, ...node.querySelectorAll(SHEET_LINK)] : own;
}

const SHEET_LINK = 'link[rel~="stylesheet" i][href]';

/**
 * Whether Turbo (or Turbolinks, before it) tracks `link`: it compares the HTML of the tracked
 * head elements of each page it visits with the current page's (see carry).
 */
function isTracked(link) {
  return link.hasAttribute('data-turbo-track') || link.hasAttribute('data-turbolinks-track');
}

/** Whether `node` (a sheet's owner) is a swap's copy, or a clone of one. */
function isCopy(node) {
  return node?.nodeType === 1 && node.hasAttribute(COPY_MARK);
}

/**
 * Names for a console line: the first few and how many more (a checkout's 700 paths made one
 * line of 700 URLs), counting `unlisted` ones the batch did not name (see apply).
 */
function listed(names, shown = 5, unlisted = 0) {
  const more = Math.max(0, names.length - shown) + unlisted;
  if (more === 0 || (more === 1 && !unlisted)) return names.join(', ');
  return `${names.slice(0, shown).join(', ')} and ${more} more`;
}

function log(text) {
  console.info(`[hmr] ${text}`);
}

/** What Chromium asks for a stylesheet and an image with. */
const ACCEPT_CSS = 'text/css,*/*;q=0.1';
const ACCEPT_IMAGE = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8';

/**
 * The session-storage key of what this document keeps across a reload (`what`): the batch
 * position of a page a reload batch reloaded, where a page was scrolled (see restoreScroll), the
 * mark that has the next load show its errors (see watchLoad). One per document: a tab's session
 * storage is its frames' too, and a frame starting first must not take the top's.
 */
function documentKey(what) {
  // Without the fragment, which a reload with GET leaves out (see reloadWithGet).
  const url = location.href.split('#')[0];
  return `hmr-proxy ${what} ${window === window.top ? 'top' : 'frame'} ${url}`;
}

/**
 * The resource timing buffer holds this many entries unless a page raises it (the spec's default,
 * Chromium's and Firefox's): an entry that came after it was full is in no list.
 */
const RESOURCE_TIMING_BUFFER = 250;

/**
 * What this document has fetched, from resource timing: the entries in its buffer when the client
 * starts, and every later one through an observer, which hears them all, however full the buffer
 * (raising its size would not be needed, and would change what the page's own code sees).
 * `mayHave(key)` says whether it may have fetched a resource: true when the record may lack it
 * (a buffer full before the client started, on a heavy page, has dropped what came after; a
 * browser without resource timing lists nothing), which is then reloaded for, as before.
 * `failedScripts(since)` lists its same-origin script fetches that failed (see scriptFailure)
 * from `since` (a `performance.now()` time) on, as `{href, status, at}`, oldest first.
 */
function fetchRecord() {
  const keys = new Set();
  const failures = [];
  let complete = false;
  let observer = null;
  const add = (entries) => {
    for (const entry of entries) {
      const url = parse(entry.name);
      if (url === null) continue;
      keys.add(key(url));
      const status = scriptFailure(entry, url);
      if (status === null) continue;
      failures.push({ href: url.href, status, at: entry.startTime });
      if (failures.length > FAILURES_KEPT) failures.shift();
    }
  };
  try {
    const before = performance.getEntriesByType('resource');
    complete = before.length < RESOURCE_TIMING_BUFFER;
    add(before);
    observer = new PerformanceObserver((list) => add(list.getEntries()));
    observer.observe({ type: 'resource' });
  } catch {
    complete = false;
  }
  // What came since the observer was last called back.
  const update = () => observer && add(observer.takeRecords());
  return {
    mayHave(k) {
      if (!complete) return true;
      update();
      return keys.has(k);
    },
    /** Whether it is known to have fetched `k` (the record may lack some; see mayHave). */
    has(k) {
      update();
      return keys.has(k);
    },
    failedScripts(since) {
      update();
      return failures.filter((f) => f.at >= since);
    },
  };
}

/** The failed script fetches fetchRecord keeps: the newest, for the errors they explain. */
const FAILURES_KEPT = 64;

/**
 * How a resource timing entry's same-origin script fetch (a <script>, a module or one it
 * imports) failed: its HTTP status (`404`), or `no response` (a connection refused or cut
 * short: status 0 and nothing received; a copy from the memory cache has a body). Null when it
 * did not, or when the browser does not say (one without `responseStatus`: not every browser
 * has it, Chromium does).
 */
function scriptFailure(entry, url) {
  if (entry.initiatorType !== 'script' || url.origin !== location.origin) return null;
  const status = entry.responseStatus;
  if (typeof status !== 'number') return null;
  if (status >= 400) return String(status);
  return status === 0 && entry.decodedBodySize === 0 ? 'no response' : null;
}

/**
 * The element whose scroll position is the document's: `scrollX`, `scrollY` and `scrollTo` are
 * the page's to replace (a game's `var scrollX = 0`).
 */
function scroller() {
  return document.scrollingElement ?? document.documentElement;
}

/**
 * What a reload keeps (a scroll position, the mark that watches the next load's errors) is for
 * the load that follows it: a slow page (a dev server compiling on the first request, the
 * proxy's waiting page while it restarts) may take tens of seconds. One found later is from a
 * reload that never came (a page kept by its user in a browser without the Navigation API), and
 * a load now is another visit.
 */
const RELOAD_KEEP_MS = 60_000;

/**
 * How long, in frames rendered, a reloaded page has to grow tall enough for its scroll position:
 * an app renders within a second or two of `load`; a page still too short after this may never be
 * that tall again (the reload came with less content), and the user should not be scrolled when
 * reading it.
 */
const SCROLL_PATIENCE_MS = 5000;

/** One frame counts for at most this long (see restoreScroll): a hidden tab renders none. */
const SCROLL_FRAME_MAX_MS = 100;

/** Put a value in this tab's session storage, if there is one (not in sandboxed frames). */
function remember(key, value) {
  try {
    if (value !== null) sessionStorage.setItem(key, String(value));
  } catch {
    // No storage: nothing to remember with, and nothing lost but the loop guard.
  }
}

/** Take a value out of this tab's session storage (it is read once). */
function recall(key) {
  try {
    const value = sessionStorage.getItem(key);
    sessionStorage.removeItem(key);
    return value;
  } catch {
    return null;
  }
}

/**
 * The newest change batch when the proxy served this document, from the `hmr` metric of its
 * `Server-Timing` header (`hmr;desc=<id>`). Null for a page the proxy did not inject, or where
 * the browser hides Server-Timing from the page.
 */
function pagePosition() {
  return pageMetric('hmr');
}

/**
 * The newest comeback of a dev server when the proxy answered with this document
 * (`hmr-restart;desc=<mark>` in its `Server-Timing` header): a reload for that comeback, or an
 * earlier one, is behind the page (see apply). Null where the page does not say.
 */
function pageRestart() {
  return pageMetric('hmr-restart');
}

/** The positive whole number in this document's `Server-Timing` metric `name`, else null. */
function pageMetric(name) {
  try {
    const [navigation] = performance.getEntriesByType('navigation');
    const metric = navigation?.serverTiming?.find((entry) => entry.name === name);
    const n = Number(metric?.description);
    return metric && Number.isSafeInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/**
 * Whether this document answers a form sent with POST, from the `hmr-post` metric the proxy adds
 * to its `Server-Timing` header then (see reloadWithGet). False where the browser hides
 * Server-Timing from the page.
 */
function pageAnswersPost() {
  try {
    const [navigation] = performance.getEntriesByType('navigation');
    return navigation?.serverTiming?.some((entry) => entry.name === 'hmr-post') === true;
  } catch {
    return false;
  }
}

/**
 * Whether this is the proxy's waiting page for a dev server that is not there, which polls the
 * proxy's `/__hmr/upstream` and reloads itself once the server answers (src/proxy/unavailable.rs).
 * The form it answers never reached the server: its reload is what sends it, once, so the client
 * reloads it as the page does, sending it again, and not with a GET, which would lose it.
 */
function pollsForServer() {
  return [...document.scripts].some((s) => !s.src && s.textContent.includes('/__hmr/upstream?'));
}

/**
 * `text` as a URL against `base`, or null when it is none: a page mid-edit holds
 * `<img src="https://">`, and one such URL must not stop every change that follows.
 */
function parse(text, base = location.href) {
  try {
    return new URL(text, base);
  } catch {
    return null;
  }
}

/**
 * How a container's module is imported: a JSON or CSS module (`/i18n/en.json`, `/css/card.css`
 * for `adoptedStyleSheets`) with its type, as the app's own `import … with { type: 'json' }` is,
 * so both share one module; anything else as JavaScript.
 */
function importOptions(url) {
  const type = /\.(json|css)$/i.exec(url.pathname)?.[1].toLowerCase();
  return type ? { with: { type } } : undefined;
}

/** What changed URLs and URLs in the page are compared by: origin and path, no query or hash. */
function key(url) {
  try {
    return url.origin + decodeURIComponent(url.pathname);
  } catch {
    return url.origin + url.pathname;
  }
}

/**
 * Whether a key names an image, by its extension: one the page never loaded reloads nothing (see
 * survey).
 */
function isImage(k) {
  return /\.(?:a?png|jpe?g|jfif|pjpeg|pjp|gif|webp|avif|svg|ico|cur|bmp|tiff?)$/i.test(k);
}

/**
 * Whether a key names a script, or code a script loads (`.wasm`): a worker or a service worker may
 * import it where the page cannot see (see survey).
 */
function isScript(k) {
  return /\.(?:[cm]?js|jsx|wasm)$/i.test(k);
}

/**
 * Whether a key names an inert file, by its extension: one no server renders a page from, and no
 * template or code is: a document (PDF, office files), a video or audio file, an archive, a font.
 * One the page neither embeds nor loaded reloads nothing (see survey): an app that stores an
 * upload in its public folder reloaded the tab right after its redirect, and the flash message
 * went with it. Not what a server may read to render a page: text and data (`.csv`, `.json`,
 * `.md`, `.xml`, `.yaml`), a database (`.sqlite`), an archive of code (`.jar`, `.war`), nor what
 * a page runs (`.wasm`); and not `.ts`, which is TypeScript far more often than a video stream.
 */
function isInert(k) {
  const documents = /\.(?:pdf|docx?|xlsx?|pptx?|odt|ods|odp|odg|rtf|epub)$/i;
  const media = /\.(?:mp4|m4v|webm|mov|ogv|mkv|avi|mp3|wav|ogg|oga|flac|m4a|aac|opus|weba)$/i;
  const archives = /\.(?:zip|gz|tgz|bz2|xz|zst|7z|rar|tar)$/i;
  const fonts = /\.(?:woff2?|ttf|otf|eot)$/i;
  return [documents, media, archives, fonts].some((re) => re.test(k));
}

/**
 * Whether a key names a template (or a page), which a refresh through Turbo shows as a reload
 * would (see turboRefresh): HTML, and the template languages of the servers Turbo is used with
 * (Rails' `.html.erb`, Jinja, Django, Twig, Blade, Go, Phoenix, Razor…), not a script or server
 * code.
 */
function isTemplate(k) {
  const html = /\.(?:x?html?|html\.(?:erb|haml|slim)|blade\.php|cshtml|razor)$/i;
  const other = /\.(?:jinja2?|j2|njk|twig|liquid|hbs|handlebars|mustache|ejs|pug|tmpl|gohtml)$/i;
  return html.test(k) || other.test(k) || /\.h?eex$/i.test(k);
}

/** Whether a key names a stylesheet (see survey and apply). */
function isStylesheet(k) {
  return /\.css$/i.test(k);
}

/**
 * Whether a key names a source map (`view.js.map`, written next to a module by tsc, esbuild, swc
 * or babel): only DevTools reads it, so it changes nothing the page runs, and nothing in the page
 * claims it. Saved with its module, it turned every hot swap into a reload.
 */
function isSourceMap(k) {
  // A script's or a stylesheet's map (`app.js.map`, `site.css.map`, `types.d.ts.map`), not any
  // `.map` (a game's or a tile server's data, which the page does use).
  return /\.(?:[cm]?[jt]sx?|css)\.map$/.test(k);
}

/**
 * A container key as the page would import it: resolved against the document (`./view.js` on a
 * page under /admin/ is /admin/view.js; `import.meta.resolve` would take this file's URL, under
 * /__hmr/), then through the page's import map, which applies to this module too: a bare
 * specifier (`app/view`), or a path the map points at another file. That file is the one to
 * match changes with and to import: a cache-busted key (`?t=`) no longer matches the map, and
 * ran the unmapped file. Without `import.meta.resolve`, or for a bare key no map names, the key
 * is a URL relative to the document.
 */
function moduleUrl(specifier) {
  const text = String(specifier);
  // URL-like, as module resolution takes it: absolute, or starting with /, ./ or ../.
  const url = /^\.{0,2}\//.test(text) ? new URL(text, document.baseURI) : absolute(text);
  try {
    const mapped = import.meta.resolve?.(url ? url.href : text);
    if (mapped) return new URL(mapped);
  } catch {
    // Not in the map and no URL: taken as a URL relative to the document, below.
  }
  return url ?? new URL(text, document.baseURI);
}

/** `text` as an absolute URL, or null (parse() takes it relative to the page). */
function absolute(text) {
  try {
    return new URL(text);
  } catch {
    return null;
  }
}

/**
 * Whether an import failed on a custom element defined again (`customElements.define` with a
 * name the page has defined: a NotSupportedError, "…on 'CustomElementRegistry'… already been
 * used" in Chromium, "CustomElementRegistry.define: … already been defined" in Firefox).
 */
function definedAgain(err) {
  const registry = /CustomElementRegistry|custom element/i;
  return err?.name === 'NotSupportedError' && registry.test(String(err.message));
}

function path(href) {
  return new URL(href, location.href).pathname;
}

/**
 * `url` with `t=<id>`: an address the browser has not cached. A `t` of the page's own (not a
 * stamp: `app.css?t=dark`, a thumbnail's `?t=small`) names another resource, and stays: the
 * stamp then goes in STAMP_ELSEWHERE.
 */
function bust(url, id) {
  const u = new URL(url, location.href);
  u.searchParams.set(stampName(u), String(id));
  return u.href;
}

/** Where a stamp goes when the URL has a `t` of its own. */
const STAMP_ELSEWHERE = 'hmr';

/** The parameter that holds (or will hold) `u`'s stamp: `t`, unless its `t` is the page's. */
function stampName(u) {
  const t = u.searchParams.get('t');
  return t === null || isStamp(t) ? 't' : STAMP_ELSEWHERE;
}

/** The stamp of `u` (a URL), as a number; null when it has none. */
function stampOf(u) {
  const value = u.searchParams.get(stampName(u));
  return value !== null && isStamp(value) ? Number(value) : null;
}

/** A stamp's value: a batch id (or another tool's number), all digits. */
function isStamp(value) {
  return /^\d+$/.test(value);
}

/**
 * The address of the sheet a link loads: with its query (a server may answer `?part=head` and
 * `?part=body` with two sheets), but without cache-busting stamps, so that another live
 * reloader's copy is known for one: this client's and Vite's `t`, and any parameter whose value
 * is a timestamp (livereload's `livereload=`, browser-sync's `rel=`).
 */
function sheetAddress(href) {
  const u = new URL(unbust(href));
  for (const [name, value] of [...u.searchParams]) {
    if (/^\d{10,}$/.test(value)) u.searchParams.delete(name);
  }
  return u.href;
}

/** `url` without its stamp: the address a reload asks for. */
function unbust(url) {
  const u = new URL(url, location.href);
  for (const name of ['t', STAMP_ELSEWHERE]) {
    if (isStamp(u.searchParams.get(name) ?? '')) u.searchParams.delete(name);
  }
  return u.href;
}

/**
 * The candidates of a `srcset` as `{url, descriptors}`, split as the HTML spec's parser does: a
 * URL runs to the next whitespace (so it may hold commas, as a data: URL does), and commas at its
 * end close the candidate; descriptors run to the next comma outside parentheses. The space after
 * a comma is optional (`a.svg 1x,b.svg 2x`, as minifiers write it).
 */
function parseSrcset(text) {
  const candidates = [];
  const gap = /[\s,]*/y;
  const word = /\S+/y;
  const descriptors = /(?:[^,(]|\([^)]*\)?)*/y;
  let at = 0;
  const take = (re) => {
    re.lastIndex = at;
    const found = re.exec(text)[0];
    at = re.lastIndex;
    return found;
  };
  for (;;) {
    take(gap);
    if (at >= text.length) return candidates;
    const url = take(word);
    if (url.endsWith(',')) candidates.push({ url: url.replace(/,+$/, ''), descriptors: '' });
    else candidates.push({ url, descriptors: take(descriptors).trim() });
  }
}

/** The clients of the same-origin frames below `win`, at any depth. */
function frameClients(win) {
  const found = [];
  for (const frame of childFrames(win)) {
    try {
      if (frame[KEY]) found.push(frame[KEY]);
    } catch {
      // A cross-origin frame: what it runs is not ours to ask (its own frames may be).
    }
    found.push(...frameClients(frame));
  }
  return found;
}

/**
 * The windows of the frames in `win`. Not `win.frames` nor `win.length` of a same-origin window:
 * a page global of that name (`var frames = [...]`) replaces them. Its frame elements say; a
 * cross-origin window, whose document is not ours to read, answers `length` and indexes itself
 * (page globals are not seen from outside).
 */
function childFrames(win) {
  let elements;
  try {
    elements = [...win.document.querySelectorAll('iframe, frame')];
  } catch {
    try {
      return Array.from({ length: win.length }, (_, i) => win[i]).filter(Boolean);
    } catch {
      return [];
    }
  }
  return elements.map((el) => el.contentWindow).filter(Boolean);
}

/**
 * The Navigation API, if `navigation` still is it: a page global of that name (a classic
 * script's `var navigation = $('.nav')`) replaces it. Told by the object's own tag, not by
 * `instanceof Navigation`: a page's `class Navigation {}` (a nav component) hides that name.
 */
function navigationApi() {
  try {
    const api = window.navigation;
    const real = Object.prototype.toString.call(api) === '[object Navigation]';
    return real && typeof api.addEventListener === 'function' ? api : null;
  } catch {
    return null;
  }
}

/**
 * Whether this tab's top document carries the client's tag, and so will run it (a frame may start
 * before the page around it has run its scripts). False when it is on another origin.
 */
function topHasTag() {
  try {
    return window.top.document.querySelector('script[src^="/__hmr/"]') !== null;
  } catch {
    return false;
  }
}

/** The client of this tab's top document, if it runs one and is same-origin. */
function topClient() {
  try {
    return window.top[KEY] ?? null;
  } catch {
    return null;
  }
}

/**
 * Whether an @import rule sits in a sheet that a <link>'s sheet imports (at any depth), not in
 * the link's own. Chromium cannot take a new @import there: inserted, it switches off every rule
 * of the link for good (under a <style>, or at the top of the link's sheet, it works).
 */
function belowLink({ rule }) {
  const sheet = rule.parentStyleSheet;
  return ownerNode(sheet) instanceof HTMLLinkElement && sheet.parentStyleSheet !== null;
}

/** The <link> or <style> element an @import rule (`{rule}`, as importRules finds it) belongs to. */
function importOwner({ rule }) {
  return ownerNode(rule.parentStyleSheet);
}

/** The path of the sheet an @import rule is in (the page's, for a <style>). */
function importer(rule) {
  return path(rule.parentStyleSheet.href || location.href);
}

/**
 * The document and the open shadow roots in it, at any depth (a shadow root's elements may host
 * shadow roots of their own): one pass over the elements of each, once per batch. A closed shadow
 * root cannot be reached from outside (its host's `shadowRoot` is null): what only it uses counts
 * as unused, and a change to it reloads the page; what the page uses elsewhere too keeps its old
 * copy there. Constructed sheets (`adoptedStyleSheets`) are left alone: they have no URL, so a
 * change to the file they were made from cannot be traced to them (a URL used only there reloads
 * the page too).
 */
function documentRoots() {
  const roots = [document];
  for (let i = 0; i < roots.length; i++) {
    for (const el of roots[i].querySelectorAll('*')) {
      const root = el.shadowRoot;
      // nodeType 11 (a document fragment): a custom element's own `shadowRoot` property, if it
      // has one, may be something else.
      if (root?.nodeType === 11 && root.host === el) roots.push(root);
    }
  }
  return roots;
}

/** The <link> or <style> element a sheet (or the sheet importing it) belongs to. */
function ownerNode(sheet) {
  while (sheet.parentStyleSheet) sheet = sheet.parentStyleSheet;
  return sheet.ownerNode;
}

/** The rules of a sheet or group; none when cross-origin (SecurityError) or not loaded yet. */
function rules(sheet) {
  try {
    return sheet?.cssRules ? [...sheet.cssRules] : [];
  } catch {
    return [];
  }
}

function element(tag, style, text) {
  const node = document.createElement(tag);
  Object.assign(node.style, style);
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * An error as text: its message, then the stack (which, outside Chromium, lacks the message), or
 * where it was found (see `locate`) when it has none.
 */
function describe(err) {
  if (!(err instanceof Error)) return String(err);
  const stack = stackFrames(err);
  if (stack) return `${err}\n${stack}`;
  return located.has(err) ? `${err}\n    at ${located.get(err)}` : String(err);
}

/** The frames of an error's stack, without the message Chromium's stack starts with. */
function stackFrames(err) {
  return String(err.stack || '').replace(String(err), '').trim();
}

/** An error without a stack → `path:line:column`: found by `locate`, or told by its error event. */
const located = new WeakMap();

/** Whether a thrown value can be told again by its identity (a WeakSet holds it). */
function isObject(value) {
  return (typeof value === 'object' && value !== null) || typeof value === 'function';
}

/** The id of the overlay's host element. */
const OVERLAY_ID = 'hmr-proxy-overlay';

/** The id of the host element of the note that a dev server is down. */
const DOWN_ID = 'hmr-proxy-down';

/**
 * The SharedWorker side of this file (started by share() where pages have no Web Locks): holds
 * one stream for every page of the origin, opened from the position of the page that asks first
 * and closed when the last page leaves, and passes on its greeting and batches. The page whose
 * position opened the stream hears it as its own (`mine`); a page that starts later hears the
 * newest batch id at once and catches up by itself. The stream survives the page that opened it,
 * so tabs closing hand nothing over and lose nothing.
 */
function sharedStream(selfUrl) {
  const changes = changesUrl(selfUrl);
  const ports = new Set();
  let source = null;
  let opener = null;
  let instance = null;
  let newest = null;
  let retryMs = RETRY_MIN_MS;
  /** The stream is open and greeted (a join during a reconnect waits for the next hello). */
  let live = false;
  /** Where a reopened stream resumes: the floor it opened from, moved on by what it passed on. */
  let resume = null;
  /** The dev servers down, as the stream last said (passed on to the pages that join). */
  let down = [];

  globalThis.onconnect = (event) => {
    const port = event.ports[0];
    port.onmessage = ({ data }) => {
      if (data.type === 'join') {
        ports.add(port);
        if (!source) {
          opener = port;
          open(data.floor);
        } else if (live) {
          port.postMessage({ type: 'hello', instance, last: newest, mine: false });
          if (down.length) port.postMessage({ type: 'upstream', down, mine: false });
        }
      } else if (data.type === 'leave') {
        ports.delete(port);
        if (port === opener) opener = null;
        if (!ports.size) {
          source?.close();
          source = null;
          live = false;
        }
      }
    };
  };

  function post(message) {
    for (const port of ports) port.postMessage({ ...message, mine: port === opener });
  }

  function open(floor) {
    resume = typeof floor === 'number' ? floor : null;
    const url = new URL(changes);
    if (resume !== null) url.searchParams.set('lastEventId', String(resume));
    const stream = new EventSource(url);
    source = stream;
    stream.addEventListener('hello', (event) => {
      const hello = JSON.parse(event.data);
      retryMs = RETRY_MIN_MS;
      // Ids count from the run's start: a new run's are its own (the pages reload for it).
      if (instance !== null && hello.instance !== instance) newest = resume = null;
      instance = hello.instance;
      if (typeof hello.last === 'number') newest = Math.max(newest ?? hello.last, hello.last);
      resume ??= newest;
      live = true;
      post({ type: 'hello', instance, last: newest });
      // The stream says the list after its hello when it is not empty.
      if (down.length) {
        down = [];
        post({ type: 'upstream', down });
      }
    });
    stream.addEventListener('upstream', (event) => {
      ({ down } = JSON.parse(event.data));
      post({ type: 'upstream', down });
    });
    stream.addEventListener('change', (event) => {
      const batch = JSON.parse(event.data);
      newest = Math.max(newest ?? batch.id, batch.id);
      if (stream === source) resume = Math.max(resume ?? batch.id, batch.id);
      post({ type: 'change', batch });
    });
    stream.addEventListener('error', () => {
      if (stream === source) live = false;
      // CONNECTING: the browser retries by itself; CLOSED: it gave up (a 502 from something in
      // front), so open another, later, from where this one got to.
      if (stream.readyState !== EventSource.CLOSED || source !== stream) return;
      source = null;
      setTimeout(() => {
        if (!source && ports.size) open(resume);
      }, retryMs);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    });
  }
  return null;
}

// One client per page, however often this file runs: the injected tag and an app's own import
// share the module instance when the URLs match, and this global catches the rest (a tag with a
// query string, a script re-run by hx-boost or Turbo). In the SharedWorker (no window), this
// file holds the stream instead; there, and in a Web Worker that imports a module the page
// swaps, there is no client.
const client =
  typeof window === 'undefined'
    ? sharedStream(import.meta.url)
    : (globalThis[KEY] ||= start(import.meta.url));
