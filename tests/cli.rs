//! The real binary: one-line `error:` messages with exit code 2 for bad input, precedence of
//! flags over environment over config file, `--help`, the no-argument start, and graceful
//! shutdown on SIGTERM.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch};

use crate::support::bin::{self, Running, run_to_exit};
use crate::support::{raw, within};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Assert the process stopped on bad input the documented way: exit code 2, nothing on stdout,
/// exactly one line on stderr, starting with `error: `. Returns that line.
fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit status {}; stderr:\n{stderr}",
        out.status
    );
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got:\n{stderr}"
    );
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

fn assert_mentions(line: &str, needles: &[&str]) {
    for needle in needles {
        assert!(line.contains(needle), "{needle:?} missing from: {line}");
    }
}

fn write_config(dir: &Path, text: &str) {
    std::fs::write(dir.join("hmr-proxy.toml"), text).expect("write hmr-proxy.toml");
}

#[test]
fn upstream_without_scheme_suggests_the_url() {
    let dir = tempdir();
    let line = error_line(&run_to_exit(&["/app"], &[], dir.path()));
    assert_eq!(
        line,
        "error: UPSTREAM: `/app` has no scheme; write http://app"
    );
    let line = error_line(&run_to_exit(
        &[],
        &[("HMR_PROXY_UPSTREAM", "ws://localhost:8000")],
        dir.path(),
    ));
    assert_mentions(&line, &["HMR_PROXY_UPSTREAM", "http://localhost:8000"]);
}

/// A port, or a host and port, is taken for the dev server's http URL, as browser-sync's
/// `--proxy localhost:8000` takes it, and said.
#[test]
fn a_bare_port_is_taken_for_the_dev_servers_url() {
    let dir = tempdir();
    let running = Running::start(&["localhost:8000", "--watch", "."], &[], dir.path());
    assert_eq!(running.target(), "http://localhost:8000");
    running.wait_for_log("`localhost:8000` taken as http://localhost:8000");
}

#[test]
fn unknown_config_key_names_file_key_and_line() {
    let dir = tempdir();
    write_config(dir.path(), "# comment\nlisen = \"127.0.0.1:4000\"\n");
    let line = error_line(&run_to_exit(&[], &[], dir.path()));
    assert_mentions(
        &line,
        &[
            "hmr-proxy.toml line 2",
            "unknown key `lisen`",
            "did you mean `listen`?",
        ],
    );
    // Far from every key: the list of them.
    write_config(dir.path(), "colour = true\n");
    let line = error_line(&run_to_exit(&[], &[], dir.path()));
    assert_mentions(
        &line,
        &[
            "unknown key `colour`, expected one of",
            "`listen`",
            "fix the key's spelling or remove it",
        ],
    );
}

/// A fix for a config file's value is written as TOML: `DIR=/prefix`, the flag's syntax, could
/// not be pasted into a `[[watch]]` table.
#[test]
fn a_config_files_fix_is_written_as_toml() {
    let dir = tempdir();
    write_config(dir.path(), "[[watch]]\ndir = \".\"\nurl = \"static\"\n");
    let line = error_line(&run_to_exit(&[], &[], dir.path()));
    assert_mentions(
        &line,
        &["key `watch`", "`static`", "write url = \"/assets\""],
    );
}

#[test]
fn bad_config_value_names_file_and_key() {
    let dir = tempdir();
    write_config(dir.path(), "listen = \"here\"\n");
    let line = error_line(&run_to_exit(&[], &[], dir.path()));
    assert_mentions(
        &line,
        &["hmr-proxy.toml: key `listen`", "`here`", "127.0.0.1:3000"],
    );
}

#[test]
fn bad_environment_values_name_the_variable() {
    let dir = tempdir();
    for (var, value, fix) in [
        ("HMR_PROXY_LISTEN", "nowhere", "127.0.0.1:3000"),
        ("HMR_PROXY_CONNECT_TIMEOUT", "10", "3s, 500ms or 2m"),
        // Fixes written as the variable takes them, not as a flag (compose's `environment:`).
        (
            "HMR_PROXY_DEBOUNCE",
            "fast",
            "give milliseconds, e.g. HMR_PROXY_DEBOUNCE=50",
        ),
        (
            "HMR_PROXY_POLL",
            "1.5x",
            "HMR_PROXY_POLL=500 (milliseconds)",
        ),
        (
            "HMR_PROXY_ROUTE",
            "/api",
            "write e.g. HMR_PROXY_ROUTE=/api=http://localhost:8080",
        ),
        (
            "HMR_PROXY_SERVE",
            "missing-dir",
            "create it or fix the path",
        ),
        // Values clap checks itself: it named the flag, which nobody typed.
        ("HMR_PROXY_NO_INJECT", "maybe", "set it to true or false"),
    ] {
        let line = error_line(&run_to_exit(&[], &[(var, value)], dir.path()));
        assert_mentions(&line, &[&format!("environment variable {var}"), value, fix]);
    }
}

