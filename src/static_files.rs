//! No-upstream mode: serve a folder.
//!
//! Owns the folder server: tower-http's `ServeDir` does content types, `index.html` for
//! directories, 404s, date-based conditional requests and ranges; this module adds what it lacks
//! for a dev tool: a check that a path does not leave the folder through a symlink (`ServeDir`
//! already refuses `..` and its encoded forms), `GET`/`HEAD` only, `Cache-Control: no-cache` so
//! the browser revalidates every file instead of showing a stale copy after a save, and an `ETag`
//! from the file's full modification time, size and inode. `Last-Modified` has whole seconds: a
//! page saved twice within one second answered the browser's revalidation with 304 and the tab
//! kept the first version. Browsers send `If-None-Match` with `If-Modified-Since`, and the tag
//! wins (RFC 9110, 13.1.3). A missing file is a small HTML page, not `ServeDir`'s empty 404, so a
//! tab opened on a file not written yet has the client and reloads once it is. A file up to
//! [`READ_WHOLE`] is read before its headers go out, so the length sent is the length read: an
//! editor that saves in place (truncate, then write) while the file is read made `ServeDir`'s
//! answer shorter than its `Content-Length`, which the browser drops as a broken response (a
//! stylesheet copy that never loads). Larger files stream.

use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::body::{self, Body};
use crate::inject::Injector;

/// Files up to this size are read whole before they are answered (see the module docs): the
/// pages, stylesheets and scripts a dev server saves, not its videos.
const READ_WHOLE: usize = 1024 * 1024;

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
        let Some(file) = file_path(&self.root, req.uri().path()) else {
            // `..` and the like: `ServeDir` answers those itself.
            return self.serve_dir(req, None).await;
        };
        if leaves_root(&self.root, &file).await {
            return body::plain(StatusCode::NOT_FOUND, "not found");
        }
        let etag = entity_tag(&file).await;
        self.serve_dir(req, etag).await
    }

    /// `ServeDir`'s answer, with the tag and the caching header; the tag's own conditions are
    /// decided here, before `ServeDir` looks at the dates.
    async fn serve_dir<B>(&self, req: Request<B>, etag: Option<HeaderValue>) -> Response<Body> {
        let facts = self.injector.facts(&req);
        let mut req = req.map(|_| Empty::<Bytes>::new());
        if let Some(etag) = &etag {
            let headers = req.headers_mut();
            if let Some(tags) = headers.remove(header::IF_NONE_MATCH) {
                headers.remove(header::IF_MODIFIED_SINCE);
                if matches_any(&tags, etag) {
                    let mut res = Response::new(body::empty());
                    *res.status_mut() = StatusCode::NOT_MODIFIED;
                    res.headers_mut().insert(header::ETAG, etag.clone());
                    res.headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    return self.injector.apply(&facts, res).await;
                }
            }
            // A range asked for on condition of another version gets the whole file instead.
            if let Some(tag) = headers.remove(header::IF_RANGE)
                && tag != *etag
            {
                headers.remove(header::RANGE);
            }
        }
        let path = req.uri().path().to_owned();
        let res: Result<_, Infallible> = self.serve.clone().oneshot(req).await;
        let mut res = match res {
            Ok(res) if res.status() == StatusCode::NOT_FOUND => not_found_page(&path),
            Ok(res) if facts.method == Method::HEAD => res.map(body::boxed),
            Ok(res) => read_whole(res.map(body::boxed)).await,
            Err(never) => match never {},
        };
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Some(etag) = etag
            && res.status().is_success()
        {
            res.headers_mut().insert(header::ETAG, etag);
        }
        self.injector.apply(&facts, res).await
    }
}

/// A whole small file's answer, read before it goes out, with the length read (see the module
/// docs). A file that fails to read is a 500 that says to save again, not a connection cut off.
async fn read_whole(res: Response<Body>) -> Response<Body> {
    let small = res
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|len| len <= READ_WHOLE);
    if res.status() != StatusCode::OK || !small {
        return res;
    }
    let (mut parts, mut body) = res.into_parts();
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    // A file that grew past the limit while it was read is cut off there: the
                    // save's batch has the browser fetch it again.
                    let room = READ_WHOLE.saturating_sub(bytes.len());
                    bytes.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Err(err) => {
                tracing::warn!("reading a served file failed: {err}");
                return body::plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "hmr-proxy: the file could not be read (it may have been saved meanwhile)",
                );
            }
        }
    }
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Response::from_parts(parts, body::full(bytes.freeze()))
}

/// `ServeDir`'s 404 has no body. A page instead, which gets the client like any other: a tab on a
/// file not written yet reloads once it is (the change is one the tab cannot patch).
fn not_found_page(path: &str) -> Response<Body> {
    let path = body::escape_html(path);
    body::html(
        StatusCode::NOT_FOUND,
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>404 Not Found</title></head>\n\
             <body><h1>404 Not Found</h1><p><code>{path}</code> is not in the served folder. \
             This tab reloads when it appears.</p></body></html>\n"
        ),
    )
}

/// The file a URL path names below `root` (`index.html` for a directory), or `None` for a path
/// that is not a plain relative one (`ServeDir` refuses those).
fn file_path(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(url_path.trim_start_matches('/'));
    let decoded = decoded.decode_utf8().ok()?;
    let mut path = root.to_path_buf();
    for component in Path::new(&*decoded).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(path)
}

/// A strong tag for the version of `path` (or of its `index.html`) on disk now: modification time
/// to the nanosecond, size and inode (an editor's save by rename is a new inode).
async fn entity_tag(path: &Path) -> Option<HeaderValue> {
    use std::os::unix::fs::MetadataExt;
    let mut metadata = tokio::fs::metadata(path).await.ok()?;
    if metadata.is_dir() {
        metadata = tokio::fs::metadata(path.join("index.html")).await.ok()?;
    }
    let modified = metadata
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let tag = format!(
        "\"{:x}.{:x}-{:x}-{:x}\"",
        modified.as_secs(),
        modified.subsec_nanos(),
        metadata.len(),
        metadata.ino()
    );
    HeaderValue::from_str(&tag).ok()
}

/// Whether an `If-None-Match` list names `etag` (weak comparison: an injected page's tag is the
/// weak form of its file's), or is `*`.
fn matches_any(tags: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(tags) = tags.to_str() else {
        return false;
    };
    let ours = etag.to_str().unwrap_or_default();
    tags.split(',').map(str::trim).any(|tag| {
        tag == "*"
            || tag.strip_prefix("W/").unwrap_or(tag) == ours.strip_prefix("W/").unwrap_or(ours)
    })
}

/// Whether `path` (below `root`) resolves through symlinks to somewhere outside it. Missing files
/// are left to `ServeDir`.
async fn leaves_root(root: &Path, path: &Path) -> bool {
    match tokio::fs::canonicalize(path).await {
        Ok(real) => !real.starts_with(root),
        Err(_) => false,
    }
}
