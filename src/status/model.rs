//! What the status page shows, gathered from the metrics registry (so that every figure is
//! the one `/metrics` gives at that moment), the live route table and its pools, and the
//! process. Building the rows is pure: [`build`] takes the samples and the table.

use crate::metrics;
use crate::render::utc;
use crate::upstream::pool::Pools;
use snigate_core::drain::DrainReport;
use snigate_core::outcome::Outcome;
use snigate_core::routes::{Route, RouteTable};
use std::collections::HashMap;

/// Routes per page.
pub const ROUTES_PER_PAGE: usize = 500;

/// Outcomes that mean the gateway refused the connection.
const REFUSED: [Outcome; 6] = [
    Outcome::NoRoute,
    Outcome::NoSni,
    Outcome::DeniedSource,
    Outcome::OverLimit,
    Outcome::ClientHelloRejected,
    Outcome::Loop,
];

/// Outcomes counted as connect errors of a route.
const CONNECT_ERRORS: [Outcome; 2] = [Outcome::ConnectFailed, Outcome::ResolveFailed];

/// The whole page.
#[derive(Debug, Default)]
pub struct Page {
    /// When it was rendered.
    pub at: String,
    /// The process.
    pub process: ProcessRow,
    /// Per listener.
    pub listeners: Vec<ListenerRow>,
    /// This page's routes.
    pub routes: Vec<RouteRow>,
    /// Per cluster.
    pub clusters: Vec<ClusterRow>,
    /// Which page of routes (from 0).
    pub page: usize,
    /// How many pages.
    pub pages: usize,
    /// Routes in the table.
    pub total_routes: usize,
}

/// The process.
#[derive(Debug, Default)]
pub struct ProcessRow {
    /// Version and commit.
    pub version: String,
    /// Time since the worker started.
    pub uptime: String,
    /// The worker's PID.
    pub worker_pid: u32,
    /// Whether a drain runs, and what it still holds.
    pub drain: String,
    /// One line per draining worker.
    pub drains: Vec<String>,
    /// A drain holds connections past its grace period.
    pub drain_attention: bool,
}

/// The drain rows of [`ProcessRow`]: totals from the drain series (the figures `/metrics`
/// gives), one line per draining worker from its last report, and whether one is overdue.
pub fn drain_rows(
    s: &Samples,
    reports: &[DrainReport],
    now_ms: u64,
) -> (String, Vec<String>, bool) {
    let workers = s.sum(metrics::DRAINING_WORKERS, &[]);
    let open = s.sum(metrics::DRAINING_CONNECTIONS, &[]);
    let overdue = s.sum(metrics::DRAIN_OVERDUE_CONNECTIONS, &[]);
    let total = if workers == 0.0 {
        "none".to_owned()
    } else {
        let mut t = format!("{workers} draining, holding {open} connections");
        if overdue > 0.0 {
            t.push_str(&format!("; {overdue} past the grace period"));
        }
        t
    };
    let lines = reports
        .iter()
        .map(|r| {
            let age = now_ms.saturating_sub(r.since_ms) / 1000;
            let late = if r.overdue(now_ms) {
                " (past its grace period)"
            } else {
                ""
            };
            format!(
                "worker {}: {} connections left, draining for {age} s of a {} s grace period{late}",
                r.pid,
                r.open,
                r.grace_ms / 1000
            )
        })
        .collect();
    (total, lines, overdue > 0.0)
}

/// One listener.
#[derive(Debug, Default)]
pub struct ListenerRow {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Connections open now.
    pub open: i64,
    /// Connections accepted: closed ones, of any outcome, and open ones.
    pub accepted: u64,
    /// Connections the gateway refused.
    pub refused: u64,
    /// Closed connections by outcome, the non-zero ones.
    pub outcomes: Vec<(String, u64)>,
}

/// One pool server under its route.
#[derive(Debug, Default)]
pub struct ServerRow {
    /// `host:port`.
    pub address: String,
    /// Its state.
    pub state: String,
    /// Open connections from the route.
    pub open: usize,
    /// Failed connects.
    pub failures: u64,
    /// The last check, as text.
    pub check: String,
}

