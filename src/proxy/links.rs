//! Re-pointing absolute URLs on an upstream's origin, in the pages the injector rewrote, at the
//! proxy: `href="http://localhost:8000/about"` reaches the tab as `href="http://localhost:3000/about"`.
//!
//! Owns [`Links`] (what to look for, built once from the upstreams) and the body adapter it
//! wraps a page in ([`Links::repoint`]). Which URL goes back to which upstream is
//! [`Origins::rewrite_url`]'s decision, the one `Location` and `Refresh` get, so a URL on an
//! upstream's origin changes only where the proxy sends its path to that same upstream. It does
//! not decide which responses are pages (`inject`), and leaves fragments, scripts, stylesheets
//! and pages it did not rewrite as they are.
//!
//! Why: frameworks build absolute URLs from the `Host` the proxy sends upstream (Flask's
//! `url_for(…, _external=True)`, Django's `build_absolute_uri`) or from a fixed site address
//! (WordPress), so a page came back linking to the dev server itself: a click left the proxy
//! (the next page had no client), and a stylesheet loaded from the upstream's origin was not
//! the one a save named, so the tab reloaded instead of swapping it. browser-sync rewrites such
//! links in every page too, and its users expect it.
//!
//! How: on bytes, as browser-sync does, so a URL anywhere in the page counts (attributes,
//! `srcset`, inline scripts and the JSON in them, whose slashes are escaped: `http:\/\/…`). The
//! forms are `http://host:port`, `https://…`, `ws://…` and scheme-relative `//…`, for every
//! spelling of a loopback upstream (`localhost`, `127.0.0.1`, `[::1]`, `0.0.0.0`). Each chunk is
//! searched once per distinct `:port` (the rare part of a URL: memmem) and, for an upstream on
//! its scheme's default port, once per `/host`; a chunk with nothing to change passes through as
//! the same bytes. A chunk that ends inside what may be such a URL keeps that tail (a few dozen
//! bytes) until the next chunk shows how it ends.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http_body::{Frame, SizeHint};
use memchr::memmem;

use super::headers::Origins;
use crate::body::{self, Body, BoxError};

/// A URL longer than this, cut off by the end of a chunk, is judged by the part seen: a tail
/// held back for the next chunk stays small.
const MAX_HELD: usize = 4096;

/// What marks a possible URL on an upstream: `:port`, or `/host` on a default port (found as
/// written in lower case, as URLs nearly always write a host: `http://Web/` is left alone).
struct Anchor {
    finder: memmem::Finder<'static>,
    /// `Some(port)` for a `:port` anchor; `None` for `/host`.
    port: Option<Vec<u8>>,
}

/// One way an upstream may be named in a URL: its host (lower case) and port, if written.
struct Authority {
    host: Vec<u8>,
    port: Option<Vec<u8>>,
}

/// What to look for in pages, built once from every upstream.
pub struct Links {
    origins: Arc<Origins>,
    anchors: Vec<Anchor>,
    authorities: Vec<Authority>,
    /// Every complete spelling (`http://localhost:8000`, `\/\/[::1]:8000`, …), lower case, to
    /// tell whether a chunk ends partway into one.
    forms: Vec<Vec<u8>>,
    /// The longest of them.
    longest: usize,
    /// How much of a URL's path decides which upstream the proxy sends it to: the longest route
    /// prefix, escaped (`%2F` is three bytes for one).
    path_needed: usize,
    /// The bytes they are made of, in either case: a chunk that ends in any other byte (`>`, a
    /// newline, a quote: nearly every chunk) ends in no unfinished URL, at the cost of one look.
    alphabet: [bool; 256],
    /// `textarea`, for [`Fields`]: in lower case, as pages write it (a pass over the chunks of a
    /// page that has a URL to re-point; a `<TEXTAREA>` has its URLs re-pointed, as before there
    /// were fields).
    textarea: memmem::Finder<'static>,
}

/// The tag name [`Fields`] looks for.
const TEXTAREA: &[u8] = b"textarea";

/// How much of a page's end [`Fields`] keeps, for a `</textarea` cut by a chunk's end.
const SEAM: usize = TEXTAREA.len() + 2;

/// Where the page holds text its user submits: a `<textarea>`'s content and any `value`
/// attribute (`<input value>`, `<option value>`). A URL there is data, not a link: re-pointed,
/// a form saved through the proxy wrote the proxy's address into the app (WordPress's Site
/// Address field, a post's `<img src>` in its editor's textarea). Per page, across its chunks.
#[derive(Default)]
pub(crate) struct Fields {
    /// Inside a `<textarea>` at the end of what was searched for one.
    in_textarea: bool,
    /// The last bytes searched (zeros before the page's first), for a tag name cut by a
    /// chunk's end.
    seam: [u8; SEAM],
    /// A tag that went out unfinished (from its `<`), for an attribute cut from its tag.
    open_tag: Vec<u8>,
    /// What went out since the last search for `textarea` (in order, at most [`UNSEARCHED`]
    /// bytes in [`UNSEARCHED_CHUNKS`] chunks): a chunk with no URL to re-point needs no search,
    /// only the chunks after it that have one do, so most pages (relative links only) are
    /// searched once, for `:port`, not twice. These are the same `Bytes` that went to the tab,
    /// not copies.
    unsearched: Vec<Bytes>,
}

