//! Reading a connection's first bytes — a PROXY protocol header where the listener expects
//! one, then the ClientHello — under one deadline and one byte cap shared by both.
//!
//! The bytes are read (not peeked) into one buffer; the ClientHello's bytes (and anything
//! sent right after them) are later replayed to the upstream unchanged. Each read returns
//! what the client has sent so far, so this never waits for more bytes than it needs, and
//! it stops as soon as what it reads is complete.

use snigate_core::clienthello::{self, ClientHello, Parse, Reject, MAX_BUFFERED};
use snigate_core::outcome::RejectReason;
use snigate_core::proxy_protocol;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Why no ClientHello was obtained.
#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    /// The bytes are not a routable ClientHello.
    #[error("invalid ClientHello: {0}")]
    Invalid(Reject),
    /// The listener expects a PROXY protocol header and the bytes are not one.
    #[error(
        "no valid PROXY protocol header, which this listener requires (proxy_protocol: accept)"
    )]
    ProxyProtocol,
    /// The deadline passed before what was being read was complete.
    #[error("incomplete after {received} bytes when the deadline passed")]
    Timeout {
        /// Bytes received by then.
        received: usize,
    },
    /// The client closed before completing what was being read.
    #[error("client closed after {received} bytes, before completing its ClientHello")]
    Closed {
        /// Bytes received by then.
        received: usize,
    },
    /// A socket error.
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

impl PeekError {
    /// The reject reason counted for this error.
    pub fn reason(&self) -> RejectReason {
        match self {
            PeekError::Invalid(r) => RejectReason::Hello(*r),
            PeekError::ProxyProtocol => RejectReason::ProxyProtocol,
            PeekError::Timeout { .. } => RejectReason::Timeout,
            PeekError::Closed { .. } => RejectReason::ClosedEarly,
            PeekError::Io(_) => RejectReason::IoError,
        }
    }
}

/// Reads into `buf` until `check` says what it holds is complete (or wrong), EOF, the byte
/// cap, or `deadline`. `check` first sees what `buf` already holds.
async fn read_until<S, T>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
    mut check: impl FnMut(&[u8]) -> Option<Result<T, PeekError>>,
) -> Result<T, PeekError>
where
    S: AsyncRead + Unpin,
{
    let work = async {
        loop {
            if let Some(done) = check(buf) {
                return done;
            }
            if buf.len() >= MAX_BUFFERED {
                return Err(PeekError::Invalid(Reject::TooLarge));
            }
            // Grow by what the client sends, never by what it declares.
            let want = (MAX_BUFFERED - buf.len()).min(4096);
            buf.reserve(want);
            let n = (&mut *stream).take(want as u64).read_buf(buf).await?;
            if n == 0 {
                return Err(PeekError::Closed {
                    received: buf.len(),
                });
            }
        }
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(result) => result,
        Err(_) => Err(PeekError::Timeout {
            received: buf.len(),
        }),
    }
}

/// Reads a PROXY protocol header (v1 or v2) from the start of the connection.
pub async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<proxy_protocol::Header, PeekError> {
    read_until(stream, buf, deadline, |b| match proxy_protocol::parse(b) {
        proxy_protocol::Parse::Complete(h) => Some(Ok(h)),
        proxy_protocol::Parse::Incomplete => None,
        proxy_protocol::Parse::Invalid => Some(Err(PeekError::ProxyProtocol)),
    })
    .await
}

/// Reads a ClientHello that starts at `start` in `buf`.
pub async fn read_client_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    start: usize,
    deadline: Instant,
) -> Result<ClientHello, PeekError> {
    read_until(stream, buf, deadline, |b| {
        match clienthello::parse(&b[start.min(b.len())..]) {
            Parse::Complete(hello) => Some(Ok(hello)),
            Parse::Incomplete => None,
            Parse::Invalid(reason) => Some(Err(PeekError::Invalid(reason))),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    fn hello() -> Vec<u8> {
        // Smallest valid hello with SNI "a.test".
        let name = b"a.test";
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        let mut sni = vec![0, (name.len() + 3) as u8, 0, 0, name.len() as u8];
        sni.extend_from_slice(name);
        let mut ext = vec![0, 0, 0, sni.len() as u8];
        ext.extend_from_slice(&sni);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1, 0, 0, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1, 0, hs.len() as u8];
        rec.extend_from_slice(&hs);
        rec
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn reads_a_trickled_hello_and_keeps_the_bytes() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let bytes = hello();
        let sent = bytes.clone();
        tokio::spawn(async move {
            for b in sent {
                client.write_all(&[b]).await.unwrap();
                tokio::task::yield_now().await;
            }
            client.write_all(b"extra").await.unwrap();
            std::future::pending::<()>().await;
        });
        let mut buf = Vec::new();
        let h = read_client_hello(&mut server, &mut buf, 0, soon())
            .await
            .unwrap();
        assert_eq!(h.sni.as_deref(), Some("a.test"));
        assert_eq!(&buf[..bytes.len()], &bytes[..]);
    }

    #[tokio::test]
    async fn a_proxy_header_then_the_hello_in_one_segment() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let from = "192.0.2.1:40000".parse().unwrap();
        let to = "198.51.100.2:9092".parse().unwrap();
        let mut sent = proxy_protocol::header(proxy_protocol::Version::V2, from, to);
        let header_len = sent.len();
        sent.extend_from_slice(&hello());
        client.write_all(&sent).await.unwrap();
        let mut buf = Vec::new();
        let h = read_proxy_header(&mut server, &mut buf, soon())
            .await
            .unwrap();
        assert_eq!((h.len, h.addresses), (header_len, Some((from, to))));
        let hello = read_client_hello(&mut server, &mut buf, h.len, soon())
            .await
            .unwrap();
        assert_eq!(hello.sni.as_deref(), Some("a.test"));
        assert_eq!(&buf[h.len..], &sent[header_len..]);
    }

    #[tokio::test]
    async fn a_hello_where_a_proxy_header_belongs_is_refused() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        client.write_all(&hello()).await.unwrap();
        let mut buf = Vec::new();
        let e = read_proxy_header(&mut server, &mut buf, soon())
            .await
            .unwrap_err();
        assert_eq!(e.reason(), RejectReason::ProxyProtocol);
    }

    #[tokio::test]
    async fn deadline_cuts_a_slow_client() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&hello()[..3]).await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(50);
        let mut buf = Vec::new();
        match read_client_hello(&mut server, &mut buf, 0, deadline).await {
            Err(PeekError::Timeout { received: 3 }) => {}
            other => panic!("{other:?}"),
        }
        drop(client);
    }

    #[tokio::test]
    async fn eof_and_garbage_are_reported() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        let mut buf = Vec::new();
        assert!(matches!(
            read_client_hello(&mut server, &mut buf, 0, soon()).await,
            Err(PeekError::Closed { received: 0 })
        ));
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = Vec::new();
        assert!(matches!(
            read_client_hello(&mut server, &mut buf, 0, soon()).await,
            Err(PeekError::Invalid(Reject::NotTls))
        ));
    }
}