/// One route.
#[derive(Debug, Default)]
pub struct RouteRow {
    /// Its pattern.
    pub sni: String,
    /// Its upstream.
    pub upstream: String,
    /// `static`, `discovered (KIND)` or `grace (KIND)`.
    pub kind: String,
    /// A pool's servers.
    pub servers: Vec<ServerRow>,
    /// Connections open now.
    pub open: i64,
    /// Bytes client to upstream.
    pub bytes_up: u64,
    /// Bytes upstream to client.
    pub bytes_down: u64,
    /// Failed connects and resolutions.
    pub connect_errors: u64,
    /// The last connect's latency.
    pub last_connect: String,
    /// Connect errors, or a pool server down.
    pub attention: bool,
}

/// One cluster.
#[derive(Debug, Default)]
pub struct ClusterRow {
    /// Its name.
    pub name: String,
    /// Brokers in its last good metadata.
    pub advertised: i64,
    /// Those the table routes.
    pub routable: i64,
    /// Routable over advertised.
    pub coverage: String,
    /// When the last refresh succeeded.
    pub last_success: String,
    /// The last failed refresh's error, if it came after the last success.
    pub last_error: String,
    /// Coverage under 100%, or the last refresh failed.
    pub attention: bool,
}

/// Metric samples by name: each with its labels and value.
#[derive(Debug, Default)]
pub struct Samples(HashMap<String, Vec<Sample>>);

/// One series: its labels and its value.
pub type Sample = (Vec<(String, String)>, f64);

impl Samples {
    /// Everything the registry holds now.
    pub fn gather() -> Self {
        let mut out: HashMap<String, Vec<Sample>> = HashMap::new();
        for family in metrics::REGISTRY.gather() {
            let kind = family.get_field_type();
            let entry = out.entry(family.name().to_owned()).or_default();
            for m in family.get_metric() {
                let labels = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name().to_owned(), l.value().to_owned()))
                    .collect();
                let value = match kind {
                    prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                    prometheus::proto::MetricType::GAUGE => m.get_gauge().get_value(),
                    _ => continue,
                };
                entry.push((labels, value));
            }
        }
        Samples(out)
    }

    /// Adds a sample (for tests).
    pub fn push(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.0
            .entry(name.to_owned())
            .or_default()
            .push((labels, value));
    }

    /// The series of `name` that carry every label in `want`, summed by the value of their
    /// label `by`: one pass, for figures needed for many routes.
    pub fn sum_by(&self, name: &str, by: &str, want: &[(&str, &str)]) -> HashMap<String, f64> {
        let mut out: HashMap<String, f64> = HashMap::new();
        for (labels, v) in self.0.get(name).into_iter().flatten() {
            let matches = want
                .iter()
                .all(|(k, w)| labels.iter().any(|(lk, lv)| lk == k && lv == w));
            if !matches {
                continue;
            }
            if let Some((_, key)) = labels.iter().find(|(k, _)| k == by) {
                *out.entry(key.clone()).or_default() += v;
            }
        }
        out
    }

    /// The sum of the series of `name` that carry every label in `want`.
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.0.get(name).map_or(0.0, |series| {
            series
                .iter()
                .filter(|(labels, _)| {
                    want.iter()
                        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
                })
                .map(|(_, v)| v)
                .sum()
        })
    }
}

/// What [`build`] needs besides the samples.
pub struct Inputs<'a> {
    /// The live table.
    pub table: &'a RouteTable,
    /// Its pools.
    pub pools: &'a Pools,
    /// Listener names and addresses.
    pub listeners: &'a [(String, String)],
    /// Cluster names.
    pub clusters: &'a [String],
    /// Each cluster's last failed refresh: Unix seconds and the error.
    pub last_errors: &'a HashMap<String, (u64, String)>,
    /// The process row.
    pub process: ProcessRow,
    /// Unix seconds now.
    pub now: u64,
    /// The page of routes asked for.
    pub page: usize,
}

/// The per-route figures, each gathered in one pass over its metric.
struct RouteFigures {
    open: HashMap<String, f64>,
    up: HashMap<String, f64>,
    down: HashMap<String, f64>,
    errors: HashMap<String, f64>,
    last_connect: HashMap<String, f64>,
}

