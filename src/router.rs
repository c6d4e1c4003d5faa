//! The one table of what answers which request.
//!
//! Owns routing: the target policy first (`guard`), then the change stream (at the configured
//! path), then the proxy's own endpoints under `/__hmr/`, then everything else to the backend: the
//! upstream (`proxy`) or a folder (`static_files`). It knows no HTTP connection details
//! (`server`) and no forwarding details.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::body::{self, Body};
use crate::config::{AllowedHosts, Backend, Config, OWN_PREFIX, Route, Upstream};
use crate::control::Control;
use crate::frameworks::{self, FRAMEWORKS, RELOADERS};
use crate::inject::Injector;
use crate::proxy::health::Health;
use crate::proxy::{self, Proxy};
use crate::rebuild::Rebuilds;
use crate::shutdown::Shutdown;
use crate::sse::Hub;
use crate::static_files::StaticFiles;
use crate::{client, guard};

/// Routes requests. Cheap to clone: one per connection.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    /// Host names requests may carry (DNS-rebinding protection).
    allowed_hosts: AllowedHosts,
    /// Path prefixes served by other upstreams, longest first; tried before `target`. Always
    /// [`Target::Proxy`].
    routes: Vec<(Route, Target)>,
    target: Target,
    /// The bound address, for the absolute-form check.
    local: SocketAddr,
    /// Where tabs subscribe to changes.
    changes_path: String,
    /// The client script as served (with `changes_path` written in).
    client: client::Script,
    /// The classic script that imports the client into XML documents.
    xml_loader: client::Script,
    hub: Hub,
    control: Control,
    /// For each of [`FRAMEWORKS`], armed while its dev server behind the proxy would see each of
    /// its hot updates followed by a reload: the proxy watches the whole project, its sources
    /// included (see [`Router::notice_framework`]).
    framework_hints: [AtomicBool; FRAMEWORKS.len()],
    /// For each of [`RELOADERS`], whether it has been named (once, see
    /// [`Router::notice_reloader`]).
    reloaders_named: [AtomicBool; RELOADERS.len()],
}

enum Target {
    Proxy(Proxy),
    Static(StaticFiles),
}

/// What the router is built from besides configuration: the long-lived shared pieces `lib` owns.
pub struct Parts {
    pub local: SocketAddr,
    pub shutdown: Shutdown,
    pub hub: Hub,
    /// Reachability of each upstream, by authority (`host:port`).
    pub health: HashMap<String, Health>,
    /// The batch held for the upstream's restart, for `/__hmr/status`.
    pub rebuilds: Rebuilds,
}

impl Router {
    pub fn new(config: &Config, parts: Parts) -> Self {
        let Parts {
            local,
            shutdown,
            hub,
            health,
            rebuilds,
        } = parts;
        let injector = Injector::new(config.inject).with_position(hub.position());
        let default_upstream = match &config.backend {
            Backend::Upstream(upstream) => Some(upstream),
            Backend::Static { .. } => None,
        };
        let origins = Arc::new(proxy::headers::Origins::new(
            &config.routes,
            default_upstream,
        ));
        let upstreams = proxy::Upstreams {
            client: proxy::client(&config.proxy),
            links: Arc::new(proxy::Links::new(origins.clone())),
            origins,
        };
        let proxy_for = |upstream: &Upstream| {
            Proxy::new(
                upstream,
                config.proxy.clone(),
                &upstreams,
                local,
                shutdown.clone(),
                injector.clone(),
                health
                    .get(upstream.authority.as_str())
                    .cloned()
                    .unwrap_or_else(|| Health::new(hub.restarts())),
            )
        };
        let routes = config
            .routes
            .iter()
            .map(|route| (route.clone(), Target::Proxy(proxy_for(&route.upstream))))
            .collect();
        let target = match &config.backend {
            Backend::Upstream(upstream) => Target::Proxy(proxy_for(upstream)),
            Backend::Static { root, spa, .. } => {
                Target::Static(StaticFiles::new(root.clone(), injector.clone()).with_spa(*spa))
            }
        };
        Router {
            inner: Arc::new(Inner {
                allowed_hosts: config.allowed_hosts.clone(),
                routes,
                target,
                local,
                changes_path: config.changes_path.clone(),
                client: client::render(&config.changes_path),
                xml_loader: client::Script::new(bytes::Bytes::from_static(
                    client::XML_LOADER.as_bytes(),
                )),
                control: Control::new(config, hub.clone(), health, rebuilds),
                hub,
                framework_hints: std::array::from_fn(|_| {
                    AtomicBool::new(config.watch.whole_project && config.watch.ignore.is_empty())
                }),
                reloaders_named: std::array::from_fn(|_| AtomicBool::new(false)),
            }),
        }
    }