/// A misspelt option's variable stops the proxy, naming the real one: it only warned, and the
/// proxy served the working folder instead of fronting the app. One near no option may be
/// another tool's, and only warns.
#[test]
fn a_misspelt_variable_is_an_error_naming_the_real_one() {
    let dir = tempdir();
    for (var, fix) in [
        ("HMR_PROXY_UPSTRAEM", "did you mean HMR_PROXY_UPSTREAM?"),
        ("HMR_PROXY_INJECT", "HMR_PROXY_NO_INJECT=true turns it off"),
    ] {
        let out = run_to_exit(
            &[],
            &[(var, "x"), ("HMR_PROXY_LISTEN", "nowhere")],
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(2));
        assert_mentions(
            &error_line(&out),
            &[&format!("environment variable {var}"), fix],
        );
    }
    // Far from every option: a warning, and the next problem is the one reported.
    let out = run_to_exit(
        &[],
        &[
            ("HMR_PROXY_SOMETHING_ELSE_ENTIRELY", "1"),
            ("HMR_PROXY_LISTEN", "nowhere"),
        ],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_mentions(
        &stderr,
        &[
            "WARN HMR_PROXY_SOMETHING_ELSE_ENTIRELY is not a setting and is ignored",
            "error: environment variable HMR_PROXY_LISTEN",
        ],
    );
}

#[test]
fn missing_serve_directory_names_the_flag() {
    let dir = tempdir();
    let line = error_line(&run_to_exit(&["--serve", "no-such-dir"], &[], dir.path()));
    assert_mentions(
        &line,
        &["--serve", "`no-such-dir`", "create it or fix the path"],
    );
}

/// A folder the proxy may not list (a bind mount owned by another uid) stops it with one line,
/// as a missing one does, instead of a proxy that serves 404s and never sees a change. Run as
/// `nobody` when the tests run as root, whom no permission stops.
#[test]
fn an_unreadable_serve_directory_names_the_flag_and_the_fix() {
    // Under /tmp, which everyone may traverse (`nobody` must reach the folder to be refused by
    // it, whatever TMPDIR says).
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    // Searchable, so the path resolves; not readable, so it cannot be listed.
    set_mode(dir.path(), 0o755);
    let site = dir.path().join("site");
    std::fs::create_dir(&site).expect("mkdir");
    set_mode(&site, 0o311);
    // Inside a folder this user may not even search: the path does not resolve.
    let locked = dir.path().join("locked");
    std::fs::create_dir_all(locked.join("inner")).expect("mkdir");
    set_mode(&locked, 0o600);
    let bin = dir.path().join("hmr-proxy");
    if running_as_root() {
        // The binary where `nobody` may run it.
        std::fs::copy(bin::BIN, &bin).expect("copy the binary");
        set_mode(&bin, 0o755);
    }
    let run_with = |flag: &str, folder: &str| {
        if running_as_root() {
            let cmd = as_nobody(&bin, &[flag, folder], dir.path());
            bin::run_command_to_exit(cmd, "hmr-proxy as nobody")
        } else {
            run_to_exit(&[flag, folder], &[], dir.path())
        }
    };
    let run = |folder: &str| run_with("--serve", folder);
    let line = error_line(&run("site"));
    assert_mentions(
        &line,
        &[
            "--serve",
            "`site`",
            "cannot be read",
            "read and search permission",
        ],
    );
    let line = error_line(&run("locked/inner"));
    assert_mentions(
        &line,
        &[
            "`locked/inner`",
            "cannot be reached",
            "search permission on the folders above",
        ],
    );
    // A folder to watch there, not made yet or made: not taken for one to wait for.
    for folder in ["locked/inner", "locked/a/b"] {
        let line = error_line(&run_with("--watch", folder));
        assert_mentions(
            &line,
            &["--watch", &format!("`{folder}`"), "cannot be reached"],
        );
    }
    set_mode(&locked, 0o755); // so the temporary folder can be removed
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The binary serving with `args` in `dir` (a folder under /tmp that everyone may traverse): as
/// `nobody` when the tests run as root, whom no permission stops, from a copy in `dir` that
/// `nobody` may run; else as this user.
fn start_unprivileged(dir: &Path, args: &[&str]) -> Running {
    if running_as_root() {
        let bin = dir.join("hmr-proxy");
        std::fs::copy(bin::BIN, &bin).expect("copy the binary");
        set_mode(&bin, 0o755);
        let mut argv = args.to_vec();
        argv.extend(["--listen", "127.0.0.1:0"]);
        Running::spawned(as_nobody(&bin, &argv, dir))
    } else {
        Running::start(args, &[], dir)
    }
}

/// `bin` (a copy `nobody` may run) with `args` in `cwd`, run as `nobody` with the test run's
/// own settings cleared, as [`bin::command`] clears them.
fn as_nobody(bin: &Path, args: &[&str], cwd: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin)
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HMR_PROXY_") {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// A served file the proxy's user may not read (a container's uid on a bind mount of files only
/// their owner reads) is a 403 that says so and a warning, not a 404 saying it is missing; so is
/// one in a folder it may not search. A folder without `index.html` is a 404 that says that.
/// Run as `nobody` when the tests run as root, whom no permission stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_is_a_403_that_says_so() {
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    set_mode(dir.path(), 0o755);
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("locked")).expect("mkdir");
    std::fs::create_dir_all(site.join("empty")).expect("mkdir");
    std::fs::write(site.join("ok.txt"), "ok").expect("write");
    std::fs::write(site.join("private.css"), "body {}").expect("write");
    std::fs::write(site.join("locked/inner.css"), "body {}").expect("write");
    // Root's files, readable by root alone; for another user, readable by nobody.
    let closed = if running_as_root() { 0o600 } else { 0o000 };
    set_mode(&site.join("private.css"), closed);
    set_mode(&site.join("locked"), closed & 0o700);
    let running = start_unprivileged(dir.path(), &["--serve", "site"]);
    let (status, _, _) = crate::support::get(&running.url("/ok.txt"), &[]).await;
    assert_eq!(status, 200);
    for path in ["/private.css", "/locked/inner.css"] {
        let (status, _, body) = crate::support::get(&running.url(path), &[]).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("permission denied"), "{path}: {body}");
        running.wait_for_log(&format!("GET {path}: "));
    }
    let (status, _, body) = crate::support::get(&running.url("/empty/"), &[]).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("has no <code>index.html</code>"));
    set_mode(&site.join("locked"), 0o755); // so the temporary folder can be removed
}

/// A watched folder this user may not read is named with the fix, and watched once its
/// permissions change (saves in it went unseen until a restart). Run as `nobody` when the tests
/// run as root, whom no permission stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_that_becomes_readable_is_watched_from_then_on() {
    use crate::support::sse::{SseClient, paths};
    // With OS events and with the poller (a container's bind mount), which said nothing.
    for poll in [&[][..], &["--poll=100"]] {
        let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
        set_mode(dir.path(), 0o755);
        let site = dir.path().join("site");
        let secret = site.join("secret");
        std::fs::create_dir_all(&secret).expect("mkdir");
        set_mode(&secret, if running_as_root() { 0o700 } else { 0o000 });
        let mut args = vec!["--serve", "site"];
        args.extend_from_slice(poll);
        let running = start_unprivileged(dir.path(), &args);
        running.wait_for_log("secret: permission denied; saves in it are not seen until");
        let mut tab = SseClient::open(running.addr, &[]).await;
        set_mode(&secret, 0o777);
        std::fs::write(secret.join("a.css"), "body {}").expect("write");
        within("secret/a.css to be reported", async {
            while !paths(&tab.next_batch().await).contains(&"secret/a.css".to_string()) {}
        })
        .await;
    }
}

/// With several watched folders, a batch's log line names each file's folder (`app.py changed`
/// did not say which project's); with one, the path alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_names_its_folder_when_there_are_several() {
    let dir = tempdir();
    for sub in ["web", "admin"] {
        std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
    }
    // Answering a request, it watches: the watcher starts before the accept loop.
    let serving = |addr| {
        raw(
            addr,
            b"GET /__hmr/health HTTP/1.0\r\nHost: localhost\r\n\r\n",
            None,
        )
    };
    let running = Running::start(
        &["--serve", ".", "--watch", "web", "--watch", "admin=/admin"],
        &[],
        dir.path(),
    );
    serving(running.addr).await;
    std::fs::write(dir.path().join("admin/app.css"), "a {}").expect("write");
    bin::blocking("the batch's line", move || {
        running.wait_for_log("admin/app.css changed → no browser")
    })
    .await;
    let single = Running::start(&["--serve", "web"], &[], dir.path());
    serving(single.addr).await;
    std::fs::write(dir.path().join("web/site.css"), "b {}").expect("write");
    let line = bin::blocking("the batch's line", move || {
        single.wait_for_log("site.css changed → no browser")
    })
    .await;
    assert!(!line.contains("web/site.css"), "{line}");
}

/// A request hyper refuses for its size gets hyper's empty 414 (a blank page in the browser):
/// the log says what happened, where it said nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_is_logged() {
    let dir = tempdir();
    let running = Running::start(&["--serve", "."], &[], dir.path());
    let request = format!(
        "GET /?q={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(70_000)
    );
    let answer = raw(running.addr, request.as_bytes(), Some("\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    running.wait_for_log("was refused: its URL or headers are larger than hyper reads");
}

/// A proxy at `--max-connections` says so (a request that hangs unanswered was a mystery).
#[test]
fn a_full_proxy_says_so() {
    use std::io::Write;
    let dir = tempdir();
    let running = Running::start(&["--serve", ".", "--max-connections", "1"], &[], dir.path());
    // The one slot, held by a connection that has sent part of a request.
    let mut held = std::net::TcpStream::connect(running.addr).expect("connect");
    held.write_all(b"GET / HTTP/1.1\r\n").expect("write");
    let _waiting = std::net::TcpStream::connect(running.addr).expect("connect");
    running.wait_for_log("all 1 connections are in use (--max-connections)");
}

/// Whether this process runs as root (uid 0), from `/proc/self/status`.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn port_in_use_names_the_address_and_the_setting_to_change() {
    let dir = tempdir();
    // Two ports in a row taken, as with a second dev server: the suggestion skips both.
    let (taken, addr, _also_taken) = loop {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let Some(after) = addr.port().checked_add(1) else {
            continue;
        };
        if let Ok(also) = TcpListener::bind(("127.0.0.1", after)) {
            break (taken, addr, also);
        }
    };
    let next = (2..100u16)
        .filter_map(|step| addr.port().checked_add(step))
        .map(|port| SocketAddr::new(addr.ip(), port))
        .find(|candidate| TcpListener::bind(candidate).is_ok())
        .expect("a free port after the two taken");

    let line = error_line(&run_to_exit(
        &["--listen", &addr.to_string()],
        &[],
        dir.path(),
    ));
    assert_mentions(
        &line,
        &[
            &format!("{addr} is already in use"),
            &format!("--listen {next}"),
        ],
    );

    let line = error_line(&run_to_exit(
        &[],
        &[("HMR_PROXY_LISTEN", &addr.to_string())],
        dir.path(),
    ));
    assert_mentions(
        &line,
        &[
            &format!("{addr} is already in use"),
            &format!("HMR_PROXY_LISTEN={next}"),
        ],
    );

    write_config(dir.path(), &format!("listen = \"{addr}\"\n"));
    let line = error_line(&run_to_exit(&[], &[], dir.path()));
    assert_mentions(
        &line,
        &[
            &format!("{addr} is already in use"),
            &format!("listen = \"{next}\""),
            "hmr-proxy.toml",
        ],
    );
    drop(taken);
}

