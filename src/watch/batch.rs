//! Turning a burst of file-system events into one batch.
//!
//! Owns the batching window and the pending set. A batch opens with the first event, stays open
//! while events keep arriving within the quiet interval of each other, and closes when the
//! quiet interval passes or the window cap (measured from the first event) runs out, so a
//! constant stream still flushes. The quiet interval is the debounce while the batch holds what
//! one save touches; once it holds more paths than that ([`BULK_PATHS`]: a checkout, a formatter,
//! a build) it is the longer [`bulk_quiet`], since such a writer pauses longer than 10 ms between
//! files (a busy machine, a formatter awaiting each file) and each part went out as a batch of its
//! own, every open page reloading two or three times. A burst that starts soon after the last
//! batch went out (a build writing its output file by file, tens of milliseconds apart) waits for
//! the longer interval ([`busy_quiet`]) from its first event: a build writing 60 files 30 ms apart
//! reloaded a tab 36 times in 2.5 s. A bulk batch is capped later ([`bulk_cap`]) than one save's
//! ([`window_cap`]), and one that follows a batch of hundreds closely is the same storm and waits
//! for a longer quiet ([`STORM_QUIET`]): a folder of 20,000 files deleted over 9 s went out as 11
//! batches, each a reload of every tab onto a half-deleted tree. A save after a pause still goes
//! out after the plain debounce. Paths are de-duplicated in arrival order; a file that was both
//! created and gone again within one batch (an editor's temp file in an atomic save) is dropped.
//! It knows nothing of notify or of the event stream.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// The longest a batch stays open, as a multiple of the debounce interval, with a floor: long
/// enough for a `git checkout` of hundreds of files to land in one batch even on a loaded machine
/// (measured: 550 ms for 500 files at load 23, which a 300 ms cap split in three), short enough
/// that a file written continuously still reaches the browser every second.
const CAP_FACTOR: u32 = 10;
const CAP_FLOOR: Duration = Duration::from_secs(1);

/// The least a batch holding a bulk write ([`BULK_PATHS`] paths or more) stays open for, while it
/// goes on: a storm of thousands of files (a folder deleted or unpacked, a branch switched, a
/// build) that outlasts the 1 s cap went out once a second, and each batch reloaded every open
/// tab onto a tree half written (`rm -rf` of 20,000 files took 9 s on a loaded machine: 11
/// reloads). Five seconds: at most one reload that often while such a writer goes on, and one
/// at its end; a writer that never stops (a generator in a loop) still reaches the page.
const BULK_CAP_FLOOR: Duration = Duration::from_secs(5);

/// The quiet interval of a bulk batch that opens within this long of the last bulk batch sent:
/// the same storm, paused (a loaded machine stalled `rm` for longer than the bulk quiet, a poll
/// pass came late) rather than ended. Its end then waits this long, once, and the pause is no
/// reload of its own. A save alone after a bulk write still goes out after the plain debounce.
pub const STORM_QUIET: Duration = Duration::from_secs(1);

/// Distinct paths from which a batch that went out starts a storm ([`STORM_QUIET`]): a slice of a
/// folder deleted or unpacked, a site generator's whole output. Not a bundler's few files after
/// each save (a bundle, its sheet, their maps): with saves under a second apart (an editor's
/// auto-save) each such batch waited a second for a quiet that never came, and the styles
/// followed the typing by up to the bulk cap.
const STORM_PATHS: usize = 100;

/// The quiet interval that ends a burst starting within this long of the last batch sent, and a
/// batch holding a bulk write ([`bulk_quiet`]): 100 ms, or the debounce when that is longer (a
/// debounce raised that far already folds a build's writes, and ten of it swallowed the whole
/// window). `None` with no debounce at all (`--debounce 0` asks for every event at once).
pub fn busy_quiet(debounce: Duration) -> Option<Duration> {
    (!debounce.is_zero()).then(|| debounce.max(BUSY_QUIET))
}

/// Longer than the pauses of a `git checkout` or a `prettier --write` on a loaded machine (a
/// 700-file checkout on two busy cores split at a 10 ms quiet in 5 runs of 8, and was whole in all
/// six at 50 ms), short enough for the page to follow at once.
const BUSY_QUIET: Duration = Duration::from_millis(100);

