//! The one file watcher of the process, and the batches of changes it produces.
//!
//! Owns a single watcher (notify's, on OS events, or the [`poll`]er behind notify's interface,
//! for bind mounts and network file systems) and the task that turns its events into
//! [`ChangeBatch`]es on a channel. Directories are watched one by one (non-recursively) after
//! the filter has had its say, so ignored trees such as `node_modules` cost no watches; new
//! directories are registered as they appear, and their files reported, since they can be
//! written before the watch lands. A batch is held, up to its cap, while a save is under way: a
//! file still open for writing, an atomic save's copy not yet renamed over its file, a file moved
//! aside to its backup name whose new version is not in yet. The watcher's callback only converts
//! and `try_send`s: its thread must never block, and a full queue becomes a reload rather than
//! back-pressure. A root that disappears is re-armed when it comes back, a file that keeps
//! changing batch after batch is named in the log, and a bulk batch leaves out the files written
//! again unchanged ([`unchanged`]). It knows nothing of HTTP or of the event
//! stream (`sse`).

mod batch;
mod filter;
mod poll;
mod unchanged;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, MetadataKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::WatchSettings;
use crate::shutdown::Shutdown;
use batch::{Pending, Seen};
pub use filter::{Filter, FilterError, Located};
use unchanged::Unchanged;

/// Raw events buffered between notify's thread and the batching task. A `git checkout` of a few
/// thousand files fits; beyond it the batch becomes a full reload (nothing is lost that matters).
const RAW_QUEUE: usize = 8192;

/// How often a vanished root is checked for its return.
const REARM_INTERVAL: Duration = Duration::from_millis(500);

/// One file that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Relative to its watch root, `/`-separated.
    pub path: String,
    /// The URL it is served under (root prefix + path, percent-encoded).
    pub url: String,
}

/// What one burst of saves changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeBatch {
    pub changes: Vec<Change>,
    /// The browser cannot patch this: reload the page.
    pub reload: bool,
    /// Why the watcher reloads the page, when it is not the files (events lost, a watched folder
    /// gone or back), for the tabs' consoles.
    pub reason: Option<String>,
}

#[cfg(test)]
impl ChangeBatch {
    /// A batch of these paths, each served at `/` and its path.
    pub fn of(paths: &[&str]) -> ChangeBatch {
        ChangeBatch {
            changes: paths
                .iter()
                .map(|p| Change {
                    path: (*p).to_string(),
                    url: format!("/{p}"),
                })
                .collect(),
            reload: false,
            reason: None,
        }
    }
}

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("cannot start the file watcher: {0}; try --poll")]
    Start(#[source] notify::Error),
}

/// Start watching. Batches arrive on the returned channel until shutdown.
pub fn spawn(
    settings: &WatchSettings,
    shutdown: Shutdown,
) -> Result<mpsc::Receiver<ChangeBatch>, WatchError> {
    let filter = Filter::new(&settings.roots, &settings.ignore)?;
    let (raw_tx, raw_rx) = mpsc::channel(RAW_QUEUE);
    let overflow = Arc::new(AtomicBool::new(false));
    let handler = {
        let overflow = overflow.clone();
        move |result: notify::Result<notify::Event>| {
            let raw = match result {
                Ok(event) => match convert(event) {
                    Some(raw) => raw,
                    None => return,
                },
                Err(err) => Raw::Failed(err),
            };
            // Never block notify's thread: a full queue means "too much at once", which the
            // batch turns into a full reload.
            if raw_tx.try_send(raw).is_err() {
                overflow.store(true, Ordering::Relaxed);
            }
        }
    };
    let mut polling = settings.poll;
    // How far apart a poller's passes come: a bulk batch waits for the next one (`batch`).
    let mut round = None;
    let watcher: Box<dyn Watcher + Send> = match settings.poll {
        Some(interval) => {
            let poller = poll::StatPoller::new(handler, interval).map_err(WatchError::Start)?;
            round = Some(poller.round());
            Box::new(poller)
        }
        None => {
            // The handler is needed again if the OS watcher cannot start: shared, not moved.
            let handler = Arc::new(handler);
            let for_os = handler.clone();
            let os = notify::RecommendedWatcher::new(
                move |event| for_os(event),
                notify::Config::default().with_follow_symlinks(false),
            );
            match os {
                Ok(watcher) => Box::new(watcher),
                Err(err) => {
                    // Out of inotify instances (each editor, language server and dev server
                    // holds some): polling still gives live reload, slower and dearer.
                    let interval = crate::config::DEFAULT_POLL_INTERVAL;
                    tracing::warn!(
                        "cannot start the file watcher: {}; polling every {} ms instead",
                        start_failure(&err),
                        interval.as_millis()
                    );
                    polling = Some(interval);
                    let poller = poll::StatPoller::new(move |event| handler(event), interval)
                        .map_err(WatchError::Start)?;
                    round = Some(poller.round());
                    Box::new(poller)
                }
            }
        }
    };
    let mut state = Watching {
        watcher,
        filter,
        watched: BTreeSet::new(),
        with_files: BTreeSet::new(),
        missing: Vec::new(),
        limit_reported: false,
        own_output_found: false,
        to_rescan: Vec::new(),
        closes_reported: polling.is_none() && cfg!(target_os = "linux"),
        unwatched: 0,
        open_writes: HashSet::new(),
        long_writes: HashSet::new(),
        maybe_temps: HashSet::new(),
        vacated: HashSet::new(),
        unchanged: Unchanged::default(),
    };
    let roots: Vec<PathBuf> = state.filter.root_dirs().map(Path::to_path_buf).collect();
    for root in &roots {
        if root.is_dir() {
            state.register_tree(root, None);
        } else {
            // Not made yet (config allowed it): armed when it appears.
            state.missing.push(root.clone());
        }
    }
    tracing::debug!("watching {} directories", state.watched.len());
    if state.unwatched > 0 {
        tracing::error!(
            "{} of {} folders are not watched (the limit above; nor any below them): saves in \
             them are missed until the proxy is restarted after raising the limit, or with --poll",
            state.unwatched,
            state.unwatched + state.watched.len()
        );
    }

    let (tx, rx) = mpsc::channel(16);
    let debounce = settings.debounce;
    tokio::spawn(run(state, raw_rx, tx, overflow, debounce, round, shutdown));
    Ok(rx)
}

