//! The floor for a proxy on this stack: the least a reverse proxy built on hyper, hyper-util and
//! tokio can do, measured by `bench/run` beside hmr-proxy and nginx.
//!
//! It forwards every request to one upstream through hyper-util's pooled client and hands the
//! response back untouched: no header rewriting, no injection, no routes, no limits, no shutdown.
//! Served with hyper's HTTP/1 connection directly (not the auto builder), on the same
//! multi-thread runtime hmr-proxy uses. Not a product: the benchmark's yardstick for what the
//! stack itself costs per request, so that hmr-proxy's own overhead can be told from hyper's.
//!
//! With `--inject` it is the least an *injecting* proxy on this stack can do, the yardstick for
//! the HTML rows: every browser connection gets an upstream connection of its own, driven by the
//! same task (no pool, no hand-over between tasks: the cheapest way to reach an upstream that
//! hyper allows, and cheaper than hmr-proxy's pool), and an HTML response gets the client's tag
//! before its first `</head>` (found in one decoded frame, as nginx's `sub_filter` would find it
//! there), gzip decoded first with a reused inflater (zlib-rs, as in hmr-proxy) and sent
//! identity-encoded, chunked. No CRC check, no charset, no CSP, no validators: everything
//! hmr-proxy does beyond that is its own cost.
//!
//! `cargo run --release --example hyper-floor -- LISTEN_PORT UPSTREAM_PORT [--inject]` (both on
//! 127.0.0.1).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};
use http::{Request, Response, Uri, header};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What `--inject` puts before `</head>`: the tag nginx-inject's `sub_filter` puts there.
const TAG: &[u8] = br#"<script type="module" src="/__hmr/client.js"></script>"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: hyper-floor LISTEN_PORT UPSTREAM_PORT [--inject]";
    let listen: u16 = args.next().ok_or(usage)?.parse()?;
    let upstream: u16 = args.next().ok_or(usage)?.parse()?;
    let inject = match args.next().as_deref() {
        None => false,
        Some("--inject") => true,
        Some(_) => return Err(usage.into()),
    };
    let upstream_addr = SocketAddr::from(([127, 0, 0, 1], upstream));
    let origin: Arc<str> = format!("http://127.0.0.1:{upstream}").into();

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);

    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], listen))).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        if inject {
            tokio::spawn(serve_injecting(stream, upstream_addr));
            continue;
        }
        let client = client.clone();
        let origin = origin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| forward(client.clone(), origin.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Send one request to the upstream. An error closes the connection: the yardstick has no error
/// pages.
async fn forward(
    client: Client<HttpConnector, Incoming>,
    origin: Arc<str>,
    mut req: Request<Incoming>,
) -> Result<Response<Incoming>, BoxError> {
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    *req.uri_mut() = format!("{origin}{target}").parse::<Uri>()?;
    Ok(client.request(req).await?)
}

/// One browser connection with an upstream connection of its own, both driven by this task. An
/// upstream that fails closes the browser connection (the load generator reconnects).
async fn serve_injecting(stream: TcpStream, upstream: SocketAddr) {
    let Ok(up) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = up.set_nodelay(true);
    let Ok((sender, upstream_conn)) = hyper::client::conn::http1::handshake(TokioIo::new(up)).await
    else {
        return;
    };
    // HTTP/1 serves one request at a time: the lock is never contended, only needed because the
    // service must be `Send`.
    let sender = Arc::new(Mutex::new(sender));
    let inflater: Inflater = Arc::new(Mutex::new(None));
    let service = service_fn(move |req| inject_forward(sender.clone(), inflater.clone(), req));
    let serve =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    // The service (and with it the sender) goes when the browser does; the upstream connection
    // then ends too.
    let _ = tokio::join!(serve, upstream_conn);
}

/// The connection's inflater, kept between its responses (allocating and clearing zlib's 32 KiB
/// window per page is a tenth of a small page's cost).
type Inflater = Arc<Mutex<Option<Box<Decompress>>>>;

async fn inject_forward(
    sender: Arc<Mutex<SendRequest<Incoming>>>,
    inflater: Inflater,
    req: Request<Incoming>,
) -> Result<Response<Injecting>, BoxError> {
    let sent = sender.lock().map_err(|_| "poisoned")?.send_request(req);
    let response = sent.await?;
    let (mut parts, body) = response.into_parts();
    let html = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let gzip = html
        && parts
            .headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes() == b"gzip");
    if html {
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::CONTENT_ENCODING);
    }
    let decoder = gzip.then(|| Decoder {
        header: Vec::new(),
        header_done: false,
        inflate: Some(
            inflater
                .lock()
                .ok()
                .and_then(|mut slot| slot.take())
                .unwrap_or_else(|| Box::new(Decompress::new(false))),
        ),
        done: false,
        home: inflater,
    });
    Ok(Response::from_parts(
        parts,
        Injecting {
            inner: body,
            decoder,
            settled: !html,
        },
    ))
}

