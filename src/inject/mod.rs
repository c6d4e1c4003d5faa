//! Putting the client into every HTML page a browser tab loads, streaming, and nowhere else.
//!
//! Owns the injector's entry points, called by the proxy and the static server for every
//! request: [`Injector::facts`] (what the response will need to know of the request, and where
//! the change batches stood when it came in), [`Injector::prepare_request`] (navigations ask for
//! uncompressed pages) and [`Injector::apply`] (decide, fix the headers, wrap the body). The
//! work is split by concern:
//!
//! - [`decide`]: which requests come from a tab and which responses are rewritable HTML;
//! - [`decode`]: undoing `Content-Encoding` before rewriting;
//! - [`charset`]: which encoding the page is parsed in (or that it cannot be);
//! - [`csp`]: letting the client through the page's Content-Security-Policy, minimally;
//! - [`rewrite`]: the streaming lol_html adapter that puts the tag in exactly once;
//! - [`head_scan`]: its fast path, for a page whose head is plain.
//!
//! It does not serve the client (`client`) or choose which responses reach it (`router`,
//! `proxy`): everything that is not a page for a tab comes back out unchanged.

mod charset;
mod csp;
mod decide;
mod decode;
mod head_scan;
mod rewrite;

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
};
use http_body::{Body as _, Frame};
use http_body_util::BodyExt as _;

use crate::body::{self, Body, BoxError};
use crate::sse::Position;
use decide::{Reader, Skip};
use decode::Coding;

/// What the injector needs to know about the request a response answers, captured before the
/// request is moved into the upstream call. Built for every request, so it copies only a few
/// cheap values (a `Uri` and a `HeaderValue` clone are reference-counted), never the headers.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    pub method: Method,
    /// For log lines.
    uri: Uri,
    /// Whether the response may be read by a tab (see [`decide::Reader`]).
    reader: Reader,
    /// The origin the page is served from, for CSP host-sources.
    host: Option<HeaderValue>,
    /// The browser said it loads the response as a document (see [`decide::navigation`]).
    navigation: bool,
    /// The newest change batch when the request came in (see [`Injector::facts`]).
    since: Option<u64>,
    /// The browser revalidates a weak validator: the copy it holds is a rewritten page's.
    holds_rewritten: bool,
}

impl RequestFacts {
    /// htmx sent the request: its answer's `HX-*` headers steer the tab.
    pub fn htmx(&self) -> bool {
        self.reader.is_htmx()
    }

    pub fn of<B>(req: &Request<B>) -> Self {
        let headers = req.headers();
        let host = headers.get(header::HOST).cloned().or_else(|| {
            // HTTP/2 carries the host in the `:authority` pseudo-header, which is the URI's.
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let reader = Reader::of(headers);
        RequestFacts {
            method: req.method().clone(),
            uri: req.uri().clone(),
            reader,
            host,
            navigation: decide::navigation(reader, headers),
            since: None,
            holds_rewritten: false,
        }
    }
}

/// In the extensions of a response whose body is a page the injector rewrote (or would, for a
/// `HEAD`), or an HTML fragment it decoded, for later steps that edit HTML alone (the proxy's
/// link re-pointing, and the `Last-Modified` it drops).
#[derive(Debug, Clone, Copy)]
pub struct Rewritten;

/// In the extensions of a page the proxy made in the upstream's stead (the upstream could not be
/// reached): the request did not reach the dev server, so a POST's page is not its answer.
#[derive(Debug, Clone, Copy)]
pub struct StandIn;

/// In the extensions of every page the proxy made for want of a usable answer (the upstream
/// could not be reached, cut the exchange off, timed out, or sent a page that could not be
/// read): no server that came back served it, so it names no comeback (`hmr-restart`) and the
/// comeback's reload reaches it.
#[derive(Debug, Clone, Copy)]
pub struct Unanswered;

/// Puts the client tag into pages. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Injector {
    enabled: bool,
    position: Option<Position>,
}

/// The `Server-Timing` metric that tells a page's client where the change batches stood when
/// the page was requested: `hmr;desc=<batch id>`.
const POSITION_METRIC: &str = "hmr;desc=";
static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// The `Server-Timing` metric of a page that answers a POST (see [`Injector::add_position`]).
const POST_METRIC: &str = "hmr-post";

/// The `Server-Timing` metric that tells a page's client the newest upstream comeback when the
/// page was answered: `hmr-restart;desc=<mark>` (see `sse::Restarts`).
const RESTART_METRIC: &str = "hmr-restart;desc=";

impl Injector {
    pub fn new(enabled: bool) -> Self {
        Injector {
            enabled,
            position: None,
        }
    }