    /// Answer one request. Never fails: every problem becomes a response.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let this = &*self.inner;
        if let Some(refusal) = self.refusal(&req) {
            return refusal;
        }
        let path = req.uri().path();
        if path == this.changes_path && asks_for_stream(&req) {
            return self.changes(&req);
        }
        if let Some(own) = path.strip_prefix(OWN_PREFIX) {
            return self.own_endpoint(own.to_string(), req, peer).await;
        }
        if let Some(framework) = frameworks::marked_by(path) {
            self.notice_framework(framework);
        } else if let Some(reloader) = frameworks::reloader_for(path) {
            self.notice_reloader(reloader);
        }
        match self.serving(path) {
            Target::Proxy(proxy) => proxy.forward(req, peer).await,
            Target::Static(files) => files.serve(req).await,
        }
    }

    /// What serves `path`: the first route it falls under, else the backend.
    fn serving(&self, path: &str) -> &Target {
        let this = &*self.inner;
        this.routes
            .iter()
            .find(|(route, _)| route.matches(path))
            .map_or(&this.target, |(_, target)| target)
    }

    /// A tab asked for what only a page of [`FRAMEWORKS`]`[index]` asks for (Vite's client,
    /// Next.js's Fast Refresh socket): the upstream is that dev server, which hot-updates its own
    /// sources. With the whole project watched, each such save is also a batch here, and the
    /// page reloads right after the server's update, its state lost: said once, with the fix.
    fn notice_framework(&self, index: usize) {
        let said = self.inner.framework_hints[index].swap(false, Ordering::Relaxed);
        // Otherwise the hub says it at the first batch that would reload over the update.
        self.inner.hub.framework_seen(index, said);
        if said {
            let framework = &FRAMEWORKS[index];
            tracing::warn!(
                "the upstream is {} ({}), which updates its own sources in place; with the \
                 whole project watched, each save there also reloads the page: {}",
                framework.name,
                framework.seen_by,
                framework.fix
            );
        }
    }

    /// A page asked for another tool's live-reload client ([`RELOADERS`]`[index]`): said once,
    /// with how to keep one of the two.
    fn notice_reloader(&self, index: usize) {
        if self.inner.reloaders_named[index].swap(true, Ordering::Relaxed) {
            return;
        }
        let reloader = &RELOADERS[index];
        tracing::warn!(
            "a page loaded the live reload of {} ({}) as well as hmr-proxy's: a save reloads it \
             twice, and a stylesheet hmr-proxy would swap in place is reloaded; {}",
            reloader.name,
            reloader.marker,
            reloader.fix
        );
    }

    /// The change stream's path.
    pub fn changes_path(&self) -> &str {
        &self.inner.changes_path
    }

    /// Answer a request for the change stream that the server took without hyper (see
    /// `raw_stream`): the same checks and the same answer as [`Router::handle`] gives it.
    pub fn handle_changes<B>(&self, req: &Request<B>) -> Response<Body> {
        self.refusal(req).unwrap_or_else(|| self.changes(req))
    }

    /// The checks every request passes first.
    fn refusal<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        let this = &*self.inner;
        // The target first: an absolute-form target overrides `Host` (RFC 9112 §3.2.2), so a
        // forward-proxy request is refused for what it is before its Host is judged.
        if let Some(refusal) = guard::refusal(req, this.local) {
            tracing::debug!(
                "refused {} {}: {}",
                req.method(),
                req.uri(),
                refusal.status()
            );
            return Some(refusal);
        }
        guard::host_refusal(req, &this.allowed_hosts)
    }

    fn changes<B>(&self, req: &Request<B>) -> Response<Body> {
        if let Some(refusal) = guard::cross_site_refusal(req) {
            return refusal;
        }
        // The header is what a reconnecting EventSource sends; the query parameter is how a
        // fresh EventSource (a tab taking over as leader) says where the previous one stopped.
        let last = req
            .headers()
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                req.uri()
                    .query()?
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("lastEventId="))
            });
        self.inner.hub.subscribe(last)
    }

    /// `/__hmr/<name>`: the proxy's own endpoints.
    async fn own_endpoint(
        &self,
        name: String,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let this = &*self.inner;
        let method = req.method();
        match name.as_str() {
            "client.js" | "xml.js" | "health" | "status" | "upstream"
                if method != Method::GET && method != Method::HEAD =>
            {
                method_not_allowed("GET, HEAD")
            }
            "client.js" => client::response(req.method(), req.headers(), &this.client),
            "xml.js" => client::response(req.method(), req.headers(), &this.xml_loader),
            // Answers without touching the upstream, so a container health check passes while
            // the app is still starting.
            "health" => body::plain(StatusCode::OK, "ok"),
            "upstream" => self.upstream_back(req.uri().query()).await,
            // Status names the watched folders and the upstreams: for this machine only too.
            "status" => match guard::control_refusal(&req, peer, this.local) {
                Some(refusal) => refusal,
                None => this.control.status(),
            },
            "reload" if method != Method::POST => method_not_allowed("POST"),
            "reload" => match guard::control_refusal(&req, peer, this.local) {
                Some(refusal) => refusal,
                None => this.control.reload(req).await,
            },
            _ => body::plain(StatusCode::NOT_FOUND, "hmr-proxy: no such endpoint"),
        }
    }

    /// `/__hmr/upstream?path=/the/page`: the waiting page's poll (see `proxy::unavailable`).
    /// `{"up": true}` once the upstream that serves that path (a route's, or the default one)
    /// takes connections again, asked with a connect ([`Proxy::is_back`]), never a request:
    /// the page's own URL asked with `HEAD` ran the app's handler for it, and put a red 502 in
    /// the console at every try. Always 200, so the console stays clean while it is down. The
    /// path is the rest of the query as the browser sent it (`location.pathname`, not
    /// decoded), which routes match as they match the page's own request; a folder, served by
    /// the proxy itself, is always up.
    async fn upstream_back(&self, query: Option<&str>) -> Response<Body> {
        let path = query
            .and_then(|query| query.strip_prefix("path="))
            .filter(|path| path.starts_with('/'))
            .unwrap_or("/");
        let up = match self.serving(path) {
            Target::Proxy(proxy) => proxy.is_back().await,
            Target::Static(_) => true,
        };
        let mut res = Response::new(body::full(if up {
            &br#"{"up":true}"#[..]
        } else {
            &br#"{"up":false}"#[..]
        }));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        res.headers_mut().insert(
            header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        res
    }
}

