//! Request-target policy: what the proxy refuses before routing anything.
//!
//! Owns the checks that keep the proxy from being used as a forward proxy: `CONNECT` is refused,
//! an HTTP/1 absolute-form target (`GET http://elsewhere/ HTTP/1.1`) is accepted only when it names
//! this proxy itself, and targets that are not paths (`OPTIONS *`, authority-form) are refused. The
//! upstream URI is always rebuilt from configuration (see `proxy`), so these checks are about
//! answering honestly, not the only line of defence. It also owns who may use the proxy's own
//! endpoints: the change stream refuses other sites' pages, the control endpoint refuses
//! non-loopback callers and cross-site browser requests. And it owns the `Host` check that stops
//! DNS rebinding: only loopback names, IP literals and the names given with `--allowed-host`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};

use crate::body::{self, Body};
use crate::config::AllowedHosts;

/// The refusal to send, or `None` when the request may be routed.
pub fn refusal<B>(req: &Request<B>, local: SocketAddr) -> Option<Response<Body>> {
    if req.method() == Method::CONNECT {
        let mut res = body::plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "hmr-proxy is a reverse proxy for one dev server; it does not tunnel (CONNECT)",
        );
        res.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        return Some(res);
    }
    if let Some(coding) = crate::proxy::headers::unknown_transfer_coding(req.headers()) {
        let mut res = body::plain(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "hmr-proxy: transfer coding `{coding}` is not supported; send the body chunked \
                 or with a Content-Length (a compressed body says so in Content-Encoding)"
            ),
        );
        // Where its body ends is what cannot be known: the connection ends with the answer.
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Some(res);
    }
    let uri = req.uri();
    if !uri.path().starts_with('/') {
        return Some(body::plain(
            StatusCode::BAD_REQUEST,
            "hmr-proxy: the request target must be a path",
        ));
    }
    // HTTP/2 always carries an authority (`:authority`); in HTTP/1 it means absolute-form, which
    // only forward-proxy clients send.
    if req.version() < Version::HTTP_2
        && let Some(authority) = uri.authority()
        && !names_this_proxy(authority, local)
    {
        return Some(body::plain(
            StatusCode::BAD_REQUEST,
            format!(
                "hmr-proxy is not a forward proxy: it does not forward to {}",
                authority.host()
            ),
        ));
    }
    None
}

/// A refusal unless the request's `Host` (or HTTP/2 authority) is one the proxy answers to:
/// `localhost`, `*.localhost`, an IP literal, or an allowed name. Malformed or missing (in
/// HTTP/1.1) host → 400; an unknown name → 403 naming the flag that allows it.
pub fn host_refusal<B>(req: &Request<B>, allowed: &AllowedHosts) -> Option<Response<Body>> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    // Two `Host` fields (RFC 9112, 3.2: answer 400): the proxy would check one and the upstream
    // might use the other.
    if hosts.next().is_some() {
        return Some(body::plain(
            StatusCode::BAD_REQUEST,
            "hmr-proxy: the request has more than one Host header",
        ));
    }
    // Both given (HTTP/2's `:authority` beside a `Host` field, or an HTTP/1 absolute-form target):
    // the check would read one and the upstream or the page's links might use the other
    // (RFC 9113, 8.3.1, lets a server treat the pair as malformed).
    if let (Some(host), Some(authority)) = (first, req.uri().authority())
        && !host
            .as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
    {
        return Some(body::plain(
            StatusCode::BAD_REQUEST,
            "hmr-proxy: the Host header and the request target name different hosts",
        ));
    }
    let value = match first {
        Some(value) => value.as_bytes(),
        None => match req.uri().authority() {
            Some(authority) => authority.as_str().as_bytes(),
            None if req.version() == Version::HTTP_10 => return None,
            None => {
                return Some(body::plain(
                    StatusCode::BAD_REQUEST,
                    "hmr-proxy: the request has no Host header",
                ));
            }
        },
    };
    let Some(host) = host_name(value) else {
        return Some(body::plain(
            StatusCode::BAD_REQUEST,
            "hmr-proxy: the Host header is malformed",
        ));
    };
    if host_allowed(&host, allowed) {
        return None;
    }
    if first_refusal_of(&host) {
        tracing::warn!(
            "refused a request for host `{host}`: allow it with --allowed-host {host} (or \
             HMR_PROXY_ALLOWED_HOST={host}, or allowed_hosts in the config file; further \
             requests for it are logged with -v)"
        );
    } else {
        tracing::debug!("refused a request for host `{host}`");
    }
    Some(body::plain(
        StatusCode::FORBIDDEN,
        format!(
            "hmr-proxy refuses requests for host `{host}` (protection against DNS rebinding).\n\
             If you reach the proxy by this name, start it with --allowed-host {host} \
             (or HMR_PROXY_ALLOWED_HOST={host}); --allowed-host all turns the check off."
        ),
    ))
}

