//! A worker: the Pingora server that serves the gateway. It runs one listening service per
//! listener, the admin endpoint, a discovery service per cluster, the readiness notifier and
//! the drain's exit watch, all sharing one route hub.
//!
//! - [`signals`]: its signals, and the watch on its stable process.
//! - [`orphan`]: what it does when its stable process dies.
//! - [`drain`]: closing connections spread over the grace period, then exiting.
//! - [`reload`]: applying a changed config file in place (SIGHUP).
//! - [`reload_upgrade`]: asking for an upgrade when discovered routes change.

pub mod drain;
pub mod orphan;
pub mod reload;
pub mod reload_upgrade;
pub mod signals;

use crate::admin::{AdminApp, Readiness, ReadyNotifier, StatusSource};
use crate::config::Config;
use crate::discovery::hub::Hub;
use crate::discovery::kafka::KafkaSource;
use crate::discovery::service::ClusterService;
use crate::listener::{check_bindable, HandedOver, Listeners};
use crate::metrics;
use crate::proxy::{Handler, Shared};
use crate::routes::RouteStore;
use crate::supervisor::control::{self, Request};
use crate::supervisor::{BUILD_ENV, CONTROL_ENV};
use orphan::SupervisorWatch;
use pingora_core::server::configuration::Opt;
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use reload::Reloader;
use signals::{Orphaning, WorkerSignals};
use snigate_core::config::{GatewayConfig, ReloadMode};
use snigate_core::discovery::clusters::Clusters;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// How a worker starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// Receive the listening sockets on `upgrade_sock` (from the stable process) rather
    /// than bind them.
    pub receive_sockets: bool,
    /// Another worker serves now: have every cluster's routes before taking the sockets.
    pub prime: bool,
}

/// The route hub: static routes, plus discovered ones restored from the state file.
fn hub(gateway: &GatewayConfig) -> Arc<Hub> {
    let names: Vec<String> = gateway.clusters.iter().map(|c| c.name.clone()).collect();
    // Brokers reached through an egress proxy get no direct health check.
    let broker_check = gateway
        .health_check
        .filter(|_| gateway.egress_proxy.is_none());
    let store = Arc::new(RouteStore::with_broker_check(
        gateway.routes.clone(),
        broker_check,
    ));
    let hub = Hub::new(Clusters::new(gateway.routes.clone(), names), store)
        .max_routes(gateway.max_routes)
        .save_to(gateway.state_file.clone());
    if let Some(path) = &gateway.state_file {
        match hub.restore(path) {
            Ok(restored) if !restored.is_empty() => log::info!(
                "routes restored from the state file for clusters: {}",
                restored.join(", ")
            ),
            Ok(_) => {}
            Err(e) => log::warn!("{e}; starting without saved routes"),
        }
    }
    Arc::new(hub)
}

/// Before taking over from a running worker: every cluster must have routes, from the
/// state file or from one refresh now, so that the new worker never serves fewer routes.
fn prime(gateway: &GatewayConfig, hub: &Arc<Hub>) -> Result<(), String> {
    let pending = hub.pending();
    if pending.is_empty() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    for c in gateway
        .clusters
        .iter()
        .filter(|c| pending.contains(&c.name))
    {
        log::info!(
            "cluster {}: no saved routes; asking the cluster before taking over",
            c.name
        );
        let source = Box::new(KafkaSource::new(c.clone(), gateway.egress_proxy.clone()));
        let service = ClusterService::new(c.clone(), hub.clone(), source);
        runtime.block_on(service.refresh(true)).map_err(|e| {
            format!(
                "cluster {} has no routes to serve (no state file entry, and {e}); the running gateway keeps serving",
                c.name
            )
        })?;
    }
    Ok(())
}

