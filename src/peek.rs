//! Reading the ClientHello off a client connection, under one deadline and a byte cap.
//!
//! The bytes are read (not peeked) into a buffer that is later replayed to the upstream
//! unchanged. Each read returns what the client has sent so far, so this never waits for
//! more bytes than the hello needs, and it stops as soon as the hello is complete.

use snigate_core::clienthello::{self, ClientHello, Parse, Reject, MAX_BUFFERED};
use snigate_core::outcome::RejectReason;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Why no ClientHello was obtained.
#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    /// The bytes are not a routable ClientHello.
    #[error("invalid ClientHello: {0}")]
    Invalid(Reject),
    /// The deadline passed before the hello was complete.
    #[error("ClientHello not complete after {received} bytes when the deadline passed")]
    Timeout {
        /// Bytes received by then.
        received: usize,
    },
    /// The client closed before completing the hello.
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
            PeekError::Timeout { .. } => RejectReason::Timeout,
            PeekError::Closed { .. } => RejectReason::ClosedEarly,
            PeekError::Io(_) => RejectReason::IoError,
        }
    }
}

/// The hello and every byte read so far (the hello plus anything sent right after it).
#[derive(Debug)]
pub struct Peeked {
    /// What the hello says.
    pub hello: ClientHello,
    /// The bytes to replay to the upstream.
    pub bytes: Vec<u8>,
}

/// Reads from `stream` until a complete ClientHello, an invalid one, EOF or `deadline`.
pub async fn read_client_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    deadline: Instant,
) -> Result<Peeked, PeekError> {
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let work = async {
        loop {
            if buf.len() >= MAX_BUFFERED {
                return Err(PeekError::Invalid(Reject::TooLarge));
            }
            // Grow by what the client sends, never by what it declares.
            let want = (MAX_BUFFERED - buf.len()).min(4096);
            buf.reserve(want);
            let n = (&mut *stream).take(want as u64).read_buf(&mut buf).await?;
            if n == 0 {
                return Err(PeekError::Closed {
                    received: buf.len(),
                });
            }
            match clienthello::parse(&buf) {
                Parse::Complete(hello) => return Ok(hello),
                Parse::Incomplete => continue,
                Parse::Invalid(reason) => return Err(PeekError::Invalid(reason)),
            }
        }
    };
    let result = tokio::time::timeout_at(deadline, work).await;
    match result {
        Ok(Ok(hello)) => Ok(Peeked { hello, bytes: buf }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(PeekError::Timeout {
            received: buf.len(),
        }),
    }
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
        let deadline = Instant::now() + Duration::from_secs(5);
        let p = read_client_hello(&mut server, deadline).await.unwrap();
        assert_eq!(p.hello.sni.as_deref(), Some("a.test"));
        assert_eq!(&p.bytes[..bytes.len()], &bytes[..]);
    }

    #[tokio::test]
    async fn deadline_cuts_a_slow_client() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&hello()[..3]).await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(50);
        match read_client_hello(&mut server, deadline).await {
            Err(PeekError::Timeout { received: 3 }) => {}
            other => panic!("{other:?}"),
        }
        drop(client);
    }

    #[tokio::test]
    async fn eof_and_garbage_are_reported() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        let deadline = Instant::now() + Duration::from_secs(1);
        assert!(matches!(
            read_client_hello(&mut server, deadline).await,
            Err(PeekError::Closed { received: 0 })
        ));
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(matches!(
            read_client_hello(&mut server, deadline).await,
            Err(PeekError::Invalid(Reject::NotTls))
        ));
    }
}
