//! The real binary in front of dev servers we did not write, each installed from the package
//! registries by `scripts/install-test-deps`: Python's `http.server`, Flask's dev server, PHP's
//! built-in server and a Vite dev server with its own HMR websocket; and `/api` routed to a second
//! dev server on the same origin.
//!
//! For each server: the page comes through the proxy with the client tag exactly once (and the
//! server's own page has none), a save in a watched folder reaches a `/changes` stream, and — in
//! headless Chromium (`tests/browser/polyglot.mjs`) — the open page reloads and shows the edit.
//! For Vite, its own websocket goes through the proxy and hot-updates CSS and JS without a reload.
//!
//! Every fixture is copied to a temporary directory before it is edited. Dev servers run in their
//! own process group, killed as a group on drop (Vite starts esbuild, Flask may fork a reloader).
//! `HMR_PROXY_SKIP_BROWSER=1` skips the Chromium half (and Vite, which needs the Node.js that
//! setting leaves uninstalled); otherwise a missing tool fails the test with the install command.

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::bin::{Running, blocking};
use crate::support::sse::{SseClient, paths};
use crate::support::{PATIENCE, get, within};

/// What a browser tab sends when it navigates: the requests the proxy injects into.
const NAVIGATION: &[(&str, &str)] = &[
    ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
    ("sec-fetch-dest", "document"),
    ("sec-fetch-mode", "navigate"),
];

/// The client's script path, counted in pages.
const CLIENT: &str = "/__hmr/client.js";

/// How long one Chromium run may take: starting the browser on a loaded two-core box takes
/// seconds; each step waits at most 20 s (see polyglot.mjs).
const BROWSER_PATIENCE: Duration = Duration::from_secs(120);

const INSTALL: &str = "run scripts/install-test-deps";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/polyglot")
}

fn skip_browser() -> bool {
    std::env::var("HMR_PROXY_SKIP_BROWSER").as_deref() == Ok("1")
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// A child process in its own process group, killed with its whole group on drop. Its stdout and
/// stderr are collected (for failure messages); its exit is reported on a channel.
struct Group {
    name: String,
    pid: u32,
    output: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
    exit: Option<Receiver<std::io::Result<ExitStatus>>>,
}

impl Group {
    /// Spawn `cmd` (stdin closed, output collected) as the leader of a new process group.
    fn spawn(name: &str, mut cmd: Command) -> Group {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child: Child = cmd
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name} ({cmd:?}): {err}; {INSTALL}"));
        let output = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().expect("stdout piped"), output.clone()),
            collect(child.stderr.take().expect("stderr piped"), output.clone()),
        ];
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        Group {
            name: name.to_string(),
            pid,
            output,
            readers,
            exit: Some(rx),
        }
    }

    /// Everything the process wrote so far.
    fn output(&self) -> String {
        self.output.lock().expect("output lock").clone()
    }

    /// Wait until something accepts connections on `port`; fail with the output if the process
    /// exits first or after [`PATIENCE`]. (A dev server announces readiness in a format of its
    /// own that changes between versions; a connection is the one signal they all give.)
    async fn until_listening(&mut self, port: u16) {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + PATIENCE;
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return;
            }
            let exit = self.exit.as_ref().expect("not yet waited for");
            if let Ok(status) = exit.try_recv() {
                panic!(
                    "{} exited ({status:?}) before listening on {addr}; it wrote:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {addr} within {PATIENCE:?}; it wrote:\n{}",
                self.name,
                self.output()
            );
            // Nothing announces the port opening: poll it, briefly and boundedly.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait for the process to exit within `timeout` (killing the group and failing the test
    /// otherwise); return its status and everything it wrote.
    async fn finish(mut self, timeout: Duration) -> (ExitStatus, String) {
        let exit = self.exit.take().expect("not yet waited for");
        let (exit, waited) = tokio::task::spawn_blocking(move || {
            let waited = exit.recv_timeout(timeout);
            (exit, waited)
        })
        .await
        .expect("waiter task");
        self.exit = Some(exit);
        let status = match waited {
            Ok(Ok(status)) => status,
            Ok(Err(err)) => panic!("waiting for {}: {err}", self.name),
            Err(_) => {
                self.stop();
                panic!(
                    "{} did not finish within {timeout:?}; killed it. It wrote:\n{}",
                    self.name,
                    self.output()
                );
            }
        };
        // Stray children would hold the pipes open.
        self.signal("KILL");
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.join();
        }
        (status, self.output())
    }

    /// Stop the whole process group: SIGTERM, so a process can take its own children down
    /// (playwright's Chromium runs in a process group of its own), then SIGKILL what is left once
    /// the leader exited or after a few seconds. The leader is reaped by its waiter thread.
    fn stop(&mut self) {
        self.signal("TERM");
        if let Some(exit) = self.exit.take() {
            let _ = exit.recv_timeout(Duration::from_secs(5));
        }
        self.signal("KILL");
    }

    /// Send `signal` to the whole process group.
    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), "--", &format!("-{}", self.pid)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Append everything `pipe` yields to `into`, on a thread.
