//! simcloud: a local stand-in for a Confluent Cloud cluster, for snigate's demo and tests.
//!
//! `simcloud serve` starts librdkafka's mock cluster with N brokers that advertise
//! `b{i}-pkc-<id>.<region>.aws.confluent.test:9092`, and in front of each broker and of
//! the bootstrap name a TLS + SASL/PLAIN front on port 9092 of its own address, the way
//! Confluent Cloud's edge works. It also serves Kafka REST (`pkac-…:443`) and Schema
//! Registry (`psrc-…:443`) over HTTPS with basic auth. A CA is made at start; its PEM is
//! written to `DIR/ca.pem`, the names to `DIR/hosts`, and `DIR/ready` appears once
//! everything listens.
//!
//! `simcloud produce` and `simcloud consume` are Kafka clients (rdkafka) for checking the
//! path end to end. Credentials come from SIMCLOUD_KEY and SIMCLOUD_SECRET.
//!
//! While it runs, `DIR/control.sock` takes commands that change the advertised brokers
//! (see the `cloud` module). A restarted cloud reuses the certificate saved in DIR.

mod churn;
mod client;
mod cloud;
mod front;
mod https;
mod mock;
mod pki;
mod pool;
mod wire;

use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(name = "simcloud", about = "A local stand-in for Confluent Cloud")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Creds {
    /// API key (SASL username, basic-auth user).
    #[arg(long, env = "SIMCLOUD_KEY", hide_env_values = true)]
    key: String,
    /// API secret (SASL password, basic-auth password).
    #[arg(long, env = "SIMCLOUD_SECRET", hide_env_values = true)]
    secret: String,
}

