//! No-upstream mode: serve a folder.
//!
//! Owns the folder server: tower-http's `ServeDir` does content types, `index.html` for
//! directories, 404s, date-based conditional requests and ranges; this module adds what it lacks
//! for a dev tool: a check that the file it would open (a directory's `index.html` included) does
//! not leave the folder through a symlink and is a regular file (`ServeDir` already refuses `..`
//! and its encoded forms; opening a named pipe would hold one of its threads until a writer came),
//! one leading slash (its redirects must stay on the site), the ranges and `If-Match` it gets
//! wrong, `GET`/`HEAD` only, `Cache-Control: no-cache` so
//! the browser revalidates every file instead of showing a stale copy after a save, and an `ETag`
//! from the file's full modification time, size and inode. `Last-Modified` has whole seconds: a
//! page saved twice within one second answered the browser's revalidation with 304 and the tab
//! kept the first version. Browsers send `If-None-Match` with `If-Modified-Since`, and the tag
//! wins (RFC 9110, 13.1.3). A missing file is a small HTML page, not `ServeDir`'s empty 404, so a
//! tab opened on a file not written yet has the client and reloads once it is. A file up to
//! [`READ_WHOLE`] is read before its headers go out, so the length sent is the length read: an
//! editor that saves in place (truncate, then write) while the file is read made `ServeDir`'s
//! answer shorter than its `Content-Length`, which the browser drops as a broken response (a
//! stylesheet copy that never loads). Larger files stream. Files that may hold secrets (`.env`,
//! keys, `.git/`) are refused, as Vite refuses them.

use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Empty};
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::body::{self, Body};
use crate::etag::matches;
use crate::inject::{Injector, RequestFacts};

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
    /// A page address that is no file answers with the folder's `index.html` (`--spa`).
    spa: bool,
}

impl StaticFiles {
    /// `root` must be canonical (config makes it so).
    pub fn new(root: PathBuf, injector: Injector) -> Self {
        let serve = ServeDir::new(&root).append_index_html_on_directories(true);
        StaticFiles {
            root: Arc::new(root),
            serve,
            injector,
            spa: false,
        }
    }

    /// Answer a single-page app's routes with the folder's `index.html` (see [`app_route`]).
    pub fn with_spa(self, spa: bool) -> Self {
        StaticFiles { spa, ..self }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Answer one request from the folder; with `-v`, one debug line for it, as the proxy logs
    /// each request it forwards.
    pub async fn serve<B>(&self, req: Request<B>) -> Response<Body> {
        // Copied only when the line will be written.
        let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| {
            (
                req.method().clone(),
                req.uri().path().to_owned(),
                Instant::now(),
            )
        });
        let res = self.answer(req).await;
        if let Some((method, path, started)) = logged {
            tracing::debug!(
                "{method} {path} → {} in {:.1?}",
                res.status().as_u16(),
                started.elapsed()
            );
        }
        res
    }

