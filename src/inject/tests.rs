//! Unit tests of the injector as a whole: placement, byte-exactness, streaming and bail-outs,
//! on hand-written cases, generated and hostile HTML (proptest), and the html5lib corpus.
//! Sockets, real upstreams and fixtures are in `tests/inject.rs`.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body as _, Frame};
use http_body_util::BodyExt;
use proptest::prelude::*;
use tokio::sync::mpsc;

use super::rewrite::{HOLD_LIMIT, rewrite, rewrite_page, rewrite_with};
use super::*;
use crate::body::{self, BoxError};
use crate::client::TAG;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// A body of `input` in frames of `chunk` bytes.
fn chunked(input: &[u8], chunk: usize) -> Body {
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = input
        .chunks(chunk.max(1))
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
        frames,
    )))
}

/// Run the rewriter alone (no headers) over `input` cut into `chunk`-byte frames.
fn run(rt: &tokio::runtime::Runtime, input: &[u8], chunk: usize) -> Vec<u8> {
    let body = rewrite(chunked(input, chunk), None, csp::Csp::new(None));
    rt.block_on(body.collect()).unwrap().to_bytes().to_vec()
}

/// The whole of `input` in one frame, with or without the plain-head fast path.
fn run_scanning(rt: &tokio::runtime::Runtime, input: &[u8], scan_head: bool) -> Vec<u8> {
    let body = rewrite_with(
        chunked(input, usize::MAX),
        None,
        csp::Csp::new(None),
        scan_head,
    );
    rt.block_on(body.collect()).unwrap().to_bytes().to_vec()
}

