//! Connecting to a route's upstream: resolve (or take the pinned addresses), then try each
//! address in turn under the connect timeout.
//!
//! - [`pool`]: routes with `servers:`, their selection, failover and limits.
//! - [`health`]: the active and passive checks of pool servers.
//! - [`egress`]: tunnels through a forward proxy (`egress_proxy:`).

pub mod egress;
pub mod health;
pub mod pool;

use snigate_core::names::{ip_literal, Upstream};
use snigate_core::outcome::Outcome;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::FromRawFd;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Why no upstream connection was made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The upstream's host is `{sni}` but the client sent none.
    #[error("upstream needs the client's SNI, and there is none")]
    NoHost,
    /// Name resolution failed or timed out.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host looked up.
        host: String,
        /// What went wrong.
        reason: String,
    },
    /// The upstream is one of this gateway's own listeners.
    #[error("{target} resolves to {addr}, one of this gateway's own listeners; the gateway host must resolve it to the real endpoint (clients resolve it to the gateway)")]
    Loop {
        /// `host:port`.
        target: String,
        /// The address that is ours.
        addr: SocketAddr,
    },
    /// Every server of a pool that is up is at its `max_connections`.
    #[error("every server of the pool ({servers}) is at its max_connections; raise max_connections or add servers")]
    PoolFull {
        /// How many servers the pool has.
        servers: usize,
    },
    /// The route's egress proxy gave no tunnel.
    #[error(transparent)]
    Proxy(egress::ProxyError),
    /// Every address refused or timed out.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// `host:port`.
        target: String,
        /// The last address's error.
        reason: String,
    },
}

impl ConnectError {
    /// The connection's outcome.
    pub fn outcome(&self) -> Outcome {
        match self {
            ConnectError::NoHost | ConnectError::Resolve { .. } => Outcome::ResolveFailed,
            ConnectError::Connect { .. } => Outcome::ConnectFailed,
            ConnectError::Loop { .. } => Outcome::Loop,
            ConnectError::PoolFull { .. } => Outcome::OverLimit,
            ConnectError::Proxy(_) => Outcome::ProxyError,
        }
    }
}

/// A connected upstream.
#[derive(Debug)]
pub struct Connected {
    /// The socket.
    pub stream: TcpStream,
    /// The address it reached.
    pub addr: SocketAddr,
    /// Time from the first attempt to success.
    pub elapsed: Duration,
}

/// The `host:port` a route sends a connection to, for logs.
pub fn target(upstream: &Upstream, sni: Option<&str>, listener_port: u16) -> String {
    let host = upstream.host_for(sni).unwrap_or("-");
    let port = upstream.port_for(listener_port);
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// How long a resolved name's addresses are reused before it is looked up again.
pub const RESOLVE_TTL: Duration = Duration::from_secs(30);

/// By port, then by name, so that a lookup borrows the name instead of copying it.
type Cache = HashMap<u16, HashMap<String, (Instant, Arc<[SocketAddr]>)>>;

/// Names resolved in the last [`RESOLVE_TTL`], so that a busy route does not call the
/// resolver for every connection.
static RESOLVED: LazyLock<Mutex<Cache>> = LazyLock::new(Mutex::default);

fn cache() -> std::sync::MutexGuard<'static, Cache> {
    RESOLVED.lock().unwrap_or_else(|p| p.into_inner())
}

/// The addresses of `host`, from the cache or the resolver (under `timeout`).
async fn resolve(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Arc<[SocketAddr]>, ConnectError> {
    if let Some((at, addrs)) = cache().get(&port).and_then(|names| names.get(host)) {
        if at.elapsed() < RESOLVE_TTL {
            return Ok(addrs.clone());
        }
    }
    let failed = |reason: String| ConnectError::Resolve {
        host: host.to_owned(),
        reason,
    };
    let addrs: Arc<[SocketAddr]> =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(iter)) => iter.collect(),
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(_) => return Err(failed(format!("timed out after {timeout:?}"))),
        };
    if addrs.is_empty() {
        return Err(failed("no addresses".into()));
    }
    let mut cache = cache();
    for names in cache.values_mut() {
        names.retain(|_, (at, _)| at.elapsed() < RESOLVE_TTL);
    }
    cache
        .entry(port)
        .or_default()
        .insert(host.to_owned(), (Instant::now(), addrs.clone()));
    Ok(addrs)
}

/// Opens a non-blocking TCP connection to `addr` with TCP_NODELAY set, and waits until it
/// is established. Success costs no `getsockopt`: only a connection the kernel reports as
/// failed is asked why.
async fn connect_one(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just created and nothing else owns it.
    let std_stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let on: libc::c_int = 1;
    let (sockaddr, len) = socket_addr(&addr);
    // SAFETY: plain system calls on the socket owned here, with correctly sized arguments.
    let connected = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        libc::connect(fd, (&sockaddr as *const libc::sockaddr_storage).cast(), len)
    };
    if connected < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    let stream = TcpStream::from_std(std_stream)?;
    let ready = stream.ready(tokio::io::Interest::WRITABLE).await?;
    if ready.is_error() || ready.is_write_closed() {
        return Err(stream
            .take_error()?
            .unwrap_or_else(|| std::io::ErrorKind::ConnectionRefused.into()));
    }
    Ok(stream)
}

