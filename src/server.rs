//! The accept loop: HTTP connections in, router calls out, graceful shutdown.
//!
//! Owns connection handling and nothing about routes: each accepted TCP connection is served by
//! `raw_stream` when it opens with a request for the change stream, else by hyper-util's auto
//! builder (HTTP/1.1, or HTTP/2 when the client opens with the h2c preface) with upgrades
//! enabled, a header-read timeout (hyper's timeouts need a timer, which is set here) and
//! `GracefulShutdown`. hyper reads through `raw_stream::handover`'s socket, which takes a later
//! stream request on the connection back for `raw_stream`. A response body that fails lets what
//! hyper buffered go out first ([`FlushedFirst`]). On shutdown the listener closes at once, in-flight requests get the grace
//! period, tracked long-lived tasks (tunnels) are told to stop, and whatever remains is dropped.
//! Streams served by `raw_stream` are not counted: their bodies end on shutdown by themselves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::raw_stream;
use crate::raw_stream::handover::{Shared, Watched};
use crate::router::Router;
use crate::shutdown::Shutdown;

/// How much of a new connection is peeked before anything else: enough to tell a request for
/// the change stream (`raw_stream`) from the rest without a larger peek.
const FIRST_PEEK: usize = 64;

/// After `accept` fails (e.g. out of file descriptors), wait this long before trying again rather
/// than spinning or giving up.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// TCP keep-alive on browser connections: a laptop or phone that sleeps, or a network that drops,
/// sends no FIN, and a WebSocket tunnel (which has no timer of its own) or a stalled download
/// held its sockets, both ends, for good. Probes after a minute of silence, every 10 s; six
/// unanswered close the connection (about two minutes). Event streams notice sooner by their
/// heartbeats; on loopback a vanished peer always sends its FIN.
fn keepalive() -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(6)
}

/// Connection handling settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long in-flight requests get after shutdown begins.
    pub grace: Duration,
    /// Connections served at once; past that, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has to send request headers, and may idle between requests. hyper enforces
    /// it only because a timer is set below.
    pub header_timeout: Duration,
}

/// Raise the soft limit on open files to the hard one. Every proxied connection takes two
/// descriptors (the browser's and the upstream's), and a desktop's soft limit is often 1,024:
/// past ~500 connections (a few tabs whose downloads stall) `accept` and the upstream connects
/// failed with EMFILE, which read as the upstream going down and reloaded every tab. The hard
/// limit is the administrator's; the soft one is the process's own to raise.
pub fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!("open files: up to {limit}"),
        Err(err) => tracing::debug!("the open-file limit stays as it was: {err}"),
    }
}

