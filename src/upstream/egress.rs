//! Connecting through a forward proxy (`egress_proxy:`): reach the proxy, refusing it if it
//! is one of the gateway's own listeners, then ask it for the upstream by name, with HTTP
//! CONNECT (request and answer in `snigate_core::egress`) or SOCKS5 (tokio-socks). The
//! whole exchange runs under the connect timeout. The upstream's name is never resolved
//! here.

use super::{first_to_answer, resolve, ConnectError, LoopGuard};
use crate::metrics;
use snigate_core::egress::host_port;
use snigate_core::egress::{connect_reply, connect_request, ConnectReply, EgressProxy, Scheme};
use snigate_core::names::ip_literal;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Why a proxy gave no tunnel. Messages name the proxy by its label, never with its
/// credentials.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The proxy could not be resolved or connected to.
    #[error("cannot reach egress proxy {proxy}: {reason}")]
    Unreachable {
        /// The proxy's label.
        proxy: String,
        /// Why.
        reason: String,
    },
    /// An HTTP proxy answered CONNECT with a status other than 2xx.
    #[error("egress proxy {proxy} refused the tunnel to {target}: HTTP {code} {reason}")]
    Http {
        /// The proxy's label.
        proxy: String,
        /// `host:port` asked for.
        target: String,
        /// The status code.
        code: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// A SOCKS5 proxy refused, with a reply code (RFC 1928) or an authentication failure
    /// (RFC 1929).
    #[error("egress proxy {proxy} refused the tunnel to {target}: {what}")]
    Socks {
        /// The proxy's label.
        proxy: String,
        /// `host:port` asked for.
        target: String,
        /// The code for the access log: `socks5:N` or `socks5:auth`.
        code: String,
        /// What it means.
        what: String,
    },
    /// Not an answer in the proxy's protocol, or the proxy closed the connection.
    #[error("egress proxy {proxy} gave no usable answer: {what}")]
    BadAnswer {
        /// The proxy's label.
        proxy: String,
        /// What came back.
        what: String,
    },
    /// No answer within the connect timeout.
    #[error("egress proxy {proxy} did not answer within {timeout:?}")]
    Timeout {
        /// The proxy's label.
        proxy: String,
        /// The connect timeout.
        timeout: Duration,
    },
}

impl ProxyError {
    /// The proxy's answer for the access log's `proxy_reply`: the HTTP status, the SOCKS
    /// reply code, or what happened instead.
    pub fn reply(&self) -> String {
        match self {
            ProxyError::Unreachable { .. } => "unreachable".into(),
            ProxyError::Http { code, .. } => code.to_string(),
            ProxyError::Socks { code, .. } => code.clone(),
            ProxyError::BadAnswer { .. } => "bad_answer".into(),
            ProxyError::Timeout { .. } => "timeout".into(),
        }
    }

    /// The `result` label of [`metrics::EGRESS_PROXY_CONNECTIONS_TOTAL`].
    pub fn result(&self) -> &'static str {
        match self {
            ProxyError::Unreachable { .. } => "unreachable",
            ProxyError::Http { code: 407, .. } => "auth_failed",
            ProxyError::Socks { code, .. } if code == "socks5:auth" => "auth_failed",
            ProxyError::Http { .. } | ProxyError::Socks { .. } => "refused",
            ProxyError::BadAnswer { .. } => "bad_answer",
            ProxyError::Timeout { .. } => "timeout",
        }
    }
}

/// An open tunnel.
#[derive(Debug)]
pub struct Tunnel {
    /// The socket to the proxy, now carrying the upstream's bytes.
    pub stream: TcpStream,
    /// The proxy's address.
    pub proxy_addr: SocketAddr,
    /// Bytes of the upstream's that came with the proxy's answer: the client gets them
    /// first.
    pub early: Vec<u8>,
    /// From the first connect attempt to the tunnel.
    pub elapsed: Duration,
    /// From the request to the proxy's answer.
    pub answer: Duration,
}

/// What tokio-socks' errors mean, as a SOCKS reply code and a phrase.
fn socks_error(e: &tokio_socks::Error) -> Option<(String, String)> {
    use tokio_socks::Error as E;
    let code = match e {
        E::GeneralSocksServerFailure => 1,
        E::ConnectionNotAllowedByRuleset => 2,
        E::NetworkUnreachable => 3,
        E::HostUnreachable => 4,
        E::ConnectionRefused => 5,
        E::TtlExpired => 6,
        E::CommandNotSupported => 7,
        E::AddressTypeNotSupported => 8,
        E::PasswordAuthFailure(_) | E::NoAcceptableAuthMethods | E::AuthorizationRequired => {
            return Some((
                "socks5:auth".into(),
                format!("{e} (check the proxy user and password)"),
            ))
        }
        _ => return None,
    };
    Some((format!("socks5:{code}"), format!("SOCKS reply {code}: {e}")))
}

