//! Undoing `Content-Encoding` so the rewriter sees markup, and asking upstream for pages that need
//! no undoing.
//!
//! Owns the list of codings the proxy decodes (gzip/x-gzip, deflate, br, zstd), the streaming
//! decoder body (compression-codecs' decoders fed the upstream's frames, with a bounded output
//! per frame, so a decompression bomb costs time, not memory; gzip and deflate decoders are
//! reused across responses), and a navigation's `Accept-Encoding`, which asks for `identity`. It does not decide whether to rewrite (`decide`) and never re-encodes: the page
//! goes out identity-encoded, which on a loopback connection costs nothing and keeps streaming
//! (a re-encoder would have to flush after every chunk to keep time-to-first-byte).

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use compression_codecs::core::util::{PartialBuffer, WriteBuffer};
use compression_codecs::zstd::params::DParameter;
use compression_codecs::{
    BrotliDecoder, DecodeV2, DeflateDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder,
};
use http::{HeaderMap, HeaderValue, Method, Uri, header};
use http_body::{Body as _, Frame, SizeHint};

use crate::body::{self, Body, BoxError};

/// Largest decoded frame handed to the rewriter. Big enough that per-frame overhead vanishes
/// against decoding, small enough that a page still streams in pieces a browser can start on.
/// Frames are copied out at the size decoded, so a small page costs a small frame.
const DECODED_FRAME: usize = 32 * 1024;

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