/// Where the tag went: `Ok(None)` when output == input, `Ok(Some(at))` when output is input with
/// exactly one tag inserted at `at`, `Err` otherwise.
fn tag_position(input: &[u8], output: &[u8], tag: &[u8]) -> Result<Option<usize>, String> {
    if output == input {
        return Ok(None);
    }
    if output.len() != input.len() + tag.len() {
        return Err(format!(
            "output is {} bytes, input {} + tag {}",
            output.len(),
            input.len(),
            tag.len()
        ));
    }
    let prefix = input.iter().zip(output).take_while(|(a, b)| a == b).count();
    let suffix = input
        .iter()
        .rev()
        .zip(output.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let lowest = input.len().saturating_sub(suffix);
    (lowest..=prefix.min(input.len()))
        .find(|&at| &output[at..at + tag.len()] == tag)
        .map(Some)
        .ok_or_else(|| "output is not input plus one tag".to_string())
}

/// `input` with `@` replaced by nothing, and where the `@` was: the expected tag position.
fn marked(case: &str) -> (Vec<u8>, Option<usize>) {
    let at = case.find('@');
    (case.replace('@', "").into_bytes(), at)
}

#[test]
fn placement() {
    let rt = runtime();
    // `@` marks where the tag must go; no `@`: the page must come out unchanged.
    let cases = [
        // End of head.
        "<!doctype html><html><head><title>t</title>@</head><body>x</body></html>",
        "<html><head>@</head><body></body></html>",
        "<HEAD><meta charset=utf-8>@</HEAD><BODY>",
        // Several heads and bodies: the first that counts.
        "<!doctype html><head>@</head><head></head><body><body>",
        // Start of body when there is no head end tag.
        "<!doctype html><html><head><title>t</title><body>@<p>x",
        "<!doctype html><body class=\"a\">@<p>x</p></body>",
        "<body/>@<p>self-closing syntax kept as written",
        "<html><body>@</body></html>",
        // Tag-like text that must not match.
        "<!doctype html><!-- <head></head> <body> --><head>@</head>",
        "<!doctype html><head><script>var s = '</head><body>';</script>@</head>",
        "<!doctype html><head><noscript><style>a{}</style></head><body></noscript>@</head>",
        "<!doctype html><head><title></head><body></title>@</head>",
        "<!doctype html><body>@<textarea></head><body></textarea>",
        "<!doctype html><head><template><head></head><body></body></template>@</head>",
        "<!doctype html><head><template><template></template><body></template>@</head>",
        "<!doctype html><head><style>/* </head> */</style>@</head>",
        // A body element inside a written head does not move the tag before an import map.
        "<!doctype html><html><head><title>x</title><my-el></my-el>\
         <script type=importmap>{}</script>@</head><body>",
        // No head end, no body: after the doctype, else before <html>, else after <head>.
        "<!doctype html>@<html><title>t</title><p>x</p></html>",
        "<!-- generated --><!DOCTYPE html>@<title>t</title><p>x",
        "<!doctype html>@<p>only a doctype",
        "<!-- c -->@<html><title>t</title></html>",
        "<head>@<title>t</title><p>x",
        "\u{feff}<!doctype html>@<title>BOM stays first</title>",
        // Fragments: no doctype, no html/head/body: untouched.
        "<div class=\"card\"><p>hello</p></div>",
        "<tr><td>1</td></tr>",
        "plain text",
        "",
        "<template><head></head><body></body></template>",
        "<!-- <html><head></head><body> -->",
        "<script>document.write('<body>')</script>",
        // SVG's own <template> is not inert; `<body>` inside foreign content is HTML again.
        "<svg><template></template></svg><body>@",
    ];
    for case in cases {
        let (input, at) = marked(case);
        for chunk in [1, 2, 3, 5, 16, usize::MAX] {
            let output = run(&rt, &input, chunk);
            let got = tag_position(&input, &output, TAG.as_bytes());
            assert_eq!(
                got,
                Ok(at),
                "{case:?} in chunks of {chunk}: {:?}",
                String::from_utf8_lossy(&output)
            );
        }
    }
}

#[test]
fn non_utf8_bytes_survive_in_every_ascii_compatible_encoding() {
    let rt = runtime();
    let body: &[u8] = b"\x82\xa0\x83\x65\x83\x58\x83\x67 \x93\xfa\x96\x7b\xe9\xe8\xff\x00\x80";
    for (charset, meta) in [
        (None, "<meta charset=\"shift_jis\">"),
        (
            None,
            "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=euc-jp\">",
        ),
        (Some(encoding_rs::WINDOWS_1252), ""),
        (Some(encoding_rs::GBK), ""),
        (Some(encoding_rs::ISO_8859_2), ""),
        (Some(encoding_rs::SHIFT_JIS), "<meta charset=\"utf-8\">"),
    ] {
        let mut input = format!("<!doctype html><html><head>{meta}<title>").into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(b"</title></head><body>");
        input.extend_from_slice(body);
        input.extend_from_slice(b"</body></html>");
        for chunk in [1, 7, usize::MAX] {
            let out = rt
                .block_on(rewrite(chunked(&input, chunk), charset, csp::Csp::new(None)).collect())
                .unwrap()
                .to_bytes();
            let at = tag_position(&input, &out, TAG.as_bytes()).unwrap();
            let head_end = input.windows(7).position(|w| w == b"</head>").unwrap();
            assert_eq!(at, Some(head_end), "{charset:?} {meta} chunk {chunk}");
        }
    }
}

#[test]
fn tags_across_the_slices_of_a_big_chunk() {
    let rt = runtime();
    // `</head>` (or `<body>`) straddling every position around the 2 KiB slice boundaries.
    for pad in (2020..2070).chain(4070..4110) {
        for (end_of_head, marker) in [("</style></head>", "</head>"), ("</style><body>", "")] {
            let mut doc = b"<!doctype html><html><head><style>".to_vec();
            doc.resize(pad, b'a');
            doc.extend_from_slice(end_of_head.as_bytes());
            doc.extend(std::iter::repeat_n(b'x', 10_000));
            let want = match marker {
                "" => doc.windows(6).position(|w| w == b"<body>").map(|i| i + 6),
                m => doc.windows(m.len()).position(|w| w == m.as_bytes()),
            };
            for chunk in [usize::MAX, 5000, 2048] {
                let out = run(&rt, &doc, chunk);
                assert_eq!(
                    tag_position(&doc, &out, TAG.as_bytes()),
                    Ok(want),
                    "pad {pad}, {end_of_head}, chunk {chunk}"
                );
            }
        }
    }
}

#[test]
fn utf16_with_bom_passes_through() {
    let rt = runtime();
    for bom in [&[0xFF, 0xFE][..], &[0xFE, 0xFF][..]] {
        let mut input = bom.to_vec();
        for unit in "<html><head></head><body>x</body></html>".encode_utf16() {
            let bytes = if bom[0] == 0xFF {
                unit.to_le_bytes()
            } else {
                unit.to_be_bytes()
            };
            input.extend_from_slice(&bytes);
        }
        for chunk in [1, 2, usize::MAX] {
            assert_eq!(run(&rt, &input, chunk), input);
        }
    }
}

/// A body fed by the test one frame at a time, to watch what comes out between frames.
struct Feed {
    rx: mpsc::UnboundedReceiver<Result<Bytes, BoxError>>,
}

impl http_body::Body for Feed {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx).map(|f| f.map(|r| r.map(Frame::data)))
    }
}

/// Everything the body yields without waiting for more input.
fn available(body: &mut Body) -> Vec<u8> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    while let Poll::Ready(Some(frame)) = Pin::new(&mut *body).poll_frame(&mut cx) {
        if let Ok(data) = frame.unwrap().into_data() {
            out.extend_from_slice(&data);
        }
    }
    out
}

