//! Every cluster's discovered routes, and the live table they make with the static routes.
//! Plain data: the caller publishes [`Clusters::table`] and saves [`Clusters::state`].

use super::merge::{self, Conflict};
use super::state::{ClusterRoutes, Entry, Kind};
use super::statefile::StateFile;
use crate::routes::{DiscoveredRoutes, RouteTable};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The static routes, each cluster's discovered routes, and the discovered layer they make.
#[derive(Debug, Clone, Default)]
pub struct Clusters {
    static_routes: RouteTable,
    /// Cluster names in config order: an earlier cluster wins a name two clusters share.
    order: Vec<String>,
    routes: BTreeMap<String, ClusterRoutes>,
    /// What `routes` make, kept up to date by [`Clusters::set`] one cluster at a time.
    discovered: Arc<DiscoveredRoutes>,
}

impl Clusters {
    /// Starts with no discovered routes.
    pub fn new(static_routes: RouteTable, order: Vec<String>) -> Self {
        Clusters {
            static_routes: static_routes.statics(),
            order,
            routes: BTreeMap::new(),
            discovered: Arc::default(),
        }
    }

    /// Takes the routes saved in a state file, for clusters that are still configured.
    /// Returns the clusters whose routes were restored.
    pub fn restore(&mut self, state: StateFile) -> Vec<String> {
        let mut restored = Vec::new();
        for (name, routes) in state.clusters {
            if self.order.contains(&name) && routes.names.values().any(|e| e.kind == Kind::Broker) {
                restored.push(name.clone());
                self.routes.insert(name, routes);
            }
        }
        self.discovered = Arc::new(merge::discover(&self.ordered()));
        restored
    }

    fn ordered(&self) -> Vec<(&str, &ClusterRoutes)> {
        self.order
            .iter()
            .filter_map(|name| self.routes.get(name).map(|r| (name.as_str(), r)))
            .collect()
    }

    /// The cluster names, in config order.
    pub fn names(&self) -> &[String] {
        &self.order
    }

    /// The routes known for `cluster` (empty if none).
    pub fn get(&self, cluster: &str) -> ClusterRoutes {
        self.routes.get(cluster).cloned().unwrap_or_default()
    }

    /// Replaces `cluster`'s routes, and updates the discovered layer for the names that
    /// changed hands only. Returns what the cluster had before, for [`Clusters::unset`].
    pub fn set(&mut self, cluster: &str, routes: ClusterRoutes) -> Option<ClusterRoutes> {
        // Every name the cluster had or has now, with its new entry if it has one.
        let mut touched: BTreeMap<Arc<str>, Option<Entry>> = BTreeMap::new();
        if let Some(old) = self.routes.get(cluster) {
            for name in old.names.keys() {
                if let Some(norm) = merge::routable(name) {
                    touched.insert(norm, None);
                }
            }
        }
        for (name, entry) in &routes.names {
            if let Some(norm) = merge::routable(name) {
                touched.insert(norm, Some(entry.clone()));
            }
        }
        let old = self.routes.insert(cluster.to_owned(), routes);
        let from: Arc<str> = Arc::from(merge::origin(cluster));
        let rank = |origin: &str| {
            self.order
                .iter()
                .position(|c| origin.strip_prefix("cluster:") == Some(c.as_str()))
        };
        let Some(mine) = rank(&from) else {
            // A cluster that is not configured routes nothing.
            return old;
        };
        let layer = Arc::make_mut(&mut self.discovered);
        for (norm, entry) in touched {
            let holder = layer.get(&norm).map(|r| r.origin.clone());
            match (holder, entry) {
                // Another cluster holds the name: this one takes it only if listed earlier.
                (Some(h), Some(e)) if *h != *from => {
                    if rank(&h).is_none_or(|theirs| mine < theirs) {
                        layer.put(merge::route(&from, norm, &e));
                    }
                }
                (Some(h), None) if *h != *from => {}
                // Nobody else holds it (an earlier cluster would): it is this cluster's.
                (_, Some(e)) => layer.put(merge::route(&from, norm, &e)),
                // This cluster gave it up: the next cluster that has it takes it. Names
                // are stored in normal form (see `refresh::observed_names`), so one
                // lookup per cluster finds it.
                (_, None) => {
                    // Names are stored as discovered, normally already in normal form;
                    // the scan covers one that is not (a trailing dot, say).
                    let next = self.order.iter().find_map(|c| {
                        let e = self.routes.get(c)?.names.get(norm.as_ref())?;
                        Some((c, e))
                    });
                    match next {
                        Some((c, e)) => {
                            layer.put(merge::route(&Arc::from(merge::origin(c)), norm, e))
                        }
                        None => {
                            layer.remove(&norm);
                        }
                    }
                }
            }
        }
        old
    }

    /// Undoes a [`Clusters::set`] of `cluster`, given what it returned.
    pub fn unset(&mut self, cluster: &str, previous: Option<ClusterRoutes>) {
        self.set(cluster, previous.clone().unwrap_or_default());
        if previous.is_none() {
            self.routes.remove(cluster);
        }
    }

    /// Replaces the static routes (a config reload); returns the previous ones.
    pub fn set_static(&mut self, routes: RouteTable) -> RouteTable {
        std::mem::replace(&mut self.static_routes, routes.statics())
    }

