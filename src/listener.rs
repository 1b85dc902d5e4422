//! The gateway's listening sockets, as one Pingora service: every listener's accept loop
//! runs on the service's runtime and hands each connection, as a plain Tokio TCP stream,
//! to its listener's handler. The sockets come from Pingora's table of listening file
//! descriptors, which [`HandedOver`] fills, for a worker started with `-u`, with the ones
//! the stable process holds (see `supervisor::sockets`), exactly as Pingora's own listening
//! services take theirs.
//!
//! [`bind`] makes a listening socket the way every snigate listener is made,
//! [`check_bindable`] tells at start-up whether the config's addresses are free, and
//! [`hand_over`] and [`take_over`] pass listening sockets between processes.

use crate::admin::Readiness;
use crate::proxy::wakes::{tick_this_thread, WhenWoken};
use crate::proxy::Handler;
use crate::worker::drain::stopped;
use async_trait::async_trait;
use pingora_core::server::{Fds, ListenFds, ShutdownWatch};
use pingora_core::services::Service;
use snigate_core::config::GatewayConfig;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// Accept queue length, as Pingora's own listeners ask for.
const BACKLOG: libc::c_int = 65535;

/// A new listening socket on `addr` (SO_REUSEADDR, a long accept queue, non-blocking, as
/// Pingora's services expect of a socket handed to them). With `nodelay`, TCP_NODELAY is
/// set on it, which every accepted connection inherits: that saves a system call per
/// connection, and Kafka's small requests must not wait.
pub fn bind(addr: SocketAddr, nodelay: bool) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let on: libc::c_int = 1;
    // SAFETY: listen(2) again on a bound, listening socket only changes its backlog;
    // setsockopt reads the local `on`.
    unsafe {
        libc::listen(listener.as_raw_fd(), BACKLOG);
        if nodelay {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    Ok(listener)
}

/// Checks that each address can be bound, so that a taken port fails at start with a clear
/// message instead of inside a service thread.
pub fn check_bindable(gateway: &GatewayConfig) -> Result<(), String> {
    let admin = gateway.admin.map(|a| ("admin".to_owned(), a));
    let all = gateway
        .listeners
        .iter()
        .map(|l| (format!("listener `{}`", l.name), l.address))
        .chain(admin);
    for (what, addr) in all {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            return Err(format!("{what} cannot listen on {addr}: {e}"));
        }
    }
    Ok(())
}

