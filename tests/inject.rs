//! Injection through the real proxy with a real upstream: the fixture corpus
//! (`tests/fixtures/html/cases.toml`) in every content coding and in tiny frames, a page whose
//! upstream stalls after its head, requests and responses that must pass untouched, upstream
//! failures, `--no-inject`, static mode, and the CSP variants in headless Chromium.
//!
//! The upstream here is this file's own small hyper server ([`Fixtures`]): it serves the corpus
//! with the manifest's headers, encoded and framed as each test asks.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use hmr_proxy::client::{TAG, XML_TAG, tag_with_nonce};

use crate::support::{self, Proxy, within};

// ---------------------------------------------------------------------------------------------
// The corpus manifest

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    file: String,
    #[serde(default = "status_ok")]
    status: u16,
    content_type: Option<String>,
    csp: Option<String>,
    csp_report_only: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "yes")]
    inject: bool,
    before: Option<String>,
    after: Option<String>,
    #[serde(default)]
    at_end: bool,
    #[serde(default = "first")]
    nth: usize,
    nonce: Option<String>,
    csp_after: Option<String>,
    /// The report-only policy as the browser gets it, when the proxy edits it.
    csp_report_only_after: Option<String>,
    #[serde(default)]
    edits: Vec<(String, String)>,
    #[serde(default)]
    browser: bool,
    #[serde(default)]
    page_script: bool,
    #[serde(default)]
    found_in_body: bool,
}

fn status_ok() -> u16 {
    200
}
fn yes() -> bool {
    true
}
fn first() -> usize {
    1
}

#[derive(Debug, Deserialize)]
struct Manifest {
    case: Vec<Case>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/html")
}

fn manifest() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures_dir().join("cases.toml")).expect("cases.toml");
    let manifest: Manifest = toml::from_str(&text).expect("cases.toml parses");
    manifest.case
}

