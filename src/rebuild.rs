//! Saves the upstream restarts for: which kinds of file a restart of the dev server follows, and
//! holding a batch of only such files until that restart, so that the tabs reload once, onto the
//! new server. Without it a `.py` save under Django's `runserver`, or a `.go` save under `air`,
//! reloaded every tab two or three times: the save's own reload reached the old server (or the
//! gap while it restarted), then the built binary, then the restart's reload came.
//!
//! Owns [`Rebuilds`]: a score for each kind (a file's extension, or its name when it has none:
//! a built binary such as `tmp/main`), raised when a restart came within [`LEARN_WINDOW`] of a
//! batch of that kind and lowered when none did, with the time the restart took; and the batch
//! held now. A batch is held only while a tab listens (the restart is looked for only then) and
//! when every file in it is of a kind whose score says a restart follows; for twice the longest
//! time such a restart took plus a second, at most [`HOLD_MAX`]. Then it goes out as it came (a
//! build that failed: the page shows what the old server serves) and counts against its kinds,
//! so a kind whose saves stop being followed by restarts (the rebuild tool stopped) is soon
//! published at once again, and one that a restart followed by chance costs one late reload.
//! Kinds the browser applies in place (styles, scripts, images, source maps) are never held: a
//! hot swap must not wait for a reload.
//!
//! It does not see restarts (`lib` tells it, from `proxy::health`), publish (`sse::Hub`) or read
//! the clock: every call is given the time, so its tests run without waiting.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::sse::Hub;
use crate::watch::ChangeBatch;

/// How long after a batch a restart is taken as its rebuild: longer than a Go or Rust
/// incremental build and a Python reloader's start, short enough that a restart by hand an
/// hour later teaches nothing.
const LEARN_WINDOW: Duration = Duration::from_secs(15);

/// The longest a batch is held for its restart: past that the reload goes out anyway.
const HOLD_MAX: Duration = Duration::from_secs(20);

/// The bounds of a kind's score: a few saves followed by a restart outweigh one build that
/// failed, and a few without one outweigh any number of earlier ones (a rebuild tool stopped).
const SCORE_MAX: i8 = 3;
const SCORE_MIN: i8 = -3;

/// What a miss (no restart after the batch) takes off a kind's score: as much as a restart adds,
/// so a compile error fixed in two tries does not unlearn `.rs` (each failed build was a miss),
/// and three misses after many restarts publish the kind at once again.
const MISS_COST: i8 = 1;

/// Kinds the client applies without a reload (a stylesheet swapped, an image refreshed) or
/// ignores (a source map): holding them would turn a hot swap into a reload seconds later, so
/// they are neither learned nor held.
const IN_PLACE: &[&str] = &[
    "css", "map", "png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico",
];

/// Kinds that are a browser's module or a server's code alike (`public/app.js`, `server.js`
/// under nodemon): learned file by file, so a Node server's restarts teach nothing about the
/// page's own modules, which are swapped in place.
const PER_FILE: &[&str] = &["js", "mjs", "cjs"];

/// How long a held batch waits for an upstream that went down after it (a restart under way, or
/// a server that cannot start: a syntax error) before it goes out anyway.
const HOLD_WHILE_DOWN: Duration = Duration::from_secs(30);

/// What happened to a batch offered to [`Rebuilds::offer`].
#[derive(Debug)]
pub enum Offer {
    /// Publish it now.
    Publish(ChangeBatch),
    /// Held until the restart, or until this instant at the latest.
    Held(Instant),
}

/// The kinds a restart follows, and the batch held for one. Shared by the task that feeds the
/// watcher's batches to the hub and the one that sees the upstream restart.
#[derive(Clone, Default)]
pub struct Rebuilds(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    kinds: HashMap<String, Kind>,
    /// Batches published with learnable kinds within [`LEARN_WINDOW`] (oldest first), not yet
    /// answered by a restart.
    recent: Vec<Recent>,
    held: Option<Held>,
}

#[derive(Default)]
struct Kind {
    score: i8,
    /// How long the last restart after a save of this kind took.
    took: Duration,
}

struct Recent {
    at: Instant,
    kinds: Vec<String>,
    /// Counted as a miss already: held, and its time ran out.
    missed: bool,
}

struct Held {
    batch: ChangeBatch,
    since: Instant,
    until: Instant,
    /// The upstream was down when the time ran out: the restart is under way, or failed.
    down: bool,
}

