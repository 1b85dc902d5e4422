//! The command line, and wiring the Pingora server together.
//!
//! `snigate -c FILE` runs the gateway. Pingora's flags keep their meaning: `-d` daemonizes,
//! `-u` takes the listening sockets over from a running instance (graceful upgrade), and
//! `-t` tests the whole config (Pingora's part and the gateway's) and exits.

use crate::admin::{AdminApp, ListenerProbe, Readiness};
use crate::config::Config;
use crate::metrics;
use crate::proxy::{ListenerApp, Shared};
use crate::routes::RouteStore;
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
    /// Print the effective route table.
    Routes {
        /// Print YAML that can be pasted into `gateway.routes`.
        #[arg(long)]
        yaml: bool,
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
        Some(Command::Routes { yaml }) => {
            print!("{}", render_routes(&config, yaml));
            0
        }
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

/// Renders the route table for people, or as YAML for `gateway.routes`.
pub fn render_routes(config: &Config, yaml: bool) -> String {
    let mut out = String::new();
    let routes = config.gateway.routes.routes();
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
        out.push_str(&format!("{:<width$}  UPSTREAM\n", "SNI"));
        for r in routes {
            out.push_str(&format!("{:<width$}  {}", r.label, r.upstream));
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
        let mut service =
            Service::new("admin".to_owned(), AdminApp::new(routes, readiness.clone()));
        service.add_tcp(&addr.to_string());
        server.add_service(service);
    }
    let probe = ListenerProbe::new(
        gateway.listeners.iter().map(|l| l.address).collect(),
        readiness,
    );
    server.add_service(background_service("readiness probe", probe));
    log::info!(
        "snigate {} starting: {} listeners, {} routes",
        env!("CARGO_PKG_VERSION"),
        gateway.listeners.len(),
        gateway.routes.len()
    );
    server.run_forever()
}
