//! The listener side of the gateway.
//!
//! - [`handler`]: one connection's life, generic over the client stream.
//! - [`access`]: the access-log line and the connection count.
//! - [`ListenerApp`]: the Pingora `ServerApp` that hands each accepted connection to its
//!   listener's handler.

pub mod access;
pub mod handler;

pub use handler::{Handler, Shared};

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use std::sync::Arc;

/// One listener's application, run by a Pingora listening service.
#[derive(Debug)]
pub struct ListenerApp {
    handler: Handler,
}

impl ListenerApp {
    /// Wraps a listener's handler.
    pub fn new(handler: Handler) -> Self {
        ListenerApp { handler }
    }
}

#[async_trait]
impl ServerApp for ListenerApp {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let digest = session.get_socket_digest();
        let client = digest
            .as_ref()
            .and_then(|d| d.peer_addr())
            .and_then(|a| a.as_inet().copied());
        let local_port = digest
            .as_ref()
            .and_then(|d| d.local_addr())
            .and_then(|a| a.as_inet().map(|a| a.port()))
            .unwrap_or(self.handler.listener().address.port());
        // Use the concrete TCP stream, so that TCP_NODELAY can be set for Kafka's small
        // requests and responses.
        match into_tcp(session) {
            ClientIo::Tcp(mut tcp) => {
                if let Err(e) = tcp.set_nodelay() {
                    log::debug!("cannot set TCP_NODELAY on a client connection: {e}");
                }
                let drain = Some(shutdown.clone());
                self.handler.handle(*tcp, client, local_port, drain).await;
            }
            ClientIo::Other(other) => {
                let drain = Some(shutdown.clone());
                self.handler.handle(other, client, local_port, drain).await
            }
            ClientIo::Lost => log::error!("a client connection was lost while unwrapping it"),
        }
        None
    }
}

/// A client connection, as the concrete TCP stream when it is one.
enum ClientIo {
    Tcp(Box<L4Stream>),
    Other(Stream),
    /// The type check passed but the downcast did not; cannot happen.
    Lost,
}

/// Unwraps Pingora's boxed stream into the TCP stream under it, when it is one.
fn into_tcp(session: Stream) -> ClientIo {
    if !session.as_any().is::<L4Stream>() {
        return ClientIo::Other(session);
    }
    match session.into_any().downcast::<L4Stream>() {
        Ok(tcp) => ClientIo::Tcp(tcp),
        Err(_) => ClientIo::Lost,
    }
}
