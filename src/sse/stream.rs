//! One tab's `/changes` stream: catch-up bytes, then live batches and heartbeats until the tab
//! goes away or the proxy shuts down.
//!
//! Owns the per-tab body and its client-count guard. The body is pulled by the connection (hyper's,
//! or `raw_stream`'s loop), only as fast as the socket takes it: a tab that stops
//! reading stops being polled, its broadcast receiver falls behind, and on the next poll it gets a
//! `reload` batch instead of the backlog. Dropping the body (tab closed, connection reset) drops
//! the receiver and the guard; nothing else is held per tab.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::broadcast::{self, error::RecvError};

use super::{Hub, Published, wire};
use crate::body::{Body, BoxError};
use crate::shutdown::Shutdown;

/// Counts the tab in [`Hub::clients`] while the stream lives.
struct Guard(Hub);

impl Guard {
    fn new(hub: Hub) -> Guard {
        hub.inner.clients.fetch_add(1, Ordering::Relaxed);
        hub.inner.joined.notify_waiters();
        Guard(hub)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.left();
        self.0.inner.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Tab {
    rx: broadcast::Receiver<Published>,
    first: Option<Bytes>,
    heartbeat: tokio::time::Interval,
    shutdown: Shutdown,
    guard: Guard,
}

/// The streaming body for one tab.
pub(super) fn body(
    hub: Hub,
    rx: broadcast::Receiver<Published>,
    first: Bytes,
    heartbeat: Duration,
    shutdown: Shutdown,
) -> Body {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let tab = Tab {
        rx,
        first: Some(first),
        heartbeat: interval,
        shutdown,
        guard: Guard::new(hub),
    };
    let frames = futures_util::stream::unfold(tab, |mut tab| async move {
        if let Some(first) = tab.first.take() {
            return Some((Ok::<_, BoxError>(Frame::data(first)), tab));
        }
        let bytes = tokio::select! {
            biased;
            _ = tab.shutdown.cancelled() => return None,
            received = tab.rx.recv() => match received {
                Ok(published) => published.bytes,
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!("a tab fell {missed} batches behind; sending it a reload");
                    // Skip what is still queued: the reload covers it.
                    tab.rx = tab.rx.resubscribe();
                    Hub::reload_bytes(tab.guard.0.latest())
                }
                Err(RecvError::Closed) => return None,
            },
            _ = tab.heartbeat.tick() => wire::heartbeat(),
        };
        Some((Ok(Frame::data(bytes)), tab))
    });
    StreamBody::new(frames).boxed_unsync()
}
