//! Route tables for people and for other tools: the `snigate routes` table, YAML that can
//! be pasted into `gateway.routes`, hosts-file lines for clients, and the admin `/routes`
//! page. Pure functions of a table.

use snigate_core::config::ListenerConfig;
use snigate_core::names::SniPattern;
use snigate_core::routes::RouteTable;
use std::fmt::Write;
use std::net::IpAddr;

/// The `snigate routes` table: SNI, upstream and origin, then each listener's fallback.
pub fn table(table: &RouteTable, listeners: &[ListenerConfig]) -> String {
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
    }
    for l in listeners {
        if let Some(f) = &l.fallback {
            let _ = writeln!(out, "(listener {} fallback)  {f}", l.name);
        }
    }
    out
}

/// The table as YAML entries for `gateway.routes`.
pub fn yaml(table: &RouteTable) -> String {
    let mut out = String::from("routes:\n");
    for r in table.routes() {
        let _ = write!(
            out,
            "  - sni: \"{}\"\n    upstream: \"{}\"\n",
            r.label, r.upstream
        );
        if !r.upstream.pinned.is_empty() {
            let pins: Vec<String> = r
                .upstream
                .pinned_list()
                .split(", ")
                .map(|a| format!("\"{a}\""))
                .collect();
            let _ = writeln!(out, "    addresses: [{}]", pins.join(", "));
        }
    }
    out
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

/// The admin `/routes` page: one route per line with its origin and kind, and for a
/// discovered route when its cluster last advertised it.
pub fn admin(table: &RouteTable) -> String {
    let mut out = String::new();
    for r in table.routes() {
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
        out.push('\n');
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
        assert!(text.contains("  - sni: \"pl.test\"\n    upstream: \"pl.test:9092\"\n    addresses: [\"10.0.0.5\"]\n"), "{text}");
        let config = format!(
            "gateway:\n  listeners:\n    - name: k\n      address: 127.0.0.1:1\n  {}",
            text.replace('\n', "\n  ")
        );
        let parsed = snigate_core::config::Config::from_yaml(&config).unwrap();
        assert_eq!(parsed.gateway.routes.len(), 3);
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
