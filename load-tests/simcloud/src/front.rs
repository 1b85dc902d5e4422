//! A Kafka front, like Confluent Cloud's edge: it terminates TLS, answers ApiVersions and
//! SASL/PLAIN itself, and once the client is authenticated relays the connection, bytes
//! untouched, to its mock broker.

use crate::wire::{self, ApiRange};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Largest request accepted before authentication.
const MAX_PRE_AUTH_FRAME: usize = 1 << 20;

/// Credentials the front accepts.
#[derive(Clone)]
pub struct Credentials {
    /// API key (SASL username).
    pub key: String,
    /// API secret (SASL password).
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials {{ key: {}, secret: MASKED }}", self.key)
    }
}

/// One front: a name for logs, its mock broker, and what it shares with the others.
pub struct Front {
    /// Advertised name, for logs.
    pub name: String,
    /// The mock broker's real address (127.0.0.1:port).
    pub broker: SocketAddr,
    /// The ApiVersions list clients see: the broker's, plus SASL.
    pub apis: Arc<Vec<ApiRange>>,
    /// TLS for `*.region…`.
    pub tls: TlsAcceptor,
    /// Accepted credentials.
    pub creds: Arc<Credentials>,
}

/// Accepts connections forever.
pub async fn serve(front: Arc<Front>, listener: TcpListener) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                log::warn!("{}: accept failed: {e}", front.name);
                continue;
            }
        };
        let f = front.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(&f, tcp).await {
                log::debug!("{}: connection from {peer} ended: {e}", f.name);
            }
        });
    }
}

async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = i32::from_be_bytes(len);
    if n < 0 || n as usize > MAX_PRE_AUTH_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad frame length",
        ));
    }
    let mut buf = vec![0u8; n as usize];
    s.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

async fn handle(front: &Front, tcp: TcpStream) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    let mut tls = front.tls.accept(tcp).await?;
    let creds = &front.creds;
    loop {
        let Some(frame) = read_frame(&mut tls).await? else {
            return Ok(());
        };
        let (h, body) = wire::parse_request(&frame).ok_or_else(|| bad("bad request header"))?;
        match h.api_key {
            wire::API_VERSIONS => {
                let (version, error) = if h.api_version > 3 {
                    (0, wire::UNSUPPORTED_VERSION)
                } else {
                    (h.api_version, 0)
                };
                let resp =
                    wire::api_versions_response(h.correlation_id, version, error, &front.apis);
                send(&mut tls, &resp).await?;
            }
            wire::SASL_HANDSHAKE => {
                let mech = wire::Reader::new(body).nullable_string().flatten();
                if mech != Some(&b"PLAIN"[..]) {
                    let resp = wire::sasl_handshake_response(
                        h.correlation_id,
                        wire::UNSUPPORTED_SASL_MECHANISM,
                    );
                    send(&mut tls, &resp).await?;
                    return Ok(());
                }
                send(
                    &mut tls,
                    &wire::sasl_handshake_response(h.correlation_id, 0),
                )
                .await?;
                if h.api_version == 0 {
                    // SaslHandshake v0: the token follows as a bare length-prefixed blob.
                    let token = read_frame(&mut tls)
                        .await?
                        .ok_or_else(|| bad("eof before token"))?;
                    if !wire::plain_matches(&token, &creds.key, &creds.secret) {
                        log::info!("{}: authentication failed (SASL/PLAIN)", front.name);
                        return Ok(());
                    }
                    send(&mut tls, &wire::frame(Vec::new())).await?;
                    break;
                }
            }
            wire::SASL_AUTHENTICATE => {
                let token = wire::Reader::new(body)
                    .bytes()
                    .ok_or_else(|| bad("bad token"))?;
                if wire::plain_matches(token, &creds.key, &creds.secret) {
                    let resp =
                        wire::sasl_authenticate_response(h.correlation_id, h.api_version, 0, None);
                    send(&mut tls, &resp).await?;
                    break;
                }
                log::info!("{}: authentication failed (SASL/PLAIN)", front.name);
                let resp = wire::sasl_authenticate_response(
                    h.correlation_id,
                    h.api_version,
                    wire::SASL_AUTHENTICATION_FAILED,
                    Some("Authentication failed: Invalid username or password"),
                );
                send(&mut tls, &resp).await?;
                let _ = tls.shutdown().await;
                return Ok(());
            }
            other => {
                log::info!(
                    "{}: API key {other} before authentication; closing",
                    front.name
                );
                return Ok(());
            }
        }
    }
    log::debug!(
        "{}: client authenticated; relaying to {}",
        front.name,
        front.broker
    );
    let mut up = TcpStream::connect(front.broker).await?;
    up.set_nodelay(true)?;
    relay(tls, &mut up).await;
    Ok(())
}

