//! Whether the upstream answers, learned from real requests and from a light probe.
//!
//! Owns [`Health`] (the last known reachability and the mark of the last restart seen, from the
//! proxy's `sse::Restarts`, observable) and the probe task. Requests report their outcome for
//! free; while tabs are listening, or while the upstream is down, the probe notices a restart
//! even when no request is in flight, so `lib` can send a reload when a rebuilt backend comes
//! back. Where the upstream listens on this machine the probe watches its listening sockets and
//! the processes holding them (`listeners`):
//! nothing reaches the server, a restart quicker than the interval still shows as a new socket,
//! and a reloader that keeps its socket and hands it to each new worker shows as a new holder.
//! Elsewhere it connects every [`PROBE_INTERVAL`] and sends no HTTP (dev servers would log it);
//! to an https upstream it completes the TLS handshake and closes with `close_notify`, since a
//! connection closed mid-handshake is one log line each time on some (Go's `net/http`: "TLS
//! handshake error … EOF").
//! It decides nothing about reloads itself.
//!
//! It also answers the waiting page's question, "is the dev server back?" ([`accepts`], asked
//! through [`Back`]): the same connect, made when a page asks, never an HTTP request, which
//! would run the app's handler for that page (a `HEAD` does, in Go's `net/http`: a form handler
//! ran with an empty form) and would be one more line in the dev server's log every poll.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt as _;
use tokio::sync::{Notify, watch};

use super::listeners;
use super::tls::Tls;
use crate::config::{ProxySettings, Upstream};
use crate::shutdown::Shutdown;
use crate::sse::Restarts;

/// How often the probe runs when it runs: a backend restart is noticed within half a second,
/// and a connect every half second costs a dev server nothing measurable.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// How long the waiting page's question waits for the upstream to take a connection: on this
/// machine or a compose network a connect takes a millisecond, and a page asks again within
/// three seconds anyway; the answer must come before that, not after the whole connect timeout.
pub const BACK_TIMEOUT: Duration = Duration::from_secs(1);

/// How long one answer to "is it back?" stands for every page that asks: any number of tabs
/// polling, or anyone calling the endpoint in a loop, cost the upstream at most a connect this
/// often; a page that asks every 300 ms at first learns of the comeback at most this late.
const BACK_REUSE: Duration = Duration::from_millis(250);

/// Last known reachability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Unknown,
    Up,
    Down,
}

/// How the probe tells a restart while the upstream is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not probing: no tab listens.
    Idle,
    /// Not probing, and asleep until a tab listens or a request finds the upstream down.
    Resting,
    /// Watching the upstream's listening sockets, and their holders, on this machine.
    Listener,
    /// Connecting: a restart shows only if a connect falls in the gap. Also while down.
    Connect,
}

/// What observers see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub reach: Reach,
    /// The mark of the last time a server came back (down, then up) or took over from another
    /// (a new listening socket while up), from the proxy's [`Restarts`]; 0 before the first.
    /// Kept, not only read off `reach`: an observer that wakes late sees up, down and up again as
    /// up, and a new mark as a comeback.
    pub comeback: u64,
    pub check: Check,
}

/// Shared reachability state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Health {
    tx: Arc<watch::Sender<Seen>>,
    /// A request has been answered since [`Health::take_answered`] last looked: the server
    /// serves pages, so a restart now is no crash on the page's request.
    answered: Arc<std::sync::atomic::AtomicBool>,
    /// Where comebacks are marked: shared by every upstream's, and read by every page.
    restarts: Restarts,
}

impl Health {
    pub fn new(restarts: Restarts) -> Health {
        let seen = Seen {
            reach: Reach::Unknown,
            comeback: 0,
            check: Check::Idle,
        };
        Health {
            tx: Arc::new(watch::channel(seen).0),
            answered: Arc::default(),
            restarts,
        }
    }

    /// A request the upstream answered. Read before written: on the path of every request, the
    /// flag is written once per restart, not once per request.
    pub fn report_answered(&self) {
        use std::sync::atomic::Ordering;
        if !self.answered.load(Ordering::Relaxed) {
            self.answered.store(true, Ordering::Relaxed);
        }
        self.report(true);
    }

