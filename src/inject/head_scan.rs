//! The fast path for the common page: where the client tag goes when the head is plain, found
//! without starting lol_html.
//!
//! Owns one question about the first bytes of a page: is there a `</head>` that lol_html would
//! take for the end of a `<head>` it saw start, with nothing before it that the rewriter would
//! act on, and where does it begin? Building a rewriter and parsing the head with it costs more
//! than forwarding a small page does; most dev pages open with a short, plain head. The scan walks
//! the tokens before `</head>` by the HTML tokenizer's rules (tags with quoted attributes,
//! comments, one doctype, the text of `<title>`, `<script>` and `<style>`) and answers `None` on
//! anything else: a `<template>`, a `<meta http-equiv="Content-Security-Policy">` (which the
//! rewriter may have to edit), an element that does not belong in a head, text that is not whitespace, a
//! script containing `<!--` (the tokenizer's escaped states), or the bytes running out. `None`
//! means "ask lol_html", never "no place for the tag". Nothing here inserts anything
//! (`rewrite`), and the scan relies on the page's encoding being ASCII-compatible, which
//! `charset` has settled before the rewrite starts.

use memchr::{memchr, memmem};

/// The tokenizer's whitespace: tab, line feed, form feed, carriage return, space.
fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// Offset of the `<` of the head's end tag, when the head before it is plain (see module docs).
pub(crate) fn head_end(page: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut in_head = false;
    let mut seen_html = false;
    loop {
        let lt = i + memchr(b'<', &page[i..])?;
        if !page[i..lt].iter().all(|&b| is_space(b)) {
            return None;
        }
        i = lt;
        match *page.get(i + 1)? {
            b'!' if page[i + 2..].starts_with(b"--") => i = comment_end(page, i + 4)?,
            b'!' if !in_head
                && !seen_html
                && starts_with_ignore_case(&page[i + 2..], b"doctype") =>
            {
                // `>` ends a doctype wherever it is, even inside a quoted identifier.
                i += 2 + memchr(b'>', &page[i + 2..])? + 1;
            }
            b'/' => {
                let (name, after) = tag_name(page, i + 2)?;
                if !(in_head && name.eq_ignore_ascii_case(b"head")) {
                    return None;
                }
                // Complete in these bytes, or lol_html would still be waiting for it.
                skip_attributes(page, after)?;
                return Some(i);
            }
            b if b.is_ascii_alphabetic() => {
                let (name, after) = tag_name(page, i + 1)?;
                // `http-equiv` values of a `<meta>`; one naming a policy needs the rewriter.
                let mut equivs = 0;
                let mut policy = false;
                let (end, self_closing) = attributes(page, after, |attr, value| {
                    if attr.eq_ignore_ascii_case(b"http-equiv") {
                        equivs += 1;
                        policy |= value.contains(&b'&')
                            || value
                                .trim_ascii()
                                .eq_ignore_ascii_case(b"content-security-policy");
                    }
                })?;
                let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
                if !in_head {
                    if is(b"html") && !seen_html {
                        seen_html = true;
                    } else if is(b"head") && !self_closing {
                        in_head = true;
                    } else {
                        return None;
                    }
                    i = end;
                } else if is(b"link") || is(b"base") {
                    i = end;
                } else if is(b"meta") {
                    // Only the first of repeated attributes counts: with two, leave it to lol_html.
                    if policy || equivs > 1 {
                        return None;
                    }
                    i = end;
                } else if (is(b"title") || is(b"style") || is(b"script")) && !self_closing {
                    let close = text_end(page, end, name)?;
                    if is(b"script") && memmem::find(&page[end..close], b"<!--").is_some() {
                        return None;
                    }
                    let (_, after_name) = tag_name(page, close + 2)?;
                    i = skip_attributes(page, after_name)?.0;
                } else {
                    return None;
                }
            }
            // `<` as text, `<?`, `<!x`: not whitespace, or a bogus comment.
            _ => return None,
        }
    }
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The tag name starting at `at` (after `<` or `</`), and where it ends.
fn tag_name(page: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = page
        .get(at..)?
        .iter()
        .position(|&b| is_space(b) || b == b'/' || b == b'>')?;
    (len > 0).then(|| (&page[at..at + len], at + len))
}

/// From the end of a tag name, through the attributes to just past the tag's `>`; and whether
/// the tag is self-closing. Quoted values may hold `>`; `/` not before `>` is not self-closing.
fn skip_attributes(page: &[u8], i: usize) -> Option<(usize, bool)> {
    attributes(page, i, |_, _| {})
}

/// [`skip_attributes`], showing each attribute's name and raw value (empty when it has none) to
/// `seen`.
fn attributes(
    page: &[u8],
    mut i: usize,
    mut seen: impl FnMut(&[u8], &[u8]),
) -> Option<(usize, bool)> {
    loop {
        while is_space(*page.get(i)?) {
            i += 1;
        }
        match *page.get(i)? {
            b'>' => return Some((i + 1, false)),
            b'/' => {
                i += 1;
                if *page.get(i)? == b'>' {
                    return Some((i + 1, true));
                }
            }
            _ => {
                // The name; its first character may be `=`.
                let name_start = i;
                i += 1;
                while !matches!(*page.get(i)?, b'/' | b'>' | b'=') && !is_space(page[i]) {
                    i += 1;
                }
                let name = &page[name_start..i];
                while is_space(*page.get(i)?) {
                    i += 1;
                }
                if page[i] != b'=' {
                    seen(name, b"");
                    continue;
                }
                i += 1;
                while is_space(*page.get(i)?) {
                    i += 1;
                }
                match page[i] {
                    quote @ (b'"' | b'\'') => {
                        let len = memchr(quote, &page[i + 1..])?;
                        seen(name, &page[i + 1..i + 1 + len]);
                        i += 1 + len + 1;
                    }
                    b'>' => {
                        seen(name, b"");
                        return Some((i + 1, false));
                    }
                    _ => {
                        let start = i;
                        while page[i] != b'>' && !is_space(page[i]) {
                            i += 1;
                            page.get(i)?;
                        }
                        seen(name, &page[start..i]);
                    }
                }
            }
        }
    }
}

/// From just after `<!--`, to just past the comment's end (`-->`, `--!>`, or the abrupt `<!-->`
/// and `<!--->`).
fn comment_end(page: &[u8], start: usize) -> Option<usize> {
    let rest = page.get(start..)?;
    if rest.starts_with(b">") {
        return Some(start + 1);
    }
    if rest.starts_with(b"->") {
        return Some(start + 2);
    }
    let mut j = start;
    loop {
        let dashes = j + memmem::find(&page[j..], b"--")?;
        let mut k = dashes + 2;
        while *page.get(k)? == b'-' {
            k += 1;
        }
        match *page.get(k)? {
            b'>' => return Some(k + 1),
            b'!' if *page.get(k + 1)? == b'>' => return Some(k + 2),
            _ => j = dashes + 1,
        }
    }
}

/// The `<` of the end tag that closes the text of a `<title>`, `<style>` or `<script>` whose
/// start tag ended at `start`: `</` + the name + whitespace, `/` or `>`.
fn text_end(page: &[u8], start: usize, name: &[u8]) -> Option<usize> {
    let mut j = start;
    loop {
        let lt = j + memmem::find(&page[j..], b"</")?;
        let at = lt + 2;
        let after = page.get(at + name.len())?;
        if page[at..at + name.len()].eq_ignore_ascii_case(name)
            && (is_space(*after) || *after == b'/' || *after == b'>')
        {
            return Some(lt);
        }
        j = lt + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::head_end;

    fn at(page: &str) -> Option<usize> {
        head_end(page.as_bytes())
    }

    /// In every case below the real end tag is the last `</head`, after any decoys.
    fn before_head_end(page: &str) -> Option<usize> {
        page.to_ascii_lowercase().rfind("</head")
    }

    #[test]
    fn plain_heads_are_answered() {
        for page in [
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>T</title>\n</head><body>",
            "<head></head>",
            "<HTML><HEAD><TITLE>x</TITLE></HEAD>",
            "<!doctype html><!-- a comment --><html><head><!----><!-- x -- y --!></head>",
            "<html><head><script type=\"module\" src=\"/@vite/client\"></script><link rel=icon href=/f.svg></head>",
            "<head><title>a </head> in a title</title></head>",
            "<head><script>if (a </b) { x = '</head>' }</script></head>",
            "<head><style>p::after { content: '</head>' }</style ></head>",
            "<head><link href=\"x</head>\" data-x='>' data-y=a></head>",
            "<head><meta name=viewport content=\"width=device-width\"/></head >",
            "<head><meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\"><META HTTP-EQUIV=refresh content=1></head>",
            "<head><meta http-equiv=Content-Type content=\"text/html; charset=utf-8\"></head>",
            "<head><script type=importmap>{\"imports\": {}}</script></head foo=\">\">",
            "<head><!--> <!---> <!--- -- ---></head>",
        ] {
            assert_eq!(at(page), before_head_end(page), "{page}");
        }
        let page = "<head><title></head></title><!-- </head> --></head>";
        assert_eq!(at(page), before_head_end(page));
    }

    #[test]
    fn anything_unusual_is_left_to_lol_html() {
        for page in [
            // The end is not in these bytes, or not complete.
            "<head><title>x</title>",
            "<head></head",
            "<head><title>x</head>",
            "<head><link href=\"x></head>",
            "<head><!-- </head>",
            // Not plain.
            "<head><template></template></head>",
            "<head><meta http-equiv=\"Content-Security-Policy\" content=\"x\"></head>",
            "<head><META HTTP-EQUIV=' content-security-policy ' content=x></head>",
            "<head><meta http-equiv=content-security-policy></head>",
            "<head><meta http-equiv=&#99;ontent-security-policy></head>",
            "<head><meta http-equiv=refresh http-equiv=content-security-policy></head>",
            "<head><script><!-- </script> --></script></head>",
            "<head><noscript></noscript></head>",
            "<head><div></div></head>",
            "<head>text</head>",
            "<head/></head>",
            "<head><svg></svg></head>",
            "<head><title/></head>",
            "</head>",
            "<html></head>",
            "<head><head></head>",
            "<html><html><head></head>",
            "x<head></head>",
            "\u{feff}<head></head>",
            "<?xml version=\"1.0\"?><head></head>",
            "<!x><head></head>",
            "<head><!doctype html></head>",
            "<head></title></head>",
        ] {
            assert_eq!(at(page), None, "{page}");
        }
    }
}
