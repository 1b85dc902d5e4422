//! The listener side of the gateway.
//!
//! - [`handler`]: one connection's life, generic over the client stream.
//! - [`shared`]: what every listener's connections share (routes, live settings, drain).
//! - [`stream`]: the client stream, and which relay it takes.
//! - [`access`]: the connection's record: its access-log line and its count.
//! - [`wakes`]: fewer wake-ups per connection: rare events polled only when they fired, and
//!   a per-thread tick that keeps Tokio from waking its own loop for each new timer.

pub mod access;
pub mod handler;
pub mod shared;
pub mod stream;
pub mod wakes;

pub use handler::Handler;
pub use shared::Shared;
pub use stream::ClientStream;
