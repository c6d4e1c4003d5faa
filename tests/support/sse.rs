//! A real event-stream client for tests: one HTTP connection to `/changes`, parsed as the
//! browser's `EventSource` would.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::within;

/// One parsed message: comments, `id`, `event` and the joined `data` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    pub retry: Option<String>,
    pub comments: Vec<String>,
}

pub struct SseClient {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    body: Incoming,
    buf: String,
    /// The proxy instance named by the stream's `hello` event (set by [`SseClient::open`]).
    pub instance: String,
}

impl SseClient {
    /// Connect to `path` on `addr` with extra request headers.
    pub async fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseClient {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let mut req = http::Request::get(format!("http://{addr}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = within(
            "event stream response",
            client.request(req.body(Empty::new()).unwrap()),
        )
        .await
        .expect("event stream");
        let (parts, body) = res.into_parts();
        SseClient {
            status: parts.status,
            headers: parts.headers,
            body,
            buf: String::new(),
            instance: String::new(),
        }
    }

    /// Connect and read the opening `retry:` + comment, so the stream is known to be live.
    pub async fn open(addr: SocketAddr, headers: &[(&str, &str)]) -> SseClient {
        let mut client = SseClient::connect(addr, "/changes", headers).await;
        assert_eq!(client.status, 200);
        let first = client.next_message().await.expect("preamble");
        assert_eq!(first.retry.as_deref(), Some("1000"), "{first:?}");
        let hello = client.next_message().await.expect("hello");
        assert_eq!(hello.event.as_deref(), Some("hello"), "{hello:?}");
        client.instance =
            serde_json::from_str::<serde_json::Value>(&hello.data.unwrap_or_default())
                .expect("hello json")["instance"]
                .as_str()
                .expect("instance")
                .to_string();
        client
    }

    /// The next message, or `None` when the stream ended.
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                return Some(parse(&block));
            }
            let frame = within("next stream bytes", self.body.frame()).await?;
            let Ok(frame) = frame else { return None };
            if let Some(data) = frame.data_ref() {
                self.buf.push_str(&String::from_utf8_lossy(data));
            }
        }
    }

    /// The next `change` batch as JSON, skipping heartbeats and plain per-path messages. Bounded
    /// as a whole: heartbeats keep coming while a batch never does.
    pub async fn next_batch(&mut self) -> serde_json::Value {
        within("a change batch", async {
            loop {
                let msg = self
                    .next_message()
                    .await
                    .expect("stream ended before a batch");
                if msg.event.as_deref() == Some("change") {
                    let data = msg.data.expect("change event carries data");
                    let mut json: serde_json::Value = serde_json::from_str(&data).expect("json");
                    json["_event_id"] = serde_json::Value::from(msg.id.unwrap_or_default());
                    return json;
                }
            }
        })
        .await
    }
}

fn parse(block: &str) -> Message {
    let mut msg = Message::default();
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            msg.comments.push(comment.trim().to_string());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => msg.id = Some(value.to_string()),
            "event" => msg.event = Some(value.to_string()),
            "data" => data.push(value),
            "retry" => msg.retry = Some(value.to_string()),
            _ => {}
        }
    }
    if !data.is_empty() {
        msg.data = Some(data.join("\n"));
    }
    msg
}

/// The sorted `paths` of a batch.
pub fn paths(batch: &serde_json::Value) -> Vec<String> {
    let mut paths: Vec<String> = batch["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| p.as_str().expect("path").to_string())
        .collect();
    paths.sort();
    paths
}
