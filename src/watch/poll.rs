//! Polling for file systems that send no change events (Docker bind mounts, network shares): a
//! [`notify::Watcher`] that looks at every watched directory's entries once an interval.
//!
//! notify 8's own `PollWatcher` keeps modification times in whole seconds and compares nothing
//! else, so a second save within the same second as the first went unseen and the browser kept
//! the first version (notify 9 fixes it; it is not released as stable). This one compares the
//! whole modification time, the size and the inode of each entry, reads no file contents, and
//! watches each directory one level deep, as [`super::Watching`] asks (it registers every
//! directory it wants on its own); symlinks are not followed. It knows nothing of filters or
//! batches: it reports what it sees to the same handler the OS watcher would, and says how far
//! apart its passes come ([`Round`]), since a burst of writes reaches it one slice a pass.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind};
use notify::{Event, EventHandler, EventKind, RecursiveMode, WatcherKind};

/// Slow passes in a row before the stretched pause is said.
const SLOW_PASSES_TO_SAY: u32 = 3;

/// The pause after a pass is at least this many times the pass, so polling takes at most a fifth
/// of the time: on a tree whose every pass takes long (100,000 files in 5,000 folders: ~130 ms of
/// `statx` and `getdents`), a fixed 250 ms pause kept a third of a core busy for as long as the
/// proxy ran.
const SCAN_SHARE: u32 = 4;

/// The pause before the next pass: the interval asked for, or [`SCAN_SHARE`] times the last
/// pass when that is longer.
fn pause(interval: Duration, last_pass: Duration) -> Duration {
    interval.max(last_pass.saturating_mul(SCAN_SHARE))
}

/// Margin on the time between two passes' events (see [`round`]): the poll thread, woken late on a
/// busy machine, or a pass slowed by other writers.
const ROUND_SLACK: Duration = Duration::from_millis(50);

/// How long after one pass's events the next pass's may come: the pause, the next pass itself
/// (taken to last up to twice this one, `took`), and [`ROUND_SLACK`]. A batch holding a bulk write
/// waits this long for the next slice of it (`batch::bulk_quiet`).
fn round(interval: Duration, took: Duration) -> Duration {
    pause(interval, took) + took.saturating_mul(2) + ROUND_SLACK
}

/// The poller's [`round`] as last measured, shared with the batching task, which reads it as each
/// batch opens. Microseconds in an atomic: written by the poll thread after every pass.
#[derive(Debug, Clone)]
pub struct Round(Arc<AtomicU64>);

impl Round {
    fn new(round: Duration) -> Round {
        let shared = Round(Arc::new(AtomicU64::new(0)));
        shared.set(round);
        shared
    }

    fn set(&self, round: Duration) {
        let micros = u64::try_from(round.as_micros()).unwrap_or(u64::MAX);
        self.0.store(micros, Ordering::Relaxed);
    }

    /// The time from one pass's events to the next pass's, as last measured.
    pub fn get(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }
}

/// What tells one version of an entry from the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
    is_dir: bool,
}

impl Stamp {
    fn of(metadata: &Metadata) -> Stamp {
        Stamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode: metadata.ino(),
            is_dir: metadata.is_dir(),
        }
    }
}

/// One watched directory as last seen: its own stamp (`None` while it does not exist) and its
/// entries'.
#[derive(Debug, Default)]
struct Snapshot {
    dir: Option<Stamp>,
    entries: HashMap<PathBuf, Stamp>,
}

impl Snapshot {
    fn take(dir: &Path) -> Snapshot {
        let Ok(metadata) = fs::symlink_metadata(dir) else {
            return Snapshot::default();
        };
        let mut entries = HashMap::new();
        if let Ok(read) = fs::read_dir(dir) {
            for entry in read.flatten() {
                // `DirEntry::metadata` does not follow symlinks.
                if let Ok(metadata) = entry.metadata() {
                    entries.insert(entry.path(), Stamp::of(&metadata));
                }
            }
        }
        Snapshot {
            dir: Some(Stamp::of(&metadata)),
            entries,
        }
    }

