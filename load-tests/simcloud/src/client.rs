//! Kafka client helpers for the walkthrough: a producer of keyed messages and a consumer
//! group that checks it got exactly those messages back.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Connection settings shared by producer and consumers.
pub struct Conn {
    /// `host:port`.
    pub bootstrap: String,
    /// CA file.
    pub ca: String,
    /// API key.
    pub key: String,
    /// API secret.
    pub secret: String,
}

impl Conn {
    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanisms", "PLAIN")
            .set("sasl.username", &self.key)
            .set("sasl.password", &self.secret)
            .set("ssl.ca.location", &self.ca)
            .set("log_level", "3");
        c
    }
}

/// Produces `count` messages keyed `{prefix}-{i}` and waits for every acknowledgement.
pub async fn produce(conn: &Conn, topic: &str, count: usize, prefix: &str) -> Result<()> {
    let producer: FutureProducer = conn
        .config()
        .set("message.timeout.ms", "60000")
        .set("acks", "all")
        .create()?;
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("{prefix}-{i}");
        let value = format!("value-{i}");
        let mut record = FutureRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((e, back)) => {
                    if e.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::QueueFull) {
                        return Err(format!("cannot enqueue message {i}: {e}").into());
                    }
                    record = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    let mut failed = 0;
    for p in pending {
        if !matches!(p.await, Ok(Ok(_))) {
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {count} messages were not acknowledged").into());
    }
    println!("produced {count}");
    Ok(())
}

/// Runs `members` consumers in group `group` until the keys `{prefix}-0..expect` have all
/// arrived and every member got messages, or the timeout passes. Offsets are not
/// committed, so a member that joins late re-reads its partitions from the start.
pub fn consume(
    conn: &Conn,
    topic: &str,
    group: &str,
    members: usize,
    expect: usize,
    prefix: &str,
    timeout: Duration,
) -> Result<()> {
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stray: Arc<Mutex<Vec<String>>> = Arc::default();
    let per_member: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new(vec![0; members]));
    let done = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + timeout;
    let want: HashSet<String> = (0..expect).map(|i| format!("{prefix}-{i}")).collect();
    let mut threads = Vec::new();
    for m in 0..members {
        let consumer: BaseConsumer = conn
            .config()
            .set("group.id", group)
            .set("client.id", format!("{group}-member-{m}"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        consumer.subscribe(&[topic])?;
        let (seen, stray, per_member, done, want) = (
            seen.clone(),
            stray.clone(),
            per_member.clone(),
            done.clone(),
            want.clone(),
        );
        let prefix = format!("{prefix}-");
        threads.push(std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Some(Ok(msg)) = consumer.poll(Duration::from_millis(200)) else {
                    continue;
                };
                let key = String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned();
                if !key.starts_with(&prefix) {
                    continue; // other runs' messages in the same topic
                }
                let Ok(mut pm) = per_member.lock() else {
                    return;
                };
                pm[m] += 1;
                if want.contains(&key) {
                    if let Ok(mut s) = seen.lock() {
                        s.insert(key);
                        if s.len() == want.len() && pm.iter().all(|&n| n > 0) {
                            done.store(true, Ordering::Relaxed);
                        }
                    }
                } else if let Ok(mut s) = stray.lock() {
                    s.push(key);
                }
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    let got = seen.lock().map(|s| s.len()).unwrap_or(0);
    let counts = per_member.lock().map(|p| p.clone()).unwrap_or_default();
    let stray = stray.lock().map(|s| s.len()).unwrap_or(0);
    let summary: Vec<String> = counts
        .iter()
        .enumerate()
        .map(|(i, n)| format!("member{i}: {n}"))
        .collect();
    println!(
        "consumed {got} distinct of {expect} expected, {stray} unexpected ({})",
        summary.join(", ")
    );
    if got != expect || stray != 0 || counts.contains(&0) {
        return Err("the consumer group did not get exactly the expected messages".into());
    }
    Ok(())
}
