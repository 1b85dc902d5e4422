//! The command line, and wiring the Pingora server together.
//!
//! `snigate -c FILE` runs the gateway. Pingora's flags keep their meaning: `-d` daemonizes,
//! `-u` takes the listening sockets over from a running instance (graceful upgrade), and
//! `-t` tests the whole config (Pingora's part and the gateway's) and exits.

use crate::admin::{AdminApp, ListenerProbe, Readiness};
use crate::config::Config;
use crate::discovery::hub::Hub;
use crate::discovery::metadata::MetadataClient;
use crate::discovery::service::{observed_names, ClusterService, UpgradeHook};
use crate::discovery::state::ClusterRoutes;
use crate::metrics;
use crate::proxy::{ListenerApp, Shared};
use crate::routes::{RouteStore, RouteTable, SniPattern};
use clap::{Parser, Subcommand};
use pingora_core::server::configuration::Opt;
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use std::sync::Arc;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "snigate",
    version,
    about = "SNI-routing TLS passthrough gateway for Kafka and HTTPS"
)]
pub struct Cli {
    /// The YAML config file.
    #[arg(short = 'c', long = "conf", global = true)]
    pub conf: Option<String>,
    /// Run in the background (Pingora's daemon mode).
    #[arg(short, long)]
    pub daemon: bool,
    /// Take over the listening sockets of a running snigate (graceful upgrade).
    #[arg(short, long)]
    pub upgrade: bool,
    /// Test the config and exit.
    #[arg(short, long)]
    pub test: bool,
    /// A subcommand; without one, snigate runs the gateway.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Operator subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the effective route table: static routes plus discovered ones (from the
    /// state file, or fetched now with --discover).
    Routes {
        /// Print YAML that can be pasted into `gateway.routes`.
        #[arg(long)]
        yaml: bool,
        /// Fetch every cluster's metadata now instead of reading the state file.
        #[arg(long)]
        discover: bool,
    },
    /// Print the hosts-file lines clients need: every routed name at the gateway's address.
    Hosts {
        /// The address clients reach the gateway at.
        #[arg(long)]
        gateway_address: std::net::IpAddr,
        /// Fetch every cluster's metadata now instead of reading the state file.
        #[arg(long)]
        discover: bool,
    },
}

/// Parses the command line, runs, and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let env = env_logger::Env::default().default_filter_or("info");
    env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .init();
    let Some(path) = cli.conf.clone() else {
        eprintln!("snigate: no config file given; run `snigate -c FILE` (conf/snigate.yaml is an example)");
        return 2;
    };
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("snigate: config {path}: {e}");
            return 1;
        }
    };
    match cli.command {
        Some(Command::Routes { yaml, discover }) => match effective_table(&config, discover) {
            Ok(table) => {
                print!("{}", render_routes(&config, &table, yaml));
                0
            }
            Err(e) => {
                eprintln!("snigate: {e}");
                1
            }
        },
        Some(Command::Hosts {
            gateway_address,
            discover,
        }) => match effective_table(&config, discover) {
            Ok(table) => {
                print!("{}", render_hosts(&table, gateway_address));
                0
            }
            Err(e) => {
                eprintln!("snigate: {e}");
                1
            }
        },
        None if cli.test => {
            println!(
                "snigate: config {path} is valid: {} listeners, {} routes",
                config.gateway.listeners.len(),
                config.gateway.routes.len()
            );
            0
        }
        None => run(config, cli.daemon, cli.upgrade),
    }
}

/// The table the gateway would use: static routes plus each cluster's discovered routes,
/// read from the state file or, with `discover`, fetched now. Never writes the state file.
fn effective_table(config: &Config, discover: bool) -> Result<RouteTable, String> {
    let gw = &config.gateway;
    let names: Vec<String> = gw.clusters.iter().map(|c| c.name.clone()).collect();
    let store = Arc::new(RouteStore::new(gw.routes.clone()));
    let state = if discover {
        None
    } else {
        gw.state_file.clone()
    };
    let (hub, warning) = Hub::new(gw.routes.clone(), store, state, names, false);
    if let Some(w) = warning {
        return Err(w);
    }
    if discover {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for c in &gw.clusters {
            let client = MetadataClient::new(c).map_err(|e| format!("cluster {}: {e}", c.name))?;
            let brokers = client
                .brokers(c.metadata_timeout)
                .map_err(|e| format!("cluster {}: {e}", c.name))?;
            if brokers.is_empty() {
                return Err(format!(
                    "cluster {}: the metadata lists zero brokers",
                    c.name
                ));
            }
            let mut routes = ClusterRoutes::default();
            routes.observe(&observed_names(c, &brokers), now, 0);
            hub.update(&c.name, routes)?;
        }
    }
    Ok((*hub.table()).clone())
}

/// Renders hosts-file lines: every exact route's name at `gateway`. Wildcards cannot be
/// listed name by name, so they are given as comments.
pub fn render_hosts(table: &RouteTable, gateway: std::net::IpAddr) -> String {
    let mut out = String::from("# snigate: point these names at the gateway\n");
    for r in table.routes() {
        match &r.pattern {
            SniPattern::Exact(name) => out.push_str(&format!("{gateway} {name}\n")),
            SniPattern::Wildcard(_) => out.push_str(&format!(
                "# {} is a wildcard route: add each name under it that clients use\n",
                r.label
            )),
        }
    }
    out
}