impl Fields {
    /// How many bytes [`Fields::unsearched`] holds.
    fn unsearched_len(&self) -> usize {
        self.unsearched.iter().map(Bytes::len).sum()
    }
}

/// How much of a page [`Fields`] leaves unsearched for `textarea` before it searches it anyway:
/// what it keeps alive of a page with no URL to re-point, whose chunks would otherwise be freed
/// once written. Larger than nearly every page a dev server sends.
const UNSEARCHED: usize = 256 * 1024;

/// How many chunks [`Fields`] leaves unsearched at most. A chunk is a slice of the buffer it was
/// read into, which it keeps alive whole (hyper's read buffers are 8 KiB and more): a page that
/// streams in small pieces would otherwise hold on to many times its own size.
const UNSEARCHED_CHUNKS: usize = 16;

/// How a found URL begins, which decides what replaces it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
    /// `ws:`: the proxy passes WebSockets through, so the scheme stays and the authority changes.
    Ws,
    /// Scheme-relative `//host`.
    Relative,
}

/// A URL to re-point: the bytes `start..end` (scheme, slashes and authority) are replaced.
struct Edit {
    start: usize,
    end: usize,
    escaped: bool,
    scheme: Scheme,
}

/// What a look at one anchor found.
enum Found {
    Edit(Edit),
    /// Possibly a URL, but the chunk ends before it can be told: hold from here.
    Unfinished(usize),
    Nothing,
}

impl Links {
    pub fn new(origins: Arc<Origins>) -> Links {
        let mut authorities: Vec<Authority> = Vec::new();
        for authority in origins.authorities() {
            let name = authority.trim_start_matches('/').as_bytes();
            let (host, port) = match name.iter().rposition(|&b| b == b':') {
                Some(colon)
                    if !name.ends_with(b"]")
                        && name[colon + 1..].iter().all(u8::is_ascii_digit) =>
                {
                    (&name[..colon], Some(name[colon + 1..].to_vec()))
                }
                _ => (name, None),
            };
            if !authorities
                .iter()
                .any(|a| a.host == host && a.port.as_deref() == port.as_deref())
            {
                authorities.push(Authority {
                    host: host.to_vec(),
                    port,
                });
            }
        }
        let mut anchors: Vec<Anchor> = Vec::new();
        for authority in &authorities {
            let (needle, port) = match &authority.port {
                Some(port) => ([b":", &port[..]].concat(), Some(port.clone())),
                None => ([b"/", &authority.host[..]].concat(), None),
            };
            if !anchors.iter().any(|a| a.finder.needle() == needle) {
                anchors.push(Anchor {
                    finder: memmem::Finder::new(&needle).into_owned(),
                    port,
                });
            }
        }
        let mut forms = Vec::new();
        for authority in &authorities {
            for scheme in [&b""[..], b"http:", b"https:", b"ws:"] {
                for slashes in [&b"//"[..], b"\\/\\/"] {
                    let mut form = [scheme, slashes, &authority.host].concat();
                    if let Some(port) = &authority.port {
                        form.push(b':');
                        form.extend_from_slice(port);
                    }
                    forms.push(form);
                }
            }
        }
        let longest = forms.iter().map(Vec::len).max().unwrap_or(0);
        let mut alphabet = [false; 256];
        for &b in forms.iter().flatten() {
            alphabet[usize::from(b.to_ascii_lowercase())] = true;
            alphabet[usize::from(b.to_ascii_uppercase())] = true;
        }
        let path_needed = 3 * origins.longest_prefix() + 1;
        Links {
            textarea: memmem::Finder::new(TEXTAREA).into_owned(),
            path_needed,
            origins,
            anchors,
            authorities,
            forms,
            longest,
            alphabet,
        }
    }

    /// `page` with its URLs on an upstream re-pointed at the origin the tab loaded it from.
    pub fn repoint(self: &Arc<Self>, page: Body, origin: Origin) -> Body {
        body::boxed(Repointed {
            inner: page,
            links: self.clone(),
            origin,
            fields: Fields::default(),
            held: BytesMut::new(),
            prev: None,
            ended: false,
            error: None,
            trailers: None,
        })
    }