    /// Pages say where the change batches stood when they were requested (see [`Injector::facts`]).
    pub fn with_position(self, position: Position) -> Self {
        Injector {
            position: Some(position),
            ..self
        }
    }

    /// [`RequestFacts::of`] the request, with the newest change batch for a page. A page
    /// requested now reflects every batch so far, and no later one: its client starts after that
    /// batch, whenever it runs. A tab that reloads while another batch is published, or a page
    /// the browser takes from its cache (back and forward), is then caught up, not taken for
    /// current (it reads the id from the page's `Server-Timing` header). Read when the request
    /// comes in: the page the upstream renders is at least that new.
    pub fn facts<B>(&self, req: &Request<B>) -> RequestFacts {
        let mut facts = RequestFacts::of(req);
        if self.enabled && facts.reader == Reader::Page {
            facts.since = self.position.as_ref().map(Position::latest);
            facts.holds_rewritten = req
                .headers()
                .get(header::IF_NONE_MATCH)
                .is_some_and(|tags| entity_tags(tags).any(|tag| unmarked(tag).is_some()));
        }
        facts
    }

    /// Adjust the request headers sent upstream: a page asks for itself uncompressed (see
    /// [`decode::ask_for_identity`]), and revalidates only a copy the browser holds with the
    /// client (see [`revalidate_only_ours`]).
    pub fn prepare_request(&self, facts: &RequestFacts, headers: &mut HeaderMap) {
        if self.enabled && facts.reader == Reader::Page {
            decode::ask_for_identity(headers);
            revalidate_only_ours(headers, facts.navigation);
        }
    }

    /// The response with the client injected when it is a page for a browser tab, else unchanged.
    ///
    /// A compressed page is answered once its first bytes have decoded: one that cannot be
    /// decoded (a server that labels a plain body `gzip`, a truncated stream) becomes a 502 page
    /// that says so, and gets the client, so the tab reloads on the next save. Sent at once, its
    /// headers would be gone before the decoder noticed, and the browser would show only a closed
    /// connection. The wait is for decoded bytes, not rewritten ones, which a head that streams
    /// slowly would hold back. An uncompressed page needs no wait: it is passed on as it comes.
    pub async fn apply(&self, facts: &RequestFacts, response: Response<Body>) -> Response<Body> {
        // Before any wait for the page's first bytes: a server that came back while this one
        // was still sending it did not answer it.
        let comeback = self.comeback(facts, &response);
        let response = if self.enabled && untyped_page(facts, &response) {
            sniffed(response).await
        } else {
            response
        };
        let (parts, body, plan) = match self.plan(facts, response, comeback) {
            Ok(planned) => planned,
            Err(untouched) => return self.fragment(facts, untouched),
        };
        if facts.method == Method::HEAD {
            return self.rewritten(facts, parts, body, plan, comeback);
        }
        let mut body = decode::decode(body, plan.coding, &facts.method, &facts.uri);
        if plan.coding != Coding::Identity {
            body = match first_frame_ahead(body).await {
                Ok(body) => body,
                Err(err) => return self.apply_now(facts, unreadable_page(facts, &*err)),
            };
        }
        self.rewritten(facts, parts, body, plan, comeback)
    }

