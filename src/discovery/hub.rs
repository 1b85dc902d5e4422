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
    /// The most routes the table may hold (`gateway.max_routes`).
    max_routes: usize,
    clusters: Mutex<Clusters>,
}

/// Why discovered routes were not published.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The table would be over `max_routes`; the last good one keeps serving.
    #[error("the new route table would hold {routes} routes, over gateway.max_routes ({max}); the last good table keeps serving. Raise max_routes if the cluster really has that many brokers")]
    TooManyRoutes {
        /// Routes in the table that was refused.
        routes: usize,
        /// The limit.
        max: usize,
    },
    /// The new routes could not be saved.
    #[error(transparent)]
    StateFile(#[from] StateFileError),
}

impl Hub {
    /// Creates the hub and publishes the static routes.
    pub fn new(clusters: Clusters, store: Arc<RouteStore>) -> Self {
        let hub = Hub {
            store,
            save_to: None,
            max_routes: usize::MAX,
            clusters: Mutex::new(clusters),
        };
        hub.publish(&hub.lock());
        hub
    }

    /// Refuses discovered routes that would take the table over `max` routes.
    pub fn max_routes(mut self, max: usize) -> Self {
        self.max_routes = max;
        self
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
    /// when `changed`. Returns the names of `cluster` that other routes kept.
    pub fn update(
        &self,
        cluster: &str,
        routes: ClusterRoutes,
        changed: bool,
    ) -> Result<Vec<Conflict>, UpdateError> {
        let mut clusters = self.lock();
        let previous = clusters.set(cluster, routes);
        let (table, conflicts) = clusters.table_for(cluster);
        if let Err(e) = self.within_limit(&table) {
            clusters.unset(cluster, previous);
            return Err(e);
        }
        self.publish_table(table);
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

    /// Refuses a table over `max_routes`.
    fn within_limit(&self, table: &RouteTable) -> Result<(), UpdateError> {
        if table.len() > self.max_routes {
            return Err(UpdateError::TooManyRoutes {
                routes: table.len(),
                max: self.max_routes,
            });
        }
        Ok(())
    }

    /// Replaces the static routes (a config reload) and publishes the merged table.
    /// Refused, with the last good table kept, when the result would be over `max_routes`.
    pub fn set_static(&self, routes: RouteTable) -> Result<Vec<Conflict>, UpdateError> {
        let mut clusters = self.lock();
        let previous = clusters.set_static(routes);
        let (table, conflicts) = clusters.table();
        if let Err(e) = self.within_limit(&table) {
            clusters.set_static(previous);
            return Err(e);
        }
        self.publish_table(table);
        Ok(conflicts)
    }

    fn publish(&self, clusters: &Clusters) -> Vec<Conflict> {
        let (table, conflicts) = clusters.table();
        self.publish_table(table);
        conflicts
    }

    fn publish_table(&self, table: RouteTable) {
        metrics::set_route_counts(&table);
        let table = Arc::new(table);
        self.store.swap_arc(table.clone());
        metrics::forget_routes(&table);
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