/// Hands `sockets` (address → listening socket) to the process listening on `path`, with
/// Pingora's hand-over protocol (what a worker started with `-u` receives). Blocks while
/// Pingora retries, for a few seconds at most.
pub fn hand_over(sockets: &[(String, OwnedFd)], path: &std::path::Path) -> Result<(), String> {
    let mut fds = Fds::new();
    for (key, fd) in sockets {
        fds.add(key.clone(), fd.as_raw_fd());
    }
    let path = path
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    fds.send_to_sock(path)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// How long [`take_over`] waits for the sender, as long as Pingora's own receiver would.
pub const TAKE_OVER_WAIT: Duration = Duration::from_secs(6);

/// Most sockets one hand-over carries, as Pingora's receiver allows.
const MAX_HANDED_OVER: usize = 32;

/// Listens on `path` and receives listening sockets handed over with [`hand_over`] (the
/// message Pingora's `Fds::send_to_sock` writes: the addresses, separated by spaces, with
/// the descriptors attached), waiting `wait` at most. Blocks.
///
/// Pingora's own receiver polls its socket once a second, so a worker started from the
/// stable process waited about a second for sockets sent within milliseconds; this one
/// wakes as soon as the sender connects.
pub fn take_over(path: &std::path::Path, wait: Duration) -> Result<Vec<(String, OwnedFd)>, String> {
    use std::os::unix::fs::PermissionsExt;
    let what = |e: std::io::Error| format!("takeover socket {}: {e}", path.display());
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(what)?;
    // Made before any change of user, like Pingora's: the sender may run as another user.
    let result = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(what)
        .and_then(|()| receive(&listener, wait).map_err(what));
    let _ = std::fs::remove_file(path);
    result
}

/// Accepts one connection on `listener` within `wait` and reads one hand-over from it.
fn receive(
    listener: &std::os::unix::net::UnixListener,
    wait: Duration,
) -> std::io::Result<Vec<(String, OwnedFd)>> {
    use std::io::{Error, ErrorKind};
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    let ready = loop {
        // SAFETY: one valid pollfd, for the listener that outlives the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ready >= 0 {
            break ready;
        }
        let e = Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if ready == 0 {
        return Err(Error::new(
            ErrorKind::TimedOut,
            format!("nobody handed sockets over within {wait:?}"),
        ));
    }
    let (conn, _) = listener.accept()?;
    conn.set_read_timeout(Some(wait))?;
    let mut payload = [0u8; 2048];
    // Room for MAX_HANDED_OVER descriptors, aligned for cmsghdr.
    let mut control = [0u64; 32];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg points at live buffers of the sizes it states.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(Error::last_os_error());
    }
    let mut fds: Vec<OwnedFd> = Vec::new();
    // SAFETY: the CMSG_* macros walk the control buffer recvmsg filled in, within
    // msg_controllen; each SCM_RIGHTS entry holds descriptors now owned by this process.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() > MAX_HANDED_OVER {
        return Err(Error::new(
            ErrorKind::InvalidData,
            "more sockets were handed over than fit",
        ));
    }
    let n = usize::try_from(n).unwrap_or(0);
    if n == 0 {
        return Err(Error::new(
            ErrorKind::UnexpectedEof,
            "the sender closed the connection without handing sockets over",
        ));
    }
    let keys: Vec<String> = std::str::from_utf8(&payload[..n])
        .map_err(|_| Error::new(ErrorKind::InvalidData, "the addresses are not text"))?
        .split_ascii_whitespace()
        .map(str::to_owned)
        .collect();
    if keys.len() != fds.len() {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("{} addresses came with {} sockets", keys.len(), fds.len()),
        ));
    }
    Ok(keys.into_iter().zip(fds).collect())
}

/// Puts the listening sockets handed over to a worker started with `-u` into Pingora's
/// table of listening descriptors, where the listeners and the admin endpoint find them,
/// before either starts (both depend on this service). Sockets for addresses this config
/// does not listen on are closed: left open, a listening socket that nobody accepts on
/// would swallow connections.
pub struct HandedOver {
    sockets: Vec<(String, OwnedFd)>,
    wanted: std::collections::HashSet<String>,
}

impl HandedOver {
    /// `sockets` as received, of which those on the `wanted` addresses are kept.
    pub fn new(
        sockets: Vec<(String, OwnedFd)>,
        wanted: impl IntoIterator<Item = SocketAddr>,
    ) -> Self {
        HandedOver {
            sockets,
            wanted: wanted.into_iter().map(|a| a.to_string()).collect(),
        }
    }
}

#[async_trait]
impl pingora_core::services::ServiceWithDependents for HandedOver {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
        ready: pingora_core::services::ServiceReadyNotifier,
    ) {
        if let Some(fds) = fds {
            let mut table = fds.lock();
            for (key, fd) in self.sockets.drain(..) {
                if self.wanted.contains(&key) {
                    table.add(key, fd.into_raw_fd());
                } else {
                    log::warn!(
                        "closing the handed-over listening socket on {key}: this config does not listen there"
                    );
                }
            }
        }
        ready.notify_ready();
        let _ = shutdown.changed().await;
    }

    fn name(&self) -> &str {
        "handed-over sockets"
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }
}

/// The listening sockets a worker accepts on, by address, while it accepts: what a
/// worker whose stable process died keeps for the next one (see `worker::orphan`).
#[derive(Debug, Clone, Default)]
pub struct OpenListeners(Arc<Mutex<Vec<(String, RawFd)>>>);

