//! Errors that stop the process before or while it starts, each naming what failed and the fix.
//!
//! Owns [`StartupError`] and its exit codes. Per-request failures never come here: they become
//! HTTP responses where they happen (the proxy's 502/504 page, the router's 4xx answers).

use std::net::SocketAddr;

use crate::config::{ConfigError, Origin};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error("{addr} is already in use by {holder}; stop it, or pick another port with {}", fix_flag(.origin, *.free))]
    PortInUse {
        addr: SocketAddr,
        /// `another hmr-proxy` when it answers as one, else `another program`.
        holder: &'static str,
        origin: Option<Origin>,
        /// A port after it that was free a moment ago, to suggest (the next one may be taken
        /// too: a second dev server is often on it).
        free: SocketAddr,
    },

    #[error(
        "the upstream {upstream} is this proxy's own address ({addr}); point it at the dev server's port, or listen on another one with --listen"
    )]
    OwnAddress { upstream: String, addr: SocketAddr },

    #[error("cannot listen on {addr}: {source}{}; pick another address with {}", privileged(*.addr, .source), where_to_set(.origin))]
    Bind {
        addr: SocketAddr,
        origin: Option<Origin>,
        #[source]
        source: std::io::Error,
    },
}

impl StartupError {
    /// Exit code: 2 for anything the user can fix in their input, as clap does for bad flags.
    pub fn exit_code(&self) -> u8 {
        2
    }
}

/// Where the listen address is set, as the error for it names it.
fn where_to_set(origin: &Option<Origin>) -> String {
    match origin {
        Some(Origin::Env(var)) => var.clone(),
        Some(Origin::File { path, .. }) => format!("`listen` in {}", path.display()),
        Some(Origin::Flag(_)) | None => "--listen".to_string(),
    }
}

/// Why a port below 1024 is refused to a user who is not root (a container's own user too).
fn privileged(addr: SocketAddr, source: &std::io::Error) -> &'static str {
    if addr.port() < 1024 && source.kind() == std::io::ErrorKind::PermissionDenied {
        " (ports below 1024 are for root only)"
    } else {
        ""
    }
}

/// "--listen 127.0.0.1:3001" phrased for wherever the address came from.
fn fix_flag(origin: &Option<Origin>, next: SocketAddr) -> String {
    match origin {
        Some(Origin::Env(var)) => format!("{var}={next}"),
        Some(Origin::File { path, .. }) => {
            format!(
                "listen = \"{next}\" in {} (or --listen {next})",
                path.display()
            )
        }
        Some(Origin::Flag(_)) | None => format!("--listen {next}"),
    }
}
