//! Turning a burst of file-system events into one batch.
//!
//! Owns the batching window and the pending set. A batch opens with the first event, stays open
//! while events keep arriving within the debounce interval of each other, and closes when the
//! quiet interval passes or the window cap (measured from the first event) runs out, so a
//! constant stream still flushes. A burst that starts soon after the last batch went out (a
//! build writing its output file by file, tens of milliseconds apart) waits for a longer quiet
//! interval ([`busy_quiet`]): each batch makes every open page reload, and a build writing 60
//! files 30 ms apart reloaded a tab 36 times in 2.5 s. A save after a pause still goes out after
//! the plain debounce. Paths are de-duplicated in arrival order; a file that was both
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

/// The quiet interval that ends a burst starting within this long of the last batch sent:
/// 100 ms, or the debounce when that is longer (a debounce raised that far already folds a
/// build's writes, and ten of it swallowed the whole window). `None` with no debounce at all
/// (`--debounce 0` asks for every event at once).
pub fn busy_quiet(debounce: Duration) -> Option<Duration> {
    (!debounce.is_zero()).then(|| debounce.max(BUSY_QUIET))
}

const BUSY_QUIET: Duration = Duration::from_millis(100);

/// The batch window cap for a debounce interval.
pub fn window_cap(debounce: Duration) -> Duration {
    (debounce * CAP_FACTOR).max(CAP_FLOOR)
}

/// Receive the rest of a burst that began with an event already taken: call `absorb` for each
/// event until `debounce` passes without one or `cap` has passed since `opened`. Returns false
/// when the channel closed (the watcher is gone).
pub async fn collect<T>(
    rx: &mut mpsc::Receiver<T>,
    opened: Instant,
    debounce: Duration,
    cap: Duration,
    mut absorb: impl FnMut(T),
) -> bool {
    loop {
        let left = cap.saturating_sub(opened.elapsed());
        let wait = debounce.min(left);
        if wait.is_zero() {
            return true;
        }
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(event)) => absorb(event),
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
        let (tx, mut rx) = mpsc::channel(1024);
        tokio::spawn(feed(tx, gaps_ms));
        let debounce = Duration::from_millis(debounce_ms);
        let mut out = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let open = collect(
                &mut rx,
                Instant::now(),
                debounce,
                window_cap(debounce),
                |e| batch.push(e),
            )
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
