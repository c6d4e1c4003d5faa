//! The streaming rewrite: a body adapter that feeds each upstream chunk to lol_html and hands on
//! what it emits, with the client tag put in exactly once.
//!
//! Owns where the tag goes and the byte bookkeeping around it:
//! - before the first `</head>`; else right after the first `<body …>`; else, for a document
//!   (a doctype, or an `<html>`/`<head>`/`<body>` tag) that has neither, at the fallback anchor:
//!   after the doctype, else before `<html>`, else after `<head …>`; else, when the browser said
//!   it loads the response as a document (a page with none of those tags, such as a framework's
//!   `Hello, World!`), at the end, where the parser puts it in the body it makes up. Tags inside
//!   comments, `<script>`, `<style>`, `<textarea>`, `<title>`, `<noscript>` … are text to
//!   lol_html and never match; tags inside an HTML `<template>` are skipped by counting open
//!   templates.
//! - streaming: each chunk's output goes downstream as soon as `write` returns, except that in a
//!   document, output from the fallback anchor on is held back until `</head>` or `<body>` shows
//!   up (then everything goes, tag included), an element that cannot be in a head starts the
//!   body the parser makes up (after a `<head>` tag: once the upstream pauses, with the tag
//!   before that element), the document ends, or [`HOLD_LIMIT`] is reached (in the last two,
//!   and the first without `<head>`, the tag goes in at the anchor). So a document's head
//!   leaves in one piece with the tag in it, and a page that sends its head and stalls has that
//!   head in the browser during the stall; fragments, which set no anchor, are never held.
//! - a page whose first chunk holds a plain head (`head_scan`) gets the tag before `</head>`
//!   without lol_html at all: the same place lol_html would put it, at a fraction of the cost.
//! - once the tag is in, the rewriter is ended (flushing any partial token) and every later
//!   chunk passes through as the same `Bytes`, untouched and uncopied.
//! - byte-exact: lol_html re-emits untouched input as-is; the only other change is the `content`
//!   of a `<meta http-equiv="Content-Security-Policy">` that would block the client (`csp`).
//! - failure: an upstream error is passed on as the body's error, after the output held back
//!   (with the tag at the anchor, so every byte that arrived is shown; Chromium runs no module
//!   script of a response that ends in an error, so such a page does not reload by itself); the
//!   rewriter is dropped, never ended, so a truncated page is not finished off as if complete.
//!   A rewriter error (memory limit) is a graceful bail-out: lol_html flushes the input it held,
//!   raw, and the rest of the
//!   page passes through.
//!
//! It does not decide whether to rewrite (`decide`), decode (`decode`) or pick the encoding
//! (`charset`), and does not edit headers.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use encoding_rs::Encoding;
use http_body::{Frame, SizeHint};
use lol_html::errors::SelectorError;
use lol_html::html_content::{ContentType, Doctype, EndTag};
use lol_html::send::{Element, HtmlRewriter, Settings};
use lol_html::{
    AsciiCompatibleEncoding, DocumentContentHandlers, ElementContentHandlers, MemorySettings,
    OutputSink, Selector,
};

use super::charset::{self, BOM_PROBE, Sniffed};
use super::csp::Csp;
use super::head_scan;
use crate::body::{self, Body, BoxError};

/// lol_html's memory budget per response. It only buffers a token split across chunks (a tag,
/// an attribute); 8 MiB fits a start tag with a multi-megabyte `data:` URI, and past it the
/// rewriter bails out gracefully (the page passes through) instead of growing without bound.
const MAX_REWRITER_MEMORY: usize = 8 * 1024 * 1024;

/// How much output may wait at the fallback anchor for a `</head>` or `<body>` that may never
/// come. 1 MiB fits real heads (inlined critical CSS, fonts, even whole bundles), so the tag still
/// lands at the end of the head, after any import map: a module script loaded before an import
/// map makes older Chromium reject the map. A document with neither tag gets the tag at the anchor
/// once this much has piled up, which bounds both memory and how long its first bytes wait.
pub(crate) const HOLD_LIMIT: usize = 1024 * 1024;