/// The quiet interval that ends a batch of [`STORM_PATHS`] paths or more (with a debounce): a
/// site generator writing hundreds of pages pauses midway on a loaded machine (Eleventy: gaps of
/// 100–300 ms in half of its 654-file builds at load 6), and each part went out as a batch, every
/// tab reloaded onto a half-written site and again 1 s later. browser-sync waits 500 ms after
/// any change; a batch this large is a reload whose page load takes longer than the wait.
const LARGE_QUIET: Duration = Duration::from_millis(400);

/// Distinct paths from which a batch is a bulk write rather than one save, and waits for the
/// longer quiet interval. One save touches at most two: the file, and the copy or temp file of an
/// atomic save (`app.css.Ab12Cd`, `sedAb12Cd`) when that is seen before its rename; every other
/// file of an editor's save (swap, backup, `4913`, JetBrains' `___jb_tmp___`) is ignored before it
/// reaches a batch. So a single save keeps the debounce's latency, and three files are a tool at
/// work (a "save all" of three files waits 100 ms: it is one too).
pub const BULK_PATHS: usize = 3;

/// The quiet interval of a batch that holds a bulk write: [`busy_quiet`], or in poll mode the time
/// one pass takes to come round (`poll_round`, measured by the poller) when that is longer and
/// under the bulk cap. Polling sees a burst in slices, one a pass, 250 ms or more apart: a
/// checkout that spanned a pass went out as two or three batches, and a deletion that spanned
/// twenty as twenty. A pass longer than the cap is not waited for: the batch would go out at the
/// cap anyway, without the next slice. `None` with no debounce.
pub fn bulk_quiet(debounce: Duration, poll_round: Option<Duration>) -> Option<Duration> {
    let busy = busy_quiet(debounce)?;
    Some(match poll_round {
        Some(round) if round > busy && round < bulk_cap(debounce) => round,
        _ => busy,
    })
}

/// When one batch ends: its quiet interval and its cap, `plain` while it holds what one save
/// touches, `bulk` once it holds [`BULK_PATHS`] paths or more, `large` from [`STORM_PATHS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub plain: Duration,
    pub bulk: Duration,
    pub large: Duration,
    pub cap: Duration,
    pub bulk_cap: Duration,
}

impl Window {
    /// The window of a batch opened now, for `debounce`: quiet `plain` at first, `bulk` (never
    /// shorter) from [`bulk_quiet`] once bulk, and at least [`STORM_QUIET`] then if it opened
    /// within that of the last bulk batch sent (`storm`), and [`LARGE_QUIET`] once large;
    /// capped at [`window_cap`], and at [`bulk_cap`] once bulk.
    pub fn new(debounce: Duration, plain: Duration, bulk: Option<Duration>, storm: bool) -> Window {
        let (bulk, large) = match bulk {
            Some(bulk) => {
                let bulk = if storm { bulk.max(STORM_QUIET) } else { bulk };
                (bulk, bulk.max(LARGE_QUIET))
            }
            None => (plain, plain),
        };
        Window {
            plain,
            bulk: bulk.max(plain),
            large: large.max(plain),
            cap: window_cap(debounce),
            bulk_cap: bulk_cap(debounce),
        }
    }

    /// The quiet interval of a batch holding `paths` distinct paths.
    pub fn quiet(self, paths: usize) -> Duration {
        if paths >= STORM_PATHS {
            self.large
        } else if paths >= BULK_PATHS {
            self.bulk
        } else {
            self.plain
        }
    }

    /// The cap of a batch holding `paths` distinct paths, from its first event.
    pub fn cap(self, paths: usize) -> Duration {
        if paths >= BULK_PATHS {
            self.bulk_cap
        } else {
            self.cap
        }
    }
}

/// The batch window cap for a debounce interval.
pub fn window_cap(debounce: Duration) -> Duration {
    (debounce * CAP_FACTOR).max(CAP_FLOOR)
}

/// The window cap of a batch holding a bulk write: [`BULK_CAP_FLOOR`], or the plain cap when a
/// long debounce makes that longer.
pub fn bulk_cap(debounce: Duration) -> Duration {
    window_cap(debounce).max(BULK_CAP_FLOOR)
}

/// What the batches sent so far say of the next one's window: how soon after them it opens.
#[derive(Debug, Default)]
pub struct Recent {
    /// When the last batch went out: a burst that follows it closely waits longer
    /// ([`busy_quiet`]).
    sent: Option<Instant>,
    /// When the last batch of [`STORM_PATHS`] paths or more went out: a bulk batch that follows
    /// it closely is the same storm ([`STORM_QUIET`]).
    bulk_sent: Option<Instant>,
}