/// Relays between the client and its mock broker until either side ends, then resets the
/// broker connection.
///
/// A Kafka client never half-closes, so its end means the connection is gone. The reset
/// matters: librdkafka's mock broker stops reading a connection whose SyncGroup waits for
/// the rest of its group, so a FIN would go unnoticed and the member's pending SyncGroup
/// would stay. The client, reconnected through a new connection, sends SyncGroup again,
/// and the mock aborts on `Assertion '!member->resp' failed` (rdkafka_mock_cgrp.c), taking
/// the whole simulated cloud down. A reset raises POLLHUP, which the mock serves even on a
/// connection it does not read, and clears the member's state, as a real broker does when
/// its client goes away.
async fn relay<S: AsyncRead + AsyncWrite + Unpin>(client: S, up: &mut TcpStream) {
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut up_read, mut up_write) = up.split();
    tokio::select! {
        _ = tokio::io::copy(&mut client_read, &mut up_write) => {}
        _ = tokio::io::copy(&mut up_read, &mut client_write) => {
            let _ = client_write.shutdown().await;
        }
    }
    let _ = up.set_zero_linger();
}

/// Asks a broker for the cluster's brokers (Metadata v0): (id, advertised host, port).
pub async fn broker_list(broker: SocketAddr) -> io::Result<Vec<(i32, String, i32)>> {
    let mut s = TcpStream::connect(broker).await?;
    send(&mut s, &wire::metadata_request_v0(1)).await?;
    let frame = read_frame(&mut s)
        .await?
        .ok_or_else(|| bad("broker closed"))?;
    let body = frame.get(4..).ok_or_else(|| bad("short response"))?;
    wire::parse_metadata_brokers_v0(body).ok_or_else(|| bad("bad Metadata"))
}

/// Asks a broker which API versions it supports (ApiVersions v0), then adds SASL.
pub async fn broker_apis(broker: SocketAddr) -> io::Result<Vec<ApiRange>> {
    let mut s = TcpStream::connect(broker).await?;
    send(&mut s, &wire::api_versions_request_v0(1)).await?;
    let frame = read_frame(&mut s)
        .await?
        .ok_or_else(|| bad("broker closed"))?;
    let body = frame.get(4..).ok_or_else(|| bad("short response"))?;
    let mut apis = wire::parse_api_versions_v0(body).ok_or_else(|| bad("bad ApiVersions"))?;
    apis.retain(|a| a.key != wire::SASL_HANDSHAKE && a.key != wire::SASL_AUTHENTICATE);
    for a in apis.iter_mut() {
        if a.key == wire::API_VERSIONS {
            a.max = a.max.min(3);
        }
    }
    apis.push(ApiRange {
        key: wire::SASL_HANDSHAKE,
        min: 0,
        max: 1,
    });
    apis.push(ApiRange {
        key: wire::SASL_AUTHENTICATE,
        min: 0,
        max: 1,
    });
    apis.sort_by_key(|a| a.key);
    Ok(apis)
}
