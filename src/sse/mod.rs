//! The change hub: one producer (the watcher, the control endpoint, the upstream monitor), any
//! number of browser tabs.
//!
//! Owns [`Hub`]: it numbers batches (ids are monotonic across proxy restarts: they start at the
//! boot time in milliseconds), encodes each once ([`wire`]; a batch of thousands of files goes out
//! as a reload listing a few hundred, so neither the tabs nor the ring hold megabytes), keeps the
//! last few in a ring for tabs that reconnect with `Last-Event-ID`, and broadcasts the shared
//! bytes. A tab that falls behind the broadcast buffer, or asks for batches the ring no longer
//! holds, gets one `reload` batch instead: memory stays bounded and nothing is silently lost.
//! Per-tab streaming lives in [`stream`]. [`Position`] lets the injector tell each page which batch
//! was the newest when it was served. It does not watch files and does not route requests.

mod stream;
pub mod wire;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use tokio::sync::{Notify, broadcast, mpsc};

use crate::body::Body;
use crate::config::WatchRoot;
use crate::frameworks::FRAMEWORKS;
use crate::shutdown::Shutdown;
use crate::watch::{Change, ChangeBatch};

/// Batches kept for reconnecting tabs: a tab that was away for a few saves catches up exactly;
/// one away for longer reloads.
const RING: usize = 64;

/// Batches buffered per tab before it counts as lagging. Small on purpose: a tab that cannot keep
/// up with 32 batches is better served by one reload.
const BROADCAST: usize = 32;

/// The hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    /// Ids and the ring change together under this lock, and tabs subscribe under it, so a tab
    /// never misses or doubles a batch between its replay and its live stream.
    state: Mutex<State>,
    tx: broadcast::Sender<Published>,
    /// Open streams right now (each stream holds a guard).
    clients: AtomicUsize,
    /// Woken each time a stream opens ([`Hub::joined`]).
    joined: Arc<Notify>,
    /// Batches published since start.
    batches: AtomicU64,
    heartbeat: Duration,
    shutdown: Shutdown,
    /// Names this run of the proxy in every stream's `hello` event.
    instance: String,
    /// The newest batch id, read without the lock by every page request ([`Position`]).
    latest: Arc<AtomicU64>,
    /// The upstreams' comebacks, marked by their probes and read by every page ([`Position`]).
    restarts: Restarts,
    /// For each of [`FRAMEWORKS`], whether its dev server was seen behind the proxy, and the hint
    /// about it said ([`Hub::framework_seen`]).
    frameworks: [AtomicU8; FRAMEWORKS.len()],
    /// The watched folders' URL prefixes and folder names, to tell where a change's file lies
    /// ([`Hub::know_roots`]).
    roots: OnceLock<Vec<(String, PathBuf)>>,
    /// The folder served when there is no upstream, and whether with `--spa`
    /// ([`Hub::know_served`]).
    served: OnceLock<(PathBuf, bool)>,
}

/// [`Inner::frameworks`]' states.
const UNSEEN: u8 = 0;
const SEEN: u8 = 1;
const SAID: u8 = 2;

/// Where the batches stand, for pages: a page served now reflects every batch published so far,
/// so its client starts after the newest one (the injector says which in the page's headers),
/// and was served after every upstream comeback seen so far ([`Restarts`]). Cheap to clone;
/// reading it takes no lock.
#[derive(Clone, Debug)]
pub struct Position {
    latest: Arc<AtomicU64>,
    restarts: Restarts,
}

impl Position {
    /// The id of the newest batch published (the stream's `last` when none has been).
    pub fn latest(&self) -> u64 {
        self.latest.load(Ordering::Acquire)
    }

    /// The mark of the newest upstream comeback seen (see [`Restarts`]).
    pub fn restart(&self) -> u64 {
        self.restarts.latest()
    }
}

/// Upstream comebacks (a dev server answering again after it was down, or a new one in the old
/// one's place), numbered in the order the proxy sees them, across all upstreams. The reload a
/// comeback sends carries its mark (`"restart"`), and a page says the newest mark when the
/// upstream's answer came in (`Server-Timing: hmr-restart;desc=<mark>`): a page answered after
/// the comeback was seen is the new server's, and its client skips that reload; one the old
/// server was still sending (a takeover) names an older mark and takes it. Its position (the
/// newest batch) is read when its request comes in and the reload is published a moment after
/// the comeback is seen, so a page asked for in between (the waiting page reloading itself the
/// moment it sees the server back) got the reload replayed and was loaded twice. Numbered from
/// the boot time in milliseconds, as batch ids are, so a page from an earlier run of the proxy
/// never holds a newer mark. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Restarts(Arc<AtomicU64>);