    /// The newest upstream comeback as the upstream's answer came in, for a page's
    /// `hmr-restart` (see `sse::Restarts`): a comeback seen while the upstream rendered the page
    /// (its answer may be how it was seen) is behind the page. `None` on the proxy's own pages
    /// ([`Unanswered`]): no server that came back served them, and a form cut off by the restart
    /// is sent again by that comeback's reload.
    fn comeback(&self, facts: &RequestFacts, response: &Response<Body>) -> Option<u64> {
        if facts.since.is_none() || response.extensions().get::<Unanswered>().is_some() {
            return None;
        }
        self.position.as_ref().map(Position::restart)
    }

    /// An HTML answer to a request that is not a page (see [`decide::fragment`]), decoded and
    /// marked [`Rewritten`] for its links to be re-pointed; anything else as it is. No wait for
    /// a compressed one's first bytes: the page it goes into is already shown, and one that
    /// cannot be decoded ends early, as the upstream's broken bytes would have.
    fn fragment(&self, facts: &RequestFacts, response: Response<Body>) -> Response<Body> {
        if !self.enabled || facts.reader == Reader::Page || facts.method == Method::HEAD {
            return response;
        }
        let Some(coding) = decide::fragment(response.status(), response.headers()) else {
            return response;
        };
        let (mut parts, body) = response.into_parts();
        let body = decode::decode(body, coding, &facts.method, &facts.uri);
        for_changed_bytes(&mut parts.headers);
        // Weak, and not marked as a page's: the upstream's validator still stands for the same
        // content, and a navigation must not take this copy for one with the client.
        if let Some(etag) = parts.headers.get(header::ETAG)
            && !etag.as_bytes().starts_with(b"W/")
        {
            match HeaderValue::from_bytes(&[&b"W/"[..], etag.as_bytes()].concat()) {
                Ok(weak) => parts.headers.insert(header::ETAG, weak),
                Err(_) => parts.headers.remove(header::ETAG),
            };
        }
        parts.extensions.insert(Rewritten);
        Response::from_parts(parts, body)
    }

    /// [`Injector::apply`] for a page that is not compressed (the proxy's own), which needs no
    /// wait and names no comeback.
    fn apply_now(&self, facts: &RequestFacts, page: Response<Body>) -> Response<Body> {
        match self.plan(facts, page, None) {
            Ok((parts, body, plan)) => self.rewritten(facts, parts, body, plan, None),
            Err(untouched) => untouched,
        }
    }

