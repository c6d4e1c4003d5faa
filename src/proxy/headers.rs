//! Header rewriting for forwarded requests and responses: pure functions, table-tested.
//!
//! Owns what a reverse proxy must change in headers and nothing else: hop-by-hop removal (RFC 9110
//! §7.6.1, including fields named in `Connection`), `X-Forwarded-*` and `Via`, the `Host` sent
//! upstream, and the response headers that point back at the upstream's origin (`Location`,
//! `Content-Location`, `Refresh`, the `Domain` of `Set-Cookie`). It performs no I/O and does not
//! decide *where* a request goes; `proxy::mod` does.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::{Route, Upstream};

const HOP_COUNT: usize = 8;

/// Connection-specific fields that never cross a proxy (RFC 9110 §7.6.1, plus the proxy-auth pair,
/// which is addressed to a proxy, and the non-standard `Proxy-Connection`).
static HOP_BY_HOP: [HeaderName; HOP_COUNT] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const REFRESH: HeaderName = HeaderName::from_static("refresh");

/// Forwarding fields a browser's request may carry that this proxy does not set: removed. Each
/// is one some framework reads for the scheme, host, address or path prefix (Rack reads
/// `X-Forwarded-Ssl: on` and `X-Forwarded-Scheme` as https, Spring `X-Forwarded-Prefix`).
static BROWSERS_SAY_SO: [HeaderName; 9] = [
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("x-forwarded-scheme"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-url-scheme"),
    HeaderName::from_static("front-end-https"),
];

/// The first transfer coding in `headers` other than `chunked` (`gzip, chunked`), or `None`.
/// Hyper frames such a message by its final `chunked` and hands the rest on still encoded; the
/// coding's name goes with `Transfer-Encoding`, a hop-by-hop field, so the next hop would take
/// the encoded bytes for the content. RFC 9112 §6.1: refuse it (501 from a client, 502 from the
/// upstream), as nginx does.
pub fn unknown_transfer_coding(headers: &HeaderMap) -> Option<String> {
    // On every response's path: nothing is allocated unless a coding is refused.
    let mut chunked = 0;
    for coding in headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
    {
        if !coding.eq_ignore_ascii_case(b"chunked") {
            return Some(String::from_utf8_lossy(coding).to_ascii_lowercase());
        }
        chunked += 1;
    }
    // Chunked twice: hyper takes one layer off, and the next hop would read the other as content.
    (chunked > 1).then(|| "chunked, chunked".to_string())
}

/// What stripping found that the caller must carry across the hop itself.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Hop {
    /// `Upgrade: websocket` with `Connection: upgrade`: the value to re-add on the other side.
    /// Other upgrades (notably `h2c`, a smuggling vector) are dropped.
    pub websocket: Option<HeaderValue>,
    /// `TE: trailers` was sent: the upstream may send trailers, so say it again upstream.
    pub te_trailers: bool,
}

/// Remove hop-by-hop headers and every field `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) -> Hop {
    let mut hop = Hop::default();
    // Look before removing: each removal hashes its name, a message carries one or two of the
    // eight (fields named in `Connection` need `Connection`, itself one of them), and this runs
    // twice for every proxied request.
    let present = present(headers, &HOP_BY_HOP);
    if !present.contains(&true) {
        return hop;
    }
    let mut upgrade_requested = false;
    // Usually empty: browsers name only `keep-alive`, which goes anyway.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        // As bytes: one byte outside ASCII in the value must not save the fields it names.
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|token| {
            let token = token.trim_ascii();
            upgrade_requested |= token.eq_ignore_ascii_case(b"upgrade");
            // Compared as text first: parsing a name is the costly part, and the token is
            // nearly always `keep-alive`.
            if HOP_BY_HOP
                .iter()
                .any(|hop| hop.as_str().as_bytes().eq_ignore_ascii_case(token))
            {
                return None;
            }
            HeaderName::from_bytes(token).ok()
        })
        .collect();
    if upgrade_requested
        && let Some(value) = headers.get(header::UPGRADE)
        && value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        })
    {
        // Exactly `websocket`: the rest of a list (`h2c, websocket`) would let the upstream
        // pick the upgrade this proxy refuses, and tunnel it.
        hop.websocket = Some(HeaderValue::from_static("websocket"));
    }
    hop.te_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    let listed = HOP_BY_HOP
        .iter()
        .zip(present)
        .filter_map(|(name, p)| p.then_some(name));
    for name in named.iter().chain(listed) {
        headers.remove(name);
    }
    hop
}

/// Which of `names` `headers` holds, in one pass over its names (each lookup would hash).
fn present<const N: usize>(headers: &HeaderMap, names: &[HeaderName; N]) -> [bool; N] {
    let mut present = [false; N];
    for name in headers.keys() {
        if let Some(i) = names.iter().position(|wanted| wanted == name) {
            present[i] = true;
        }
    }
    present
}

/// Facts about one incoming request needed to rewrite its headers for the upstream.
pub struct Forwarding<'a> {
    /// The browser's address (appended to `X-Forwarded-For` from a local peer, else all of it).
    pub client_ip: IpAddr,
    /// The browser reached the proxy over TLS, through a local front end ([`tls_front`]).
    pub tls_front: bool,
    /// The `Host` the browser used (or the HTTP/2 `:authority`), read before stripping.
    pub host: Option<HeaderValue>,
    /// `host:port` of the upstream, as the `Host` it is sent (built once per upstream).
    pub upstream_host: Option<&'a HeaderValue>,
    /// Send the browser's `Host` instead of the upstream's.
    pub keep_host: bool,
    /// This proxy's `Via` entry.
    pub via: &'a HeaderValue,
}

