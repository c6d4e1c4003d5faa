//! Request-target policy: what the proxy refuses before routing anything.
//!
//! Owns the checks that keep the proxy from being used as a forward proxy: `CONNECT` is refused,
//! an HTTP/1 absolute-form target (`GET http://elsewhere/ HTTP/1.1`) is accepted only when it names
//! this proxy itself, and targets that are not paths (`OPTIONS *`, authority-form) are refused. The
//! upstream URI is always rebuilt from configuration (see `proxy`), so these checks are about
//! answering honestly, not the only line of defence. Host allow-listing (DNS rebinding) is not
//! here yet.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};

use crate::body::{self, Body};

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