/// Why the OS watcher could not start, with the limit to raise.
fn start_failure(err: &notify::Error) -> String {
    match &err.kind {
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(24) => {
            "no inotify instance is left (fs.inotify.max_user_instances, or the open-file limit); \
             `sudo sysctl fs.inotify.max_user_instances=512` raises it"
                .to_string()
        }
        notify::ErrorKind::Io(io) => io.to_string(),
        notify::ErrorKind::Generic(text) => text.clone(),
        other => format!("{other:?}"),
    }
}

/// What the notify callback forwards.
#[derive(Debug)]
enum Raw {
    Changed(Kind, Vec<PathBuf>),
    /// Closed after writing (inotify's `IN_CLOSE_WRITE`): a write is over.
    Closed(Vec<PathBuf>),
    /// The OS lost events (inotify queue overflow): rescan and reload.
    Rescan,
    Failed(notify::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Created,
    Modified,
    /// Bytes written (inotify's `IN_MODIFY`): the file may still be open for more.
    Written,
    /// Some attribute changed, the kernel does not say which (inotify's `IN_ATTRIB`): `touch`
    /// (a change) and `chmod`, `chown`, `setfattr` (none) alike; told apart by the file's mtime.
    Attributes,
    Removed,
    Renamed,
}

impl Kind {
    /// An event about a name (made, gone, moved), rather than about a file's content.
    fn names(self) -> bool {
        matches!(self, Kind::Created | Kind::Removed | Kind::Renamed)
    }
}

/// Keep what changes content or existence; drop reads (`IN_OPEN` would make every template render
/// a reload) and permission/ownership changes. A close after writing is kept: it ends a write.
fn convert(event: notify::Event) -> Option<Raw> {
    if event.need_rescan() {
        return Some(Raw::Rescan);
    }
    let kind = match event.kind {
        EventKind::Create(_) => Kind::Created,
        EventKind::Remove(_) => Kind::Removed,
        EventKind::Modify(ModifyKind::Name(_)) => Kind::Renamed,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::WriteTime)) => Kind::Modified,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)) => Kind::Attributes,
        EventKind::Modify(ModifyKind::Metadata(_)) => return None,
        EventKind::Modify(ModifyKind::Data(_)) => Kind::Written,
        EventKind::Modify(_) => Kind::Modified,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
            return Some(Raw::Closed(event.paths));
        }
        EventKind::Access(_) | EventKind::Any | EventKind::Other => return None,
    };
    Some(Raw::Changed(kind, event.paths))
}

/// How recent a file's mtime must be for an attribute event to count as a change: `touch` sets
/// it to now, a `chmod` or a container's `chown -R` leaves it where it was. Generous, for a
/// loaded machine where the event is read late.
const TOUCHED_WITHIN: Duration = Duration::from_secs(2);

