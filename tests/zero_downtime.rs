//! Zero-downtime operation under real Kafka load, in network namespaces (needs root; CI
//! runs as root): three `snigate upgrade`s in a row while an idempotent producer
//! (acks=all, transactional so that the mock cluster checks its sequence numbers), a
//! consumer group of two and a client opening new TLS connections at a steady rate all go
//! through snigate to the simulated cloud.

mod common;

use common::lab::*;
use common::*;
use std::time::{Duration, Instant};

const MESSAGES: usize = 3000;
const RATE: &str = "100";

/// The stable process's `status` line (a path-named Unix socket is reachable from any
/// network namespace).
fn status(lab: &Lab) -> String {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(lab.scratch.path("snigate.ctl")).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"status\n").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    line.trim().to_owned()
}

fn workers(lab: &Lab) -> usize {
    status(lab)
        .split(' ')
        .find_map(|f| f.strip_prefix("workers="))
        .map_or(0, |w| w.split(',').filter(|p| !p.is_empty()).count())
}

#[test]
fn netns_three_upgrades_refuse_no_connection_and_lose_no_message() {
    if !root_or_skip("netns_three_upgrades_refuse_no_connection_and_lose_no_message") {
        return;
    }
    let mut lab = Lab::new("zdt");
    lab.start_cloud();
    let conf = lab.gateway_conf("sim-secret", "grace_period_seconds: 4\n", "");
    let conf_s = conf.display().to_string();
    let cg = lab.cg.clone();
    let gw = lab.start_gateway(&conf);
    let stable = lab.procs[gw].child.id();

    let ca = lab.cloud_dir().join("ca.pem").display().to_string();
    let bootstrap = format!("{BOOTSTRAP}:9092");
    let expect = MESSAGES.to_string();
    let kafka = [
        "--bootstrap",
        &bootstrap,
        "--ca",
        &ca,
        "--topic",
        "demo",
        "--prefix",
        "zdt",
    ];
    let consume = [
        "consume",
        "--group",
        "zdt",
        "--members",
        "2",
        "--expect",
        &expect,
        "--timeout-secs",
        "180",
    ];
    let (consumer, consumer_log) = lab.client("consumer", &[&consume[..], &kafka[..]].concat());
    // Transactional, because the mock cluster drops a retried duplicate only for such a
    // producer; a real cluster does so for every idempotent producer.
    let produce = [
        "produce",
        "--count",
        &expect,
        "--rate",
        RATE,
        "--transactional",
    ];
    let (producer, producer_log) = lab.client("producer", &[&produce[..], &kafka[..]].concat());
    let b0 = broker(0);
    let target = format!("{b0}:9092");
    let churn = [
        "churn",
        "--target",
        &target,
        "--name",
        &b0,
        "--ca",
        &ca,
        "--rate",
        "150",
        "--seconds",
        "30",
    ];
    let (churn, churn_log) = lab.client("churn", &churn);

    // Let every client get going through the first worker.
    let start = Instant::now();
    while metric_value(
        &lab.admin("/metrics").1,
        "snigate_connections_total",
        &[("route", &b0), ("outcome", "ok")],
    ) < 100.0
    {
        assert!(
            start.elapsed() < PATIENCE,
            "the churn client never got through"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let begun = Instant::now();
    for round in 1..=3 {
        let (ok, out) = lab.run(
            &cg,
            150,
            &[
                "env",
                "SIM_KEY=sim-key",
                snigate_bin(),
                "upgrade",
                "-c",
                &conf_s,
            ],
        );
        assert!(ok, "upgrade {round}: {out}");
        println!("upgrade {round} done after {:?}", begun.elapsed());
        // The next upgrade starts once the old worker has drained and exited.
        let start = Instant::now();
        while workers(&lab) > 1 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the old worker never finished: {}",
                status(&lab)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    println!("all three upgrades drained after {:?}", begun.elapsed());
    let (ok, out) = lab.wait_exit(churn, &churn_log, Duration::from_secs(60));
    println!(
        "{}",
        out.lines()
            .find(|l| l.starts_with("churn:"))
            .unwrap_or("no churn summary")
    );
    assert!(
        ok && out.contains(", 0 failed"),
        "new connections were refused or reset:\n{out}\ngateway's outcomes:\n{}",
        lab.admin("/metrics")
            .1
            .lines()
            .filter(|l| l.starts_with("snigate_connections_total") && !l.ends_with(" 0"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (ok, out) = lab.wait_exit(producer, &producer_log, Duration::from_secs(150));
    assert!(
        ok && out.contains(&format!("produced {MESSAGES}")),
        "the producer lost messages:\n{out}"
    );
    println!("producer finished after {:?}", begun.elapsed());
    let (ok, out) = lab.wait_exit(consumer, &consumer_log, Duration::from_secs(200));
    println!(
        "{}",
        out.lines()
            .find(|l| l.starts_with("consumed"))
            .unwrap_or("no consumer summary")
    );
    assert!(
        ok && out.contains(&format!(
            "consumed {MESSAGES} distinct of {MESSAGES} expected, 0 duplicated, 0 unexpected"
        )),
        "the consumer group did not get every message exactly once:\n{out}"
    );

    assert!(pid_alive(stable), "the stable process exited");
    assert!(
        status(&lab).contains(&format!("supervisor={stable} ")),
        "{}",
        status(&lab)
    );
    let pid_file = std::fs::read_to_string(lab.scratch.path("snigate.pid")).unwrap();
    assert_eq!(pid_file.trim(), stable.to_string());
    let log = std::fs::read_to_string(lab.path("snigate.log")).unwrap();
    assert_eq!(log.matches("upgrade done").count(), 3, "{log}");
    assert!(
        log.contains("outcome=drained"),
        "no connection was drained:\n{log}"
    );
    assert!(
        !log.contains(" ERROR "),
        "an upgrade logged an error:\n{log}"
    );
}
