//! Memory per idle relayed connection: open `conns` connections through the proxy, each
//! confirmed end to end by its upstream, and compare the proxy's resident memory with
//! what it was before.

use crate::client::{connect, rss_kib};
use crate::upstream::IDLE;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// What one run measured.
pub struct IdleResult {
    /// Resident KiB before and with the connections open.
    pub rss_kib: (u64, u64),
    /// Connections held.
    pub conns: usize,
}

impl IdleResult {
    /// KiB per connection.
    pub fn per_conn(&self) -> f64 {
        (self.rss_kib.1 as f64 - self.rss_kib.0 as f64) / self.conns.max(1) as f64
    }
}

async fn open(
    target: SocketAddr,
    source: Option<IpAddr>,
    request: &[u8],
) -> std::io::Result<TcpStream> {
    let mut s = connect(source, target).await?;
    s.write_all(request).await?;
    let mut k = [0u8; 1];
    s.read_exact(&mut k).await?;
    Ok(s)
}

/// Opens the connections (a few hundred at a time), measures, then closes them.
pub async fn run(
    targets: Vec<SocketAddr>,
    hellos: Vec<Vec<u8>>,
    sources: Vec<IpAddr>,
    conns: usize,
    pids: Vec<u32>,
) -> std::io::Result<IdleResult> {
    let before = rss_kib(&pids);
    let gate = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(conns);
    for i in 0..conns {
        let mut request = hellos[i % hellos.len()].clone();
        request.push(IDLE);
        let target = targets[i % targets.len()];
        let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            open(target, source, &request).await
        }));
    }
    let mut held = Vec::with_capacity(conns);
    for t in tasks {
        held.push(t.await.map_err(std::io::Error::other)??);
    }
    // Let the proxy settle (deferred frees, timers) before reading its memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(&pids);
    drop(held);
    Ok(IdleResult {
        rss_kib: (before, after),
        conns,
    })
}