/// Whether an attribute event on `meta`'s file is a `touch` rather than a permission change.
fn touched_now(meta: &std::fs::Metadata) -> bool {
    match meta.modified() {
        Ok(mtime) => match std::time::SystemTime::now().duration_since(mtime) {
            Ok(age) => age < TOUCHED_WITHIN,
            Err(_) => true, // in the future: set just now, by a clock ahead of ours
        },
        Err(_) => true, // no mtime to judge by: count it, as before
    }
}

/// The paths of `set` at and below `dir`: one range, since paths order component by component and
/// a folder's descendants follow it. Every gone path asks (each file of an `rm -rf`), and a look
/// at every watched directory for each was most of the watcher's time (100,000 files in 5,000
/// folders, half of it deleted: 8 s of CPU, the batch 5 s after `rm`).
fn at_and_below<'a>(
    set: &'a BTreeSet<PathBuf>,
    dir: &'a Path,
) -> impl Iterator<Item = &'a PathBuf> {
    use std::ops::Bound;
    set.range::<Path, _>((Bound::Included(dir), Bound::Unbounded))
        .take_while(move |path| path.starts_with(dir))
}

/// The watcher and what it knows about the tree.
struct Watching {
    /// The one watcher; dropped (stopping its thread) when the task ends.
    watcher: Box<dyn Watcher + Send>,
    filter: Filter,
    /// Directories with a watch, to avoid double registration and to forget removed ones. Ordered,
    /// so that those at and below a path are one range ([`at_and_below`]).
    watched: BTreeSet<PathBuf>,
    /// Watched directories that have held a file (not ignored) since they were watched. A folder
    /// tree that never held one goes without a batch: a compiler's scratch folder (`rustc`'s
    /// `rustcXXXXXX/raw-dylibs`, made and deleted around every build) was reported by its name,
    /// and a tab with nothing to swap for it reloaded.
    with_files: BTreeSet<PathBuf>,
    /// Roots that vanished; re-armed when they exist again.
    missing: Vec<PathBuf>,
    /// The watch-limit error is explained once, not once per directory.
    limit_reported: bool,
    /// The files the process's output ends up in have been looked for (at the first event).
    own_output_found: bool,
    /// Trees to look through again once the batch is complete ([`Self::rescan`]): done once
    /// per batch, off the runtime's threads, however many events asked for it.
    to_rescan: Vec<PathBuf>,
    /// Whether the watcher reports a file's close after writing (inotify does; polling and the
    /// other platforms' APIs do not), so a batch can wait for a write to end.
    closes_reported: bool,
    /// Files of the open batch written to and not yet closed: a copy or a generator under way.
    open_writes: HashSet<PathBuf>,
    /// Files still open for writing when a batch went out at its cap (a server's output
    /// redirected into the project, a log by another name): not waited for again until closed,
    /// or every batch they are in would wait out the cap.
    long_writes: HashSet<PathBuf>,
    /// Files of the open batch that may be an atomic save's temporary copy
    /// ([`filter::may_be_save_temp`]): the batch waits for them to be renamed away.
    maybe_temps: HashSet<PathBuf>,
    /// Files of the open batch that went by being moved aside to a backup name of their own
    /// ([`filter::backed_up`]: JetBrains' safe write, vim's `backupcopy=no`): the new version is
    /// about to be renamed in, and the batch waits for it. Sent without it, the batch reloaded
    /// the page while the file was missing (a 404), and the new version was a second batch.
    vacated: HashSet<PathBuf>,
    /// Directories left unwatched for want of watches or handles (told once, with a count).
    unwatched: usize,
    /// What the files of past batches held: a generator's pages written again unchanged leave a
    /// bulk batch ([`Unchanged`]).
    unchanged: Unchanged,
}

impl Watching {
    /// Watch `dir` and every non-ignored directory below it. When `found` is given, files met on
    /// the way are pushed to it (a directory that appeared may already hold files).
    fn register_tree(&mut self, dir: &Path, found: Option<&mut Vec<PathBuf>>) {
        self.walk(dir, found, false);
    }

    /// Look through the whole tree at `dir` again, watched directories included, and watch what
    /// is not yet: directories made while events were lost (a full queue, an inotify overflow),
    /// or no longer ignored after an ignore file changed. Costs a walk of the tree (about 0.4 s
    /// for 100,000 files), so only on those rare occasions.
    fn rescan(&mut self, dir: &Path) {
        let before = self.watched.len();
        self.walk(dir, None, true);
        let added = self.watched.len() - before;
        if added > 0 {
            tracing::debug!("{added} more directories watched under {}", dir.display());
        }
    }

