//! Connection rate and latency: each of `concurrency` workers in turn connects, sends a
//! ClientHello (the names in rotation) and a request, reads the upstream's reply, and
//! closes. Latency is from the start of connect to the last byte of the reply.

use crate::client::{connect, cpu_seconds};
use crate::upstream::{REPLY, REPLY_LEN};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What one run measured.
pub struct RateResult {
    /// Connections completed per second in the measured window.
    pub per_sec: f64,
    /// Latency percentiles, microseconds: p50, p99, p99.9.
    pub latency_us: [u64; 3],
    /// Connections that failed.
    pub errors: u64,
    /// Proxy CPU microseconds per connection, if its pids were given.
    pub cpu_us_per_conn: Option<f64>,
}

/// One request per target: the hello for each name with the reply command after it.
pub fn requests(hellos: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
    hellos
        .iter()
        .map(|(_, h)| {
            let mut r = h.clone();
            r.push(REPLY);
            r
        })
        .collect()
}

/// Runs the workload: `warmup` first (not measured), then `duration`.
pub async fn run(
    targets: Vec<SocketAddr>,
    requests: Vec<Vec<u8>>,
    sources: Vec<IpAddr>,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    pids: Vec<u32>,
) -> RateResult {
    let requests = Arc::new(requests);
    let targets = Arc::new(targets);
    let sources = Arc::new(sources);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (requests, targets, sources) = (requests.clone(), targets.clone(), sources.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
            let (mut errors, mut i) = (0u64, w);
            let mut reply = [0u8; REPLY_LEN];
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let k = i % requests.len();
                let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
                i += concurrency;
                let one = async {
                    let mut s = connect(source, targets[k % targets.len()]).await?;
                    s.write_all(&requests[k]).await?;
                    s.read_exact(&mut reply).await?;
                    Ok::<_, std::io::Error>(())
                };
                let ok = tokio::time::timeout(Duration::from_secs(10), one).await;
                let done = Instant::now();
                if began < measure_from || done > end {
                    continue;
                }
                match ok {
                    Ok(Ok(())) => latencies
                        .push(u32::try_from((done - began).as_micros()).unwrap_or(u32::MAX)),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep_until((measure_from).into()).await;
    let cpu_before = cpu_seconds(&pids);
    tokio::time::sleep_until(end.into()).await;
    let cpu_after = cpu_seconds(&pids);
    let mut all: Vec<u32> = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    all.sort_unstable();
    let pct = |p: f64| -> u64 {
        if all.is_empty() {
            return 0;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        u64::from(all[i])
    };
    let n = all.len() as f64;
    RateResult {
        per_sec: n / duration.as_secs_f64(),
        latency_us: [pct(0.50), pct(0.99), pct(0.999)],
        errors,
        cpu_us_per_conn: (!pids.is_empty() && n > 0.0).then(|| (cpu_after - cpu_before) * 1e6 / n),
    }
}