/// Whether the browser reached the proxy over TLS through a front end on this machine: a
/// tunnel (ngrok, cloudflared, a Codespaces or Gitpod port), or a local nginx or Caddy with a
/// certificate, which say so in `X-Forwarded-Proto: https` ([`claims_https`]). Believed only
/// from a loopback peer, as `X-Forwarded-For` is. Pages then link `https://` (an `http://`
/// stylesheet is mixed content there, and blocked) and the upstream hears `https`, as it would
/// behind that front end alone.
pub fn tls_front(claims_https: bool, peer: IpAddr) -> bool {
    claims_https && peer.to_canonical().is_loopback()
}

/// Whether `X-Forwarded-Proto` says `https`, whoever sent it: its last value, the one the
/// nearest front end (which appends) vouches for.
pub fn claims_https(headers: &HeaderMap) -> bool {
    headers
        .get_all(&X_FORWARDED_PROTO)
        .iter()
        .next_back()
        .is_some_and(|proto| {
            let last = proto
                .as_bytes()
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or(&[]);
            last.trim_ascii().eq_ignore_ascii_case(b"https")
        })
}

/// Whether a tab on `host` (the browser's `Host`) over plain http is no secure context: not
/// `localhost`, `*.localhost` or a loopback address, where browsers keep `Secure` cookies.
/// `https` is what the request claims ([`claims_https`]), from any peer: a TLS front end in
/// another container is no loopback peer, and a claim that lies only leaves cookies as set.
pub fn plain_origin(host: Option<&HeaderValue>, https: bool) -> bool {
    let Some(host) = host.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_matches(['[', ']']).trim_end_matches('.');
    let local = name.eq_ignore_ascii_case("localhost")
        || name
            .get(name.len().saturating_sub(".localhost".len())..)
            .is_some_and(|end| end.eq_ignore_ascii_case(".localhost"))
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback());
    !https && !local
}

/// Turn a browser's request headers into the upstream's. Returns the hop facts.
pub fn prepare_request(headers: &mut HeaderMap, fwd: &Forwarding<'_>) -> Hop {
    let hop = strip_hop_by_hop(headers);
    // The proxy has already answered (or will) `Expect: 100-continue` itself: hyper sends the
    // interim 100 when the body is first polled, so the upstream must not be asked again.
    headers.remove(header::EXPECT);
    if hop.te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }

    let host = match (&fwd.host, fwd.keep_host) {
        (Some(incoming), true) => Some(incoming.clone()),
        _ => fwd.upstream_host.cloned(),
    };
    if let Some(host) = host {
        headers.insert(header::HOST, host);
    }

    // Forwarding fields this proxy does not set itself are the browser's say-so, next to (and
    // contradicting) the ones it does set: a framework that prefers `Forwarded` (Rack 3) would
    // take the scheme and host from the browser. Looked for before removing (see above).
    let mut spoofable = false;
    let mut cookie = false;
    for name in headers.keys() {
        spoofable |= BROWSERS_SAY_SO.contains(name);
        cookie |= name == header::COOKIE;
    }
    if spoofable {
        for name in &BROWSERS_SAY_SO {
            headers.remove(name);
        }
    }
    // An HTTP/2 browser may split its cookies over several fields (RFC 9113, 8.2.3); HTTP/1.1
    // allows one, and a server reading two as a comma-joined list mangles them.
    if cookie && headers.get_all(header::COOKIE).iter().nth(1).is_some() {
        let joined = headers
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect::<Vec<_>>()
            .join(&b"; "[..]);
        if let Ok(value) = HeaderValue::from_bytes(&joined) {
            headers.insert(header::COOKIE, value);
        }
    }

    // Appended to only when the browser's connection comes from this machine (a tunnel or a
    // local proxy in front, which may have set it). A peer elsewhere (with `--listen 0.0.0.0`, a
    // phone or any machine on the network) may have written anything: `X-Forwarded-For:
    // 127.0.0.1` from a LAN address passed for a local request in Rails, whose trusted proxies
    // include private networks, and web-console's allow-list then let it run code.
    let xff =
        if headers.contains_key(&X_FORWARDED_FOR) && fwd.client_ip.to_canonical().is_loopback() {
            let mut xff = headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            if !xff.is_empty() {
                xff.push_str(", ");
            }
            xff.push_str(&fwd.client_ip.to_string());
            HeaderValue::from_str(&xff).ok()
        } else {
            address_value(fwd.client_ip)
        };
    if let Some(value) = xff {
        headers.insert(X_FORWARDED_FOR, value);
    }
    let proto = if fwd.tls_front { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match &fwd.host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
        None => headers.remove(X_FORWARDED_HOST),
    };
    headers.append(header::VIA, fwd.via.clone());

    if let Some(upgrade) = &hop.websocket {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade.clone());
    }
    hop
}

/// `ip` as a header value. Formatting an address cost ~1,300 instructions a request (callgrind),
/// and nearly every request a dev proxy sees comes from one address, so each thread keeps the
/// last one.
fn address_value(ip: IpAddr) -> Option<HeaderValue> {
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| {
        if let Some((cached, value)) = last.as_ref()
            && *cached == ip
        {
            return Some(value.clone());
        }
        let value = HeaderValue::from_str(&ip.to_string()).ok()?;
        *last = Some((ip, value.clone()));
        Some(value)
    })
}

