//! The client side of a connection: any stream, and a TCP stream takes the splice path.
//! Each kind brings only its own relay, so a TCP connection's task never reserves space
//! for the portable one.

use crate::relay::{self, Counters, RelayEnd, Totals};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A client connection.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + Sized {
    /// The local address the client reached, if the stream has one.
    fn local_addr(&self) -> Option<SocketAddr>;

    /// Relays between this client and `upstream` until the connection ends.
    fn relay<'a>(
        self,
        upstream: TcpStream,
        idle: Duration,
        counters: Counters<'a>,
        totals: &'a Totals,
    ) -> impl Future<Output = RelayEnd> + Send + 'a;
}

impl ClientStream for TcpStream {
    fn local_addr(&self) -> Option<SocketAddr> {
        TcpStream::local_addr(self).ok()
    }

    async fn relay<'a>(
        self,
        upstream: TcpStream,
        idle: Duration,
        counters: Counters<'a>,
        totals: &'a Totals,
    ) -> RelayEnd {
        relay::relay_tcp(&self, &upstream, idle, counters, totals).await
    }
}

impl ClientStream for tokio::io::DuplexStream {
    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }

    fn relay<'a>(
        self,
        upstream: TcpStream,
        idle: Duration,
        counters: Counters<'a>,
        totals: &'a Totals,
    ) -> impl Future<Output = RelayEnd> + Send + 'a {
        relay::relay(self, upstream, idle, counters, totals)
    }
}