/// With no address set anywhere, a default port in use moves on to the next free one, with a
/// warning that names both; a set address never moves (the test above).
#[test]
fn the_default_port_in_use_moves_on_to_the_next_free_one() {
    let dir = tempdir();
    let default = SocketAddr::from(([127, 0, 0, 1], hmr_proxy::config::DEFAULT_PORT));
    // Held here, or already held by another program: in use either way.
    let _held = match TcpListener::bind(default) {
        Ok(listener) => Some(listener),
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => None,
        Err(err) => panic!("cannot bind {default}: {err}"),
    };
    let running = Running::start_as_given(&["--serve", "."], &[], dir.path());
    assert_eq!(
        running.addr.ip(),
        default.ip(),
        "{}",
        running.listening_line
    );
    assert!(
        running.addr.port() > default.port(),
        "{}",
        running.listening_line
    );
    running.wait_for_log(&format!(
        "{default} is in use by another program; listening on {} instead",
        running.addr
    ));
}

/// An upstream on the default port (Rails', Next.js' and Express's 3000) that is not up yet: the
/// proxy moves on as it does when the port is taken, where it refused its own address, and the
/// same command worked or failed by which of the two started first.
#[test]
fn an_upstream_on_the_default_port_moves_the_proxy_on() {
    let dir = tempdir();
    let default = hmr_proxy::config::DEFAULT_PORT;
    let upstream = format!("http://localhost:{default}");
    let running = Running::start_as_given(&[&upstream, "--watch", "."], &[], dir.path());
    assert!(running.addr.port() > default, "{}", running.listening_line);
    running.wait_for_log(&format!(
        "the upstream {upstream} is on the default port {default}; listening on {} instead",
        running.addr
    ));
}

/// A relative `[[watch]] dir` from a config file in another folder starts at the working
/// directory, as documented; when it is not there but next to the file, the warning says so and
/// how to name it (it said only "does not exist (yet)", and no save ever counted).
#[test]
fn a_watch_folder_next_to_another_folders_config_file_is_named() {
    let dir = tempdir();
    let project = dir.path().join("proj");
    std::fs::create_dir_all(project.join("templates")).expect("mkdir");
    write_config(&project, "[[watch]]\ndir = \"templates\"\n");
    let running = Running::start(
        &["--config", "proj/hmr-proxy.toml", "--serve", "."],
        &[],
        dir.path(),
    );
    running.wait_for_log("for the one next to the config file, write `proj/templates`");
}

/// A port held by another hmr-proxy (a second terminal's, left running) says so.
#[test]
fn a_port_held_by_another_hmr_proxy_says_so() {
    let dir = tempdir();
    let first = Running::start(&["--serve", "."], &[], dir.path());
    let addr = first.addr.to_string();
    let line = error_line(&run_to_exit(
        &["--listen", &addr, "--serve", "."],
        &[],
        dir.path(),
    ));
    assert_mentions(
        &line,
        &[&format!("{addr} is already in use by another hmr-proxy")],
    );
}

/// `--open=PATH` runs `BROWSER` with the proxy's URL of that path once it listens, and says so;
/// the URL it was given serves the page through the proxy.
#[tokio::test]
async fn open_hands_the_browser_the_proxys_url() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    std::fs::write(dir.path().join("index.html"), "<p>docs</p>").expect("write");
    let given = dir.path().join("given.txt");
    let browser = dir.path().join("fake-browser");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", given.display()),
    )
    .expect("write the fake browser");
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let running = bin::blocking("hmr-proxy to start", {
        let dir = dir.path().to_owned();
        let browser = browser.display().to_string();
        move || {
            Running::start(
                &["--serve", ".", "--open=/?from=open"],
                &[("BROWSER", &browser)],
                &dir,
            )
        }
    })
    .await;
    let url = format!("http://{}/?from=open", running.addr);
    running.wait_for_log(&format!("opened {url} in the browser"));
    assert_eq!(std::fs::read_to_string(&given).expect("the URL given"), url);
    let page = raw(
        running.addr,
        b"GET /?from=open HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n\
          Sec-Fetch-Dest: document\r\nConnection: close\r\n\r\n",
        None,
    )
    .await;
    assert!(
        page.contains("<p>docs</p>") && page.contains("/__hmr/client.js"),
        "{page}"
    );
}

/// A browser command that fails is a warning that says where to browse; the proxy serves on.
/// `BROWSER=none` opens nothing; `--open` with no path before it is an error naming the fix.
#[test]
fn open_failures_are_warnings_and_a_bad_path_an_error() {
    let dir = tempdir();
    let running = Running::start(
        &["--serve", ".", "--open"],
        &[("BROWSER", "false")],
        dir.path(),
    );
    running.wait_for_log(&format!(
        "`false` could not open http://{}/ (exit status: 1); browse it yourself",
        running.addr
    ));
    drop(running);
    let running = Running::start(
        &["--serve", ".", "--open"],
        &[("BROWSER", "none")],
        dir.path(),
    );
    running.wait_for_log("BROWSER=none: not opening a browser");
    drop(running);
    let line = error_line(&run_to_exit(
        &["--serve", ".", "--open=docs"],
        &[],
        dir.path(),
    ));
    assert_mentions(&line, &["--open: `docs` is not a path", "--open=/admin/"]);
}

/// An address this machine does not have (a documentation address, RFC 5737) cannot be listened
/// on: the error names where the address was set.
#[test]
fn an_address_not_on_this_machine_names_where_it_was_set() {
    let dir = tempdir();
    let line = error_line(&run_to_exit(
        &[],
        &[("HMR_PROXY_LISTEN", "203.0.113.7:3000")],
        dir.path(),
    ));
    assert_mentions(
        &line,
        &[
            "cannot listen on 203.0.113.7:3000",
            "pick another address with HMR_PROXY_LISTEN",
        ],
    );
}

/// `RUST_LOG` naming the binary (`hmr-proxy`, not the crate's `hmr_proxy`) still logs: it
/// silenced every line, "listening on" included.
#[test]
fn rust_log_may_name_the_binary() {
    let dir = tempdir();
    let running = Running::start(&[], &[("RUST_LOG", "hmr-proxy=debug")], dir.path());
    assert!(
        running.listening_line.contains("listening on"),
        "{}",
        running.listening_line
    );
}

/// Started in the home folder with nothing named to watch (a new terminal), the proxy watched all
/// of it, and the browser writing its profile there (`.config/chromium`) reloaded the page again
/// with each load's history and code-cache writes, without end: an error that says what to do.
/// Named, the home folder is watched, with a warning.
#[test]
fn the_home_folder_is_not_watched_by_default() {
    let home = tempdir();
    let home_dir = home.path().to_str().expect("UTF-8 tempdir");
    for args in [&["http://127.0.0.1:9"][..], &[]] {
        let mut argv = vec!["--listen", "127.0.0.1:0"];
        argv.extend_from_slice(args);
        let out = run_to_exit(&argv, &[("HOME", home_dir)], home.path());
        assert_mentions(
            &error_line(&out),
            &[
                "--watch: nothing names what to watch",
                "your home folder",
                "every write would reload the page",
                "--watch DIR",
            ],
        );
    }
    let running = Running::start(
        &["--watch", ".", "http://127.0.0.1:9"],
        &[("HOME", home_dir)],
        home.path(),
    );
    running.wait_for_log("your home folder: a browser writing its profile there");
}