/// How often a proxy that stays at `--max-connections` says so.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Serve `listener` until `shutdown` triggers, then drain within `limits.grace`.
pub async fn serve(listener: TcpListener, router: Router, shutdown: Shutdown, limits: Limits) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // No `half_close`: a client that shuts down its sending side after its request (rare:
        // `nc -N`) gets no answer, but with it hyper took a browser that went away mid-response
        // for one still waiting, and held the upstream's hanging response (and connection) open
        // (`hostile::upstream_faults…` fails with it).
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let changes_path: Arc<str> = router.changes_path().into();
    let keepalive = keepalive();

    let mut warned_full: Option<std::time::Instant> = None;
    loop {
        // Take a permit before accepting: existing connections keep working, new ones queue.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(tokio::sync::TryAcquireError::Closed) => break,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                // Said, at most once a minute: a browser's request that hangs unanswered is
                // otherwise a mystery (event streams hold connections for as long as tabs live).
                if warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
                    warned_full = Some(std::time::Instant::now());
                    tracing::warn!(
                        "all {} connections are in use (--max-connections); new ones wait \
                         until one closes",
                        limits.max_connections
                    );
                }
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!("accepting a connection failed: {err}");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let (shutdown, header_timeout) = (shutdown.clone(), limits.header_timeout);
        let changes_path = changes_path.clone();
        tokio::spawn(async move {
            // hyper's header timeout starts only once the auto builder has read enough to tell
            // HTTP/1 from HTTP/2, so a client that connects and sends nothing would hold its
            // permit for ever: it gets the header timeout for its first byte.
            let mut first = [0u8; FIRST_PEEK];
            let peeked = tokio::select! {
                _ = shutdown.cancelled() => 0,
                peeked = tokio::time::timeout(header_timeout, stream.peek(&mut first)) => {
                    peeked.ok().and_then(Result::ok).unwrap_or(0)
                }
            };
            if peeked == 0 {
                tracing::debug!("connection from {peer} sent nothing; closed");
                drop(permit);
                return;
            }
            // A connection opened for the change stream lives as long as its tab: served
            // without hyper's per-connection buffers (see `raw_stream`).
            if raw_stream::may_be_stream(&first[..peeked], router.changes_path())
                && let Some((req, head_len)) =
                    raw_stream::peek_request(&stream, router.changes_path()).await
            {
                let response = router.handle_changes(&req);
                raw_stream::serve(stream, head_len, response).await;
                drop(permit);
                return;
            }
            // A stream asked for later on this connection is taken back from hyper between
            // messages (see `raw_stream::handover`) and served like the one above.
            let shared = Arc::new(Shared::default());
            // The slot is the socket's too: an upgraded one outlives this task in its tunnel.
            let permit = Arc::new(permit);
            let http2 = first[..peeked].starts_with(b"PRI ");
            let socket = Watched::new(stream, shared.clone(), changes_path, http2, permit.clone());
            let service_router = router.clone();
            let tracker = shared.clone();
            // Boxed: a task is allocated at the size of its largest state, and hyper's connection
            // state would otherwise make every stream task above that size too.
            let conn = Box::pin(async move {
                let service = service_fn(move |req| {
                    let router = service_router.clone();
                    let in_flight = tracker.request(&req);
                    async move {
                        let response = router.handle(req, peer).await;
                        let response = in_flight.carry(response).map(FlushedFirst::new);
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(socket), service)
                    .into_owned();
                watcher.watch(conn).await
            });
            // hyper-util's auto builder waits without a limit for enough bytes to tell HTTP/1
            // from HTTP/2, and HTTP/2 has no header timeout: a client that sent `P` and stopped,
            // or an h2c connection that never opens a stream, held its slot for ever. The first
            // request must arrive within the header timeout; HTTP/1's later ones are hyper's
            // (its header timeout closes an idle keep-alive connection). hyper's HTTP/2 has no
            // idle limit at all, so an HTTP/2 connection with no request for as long, and none
            // being answered, is closed too: four idle ones held `--max-connections 4` for good.
            // Idle: no request arrived and none was being answered at this look or the one
            // before, so the connection has done nothing for a whole interval at least.
            let idle = async {
                let (mut seen, mut was_busy) = (0, false);
                loop {
                    tokio::time::sleep(header_timeout).await;
                    let (requests, busy) = (shared.requests(), shared.busy());
                    if requests > 0 && !http2 && !shared.http2() {
                        std::future::pending::<()>().await;
                    }
                    if requests == seen && !busy && !was_busy {
                        return requests;
                    }
                    (seen, was_busy) = (requests, busy);
                }
            };
            tokio::select! {
                ended = conn => if let Err(err) = ended {
                    // hyper answers these itself, with an empty 414 or 431 the browser shows
                    // as a blank page: the log says what happened.
                    let too_large = err
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_parse_too_large);
                    if too_large {
                        tracing::warn!(
                            "a request from {peer} was refused: its URL or headers are larger \
                             than hyper reads (about 64 KiB, or 100 header fields)"
                        );
                    } else {
                        tracing::debug!("connection from {peer} ended: {err}");
                    }
                },
                requests = idle => if requests == 0 {
                    tracing::debug!("connection from {peer} sent no request in time; closed");
                } else {
                    tracing::debug!("HTTP/2 connection from {peer} idle; closed");
                }
            }
            if let Some(taken) = shared.take() {
                let response = router.handle_changes(&taken.request);
                raw_stream::serve(taken.stream, 0, response).await;
            }
            drop(permit);
        });
    }
    drop(listener);
    drain(graceful, shutdown, limits.grace).await;
}

