//! Pools at run time: each route with `servers:` gets a [`PoolRt`], built on
//! `pingora-load-balancing` for the backend set, the weighted round robin, the consistent
//! hash and the shared health registry. What the crate lacks is ours, each for a reason:
//! - least connections: the crate's selection has a TODO for it, and it needs our per-server
//!   open counts;
//! - backups and panic routing: the crate knows one flat set of backends;
//! - per-server `max_connections`: the crate counts no connections;
//! - names resolved by DNS: the crate's `Backend` takes an `ip:port` only, so
//!   [`Resolver`] is a discovery that resolves each name when the pool is updated;
//! - passive checks: see [`super::health`].
//!
//! The selection rules are written down and tested in `snigate_core::pool`.

use super::health::{check_key, CheckKey, Checker, ServerHealth, State};
use super::{connect, ConnectError, Connected, LoopGuard};
use crate::metrics;
use async_trait::async_trait;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::selection::{Consistent, RoundRobin};
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
use prometheus::IntGauge;
use snigate_core::names::{ip_literal, SniPattern, Upstream, UpstreamPort};
use snigate_core::pool::HealthCheck;
use snigate_core::pool::{self, Balance, Candidate, Pool, Tier};
use snigate_core::routes::{Route, RouteKind, RouteTable};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long resolved server names are kept before the pool looks them up again.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(30);

/// How long one lookup of a server's name may take: a hung resolver must not hold up the
/// checks, which the same loop schedules.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The name a `tls` check sends for a route: its own name, or for `*.suffix`,
/// `health-check.suffix` (a name the wildcard covers).
pub fn check_sni(pattern: &SniPattern) -> String {
    match pattern {
        SniPattern::Exact(n) => n.to_string(),
        SniPattern::Wildcard(suffix) => format!("health-check.{suffix}"),
    }
}

/// Resolves the pool's servers into backends; the backend's extension holds the server's
/// index. A name that does not resolve is left out until it does.
struct Resolver {
    /// Host, port, weight and index in the pool, for the servers of one tier.
    servers: Vec<(String, u16, usize, usize)>,
}

#[async_trait]
impl ServiceDiscovery for Resolver {
    async fn discover(&self) -> pingora_error::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let mut set = BTreeSet::new();
        for (host, port, weight, i) in &self.servers {
            let addr = match ip_literal(host) {
                Some(ip) => Some(SocketAddr::new(ip, *port)),
                None => {
                    let lookup = tokio::net::lookup_host((host.as_str(), *port));
                    match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                        Ok(Ok(mut addrs)) => addrs.next(),
                        Ok(Err(e)) => {
                            log::warn!("pool server {host}:{port} does not resolve: {e}");
                            None
                        }
                        Err(_) => {
                            log::warn!(
                                "pool server {host}:{port} did not resolve within {RESOLVE_TIMEOUT:?}"
                            );
                            None
                        }
                    }
                }
            };
            if let Some(addr) = addr {
                let mut b = Backend {
                    addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(addr),
                    weight: *weight,
                    ext: Default::default(),
                };
                b.ext.insert(*i);
                set.insert(b);
            }
        }
        // The weighted selection needs some weight; weight-0 servers then share equally.
        if set.iter().all(|b| b.weight == 0) {
            set = set
                .into_iter()
                .map(|mut b| {
                    b.weight = 1;
                    b
                })
                .collect();
        }
        Ok((set, HashMap::new()))
    }
}

/// The crate's load balancer, with the selection the pool's balance asks for.
enum Lb {
    RoundRobin(LoadBalancer<RoundRobin>),
    Hash(LoadBalancer<Consistent>),
}

impl Lb {
    fn backends(&self) -> &Backends {
        match self {
            Lb::RoundRobin(lb) => lb.backends(),
            Lb::Hash(lb) => lb.backends(),
        }
    }

    async fn update(&self) {
        let r = match self {
            Lb::RoundRobin(lb) => lb.update().await,
            Lb::Hash(lb) => lb.update().await,
        };
        if let Err(e) = r {
            log::warn!("pool update failed: {e}");
        }
    }

    fn select(&self, key: &[u8], accept: impl Fn(usize) -> bool) -> Option<usize> {
        let index = |b: &Backend| b.ext.get::<usize>().copied();
        let ok = |b: &Backend, _healthy: bool| index(b).is_some_and(&accept);
        let chosen = match self {
            Lb::RoundRobin(lb) => lb.select_with(key, 256, ok),
            Lb::Hash(lb) => lb.select_with(key, 256, ok),
        };
        chosen.as_ref().and_then(index)
    }
}

