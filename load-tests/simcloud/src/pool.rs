//! Pool servers and their clients, for the gateway's pool tests.
//!
//! - `simcloud pool-certs`: a CA and one certificate per server id, each valid for the
//!   pool's name and carrying the id as its common name, so that a client can tell the
//!   servers apart by certificate.
//! - `simcloud pool-server`: a TLS server that, after the handshake, sends its id on a line
//!   and then echoes whatever arrives, holding each connection until the client closes it;
//!   with `--mute`, it accepts TCP and never answers (a port whose TLS is dead).
//! - `simcloud pool-client`: opens connections at a rate, verifies each server's
//!   certificate for the pool's name, learns the server from the certificate, checks that
//!   the server's line names the same server and that an echo comes back byte-exact, holds
//!   the connection if asked, and prints how many each server served.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Marks a failure after the handshake: a server accepted the connection, then it was cut.
const CUT: &str = "cut after the handshake: ";

/// Writes `ca.pem`, and `ID.pem` and `ID.key` for each id, into `dir`.
pub fn certs(dir: &Path, name: &str, ids: &[String]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pool test CA");
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    for id in ids {
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, id.as_str());
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        std::fs::write(dir.join(format!("{id}.pem")), cert.pem())?;
        std::fs::write(dir.join(format!("{id}.key")), key.serialize_pem())?;
    }
    Ok(())
}

/// Serves as server `id` on `listen` with the certificate `dir/ID.pem`.
pub async fn server(dir: &Path, id: &str, listen: SocketAddr, mute: bool) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {listen}");
    if mute {
        let mut held = Vec::new();
        loop {
            let (conn, _) = listener.accept().await?;
            held.push(conn);
        }
    }
    let chain = vec![CertificateDer::from_pem_file(
        dir.join(format!("{id}.pem")),
    )?];
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{id}.key")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let line = format!("{id}\n");
    loop {
        let (conn, _) = listener.accept().await?;
        let (acceptor, line) = (acceptor.clone(), line.clone());
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(conn).await else {
                return;
            };
            if tls.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tls.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = tls.shutdown().await;
        });
    }
}

/// What `pool-client` does.
pub struct ClientRun {
    /// `host:port` of the gateway.
    pub target: SocketAddr,
    /// The pool's name (SNI, and the name verified).
    pub name: String,
    /// The directory of `pool-certs`.
    pub dir: std::path::PathBuf,
    /// Source address to connect from.
    pub bind: Option<std::net::IpAddr>,
    /// Connections to open.
    pub count: usize,
    /// Connections started per second.
    pub rate: u32,
    /// How long each connection stays open after its echo.
    pub hold: Duration,
}

/// Which server each certificate belongs to, by its DER bytes.
fn known_certs(dir: &Path) -> Result<Vec<(Vec<u8>, String)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let (Some(stem), Some("pem")) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        if stem == "ca" {
            continue;
        }
        let der = CertificateDer::from_pem_file(&path)?;
        out.push((der.to_vec(), stem.to_owned()));
    }
    Ok(out)
}

async fn one(
    run: &ClientRun,
    connector: &TlsConnector,
    known: &[(Vec<u8>, String)],
    i: usize,
) -> std::result::Result<String, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if let Some(ip) = run.bind {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let tcp: TcpStream = socket
        .connect(run.target)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from(run.name.clone()).map_err(|e| e.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // From here on, a failure cuts a connection that a server accepted.
    let cut = |e: String| format!("{CUT}{e}");
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or_else(|| cut("no certificate".into()))?;
    let by_cert = known
        .iter()
        .find(|(der, _)| *der == cert)
        .map(|(_, id)| id.clone())
        .ok_or_else(|| cut("a certificate of no known server".into()))?;
    let mut tls = BufReader::new(tls);
    let mut line = String::new();
    tls.read_line(&mut line)
        .await
        .map_err(|e| cut(format!("reading the server's line: {e}")))?;
    if line.trim_end() != by_cert {
        return Err(cut(format!(
            "certificate of {by_cert} but the line says {}",
            line.trim_end()
        )));
    }
    let ping = format!("ping {i} through the pool\n");
    tls.get_mut()
        .write_all(ping.as_bytes())
        .await
        .map_err(|e| cut(format!("write: {e}")))?;
    let mut echo = vec![0u8; ping.len()];
    tls.read_exact(&mut echo)
        .await
        .map_err(|e| cut(format!("reading the echo: {e}")))?;
    if echo != ping.as_bytes() {
        return Err(cut("the echo differs from what was sent".into()));
    }
    tokio::time::sleep(run.hold).await;
    let _ = tls.get_mut().shutdown().await;
    Ok(by_cert)
}

/// Runs the client; prints `served ID N` per server, then `ok=N failed=M refused=R`, where
/// the refused ones failed before any server's certificate arrived, and the others were cut
/// after the handshake.
pub async fn client(run: ClientRun) -> Result<()> {
    let connector = crate::pki::connector(&run.dir.join("ca.pem"))?;
    let known = Arc::new(known_certs(&run.dir)?);
    let run = Arc::new(run);
    let served: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let failed = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(run.count);
    for i in 0..run.count {
        let due = started + Duration::from_secs_f64(i as f64 / f64::from(run.rate.max(1)));
        tokio::time::sleep_until(due.into()).await;
        let (run, connector, known) = (run.clone(), connector.clone(), known.clone());
        let (served, failed) = (served.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let limit = Duration::from_secs(10) + run.hold;
            let r = match tokio::time::timeout(limit, one(&run, &connector, &known, i)).await {
                Ok(r) => r,
                Err(_) => Err("timed out".into()),
            };
            match r {
                Ok(id) => {
                    *served
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(id)
                        .or_default() += 1
                }
                Err(e) => failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("connection {i}: {e}")),
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let served = served.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let failed = failed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for (id, n) in &served {
        println!("served {id} {n}");
    }
    for f in failed.iter().take(20) {
        println!("failed: {f}");
    }
    let refused = failed.iter().filter(|f| !f.contains(CUT)).count();
    println!(
        "ok={} failed={} refused={refused}",
        served.values().sum::<usize>(),
        failed.len()
    );
    Ok(())
}
