//! Moving bytes both ways between client and upstream until both sides have closed.
//!
//! - Half-close is respected: when one side finishes sending, its peer's write half is
//!   shut down and the other direction keeps flowing.
//! - Bytes are counted as they pass, so metrics stay current on long-lived Kafka
//!   connections, and the totals can be read while the relay runs.
//! - A connection that carried nothing either way for the idle timeout is closed. The
//!   idle timer sleeps until the deadline the last byte set; traffic does not wake it.
//!
//! TCP to TCP goes through [`splice`] (the kernel moves the bytes; no buffer is held by
//! an idle connection). Any other pair of streams goes through [`copy`].

pub mod copy;
pub mod pipe;
pub mod splice;

pub use copy::relay;
pub use splice::{relay_tcp, Counters};

use crate::proxy::access::Closer;
use snigate_core::outcome::Outcome;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// One end of a relayed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client.
    Client,
    /// The upstream.
    Upstream,
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both sides closed; this one first.
    Closed(Side),
    /// Nothing moved for the idle timeout.
    Idle,
    /// This side reset the connection (ECONNRESET, or EPIPE writing to it).
    Reset(Side),
    /// Another socket error on this side.
    Error(Side),
}

impl RelayEnd {
    /// The connection's outcome.
    pub fn outcome(self) -> Outcome {
        match self {
            RelayEnd::Closed(_) => Outcome::Ok,
            RelayEnd::Idle => Outcome::IdleTimeout,
            RelayEnd::Reset(_) => Outcome::Reset,
            RelayEnd::Error(_) => Outcome::RelayError,
        }
    }

    /// Which side ended the connection first.
    pub fn closer(self) -> Closer {
        match self {
            RelayEnd::Closed(s) | RelayEnd::Reset(s) | RelayEnd::Error(s) => match s {
                Side::Client => Closer::Client,
                Side::Upstream => Closer::Upstream,
            },
            RelayEnd::Idle => Closer::Gateway,
        }
    }

    /// The end for a socket error on `side`.
    pub fn from_error(side: Side, e: &std::io::Error) -> RelayEnd {
        match e.kind() {
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
                RelayEnd::Reset(side)
            }
            _ => RelayEnd::Error(side),
        }
    }
}

/// Bytes relayed so far, each way; readable while the relay runs.
#[derive(Debug, Default)]
pub struct Totals {
    /// Client to upstream.
    pub up: AtomicU64,
    /// Upstream to client.
    pub down: AtomicU64,
}

/// When bytes last moved, in milliseconds since the relay started.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `limit`. Sleeps until the deadline the last
    /// activity set, then checks again.
    async fn idle(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = self.start + last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}
