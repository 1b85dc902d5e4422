//! The listener application: read the ClientHello, pick a route, connect, replay the hello,
//! relay both ways, and write one access-log line when the connection closes.

use crate::config::{GatewayConfig, ListenerConfig};
use crate::metrics;
use crate::peek::{self, PeekError};
use crate::relay::{self, RelayEnd};
use crate::routes::{Route, RouteStore, Upstream};
use crate::upstream;
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use prometheus::{Histogram, IntCounter, IntGauge};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// A fatal TLS alert, `unrecognized_name` (112), sent in clear before closing a connection
/// whose SNI has no route, so that the client reports a clear error instead of a bare EOF.
const ALERT_UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// Settings and state shared by every listener.
#[derive(Debug)]
pub struct Shared {
    /// The live route table.
    pub routes: Arc<RouteStore>,
    /// Deadline for the whole ClientHello.
    pub clienthello_timeout: Duration,
    /// Timeout of one upstream connect attempt.
    pub connect_timeout: Duration,
    /// Idle timeout of a relayed connection.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    active: AtomicUsize,
}

impl Shared {
    /// Builds the shared state from the config and the route store.
    pub fn new(cfg: &GatewayConfig, routes: Arc<RouteStore>) -> Self {
        Shared {
            routes,
            clienthello_timeout: cfg.clienthello_timeout,
            connect_timeout: cfg.connect_timeout,
            idle_timeout: cfg.idle_timeout,
            max_connections: cfg.max_connections,
            active: AtomicUsize::new(0),
        }
    }
}

/// One listener's metric series, resolved once instead of per connection.
#[derive(Debug)]
struct ListenerMetrics {
    active: IntGauge,
    bytes_up: IntCounter,
    bytes_down: IntCounter,
    connect_latency: Histogram,
}

/// One listener's application, run by a Pingora listening service.
#[derive(Debug)]
pub struct ListenerApp {
    listener: ListenerConfig,
    shared: Arc<Shared>,
    metrics: ListenerMetrics,
}

impl ListenerApp {
    /// Creates the app for `listener`.
    pub fn new(listener: ListenerConfig, shared: Arc<Shared>) -> Self {
        let name = listener.name.as_str();
        let metrics = ListenerMetrics {
            active: metrics::ACTIVE.with_label_values(&[name]),
            bytes_up: metrics::BYTES.with_label_values(&[name, "upstream"]),
            bytes_down: metrics::BYTES.with_label_values(&[name, "downstream"]),
            connect_latency: metrics::CONNECT_LATENCY.with_label_values(&[name]),
        };
        ListenerApp {
            listener,
            shared,
            metrics,
        }
    }
}

/// Holds one slot of the global connection limit and the active gauge.
struct Slot<'a> {
    shared: &'a Shared,
    gauge: &'a IntGauge,
}

impl<'a> Slot<'a> {
    fn acquire(shared: &'a Shared, gauge: &'a IntGauge) -> Option<Self> {
        let prev = shared.active.fetch_add(1, Ordering::AcqRel);
        if prev >= shared.max_connections {
            shared.active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        gauge.inc();
        Some(Slot { shared, gauge })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.shared.active.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

/// What the access log says about one connection.
struct Record<'a> {
    listener: &'a str,
    client: Option<SocketAddr>,
    sni: Option<String>,
    alpn: String,
    route: Option<Arc<str>>,
    target: Option<String>,
    upstream_addr: Option<SocketAddr>,
    bytes_up: u64,
    bytes_down: u64,
    started: Instant,
    outcome: &'static str,
    detail: Option<String>,
}

impl Record<'_> {
    /// Counts the connection and writes its access-log line.
    fn finish(self) {
        let route = self.route.as_deref().unwrap_or("-");
        metrics::CONNECTIONS
            .with_label_values(&[self.listener, route, self.outcome])
            .inc();
        let line = format!(
            "client={} listener={} sni={} alpn={} route={} upstream={} upstream_addr={} bytes_up={} bytes_down={} duration_ms={} outcome={}{}{}",
            self.client.map_or_else(|| "-".to_owned(), |a| a.to_string()),
            self.listener,
            self.sni.as_deref().unwrap_or("-"),
            if self.alpn.is_empty() { "-" } else { &self.alpn },
            route,
            self.target.as_deref().unwrap_or("-"),
            self.upstream_addr.map_or_else(|| "-".to_owned(), |a| a.to_string()),
            self.bytes_up,
            self.bytes_down,
            self.started.elapsed().as_millis(),
            self.outcome,
            if self.detail.is_some() { " detail=" } else { "" },
            self.detail.as_deref().map(quote).unwrap_or_default(),
        );
        if self.outcome == "empty" {
            // TCP health checks and port probes: keep them out of the access log.
            log::debug!(target: "snigate::access", "{line}");
        } else {
            log::info!(target: "snigate::access", "{line}");
        }
    }
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

#[async_trait]
impl ServerApp for ListenerApp {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let digest = session.get_socket_digest();
        let client = digest
            .as_ref()
            .and_then(|d| d.peer_addr())
            .and_then(|a| a.as_inet().copied());
        let local_port = digest
            .as_ref()
            .and_then(|d| d.local_addr())
            .and_then(|a| a.as_inet().map(|a| a.port()))
            .unwrap_or(self.listener.address.port());
        // Use the concrete TCP stream, so that TCP_NODELAY can be set for Kafka's small
        // requests and responses.
        match into_tcp(session) {
            ClientIo::Tcp(mut tcp) => {
                if let Err(e) = tcp.set_nodelay() {
                    log::debug!("cannot set TCP_NODELAY on a client connection: {e}");
                }
                self.handle(*tcp, client, local_port).await;
            }
            ClientIo::Other(other) => self.handle(other, client, local_port).await,
            ClientIo::Lost => log::error!("a client connection was lost while unwrapping it"),
        }
        None
    }
}

/// A client connection, as the concrete TCP stream when it is one.
enum ClientIo {
    Tcp(Box<L4Stream>),
    Other(Stream),
    /// The type check passed but the downcast did not; cannot happen.
    Lost,
}

/// Unwraps Pingora's boxed stream into the TCP stream under it, when it is one.
fn into_tcp(session: Stream) -> ClientIo {
    if !session.as_any().is::<L4Stream>() {
        return ClientIo::Other(session);
    }
    match session.into_any().downcast::<L4Stream>() {
        Ok(tcp) => ClientIo::Tcp(tcp),
        Err(_) => ClientIo::Lost,
    }
}

impl ListenerApp {
    async fn handle<S>(&self, mut client_io: S, client: Option<SocketAddr>, local_port: u16)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let name = self.listener.name.as_str();
        let mut rec = Record {
            listener: name,
            client,
            sni: None,
            alpn: String::new(),
            route: None,
            target: None,
            upstream_addr: None,
            bytes_up: 0,
            bytes_down: 0,
            started: Instant::now(),
            outcome: "ok",
            detail: None,
        };
        let Some(_slot) = Slot::acquire(&self.shared, &self.metrics.active) else {
            rec.outcome = "over_limit";
            rec.detail = Some(format!(
                "max_connections ({}) reached",
                self.shared.max_connections
            ));
            rec.finish();
            return;
        };

