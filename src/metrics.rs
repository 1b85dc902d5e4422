//! Every metric snigate exports, in one place. Names are the constants below; the
//! README's metrics table lists the same. Series per listener, cluster and proxy are
//! created at zero when the gateway starts, so that dashboards see `0` rather than no
//! series. Series per route grow with traffic, not with the table: a route's appear when
//! it first carries a connection, and go when it leaves the table ([`forget_routes`]), so
//! that an idle table of any size costs nothing here.

use prometheus::IntCounter;
use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use snigate_core::outcome::{Outcome, RejectReason};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// Connections closed, by listener, route and outcome.
pub const CONNECTIONS_TOTAL: &str = "snigate_connections_total";
/// Connections open now, by listener.
pub const ACTIVE_CONNECTIONS: &str = "snigate_active_connections";
/// Bytes relayed, by listener and direction (`upstream` = client to upstream, `downstream` = back).
pub const BYTES_TOTAL: &str = "snigate_bytes_total";
/// ClientHellos refused, by listener and reason.
pub const CLIENTHELLO_REJECTS_TOTAL: &str = "snigate_clienthello_rejects_total";
/// ClientHello sizes in bytes.
pub const CLIENTHELLO_BYTES: &str = "snigate_clienthello_bytes";
/// Upstream TCP connect latency in seconds, by listener.
pub const UPSTREAM_CONNECT_SECONDS: &str = "snigate_upstream_connect_seconds";
/// Routes in the live table, by kind (`static`, `bootstrap`, `broker`, `rest`,
/// `schema_registry`).
pub const ROUTES: &str = "snigate_routes";
/// Brokers in a cluster's last good metadata, by cluster.
pub const CLUSTER_BROKERS: &str = "snigate_cluster_brokers";
/// Advertised brokers the live table cannot route, by cluster.
pub const CLUSTER_UNROUTABLE_BROKERS: &str = "snigate_cluster_unroutable_brokers";
/// Unix time of a cluster's last successful refresh, by cluster.
pub const CLUSTER_LAST_SUCCESS: &str = "snigate_cluster_last_success_timestamp_seconds";
/// Metadata refreshes, by cluster and outcome (`ok`, `failed`, `partial`).
pub const CLUSTER_REFRESHES_TOTAL: &str = "snigate_cluster_refreshes_total";

/// Bytes relayed, by route and direction.
pub const ROUTE_BYTES_TOTAL: &str = "snigate_route_bytes_total";
/// Discovered routes kept only for their removal grace, by cluster.
pub const CLUSTER_ROUTES_IN_GRACE: &str = "snigate_cluster_routes_in_grace";
/// Always 1, labelled with the version and the commit it was built from.
pub const BUILD_INFO: &str = "snigate_build_info";
/// Config reloads (SIGHUP), by outcome (`ok`, `failed`).
pub const CONFIG_RELOADS_TOTAL: &str = "snigate_config_reloads_total";

/// 1 when a pool's server may get new connections (up, going down, or an up backup), 0
/// when it is down or going up, by route and server.
pub const UPSTREAM_UP: &str = "snigate_upstream_up";
/// Active health check duration in seconds, by check type and result.
pub const HEALTH_CHECK_SECONDS: &str = "snigate_health_check_seconds";
/// A pool server's health changes, by server and new state (`up`, `down`).
pub const UPSTREAM_STATE_CHANGES_TOTAL: &str = "snigate_upstream_state_changes_total";
/// Failed connects to a pool's server, by route and server.
pub const UPSTREAM_FAILURES_TOTAL: &str = "snigate_upstream_failures_total";
/// Connections a pool sent to a server while no server was up (panic routing), by route.
pub const POOL_PANIC_TOTAL: &str = "snigate_pool_panic_connections_total";
/// Open connections to a pool's server, by route and server.
pub const UPSTREAM_ACTIVE: &str = "snigate_upstream_active_connections";

/// `gateway.max_connections`: the most connections open at once, across listeners.
pub const MAX_CONNECTIONS: &str = "snigate_max_connections";
/// Connections open now, by route.
pub const ROUTE_ACTIVE_CONNECTIONS: &str = "snigate_route_active_connections";
/// The latency of a route's last successful upstream connect, in seconds, by route.
pub const ROUTE_LAST_CONNECT_SECONDS: &str = "snigate_route_last_connect_seconds";