    /// What happened between `self` and `now`, as notify events for `dir`.
    fn changes(&self, dir: &Path, now: &Snapshot) -> Vec<Event> {
        let mut events = Vec::new();
        match (self.dir, now.dir) {
            (Some(_), None) => events.push(removed(dir.to_path_buf(), true)),
            (None, Some(_)) => events.push(created(dir.to_path_buf(), true)),
            _ => {}
        }
        for (path, old) in &self.entries {
            match now.entries.get(path) {
                None => events.push(removed(path.clone(), old.is_dir)),
                Some(new) if new.is_dir != old.is_dir => {
                    events.push(removed(path.clone(), old.is_dir));
                    events.push(created(path.clone(), new.is_dir));
                }
                // A directory's own times change with its entries; those are reported where they
                // happen, in that directory's watch.
                Some(new) if !new.is_dir && new != old => events.push(
                    Event::new(EventKind::Modify(ModifyKind::Data(DataChange::Any)))
                        .add_path(path.clone()),
                ),
                Some(_) => {}
            }
        }
        for (path, new) in &now.entries {
            if !self.entries.contains_key(path) {
                events.push(created(path.clone(), new.is_dir));
            }
        }
        events
    }
}

fn created(path: PathBuf, is_dir: bool) -> Event {
    let kind = if is_dir {
        CreateKind::Folder
    } else {
        CreateKind::File
    };
    Event::new(EventKind::Create(kind)).add_path(path)
}

fn removed(path: PathBuf, is_dir: bool) -> Event {
    let kind = if is_dir {
        RemoveKind::Folder
    } else {
        RemoveKind::File
    };
    Event::new(EventKind::Remove(kind)).add_path(path)
}

/// What the polling thread and the watcher share.
#[derive(Debug, Default)]
struct Shared {
    watched: Mutex<HashMap<PathBuf, Snapshot>>,
    stopped: Mutex<bool>,
    wake: Condvar,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the map itself is still consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The polling watcher. Its thread stops when it is dropped.
#[derive(Debug)]
pub struct StatPoller {
    shared: Arc<Shared>,
    round: Round,
}

impl StatPoller {
    /// Poll every `interval`, reporting to `handler`.
    pub fn new<F: EventHandler>(mut handler: F, interval: Duration) -> notify::Result<StatPoller> {
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let rounds = Round::new(round(interval, Duration::ZERO));
        let thread_rounds = rounds.clone();
        std::thread::Builder::new()
            .name("hmr-proxy poll".into())
            .spawn(move || {
                let mut next = interval;
                let mut said = false;
                // Passes in a row that stretched the pause: one slow pass is the machine being
                // busy (the pass is timed on the wall clock) or a cold cache, not the tree's size,
                // and a warning for it read as if polling were slow for good.
                let mut slow = 0;
                while wait(&thread_shared, next) {
                    let started = Instant::now();
                    let (events, dirs) = scan(&thread_shared);
                    for event in events {
                        handler.handle_event(Ok(event));
                    }
                    let took = started.elapsed();
                    next = pause(interval, took);
                    thread_rounds.set(round(interval, took));
                    slow = if next > interval { slow + 1 } else { 0 };
                    if slow == SLOW_PASSES_TO_SAY && !said {
                        said = true;
                        tracing::warn!(
                            "polling {dirs} folders takes {took:.0?} a pass: looking every \
                             {next:.0?} rather than every {interval:.0?}, to keep polling under \
                             a fifth of a core (narrow --watch, or --ignore what needs no watching)"
                        );
                    }
                }
            })
            .map_err(notify::Error::io)?;
        Ok(StatPoller {
            shared,
            round: rounds,
        })
    }

