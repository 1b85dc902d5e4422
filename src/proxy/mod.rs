//! The listener side of the gateway.
//!
//! - [`handler`]: one connection's life, generic over the client stream.
//! - [`access`]: the access-log line and the connection count.

pub mod access;
pub mod handler;

pub use handler::{ClientStream, Handler, Shared};