fn collect(
    mut pipe: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .expect("output lock")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
}

/// A dev server we did not write, listening on 127.0.0.1.
struct DevServer {
    port: u16,
    process: Group,
}

impl DevServer {
    /// Start `cmd` (which must listen on `port`) and wait until it accepts connections.
    async fn start(name: &str, cmd: Command, port: u16) -> DevServer {
        let mut process = Group::spawn(name, cmd);
        process.until_listening(port).await;
        DevServer { port, process }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// What the server logged so far, for failure messages.
    fn log(&self) -> String {
        self.process.output()
    }
}

// ---------------------------------------------------------------------------------------------
// Tools

/// The first `python3` that imports Flask (pyenv's on PATH, else Debian's python3-flask).
fn python_with_flask() -> String {
    for python in ["python3", "/usr/bin/python3"] {
        let imports = Command::new(python)
            .args(["-c", "import flask"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if imports {
            return python.to_string();
        }
    }
    panic!("no python3 that imports flask (Debian's python3-flask): {INSTALL}");
}

/// A Python command: unbuffered output, no `__pycache__` written into fixtures.
fn python(interpreter: &str, cwd: &Path) -> Command {
    let mut cmd = Command::new(interpreter);
    cmd.current_dir(cwd)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("FLASK_APP")
        .env_remove("FLASK_DEBUG");
    cmd
}

/// `python3 -m http.server` serving `dir`.
async fn http_server(dir: &Path) -> DevServer {
    let [port] = crate::support::ports::unclaimed::<1>();
    let mut cmd = python("python3", dir);
    cmd.args([
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
    ]);
    cmd.arg("--directory").arg(dir);
    DevServer::start("python3 -m http.server", cmd, port).await
}

/// `flask --app app run` in `dir` (Flask's development server).
async fn flask(dir: &Path) -> DevServer {
    let [port] = crate::support::ports::unclaimed::<1>();
    let mut cmd = python(&python_with_flask(), dir);
    cmd.args(["-m", "flask", "--app", "app", "run", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string()]);
    DevServer::start("flask run", cmd, port).await
}

/// Whether the Chromium half runs. With `HMR_PROXY_SKIP_BROWSER=1` it does not; otherwise Node,
/// playwright-core and Chromium must be installed.
fn browser_available(test: &str) -> bool {
    if skip_browser() {
        println!("{test}: HMR_PROXY_SKIP_BROWSER=1, the Chromium half did not run");
        return false;
    }
    assert!(
        repo()
            .join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "tests/browser/node_modules is missing: {INSTALL} (or set HMR_PROXY_SKIP_BROWSER=1)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: {INSTALL} (or set HMR_PROXY_SKIP_BROWSER=1)"
    );
    true
}

/// Run `tests/browser/polyglot.mjs` against `origin` with these steps; fail with its report.
async fn chromium(origin: &str, steps: Value) {
    let mut cmd = Command::new("node");
    cmd.arg(repo().join("tests/browser/polyglot.mjs"))
        .arg(origin)
        .arg(steps.to_string())
        .current_dir(repo());
    let node = Group::spawn("node tests/browser/polyglot.mjs", cmd);
    let (status, output) = node.finish(BROWSER_PATIENCE).await;
    println!("{output}");
    assert!(status.success(), "Chromium: {status}\n{output}");
    assert!(!output.contains("FAIL"), "{output}");
}

// ---------------------------------------------------------------------------------------------
// Fixtures and checks

/// Copy `src` into `dst` recursively, dating every file an hour back: `http.server` answers a
/// reload's `If-Modified-Since` with 304 when a file changed within the same second as its copy.
fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("create fixture copy");
    let past = SystemTime::now() - Duration::from_secs(3600);
    for entry in std::fs::read_dir(src).expect("read fixture dir") {
        let entry = entry.expect("fixture entry");
        let to = dst.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).expect("copy fixture");
            std::fs::File::options()
                .write(true)
                .open(&to)
                .and_then(|f| f.set_modified(past))
                .expect("date fixture copy");
        }
    }
}

