//! When to inject: which requests come from a browser tab, and which responses are HTML documents
//! the injector can safely rewrite.
//!
//! Owns the two decisions, as pure functions over methods, statuses and headers so they can be
//! table-tested: [`Reader::of`] classifies the request (captured before it goes upstream, so it
//! must stay cheap and copy nothing), and [`decide`] looks at the response head. It does not
//! look at the body: whether the body is a full document or a fragment is found out while it
//! streams (`rewrite`), and how it is decoded lives in `decode` and `charset`.

use http::{HeaderMap, HeaderName, StatusCode, header};

use super::charset::{self, HeaderCharset};
use super::decode::{self, Coding};

/// Who will read the response, as far as the request tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reader {
    /// A tab or frame navigating, or a request that does not say (no `Sec-Fetch-Dest`, as over
    /// `http://192.168.…` where browsers omit it) and accepts HTML.
    Page,
    /// A subresource, a `fetch`/XHR, or a fragment request from htmx, Turbo, Datastar or Unpoly:
    /// the response is swapped into a page that already has the client, or is not HTML at all.
    NotAPage(&'static str),
}

/// Request headers that only fragment requests carry, and what each one means. Names, not
/// strings: a string key is parsed and validated on every lookup, and this runs per request.
static FRAGMENT_HEADERS: [(HeaderName, &str); 4] = [
    (HeaderName::from_static("hx-request"), HTMX_REQUEST),
    (
        HeaderName::from_static("turbo-frame"),
        "Turbo frame request",
    ),
    (
        HeaderName::from_static("datastar-request"),
        "Datastar request",
    ),
    (
        HeaderName::from_static("x-up-target"),
        "Unpoly fragment request",
    ),
];
/// Why an htmx request is not a page: also how [`Reader::is_htmx`] knows one.
const HTMX_REQUEST: &str = "htmx request";
static X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");
static SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");
static SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");

impl Reader {
    /// A request htmx sent (`HX-Request`): its answer's `HX-*` headers steer the tab.
    pub(crate) fn is_htmx(self) -> bool {
        matches!(self, Reader::NotAPage(why) if why == HTMX_REQUEST)
    }

    /// Classify a request from its headers. Runs on every request: header lookups only, no
    /// allocation. The method does not count: a form's `POST` may answer with a page, and a
    /// `HEAD` stands for the `GET` whose headers it must have.
    pub(crate) fn of(headers: &HeaderMap) -> Reader {
        // Fragment requests first: they are the commonest non-page HTML, and some of them
        // (Turbo Drive, boosted htmx) look like navigations otherwise.
        for (name, why) in &FRAGMENT_HEADERS {
            if headers.contains_key(name) {
                return Reader::NotAPage(why);
            }
        }
        if headers
            .get(&X_REQUESTED_WITH)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"))
        {
            return Reader::NotAPage("XMLHttpRequest");
        }
        match headers.get(&SEC_FETCH_DEST) {
            Some(dest) => {
                let dest = dest.as_bytes();
                if [&b"document"[..], b"iframe", b"frame"]
                    .iter()
                    .any(|d| dest.eq_ignore_ascii_case(d))
                {
                    Reader::Page
                } else if dest.eq_ignore_ascii_case(b"empty") && navigates(headers) {
                    // A service worker passing a navigation on (`fetch(event.request)`): the
                    // destination becomes `empty`, the mode stays `navigate`. Once an app's
                    // worker controls the tab, every page it loads comes this way.
                    Reader::Page
                } else {
                    Reader::NotAPage("Sec-Fetch-Dest is not a document")
                }
            }
            // Without fetch metadata, an explicit Accept that rules out HTML (`application/json`)
            // is the remaining hint. Navigations always list text/html; fetch() sends `*/*`.
            None => match headers.get(header::ACCEPT).map(|v| v.as_bytes()) {
                Some(accept) if !accepts_html(accept) => Reader::NotAPage("Accept rules out HTML"),
                _ => Reader::Page,
            },
        }
    }
}

/// Whether `Sec-Fetch-Mode` says `navigate`.
fn navigates(headers: &HeaderMap) -> bool {
    headers
        .get(&SEC_FETCH_MODE)
        .is_some_and(|mode| mode.as_bytes().eq_ignore_ascii_case(b"navigate"))
}

