//! One connection's life: take a slot under the connection limit, read the ClientHello,
//! pick a route, connect, replay the hello, relay both ways, and log the outcome. Generic
//! over the client stream, so that tests can drive it over an in-memory pipe.

use super::access::Record;
use crate::metrics;
use crate::peek::{self, PeekError};
use crate::relay;
use crate::routes::RouteStore;
use crate::upstream;
use prometheus::{Histogram, IntCounter, IntGauge};
use snigate_core::config::{Limits, ListenerConfig};
use snigate_core::names::Upstream;
use snigate_core::outcome::Outcome;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// A fatal TLS alert, `unrecognized_name` (112), sent in clear before closing a connection
/// whose SNI has no route, so that the client reports a clear error instead of a bare EOF.
pub const ALERT_UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// Settings and state shared by every listener.
#[derive(Debug)]
pub struct Shared {
    /// The live route table.
    pub routes: Arc<RouteStore>,
    /// Deadlines and the connection limit.
    pub limits: Limits,
    active: AtomicUsize,
}

impl Shared {
    /// Builds the shared state.
    pub fn new(limits: Limits, routes: Arc<RouteStore>) -> Self {
        Shared {
            routes,
            limits,
            active: AtomicUsize::new(0),
        }
    }

    /// Connections open now, across listeners.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
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
    fn acquire(shared: &'a Shared, gauge: &'a IntGauge) -> Option<Self> {
        let prev = shared.active.fetch_add(1, Ordering::AcqRel);
        if prev >= shared.limits.max_connections {
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

    /// Runs one client connection to its end. `local_port` is the port the client
    /// connected to, for `{port}` upstreams.
    pub async fn handle<S>(&self, mut client_io: S, client: Option<SocketAddr>, local_port: u16)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let name = self.listener.name.as_str();
        let limits = self.shared.limits;
        let mut rec = Record::new(name, client);
        let Some(_slot) = Slot::acquire(&self.shared, &self.metrics.active) else {
            let detail = format!("max_connections ({}) reached", limits.max_connections);
            rec.fail(Outcome::OverLimit, detail);
            return;
        };

        let deadline = tokio::time::Instant::now() + limits.clienthello_timeout;
        let peeked = match peek::read_client_hello(&mut client_io, deadline).await {
            Ok(p) => p,
            Err(PeekError::Closed { received: 0 }) => {
                rec.outcome = Outcome::Empty;
                rec.finish();
                return;
            }
            Err(e) => {
                let reason = e.reason();
                metrics::REJECTS
                    .with_label_values(&[name, reason.as_str()])
                    .inc();
                rec.fail(Outcome::ClientHelloRejected, e.to_string());
                return;
            }
        };
        metrics::HELLO_SIZE.observe(peeked.hello.hello_len as f64);
        rec.sni = peeked.hello.sni.clone();
        rec.alpn = peeked.hello.alpn.join(",");

        let table = self.shared.routes.load();
        let chosen: Option<(Arc<str>, &Upstream)> = match rec.sni.as_deref() {
            Some(sni) => table.lookup(sni).map(|r| (r.label.clone(), &r.upstream)),
            None => None,
        };
        let chosen = chosen.or_else(|| {
            self.listener
                .fallback
                .as_ref()
                .map(|f| (Arc::from(metrics::FALLBACK_LABEL), f))
        });
        let Some((label, upstream)) = chosen else {
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
                log::debug!("cannot send the alert to {client:?}: {e}");
            }
            let _ = client_io.shutdown().await;
            rec.fail(outcome, detail);
            return;
        };
        rec.route = Some(label);
        rec.target = Some(upstream::target(upstream, rec.sni.as_deref(), local_port));

        let connected = upstream::connect(
            upstream,
            rec.sni.as_deref(),
            local_port,
            limits.connect_timeout,
        )
        .await;
        drop(table);
        let connected = match connected {
            Ok(c) => c,
            Err(e) => {
                rec.fail(e.outcome(), e.to_string());
                return;
            }
        };
        self.metrics
            .connect_latency
            .observe(connected.elapsed.as_secs_f64());
        rec.upstream_addr = Some(connected.addr);
        let mut upstream_io = connected.stream;

        let (up_counter, down_counter) = (&self.metrics.bytes_up, &self.metrics.bytes_down);
        if let Err(e) = upstream_io.write_all(&peeked.bytes).await {
            rec.fail(
                Outcome::RelayError,
                format!("cannot replay the ClientHello: {e}"),
            );
            return;
        }
        up_counter.inc_by(peeked.bytes.len() as u64);
        rec.bytes_up = peeked.bytes.len() as u64;
        drop(peeked);

        let stats = relay::relay(
            client_io,
            upstream_io,
            limits.idle_timeout,
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

#[cfg(test)]
mod tests;