#[test]
fn the_head_goes_out_before_the_rest_arrives() {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut body = rewrite(body::boxed(Feed { rx }), None, csp::Csp::new(None));
    let head = "<!doctype html><html><head><title>t</title></head>";
    tx.send(Ok(Bytes::from(head))).unwrap();
    let first = String::from_utf8(available(&mut body)).unwrap();
    assert_eq!(
        first,
        head.replace("</head>", &format!("{TAG}</head>")),
        "the head, tag included, is out while the upstream stalls"
    );
    // From here on, frames pass through as they come.
    tx.send(Ok(Bytes::from("<body>one"))).unwrap();
    assert_eq!(available(&mut body), b"<body>one");
    tx.send(Ok(Bytes::from("two</body>"))).unwrap();
    assert_eq!(available(&mut body), b"two</body>");
    drop(tx);
    assert!(available(&mut body).is_empty());
    assert!(body.is_end_stream());
}

#[test]
fn body_start_goes_out_at_once() {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut body = rewrite(body::boxed(Feed { rx }), None, csp::Csp::new(None));
    tx.send(Ok(Bytes::from("<html><body><p>first"))).unwrap();
    assert_eq!(
        String::from_utf8(available(&mut body)).unwrap(),
        format!("<html><body>{TAG}<p>first")
    );
}

/// A response the browser loads as a document but without document tags (a framework's
/// `Hello, World!`) gets the tag at its end, in any chunking; the same body asked for without
/// saying so (it may be a fragment) does not.
#[test]
fn a_navigation_without_document_tags_gets_the_tag_at_the_end() {
    let rt = runtime();
    for input in [
        "Hello, World!",
        "<h1>Hello</h1>\n<p>no head, no body</p>",
        "",
    ] {
        for chunk in [1, 3, usize::MAX] {
            let body = rewrite_page(
                chunked(input.as_bytes(), chunk),
                None,
                csp::Csp::new(None),
                true,
            );
            let output = rt.block_on(body.collect()).unwrap().to_bytes();
            assert_eq!(
                output,
                format!("{input}{TAG}").as_bytes(),
                "{input:?} in {chunk}-byte chunks"
            );
        }
        assert_eq!(
            run(&rt, input.as_bytes(), usize::MAX),
            input.as_bytes(),
            "{input:?}"
        );
    }
    // A document still gets the tag where documents do, not at the end.
    let body = rewrite_page(
        chunked(b"<!doctype html><p>x", 4),
        None,
        csp::Csp::new(None),
        true,
    );
    let output = rt.block_on(body.collect()).unwrap().to_bytes();
    assert_eq!(output, format!("<!doctype html>{TAG}<p>x").as_bytes());
}

#[test]
fn fragments_stream_without_holding() {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut body = rewrite(body::boxed(Feed { rx }), None, csp::Csp::new(None));
    tx.send(Ok(Bytes::from("<div><p>first</p>"))).unwrap();
    assert_eq!(available(&mut body), b"<div><p>first</p>");
}

#[test]
fn a_document_without_head_or_body_is_held_only_up_to_the_limit() {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut body = rewrite(body::boxed(Feed { rx }), None, csp::Csp::new(None));
    let start = "<!doctype html><html lang=en><title>t</title>";
    tx.send(Ok(Bytes::from(start))).unwrap();
    assert_eq!(
        available(&mut body),
        b"<!doctype html>",
        "up to the anchor only"
    );
    // Head content, which a `</head>` may still follow: held.
    let links = Bytes::from("<link rel=preload href=/a.js as=script>\n".repeat(1024));
    let mut sent = start.len();
    let mut out = Vec::new();
    while out.is_empty() {
        assert!(sent < 2 * HOLD_LIMIT, "output held past the limit");
        tx.send(Ok(links.clone())).unwrap();
        sent += links.len();
        out = available(&mut body);
    }
    assert!(sent > HOLD_LIMIT);
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.starts_with(&format!("{TAG}<html lang=en>")),
        "{}",
        &out[..80]
    );
    // Then frames pass through.
    let paragraph = Bytes::from("<p>a paragraph of the page</p>\n");
    tx.send(Ok(paragraph.clone())).unwrap();
    assert_eq!(available(&mut body), paragraph);

    // One frame far bigger than the limit: the same, within that frame.
    let mut doc = start.as_bytes().to_vec();
    doc.extend(std::iter::repeat_n(b'x', 3 * HOLD_LIMIT));
    let out = run(&runtime(), &doc, usize::MAX);
    assert_eq!(
        tag_position(&doc, &out, TAG.as_bytes()),
        Ok(Some("<!doctype html>".len()))
    );
}

/// A document without `</head>` or `<body>` that streams (a log, a progress page) is held only
/// until its first element that cannot be in a head: from there on no `</head>` can follow, so
/// the tag goes in at the anchor and every chunk leaves as it comes.
#[test]
fn a_document_without_head_or_body_streams_once_its_body_begins() {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut body = rewrite(body::boxed(Feed { rx }), None, csp::Csp::new(None));
    tx.send(Ok(Bytes::from(
        "<!doctype html>\n<meta charset=utf-8>\n<title>Migration log</title>\n",
    )))
    .unwrap();
    assert_eq!(
        available(&mut body),
        b"<!doctype html>",
        "held at the anchor"
    );
    tx.send(Ok(Bytes::from("<pre>\n"))).unwrap();
    assert_eq!(
        String::from_utf8(available(&mut body)).unwrap(),
        format!("{TAG}\n<meta charset=utf-8>\n<title>Migration log</title>\n<pre>\n")
    );
    for line in ["step 1 of 3\n", "step 2 of 3\n"] {
        tx.send(Ok(Bytes::from(line))).unwrap();
        assert_eq!(available(&mut body), line.as_bytes());
    }
}