/// One server of a pool at run time.
pub struct PoolServer {
    /// As configured.
    pub spec: pool::Server,
    /// `host:port`, as in logs and metrics.
    pub label: String,
    /// The same, shared with each connection's lease.
    shared_label: Arc<str>,
    /// Where a connect goes.
    upstream: Upstream,
    /// Its backend in the crate's set and its health: known at once for an IP address; a
    /// name gets them each time it resolves (see [`PoolRt::link_names`]).
    link: arc_swap::ArcSwap<Link>,
    /// This route's connections open to it now.
    pub open: Arc<AtomicUsize>,
    gauge: IntGauge,
    up_gauge: IntGauge,
}

/// A server's backend, once its address is known, and its health under the pool's check
/// (shared with every pool that checks that address so).
struct Link {
    backend: Option<Backend>,
    health: Arc<ServerHealth>,
}

impl PoolServer {
    /// Its health now.
    pub fn health(&self) -> Arc<ServerHealth> {
        self.link.load().health.clone()
    }
}

/// A route's pool at run time.
pub struct PoolRt {
    /// The pool as configured.
    pub spec: Arc<Pool>,
    /// The route's label.
    pub route: Arc<str>,
    /// The servers, in the order written.
    pub servers: Vec<PoolServer>,
    /// The primary servers, and the backups: separate sets, so that the weighted round
    /// robin spreads over the tier in use only.
    primary: Lb,
    backup: Option<Lb>,
    /// The check watching the servers, if any.
    pub checker: Option<Arc<Checker>>,
    resolved: Mutex<Option<Instant>>,
}

/// A connection's hold on a server: counted open until dropped.
#[derive(Debug)]
pub struct Lease {
    open: Arc<AtomicUsize>,
    gauge: IntGauge,
    /// The server's `host:port`.
    pub server: Arc<str>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

/// What a pool shows of one server.
pub struct ServerView {
    /// `host:port`.
    pub server: String,
    /// Its state.
    pub state: State,
    /// A backup server.
    pub backup: bool,
    /// Its weight.
    pub weight: u32,
    /// Open connections from this route.
    pub open: usize,
    /// Failed connects.
    pub failures: u64,
    /// The last check: passed, latency, unix ms, error.
    pub last_check: Option<(bool, Duration, u64, String)>,
    /// Unix ms of the last state change.
    pub last_change_ms: u64,
}

impl PoolRt {
    fn registry_up(&self, i: usize) -> bool {
        let s = &self.servers[i];
        if self.checker.is_none() {
            return true;
        }
        let lb = match (s.spec.backup, &self.backup) {
            (true, Some(lb)) => lb,
            _ => &self.primary,
        };
        match &s.link.load().backend {
            Some(b) => lb.backends().ready(b),
            // Not resolved yet: connecting will say.
            None => true,
        }
    }

    fn up(&self, i: usize) -> bool {
        self.registry_up(i) && self.servers[i].link.load().health.passively_up()
    }

    /// After the names resolved: each named server's backend, and its health under the
    /// check of its new address.
    fn link_names(&self) {
        for (i, s) in self.servers.iter().enumerate() {
            if ip_literal(&s.spec.host).is_some() {
                continue;
            }
            let lb = match (s.spec.backup, &self.backup) {
                (true, Some(lb)) => lb,
                _ => &self.primary,
            };
            let backends = lb.backends().get_backend();
            let Some(b) = backends.iter().find(|b| b.ext.get::<usize>() == Some(&i)) else {
                continue;
            };
            let current = s.link.load();
            if current.backend.as_ref().is_some_and(|c| c.addr == b.addr) {
                continue;
            }
            let health = match (&self.checker, b.addr.as_inet()) {
                (Some(c), Some(a)) => c.state(*a),
                _ => current.health.clone(),
            };
            s.link.store(Arc::new(Link {
                backend: Some(b.clone()),
                health,
            }));
        }
    }

    /// Every server's state, in the order written.
    pub fn view(&self) -> Vec<ServerView> {
        (0..self.servers.len())
            .map(|i| {
                let s = &self.servers[i];
                let health = s.health();
                ServerView {
                    server: s.label.clone(),
                    state: health.state(self.registry_up(i), s.spec.backup),
                    backup: s.spec.backup,
                    weight: s.spec.weight,
                    open: s.open.load(Ordering::Relaxed),
                    failures: health.failures(),
                    last_check: health.last_check(),
                    last_change_ms: health.last_change_ms(),
                }
            })
            .collect()
    }

