//! The upstream connection: hyper-util's `HttpConnector`, TLS on top for an `https://` upstream
//! (`tls`), and each socket told to acknowledge promptly while a large response arrives.
//!
//! Owns [`Connector`], the IO type it hands the pooled client ([`UpstreamIo`]) and the handle by
//! which the proxy says a response is large ([`LargeBody`], in every response's extensions). It
//! does not decide where to connect (the client is only ever given URIs built from the configured
//! origin) and does not read or write anything itself: it passes bytes through untouched.
//!
//! Why: a pooled upstream connection sends a request and reads a response, over and over, so
//! Linux takes it for an interactive session ("pingpong" mode) and delays its ACKs, by up to
//! 40 ms, hoping to piggyback them on the next request. A dev server whose kernel paces its sends
//! (BBR, the congestion control of this project's benchmark machine and of many cloud images)
//! takes those late ACKs as the path's delivery rate and sends the rest of a large body at a few
//! MB/s: a 1 MB asset then stalled for 20–80 ms in most runs (README, "What limits it").
//! `TCP_QUICKACK` takes the socket out of that mode for the rest of the response: from its second
//! read when its `Content-Length` says it is large, else once it has taken
//! [`PROMPT_ACKS_AT_READ`] reads. Not for every response that spans reads: on 100 KB pages at one
//! connection, which often take two, that cost 10–20 % of the requests per second (`bench/ab`,
//! six rounds).
//!
//! Every connection the proxy opens to an upstream ([`connect`] for the probes, [`Connector`] for
//! requests) refuses one that met itself (see [`met_itself`]).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::tls::Tls;
use crate::body::BoxError;

/// A body at least this long (by its `Content-Length`) gets prompt ACKs from its second read.
pub const LARGE_BODY: u64 = 256 * 1024;

/// The read after a request at which a response of unknown length counts as large: a few hundred
/// kilobytes in, as the reads of a response grow with hyper's buffer.
const PROMPT_ACKS_AT_READ: u8 = 8;

/// Set by the proxy when the response on this connection is large (see [`LARGE_BODY`]); taken by
/// the socket's next read. Cheap to clone: one per connection, shared with each response.
#[derive(Clone, Default)]
pub struct LargeBody(Arc<AtomicBool>);

impl LargeBody {
    pub fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Whether `stream` is connected to itself. With nothing listening on a port of this machine
/// that lies in the kernel's ephemeral range (32768–60999 on Linux, where a dev server on a
/// random port lives), a connect to it may be given that very port as its own end, and then
/// "succeeds" (TCP's simultaneous open) with no server at all: the probe would take a down
/// upstream for one that answers, and a request would read itself back as the response, while
/// the socket holds the port the dev server is about to listen on.
fn met_itself(stream: &TcpStream) -> bool {
    matches!((stream.local_addr(), stream.peer_addr()), (Ok(local), Ok(peer)) if local == peer)
}

/// `stream` as it is, or, when it met itself, closed with a reset and the error a refusal gives
/// (nothing listens there). A reset: closed the usual way it stays in `TIME_WAIT` on the port
/// for a minute, and the dev server's `bind` fails with "address in use" even with
/// `SO_REUSEADDR` (measured here).
fn refuse_itself(stream: TcpStream) -> io::Result<TcpStream> {
    if !met_itself(&stream) {
        return Ok(stream);
    }
    let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
    drop(stream);
    Err(io::Error::new(
        io::ErrorKind::ConnectionRefused,
        "nothing listens there (the connection met itself)",
    ))
}

/// A TCP connection to `addr`, refused when it met itself ([`met_itself`]).
pub async fn connect(addr: impl tokio::net::ToSocketAddrs) -> io::Result<TcpStream> {
    refuse_itself(TcpStream::connect(addr).await?)
}

/// Connects like the `HttpConnector` it wraps (which must not insist on `http`: the connector
/// sees each URI's scheme), runs the TLS handshake for an `https` URI, and hands out
/// [`UpstreamIo`].
#[derive(Clone)]
pub struct Connector {
    tcp: HttpConnector,
    tls: Tls,
}

impl Connector {
    pub fn new(tcp: HttpConnector, tls: Tls) -> Self {
        Self { tcp, tls }
    }
}

impl tower::Service<http::Uri> for Connector {
    type Response = UpstreamIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamIo, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = (uri.scheme() == Some(&http::uri::Scheme::HTTPS))
            .then(|| (self.tls.clone(), uri.host().unwrap_or_default().to_string()));
        let connecting = self.tcp.call(uri);
        Box::pin(async move {
            let tcp = TokioIo::new(refuse_itself(connecting.await?.into_inner())?);
            let io = match tls {
                None => Stream::Plain(tcp),
                Some((tls, host)) => Stream::Tls(Box::new(TokioIo::new(
                    tls.handshake(tcp.into_inner(), &host).await?,
                ))),
            };
            Ok(UpstreamIo {
                io,
                reads_since_write: 0,
                large: LargeBody::default(),
            })
        })
    }
}

/// The socket, and TLS over it for an https upstream.
enum Stream {
    Plain(TokioIo<TcpStream>),
    /// Boxed: rustls' connection state is a kilobyte, which a plain socket need not carry.
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(io) => io.inner(),
            Stream::Tls(io) => io.inner().get_ref().0,
        }
    }
}

/// Forwards a call to whichever stream this is.
macro_rules! each {
    ($stream:expr, $io:ident => $call:expr) => {
        match $stream {
            Stream::Plain($io) => $call,
            Stream::Tls($io) => $call,
        }
    };
}