impl Creds {
    fn conn(self, bootstrap: String, ca: String) -> client::Conn {
        client::Conn {
            bootstrap,
            ca,
            key: self.key,
            secret: self.secret,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the simulated cloud.
    Serve(Serve),
    /// Produce keyed messages through SASL_SSL.
    Produce {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        ca: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long)]
        prefix: String,
        /// Messages per second; as fast as possible without it.
        #[arg(long)]
        rate: Option<u32>,
        /// Send in committed transactions of 100 (see `client::produce`).
        #[arg(long)]
        transactional: bool,
        #[command(flatten)]
        creds: Creds,
    },
    /// Open TLS connections at a steady rate and count the ones that fail.
    Churn {
        /// `host:port` to connect to.
        #[arg(long)]
        target: String,
        /// The name to ask for (SNI) and to verify.
        #[arg(long)]
        name: String,
        #[arg(long)]
        ca: String,
        /// Connections per second.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Write a CA and one certificate per pool server id (see `pool`).
    PoolCerts {
        #[arg(long)]
        dir: PathBuf,
        /// The pool's name, which every certificate is valid for.
        #[arg(long)]
        name: String,
        /// Server ids, comma-separated.
        #[arg(long, value_delimiter = ',')]
        ids: Vec<String>,
    },
    /// Serve as one pool server (see `pool`).
    PoolServer {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        listen: SocketAddr,
        /// Accept TCP and never answer.
        #[arg(long)]
        mute: bool,
    },
    /// Open connections through a pool and count which server served each (see `pool`).
    PoolClient {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        name: String,
        #[arg(long)]
        dir: PathBuf,
        /// Source address.
        #[arg(long)]
        bind: Option<IpAddr>,
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// Connections started per second.
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// Milliseconds each connection stays open after its echo.
        #[arg(long, default_value_t = 0)]
        hold_ms: u64,
    },
    /// Consume with a consumer group and check exactly the expected keys arrived.
    Consume {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        ca: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        group: String,
        #[arg(long, default_value_t = 2)]
        members: usize,
        #[arg(long)]
        expect: usize,
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
        #[command(flatten)]
        creds: Creds,
    },
}

#[derive(Args)]
struct Serve {
    /// Directory for ca.pem, hosts and ready.
    #[arg(long)]
    dir: PathBuf,
    /// Cluster id, as in pkc-<id>.
    #[arg(long, default_value = "pkc-sim01")]
    cluster: String,
    /// Region, as in <region>.aws.confluent.test.
    #[arg(long, default_value = "eu-west-2")]
    region: String,
    /// Number of brokers.
    #[arg(long, default_value_t = 3)]
    brokers: i32,
    /// Address of the bootstrap front.
    #[arg(long)]
    bootstrap_ip: IpAddr,
    /// Addresses of the broker fronts, comma-separated, one per broker.
    #[arg(long, value_delimiter = ',')]
    broker_ips: Vec<IpAddr>,
    /// Address of the Kafka REST endpoint.
    #[arg(long)]
    rest_ip: IpAddr,
    /// Address of the Schema Registry endpoint.
    #[arg(long)]
    sr_ip: IpAddr,
    /// Kafka port of every front.
    #[arg(long, default_value_t = 9092)]
    kafka_port: u16,
    /// HTTPS port of REST and Schema Registry.
    #[arg(long, default_value_t = 443)]
    https_port: u16,
    /// Topics to create, as NAME:PARTITIONS (repeatable).
    #[arg(long = "topic", default_value = "demo:6")]
    topics: Vec<String>,
    #[command(flatten)]
    creds: Creds,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("simcloud: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(s) => serve(s).await,
            Command::Produce {
                bootstrap,
                ca,
                topic,
                count,
                prefix,
                rate,
                transactional,
                creds,
            } => {
                let conn = creds.conn(bootstrap, ca);
                client::produce(&conn, &topic, count, &prefix, rate, transactional).await
            }
            Command::Churn {
                target,
                name,
                ca,
                rate,
                seconds,
            } => churn::churn(&target, &name, &ca, rate, seconds).await,
            Command::PoolCerts { dir, name, ids } => pool::certs(&dir, &name, &ids),
            Command::PoolServer {
                dir,
                id,
                listen,
                mute,
            } => pool::server(&dir, &id, listen, mute).await,
            Command::PoolClient {
                target,
                name,
                dir,
                bind,
                count,
                rate,
                hold_ms,
            } => {
                pool::client(pool::ClientRun {
                    target,
                    name,
                    dir,
                    bind,
                    count,
                    rate,
                    hold: Duration::from_millis(hold_ms),
                })
                .await
            }
            Command::Consume {
                bootstrap,
                ca,
                topic,
                group,
                members,
                expect,
                prefix,
                timeout_secs,
                creds,
            } => {
                let conn = creds.conn(bootstrap, ca);
                let timeout = Duration::from_secs(timeout_secs);
                tokio::task::spawn_blocking(move || {
                    client::consume(&conn, &topic, &group, members, expect, &prefix, timeout)
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
                .map_err(|e| e.into())
            }
        }
    });
    if let Err(e) = result {
        eprintln!("simcloud: {e}");
        std::process::exit(1);
    }
}

async fn bind(ip: IpAddr, port: u16, what: &str) -> Result<TcpListener> {
    TcpListener::bind(SocketAddr::new(ip, port))
        .await
        .map_err(|e| format!("{what}: cannot listen on {ip}:{port}: {e}").into())
}

async fn serve(s: Serve) -> Result<()> {
    if s.broker_ips.len() != s.brokers as usize {
        return Err(format!(
            "--broker-ips has {} addresses for {} brokers",
            s.broker_ips.len(),
            s.brokers
        )
        .into());
    }
    let domain = format!("{}.aws.confluent.test", s.region);
    let id = s
        .cluster
        .strip_prefix("pkc-")
        .unwrap_or(&s.cluster)
        .to_owned();
    let bootstrap_name = format!("{}.{domain}", s.cluster);
    let rest_name = format!("pkac-{id}.{domain}");
    let sr_name = format!("psrc-{id}.{domain}");
    std::fs::create_dir_all(&s.dir)?;
    let _ = std::fs::remove_file(s.dir.join("ready"));

    let pki = pki::load_or_make(&s.dir, &domain)?;
    let mock = mock::MockCluster::start(s.brokers)?;
    for (topic, parts) in s.topics.iter().filter_map(|t| t.split_once(':')) {
        mock.create_topic(topic, parts.parse()?, s.brokers.min(3))?;
    }
    let first_broker = mock.listeners.first().map(|l| l.1).ok_or("no brokers")?;
    let cloud = Arc::new(cloud::Cloud {
        apis: Arc::new(front::broker_apis(first_broker).await?),
        cluster: mock,
        domain: domain.clone(),
        cluster_name: s.cluster.clone(),
        kafka_port: s.kafka_port,
        tls: pki.acceptor.clone(),
        creds: Arc::new(front::Credentials {
            key: s.creds.key.clone(),
            secret: s.creds.secret.clone(),
        }),
        dir: s.dir.clone(),
        hosts: std::sync::Mutex::new(Vec::new()),
    });
    cloud
        .start_front(&bootstrap_name, s.bootstrap_ip, first_broker, None)
        .await?;
    let brokers = cloud.cluster.listeners.clone();
    for (i, (bid, addr)) in brokers.iter().enumerate() {
        let name = cloud.broker_name(*bid);
        cloud.cluster.advertise(*bid, &name, s.kafka_port)?;
        cloud
            .start_front(&name, s.broker_ips[i], *addr, Some(*bid))
            .await?;
    }
    let basic = Arc::new(https::base64(
        format!("{}:{}", s.creds.key, s.creds.secret).as_bytes(),
    ));
    for (name, ip, kind) in [
        (rest_name, s.rest_ip, https::Kind::Rest),
        (sr_name, s.sr_ip, https::Kind::SchemaRegistry),
    ] {
        let listener = bind(ip, s.https_port, &name).await?;
        log::info!("{kind:?} {name} on {ip}:{}", s.https_port);
        cloud
            .hosts
            .lock()
            .map_err(|_| "hosts lock")?
            .push(cloud::HostLine {
                ip,
                name,
                broker: None,
            });
        tokio::spawn(https::serve(
            listener,
            pki.acceptor.clone(),
            kind,
            basic.clone(),
        ));
    }
    cloud.write_hosts()?;
    let sock = s.dir.join("control.sock");
    let _ = std::fs::remove_file(&sock);
    tokio::spawn(
        cloud
            .clone()
            .control(tokio::net::UnixListener::bind(&sock)?),
    );
    std::fs::write(s.dir.join("ready"), "ready\n")?;
    log::info!(
        "simulated cloud ready: {} brokers, bootstrap {bootstrap_name}:{}",
        s.brokers,
        s.kafka_port
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = std::fs::remove_file(s.dir.join("ready"));
    let _ = std::fs::remove_file(&sock);
    log::info!("simulated cloud stopping");
    // Stop the fronts' runtime work before the mock cluster goes.
    std::process::exit(0);
}
