//! Throughput of the injector (MB/s of upstream body) through its public entry point,
//! `Injector::apply`, on pages in 16 KiB frames as they come off a socket:
//!
//! - `pass-through`: injection off, the same bodies collected: the floor every response pays;
//! - `page`: a document whose plain head ends early, the common case (the tag goes in without
//!   lol_html, then raw bytes);
//! - `page-lol_html`: the same with a `<noscript>` in its head, which sends it through lol_html
//!   (parse up to `</head>`, then raw bytes);
//! - `fragment`: no doctype, html, head or body, so lol_html scans every byte: the worst case;
//! - `gzip-page`: the page gzip-encoded upstream, decoded before rewriting.
//!
//! Run: `cargo bench --bench inject` (criterion prints `thrpt` in MiB/s or GiB/s).

// A panic while building inputs is a broken benchmark, not a crash on user input.
#![allow(clippy::expect_used)]

use std::io::Write;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use hmr_proxy::body::{self, Body, BoxError};
use hmr_proxy::inject::{Injector, RequestFacts};

/// Frame size of the upstream body: what hyper typically hands over from a socket read.
const FRAME: usize = 16 * 1024;

/// A framework-ish page of about `size` bytes: a short head, then paragraphs. The head is plain,
/// so the tag goes in without lol_html (`head_scan`).
fn page(size: usize) -> Vec<u8> {
    page_with_head(size, "")
}

/// The same page with `extra` at the start of the head: a `<noscript>` there sends it through
/// lol_html, the path every page with an unusual head takes.
fn page_with_head(size: usize, extra: &str) -> Vec<u8> {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n{extra}<meta charset=\"utf-8\">\n\
         <title>Benchmark page</title>\n<link rel=\"stylesheet\" href=\"/static/app.css\">\n\
         <script type=\"module\" src=\"/static/app.js\"></script>\n</head>\n<body>\n"
    )
    .into_bytes();
    let mut i = 0;
    while out.len() < size {
        out.extend_from_slice(
            format!(
                "<article class=\"post\" id=\"p{i}\"><h2><a href=\"/posts/{i}\">Post {i}</a></h2>\
                 <p>Lorem ipsum dolor sit amet, <em>consectetur</em> adipiscing elit &amp; more.</p></article>\n"
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(size);
    out
}

/// Markup with no document structure: lol_html has to look at all of it.
fn fragment(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    let mut i = 0;
    while out.len() < size {
        out.extend_from_slice(
            format!(
                "<tr data-row=\"{i}\"><td class=\"name\">Row {i}</td><td>value &lt; {i}</td></tr>\n"
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(size);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

fn frames(bytes: &[u8]) -> Vec<Bytes> {
    bytes.chunks(FRAME).map(Bytes::copy_from_slice).collect()
}

fn response(frames: &[Bytes], coding: Option<&'static str>) -> Response<Body> {
    let frames: Vec<Result<Frame<Bytes>, BoxError>> =
        frames.iter().map(|f| Ok(Frame::data(f.clone()))).collect();
    let mut res = Response::new(body::boxed(StreamBody::new(futures_util::stream::iter(
        frames,
    ))));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Some(coding) = coding {
        res.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
    }
    res
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let navigation = Request::get("http://localhost:3000/")
        .header("sec-fetch-dest", "document")
        .body(())
        .expect("request");
    let facts = RequestFacts::of(&navigation);
    let on = Injector::new(true);
    let off = Injector::new(false);

    let mut group = c.benchmark_group("inject");
    for (label, size) in [
        ("2KB", 2 * 1024),
        ("100KB", 100 * 1024),
        ("5MB", 5 * 1024 * 1024),
    ] {
        let page = page(size);
        let page_frames = frames(&page);
        let parsed_frames = frames(&page_with_head(
            size,
            "<noscript><style>p{}</style></noscript>",
        ));
        let fragment_frames = frames(&fragment(size));
        let gzip_frames = frames(&gzip(&page));
        group.throughput(Throughput::Bytes(size as u64));
        if size > 1024 * 1024 {
            group.sample_size(20);
        }
        let cases: [(&str, &Injector, &[Bytes], Option<&'static str>); 5] = [
            ("pass-through", &off, &page_frames, None),
            ("page", &on, &page_frames, None),
            ("page-lol_html", &on, &parsed_frames, None),
            ("fragment", &on, &fragment_frames, None),
            ("gzip-page", &on, &gzip_frames, Some("gzip")),
        ];
        for (name, injector, frames, coding) in cases {
            group.bench_with_input(BenchmarkId::new(name, label), &frames, |b, frames| {
                b.iter(|| {
                    let out = rt
                        .block_on(async {
                            let res = injector.apply(&facts, response(frames, coding)).await;
                            res.into_body().collect().await
                        })
                        .expect("body")
                        .to_bytes();
                    assert!(out.len() >= size);
                    out
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
