//! Kafka client helpers for the walkthrough: a producer of keyed messages and a consumer
//! group that checks it got exactly those messages back.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Where each key was stored: its (partition, offset) pairs.
type Stored = HashMap<String, HashSet<(i32, i64)>>;

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

/// Produces `count` messages keyed `{prefix}-{i}` with an idempotent producer (acks=all)
/// and waits for every acknowledgement. With `rate`, sends about that many per second.
///
/// With `transactional`, messages go in transactions of 100, each committed before the
/// next begins; a transaction that fails is aborted and sent again. librdkafka's mock
/// cluster checks producer sequence numbers (and so drops a retried duplicate) only for
/// transactional producers, so this is how a test proves that nothing was written twice.
pub async fn produce(
    conn: &Conn,
    topic: &str,
    count: usize,
    prefix: &str,
    rate: Option<u32>,
    transactional: bool,
) -> Result<()> {
    let mut config = conn.config();
    config
        .set("message.timeout.ms", "120000")
        .set("acks", "all")
        .set("enable.idempotence", "true");
    if transactional {
        config
            .set("transactional.id", format!("simcloud-{prefix}"))
            .set("transaction.timeout.ms", "120000");
    }
    let producer: FutureProducer = config.create()?;
    let txn_timeout = Duration::from_secs(60);
    if transactional {
        producer.init_transactions(txn_timeout)?;
    }
    let batch = if transactional { 100 } else { count.max(1) };
    let started = Instant::now();
    let (mut next, mut aborted) = (0, 0);
    while next < count {
        let end = (next + batch).min(count);
        if transactional {
            producer.begin_transaction()?;
        }
        let mut pending = Vec::with_capacity(end - next);
        for i in next..end {
            if let Some(rate) = rate.filter(|r| *r > 0) {
                let due = started + Duration::from_secs_f64(i as f64 / f64::from(rate));
                tokio::time::sleep_until(due.into()).await;
            }
            pending.push(send(&producer, topic, prefix, i).await?);
        }
        let mut failed = 0;
        for p in pending {
            if !matches!(p.await, Ok(Ok(_))) {
                failed += 1;
            }
        }
        if !transactional {
            if failed > 0 {
                return Err(format!("{failed} of {count} messages were not acknowledged").into());
            }
            next = end;
            continue;
        }
        let committed = if failed == 0 {
            producer
                .commit_transaction(txn_timeout)
                .map_err(|e| e.to_string())
        } else {
            Err(format!("{failed} messages were not acknowledged"))
        };
        match committed {
            Ok(()) => next = end,
            Err(why) => {
                aborted += 1;
                eprintln!("transaction of messages {next}..{end} failed ({why}); aborting and sending it again");
                producer.abort_transaction(txn_timeout)?;
                if aborted > 20 {
                    return Err("more than 20 transactions failed".into());
                }
            }
        }
    }
    println!("produced {count} ({aborted} transactions aborted and sent again)");
    Ok(())
}

/// Enqueues message `i`, waiting while the local queue is full.
async fn send(
    producer: &FutureProducer,
    topic: &str,
    prefix: &str,
    i: usize,
) -> Result<rdkafka::producer::DeliveryFuture> {
    let key = format!("{prefix}-{i}");
    let value = format!("value-{i}");
    let mut record = FutureRecord::to(topic).key(&key).payload(&value);
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
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

/// Runs `members` consumers in group `group` until the keys `{prefix}-0..expect` have all
/// arrived and every member got messages, or the timeout passes. Offsets are not
/// committed, so a member that joins late re-reads its partitions from the start; a
/// message read twice that way is not a duplicate, but one key stored at two offsets is.
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
    let stored: Arc<Mutex<Stored>> = Arc::default();
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
        let stored = stored.clone();
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
                if let Ok(mut s) = stored.lock() {
                    s.entry(key.clone())
                        .or_default()
                        .insert((msg.partition(), msg.offset()));
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
    let duplicated = stored
        .lock()
        .map(|s| s.values().filter(|at| at.len() > 1).count())
        .unwrap_or(0);
    let summary: Vec<String> = counts
        .iter()
        .enumerate()
        .map(|(i, n)| format!("member{i}: {n}"))
        .collect();
    println!(
        "consumed {got} distinct of {expect} expected, {duplicated} duplicated, {stray} unexpected ({})",
        summary.join(", ")
    );
    if got != expect || stray != 0 || duplicated != 0 || counts.contains(&0) {
        return Err("the consumer group did not get exactly the expected messages".into());
    }
    Ok(())
}
