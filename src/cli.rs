//! The command line. `snigate -c FILE` runs the gateway. Pingora's flags keep their
//! meaning: `-d` daemonizes, `-u` takes the listening sockets over from a running
//! instance (graceful upgrade), and `-t` tests the whole config and exits.

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
        gateway_address: IpAddr,
        /// Fetch every cluster's metadata now instead of reading the state file.
        #[arg(long)]
        discover: bool,
    },
}

/// Runs what the options ask for and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
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
    let result = match cli.command {
        Some(Command::Routes { yaml, discover }) => commands::routes(&config, yaml, discover),
        Some(Command::Hosts {
            gateway_address,
            discover,
        }) => commands::hosts(&config, gateway_address, discover),
        None if cli.test => {
            println!(
                "snigate: config {path} is valid: {} listeners, {} routes",
                config.gateway.listeners.len(),
                config.gateway.routes.len()
            );
            Ok(())
        }
        None => return crate::server::run(config, cli.daemon, cli.upgrade),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("snigate: {e}");
            1
        }
    }
}