/// An upstream on the proxy's own address stops it at start (every request was a 508).
#[test]
fn an_upstream_on_the_proxys_own_address_is_an_error() {
    let dir = tempdir();
    let [port] = crate::support::ports::unclaimed::<1>();
    let listen = format!("127.0.0.1:{port}");
    for upstream in [format!("http://{listen}"), format!("http://0.0.0.0:{port}")] {
        let out = run_to_exit(&["--listen", &listen, &upstream], &[], dir.path());
        assert_eq!(out.status.code(), Some(2));
        assert_mentions(
            &error_line(&out),
            &[&upstream, "is this proxy's own address", "--listen"],
        );
    }
}

/// A `RUST_LOG` that is no filter is said, not ignored in silence.
#[test]
fn a_rust_log_that_is_no_filter_is_a_warning() {
    let dir = tempdir();
    let running = Running::start(&[], &[("RUST_LOG", "hmr_proxy=loud")], dir.path());
    running.wait_for_log("RUST_LOG=hmr_proxy=loud is not a log filter");
}

#[test]
fn unknown_flag_exits_2() {
    let dir = tempdir();
    let out = run_to_exit(&["--bogus"], &[], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.starts_with("error:"), "{stderr}");
    assert!(stderr.contains("--bogus"), "{stderr}");
}

#[test]
fn help_lists_the_options_and_their_environment_variables() {
    let dir = tempdir();
    let out = run_to_exit(&["--help"], &[], dir.path());
    assert!(out.status.success(), "{}", out.status);
    let help = String::from_utf8_lossy(&out.stdout);
    assert_mentions(
        &help,
        &[
            "UPSTREAM",
            "--listen",
            "--serve",
            "--watch",
            "--ignore",
            "--debounce",
            "--poll",
            "--changes-path",
            "--no-inject",
            "--keep-host",
            "--connect-timeout",
            "--response-timeout",
            "--shutdown-grace",
            "--config",
            "--verbose",
            "--quiet",
            "HMR_PROXY_LISTEN",
            "HMR_PROXY_UPSTREAM",
            "Precedence: flags > environment > config file > defaults",
        ],
    );
}

#[test]
fn listen_precedence_is_flag_over_environment_over_file() {
    // (in the file, in the environment, as a flag) → which one is used.
    let cases: [(bool, bool, bool, usize); 5] = [
        (true, false, false, 0),
        (true, true, false, 1),
        (true, false, true, 2),
        (true, true, true, 2),
        (false, true, true, 2),
    ];
    for (in_file, in_env, as_flag, winner) in cases {
        let dir = tempdir();
        let ports = crate::support::ports::unclaimed::<3>();
        let addrs = ports.map(|p| format!("127.0.0.1:{p}"));
        if in_file {
            write_config(dir.path(), &format!("listen = \"{}\"\n", addrs[0]));
        }
        let mut envs = Vec::new();
        if in_env {
            envs.push(("HMR_PROXY_LISTEN", addrs[1].as_str()));
        }
        let mut args = Vec::new();
        if as_flag {
            args.extend(["--listen", addrs[2].as_str()]);
        }
        let running = Running::start_as_given(&args, &envs, dir.path());
        assert_eq!(
            running.addr.port(),
            ports[winner],
            "file {in_file}, env {in_env}, flag {as_flag}: {}",
            running.listening_line
        );
        // The file's value beaten is said (a compose variable silently beat it).
        if in_file && winner > 0 {
            let by = if as_flag {
                "--listen"
            } else {
                "environment variable HMR_PROXY_LISTEN"
            };
            running.wait_for_log(&format!("{by} overrides `listen` in "));
        }
    }
}

#[test]
fn upstream_precedence_is_flag_over_environment_over_file() {
    let cases: [(bool, bool, bool, &str); 5] = [
        (true, false, false, "http://from-file:8000"),
        (true, true, false, "http://from-env:8000"),
        (true, false, true, "http://from-flag:8000"),
        (true, true, true, "http://from-flag:8000"),
        (false, true, true, "http://from-flag:8000"),
    ];
    for (in_file, in_env, as_flag, expected) in cases {
        let dir = tempdir();
        if in_file {
            write_config(dir.path(), "upstream = \"http://from-file:8000\"\n");
        }
        let mut envs = Vec::new();
        if in_env {
            envs.push(("HMR_PROXY_UPSTREAM", "http://from-env:8000"));
        }
        let mut args = Vec::new();
        if as_flag {
            args.push("http://from-flag:8000");
        }
        let running = Running::start(&args, &envs, dir.path());
        assert_eq!(
            running.target(),
            expected,
            "file {in_file}, env {in_env}, flag {as_flag}: {}",
            running.listening_line
        );
    }
}

/// What `upstream` and `serve` choose between (forward or serve a folder) is one setting: the
/// strongest layer giving either wins; only one layer giving both is a conflict.
#[test]
fn a_stronger_layers_upstream_or_serve_wins_over_a_weaker_layers_other_one() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("site")).expect("mkdir");
    let site = dir.path().join("site").canonicalize().expect("canonical");
    let served = format!("files in {}", site.display());
    // (config file, environment, flags) → what the proxy answers with.
    let cases = [
        (
            "upstream = \"http://from-file:8000\"\n",
            ("HMR_PROXY_SERVE", "site"),
            &[][..],
            served.as_str(),
        ),
        (
            "serve = \"site\"\n",
            ("HMR_PROXY_UPSTREAM", "http://from-env:8000"),
            &[][..],
            "http://from-env:8000",
        ),
        (
            "",
            ("HMR_PROXY_UPSTREAM", "http://from-env:8000"),
            &["--serve", "site"][..],
            served.as_str(),
        ),
        (
            "",
            ("HMR_PROXY_SERVE", "site"),
            &["http://from-flag:8000"][..],
            "http://from-flag:8000",
        ),
    ];
    for (file, env, args, expected) in cases {
        write_config(dir.path(), file);
        let running = Running::start(args, &[env], dir.path());
        assert_eq!(
            running.target(),
            expected,
            "file {file:?}, env {env:?}, flags {args:?}: {}",
            running.listening_line
        );
    }
    // The environment giving both is still an error naming both variables.
    write_config(dir.path(), "");
    let line = error_line(&run_to_exit(
        &[],
        &[
            ("HMR_PROXY_UPSTREAM", "http://from-env:8000"),
            ("HMR_PROXY_SERVE", "site"),
        ],
        dir.path(),
    ));
    assert_mentions(
        &line,
        &[
            "environment variable HMR_PROXY_UPSTREAM and environment variable HMR_PROXY_SERVE",
            "cannot be used together",
        ],
    );
}