impl Recent {
    /// The window of a batch that opens at `opened`; `poll_round` is the poller's pass as it is
    /// now, when polling (see [`bulk_quiet`]).
    pub fn window(
        &self,
        debounce: Duration,
        opened: Instant,
        poll_round: Option<Duration>,
    ) -> Window {
        let within = |at: Option<Instant>, span: Duration| {
            at.is_some_and(|at| opened.duration_since(at) < span)
        };
        let plain = match busy_quiet(debounce) {
            Some(busy) if within(self.sent, busy) => busy,
            _ => debounce,
        };
        let storm = within(self.bulk_sent, STORM_QUIET);
        Window::new(debounce, plain, bulk_quiet(debounce, poll_round), storm)
    }

    /// A batch of `paths` distinct paths went out at `now`.
    pub fn sent(&mut self, paths: usize, now: Instant) {
        self.sent = Some(now);
        if paths >= STORM_PATHS {
            self.bulk_sent = Some(now);
        }
    }
}

/// Receive the rest of a burst that began with an event already taken, into a batch of `paths`
/// distinct paths so far: call `absorb` for each event until the quiet interval passes without one
/// or the cap has passed since `opened`, both as `window` gives them for the paths the batch
/// holds (`absorb` returns how many). Returns false when the channel closed (the watcher is gone).
pub async fn collect<T>(
    rx: &mut mpsc::Receiver<T>,
    opened: Instant,
    window: Window,
    mut paths: usize,
    mut absorb: impl FnMut(T) -> usize,
) -> bool {
    loop {
        let left = window.cap(paths).saturating_sub(opened.elapsed());
        let wait = window.quiet(paths).min(left);
        if wait.is_zero() {
            return true;
        }
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(event)) => paths = absorb(event),
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

/// What a path went through within one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Created (or renamed into place) during this batch.
    Created,
    /// Changed or removed, existing before the batch.
    Changed,
}

/// The paths of the open batch.
#[derive(Debug, Default)]
pub struct Pending {
    order: Vec<PathBuf>,
    seen: HashMap<PathBuf, Seen>,
    /// Paths among `order` that were watched directories when they went.
    gone_dirs: HashSet<PathBuf>,
    /// Those of them that never held a file: nothing served was in them. Kept (not left out at
    /// once) so that the second event of the same removal, from the parent's watch, finds the
    /// path taken and is not reported as a file.
    empty_dirs: HashSet<PathBuf>,
    /// Something was lost or unknowable (queue overflow, rescan, removed root): reload fully.
    pub reload: bool,
    /// What that was, for the tabs' consoles (the first, when several).
    pub reason: Option<String>,
}

impl Pending {
    /// Reload fully, for `why` (`the file watcher lost events`).
    pub fn reload_for(&mut self, why: String) {
        self.reload = true;
        self.reason.get_or_insert(why);
    }

    pub fn add(&mut self, path: PathBuf, how: Seen) {
        match self.seen.get_mut(&path) {
            Some(_) => {} // first sighting decides whether it was born in this batch
            None => {
                self.seen.insert(path.clone(), how);
                self.order.push(path);
            }
        }
    }

    /// A directory that went (deleted, moved away). It stays in the batch only when none of its
    /// files is there: `rm -rf a` is reported as the files it held, but a folder moved out of
    /// the tree is only its own name, and a page using its files must still hear of it. One
    /// that never `held_files` (a compiler's scratch folder) leaves no path at all.
    pub fn add_gone_dir(&mut self, path: PathBuf, held_files: bool) {
        if !held_files {
            self.empty_dirs.insert(path.clone());
        }
        self.gone_dirs.insert(path.clone());
        self.add(path, Seen::Changed);
    }