    fn walk(&mut self, dir: &Path, mut found: Option<&mut Vec<PathBuf>>, through_watched: bool) {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if self.watched.contains(&dir) {
                if !through_watched {
                    continue;
                }
            } else {
                if let Err(err) = self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                    self.report_watch_error(&dir, err);
                    continue;
                }
                self.watched.insert(dir.clone());
                self.filter.load_ignore_files(&dir);
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut holds_a_file = false;
            for entry in entries.flatten() {
                let Ok(file_type) = entry.file_type() else {
                    continue;
                };
                let path = entry.path();
                if file_type.is_dir() {
                    if !self.filter.is_ignored(&path, true) {
                        stack.push(path);
                    }
                } else if !self.filter.is_ignored(&path, false) {
                    holds_a_file = true;
                    if let Some(found) = found.as_deref_mut() {
                        found.push(path);
                    }
                }
            }
            // Once per folder, not per file: this walk is the start-up's (100,000 files).
            if holds_a_file {
                self.with_files.insert(dir);
            }
        }
    }

    fn report_watch_error(&mut self, dir: &Path, err: notify::Error) {
        let limit = matches!(err.kind, notify::ErrorKind::MaxFilesWatch)
            || matches!(&err.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(28));
        let handles =
            matches!(&err.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(24));
        if limit || handles {
            self.unwatched += 1;
            if !self.limit_reported {
                self.limit_reported = true;
                let what = if limit {
                    "the inotify watch limit is reached (fs.inotify.max_user_watches); raise it with \
                     `sudo sysctl fs.inotify.max_user_watches=524288` and restart"
                } else {
                    "too many open files (ulimit -n); raise the limit and restart"
                };
                tracing::error!(
                    "cannot watch {}: {what}, ignore large folders with --ignore, or use --poll",
                    dir.display()
                );
            }
        } else if matches!(&err.kind, notify::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied)
        {
            tracing::warn!(
                "cannot watch {}: permission denied; saves in it are not seen until this user \
                 may read it (then it is watched)",
                dir.display()
            );
        } else {
            // The kind alone: notify's own text appends the paths again, in debug syntax.
            let why = match &err.kind {
                notify::ErrorKind::Io(io) => io.to_string(),
                notify::ErrorKind::Generic(text) => text.clone(),
                other => format!("{other:?}"),
            };
            tracing::warn!("cannot watch {}: {why}", dir.display());
        }
    }

    /// Fold one raw event into the pending batch.
    fn absorb(&mut self, raw: Raw, pending: &mut Pending) {
        if !self.own_output_found {
            // Looked for now, not at start: a pipeline's reader (`| tee dev.txt`) starts beside
            // the proxy and may open its file a moment later; by the first event it has.
            self.own_output_found = true;
            self.filter.refresh_own_output();
        }
        let (kind, paths) = match raw {
            Raw::Changed(kind, paths) => (kind, paths),
            Raw::Closed(paths) => {
                for path in &paths {
                    self.open_writes.remove(path);
                    self.long_writes.remove(path);
                }
                return;
            }
            Raw::Rescan => {
                tracing::warn!("the file watcher lost events; reloading");
                pending.reload_for("the file watcher lost events".to_string());
                self.rescan_roots();
                return;
            }
            Raw::Failed(err) => {
                tracing::warn!("file watcher: {err}");
                return;
            }
        };
        for path in paths {
            let meta = std::fs::symlink_metadata(&path);
            match meta.as_ref().map(std::fs::Metadata::is_dir) {
                Ok(true) => {
                    // A folder this user could not watch (permission denied), whose permissions
                    // changed: perhaps it can be watched now.
                    let retry = kind == Kind::Attributes && !self.watched.contains(&path);
                    if (kind.names() || retry) && !self.filter.is_ignored(&path, true) {
                        // A directory that is here after an event about its name may be another
                        // one than the directory watched under that name (renamed in over it,
                        // deleted and made again), whose watches the kernel has dropped: its
                        // tree is watched afresh.
                        self.unwatch_below(&path);
                        let mut found = Vec::new();
                        self.register_tree(&path, Some(&mut found));
                        for file in found {
                            pending.add(file, Seen::Created);
                        }
                    }
                }
                Ok(false) => {
                    if self.filter.is_ignored(&path, false) {
                        continue;
                    }
                    // Back after being moved aside: the new version is in.
                    self.vacated.remove(&path);
                    if let Some(dir) = path.parent()
                        && !self.with_files.contains(dir)
                        && self.watched.contains(dir)
                    {
                        self.with_files.insert(dir.to_path_buf());
                    }
                    if kind == Kind::Attributes && meta.as_ref().is_ok_and(|m| !touched_now(m)) {
                        continue;
                    }
                    // Written, or made (a regular file is made by opening it: `cp` of a large
                    // file writes it all in one call just before closing it, and the creation
                    // alone went out, a tab reloading onto an empty file).
                    let made = kind == Kind::Created
                        && meta.as_ref().is_ok_and(|m| m.file_type().is_file());
                    match kind {
                        Kind::Written | Kind::Created
                            if (kind == Kind::Written || made)
                                && self.closes_reported
                                && !self.long_writes.contains(&path) =>
                        {
                            self.open_writes.insert(path.clone());
                        }
                        Kind::Removed | Kind::Renamed => {
                            self.open_writes.remove(&path);
                        }
                        _ => {}
                    }
                    if kind == Kind::Created && filter::may_be_save_temp(&path) {
                        self.maybe_temps.insert(path.clone());
                    }
                    if filter::IGNORE_FILES.iter().any(|n| path.ends_with(n))
                        && let Some(dir) = path.parent()
                    {
                        self.filter.load_ignore_files(dir);
                        // A folder it no longer ignores was never watched.
                        self.to_rescan.push(dir.to_path_buf());
                    }
                    let how = match kind {
                        Kind::Created | Kind::Renamed => Seen::Created,
                        Kind::Modified | Kind::Written | Kind::Attributes | Kind::Removed => {
                            Seen::Changed
                        }
                    };
                    pending.add(path, how);
                }
                Err(_) => {
                    // Gone: a deleted file, a renamed-away name, or a removed directory. Created
                    // and already gone is an editor's temp file, which the batch drops. What it
                    // was is no longer on disk to ask: a directory if it was watched, and
                    // otherwise either (an ignored directory, `node_modules` or a `build/` of
                    // .gitignore, was never watched, and its removal changes nothing served).
                    let was_dir = self.watched.contains(&path);
                    let held_files =
                        was_dir && at_and_below(&self.with_files, &path).next().is_some();
                    let ignored = if was_dir {
                        self.filter.is_ignored(&path, true)
                    } else {
                        self.filter.is_ignored(&path, false) || self.filter.is_ignored(&path, true)
                    };
                    self.open_writes.remove(&path);
                    self.long_writes.remove(&path);
                    let was_temp = self.maybe_temps.remove(&path);
                    self.forget(&path, pending);
                    // Moved aside to a backup of itself (or, polling, seen gone beside one): its
                    // new version is about to be renamed in, and the batch waits for it.
                    if !was_dir
                        && !ignored
                        && matches!(kind, Kind::Renamed | Kind::Removed)
                        && filter::backed_up(&path)
                    {
                        self.vacated.insert(path.clone());
                    }
                    // A save's copy renamed over its file, which is reported under its own name:
                    // no change of its own, even when the copy outlived a batch (the cap) and was
                    // reported there. Reported again, it named a file that is not there, and
                    // reloaded the page a second time.
                    let copy_renamed = kind == Kind::Renamed
                        && !was_dir
                        && (was_temp || filter::may_be_save_temp(&path));
                    // An ignore file deleted: its rules go, and what they hid is watched.
                    if filter::IGNORE_FILES.iter().any(|n| path.ends_with(n))
                        && let Some(dir) = path.parent()
                    {
                        self.filter.load_ignore_files(dir);
                        self.to_rescan.push(dir.to_path_buf());
                    }
                    if !ignored && !copy_renamed {
                        let how = match kind {
                            Kind::Created => Seen::Created,
                            _ => Seen::Changed,
                        };
                        if was_dir {
                            pending.add_gone_dir(path, held_files);
                        } else {
                            pending.add(path, how);
                        }
                    }
                }
            }
        }
    }

    /// A file of the open batch is still being written, may be a copy about to be renamed, or
    /// was moved aside for a new version not there yet.
    fn unsettled(&self) -> bool {
        !self.open_writes.is_empty() || !self.maybe_temps.is_empty() || !self.vacated.is_empty()
    }

    /// Drop the watches at and below `dir`: every one, since a tree moved elsewhere keeps its
    /// watches, and its saves were reported under the old paths. True when there were any.
    fn unwatch_below(&mut self, dir: &Path) -> bool {
        let below: Vec<PathBuf> = at_and_below(&self.watched, dir).cloned().collect();
        for watched in &below {
            // Already gone from the kernel, for a directory deleted: nothing to report.
            let _ = self.watcher.unwatch(watched);
            self.watched.remove(watched);
            self.with_files.remove(watched);
        }
        !below.is_empty()
    }

    /// Drop watches at or below a path that no longer exists; a vanished root is re-armed later.
    fn forget(&mut self, gone: &Path, pending: &mut Pending) {
        if !self.unwatch_below(gone) {
            return;
        }
        let roots: Vec<PathBuf> = self.filter.root_dirs().map(Path::to_path_buf).collect();
        for root in roots {
            if root.starts_with(gone) && !self.missing.contains(&root) {
                tracing::warn!(
                    "watched directory {} was removed; watching again when it comes back",
                    root.display()
                );
                pending.reload_for(format!("watched directory {} was removed", root.display()));
                self.missing.push(root);
            }
        }
    }

    /// Ask for [`Self::rescan`] of every root that is there.
    fn rescan_roots(&mut self) {
        let roots: Vec<PathBuf> = self
            .filter
            .root_dirs()
            .filter(|root| !self.missing.iter().any(|gone| gone == root))
            .map(Path::to_path_buf)
            .collect();
        self.to_rescan.extend(roots);
    }

    /// The rescans asked for, each tree once (one inside another is covered by it).
    fn run_rescans(&mut self) {
        let mut dirs = std::mem::take(&mut self.to_rescan);
        dirs.sort();
        dirs.dedup();
        let mut done: Vec<PathBuf> = Vec::new();
        for dir in dirs {
            if done.iter().any(|outer| dir.starts_with(outer)) {
                continue;
            }
            self.rescan(&dir);
            done.push(dir);
        }
    }

    /// Re-arm roots that exist again; when any came back, the reload's reason that says so.
    fn rearm(&mut self) -> Option<String> {
        let back: Vec<PathBuf> = self
            .missing
            .iter()
            .filter(|root| root.is_dir())
            .cloned()
            .collect();
        for root in &back {
            tracing::info!("watched directory {} is there now", root.display());
            self.register_tree(root, None);
        }
        self.missing.retain(|root| !back.contains(root));
        back.first()
            .map(|root| format!("watched directory {} is there now", root.display()))
    }

    /// The pending batch as changes with URLs.
    fn finish(&mut self, mut pending: Pending) -> ChangeBatch {
        let reason = pending.reason.take();
        let (paths, reload) =
            pending.finish(|path| std::fs::symlink_metadata(path).ok().map(|m| m.is_dir()));
        let paths = self.unchanged.drop_unchanged(paths);
        let changes = paths
            .iter()
            .filter_map(|path| self.filter.locate(path))
            .filter(|located| !located.rel.is_empty())
            .map(|Located { rel, url, .. }| Change { path: rel, url })
            .collect();
        ChangeBatch {
            changes,
            reload,
            reason: reload.then_some(reason).flatten(),
        }
    }
}

