//! Forwarding to the one configured upstream: pooled connections, bodies streamed both ways.
//!
//! Owns [`Proxy::forward`]: building the upstream request from the configured origin plus the
//! browser's path (never from the request's own authority, so the proxy cannot be turned into an
//! open proxy), sending it with connect and response-header timeouts, retrying a bodiless idempotent
//! request once when a pooled connection turns out to be dead, and handing back the response with
//! its headers rewritten. Header rules live in [`headers`], the WebSocket tunnel in [`upgrade`], the
//! upstream-down answer in [`unavailable`], the re-pointing of links in pages in [`links`]. It
//! also answers the waiting page's "is the dev server back?" ([`Proxy::is_back`]) with a
//! connect, never a request. It does not decide which requests reach it (`router`) and does not
//! touch other response bodies beyond boxing them: bytes stream through as they arrive.

mod connector;
pub mod headers;
pub mod health;
mod links;
mod listeners;
mod pool;
mod tls;
mod tls_probe;
pub mod unavailable;
pub mod upgrade;
mod upload;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::uri::{self, Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{self, Body};
use crate::config::{ProxySettings, Upstream};
use crate::inject::{Injector, Rewritten};
use crate::shutdown::Shutdown;
use connector::{Connector, LARGE_BODY, LargeBody};
use headers::{Forwarding, Origins, UpstreamNames};
use health::{Back, Health};
pub use links::Links;
use pool::{POOL_IDLE_TIMEOUT, Pool, PoolError, UpstreamBody};
use tls::Tls;
use tls_probe::TlsProbe;
use unavailable::{Failure, Resend, Tried};
use upload::Upload;

/// The origin a browser loaded a page from, for URLs re-pointed at the proxy: from its `Host`
/// (`https://` behind a TLS front end, see [`headers::tls_front`]), or for an HTTP/1.0 request
/// without one, the address listened on, as a browser on this machine can open it (not
/// `0.0.0.0`).
fn proxy_origin(browser_host: Option<&HeaderValue>, local: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    match browser_host {
        Some(host) => format!("{scheme}://{}", String::from_utf8_lossy(host.as_bytes())),
        None => crate::server::browse_url(local),
    }
}

/// The pooled client every [`Proxy`] sends through (pools are per upstream authority inside it).
pub type UpstreamClient = Client<Connector, Body>;

/// What every [`Proxy`] shares: the pooled client, and which upstream serves which paths (for
/// the URLs in responses that point at one directly).
#[derive(Clone)]
pub struct Upstreams {
    pub client: UpstreamClient,
    pub origins: Arc<Origins>,
    /// The same, as URLs to re-point in pages.
    pub links: Arc<Links>,
}

/// Build the one pooled client for all upstreams, for requests with a body or an upgrade (the
/// rest go through each upstream's [`Pool`]).
pub fn client(settings: &ProxySettings) -> UpstreamClient {
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .set_host(false)
        // A form's answer may set a hundred cookies too; these requests are few, so their
        // connections read as many fields as a widened `Pool`'s from the start.
        .http1_max_headers(pool::WIDE_HEADERS)
        .build(connector(settings))
}

fn connector(settings: &ProxySettings) -> Connector {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(settings.connect_timeout));
    connector.set_nodelay(true);
    // `Connector` runs TLS itself for an `https` upstream.
    connector.enforce_http(false);
    Connector::new(
        connector,
        Tls::new(settings.insecure, settings.connect_timeout),
    )
}

