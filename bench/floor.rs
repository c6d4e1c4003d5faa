//! The floor for a proxy on this stack: the least a reverse proxy built on hyper, hyper-util and
//! tokio can do, measured by `bench/run` beside hmr-proxy and nginx.
//!
//! It forwards every request to one upstream through hyper-util's pooled client and hands the
//! response back untouched: no header rewriting, no injection, no routes, no limits, no shutdown.
//! Served with hyper's HTTP/1 connection directly (not the auto builder), on the same
//! multi-thread runtime hmr-proxy uses. Not a product: the benchmark's yardstick for what the
//! stack itself costs per request, so that hmr-proxy's own overhead can be told from hyper's.
//!
//! `cargo run --release --example hyper-floor -- LISTEN_PORT UPSTREAM_PORT` (both on 127.0.0.1).

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: hyper-floor LISTEN_PORT UPSTREAM_PORT";
    let listen: u16 = args.next().ok_or(usage)?.parse()?;
    let upstream: u16 = args.next().ok_or(usage)?.parse()?;
    let origin: Arc<str> = format!("http://127.0.0.1:{upstream}").into();

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);

    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], listen))).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
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
