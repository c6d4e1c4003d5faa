//! Which sockets listen for the upstream on this machine, read from the kernel's socket tables.
//!
//! Owns [`listening`]: the inodes of the listening TCP sockets that accept connections made to
//! one local address (Linux's `/proc/net/tcp` and `tcp6`). A dev server that restarts (a rebuilt
//! Go binary, nodemon, Django's reloader) closes its listening socket and opens a new one, so a
//! changed set is a restart, seen without connecting to the server: a connect every half second
//! is logged by some (`php -S` writes three lines for each) and misses a restart quicker than the
//! interval. It does not decide what a change means (`health`) and answers `None` where the
//! tables cannot be read (other systems, a locked-down `/proc`), which leaves connecting.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `st` of a listening socket in `/proc/net/tcp` (`TCP_LISTEN`).
const LISTEN: &str = "0A";

/// Inodes, sorted, of the listening sockets on this machine that take a connection to `peer` (a
/// local address the proxy has just connected to): bound to its port on `peer`'s address, or, for
/// a loopback `peer`, on every address. `None` when the tables cannot be read; empty when nothing
/// found listens (a NAT rule, not a socket, may answer for the address).
#[cfg(target_os = "linux")]
pub fn listening(peer: SocketAddr) -> Option<Vec<u64>> {
    let mut inodes = Vec::new();
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // IPv6 may be off: then only the first exists.
        if let Ok(file) = std::fs::File::open(table) {
            readable = true;
            scan(std::io::BufReader::new(file), peer, &mut inodes);
        }
    }
    inodes.sort_unstable();
    inodes.dedup();
    readable.then_some(inodes)
}

#[cfg(not(target_os = "linux"))]
pub fn listening(_peer: SocketAddr) -> Option<Vec<u64>> {
    None
}

/// Add the inodes of `table`'s listening sockets that take connections to `peer`. The kernel
/// lists listening sockets before all others, so reading stops at the first that is not: with
/// ten thousand open connections the table is megabytes, its listening part a few lines.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn scan(table: impl std::io::BufRead, peer: SocketAddr, inodes: &mut Vec<u64>) {
    for line in table.lines().skip(1) {
        let Ok(line) = line else { return };
        let mut fields = line.split_ascii_whitespace();
        let (Some(local), Some(state), Some(inode)) = (fields.nth(1), fields.nth(1), fields.nth(5))
        else {
            return;
        };
        if state != LISTEN {
            return;
        }
        let Some(local) = parse_address(local) else {
            continue;
        };
        if takes(local, peer)
            && let Ok(inode) = inode.parse()
        {
            inodes.push(inode);
        }
    }
}

/// Whether a socket listening on `local` takes a connection made to `peer`.
fn takes(local: SocketAddr, peer: SocketAddr) -> bool {
    if local.port() != peer.port() {
        return false;
    }
    let canonical = |ip: IpAddr| ip.to_canonical();
    // Bound to every address: that includes loopback, but for another of this machine's
    // addresses a NAT rule may send the connection elsewhere, so only loopback counts.
    (local.ip().is_unspecified() && peer.ip().is_loopback())
        || canonical(local.ip()) == canonical(peer.ip())
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6). The kernel prints the address as
/// 32-bit words in this machine's byte order, so each word's native bytes are the address's.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = address.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table as the kernel prints it, in this machine's byte order.
    fn line(local: SocketAddr, state: &str, inode: u64) -> String {
        let word = |b: &[u8]| format!("{:08X}", u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        let address = match local.ip() {
            IpAddr::V4(ip) => word(&ip.octets()),
            IpAddr::V6(ip) => ip.octets().chunks(4).map(word).collect(),
        };
        format!(
            "   0: {address}:{:04X} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000  1000        0 {inode} 1 0000000000000000 100 0 0 10 0",
            local.port()
        )
    }

    fn table(lines: &[String]) -> String {
        let mut text = String::from(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
        );
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    fn found(text: &str, peer: &str) -> Vec<u64> {
        let mut inodes = Vec::new();
        scan(text.as_bytes(), peer.parse().unwrap(), &mut inodes);
        inodes
    }

    #[test]
    fn addresses_read_as_the_kernel_prints_them() {
        for addr in ["127.0.0.1:8000", "[::1]:3000", "[::]:80", "0.0.0.0:65535"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let text = line(addr, LISTEN, 1);
            let field = text.split_ascii_whitespace().nth(1).unwrap();
            assert_eq!(parse_address(field), Some(addr), "{field}");
        }
        assert_eq!(parse_address("0100007F"), None);
        assert_eq!(parse_address("0100007:1F90"), None);
        assert_eq!(parse_address("zz00007F:1F90"), None);
    }

    #[test]
    fn only_listeners_that_take_the_connection_count() {
        let text = table(&[
            line("127.0.0.1:8000".parse().unwrap(), LISTEN, 11),
            line("0.0.0.0:8000".parse().unwrap(), LISTEN, 12),
            line("10.0.0.2:8000".parse().unwrap(), LISTEN, 13),
            line("127.0.0.1:8001".parse().unwrap(), LISTEN, 14),
            line("[::]:8000".parse().unwrap(), LISTEN, 15),
        ]);
        assert_eq!(found(&text, "127.0.0.1:8000"), [11, 12, 15]);
        assert_eq!(found(&text, "[::1]:8000"), [12, 15]);
        // Another address of this machine: only a socket bound to it.
        assert_eq!(found(&text, "10.0.0.2:8000"), [13]);
        assert_eq!(found(&text, "10.0.0.3:8000"), Vec::<u64>::new());
    }

    #[test]
    fn reading_stops_where_the_listening_sockets_end() {
        let peer: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let mut lines = vec![line(peer, LISTEN, 21)];
        lines.push(line(peer, "01", 22));
        lines.push(line(peer, LISTEN, 23));
        assert_eq!(found(&table(&lines), "127.0.0.1:8000"), [21]);
        // A line the scan cannot read ends it too; nothing panics.
        let text = table(&["garbage".to_string(), line(peer, LISTEN, 24)]);
        assert_eq!(found(&text, "127.0.0.1:8000"), Vec::<u64>::new());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_listener_of_this_process_is_found_and_gone_once_closed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let inodes = listening(addr).expect("/proc/net/tcp is readable here");
        assert_eq!(inodes.len(), 1, "{inodes:?}");
        drop(listener);
        assert_eq!(listening(addr), Some(Vec::new()));
    }
}
