//! One connection's life: take a slot under the connection limit, read the ClientHello,
//! pick a route, connect, replay the hello, relay both ways, and log the outcome. Generic
//! over the client stream, so that tests can drive it over an in-memory pipe.

use super::access::Record;
use crate::drain::Drain;
use crate::metrics;
use crate::peek::{self, PeekError};
use crate::relay::{self, RelayEnd, Totals};
use crate::routes::RouteStore;
use crate::upstream;
use arc_swap::ArcSwap;
use pingora_core::server::ShutdownWatch;
use prometheus::{Histogram, IntCounter, IntGauge};
use snigate_core::config::{Limits, ListenerConfig};
use snigate_core::names::SniPattern;
use snigate_core::outcome::Outcome;
use snigate_core::routes::Route;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A fatal TLS alert, `unrecognized_name` (112), sent in clear before closing a connection
/// whose SNI has no route, so that the client reports a clear error instead of a bare EOF.
pub const ALERT_UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// The settings a config reload may change, read once per connection.
#[derive(Debug)]
struct Live {
    limits: Limits,
    /// Each listener's fallback, as a route labelled `fallback`.
    fallbacks: HashMap<String, Arc<Route>>,
}

impl Live {
    fn new(limits: Limits, listeners: &[ListenerConfig]) -> Self {
        let fallbacks = listeners
            .iter()
            .filter_map(|l| {
                let upstream = l.fallback.clone()?;
                let mut route = Route::new(SniPattern::Exact(String::new()), upstream);
                route.label = Arc::from(metrics::FALLBACK_LABEL);
                Some((l.name.clone(), Arc::new(route)))
            })
            .collect();
        Live { limits, fallbacks }
    }
}

/// Settings and state shared by every listener.
#[derive(Debug)]
pub struct Shared {
    /// The live route table.
    pub routes: Arc<RouteStore>,
    /// The drain schedule for when the worker stops.
    pub drain: Drain,
    live: ArcSwap<Live>,
    active: AtomicUsize,
}

impl Shared {
    /// Builds the shared state; `grace` is how long a drain may take.
    pub fn new(
        limits: Limits,
        listeners: &[ListenerConfig],
        routes: Arc<RouteStore>,
        grace: Duration,
    ) -> Self {
        Shared {
            routes,
            drain: Drain::new(grace),
            live: ArcSwap::from_pointee(Live::new(limits, listeners)),
            active: AtomicUsize::new(0),
        }
    }

    /// Connections open now, across listeners.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// The limits new connections get.
    pub fn limits(&self) -> Limits {
        self.live.load().limits
    }

    /// Replaces the limits and the listeners' fallbacks for new connections.
    pub fn set_live(&self, limits: Limits, listeners: &[ListenerConfig]) {
        self.live.store(Arc::new(Live::new(limits, listeners)));
    }

    fn fallback(&self, listener: &str) -> Option<Arc<Route>> {
        self.live.load().fallbacks.get(listener).cloned()
    }
}

/// One listener's metric series, resolved once instead of per connection.
#[derive(Debug)]
struct ListenerMetrics {
    active: IntGauge,
    bytes_up: IntCounter,
    bytes_down: IntCounter,
    connect_latency: Histogram,
    connections: metrics::ConnectionCounters,
}

/// A client connection: any stream, and a TCP stream takes the splice path. Each kind
/// brings only its own relay, so a TCP connection's task never reserves space for the
/// portable one.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + Sized {
    /// Relays between this client and `upstream` until the connection ends.
    fn relay<'a>(
        self,
        upstream: TcpStream,
        idle: Duration,
        counters: (&'a IntCounter, &'a IntCounter),
        totals: &'a Totals,
    ) -> impl Future<Output = RelayEnd> + Send + 'a;
}

impl ClientStream for TcpStream {
    async fn relay<'a>(
        self,
        upstream: TcpStream,
        idle: Duration,
        counters: (&'a IntCounter, &'a IntCounter),
        totals: &'a Totals,
    ) -> RelayEnd {
        relay::relay_tcp(&self, &upstream, idle, counters, totals).await
    }
}

impl ClientStream for tokio::io::DuplexStream {
    fn relay<'a>(
        self,
        upstream: TcpStream,
        idle: Duration,
        counters: (&'a IntCounter, &'a IntCounter),
        totals: &'a Totals,
    ) -> impl Future<Output = RelayEnd> + Send + 'a {
        relay::relay(self, upstream, idle, counters, totals)
    }
}

/// Handles the connections of one listener.
#[derive(Debug)]
pub struct Handler {
    listener: ListenerConfig,
    shared: Arc<Shared>,
    metrics: ListenerMetrics,
}

/// Holds one slot of the global connection limit and the active gauge.
struct Slot<'a> {
    shared: &'a Shared,
    gauge: &'a IntGauge,
}

