//! The browser client (`client/hmr-client.js`) in real headless Chromium, through the real binary:
//! once in static mode over a copy of `examples/container`, once in front of a real upstream
//! process (Python's `http.server`) serving such a copy.
//!
//! The browser side is `tests/browser/client.mjs`: it edits files in the site and asserts what
//! the tabs do (CSS and image swaps, container updates, the error overlay, full reloads, eight tabs
//! on one stream, leader hand-over, proxy restart). For the restart it prints `@@restart`; this
//! file then stops the proxy, starts a new one on the same port and answers `restarted` on the
//! script's stdin. `tests/browser/waiting.mjs` drives the proxy's waiting page in front of a
//! dev server it stops and starts itself. `HMR_PROXY_SKIP_BROWSER=1` skips these tests;
//! otherwise a missing Chromium, Node or `tests/browser/node_modules` fails them.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::PATIENCE;
use crate::support::bin::Running;

/// The whole browser run: about 120 s a mode on a quiet 2-core machine (both modes run at once
/// in `cargo test`, 200–300 s); generous for a loaded CI box.
const BROWSER_BUDGET: Duration = Duration::from_secs(540);

/// What the script prints when it wants the proxy restarted.
const RESTART: &str = "@@restart";

#[test]
fn chromium_in_static_mode() {
    if skipped() {
        return;
    }
    let site = Site::new();
    let dir = site.path();
    run_browser(&["--serve", dir], &site);
}

#[test]
fn chromium_in_front_of_an_upstream() {
    if skipped() {
        return;
    }
    let site = Site::new();
    let upstream = PythonServer::start(&site.dir);
    let url = upstream.url();
    run_browser(&[&url, "--watch", site.path()], &site);
}

/// A form posted while the dev server is down gets the proxy's waiting page, which reloads by
/// itself once the server is back, and the form reaches the server once (it reached it twice:
/// the page's poll and the injected client both reloaded it); a page the server that came back
/// answered is not reloaded for its comeback (see `sse::Restarts`). See
/// `tests/browser/waiting.mjs`.
#[test]
fn a_form_sent_while_the_upstream_is_down_arrives_once() {
    if skipped() {
        return;
    }
    let [port] = crate::support::ports::unclaimed::<1>();
    let site = tempfile::tempdir().expect("tempdir");
    let upstream = format!("http://127.0.0.1:{port}");
    let proxy = Running::start(&[&upstream, "--watch", "."], &[], site.path());
    // Bounded (coreutils' `timeout`): a script that hangs fails the test instead of the run.
    let out = Command::new("timeout")
        .args(["120", "node"])
        .arg(browser_dir().join("waiting.mjs"))
        .arg(proxy.url(""))
        .arg(port.to_string())
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .output()
        .expect("node runs (install Node.js, or set HMR_PROXY_SKIP_BROWSER=1)");
    assert!(
        out.status.success(),
        "{}{}
hmr-proxy logged:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
}

/// True (and says so) when the environment asks to skip browser tests; otherwise insists that
/// everything the browser tests need is installed.
fn skipped() -> bool {
    if std::env::var("HMR_PROXY_SKIP_BROWSER").as_deref() == Ok("1") {
        println!("skipped: HMR_PROXY_SKIP_BROWSER=1 (the Chromium client tests did not run)");
        return true;
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let fix =
        "run scripts/install-test-deps (or set HMR_PROXY_SKIP_BROWSER=1 to skip the browser tests)";
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: {fix}"
    );
    assert!(
        browser_dir()
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "tests/browser/node_modules/playwright-core is missing: {fix}"
    );
    false
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Start the proxy with `args` (on `port`, or any free one) in the site directory.
fn start_proxy(args: &[&str], port: Option<u16>, site: &Site) -> Running {
    let listen = port.map(|p| format!("127.0.0.1:{p}"));
    let mut argv: Vec<&str> = Vec::new();
    if let Some(listen) = &listen {
        argv.extend(["--listen", listen]);
    }
    argv.extend_from_slice(args);
    Running::start(&argv, &[], &site.dir)
}

/// Run `tests/browser/client.mjs` against a proxy started with `args`; fail with the script's
/// output (and the proxy's log) unless it exits 0.
fn run_browser(args: &[&str], site: &Site) {
    let mut proxy = start_proxy(args, None, site);
    let port = proxy.addr.port();
    let origin = proxy.url("");

    let mut node = Command::new("node")
        .arg(browser_dir().join("client.mjs"))
        .arg(&origin)
        .arg(&site.dir)
        .current_dir(browser_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (install Node.js, or set HMR_PROXY_SKIP_BROWSER=1)");
    let mut stdin = node.stdin.take().expect("stdin piped");
    let stderr = drain(node.stderr.take().expect("stderr piped"));
    let (tx, lines) = mpsc::channel();
    let stdout = BufReader::new(node.stdout.take().expect("stdout piped"));
    thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + BROWSER_BUDGET;
    let mut output = String::new();
    let mut proxy_logs = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line == RESTART => {
                output.push_str("(restarting the proxy)\n");
                proxy.terminate();
                let status = proxy.wait_exit(PATIENCE);
                assert!(status.success(), "hmr-proxy exited with {status}");
                proxy_logs.push_str(&proxy.log());
                proxy = start_proxy(args, Some(port), site);
                writeln!(stdin, "restarted").expect("answer the script");
            }
            Ok(line) => {
                output.push_str(&line);
                output.push('\n');
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                let _ = node.kill();
                let _ = node.wait();
                panic!(
                    "the browser tests took over {BROWSER_BUDGET:?}; killed them. Output:\n{output}\
                     stderr:\n{}\nproxy log:\n{proxy_logs}{}",
                    stderr.join().unwrap_or_default(),
                    proxy.log()
                );
            }
        }
    }
    let status = node.wait().expect("wait for node");
    let stderr = stderr.join().unwrap_or_default();
    assert!(
        status.success(),
        "the browser tests failed ({status}):\n{output}stderr:\n{stderr}\nproxy log:\n{proxy_logs}{}",
        proxy.log()
    );
    print!("{output}");
}

/// Read a pipe to its end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut out = String::new();
        let _ = pipe.read_to_string(&mut out);
        out
    })
}

/// A fresh copy of `examples/container` in `<tempdir>/site`; the script writes its scratch files
/// beside it, outside the watched tree.
struct Site {
    _root: tempfile::TempDir,
    dir: PathBuf,
}

impl Site {
    fn new() -> Site {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("site");
        copy_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/container"),
            &dir,
        );
        Site { _root: root, dir }
    }

    fn path(&self) -> &str {
        self.dir.to_str().expect("temp paths are UTF-8")
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read example dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// `python3 -m http.server` on a free port, serving `dir`; killed on drop.
struct PythonServer {
    child: Child,
    port: u16,
}

impl PythonServer {
    fn start(dir: &Path) -> PythonServer {
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (run scripts/install-test-deps)");
        // Readiness is its "Serving HTTP on 127.0.0.1 port N" line, printed once it is bound.
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep reading so the pipe never fills.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(PATIENCE)
            .expect("python3 -m http.server says where it listens");
        let port = line
            .split(" port ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        PythonServer { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