/// Workers that stopped accepting and still drain (after an upgrade or a stop).
pub const DRAINING_WORKERS: &str = "snigate_draining_workers";
/// Connections the draining workers still hold.
pub const DRAINING_CONNECTIONS: &str = "snigate_draining_connections";
/// Age of the oldest drain in progress, in seconds (0 when none).
pub const DRAIN_OLDEST_SECONDS: &str = "snigate_drain_oldest_seconds";
/// Connections held by drains past their own grace period.
pub const DRAIN_OVERDUE_CONNECTIONS: &str = "snigate_drain_overdue_connections";
/// `grace_period_seconds` of the serving worker.
pub const GRACE_PERIOD_SECONDS: &str = "snigate_grace_period_seconds";

/// Tunnels asked of an egress proxy, by proxy and result (`ok`, `auth_failed`, `refused`,
/// `bad_answer`, `timeout`, `unreachable`).
pub const EGRESS_PROXY_CONNECTIONS_TOTAL: &str = "snigate_egress_proxy_connections_total";
/// How long an egress proxy took to answer a tunnel request, in seconds, by proxy.
pub const EGRESS_PROXY_ANSWER_SECONDS: &str = "snigate_egress_proxy_answer_seconds";
/// Results of a tunnel request, as labelled in [`EGRESS_PROXY_CONNECTIONS_TOTAL`].
pub const EGRESS_RESULTS: [&str; 6] = [
    "ok",
    "auth_failed",
    "refused",
    "bad_answer",
    "timeout",
    "unreachable",
];

/// Outcomes of a metadata refresh, as labelled in [`CLUSTER_REFRESHES_TOTAL`].
pub const REFRESH_OUTCOMES: [&str; 3] = ["ok", "failed", "partial"];

/// The route label of connections that never chose a route.
pub const NO_ROUTE_LABEL: &str = "-";
/// The route label of connections sent to a listener's fallback.
pub const FALLBACK_LABEL: &str = "fallback";

/// The registry `/metrics` serves.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<T: prometheus::core::Collector + Clone + 'static>(metric: T) -> T {
    // Registration fails only for a duplicate name, which the constants above rule out.
    if let Err(e) = REGISTRY.register(Box::new(metric.clone())) {
        log::error!("metric registration failed: {e}");
    }
    metric
}

/// Metric definitions are constants, so a bad one is a programming error found at start-up.
#[allow(clippy::panic)]
fn defined<T>(metric: prometheus::Result<T>) -> T {
    match metric {
        Ok(m) => m,
        Err(e) => panic!("invalid metric definition: {e}"),
    }
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(defined(IntCounterVec::new(Opts::new(name, help), labels)))
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(defined(IntGaugeVec::new(Opts::new(name, help), labels)))
}

/// See [`CONNECTIONS_TOTAL`].
pub static CONNECTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        CONNECTIONS_TOTAL,
        "Connections closed, by listener, route and outcome.",
        &["listener", "route", "outcome"],
    )
});

/// See [`ACTIVE_CONNECTIONS`].
pub static ACTIVE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        ACTIVE_CONNECTIONS,
        "Connections open now, by listener.",
        &["listener"],
    )
});

/// See [`BYTES_TOTAL`].
pub static BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        BYTES_TOTAL,
        "Bytes relayed, by listener and direction (upstream: client to upstream; downstream: upstream to client).",
        &["listener", "direction"],
    )
});

/// See [`CLIENTHELLO_REJECTS_TOTAL`].
pub static REJECTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        CLIENTHELLO_REJECTS_TOTAL,
        "ClientHellos refused, by listener and reason.",
        &["listener", "reason"],
    )
});

/// See [`CLIENTHELLO_BYTES`].
pub static HELLO_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        CLIENTHELLO_BYTES,
        "Size of complete ClientHellos, in bytes.",
    )
    .buckets(vec![
        256.0, 512.0, 1024.0, 1500.0, 2048.0, 4096.0, 8192.0, 16384.0,
    ]);
    register(defined(Histogram::with_opts(opts)))
});

