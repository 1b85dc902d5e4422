//! The status page, in a real browser: headless Chromium (Debian's `chromium`, installed by
//! tests/setup.sh) loads it from a running gateway with live connections, a discovered
//! cluster and a pool, in network namespaces (needs root; CI runs as root). The test
//! saves a screenshot to `target/status-page.png` and reads the page's DOM.

mod common;

use common::lab::*;
use common::*;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn chromium() -> Option<String> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new("which")
            .arg(c)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the status page test needs chromium; tests/setup.sh installs it"
        );
        eprintln!("skipping: chromium is not installed (tests/setup.sh installs it)");
    }
    found.map(str::to_owned)
}

/// Runs headless Chromium in the gateway's namespace on the admin page `path`, with
/// `what` (`--dump-dom` or `--screenshot=FILE`); returns what it printed.
fn browse(lab: &Lab, chromium: &str, path: &str, what: &str) -> String {
    let profile = lab.path(&format!("chromium-{}", what.len()));
    let profile = format!("--user-data-dir={}", profile.display());
    let url = format!("http://127.0.0.1:9080{path}");
    let (ok, out) = lab.run(
        &lab.gw,
        60,
        &[
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1600",
            &profile,
            what,
            &url,
        ],
    );
    assert!(ok, "chromium failed on {url}:\n{out}");
    out
}

/// The `<tr>` of the route `sni` in the page's routes table.
fn route_row<'a>(dom: &'a str, sni: &str) -> &'a str {
    let cell = format!("<td class=\"sni\">{sni}</td>");
    let at = dom
        .find(&cell)
        .unwrap_or_else(|| panic!("no row for {sni} in:\n{dom}"));
    let start = dom[..at].rfind("<tr").unwrap();
    let end = at + dom[at..].find("</tr>").unwrap();
    &dom[start..end]
}

/// The number in the cell of class `class` in `row`.
fn cell(row: &str, class: &str) -> u64 {
    let key = format!("class=\"n {class}\">");
    let at = row
        .find(&key)
        .unwrap_or_else(|| panic!("no {class} in {row}"))
        + key.len();
    row[at..]
        .split('<')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{class} is not a number in {row}"))
}

fn target_dir() -> PathBuf {
    PathBuf::from(snigate_bin())
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .to_owned()
}