/// Replace `from` with `to` in `file` (which must contain it); return the new content.
fn edited(file: &Path, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(file).expect("read fixture");
    assert!(text.contains(from), "{} lacks {from:?}", file.display());
    text.replace(from, to)
}

/// The proxy binary in front of `upstream`, with `args` before it, run in `cwd`.
async fn proxy(args: &[&str], upstream: &str, cwd: &Path) -> Running {
    let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    argv.push(upstream.to_string());
    let cwd = cwd.to_path_buf();
    blocking("hmr-proxy to listen", move || {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        Running::start(&argv, &[], &cwd)
    })
    .await
}

/// The page at `path` straight from the dev server has no client tag and shows `shows`; through
/// the proxy it is the same page with the tag exactly once. Returns the proxied page.
async fn injected_once(server: &DevServer, proxy: &Running, path: &str, shows: &str) -> String {
    let (status, _, direct) = get(&server.url(path), NAVIGATION).await;
    let direct = String::from_utf8_lossy(&direct).into_owned();
    assert_eq!(
        status,
        200,
        "{} {path} directly: {direct}\nit logged:\n{}",
        server.origin(),
        server.log()
    );
    assert!(direct.contains(shows), "the dev server's page: {direct}");
    assert_eq!(direct.matches(CLIENT).count(), 0, "{direct}");

    let (status, headers, proxied) = get(&proxy.url(path), NAVIGATION).await;
    let proxied = String::from_utf8_lossy(&proxied).into_owned();
    assert_eq!(status, 200, "{path} through the proxy: {proxied}");
    assert!(
        headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html")),
        "{headers:?}"
    );
    assert!(proxied.contains(shows), "the proxied page: {proxied}");
    assert_eq!(
        proxied.matches(CLIENT).count(),
        1,
        "the client tag exactly once in the proxied page:\n{proxied}"
    );
    proxied
}

/// Write `content` to `file` under the watched `root` and wait for the batch that names it on a
/// `/changes` stream opened before the write.
async fn change_reaches_stream(proxy: &Running, root: &Path, file: &Path, content: &str) {
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    std::fs::write(file, content).expect("write watched file");
    let rel = file
        .strip_prefix(root)
        .expect("file under the watched root")
        .to_string_lossy()
        .into_owned();
    let batch = within("the change batch", async {
        loop {
            let batch = tab.next_batch().await;
            if paths(&batch).contains(&rel) {
                return batch;
            }
        }
    })
    .await;
    assert_eq!(batch["reload"], false, "{batch}");
}

