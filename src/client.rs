//! The browser client: embedded in the binary, served at `/__hmr/client.js`, loaded by one tag.
//!
//! Owns the client's bytes (`client/hmr-client.js`, embedded with `include_str!` so the binary is
//! self-contained), the response that serves them, and the `<script>` tag the injector puts into
//! pages. It does not decide where the tag goes (`inject`) or what the client does (`client/`).

use http::{HeaderValue, Method, Response, StatusCode, header};

use crate::body::{self, Body};

/// The client source, as shipped.
pub const SOURCE: &str = include_str!("../client/hmr-client.js");

/// Where the client is served, inside the proxy's own namespace.
pub const PATH: &str = "/__hmr/client.js";

/// The tag injected into pages. A module script: deferred by nature (never blocks parsing), and
/// the same URL as an app's own `import … from '/__hmr/client.js'`, so both share one instance.
pub const TAG: &str = r#"<script type="module" src="/__hmr/client.js"></script>"#;

/// The tag carrying a CSP nonce (already validated as base64 by the caller).
pub fn tag_with_nonce(nonce: &str) -> String {
    format!(r#"<script type="module" src="/__hmr/client.js" nonce="{nonce}"></script>"#)
}

/// Serve the client. `no-cache` makes the browser revalidate, so a new proxy version is picked up;
/// `nosniff` and a same-origin resource policy stop other sites from including it (XSSI).
pub fn response(method: &Method) -> Response<Body> {
    let body = if method == Method::HEAD {
        body::empty()
    } else {
        body::full(SOURCE)
    };
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(SOURCE.len()));
    res
}