/// Whether the browser said it loads the response as a document: a [`Reader::Page`] that told
/// so in `Sec-Fetch-Dest` (without it, a page may still be a fragment a script asked for).
pub(crate) fn navigation(reader: Reader, headers: &HeaderMap) -> bool {
    reader == Reader::Page && headers.contains_key(&SEC_FETCH_DEST)
}

/// Whether an `Accept` value admits an HTML document (any HTML type, `text/*` or `*/*`).
fn accepts_html(accept: &[u8]) -> bool {
    accept.split(|&b| b == b',').any(|range| {
        let media = range
            .split(|&b| b == b';')
            .next()
            .unwrap_or(&[])
            .trim_ascii();
        [
            &b"text/html"[..],
            b"application/xhtml+xml",
            b"text/*",
            b"*/*",
            b"*",
        ]
        .iter()
        .any(|html| media.eq_ignore_ascii_case(html))
    })
}

/// How to rewrite a response the injector takes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The content coding to undo before rewriting.
    pub coding: Coding,
    /// The charset the `Content-Type` header declares, if it names one the rewriter can parse.
    pub charset: Option<&'static encoding_rs::Encoding>,
    /// `application/xhtml+xml`: the browser builds an XML document.
    pub xml: bool,
}

/// Why a response passes through untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Skip {
    /// The ordinary case (not HTML, not a page, no body…); logged at trace level only.
    NotForUs(&'static str),
    /// HTML the injector would have rewritten but cannot decode: worth one warning, because the
    /// page will not reload by itself.
    Undecodable(String),
}

/// Decide from the request and the response head whether to inject, and how.
pub(crate) fn decide(
    reader: Reader,
    status: StatusCode,
    headers: &HeaderMap,
    body_is_empty: bool,
) -> Result<Plan, Skip> {
    if let Reader::NotAPage(why) = reader {
        return Err(Skip::NotForUs(why));
    }
    if let Some(why) = no_full_body(status, headers) {
        return Err(Skip::NotForUs(why));
    }
    let Some(xml) = html_kind(headers) else {
        return Err(Skip::NotForUs("not HTML"));
    };
    if is_attachment(headers) {
        return Err(Skip::NotForUs("Content-Disposition: attachment"));
    }
    if body_is_empty {
        return Err(Skip::NotForUs("empty body"));
    }
    let coding = decode::content_coding(headers).map_err(|value| {
        Skip::Undecodable(format!(
            "Content-Encoding `{value}` is not one the proxy decodes"
        ))
    })?;
    let charset = match charset::from_content_type(headers) {
        HeaderCharset::None => None,
        HeaderCharset::Parsable(encoding) => Some(encoding),
        HeaderCharset::Unparsable(encoding) => {
            return Err(Skip::Undecodable(format!(
                "charset {} is not ASCII-compatible",
                encoding.name()
            )));
        }
    };
    Ok(Plan {
        coding,
        charset,
        xml,
    })
}

/// Why a response has no whole body to rewrite: 1xx, 204, 205 and 304 have none; 206 and
/// anything with `Content-Range` is a slice of a representation, which cannot be rewritten on
/// its own.
fn no_full_body(status: StatusCode, headers: &HeaderMap) -> Option<&'static str> {
    if status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT
                | StatusCode::RESET_CONTENT
                | StatusCode::NOT_MODIFIED
                | StatusCode::PARTIAL_CONTENT
        )
    {
        return Some("status without a full body");
    }
    headers
        .contains_key(header::CONTENT_RANGE)
        .then_some("Content-Range")
}

