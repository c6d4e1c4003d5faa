//! The browser client: embedded in the binary, served at `/__hmr/client.js`, loaded by one tag.
//!
//! Owns the client's bytes (`client/hmr-client.js`, embedded with `include_str!` so the binary is
//! self-contained, served with the configured change-stream path written in), the response that
//! serves them, and the `<script>` tag the injector puts into pages. It does not decide where the
//! tag goes (`inject`) or what the client does (`client/`).
//!
//! Every page load asks for the client again (`no-cache`, so a new proxy version is picked up),
//! so the answer is made cheap: a tag naming the bytes' version turns the revalidation into a 304
//! with no body, and a browser that accepts gzip gets the client in about a third of its size
//! (a phone on the LAN loads it once per proxy version, not 134 KB per page).

use std::io::Write as _;
use std::sync::OnceLock;

use bytes::Bytes;
use flate2::{Compression, write::GzEncoder};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use crate::body::{self, Body};
use crate::etag;

/// The client source, as shipped.
pub const SOURCE: &str = include_str!("../client/hmr-client.js");

/// The line in the client that names the change stream's path; served with the configured path.
const CHANGES_PATH_LINE: &str = "const CHANGES_PATH = '/changes';";

/// One of the proxy's own scripts as served: its bytes, the tag naming their version, and their
/// gzip form, made on first use (most runs only ever see the client from one browser).
pub struct Script {
    bytes: Bytes,
    etag: HeaderValue,
    gzip: OnceLock<Option<Bytes>>,
}

impl Script {
    /// A script served as `bytes`.
    pub fn new(bytes: Bytes) -> Self {
        // FNV-1a: the tag only has to change when the bytes do (a new proxy version, another
        // change-stream path), and to be the same for the same bytes after a restart.
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let etag = HeaderValue::from_str(&format!("\"{:x}-{hash:016x}\"", bytes.len()))
            .unwrap_or(HeaderValue::from_static("\"client\""));
        Script {
            bytes,
            etag,
            gzip: OnceLock::new(),
        }
    }

    /// The bytes in gzip, or `None` where compressing does not pay (a few hundred bytes) or failed.
    fn gzip(&self) -> Option<&Bytes> {
        self.gzip
            .get_or_init(|| {
                if self.bytes.len() < 1024 {
                    return None;
                }
                let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
                encoder.write_all(&self.bytes).ok()?;
                encoder.finish().ok().map(Bytes::from)
            })
            .as_ref()
    }
}

/// The client as served: [`SOURCE`] with the configured change-stream path, rendered once.
pub fn render(changes_path: &str) -> Script {
    if changes_path == "/changes" {
        return Script::new(Bytes::from_static(SOURCE.as_bytes()));
    }
    // The path was validated at start-up (a URL path without quotes); JSON quoting is JS quoting.
    let quoted = serde_json::to_string(changes_path).unwrap_or_else(|_| "\"/changes\"".into());
    Script::new(Bytes::from(SOURCE.replacen(
        CHANGES_PATH_LINE,
        &format!("const CHANGES_PATH = {quoted};"),
        1,
    )))
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

/// Serve one of the proxy's scripts. `no-cache` makes the browser revalidate, so a new proxy
/// version is picked up (the tag makes that a 304); `nosniff` and a same-origin resource policy
/// stop other sites from including it (XSSI).
pub fn response(method: &Method, asked: &HeaderMap, script: &Script) -> Response<Body> {
    let fresh = asked
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tags| etag::matches(tags, &script.etag, false));
    let gzip = accepts_gzip(asked).then(|| script.gzip()).flatten();
    let sent = gzip.unwrap_or(&script.bytes);
    let body = if fresh || method == Method::HEAD {
        body::empty()
    } else {
        body::full(sent.clone())
    };
    let mut res = Response::new(body);
    *res.status_mut() = if fresh {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let h = res.headers_mut();
    h.insert(header::ETAG, script.etag.clone());
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if fresh {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return res;
    }
    if gzip.is_some() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
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
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(sent.len()));
    res
}

/// Whether `Accept-Encoding` admits gzip: named (or `*`) without `q=0` (RFC 9110, 12.5.3).
fn accepts_gzip(asked: &HeaderMap) -> bool {
    asked
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|param| {
                param
                    .strip_prefix("q=")
                    .or_else(|| param.strip_prefix("Q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
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
        let text = String::from_utf8_lossy(&served.bytes);
        assert!(text.contains("const CHANGES_PATH = \"/__events\";"));
        assert!(!text.contains(CHANGES_PATH_LINE));
    }

    fn asked(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|&(name, value)| {
                (
                    header::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn gzip_is_sent_only_where_accepted() {
        for (value, gzip) in [
            ("gzip, deflate, br, zstd", true),
            ("br;q=1.0, GZIP;q=0.5", true),
            ("*", true),
            ("gzip;q=0", false),
            ("gzip; q=0.000", false),
            ("identity", false),
            ("br", false),
        ] {
            let headers = asked(&[("accept-encoding", value)]);
            assert_eq!(accepts_gzip(&headers), gzip, "{value}");
        }
    }

    #[test]
    fn the_client_is_compressed_and_revalidated() {
        let script = render("/changes");
        let res = response(
            &Method::GET,
            &asked(&[("accept-encoding", "gzip")]),
            &script,
        );
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
        let length: usize = res.headers()[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(length < SOURCE.len() / 2, "{length} bytes compressed");
        let tag = res.headers()[header::ETAG].clone();
        let res = response(&Method::GET, &HeaderMap::new(), &script);
        assert_eq!(
            res.headers()[header::CONTENT_LENGTH],
            SOURCE.len().to_string()
        );
        assert!(res.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(res.headers()[header::ETAG], tag);
        let mut revalidation = asked(&[("accept-encoding", "gzip")]);
        revalidation.insert(header::IF_NONE_MATCH, tag);
        let res = response(&Method::GET, &revalidation, &script);
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
        assert!(res.headers().get(header::CONTENT_LENGTH).is_none());
        assert_ne!(script.etag, render("/__events").etag);
    }
}
