//! WebSocket pass-through: once the upstream answers `101`, splice the two sockets together.
//!
//! Owns the tunnel task and nothing about deciding *whether* to upgrade (`proxy::mod` forwards the
//! handshake and only calls this after a real `101`). hyper stops tracking a connection once it is
//! upgraded, so the task is registered with [`Shutdown`] and ends when shutdown begins; without that
//! a dev server's HMR socket would hold the process open until the grace period runs out.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::shutdown::Shutdown;

/// Spawn the tunnel between the browser's and the upstream's upgraded connections. `what` names it
/// in logs (the request path).
pub fn spawn_tunnel(client: OnUpgrade, upstream: OnUpgrade, shutdown: Shutdown, what: String) {
    let stop = shutdown.clone();
    shutdown.spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(err) => {
                tracing::debug!("websocket {what}: upgrade failed: {err}");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match result {
                Ok((up, down)) => tracing::debug!("websocket {what} closed ({up} B up, {down} B down)"),
                Err(err) => tracing::debug!("websocket {what} ended: {err}"),
            },
            _ = stop.cancelled() => tracing::debug!("websocket {what} closed for shutdown"),
        }
    });
}