/// The coding to undo when a response that is not for a tab (htmx, Turbo Drive and Turbo
/// Frames, Unpoly, a bare `fetch`) is HTML whose links can be re-pointed: it goes into a page
/// that has the client, so it gets no client of its own, but a URL on the upstream's origin in it
/// leads the tab off the proxy as one in a page would (Flask's `url_for(_external=True)`, Django's
/// `build_absolute_uri`). `None` when it is not HTML (or a Turbo Stream) with a whole body in a
/// coding and charset the proxy reads.
pub(crate) fn fragment(status: StatusCode, headers: &HeaderMap) -> Option<Coding> {
    if no_full_body(status, headers).is_some() || is_attachment(headers) {
        return None;
    }
    let turbo_stream = || {
        media_type(headers).is_some_and(|t| t.eq_ignore_ascii_case(b"text/vnd.turbo-stream.html"))
    };
    if html_kind(headers).is_none() && !turbo_stream() {
        return None;
    }
    if matches!(
        charset::from_content_type(headers),
        HeaderCharset::Unparsable(_)
    ) {
        return None;
    }
    decode::content_coding(headers).ok()
}

/// The request headers [`Reader::of`] reads, for the `Vary` of an HTML answer. (`Accept` counts
/// only where a request says nothing of its destination, and would split the cache for every
/// kind of request.)
pub(crate) const VARY: &str = "Sec-Fetch-Dest, Sec-Fetch-Mode, HX-Request, Turbo-Frame, Datastar-Request, X-Up-Target, \
     X-Requested-With";

/// Whether a response is an HTML or XHTML document by its `Content-Type`.
pub(crate) fn is_html(headers: &HeaderMap) -> bool {
    html_kind(headers).is_some()
}

/// `Some(false)` for `text/html`, `Some(true)` for `application/xhtml+xml` (parameters ignored),
/// `None` for anything else.
fn html_kind(headers: &HeaderMap) -> Option<bool> {
    let essence = media_type(headers)?;
    if essence.eq_ignore_ascii_case(b"text/html") {
        Some(false)
    } else if essence.eq_ignore_ascii_case(b"application/xhtml+xml") {
        Some(true)
    } else {
        None
    }
}

/// The `Content-Type`'s media type, without its parameters.
fn media_type(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::CONTENT_TYPE)?.as_bytes();
    Some(
        value
            .split(|&b| b == b';')
            .next()
            .unwrap_or(&[])
            .trim_ascii(),
    )
}

