//! Whether the upstream answers, learned from real requests and from a light probe.
//!
//! Owns [`Health`] (the last known reachability, observable) and the probe task. Requests report
//! their outcome for free; while tabs are listening, or while the upstream is down, a TCP connect
//! every [`PROBE_INTERVAL`] notices a restart even when no request is in flight, so `lib` can send
//! a reload when a rebuilt backend comes back. It sends no HTTP (dev servers would log it) and
//! decides nothing about reloads itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

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

/// Shared reachability state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Health {
    tx: Arc<watch::Sender<Reach>>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    pub fn new() -> Health {
        Health {
            tx: Arc::new(watch::channel(Reach::Unknown).0),
        }
    }

    /// Record an outcome; observers wake only on a change.
    pub fn report(&self, up: bool) {
        let reach = if up { Reach::Up } else { Reach::Down };
        self.tx.send_if_modified(|current| {
            let changed = *current != reach;
            *current = reach;
            changed
        });
    }

    pub fn current(&self) -> Reach {
        *self.tx.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<Reach> {
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
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if health.current() == Reach::Up && !wanted() {
                    continue;
                }
                let connect = tokio::net::TcpStream::connect(authority.as_str());
                match tokio::time::timeout(timeout, connect).await {
                    Ok(Ok(_)) => health.report(true),
                    // The proxy's own shortage says nothing about the upstream.
                    Ok(Err(err)) if super::unavailable::out_of_files(&err) => {}
                    _ => health.report(false),
                }
            }
        });
    }
}