    /// Whether to rewrite, and how: the response taken apart, or given back untouched.
    #[allow(clippy::result_large_err)] // the "error" is the response itself, handed back
    fn plan(
        &self,
        facts: &RequestFacts,
        mut response: Response<Body>,
        comeback: Option<u64>,
    ) -> Result<(http::response::Parts, Body, decide::Plan), Response<Body>> {
        if !self.enabled {
            return Err(response);
        }
        if response.status() == StatusCode::NOT_MODIFIED && facts.reader == Reader::Page {
            // The browser shows its cached copy, which is the current page: it gets the current
            // position (a revalidation updates the stored headers), or its client would take
            // the page for as old as when it was first served. A copy that is a rewritten page
            // (asked for with the marked validator it was given) keeps it marked.
            let (mut parts, body) = response.into_parts();
            self.add_position(facts, &mut parts.headers, &parts.extensions, comeback);
            let mut response = Response::from_parts(parts, body);
            if facts.holds_rewritten {
                mark_etag(response.headers_mut());
                // A 304's headers replace the stored copy's: the date the 200 left out would come
                // back (see the proxy's rewritten pages).
                response.headers_mut().remove(header::LAST_MODIFIED);
            }
            return Err(response);
        }
        // What an HTML answer becomes depends on who asks: a tab gets the client, a fragment
        // request does not. A browser cache must not give one's copy to the other: a page that
        // revalidates (Rails: `max-age=0, must-revalidate`) was fetched by htmx, then navigated
        // to, answered 304, and shown without the client.
        if decide::is_html(response.headers()) {
            response
                .headers_mut()
                .append(header::VARY, HeaderValue::from_static(decide::VARY));
        }
        // A HEAD response has no body, but the headers are the GET's, and must say what the
        // GET would get (RFC 9110, 9.3.2): judged by its `Content-Length`, like the GET's.
        let head = facts.method == Method::HEAD;
        let body_is_empty = (!head
            && (response.body().is_end_stream() || response.body().size_hint().exact() == Some(0)))
            || response
                .headers()
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0");
        // An empty page a tab navigates to still gets the client: a file created empty (and
        // written a moment later) must reload once it has content.
        let body_is_empty = body_is_empty && !facts.navigation;
        match decide::decide(
            facts.reader,
            response.status(),
            response.headers(),
            body_is_empty,
        ) {
            Ok(plan) => {
                let (parts, body) = response.into_parts();
                Ok((parts, body, plan))
            }
            Err(Skip::NotForUs(why)) => {
                tracing::trace!("{} {}: not injecting ({why})", facts.method, facts.uri);
                Err(response)
            }
            Err(Skip::Undecodable(why)) => {
                tracing::warn!(
                    "{} {}: passing the page through without the client: {why}",
                    facts.method,
                    facts.uri.path()
                );
                Err(response)
            }
        }
    }

    /// The response with its headers fixed for the rewritten page and its (decoded) body
    /// rewritten; for `HEAD`, the headers alone, as the `GET` would have them.
    fn rewritten(
        &self,
        facts: &RequestFacts,
        mut parts: http::response::Parts,
        body: Body,
        plan: decide::Plan,
        comeback: Option<u64>,
    ) -> Response<Body> {
        let mut csp = csp::Csp::new(facts.host.as_ref());
        if plan.xml {
            csp.xml_document();
        }
        csp.edit_headers(&mut parts.headers);
        for_rewritten_body(&mut parts.headers);
        self.add_position(facts, &mut parts.headers, &parts.extensions, comeback);
        // A HEAD's too: the proxy's edits of a rewritten page's headers are the GET's.
        parts.extensions.insert(Rewritten);
        if facts.method == Method::HEAD {
            return Response::from_parts(parts, body);
        }
        let body = rewrite::rewrite_page(body, plan.charset, csp, facts.navigation);
        Response::from_parts(parts, body)
    }

    /// Say in the page's headers where the change batches stood when it was requested (see
    /// [`Injector::facts`]), the newest upstream comeback when it was answered (`hmr-restart`,
    /// see [`Injector::comeback`]), and whether it answers a form sent with POST (`hmr-post`): its
    /// client then reloads it with a GET, where `location.reload()` sent the form again with
    /// every save (and with every restart of the dev server), a duplicate row or mail each time.
    fn add_position(
        &self,
        facts: &RequestFacts,
        headers: &mut HeaderMap,
        extensions: &http::Extensions,
        comeback: Option<u64>,
    ) {
        // Not on the proxy's own page for a POST the dev server never got (it was down): that
        // page's reload must send the form, which a GET would lose.
        if facts.method == Method::POST && extensions.get::<StandIn>().is_none() {
            headers.append(&SERVER_TIMING, HeaderValue::from_static(POST_METRIC));
        }
        let Some(since) = facts.since else {
            return;
        };
        // Appended: dev servers and their debug toolbars send their own metrics.
        if let Some(value) = metrics(since, comeback) {
            headers.append(&SERVER_TIMING, value);
        }
    }
}

/// The page's metrics as one `Server-Timing` value: `hmr;desc=<since>`, and
/// `hmr-restart;desc=<mark>` after it. One field, not two: one more in the response's map cost
/// ~700 instructions a page. The numbers change with each batch or comeback, not each page: each
/// thread keeps the last value built (formatting it cost ~1,300 instructions a page, 2 % of a
/// proxied page's).
fn metrics(since: u64, restart: Option<u64>) -> Option<HeaderValue> {
    type Built = Option<((u64, Option<u64>), HeaderValue)>;
    thread_local! {
        static LAST: std::cell::RefCell<Built> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((built, value)) if *built == (since, restart) => Some(value.clone()),
        _ => {
            let text = match restart {
                Some(mark) => format!("{POSITION_METRIC}{since}, {RESTART_METRIC}{mark}"),
                None => format!("{POSITION_METRIC}{since}"),
            };
            let value = HeaderValue::from_str(&text).ok()?;
            *last = Some(((since, restart), value.clone()));
            Some(value)
        }
    })
}