/// How much of a page lol_html gets at a time: [`FIRST_SLICE`] bytes, then twice as much each
/// time, up to [`MAX_SLICE`]. Once the tag is in, the rest passes on without parsing, so a page
/// costs about its head's worth of parsing (lol_html parses ~150 MiB/s, ~6.5 µs per KiB) rather
/// than a whole socket read: typical heads end in the first few hundred bytes, and a 2 KiB page
/// went from ~13 µs to ~4.5 µs (a fixed 2 KiB slice parsed all of it). Each slice boundary costs a
/// re-scan of the token it splits; doubling keeps those to a handful even on a page (or
/// fragment) lol_html must scan whole.
const FIRST_SLICE: usize = 256;
const MAX_SLICE: usize = 16 * 1024;

/// `Element::namespace_uri` of HTML elements: an SVG `<template>` is not inert.
const HTML_NAMESPACE: &str = "http://www.w3.org/1999/xhtml";

/// The body with the client tag injected (see the module docs); a body without document tags is
/// taken for a fragment and left alone.
pub(crate) fn rewrite(body: Body, header_charset: Option<&'static Encoding>, csp: Csp) -> Body {
    rewrite_page(body, header_charset, csp, false)
}

/// [`rewrite`] for a response a browser loads as a document (`navigation`: it said so in
/// `Sec-Fetch-Dest`), which gets the tag at its end when it has no document tags.
pub(crate) fn rewrite_page(
    body: Body,
    header_charset: Option<&'static Encoding>,
    csp: Csp,
    navigation: bool,
) -> Body {
    let shared = Shared {
        navigation,
        ..Shared::new(csp)
    };
    start_rewrite(body, header_charset, shared, true)
}

/// [`rewrite`], optionally without the plain-head fast path (`head_scan`): tests hold the two
/// against each other.
#[cfg(test)]
pub(crate) fn rewrite_with(
    body: Body,
    header_charset: Option<&'static Encoding>,
    csp: Csp,
    scan_head: bool,
) -> Body {
    start_rewrite(body, header_charset, Shared::new(csp), scan_head)
}

fn start_rewrite(
    body: Body,
    header_charset: Option<&'static Encoding>,
    shared: Shared,
    scan_head: bool,
) -> Body {
    body::boxed(Rewrite {
        scan_head,
        inner: body,
        stage: Stage::Sniff(BytesMut::new()),
        shared: Arc::new(Mutex::new(shared)),
        header_charset,
        ready: VecDeque::new(),
        ended: false,
        failed: None,
        slice: FIRST_SLICE,
    })
}

/// State shared by the body, lol_html's output sink and the content handlers (all run on the
/// task polling the body, one at a time; the mutex is for `Send`, never contended).
struct Shared {
    /// Output lol_html has emitted that has not gone downstream yet.
    out: BytesMut,
    /// Offset of `out[0]` in the whole output.
    out_start: u64,
    /// The tag is in (`out` or already sent).
    injected: bool,
    /// A doctype or an `<html>`, `<head>`, `<body>` tag was seen: this is a document, not a
    /// fragment, so it gets the tag even without `</head>` or `<body>`.
    document: bool,
    /// Output offset where the tag goes if neither `</head>` nor `<body>` shows up. Output from
    /// here on is held back (see [`HOLD_LIMIT`]).
    anchor: Option<u64>,
    /// A `<head>` tag was seen: its `</head>` places the tag, not the first body element.
    saw_head: bool,
    /// Output offset of the first element after a `<head>` tag that cannot be in a head: the
    /// parser's head ended there. The tag goes there if the upstream stalls before a `</head>`.
    implied: Option<u64>,
    /// Open HTML `<template>` elements: their content is inert, a tag there would never run.
    template_depth: u32,
    /// The page's policies so far and the nonce the tag carries.
    csp: Csp,
    /// The browser loads this as a document, tags or not (see [`rewrite_page`]).
    navigation: bool,
}

impl Shared {
    fn new(csp: Csp) -> Shared {
        Shared {
            out: BytesMut::new(),
            out_start: 0,
            injected: false,
            document: false,
            anchor: None,
            saw_head: false,
            implied: None,
            template_depth: 0,
            csp,
            navigation: false,
        }
    }

    /// Output offset of the next byte lol_html emits. Inside a handler that is the start of the
    /// token being handled: lol_html emits everything before a token, then runs its handlers,
    /// then emits the token.
    fn pos(&self) -> u64 {
        self.out_start + self.out.len() as u64
    }

