//! Forwarding through the real proxy to a real upstream: bodies, streaming, headers, redirects,
//! cookies, WebSockets, refusals, upstream failures and graceful shutdown.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::bin::{self, Running};
use crate::support::{self, Proxy, Upstream, get, raw, read_until, upstream, within};

fn json(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body).expect("json body")
}

/// A page's `<title>`.
fn title(page: &str) -> &str {
    page.split_once("<title>")
        .and_then(|(_, rest)| rest.split_once("</title>"))
        .map_or("", |(title, _)| title)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_and_bodies_round_trip_byte_exact() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;
    let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    for method in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"] {
        let req = http::Request::builder()
            .method(method)
            .uri(proxy.url("/echo"))
            .body(Full::new(Bytes::from(payload.clone())))
            .unwrap();
        let res = within("echo", support::client().request(req))
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{method}");
        assert_eq!(res.headers()["x-echo-method"], method);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.as_ref(), payload.as_slice(), "{method} body changed");
    }
    let (status, _, body) = get(&proxy.url("/some/path?q=1&r=%20"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body, "upstream saw /some/path");
    let (_, _, body) = get(&proxy.url("/headers?q=1&r=%20"), &[]).await;
    assert_eq!(json(&body)["uri"], "/headers?q=1&r=%20");
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_in_bounded_memory() {
    const SIZE: u64 = 256 * 1024 * 1024;
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;
    let before = peak_rss_kib();

    // Download: count bytes as they arrive, keep none.
    let res = within(
        "download",
        support::client().request(
            http::Request::get(proxy.url(&format!("/bytes/{SIZE}")))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    let mut body = res.into_body();
    let mut total = 0u64;
    within("download body", async {
        while let Some(frame) = body.frame().await {
            total += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
        }
    })
    .await;
    assert_eq!(total, SIZE);

    // Upload: a generated stream of unknown length (chunked), counted by the upstream.
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let chunks = (SIZE / chunk.len() as u64) as usize;
    let frames = futures_util::stream::iter(
        std::iter::repeat_n(chunk, chunks).map(|c| Ok::<_, std::io::Error>(Frame::data(c))),
    );
    let client = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(proxy.url("/count"))
        .body(StreamBody::new(frames))
        .unwrap();
    let res = within("upload", client.request(req)).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, SIZE.to_string());

    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 96,
        "peak memory grew by {grown_mib} MiB while moving 2 × 256 MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_events_arrive_one_by_one() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;
    let req = http::Request::get(proxy.url("/events"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = within("events", support::client().request(req))
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    for n in 1..=3 {
        if n > 1 {
            // The upstream sends event n only now: it can only arrive if nothing buffers.
            upstream.release("events");
        }
        let frame = within("event", body.frame()).await.unwrap().unwrap();
        let data = frame.into_data().unwrap();
        assert_eq!(data, format!("data: event {n}\n\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_go_and_forwarding_headers_come() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;
    let (_, _, body) = get(
        &proxy.url("/headers"),
        &[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "do not forward"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("x-forwarded-for", "10.1.2.3"),
            ("te", "gzip"),
            ("x-app", "kept"),
        ],
    )
    .await;
    let seen = json(&body);
    let headers = &seen["headers"];
    for gone in ["x-secret", "keep-alive", "proxy-authorization", "te"] {
        assert!(
            headers.get(gone).is_none(),
            "{gone} reached the upstream: {seen}"
        );
    }
    assert_eq!(headers["x-app"][0], "kept");
    assert_eq!(headers["x-forwarded-for"][0], "10.1.2.3, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"][0], "http");
    assert_eq!(headers["x-forwarded-host"][0], proxy.addr.to_string());
    assert_eq!(headers["host"][0], upstream.addr.to_string());
    assert!(headers["via"][0].as_str().unwrap().contains("hmr-proxy"));
    assert_eq!(seen["version"], "HTTP/1.1");

    let (_, headers, _) = get(&proxy.url("/hop"), &[]).await;
    assert!(headers.get("x-private").is_none(), "{headers:?}");
    assert!(headers.get("keep-alive").is_none(), "{headers:?}");
    assert_eq!(headers["x-public"], "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_host_sends_the_browsers_host() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &["--keep-host"]).await;
    let (_, _, body) = get(&proxy.url("/headers"), &[]).await;
    assert_eq!(json(&body)["headers"]["host"][0], proxy.addr.to_string());
}

/// A page that links to the upstream's own origin (a framework building absolute URLs from the
/// `Host` it was sent) reaches the tab linking to the proxy, in every spelling and form, even with
/// each URL split across the upstream's frames; a link to another port stays. A fragment (Turbo
/// Drive's `fetch`, htmx, a Turbo Frame), compressed or not, gets its links re-pointed and no
/// client: a Turbo visit left every link on the page pointing at the upstream, and the next click
/// took the tab off the proxy, its live reload gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_in_pages_to_the_upstream_point_at_the_proxy() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;
    let (up, me) = (upstream.addr.port(), proxy.addr);
    let navigation = [("accept", "text/html"), ("sec-fetch-dest", "document")];
    let (status, _, page) = get(&proxy.url("/links"), &navigation).await;
    assert_eq!(status, 200);
    let page = String::from_utf8_lossy(&page);
    for expected in [
        format!("href=\"http://{me}/app.css\""),
        format!("\"ajax\":\"http:\\/\\/{me}\\/ajax\""),
        format!("href=\"//{me}/about\""),
        format!("srcset=\"http://{me}/a.png 1x, http://{me}/b.png 2x\""),
        format!("href=\"http://127.0.0.1:{up}0/other\""),
        format!("href=\"http://{me}\">home"),
        format!("\"ws://{me}/live\""),
        "<script type=\"module\" src=\"/__hmr/client.js\"></script>".to_string(),
    ] {
        assert!(page.contains(&expected), "{expected} in {page}");
    }
    assert!(!page.contains(&format!("localhost:{up}/")), "{page}");

    let turbo = [
        (
            "accept",
            "text/vnd.turbo-stream.html, text/html, application/xhtml+xml",
        ),
        ("sec-fetch-dest", "empty"),
        ("accept-encoding", "gzip"),
    ];
    let htmx = [("hx-request", "true"), ("accept-encoding", "gzip")];
    let frame = [("turbo-frame", "main"), ("sec-fetch-dest", "empty")];
    for (path, request) in [
        ("/links", &turbo[..]),
        ("/links/gzip", &turbo[..]),
        ("/links/gzip", &htmx[..]),
        ("/links", &frame[..]),
    ] {
        let (status, headers, fragment) = get(&proxy.url(path), request).await;
        assert_eq!(status, 200);
        let fragment = String::from_utf8_lossy(&fragment);
        for expected in [
            format!("href=\"http://{me}/app.css\""),
            format!("href=\"//{me}/about\""),
            format!("\"ws://{me}/live\""),
        ] {
            assert!(
                fragment.contains(&expected),
                "{path} {request:?}: {expected} in {fragment}"
            );
        }
        assert!(!fragment.contains("/__hmr/"), "{path}: {fragment}");
        assert!(headers.get("content-encoding").is_none(), "{headers:?}");
        if path.ends_with("gzip") {
            // The upstream's validator, weak: the bytes are the proxy's, the content the same.
            assert_eq!(headers["etag"], "W/\"links-1\"");
        }
    }
}

/// A page served with no `Content-Type` at all, which a browser shows as HTML when its first
/// bytes look like a document, gets the client (a bare Node `res.end(html)` got none); text that
/// does not look like one is left as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untyped_page_is_sniffed_as_browsers_do() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;
    let navigation = [("accept", "text/html"), ("sec-fetch-dest", "document")];
    let (_, headers, page) = get(&proxy.url("/untyped/page"), &navigation).await;
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("/__hmr/client.js"), "{page}");
    assert!(page.ends_with("<body>hi</body></html>"), "{page}");
    assert_eq!(headers["content-type"], "text/html");
    let (_, headers, text) = get(&proxy.url("/untyped/text"), &navigation).await;
    assert_eq!(text, "plain words, then <b>some markup</b>");
    assert!(headers.get("content-type").is_none(), "{headers:?}");
    // `nosniff`: the browser shows it as text, and so it is left.
    let (_, headers, page) = get(&proxy.url("/untyped/nosniff"), &navigation).await;
    assert!(!String::from_utf8_lossy(&page).contains("/__hmr/"));
    assert!(headers.get("content-type").is_none(), "{headers:?}");
    // Not a navigation: left alone.
    let (_, _, fetched) = get(&proxy.url("/untyped/page"), &[("sec-fetch-dest", "empty")]).await;
    assert!(!String::from_utf8_lossy(&fetched).contains("/__hmr/"));
}

/// Behind a TLS front end on this machine (ngrok, a Codespaces port, a local Caddy), which says
/// `X-Forwarded-Proto: https`, the tab's origin is `https://`: re-pointed links and redirects
/// say so (an `http://` stylesheet on an https page is blocked as mixed content), and the
/// upstream hears `https`, as it would behind that front end alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_local_tls_front_end_urls_stay_https() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;
    let me = proxy.addr;
    let front = [
        ("accept", "text/html"),
        ("sec-fetch-dest", "document"),
        ("x-forwarded-proto", "https"),
    ];
    let (_, _, page) = get(&proxy.url("/links"), &front).await;
    let page = String::from_utf8_lossy(&page);
    for expected in [
        format!("href=\"https://{me}/app.css\""),
        format!("\"ajax\":\"https:\\/\\/{me}\\/ajax\""),
        format!("href=\"//{me}/about\""),
        format!("\"wss://{me}/live\""),
    ] {
        assert!(page.contains(&expected), "{expected} in {page}");
    }
    let (_, headers, _) = get(&proxy.url("/redirect"), &front).await;
    assert_eq!(headers["location"], format!("https://{me}/target"));
    let (_, _, body) = get(&proxy.url("/headers"), &front).await;
    assert_eq!(json(&body)["headers"]["x-forwarded-proto"][0], "https");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_cookies_keep_the_browser_on_the_proxy() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;
    let (status, headers, _) = get(&proxy.url("/redirect"), &[]).await;
    assert_eq!(status, 302);
    assert_eq!(headers["location"], format!("http://{}/target", proxy.addr));

    // Through a browser-like Host name the rewritten origin follows what the browser used.
    let (_, headers, _) = get(
        &proxy.url("/redirect"),
        &[("host", &format!("localhost:{}", proxy.addr.port()))],
    )
    .await;
    assert_eq!(
        headers["location"],
        format!("http://localhost:{}/target", proxy.addr.port())
    );

    let (_, headers, _) = get(&proxy.url("/cookie"), &[]).await;
    let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
    assert_eq!(
        cookies,
        [
            "sid=abc; Path=/; HttpOnly",
            "csrf=x; Secure; SameSite=None; Path=/"
        ]
    );
    // A tab on a LAN address over plain http, where browsers drop `Secure` cookies (and with
    // them the app's session): the cookie comes without `Secure`, and `SameSite=None`, which
    // needs it, as `Lax`. Behind a TLS front end it stays as set.
    let lan = [("host", "192.168.1.20:3000")];
    let (_, headers, _) = get(&proxy.url("/cookie"), &lan).await;
    let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
    assert_eq!(
        cookies,
        ["sid=abc; Path=/; HttpOnly", "csrf=x; SameSite=Lax; Path=/"]
    );
    let front = [
        ("host", "192.168.1.20:3000"),
        ("x-forwarded-proto", "https"),
    ];
    let (_, headers, _) = get(&proxy.url("/cookie"), &front).await;
    let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies[1], "csrf=x; Secure; SameSite=None; Path=/");

    // Without a Host (HTTP/1.0) the origin is the address listened on, as a browser can open it:
    // never `0.0.0.0`.
    let dir = tempfile::tempdir().expect("tempdir");
    let url = upstream.url();
    let any = Proxy::start_in(dir.path(), &["--listen", "0.0.0.0:0", &url]).await;
    let port = any.addr.port();
    let reply = raw(
        ([127, 0, 0, 1], port).into(),
        b"GET /redirect HTTP/1.0\r\n\r\n",
        Some("\r\n\r\n"),
    )
    .await;
    let location = reply
        .lines()
        .find_map(|line| line.strip_prefix("location: "))
        .unwrap_or_else(|| panic!("no location in {reply}"));
    assert_eq!(location, format!("http://127.0.0.1:{port}/target"));
}

/// A WebSocket through the proxy at `path`, open and echoing (one message there and back).
async fn echoing_websocket(
    proxy: std::net::SocketAddr,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let (mut ws, _) = within(
        "websocket handshake",
        tokio_tungstenite::connect_async(format!("ws://{proxy}{path}")),
    )
    .await
    .expect("handshake through the proxy");
    ws.send(Message::text(path)).await.unwrap();
    assert_eq!(
        within("echo", ws.next()).await.unwrap().unwrap(),
        Message::text(path)
    );
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_proxy() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;
    let (mut ws, res) = within(
        "websocket handshake",
        tokio_tungstenite::connect_async(format!("ws://{}/ws", proxy.addr)),
    )
    .await
    .expect("handshake through the proxy");
    assert_eq!(res.status(), 101);
    for msg in [
        Message::text("hello through the proxy"),
        Message::binary(vec![0u8, 1, 2, 255]),
    ] {
        ws.send(msg.clone()).await.unwrap();
        let echoed = within("echo", ws.next()).await.unwrap().unwrap();
        assert_eq!(echoed, msg);
    }
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_proxy_attempts_are_refused() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;
    for target in [
        "http://example.com/".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://{}/headers", upstream.addr),
    ] {
        let reply = raw(
            proxy.addr,
            format!("GET {target} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
                .as_bytes(),
            None,
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{target}: {reply}");
        assert!(reply.contains("not a forward proxy"), "{reply}");
    }
    let reply = raw(
        proxy.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        Some("\r\n\r\n"),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");

    // Absolute-form naming the proxy itself is ordinary HTTP and is served.
    let reply = raw(
        proxy.addr,
        format!(
            "GET http://{}/ok HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            proxy.addr, proxy.addr
        )
        .as_bytes(),
        None,
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("upstream saw /ok"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_gives_a_helpful_502_then_recovers() {
    let addr = support::dead_addr().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}");
    let proxy = Proxy::start_in(dir.path(), &[&url]).await;

    let (status, headers, body) = get(&proxy.url("/"), &[("accept", "text/html,*/*")]).await;
    assert_eq!(status, 502);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains(&url), "{page}");
    assert!(page.contains("connection refused"), "{page}");
    assert!(page.contains("reloads by itself"), "{page}");
    assert!(
        page.contains(r#"<script type="module" src="/__hmr/client.js">"#),
        "{page}"
    );
    assert!(headers.contains_key("x-hmr-proxy-unavailable"));

    let (status, headers, body) = get(&proxy.url("/api"), &[("accept", "application/json")]).await;
    assert_eq!(status, 502);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        body,
        format!("hmr-proxy: nothing is listening at {url} (connection refused)\n")
    );

    // The upstream comes back on the same address: the next request goes through.
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let _upstream = Upstream::serve(listener);
    let (status, headers, body) = get(&proxy.url("/back"), &[("accept", "text/html")]).await;
    assert_eq!(status, 200);
    assert!(!headers.contains_key("x-hmr-proxy-unavailable"));
    assert_eq!(body, "upstream saw /back");
}

/// A dev server down on a port in the kernel's ephemeral range (where one on a random port
/// lives): Linux gives the proxy's connections to it each port of that range in turn, in time
/// the dev server's own, and that connection "succeeds" with itself (TCP's simultaneous open).
/// It must count as refused like the others: it read its own request back as the answer (a 502
/// "answered with a response hmr-proxy cannot read") and held the port the dev server was about
/// to listen on (closed, it stayed there in `TIME_WAIT` for a minute). Linux since 5.19 steps
/// through the range by small random strides, so a walk of it may skip the port: three walks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_to_a_down_upstream_that_meets_itself_counts_as_refused() {
    let Some((low, high)) = support::ports::ephemeral_range() else {
        eprintln!("skipped: no Linux ephemeral port range here");
        return;
    };
    // connect() walks the ports of the range's first parity first; binding port 0 prefers the
    // other parity, so another test seldom takes this one meanwhile.
    let port = (low..=high)
        .rev()
        .filter(|p| (p - low) % 2 == 0)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in the ephemeral range");
    let walk = usize::from(high - low) / 2 + 1;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let proxy = Proxy::start_in(dir.path(), &[&url]).await;
    let refused = format!("hmr-proxy: nothing is listening at {url} (connection refused)\n");

    let client = support::client();
    let callers = 4;
    let each = (3 * walk).div_ceil(callers);
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (client, target, refused) = (client.clone(), proxy.url("/api"), refused.clone());
            tokio::spawn(async move {
                for _ in 0..each {
                    let req = http::Request::get(&target)
                        .header("accept", "application/json")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let res = client.request(req).await.expect("the proxy answers");
                    let status = res.status();
                    let body = res.into_body().collect().await.unwrap().to_bytes();
                    if status != 502 || body != refused.as_bytes() {
                        return Some(format!("{status}: {}", String::from_utf8_lossy(&body)));
                    }
                }
                None
            })
        })
        .collect();
    for task in tasks {
        let odd = within("the requests", task).await.unwrap();
        assert_eq!(
            odd, None,
            "a request to the down upstream was answered otherwise"
        );
    }
    // The dev server can start on its port at once: none of the proxy's connections that met
    // themselves holds it (closed normally, one stays in `TIME_WAIT` for a minute). Read from
    // the kernel's table, not by binding the port: other tests' connections take ports of this
    // range as their own end, and one may hold this one right now. Until none, for a few
    // seconds (well short of `TIME_WAIT`'s minute): the proxy's probe of the down upstream may be
    // between such a connect and its reset.
    let none = async {
        // Unreadable, the table would prove nothing: a failure, not a pass.
        while support::ports::self_connections(port).expect("the kernel's TCP table") > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), none)
        .await
        .is_err()
    {
        panic!("connections that met themselves still hold port {port}");
    }
}

/// A dev server that counts the requests reaching it and answers each with `200 here`; a
/// connection that sends nothing (a connect that only looks) is no request.
struct Counting {
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Counting {
    fn serve(listener: tokio::net::TcpListener) -> Counting {
        use std::sync::atomic::Ordering;
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        async {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from("here"),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Counting { requests, task }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stop listening (connections already open stay, as when a server is killed they would
    /// not: what matters here is that new connections are refused).
    async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The waiting page asks the proxy's own `/__hmr/upstream` whether the dev server is back, and
/// the proxy tells by connecting, sending the server nothing: the page used to ask its own URL
/// with `HEAD`, which ran the app's handler for it (Go's `net/http` runs a `GET` handler for a
/// `HEAD`: a form handler ran with an empty form), and each try while it was down was a red 502
/// in the console. The answer is always 200; the upstream asked is the one serving the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiting_page_asks_the_proxy_whether_the_server_is_back_not_the_app() {
    let addr = support::dead_addr().await;
    let api = support::dead_addr().await;
    let url = format!("http://{addr}");
    let route = format!("/api=http://{api}");
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(dir.path(), &["--route", &route, &url]).await;

    let (status, _, body) = get(&proxy.url("/form"), &[("accept", "text/html")]).await;
    assert_eq!(status, 502);
    let page = String::from_utf8_lossy(&body);
    assert!(
        page.contains(r#"fetch("/__hmr/upstream?path=" + location.pathname"#),
        "{page}"
    );
    assert!(!page.contains("location.href"), "{page}");

    let back = |path: &str| {
        let url = proxy.url(&format!("/__hmr/upstream?path={path}"));
        async move {
            let (status, headers, body) = get(&url, &[]).await;
            assert_eq!(status, 200);
            assert_eq!(headers["content-type"], "application/json");
            assert_eq!(headers["cache-control"], "no-store");
            json(&body)["up"]
                .as_bool()
                .unwrap_or_else(|| panic!("{body:?}"))
        }
    };
    // Asked again until the answer changes: one answer stands for a moment for every tab.
    let until = |path: &'static str, up: bool| async move {
        within("the poll's answer to change", async {
            while back(path).await != up {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    };
    assert!(!back("/form").await);

    // The dev server comes back on its address: the poll says so, and nothing it asked reached
    // the server.
    let mut server = Counting::serve(tokio::net::TcpListener::bind(addr).await.expect("rebind"));
    until("/form", true).await;
    for _ in 0..5 {
        assert!(back("/form").await);
    }
    assert_eq!(server.requests(), 0, "the poll reached the app");
    // A path under a route is asked of that route's upstream, which is still down.
    assert!(!back("/api/users").await);
    // The page itself goes through: the first request the server sees.
    let (status, _, body) = get(&proxy.url("/form"), &[("accept", "text/html")]).await;
    assert_eq!((status.as_u16(), body.as_ref()), (200, b"here".as_ref()));
    assert_eq!(server.requests(), 1);

    // As every own endpoint: GET and HEAD only, and only for the hosts the proxy answers.
    let ask = |method: &str, host: &str| {
        format!(
            "{method} /__hmr/upstream?path=/form HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    for (method, host, want) in [
        ("HEAD", "localhost", "HTTP/1.1 200"),
        ("POST", "localhost", "HTTP/1.1 405"),
        ("GET", "rebound.example", "HTTP/1.1 403"),
    ] {
        let reply = raw(proxy.addr, ask(method, host).as_bytes(), Some("\r\n")).await;
        assert!(reply.starts_with(want), "{method} from {host}: {reply}");
    }

    // Down again: the poll says so.
    server.stop().await;
    until("/form", false).await;
    assert_eq!(server.requests(), 1);
}

/// A dev server that dies under the requests it takes: reads each whole (a connect that sends
/// nothing is passed over), then closes the connection without an answer; with `exits`, closes
/// its listening socket first, after the first request, as a process that exits does, and the
/// task ends. Counts the requests it took in `taken`.
fn dies_under_requests(
    listener: tokio::net::TcpListener,
    exits: bool,
    taken: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    use tokio::io::AsyncReadExt;
    tokio::spawn(async move {
        let mut listener = Some(listener);
        while let Some(Ok((mut stream, _))) = match &listener {
            Some(listener) => Some(listener.accept().await),
            None => None,
        } {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // The head, then as many body bytes as it declares: closing with bytes unread
            // would reset the connection rather than close it.
            let complete = loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break false,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|n| n.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break true;
                    }
                }
            };
            if !complete {
                continue;
            }
            taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if exits {
                listener = None;
            }
            drop(stream);
        }
    })
}

/// A dev server that dies while a form is being answered (a restart after a save, a crash):
/// the page says that, in words about the dev server (it read "client error (SendRequest):
/// connection closed before message completed", as if the browser had failed), and that the
/// POST was not sent again, since sending it twice could do its work twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_cut_off_by_the_dev_server_says_so_and_is_not_sent_again() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let _server = dies_under_requests(listener, false, taken.clone());
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(dir.path(), &[&url]).await;

    let post = |accept: &'static str| {
        let req = http::Request::post(proxy.url("/submit"))
            .header("accept", accept)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from("q=1")))
            .unwrap();
        async move {
            let res = within("response", support::client().request(req))
                .await
                .unwrap();
            let status = res.status();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, text) = post("application/json").await;
    assert_eq!(status, 502);
    assert_eq!(
        text,
        format!(
            "hmr-proxy: {url} closed the connection before answering (the dev server may have \
             restarted or crashed); the POST was not sent again, as POST is not idempotent\n"
        )
    );
    let (status, page) = post("text/html").await;
    assert_eq!(status, 502);
    assert!(
        page.contains("closed the connection before answering"),
        "{page}"
    );
    assert!(
        !page.contains("SendRequest") && !page.contains("client error"),
        "{page}"
    );
    assert!(page.contains("next save"), "{page}");
    // It waits for a save, not for the server: titled by what happened.
    assert_eq!(title(&page), format!("502 · {url} closed the connection"));
    // Each POST reached the server once.
    assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// A GET cut off by a dev server that exits (a restart) is sent again once, and finds nothing
/// listening: the answer says both (it said only "connection refused", hiding that the server
/// went away under the request), and the page waits for the server, as for any outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_cut_off_by_a_restart_says_so_and_what_sending_it_again_found() {
    for accept in ["application/json", "text/html"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server = dies_under_requests(listener, true, taken.clone());
        let dir = tempfile::tempdir().unwrap();
        let proxy = Proxy::start_in(dir.path(), &[&url]).await;
        let (status, _, body) = get(&proxy.url("/page"), &[("accept", accept)]).await;
        assert_eq!(status, 502);
        let text = String::from_utf8_lossy(&body);
        if accept == "text/html" {
            assert!(
                text.contains("closed the connection before answering"),
                "{text}"
            );
            assert!(text.contains("connection refused"), "{text}");
            assert!(text.contains("reloads by itself"), "{text}");
        } else {
            assert_eq!(
                text,
                format!(
                    "hmr-proxy: {url} closed the connection before answering the GET (the dev \
                     server may have restarted or crashed); sent again, nothing is listening \
                     at {url} (connection refused)\n"
                )
            );
        }
        within("the server's end", server).await.unwrap();
        assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}

/// An upstream given as `localhost` that refuses names the addresses tried (`localhost` is
/// 127.0.0.1 alone on many systems, `::1` first on others), and when a server listens on that
/// port of the other loopback family (a Node dev server on `::1`), the address to give instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_localhost_names_where_it_tried_and_the_other_loopback_address() {
    let resolved: Vec<std::net::SocketAddr> = tokio::net::lookup_host(("localhost", 80))
        .await
        .expect("localhost resolves")
        .collect();
    let v4 = resolved.iter().any(|a| a.is_ipv4());
    let v6 = resolved.iter().any(|a| a.is_ipv6());
    // The family `localhost` does not resolve to here, if one (and this machine has it).
    let other = match (v4, v6) {
        (true, false) => Some("[::1]:0"),
        (false, true) => Some("127.0.0.1:0"),
        _ => None,
    };
    // A port free on both families: bound on the other one, then let go until it is needed.
    let other = match other {
        Some(other) => tokio::net::TcpListener::bind(other).await.ok(),
        None => None,
    };
    let (port, there) = match &other {
        Some(listener) => {
            let there = listener.local_addr().unwrap();
            (there.port(), Some(there))
        }
        None => (support::dead_addr().await.port(), None),
    };
    drop(other);
    let url = format!("http://localhost:{port}");
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(dir.path(), &[&url]).await;
    let tried: Vec<String> = resolved
        .iter()
        .map(|a| std::net::SocketAddr::new(a.ip(), port).to_string())
        .collect();
    let refused = format!(
        "hmr-proxy: nothing is listening at {url} (connection refused at {}",
        tried.join(" and ")
    );

    // Nothing on the other family yet: the addresses tried, nothing more.
    let (status, _, body) = get(&proxy.url("/"), &[]).await;
    assert_eq!(status, 502);
    assert_eq!(body, format!("{refused})\n"));

    let Some(there) = there else {
        println!("skipped the other loopback family: localhost resolves to both here, or no ::1");
        return;
    };
    // A dev server on the other family: the address to give instead, on the page too.
    let listener = tokio::net::TcpListener::bind(there)
        .await
        .expect("the port again");
    let _server = Upstream::serve(listener);
    let (status, _, body) = get(&proxy.url("/"), &[]).await;
    assert_eq!(status, 502);
    assert_eq!(
        body,
        format!(
            "{refused}); a server listens on {there}, which localhost does not resolve to here: \
             give hmr-proxy http://{there} instead\n"
        )
    );
    let (_, _, page) = get(&proxy.url("/"), &[("accept", "text/html")]).await;
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.contains(&format!("give hmr-proxy http://{there} instead")),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_gives_504_after_the_response_timeout() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &["--response-timeout", "300ms"]).await;
    let (status, _, body) = get(&proxy.url("/hang"), &[]).await;
    assert_eq!(status, 504);
    assert!(
        String::from_utf8_lossy(&body).contains("sent no response within 300 ms"),
        "{body:?}"
    );
    // A tab gets a page that waits for the next save (the client is in it), not one that polls:
    // a dev server that answers `HEAD` at once but not this page would be reloaded into the same
    // failure every few seconds.
    let navigation = [("accept", "text/html"), ("sec-fetch-dest", "document")];
    let (status, _, body) = get(&proxy.url("/hang"), &navigation).await;
    assert_eq!(status, 504);
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("next save"), "{page}");
    assert!(!page.contains("fetch("), "{page}");
    // Titled by what happened: "waiting for" read as if the dev server were still starting.
    assert_eq!(
        title(&page),
        format!("504 · {} sent no response in time", upstream.url())
    );
    assert!(
        page.contains(r#"<script type="module" src="/__hmr/client.js">"#),
        "{page}"
    );
}

/// An upload that takes longer than the response timeout (a big file over a phone's Wi-Fi) is not
/// the upstream being slow: the timeout counts from the upload's last bytes. The pauses are the
/// subject of the test (a slow sender), not a wait for something to happen; each is far below the
/// timeout and together they are well past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_timeout_counts_from_the_end_of_a_slow_upload() {
    let upstream = Upstream::start().await;
    let timeout = Duration::from_millis(800);
    let (proxy, _dir) = Proxy::front(&upstream, &["--response-timeout", "800ms"]).await;
    let chunks = 16;
    let chunk = [b'x'; 1000];
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let head = format!(
        "POST /count HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        proxy.addr,
        chunks * chunk.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let started = std::time::Instant::now();
    for _ in 0..chunks {
        stream.write_all(&chunk).await.expect("chunk");
        tokio::time::sleep(timeout / 8).await;
    }
    assert!(started.elapsed() > timeout * 2, "the upload was not slow");
    let answer = read_until(&mut stream, None).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n16000"), "{answer}");

    // Once the upload is in, the upstream's silence is timed as ever.
    let request = format!(
        "POST /hang HTTP/1.1\r\nHost: {}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        proxy.addr
    );
    let answer = raw(proxy.addr, request.as_bytes(), None).await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_204_304_follow_http() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;
    let req = http::Request::head(proxy.url("/status/200"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = within("head", support::client().request(req))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );

    for code in [204u16, 304] {
        let (status, headers, body) = get(&proxy.url(&format!("/status/{code}")), &[]).await;
        assert_eq!(status.as_u16(), code);
        assert!(body.is_empty());
        assert_eq!(headers["etag"], "\"v1\"");
    }
    let (status, _, body) = get(&proxy.url("/status/500"), &[]).await;
    assert_eq!(status, 500);
    assert_eq!(body, "status 500");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_and_trailers() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;

    // `/count` reads the whole body before it answers, so the client's body must be asked for:
    // only a 100 Continue from the proxy lets the exchange finish.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(
            b"POST /count HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .await
        .unwrap();
    let interim = read_until(&mut stream, Some("\r\n\r\n")).await;
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{interim}"
    );
    stream.write_all(b"hello").await.unwrap();
    let reply = read_until(&mut stream, Some("\r\n\r\n5")).await;
    assert!(reply.contains("HTTP/1.1 200 OK\r\n"), "{interim}{reply}");

    let reply = raw(
        proxy.addr,
        b"GET /trailers HTTP/1.1\r\nHost: localhost\r\nTE: trailers\r\nConnection: close\r\n\r\n",
        None,
    )
    .await;
    let lower = reply.to_ascii_lowercase();
    assert!(lower.contains("transfer-encoding: chunked"), "{reply}");
    assert!(
        lower.contains("\r\n0\r\nx-checksum: abc\r\n\r\n"),
        "{reply}"
    );
}

/// Two proxies pointed at each other (which start-up cannot see, as it sees one pointed at its
/// own address) answer 508 instead of passing the request round for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_whose_requests_come_back_answers_508() {
    let a = support::dead_addr().await;
    let dir = tempfile::tempdir().unwrap();
    let b = Proxy::start_in(dir.path(), &[&format!("http://{a}")]).await;
    let b_url = format!("http://{}", b.addr);
    let proxy = Proxy::start_in(dir.path(), &["--listen", &a.to_string(), &b_url]).await;
    let (status, _, body) = get(&proxy.url("/"), &[]).await;
    assert_eq!(status, 508);
    assert!(String::from_utf8_lossy(&body).contains("forwards back to this proxy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_served() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = http::Request::get(proxy.url("/headers"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = within("h2c", client.request(req)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_2);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let seen = json(&body);
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(
        seen["headers"]["x-forwarded-host"][0],
        proxy.addr.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_an_in_flight_request() {
    let upstream = Upstream::start().await;
    let (mut proxy, _dir) = Proxy::front(&upstream, &[]).await;
    let url = proxy.url("/slow");
    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    within("request at upstream", upstream.wait_for_requests("slow", 1)).await;

    proxy.shutdown.trigger();
    let run = proxy.take_task();
    // New connections are no longer accepted once the listener is closed…
    within("listener closed", async {
        loop {
            if TcpStream::connect(proxy.addr).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        !run.is_finished(),
        "run returned while a request was in flight"
    );

    // …while the request in flight completes.
    upstream.release("slow");
    let (status, _, body) = within("in-flight response", in_flight).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "finished");
    within("run to return", run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websocket_tunnels_within_the_grace_period() {
    let upstream = Upstream::start().await;
    let (mut proxy, _dir) = Proxy::front(&upstream, &["--shutdown-grace", "20s"]).await;
    let mut ws = echoing_websocket(proxy.addr, "/ws").await;

    proxy.shutdown.trigger();
    let started = std::time::Instant::now();
    within("run to return", proxy.take_task()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited for the tunnel instead of closing it"
    );
    // The browser side sees the tunnel end.
    let end = within("tunnel end", ws.next()).await;
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_send_path_prefixes_to_their_own_upstreams() {
    // The default upstream is down: whatever answers under /api can only be the API upstream.
    let front = format!("http://{}", support::dead_addr().await);
    let api = Upstream::start().await;
    let route = format!("/api={}", api.url());
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(dir.path(), &["--route", &route, &front]).await;

    let (status, _, body) = get(&proxy.url("/api/users?x=1"), &[]).await;
    assert_eq!(
        (status.as_u16(), body),
        (200, Bytes::from("upstream saw /api/users"))
    );
    let (status, _, body) = get(&proxy.url("/api"), &[]).await;
    assert_eq!(
        (status.as_u16(), body),
        (200, Bytes::from("upstream saw /api"))
    );
    // `/apix` is not under `/api`: it goes to the (down) default upstream.
    let (status, _, _) = get(&proxy.url("/apix"), &[]).await;
    assert_eq!(status, 502);
    let (status, _, _) = get(&proxy.url("/"), &[]).await;
    assert_eq!(status, 502);

    // WebSocket upgrades follow the routes.
    echoing_websocket(proxy.addr, "/api/ws").await;

    let (_, _, body) = get(&proxy.url("/__hmr/status"), &[]).await;
    let status = json(&body);
    assert_eq!(status["routes"][0]["path"], "/api");
    assert_eq!(status["routes"][0]["url"], api.url());
    assert_eq!(status["routes"][0]["reachable"], true);
    assert_eq!(status["upstream"]["url"], front);
    assert_eq!(status["upstream"]["reachable"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_loopback_names_ip_literals_and_allowed_hosts_are_answered() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &["--allowed-host", "app.test"]).await;
    let port = proxy.addr.port();
    for (host, want) in [
        (format!("localhost:{port}"), 200),
        (format!("app.localhost:{port}"), 200),
        (format!("127.0.0.1:{port}"), 200),
        (format!("app.test:{port}"), 200),
        (format!("evil.example:{port}"), 403),
        (format!("localhost.evil.example:{port}"), 403),
        ("evil.com@127.0.0.1".to_string(), 400),
    ] {
        for path in ["/page", "/changes", "/__hmr/client.js"] {
            let reply = raw(
                proxy.addr,
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
                Some("\r\n"),
            )
            .await;
            assert!(
                reply.starts_with(&format!("HTTP/1.1 {want}")),
                "{host} {path}: {reply}"
            );
        }
    }
    let (status, _, body) = get(&proxy.url("/"), &[("host", "rebound.example")]).await;
    assert_eq!(status, 403);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("--allowed-host rebound.example"), "{text}");

    let (open, _dir2) = Proxy::front(&upstream, &["--allowed-host", "all"]).await;
    let (status, _, _) = get(&open.url("/"), &[("host", "anything.example")]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_new_connections_wait_and_existing_ones_work() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &["--max-connections", "2"]).await;
    let first = crate::support::sse::SseClient::open(proxy.addr, &[]).await;
    // The second connection is served, and keeps working for more requests.
    let mut second = TcpStream::connect(proxy.addr).await.unwrap();
    for _ in 0..2 {
        second
            .write_all(b"GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let reply = read_until(&mut second, Some("upstream saw /ok")).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    // A third waits: it is not answered while both slots are held…
    let url = proxy.url("/third");
    let mut third = tokio::spawn(async move { get(&url, &[]).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut third)
            .await
            .is_err(),
        "a connection past the cap was served"
    );
    // …and is served as soon as one closes.
    drop(first);
    let (status, _, body) = within("the waiting connection", third).await.unwrap();
    assert_eq!(
        (status.as_u16(), body),
        (200, Bytes::from("upstream saw /third"))
    );
}

/// A WebSocket tunnel keeps its connection's slot under the cap for as long as it lives: hyper
/// lets go of an upgraded connection, and tunnels were not counted at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_tunnel_holds_its_connection_slot() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &["--max-connections", "2"]).await;
    let ws = echoing_websocket(proxy.addr, "/ws").await;
    let stream = crate::support::sse::SseClient::open(proxy.addr, &[]).await;
    let url = proxy.url("/third");
    let mut third = tokio::spawn(async move { get(&url, &[]).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut third)
            .await
            .is_err(),
        "a connection past the cap was served beside the tunnel"
    );
    drop(ws);
    let (status, _, _) = within("the waiting connection", third).await.unwrap();
    assert_eq!(status.as_u16(), 200);
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_without_caching_headers_are_revalidated() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;
    let (_, headers, _) = get(&proxy.url("/plain"), &[]).await;
    assert_eq!(headers["cache-control"], "no-cache");
    let (_, headers, _) = get(&proxy.url("/status/200"), &[]).await;
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["etag"], "\"v1\"");
    let (_, headers, _) = get(&proxy.url("/cached"), &[]).await;
    assert_eq!(headers["cache-control"], "max-age=60");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_dev_server_given_as_http_is_named_for_what_it_is() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;

    // What the server on the upstream's port is at the moment.
    const TLS: u8 = 0;
    const PLAIN: u8 = 1;
    const PLAIN_CRASHING: u8 = 2;
    let mode = Arc::new(AtomicU8::new(TLS));
    let hellos = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (task_mode, task_hellos) = (mode.clone(), hellos.clone());
    let _server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (mode, hellos) = (task_mode.clone(), task_hellos.clone());
            tokio::spawn(async move {
                let mut first = [0u8; 2];
                if stream.read_exact(&mut first).await.is_err() {
                    return;
                }
                let hello = first == [22, 3];
                if hello {
                    hellos.fetch_add(1, Ordering::SeqCst);
                }
                match mode.load(Ordering::SeqCst) {
                    // A TLS server: a handshake failure alert for a hello; a plain request is
                    // not TLS at all, and the connection is dropped.
                    TLS if hello => {
                        let _ = stream.write_all(&[21, 3, 3, 0, 2, 2, 40]).await;
                    }
                    PLAIN if !hello => {
                        let _ = stream
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
                            )
                            .await;
                    }
                    _ => {}
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(dir.path(), &[&url]).await;
    let navigation = [("accept", "text/html"), ("sec-fetch-dest", "document")];

    // A page and its assets, failing at once.
    let assets = ["/app.js", "/app.css", "/logo.svg", "/font.woff2"].map(|path| proxy.url(path));
    let page_url = proxy.url("/");
    let (page, assets) = tokio::join!(
        get(&page_url, &navigation),
        futures_util::future::join_all(assets.iter().map(|url| get(url, &[]))),
    );
    let (status, _, body) = page;
    assert_eq!(status, 502);
    let page = String::from_utf8_lossy(&body);
    let https = url.replacen("http://", "https://", 1);
    assert!(page.contains("speaks HTTPS"), "{page}");
    assert!(
        page.contains(&format!("give hmr-proxy {https} instead")),
        "{page}"
    );
    // Restarted on plain HTTP, it answers without a save: the page polls.
    assert!(page.contains("reloads by itself"), "{page}");
    for (status, _, body) in assets {
        assert_eq!(status, 502);
        assert_eq!(
            body,
            format!("hmr-proxy: {url} speaks HTTPS (TLS): give hmr-proxy {https} instead\n")
        );
    }
    // One probe told it, for the page and its assets failing at once: a plain server would log
    // every probe as a bad request.
    assert_eq!(hellos.load(Ordering::SeqCst), 1);

    // Restarted on plain HTTP: served, and what it was is forgotten.
    mode.store(PLAIN, Ordering::SeqCst);
    let (status, _, body) = get(&proxy.url("/back"), &[]).await;
    assert_eq!((status.as_u16(), body.as_ref()), (200, b"hi".as_ref()));

    // A plain server that drops a request is asked again, and is not taken for an https one.
    mode.store(PLAIN_CRASHING, Ordering::SeqCst);
    let (status, _, body) = get(&proxy.url("/crash"), &navigation).await;
    assert_eq!(status, 502);
    let page = String::from_utf8_lossy(&body);
    assert!(!page.contains("HTTPS"), "{page}");
    assert!(page.contains("closed the connection"), "{page}");
    assert_eq!(hellos.load(Ordering::SeqCst), 2);
}

/// An https dev server (ASP.NET, Symfony, `vite --https`) with its self-signed certificate, on
/// this machine: pages, bodies, redirects and WebSockets go through as for a plain one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_dev_server_on_this_machine_is_proxied_whatever_its_certificate() {
    let upstream = Upstream::start_tls().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;

    let (status, _, body) = get(&proxy.url("/headers"), &[]).await;
    assert_eq!(status, 200);
    let seen = json(&body);
    assert_eq!(seen["headers"]["host"][0], upstream.addr.to_string());
    assert_eq!(seen["headers"]["x-forwarded-proto"][0], "http");

    let navigation = [("accept", "text/html"), ("sec-fetch-dest", "document")];
    let (status, _, body) = get(&proxy.url("/document"), &navigation).await;
    assert_eq!(status, 200);
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("/__hmr/client.js"), "{page}");

    // A body goes through the pooled client, on a connection of its own.
    let response = support::client()
        .request(
            hyper::Request::post(proxy.url("/echo"))
                .body(Full::new(Bytes::from_static(b"posted over tls")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed.as_ref(), b"posted over tls");

    // The upstream's own https URLs point back at the proxy.
    let (status, headers, _) = get(&proxy.url("/redirect"), &[]).await;
    assert_eq!(status, 302);
    assert_eq!(headers["location"], format!("http://{}/target", proxy.addr));

    let ws = echoing_websocket(proxy.addr, "/ws").await;
    drop(ws);
}

/// The probe that tells whether an https upstream is up completes the TLS handshake before it
/// closes: a bare connect is a handshake cut off, which Go's `net/http` logs as an error every
/// half second while tabs are open on an upstream in another container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_probe_finishes_its_tls_handshakes() {
    let upstream = Upstream::start_tls().await;
    let (_proxy, _dir) = Proxy::front(&upstream, &[]).await;
    // The probe connects at start, before any request, to learn whether the upstream is up.
    within(
        "the probe's handshake",
        upstream.wait_for_requests(upstream::TLS_HANDSHAKES, 1),
    )
    .await;
    assert_eq!(upstream.arrived(upstream::TLS_HANDSHAKES_CUT_OFF), 0);
}

/// An https dev server that ends a body without a length by closing, and closes without TLS's
/// `close_notify` (Python's http.server wrapped in `ssl`): the page arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_body_ended_by_a_close_without_close_notify_arrives_whole() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = support::upstream::self_signed();
    let _server = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(n @ 1..) => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let _ = tls
                    .write_all(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nthe whole body")
                    .await;
                let _ = tls.flush().await;
                // Dropped: the TCP connection closes with no close_notify.
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(dir.path(), &[&format!("https://{addr}")]).await;
    let (status, _, body) = get(&proxy.url("/x"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_ref(), b"the whole body");
}

/// A TLS handshake that fails for another reason (here the server closes at once; alike: an
/// HTTP/2-only server, a client certificate required) is named as such, and the upstream is not
/// taken for down: the connection was made, and down-then-up at the next probe reloaded every
/// tab, whose reload failed the same way, for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_tls_handshake_is_named_and_is_no_outage() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(dir.path(), &[&format!("https://{addr}")]).await;
    let navigation = [("accept", "text/html"), ("sec-fetch-dest", "document")];
    let (status, _, body) = get(&proxy.url("/"), &navigation).await;
    assert_eq!(status, 502);
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("TLS handshake"), "{page}");
    assert!(!page.contains("cannot reach"), "{page}");
    let (_, _, body) = get(&proxy.url("/__hmr/status"), &[]).await;
    let status = json(&body);
    assert_ne!(status["upstream"]["reachable"], false, "{status}");
}

/// A plain dev server given as `https://`, and an https one given as `http://`: each page says
/// which address to give instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_dev_server_given_as_https_is_named_for_what_it_is() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let https = format!("https://{}", upstream.addr);
    let proxy = Proxy::start_in(dir.path(), &[&https]).await;
    let navigation = [("accept", "text/html"), ("sec-fetch-dest", "document")];
    let (status, _, body) = get(&proxy.url("/"), &navigation).await;
    assert_eq!(status, 502);
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("does not speak TLS"), "{page}");
    assert!(
        page.contains(&format!("give hmr-proxy {} instead", upstream.url())),
        "{page}"
    );
    assert!(page.contains("reloads by itself"), "{page}");
}

/// A dev server that compares a write's `Origin` with `Host` (Django, SvelteKit) refuses every
/// form posted through the proxy, which sends the upstream's `Host`: the first such 403 names the
/// fix. A refusal of another site's request is no such sign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_same_origin_write_names_keep_host() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = upstream.url();
    let running = bin::blocking("hmr-proxy to start", {
        let dir = dir.path().to_owned();
        move || Running::start(&["--watch", ".", url.as_str()], &[], &dir)
    })
    .await;
    let send = |method: &str, origin: &str| {
        let request = format!(
            "{method} /status/403 HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            host = running.addr
        );
        let addr = running.addr;
        async move { raw(addr, request.as_bytes(), None).await }
    };
    // The hint comes once a run: it names the request that earned it.
    let answer = send("PUT", "http://evil.example").await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let answer = send("POST", &format!("http://{}", running.addr)).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let line = running.wait_for_log("--keep-host");
    assert!(
        line.contains("WARN") && line.contains("POST /status/403 → 403"),
        "{line}"
    );
}

/// A browser connection has TCP keep-alive on: a peer that vanishes without a FIN (a laptop that
/// sleeps on the LAN) is found out, where a WebSocket tunnel or a stalled download held its
/// sockets for good. Read from the kernel's own table: `/proc/net/tcp`'s `tr` column is 2 while a
/// socket's keep-alive timer is set (1 while a retransmit is pending, which loopback settles at
/// once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_connections_have_tcp_keepalive() {
    let upstream = Upstream::start().await;
    let (proxy, _dir) = Proxy::front(&upstream, &[]).await;
    let mut conn = TcpStream::connect(proxy.addr).await.expect("connect");
    conn.write_all(b"GET /idle HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    read_until(&mut conn, Some("upstream saw /idle")).await;
    let hex = |addr: std::net::SocketAddr| match addr {
        std::net::SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        other => panic!("not IPv4: {other}"),
    };
    // The proxy's end: local is the proxy's address, remote ours.
    let (local, remote) = (hex(proxy.addr), hex(conn.local_addr().expect("addr")));
    let timer = || {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        table.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()))
                .then(|| fields.get(5).map(|t| t[..2].to_string()))
                .flatten()
        })
    };
    within("the keep-alive timer on the proxy's socket", async {
        loop {
            match timer().as_deref() {
                Some("02") => break,
                Some("00") => panic!("no timer on the proxy's socket: keep-alive is off"),
                _ => tokio::task::yield_now().await,
            }
        }
    })
    .await;
}
