//! Broker discovery against the simulated cloud, in network namespaces (needs root; CI
//! runs as root). The gateway learns the brokers from the cluster's own metadata and keeps
//! its routes in step while clients stay connected.

mod common;

use common::lab::*;
use common::*;
use std::time::{Duration, Instant};

/// Runs a snigate subcommand in the gateway namespace; returns (success, output).
fn snigate_cmd(lab: &Lab, args: &[&str]) -> (bool, String) {
    let mut full = vec!["env", "SIM_KEY=sim-key", snigate_bin()];
    full.extend_from_slice(args);
    lab.run(&lab.cg, 30, &full)
}

fn metric(lab: &Lab, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&lab.admin("/metrics").1, name, labels)
}

/// Watches, in the background, for the in-grace gauge to count one route.
fn watch_in_grace(lab: &Lab) -> std::thread::JoinHandle<bool> {
    let cg = lab.cg.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < PATIENCE {
            let out = std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &cg,
                    "curl",
                    "-s",
                    "http://127.0.0.1:9080/metrics",
                ])
                .output();
            if let Ok(o) = out {
                let text = String::from_utf8_lossy(&o.stdout);
                if metric_value(
                    &text,
                    "snigate_cluster_routes_in_grace",
                    &[("cluster", "sim")],
                ) == 1.0
                {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    })
}

fn still_connected(lab: &mut Lab, idx: usize) -> bool {
    matches!(lab.procs[idx].child.try_wait(), Ok(None))
}

#[test]
fn netns_discovery_follows_broker_changes_without_dropping_connections() {
    if !root_or_skip("netns_discovery_follows_broker_changes_without_dropping_connections") {
        return;
    }
    let mut lab = Lab::new("disc");
    lab.start_cloud();
    let conf = lab.gateway_conf("sim-secret", "", "");
    lab.start_gateway(&conf);

    // 1. Three brokers, each routed, listed by kcat under its advertised name.
    let routes = lab.admin("/routes").1;
    for i in 0..3 {
        assert!(
            routes.contains(&format!(
                "{} -> {}:9092 [cluster:sim] kind=broker last_advertised=20",
                broker(i),
                broker(i)
            )),
            "{routes}"
        );
    }
    assert!(
        routes.contains(&format!(
            "{BOOTSTRAP} -> {BOOTSTRAP}:9092 [cluster:sim] kind=bootstrap"
        )),
        "{routes}"
    );
    assert!(
        routes.contains(&format!("pkac-sim01.{DOMAIN} -> pkac-sim01.{DOMAIN}:443")),
        "{routes}"
    );
    let (ok, out) = lab.kcat_list();
    assert!(ok, "{out}");
    for i in 0..3 {
        assert!(out.contains(&format!("at {}:9092", broker(i))), "{out}");
    }
    let held = lab.hold_session(&broker(0));
    let (ok, out) = lab.tls_verifies(&broker(0));
    assert!(ok, "{out}");

    // 2a. A broker changes its advertised name.
    let renamed = format!("b1-moved-pkc-sim01.{DOMAIN}");
    lab.control(&format!("advertise 2 {renamed}"));
    lab.wait_admin("/routes", "renamed broker routed", |_, b| {
        b.contains(&format!("{renamed} -> "))
    });
    let (ok, out) = lab.tls_verifies(&renamed);
    assert!(ok, "{out}");

    // 2b. A broker is added.
    lab.control(&format!("add 4 {}", BROKER_IPS[3]));
    lab.wait_admin("/routes", "new broker routed", |_, b| {
        b.contains(&format!("{} -> ", broker(3)))
    });
    let (ok, out) = lab.tls_verifies(&broker(3));
    assert!(ok, "{out}");

    // 2c. A broker is decommissioned: kept for the grace period, then removed.
    let in_grace = watch_in_grace(&lab);
    lab.control("decommission 3");
    lab.wait_admin(
        "/routes",
        "removed broker dropped after its grace",
        |_, b| !b.contains(&format!("{} -> ", broker(2))),
    );
    let log = std::fs::read_to_string(lab.path("snigate.log")).unwrap();
    assert!(log.contains("kept for the grace period"), "{log}");
    assert!(
        in_grace.join().unwrap(),
        "snigate_cluster_routes_in_grace never counted the decommissioned broker"
    );
    assert!(log.contains(&format!("removed [{}", broker(2))), "{log}");
    assert!(log.contains(&format!("added [{}]", broker(3))), "{log}");

    // No client connection was dropped through all of it.
    assert!(still_connected(&mut lab, held), "the held session was cut");
    assert!(metric(&lab, "snigate_active_connections", &[("listener", "kafka")]) >= 1.0);
    assert_eq!(
        metric(&lab, "snigate_cluster_brokers", &[("cluster", "sim")]),
        3.0
    );
    assert_eq!(
        metric(
            &lab,
            "snigate_cluster_unroutable_brokers",
            &[("cluster", "sim")]
        ),
        0.0
    );
    assert!(
        metric(
            &lab,
            "snigate_cluster_refreshes_total",
            &[("cluster", "sim"), ("outcome", "ok")]
        ) > 0.0
    );
    assert!(
        metric(
            &lab,
            "snigate_cluster_last_success_timestamp_seconds",
            &[("cluster", "sim")]
        ) > 0.0
    );

    // Operator commands.
    let conf_s = conf.display().to_string();
    let (ok, out) = snigate_cmd(&lab, &["routes", "-c", &conf_s, "--discover"]);
    assert!(
        ok && out.contains(&broker(3)) && out.contains("cluster:sim"),
        "{out}"
    );
    let (ok, out) = snigate_cmd(&lab, &["routes", "-c", &conf_s, "--yaml"]);
    assert!(
        ok && out.contains(&format!(
            "- sni: {}\n  upstream: {}:9092\n",
            broker(3),
            broker(3)
        )),
        "{out}"
    );
    let (ok, out) = snigate_cmd(
        &lab,
        &["hosts", "-c", &conf_s, "--gateway-address", "10.20.30.40"],
    );
    assert!(
        ok && out.contains(&format!("10.20.30.40 {}\n", broker(3)))
            && out.contains(&format!("10.20.30.40 {BOOTSTRAP}\n")),
        "{out}"
    );
}

