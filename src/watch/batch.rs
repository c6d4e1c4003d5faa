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
//! reloaded a tab 36 times in 2.5 s. A save after a pause still goes out after the plain
//! debounce. Paths are de-duplicated in arrival order; a file that was both created and gone
//! again within one batch (an editor's temp file in an atomic save) is dropped. It knows nothing
//! of notify or of the event stream.

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

/// Distinct paths from which a batch is a bulk write rather than one save, and waits for the
/// longer quiet interval. One save touches at most two: the file, and the copy or temp file of an
/// atomic save (`app.css.Ab12Cd`, `sedAb12Cd`) when that is seen before its rename; every other
/// file of an editor's save (swap, backup, `4913`, JetBrains' `___jb_tmp___`) is ignored before it
/// reaches a batch. So a single save keeps the debounce's latency, and three files are a tool at
/// work (a "save all" of three files waits 100 ms: it is one too).
pub const BULK_PATHS: usize = 3;

/// The quiet interval of a batch that holds a bulk write: [`busy_quiet`], or in poll mode the time
/// one pass takes to come round (`poll_round`, measured by the poller) when that is longer and
/// under the cap. Polling sees a burst in slices, one a pass, 250 ms or more apart: a checkout
/// that spanned a pass went out as two or three batches. A pass longer than the cap is not waited
/// for: the batch would go out at the cap anyway, without the next slice. `None` with no debounce.
pub fn bulk_quiet(debounce: Duration, poll_round: Option<Duration>) -> Option<Duration> {
    let busy = busy_quiet(debounce)?;
    Some(match poll_round {
        Some(round) if round > busy && round < window_cap(debounce) => round,
        _ => busy,
    })
}

/// The quiet intervals that end one batch: `plain` while it holds what one save touches, `bulk`
/// once it holds [`BULK_PATHS`] paths or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quiet {
    pub plain: Duration,
    pub bulk: Duration,
}

impl Quiet {
    /// `plain` for a batch opened now, and `bulk` (never shorter) from [`bulk_quiet`].
    pub fn new(plain: Duration, bulk: Option<Duration>) -> Quiet {
        Quiet {
            plain,
            bulk: bulk.map_or(plain, |bulk| bulk.max(plain)),
        }
    }

    /// The quiet interval of a batch holding `paths` distinct paths.
    pub fn for_paths(self, paths: usize) -> Duration {
        if paths >= BULK_PATHS {
            self.bulk
        } else {
            self.plain
        }
    }
}

/// The batch window cap for a debounce interval.
pub fn window_cap(debounce: Duration) -> Duration {
    (debounce * CAP_FACTOR).max(CAP_FLOOR)
}

/// Receive the rest of a burst that began with an event already taken: call `absorb` for each
/// event until the quiet interval passes without one or `cap` has passed since `opened`. The
/// interval is `quiet` at first, then what `absorb` returns for the batch it has made (see
/// [`Quiet::for_paths`]). Returns false when the channel closed (the watcher is gone).
pub async fn collect<T>(
    rx: &mut mpsc::Receiver<T>,
    opened: Instant,
    mut quiet: Duration,
    cap: Duration,
    mut absorb: impl FnMut(T) -> Duration,
) -> bool {
    loop {
        let left = cap.saturating_sub(opened.elapsed());
        let wait = quiet.min(left);
        if wait.is_zero() {
            return true;
        }
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(event)) => quiet = absorb(event),
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
    /// Something was lost or unknowable (queue overflow, rescan, removed root): reload fully.
    pub reload: bool,
}

impl Pending {
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
    /// the tree is only its own name, and a page using its files must still hear of it.
    pub fn add_gone_dir(&mut self, path: PathBuf) {
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
            .cloned()
            .collect();
        (paths, self.reload)
    }
}

