//! Change-stream connections served without hyper.
//!
//! Owns one shortcut: a connection whose first request is a plain HTTP/1.1 `GET` of the change
//! stream's path is answered here, by writing the response head and then the stream's bytes
//! straight to the socket. Why: an event stream lives as long as its tab, and a hyper HTTP/1
//! connection keeps about 22 KiB for its whole life (a read buffer that has grown to 16 KiB, an
//! 8 KiB write buffer, the slot for the request future, the task); served here a stream keeps
//! its body, the socket and a small task, so 10,000 streams take tens of megabytes, not 220.
//!
//! The request head is only `peek`ed: anything this module does not take — another path or
//! method, a request on the path that is not for the stream (`router::asks_for_stream`), HTTP/1.0, a body, a head split across packets or larger than [`MAX_HEAD`], HTTP/2 —
//! stays on the socket untouched for hyper, which then serves it as before. What to answer
//! (checks, refusals, the stream itself) is the router's ([`Router::handle_changes`]), the same
//! as for a stream that comes through hyper; this module knows only the HTTP/1.1 framing: the
//! head with `Connection: close`, the body delimited by closing the connection, which every
//! `EventSource` accepts. A stream requested on a connection that already carried other requests
//! (a browser reusing a keep-alive connection) is taken from hyper between messages by
//! [`handover`] and then answered here the same way.
//!
//! [`Router::handle_changes`]: crate::router::Router::handle_changes

pub(crate) mod handover;

use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri, Version, header};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::body::Body;

/// The largest request head taken here (browsers send cookies for `localhost` from every app
/// that ever ran there); a larger one goes to hyper, whose limits then apply.
const MAX_HEAD: usize = 8 * 1024;

/// More header fields than this: hyper's business.
const MAX_HEADERS: usize = 64;

/// Whether a connection whose first bytes are `first` may be asking for the change stream: the
/// bytes so far agree with `GET <changes_path>` followed by a space or `?`. Judged on what the
/// server has already peeked, so every other connection is spared [`peek_request`]'s 8 KiB peek.
pub(crate) fn may_be_stream(first: &[u8], changes_path: &str) -> bool {
    let (method, rest) = first.split_at(first.len().min(4));
    let path = changes_path.as_bytes();
    let (target, after) = rest.split_at(rest.len().min(path.len()));
    b"GET ".starts_with(method)
        && path.starts_with(target)
        && after.first().is_none_or(|b| matches!(b, b' ' | b'?'))
}

/// The request on `stream`, if its first request is a complete, bodiless HTTP/1.1 `GET` of
/// `changes_path` (with or without a query); with the length of its head. Reads nothing.
pub(crate) async fn peek_request(
    stream: &TcpStream,
    changes_path: &str,
) -> Option<(Request<()>, usize)> {
    let mut buf = vec![0u8; MAX_HEAD];
    let n = stream.peek(&mut buf).await.ok()?;
    parse(&buf[..n], changes_path)
}

/// See [`peek_request`].
fn parse(bytes: &[u8], changes_path: &str) -> Option<(Request<()>, usize)> {
    // A prefix test before parsing anything: `may_be_stream`'s, on a request line long enough
    // to settle it (`GET `, the path, and the byte after it).
    if bytes.len() <= b"GET ".len() + changes_path.len() || !may_be_stream(bytes, changes_path) {
        return None;
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let httparse::Status::Complete(head_len) = parsed.parse(bytes).ok()? else {
        return None;
    };
    if parsed.version != Some(1) {
        return None;
    }
    let uri: Uri = parsed.path?.parse().ok()?;
    let mut req = Request::new(());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        headers.append(name, value);
    }
    // A body (or a framing question) is hyper's to read and judge.
    let bodiless = !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .all(|v| v.as_bytes() == b"0");
    (bodiless && crate::router::asks_for_stream(&req)).then_some((req, head_len))
}