    /// `data` re-pointed, and how much of its end to hold for the next chunk (none when `last`).
    ///
    /// `prev` is the page's byte before `data`, if any: a scheme or word that runs into a URL's
    /// slashes may have gone out with the last chunk.
    fn rewrite(
        &self,
        data: &Bytes,
        prev: Option<u8>,
        last: bool,
        origin: &mut Origin,
        fields: &mut Fields,
    ) -> (Option<Vec<u8>>, usize) {
        let mut edits: Vec<Edit> = Vec::new();
        let mut hold = if last {
            data.len()
        } else {
            self.partial_tail(data)
        };
        for anchor in &self.anchors {
            for at in anchor.finder.find_iter(data) {
                match self.look(data, prev, at, anchor, last) {
                    Found::Edit(edit) => edits.push(edit),
                    Found::Unfinished(from) => hold = hold.min(from),
                    Found::Nothing => {}
                }
            }
        }
        // A URL the held tail cuts into is held whole.
        while let Some(cut) = edits.iter().find(|e| e.end > hold && e.start < hold) {
            hold = cut.start;
        }
        edits.retain(|edit| edit.end <= hold);
        edits.sort_by_key(|edit| edit.start);
        self.keep_fields(data, hold, last, fields, &mut edits);
        if edits.is_empty() {
            return (None, data.len() - hold);
        }
        let ws: &[u8] = if origin.tls { b"wss:" } else { b"ws:" };
        let origin = origin.written().as_bytes();
        let authority = origin
            .iter()
            .position(|&b| b == b'/')
            .map_or(origin, |slash| &origin[slash..]);
        let mut out = Vec::with_capacity(hold + edits.len() * origin.len());
        let mut from = 0;
        for edit in edits {
            if edit.start < from {
                continue;
            }
            out.extend_from_slice(&data[from..edit.start]);
            let (prefix, replacement): (&[u8], &[u8]) = match edit.scheme {
                Scheme::Http | Scheme::Https => (b"", origin),
                Scheme::Ws => (ws, authority),
                Scheme::Relative => (b"", authority),
            };
            out.extend_from_slice(prefix);
            if edit.escaped {
                for &b in replacement {
                    if b == b'/' {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
            } else {
                out.extend_from_slice(replacement);
            }
            from = edit.end;
        }
        out.extend_from_slice(&data[from..hold]);
        (Some(out), data.len() - hold)
    }

    /// Drop the `edits` (sorted) that fall in a form field's text, and carry [`Fields`] past
    /// `data[..hold]`, the part that goes out now (the rest comes again with the next chunk).
    fn keep_fields(
        &self,
        data: &Bytes,
        hold: usize,
        last: bool,
        fields: &mut Fields,
        edits: &mut Vec<Edit>,
    ) {
        let out = &data[..hold];
        if edits.is_empty() {
            // Whether this part opens or closes a textarea matters only to a URL after it.
            if !last && hold > 0 {
                fields.unsearched.push(data.slice(..hold));
                if fields.unsearched_len() > UNSEARCHED
                    || fields.unsearched.len() >= UNSEARCHED_CHUNKS
                {
                    self.search_unsearched(fields);
                }
            }
        } else {
            self.search_unsearched(fields);
            let marks = self.textarea_marks(out, &mut fields.seam);
            let mut next = marks.iter().peekable();
            let mut inside = fields.in_textarea;
            edits.retain(|edit| {
                while let Some(&(_, opens)) = next.next_if(|(at, _)| *at <= edit.start) {
                    inside = opens;
                }
                !inside && !in_value_attribute(&fields.open_tag, out, edit.start)
            });
            fields.in_textarea = marks.last().map_or(fields.in_textarea, |&(_, opens)| opens);
        }
        match memchr::memrchr2(b'<', b'>', out) {
            Some(lt) if out[lt] == b'<' => {
                fields.open_tag.clear();
                fields.open_tag.extend_from_slice(&out[lt..]);
            }
            Some(_) => fields.open_tag.clear(),
            None if !fields.open_tag.is_empty() => fields.open_tag.extend_from_slice(out),
            None => {}
        }
        if fields.open_tag.len() > MAX_HELD {
            // Not a tag this long: a `<` in a script's text. No field, as for a tag unseen.
            fields.open_tag.clear();
        }
    }

    /// Search what went out unsearched for `textarea`, in order, to know whether it left the
    /// page inside one.
    fn search_unsearched(&self, fields: &mut Fields) {
        let Fields {
            in_textarea,
            seam,
            unsearched,
            ..
        } = fields;
        for chunk in unsearched.drain(..) {
            let marks = self.textarea_marks(&chunk, seam);
            *in_textarea = marks.last().map_or(*in_textarea, |&(_, opens)| opens);
        }
    }

    /// Where a `<textarea` or `</textarea` tag name ends in `out` (in order), and whether it
    /// opens one; `seam` holds the bytes searched before `out` (for a name cut by a chunk's
    /// end) and is carried past it.
    fn textarea_marks(&self, out: &[u8], seam: &mut [u8; SEAM]) -> Vec<(usize, bool)> {
        let name = TEXTAREA.len();
        let mut marks: Vec<(usize, bool)> = Vec::new();
        let mut mark = |end: usize, one: Option<u8>, two: Option<u8>| match (one, two) {
            (Some(b'/'), Some(b'<')) => marks.push((end, false)),
            (Some(b'<'), _) => marks.push((end, true)),
            _ => {}
        };
        let before = |at: usize, back: usize| match at.checked_sub(back) {
            Some(i) => out[i],
            None => seam[SEAM - (back - at)],
        };
        for at in self.textarea.find_iter(out) {
            mark(at + name, Some(before(at, 1)), Some(before(at, 2)));
        }
        // A name cut by the last chunk's end: found in the seam and the start of this one.
        let mut joined = [0u8; 2 * SEAM];
        let head = out.len().min(SEAM);
        joined[..SEAM].copy_from_slice(seam);
        joined[SEAM..SEAM + head].copy_from_slice(&out[..head]);
        for at in self.textarea.find_iter(&joined[..SEAM + head]) {
            if at < SEAM && at + name > SEAM {
                mark(at + name - SEAM, Some(joined[at - 1]), Some(joined[at - 2]));
            }
        }
        marks.sort_unstable();
        if out.len() >= SEAM {
            seam.copy_from_slice(&out[out.len() - SEAM..]);
        } else {
            seam.copy_within(out.len().., 0);
            seam[SEAM - out.len()..].copy_from_slice(out);
        }
        marks
    }

    /// Where the end of `data` starts something that may become a URL on an upstream once the
    /// next chunk is in (`data.len()` when it does not).
    fn partial_tail(&self, data: &[u8]) -> usize {
        let window = data.len().saturating_sub(self.longest.saturating_sub(1));
        let mut from = data.len();
        while from > window && self.alphabet[usize::from(data[from - 1])] {
            from -= 1;
        }
        (from..data.len())
            .find(|&at| {
                let tail = &data[at..];
                self.forms.iter().any(|form| {
                    form.len() > tail.len()
                        && form[0] == tail[0].to_ascii_lowercase()
                        && form[..tail.len()].eq_ignore_ascii_case(tail)
                })
            })
            .unwrap_or(data.len())
    }

    /// Whether the anchor found at `at` is a URL on an upstream that the proxy serves.
    fn look(&self, data: &[u8], prev: Option<u8>, at: usize, anchor: &Anchor, last: bool) -> Found {
        let end = at + anchor.finder.needle().len();
        // The authority must end where the anchor does: `:80` is not `:8000`, `/web` not `/webapp`.
        // (At the chunk's end the path below finds nothing yet: the URL is unfinished.)
        match data.get(end) {
            None => {}
            Some(b) if anchor.port.is_some() && b.is_ascii_digit() => return Found::Nothing,
            Some(b)
                if anchor.port.is_none()
                    && (b.is_ascii_alphanumeric()
                        || matches!(b, b'.' | b'-' | b'_' | b':' | b'@')) =>
            {
                return Found::Nothing;
            }
            Some(_) => {}
        }
        // Back to the start of the URL: host (for a port anchor), then slashes. Each host is
        // tried: one may end another (`app` and `myapp`).
        let slashes_before = |host_start: usize| {
            let before = &data[..host_start];
            if before.ends_with(b"\\/\\/") {
                Some((host_start - 4, true))
            } else if before.ends_with(b"//") {
                Some((host_start - 2, false))
            } else {
                None
            }
        };
        let found = match &anchor.port {
            Some(port) => self.authorities.iter().find_map(|a| {
                let host_start = at.checked_sub(a.host.len())?;
                if a.port.as_deref() != Some(&port[..])
                    || !data[host_start..at].eq_ignore_ascii_case(&a.host)
                {
                    return None;
                }
                Some((&a.host, slashes_before(host_start)?))
            }),
            None => {
                let host = &anchor.finder.needle()[1..];
                self.authorities
                    .iter()
                    .find(|a| a.port.is_none() && a.host == host)
                    .and_then(|a| Some((&a.host, slashes_before(at + 1)?)))
            }
        };
        let Some((host, (slashes_start, escaped))) = found else {
            return Found::Nothing;
        };
        let before = &data[..slashes_start];
        let ends_with = |s: &[u8]| {
            before.len() >= s.len() && before[before.len() - s.len()..].eq_ignore_ascii_case(s)
        };
        let (scheme, start) = if ends_with(b"https:") {
            (Scheme::Https, slashes_start - 6)
        } else if ends_with(b"http:") {
            (Scheme::Http, slashes_start - 5)
        } else if ends_with(b"ws:") {
            (Scheme::Ws, slashes_start - 3)
        } else if before.last().copied().or(prev).is_some_and(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b':' | b'+' | b'-' | b'.' | b'/')
        }) {
            // Another scheme (`wss:`, `ftp:`, `file:///web`), or a word run into the slashes:
            // not ours.
            return Found::Nothing;
        } else {
            (Scheme::Relative, slashes_start)
        };
        // The path, as far as the URL goes here, for which upstream the proxy sends it to.
        let mut path = Vec::new();
        let mut i = end;
        let finished = loop {
            // Only a route's prefix decides (and a byte after it): a long URL, or a page of
            // URLs run together, is not read to its end for each of them.
            if path.len() > self.path_needed {
                break true;
            }
            let Some(&b) = data.get(i) else {
                break last || data.len() - start > MAX_HELD;
            };
            match b {
                b'\\' if escaped && i + 1 == data.len() && !last => break false,
                b'\\' if escaped && data.get(i + 1) == Some(&b'/') => {
                    path.push(b'/');
                    i += 2;
                }
                b'"' | b'\'' | b'<' | b'>' | b'`' | b'(' | b')' | b'\\' | b'?' | b'#' => {
                    break true;
                }
                b if b.is_ascii_whitespace() => break true,
                b => {
                    path.push(b);
                    i += 1;
                }
            }
        };
        if !finished {
            return Found::Unfinished(start);
        }
        let mut url = match scheme {
            Scheme::Https => b"https://".to_vec(),
            Scheme::Http => b"http://".to_vec(),
            Scheme::Ws | Scheme::Relative => b"//".to_vec(),
        };
        url.extend_from_slice(host);
        if let Some(port) = &anchor.port {
            url.push(b':');
            url.extend_from_slice(port);
        }
        url.extend_from_slice(&path);
        // Lossy: the path is cut where a route's prefix stops mattering, maybe inside a
        // character, and a page in another charset is bytes all the same.
        let url = String::from_utf8_lossy(&url);
        if self.origins.rewrite_url(&url, "").is_none() {
            return Found::Nothing;
        }
        Found::Edit(Edit {
            start,
            end,
            escaped,
            scheme,
        })
    }
}