    /// How far apart the passes' events come, kept up to date by the polling thread.
    pub fn round(&self) -> Round {
        self.round.clone()
    }
}

/// Sleep `interval` unless stopped first; whether to go on.
fn wait(shared: &Shared, interval: Duration) -> bool {
    let stopped = lock(&shared.stopped);
    let (stopped, _) = shared
        .wake
        .wait_timeout_while(stopped, interval, |stopped| !*stopped)
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    !*stopped
}

/// Look at every watched directory once; what changed, and how many directories were looked at.
/// The directories are read without the lock, so that registering new ones never waits for a
/// scan; one unwatched meanwhile is left alone.
fn scan(shared: &Shared) -> (Vec<Event>, usize) {
    let dirs: Vec<PathBuf> = lock(&shared.watched).keys().cloned().collect();
    let looked_at = dirs.len();
    let mut events = Vec::new();
    for dir in dirs {
        let now = Snapshot::take(&dir);
        let mut watched = lock(&shared.watched);
        if let Some(before) = watched.get_mut(&dir) {
            events.extend(before.changes(&dir, &now));
            *before = now;
        }
    }
    (events, looked_at)
}

impl notify::Watcher for StatPoller {
    fn new<F: EventHandler>(handler: F, config: notify::Config) -> notify::Result<Self> {
        StatPoller::new(
            handler,
            config.poll_interval().unwrap_or(Duration::from_secs(1)),
        )
    }

    fn watch(&mut self, path: &Path, recursive_mode: RecursiveMode) -> notify::Result<()> {
        if recursive_mode == RecursiveMode::Recursive {
            return Err(notify::Error::generic(
                "this poller watches one directory level; register each directory",
            ));
        }
        if fs::symlink_metadata(path).is_err() {
            return Err(notify::Error::path_not_found().add_path(path.to_path_buf()));
        }
        // The baseline: what is there now is not a change.
        let snapshot = Snapshot::take(path);
        // A folder this user may not read (mode 700 on a bind mount) lists nothing, and is said
        // as OS events say it; polled still, its files show up as new once it may be read.
        if snapshot.entries.is_empty()
            && fs::read_dir(path)
                .is_err_and(|err| err.kind() == std::io::ErrorKind::PermissionDenied)
        {
            tracing::warn!(
                "cannot watch {}: permission denied; saves in it are not seen until this user \
                 may read it (then it is watched)",
                path.display()
            );
        }
        lock(&self.shared.watched).insert(path.to_path_buf(), snapshot);
        Ok(())
    }

    fn unwatch(&mut self, path: &Path) -> notify::Result<()> {
        match lock(&self.shared.watched).remove(path) {
            Some(_) => Ok(()),
            None => Err(notify::Error::watch_not_found().add_path(path.to_path_buf())),
        }
    }