/// Answer the request (`head_len` bytes of it still on the socket: peeked, not read; 0 when
/// [`handover`] already read it) with `response`, streaming its body until it ends or the
/// client goes away, then close.
pub(crate) async fn serve(mut stream: TcpStream, head_len: usize, response: Response<Body>) {
    let mut head = vec![0u8; head_len];
    if stream.read_exact(&mut head).await.is_err() {
        return;
    }
    let (parts, mut body) = response.into_parts();
    let out = response_head(&parts, body.size_hint().exact());
    if stream.write_all(&out).await.is_err() {
        return;
    }
    drop((head, out));
    // The response says `Connection: close`: reading only tells when the client has gone, and
    // anything it still sends (a pipelined request) ends the stream rather than piling up.
    let mut gone = [0u8; 1];
    loop {
        let data: Bytes = tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue, // trailers: no place for them in this framing
                },
                Some(Err(_)) | None => break,
            },
            _ = stream.read(&mut gone) => break,
        };
        if stream.write_all(&data).await.is_err() {
            break;
        }
    }
    let _ = stream.shutdown().await;
}

/// Status line and header fields, with `Connection: close` as the body's framing, plus what
/// hyper would add: `Date`, and `Content-Length` for a body of known length (a refusal).
fn response_head(parts: &http::response::Parts, length: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut field = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in &parts.headers {
        if name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || name == header::CONTENT_LENGTH
            || name == header::DATE
        {
            continue;
        }
        field(name.as_str().as_bytes(), value.as_bytes());
    }
    field(
        b"date",
        httpdate::fmt_http_date(SystemTime::now()).as_bytes(),
    );
    if let Some(length) = length {
        field(b"content-length", length.to_string().as_bytes());
    }
    field(b"connection", b"close");
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::{may_be_stream, parse};

    #[test]
    fn the_first_bytes_rule_out_other_requests() {
        for first in [
            "G",
            "GET",
            "GET ",
            "GET /cha",
            "GET /changes",
            "GET /changes ",
            "GET /changes?x",
        ] {
            assert!(may_be_stream(first.as_bytes(), "/changes"), "{first:?}");
        }
        for first in [
            "P",
            "GET /a",
            "GET /changesx",
            "HEAD /changes",
            "GET /changes/",
        ] {
            assert!(!may_be_stream(first.as_bytes(), "/changes"), "{first:?}");
        }
    }

    fn taken(head: &str) -> bool {
        parse(head.as_bytes(), "/changes").is_some()
    }

    #[test]
    fn a_plain_stream_request_is_taken_with_its_head_length() {
        let head = "GET /changes?lastEventId=4 HTTP/1.1\r\nHost: localhost:3000\r\n\
                    Last-Event-ID: 3\r\nAccept: text/event-stream\r\n\r\n";
        let (req, len) = parse(format!("{head}GET / HTTP/1.1\r\n").as_bytes(), "/changes")
            .unwrap_or_else(|| panic!("not taken"));
        assert_eq!(len, head.len());
        assert_eq!(req.uri().query(), Some("lastEventId=4"));
        assert_eq!(req.headers()["last-event-id"], "3");
        assert_eq!(req.headers()["host"], "localhost:3000");
    }

    #[test]
    fn an_empty_content_length_is_no_body() {
        assert!(taken(
            "GET /changes HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
        ));
    }

    #[test]
    fn everything_else_is_left_to_hyper() {
        for head in [
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /changesx HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /changes/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "HEAD /changes HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST /changes HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            "GET /changes HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET /changes HTTP/1.1\r\nHost: a\r\n",
            "GET /changes HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            "GET /changes HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n",
            "GET /changes HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET /changes HTTP/1.1\r\nHo st: a\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET http://evil.example/changes HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(!taken(head), "{head:?}");
        }
        let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
        assert!(!taken(&format!("GET /changes HTTP/1.1\r\n{many}\r\n")));
    }
}