    fn candidates(&self, tried: &[bool]) -> Vec<Candidate> {
        self.servers
            .iter()
            .enumerate()
            .map(|(i, s)| Candidate {
                up: self.up(i),
                open: s.open.load(Ordering::Acquire),
                max: s.spec.max_connections,
                weight: s.spec.weight,
                backup: s.spec.backup,
                tried: tried[i],
            })
            .collect()
    }

    /// The next server to try, or why there is none (true: every server that is up is
    /// full). When the tier in use has no eligible server left, the next tier is tried:
    /// primaries, then backups, then every server (panic routing).
    fn pick(&self, client: Option<IpAddr>, tried: &[bool]) -> Result<(usize, Tier), bool> {
        let cands = self.candidates(tried);
        let first = pool::tier(&cands);
        let tiers: &[Tier] = match first {
            Tier::Primary => &[Tier::Primary, Tier::Backup, Tier::Panic],
            Tier::Backup => &[Tier::Backup, Tier::Panic],
            Tier::Panic => &[Tier::Panic],
        };
        if pool::all_full(&cands, first) {
            return Err(true);
        }
        for &tier in tiers {
            if let Some(i) = self.pick_in(&cands, tier, client) {
                return Ok((i, tier));
            }
        }
        Err(false)
    }

    fn pick_in(&self, cands: &[Candidate], tier: Tier, client: Option<IpAddr>) -> Option<usize> {
        match (tier, self.spec.balance) {
            (Tier::Panic, _) => pool::next_in_order(cands),
            (_, Balance::LeastConnections) => pool::least_connections(cands, tier),
            (_, balance) => {
                let key = match (balance, client) {
                    (Balance::SourceHash, Some(IpAddr::V4(ip))) => ip.octets().to_vec(),
                    (Balance::SourceHash, Some(IpAddr::V6(ip))) => ip.octets().to_vec(),
                    _ => Vec::new(),
                };
                let ok = |i: usize| {
                    cands
                        .get(i)
                        .is_some_and(|c| pool::in_tier(c, tier) && c.eligible())
                };
                let lb = match (tier, &self.backup) {
                    (Tier::Backup, Some(lb)) => lb,
                    _ => &self.primary,
                };
                lb.select(&key, ok)
                    // Servers not resolved yet, or beyond the selection's reach.
                    .or_else(|| pool::least_connections(cands, tier))
            }
        }
    }

    /// Connects to a server of the pool: the one the balance picks, then, on a failed
    /// connect, up to `retries` others, each attempt under `timeout`.
    pub async fn connect(
        &self,
        client: Option<IpAddr>,
        timeout: Duration,
        guard: &LoopGuard,
    ) -> Result<(Connected, Lease), ConnectError> {
        let started = Instant::now();
        let mut tried = vec![false; self.servers.len()];
        let mut last: Option<ConnectError> = None;
        for _ in 0..=self.spec.retries {
            let (i, tier) = match self.pick(client, &tried) {
                Ok(p) => p,
                Err(true) if last.is_none() => {
                    return Err(ConnectError::PoolFull {
                        servers: self.servers.len(),
                    })
                }
                Err(_) => break,
            };
            tried[i] = true;
            let s = &self.servers[i];
            if tier == Tier::Panic {
                metrics::POOL_PANIC.with_label_values(&[&*self.route]).inc();
            }
            s.open.fetch_add(1, Ordering::AcqRel);
            s.gauge.inc();
            let lease = Lease {
                open: s.open.clone(),
                gauge: s.gauge.clone(),
                server: s.shared_label.clone(),
            };
            match connect(&s.upstream, None, s.spec.port, timeout, guard).await {
                Ok(mut c) => {
                    s.health().connect_ok();
                    c.elapsed = started.elapsed();
                    return Ok((c, lease));
                }
                Err(e @ ConnectError::Loop { .. }) => return Err(e),
                Err(e) => {
                    drop(lease);
                    s.health().connect_failed(&s.label, &e.to_string());
                    metrics::UPSTREAM_FAILURES
                        .with_label_values(&[&*self.route, &s.label])
                        .inc();
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(ConnectError::Connect {
            target: self.route.to_string(),
            reason: "no server of the pool could be tried".into(),
        }))
    }

    /// Refreshes the `snigate_upstream_up` series of this pool.
    fn publish(&self) {
        for (i, s) in self.servers.iter().enumerate() {
            s.up_gauge.set(i64::from(self.up(i)));
        }
    }

    async fn resolve_if_due(&self) {
        let due = {
            let mut at = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
            let due = at.is_none_or(|t| t.elapsed() >= RESOLVE_EVERY);
            if due {
                *at = Some(Instant::now());
            }
            due
        };
        if due {
            self.primary.update().await;
            if let Some(b) = &self.backup {
                b.update().await;
            }
            self.link_names();
        }
    }
}

/// Open connections by route label and server address.
type OpenCounts = HashMap<(Arc<str>, String), Arc<AtomicUsize>>;

/// Every pool of the live table, and the checks they share.
#[derive(Default)]
pub struct Pools {
    live: arc_swap::ArcSwap<HashMap<Arc<str>, Arc<PoolRt>>>,
    /// The check each discovered broker gets (`gateway.health_check`).
    broker_check: Mutex<Option<HealthCheck>>,
    checkers: Mutex<HashMap<CheckKey, Arc<Checker>>>,
    /// Open counts by route and server, kept across rebuilds of a pool.
    open: Mutex<OpenCounts>,
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pools")
            .field("pools", &self.live.load().len())
            .finish()
    }
}

impl Pools {
    /// The pool of the route labelled `label`, if it has one.
    pub fn get(&self, label: &str) -> Option<Arc<PoolRt>> {
        self.live.load().get(label).cloned()
    }

