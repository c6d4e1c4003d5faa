//! A request body on its way to the upstream, watched: whether it broke, and when it last moved.
//!
//! Owns two facts about a browser's upload that the exchange needs after the body has been handed
//! to the client: that the body failed (a malformed chunk, the browser gone: the browser's fault,
//! answered 400, not the upstream's), and when its last frame passed, so that the response-header
//! timeout counts from the end of the upload rather than from its start (a 200 MB upload over a
//! phone's Wi-Fi can take longer than the timeout while the upstream is still reading, not slow to
//! answer). And it times one thing itself: a body the browser stops sending midway fails after the
//! stall timeout (`--header-timeout`), recorded as stalled (answered 408), as nginx's
//! `client_body_timeout` does; it never touches bytes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::{self, Body};

/// The shared record of one upload.
#[derive(Debug)]
pub(crate) struct Upload {
    failed: AtomicBool,
    /// The browser sent nothing for the stall timeout, mid-body.
    stalled: AtomicBool,
    /// When the body last moved, in milliseconds after `began`.
    moved: AtomicU64,
    began: Instant,
}

impl Upload {
    /// Wrap `incoming` so that each frame and a failure are recorded; the record goes with it.
    /// A body that sends nothing for `stall` fails, recorded as stalled: the upstream would wait
    /// for the rest with its connection held (a one-worker dev server, `php -S`, for everyone),
    /// and the browser would be told, after the response timeout, that the upstream was slow.
    pub(crate) fn watch(incoming: Incoming, stall: Duration) -> (Body, Arc<Upload>) {
        let upload = Arc::new(Upload {
            failed: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            moved: AtomicU64::new(0),
            began: Instant::now(),
        });
        let body = Watched {
            incoming,
            stall,
            deadline: Box::pin(tokio::time::sleep(stall)),
            waiting: false,
            upload: upload.clone(),
        };
        (body::boxed(body), upload)
    }

    /// The body broke off, was malformed, or stalled.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// The body stalled: the browser stopped sending it.
    pub(crate) fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    fn moved(&self) {
        let millis = u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.moved.fetch_max(millis, Ordering::Relaxed);
    }

    fn last_moved(&self) -> Instant {
        self.began + Duration::from_millis(self.moved.load(Ordering::Relaxed))
    }
}

/// Why a request body ended early.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled: nothing for {0:?}")]
struct Stalled(Duration);

/// The browser's body on its way upstream, recording into its [`Upload`].
struct Watched {
    incoming: Incoming,
    stall: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The deadline runs: the body was asked for a frame the browser has not sent. Only that
    /// time counts; an upstream slow to take what came is no stall of the browser's.
    waiting: bool,
    upload: Arc<Upload>,
}

impl http_body::Body for Watched {
    type Data = bytes::Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.upload.moved();
                this.waiting = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.upload.failed.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(err.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    this.deadline
                        .as_mut()
                        .reset(tokio::time::Instant::now() + this.stall);
                }
                match this.deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.upload.stalled.store(true, Ordering::Relaxed);
                        this.upload.failed.store(true, Ordering::Relaxed);
                        Poll::Ready(Some(Err(Stalled(this.stall).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
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
