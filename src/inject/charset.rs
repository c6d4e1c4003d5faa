//! Which character encoding the rewriter parses a page in, or that it must not parse it at all.
//!
//! Owns the two places an encoding is declared before the markup starts: the `charset` parameter
//! of `Content-Type` and a byte-order mark. `<meta charset>` inside the page is left to lol_html
//! (`adjust_charset_on_meta_tag`), which switches encoding as it meets the tag, so nothing here has
//! to wait for the first 1024 bytes of a page that is still streaming. It does not transcode:
//! the injected tag is ASCII, so every ASCII-compatible page only needs the tokenizer to know its
//! encoding, and the bytes go out as they came.
//!
//! Precedence is the HTML standard's: BOM, then the header, then `<meta>` (a UTF-8 BOM in a page
//! served as `charset=windows-1252` is decoded as UTF-8 by every browser, so it is here too).

use encoding_rs::Encoding;
use http::{HeaderMap, header};
use lol_html::AsciiCompatibleEncoding;

/// Bytes needed to recognise any byte-order mark (UTF-8's is the longest).
pub(crate) const BOM_PROBE: usize = 3;

/// What the `Content-Type` header says about the charset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderCharset {
    /// No `charset`, or a label no browser knows (browsers ignore those too).
    None,
    /// An ASCII-compatible encoding (UTF-8, windows-1252, Shift_JIS, EUC-JP, ISO-8859-x, GBK…).
    Parsable(&'static Encoding),
    /// UTF-16, ISO-2022-JP or `replacement`: bytes of `<` and `>` can be parts of other
    /// characters, so an HTML tokenizer working on bytes would misread the page.
    Unparsable(&'static Encoding),
}

/// The `charset` parameter of `Content-Type`.
pub(crate) fn from_content_type(headers: &HeaderMap) -> HeaderCharset {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return HeaderCharset::None;
    };
    let label = value
        .as_bytes()
        .split(|&b| b == b';')
        .skip(1)
        .filter_map(|param| {
            let (name, value) = param.split_at(param.iter().position(|&b| b == b'=')?);
            name.trim_ascii()
                .eq_ignore_ascii_case(b"charset")
                .then(|| value[1..].trim_ascii())
        })
        .next();
    let Some(label) = label else {
        return HeaderCharset::None;
    };
    let label = label
        .strip_prefix(b"\"")
        .and_then(|l| l.strip_suffix(b"\""))
        .unwrap_or(label);
    match Encoding::for_label(label) {
        None => HeaderCharset::None,
        Some(encoding) if encoding.is_ascii_compatible() => HeaderCharset::Parsable(encoding),
        Some(encoding) => HeaderCharset::Unparsable(encoding),
    }
}

/// How to parse a page, once its first bytes are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniffed {
    /// Parse in `encoding`; `follow_meta` when nothing stronger than a `<meta>` tag may change it.
    Rewrite {
        encoding: AsciiCompatibleEncoding,
        follow_meta: bool,
    },
    /// A UTF-16 byte-order mark: the page is UTF-16 whatever the header says.
    PassThrough,
}

/// Decide the encoding from the first [`BOM_PROBE`] bytes (fewer only when the body is shorter)
/// and the header's charset.
pub(crate) fn sniff(prefix: &[u8], header: Option<&'static Encoding>) -> Sniffed {
    match Encoding::for_bom(prefix) {
        Some((encoding, _)) => match AsciiCompatibleEncoding::new(encoding) {
            Some(encoding) => Sniffed::Rewrite {
                encoding,
                follow_meta: false,
            },
            None => Sniffed::PassThrough,
        },
        None => match header.and_then(AsciiCompatibleEncoding::new) {
            Some(encoding) => Sniffed::Rewrite {
                encoding,
                follow_meta: false,
            },
            None => Sniffed::Rewrite {
                encoding: AsciiCompatibleEncoding::utf_8(),
                follow_meta: true,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn content_type(value: &'static str) -> HeaderCharset {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        from_content_type(&headers)
    }

    #[test]
    fn header_charsets() {
        assert_eq!(content_type("text/html"), HeaderCharset::None);
        assert_eq!(
            content_type("text/html; charset=bogus"),
            HeaderCharset::None
        );
        assert_eq!(
            content_type("text/html; charset=UTF-8"),
            HeaderCharset::Parsable(encoding_rs::UTF_8)
        );
        assert_eq!(
            content_type("text/html;charset=\"iso-8859-1\""),
            HeaderCharset::Parsable(encoding_rs::WINDOWS_1252)
        );
        assert_eq!(
            content_type("text/html; q=1; Charset = Shift_JIS"),
            HeaderCharset::Parsable(encoding_rs::SHIFT_JIS)
        );
        assert_eq!(
            content_type("text/html; charset=utf-16"),
            HeaderCharset::Unparsable(encoding_rs::UTF_16LE)
        );
        assert_eq!(
            content_type("text/html; charset=iso-2022-jp"),
            HeaderCharset::Unparsable(encoding_rs::ISO_2022_JP)
        );
    }

    #[test]
    fn bom_beats_header() {
        let utf8 = AsciiCompatibleEncoding::utf_8();
        assert_eq!(
            sniff(b"\xEF\xBB\xBF<!", Some(encoding_rs::WINDOWS_1252)),
            Sniffed::Rewrite {
                encoding: utf8,
                follow_meta: false
            }
        );
        assert_eq!(
            sniff(b"\xFF\xFE<\0", Some(encoding_rs::UTF_8)),
            Sniffed::PassThrough
        );
        assert_eq!(sniff(b"\xFE\xFF\0<", None), Sniffed::PassThrough);
        assert_eq!(
            sniff(b"<!d", None),
            Sniffed::Rewrite {
                encoding: utf8,
                follow_meta: true
            }
        );
        assert_eq!(
            sniff(b"<", Some(encoding_rs::EUC_JP)),
            Sniffed::Rewrite {
                encoding: AsciiCompatibleEncoding::new(encoding_rs::EUC_JP).unwrap(),
                follow_meta: false
            }
        );
    }
}
