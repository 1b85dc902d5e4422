//! Every cluster's discovered routes, and the live table they make with the static routes.
//! Plain data: the caller publishes [`Clusters::table`] and saves [`Clusters::state`].

use super::merge::{self, Conflict};
use super::state::{ClusterRoutes, Kind};
use super::statefile::StateFile;
use crate::routes::RouteTable;
use std::collections::BTreeMap;

/// The static routes and each cluster's discovered routes.
#[derive(Debug, Clone, Default)]
pub struct Clusters {
    static_routes: RouteTable,
    /// Cluster names in config order: an earlier cluster wins a name two clusters share.
    order: Vec<String>,
    routes: BTreeMap<String, ClusterRoutes>,
}

impl Clusters {
    /// Starts with no discovered routes.
    pub fn new(static_routes: RouteTable, order: Vec<String>) -> Self {
        Clusters {
            static_routes,
            order,
            routes: BTreeMap::new(),
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
        restored
    }

    /// The cluster names, in config order.
    pub fn names(&self) -> &[String] {
        &self.order
    }

    /// The routes known for `cluster` (empty if none).
    pub fn get(&self, cluster: &str) -> ClusterRoutes {
        self.routes.get(cluster).cloned().unwrap_or_default()
    }

    /// Replaces `cluster`'s routes.
    pub fn set(&mut self, cluster: &str, routes: ClusterRoutes) {
        self.routes.insert(cluster.to_owned(), routes);
    }

    /// Replaces the static routes (a config reload).
    pub fn set_static(&mut self, routes: RouteTable) {
        self.static_routes = routes;
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

    /// The live table, and the discovered names an earlier route kept.
    pub fn table(&self) -> (RouteTable, Vec<Conflict>) {
        let clusters: Vec<(&str, &ClusterRoutes)> = self
            .order
            .iter()
            .filter_map(|name| self.routes.get(name).map(|r| (name.as_str(), r)))
            .collect();
        merge::merge(&self.static_routes, &clusters)
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
}
