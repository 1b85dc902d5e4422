//! The running cloud: the mock cluster, its fronts, the hosts list, and the control socket
//! that changes the advertised brokers while clients are connected.
//!
//! Control protocol (one command per line on `DIR/control.sock`, one reply line each):
//! - `advertise ID HOST`: broker ID advertises HOST:9092 from now on;
//! - `add ID IP`: a new broker ID, advertised as `b{ID-1}-<cluster>…`, fronted on IP:9092;
//! - `decommission ID`: broker ID leaves the cluster;
//! - `brokers`: the advertised list, as `ID HOST:PORT` pairs.
//!
//! Replies start with `ok` or `error`. `DIR/hosts` is rewritten after each change.

use crate::front::{self, Credentials, Front};
use crate::mock::MockCluster;
use crate::wire::ApiRange;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;

/// One line of the hosts file, and the broker behind it (None for bootstrap/REST/SR).
#[derive(Clone)]
pub struct HostLine {
    /// Address of the front.
    pub ip: IpAddr,
    /// Name it serves.
    pub name: String,
    /// Broker id, for broker fronts.
    pub broker: Option<i32>,
}

/// Everything the control commands need.
pub struct Cloud {
    /// The mock cluster.
    pub cluster: MockCluster,
    /// `<region>.aws.confluent.test`.
    pub domain: String,
    /// `pkc-<id>`.
    pub cluster_name: String,
    /// Kafka port of every front.
    pub kafka_port: u16,
    /// ApiVersions list the fronts answer.
    pub apis: Arc<Vec<ApiRange>>,
    /// TLS for the fronts.
    pub tls: TlsAcceptor,
    /// Accepted credentials.
    pub creds: Arc<Credentials>,
    /// Where ca.pem, hosts and control.sock live.
    pub dir: PathBuf,
    /// The hosts list.
    pub hosts: Mutex<Vec<HostLine>>,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

impl Cloud {
    /// Binds `ip:kafka_port` and serves a front for `name` relaying to `broker`.
    pub async fn start_front(
        &self,
        name: &str,
        ip: IpAddr,
        broker: SocketAddr,
        id: Option<i32>,
    ) -> Result<()> {
        let listener = TcpListener::bind(SocketAddr::new(ip, self.kafka_port))
            .await
            .map_err(|e| format!("{name}: cannot listen on {ip}:{}: {e}", self.kafka_port))?;
        log::info!(
            "kafka front {name} on {ip}:{} -> mock broker {broker}",
            self.kafka_port
        );
        let f = Arc::new(Front {
            name: name.to_owned(),
            broker,
            apis: self.apis.clone(),
            tls: self.tls.clone(),
            creds: self.creds.clone(),
        });
        tokio::spawn(front::serve(f, listener));
        self.lock_hosts().push(HostLine {
            ip,
            name: name.to_owned(),
            broker: id,
        });
        Ok(())
    }

    fn lock_hosts(&self) -> std::sync::MutexGuard<'_, Vec<HostLine>> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rewrites `DIR/hosts` in place.
    pub fn write_hosts(&self) -> Result<()> {
        let text: String = self
            .lock_hosts()
            .iter()
            .map(|h| format!("{} {}\n", h.ip, h.name))
            .collect();
        std::fs::write(self.dir.join("hosts"), text)?;
        Ok(())
    }

    /// The first broker's real address, for asking the cluster about itself.
    fn first_broker(&self) -> Result<SocketAddr> {
        Ok(self
            .cluster
            .listeners
            .first()
            .map(|l| l.1)
            .ok_or("no brokers")?)
    }

    /// The broker name for id `id`.
    pub fn broker_name(&self, id: i32) -> String {
        format!("b{}-{}.{}", id - 1, self.cluster_name, self.domain)
    }

    async fn command(&self, line: &str) -> Result<String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["advertise", id, host] => {
                let id: i32 = id.parse()?;
                self.cluster.advertise(id, host, self.kafka_port)?;
                let mut hosts = self.lock_hosts();
                let line = hosts
                    .iter_mut()
                    .find(|h| h.broker == Some(id))
                    .ok_or("no front for that broker")?;
                line.name = (*host).to_owned();
                drop(hosts);
                self.write_hosts()?;
                Ok(format!(
                    "ok broker {id} advertises {host}:{}",
                    self.kafka_port
                ))
            }
            ["add", id, ip] => {
                let id: i32 = id.parse()?;
                let ip: IpAddr = ip.parse()?;
                self.cluster.add_broker(id)?;
                let first = self.first_broker()?;
                let port = front::broker_list(first)
                    .await?
                    .into_iter()
                    .find(|b| b.0 == id)
                    .map(|b| b.2)
                    .ok_or("the new broker is not in the metadata")?;
                let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), u16::try_from(port)?);
                let name = self.broker_name(id);
                self.cluster.advertise(id, &name, self.kafka_port)?;
                self.start_front(&name, ip, addr, Some(id)).await?;
                self.write_hosts()?;
                Ok(format!(
                    "ok broker {id} added as {name}:{}",
                    self.kafka_port
                ))
            }
            ["decommission", id] => {
                let id: i32 = id.parse()?;
                self.cluster.decommission(id)?;
                self.lock_hosts().retain(|h| h.broker != Some(id));
                self.write_hosts()?;
                Ok(format!("ok broker {id} decommissioned"))
            }
            ["brokers"] => {
                let first = self.first_broker()?;
                let list = front::broker_list(first).await?;
                let parts: Vec<String> = list
                    .iter()
                    .map(|(i, h, p)| format!("{i} {h}:{p}"))
                    .collect();
                Ok(format!("ok {}", parts.join(", ")))
            }
            _ => Err(
                "unknown command; use advertise ID HOST | add ID IP | decommission ID | brokers"
                    .into(),
            ),
        }
    }

    /// Serves the control socket forever.
    pub async fn control(self: Arc<Self>, listener: UnixListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let cloud = self.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply = match cloud.command(&line).await {
                        Ok(r) => r,
                        Err(e) => format!("error {e}"),
                    };
                    log::info!("control: {line} -> {reply}");
                    if w.write_all(format!("{reply}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
}
