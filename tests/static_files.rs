//! Static mode (`--serve DIR`) through the in-process proxy: index files, content types, 404s,
//! traversal and symlink escapes, conditional and range requests, methods, caching headers, and
//! the README's demo.

use std::path::Path;

use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::support::{Proxy, client, get, raw, within};

const SECRET: &str = "top secret: outside the served folder";

/// A project directory holding `site/` (the served folder) and, next to it, files that must
/// never be reachable: `secret.txt` and `private/secret.txt`.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |rel: &str, text: &str| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("secret.txt", SECRET);
    write("private/secret.txt", SECRET);
    write("site/index.html", "<!doctype html><title>home</title>");
    write("site/docs/index.html", "<!doctype html><title>docs</title>");
    write("site/page.html", "<!doctype html><title>page</title>");
    write("site/style.css", "body { color: red }");
    write("site/app.js", "console.log('app');");
    write(
        "site/logo.svg",
        "<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>",
    );
    write("site/data.txt", "0123456789");
    dir
}

async fn serve(dir: &Path) -> Proxy {
    Proxy::start_in(dir, &["--serve", "site"]).await
}

/// The body as text. HTML pages are compared by a marker they contain, not byte for byte: the
/// proxy may add its client tag to them.
fn text(body: &Bytes) -> String {
    String::from_utf8_lossy(body).into_owned()
}

