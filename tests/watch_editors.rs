//! Tools and editors that write files in odd ways, against the real watcher and a real event-stream
//! client: bulk writes that pause between files (a checkout, a formatter), with OS events and
//! polling; saves through a temp file of an unrelated name; safe writes that move the file aside
//! and pause before renaming its new version in; IDE and tool state; git's ignore sources from
//! outside the watched folder. The pauses in these tests are the writers' own (the scenario), never
//! synchronisation: every wait is for an event, bounded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::bin::{self, Running};
use crate::support::sse::{SseClient, paths};
use crate::support::{Proxy, within};

/// A project folder with a canonical path (so event paths compare equal).
fn project() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    write(&root.join("css/site.css"), "body {}\n");
    write(
        &root.join("index.html"),
        "<!doctype html><title>x</title>\n",
    );
    (dir, root)
}

async fn serve(root: &Path, extra: &[&str]) -> Proxy {
    let mut args = vec!["--serve", "."];
    args.extend_from_slice(extra);
    Proxy::start_in(root, &args).await
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// Batches until one names `sentinel`: every event before it has been taken in. Returns all the
/// paths seen, the sentinel's included.
async fn paths_until(tab: &mut SseClient, sentinel: &str) -> Vec<String> {
    let mut seen = Vec::new();
    within(&format!("{sentinel} to be reported"), async {
        while !seen.iter().any(|p| p == sentinel) {
            seen.extend(paths(&tab.next_batch().await));
        }
    })
    .await;
    seen
}

/// Folders `step0` … of `files` files each, made in a scratch folder beside the project (the same
/// file system), to be moved into it whole: each step lands at once.
fn staged(steps: usize, files: usize) -> tempfile::TempDir {
    let staging = tempfile::tempdir().unwrap();
    for step in 0..steps {
        for i in 0..files {
            write(
                &staging.path().join(format!("step{step}/f{i}.js")),
                &format!("// {step} {i}\n"),
            );
        }
    }
    staging
}

/// A bulk write that pauses longer than the debounce between files (a `git checkout` of 700
/// files or a `prettier --write` on a busy machine: 15–60 ms) is one batch: its first part went
/// out after 10 ms of quiet, the rest as another batch, and every open page reloaded twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_write_pausing_between_files_is_one_batch() {
    let (_dir, root) = project();
    // The first files land at once (a folder moved in), so the batch holds a bulk write from its
    // first event, whatever the scheduler does to the writer.
    let staging = staged(1, 5);
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    let writer = std::thread::spawn({
        let (from, root) = (staging.path().join("step0"), root.clone());
        move || {
            std::fs::rename(from, root.join("gen")).unwrap();
            for part in 1..=2 {
                // The writer's pause, three debounce intervals (the scenario).
                std::thread::sleep(Duration::from_millis(30));
                for i in 0..10 {
                    write(&root.join(format!("gen/p{part}_{i}.js")), "//\n");
                }
            }
        }
    });
    let batch = tab.next_batch().await;
    writer.join().unwrap();
    let got = paths(&batch);
    assert_eq!(got.len(), 25, "the first batch: {got:?}");
    assert_eq!(batch["reload"], false);
}

/// Polling, a bulk write that spans passes is one batch: each pass (here 200 ms apart) saw a
/// slice of it, and a checkout that spanned a pass went out as two or three batches, since the
/// slices came further apart than any quiet interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_a_bulk_write_spanning_passes_is_one_batch() {
    let (_dir, root) = project();
    // Each step a folder of 4 files moved in whole, so every pass that sees the write sees a
    // bulk write; 6 steps 60 ms apart span at least one pass, and every pass sees a step.
    let staging = staged(6, 4);
    let proxy = serve(&root, &["--poll=200"]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    let writer = std::thread::spawn({
        let (staging, root) = (staging.path().to_path_buf(), root.clone());
        move || {
            for step in 0..6 {
                if step > 0 {
                    // The writer's pause (the scenario).
                    std::thread::sleep(Duration::from_millis(60));
                }
                let name = format!("step{step}");
                std::fs::rename(staging.join(&name), root.join(&name)).unwrap();
            }
        }
    });
    let batch = tab.next_batch().await;
    writer.join().unwrap();
    let got = paths(&batch);
    assert_eq!(got.len(), 24, "the first batch: {got:?}");
}

/// A save through a temp file named as temp file makers name it, unrelated to the file (Python's
/// `tempfile`, `atomicwrites`: `tmpXXXXXXXX`; `sed -i`: `sedXXXXXX`), closed, then renamed over
/// the file a moment later (an fsync is enough): the file alone, in one batch. The temp's name
/// went out first (a full reload, having no `.css` to swap by), then again beside the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_through_a_temp_file_of_an_unrelated_name_is_the_file_alone() {
    let (_dir, root) = project();
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    for temp in ["css/tmpx7am0ym4", "css/sedFCJcEr", "css/tmp_8k2ab9z"] {
        let copy = root.join(temp);
        write(&copy, "body { color: teal }\n");
        // The writer's own time before the rename, four debounce intervals (the scenario).
        tokio::time::sleep(Duration::from_millis(40)).await;
        std::fs::rename(&copy, root.join("css/site.css")).unwrap();
        let batch = tab.next_batch().await;
        assert_eq!(paths(&batch), ["css/site.css"], "saved through {temp}");
    }
}