/// Whether a request already passed through this very proxy instance (it was pointed at itself).
pub fn is_loop(headers: &HeaderMap, via: &HeaderValue) -> bool {
    let ours = via.as_bytes();
    headers.get_all(header::VIA).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|entry| entry.trim_ascii() == ours)
    })
}

/// The upstream's origin under each name it may use for itself in absolute URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamNames {
    /// Lower-case `//host:port` forms (plus `//host` on port 80, and every loopback spelling when
    /// the upstream is on loopback, since dev servers mix `localhost` and `127.0.0.1` freely).
    authorities: Vec<String>,
    /// Lower-case host names, for cookie `Domain` attributes.
    hosts: Vec<String>,
    /// An `https://` upstream: its absolute URLs start `https:`.
    tls: bool,
}

impl UpstreamNames {
    pub fn new(upstream: &Upstream) -> Self {
        let (host, port, tls) = (upstream.host.as_str(), upstream.port, upstream.tls);
        let default_port = if tls { 443 } else { 80 };
        let host = host.to_ascii_lowercase();
        let loopback = ["localhost", "127.0.0.1", "[::1]", "0.0.0.0"];
        let hosts: Vec<String> = if loopback.contains(&host.as_str()) {
            loopback.iter().map(|h| h.to_string()).collect()
        } else {
            vec![host]
        };
        let mut authorities = Vec::new();
        for h in &hosts {
            authorities.push(format!("//{h}:{port}"));
            if port == default_port {
                authorities.push(format!("//{h}"));
            }
        }
        // Longest first, so `//host:80` is tried before its prefix `//host`.
        authorities.sort_by_key(|a| std::cmp::Reverse(a.len()));
        let hosts = hosts
            .into_iter()
            .map(|h| h.trim_matches(['[', ']']).to_string())
            .collect();
        UpstreamNames {
            authorities,
            hosts,
            tls,
        }
    }

    /// What follows the authority (path, query, fragment) when `rest` (a URL without its
    /// `http:`) starts with one of the upstream's names; `None` otherwise.
    fn tail<'a>(&self, rest: &'a str) -> Option<&'a str> {
        self.authorities.iter().find_map(|authority| {
            let head = rest.get(..authority.len())?;
            let tail = &rest[authority.len()..];
            (head.eq_ignore_ascii_case(authority)
                && (tail.is_empty() || tail.starts_with(['/', '?', '#'])))
            .then_some(tail)
        })
    }
}

/// Every upstream the proxy forwards to, by the paths it serves it. A URL that points at an
/// upstream directly (a redirect from the API to the front end's own address, in a polyglot
/// stack) is re-pointed at the proxy when the proxy sends that URL's path to that same upstream,
/// and left alone when it would deliver it elsewhere.
#[derive(Debug, Default)]
pub struct Origins {
    /// The routes, longest prefix first as the router tries them, with their upstream's names.
    routes: Vec<(Route, UpstreamNames)>,
    /// The upstream of every other path; `None` when other paths are static files.
    default: Option<UpstreamNames>,
}

impl Origins {
    pub fn new(routes: &[Route], default: Option<&Upstream>) -> Self {
        let names = UpstreamNames::new;
        Origins {
            routes: routes
                .iter()
                .map(|route| (route.clone(), names(&route.upstream)))
                .collect(),
            default: default.map(names),
        }
    }

    /// Every `//host[:port]` form by which a URL may name an upstream (lower case).
    pub fn authorities(&self) -> impl Iterator<Item = &str> {
        let every = self.routes.iter().map(|(_, names)| names);
        every
            .chain(self.default.as_ref())
            .flat_map(|names| names.authorities.iter().map(String::as_str))
    }

    /// The longest route prefix (0 with no routes): the most of a path [`Origins::serving`]
    /// reads.
    pub fn longest_prefix(&self) -> usize {
        let prefixes = self.routes.iter().map(|(route, _)| route.prefix.len());
        prefixes.max().unwrap_or(0)
    }

    /// The upstream the proxy sends `path` to, if any.
    fn serving(&self, path: &str) -> Option<&UpstreamNames> {
        self.routes
            .iter()
            .find(|(route, _)| route.matches(path))
            .map(|(_, names)| names)
            .or(self.default.as_ref())
    }

    /// `value` re-pointed at `proxy_origin` (`http://host:port`) when it is an absolute or
    /// scheme-relative URL on an upstream's origin whose path the proxy sends to that upstream;
    /// `None` when it is anything else.
    pub fn rewrite_url(&self, value: &str, proxy_origin: &str) -> Option<String> {
        let starts = |prefix: &str| {
            value
                .get(..prefix.len())
                .is_some_and(|v| v.eq_ignore_ascii_case(prefix))
        };
        // `Some(tls)` for an absolute URL, `None` for a scheme-relative one (either upstream's).
        let (rest, tls) = if starts("http:") {
            (&value[5..], Some(false))
        } else if starts("https:") {
            (&value[6..], Some(true))
        } else if value.starts_with("//") {
            (value, None)
        } else {
            return None;
        };
        let every = self.routes.iter().map(|(_, names)| names);
        every.chain(self.default.as_ref()).find_map(|names| {
            if tls.is_some_and(|tls| tls != names.tls) {
                return None;
            }
            let tail = names.tail(rest)?;
            let path = tail.split(['?', '#']).next().filter(|p| !p.is_empty());
            (self.serving(path.unwrap_or("/")) == Some(names))
                .then(|| format!("{proxy_origin}{tail}"))
        })
    }