fn content_type(headers: &http::HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_html_for_the_root_and_subdirectories() {
    let dir = project();
    let proxy = serve(dir.path()).await;

    let (status, headers, body) = get(&proxy.url("/"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type(&headers).starts_with("text/html"),
        "{headers:?}"
    );
    assert!(
        text(&body).contains("<title>home</title>"),
        "{}",
        text(&body)
    );

    let (status, _, body) = get(&proxy.url("/docs/"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text(&body).contains("<title>docs</title>"),
        "{}",
        text(&body)
    );

    // Without the slash, relative links would resolve against the parent: redirect to add it.
    let (status, headers, _) = get(&proxy.url("/docs"), &[]).await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(
        headers.get(header::LOCATION).map(|v| v.as_bytes()),
        Some(&b"/docs/"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_types_by_extension() {
    let dir = project();
    let proxy = serve(dir.path()).await;
    for (path, expected) in [
        ("/style.css", "text/css"),
        ("/app.js", "javascript"),
        ("/logo.svg", "image/svg+xml"),
        ("/page.html", "text/html"),
        ("/data.txt", "text/plain"),
    ] {
        let (status, headers, _) = get(&proxy.url(path), &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            content_type(&headers).contains(expected),
            "{path}: {:?}",
            headers.get(header::CONTENT_TYPE)
        );
    }
    // Text says it is UTF-8 (a `.txt`, or a page without `<meta charset>`, read as windows-1252
    // garbled "Crème"); a page that names its charset keeps it; source maps are JSON.
    let site = dir.path().join("site");
    std::fs::write(site.join("notes.md"), "Crème brûlée").expect("write");
    std::fs::write(site.join("enc.html"), "<p>Crème brûlée</p>").expect("write");
    std::fs::write(
        site.join("latin.html"),
        "<meta charset=\"windows-1252\"><p>Cr\u{e8}me</p>",
    )
    .expect("write");
    std::fs::write(site.join("app.js.map"), "{}").expect("write");
    std::fs::write(site.join("lib.cjs"), "module.exports = 1;").expect("write");
    for (path, expected) in [
        ("/data.txt", "text/plain; charset=utf-8"),
        ("/notes.md", "text/markdown; charset=utf-8"),
        ("/enc.html", "text/html; charset=utf-8"),
        ("/latin.html", "text/html"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/app.js.map", "application/json; charset=utf-8"),
        ("/lib.cjs", "text/javascript; charset=utf-8"),
        ("/logo.svg", "image/svg+xml; charset=utf-8"),
    ] {
        let (status, headers, _) = get(&proxy.url(path), &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(content_type(&headers), expected, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_file_is_404() {
    let dir = project();
    let proxy = serve(dir.path()).await;
    for path in ["/nope.html", "/docs/nope.css", "/missing/dir/"] {
        let (status, headers, body) = get(&proxy.url(path), &[("sec-fetch-dest", "empty")]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(content_type(&headers), "text/html; charset=utf-8", "{path}");
        assert!(
            text(&body).contains(&format!("<code>{path}</code>")),
            "{path}"
        );
        assert!(
            !text(&body).contains("/__hmr/client.js"),
            "{path}: not a page load"
        );
    }
    // A tab on a file not written yet gets the client, so it reloads when the file appears.
    let navigation = [
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
    ];
    let (status, _, body) = get(&proxy.url("/nope.html"), &navigation).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text(&body).contains("/__hmr/client.js"), "{}", text(&body));
    // A file's name with a slash after it names a folder, which is not there.
    let (status, _, _) = get(&proxy.url("/data.txt/"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The site's own `404.html` answers a missing page, as GitHub Pages and Netlify answer it, with
/// the client in it (the tab reloads once the page is written); a script or an image that is
/// missing still gets the proxy's short page, and a folder with no `404.html` the proxy's too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sites_own_404_page_answers_a_missing_page() {
    let dir = project();
    std::fs::write(
        dir.path().join("site/404.html"),
        "<!doctype html><html><head><title>Lost</title></head><body>Lost in space</body></html>",
    )
    .unwrap();
    let proxy = serve(dir.path()).await;
    let page = [
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
        ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
    ];
    for path in ["/nope.html", "/blog/post", "/missing/dir/"] {
        let (status, headers, body) = get(&proxy.url(path), &page).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(content_type(&headers), "text/html; charset=utf-8", "{path}");
        let body = text(&body);
        assert!(body.contains("Lost in space"), "{path}: {body}");
        assert!(body.contains("/__hmr/client.js"), "{path}: {body}");
    }
    let (status, _, body) = get(&proxy.url("/gone.js"), &[("accept", "*/*")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!text(&body).contains("Lost in space"));

    std::fs::remove_file(dir.path().join("site/404.html")).unwrap();
    let (status, _, body) = get(&proxy.url("/nope.html"), &page).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text(&body).contains("<code>/nope.html</code>"));
}

/// A clean URL (`/page` for `page.html`) gets the page, as GitHub Pages, Netlify and Vite answer
/// it; `/page/` names a folder, which there is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_urls_get_their_html_page() {
    let dir = project();
    let proxy = serve(dir.path()).await;
    let page = [("accept", "text/html"), ("sec-fetch-dest", "document")];
    let (status, _, body) = get(&proxy.url("/page"), &page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text(&body).contains("<title>page</title>"), "{body:?}");
    assert!(text(&body).contains("/__hmr/client.js"), "{body:?}");
    let (status, _, _) = get(&proxy.url("/page/"), &page).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&proxy.url("/style"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "only .html is looked for");
}

/// With `--spa`, a page address that is no file (a single-page app's route, reloaded or linked
/// deep) gets the folder's `index.html`, with the client; a missing script, image or data request
/// is still a 404. Without it, the 404 page says that `--spa` is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_page_apps_routes_get_its_index_with_spa() {
    let dir = project();
    let page = [
        ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
        ("sec-fetch-dest", "document"),
    ];
    let spa = Proxy::start_in(dir.path(), &["--serve", "site", "--spa"]).await;
    for route in ["/app/users/42", "/settings", "/app/users/42/"] {
        let (status, headers, body) = get(&spa.url(route), &page).await;
        assert_eq!(status, StatusCode::OK, "{route}");
        assert!(
            text(&body).contains("<title>home</title>"),
            "{route}: {body:?}"
        );
        assert!(
            text(&body).contains("/__hmr/client.js"),
            "{route}: no client"
        );
        assert!(headers.get(header::ETAG).is_some(), "{route}");
    }
    // Files are what they are: present, or a 404.
    let (_, _, body) = get(&spa.url("/docs/"), &page).await;
    assert!(text(&body).contains("<title>docs</title>"));
    for (path, headers) in [
        ("/missing.js", &[("accept", "*/*")][..]),
        ("/img/missing.png", &page[..]),
        ("/app/users/42", &[("accept", "application/json")][..]),
    ] {
        let (status, _, _) = get(&spa.url(path), headers).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} {headers:?}");
    }
    let plain = serve(dir.path()).await;
    let (status, _, body) = get(&plain.url("/app/users/42"), &page).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text(&body).contains("--spa"), "{body:?}");
    let (_, _, body) = get(&plain.url("/missing.js"), &page).await;
    assert!(!text(&body).contains("--spa"), "{body:?}");
}

/// Files that hold secrets in a project are refused (the folder served is often the whole
/// project), whatever the spelling of the path; their neighbours are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_the_folder_are_refused() {
    let dir = project();
    for rel in [
        "site/.env",
        "site/.env.local",
        "site/config/.env.production",
        "site/.git/config",
        "site/certs/dev.pem",
        "site/certs/dev.CRT",
        "site/.environment.js",
        "site/env.js",
        "site/server.key",
        "site/cert.p12",
        "site/.envrc",
        "site/.npmrc",
        "site/.netrc",
        "site/.htpasswd",
        "site/.ssh/id_rsa",
        "site/backup/id_ed25519",
        "site/.aws/credentials",
        "site/.config/gh/hosts.yml",
        "site/credentials.json",
        "site/keys.js",
        "site/id_rsa.pub",
    ] {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, "TOKEN=s3cr3t").expect("write");
    }
    let proxy = serve(dir.path()).await;
    for path in [
        "/.env",
        "/.env.local",
        "/config/.env.production",
        "/%2eenv",
        "/./.env",
        "/.git/config",
        "/.git/",
        // As a case-insensitive disk (macOS's) would open them.
        "/.ENV",
        "/.Git/config",
        "/certs/dev.pem",
        "/certs/dev.CRT",
        // Private keys, credential files and folders (a home folder served by mistake).
        "/server.key",
        "/cert.p12",
        "/.envrc",
        "/.npmrc",
        "/.netrc",
        "/.htpasswd",
        "/.ssh/id_rsa",
        "/backup/id_ed25519",
        "/.aws/credentials",
        "/.config/gh/hosts.yml",
        "/credentials.json",
        "/.SSH/id_rsa",
    ] {
        let (status, _, body) = get(&proxy.url(path), &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(!text(&body).contains("s3cr3t"), "{path}");
        assert!(text(&body).contains("may hold secrets"), "{path}");
    }
    for path in ["/.environment.js", "/env.js", "/keys.js", "/id_rsa.pub"] {
        let (status, _, body) = get(&proxy.url(path), &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(text(&body), "TOKEN=s3cr3t", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_never_leaves_the_folder() {
    let dir = project();
    let proxy = serve(dir.path()).await;
    for target in [
        "/../secret.txt",
        "/docs/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/..%2fsecret.txt",
        "/..%2Fsecret.txt",
        "/%2F../secret.txt",
        "/docs/%2F..%2F..%2Fsecret.txt",
        "/%2F..%2F..%2Fsecret.txt",
        "/..%5csecret.txt",
        "/%2e%2e/private/secret.txt",
        "/%2Fetc%2Fpasswd",
        "//etc/passwd",
    ] {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let response = raw(proxy.addr, request.as_bytes(), None).await;
        let status_line = response.lines().next().unwrap_or_default();
        assert!(
            status_line.starts_with("HTTP/1.1 404") || status_line.starts_with("HTTP/1.1 400"),
            "{target}: {response}"
        );
        assert!(!response.contains(SECRET), "{target} leaked the secret");
        assert!(!response.contains("root:"), "{target} leaked /etc/passwd");
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_are_followed_only_inside_the_folder() {
    use std::os::unix::fs::symlink;

    let dir = project();
    let site = dir.path().join("site");
    symlink(dir.path().join("secret.txt"), site.join("leak.txt")).expect("symlink");
    symlink(dir.path().join("private"), site.join("leakdir")).expect("symlink");
    symlink("../secret.txt", site.join("relative-leak.txt")).expect("symlink");
    symlink(site.join("data.txt"), site.join("alias.txt")).expect("symlink");
    symlink("docs", site.join("manual")).expect("symlink");
    let proxy = serve(dir.path()).await;

    for path in ["/leak.txt", "/leakdir/secret.txt", "/relative-leak.txt"] {
        let (status, _, body) = get(&proxy.url(path), &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!text(&body).contains(SECRET), "{path} leaked the secret");
    }

    let (status, _, body) = get(&proxy.url("/alias.txt"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text(&body), "0123456789");

    let (status, _, body) = get(&proxy.url("/manual/"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text(&body).contains("<title>docs</title>"),
        "{}",
        text(&body)
    );
}

/// A directory's `index.html` is the file served for it, and is held to the same rule as any
/// file: a link out of the folder is not followed.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_html_that_links_out_of_the_folder_is_not_served() {
    use std::os::unix::fs::symlink;

    let dir = project();
    let site = dir.path().join("site");
    std::fs::remove_file(site.join("index.html")).expect("rm");
    symlink(dir.path().join("secret.txt"), site.join("index.html")).expect("symlink");
    std::fs::create_dir(site.join("sub")).expect("mkdir");
    symlink("../../private/secret.txt", site.join("sub/index.html")).expect("symlink");
    let proxy = serve(dir.path()).await;
    for (path, range) in [("/", None), ("/sub/", None), ("/", Some("bytes=0-3"))] {
        let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
        let (status, _, body) = get(&proxy.url(path), &headers).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} {range:?}");
        assert!(!text(&body).contains("top"), "{path} leaked the secret");
    }
}

/// Only regular files are served: opening a named pipe waits for a writer, and each request
/// for one held a thread of the file server until the process ended.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_pipe_is_not_a_file_to_serve() {
    let dir = project();
    let pipe = dir.path().join("site/pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let proxy = serve(dir.path()).await;
    let (status, _, _) = within("a named pipe's answer", get(&proxy.url("/pipe"), &[])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A path the file system refuses to look up (a name over 255 bytes) is not there: a 404, not
/// a server error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_too_long_for_the_file_system_is_404() {
    let dir = project();
    let proxy = serve(dir.path()).await;
    for path in [format!("/{}", "a".repeat(300)), "/a/".repeat(2000)] {
        let (status, _, body) = get(&proxy.url(&path), &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{}", text(&body));
    }
}

/// `//name` asks for the folder `name` like `/name` does, and its slash-adding redirect stays
/// on this site: `Location: //name/` would send the browser to the host `name`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_with_two_leading_slashes_never_redirects_off_the_site() {
    let dir = project();
    std::fs::create_dir(dir.path().join("site/evil.example")).expect("mkdir");
    let proxy = serve(dir.path()).await;
    for path in ["//evil.example", "///evil.example?x=1", "//docs"] {
        let reply = raw(
            proxy.addr,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
            None,
        )
        .await;
        let location = reply
            .lines()
            .find_map(|line| line.strip_prefix("location: "))
            .unwrap_or_else(|| panic!("{path}: no redirect in {reply}"));
        assert!(
            location.starts_with('/') && !location.starts_with("//"),
            "{path} → {location}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_modified_since_gives_304() {
    let dir = project();
    let proxy = serve(dir.path()).await;
    let (status, headers, _) = get(&proxy.url("/style.css"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let last_modified = headers
        .get(header::LAST_MODIFIED)
        .expect("Last-Modified")
        .to_str()
        .expect("ascii")
        .to_string();

    let (status, _, body) = get(
        &proxy.url("/style.css"),
        &[("if-modified-since", &last_modified)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());

    // A page a tab revalidates by date alone: the date cannot tell whether the copy is one with
    // the client (a fragment request's is not), so the page comes in full, with it.
    let nav = [("sec-fetch-dest", "document"), ("accept", "text/html")];
    let (_, headers, _) = get(&proxy.url("/page.html"), &nav).await;
    let since = headers[header::LAST_MODIFIED]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        headers[header::ETAG]
            .to_str()
            .expect("ascii")
            .starts_with("W/")
    );
    let mut asked = nav.to_vec();
    asked.push(("if-modified-since", &since));
    let (status, headers, body) = get(&proxy.url("/page.html"), &asked).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text(&body).contains("/__hmr/client.js"), "{}", text(&body));
    let tag = headers[header::ETAG].to_str().expect("ascii");
    assert!(tag.starts_with("W/") && tag.ends_with("-hmr\""), "{tag}");
}

/// A file saved twice within one second (the same size, the same whole-second `Last-Modified`)
/// is not "not modified" to a browser revalidating with both validators, as browsers do; an
/// unchanged file still is. The page's tag is weak (the client is injected), the sheet's strong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_save_within_one_second_is_not_taken_for_the_first() {
    let dir = project();
    let proxy = serve(dir.path()).await;
    let second = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let save = |rel: &str, content: &str, millis: u64| {
        let path = dir.path().join("site").join(rel);
        std::fs::write(&path, content).expect("write");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open")
            .set_modified(second + std::time::Duration::from_millis(millis))
            .expect("set mtime");
    };
    for (rel, first, again) in [
        ("style.css", "body { color: red }", "body { color: tan }"),
        (
            "page.html",
            "<!doctype html><p>one</p>",
            "<!doctype html><p>two</p>",
        ),
    ] {
        save(rel, first, 100);
        let url = proxy.url(&format!("/{rel}"));
        let (status, headers, _) = get(&url, &[]).await;
        assert_eq!(status, StatusCode::OK, "{rel}");
        let validator = |name| {
            headers
                .get(&name)
                .unwrap_or_else(|| panic!("{rel}: no {name}"))
                .to_str()
                .expect("ascii")
                .to_string()
        };
        let (etag, last_modified) = (validator(header::ETAG), validator(header::LAST_MODIFIED));
        assert_eq!(
            etag.starts_with("W/"),
            rel.ends_with(".html"),
            "{rel}: {etag}"
        );
        let revalidate = [
            ("if-none-match", etag.as_str()),
            ("if-modified-since", last_modified.as_str()),
        ];
        let (status, _, body) = get(&url, &revalidate).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{rel} unchanged");
        assert!(body.is_empty());

        save(rel, again, 600);
        let (status, headers, body) = get(&url, &revalidate).await;
        assert_eq!(status, StatusCode::OK, "{rel} saved again");
        // (Compared past the doctype: the page has the client tag after it.)
        assert!(
            text(&body).ends_with(&again[15..]),
            "{rel}: {}",
            text(&body)
        );
        assert_eq!(
            headers.get(header::LAST_MODIFIED).map(|v| v.as_bytes()),
            Some(last_modified.as_bytes()),
            "{rel}: the same second"
        );
        assert_ne!(
            headers.get(header::ETAG).map(|v| v.as_bytes()),
            Some(etag.as_bytes()),
            "{rel}"
        );
    }
}

/// A range asked for on condition of a version that is no longer on disk gets the whole file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_range_with_another_version_gives_the_whole_file() {
    let dir = project();
    let proxy = serve(dir.path()).await;
    let url = proxy.url("/data.txt");
    let (_, headers, _) = get(&url, &[]).await;
    let etag = headers
        .get(header::ETAG)
        .expect("ETag")
        .to_str()
        .expect("ascii")
        .to_string();
    let (status, _, body) = get(&url, &[("range", "bytes=0-3"), ("if-range", &etag)]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&body[..], b"0123");
    let (status, _, body) = get(
        &url,
        &[("range", "bytes=0-3"), ("if-range", "\"elsewhere\"")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"0123456789");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_request_gives_206() {
    let dir = project();
    let proxy = serve(dir.path()).await;
    let (status, headers, body) = get(&proxy.url("/data.txt"), &[("range", "bytes=0-3")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&body[..], b"0123");
    assert_eq!(
        headers.get(header::CONTENT_RANGE).map(|v| v.as_bytes()),
        Some(&b"bytes 0-3/10"[..])
    );
}

/// What HTTP says to ignore is ignored, and the whole file sent: several ranges, another unit, a
/// number past 64 bits, a range of an empty file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_the_server_cannot_honour_get_the_whole_file() {
    let dir = project();
    std::fs::write(dir.path().join("site/empty.txt"), "").expect("write");
    let proxy = serve(dir.path()).await;
    for (path, range, whole) in [
        ("/data.txt", "bytes=0-1,3-4", "0123456789"),
        ("/data.txt", "items=0-1", "0123456789"),
        ("/data.txt", "bytes=0-99999999999999999999999", "0123456789"),
        ("/empty.txt", "bytes=0-0", ""),
        ("/empty.txt", "bytes=-5", ""),
    ] {
        let (status, headers, body) = get(&proxy.url(path), &[("range", range)]).await;
        assert_eq!(status, StatusCode::OK, "{path} {range}: {}", text(&body));
        assert_eq!(text(&body), whole, "{path} {range}");
        assert!(
            headers.get(header::CONTENT_RANGE).is_none(),
            "{path} {range}"
        );
    }
    // A suffix range and an open-ended one are still honoured.
    let (status, _, body) = get(&proxy.url("/data.txt"), &[("range", "bytes=-3")]).await;
    assert_eq!(
        (status, text(&body).as_str()),
        (StatusCode::PARTIAL_CONTENT, "789")
    );
    let (status, _, body) = get(&proxy.url("/data.txt"), &[("range", "bytes=8-")]).await;
    assert_eq!(
        (status, text(&body).as_str()),
        (StatusCode::PARTIAL_CONTENT, "89")
    );
}

/// `If-Match` names the version the client holds: another version is 412, by strong comparison.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_with_another_version_is_412() {
    let dir = project();
    let proxy = serve(dir.path()).await;
    let url = proxy.url("/data.txt");
    let (_, headers, _) = get(&url, &[]).await;
    let etag = headers[header::ETAG].to_str().expect("ascii").to_string();
    let weak = format!("W/{etag}");
    for (tags, want) in [
        (etag.as_str(), StatusCode::OK),
        ("*", StatusCode::OK),
        ("\"elsewhere\", *", StatusCode::OK),
        ("\"elsewhere\"", StatusCode::PRECONDITION_FAILED),
        (weak.as_str(), StatusCode::PRECONDITION_FAILED),
    ] {
        let (status, _, _) = get(&url, &[("if-match", tags)]).await;
        assert_eq!(status, want, "If-Match: {tags}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_get_and_head_are_allowed() {
    let dir = project();
    let proxy = serve(dir.path()).await;
    for method in ["POST", "PUT", "DELETE"] {
        let req = http::Request::builder()
            .method(method)
            .uri(proxy.url("/data.txt"))
            .body(Full::new(Bytes::from_static(b"payload")))
            .expect("request");
        let res = within("response", client().request(req))
            .await
            .expect("response");
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(
            res.headers().get(header::ALLOW).map(|v| v.as_bytes()),
            Some(&b"GET, HEAD"[..]),
            "{method}"
        );
        within("body", res.into_body().collect())
            .await
            .expect("body");
    }

    let req = http::Request::head(proxy.url("/data.txt"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let res = within("response", client().request(req))
        .await
        .expect("response");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()
            .get(header::CONTENT_LENGTH)
            .map(|v| v.as_bytes()),
        Some(&b"10"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_revalidated_every_time() {
    let dir = project();
    let proxy = serve(dir.path()).await;
    for path in ["/", "/style.css", "/app.js"] {
        let (status, headers, _) = get(&proxy.url(path), &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
            Some(&b"no-cache"[..]),
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_demo_is_served() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let proxy = Proxy::start_in(repo, &["--serve", "examples/demo"]).await;

    let (status, headers, body) = get(&proxy.url("/"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type(&headers).starts_with("text/html"),
        "{headers:?}"
    );
    let page = text(&body);
    assert!(page.contains("<title>hmr-proxy demo</title>"), "{page}");
    assert!(page.contains("href=\"/css/site.css\""), "{page}");

    for (path, expected) in [
        ("/css/site.css", "text/css"),
        ("/js/app.js", "javascript"),
        ("/img/logo.svg", "image/svg+xml"),
    ] {
        let (status, headers, _) = get(&proxy.url(path), &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            content_type(&headers).contains(expected),
            "{path}: {headers:?}"
        );
    }
}

/// A file saved in place (truncated, then written, as some editors do) while it is served: every
/// answer is whole, with the length it says, never a connection cut off short of its
/// `Content-Length` (a stylesheet copy the browser drops as a broken response).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_saved_in_place_while_it_is_read_is_never_cut_short() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let dir = project();
    let css = dir.path().join("site/style.css");
    let proxy = serve(dir.path()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let saving = {
        let (stop, css) = (stop.clone(), css.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let padding = "x".repeat(20_000 + (n % 7) * 3_000);
                std::fs::write(&css, format!("body {{ color: red }} /* {padding} */\n"))
                    .expect("save");
                n += 1;
            }
            n
        })
    };
    let mut broken = Vec::new();
    for i in 0..300 {
        let req = http::Request::get(proxy.url(&format!("/style.css?n={i}")))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let res = within("response", client().request(req))
            .await
            .expect("response");
        let length: Option<usize> = res
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        match within("body", res.into_body().collect()).await {
            Ok(body) => {
                let got = body.to_bytes().len();
                if Some(got) != length {
                    broken.push(format!("{i}: {got} bytes, said {length:?}"));
                }
            }
            Err(err) => broken.push(format!("{i}: {err}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let saves = saving.join().expect("saver");
    assert!(saves > 10, "the file was saved {saves} times");
    assert!(
        broken.is_empty(),
        "{} of 300 broken: {broken:?}",
        broken.len()
    );
}