/// The same with a `<head>` tag but no `</head>` (a PHP page that echoes its head, then flushes
/// a row at a time): once the upstream pauses after an element that ends the head, the tag goes
/// before that element and every later chunk leaves as it comes. Within one burst a `</head>`
/// still places the tag.
#[test]
fn a_head_without_its_end_streams_once_the_body_begins_and_the_upstream_pauses() {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut body = rewrite(body::boxed(Feed { rx }), None, csp::Csp::new(None));
    let head = "<!doctype html><html><head><title>Import</title>\n";
    tx.send(Ok(Bytes::from(head))).unwrap();
    assert_eq!(
        available(&mut body),
        b"<!doctype html>",
        "held at the anchor"
    );
    tx.send(Ok(Bytes::from("<p>row 1</p>\n"))).unwrap();
    assert_eq!(
        String::from_utf8(available(&mut body)).unwrap(),
        format!("<html><head><title>Import</title>\n{TAG}<p>row 1</p>\n")
    );
    for row in ["<p>row 2</p>\n", "<p>row 3</p></body></html>"] {
        tx.send(Ok(Bytes::from(row))).unwrap();
        assert_eq!(available(&mut body), row.as_bytes());
    }

    let (tx, rx) = mpsc::unbounded_channel();
    let mut body = rewrite(body::boxed(Feed { rx }), None, csp::Csp::new(None));
    let page = "<html><head><div></div><script type=importmap>{}</script></head><body>";
    tx.send(Ok(Bytes::from(page))).unwrap();
    assert_eq!(
        String::from_utf8(available(&mut body)).unwrap(),
        page.replace("</head>", &format!("{TAG}</head>"))
    );
}

#[test]
fn upstream_errors_end_the_body_with_an_error() {
    let rt = runtime();
    let (tx, rx) = mpsc::unbounded_channel();
    let body = rewrite(body::boxed(Feed { rx }), None, csp::Csp::new(None));
    tx.send(Ok(Bytes::from(
        "<!doctype html><html><head><title>t</title>",
    )))
    .unwrap();
    tx.send(Err("upstream reset".into())).unwrap();
    // What was held back for a `</head>` goes out first, the tag at the anchor, then the error.
    let mut body = body;
    let (out, err) = rt.block_on(async {
        let mut out = Vec::new();
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    out.extend_from_slice(&frame.into_data().unwrap());
                    // hyper ends a body that says so cleanly, without polling for the error.
                    assert!(!body.is_end_stream(), "the error must still come");
                }
                Some(Err(err)) => return (out, Some(err)),
                None => return (out, None),
            }
        }
    });
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("upstream reset")
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("<!doctype html>{TAG}<html><head><title>t</title>")
    );
}

#[test]
fn memory_limit_bails_out_gracefully() {
    let rt = runtime();
    // A start tag lol_html has to buffer whole, bigger than its memory budget.
    let mut input = b"<!doctype html><html><head><meta content=\"".to_vec();
    input.extend(std::iter::repeat_n(b'a', 9 * 1024 * 1024));
    input.extend_from_slice(b"\"></head><body>x</body></html>");
    let output = run(&rt, &input, 64 * 1024);
    let at = tag_position(&input, &output, TAG.as_bytes()).unwrap();
    assert_eq!(at, Some("<!doctype html>".len()), "tag at the anchor");
}

#[test]
fn csp_meta_is_edited_and_the_nonce_reused() {
    let rt = runtime();
    let input = "<!doctype html><head>\
        <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'nonce-pg1'\">\
        </head><body>";
    let out = rt
        .block_on(rewrite(chunked(input.as_bytes(), 7), None, csp::Csp::new(None)).collect())
        .unwrap()
        .to_bytes();
    let out = String::from_utf8(out.to_vec()).unwrap();
    assert_eq!(
        out,
        format!(
            "<!doctype html><head>\
            <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'nonce-pg1'; connect-src 'self'\">\
            {}</head><body>",
            crate::client::tag_with_nonce("pg1")
        )
    );
}

fn request(headers: &[(&str, &str)]) -> RequestFacts {
    let mut req = Request::get("http://localhost:3000/page");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    RequestFacts::of(&req.body(()).unwrap())
}

fn html_response(body: &'static str, headers: &[(&'static str, &'static str)]) -> Response<Body> {
    let mut res = Response::new(body::full(body));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    for (k, v) in headers {
        res.headers_mut().insert(*k, HeaderValue::from_static(v));
    }
    res
}