/// The 502 page for a compressed page that could not be read before its first byte: bytes that
/// do not decode (the `Content-Encoding` is wrong), or a connection that broke first.
fn unreadable_page(
    facts: &RequestFacts,
    err: &(dyn std::error::Error + 'static),
) -> Response<Body> {
    let path = body::escape_html(facts.uri.path());
    let why = body::escape_html(&err.to_string());
    let hint = if err.downcast_ref::<decode::DecodeError>().is_some() {
        "Check the <code>Content-Encoding</code> the server sends."
    } else {
        "The dev server's connection broke off before the page's first byte; check its log."
    };
    let mut page = body::html(
        StatusCode::BAD_GATEWAY,
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>502 Bad Gateway</title></head>\n\
             <body><h1>502 Bad Gateway</h1><p>The upstream's page <code>{path}</code> could not be \
             read: {why}.</p><p>{hint} This tab reloads on the next save.</p></body></html>\n"
        ),
    );
    page.extensions_mut().insert(Unanswered);
    page
}

/// Whether `response` is a navigation's answer with no `Content-Type` at all (a bare Node
/// `res.end(html)`), which a browser shows as HTML when its first bytes look like it: the one
/// case where the body decides.
fn untyped_page(facts: &RequestFacts, response: &Response<Body>) -> bool {
    facts.navigation
        && facts.method != Method::HEAD
        && !response.headers().contains_key(header::CONTENT_TYPE)
        && !response.headers().contains_key(header::CONTENT_ENCODING)
        // A browser sniffs nothing then, and shows the body as text.
        && !response
            .headers()
            .get(header::X_CONTENT_TYPE_OPTIONS)
            .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"nosniff"))
        && !matches!(
            response.status(),
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED | StatusCode::PARTIAL_CONTENT
        )
}

/// An untyped response given `Content-Type: text/html` when its first frame starts as an HTML
/// document does by the browsers' rule (WHATWG MIME Sniffing, 7.1: after blanks, a tag such as
/// `<!DOCTYPE HTML`, `<html`, `<head`, `<body`, `<p` or `<!--` followed by a space or `>`), so
/// the page gets the client as the browser will show it. Its first frame is read ahead.
async fn sniffed(response: Response<Body>) -> Response<Body> {
    let (mut parts, mut body) = response.into_parts();
    // Frames until the longest pattern can be told (a server may flush a byte at a time), the
    // body's end, its trailers or its error.
    let mut ahead = VecDeque::new();
    let mut seen = Vec::new();
    while sniffs_as_html(&seen).is_none() {
        let Some(frame) = body.frame().await else {
            break;
        };
        let data = frame.as_ref().ok().and_then(Frame::data_ref);
        let more = data.is_some();
        if let Some(data) = data {
            seen.extend_from_slice(data);
        }
        ahead.push_back(frame);
        if !more {
            break;
        }
    }
    if sniffs_as_html(&seen) == Some(true) {
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    }
    Response::from_parts(parts, body::boxed(Primed { ahead, rest: body }))
}