    /// Whether a `</head>` or `<body>` met now gets the tag.
    fn may_inject(&self) -> bool {
        !self.injected && self.template_depth == 0
    }

    /// The first doctype/`<html>`/`<head>` outside a template fixes the fallback anchor.
    fn set_anchor(&mut self, at: u64) {
        self.document = true;
        if self.anchor.is_none() && self.may_inject() {
            self.anchor = Some(at);
        }
    }

    /// Output bytes waiting at the fallback anchor (none once the tag is in).
    fn held(&self) -> usize {
        match self.anchor {
            Some(anchor) if !self.injected => {
                let before =
                    usize::try_from(anchor.saturating_sub(self.out_start)).unwrap_or(usize::MAX);
                self.out.len().saturating_sub(before)
            }
            _ => 0,
        }
    }

    /// At the end of a page a browser loads as a document but that had no document tags: the tag
    /// goes last, into the body the parser makes up.
    fn inject_at_end(&mut self) {
        if self.injected || !self.navigation || self.template_depth > 0 {
            return;
        }
        let tag = self.csp.tag();
        self.out.extend_from_slice(tag.as_bytes());
        self.injected = true;
    }

    /// Put the tag in at the anchor, if this is a document still without one.
    fn inject_at_anchor(&mut self) {
        if let Some(anchor) = self.anchor {
            self.inject_at(anchor);
        }
    }

    /// Put the tag in at output offset `at`, if this is a document still without one and `at`
    /// is still held.
    fn inject_at(&mut self, at: u64) {
        if self.injected || !self.document {
            return;
        }
        let Some(at) = at
            .checked_sub(self.out_start)
            .and_then(|at| usize::try_from(at).ok())
            .filter(|&at| at <= self.out.len())
        else {
            return;
        };
        let tag = self.csp.tag();
        let mut out = BytesMut::with_capacity(self.out.len() + tag.len());
        out.extend_from_slice(&self.out[..at]);
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(&self.out[at..]);
        self.out = out;
        self.injected = true;
    }
}

type SharedRef = Arc<Mutex<Shared>>;

fn lock(shared: &SharedRef) -> MutexGuard<'_, Shared> {
    // A handler that panicked has already failed the response; the state is still plain data.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// lol_html's output goes into [`Shared::out`].
struct Sink(SharedRef);

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        if !chunk.is_empty() {
            lock(&self.0).out.extend_from_slice(chunk);
        }
    }
}

/// The selectors, parsed once per process.
struct Selectors {
    html: Selector,
    head: Selector,
    body: Selector,
    template: Selector,
    meta: Selector,
    any: Selector,
}

static SELECTORS: LazyLock<Result<Selectors, SelectorError>> = LazyLock::new(|| {
    Ok(Selectors {
        html: "html".parse()?,
        head: "head".parse()?,
        body: "body".parse()?,
        template: "template".parse()?,
        meta: "meta[http-equiv]".parse()?,
        any: "*".parse()?,
    })
});

