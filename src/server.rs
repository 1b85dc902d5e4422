//! Wiring the Pingora server: one listening service per listener, the admin endpoint, a
//! discovery service per cluster, and the readiness probe, all sharing one route hub.

use crate::admin::{AdminApp, ListenerProbe, Readiness};
use crate::config::Config;
use crate::discovery::hub::Hub;
use crate::discovery::kafka::KafkaSource;
use crate::discovery::service::ClusterService;
use crate::metrics;
use crate::proxy::{Handler, ListenerApp, Shared};
use crate::routes::RouteStore;
use pingora_core::server::configuration::Opt;
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use snigate_core::config::{GatewayConfig, ReloadMode};
use snigate_core::discovery::clusters::Clusters;
use std::sync::Arc;

/// Checks that each address can be bound, so that a taken port fails at start with a clear
/// message instead of inside a service thread. Skipped on upgrade, when the old process
/// still holds the sockets.
fn check_bindable(gateway: &GatewayConfig) -> Result<(), String> {
    let admin = gateway.admin.map(|a| ("admin".to_owned(), a));
    let all = gateway
        .listeners
        .iter()
        .map(|l| (format!("listener `{}`", l.name), l.address))
        .chain(admin);
    for (what, addr) in all {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            return Err(format!("{what} cannot listen on {addr}: {e}"));
        }
    }
    Ok(())
}

/// The route hub: static routes, plus discovered ones restored from the state file.
fn hub(gateway: &GatewayConfig) -> Arc<Hub> {
    let names: Vec<String> = gateway.clusters.iter().map(|c| c.name.clone()).collect();
    let listeners = gateway.listeners.iter().map(|l| l.name.clone()).collect();
    let store = Arc::new(RouteStore::new(gateway.routes.clone()));
    let hub = Hub::new(
        Clusters::new(gateway.routes.clone(), names),
        store,
        listeners,
    )
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

/// Builds the server from `config` and runs it until it exits; returns the exit code.
pub fn run(config: Config, daemon: bool, upgrade: bool) -> i32 {
    if !upgrade {
        if let Err(e) = check_bindable(&config.gateway) {
            eprintln!("snigate: {e}");
            return 1;
        }
    }
    let opt = Opt {
        upgrade,
        daemon,
        ..Opt::default()
    };
    let gateway = config.gateway;
    let mut server = Server::new_with_opt_and_conf(opt, config.server);
    server.bootstrap();

    metrics::init_listeners(gateway.listeners.iter().map(|l| l.name.as_str()));
    metrics::init_clusters(gateway.clusters.iter().map(|c| c.name.as_str()));
    let hub = hub(&gateway);
    let hook = (gateway.reload == ReloadMode::Upgrade).then(crate::upgrade::hook);
    for c in &gateway.clusters {
        let source = Box::new(KafkaSource::new(c.clone()));
        let service = ClusterService::new(c.clone(), hub.clone(), source)
            .with_reload(gateway.reload, hook.clone());
        server.add_service(background_service(
            &format!("discovery {}", c.name),
            service,
        ));
    }

    let shared = Arc::new(Shared::new(gateway.limits, hub.store()));
    for l in &gateway.listeners {
        log::info!("listener {} on {}", l.name, l.address);
        let app = ListenerApp::new(Handler::new(l.clone(), shared.clone()));
        let mut service = Service::new(format!("listener {}", l.name), app);
        service.add_tcp(&l.address.to_string());
        server.add_service(service);
    }
    let readiness = Arc::new(Readiness::default());
    if let Some(addr) = gateway.admin {
        log::info!("admin endpoint on http://{addr} (/metrics /health /ready /routes)");
        let mut service = Service::new(
            "admin".to_owned(),
            AdminApp::new(hub.clone(), readiness.clone()),
        );
        service.add_tcp(&addr.to_string());
        server.add_service(service);
    }
    let probe = ListenerProbe::new(
        gateway.listeners.iter().map(|l| l.address).collect(),
        readiness,
    );
    server.add_service(background_service("readiness probe", probe));
    log::info!(
        "snigate {} starting: {} listeners, {} static routes, {} clusters to discover",
        env!("CARGO_PKG_VERSION"),
        gateway.listeners.len(),
        gateway.routes.len(),
        gateway.clusters.len()
    );
    server.run_forever()
}
