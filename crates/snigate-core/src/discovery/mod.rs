//! Broker discovery's rules, apart from any I/O.
//!
//! - [`state`]: what is known about one cluster, and the removal grace rule.
//! - [`merge`]: combining discovered routes with the static ones, and the coverage check.
//! - [`clusters`]: every cluster's routes and the table they make.
//! - [`refresh`]: the names one refresh yields, and the backoff after failures.
//! - [`statefile`]: saving and loading the last good routes.

pub mod clusters;
pub mod merge;
pub mod refresh;
pub mod state;
pub mod statefile;