/// Forwarding to one upstream. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    /// Pooled keep-alive client, shared by every upstream; lives as long as the proxy. This
    /// `Proxy` only ever gives it URIs built from `origin`. For requests with a body or an
    /// upgrade.
    client: UpstreamClient,
    /// This upstream's own connections, for requests without a body.
    pool: Pool,
    /// `http://host:port` of the upstream.
    /// Shared, because every response's error-logging closure holds it (a refcount, not a copy).
    origin: Arc<str>,
    /// `host:port`, every forwarded request's authority.
    authority: Authority,
    /// The port in it (or the scheme's).
    port: u16,
    /// `http` or `https`.
    scheme: Scheme,
    /// The same, as the `Host` sent upstream (built once, not per request).
    upstream_host: Option<HeaderValue>,
    /// The names the upstream may call itself in cookies.
    names: UpstreamNames,
    /// Every upstream by the paths it serves, for redirects that name one.
    origins: Arc<Origins>,
    /// The same, for the URLs in pages.
    links: Arc<Links>,
    settings: ProxySettings,
    /// This process's `Via` entry; seeing it on an incoming request means a forwarding loop.
    via: HeaderValue,
    /// The address the proxy listens on, for the origin in rewritten redirects when the browser
    /// sent no `Host` (HTTP/1.0).
    local: SocketAddr,
    /// Tunnels register here so shutdown can close them.
    shutdown: Shutdown,
    /// Puts the client into HTML pages on their way back.
    injector: Injector,
    /// Every exchange reports whether the upstream answered.
    health: Health,
    /// An unreachable upstream has been logged as a warning: the rest of the outage (a waiting
    /// page polls every few seconds, a tab's every asset fails) goes to the debug log. Cleared by
    /// the next answer. Read, not written, on the way of a good exchange.
    outage_logged: AtomicBool,
    /// The `--keep-host` hint for a refused same-origin write has been logged (once a run).
    origin_hinted: AtomicBool,
    /// Whether the upstream speaks TLS, asked when an exchange breaks.
    tls: TlsProbe,
    /// The last failure was this `http://` upstream answering in TLS: it is back only once it
    /// speaks plain HTTP, which a connect cannot tell. Cleared by the next answer.
    spoke_tls: AtomicBool,
    /// The waiting page's question, asked of this upstream (see [`Proxy::is_back`]).
    back: Back,
    /// For an `https://` upstream, the handshake that question completes, bounded by
    /// [`health::BACK_TIMEOUT`], and the host to name in it.
    back_tls: Option<(Tls, String)>,
}

