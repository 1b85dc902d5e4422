//! `simcloud churn`: opens new TLS connections at a steady rate, each a full handshake that
//! verifies the server's certificate for the name it asked for, then closes it. It counts
//! every connection that was refused, reset, timed out or failed to verify.

use rustls::pki_types::ServerName;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Opens `rate` connections per second to `target` for `seconds`, with SNI `name`.
pub async fn churn(target: &str, name: &str, ca: &str, rate: u32, seconds: u64) -> Result<()> {
    let connector = crate::pki::connector(std::path::Path::new(ca))?;
    let server = ServerName::try_from(name.to_owned())?;
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let total = u64::from(rate) * seconds;
    let mut tasks = Vec::new();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / f64::from(rate.max(1)));
        tokio::time::sleep_until(due.into()).await;
        let (connector, server, target) = (connector.clone(), server.clone(), target.to_owned());
        let (ok, failed) = (ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let attempt = async {
                let tcp = TcpStream::connect(&target).await?;
                let mut tls = connector.connect(server, tcp).await?;
                tls.shutdown().await
            };
            match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                Ok(Ok(())) => ok.fetch_add(1, Ordering::Relaxed),
                Ok(Err(e)) => {
                    eprintln!("churn: connection {i} failed: {e}");
                    failed.fetch_add(1, Ordering::Relaxed)
                }
                Err(_) => {
                    eprintln!("churn: connection {i} timed out");
                    failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("churn: {ok} connections ok, {failed} failed");
    if failed > 0 {
        return Err(format!("{failed} of {total} connections failed").into());
    }
    Ok(())
}