async fn drain(graceful: GracefulShutdown, shutdown: Shutdown, grace: Duration) {
    let open = graceful.count();
    if open > 0 {
        tracing::debug!("waiting up to {grace:?} for {open} open connections");
    }
    let connections = tokio::time::timeout(grace, graceful.shutdown());
    let tasks = shutdown.wait_for_tasks(grace);
    let (connections, stuck_tasks) = tokio::join!(connections, tasks);
    if connections.is_err() || stuck_tasks > 0 {
        tracing::warn!("grace period of {grace:?} over: closing what is still open");
    }
}

/// A response body that lets what hyper has buffered go out before its error ends the
/// connection. hyper drops the connection, and the bytes it had not yet written, as soon as a
/// body fails; a body that yields its last frames and its error in one go (an upstream that
/// writes an error message into the page, then dies) would lose exactly those frames. So an
/// error is held back once: the body says "not ready" and wakes its task at once, hyper flushes
/// while it waits, and the error comes on the next poll.
struct FlushedFirst<B> {
    body: B,
    held: Option<crate::body::BoxError>,
}

impl<B> FlushedFirst<B> {
    fn new(body: B) -> Self {
        FlushedFirst { body, held: None }
    }
}

impl<B> http_body::Body for FlushedFirst<B>
where
    B: http_body::Body<Data = bytes::Bytes, Error = crate::body::BoxError> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if let Some(err) = this.held.take() {
            return Poll::Ready(Some(Err(err)));
        }
        match std::pin::Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Err(err))) => {
                this.held = Some(err);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The address to tell people to browse to: `0.0.0.0`/`::` are not browsable, loopback is.
pub fn browse_url(local: SocketAddr) -> String {
    let ip = match local.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    url_at(ip, local.port())
}

/// The URL another device on the network browses to when the proxy listens on all interfaces
/// (a phone on the same Wi-Fi): the address of the interface that has the default route, as
/// Vite's "Network:" line gives. `None` without such a route. Connecting a UDP socket sends
/// nothing: the kernel only picks the route (to a documentation address, RFC 5737/3849).
pub fn network_url(local: SocketAddr) -> Option<String> {
    let (bind, probe): (SocketAddr, SocketAddr) = if local.is_ipv4() {
        (([0, 0, 0, 0], 0).into(), ([192, 0, 2, 1], 9).into())
    } else {
        (
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            (std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 9).into(),
        )
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(probe).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then(|| url_at(ip, local.port()))
}

fn url_at(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V6(ip) => format!("http://[{ip}]:{port}"),
        ip => format!("http://{ip}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browse_urls_name_a_browsable_address() {
        let url = |addr: &str| browse_url(addr.parse().expect("address"));
        assert_eq!(url("0.0.0.0:3000"), "http://127.0.0.1:3000");
        assert_eq!(url("[::]:3000"), "http://[::1]:3000");
        assert_eq!(url("[fe80::1]:80"), "http://[fe80::1]:80");
        assert_eq!(url("192.168.1.5:3000"), "http://192.168.1.5:3000");
    }

    /// The network URL names one of this machine's own addresses (one it can listen on), never
    /// loopback; a machine without a default route has none.
    #[test]
    fn the_network_url_is_an_address_of_this_machine() {
        let Some(url) = network_url(([0, 0, 0, 0], 3000).into()) else {
            return;
        };
        let authority = url
            .strip_prefix("http://")
            .and_then(|rest| rest.strip_suffix(":3000"))
            .unwrap_or_else(|| panic!("{url}"));
        let ip: std::net::IpAddr = authority.parse().expect("an IP");
        assert!(!ip.is_loopback() && !ip.is_unspecified(), "{url}");
        std::net::TcpListener::bind((ip, 0)).expect("an address of this machine");
    }
}