/// Whether a request for the change stream's path is for the stream: a `GET` that is no
/// navigation and asks for an event stream, or, from a tool, for nothing in particular. An
/// `EventSource` sends `Accept: text/event-stream` (and `Sec-Fetch-Dest: empty`); curl sends
/// `*/*`. Anything else on that path is the app's: a form posted to its own `/changes`, a tab
/// opening its changelog page (`text/html`, with or without fetch metadata: browsers send none to
/// an origin that is not secure, such as a LAN address), a request for JSON (axios's
/// `application/json, text/plain, */*`), whatever wildcards follow the type it names, and a
/// browser's bare `fetch('/changes')` (`*/*` with fetch metadata), which an app's own endpoint of
/// that name answers: taken for the stream, it never ended.
pub(crate) fn asks_for_stream<B>(req: &Request<B>) -> bool {
    if req.method() != Method::GET {
        return false;
    }
    let headers = req.headers();
    if headers
        .get("sec-fetch-dest")
        .is_some_and(|dest| dest.as_bytes() != b"empty")
    {
        return false;
    }
    // A browser's own request says so in its fetch metadata (`Sec-Fetch-Site`: Node's fetch
    // sends `Sec-Fetch-Mode` alone); wildcards from a browser are a `fetch` or XHR that left
    // `Accept` alone, never an `EventSource`.
    let tool = !headers.contains_key("sec-fetch-site");
    // The media ranges asked for (q > 0), without their parameters.
    let mut ranges = headers
        .get_all(header::ACCEPT)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .filter_map(|range| {
            let mut parts = range.split(|&b| b == b';');
            let media = parts.next().unwrap_or_default().trim_ascii();
            let refused = parts.any(|param| {
                let param = param.trim_ascii();
                param.len() > 2
                    && param[..2].eq_ignore_ascii_case(b"q=")
                    && param[2..].iter().all(|&b| b == b'0' || b == b'.')
            });
            (!media.is_empty() && !refused).then_some(media)
        })
        .peekable();
    if ranges.peek().is_none() {
        return tool;
    }
    let mut wildcards_only = true;
    for media in ranges {
        if media.eq_ignore_ascii_case(b"text/event-stream") {
            return true;
        }
        if media != b"*/*" && !media.eq_ignore_ascii_case(b"text/*") {
            wildcards_only = false;
        }
    }
    wildcards_only && tool
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut res = body::plain(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("hmr-proxy: use {allow}"),
    );
    res.headers_mut()
        .insert(header::ALLOW, http::HeaderValue::from_static(allow));
    res
}
