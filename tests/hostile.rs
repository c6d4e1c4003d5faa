//! Hostile clients and faulty upstreams, over real sockets.
//!
//! Clients: an oversized request line or header block, headers trickled byte by byte, a silent
//! connection, request-smuggling shapes, garbage bytes, malformed `Host`/`Origin`, and clients that
//! leave mid-download or mid-stream. Upstreams (a raw TCP server scripted per test, which records
//! every request head it receives): dying mid-body, answering garbage, promising more bytes than it
//! sends, hanging after the headers, resetting. In every case the browser gets a clean error or a
//! visibly truncated response, and the proxy keeps serving everyone else.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::support::bin::{self, Running};
use crate::support::{self, Proxy, Upstream, within};

/// The tag the injector puts into pages.
const TAG: &str = r#"<script type="module" src="/__hmr/client.js"></script>"#;

/// How long a connection the proxy should close may stay open: far above the 500 ms header
/// timeout these tests configure, far below what a client that is never cut off would take.
const CLOSE_BOUND: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// A raw upstream: every request head recorded, every answer scripted byte by byte.
// ---------------------------------------------------------------------------------------------

/// One request as the raw upstream received it.
#[derive(Debug, Clone)]
struct Seen {
    /// Request line and header lines, as sent.
    head: String,
    /// The body, de-chunked.
    body: Vec<u8>,
    /// The body ended as its framing said (false: the connection ended inside it).
    complete: bool,
    /// Requests that came before it on its connection.
    earlier: usize,
}

impl Seen {
    fn path(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or_default()
    }

    fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

/// What the raw upstream does with a request.
enum Answer {
    /// Write these bytes, then wait for the next request on the connection.
    KeepAlive(Vec<u8>),
    /// Write these bytes, then close the connection (FIN).
    Close(Vec<u8>),
    /// Write these bytes, then keep the connection open until the proxy closes it.
    Hang(Vec<u8>),
    /// Write these bytes, then reset the connection (RST, via `SO_LINGER` 0).
    Reset(Vec<u8>),
    /// Write these bytes, wait until the test opens the gate, then close (FIN): the proxy has
    /// surely passed the bytes on before the upstream dies.
    CloseWhen(Vec<u8>, Arc<Notify>),
    /// The same, ending with a reset.
    ResetWhen(Vec<u8>, Arc<Notify>),
}

type Script = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

struct RawUpstream {
    addr: SocketAddr,
    seen: watch::Sender<Vec<Seen>>,
    /// Connections the proxy closed while this upstream held them open ([`Answer::Hang`]).
    hung_up: watch::Sender<usize>,
    task: JoinHandle<()>,
}

impl RawUpstream {
    async fn start(script: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = watch::channel(Vec::new()).0;
        let hung_up = watch::channel(0).0;
        let script: Script = Arc::new(script);
        let (task_seen, task_hung_up) = (seen.clone(), hung_up.clone());
        let task = tokio::spawn(async move {
            // Dropping the set (when the task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(serve_raw(
                    stream,
                    script.clone(),
                    task_seen.clone(),
                    task_hung_up.clone(),
                ));
                while connections.try_join_next().is_some() {}
            }
        });
        RawUpstream {
            addr,
            seen,
            hung_up,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.borrow().clone()
    }

    fn paths(&self) -> Vec<String> {
        self.seen().iter().map(|s| s.path().to_string()).collect()
    }

    /// Wait until a request for `path` has arrived; return it.
    async fn wait_for(&self, path: &str) -> Seen {
        let mut rx = self.seen.subscribe();
        let seen = within(&format!("{path} to reach the upstream"), async {
            rx.wait_for(|all| all.iter().any(|s| s.path() == path))
                .await
                .unwrap()
                .clone()
        })
        .await;
        seen.into_iter().find(|s| s.path() == path).unwrap()
    }

    async fn wait_for_hang_ups(&self, n: usize) {
        let mut rx = self.hung_up.subscribe();
        within("the proxy to close a hanging upstream connection", async {
            rx.wait_for(|seen| *seen >= n).await.unwrap();
        })
        .await;
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_raw(
    mut stream: TcpStream,
    script: Script,
    seen: watch::Sender<Vec<Seen>>,
    hung_up: watch::Sender<usize>,
) {
    let mut buf = Vec::new();
    for earlier in 0.. {
        let Some(mut request) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        request.earlier = earlier;
        let complete = request.complete;
        let answer = script(&request);
        seen.send_modify(|all| all.push(request));
        if !complete {
            return;
        }
        match answer {
            Answer::KeepAlive(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Answer::Close(bytes) => {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
                return;
            }
            Answer::Hang(bytes) => {
                let _ = stream.write_all(&bytes).await;
                let mut sink = [0u8; 1024];
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
                hung_up.send_modify(|n| *n += 1);
                return;
            }
            Answer::Reset(bytes) => {
                let _ = stream.write_all(&bytes).await;
                reset(stream);
                return;
            }
            Answer::CloseWhen(bytes, gate) => {
                let _ = stream.write_all(&bytes).await;
                gate.notified().await;
                let _ = stream.shutdown().await;
                return;
            }
            Answer::ResetWhen(bytes, gate) => {
                let _ = stream.write_all(&bytes).await;
                gate.notified().await;
                reset(stream);
                return;
            }
        }
    }
}

/// Close with an RST: linger 0 (which cannot block) and drop.
fn reset(stream: TcpStream) {
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Read more bytes into `buf`; false at EOF or on an error.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One line without its CRLF; `None` when the connection ends first.
async fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = find(buf, b"\r\n") {
            let line = buf[..end].to_vec();
            buf.drain(..end + 2);
            return Some(line);
        }
        if !fill(stream, buf).await {
            return None;
        }
    }
}

/// A chunked body into `body`; false when it ends early or is malformed.
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>, body: &mut Vec<u8>) -> bool {
    loop {
        let Some(line) = read_line(stream, buf).await else {
            return false;
        };
        let text = String::from_utf8_lossy(&line);
        let size = text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            return false;
        };
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                match read_line(stream, buf).await {
                    Some(line) if line.is_empty() => return true,
                    Some(_) => {}
                    None => return false,
                }
            }
        }
        while buf.len() < size + 2 {
            if !fill(stream, buf).await {
                return false;
            }
        }
        body.extend(buf.drain(..size));
        if buf.drain(..2).as_slice() != b"\r\n" {
            return false;
        }
    }
}