    async fn answer<B>(&self, req: Request<B>) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut res = body::plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "hmr-proxy serves files here: only GET and HEAD",
            );
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        // `ServeDir` adds a directory's slash by redirecting to the path as given: `//site`
        // would come back as `Location: //site/`, which a browser reads as another host.
        let req = single_leading_slash(req);
        let Some(file) = file_path(&self.root, req.uri().path()) else {
            // `..` and the like: `ServeDir` answers those itself.
            return self.serve_dir(req, None).await;
        };
        if let Some(secret) = secret(&file, &self.root) {
            return body::plain(
                StatusCode::FORBIDDEN,
                format!(
                    "hmr-proxy does not serve {secret} from the folder: it may hold secrets \
                     (keys, tokens, a repository's history)"
                ),
            );
        }
        let slash = req.uri().path().ends_with('/');
        let mut folder = false;
        let found = match on_disk(&self.root, &file).await {
            // `ServeDir` redirects to the path with its slash.
            OnDisk::Directory if !slash => {
                return self.serve_dir(req, None).await;
            }
            OnDisk::Directory => {
                folder = true;
                on_disk(&self.root, &file.join("index.html")).await
            }
            // `a.txt/` names a folder, and there is none (`ServeDir` served the file).
            OnDisk::File(_) if slash => OnDisk::Absent,
            found => found,
        };
        let missing = match found {
            OnDisk::File(metadata) => return self.serve_dir(req, Some(&metadata)).await,
            OnDisk::Outside => return body::plain(StatusCode::NOT_FOUND, "not found"),
            OnDisk::Unreadable => return unreadable(req.uri().path(), &file),
            OnDisk::Absent | OnDisk::Directory if folder => Missing::Index,
            OnDisk::Absent | OnDisk::Directory => Missing::File,
        };
        // A clean URL (`/contact` for `contact.html`), as GitHub Pages, Netlify and Vite answer
        // it: the page the site links to without its extension.
        if matches!(missing, Missing::File)
            && !req.uri().path().ends_with('/')
            && let Some(name) = file.file_name()
            && !name.to_string_lossy().contains('.')
        {
            let mut page = file.clone().into_os_string();
            page.push(".html");
            let page = PathBuf::from(page);
            if let OnDisk::File(metadata) = on_disk(&self.root, &page).await {
                let path = format!("{}.html", req.uri().path());
                if let Ok(uri) = path.parse::<Uri>() {
                    let (mut parts, body) = req.into_parts();
                    parts.uri = uri;
                    return self
                        .serve_dir(Request::from_parts(parts, body), Some(&metadata))
                        .await;
                }
            }
        }
        // A route of a single-page app (its history router's `/app/users/42`): the app's page,
        // which reads the address itself. Without `--spa`, the 404 says so when it may be one.
        let route = matches!(missing, Missing::File) && app_route(&req);
        let missing = if route
            && let OnDisk::File(metadata) = on_disk(&self.root, &self.root.join("index.html")).await
        {
            if self.spa {
                return self.serve_dir(to_index(req), Some(&metadata)).await;
            }
            Missing::Route
        } else {
            missing
        };
        let facts = self.injector.facts(&req);
        let page = match self.own_not_found_page(&req).await {
            Some(page) => page,
            None => not_found_page(req.uri().path(), missing),
        };
        self.finish(&facts, page, None).await
    }

    /// The site's own `404.html` at the folder's top, for a page asked for (its `Accept` names
    /// HTML), as GitHub Pages, Netlify and Cloudflare Pages answer a missing address: the proxy's
    /// own page showed instead, and the site's could not be seen until it was deployed. It gets
    /// the client like any page, so a tab on a file not written yet still reloads once it is.
    async fn own_not_found_page<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        if !accepts_html(req) {
            return None;
        }
        let file = self.root.join("404.html");
        let OnDisk::File(metadata) = on_disk(&self.root, &file).await else {
            return None;
        };
        if metadata.len() > READ_WHOLE as u64 {
            return None;
        }
        let bytes = tokio::fs::read(&file).await.ok()?;
        let mut res = Response::new(if req.method() == Method::HEAD {
            body::empty()
        } else {
            body::full(bytes)
        });
        *res.status_mut() = StatusCode::NOT_FOUND;
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        content_type(res.headers_mut(), "/404.html", Some(&file)).await;
        Some(res)
    }

    /// `ServeDir`'s answer for a file whose `metadata` was read (`None`: for `ServeDir` to
    /// refuse or redirect), with the tag and the caching header. The tag's own conditions are
    /// decided here, before `ServeDir` looks at the dates.
    async fn serve_dir<B>(
        &self,
        req: Request<B>,
        metadata: Option<&std::fs::Metadata>,
    ) -> Response<Body> {
        let facts = self.injector.facts(&req);
        let mut req = req.map(|_| Empty::<Bytes>::new());
        // A page revalidates only a copy that has the client, as through the proxy.
        self.injector.prepare_request(&facts, req.headers_mut());
        let etag = metadata.and_then(entity_tag);
        if let (Some(etag), Some(metadata)) = (&etag, metadata) {
            let headers = req.headers_mut();
            // If-Match before the rest (RFC 9110, 13.2.2), by strong comparison: the tag of
            // a rewritten page is weak and never matches.
            if let Some(tags) = headers.remove(header::IF_MATCH) {
                headers.remove(header::IF_UNMODIFIED_SINCE);
                if !matches(&tags, etag, true) {
                    let res = body::plain(
                        StatusCode::PRECONDITION_FAILED,
                        "hmr-proxy: the file is not the version If-Match names",
                    );
                    return self.finish(&facts, res, Some(etag.clone())).await;
                }
            }
            if let Some(tags) = headers.remove(header::IF_NONE_MATCH) {
                headers.remove(header::IF_MODIFIED_SINCE);
                if matches(&tags, etag, false) {
                    let mut res = Response::new(body::empty());
                    *res.status_mut() = StatusCode::NOT_MODIFIED;
                    // The file's tag (the injector marks it again for a rewritten page's
                    // copy, as the browser holds it).
                    res.headers_mut().insert(header::ETAG, etag.clone());
                    return self.finish(&facts, res, None).await;
                }
            }
            // A range asked for on condition of another version gets the whole file instead.
            if let Some(tag) = headers.remove(header::IF_RANGE)
                && tag != *etag
            {
                headers.remove(header::RANGE);
            }
            // What `ServeDir` answers 416 for although HTTP says to ignore it and send the whole
            // file: several ranges, another unit, a number past 64 bits, any range of an empty
            // file (it answered `0-0` with 206 and an impossible `Content-Range`).
            if headers
                .get(header::RANGE)
                .is_some_and(|range| metadata.len() == 0 || !is_one_byte_range(range))
            {
                headers.remove(header::RANGE);
            }
        }
        let path = req.uri().path().to_owned();
        let res: Result<_, Infallible> = self.serve.clone().oneshot(req).await;
        let res = match res {
            // The file was there a moment ago (`metadata`): `ServeDir` says 404 for a file it
            // may not open too.
            Ok(res)
                if res.status() == StatusCode::NOT_FOUND
                    && metadata.is_some()
                    && let Some(file) = file_path(&self.root, &path)
                    && std::fs::File::open(&file)
                        .is_err_and(|err| err.kind() == std::io::ErrorKind::PermissionDenied) =>
            {
                return unreadable(&path, &file);
            }
            Ok(res) if res.status() == StatusCode::NOT_FOUND => {
                not_found_page(&path, Missing::File)
            }
            Ok(res) if facts.method == Method::HEAD => res.map(body::boxed),
            Ok(res) => read_whole(res.map(body::boxed)).await,
            Err(never) => match never {},
        };
        let mut res = res;
        if res.status().is_success() {
            let file = file_path(&self.root, &path);
            content_type(res.headers_mut(), &path, file.as_deref()).await;
        }
        self.finish(&facts, res, etag).await
    }

    /// Every answer's caching header, the tag on a success (not on `ServeDir`'s date-based 304:
    /// the browser's copy of a page holds the weak tag of the rewritten page, which a strong one
    /// would replace), and the client for a page.
    async fn finish(
        &self,
        facts: &RequestFacts,
        mut res: Response<Body>,
        etag: Option<HeaderValue>,
    ) -> Response<Body> {
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Some(etag) = etag
            && res.status().is_success()
        {
            res.headers_mut().insert(header::ETAG, etag);
        }
        self.injector.apply(facts, res).await
    }
}