impl RouteFigures {
    fn gather(s: &Samples) -> Self {
        let mut errors = HashMap::new();
        for o in CONNECT_ERRORS {
            for (route, n) in s.sum_by(
                metrics::CONNECTIONS_TOTAL,
                "route",
                &[("outcome", o.as_str())],
            ) {
                *errors.entry(route).or_default() += n;
            }
        }
        RouteFigures {
            open: s.sum_by(metrics::ROUTE_ACTIVE_CONNECTIONS, "route", &[]),
            up: s.sum_by(
                metrics::ROUTE_BYTES_TOTAL,
                "route",
                &[("direction", "upstream")],
            ),
            down: s.sum_by(
                metrics::ROUTE_BYTES_TOTAL,
                "route",
                &[("direction", "downstream")],
            ),
            errors,
            last_connect: s.sum_by(metrics::ROUTE_LAST_CONNECT_SECONDS, "route", &[]),
        }
    }
}

fn route_row(r: &Route, f: &RouteFigures, pools: &Pools) -> RouteRow {
    let label = &*r.label;
    let get = |m: &HashMap<String, f64>| m.get(label).copied().unwrap_or(0.0);
    let errors = get(&f.errors);
    let servers: Vec<ServerRow> = pools
        .get(label)
        .map(|p| {
            p.view()
                .into_iter()
                .map(|v| ServerRow {
                    check: v
                        .last_check
                        .as_ref()
                        .map_or(String::new(), |(ok, took, _, e)| {
                            let verdict = if *ok { "passed" } else { "failed" };
                            let mut t = format!(
                                ", check {verdict} in {:.1} ms",
                                took.as_secs_f64() * 1000.0
                            );
                            if !e.is_empty() {
                                t.push_str(&format!(": {e}"));
                            }
                            t
                        }),
                    address: v.server,
                    state: v.state.as_str().to_owned(),
                    open: v.open,
                    failures: v.failures,
                })
                .collect()
        })
        .unwrap_or_default();
    let down = servers.iter().any(|s| s.state == "down");
    let last = get(&f.last_connect);
    RouteRow {
        sni: label.to_owned(),
        upstream: r.upstream.to_string(),
        kind: String::new(),
        servers,
        open: get(&f.open) as i64,
        bytes_up: get(&f.up) as u64,
        bytes_down: get(&f.down) as u64,
        connect_errors: errors as u64,
        last_connect: if last > 0.0 {
            format!("{:.2} ms", last * 1000.0)
        } else {
            "-".into()
        },
        attention: errors > 0.0 || down,
    }
}

