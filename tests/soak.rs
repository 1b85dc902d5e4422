//! A soak of the process life cycle under real Kafka load, in network namespaces (needs
//! root; CI runs as root): ten upgrades in a row, alternating worker-only and full ones
//! (the stable process re-executes itself), and five SIGHUP reloads between them, while a
//! transactional producer, a consumer group of two and a client opening new TLS
//! connections at a steady rate go through snigate. Nothing may be refused, lost or
//! duplicated, and the stable process may not grow: its open descriptors and resident
//! memory after the last upgrade stay within 10% of what they were after the first.

mod common;

use common::lab::*;
use common::*;
use std::time::{Duration, Instant};

const UPGRADES: usize = 10;
const MESSAGES: usize = 7000;
const RATE: u32 = 100;

/// The stable process's open descriptors and resident memory (KiB), once they hold still.
fn footprint(pid: u32) -> (usize, u64) {
    let read = || {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        (fds, rss)
    };
    let start = Instant::now();
    loop {
        let before = read();
        std::thread::sleep(Duration::from_millis(200));
        let after = read();
        if before.0 == after.0 || start.elapsed() > PATIENCE {
            return after;
        }
    }
}

fn within_10_percent(first: u64, last: u64) -> bool {
    last * 10 <= first * 11 && last * 10 >= first * 9
}

#[test]
fn netns_soak_ten_upgrades_and_five_reloads_lose_nothing() {
    if !root_or_skip("netns_soak_ten_upgrades_and_five_reloads_lose_nothing") {
        return;
    }
    let begun = Instant::now();
    let mut lab = Lab::new("soak");
    lab.start_cloud();
    let conf = lab.gateway_conf("sim-secret", "grace_period_seconds: 3\n", "");
    let gw = lab.start_gateway(&conf);
    let stable = lab.procs[gw].child.id();
    let load = KafkaLoad::start(&mut lab, "soak", MESSAGES, RATE, 150, 70);

    let mut first = None;
    let mut reloads = 0;
    for round in 1..=UPGRADES {
        let worker_only = round % 2 == 1;
        let flags: &[&str] = if worker_only { &["--worker-only"] } else { &[] };
        let (ok, out) = lab.upgrade(&conf, flags);
        assert!(ok, "upgrade {round}: {out}");
        assert_eq!(
            out.contains("re-executed"),
            !worker_only,
            "upgrade {round}:\n{out}"
        );
        lab.wait_one_worker(Duration::from_secs(30));
        if round % 2 == 0 {
            // A reload in place, on the worker the upgrade just started.
            kill("HUP", stable);
            lab.wait_admin("/metrics", "the reload", |_, m| {
                metric_value(m, "snigate_config_reloads_total", &[("outcome", "ok")]) >= 1.0
            });
            reloads += 1;
        }
        let now = footprint(stable);
        println!(
            "upgrade {round} ({}) done after {:?}: the stable process holds {} descriptors, {} KiB resident",
            if worker_only { "worker only" } else { "re-exec" },
            begun.elapsed(),
            now.0,
            now.1
        );
        first.get_or_insert(now);
    }
    let last = footprint(stable);
    println!("{}", load.finish(&mut lab));

    let first = first.unwrap_or(last);
    assert_eq!(reloads, 5);
    assert!(
        within_10_percent(first.0 as u64, last.0 as u64),
        "descriptors after the first upgrade {}, after the last {}",
        first.0,
        last.0
    );
    assert!(
        within_10_percent(first.1, last.1),
        "resident memory after the first upgrade {} KiB, after the last {} KiB",
        first.1,
        last.1
    );
    assert!(pid_alive(stable), "the stable process exited");
    let pid_file = std::fs::read_to_string(lab.scratch.path("snigate.pid")).unwrap();
    assert_eq!(pid_file.trim(), stable.to_string());
    let log = std::fs::read_to_string(lab.path("snigate.log")).unwrap();
    assert_eq!(log.matches("upgrade done").count(), UPGRADES, "{log}");
    assert_eq!(log.matches("re-executed").count(), UPGRADES / 2, "{log}");
    assert!(!log.contains(" ERROR "), "the soak logged an error:\n{log}");
    let took = begun.elapsed();
    println!("soak took {took:?}");
    assert!(took < Duration::from_secs(180), "the soak took {took:?}");
}
