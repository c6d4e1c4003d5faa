//! File saves to `/changes` events, with real files in temp dirs and a real event-stream client:
//! one batch per save or burst, atomic saves, ignores, URL prefixes, polling, replay, lagging
//! tabs, many tabs, heartbeats, the control endpoint, and the upstream coming back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::bin::Running;
use crate::support::sse::{SseClient, paths};
use crate::support::{self, Proxy, Upstream, get, read_until, within};

/// A project folder with a canonical path (so event paths compare equal).
fn project() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("css")).unwrap();
    std::fs::write(root.join("css/site.css"), "body {}\n").unwrap();
    std::fs::write(root.join("index.html"), "<!doctype html><title>x</title>\n").unwrap();
    (dir, root)
}

async fn serve(root: &Path, extra: &[&str]) -> Proxy {
    let mut args = vec!["--serve", "."];
    args.extend_from_slice(extra);
    Proxy::start_in(root, &args).await
}

/// The open streams `/__hmr/status` counts.
async fn clients(proxy: &Proxy) -> u64 {
    let (_, _, body) = get(&proxy.url("/__hmr/status"), &[]).await;
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    status["clients"].as_u64().unwrap()
}

/// Wait until `/__hmr/status` counts `n` open streams (the count has no event to await: it is
/// asked again every 10 ms, within the test's time limit).
async fn clients_become(proxy: &Proxy, n: u64, what: &str) {
    within(what, async {
        while clients(proxy).await != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_is_one_event_with_path_and_url_plus_a_plain_message() {
    let (_dir, root) = project();
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    assert_eq!(tab.headers["content-type"], "text/event-stream");
    assert_eq!(tab.headers["cache-control"], "no-cache, no-transform");
    assert_eq!(tab.headers["x-accel-buffering"], "no");
    assert!(tab.headers.get("access-control-allow-origin").is_none());

    write(&root.join("css/site.css"), "body { color: red }\n");
    let change = tab.next_message().await.unwrap();
    assert_eq!(change.event.as_deref(), Some("change"));
    let json: serde_json::Value = serde_json::from_str(change.data.as_deref().unwrap()).unwrap();
    assert_eq!(json["paths"], serde_json::json!(["css/site.css"]));
    assert_eq!(json["urls"], serde_json::json!(["/css/site.css"]));
    assert_eq!(json["reload"], false);
    assert_eq!(json["id"].to_string(), change.id.clone().unwrap());
    let plain = tab.next_message().await.unwrap();
    assert_eq!(plain.event, None);
    assert_eq!(plain.data.as_deref(), Some("\"css/site.css\""));

    // Exactly one event: the next one is the next save, not an echo of the first.
    write(
        &root.join("index.html"),
        "<!doctype html><title>y</title>\n",
    );
    let next = tab.next_batch().await;
    assert_eq!(paths(&next), ["index.html"]);
    let first_id: u64 = change.id.unwrap().parse().unwrap();
    assert_eq!(next["id"].as_u64().unwrap(), first_id + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_save_reports_the_saved_file_once() {
    let (_dir, root) = project();
    // Quiet long enough that a descheduled test thread cannot split the write from the rename.
    let proxy = serve(&root, &["--debounce", "300"]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    // What editors do: write a temp file beside the target, then rename it over the target.
    let tmp = root.join("css/.site.css.3f2a1");
    std::fs::write(&tmp, "body { color: blue }\n").unwrap();
    std::fs::rename(&tmp, root.join("css/site.css")).unwrap();
    // vim's probe file comes and goes too.
    std::fs::write(root.join("css/4913"), "").unwrap();
    std::fs::remove_file(root.join("css/4913")).unwrap();
    let batch = tab.next_batch().await;
    assert_eq!(paths(&batch), ["css/site.css"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_500_files_is_one_batch() {
    let (_dir, root) = project();
    // A long quiet interval so a loaded machine's pauses between writes cannot split the burst.
    let proxy = serve(&root, &["--debounce", "1000"]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    // A new directory and its files in one go, as in a `git checkout`: files written before the
    // directory's watch lands are found by the scan that follows it.
    std::fs::create_dir(root.join("gen")).unwrap();
    for i in 0..500 {
        std::fs::write(root.join(format!("gen/file{i:03}.js")), format!("// {i}\n")).unwrap();
    }
    let batch = tab.next_batch().await;
    let got = paths(&batch);
    assert_eq!(got.len(), 500, "{} paths in the first batch", got.len());
    assert_eq!(got[0], "gen/file000.js");
    assert_eq!(batch["reload"], false);
}

/// A batch of more files than a tab should parse (a folder of 1,200 made at once) lists the first
/// 500, counts the rest and reloads, with a plain message for each file listed only: 20,000 files
/// sent every tab 2.2 MB, only for it to reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_more_than_500_files_lists_500_and_reloads() {
    const FILES: usize = 1200;
    let (_dir, root) = project();
    // A long quiet interval so a loaded machine's pauses between writes cannot split the burst.
    let proxy = serve(&root, &["--debounce", "1000"]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    std::fs::create_dir(root.join("gen")).unwrap();
    for i in 0..FILES {
        std::fs::write(root.join(format!("gen/file{i:04}.js")), "//").unwrap();
    }
    let change = within("the batch", async {
        loop {
            let msg = tab.next_message().await.expect("a message");
            if msg.event.as_deref() == Some("change") {
                break msg;
            }
        }
    })
    .await;
    let json: serde_json::Value = serde_json::from_str(change.data.as_deref().unwrap()).unwrap();
    assert_eq!(json["reload"], true);
    assert_eq!(json["paths"].as_array().unwrap().len(), 500);
    assert_eq!(json["urls"].as_array().unwrap().len(), 500);
    assert_eq!(json["unlisted"], FILES - 500);
    let first = json["paths"][0].as_str().unwrap();
    assert!(first.starts_with("gen/file"), "{first}");
    assert!(json.get("served").is_none(), "{json}");
    // A plain message for each file listed, and none for the rest: the next event is the next
    // save's.
    write(&root.join("css/site.css"), "sentinel");
    let mut plain = Vec::new();
    let next = within("the sentinel's batch", async {
        loop {
            let msg = tab.next_message().await.expect("a message");
            match msg.event.as_deref() {
                Some("change") => break msg,
                None if msg.data.is_some() => plain.push(msg.data.unwrap()),
                _ => {} // a heartbeat
            }
        }
    })
    .await;
    assert_eq!(plain.len(), 500);
    assert_eq!(plain[0], format!("{:?}", first));
    let next: serde_json::Value = serde_json::from_str(next.data.as_deref().unwrap()).unwrap();
    assert_eq!(paths(&next), ["css/site.css"]);
    assert!(next.get("unlisted").is_none(), "{next}");
}

/// A folder of thousands of files deleted slowly, part by part with pauses longer than the bulk
/// quiet (`rm -rf` on a loaded machine took 9 s for 20,000 files), is one storm: a batch for the
/// first part, which cannot be told from a checkout, and one for the rest, not one a part or a
/// second (each batch reloads every open tab, onto a tree half gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_deletion_of_thousands_of_files_is_two_batches() {
    const PARTS: usize = 16;
    const FILES: usize = 100;
    let (_dir, root) = project();
    for part in 0..PARTS {
        for i in 0..FILES {
            write(&root.join(format!("vendor/pkg{part:02}/f{i:03}.js")), "x");
        }
    }
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    // The pauses are the slow `rm` being imitated, not synchronisation: 2.4 s in all.
    let rm = std::thread::spawn({
        let vendor = root.join("vendor");
        move || {
            for part in 0..PARTS {
                std::fs::remove_dir_all(vendor.join(format!("pkg{part:02}"))).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(150));
            }
        }
    });
    let mut batches = Vec::new();
    let mut files = 0;
    within("every file's batch", async {
        while files < PARTS * FILES {
            let batch = tab.next_batch().await;
            let listed = batch["paths"].as_array().unwrap().len();
            files += listed + batch["unlisted"].as_u64().unwrap_or(0) as usize;
            batches.push(listed);
        }
    })
    .await;
    rm.join().unwrap();
    assert_eq!(files, PARTS * FILES, "{batches:?}");
    // One a part (or a second) before; a third only if the machine is so slow that the
    // deletion outlasts the five-second cap.
    assert!(batches.len() <= 3, "{} batches: {batches:?}", batches.len());
}

/// A build writing its output file by file, 30 ms apart, is a few batches, not one per file:
/// each batch reloads every open page, and 60 files made a tab reload 36 times in 2.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_writing_file_after_file_is_a_few_batches() {
    const FILES: usize = 20;
    let (_dir, root) = project();
    std::fs::create_dir(root.join("dist")).unwrap();
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    // The writes are the build being imitated (a pause between files), not synchronisation.
    let build = std::thread::spawn({
        let dist = root.join("dist");
        move || {
            for i in 0..FILES {
                std::fs::write(dist.join(format!("chunk{i:02}.js")), "//").unwrap();
                std::thread::sleep(std::time::Duration::from_millis(30));
            }
        }
    });
    let last = format!("dist/chunk{:02}.js", FILES - 1);
    let mut batches = 0;
    let mut seen = Vec::new();
    within("the last file", async {
        while !seen.contains(&last) {
            seen.extend(paths(&tab.next_batch().await));
            batches += 1;
        }
    })
    .await;
    build.join().unwrap();
    assert_eq!(seen.len(), FILES, "{seen:?}");
    // One per file without the longer quiet interval; the first goes out at once, the rest
    // fold into one or two (the window cap is 1 s).
    assert!(batches <= 5, "{batches} batches for {FILES} files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_paths_never_appear() {
    let (_dir, root) = project();
    write(&root.join(".gitignore"), "dist/\n*.gen.css\n");
    std::fs::create_dir_all(root.join("node_modules/pkg")).unwrap();
    std::fs::create_dir_all(root.join("dist")).unwrap();
    let proxy = serve(&root, &["--ignore", "*.bak", "--ignore", "tmp/"]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    for ignored in [
        "node_modules/pkg/index.js",
        ".git/index",
        "target/debug/app",
        "__pycache__/x.pyc",
        "css/.site.css.swp",
        "css/site.css~",
        "server.log",
        "logs/deep/server.log",
        "css/#site.css#",
        "site.bak",
        "deep/er/site.bak",
        "tmp/cache/x.html",
        "dist/app.js",
        "css/theme.gen.css",
    ] {
        write(&root.join(ignored), "x");
    }
    write(&root.join("css/site.css"), "sentinel");
    let mut seen = Vec::new();
    within("the sentinel", async {
        while !seen.iter().any(|p| p == "css/site.css") {
            seen.extend(paths(&tab.next_batch().await));
        }
    })
    .await;
    assert_eq!(seen, ["css/site.css"], "ignored paths reached the stream");
}

/// A folder the `.gitignore` stops ignoring while the proxy runs is watched from then on: it was
/// skipped when the tree was registered, and reloading the rules alone never looked at it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_no_longer_ignored_is_watched_from_then_on() {
    let (_dir, root) = project();
    write(&root.join(".gitignore"), "gen/\n");
    std::fs::create_dir_all(root.join("gen/css")).unwrap();
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    write(&root.join(".gitignore"), "# nothing ignored\n");
    paths_until(&mut tab, ".gitignore").await;
    write(&root.join("gen/css/site.css"), "body {}");
    let seen = paths_until(&mut tab, "gen/css/site.css").await;
    assert_eq!(seen, ["gen/css/site.css"]);

    // The same when the ignore file is deleted.
    std::fs::create_dir_all(root.join("out/css")).unwrap();
    write(&root.join(".gitignore"), "out/\n");
    paths_until(&mut tab, ".gitignore").await;
    std::fs::remove_file(root.join(".gitignore")).unwrap();
    paths_until(&mut tab, ".gitignore").await;
    write(&root.join("out/css/site.css"), "body {}");
    let seen = paths_until(&mut tab, "out/css/site.css").await;
    assert_eq!(seen, ["out/css/site.css"]);
}

/// A folder to watch that is made after the proxy started (a build's output, in a compose stack
/// where the app container makes it): watched from when it appears, which reloads the tabs;
/// also one whose parent is not there yet either (`build/out`, which refused to start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_folder_made_after_the_start_is_watched_once_there() {
    for folder in ["dist", "build/out"] {
        let (_dir, root) = project();
        let proxy = serve(&root, &["--watch", &format!("{folder}=/dist")]).await;
        let mut tab = SseClient::open(proxy.addr, &[]).await;
        std::fs::create_dir_all(root.join(folder)).unwrap();
        let batch = tab.next_batch().await;
        assert_eq!(batch["reload"], true, "{folder}: {batch}");
        // Said in the tabs' consoles: no file changed that the page could see.
        let reason = format!(
            "watched directory {} is there now",
            root.join(folder).display()
        );
        assert_eq!(batch["reason"], reason.as_str(), "{folder}: {batch}");
        write(&root.join(folder).join("app.js"), "//");
        let seen = paths_until(&mut tab, "app.js").await;
        assert_eq!(seen, ["app.js"], "{folder}");
    }
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

/// A directory another one is renamed over (a build tool swapping its output in) or that is
/// deleted and made again is watched afresh: the kernel dropped the old one's watch, and saves in
/// the new one went unreported until the proxy restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_swapped_in_or_made_again_is_watched_afresh() {
    let (_dir, root) = project();
    write(&root.join("dist/app.js"), "1");
    write(&root.join("dist.new/app.js"), "2");
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;

    std::fs::rename(root.join("dist"), root.join("dist.old")).unwrap();
    std::fs::rename(root.join("dist.new"), root.join("dist")).unwrap();
    std::fs::remove_dir_all(root.join("dist.old")).unwrap();
    write(&root.join("index.html"), "swapped");
    paths_until(&mut tab, "index.html").await;
    write(&root.join("dist/app.js"), "3");
    paths_until(&mut tab, "dist/app.js").await;

    std::fs::remove_dir_all(root.join("css")).unwrap();
    std::fs::create_dir(root.join("css")).unwrap();
    write(&root.join("index.html"), "made again");
    paths_until(&mut tab, "index.html").await;
    write(&root.join("css/site.css"), "body {}");
    paths_until(&mut tab, "css/site.css").await;
}

/// A watched folder moved away takes none of its watches along: saves in it, now elsewhere,
/// were reported under their old paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_folder_moved_away_is_no_longer_watched() {
    let (_dir, root) = project();
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    let moved = root.with_extension("moved");
    std::fs::rename(&root, &moved).unwrap();
    // The proxy finds its folder gone, and says so with a reload.
    let gone = within("the reload for the folder gone", async {
        loop {
            let batch = tab.next_batch().await;
            if batch["reload"] == true {
                break batch;
            }
        }
    })
    .await;
    let reason = format!("watched directory {} was removed", root.display());
    assert_eq!(gone["reason"], reason.as_str(), "{gone}");
    write(&moved.join("css/site.css"), "saved where it went");
    // Back under its name, a new folder: watched again, and a save there is the sentinel.
    std::fs::create_dir(&root).unwrap();
    let seen = within("the folder to be watched again", async {
        loop {
            write(&root.join("index.html"), "sentinel");
            let batch = tab.next_batch().await;
            let seen = paths(&batch);
            if seen.iter().any(|p| p == "index.html") {
                break seen;
            }
            assert!(
                !seen.iter().any(|p| p == "css/site.css"),
                "a save outside was reported"
            );
        }
    })
    .await;
    assert!(
        !seen.iter().any(|p| p == "css/site.css"),
        "a save outside was reported"
    );
    std::fs::remove_dir_all(&moved).unwrap();
}

/// A file written in parts, with a pause longer than the debounce before the rest (a copy, a
/// generator, a script flushing as it goes), is one batch once it is closed: a batch in between
/// reloaded the page on half a file, then again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_in_parts_is_one_batch_once_closed() {
    written_in_parts(&[]).await;
    // With no quiet time at all, too: a save's truncation and its bytes were two batches.
    written_in_parts(&["--debounce", "0"]).await;
}

async fn written_in_parts(args: &[&str]) {
    use std::io::Write;
    let (_dir, root) = project();
    let proxy = serve(&root, args).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    let mut file = std::fs::File::create(root.join("index.html")).unwrap();
    file.write_all(b"<!doctype html><body>").unwrap();
    // The writer's own pause, fifteen debounce intervals (the scenario, not synchronisation).
    tokio::time::sleep(Duration::from_millis(150)).await;
    file.write_all(b"</body>").unwrap();
    drop(file);
    write(&root.join("css/site.css"), "sentinel");
    let seen = paths_until(&mut tab, "css/site.css").await;
    let times = seen.iter().filter(|p| *p == "index.html").count();
    assert_eq!(
        times, 1,
        "{args:?}: index.html in {times} batches: {seen:?}"
    );
    // A new file, open from its creation: `cp` of a large file writes it in one call at the end,
    // and its creation went out alone, a tab reloading onto an empty file, then again.
    let mut file = std::fs::File::create(root.join("gen.html")).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    file.write_all(b"<!doctype html><body></body>").unwrap();
    drop(file);
    write(&root.join("css/site.css"), "sentinel 2");
    let seen = paths_until(&mut tab, "css/site.css").await;
    let times = seen.iter().filter(|p| *p == "gen.html").count();
    assert_eq!(times, 1, "{args:?}: gen.html in {times} batches: {seen:?}");
}

/// A file written and held open (a server's output redirected into the project, a log under
/// another name) is still reported: its batch goes out at the window cap, not at a close that may
/// never come; and so is its next write, the file still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_held_open_for_writing_is_still_reported() {
    use std::io::Write;
    let (_dir, root) = project();
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    let mut file = std::fs::File::create(root.join("server.out")).unwrap();
    file.write_all(b"listening\n").unwrap();
    let seen = paths_until(&mut tab, "server.out").await;
    assert_eq!(seen, ["server.out"]);
    file.write_all(b"GET /\n").unwrap();
    let seen = paths_until(&mut tab, "server.out").await;
    assert_eq!(seen, ["server.out"]);
    drop(file);
}

/// `chmod`, `chown` and the like change no content: no batch (a container's `chown -R` at start
/// reloaded every tab with every file). `touch` sets the mtime: a batch, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_changes_are_no_change_and_touch_is() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, root) = project();
    let site = root.join("css/site.css");
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&site)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    std::fs::set_permissions(&site, std::fs::Permissions::from_mode(0o600)).unwrap();
    write(&root.join("index.html"), "sentinel");
    let seen = paths_until(&mut tab, "index.html").await;
    assert_eq!(seen, ["index.html"], "a chmod was reported");
    // `touch`: opened for writing, the times set to now, closed; no byte written.
    std::fs::File::options()
        .write(true)
        .open(&site)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    assert_eq!(paths(&tab.next_batch().await), ["css/site.css"]);
}

/// An atomic save whose temporary copy outlives the batch window (written, fsynced, renamed a
/// moment later, as Qt's QSaveFile and npm's write-file-atomic do) reports the saved file alone:
/// the copy's name reloaded the page a batch before the stylesheet could be swapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_saves_slow_copy_is_not_reported() {
    let (_dir, root) = project();
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    for temp in [
        "css/site.css.Ab12Cd",
        "css/site.css.1f2a3b4c",
        "css/.site.css.Xy12Ab",
    ] {
        let copy = root.join(temp);
        std::fs::write(&copy, "body { color: teal }\n").unwrap();
        std::fs::File::open(&copy).unwrap().sync_all().unwrap();
        // The fsync's and the editor's own time (the scenario, not synchronisation).
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::rename(&copy, root.join("css/site.css")).unwrap();
        let seen = paths_until(&mut tab, "css/site.css").await;
        assert_eq!(seen, ["css/site.css"], "saved through {temp}");
    }
    // A file of its own that is named like one (a checksum beside the sheet) is reported, once
    // it has stayed.
    write(&root.join("css/site.css.sha256"), "e3b0c442");
    assert_eq!(paths(&tab.next_batch().await), ["css/site.css.sha256"]);
}

/// A site generator writes every page again on a stylesheet save: the pages with the bytes they
/// had leave the batch, and the sheet alone goes (swapped in place, not a reload of every tab).
/// One file saved unchanged still counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_written_again_unchanged_leave_a_bulk_batch() {
    let (_dir, root) = project();
    // A longer quiet, so that a loaded machine does not split a build's four writes.
    let proxy = serve(&root, &["--debounce", "200"]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    let build = |css: &str| {
        for page in ["index.html", "about.html", "blog.html"] {
            std::fs::write(root.join(page), format!("<p>{page}</p>\n")).unwrap();
        }
        std::fs::write(root.join("css/site.css"), css).unwrap();
    };
    build("body { color: red }\n");
    let first = paths_until(&mut tab, "css/site.css").await;
    assert_eq!(first.len(), 4, "{first:?}");
    build("body { color: teal }\n");
    let batch = tab.next_batch().await;
    assert_eq!(paths(&batch), ["css/site.css"], "{batch}");
    std::fs::write(root.join("about.html"), "<p>about.html</p>\n").unwrap();
    let batch = tab.next_batch().await;
    assert_eq!(paths(&batch), ["about.html"], "{batch}");
}

/// A folder deleted with its files is reported as the files it held, not also as each folder on
/// the way up; a folder moved out of the tree, whose files are not reported, as its own name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_folder_is_the_files_it_held() {
    let (_dir, root) = project();
    write(&root.join("js/a/b/f.js"), "x");
    write(&root.join("img/logo.svg"), "x");
    let outside = tempfile::tempdir().unwrap();
    let proxy = serve(&root, &["--debounce", "200"]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    std::fs::remove_dir_all(root.join("js/a")).unwrap();
    assert_eq!(paths(&tab.next_batch().await), ["js/a/b/f.js"]);
    std::fs::rename(root.join("img"), outside.path().join("img")).unwrap();
    assert_eq!(paths(&tab.next_batch().await), ["img"]);
}

/// Removing an ignored directory (`npm ci` clearing node_modules, a clean build) changes nothing
/// served: no batch, where one reloaded every tab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_ignored_directory_reports_nothing() {
    let (_dir, root) = project();
    write(&root.join(".gitignore"), "build/\n");
    write(&root.join("node_modules/pkg/index.js"), "x");
    write(&root.join("build/out.js"), "x");
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    std::fs::remove_dir_all(root.join("node_modules")).unwrap();
    std::fs::remove_dir_all(root.join("build")).unwrap();
    write(&root.join("css/site.css"), "sentinel");
    let seen = paths_until(&mut tab, "css/site.css").await;
    assert_eq!(
        seen,
        ["css/site.css"],
        "an ignored directory's removal was reported"
    );
}