/// Files that keep changing, batch after batch: a log not named `*.log`, a database, a server's
/// output redirected into the project. Each batch reloads every open tab, for as long as the file
/// is written, and nothing said why: the file is named once, with the fix. So is a folder that
/// gets a file of a new name in batch after batch (a session or cache file the server writes for
/// each request: each reload wrote the next, and the tab reloaded for ever).
#[derive(Default)]
struct Restless {
    /// The paths of the last batch, and in how many batches in a row each has been.
    streak: Vec<(String, u32)>,
    /// The same for the folders of the files new in each batch (not seen in this streak).
    folders: Vec<(String, u32)>,
    /// The paths seen in this streak of batches close together (two files saved by turns are
    /// no new names).
    seen: HashSet<String>,
    /// When the last batch went out: a streak is of batches close together.
    last: Option<Instant>,
    said: HashSet<String>,
}

/// Batches in a row a file must be in to be named, each within [`RESTLESS_GAP`] of the one
/// before: ten seconds and more of a file changing without a pause (a developer saving by hand
/// pauses; an editor saving on every keystroke is told apart by the wording only).
const RESTLESS_BATCHES: u32 = 10;
const RESTLESS_GAP: Duration = Duration::from_millis(1500);
/// Paths a streak remembers before it starts over (a loop that writes a new name each time).
const SEEN_AT_MOST: usize = 10_000;