impl Rebuilds {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A batch from the watcher at `now`, with tabs listening or not.
    pub fn offer(&self, batch: ChangeBatch, now: Instant, listening: bool) -> Offer {
        let mut state = self.state();
        state.age(now);
        let kinds = kinds(&batch);
        let holdable = listening
            && !batch.reload
            && !batch.changes.is_empty()
            && kinds.iter().all(|kind| state.follows(kind));
        if !holdable {
            let learnable: Vec<String> = kinds.into_iter().filter(|k| !in_place(k)).collect();
            if !learnable.is_empty() && !batch.reload {
                state.recent.push(Recent {
                    at: now,
                    kinds: learnable,
                    missed: false,
                });
            }
            return Offer::Publish(batch);
        }
        let wait = kinds
            .iter()
            .filter_map(|kind| state.kinds.get(kind))
            .map(|kind| kind.took * 2 + Duration::from_secs(1))
            .max()
            .unwrap_or(HOLD_MAX)
            .min(HOLD_MAX);
        let until = now + wait;
        match &mut state.held {
            Some(held) => {
                for change in batch.changes {
                    if !held.batch.changes.contains(&change) {
                        held.batch.changes.push(change);
                    }
                }
                // Later saves wait for their own restart too, but the batch that started the
                // wait goes out HOLD_MAX after it at the latest: a save every few seconds (a
                // build writing all the time) held it until the next restart, a minute later.
                held.until = held.until.max(until).min(held.since + HOLD_MAX);
                Offer::Held(held.until)
            }
            None => {
                state.held = Some(Held {
                    batch,
                    since: now,
                    until,
                    down: false,
                });
                Offer::Held(until)
            }
        }
    }

    /// The held batch, once its time is up at `now` with no restart come: it goes out (and
    /// whether the upstream was down then), counted against its kinds, and stays a candidate for
    /// a restart that comes later still (a slow build). With the upstream `down` at its time,
    /// it waits on (a restart under way) for up to [`HOLD_WHILE_DOWN`], and is no miss: the
    /// server did stop (a server that cannot start, a syntax error, is no reason to forget).
    pub fn expired(&self, now: Instant, down: bool) -> Option<(ChangeBatch, bool)> {
        let mut state = self.state();
        let held = state.held.as_mut()?;
        if held.until > now {
            return None;
        }
        let longest = held.since + HOLD_WHILE_DOWN;
        if down && now < longest {
            held.down = true;
            held.until = (now + Duration::from_millis(500)).min(longest);
            return None;
        }
        let held = state.held.take()?;
        let kinds = kinds(&held.batch);
        if !held.down {
            for kind in &kinds {
                state.missed(kind);
            }
        }
        state.recent.push(Recent {
            at: held.since,
            kinds,
            missed: true,
        });
        Some((held.batch, held.down))
    }

    /// When the held batch goes out if no restart comes first.
    pub fn deadline(&self) -> Option<Instant> {
        self.state().held.as_ref().map(|held| held.until)
    }

    /// The upstream restarted at `now`: the kinds of the batches before it learn that a restart
    /// follows them (and how long it took), and the held batch, if any, is returned: the
    /// restart's reload is its reload.
    pub fn restarted(&self, now: Instant) -> Option<ChangeBatch> {
        let mut state = self.state();
        state.age(now);
        let mut answered = std::mem::take(&mut state.recent);
        let held = state.held.take();
        if let Some(held) = &held {
            answered.push(Recent {
                at: held.since,
                kinds: kinds(&held.batch),
                missed: false,
            });
        }
        for recent in answered {
            // A batch whose time ran out was followed after all, later: the miss is undone.
            let gain = if recent.missed { MISS_COST + 1 } else { 1 };
            for kind in recent.kinds {
                let entry = state.kinds.entry(kind).or_default();
                entry.score = (entry.score + gain).min(SCORE_MAX);
                entry.took = now.saturating_duration_since(recent.at);
            }
        }
        held.map(|held| held.batch)
    }

    /// The files the held batch is for (`/__hmr/status`).
    pub fn held_paths(&self) -> Vec<String> {
        self.state().held.as_ref().map_or_else(Vec::new, |held| {
            held.batch.changes.iter().map(|c| c.path.clone()).collect()
        })
    }