/// One upstream socket. Counts the reads since the last write (a request), so that one read of
/// a large response asks the kernel for prompt ACKs.
pub struct UpstreamIo {
    io: Stream,
    reads_since_write: u8,
    large: LargeBody,
}

impl UpstreamIo {
    /// The handle by which this socket's next response is marked large.
    pub fn large(&self) -> LargeBody {
        self.large.clone()
    }

    /// A read came back; the first after the head of a response marked large, or the one at the
    /// count that makes a response of unknown length large, asks for prompt ACKs.
    fn after_read(&mut self) {
        self.reads_since_write = self.reads_since_write.saturating_add(1);
        let marked = self.reads_since_write >= 2 && self.large.0.swap(false, Ordering::Relaxed);
        if marked || self.reads_since_write == PROMPT_ACKS_AT_READ {
            // Best effort: a socket that refuses only keeps the kernel's default ACK timing.
            let _ = socket2::SockRef::from(self.io.tcp()).set_tcp_quickack(true);
        }
    }

    /// A request goes out: its response starts the count again.
    fn before_write(&mut self) {
        self.reads_since_write = 0;
        self.large.0.store(false, Ordering::Relaxed);
    }
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        self.io.tcp().connected().extra(self.large.clone())
    }
}

impl Read for UpstreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let read = match &mut self.io {
            Stream::Plain(io) => Pin::new(io).poll_read(cx, buf),
            // A server that closes without TLS's `close_notify` (Python's `ssl`-wrapped
            // http.server, ending a body that has no length by closing): the end of the stream,
            // as curl and browsers take it. A body with a length or chunks that ends early is
            // still caught by hyper as cut short.
            Stream::Tls(io) => match Pin::new(io).poll_read(cx, buf) {
                Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(()))
                }
                other => other,
            },
        };
        if let Poll::Ready(Ok(())) = read {
            self.after_read();
        }
        read
    }
}

impl Write for UpstreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.before_write();
        each!(&mut self.io, io => Pin::new(io).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.before_write();
        each!(&mut self.io, io => Pin::new(io).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        each!(&self.io, io => io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(&mut self.io, io => Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(&mut self.io, io => Pin::new(io).poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::os::fd::AsFd as _;

    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Empty};

    use super::*;

    /// A socket bound to a port and connected to that same port meets itself, as a connect to a
    /// port nothing listens on may when the kernel hands it that port; one that reached a
    /// listener does not.
    #[tokio::test]
    async fn a_connection_that_met_itself_is_told_from_one_that_reached_a_listener() {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let own = socket.local_addr().expect("own address");
        let itself = socket
            .connect(own)
            .await
            .expect("simultaneous open with itself");
        assert!(met_itself(&itself));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let reached = connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        assert!(!met_itself(&reached));
    }

    /// An upstream that answers every request on its one connection with `len` bytes.
    fn upstream(len: usize) -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        std::thread::spawn(move || {
            let Ok((mut socket, _)) = listener.accept() else {
                return;
            };
            let _ = socket.set_nodelay(true);
            let response = [
                format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n").into_bytes(),
                vec![b'x'; len],
            ]
            .concat();
            let mut pending = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = socket.read(&mut buf) {
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    pending.drain(..end + 4);
                    if socket.write_all(&response).is_err() {
                        return;
                    }
                }
            }
        });
        addr
    }

    /// Four exchanges of `len` bytes on one connection; after each, whether the socket was
    /// acknowledging promptly. `mark`: the head of each response is taken for a large body's, as
    /// the proxy does by its `Content-Length`.
    async fn prompt_after_each_exchange(len: usize, mark: bool) -> Vec<bool> {
        let addr = upstream(len);
        let uri: http::Uri = format!("http://{addr}/").parse().expect("uri");
        let tls = Tls::new(false, std::time::Duration::from_secs(3));
        let mut connector = Connector::new(HttpConnector::new(), tls);
        let io = tower::Service::call(&mut connector, uri.clone())
            .await
            .expect("connect");
        let large = io.large.clone();
        // A second descriptor for the same socket, to read its state while hyper owns the first.
        let socket = socket2::Socket::from(io.io.tcp().as_fd().try_clone_to_owned().expect("dup"));
        let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
            .await
            .expect("handshake");
        tokio::spawn(connection);
        let mut prompt = Vec::new();
        for _ in 0..4 {
            let request = http::Request::get(uri.path())
                .header(http::header::HOST, addr.to_string())
                .body(Empty::new())
                .expect("request");
            let response = sender.send_request(request).await.expect("response");
            if mark {
                large.mark();
            }
            let body = response.into_body().collect().await.expect("body");
            assert_eq!(body.to_bytes().len(), len);
            prompt.push(socket.tcp_quickack().expect("TCP_QUICKACK"));
        }
        prompt
    }

    // Without the switch, the kernel puts a keep-alive request/response socket in delayed-ACK
    // mode from the second exchange on (`TCP_QUICKACK` then reads false).

    #[tokio::test]
    async fn a_response_long_by_its_length_is_acknowledged_promptly() {
        // More than hyper's largest read (about 408 KiB), so always two reads at least, and once
        // its buffer has grown, fewer than PROMPT_ACKS_AT_READ: only the mark can switch it.
        let prompt = prompt_after_each_exchange(600 * 1024, true).await;
        assert_eq!(prompt, [true; 4], "after each exchange");
    }

    #[tokio::test]
    async fn a_response_that_runs_long_unannounced_is_acknowledged_promptly() {
        // Many more reads than PROMPT_ACKS_AT_READ, however far hyper's read buffer grows.
        let prompt = prompt_after_each_exchange(4 << 20, false).await;
        assert_eq!(prompt, [true; 4], "after each exchange");
    }
}
