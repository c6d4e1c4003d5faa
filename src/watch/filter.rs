//! Which paths under the watched roots matter: built-in ignores, `.gitignore`/`.ignore` files and
//! user globs, applied both when directories are registered (so ignored trees are never watched)
//! and to every event (so ignored files never reach a batch). In a git repository, git's other
//! sources too, with git's precedence: the ignore files in the folders above a watched root up to
//! the repository's top, then `info/exclude`, then the global excludes file (`core.excludesFile`).
//!
//! Owns [`Filter`]: mapping an absolute path to its root and URL, and the ignore decision. It does
//! no watching and no batching. Paths outside every root are treated as ignored, never passed to
//! the `ignore` crate (whose matcher panics on them).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use globset::{Glob, GlobSet, GlobSetBuilder};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::config::WatchRoot;

/// Directories never worth watching: version control, dependencies, build output, caches. A
/// `node_modules` alone can hold hundreds of thousands of entries and exhaust inotify's watches.
/// Frameworks' own working folders are here too: Next.js rewrites `.next` on every request in
/// dev, Phoenix compiles into `_build` when a request comes, Sprockets caches into `tmp`, so in a
/// project watched from its top (the default) each page load was a change that reloaded the page,
/// for ever; and what they build there is served by their own dev server, which has its own HMR.
/// And IDEs' and tools' state, which no page loads: JetBrains rewrites `.idea/workspace.xml` on
/// its own (when the window loses focus, on the way to the browser), VS Code's local history
/// extension copies every save into `.history`, coverage runs write `.nyc_output`. Not
/// `coverage/`: its HTML report is a page, and is gitignored where it is not wanted.
const IGNORED_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "target",
    "__pycache__",
    ".venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    ".next",
    ".nuxt",
    ".svelte-kit",
    ".astro",
    ".angular",
    ".turbo",
    ".parcel-cache",
    ".vite",
    ".cache",
    ".docusaurus",
    ".jekyll-cache",
    ".gradle",
    "_build",
    "tmp",
    ".idea",
    ".vscode",
    ".vs",
    ".fleet",
    ".history",
    ".nyc_output",
    ".sass-cache",
];

/// Editor swap, backup and temporary files: vim (`.swp`, `4913` probe, `~`), Emacs (`.#x` lock,
/// `#x#` auto-save, written while typing), Kate, JetBrains safe-write, GNOME's gio, and generic
/// `.tmp`. And logs: no page loads one, and a dev server (or this proxy, its output redirected
/// into the project) writes one on every request, so a log that counted as a change would
/// reload every tab, whose requests write the log again, for ever. And SQLite databases with
/// their journals (Django's `db.sqlite3` sits at the project's top and is written by every login
/// and session), for the same reason. And tools' state that no page loads: lint caches written by
/// each lint-on-save (`--cache`), TypeScript's incremental build info, Python's bytecode outside
/// `__pycache__`, LibreOffice's lock files, NFS's silly-renamed open files, Chrome's swap files
/// of the File System Access API, and package managers' lockfiles (`npm install` rewrote
/// `package-lock.json` beside `package.json`; the manifest stays, a page may fetch it for its
/// version).
const IGNORED_FILES: &[&str] = &[
    "*.swp",
    "*.swx",
    "*.swo",
    "*~",
    ".#*",
    "#*#",
    "*.kate-swp",
    "4913",
    "*.tmp",
    "*___jb_tmp___",
    "*___jb_old___",
    ".goutputstream-*",
    ".DS_Store",
    "*.log",
    "nohup.out",
    "*.sqlite",
    "*.sqlite3",
    "*.sqlite-*",
    "*.sqlite3-*",
    "*.db",
    "*.db-journal",
    "*.db-wal",
    "*.db-shm",
    "npm-debug.log*",
    ".eslintcache",
    ".stylelintcache",
    "*.tsbuildinfo",
    "*.pyc",
    "*.pyo",
    ".~lock.*#",
    ".nfs*",
    "*.crswap",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lock",
    "bun.lockb",
    "deno.lock",
    "Cargo.lock",
    "composer.lock",
    "Gemfile.lock",
    "poetry.lock",
    "Pipfile.lock",
    "uv.lock",
    "mix.lock",
];

/// Names of ignore files honoured in every watched directory.
pub const IGNORE_FILES: [&str; 2] = [".gitignore", ".ignore"];

/// A glob failed to compile (config validates globs first, so this is a bug or a race).
#[derive(Debug, thiserror::Error)]
#[error("ignore glob `{glob}`: {source}")]
pub struct FilterError {
    glob: String,
    #[source]
    source: globset::Error,
}

/// One watched root as the filter sees it.
#[derive(Debug)]
struct Root {
    dir: PathBuf,
    url: String,
    /// User globs (global `--ignore` plus this root's own), matched against the relative path.
    globs: Globs,
    /// The git repository the root is in, if any.
    repo: Option<Repo>,
}

/// The git repository a watched root is in: where git's ignore sources from outside the root
/// apply (only there, as git reads them only there).
#[derive(Debug)]
struct Repo {
    /// The folder holding `.git` (a folder, or for a worktree or submodule a file naming one).
    top: PathBuf,
    /// `info/exclude`, then the global excludes file: below every `.gitignore` in precedence, and
    /// in that order between themselves, as in git.
    excludes: Vec<Gitignore>,
}

/// User globs in the order given; a `!glob` re-includes what an earlier one ignored, as in a
/// `.gitignore` (the last glob that matches decides).
#[derive(Debug)]
struct Globs {
    set: GlobSet,
    /// Whether each of `set`'s globs, by index, came from a `!glob`.
    negated: Vec<bool>,
    /// Whether each matches folders alone (`dist/`, `!*/`).
    dirs_only: Vec<bool>,
}

impl Globs {
    fn ignore(&self, rel: &Path, is_dir: bool) -> bool {
        self.set
            .matches(rel)
            .into_iter()
            .filter(|&i| is_dir || !self.dirs_only[i])
            .max()
            .is_some_and(|last| !self.negated[last])
    }
}

