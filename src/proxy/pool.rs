//! Keep-alive connections to one upstream for requests without a body, driven by the task of the
//! browser connection that sends on them.
//!
//! Owns [`Pool`] (idle connections, checked for life when taken and closed after
//! [`POOL_IDLE_TIMEOUT`] unused) and [`UpstreamBody`], the response body that keeps its
//! connection going while the browser reads and gives it back once the body has ended. A request
//! that a reused connection hands back unsent goes out once more on a new one; one that went out
//! and got no answer is for `proxy::mod` to retry (or not), and it builds the requests and
//! classifies the failures. Requests with a body or an upgrade do not come here: they go through
//! hyper-util's pooled client, which runs each connection on a task of its own.
//!
//! Why not that client for everything: there, the browser connection's task hands each request to
//! the upstream connection's task and waits to be woken with the head, then again for each part
//! of the body. Here the one task writes the request, reads the response and passes it on. On the
//! benchmark's 2 KB page at 64 connections that took the bare hyper proxy (the floor) from about
//! 21 to 17 µs of CPU a request, and hmr-proxy from 28 to 26 µs (README, "What limits it").
//! Requests without a body are nearly all of a dev server's traffic (pages, scripts, styles,
//! images).

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};

use super::connector::{Connector, LargeBody, UpstreamIo};
use crate::body::{Body, BoxError};

/// Idle connections are closed after this long. Node's HTTP server closes idle keep-alive
/// connections after 5 s; keeping ours shorter means we never send a request on a socket the
/// upstream is just closing ("connection closed before message completed").
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an exchange failed, and whether it was while connecting.
#[derive(Debug)]
pub enum PoolError {
    Connect(BoxError),
    Exchange(BoxError),
}

/// How an exchange ended without a response.
enum Unanswered {
    /// hyper gave the request back: it never went out.
    Unsent(Box<Request<Body>>, BoxError),
    Failed(BoxError),
}

impl Unanswered {
    fn into_error(self) -> PoolError {
        match self {
            Unanswered::Unsent(_, err) | Unanswered::Failed(err) => PoolError::Exchange(err),
        }
    }
}

/// The upstream closed a connection before it answered (hyper then has no error to give).
#[derive(Debug, thiserror::Error)]
#[error("connection closed before the response")]
struct ClosedEarly;

/// One upstream's idle keep-alive connections.
pub struct Pool {
    connector: Connector,
    /// `http://host:port` (or `https://`), what the connector is asked for.
    origin: Uri,
    shared: Arc<Mutex<Shared>>,
    /// The upstream has answered with more header fields than hyper reads by default: new
    /// connections read up to [`WIDE_HEADERS`] (see [`Pool::send_on`]).
    wide: AtomicBool,
}

/// How many response header fields a connection reads once the upstream has sent more than
/// hyper's default 100 (a debug toolbar's, a page that sets a hundred cookies: Chromium takes
/// them all). Only then: a connection that reads more allocates its header list for every
/// response, where the default list lives on the stack (hyper counts 5 % of a request).
pub const WIDE_HEADERS: usize = 1000;

#[derive(Default)]
struct Shared {
    idle: Vec<Idle>,
    /// A task is closing connections as they pass the idle timeout.
    reaping: bool,
}

/// A mutex's value even if a thread panicked holding it: a waker is still a waker, and the idle
/// list is still a list.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One upstream connection: hyper's two halves, the socket's switch for prompt ACKs, and the
/// waker its exchanges are polled with.
struct Conn {
    send: SendRequest<Body>,
    /// Boxed: hyper's connection state is most of this struct's ~750 bytes, and every future
    /// of an exchange keeps its `Conn` argument beside the callee's copy of it
    /// (rust-lang/rust#62958), so each level of the request path grew by it.
    conn: Box<Connection<UpstreamIo, Body>>,
    large: LargeBody,
    quiet: Quiet,
}

/// The waker a connection and its response are polled with. hyper's halves wake each other as
/// they hand over the request, the head and each part of the body; here they are all polled by
/// the task that is already running, so those wakes would only make the runtime schedule the
/// task again (and, at one connection, wake the idle worker thread to look for work: two futex
/// calls a request, and 10–14 % fewer requests per second on the 2 KB and 100 KB pages). A wake
/// that comes while the task polls is noted and answered by polling again at once; one that
/// comes from outside (the socket became readable) goes to the task's own waker.
struct Quiet {
    state: Arc<QuietState>,
    waker: Waker,
}