    /// Publish every batch from the watcher until it stops, holding those a restart follows;
    /// `down` says whether an upstream is down now.
    pub fn feed(
        &self,
        mut batches: mpsc::Receiver<ChangeBatch>,
        hub: Hub,
        down: impl Fn() -> bool + Send + 'static,
    ) {
        let rebuilds = self.clone();
        tokio::spawn(async move {
            loop {
                let deadline = rebuilds.deadline();
                let expiry = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    batch = batches.recv() => {
                        let Some(batch) = batch else { break };
                        let listening = hub.clients() > 0;
                        let said = what(&batch);
                        let holding = deadline.is_some();
                        match rebuilds.offer(batch, Instant::now(), listening) {
                            Offer::Publish(batch) => {
                                hub.publish(&batch);
                            }
                            Offer::Held(_) if holding => tracing::info!(
                                "{said} changed too: waiting for the same restart"
                            ),
                            Offer::Held(until) => tracing::info!(
                                "{said} changed → the tabs reload when the upstream restarts, as \
                                 it did after such saves (waiting up to {:.1} s)",
                                until.saturating_duration_since(Instant::now()).as_secs_f32()
                            ),
                        }
                    }
                    () = expiry => {
                        if let Some((batch, down)) = rebuilds.expired(Instant::now(), down()) {
                            if down {
                                tracing::warn!(
                                    "the upstream is still down after {} changed (an error at \
                                     its start? see its terminal): reloading now",
                                    what(&batch)
                                );
                            } else {
                                tracing::info!(
                                    "the upstream did not restart after {} changed (a build \
                                     that failed?): reloading now",
                                    what(&batch)
                                );
                            }
                            hub.publish(&batch);
                        }
                    }
                }
            }
        });
    }
}

impl State {
    /// Whether a restart follows saves of `kind`.
    fn follows(&self, kind: &str) -> bool {
        !in_place(kind) && self.kinds.get(kind).is_some_and(|k| k.score > 0)
    }

    fn missed(&mut self, kind: &str) {
        let entry = self.kinds.entry(kind.to_owned()).or_default();
        entry.score = (entry.score - MISS_COST).max(SCORE_MIN);
    }

    /// Batches no restart answered within the window are misses.
    fn age(&mut self, now: Instant) {
        let (old, young): (Vec<_>, Vec<_>) = std::mem::take(&mut self.recent)
            .into_iter()
            .partition(|recent| now.saturating_duration_since(recent.at) > LEARN_WINDOW);
        self.recent = young;
        for recent in old.into_iter().filter(|recent| !recent.missed) {
            for kind in recent.kinds {
                self.missed(&kind);
            }
        }
    }
}

/// The distinct kinds of a batch's files, in order.
fn kinds(batch: &ChangeBatch) -> Vec<String> {
    let mut kinds: Vec<String> = Vec::new();
    for change in &batch.changes {
        let kind = kind(&change.path);
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    kinds
}

/// A file's kind: its extension, lower-cased, or its name when it has none (`tmp/main`, a built
/// binary; `Dockerfile`); for a script ([`PER_FILE`]), its path.
fn kind(path: &str) -> String {
    let file = Path::new(path);
    match file.extension() {
        Some(ext) => {
            let ext = ext.to_string_lossy().to_ascii_lowercase();
            if PER_FILE.contains(&ext.as_str()) {
                path.to_owned()
            } else {
                ext
            }
        }
        None => file
            .file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned()),
    }
}

fn in_place(kind: &str) -> bool {
    IN_PLACE.contains(&kind)
}

