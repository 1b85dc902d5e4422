//! snigate: an SNI-routing TLS passthrough gateway for Kafka and HTTPS, built on Pingora.
//!
//! Module map:
//! - [`clienthello`]: the pure ClientHello parser (SNI, ALPN), no I/O.
//! - [`peek`]: reading the ClientHello off a socket under one deadline and a byte cap.
//! - [`routes`]: the route table (exact and wildcard SNI, precedence rules) and its
//!   atomically swapped store.
//! - [`config`]: the YAML file, `${ENV}` expansion, validation and its errors.
//! - [`upstream`]: resolving and connecting to a route's upstream.
//! - [`relay`]: copying both ways with half-close, byte counts and an idle timeout.
//! - [`proxy`]: the Pingora `ServerApp` that ties a connection's life together.
//! - [`admin`]: `/metrics`, `/health`, `/ready`, `/routes`.
//! - [`metrics`]: every metric name and definition.
//! - [`cli`]: the command line and server wiring.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin;
pub mod cli;
pub mod clienthello;
pub mod config;
pub mod discovery;
pub mod metrics;
pub mod peek;
pub mod proxy;
pub mod relay;
pub mod routes;
pub mod upstream;