/// The ignore rules for all roots.
#[derive(Debug)]
pub struct Filter {
    roots: Vec<Root>,
    files: GlobSet,
    /// `.gitignore`/`.ignore` matchers by the directory that holds them; refreshed when one changes.
    ignore_files: HashMap<PathBuf, Gitignore>,
    /// The files this process's own output goes to (see [`own_output_files`]).
    own_output: Vec<PathBuf>,
}

/// Where a path sits: its root's index, its path relative to the root with `/` separators, and
/// its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub root: usize,
    pub rel: String,
    pub url: String,
}

impl Filter {
    /// The rules for `roots`, with the global `--ignore` globs, and git's excludes file as git
    /// finds it (`core.excludesFile`, by default `$XDG_CONFIG_HOME/git/ignore`).
    pub fn new(roots: &[WatchRoot], global: &[String]) -> Result<Filter, FilterError> {
        let excludes_file = ignore::gitignore::gitconfig_excludes_path();
        Filter::with_excludes_file(roots, global, excludes_file.as_deref())
    }

    /// [`Filter::new`] with the global excludes file given (a test's own, not the user's).
    fn with_excludes_file(
        roots: &[WatchRoot],
        global: &[String],
        excludes_file: Option<&Path>,
    ) -> Result<Filter, FilterError> {
        let mut built = Vec::new();
        for root in roots {
            let globs = glob_set(global.iter().chain(root.ignore.iter()))?;
            built.push(Root {
                dir: root.dir.clone(),
                url: root.url.clone(),
                globs,
                repo: Repo::of(&root.dir, excludes_file),
            });
        }
        let mut filter = Filter {
            roots: built,
            files: glob_set(IGNORED_FILES.iter())?.set,
            ignore_files: HashMap::new(),
            // Found at the first event (see `refresh_own_output`): no file event is judged before.
            own_output: Vec::new(),
        };
        // The ignore files in the folders above each root, up to its repository's top: read once,
        // here (those folders are not watched, so an edit there needs a restart), beside the
        // ones the watch reads in the folders it registers.
        let above: Vec<PathBuf> = filter
            .roots
            .iter()
            .filter_map(|root| {
                let top = &root.repo.as_ref()?.top;
                Some(
                    root.dir
                        .ancestors()
                        .skip(1)
                        .take_while(|dir| dir.starts_with(top))
                        .map(Path::to_path_buf)
                        .collect::<Vec<_>>(),
                )
            })
            .flatten()
            .collect();
        for dir in above {
            filter.load_ignore_files(&dir);
        }
        Ok(filter)
    }

    /// Look for the files this process's output ends up in (see [`own_output_files`]).
    pub fn refresh_own_output(&mut self) {
        self.own_output = own_output_files();
    }

    /// The root directories, in configuration order.
    pub fn root_dirs(&self) -> impl Iterator<Item = &Path> {
        self.roots.iter().map(|r| r.dir.as_path())
    }

    /// Read (or re-read) the ignore files in `dir`.
    pub fn load_ignore_files(&mut self, dir: &Path) {
        let present: Vec<PathBuf> = IGNORE_FILES
            .iter()
            .map(|name| dir.join(name))
            .filter(|p| p.is_file())
            .collect();
        if present.is_empty() {
            self.ignore_files.remove(dir);
            return;
        }
        let mut builder = GitignoreBuilder::new(dir);
        for file in &present {
            if let Some(err) = builder.add(file) {
                tracing::warn!("{}: {err}", file.display());
            }
        }
        match builder.build() {
            Ok(matcher) => {
                self.ignore_files.insert(dir.to_path_buf(), matcher);
            }
            Err(err) => tracing::warn!("ignore rules in {}: {err}", dir.display()),
        }
    }

    /// Which root `path` belongs to (the deepest one when roots nest), with its relative path and
    /// URL; `None` outside every root.
    pub fn locate(&self, path: &Path) -> Option<Located> {
        let (index, root) = self
            .roots
            .iter()
            .enumerate()
            .filter(|(_, r)| path.starts_with(&r.dir))
            .max_by_key(|(_, r)| r.dir.as_os_str().len())?;
        let rel_path = path.strip_prefix(&root.dir).ok()?;
        let mut parts = Vec::new();
        for component in rel_path.components() {
            match component {
                Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
                _ => return None,
            }
        }
        let rel = parts.join("/");
        let url = format!("{}{}", root.url, encode_path(&rel));
        Some(Located {
            root: index,
            rel,
            url,
        })
    }

    /// Whether `path` (absolute) is ignored. `is_dir` matters for directory-only rules (`dist/`).
    pub fn is_ignored(&self, path: &Path, is_dir: bool) -> bool {
        let Some(located) = self.locate(path) else {
            return true;
        };
        if located.rel.is_empty() {
            return false; // a root itself is never ignored
        }
        if self.own_output.iter().any(|own| own == path) {
            return true;
        }
        let root = &self.roots[located.root];
        let rel = Path::new(&located.rel);
        let mut components = rel.components().peekable();
        while let Some(Component::Normal(part)) = components.next() {
            let last = components.peek().is_none();
            let name = part.to_string_lossy();
            if (!last || is_dir) && IGNORED_DIRS.contains(&name.as_ref()) {
                return true;
            }
            if last && !is_dir && self.files.is_match(name.as_ref()) {
                return true;
            }
        }
        // A Python virtualenv by any name (`venv`, `env`, not only `.venv`): it holds its
        // `pyvenv.cfg`. Its 20,000 files cost a poller 7–10 % of a core while idle, and a
        // `pip install` into it was a batch that reloaded every tab. Asked when a folder is
        // registered (one look each), so what is below it never reports.
        if is_dir && path.join("pyvenv.cfg").is_file() {
            return true;
        }
        // A folder watched on its own inside another (`-w . -w static=/assets`) is still inside
        // it: the outer root's globs (relative to the outer root) and the ignore files above the
        // inner root apply too. Unless they ignore the inner folder itself (a gitignored build
        // folder, watched on purpose): then they stop at it.
        let mut outermost = root;
        for other in self.roots.iter().filter(|r| path.starts_with(&r.dir)) {
            if other.dir == root.dir {
                if root.globs.ignore(rel, is_dir) {
                    return true;
                }
                continue;
            }
            let inner = root.dir.strip_prefix(&other.dir).unwrap_or(Path::new(""));
            if other.globs.ignore(inner, true) {
                continue;
            }
            if let Ok(rel) = path.strip_prefix(&other.dir)
                && other.globs.ignore(rel, is_dir)
            {
                return true;
            }
            if other.dir.as_os_str().len() < outermost.dir.as_os_str().len() {
                outermost = other;
            }
        }
        if let Some(verdict) = self.ignore_files_say(path, is_dir, &root.dir) {
            return verdict;
        }
        // The rules from outside the watched folder, taken together: the outer watched folder's
        // ignore files above it, then git's from outside the watched folders. If they ignore the
        // folder itself (a gitignored build folder, watched on purpose) they stop at it, as git
        // never looks inside a folder it ignores.
        if self.outside_says(&root.dir, true, &root.dir, outermost) == Some(true) {
            return false;
        }
        self.outside_says(path, is_dir, &root.dir, outermost)
            .unwrap_or(false)
    }