/// The next request on the connection; `None` when it closed between requests.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Seen> {
    let head_end = loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            break end + 4;
        }
        if !fill(stream, buf).await {
            if buf.is_empty() {
                return None;
            }
            return Some(Seen {
                head: String::from_utf8_lossy(buf).into_owned(),
                body: Vec::new(),
                complete: false,
                earlier: 0,
            });
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let mut seen = Seen {
        head,
        body: Vec::new(),
        complete: true,
        earlier: 0,
    };
    let chunked = seen
        .headers("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = seen
        .headers("content-length")
        .first()
        .and_then(|v| v.parse::<usize>().ok());
    if chunked {
        let mut body = Vec::new();
        seen.complete = read_chunked(stream, buf, &mut body).await;
        seen.body = body;
    } else if let Some(n) = length {
        while buf.len() < n {
            if !fill(stream, buf).await {
                seen.complete = false;
                break;
            }
        }
        seen.body = buf.drain(..n.min(buf.len())).collect();
    }
    Some(seen)
}

/// A complete response with a `Content-Length`.
fn ok(content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A response head (with whatever framing headers the test wants) and the body bytes that follow.
fn head_then(headers: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\n{headers}\r\n\r\n{body}").into_bytes()
}

// ---------------------------------------------------------------------------------------------
// The browser side: raw exchanges and what came back.
// ---------------------------------------------------------------------------------------------

/// Send `request` on a fresh connection and read until the proxy closes it; fail the test if it
/// is still open after [`CLOSE_BOUND`].
async fn until_closed(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    // The proxy may answer and close before reading all of it; the answer is what counts.
    let _ = stream.write_all(request).await;
    read_to_close(&mut stream).await
}

/// Everything the peer sends until it closes the connection (EOF or reset), within
/// [`CLOSE_BOUND`].
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = tokio::time::timeout(CLOSE_BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(
        closed.is_ok(),
        "the connection is still open after {CLOSE_BOUND:?}; received so far:\n{text}"
    );
    text
}

/// A response read off the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    /// The raw bytes after the head (still chunked if the response was).
    body: String,
}

impl Reply {
    fn parse(text: &str) -> Reply {
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete response head in {text:?}"));
        let mut lines = head.lines();
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP/1.1 status line: {status_line:?}"));
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }

    /// The de-chunked body, and whether the last chunk and the final CRLF arrived.
    fn dechunk(&self) -> (String, bool) {
        let mut rest = self.body.as_str();
        let mut out = String::new();
        loop {
            let Some((line, after)) = rest.split_once("\r\n") else {
                return (out, false);
            };
            let Ok(size) = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            else {
                return (out, false);
            };
            if size == 0 {
                return (out, after == "\r\n");
            }
            let Some(data) = after.get(..size) else {
                out.push_str(after);
                return (out, false);
            };
            out.push_str(data);
            match after[size..].strip_prefix("\r\n") {
                Some(next) => rest = next,
                None => return (out, false),
            }
        }
    }

    /// The response is visibly incomplete to the browser: its framing promised more than arrived.
    /// (A response without framing, ended by the close, would look complete: that fails too.)
    fn assert_truncated(&self, what: &str) {
        if self.is_chunked() {
            let (_, finished) = self.dechunk();
            assert!(
                !finished,
                "{what}: a truncated upstream body was finished off with the last chunk:\n{self:?}"
            );
        } else if let Some(length) = self.header("content-length") {
            let length: usize = length.parse().unwrap();
            assert!(
                self.body.len() < length,
                "{what}: Content-Length {length} and as many bytes arrived:\n{self:?}"
            );
        } else {
            panic!("{what}: a close-delimited response cannot show it was truncated:\n{self:?}");
        }
    }
}

/// What a browser got from an upstream that broke off mid-response: a visibly truncated response.
/// When the upstream dies at once, a connection closed without a byte is clean too (hyper drops
/// a response whose body fails before the head was flushed): `None`. Never a complete-looking
/// response.
fn broken_off(text: &str, what: &str, may_be_empty: bool) -> Option<Reply> {
    if may_be_empty && text.is_empty() {
        return None;
    }
    assert!(
        text.contains("\r\n\r\n"),
        "{what}: no complete head in {text:?}"
    );
    let reply = Reply::parse(text);
    assert_eq!(reply.status, 200, "{what}: {text}");
    reply.assert_truncated(what);
    Some(reply)
}

/// Send `request`, read until `first` has arrived (the proxy passed the upstream's first bytes
/// on), open `gate` (the upstream dies), and read until the proxy closes the connection.
async fn die_after(addr: SocketAddr, request: &str, first: &str, gate: &Notify) -> String {
    let mut stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = support::read_until(&mut stream, Some(first)).await;
    gate.notify_one();
    text.push_str(&read_to_close(&mut stream).await);
    text
}

/// A plain GET through the proxy succeeds: the proxy still serves everyone else.
async fn still_serving(url: &str) {
    let (status, _, body) = support::get(url, &[]).await;
    assert_eq!(status, 200, "a normal request after a fault: {body:?}");
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or_else(|err| panic!("cannot list /proc/{pid}/fd: {err}"))
}

/// Start the real binary with `args` in `dir`, off the runtime's workers.
async fn start_binary(args: &[&str], dir: &Path) -> Running {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let dir = dir.to_path_buf();
    bin::blocking("hmr-proxy to start", move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Running::start(&args, &[], &dir)
    })
    .await
}

