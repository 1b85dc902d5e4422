//! Routes: the pure lookup table and the store that swaps it atomically.

pub mod store;
pub mod table;

pub use store::RouteStore;
pub use table::{
    normalize_name, Route, RouteTable, SniPattern, Upstream, UpstreamHost, UpstreamPort,
};