/// An empty variable (compose's `${UPSTREAM:-}` with `UPSTREAM` unset) is no setting, whichever
/// option it names: the config file's value applies, lists included.
#[test]
fn empty_variables_are_not_set() {
    use std::io::{Read, Write};
    let dir = tempdir();
    let [port] = crate::support::ports::unclaimed::<1>();
    write_config(
        dir.path(),
        &format!(
            "listen = \"127.0.0.1:{port}\"\nupstream = \"http://from-file:8000\"\n\
             allowed_hosts = [\"app.test\"]\n"
        ),
    );
    let names = [
        "UPSTREAM",
        "LISTEN",
        "ROUTE",
        "SERVE",
        "WATCH",
        "IGNORE",
        "POLL",
        "DEBOUNCE",
        "ALLOWED_HOST",
        "KEEP_HOST",
        "INSECURE",
        "NO_INJECT",
        "CHANGES_PATH",
        "HEARTBEAT",
        "CONNECT_TIMEOUT",
        "RESPONSE_TIMEOUT",
        "SHUTDOWN_GRACE",
        "HEADER_TIMEOUT",
        "MAX_CONNECTIONS",
        "CONFIG",
    ]
    .map(|name| format!("HMR_PROXY_{name}"));
    let envs: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "")).collect();
    let running = Running::start_as_given(&[], &envs, dir.path());
    assert_eq!(running.addr.port(), port, "{}", running.listening_line);
    assert_eq!(running.target(), "http://from-file:8000");
    // The file's allowed host still applies: an empty HMR_PROXY_ALLOWED_HOST did not clear it.
    let mut stream = std::net::TcpStream::connect(running.addr).expect("connect");
    stream
        .write_all(b"GET /__hmr/health HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[test]
fn no_arguments_serve_the_working_directory() {
    let dir = tempdir();
    let canonical = dir.path().canonicalize().expect("canonical tempdir");
    // No arguments at all; the port comes from the environment so the test needs no fixed port.
    let running = Running::start_as_given(&[], &[("HMR_PROXY_LISTEN", "127.0.0.1:0")], dir.path());
    assert_eq!(
        running.target(),
        format!("files in {}", canonical.display()),
        "{}",
        running.listening_line
    );
    running.wait_for_log("serving the working directory");
}

/// An upstream that reports the first request head it receives and answers every request
/// `finished` only once released. (Knowing the request reached the upstream is what makes it "in
/// flight" at the proxy when SIGTERM is sent.) Connections that send nothing, such as the
/// proxy's reachability probes, are ignored.
struct GatedUpstream {
    addr: SocketAddr,
    arrived: oneshot::Receiver<String>,
    release: watch::Sender<bool>,
}

impl GatedUpstream {
    async fn start() -> GatedUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let (arrived_tx, arrived) = oneshot::channel();
        let arrived_tx = Arc::new(Mutex::new(Some(arrived_tx)));
        let (release, released) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let arrived_tx = arrived_tx.clone();
                let mut released = released.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let first = arrived_tx.lock().expect("lock").take();
                    if let Some(tx) = first {
                        let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                    }
                    if released.wait_for(|r| *r).await.is_ok() {
                        let response: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\
                            connection: close\r\n\r\nfinished";
                        let _ = stream.write_all(response).await;
                    }
                });
            }
        });
        GatedUpstream {
            addr,
            arrived,
            release,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_in_flight_request_finish_then_exits_0() {
    let grace = Duration::from_secs(10);
    let upstream = GatedUpstream::start().await;
    let dir = tempdir();
    let cwd = dir.path().to_path_buf();
    let url = format!("http://{}", upstream.addr);
    // `-v`: the debug line "waiting up to … for N open connections" is logged once the listener
    // is closed, which is what the refused-connection check below waits for.
    let running = bin::blocking("hmr-proxy to listen", move || {
        Running::start(&["-v", "--shutdown-grace", "10s", &url], &[], &cwd)
    })
    .await;
    let addr = running.addr;

    let request = tokio::spawn(async move {
        raw(
            addr,
            b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n",
            Some("finished"),
        )
        .await
    });
    let head = within("the request to reach the upstream", upstream.arrived)
        .await
        .expect("upstream got the request");
    assert!(head.starts_with("GET /slow HTTP/1.1\r\n"), "{head}");

    running.terminate();
    let running = bin::blocking("the listener to close", move || {
        running.wait_for_log("shutting down: finishing in-flight requests");
        running.wait_for_log("open connections");
        running
    })
    .await;

    let refused = within(
        "connect after SIGTERM",
        tokio::net::TcpStream::connect(addr),
    )
    .await;
    match refused {
        Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}"),
        Ok(_) => panic!("a new connection was accepted after SIGTERM"),
    }

    upstream.release.send_replace(true);
    let response = within("the in-flight response", request)
        .await
        .expect("request task");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nfinished"), "{response}");

    let mut running = running;
    let (status, log) = bin::blocking("hmr-proxy to exit", move || {
        let status = running.wait_exit(grace);
        // Everything before the last line is in the log once the last line is.
        running.wait_for_log("stopped");
        (status, running.log())
    })
    .await;
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(!log.contains("grace period"), "{log}");
}

/// A second signal does not wait out the grace period: a request the upstream never answers is
/// cut off and the proxy exits at once, with 143 after SIGTERM (130 after Ctrl-C: stopped by the
/// signal, not finished).
#[tokio::test]
async fn a_second_signal_stops_at_once() {
    let dir = tempdir();
    // An upstream that takes the request and never answers. (The health probe connects too and
    // sends nothing.)
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", server.local_addr().expect("addr"));
    let (arrived_tx, arrived) = oneshot::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut arrived_tx = Some(arrived_tx);
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = server.accept() {
            let mut buf = [0u8; 4096];
            if matches!(stream.read(&mut buf), Ok(n) if n > 0)
                && let Some(tx) = arrived_tx.take()
            {
                let _ = tx.send(());
            }
            held.push(stream);
        }
    });
    let mut running = bin::blocking("hmr-proxy to start", {
        let dir = dir.path().to_owned();
        move || {
            Running::start(
                &["--shutdown-grace", "60s", "--watch", ".", url.as_str()],
                &[],
                &dir,
            )
        }
    })
    .await;
    let addr = running.addr;
    let request = tokio::spawn(async move {
        raw(addr, b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n", None).await
    });
    within("the request to reach the upstream", arrived)
        .await
        .expect("upstream thread");
    running.terminate();
    // Said as the signal came: "Ctrl-C again" to a container's `docker stop` was no help.
    running
        .wait_for_log("shutting down: finishing in-flight requests (a second SIGTERM to stop now)");
    running.terminate();
    let status = bin::blocking("hmr-proxy to exit", move || {
        running.wait_exit(Duration::from_secs(10))
    })
    .await;
    assert_eq!(status.code(), Some(143), "{status}");
    within("the cut-off request", request)
        .await
        .expect("request task");
}

/// SIGTERM right after the `listening on` line must already be handled (exit 0, not death by the
/// signal): the handlers have to be installed before the proxy says it is ready.
#[test]
fn sigterm_when_idle_exits_0() {
    let dir = tempdir();
    let mut running = Running::start(&[], &[], dir.path());
    running.terminate();
    let status = running.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}; log:\n{}", running.log());
    running.wait_for_log("stopped");
}