/// See [`UPSTREAM_CONNECT_SECONDS`].
pub static CONNECT_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    let buckets = exponential_buckets(0.0005, 2.0, 14).unwrap_or_default();
    let opts = HistogramOpts::new(
        UPSTREAM_CONNECT_SECONDS,
        "Upstream TCP connect latency in seconds, by listener.",
    )
    .buckets(buckets);
    register(defined(HistogramVec::new(opts, &["listener"])))
});

/// See [`UPSTREAM_UP`].
pub static UPSTREAM_UP_GAUGE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    let help = "1 when a pool's server may get new connections, by route and server.";
    register(defined(IntGaugeVec::new(
        Opts::new(UPSTREAM_UP, help),
        &["route", "server"],
    )))
});

/// See [`HEALTH_CHECK_SECONDS`].
pub static HEALTH_CHECK_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    let buckets = exponential_buckets(0.0005, 2.0, 14).unwrap_or_default();
    let opts = HistogramOpts::new(
        HEALTH_CHECK_SECONDS,
        "Active health check duration in seconds, by check type and result.",
    )
    .buckets(buckets);
    register(defined(HistogramVec::new(opts, &["type", "result"])))
});

/// See [`UPSTREAM_STATE_CHANGES_TOTAL`].
pub static STATE_CHANGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let help = "Health changes of pool servers, by server and new state.";
    register(defined(IntCounterVec::new(
        Opts::new(UPSTREAM_STATE_CHANGES_TOTAL, help),
        &["server", "state"],
    )))
});

/// See [`UPSTREAM_FAILURES_TOTAL`].
pub static UPSTREAM_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let help = "Failed connects to a pool's server, by route and server.";
    register(defined(IntCounterVec::new(
        Opts::new(UPSTREAM_FAILURES_TOTAL, help),
        &["route", "server"],
    )))
});

/// See [`POOL_PANIC_TOTAL`].
pub static POOL_PANIC: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let help = "Connections a pool sent while none of its servers was up, by route.";
    register(defined(IntCounterVec::new(
        Opts::new(POOL_PANIC_TOTAL, help),
        &["route"],
    )))
});

/// See [`UPSTREAM_ACTIVE`].
pub static UPSTREAM_ACTIVE_GAUGE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    let help = "Open connections to a pool's server, by route and server.";
    register(defined(IntGaugeVec::new(
        Opts::new(UPSTREAM_ACTIVE, help),
        &["route", "server"],
    )))
});

/// See [`MAX_CONNECTIONS`].
pub static MAX_CONNECTIONS_GAUGE: LazyLock<IntGauge> = LazyLock::new(|| {
    let help = "gateway.max_connections: the most connections open at once, across listeners.";
    register(defined(IntGauge::new(MAX_CONNECTIONS, help)))
});

/// See [`EGRESS_PROXY_CONNECTIONS_TOTAL`].
pub static EGRESS_PROXY_CONNECTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        EGRESS_PROXY_CONNECTIONS_TOTAL,
        "Tunnels asked of an egress proxy, by proxy and result.",
        &["proxy", "result"],
    )
});

/// See [`EGRESS_PROXY_ANSWER_SECONDS`].
pub static EGRESS_PROXY_ANSWER: LazyLock<HistogramVec> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        EGRESS_PROXY_ANSWER_SECONDS,
        "How long an egress proxy took to answer a tunnel request, in seconds.",
    )
    .buckets(defined(exponential_buckets(0.0005, 2.0, 16)));
    register(defined(HistogramVec::new(opts, &["proxy"])))
});

/// Creates a proxy's series at zero.
pub fn init_egress_proxy(label: &str) {
    for result in EGRESS_RESULTS {
        EGRESS_PROXY_CONNECTIONS.with_label_values(&[label, result]);
    }
    EGRESS_PROXY_ANSWER.with_label_values(&[label]);
}

/// See [`DRAINING_WORKERS`].
pub static DRAINING: LazyLock<IntGauge> = LazyLock::new(|| {
    let help = "Workers that stopped accepting and still drain (after an upgrade or a stop).";
    register(defined(IntGauge::new(DRAINING_WORKERS, help)))
});

