//! The listener side of the gateway.
//!
//! - [`handler`]: one connection's life, generic over the client stream.
//! - [`shared`]: what every listener's connections share (routes, live settings, drain).
//! - [`stream`]: the client stream, and which relay it takes.
//! - [`access`]: the connection's record: its access-log line and its count.

pub mod access;
pub mod handler;
pub mod shared;
pub mod stream;

pub use handler::Handler;
pub use shared::Shared;
pub use stream::ClientStream;