/// The `Content-Type` a browser reads the file right with: source maps are JSON and `.cjs` is
/// JavaScript (the type table has neither), and text says it is UTF-8, as live-server and
/// browser-sync say: without a charset a browser reads a `.txt`, `.md` or `.csv` (and a page
/// without `<meta charset>`) as windows-1252, and "Crème" came out "CrÃ¨me". A page that names
/// its charset in its first 1024 bytes (where browsers look for it) keeps it: a header would
/// override its `<meta>`.
async fn content_type(headers: &mut http::HeaderMap, path: &str, file: Option<&Path>) {
    let own = if path.ends_with(".map") {
        Some("application/json")
    } else if path.ends_with(".cjs") {
        Some("text/javascript")
    } else {
        None
    };
    if let Some(own) = own {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(own));
    }
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let lower = value.to_ascii_lowercase();
    let text = lower.starts_with("text/")
        || ["javascript", "json", "xml", "svg"]
            .iter()
            .any(|kind| lower.contains(kind));
    if !text || lower.contains("charset") {
        return;
    }
    if lower.starts_with("text/html") && names_a_charset(file).await {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&format!("{value}; charset=utf-8")) {
        headers.insert(header::CONTENT_TYPE, value);
    }
}

/// Whether a page's first 1024 bytes say `charset` (a `<meta charset>` or `http-equiv`).
async fn names_a_charset(file: Option<&Path>) -> bool {
    use tokio::io::AsyncReadExt as _;
    let Some(file) = file else {
        return false;
    };
    let mut head = Vec::with_capacity(1024);
    let read = match tokio::fs::File::open(file).await {
        Ok(f) => f.take(1024).read_to_end(&mut head).await,
        Err(err) => Err(err),
    };
    read.is_ok() && memchr::memmem::find(&head.to_ascii_lowercase(), b"charset").is_some()
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

/// What a 404 lacks.
#[derive(Clone, Copy)]
enum Missing {
    File,
    /// A folder's `index.html`.
    Index,
    /// A file, at an address that may be a single-page app's route (see [`app_route`]), in a
    /// folder with an `index.html`.
    Route,
}

/// Whether a request may be a browser loading a single-page app at one of its routes: a page
/// (it accepts HTML) at an address whose last segment has no extension (`/app/users/42`, not
/// `/app.js` or `/logo.png`), as Vite's fallback decides.
fn app_route<B>(req: &Request<B>) -> bool {
    let last = req.uri().path().rsplit('/').next().unwrap_or_default();
    accepts_html(req) && !last.contains('.')
}

/// Whether the request's `Accept` names HTML: a page, not a script or an image.
fn accepts_html<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .is_some_and(|accept| memchr::memmem::find(accept.as_bytes(), b"text/html").is_some())
}

