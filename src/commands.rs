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
        let live = config.gateway.admin.map(live_routes).unwrap_or_default();
        print!(
            "{}",
            render::table_with(&table, &config.gateway.listeners, &live)
        );
    }
    Ok(())
}

/// The running gateway's routes, from its admin endpoint, for the live state of pool
/// servers; empty when no gateway answers within a second.
fn live_routes(admin: std::net::SocketAddr) -> Vec<render::RouteJson> {
    use std::io::{Read, Write};
    let limit = std::time::Duration::from_secs(1);
    // The admin endpoint keeps connections alive: read the head, then Content-Length bytes.
    let fetch = || -> std::io::Result<Vec<u8>> {
        let mut conn = std::net::TcpStream::connect_timeout(&admin, limit)?;
        conn.set_read_timeout(Some(limit))?;
        conn.set_write_timeout(Some(limit))?;
        conn.write_all(
            b"GET /routes?format=json HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
        )?;
        let mut got = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                return Ok(got);
            }
            got.extend_from_slice(&buf[..n]);
            let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|len| got.len() >= end + 4 + len) {
                return Ok(got);
            }
        }
    };
    let Ok(answer) = fetch() else {
        return Vec::new();
    };
    let Some(start) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Vec::new();
    };
    if !answer.starts_with(b"HTTP/1.1 200") && !answer.starts_with(b"HTTP/1.0 200") {
        return Vec::new();
    }
    serde_json::from_slice(&answer[start + 4..]).unwrap_or_default()
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
    let hub = Arc::new(
        Hub::new(Clusters::new(gw.routes.clone(), names), store).max_routes(gw.max_routes),
    );
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
        let source = Box::new(KafkaSource::new(c.clone(), gw.egress_proxy.clone()));
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
