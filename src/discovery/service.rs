//! One refresh loop per cluster, run as a Pingora background service: fetch the brokers,
//! derive the routes, publish them through the hub, check coverage. The rules it follows
//! (removal grace, backoff, keeping the last good routes) are `snigate_core`'s; this is
//! the loop and its side effects. `snigate routes --discover` runs the same [`ClusterService::refresh`].

use super::hub::Hub;
use super::source::{BrokerSource, RefreshError};
use crate::metrics;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use snigate_core::config::{ClusterConfig, ReloadMode};
use snigate_core::discovery::merge;
use snigate_core::discovery::refresh::{observed_names, Backoff};
use snigate_core::discovery::state::Change;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// What to do when routes change in `upgrade` mode.
pub type UpgradeHook = Arc<dyn Fn() + Send + Sync>;

/// The clock discovery reads: Unix seconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The discovery service for one cluster.
pub struct ClusterService {
    cluster: ClusterConfig,
    hub: Arc<Hub>,
    source: Box<dyn BrokerSource>,
    reload: ReloadMode,
    upgrade: Option<UpgradeHook>,
    clock: Clock,
    last_conflicts: Mutex<Vec<String>>,
    last_unroutable: Mutex<Vec<String>>,
}

impl ClusterService {
    /// Creates the service; routes change live.
    pub fn new(cluster: ClusterConfig, hub: Arc<Hub>, source: Box<dyn BrokerSource>) -> Self {
        ClusterService {
            cluster,
            hub,
            source,
            reload: ReloadMode::Live,
            upgrade: None,
            clock: Arc::new(system_clock),
            last_conflicts: Mutex::new(Vec::new()),
            last_unroutable: Mutex::new(Vec::new()),
        }
    }

    /// In `upgrade` mode, a route change is staged in the state file and `hook` is called
    /// instead of swapping the table.
    pub fn with_reload(mut self, reload: ReloadMode, hook: Option<UpgradeHook>) -> Self {
        self.reload = reload;
        self.upgrade = hook;
        self
    }

    /// Reads time from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// One refresh: fetch, derive, publish (or stage, in upgrade mode), check coverage.
    /// `first` is the process's first refresh of this cluster, which always publishes.
    pub async fn refresh(&self, first: bool) -> Result<Change, RefreshError> {
        let name = self.cluster.name.as_str();
        let brokers = self.source.brokers().await?;
        if brokers.is_empty() {
            return Err(RefreshError::ZeroBrokers);
        }
        let observed = observed_names(&self.cluster, &brokers);
        let mut routes = self.hub.cluster(name);
        let now = (self.clock)();
        let change = routes.observe(&observed, now, self.cluster.removed_broker_grace.as_secs());
        let upgrade = self.reload == ReloadMode::Upgrade && !first && !change.is_empty();
        if upgrade {
            self.hub.stage(name, routes)?;
        } else {
            let conflicts = self.hub.update(name, routes, !change.is_empty())?;
            self.report_conflicts(&conflicts);
        }
        metrics::BROKERS
            .with_label_values(&[name])
            .set(brokers.len() as i64);
        metrics::LAST_SUCCESS
            .with_label_values(&[name])
            .set(now as i64);
        metrics::IN_GRACE
            .with_label_values(&[name])
            .set(change.retained.len() as i64);
        if !change.is_empty() {
            log::info!(
                "cluster {name}: routes changed: added [{}] removed [{}]",
                change.added.join(", "),
                change.removed.join(", ")
            );
        }
        if !change.retained.is_empty() {
            log::info!(
                "cluster {name}: no longer advertised, kept for the grace period: [{}]",
                change.retained.join(", ")
            );
        }
        // Coverage: every advertised broker must be routable through the live table.
        let table = self.hub.table();
        let missing = merge::unroutable(&table, brokers.iter().map(|b| b.host.as_str()));
        metrics::UNROUTABLE
            .with_label_values(&[name])
            .set(missing.len() as i64);
        let mut last_missing = self
            .last_unroutable
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !missing.is_empty() && !upgrade && *last_missing != missing {
            log::warn!(
                "cluster {name}: advertised brokers that cannot be routed by SNI: [{}]",
                missing.join(", ")
            );
        }
        *last_missing = missing;
        drop(last_missing);
        if upgrade {
            if let Some(hook) = &self.upgrade {
                log::info!("cluster {name}: reload is `upgrade`; handing over to a new process");
                hook();
            }
        }
        Ok(change)
    }

    fn report_conflicts(&self, conflicts: &[merge::Conflict]) {
        let now: Vec<String> = conflicts
            .iter()
            .filter(|c| c.cluster == self.cluster.name)
            .map(|c| c.to_string())
            .collect();
        let mut last = self
            .last_conflicts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *last != now {
            for c in &now {
                log::warn!("route conflict: {c}");
            }
            *last = now;
        }
    }

    /// Refreshes until `shutdown`: every refresh interval after a success, with backoff
    /// after a failure. A failure keeps the last good routes.
    pub async fn run(&self, mut shutdown: ShutdownWatch) {
        let name = self.cluster.name.as_str();
        let mut backoff = Backoff::new(self.cluster.refresh_interval);
        let mut first = true;
        loop {
            let wait = match self.refresh(first).await {
                Ok(_) => {
                    metrics::REFRESHES.with_label_values(&[name, "ok"]).inc();
                    first = false;
                    backoff.succeeded()
                }
                Err(e) => {
                    let outcome = e.outcome();
                    metrics::REFRESHES.with_label_values(&[name, outcome]).inc();
                    record_error(name, &e.to_string());
                    let kept = self.hub.cluster(name).names.len();
                    let wait = backoff.failed();
                    log::warn!(
                        "cluster {name}: refresh {outcome}: {e}; keeping the last good routes ({kept} names); retrying in {wait:?}"
                    );
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[async_trait]
impl BackgroundService for ClusterService {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.run(shutdown).await
    }
}

#[cfg(test)]
mod tests;

/// Each cluster's last failed refresh: Unix seconds and the error, for the status page.
static LAST_ERRORS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, (u64, String)>>,
> = std::sync::LazyLock::new(Default::default);

fn record_error(cluster: &str, error: &str) {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Ok(mut all) = LAST_ERRORS.lock() {
        all.insert(cluster.to_owned(), (at, error.to_owned()));
    }
}

/// Each cluster's last failed refresh: Unix seconds and the error.
pub fn last_errors() -> std::collections::HashMap<String, (u64, String)> {
    LAST_ERRORS.lock().map(|m| m.clone()).unwrap_or_default()
}
