//! snigate: an SNI-routing TLS passthrough gateway for Kafka and HTTPS, built on Pingora.
//!
//! This crate is the I/O shell around `snigate_core`, which holds every rule that can be
//! decided without a socket (the ClientHello parser, name rules, the route table, discovery
//! state, config validation).
//!
//! Module map:
//! - [`cli`]: the command line and what each command runs.
//! - [`commands`]: `snigate routes` and `snigate hosts`.
//! - [`config`]: loading the file, and checking Pingora's settings.
//! - [`supervisor`]: the stable process: its listening sockets, control socket, workers,
//!   upgrades and re-exec.
//! - [`worker`]: a worker: the Pingora server's services wired together, its signals,
//!   reloads, drain, and what it does when its stable process dies.
//! - [`process`]: signals, pidfds and descriptor flags, for both.
//! - [`listener`]: the listening sockets, their hand-over between processes, and their
//!   accept loops as one Pingora service.
//! - [`proxy`]: one connection's life, and its access log.
//! - [`peek`]: reading the ClientHello off a socket under one deadline and a byte cap.
//! - [`upstream`]: resolving and connecting to a route's upstream; server pools and their
//!   health checks.
//! - [`relay`]: copying both ways with half-close, byte counts and an idle timeout.
//! - [`routes`]: the live route table, swapped atomically.
//! - [`discovery`]: the broker source, the refresh service, and the route hub.
//! - [`access_log`]: where access lines go, text or JSON, and flood thinning.
//! - [`admin`]: `/metrics`, `/health`, `/ready`, `/routes`, and the status page.
//! - [`status`]: the status page's figures and HTML.
//! - [`render`]: route tables as text, YAML and hosts lines.
//! - [`metrics`]: every metric name and definition.
//! - [`logging`]: the logger.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

/// This build: the version and the commit it was built from (`VERSION COMMIT`), kept in
/// one place, which every report of the build reads.
pub static BUILD: &str = concat!(env!("CARGO_PKG_VERSION"), " ", env!("SNIGATE_COMMIT"));

/// The version and the commit of [`BUILD`].
pub fn build() -> (&'static str, &'static str) {
    BUILD.split_once(' ').unwrap_or((BUILD, "unknown"))
}

pub mod access_log;
pub mod admin;
pub mod cli;
pub mod commands;
pub mod config;
pub mod discovery;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod peek;
pub mod process;
pub mod proxy;
pub mod relay;
pub mod render;
pub mod routes;
pub mod status;
pub mod supervisor;
pub mod upstream;
pub mod worker;