impl Proxy {
    pub fn new(
        upstream: &Upstream,
        settings: ProxySettings,
        upstreams: &Upstreams,
        local: SocketAddr,
        shutdown: Shutdown,
        injector: Injector,
        health: Health,
    ) -> Self {
        // A per-process token: two proxies chained on purpose still work, a proxy pointed at
        // itself is caught.
        let scheme = if upstream.tls {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let via = HeaderValue::from_str(&format!("1.1 hmr-proxy-{:x}", instance_id()))
            .unwrap_or_else(|_| HeaderValue::from_static("1.1 hmr-proxy"));
        let settings_insecure = settings.insecure;
        Proxy {
            inner: Arc::new(Inner {
                client: upstreams.client.clone(),
                pool: Pool::new(
                    connector(&settings),
                    upstream_uri(&scheme, &upstream.authority, None).unwrap_or_default(),
                ),
                origins: upstreams.origins.clone(),
                links: upstreams.links.clone(),
                origin: upstream.origin().into(),
                authority: upstream.authority.clone(),
                port: upstream.port,
                scheme,
                upstream_host: HeaderValue::from_str(upstream.authority.as_str()).ok(),
                names: UpstreamNames::new(upstream),
                settings,
                via,
                local,
                shutdown,
                injector,
                health,
                outage_logged: AtomicBool::new(false),
                origin_hinted: AtomicBool::new(false),
                tls: TlsProbe::default(),
                spoke_tls: AtomicBool::new(false),
                back: Back::default(),
                back_tls: upstream.tls.then(|| {
                    (
                        Tls::new(settings_insecure, health::BACK_TIMEOUT),
                        upstream.host.clone(),
                    )
                }),
            }),
        }
    }

    /// The upstream's origin, for logs and status.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// Whether the waiting page for a path this upstream serves should reload: the upstream
    /// takes connections again (an https one completes the handshake too), and, if the last
    /// failure was an `http://` upstream answering in TLS, it speaks plain HTTP now. Asked
    /// without a request (see `health::accepts`); several pages asking at once share one check.
    pub async fn is_back(&self) -> bool {
        let this = &*self.inner;
        this.back
            .ask(|| async {
                let tls = this
                    .back_tls
                    .as_ref()
                    .map(|(tls, host)| (tls, host.as_str()));
                if !health::accepts(this.authority.as_str(), tls).await {
                    return false;
                }
                if !this.spoke_tls.load(Ordering::Relaxed) {
                    return true;
                }
                // A connect cannot tell a server restarted on plain HTTP from the TLS one: one
                // ClientHello can, as when the exchange first broke. The verdict is forgotten
                // first (the probe keeps it until an answer), or it would be the old one.
                this.tls.answered();
                let plain = !this
                    .tls
                    .speaks_tls(this.authority.as_str(), health::BACK_TIMEOUT)
                    .await;
                if plain {
                    this.spoke_tls.store(false, Ordering::Relaxed);
                }
                plain
            })
            .await
    }

    /// Forward one request and return the upstream's response (or the proxy's error answer).
    pub async fn forward(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let this = &*self.inner;
        let started = Instant::now();
        if headers::is_loop(req.headers(), &this.via) {
            tracing::warn!(
                "request loop: the upstream {} is this proxy itself; point UPSTREAM at the dev server",
                this.origin
            );
            return body::plain(
                StatusCode::LOOP_DETECTED,
                format!(
                    "hmr-proxy: the upstream {} forwards back to this proxy",
                    this.origin
                ),
            );
        }

        let facts = this.injector.facts(&req);
        let (mut parts, incoming) = req.into_parts();
        let Some(uri) = upstream_uri(&this.scheme, &this.authority, parts.uri.path_and_query())
        else {
            return body::plain(
                StatusCode::BAD_REQUEST,
                "hmr-proxy: unusable request target",
            );
        };
        let browser_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let claims_https = headers::claims_https(&parts.headers);
        let tls_front = headers::tls_front(claims_https, peer.ip());
        let hop = headers::prepare_request(
            &mut parts.headers,
            &Forwarding {
                client_ip: peer.ip(),
                tls_front,
                host: browser_host.clone(),
                upstream_host: this.upstream_host.as_ref(),
                keep_host: this.settings.keep_host,
                via: &this.via,
            },
        );
        let origin_checked = !this.settings.keep_host
            && (hop.websocket.is_some() || !parts.method.is_safe())
            && origin_is(&parts.headers, browser_host.as_ref(), tls_front);
        let client_upgrade = match hop.websocket {
            Some(_) => parts.extensions.remove::<OnUpgrade>(),
            None => None,
        };
        this.injector.prepare_request(&facts, &mut parts.headers);
        let path = parts.uri.path().to_string();
        let method = parts.method.clone();
        parts.uri = uri;
        parts.version = Version::HTTP_11;

        // A request without a body can be sent again if a pooled connection dies under it; one
        // with a body cannot (its bytes are streamed, not kept).
        let replay = (incoming.is_end_stream() && method.is_idempotent()).then(|| {
            (
                parts.method.clone(),
                parts.uri.clone(),
                parts.headers.clone(),
            )
        });
        // Decided now, not by cloning the headers: the request moves into the upstream call.
        let wants_html = unavailable::wants_html(&parts.headers);
        // A request body that breaks (malformed chunks, the browser gone) fails the exchange:
        // that is the browser's fault, not the upstream's. Most requests have none to watch.
        let (body, upload) = if incoming.is_end_stream() {
            (body::empty(), None)
        } else {
            // Its framing went with the hop-by-hop fields. Hyper's client frames a body of
            // unknown length as chunked by itself, except on a GET or HEAD, whose body it would
            // drop: said explicitly, every method's body arrives.
            if !parts.headers.contains_key(header::CONTENT_LENGTH) {
                parts.headers.insert(
                    header::TRANSFER_ENCODING,
                    HeaderValue::from_static("chunked"),
                );
            }
            let (body, upload) = Upload::watch(incoming, this.settings.body_timeout);
            (body, Some(upload))
        };
        let request = Request::from_parts(parts, body);
        // A request without a body (nearly all of a dev server's) is sent on this upstream's own
        // connections, driven by this task; one with a body or an upgrade goes through the
        // pooled client.
        let own = upload.is_none() && client_upgrade.is_none();

        let result = self.send(request, own, upload.as_deref()).await;
        // Matched by value: a borrow of the first result held across sending again would need
        // it to be `Sync`, and a response body that drives its connection is not.
        let result = match (result, replay) {
            (Err(first @ (Failure::Closed { .. } | Failure::Exchange(_))), Some(replay)) => {
                Box::pin(self.resend(first, replay, own, &path)).await
            }
            // The first answer with more header fields than hyper reads by default widened this
            // upstream's connections (`pool`): the request goes once more on a new one.
            (Err(first @ Failure::TooLarge(_)), Some(replay)) if own => {
                Box::pin(self.resend(first, replay, own, &path)).await
            }
            (result, _) => result,
        };
        let response = match result {
            Ok(response) => response,
            Err(_) if upload.as_ref().is_some_and(|upload| upload.stalled()) => {
                let stall = this.settings.body_timeout;
                tracing::warn!(
                    "{method} {path}: the browser sent none of the rest of the request body for \
                     {stall:?}; answered 408 (--header-timeout sets how long it may pause)"
                );
                return body::plain(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("hmr-proxy: the request body stalled for {stall:?}"),
                );
            }
            Err(_) if upload.is_some_and(|upload| upload.failed()) => {
                tracing::debug!("{method} {path}: the request body broke off");
                return body::plain(
                    StatusCode::BAD_REQUEST,
                    "hmr-proxy: the request body is malformed or was cut off",
                );
            }
            Err(failure) => {
                if let Failure::Closed { detail, .. } = &failure {
                    tracing::debug!("{method} {path}: {detail}");
                }
                // A connection that breaks before any answer, or an answer that is not HTTP, is
                // what an https dev server does with a plain request.
                let mut failure = match failure {
                    f if matches!(
                        f.last(),
                        Failure::Closed { .. } | Failure::Exchange(_) | Failure::Malformed(_)
                    ) && this.scheme == Scheme::HTTP
                        && this
                            .tls
                            .speaks_tls(this.authority.as_str(), this.settings.connect_timeout)
                            .await =>
                    {
                        this.spoke_tls.store(true, Ordering::Relaxed);
                        Failure::Tls
                    }
                    // Cut off and not sent again (it has a body, or its method is not
                    // idempotent: see `replay`): said, so that whoever sent a form knows it may
                    // or may not have been done, and was not done twice.
                    Failure::Closed {
                        detail,
                        resend: Resend::Unsaid,
                    } => Failure::Closed {
                        detail,
                        resend: Resend::Not {
                            method: method.clone(),
                        },
                    },
                    other => other,
                };
                if let Some(tried) = failure.tried_mut()
                    && this.authority.host().eq_ignore_ascii_case("localhost")
                {
                    *tried = Box::pin(tried_localhost(this.port)).await;
                }
                if failure.is_outage() && this.outage_logged.swap(true, Ordering::Relaxed) {
                    tracing::debug!("{method} {path}: {}", failure.summary(&this.origin));
                } else {
                    tracing::warn!("{method} {path}: {}", failure.summary(&this.origin));
                }
                // The page gets the client too: it reloads on the next save, which for a dev
                // server that failed this page (rather than one that is not there) is the only
                // sign that a fix may be in.
                let page = unavailable::response(&failure, &this.origin, wants_html);
                return this.injector.apply(&facts, page).await;
            }
        };

        let (mut parts, incoming) = response.into_parts();
        if let Some(coding) = headers::unknown_transfer_coding(&parts.headers) {
            tracing::warn!(
                "{method} {path}: {} sent transfer coding `{coding}`, which no browser is told \
                 of past this hop; refused with 502",
                this.origin
            );
            return body::plain(
                StatusCode::BAD_GATEWAY,
                format!("hmr-proxy: the upstream sent an unknown transfer coding `{coding}`"),
            );
        }
        if origin_checked
            && parts.status == StatusCode::FORBIDDEN
            && !this.origin_hinted.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "{method} {path} → 403: if the dev server compares Origin with Host (Django, \
                 SvelteKit and Astro do for forms, Go's WebSocket libraries for upgrades), it sees \
                 {} against this page's origin; run hmr-proxy with --keep-host",
                this.authority
            );
        }
        if let Some(large) = parts.extensions.remove::<LargeBody>()
            && incoming
                .size_hint()
                .exact()
                .is_some_and(|n| n >= LARGE_BODY)
        {
            large.mark();
        }
        // The browser talks to this proxy, not to the upstream: an HTTP/1.0 dev server (Python's
        // http.server) must not downgrade the browser's connection.
        parts.version = Version::HTTP_11;
        let upgraded = if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = parts.extensions.remove::<OnUpgrade>();
            match (client_upgrade, upstream_upgrade) {
                (Some(client), Some(upstream)) => {
                    let value = parts
                        .headers
                        .get(header::UPGRADE)
                        .cloned()
                        .unwrap_or_else(|| HeaderValue::from_static("websocket"));
                    upgrade::spawn_tunnel(client, upstream, this.shutdown.clone(), path.clone());
                    Some(value)
                }
                _ => {
                    tracing::warn!("{method} {path}: upstream switched protocols unasked");
                    return body::plain(
                        StatusCode::BAD_GATEWAY,
                        "hmr-proxy: the upstream switched protocols without being asked",
                    );
                }
            }
        } else {
            None
        };
        headers::prepare_response(
            &mut parts.headers,
            &this.names,
            &this.origins,
            || proxy_origin(browser_host.as_ref(), this.local, tls_front),
            upgraded.as_ref(),
            || headers::plain_origin(browser_host.as_ref(), claims_https),
            facts.htmx(),
        );
        tracing::debug!(
            "{method} {path} → {} in {:.1?}",
            parts.status.as_u16(),
            started.elapsed()
        );
        // Headers are gone (for a compressed page, once its first bytes have decoded; before
        // that the injector answers with a 502 page): a body that breaks off now reaches the
        // browser truncated, so this line is the only trace of it.
        let origin = this.origin.clone();
        let incoming = incoming.map_err(move |err| {
            tracing::warn!(
                "{method} {path}: the response from {origin} broke off: {}",
                unavailable::chain_text(&err)
            );
            err
        });
        // Dev servers often send no caching headers at all; browsers then cache heuristically
        // (a tenth of the file's age) and a reload can show a stale script or stylesheet. A dev
        // proxy means "revalidate every time"; validators still make that a cheap 304.
        if !parts.headers.contains_key(header::CACHE_CONTROL)
            && !parts.headers.contains_key(header::EXPIRES)
        {
            parts
                .headers
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        let response = Response::from_parts(parts, body::boxed(incoming));
        if upgraded.is_some() {
            return response;
        }
        let response = this.injector.apply(&facts, response).await;
        if response.extensions().get::<Rewritten>().is_none() {
            return response;
        }
        let (mut parts, page) = response.into_parts();
        // The upstream's date stands for its bytes, not these: a resumed navigation's
        // `If-Range: <date>` would get the upstream's un-injected bytes spliced onto the proxy's
        // (nginx's `sub_filter` drops it too). Its marked `ETag` still revalidates the page.
        parts.headers.remove(header::LAST_MODIFIED);
        let origin = links::Origin::new(browser_host, this.local, tls_front);
        Response::from_parts(parts, this.links.repoint(page, origin))
    }

    /// Send a bodiless idempotent request once more (`replay`: its method, URI and headers)
    /// after its connection broke before an answer (`first`). If that fails too, and the first
    /// was the dev server closing the connection, both are said: a GET cut off by a restart
    /// and sent again while the server is still down said only "connection refused", which
    /// hid that it went away under the request.
    async fn resend(
        &self,
        first: Failure,
        (method, uri, headers): (Method, Uri, http::HeaderMap),
        own: bool,
        path: &str,
    ) -> Result<Response<UpstreamBody>, Failure> {
        match &first {
            Failure::Closed { detail, .. } | Failure::Exchange(detail) => {
                tracing::debug!("retrying {method} {path} once: {detail}");
            }
            _ => {}
        }
        let mut again = Request::new(body::empty());
        *again.method_mut() = method.clone();
        *again.uri_mut() = uri;
        *again.headers_mut() = headers;
        self.send(again, own, None)
            .await
            .map_err(|then| match first {
                Failure::Closed { detail, .. } => Failure::Closed {
                    detail,
                    resend: Resend::Failed {
                        method,
                        then: Box::new(then),
                    },
                },
                // A break of another kind: what sending again found says more.
                _ => then,
            })
    }

    /// One exchange with the upstream, bounded by the response-header timeout (counted from the
    /// last frame of the request's `upload`, if it has a body): on this upstream's own
    /// connections (`own`), or through the pooled client.
    async fn send(
        &self,
        request: Request<Body>,
        own: bool,
        upload: Option<&Upload>,
    ) -> Result<Response<UpstreamBody>, Failure> {
        let this = &*self.inner;
        let timeout = this.settings.response_timeout;
        let connect_timeout = this.settings.connect_timeout;
        let exchange = async {
            if own {
                this.pool.send(request).await.map_err(|err| {
                    let (err, connecting) = match err {
                        PoolError::Connect(err) => (err, true),
                        PoolError::Exchange(err) => (err, false),
                    };
                    Failure::classify_chain(&*err, connecting, connect_timeout)
                })
            } else {
                // Boxed, as the other rare paths below: a future is as large as its largest
                // state, and hyper's dispatcher may copy the whole request future into place for
                // every request (README, "What limits it"): rare paths must not make the common
                // one larger.
                match Box::pin(this.client.request(request)).await {
                    Ok(response) => Ok(response.map(UpstreamBody::on_its_own)),
                    Err(err) => Err(Failure::classify(&err, connect_timeout)),
                }
            }
        };
        let answered = match upload {
            None => tokio::time::timeout(timeout, exchange).await.ok(),
            Some(upload) => Box::pin(upload::answered_within(exchange, timeout, upload)).await,
        };
        let result = answered.unwrap_or(Err(Failure::ResponseTimeout(timeout)));
        match &result {
            Ok(_) => {
                if this.outage_logged.load(Ordering::Relaxed) {
                    this.outage_logged.store(false, Ordering::Relaxed);
                }
                this.tls.answered();
                if this.spoke_tls.load(Ordering::Relaxed) {
                    this.spoke_tls.store(false, Ordering::Relaxed);
                }
                this.health.report_answered();
            }
            Err(failure) if failure.is_unreachable() => this.health.report(false),
            Err(_) => {}
        }
        result
    }
}

