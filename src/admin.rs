//! The admin endpoint: `GET /metrics`, `/health`, `/ready` and `/routes`.
//!
//! - `/health` answers 200 while the process serves HTTP at all.
//! - `/ready` answers 200 once routes are loaded and every listener accepts connections,
//!   and 503 with the reason before that.
//! - `/` and `/status` serve the status page (see [`crate::status`]).
//! - `/routes` lists the live route table, one route per line, each pool server on a line
//!   of its own under its route; `/routes?format=json` gives the same as JSON.

use crate::discovery::hub::Hub;
use crate::metrics;
use crate::render;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What `/ready` reports.
#[derive(Debug, Default)]
pub struct Readiness {
    listeners_up: AtomicBool,
    /// A stable process is to be told before `/ready` says 200 (so that whoever sees 200
    /// can count on the stable process knowing it too).
    announce: AtomicBool,
    announced: AtomicBool,
}

impl Readiness {
    /// Every listener accepts connections now.
    pub fn set_listeners_up(&self) {
        self.listeners_up.store(true, Ordering::Release);
    }

    /// True when every listener accepts connections.
    pub fn listeners_up(&self) -> bool {
        self.listeners_up.load(Ordering::Acquire)
    }

    /// `/ready` waits until [`ReadyNotifier`] has told the stable process.
    pub fn expect_announcement(&self) {
        self.announce.store(true, Ordering::Release);
    }

    /// What `/ready` answers: [`Readiness::check`], once the stable process (if any) has
    /// been told.
    pub fn ready(&self, hub: &Hub) -> Result<usize, String> {
        let routes = self.check(hub)?;
        if self.announce.load(Ordering::Acquire) && !self.announced.load(Ordering::Acquire) {
            return Err("telling the stable process".to_owned());
        }
        Ok(routes)
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
                "no routable brokers yet for clusters: {}",
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
    status: Option<StatusSource>,
}

/// What the status page needs besides the hub.
pub struct StatusSource {
    /// Listener names and addresses.
    pub listeners: Vec<(String, String)>,
    /// Cluster names.
    pub clusters: Vec<String>,
    /// The drains in progress, this worker's and its predecessors'.
    pub drains: Arc<crate::worker::drain::Board>,
}

impl AdminApp {
    /// Creates the app. `/ready` also waits until every cluster has routes, from
    /// discovery or from the state file.
    pub fn new(hub: Arc<Hub>, readiness: Arc<Readiness>) -> Self {
        AdminApp {
            hub,
            readiness,
            status: None,
        }
    }

    /// Serves the status page at `/` and `/status` too.
    pub fn with_status(mut self, status: StatusSource) -> Self {
        self.status = Some(status);
        self
    }

    /// The status page.
    fn status_page(&self, src: &StatusSource, query: Option<&str>) -> String {
        use crate::status::{self, model};
        let (page, refresh) = status::query(query);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let now = now_ms / 1000;
        let reports = src.drains.reports();
        let samples = model::Samples::gather();
        let (drain, drains, drain_attention) = model::drain_rows(&samples, &reports, now_ms);
        let process = model::ProcessRow {
            version: format!("snigate {}", crate::BUILD),
            uptime: status::uptime(status::STARTED.elapsed().as_secs()),
            worker_pid: std::process::id(),
            drain,
            drains,
            drain_attention,
        };
        let table = self.hub.table();
        let store = self.hub.store();
        let errors = crate::discovery::service::last_errors();
        let built = model::build(
            &samples,
            model::Inputs {
                table: &table,
                pools: &store.pools,
                listeners: &src.listeners,
                clusters: &src.clusters,
                last_errors: &errors,
                process,
                now,
                page,
            },
        );
        status::html::render(&built, refresh)
    }

    /// The live state of a pool route's servers.
    fn servers(&self, route: &snigate_core::routes::Route) -> render::LivePool {
        let pool = self.hub.store().pools.get(&route.label)?;
        Some((pool.spec.clone(), pool.view()))
    }

    fn answer(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
    ) -> (StatusCode, &'static str, Vec<u8>) {
        const TEXT: &str = "text/plain; charset=utf-8";
        if method != "GET" && method != "HEAD" {
            return (StatusCode::METHOD_NOT_ALLOWED, TEXT, b"use GET\n".to_vec());
        }
        match path {
            "/" | "/status" if self.status.is_some() => {
                let Some(src) = &self.status else {
                    return (StatusCode::NOT_FOUND, TEXT, Vec::new());
                };
                (
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    self.status_page(src, query).into_bytes(),
                )
            }
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics::render(),
            ),
            "/health" => (StatusCode::OK, TEXT, b"ok\n".to_vec()),
            "/ready" => match self.readiness.ready(&self.hub) {
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
            "/routes" if query.is_some_and(|q| q.split('&').any(|kv| kv == "format=json")) => {
                let routes = render::routes_json(&self.hub.table(), &|r| self.servers(r));
                match serde_json::to_vec_pretty(&routes) {
                    Ok(body) => (StatusCode::OK, "application/json", body),
                    Err(e) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        TEXT,
                        format!("cannot render the routes: {e}\n").into_bytes(),
                    ),
                }
            }
            "/routes" => (
                StatusCode::OK,
                TEXT,
                render::admin_with(&self.hub.table(), &|r| self.servers(r)).into_bytes(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                TEXT,
                b"not found; try /, /metrics, /health, /ready or /routes\n".to_vec(),
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
        let query = req.uri.query().map(str::to_owned);
        let (status, content_type, body) = self.answer(&method, &path, query.as_deref());
        let len = body.len();
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("content-length", len)
            .body(body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}

/// Background service that tells the stable process, once, when the worker is ready:
/// every listener accepts connections and every cluster has routes.
pub struct ReadyNotifier {
    readiness: Arc<Readiness>,
    hub: Arc<Hub>,
    notify: Option<std::path::PathBuf>,
}

impl ReadyNotifier {
    /// Sends `ready PID` to the control socket `notify` once the worker is ready.
    pub fn new(
        readiness: Arc<Readiness>,
        hub: Arc<Hub>,
        notify: Option<std::path::PathBuf>,
    ) -> Self {
        ReadyNotifier {
            readiness,
            hub,
            notify,
        }
    }
}

#[async_trait]
impl BackgroundService for ReadyNotifier {
    async fn start(&self, mut shutdown: ShutdownWatch) {
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
        self.readiness.announced.store(true, Ordering::Release);
    }
}
