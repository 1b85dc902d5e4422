//! Broker discovery: routes derived from each cluster's own metadata.
//!
//! - [`state`]: what is known about one cluster, and the removal grace rule.
//! - [`merge`]: combining discovered routes with the static ones, and the coverage check.
//! - [`metadata`]: fetching the broker list with librdkafka.
//! - [`statefile`]: saving and loading the last good routes.
//! - [`hub`]: every cluster's routes in one place; publishes the merged table.
//! - [`service`]: the per-cluster Pingora background service (refresh, backoff, coverage).

pub mod hub;
pub mod merge;
pub mod metadata;
pub mod service;
pub mod state;
pub mod statefile;
