//! The process-wide shutdown signal and the registry of long-lived tasks it ends.
//!
//! Owns one [`Shutdown`] handle, cloned into everything that lives longer than a request: the
//! accept loop, WebSocket tunnels and (later) event streams. hyper's graceful shutdown only stops
//! keep-alive; a tunnel or an endless stream never finishes by itself, so each such task must
//! `select!` on [`Shutdown::cancelled`] and is spawned through [`Shutdown::spawn`] so the server can
//! wait for it within the grace period. It does not own signal *policy* beyond SIGINT/SIGTERM.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

/// A cloneable handle: trigger it once, and every clone sees it.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    /// Cancelled exactly once, by a signal or by a test; never reset.
    token: CancellationToken,
    /// Tasks that outlive the request that started them (tunnels, streams). Closed and awaited by
    /// [`Shutdown::wait_for_tasks`] after the listener stops.
    tasks: TaskTracker,
}

impl Shutdown {
    /// A fresh, untriggered handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask everything to stop. Idempotent.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown has begun.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// Spawn a long-lived task the shutdown sequence waits for. The task itself must watch
    /// [`Shutdown::cancelled`]; this only tracks it.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Number of tracked tasks still running.
    pub fn tasks_alive(&self) -> usize {
        self.tasks.len()
    }

    /// Wait up to `grace` for the tracked tasks; returns how many were still running.
    pub async fn wait_for_tasks(&self, grace: Duration) -> usize {
        self.tasks.close();
        match tokio::time::timeout(grace, self.tasks.wait()).await {
            Ok(()) => 0,
            Err(_) => self.tasks.len(),
        }
    }

    /// Trigger this handle on Ctrl-C or SIGTERM (Docker's `stop`; as PID 1 nothing else would).
    /// A second one exits at once: whoever presses Ctrl-C twice does not want to wait out the
    /// grace period for a hung request.
    pub fn trigger_on_signals(&self) {
        let this = self.clone();
        let mut signals = Signals::register();
        tokio::spawn(async move {
            let first = signals.recv().await;
            let again = match first {
                Signal::Interrupt => "Ctrl-C again",
                Signal::Terminate => "a second SIGTERM",
            };
            tracing::info!("shutting down: finishing in-flight requests ({again} to stop now)");
            this.trigger();
            let second = signals.recv().await;
            tracing::warn!("stopping now, in-flight requests cut off");
            // As a shell reports a process its signal ended: 128 and the signal's number.
            std::process::exit(match second {
                Signal::Interrupt => 130,
                Signal::Terminate => 143,
            });
        });
    }
}

/// Which of the two stop signals came.
#[derive(Clone, Copy)]
enum Signal {
    /// SIGINT: Ctrl-C in the terminal.
    Interrupt,
    /// SIGTERM: `docker stop`, systemd, `kill`.
    Terminate,
}

/// SIGINT and SIGTERM handlers, installed when this is built (not when first polled), so a signal
/// that arrives right after start-up is already caught.
#[cfg(unix)]
struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    fn register() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt())
            .map_err(|err| tracing::warn!("cannot listen for SIGINT ({err})"))
            .ok();
        let term = signal(SignalKind::terminate())
            .map_err(|err| tracing::warn!("cannot listen for SIGTERM ({err})"))
            .ok();
        Signals { int, term }
    }

    async fn recv(&mut self) -> Signal {
        async fn next(sig: &mut Option<tokio::signal::unix::Signal>) {
            match sig {
                Some(sig) => {
                    sig.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.int) => Signal::Interrupt,
            _ = next(&mut self.term) => Signal::Terminate,
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn register() -> Self {
        Signals
    }

    async fn recv(&mut self) -> Signal {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Interrupt
    }
}
