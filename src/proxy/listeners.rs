//! Which sockets listen for the upstream on this machine, and which processes hold them, asked
//! of the kernel.
//!
//! Owns [`listening`]: the inodes of the listening TCP sockets that take connections made to one
//! local address, from Linux's socket diagnostics (a `NETLINK_SOCK_DIAG` dump of listening
//! sockets only); and [`holders`], [`alive`], [`started`]: the processes holding those sockets,
//! from `/proc`. A dev server that restarts (a rebuilt Go binary, nodemon, Django's reloader)
//! closes its listening socket and opens a new one, and a reloader that keeps its socket hands
//! it to a new worker process, so either shows a restart without connecting to the server: a
//! connect every half second is logged by some (`php -S` writes three lines for each) and misses
//! a restart quicker than the interval. `/proc/net/tcp` lists the sockets too but costs
//! milliseconds a read (the kernel walks every connection on the machine to print it) and does
//! not say which IPv6 sockets refuse IPv4. It does not decide what a change means (`health`) and
//! answers `None` or nothing where the kernel cannot be asked (other systems, a sandbox without
//! netlink), which leaves connecting.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Listener {
    local: SocketAddr,
    /// An IPv6 socket that takes no IPv4 connections (`IPV6_V6ONLY`).
    v6_only: bool,
    inode: u64,
}

/// Inodes, sorted, of the listening sockets that take a connection to `peer` (a local address
/// the proxy has just connected to). `None` when the kernel cannot be asked; empty when no
/// socket found takes it (a NAT rule, not a socket, may answer for the address).
pub fn listening(peer: SocketAddr) -> Option<Vec<u64>> {
    // The kernel prefers an IPv4 socket for an IPv4 connection: IPv6 ones matter only when no
    // IPv4 one takes it.
    let mut inodes = match peer.ip().to_canonical() {
        IpAddr::V4(_) => {
            let found = receivers(&dump(Family::V4)?, peer);
            if found.is_empty() {
                receivers(&dump(Family::V6)?, peer)
            } else {
                found
            }
        }
        IpAddr::V6(_) => receivers(&dump(Family::V6)?, peer),
    };
    inodes.sort_unstable();
    inodes.dedup();
    Some(inodes)
}

/// Processes, sorted, that hold any of the sockets `inodes` (from `/proc/*/fd`; those of other
/// users cannot be read and are missing). A reloader that keeps the listening socket across
/// restarts and hands it to each new worker (Werkzeug's, uvicorn's, gunicorn's `--reload`)
/// keeps the socket: only its holders change. Reads every process's descriptors, so it is for
/// when something changed, not for every look.
#[cfg(target_os = "linux")]
pub fn holders(inodes: &[u64]) -> Vec<u32> {
    let names: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = processes
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| names.iter().any(|n| target.as_os_str() == n.as_str()))
            })
        })
        .collect();
    pids.sort_unstable();
    pids
}

#[cfg(not(target_os = "linux"))]
pub fn holders(_inodes: &[u64]) -> Vec<u32> {
    Vec::new()
}

/// Whether process `pid` still runs (a zombie, exited but not yet reaped, does not).
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| !fields.starts_with(['Z', 'X']))
}

/// When process `pid` started, in seconds since boot (in the kernel's fixed user tick of
/// 1/100 s). `None` once it has ended.
pub fn started(pid: u32) -> Option<f64> {
    let ticks: u64 = stat_fields(pid)?
        .split_ascii_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    Some(ticks as f64 / 100.0)
}

/// `/proc/PID/stat` from its 3rd field (the state) on: the 2nd, the command name, is in
/// parentheses and may hold any byte, spaces and parentheses included.
fn stat_fields(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.trim_start().to_string())
}

