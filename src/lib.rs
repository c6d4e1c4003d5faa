//! hmr-proxy: live reload and hot module replacement in front of any development server.
//!
//! Data flows one way: configuration → server → router → { proxy → inject | static files ,
//! sse ← watch }. `lib.rs` is the only module that knows all of them; it binds the socket and
//! wires the pieces in [`run`].
//!
//! # Layout
//!
//! - [`cli`]: the raw command line (clap), every value optional, with its environment variable.
//! - [`config`]: merges flags, environment, config file and defaults into a validated [`Config`].
//! - [`logging`]: the tracing subscriber and `-v`/`-q`.
//! - [`error`]: [`StartupError`], what stops the process before it serves, with the fix.
//! - [`shutdown`]: the [`Shutdown`] handle every long-lived task watches, and signal handling.
//! - [`server`]: the accept loop, hyper connections, graceful draining.
//! - [`raw_stream`]: connections opened for the change stream, served without hyper.
//! - [`router`]: own endpoints under `/__hmr/`, then the proxy or the folder.
//! - [`guard`]: refuses CONNECT and forward-proxy request targets, and cross-site or remote
//!   callers of the proxy's own endpoints.
//! - [`watch`]: the one file watcher; turns bursts of saves into change batches.
//! - [`sse`]: the change hub and the `/changes` event stream every tab subscribes to.
//! - [`rebuild`]: batches held for the upstream's restart when a restart follows such saves.
//! - [`control`]: `/__hmr/status` and `/__hmr/reload`.
//! - [`proxy`]: forwarding to the upstream, header rewriting, WebSocket tunnels, the 502 page.
//! - [`static_files`]: serving a folder when there is no upstream.
//! - [`inject`]: decides which responses are pages for a tab and puts the client tag into them.
//! - [`client`]: the embedded browser client, served at `/__hmr/client.js`, and its tag.
//! - [`body`]: the one boxed body type responses are carried in.
//! - [`etag`]: `If-None-Match` and `If-Match` against the version the proxy holds.
//! - [`healthcheck`]: `--health-check`, the client side of a container health check.
//! - [`open_browser`]: `--open`, the proxy's page opened in the browser once it listens.
//! - [`allocator`]: the binary's allocator wrapper that moves large blocks off a page's start.

pub mod allocator;
pub mod body;
pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod error;
pub mod etag;
pub mod frameworks;
pub mod guard;
pub mod healthcheck;
pub mod inject;
pub mod logging;
pub mod open_browser;
pub mod proxy;
pub mod raw_stream;
pub mod rebuild;
pub mod router;
pub mod server;
pub mod shutdown;
pub mod sse;
pub mod static_files;
pub mod watch;

pub use config::Config;
pub use error::StartupError;
pub use shutdown::Shutdown;

use std::time::Instant;

use tokio::net::TcpListener;

use config::{AllowedHosts, Backend};
use proxy::health::{Health, Reach};
use rebuild::Rebuilds;
use router::{Parts, Router};
use sse::Hub;

/// Bind the configured address, turning "in use" into an error that says how to pick another.
///
/// The default address alone moves on to the next free port (with a warning), as Vite and
/// browser-sync do: a second project's proxy then starts instead of failing. An address the user
/// set is a promise (a bookmark, a compose port mapping, a health check), so it never moves.
pub async fn bind(config: &Config) -> Result<TcpListener, StartupError> {
    let listener = bind_free(config).await?;
    // An upstream on the proxy's own address: every request would come back to it (a 508 each,
    // and a warning each), for a slip of the port that is plain before the first request.
    if let Ok(local) = listener.local_addr() {
        for upstream in upstreams(config) {
            if is_this_address(upstream, local) {
                return Err(StartupError::OwnAddress {
                    upstream: upstream.origin(),
                    addr: local,
                });
            }
        }
    }
    Ok(listener)
}