struct QuietState {
    /// The waker of the task that polls the connection now (or last did).
    task: Mutex<Waker>,
    /// [`IDLE`], [`POLLING`] or [`WOKEN`]: one atomic, so that a wake from another thread is
    /// either seen by the poller before it returns or passed on to the task, never neither.
    state: AtomicU8,
}

/// How many times in a row a woken poll is answered by polling again. hyper's wakes at a
/// hand-over take one or two; a wake that means "later" (hyper yielding after a long run of
/// work, tokio's budget for the task spent) would otherwise be answered by polling for ever.
const QUIET_REPOLLS: usize = 8;

const IDLE: u8 = 0;
const POLLING: u8 = 1;
/// Woken while polling.
const WOKEN: u8 = 2;

impl Wake for QuietState {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let noted =
            self.state
                .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire);
        if noted == Err(IDLE) {
            lock(&self.task).wake_by_ref();
        }
    }
}

impl Quiet {
    fn new() -> Self {
        let state = Arc::new(QuietState {
            task: Mutex::new(Waker::noop().clone()),
            state: AtomicU8::new(IDLE),
        });
        Quiet {
            waker: Waker::from(state.clone()),
            state,
        }
    }

    /// Poll `step` with this waker on behalf of the task `cx` belongs to, again for as long as it
    /// is pending and was woken meanwhile, up to [`QUIET_REPOLLS`] times; past that the wake goes
    /// to the task, which the runtime then polls later. A wake during a poll that ends ready is
    /// dropped: the caller polls again for whatever comes next.
    fn poll<T>(
        &self,
        cx: &Context<'_>,
        mut step: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let mut task = lock(&self.state.task);
        if !task.will_wake(cx.waker()) {
            task.clone_from(cx.waker());
        }
        drop(task);
        let mut quiet = Context::from_waker(&self.waker);
        for _ in 0..QUIET_REPOLLS {
            self.state.state.store(POLLING, Ordering::Release);
            let poll = step(&mut quiet);
            // A wake that comes after this reaches the task itself.
            let woken = self.state.state.swap(IDLE, Ordering::AcqRel) == WOKEN;
            if poll.is_ready() || !woken {
                return poll;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Let go of the task's waker (a connection going idle must not keep its task alive).
    fn forget(&self) {
        *lock(&self.state.task) = Waker::noop().clone();
    }
}

impl Conn {
    /// Whether the upstream has not closed it: polling lets hyper read an end of stream that
    /// arrived while nobody was looking (or finish the exchange it is in).
    fn open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        // Outside the task's budget: with it spent, the socket would not be read at all, and a
        // closed connection would pass for open.
        let look = pin!(tokio::task::unconstrained(&mut self.conn));
        look.poll(&mut cx).is_pending() && !self.send.is_closed()
    }
}

/// A connection between exchanges.
struct Idle {
    conn: Conn,
    since: Instant,
}

impl Pool {
    pub fn new(connector: Connector, origin: Uri) -> Self {
        Pool {
            connector,
            origin,
            shared: Arc::default(),
            wide: AtomicBool::new(false),
        }
    }

    /// Send a request without a body (its URI need only carry the path and query) and wait for
    /// the response head. The body that comes with it drives the connection.
    pub async fn send(
        &self,
        mut request: Request<Body>,
    ) -> Result<Response<UpstreamBody>, PoolError> {
        let target = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(target);
        let (conn, reused) = match self.checkout() {
            Some(conn) => (conn, true),
            // Boxed: connecting (DNS, TCP, TLS) is most of this future's size and rare on a
            // warm pool (see `Proxy::send`).
            None => (Box::pin(self.connect()).await?, false),
        };
        self.send_on(conn, reused, request).await
    }

    /// [`Pool::send`] once it holds a connection (`reused`: one taken from the idle ones).
    async fn send_on(
        &self,
        conn: Conn,
        reused: bool,
        request: Request<Body>,
    ) -> Result<Response<UpstreamBody>, PoolError> {
        // Awaited before the `match`, not in its scrutinee: a scrutinee's temporaries live to the
        // end of the match, so this future's state was kept beside the second exchange's, and
        // the request path's future (copied whole for every request) was 2 KB larger.
        let first = self.exchange(conn, request).await;
        if let Err(Unanswered::Failed(err)) = &first
            && super::unavailable::is_too_large(err.as_ref())
            && !self.wide.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "upstream {} answered with a response head larger than hyper reads by default \
                 (over 100 header fields); its connections read up to {WIDE_HEADERS} fields from \
                 now on",
                self.origin
            );
        }
        match first {
            // A reused connection that closed before hyper wrote the request hands it back: it
            // goes out once more on a new connection, as hyper-util's client does.
            Err(Unanswered::Unsent(request, _)) if reused => {
                let conn = Box::pin(self.connect()).await?;
                self.exchange(conn, *request)
                    .await
                    .map_err(Unanswered::into_error)
            }
            result => result.map_err(Unanswered::into_error),
        }
    }