    /// A `Refresh` value (`5; url=http://upstream/x`) with its URL re-pointed, when it needs it.
    /// Read as browsers read it (HTML's declarative refresh): `5;url=…`, `5; URL = '…'`, `5, …`
    /// and a bare `5; …` all name a URL.
    fn rewrite_refresh(&self, value: &str, proxy_origin: &str) -> Option<String> {
        let bytes = value.as_bytes();
        let skip = |mut i: usize, what: fn(u8) -> bool| {
            while bytes.get(i).is_some_and(|&b| what(b)) {
                i += 1;
            }
            i
        };
        let blank = |b: u8| matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ');
        let mut at = skip(0, blank);
        at = skip(at, |b| b.is_ascii_digit() || b == b'.');
        at = skip(at, blank);
        if matches!(bytes.get(at), Some(b';' | b',')) {
            at += 1;
        }
        at = skip(at, blank);
        if bytes
            .get(at..at + 3)
            .is_some_and(|u| u.eq_ignore_ascii_case(b"url"))
        {
            let equals = skip(at + 3, blank);
            if bytes.get(equals) == Some(&b'=') {
                at = skip(equals + 1, blank);
            }
        }
        let quote = bytes.get(at).copied().filter(|&b| b == b'\'' || b == b'"');
        if quote.is_some() {
            at += 1;
        }
        let end = match quote {
            Some(q) => bytes[at..]
                .iter()
                .position(|&b| b == q)
                .map_or(bytes.len(), |n| at + n),
            None => value
                .trim_end_matches(|c: char| c.is_ascii_whitespace())
                .len(),
        };
        let rewritten = self.rewrite_url(value.get(at..end)?, proxy_origin)?;
        Some(format!("{}{rewritten}{}", &value[..at], &value[end..]))
    }

    /// A `Link` value (`<http://upstream/app.css>; rel=preload, <…>; rel=next`) with the URLs
    /// in its angle brackets re-pointed, when any needs it. Brackets inside a quoted parameter
    /// (`title="<b>"`) are not a URL.
    fn rewrite_link(&self, value: &str, proxy_origin: &str) -> Option<String> {
        let mut out = String::new();
        let mut copied = 0;
        let mut quoted = false;
        let mut at = 0;
        let bytes = value.as_bytes();
        while at < bytes.len() {
            match bytes[at] {
                b'\\' if quoted => at += 1,
                b'"' => quoted = !quoted,
                b'<' if !quoted => {
                    let Some(len) = value[at + 1..].find('>') else {
                        break;
                    };
                    let url = &value[at + 1..at + 1 + len];
                    if let Some(url) = self.rewrite_url(url.trim(), proxy_origin) {
                        out.push_str(&value[copied..=at]);
                        out.push_str(&url);
                        copied = at + 1 + len;
                    }
                    at += len;
                }
                _ => {}
            }
            at += 1;
        }
        (copied > 0).then(|| out + &value[copied..])
    }
}

impl UpstreamNames {
    /// A `Set-Cookie` value without a `Domain` attribute naming the upstream, so the browser keeps
    /// the cookie for the proxy's host; `None` when nothing needs to change. For a tab on a
    /// plain-http origin that is no secure context (`plain`: a phone on the LAN address), also
    /// without `Secure`, and `SameSite=None` (which needs it) as `Lax`: browsers drop a `Secure`
    /// cookie set over such an origin, and the app's session with it (browser-sync drops the
    /// attribute too).
    fn rewrite_cookie(&self, value: &str, plain: bool) -> Option<String> {
        let mut changed = false;
        let kept: Vec<&str> = value
            .split(';')
            .enumerate()
            .filter_map(|(i, attr)| {
                if i == 0 {
                    return Some(attr);
                }
                let (key, v) = attr.split_once('=').unwrap_or((attr, ""));
                let (key, v) = (key.trim(), v.trim());
                let is = |name: &str| key.eq_ignore_ascii_case(name);
                let keep = if is("domain") {
                    !self
                        .hosts
                        .iter()
                        .any(|h| v.trim_start_matches('.').eq_ignore_ascii_case(h))
                } else if plain && is("secure") {
                    static SAID: AtomicBool = AtomicBool::new(false);
                    if !SAID.swap(true, Ordering::Relaxed) {
                        tracing::info!(
                            "cookies the upstream sets Secure reach tabs on plain http (a LAN \
                             address) without it: browsers keep them there otherwise only on \
                             localhost (__Secure- and __Host- cookies cannot be kept)"
                        );
                    }
                    false
                } else if plain && is("samesite") && v.eq_ignore_ascii_case("none") {
                    changed = true;
                    return Some(" SameSite=Lax");
                } else {
                    true
                };
                changed |= !keep;
                keep.then_some(attr)
            })
            .collect();
        changed.then(|| kept.join(";"))
    }
}