/// A folder tree that never held a file changes nothing served when it goes: a compiler's scratch
/// folder (`rustc` makes `rustcXXXXXX/raw-dylibs` beside its output and deletes it at the end of
/// every build) was reported by the inner folder's name, and tabs reloaded for it. One that held a
/// file is still reported (the test above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_folder_tree_that_held_no_file_reports_nothing() {
    let (_dir, root) = project();
    std::fs::create_dir_all(root.join("uploads/cache")).unwrap();
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    std::fs::create_dir_all(root.join("rustcAx9Qz1/raw-dylibs")).unwrap();
    // Once the save after it is reported, the scratch folder is watched: its removal is seen.
    write(&root.join("css/site.css"), "a");
    assert_eq!(
        paths_until(&mut tab, "css/site.css").await,
        ["css/site.css"]
    );
    std::fs::remove_dir_all(root.join("rustcAx9Qz1")).unwrap();
    std::fs::remove_dir_all(root.join("uploads")).unwrap();
    write(&root.join("css/site.css"), "b");
    let seen = paths_until(&mut tab, "css/site.css").await;
    assert_eq!(
        seen,
        ["css/site.css"],
        "an empty folder's removal was reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_roots_map_to_their_url_prefixes() {
    let (_dir, root) = project();
    write(&root.join("static/css/a.css"), "a");
    write(&root.join("templates/page.html"), "p");
    let proxy = Proxy::start_in(
        &root,
        &["-w", "static=/assets", "-w", "templates", "--serve", "."],
    )
    .await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    write(&root.join("static/css/a.css"), "a2");
    let batch = tab.next_batch().await;
    assert_eq!(batch["paths"], serde_json::json!(["css/a.css"]));
    assert_eq!(batch["urls"], serde_json::json!(["/assets/css/a.css"]));
    write(&root.join("templates/page.html"), "p2");
    let batch = tab.next_batch().await;
    assert_eq!(batch["urls"], serde_json::json!(["/page.html"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_sees_saves() {
    let (_dir, root) = project();
    // Polling compares modification times; make the first save's time differ from creation's
    // even on file systems with coarse timestamps.
    let past = std::time::SystemTime::now() - Duration::from_secs(10);
    std::fs::File::options()
        .write(true)
        .open(root.join("css/site.css"))
        .unwrap()
        .set_modified(past)
        .unwrap();
    let proxy = serve(&root, &["--poll=50"]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    write(
        &root.join("css/site.css"),
        "body { margin: 0; padding: 1px }\n",
    );
    let batch = tab.next_batch().await;
    assert_eq!(paths(&batch), ["css/site.css"]);
    // A directory created after start is picked up too.
    write(&root.join("new/app.js"), "x");
    let mut seen = Vec::new();
    within("the new directory's file", async {
        while !seen.iter().any(|p| p == "new/app.js") {
            seen.extend(paths(&tab.next_batch().await));
        }
    })
    .await;
}

/// Two saves inside one second are two batches when polling (a fix and a save again, or a format
/// on save). Saved as editors do, by renaming a finished copy over the file, with modification
/// times in one whole second and the same size: nothing but the time's fraction and the inode
/// tells the versions apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_sees_a_second_save_within_the_same_second() {
    let (_dir, root) = project();
    let scratch = tempfile::tempdir().unwrap();
    let file = root.join("css/site.css");
    let second = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let save = |content: &str, at: std::time::SystemTime| {
        // Written outside the watched tree, then moved in whole.
        let copy = scratch.path().join("site.css");
        std::fs::write(&copy, content).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&copy)
            .unwrap()
            .set_modified(at)
            .unwrap();
        std::fs::rename(&copy, &file).unwrap();
    };
    save("a {}\n", second);
    let proxy = serve(&root, &["--poll=50"]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    save("b {}\n", second + Duration::from_millis(300));
    assert_eq!(paths(&tab.next_batch().await), ["css/site.css"]);
    save("c {}\n", second + Duration::from_millis(700));
    assert_eq!(paths(&tab.next_batch().await), ["css/site.css"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_tab_gets_what_it_missed_or_a_reload() {
    let (_dir, root) = project();
    let proxy = serve(&root, &[]).await;
    let mut watcher = SseClient::open(proxy.addr, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    write(&root.join("css/site.css"), "1");
    let first = tab.next_batch().await;
    watcher.next_batch().await;
    let last_id = first["_event_id"].as_str().unwrap().to_string();
    drop(tab);

    write(&root.join("index.html"), "2");
    watcher.next_batch().await;
    write(&root.join("css/site.css"), "3");
    watcher.next_batch().await;

    let mut back = SseClient::open(proxy.addr, &[("last-event-id", &last_id)]).await;
    let missed = [back.next_batch().await, back.next_batch().await];
    assert_eq!(paths(&missed[0]), ["index.html"]);
    assert_eq!(paths(&missed[1]), ["css/site.css"]);

    // A fresh EventSource (a tab taking over as leader) says where to resume in the query.
    let mut leader =
        SseClient::connect(proxy.addr, &format!("/changes?lastEventId={last_id}"), &[]).await;
    assert_eq!(leader.status, 200);
    let replayed = [leader.next_batch().await, leader.next_batch().await];
    assert_eq!(paths(&replayed[0]), ["index.html"]);
    assert_eq!(paths(&replayed[1]), ["css/site.css"]);

    // Ids from long ago (or another proxy run) cannot be replayed: one reload instead.
    let old = (last_id.parse::<u64>().unwrap() - 1000).to_string();
    let mut stale = SseClient::open(proxy.addr, &[("last-event-id", &old)]).await;
    let reload = stale.next_batch().await;
    assert_eq!(reload["reload"], true);
    assert_eq!(reload["paths"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_that_stops_reading_gets_a_reload_not_a_backlog() {
    let (_dir, root) = project();
    let proxy = serve(&root, &[]).await;
    // A socket with a tiny receive buffer that the test does not read from.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(proxy.addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    slow.write_all(b"GET /changes HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut watcher = SseClient::open(proxy.addr, &[]).await;
    clients_become(&proxy, 2, "slow tab counted").await;

    // 150 batches of ~60 KiB each (9 MiB): far more than the per-tab queue and the socket
    // buffers hold, even with the sender's buffer autotuned to its 4 MiB maximum.
    let long: Vec<String> = (0..300)
        .map(|i| format!("{}/{i}.css", "d".repeat(90)))
        .collect();
    let body = serde_json::json!({ "paths": long }).to_string();
    let client = crate::support::client();
    for _ in 0..150 {
        let req = http::Request::post(proxy.url("/__hmr/reload"))
            .body(http_body_util::Full::new(bytes::Bytes::from(body.clone())))
            .unwrap();
        let res = within("reload post", client.request(req)).await.unwrap();
        assert_eq!(res.status(), 202);
        watcher.next_batch().await;
    }

    // Now read the slow tab: it must see a reload batch and fewer than the 150 batches.
    let mut text = String::new();
    let mut buf = vec![0u8; 64 * 1024];
    use tokio::io::AsyncReadExt;
    let saw_reload = within("reload for the slow tab", async {
        loop {
            let n = slow.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream closed");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.contains("\"reload\":true") {
                return true;
            }
        }
    })
    .await;
    assert!(saw_reload);
    let delivered = text.matches("event: change").count();
    assert!(
        delivered < 150,
        "the slow tab got all {delivered} batches queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tabs_all_get_the_batch_and_leave_cleanly() {
    rlimit::increase_nofile_limit(8192).unwrap();
    let (_dir, root) = project();
    let proxy = serve(&root, &[]).await;
    let mut tabs = Vec::new();
    for _ in 0..1000 {
        tabs.push(SseClient::open(proxy.addr, &[]).await);
    }
    assert_eq!(clients(&proxy).await, 1000);

    write(&root.join("css/site.css"), "all");
    let receivers = tabs.into_iter().map(|mut tab| {
        tokio::spawn(async move {
            let batch = tab.next_batch().await;
            (paths(&batch), tab)
        })
    });
    let mut tabs = Vec::new();
    for handle in receivers {
        let (got, tab) = within("a tab's batch", handle).await.unwrap();
        assert_eq!(got, ["css/site.css"]);
        tabs.push(tab);
    }
    drop(tabs);
    clients_become(&proxy, 0, "all tabs gone").await;
}

/// A request body still on its way is the request's: bytes that arrive after the answer and
/// happen to read as a stream request are that body, never a second request (a stream taken
/// from hyper then would answer a request nobody sent, which a proxy in front reusing the
/// connection could hand to someone else). The upstream here answers before reading the body,
/// as an Express route without a body parser does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_is_never_taken_for_a_stream() {
    use std::io::{Read, Write};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap();
    let (body_tx, body_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // The proxy's health probe connects too, and sends nothing: let those go.
        let (mut conn, mut seen) = loop {
            let (mut conn, _) = listener.accept().unwrap();
            match conn.read(&mut buf) {
                Ok(n) if n > 0 => break (conn, buf[..n].to_vec()),
                _ => continue,
            }
        };
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "the proxy closed before a request head");
            seen.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
            .unwrap();
        // Then the body, whenever it comes.
        let head_end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut body = seen.split_off(head_end);
        while !body.ends_with(b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "the proxy closed before the whole body");
            body.extend_from_slice(&buf[..n]);
        }
        let _ = body_tx.send(body);
    });
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{upstream}");
    let proxy = Proxy::start_in(dir.path(), &[url.as_str()]).await;

    let inner = b"GET /changes HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    conn.write_all(
        format!(
            "POST /early HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            inner.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_until(&mut conn, Some("early")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    conn.write_all(inner).await.unwrap();
    let body = within("the body to reach the upstream", body_rx)
        .await
        .unwrap();
    assert_eq!(body, inner);
    conn.write_all(b"GET /__hmr/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let rest = read_until(&mut conn, None).await;
    assert!(!rest.contains("event-stream"), "{rest}");
    assert!(
        rest.starts_with("HTTP/1.1 200") && rest.ends_with("ok\n"),
        "{rest}"
    );
}

/// The stream's path is the app's too for whatever is not an event-stream request: a form posted
/// to its `/changes`, a tab opening its changelog page, a `fetch` for JSON, a browser's bare
/// `fetch('/changes')` (on a fresh connection, which the raw-stream shortcut looks at first, and
/// on a reused one, which hyper serves). An `EventSource`'s request, or a tool's bare `GET`,
/// still gets the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_event_stream_requests_on_the_stream_path_are_taken() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;
    let apps = [
        "POST /changes HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nok",
        "GET /changes HTTP/1.1\r\nHost: localhost\r\nSec-Fetch-Dest: document\r\n\
         Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n\r\n",
        "GET /changes?page=2 HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n",
        // axios's and jQuery's defaults name their type before the wildcard.
        "GET /changes HTTP/1.1\r\nHost: localhost\r\nSec-Fetch-Dest: empty\r\n\
         Accept: application/json, text/plain, */*\r\n\r\n",
        "GET /changes HTTP/1.1\r\nHost: localhost\r\n\
         Accept: application/json, text/javascript, */*; q=0.01\r\n\r\n",
        // A navigation from an origin that is not secure (a LAN address) has no fetch metadata.
        "GET /changes HTTP/1.1\r\nHost: localhost\r\n\
         Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\r\n",
        "GET /changes HTTP/1.1\r\nHost: localhost\r\n\
         Accept: text/event-stream;q=0, application/json\r\n\r\n",
        // `fetch('/changes')` leaves `Accept` at `*/*`; its fetch metadata says a browser sent it.
        "GET /changes HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\
         Sec-Fetch-Mode: cors\r\nSec-Fetch-Dest: empty\r\nSec-Fetch-Site: same-origin\r\n\r\n",
    ];
    for request in apps {
        let fresh = support::raw(proxy.addr, request.as_bytes(), Some("/changes")).await;
        assert!(
            fresh.starts_with("HTTP/1.1 200") && fresh.ends_with("upstream saw /changes"),
            "{request}: {fresh}"
        );
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        conn.write_all(b"GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        read_until(&mut conn, Some("upstream saw /first")).await;
        conn.write_all(request.as_bytes()).await.unwrap();
        let reused = read_until(&mut conn, Some("upstream saw /changes")).await;
        assert!(reused.starts_with("HTTP/1.1 200"), "{request}: {reused}");
    }
    for stream in [
        "GET /changes HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\
         Sec-Fetch-Dest: empty\r\n\r\n",
        "GET /changes HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\
         Sec-Fetch-Mode: cors\r\nSec-Fetch-Dest: empty\r\nSec-Fetch-Site: same-origin\r\n\r\n",
        "GET /changes HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET /changes HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
        // Node's fetch: `Sec-Fetch-Mode` alone, no `Sec-Fetch-Site`.
        "GET /changes HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\nSec-Fetch-Mode: cors\r\n\r\n",
        "GET /changes HTTP/1.1\r\nHost: localhost\r\nAccept: text/html;q=0, text/*\r\n\r\n",
    ] {
        let answer = support::raw(proxy.addr, stream.as_bytes(), Some("text/event-stream")).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.contains("text/event-stream"),
            "{stream}: {answer}"
        );
    }
}

/// A stream asked for on a fresh connection is served outside hyper (`Connection: close`, the
/// body delimited by closing); so is one asked for on a keep-alive connection after another
/// exchange finished there (as a browser reuses its connections), taken from hyper between
/// messages. One pipelined behind another request stays with hyper (chunked). All deliver, count
/// as tabs, and stop counting when their client goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_on_fresh_and_on_reused_connections_both_deliver() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let (_dir, root) = project();
    let proxy = serve(&root, &[]).await;
    let request = b"GET /changes HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let outside_hyper = |head: &str| {
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: text/event-stream\r\n"),
            "{head}"
        );
        assert!(!head.contains("transfer-encoding"), "{head}");
    };

    let mut fresh = TcpStream::connect(proxy.addr).await.unwrap();
    fresh.write_all(request).await.unwrap();
    let head = read_until(&mut fresh, Some("event: hello"))
        .await
        .to_ascii_lowercase();
    outside_hyper(&head);

    // Two exchanges first (a page and a proxied-style GET), each read to its end.
    let mut reused = TcpStream::connect(proxy.addr).await.unwrap();
    for _ in 0..2 {
        reused
            .write_all(b"GET /__hmr/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let health = read_until(&mut reused, Some("ok\n")).await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(!health.contains("connection: close"), "{health}");
    }
    reused.write_all(request).await.unwrap();
    let head = read_until(&mut reused, Some("event: hello"))
        .await
        .to_ascii_lowercase();
    outside_hyper(&head);
    assert_eq!(head.matches("http/1.1 ").count(), 1, "{head}");

    let mut pipelined = TcpStream::connect(proxy.addr).await.unwrap();
    pipelined
        .write_all(
            [
                &b"GET /__hmr/health HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
                request,
            ]
            .concat()
            .as_slice(),
        )
        .await
        .unwrap();
    let head = read_until(&mut pipelined, Some("event: hello"))
        .await
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(
        head.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );

    assert_eq!(clients(&proxy).await, 3);
    write(&root.join("css/site.css"), "body { color: blue }\n");
    for tab in [&mut fresh, &mut reused, &mut pipelined] {
        let text = read_until(tab, Some(r#""paths":["css/site.css"]"#)).await;
        assert!(text.contains("event: change"), "{text}");
    }

    drop((fresh, reused, pipelined));
    clients_become(&proxy, 0, "all tabs gone").await;

    // Served outside hyper, the stream still refuses other hosts (DNS rebinding) and other
    // sites, with a complete answer.
    for (header, body) in [
        ("Host: evil.example", "hmr-proxy"),
        (
            "Host: localhost\r\nOrigin: http://evil.example",
            "another site",
        ),
    ] {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(format!("GET /changes HTTP/1.1\r\n{header}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let answer = read_until(&mut s, None).await;
        let lower = answer.to_ascii_lowercase();
        assert!(lower.starts_with("http/1.1 403 forbidden\r\n"), "{answer}");
        assert!(lower.contains("\r\nconnection: close\r\n"), "{answer}");
        assert!(lower.contains("\r\ncontent-length: "), "{answer}");
        assert!(lower.contains("\r\ndate: "), "{answer}");
        assert!(answer.contains(body), "{answer}");
    }
    assert_eq!(clients(&proxy).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_idle_streams_alive() {
    let (_dir, root) = project();
    let proxy = serve(&root, &["--heartbeat", "100ms"]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    let ping = tab.next_message().await.unwrap();
    assert_eq!(ping.comments, ["ping"]);
    assert_eq!(ping.data, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sites_cannot_open_the_stream_or_use_the_control_endpoint() {
    let (_dir, root) = project();
    let proxy = serve(&root, &[]).await;
    let host = proxy.addr.to_string();
    let same = format!("http://{host}");
    // An `EventSource` on another site's page: it asks for an event stream.
    let stream = ("accept", "text/event-stream");
    for headers in [
        vec![("origin", "http://evil.example")],
        vec![("sec-fetch-site", "cross-site"), stream],
        vec![
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://evil.example"),
            stream,
        ],
    ] {
        let tab = SseClient::connect(proxy.addr, "/changes", &headers).await;
        assert_eq!(tab.status, 403, "{headers:?}");
    }
    let tab = SseClient::connect(proxy.addr, "/changes", &[("origin", &same)]).await;
    assert_eq!(tab.status, 200);

    let client = crate::support::client();
    for (origin, fetch_site, want) in [
        (Some("http://evil.example"), None, 403),
        (None, Some("cross-site"), 403),
        (None, Some("same-site"), 403),
        (Some(same.as_str()), Some("same-origin"), 202),
        (None, None, 202),
    ] {
        let mut req = http::Request::post(proxy.url("/__hmr/reload"));
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        if let Some(site) = fetch_site {
            req = req.header("sec-fetch-site", site);
        }
        let res = within(
            "reload",
            client.request(
                req.body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
        assert_eq!(res.status(), want, "{origin:?} {fetch_site:?}");
    }
    let (status, _, _) = get(&proxy.url("/__hmr/reload"), &[]).await;
    assert_eq!(status, 405);
}

/// Listening on every address, the proxy answers pages to the network but its control endpoints
/// to this machine only. The caller from elsewhere is this machine by its network address (the
/// address it would send from toward the outside), which is not a loopback one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_endpoints_refuse_callers_from_the_network() {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // Connecting a UDP socket sends nothing: it only picks the route and the source address.
    let outward = probe
        .connect("192.0.2.1:9")
        .and_then(|()| probe.local_addr())
        .map(|addr| addr.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    let Some(outward) = outward else {
        eprintln!("skipped: this machine has no route off it, so no non-loopback address");
        return;
    };
    let (_dir, root) = project();
    let proxy = serve(&root, &["--listen", "0.0.0.0:0"]).await;
    let port = proxy.addr.port();
    let ask = |addr: std::net::IpAddr, request: &'static str| async move {
        let text = crate::support::raw(
            (addr, port).into(),
            format!("{request} HTTP/1.1\r\nHost: {addr}:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
            Some("\r\n"),
        )
        .await;
        text.split(' ').nth(1).unwrap_or_default().to_string()
    };
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    for (request, mine) in [
        ("GET /__hmr/status", "200"),
        ("POST /__hmr/reload", "202"),
        ("GET /index.html", "200"),
    ] {
        assert_eq!(
            ask(loopback, request).await,
            mine,
            "{request} from loopback"
        );
        let network = if request.contains("__hmr") {
            "403"
        } else {
            "200"
        };
        assert_eq!(
            ask(outward, request).await,
            network,
            "{request} from {outward}"
        );
    }
    // Listening on that one address, there is no loopback way in: a caller from the same
    // address is this machine (a build tool beside the proxy), and may.
    let listen = format!("{outward}:0"); // IPv4: the probe was bound to 0.0.0.0
    let proxy = serve(&root, &["--listen", &listen]).await;
    let port = proxy.addr.port();
    for (request, mine) in [("GET /__hmr/status", "200"), ("POST /__hmr/reload", "202")] {
        let text = crate::support::raw(
            (outward, port).into(),
            format!(
                "{request} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
            Some("\r\n"),
        )
        .await;
        assert_eq!(
            text.split(' ').nth(1).unwrap_or_default(),
            mine,
            "{request} from {outward} to {outward}"
        );
    }
}

/// Through a tunnel (cloudflared, ngrok) every visitor is a loopback peer; the agent names the
/// visitor in `X-Forwarded-For`, and a visitor from elsewhere may not use the control endpoints.
/// A reverse proxy on this machine forwarding for this machine's own browser still may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_endpoints_refuse_a_visitor_forwarded_from_elsewhere() {
    let (_dir, root) = project();
    let proxy = serve(&root, &[]).await;
    let ask = |request: &'static str, forwarded: &'static str| {
        let addr = proxy.addr;
        async move {
            let text = crate::support::raw(
                addr,
                format!(
                    "{request} HTTP/1.1\r\nHost: {addr}\r\n{forwarded}Content-Length: 0\r\n\
                     Connection: close\r\n\r\n"
                )
                .as_bytes(),
                Some("\r\n"),
            )
            .await;
            text.split(' ').nth(1).unwrap_or_default().to_string()
        }
    };
    for request in ["GET /__hmr/status", "POST /__hmr/reload"] {
        for forwarded in [
            "X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: https\r\n",
            "Forwarded: for=198.51.100.7;proto=https\r\n",
        ] {
            assert_eq!(
                ask(request, forwarded).await,
                "403",
                "{request} {forwarded:?}"
            );
        }
        let mine = if request.starts_with("GET") {
            "200"
        } else {
            "202"
        };
        assert_eq!(
            ask(request, "X-Forwarded-For: 127.0.0.1\r\n").await,
            mine,
            "{request} forwarded for this machine"
        );
    }
    // The pages still answer the visitor.
    assert_eq!(
        ask("GET /index.html", "X-Forwarded-For: 198.51.100.7\r\n").await,
        "200"
    );
}

/// A batch of files the proxy serves as they are (no upstream) says so: a file no page fetched
/// then changes no page. A file of a folder it only watches, or any behind an upstream, may make
/// a page (a source a build turns into it, a template), and does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_served_files_says_so() {
    let (_dir, root) = project();
    let elsewhere = tempfile::tempdir().unwrap();
    let src = elsewhere.path().canonicalize().unwrap();
    let proxy = serve(
        &root,
        &[
            "--watch",
            ".",
            "--watch",
            &format!("{}=/src", src.display()),
        ],
    )
    .await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    std::fs::write(root.join("notes.md"), "# notes\n").unwrap();
    let batch = tab.next_batch().await;
    assert_eq!(batch["paths"], serde_json::json!(["notes.md"]));
    assert_eq!(batch["served"], true);
    // Only under `--spa` is the top index.html every page's own.
    assert_eq!(batch["spa"], serde_json::Value::Null);
    std::fs::write(src.join("app.ts"), "export {}\n").unwrap();
    let batch = tab.next_batch().await;
    assert_eq!(batch["paths"], serde_json::json!(["app.ts"]));
    assert_eq!(batch["served"], serde_json::Value::Null);

    let proxy = serve(&root, &["--spa"]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    std::fs::write(root.join("index.html"), "<p>home</p>\n").unwrap();
    let batch = tab.next_batch().await;
    assert_eq!(batch["paths"], serde_json::json!(["index.html"]));
    assert_eq!(
        (&batch["served"], &batch["spa"]),
        (&true.into(), &true.into())
    );

    let upstream = Upstream::start().await;
    let proxy = Proxy::start_in(&root, &[&upstream.url(), "--watch", "."]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    std::fs::write(root.join("notes.md"), "# notes, again\n").unwrap();
    let batch = tab.next_batch().await;
    assert_eq!(batch["paths"], serde_json::json!(["notes.md"]));
    assert_eq!(batch["served"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_endpoint_broadcasts_paths_or_a_reload() {
    let (_dir, root) = project();
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    let client = crate::support::client();
    // A reload that names no file says why, for the tab's console (which said "the dev server
    // came back, or this page missed changes" for a build tool's call).
    for (body, want_paths, want_reload, want_reason) in [
        ("", serde_json::json!([]), true, "POST /__hmr/reload".into()),
        (
            r#"{"paths":[]}"#,
            serde_json::json!([]),
            true,
            "POST /__hmr/reload".into(),
        ),
        (
            r#"{"paths":["css/site.css","/static/x.js"]}"#,
            serde_json::json!(["css/site.css", "static/x.js"]),
            false,
            serde_json::Value::Null,
        ),
    ] {
        let req = http::Request::post(proxy.url("/__hmr/reload"))
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let res = within("reload", client.request(req)).await.unwrap();
        assert_eq!(res.status(), 202);
        let batch = tab.next_batch().await;
        assert_eq!(batch["paths"], want_paths);
        assert_eq!(batch["reload"], want_reload);
        assert_eq!(batch["reason"], want_reason);
    }
    let req = http::Request::post(proxy.url("/__hmr/reload"))
        .body(http_body_util::Full::new(bytes::Bytes::from("{not json")))
        .unwrap();
    let res = within("bad reload", client.request(req)).await.unwrap();
    assert_eq!(res.status(), 400);

    let (_, _, body) = get(&proxy.url("/__hmr/status"), &[]).await;
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["batches_sent"], 3);
    assert_eq!(status["clients"], 1);
    assert_eq!(status["watching"][0]["dir"], root.display().to_string());
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_restarts_triggers_one_reload() {
    let upstream = Upstream::start().await;
    let addr = upstream.addr;
    let (dir, root) = project();
    let url = upstream.url();
    let proxy = Proxy::start_in(&root, &[&url]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    let (status, _, _) = get(&proxy.url("/"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(upstream_status(proxy.addr).await["reachable"], true);

    drop(upstream);
    until_reachable(proxy.addr, false).await;
    let listener = support::rebind(addr).await;
    let _back = Upstream::serve(listener);
    let batch = tab.next_batch().await;
    assert_eq!(batch["reload"], true);
    // Back within seconds: a restart (a longer outage is "is back", tests/cli.rs).
    assert_eq!(batch["reason"], format!("upstream {url} restarted"));
    drop(dir);
}

/// A page the upstream answered after the proxy saw it come back is past that comeback's reload:
/// its `hmr-restart` metric is at least the reload's `restart` mark, and its client skips the
/// reload. Its position could not tell: read as its request came in, it is older than the
/// reload, which its client gets replayed (the waiting page that reloaded itself the moment the
/// server took connections was loaded twice). The page here is held by the server until the
/// reload is out. The proxy's own pages say no comeback: no server that came back served them,
/// and a form cut off by the restart is sent again by the reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_answered_after_a_comeback_is_past_its_reload() {
    let upstream = Upstream::start().await;
    let addr = upstream.addr;
    let (dir, root) = project();
    let url = upstream.url();
    let proxy = Proxy::start_in(&root, &[&url]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    let page = [("sec-fetch-dest", "document"), ("accept", "text/html")];
    let metric = support::server_timing;
    until_reachable(proxy.addr, true).await;
    // No page before: its pooled connection would outlive the server (its task serves it on).
    upstream.stop().await;
    until_reachable(proxy.addr, false).await;
    let back = Upstream::serve(support::rebind(addr).await);
    let slow = proxy.url("/slow/document");
    let held = tokio::spawn(async move { get(&slow, &page).await });
    back.wait_for_requests("slow", 1).await;
    // Held unanswered: the probe's connect is what sees the server back.
    let batch = tab.next_batch().await;
    assert_eq!(batch["reload"], true);
    let reason = batch["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with(&format!("upstream {url} ")), "{batch}");
    let (id, mark) = (batch["id"].as_u64(), batch["restart"].as_u64());
    let (Some(id), Some(mark)) = (id, mark) else {
        panic!("no id or restart mark: {batch}");
    };
    back.release("slow");
    let (status, headers, _) = held.await.expect("the held request");
    assert_eq!(status, 200);
    let since = metric(&headers, "hmr").unwrap_or_else(|| panic!("no hmr: {headers:?}"));
    let after = metric(&headers, "hmr-restart").unwrap_or_else(|| panic!("{headers:?}"));
    assert!(
        since < id,
        "asked for before the reload: position {since}, reload {id}"
    );
    assert!(
        after >= mark,
        "answered after the comeback: {after} is behind {mark}"
    );

    // The proxy's own pages: for a server that is not there, and for one that did not answer.
    let dead = format!("http://{}", support::dead_addr().await);
    let stood_in = Proxy::start_in(&root, &[&dead]).await;
    let (status, headers, _) = get(&stood_in.url("/document"), &page).await;
    assert_eq!(status, 502);
    assert_eq!(
        metric(&headers, "hmr-restart"),
        None,
        "the waiting page: {headers:?}"
    );
    let impatient = Proxy::start_in(&root, &[&url, "--response-timeout", "300ms"]).await;
    let (status, headers, _) = get(&impatient.url("/hang"), &page).await;
    assert_eq!(status, 504);
    assert_eq!(
        metric(&headers, "hmr-restart"),
        None,
        "a timeout's page: {headers:?}"
    );
    drop(dir);
}

/// A page the old server was still sending when a new one took its address (a graceful
/// takeover: the old process finishes its requests) is behind that comeback: it names an older
/// one, so its tab takes the comeback's reload. The mark is read when the upstream's answer
/// came in, not when the proxy's went out (after a compressed page's first decoded bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_the_old_server_finishes_after_a_comeback_is_behind_it() {
    let upstream = Upstream::start().await;
    let addr = upstream.addr;
    let (dir, root) = project();
    let url = upstream.url();
    // The binary, for its log: the line that says the upstream's head is in.
    let proxy = Running::start(&["-v", &url], &[], &root);
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    until_reachable(proxy.addr, true).await;
    let page = [("sec-fetch-dest", "document"), ("accept", "text/html")];
    let slow = proxy.url("/slow/gzip");
    let held = tokio::spawn(async move { get(&slow, &page).await });
    upstream.wait_for_requests("slow", 1).await;
    tokio::task::block_in_place(|| proxy.wait_for_log("GET /slow/gzip → 200"));
    // The old server stops listening and finishes the page only once a new one is back.
    let finish = upstream.gate("slow");
    upstream.stop().await;
    until_reachable(proxy.addr, false).await;
    let _back = Upstream::serve(support::rebind(addr).await);
    let batch = tab.next_batch().await;
    assert_eq!(batch["reload"], true, "{batch}");
    let Some(mark) = batch["restart"].as_u64() else {
        panic!("no restart mark: {batch}");
    };
    finish.notify_one();
    let (status, headers, body) = held.await.expect("the held request");
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&body).contains("<title>page</title>"),
        "{body:?}"
    );
    let answered = support::server_timing(&headers, "hmr-restart")
        .unwrap_or_else(|| panic!("no hmr-restart: {headers:?}"));
    assert!(
        answered < mark,
        "answered before the comeback: {answered} is not behind {mark}"
    );
    drop(dir);
}

/// The upstream's status as `/__hmr/status` gives it.
async fn upstream_status(proxy: SocketAddr) -> serde_json::Value {
    let (_, _, body) = get(&format!("http://{proxy}/__hmr/status"), &[]).await;
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    status["upstream"].clone()
}

/// Until `/__hmr/status` says the upstream is reachable (`up`) or not: no event says so.
async fn until_reachable(proxy: SocketAddr, up: bool) {
    within("the proxy to see the upstream come or go", async {
        while upstream_status(proxy).await["reachable"] != up {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A proxy in front of the upstream at `url` with a tab open, once it watches the upstream's
/// listening socket (it learns it on a connect).
async fn watching_the_upstream(url: &str) -> (tempfile::TempDir, PathBuf, Proxy, SseClient) {
    let (dir, root) = project();
    let proxy = Proxy::start_in(&root, &[url]).await;
    let tab = SseClient::open(proxy.addr, &[]).await;
    let (status, _, _) = get(&proxy.url("/"), &[]).await;
    assert_eq!(status, 200);
    within("the proxy to watch the upstream's socket", async {
        while upstream_status(proxy.addr).await["restart_check"] != "listening socket" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    (dir, root, proxy, tab)
}

/// A server that restarts faster than the probe's interval (a Go binary, nodemon) never leaves a
/// gap for a connect to fall into; its new listening socket still says it restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_restarts_between_two_probes_triggers_a_reload() {
    let upstream = Upstream::start().await;
    let addr = upstream.addr;
    let (_dir, _, proxy, mut tab) = watching_the_upstream(&upstream.url()).await;

    drop(upstream);
    let listener = support::rebind(addr).await;
    let _back = Upstream::serve(listener);
    let batch = tab.next_batch().await;
    assert_eq!(batch["reload"], true);
    assert_eq!(upstream_status(proxy.addr).await["reachable"], true);
}

/// A listening socket on `addr` that shares the port with others (`SO_REUSEPORT`), as each
/// worker of `gunicorn --reuse-port` has.
fn worker_socket(addr: std::net::SocketAddr) -> tokio::net::TcpListener {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(128).unwrap();
    socket.set_nonblocking(true).unwrap();
    tokio::net::TcpListener::from_std(socket.into()).unwrap()
}

/// Workers that each listen on the port come and go (a crash, `--max-requests`) while the
/// server stays up: no reload; all of them replaced at once is a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_replaced_is_no_restart_but_all_of_them_are() {
    let first = worker_socket("127.0.0.1:0".parse().unwrap());
    let addr = first.local_addr().unwrap();
    let workers = [Upstream::serve(first), Upstream::serve(worker_socket(addr))];
    let (_dir, root, _proxy, mut tab) = watching_the_upstream(&format!("http://{addr}")).await;

    let [one, two] = workers;
    drop(one);
    let three = Upstream::serve(worker_socket(addr));
    // An observation window: the probe looks twice or more meanwhile.
    tokio::time::sleep(hmr_proxy::proxy::health::PROBE_INTERVAL * 3).await;
    write(&root.join("css/site.css"), "body { color: teal }\n");
    let batch = tab.next_batch().await;
    assert_eq!(
        batch["reload"], false,
        "a worker replaced reloaded the tabs: {batch}"
    );

    two.stop().await;
    three.stop().await;
    let _new = [
        Upstream::serve(worker_socket(addr)),
        Upstream::serve(worker_socket(addr)),
    ];
    let batch = tab.next_batch().await;
    assert_eq!(batch["reload"], true, "{batch}");
}

/// A process that holds `listener`'s socket as a reloader's worker does (the socket is its
/// standard input), until dropped.
struct Worker(std::process::Child);

impl Worker {
    fn holding(listener: &std::net::TcpListener) -> Worker {
        let socket: std::os::fd::OwnedFd = listener.try_clone().unwrap().into();
        let child = std::process::Command::new("sleep")
            .arg("600")
            .stdin(std::process::Stdio::from(socket))
            .spawn()
            .expect("spawn sleep");
        Worker(child)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Werkzeug's, uvicorn's and gunicorn's reloaders keep the listening socket and hand it to each
/// new worker: the socket stays, its holders change. One of several workers replaced is the same
/// server; the reloader's workers all replaced is a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloader_handing_its_socket_to_a_new_worker_is_a_restart() {
    // This test process is the reloader: it holds the socket (and serves it).
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let serving = socket.try_clone().unwrap();
    serving.set_nonblocking(true).unwrap();
    let _upstream = Upstream::serve(tokio::net::TcpListener::from_std(serving).unwrap());
    // Two workers before the proxy looks: both are there from before.
    let (first, second) = (Worker::holding(&socket), Worker::holding(&socket));
    let (_dir, root, _proxy, mut tab) = watching_the_upstream(&format!("http://{addr}")).await;

    drop(first);
    let third = Worker::holding(&socket);
    // An observation window: the probe looks twice or more meanwhile.
    tokio::time::sleep(hmr_proxy::proxy::health::PROBE_INTERVAL * 3).await;
    write(&root.join("css/site.css"), "body { color: olive }\n");
    let batch = tab.next_batch().await;
    assert_eq!(
        batch["reload"], false,
        "a worker replaced reloaded the tabs: {batch}"
    );

    drop((second, third));
    let _fourth = Worker::holding(&socket);
    let batch = tab.next_batch().await;
    assert_eq!(batch["reload"], true, "{batch}");
}

/// While a tab listens, a local upstream that keeps running sees no probe connections: `php -S`
/// logs three lines for each, two a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_open_on_a_local_upstream_costs_it_no_connections() {
    let upstream = Upstream::start().await;
    let (_dir, _, proxy, _tab) = watching_the_upstream(&upstream.url()).await;
    let before = upstream.connections();
    // An observation window, not a wait for an event: four probe intervals in which the old
    // probe connected four times.
    tokio::time::sleep(hmr_proxy::proxy::health::PROBE_INTERVAL * 4).await;
    assert_eq!(upstream.connections(), before);
    assert_eq!(upstream_status(proxy.addr).await["reachable"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams() {
    let (_dir, root) = project();
    let mut proxy = serve(&root, &["--shutdown-grace", "20s"]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    proxy.shutdown.trigger();
    let started = std::time::Instant::now();
    within("run to return", proxy.take_task()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(tab.next_message().await, None);
}

/// Every page says which batch was the newest when it was served (`Server-Timing: hmr;desc=ID`),
/// and so does a 304 for one (the browser's copy is then current); other responses do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_say_where_the_batches_stood_when_they_were_served() {
    let (_dir, root) = project();
    let proxy = serve(&root, &[]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    let page = [("sec-fetch-dest", "document"), ("accept", "text/html")];
    let position = |headers: &http::HeaderMap| support::server_timing(headers, "hmr");
    let (status, headers, _) = get(&proxy.url("/"), &page).await;
    assert_eq!(status, 200);
    let first = position(&headers).unwrap_or_else(|| panic!("no position: {headers:?}"));
    let etag = headers["etag"].to_str().unwrap().to_string();
    let (_, headers, _) = get(&proxy.url("/css/site.css"), &[]).await;
    assert_eq!(position(&headers), None, "a stylesheet: {headers:?}");

    write(&root.join("css/site.css"), "body { color: red }\n");
    let batch = tab.next_batch().await;
    let id = batch["id"].as_u64().unwrap();
    assert!(id > first, "{id} after {first}");
    let (_, headers, _) = get(&proxy.url("/"), &page).await;
    assert_eq!(position(&headers), Some(id));
    let (status, headers, _) = get(
        &proxy.url("/"),
        &[page[0], page[1], ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(status, 304);
    assert_eq!(position(&headers), Some(id), "a 304: {headers:?}");
    // The validator the rewritten page was given, weak, not the file's strong one.
    assert!(etag.starts_with("W/"), "{etag}");
    assert_eq!(headers["etag"], etag.as_str());
}