/// The rewriter's settings and handlers for one response.
fn settings(
    shared: &SharedRef,
    encoding: AsciiCompatibleEncoding,
    follow_meta: bool,
) -> Result<Settings<'static, 'static>, &'static SelectorError> {
    let selectors = SELECTORS.as_ref()?;

    let s = shared.clone();
    // An XML document has one root element, and the tag must be inside it: its anchor is after
    // `<html …>`, never after the doctype or before the root. lol_html reads the page as HTML, to
    // which a `<script/>` opens script text that swallows the rest, `</head>` included: the tag
    // went to the anchor, outside the root, and the browser's XML parser refused the page.
    let doctype = DocumentContentHandlers::default().doctype(move |d: &mut Doctype<'_>| {
        let mut st = lock(&s);
        if st.csp.is_xml() {
            st.document = true;
            return Ok(());
        }
        let end = st.pos() + d.source_location().bytes().len() as u64;
        st.set_anchor(end);
        Ok(())
    });

    let s = shared.clone();
    let html = ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
        let mut st = lock(&s);
        let at = if st.csp.is_xml() {
            st.pos() + el.source_location().bytes().len() as u64
        } else {
            st.pos()
        };
        st.set_anchor(at);
        Ok(())
    });

    let s = shared.clone();
    let head = ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
        {
            let mut st = lock(&s);
            let after = st.pos() + el.source_location().bytes().len() as u64;
            st.set_anchor(after);
            st.saw_head = true;
        }
        let s = s.clone();
        if let Some(handlers) = el.end_tag_handlers() {
            handlers.push(Box::new(move |end: &mut EndTag<'_>| {
                let mut st = lock(&s);
                if st.may_inject() {
                    end.before(&st.csp.tag(), ContentType::Html);
                    st.injected = true;
                }
                Ok(())
            }));
        }
        Ok(())
    });

    let s = shared.clone();
    let body = ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
        let mut st = lock(&s);
        st.document = true;
        if st.may_inject() {
            // After the start tag rather than `prepend`, which would rewrite `<body/>` as
            // `<body>`: the tag is the only change.
            el.start_tag().after(&st.csp.tag(), ContentType::Html);
            st.injected = true;
        }
        Ok(())
    });

    let s = shared.clone();
    let template = ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
        if el.namespace_uri() != HTML_NAMESPACE {
            return Ok(());
        }
        let closing = s.clone();
        if let Some(handlers) = el.end_tag_handlers() {
            handlers.push(Box::new(move |_: &mut EndTag<'_>| {
                let mut st = lock(&closing);
                st.template_depth = st.template_depth.saturating_sub(1);
                Ok(())
            }));
            lock(&s).template_depth += 1;
        }
        Ok(())
    });

    let s = shared.clone();
    let meta = ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
        let mut st = lock(&s);
        // A policy in a template or after the tag (only `<head>` metas count) is not ours.
        if !st.may_inject() {
            return Ok(());
        }
        let is_csp = el
            .get_attribute("http-equiv")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("content-security-policy"));
        if !is_csp {
            return Ok(());
        }
        if let Some(content) = el.get_attribute("content")
            && let Some(edited) = st.csp.edit_meta(&content)
        {
            el.set_attribute("content", &edited)?;
        }
        Ok(())
    });

    // A document without a `<head>` tag still has a head that ends: the first element that cannot
    // be in a head starts the body the parser makes up, and a `</head>` after it would be ignored.
    // So the tag goes in at the anchor now rather than when the page ends or the hold limit is
    // reached: a page that streams without those tags (a log, a progress page) is not held back.
    // After a `<head>` tag, that element is only noted: a `</head>` in the same burst still
    // places the tag (after an import map a sloppy head has past a `<div>`), and only a stall
    // of the upstream puts it there (`Rewrite::release_stalled`). (Text that starts the body
    // is not looked at: a text handler makes lol_html re-encode every text chunk, which bytes
    // invalid in the page's encoding would not survive.)
    let s = shared.clone();
    let implied_body =
        ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
            let mut st = lock(&s);
            // Checked before the name, which is copied out: a fragment (no anchor) has its
            // every element come through here.
            if st.anchor.is_none() || st.implied.is_some() || !st.may_inject() {
                return Ok(());
            }
            if !stays_in_head(&el.tag_name()) {
                if st.saw_head {
                    st.implied = Some(st.pos());
                } else {
                    st.inject_at_anchor();
                }
            }
            Ok(())
        });

    Ok(Settings::new_send()
        // Strict mode aborts on markup whose parse depends on the tree (`<select><xmp>`): a
        // guard for rewriting untrusted pages for others, not for a dev server's own pages.
        .with_strict(false)
        .with_encoding(encoding)
        .with_adjust_charset_on_meta_tag(follow_meta)
        .with_memory_settings(
            MemorySettings::new()
                .with_max_allowed_memory_usage(MAX_REWRITER_MEMORY)
                .with_graceful_bail_out_on_memory_limit_exceeded(true),
        )
        .with_graceful_bail_out_on_content_handler_error(true)
        .append_document_content_handler(doctype)
        .append_element_content_handler((Cow::Borrowed(&selectors.html), html))
        .append_element_content_handler((Cow::Borrowed(&selectors.head), head))
        .append_element_content_handler((Cow::Borrowed(&selectors.body), body))
        .append_element_content_handler((Cow::Borrowed(&selectors.template), template))
        .append_element_content_handler((Cow::Borrowed(&selectors.meta), meta))
        .append_element_content_handler((Cow::Borrowed(&selectors.any), implied_body)))
}