/// Whether `at` is inside a `value` attribute's value. `open_tag` is the part of a tag that went
/// out with the chunks before `data`, if `data` starts inside one.
fn in_value_attribute(open_tag: &[u8], data: &[u8], at: usize) -> bool {
    let before = &data[..at];
    let joined;
    let tag = match memchr::memrchr2(b'<', b'>', before) {
        // Not a tag this long, as for one carried across chunks (`Fields::open_tag`): a `<` in
        // a script's text. Also bounds the scan, which is per URL.
        Some(lt) if at - lt > MAX_HELD => return false,
        Some(lt) if before[lt] == b'<' => &before[lt + 1..],
        Some(_) => return false,
        None if open_tag.is_empty() || open_tag.len() + before.len() > MAX_HELD => return false,
        None => {
            joined = [&open_tag[1..], before].concat();
            &joined[..]
        }
    };
    let blank = |b: u8| b.is_ascii_whitespace() || b == b'/';
    let mut i = tag.iter().position(|&b| blank(b)).unwrap_or(tag.len());
    loop {
        while tag.get(i).is_some_and(|&b| blank(b)) {
            i += 1;
        }
        let name_start = i;
        while tag
            .get(i)
            .is_some_and(|&b| !blank(b) && b != b'=' && b != b'>')
        {
            i += 1;
        }
        let name = &tag[name_start..i];
        while tag.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if i >= tag.len() {
            return false;
        }
        if tag[i] != b'=' {
            continue;
        }
        i += 1;
        while tag.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let ends_here = match tag.get(i) {
            None => true,
            Some(&quote @ (b'"' | b'\'')) => match memchr::memchr(quote, &tag[i + 1..]) {
                Some(len) => {
                    i += len + 2;
                    false
                }
                None => true,
            },
            Some(_) => {
                while tag.get(i).is_some_and(|&b| !b.is_ascii_whitespace()) {
                    i += 1;
                }
                i >= tag.len()
            }
        };
        if ends_here {
            return name.eq_ignore_ascii_case(b"value");
        }
    }
}