/// Runs a worker from `config` (read from `conf`) until it exits; returns the exit code.
pub fn run(mut config: Config, conf: PathBuf, start: Start) -> i32 {
    let upgrade = start.receive_sockets;
    let control = std::env::var_os(CONTROL_ENV).map(PathBuf::from);
    let supervisor = SupervisorWatch::from_env();
    if !upgrade {
        if let Err(e) = check_bindable(&config.gateway) {
            eprintln!("snigate: {e}");
            return 1;
        }
    }
    let gateway = config.gateway.clone();
    for w in &gateway.warnings {
        log::warn!("config {}: {w}", conf.display());
    }
    if let Err(e) = crate::access_log::init(&gateway.access_log) {
        let path = gateway
            .access_log
            .path
            .as_deref()
            .unwrap_or(std::path::Path::new("-"));
        eprintln!(
            "snigate: cannot open the access log {}: {e}",
            path.display()
        );
        return 1;
    }
    let supervisor_build = std::env::var(BUILD_ENV).ok();
    metrics::init_process(supervisor_build.as_deref());
    metrics::init_listeners(gateway.listeners.iter().map(|l| l.name.as_str()));
    metrics::init_clusters(gateway.clusters.iter().map(|c| c.name.as_str()));
    let hub = hub(&gateway);
    // Reading the file left its parse behind as free heap; give it back.
    crate::process::return_free_memory();
    if start.prime {
        if let Err(e) = prime(&gateway, &hub) {
            eprintln!("snigate: {e}");
            return 1;
        }
    }
    let grace = config.grace_period();
    let core = config.core();
    let reuse = match config.reuse.take() {
        Some(Ok(reuse)) => Some(reuse),
        Some(Err(why)) => {
            if !config.gateway.routes.is_empty() {
                log::info!(
                    "a reload of {} will parse the whole file: {why}",
                    conf.display()
                );
            }
            None
        }
        None => None,
    };
    let mut server_conf = config.server;
    // The drain ends the process itself; Pingora's own wait only has to outlast it.
    server_conf.grace_period_seconds = Some(grace.as_secs() + 5);
    server_conf.daemon = false;
    // Unless set, each worker thread runs its own event loop (no work stealing): cheaper
    // per connection, and the listeners spread new connections over the threads.
    if !config.server_keys.contains_key("work_stealing") {
        server_conf.work_stealing = false;
    }
    let upgrade_sock = PathBuf::from(&server_conf.upgrade_sock);
    // The sockets are received here rather than by Pingora's `-u` (see `HandedOver`).
    let mut server = Server::new_with_opt_and_conf(Opt::default(), server_conf);
    let handed_over = if upgrade {
        if let Some(socket) = &control {
            if let Err(e) = control::tell(socket, &Request::Prepared(std::process::id())) {
                log::warn!(
                    "cannot tell the stable process at {} that this worker is prepared: {e}",
                    socket.display()
                );
            }
        }
        match crate::listener::take_over(&upgrade_sock, crate::listener::TAKE_OVER_WAIT) {
            Ok(sockets) => {
                let wanted = gateway
                    .listeners
                    .iter()
                    .map(|l| l.address)
                    .chain(gateway.admin);
                Some(server.add_service(HandedOver::new(sockets, wanted)))
            }
            Err(e) => {
                log::error!("no listening sockets were handed over: {e}");
                log::logger().flush();
                return 1;
            }
        }
    } else {
        None
    };
    server.bootstrap();
    std::sync::LazyLock::force(&crate::status::STARTED);

    let hook =
        (gateway.reload == ReloadMode::Upgrade).then(|| reload_upgrade::hook(control.clone()));
    for c in &gateway.clusters {
        let source = Box::new(KafkaSource::new(c.clone(), gateway.egress_proxy.clone()));
        let service = ClusterService::new(c.clone(), hub.clone(), source)
            .with_reload(gateway.reload, hook.clone());
        server.add_service(background_service(
            &format!("discovery {}", c.name),
            service,
        ));
    }
    let shared = Arc::new(
        Shared::new(gateway.limits, &gateway.listeners, hub.store(), grace)
            .with_egress(gateway.egress_proxy.clone()),
    );
    let handlers = gateway
        .listeners
        .iter()
        .map(|l| {
            log::info!("listener {} on {}", l.name, l.address);
            Arc::new(Handler::new(l.clone(), shared.clone()))
        })
        .collect();
    let drains = Arc::new(drain::Board::default());
    let readiness = Arc::new(Readiness::default());
    if control.is_some() {
        readiness.expect_announcement();
    }
    let listeners = Listeners::new(handlers, readiness.clone());
    let open_listeners = listeners.open_listeners();
    let listening = server.add_service(listeners);
    if let Some(h) = &handed_over {
        listening.add_dependency(h);
    }
    if let Some(addr) = gateway.admin {
        log::info!("admin endpoint on http://{addr} (/metrics /health /ready /routes)");
        let app = AdminApp::new(hub.clone(), readiness.clone()).with_status(StatusSource {
            listeners: gateway
                .listeners
                .iter()
                .map(|l| (l.name.clone(), l.address.to_string()))
                .collect(),
            clusters: gateway.clusters.iter().map(|c| c.name.clone()).collect(),
            drains: drains.clone(),
        });
        let mut service = Service::new("admin".to_owned(), app);
        service.add_tcp(&addr.to_string());
        let admin = server.add_service(service);
        if let Some(h) = &handed_over {
            admin.add_dependency(h);
        }
    }
    let notifier = ReadyNotifier::new(readiness, hub.clone(), control.clone());
    server.add_service(background_service("readiness", notifier));
    server.add_service(background_service(
        "drain",
        drain::Exit::new(shared.clone(), control.clone()),
    ));
    server.add_service(background_service(
        "drain watch",
        drain::Watch::new(shared.clone(), control.clone(), drains),
    ));
    server.add_service(background_service("access log", crate::access_log::Flusher));
    server.add_service(background_service(
        "pool health checks",
        crate::upstream::pool::PoolChecks(shared.routes.pools.clone()),
    ));
    let reloader = Arc::new(Reloader::new(conf, core, reuse, hub, shared.clone()));
    log::info!(
        "snigate {} worker starting: {} listeners, {} static routes, {} clusters to discover, grace period {:?}",
        crate::BUILD,
        gateway.listeners.len(),
        gateway.routes.len(),
        gateway.clusters.len(),
        grace
    );
    let reopen: signals::Reopen = Arc::new(crate::access_log::reopen);
    let mut signals = WorkerSignals::new(upgrade_sock, reloader, Some(reopen));
    if let (Some(watch), Some(control)) = (supervisor, &control) {
        signals = signals.with_orphaning(Orphaning {
            watch: Mutex::new(Some(watch)),
            listeners: open_listeners,
            takeover: control::takeover_path(control),
            shared,
        });
    }
    // The hub and the reloader hold the routes now. This frame lasts as long as the
    // worker, so its copies of the config would keep the first table alive after every
    // reload: a second table's worth of memory for good.
    drop(gateway);
    drop(config.gateway);
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });
    0
}