/// Helper for tests of [`collect`]: send events with given gaps on a paused clock.
#[cfg(test)]
async fn feed(tx: mpsc::Sender<u32>, gaps_ms: Vec<u64>) {
    for (i, gap) in gaps_ms.into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(gap)).await;
        if tx.send(i as u32).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn batches(gaps_ms: Vec<u64>, debounce_ms: u64) -> Vec<Vec<u32>> {
        let debounce = Duration::from_millis(debounce_ms);
        batches_with(gaps_ms, Quiet::new(debounce, None), window_cap(debounce)).await
    }

    /// The batches events sent with `gaps_ms` between them make, each ended by `quiet` for the
    /// events it holds (one path an event) or by `cap`, on a paused clock.
    async fn batches_with(gaps_ms: Vec<u64>, quiet: Quiet, cap: Duration) -> Vec<Vec<u32>> {
        let (tx, mut rx) = mpsc::channel(1024);
        tokio::spawn(feed(tx, gaps_ms));
        let mut out = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let open = collect(&mut rx, Instant::now(), quiet.for_paths(1), cap, |e| {
                batch.push(e);
                quiet.for_paths(batch.len())
            })
            .await;
            out.push(batch);
            if !open {
                break;
            }
        }
        out
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
        let quiet = Quiet::new(debounce, bulk_quiet(debounce, None));
        let cap = window_cap(debounce);
        // 100 files 1 ms apart, pausing 15, 60 and 90 ms: one batch.
        let mut gaps = vec![1; 100];
        for (at, pause) in [(25, 15), (50, 60), (75, 90)] {
            gaps[at] = pause;
        }
        let got = batches_with(gaps, quiet, cap).await;
        assert_eq!(
            got.len(),
            1,
            "{:?}",
            got.iter().map(Vec::len).collect::<Vec<_>>()
        );
        // Two saves 40 ms apart (one path each, and a save with its temp file: two): two batches,
        // each after the plain debounce.
        let got = batches_with(vec![0, 1, 40], quiet, cap).await;
        assert_eq!(got, vec![vec![0, 1], vec![2]]);
        // A pause longer than the bulk quiet still ends a bulk batch.
        let got = batches_with(vec![0, 1, 1, 150, 1], quiet, cap).await;
        assert_eq!(got, vec![vec![0, 1, 2], vec![3, 4]]);
        // `--debounce 0`: no quiet at all, bulk or not.
        let none = Quiet::new(Duration::ZERO, bulk_quiet(Duration::ZERO, None));
        assert_eq!(none.for_paths(1000), Duration::ZERO);
        let got = batches_with(vec![0, 1, 1, 1], none, window_cap(Duration::ZERO)).await;
        assert_eq!(got.len(), 4, "{got:?}");
    }

    /// A bulk write that never pauses for the bulk quiet still flushes at the cap: the longer
    /// quiet never holds a batch beyond it.
    #[tokio::test(start_paused = true)]
    async fn a_bulk_stream_still_flushes_at_the_cap() {
        let debounce = Duration::from_millis(10);
        let quiet = Quiet::new(debounce, bulk_quiet(debounce, None));
        // Three files at once, then one every 50 ms for 3 s.
        let mut gaps = vec![0, 1, 1];
        gaps.extend([50; 57]);
        let got = batches_with(gaps, quiet, window_cap(debounce)).await;
        // The first batch ends at the 1 s cap, with the 22 events sent by then.
        assert!((20..=23).contains(&got[0].len()), "{got:?}");
        assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 60);
    }

    /// In poll mode a bulk batch waits one pass round (the slices of one burst come a pass apart),
    /// unless the round is longer than the cap: then the plain bulk quiet.
    #[test]
    fn the_bulk_quiet_covers_a_poll_pass_under_the_cap() {
        let ms = Duration::from_millis;
        assert_eq!(bulk_quiet(ms(0), Some(ms(300))), None);
        assert_eq!(bulk_quiet(ms(10), None), Some(ms(100)));
        assert_eq!(bulk_quiet(ms(10), Some(ms(50))), Some(ms(100)));
        assert_eq!(bulk_quiet(ms(10), Some(ms(305))), Some(ms(305)));
        // A big tree's stretched pass: not coverable under the 1 s cap.
        assert_eq!(bulk_quiet(ms(10), Some(ms(1300))), Some(ms(100)));
        // A longer debounce has a longer cap: covered there.
        assert_eq!(bulk_quiet(ms(200), Some(ms(1300))), Some(ms(1300)));
        assert_eq!(bulk_quiet(ms(500), Some(ms(305))), Some(ms(500)));
        // The bulk quiet is never shorter than the quiet a batch opened with.
        let quiet = Quiet::new(ms(100), Some(ms(100)));
        assert_eq!((quiet.for_paths(1), quiet.for_paths(3)), (ms(100), ms(100)));
        let quiet = Quiet::new(ms(10), Some(ms(305)));
        assert_eq!((quiet.for_paths(2), quiet.for_paths(3)), (ms(10), ms(305)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_constant_stream_still_flushes_at_the_cap() {
        // An event every 10 ms for 3 s with a 30 ms debounce: capped at 1 s windows.
        let got = batches(vec![10; 300], 30).await;
        assert!(got.len() >= 3, "{} batches", got.len());
        assert!(got.iter().all(|b| b.len() <= 101), "{got:?}");
        assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 300);
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
        p.add_gone_dir("/p/a/b/c".into());
        p.add_gone_dir("/p/a/b".into());
        p.add_gone_dir("/p/a".into());
        // `mv static /elsewhere`: the folder's name alone.
        p.add_gone_dir("/p/static".into());
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