/// Seconds since boot, on the clock process start times use.
pub fn uptime() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// The sockets among `listeners` that the kernel hands a connection to `peer`: those bound to
/// its very address if any (of its own family first), else, for a loopback `peer`, those bound
/// to every address that take its family. For another address of this machine a wildcard
/// socket is not counted: a NAT rule may send the connection elsewhere.
fn receivers(listeners: &[Listener], peer: SocketAddr) -> Vec<u64> {
    let ip = peer.ip().to_canonical();
    let v4 = ip.is_ipv4();
    let on_port = || listeners.iter().filter(|l| l.local.port() == peer.port());
    let same_family = |l: &&Listener| l.local.is_ipv4() == v4;
    let exact: Vec<&Listener> = on_port()
        .filter(|l| l.local.ip().to_canonical() == ip)
        .collect();
    let chosen: Vec<&Listener> = if !exact.is_empty() {
        let own: Vec<&Listener> = exact.iter().copied().filter(same_family).collect();
        if own.is_empty() { exact } else { own }
    } else if ip.is_loopback() {
        let wildcard = || on_port().filter(|l| l.local.ip().is_unspecified());
        let own: Vec<&Listener> = wildcard().filter(same_family).collect();
        if own.is_empty() && v4 {
            wildcard().filter(|l| !l.v6_only).collect()
        } else {
            own
        }
    } else {
        Vec::new()
    };
    chosen.iter().map(|l| l.inode).collect()
}

#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
}

/// `AF_INET`, `AF_INET6` as the kernel numbers them.
impl Family {
    fn number(self) -> u8 {
        match self {
            Family::V4 => 2,
            Family::V6 => 10,
        }
    }
}

// From linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h and netinet/in.h: a stable ABI.
const AF_NETLINK: i32 = 16;
const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const IPPROTO_TCP: u8 = 6;
const TCP_LISTEN: u32 = 10;
const INET_DIAG_SKV6ONLY: u16 = 11;
/// `struct nlmsghdr`.
const HEADER: usize = 16;
/// `struct inet_diag_req_v2`.
const REQUEST: usize = 56;
/// `struct inet_diag_msg`: family, state, timer, retrans, a 48-byte socket id, then five u32s
/// of which the last is the inode.
const MESSAGE: usize = 72;

