//! The live route table, swapped atomically.
//!
//! Each new connection takes a snapshot ([`RouteStore::load`]) and keeps it for its whole
//! life, so a swap never touches connections that are already routed.

use crate::upstream::pool::Pools;
use arc_swap::ArcSwap;
use snigate_core::routes::RouteTable;
use std::sync::Arc;

/// Shared handle to the current [`RouteTable`], and the pools of its routes.
#[derive(Debug)]
pub struct RouteStore {
    current: ArcSwap<RouteTable>,
    /// The pools of the routes with `servers:`, rebuilt with each table.
    pub pools: Arc<Pools>,
}

impl RouteStore {
    /// Starts with `table`; discovered brokers are not checked.
    pub fn new(table: RouteTable) -> Self {
        RouteStore::with_broker_check(table, None)
    }

    /// Starts with `table`; each discovered broker gets `check` (see
    /// [`Pools::check_brokers`]).
    pub fn with_broker_check(
        table: RouteTable,
        check: Option<snigate_core::pool::HealthCheck>,
    ) -> Self {
        let pools = Arc::new(Pools::default());
        pools.check_brokers(check);
        pools.reconcile(&table);
        RouteStore {
            current: ArcSwap::from_pointee(table),
            pools,
        }
    }

    /// The table new connections use now.
    pub fn load(&self) -> Arc<RouteTable> {
        self.current.load_full()
    }

    /// Replaces the table for every later connection.
    pub fn swap(&self, table: RouteTable) {
        self.swap_arc(Arc::new(table));
    }

    /// As [`RouteStore::swap`], for a table already shared.
    pub fn swap_arc(&self, table: Arc<RouteTable>) {
        self.pools.reconcile(&table);
        self.current.store(table);
    }
}