/// Whether `upstream` names the address `local` on this machine. Only where no other server
/// can be meant: a dev server may listen on the same port of another address (Vite on `[::1]`,
/// which `localhost` may name, beside the proxy on 127.0.0.1).
fn is_this_address(upstream: &config::Upstream, local: std::net::SocketAddr) -> bool {
    use std::net::{IpAddr, Ipv6Addr, SocketAddr};
    if upstream.port != local.port() {
        return false;
    }
    let covers = |ip: IpAddr| {
        ip == local.ip()
            || (local.ip().is_unspecified() && ip.is_loopback() && ip.is_ipv4() == local.is_ipv4())
            || (ip.is_unspecified() && ip.is_ipv4() == local.is_ipv4())
    };
    let host = upstream.host.trim_matches(['[', ']']);
    match host.parse::<IpAddr>() {
        Ok(ip) => covers(ip),
        // `localhost` is 127.0.0.1, and ::1 unless another server holds that port there.
        Err(_) if host.eq_ignore_ascii_case("localhost") => {
            let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), local.port());
            covers(IpAddr::from([127, 0, 0, 1]))
                && !std::net::TcpListener::bind(v6)
                    .is_err_and(|err| err.kind() == std::io::ErrorKind::AddrInUse)
        }
        Err(_) => false,
    }
}

/// [`bind`] without the check of what it found.
async fn bind_free(config: &Config) -> Result<TcpListener, StartupError> {
    // The default port is the dev server's own (Rails, Next.js and Express use 3000): the proxy
    // moves on, as it does when the port is taken, whether or not the dev server is up yet.
    if config.listen_origin.is_none()
        && let Some(upstream) = upstreams(config).find(|u| local_on_port(u, config.listen.port()))
    {
        for candidate in ports_after(config.listen) {
            if let Ok(listener) = TcpListener::bind(candidate).await {
                tracing::info!(
                    "the upstream {} is on the default port {}; listening on {candidate} \
                     instead (--listen sets the address)",
                    upstream.origin(),
                    config.listen.port()
                );
                return Ok(listener);
            }
        }
    }
    let source = match TcpListener::bind(config.listen).await {
        Ok(listener) => return Ok(listener),
        Err(source) => source,
    };
    if source.kind() != std::io::ErrorKind::AddrInUse {
        return Err(StartupError::Bind {
            addr: config.listen,
            origin: config.listen_origin.clone(),
            source,
        });
    }
    let holder = holder_of(config.listen).await;
    if config.listen_origin.is_none() {
        for candidate in ports_after(config.listen) {
            if let Ok(listener) = TcpListener::bind(candidate).await {
                tracing::warn!(
                    "{} is in use by {holder}; listening on {candidate} instead \
                     (--listen sets the address, and then never moves)",
                    config.listen
                );
                return Ok(listener);
            }
        }
    }
    Err(StartupError::PortInUse {
        addr: config.listen,
        holder,
        origin: config.listen_origin.clone(),
        free: free_port_after(config.listen),
    })
}

/// Every upstream: the main one's and the routes'.
fn upstreams(config: &Config) -> impl Iterator<Item = &config::Upstream> {
    let main = match &config.backend {
        Backend::Upstream(upstream) => Some(upstream),
        Backend::Static { .. } => None,
    };
    config
        .routes
        .iter()
        .map(|route| &route.upstream)
        .chain(main)
}

/// Whether `upstream` is on `port` of this machine (a loopback address, `localhost`, or any).
fn local_on_port(upstream: &config::Upstream, port: u16) -> bool {
    let host = upstream.host.trim_matches(['[', ']']);
    upstream.port == port
        && (host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified()))
}

/// Who holds `addr`: another hmr-proxy passes the container health check on it (a second
/// terminal's, left running), where a plain "another program" sent the user looking elsewhere.
async fn holder_of(addr: std::net::SocketAddr) -> &'static str {
    let ours = tokio::task::spawn_blocking(move || healthcheck::check(addr).is_ok()).await;
    if ours.unwrap_or(false) {
        "another hmr-proxy"
    } else {
        "another program"
    }
}