    /// One request on one connection, up to the response head.
    async fn exchange(
        &self,
        conn: Conn,
        request: Request<Body>,
    ) -> Result<Response<UpstreamBody>, Unanswered> {
        let Conn {
            mut send,
            conn,
            large,
            quiet,
        } = conn;
        // Dropped as soon as it ends: hyper then hands back a request it had not written yet.
        let mut conn = Some(conn);
        let mut response = pin!(send.try_send_request(request));
        let head = std::future::poll_fn(|cx| {
            quiet.poll(cx, |cx| {
                // The connection first: it writes the request and reads the answer into the
                // response future.
                let mut ended = None;
                if let Some(open) = conn.as_mut()
                    && let Poll::Ready(result) = Pin::new(open).poll(cx)
                {
                    ended = Some(result);
                    conn = None;
                }
                // A response that arrived counts even if the connection failed right after it
                // (on bytes past its end, say): those are the upstream's bug, not this answer's.
                match (response.as_mut().poll(cx), ended) {
                    (Poll::Ready(result), _) => {
                        Poll::Ready(result.map_err(|mut err| match err.take_message() {
                            Some(request) => {
                                Unanswered::Unsent(Box::new(request), err.into_error().into())
                            }
                            None => Unanswered::Failed(err.into_error().into()),
                        }))
                    }
                    (Poll::Pending, Some(Err(err))) => {
                        Poll::Ready(Err(Unanswered::Failed(err.into())))
                    }
                    (Poll::Pending, Some(Ok(()))) => {
                        Poll::Ready(Err(Unanswered::Failed(ClosedEarly.into())))
                    }
                    (Poll::Pending, None) => Poll::Pending,
                }
            })
        })
        .await?;
        let (mut parts, body) = head.into_parts();
        parts.extensions.insert(large.clone());
        let driving = conn.map(|conn| Driving {
            conn: Conn {
                send,
                conn,
                large,
                quiet,
            },
            pool: self.shared.clone(),
        });
        Ok(Response::from_parts(
            parts,
            UpstreamBody {
                body,
                driving,
                ended: false,
            },
        ))
    }

    /// The most recently used idle connection that can still take a request; the ones that
    /// cannot are closed.
    fn checkout(&self) -> Option<Conn> {
        loop {
            // Taken out first: looking at it polls the socket, which is no work for under the lock.
            let Idle { mut conn, since } = lock(&self.shared).idle.pop()?;
            if since.elapsed() < POOL_IDLE_TIMEOUT && conn.open() && conn.send.is_ready() {
                return Some(conn);
            }
        }
    }

    async fn connect(&self) -> Result<Conn, PoolError> {
        let mut connector = self.connector.clone();
        let io = tower::Service::call(&mut connector, self.origin.clone())
            .await
            .map_err(PoolError::Connect)?;
        let large = io.large();
        let mut builder = http1::Builder::new();
        if self.wide.load(Ordering::Relaxed) {
            builder.max_headers(WIDE_HEADERS);
        }
        let (send, conn) = builder
            .handshake(io)
            .await
            .map_err(|err| PoolError::Exchange(err.into()))?;
        Ok(Conn {
            send,
            conn: Box::new(conn),
            large,
            quiet: Quiet::new(),
        })
    }
}