/// The HTML patterns of WHATWG MIME Sniffing's unknown-type rule, case-insensitively, after
/// leading blanks: `None` while `data` is too short to tell.
fn sniffs_as_html(data: &[u8]) -> Option<bool> {
    const TAGS: [&[u8]; 17] = [
        b"<!doctype html",
        b"<html",
        b"<head",
        b"<script",
        b"<iframe",
        b"<h1",
        b"<div",
        b"<font",
        b"<table",
        b"<a",
        b"<style",
        b"<title",
        b"<b",
        b"<body",
        b"<br",
        b"<p",
        b"<!--",
    ];
    let start = data
        .iter()
        .position(|b| !matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' '))
        .unwrap_or(data.len());
    let data = &data[start..];
    let longest = TAGS.iter().map(|tag| tag.len() + 1).max().unwrap_or(0);
    let html = TAGS.iter().any(|tag| {
        data.len() > tag.len()
            && data[..tag.len()].eq_ignore_ascii_case(tag)
            && matches!(data[tag.len()], b' ' | b'>')
    });
    (html || data.len() >= longest).then_some(html)
}

/// The body with its first frame already read, or the error it ended with before any.
async fn first_frame_ahead(mut body: Body) -> Result<Body, BoxError> {
    match body.frame().await {
        None => Ok(body::empty()),
        Some(Err(err)) => Err(err),
        Some(Ok(first)) => Ok(body::boxed(Primed {
            ahead: VecDeque::from([Ok(first)]),
            rest: body,
        })),
    }
}

/// A body whose first frames (and maybe the error that followed them) were read ahead, handed
/// out before the rest.
struct Primed {
    ahead: VecDeque<Result<Frame<Bytes>, BoxError>>,
    rest: Body,
}

impl http_body::Body for Primed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.ahead.pop_front() {
            Some(frame) => Poll::Ready(Some(frame)),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_empty() && self.rest.is_end_stream()
    }
}

/// Digests of the upstream's bytes. Names, not strings: a string key is parsed on every lookup.
static DIGESTS: [HeaderName; 4] = [
    HeaderName::from_static("content-md5"),
    HeaderName::from_static("digest"),
    HeaderName::from_static("content-digest"),
    HeaderName::from_static("repr-digest"),
];

/// Headers that describe the upstream's bytes, not the rewritten ones. The body goes out
/// identity-encoded, streamed (hyper chunks it), and a different representation: byte ranges and
/// digests no longer apply, and a strong validator would claim byte equality. The `ETag` is made
/// weak and marked as the proxy's ([`mark_etag`]): a revalidation with it still reaches the
/// upstream as its own tag, and a 304 lets the browser reuse its injected copy. `Vary` stays:
/// it is still true.
fn for_rewritten_body(headers: &mut HeaderMap) {
    for_changed_bytes(headers);
    mark_etag(headers);
}

/// The headers that describe bytes which the proxy changes, gone.
fn for_changed_bytes(headers: &mut HeaderMap) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::ACCEPT_RANGES);
    for name in &DIGESTS {
        headers.remove(name);
    }
}

/// What a rewritten page's entity tag ends with, inside its quotes. A browser that revalidates
/// its copy of a page with a tag so marked holds the page with the client; with any other tag,
/// or a date alone, it holds one without: a fragment request's copy (htmx, Turbo Drive), which
/// the upstream would confirm with a 304, and the tab would show it without the client.
const MARK: &[u8] = b"-hmr";

/// The `ETag` made weak and marked (`"v1"` → `W/"v1-hmr"`): the bytes are the proxy's, and the
/// upstream's validator still stands for the same content. An unquoted tag is dropped.
fn mark_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(header::ETAG) else {
        return;
    };
    let tag = etag.as_bytes();
    if unmarked(tag).is_some() {
        return;
    }
    let opaque = tag.strip_prefix(b"W/").unwrap_or(tag);
    let marked = opaque
        .strip_prefix(b"\"")
        .and_then(|t| t.strip_suffix(b"\""))
        .and_then(|inner| {
            HeaderValue::from_bytes(&[&b"W/\""[..], inner, MARK, b"\""].concat()).ok()
        });
    match marked {
        Some(marked) => headers.insert(header::ETAG, marked),
        None => headers.remove(header::ETAG),
    };
}