    /// What the rules from outside the watched folder `root` say about `path` (see
    /// [`Self::is_ignored`]): the ignore files from above `root` up to `outermost`, the outermost
    /// watched folder it is in, and then git's from above that ([`Self::repo_says`]).
    fn outside_says(
        &self,
        path: &Path,
        is_dir: bool,
        root: &Path,
        outermost: &Root,
    ) -> Option<bool> {
        if outermost.dir != root
            && let Some(parent) = root.parent()
            && let Some(verdict) = self.ignore_files_say_from(path, is_dir, parent, &outermost.dir)
        {
            return Some(verdict);
        }
        let repo = outermost.repo.as_ref()?;
        self.repo_says(path, is_dir, &outermost.dir, repo)
    }

    /// What the ignore files from `path`'s folder up to `stop` say about it: ignored, kept (a
    /// `!` rule), or nothing.
    fn ignore_files_say(&self, path: &Path, is_dir: bool, stop: &Path) -> Option<bool> {
        self.ignore_files_say_from(path, is_dir, path.parent()?, stop)
    }

    /// The same, from the folder `start` up. Deepest ignore file first: a nested `!keep.css`
    /// overrides an ancestor's `*.css`.
    fn ignore_files_say_from(
        &self,
        path: &Path,
        is_dir: bool,
        start: &Path,
        stop: &Path,
    ) -> Option<bool> {
        let mut dir = Some(start);
        while let Some(d) = dir {
            if !d.starts_with(stop) {
                break;
            }
            if let Some(matcher) = self.ignore_files.get(d)
                && let Ok(rel) = path.strip_prefix(d)
                && let Some(verdict) = says(matcher, rel, is_dir)
            {
                return Some(verdict);
            }
            dir = d.parent();
        }
        None
    }

    /// What git's rules from outside the watched folder `root` say about `path` in it, in git's
    /// order: the ignore files in the folders above `root` up to the repository's top (deepest
    /// first), then `info/exclude`, then the global excludes file.
    fn repo_says(&self, path: &Path, is_dir: bool, root: &Path, repo: &Repo) -> Option<bool> {
        let rel = path.strip_prefix(&repo.top).ok()?;
        if rel.as_os_str().is_empty() {
            return None; // the repository's own folder
        }
        if let Some(parent) = root.parent()
            && let Some(verdict) = self.ignore_files_say_from(path, is_dir, parent, &repo.top)
        {
            return Some(verdict);
        }
        repo.excludes
            .iter()
            .find_map(|matcher| says(matcher, rel, is_dir))
    }
}

/// What one set of ignore rules says about `rel` (relative to the folder they apply from):
/// ignored, kept (a `!` rule), or nothing. Folder rules (`dist/`) hide the files inside that
/// folder too.
fn says(matcher: &Gitignore, rel: &Path, is_dir: bool) -> Option<bool> {
    let m = matcher.matched(rel, is_dir);
    if m.is_ignore() {
        return Some(true);
    }
    if m.is_whitelist() {
        return Some(false);
    }
    rel.ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .any(|a| matcher.matched(a, true).is_ignore())
        .then_some(true)
}

impl Repo {
    /// The repository `dir` is in (the nearest folder up holding `.git`), with its
    /// `info/exclude` and the global excludes file at `excludes_file`; `None` outside one.
    fn of(dir: &Path, excludes_file: Option<&Path>) -> Option<Repo> {
        let top = dir
            .ancestors()
            .find(|d| std::fs::symlink_metadata(d.join(".git")).is_ok())?;
        let info_exclude = git_dir(top).map(|git| git.join("info").join("exclude"));
        let excludes = [info_exclude.as_deref(), excludes_file]
            .into_iter()
            .flatten()
            .filter_map(|file| rules_from(top, file))
            .collect();
        Some(Repo {
            top: top.to_path_buf(),
            excludes,
        })
    }
}

/// The folder git keeps the repository at `top` in (where `info/exclude` is): its `.git`, or for
/// a worktree or a submodule, whose `.git` is a file (`gitdir: PATH`), the folder named there, or
/// the worktree's common folder (`commondir`).
fn git_dir(top: &Path) -> Option<PathBuf> {
    let dot_git = top.join(".git");
    if dot_git.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let named = text.lines().next()?.strip_prefix("gitdir:")?.trim();
    let git = top.join(named);
    match std::fs::read_to_string(git.join("commondir")) {
        Ok(common) => Some(git.join(common.trim())),
        Err(_) => Some(git),
    }
}

