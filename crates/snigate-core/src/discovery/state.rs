//! What discovery knows about one cluster: every name it routes, where to, and when the
//! cluster last advertised it. Pure data with a pure update rule, tested apart from I/O.
//!
//! A broker that disappears from the metadata keeps its route for the removal grace
//! period, because clients cache metadata and may still connect to it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a discovered name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The bootstrap endpoint.
    Bootstrap,
    /// A broker from the metadata.
    Broker,
    /// Kafka REST.
    Rest,
    /// Schema Registry.
    SchemaRegistry,
}

impl From<Kind> for crate::routes::RouteKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Bootstrap => crate::routes::RouteKind::Bootstrap,
            Kind::Broker => crate::routes::RouteKind::Broker,
            Kind::Rest => crate::routes::RouteKind::Rest,
            Kind::SchemaRegistry => crate::routes::RouteKind::SchemaRegistry,
        }
    }
}

/// One discovered name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What it is.
    pub kind: Kind,
    /// Upstream port (the host is the name itself).
    pub port: u16,
    /// Unix time (seconds) the cluster last advertised it.
    pub last_seen: u64,
}

/// Everything discovered for one cluster, by lower-case name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRoutes {
    /// Names and their entries.
    pub names: BTreeMap<String, Entry>,
}

/// What one refresh changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Names that are new, or whose port changed.
    pub added: Vec<String>,
    /// Names dropped after their grace period.
    pub removed: Vec<String>,
    /// Names no longer advertised but still routed, within their grace period.
    pub retained: Vec<String>,
}

impl Change {
    /// True when the routes are the same as before.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

impl ClusterRoutes {
    /// Applies one successful observation at time `now`. Names not observed stay until
    /// `grace_secs` after they were last seen.
    pub fn observe(
        &mut self,
        observed: &[(String, u16, Kind)],
        now: u64,
        grace_secs: u64,
    ) -> Change {
        let mut change = Change::default();
        for (name, port, kind) in observed {
            let entry = Entry {
                kind: *kind,
                port: *port,
                last_seen: now,
            };
            match self.names.insert(name.clone(), entry) {
                Some(old) if old.port == *port => {}
                _ => change.added.push(name.clone()),
            }
        }
        let seen: std::collections::HashSet<&str> =
            observed.iter().map(|(n, _, _)| n.as_str()).collect();
        let mut drop = Vec::new();
        for (name, entry) in &self.names {
            if seen.contains(name.as_str()) {
                continue;
            }
            if now.saturating_sub(entry.last_seen) >= grace_secs {
                drop.push(name.clone());
            } else {
                change.retained.push(name.clone());
            }
        }
        for name in drop {
            self.names.remove(&name);
            change.removed.push(name);
        }
        change.added.sort();
        change
    }

    /// Names of one kind, sorted.
    pub fn names_of(&self, kind: Kind) -> Vec<&str> {
        self.names
            .iter()
            .filter(|(_, e)| e.kind == kind)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// Test support: a cluster that has seen these brokers (port 9092) at time 1.
#[cfg(test)]
pub(crate) fn brokers_seen(names: &[&str]) -> ClusterRoutes {
    let mut c = ClusterRoutes::default();
    let obs: Vec<_> = names
        .iter()
        .map(|n| (n.to_string(), 9092, Kind::Broker))
        .collect();
    c.observe(&obs, 1, 60);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(names: &[&str]) -> Vec<(String, u16, Kind)> {
        names
            .iter()
            .map(|n| (n.to_string(), 9092, Kind::Broker))
            .collect()
    }

    #[test]
    fn new_names_are_added() {
        let mut c = ClusterRoutes::default();
        let ch = c.observe(&obs(&["b0.t", "b1.t"]), 100, 60);
        assert_eq!(ch.added, vec!["b0.t", "b1.t"]);
        assert!(ch.removed.is_empty());
        let ch = c.observe(&obs(&["b0.t", "b1.t"]), 110, 60);
        assert!(ch.is_empty());
    }

    #[test]
    fn vanished_names_stay_for_the_grace_period() {
        let mut c = ClusterRoutes::default();
        c.observe(&obs(&["b0.t", "b1.t"]), 100, 60);
        let ch = c.observe(&obs(&["b0.t"]), 130, 60);
        assert_eq!(ch.retained, vec!["b1.t"]);
        assert!(ch.removed.is_empty());
        assert!(c.names.contains_key("b1.t"));
        let ch = c.observe(&obs(&["b0.t"]), 160, 60);
        assert_eq!(ch.removed, vec!["b1.t"]);
        assert!(!c.names.contains_key("b1.t"));
    }

    #[test]
    fn a_port_change_counts_as_added() {
        let mut c = ClusterRoutes::default();
        c.observe(&obs(&["b0.t"]), 100, 60);
        let ch = c.observe(&[("b0.t".to_string(), 9093, Kind::Broker)], 101, 60);
        assert_eq!(ch.added, vec!["b0.t"]);
    }

    #[test]
    fn zero_grace_removes_at_once() {
        let mut c = ClusterRoutes::default();
        c.observe(&obs(&["b0.t"]), 100, 0);
        assert_eq!(c.observe(&[], 100, 0).removed, vec!["b0.t"]);
    }
}
