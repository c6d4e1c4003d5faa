//! Entity-tag comparison (RFC 9110, 8.8.3): whether a request's `If-None-Match` or `If-Match`
//! names the version the proxy holds.
//!
//! Owns the list parsing and the strong and weak comparisons, shared by the folder server (a
//! file's tag) and the proxy's own files (the client's tag). It does not make tags: each owner
//! knows what identifies its version.

use http::HeaderValue;

/// Whether a list of tags (`If-None-Match`, `If-Match`) names `etag`, or is `*`. `strong`:
/// strong comparison (`If-Match`: a weak tag matches nothing); else weak (`If-None-Match`: an
/// injected page's tag is the weak form of its file's).
pub fn matches(tags: &HeaderValue, etag: &HeaderValue, strong: bool) -> bool {
    let Ok(tags) = tags.to_str() else {
        return false;
    };
    let ours = etag.to_str().unwrap_or_default();
    tags.split(',').map(str::trim).any(|tag| {
        tag == "*"
            || if strong {
                tag == ours && !tag.starts_with("W/")
            } else {
                opaque(tag) == opaque(ours)
            }
    })
}

/// A tag without its weak marker.
fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_and_strong_comparison() {
        let ours = HeaderValue::from_static("\"v1\"");
        let list = |s: &'static str| HeaderValue::from_static(s);
        assert!(matches(&list("\"v0\", W/\"v1\""), &ours, false));
        assert!(!matches(&list("\"v0\", W/\"v1\""), &ours, true));
        assert!(matches(&list("\"v1\""), &ours, true));
        assert!(matches(&list("*"), &ours, true));
        assert!(!matches(&list("\"v2\""), &ours, false));
    }
}