/// The rules of the ignore file `file`, matched from the folder `top`; `None` when there is no
/// such file or it holds no rule.
fn rules_from(top: &Path, file: &Path) -> Option<Gitignore> {
    if !file.is_file() {
        return None;
    }
    let mut builder = GitignoreBuilder::new(top);
    if let Some(err) = builder.add(file) {
        tracing::warn!("{}: {err}", file.display());
    }
    match builder.build() {
        Ok(rules) => (!rules.is_empty()).then_some(rules),
        Err(err) => {
            tracing::warn!("ignore rules in {}: {err}", file.display());
            None
        }
    }
}

/// The regular files this process's output ends up in: the files its standard output and error
/// are redirected to (`hmr-proxy > dev.log 2>&1` in the watched folder, whatever the file is
/// called), and those the processes reading them through a pipe write to (`hmr-proxy 2>&1 | tee
/// dev.txt`). Each log line would otherwise be a change, and each change a log line. Known on
/// Linux (`/proc`); elsewhere only the built-in `*.log` rule covers it.
fn own_output_files() -> Vec<PathBuf> {
    if !cfg!(target_os = "linux") {
        return Vec::new();
    }
    let mut files = Vec::new();
    let mut pipes = Vec::new();
    for fd in ["/proc/self/fd/1", "/proc/self/fd/2"] {
        let Ok(target) = std::fs::read_link(fd) else {
            continue;
        };
        if target.to_string_lossy().starts_with("pipe:") {
            pipes.push(target);
        } else if target.is_file() {
            files.push(target);
        }
    }
    if !pipes.is_empty() {
        files.extend(written_by_pipe_peers(&pipes));
    }
    files.sort();
    files.dedup();
    files
}

/// Regular files open for writing in the other processes that read one of `pipes` as their
/// standard input (the reader of a pipeline the proxy writes its log into). A scan of `/proc`,
/// done once, at the first file event, when a reader started beside the proxy has surely opened
/// its file.
fn written_by_pipe_peers(pipes: &[PathBuf]) -> Vec<PathBuf> {
    let own = std::process::id().to_string();
    let mut files = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return files;
    };
    for proc_dir in procs.flatten() {
        let pid = proc_dir.file_name();
        let pid = pid.to_string_lossy();
        if pid == own || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let fd_dir = proc_dir.path().join("fd");
        let Ok(fds) = std::fs::read_dir(&fd_dir) else {
            continue; // another user's process, or gone
        };
        let targets: Vec<(std::ffi::OsString, PathBuf)> = fds
            .flatten()
            .filter_map(|fd| Some((fd.file_name(), std::fs::read_link(fd.path()).ok()?)))
            .collect();
        // Only a pipeline's reader, which reads the pipe as its standard input (`tee`, `grep`):
        // a process manager or a test harness holds it elsewhere, and its files open for
        // writing at the moment of the scan may be the very files a developer saves.
        if !targets
            .iter()
            .any(|(fd, target)| fd == "0" && pipes.contains(target))
        {
            continue;
        }
        for (fd, target) in targets {
            let info = proc_dir.path().join("fdinfo").join(&fd);
            let writes = std::fs::read_to_string(info).ok().is_some_and(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("flags:"))
                    .and_then(|flags| u32::from_str_radix(flags.trim(), 8).ok())
                    .is_some_and(|flags| flags & 0o3 != 0)
            });
            if writes && target.is_absolute() && target.is_file() {
                files.push(target);
            }
        }
    }
    files
}

fn glob_set<'a>(globs: impl Iterator<Item = impl AsRef<str> + 'a>) -> Result<Globs, FilterError> {
    let mut builder = GlobSetBuilder::new();
    let (mut negated, mut dirs_only) = (Vec::new(), Vec::new());
    for glob in globs {
        let glob = glob.as_ref();
        let (negate, glob) = match glob.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, glob),
        };
        let mut add = |glob: Glob, dir_only: bool| {
            builder.add(glob);
            negated.push(negate);
            dirs_only.push(dir_only);
        };
        let compile = |text: &str| {
            Glob::new(text).map_err(|source| FilterError {
                glob: glob.to_string(),
                source,
            })
        };
        // `/dist` and `./dist` start from the watched folder, as in a `.gitignore`: paths are
        // matched relative to it and never start with either, so as written they matched
        // nothing.
        let (anchored, rel) = match glob.strip_prefix("./").or_else(|| glob.strip_prefix('/')) {
            Some(rel) => (true, rel),
            None => (false, glob),
        };
        // `dist/`, as a `.gitignore` writes it: that folder and everything in it (as a glob it
        // would match nothing, since no relative path ends in `/`), at any depth unless it names
        // a path (`web/dist/`) or is anchored, as in a `.gitignore`.
        match rel.strip_suffix('/').filter(|dir| !dir.is_empty()) {
            Some(dir) => {
                let dir = if anchored || dir.contains('/') {
                    dir.to_string()
                } else {
                    format!("**/{dir}")
                };
                add(compile(&dir)?, true);
                // What is in it, which a `!dist/` leaves to other globs, as git does.
                if !negate {
                    add(compile(&format!("{dir}/**"))?, false);
                }
            }
            None => {
                add(compile(rel)?, false);
                // `/dist` may name a folder, as `/dist/` does.
                if anchored {
                    add(compile(&format!("{rel}/**"))?, false);
                }
            }
        }
    }
    let set = builder.build().map_err(|source| FilterError {
        glob: String::new(),
        source,
    })?;
    Ok(Globs {
        set,
        negated,
        dirs_only,
    })
}

/// Whether the file at `path` may be the temporary copy an atomic save writes beside a file and
/// renames over it. Either the file's own name and a random suffix, as Qt's QSaveFile writes
/// (Kate, KDevelop: `app.css.Ab1234`), npm's write-file-atomic (`app.css.1f2a3b4c`) and rsync
/// (`.app.css.Xy12Ab`), told by the suffix (six letters and digits with a digit or a capital, or
/// eight hex digits) and by the file it is named after being there beside it. Or the name a temp
/// file maker gives, unrelated to the file ([`temp_file_name`]: Python's `tempfile`, `sed -i`).
/// When the copy outlives the batch window (an fsync before the rename is enough), it reloaded
/// every tab (a copy's name has no `.css` to swap a stylesheet by), and the stylesheet came a
/// batch later, beside the copy's name again. The name alone cannot tell (`page.html.jinja2`,
/// `app.js.sha256` are files of their own): the batch waits for such a file to be renamed away,
/// and reports it if it stays (see `watch`).
pub fn may_be_save_temp(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return false;
    };
    temp_file_name(name) || named_after_its_file(path, name)
}