    /// Every pool, by route label.
    pub fn all(&self) -> Arc<HashMap<Arc<str>, Arc<PoolRt>>> {
        self.live.load_full()
    }

    /// Sets the check of discovered brokers: each broker route becomes a pool of its one
    /// broker, checked so, so that the gateway sees a broker it cannot reach before its
    /// clients do. A broker is never balanced across brokers.
    pub fn check_brokers(&self, check: Option<HealthCheck>) {
        *self.broker_check.lock().unwrap_or_else(|p| p.into_inner()) = check;
    }

    /// The pool a discovered broker route gets: its one broker, with the brokers' check.
    fn broker_pool(&self, route: &Route) -> Option<Arc<Pool>> {
        if route.kind != RouteKind::Broker {
            return None;
        }
        let check = (*self.broker_check.lock().unwrap_or_else(|p| p.into_inner()))?;
        let (Some(host), UpstreamPort::Fixed(port)) =
            (route.upstream.host_for(None), route.upstream.port)
        else {
            return None;
        };
        Some(Arc::new(Pool {
            servers: vec![pool::Server {
                host: host.to_owned(),
                port,
                weight: 1,
                max_connections: None,
                backup: false,
            }],
            balance: Balance::RoundRobin,
            retries: 0,
            health_check: Some(check),
        }))
    }

    /// Builds the pools of `table`'s routes. A pool whose route and settings are
    /// unchanged is kept as it is; a changed one is rebuilt, and its servers that stay
    /// keep their health (through the shared checks) and their open counts.
    pub fn reconcile(&self, table: &RouteTable) {
        let old = self.live.load_full();
        let mut next: HashMap<Arc<str>, Arc<PoolRt>> = HashMap::new();
        for route in table.iter() {
            let broker = self.broker_pool(route);
            let Some(spec) = route.pool.as_ref().or(broker.as_ref()) else {
                continue;
            };
            match old.get(&route.label) {
                Some(p) if p.spec == *spec => {
                    next.insert(route.label.clone(), p.clone());
                }
                _ => {
                    next.insert(route.label.clone(), Arc::new(self.build(route, spec)));
                }
            }
        }
        self.live.store(Arc::new(next));
        drop(old);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, n| Arc::strong_count(n) > 1 || n.load(Ordering::Relaxed) > 0);
    }