/// The next 100 ports on `addr`'s address, as far as there are any.
fn ports_after(addr: std::net::SocketAddr) -> impl Iterator<Item = std::net::SocketAddr> {
    (1..=100u16)
        .filter_map(move |step| addr.port().checked_add(step))
        .map(move |port| std::net::SocketAddr::new(addr.ip(), port))
}

/// The first of the next 100 ports on `addr`'s address that can be bound now (the one after it
/// if none can: the suggestion is then as good as any).
fn free_port_after(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    ports_after(addr)
        .find(|candidate| std::net::TcpListener::bind(candidate).is_ok())
        .unwrap_or_else(|| std::net::SocketAddr::new(addr.ip(), addr.port().wrapping_add(1).max(1)))
}

/// Serve until `shutdown` triggers and in-flight work has drained (or the grace period ran out).
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) {
    let local = match listener.local_addr() {
        Ok(addr) => addr,
        Err(_) => config.listen,
    };
    // Before the listening line: from then on, connections come.
    server::raise_fd_limit();
    announce(&config, local);
    if let Some(path) = &config.open {
        open_browser::open(format!("{}{path}", server::browse_url(local)));
    }
    let hub = Hub::new(config.heartbeat, shutdown.clone());
    hub.know_roots(&config.watch.roots);
    if let Backend::Static { root, spa, .. } = &config.backend {
        hub.know_served(root, *spa);
    }
    let rebuilds = Rebuilds::default();
    let upstreams = config.upstreams();
    let batches = watch::spawn(&config.watch, shutdown.clone());
    let mut health = std::collections::HashMap::new();
    for upstream in &upstreams {
        let probe = Health::new(hub.restarts());
        let clients = hub.clone();
        probe.spawn_probe(
            upstream,
            &config.proxy,
            move || clients.listened_within(RELOAD_GRACE),
            hub.joined(),
            shutdown.clone(),
        );
        reload_when_upstream_returns(&probe, &hub, &rebuilds, upstream.origin());
        health.insert(upstream.authority.to_string(), probe);
    }
    match batches {
        // A folder has no server to restart: nothing to hold a batch for.
        Ok(batches) if upstreams.is_empty() => hub.feed(batches),
        Ok(batches) => {
            let probes: Vec<Health> = health.values().cloned().collect();
            let down = move || probes.iter().any(|h| h.current() == Reach::Down);
            rebuilds.feed(batches, hub.clone(), down);
        }
        Err(err) => tracing::error!("{err}; live reload is off"),
    }
    let router = Router::new(
        &config,
        Parts {
            local,
            shutdown: shutdown.clone(),
            hub,
            health,
            rebuilds,
        },
    );
    let limits = server::Limits {
        grace: config.shutdown_grace,
        max_connections: config.max_connections,
        header_timeout: config.header_timeout,
    };
    server::serve(listener, router, shutdown, limits).await;
    tracing::info!("stopped");
}