    /// Whether a request was answered since the last call.
    pub fn take_answered(&self) -> bool {
        self.answered
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Record an outcome; observers wake only on a change.
    pub fn report(&self, up: bool) {
        let reach = if up { Reach::Up } else { Reach::Down };
        self.tx.send_if_modified(|seen| {
            let changed = seen.reach != reach;
            if seen.reach == Reach::Down && reach == Reach::Up {
                // Marked before the request that found it back is answered: that page is past
                // this comeback (see `Restarts`).
                seen.comeback = self.restarts.mark();
            }
            seen.reach = reach;
            changed
        });
    }

    /// A new server took over while the upstream stayed up.
    fn report_restart(&self) {
        self.tx
            .send_modify(|seen| seen.comeback = self.restarts.mark());
    }

    /// Say how restarts are told apart, without waking observers.
    fn set_check(&self, check: Check) {
        self.tx.send_if_modified(|seen| {
            seen.check = check;
            false
        });
    }

    pub fn current(&self) -> Reach {
        self.tx.borrow().reach
    }

    pub fn check(&self) -> Check {
        self.tx.borrow().check
    }

    pub fn subscribe(&self) -> watch::Receiver<Seen> {
        self.tx.subscribe()
    }

    /// Probe `upstream` while `wanted()` says someone cares or it is not known up. `joined` is
    /// woken when `wanted()` may have turned true (a tab's stream opened).
    pub fn spawn_probe(
        &self,
        upstream: &Upstream,
        settings: &ProxySettings,
        wanted: impl Fn() -> bool + Send + 'static,
        joined: Arc<Notify>,
        shutdown: Shutdown,
    ) {
        let health = self.clone();
        let authority = upstream.authority.to_string();
        let timeout = settings.connect_timeout;
        let tls = upstream.tls.then(|| {
            (
                Tls::new(settings.insecure, settings.connect_timeout),
                upstream.host.clone(),
            )
        });
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut watched = Watched::new(health.subscribe());
            let mut changes = health.subscribe();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let up = health.current() == Reach::Up;
                if up && !wanted() {
                    watched.forget(&health);
                    // Nothing to look for until a tab listens or a request finds the upstream
                    // down: asleep till then, where it woke twice a second for nothing (an idle
                    // proxy left running all day, on a laptop's battery). Armed before the last
                    // look, so a tab that opens in between is not missed.
                    let joined = joined.notified();
                    tokio::pin!(joined);
                    joined.as_mut().enable();
                    changes.borrow_and_update();
                    if !wanted() && health.current() == Reach::Up {
                        health.set_check(Check::Resting);
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = joined => {}
                            changed = changes.changed() => {
                                if changed.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    tick.reset_immediately();
                    continue;
                }
                if up && watched.still_up(&health).await {
                    continue;
                }
                let connect = super::connector::connect(authority.as_str());
                match tokio::time::timeout(timeout, connect).await {
                    Ok(Ok(stream)) => {
                        let peer = stream.peer_addr().ok();
                        watched.catch_up();
                        let was_up = health.current() == Reach::Up;
                        health.report(true);
                        // It accepted: up, whatever the handshake says (an untrusted certificate
                        // is the exchange's to report).
                        if let Some((tls, host)) = &tls {
                            let _ = politely_closed(tls, stream, host).await;
                        }
                        watched.learn(&health, peer, was_up).await;
                    }
                    // The proxy's own shortage says nothing about the upstream.
                    Ok(Err(err)) if super::unavailable::out_of_files(&err) => {}
                    _ => {
                        health.report(false);
                        health.set_check(Check::Connect);
                    }
                }
            }
        });
    }
}

/// The answer to the waiting page's question for one upstream: one check at a time, and its
/// answer reused for [`BACK_REUSE`] (pages and their assets ask together).
#[derive(Debug, Default)]
pub struct Back {
    /// When the last check ended, and what it found.
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl Back {
    /// The last answer if it is recent, else `check`'s (callers meanwhile wait for it).
    pub async fn ask<F>(&self, check: impl FnOnce() -> F) -> bool
    where
        F: std::future::Future<Output = bool>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, up)) = *last
            && at.elapsed() < BACK_REUSE
        {
            return up;
        }
        let up = check().await;
        *last = Some((Instant::now(), up));
        up
    }
}