/// A 304 for the browser's copy of a rewritten page keeps that copy's headers as the 200 gave
/// them: the tag marked, and no upstream date (the browser stores a 304's headers over its own).
#[test]
fn a_304_for_a_rewritten_copy_marks_its_tag_and_drops_the_date() {
    let rt = runtime();
    let injector = Injector::new(true);
    let not_modified = |tag: &'static str| {
        let mut res = Response::new(body::empty());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        res.headers_mut()
            .insert(header::ETAG, HeaderValue::from_static(tag));
        res.headers_mut().insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        res
    };
    let facts = |dest: &str, tag: &str| {
        let req = Request::get("http://localhost:3000/page")
            .header("sec-fetch-dest", dest)
            .header("if-none-match", tag)
            .body(())
            .unwrap();
        injector.facts(&req)
    };
    let asked = facts("document", "W/\"v1-hmr\"");
    let res = rt.block_on(injector.apply(&asked, not_modified("\"v1\"")));
    assert_eq!(res.headers()[header::ETAG], "W/\"v1-hmr\"");
    assert!(res.headers().get(header::LAST_MODIFIED).is_none());
    // A copy the upstream's own tag validates (a fragment's) is the upstream's answer, unchanged.
    let asked = facts("empty", "\"v1\"");
    let res = rt.block_on(injector.apply(&asked, not_modified("\"v1\"")));
    assert_eq!(res.headers()[header::ETAG], "\"v1\"");
    assert!(res.headers().get(header::LAST_MODIFIED).is_some());
}

#[test]
fn apply_rewrites_headers_of_rewritten_pages_only() {
    let rt = runtime();
    let page = "<html><head></head><body></body></html>";
    let injector = Injector::new(true);
    let res = rt.block_on(injector.apply(
        &request(&[("sec-fetch-dest", "document")]),
        html_response(
            page,
            &[
                ("etag", "\"v1\""),
                ("accept-ranges", "bytes"),
                ("vary", "Accept-Encoding"),
                ("content-security-policy", "default-src 'self'"),
            ],
        ),
    ));
    let h = res.headers().clone();
    assert!(h.get(header::CONTENT_LENGTH).is_none());
    assert!(h.get(header::ACCEPT_RANGES).is_none());
    assert_eq!(h.get(header::ETAG).unwrap(), "W/\"v1-hmr\"");
    assert_eq!(h.get(header::VARY).unwrap(), "Accept-Encoding");
    assert_eq!(
        h.get(header::CONTENT_SECURITY_POLICY).unwrap(),
        "default-src 'self'"
    );
    let body = rt.block_on(res.into_body().collect()).unwrap().to_bytes();
    assert_eq!(
        body,
        format!("<html><head>{TAG}</head><body></body></html>")
    );

    // Not a page (a fragment): no client, but handed on for its links to be re-pointed, so its
    // length goes and its validator is weak, not marked as a page's.
    let res = rt.block_on(injector.apply(
        &request(&[("sec-fetch-dest", "empty")]),
        html_response(page, &[("etag", "\"v1\"")]),
    ));
    assert_eq!(res.headers().get(header::ETAG).unwrap(), "W/\"v1\"");
    assert!(res.headers().get(header::CONTENT_LENGTH).is_none());
    assert!(res.extensions().get::<Rewritten>().is_some());
    let body = rt.block_on(res.into_body().collect()).unwrap().to_bytes();
    assert_eq!(body, page.as_bytes());
    // Not HTML: untouched, Content-Length included.
    let mut json = html_response("{}", &[("etag", "\"v1\"")]);
    json.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let res = rt.block_on(injector.apply(&request(&[("sec-fetch-dest", "empty")]), json));
    assert_eq!(res.headers().get(header::ETAG).unwrap(), "\"v1\"");
    assert!(res.headers().get(header::CONTENT_LENGTH).is_some());

    // Turned off: untouched.
    let res = rt.block_on(Injector::new(false).apply(&request(&[]), html_response(page, &[])));
    assert!(res.headers().get(header::CONTENT_LENGTH).is_some());

    // Undecodable: untouched.
    let res = rt.block_on(injector.apply(
        &request(&[]),
        html_response(page, &[("content-encoding", "compress")]),
    ));
    assert!(res.headers().get(header::CONTENT_LENGTH).is_some());

    // Error pages get the client too.
    let mut res = html_response(page, &[]);
    *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    let res = rt.block_on(injector.apply(&request(&[]), res));
    let body = rt.block_on(res.into_body().collect()).unwrap().to_bytes();
    assert!(body.windows(TAG.len()).any(|w| w == TAG.as_bytes()));
}