/// A backend that restarts (after a rebuild) comes back with new code: reload every tab once it
/// answers again, or once a new server listens in the old one's place. A batch held for the
/// restart (`rebuild`) goes out as this reload, named in its reason.
fn reload_when_upstream_returns(health: &Health, hub: &Hub, rebuilds: &Rebuilds, origin: String) {
    let mut seen = health.subscribe();
    let serving = health.clone();
    let hub = hub.clone();
    let rebuilds = rebuilds.clone();
    tokio::spawn(async move {
        let mut last = *seen.borrow();
        // Whether it has answered since the proxy started: a first answer is not a return.
        let mut answered = last.reach == Reach::Up;
        let mut crash_loop = CrashLoop::default();
        // When the upstream went down, until that is said: a restart that is over within
        // DOWN_NOTICE (nodemon, `go run`, Django's reloader) is one line when it is back, not a
        // warning before it.
        let mut unsaid: Option<Instant> = None;
        loop {
            let changed = match unsaid {
                Some(since) => {
                    let deadline = tokio::time::Instant::from_std(since + DOWN_NOTICE);
                    match tokio::time::timeout_at(deadline, seen.changed()).await {
                        Ok(changed) => changed,
                        Err(_) => {
                            tracing::warn!("upstream {origin} is down");
                            hub.upstream_down(&origin, true);
                            unsaid = None;
                            continue;
                        }
                    }
                }
                None => seen.changed().await,
            };
            if changed.is_err() {
                break;
            }
            let mut now = *seen.borrow_and_update();
            match (last.reach, now.reach) {
                (Reach::Up, Reach::Down) => unsaid = Some(Instant::now()),
                // Said at start, before any tab asks: a wrong port or a server not started yet.
                // Tabs are told too: one showing a page of another upstream (an API routed
                // beside the app that was never started) learns why its requests fail; a tab on
                // the proxy's own waiting page does not show it.
                (Reach::Unknown, Reach::Down) => {
                    tracing::warn!(
                        "upstream {origin} does not answer (yet): tabs get a page that reloads once it does"
                    );
                    hub.upstream_down(&origin, true);
                }
                _ => {}
            }
            if now.reach != Reach::Down {
                // Said to the tabs before the reload that follows, so none shows it on.
                hub.upstream_down(&origin, false);
            }
            if now.comeback != last.comeback {
                // One line for the event and what it does (tabs showing the waiting page reload).
                let what = match last.reach {
                    Reach::Down if unsaid.take().is_some() => "restarted",
                    Reach::Down if answered => "is back",
                    Reach::Down | Reach::Unknown => "answers",
                    Reach::Up => "restarted",
                };
                let held = rebuilds.restarted(Instant::now());
                // A held batch is a save before this restart: the developer's, not a crash; so
                // is a restart after the server answered a request (a save of its code, which
                // the proxy does not watch): a crash loop never serves the page.
                let saved = u64::from(held.is_some() || serving.take_answered());
                if let Some(wait) = crash_loop.next(Instant::now(), hub.batches_sent() + saved) {
                    tracing::warn!(
                        "upstream {origin} {what}, the {} time in a row within {} s of the tabs' \
                         reload: it may crash on a page's request (under compose `restart:` or \
                         a supervisor); reloading the tabs in {} s",
                        ordinal(crash_loop.streak + 1),
                        CRASH_WINDOW.as_secs(),
                        wait.as_secs()
                    );
                    tokio::time::sleep(wait).await;
                    // What came meanwhile is this reload's too.
                    now = *seen.borrow_and_update();
                }
                let why = match &held {
                    Some(batch) => {
                        format!(
                            "upstream {origin} {what} after {} changed",
                            rebuild::what(batch)
                        )
                    }
                    None => format!("upstream {origin} {what}"),
                };
                // Pages served since the comeback was seen are the new server's: they skip it.
                hub.publish_restart(&why, now.comeback);
                crash_loop.reloaded(Instant::now(), hub.batches_sent());
            }
            answered |= now.reach == Reach::Up;
            last = now;
        }
    });
}

/// Listening on a container's own loopback: a published port forwards to the container's
/// network interface, so the browser on the host never gets through (`HMR_PROXY_LISTEN=3000`
/// means 127.0.0.1:3000). A dev container's forwarded port comes in on the loopback and does.
fn unreachable_in_container(in_container: bool, local: std::net::SocketAddr) -> Option<String> {
    (in_container && local.ip().is_loopback()).then(|| {
        format!(
            "listening on {local}, this container's own loopback: a port the container \
             publishes (compose's `ports:`) cannot reach it, only one forwarded into it (a dev \
             container's); to publish it, listen on all of its interfaces \
             (HMR_PROXY_LISTEN=0.0.0.0:{})",
            local.port()
        )
    })
}

