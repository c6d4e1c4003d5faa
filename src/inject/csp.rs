//! Content-Security-Policy: letting the client load and reach `/changes` under the page's policy,
//! and granting as little more than that as a source list can say: where `'self'` is added, it
//! lets every same-origin script (or connection) through, so a policy stricter than that towards
//! the page's own origin (`script-src 'none'`) stops showing its violations through the proxy.
//!
//! Owns reading and minimally editing policies, from the `Content-Security-Policy` header (before
//! the body streams) and from `<meta http-equiv="Content-Security-Policy">` (as the rewriter meets
//! it), and the nonce the injected tag carries. Per policy:
//!
//! - scripts (`script-src-elem`, else `script-src`, else `default-src`): a policy with nonces
//!   gets the tag carrying one of them (the page's own nonce, `'strict-dynamic'` included); a
//!   `'strict-dynamic'` policy without one gets a fresh nonce added (`'self'` means nothing
//!   there); any other list that would block a same-origin script gets `'self'`. A nonce is only
//!   ever added where the list already has nonces or `'strict-dynamic'`, so a policy relying on
//!   `'unsafe-inline'` keeps working (a nonce would switch `'unsafe-inline'` off);
//! - `EventSource` (`connect-src`, else `default-src`): `'self'` where it would be refused; a
//!   `connect-src` is created from `default-src` rather than widening `default-src` itself.
//!
//! `Content-Security-Policy-Report-Only` is edited the same way: it blocks nothing, but the
//! client would be reported as a violation on every page load. This module does not decide where
//! the tag goes (`rewrite`) and does not parse HTML.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::client;

/// The per-response CSP state: where the page is served from (for host-sources) and the nonce
/// the tag will carry.
#[derive(Debug, Clone)]
pub(crate) struct Csp {
    /// The request's `Host`, read as an [`Origin`] only when a policy lists host-sources: most
    /// pages have no policy, and this is built for every page.
    host: Option<HeaderValue>,
    nonce: Option<String>,
    /// The page is an XML document: it gets [`client::XML_TAG`].
    xml: bool,
}

/// The page's own origin as the browser sees it (from the request's `Host`). Always `http`:
/// browsers talk plain HTTP to the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    host: String,
    port: u16,
}

impl Origin {
    fn from_host(host: &HeaderValue) -> Option<Origin> {
        let host = host.to_str().ok()?.trim().to_ascii_lowercase();
        let (name, port) = match host.rfind(':') {
            // `[::1]:3000` has colons inside the brackets; only one after `]` is a port.
            Some(i) if !host[i..].contains(']') => (&host[..i], host[i + 1..].parse().ok()?),
            _ => (host.as_str(), 80),
        };
        Some(Origin {
            host: name.to_string(),
            port,
        })
    }
}

impl Csp {
    /// State for one response; `host` is the request's `Host` header.
    pub(crate) fn new(host: Option<&HeaderValue>) -> Csp {
        Csp {
            host: host.cloned(),
            nonce: None,
            xml: false,
        }
    }

    /// The page is an XML document (`application/xhtml+xml`): it gets the classic loader tag.
    pub(crate) fn xml_document(&mut self) {
        self.xml = true;
    }

    pub(crate) fn is_xml(&self) -> bool {
        self.xml
    }

