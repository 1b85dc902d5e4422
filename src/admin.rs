//! The admin endpoint: `GET /metrics`, `/health`, `/ready` and `/routes`.
//!
//! - `/health` answers 200 while the process serves HTTP at all.
//! - `/ready` answers 200 once routes are loaded and every listener accepts connections,
//!   and 503 with the reason before that.
//! - `/routes` lists the live route table, one route per line.

use crate::discovery::hub::Hub;
use crate::metrics;
use crate::render;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What `/ready` reports.
#[derive(Debug, Default)]
pub struct Readiness {
    listeners_up: AtomicBool,
}

impl Readiness {
    /// True when every listener accepts connections.
    pub fn listeners_up(&self) -> bool {
        self.listeners_up.load(Ordering::Acquire)
    }

    /// `Ok(routes)` when the gateway serves: every listener accepts connections and every
    /// cluster has routes; otherwise why not.
    pub fn check(&self, hub: &Hub) -> Result<usize, String> {
        if !self.listeners_up() {
            return Err("listeners are not accepting yet".to_owned());
        }
        let pending = hub.pending();
        if !pending.is_empty() {
            return Err(format!(
                "no routes yet for clusters: {}",
                pending.join(", ")
            ));
        }
        Ok(hub.table().len())
    }
}

/// The admin HTTP application.
pub struct AdminApp {
    hub: Arc<Hub>,
    readiness: Arc<Readiness>,
}

impl AdminApp {
    /// Creates the app. `/ready` also waits until every cluster has routes, from
    /// discovery or from the state file.
    pub fn new(hub: Arc<Hub>, readiness: Arc<Readiness>) -> Self {
        AdminApp { hub, readiness }
    }

    fn answer(&self, method: &str, path: &str) -> (StatusCode, &'static str, Vec<u8>) {
        const TEXT: &str = "text/plain; charset=utf-8";
        if method != "GET" && method != "HEAD" {
            return (StatusCode::METHOD_NOT_ALLOWED, TEXT, b"use GET\n".to_vec());
        }
        match path {
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics::render(),
            ),
            "/health" => (StatusCode::OK, TEXT, b"ok\n".to_vec()),
            "/ready" => match self.readiness.check(&self.hub) {
                Ok(routes) => (
                    StatusCode::OK,
                    TEXT,
                    format!("ready: {routes} routes\n").into_bytes(),
                ),
                Err(why) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    format!("not ready: {why}\n").into_bytes(),
                ),
            },
            "/routes" => (
                StatusCode::OK,
                TEXT,
                render::admin(&self.hub.table()).into_bytes(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                TEXT,
                b"not found; try /metrics, /health, /ready or /routes\n".to_vec(),
            ),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let method = req.method.as_str().to_owned();
        let path = req.uri.path().to_owned();
        let (status, content_type, body) = self.answer(&method, &path);
        let len = body.len();
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("content-length", len)
            .body(body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}

/// Background service that marks the gateway ready once every listener accepts a TCP
/// connection. The probe closes without sending a byte, which the listener counts as an
/// `empty` connection and logs only at debug level. Once the whole gateway is ready (every
/// cluster has routes too), it tells the stable process, if there is one.
pub struct ListenerProbe {
    addresses: Vec<SocketAddr>,
    readiness: Arc<Readiness>,
    hub: Arc<Hub>,
    notify: Option<std::path::PathBuf>,
}

impl ListenerProbe {
    /// Probes `addresses` (wildcard binds are probed on loopback); once ready, sends
    /// `ready PID` to the control socket `notify`.
    pub fn new(
        addresses: Vec<SocketAddr>,
        readiness: Arc<Readiness>,
        hub: Arc<Hub>,
        notify: Option<std::path::PathBuf>,
    ) -> Self {
        ListenerProbe {
            addresses,
            readiness,
            hub,
            notify,
        }
    }

    async fn notify_when_ready(&self, shutdown: &mut ShutdownWatch) {
        let Some(socket) = &self.notify else {
            return;
        };
        while self.readiness.check(&self.hub).is_err() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = shutdown.changed() => return,
            }
        }
        let ready = crate::supervisor::control::Request::Ready(std::process::id());
        if let Err(e) = crate::supervisor::control::tell(socket, &ready) {
            log::warn!(
                "cannot tell the stable process at {} that this worker is ready: {e}",
                socket.display()
            );
        }
    }
}

fn probe_target(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

#[async_trait]
impl BackgroundService for ListenerProbe {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        for addr in &self.addresses {
            let target = probe_target(*addr);
            let mut delay = Duration::from_millis(5);
            loop {
                if *shutdown.borrow() {
                    return;
                }
                let attempt = tokio::time::timeout(
                    Duration::from_secs(1),
                    tokio::net::TcpStream::connect(target),
                )
                .await;
                if let Ok(Ok(_stream)) = attempt {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
        log::info!("all listeners accept connections");
        self.readiness.listeners_up.store(true, Ordering::Release);
        self.notify_when_ready(&mut shutdown).await;
    }
}
