//! The one table of what answers which request.
//!
//! Owns routing: the target policy first (`guard`), then the proxy's own endpoints under
//! `/__hmr/`, then everything else to the backend: the upstream (`proxy`) or a folder
//! (`static_files`). It knows no HTTP connection details (`server`) and no forwarding details.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::{self, Body};
use crate::config::{Backend, Config, OWN_PREFIX};
use crate::inject::Injector;
use crate::proxy::Proxy;
use crate::shutdown::Shutdown;
use crate::static_files::StaticFiles;
use crate::{client, guard};

/// Routes requests. Cheap to clone: one per connection.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    /// The bound address, for the absolute-form check.
    local: SocketAddr,
}

enum Target {
    Proxy(Proxy),
    Static(StaticFiles),
}

impl Router {
    pub fn new(config: &Config, local: SocketAddr, shutdown: Shutdown) -> Self {
        let injector = Injector::new(config.inject);
        let target = match &config.backend {
            Backend::Upstream(upstream) => Target::Proxy(Proxy::new(
                upstream,
                config.proxy.clone(),
                local,
                shutdown,
                injector,
            )),
            Backend::Static { root, .. } => {
                Target::Static(StaticFiles::new(root.clone(), injector))
            }
        };
        Router {
            inner: Arc::new(Inner { target, local }),
        }
    }

    /// Answer one request. Never fails: every problem becomes a response.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if let Some(refusal) = guard::refusal(&req, self.inner.local) {
            tracing::debug!(
                "refused {} {}: {}",
                req.method(),
                req.uri(),
                refusal.status()
            );
            return refusal;
        }
        if let Some(own) = req.uri().path().strip_prefix(OWN_PREFIX) {
            return own_endpoint(own, &req);
        }
        match &self.inner.target {
            Target::Proxy(proxy) => proxy.forward(req, peer).await,
            Target::Static(files) => files.serve(req).await,
        }
    }
}

/// `/__hmr/<name>`: the proxy's own endpoints.
fn own_endpoint<B>(name: &str, req: &Request<B>) -> Response<Body> {
    match name {
        "client.js" => client::response(req.method()),
        // Answers without touching the upstream, so a container health check passes while the
        // app is still starting.
        "health" => body::plain(StatusCode::OK, "ok"),
        _ => body::plain(StatusCode::NOT_FOUND, "hmr-proxy: no such endpoint"),
    }
}