impl Restarts {
    /// Number a comeback seen now.
    pub fn mark(&self) -> u64 {
        self.0.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The newest comeback's mark.
    pub fn latest(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

struct State {
    next_id: u64,
    ring: VecDeque<Published>,
    /// Upstreams down for longer than a restart takes, as the tabs were last told
    /// ([`Hub::upstream_down`]).
    down: Vec<String>,
    /// When the last stream ended ([`Hub::listened_within`]).
    last_left: Option<std::time::Instant>,
}

/// One encoded batch, or an `upstream` event (id 0: never in the ring).
#[derive(Clone, Debug)]
struct Published {
    id: u64,
    bytes: Bytes,
}

impl Hub {
    pub fn new(heartbeat: Duration, shutdown: Shutdown) -> Hub {
        let boot_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        let (tx, _) = broadcast::channel(BROADCAST);
        Hub {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    next_id: boot_ms,
                    down: Vec::new(),
                    last_left: None,
                    ring: VecDeque::with_capacity(RING),
                }),
                tx,
                clients: AtomicUsize::new(0),
                joined: Arc::new(Notify::new()),
                batches: AtomicU64::new(0),
                heartbeat,
                shutdown,
                instance: format!("{boot_ms:x}"),
                latest: Arc::new(AtomicU64::new(boot_ms - 1)),
                restarts: Restarts(Arc::new(AtomicU64::new(boot_ms))),
                frameworks: [const { AtomicU8::new(UNSEEN) }; FRAMEWORKS.len()],
                roots: OnceLock::new(),
                served: OnceLock::new(),
            }),
        }
    }

    /// A tab showed that the dev server is [`FRAMEWORKS`]`[index]` (`said`: and the router has
    /// told the user what that means). From then on, a batch naming a file that server updates
    /// in place says it once: the page reloads right after its update, its state lost, and the
    /// fix is to leave those files to it.
    pub fn framework_seen(&self, index: usize, said: bool) {
        let Some(state) = self.inner.frameworks.get(index) else {
            return;
        };
        if said {
            state.store(SAID, Ordering::Relaxed);
        } else {
            let _ = state.compare_exchange(UNSEEN, SEEN, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// The watched folders, to tell a change in a folder served as it is (`static=/`) from one in
    /// the sources.
    pub fn know_roots(&self, roots: &[WatchRoot]) {
        let roots = roots
            .iter()
            .map(|r| (r.url.clone(), r.dir.clone()))
            .collect();
        let _ = self.inner.roots.set(roots);
    }

    /// The folder the proxy serves (no upstream): a batch of files only from it says so (see
    /// [`wire::Message::served`]).
    pub fn know_served(&self, root: &std::path::Path, spa: bool) {
        let _ = self.inner.served.set((root.to_path_buf(), spa));
    }

    /// Whether every change of `batch` is a file of the served folder, under the URL it is
    /// served at: its watched folder, of those whose URL prefix is the longest that the change's
    /// URL starts with, is the served folder or one inside it, mapped to the matching path.
    fn all_served(&self, batch: &ChangeBatch) -> bool {
        let (Some((served, _)), Some(roots)) = (self.inner.served.get(), self.inner.roots.get())
        else {
            return false;
        };
        let in_place = |(prefix, dir): &(String, PathBuf)| {
            dir.strip_prefix(served).is_ok_and(|inside| {
                let inside = inside.to_string_lossy();
                let expected = format!("/{inside}/").replace("//", "/");
                *prefix == expected
            })
        };
        !batch.reload
            && !batch.changes.is_empty()
            && batch.changes.iter().all(|change| {
                let under =
                    |(prefix, _): &&(String, PathBuf)| change.url.starts_with(prefix.as_str());
                let Some(longest) = roots.iter().filter(under).map(|(p, _)| p.len()).max() else {
                    return false;
                };
                roots
                    .iter()
                    .filter(under)
                    .filter(|(prefix, _)| prefix.len() == longest)
                    .all(in_place)
            })
    }

    /// The name of `change`'s watched folder for a log line, where there are several.
    fn folder_named(&self, change: &Change) -> Option<String> {
        if self.inner.roots.get().is_none_or(|roots| roots.len() < 2) {
            return None;
        }
        self.folder_of(change)
    }

    /// The name of the watched folder `change` lies in: the one with the longest URL prefix of
    /// its URL, and of folders under one prefix (`-w app -w public=/`) the one that holds it.
    fn folder_of(&self, change: &Change) -> Option<String> {
        let roots = self.inner.roots.get()?;
        let under = |(prefix, _): &&(String, PathBuf)| change.url.starts_with(prefix.as_str());
        let longest = roots.iter().filter(under).map(|(p, _)| p.len()).max()?;
        let mut candidates = roots
            .iter()
            .filter(under)
            .filter(|(prefix, _)| prefix.len() == longest)
            .map(|(_, dir)| dir);
        let first = candidates.next()?;
        let dir = std::iter::once(first)
            .chain(candidates)
            .find(|dir| dir.join(&change.path).exists())
            .unwrap_or(first);
        Some(dir.file_name()?.to_string_lossy().into_owned())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the ring half-updated in a way that
        // matters (worst case one batch is missing), so poisoning is ignored.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where the batches stand, for the injector.
    pub fn position(&self) -> Position {
        Position {
            latest: self.inner.latest.clone(),
            restarts: self.inner.restarts.clone(),
        }
    }

    /// Where the upstreams' probes mark comebacks (see [`Restarts`]).
    pub fn restarts(&self) -> Restarts {
        self.inner.restarts.clone()
    }

    /// Number of open `/changes` streams.
    pub fn clients(&self) -> usize {
        self.inner.clients.load(Ordering::Relaxed)
    }

    /// Whether a tab listens now, or one stopped within `grace`: a tab reloading is gone from
    /// its old stream and not yet on its new one, and a restart of the upstream meanwhile (a
    /// fast one: `node --watch`) must still be seen.
    pub fn listened_within(&self, grace: std::time::Duration) -> bool {
        self.clients() > 0
            || self
                .state()
                .last_left
                .is_some_and(|left| left.elapsed() < grace)
    }

    /// Woken (`notify_waiters`) each time a tab's stream opens: what has nothing to do until a tab
    /// listens (the upstream's probe) waits on it instead of looking on a timer.
    pub fn joined(&self) -> Arc<Notify> {
        self.inner.joined.clone()
    }

    /// A stream ended.
    fn left(&self) {
        self.state().last_left = Some(std::time::Instant::now());
    }

    /// Number of batches published since start.
    pub fn batches_sent(&self) -> u64 {
        self.inner.batches.load(Ordering::Relaxed)
    }

    /// Publish a batch to every tab; returns its id.
    pub fn publish(&self, batch: &ChangeBatch) -> u64 {
        let (id, streams) = self.send(batch, batch.reason.as_deref(), None);
        log_batch(batch, streams, "", |c| self.folder_named(c));
        for (framework, state) in FRAMEWORKS.iter().zip(&self.inner.frameworks) {
            if state.load(Ordering::Relaxed) == SEEN
                && let Some(change) = batch
                    .changes
                    .iter()
                    .find(|c| framework.updates(self.folder_of(c).as_deref(), &c.path))
                && state.swap(SAID, Ordering::Relaxed) == SEEN
            {
                tracing::warn!(
                    "{} changed, and the upstream is {} ({}), which updates it in place itself: \
                     this batch reloads the page right after, its state lost. {}",
                    printable(&change.path),
                    framework.name,
                    framework.seen_by,
                    capitalised(framework.fix),
                );
            }
        }
        id
    }

    /// Publish a full reload for `why` (`POST /__hmr/reload`), logged as one line with it, and
    /// said in the tabs' consoles.
    pub fn publish_reload(&self, why: &str) -> u64 {
        self.reload(why, None)
    }

    /// Publish the full reload for an upstream's comeback (`upstream … restarted`) marked
    /// `restart` (see [`Restarts`]): pages served after it skip it.
    pub fn publish_restart(&self, why: &str, restart: u64) -> u64 {
        self.reload(why, Some(restart))
    }

    fn reload(&self, why: &str, restart: Option<u64>) -> u64 {
        let (id, streams) = self.send(
            &ChangeBatch {
                changes: Vec::new(),
                reload: true,
                reason: None,
            },
            Some(why),
            restart,
        );
        tracing::info!("{why}: full reload → {}", browsers(streams));
        id
    }

    /// Tell every tab that `origin` is down (for longer than a restart takes) or answers again,
    /// with the list of those down: an `upstream` event, which is no batch (no id, not replayed;
    /// a stream that opens while one is down gets the list after its `hello`).
    pub fn upstream_down(&self, origin: &str, down: bool) {
        let mut state = self.state();
        let listed = state.down.iter().position(|o| o == origin);
        match (listed, down) {
            (None, true) => state.down.push(origin.to_string()),
            (Some(at), false) => {
                state.down.remove(at);
            }
            _ => return,
        }
        let bytes = wire::upstream(&state.down);
        // Under the lock, as batches are: a stream subscribing now gets this or the list.
        let _ = self.inner.tx.send(Published { id: 0, bytes });
    }

    /// Publish a batch someone asked for (`POST /__hmr/reload` from a build tool), logged as
    /// theirs: the line a save gives sent the developer looking for a save.
    pub fn publish_asked(&self, batch: &ChangeBatch, by: &str) -> u64 {
        if batch.changes.is_empty() {
            return self.publish_reload(by);
        }
        let (id, streams) = self.send(batch, None, None);
        // Logged by URL, as the caller named them and the tabs match them: they are not files,
        // and a watched folder's name before one (`templates/abs/x.css`) named none that exists.
        let as_urls = ChangeBatch {
            changes: batch
                .changes
                .iter()
                .map(|c| Change {
                    path: c.url.clone(),
                    url: c.url.clone(),
                })
                .collect(),
            reload: batch.reload,
            reason: None,
        };
        log_batch(&as_urls, streams, &format!("{by}: "), |_| None);
        id
    }

    /// Publish without logging; returns the batch's id and the streams it went to.
    fn send(
        &self,
        batch: &ChangeBatch,
        reason: Option<&str>,
        restart: Option<u64>,
    ) -> (u64, usize) {
        let paths: Vec<String> = batch.changes.iter().map(|c| c.path.clone()).collect();
        let urls: Vec<String> = batch.changes.iter().map(|c| c.url.clone()).collect();
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        let bytes = wire::batch(&wire::Message {
            id,
            paths: &paths,
            urls: &urls,
            reload: batch.reload,
            reason,
            restart,
            served: self.all_served(batch),
            spa: self.inner.served.get().is_some_and(|(_, spa)| *spa),
        });
        let published = Published { id, bytes };
        if state.ring.len() == RING {
            state.ring.pop_front();
        }
        state.ring.push_back(published.clone());
        // Before the tabs hear of it: a page requested once a tab has the batch is past it.
        self.inner.latest.store(id, Ordering::Release);
        // No receivers is fine: nobody is looking.
        let streams = self.inner.tx.send(published).unwrap_or(0);
        drop(state);
        self.inner.batches.fetch_add(1, Ordering::Relaxed);
        (id, streams)
    }

    /// Publish every batch from the watcher until it stops.
    pub fn feed(&self, mut batches: mpsc::Receiver<ChangeBatch>) {
        let hub = self.clone();
        tokio::spawn(async move {
            while let Some(batch) = batches.recv().await {
                hub.publish(&batch);
            }
        });
    }

    /// A `reload` batch for a tab that cannot be caught up, carrying the latest id.
    fn reload_bytes(latest: u64) -> Bytes {
        wire::batch(&wire::Message {
            id: latest,
            paths: &[],
            urls: &[],
            reload: true,
            reason: Some("this page missed changes"),
            restart: None,
            served: false,
            spa: false,
        })
    }

    /// Open a stream for one tab. `last_event_id` is the tab's `Last-Event-ID` on reconnect.
    pub fn subscribe(&self, last_event_id: Option<&str>) -> Response<Body> {
        let (rx, catch_up, latest, down) = {
            let state = self.state();
            let rx = self.inner.tx.subscribe();
            let latest = state.next_id - 1;
            let catch_up: Vec<Bytes> = match last_event_id.map(|v| v.trim().parse::<u64>()) {
                None => Vec::new(),
                Some(Ok(last)) if last == latest => Vec::new(),
                Some(Ok(last))
                    if last < latest && state.ring.front().is_some_and(|p| p.id <= last + 1) =>
                {
                    state
                        .ring
                        .iter()
                        .filter(|p| p.id > last)
                        .map(|p| p.bytes.clone())
                        .collect()
                }
                // Gone from the ring, from another proxy run, or unreadable: start afresh.
                Some(_) => vec![Self::reload_bytes(latest)],
            };
            let down = (!state.down.is_empty()).then(|| wire::upstream(&state.down));
            (rx, catch_up, latest, down)
        };
        let mut first = wire::preamble(&self.inner.instance, latest).to_vec();
        for bytes in catch_up.into_iter().chain(down) {
            first.extend_from_slice(&bytes);
        }
        let body = stream::body(
            self.clone(),
            rx,
            Bytes::from(first),
            self.inner.heartbeat,
            self.inner.shutdown.clone(),
        );
        let mut res = Response::new(body);
        *res.status_mut() = StatusCode::OK;
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-transform"),
        );
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        res
    }

    /// The id of the newest batch (for a lagging tab's reload).
    fn latest(&self) -> u64 {
        self.inner.latest.load(Ordering::Acquire)
    }
}

/// `no browser`, `1 browser`, `2 browsers`.
/// `text` with its first letter upper-case (a hint's fix, said as a sentence of its own).
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

fn browsers(streams: usize) -> String {
    match streams {
        0 => "no browser".to_string(),
        1 => "1 browser".to_string(),
        n => format!("{n} browsers"),
    }
}

/// `3 files changed (css/site.css, …) → 2 browsers`: a stream is a browser's, not a tab's (its
/// tabs share one, see the client), so tabs are not what can be counted here.
/// `path` as a log line can hold it: a file name may hold a newline (which split the line in
/// two) or any other control character (a terminal's escape sequence), shown escaped.
fn printable(path: &str) -> Cow<'_, str> {
    if path.chars().any(char::is_control) {
        Cow::Owned(path.escape_debug().to_string())
    } else {
        Cow::Borrowed(path)
    }
}

/// One line for a batch; `by` (`POST /__hmr/reload: `) opens it when someone asked for it.
/// `folder` names each change's watched folder, when there are several: `app.py changed` did not
/// say which of two projects' it was.
fn log_batch(
    batch: &ChangeBatch,
    streams: usize,
    by: &str,
    folder: impl Fn(&Change) -> Option<String>,
) {
    let browsers = browsers(streams);
    let n = batch.changes.len();
    let mut names: Vec<Cow<'_, str>> = batch
        .changes
        .iter()
        .take(3)
        .map(|c| match folder(c) {
            Some(folder) => Cow::Owned(format!("{}/{}", printable(&folder), printable(&c.path))),
            None => printable(&c.path),
        })
        .collect();
    if n > 3 {
        names.push(Cow::Borrowed("…"));
    }
    // Too many to list on the wire: sent as a reload (see [`wire::LISTED_AT_MOST`]).
    let reload = batch.reload || n > wire::LISTED_AT_MOST;
    match (n, reload) {
        (0, _) => match &batch.reason {
            Some(why) => tracing::info!("{by}{why}: full reload → {browsers}"),
            None => tracing::info!("{by}full reload → {browsers}"),
        },
        (1, false) => tracing::info!("{by}{} changed → {browsers}", names.join("")),
        (_, false) => tracing::info!("{by}{n} files changed ({}) → {browsers}", names.join(", ")),
        (1, true) => tracing::info!("{by}{} changed, full reload → {browsers}", names.join("")),
        (_, true) => tracing::info!(
            "{by}{n} files changed ({}), full reload → {browsers}",
            names.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of `body`'s next frame.
    async fn next_frame(body: &mut Body) -> String {
        use http_body_util::BodyExt;
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a frame in time")
            .expect("a frame")
            .expect("no error");
        String::from_utf8(frame.into_data().expect("data").to_vec()).expect("UTF-8")
    }

    #[tokio::test]
    async fn the_tabs_hear_which_upstreams_are_down_and_a_new_one_hears_the_list() {
        let hub = Hub::new(Duration::from_secs(60), Shutdown::new());
        hub.upstream_down("http://a", true);
        hub.upstream_down("http://b", true);
        hub.upstream_down("http://a", true);
        hub.upstream_down("http://c", false);
        let mut tab = hub.subscribe(None).into_body();
        let first = next_frame(&mut tab).await;
        assert!(first.contains("event: hello\n"), "{first}");
        assert!(
            first.ends_with("event: upstream\ndata: {\"down\":[\"http://a\",\"http://b\"]}\n\n"),
            "{first}"
        );
        hub.upstream_down("http://a", false);
        let told = next_frame(&mut tab).await;
        assert_eq!(told, "event: upstream\ndata: {\"down\":[\"http://b\"]}\n\n");
        hub.upstream_down("http://b", false);
        let told = next_frame(&mut tab).await;
        assert_eq!(told, "event: upstream\ndata: {\"down\":[]}\n\n");
        // None down: a new stream opens with its hello alone.
        let mut other = hub.subscribe(None).into_body();
        let first = next_frame(&mut other).await;
        assert!(
            first.ends_with("\n\n") && !first.contains("upstream"),
            "{first}"
        );
    }

    #[test]
    fn paths_in_log_lines_stay_on_their_line() {
        assert_eq!(printable("css/site.css"), "css/site.css");
        assert_eq!(printable("café/ü.css"), "café/ü.css");
        assert_eq!(printable("new\nline.js"), "new\\nline.js");
        assert_eq!(printable("a\u{1b}[31mred"), "a\\u{1b}[31mred");
    }
}