/// See [`DRAINING_CONNECTIONS`].
pub static DRAINING_OPEN: LazyLock<IntGauge> = LazyLock::new(|| {
    let help = "Connections the draining workers still hold.";
    register(defined(IntGauge::new(DRAINING_CONNECTIONS, help)))
});

/// See [`DRAIN_OLDEST_SECONDS`].
pub static DRAIN_OLDEST: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    let help = "Age of the oldest drain in progress, in seconds (0 when none).";
    register(defined(prometheus::Gauge::new(DRAIN_OLDEST_SECONDS, help)))
});

/// See [`DRAIN_OVERDUE_CONNECTIONS`].
pub static DRAIN_OVERDUE: LazyLock<IntGauge> = LazyLock::new(|| {
    let help = "Connections held by drains past their own grace period.";
    register(defined(IntGauge::new(DRAIN_OVERDUE_CONNECTIONS, help)))
});

/// See [`GRACE_PERIOD_SECONDS`].
pub static GRACE_PERIOD: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    let help = "grace_period_seconds of the serving worker.";
    register(defined(prometheus::Gauge::new(GRACE_PERIOD_SECONDS, help)))
});

/// Sets the drain series from `summary`.
pub fn set_drains(summary: &snigate_core::drain::DrainSummary) {
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    DRAINING.set(int(summary.workers as u64));
    DRAINING_OPEN.set(int(summary.open));
    DRAIN_OLDEST.set(summary.oldest_seconds);
    DRAIN_OVERDUE.set(int(summary.overdue));
}

/// See [`ROUTE_ACTIVE_CONNECTIONS`].
pub static ROUTE_ACTIVE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    let help = "Connections open now, by route.";
    register(defined(IntGaugeVec::new(
        Opts::new(ROUTE_ACTIVE_CONNECTIONS, help),
        &["route"],
    )))
});

/// See [`ROUTE_LAST_CONNECT_SECONDS`].
pub static ROUTE_LAST_CONNECT: LazyLock<prometheus::GaugeVec> = LazyLock::new(|| {
    let help = "Latency of the route's last successful upstream connect, in seconds.";
    register(defined(prometheus::GaugeVec::new(
        Opts::new(ROUTE_LAST_CONNECT_SECONDS, help),
        &["route"],
    )))
});

/// See [`ROUTES`].
pub static ROUTE_COUNT: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge_vec(ROUTES, "Routes in the live table, by kind.", &["kind"]));

/// Sets [`ROUTES`] from `table`, every kind included.
pub fn set_route_counts(table: &snigate_core::routes::RouteTable) {
    use snigate_core::routes::RouteKind;
    let kinds = [
        RouteKind::Static,
        RouteKind::Bootstrap,
        RouteKind::Broker,
        RouteKind::Rest,
        RouteKind::SchemaRegistry,
    ];
    let mut counts = [0i64; 5];
    for r in table.iter() {
        if let Some(i) = kinds.iter().position(|k| *k == r.kind) {
            counts[i] += 1;
        }
    }
    for (k, n) in kinds.iter().zip(counts) {
        ROUTE_COUNT.with_label_values(&[k.as_str()]).set(n);
    }
}

/// See [`CLUSTER_BROKERS`].
pub static BROKERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        CLUSTER_BROKERS,
        "Brokers in the cluster's last good metadata.",
        &["cluster"],
    )
});

/// See [`CLUSTER_UNROUTABLE_BROKERS`].
pub static UNROUTABLE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        CLUSTER_UNROUTABLE_BROKERS,
        "Advertised brokers that the live route table cannot route.",
        &["cluster"],
    )
});

/// See [`CLUSTER_LAST_SUCCESS`].
pub static LAST_SUCCESS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        CLUSTER_LAST_SUCCESS,
        "Unix time of the cluster's last successful metadata refresh.",
        &["cluster"],
    )
});

/// See [`CLUSTER_REFRESHES_TOTAL`].
pub static REFRESHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        CLUSTER_REFRESHES_TOTAL,
        "Metadata refreshes, by cluster and outcome (ok, failed, partial).",
        &["cluster", "outcome"],
    )
});