/// How long after the last tab's stream ended the upstream is still watched for restarts: the
/// tab is reloading, between its old stream and its new one, and a server that restarted then
/// (`node --watch`, quicker than the page's load) left the tab on the old code.
const RELOAD_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the upstream is down before the log says so (see [`reload_when_upstream_returns`]).
const DOWN_NOTICE: std::time::Duration = std::time::Duration::from_secs(3);

/// A restart this soon after the tabs' last reload for one is taken for a crash on their
/// requests (see [`CrashLoop`]).
const CRASH_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest a reload for a restart waits in a crash loop.
const CRASH_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Restart reloads that come back to back. A dev server that crashes on the page's request,
/// restarted at once by compose's `restart:`, systemd or a shell loop, came back, the tabs
/// reloaded, their requests crashed it again: two reloads a second, without end. From the
/// third restart in a row, each within [`CRASH_WINDOW`] of the previous reload with no save in
/// between (a save's restart is the developer's, however quick), the reload waits 1 s, then 2,
/// 4… up to [`CRASH_WAIT_MAX`]; a restart after a quiet spell or a save starts afresh, and so
/// does one after the server answered a request (the caller counts that as a save: a server
/// restarted for its own code, which the proxy does not watch, every few seconds served the
/// page each time, and its reloads waited 1, 2, 4… 30 s).
#[derive(Default)]
struct CrashLoop {
    /// Restarts in a row, each within the window of the reload before it.
    streak: u32,
    /// When the last reload for a restart went out, and how many batches had been sent then.
    last_reload: Option<(Instant, u64)>,
}

impl CrashLoop {
    /// A restart now, with `batches` sent so far: how long its reload waits, if it is part of a
    /// loop.
    fn next(&mut self, now: Instant, batches: u64) -> Option<std::time::Duration> {
        let soon = self
            .last_reload
            .is_some_and(|(at, sent)| now.duration_since(at) < CRASH_WINDOW && sent == batches);
        self.streak = if soon { self.streak + 1 } else { 0 };
        (self.streak >= 2).then(|| {
            let doubled = 1u64 << (self.streak - 2).min(5);
            std::time::Duration::from_secs(doubled).min(CRASH_WAIT_MAX)
        })
    }

    /// The reload went out, itself one of the `batches` sent.
    fn reloaded(&mut self, at: Instant, batches: u64) {
        self.last_reload = Some((at, batches));
    }
}

