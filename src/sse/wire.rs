//! The event-stream wire format: what `/changes` sends, byte for byte.
//!
//! Owns SSE framing and the JSON payload shared with `client/` (documented in `client/README.md`).
//! Each batch is one `change` event carrying `{"id","paths","urls","reload"}` (and `"reason"` for
//! a reload that names no file, `"restart"` for the reload of an upstream's comeback, `"served"`
//! for files served as they are, `"spa"` with them under `--spa`), followed by one plain `data:`
//! message per path holding the path as a JSON string, so the smallest possible
//! client (`onmessage` + `JSON.parse`) works too. A batch of more than [`LISTED_AT_MOST`] files
//! lists only the first of them, counts the rest in `"unlisted"` and is a reload: a deletion of
//! 20,000 files sent 2.2 MB to every tab, which only reloaded. A stream opens with a `hello` event
//! carrying the proxy's instance id and the newest batch id. Encoding happens once per batch; the
//! bytes are shared by every tab.

use bytes::Bytes;
use serde::Serialize;

/// Browsers retry a dropped stream after this many milliseconds: quick enough that a restarted
/// proxy is picked up before the developer looks back at the page.
const RETRY_MS: u32 = 1000;

/// The most files one `change` event lists. A batch with more (a folder of thousands deleted, a
/// checkout of a whole branch) lists these, says how many it left out, and reloads the page: no
/// page swaps thousands of files in place, and the whole list (paths, URLs and a message per
/// path: 2.2 MB for 20,000 files) was parsed by every tab, and kept in the replay ring, only to
/// reload. A `git checkout` of 500 files is still sent whole (the benchmark's, and a tab can still
/// swap what it holds of it).
pub const LISTED_AT_MOST: usize = 500;

/// A batch to encode: every file of it, in order (the encoding lists at most
/// [`LISTED_AT_MOST`]).
#[derive(Debug)]
pub struct Message<'a> {
    pub id: u64,
    pub paths: &'a [String],
    pub urls: &'a [String],
    pub reload: bool,
    /// Why a batch that names no file reloads (`upstream http://localhost:8000 restarted`,
    /// `POST /__hmr/reload`), for the tab's console.
    pub reason: Option<&'a str>,
    /// The reload for an upstream's comeback: that comeback's mark (`sse::Restarts`), which a
    /// page served after it holds too, and skips the reload for.
    pub restart: Option<u64>,
    /// Every file of the batch is one the proxy serves from its folder as it is (no upstream):
    /// nothing else makes a page, so a file no page fetched changes none.
    pub served: bool,
    /// Served with `--spa`: the folder's top `index.html` answers every page address that is no
    /// file, so it is every page's own file; without it, only `/`'s.
    pub spa: bool,
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

/// The `upstream` event: the dev servers (their origins) that have been down for longer than a
/// restart takes, `{"down":["http://localhost:8000"]}`, or `{"down":[]}` once all answer again.
/// Sent when the list changes, and after `hello` to a stream that opens while it is not empty;
/// a tab shows it (see `client/README.md`). No id: it is no batch, and not replayed.
pub fn upstream(down: &[String]) -> Bytes {
    let data = serde_json::json!({ "down": down }).to_string();
    Bytes::from(format!("event: upstream\ndata: {data}\n\n"))
}

/// A comment that keeps idle connections (and intermediaries) alive and detects dead peers.
pub fn heartbeat() -> Bytes {
    Bytes::from_static(b": ping\n\n")
}

/// The JSON body of a `change` event as sent: the files listed, and how many were left out.
#[derive(Serialize)]
struct Sent<'a> {
    id: u64,
    paths: &'a [String],
    urls: &'a [String],
    reload: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    served: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    spa: bool,
    /// Files of the batch not listed (beyond [`LISTED_AT_MOST`]); absent when none.
    #[serde(skip_serializing_if = "is_zero")]
    unlisted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One batch: the `change` event, then a plain message per path listed.
pub fn batch(message: &Message<'_>) -> Bytes {
    let listed = message.paths.len().min(LISTED_AT_MOST);
    let unlisted = message.paths.len() - listed;
    let sent = Sent {
        id: message.id,
        paths: &message.paths[..listed],
        urls: &message.urls[..listed.min(message.urls.len())],
        // Whatever the files left out are, the page cannot be patched for them.
        reload: message.reload || unlisted > 0,
        reason: message.reason,
        restart: message.restart,
        // Said of every file of the batch, and the page cannot tell which it fetched of those
        // not listed: a reload, like any other.
        served: message.served && unlisted == 0,
        spa: message.served && message.spa && unlisted == 0,
        unlisted,
    };
    let json = serde_json::to_string(&sent).unwrap_or_else(|_| String::from("{}"));
    let mut out = format!("id: {}\nevent: change\ndata: {json}\n\n", message.id);
    for path in sent.paths {
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
            restart: None,
            served: false,
            spa: false,
        });
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            "id: 7\nevent: change\ndata: {\"id\":7,\"paths\":[\"css/site.css\",\"a\\\"b\\nc.js\"],\
             \"urls\":[\"/css/site.css\",\"/a%22b%0Ac.js\"],\"reload\":false}\n\n\
             data: \"css/site.css\"\n\ndata: \"a\\\"b\\nc.js\"\n\n"
        );
    }

    /// A batch of more files than a tab should parse lists the first [`LISTED_AT_MOST`], counts
    /// the rest, and reloads; one of that many is sent whole, as before.
    #[test]
    fn a_batch_of_thousands_lists_a_few_hundred_and_reloads() {
        let encode = |n: usize| {
            let paths: Vec<String> = (0..n)
                .map(|i| format!("vendorlib/pkg{}/lib/sub/f{}.js", i / 100, i % 100))
                .collect();
            let urls: Vec<String> = paths.iter().map(|p| format!("/{p}")).collect();
            let bytes = batch(&Message {
                id: 9,
                paths: &paths,
                urls: &urls,
                reload: false,
                reason: None,
                restart: None,
                served: true,
                spa: false,
            });
            let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
            let json = text
                .lines()
                .find_map(|line| line.strip_prefix("data: {"))
                .map(|rest| format!("{{{rest}"))
                .expect("the change event");
            let json: serde_json::Value = serde_json::from_str(&json).expect("json");
            let plain = text.matches("\ndata: \"").count();
            (json, plain, text.len())
        };
        let (json, plain, _) = encode(LISTED_AT_MOST);
        assert_eq!(json["paths"].as_array().map(Vec::len), Some(LISTED_AT_MOST));
        assert_eq!(
            (json["reload"].as_bool(), json.get("unlisted")),
            (Some(false), None)
        );
        assert_eq!(json["served"], true);
        assert_eq!(plain, LISTED_AT_MOST);

        let (json, plain, len) = encode(20_000);
        assert_eq!(json["paths"].as_array().map(Vec::len), Some(LISTED_AT_MOST));
        assert_eq!(json["urls"].as_array().map(Vec::len), Some(LISTED_AT_MOST));
        assert_eq!(json["paths"][0], "vendorlib/pkg0/lib/sub/f0.js");
        assert_eq!(json["unlisted"], 20_000 - LISTED_AT_MOST);
        assert_eq!(json["reload"], true);
        assert!(json.get("served").is_none(), "{json}");
        assert_eq!(plain, LISTED_AT_MOST);
        // Tens of kilobytes for every tab, not the 2.2 MB of the whole list.
        assert!(len < 64 * 1024, "{len} bytes");
    }
}
