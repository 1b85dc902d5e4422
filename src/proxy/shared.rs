//! What every listener's connections share: the live route table, the settings a reload
//! may change, the connection count, the drain schedule, and the loop guard.

use crate::metrics;
use crate::routes::RouteStore;
use crate::upstream::LoopGuard;
use crate::worker::drain::Drain;
use arc_swap::ArcSwap;
use snigate_core::config::{Limits, ListenerConfig};
use snigate_core::names::SniPattern;
use snigate_core::routes::Route;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The settings a config reload may change, read once per connection.
#[derive(Debug)]
struct Live {
    limits: Limits,
    /// Each listener's fallback, as a route labelled `fallback`.
    fallbacks: HashMap<String, Arc<Route>>,
}

impl Live {
    fn new(limits: Limits, listeners: &[ListenerConfig]) -> Self {
        let fallbacks = listeners
            .iter()
            .filter_map(|l| {
                let upstream = l.fallback.clone()?;
                let mut route = Route::new(SniPattern::Exact("".into()), upstream);
                route.label = Arc::from(metrics::FALLBACK_LABEL);
                route.send_proxy = l.fallback_send_proxy;
                Some((l.name.clone(), Arc::new(route)))
            })
            .collect();
        Live { limits, fallbacks }
    }
}

/// Settings and state shared by every listener.
#[derive(Debug)]
pub struct Shared {
    /// The live route table.
    pub routes: Arc<RouteStore>,
    /// The drain schedule for when the worker stops.
    pub drain: Drain,
    /// Refuses upstreams that are this gateway's own listeners.
    pub loop_guard: LoopGuard,
    /// The gateway's `egress_proxy`, for routes that do not set their own.
    pub egress: Option<Arc<snigate_core::egress::EgressProxy>>,
    /// SNIs whose loop has been logged (once each).
    loops_logged: Mutex<HashSet<String>>,
    live: ArcSwap<Live>,
    pub(super) active: AtomicUsize,
}

impl Shared {
    /// The same, with the gateway's egress proxy.
    pub fn with_egress(mut self, proxy: Option<Arc<snigate_core::egress::EgressProxy>>) -> Self {
        if let Some(p) = &proxy {
            metrics::init_egress_proxy(&p.label);
        }
        self.egress = proxy;
        self
    }

    /// Builds the shared state; `grace` is how long a drain may take.
    pub fn new(
        limits: Limits,
        listeners: &[ListenerConfig],
        routes: Arc<RouteStore>,
        grace: Duration,
    ) -> Self {
        let own = listeners.iter().map(|l| l.address).collect();
        metrics::MAX_CONNECTIONS_GAUGE.set(limits.max_connections as i64);
        Shared {
            routes,
            drain: Drain::new(grace),
            loop_guard: LoopGuard::new(own),
            egress: None,
            loops_logged: Mutex::default(),
            live: ArcSwap::from_pointee(Live::new(limits, listeners)),
            active: AtomicUsize::new(0),
        }
    }

    /// Connections open now, across listeners.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// The limits new connections get.
    pub fn limits(&self) -> Limits {
        self.live.load().limits
    }

    /// Replaces the limits and the listeners' fallbacks for new connections.
    pub fn set_live(&self, limits: Limits, listeners: &[ListenerConfig]) {
        metrics::MAX_CONNECTIONS_GAUGE.set(limits.max_connections as i64);
        self.live.store(Arc::new(Live::new(limits, listeners)));
    }

    /// The fallback route of `listener`, if it has one.
    pub fn fallback(&self, listener: &str) -> Option<Arc<Route>> {
        self.live.load().fallbacks.get(listener).cloned()
    }

    /// True the first time a loop is seen for `sni`: it is logged once.
    pub fn first_loop(&self, sni: &str) -> bool {
        let mut logged = self.loops_logged.lock().unwrap_or_else(|p| p.into_inner());
        logged.insert(sni.to_owned())
    }
}