/// The origin a tab loaded a page from (`http://host:port`), written out only for a page with a
/// URL to re-point: most have none.
pub struct Origin {
    host: Option<HeaderValue>,
    local: SocketAddr,
    /// The tab reached the proxy through a TLS front end: `https://`, and `wss:` for sockets.
    tls: bool,
    written: Option<String>,
}

impl Origin {
    /// From the browser's `Host`, or without one (HTTP/1.0) the address listened on.
    pub fn new(host: Option<HeaderValue>, local: SocketAddr, tls: bool) -> Origin {
        Origin {
            host,
            local,
            tls,
            written: None,
        }
    }

    fn written(&mut self) -> &str {
        self.written
            .get_or_insert_with(|| super::proxy_origin(self.host.as_ref(), self.local, self.tls))
    }
}

/// A page on its way to the tab, its URLs re-pointed chunk by chunk.
struct Repointed {
    inner: Body,
    links: Arc<Links>,
    origin: Origin,
    fields: Fields,
    /// The end of the last chunk, which may be the start of a URL.
    held: BytesMut,
    /// The page's last byte that went out (as the upstream sent it).
    prev: Option<u8>,
    ended: bool,
    /// The page's error, handed on after what was held.
    error: Option<BoxError>,
    trailers: Option<Frame<Bytes>>,
}

impl Repointed {
    /// The bytes of `data` (after what was held) that can go now.
    fn feed(&mut self, data: Bytes, last: bool) -> Bytes {
        let data = if self.held.is_empty() {
            data
        } else {
            self.held.extend_from_slice(&data);
            self.held.split().freeze()
        };
        let (rewritten, held) =
            self.links
                .rewrite(&data, self.prev, last, &mut self.origin, &mut self.fields);
        if data.len() > held {
            self.prev = Some(data[data.len() - held - 1]);
        }
        if held > 0 {
            self.held.extend_from_slice(&data[data.len() - held..]);
        }
        match rewritten {
            Some(out) => Bytes::from(out),
            None => data.slice(..data.len() - held),
        }
    }
}