/// `app.py`, or `app.py and 2 more`, for log lines and reload reasons.
pub fn what(batch: &ChangeBatch) -> String {
    let first = batch.changes.first().map_or("", |c| c.path.as_str());
    let first: std::borrow::Cow<'_, str> = if first.chars().any(char::is_control) {
        first.escape_debug().to_string().into()
    } else {
        first.into()
    };
    match batch.changes.len() {
        0 | 1 => first.to_string(),
        n => format!("{first} and {} more", n - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(paths: &[&str]) -> ChangeBatch {
        ChangeBatch::of(paths)
    }

    fn secs(s: f32) -> Duration {
        Duration::from_secs_f32(s)
    }

    fn published(offer: Offer) -> ChangeBatch {
        match offer {
            Offer::Publish(batch) => batch,
            Offer::Held(until) => panic!("held until {until:?}"),
        }
    }

    fn held(offer: Offer) -> Instant {
        match offer {
            Offer::Held(until) => until,
            Offer::Publish(batch) => panic!("published {batch:?}"),
        }
    }

    /// A save (published: no tab listens), then a restart `took` later: the kind is learned.
    fn learn(r: &Rebuilds, path: &str, at: Instant, took: Duration) {
        published(r.offer(batch(&[path]), at, false));
        assert!(r.restarted(at + took).is_none());
    }

    #[test]
    fn a_kind_a_restart_followed_is_held_until_the_next_restart() {
        let r = Rebuilds::default();
        let t = Instant::now();
        learn(&r, "app.py", t, secs(1.5));
        let until = held(r.offer(batch(&["blog/views.py"]), t + secs(10.0), true));
        assert_eq!(
            until,
            t + secs(10.0) + secs(4.0),
            "twice 1.5 s, and a second"
        );
        assert_eq!(r.held_paths(), ["blog/views.py"]);
        assert!(r.expired(t + secs(12.0), false).is_none(), "not yet");
        let batch = r.restarted(t + secs(11.0)).expect("the held batch");
        assert_eq!(batch.changes[0].path, "blog/views.py");
        assert!(r.deadline().is_none());
        assert!(r.held_paths().is_empty());
    }

    #[test]
    fn batches_that_keep_coming_wait_with_the_held_one_for_hold_max_at_most() {
        let r = Rebuilds::default();
        let t = Instant::now();
        learn(&r, "main.go", t, secs(2.0));
        let t = t + secs(20.0);
        let first = held(r.offer(batch(&["main.go"]), t, true));
        assert_eq!(first, t + secs(5.0));
        // One more save: it waits for its restart too.
        assert_eq!(
            held(r.offer(batch(&["util.go"]), t + secs(1.0), true)),
            t + secs(6.0)
        );
        // Saves every second, for longer than the batch may wait.
        for i in 2..40 {
            let until = held(r.offer(batch(&["util.go"]), t + secs(i as f32), true));
            assert!(until <= t + HOLD_MAX, "{:?}", until - t);
        }
        assert_eq!(r.deadline(), Some(t + HOLD_MAX));
        let (batch, _) = r.expired(t + HOLD_MAX, false).expect("out");
        assert_eq!(batch.changes.len(), 2);
    }

    #[test]
    fn nothing_is_held_at_first_or_with_no_tab_listening() {
        let r = Rebuilds::default();
        let t = Instant::now();
        published(r.offer(batch(&["main.go"]), t, true));
        assert!(r.restarted(t + secs(2.0)).is_none());
        published(r.offer(batch(&["main.go"]), t + secs(5.0), false));
    }

    #[test]
    fn a_batch_with_a_kind_no_restart_follows_goes_out_at_once() {
        let r = Rebuilds::default();
        let t = Instant::now();
        learn(&r, "main.go", t, secs(2.0));
        published(r.offer(
            batch(&["main.go", "templates/page.html"]),
            t + secs(20.0),
            true,
        ));
        published(r.offer(batch(&["notes"]), t + secs(40.0), true));
    }

    #[test]
    fn styles_are_never_held_and_scripts_are_learned_file_by_file() {
        let r = Rebuilds::default();
        let t = Instant::now();
        // nodemon restarts a Node server on its .js saves; a stylesheet saved just before.
        for i in 0..3 {
            learn(&r, "server.js", t + secs(20.0 * i as f32), secs(1.0));
            learn(&r, "site.css", t + secs(20.0 * i as f32 + 10.0), secs(1.0));
        }
        held(r.offer(batch(&["server.js"]), t + secs(100.0), true));
        assert!(r.restarted(t + secs(101.0)).is_some());
        // The page's own module is not the server's: swapped in place, at once.
        published(r.offer(batch(&["public/app.js"]), t + secs(120.0), true));
        published(r.offer(batch(&["site.css"]), t + secs(140.0), true));
    }

    #[test]
    fn a_chain_of_batches_before_a_restart_is_learned_whole() {
        // `.templ` saved, `templ generate` writes `_templ.go`, air builds `tmp/main` and restarts.
        let r = Rebuilds::default();
        let t = Instant::now();
        published(r.offer(batch(&["page.templ"]), t, true));
        published(r.offer(batch(&["page_templ.go"]), t + secs(0.1), true));
        published(r.offer(batch(&["tmp/main"]), t + secs(2.0), true));
        assert!(r.restarted(t + secs(2.2)).is_none());
        let t = t + secs(30.0);
        held(r.offer(batch(&["page.templ"]), t, true));
        held(r.offer(batch(&["page_templ.go"]), t + secs(0.1), true));
        held(r.offer(batch(&["tmp/main"]), t + secs(2.0), true));
        let batch = r.restarted(t + secs(2.2)).expect("held");
        let paths: Vec<_> = batch.changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["page.templ", "page_templ.go", "tmp/main"]);
    }

    #[test]
    fn a_batch_no_restart_answers_goes_out_at_its_time_and_counts_against_its_kind() {
        let r = Rebuilds::default();
        let t = Instant::now();
        for i in 0..3 {
            learn(&r, "main.go", t + secs(20.0 * i as f32), secs(2.0));
        }
        let t = t + secs(60.0);
        // A build that failed: no restart.
        let until = held(r.offer(batch(&["main.go"]), t, true));
        assert_eq!(r.deadline(), Some(until));
        assert!(r.expired(until - secs(0.1), false).is_none());
        let (batch, down) = r.expired(until, false).expect("out at its time");
        assert_eq!((batch.changes[0].path.as_str(), down), ("main.go", false));
        // A compile error fixed in three tries is still held for; the third failure tips it.
        for i in 1..3 {
            let until = held(r.offer(batch.clone(), t + secs(20.0 * i as f32), true));
            assert!(r.expired(until, false).is_some());
        }
        published(r.offer(batch.clone(), t + secs(80.0), true));
        // A restart after it teaches it again.
        assert!(r.restarted(t + secs(82.0)).is_none());
        held(r.offer(batch, t + secs(100.0), true));
    }

    #[test]
    fn a_restart_after_a_save_by_chance_costs_one_late_reload() {
        // A Flask template saved, then a `.py` a few seconds later: the restart is the `.py`'s.
        let r = Rebuilds::default();
        let t = Instant::now();
        published(r.offer(batch(&["templates/page.html"]), t, true));
        published(r.offer(batch(&["app.py"]), t + secs(5.0), true));
        assert!(r.restarted(t + secs(6.0)).is_none());
        let until = held(r.offer(batch(&["templates/page.html"]), t + secs(30.0), true));
        assert!(r.expired(until, false).is_some());
        published(r.offer(batch(&["templates/page.html"]), t + secs(60.0), true));
        held(r.offer(batch(&["app.py"]), t + secs(90.0), true));
    }

    #[test]
    fn a_slow_build_teaches_a_longer_wait() {
        let r = Rebuilds::default();
        let t = Instant::now();
        learn(&r, "src/main.rs", t, secs(2.0));
        let until = held(r.offer(batch(&["src/main.rs"]), t + secs(20.0), true));
        assert!(r.expired(until, false).is_some());
        // The restart came after all, 9 s after the save.
        assert!(r.restarted(t + secs(29.0)).is_none());
        let until = held(r.offer(batch(&["src/main.rs"]), t + secs(40.0), true));
        assert_eq!(until, t + secs(40.0) + secs(19.0));
        assert!(r.expired(until, false).is_some());
        // Never longer than the cap.
        learn(&r, "src/lib.rs", t + secs(60.0), secs(14.0));
        let until = held(r.offer(batch(&["src/lib.rs"]), t + secs(80.0), true));
        assert_eq!(until, t + secs(80.0) + HOLD_MAX);
    }

    /// The upstream went down after the save (a restart under way, slower than the last): the
    /// batch waits for it to be back; a server that cannot start (a syntax error) gets the
    /// reload after 30 s, and its kind is not forgotten for it.
    #[test]
    fn a_batch_waits_on_while_the_upstream_is_down() {
        let r = Rebuilds::default();
        let t = Instant::now();
        learn(&r, "views.py", t, secs(1.0));
        let until = held(r.offer(batch(&["views.py"]), t + secs(20.0), true));
        assert!(r.expired(until, true).is_none(), "down: waits on");
        let later = r.deadline().expect("still held");
        assert!(later > until, "{later:?}");
        assert!(r.restarted(later).is_some(), "back: the restart's reload");
        let until = held(r.offer(batch(&["views.py"]), t + secs(40.0), true));
        let mut now = until;
        while r.expired(now, true).is_none() {
            now = r.deadline().expect("still held");
        }
        assert_eq!(now, t + secs(40.0) + HOLD_WHILE_DOWN);
        held(r.offer(batch(&["views.py"]), t + secs(80.0), true));
    }

    #[test]
    fn batches_held_meanwhile_are_merged() {
        let r = Rebuilds::default();
        let t = Instant::now();
        learn(&r, "app.py", t, secs(1.0));
        held(r.offer(batch(&["app.py"]), t + secs(20.0), true));
        held(r.offer(batch(&["app.py", "models.py"]), t + secs(20.5), true));
        assert_eq!(r.held_paths(), ["app.py", "models.py"]);
        assert_eq!(r.deadline(), Some(t + secs(23.5)));
    }

    #[test]
    fn kinds_are_extensions_or_names() {
        assert_eq!(kind("a/b/App.PY"), "py");
        assert_eq!(kind("tmp/main"), "main");
        assert_eq!(kind("Dockerfile"), "Dockerfile");
        assert_eq!(kind(".env"), ".env");
        assert_eq!(what(&batch(&["a.py", "b.py", "c.py"])), "a.py and 2 more");
    }
}