    /// Clusters that have no routable broker yet.
    pub fn pending(&self) -> Vec<String> {
        self.order
            .iter()
            .filter(|c| {
                self.routes
                    .get(*c)
                    .is_none_or(|r| !r.names.values().any(|e| e.kind == Kind::Broker))
            })
            .cloned()
            .collect()
    }

    /// The live table, and every discovered name that an earlier route kept.
    pub fn table(&self) -> (RouteTable, Vec<Conflict>) {
        let table = self.static_routes.with_discovered(self.discovered.clone());
        let conflicts = merge::conflicts(&table, &self.ordered());
        (table, conflicts)
    }

    /// The live table, and the names of `cluster` that an earlier route kept.
    pub fn table_for(&self, cluster: &str) -> (RouteTable, Vec<Conflict>) {
        let table = self.static_routes.with_discovered(self.discovered.clone());
        let conflicts = match self.routes.get_key_value(cluster) {
            Some((name, routes)) => merge::conflicts(&table, &[(name.as_str(), routes)]),
            None => Vec::new(),
        };
        (table, conflicts)
    }

    /// What the state file should hold.
    pub fn state(&self) -> StateFile {
        StateFile {
            clusters: self.routes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::{brokers_seen as routes, Entry};
    use super::*;

    #[test]
    fn restore_keeps_only_configured_clusters() {
        let mut c = Clusters::new(RouteTable::default(), vec!["a".into(), "b".into()]);
        assert_eq!(c.pending(), ["a", "b"]);
        let mut state = StateFile::default();
        state.clusters.insert("a".into(), routes(&["x.test"]));
        state.clusters.insert("gone".into(), routes(&["y.test"]));
        state.clusters.insert("b".into(), ClusterRoutes::default());
        assert_eq!(c.restore(state), ["a"]);
        assert_eq!(c.pending(), ["b"]);
        // A cluster whose only names are its bootstrap and REST has no broker to route.
        let mut bootstrap_only = ClusterRoutes::default();
        bootstrap_only.names.insert(
            "pkc.test".into(),
            Entry {
                kind: Kind::Bootstrap,
                port: 9092,
                last_seen: 1,
            },
        );
        c.set("b", bootstrap_only);
        assert_eq!(c.pending(), ["b"]);
        assert_eq!(c.table().0.len(), 2, "the bootstrap is routed even so");
        assert!(c.state().clusters.contains_key("a"));
    }

    #[test]
    fn static_routes_can_be_replaced() {
        let mut c = Clusters::new(RouteTable::default(), vec!["a".into()]);
        c.set("a", routes(&["x.test"]));
        let mut t = RouteTable::default();
        t.insert(crate::routes::Route::new(
            crate::names::SniPattern::Exact("x.test".into()),
            crate::names::Upstream::fixed("pinned.test", 1),
        ))
        .unwrap();
        c.set_static(t);
        let (table, conflicts) = c.table();
        assert_eq!(table.lookup("x.test").unwrap().origin.as_ref(), "static");
        assert_eq!(conflicts.len(), 1);
    }

    /// Every step of a pseudo-random run of updates leaves the same table as merging all
    /// clusters from scratch.
    #[test]
    fn updates_one_cluster_at_a_time_agree_with_a_full_merge() {
        let names = ["a.test", "b.test", "c.test", "d.test", "e.test", "s.test"];
        let order: Vec<String> = vec!["x".into(), "y".into(), "z".into()];
        let statics = RouteTable::new([crate::routes::Route::new(
            crate::names::SniPattern::Exact("s.test".into()),
            crate::names::Upstream::fixed("static.test", 1),
        )])
        .unwrap();
        let mut c = Clusters::new(statics.clone(), order.clone());
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for step in 0..500 {
            let cluster = &order[(next() % 3) as usize];
            let mut routes = ClusterRoutes::default();
            let bits = next();
            for (i, n) in names.iter().enumerate() {
                if bits >> i & 1 == 1 {
                    let entry = Entry {
                        kind: Kind::Broker,
                        port: (bits >> 8 & 0xff) as u16 + 1,
                        last_seen: step,
                    };
                    routes.names.insert((*n).to_owned(), entry);
                }
            }
            let before = c.clone();
            let previous = c.set(cluster, routes);
            if next() % 4 == 0 {
                c.unset(cluster, previous);
                assert_eq!(c.routes, before.routes, "step {step}: unset restores");
            }
            let (got, _) = c.table();
            let all: Vec<(&str, &ClusterRoutes)> = order
                .iter()
                .filter_map(|n| c.routes.get(n).map(|r| (n.as_str(), r)))
                .collect();
            let (want, want_conflicts) = merge::merge(&statics, &all);
            assert_eq!(got.len(), want.len(), "step {step}");
            assert!(got.same_routes(&want), "step {step}");
            for n in names {
                let show = |t: &RouteTable| {
                    t.lookup(n)
                        .map(|r| (r.origin.to_string(), r.upstream.to_string(), r.last_seen))
                };
                assert_eq!(show(&got), show(&want), "step {step}, {n}");
            }
            assert_eq!(c.table().1, want_conflicts, "step {step}");
        }
    }
}
