//! Broker discovery's I/O: routes derived from each cluster's own metadata. The rules
//! (grace, merge, backoff, the state file's shape) are in `snigate_core::discovery`.
//!
//! - [`source`]: the [`source::BrokerSource`] seam and its errors.
//! - [`kafka`]: the source that asks the cluster with librdkafka.
//! - [`hub`]: every cluster's routes in one place; publishes the merged table and saves
//!   the state file.
//! - [`service`]: the per-cluster refresh loop, run as a Pingora background service.

pub mod hub;
pub mod kafka;
pub mod service;
pub mod source;
pub mod tunnel;