/// `Content-Disposition: attachment` means a download, not a page.
fn is_attachment(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_DISPOSITION).is_some_and(|v| {
        v.as_bytes()
            .split(|&b| b == b';')
            .next()
            .is_some_and(|kind| kind.trim_ascii().eq_ignore_ascii_case(b"attachment"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// The `Vary` of an HTML answer names every request header the decision reads.
    #[test]
    fn vary_names_every_header_the_reader_reads() {
        let vary: Vec<String> = VARY
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        let read = FRAGMENT_HEADERS
            .iter()
            .map(|(name, _)| name)
            .chain([&X_REQUESTED_WITH, &SEC_FETCH_DEST]);
        for name in read {
            assert!(vary.iter().any(|v| v == name.as_str()), "{name} missing");
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn readers() {
        /// Request headers, whether the response may be a page (whatever the method: a HEAD stands
        /// for its GET).
        type Case = (&'static [(&'static str, &'static str)], bool);
        let cases: &[Case] = &[
            (&[], true),
            (&[("sec-fetch-dest", "document")], true),
            (&[("sec-fetch-dest", "iframe")], true),
            (&[("sec-fetch-dest", "frame")], true),
            (&[("sec-fetch-dest", "Document")], true),
            (&[("sec-fetch-dest", "empty")], false),
            (
                &[("sec-fetch-dest", "empty"), ("sec-fetch-mode", "cors")],
                false,
            ),
            // A service worker's `fetch(event.request)` of a navigation.
            (
                &[("sec-fetch-dest", "empty"), ("sec-fetch-mode", "navigate")],
                true,
            ),
            (&[("sec-fetch-dest", "script")], false),
            (&[("sec-fetch-dest", "style")], false),
            (
                &[("sec-fetch-dest", "document"), ("hx-request", "true")],
                false,
            ),
            (&[("turbo-frame", "main")], false),
            (&[("datastar-request", "true")], false),
            (&[("x-up-target", "#main")], false),
            (&[("x-requested-with", "xmlhttprequest")], false),
            (&[("x-requested-with", "com.example.app")], true),
            (&[("accept", "application/json")], false),
            (&[("accept", "*/*")], true),
            (&[("accept", "application/json, TEXT/HTML;q=0.1")], true),
            (&[("accept", "text/html,application/xhtml+xml;q=0.9")], true),
            // Fetch metadata wins over Accept.
            (
                &[
                    ("accept", "application/json"),
                    ("sec-fetch-dest", "document"),
                ],
                true,
            ),
        ];
        for (pairs, page) in cases {
            let map = headers(pairs);
            let got = Reader::of(&map);
            assert_eq!(got == Reader::Page, *page, "{pairs:?}: {got:?}");
        }
    }

    fn html(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = headers(&[("content-type", "text/html; charset=utf-8")]);
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn responses() {
        let ok = |status: u16, map: &HeaderMap| {
            decide(
                Reader::Page,
                StatusCode::from_u16(status).unwrap(),
                map,
                false,
            )
        };
        assert!(ok(200, &html(&[])).is_ok());
        assert!(ok(404, &html(&[])).is_ok());
        assert!(ok(500, &html(&[])).is_ok());
        assert!(ok(200, &html(&[("content-type", "application/xhtml+xml")])).is_ok());
        assert!(ok(200, &html(&[("content-type", "TEXT/HTML")])).is_ok());
        for status in [101, 204, 205, 304, 206] {
            assert!(ok(status, &html(&[])).is_err(), "{status}");
        }
        assert!(ok(200, &html(&[("content-range", "bytes 0-1/2")])).is_err());
        assert!(ok(200, &html(&[("content-type", "text/plain")])).is_err());
        assert!(ok(200, &html(&[("content-type", "text/htmlx")])).is_err());
        assert!(ok(200, &HeaderMap::new()).is_err());
        assert!(
            ok(
                200,
                &html(&[("content-disposition", "attachment; filename=a.html")])
            )
            .is_err()
        );
        assert!(ok(200, &html(&[("content-disposition", "inline")])).is_ok());
        assert_eq!(
            ok(200, &html(&[("content-encoding", "gzip")])).map(|p| p.coding),
            Ok(Coding::Gzip)
        );
        assert!(matches!(
            ok(200, &html(&[("content-encoding", "gzip, br")])),
            Err(Skip::Undecodable(_))
        ));
        assert!(matches!(
            ok(
                200,
                &html(&[("content-type", "text/html; charset=utf-16le")])
            ),
            Err(Skip::Undecodable(_))
        ));
        assert_eq!(
            ok(
                200,
                &html(&[("content-type", "text/html; charset=shift_jis")])
            )
            .map(|p| p.charset.map(|e| e.name())),
            Ok(Some("Shift_JIS"))
        );
        assert!(
            decide(Reader::Page, StatusCode::OK, &html(&[]), true).is_err(),
            "empty body"
        );
        assert!(decide(Reader::NotAPage("test"), StatusCode::OK, &html(&[]), false).is_err());
    }

    /// Which answers to fragment requests get their links re-pointed, and what is undone first.
    #[test]
    fn fragments() {
        let of = |status: u16, pairs: &[(&'static str, &'static str)]| {
            fragment(
                StatusCode::from_u16(status).unwrap_or_else(|e| panic!("{e}")),
                &headers(pairs),
            )
        };
        let html = ("content-type", "text/html; charset=utf-8");
        assert_eq!(of(200, &[html]), Some(Coding::Identity));
        assert_eq!(of(422, &[html]), Some(Coding::Identity));
        assert_eq!(
            of(200, &[html, ("content-encoding", "gzip")]),
            Some(Coding::Gzip)
        );
        assert_eq!(
            of(200, &[("content-type", "text/vnd.turbo-stream.html")]),
            Some(Coding::Identity)
        );
        assert_eq!(of(200, &[("content-type", "application/json")]), None);
        assert_eq!(of(206, &[html]), None);
        assert_eq!(of(304, &[html]), None);
        assert_eq!(of(200, &[html, ("content-range", "bytes 0-1/9")]), None);
        assert_eq!(
            of(200, &[html, ("content-disposition", "attachment")]),
            None
        );
        assert_eq!(
            of(200, &[("content-type", "text/html; charset=utf-16")]),
            None
        );
        assert_eq!(of(200, &[html, ("content-encoding", "compress")]), None);
    }
}
