//! The proxy's control endpoints: `GET /__hmr/status` and `POST /__hmr/reload`.
//!
//! Owns what they answer: status as JSON (version, upstream and whether it answers, watched
//! roots, open streams, batches sent, the files of a batch held for the upstream's restart), and a reload or a batch of paths broadcast on request, for
//! build tools that finish after the file change (a Go or Rust backend restarting). Who may call
//! them is `guard`'s business, checked by the router before these run.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Serialize};

use crate::body::{self, Body};
use std::collections::HashMap;

use crate::config::{Backend, Config, Route, Upstream};
use crate::proxy::health::{Check, Health, Reach};
use crate::rebuild::Rebuilds;
use crate::sse::Hub;
use crate::watch::{Change, ChangeBatch};

/// A reload request body larger than this is refused: a list of paths, not an upload.
const MAX_RELOAD_BODY: usize = 64 * 1024;

/// State the control endpoints read.
pub struct Control {
    hub: Hub,
    /// Reachability by upstream authority.
    health: HashMap<String, Health>,
    /// The default upstream (`None` when serving a folder).
    upstream: Option<Upstream>,
    routes: Vec<Route>,
    roots: Vec<RootStatus>,
    rebuilds: Rebuilds,
}

#[derive(Serialize, Clone)]
struct RootStatus {
    dir: String,
    url: String,
}

#[derive(Serialize)]
struct Status<'a> {
    version: &'static str,
    upstream: Option<UpstreamStatus>,
    routes: Vec<RouteStatus<'a>>,
    watching: &'a [RootStatus],
    clients: usize,
    batches_sent: u64,
    /// The files of the batch held until the upstream restarts (empty when none is).
    awaiting_restart: Vec<String>,
}

#[derive(Serialize)]
struct RouteStatus<'a> {
    path: &'a str,
    #[serde(flatten)]
    upstream: UpstreamStatus,
}

#[derive(Serialize)]
struct UpstreamStatus {
    url: String,
    /// `null` until the first request or probe.
    reachable: Option<bool>,
    /// How a restart is noticed while tabs listen: `"listening socket"` (watched on this
    /// machine), `"connect"` (only a restart that leaves the port closed when the probe
    /// connects), `null` (no tab).
    restart_check: Option<&'static str>,
    /// The probe waits for a tab to listen (or a request to find the upstream down), with no
    /// timer running.
    probe_resting: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReloadRequest {
    #[serde(default)]
    paths: Vec<String>,
}

impl Control {
    pub fn new(
        config: &Config,
        hub: Hub,
        health: HashMap<String, Health>,
        rebuilds: Rebuilds,
    ) -> Control {
        let upstream = match &config.backend {
            Backend::Upstream(up) => Some(up.clone()),
            Backend::Static { .. } => None,
        };
        let roots = config
            .watch
            .roots
            .iter()
            .map(|r| RootStatus {
                dir: r.dir.display().to_string(),
                url: r.url.clone(),
            })
            .collect();
        Control {
            hub,
            health,
            upstream,
            routes: config.routes.clone(),
            roots,
            rebuilds,
        }
    }

    pub fn status(&self) -> Response<Body> {
        let status = Status {
            version: env!("CARGO_PKG_VERSION"),
            upstream: self.upstream.as_ref().map(|up| self.upstream_status(up)),
            routes: self
                .routes
                .iter()
                .map(|route| RouteStatus {
                    path: &route.prefix,
                    upstream: self.upstream_status(&route.upstream),
                })
                .collect(),
            watching: &self.roots,
            clients: self.hub.clients(),
            batches_sent: self.hub.batches_sent(),
            awaiting_restart: self.rebuilds.held_paths(),
        };
        json(
            StatusCode::OK,
            serde_json::to_vec(&status).unwrap_or_default(),
        )
    }

    fn upstream_status(&self, upstream: &Upstream) -> UpstreamStatus {
        let health = self.health.get(upstream.authority.as_str());
        let reach = health.map_or(Reach::Unknown, Health::current);
        let check = health.map_or(Check::Idle, Health::check);
        UpstreamStatus {
            url: upstream.origin(),
            reachable: match reach {
                Reach::Unknown => None,
                Reach::Up => Some(true),
                Reach::Down => Some(false),
            },
            restart_check: match check {
                Check::Idle | Check::Resting => None,
                Check::Listener => Some("listening socket"),
                Check::Connect => Some("connect"),
            },
            probe_resting: check == Check::Resting,
        }
    }

    /// Broadcast a full reload (empty body) or the given paths as one batch.
    pub async fn reload<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let bytes = match Limited::new(req.into_body(), MAX_RELOAD_BODY)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return body::plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "hmr-proxy: send at most 64 KiB of JSON: {\"paths\": [\"css/site.css\"]}",
                );
            }
        };
        let request: ReloadRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
            ReloadRequest::default()
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(request) => request,
                Err(err) => {
                    return body::plain(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "hmr-proxy: {err}; send nothing for a full reload, or {{\"paths\": [\"css/site.css\"]}}"
                        ),
                    );
                }
            }
        };
        let first_url = self.roots.first().map_or("/", |r| r.url.as_str());
        let changes: Vec<Change> = request
            .paths
            .into_iter()
            .map(|path| match path.strip_prefix('/') {
                // A URL path: the browser matches it as is.
                Some(rel) => Change {
                    path: rel.to_string(),
                    url: path.clone(),
                },
                None => Change {
                    url: format!("{first_url}{path}"),
                    path,
                },
            })
            .collect();
        let reload = changes.is_empty();
        let id = self.hub.publish_asked(
            &ChangeBatch {
                changes,
                reload,
                reason: None,
            },
            "POST /__hmr/reload",
        );
        json(
            StatusCode::ACCEPTED,
            serde_json::to_vec(&serde_json::json!({ "id": id })).unwrap_or_default(),
        )
    }
}

fn json(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut res = Response::new(body::full(bytes));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