/// Turn the upstream's response headers into the browser's. `proxy_origin` is computed only when a
/// header actually points at the upstream (rare), so the common path allocates nothing.
pub fn prepare_response(
    headers: &mut HeaderMap,
    names: &UpstreamNames,
    origins: &Origins,
    proxy_origin: impl Fn() -> String,
    upgraded: Option<&HeaderValue>,
    plain: impl Fn() -> bool,
    htmx: bool,
) {
    // Which of the fields below are there, in one look at the names: most responses carry none
    // of them, and each lookup hashes its name (six a response, ~700 instructions of the ~52k a
    // proxied script costs, callgrind).
    let [
        transfer_encoding,
        location,
        content_location,
        refresh,
        link,
        set_cookie,
    ] = present(headers, &REWRITTEN);
    // A response framed by `Transfer-Encoding` that also carries `Content-Length` (a buggy dev
    // server) was read as chunked; passed on, the length would cut the body short (RFC 9112,
    // 6.3: a proxy must remove it). The body goes out in its own framing.
    if transfer_encoding {
        headers.remove(header::CONTENT_LENGTH);
    }
    strip_hop_by_hop(headers);
    if let Some(upgrade) = upgraded {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade.clone());
    }
    let urls = [
        (header::LOCATION, location),
        (header::CONTENT_LOCATION, content_location),
        (REFRESH, refresh),
    ];
    for (name, _) in urls.into_iter().filter(|(_, there)| *there) {
        let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let rewritten = if name == REFRESH {
            origins.rewrite_refresh(value, &proxy_origin())
        } else {
            origins.rewrite_url(value, &proxy_origin())
        };
        if let Some(value) = rewritten.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    }
    // Preload hints (`Link: <http://localhost:8000/app.css>; rel=preload`, Rails and Laravel
    // send them) fetched the upstream's copy, which the page's re-pointed link never used.
    if link {
        rewrite_each(headers, header::LINK, |link| {
            origins.rewrite_link(link, &proxy_origin())
        });
    }
    if set_cookie {
        let plain = plain();
        rewrite_each(headers, header::SET_COOKIE, |cookie| {
            names.rewrite_cookie(cookie, plain)
        });
    }
    // htmx's own `Location`s: an upstream URL in them took the tab off the proxy (`HX-Redirect`)
    // or failed htmx's same-origin check (`HX-Location`, `HX-Push-Url`: a `SecurityError`).
    // Read only on htmx's requests, and looked for only there.
    if htmx {
        for name in &HTMX_URLS {
            let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            let rewritten = if value.trim_start().starts_with('{') {
                htmx_location(value, |url| origins.rewrite_url(url, &proxy_origin()))
            } else {
                origins.rewrite_url(value, &proxy_origin())
            };
            if let Some(value) = rewritten.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(name, value);
            }
        }
    }
}

/// The response fields [`prepare_response`] acts on when they are there, in the order its
/// `let [transfer_encoding, location, …]` names them (change both together).
static REWRITTEN: [HeaderName; 6] = [
    header::TRANSFER_ENCODING,
    header::LOCATION,
    header::CONTENT_LOCATION,
    REFRESH,
    header::LINK,
    header::SET_COOKIE,
];

/// The response headers in which htmx takes a URL to go to or to show.
static HTMX_URLS: [HeaderName; 4] = [
    HeaderName::from_static("hx-redirect"),
    HeaderName::from_static("hx-location"),
    HeaderName::from_static("hx-push-url"),
    HeaderName::from_static("hx-replace-url"),
];

/// An `HX-Location` given as JSON (`{"path": "http://…/x", "target": "#main"}`) with its `path`
/// re-pointed, when it needs it.
fn htmx_location(value: &str, rewrite: impl Fn(&str) -> Option<String>) -> Option<String> {
    let mut location: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(value).ok()?;
    let path = location.get("path")?.as_str()?;
    let path = rewrite(path)?;
    location.insert("path".into(), serde_json::Value::String(path));
    serde_json::to_string(&location).ok()
}

