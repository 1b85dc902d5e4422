//! Operator commands that print and exit: `snigate routes` and `snigate hosts`. Both read
//! the table the gateway would use; with `--discover` they fetch it with the same refresh
//! code the running gateway uses. Neither writes the state file.

use crate::config::Config;
use crate::discovery::hub::Hub;
use crate::discovery::kafka::KafkaSource;
use crate::discovery::service::ClusterService;
use crate::render;
use crate::routes::RouteStore;
use snigate_core::discovery::clusters::Clusters;
use snigate_core::routes::RouteTable;
use std::net::IpAddr;
use std::sync::Arc;

/// Why a command could not produce its table.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The state file could not be read.
    #[error(transparent)]
    StateFile(#[from] snigate_core::discovery::statefile::StateFileError),
    /// A cluster could not be asked.
    #[error("cluster {cluster}: {source}")]
    Discover {
        /// The cluster.
        cluster: String,
        /// Why.
        source: crate::discovery::source::RefreshError,
    },
    /// The async runtime for `--discover` could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// `snigate routes`: the table for people, or YAML for `gateway.routes`.
pub fn routes(config: &Config, yaml: bool, discover: bool) -> Result<(), CommandError> {
    let table = effective_table(config, discover)?;
    if yaml {
        print!("{}", render::yaml(&table));
    } else {
        print!("{}", render::table(&table, &config.gateway.listeners));
    }
    Ok(())
}

/// `snigate hosts`: hosts-file lines pointing every routed name at `gateway`.
pub fn hosts(config: &Config, gateway: IpAddr, discover: bool) -> Result<(), CommandError> {
    let table = effective_table(config, discover)?;
    print!("{}", render::hosts(&table, gateway));
    Ok(())
}

/// The table the gateway would use: static routes plus each cluster's discovered routes,
/// read from the state file or, with `discover`, fetched now.
fn effective_table(config: &Config, discover: bool) -> Result<RouteTable, CommandError> {
    let gw = &config.gateway;
    let names: Vec<String> = gw.clusters.iter().map(|c| c.name.clone()).collect();
    let store = Arc::new(RouteStore::new(gw.routes.clone()));
    let hub = Arc::new(Hub::new(
        Clusters::new(gw.routes.clone(), names),
        store,
        Vec::new(),
    ));
    if !discover {
        if let Some(path) = &gw.state_file {
            hub.restore(path)?;
        }
        return Ok((*hub.table()).clone());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CommandError::Runtime)?;
    for c in &gw.clusters {
        let source = Box::new(KafkaSource::new(c.clone()));
        let service = ClusterService::new(c.clone(), hub.clone(), source);
        runtime
            .block_on(service.refresh(true))
            .map_err(|source| CommandError::Discover {
                cluster: c.name.clone(),
                source,
            })?;
    }
    Ok((*hub.table()).clone())
}