/// How long the look at the other loopback family waits for a connect: on loopback one is
/// accepted or refused at once; this only bounds a firewall that drops it.
const OTHER_LOOPBACK_TIMEOUT: Duration = Duration::from_millis(250);

/// Where a refused `localhost` upstream on `port` was tried (the addresses `localhost` resolves
/// to here), and whether a server listens on that port of the loopback family it does not
/// resolve to (see [`Tried`]). Costs a lookup in `/etc/hosts` and a connect on loopback, on
/// refused requests only; the connect sends nothing.
async fn tried_localhost(port: u16) -> Tried {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    if let Ok(resolved) = tokio::net::lookup_host(("localhost", port)).await {
        for addr in resolved {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    let mut elsewhere = None;
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        if addrs.iter().any(|addr| addr.is_ipv4() == ip.is_ipv4()) {
            continue;
        }
        let there = SocketAddr::new(ip, port);
        let connect = connector::connect(there);
        if let Ok(Ok(_)) = tokio::time::timeout(OTHER_LOOPBACK_TIMEOUT, connect).await {
            elsewhere = Some(there);
            break;
        }
    }
    Tried { addrs, elsewhere }
}

/// The URI a request is forwarded to: the configured upstream's authority and the browser's path
/// and query, never the request's own authority (an absolute-form target names a host this proxy
/// must not reach). Built from parsed parts, not formatted and parsed again: this runs for every
/// request. A target that is not a path (`OPTIONS *`) has no upstream URI.
fn upstream_uri(
    scheme: &Scheme,
    authority: &Authority,
    target: Option<&PathAndQuery>,
) -> Option<Uri> {
    let path_and_query = match target {
        Some(target) if target.as_str().starts_with('/') => target.clone(),
        Some(_) => return None,
        None => PathAndQuery::from_static("/"),
    };
    let mut parts = uri::Parts::default();
    parts.scheme = Some(scheme.clone());
    parts.authority = Some(authority.clone());
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).ok()
}