/// See [`CONFIG_RELOADS_TOTAL`].
pub static RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        CONFIG_RELOADS_TOTAL,
        "Config reloads (SIGHUP), by outcome (ok, failed).",
        &["outcome"],
    )
});

/// See [`ROUTE_BYTES_TOTAL`].
pub static ROUTE_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        ROUTE_BYTES_TOTAL,
        "Bytes relayed, by route and direction (upstream: client to upstream; downstream: upstream to client).",
        &["route", "direction"],
    )
});

/// See [`CLUSTER_ROUTES_IN_GRACE`].
pub static IN_GRACE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        CLUSTER_ROUTES_IN_GRACE,
        "Discovered names no longer advertised, still routed for their removal grace.",
        &["cluster"],
    )
});

/// Registers the build-info series and the process metrics (open descriptors, resident
/// memory, CPU seconds: Prometheus' `process_*`). `supervisor` is the stable process's
/// build as it told this worker (`VERSION COMMIT`), shown as its own series.
pub fn init_process(supervisor: Option<&str>) {
    let info = gauge_vec(
        BUILD_INFO,
        "Always 1: the version and commit of this worker (process=\"worker\") and of the stable process that started it (process=\"supervisor\").",
        &["process", "version", "commit"],
    );
    let (version, commit) = crate::build();
    info.with_label_values(&["worker", version, commit]).set(1);
    if let Some((version, commit)) = supervisor.and_then(|s| s.split_once(' ')) {
        info.with_label_values(&["supervisor", version, commit])
            .set(1);
    }
    for gauge in [&DRAINING, &DRAINING_OPEN, &DRAIN_OVERDUE] {
        LazyLock::force(gauge);
    }
    LazyLock::force(&DRAIN_OLDEST);
    LazyLock::force(&GRACE_PERIOD);
    let process = prometheus::process_collector::ProcessCollector::for_self();
    if let Err(e) = REGISTRY.register(Box::new(process)) {
        log::warn!("process metrics are not available: {e}");
    }
}

/// Creates the per-cluster series at zero.
pub fn init_clusters<'a>(clusters: impl IntoIterator<Item = &'a str>) {
    for c in clusters {
        BROKERS.with_label_values(&[c]);
        UNROUTABLE.with_label_values(&[c]);
        LAST_SUCCESS.with_label_values(&[c]);
        IN_GRACE.with_label_values(&[c]);
        for o in REFRESH_OUTCOMES {
            REFRESHES.with_label_values(&[c, o]);
        }
    }
}

/// Creates every per-listener series at zero: open connections, bytes, connect latency,
/// each reject reason, and each outcome under the route label `-`.
pub fn init_listeners<'a>(listeners: impl IntoIterator<Item = &'a str>) {
    for l in listeners {
        ACTIVE.with_label_values(&[l]);
        BYTES.with_label_values(&[l, "upstream"]);
        BYTES.with_label_values(&[l, "downstream"]);
        CONNECT_LATENCY.with_label_values(&[l]);
        for r in RejectReason::ALL {
            REJECTS.with_label_values(&[l, r.as_str()]);
        }
        for o in Outcome::ALL {
            CONNECTIONS.with_label_values(&[l, NO_ROUTE_LABEL, o.as_str()]);
        }
    }
    LazyLock::force(&HELLO_SIZE);
    set_route_counts(&snigate_core::routes::RouteTable::default());
    for o in ["ok", "failed"] {
        RELOADS.with_label_values(&[o]);
    }
}

/// One series of [`CONNECTIONS_TOTAL`] per outcome that a route can have (see
/// `Outcome::has_route`); `None` for the others, which are counted under `-`.
pub type OutcomeCounters = [Option<IntCounter>; Outcome::ALL.len()];

fn outcome_counters(listener: &str, route: &str) -> OutcomeCounters {
    Outcome::ALL.map(|o| {
        (route == NO_ROUTE_LABEL || o.has_route())
            .then(|| CONNECTIONS.with_label_values(&[listener, route, o.as_str()]))
    })
}

