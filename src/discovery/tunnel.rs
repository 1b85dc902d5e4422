//! Discovery through the egress proxy. librdkafka cannot use a proxy, so its name lookups
//! are answered here (librdkafka's `resolve_cb`): each lookup of `host:port` opens a fresh
//! listener on 127.0.0.1, on a port the kernel picks, and answers with that address. The
//! listener takes one connection, only from this very process (the connecting socket
//! must be one of this process's own descriptors), then closes; that connection is
//! tunnelled through the proxy to `host:port` by name. librdkafka still uses the real name
//! for TLS (SNI and certificate checks), so encryption and SASL stay end to end.
//!
//! Nothing else on the host can use a tunnel: it is on loopback only, it accepts once, it
//! refuses a connection from any other process, and it leads only to the name asked for.

use crate::upstream::egress::tunnel;
use crate::upstream::LoopGuard;
use snigate_core::egress::EgressProxy;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a tunnel's listener waits for librdkafka's connection.
const ACCEPT_WITHIN: Duration = Duration::from_secs(30);

/// Opens tunnels through one proxy.
pub struct Tunnels {
    proxy: Arc<EgressProxy>,
    timeout: Duration,
    runtime: tokio::runtime::Handle,
    guard: Arc<LoopGuard>,
}

impl Tunnels {
    /// Tunnels through `proxy`, each opened within `timeout`, served on `runtime`.
    pub fn new(
        proxy: Arc<EgressProxy>,
        timeout: Duration,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Tunnels {
            proxy,
            timeout,
            runtime,
            guard: Arc::new(LoopGuard::new(Vec::new())),
        }
    }

    /// A one-shot listener whose one connection is tunnelled to `host:port`; returns its
    /// address.
    pub fn open(&self, host: &str, port: u16) -> std::io::Result<SocketAddr> {
        let std_listener = std::net::TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (proxy, guard, timeout) = (self.proxy.clone(), self.guard.clone(), self.timeout);
        let host = host.to_owned();
        self.runtime.spawn(async move {
            let listener = match TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(e) => {
                    log::warn!("discovery tunnel to {host}:{port}: {e}");
                    return;
                }
            };
            let accepted = tokio::time::timeout(ACCEPT_WITHIN, listener.accept()).await;
            // One connection only: no one else may use the port afterwards.
            drop(listener);
            let Ok(Ok((mut local, peer))) = accepted else {
                return;
            };
            let ours = tokio::task::spawn_blocking(move || own_socket(peer, addr))
                .await
                .unwrap_or(false);
            if !ours {
                log::warn!("discovery tunnel to {host}:{port}: refused a connection from {peer}, which is not this process");
                return;
            }
            match tunnel(&proxy, &host, port, timeout, &guard).await {
                Ok(mut t) => {
                    crate::upstream::egress::count(&proxy, Ok(t.answer));
                    use tokio::io::AsyncWriteExt;
                    if local.write_all(&t.early).await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut local, &mut t.stream).await;
                    }
                }
                Err(crate::upstream::ConnectError::Proxy(e)) => {
                    crate::upstream::egress::count(&proxy, Err(&e));
                    log::warn!("discovery: {e}");
                }
                Err(e) => log::warn!("discovery tunnel to {host}:{port}: {e}"),
            }
        });
        Ok(addr)
    }
}

/// True when `peer`, the client end of a connection to our listener at `listener`, is a
/// socket this process holds: its inode in `/proc/net/tcp` is one of `/proc/self/fd`'s.
/// Blocking: reads `/proc`.
fn own_socket(peer: SocketAddr, listener: SocketAddr) -> bool {
    let (SocketAddr::V4(peer), SocketAddr::V4(listener)) = (peer, listener) else {
        return false;
    };
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let Some(inode) = socket_inode(&table, peer, listener) else {
        return false;
    };
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    let want = format!("socket:[{inode}]");
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|link| link.as_os_str() == want.as_str())
}

/// `addr` as `/proc/net/tcp` writes it.
fn proc_addr(addr: SocketAddrV4) -> String {
    let ip = u32::from_ne_bytes(addr.ip().octets());
    format!("{ip:08X}:{:04X}", addr.port())
}

/// The inode of the socket from `local` to `remote`, from `/proc/net/tcp`'s text; sockets
/// without one (such as TIME_WAIT leftovers) are skipped.
fn socket_inode(table: &str, local: SocketAddrV4, remote: SocketAddrV4) -> Option<u64> {
    let (local, remote) = (proc_addr(local), proc_addr(remote));
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(1) != Some(&local.as_str()) || cols.get(2) != Some(&remote.as_str()) {
            return None;
        }
        cols.get(9)?.parse::<u64>().ok().filter(|i| *i != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_of_this_process_is_found_and_another_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let at = listener.local_addr().unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(own_socket(peer, at), "our own client socket");
        let other = SocketAddr::from(([127, 0, 0, 1], 1));
        assert!(!own_socket(other, at), "nobody's socket");
        // Another process on this host connecting to the same kind of listener.
        let port = listener.local_addr().unwrap().port();
        let mut intruder = std::process::Command::new("bash")
            .args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; sleep 5")])
            .spawn()
            .unwrap();
        let (_theirs, peer) = listener.accept().unwrap();
        let theirs = own_socket(peer, at);
        let _ = intruder.kill();
        let _ = intruder.wait();
        assert!(!theirs, "a socket of another process passed as ours");
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
0: 0100007F:1F90 0100007F:0050 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0\n   \
1: 0100007F:1F90 0100007F:0050 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n";
        let (local, remote) = (
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80),
        );
        assert_eq!(
            socket_inode(table, local, remote),
            Some(4242),
            "TIME_WAIT rows have no inode"
        );
        assert_eq!(socket_inode(table, remote, local), None);
    }
}
