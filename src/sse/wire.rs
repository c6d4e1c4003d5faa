//! The event-stream wire format: what `/changes` sends, byte for byte.
//!
//! Owns SSE framing and the JSON payload shared with `client/` (documented in `client/README.md`).
//! Each batch is one `change` event carrying `{"id","paths","urls","reload"}` (and `"reason"` for
//! a reload that names no file, `"served"` for files served as they are), followed by one
//! plain `data:` message per path holding the path as a JSON string, so the smallest possible
//! client (`onmessage` + `JSON.parse`) works too. A stream opens with a `hello` event carrying
//! the proxy's instance id and the newest batch id. Encoding happens once per batch; the bytes are
//! shared by every tab.

use bytes::Bytes;
use serde::Serialize;

/// Browsers retry a dropped stream after this many milliseconds: quick enough that a restarted
/// proxy is picked up before the developer looks back at the page.
const RETRY_MS: u32 = 1000;

/// The JSON body of a `change` event.
#[derive(Debug, Serialize)]
pub struct Message<'a> {
    pub id: u64,
    pub paths: &'a [String],
    pub urls: &'a [String],
    pub reload: bool,
    /// Why a batch that names no file reloads (`upstream http://localhost:8000 restarted`,
    /// `POST /__hmr/reload`), for the tab's console.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// Every file of the batch is one the proxy serves from its folder as it is (no upstream):
    /// nothing else makes a page, so a file no page fetched changes none.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub served: bool,
}

/// The first bytes of every stream: the retry interval and a comment, so the browser sees the
/// stream open at once (and intermediaries do not wait for a first event), then a `hello` event
/// naming this proxy instance: a tab that reconnects and meets another instance knows the proxy
/// restarted and reloads.
///
/// `last` is the newest batch id when the stream opened: a tab that has seen no batch yet can
/// resume from it (`?lastEventId=`) if it reconnects, so nothing published in between is lost.
pub fn preamble(instance: &str, last: u64) -> Bytes {
    let hello = serde_json::json!({ "instance": instance, "last": last }).to_string();
    Bytes::from(format!(
        "retry: {RETRY_MS}\n: connected\n\nevent: hello\ndata: {hello}\n\n"
    ))
}

/// A comment that keeps idle connections (and intermediaries) alive and detects dead peers.
pub fn heartbeat() -> Bytes {
    Bytes::from_static(b": ping\n\n")
}

/// One batch: the `change` event, then a plain message per path.
pub fn batch(message: &Message<'_>) -> Bytes {
    let json = serde_json::to_string(message).unwrap_or_else(|_| String::from("{}"));
    let mut out = format!("id: {}\nevent: change\ndata: {json}\n\n", message.id);
    for path in message.paths {
        let quoted = serde_json::to_string(path).unwrap_or_default();
        out.push_str("data: ");
        out.push_str(&quoted);
        out.push_str("\n\n");
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_framing() {
        let paths = vec!["css/site.css".to_string(), "a\"b\nc.js".to_string()];
        let urls = vec!["/css/site.css".to_string(), "/a%22b%0Ac.js".to_string()];
        let bytes = batch(&Message {
            id: 7,
            paths: &paths,
            urls: &urls,
            reload: false,
            reason: None,
            served: false,
        });
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            "id: 7\nevent: change\ndata: {\"id\":7,\"paths\":[\"css/site.css\",\"a\\\"b\\nc.js\"],\
             \"urls\":[\"/css/site.css\",\"/a%22b%0Ac.js\"],\"reload\":false}\n\n\
             data: \"css/site.css\"\n\ndata: \"a\\\"b\\nc.js\"\n\n"
        );
    }
}
