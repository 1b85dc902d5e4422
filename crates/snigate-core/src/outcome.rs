//! How a connection ended, and why a ClientHello was refused. Each has one `as_str`, used
//! by the access log and by metric labels alike, and an `ALL` list so that every metric
//! series can be created at zero when the gateway starts.

use crate::clienthello::Reject;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Relayed until both sides closed.
    Ok,
    /// Nothing moved either way for the idle timeout.
    IdleTimeout,
    /// A socket error on either side while relaying.
    RelayError,
    /// The first bytes were not a routable ClientHello; the reason is in the detail.
    ClientHelloRejected,
    /// The SNI matched no route and the listener has no fallback.
    NoRoute,
    /// The hello had no SNI and the listener has no fallback.
    NoSni,
    /// The upstream's name could not be resolved.
    ResolveFailed,
    /// No upstream address accepted the connection.
    ConnectFailed,
    /// `max_connections` were already open.
    OverLimit,
    /// Closed before sending a byte, as TCP health checks do.
    Empty,
    /// Closed by the gateway while it drained after an upgrade or a stop.
    Drained,
    /// A peer reset the connection while it was relayed (a TLS 1.3 client that closes
    /// with unread session tickets does this).
    Reset,
    /// The route's upstream is one of the gateway's own listeners: refused, never dialled.
    Loop,
    /// The client's address is not in its listener's `allow` list.
    DeniedSource,
    /// The route's egress proxy refused the tunnel, answered garbage or never answered.
    ProxyError,
}

impl Outcome {
    /// Every outcome (README's Observability section describes each).
    pub const ALL: [Outcome; 15] = [
        Outcome::Ok,
        Outcome::IdleTimeout,
        Outcome::RelayError,
        Outcome::ClientHelloRejected,
        Outcome::NoRoute,
        Outcome::NoSni,
        Outcome::ResolveFailed,
        Outcome::ConnectFailed,
        Outcome::OverLimit,
        Outcome::Empty,
        Outcome::Drained,
        Outcome::Reset,
        Outcome::Loop,
        Outcome::DeniedSource,
        Outcome::ProxyError,
    ];

    /// This outcome's position in [`Outcome::ALL`].
    pub fn index(self) -> usize {
        Outcome::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }

    /// The label used in the access log and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::RelayError => "relay_error",
            Outcome::ClientHelloRejected => "clienthello_rejected",
            Outcome::NoRoute => "no_route",
            Outcome::NoSni => "no_sni",
            Outcome::ResolveFailed => "resolve_failed",
            Outcome::ConnectFailed => "connect_failed",
            Outcome::OverLimit => "over_limit",
            Outcome::Empty => "empty",
            Outcome::Drained => "drained",
            Outcome::Reset => "reset",
            Outcome::Loop => "loop",
            Outcome::DeniedSource => "denied_source",
            Outcome::ProxyError => "proxy_error",
        }
    }

    /// True for outcomes of connections that had chosen a route; the others are counted
    /// under the route label `-`.
    pub fn has_route(self) -> bool {
        matches!(
            self,
            Outcome::Ok
                | Outcome::IdleTimeout
                | Outcome::RelayError
                | Outcome::ResolveFailed
                | Outcome::ConnectFailed
                | Outcome::Drained
                | Outcome::Reset
                | Outcome::Loop
                | Outcome::ProxyError
        )
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the gateway gave up on a connection's ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The parser refused the bytes.
    Hello(Reject),
    /// The deadline passed before the hello was complete.
    Timeout,
    /// The client closed partway through its hello.
    ClosedEarly,
    /// A socket error while reading the hello.
    IoError,
    /// The listener expects a PROXY protocol header and got none, or a malformed one.
    ProxyProtocol,
}

impl RejectReason {
    /// Every reason, for creating metric series at zero.
    pub const ALL: [RejectReason; 12] = [
        RejectReason::Hello(Reject::NotTls),
        RejectReason::Hello(Reject::SslV2),
        RejectReason::Hello(Reject::BadRecord),
        RejectReason::Hello(Reject::NotClientHello),
        RejectReason::Hello(Reject::TooLarge),
        RejectReason::Hello(Reject::Malformed),
        RejectReason::Hello(Reject::BadSni),
        RejectReason::Hello(Reject::IpLiteralSni),
        RejectReason::Timeout,
        RejectReason::ClosedEarly,
        RejectReason::IoError,
        RejectReason::ProxyProtocol,
    ];

    /// The label used in the access log and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Hello(r) => r.as_str(),
            RejectReason::Timeout => "timeout",
            RejectReason::ClosedEarly => "closed_early",
            RejectReason::IoError => "io_error",
            RejectReason::ProxyProtocol => "proxy_protocol",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn labels_are_unique_and_snake_case() {
        let outcomes: HashSet<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(outcomes.len(), Outcome::ALL.len());
        let reasons: HashSet<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(reasons.len(), RejectReason::ALL.len());
        for label in outcomes.iter().chain(reasons.iter()) {
            assert!(
                label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()),
                "{label}"
            );
        }
    }

    #[test]
    fn every_parser_reason_is_listed() {
        for r in Reject::ALL {
            assert!(RejectReason::ALL.contains(&RejectReason::Hello(r)), "{r}");
        }
    }
}
