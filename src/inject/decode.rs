//! Undoing `Content-Encoding` so the rewriter sees markup, and asking upstream for pages that need
//! no undoing.
//!
//! Owns the list of codings the proxy decodes (gzip/x-gzip, deflate, br, zstd), the streaming
//! decoder body (async-compression over the upstream body, one bounded buffer per response, so a
//! decompression bomb costs time, not memory), and a navigation's `Accept-Encoding`, which asks
//! for `identity`. It does not decide whether to rewrite (`decide`) and never re-encodes: the page
//! goes out identity-encoded, which on a loopback connection costs nothing and keeps streaming
//! (a re-encoder would have to flush after every chunk to keep time-to-first-byte).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_compression::tokio::bufread::{
    BrotliDecoder, DeflateDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder,
};
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, header};
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

use crate::body::{self, Body, BoxError};

/// Largest decoded frame handed to the rewriter. Big enough that per-frame overhead vanishes
/// against decoding, small enough that a page still streams in pieces a browser can start on.
const DECODED_FRAME: usize = 32 * 1024;

/// The first decoded frame's size; each full frame doubles the next, up to [`DECODED_FRAME`].
/// A small page then costs a small buffer (zeroed, since the decoder writes into initialised
/// memory) rather than 32 KiB of it.
const FIRST_DECODED_FRAME: usize = 4 * 1024;

/// zstd window limit (2^23 = 8 MiB). RFC 9659 (zstd in HTTP) requires decoders to support 8 MB
/// windows and lets them refuse more; zstd's own default would accept 128 MiB windows, which a
/// hostile upstream could make us allocate per response.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// A content coding the proxy can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Identity,
    Gzip,
    /// `deflate` is meant to be zlib-wrapped (RFC 9110 §8.4.1.2); some servers send raw
    /// deflate, which browsers accept, so both are read.
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    fn from_token(token: &str) -> Option<Coding> {
        match token.to_ascii_lowercase().as_str() {
            "identity" => Some(Coding::Identity),
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "deflate" => Some(Coding::Deflate),
            "br" => Some(Coding::Brotli),
            "zstd" => Some(Coding::Zstd),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// The single coding applied to the body, or the header's text when there are several (stacked
/// codings are legal but nobody sends them on purpose) or one the proxy does not know.
pub(crate) fn content_coding(headers: &HeaderMap) -> Result<Coding, String> {
    let mut found = Coding::Identity;
    let mut all = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            all.push(token.to_string());
            match Coding::from_token(token) {
                Some(Coding::Identity) => {}
                Some(coding) if found == Coding::Identity => found = coding,
                _ => return Err(joined(headers)),
            }
        }
    }
    Ok(found)
}

fn joined(headers: &HeaderMap) -> String {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A navigation asks the upstream for the page uncompressed. The proxy must decode a compressed
/// page before rewriting it and sends it on identity-encoded anyway, so compression between a dev
/// server and the proxy (loopback, or a container network) only costs CPU at both ends: a 100 KB
/// gzip page cost ~36 µs to decode and inject against ~7 µs uncompressed (`cargo bench --bench
/// inject`). A page from a server that compresses regardless is still decoded.
pub(crate) fn ask_for_identity(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
}

/// The body with `coding` undone, as a stream of decoded frames.
pub(crate) fn decode(body: Body, coding: Coding) -> Body {
    if coding == Coding::Identity {
        return body;
    }
    let reader = BodyReader {
        body,
        chunk: Bytes::new(),
        done: false,
        failure: None,
    };
    let stage = match coding {
        Coding::Deflate => Stage::SniffDeflate(reader),
        other => Stage::Decoding(Box::new(Decoder::new(other, reader))),
    };
    body::boxed(Decoded {
        coding,
        stage,
        buf: BytesMut::new(),
        frame: FIRST_DECODED_FRAME,
    })
}

/// Why a decoded body ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The upstream's bytes are not valid in the coding it declared (or end mid-stream).
    #[error("the upstream's {coding} body cannot be decoded: {source}")]
    Corrupt {
        coding: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The upstream body as an `AsyncBufRead` for async-compression. An upstream error is kept aside
/// (the decoder only sees an `io::Error`) so it can be handed on as the upstream's error.
struct BodyReader {
    body: Body,
    /// The current frame's unread bytes.
    chunk: Bytes,
    done: bool,
    failure: Option<BoxError>,
}

impl BodyReader {
    /// Make sure at least two bytes are buffered (or the body has ended), for the zlib header
    /// check. Merges two frames in the rare case the first is a single byte.
    fn poll_peek2(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        while self.chunk.len() < 2 && !self.done {
            let first = std::mem::take(&mut self.chunk);
            let next = match ready!(self.poll_next_chunk(cx)) {
                Ok(next) => next,
                Err(e) => {
                    self.chunk = first;
                    return Poll::Ready(Err(e));
                }
            };
            self.chunk = if first.is_empty() {
                next
            } else {
                let mut merged = BytesMut::from(&first[..]);
                merged.extend_from_slice(&next);
                merged.freeze()
            };
        }
        Poll::Ready(Ok(&self.chunk))
    }

    /// The next non-empty data frame, or empty at the end. Trailers are dropped: they belong to
    /// the encoded representation.
    fn poll_next_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Bytes>> {
        loop {
            if self.done {
                return Poll::Ready(Ok(Bytes::new()));
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        return Poll::Ready(Ok(data));
                    }
                }
                Some(Err(err)) => {
                    self.done = true;
                    let io = io::Error::other(err.to_string());
                    self.failure = Some(err);
                    return Poll::Ready(Err(io));
                }
                None => self.done = true,
            }
        }
    }
}

