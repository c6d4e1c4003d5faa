//! No-upstream mode: serve a folder.
//!
//! Owns the folder server: tower-http's `ServeDir` does content types, `index.html` for
//! directories, 404s, conditional requests and ranges; this module adds what it lacks for a dev
//! tool: a check that a path does not leave the folder through a symlink (`ServeDir` already
//! refuses `..` and its encoded forms), `GET`/`HEAD` only, and `Cache-Control: no-cache` so the
//! browser revalidates every file instead of showing a stale copy after a save.

use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Empty;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::body::{self, Body};
use crate::inject::{Injector, RequestFacts};

/// Serves one directory. Cheap to clone.
#[derive(Clone)]
pub struct StaticFiles {
    /// Canonical root; every served file's canonical path must start with it.
    root: Arc<PathBuf>,
    serve: ServeDir,
    /// HTML files get the client like proxied pages do.
    injector: Injector,
}

impl StaticFiles {
    /// `root` must be canonical (config makes it so).
    pub fn new(root: PathBuf, injector: Injector) -> Self {
        let serve = ServeDir::new(&root).append_index_html_on_directories(true);
        StaticFiles {
            root: Arc::new(root),
            serve,
            injector,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Answer one request from the folder.
    pub async fn serve<B>(&self, req: Request<B>) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut res = body::plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "hmr-proxy serves files here: only GET and HEAD",
            );
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        if leaves_root(&self.root, req.uri().path()).await {
            return body::plain(StatusCode::NOT_FOUND, "not found");
        }
        let facts = RequestFacts::of(&req);
        let req = req.map(|_| Empty::<Bytes>::new());
        let res: Result<_, Infallible> = self.serve.clone().oneshot(req).await;
        let mut res = match res {
            Ok(res) => res.map(body::boxed),
            Err(never) => match never {},
        };
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        self.injector.apply(&facts, res)
    }
}

/// Whether the file a URL path names resolves (through symlinks) to somewhere outside `root`.
/// Paths `ServeDir` itself refuses (`..`, absolute components) and missing files are left to it.
async fn leaves_root(root: &Path, url_path: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(url_path.trim_start_matches('/'));
    let Ok(decoded) = decoded.decode_utf8() else {
        return false;
    };
    let mut path = root.to_path_buf();
    for component in Path::new(&*decoded).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    match tokio::fs::canonicalize(&path).await {
        Ok(real) => !real.starts_with(root),
        Err(_) => false,
    }
}