        let deadline = tokio::time::Instant::now() + self.shared.clienthello_timeout;
        let peeked = match peek::read_client_hello(&mut client_io, deadline).await {
            Ok(p) => p,
            Err(e) => {
                let reason = match &e {
                    PeekError::Invalid(r) => Some(r.as_str()),
                    PeekError::Timeout { .. } => Some("timeout"),
                    PeekError::Closed { received: 0 } => None,
                    PeekError::Closed { .. } => Some("closed_early"),
                    PeekError::Io(_) => Some("io_error"),
                };
                match reason {
                    Some(r) => {
                        metrics::REJECTS.with_label_values(&[name, r]).inc();
                        rec.outcome = "clienthello_rejected";
                        rec.detail = Some(e.to_string());
                    }
                    None => rec.outcome = "empty",
                }
                rec.finish();
                return;
            }
        };
        metrics::HELLO_SIZE.observe(peeked.hello.hello_len as f64);
        rec.sni = peeked.hello.sni.clone();
        rec.alpn = peeked.hello.alpn.join(",");

        let table = self.shared.routes.load();
        let chosen: Option<(Arc<str>, &Upstream)> = match rec.sni.as_deref() {
            Some(sni) => table
                .lookup(sni)
                .map(|r: &Arc<Route>| (r.label.clone(), &r.upstream)),
            None => None,
        };
        let chosen = chosen.or_else(|| {
            self.listener
                .fallback
                .as_ref()
                .map(|f| (Arc::from("fallback"), f))
        });
        let Some((label, upstream)) = chosen else {
            rec.outcome = if rec.sni.is_some() {
                "no_route"
            } else {
                "no_sni"
            };
            rec.detail = Some(match rec.sni.as_deref() {
                Some(s) => format!("no route matches SNI {s}; add a route or a listener fallback"),
                None => "the client sent no SNI and the listener has no fallback".to_owned(),
            });
            if let Err(e) = client_io.write_all(&ALERT_UNRECOGNIZED_NAME).await {
                log::debug!("cannot send the alert to {client:?}: {e}");
            }
            let _ = client_io.shutdown().await;
            rec.finish();
            return;
        };
        rec.route = Some(label);
        rec.target = Some(upstream::target(upstream, rec.sni.as_deref(), local_port));

        let connected = match upstream::connect(
            upstream,
            rec.sni.as_deref(),
            local_port,
            self.shared.connect_timeout,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                rec.outcome = e.outcome();
                rec.detail = Some(e.to_string());
                rec.finish();
                return;
            }
        };
        drop(table);
        self.metrics
            .connect_latency
            .observe(connected.elapsed.as_secs_f64());
        rec.upstream_addr = Some(connected.addr);
        let mut upstream_io = connected.stream;

        let (up_counter, down_counter) = (&self.metrics.bytes_up, &self.metrics.bytes_down);
        if let Err(e) = upstream_io.write_all(&peeked.bytes).await {
            rec.outcome = RelayEnd::Error.outcome();
            rec.detail = Some(format!("cannot replay the ClientHello: {e}"));
            rec.finish();
            return;
        }
        up_counter.inc_by(peeked.bytes.len() as u64);
        rec.bytes_up = peeked.bytes.len() as u64;
        drop(peeked);

        let stats = relay::relay(
            client_io,
            upstream_io,
            self.shared.idle_timeout,
            up_counter,
            down_counter,
        )
        .await;
        rec.bytes_up += stats.to_upstream;
        rec.bytes_down = stats.to_client;
        rec.outcome = stats.end.outcome();
        rec.finish();
    }
}