    /// The tag to inject, carrying the nonce when a policy needs one.
    pub(crate) fn tag(&self) -> Cow<'static, str> {
        match (&self.nonce, self.xml) {
            (Some(nonce), false) => Cow::Owned(client::tag_with_nonce(nonce)),
            (None, false) => Cow::Borrowed(client::TAG),
            (Some(nonce), true) => Cow::Owned(client::xml_tag_with_nonce(nonce)),
            (None, true) => Cow::Borrowed(client::XML_TAG),
        }
    }

    /// Edit the response's `Content-Security-Policy` fields in place. Fields that need no change
    /// stay byte-identical; a field that is not visible ASCII is left alone (no browser would
    /// parse it either).
    pub(crate) fn edit_headers(&mut self, headers: &mut HeaderMap) {
        let names = [
            header::CONTENT_SECURITY_POLICY,
            header::CONTENT_SECURITY_POLICY_REPORT_ONLY,
        ];
        let present: Vec<&HeaderName> = names.iter().filter(|n| headers.contains_key(*n)).collect();
        // Adopt the page's nonce first (an enforced policy's before a reported one's), so a later
        // policy that needs one gets the page's rather than a fresh one.
        for name in &present {
            for value in headers.get_all(*name) {
                if let Ok(text) = value.to_str() {
                    for policy in text.split(',') {
                        self.adopt_nonce(&Policy::parse(policy));
                    }
                }
            }
        }
        for name in present {
            self.edit_header(headers, name);
        }
    }

    /// Every `name` policy edited to let the client through (see [`Csp::edit_policy`]). A
    /// report-only policy too: it blocks nothing, but each page load reported the client as a
    /// violation to the app's collector, and the console said so.
    fn edit_header(&mut self, headers: &mut HeaderMap, name: &HeaderName) {
        let values: Vec<HeaderValue> = headers.get_all(name).iter().cloned().collect();
        let mut edited = Vec::with_capacity(values.len());
        let mut changed = false;
        for value in values {
            let Ok(text) = value.to_str() else {
                edited.push(value);
                continue;
            };
            let mut policies: Vec<Cow<'_, str>> = Vec::new();
            let mut any = false;
            for policy in text.split(',') {
                match self.edit_policy(policy) {
                    Some(new) => {
                        any = true;
                        // Keep the space after a comma, so only the edited policy reads new.
                        let lead = policy.len() - policy.trim_start().len();
                        policies.push(Cow::Owned(format!("{}{new}", &policy[..lead])));
                    }
                    None => policies.push(Cow::Borrowed(policy)),
                }
            }
            if any {
                if let Ok(v) = HeaderValue::from_str(&policies.join(",")) {
                    changed = true;
                    edited.push(v);
                    continue;
                }
            }
            edited.push(value);
        }
        if changed {
            headers.remove(name);
            for value in edited {
                headers.append(name, value);
            }
        }
    }

    /// The new `content` of a `<meta http-equiv="Content-Security-Policy">`, or `None` when the
    /// policy already lets the client through.
    pub(crate) fn edit_meta(&mut self, content: &str) -> Option<String> {
        self.adopt_nonce(&Policy::parse(content));
        self.edit_policy(content)
    }

    /// Take the first valid nonce of the policy's script list, unless one is already chosen.
    fn adopt_nonce(&mut self, policy: &Policy<'_>) {
        if self.nonce.is_some() {
            return;
        }
        if let Some((_, list)) = policy.script_list() {
            self.nonce = list.iter().find_map(|s| nonce_of(s)).map(str::to_string);
        }
    }

    /// Edit one serialized policy; `None` when it needs no change.
    fn edit_policy(&mut self, text: &str) -> Option<String> {
        let mut policy = Policy::parse(text);
        let mut changed = false;

        if let Some((index, list)) = policy.script_list() {
            let nonces: Vec<&str> = list.iter().filter_map(|s| nonce_of(s)).collect();
            let grant = if !nonces.is_empty() {
                // The tag carries the first nonce adopted; a second policy with other nonces
                // gets that one added (it already has nonces, so nothing inline changes).
                match &self.nonce {
                    Some(ours) if nonces.contains(&ours.as_str()) => None,
                    Some(ours) => Some(format!("'nonce-{ours}'")),
                    None => {
                        self.nonce = nonces.first().map(|n| n.to_string());
                        None
                    }
                }
            } else if has(list, "'strict-dynamic'") {
                let ours = self.nonce.get_or_insert_with(fresh_nonce);
                Some(format!("'nonce-{ours}'"))
            } else if allows_same_origin(list, self.host.as_ref()) {
                None
            } else {
                Some("'self'".to_string())
            };
            if let Some(grant) = grant {
                policy.grant(index, "script-src", &grant, false);
                changed = true;
            }
        }

        if let Some((index, list)) = policy.connect_list()
            && !allows_same_origin(list, self.host.as_ref())
        {
            policy.grant(index, "connect-src", "'self'", true);
            changed = true;
        }

        changed.then(|| policy.serialize())
    }
}

/// A parsed policy: directives in order, names lower-cased, sources as written.
struct Policy<'a> {
    directives: Vec<Directive<'a>>,
}

struct Directive<'a> {
    name: String,
    sources: Vec<Cow<'a, str>>,
}

/// Where a directive list comes from: its own directive, or `default-src` standing in for it.
#[derive(Clone, Copy)]
enum Source {
    Own(usize),
    Default(usize),
}

