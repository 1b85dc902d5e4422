//! Zero-downtime operation under real Kafka load, in network namespaces (needs root; CI
//! runs as root): three full `snigate upgrade`s in a row (the stable process re-executes
//! itself, then replaces its worker) while a transactional producer, a consumer group of
//! two and a client opening new TLS connections at a steady rate all go through snigate to
//! the simulated cloud.

mod common;

use common::lab::*;
use common::*;
use std::time::{Duration, Instant};

const MESSAGES: usize = 3000;

#[test]
fn netns_three_upgrades_refuse_no_connection_and_lose_no_message() {
    if !root_or_skip("netns_three_upgrades_refuse_no_connection_and_lose_no_message") {
        return;
    }
    let mut lab = Lab::new("zdt");
    lab.start_cloud();
    let conf = lab.gateway_conf("sim-secret", "grace_period_seconds: 4\n", "");
    let gw = lab.start_gateway(&conf);
    let stable = lab.procs[gw].child.id();
    let load = KafkaLoad::start(&mut lab, "zdt", MESSAGES, 100, 150, 30);

    let begun = Instant::now();
    for round in 1..=3 {
        let (ok, out) = lab.upgrade(&conf, &[]);
        assert!(ok, "upgrade {round}: {out}");
        println!("upgrade {round} done after {:?}", begun.elapsed());
        // The next upgrade starts once the old worker has drained and exited.
        lab.wait_one_worker(Duration::from_secs(30));
    }
    println!("all three upgrades drained after {:?}", begun.elapsed());
    println!("{}", load.finish(&mut lab));

    assert!(pid_alive(stable), "the stable process exited");
    assert!(
        lab.status().contains(&format!("supervisor={stable} ")),
        "{}",
        lab.status()
    );
    let pid_file = std::fs::read_to_string(lab.scratch.path("snigate.pid")).unwrap();
    assert_eq!(pid_file.trim(), stable.to_string());
    let log = std::fs::read_to_string(lab.path("snigate.log")).unwrap();
    assert_eq!(log.matches("upgrade done").count(), 3, "{log}");
    assert_eq!(log.matches("re-executed").count(), 3, "{log}");
    assert!(
        log.contains("outcome=drained"),
        "no connection was drained:\n{log}"
    );
    assert!(
        !log.contains(" ERROR "),
        "an upgrade logged an error:\n{log}"
    );
}