/// `/__hmr/status` as JSON, over a connection the proxy closes before the answer arrives
/// (`Connection: close`), so counting the proxy's descriptors afterwards does not count it.
async fn status_json(addr: SocketAddr) -> serde_json::Value {
    let text = until_closed(
        addr,
        b"GET /__hmr/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    let reply = Reply::parse(&text);
    assert_eq!(reply.status, 200, "{text}");
    let body = if reply.is_chunked() {
        reply.dechunk().0
    } else {
        reply.body
    };
    serde_json::from_str(&body).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Hostile requests.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_line_and_headers_get_414_and_431_and_the_connection_closes() {
    let upstream = RawUpstream::start(|_| Answer::KeepAlive(ok("text/plain", "ok"))).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(dir.path(), &[&upstream.url()]).await;

    let long_target = format!("/{}", "a".repeat(70_000));
    let text = until_closed(
        proxy.addr,
        format!("GET {long_target} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(Reply::parse(&text).status, 414, "{text}");

    let many: String = (0..150).map(|i| format!("X-Header-{i}: v\r\n")).collect();
    let text = until_closed(
        proxy.addr,
        format!("GET /many HTTP/1.1\r\nHost: localhost\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(Reply::parse(&text).status, 431, "{text}");

    // A header block larger than hyper's read buffer: the proxy stops reading and closes,
    // answering 431 unless the reset of the unread bytes overtakes the answer. The limit
    // (max_buf_size, 408 KiB) is checked after each read, and one read may fill the buffer's
    // spare capacity (up to 1 MiB): ~500 KiB is refused only sometimes, 2 MiB always.
    let cookie = format!("Cookie: c={}\r\n", "b".repeat(2 * 1024 * 1024));
    let text = until_closed(
        proxy.addr,
        format!("GET /big HTTP/1.1\r\nHost: localhost\r\n{cookie}\r\n").as_bytes(),
    )
    .await;
    if !text.is_empty() {
        assert_eq!(Reply::parse(&text).status, 431, "{text}");
    }

    let url = proxy.url("/after");
    still_serving(&url).await;
    assert_eq!(
        upstream.paths(),
        ["/after"],
        "an oversized request got through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_silent_clients_are_cut_off_after_the_header_timeout() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &["--header-timeout", "500ms"]).await;

    // Slowloris: a request line, then header bytes one at a time, never the blank line.
    let started = Instant::now();
    let stream = within("connect", TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let trickle = async move {
        // 20 s of trickling if nobody stops it.
        for byte in b"X-Slow: x\r\n".iter().cycle().take(1000) {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::future::pending::<()>().await;
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let got = tokio::select! {
        got = closed => got,
        _ = trickle => unreachable!(),
        _ = tokio::time::sleep(CLOSE_BOUND) => panic!("a trickling client was still connected after {CLOSE_BOUND:?}"),
    };
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(500),
        "closed after {elapsed:?}, before the header timeout"
    );
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.is_empty() || got.starts_with("HTTP/1.1 408"),
        "a cut-off client got {got:?}"
    );

    // A client that connects and never sends a byte holds a connection slot just the same.
    let started = Instant::now();
    let mut silent = within("connect", TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    let got = read_to_close(&mut silent).await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed early"
    );
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");

    // The first bytes of the HTTP/2 preface, then nothing: the protocol was never settled, and
    // no header timeout applied (nor does HTTP/2 have one).
    for start in [&b"P"[..], b"PRI * HTTP/2.0\r\n"] {
        let started = Instant::now();
        let mut partial = within("connect", TcpStream::connect(proxy.addr))
            .await
            .unwrap();
        partial.write_all(start).await.unwrap();
        let got = read_to_close(&mut partial).await;
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "closed early"
        );
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
    }

    // An idle keep-alive connection after a complete exchange.
    let mut idle = within("connect", TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    idle.write_all(b"GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut idle).await;
    let reply = Reply::parse(&got);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "upstream saw /first");

    // An idle HTTP/2 connection (h2c, prior knowledge) after a complete exchange: hyper's
    // HTTP/2 has no idle limit, and a few such connections held every slot.
    let tcp = within("connect", TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    let (mut send, conn) = within(
        "h2 handshake",
        hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        ),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let request = http::Request::get(proxy.url("/h2"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = within("h2 response", send.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = within(
        "h2 body",
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .unwrap()
    .to_bytes();
    assert_eq!(body.as_ref(), b"upstream saw /h2");
    let started = Instant::now();
    tokio::select! {
        _ = conn => {}
        _ = tokio::time::sleep(CLOSE_BOUND) => panic!("an idle HTTP/2 connection was still open after {CLOSE_BOUND:?}"),
    };
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed after {:?}, before the header timeout",
        started.elapsed()
    );

    // A request body that stops midway: a 408 that says so once the browser has paused for
    // the timeout (not, after the response timeout, a 504 blaming the upstream, whose
    // connection was held all along).
    let started = Instant::now();
    let mut stalled = within("connect", TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    stalled
        .write_all(b"POST /count HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nab")
        .await
        .unwrap();
    let got = read_to_close(&mut stalled).await;
    let reply = Reply::parse(&got);
    assert_eq!(reply.status, 408, "{got}");
    assert!(reply.body.contains("request body stalled"), "{got}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "answered after {:?}, before the timeout",
        started.elapsed()
    );

    // Everyone else is still served.
    still_serving(&proxy.url("/")).await;
}

/// The raw upstream for the smuggling cases: answers every complete request with its path.
async fn recording_upstream() -> RawUpstream {
    RawUpstream::start(|seen| Answer::KeepAlive(ok("text/plain", &format!("saw {}", seen.path()))))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_are_refused_or_reframed_never_smuggled() {
    let upstream = recording_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(dir.path(), &[&upstream.url()]).await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";

    // Content-Length and Transfer-Encoding: chunked wins, Content-Length is dropped, and the
    // connection closes after the answer, so the bytes after the last chunk are never a request.
    for (name, framing) in [
        ("cl-te", "Content-Length: 6\r\nTransfer-Encoding: chunked"),
        ("te-cl", "Transfer-Encoding: chunked\r\nContent-Length: 6"),
    ] {
        let text = until_closed(
            proxy.addr,
            format!(
                "POST /{name} HTTP/1.1\r\nHost: localhost\r\n{framing}\r\n\r\n\
                 5\r\nhello\r\n0\r\n\r\n{smuggled}"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{name}: {text}");
        assert_eq!(Reply::parse(&text).status, 200, "{name}: {text}");
        let seen = upstream.wait_for(&format!("/{name}")).await;
        assert_eq!(seen.body, b"hello", "{name}");
        let framings =
            seen.headers("content-length").len() + seen.headers("transfer-encoding").len();
        assert_eq!(framings, 1, "{name} forwarded as:\n{}", seen.head);
    }

    // A GET's body, framed by chunks, arrives whole (the client library dropped it: a body
    // hidden from the upstream is a body the proxy and the upstream disagree on).
    let text = until_closed(
        proxy.addr,
        b"GET /get-chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(Reply::parse(&text).status, 200, "get-chunked: {text}");
    let seen = upstream.wait_for("/get-chunked").await;
    assert_eq!(
        seen.body, b"hello",
        "get-chunked forwarded as:\n{}",
        seen.head
    );

    // A transfer coding besides chunked: not implemented (it would reach the upstream as plain
    // bytes, its name dropped with the hop-by-hop fields).
    for (name, coding) in [
        ("te-gzip", "gzip, chunked"),
        ("te-identity", "identity, chunked"),
        // Hyper takes one layer of chunks off: the other would reach the upstream as content.
        ("te-twice", "chunked, chunked"),
    ] {
        let text = until_closed(
            proxy.addr,
            format!(
                "POST /{name} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: {coding}\r\n\
                 \r\n5\r\nhello\r\n0\r\n\r\n{smuggled}"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{name}: {text}");
        assert_eq!(Reply::parse(&text).status, 501, "{name}: {text}");
    }

    // Refused outright: nothing reaches the upstream.
    let refused = [
        (
            "duplicate-cl",
            "POST /duplicate-cl HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\
             Content-Length: 6\r\n\r\nhello!",
        ),
        (
            "cl-list",
            "POST /cl-list HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5, 6\r\n\r\nhello!",
        ),
        (
            "cl-negative",
            "POST /cl-negative HTTP/1.1\r\nHost: localhost\r\nContent-Length: -5\r\n\r\nhello",
        ),
        (
            "te-not-last",
            "POST /te-not-last HTTP/1.1\r\nHost: localhost\r\n\
             Transfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "te-unknown",
            "POST /te-unknown HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "te-space-before-colon",
            "POST /te-space-before-colon HTTP/1.1\r\nHost: localhost\r\n\
             Transfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "te-http10",
            "POST /te-http10 HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n",
        ),
    ];
    for (name, request) in refused {
        let text = until_closed(proxy.addr, format!("{request}{smuggled}").as_bytes()).await;
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{name}: {text}");
        assert_eq!(Reply::parse(&text).status, 400, "{name}: {text}");
    }

    // A malformed chunked body: the head may be forwarded before the body is read (bodies are
    // streamed), but the upstream never sees a complete request, and the browser gets a 400.
    let bad_bodies = [
        ("chunk-size-not-hex", "zz\r\nhello\r\n0\r\n\r\n"),
        (
            "chunk-size-overflow",
            "fffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        ("chunk-bare-lf", "5\nhello\n0\n\n"),
        ("chunk-too-long", "2\r\nhello\r\n0\r\n\r\n"),
    ];
    for (name, body) in bad_bodies {
        let text = until_closed(
            proxy.addr,
            format!(
                "POST /{name} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
                 {body}{smuggled}"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{name}: {text}");
        assert_eq!(Reply::parse(&text).status, 400, "{name}: {text}");
    }

    // A request after all of them is the barrier: anything forwarded earlier has arrived.
    still_serving(&proxy.url("/after")).await;
    for seen in upstream.seen() {
        let path = seen.path().trim_start_matches('/');
        assert_ne!(path, "smuggled", "a smuggled request reached the upstream");
        if bad_bodies.iter().any(|(name, _)| *name == path) {
            assert!(
                !seen.complete,
                "{path}: the upstream got a complete request from a malformed body: {seen:?}"
            );
        } else {
            assert!(
                ["cl-te", "te-cl", "get-chunked", "after"].contains(&path),
                "{path} reached the upstream"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_malformed_host_or_origin_never_crash() {
    let upstream = recording_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(dir.path(), &[&upstream.url()]).await;

    // Garbage on the socket: 400 and closed.
    let garbage: [&[u8]; 4] = [
        b"\x00\x01\x02\x03garbage\xff\xfe\r\n\r\n",
        b"HELLO\r\n\r\n",
        b"GET\r\n\r\n",
        // A TLS ClientHello: someone opened https://localhost:PORT.
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\x00\x00\x00\x00\x00\x00\x00\r\n\r\n",
    ];
    for bytes in garbage {
        let text = until_closed(proxy.addr, bytes).await;
        assert_eq!(Reply::parse(&text).status, 400, "{bytes:?}: {text}");
    }

    // Malformed Host and Origin values, on every kind of endpoint: each gets an answer (a
    // panicking handler would drop the connection without one), none of them a 5xx.
    let hosts: [&[u8]; 14] = [
        b"",
        b" ",
        b"[::1",
        b"[::1]x",
        b"a:b:c",
        b"localhost:99999",
        b"localhost:",
        b":80",
        b"localhost:abc",
        b"\xff\xfe\xfd",
        b"local\x01host",
        b"user@localhost",
        b"localhost/../etc",
        b"..",
    ];
    let origins: [&[u8]; 7] = [
        b"null",
        b"http://[",
        b"http://",
        b"\xff",
        b"http://localhost:99999999999999999999",
        b"file://",
        b"http://localhost\\@evil",
    ];
    let targets = [
        "GET / HTTP/1.1",
        "GET /changes HTTP/1.1",
        "GET /__hmr/status HTTP/1.1",
        "POST /__hmr/reload HTTP/1.1",
    ];
    let mut requests: Vec<Vec<u8>> = Vec::new();
    for target in targets {
        for host in hosts {
            let mut request = format!("{target}\r\nHost: ").into_bytes();
            request.extend_from_slice(host);
            request.extend_from_slice(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            requests.push(request);
        }
        for origin in origins {
            let mut request =
                format!("{target}\r\nHost: localhost\r\nContent-Length: 0\r\nOrigin: ")
                    .into_bytes();
            request.extend_from_slice(origin);
            request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
            requests.push(request);
        }
        // No Host, two Hosts.
        requests.push(format!("{target}\r\nConnection: close\r\n\r\n").into_bytes());
        requests.push(
            format!(
                "{target}\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
        );
    }
    for request in &requests {
        let mut stream = within("connect", TcpStream::connect(proxy.addr))
            .await
            .unwrap();
        stream.write_all(request).await.unwrap();
        // `/changes` streams: its head is enough.
        let text = support::read_until(&mut stream, Some("\r\n\r\n")).await;
        let shown = String::from_utf8_lossy(request);
        assert!(
            text.starts_with("HTTP/1.1 "),
            "no answer to {shown:?}: {text:?}"
        );
        let status = Reply::parse(&text).status;
        assert!(status < 500, "{shown:?} got {status}");
    }
    still_serving(&proxy.url("/after")).await;
}

// ---------------------------------------------------------------------------------------------
// Upstream faults.
// ---------------------------------------------------------------------------------------------

/// What the scripted upstream does for each fault, by path; the mid-body deaths wait for
/// `gate`.
fn faulty(gate: Arc<Notify>) -> impl Fn(&Seen) -> Answer {
    move |seen| faulty_answer(seen, &gate)
}

fn faulty_answer(seen: &Seen, gate: &Arc<Notify>) -> Answer {
    match seen.path() {
        // A wrong Content-Length: 10 of 100 promised bytes, then FIN.
        "/wrong-length" => Answer::CloseWhen(
            head_then(
                "Content-Type: application/octet-stream\r\nContent-Length: 100",
                "0123456789",
            ),
            gate.clone(),
        ),
        // Closed in the middle of a chunked body.
        "/mid-chunk-close" => Answer::CloseWhen(
            head_then(
                "Content-Type: text/plain\r\nTransfer-Encoding: chunked",
                "a\r\n0123456789\r\n5\r\n01",
            ),
            gate.clone(),
        ),
        // The same, at once: the head, ten bytes and the end arrive together.
        "/dies-at-once" => Answer::Close(head_then(
            "Content-Type: application/octet-stream\r\nContent-Length: 100",
            "0123456789",
        )),
        "/garbage" => Answer::Close(b"this is not http\r\n\r\n".to_vec()),
        // An answer hyper will not read: more than 100 header fields.
        "/too-many-headers" => Answer::KeepAlive(
            [
                b"HTTP/1.1 200 OK\r\n".to_vec(),
                (0..1200)
                    .map(|i| format!("X-Field-{i}: {i}\r\n"))
                    .collect::<String>()
                    .into_bytes(),
                b"Content-Length: 2\r\n\r\nok".to_vec(),
            ]
            .concat(),
        ),
        "/no-status-line" => Answer::Close(b"Content-Type: text/plain\r\n\r\nhello".to_vec()),
        // Longer than sent, the connection left open: the proxy must not wait forever for the rest
        // once the browser is gone, and must not serve anything else on this connection.
        "/hang-after-headers" => Answer::Hang(head_then(
            "Content-Type: application/octet-stream\r\nContent-Length: 1000",
            "first bytes",
        )),
        "/reset-before-answer" => Answer::Reset(Vec::new()),
        "/reset-mid-body" => Answer::ResetWhen(
            head_then(
                "Content-Type: application/octet-stream\r\nContent-Length: 100",
                "0123456789",
            ),
            gate.clone(),
        ),
        // A Content-Length shorter than what follows: the rest is a forged second response,
        // which must never reach another request.
        "/short-length" => Answer::KeepAlive(
            [
                head_then("Content-Type: text/plain\r\nContent-Length: 5", "hello"),
                ok("text/plain", "FORGED"),
            ]
            .concat(),
        ),
        // A coding besides chunked: the bytes are gzip, and only this header says so.
        "/te-gzip" => Answer::Close(head_then(
            "Content-Type: application/json\r\nTransfer-Encoding: gzip, chunked",
            "5\r\nhello\r\n0\r\n\r\n",
        )),
        path => Answer::KeepAlive(ok("text/plain", &format!("saw {path}"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_give_clean_errors_and_everyone_else_is_served() {
    let gate = Arc::new(Notify::new());
    let upstream = RawUpstream::start(faulty(gate.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start_binary(&[&upstream.url()], dir.path()).await;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");

    // The body breaks after the head went out: visibly truncated, connection closed.
    for path in ["/wrong-length", "/mid-chunk-close", "/reset-mid-body"] {
        let text = die_after(proxy.addr, &get(path), "0123456789", &gate).await;
        broken_off(&text, path, false);
        still_serving(&proxy.url("/ok")).await;
    }
    // At once, too: what arrived before the upstream died still reaches the browser (it is let
    // out before the error ends the connection).
    let text = until_closed(proxy.addr, get("/dies-at-once").as_bytes()).await;
    broken_off(&text, "/dies-at-once", false);
    assert!(text.ends_with("0123456789"), "{text:?}");
    still_serving(&proxy.url("/ok")).await;

    // Extra bytes after a complete response are the upstream's bug, never another answer.
    let (status, _, body) = support::get(&proxy.url("/short-length"), &[]).await;
    assert_eq!((status.as_u16(), body.as_ref()), (200, b"hello".as_ref()));
    for _ in 0..5 {
        let (status, _, body) = support::get(&proxy.url("/ok"), &[]).await;
        assert_eq!((status.as_u16(), body.as_ref()), (200, b"saw /ok".as_ref()));
    }

    // Nothing usable before the body: a clean 502 (after one retry, for a GET whose connection
    // broke).
    for path in ["/garbage", "/no-status-line", "/reset-before-answer"] {
        let text = until_closed(
            proxy.addr,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(Reply::parse(&text).status, 502, "{path}: {text}");
        still_serving(&proxy.url("/ok")).await;
    }

    // A transfer coding the browser would never hear of (its name goes with the hop): a 502.
    let (status, _, body) = support::get(&proxy.url("/te-gzip"), &[]).await;
    assert_eq!(status.as_u16(), 502);
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("unknown transfer coding `gzip`"), "{body}");
    still_serving(&proxy.url("/ok")).await;

    // An answer that arrived but cannot be read, even by a connection that reads 1,000 fields: a
    // 502 that says so, asked twice (the second time on a connection widened by the first).
    let (status, _, body) = support::get(&proxy.url("/too-many-headers"), &[]).await;
    assert_eq!(status.as_u16(), 502);
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("larger than hmr-proxy reads"), "{body}");
    still_serving(&proxy.url("/ok")).await;
    let asked = upstream.paths();
    assert_eq!(
        asked.iter().filter(|p| *p == "/too-many-headers").count(),
        2,
        "{asked:?}"
    );

    // Headers, then silence: the browser has the head; others are served meanwhile; when the
    // browser gives up, the proxy lets go of the upstream connection too.
    let mut hanging = within("connect", TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    hanging
        .write_all(get("/hang-after-headers").as_bytes())
        .await
        .unwrap();
    let text = support::read_until(&mut hanging, Some("first bytes")).await;
    let reply = Reply::parse(&text);
    assert_eq!(reply.status, 200, "{text}");
    assert_eq!(reply.header("content-length"), Some("1000"));
    for _ in 0..3 {
        still_serving(&proxy.url("/ok")).await;
    }
    drop(hanging);
    upstream.wait_for_hang_ups(1).await;
    still_serving(&proxy.url("/ok")).await;

    // One log line per fault (the hang is the browser's to end, not a fault the proxy sees).
    for path in [
        "/wrong-length",
        "/mid-chunk-close",
        "/dies-at-once",
        "/reset-mid-body",
        "/garbage",
        "/no-status-line",
        "/reset-before-answer",
    ] {
        proxy.wait_for_log(path);
    }
    let log = proxy.log();
    for path in [
        "/wrong-length",
        "/mid-chunk-close",
        "/dies-at-once",
        "/reset-mid-body",
        "/garbage",
        "/no-status-line",
        "/reset-before-answer",
    ] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("{path}:")) || l.ends_with(path))
            .collect();
        assert_eq!(lines.len(), 1, "{path}: log lines {lines:?} in\n{log}");
    }
}

/// A dev server that closes a kept-alive connection as the next request arrives on it (its idle
/// timeout running out just then): a GET goes out again on a new connection and the browser never
/// knows. A POST the upstream drops is not sent again: the upstream may have acted on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_on_a_connection_the_upstream_drops_is_retried_only_when_idempotent() {
    let upstream = RawUpstream::start(|seen: &Seen| {
        if seen.earlier > 0 || seen.path() == "/form" {
            Answer::Close(Vec::new())
        } else {
            Answer::KeepAlive(ok("text/plain", "fresh"))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start_binary(&[&upstream.url()], dir.path()).await;
    for _ in 0..3 {
        let (status, _, body) = support::get(&proxy.url("/page"), &[]).await;
        assert_eq!((status.as_u16(), body.as_ref()), (200, b"fresh".as_ref()));
    }
    // The first on one connection; each later one dropped on the connection before and
    // answered on a new one.
    let pages = upstream.paths().iter().filter(|p| *p == "/page").count();
    assert_eq!(pages, 5, "{:?}", upstream.paths());

    // A POST the upstream drops unanswered: the browser hears so, and the upstream saw it once.
    let text = until_closed(
        proxy.addr,
        b"POST /form HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 4\r\n\r\nname",
    )
    .await;
    assert_eq!(Reply::parse(&text).status, 502, "{text}");
    let asked = upstream.paths();
    assert_eq!(
        asked.iter().filter(|p| *p == "/form").count(),
        1,
        "{asked:?}"
    );
}

/// An answer with more header fields than hyper reads by default (100: a debug toolbar's, a
/// page setting 120 cookies, which Chromium takes) is read whole: it was a 502. The first such
/// answer widens the upstream's new connections, and the request is sent again on one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_more_than_a_hundred_header_fields_is_read() {
    let cookies = (0..120)
        .map(|i| format!("Set-Cookie: c{i}=v{i}; Path=/"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let answer = head_then(
        &format!("Content-Type: text/plain\r\nContent-Length: 4\r\n{cookies}"),
        "many",
    );
    let upstream = RawUpstream::start(move |_: &Seen| Answer::KeepAlive(answer.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start_binary(&[&upstream.url()], dir.path()).await;
    // Read raw: hyper's client (the tests' own) reads 100 fields too.
    for _ in 0..2 {
        let text = until_closed(
            proxy.addr,
            b"GET /many HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(Reply::parse(&text).status, 200, "{text}");
        assert_eq!(
            text.to_ascii_lowercase().matches("set-cookie: c").count(),
            120
        );
        assert!(text.ends_with("\r\n\r\nmany"), "{text}");
    }
}

/// A compressed page is answered once its first bytes decode, not once its head is complete:
/// a head that streams slowly (a server that flushes early, then renders) must not hold the
/// response headers back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_page_is_answered_when_its_first_bytes_decode() {
    use flate2::write::GzEncoder;
    use std::io::Write as _;
    let mut gzip = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(b"<html><head><title>slow</title>").unwrap();
    gzip.flush().unwrap(); // a sync flush: these bytes decode on their own
    let mut answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n\
                       Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    let part = gzip.get_ref().clone();
    answer.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
    answer.extend_from_slice(&part);
    answer.extend_from_slice(b"\r\n");
    let gate = Arc::new(Notify::new());
    let held = gate.clone();
    let upstream =
        RawUpstream::start(move |_| Answer::CloseWhen(answer.clone(), held.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(dir.path(), &[&upstream.url()]).await;
    let mut stream = within("connect", TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    stream
        .write_all(
            b"GET /slow HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\n\
              Sec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n\r\n",
        )
        .await
        .unwrap();
    // The head is incomplete and the upstream silent until the gate opens.
    let head = support::read_until(&mut stream, Some("\r\n\r\n")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    gate.notify_one();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_into_a_page_whose_upstream_dies_ends_truncated() {
    let page_start = "<!doctype html><html><head><title>t</title></head><body><p>first";
    let head_only = "<!doctype html><html><head><title>t</title>";
    let gate = Arc::new(Notify::new());
    let script_gate = gate.clone();
    let upstream = RawUpstream::start(move |seen| match seen.path() {
        // Dies after the tag's place went by.
        "/after-head" => Answer::CloseWhen(
            head_then(
                "Content-Type: text/html; charset=utf-8\r\nContent-Length: 5000",
                page_start,
            ),
            script_gate.clone(),
        ),
        // Dies while the head is still held back waiting for `</head>`.
        "/in-head" => Answer::CloseWhen(
            head_then(
                "Content-Type: text/html\r\nTransfer-Encoding: chunked",
                &format!("{:x}\r\n{head_only}\r\n", head_only.len()),
            ),
            script_gate.clone(),
        ),
        "/reset" => Answer::ResetWhen(
            head_then(
                "Content-Type: text/html\r\nContent-Length: 5000",
                page_start,
            ),
            script_gate.clone(),
        ),
        "/at-once" => Answer::Close(head_then(
            "Content-Type: text/html\r\nContent-Length: 5000",
            page_start,
        )),
        path => Answer::KeepAlive(ok(
            "text/html",
            &format!("<!doctype html><head></head><p>saw {path}"),
        )),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(dir.path(), &[&upstream.url()]).await;

    // (path, what the upstream sent, what the browser has before the upstream dies)
    for (path, sent, first) in [
        ("/after-head", page_start, "first"),
        ("/in-head", head_only, "<!doctype html>"),
        ("/reset", page_start, "first"),
        ("/at-once", page_start, ""),
    ] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\n\
             Sec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n\r\n"
        );
        let text = if first.is_empty() {
            until_closed(proxy.addr, request.as_bytes()).await
        } else {
            die_after(proxy.addr, &request, first, &gate).await
        };
        let Some(reply) = broken_off(&text, path, first.is_empty()) else {
            continue;
        };
        assert!(reply.is_chunked(), "{path}: a rewritten page is chunked");
        assert_eq!(reply.header("content-length"), None);
        let (body, _) = reply.dechunk();
        let tags = body.matches(TAG).count();
        assert!(tags <= 1, "{path}: {tags} tags in {body:?}");
        let without = body.replacen(TAG, "", 1);
        assert!(
            sent.starts_with(&without),
            "{path}: the browser got bytes the upstream never sent: {body:?}"
        );
        if !first.is_empty() {
            // The tag goes in once its place went by; a page cut off in its head gets it at the
            // anchor with what was held back, so the tab reloads on the next save.
            assert_eq!(tags, 1, "{path}: {body:?}");
            assert!(
                body.contains("<title>t</title>"),
                "{path}: held bytes lost: {body:?}"
            );
        }
    }
    let (status, _, body) = support::get(
        &proxy.url("/fine"),
        &[("accept", "text/html"), ("sec-fetch-dest", "document")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!("<!doctype html><head>{TAG}</head><p>saw /fine").as_str()
    );
}

// ---------------------------------------------------------------------------------------------
// Clients that leave.
// ---------------------------------------------------------------------------------------------

/// The process's descriptor count once it holds still: a connection the proxy has just closed
/// may not have been dropped yet when the client sees the close.
async fn settled_fds(pid: u32) -> usize {
    within("the descriptor count to settle", async {
        let (mut last, mut same) = (open_fds(pid), 0);
        while same < 4 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = open_fds(pid);
            (last, same) = if now == last {
                (now, same + 1)
            } else {
                (now, 0)
            };
        }
        last
    })
    .await
}

/// Wait (bounded) until no stream client is counted and the process holds no more descriptors
/// than at `baseline`.
async fn back_to_baseline(pid: u32, baseline: usize, addr: SocketAddr, what: &str) {
    within(what, async {
        loop {
            let status = status_json(addr).await;
            if status["clients"] == 0 && open_fds(pid) <= baseline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leaving_mid_download_or_mid_stream_free_everything() {
    const STREAMS: usize = 20;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start_binary(&[&upstream.url()], dir.path()).await;
    let pid = proxy.pid();
    assert_eq!(status_json(proxy.addr).await["clients"], 0);
    // The probe's first look at the upstream finds the holder of its socket in `/proc`, with a
    // connection and two folders open; on a busy machine that lasts long enough to pass for
    // settled, and the count came out three high. Counted once the probe rests (no event says so).
    within("the probe to rest", async {
        while status_json(proxy.addr).await["upstream"]["probe_resting"] != true {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let baseline = settled_fds(pid).await;

    // Mid-download: a 1 GiB body, the client leaves after the first MiB.
    for _ in 0..3 {
        let mut download = within("connect", TcpStream::connect(proxy.addr))
            .await
            .unwrap();
        download
            .write_all(b"GET /bytes/1073741824 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        within("the first MiB", async {
            while got < 1024 * 1024 {
                let n = download.read(&mut buf).await.unwrap();
                assert!(n > 0, "the download ended early");
                got += n;
            }
        })
        .await;
        let during = open_fds(pid);
        assert!(
            during >= baseline + 2,
            "a download holds a client and an upstream socket: {during} fds, baseline {baseline}"
        );
        drop(download);
        back_to_baseline(
            pid,
            baseline,
            proxy.addr,
            "fds to return after a download was abandoned",
        )
        .await;
    }

    // Mid-stream: tabs on /changes that go away.
    let mut tabs = Vec::new();
    for _ in 0..STREAMS {
        let mut tab = within("connect", TcpStream::connect(proxy.addr))
            .await
            .unwrap();
        tab.write_all(
            b"GET /changes HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .unwrap();
        let text = support::read_until(&mut tab, Some("event: hello")).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        tabs.push(tab);
    }
    assert_eq!(status_json(proxy.addr).await["clients"], STREAMS);
    assert!(open_fds(pid) >= baseline + STREAMS);
    // Half leave politely, half vanish with a reset.
    for (i, tab) in tabs.into_iter().enumerate() {
        if i % 2 == 1 {
            #[allow(deprecated)]
            let _ = tab.set_linger(Some(Duration::ZERO));
        }
        drop(tab);
    }
    back_to_baseline(
        pid,
        baseline,
        proxy.addr,
        "fds and clients to return after the tabs left",
    )
    .await;
    still_serving(&proxy.url("/ok")).await;
    let log = proxy.log();
    assert!(
        !log.contains("WARN") && !log.contains("ERROR"),
        "a client leaving is not a fault to report:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// The fuzz targets' invariants, kept in CI; inputs the fuzzers (fuzz/, scripts/fuzz) find go here.
// ---------------------------------------------------------------------------------------------

/// `output` is `input` with the tag inserted at one place, or `input` itself (as in
/// `fuzz/fuzz_targets/inject.rs`).
fn is_input_plus_at_most_one_tag(input: &[u8], output: &[u8]) -> bool {
    let tag = TAG.as_bytes();
    if output == input {
        return true;
    }
    if output.len() != input.len() + tag.len() {
        return false;
    }
    let prefix = input.iter().zip(output).take_while(|(a, b)| a == b).count();
    let suffix = input
        .iter()
        .rev()
        .zip(output.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    (input.len().saturating_sub(suffix)..=prefix.min(input.len()))
        .any(|at| &output[at..at + tag.len()] == tag)
}

#[test]
fn the_fuzzed_injector_entry_point_holds_its_invariant_on_the_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/html");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let page = std::fs::read(&path).unwrap();
        if page
            .windows(10)
            .any(|w| w.eq_ignore_ascii_case(b"http-equiv"))
        {
            continue; // a meta CSP may be edited on purpose
        }
        let mut chunkings: Vec<Vec<usize>> = vec![vec![], vec![7], vec![4096, 1, 300]];
        if page.len() < 16 * 1024 {
            chunkings.push(vec![1]);
        }
        for charset in [
            None,
            Some("windows-1252"),
            Some("shift_jis"),
            Some("utf-16le"),
        ] {
            for sizes in &chunkings {
                let out = hmr_proxy::inject::rewrite_in_chunks(&page, sizes, charset);
                assert!(
                    is_input_plus_at_most_one_tag(&page, &out),
                    "{}: charset {charset:?}, chunks {sizes:?}:\n{}",
                    path.display(),
                    String::from_utf8_lossy(&out)
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "only {checked} fixture runs");
    // The invariant itself rejects what it must.
    let two_tags = format!("<head>{TAG}{TAG}</head>");
    assert!(!is_input_plus_at_most_one_tag(
        b"<head></head>",
        two_tags.as_bytes()
    ));
    assert!(!is_input_plus_at_most_one_tag(
        b"<head></head>",
        b"<head></HEAD>"
    ));
    let moved = format!("<head>{TAG}</head>");
    assert!(!is_input_plus_at_most_one_tag(
        b"<head>x</head>",
        moved.as_bytes()
    ));
    // Spot checks that the entry point really injects (an identity function would pass above).
    let out = hmr_proxy::inject::rewrite_in_chunks(b"<html><head></head></html>", &[1], None);
    assert_eq!(out, format!("<html><head>{TAG}</head></html>").into_bytes());
    let utf16 = hmr_proxy::inject::rewrite_in_chunks(b"<html><head></head>", &[3], Some("utf-16"));
    assert_eq!(
        utf16, b"<html><head></head>",
        "an unparsable charset passes through"
    );
}
