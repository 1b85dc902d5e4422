//! The hub: every cluster's discovered routes in one place. Each update merges them with
//! the static routes, swaps the live table atomically and saves the state file.

use super::merge::{self, Conflict};
use super::state::ClusterRoutes;
use super::statefile::{self, StateFile};
use crate::metrics;
use crate::routes::{RouteStore, RouteTable};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Shared discovery state.
pub struct Hub {
    static_routes: RouteTable,
    store: Arc<RouteStore>,
    state_file: Option<PathBuf>,
    /// Cluster names, in config order (merge precedence).
    order: Vec<String>,
    clusters: Mutex<BTreeMap<String, ClusterRoutes>>,
}

impl Hub {
    /// Creates the hub, loading the state file if there is one. Routes for clusters no
    /// longer in the config are ignored. Returns the hub and a warning, if the file was
    /// unreadable. With `persist` false the state file is read but never written.
    pub fn new(
        static_routes: RouteTable,
        store: Arc<RouteStore>,
        state_file: Option<PathBuf>,
        order: Vec<String>,
        persist: bool,
    ) -> (Self, Option<String>) {
        let (loaded, warning) = match &state_file {
            Some(p) => match statefile::load(p) {
                Ok(s) => (s, None),
                Err(e) => (StateFile::default(), Some(e)),
            },
            None => (StateFile::default(), None),
        };
        let clusters = loaded
            .clusters
            .into_iter()
            .filter(|(name, routes)| order.contains(name) && !routes.names.is_empty())
            .collect();
        let hub = Hub {
            static_routes,
            store,
            state_file: if persist { state_file } else { None },
            order,
            clusters: Mutex::new(clusters),
        };
        hub.publish_locked(&hub.lock());
        (hub, warning)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ClusterRoutes>> {
        // A poisoned lock only means a panic elsewhere; the data is still whole.
        self.clusters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The routes known for `cluster` (empty if none).
    pub fn cluster(&self, cluster: &str) -> ClusterRoutes {
        self.lock().get(cluster).cloned().unwrap_or_default()
    }

    /// Clusters that have no routes yet.
    pub fn pending(&self) -> Vec<String> {
        let map = self.lock();
        self.order
            .iter()
            .filter(|c| map.get(*c).is_none_or(|r| r.names.is_empty()))
            .cloned()
            .collect()
    }

    /// Replaces `cluster`'s routes, publishes the merged table and saves the state file.
    /// Returns the conflicts of the new table.
    pub fn update(&self, cluster: &str, routes: ClusterRoutes) -> Result<Vec<Conflict>, String> {
        let mut map = self.lock();
        map.insert(cluster.to_owned(), routes);
        let conflicts = self.publish_locked(&map);
        self.save_locked(&map)?;
        Ok(conflicts)
    }

    /// Saves `cluster`'s routes to the state file without touching the live table (the
    /// `upgrade` reload mode: the next process loads them).
    pub fn stage(&self, cluster: &str, routes: ClusterRoutes) -> Result<(), String> {
        let mut staged = self.lock().clone();
        staged.insert(cluster.to_owned(), routes);
        self.save_locked(&staged)
    }

    fn publish_locked(&self, map: &BTreeMap<String, ClusterRoutes>) -> Vec<Conflict> {
        let clusters: Vec<(&str, &ClusterRoutes)> = self
            .order
            .iter()
            .filter_map(|name| map.get(name).map(|r| (name.as_str(), r)))
            .collect();
        let (table, conflicts) = merge::merge(&self.static_routes, &clusters);
        metrics::ROUTE_COUNT.set(table.len() as i64);
        self.store.swap(table);
        conflicts
    }

    fn save_locked(&self, map: &BTreeMap<String, ClusterRoutes>) -> Result<(), String> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let state = StateFile {
            clusters: map.clone(),
        };
        statefile::save(path, &state)
    }

    /// The live table.
    pub fn table(&self) -> Arc<RouteTable> {
        self.store.load()
    }
}