/// The flow every server-rendered page goes through: the client once, a save on the stream and
/// in the re-fetched page, then Chromium: open the page, save again, see it reload with the edit.
/// `file` is the watched source of the page at `path` and contains `<name> page v1` in `#title`;
/// `more` are Chromium steps to run after that.
async fn page_reloads_on_save(
    test: &str,
    server: &DevServer,
    proxy: &Running,
    (path, name): (&str, &str),
    (root, file): (&Path, &Path),
    more: &[Value],
) {
    let v1 = format!("{name} page v1");
    let v2 = format!("{name} page v2");
    let v3 = format!("{name} page v3");
    injected_once(server, proxy, path, &v1).await;

    // Only "page vN" is in the source: the name may be rendered from a variable.
    change_reaches_stream(proxy, root, file, &edited(file, "page v1", "page v2")).await;
    let page = injected_once(server, proxy, path, &v2).await;
    assert!(!page.contains(&v1), "{page}");

    if !browser_available(test) {
        return;
    }
    let mut steps = vec![
        json!({"goto": path}),
        json!({"text": ["#title", v2]}),
        json!({"clientTags": 1}),
        json!({"mark": true}),
        json!({"write": [file, edited(file, "page v2", "page v3")], "then": "reload"}),
        json!({"text": ["#title", v3]}),
        json!({"clientTags": 1}),
    ];
    steps.extend_from_slice(more);
    chromium(&proxy.url(""), Value::Array(steps)).await;
}