/// A closed stderr (`hmr-proxy … | head`) loses log lines and nothing else: the request whose
/// warning cannot be written still gets its answer, and SIGTERM still stops the proxy. (The log
/// layer reported the failed write with `eprintln!`, which panicked in whichever task logged,
/// the signal handler among them.)
#[tokio::test]
async fn a_closed_stderr_loses_log_lines_not_requests_or_shutdown() {
    let dir = tempdir();
    let upstream = format!("http://{}", crate::support::dead_addr().await);
    let (child, addr) = bin::blocking("hmr-proxy to start", {
        let dir = dir.path().to_owned();
        move || {
            let args = ["--listen", "127.0.0.1:0", "--watch", ".", upstream.as_str()];
            let mut child = bin::command(&args, &[], &dir).spawn().expect("spawn");
            let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr piped"));
            let addr = bin::listening_addr(&mut stderr);
            // Dropping the reader closes the pipe's only read end.
            (child, addr)
        }
    })
    .await;
    for _ in 0..3 {
        let response = raw(
            addr,
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            None,
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 502"), "{response:?}");
    }
    bin::signal(child.id(), "TERM");
    let status = bin::blocking("hmr-proxy to exit", move || {
        bin::wait_or_kill(
            child,
            Duration::from_secs(10),
            "hmr-proxy to exit after SIGTERM",
        )
    })
    .await;
    assert!(status.success(), "{status}");
}

/// The proxy's own output redirected into the watched folder (`hmr-proxy > out.txt`, any name)
/// is not a change: each batch would log a line, and each line make a batch, for ever.
#[tokio::test]
async fn its_own_output_file_in_the_watched_folder_is_not_a_change() {
    use crate::support::sse::{SseClient, paths};
    use std::io::Write as _;
    let dir = tempdir();
    let out = dir.path().join("out.txt");
    let stdout = std::fs::File::create(&out).expect("create out.txt");
    let running = bin::blocking("hmr-proxy to start", {
        let dir = dir.path().to_owned();
        move || Running::start_with_stdout(&["--serve", "."], &dir, stdout)
    })
    .await;
    let mut tab = SseClient::open(running.addr, &[]).await;
    // What the proxy would write there, then a real save.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&out)
        .expect("open out.txt");
    file.write_all(b"INFO index.html changed\n")
        .expect("append");
    drop(file);
    std::fs::write(dir.path().join("index.html"), "<p>saved</p>").expect("save");
    let batch = within("the save's batch", tab.next_batch()).await;
    assert_eq!(paths(&batch), ["index.html"], "{batch}");
}

/// The same through a pipeline (`hmr-proxy 2>&1 | tee out.txt`): the file the pipe's reader
/// writes is not a change either.
#[tokio::test]
async fn the_file_a_pipeline_writes_its_output_to_is_not_a_change() {
    use crate::support::sse::{SseClient, paths};
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    let dir = tempdir();
    let (mut proxy, mut tee, addr) = bin::blocking("hmr-proxy | tee to start", {
        let dir = dir.path().to_owned();
        move || {
            let mut proxy = bin::command(&["--listen", "127.0.0.1:0", "--serve", "."], &[], &dir)
                .spawn()
                .expect("spawn hmr-proxy");
            let mut tee = Command::new("tee")
                .arg("out.txt")
                .current_dir(&dir)
                .stdin(Stdio::from(proxy.stderr.take().expect("stderr piped")))
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn tee");
            let mut lines = std::io::BufReader::new(tee.stdout.take().expect("stdout piped"));
            let addr = bin::listening_addr(&mut lines);
            // Keep reading, so that the proxy's log never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines.lines() {});
            (bin::Reaped(proxy), bin::Reaped(tee), addr)
        }
    })
    .await;
    let mut tab = SseClient::open(addr, &[]).await;
    // Each save is logged, and each log line lands in out.txt: a loop would put out.txt in
    // the next batch.
    for name in ["index.html", "second.html"] {
        std::fs::write(dir.path().join(name), "<p>saved</p>").expect("save");
        let batch = within("the save's batch", tab.next_batch()).await;
        assert_eq!(paths(&batch), [name], "{batch}");
    }
    bin::signal(proxy.0.id(), "TERM");
    let _ = proxy.0.wait();
    let _ = tee.0.wait();
}

/// Only a pipeline's reader counts (it reads the log as its standard input): a process that
/// holds the log pipe otherwise (a process manager, this test, which reads the proxy's stderr)
/// may have a file open for writing at the moment of the look, and that is a file being saved.
#[tokio::test]
async fn a_file_the_log_readers_save_is_still_a_change() {
    use crate::support::sse::{SseClient, paths};
    use std::io::Write as _;
    let dir = tempdir();
    let running = bin::blocking("hmr-proxy to start", {
        let dir = dir.path().to_owned();
        move || Running::start(&["--serve", "."], &[], &dir)
    })
    .await;
    let mut tab = SseClient::open(running.addr, &[]).await;
    // Open (for writing) in this process, which reads the proxy's stderr, across the first event.
    let mut held = std::fs::File::create(dir.path().join("app.js")).expect("create");
    held.write_all(b"export const n = 1;\n").expect("write");
    held.flush().expect("flush");
    let batch = within("the first save's batch", tab.next_batch()).await;
    assert_eq!(paths(&batch), ["app.js"], "{batch}");
    held.write_all(b"export const m = 2;\n").expect("write");
    held.flush().expect("flush");
    let batch = within("the second save's batch", tab.next_batch()).await;
    assert_eq!(paths(&batch), ["app.js"], "{batch}");
}

/// An upstream on `server` that answers the first requests it gets with `responses`, one per
/// connection, in turn, then stops. (The proxy's health probe connects too, and sends nothing:
/// those connections are let go.)
fn answer_in_turn(server: TcpListener, responses: Vec<Vec<u8>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut responses = responses.into_iter();
        let mut next = responses.next();
        while let Some(response) = &next {
            let (mut stream, _) = server.accept().expect("accept");
            let mut buf = [0u8; 4096];
            if matches!(stream.read(&mut buf), Ok(n) if n > 0) {
                let _ = stream.write_all(response);
                next = responses.next();
            }
        }
    })
}

/// A compressed page that cannot be decoded is said in the log at the default level, naming the
/// page and why. Before its first byte decodes, the browser gets a 502 page that says why (with
/// the client, to reload on the next save), not a closed connection; after, a page cut short.
#[tokio::test]
async fn a_page_that_cannot_be_decoded_is_a_warning_and_before_its_first_byte_a_502() {
    use std::io::Write as _;
    let dir = tempdir();
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", server.local_addr().expect("addr"));
    // A page whose gzip stream breaks off after its first part: flushed (so that part decodes
    // on its own, whatever the compressor), then cut where the rest would start.
    let first = format!(
        "<!doctype html><html><head><title>t</title></head><body>{}",
        "<p>the first part of the page</p>".repeat(200)
    );
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(first.as_bytes()).expect("gzip");
    gzip.flush().expect("gzip");
    let cut = gzip.get_ref().len();
    gzip.write_all(b"<p>the rest</p></body></html>")
        .expect("gzip");
    let gzip = gzip.finish().expect("gzip");
    let broken = &gzip[..cut];
    let response = |body: &[u8]| {
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(body);
        response
    };
    let answer = answer_in_turn(
        server,
        vec![response(b"not gzip, not at all"), response(broken)],
    );
    let running = bin::blocking("hmr-proxy to start", {
        let dir = dir.path().to_owned();
        move || Running::start(&["--watch", ".", url.as_str()], &[], &dir)
    })
    .await;
    let get = |path: &str| {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nSec-Fetch-Dest: document\r\n\
             Connection: close\r\n\r\n"
        );
        let addr = running.addr;
        async move { raw(addr, request.as_bytes(), None).await }
    };

    let response = get("/broken.html").await;
    assert!(response.starts_with("HTTP/1.1 502"), "{response:?}");
    assert!(response.contains("could not be read"), "{response}");
    assert!(response.contains("gzip"), "{response}");
    assert!(response.contains("/__hmr/client.js"), "{response}");
    let line = running.wait_for_log("answered 502");
    assert!(
        line.contains("WARN") && line.contains("GET /broken.html") && line.contains("gzip"),
        "{line}"
    );

    // Cut short after its first bytes, the page is a 200 that ends early, with every byte that
    // could be decoded.
    let response = get("/truncated.html").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
    assert!(
        response.contains("<p>the first part of the page</p>"),
        "{response}"
    );
    assert!(!response.contains("</html>"), "{response}");
    answer.join().expect("upstream thread");
    let line = running.wait_for_log("cut short");
    assert!(
        line.contains("WARN") && line.contains("GET /truncated.html"),
        "{line}"
    );
}

/// `-v` logs each request in static mode, as it does each one it forwards: a file the page asks
/// for under a wrong name shows in the log.
#[tokio::test]
async fn verbose_logs_each_request_in_static_mode() {
    let dir = tempdir();
    std::fs::write(dir.path().join("index.html"), "<p>hello</p>").expect("write");
    let running = bin::blocking("hmr-proxy to start", {
        let dir = dir.path().to_owned();
        move || Running::start(&["-v", "--serve", "."], &[], &dir)
    })
    .await;
    let get = |path: &'static str| {
        let addr = running.addr;
        async move {
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            raw(addr, request.as_bytes(), None).await
        }
    };
    assert!(get("/").await.starts_with("HTTP/1.1 200"));
    assert!(get("/css/missing.css").await.starts_with("HTTP/1.1 404"));
    let found = running.wait_for_log("GET / → 200");
    assert!(found.contains("DEBUG"), "{found}");
    running.wait_for_log("GET /css/missing.css → 404");
}

