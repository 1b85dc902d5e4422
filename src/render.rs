//! Route tables for people and for other tools: the `snigate routes` table, YAML that can
//! be pasted into `gateway.routes`, hosts-file lines for clients, and the admin `/routes`
//! page. Pure functions of a table.

use crate::upstream::pool::ServerView;
use serde::{Deserialize, Serialize};
use snigate_core::config::ListenerConfig;
use snigate_core::egress::Egress;
use snigate_core::names::SniPattern;
use snigate_core::pool::Pool;
use snigate_core::routes::{Route, RouteTable};
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;

/// The `snigate routes` table: SNI, upstream and origin, then each listener's fallback.
pub fn table(table: &RouteTable, listeners: &[ListenerConfig]) -> String {
    table_with(table, listeners, &[])
}

/// [`table`], with each pool's servers under its route: their live state from `live` (the
/// running gateway's `/routes?format=json`), or `unknown` when it has none for the route.
pub fn table_with(table: &RouteTable, listeners: &[ListenerConfig], live: &[RouteJson]) -> String {
    let json = routes_json(table, &|_| None);
    let routes = table.routes();
    let width = routes
        .iter()
        .map(|r| r.label.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let up_width = routes
        .iter()
        .map(|r| r.upstream.to_string().len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = format!("{:<width$}  {:<up_width$}  ORIGIN\n", "SNI", "UPSTREAM");
    for r in routes {
        let up = r.upstream.to_string();
        let _ = write!(out, "{:<width$}  {up:<up_width$}  {}", r.label, r.origin);
        if !r.upstream.pinned.is_empty() {
            let _ = write!(out, "  (pinned: {})", r.upstream.pinned_list());
        }
        out.push('\n');
        if let Some(j) = json.iter().find(|j| j.sni == *r.label) {
            let servers = live
                .iter()
                .find(|l| l.sni == j.sni && !l.servers.is_empty())
                .map_or(&j.servers, |l| &l.servers);
            for s in servers {
                out.push_str(&server_line(s));
                out.push('\n');
            }
        }
    }
    for l in listeners {
        if let Some(f) = &l.fallback {
            let _ = writeln!(out, "(listener {} fallback)  {f}", l.name);
        }
    }
    out
}

/// One route as `gateway.routes` takes it, for [`yaml`].
#[derive(Serialize)]
struct YamlRoute {
    sni: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    send_proxy: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    servers: Vec<YamlServer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check: Option<serde_yaml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    egress_proxy: Option<String>,
}

/// A route's own `egress_proxy`, as `/routes` shows it: `none`, or the proxy's label
/// (never its credentials); `None` when the route takes the gateway's.
fn egress_shown(e: &Egress) -> Option<String> {
    match e {
        Egress::Inherit => None,
        Egress::Direct => Some("none".into()),
        Egress::Via(p) => Some(p.label.to_string()),
    }
}

/// A route's own `egress_proxy` for [`yaml`]: credentials become the references
/// `${EGRESS_PROXY_USER}` and `${EGRESS_PROXY_PASSWORD}`, never their values.
fn egress_yaml(e: &Egress) -> Option<String> {
    match e {
        Egress::Via(p) if p.auth.is_some() => Some(format!(
            "{}://${{EGRESS_PROXY_USER}}:${{EGRESS_PROXY_PASSWORD}}@{}",
            p.scheme.as_str(),
            snigate_core::egress::host_port(&p.host, p.port)
        )),
        other => egress_shown(other),
    }
}

/// One pool server, for [`yaml`].
#[derive(Serialize)]
struct YamlServer {
    address: String,
    #[serde(skip_serializing_if = "is_one")]
    weight: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    backup: bool,
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// A pool's check as its `health_check:` value: `none`, or its settings written out.
fn check_value(check: Option<snigate_core::pool::HealthCheck>) -> serde_yaml::Value {
    use serde_yaml::{Mapping, Value};
    let Some(c) = check else {
        return Value::from("none");
    };
    let mut m = Mapping::new();
    m.insert("type".into(), c.kind.as_str().into());
    m.insert("interval_ms".into(), (c.interval.as_millis() as u64).into());
    m.insert("timeout_ms".into(), (c.timeout.as_millis() as u64).into());
    m.insert("rise".into(), c.rise.into());
    m.insert("fall".into(), c.fall.into());
    Value::Mapping(m)
}

/// The table as YAML for `gateway.routes`, written by serde_yaml: each route's pattern,
/// its upstream (with pinned addresses) or its pool, and its PROXY header.
pub fn yaml(table: &RouteTable) -> String {
    #[derive(Serialize)]
    struct Routes {
        routes: Vec<YamlRoute>,
    }
    let routes = table
        .routes()
        .into_iter()
        .map(|r| {
            let pool = r.pool.as_deref();
            YamlRoute {
                sni: r.label.to_string(),
                upstream: pool.is_none().then(|| r.upstream.to_string()),
                addresses: if r.upstream.pinned.is_empty() || pool.is_some() {
                    Vec::new()
                } else {
                    r.upstream
                        .pinned_list()
                        .split(", ")
                        .map(str::to_owned)
                        .collect()
                },
                send_proxy: r.send_proxy.map(send_proxy_word),
                servers: pool
                    .map(|p| {
                        p.servers
                            .iter()
                            .map(|s| YamlServer {
                                address: s.address(),
                                weight: s.weight,
                                max_connections: s.max_connections,
                                backup: s.backup,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                balance: pool.map(|p| p.balance.as_str()),
                retries: pool.map(|p| p.retries),
                health_check: pool.map(|p| check_value(p.health_check)),
                egress_proxy: egress_yaml(&r.egress),
            }
        })
        .collect();
    match serde_yaml::to_string(&Routes { routes }) {
        Ok(text) => text,
        Err(e) => format!("# cannot write the routes as YAML: {e}\n"),
    }
}

/// Hosts-file lines: every exact route's name at `gateway`. Wildcards cannot be listed name
/// by name, so they are given as comments.
pub fn hosts(table: &RouteTable, gateway: IpAddr) -> String {
    let mut out = String::from("# snigate: point these names at the gateway\n");
    for r in table.routes() {
        match &r.pattern {
            SniPattern::Exact(name) => {
                let _ = writeln!(out, "{gateway} {name}");
            }
            SniPattern::Wildcard(_) => {
                let _ = writeln!(
                    out,
                    "# {} is a wildcard route: add each name under it that clients use",
                    r.label
                );
            }
        }
    }
    out
}

/// One route in `/routes?format=json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteJson {
    /// The SNI pattern.
    pub sni: String,
    /// The upstream (a pool's first primary server).
    pub upstream: String,
    /// `static` or `cluster:NAME`.
    pub origin: String,
    /// What the route is for.
    pub kind: String,
    /// When its cluster last advertised a discovered route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_advertised: Option<String>,
    /// `v1` or `v2` when the upstream gets a PROXY protocol header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_proxy: Option<String>,
    /// Pinned addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned: Vec<String>,
    /// A pool's balance mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    /// A pool's health check type, or `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<String>,
    /// A pool's servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerJson>,
    /// The route's own egress proxy (`scheme://host:port`, never its credentials), or
    /// `none`; absent when it takes the gateway's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_proxy: Option<String>,
}

/// One pool server in `/routes?format=json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerJson {
    /// `host:port`.
    pub address: String,
    /// up, down, going up, going down or backup; `unknown` when the gateway is not asked.
    pub state: String,
    /// A backup server.
    pub backup: bool,
    /// Its weight.
    pub weight: u32,
    /// Open connections from this route.
    pub open_connections: usize,
    /// Failed connects since start.
    pub failures: u64,
    /// The last active check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_check: Option<CheckJson>,
    /// When its state last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_change: Option<String>,
}

/// A server's last active check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckJson {
    /// Whether it passed.
    pub ok: bool,
    /// How long it took, in milliseconds.
    pub latency_ms: f64,
    /// When it ran.
    pub at: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn send_proxy_word(v: snigate_core::proxy_protocol::Version) -> String {
    if v == snigate_core::proxy_protocol::Version::V1 {
        "v1".into()
    } else {
        "v2".into()
    }
}

/// A route's running pool: its settings and its servers' live state.
pub type LivePool = Option<(Arc<Pool>, Vec<ServerView>)>;

/// Every route for `/routes?format=json`, a pool's servers with what `servers` says of
/// them (from the live pools, which include each discovered broker's pool of one; `None`
/// for a route whose pool is not running).
pub fn routes_json(table: &RouteTable, servers: &dyn Fn(&Route) -> LivePool) -> Vec<RouteJson> {
    table
        .routes()
        .into_iter()
        .map(|r| {
            let live = servers(r);
            let (pool, views) = match &live {
                Some((p, v)) => (Some(&**p), Some(v)),
                None => (r.pool.as_deref(), None),
            };
            RouteJson {
                sni: r.label.to_string(),
                upstream: r.upstream.to_string(),
                origin: r.origin.to_string(),
                kind: r.kind.as_str().to_owned(),
                last_advertised: r.last_seen.map(utc),
                send_proxy: r.send_proxy.map(send_proxy_word),
                pinned: if r.upstream.pinned.is_empty() {
                    Vec::new()
                } else {
                    r.upstream
                        .pinned_list()
                        .split(", ")
                        .map(str::to_owned)
                        .collect()
                },
                balance: pool.map(|p| p.balance.as_str().to_owned()),
                health_check: pool.map(|p| {
                    p.health_check
                        .map_or("none", |h| h.kind.as_str())
                        .to_owned()
                }),
                servers: match (pool, views) {
                    (Some(_), Some(views)) => views.iter().map(server_json).collect(),
                    (Some(p), None) => p
                        .servers
                        .iter()
                        .map(|s| ServerJson {
                            address: s.address(),
                            state: "unknown".into(),
                            backup: s.backup,
                            weight: s.weight,
                            open_connections: 0,
                            failures: 0,
                            last_check: None,
                            last_change: None,
                        })
                        .collect(),
                    _ => Vec::new(),
                },
                egress_proxy: egress_shown(&r.egress),
            }
        })
        .collect()
}

fn server_json(v: &ServerView) -> ServerJson {
    ServerJson {
        address: v.server.clone(),
        state: v.state.as_str().to_owned(),
        backup: v.backup,
        weight: v.weight,
        open_connections: v.open,
        failures: v.failures,
        last_check: v
            .last_check
            .as_ref()
            .map(|(ok, took, at, error)| CheckJson {
                ok: *ok,
                latency_ms: took.as_secs_f64() * 1000.0,
                at: utc(at / 1000),
                error: (!error.is_empty()).then(|| error.clone()),
            }),
        last_change: (v.last_change_ms > 0).then(|| utc(v.last_change_ms / 1000)),
    }
}

/// A pool server as one indented line of `/routes` and `snigate routes`.
pub fn server_line(s: &ServerJson) -> String {
    let mut line = format!(
        "    server {} {} weight={} open={} failures={}",
        s.address, s.state, s.weight, s.open_connections, s.failures
    );
    if s.backup {
        line.push_str(" backup");
    }
    if let Some(c) = &s.last_check {
        let _ = write!(
            line,
            " check={} {:.1}ms",
            if c.ok { "ok" } else { "failed" },
            c.latency_ms
        );
        if let Some(e) = &c.error {
            let _ = write!(line, " ({e})");
        }
    }
    if let Some(t) = &s.last_change {
        let _ = write!(line, " changed={t}");
    }
    line
}

/// The admin `/routes` page: one route per line with its origin and kind, and for a
/// discovered route when its cluster last advertised it; a pool's servers follow their
/// route, one per line.
pub fn admin(table: &RouteTable) -> String {
    admin_with(table, &|_| None)
}

/// [`admin`], with the live state of each pool's servers.
pub fn admin_with(table: &RouteTable, servers: &dyn Fn(&Route) -> LivePool) -> String {
    let json = routes_json(table, servers);
    let mut out = String::new();
    for (r, j) in table.routes().into_iter().zip(&json) {
        let _ = write!(
            out,
            "{} -> {} [{}] kind={}",
            r.label,
            r.upstream,
            r.origin,
            r.kind.as_str()
        );
        if let Some(seen) = r.last_seen {
            let _ = write!(out, " last_advertised={}", utc(seen));
        }
        if let Some(v) = r.send_proxy {
            let _ = write!(
                out,
                " send_proxy={}",
                if v == snigate_core::proxy_protocol::Version::V1 {
                    "v1"
                } else {
                    "v2"
                }
            );
        }
        if !r.upstream.pinned.is_empty() {
            let _ = write!(out, " (pinned: {})", r.upstream.pinned_list());
        }
        if let (Some(b), Some(h)) = (&j.balance, &j.health_check) {
            let _ = write!(out, " balance={b} health_check={h}");
        }
        if let Some(e) = &j.egress_proxy {
            let _ = write!(out, " egress_proxy={e}");
        }
        out.push('\n');
        for s in &j.servers {
            out.push_str(&server_line(s));
            out.push('\n');
        }
    }
    out
}

/// Unix seconds as an RFC 3339 UTC time.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use snigate_core::names::{parse_pattern, parse_pinned, parse_upstream};
    use snigate_core::routes::Route;

    fn sample() -> RouteTable {
        let mut pinned = parse_upstream("pl.test:9092").unwrap();
        pinned.pinned = vec![parse_pinned("10.0.0.5").unwrap()];
        RouteTable::new([
            Route::new(
                parse_pattern("*.w.test").unwrap(),
                parse_upstream("{sni}:{port}").unwrap(),
            ),
            Route::new(parse_pattern("pl.test").unwrap(), pinned),
            Route::new(
                parse_pattern("b0.test").unwrap(),
                parse_upstream("b0.test:9092").unwrap(),
            )
            .discovered("cluster:prod", snigate_core::routes::RouteKind::Broker, 7),
        ])
        .unwrap()
    }

    #[test]
    fn admin_page() {
        assert_eq!(
            admin(&sample()),
            "b0.test -> b0.test:9092 [cluster:prod] kind=broker last_advertised=1970-01-01T00:00:07Z\npl.test -> pl.test:9092 [static] kind=static (pinned: 10.0.0.5)\n*.w.test -> {sni}:{port} [static] kind=static\n"
        );
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_795_618_799), "2026-11-25T14:59:59Z");
    }

    #[test]
    fn hosts_lines() {
        let text = hosts(&sample(), "10.20.30.40".parse().unwrap());
        assert!(
            text.contains(
                "10.20.30.40 b0.test\n10.20.30.40 pl.test\n# *.w.test is a wildcard route"
            ),
            "{text}"
        );
    }

    #[test]
    fn yaml_round_trips_through_the_config() {
        let text = yaml(&sample());
        assert!(
            text.contains("- sni: pl.test\n  upstream: pl.test:9092\n  addresses:\n  - 10.0.0.5\n"),
            "{text}"
        );
        assert!(
            text.contains("upstream: '{sni}:{port}'"),
            "placeholders are quoted: {text}"
        );
        let config = format!(
            "gateway:\n  listeners:\n    - name: k\n      address: 127.0.0.1:1\n  {}",
            text.replace('\n', "\n  ")
        );
        let parsed = snigate_core::config::Config::from_yaml(&config).unwrap();
        assert_eq!(parsed.gateway.routes.len(), 3);
    }

    #[test]
    fn pools_round_trip_through_the_yaml() {
        let config = "gateway:\n  listeners:\n    - name: k\n      address: 127.0.0.1:1\n  routes:\n    - sni: \"*.kube.example.test\"\n      servers:\n        - address: 127.0.8.1:443\n        - address: kube-2.example.test:443\n          weight: 2\n          max_connections: 9\n        - address: 127.0.8.9:443\n          backup: true\n      balance: source_hash\n      retries: 1\n      health_check: { type: tls, rise: 4 }\n    - sni: one.example.test\n      servers:\n        - address: 127.0.8.1:443\n      health_check: none\n";
        let first = snigate_core::config::Config::from_yaml(config).unwrap();
        let text = yaml(&first.gateway.routes);
        let again = snigate_core::config::Config::from_yaml(&format!(
            "gateway:\n  listeners:\n    - name: k\n      address: 127.0.0.1:1\n  {}",
            text.replace('\n', "\n  ")
        ))
        .unwrap();
        for name in ["a.kube.example.test", "one.example.test"] {
            let pool = |c: &snigate_core::config::Config| {
                c.gateway.routes.lookup(name).unwrap().pool.clone().unwrap()
            };
            assert_eq!(pool(&first), pool(&again), "{name}:\n{text}");
        }
    }

    #[test]
    fn table_lists_fallbacks() {
        let mut l = ListenerConfig::new("https", "127.0.0.1:443".parse().unwrap());
        l.fallback = Some(parse_upstream("default.test:443").unwrap());
        let text = table(&sample(), &[l]);
        assert!(
            text.starts_with("SNI       UPSTREAM      ORIGIN\n"),
            "{text}"
        );
        assert!(
            text.ends_with("(listener https fallback)  default.test:443\n"),
            "{text}"
        );
    }
}