/// Opens a tunnel through `proxy` to `host:port`; everything (the proxy's name lookup,
/// its addresses in turn, its answer) shares one `timeout`.
pub async fn tunnel(
    proxy: &EgressProxy,
    host: &str,
    port: u16,
    timeout: Duration,
    guard: &LoopGuard,
) -> Result<Tunnel, ConnectError> {
    match tokio::time::timeout(timeout, tunnel_within(proxy, host, port, timeout, guard)).await {
        Ok(done) => done,
        Err(_) => Err(ConnectError::Proxy(ProxyError::Timeout {
            proxy: proxy.label.to_string(),
            timeout,
        })),
    }
}

async fn tunnel_within(
    proxy: &EgressProxy,
    host: &str,
    port: u16,
    timeout: Duration,
    guard: &LoopGuard,
) -> Result<Tunnel, ConnectError> {
    let start = Instant::now();
    let label = proxy.label.to_string();
    let addrs: Vec<SocketAddr> = match ip_literal(&proxy.host) {
        Some(ip) => vec![SocketAddr::new(ip, proxy.port)],
        None => resolve(&proxy.host, proxy.port, timeout)
            .await
            .map_err(|e| {
                ConnectError::Proxy(ProxyError::Unreachable {
                    proxy: label.clone(),
                    reason: e.to_string(),
                })
            })?
            .to_vec(),
    };
    if let Some(addr) = guard.check(addrs.iter().copied()) {
        return Err(ConnectError::Loop {
            target: label,
            addr,
        });
    }
    let connected = first_to_answer(addrs, timeout).await.map_err(|reason| {
        ConnectError::Proxy(ProxyError::Unreachable {
            proxy: label.clone(),
            reason,
        })
    })?;
    let proxy_addr = connected.addr;
    let asked = Instant::now();
    let (stream, early) = handshake(proxy, connected.stream, host, port)
        .await
        .map_err(ConnectError::Proxy)?;
    Ok(Tunnel {
        stream,
        proxy_addr,
        early,
        elapsed: start.elapsed(),
        answer: asked.elapsed(),
    })
}

/// Asks `proxy`, over `stream` (already connected to it), for a tunnel to `host:port`, and
/// reads its answer. Returns the stream, now carrying the upstream's bytes, and any of
/// those that came with the answer. Generic over the stream so that the fuzz target
/// `proxy_reply` drives this very code with arbitrary answers; it sets no timeout itself.
pub async fn handshake<S>(
    proxy: &EgressProxy,
    mut stream: S,
    host: &str,
    port: u16,
) -> Result<(S, Vec<u8>), ProxyError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let label = proxy.label.to_string();
    let target = host_port(host, port);
    let bad = |what: String| ProxyError::BadAnswer {
        proxy: label.clone(),
        what,
    };
    match proxy.scheme {
        Scheme::Http => {
            let request = connect_request(host, port, proxy.auth.as_ref());
            stream
                .write_all(&request)
                .await
                .map_err(|e| bad(format!("cannot send CONNECT: {e}")))?;
            let mut buf = Vec::with_capacity(512);
            let mut chunk = [0u8; 1024];
            loop {
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| bad(format!("reading its answer: {e}")))?;
                if n == 0 {
                    return Err(bad(if buf.is_empty() {
                        "it closed the connection without answering".into()
                    } else {
                        "it closed the connection partway through its answer".into()
                    }));
                }
                buf.extend_from_slice(&chunk[..n]);
                match connect_reply(&buf) {
                    Ok(ConnectReply::Partial) => continue,
                    Ok(ConnectReply::Open(head)) => {
                        let early = buf.split_off(head.min(buf.len()));
                        return Ok((stream, early));
                    }
                    Ok(ConnectReply::Refused(code, reason)) => {
                        return Err(ProxyError::Http {
                            proxy: label,
                            target,
                            code,
                            reason,
                        })
                    }
                    Err(e) => return Err(bad(e.to_string())),
                }
            }
        }
        Scheme::Socks5 => {
            use tokio_socks::tcp::Socks5Stream;
            let asked = (host, port);
            let opened = match &proxy.auth {
                Some((user, pass)) => {
                    Socks5Stream::connect_with_password_and_socket(
                        stream,
                        asked,
                        user.expose(),
                        pass.expose(),
                    )
                    .await
                }
                None => Socks5Stream::connect_with_socket(stream, asked).await,
            };
            match opened {
                Ok(s) => Ok((s.into_inner(), Vec::new())),
                Err(e) => Err(match socks_error(&e) {
                    Some((code, what)) => ProxyError::Socks {
                        proxy: label,
                        target,
                        code,
                        what,
                    },
                    None => bad(e.to_string()),
                }),
            }
        }
    }
}

/// Counts a tunnel's result and, for an answer, how long the proxy took.
pub fn count(proxy: &EgressProxy, result: Result<Duration, &ProxyError>) {
    let (label, outcome) = match result {
        Ok(answer) => {
            metrics::EGRESS_PROXY_ANSWER
                .with_label_values(&[&proxy.label])
                .observe(answer.as_secs_f64());
            (&*proxy.label, "ok")
        }
        Err(e) => (&*proxy.label, e.result()),
    };
    metrics::EGRESS_PROXY_CONNECTIONS
        .with_label_values(&[label, outcome])
        .inc();
}