    fn kind() -> WatcherKind {
        WatcherKind::PollWatcher
    }
}

impl Drop for StatPoller {
    fn drop(&mut self) {
        *lock(&self.shared.stopped) = true;
        self.shared.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::Watcher as _;
    use std::sync::mpsc;

    /// A poller on `dir` whose events arrive on the returned channel.
    fn poller(dir: &Path) -> (StatPoller, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel();
        let mut poller = StatPoller::new(
            move |event: notify::Result<Event>| {
                if let Ok(event) = event {
                    let _ = tx.send(event);
                }
            },
            Duration::from_millis(10),
        )
        .expect("poller");
        poller
            .watch(dir, RecursiveMode::NonRecursive)
            .expect("watch");
        (poller, rx)
    }

    fn next(rx: &mpsc::Receiver<Event>, what: &str) -> Event {
        rx.recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no event for {what}"))
    }

    /// A file as seen at `millis` past one whole second, `len` bytes long, inode `inode`.
    fn file_at(millis: u64, len: u64, inode: u64) -> Stamp {
        let second = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Stamp {
            modified: Some(second + Duration::from_millis(millis)),
            len,
            inode,
            is_dir: false,
        }
    }

    /// The next pass's events come a pause and a pass after this one's: a bulk batch waits that
    /// long, with margin, for them.
    #[test]
    fn a_round_covers_the_pause_and_the_next_pass() {
        let ms = Duration::from_millis;
        assert_eq!(round(ms(250), ms(3)), ms(250 + 6 + 50));
        // A big tree: the stretched pause, and the next pass as long as this one, twice over.
        assert_eq!(round(ms(250), ms(130)), ms(520 + 260 + 50));
        let shared = Round::new(round(ms(250), Duration::ZERO));
        assert_eq!(shared.get(), ms(300));
        shared.set(ms(830));
        assert_eq!(shared.clone().get(), ms(830));
    }

    #[test]
    fn a_long_pass_stretches_the_pause_and_a_short_one_does_not() {
        let interval = Duration::from_millis(250);
        assert_eq!(pause(interval, Duration::from_millis(3)), interval);
        assert_eq!(pause(interval, Duration::from_millis(62)), interval);
        assert_eq!(
            pause(interval, Duration::from_millis(130)),
            Duration::from_millis(520)
        );
    }

    /// Whether going from `old` to `new` reports a change of the file.
    fn modified(old: Stamp, new: Stamp) -> bool {
        let dir = Path::new("/site");
        let file = dir.join("page.html");
        let snapshot = |stamp: Stamp| Snapshot {
            dir: Some(Stamp {
                is_dir: true,
                ..stamp
            }),
            entries: HashMap::from([(file.clone(), stamp)]),
        };
        let events = snapshot(old).changes(dir, &snapshot(new));
        assert!(
            events.iter().all(|e| e.paths == [file.clone()]),
            "{events:?}"
        );
        events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Modify(ModifyKind::Data(_))))
    }

    #[test]
    fn a_save_within_the_same_second_is_a_change() {
        // The same size, the same inode: only the fraction of the time differs.
        assert!(modified(file_at(100, 3, 7), file_at(500, 3, 7)));
        // The same time: another size, or another inode (an editor's save by rename).
        assert!(modified(file_at(500, 3, 7), file_at(500, 5, 7)));
        assert!(modified(file_at(500, 3, 7), file_at(500, 3, 8)));
        assert!(!modified(file_at(500, 3, 7), file_at(500, 3, 7)));
    }

    #[test]
    fn entries_appear_and_vanish_and_the_baseline_is_no_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("old.txt"), "here before").expect("write");
        let (_poller, rx) = poller(dir.path());
        let new = dir.path().join("new.txt");
        fs::write(&new, "x").expect("write");
        let event = next(&rx, "a new file");
        assert_eq!(event.kind, EventKind::Create(CreateKind::File), "{event:?}");
        assert_eq!(event.paths, std::slice::from_ref(&new));
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).expect("mkdir");
        let event = next(&rx, "a new directory");
        assert_eq!(
            event.kind,
            EventKind::Create(CreateKind::Folder),
            "{event:?}"
        );
        fs::remove_file(&new).expect("remove");
        let event = next(&rx, "a removed file");
        assert_eq!(event.kind, EventKind::Remove(RemoveKind::File), "{event:?}");
        assert_eq!(event.paths, [new]);
    }

    #[test]
    fn a_vanished_directory_is_reported_and_its_return_too() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("watched");
        fs::create_dir(&dir).expect("mkdir");
        fs::write(dir.join("a.css"), "a").expect("write");
        let (_poller, rx) = poller(&dir);
        fs::remove_dir_all(&dir).expect("rm");
        let mut removed = Vec::new();
        while removed.len() < 2 {
            let event = next(&rx, "the removal");
            assert!(matches!(event.kind, EventKind::Remove(_)), "{event:?}");
            removed.extend(event.paths);
        }
        removed.sort();
        assert_eq!(removed, [dir.clone(), dir.join("a.css")]);
        fs::create_dir(&dir).expect("mkdir again");
        let event = next(&rx, "the return");
        assert_eq!(
            event.kind,
            EventKind::Create(CreateKind::Folder),
            "{event:?}"
        );
        assert_eq!(event.paths, [dir]);
    }
}