/// Whether the upstream at `authority` takes a connection within [`BACK_TIMEOUT`], and, for an
/// https upstream (`tls`: the handshake and the host to name), completes a TLS handshake: an
/// exchange needs both, and neither reaches the app. The connection is closed without a
/// request.
pub async fn accepts(authority: &str, tls: Option<(&Tls, &str)>) -> bool {
    let connect = super::connector::connect(authority);
    let Ok(Ok(stream)) = tokio::time::timeout(BACK_TIMEOUT, connect).await else {
        return false;
    };
    match tls {
        Some((tls, host)) => politely_closed(tls, stream, host).await.is_ok(),
        None => true,
    }
}

/// A TLS handshake on `stream`, then `close_notify` (see the module docs).
async fn politely_closed(
    tls: &Tls,
    stream: tokio::net::TcpStream,
    host: &str,
) -> std::io::Result<()> {
    let mut stream = tls
        .handshake(stream, host)
        .await
        .map_err(std::io::Error::other)?;
    stream.shutdown().await
}

/// The listening sockets the upstream had when the probe last looked.
struct Watched {
    /// Where the probe's last connect went, while its sockets are watched.
    peer: Option<SocketAddr>,
    /// The sockets seen while the upstream stayed up; kept through a connect that a look
    /// finding none falls back to, so a server that took over in between still counts.
    inodes: Vec<u64>,
    /// The processes holding those sockets, when they were last all seen running, and how many
    /// looks ago one of them went with no newcomer yet (see `check_holders`).
    holders: Vec<u32>,
    all_there: Instant,
    lost: Option<u32>,
    /// Wakes when reachability changes behind the probe's back (a request failed): the sockets
    /// seen may then be a gone server's, and its comeback is marked already.
    seen: watch::Receiver<Seen>,
}

/// Looks (at [`PROBE_INTERVAL`]) to wait for a process to take over a socket from one that
/// ended, before taking the fewer holders as the server's own (a worker that was not replaced).
const LOST_PATIENCE: u32 = 20;

impl Watched {
    fn new(seen: watch::Receiver<Seen>) -> Watched {
        Watched {
            peer: None,
            inodes: Vec::new(),
            holders: Vec::new(),
            all_there: Instant::now(),
            lost: None,
            seen,
        }
    }

    fn forget(&mut self, health: &Health) {
        self.peer = None;
        self.inodes.clear();
        self.holders.clear();
        health.set_check(Check::Idle);
    }

    /// Drop what was seen if reachability changed since.
    fn catch_up(&mut self) {
        if self.seen.has_changed().unwrap_or(true) {
            self.peer = None;
            self.inodes.clear();
        }
    }

    /// After a connect to `peer`: its listening sockets, when the kernel shows them. Sockets
    /// none of which were there before, while the upstream stayed up, are a server that took
    /// over.
    async fn learn(&mut self, health: &Health, peer: Option<SocketAddr>, was_up: bool) {
        let found = peer.and_then(|peer| Some((peer, listeners::listening(peer)?)));
        match found {
            Some((peer, inodes)) if !inodes.is_empty() => {
                if was_up && !self.inodes.is_empty() && disjoint(&inodes, &self.inodes) {
                    health.report_restart();
                }
                self.peer = Some(peer);
                self.holders = holders(&inodes).await;
                self.all_there = Instant::now();
                self.lost = None;
                self.inodes = inodes;
                health.set_check(Check::Listener);
            }
            _ => {
                self.peer = None;
                self.inodes.clear();
                health.set_check(Check::Connect);
            }
        }
        self.seen.borrow_and_update();
    }