/// The host part of a `Host` value, lower-cased, without port or trailing dot; `None` when it
/// is not a plausible host (userinfo, spaces, empty, bad port).
fn host_name(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if text.is_empty() || text.contains(['@', '/', ' ', '\\', '?', '#']) {
        return None;
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        // Nothing but a port may follow the address: `[::1]evil.example` is no host.
        if !after.is_empty() && !after.starts_with(':') {
            return None;
        }
        (&text[..inside.len() + 2], after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return None;
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    // A name holds letters, digits, `-`, `.`, `_` (and `~`, which URLs allow); browsers send any
    // other as punycode or not at all. The name is written into the pages and headers the proxy
    // re-points, so a `"` or `<` in it would be markup there.
    let name_ok = host.starts_with('[')
        || host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    (!host.is_empty() && name_ok).then_some(host)
}

/// Whether `host` is refused for the first time: a page that keeps asking (a rebinding attempt
/// left open in a tab, an unlisted LAN name loading its assets) is one warning, not one a
/// request. Bounded: past `WARNED_AT_MOST` names every refusal warns again.
fn first_refusal_of(host: &str) -> bool {
    const WARNED_AT_MOST: usize = 256;
    static WARNED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let Ok(mut warned) = WARNED.lock() else {
        return true;
    };
    if warned.iter().any(|h| h == host) {
        return false;
    }
    if warned.len() < WARNED_AT_MOST {
        warned.push(host.to_owned());
    }
    true
}

fn host_allowed(host: &str, allowed: &AllowedHosts) -> bool {
    // Rebinding needs a name: an address typed into the browser cannot be rebound.
    if host.parse::<std::net::Ipv4Addr>().is_ok()
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
    {
        return true;
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    match allowed {
        AllowedHosts::All => true,
        AllowedHosts::Names(names) => names.iter().any(|name| match name.strip_prefix('.') {
            Some(domain) => host == domain || host.ends_with(name.as_str()),
            None => host == name,
        }),
    }
}

/// A refusal when a browser request comes from a page on another origin: `Sec-Fetch-Site` when
/// the browser sends it, else `Origin` compared with `Host`. Requests from tools (no `Origin`, no
/// `Sec-Fetch-Site`) pass.
pub fn cross_site_refusal<B>(req: &Request<B>) -> Option<Response<Body>> {
    let headers = req.headers();
    let refuse = || {
        Some(body::plain(
            StatusCode::FORBIDDEN,
            "hmr-proxy: refused a request from another site",
        ))
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => None,
            _ => refuse(),
        };
    }
    let origin = headers.get(header::ORIGIN)?;
    let host = headers
        .get(header::HOST)
        .map(HeaderValue::as_bytes)
        .or_else(|| req.uri().authority().map(|a| a.as_str().as_bytes()));
    let origin_authority = origin
        .as_bytes()
        .strip_prefix(b"http://")
        .or_else(|| origin.as_bytes().strip_prefix(b"https://"));
    match (origin_authority, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => None,
        _ => refuse(),
    }
}

/// A refusal for the control endpoint: loopback callers only, and no cross-site browser request.
/// A loopback peer that says it forwards for someone elsewhere (a tunnel's agent, cloudflared or
/// ngrok, or a reverse proxy on this machine, naming its visitor in `X-Forwarded-For`) is that
/// someone: through a tunnel the whole internet is a loopback peer.
///
/// `local` is the address the proxy listens on: listening on one LAN address only, there is no
/// loopback way in, and a caller from that same address is this machine (a build tool beside it).
pub fn control_refusal<B>(
    req: &Request<B>,
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<Response<Body>> {
    let this_machine = !local.ip().is_unspecified() && peer.ip() == local.ip();
    if !is_loopback(peer.ip()) && !this_machine {
        return Some(body::plain(
            StatusCode::FORBIDDEN,
            "hmr-proxy: the control endpoint answers loopback callers only (127.0.0.1, ::1)",
        ));
    }
    if let Some(field) = forwards_for_elsewhere(req.headers()) {
        return Some(body::plain(
            StatusCode::FORBIDDEN,
            format!(
                "hmr-proxy: the control endpoint answers loopback callers only, and this request \
                 was forwarded for a caller elsewhere (its {field} names one)"
            ),
        ));
    }
    cross_site_refusal(req)
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// Whether a forwarding header names a client that is not a loopback address (or names one in a
/// form that cannot be read as an address: `unknown`, an obfuscated `_node`). The fields tunnels
/// and reverse proxies set for the visitor: `X-Forwarded-For`, `Forwarded`'s `for=`,
/// `X-Real-IP`, and Cloudflare's and Akamai's own. Returns the field, as the refusal names it.
fn forwards_for_elsewhere(headers: &http::HeaderMap) -> Option<&'static str> {
    const NAMING_THE_CLIENT: [(&str, &str); 4] = [
        ("x-forwarded-for", "X-Forwarded-For"),
        ("x-real-ip", "X-Real-IP"),
        ("cf-connecting-ip", "CF-Connecting-IP"),
        ("true-client-ip", "True-Client-IP"),
    ];
    let elsewhere = |value: &str| {
        let value = value.trim().trim_matches('"');
        let ip = value
            .parse::<IpAddr>()
            .ok()
            .or_else(|| value.parse::<SocketAddr>().ok().map(|a| a.ip()))
            .or_else(|| {
                let inside = value.strip_prefix('[')?.split(']').next()?;
                inside.parse::<IpAddr>().ok()
            });
        !ip.is_some_and(is_loopback)
    };
    let listed = NAMING_THE_CLIENT.iter().find(|(name, _)| {
        headers
            .get_all(*name)
            .iter()
            .any(|v| v.to_str().map_or(true, |v| v.split(',').any(elsewhere)))
    });
    if let Some((_, field)) = listed {
        return Some(field);
    }
    let forwarded = headers.get_all(header::FORWARDED).iter().any(|v| {
        v.to_str().map_or(true, |v| {
            v.split([',', ';']).any(|pair| {
                pair.trim()
                    .split_once('=')
                    .is_some_and(|(k, val)| k.eq_ignore_ascii_case("for") && elsewhere(val))
            })
        })
    });
    forwarded.then_some("Forwarded")
}

/// Whether an absolute-form authority addresses this proxy: its port, and a loopback name, or the
/// listening IP itself.
fn names_this_proxy(authority: &http::uri::Authority, local: SocketAddr) -> bool {
    if authority.port_u16().unwrap_or(80) != local.port() {
        return false;
    }
    let host = authority.host().to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    match host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => {
            ip == local.ip()
                || (ip.is_loopback() && (local.ip().is_loopback() || local.ip().is_unspecified()))
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, target: &str) -> Request<()> {
        let mut r = Request::new(());
        *r.method_mut() = method;
        *r.uri_mut() = target.parse().unwrap_or_else(|e| panic!("{target}: {e}"));
        r
    }

    fn status(r: &Request<()>) -> Option<StatusCode> {
        let local: SocketAddr = "127.0.0.1:3000".parse().unwrap_or_else(|e| panic!("{e}"));
        refusal(r, local).map(|res| res.status())
    }

    #[test]
    fn host_checks() {
        let names = AllowedHosts::Names(vec!["app.test".into(), ".example.test".into()]);
        let status = |host: &str, allowed: &AllowedHosts| {
            let mut r = req(Method::GET, "/");
            r.headers_mut().insert(
                header::HOST,
                HeaderValue::from_str(host).unwrap_or_else(|e| panic!("{e}")),
            );
            host_refusal(&r, allowed).map(|res| res.status())
        };
        for (host, want) in [
            ("localhost:3000", None),
            ("LOCALHOST", None),
            ("localhost.:3000", None),
            ("app.localhost:3000", None),
            ("127.0.0.1:3000", None),
            ("10.0.0.5:3000", None),
            ("[::1]:3000", None),
            ("app.test:3000", None),
            ("app.test", None),
            ("example.test", None),
            ("www.example.test:8080", None),
            ("evil.example", Some(StatusCode::FORBIDDEN)),
            ("localhost.evil.example", Some(StatusCode::FORBIDDEN)),
            ("app.test.evil", Some(StatusCode::FORBIDDEN)),
            ("notexample.test", Some(StatusCode::FORBIDDEN)),
            ("evil.com@127.0.0.1", Some(StatusCode::BAD_REQUEST)),
            ("localhost:99999", Some(StatusCode::BAD_REQUEST)),
            ("[::1", Some(StatusCode::BAD_REQUEST)),
            ("[zz]:1", Some(StatusCode::BAD_REQUEST)),
            ("[::1]evil.example", Some(StatusCode::BAD_REQUEST)),
            ("[::1]evil.example:3000", Some(StatusCode::BAD_REQUEST)),
            ("", Some(StatusCode::BAD_REQUEST)),
            // Characters no host name holds, which would be markup in a re-pointed link.
            (
                "a\"onmouseover=alert(1)\"x.localhost",
                Some(StatusCode::BAD_REQUEST),
            ),
            ("a<b>.localhost:3000", Some(StatusCode::BAD_REQUEST)),
            ("it's.localhost", Some(StatusCode::BAD_REQUEST)),
            ("my_app.localhost:3000", None),
        ] {
            assert_eq!(status(host, &names), want, "{host:?}");
        }
        assert_eq!(status("evil.example", &AllowedHosts::All), None);
        assert_eq!(
            status("a\"b.example", &AllowedHosts::All),
            Some(StatusCode::BAD_REQUEST)
        );
        // The target's authority and `Host` must name one host (h2's `:authority`, absolute form).
        for (target, host, want) in [
            ("http://localhost:3000/", "localhost:3000", None),
            ("http://LOCALHOST:3000/", "localhost:3000", None),
            (
                "http://localhost:3000/",
                "evil.example",
                Some(StatusCode::BAD_REQUEST),
            ),
            (
                "http://evil.example/",
                "localhost:3000",
                Some(StatusCode::BAD_REQUEST),
            ),
        ] {
            let mut r = req(Method::GET, target);
            r.headers_mut()
                .insert(header::HOST, HeaderValue::from_static(host));
            assert_eq!(
                host_refusal(&r, &AllowedHosts::All).map(|res| res.status()),
                want,
                "{target} with Host {host}"
            );
        }
        let mut two = req(Method::GET, "/");
        for host in ["localhost", "evil.example"] {
            two.headers_mut()
                .append(header::HOST, HeaderValue::from_static(host));
        }
        for allowed in [&names, &AllowedHosts::All] {
            assert_eq!(
                host_refusal(&two, allowed).map(|res| res.status()),
                Some(StatusCode::BAD_REQUEST)
            );
        }
        let mut bare = req(Method::GET, "/");
        *bare.version_mut() = Version::HTTP_11;
        assert_eq!(
            host_refusal(&bare, &names).map(|r| r.status()),
            Some(StatusCode::BAD_REQUEST)
        );
        *bare.version_mut() = Version::HTTP_10;
        assert_eq!(host_refusal(&bare, &names).map(|r| r.status()), None);
    }

    #[test]
    fn cross_site_checks() {
        let with = |pairs: &[(&str, &str)]| {
            let mut r = req(Method::POST, "/__hmr/reload");
            for (k, v) in pairs {
                r.headers_mut().insert(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
                    HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
                );
            }
            cross_site_refusal(&r).map(|res| res.status())
        };
        assert_eq!(with(&[]), None);
        assert_eq!(with(&[("sec-fetch-site", "same-origin")]), None);
        assert_eq!(
            with(&[("sec-fetch-site", "cross-site")]),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            with(&[("sec-fetch-site", "same-site")]),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            with(&[
                ("host", "localhost:3000"),
                ("origin", "http://localhost:3000")
            ]),
            None
        );
        assert_eq!(
            with(&[
                ("host", "localhost:3000"),
                ("origin", "http://evil.example")
            ]),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(with(&[("origin", "null")]), Some(StatusCode::FORBIDDEN));
        let r = req(Method::POST, "/__hmr/reload");
        let addr = |a: &str| a.parse::<SocketAddr>().unwrap_or_else(|e| panic!("{e}"));
        let lan = addr("192.168.1.5:5000");
        let local = addr("127.0.0.1:3000");
        assert_eq!(
            control_refusal(&r, lan, local).map(|x| x.status()),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            control_refusal(&r, lan, addr("0.0.0.0:3000")).map(|x| x.status()),
            Some(StatusCode::FORBIDDEN)
        );
        let me = addr("127.0.0.1:5000");
        assert_eq!(control_refusal(&r, me, local).map(|x| x.status()), None);
        // Listening on one LAN address, a caller from that address is this machine.
        let on_lan = addr("192.168.1.5:3000");
        assert_eq!(control_refusal(&r, lan, on_lan).map(|x| x.status()), None);
        assert_eq!(
            control_refusal(&r, addr("192.168.1.6:5000"), on_lan).map(|x| x.status()),
            Some(StatusCode::FORBIDDEN)
        );
        // Through a tunnel or a reverse proxy on this machine, the visitor is who asks.
        for (name, value, want) in [
            (
                "x-forwarded-for",
                "203.0.113.9",
                Some(StatusCode::FORBIDDEN),
            ),
            (
                "x-forwarded-for",
                "10.77.0.2, 127.0.0.1",
                Some(StatusCode::FORBIDDEN),
            ),
            ("x-forwarded-for", "127.0.0.1, ::1", None),
            ("x-forwarded-for", "127.0.0.1:51234", None),
            ("x-forwarded-for", "unknown", Some(StatusCode::FORBIDDEN)),
            ("x-real-ip", "192.168.1.9", Some(StatusCode::FORBIDDEN)),
            (
                "cf-connecting-ip",
                "2001:db8::1",
                Some(StatusCode::FORBIDDEN),
            ),
            (
                "forwarded",
                "for=\"[2001:db8::1]:80\";proto=https",
                Some(StatusCode::FORBIDDEN),
            ),
            ("forwarded", "for=_tunnel", Some(StatusCode::FORBIDDEN)),
            ("forwarded", "proto=https;for=127.0.0.1", None),
            ("forwarded", "for=\"[::1]:5000\"", None),
            ("x-forwarded-proto", "https", None),
        ] {
            let mut r = req(Method::POST, "/__hmr/reload");
            r.headers_mut().insert(
                http::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
            assert_eq!(
                control_refusal(&r, me, local).map(|x| x.status()),
                want,
                "{name}: {value}"
            );
        }
    }

    #[test]
    fn table() {
        for (method, target, want) in [
            (Method::GET, "/ok?x=1", None),
            (Method::GET, "http://localhost:3000/x", None),
            (Method::GET, "http://127.0.0.1:3000/x", None),
            (Method::GET, "http://app.localhost:3000/x", None),
            (
                Method::GET,
                "http://example.com/",
                Some(StatusCode::BAD_REQUEST),
            ),
            (
                Method::GET,
                "http://169.254.169.254/latest",
                Some(StatusCode::BAD_REQUEST),
            ),
            (
                Method::GET,
                "http://127.0.0.1:8000/",
                Some(StatusCode::BAD_REQUEST),
            ),
            (Method::OPTIONS, "*", Some(StatusCode::BAD_REQUEST)),
            (
                Method::CONNECT,
                "example.com:443",
                Some(StatusCode::METHOD_NOT_ALLOWED),
            ),
        ] {
            assert_eq!(
                status(&req(method.clone(), target)),
                want,
                "{method} {target}"
            );
        }
    }
}