/// The request, for the folder's `index.html`.
fn to_index<B>(req: Request<B>) -> Request<B> {
    let (mut parts, body) = req.into_parts();
    parts.uri = Uri::from_static("/index.html");
    Request::from_parts(parts, body)
}

/// `ServeDir`'s 404 has no body. A page instead, which gets the client like any other: a tab on a
/// file not written yet reloads once it is (the change is one the tab cannot patch).
fn not_found_page(path: &str, missing: Missing) -> Response<Body> {
    let path = body::escape_html(path);
    let what = match missing {
        Missing::File => format!("<code>{path}</code> is not in the served folder"),
        Missing::Index => format!("The folder <code>{path}</code> has no <code>index.html</code>"),
        Missing::Route => format!(
            "<code>{path}</code> is not in the served folder. If it is a route of a single-page \
             app, start hmr-proxy with <code>--spa</code>: it answers such addresses with the \
             folder's <code>index.html</code>"
        ),
    };
    body::html(
        StatusCode::NOT_FOUND,
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>404 Not Found</title></head>\n\
             <body><h1>404 Not Found</h1><p>{what}. \
             This tab reloads when it appears.</p></body></html>\n"
        ),
    )
}

/// A file (or a folder on its way) the proxy's user may not read: a 403 that says so, not a
/// 404 that says it is missing (a container's user, uid 10001, on a bind mount of files only
/// their owner reads).
fn unreadable(path: &str, file: &Path) -> Response<Body> {
    tracing::warn!(
        "GET {path}: {} cannot be read by the user hmr-proxy runs as (permission denied)",
        file.display()
    );
    body::plain(
        StatusCode::FORBIDDEN,
        format!(
            "hmr-proxy cannot read {path}: permission denied for the user it runs as; make the \
             file and its folders readable (chmod a+r FILE, a+x on folders) or run it as their owner"
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

/// What in `file` (below `root`) is never served, named for the answer, as Vite's `fs.deny`
/// refuses it, and more: environment files (`.env`, `.env.local`, direnv's `.envrc`),
/// certificates and private keys (`*.pem`, `*.crt`, `*.key`, `*.p12`, SSH's `id_rsa`), files
/// that hold passwords or tokens (`.npmrc`, `.netrc`, `.htpasswd`), and the folders of version
/// control and of credentials (`.git/config` names the remote with its token; `.ssh`, `.aws`).
/// The folder served is often a whole project (the working directory, by default), at times a
/// home folder, and with `--listen 0.0.0.0` the network can ask for them.
fn secret(file: &Path, root: &Path) -> Option<&'static str> {
    const VCS_DIRS: [&str; 3] = [".git", ".hg", ".svn"];
    // `.config` holds tools' tokens in a home folder (`gh`, `gcloud`).
    const CREDENTIAL_DIRS: [&str; 7] = [
        ".ssh", ".aws", ".gnupg", ".docker", ".kube", ".azure", ".config",
    ];
    const KEY_SUFFIXES: [&str; 7] = [".pem", ".crt", ".key", ".p12", ".pfx", ".jks", ".keystore"];
    const SSH_KEYS: [&str; 4] = ["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"];
    const CREDENTIAL_FILES: [&str; 9] = [
        "credentials.json",
        ".npmrc",
        ".netrc",
        ".htpasswd",
        ".pgpass",
        ".git-credentials",
        ".pypirc",
        ".boto",
        ".s3cfg",
    ];
    let below = file.strip_prefix(root).ok()?;
    // Without regard to case: on a case-insensitive disk (macOS's, by default) `/.ENV` opens
    // `.env`.
    let names = below
        .components()
        .filter_map(|part| part.as_os_str().to_str());
    let mut last = "";
    for name in names {
        let is = |list: &[&str]| list.iter().any(|n| name.eq_ignore_ascii_case(n));
        if is(&VCS_DIRS) {
            return Some("version control's folders");
        }
        if is(&CREDENTIAL_DIRS) {
            return Some("credential folders");
        }
        last = name;
    }
    let name = last.to_ascii_lowercase();
    if name == ".env" || name.starts_with(".env.") || name == ".envrc" {
        return Some("`.env` files");
    }
    if KEY_SUFFIXES.iter().any(|s| name.ends_with(s)) || SSH_KEYS.contains(&name.as_str()) {
        return Some("certificates and keys");
    }
    CREDENTIAL_FILES
        .contains(&name.as_str())
        .then_some("files that hold credentials")
}

/// A strong tag for a file's version on disk: modification time to the nanosecond, size and
/// inode (an editor's save by rename is a new inode).
fn entity_tag(metadata: &std::fs::Metadata) -> Option<HeaderValue> {
    use std::os::unix::fs::MetadataExt;
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

/// Whether a `Range` value is one `bytes` range whose numbers fit in 64 bits: the only kind
/// `ServeDir` answers as HTTP says to.
fn is_one_byte_range(range: &HeaderValue) -> bool {
    let number = |text: &str| !text.is_empty() && text.parse::<u64>().is_ok();
    let Some(spec) = range
        .to_str()
        .ok()
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return false;
    };
    match spec.trim().split_once('-') {
        Some(("", last)) => number(last),
        Some((first, last)) => number(first) && (last.is_empty() || number(last)),
        None => false,
    }
}

/// The request with its path's leading slashes folded into one.
fn single_leading_slash<B>(mut req: Request<B>) -> Request<B> {
    let path = req.uri().path();
    if !path.starts_with("//") {
        return req;
    }
    let mut target = format!("/{}", path.trim_start_matches('/'));
    if let Some(query) = req.uri().query() {
        target.push('?');
        target.push_str(query);
    }
    if let Ok(uri) = target.parse() {
        *req.uri_mut() = uri;
    }
    req
}

/// What a URL's path below the root is on disk, symlinks followed.
enum OnDisk {
    /// A regular file inside the root.
    File(std::fs::Metadata),
    Directory,
    /// Nothing that can be served: missing, unreadable, a name too long, a pipe or a socket
    /// (opening a pipe would wait for a writer, holding a thread).
    Absent,
    /// Resolves to somewhere outside the root.
    Outside,
    /// A folder on the way may not be searched by this process's user.
    Unreadable,
}

async fn on_disk(root: &Path, path: &Path) -> OnDisk {
    let real = match tokio::fs::canonicalize(path).await {
        Ok(real) => real,
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            return OnDisk::Unreadable;
        }
        Err(_) => return OnDisk::Absent,
    };
    if !real.starts_with(root) {
        return OnDisk::Outside;
    }
    match tokio::fs::metadata(&real).await {
        Ok(metadata) if metadata.is_file() => OnDisk::File(metadata),
        Ok(metadata) if metadata.is_dir() => OnDisk::Directory,
        _ => OnDisk::Absent,
    }
}