// ---------------------------------------------------------------------------------------------
// The servers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_server() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    copy_tree(&fixtures().join("static"), &site);
    let server = http_server(&site).await;
    // As in the README: run in the folder http.server serves.
    let proxy = proxy(&["--watch", "."], &server.origin(), &site).await;

    let file = site.join("index.html");
    page_reloads_on_save(
        "python_http_server",
        &server,
        &proxy,
        ("/", "static"),
        (&site, &file),
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_dev_server() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    copy_tree(&fixtures().join("flask"), &app);
    let server = flask(&app).await;
    // As in the README, in the app's folder.
    let watch = ["--watch", "templates", "--watch", "static=/static"];
    let proxy = proxy(&watch, &server.origin(), &app).await;

    let templates = app.join("templates");
    let file = templates.join("index.html");
    let css = app.join("static/style.css");
    // The stylesheet Flask serves from static/ changes too (swapped in place or by a reload,
    // whichever the client does: the page shows it either way).
    let more = [
        json!({"color": ["#title", "rgb(255, 0, 0)"]}),
        json!({"write": [css, edited(&css, "rgb(255, 0, 0)", "rgb(0, 0, 255)")], "then": "any"}),
        json!({"color": ["#title", "rgb(0, 0, 255)"]}),
        json!({"text": ["#title", "flask page v3"]}),
        json!({"clientTags": 1}),
    ];
    page_reloads_on_save(
        "flask_dev_server",
        &server,
        &proxy,
        ("/", "flask"),
        (&templates, &file),
        &more,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_builtin_server() {
    let tmp = tempfile::tempdir().unwrap();
    let docroot = tmp.path().join("public");
    copy_tree(&fixtures().join("php"), &docroot);
    let [port] = crate::support::ports::unclaimed::<1>();
    let mut cmd = Command::new("php");
    // OPcache (on in Debian's php-cli for the built-in server) rechecks a script's mtime at most
    // every 2 s, so a reload right after a save would get the old page: check on every request.
    cmd.args(["-d", "opcache.revalidate_freq=0"])
        .args(["-S", &format!("127.0.0.1:{port}"), "-t", "public"])
        .current_dir(tmp.path())
        .env_remove("PHP_CLI_SERVER_WORKERS");
    let server = DevServer::start("php -S", cmd, port).await;
    let proxy = proxy(&["--watch", "public"], &server.origin(), tmp.path()).await;

    let file = docroot.join("index.php");
    page_reloads_on_save(
        "php_builtin_server",
        &server,
        &proxy,
        ("/", "php"),
        (&docroot, &file),
        &[],
    )
    .await;
}

/// One origin, two dev servers: the front end from `http.server`, `/api` routed to Flask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_route_to_a_second_dev_server() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    let api_dir = tmp.path().join("api");
    copy_tree(&fixtures().join("static"), &site);
    copy_tree(&fixtures().join("flask"), &api_dir);
    let (front, api) = tokio::join!(http_server(&site), flask(&api_dir));
    let route = format!("/api={}", api.origin());
    let proxy = proxy(&["--route", &route, "--watch", "."], &front.origin(), &site).await;

    // The API answers through the proxy, untouched (JSON is never injected into).
    let (status, headers, body) = get(&proxy.url("/api/hello"), &[]).await;
    assert_eq!(status, 200);
    assert!(
        headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json")),
        "{headers:?}"
    );
    let hello: Value = serde_json::from_slice(&body).expect("JSON from Flask");
    assert_eq!(hello, json!({"message": "hello from flask"}));
    // Only /api and below go to Flask (not /api.html): the front end comes from http.server.
    let (status, _, _) = get(&proxy.url("/api.html"), NAVIGATION).await;
    assert_eq!(status, 200);
    let (status, _, _) = get(&proxy.url("/hello"), &[]).await;
    assert_eq!(status, 404, "http.server has no /hello");
    injected_once(&front, &proxy, "/api.html", "front end from http.server").await;

    let (_, _, body) = get(&proxy.url("/__hmr/status"), &[]).await;
    let status: Value = serde_json::from_slice(&body).expect("status JSON");
    assert_eq!(status["routes"][0]["path"], "/api", "{status}");
    assert_eq!(status["routes"][0]["url"], api.origin(), "{status}");
    assert_eq!(status["routes"][0]["reachable"], true, "{status}");

    if !browser_available("api_route_to_a_second_dev_server") {
        return;
    }
    let page = site.join("api.html");
    let steps = json!([
        {"goto": "/api.html"},
        {"text": ["#api", "hello from flask"]},
        {"clientTags": 1},
        {"mark": true},
        {"write": [page, edited(&page, "front end from http.server", "front end v2")], "then": "reload"},
        {"text": ["#title", "front end v2"]},
        {"text": ["#api", "hello from flask"]},
    ]);
    chromium(&proxy.url(""), steps).await;
}

// ---------------------------------------------------------------------------------------------
// Vite

/// The Vite binary installed in the fixture project, or `None` (the test is skipped) when Node
/// is not installed because of `HMR_PROXY_SKIP_BROWSER=1`.
fn vite_bin() -> Option<PathBuf> {
    let bin = repo().join("tests/fixtures/vite-app/node_modules/vite/bin/vite.js");
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if node && bin.is_file() {
        return Some(bin);
    }
    if skip_browser() {
        println!("vite: HMR_PROXY_SKIP_BROWSER=1 and no Node.js/Vite installed: not run");
        return None;
    }
    panic!(
        "{}: {INSTALL} (npm ci in tests/fixtures/vite-app)",
        if node {
            "vite is not installed"
        } else {
            "node is missing"
        }
    );
}

/// Connect to Vite's HMR websocket through the proxy as its client does (subprotocol
/// `vite-hmr`, the page's token, an Origin) and return the socket after Vite's `connected`.
async fn vite_socket(
    proxy: &Running,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (status, _, client) = get(&proxy.url("/@vite/client"), &[]).await;
    assert_eq!(status, 200);
    let client = String::from_utf8_lossy(&client);
    let token = client
        .split("const wsToken = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no wsToken in /@vite/client:\n{client}"));
    let mut req = format!("ws://{}/?token={token}", proxy.addr)
        .into_client_request()
        .unwrap();
    let headers = req.headers_mut();
    headers.insert("sec-websocket-protocol", "vite-hmr".parse().unwrap());
    headers.insert("origin", proxy.url("").parse().unwrap());
    let (mut ws, res) = within(
        "Vite's websocket handshake through the proxy",
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("Vite accepts its websocket through the proxy");
    assert_eq!(res.status(), 101);
    assert_eq!(res.headers()["sec-websocket-protocol"], "vite-hmr");
    let first = within("Vite's first message", next_text(&mut ws)).await;
    assert_eq!(first["type"], "connected", "{first}");
    ws
}

/// The next text message on a websocket, as JSON.
async fn next_text<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text).expect("Vite sends JSON");
            }
            Some(Ok(_)) => {}
            other => panic!("websocket ended: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vite_dev_server_and_its_own_hmr() {
    let Some(vite) = vite_bin() else { return };
    // Vite's root (web/), and a backend's templates beside it (templates/), which Vite does not
    // see and the proxy watches: the usual Vite + server-rendered pages setup.
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("web");
    let fixture = repo().join("tests/fixtures/vite-app");
    copy_tree(&fixture.join("src"), &web.join("src"));
    std::fs::copy(fixture.join("index.html"), web.join("index.html")).unwrap();
    let templates = tmp.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    let template = templates.join("base.html");
    std::fs::write(&template, "<main>layout v1</main>\n").unwrap();

    let [port] = crate::support::ports::unclaimed::<1>();
    let mut cmd = Command::new("node");
    cmd.arg(&vite)
        .arg(&web)
        .args(["--port", &port.to_string(), "--strictPort"])
        .args(["--host", "127.0.0.1", "--clearScreen", "false"])
        .current_dir(&web)
        .env("NO_COLOR", "1");
    let server = DevServer::start("vite", cmd, port).await;
    let proxy = proxy(
        &["--watch", templates.to_str().unwrap()],
        &server.origin(),
        tmp.path(),
    )
    .await;

    // The page Vite transformed (with its own client) gets ours once, next to Vite's.
    let page = injected_once(&server, &proxy, "/", "vite page v1").await;
    assert_eq!(page.matches("/@vite/client").count(), 1, "{page}");

    // Vite's websocket through the proxy carries its hot updates: a module the page loaded…
    let mut ws = vite_socket(&proxy).await;
    let (status, _, _) = get(&proxy.url("/src/style.css"), &[]).await;
    assert_eq!(status, 200);
    // …changes, and Vite pushes an update for it. Vite's watcher gives no sign of being ready,
    // so a save it missed while starting is repeated, a bounded number of times.
    let css = web.join("src/style.css");
    let green = edited(&css, "rgb(255, 0, 0)", "rgb(0, 128, 0)");
    let update = within("Vite's update for src/style.css", async {
        loop {
            std::fs::write(&css, &green).unwrap();
            match tokio::time::timeout(Duration::from_secs(3), next_text(&mut ws)).await {
                Ok(msg) if msg["type"] == "update" => return msg,
                Ok(msg) => println!("vite sent {msg}"),
                Err(_) => println!("no update from Vite yet; saving again"),
            }
        }
    })
    .await;
    assert_eq!(update["updates"][0]["path"], "/src/style.css", "{update}");
    drop(ws);

    // A save in the proxy's watched folder reaches the proxy's own stream.
    change_reaches_stream(&proxy, &templates, &template, "<main>layout v2</main>\n").await;

    if !browser_available("vite_dev_server_and_its_own_hmr") {
        return;
    }
    let marker = web.join("src/marker.js");
    let steps = json!([
        {"goto": "/"},
        {"console": "[vite] connected."},
        // Vite's client found its socket at the page's origin (the proxy), not by falling back
        // to Vite's own port.
        {"websocket": format!("ws://{}/", proxy.addr)},
        {"text": ["#title", "vite page v1"]},
        {"text": ["#module", "module v1"]},
        {"color": ["#styled", "rgb(0, 128, 0)"]},
        {"clientTags": 1},
        {"mark": true},
        // Vite hot-swaps the stylesheet and the JS module in place: no reload.
        {"write": [css, edited(&css, "rgb(0, 128, 0)", "rgb(0, 0, 255)")], "then": "update"},
        {"color": ["#styled", "rgb(0, 0, 255)"]},
        {"write": [marker, edited(&marker, "module v1", "module v2")], "then": "update"},
        {"text": ["#module", "module v2"]},
        {"marked": true},
        {"noConsole": "[vite] page reload"},
        // The backend template Vite never sees: hmr-proxy reloads the page.
        {"write": [template, "<main>layout v3</main>\n"], "then": "reload"},
        {"text": ["#module", "module v2"]},
        {"color": ["#styled", "rgb(0, 0, 255)"]},
        {"clientTags": 1},
        {"noConsole": "[vite] page reload"},
        {"websocket": format!("ws://{}/", proxy.addr)},
    ]);
    chromium(&proxy.url(""), steps).await;
    drop(server);
}