/// Put a connection whose exchange has ended back with the idle ones, and see that idle ones are
/// closed in time.
fn check_in(pool: &Arc<Mutex<Shared>>, mut conn: Conn) {
    // Outside a runtime there is no task to close it later: it is closed now.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if !conn.open() {
        return;
    }
    conn.quiet.forget();
    let mut shared = lock(pool);
    shared.idle.push(Idle {
        conn,
        since: Instant::now(),
    });
    if !shared.reaping {
        shared.reaping = true;
        runtime.spawn(reap(Arc::downgrade(pool)));
    }
}

/// Close idle connections as they pass the timeout; ends when none is left.
async fn reap(pool: std::sync::Weak<Mutex<Shared>>) {
    loop {
        tokio::time::sleep(POOL_IDLE_TIMEOUT / 2).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let mut shared = lock(&pool);
        shared
            .idle
            .retain(|idle| idle.since.elapsed() < POOL_IDLE_TIMEOUT);
        if shared.idle.is_empty() {
            shared.reaping = false;
            return;
        }
    }
}

/// A response's connection while its body is read.
struct Driving {
    conn: Conn,
    pool: Arc<Mutex<Shared>>,
}

/// A response body from the upstream. One that came through [`Pool`] also drives its
/// connection, and hands it back to the pool when the body has ended.
pub struct UpstreamBody {
    body: Incoming,
    driving: Option<Driving>,
    /// The body has said it ended. A chunked body says so only when polled past its last frame:
    /// `is_end_stream` stays false for it.
    ended: bool,
}

