//! Taking a change-stream request off a keep-alive connection that hyper is serving.
//!
//! A browser opens a tab's `EventSource` on whatever idle keep-alive connection it has to the
//! proxy, so the stream usually arrives as the second or later request of a connection that
//! hyper serves, not as the first request that `server` can peek at. Left with hyper, that
//! stream would keep hyper's ~22 KiB of connection buffers for the tab's whole life.
//!
//! Owns [`Watched`], the socket as hyper sees it, and the bookkeeping that says when hyper is
//! between messages: no request in flight (counted by [`Shared::request`], the guard riding in
//! each response body until hyper drops it) and nothing written since hyper last flushed. A read
//! that then brings exactly one complete, bodiless HTTP/1.1 `GET` of the change stream (the same
//! [`parse`](super::parse) rule as for a first request) is not given to hyper: the socket is
//! taken out and hyper sees the connection end cleanly between requests. `server` then answers
//! the taken request through `raw_stream`, exactly as for a fresh connection. Anything else
//! (bytes pipelined after the request, an upgraded connection, HTTP/2, a connection that carried
//! a request body) stays with hyper. It does not answer anything itself.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::body::{Body, BoxError};

/// What a connection's service and its [`Watched`] socket share.
#[derive(Default)]
pub(crate) struct Shared {
    /// Requests hyper has handed to the service whose response bodies it has not yet dropped.
    in_flight: AtomicUsize,
    /// The connection is no longer plain HTTP/1 request and response (an upgrade, HTTP/2).
    never: AtomicBool,
    /// Requests that have reached the service (the server closes a connection that sends none
    /// in time, and an HTTP/2 one that goes idle).
    requests: AtomicU64,
    /// A request came in HTTP/2: the connection is (its preface may have come in pieces, which
    /// the first bytes peeked cannot tell).
    http2: AtomicBool,
    /// The socket and the stream request taken from hyper, once taken.
    taken: Mutex<Option<Taken>>,
}

/// A change-stream request taken off a keep-alive connection, with its socket. The request's
/// head has already been read from the socket.
pub(crate) struct Taken {
    pub stream: TcpStream,
    pub request: Request<()>,
}

impl Shared {
    /// A request reached the service; the guard, carried by its response, says when it is over.
    /// A request with a body ends handovers on this connection for good: its response can be
    /// over while the body is still arriving (an upstream that answers before reading it), and
    /// those bytes must reach hyper as the body they are, whatever they look like.
    pub(crate) fn request<B: http_body::Body>(self: &Arc<Self>, req: &Request<B>) -> InFlight {
        if req.version() == Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        if req.version() == Version::HTTP_2 || !req.body().is_end_stream() {
            self.never.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// How many requests have reached the service.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Whether a request came in HTTP/2.
    pub(crate) fn http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    /// Whether a request's response is still being sent.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// The request hyper did not see, if one was taken.
    pub(crate) fn take(&self) -> Option<Taken> {
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn between_messages(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && !self.never.load(Ordering::Relaxed)
    }
}

/// One request in flight; dropped with its response body.
pub(crate) struct InFlight(Arc<Shared>);

impl InFlight {
    /// `response` with this guard riding in its body. A switch of protocols ends handovers on
    /// this connection for good: what follows is not HTTP.
    pub(crate) fn carry(self, response: Response<Body>) -> Response<Tracked> {
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            self.0.never.store(true, Ordering::Relaxed);
        }
        response.map(|body| Tracked { body, _guard: self })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that holds its request's [`InFlight`] until hyper is done with it.
pub(crate) struct Tracked {
    body: Body,
    _guard: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket as hyper sees it: reads and writes pass straight through until a read brings a
/// change-stream request between messages; from then on hyper reads the end of the connection.
pub(crate) struct Watched {
    /// `None` once taken.
    stream: Option<TcpStream>,
    shared: Arc<Shared>,
    changes_path: Arc<str>,
    /// Written since the last flush: hyper flushes only once its own buffer is empty, so a clean
    /// flush means no byte of a response is still waiting to go out.
    dirty: bool,
    /// The connection's slot under `--max-connections`, held for as long as the socket lives: a
    /// WebSocket tunnel takes the socket on after hyper's connection has ended.
    _slot: Arc<OwnedSemaphorePermit>,
}

impl Watched {
    /// `http2`: the connection opened with the HTTP/2 preface, so nothing is ever taken.
    pub(crate) fn new(
        stream: TcpStream,
        shared: Arc<Shared>,
        changes_path: Arc<str>,
        http2: bool,
        slot: Arc<OwnedSemaphorePermit>,
    ) -> Self {
        if http2 {
            shared.never.store(true, Ordering::Relaxed);
        }
        Watched {
            stream: Some(stream),
            shared,
            changes_path,
            dirty: false,
            _slot: slot,
        }
    }

    /// Take the socket if `read` (the bytes just read) is exactly one change-stream request and
    /// hyper is between messages.
    fn take_if_stream(&mut self, read: &[u8]) -> bool {
        if self.dirty
            || !super::may_be_stream(read, &self.changes_path)
            || !self.shared.between_messages()
        {
            return false;
        }
        let Some((request, head_len)) = super::parse(read, &self.changes_path) else {
            return false;
        };
        // Bytes after the head are a pipelined request: hyper's to answer, in order.
        if head_len != read.len() {
            return false;
        }
        let Some(stream) = self.stream.take() else {
            return false;
        };
        *self
            .shared
            .taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Taken { stream, request });
        true
    }

    /// A write through to the socket, noted as not yet flushed.
    fn write_with(
        &mut self,
        write: impl FnOnce(Pin<&mut TcpStream>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        self.dirty = true;
        match self.stream.as_mut() {
            Some(stream) => write(Pin::new(stream)),
            None => Poll::Ready(Err(gone())),
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the connection was taken for a change stream",
    )
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(Ok(())); // end of file
        };
        let before = buf.filled().len();
        ready!(Pin::new(stream).poll_read(cx, buf))?;
        if this.take_if_stream(&buf.filled()[before..]) {
            // Unread: hyper sees the connection end between requests and lets go of it.
            buf.set_filled(before);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .write_with(|stream| stream.poll_write(cx, data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .write_with(|stream| stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        ready!(Pin::new(stream).poll_flush(cx))?;
        this.dirty = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream.as_mut() {
            Some(stream) => Pin::new(stream).poll_shutdown(cx),
            // The socket lives on elsewhere: shutting it down is not hyper's to do any more.
            None => Poll::Ready(Ok(())),
        }
    }
}
