//! The browser client: embedded in the binary, served at `/__hmr/client.js`, loaded by one tag.
//!
//! Owns the client's bytes (`client/hmr-client.js`, embedded with `include_str!` so the binary is
//! self-contained, served with the configured change-stream path written in), the response that
//! serves them, and the `<script>` tag the injector puts into pages. It does not decide where the
//! tag goes (`inject`) or what the client does (`client/`).

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};

use crate::body::{self, Body};

/// The client source, as shipped.
pub const SOURCE: &str = include_str!("../client/hmr-client.js");

/// The line in the client that names the change stream's path; served with the configured path.
const CHANGES_PATH_LINE: &str = "const CHANGES_PATH = '/changes';";

/// The client as served: [`SOURCE`] with the configured change-stream path, rendered once.
pub fn render(changes_path: &str) -> Bytes {
    if changes_path == "/changes" {
        return Bytes::from_static(SOURCE.as_bytes());
    }
    // The path was validated at start-up (a URL path without quotes); JSON quoting is JS quoting.
    let quoted = serde_json::to_string(changes_path).unwrap_or_else(|_| "\"/changes\"".into());
    Bytes::from(SOURCE.replacen(
        CHANGES_PATH_LINE,
        &format!("const CHANGES_PATH = {quoted};"),
        1,
    ))
}

/// Where the client is served, inside the proxy's own namespace.
pub const PATH: &str = "/__hmr/client.js";

/// The tag injected into pages. A module script: deferred by nature (never blocks parsing), and
/// the same URL as an app's own `import … from '/__hmr/client.js'`, so both share one instance.
pub const TAG: &str = r#"<script type="module" src="/__hmr/client.js"></script>"#;

/// The tag carrying a CSP nonce (already validated as base64 by the caller).
pub fn tag_with_nonce(nonce: &str) -> String {
    format!(r#"<script type="module" src="/__hmr/client.js" nonce="{nonce}"></script>"#)
}

/// Where the loader for XML documents is served (see [`XML_LOADER`]).
pub const XML_LOADER_PATH: &str = "/__hmr/xml.js";

/// An XHTML page served as XML (`application/xhtml+xml`) runs no module script in Chromium
/// (crbug.com/717643), so [`TAG`] would load nothing there; a classic script may still import
/// the module. (Under a policy that allows scripts only by nonce, without `'strict-dynamic'`, the
/// import is blocked: the loader carries the nonce, the module cannot.)
pub const XML_LOADER: &str = "// hmr-proxy: an XML document runs no module script (crbug.com/717643); a classic one imports the client.\nimport('/__hmr/client.js');\n";

/// The tag injected into XML documents instead of [`TAG`].
pub const XML_TAG: &str = r#"<script src="/__hmr/xml.js"></script>"#;

/// [`XML_TAG`] carrying a CSP nonce.
pub fn xml_tag_with_nonce(nonce: &str) -> String {
    format!(r#"<script src="/__hmr/xml.js" nonce="{nonce}"></script>"#)
}

/// Serve the client. `no-cache` makes the browser revalidate, so a new proxy version is picked up;
/// `nosniff` and a same-origin resource policy stop other sites from including it (XSSI).
pub fn response(method: &Method, source: &Bytes) -> Response<Body> {
    let body = if method == Method::HEAD {
        body::empty()
    } else {
        body::full(source.clone())
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
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(source.len()));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_change_path_is_served() {
        assert!(
            SOURCE.contains(CHANGES_PATH_LINE),
            "the client lost its path line"
        );
        let served = render("/__events");
        let text = String::from_utf8_lossy(&served);
        assert!(text.contains("const CHANGES_PATH = \"/__events\";"));
        assert!(!text.contains(CHANGES_PATH_LINE));
    }
}