impl UpstreamBody {
    /// A body whose connection runs on a task of its own (hyper-util's client).
    pub fn on_its_own(body: Incoming) -> Self {
        UpstreamBody {
            body,
            driving: None,
            ended: false,
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let Some(driving) = this.driving.as_mut() else {
            return Pin::new(&mut this.body).poll_frame(cx);
        };
        let Conn { conn, quiet, .. } = &mut driving.conn;
        let body = &mut this.body;
        let mut closed = false;
        let frame = quiet.poll(cx, |cx| {
            if let Poll::Ready(frame) = Pin::new(&mut *body).poll_frame(cx) {
                return Poll::Ready(frame);
            }
            // The body asked for more: the connection reads it (or has closed, and the body
            // says how it ends).
            if !closed && Pin::new(&mut *conn).poll(cx).is_ready() {
                closed = true;
            }
            Pin::new(&mut *body).poll_frame(cx)
        });
        if closed {
            this.driving = None;
        }
        if let Poll::Ready(None) = frame {
            this.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // hyper drops a body once it says it has ended, without polling it again: this is where a
        // connection whose exchange is complete goes back. One dropped early (the browser left)
        // is closed with it, since the rest of its response would come first.
        if let Some(driving) = self.driving.take()
            && (self.ended || self.body.is_end_stream())
        {
            check_in(&driving.pool, driving.conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    use http_body_util::BodyExt as _;
    use hyper_util::client::legacy::connect::HttpConnector;

    use super::*;

    /// An upstream that answers each request with `len` bytes of `x` (a `HEAD` with the head
    /// alone), by `Content-Length` or, `chunked`, in two chunks, and keeps each connection open
    /// until the other side closes it (or [`Upstream::close_connections`]). Counts connections
    /// and reports each one's end.
    struct Upstream {
        origin: Uri,
        accepted: Arc<AtomicUsize>,
        closed: mpsc::Receiver<()>,
        sockets: Arc<Mutex<Vec<std::net::TcpStream>>>,
    }

    impl Upstream {
        /// Ends every connection from the upstream's side, as a dev server does on restart.
        /// Returns the other ends' addresses.
        fn close_connections(&self) -> Vec<std::net::SocketAddr> {
            let mut ends = Vec::new();
            for socket in lock(&self.sockets).drain(..) {
                ends.extend(socket.peer_addr());
                let _ = socket.shutdown(std::net::Shutdown::Both);
            }
            ends
        }
    }

    /// Whether the kernel has taken in the end of stream on the IPv4 connection whose local
    /// address is `end`: it is in CLOSE_WAIT. (On loopback a FIN usually arrives before
    /// `shutdown` returns, but a busy machine may leave it to ksoftirqd.)
    fn end_of_stream_arrived(end: std::net::SocketAddr) -> bool {
        let std::net::SocketAddr::V4(end) = end else {
            return false;
        };
        let local = format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(end.ip().octets()),
            end.port()
        );
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        table.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"08")
        })
    }

    fn upstream(len: usize) -> Upstream {
        upstream_framed(len, false)
    }

    fn upstream_framed(len: usize, chunked: bool) -> Upstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let (closed_tx, closed) = mpsc::channel();
        let counter = accepted.clone();
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let open = sockets.clone();
        std::thread::spawn(move || {
            for socket in listener.incoming() {
                let Ok(mut socket) = socket else { return };
                counter.fetch_add(1, Ordering::SeqCst);
                if let Ok(handle) = socket.try_clone() {
                    lock(&open).push(handle);
                }
                let closed_tx = closed_tx.clone();
                std::thread::spawn(move || {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = socket.read(&mut buf) {
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = pending.starts_with(b"HEAD ");
                            pending.drain(..end + 4);
                            let response = if chunked {
                                let half = "x".repeat(len / 2);
                                let rest = "x".repeat(len - len / 2);
                                format!(
                                    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                                     {:x}\r\n{half}\r\n{:x}\r\n{rest}\r\n0\r\n\r\n",
                                    half.len(),
                                    rest.len()
                                )
                                .into_bytes()
                            } else {
                                let mut response =
                                    format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n")
                                        .into_bytes();
                                if !head {
                                    response.resize(response.len() + len, b'x');
                                }
                                response
                            };
                            if socket.write_all(&response).is_err() {
                                break;
                            }
                        }
                    }
                    let _ = closed_tx.send(());
                });
            }
        });
        let origin = format!("http://{addr}").parse().expect("origin");
        Upstream {
            origin,
            accepted,
            closed,
            sockets,
        }
    }

    fn pool(upstream: &Upstream) -> Pool {
        Pool::new(
            Connector::new(
                HttpConnector::new(),
                crate::proxy::tls::Tls::new(false, Duration::from_secs(3)),
            ),
            upstream.origin.clone(),
        )
    }

    fn request(method: http::Method) -> Request<Body> {
        let mut request = Request::new(crate::body::empty());
        *request.method_mut() = method;
        *request.uri_mut() = Uri::from_static("/page");
        request.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_static("upstream"),
        );
        request
    }

    /// One GET through `pool`, its body read to the end: the body's length.
    async fn get(pool: &Pool) -> usize {
        let response = pool
            .send(request(http::Method::GET))
            .await
            .expect("response");
        body_len(response).await
    }

    async fn body_len(response: Response<UpstreamBody>) -> usize {
        let body = response.into_body().collect().await.expect("body");
        body.to_bytes().len()
    }

    // Two worker threads, as the proxy runs: a wake can come from the other one while a task
    // polls.

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_exchange_leaves_its_connection_for_the_next() {
        let upstream = upstream(2048);
        let pool = pool(&upstream);
        for method in [http::Method::GET, http::Method::HEAD, http::Method::GET] {
            let head = method == http::Method::HEAD;
            let response = pool.send(request(method)).await.expect("response");
            assert_eq!(body_len(response).await, if head { 0 } else { 2048 });
        }
        assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1, "connections");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chunked_response_read_to_its_end_leaves_its_connection_too() {
        // A chunked body says it has ended only when polled past its last chunk.
        let upstream = upstream_framed(3000, true);
        let pool = pool(&upstream);
        for _ in 0..3 {
            let response = pool
                .send(request(http::Method::GET))
                .await
                .expect("response");
            assert_eq!(body_len(response).await, 3000);
        }
        assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1, "connections");
    }

    /// A connection in the middle of a response is closed with its body, and never serves the
    /// next request.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_whose_body_was_left_unread_is_not_used_again() {
        // Larger than a socket takes at once: the rest is still on its way when the body goes.
        let upstream = upstream(8 << 20);
        let pool = pool(&upstream);
        let mut body = pool
            .send(request(http::Method::GET))
            .await
            .expect("response")
            .into_body();
        let first = body.frame().await.expect("a frame").expect("data");
        assert!(first.is_data());
        drop(body);
        // Closed with its body, not kept: hyper would refuse it a request while the rest of the
        // response is unread, but it would hold an upstream connection until the reaper came.
        assert!(lock(&pool.shared).idle.is_empty(), "kept mid-response");
        let response = pool
            .send(request(http::Method::GET))
            .await
            .expect("response");
        assert_eq!(body_len(response).await, 8 << 20);
        assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2, "connections");
    }

    /// The upstream closes an idle connection just after the pool found it open and took it: hyper
    /// hands the request back unwritten, and it goes out on a new connection.
    // One thread: the runtime reads the socket's end of stream (once the kernel has it) on the
    // turn `yield_now` gives it, before the exchange polls the connection (with two, another
    // worker may hold the driver).
    #[tokio::test]
    async fn a_request_a_closing_connection_hands_back_goes_out_on_a_new_one() {
        let upstream = upstream(16);
        let pool = pool(&upstream);
        assert_eq!(get(&pool).await, 16);
        let Idle { conn, .. } = lock(&pool.shared).idle.pop().expect("an idle connection");
        let ends = upstream.close_connections();
        assert_eq!(ends.len(), 1);
        let started = Instant::now();
        while !end_of_stream_arrived(ends[0]) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no FIN arrived"
            );
            std::thread::yield_now();
        }
        // One turn of the runtime's driver: it reads the socket's readiness.
        tokio::task::yield_now().await;
        let response = pool
            .send_on(conn, true, request(http::Method::GET))
            .await
            .expect("answered on a new connection");
        assert_eq!(body_len(response).await, 16);
        assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2, "connections");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_connection_is_closed_after_the_timeout() {
        let upstream = upstream(16);
        let pool = pool(&upstream);
        assert_eq!(get(&pool).await, 16);
        let started = Instant::now();
        // The upstream sees its connection end: the pool closed it (without a reaper it would
        // stay open for as long as the pool lives).
        let closed = tokio::task::spawn_blocking(move || {
            upstream.closed.recv_timeout(POOL_IDLE_TIMEOUT * 4)
        });
        assert!(closed.await.expect("join").is_ok(), "never closed");
        assert!(
            started.elapsed() >= POOL_IDLE_TIMEOUT / 2,
            "closed too soon"
        );
        drop(pool);
    }

    /// Counts the wakes that reach the task.
    struct Count(std::sync::atomic::AtomicUsize);

    impl Count {
        /// A task's waker, and what counts its wakes.
        fn task() -> (Arc<Count>, Waker) {
            let count = Arc::new(Count(AtomicUsize::new(0)));
            (count.clone(), Waker::from(count))
        }

        fn wakes(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_poll_that_wakes_itself_each_time_gives_way_to_the_runtime() {
        // As a socket poll does once the task's budget is spent: pending, and woken at once.
        let (count, task) = Count::task();
        let cx = Context::from_waker(&task);
        let quiet = Quiet::new();
        let mut polls = 0;
        let poll = quiet.poll(&cx, |cx| {
            polls += 1;
            if polls > 1000 {
                return Poll::Ready(());
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        assert!(poll.is_pending(), "polled {polls} times");
        assert_eq!(polls, QUIET_REPOLLS);
        assert_eq!(count.wakes(), 1, "wakes that reached the task");
    }

    #[test]
    fn a_wake_while_polling_is_answered_by_polling_again_and_one_after_reaches_the_task() {
        let (count, task) = Count::task();
        let cx = Context::from_waker(&task);
        let quiet = Quiet::new();
        let mut polls = 0;
        let mut later = None;
        let poll = quiet.poll(&cx, |cx| {
            polls += 1;
            if polls == 1 {
                cx.waker().wake_by_ref();
            }
            later = Some(cx.waker().clone());
            Poll::<()>::Pending
        });
        assert!(poll.is_pending());
        assert_eq!(polls, 2, "polled again after the wake");
        assert_eq!(count.wakes(), 0, "the task was not woken for it");
        later.expect("waker").wake();
        assert_eq!(count.wakes(), 1, "a wake between polls reaches the task");
    }
}
