//! `hmr-proxy --health-check`: ask a running proxy whether it is up.
//!
//! Owns the client side of the container health check: one plain HTTP/1.1 `GET /__hmr/health`
//! to the configured listen address (a wildcard address is asked on loopback), with short
//! timeouts, so a runtime image needs no curl. It uses blocking std sockets: it runs once and
//! exits, no runtime needed.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// A health check that takes longer than this counts as failed; Docker's own timeout is usually
/// a few seconds, and a proxy on the same host answers in microseconds.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Why the check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("no answer from {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr} answered, but not as a healthy hmr-proxy: {status_line}")]
    Unhealthy {
        addr: SocketAddr,
        status_line: String,
    },
}

/// Check the proxy listening on `listen`.
pub fn check(listen: SocketAddr) -> Result<(), HealthError> {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(ip, listen.port());
    let io = |source| HealthError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    stream
        .write_all(b"GET /__hmr/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(io)?;
    let mut reply = Vec::new();
    stream.take(4096).read_to_end(&mut reply).map_err(io)?;
    let text = String::from_utf8_lossy(&reply);
    let status_line = text.lines().next().unwrap_or_default().to_string();
    if status_line.starts_with("HTTP/1.1 200") && text.ends_with("ok\n") {
        Ok(())
    } else {
        Err(HealthError::Unhealthy { addr, status_line })
    }
}