impl<'a> Policy<'a> {
    fn parse(text: &'a str) -> Policy<'a> {
        let directives = text
            .split(';')
            .filter_map(|d| {
                let mut tokens = d.split_ascii_whitespace();
                let name = tokens.next()?.to_ascii_lowercase();
                Some(Directive {
                    name,
                    sources: tokens.map(Cow::Borrowed).collect(),
                })
            })
            .collect();
        Policy { directives }
    }

    /// The first directive of that name (browsers ignore repeats).
    fn find(&self, name: &str) -> Option<usize> {
        self.directives.iter().position(|d| d.name == name)
    }

    fn list(&self, own: &[&str]) -> Option<(Source, &[Cow<'a, str>])> {
        let source = own
            .iter()
            .find_map(|name| self.find(name).map(Source::Own))
            .or_else(|| self.find("default-src").map(Source::Default))?;
        let (Source::Own(i) | Source::Default(i)) = source;
        Some((source, &self.directives[i].sources))
    }

    /// The list governing a parser-inserted `<script src>`.
    fn script_list(&self) -> Option<(Source, &[Cow<'a, str>])> {
        self.list(&["script-src-elem", "script-src"])
    }

    /// The list governing `EventSource`.
    fn connect_list(&self) -> Option<(Source, &[Cow<'a, str>])> {
        self.list(&["connect-src"])
    }

    /// Add `grant` to the list at `source`: in place for the list's own directive; for one that
    /// comes from `default-src`, as a new `name` directive copying it, so other fetch kinds stay
    /// as strict as they were. `'none'` goes, since it only means anything alone. With
    /// `network_only`, the copy keeps only sources that can match a URL (nonces, hashes and
    /// script keywords mean nothing to `connect-src`).
    fn grant(&mut self, source: Source, name: &str, grant: &str, network_only: bool) {
        let target = match source {
            Source::Own(i) => i,
            Source::Default(i) => {
                let sources = self.directives[i]
                    .sources
                    .iter()
                    .filter(|s| !network_only || is_network_source(s))
                    .cloned()
                    .collect();
                self.directives.push(Directive {
                    name: name.to_string(),
                    sources,
                });
                self.directives.len() - 1
            }
        };
        let sources = &mut self.directives[target].sources;
        sources.retain(|s| !s.eq_ignore_ascii_case("'none'"));
        sources.push(Cow::Owned(grant.to_string()));
    }

    fn serialize(&self) -> String {
        self.directives
            .iter()
            .map(|d| {
                let mut out = d.name.clone();
                for s in &d.sources {
                    out.push(' ');
                    out.push_str(s);
                }
                out
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn has(list: &[Cow<'_, str>], keyword: &str) -> bool {
    list.iter().any(|s| s.eq_ignore_ascii_case(keyword))
}

/// The value of a `'nonce-…'` source, if it is one with a valid base64 value (the only thing
/// allowed into the tag's attribute: a policy cannot smuggle markup through it).
fn nonce_of(source: &str) -> Option<&str> {
    let prefix = source.get(..7)?;
    if !prefix.eq_ignore_ascii_case("'nonce-") {
        return None;
    }
    let value = source[7..].strip_suffix('\'')?;
    valid_nonce(value).then_some(value)
}

/// CSP's base64-value: base64 or base64url characters, up to two `=` of padding at the end.
fn valid_nonce(value: &str) -> bool {
    let body = value.trim_end_matches('=');
    !body.is_empty()
        && value.len() - body.len() <= 2
        && value.len() <= 256
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'))
}

/// Sources that name URLs (kept when `connect-src` is derived from `default-src`).
fn is_network_source(source: &str) -> bool {
    !source.starts_with('\'') || source.eq_ignore_ascii_case("'self'")
}

/// Whether a source list lets a page served under `host` fetch from its own origin over `http:`.
fn allows_same_origin(list: &[Cow<'_, str>], host: Option<&HeaderValue>) -> bool {
    let origin = host.and_then(Origin::from_host);
    let origin = origin.as_ref();
    list.iter().any(|source| {
        let s = source.to_ascii_lowercase();
        match s.as_str() {
            "*" | "'self'" | "http:" => true,
            _ if s.starts_with('\'') => false,
            _ => origin.is_some_and(|o| host_source_matches(&s, o)),
        }
    })
}

/// CSP host-source matching for an `http:` URL on `origin` (lower-cased source). A source with
/// a path is treated as not matching: the client's and `/changes`' paths are not the app's.
fn host_source_matches(source: &str, origin: &Origin) -> bool {
    let (scheme, rest) = match source.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, source),
    };
    if !matches!(scheme, None | Some("http")) {
        return false;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !(path.is_empty() || path == "/") {
        return false;
    }
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    let host_ok = if host == "*" {
        true
    } else if let Some(suffix) = host.strip_prefix("*.") {
        origin.host.ends_with(&format!(".{suffix}"))
    } else {
        host == origin.host
    };
    let port_ok = match port {
        None => origin.port == 80,
        Some("*") => true,
        Some(p) => p.parse::<u16>().is_ok_and(|p| p == origin.port),
    };
    host_ok && port_ok
}

/// A nonce for policies that need one and have none to share. A dev tool's nonce only has to be
/// unguessable by the page's other content: 128 bits from SipHash under the process's random
/// keys, hex-encoded (hex is valid base64).
fn fresh_nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = std::collections::hash_map::RandomState::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let half = |salt: u64| {
        let mut h = state.build_hasher();
        h.write_u64(n);
        h.write_u64(salt);
        h.finish()
    };
    format!("{:016x}{:016x}", half(1), half(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csp() -> Csp {
        Csp::new(Some(&HeaderValue::from_static("localhost:3000")))
    }

    /// Edit a header value; returns (new header or None, the tag).
    fn edit(policy: &str) -> (Option<String>, String) {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(policy).unwrap(),
        );
        let mut csp = csp();
        csp.edit_headers(&mut headers);
        let after = headers
            .get(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        ((after != policy).then_some(after), csp.tag().into_owned())
    }

    #[test]
    fn policies_that_already_allow_the_client_are_untouched() {
        for policy in [
            "default-src 'self'",
            "default-src *",
            "script-src 'self'; connect-src 'self'",
            "img-src 'none'",
            "default-src http:",
            "default-src http://localhost:3000",
            "default-src localhost:*",
            "default-src *.example.com 'self'",
            "script-src 'self' 'unsafe-inline'; connect-src *",
            "frame-ancestors 'none'",
        ] {
            let (after, tag) = edit(policy);
            assert_eq!(after, None, "{policy}");
            assert_eq!(tag, client::TAG, "{policy}");
        }
    }

    #[test]
    fn nonce_policies_lend_their_nonce() {
        let (after, tag) = edit("script-src 'nonce-abc123+/=' 'strict-dynamic'; object-src 'none'");
        assert_eq!(after, None, "nonce reused, policy untouched");
        assert_eq!(tag, client::tag_with_nonce("abc123+/="));

        let (after, tag) = edit("default-src 'self'; script-src 'nonce-r4nd0m'");
        assert_eq!(after, None);
        assert_eq!(tag, client::tag_with_nonce("r4nd0m"));

        // Nonce in default-src (no script-src) works for scripts too; connect needs 'self'.
        let (after, tag) = edit("default-src 'nonce-xyz'");
        assert_eq!(
            after.as_deref(),
            Some("default-src 'nonce-xyz'; connect-src 'self'")
        );
        assert_eq!(tag, client::tag_with_nonce("xyz"));
    }

    /// A report-only policy is edited as an enforced one is (each page load reported the client
    /// as a violation), and lends its nonce when the enforced policy has none; the enforced
    /// policy's nonce comes first.
    #[test]
    fn report_only_policies_are_edited_too() {
        let ro = header::CONTENT_SECURITY_POLICY_REPORT_ONLY;
        let mut headers = HeaderMap::new();
        headers.insert(&ro, HeaderValue::from_static("script-src 'nonce-r1'"));
        let mut policy = csp();
        policy.edit_headers(&mut headers);
        assert_eq!(policy.tag(), client::tag_with_nonce("r1"));
        assert_eq!(headers[&ro], "script-src 'nonce-r1'");

        let mut headers = HeaderMap::new();
        headers.insert(
            &ro,
            HeaderValue::from_static("default-src 'none'; report-uri /r"),
        );
        let mut policy = csp();
        policy.edit_headers(&mut headers);
        assert_eq!(
            headers[&ro],
            "default-src 'none'; report-uri /r; script-src 'self'; connect-src 'self'"
        );

        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("script-src 'nonce-e1'"),
        );
        headers.insert(&ro, HeaderValue::from_static("script-src 'nonce-r1'"));
        let mut policy = csp();
        policy.edit_headers(&mut headers);
        assert_eq!(policy.tag(), client::tag_with_nonce("e1"));
        assert_eq!(headers[&ro], "script-src 'nonce-r1' 'nonce-e1'");
    }

    #[test]
    fn unsafe_nonces_are_never_copied_into_markup() {
        let (after, tag) = edit("script-src 'nonce-a\"><script>alert(1)</script>'");
        assert_eq!(tag, client::TAG);
        // The bogus source does not count as a nonce, so the client needs 'self'.
        assert!(after.unwrap().ends_with("'self'"));
        assert!(!valid_nonce("a===") && valid_nonce("a==") && !valid_nonce(""));
    }

    #[test]
    fn strict_dynamic_without_nonce_gets_a_fresh_one() {
        let (after, tag) = edit("script-src 'strict-dynamic' 'sha256-AAAA'");
        let after = after.unwrap();
        let nonce = after
            .split_ascii_whitespace()
            .find_map(nonce_of)
            .expect("a nonce was added");
        assert_eq!(nonce.len(), 32);
        assert_eq!(tag, client::tag_with_nonce(nonce));
    }

    #[test]
    fn unsafe_inline_policies_get_self_never_a_nonce() {
        let (after, tag) = edit("script-src 'unsafe-inline'");
        assert_eq!(after.as_deref(), Some("script-src 'unsafe-inline' 'self'"));
        assert_eq!(tag, client::TAG);
    }

    #[test]
    fn default_src_is_copied_not_widened() {
        let (after, _) = edit("default-src 'none'; style-src 'self'");
        assert_eq!(
            after.as_deref(),
            Some("default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'")
        );
        let (after, _) = edit("default-src https://cdn.example 'unsafe-inline' 'sha256-x'");
        assert_eq!(
            after.as_deref(),
            Some(
                "default-src https://cdn.example 'unsafe-inline' 'sha256-x'; \
                 script-src https://cdn.example 'unsafe-inline' 'sha256-x' 'self'; \
                 connect-src https://cdn.example 'self'"
            )
        );
    }

    #[test]
    fn own_directives_are_extended_and_none_dropped() {
        let (after, _) = edit("script-src 'self'; connect-src 'none'");
        assert_eq!(
            after.as_deref(),
            Some("script-src 'self'; connect-src 'self'")
        );
        let (after, _) = edit("script-src-elem https://cdn.example; script-src 'self'");
        assert_eq!(
            after.as_deref(),
            Some("script-src-elem https://cdn.example 'self'; script-src 'self'")
        );
    }

    #[test]
    fn host_sources() {
        let origin = Origin::from_host(&HeaderValue::from_static("app.test:8080")).unwrap();
        let matches = |s: &str| host_source_matches(s, &origin);
        assert!(matches("app.test:8080"));
        assert!(matches("http://app.test:8080"));
        assert!(matches("http://app.test:8080/"));
        assert!(matches("*.test:*"));
        assert!(!matches("app.test"), "default port 80");
        assert!(!matches("https://app.test:8080"));
        assert!(!matches("app.test:8080/static/"));
        assert!(!matches("other.test:8080"));
        let v6 = Origin::from_host(&HeaderValue::from_static("[::1]:3000")).unwrap();
        assert_eq!(v6.host, "[::1]");
        assert_eq!(v6.port, 3000);
        assert_eq!(
            Origin::from_host(&HeaderValue::from_static("example.com")).map(|o| o.port),
            Some(80)
        );
    }

    #[test]
    fn several_policies_share_one_nonce() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("script-src 'strict-dynamic'"),
        );
        headers.append(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("script-src 'nonce-page1', default-src 'nonce-other'"),
        );
        let mut csp = csp();
        csp.edit_headers(&mut headers);
        let values: Vec<&str> = headers
            .get_all(header::CONTENT_SECURITY_POLICY)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(csp.tag(), client::tag_with_nonce("page1"));
        assert_eq!(values[0], "script-src 'strict-dynamic' 'nonce-page1'");
        assert_eq!(
            values[1],
            "script-src 'nonce-page1', default-src 'nonce-other'; \
             script-src 'nonce-other' 'nonce-page1'; connect-src 'self'"
        );
    }

    #[test]
    fn meta_policies_follow_the_header_nonce() {
        let mut csp = csp();
        assert_eq!(csp.edit_meta("script-src 'nonce-m1'"), None);
        assert_eq!(csp.tag(), client::tag_with_nonce("m1"));
        assert_eq!(
            csp.edit_meta("script-src 'nonce-m2'").as_deref(),
            Some("script-src 'nonce-m2' 'nonce-m1'")
        );
    }
}
