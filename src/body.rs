//! The one body type every response (and every request sent upstream) is carried in.
//!
//! Owns the type alias, the few constructors the rest of the crate needs and the plain-text answer
//! the proxy gives for its own refusals; it does not own any
//! body *logic* (streaming adapters live with the module that needs them). A single boxed type keeps
//! the router's branches (proxy, static files, own endpoints) returning the same `Response<Body>`.
//! The box is `Unsync` because hyper only needs `Send`, and later adapters (the HTML rewriter) are
//! not `Sync`.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

/// Any error a body can yield; hyper aborts the message when it sees one.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body of `Bytes` frames.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body with no bytes.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body that is already complete in memory (small pages we generate ourselves).
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Box any streaming body, keeping its size hint so `Content-Length` framing survives.
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// An HTML page of the proxy's own (error and waiting pages), not to be cached.
pub fn html(status: http::StatusCode, page: String) -> http::Response<Body> {
    own(status, "text/html; charset=utf-8", page)
}

/// Minimal HTML escaping for text and double-quoted attribute values in those pages.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A short plain-text response, for the proxy's own refusals and errors.
pub fn plain(status: http::StatusCode, text: impl Into<String>) -> http::Response<Body> {
    let mut text = text.into();
    text.push('\n');
    own(status, "text/plain; charset=utf-8", text)
}

/// A response of the proxy's own: complete in memory, never cached.
fn own(status: http::StatusCode, content_type: &'static str, text: String) -> http::Response<Body> {
    let mut res = http::Response::new(full(text));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    res.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    res
}
