//! The pure parts of one refresh: the names a cluster's metadata yields, and the wait
//! before the next attempt.
//!
//! Rules:
//! 1. A successful refresh observes the bootstrap, every advertised broker, and the REST
//!    and Schema Registry endpoints; the next refresh is one `refresh_interval` later.
//! 2. A refresh that fails, or lists zero brokers, changes nothing: the last good routes
//!    stay. It is retried after a wait that starts at one second and doubles after each
//!    further failure, up to the refresh interval.

use super::state::Kind;
use crate::config::ClusterConfig;
use crate::names::{normalize_name, parse_pattern, SniPattern};
use std::time::Duration;

/// One broker from the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Broker id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
}

/// The names a cluster's metadata yields: bootstrap, every broker, REST and Schema Registry.
/// A name that cannot be an SNI route (an IP address, say) is left out: the coverage
/// check reports it instead.
pub fn observed_names(cluster: &ClusterConfig, brokers: &[Broker]) -> Vec<(String, u16, Kind)> {
    let mut out = vec![(
        cluster.bootstrap.0.clone(),
        cluster.bootstrap.1,
        Kind::Bootstrap,
    )];
    for b in brokers {
        // In normal form (lower case, no trailing dot), as every other name here is.
        out.push((normalize_name(&b.host).into_owned(), b.port, Kind::Broker));
    }
    if let Some((h, p)) = &cluster.rest {
        out.push((h.clone(), *p, Kind::Rest));
    }
    if let Some((h, p)) = &cluster.schema_registry {
        out.push((h.clone(), *p, Kind::SchemaRegistry));
    }
    out.retain(|(name, _, _)| matches!(parse_pattern(name), Ok(SniPattern::Exact(_))));
    out
}

/// The wait before the next refresh (rule 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

/// The first retry wait after a failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

impl Backoff {
    /// Waits start at [`FIRST_BACKOFF`] and never exceed `interval`.
    pub fn new(interval: Duration) -> Self {
        let first = FIRST_BACKOFF.min(interval);
        Backoff {
            first,
            max: interval,
            next: first,
        }
    }

    /// After a failure: the wait before retrying. Each further failure doubles it.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// After a success: the wait is the full interval, and the next failure starts over.
    pub fn succeeded(&mut self) -> Duration {
        self.next = self.first;
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_be_routed_are_left_out() {
        let cluster = ClusterConfig {
            name: "c".into(),
            bootstrap: ("pkc.test".into(), 9092),
            credentials: None,
            rest: None,
            schema_registry: Some(("psrc.test".into(), 443)),
            refresh_interval: Duration::from_secs(1),
            removed_broker_grace: Duration::from_secs(1),
            metadata_timeout: Duration::from_secs(1),
            librdkafka: Default::default(),
        };
        let brokers = [
            Broker {
                id: 1,
                host: "B0.test".into(),
                port: 9092,
            },
            Broker {
                id: 2,
                host: "127.0.0.1".into(),
                port: 9092,
            },
            Broker {
                id: 3,
                host: "b1.test.".into(),
                port: 9092,
            },
        ];
        let names: Vec<String> = observed_names(&cluster, &brokers)
            .into_iter()
            .map(|(n, _, _)| n)
            .collect();
        // Broker names come in normal form: lower case, no trailing dot.
        assert_eq!(names, ["pkc.test", "b0.test", "b1.test", "psrc.test"]);
    }

    #[test]
    fn backoff_doubles_up_to_the_interval_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(10));
        let waits: Vec<u64> = (0..6).map(|_| b.failed().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(b.succeeded(), Duration::from_secs(10));
        assert_eq!(b.failed(), Duration::from_secs(1));
    }

    #[test]
    fn a_short_interval_caps_the_first_wait() {
        let mut b = Backoff::new(Duration::from_millis(300));
        assert_eq!(b.failed(), Duration::from_millis(300));
    }
}