/// An upstream that is down is one warning, not one per request: the waiting page polls every
/// few seconds and each asset of a tab fails too. Once it has answered, the next outage is
/// another warning.
#[tokio::test]
async fn an_outage_is_logged_once_until_the_upstream_answers() {
    let dir = tempdir();
    let upstream = crate::support::dead_addr().await;
    let url = format!("http://{upstream}");
    let running = bin::blocking("hmr-proxy to start", {
        let dir = dir.path().to_owned();
        move || Running::start(&["--watch", ".", url.as_str()], &[], &dir)
    })
    .await;
    let get = |path: &'static str| {
        let addr = running.addr;
        async move {
            raw(
                addr,
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
                None,
            )
            .await
        }
    };
    // Said at start, before any request.
    running.wait_for_log("does not answer (yet)");
    for path in ["/", "/app.css", "/"] {
        assert!(get(path).await.starts_with("HTTP/1.1 502"));
    }
    // The upstream answers once, then goes away again.
    let server = TcpListener::bind(upstream).expect("bind the upstream's port");
    let answer = answer_in_turn(
        server,
        vec![b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_vec()],
    );
    assert!(get("/").await.starts_with("HTTP/1.1 204"));
    answer.join().expect("upstream thread");
    for path in ["/", "/app.css"] {
        assert!(get(path).await.starts_with("HTTP/1.1 502"));
    }
    // Everything logged before `stopped` is in by the time it is.
    running.terminate();
    running.wait_for_log("stopped");
    let warnings = running
        .log()
        .lines()
        .filter(|l| l.contains("nothing is listening"))
        .count();
    assert_eq!(
        warnings,
        2,
        "one warning per outage; log:\n{}",
        running.log()
    );
}