impl<'a> Slot<'a> {
    fn acquire(shared: &'a Shared, gauge: &'a IntGauge, max: usize) -> Option<Self> {
        let prev = shared.active.fetch_add(1, Ordering::AcqRel);
        if prev >= max {
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

impl Handler {
    /// Creates the handler for `listener`.
    pub fn new(listener: ListenerConfig, shared: Arc<Shared>) -> Self {
        let name = listener.name.as_str();
        let metrics = ListenerMetrics {
            active: metrics::ACTIVE.with_label_values(&[name]),
            bytes_up: metrics::BYTES.with_label_values(&[name, "upstream"]),
            bytes_down: metrics::BYTES.with_label_values(&[name, "downstream"]),
            connect_latency: metrics::CONNECT_LATENCY.with_label_values(&[name]),
            connections: metrics::ConnectionCounters::new(name),
        };
        Handler {
            listener,
            shared,
            metrics,
        }
    }

    /// The listener's settings.
    pub fn listener(&self) -> &ListenerConfig {
        &self.listener
    }

    /// Runs a connection accepted on this listener to its end. (TCP_NODELAY comes from
    /// the listening socket.)
    pub async fn accept(&self, stream: TcpStream, peer: SocketAddr, shutdown: ShutdownWatch) {
        let port = self.listener.address.port();
        self.handle(stream, Some(peer), port, Some(shutdown)).await;
    }

    /// Runs one client connection to its end, and logs it. `local_port` is the port the
    /// client connected to, for `{port}` upstreams. With `shutdown`, the connection is
    /// closed at its turn in the drain once the worker stops.
    pub async fn handle<S: ClientStream>(
        &self,
        client_io: S,
        client: Option<SocketAddr>,
        local_port: u16,
        shutdown: Option<ShutdownWatch>,
    ) {
        let limits = self.shared.limits();
        let mut rec = Record::new(&self.listener.name, client);
        rec.local_port = local_port;
        let Some(_slot) = Slot::acquire(&self.shared, &self.metrics.active, limits.max_connections)
        else {
            let detail = format!("max_connections ({}) reached", limits.max_connections);
            rec.end(Outcome::OverLimit, detail);
            rec.finish(&self.metrics.connections);
            return;
        };
        let totals = Totals::default();
        let served = self.serve(client_io, &mut rec, &totals, limits, local_port);
        match shutdown {
            Some(shutdown) => {
                let turn = self.shared.drain.turn(shutdown, || self.shared.active());
                tokio::select! {
                    _ = served => {}
                    _ = turn => {
                        rec.end(Outcome::Drained, "closed while the gateway drained (an upgrade or a stop)");
                    }
                }
            }
            None => served.await,
        }
        rec.bytes_up = totals.up.into_inner();
        rec.bytes_down = totals.down.into_inner();
        rec.finish(&self.metrics.connections);
    }

    async fn serve<S: ClientStream>(
        &self,
        mut client_io: S,
        rec: &mut Record<'_>,
        totals: &Totals,
        limits: Limits,
        local_port: u16,
    ) {
        let name = self.listener.name.as_str();
        let deadline = tokio::time::Instant::now() + limits.clienthello_timeout;
        let peeked = match peek::read_client_hello(&mut client_io, deadline).await {
            Ok(p) => p,
            Err(PeekError::Closed { received: 0 }) => {
                rec.outcome = Outcome::Empty;
                return;
            }
            Err(e) => {
                let reason = e.reason();
                metrics::REJECTS
                    .with_label_values(&[name, reason.as_str()])
                    .inc();
                rec.end(Outcome::ClientHelloRejected, e.to_string());
                return;
            }
        };
        let mut peeked = peeked;
        metrics::HELLO_SIZE.observe(peeked.hello.hello_len as f64);
        rec.sni = peeked.hello.sni.take();
        if !peeked.hello.alpn.is_empty() {
            rec.alpn = peeked.hello.alpn.join(",");
        }

        let table = self.shared.routes.load();
        let routed = rec
            .sni
            .as_deref()
            .and_then(|sni| table.lookup(sni).cloned());
        drop(table);
        let Some(route) = routed.or_else(|| self.shared.fallback(name)) else {
            let (outcome, detail) = match rec.sni.as_deref() {
                Some(s) => (
                    Outcome::NoRoute,
                    format!("no route matches SNI {s}; add a route or a listener fallback"),
                ),
                None => (
                    Outcome::NoSni,
                    "the client sent no SNI and the listener has no fallback".to_owned(),
                ),
            };
            if let Err(e) = client_io.write_all(&ALERT_UNRECOGNIZED_NAME).await {
                log::debug!("cannot send the alert to {:?}: {e}", rec.client);
            }
            let _ = client_io.shutdown().await;
            rec.end(outcome, detail);
            return;
        };
        // Boxed: connecting needs more state than the rest of the connection's life, and
        // only for a moment; an idle connection should not carry its space.
        let connected = Box::pin(upstream::connect(
            &route.upstream,
            rec.sni.as_deref(),
            local_port,
            limits.connect_timeout,
        ))
        .await;
        rec.route = Some(route);
        let connected = match connected {
            Ok(c) => c,
            Err(e) => {
                rec.end(e.outcome(), e.to_string());
                return;
            }
        };
        self.metrics
            .connect_latency
            .observe(connected.elapsed.as_secs_f64());
        rec.upstream_addr = Some(connected.addr);
        let mut upstream_io = connected.stream;

        let counters = (&self.metrics.bytes_up, &self.metrics.bytes_down);
        if let Err(e) = upstream_io.write_all(&peeked.bytes).await {
            rec.end(
                Outcome::RelayError,
                format!("cannot replay the ClientHello: {e}"),
            );
            return;
        }
        counters.0.inc_by(peeked.bytes.len() as u64);
        totals
            .up
            .fetch_add(peeked.bytes.len() as u64, Ordering::Relaxed);
        drop(peeked);

        let end = client_io
            .relay(upstream_io, limits.idle_timeout, counters, totals)
            .await;
        rec.outcome = end.outcome();
    }
}

#[cfg(test)]
mod tests;
