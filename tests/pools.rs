//! Server pools, in network namespaces (needs root; CI runs as root). snigate and the pool's
//! servers share one namespace, the servers on its loopback; clients connect from the
//! other. Every server has its own certificate for the pool's name, so each client learns
//! which server answered from the certificate, checks that the server's own line agrees,
//! and checks that its bytes come back byte-exact.

mod common;

use common::lab::*;
use common::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The pool's route, and the name clients ask for.
const ROUTE: &str = "*.kube.example.test";
const NAME: &str = "app.kube.example.test";

struct PoolLab {
    lab: Lab,
    certs: PathBuf,
    servers: BTreeMap<String, usize>,
    gateway: Option<usize>,
}

/// The loopback address of server `id` (`s1` is 127.0.8.1).
fn server_addr(id: &str) -> String {
    format!("127.0.8.{}:443", &id[1..])
}

impl PoolLab {
    fn new(tag: &str) -> Option<PoolLab> {
        if !root_or_skip(tag) {
            return None;
        }
        let lab = Lab::new(tag);
        let certs = lab.path("pool");
        let (ok, out) = lab.run(
            &lab.cg,
            30,
            &[
                &simcloud_bin(),
                "pool-certs",
                "--dir",
                &certs.display().to_string(),
                "--name",
                ROUTE,
                "--ids",
                "s1,s2,s3,s4",
            ],
        );
        assert!(ok, "pool-certs: {out}");
        Some(PoolLab {
            lab,
            certs,
            servers: BTreeMap::new(),
            gateway: None,
        })
    }

