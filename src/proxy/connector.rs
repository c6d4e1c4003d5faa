//! The upstream connection: hyper-util's `HttpConnector`, with each socket told to acknowledge
//! promptly while a response arrives in more than one read.
//!
//! Owns [`Connector`] and the IO type it hands the pooled client ([`UpstreamIo`]). It does not
//! decide where to connect (the client is only ever given URIs built from the configured origin)
//! and does not read or write anything itself: it passes bytes through untouched.
//!
//! Why: a pooled upstream connection sends a request and reads a response, over and over, so
//! Linux takes it for an interactive session ("pingpong" mode) and delays its ACKs, by up to
//! 40 ms, hoping to piggyback them on the next request. A dev server whose kernel paces its sends
//! (BBR, the congestion control of this project's benchmark machine and of many cloud images)
//! takes those late ACKs as the path's delivery rate and sends the rest of a large body at a few
//! MB/s: a 1 MB asset then stalled for 20–80 ms in most runs (README, "What limits it"). `TCP_QUICKACK` on the second read after a request
//! takes the socket out of that mode for the rest of the response. A response that arrives in one
//! read, as pages and most scripts do on loopback, costs no extra system call.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Connects like the `HttpConnector` it wraps, and hands out [`UpstreamIo`].
#[derive(Clone)]
pub struct Connector(HttpConnector);

impl Connector {
    pub fn new(inner: HttpConnector) -> Self {
        Self(inner)
    }
}

impl tower::Service<http::Uri> for Connector {
    type Response = UpstreamIo;
    type Error = <HttpConnector as tower::Service<http::Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamIo, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            Ok(UpstreamIo {
                io,
                reads_since_write: 0,
            })
        })
    }
}

/// One upstream socket. Counts the reads that brought bytes since the last write (a request), so
/// that the second one, and only it, asks the kernel for prompt ACKs.
pub struct UpstreamIo {
    io: TokioIo<TcpStream>,
    reads_since_write: u8,
}

impl UpstreamIo {
    /// A read came back: on the second since the last write, the response is spanning reads.
    fn after_read(&mut self) {
        self.reads_since_write = self.reads_since_write.saturating_add(1);
        if self.reads_since_write == 2 {
            // Best effort: a socket that refuses only keeps the kernel's default ACK timing.
            let _ = socket2::SockRef::from(self.io.inner()).set_tcp_quickack(true);
        }
    }
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl Read for UpstreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
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
        self.reads_since_write = 0;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.reads_since_write = 0;
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::os::fd::AsFd as _;

    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Empty};

    use super::*;

    const BODY: usize = 1 << 20;

    /// An upstream that answers every request on its one connection with a 1 MB body.
    fn upstream() -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        std::thread::spawn(move || {
            let Ok((mut socket, _)) = listener.accept() else {
                return;
            };
            let _ = socket.set_nodelay(true);
            let response = [
                format!("HTTP/1.1 200 OK\r\ncontent-length: {BODY}\r\n\r\n").into_bytes(),
                vec![b'x'; BODY],
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

    /// Without the prompt-ACK switch, the kernel puts a keep-alive request/response socket in
    /// delayed-ACK mode from the second exchange on (`TCP_QUICKACK` then reads 0); each response
    /// here spans many reads, so after each the socket must be acknowledging promptly again.
    #[tokio::test]
    async fn a_response_that_spans_reads_is_acknowledged_promptly() {
        let addr = upstream();
        let uri: http::Uri = format!("http://{addr}/").parse().expect("uri");
        let mut connector = Connector::new(HttpConnector::new());
        let io = tower::Service::call(&mut connector, uri.clone())
            .await
            .expect("connect");
        // A second descriptor for the same socket, to read its state while hyper owns the first.
        let socket =
            socket2::Socket::from(io.io.inner().as_fd().try_clone_to_owned().expect("dup"));
        let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
            .await
            .expect("handshake");
        tokio::spawn(connection);
        for exchange in 1..=4 {
            let request = http::Request::get(uri.path())
                .header(http::header::HOST, addr.to_string())
                .body(Empty::new())
                .expect("request");
            let response = sender.send_request(request).await.expect("response");
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            assert_eq!(body.len(), BODY);
            assert!(
                socket.tcp_quickack().expect("TCP_QUICKACK"),
                "exchange {exchange}: the socket delays its ACKs"
            );
        }
    }
}