    /// Distinct paths so far (a temp file that will drop out at [`Self::finish`] included).
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty() && !self.reload
    }

    /// The batch's paths in arrival order, minus files born and gone within it and minus
    /// directories (their files are reported themselves; a gone one whose files are not, see
    /// [`Self::add_gone_dir`], stays). `exists` answers for the file system at flush time:
    /// `Some(is_dir)` or `None` when gone.
    pub fn finish(self, exists: impl Fn(&PathBuf) -> Option<bool>) -> (Vec<PathBuf>, bool) {
        let seen = self.seen;
        let gone_dirs = self.gone_dirs;
        let empty_dirs = self.empty_dirs;
        // Every folder above a path of the batch, once: a `rm -rf` of thousands of files and
        // folders is one batch, and each folder asked of every path was quadratic.
        let mut above: HashSet<&Path> = HashSet::new();
        if !gone_dirs.is_empty() {
            for path in &self.order {
                for dir in path.ancestors().skip(1) {
                    if !above.insert(dir) {
                        break; // and the ones above it, from an earlier path
                    }
                }
            }
        }
        let holds_a_reported_file = |dir: &PathBuf| above.contains(dir.as_path());
        let paths = self
            .order
            .iter()
            .filter(|path| {
                !matches!(
                    (exists(path), seen.get(*path)),
                    (None, Some(Seen::Created)) | (Some(true), _)
                )
            })
            .filter(|path| !(gone_dirs.contains(*path) && holds_a_reported_file(path)))
            // (unless a file of that name is there now)
            .filter(|path| !(empty_dirs.contains(*path) && exists(path) != Some(false)))
            .cloned()
            .collect();
        (paths, self.reload)
    }
}