/// One route's series on one listener.
#[derive(Debug)]
pub struct RouteSeries {
    /// [`CONNECTIONS_TOTAL`], by outcome.
    pub outcomes: OutcomeCounters,
    /// [`ROUTE_BYTES_TOTAL`], client to upstream.
    pub bytes_up: IntCounter,
    /// [`ROUTE_BYTES_TOTAL`], upstream to client.
    pub bytes_down: IntCounter,
    /// [`ROUTE_ACTIVE_CONNECTIONS`].
    pub active: IntGauge,
    /// [`ROUTE_LAST_CONNECT_SECONDS`].
    pub last_connect: prometheus::Gauge,
}

/// One route's series, by listener.
type SeriesByListener = HashMap<Arc<str>, Arc<RouteSeries>>;

/// The series of every route that has carried a connection: by route label, then by
/// listener.
type SeriesByRoute = HashMap<Arc<str>, SeriesByListener>;

static ROUTE_SERIES: LazyLock<Mutex<SeriesByRoute>> = LazyLock::new(Mutex::default);

fn route_series() -> std::sync::MutexGuard<'static, SeriesByRoute> {
    ROUTE_SERIES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Route labels that are not routes of the table, whose series stay.
const KEPT_LABELS: [&str; 2] = [NO_ROUTE_LABEL, FALLBACK_LABEL];

/// Removes the series of every route that has them but is not in `table` any more.
/// Connections still open on such a route count on, unexported, until they close.
pub fn forget_routes(table: &snigate_core::routes::RouteTable) {
    let gone: Vec<(Arc<str>, SeriesByListener)> = {
        let mut all = route_series();
        let labels: Vec<Arc<str>> = all
            .keys()
            .filter(|l| !KEPT_LABELS.contains(&l.as_ref()) && !table.has_label(l))
            .cloned()
            .collect();
        labels
            .into_iter()
            .filter_map(|l| all.remove(&l).map(|by| (l, by)))
            .collect()
    };
    for (label, by_listener) in gone {
        for listener in by_listener.keys() {
            for o in Outcome::ALL.into_iter().filter(|o| o.has_route()) {
                let _ = CONNECTIONS.remove_label_values(&[listener, &label, o.as_str()]);
            }
        }
        for direction in ["upstream", "downstream"] {
            let _ = ROUTE_BYTES.remove_label_values(&[&label, direction]);
        }
        let _ = ROUTE_ACTIVE.remove_label_values(&[&label]);
        let _ = ROUTE_LAST_CONNECT.remove_label_values(&[&label]);
    }
}

/// One listener's connection counters: its own (route `-`), and each route's, created on
/// the route's first connection.
#[derive(Debug)]
pub struct ConnectionCounters {
    listener: Arc<str>,
    no_route: OutcomeCounters,
}

impl ConnectionCounters {
    /// The series of `listener`, created at zero.
    pub fn new(listener: &str) -> Self {
        ConnectionCounters {
            listener: Arc::from(listener),
            no_route: outcome_counters(listener, NO_ROUTE_LABEL),
        }
    }

    /// The series of the route labelled `label` on this listener, created now if the
    /// route has none yet.
    pub fn route(&self, label: &Arc<str>) -> Arc<RouteSeries> {
        let mut all = route_series();
        let by_listener = all.entry(label.clone()).or_default();
        by_listener
            .entry(self.listener.clone())
            .or_insert_with(|| {
                Arc::new(RouteSeries {
                    outcomes: outcome_counters(&self.listener, label),
                    bytes_up: ROUTE_BYTES.with_label_values(&[label, "upstream"]),
                    bytes_down: ROUTE_BYTES.with_label_values(&[label, "downstream"]),
                    active: ROUTE_ACTIVE.with_label_values(&[label]),
                    last_connect: ROUTE_LAST_CONNECT.with_label_values(&[label]),
                })
            })
            .clone()
    }

    /// Counts one closed connection, under its route's series when it had chosen one.
    pub fn count(&self, route: Option<&RouteSeries>, outcome: Outcome) {
        let i = outcome.index();
        let counter = match route {
            Some(r) if outcome.has_route() => &r.outcomes[i],
            _ => &self.no_route[i],
        };
        if let Some(c) = counter {
            c.inc();
        }
    }
}

/// Renders the registry in Prometheus text format.
pub fn render() -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&REGISTRY.gather(), &mut out) {
        log::error!("metrics encoding failed: {e}");
    }
    out
}