impl http_body::Body for Repointed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.ended {
                if !this.held.is_empty() {
                    let out = this.feed(Bytes::new(), true);
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                if let Some(err) = this.error.take() {
                    return Poll::Ready(Some(Err(err)));
                }
                return Poll::Ready(this.trailers.take().map(Ok));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let out = this.feed(data, false);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(trailers) => {
                        this.trailers = Some(trailers);
                        this.ended = true;
                    }
                },
                Some(Err(err)) => {
                    this.error = Some(err);
                    this.ended = true;
                }
                None => this.ended = true,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.held.is_empty() && self.error.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Route, Upstream};

    fn upstream(url: &str, tls: bool) -> Upstream {
        let authority: http::uri::Authority = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
        Upstream {
            tls,
            host: authority.host().to_string(),
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority,
        }
    }

    fn links(routes: &[(&str, &str)], default: &str, tls: bool) -> Links {
        let routes: Vec<Route> = routes
            .iter()
            .map(|(prefix, url)| Route {
                prefix: (*prefix).into(),
                upstream: upstream(url, false),
            })
            .collect();
        Links::new(Arc::new(Origins::new(
            &routes,
            Some(&upstream(default, tls)),
        )))
    }

    /// The whole page at once: what each chunking must come to.
    fn whole(links: &Links, page: &str) -> String {
        let (out, held) = links.rewrite(
            &Bytes::copy_from_slice(page.as_bytes()),
            None,
            true,
            &mut origin(),
            &mut Fields::default(),
        );
        assert_eq!(held, 0);
        out.map_or_else(
            || page.to_string(),
            |o| String::from_utf8_lossy(&o).into_owned(),
        )
    }

    /// `page` fed in the pieces cut at `cuts`, as the body adapter feeds it.
    fn pieces(links: &Arc<Links>, page: &str, cuts: &[usize]) -> String {
        let mut body = fed(links);
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([&page.len()]) {
            out.extend_from_slice(
                &body.feed(Bytes::copy_from_slice(&page.as_bytes()[from..cut]), false),
            );
            from = cut;
        }
        out.extend_from_slice(&body.feed(Bytes::new(), true));
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The adapter as a page's body, fed by hand.
    fn fed(links: &Arc<Links>) -> Repointed {
        Repointed {
            inner: body::empty(),
            links: links.clone(),
            origin: origin(),
            fields: Fields::default(),
            held: BytesMut::new(),
            prev: None,
            ended: false,
            error: None,
            trailers: None,
        }
    }

    /// The tab's origin in every test: `localhost:3000`.
    fn origin() -> Origin {
        let host = HeaderValue::from_static("localhost:3000");
        Origin::new(Some(host), SocketAddr::from(([127, 0, 0, 1], 9)), false)
    }

    #[test]
    fn urls_on_the_upstream_are_repointed_in_every_form_and_others_are_not() {
        let links = links(&[], "localhost:8000", false);
        for (from, want) in [
            (
                "<a href=\"http://localhost:8000/x\">",
                "<a href=\"http://localhost:3000/x\">",
            ),
            (
                "<a href='http://127.0.0.1:8000'>",
                "<a href='http://localhost:3000'>",
            ),
            (
                "<a href=//[::1]:8000/x?y#z>",
                "<a href=//localhost:3000/x?y#z>",
            ),
            (
                "url(http://0.0.0.0:8000/a.png)",
                "url(http://localhost:3000/a.png)",
            ),
            (
                "{\"u\":\"http:\\/\\/localhost:8000\\/a\"}",
                "{\"u\":\"http:\\/\\/localhost:3000\\/a\"}",
            ),
            (
                "\"\\/\\/localhost:8000\\/a\"",
                "\"\\/\\/localhost:3000\\/a\"",
            ),
            ("ws://localhost:8000/live", "ws://localhost:3000/live"),
            ("HTTP://LOCALHOST:8000/A", "http://localhost:3000/A"),
            (
                "x.png 1x, http://localhost:8000/y.png 2x",
                "x.png 1x, http://localhost:3000/y.png 2x",
            ),
            // Not the upstream: another port, another host, another scheme, a word, plain text.
            ("http://localhost:80001/x", "http://localhost:80001/x"),
            ("http://localhost:800/x", "http://localhost:800/x"),
            ("http://example.com:8000/x", "http://example.com:8000/x"),
            ("http://mylocalhost:8000/x", "http://mylocalhost:8000/x"),
            ("https://localhost:8000/x", "https://localhost:8000/x"),
            ("wss://localhost:8000/x", "wss://localhost:8000/x"),
            ("ftp://localhost:8000/x", "ftp://localhost:8000/x"),
            ("a//localhost:8000/x", "a//localhost:8000/x"),
            ("served at localhost:8000", "served at localhost:8000"),
        ] {
            assert_eq!(whole(&links, from), want, "{from}");
        }
    }

    /// An https upstream's URLs become the proxy's http ones; one on a default port is named
    /// without its port too, and only as a whole host name.
    #[test]
    fn https_and_default_port_upstreams() {
        let tls = links(&[], "localhost:8443", true);
        assert_eq!(
            whole(&tls, "<a href=\"https://localhost:8443/x\">"),
            "<a href=\"http://localhost:3000/x\">"
        );
        assert_eq!(
            whole(&tls, "http://localhost:8443/x"),
            "http://localhost:8443/x"
        );
        let web = links(&[], "web", false);
        for (from, want) in [
            (
                "<a href=\"http://web/x\">",
                "<a href=\"http://localhost:3000/x\">",
            ),
            (
                "<a href=\"http://web:80/x\">",
                "<a href=\"http://localhost:3000/x\">",
            ),
            (
                "<a href=\"http://web\">",
                "<a href=\"http://localhost:3000\">",
            ),
            ("<a href=\"//web/x\">", "<a href=\"//localhost:3000/x\">"),
            (
                "<a href=\"http://webapp/x\">",
                "<a href=\"http://webapp/x\">",
            ),
            (
                "<a href=\"http://web.example/x\">",
                "<a href=\"http://web.example/x\">",
            ),
            (
                "<a href=\"http://web:8080/x\">",
                "<a href=\"http://web:8080/x\">",
            ),
            ("see /web/x", "see /web/x"),
        ] {
            assert_eq!(whole(&web, from), want, "{from}");
        }
    }

    /// In a polyglot stack a URL on a routed upstream is re-pointed where the proxy sends its
    /// path back there, as for `Location`.
    #[test]
    fn routed_upstreams_are_repointed_for_their_paths_alone() {
        let links = links(&[("/api", "127.0.0.1:8080")], "localhost:5173", false);
        for (from, want) in [
            (
                "\"http://localhost:8080/api/users\"",
                "\"http://localhost:3000/api/users\"",
            ),
            (
                "\"http://localhost:8080/admin\"",
                "\"http://localhost:8080/admin\"",
            ),
            (
                "\"http://localhost:5173/api/users\"",
                "\"http://localhost:5173/api/users\"",
            ),
            (
                "\"http://localhost:5173/app\"",
                "\"http://localhost:3000/app\"",
            ),
            (
                "\"http:\\/\\/localhost:8080\\/api\\/x\"",
                "\"http:\\/\\/localhost:3000\\/api\\/x\"",
            ),
        ] {
            assert_eq!(whole(&links, from), want, "{from}");
        }
    }

    /// Upstreams whose host names end one another (compose services `app` and `myapp`): each
    /// URL is told by its whole host.
    #[test]
    fn a_host_that_ends_another_is_told_apart() {
        let links = links(&[("/api", "app:8000")], "myapp:8000", false);
        for (from, want) in [
            (
                "\"http://app:8000/api/x\"",
                "\"http://localhost:3000/api/x\"",
            ),
            ("\"http://myapp:8000/x\"", "\"http://localhost:3000/x\""),
            ("\"http://app:8000/x\"", "\"http://app:8000/x\""),
            ("\"http://xapp:8000/x\"", "\"http://xapp:8000/x\""),
        ] {
            assert_eq!(whole(&links, from), want, "{from}");
        }
    }

    /// What came before a URL's slashes decides, even when it went out with the chunk before.
    #[test]
    fn a_cut_before_the_slashes_keeps_what_came_before() {
        let links = Arc::new(links(&[], "localhost:8000", false));
        for page in [
            "<a href=\"wss://localhost:8000/x\">",
            "a//localhost:8000/x",
            "{\"u\":\"wss:\\/\\/localhost:8000\\/x\"}",
            "file:///localhost:8000/x",
        ] {
            let want = whole(&links, page);
            assert_eq!(want, page);
            for cut in 0..=page.len() {
                assert_eq!(pieces(&links, page, &[cut]), want, "{page} cut at {cut}");
            }
        }
    }

    /// A path with text outside ASCII is re-pointed too: its start is cut where routes stop
    /// mattering, which may be inside a character.
    #[test]
    fn a_path_with_non_ascii_is_repointed() {
        let links = links(&[], "localhost:8000", false);
        assert_eq!(
            whole(&links, "<a href=\"http://localhost:8000/été/\">"),
            "<a href=\"http://localhost:3000/été/\">"
        );
    }

    /// However the upstream's frames cut the page (inside a scheme, an authority, a port, an
    /// escaped slash, a path that decides the route), the tab gets what the whole page gives.
    #[test]
    fn every_cut_gives_the_same_page() {
        let links = Arc::new(links(
            &[("/api", "127.0.0.1:8080")],
            "localhost:8000",
            false,
        ));
        let page = "<link href=\"http://localhost:8000/a.css\"><a href=//127.0.0.1:8000/b>b</a>\
                    <script>x={\"u\":\"http:\\/\\/[::1]:8000\\/c\",\"v\":\"http://localhost:8080/api/d\",\
                    \"w\":\"http://localhost:8080/apx\"}</script><a href=\"http://localhost:80001/\">\
                    <a href=\"http://localhost:8000\">end http://localhost:8000";
        let want = whole(&links, page);
        assert_eq!(want.matches("localhost:3000").count(), 6, "{want}");
        for cut in 0..=page.len() {
            assert_eq!(pieces(&links, page, &[cut]), want, "cut at {cut}");
            for second in (cut..=page.len()).step_by(5) {
                assert_eq!(
                    pieces(&links, page, &[cut, second]),
                    want,
                    "cuts {cut}, {second}"
                );
            }
        }
    }

    /// A URL a form submits (a `value` attribute, a `<textarea>`'s text) is data, left as the
    /// upstream wrote it however the page is cut: re-pointed, a form saved through the proxy
    /// wrote the proxy's address into the app. Links around the fields still change.
    #[test]
    fn urls_in_form_fields_are_left_alone_at_every_cut() {
        let links = Arc::new(links(&[], "localhost:8000", false));
        let page = "<a href=\"http://localhost:8000/a\">a</a>\
                    <input name=siteurl value=\"http://localhost:8000\">\
                    <input type=url value='http://localhost:8000/b' data-x=\"http://localhost:8000/c\">\
                    <option value=http://localhost:8000/d>d</option>\
                    <textarea name=content><img src=\"http://localhost:8000/e.png\"></textarea>\
                    <img src=\"http://localhost:8000/f.png\">\
                    <textarea>http://localhost:8000/g</textarea id=x><a href=http://localhost:8000/h>";
        let want = whole(&links, page);
        for kept in ["8000\"", "8000/b'", "8000/d>", "8000/e.png", "8000/g<"] {
            assert!(
                want.contains(&format!("http://localhost:{kept}")),
                "{kept} in {want}"
            );
        }
        for changed in ["3000/a", "3000/c", "3000/f.png", "3000/h"] {
            assert!(
                want.contains(&format!("http://localhost:{changed}")),
                "{changed} in {want}"
            );
        }
        for cut in 0..=page.len() {
            assert_eq!(pieces(&links, page, &[cut]), want, "cut at {cut}");
            for second in (cut..=page.len()).step_by(3) {
                assert_eq!(
                    pieces(&links, page, &[cut, second]),
                    want,
                    "cuts {cut}, {second}"
                );
            }
        }
    }

    /// A `<textarea>` opened in chunks with no URL to re-point (searched only once a URL comes)
    /// still keeps the URLs in it, wherever the page is cut; the link after it changes.
    #[test]
    fn a_textarea_opened_before_any_url_keeps_its_urls_at_every_cut() {
        let links = Arc::new(links(&[], "localhost:8000", false));
        let page = "<p>notes</p><textarea name=content>draft, see \
                    http://localhost:8000/kept</textarea><a href=http://localhost:8000/h>";
        let want = whole(&links, page);
        assert!(want.contains("localhost:8000/kept"), "{want}");
        assert!(want.contains("localhost:3000/h"), "{want}");
        for cut in 0..=page.len() {
            assert_eq!(pieces(&links, page, &[cut]), want, "cut at {cut}");
            for second in cut..=page.len() {
                assert_eq!(
                    pieces(&links, page, &[cut, second]),
                    want,
                    "cuts {cut}, {second}"
                );
            }
        }
    }

    /// A page fed one byte a chunk: many chunks with no URL left unsearched, searches forced
    /// by the chunk bound with a tag name cut across them, tails held; the same page comes out.
    #[test]
    fn a_page_fed_a_byte_at_a_time_keeps_its_fields() {
        let links = Arc::new(links(&[], "localhost:8000", false));
        let page = "<a href=\"http://localhost:8000/a\">a</a><p>a field:</p>\
                    <textarea name=content>notes <img src=\"http://localhost:8000/e.png\">\
                    </textarea><p>more text, then a link:</p><a href=http://localhost:8000/h>\
                    <textarea>http://localhost:8000/g</textarea><img src=http://localhost:8000/i>";
        let want = whole(&links, page);
        for kept in ["8000/e.png", "8000/g<"] {
            assert!(
                want.contains(&format!("localhost:{kept}")),
                "{kept} in {want}"
            );
        }
        for changed in ["3000/a", "3000/h", "3000/i"] {
            assert!(
                want.contains(&format!("localhost:{changed}")),
                "{changed} in {want}"
            );
        }
        let cuts: Vec<usize> = (1..page.len()).collect();
        assert_eq!(pieces(&links, page, &cuts), want);
    }

    /// A long page with no URL is searched for `textarea` once more than [`UNSEARCHED`] bytes,
    /// or [`UNSEARCHED_CHUNKS`] chunks, went out unsearched: what it keeps of the page stays
    /// bounded, in large chunks and in small ones, and a textarea opened far back still counts.
    #[test]
    fn what_is_left_unsearched_stays_bounded() {
        let links = Arc::new(links(&[], "localhost:8000", false));
        for (size, chunks) in [(64 * 1024, 8), (100, 200)] {
            let mut body = fed(&links);
            let mut out = Vec::new();
            let filler = Bytes::from(" ".repeat(size));
            out.extend_from_slice(&body.feed(Bytes::from_static(b"<textarea>"), false));
            for _ in 0..chunks {
                out.extend_from_slice(&body.feed(filler.clone(), false));
                assert!(body.fields.unsearched_len() <= UNSEARCHED, "{size}");
                assert!(body.fields.unsearched.len() < UNSEARCHED_CHUNKS, "{size}");
            }
            let end = b"http://localhost:8000/kept</textarea><a href=http://localhost:8000/h>";
            out.extend_from_slice(&body.feed(Bytes::from_static(end), false));
            out.extend_from_slice(&body.feed(Bytes::new(), true));
            let tail = String::from_utf8_lossy(&out[out.len() - end.len()..]);
            assert_eq!(
                tail, "http://localhost:8000/kept</textarea><a href=http://localhost:3000/h>",
                "{size}"
            );
        }
    }

    /// A `<` further back than a tag can be (a script's `a < b`) starts no field, whether the
    /// page comes whole or cut, and the URL after it is re-pointed.
    #[test]
    fn a_lone_angle_bracket_far_back_starts_no_field() {
        let links = Arc::new(links(&[], "localhost:8000", false));
        let page = format!(
            "<script>if(a<b){{{}var value = \"http://localhost:8000/api\"}}</script>",
            " ".repeat(MAX_HELD + 100)
        );
        let want = whole(&links, &page);
        assert!(want.contains("http://localhost:3000/api"), "{want}");
        for cuts in [&[3000][..], &[3000, 4150], &[100, 4100]] {
            assert_eq!(pieces(&links, &page, cuts), want, "{cuts:?}");
        }
    }

    /// A chunk with nothing to change goes on as the same bytes; one that ends in the middle of
    /// what may be a URL holds back only that tail.
    #[test]
    fn untouched_chunks_are_not_copied_and_held_tails_are_short() {
        let links = Arc::new(links(&[], "localhost:8000", false));
        let chunk = Bytes::from_static(b"<p>nothing here</p>\n");
        let mut body = fed(&links);
        let out = body.feed(chunk.clone(), false);
        assert_eq!(out.as_ptr(), chunk.as_ptr());
        assert_eq!(out.len(), chunk.len());
        let out = body.feed(Bytes::from_static(b"<a href=\"http://local"), false);
        assert_eq!(&out[..], b"<a href=\"");
        assert_eq!(&body.held[..], b"http://local");
    }
}
