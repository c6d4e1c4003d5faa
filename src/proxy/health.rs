//! Whether the upstream answers, learned from real requests and from a light probe.
//!
//! Owns [`Health`] (the last known reachability and how many restarts were seen, observable) and
//! the probe task. Requests report their outcome for free; while tabs are listening, or while the
//! upstream is down, the probe notices a restart even when no request is in flight, so `lib` can
//! send a reload when a rebuilt backend comes back. Where the upstream listens on this machine
//! the probe watches its listening socket (`listeners`): nothing reaches the server, and a
//! restart quicker than the interval still shows as a new socket. Elsewhere it connects every
//! [`PROBE_INTERVAL`] and sends no HTTP (dev servers would log it). It decides nothing about
//! reloads itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::listeners;
use crate::shutdown::Shutdown;

/// How often the probe runs when it runs: a backend restart is noticed within half a second,
/// and a connect every half second costs a dev server nothing measurable.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

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
    /// Not probing (no tab listens) or not up.
    Idle,
    /// Watching the upstream's listening socket on this machine.
    Listener,
    /// Connecting: a restart shows only if a connect falls in the gap.
    Connect,
}

/// What observers see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub reach: Reach,
    /// Restarts seen while the upstream stayed reachable (a new listening socket).
    pub restarts: u64,
    pub check: Check,
}

/// Shared reachability state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Health {
    tx: Arc<watch::Sender<Seen>>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    pub fn new() -> Health {
        let seen = Seen {
            reach: Reach::Unknown,
            restarts: 0,
            check: Check::Idle,
        };
        Health {
            tx: Arc::new(watch::channel(seen).0),
        }
    }

    /// Record an outcome; observers wake only on a change.
    pub fn report(&self, up: bool) {
        let reach = if up { Reach::Up } else { Reach::Down };
        self.tx.send_if_modified(|seen| {
            let changed = seen.reach != reach;
            seen.reach = reach;
            changed
        });
    }

    /// A new server took over while the old one's requests kept succeeding.
    fn report_restart(&self) {
        self.tx.send_modify(|seen| seen.restarts += 1);
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

    /// Probe `authority` (`host:port`) while `wanted()` says someone cares or it is not known up.
    pub fn spawn_probe(
        &self,
        authority: String,
        timeout: Duration,
        wanted: impl Fn() -> bool + Send + 'static,
        shutdown: Shutdown,
    ) {
        let health = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut watched = Watched::new(health.subscribe());
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let up = health.current() == Reach::Up;
                if up && !wanted() {
                    watched.forget(&health);
                    continue;
                }
                if up && watched.still_up(&health) {
                    continue;
                }
                let connect = tokio::net::TcpStream::connect(authority.as_str());
                match tokio::time::timeout(timeout, connect).await {
                    Ok(Ok(stream)) => {
                        health.report(true);
                        watched.learn(&health, stream.peer_addr().ok());
                    }
                    // The proxy's own shortage says nothing about the upstream.
                    Ok(Err(err)) if super::unavailable::out_of_files(&err) => {}
                    _ => health.report(false),
                }
            }
        });
    }
}

/// The listening sockets the upstream had when the probe last connected to it.
struct Watched {
    peer: Option<SocketAddr>,
    inodes: Vec<u64>,
    /// Wakes when reachability changes behind the probe's back (a request failed): what was
    /// learnt may then be from a server that is gone, and the next connect learns afresh.
    seen: watch::Receiver<Seen>,
}

impl Watched {
    fn new(seen: watch::Receiver<Seen>) -> Watched {
        Watched {
            peer: None,
            inodes: Vec::new(),
            seen,
        }
    }

    fn forget(&mut self, health: &Health) {
        self.peer = None;
        health.set_check(Check::Idle);
    }

    /// After a connect to `peer`: its listening sockets, when this machine's tables show them.
    fn learn(&mut self, health: &Health, peer: Option<SocketAddr>) {
        self.seen.borrow_and_update();
        let found = peer.and_then(|peer| Some((peer, listeners::listening(peer)?)));
        match found {
            Some((peer, inodes)) if !inodes.is_empty() => {
                self.peer = Some(peer);
                self.inodes = inodes;
                health.set_check(Check::Listener);
            }
            _ => {
                self.peer = None;
                health.set_check(Check::Connect);
            }
        }
    }

    /// Whether the sockets learnt are still the ones listening, so no connect is needed. A new
    /// set is a restart (reported, and learnt); none at all needs a connect to say down.
    fn still_up(&mut self, health: &Health) -> bool {
        if self.seen.has_changed().unwrap_or(true) {
            self.peer = None;
        }
        let Some(peer) = self.peer else {
            return false;
        };
        match listeners::listening(peer) {
            Some(now) if now == self.inodes => true,
            Some(now) if !now.is_empty() => {
                self.inodes = now;
                health.report_restart();
                self.seen.borrow_and_update();
                true
            }
            _ => {
                self.peer = None;
                false
            }
        }
    }
}