/// The upstream's body, decoded and with the tag in for a page, untouched otherwise.
struct Injecting {
    inner: Incoming,
    decoder: Option<Decoder>,
    /// The tag is in (or was never to go in).
    settled: bool,
}

impl Body for Injecting {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                None => return Poll::Ready(None),
                Some(Err(err)) => return Poll::Ready(Some(Err(err.into()))),
                Some(Ok(frame)) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let data = match &mut this.decoder {
                Some(decoder) => decoder.feed(&data)?,
                None => data,
            };
            if data.is_empty() {
                continue;
            }
            if this.settled {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            let Some(at) = memchr::memmem::find(&data, b"</head>") else {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            };
            this.settled = true;
            let mut out = Vec::with_capacity(data.len() + TAG.len());
            out.extend_from_slice(&data[..at]);
            out.extend_from_slice(TAG);
            out.extend_from_slice(&data[at..]);
            return Poll::Ready(Some(Ok(Frame::data(out.into()))));
        }
    }
}

/// A gzip member inflated frame by frame; the inflater goes back to its connection after.
struct Decoder {
    /// The member's header while it is cut off between frames.
    header: Vec<u8>,
    header_done: bool,
    /// Always there until dropped.
    inflate: Option<Box<Decompress>>,
    done: bool,
    home: Inflater,
}

impl Decoder {
    fn feed(&mut self, input: &[u8]) -> Result<Bytes, BoxError> {
        let joined;
        let mut input = input;
        if !self.header_done {
            if self.header.is_empty()
                && let Some(n) = header_len(input)
            {
                input = &input[n..];
            } else {
                self.header.extend_from_slice(input);
                let Some(n) = header_len(&self.header) else {
                    return Ok(Bytes::new());
                };
                joined = std::mem::take(&mut self.header);
                input = &joined[n..];
            }
            self.header_done = true;
        }
        let Some(inflate) = self.inflate.as_mut().filter(|_| !self.done) else {
            return Ok(Bytes::new());
        };
        let mut out = Vec::with_capacity((input.len() * 8).clamp(8 << 10, 256 << 10));
        while !input.is_empty() {
            let before = inflate.total_in();
            let status = inflate.decompress_vec(input, &mut out, FlushDecompress::None)?;
            input = &input[(inflate.total_in() - before) as usize..];
            if status == Status::StreamEnd {
                self.done = true;
                break;
            }
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
        }
        Ok(out.into())
    }
}

/// The length of a whole gzip header at the start of `bytes`, `None` while it is cut off.
fn header_len(bytes: &[u8]) -> Option<usize> {
    let flags = *bytes.get(3)?;
    let mut at = 10;
    if flags & 4 != 0 {
        let extra = u16::from_le_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]) as usize;
        at += 2 + extra;
    }
    for bit in [8, 16] {
        if flags & bit != 0 {
            at += memchr::memchr(0, bytes.get(at..)?)? + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    (bytes.len() >= at).then_some(at)
}

impl Drop for Decoder {
    fn drop(&mut self) {
        if let Some(mut inflate) = self.inflate.take() {
            inflate.reset(false);
            if let Ok(mut slot) = self.home.lock() {
                *slot = Some(inflate);
            }
        }
    }
}