/// `addr` as a `sockaddr` for connect(2).
fn socket_addr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is a valid value of the type.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Tries each address in turn, each under `timeout`.
async fn first_to_answer(
    addrs: impl IntoIterator<Item = SocketAddr>,
    timeout: Duration,
) -> Result<Connected, String> {
    let start = Instant::now();
    let mut last = String::from("no addresses");
    for addr in addrs {
        match tokio::time::timeout(timeout, connect_one(addr)).await {
            Ok(Ok(stream)) => {
                return Ok(Connected {
                    stream,
                    addr,
                    elapsed: start.elapsed(),
                });
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: timed out after {timeout:?}"),
        }
    }
    Err(last)
}

/// Refuses upstream addresses that are the gateway's own listeners, so that a name the
/// gateway host resolves to itself cannot turn one connection into `max_connections`.
#[derive(Debug)]
pub struct LoopGuard {
    own: Vec<SocketAddr>,
    local_ips: Vec<IpAddr>,
}

/// This host's interface addresses.
fn local_ips() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, which is walked read-only and freed once.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            log::warn!(
                "cannot list this host's addresses ({}); the loop guard knows only loopback and the listeners' own addresses (under systemd, allow AF_NETLINK in RestrictAddressFamilies)",
                std::io::Error::last_os_error()
            );
            return out;
        }
        let mut cur = list;
        while !cur.is_null() {
            let a = (*cur).ifa_addr;
            if !a.is_null() {
                match i32::from((*a).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(a as *const libc::sockaddr_in);
                        out.push(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

impl LoopGuard {
    /// A guard for listeners on `own`.
    pub fn new(own: Vec<SocketAddr>) -> Self {
        LoopGuard {
            own,
            local_ips: local_ips(),
        }
    }

    /// True when connecting to `addr` would reach one of the gateway's own listeners.
    pub fn is_own(&self, addr: SocketAddr) -> bool {
        let local =
            |ip: IpAddr| ip.is_loopback() || ip.is_unspecified() || self.local_ips.contains(&ip);
        self.own.iter().any(|l| {
            l.port() == addr.port()
                && (l.ip() == addr.ip()
                    || addr.ip().is_unspecified()
                    || (l.ip().is_unspecified() && local(addr.ip())))
        })
    }

    fn check(&self, addrs: impl IntoIterator<Item = SocketAddr>) -> Option<SocketAddr> {
        addrs.into_iter().find(|a| self.is_own(*a))
    }
}

/// Resolves and connects: pinned addresses as they are, an IP as it is, a name through
/// the resolver (its answer reused for [`RESOLVE_TTL`], and dropped when no address
/// answers). No address is dialled if any is one of the gateway's own listeners. Each
/// address gets `timeout`; resolution gets `timeout` too.
pub async fn connect(
    upstream: &Upstream,
    sni: Option<&str>,
    listener_port: u16,
    timeout: Duration,
    guard: &LoopGuard,
) -> Result<Connected, ConnectError> {
    let host = upstream.host_for(sni).ok_or(ConnectError::NoHost)?;
    let port = upstream.port_for(listener_port);
    let looped = |addr| ConnectError::Loop {
        target: target(upstream, sni, listener_port),
        addr,
    };
    let tried = if !upstream.pinned.is_empty() {
        if let Some(addr) = guard.check(upstream.pinned_for(listener_port)) {
            return Err(looped(addr));
        }
        first_to_answer(upstream.pinned_for(listener_port), timeout).await
    } else if let Some(ip) = ip_literal(host) {
        let addr = SocketAddr::new(ip, port);
        if guard.is_own(addr) {
            return Err(looped(addr));
        }
        first_to_answer([addr], timeout).await
    } else {
        let addrs = resolve(host, port, timeout).await?;
        if let Some(addr) = guard.check(addrs.iter().copied()) {
            return Err(looped(addr));
        }
        let tried = first_to_answer(addrs.iter().copied(), timeout).await;
        if tried.is_err() {
            if let Some(names) = cache().get_mut(&port) {
                names.remove(host);
            }
        }
        tried
    };
    tried.map_err(|reason| ConnectError::Connect {
        target: target(upstream, sni, listener_port),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_gateways_own_listeners_are_refused() {
        let g = LoopGuard::new(vec![a("127.0.0.5:9092"), a("0.0.0.0:443")]);
        assert!(g.is_own(a("127.0.0.5:9092")));
        assert!(!g.is_own(a("127.0.0.6:9092")), "another address, same port");
        assert!(
            g.is_own(a("127.0.0.1:443")),
            "a wildcard listener covers loopback"
        );
        assert!(g.is_own(a("0.0.0.0:9092")));
        assert!(!g.is_own(a("192.0.2.10:443")), "TEST-NET is not this host");
        assert!(!g.is_own(a("127.0.0.5:9093")));
    }
}