/// Helper for tests of [`collect`]: send events, each a path's number after a gap in
/// milliseconds, on a paused clock.
#[cfg(test)]
async fn feed(tx: mpsc::Sender<u32>, events: Vec<(u64, u32)>) {
    for (gap, path) in events {
        tokio::time::sleep(Duration::from_millis(gap)).await;
        if tx.send(path).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events with `gaps_ms` before each, each of a path of its own.
    fn distinct(gaps_ms: Vec<u64>) -> Vec<(u64, u32)> {
        gaps_ms.into_iter().zip(0..).collect()
    }

    async fn batches(gaps_ms: Vec<u64>, debounce_ms: u64) -> Vec<Vec<u32>> {
        let debounce = Duration::from_millis(debounce_ms);
        let window = Window::new(debounce, debounce, None, false);
        batches_with(gaps_ms, window).await
    }

    /// The batches events sent with `gaps_ms` between them make, each ended by `window`'s quiet or
    /// cap for the events it holds (one path an event), on a paused clock.
    async fn batches_with(gaps_ms: Vec<u64>, window: Window) -> Vec<Vec<u32>> {
        let (tx, mut rx) = mpsc::channel(1024);
        tokio::spawn(feed(tx, distinct(gaps_ms)));
        let mut out = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let open = collect(&mut rx, Instant::now(), window, 1, |e| {
                batch.push(e);
                batch.len()
            })
            .await;
            out.push(batch);
            if !open {
                break;
            }
        }
        out
    }

    /// As the watcher batches `events` (see `feed`) with `debounce`, polling with passes
    /// `poll_round` apart if given: each batch's window from [`Recent`], its paths de-duplicated.
    /// Each batch with the milliseconds from the first event to the moment it went out.
    async fn watched(
        events: Vec<(u64, u32)>,
        debounce_ms: u64,
        poll_round: Option<Duration>,
    ) -> Vec<(Vec<u32>, u64)> {
        let debounce = Duration::from_millis(debounce_ms);
        let (tx, mut rx) = mpsc::channel(100_000);
        // The watcher stays: the last batch ends by its quiet, not by the channel closing.
        let watcher = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(watcher);
        });
        tokio::spawn(feed(tx, events));
        let mut recent = Recent::default();
        let mut out = Vec::new();
        let mut start = None;
        while let Some(first) = rx.recv().await {
            let opened = Instant::now();
            let start = *start.get_or_insert(opened);
            let window = recent.window(debounce, opened, poll_round);
            let mut batch = vec![first];
            let mut seen = HashSet::from([first]);
            let open = collect(&mut rx, opened, window, 1, |e| {
                if seen.insert(e) {
                    batch.push(e);
                }
                batch.len()
            })
            .await;
            let now = Instant::now();
            recent.sent(batch.len(), now);
            out.push((batch, now.duration_since(start).as_millis() as u64));
            if !open {
                break;
            }
        }
        out
    }

    /// The number of paths in each batch.
    fn sizes(got: &[(Vec<u32>, u64)]) -> Vec<usize> {
        got.iter().map(|(batch, _)| batch.len()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_batch_and_quiet_splits() {
        // 5 events 5 ms apart, 100 ms of quiet, 2 more.
        let got = batches(vec![0, 5, 5, 5, 5, 100, 5], 30).await;
        assert_eq!(got, vec![vec![0, 1, 2, 3, 4], vec![5, 6]]);
    }

    #[test]
    fn the_busy_quiet_is_under_the_window_and_never_shorter_than_the_debounce() {
        let ms = Duration::from_millis;
        assert_eq!(busy_quiet(ms(0)), None);
        for (debounce, quiet) in [(1, 100), (10, 100), (100, 100), (300, 300), (1000, 1000)] {
            let got = busy_quiet(ms(debounce)).expect("a quiet interval");
            assert_eq!(got, ms(quiet), "debounce {debounce} ms");
            // A save after a pause is not held to the cap.
            assert!(got < window_cap(ms(debounce)), "debounce {debounce} ms");
        }
    }

    /// A bulk write with pauses longer than the debounce (a checkout, a formatter on a busy
    /// machine) is one batch once it holds a few paths; a single save still goes out after the
    /// debounce, and two saves 40 ms apart are two batches.
    #[tokio::test(start_paused = true)]
    async fn a_bulk_write_waits_out_its_pauses_and_a_single_save_does_not() {
        let ms = Duration::from_millis;
        let debounce = ms(10);
        let window = Window::new(debounce, debounce, bulk_quiet(debounce, None), false);
        // 100 files 1 ms apart, pausing 15, 60 and 90 ms: one batch.
        let mut gaps = vec![1; 100];
        for (at, pause) in [(25, 15), (50, 60), (75, 90)] {
            gaps[at] = pause;
        }
        let got = batches_with(gaps, window).await;
        assert_eq!(
            got.len(),
            1,
            "{:?}",
            got.iter().map(Vec::len).collect::<Vec<_>>()
        );
        // Two saves 40 ms apart (one path each, and a save with its temp file: two): two batches,
        // each after the plain debounce.
        let got = batches_with(vec![0, 1, 40], window).await;
        assert_eq!(got, vec![vec![0, 1], vec![2]]);
        // A pause longer than the bulk quiet still ends a bulk batch.
        let got = batches_with(vec![0, 1, 1, 150, 1], window).await;
        assert_eq!(got, vec![vec![0, 1, 2], vec![3, 4]]);
        // `--debounce 0`: no quiet at all, bulk or not, storm or not.
        let zero = Duration::ZERO;
        let none = Window::new(zero, zero, bulk_quiet(zero, None), true);
        assert_eq!(none.quiet(1000), Duration::ZERO);
        let got = batches_with(vec![0, 1, 1, 1], none).await;
        assert_eq!(got.len(), 4, "{got:?}");
    }

    /// A bulk write that never pauses for the bulk quiet still flushes at the bulk cap, once every
    /// five seconds: the longer quiet never holds a batch beyond it.
    #[tokio::test(start_paused = true)]
    async fn a_bulk_stream_still_flushes_at_the_bulk_cap() {
        // Three files at once, then one every 50 ms for 12 s.
        let mut gaps = vec![0, 1, 1];
        gaps.extend([50; 237]);
        let got = watched(distinct(gaps), 10, None).await;
        // The first batch ends at the 5 s cap, with the 102 events sent by then; the next at the
        // cap too, the last at the end.
        assert_eq!(got.len(), 3, "{:?}", sizes(&got));
        assert!((100..=103).contains(&got[0].0.len()), "{:?}", sizes(&got));
        assert_eq!(got[0].1, 5000);
        assert!(got[1].1 >= 9990 && got[1].1 <= 10_100, "{got:?}");
        assert_eq!(sizes(&got).iter().sum::<usize>(), 240);
    }

    /// A storm of thousands of files that lasts longer than the plain cap (`rm -rf` of a folder of
    /// 20,000 taking 9 s on a loaded machine, a large unpack) is one batch every five seconds and
    /// one at its end, not one a second: each batch reloads every open tab.
    #[tokio::test(start_paused = true)]
    async fn a_storm_of_files_is_a_batch_every_five_seconds_and_one_at_its_end() {
        // OS events: 20,000 files, one every 0.45 ms (9 ms for every 20), 9 s in all.
        let at = |i: u32| u64::from(i) * 9 / 20;
        let events: Vec<(u64, u32)> = (0..20_000)
            .map(|i: u32| (if i == 0 { 0 } else { at(i) - at(i - 1) }, i))
            .collect();
        let got = watched(events, 10, None).await;
        assert_eq!(got.len(), 2, "{:?}", sizes(&got));
        assert_eq!(got[0].1, 5000, "{got:?}");
        assert_eq!(sizes(&got).iter().sum::<usize>(), 20_000);

        // The same, with the machine stalling the writer now and then for longer than a large
        // batch's quiet (600 ms every 1.5 s): pauses of one storm, not its end. A batch every
        // 5 s while it lasts, and the rest at its end.
        let events: Vec<(u64, u32)> = (0..20_000)
            .map(|i: u32| match i {
                0 => (0, i),
                _ if i % 3000 == 0 => (600, i),
                _ => (at(i) - at(i - 1), i),
            })
            .collect();
        // The first stall ends the first batch (nothing says a storm yet); from then on, one.
        let got = watched(events, 10, None).await;
        assert!(got.len() <= 4, "{:?}", sizes(&got));
        let at: Vec<u64> = got.iter().map(|b| b.1).collect();
        assert!(
            at[..at.len() - 1].windows(2).all(|w| w[1] - w[0] >= 4000),
            "batches at {at:?} ms"
        );

        // Polling every 500 ms: the deletion comes in slices of 1,400 files, one a pass, 600 ms
        // apart (the round the poller measures has a margin: 650 ms).
        let round = Duration::from_millis(650);
        let events: Vec<(u64, u32)> = (0..20_000)
            .map(|i: u32| (if i > 0 && i % 1400 == 0 { 600 } else { 0 }, i))
            .collect();
        let got = watched(events, 10, Some(round)).await;
        assert_eq!(got.len(), 2, "{:?}", sizes(&got));
        assert_eq!(sizes(&got).iter().sum::<usize>(), 20_000);
    }

    /// A single save keeps the plain debounce's latency, after a pause and right after a storm;
    /// a `git checkout` of 500 files with pauses is one batch, out [`LARGE_QUIET`] after its last
    /// file; a generator's 654 pages with a pause of 300 ms midway are one batch too.
    #[tokio::test(start_paused = true)]
    async fn a_save_after_a_pause_or_a_storm_keeps_its_latency() {
        let got = watched(vec![(0, 7)], 10, None).await;
        assert_eq!(got, vec![(vec![7], 10)]);
        let got = watched(vec![(0, 7)], 10, Some(Duration::from_millis(300))).await;
        assert_eq!(got, vec![(vec![7], 10)]);
        // 500 files 1 ms apart, with pauses of 60 and 90 ms: one batch, 400 ms after the last.
        let mut checkout = distinct(vec![1; 500]);
        checkout[200].0 = 60;
        checkout[400].0 = 90;
        let got = watched(checkout.clone(), 10, None).await;
        assert_eq!(sizes(&got), [500]);
        assert_eq!(got[0].1, 499 - 2 + 60 + 90 + 400);
        let mut site = distinct(vec![1; 654]);
        site[327].0 = 300;
        assert_eq!(sizes(&watched(site, 10, None).await), [654]);
        // A storm (2 s of files), then a save 500 ms after it went out: the save alone, after
        // the debounce.
        let mut events = distinct(vec![1; 2000]);
        events.push((400 + 500, 9_999_999));
        let got = watched(events, 10, None).await;
        assert_eq!(sizes(&got), [2000, 1]);
        assert_eq!(got[1].1 - got[0].1, 500 + 10);
    }

    /// A bundler writes four files after each save (`app.js`, `app.css` and their maps), and an
    /// editor's auto-save saves every 800 ms while its user types: each batch goes out 100 ms
    /// after its last file, not a storm's second later.
    #[tokio::test(start_paused = true)]
    async fn a_bundlers_few_files_after_each_quick_save_are_no_storm() {
        let mut events = Vec::new();
        for save in 0..6u32 {
            let gap = if save == 0 { 0 } else { 800 - 3 };
            events.push((gap, save * 10));
            for file in 1..4 {
                events.push((1, save * 10 + file));
            }
        }
        let got = watched(events, 10, None).await;
        assert_eq!(sizes(&got), [4; 6], "{got:?}");
        for (i, (_, at)) in got.iter().enumerate() {
            assert_eq!(*at, 800 * i as u64 + 3 + 100, "{got:?}");
        }
    }

    /// In poll mode a bulk batch waits one pass round (the slices of one burst come a pass apart),
    /// unless the round is longer than the bulk cap: then the plain bulk quiet.
    #[test]
    fn the_bulk_quiet_covers_a_poll_pass_under_the_cap() {
        let ms = Duration::from_millis;
        assert_eq!(bulk_quiet(ms(0), Some(ms(300))), None);
        assert_eq!(bulk_quiet(ms(10), None), Some(ms(100)));
        assert_eq!(bulk_quiet(ms(10), Some(ms(50))), Some(ms(100)));
        assert_eq!(bulk_quiet(ms(10), Some(ms(305))), Some(ms(305)));
        // A big tree's stretched pass: covered under the 5 s bulk cap (a deletion that spanned
        // passes 1.3 s apart went out a batch a pass), but not one of 6 s.
        assert_eq!(bulk_quiet(ms(10), Some(ms(1300))), Some(ms(1300)));
        assert_eq!(bulk_quiet(ms(10), Some(ms(6000))), Some(ms(100)));
        // A longer debounce has a longer cap: covered there.
        assert_eq!(bulk_quiet(ms(1000), Some(ms(6000))), Some(ms(6000)));
        assert_eq!(bulk_quiet(ms(500), Some(ms(305))), Some(ms(500)));
        // The bulk quiet is never shorter than the quiet a batch opened with.
        let window = Window::new(ms(100), ms(100), Some(ms(100)), false);
        assert_eq!((window.quiet(1), window.quiet(3)), (ms(100), ms(100)));
        let window = Window::new(ms(10), ms(10), Some(ms(305)), false);
        assert_eq!((window.quiet(2), window.quiet(3)), (ms(10), ms(305)));
        assert_eq!((window.cap(2), window.cap(3)), (ms(1000), ms(5000)));
        // Within a storm, a bulk batch waits for the storm's quiet; one save never does.
        let window = Window::new(ms(10), ms(10), Some(ms(305)), true);
        assert_eq!((window.quiet(2), window.quiet(3)), (ms(10), STORM_QUIET));
    }

    /// A file written continuously (a log by another name) is one path: it flushes at the plain
    /// cap, once a second.
    #[tokio::test(start_paused = true)]
    async fn a_constant_stream_still_flushes_at_the_cap() {
        // An event every 10 ms for 3 s with a 30 ms debounce: capped at 1 s windows.
        let got = watched(vec![(10, 1); 300], 30, None).await;
        assert!(got.len() >= 3, "{} batches", got.len());
        assert_eq!(got[0].1, 1000, "{got:?}");
    }

    #[test]
    fn temp_files_and_directories_drop_out() {
        let mut p = Pending::default();
        p.add("/p/.a.css.tmp123".into(), Seen::Created);
        p.add("/p/a.css".into(), Seen::Created);
        p.add("/p/a.css".into(), Seen::Changed);
        p.add("/p/old.css".into(), Seen::Changed);
        p.add("/p/dir".into(), Seen::Created);
        let (paths, reload) = p.finish(|path| match path.to_str() {
            Some("/p/a.css") => Some(false),
            Some("/p/dir") => Some(true),
            _ => None,
        });
        assert_eq!(
            paths,
            vec![PathBuf::from("/p/a.css"), PathBuf::from("/p/old.css")]
        );
        assert!(!reload);
    }

    #[test]
    fn a_gone_folder_is_its_files_when_they_are_reported_and_its_name_when_not() {
        let mut p = Pending::default();
        // `rm -rf a`: the files first, then each folder on the way up.
        p.add("/p/a/b/c/f.js".into(), Seen::Changed);
        p.add_gone_dir("/p/a/b/c".into(), true);
        p.add_gone_dir("/p/a/b".into(), true);
        p.add_gone_dir("/p/a".into(), true);
        // `mv static /elsewhere`: the folder's name alone.
        p.add_gone_dir("/p/static".into(), true);
        // `rustc`'s scratch folder, which never held a file, goes: nothing. Each folder's removal
        // is told twice (its own watch, its parent's), the second time as a path not watched.
        p.add_gone_dir("/p/rustcX/raw-dylibs".into(), false);
        p.add("/p/rustcX/raw-dylibs".into(), Seen::Changed);
        p.add_gone_dir("/p/rustcX".into(), false);
        // A sibling whose name starts the same is not inside it.
        p.add("/p/ab.css".into(), Seen::Changed);
        let (paths, _) = p.finish(|_| None);
        assert_eq!(
            paths,
            vec![
                PathBuf::from("/p/a/b/c/f.js"),
                PathBuf::from("/p/static"),
                PathBuf::from("/p/ab.css")
            ]
        );
    }
}