/// An XML document (`application/xhtml+xml`) runs no module script in Chromium: it gets the
/// classic loader tag, with the page's nonce when its policy needs one.
#[test]
fn xhtml_pages_get_the_classic_loader() {
    let rt = runtime();
    let page =
        "<html xmlns=\"http://www.w3.org/1999/xhtml\"><head><title>t</title></head><body/></html>";
    let injector = Injector::new(true);
    let body = |res: Response<Body>| rt.block_on(res.into_body().collect()).unwrap().to_bytes();
    let xhtml = |extra: &[(&'static str, &'static str)]| {
        let mut res = html_response(page, extra);
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xhtml+xml"),
        );
        res
    };
    let nav = request(&[("sec-fetch-dest", "document")]);
    let out = body(rt.block_on(injector.apply(&nav, xhtml(&[]))));
    assert_eq!(
        out,
        page.replace("</head>", &format!("{}</head>", crate::client::XML_TAG))
    );
    let out = body(rt.block_on(injector.apply(
        &nav,
        xhtml(&[(
            "content-security-policy",
            "script-src 'nonce-abc123' 'strict-dynamic'",
        )]),
    )));
    let out = String::from_utf8(out.to_vec()).unwrap();
    assert!(
        out.contains(&crate::client::xml_tag_with_nonce("abc123")),
        "{out}"
    );
    // A self-closing `<script/>`, which the HTML tokenizer takes for the start of script text
    // that runs to the end: the tag still goes inside the root element (after the doctype it
    // made the page ill-formed XML).
    let swallowing = "<?xml version=\"1.0\"?>\n<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\">\
                      <head><script src=\"/app.js\"/><title>t</title></head><body/></html>";
    let mut res = html_response(swallowing, &[]);
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xhtml+xml"),
    );
    let out = String::from_utf8(body(rt.block_on(injector.apply(&nav, res))).to_vec()).unwrap();
    let root = "<html xmlns=\"http://www.w3.org/1999/xhtml\">";
    assert!(
        out.contains(&format!("{root}{}", crate::client::XML_TAG)),
        "{out}"
    );
    // An HTML page still gets the module tag.
    let out = body(rt.block_on(injector.apply(&nav, html_response(page, &[]))));
    assert!(out.windows(TAG.len()).any(|w| w == TAG.as_bytes()));
}

/// An empty page a tab navigates to gets the client (a file created empty, written a moment
/// later, must reload); an empty answer to a request that may be anything stays empty.
#[test]
fn an_empty_page_a_tab_navigates_to_gets_the_client() {
    let rt = runtime();
    let injector = Injector::new(true);
    let empty = || {
        let mut res = html_response("", &[]);
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        res
    };
    let body = |res: Response<Body>| rt.block_on(res.into_body().collect()).unwrap().to_bytes();
    let nav = request(&[("sec-fetch-dest", "document")]);
    let out = body(rt.block_on(injector.apply(&nav, empty())));
    assert!(
        out.windows(TAG.len()).any(|w| w == TAG.as_bytes()),
        "{out:?}"
    );
    let unknown = request(&[("accept", "*/*")]);
    let out = body(rt.block_on(injector.apply(&unknown, empty())));
    assert!(out.is_empty(), "{out:?}");
}

/// A page revalidates upstream only a copy the browser holds with the client (its tag is the
/// proxy's mark): a fragment request's copy, or a date alone, asks for the page in full, which
/// a 304 would have let the tab show without the client.
#[test]
fn a_page_revalidates_only_a_copy_with_the_client() {
    let injector = Injector::new(true);
    let nav = [("sec-fetch-dest", "document")];
    let prepared = |conditions: &[(&'static str, &'static str)]| {
        let mut req = Request::get("http://localhost:3000/page");
        for (k, v) in nav.iter().chain(conditions) {
            req = req.header(*k, *v);
        }
        let facts = injector.facts(&req.body(()).unwrap());
        let mut headers = HeaderMap::new();
        for (name, value) in conditions {
            headers.append(*name, HeaderValue::from_static(value));
        }
        injector.prepare_request(&facts, &mut headers);
        let get = |name| {
            headers
                .get(name)
                .map(|v: &HeaderValue| v.to_str().unwrap().to_string())
        };
        (
            facts.holds_rewritten,
            get(header::IF_NONE_MATCH),
            get(header::IF_MODIFIED_SINCE),
        )
    };
    let date = "Sun, 06 Dec 2026 03:00:00 GMT";
    assert_eq!(
        prepared(&[
            ("if-none-match", "W/\"v1-hmr\""),
            ("if-modified-since", date)
        ]),
        (true, Some("W/\"v1\"".into()), Some(date.into()))
    );
    assert_eq!(
        prepared(&[("if-none-match", "\"v1\", W/\"v2-hmr\"")]),
        (true, Some("W/\"v2\"".into()), None)
    );
    for theirs in ["\"v1\"", "W/\"v1\"", "*"] {
        assert_eq!(
            prepared(&[("if-none-match", theirs), ("if-modified-since", date)]),
            (false, None, None),
            "{theirs}"
        );
    }
    assert_eq!(
        prepared(&[("if-modified-since", date)]),
        (false, None, None)
    );
    // Without fetch metadata the request may be for a stylesheet: its conditions stay, the
    // proxy's tags made the upstream's.
    let req = Request::get("http://localhost:3000/page")
        .header("accept", "*/*")
        .header("if-none-match", "\"v1\", W/\"v2-hmr\"");
    let facts = injector.facts(&req.body(()).unwrap());
    let mut headers = HeaderMap::new();
    headers.insert(
        header::IF_NONE_MATCH,
        HeaderValue::from_static("\"v1\", W/\"v2-hmr\""),
    );
    headers.insert(header::IF_MODIFIED_SINCE, HeaderValue::from_static(date));
    injector.prepare_request(&facts, &mut headers);
    assert_eq!(headers[header::IF_NONE_MATCH], "\"v1\", W/\"v2\"");
    assert_eq!(headers[header::IF_MODIFIED_SINCE], date);
    // A fragment request's conditions are its own.
    let facts = request(&[("hx-request", "true"), ("if-none-match", "\"v1\"")]);
    let mut headers = HeaderMap::new();
    headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"v1\""));
    injector.prepare_request(&facts, &mut headers);
    assert_eq!(headers[header::IF_NONE_MATCH], "\"v1\"");
}

