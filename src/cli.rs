//! The command line. `snigate -c FILE` runs the gateway (the stable process, which runs a
//! worker under it); `-d` runs it in the background, and `-t` tests the whole config and
//! exits. `snigate upgrade -c FILE` upgrades the running gateway: its stable process
//! re-executes itself, then replaces its worker.

use crate::commands;
use crate::config::Config;
use clap::{Parser, Subcommand};
use std::net::IpAddr;

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
    /// Used by snigate itself: a new worker takes the listening sockets over from the
    /// running one. To upgrade a running gateway, use `snigate upgrade`.
    #[arg(short, long)]
    pub upgrade: bool,
    /// Test the config and exit.
    #[arg(short, long)]
    pub test: bool,
    /// Run as a worker under the stable process (started by snigate itself).
    #[arg(long, hide = true)]
    pub worker: bool,
    /// Used by snigate itself: a worker that replaces a serving one gets every cluster's
    /// routes before it takes the sockets.
    #[arg(long, hide = true)]
    pub prime: bool,
    /// Used by snigate itself: the stable process after re-executing itself, reading what
    /// it carried across from this descriptor (with -t: only check that it can).
    #[arg(long, hide = true, value_name = "FD")]
    pub resume: Option<std::os::fd::RawFd>,
    /// A subcommand; without one, snigate runs the gateway.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Operator subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upgrade the running gateway (found through the config's pid_file) to the snigate
    /// binary now installed at its path, with no connection refused: its stable process
    /// re-executes itself (same pid), then replaces its worker. Checks the config first; on
    /// any failure the running gateway keeps serving, untouched.
    Upgrade {
        /// Upgrade to this binary instead of the one at the running snigate's path.
        #[arg(long)]
        binary: Option<std::path::PathBuf>,
        /// Replace only the worker; the stable process keeps running its binary.
        #[arg(long)]
        worker_only: bool,
    },
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
        gateway_address: IpAddr,
        /// Fetch every cluster's metadata now instead of reading the state file.
        #[arg(long)]
        discover: bool,
    },
}

/// Runs what the options ask for and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    if let (Some(fd), false) = (cli.resume, cli.test) {
        // The stable process, re-executed: everything it needs was carried across.
        return crate::supervisor::resume(fd);
    }
    let Some(path) = cli.conf.clone() else {
        eprintln!(
            "snigate: no config file given; run `snigate -c FILE` (conf/prod.yaml is an example)"
        );
        return 2;
    };
    let conf = std::path::absolute(&path).unwrap_or_else(|_| path.clone().into());
    // Printing routes from the state file contacts no cluster: no credentials needed.
    let reads_only = matches!(
        cli.command,
        Some(
            Command::Routes {
                discover: false,
                ..
            } | Command::Hosts {
                discover: false,
                ..
            }
        )
    );
    let loaded = if reads_only {
        Config::load_without_secrets(&path)
    } else if cli.worker && !cli.test && cli.command.is_none() {
        Config::load_reusable(&path)
    } else {
        Config::load(&path)
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("snigate: config {path}: {e}");
            return 1;
        }
    };
    let result = match cli.command {
        Some(Command::Routes { yaml, discover }) => commands::routes(&config, yaml, discover),
        Some(Command::Hosts {
            gateway_address,
            discover,
        }) => commands::hosts(&config, gateway_address, discover),
        Some(Command::Upgrade {
            binary,
            worker_only,
        }) => {
            let binary = binary.map(|b| std::path::absolute(&b).unwrap_or(b));
            return crate::supervisor::upgrade(&config, conf, binary, worker_only);
        }
        None if cli.test => {
            if let Some(fd) = cli.resume {
                // A re-exec's check: the hand-off must be readable too.
                if let Err(e) = crate::supervisor::handoff::Handoff::read_fd(fd) {
                    eprintln!("snigate: {e}");
                    return 1;
                }
            }
            for w in &config.gateway.warnings {
                eprintln!("snigate: warning: config {path}: {w}");
            }
            println!(
                "snigate: config {path} is valid: {} listeners, {} routes, {} discovered clusters",
                config.gateway.listeners.len(),
                config.gateway.routes.len(),
                config.gateway.clusters.len()
            );
            // The process exits now: freeing a large table one route at a time is wasted.
            std::mem::forget(config);
            Ok(())
        }
        None if cli.worker => {
            let start = crate::worker::Start {
                receive_sockets: cli.upgrade,
                prime: cli.prime,
            };
            return crate::worker::run(config, conf, start);
        }
        None if cli.upgrade => {
            eprintln!("snigate: -u is how snigate starts a new worker under its stable process; to upgrade a running gateway, run `snigate upgrade -c {path}`");
            return 2;
        }
        None => {
            // Pingora's `daemon: true` in the file means what `-d` means.
            let daemon = cli.daemon || config.server.daemon;
            return crate::supervisor::run(config, conf, daemon);
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("snigate: {e}");
            1
        }
    }
}
