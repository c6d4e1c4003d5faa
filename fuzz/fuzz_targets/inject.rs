//! The injector on random pages, random chunkings and random charsets.
//!
//! Input: the page, then up to 4 control bytes at its end — a charset selector and three chunk
//! sizes (so plain HTML files make a good seed corpus). Invariants: no panic; the output is the
//! input with at most one client tag inserted somewhere (nothing else changed), unless the page
//! has a `<meta http-equiv>`, whose Content-Security-Policy the injector may edit on purpose.

#![no_main]

use libfuzzer_sys::fuzz_target;

/// The tag the injector puts in (without a nonce: no CSP header is given).
const TAG: &[u8] = br#"<script type="module" src="/__hmr/client.js"></script>"#;

/// `Content-Type` charset labels: ASCII-compatible, multi-byte, unparsable, unknown, odd.
const LABELS: &[&str] = &[
    "utf-8",
    "windows-1252",
    "shift_jis",
    "euc-jp",
    "gbk",
    "gb18030",
    "big5",
    "euc-kr",
    "iso-8859-2",
    "koi8-r",
    "x-user-defined",
    "utf-16le",
    "utf-16be",
    "utf-16",
    "iso-2022-jp",
    "replacement",
    "bogus",
    "\"utf-8\"",
    " UTF-8 ",
    "",
];

fn chunk_size(byte: u8) -> usize {
    if byte & 0x80 != 0 {
        // Up to 8 KiB: across the rewriter's 2 KiB slices.
        usize::from(byte & 0x7f) * 64 + 1
    } else {
        usize::from(byte) + 1
    }
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// `output` is `input` with `TAG` inserted at one place, or `input` itself.
fn is_input_plus_at_most_one_tag(input: &[u8], output: &[u8]) -> bool {
    if output == input {
        return true;
    }
    if output.len() != input.len() + TAG.len() {
        return false;
    }
    let prefix = input.iter().zip(output).take_while(|(a, b)| a == b).count();
    let suffix = input
        .iter()
        .rev()
        .zip(output.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    // The tag went in at some `at` with input[..at] and input[at..] unchanged around it.
    let lowest = input.len().saturating_sub(suffix);
    (lowest..=prefix.min(input.len())).any(|at| &output[at..at + TAG.len()] == TAG)
}

fuzz_target!(|data: &[u8]| {
    let (page, control) = data.split_at(data.len().saturating_sub(4));
    let label = control
        .first()
        .and_then(|&b| LABELS.get(usize::from(b) % (LABELS.len() + 1)))
        .copied();
    let sizes: Vec<usize> = control.iter().skip(1).map(|&b| chunk_size(b)).collect();

    let output = hmr_proxy::inject::rewrite_in_chunks(page, &sizes, label);

    if contains_ignore_case(page, b"http-equiv") {
        // A meta CSP may be edited and the tag may carry its nonce: only count the tags.
        let count = |bytes: &[u8]| {
            bytes
                .windows(b"/__hmr/client.js".len())
                .filter(|w| *w == b"/__hmr/client.js")
                .count()
        };
        assert!(count(&output) <= count(page) + 1, "more than one tag");
        return;
    }
    assert!(
        is_input_plus_at_most_one_tag(page, &output),
        "output is not the input plus at most one tag\ninput:  {:?}\noutput: {:?}\ncharset {label:?}, chunks {sizes:?}",
        String::from_utf8_lossy(page),
        String::from_utf8_lossy(&output),
    );
});