    fn build(&self, route: &Route, spec: &Arc<Pool>) -> PoolRt {
        let checker = spec.health_check.map(|hc| {
            let key = check_key(hc, &check_sni(&route.pattern));
            let mut checkers = self.checkers.lock().unwrap_or_else(|p| p.into_inner());
            checkers
                .entry(key.clone())
                .or_insert_with(|| Checker::new(key))
                .clone()
        });
        let tier_lb = |backup: bool| -> Option<Lb> {
            let servers: Vec<_> = spec
                .servers
                .iter()
                .enumerate()
                .filter(|(_, s)| s.backup == backup)
                .map(|(i, s)| (s.host.clone(), s.port, s.weight as usize, i))
                .collect();
            if servers.is_empty() {
                return None;
            }
            let resolver = Box::new(Resolver { servers });
            let backends = match &checker {
                Some(c) => Backends::new_with_health_registry(resolver, c.registry.clone()),
                None => Backends::new(resolver),
            };
            Some(match spec.balance {
                Balance::SourceHash => Lb::Hash(LoadBalancer::from_backends(backends)),
                _ => Lb::RoundRobin(LoadBalancer::from_backends(backends)),
            })
        };
        let primary = tier_lb(false).unwrap_or_else(|| {
            Lb::RoundRobin(LoadBalancer::from_backends(Backends::new(Box::new(
                Resolver {
                    servers: Vec::new(),
                },
            ))))
        });
        let backup = tier_lb(true);
        let all_ips = spec.servers.iter().all(|s| ip_literal(&s.host).is_some());
        let mut resolved = None;
        if all_ips {
            // Resolving IP literals never waits.
            use futures_now::now_or_never;
            let backup_done = backup.as_ref().is_none_or(|b| now_or_never(b.update()));
            if now_or_never(primary.update()) && backup_done {
                resolved = Some(Instant::now());
            }
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let servers = spec
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let label = s.address();
                let addr = ip_literal(&s.host).map(|ip| SocketAddr::new(ip, s.port));
                let health = match (&checker, addr) {
                    (Some(c), Some(a)) => c.state(a),
                    _ => ServerHealth::unchecked(),
                };
                let count = open
                    .entry((route.label.clone(), label.clone()))
                    .or_default()
                    .clone();
                // As the resolver gives it (a tier of weight 0 only is weighed 1 each).
                let tier_weighs = spec
                    .servers
                    .iter()
                    .any(|o| o.backup == s.backup && o.weight > 0);
                let weight = if tier_weighs { s.weight as usize } else { 1 };
                let backend = addr.map(|a| {
                    let mut b = Backend {
                        addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(a),
                        weight,
                        ext: Default::default(),
                    };
                    b.ext.insert(i);
                    b
                });
                PoolServer {
                    shared_label: Arc::from(label.as_str()),
                    upstream: Upstream::fixed(s.host.clone(), s.port),
                    link: arc_swap::ArcSwap::from_pointee(Link { backend, health }),
                    gauge: metrics::UPSTREAM_ACTIVE_GAUGE
                        .with_label_values(&[&*route.label, &label]),
                    up_gauge: metrics::UPSTREAM_UP_GAUGE
                        .with_label_values(&[&*route.label, &label]),
                    spec: s.clone(),
                    label,
                    open: count,
                }
            })
            .collect();
        PoolRt {
            spec: spec.clone(),
            route: route.label.clone(),
            servers,
            primary,
            backup,
            checker,
            resolved: Mutex::new(resolved),
        }
    }

    /// Runs the checks, each at its interval, and keeps names resolved and the
    /// `snigate_upstream_up` series current, until the process ends.
    pub async fn run(self: Arc<Self>) {
        let mut due: HashMap<CheckKey, Instant> = HashMap::new();
        let mut running: HashMap<CheckKey, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let pools = self.all();
            for p in pools.values() {
                if !p.resolved.lock().map(|r| r.is_some()).unwrap_or(true)
                    || p.servers.iter().any(|s| ip_literal(&s.spec.host).is_none())
                {
                    p.resolve_if_due().await;
                }
            }
            let checkers: Vec<Arc<Checker>> = {
                let mut all = self.checkers.lock().unwrap_or_else(|p| p.into_inner());
                all.retain(|_, c| !c.unused() || Arc::strong_count(c) > 1);
                all.values().cloned().collect()
            };
            let now = Instant::now();
            running.retain(|_, h| !h.is_finished());
            for c in checkers {
                let at = due.entry(c.key.clone()).or_insert(now);
                if *at > now || running.contains_key(&c.key) {
                    continue;
                }
                *at = now + c.key.spec.interval;
                let key = c.key.clone();
                running.insert(
                    key,
                    tokio::spawn(async move {
                        c.pass().await;
                        c.prune();
                    }),
                );
            }
            for p in pools.values() {
                p.publish();
            }
        }
    }
}

/// Polls a future once, for futures known not to wait (an update of IP literals).
mod futures_now {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// True when `f` finished on its first poll.
    pub fn now_or_never<F: Future<Output = ()>>(f: F) -> bool {
        let mut f = pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        matches!(f.as_mut().poll(&mut cx), Poll::Ready(()))
    }
}

/// The pools' checks as a Pingora background service of the worker.
pub struct PoolChecks(pub Arc<Pools>);

#[async_trait]
impl pingora_core::services::background::BackgroundService for PoolChecks {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        tokio::select! {
            _ = self.0.clone().run() => {}
            _ = shutdown.changed() => {}
        }
    }
}
