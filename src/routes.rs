//! The live route table, swapped atomically.
//!
//! Each new connection takes a snapshot ([`RouteStore::load`]) and keeps it for its whole
//! life, so a swap never touches connections that are already routed.

use arc_swap::ArcSwap;
use snigate_core::routes::RouteTable;
use std::sync::Arc;

/// Shared handle to the current [`RouteTable`].
#[derive(Debug)]
pub struct RouteStore {
    current: ArcSwap<RouteTable>,
}

impl RouteStore {
    /// Starts with `table`.
    pub fn new(table: RouteTable) -> Self {
        RouteStore {
            current: ArcSwap::from_pointee(table),
        }
    }

    /// The table new connections use now.
    pub fn load(&self) -> Arc<RouteTable> {
        self.current.load_full()
    }

    /// Replaces the table for every later connection.
    pub fn swap(&self, table: RouteTable) {
        self.current.store(Arc::new(table));
    }
}