/// The copy's name is the file's own with a random suffix, and the file is there beside it.
fn named_after_its_file(path: &Path, name: &str) -> bool {
    let unhidden = name.strip_prefix('.').unwrap_or(name);
    let Some((base, suffix)) = unhidden.rsplit_once('.') else {
        return false;
    };
    let bytes = suffix.as_bytes();
    let qt_or_rsync = bytes.len() == 6
        && bytes.iter().all(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    let murmur = bytes.len() == 8
        && bytes
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        && bytes.iter().any(u8::is_ascii_digit);
    // The file it stands in for has an extension of its own: `app.css`, not `Makefile`.
    (qt_or_rsync || murmur)
        && base.contains('.')
        && !base.starts_with('.')
        && path.parent().is_some_and(|dir| dir.join(base).is_file())
}

/// A name exactly as a temp file maker makes it, with no extension and nothing of the file it
/// will become: Python's `tempfile` (`mkstemp`, `NamedTemporaryFile`, and the `atomicwrites`
/// built on them: `tmp` and eight of `a-z0-9_`) and GNU `sed -i` (`sed` and six letters or
/// digits, from `mkostemp`). Only these exact shapes: a file of its own by such a name (rare
/// without an extension) is still reported, a cap later.
fn temp_file_name(name: &str) -> bool {
    let shaped = |prefix: &str, len: usize, allowed: fn(&u8) -> bool| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| rest.len() == len && rest.as_bytes().iter().all(allowed))
    };
    shaped("tmp", 8, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_'
    }) || shaped("sed", 6, u8::is_ascii_alphanumeric)
}

/// The names an editor moves a file aside to before renaming its new version in: JetBrains'
/// safe write (`X___jb_old___`), vim's `backupcopy=no` and Emacs's first save (`X~`).
const BACKUP_SUFFIXES: [&str; 2] = ["___jb_old___", "~"];

/// How recently the backup must have been made (its inode changed: a rename sets the ctime) to
/// count: an Emacs `X~` left by an earlier save must not make a plain deletion of `X` wait.
/// Generous, for a poller that sees the file gone a pass late on a big tree.
const BACKUP_FRESH: Duration = Duration::from_secs(10);

/// Whether the file at `path`, just gone, was moved aside to a backup name of itself a moment
/// ago ([`BACKUP_SUFFIXES`], there beside it and fresh): its new version is about to be renamed in
/// under its name. JetBrains waits between its two renames, 15 ms and more, and a batch sent in
/// between reloaded the page while the file was missing, and again for the new version.
pub fn backed_up(path: &Path) -> bool {
    let Some(name) = path.file_name() else {
        return false;
    };
    BACKUP_SUFFIXES.iter().any(|suffix| {
        let mut backup = name.to_os_string();
        backup.push(suffix);
        std::fs::symlink_metadata(path.with_file_name(backup))
            .is_ok_and(|meta| meta.is_file() && changed_within(&meta, BACKUP_FRESH))
    })
}

/// Whether the inode of `meta` changed (ctime) within `within` of now, or in the future (a clock
/// behind the file system's).
fn changed_within(meta: &std::fs::Metadata, within: Duration) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(secs), Ok(nanos)) = (
        u64::try_from(meta.ctime()),
        u32::try_from(meta.ctime_nsec()),
    ) else {
        return false; // before 1970: not a moment ago
    };
    let changed = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos.min(999_999_999));
    SystemTime::now()
        .duration_since(changed)
        .map_or(true, |age| age < within)
}