impl AsyncRead for BodyReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let available = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncBufRead for BodyReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.chunk.is_empty() {
            this.chunk = ready!(this.poll_next_chunk(cx))?;
        }
        Poll::Ready(Ok(&this.chunk))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.chunk.advance(amt.min(this.chunk.len()));
    }
}

/// One of async-compression's decoders over the upstream body.
enum Decoder {
    Gzip(GzipDecoder<BodyReader>),
    Zlib(ZlibDecoder<BodyReader>),
    RawDeflate(DeflateDecoder<BodyReader>),
    Brotli(BrotliDecoder<BodyReader>),
    Zstd(ZstdDecoder<BodyReader>),
}

impl Decoder {
    fn new(coding: Coding, reader: BodyReader) -> Decoder {
        match coding {
            // Identity never gets here; treating it as zlib would only ever fail loudly.
            Coding::Identity | Coding::Deflate => Decoder::Zlib(ZlibDecoder::new(reader)),
            Coding::Gzip => Decoder::Gzip(GzipDecoder::new(reader)),
            Coding::Brotli => Decoder::Brotli(BrotliDecoder::new(reader)),
            Coding::Zstd => Decoder::Zstd(ZstdDecoder::with_params(
                reader,
                &[async_compression::zstd::DParameter::window_log_max(
                    ZSTD_WINDOW_LOG_MAX,
                )],
            )),
        }
    }