/// Elements the HTML parser keeps in (or before) the head: any other start tag begins the body.
fn stays_in_head(name: &str) -> bool {
    matches!(
        name,
        "html"
            | "head"
            | "body"
            | "frameset"
            | "base"
            | "basefont"
            | "bgsound"
            | "link"
            | "meta"
            | "title"
            | "noscript"
            | "noframes"
            | "style"
            | "script"
            | "template"
    )
}

enum Stage {
    /// Waiting for the first [`BOM_PROBE`] bytes, which decide the encoding.
    Sniff(BytesMut),
    Rewriting(Box<HtmlRewriter<'static, Sink>>),
    /// The tag is in, or the page cannot be rewritten: chunks pass as they are.
    Raw,
}

struct Rewrite {
    /// Try `head_scan` on the first bytes before starting lol_html.
    scan_head: bool,
    inner: Body,
    stage: Stage,
    shared: SharedRef,
    header_charset: Option<&'static Encoding>,
    /// Frames ready to go downstream, in order.
    ready: VecDeque<Frame<Bytes>>,
    /// The upstream body has ended (or failed).
    ended: bool,
    /// The upstream body's error, passed on after what was held back.
    failed: Option<BoxError>,
    /// How many bytes lol_html gets in its next write (see [`FIRST_SLICE`]).
    slice: usize,
}

impl Rewrite {
    fn feed(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        match &mut self.stage {
            Stage::Raw => self.ready.push_back(Frame::data(data)),
            Stage::Rewriting(_) => self.rewrite_chunk(data),
            Stage::Sniff(buf) if buf.is_empty() && data.len() >= BOM_PROBE => self.start(data),
            Stage::Sniff(buf) => {
                buf.extend_from_slice(&data);
                if buf.len() >= BOM_PROBE {
                    let first = std::mem::take(buf).freeze();
                    self.start(first);
                }
            }
        }
    }

    /// Pick the encoding from the first bytes, then rewrite them.
    fn start(&mut self, first: Bytes) {
        let (encoding, follow_meta) = match charset::sniff(&first, self.header_charset) {
            Sniffed::Rewrite {
                encoding,
                follow_meta,
            } => (encoding, follow_meta),
            Sniffed::PassThrough => {
                // Worth a warning, as for a charset the headers name: the page will never
                // reload by itself. (The path is not known here; it is the navigation's.)
                tracing::warn!(
                    "a page starts with a UTF-16 byte order mark: passing it through without \
                     the client (live reload needs an ASCII-compatible encoding such as UTF-8)"
                );
                // Not even at the end: the tag is ASCII, the page is not.
                lock(&self.shared).navigation = false;
                self.stage = Stage::Raw;
                self.ready.push_back(Frame::data(first));
                return;
            }
        };
        if self.scan_head
            && let Some(at) = head_scan::head_end(&first)
        {
            // The head is plain: the tag goes before `</head>` with no parse; the rest passes.
            let tag = {
                let mut st = lock(&self.shared);
                st.injected = true;
                st.csp.tag()
            };
            let mut head = BytesMut::with_capacity(at + tag.len());
            head.extend_from_slice(&first[..at]);
            head.extend_from_slice(tag.as_bytes());
            self.ready.push_back(Frame::data(head.freeze()));
            self.ready.push_back(Frame::data(first.slice(at..)));
            self.stage = Stage::Raw;
            return;
        }
        match settings(&self.shared, encoding, follow_meta) {
            Ok(settings) => {
                let rewriter = HtmlRewriter::new(settings, Sink(self.shared.clone()));
                self.stage = Stage::Rewriting(Box::new(rewriter));
                self.rewrite_chunk(first);
            }
            Err(err) => {
                tracing::warn!("HTML rewriter unavailable ({err}); pages pass through untouched");
                lock(&self.shared).navigation = false;
                self.stage = Stage::Raw;
                self.ready.push_back(Frame::data(first));
            }
        }
    }

