//! The hub: the static routes and every cluster's discovered routes in one place. Each
//! change publishes the merged table (an atomic swap: connections already routed keep
//! theirs) and, when the routes changed, saves the state file.

use crate::metrics;
use crate::routes::RouteStore;
use snigate_core::discovery::clusters::Clusters;
use snigate_core::discovery::merge::Conflict;
use snigate_core::discovery::state::ClusterRoutes;
use snigate_core::discovery::statefile::{self, StateFileError};
use snigate_core::routes::RouteTable;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// Shared route state: what discovery and config reloads change, and what listeners read.
pub struct Hub {
    store: Arc<RouteStore>,
    /// Where to save discovered routes; `None` when they are only read (operator commands).
    save_to: Option<PathBuf>,
    /// Listener names, to create each new route's metric series.
    listeners: Vec<String>,
    clusters: Mutex<Clusters>,
}

impl Hub {
    /// Creates the hub and publishes the static routes.
    pub fn new(clusters: Clusters, store: Arc<RouteStore>, listeners: Vec<String>) -> Self {
        let hub = Hub {
            store,
            save_to: None,
            listeners,
            clusters: Mutex::new(clusters),
        };
        hub.publish(&hub.lock());
        hub
    }

    /// Saves discovered routes to `path` from now on.
    pub fn save_to(mut self, path: Option<PathBuf>) -> Self {
        self.save_to = path;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Clusters> {
        // A poisoned lock only means a panic elsewhere; the data is still whole.
        self.clusters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the routes saved in `path` and publishes them. Returns the clusters restored.
    pub fn restore(&self, path: &std::path::Path) -> Result<Vec<String>, StateFileError> {
        let state = statefile::load(path)?;
        let mut clusters = self.lock();
        let restored = clusters.restore(state);
        self.publish(&clusters);
        Ok(restored)
    }

    /// The routes known for `cluster` (empty if none).
    pub fn cluster(&self, cluster: &str) -> ClusterRoutes {
        self.lock().get(cluster)
    }

    /// Clusters that have no routes yet.
    pub fn pending(&self) -> Vec<String> {
        self.lock().pending()
    }

    /// Replaces `cluster`'s routes and publishes the merged table; saves the state file
    /// when `changed`. Returns the conflicts of the new table.
    pub fn update(
        &self,
        cluster: &str,
        routes: ClusterRoutes,
        changed: bool,
    ) -> Result<Vec<Conflict>, StateFileError> {
        let mut clusters = self.lock();
        clusters.set(cluster, routes);
        let conflicts = self.publish(&clusters);
        if changed {
            self.save(&clusters)?;
        }
        Ok(conflicts)
    }

    /// Saves `cluster`'s new routes to the state file without touching the live table (the
    /// `upgrade` reload mode: the next process loads them).
    pub fn stage(&self, cluster: &str, routes: ClusterRoutes) -> Result<(), StateFileError> {
        let mut staged = self.lock().clone();
        staged.set(cluster, routes);
        self.save(&staged)
    }

    /// Replaces the static routes (a config reload) and publishes the merged table.
    pub fn set_static(&self, routes: RouteTable) -> Vec<Conflict> {
        let mut clusters = self.lock();
        clusters.set_static(routes);
        self.publish(&clusters)
    }

    fn publish(&self, clusters: &Clusters) -> Vec<Conflict> {
        let (table, conflicts) = clusters.table();
        let listeners: Vec<&str> = self.listeners.iter().map(String::as_str).collect();
        let labels: Vec<&str> = table.routes().iter().map(|r| r.label.as_ref()).collect();
        metrics::init_routes(&listeners, &labels);
        metrics::ROUTE_COUNT.set(table.len() as i64);
        self.store.swap(table);
        conflicts
    }

    fn save(&self, clusters: &Clusters) -> Result<(), StateFileError> {
        match &self.save_to {
            Some(path) => statefile::save(path, &clusters.state()),
            None => Ok(()),
        }
    }

    /// The live table.
    pub fn table(&self) -> Arc<RouteTable> {
        self.store.load()
    }

    /// The store the hub publishes to, for listeners to read.
    pub fn store(&self) -> Arc<RouteStore> {
        self.store.clone()
    }
}