    fn reader(&mut self) -> &mut BodyReader {
        match self {
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Zlib(d) => d.get_mut(),
            Decoder::RawDeflate(d) => d.get_mut(),
            Decoder::Brotli(d) => d.get_mut(),
            Decoder::Zstd(d) => d.get_mut(),
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self {
            Decoder::Gzip(d) => Pin::new(d).poll_read(cx, buf),
            Decoder::Zlib(d) => Pin::new(d).poll_read(cx, buf),
            Decoder::RawDeflate(d) => Pin::new(d).poll_read(cx, buf),
            Decoder::Brotli(d) => Pin::new(d).poll_read(cx, buf),
            Decoder::Zstd(d) => Pin::new(d).poll_read(cx, buf),
        }
    }
}

enum Stage {
    /// `deflate` before its first two bytes are known: zlib header or raw deflate.
    SniffDeflate(BodyReader),
    /// Boxed: zlib-rs's inflate state makes a decoder several times the size of the rest.
    Decoding(Box<Decoder>),
    Done,
}

/// The decoded body.
struct Decoded {
    coding: Coding,
    stage: Stage,
    /// Reused output buffer; each frame is split off it.
    buf: BytesMut,
    /// How much the next read may decode (see [`FIRST_DECODED_FRAME`]).
    frame: usize,
}

/// Whether two bytes start a zlib stream (RFC 1950: method 8, window ≤ 32 KiB, header checksum).
fn is_zlib_header(bytes: &[u8]) -> bool {
    match bytes {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

impl http_body::Body for Decoded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            match &mut this.stage {
                Stage::Done => return Poll::Ready(None),
                Stage::SniffDeflate(reader) => {
                    let zlib = match ready!(reader.poll_peek2(cx)) {
                        Ok(head) => is_zlib_header(head),
                        Err(_) => {
                            let failure = reader.failure.take();
                            this.stage = Stage::Done;
                            return Poll::Ready(failure.map(Err));
                        }
                    };
                    let Stage::SniffDeflate(reader) =
                        std::mem::replace(&mut this.stage, Stage::Done)
                    else {
                        return Poll::Ready(None);
                    };
                    this.stage = Stage::Decoding(Box::new(if zlib {
                        Decoder::Zlib(ZlibDecoder::new(reader))
                    } else {
                        Decoder::RawDeflate(DeflateDecoder::new(reader))
                    }));
                }
                Stage::Decoding(decoder) => {
                    let frame = this.frame;
                    if this.buf.len() < frame {
                        this.buf.resize(frame, 0);
                    }
                    let mut read = ReadBuf::new(&mut this.buf[..frame]);
                    let result = ready!(decoder.poll_read(cx, &mut read));
                    let n = read.filled().len();
                    if n == frame {
                        this.frame = (frame * 2).min(DECODED_FRAME);
                    }
                    return Poll::Ready(match result {
                        Ok(()) if n == 0 => {
                            this.stage = Stage::Done;
                            None
                        }
                        Ok(()) => Some(Ok(Frame::data(this.buf.split_to(n).freeze()))),
                        Err(source) => {
                            let failure = decoder.reader().failure.take();
                            this.stage = Stage::Done;
                            Some(Err(failure.unwrap_or_else(|| {
                                Box::new(DecodeError::Corrupt {
                                    coding: this.coding.name(),
                                    source,
                                })
                            })))
                        }
                    });
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Write;

    fn headers(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn codings() {
        assert_eq!(content_coding(&HeaderMap::new()), Ok(Coding::Identity));
        assert_eq!(content_coding(&headers("identity")), Ok(Coding::Identity));
        assert_eq!(content_coding(&headers("GZIP")), Ok(Coding::Gzip));
        assert_eq!(content_coding(&headers("x-gzip")), Ok(Coding::Gzip));
        assert_eq!(content_coding(&headers("deflate")), Ok(Coding::Deflate));
        assert_eq!(content_coding(&headers("br")), Ok(Coding::Brotli));
        assert_eq!(content_coding(&headers("zstd")), Ok(Coding::Zstd));
        assert_eq!(content_coding(&headers("identity, br")), Ok(Coding::Brotli));
        assert_eq!(
            content_coding(&headers("gzip, br")),
            Err("gzip, br".to_string())
        );
        assert_eq!(
            content_coding(&headers("compress")),
            Err("compress".to_string())
        );
        let mut two = headers("gzip");
        two.append(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(content_coding(&two).is_err());
    }

    #[test]
    fn zlib_header_check() {
        assert!(is_zlib_header(&[0x78, 0x9c]));
        assert!(is_zlib_header(&[0x78, 0x01]));
        assert!(is_zlib_header(&[0x78, 0xda]));
        assert!(!is_zlib_header(&[0x78, 0x9d]));
        assert!(!is_zlib_header(&[0xcb, 0x48]));
        assert!(!is_zlib_header(&[0x78]));
    }

    fn chunked(bytes: &[u8], size: usize) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = bytes
            .chunks(size.max(1))
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    async fn collect(body: Body) -> Result<Vec<u8>, BoxError> {
        Ok(body.collect().await?.to_bytes().to_vec())
    }

    fn page() -> Vec<u8> {
        let mut page = b"<!doctype html><html><head><title>t</title></head><body>".to_vec();
        for i in 0..5000 {
            page.extend_from_slice(format!("<p>line {i}</p>\n").as_bytes());
        }
        page
    }

    fn zlib(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[tokio::test]
    async fn every_coding_round_trips_in_any_chunking() {
        let page = page();
        let gzip = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&page).unwrap();
            e.finish().unwrap()
        };
        let raw = {
            let mut e =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&page).unwrap();
            e.finish().unwrap()
        };
        let br = {
            let mut out = Vec::new();
            brotli::BrotliCompress(&mut &page[..], &mut out, &Default::default()).unwrap();
            out
        };
        let zstd = zstd::encode_all(&page[..], 3).unwrap();
        for (coding, encoded) in [
            (Coding::Gzip, gzip),
            (Coding::Deflate, zlib(&page)),
            (Coding::Deflate, raw),
            (Coding::Brotli, br),
            (Coding::Zstd, zstd),
        ] {
            for size in [1, 2, 7, 4096, usize::MAX] {
                let out = collect(decode(chunked(&encoded, size), coding)).await;
                assert_eq!(out.unwrap(), page, "{coding:?} in chunks of {size}");
            }
        }
    }

    #[tokio::test]
    async fn corrupt_or_truncated_input_is_an_error() {
        let encoded = zlib(&page());
        let truncated = &encoded[..encoded.len() / 2];
        assert!(
            collect(decode(chunked(truncated, 100), Coding::Deflate))
                .await
                .is_err()
        );
        assert!(
            collect(decode(chunked(b"not gzip at all", 3), Coding::Gzip))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn upstream_errors_come_through_as_themselves() {
        #[derive(Debug, thiserror::Error)]
        #[error("upstream reset")]
        struct Reset;
        let encoded = zlib(&page());
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::copy_from_slice(&encoded[..10]))),
            Err(Box::new(Reset)),
        ];
        let body = body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )));
        let err = collect(decode(body, Coding::Deflate)).await.unwrap_err();
        assert!(err.is::<Reset>(), "{err}");
    }
}