/// `2nd`, `3rd`, `4th`… for log lines.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The start-up lines: where to browse, what is served, what is watched.
fn announce(config: &Config, local: std::net::SocketAddr) {
    let url = server::browse_url(local);
    match &config.backend {
        Backend::Upstream(upstream) => {
            tracing::info!("listening on {url} → {}", upstream.origin());
        }
        Backend::Static {
            root,
            implicit,
            spa,
        } => {
            let spa = if *spa {
                ", index.html for app routes"
            } else {
                ""
            };
            tracing::info!("listening on {url} → files in {}{spa}", root.display());
            if *implicit {
                tracing::info!(
                    "no upstream given: serving the working directory (try `hmr-proxy http://localhost:8000`)"
                );
            }
            if config::home_or_top(root).is_some() {
                tracing::warn!(
                    "serving {}: every file below it but keys, `.env` files and credential \
                     folders can be read at {url}; run hmr-proxy in your project's folder or \
                     name it with --serve DIR",
                    root.display()
                );
            }
        }
    }
    if config.allowed_hosts == AllowedHosts::All {
        tracing::warn!(
            "allowed_hosts is `all`: any name reaches the proxy, so a web page can read it and \
             the dev server through DNS rebinding; list the names instead (--allowed-host NAME)"
        );
    }
    for route in &config.routes {
        tracing::info!(
            "  {}/… → {}",
            route.prefix.trim_end_matches('/'),
            route.upstream.origin()
        );
    }
    let in_container = ["/.dockerenv", "/run/.containerenv"]
        .iter()
        .any(|marker| std::path::Path::new(marker).exists());
    // Said, not warned: in a dev container (VS Code's) the forwarded port reaches it.
    if let Some(note) = unreachable_in_container(in_container, local) {
        tracing::info!("{note}");
    }
    if local.ip().is_unspecified() {
        // In a container that is how a sidecar must listen, and the published port (the compose
        // file's `127.0.0.1:3000:3000`) decides who reaches it; on a machine it is the network.
        let port = local.port();
        if in_container {
            tracing::info!(
                "listening on all of this container's interfaces: the published port {port} \
                 decides who can reach it"
            );
        } else {
            tracing::warn!(
                "listening on all interfaces: anyone who can reach this machine on port {port} \
                 can use the proxy and the dev server behind it"
            );
            if let Some(url) = server::network_url(local) {
                tracing::info!("on this network: {url}");
            }
        }
    }
    let roots: Vec<String> = config
        .watch
        .roots
        .iter()
        .map(|r| format!("{} (as {})", r.dir.display(), r.url))
        .collect();
    // Polling is said, because it changes what to expect: saves show up within the interval.
    let polling = config
        .watch
        .poll
        .map(|interval| format!(", polling every {} ms", interval.as_millis()))
        .unwrap_or_default();
    tracing::info!("watching {}{polling}", roots.join(", "));
    if let Some(file) = &config.file {
        tracing::info!("config from {}", file.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn restarts_back_to_back_wait_longer_and_longer() {
        let mut crash_loop = CrashLoop::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        // A first restart, and one long after its reload: no wait.
        assert_eq!(crash_loop.next(at(0), 0), None);
        crash_loop.reloaded(at(0), 1);
        assert_eq!(crash_loop.next(at(60), 1), None);
        crash_loop.reloaded(at(60), 2);
        // Back to back: the second in a row still goes at once, then 1 s, 2 s, 4 s…
        let mut now = 60;
        let mut sent = 2;
        let mut waits = Vec::new();
        for _ in 0..9 {
            now += 1;
            let wait = crash_loop.next(at(now), sent);
            waits.push(wait.map(|w| w.as_secs()));
            now += wait.map_or(0, |w| w.as_secs());
            sent += 1;
            crash_loop.reloaded(at(now), sent);
        }
        assert_eq!(
            waits,
            [
                None,
                Some(1),
                Some(2),
                Some(4),
                Some(8),
                Some(16),
                Some(30),
                Some(30),
                Some(30)
            ]
        );
        // A save in between starts afresh (the developer's restart), and so does a quiet spell.
        assert_eq!(crash_loop.next(at(now + 1), sent + 1), None);
        crash_loop.reloaded(at(now + 1), sent + 2);
        assert_eq!(crash_loop.next(at(now + 2), sent + 2), None);
        crash_loop.reloaded(at(now + 2), sent + 3);
        assert_eq!(
            crash_loop.next(at(now + 3), sent + 3),
            Some(Duration::from_secs(1))
        );
        crash_loop.reloaded(at(now + 4), sent + 4);
        assert_eq!(crash_loop.next(at(now + 20), sent + 4), None);
        assert_eq!(ordinal(3), "3rd");
        assert_eq!(ordinal(12), "12th");
        assert_eq!(ordinal(22), "22nd");
    }

    #[test]
    fn a_containers_loopback_is_said_to_be_unreachable() {
        let addr = |a: &str| {
            a.parse::<std::net::SocketAddr>()
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let said = unreachable_in_container(true, addr("127.0.0.1:3000"));
        assert!(said.is_some_and(|w| w.contains("HMR_PROXY_LISTEN=0.0.0.0:3000")));
        assert!(unreachable_in_container(true, addr("[::1]:3000")).is_some());
        assert!(unreachable_in_container(true, addr("0.0.0.0:3000")).is_none());
        assert!(unreachable_in_container(false, addr("127.0.0.1:3000")).is_none());
    }
}