/// Renders the route table for people, or as YAML for `gateway.routes`.
pub fn render_routes(config: &Config, table: &RouteTable, yaml: bool) -> String {
    let mut out = String::new();
    let routes = table.routes();
    if yaml {
        out.push_str("routes:\n");
        for r in routes {
            out.push_str(&format!(
                "  - sni: \"{}\"\n    upstream: \"{}\"\n",
                r.label, r.upstream
            ));
            if !r.upstream.pinned.is_empty() {
                let pins: Vec<String> = r
                    .upstream
                    .pinned_list()
                    .split(", ")
                    .map(|a| format!("\"{a}\""))
                    .collect();
                out.push_str(&format!("    addresses: [{}]\n", pins.join(", ")));
            }
        }
    } else {
        let width = routes.iter().map(|r| r.label.len()).max().unwrap_or(3);
        let up_width = routes
            .iter()
            .map(|r| r.upstream.to_string().len())
            .max()
            .unwrap_or(8);
        out.push_str(&format!(
            "{:<width$}  {:<up_width$}  ORIGIN\n",
            "SNI", "UPSTREAM"
        ));
        for r in routes {
            let up = r.upstream.to_string();
            out.push_str(&format!(
                "{:<width$}  {up:<up_width$}  {}",
                r.label, r.origin
            ));
            if !r.upstream.pinned.is_empty() {
                out.push_str(&format!("  (pinned: {})", r.upstream.pinned_list()));
            }
            out.push('\n');
        }
        for l in &config.gateway.listeners {
            if let Some(f) = &l.fallback {
                out.push_str(&format!("(listener {} fallback)  {}\n", l.name, f));
            }
        }
    }
    out
}

/// Checks that each address can be bound, so that a taken port fails at start with a clear
/// message instead of inside a service thread. Skipped on upgrade, when the old process
/// still holds the sockets.
fn check_bindable(config: &Config) -> Result<(), String> {
    let admin = config.gateway.admin.map(|a| ("admin".to_owned(), a));
    let all = config
        .gateway
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

/// The `upgrade` reload mode: start a new snigate with the same arguments plus `-u` (it
/// loads the state file just saved), then ask this process to hand over its sockets
/// (SIGQUIT). Runs once per process.
fn upgrade_hook() -> UpgradeHook {
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    Arc::new(move || {
        if fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut args: Vec<String> = std::env::args().skip(1).collect();
        if !args.iter().any(|a| a == "-u" || a == "--upgrade") {
            args.insert(0, "-u".to_owned());
        }
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                log::error!(
                    "cannot find the snigate binary for the upgrade: {e}; keeping the old routes"
                );
                fired.store(false, std::sync::atomic::Ordering::SeqCst);
                return;
            }
        };
        match std::process::Command::new(exe).args(&args).spawn() {
            Ok(child) => {
                log::info!("started the new process (pid {}); handing over", child.id());
                // SAFETY: sending a signal to our own pid has no memory effects.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGQUIT);
                }
            }
            Err(e) => {
                log::error!("cannot start the new process: {e}; keeping the old routes");
                fired.store(false, std::sync::atomic::Ordering::SeqCst);
            }
        }
    })
}

fn run(config: Config, daemon: bool, upgrade: bool) -> i32 {
    if !upgrade {
        if let Err(e) = check_bindable(&config) {
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

    let names: Vec<&str> = gateway.listeners.iter().map(|l| l.name.as_str()).collect();
    metrics::init(&names);
    metrics::ROUTE_COUNT.set(gateway.routes.len() as i64);
    let routes = Arc::new(RouteStore::new(gateway.routes.clone()));
    let hub = if gateway.clusters.is_empty() {
        None
    } else {
        let cluster_names: Vec<String> = gateway.clusters.iter().map(|c| c.name.clone()).collect();
        let refs: Vec<&str> = cluster_names.iter().map(String::as_str).collect();
        metrics::init_clusters(&refs);
        let (hub, warning) = Hub::new(
            gateway.routes.clone(),
            routes.clone(),
            gateway.state_file.clone(),
            cluster_names.clone(),
            true,
        );
        if let Some(w) = warning {
            log::warn!("{w}; starting without saved routes");
        }
        let hub = Arc::new(hub);
        let restored: Vec<&String> = cluster_names
            .iter()
            .filter(|c| !hub.pending().contains(c))
            .collect();
        if !restored.is_empty() {
            log::info!(
                "routes restored from the state file for clusters: {}",
                restored
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let hook = (gateway.reload == crate::config::file::ReloadMode::Upgrade).then(upgrade_hook);
        for c in &gateway.clusters {
            let service = ClusterService::new(c.clone(), hub.clone(), gateway.reload, hook.clone());
            server.add_service(background_service(
                &format!("discovery {}", c.name),
                service,
            ));
        }
        Some(hub)
    };
    let shared = Arc::new(Shared::new(&gateway, routes.clone()));
    let readiness = Arc::new(Readiness::default());

    for l in &gateway.listeners {
        log::info!("listener {} on {}", l.name, l.address);
        let app = ListenerApp::new(l.clone(), shared.clone());
        let mut service = Service::new(format!("listener {}", l.name), app);
        service.add_tcp(&l.address.to_string());
        server.add_service(service);
    }
    if let Some(addr) = gateway.admin {
        log::info!("admin endpoint on http://{addr} (/metrics /health /ready /routes)");
        let app = AdminApp::new(routes, readiness.clone(), hub);
        let mut service = Service::new("admin".to_owned(), app);
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