/// The body with `coding` undone, as a stream of decoded frames. A body that cannot be decoded
/// ends with a [`DecodeError`], logged as a warning naming the request: before the first decoded
/// frame the injector answers with a 502 page instead, after it the browser gets a page cut
/// short. (The upstream's own errors pass on as themselves; the proxy logs those.)
pub(crate) fn decode(body: Body, coding: Coding, method: &Method, uri: &Uri) -> Body {
    let stage = match coding {
        Coding::Identity => return body,
        Coding::Deflate => Stage::SniffDeflate,
        Coding::Gzip => Stage::Decoding(Decoder::take(Flavour::Gzip)),
        Coding::Brotli => Stage::Decoding(Decoder::new(Flavour::Brotli)),
        Coding::Zstd => Stage::Decoding(Decoder::new(Flavour::Zstd)),
    };
    body::boxed(Decoded {
        coding,
        body,
        input: Bytes::new(),
        upstream_done: false,
        stage,
        request: (method.clone(), uri.clone()),
        produced: false,
        fed: false,
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

/// Which decoder a response needs. `deflate` is two: zlib-wrapped or raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Gzip,
    Zlib,
    RawDeflate,
    Brotli,
    Zstd,
}

impl Flavour {
    /// The slot of a flavour that is pooled (see [`POOL`]).
    fn pool_slot(self) -> Option<usize> {
        match self {
            Flavour::Gzip => Some(0),
            Flavour::Zlib => Some(1),
            Flavour::RawDeflate => Some(2),
            Flavour::Brotli | Flavour::Zstd => None,
        }
    }
}

/// One codec from compression-codecs (the layer under async-compression), driven directly: the
/// body pushes upstream frames in and takes bounded output out, with no `AsyncRead` in between.
enum Codec {
    Gzip(GzipDecoder),
    Zlib(ZlibDecoder),
    RawDeflate(DeflateDecoder),
    Brotli(BrotliDecoder),
    Zstd(ZstdDecoder),
}

impl Codec {
    fn as_dyn(&mut self) -> &mut (dyn DecodeV2 + Send) {
        match self {
            Codec::Gzip(c) => c,
            Codec::Zlib(c) => c,
            Codec::RawDeflate(c) => c,
            Codec::Brotli(c) => c,
            Codec::Zstd(c) => c,
        }
    }
}

/// A codec and the buffer it decodes into, which is never zeroed: the codec writes through
/// compression-core's `WriteBuffer`, and only what it wrote is copied out into a frame.
struct Decoder {
    flavour: Flavour,
    codec: Codec,
    scratch: Vec<MaybeUninit<u8>>,
}

/// Idle gzip, zlib and raw deflate decoders, one list per flavour. Setting one up (zlib-rs's
/// inflate state and its 32 KiB window, both initialised) cost ~14,000 instructions, an eighth of
/// everything a small gzip page costs the proxy (callgrind, 2 KB page); a reset one decodes the
/// same. Brotli and zstd decoders are not kept: their state grows with the stream (a zstd window
/// can reach 8 MiB), and dev servers rarely send them.
static POOL: [Mutex<Vec<Decoder>>; 3] = [const { Mutex::new(Vec::new()) }; 3];

/// Decoders kept per flavour: more than the pages a browser loads at once, and ~48 KiB each.
const POOL_MAX: usize = 8;

impl Decoder {
    fn new(flavour: Flavour) -> Decoder {
        let codec = match flavour {
            Flavour::Gzip => Codec::Gzip(GzipDecoder::new()),
            Flavour::Zlib => Codec::Zlib(ZlibDecoder::new()),
            Flavour::RawDeflate => Codec::RawDeflate(DeflateDecoder::new()),
            Flavour::Brotli => Codec::Brotli(BrotliDecoder::new()),
            Flavour::Zstd => {
                Codec::Zstd(ZstdDecoder::new_with_params(&[DParameter::window_log_max(
                    ZSTD_WINDOW_LOG_MAX,
                )]))
            }
        };
        let mut scratch = Vec::new();
        scratch.resize_with(DECODED_FRAME, MaybeUninit::uninit);
        Decoder {
            flavour,
            codec,
            scratch,
        }
    }

    /// A pooled decoder of `flavour` when one is idle, else a new one.
    fn take(flavour: Flavour) -> Decoder {
        flavour
            .pool_slot()
            .and_then(|slot| lock(&POOL[slot]).pop())
            .unwrap_or_else(|| Decoder::new(flavour))
    }

    /// Hand a decoder back for the next response, reset (a stream cut off halfway, or corrupt,
    /// leaves nothing behind: `reinit` resets zlib's state and the gzip header and checksum).
    fn give_back(mut self) {
        let Some(slot) = self.flavour.pool_slot() else {
            return;
        };
        if self.codec.as_dyn().reinit().is_err() {
            return;
        }
        let mut idle = lock(&POOL[slot]);
        if idle.len() < POOL_MAX {
            idle.push(self);
        }
    }
}

/// The pool's lock. A panic while it was held cannot leave a list half-updated (push and pop
/// are single steps), so a poisoned lock is used as is.
fn lock(pool: &Mutex<Vec<Decoder>>) -> MutexGuard<'_, Vec<Decoder>> {
    pool.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Stage {
    /// `deflate` before its first two bytes are known: zlib header or raw deflate.
    SniffDeflate,
    Decoding(Decoder),
    /// The input has ended (or the codec saw the end of its stream): draining what the codec
    /// still holds and checking the stream was complete.
    Flushing(Decoder),
    Done,
}

/// The decoded body.
struct Decoded {
    coding: Coding,
    body: Body,
    /// The current upstream frame's bytes not yet fed to the codec.
    input: Bytes,
    upstream_done: bool,
    stage: Stage,
    /// For the warning when decoding fails (reference-counted clones, formatted only then).
    request: (Method, Uri),
    /// A decoded frame has gone out: a failure now cuts the page short, where before it the
    /// injector still answers with an error page.
    produced: bool,
    /// A byte has gone into the codec. A body with none is empty, as a browser reads it, not a
    /// stream cut off before its header (which answered 502).
    fed: bool,
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

impl Decoded {
    /// Make `input` hold the next upstream bytes (empty once the upstream has ended). Trailers
    /// are dropped: they belong to the encoded representation. An upstream error is handed on
    /// as itself.
    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        while self.input.is_empty() && !self.upstream_done {
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.input = data;
                    }
                }
                Some(Err(err)) => {
                    self.upstream_done = true;
                    return Poll::Ready(Err(err));
                }
                None => self.upstream_done = true,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The zlib-or-raw decision needs two bytes; a first frame of one byte is merged with the
    /// next.
    fn poll_sniff(&mut self, cx: &mut Context<'_>) -> Poll<Result<Flavour, BoxError>> {
        while self.input.len() < 2 && !self.upstream_done {
            let first = std::mem::take(&mut self.input);
            ready!(self.poll_input(cx))?;
            if !first.is_empty() {
                let mut merged = BytesMut::from(&first[..]);
                merged.extend_from_slice(&self.input);
                self.input = merged.freeze();
            }
        }
        Poll::Ready(Ok(if is_zlib_header(&self.input) {
            Flavour::Zlib
        } else {
            Flavour::RawDeflate
        }))
    }

    /// End the body with a decoding error; the decoder goes back to the pool, reset.
    fn fail(&self, decoder: Decoder, source: io::Error) -> Poll<Option<Result<Bytes, BoxError>>> {
        decoder.give_back();
        let err = DecodeError::Corrupt {
            coding: self.coding.name(),
            source,
        };
        let (method, uri) = &self.request;
        let path = uri.path();
        if self.produced {
            tracing::warn!("{method} {path}: the page is cut short: {err}");
        } else {
            tracing::warn!("{method} {path}: answered 502: {err}");
        }
        Poll::Ready(Some(Err(Box::new(err))))
    }

    /// The next decoded frame, `None` at the end.
    fn poll_decoded(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        loop {
            match std::mem::replace(&mut self.stage, Stage::Done) {
                Stage::Done => return Poll::Ready(None),
                Stage::SniffDeflate => match self.poll_sniff(cx) {
                    Poll::Pending => {
                        self.stage = Stage::SniffDeflate;
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(err)) => return Poll::Ready(Some(Err(err))),
                    Poll::Ready(Ok(flavour)) => {
                        self.stage = Stage::Decoding(Decoder::take(flavour));
                    }
                },
                Stage::Decoding(mut decoder) => {
                    match self.poll_input(cx) {
                        Poll::Pending => {
                            self.stage = Stage::Decoding(decoder);
                            return Poll::Pending;
                        }
                        Poll::Ready(Err(err)) => {
                            decoder.give_back();
                            return Poll::Ready(Some(Err(err)));
                        }
                        Poll::Ready(Ok(())) => {}
                    }
                    if self.input.is_empty() {
                        if !self.fed {
                            decoder.give_back();
                            return Poll::Ready(None);
                        }
                        self.stage = Stage::Flushing(decoder);
                        continue;
                    }
                    self.fed = true;
                    let Decoder { codec, scratch, .. } = &mut decoder;
                    let mut out = WriteBuffer::new_uninitialized(scratch);
                    let mut input = PartialBuffer::new(&self.input[..]);
                    let result = codec.as_dyn().decode(&mut input, &mut out);
                    let consumed = input.written_len();
                    let written = Bytes::copy_from_slice(out.written());
                    self.input.advance(consumed);
                    match result {
                        Err(source) => return self.fail(decoder, source),
                        // The codec saw the end of its stream; anything after it is ignored.
                        Ok(true) => self.stage = Stage::Flushing(decoder),
                        // Input and room for output, and neither used: a stuck codec would
                        // spin this loop for ever, so it ends the body instead.
                        Ok(false) if consumed == 0 && written.is_empty() => {
                            let stuck = io::Error::other("the decoder made no progress");
                            return self.fail(decoder, stuck);
                        }
                        Ok(false) => self.stage = Stage::Decoding(decoder),
                    }
                    if !written.is_empty() {
                        return Poll::Ready(Some(Ok(written)));
                    }
                }
                Stage::Flushing(mut decoder) => {
                    let Decoder { codec, scratch, .. } = &mut decoder;
                    let mut out = WriteBuffer::new_uninitialized(scratch);
                    let result = codec.as_dyn().finish(&mut out);
                    let written = Bytes::copy_from_slice(out.written());
                    let spare = !out.has_no_spare_space();
                    match result {
                        Ok(true) => decoder.give_back(),
                        Ok(false) if !written.is_empty() || !spare => {
                            self.stage = Stage::Flushing(decoder);
                        }
                        Ok(false) => {
                            return self.fail(decoder, io::ErrorKind::UnexpectedEof.into());
                        }
                        Err(source) => return self.fail(decoder, source),
                    }
                    if !written.is_empty() {
                        return Poll::Ready(Some(Ok(written)));
                    }
                }
            }
        }
    }
}

impl Drop for Decoded {
    fn drop(&mut self) {
        if let Stage::Decoding(decoder) | Stage::Flushing(decoder) =
            std::mem::replace(&mut self.stage, Stage::Done)
        {
            decoder.give_back();
        }
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
        let next = ready!(this.poll_decoded(cx));
        this.produced |= matches!(next, Some(Ok(_)));
        Poll::Ready(next.map(|result| result.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.stage, Stage::Done)
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

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[tokio::test]
    async fn every_coding_round_trips_in_any_chunking() {
        let page = page();
        let gzip = gzip(&page);
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
                let out = collect(decode(
                    chunked(&encoded, size),
                    coding,
                    &Method::GET,
                    &Uri::from_static("/"),
                ))
                .await;
                assert_eq!(out.unwrap(), page, "{coding:?} in chunks of {size}");
            }
        }
    }

    /// A body with no byte at all is an empty page, as a browser reads it: it was a 502.
    #[tokio::test]
    async fn a_body_with_no_bytes_is_empty_in_every_coding() {
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            let out = collect(decode(
                chunked(b"", 1),
                coding,
                &Method::GET,
                &Uri::from_static("/"),
            ))
            .await;
            assert_eq!(out.map_err(|e| e.to_string()), Ok(Vec::new()), "{coding:?}");
        }
    }

    #[tokio::test]
    async fn corrupt_or_truncated_input_is_an_error() {
        let encoded = zlib(&page());
        let truncated = &encoded[..encoded.len() / 2];
        assert!(
            collect(decode(
                chunked(truncated, 100),
                Coding::Deflate,
                &Method::GET,
                &Uri::from_static("/"),
            ))
            .await
            .is_err()
        );
        assert!(
            collect(decode(
                chunked(b"not gzip at all", 3),
                Coding::Gzip,
                &Method::GET,
                &Uri::from_static("/"),
            ))
            .await
            .is_err()
        );
    }

    #[tokio::test]
    async fn reused_decoders_start_clean_after_a_corrupt_or_abandoned_stream() {
        let page = page();
        let gzip = gzip(&page);
        for round in 0..3 {
            // Abandoned halfway: the body is dropped with its decoder mid-stream.
            let mut half = decode(
                chunked(&gzip, 1000),
                Coding::Gzip,
                &Method::GET,
                &Uri::from_static("/"),
            );
            let first = half.frame().await.unwrap().unwrap().into_data().unwrap();
            assert!(page.starts_with(&first), "round {round}");
            drop(half);
            // Corrupt after a good start.
            let mut bad = gzip[..gzip.len() / 2].to_vec();
            bad.extend_from_slice(&[0xff; 64]);
            assert!(
                collect(decode(
                    chunked(&bad, 500),
                    Coding::Gzip,
                    &Method::GET,
                    &Uri::from_static("/")
                ))
                .await
                .is_err()
            );
            // Truncated: the stream never ends.
            let truncated = &gzip[..gzip.len() - 4];
            assert!(
                collect(decode(
                    chunked(truncated, 700),
                    Coding::Gzip,
                    &Method::GET,
                    &Uri::from_static("/")
                ))
                .await
                .is_err()
            );
            for size in [3, 4096] {
                let out = collect(decode(
                    chunked(&gzip, size),
                    Coding::Gzip,
                    &Method::GET,
                    &Uri::from_static("/"),
                ))
                .await;
                assert_eq!(out.unwrap(), page, "round {round}, chunks of {size}");
            }
        }
    }

    #[tokio::test]
    async fn a_bomb_comes_out_in_bounded_frames() {
        let zeros = vec![0u8; 8 * 1024 * 1024];
        let bomb = zlib(&zeros);
        assert!(bomb.len() < 64 * 1024);
        let mut body = decode(
            chunked(&bomb, usize::MAX),
            Coding::Deflate,
            &Method::GET,
            &Uri::from_static("/"),
        );
        let mut total = 0;
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(
                data.len() <= DECODED_FRAME,
                "{} bytes in one frame",
                data.len()
            );
            total += data.len();
        }
        assert_eq!(total, zeros.len());
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
        let err = collect(decode(
            body,
            Coding::Deflate,
            &Method::GET,
            &Uri::from_static("/"),
        ))
        .await
        .unwrap_err();
        assert!(err.is::<Reset>(), "{err}");
    }
}