#[test]
fn netns_the_status_page_shows_routes_counts_and_attention_in_a_browser() {
    if !root_or_skip("netns_the_status_page_shows_routes_counts_and_attention_in_a_browser") {
        return;
    }
    let Some(chromium) = chromium() else {
        return;
    };
    let mut lab = Lab::new("status");
    lab.start_cloud();
    // A route to a port nothing listens on (its connects fail), and a pool with one dead
    // server, beside the discovered cluster.
    let extra = "  health_check: { interval_ms: 300, timeout_ms: 200, rise: 1, fall: 2 }
  routes:
    - sni: dead.example.test
      upstream: 127.0.0.1:9
    - sni: pool.example.test
      servers:
        - address: 127.0.0.1:9
        - address: 127.0.0.1:10
";
    let conf = lab.gateway_conf("sim-secret", "", extra);
    lab.start_gateway(&conf);
    // One failed connect on the dead route.
    let (_, out) = lab.run(
        &lab.cl,
        20,
        &[
            "openssl",
            "s_client",
            "-connect",
            &format!("{GATEWAY_IP}:443"),
            "-servername",
            "dead.example.test",
        ],
    );
    assert!(!out.contains("BEGIN CERTIFICATE"), "{out}");
    // A live session to broker 0, held open.
    let b0 = broker(0);
    lab.hold_session(&b0);
    let series = |lab: &Lab| {
        let m = lab.admin("/metrics").1;
        (
            metric_value(&m, "snigate_route_active_connections", &[("route", &b0)]) as u64,
            metric_value(
                &m,
                "snigate_route_bytes_total",
                &[("route", &b0), ("direction", "upstream")],
            ) as u64,
            metric_value(
                &m,
                "snigate_route_bytes_total",
                &[("route", &b0), ("direction", "downstream")],
            ) as u64,
        )
    };
    let start = Instant::now();
    while series(&lab).0 != 1 || series(&lab).2 == 0 {
        assert!(
            start.elapsed() < PATIENCE,
            "the held session never opened: {:?}",
            series(&lab)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.wait_admin(
        "/routes?format=json",
        "the pool's servers are down",
        |_, body| body.matches("\"state\": \"down\"").count() >= 2,
    );

    // The same moment on /metrics and on the page: the session is idle, so the figures
    // hold still; read /metrics on both sides of the page.
    let before = series(&lab);
    let dom = browse(&lab, &chromium, "/", "--dump-dom");
    let after = series(&lab);
    assert_eq!(before, after, "the session moved bytes during the check");
    let row = route_row(&dom, &b0);
    assert_eq!(
        (
            cell(row, "open"),
            cell(row, "bytes-up"),
            cell(row, "bytes-down")
        ),
        before,
        "the page and /metrics disagree on {b0}: {row}"
    );
    assert!(before.1 > 0 && before.2 > 0);
    assert!(row.contains("discovered (broker)"), "{row}");
    assert!(
        !row.contains("attention"),
        "a healthy broker is not marked: {row}"
    );

    let dead = route_row(&dom, "dead.example.test");
    assert!(
        dead.contains("class=\"attention\""),
        "connect errors are marked: {dead}"
    );
    assert_eq!(cell(dead, "errors"), 1, "{dead}");
    let pool = route_row(&dom, "pool.example.test");
    assert!(
        pool.contains("class=\"attention\"") && pool.contains(">down<"),
        "{pool}"
    );
    for want in [
        "<table id=\"listeners\">",
        "<td class=\"name\">kafka</td>",
        "<td class=\"name\">https</td>",
        "<td class=\"name\">sim</td>",
        "class=\"n coverage\">100%<",
        "snigate 0.1.0",
        "row(s) need attention",
        &broker(1),
        &broker(2),
    ] {
        assert!(dom.contains(want), "the page lacks {want:?}:\n{dom}");
    }
    assert!(!dom.contains("<script"), "the page has no scripts");
    // The cluster's secret reaches no page an operator looks at, nor `-t`.
    for path in ["/", "/routes", "/routes?format=json", "/metrics"] {
        let body = lab.admin(path).1;
        assert!(!body.contains("sim-secret"), "{path} shows the secret");
    }
    assert!(!dom.contains("sim-secret"));
    let conf_s = conf.display().to_string();
    let (ok, out) = lab.run(
        &lab.gw,
        20,
        &["env", "SIM_KEY=sim-key", snigate_bin(), "-t", "-c", &conf_s],
    );
    assert!(ok && !out.contains("sim-secret"), "{out}");
    assert!(
        !std::fs::read_to_string(lab.path("snigate.log"))
            .unwrap_or_default()
            .contains("sim-secret"),
        "the log shows the secret"
    );
    assert!(
        !dom.contains("http-equiv=\"refresh\""),
        "no reload unless asked"
    );

    // The Grafana dashboard reads only series this gateway exports.
    dashboard_reads_only_exported_series(&lab.admin("/metrics").1);

    // A screenshot for people, and proof that the page renders to something.
    let shot = target_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &lab,
        &chromium,
        "/",
        &format!("--screenshot={}", shot.display()),
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "the screenshot is missing or empty ({size} bytes)"
    );
}

/// Every query string in a Grafana dashboard (panel targets and template variables).
fn queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(q)) => out.push(q.clone()),
                    _ => queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| queries(i, out)),
        _ => {}
    }
}

/// Checks `deploy/monitoring/grafana-dashboard.json` against a gateway's /metrics: every
/// series name a query reads must be one the gateway exports.
fn dashboard_reads_only_exported_series(metrics: &str) {
    let exported: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/monitoring/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut all = Vec::new();
    queries(&dashboard, &mut all);
    assert!(
        all.len() >= 15,
        "the dashboard has only {} queries",
        all.len()
    );
    let mut read = 0;
    for q in &all {
        for name in q
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("snigate_") || w.starts_with("process_"))
        {
            read += 1;
            assert!(
                exported.contains(name),
                "the dashboard reads {name}, which the gateway does not export (in `{q}`)"
            );
        }
    }
    assert!(read >= 15, "{read}");
}
