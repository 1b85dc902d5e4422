//! snigate's pure core: everything that decides, and nothing that waits. No sockets, no
//! async runtime, no clock of its own; the `snigate` crate is the I/O shell around it.
//!
//! Module map:
//! - [`clienthello`]: the incremental ClientHello parser (SNI, ALPN).
//! - [`names`]: every name rule: host names, normal form, SNI patterns, upstream
//!   templates, endpoints, listener names and addresses.
//! - [`routes`]: the route table and its matching rules.
//! - [`discovery`]: a cluster's discovered names, the removal grace, merging with the
//!   static routes, backoff, and the state file.
//! - [`config`]: the YAML file, `${ENV}` expansion, validation into typed values, errors.
//! - [`drain`]: when each open connection closes as a process stops.
//! - [`outcome`]: how a connection ended, and why a ClientHello was refused.
//! - [`pool`]: server pools as configured, and the rules that pick a server.
//! - [`probe`]: the `tls` health check's ClientHello, and reading the answer.
//! - [`proxy_protocol`]: PROXY protocol v1/v2 headers, read and written.
//! - [`cidr`]: address ranges for listeners' `allow` lists.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod cidr;
pub mod clienthello;
pub mod config;
pub mod discovery;
pub mod drain;
pub mod egress;
pub mod names;
pub mod outcome;
pub mod pool;
pub mod probe;
pub mod proxy_protocol;
pub mod routes;
