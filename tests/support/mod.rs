//! Shared test fixtures: a real upstream, the real proxy on port 0, and small raw-HTTP helpers.
//!
//! Everything here owns its resources and cleans up on `Drop`; readiness is a bound listener (the
//! port is known before anything connects), never a sleep.

#![allow(dead_code)]

pub mod bin;
pub mod ports;
pub mod sse;
pub mod upstream;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use hmr_proxy::{Config, Shutdown};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub use upstream::Upstream;

/// Generous upper bound for anything a test awaits, so a bug fails the test instead of hanging CI.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Await `fut`, failing the test if it takes longer than [`PATIENCE`].
pub async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// The proxy under test, running in-process on an ephemeral port.
pub struct Proxy {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Start the proxy with these command-line arguments (as a user would type them), resolved in
    /// `cwd`. `--listen 127.0.0.1:0` is added unless given.
    pub async fn start_in(cwd: &Path, args: &[&str]) -> Proxy {
        let mut argv = vec!["hmr-proxy"];
        if !args.iter().any(|a| *a == "-l" || a.starts_with("--listen")) {
            argv.extend(["--listen", "127.0.0.1:0"]);
        }
        argv.extend_from_slice(args);
        let (cli, matches) = Config::parse_args(argv).expect("arguments parse");
        let config = Config::load(cli, &matches, cwd).expect("config loads");
        let listener = hmr_proxy::bind(&config).await.expect("proxy binds");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = Shutdown::new();
        let task = tokio::spawn(hmr_proxy::run(config, listener, shutdown.clone()));
        Proxy {
            addr,
            shutdown,
            task: Some(task),
        }
    }

    /// Start the proxy in front of `upstream` with extra arguments.
    pub async fn front(upstream: &Upstream, extra: &[&str]) -> (Proxy, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = upstream.url();
        let mut args: Vec<&str> = extra.to_vec();
        args.push(&url);
        let proxy = Proxy::start_in(dir.path(), &args).await;
        (proxy, dir)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Trigger shutdown and wait for `run` to return.
    pub async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(task) = self.task.take() {
            within("proxy shutdown", task).await.expect("run task");
        }
    }

    /// The running `run` task, to await its end.
    pub fn take_task(&mut self) -> JoinHandle<()> {
        self.task.take().expect("task still there")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// A plain hyper client (no pooling surprises: each test builds its own).
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The number of the `Server-Timing` metric `name` (`name;desc=N`), in whichever field and
/// place of its list it comes.
pub fn server_timing(headers: &http::HeaderMap, name: &str) -> Option<u64> {
    headers
        .get_all("server-timing")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|m| {
            m.trim()
                .strip_prefix(name)?
                .strip_prefix(";desc=")?
                .parse()
                .ok()
        })
}

/// GET `url` with extra headers; returns status, headers and the whole body.
pub async fn get(
    url: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let mut req = http::Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new())).expect("request");
    let res = within("response", client().request(req))
        .await
        .expect("response");
    let (parts, body) = res.into_parts();
    let body = within("body", body.collect())
        .await
        .expect("body")
        .to_bytes();
    (parts.status, parts.headers, body)
}

/// Send raw bytes on a fresh connection and read until the server closes it or `until` appears.
pub async fn raw(addr: SocketAddr, request: &[u8], until: Option<&str>) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    read_until(&mut stream, until).await
}

/// Read from `stream` until EOF or until the text read so far contains `until`.
pub async fn read_until(stream: &mut TcpStream, until: Option<&str>) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    within("raw read", async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if let Some(needle) = until
                && String::from_utf8_lossy(&out).contains(needle)
            {
                break;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A listener on `addr` again, once the one there before has let go of it: an upstream
/// restarting on its port, as a reloader or `air` restarts it.
pub async fn rebind(addr: SocketAddr) -> TcpListener {
    within("rebind", async {
        loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => return listener,
                Err(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
}

/// An address on which nothing listens, and which no other test is given (see [`ports`]).
pub async fn dead_addr() -> SocketAddr {
    let [port] = ports::unclaimed::<1>();
    SocketAddr::from(([127, 0, 0, 1], port))
}