/// Percent-encode what cannot stand in a URL path (spaces, `#`, `?`, `%`, non-ASCII), keeping `/`.
fn encode_path(rel: &str) -> String {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    const PATH: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        // A browser reads `\` in an http URL's path as `/`: `back\slash.css` is linked as
        // `back%5Cslash.css`, and only that spelling matches it.
        .add(b'\\')
        .add(b'`')
        .add(b'{')
        .add(b'}');
    utf8_percent_encode(rel, PATH).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(dir: &Path, global: &[&str]) -> Filter {
        let roots = vec![
            WatchRoot {
                dir: dir.to_path_buf(),
                url: "/".into(),
                ignore: vec![],
            },
            WatchRoot {
                dir: dir.join("static"),
                url: "/assets/".into(),
                ignore: vec!["*.map".into()],
            },
        ];
        let global: Vec<String> = global.iter().map(|s| s.to_string()).collect();
        Filter::new(&roots, &global).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn locate_maps_paths_to_urls() {
        let f = filter(Path::new("/p"), &[]);
        assert_eq!(
            f.locate(Path::new("/p/static/css/a b.css")),
            Some(Located {
                root: 1,
                rel: "css/a b.css".into(),
                url: "/assets/css/a%20b.css".into()
            })
        );
        assert_eq!(
            f.locate(Path::new("/p/index.html")).map(|l| l.url),
            Some("/index.html".into())
        );
        assert_eq!(
            f.locate(Path::new("/p/back\\slash #1?.css")).map(|l| l.url),
            Some("/back%5Cslash%20%231%3F.css".into())
        );
        assert_eq!(f.locate(Path::new("/elsewhere/x")), None);
        assert_eq!(f.locate(Path::new("/pp/x")), None);
    }

    #[test]
    fn a_virtualenv_by_any_name_is_ignored() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        for name in ["venv", "env", "myenv"] {
            std::fs::create_dir_all(root.join(name).join("lib")).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(root.join("venv/pyvenv.cfg"), "home = /usr/bin\n")
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join("myenv/pyvenv.cfg"), "home = /usr/bin\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let f = filter(&root, &[]);
        for (rel, ignored) in [
            ("venv", true),
            ("myenv", true),
            ("env", false),
            ("env/lib", false),
        ] {
            assert_eq!(f.is_ignored(&root.join(rel), true), ignored, "{rel}");
        }
    }

    #[test]
    fn a_nested_root_keeps_the_outer_roots_rules_and_a_trailing_slash_means_a_folder() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(root.join("static/gen")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join(".gitignore"), "*.map\ngen/\n").unwrap_or_else(|e| panic!("{e}"));
        let mut f = filter(&root, &["static/web/**", "dist/"]);
        f.load_ignore_files(&root);
        for (rel, is_dir, ignored) in [
            ("static/app.js", false, false),
            ("static/app.js.map", false, true),
            ("static/gen/g.js", false, true),
            ("static/gen", true, true),
            ("static/web/x.js", false, true),
            ("dist", true, true),
            ("dist/a.js", false, true),
            ("packages/a/dist/a.js", false, true),
            ("src/dist.js", false, false),
        ] {
            assert_eq!(f.is_ignored(&root.join(rel), is_dir), ignored, "{rel}");
        }
    }

    /// A `!glob` re-includes what an earlier glob ignored, as in a `.gitignore` (it was taken
    /// for a name starting with `!`, and `--ignore '*' --ignore '!*.css'` reported nothing).
    #[test]
    fn a_negated_glob_takes_back_what_an_earlier_one_ignored() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        let f = filter(&root, &["*", "!*/", "!*.css", "vendor/"]);
        for (rel, is_dir, ignored) in [
            ("app.js", false, true),
            ("css", true, false),
            ("css/site.css", false, false),
            ("css/site.scss", false, true),
            ("vendor", true, true),
            ("vendor/x.css", false, true),
        ] {
            assert_eq!(f.is_ignored(&root.join(rel), is_dir), ignored, "{rel}");
        }
    }

    /// `/dist`, `./tmp/**` and `/src/x.css` start from the watched folder, as in a `.gitignore`:
    /// they matched nothing.
    #[test]
    fn globs_anchored_with_a_slash_or_a_dot_start_from_the_watched_folder() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        let f = filter(&root, &["/dist", "./tmp/**", "/src/x.css", "./out/"]);
        for (rel, is_dir, ignored) in [
            ("dist", true, true),
            ("dist/a.js", false, true),
            ("web/dist/a.js", false, false),
            ("tmp/a.js", false, true),
            ("src/x.css", false, true),
            ("lib/src/x.css", false, false),
            ("out/a.js", false, true),
            ("web/out/a.js", false, false),
        ] {
            assert_eq!(f.is_ignored(&root.join(rel), is_dir), ignored, "{rel}");
        }
    }

    /// A folder the outer rules ignore (a gitignored build folder) but watched on purpose with
    /// its own root: the outer rules stop at it.
    #[test]
    fn an_ignored_folder_watched_on_purpose_is_watched() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(root.join("build")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join(".gitignore"), "build/\n").unwrap_or_else(|e| panic!("{e}"));
        let roots =
            [(root.clone(), "/"), (root.join("build"), "/static/")].map(|(dir, url)| WatchRoot {
                dir,
                url: url.into(),
                ignore: vec![],
            });
        for global in [&[][..], &["build/".to_string()][..]] {
            let mut f = Filter::new(&roots, global).unwrap_or_else(|e| panic!("{e}"));
            f.load_ignore_files(&root);
            assert!(
                !f.is_ignored(&root.join("build/app.css"), false),
                "{global:?}"
            );
            assert!(f.is_ignored(&root.join("build/x.swp"), false), "{global:?}");
            assert!(
                !f.is_ignored(&root.join("src/app.css"), false),
                "{global:?}"
            );
        }
    }

    #[test]
    fn builtins_cover_editor_autosaves_and_logs() {
        let f = filter(Path::new("/p"), &[]);
        for (path, ignored) in [
            ("/p/src/#app.css#", true),
            ("/p/src/.app.css.kate-swp", true),
            ("/p/log/development.log", true),
            ("/p/nohup.out", true),
            ("/p/db.sqlite3", true),
            ("/p/db.sqlite3-journal", true),
            ("/p/data/app.db-wal", true),
            ("/p/src/app#1.css", false),
            ("/p/src/dbg.js", false),
            ("/p/src/store.sqlite.js", false),
            ("/p/src/user.repo.sqlite.ts", false),
            ("/p/src/app.db-client.js", false),
            ("/p/src/#app.css", false),
            ("/p/src/catalog.html", false),
        ] {
            assert_eq!(f.is_ignored(Path::new(path), false), ignored, "{path}");
        }
    }

    #[test]
    fn an_atomic_saves_copy_beside_its_file_is_suspected() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        for name in ["app.css", "main.js", "Makefile"] {
            std::fs::write(root.join(name), "x").unwrap_or_else(|e| panic!("{e}"));
        }
        for (name, suspected) in [
            ("app.css.Ab1234", true),    // Qt's QSaveFile
            ("app.css.1f2a3b4c", true),  // write-file-atomic
            (".app.css.Xy12Ab", true),   // rsync
            ("app.css.map", false),      // a source map
            ("main.js.module", false),   // no digit, no capital: a name
            ("app.css.v2", false),       // too short to be random
            ("app.css.Ab12Cd9", false),  // too long for Qt's
            ("app.css.1F2A3B4C", false), // hex, but not as write-file-atomic writes it
            ("other.css.Ab1234", false), // no `other.css` beside it
            ("Makefile.Ab1234", false),  // stands for a file without an extension
            ("app.css.Ab12-4", false),   // not letters and digits
            ("tmpx7am0ym4", true),       // Python's tempfile
            ("tmp_8k2ab9z", true),       // with its `_`
            ("sedFCJcEr", true),         // sed -i
            ("sedAbC123", true),
            ("tmpx7am0ym", false),      // seven
            ("tmpx7am0ym4a", false),    // nine
            ("tmpX7am0ym4", false),     // no capitals in Python's
            ("tmpx7am0ym4.css", false), // a name of its own
            ("sedFCJcE", false),        // five
            ("sedFCJ_Er", false),       // no `_` in sed's
            ("Sed123456", false),
            (".tmpx7am0ym4", false),
        ] {
            assert_eq!(may_be_save_temp(&root.join(name)), suspected, "{name}");
        }
        // Suspected, never ignored: a file of its own with such a name is still reported.
        let f = filter(&root, &[]);
        assert!(!f.is_ignored(&root.join("app.css.Ab1234"), false));
    }

    /// A file gone beside a fresh backup of itself was moved aside by a save; beside an old one
    /// (Emacs keeps `X~` from the first save on), or none, it was deleted.
    #[test]
    fn a_file_moved_aside_to_its_backup_is_told_by_the_fresh_backup() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        let write =
            |name: &str| std::fs::write(root.join(name), "x").unwrap_or_else(|e| panic!("{e}"));
        write("index.html___jb_old___");
        write("app.js~");
        // A ctime cannot be set back, so an old backup is the freshness rule on its own: a backup
        // made just now is within the window, and none is within no time at all.
        let meta = std::fs::metadata(root.join("app.js~")).unwrap_or_else(|e| panic!("{e}"));
        assert!(changed_within(&meta, BACKUP_FRESH));
        assert!(!changed_within(&meta, Duration::ZERO));
        for (name, moved_aside) in [
            ("index.html", true),
            ("app.js", true),
            ("site.css", false), // no backup beside it
            ("index", false),    // `index.html___jb_old___` is not `index`'s
            ("app.js___jb_tmp___", false),
        ] {
            assert_eq!(backed_up(&root.join(name)), moved_aside, "{name}");
        }
        // A directory by a backup's name is no backup.
        std::fs::create_dir(root.join("dist~")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!backed_up(&root.join("dist")));
    }

    /// IDE and tool state, lockfiles: no page loads them, and each write reloaded the page.
    /// Anything a page may load stays reported.
    #[test]
    fn builtins_cover_ide_and_tool_state_and_lockfiles() {
        let f = filter(Path::new("/p"), &[]);
        for (path, is_dir, ignored) in [
            ("/p/.idea/workspace.xml", false, true),
            ("/p/.idea", true, true),
            ("/p/.vscode/settings.json", false, true),
            ("/p/web/.history/index_20240101.html", false, true),
            ("/p/.eslintcache", false, true),
            ("/p/.stylelintcache", false, true),
            ("/p/tsconfig.tsbuildinfo", false, true),
            ("/p/.tsbuildinfo", false, true),
            ("/p/x.pyc", false, true),
            ("/p/x.pyo", false, true),
            ("/p/docs/.~lock.report.odt#", false, true),
            ("/p/.nfs000000000189d3a600000001", false, true),
            ("/p/index.html.crswap", false, true),
            ("/p/package-lock.json", false, true),
            ("/p/yarn.lock", false, true),
            ("/p/pnpm-lock.yaml", false, true),
            ("/p/bun.lockb", false, true),
            ("/p/Gemfile.lock", false, true),
            ("/p/npm-debug.log.123", false, true),
            ("/p/package.json", false, false),
            ("/p/coverage/lcov-report/index.html", false, false),
            ("/p/src/yarn.lock.js", false, false),
            ("/p/src/lockfile.js", false, false),
            ("/p/src/app.py", false, false),
            ("/p/tsbuildinfo.html", false, false),
            ("/p/src/idea/index.html", false, false),
            ("/p/.~lock.odt", false, false),
        ] {
            assert_eq!(f.is_ignored(Path::new(path), is_dir), ignored, "{path}");
        }
    }

    /// A git repository at `top` with `.gitignore` files, `info/exclude` and a global excludes
    /// file as given, and a filter watching `watched` (relative to `top`, each at its own URL)
    /// with that global file.
    fn in_repo(
        top: &Path,
        gitignores: &[(&str, &str)],
        exclude: &str,
        global: &str,
        watched: &[&str],
    ) -> Filter {
        let write = |path: PathBuf, text: &str| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
            }
            std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
        };
        write(top.join(".git/info/exclude"), exclude);
        for (dir, text) in gitignores {
            write(top.join(dir).join(".gitignore"), text);
        }
        let global_file = top.join(".git/global-ignore");
        write(global_file.clone(), global);
        let roots: Vec<WatchRoot> = watched
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                let dir = top.join(dir);
                std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
                WatchRoot {
                    dir,
                    url: format!("/{i}/"),
                    ignore: vec![],
                }
            })
            .collect();
        let mut f = Filter::with_excludes_file(&roots, &[], Some(&global_file))
            .unwrap_or_else(|e| panic!("{e}"));
        // What the watch does as it registers each root.
        for root in &roots {
            f.load_ignore_files(&root.dir);
        }
        f
    }

    /// In a repository, a watched folder's files are judged by git's rules from outside it too:
    /// the `.gitignore` files above it up to the top, `info/exclude`, the global excludes file,
    /// with git's precedence (deeper over shallower over `info/exclude` over global).
    #[test]
    fn git_rules_from_above_the_watched_folder_apply_with_gits_precedence() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let top = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        let f = in_repo(
            &top,
            &[
                ("", "*.gen.js\n!keep.*\n"),
                ("app", "*.draft.html\n!*.excl.css\n"),
                ("app/public", "!pub.gen.js\n"),
            ],
            "excl/\n*.excl.css\n*.both.txt\n",
            "*.scratch.html\n*.both.txt\n!*.both.txt\nkeep.scratch.css\n",
            &["app/public"],
        );
        let public = top.join("app/public");
        for (rel, is_dir, ignored) in [
            ("a.gen.js", false, true), // the repository's top `.gitignore`
            ("deep/b.gen.js", false, true),
            ("pub.gen.js", false, false), // the watched folder's own `!` wins
            ("page.draft.html", false, true), // `app/.gitignore`
            ("excl", true, true),         // `info/exclude`
            ("excl/a.js", false, true),
            ("x.excl.css", false, false), // `app/.gitignore`'s `!` over `info/exclude`
            ("n.scratch.html", false, true), // the global file
            ("n.both.txt", false, true),  // `info/exclude` over the global `!`
            ("keep.scratch.css", false, false), // the top `.gitignore`'s `!` over global
            ("index.html", false, false),
            ("css/site.css", false, false),
        ] {
            assert_eq!(f.is_ignored(&public.join(rel), is_dir), ignored, "{rel}");
        }
    }

    /// Outside a repository git's rules from elsewhere do not apply: a `.gitignore` above the
    /// watched folder is not read, nor is the global file.
    #[test]
    fn outside_a_repository_only_the_watched_folders_own_rules_apply() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let top = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(top.join("site")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(top.join(".gitignore"), "*.gen.js\n").unwrap_or_else(|e| panic!("{e}"));
        let global = top.join("global-ignore");
        std::fs::write(&global, "*.scratch.html\n").unwrap_or_else(|e| panic!("{e}"));
        let roots = [WatchRoot {
            dir: top.join("site"),
            url: "/".into(),
            ignore: vec![],
        }];
        let f = Filter::with_excludes_file(&roots, &[], Some(&global))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!f.is_ignored(&top.join("site/a.gen.js"), false));
        assert!(!f.is_ignored(&top.join("site/n.scratch.html"), false));
    }

    /// A folder git ignores, watched on purpose (`-w dist`): git's rules from outside stop at it,
    /// whichever of them ignores it, alone or nested in another watched folder; the built-ins
    /// still apply in it.
    #[test]
    fn a_gitignored_folder_watched_on_purpose_is_still_watched() {
        for (gitignore, exclude, global) in [
            ("dist/\n*.map\n", "", ""),
            ("*.map\n", "dist/\n", ""),
            ("*.map\n", "", "dist\n"),
        ] {
            for watched in [&["dist"][..], &["", "dist"][..]] {
                let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
                let top = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
                let f = in_repo(&top, &[("", gitignore)], exclude, global, watched);
                let case = format!("{gitignore:?} {exclude:?} {global:?} {watched:?}");
                assert!(!f.is_ignored(&top.join("dist"), true), "{case}");
                assert!(!f.is_ignored(&top.join("dist/app.js"), false), "{case}");
                assert!(!f.is_ignored(&top.join("dist/app.js.map"), false), "{case}");
                assert!(f.is_ignored(&top.join("dist/.idea/x.xml"), false), "{case}");
                if watched.len() == 2 {
                    // Outside the folder watched on purpose, the rules hold.
                    assert!(f.is_ignored(&top.join("src/app.js.map"), false), "{case}");
                }
            }
        }
    }

    /// A worktree's or a submodule's `.git` is a file naming the git folder: `info/exclude` is
    /// read from there (the worktree's common folder).
    #[test]
    fn a_worktrees_exclude_file_is_found_through_its_git_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let base = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        let main_git = base.join("main/.git");
        let worktree_git = main_git.join("worktrees/feature");
        std::fs::create_dir_all(main_git.join("info")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(&worktree_git).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(base.join("feature/web")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(main_git.join("info/exclude"), "*.local.js\n")
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(worktree_git.join("commondir"), "../..\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            base.join("feature/.git"),
            format!("gitdir: {}\n", worktree_git.display()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let roots = [WatchRoot {
            dir: base.join("feature/web"),
            url: "/".into(),
            ignore: vec![],
        }];
        let f = Filter::with_excludes_file(&roots, &[], None).unwrap_or_else(|e| panic!("{e}"));
        assert!(f.is_ignored(&base.join("feature/web/a.local.js"), false));
        assert!(!f.is_ignored(&base.join("feature/web/a.js"), false));
    }

    #[test]
    fn builtins_globs_and_outside_paths() {
        let f = filter(Path::new("/p"), &["*.log", "dist/**"]);
        for (path, is_dir, ignored) in [
            ("/p/src/app.js", false, false),
            ("/p/node_modules", true, true),
            ("/p/node_modules/x/index.js", false, true),
            ("/p/.git/index", false, true),
            ("/p/a/target/debug/x", false, true),
            ("/p/.next/server/app-paths-manifest.json", false, true),
            ("/p/.svelte-kit/generated/root.js", false, true),
            ("/p/_build/dev/lib/app/ebin/x.beam", false, true),
            ("/p/tmp/cache/assets/x", false, true),
            ("/p/tmp", true, true),
            ("/p/tmp.css", false, false),
            ("/p/static/next.css", false, false),
            ("/p/target.css", false, false),
            ("/p/src/.app.js.swp", false, true),
            ("/p/src/app.js~", false, true),
            ("/p/src/4913", false, true),
            ("/p/src/.#app.js", false, true),
            ("/p/src/x.tmp", false, true),
            ("/p/server.log", false, true),
            ("/p/sub/server.log", false, true),
            ("/p/dist/app.js", false, true),
            ("/p/static/app.js.map", false, true),
            ("/p/app.js.map", false, false),
            ("/outside/x", false, true),
        ] {
            assert_eq!(f.is_ignored(Path::new(path), is_dir), ignored, "{path}");
        }
    }

    #[test]
    fn gitignore_files_are_honoured_with_nesting() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(root.join("web/build")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join(".gitignore"), "build/\n*.gen.css\n")
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join("web/.ignore"), "!keep.gen.css\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut f = filter(&root, &[]);
        f.load_ignore_files(&root);
        f.load_ignore_files(&root.join("web"));
        assert!(f.is_ignored(&root.join("web/build"), true));
        assert!(f.is_ignored(&root.join("web/build/app.js"), false));
        assert!(f.is_ignored(&root.join("a.gen.css"), false));
        assert!(!f.is_ignored(&root.join("web/keep.gen.css"), false));
        assert!(!f.is_ignored(&root.join("web/site.css"), false));
    }
}
