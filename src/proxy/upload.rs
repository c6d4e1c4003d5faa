//! A request body on its way to the upstream, watched: whether it broke, and when it last moved.
//!
//! Owns two facts about a browser's upload that the exchange needs after the body has been handed
//! to the client: that the body failed (a malformed chunk, the browser gone: the browser's fault,
//! answered 400, not the upstream's), and when its last frame passed, so that the response-header
//! timeout counts from the end of the upload rather than from its start (a 200 MB upload over a
//! phone's Wi-Fi can take longer than the timeout while the upstream is still reading, not slow to
//! answer). It does not time anything itself beyond [`answered_within`], and never touches bytes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::{self, Body};

/// The shared record of one upload.
#[derive(Debug)]
pub(crate) struct Upload {
    failed: AtomicBool,
    /// When the body last moved, in milliseconds after `began`.
    moved: AtomicU64,
    began: Instant,
}

impl Upload {
    /// Wrap `incoming` so that each frame and a failure are recorded; the record goes with it.
    pub(crate) fn watch(incoming: Incoming) -> (Body, Arc<Upload>) {
        let upload = Arc::new(Upload {
            failed: AtomicBool::new(false),
            moved: AtomicU64::new(0),
            began: Instant::now(),
        });
        let (on_frame, on_error) = (upload.clone(), upload.clone());
        let body = incoming
            .map_frame(move |frame| {
                on_frame.moved();
                frame
            })
            .map_err(move |err| {
                on_error.failed.store(true, Ordering::Relaxed);
                err
            });
        (body::boxed(body), upload)
    }

    /// The body broke off or was malformed.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn moved(&self) {
        let millis = u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.moved.fetch_max(millis, Ordering::Relaxed);
    }

    fn last_moved(&self) -> Instant {
        self.began + Duration::from_millis(self.moved.load(Ordering::Relaxed))
    }
}

/// `exchange`'s result, or `None` once `timeout` has passed with no answer and no upload progress:
/// the deadline moves on while `upload`'s frames keep arriving, so only the upstream's silence
/// after the last of them counts. Requests without a body, nearly all, keep a plain
/// `tokio::time::timeout`.
pub(crate) async fn answered_within<T>(
    exchange: impl Future<Output = T>,
    timeout: Duration,
    upload: &Upload,
) -> Option<T> {
    let mut deadline = Instant::now() + timeout;
    let mut exchange = std::pin::pin!(exchange);
    loop {
        tokio::select! {
            biased;
            result = &mut exchange => return Some(result),
            () = tokio::time::sleep_until(deadline) => {
                let later = upload.last_moved() + timeout;
                if later <= deadline {
                    return None;
                }
                deadline = later;
            }
        }
    }
}