impl Restless {
    /// Take in a batch sent at `now`; true when it named a file (for the tests).
    fn note(&mut self, batch: &ChangeBatch, now: Instant) -> bool {
        let mut named = false;
        let close = self
            .last
            .replace(now)
            .is_some_and(|last| now.duration_since(last) < RESTLESS_GAP);
        let (streak, folders) = if close {
            (
                std::mem::take(&mut self.streak),
                std::mem::take(&mut self.folders),
            )
        } else {
            self.streak.clear();
            self.folders.clear();
            self.seen.clear();
            (Vec::new(), Vec::new())
        };
        if self.seen.len() > SEEN_AT_MOST {
            self.seen.clear();
        }
        for change in &batch.changes {
            let before = streak
                .iter()
                .find(|(path, _)| *path == change.path)
                .map_or(0, |(_, n)| *n);
            // A folder, not the watched one itself: `--ignore` could not name that.
            if self.seen.insert(change.path.clone())
                && let Some((folder, _)) = change.path.rsplit_once('/')
                && !self.folders.iter().any(|(f, _)| f == folder)
            {
                let count = 1 + folders
                    .iter()
                    .find(|(f, _)| f == folder)
                    .map_or(0, |(_, n)| *n);
                let key = format!("{folder}/");
                if count == RESTLESS_BATCHES && self.said.insert(key.clone()) {
                    named = true;
                    tracing::warn!(
                        "{key} has had a file of a new name in each of the last {count} \
                         batches, without a pause: if the server writes one there for each \
                         request (sessions, a cache), every open tab reloads for ever; \
                         --ignore '{key}'"
                    );
                }
                self.folders.push((folder.to_string(), count));
            }
            let count = before + 1;
            if count == RESTLESS_BATCHES && self.said.insert(change.path.clone()) {
                named = true;
                tracing::warn!(
                    "{} changed in each of the last {count} batches, without a pause: if it is \
                     written continuously (a log, a database, a server's output), every open tab \
                     reloads each time; --ignore it",
                    change.path
                );
            }
            self.streak.push((change.path.clone(), count));
        }
        named
    }
}