    /// Starts server `id`; `mute` accepts TCP and never answers TLS.
    fn start(&mut self, id: &str, mute: bool) {
        let log = self.lab.path(&format!("{id}.log"));
        let (dir, addr) = (self.certs.display().to_string(), server_addr(id));
        let mut args = vec![
            simcloud_bin(),
            "pool-server".into(),
            "--dir".into(),
            dir,
            "--id".into(),
            id.into(),
            "--listen".into(),
            addr,
        ];
        if mute {
            args.push("--mute".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let cg = self.lab.cg.clone();
        let idx = self.lab.spawn(&cg, &args, &[], &log);
        let out = log.with_extension("out");
        let start = Instant::now();
        while !std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("listening")
        {
            assert!(
                start.elapsed() < PATIENCE,
                "server {id} never listened: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.servers.insert(id.to_owned(), idx);
    }

    /// Starts s1, s2 and s3; returns them as a pool's `servers:` items, with `third`'s
    /// keys (YAML lines) on s3.
    fn start_three(&mut self, third: &str) -> String {
        for id in ["s1", "s2", "s3"] {
            self.start(id, false);
        }
        format!(
            "{}{}{}",
            server("s1", ""),
            server("s2", ""),
            server("s3", third)
        )
    }

    fn stop(&mut self, id: &str) {
        let idx = self.servers.remove(id).expect("running server");
        self.lab.stop(idx);
    }

    /// Starts snigate with `routes` (YAML list items under `routes:`) and waits for `/ready`.
    fn gateway(&mut self, routes: &str) {
        let yaml = format!(
            "gateway:
  listeners:
    - name: https
      address: {GATEWAY_IP}:443
  admin:
    address: 127.0.0.1:9080
  connect_timeout_ms: 1000
  routes:
{routes}"
        );
        let conf = write_config(&self.lab.scratch.dir, &yaml);
        self.gateway = Some(self.lab.start_gateway(&conf));
    }

    /// Runs `pool-client` to completion from `ns` (the client namespace unless given);
    /// returns the count per server and the failures.
    fn clients(
        &self,
        ns: Option<&str>,
        extra: &[&str],
    ) -> (BTreeMap<String, usize>, usize, String) {
        let dir = self.certs.display().to_string();
        let target = format!("{GATEWAY_IP}:443");
        let bin = simcloud_bin();
        let mut args = vec![
            bin.as_str(),
            "pool-client",
            "--target",
            &target,
            "--name",
            NAME,
            "--dir",
            &dir,
        ];
        args.extend_from_slice(extra);
        let ns = ns.unwrap_or(&self.lab.cl);
        let (ok, out) = self.lab.run(ns, 120, &args);
        assert!(ok, "pool-client failed:\n{out}");
        parse_clients(&out)
    }

    /// Starts `pool-client` from the client namespace without waiting, logging to
    /// `NAME.log`; returns its index and log path.
    fn clients_in_background(&mut self, name: &str, extra: &[&str]) -> (usize, PathBuf) {
        let dir = self.certs.display().to_string();
        let target = format!("{GATEWAY_IP}:443");
        let mut args = vec![
            "pool-client",
            "--target",
            &target,
            "--name",
            NAME,
            "--dir",
            &dir,
        ];
        args.extend_from_slice(extra);
        self.lab.client(name, &args)
    }

    /// `/routes?format=json`, the pool route's servers by address.
    fn servers_json(&self) -> BTreeMap<String, serde_json::Value> {
        let (code, body) = self.lab.admin("/routes?format=json");
        assert_eq!(code, 200, "{body}");
        let routes: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let mut out = BTreeMap::new();
        for r in routes {
            for s in r["servers"].as_array().cloned().unwrap_or_default() {
                let key = format!(
                    "{} {}",
                    r["sni"].as_str().unwrap_or(""),
                    s["address"].as_str().unwrap_or("")
                );
                out.insert(key, s);
            }
        }
        out
    }

    /// The state `/routes?format=json` gives server `id` under `route`.
    fn state(&self, route: &str, id: &str) -> String {
        let key = format!("{route} {}", server_addr(id));
        self.servers_json()
            .get(&key)
            .and_then(|s| s["state"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no server {key} in /routes"))
    }

    /// Polls until server `id` is in `state` under `route`; returns how long that took.
    fn wait_state(&self, route: &str, id: &str, state: &str) -> Duration {
        let start = Instant::now();
        loop {
            if self.state(route, id) == state {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < PATIENCE,
                "server {id} never became {state}: {}\nlog:\n{}",
                self.lab.admin("/routes").1,
                std::fs::read_to_string(self.lab.path("snigate.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.lab.path("snigate.log")).unwrap_or_default()
    }
}

/// Reads `served ID N` lines and `ok=N failed=M`.
fn parse_clients(out: &str) -> (BTreeMap<String, usize>, usize, String) {
    let mut served = BTreeMap::new();
    let mut failed = usize::MAX;
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("served ") {
            let (id, n) = rest.split_once(' ').unwrap();
            served.insert(id.to_owned(), n.parse().unwrap());
        }
        if let Some(f) = line.split("failed=").nth(1) {
            failed = f.split_whitespace().next().unwrap().parse().unwrap();
        }
    }
    assert_ne!(failed, usize::MAX, "no summary from pool-client:\n{out}");
    (served, failed, out.to_owned())
}

fn route(servers: &str, more: &str) -> String {
    format!("    - sni: \"{ROUTE}\"\n      servers:\n{servers}{more}")
}

fn server(id: &str, more: &str) -> String {
    format!("        - address: {}\n{more}", server_addr(id))
}

#[test]
fn netns_round_robin_follows_the_weights_and_least_connections_evens_out_open_counts() {
    let Some(mut p) = PoolLab::new("pool-spread") else {
        return;
    };
    let servers = p.start_three("          weight: 2\n");
    p.gateway(&route(&servers, ""));
    let (served, failed, out) = p.clients(None, &["--count", "40", "--rate", "40"]);
    assert_eq!(failed, 0, "{out}");
    let n = |id: &str| served.get(id).copied().unwrap_or(0);
    assert_eq!(n("s1") + n("s2") + n("s3"), 40, "{out}");
    assert!(
        (8..=12).contains(&n("s1")) && (8..=12).contains(&n("s2")) && (18..=22).contains(&n("s3")),
        "weights 1, 1, 2 should give about 10, 10, 20: {served:?}"
    );
    let log = p.log();
    for id in ["s1", "s2", "s3"] {
        assert!(
            log.contains(&format!("server={}", server_addr(id))),
            "the access log names each server: {log}"
        );
    }
    p.lab.stop_gateway(p.gateway.take().unwrap());

    // least_connections with long-lived connections: 12 held at once spread 4, 4, 4.
    let servers = format!(
        "{}{}{}",
        server("s1", ""),
        server("s2", ""),
        server("s3", "")
    );
    p.gateway(&route(&servers, "      balance: least_connections\n"));
    let (idx, log) = p.clients_in_background(
        "held",
        &["--count", "12", "--rate", "40", "--hold-ms", "4000"],
    );
    let start = Instant::now();
    let open = loop {
        let open: Vec<u64> = ["s1", "s2", "s3"]
            .iter()
            .map(|id| {
                p.servers_json()[&format!("{ROUTE} {}", server_addr(id))]["open_connections"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        if open.iter().sum::<u64>() == 12 {
            break open;
        }
        assert!(start.elapsed() < PATIENCE, "never 12 open: {open:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (lo, hi) = (open.iter().min().unwrap(), open.iter().max().unwrap());
    assert!(hi - lo <= 1, "open counts should stay within one: {open:?}");
    let (ok, out) = p.lab.wait_exit(idx, &log, PATIENCE);
    assert!(ok, "{out}");
    let (_, failed, out) = parse_clients(&out);
    assert_eq!(failed, 0, "{out}");
}

#[test]
fn netns_source_hash_keeps_a_client_on_its_server_while_that_server_is_up() {
    let Some(mut p) = PoolLab::new("pool-hash") else {
        return;
    };
    let servers = p.start_three("");
    p.gateway(&route(
        &servers,
        "      balance: source_hash\n      health_check: { interval_ms: 200, timeout_ms: 100, fall: 1, rise: 1 }\n",
    ));
    let cg = p.lab.cg.clone();
    let sources: Vec<String> = (11..19).map(|i| format!("127.0.0.{i}")).collect();
    let mut home = BTreeMap::new();
    for src in &sources {
        let (served, failed, out) =
            p.clients(Some(&cg), &["--count", "6", "--rate", "50", "--bind", src]);
        assert_eq!(failed, 0, "{out}");
        assert_eq!(
            served.len(),
            1,
            "{src} should always land on one server: {served:?}"
        );
        home.insert(src.clone(), served.keys().next().unwrap().clone());
    }
    let used: std::collections::BTreeSet<_> = home.values().collect();
    assert!(
        used.len() >= 2,
        "eight sources should not all hash to one server: {home:?}"
    );

    // Stop the server of the first source: it moves, and the sources of other servers stay.
    let gone = home[&sources[0]].clone();
    p.stop(&gone);
    p.wait_state(ROUTE, &gone, "down");
    for src in &sources {
        let (served, failed, out) =
            p.clients(Some(&cg), &["--count", "4", "--rate", "50", "--bind", src]);
        assert_eq!(failed, 0, "{out}");
        assert_eq!(served.len(), 1, "{src}: {served:?}");
        let now = served.keys().next().unwrap();
        if home[src] == gone {
            assert_ne!(*now, gone, "{src} still reached a stopped server");
        } else {
            assert_eq!(*now, home[src], "{src} moved although its server is up");
        }
    }
}

#[test]
fn netns_a_server_stopped_during_churn_refuses_no_connection_and_rejoins_after_rise_checks() {
    let Some(mut p) = PoolLab::new("pool-failover") else {
        return;
    };
    let servers = p.start_three("");
    p.gateway(&route(
        &servers,
        "      health_check: { type: tcp, interval_ms: 1000, timeout_ms: 500, rise: 2, fall: 3 }\n",
    ));
    let (idx, log) = p.clients_in_background("churn", &["--count", "600", "--rate", "100"]);
    // Stop s2 once the churn is under way: the first connects to it fail over to the
    // others at once, and then the passive check takes it out.
    let start = Instant::now();
    while metric_value(
        &p.lab.admin("/metrics").1,
        "snigate_connections_total",
        &[("outcome", "ok")],
    ) < 100.0
    {
        assert!(start.elapsed() < PATIENCE, "the churn never got going");
        std::thread::sleep(Duration::from_millis(50));
    }
    p.stop("s2");
    let (ok, out) = p.lab.wait_exit(idx, &log, Duration::from_secs(60));
    assert!(ok, "{out}");
    let (served, failed, out) = parse_clients(&out);
    // The gateway refused none: every connect to s2 that failed went to another server.
    let metrics = p.lab.admin("/metrics").1;
    for outcome in ["connect_failed", "over_limit", "resolve_failed"] {
        assert_eq!(
            metric_value(
                &metrics,
                "snigate_connections_total",
                &[("outcome", outcome)]
            ),
            0.0,
            "the gateway refused a connection ({outcome}):\n{out}"
        );
    }
    // Only connections that s2 had accepted, and held when it died, may be cut: after
    // their handshake, or during it (the client cannot tell that from a refusal).
    assert!(failed <= 3, "{out}");
    assert_eq!(served.values().sum::<usize>() + failed, 600, "{out}");
    assert!(
        served.get("s2").copied().unwrap_or(0) > 0,
        "s2 served before it stopped: {served:?}"
    );
    assert_eq!(p.state(ROUTE, "s2"), "down");
    let metrics = p.lab.admin("/metrics").1;
    let label = [("route", ROUTE), ("server", "127.0.8.2:443")];
    assert_eq!(metric_value(&metrics, "snigate_upstream_up", &label), 0.0);
    assert!(metric_value(&metrics, "snigate_upstream_failures_total", &label) >= 1.0);
    let log = p.log();
    assert_eq!(
        log.matches("server 127.0.8.2:443 is down").count(),
        1,
        "one state change, logged once:\n{log}"
    );

    // Restarted, it comes back after `rise` passed checks (2 at 1 s), not before.
    p.start("s2", false);
    let took = p.wait_state(ROUTE, "s2", "up");
    assert!(
        took >= Duration::from_millis(900),
        "up after {took:?}: sooner than two checks"
    );
    let (served, failed, out) = p.clients(None, &["--count", "30", "--rate", "60"]);
    assert_eq!(failed, 0, "{out}");
    assert!(
        served.get("s2").copied().unwrap_or(0) > 0,
        "s2 rejoined: {served:?}"
    );
    assert!(
        p.log().contains("server 127.0.8.2:443 is up"),
        "{}",
        p.log()
    );
}

#[test]
fn netns_the_tls_check_catches_a_dead_tls_port_that_the_tcp_check_passes() {
    let Some(mut p) = PoolLab::new("pool-tls-check") else {
        return;
    };
    p.start("s1", false);
    p.start("s4", true);
    let servers = format!("{}{}", server("s1", ""), server("s4", ""));
    let fast = "interval_ms: 300, timeout_ms: 200, rise: 1, fall: 2";
    let routes = format!(
        "{}    - sni: tcp.example.test\n      servers:\n{servers}      health_check: {{ type: tcp, {fast} }}\n",
        route(&servers, &format!("      health_check: {{ type: tls, {fast} }}\n"))
    );
    p.gateway(&routes);
    p.wait_state(ROUTE, "s4", "down");
    // Several more check rounds: the tcp check keeps the mute server up.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(p.state("tcp.example.test", "s4"), "up");
    assert_eq!(p.state(ROUTE, "s4"), "down");
    assert_eq!(p.state(ROUTE, "s1"), "up");
    let checks = &p.servers_json()[&format!("{ROUTE} {}", server_addr("s4"))]["last_check"];
    assert_eq!(checks["ok"], false, "{checks}");
    // With the dead port out, every client of the tls-checked route gets s1.
    let (served, failed, out) = p.clients(None, &["--count", "10", "--rate", "50"]);
    assert_eq!(failed, 0, "{out}");
    assert_eq!(served.get("s1"), Some(&10), "{served:?}");
}

#[test]
fn netns_backups_take_over_only_when_every_primary_is_down_and_full_pools_refuse() {
    let Some(mut p) = PoolLab::new("pool-backup") else {
        return;
    };
    let servers = p.start_three("          backup: true\n");
    p.gateway(&route(
        &servers,
        "      health_check: { interval_ms: 300, timeout_ms: 200, rise: 1, fall: 2 }\n",
    ));
    assert_eq!(p.state(ROUTE, "s3"), "backup");
    let (served, failed, out) = p.clients(None, &["--count", "20", "--rate", "50"]);
    assert_eq!(failed, 0, "{out}");
    assert_eq!(
        served.get("s3"),
        None,
        "the backup served while primaries were up: {served:?}"
    );

    p.stop("s1");
    p.wait_state(ROUTE, "s1", "down");
    let (served, failed, out) = p.clients(None, &["--count", "10", "--rate", "50"]);
    assert_eq!(failed, 0, "{out}");
    assert_eq!(served.get("s2"), Some(&10), "one primary left: {served:?}");

    p.stop("s2");
    p.wait_state(ROUTE, "s2", "down");
    let (served, failed, out) = p.clients(None, &["--count", "10", "--rate", "50"]);
    assert_eq!(failed, 0, "{out}");
    assert_eq!(
        served.get("s3"),
        Some(&10),
        "every primary down: {served:?}"
    );

    p.start("s1", false);
    p.wait_state(ROUTE, "s1", "up");
    let (served, failed, out) = p.clients(None, &["--count", "10", "--rate", "50"]);
    assert_eq!(failed, 0, "{out}");
    assert_eq!(served.get("s1"), Some(&10), "a primary is back: {served:?}");
    p.lab.stop_gateway(p.gateway.take().unwrap());

    // max_connections: two servers of one connection each; a third held connection is
    // refused as over_limit, and the access log says why.
    let servers = format!(
        "{}{}",
        server("s1", "          max_connections: 1\n"),
        server("s3", "          max_connections: 1\n")
    );
    p.gateway(&route(&servers, ""));
    let (served, failed, out) =
        p.clients(None, &["--count", "3", "--rate", "20", "--hold-ms", "1500"]);
    assert_eq!(failed, 1, "{out}");
    assert_eq!(served.values().sum::<usize>(), 2, "{out}");
    let log = p.log();
    assert!(
        log.contains("outcome=over_limit") && log.contains("at its max_connections"),
        "{log}"
    );
}

#[test]
fn netns_a_reload_changes_the_pool_and_servers_that_stay_keep_their_state_and_connections() {
    let Some(mut p) = PoolLab::new("pool-reload") else {
        return;
    };
    for id in ["s1", "s2", "s3"] {
        p.start(id, false);
    }
    let check = "      health_check: { interval_ms: 300, timeout_ms: 200, rise: 2, fall: 2 }\n";
    p.gateway(&route(
        &format!("{}{}", server("s1", ""), server("s2", "")),
        check,
    ));
    p.stop("s2");
    p.wait_state(ROUTE, "s2", "down");
    // Two connections held on s1 across the reload.
    let (idx, log) = p.clients_in_background(
        "held",
        &["--count", "2", "--rate", "20", "--hold-ms", "3000"],
    );
    let open = |p: &PoolLab, id: &str| {
        p.servers_json()[&format!("{ROUTE} {}", server_addr(id))]["open_connections"]
            .as_u64()
            .unwrap()
    };
    let start = Instant::now();
    while open(&p, "s1") < 2 {
        assert!(
            start.elapsed() < PATIENCE,
            "the held connections never opened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Add s3 and give s1 more weight; s2 stays, still down.
    let servers = format!(
        "{}{}{}",
        server("s1", "          weight: 3\n"),
        server("s2", ""),
        server("s3", "")
    );
    let yaml = format!(
        "gateway:
  listeners:
    - name: https
      address: {GATEWAY_IP}:443
  admin:
    address: 127.0.0.1:9080
  connect_timeout_ms: 1000
  routes:
{}",
        route(&servers, check)
    );
    write_config(&p.lab.scratch.dir, &yaml);
    let pid = p.lab.procs[p.gateway.unwrap()].child.id();
    kill("HUP", pid);
    let start = Instant::now();
    while !p
        .servers_json()
        .contains_key(&format!("{ROUTE} {}", server_addr("s3")))
    {
        assert!(
            start.elapsed() < PATIENCE,
            "the reload never added s3:\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let servers = p.servers_json();
    let s1 = &servers[&format!("{ROUTE} {}", server_addr("s1"))];
    assert_eq!(s1["weight"], 3, "{s1}");
    assert_eq!(
        s1["open_connections"], 2,
        "s1 keeps its connection count: {s1}"
    );
    let s2 = &servers[&format!("{ROUTE} {}", server_addr("s2"))];
    assert_eq!(
        s2["state"], "down",
        "s2 keeps its health across the reload: {s2}"
    );
    // The held connections were not touched.
    let (ok, out) = p.lab.wait_exit(idx, &log, PATIENCE);
    assert!(ok, "{out}");
    let (served, failed, out) = parse_clients(&out);
    assert_eq!((failed, served.get("s1")), (0, Some(&2)), "{out}");
    // New connections spread 3:1 over s1 and s3; s2 gets none.
    let (served, failed, out) = p.clients(None, &["--count", "40", "--rate", "50"]);
    assert_eq!(failed, 0, "{out}");
    assert_eq!(served.get("s2"), None, "{served:?}");
    let s1 = served.get("s1").copied().unwrap_or(0);
    assert!(
        (26..=34).contains(&s1),
        "weight 3 against 1 should give s1 about 30: {served:?}"
    );
}

/// The state `/routes?format=json` gives the one server of a broker route.
fn broker_state(lab: &Lab, name: &str) -> Option<String> {
    let (_, body) = lab.admin("/routes?format=json");
    let routes: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
    let r = routes.iter().find(|r| r["sni"] == name)?;
    Some(r["servers"][0]["state"].as_str()?.to_owned())
}

#[test]
fn netns_discovered_brokers_are_checked_so_an_unreachable_one_is_seen_before_clients_are() {
    if !root_or_skip("discovered_brokers_are_checked") {
        return;
    }
    let mut lab = Lab::with_gateway_ns("pool-brokers");
    lab.start_cloud();
    let conf = lab.gateway_conf(
        "sim-secret",
        "",
        "  health_check: { interval_ms: 300, timeout_ms: 200, rise: 1, fall: 2 }\n",
    );
    lab.start_gateway(&conf);
    let b1 = broker(1);
    let wait = |lab: &Lab, state: &str| {
        let start = Instant::now();
        while broker_state(lab, &b1).as_deref() != Some(state) {
            assert!(
                start.elapsed() < PATIENCE,
                "{b1} never became {state}: {}",
                lab.admin("/routes").1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait(&lab, "up");
    // Take broker 1's address away from the cloud's side of the link: it stays advertised,
    // and no client has tried it.
    let ip = lab.cloud_ips.brokers[1];
    let (_, addrs) = lab.run(&lab.cg, 10, &["ip", "-o", "addr", "show"]);
    let dev = addrs
        .lines()
        .find(|l| l.contains(&format!("{ip}/32")))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("the broker's address")
        .to_owned();
    let cg = lab.cg.clone();
    let change = |verb: &str| {
        let (ok, out) = lab.run(
            &cg,
            10,
            &["ip", "addr", verb, &format!("{ip}/32"), "dev", &dev],
        );
        assert!(ok, "{out}");
    };
    change("del");
    wait(&lab, "down");
    let metrics = lab.admin("/metrics").1;
    let ok = metric_value(&metrics, "snigate_connections_total", &[("route", &b1)]);
    assert_eq!(
        ok,
        0.0,
        "no client connection went to {b1}: {}",
        metrics
            .lines()
            .filter(|l| l.contains(&b1) && !l.ends_with(" 0"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The gauge follows within a tick of the scheduler.
    let start = Instant::now();
    while metric_value(
        &lab.admin("/metrics").1,
        "snigate_upstream_up",
        &[("route", &b1)],
    ) != 0.0
    {
        assert!(
            start.elapsed() < PATIENCE,
            "snigate_upstream_up never fell to 0"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        broker_state(&lab, &broker(0)).as_deref(),
        Some("up"),
        "the other brokers stay up"
    );
    change("add");
    wait(&lab, "up");
}

#[test]
fn netns_a_server_named_by_dns_is_resolved_checked_and_served() {
    let Some(mut p) = PoolLab::new("pool-dns") else {
        return;
    };
    p.start("s1", false);
    p.start("s2", false);
    let cg = p.lab.cg.clone();
    p.lab
        .set_hosts(&cg, "127.0.0.1 localhost\n127.0.8.2 kube-2.example.test\n");
    let servers = format!(
        "{}        - address: kube-2.example.test:443\n",
        server("s1", "")
    );
    p.gateway(&route(
        &servers,
        "      health_check: { interval_ms: 300, timeout_ms: 200, rise: 1, fall: 2 }\n",
    ));
    let key = format!("{ROUTE} kube-2.example.test:443");
    let start = Instant::now();
    loop {
        let s = p.servers_json()[&key].clone();
        if s["state"] == "up" && s["last_check"]["ok"] == true {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the named server was never checked: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (served, failed, out) = p.clients(None, &["--count", "20", "--rate", "50"]);
    assert_eq!(failed, 0, "{out}");
    assert_eq!(
        (served.get("s1"), served.get("s2")),
        (Some(&10), Some(&10)),
        "round robin over an address and a name: {served:?}"
    );
    // The name's server stopped: its check sees it, by the name's address.
    p.stop("s2");
    let start = Instant::now();
    while p.servers_json()[&key]["state"] != "down" {
        assert!(start.elapsed() < PATIENCE, "{}", p.lab.admin("/routes").1);
        std::thread::sleep(Duration::from_millis(50));
    }
}