/// Every `name` field's value through `rewrite` (`None`: kept as it is), in their order.
fn rewrite_each(
    headers: &mut HeaderMap,
    name: HeaderName,
    rewrite: impl Fn(&str) -> Option<String>,
) {
    let values: Vec<HeaderValue> = headers
        .get_all(&name)
        .iter()
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(&rewrite)
                .and_then(|s| HeaderValue::from_str(&s).ok())
                .unwrap_or_else(|| v.clone())
        })
        .collect();
    headers.remove(&name);
    for value in values {
        headers.append(&name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_codings_besides_chunked_are_named() {
        let coding = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(
                    header::TRANSFER_ENCODING,
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            unknown_transfer_coding(&headers)
        };
        assert_eq!(coding(&[]), None);
        assert_eq!(coding(&["chunked"]), None);
        assert_eq!(coding(&[" Chunked "]), None);
        assert_eq!(coding(&["gzip, chunked"]), Some("gzip".into()));
        assert_eq!(coding(&["chunked", "GZIP"]), Some("gzip".into()));
        assert_eq!(coding(&["identity,chunked"]), Some("identity".into()));
        assert_eq!(
            coding(&["chunked, chunked"]),
            Some("chunked, chunked".into())
        );
        assert_eq!(
            coding(&["chunked", "chunked"]),
            Some("chunked, chunked".into())
        );
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    fn via() -> HeaderValue {
        HeaderValue::from_static("1.1 hmr-proxy-test")
    }

    fn forward(pairs: &[(&str, &str)], keep_host: bool) -> (HeaderMap, Hop) {
        forward_from("127.0.0.1", pairs, keep_host)
    }

    fn forward_from(client: &str, pairs: &[(&str, &str)], keep_host: bool) -> (HeaderMap, Hop) {
        let mut h = map(pairs);
        let via = via();
        let client_ip = client.parse().unwrap_or_else(|e| panic!("{e}"));
        let fwd = Forwarding {
            client_ip,
            tls_front: tls_front(claims_https(&h), client_ip),
            host: h.get("host").cloned(),
            upstream_host: Some(&HeaderValue::from_static("localhost:8000")),
            keep_host,
            via: &via,
        };
        let hop = prepare_request(&mut h, &fwd);
        (h, hop)
    }

    #[test]
    fn the_forwarded_address_is_each_requests_own() {
        for ip in ["127.0.0.1", "::1", "127.0.0.1", "192.168.1.20"] {
            let ip: IpAddr = ip.parse().unwrap_or_else(|e| panic!("{e}"));
            let value = address_value(ip).unwrap_or_else(|| panic!("{ip}"));
            assert_eq!(value, ip.to_string().as_str());
        }
    }

    #[test]
    fn hop_by_hop_and_connection_named_fields_go() {
        let (h, hop) = forward(
            &[
                ("host", "127.0.0.1:3000"),
                ("connection", "keep-alive, X-Secret, x-forwarded-for"),
                ("keep-alive", "timeout=5"),
                ("x-secret", "1"),
                ("proxy-authorization", "Basic x"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "h2c"),
                ("te", "gzip"),
                ("x-forwarded-for", "10.0.0.1"),
                ("expect", "100-continue"),
                ("accept", "text/html"),
            ],
            false,
        );
        for gone in [
            "connection",
            "keep-alive",
            "x-secret",
            "proxy-authorization",
            "transfer-encoding",
            "upgrade",
            "te",
            "expect",
        ] {
            assert!(!h.contains_key(gone), "{gone} survived");
        }
        assert_eq!(hop, Hop::default());
        assert_eq!(h["accept"], "text/html");
        // Named in Connection, yet the proxy's own forwarding header is set after stripping.
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["host"], "localhost:8000");
        assert_eq!(h["x-forwarded-host"], "127.0.0.1:3000");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["via"], "1.1 hmr-proxy-test");
    }

    #[test]
    fn a_byte_outside_ascii_in_connection_spares_none_of_the_fields_it_names() {
        let mut headers = map(&[("x-d", "1"), ("x-e", "2")]);
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_bytes(b"x-c\xe9, x-d,x-e").expect("a visible byte"),
        );
        strip_hop_by_hop(&mut headers);
        assert!(headers.is_empty(), "{headers:?}");
    }

    #[test]
    fn forwarded_for_appends_and_host_can_be_kept() {
        let (h, _) = forward(
            &[
                ("host", "localhost:3000"),
                ("x-forwarded-for", "10.0.0.1"),
                ("x-forwarded-for", "10.0.0.2"),
            ],
            true,
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 127.0.0.1");
        assert_eq!(h["host"], "localhost:3000");
    }

    #[test]
    fn forwarded_for_from_a_peer_elsewhere_is_its_address_alone() {
        let spoofed = [("x-forwarded-for", "127.0.0.1")];
        for client in ["192.168.1.5", "::ffff:192.168.1.5", "fd00::5"] {
            let (h, _) = forward_from(client, &spoofed, false);
            let got: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
            assert_eq!(got, [client], "{client}");
        }
        let (h, _) = forward_from("::ffff:127.0.0.1", &spoofed, false);
        assert_eq!(h["x-forwarded-for"], "127.0.0.1, ::ffff:127.0.0.1");
    }

    #[test]
    fn websocket_upgrade_survives_and_te_trailers_is_kept() {
        let (h, hop) = forward(
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("te", "trailers"),
            ],
            false,
        );
        assert_eq!(hop.websocket, Some(HeaderValue::from_static("websocket")));
        assert!(hop.te_trailers);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["te"], "trailers");
        // Among others, only the WebSocket upgrade goes on.
        let (h, hop) = forward(
            &[("connection", "Upgrade"), ("upgrade", "h2c, WebSocket")],
            false,
        );
        assert_eq!(hop.websocket, Some(HeaderValue::from_static("websocket")));
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn the_browsers_own_forwarding_fields_go_and_split_cookies_are_joined() {
        let (h, _) = forward(
            &[
                ("host", "localhost:3000"),
                ("forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
                ("x-forwarded-port", "443"),
                ("x-real-ip", "6.6.6.6"),
                ("x-forwarded-ssl", "on"),
                ("x-forwarded-scheme", "https"),
                ("x-forwarded-prefix", "/evil"),
                ("x-forwarded-server", "evil.example"),
                ("x-url-scheme", "https"),
                ("front-end-https", "on"),
                ("cookie", "a=1"),
                ("cookie", "b=2; c=3"),
            ],
            false,
        );
        for gone in [
            "forwarded",
            "x-forwarded-port",
            "x-real-ip",
            "x-forwarded-ssl",
            "x-forwarded-scheme",
            "x-forwarded-prefix",
            "x-forwarded-server",
            "x-url-scheme",
            "front-end-https",
        ] {
            assert!(!h.contains_key(gone), "{gone} survived");
        }
        let cookies: Vec<_> = h.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; b=2; c=3"]);
        let (h, _) = forward(&[("cookie", "a=1; b=2")], false);
        assert_eq!(h["cookie"], "a=1; b=2");
    }

    /// `X-Forwarded-Proto: https` from a front end on this machine is kept (and makes the
    /// proxy's URLs `https://`); from a peer elsewhere, or anything but https, it is `http`.
    #[test]
    fn https_is_believed_only_from_a_local_front_end() {
        for (client, proto, tls) in [
            ("127.0.0.1", "https", true),
            ("::1", "HTTPS", true),
            ("::ffff:127.0.0.1", "http, https", true),
            ("127.0.0.1", "https, http", false),
            ("127.0.0.1", "http", false),
            ("127.0.0.1", "wss", false),
            ("192.168.1.20", "https", false),
        ] {
            let (h, _) = forward_from(client, &[("x-forwarded-proto", proto)], false);
            let want = if tls { "https" } else { "http" };
            assert_eq!(h["x-forwarded-proto"], want, "{client} {proto}");
        }
        let (h, _) = forward(&[], false);
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    /// Origins where browsers keep `Secure` cookies over plain http, and ones where they do not.
    #[test]
    fn plain_origins_are_those_no_browser_counts_as_secure() {
        for (host, plain) in [
            ("localhost:3000", false),
            ("LOCALHOST", false),
            ("app.localhost:3000", false),
            ("127.0.0.1:3000", false),
            ("127.1.2.3", false),
            ("[::1]:3000", false),
            ("192.168.1.20:3000", true),
            ("[fe80::1]:3000", true),
            ("app.test:3000", true),
            ("notlocalhost:3000", true),
        ] {
            let host = HeaderValue::from_static(host);
            assert_eq!(plain_origin(Some(&host), false), plain, "{host:?}");
            assert!(!plain_origin(Some(&host), true), "{host:?} behind TLS");
        }
    }

    #[test]
    fn loop_detection() {
        let h = map(&[("via", "1.0 nginx, 1.1 hmr-proxy-test")]);
        assert!(is_loop(&h, &via()));
        let h = map(&[("via", "1.1 hmr-proxy-other")]);
        assert!(!is_loop(&h, &via()));
    }

    fn upstream(url: &str) -> Upstream {
        let authority: http::uri::Authority = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
        Upstream {
            tls: false,
            host: authority.host().to_string(),
            port: authority.port_u16().unwrap_or(80),
            authority,
        }
    }

    /// One upstream for every path.
    fn only(url: &str) -> Origins {
        Origins::new(&[], Some(&upstream(url)))
    }

    #[test]
    fn an_https_upstream_is_repointed_from_its_https_urls() {
        let tls = |url: &str| {
            let mut up = upstream(url);
            up.tls = true;
            up.port = up.authority.port_u16().unwrap_or(443);
            Origins::new(&[], Some(&up))
        };
        let to = "http://127.0.0.1:3000";
        let names = tls("localhost:5001");
        for (from, want) in [
            (
                "https://localhost:5001/a?b",
                Some("http://127.0.0.1:3000/a?b"),
            ),
            ("HTTPS://127.0.0.1:5001", Some("http://127.0.0.1:3000")),
            ("//localhost:5001/x", Some("http://127.0.0.1:3000/x")),
            // Another server, the same port under the other scheme.
            ("http://localhost:5001/a", None),
            ("https://localhost:5002/a", None),
        ] {
            assert_eq!(names.rewrite_url(from, to).as_deref(), want, "{from}");
        }
        let names = tls("app");
        assert_eq!(
            names.rewrite_url("https://app/x", to).as_deref(),
            Some("http://127.0.0.1:3000/x")
        );
        assert_eq!(names.rewrite_url("http://app/x", to), None);
    }

    #[test]
    fn urls_on_the_upstream_origin_are_repointed() {
        let names = only("localhost:8000");
        let to = "http://127.0.0.1:3000";
        for (from, want) in [
            (
                "http://localhost:8000/a?b#c",
                Some("http://127.0.0.1:3000/a?b#c"),
            ),
            ("HTTP://LOCALHOST:8000", Some("http://127.0.0.1:3000")),
            ("http://127.0.0.1:8000/x", Some("http://127.0.0.1:3000/x")),
            ("http://[::1]:8000/x", Some("http://127.0.0.1:3000/x")),
            ("//localhost:8000/x", Some("http://127.0.0.1:3000/x")),
            ("http://localhost:80001/x", None),
            ("http://localhost:8000.evil/x", None),
            ("https://accounts.example.com/o/oauth", None),
            ("/relative", None),
            ("http://localhost:9000/", None),
        ] {
            assert_eq!(names.rewrite_url(from, to).as_deref(), want, "{from}");
        }
        let names = only("app");
        assert_eq!(
            names.rewrite_url("http://app/x", to).as_deref(),
            Some("http://127.0.0.1:3000/x")
        );
        assert_eq!(
            names.rewrite_url("http://app:80/x", to).as_deref(),
            Some("http://127.0.0.1:3000/x")
        );
    }

    /// In a polyglot stack a URL on another upstream's origin is re-pointed when the proxy sends
    /// its path to that upstream, and not when it would deliver it elsewhere.
    #[test]
    fn urls_on_any_upstream_are_repointed_where_the_proxy_routes_them_back() {
        let route = |prefix: &str, url: &str| Route {
            prefix: prefix.into(),
            upstream: upstream(url),
        };
        let origins = Origins::new(
            &[
                route("/api/v2", "127.0.0.1:8081"),
                route("/api", "127.0.0.1:8080"),
            ],
            Some(&upstream("localhost:5173")),
        );
        let to = "http://localhost:3000";
        for (from, want) in [
            // The API's login redirects to the front end, and the front end to the API.
            (
                "http://127.0.0.1:5173/dashboard",
                Some("http://localhost:3000/dashboard"),
            ),
            (
                "http://localhost:8080/api/hello?x=1",
                Some("http://localhost:3000/api/hello?x=1"),
            ),
            (
                "http://localhost:8080/api",
                Some("http://localhost:3000/api"),
            ),
            (
                "http://localhost:8081/api/v2/x",
                Some("http://localhost:3000/api/v2/x"),
            ),
            // Paths the proxy sends to another upstream than the one named.
            ("http://localhost:8080/login", None),
            ("http://localhost:8080/api/v2/x", None),
            ("http://localhost:5173/api/x", None),
            ("http://localhost:8080", None),
        ] {
            assert_eq!(origins.rewrite_url(from, to).as_deref(), want, "{from}");
        }
        // Static files for every other path: only the routes' own paths are re-pointed.
        let origins = Origins::new(&[route("/api", "127.0.0.1:8080")], None);
        assert_eq!(
            origins
                .rewrite_url("http://127.0.0.1:8080/api/x", to)
                .as_deref(),
            Some("http://localhost:3000/api/x")
        );
        assert_eq!(origins.rewrite_url("http://127.0.0.1:8080/x", to), None);
    }

    #[test]
    fn response_headers() {
        let names = UpstreamNames::new(&upstream("app:8080"));
        let origins = only("app:8080");
        let mut h = map(&[
            ("location", "http://app:8080/login"),
            ("content-location", "http://app:8080/doc"),
            ("refresh", "3; url='http://app:8080/next'"),
            ("set-cookie", "sid=1; Path=/; Domain=app; HttpOnly"),
            ("set-cookie", "other=2; Domain=example.com"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            (
                "link",
                "<http://app:8080/app.css>; rel=preload; as=style, </x.js>; rel=modulepreload",
            ),
            (
                "link",
                "<https://cdn.example/f.woff2>; rel=preload; title=\"<http://app:8080/>\"",
            ),
        ]);
        prepare_response(
            &mut h,
            &names,
            &origins,
            || "http://localhost:3000".into(),
            None,
            || false,
            false,
        );
        assert_eq!(h["location"], "http://localhost:3000/login");
        assert_eq!(h["content-location"], "http://localhost:3000/doc");
        assert_eq!(h["refresh"], "3; url='http://localhost:3000/next'");
        let cookies: Vec<_> = h.get_all("set-cookie").iter().collect();
        assert_eq!(
            cookies,
            ["sid=1; Path=/; HttpOnly", "other=2; Domain=example.com"]
        );
        assert!(!h.contains_key("connection"));
        assert!(!h.contains_key("keep-alive"));
        let links: Vec<_> = h.get_all("link").iter().collect();
        assert_eq!(
            links,
            [
                "<http://localhost:3000/app.css>; rel=preload; as=style, </x.js>; rel=modulepreload",
                "<https://cdn.example/f.woff2>; rel=preload; title=\"<http://app:8080/>\""
            ]
        );

        let origin = "http://localhost:3000";
        for (refresh, want) in [
            (
                "0; url=http://app:8080/a",
                Some("0; url=http://localhost:3000/a"),
            ),
            (
                "0; URL = http://app:8080/b",
                Some("0; URL = http://localhost:3000/b"),
            ),
            ("0;http://app:8080/c", Some("0;http://localhost:3000/c")),
            (
                "0,url=\"http://app:8080/d\" ",
                Some("0,url=\"http://localhost:3000/d\" "),
            ),
            (
                "1.5; url=//app:8080/e",
                Some("1.5; url=http://localhost:3000/e"),
            ),
            ("0; url=/relative", None),
            ("0; url=http://elsewhere/x", None),
            ("5", None),
        ] {
            assert_eq!(
                origins.rewrite_refresh(refresh, origin).as_deref(),
                want,
                "{refresh:?}"
            );
        }

        let respond = |pairs: &[(&'static str, &'static str)], htmx: bool| {
            let mut h = map(pairs);
            prepare_response(
                &mut h,
                &names,
                &origins,
                || origin.into(),
                None,
                || false,
                htmx,
            );
            h
        };
        // A chunked response that also names a length is passed on without the length.
        let h = respond(
            &[("transfer-encoding", "chunked"), ("content-length", "3")],
            false,
        );
        assert!(!h.contains_key("content-length"));
        assert!(!h.contains_key("transfer-encoding"));
        let h = respond(&[("content-length", "3")], false);
        assert_eq!(h["content-length"], "3");

        // htmx's headers, on htmx's requests.
        let htmx = [
            ("hx-redirect", "http://app:8080/done"),
            ("hx-push-url", "http://app:8080/list?page=2"),
            ("hx-replace-url", "false"),
            (
                "hx-location",
                r##"{"path":"http://app:8080/x","target":"#main"}"##,
            ),
        ];
        let h = respond(&htmx, true);
        assert_eq!(h["hx-redirect"], "http://localhost:3000/done");
        assert_eq!(h["hx-push-url"], "http://localhost:3000/list?page=2");
        assert_eq!(h["hx-replace-url"], "false");
        let location: serde_json::Value =
            serde_json::from_slice(h["hx-location"].as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            location,
            serde_json::json!({"path": "http://localhost:3000/x", "target": "#main"})
        );
        let h = respond(&[("hx-location", "http://app:8080/y")], true);
        assert_eq!(h["hx-location"], "http://localhost:3000/y");
        // Elsewhere, and on a request htmx did not send, left alone.
        let h = respond(&[("hx-redirect", "http://elsewhere/z")], true);
        assert_eq!(h["hx-redirect"], "http://elsewhere/z");
        let h = respond(&htmx, false);
        assert_eq!(h["hx-redirect"], "http://app:8080/done");
    }
}