/// The rest of a burst into `pending` ([`batch::collect`]), each event's quiet and cap decided by
/// the paths the batch holds by then; false when the watcher is gone.
async fn collect_rest(
    raw_rx: &mut mpsc::Receiver<Raw>,
    state: &mut Watching,
    pending: &mut Pending,
    (opened, window): (Instant, batch::Window),
) -> bool {
    batch::collect(raw_rx, opened, window, pending.len(), |raw| {
        state.absorb(raw, pending);
        pending.len()
    })
    .await
}

async fn run(
    mut state: Watching,
    mut raw_rx: mpsc::Receiver<Raw>,
    tx: mpsc::Sender<ChangeBatch>,
    overflow: Arc<AtomicBool>,
    debounce: Duration,
    round: Option<poll::Round>,
    shutdown: Shutdown,
) {
    // When the last batches went out: a burst that follows them closely waits longer (`batch`).
    let mut recent = batch::Recent::default();
    let mut restless = Restless::default();
    let mut rearm = tokio::time::interval(REARM_INTERVAL);
    rearm.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut pending = Pending::default();
        let first = tokio::select! {
            raw = raw_rx.recv() => match raw {
                Some(raw) => raw,
                None => break,
            },
            _ = rearm.tick(), if !state.missing.is_empty() => {
                if let Some(why) = state.rearm() {
                    pending.reload_for(why);
                    if tx.send(state.finish(pending)).await.is_err() {
                        break;
                    }
                }
                continue;
            }
            _ = shutdown.cancelled() => break,
        };
        state.absorb(first, &mut pending);
        let opened = Instant::now();
        // Polling, a bulk write's next slice comes a pass later: the pass as it is now.
        let window = recent.window(debounce, opened, round.as_ref().map(poll::Round::get));
        let mut open = collect_rest(&mut raw_rx, &mut state, &mut pending, (opened, window)).await;
        // Quiet, yet a file written in this batch may still be open for writing (a copy under
        // way, a generator writing in parts, a script pausing between writes): its close is the
        // end of the write, which the page must not be reloaded before. Or a file made in it may
        // be an atomic save's copy, about to be renamed over the file it is named after (or over
        // any, for a temp file maker's name). Or a file moved aside to its backup name is about to
        // be replaced by its new version. Waited for up to the window cap; with `--debounce 0`
        // too, which waits for no quiet but still for a save to end: its truncation and its bytes
        // were two batches, and a stylesheet was swapped twice, the second swap queued behind the
        // first.
        while open && state.unsettled() {
            let cap = window.cap(pending.len());
            match tokio::time::timeout_at(opened + cap, raw_rx.recv()).await {
                Ok(Some(raw)) => {
                    state.absorb(raw, &mut pending);
                    open =
                        collect_rest(&mut raw_rx, &mut state, &mut pending, (opened, window)).await;
                }
                Ok(None) => open = false,
                Err(_) => break,
            }
        }
        // Still open at the cap: written for longer than a batch waits, and not waited for again
        // until it has been closed.
        let still_open = std::mem::take(&mut state.open_writes);
        state.long_writes.extend(still_open);
        state.maybe_temps.clear();
        state.vacated.clear();
        if overflow.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "more than {RAW_QUEUE} file events at once (a checkout, a deletion or a build of \
                 thousands of files): tabs reload instead of taking the changes one by one, and \
                 the watched folders are looked at again; if that folder is no page's, \
                 --ignore it"
            );
            pending.reload_for(format!("more than {RAW_QUEUE} file events at once"));
            // Among the events dropped, a new directory's: it would never be watched.
            state.rescan_roots();
        }
        if !state.to_rescan.is_empty() {
            // A walk of the tree (0.4 s for 100,000 files) must not hold a runtime thread.
            state = match tokio::task::spawn_blocking(move || {
                state.run_rescans();
                state
            })
            .await
            {
                Ok(state) => state,
                Err(err) => {
                    tracing::error!("the file watcher stopped: {err}");
                    break;
                }
            };
        }
        if !pending.is_empty() {
            let paths = pending.len();
            let batch = state.finish(pending);
            if !batch.changes.is_empty() || batch.reload {
                restless.note(&batch, Instant::now());
                if tx.send(batch).await.is_err() {
                    break;
                }
                recent.sent(paths, Instant::now());
            }
        }
        if !open {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folders_range_holds_it_and_its_descendants_only() {
        let set: BTreeSet<PathBuf> = [
            "/p", "/p/a", "/p/a/b", "/p/a/b/c", "/p/a-b", "/p/a.b", "/p/ab", "/p/a0/x", "/q",
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect();
        let below = |dir: &str| -> Vec<String> {
            at_and_below(&set, Path::new(dir))
                .map(|p| p.display().to_string())
                .collect()
        };
        assert_eq!(below("/p/a"), ["/p/a", "/p/a/b", "/p/a/b/c"]);
        assert_eq!(below("/p/a/"), ["/p/a", "/p/a/b", "/p/a/b/c"]);
        assert_eq!(below("/p/a/b/c"), ["/p/a/b/c"]);
        // Not watched itself, with a watched folder below (a root inside an ignored folder).
        assert_eq!(below("/p/a0"), ["/p/a0/x"]);
        assert!(below("/p/a/x").is_empty());
        assert_eq!(below("/p").len(), 8);
    }

    fn batch(paths: &[&str]) -> ChangeBatch {
        ChangeBatch::of(paths)
    }

    #[test]
    fn a_file_in_batch_after_batch_without_a_pause_is_named_once() {
        let mut restless = Restless::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // Saved by hand, with pauses: never named, however often.
        for i in 0..20 {
            assert!(!restless.note(&batch(&["css/site.css"]), at(i * 2000)));
        }
        // Written continuously, beside other saves: named at the tenth batch in a row, once.
        let mut named = Vec::new();
        for i in 0..25 {
            let paths: &[&str] = if i % 3 == 0 {
                &["server.out", "index.html"]
            } else {
                &["server.out"]
            };
            named.push(restless.note(&batch(paths), at(60_000 + i * 500)));
        }
        let when: Vec<usize> = (0..named.len()).filter(|&i| named[i]).collect();
        assert_eq!(when, [9]);
    }

    /// A file of a new name in one folder, batch after batch without a pause (a session file for
    /// each request, each reload writing the next): the folder is named at the tenth, once;
    /// saves by hand with pauses never.
    #[test]
    fn a_folder_with_a_new_file_in_batch_after_batch_is_named_once() {
        let mut restless = Restless::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        for i in 0..20 {
            let path = format!("notes/n{i}.md");
            assert!(!restless.note(&batch(&[&path]), at(i * 2000)));
        }
        let mut named = Vec::new();
        for i in 0..25 {
            let path = format!("storage/sessions/s{i}");
            named.push(restless.note(&batch(&[&path, "index.html"]), at(60_000 + i * 300)));
        }
        let when: Vec<usize> = (0..named.len()).filter(|&i| named[i]).collect();
        // index.html, in every batch, is named at the tenth too: it is the same file each time.
        assert_eq!(when, [9]);
        assert!(restless.said.contains("storage/sessions/"));
        assert!(restless.said.contains("index.html"));
        // Two files saved by turns, without a pause: no new names, only the files themselves.
        let mut restless = Restless::default();
        for i in 0..25 {
            let path = if i % 2 == 0 { "css/a.css" } else { "css/b.css" };
            restless.note(&batch(&[path]), at(120_000 + i * 300));
        }
        assert!(!restless.said.contains("css/"), "{:?}", restless.said);
    }
}
