//! One Pingora background service per cluster: refresh the metadata, derive routes, and
//! publish them through the hub. A failed or partial refresh keeps the last good routes and
//! is retried with exponential backoff, up to the refresh interval.

use super::hub::Hub;
use super::merge;
use super::metadata::{Broker, MetadataClient};
use super::state::{Change, ClusterRoutes, Kind};
use crate::config::file::ReloadMode;
use crate::config::ClusterConfig;
use crate::metrics;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Shortest wait before retrying a failed refresh.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// What to do when routes change in `upgrade` mode.
pub type UpgradeHook = Arc<dyn Fn() + Send + Sync>;

/// The discovery service for one cluster.
pub struct ClusterService {
    cluster: ClusterConfig,
    hub: Arc<Hub>,
    reload: ReloadMode,
    upgrade: Option<UpgradeHook>,
    client: Mutex<Option<Arc<MetadataClient>>>,
    last_conflicts: Mutex<Vec<String>>,
}

/// Why a refresh did not produce routes.
#[derive(Debug)]
pub enum RefreshError {
    /// The metadata could not be fetched.
    Failed(String),
    /// The metadata came back but is unusable (e.g. zero brokers).
    Partial(String),
}

impl std::fmt::Display for RefreshError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefreshError::Failed(e) | RefreshError::Partial(e) => f.write_str(e),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The names a cluster's metadata yields: bootstrap, every broker, REST and Schema Registry.
pub fn observed_names(cluster: &ClusterConfig, brokers: &[Broker]) -> Vec<(String, u16, Kind)> {
    let mut out = vec![(
        cluster.bootstrap.0.clone(),
        cluster.bootstrap.1,
        Kind::Bootstrap,
    )];
    for b in brokers {
        out.push((b.host.to_ascii_lowercase(), b.port, Kind::Broker));
    }
    if let Some((h, p)) = &cluster.rest {
        out.push((h.clone(), *p, Kind::Rest));
    }
    if let Some((h, p)) = &cluster.schema_registry {
        out.push((h.clone(), *p, Kind::SchemaRegistry));
    }
    out
}

/// Fetches the brokers once, off the async runtime and under a timeout.
pub async fn fetch(
    client: Arc<MetadataClient>,
    timeout: Duration,
) -> Result<Vec<Broker>, RefreshError> {
    let call = tokio::task::spawn_blocking(move || client.brokers(timeout));
    match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
        Ok(Ok(Ok(brokers))) if brokers.is_empty() => Err(RefreshError::Partial(
            "the metadata lists zero brokers".into(),
        )),
        Ok(Ok(Ok(brokers))) => Ok(brokers),
        Ok(Ok(Err(e))) => Err(RefreshError::Failed(e)),
        Ok(Err(e)) => Err(RefreshError::Failed(format!("metadata task failed: {e}"))),
        Err(_) => Err(RefreshError::Failed(format!(
            "metadata request timed out after {timeout:?}"
        ))),
    }
}

impl ClusterService {
    /// Creates the service.
    pub fn new(
        cluster: ClusterConfig,
        hub: Arc<Hub>,
        reload: ReloadMode,
        upgrade: Option<UpgradeHook>,
    ) -> Self {
        ClusterService {
            cluster,
            hub,
            reload,
            upgrade,
            client: Mutex::new(None),
            last_conflicts: Mutex::new(Vec::new()),
        }
    }

    fn client(&self) -> Result<Arc<MetadataClient>, RefreshError> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(MetadataClient::new(&self.cluster).map_err(RefreshError::Failed)?);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// One refresh: fetch, derive, publish (or stage, in upgrade mode), check coverage.
    pub async fn refresh(&self, first: bool) -> Result<Change, RefreshError> {
        let name = self.cluster.name.as_str();
        let brokers = fetch(self.client()?, self.cluster.metadata_timeout).await?;
        let observed = observed_names(&self.cluster, &brokers);
        let mut routes: ClusterRoutes = self.hub.cluster(name);
        let change = routes.observe(
            &observed,
            now_secs(),
            self.cluster.removed_broker_grace.as_secs(),
        );
        let upgrade = self.reload == ReloadMode::Upgrade && !first && !change.is_empty();
        if upgrade {
            self.hub.stage(name, routes).map_err(RefreshError::Failed)?;
        } else {
            let conflicts = self
                .hub
                .update(name, routes)
                .map_err(RefreshError::Failed)?;
            self.report_conflicts(&conflicts);
        }
        metrics::BROKERS
            .with_label_values(&[name])
            .set(brokers.len() as i64);
        metrics::LAST_SUCCESS
            .with_label_values(&[name])
            .set(now_secs() as i64);
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
        if !missing.is_empty() && !upgrade {
            log::warn!(
                "cluster {name}: advertised brokers that cannot be routed by SNI: [{}]",
                missing.join(", ")
            );
        }
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
}

#[async_trait]
impl BackgroundService for ClusterService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let name = self.cluster.name.clone();
        let mut backoff = FIRST_BACKOFF;
        let mut first = true;
        loop {
            let wait = match self.refresh(first).await {
                Ok(_) => {
                    metrics::REFRESHES.with_label_values(&[&name, "ok"]).inc();
                    first = false;
                    backoff = FIRST_BACKOFF;
                    self.cluster.refresh_interval
                }
                Err(e) => {
                    let outcome = match e {
                        RefreshError::Failed(_) => "failed",
                        RefreshError::Partial(_) => "partial",
                    };
                    metrics::REFRESHES
                        .with_label_values(&[&name, outcome])
                        .inc();
                    let kept = self.hub.cluster(&name).names.len();
                    log::warn!(
                        "cluster {name}: refresh {outcome}: {e}; keeping the last good routes ({kept} names); retrying in {backoff:?}"
                    );
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.cluster.refresh_interval);
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
