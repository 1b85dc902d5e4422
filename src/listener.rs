//! The gateway's listening sockets, as one Pingora service: every listener's accept loop
//! runs on the service's runtime and hands each connection, as a plain Tokio TCP stream,
//! to its listener's handler. The sockets live in Pingora's table of listening file
//! descriptors, so `-u` hands them to the next worker exactly as Pingora's own listening
//! services do.

use crate::admin::Readiness;
use crate::drain::stopped;
use crate::proxy::Handler;
use async_trait::async_trait;
use pingora_core::server::{ListenFds, ShutdownWatch};
use pingora_core::services::Service;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Accept queue length, as Pingora's own listeners ask for.
const BACKLOG: libc::c_int = 65535;

/// Every listener of the gateway.
pub struct Listeners {
    handlers: Vec<Arc<Handler>>,
    addresses: Vec<String>,
    readiness: Arc<Readiness>,
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
        }
    }
}

/// The listening socket for `addr`: the one inherited from the previous worker, or a new
/// one, which is added to the table for the next worker.
fn socket(addr: SocketAddr, fds: Option<&ListenFds>) -> std::io::Result<std::net::TcpListener> {
    let key = addr.to_string();
    if let Some(fd) = fds.and_then(|f| f.lock().get(&key).copied()) {
        // SAFETY: the table's descriptor is a listening socket handed over for this address,
        // and this service is its only user in this process.
        return Ok(unsafe { std::net::TcpListener::from_raw_fd(fd) });
    }
    let listener = std::net::TcpListener::bind(addr)?;
    let on: libc::c_int = 1;
    // SAFETY: listen(2) again on a bound, listening socket only changes its backlog; and
    // TCP_NODELAY set on a listening socket is inherited by every connection it accepts,
    // which saves a system call per connection (Kafka's small requests must not wait).
    unsafe {
        libc::listen(listener.as_raw_fd(), BACKLOG);
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    if let Some(fds) = fds {
        fds.lock().add(key, listener.as_raw_fd());
    }
    Ok(listener)
}

async fn accept_loop(listener: TcpListener, handler: Arc<Handler>, shutdown: ShutdownWatch) {
    let mut stop = shutdown.clone();
    let stopping = stopped(&mut stop);
    tokio::pin!(stopping);
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
                pingora_runtime::current_handle()
                    .spawn(async move { handler.accept(stream, peer, drain).await });
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
                Ok(s) => s,
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