/// Every listening TCP socket of `family` in this network namespace.
#[cfg(target_os = "linux")]
fn dump(family: Family) -> Option<Vec<Listener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::io::Read as _;

    let socket = Socket::new(
        Domain::from(AF_NETLINK),
        Type::DGRAM,
        Some(Protocol::from(NETLINK_SOCK_DIAG)),
    )
    .ok()?;
    // The kernel answers a dump at once; this only bounds a kernel that never does.
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .ok()?;
    // Unbound and unconnected, a netlink socket sends to the kernel.
    socket.send(&request(family)).ok()?;
    let mut listeners = Vec::new();
    // A dump comes in datagrams of at most 32 KiB, each holding whole messages.
    let mut datagram = vec![0u8; 64 * 1024];
    loop {
        let n = (&socket).read(&mut datagram).ok()?;
        if n == 0 || read_datagram(&datagram[..n], &mut listeners)? {
            return Some(listeners);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn dump(_family: Family) -> Option<Vec<Listener>> {
    None
}

/// A dump request for `family`'s listening TCP sockets.
fn request(family: Family) -> Vec<u8> {
    let mut msg = Vec::with_capacity(HEADER + REQUEST);
    msg.extend_from_slice(&((HEADER + REQUEST) as u32).to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    msg.extend_from_slice(&[family.number(), IPPROTO_TCP, 0, 0]);
    msg.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    msg.resize(HEADER + REQUEST, 0); // any socket id
    msg
}

/// Add the listeners in one datagram of the answer. `Some(true)` once the dump is done, `None`
/// when the kernel refused it or the datagram does not parse.
fn read_datagram(mut data: &[u8], listeners: &mut Vec<Listener>) -> Option<bool> {
    while data.len() >= HEADER {
        let len = u32::from_ne_bytes(data[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(data[4..6].try_into().ok()?);
        if len < HEADER || len > data.len() {
            return None;
        }
        match kind {
            NLMSG_DONE => return Some(true),
            NLMSG_ERROR => return None,
            SOCK_DIAG_BY_FAMILY => listeners.push(listener(&data[HEADER..len])?),
            _ => {}
        }
        // Messages are 4-byte aligned.
        data = data.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Some(false)
}

/// One `inet_diag_msg` and its attributes.
fn listener(msg: &[u8]) -> Option<Listener> {
    let body = msg.get(..MESSAGE)?;
    let port = u16::from_be_bytes(body[4..6].try_into().ok()?);
    let source: [u8; 16] = body[8..24].try_into().ok()?;
    let ip = match body[0] {
        2 => IpAddr::V4(Ipv4Addr::new(source[0], source[1], source[2], source[3])),
        10 => IpAddr::V6(Ipv6Addr::from(source)),
        _ => return None,
    };
    let inode = u32::from_ne_bytes(body[68..72].try_into().ok()?);
    let mut v6_only = false;
    let mut attributes = &msg[MESSAGE..];
    while attributes.len() >= 4 {
        let len = u16::from_ne_bytes(attributes[0..2].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(attributes[2..4].try_into().ok()?);
        if len < 4 || len > attributes.len() {
            break;
        }
        if kind == INET_DIAG_SKV6ONLY {
            v6_only = attributes.get(4).is_some_and(|&b| b != 0);
        }
        attributes = attributes
            .get(len.next_multiple_of(4)..)
            .unwrap_or_default();
    }
    Some(Listener {
        local: SocketAddr::new(ip, port),
        v6_only,
        inode: u64::from(inode),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(addr: &str, inode: u64) -> Listener {
        Listener {
            local: addr.parse().unwrap(),
            v6_only: false,
            inode,
        }
    }

    fn v6_only(addr: &str, inode: u64) -> Listener {
        Listener {
            v6_only: true,
            ..at(addr, inode)
        }
    }

    fn taking(listeners: &[Listener], peer: &str) -> Vec<u64> {
        receivers(listeners, peer.parse().unwrap())
    }

    #[test]
    fn the_socket_bound_to_the_address_takes_the_connection() {
        let all = [
            at("127.0.0.1:8000", 1),
            at("0.0.0.0:8000", 2),
            at("[::1]:8000", 3),
            at("[::]:8000", 4),
            at("127.0.0.1:8001", 5),
            at("10.0.0.2:8000", 6),
        ];
        assert_eq!(taking(&all, "127.0.0.1:8000"), [1]);
        assert_eq!(taking(&all, "[::1]:8000"), [3]);
        assert_eq!(taking(&all, "[::ffff:127.0.0.1]:8000"), [1]);
        assert_eq!(taking(&all, "10.0.0.2:8000"), [6]);
        assert_eq!(taking(&all, "127.0.0.1:8001"), [5]);
    }

    #[test]
    fn else_a_wildcard_socket_of_a_family_that_takes_it() {
        let v4 = [at("0.0.0.0:8000", 2), at("[::]:8000", 4)];
        assert_eq!(taking(&v4, "127.0.0.1:8000"), [2]);
        // An IPv4 wildcard socket never takes an IPv6 connection.
        assert_eq!(
            taking(&[at("0.0.0.0:8000", 2)], "[::1]:8000"),
            Vec::<u64>::new()
        );
        assert_eq!(taking(&v4, "[::1]:8000"), [4]);
        // Dual-stack takes IPv4; one that refuses IPv4 does not.
        assert_eq!(taking(&[at("[::]:8000", 4)], "127.0.0.1:8000"), [4]);
        let only = [v6_only("[::]:8000", 7)];
        assert_eq!(taking(&only, "127.0.0.1:8000"), Vec::<u64>::new());
        assert_eq!(taking(&only, "[::1]:8000"), [7]);
        // Not for another of this machine's addresses: a NAT rule may take that.
        assert_eq!(taking(&v4, "10.0.0.3:8000"), Vec::<u64>::new());
        // Workers each with their own socket (SO_REUSEPORT): all of them.
        let workers = [at("127.0.0.1:8000", 8), at("127.0.0.1:8000", 9)];
        assert_eq!(taking(&workers, "127.0.0.1:8000"), [8, 9]);
    }

    /// One answer message for `l`, as the kernel writes it.
    fn message(l: &Listener, v6_only_attribute: Option<bool>) -> Vec<u8> {
        let mut body = vec![0u8; MESSAGE];
        body[0] = if l.local.is_ipv4() { 2 } else { 10 };
        body[1] = TCP_LISTEN as u8;
        body[4..6].copy_from_slice(&l.local.port().to_be_bytes());
        match l.local.ip() {
            IpAddr::V4(ip) => body[8..12].copy_from_slice(&ip.octets()),
            IpAddr::V6(ip) => body[8..24].copy_from_slice(&ip.octets()),
        }
        body[68..72].copy_from_slice(&(l.inode as u32).to_ne_bytes());
        if let Some(flag) = v6_only_attribute {
            body.extend_from_slice(&5u16.to_ne_bytes());
            body.extend_from_slice(&INET_DIAG_SKV6ONLY.to_ne_bytes());
            body.extend_from_slice(&[u8::from(flag), 0, 0, 0]);
        }
        wrap(SOCK_DIAG_BY_FAMILY, &body)
    }

    fn wrap(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut msg = Vec::new();
        msg.extend_from_slice(&((HEADER + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&[0u8; 10]);
        msg.extend_from_slice(body);
        msg
    }

    #[test]
    fn answers_read_as_the_kernel_writes_them() {
        let v4 = at("127.0.0.1:8000", 11);
        let v6 = v6_only("[::]:3000", 12);
        let mut datagram = message(&v4, None);
        datagram.extend(message(&v6, Some(true)));
        let mut found = Vec::new();
        assert_eq!(read_datagram(&datagram, &mut found), Some(false));
        datagram = wrap(NLMSG_DONE, &[0; 4]);
        assert_eq!(read_datagram(&datagram, &mut found), Some(true));
        assert_eq!(found, [v4, v6]);

        // A refusal, a short or overlong message: no answer, no panic.
        assert_eq!(
            read_datagram(&wrap(NLMSG_ERROR, &[0; 20]), &mut found),
            None
        );
        let short = wrap(SOCK_DIAG_BY_FAMILY, &[2; 10]);
        assert_eq!(read_datagram(&short, &mut found), None);
        let mut overlong = message(&v4, None);
        overlong[0] = 200;
        assert_eq!(read_datagram(&overlong, &mut found), None);
        assert_eq!(read_datagram(&[1, 2, 3], &mut found), Some(false));
    }

    #[test]
    fn the_request_asks_for_listening_tcp_sockets_of_one_family() {
        let req = request(Family::V6);
        assert_eq!(req.len(), HEADER + REQUEST);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 72);
        assert_eq!(req[16..18], [10, IPPROTO_TCP]);
        assert_eq!(u32::from_ne_bytes(req[20..24].try_into().unwrap()), 1 << 10);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_listener_of_this_process_is_found_and_gone_once_closed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let inodes = listening(addr).expect("the kernel answers socket diagnostics here");
        assert_eq!(inodes.len(), 1, "{inodes:?}");
        drop(listener);
        assert_eq!(listening(addr), Some(Vec::new()));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_processes_holding_a_socket_are_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inodes = listening(listener.local_addr().unwrap()).unwrap();
        assert_eq!(holders(&inodes), [std::process::id()]);
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX));
        let (now, started) = (uptime().unwrap(), started(std::process::id()).unwrap());
        assert!(started > 0.0 && started <= now, "{started} {now}");
        assert_eq!(super::started(u32::MAX), None);
        assert_eq!(holders(&[u64::from(u32::MAX) + 7]), Vec::<u32>::new());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_says_which_ipv6_sockets_refuse_ipv4() {
        use socket2::{Domain, Socket, Type};
        let Ok(socket) = Socket::new(Domain::IPV6, Type::STREAM, None) else {
            return; // no IPv6 here
        };
        socket.set_only_v6(true).unwrap();
        if socket
            .bind(&"[::1]:0".parse::<SocketAddr>().unwrap().into())
            .is_err()
        {
            return;
        }
        socket.listen(8).unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        let found = dump(Family::V6).expect("the kernel answers");
        let ours = found.iter().find(|l| l.local == addr).expect("ours listed");
        assert!(ours.v6_only, "{ours:?}");
    }
}
