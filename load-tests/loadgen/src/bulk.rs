//! Bulk throughput: `conns` connections each move bytes one way for `duration`, through
//! the proxy to the upstream (`up`) or from it (`down`). The rate counts the bytes the
//! client wrote (`up`) or read (`down`) in that time. (Not every gateway passes a
//! half-close on, so `up` cannot ask the upstream for its count; the bytes still in
//! buffers at the end are a few MB against gigabytes.)

use crate::client::connect;
use crate::upstream::{SINK, SOURCE};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHUNK: usize = 256 * 1024;

/// Megabytes (10^6 bytes) per second over all connections.
pub async fn run(
    target: SocketAddr,
    hello: Vec<u8>,
    sources: Vec<IpAddr>,
    conns: usize,
    up: bool,
    duration: Duration,
) -> std::io::Result<f64> {
    let mut tasks = Vec::new();
    let started = Instant::now();
    for c in 0..conns {
        let mut request = hello.clone();
        request.push(if up { SINK } else { SOURCE });
        let source = (!sources.is_empty()).then(|| sources[c % sources.len()]);
        tasks.push(tokio::spawn(async move {
            let mut s = connect(source, target).await?;
            s.write_all(&request).await?;
            let mut buf = vec![0u8; CHUNK];
            let began = Instant::now();
            let bytes = if up {
                let chunk = vec![0xa5u8; CHUNK];
                let mut total = 0u64;
                while began.elapsed() < duration {
                    s.write_all(&chunk).await?;
                    total += CHUNK as u64;
                }
                total
            } else {
                let mut total = 0u64;
                while began.elapsed() < duration {
                    let n = s.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                total
            };
            Ok::<_, std::io::Error>(bytes)
        }));
    }
    let mut total = 0u64;
    for t in tasks {
        total += t.await.map_err(std::io::Error::other)??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64() / 1e6)
}