    /// Rewrite one upstream chunk, a growing slice at a time (see [`FIRST_SLICE`]), so that once
    /// the tag is in, the rest of the chunk goes on as a slice of the same `Bytes`, unparsed.
    fn rewrite_chunk(&mut self, data: Bytes) {
        let mut done = 0;
        while done < data.len() {
            let Stage::Rewriting(rewriter) = &mut self.stage else {
                break;
            };
            let end = data.len().min(done + self.slice);
            self.slice = (self.slice * 2).min(MAX_SLICE);
            let result = rewriter.write(&data[done..end]);
            done = end;
            let mut st = lock(&self.shared);
            match result {
                Err(err) => {
                    // Graceful bail-out: lol_html has flushed what it held, raw; it is poisoned.
                    tracing::debug!("HTML rewriter stopped ({err}); the rest of the page passes");
                    st.inject_at_anchor();
                    // What the rest holds is unknown: an end in the middle of a tag, say.
                    st.navigation = false;
                    drop(st);
                    self.stage = Stage::Raw;
                }
                Ok(()) => {
                    if st.held() > HOLD_LIMIT {
                        st.inject_at_anchor();
                    }
                    let injected = st.injected;
                    drop(st);
                    if injected {
                        self.end_rewriter();
                    }
                }
            }
        }
        self.drain();
        if done < data.len() {
            self.ready.push_back(Frame::data(data.slice(done..)));
        }
    }

    /// The upstream has nothing more for now. A head that has already given way to the body
    /// (see `implied`) but whose `</head>` has not come is not held through the wait: a PHP page
    /// that echoes `<head><title>` and then flushes a row a second showed nothing until it ended.
    /// Returns whether output is ready.
    fn release_stalled(&mut self) -> bool {
        if !matches!(self.stage, Stage::Rewriting(_)) {
            return false;
        }
        {
            let mut st = lock(&self.shared);
            let Some(at) = st.implied else {
                return false;
            };
            st.inject_at(at);
            if !st.injected {
                return false;
            }
        }
        self.end_rewriter();
        self.drain();
        !self.ready.is_empty()
    }

    /// The upstream body is complete: flush the rewriter and settle the fallback.
    fn finish(&mut self) {
        if let Stage::Sniff(buf) = &mut self.stage {
            let first = std::mem::take(buf).freeze();
            self.stage = Stage::Raw;
            if !first.is_empty() {
                self.start(first);
            }
        }
        self.end_rewriter();
        {
            let mut st = lock(&self.shared);
            st.inject_at_anchor();
            st.inject_at_end();
        }
        self.drain();
    }

    /// The upstream body failed: what is held back goes out first, with the tag at the anchor
    /// if it is not in, then the error (Chromium shows what arrived but runs no module script of
    /// a response that ends in an error: the tag is there for other browsers). The
    /// rewriter is dropped, never ended: a truncated page is not finished off as if complete.
    fn fail(&mut self, err: BoxError) {
        if let Stage::Sniff(buf) = &mut self.stage
            && !buf.is_empty()
        {
            self.ready
                .push_back(Frame::data(std::mem::take(buf).freeze()));
        }
        self.stage = Stage::Raw;
        {
            let mut st = lock(&self.shared);
            st.inject_at_anchor();
            let held = st.out.split().freeze();
            st.out_start += held.len() as u64;
            if !held.is_empty() {
                self.ready.push_back(Frame::data(held));
            }
        }
        self.ended = true;
        self.failed = Some(err);
    }

    /// End the rewriter (flushing a partial token as the raw bytes it was), if still running.
    fn end_rewriter(&mut self) {
        if let Stage::Rewriting(rewriter) = std::mem::replace(&mut self.stage, Stage::Raw)
            && let Err(err) = rewriter.end()
        {
            tracing::debug!("HTML rewriter stopped at the end of the page ({err})");
        }
    }

    /// Queue the rewriter's output, except what is held at the fallback anchor.
    fn drain(&mut self) {
        let mut st = lock(&self.shared);
        let n = st.out.len() - st.held();
        if n > 0 {
            let bytes = st.out.split_to(n).freeze();
            st.out_start += n as u64;
            self.ready.push_back(Frame::data(bytes));
        }
    }
}

impl http_body::Body for Rewrite {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(frame) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(frame)));
            }
            if let Some(err) = this.failed.take() {
                return Poll::Ready(Some(Err(err)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            let Poll::Ready(next) = Pin::new(&mut this.inner).poll_frame(cx) else {
                if this.release_stalled() {
                    continue;
                }
                return Poll::Pending;
            };
            match next {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.feed(data),
                    Err(trailers) => {
                        this.finish();
                        this.ready.push_back(trailers);
                    }
                },
                Some(Err(err)) => {
                    this.fail(err);
                }
                None => {
                    this.finish();
                    this.ended = true;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.ready.is_empty() && self.failed.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
