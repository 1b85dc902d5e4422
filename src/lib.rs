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
//! - [`supervisor`]: the stable process, its control socket, and upgrades.
//! - [`server`]: a worker: the Pingora server's services wired together.
//! - [`signals`]: a worker's signals (upgrade hand-over, stop, reload).
//! - [`reload`]: applying a changed config file in place.
//! - [`drain`]: closing connections spread over the grace period, then exiting.
//! - [`listener`]: the listening sockets and their accept loops, as one Pingora service.
//! - [`proxy`]: one connection's life, and its access log.
//! - [`peek`]: reading the ClientHello off a socket under one deadline and a byte cap.
//! - [`upstream`]: resolving and connecting to a route's upstream.
//! - [`relay`]: copying both ways with half-close, byte counts and an idle timeout.
//! - [`routes`]: the live route table, swapped atomically.
//! - [`discovery`]: the broker source, the refresh service, and the route hub.
//! - [`upgrade`]: handing over to a new process when discovered routes change.
//! - [`access_log`]: where access lines go, text or JSON, and flood thinning.
//! - [`admin`]: `/metrics`, `/health`, `/ready`, `/routes`.
//! - [`render`]: route tables as text, YAML and hosts lines.
//! - [`metrics`]: every metric name and definition.
//! - [`logging`]: the logger.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod access_log;
pub mod admin;
pub mod cli;
pub mod commands;
pub mod config;
pub mod discovery;
pub mod drain;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod peek;
pub mod proxy;
pub mod relay;
pub mod reload;
pub mod render;
pub mod routes;
pub mod server;
pub mod signals;
pub mod supervisor;
pub mod upgrade;
pub mod upstream;
