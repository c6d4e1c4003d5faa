//! Ports for a server a test starts later (a dev server, the proxy's binary, a browser test's
//! upstream): free now, and not handed to anyone else meanwhile.
//!
//! A port from binding port 0 and letting go is back in the kernel's ephemeral range, where the
//! next test's `bind(…:0)` (or an outgoing connection's local end) may take it before the server
//! starts, which then fails with `EADDRINUSE`, or the proxy finds another test's server there.
//! Ports below the ephemeral range are never handed out that way, so one that binds now stays free
//! for this test: the others take theirs from the counter below, one at a time.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};

/// How far below the ephemeral range the ports are taken from.
const SPAN: u16 = 8_000;

/// `N` distinct ports on 127.0.0.1 that nothing listens on and no other test in this process
/// will be given.
pub fn unclaimed<const N: usize>() -> [u16; N] {
    std::array::from_fn(|_| one())
}

fn one() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let (low, span) = below_ephemeral();
    // Start apart per process, so two test runs on one machine seldom meet.
    let start = (std::process::id() % u32::from(span)) as u16;
    for _ in 0..span {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = low + (start.wrapping_add(step) % span);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{}", low + span);
}

/// Linux's ephemeral port range (`ip_local_port_range`), first and last; `None` elsewhere.
pub fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = text.split_whitespace().map(|n| n.parse::<u16>().ok());
    Some((bounds.next()??, bounds.next()??))
}

/// The first port and the count of the range just below the ephemeral one (32768 by default).
fn below_ephemeral() -> (u16, u16) {
    let first_ephemeral = ephemeral_range().map_or(32_768, |(first, _)| first);
    let span = SPAN.min(first_ephemeral.saturating_sub(1_024));
    assert!(
        span > 100,
        "the ephemeral range starts at {first_ephemeral}: no room below it"
    );
    (first_ephemeral - span, span)
}

/// How many sockets on 127.0.0.1:`port` are connected to themselves (TCP's simultaneous open:
/// an outgoing connection that was given the port it dials), in any state, `TIME_WAIT` included,
/// from the kernel's table (`/proc/net/tcp`); `None` where there is none to read.
pub fn self_connections(port: u16) -> Option<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let end = format!("0100007F:{port:04X}");
    Some(
        table
            .lines()
            .skip(1)
            .filter(|line| {
                let mut fields = line.split_whitespace().skip(1);
                fields.next() == Some(end.as_str()) && fields.next() == Some(end.as_str())
            })
            .count(),
    )
}