    /// Whether the upstream is known to be up without a connect. Sockets none of which were
    /// there before are a restart (reported); some of them still there is the same server (a
    /// worker with its own socket replaced); none at all needs a connect to say down.
    async fn still_up(&mut self, health: &Health) -> bool {
        self.catch_up();
        let Some(peer) = self.peer else {
            return false;
        };
        match listeners::listening(peer) {
            Some(now) if now.is_empty() => {
                self.peer = None;
                false
            }
            Some(now) => {
                if disjoint(&now, &self.inodes) {
                    health.report_restart();
                    self.seen.borrow_and_update();
                    self.holders = holders(&now).await;
                    self.all_there = Instant::now();
                    self.lost = None;
                } else {
                    self.check_holders(health, &now).await;
                }
                self.inodes = now;
                true
            }
            None => {
                self.peer = None;
                self.inodes.clear();
                false
            }
        }
    }

    /// The same sockets can still be a new server: a reloader that keeps the listening socket
    /// hands it to each new worker process. A holder that ended, and a newcomer (not seen
    /// before, started since all were last seen), with at most one other holder (the reloader)
    /// there from before, is a restart; with more (gunicorn's workers, one replaced after
    /// `--max-requests`) it is the same server. Reads every process's descriptors only from a
    /// holder's end until a newcomer shows.
    async fn check_holders(&mut self, health: &Health, inodes: &[u64]) {
        if self.holders.is_empty() {
            return;
        }
        if self.lost.is_none() && self.holders.iter().all(|&pid| listeners::alive(pid)) {
            self.all_there = Instant::now();
            return;
        }
        let now = holders(inodes).await;
        // On the clock process start times use; a tick (10 ms) early, as they are rounded down.
        let since =
            listeners::uptime().map(|up| up - self.all_there.elapsed().as_secs_f64() - 0.01);
        // Not one already seen, and started since: a start time is in ticks of 10 ms, so one
        // seen at a look just after it started could pass for a newcomer by its time alone.
        let newcomers = now
            .iter()
            .filter(|&&pid| {
                let started = listeners::started(pid);
                self.holders.binary_search(&pid).is_err()
                    && matches!((started, since), (Some(started), Some(since)) if started >= since)
            })
            .count();
        if newcomers > 0 {
            if now.len() - newcomers <= 1 {
                health.report_restart();
                self.seen.borrow_and_update();
            }
        } else {
            let waited = self.lost.map_or(0, |n| n + 1);
            if waited < LOST_PATIENCE {
                self.lost = Some(waited);
                return;
            }
        }
        self.holders = now;
        self.all_there = Instant::now();
        self.lost = None;
    }
}

/// [`listeners::holders`] off the runtime's threads: it reads every process's descriptors, tens
/// of milliseconds on a desktop, which would stall the requests sharing a worker thread.
async fn holders(inodes: &[u64]) -> Vec<u32> {
    let inodes = inodes.to_vec();
    tokio::task::spawn_blocking(move || listeners::holders(&inodes))
        .await
        .unwrap_or_default()
}

/// Whether two sorted sets share nothing.
fn disjoint(a: &[u64], b: &[u64]) -> bool {
    !a.iter().any(|x| b.binary_search(x).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comeback_counts_even_when_the_observer_wakes_after_it() {
        let restarts = Restarts::default();
        let health = Health::new(restarts.clone());
        health.report(true);
        let mut seen = health.subscribe();
        let before = *seen.borrow_and_update();
        health.report(false);
        health.report(true);
        let after = *seen.borrow_and_update();
        assert_eq!(after.reach, Reach::Up);
        assert_eq!(after.comeback, restarts.latest());
        assert!(after.comeback > before.comeback);
        // Up at start is no comeback; neither is a second report of the same.
        let fresh = Health::new(restarts.clone());
        fresh.report(true);
        fresh.report(true);
        assert_eq!(fresh.subscribe().borrow().comeback, 0);
        // Marks are shared: another upstream's comeback comes after this one's.
        fresh.report(false);
        fresh.report(true);
        assert!(fresh.subscribe().borrow().comeback > after.comeback);
    }

    #[test]
    fn disjoint_sets() {
        assert!(disjoint(&[1, 2], &[3, 4]));
        assert!(!disjoint(&[1, 3], &[3, 4]));
        assert!(disjoint(&[], &[3]));
    }
}
