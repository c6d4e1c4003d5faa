//! Saves the upstream restarts for (a `.py` under Django's `runserver`, a `.go` under `air`):
//! with a real upstream that restarts on the same port and a real event-stream client, the first
//! such save reloads the tabs at once and again on the restart; from then on the save waits for
//! the restart, and the tabs reload once.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::support::sse::{SseClient, paths};
use crate::support::{self, Proxy, Upstream, get, within};

async fn status(proxy: &Proxy) -> serde_json::Value {
    let (_, _, body) = get(&proxy.url("/__hmr/status"), &[]).await;
    serde_json::from_slice(&body).unwrap()
}

/// Until `/__hmr/status` shows what `done` looks for (no event says it: it is asked again).
async fn status_until(proxy: &Proxy, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    within(what, async {
        while !done(&status(proxy).await) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Until the proxy holds a batch of `paths` for the upstream's restart.
async fn held_for(proxy: &Proxy, paths: &[&str]) {
    status_until(proxy, "the save to be held", |s| {
        s["awaiting_restart"] == serde_json::json!(paths)
    })
    .await;
}

/// Once a page has gone through the proxy, the proxy watches the upstream's listening socket:
/// a restart on the same port then shows however quick it is.
async fn watched(proxy: &Proxy) {
    let (code, _, _) = get(&proxy.url("/"), &[]).await;
    assert_eq!(code, 200);
    status_until(proxy, "the proxy to watch the upstream's socket", |s| {
        s["upstream"]["restart_check"] == "listening socket"
    })
    .await;
}

/// The upstream stopped and started again on its port, as a reloader or `air` does.
async fn restart(upstream: Upstream, addr: SocketAddr) -> Upstream {
    upstream.stop().await;
    Upstream::serve(support::rebind(addr).await)
}

fn save(root: &Path, path: &str, text: &str) {
    std::fs::write(root.join(path), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_a_restart_followed_before_waits_for_the_next_restart() {
    let mut upstream = Upstream::start().await;
    let addr = upstream.addr;
    let url = upstream.url();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("static")).unwrap();
    save(&root, "app.py", "v = 1\n");
    save(&root, "static/site.css", "body {}\n");
    let proxy = Proxy::start_in(&root, &[&url]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    watched(&proxy).await;

    // The first save goes out at once: nothing is known yet. The restart reloads again.
    save(&root, "app.py", "v = 2\n");
    let batch = tab.next_batch().await;
    assert_eq!(paths(&batch), ["app.py"], "{batch}");
    upstream = restart(upstream, addr).await;
    let batch = tab.next_batch().await;
    assert_eq!(batch["reload"], true, "{batch}");
    assert!(paths(&batch).is_empty(), "{batch}");
    watched(&proxy).await;

    // The next one waits for the restart, and the tabs reload once, told why.
    save(&root, "app.py", "v = 3\n");
    held_for(&proxy, &["app.py"]).await;
    let _upstream = restart(upstream, addr).await;
    let batch = tab.next_batch().await;
    assert_eq!(batch["reload"], true, "{batch}");
    let reason = batch["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with(&format!("upstream {url} "))
            && reason.ends_with(" after app.py changed"),
        "{batch}"
    );
    assert_eq!(
        status(&proxy).await["awaiting_restart"],
        serde_json::json!([])
    );

    // A stylesheet is never held: it is swapped in place.
    save(&root, "static/site.css", "body { color: teal }\n");
    let batch = tab.next_batch().await;
    assert_eq!(paths(&batch), ["static/site.css"], "{batch}");
    drop(dir);
}

/// A Node server under nodemon: `server.js` is learned as that file (scripts are learned file by
/// file), held for its restart; the page's own scripts are not the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_script_is_held_for_its_restart() {
    let mut upstream = Upstream::start().await;
    let addr = upstream.addr;
    let url = upstream.url();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("public")).unwrap();
    save(&root, "server.js", "// 1\n");
    let proxy = Proxy::start_in(&root, &[&url]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    watched(&proxy).await;
    save(&root, "server.js", "// 2\n");
    assert_eq!(paths(&tab.next_batch().await), ["server.js"]);
    upstream = restart(upstream, addr).await;
    assert_eq!(tab.next_batch().await["reload"], true);
    watched(&proxy).await;
    save(&root, "server.js", "// 3\n");
    held_for(&proxy, &["server.js"]).await;
    // Meanwhile the page's own script goes out at once.
    save(&root, "public/app.js", "export const v = 1;\n");
    assert_eq!(paths(&tab.next_batch().await), ["public/app.js"]);
    let _upstream = restart(upstream, addr).await;
    let batch = tab.next_batch().await;
    let reason = batch["reason"].as_str().unwrap_or_default();
    assert!(reason.ends_with(" after server.js changed"), "{batch}");
}

/// A server restarted for saves the proxy does not watch (its code, with only templates and
/// static files watched) serves the page after each restart: no crash loop, and its reloads do
/// not wait 1, 2, 4, 8 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_after_pages_were_served_are_no_crash_loop() {
    let mut upstream = Upstream::start().await;
    let addr = upstream.addr;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let proxy = Proxy::start_in(&root, &[&upstream.url()]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    watched(&proxy).await;
    // Six restarts a crash loop would make wait 1 + 2 + 4 + 8 s in all.
    let restarts = async {
        for _ in 0..6 {
            upstream = restart(upstream, addr).await;
            assert_eq!(tab.next_batch().await["reload"], true);
            watched(&proxy).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(12), restarts)
        .await
        .expect("the reloads waited as for a crash loop");
}

/// A restart while the only tab is between two pages (its old stream closed, its new one not
/// open yet: `node --watch` restarts faster than a page loads) is still seen, and the tab hears
/// of it when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_the_tab_reloads_is_seen() {
    let upstream = Upstream::start().await;
    let addr = upstream.addr;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let proxy = Proxy::start_in(&root, &[&upstream.url()]).await;
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    watched(&proxy).await;
    save(&root, "page.html", "<p>1</p>\n");
    let last = tab.next_batch().await["id"].to_string();
    drop(tab);
    status_until(&proxy, "the stream to end", |s| s["clients"] == 0).await;
    // An observation window: the probe looks twice or more meanwhile, and keeps watching.
    tokio::time::sleep(hmr_proxy::proxy::health::PROBE_INTERVAL * 3).await;
    assert_eq!(
        status(&proxy).await["upstream"]["restart_check"],
        "listening socket"
    );
    let _upstream = restart(upstream, addr).await;
    let mut tab = SseClient::open(proxy.addr, &[("last-event-id", &last)]).await;
    let batch = tab.next_batch().await;
    assert_eq!(batch["reload"], true, "{batch}");
    assert!(
        batch["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("upstream ")),
        "{batch}"
    );
}

/// With no tab listening the probe rests (it looks for nothing on a timer: an idle proxy does not
/// wake); a tab that opens wakes it, the upstream's socket is watched again, and a restart then
/// reloads the tab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_that_opens_wakes_the_resting_probe() {
    let addr = support::dead_addr().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let proxy = Proxy::start_in(&root, &[&format!("http://{addr}")]).await;
    // Down, then up: with no tab, the probe rests once it has seen the upstream up.
    let upstream = Upstream::serve(support::rebind(addr).await);
    status_until(&proxy, "the probe to rest", |s| {
        s["upstream"]["probe_resting"] == true
    })
    .await;
    assert_eq!(
        status(&proxy).await["upstream"]["restart_check"],
        serde_json::Value::Null
    );
    let mut tab = SseClient::open(proxy.addr, &[]).await;
    status_until(&proxy, "the tab to wake the probe", |s| {
        s["upstream"]["restart_check"] == "listening socket"
    })
    .await;
    let _upstream = restart(upstream, addr).await;
    let batch = tab.next_batch().await;
    assert_eq!(batch["reload"], true, "{batch}");
}