#[test]
fn netns_restart_from_the_state_file_while_the_cloud_is_down() {
    if !root_or_skip("netns_restart_from_the_state_file_while_the_cloud_is_down") {
        return;
    }
    let mut lab = Lab::new("state");
    let cloud = lab.start_cloud();
    let conf = lab.gateway_conf("sim-secret", "", "");
    let gw = lab.start_gateway(&conf);
    assert!(std::fs::read_to_string(lab.path("state.yaml"))
        .unwrap()
        .contains(&broker(2)));

    // Stop both; start the gateway alone: it routes from the state file.
    lab.stop_gateway(gw);
    lab.stop(cloud);
    lab.start_gateway(&conf);
    let routes = lab.admin("/routes").1;
    assert!(routes.contains(&format!("{} -> ", broker(2))), "{routes}");
    let start = Instant::now();
    while metric(
        &lab,
        "snigate_cluster_refreshes_total",
        &[("outcome", "failed")],
    ) < 1.0
    {
        assert!(start.elapsed() < PATIENCE, "no failed refresh was counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The cloud comes back: clients route again.
    lab.start_cloud();
    let start = Instant::now();
    loop {
        let (ok, out) = lab.tls_verifies(&broker(1));
        if ok {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "{out}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, out) = lab.kcat_list();
    assert!(ok, "{out}");
}

#[test]
fn netns_wrong_credentials_are_reported_and_keep_the_old_routes() {
    if !root_or_skip("netns_wrong_credentials_are_reported_and_keep_the_old_routes") {
        return;
    }
    let mut lab = Lab::new("creds");
    lab.start_cloud();
    let good = lab.gateway_conf("sim-secret", "", "");
    let gw = lab.start_gateway(&good);
    lab.stop_gateway(gw);

    let bad = lab.gateway_conf("not-the-secret", "", "");
    lab.start_gateway(&bad);
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(lab.path("snigate.log")).unwrap();
        if let Some(first) = log.lines().find(|l| l.contains("refresh failed")) {
            // The very first failure already says why.
            assert!(first.contains("Authentication failed"), "{first}");
            assert!(first.contains("keeping the last good routes"), "{first}");
            assert!(!log.contains("not-the-secret"), "the secret was logged");
            // librdkafka's own per-broker lines stay at debug level.
            assert!(!log.contains(" librdkafka]"), "{log}");
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "no clear authentication error:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let routes = lab.admin("/routes").1;
    assert!(routes.contains(&format!("{} -> ", broker(0))), "{routes}");
    let (ok, out) = lab.tls_verifies(&broker(0));
    assert!(ok, "{out}");
}

#[test]
fn netns_reload_upgrade_hands_over_to_a_new_process_on_a_route_change() {
    if !root_or_skip("netns_reload_upgrade_hands_over_to_a_new_process_on_a_route_change") {
        return;
    }
    let mut lab = Lab::new("reload");
    lab.start_cloud();
    let conf = lab.gateway_conf(
        "sim-secret",
        "grace_period_seconds: 30\n",
        "  reload: upgrade\n",
    );
    let gw = lab.start_gateway(&conf);
    let held = lab.hold_session(&broker(0));

    lab.control(&format!("add 4 {}", BROKER_IPS[3]));
    // The new process logs to the same file: a second bootstrap, then it serves the route.
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(lab.path("snigate.log")).unwrap_or_default();
        let routes = lab.admin("/routes").1;
        if log.matches("Bootstrap done").count() == 2
            && log.contains("upgrade done")
            && routes.contains(&format!("{} -> ", broker(3)))
        {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "no hand-over; routes:\n{routes}\nlog:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The old process stopped accepting; the new one routes the new broker.
    assert!(
        matches!(lab.procs[gw].child.try_wait(), Ok(None)),
        "the old process must live out its grace period"
    );
    let (ok, out) = lab.tls_verifies(&broker(3));
    assert!(ok, "{out}");
    assert!(
        still_connected(&mut lab, held),
        "the held session was cut by the hand-over"
    );
    let log = std::fs::read_to_string(lab.path("snigate.log")).unwrap();
    assert!(log.contains("reload is `upgrade`"), "{log}");
}

#[test]
fn netns_a_cluster_that_advertises_only_addresses_is_not_ready() {
    if !root_or_skip("netns_a_cluster_that_advertises_only_addresses_is_not_ready") {
        return;
    }
    let mut lab = Lab::new("ipadv");
    lab.start_cloud();
    for (i, ip) in BROKER_IPS[..3].iter().enumerate() {
        lab.control(&format!("advertise {} {ip}", i + 1));
    }
    let conf = lab.gateway_conf("sim-secret", "", "");
    let log = lab.path("snigate.log");
    lab.spawn_gateway(&conf);
    lab.wait_admin(
        "/ready",
        "503 while no broker can be routed",
        |code, body| code == 503 && body.contains("no routable brokers yet for clusters: sim"),
    );
    let start = Instant::now();
    while metric(
        &lab,
        "snigate_cluster_unroutable_brokers",
        &[("cluster", "sim")],
    ) < 3.0
    {
        assert!(
            start.elapsed() < PATIENCE,
            "the coverage gauge never counted 3"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("added [127.88."), "{text}");
    assert!(
        text.contains("cannot be routed by SNI: [127.88.0.11"),
        "{text}"
    );
}

#[test]
fn netns_not_ready_until_every_cluster_has_routes() {
    if !root_or_skip("netns_not_ready_until_every_cluster_has_routes") {
        return;
    }
    let mut lab = Lab::new("ready");
    // The cloud's CA must exist for the client config; start and stop the cloud once.
    let cloud = lab.start_cloud();
    lab.stop(cloud);
    let conf = lab.gateway_conf("sim-secret", "", "");
    lab.spawn_gateway(&conf);
    lab.wait_admin("/ready", "503 while no cluster has routes", |code, body| {
        code == 503 && body.contains("no routable brokers yet for clusters: sim")
    });
    lab.start_cloud();
    lab.wait_admin("/ready", "ready once discovery succeeded", |code, _| {
        code == 200
    });
    let (ok, out) = lab.tls_verifies(&broker(0));
    assert!(ok, "{out}");
}

/// Discovery that would take the table over `max_routes` is refused with a clear error, and
/// the last good table keeps serving.
#[test]
fn netns_discovery_over_max_routes_keeps_the_last_good_table() {
    if !root_or_skip("netns_discovery_over_max_routes_keeps_the_last_good_table") {
        return;
    }
    let mut lab = Lab::new("maxroutes");
    lab.start_cloud();
    // Three brokers, the bootstrap, REST and Schema Registry: six routes.
    let conf = lab.gateway_conf("sim-secret", "", "  max_routes: 6\n");
    lab.start_gateway(&conf);
    assert_eq!(metric(&lab, "snigate_routes", &[]), 6.0);
    lab.control(&format!("add 4 {}", BROKER_IPS[3]));
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(lab.path("snigate.log")).unwrap();
        if log.contains("would hold 7 routes, over gateway.max_routes (6)") {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "no max_routes error:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let routes = lab.admin("/routes").1;
    assert!(!routes.contains(&format!("{} -> ", broker(3))), "{routes}");
    for i in 0..3 {
        assert!(routes.contains(&format!("{} -> ", broker(i))), "{routes}");
    }
    assert_eq!(metric(&lab, "snigate_routes", &[]), 6.0);
    assert_eq!(lab.admin("/ready").0, 200);
    let (ok, out) = lab.tls_verifies(&broker(0));
    assert!(ok, "{out}");
}