/// `Origin` is the page's own (`http://`, or `https://` behind a TLS front end, and the
/// browser's `Host`): a write or an upgrade from the proxied page, which a dev server's origin
/// check refuses when it compares `Origin` with the `Host` the proxy rewrote.
fn origin_is(headers: &http::HeaderMap, browser_host: Option<&HeaderValue>, tls: bool) -> bool {
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), browser_host) else {
        return false;
    };
    let scheme: &[u8] = if tls { b"https://" } else { b"http://" };
    origin
        .as_bytes()
        .strip_prefix(scheme)
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host.as_bytes()))
}

/// A number that differs between processes (and between proxies in one test process).
fn instance_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str) -> Option<Uri> {
        let authority = Authority::from_static("127.0.0.1:8000");
        let uri: Uri = uri.parse().unwrap_or_else(|e| panic!("{uri}: {e}"));
        upstream_uri(&Scheme::HTTP, &authority, uri.path_and_query())
    }

    #[test]
    fn upstream_uri_keeps_the_path_and_query_and_never_the_requests_authority() {
        let forwarded = |uri| target(uri).map(|u| u.to_string());
        assert_eq!(
            forwarded("/a/b?x=1&y").as_deref(),
            Some("http://127.0.0.1:8000/a/b?x=1&y")
        );
        assert_eq!(
            forwarded("http://evil.example:9/steal?q").as_deref(),
            Some("http://127.0.0.1:8000/steal?q")
        );
        assert_eq!(
            forwarded("http://evil.example").as_deref(),
            Some("http://127.0.0.1:8000/")
        );
        assert_eq!(forwarded("*"), None);
    }
}