fn fixture(file: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(file)).unwrap_or_else(|e| panic!("fixture {file}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Content codings, as an upstream would apply them

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Identity,
    Gzip,
    XGzip,
    Deflate,
    RawDeflate,
    Brotli,
    Zstd,
}

const ALL_CODINGS: [Coding; 7] = [
    Coding::Identity,
    Coding::Gzip,
    Coding::XGzip,
    Coding::Deflate,
    Coding::RawDeflate,
    Coding::Brotli,
    Coding::Zstd,
];

impl Coding {
    fn param(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::XGzip => "x-gzip",
            Coding::Deflate => "deflate",
            Coding::RawDeflate => "raw-deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }

    fn from_param(param: &str) -> Coding {
        ALL_CODINGS
            .into_iter()
            .find(|c| c.param() == param)
            .unwrap_or(Coding::Identity)
    }

    /// The `Content-Encoding` header value (raw deflate is labelled `deflate`, as servers do).
    fn header(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::RawDeflate => Some("deflate"),
            other => Some(other.param()),
        }
    }

    fn encode(self, bytes: &[u8]) -> Vec<u8> {
        let level = flate2::Compression::default();
        match self {
            Coding::Identity => bytes.to_vec(),
            Coding::Gzip | Coding::XGzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
                e.write_all(bytes).unwrap();
                e.finish().unwrap()
            }
            Coding::Deflate => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
                e.write_all(bytes).unwrap();
                e.finish().unwrap()
            }
            Coding::RawDeflate => {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), level);
                e.write_all(bytes).unwrap();
                e.finish().unwrap()
            }
            Coding::Brotli => {
                let mut out = Vec::new();
                brotli::BrotliCompress(&mut &bytes[..], &mut out, &Default::default()).unwrap();
                out
            }
            Coding::Zstd => zstd::encode_all(bytes, 3).unwrap(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fixture upstream

type UpBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// An upstream serving the corpus and a few special routes:
/// - `/fixtures/<file>?coding=<c>&frame=<n>`: a corpus page with its manifest headers, encoded
///   with coding `c` (default identity, sent with `Content-Length`), in frames of `n` bytes;
/// - `/stall?coding=<c>`: a document's head (ending in `</head>`), then nothing until the test
///   calls [`Fixtures::release`], then the rest;
/// - `/broken`: a head, then (after [`Fixtures::release`]) the connection fails mid-body;
/// - `/corrupt-gzip`: `Content-Encoding: gzip` over bytes that are not gzip;
/// - `/html-status/<n>`: status `n` with an HTML page (none for 204/304), `206` with a range;
/// - `/accept-encoding`: the `Accept-Encoding` the upstream saw, as text.
struct Fixtures {
    addr: SocketAddr,
    gate: Arc<Notify>,
    task: JoinHandle<()>,
}

/// The page `/stall` and `/broken` send: the head first, the body after the gate.
const STALL_HEAD: &str = "<!DOCTYPE html><html><head><title>slow</title></head>";
const STALL_REST: &str = "<body><p>rendered after a slow query</p></body></html>";

impl Fixtures {
    async fn start() -> Fixtures {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = Arc::new(Notify::new());
        let cases: Arc<BTreeMap<String, Case>> = Arc::new(
            manifest()
                .into_iter()
                .map(|c| (c.file.clone(), c))
                .collect(),
        );
        let task_gate = gate.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (gate, cases) = (task_gate.clone(), cases.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (gate, cases) = (gate.clone(), cases.clone());
                        async move { Ok::<_, Infallible>(route(req, &cases, gate).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Fixtures { addr, gate, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Let a stalled `/stall` response continue.
    fn release(&self) {
        self.gate.notify_one();
    }
}

impl Drop for Fixtures {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

fn full(bytes: impl Into<Bytes>) -> UpBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn frames(bytes: Vec<u8>, size: usize) -> UpBody {
    let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = bytes
        .chunks(size.max(1))
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
}

/// The fixtures' `Last-Modified`: kept on what passes through, gone from rewritten pages.
const FIXTURE_DATE: &str = "Wed, 21 Oct 2015 07:28:00 GMT";

fn html_headers(res: &mut Response<UpBody>) {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::ETAG, HeaderValue::from_static("\"fixture-v1\""));
}

async fn route(
    req: Request<Incoming>,
    cases: &BTreeMap<String, Case>,
    gate: Arc<Notify>,
) -> Response<UpBody> {
    let path = req.uri().path().to_string();
    let coding = Coding::from_param(&query(&req, "coding").unwrap_or_default());
    if let Some(file) = path.strip_prefix("/fixtures/") {
        let Some(case) = cases.get(file) else {
            return Response::builder().status(404).body(full("")).unwrap();
        };
        let encoded = coding.encode(&fixture(file));
        let body = match query(&req, "frame").and_then(|f| f.parse().ok()) {
            Some(size) => frames(encoded, size),
            None => full(encoded),
        };
        let mut res = Response::new(body);
        *res.status_mut() = StatusCode::from_u16(case.status).unwrap();
        let h = res.headers_mut();
        let content_type = case
            .content_type
            .clone()
            .unwrap_or_else(|| "text/html; charset=utf-8".into());
        if !content_type.is_empty() {
            h.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        }
        if let Some(csp) = &case.csp {
            h.insert(header::CONTENT_SECURITY_POLICY, csp.parse().unwrap());
        }
        if let Some(csp) = &case.csp_report_only {
            h.insert(
                header::CONTENT_SECURITY_POLICY_REPORT_ONLY,
                csp.parse().unwrap(),
            );
        }
        if let Some(value) = coding.header() {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(value));
        }
        h.insert(header::ETAG, HeaderValue::from_static("\"fixture-v1\""));
        h.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static(FIXTURE_DATE),
        );
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        for (k, v) in &case.headers {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        return res;
    }
    match path.as_str() {
        "/stall" => {
            // Encoded as a stream, flushed after the head, as a streaming SSR server would.
            let mut encoder = Streamer::new(coding);
            let head = encoder.push(STALL_HEAD.as_bytes());
            let stream = futures_util::stream::unfold(
                (0, Some(encoder), Some(head)),
                move |(step, encoder, head)| {
                    let gate = gate.clone();
                    async move {
                        match step {
                            0 => {
                                let head = head?;
                                Some((Ok(Frame::data(Bytes::from(head))), (1, encoder, None)))
                            }
                            1 => {
                                gate.notified().await;
                                let mut encoder = encoder?;
                                let mut rest = encoder.push(STALL_REST.as_bytes());
                                rest.extend(encoder.finish());
                                Some((Ok(Frame::data(Bytes::from(rest))), (2, None, None)))
                            }
                            _ => None,
                        }
                    }
                },
            );
            let mut res = Response::new(StreamBody::new(stream).boxed_unsync());
            html_headers(&mut res);
            if let Some(value) = coding.header() {
                res.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static(value));
            }
            res
        }
        "/broken" => {
            // The error comes after the gate, so the head has certainly reached the proxy.
            let stream = futures_util::stream::unfold(0, move |step| {
                let gate = gate.clone();
                async move {
                    match step {
                        0 => Some((
                            Ok(Frame::data(Bytes::from_static(STALL_HEAD.as_bytes()))),
                            1,
                        )),
                        1 => {
                            gate.notified().await;
                            Some((
                                Err(std::io::Error::other("the dev server crashed mid-page")),
                                2,
                            ))
                        }
                        _ => None,
                    }
                }
            });
            let mut res = Response::new(StreamBody::new(stream).boxed_unsync());
            html_headers(&mut res);
            res
        }
        "/corrupt-gzip" => {
            let mut res = Response::new(full(
                "<!DOCTYPE html><html><head></head><body>not gzip</body></html>",
            ));
            html_headers(&mut res);
            res.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            res
        }
        "/accept-encoding" => {
            let seen = req
                .headers()
                .get(header::ACCEPT_ENCODING)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_else(|| "(none)".into());
            let mut res = Response::new(full(seen));
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            res
        }
        _ => {
            let Some(code) = path
                .strip_prefix("/html-status/")
                .and_then(|c| c.parse::<u16>().ok())
            else {
                return Response::builder().status(404).body(full("")).unwrap();
            };
            let page = "<!DOCTYPE html><html><head></head><body>status page</body></html>";
            let body = if matches!(code, 204 | 304) {
                full("")
            } else {
                full(page)
            };
            let mut res = Response::new(body);
            *res.status_mut() = StatusCode::from_u16(code).unwrap();
            html_headers(&mut res);
            if code == 206 {
                res.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes 0-{}/1000", page.len() - 1)).unwrap(),
                );
            }
            res
        }
    }
}

/// An encoder that can flush mid-stream (gzip's sync flush), for the stalled page.
enum Streamer {
    Identity,
    Gzip(Box<flate2::write::GzEncoder<Vec<u8>>>),
}

impl Streamer {
    fn new(coding: Coding) -> Streamer {
        match coding {
            Coding::Gzip => Streamer::Gzip(Box::new(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            ))),
            _ => Streamer::Identity,
        }
    }

    /// Encode `bytes` and return everything decodable so far.
    fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Streamer::Identity => bytes.to_vec(),
            Streamer::Gzip(e) => {
                e.write_all(bytes).unwrap();
                e.flush().unwrap();
                std::mem::take(e.get_mut())
            }
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Streamer::Identity => Vec::new(),
            Streamer::Gzip(e) => e.finish().unwrap(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The proxy in front of `url` (support's `Proxy::front` wants its own `Upstream`).
async fn front(url: &str, extra: &[&str]) -> (Proxy, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = extra.to_vec();
    args.push(url);
    (Proxy::start_in(dir.path(), &args).await, dir)
}

/// What a browser sends when it navigates.
const NAVIGATION: &[(&str, &str)] = &[
    ("sec-fetch-dest", "document"),
    ("sec-fetch-mode", "navigate"),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("accept-encoding", "gzip, deflate, br, zstd"),
];

fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::new(Bytes::new())).unwrap()
}

/// Send a request; the response head and the whole body (or the body's error).
async fn fetch(req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Result<Bytes, hyper::Error>) {
    let res = within("response", support::client().request(req))
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let body = within("body", body.collect()).await.map(|c| c.to_bytes());
    (parts.status, parts.headers, body)
}

/// The injected tag in `body` (with whatever nonce it carries), and where it starts.
fn find_tag(body: &[u8]) -> Vec<(usize, String)> {
    // The module tag, or the classic loader an XML document gets.
    let opens: [&[u8]; 2] = [
        b"<script type=\"module\" src=\"/__hmr/client.js\"",
        b"<script src=\"/__hmr/xml.js\"",
    ];
    let next = |from: usize| {
        opens
            .iter()
            .filter_map(|open| find(&body[from..], open))
            .min()
    };
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = next(from) {
        let start = from + i;
        let end = find(&body[start..], b"</script>").map(|e| start + e + 9);
        let tag = String::from_utf8_lossy(&body[start..end.unwrap_or(body.len())]).into_owned();
        found.push((start, tag));
        from = start + 1;
    }
    found
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Byte offset of the `nth` (1-based) occurrence of `needle`.
fn nth_offset(hay: &[u8], needle: &[u8], nth: usize) -> Option<usize> {
    let mut from = 0;
    for _ in 1..nth {
        from += find(&hay[from..], needle)? + 1;
    }
    find(&hay[from..], needle).map(|i| from + i)
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    match find(hay, from) {
        Some(i) => [&hay[..i], to, &hay[i + from.len()..]].concat(),
        None => panic!("edit: {:?} not found", String::from_utf8_lossy(from)),
    }
}

fn nonce_of(tag: &str) -> Option<String> {
    let rest = tag.split(" nonce=\"").nth(1)?;
    Some(rest.split('"').next()?.to_string())
}

// ---------------------------------------------------------------------------------------------
// The corpus

/// Check one corpus response against the manifest. `upstream` is what the upstream sent.
fn check_case(
    case: &Case,
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    upstream: &[u8],
) {
    let file = fixture(&case.file);
    assert_eq!(status.as_u16(), case.status, "{what}: status");
    if !case.inject && case.found_in_body {
        // Headers went out as for a page to rewrite; the body comes back decoded, unchanged.
        assert_eq!(body, file, "{what}: must pass byte-identical");
        assert!(headers.get(header::CONTENT_ENCODING).is_none(), "{what}");
        return;
    }
    if !case.inject {
        assert_eq!(body, upstream, "{what}: must pass byte-identical");
        assert_eq!(headers[header::ETAG], "\"fixture-v1\"", "{what}: ETag kept");
        assert_eq!(headers[header::LAST_MODIFIED], FIXTURE_DATE, "{what}");
        assert_eq!(headers[header::ACCEPT_RANGES], "bytes", "{what}");
        return;
    }
    let tags = find_tag(body);
    assert_eq!(tags.len(), 1, "{what}: exactly one tag, got {tags:?}");
    let (at, tag) = &tags[0];
    let nonce = nonce_of(tag);
    let xml = case.content_type.as_deref() == Some("application/xhtml+xml");
    match case.nonce.as_deref() {
        None if xml => assert_eq!(tag, XML_TAG, "{what}: tag"),
        None => assert_eq!(tag, TAG, "{what}: tag"),
        Some("fresh") => {
            let nonce = nonce.as_deref().expect("a fresh nonce on the tag");
            assert!(nonce.len() >= 16, "{what}: nonce {nonce}");
            assert_eq!(*tag, tag_with_nonce(nonce), "{what}");
        }
        Some(expected) => assert_eq!(*tag, tag_with_nonce(expected), "{what}: tag"),
    }
    let with_nonce = |s: &str| s.replace("{nonce}", nonce.as_deref().unwrap_or(""));

    // Output minus the tag is the file (plus the manifest's edits), byte for byte.
    let without: Vec<u8> = [&body[..*at], &body[at + tag.len()..]].concat();
    let mut expected = file.clone();
    for (from, to) in &case.edits {
        expected = replace(
            &expected,
            with_nonce(from).as_bytes(),
            with_nonce(to).as_bytes(),
        );
    }
    if without != expected {
        let common = without
            .iter()
            .zip(&expected)
            .take_while(|(a, b)| a == b)
            .count();
        panic!(
            "{what}: body minus tag differs from the fixture at byte {common}: got {:?}, want {:?}",
            String::from_utf8_lossy(
                &without[common.saturating_sub(20)..(common + 40).min(without.len())]
            ),
            String::from_utf8_lossy(
                &expected[common.saturating_sub(20)..(common + 40).min(expected.len())]
            ),
        );
    }

    // Where it went.
    let want_at = match (&case.before, &case.after) {
        (Some(marker), None) => nth_offset(&expected, marker.as_bytes(), case.nth),
        (None, Some(marker)) => {
            nth_offset(&expected, marker.as_bytes(), case.nth).map(|i| i + marker.len())
        }
        (None, None) if case.at_end => Some(expected.len()),
        _ => panic!("{}: give exactly one of before/after/at_end", case.file),
    };
    assert_eq!(Some(*at), want_at, "{what}: tag position");

    // Headers of a rewritten page.
    for gone in [
        header::CONTENT_LENGTH,
        header::CONTENT_ENCODING,
        header::ACCEPT_RANGES,
        // The upstream's date: an `If-Range` with it would splice upstream bytes onto these.
        header::LAST_MODIFIED,
    ] {
        assert!(headers.get(&gone).is_none(), "{what}: {gone} must go");
    }
    assert_eq!(
        headers[header::ETAG],
        "W/\"fixture-v1-hmr\"",
        "{what}: weak ETag"
    );
    assert_eq!(
        headers[header::VARY],
        "Accept-Encoding",
        "{what}: Vary kept"
    );
    let csp = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .map(|v| v.to_str().unwrap().to_string());
    let want_csp = case
        .csp_after
        .as_deref()
        .map(with_nonce)
        .or(case.csp.clone());
    assert_eq!(csp, want_csp, "{what}: Content-Security-Policy");
    assert_eq!(
        headers
            .get(header::CONTENT_SECURITY_POLICY_REPORT_ONLY)
            .map(|v| v.to_str().unwrap()),
        case.csp_report_only_after
            .as_deref()
            .or(case.csp_report_only.as_deref()),
        "{what}: report-only policies are edited as enforced ones are"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_page_in_every_coding_and_framing() {
    let cases = manifest();
    assert!(cases.len() >= 20, "the corpus has {} pages", cases.len());
    let fixtures = Fixtures::start().await;
    let (proxy, _dir) = front(&fixtures.url(), &[]).await;
    for case in &cases {
        let file = fixture(&case.file);
        let mut variants: Vec<(Coding, Option<usize>)> =
            ALL_CODINGS.iter().map(|c| (*c, None)).collect();
        // Tiny frames split every tag and every multi-byte character somewhere.
        variants.extend([
            (Coding::Identity, Some(1)),
            (Coding::Identity, Some(7)),
            (Coding::Gzip, Some(3)),
        ]);
        if file.len() > 100_000 {
            variants.retain(|(_, frame)| frame.is_none_or(|f| f > 1));
        }
        for (coding, frame) in variants {
            let mut url = proxy.url(&format!(
                "/fixtures/{}?coding={}",
                case.file,
                coding.param()
            ));
            if let Some(size) = frame {
                url.push_str(&format!("&frame={size}"));
            }
            let what = format!("{} ({}, frames {frame:?})", case.file, coding.param());
            let (status, headers, body) = fetch(request("GET", &url, NAVIGATION)).await;
            let body = body.unwrap_or_else(|e| panic!("{what}: body failed: {e}"));
            check_case(case, &what, status, &headers, &body, &coding.encode(&file));
            if !case.inject && !case.found_in_body {
                assert_eq!(
                    headers
                        .get(header::CONTENT_ENCODING)
                        .map(|v| v.to_str().unwrap()),
                    coding.header(),
                    "{what}: Content-Encoding kept"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_and_tag_reach_the_browser_while_the_upstream_stalls() {
    let fixtures = Fixtures::start().await;
    let (proxy, _dir) = front(&fixtures.url(), &[]).await;
    let head_with_tag = STALL_HEAD.replace("</head>", &format!("{TAG}</head>"));
    for coding in [Coding::Identity, Coding::Gzip] {
        let url = proxy.url(&format!("/stall?coding={}", coding.param()));
        let res = within(
            "response head",
            support::client().request(request("GET", &url, NAVIGATION)),
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 200);
        let mut body = res.into_body();
        let mut seen = Vec::new();
        // The upstream is parked on its gate: these bytes can only come from the head it sent.
        within("the head while the upstream stalls", async {
            while find(&seen, b"</head>").is_none() {
                let frame = body.frame().await.expect("more frames").expect("frame");
                if let Ok(data) = frame.into_data() {
                    seen.extend_from_slice(&data);
                }
            }
        })
        .await;
        assert_eq!(
            String::from_utf8_lossy(&seen),
            head_with_tag,
            "{coding:?}: the head, with the tag, before the rest"
        );
        fixtures.release();
        let rest = within("the rest", body.collect()).await.unwrap().to_bytes();
        assert_eq!(rest, STALL_REST, "{coding:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_page_streams_through_intact() {
    // 8 MiB of body after the head: the tag goes in early, the rest passes as it comes.
    let mut page = b"<!doctype html><html><head><title>big</title></head><body>".to_vec();
    while page.len() < 8 << 20 {
        page.extend_from_slice(b"<p>a line of a very long generated report</p>\n");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.html"), &page).unwrap();
    let served = Proxy::start_in(dir.path(), &["--serve", &dir.path().to_string_lossy()]).await;
    let (status, headers, body) = fetch(request("GET", &served.url("/big.html"), NAVIGATION)).await;
    let body = body.unwrap();
    assert_eq!(status, 200);
    assert!(headers.get(header::CONTENT_LENGTH).is_none());
    let at = find(&page, b"</head>").unwrap();
    let expected = [&page[..at], TAG.as_bytes(), &page[at..]].concat();
    assert!(body == expected, "big page changed beyond the tag");
}

// ---------------------------------------------------------------------------------------------
// What must pass untouched

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_are_not_page_loads_get_the_page_without_the_client() {
    let fixtures = Fixtures::start().await;
    let (proxy, _dir) = front(&fixtures.url(), &[]).await;
    let page = fixture("rails-exception.html");
    let url = proxy.url("/fixtures/rails-exception.html");
    let cases: &[&[(&str, &str)]] = &[
        &[("hx-request", "true"), ("sec-fetch-dest", "empty")],
        &[
            ("hx-request", "true"),
            ("hx-boosted", "true"),
            ("sec-fetch-dest", "document"),
        ],
        &[("turbo-frame", "posts")],
        &[("x-requested-with", "XMLHttpRequest")],
        &[("datastar-request", "true")],
        &[("x-up-target", "#main")],
        &[("sec-fetch-dest", "empty")],
        &[("sec-fetch-dest", "script")],
        &[("sec-fetch-dest", "style")],
        &[("sec-fetch-dest", "image")],
        &[("accept", "application/json")],
    ];
    for headers in cases {
        let (status, h, body) = fetch(request("GET", &url, headers)).await;
        assert_eq!(status, 500);
        assert_eq!(body.unwrap(), page, "{headers:?}");
        // HTML for anything but a tab (htmx, Turbo, a `fetch`) streams through the links'
        // re-pointing, which may change its length: its validator is weak.
        assert!(h.get(header::CONTENT_LENGTH).is_none(), "{headers:?}");
        assert_eq!(h[header::ETAG], "W/\"fixture-v1\"", "{headers:?}");
    }
    // The same page as a navigation, without fetch metadata (plain http://192.168… origins),
    // and inside an iframe: injected.
    for headers in [
        &[][..],
        &[("sec-fetch-dest", "iframe")][..],
        &[("sec-fetch-dest", "frame")][..],
    ] {
        let (_, _, body) = fetch(request("GET", &url, headers)).await;
        assert_eq!(find_tag(&body.unwrap()).len(), 1, "{headers:?}");
    }
    // HEAD: the headers the GET gets (RFC 9110, 9.3.2), not the upstream's: no length of the
    // page without the tag, no strong validator claiming its bytes.
    let (_, get, _) = fetch(request("GET", &url, NAVIGATION)).await;
    let (status, head, body) = fetch(request("HEAD", &url, NAVIGATION)).await;
    assert_eq!(status, 500);
    assert!(body.unwrap().is_empty());
    assert_eq!(head.get(header::CONTENT_LENGTH), None, "{head:?}");
    assert_eq!(head[header::ETAG], "W/\"fixture-v1-hmr\"");
    for name in get.keys().chain(head.keys()) {
        if name != header::TRANSFER_ENCODING && name != header::DATE {
            let values =
                |map: &http::HeaderMap| map.get_all(name).iter().cloned().collect::<Vec<_>>();
            assert_eq!(values(&head), values(&get), "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_without_a_whole_body_pass_untouched() {
    let fixtures = Fixtures::start().await;
    let (proxy, _dir) = front(&fixtures.url(), &[]).await;
    for code in [204u16, 304, 206] {
        let (status, h, body) = fetch(request(
            "GET",
            &proxy.url(&format!("/html-status/{code}")),
            NAVIGATION,
        ))
        .await;
        assert_eq!(status.as_u16(), code);
        assert_eq!(h[header::ETAG], "\"fixture-v1\"", "{code}");
        assert!(find_tag(&body.unwrap()).is_empty(), "{code}");
        // A 304 says where the batches stand: the browser's copy of the page is current.
        let position = h
            .get_all("server-timing")
            .iter()
            .any(|v| v.as_bytes().starts_with(b"hmr;desc="));
        assert_eq!(position, code == 304, "{code}: {h:?}");
    }
    for code in [200u16, 404, 500, 503] {
        let (status, _, body) = fetch(request(
            "GET",
            &proxy.url(&format!("/html-status/{code}")),
            NAVIGATION,
        ))
        .await;
        assert_eq!(status.as_u16(), code);
        assert_eq!(find_tag(&body.unwrap()).len(), 1, "{code}");
    }
}

/// A page that answers a form sent with POST says so (`hmr-post`), so its client reloads it with
/// a GET: a reload sent the form again with every save. A page fetched with GET does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_answering_a_post_says_so() {
    let fixtures = Fixtures::start().await;
    let (proxy, _dir) = front(&fixtures.url(), &[]).await;
    for method in ["GET", "POST"] {
        let (status, h, body) =
            fetch(request(method, &proxy.url("/html-status/200"), NAVIGATION)).await;
        assert_eq!(status, 200);
        assert_eq!(find_tag(&body.unwrap()).len(), 1, "{method}");
        let metrics: Vec<&str> = h
            .get_all("server-timing")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(
            metrics.contains(&"hmr-post"),
            method == "POST",
            "{method}: {metrics:?}"
        );
    }
    // The proxy's own page for a POST the dev server never got (it was down) does not say so:
    // its reload must send the form once the server is back, which a GET would lose.
    let dead = format!("http://{}", support::dead_addr().await);
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(dir.path(), &[&dead, "--watch", "."]).await;
    let (status, h, _) = fetch(request("POST", &proxy.url("/form"), NAVIGATION)).await;
    assert_eq!(status, 502);
    let metrics: Vec<&str> = h
        .get_all("server-timing")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(!metrics.contains(&"hmr-post"), "{metrics:?}");
    assert!(
        metrics.iter().any(|m| m.starts_with("hmr;desc=")),
        "{metrics:?}"
    );
}

/// An upstream that answers one canned response, to serve what the fixture upstream does not:
/// codings the proxy cannot decode.
async fn canned(
    headers: &'static [(&'static str, &'static str)],
    body: Vec<u8>,
) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let body = Bytes::from(body);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<Incoming>| {
                    let mut res = Response::new(Full::new(body.clone()));
                    for (k, v) in headers {
                        res.headers_mut().append(*k, HeaderValue::from_static(v));
                    }
                    async move { Ok::<_, Infallible>(res) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_pages_pass_untouched() {
    let page = fixture("express-404.html");
    let stacked = Coding::Brotli.encode(&Coding::Gzip.encode(&page));
    for (headers, body) in [
        (
            &[
                ("content-type", "text/html"),
                ("content-encoding", "compress"),
            ][..],
            page.clone(),
        ),
        (
            &[
                ("content-type", "text/html"),
                ("content-encoding", "gzip, br"),
            ][..],
            stacked.clone(),
        ),
        (
            &[
                ("content-type", "text/html"),
                ("content-encoding", "gzip"),
                ("content-encoding", "br"),
            ][..],
            stacked,
        ),
        (
            &[("content-type", "text/html; charset=iso-2022-jp")][..],
            page.clone(),
        ),
    ] {
        let (url, task) = canned(headers, body.clone()).await;
        let (proxy, _dir) = front(&url, &[]).await;
        let (status, h, got) = fetch(request("GET", &proxy.url("/"), NAVIGATION)).await;
        assert_eq!(status, 200);
        assert_eq!(got.unwrap(), body, "{headers:?}");
        assert_eq!(
            h[header::CONTENT_LENGTH],
            body.len().to_string(),
            "{headers:?}"
        );
        task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Failures

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_reach_the_browser_as_failures() {
    let fixtures = Fixtures::start().await;
    let (proxy, _dir) = front(&fixtures.url(), &[]).await;
    // A body that breaks off is not finished off as if complete: the client sees an error.
    let res = within(
        "response head",
        support::client().request(request("GET", &proxy.url("/broken"), NAVIGATION)),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let mut seen = Vec::new();
    within("the head", async {
        while find(&seen, b"</head>").is_none() {
            let frame = body.frame().await.expect("more frames").expect("frame");
            if let Ok(data) = frame.into_data() {
                seen.extend_from_slice(&data);
            }
        }
    })
    .await;
    assert_eq!(find_tag(&seen).len(), 1);
    fixtures.release();
    let rest = within("the failure", body.collect()).await;
    assert!(rest.is_err(), "a broken upstream body must fail downstream");
    // Corrupt gzip fails on the first bytes, before the head is out: a 502 page that says why
    // and carries the client, not a dropped connection and never garbage.
    let (status, _, body) = fetch(request("GET", &proxy.url("/corrupt-gzip"), NAVIGATION)).await;
    assert_eq!(status, 502);
    let body = body.expect("a complete page");
    assert_eq!(find_tag(&body).len(), 1);
    assert!(find(&body, b"could not be read").is_some());
    // The proxy is still fine afterwards.
    let (status, _, body) = fetch(request(
        "GET",
        &proxy.url("/fixtures/express-404.html"),
        NAVIGATION,
    ))
    .await;
    assert_eq!(status, 404);
    assert_eq!(find_tag(&body.unwrap()).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Requests upstream, switches, static mode

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn navigations_ask_upstream_for_uncompressed_pages() {
    let fixtures = Fixtures::start().await;
    let (proxy, _dir) = front(&fixtures.url(), &[]).await;
    let url = proxy.url("/accept-encoding");
    let (_, _, seen) = fetch(request(
        "GET",
        &url,
        &[
            ("sec-fetch-dest", "document"),
            ("accept-encoding", "gzip, compress, br;q=0.9, sdch, zstd"),
        ],
    ))
    .await;
    assert_eq!(seen.unwrap(), "identity");
    let (_, _, seen) = fetch(request(
        "GET",
        &url,
        &[
            ("sec-fetch-dest", "image"),
            ("accept-encoding", "gzip, compress"),
        ],
    ))
    .await;
    assert_eq!(
        seen.unwrap(),
        "gzip, compress",
        "subresources are not touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_inject_leaves_pages_alone_and_still_serves_the_client() {
    let fixtures = Fixtures::start().await;
    let (proxy, _dir) = front(&fixtures.url(), &["--no-inject"]).await;
    let page = fixture("django-debug-500.html");
    let (status, h, body) = fetch(request(
        "GET",
        &proxy.url("/fixtures/django-debug-500.html"),
        NAVIGATION,
    ))
    .await;
    assert_eq!(status, 500);
    assert_eq!(body.unwrap(), page);
    assert_eq!(h[header::CONTENT_LENGTH], page.len().to_string());
    let (status, _, body) = fetch(request("GET", &proxy.url("/__hmr/client.js"), &[])).await;
    assert_eq!(status, 200);
    assert!(!body.unwrap().is_empty());
}

/// Every page load revalidates the client: a browser that has it gets a 304, one that accepts
/// gzip gets it compressed, one that does not gets the source as shipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_is_sent_compressed_and_revalidated() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(dir.path(), &["--serve", &dir.path().to_string_lossy()]).await;
    let url = proxy.url("/__hmr/client.js");
    let gzip = [("accept-encoding", "gzip, deflate, br, zstd")];
    let (status, h, body) = fetch(request("GET", &url, &gzip)).await;
    assert_eq!(status, 200);
    assert_eq!(h[header::CONTENT_ENCODING], "gzip");
    assert_eq!(h[header::VARY], "Accept-Encoding");
    let compressed = body.unwrap();
    assert!(compressed.len() < hmr_proxy::client::SOURCE.len() / 2);
    let mut source = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut source,
    )
    .unwrap();
    assert_eq!(source, hmr_proxy::client::SOURCE);

    let (status, plain, body) = fetch(request("GET", &url, &[])).await;
    assert_eq!(status, 200);
    assert!(plain.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(body.unwrap(), hmr_proxy::client::SOURCE.as_bytes());
    assert_eq!(plain[header::ETAG], h[header::ETAG]);

    let tag = h[header::ETAG].to_str().unwrap().to_owned();
    let (status, h, body) = fetch(request(
        "GET",
        &url,
        &[gzip[0], ("if-none-match", tag.as_str())],
    ))
    .await;
    assert_eq!(status, 304);
    assert_eq!(h[header::ETAG], tag.as_str());
    assert!(body.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_mode_injects_into_html_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let page = fixture("rails-exception.html");
    std::fs::write(dir.path().join("index.html"), &page).unwrap();
    std::fs::write(dir.path().join("data.json"), b"{\"head\":\"</head>\"}").unwrap();
    let proxy = Proxy::start_in(dir.path(), &["--serve", &dir.path().to_string_lossy()]).await;
    let (status, h, body) = fetch(request("GET", &proxy.url("/"), NAVIGATION)).await;
    assert_eq!(status, 200);
    let body = body.unwrap();
    let at = find(&page, b"</head>").unwrap();
    assert_eq!(body, [&page[..at], TAG.as_bytes(), &page[at..]].concat());
    assert!(h.get(header::CONTENT_LENGTH).is_none());
    assert!(h.get(header::ACCEPT_RANGES).is_none());

    let (status, _, body) = fetch(request(
        "GET",
        &proxy.url("/index.html"),
        &[("sec-fetch-dest", "document"), ("range", "bytes=0-99")],
    ))
    .await;
    assert_eq!(status, 206);
    assert_eq!(body.unwrap(), &page[..100]);

    let (status, _, body) = fetch(request("GET", &proxy.url("/data.json"), NAVIGATION)).await;
    assert_eq!(status, 200);
    assert_eq!(body.unwrap(), "{\"head\":\"</head>\"}");
}

// ---------------------------------------------------------------------------------------------
// Headless Chromium

/// How long the whole Chromium run may take: it starts a browser, which on a loaded two-core CI
/// box takes seconds, then loads each page (milliseconds each).
const BROWSER_PATIENCE: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_runs_the_client_under_every_csp_variant() {
    if std::env::var("HMR_PROXY_SKIP_BROWSER").as_deref() == Ok("1") {
        println!("skipped: HMR_PROXY_SKIP_BROWSER=1 (the Chromium CSP check did not run)");
        return;
    }
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: run scripts/install-test-deps \
         (or set HMR_PROXY_SKIP_BROWSER=1 to skip the browser test)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/install-test-deps \
         (or set HMR_PROXY_SKIP_BROWSER=1 to skip the browser test)"
    );

    let fixtures = Fixtures::start().await;
    let (proxy, _dir) = front(&fixtures.url(), &[]).await;
    let pages: Vec<serde_json::Value> = manifest()
        .into_iter()
        .filter(|c| c.browser)
        .map(|c| serde_json::json!({"path": format!("/fixtures/{}", c.file), "pageScript": c.page_script}))
        .collect();
    assert!(
        pages.len() >= 8,
        "CSP variants in the browser run: {}",
        pages.len()
    );
    let origin = proxy.url("");
    let spec = serde_json::Value::Array(pages).to_string();
    let script = browser_dir.join("csp.mjs");
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .arg(origin)
            .arg(spec)
            .output()
    });
    let output = tokio::time::timeout(BROWSER_PATIENCE, run)
        .await
        .expect("the Chromium run finished in time")
        .unwrap()
        .expect("node runs (install Node.js, or set HMR_PROXY_SKIP_BROWSER=1)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "Chromium found problems:\n{stdout}\n{stderr}"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
}
