//! Connecting to a route's upstream: resolve (or take the pinned addresses), then try each
//! address in turn under the connect timeout.

use snigate_core::names::Upstream;
use snigate_core::outcome::Outcome;
use std::net::SocketAddr;
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

/// Resolves and connects. Each address gets `timeout`; resolution gets `timeout` too.
pub async fn connect(
    upstream: &Upstream,
    sni: Option<&str>,
    listener_port: u16,
    timeout: Duration,
) -> Result<Connected, ConnectError> {
    let host = upstream.host_for(sni).ok_or(ConnectError::NoHost)?;
    let port = upstream.port_for(listener_port);
    let addrs: Vec<SocketAddr> = if upstream.pinned.is_empty() {
        let lookup = tokio::net::lookup_host((host, port));
        match tokio::time::timeout(timeout, lookup).await {
            Ok(Ok(iter)) => iter.collect(),
            Ok(Err(e)) => {
                return Err(ConnectError::Resolve {
                    host: host.to_owned(),
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(ConnectError::Resolve {
                    host: host.to_owned(),
                    reason: format!("timed out after {timeout:?}"),
                })
            }
        }
    } else {
        upstream.pinned_for(listener_port).collect()
    };
    if addrs.is_empty() {
        return Err(ConnectError::Resolve {
            host: host.to_owned(),
            reason: "no addresses".into(),
        });
    }
    let start = Instant::now();
    let mut last = String::new();
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    log::debug!("cannot set TCP_NODELAY towards {addr}: {e}");
                }
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
    Err(ConnectError::Connect {
        target: target(upstream, sni, listener_port),
        reason: last,
    })
}