/// A dev server down for a moment (a restart by nodemon or Django's reloader) is one line when it
/// is back, no warning before it; one down for longer than that is a warning, said seconds after
/// it went (not at once), told to the tabs (an `upstream` event, which a tab opened meanwhile
/// gets too), and a line when it is back, told to the tabs before their reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_down_for_a_moment_is_no_warning_a_longer_outage_is_told() {
    use crate::support::sse::SseClient;
    use crate::support::{Upstream, get};
    let dir = tempdir();
    let upstream = Upstream::start().await;
    let addr = upstream.addr;
    let url = upstream.url();
    let running = bin::blocking("hmr-proxy to start", {
        let dir = dir.path().to_owned();
        let url = url.clone();
        move || Running::start(&["--watch", ".", url.as_str()], &[], &dir)
    })
    .await;
    let base = format!("http://{}", running.addr);
    let reachable = |base: String| async move {
        let (_, _, body) = get(&format!("{base}/__hmr/status"), &[]).await;
        let status: serde_json::Value = serde_json::from_slice(&body).expect("status JSON");
        status["upstream"]["reachable"].clone()
    };
    let mut tab = SseClient::open(running.addr, &[]).await;
    // Seen up first: a server that was never seen answering "answers" when it comes.
    let (code, _, _) = get(&format!("{base}/"), &[]).await;
    assert_eq!(code, 200);
    within("the proxy to see the upstream up", async {
        while reachable(base.clone()).await != true {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let gone = |upstream: Upstream| {
        let base = base.clone();
        async move {
            upstream.stop().await;
            within("the proxy to see the upstream go", async {
                while reachable(base.clone()).await != false {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
        }
    };

    gone(upstream).await;
    let upstream = Upstream::serve(crate::support::rebind(addr).await);
    let batch = tab.next_batch().await;
    assert_eq!(
        batch["reason"],
        format!("upstream {url} restarted"),
        "{batch}"
    );
    assert!(!running.log().contains("is down"), "{}", running.log());

    gone(upstream).await;
    let went = std::time::Instant::now();
    // On this thread: the upstream and the tab go on on the runtime's other worker.
    let log = tokio::task::block_in_place(|| running.wait_for_log("is down"));
    assert!(
        went.elapsed() >= Duration::from_secs(2),
        "said {:?} after the upstream went:\n{log}",
        went.elapsed()
    );
    // The tabs are told, and so is a tab that opens now.
    assert_eq!(told(&mut tab).await, serde_json::json!({ "down": [url] }));
    let mut new_tab = SseClient::open(running.addr, &[]).await;
    assert_eq!(
        told(&mut new_tab).await,
        serde_json::json!({ "down": [url] })
    );
    let _upstream = Upstream::serve(crate::support::rebind(addr).await);
    assert_eq!(told(&mut tab).await, serde_json::json!({ "down": [] }));
    let batch = tab.next_batch().await;
    assert_eq!(
        batch["reason"],
        format!("upstream {url} is back"),
        "{batch}"
    );
}

/// The next `upstream` event on a tab's stream (which upstreams are down), with no change batch
/// before it.
async fn told(tab: &mut crate::support::sse::SseClient) -> serde_json::Value {
    within("an upstream event", async {
        loop {
            let msg = tab.next_message().await.expect("stream open");
            if msg.event.as_deref() == Some("upstream") {
                let data = msg.data.unwrap_or_default();
                return serde_json::from_str::<serde_json::Value>(&data).expect("json");
            }
            assert_ne!(msg.event.as_deref(), Some("change"), "{msg:?}");
        }
    })
    .await
}

/// A dev server routed beside the app that has not answered since the proxy started (an API not
/// started yet) is told to the tabs as down once a request finds it so, where only one that went
/// down after answering was; and as up, with the reload, once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_upstream_down_since_start_is_told_to_the_tabs() {
    use crate::support::sse::SseClient;
    use crate::support::{Upstream, dead_addr, get, rebind};
    let dir = tempdir();
    let app = Upstream::start().await;
    let api_addr = dead_addr().await;
    let api = format!("http://{api_addr}");
    let running = bin::blocking("hmr-proxy to start", {
        let dir = dir.path().to_owned();
        let (app, route) = (app.url(), format!("--route=/api={api}"));
        move || Running::start(&["--watch", ".", &route, app.as_str()], &[], &dir)
    })
    .await;
    let mut tab = SseClient::open(running.addr, &[]).await;
    let (code, _, _) = get(&format!("http://{}/api/users", running.addr), &[]).await;
    assert_eq!(code, 502);
    assert_eq!(told(&mut tab).await, serde_json::json!({ "down": [api] }));
    let _api = Upstream::serve(rebind(api_addr).await);
    assert_eq!(told(&mut tab).await, serde_json::json!({ "down": [] }));
    let batch = tab.next_batch().await;
    assert_eq!(
        batch["reason"],
        format!("upstream {api} answers"),
        "{batch}"
    );
}

/// `--health-check` (the container health check) exits 0 while a proxy answers at the listen
/// address given in the environment, as in the compose file, and 1 with a reason once it is gone.
#[test]
fn health_check_reports_whether_the_proxy_answers() {
    let dir = tempdir();
    let mut running = Running::start(&[], &[], dir.path());
    // Asked on the wildcard address, as inside a container: the check goes to loopback.
    let listen = format!("0.0.0.0:{}", running.addr.port());
    let out = run_to_exit(
        &["--health-check"],
        &[("HMR_PROXY_LISTEN", &listen)],
        dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    // What changed since the proxy started does not make it look unhealthy: a config file
    // edited with a typo (the listen address read from it all the same), a watched folder not
    // there for the moment.
    for file in [
        format!("listen = \"{listen}\"\nlisen = \"typo\"\n"),
        format!("listen = \"{listen}\"\nupstream = \"http://unterminated\n"),
    ] {
        std::fs::write(dir.path().join("hmr-proxy.toml"), &file).expect("config file");
        let out = run_to_exit(
            &["--health-check", "--watch", "missing/deeper"],
            &[],
            dir.path(),
        );
        assert!(out.status.success(), "{file}: {out:?}");
    }
    std::fs::remove_file(dir.path().join("hmr-proxy.toml")).expect("remove");
    running.terminate();
    assert!(running.wait_exit(Duration::from_secs(10)).success());
    let out = run_to_exit(
        &["--health-check"],
        &[("HMR_PROXY_LISTEN", &listen)],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: no answer from 127.0.0.1:"),
        "{stderr}"
    );
    // An address that is none names where it is set, as a normal start does.
    let out = run_to_exit(
        &["--health-check"],
        &[("HMR_PROXY_LISTEN", "bogus")],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_mentions(
        &String::from_utf8_lossy(&out.stderr),
        &["error: `bogus`", "HMR_PROXY_LISTEN", "127.0.0.1:3000"],
    );
}

/// Started with a low soft limit on open files (a desktop's 1,024, here 256) under a higher hard
/// one (by util-linux's `prlimit`, which then runs the binary in its place), the proxy raises the
/// soft limit to the hard one: each proxied connection takes two descriptors, and running out
/// read as the upstream going down.
#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let (_, hard) = rlimit::Resource::NOFILE.get().expect("getrlimit");
    let low = 256;
    assert!(
        hard > low,
        "the hard limit ({hard}) leaves nothing to raise"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg(format!("--nofile={low}:{hard}"))
        .arg(bin::BIN)
        .args(["--listen", "127.0.0.1:0", "--serve"])
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let running = Running::spawned(cmd);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", running.pid()))
        .expect("read /proc/PID/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    let soft: u64 = line
        .split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(soft, hard, "{line}");
}

/// A bare `--poll` on top of an interval in the environment (compose sets `HMR_PROXY_POLL=500`,
/// the user adds `--poll`) polls at that interval: the flag says to poll, not how often.
#[test]
fn a_bare_poll_flag_keeps_the_environments_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().to_str().expect("utf-8 path");
    let running = Running::start(
        &["--serve", site, "--poll"],
        &[("HMR_PROXY_POLL", "700")],
        dir.path(),
    );
    running.wait_for_log(", polling every 700 ms");
}

/// A Next.js dev server is seen by its Fast Refresh socket, and a save of a source it updates
/// itself is said once. A stylesheet in a folder these servers serve as it is (`public/`,
/// SvelteKit's `static/`), which the README says to watch, is the proxy's to swap: nothing said
/// (it was, with Vite, for every `.css`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_upstream_is_seen_and_files_served_as_they_are_are_not_its() {
    let upstream = crate::support::upstream::Upstream::start().await;
    let dir = tempdir();
    for folder in ["app", "public", "static"] {
        std::fs::create_dir(dir.path().join(folder)).expect("mkdir");
    }
    for (marker, args, save, hint) in [
        (
            "/_next/webpack-hmr",
            &["--watch", "app", "--watch", "public=/"][..],
            &["public/site.css", "app/page.tsx"][..],
            Some("page.tsx changed, and the upstream is a Next.js dev server"),
        ),
        (
            "/@vite/client",
            &["--watch", "static=/"][..],
            &["static/site.css", "static/js/plain.js"][..],
            None,
        ),
    ] {
        let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        argv.push(upstream.url());
        let running = bin::blocking("hmr-proxy to start", {
            let dir = dir.path().to_owned();
            move || {
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                Running::start(&argv, &[], &dir)
            }
        })
        .await;
        let request =
            format!("GET {marker} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let answer = raw(running.addr, request.as_bytes(), None).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        for file in save {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, "/* saved */").expect("write");
            let name = file.rsplit('/').next().expect("name");
            running.wait_for_log(&format!("{name} changed"));
        }
        if let Some(hint) = hint {
            running.wait_for_log(hint);
        }
        running.terminate();
        running.wait_for_log("stopped");
        let log = running.log();
        let hints = log
            .lines()
            .filter(|l| l.contains("which updates it in place itself"))
            .count();
        assert_eq!(hints, usize::from(hint.is_some()), "{marker}; log:\n{log}");
    }
}

/// A page that loads Vite's client says the upstream is Vite, which hot-swaps its own sources:
/// with the whole project watched (nothing named), each save there would also reload the page,
/// so the proxy says so once, with the fix. Watching a folder of one's own choice says nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vite_upstream_with_the_whole_project_watched_gets_one_hint() {
    let upstream = crate::support::upstream::Upstream::start().await;
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
    for (args, hinted) in [(&[][..], true), (&["--watch", "templates"][..], false)] {
        let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        argv.push(upstream.url());
        let running = bin::blocking("hmr-proxy to start", {
            let dir = dir.path().to_owned();
            move || {
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                Running::start(&argv, &[], &dir)
            }
        })
        .await;
        for path in ["/@vite/client", "/@vite/client", "/src/main.js"] {
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            let answer = raw(running.addr, request.as_bytes(), None).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
        if !hinted {
            // Watching only part of the project, a save there that Vite updates itself is said
            // once, when it comes (not a template's).
            std::fs::write(dir.path().join("templates/page.html"), "<p>").expect("write");
            running.wait_for_log("page.html changed");
            std::fs::write(dir.path().join("templates/main.js"), "//").expect("write");
            running.wait_for_log("main.js changed, and the upstream is a Vite dev server");
            // Not twice: batched alone or with the next file, taken in before that file is.
            std::fs::write(dir.path().join("templates/main.js"), "// 2").expect("write");
            std::fs::write(dir.path().join("templates/last.html"), "<p>").expect("write");
            running.wait_for_log("last.html");
        }
        running.terminate();
        running.wait_for_log("stopped");
        let hints = running
            .log()
            .lines()
            .filter(|l| l.contains("is a Vite dev server"))
            .count();
        assert_eq!(hints, 1, "{args:?}; log:\n{}", running.log());
    }
}

/// Each log line opens with the time of day in the local time zone (read once, at start): a
/// zone 14 hours east of UTC shows in the hour.
#[test]
fn log_lines_open_with_the_local_time_of_day() {
    let dir = tempdir();
    let utc_hour = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970");
        now.as_secs() / 3600 % 24
    };
    let before = utc_hour();
    let running = Running::start(&["--serve", "."], &[("TZ", "<+14>-14")], dir.path());
    let line = running.wait_for_log("listening on");
    let after = utc_hour();
    let (time, rest) = line.trim_start().split_at(8);
    let parts: Vec<u64> = time
        .split(':')
        .map(|part| part.parse().unwrap_or(99))
        .collect();
    assert!(
        parts.len() == 3 && parts[1] < 60 && parts[2] < 60,
        "no time of day: {line}"
    );
    assert!(
        [before, after].map(|h| (h + 14) % 24).contains(&parts[0]),
        "not the zone's hour ({before}–{after} UTC + 14): {line}"
    );
    assert!(rest.trim_start().starts_with("INFO"), "{line}");
}

/// A page that loads another tool's live reload (Eleventy's, behind the proxy) gets two reloaders:
/// said once, with the way to keep one.
#[tokio::test]
async fn another_live_reload_in_the_pages_is_named_once() {
    let dir = tempdir();
    std::fs::create_dir_all(dir.path().join(".11ty")).expect("mkdir");
    std::fs::write(dir.path().join(".11ty/reload-client.js"), "//").expect("write");
    let running = bin::blocking("hmr-proxy to start", {
        let dir = dir.path().to_owned();
        move || Running::start(&["--serve", "."], &[], &dir)
    })
    .await;
    for _ in 0..2 {
        let request =
            b"GET /.11ty/reload-client.js HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        assert!(
            raw(running.addr, request, None)
                .await
                .starts_with("HTTP/1.1 200")
        );
    }
    let line = running.wait_for_log("Eleventy's dev server");
    assert!(line.contains("eleventy --watch"), "{line}");
    running.terminate();
    running.wait_for_log("stopped");
    let named = running.log().matches("Eleventy's dev server").count();
    assert_eq!(named, 1, "{}", running.log());
}
