//! Routes at scale: per-route metric series grow with traffic, not with the table, and go
//! with their route; `max_routes` bounds the table.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The `gateway:` section: one listener on host 1, `routes` static routes named
/// `rN.scale.test` to an echo upstream on host 2, the admin endpoint, and `extra`.
fn gateway(net: &Net, routes: usize, extra: &str) -> String {
    let mut yaml = format!(
        "gateway:\n  listeners:\n    - name: kafka\n      address: {gw}:9092\n  admin:\n    address: {gw}:9080\n{extra}  routes:\n",
        gw = net.ip(1)
    );
    for i in 0..routes {
        yaml.push_str(&format!(
            "    - sni: r{i}.scale.test\n      upstream: {}:9092\n",
            net.ip(2)
        ));
    }
    yaml
}

/// One connection through route `rN.scale.test`, echoed and closed.
fn use_route(net: &Net, n: usize) {
    let mut s = TcpStream::connect(net.addr(1, 9092)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let hello = snigate_core::probe::client_hello(&format!("r{n}.scale.test"), [3; 32]);
    s.write_all(&hello).unwrap();
    let mut back = vec![0u8; hello.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, hello);
}

/// Every series line of `metrics` that names route `rN.scale.test`.
fn series_of(metrics: &str, n: usize) -> Vec<String> {
    let label = format!("route=\"r{n}.scale.test\"");
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .map(str::to_owned)
        .collect()
}

#[test]
fn route_series_appear_with_traffic_and_go_with_the_route() {
    let net = Net::new();
    let scratch = Scratch::new("route-series");
    let _up = RawUpstream::start(net.addr(2, 9092), echo);
    let gw = Snigate::start(&scratch.dir, &gateway(&net, 3, ""), net.addr(1, 9080));
    let metrics = gw.metrics();
    for n in 0..3 {
        assert!(series_of(&metrics, n).is_empty(), "{metrics}");
    }
    assert_eq!(gw.metric("snigate_routes", &[("kind", "static")]), 3.0);
    assert_eq!(gw.metric("snigate_routes", &[("kind", "broker")]), 0.0);

    use_route(&net, 1);
    gw.wait_metric(
        "snigate_connections_total",
        &[("route", "r1.scale.test"), ("outcome", "ok")],
        1.0,
    );
    let metrics = gw.metrics();
    let r1 = series_of(&metrics, 1);
    assert!(
        r1.iter()
            .any(|l| l.starts_with("snigate_route_bytes_total{") && l.contains("upstream")),
        "{r1:?}"
    );
    assert!(series_of(&metrics, 0).is_empty() && series_of(&metrics, 2).is_empty());

    // Route 1 leaves the table on a reload: its series go; route 2's never came.
    let conf = gateway(&net, 3, "").replace(
        &format!(
            "    - sni: r1.scale.test\n      upstream: {}:9092\n",
            net.ip(2)
        ),
        "",
    );
    write_config(&scratch.dir, &conf);
    gw.signal("HUP");
    let start = Instant::now();
    while !series_of(&gw.metrics(), 1).is_empty() {
        assert!(
            start.elapsed() < PATIENCE,
            "route 1's series outlived it:\n{}",
            gw.metrics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(gw.metric("snigate_routes", &[("kind", "static")]), 2.0);
    use_route(&net, 2);
    gw.wait_metric(
        "snigate_connections_total",
        &[("route", "r2.scale.test"), ("outcome", "ok")],
        1.0,
    );
}

/// An idle gateway with 10,000 routes serves `/metrics` in under 100 KB.
#[test]
fn an_idle_table_of_ten_thousand_routes_scrapes_small() {
    let net = Net::new();
    let scratch = Scratch::new("route-scrape");
    let gw = Snigate::start(&scratch.dir, &gateway(&net, 10_000, ""), net.addr(1, 9080));
    assert_eq!(gw.metric("snigate_routes", &[("kind", "static")]), 10_000.0);
    let size = gw.metrics().len();
    assert!(
        size < 100_000,
        "/metrics is {size} bytes with 10,000 idle routes"
    );
}

/// `max_routes` refuses a file with more static routes, naming the fix, and a reload that
/// would exceed it keeps the last good table.
#[test]
fn max_routes_refuses_a_bigger_table_and_keeps_the_last_good_one() {
    let net = Net::new();
    let scratch = Scratch::new("max-routes");
    let _up = RawUpstream::start(net.addr(2, 9092), echo);
    let conf = write_config(&scratch.dir, &gateway(&net, 3, "  max_routes: 2\n"));
    let out = std::process::Command::new(snigate_bin())
        .args(["-t", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("gateway.routes has 3 routes, over gateway.max_routes (2)"),
        "{text}"
    );

    let gw = Snigate::start(
        &scratch.dir,
        &gateway(&net, 3, "  max_routes: 3\n"),
        net.addr(1, 9080),
    );
    write_config(&scratch.dir, &gateway(&net, 4, "  max_routes: 3\n"));
    gw.signal("HUP");
    gw.wait_metric(
        "snigate_config_reloads_total",
        &[("outcome", "failed")],
        1.0,
    );
    assert!(gw.log_text().contains("over gateway.max_routes (3)"));
    assert_eq!(gw.metric("snigate_routes", &[("kind", "static")]), 3.0);
    use_route(&net, 0);
}

/// A SIGHUP that moves 100 of 10,000 routes to another upstream parses only those 100
/// items, and they go to the new upstream while the others stay; a change outside the
/// routes makes the next reload parse the whole file, and says why.
#[test]
fn a_reload_parses_only_the_route_items_that_changed() {
    use std::sync::atomic::Ordering;
    let net = Net::new();
    let scratch = Scratch::new("reload-reuse");
    let old = RawUpstream::start(net.addr(2, 9092), echo);
    let new = RawUpstream::start(net.addr(3, 9092), echo);
    let gw = Snigate::start(&scratch.dir, &gateway(&net, 10_000, ""), net.addr(1, 9080));
    // Every 100th route moves to host 3.
    let moved = |extra: &str| {
        let mut yaml = gateway(&net, 0, extra);
        for i in 0..10_000 {
            let host = if i % 100 == 0 { 3 } else { 2 };
            yaml.push_str(&format!(
                "    - sni: r{i}.scale.test\n      upstream: {}:9092\n",
                net.ip(host)
            ));
        }
        yaml
    };
    write_config(&scratch.dir, &moved(""));
    gw.signal("HUP");
    gw.wait_metric("snigate_config_reloads_total", &[("outcome", "ok")], 1.0);
    let log = gw.log_text();
    assert!(
        log.contains("100 of 10000 route items parsed again"),
        "{log}"
    );
    for (route, upstream) in [(300, &new), (301, &old)] {
        let before = upstream.accepted.load(Ordering::SeqCst);
        use_route(&net, route);
        assert_eq!(
            upstream.accepted.load(Ordering::SeqCst),
            before + 1,
            "route r{route} went elsewhere"
        );
    }

    // A new setting beside the routes: the whole file is parsed, and the routes move back.
    write_config(
        &scratch.dir,
        &gateway(&net, 10_000, "  connect_timeout_ms: 4000\n"),
    );
    gw.signal("HUP");
    gw.wait_metric("snigate_config_reloads_total", &[("outcome", "ok")], 2.0);
    gw.wait_log("parses the whole file: the file changed outside the route items");
    gw.wait_log("the whole file parsed");
    let before = old.accepted.load(Ordering::SeqCst);
    use_route(&net, 300);
    assert_eq!(old.accepted.load(Ordering::SeqCst), before + 1);
}

/// One connection through route `rN.scale.test`: its hello must come back byte for byte.
fn try_route(gateway: std::net::SocketAddr, n: usize) -> Result<(), String> {
    let mut s = TcpStream::connect(gateway).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(PATIENCE))
        .map_err(|e| e.to_string())?;
    let hello = snigate_core::probe::client_hello(&format!("r{n}.scale.test"), [4; 32]);
    s.write_all(&hello).map_err(|e| format!("send: {e}"))?;
    let mut back = vec![0u8; hello.len()];
    s.read_exact(&mut back).map_err(|e| format!("echo: {e}"))?;
    if back != hello {
        return Err("the echo differs from the hello sent".into());
    }
    Ok(())
}

/// `snigate upgrade` (the stable process re-executes itself, then a new worker takes the
/// sockets) and `snigate upgrade --worker-only` hand over a 100,000-route gateway while a
/// client keeps connecting through routes spread over the table: no connection is refused
/// or cut, and connections are served during each upgrade.
#[test]
fn upgrades_hand_over_a_hundred_thousand_routes_without_refusing_a_connection() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let net = Net::new();
    let scratch = Scratch::new("upgrade-100k");
    let _up = RawUpstream::start(net.addr(2, 9092), echo);
    let yaml = format!("grace_period_seconds: 5\n{}", gateway(&net, 100_000, ""));
    let gw = Snigate::start(&scratch.dir, &yaml, net.addr(1, 9080));
    assert_eq!(
        gw.metric("snigate_routes", &[("kind", "static")]),
        100_000.0
    );
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let client = {
        let (kafka, stop, served) = (net.addr(1, 9092), stop.clone(), served.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(180);
            let mut failures = Vec::new();
            let mut n = 0usize;
            // Bounded in count and time; routes spread over the whole table.
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline && n < 500_000 {
                let route = n * 7_919 % 100_000;
                match try_route(kafka, route) {
                    Ok(()) => {
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => failures.push(format!("connection {n} (route r{route}): {e}")),
                }
                n += 1;
            }
            failures
        })
    };
    let conf = scratch.path("snigate.yaml");
    for extra in [&[][..], &["--worker-only"][..]] {
        let before = gw.worker_pid(&scratch.dir);
        let served_before = served.load(Ordering::SeqCst);
        let (ok, out) = upgrade(&conf, extra);
        assert!(ok, "upgrade {extra:?}: {out}\nlog:\n{}", gw.log_text());
        eprintln!(
            "upgrade {extra:?} of 100,000 routes, {} connections served meanwhile:\n{}",
            served.load(Ordering::SeqCst) - served_before,
            out.trim()
        );
        assert_ne!(
            before,
            gw.worker_pid(&scratch.dir),
            "{extra:?}: same worker"
        );
        assert!(
            served.load(Ordering::SeqCst) > served_before,
            "no connection was served during the upgrade {extra:?}"
        );
    }
    stop.store(true, Ordering::SeqCst);
    let failures = client.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} connections failed across the upgrades, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(served.load(Ordering::SeqCst) > 0);
}