/// The upstream's tag (weak: revalidation compares weakly) for a tag the proxy marked, or `None`.
fn unmarked(tag: &[u8]) -> Option<Vec<u8>> {
    let inner = tag.strip_prefix(b"W/\"")?.strip_suffix(b"\"")?;
    let inner = inner.strip_suffix(MARK)?;
    Some([&b"W/\""[..], inner, b"\""].concat())
}

/// The entity tags of an `If-None-Match` value.
fn entity_tags(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|tag| !tag.is_empty())
}

/// The proxy's marked tags go upstream as the upstream's own. A navigation revalidates only a
/// copy with the client: one with no marked tag (a fragment request's copy, or a date alone,
/// which cannot tell) asks for the page in full. (A request without fetch metadata, as from a
/// LAN address, may be for anything, a stylesheet as well as a page: its conditions stay.)
fn revalidate_only_ours(headers: &mut HeaderMap, navigation: bool) {
    let Some(value) = headers.get(header::IF_NONE_MATCH) else {
        if navigation {
            headers.remove(header::IF_MODIFIED_SINCE);
        }
        return;
    };
    let mut ours = false;
    let tags: Vec<Vec<u8>> = entity_tags(value)
        .filter_map(|tag| match unmarked(tag) {
            Some(theirs) => {
                ours = true;
                Some(theirs)
            }
            None => (!navigation).then(|| tag.to_vec()),
        })
        .collect();
    if !ours {
        if navigation {
            headers.remove(header::IF_NONE_MATCH);
            headers.remove(header::IF_MODIFIED_SINCE);
        }
        return;
    }
    match HeaderValue::from_bytes(&tags.join(&b", "[..])) {
        Ok(tags) => headers.insert(header::IF_NONE_MATCH, tags),
        Err(_) => headers.remove(header::IF_NONE_MATCH),
    };
}

/// For the fuzz target (`fuzz/fuzz_targets/inject.rs`) and property tests, not for the proxy:
/// the streaming rewrite of a page served as `text/html; charset=<charset>` (no CSP header),
/// delivered in chunks of `chunk_sizes` bytes (cycled; 0 counts as 1, none means one chunk).
/// Returns what the browser would get; a charset the rewriter cannot parse passes the page
/// through, as [`Injector::apply`] does.
#[doc(hidden)]
pub fn rewrite_in_chunks(input: &[u8], chunk_sizes: &[usize], charset: Option<&str>) -> Vec<u8> {
    let mut headers = HeaderMap::new();
    if let Some(value) =
        charset.and_then(|label| HeaderValue::from_str(&format!("text/html; charset={label}")).ok())
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    let header_charset = match charset::from_content_type(&headers) {
        charset::HeaderCharset::None => None,
        charset::HeaderCharset::Parsable(encoding) => Some(encoding),
        charset::HeaderCharset::Unparsable(_) => return input.to_vec(),
    };
    let mut chunks = Vec::new();
    let mut rest = input;
    let mut sizes = chunk_sizes.iter().cycle();
    while !rest.is_empty() {
        let n = sizes.next().map_or(rest.len(), |&n| n.clamp(1, rest.len()));
        chunks.push(http_body::Frame::data(bytes::Bytes::copy_from_slice(
            &rest[..n],
        )));
        rest = &rest[n..];
    }
    let upstream = body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
        chunks.into_iter().map(Ok::<_, BoxError>),
    )));
    let mut body = rewrite::rewrite(upstream, header_charset, csp::Csp::new(None));
    // Every upstream frame is ready at once, so the body never waits.
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    while let Poll::Ready(Some(Ok(frame))) = std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
        }
    }
    out
}

#[cfg(test)]
mod tests;