impl OpenListeners {
    fn add(&self, key: String, fd: RawFd) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key, fd));
    }

    /// A duplicate of each socket, which stays open after the accept loops close theirs.
    pub fn dup_all(&self) -> Vec<(String, OwnedFd)> {
        let open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        open.iter()
            .filter_map(|(key, fd)| {
                // SAFETY: the accept loops keep these descriptors open until the shutdown
                // that follows this call.
                let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
                match borrowed.try_clone_to_owned() {
                    Ok(dup) => Some((key.clone(), dup)),
                    Err(e) => {
                        log::error!("cannot keep the listening socket on {key}: {e}");
                        None
                    }
                }
            })
            .collect()
    }
}

/// Every listener of the gateway.
pub struct Listeners {
    handlers: Vec<Arc<Handler>>,
    addresses: Vec<String>,
    readiness: Arc<Readiness>,
    open: OpenListeners,
}

impl Listeners {
    /// One listener per handler, on the handler's address; `readiness` learns when they
    /// all accept.
    pub fn new(handlers: Vec<Arc<Handler>>, readiness: Arc<Readiness>) -> Self {
        let addresses = handlers
            .iter()
            .map(|h| h.listener().address.to_string())
            .collect();
        Listeners {
            handlers,
            addresses,
            readiness,
            open: OpenListeners::default(),
        }
    }

    /// The sockets these listeners accept on, once they do.
    pub fn open_listeners(&self) -> OpenListeners {
        self.open.clone()
    }
}

/// The listening socket for `addr`: the one handed over (by the stable process or the
/// previous worker), or a new one, which is added to the table for the next worker.
fn socket(addr: SocketAddr, fds: Option<&ListenFds>) -> std::io::Result<std::net::TcpListener> {
    let key = addr.to_string();
    if let Some(fd) = fds.and_then(|f| f.lock().get(&key).copied()) {
        // SAFETY: the table's descriptor is a listening socket handed over for this address,
        // and this service is its only user in this process.
        return Ok(unsafe { std::net::TcpListener::from_raw_fd(fd) });
    }
    let listener = bind(addr, true)?;
    if let Some(fds) = fds {
        fds.lock().add(key, listener.as_raw_fd());
    }
    Ok(listener)
}

async fn accept_loop(listener: TcpListener, handler: Arc<Handler>, shutdown: ShutdownWatch) {
    let mut stop = shutdown.clone();
    let stopping = std::pin::pin!(stopped(&mut stop));
    let mut stopping = WhenWoken::new(stopping);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut stopping => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let handler = handler.clone();
                let drain = shutdown.clone();
                // Pingora's handle: with work stealing off, a random one of its threads.
                pingora_runtime::current_handle().spawn(async move {
                    tick_this_thread();
                    handler.accept(stream, peer, drain).await
                });
            }
            Err(e) => {
                // Out of descriptors, say: accept would fail again at once.
                log::warn!("listener {}: accept failed: {e}", handler.listener().name);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    log::info!("listener {} stopped accepting", handler.listener().name);
}

#[async_trait]
impl Service for Listeners {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let mut loops = Vec::new();
        for handler in self.handlers.drain(..) {
            let l = handler.listener();
            let std_listener = socket(l.address, fds.as_ref()).and_then(|s| {
                s.set_nonblocking(true)?;
                TcpListener::from_std(s)
            });
            let listener = match std_listener {
                Ok(s) => {
                    self.open.add(l.address.to_string(), s.as_raw_fd());
                    s
                }
                Err(e) => {
                    log::error!("listener `{}` cannot listen on {}: {e}", l.name, l.address);
                    log::logger().flush();
                    std::process::exit(1);
                }
            };
            loops.push(tokio::spawn(accept_loop(
                listener,
                handler,
                shutdown.clone(),
            )));
        }
        log::info!("all listeners accept connections");
        self.readiness.set_listeners_up();
        for l in loops {
            let _ = l.await;
        }
    }

    fn name(&self) -> &str {
        "gateway"
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(self.addresses.clone())
    }
}