#[test]
fn prepare_request_asks_for_identity_for_pages_only() {
    let injector = Injector::new(true);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("gzip, compress"),
    );
    injector.prepare_request(&request(&[("sec-fetch-dest", "script")]), &mut headers);
    assert_eq!(
        headers.get(header::ACCEPT_ENCODING).unwrap(),
        "gzip, compress"
    );
    injector.prepare_request(&request(&[("sec-fetch-dest", "document")]), &mut headers);
    assert_eq!(headers.get(header::ACCEPT_ENCODING).unwrap(), "identity");
}

/// Every `#data` section of the html5lib tree-construction and encoding tests (in `../shared`,
/// which every checkout of the project has beside it).
fn html5lib_documents() -> Vec<(String, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/html5lib-tests");
    let mut docs = Vec::new();
    for dir in [
        "tree-construction",
        "tree-construction/scripted",
        "encoding",
        "encoding/scripted",
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "dat") {
                continue;
            }
            let text = std::fs::read(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let mut current: Option<Vec<u8>> = None;
            let mut index = 0;
            for line in text.split_inclusive(|&b| b == b'\n') {
                if line.starts_with(b"#") && !line.starts_with(b"#data") && current.is_some() {
                    let mut doc = current.take().unwrap();
                    // The format puts a newline after the data that is not part of it.
                    if doc.last() == Some(&b'\n') {
                        doc.pop();
                    }
                    docs.push((format!("{name}#{index}"), doc));
                    index += 1;
                }
                if line.starts_with(b"#data") {
                    current = Some(Vec::new());
                } else if let Some(doc) = current.as_mut() {
                    doc.extend_from_slice(line);
                }
            }
        }
    }
    docs
}

#[test]
fn html5lib_corpus_never_loses_a_byte() {
    let docs = html5lib_documents();
    assert!(
        docs.len() > 1500,
        "expected the html5lib tests in ../shared/html5lib-tests, found {} documents",
        docs.len()
    );
    let rt = runtime();
    let mut injected = 0;
    for (name, doc) in &docs {
        let whole = run(&rt, doc, usize::MAX);
        let at = tag_position(doc, &whole, TAG.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e}: {:?}", String::from_utf8_lossy(doc)));
        injected += usize::from(at.is_some());
        for chunk in [1, 7] {
            assert_eq!(
                run(&rt, doc, chunk),
                whole,
                "{name} in chunks of {chunk}: {:?}",
                String::from_utf8_lossy(doc)
            );
        }
    }
    // Most of the corpus are documents (doctype or html/head/body tags); many are fragments.
    assert!(injected > docs.len() / 3, "{injected} of {}", docs.len());
}

#[test]
fn html5lib_corpus_the_fast_path_agrees_with_lol_html() {
    let docs = html5lib_documents();
    let rt = runtime();
    let mut answered = 0;
    for (name, doc) in &docs {
        answered += usize::from(super::head_scan::head_end(doc).is_some());
        assert_eq!(
            run_scanning(&rt, doc, true),
            run_scanning(&rt, doc, false),
            "{name}: {:?}",
            String::from_utf8_lossy(doc)
        );
    }
    // The corpus is made of odd heads; a few dozen are plain enough for the fast path.
    assert!(
        answered >= 20,
        "the fast path answered {answered} documents"
    );
}