/// The page, from the samples and the inputs.
pub fn build(s: &Samples, i: Inputs<'_>) -> Page {
    let listeners = i
        .listeners
        .iter()
        .map(|(name, address)| {
            let closed = |o: Outcome| {
                s.sum(
                    metrics::CONNECTIONS_TOTAL,
                    &[("listener", name), ("outcome", o.as_str())],
                ) as u64
            };
            let open = s.sum(metrics::ACTIVE_CONNECTIONS, &[("listener", name)]) as i64;
            let outcomes: Vec<(String, u64)> = Outcome::ALL
                .iter()
                .map(|o| (o.as_str().to_owned(), closed(*o)))
                .filter(|(_, n)| *n > 0)
                .collect();
            ListenerRow {
                name: name.clone(),
                address: address.clone(),
                open,
                accepted: outcomes.iter().map(|(_, n)| n).sum::<u64>() + open.max(0) as u64,
                refused: REFUSED.iter().map(|o| closed(*o)).sum(),
                outcomes,
            }
        })
        .collect();
    let last_success: HashMap<&str, u64> = i
        .clusters
        .iter()
        .map(|c| {
            (
                c.as_str(),
                s.sum(metrics::CLUSTER_LAST_SUCCESS, &[("cluster", c)]) as u64,
            )
        })
        .collect();
    let clusters = i
        .clusters
        .iter()
        .map(|c| {
            let advertised = s.sum(metrics::CLUSTER_BROKERS, &[("cluster", c)]) as i64;
            let unroutable = s.sum(metrics::CLUSTER_UNROUTABLE_BROKERS, &[("cluster", c)]) as i64;
            let routable = (advertised - unroutable).max(0);
            let ok_at = last_success.get(c.as_str()).copied().unwrap_or(0);
            let error = i
                .last_errors
                .get(c)
                .filter(|(at, _)| *at >= ok_at)
                .map(|(at, e)| format!("{}: {e}", utc(*at)));
            let full = advertised > 0 && routable == advertised;
            ClusterRow {
                name: c.clone(),
                advertised,
                routable,
                coverage: if advertised > 0 {
                    format!("{:.0}%", 100.0 * routable as f64 / advertised as f64)
                } else {
                    "-".into()
                },
                last_success: if ok_at > 0 {
                    utc(ok_at)
                } else {
                    "never".into()
                },
                attention: !full || error.is_some(),
                last_error: error.unwrap_or_default(),
            }
        })
        .collect();
    let all = i.table.routes();
    let total = all.len();
    let pages = total.div_ceil(ROUTES_PER_PAGE).max(1);
    let page = i.page.min(pages - 1);
    let figures = RouteFigures::gather(s);
    let routes = all
        .into_iter()
        .skip(page * ROUTES_PER_PAGE)
        .take(ROUTES_PER_PAGE)
        .map(|r| {
            let mut row = route_row(r, &figures, i.pools);
            row.kind = match r.origin.strip_prefix("cluster:") {
                None => "static".into(),
                Some(cluster) => {
                    let advertised_at = last_success.get(cluster).copied().unwrap_or(0);
                    let in_grace = r.last_seen.is_some_and(|seen| seen < advertised_at);
                    format!(
                        "{} ({})",
                        if in_grace { "grace" } else { "discovered" },
                        r.kind.as_str()
                    )
                }
            };
            row
        })
        .collect();
    Page {
        at: utc(i.now),
        process: i.process,
        listeners,
        routes,
        clusters,
        page,
        pages,
        total_routes: total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snigate_core::names::{parse_pattern, parse_upstream};

    #[test]
    fn figures_come_from_the_samples_and_attention_is_marked() {
        let table = RouteTable::new([
            Route::new(
                parse_pattern("a.example.test").unwrap(),
                parse_upstream("a.example.test:443").unwrap(),
            ),
            Route::new(
                parse_pattern("b.example.test").unwrap(),
                parse_upstream("b.example.test:443").unwrap(),
            ),
            Route::new(
                parse_pattern("b0.example.test").unwrap(),
                parse_upstream("b0.example.test:9092").unwrap(),
            )
            .discovered("cluster:prod", snigate_core::routes::RouteKind::Broker, 100),
        ])
        .unwrap();
        let mut s = Samples::default();
        s.push(
            metrics::ROUTE_ACTIVE_CONNECTIONS,
            &[("route", "a.example.test")],
            3.0,
        );
        s.push(
            metrics::ROUTE_BYTES_TOTAL,
            &[("route", "a.example.test"), ("direction", "upstream")],
            517.0,
        );
        s.push(
            metrics::CONNECTIONS_TOTAL,
            &[
                ("listener", "https"),
                ("route", "b.example.test"),
                ("outcome", "connect_failed"),
            ],
            2.0,
        );
        s.push(
            metrics::CONNECTIONS_TOTAL,
            &[
                ("listener", "https"),
                ("route", "-"),
                ("outcome", "no_route"),
            ],
            4.0,
        );
        s.push(metrics::ACTIVE_CONNECTIONS, &[("listener", "https")], 3.0);
        s.push(metrics::CLUSTER_BROKERS, &[("cluster", "prod")], 3.0);
        s.push(
            metrics::CLUSTER_UNROUTABLE_BROKERS,
            &[("cluster", "prod")],
            1.0,
        );
        s.push(metrics::CLUSTER_LAST_SUCCESS, &[("cluster", "prod")], 200.0);
        let pools = Pools::default();
        let listeners = [("https".to_owned(), "127.0.0.1:443".to_owned())];
        let clusters = ["prod".to_owned()];
        let errors = HashMap::new();
        let page = build(
            &s,
            Inputs {
                table: &table,
                pools: &pools,
                listeners: &listeners,
                clusters: &clusters,
                last_errors: &errors,
                process: ProcessRow::default(),
                now: 300,
                page: 0,
            },
        );
        let l = &page.listeners[0];
        assert_eq!((l.open, l.accepted, l.refused), (3, 9, 4));
        let row = |sni: &str| page.routes.iter().find(|r| r.sni == sni).unwrap();
        assert_eq!(
            (row("a.example.test").open, row("a.example.test").bytes_up),
            (3, 517)
        );
        assert!(!row("a.example.test").attention);
        assert!(row("b.example.test").attention, "connect errors");
        assert_eq!(
            row("b0.example.test").kind,
            "grace (broker)",
            "last seen before the last refresh"
        );
        let c = &page.clusters[0];
        assert_eq!((c.routable, c.coverage.as_str()), (2, "67%"));
        assert!(c.attention, "coverage under 100%");
    }
}