/// A safe write that moves the file aside to a backup name of its own and pauses before renaming
/// the new version in (JetBrains: `X___jb_old___`, 15 ms and more; vim with `backupcopy=no`: `X~`)
/// is one batch, sent once the file is back: a batch went out while it was missing (a tab
/// reloading then got a 404), and another for the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_write_pausing_between_its_renames_is_one_batch() {
    let (_dir, root) = project();
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    for (page, jetbrains) in [("index.html", true), ("css/site.css", false)] {
        let file = root.join(page);
        let aside = |suffix: &str| {
            let mut name = file.file_name().unwrap().to_os_string();
            name.push(suffix);
            file.with_file_name(name)
        };
        if jetbrains {
            write(&aside("___jb_tmp___"), "v2");
            std::fs::rename(&file, aside("___jb_old___")).unwrap();
            // The editor's pause between its renames (the scenario).
            tokio::time::sleep(Duration::from_millis(40)).await;
            std::fs::rename(aside("___jb_tmp___"), &file).unwrap();
            std::fs::remove_file(aside("___jb_old___")).unwrap();
        } else {
            std::fs::rename(&file, aside("~")).unwrap();
            tokio::time::sleep(Duration::from_millis(40)).await;
            write(&file, "v2");
            std::fs::remove_file(aside("~")).unwrap();
        }
        write(&root.join("js/sentinel.js"), page);
        let seen = paths_until(&mut tab, "js/sentinel.js").await;
        let times = seen.iter().filter(|p| *p == page).count();
        assert_eq!(times, 1, "{page} in {times} batches: {seen:?}");
    }
}

/// IDE and tool state and lockfiles are never reported: no page loads them, and each write
/// (JetBrains rewrites `.idea/workspace.xml` on its own, a lint-on-save rewrites its cache)
/// reloaded every open tab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ide_and_tool_state_never_appears() {
    let (_dir, root) = project();
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    for ignored in [
        ".idea/workspace.xml",
        ".vscode/settings.json",
        ".eslintcache",
        ".stylelintcache",
        "tsconfig.tsbuildinfo",
        "lib/x.pyc",
        "docs/.~lock.report.odt#",
        ".nfs000000000189d3a600000001",
        "index.html.crswap",
        "package-lock.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "npm-debug.log.123",
    ] {
        write(&root.join(ignored), "x");
    }
    write(&root.join("css/site.css"), "sentinel");
    let seen = paths_until(&mut tab, "css/site.css").await;
    assert_eq!(seen, ["css/site.css"], "tool state reached the stream");
}

/// In a git repository, git's ignore sources from outside the watched folder apply, as git
/// applies them: the `.gitignore` above it, `.git/info/exclude`, the global excludes file (here
/// the default one, under `$XDG_CONFIG_HOME`), with git's precedence (the watched folder's own
/// `!` rule over the global file). A gitignored folder watched on purpose is still watched. Run
/// as the binary, for an environment of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gits_ignore_sources_from_outside_the_watched_folder_apply() {
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().canonicalize().unwrap();
    write(&top.join(".git/info/exclude"), "excl/\n");
    write(&top.join(".gitignore"), "*.gen.js\ndist/\n");
    write(&top.join("app/public/.gitignore"), "!keep.scratch.html\n");
    write(&top.join("app/public/index.html"), "<!doctype html>\n");
    write(&top.join("dist/app.js"), "//\n");
    let home = top.join("home");
    write(&home.join(".config/git/ignore"), "*.scratch.html\n");
    let envs = [
        ("HOME", home.to_str().unwrap().to_string()),
        (
            "XDG_CONFIG_HOME",
            home.join(".config").to_str().unwrap().into(),
        ),
        // No configuration but the test's: the default excludes file counts.
        (
            "GIT_CONFIG_GLOBAL",
            home.join("gitconfig").to_str().unwrap().into(),
        ),
        ("GIT_CONFIG_SYSTEM", "/dev/null".into()),
    ];
    let running = bin::blocking("hmr-proxy to start", {
        let top = top.clone();
        move || {
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Running::start(
                &[
                    "--serve",
                    "app/public",
                    "-w",
                    "app/public",
                    "-w",
                    "dist=/dist/",
                ],
                &envs,
                &top,
            )
        }
    })
    .await;
    let mut tab = SseClient::open(running.addr, &[]).await;
    for ignored in ["a.gen.js", "excl/a.js", "notes.scratch.html"] {
        write(&top.join("app/public").join(ignored), "x");
    }
    write(&top.join("app/public/keep.scratch.html"), "kept");
    write(&top.join("dist/app.js"), "// watched on purpose\n");
    write(&top.join("app/public/index.html"), "sentinel");
    let mut seen = paths_until(&mut tab, "index.html").await;
    seen.sort();
    assert_eq!(seen, ["app.js", "index.html", "keep.scratch.html"]);
}