/// Pieces hostile HTML is made of: every tag and text mode that changes where a tag may go.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    let fixed = prop::sample::select(vec![
        "<!doctype html>",
        "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0//EN\">",
        "<html>",
        "<html lang=en>",
        "</html>",
        "<head>",
        "<head/>",
        "</head>",
        "<body>",
        "<body/>",
        "<body onload='x()'>",
        "</body>",
        "<!-- <head></head><body> -->",
        "<!--",
        "-->",
        "<script>",
        "</script>",
        "<style>",
        "</style>",
        "<template>",
        "</template>",
        "<textarea>",
        "</textarea>",
        "<title>",
        "</title>",
        "<noscript>",
        "</noscript>",
        "<svg>",
        "</svg>",
        "<math>",
        "<![CDATA[",
        "]]>",
        "<plaintext>",
        "<xmp>",
        "<select>",
        "<iframe>",
        "<frameset>",
        "<meta charset=shift_jis>",
        "<meta charset=utf-16>",
        "<meta charset=\"windows-1252\">",
        "<p>",
        "</p>",
        "<",
        ">",
        "</",
        "<!",
        "<?xml version=\"1.0\"?>",
        "\u{feff}",
        "&amp;",
        "'",
        "\"",
        " ",
        "\n",
        "text",
    ])
    .prop_map(|s| s.as_bytes().to_vec());
    prop_oneof![
        8 => fixed,
        2 => prop::collection::vec(any::<u8>(), 0..12),
        2 => "[a-z<>/!\\- =\"']{0,12}".prop_map(String::into_bytes),
        // Long runs carry tags across the rewriter's 2 KiB slices of a chunk.
        1 => (0usize..6000).prop_map(|n| vec![b' '; n]),
    ]
}

fn document() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(piece(), 0..40).prop_map(|pieces| pieces.concat())
}

/// What goes into a real head, with decoys (`</head>`, `>`, `<!--`) in text and attributes, and
/// now and then something that is not plain.
fn head_piece() -> impl Strategy<Value = String> {
    let text = "[a-zA-Z<>/!\\- =\"'{}();]{0,30}";
    prop_oneof![
        4 => prop::sample::select(vec![
            "<meta charset=utf-8>",
            "<META name=x content='a>b'>",
            "<meta name=viewport content=\"width=device-width\" />",
            "<link rel=stylesheet href=\"/a.css?x=</head>\">",
            "<link rel=icon href=/f.svg/>",
            "<base href=/>",
            "<script type=module src=/@vite/client></script>",
            "</head>",
            "<meta http-equiv=refresh content=5>",
            "<meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\">",
            "<meta http-equiv=\"Content-Security-Policy\" content=\"script-src 'self'\">",
            "<META HTTP-EQUIV=' content-security-policy' content=\"default-src 'none'\">",
            "<meta http-equiv=x http-equiv=content-security-policy content=\"script-src 'none'\">",
            "<template>",
            "<noscript>",
            " ",
            "\n",
        ]).prop_map(String::from),
        1 => "[^<]{0,20}".prop_map(|t| format!("<title>{t}</title>")),
        1 => text.prop_map(|t| format!("<script>{t}</script>")),
        1 => text.prop_map(|t| format!("<style>{t}</style >")),
        1 => text.prop_map(|t| format!("<!--{t}-->")),
        1 => text.prop_map(String::from),
    ]
}

/// A document whose head is often plain enough for the fast path.
fn plain_head_document() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        prop::collection::vec(head_piece(), 0..12),
        "[a-z<>/ ]{0,30}",
    )
        .prop_map(|(doctype, pieces, rest)| {
            let doctype = if doctype { "<!doctype html>" } else { "" };
            format!(
                "{doctype}<html><head>{}</head><body>{rest}",
                pieces.concat()
            )
            .into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn output_is_input_plus_at_most_one_tag(doc in document(), chunk in 1usize..64) {
        let rt = runtime();
        let whole = run(&rt, &doc, usize::MAX);
        let at = tag_position(&doc, &whole, TAG.as_bytes());
        prop_assert!(at.is_ok(), "{:?}: {:?}", String::from_utf8_lossy(&doc), at);
        prop_assert_eq!(run(&rt, &doc, chunk), whole);
    }

    #[test]
    fn the_fast_path_agrees_with_lol_html(doc in prop_oneof![plain_head_document(), document()]) {
        let rt = runtime();
        prop_assert_eq!(run_scanning(&rt, &doc, true), run_scanning(&rt, &doc, false));
    }

    #[test]
    fn random_bytes_never_break_anything(doc in prop::collection::vec(any::<u8>(), 0..512), chunk in 1usize..32) {
        let rt = runtime();
        let out = run(&rt, &doc, chunk);
        prop_assert!(tag_position(&doc, &out, TAG.as_bytes()).is_ok());
    }

    #[test]
    fn a_head_end_always_gets_the_tag(
        title in "[^<]{0,40}",
        after in "[a-z <>=\"/]{0,40}",
    ) {
        // A plain document around arbitrary text: the tag is always right before `</head>`.
        let doc = format!("<!doctype html><html><head><title>{title}</title></head><body>{after}");
        let rt = runtime();
        let out = run(&rt, doc.as_bytes(), 5);
        let at = tag_position(doc.as_bytes(), &out, TAG.as_bytes()).unwrap();
        prop_assert_eq!(at, doc.find("</head>"));
    }
}
