//! One connection's life: take a slot under the connection limit, read the PROXY header
//! where the listener expects one and the ClientHello, pick a route, connect, replay the
//! hello, relay both ways, and log the outcome. Generic over the client stream, so that
//! tests can drive it over an in-memory pipe.

use super::access::{Closer, EgressRecord, Record};
use super::shared::Shared;
use super::stream::ClientStream;
use super::wakes::WhenWoken;
use crate::metrics::{self, RouteSeries};
use crate::peek::{self, PeekError};
use crate::relay::Totals;
use crate::upstream;
use crate::upstream::pool::Lease;
use pingora_core::server::ShutdownWatch;
use prometheus::{Histogram, IntCounter, IntGauge};
use snigate_core::config::{Limits, ListenerConfig};
use snigate_core::outcome::Outcome;
use snigate_core::proxy_protocol;
use snigate_core::routes::RouteKind;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A fatal TLS alert, `unrecognized_name` (112), sent in clear before closing a connection
/// whose SNI has no route, so that the client reports a clear error instead of a bare EOF.
pub const ALERT_UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// One listener's metric series, resolved once instead of per connection.
#[derive(Debug)]
struct ListenerMetrics {
    active: IntGauge,
    bytes_up: IntCounter,
    bytes_down: IntCounter,
    connect_latency: Histogram,
    connections: metrics::ConnectionCounters,
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
    pub fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: ShutdownWatch,
    ) -> impl Future<Output = ()> + Send + '_ {
        let port = self.listener.address.port();
        self.handle(stream, Some(peer), port, Some(shutdown))
    }

    /// True when `client` may use this listener (its `allow` list, if any).
    fn allowed(&self, client: Option<SocketAddr>) -> bool {
        let allow = &self.listener.allow;
        allow.is_empty() || client.is_some_and(|c| allow.iter().any(|r| r.contains(c.ip())))
    }

    fn deny(&self, rec: &mut Record<'_>) {
        let who = rec
            .client
            .map_or_else(|| "an unknown client".to_owned(), |c| c.ip().to_string());
        let detail = format!(
            "{who} is not in listener {}'s allow list",
            self.listener.name
        );
        rec.end(Outcome::DeniedSource, detail);
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
        // Without a PROXY header to wait for, a source outside the allow list is closed
        // before a byte is read.
        if !self.listener.proxy_protocol && !self.allowed(client) {
            self.deny(&mut rec);
            rec.finish(&self.metrics.connections, None);
            return;
        }
        let Some(_slot) = Slot::acquire(&self.shared, &self.metrics.active, limits.max_connections)
        else {
            let detail = format!("max_connections ({}) reached", limits.max_connections);
            rec.end(Outcome::OverLimit, detail);
            rec.finish(&self.metrics.connections, None);
            return;
        };
        let totals = Totals::default();
        let mut series = None;
        let served = self.serve(
            client_io,
            &mut rec,
            &mut series,
            &totals,
            limits,
            local_port,
        );
        match shutdown {
            Some(shutdown) => {
                let turn =
                    std::pin::pin!(self.shared.drain.turn(shutdown, || self.shared.active()));
                let turn = WhenWoken::new(turn);
                tokio::select! {
                    _ = served => {}
                    _ = turn => {
                        rec.end(Outcome::Drained, "closed while the gateway drained (an upgrade or a stop)");
                    }
                }
            }
            None => served.await,
        }
        if let Some(s) = series.as_deref() {
            s.active.dec();
        }
        rec.bytes_up = totals.up.into_inner();
        rec.bytes_down = totals.down.into_inner();
        rec.finish(&self.metrics.connections, series.as_deref());
    }

    fn reject(&self, rec: &mut Record<'_>, e: PeekError) {
        if let PeekError::Closed { received: 0 } = e {
            rec.outcome = Outcome::Empty;
            rec.closed_by = Some(Closer::Client);
            return;
        }
        let reason = e.reason();
        metrics::REJECTS
            .with_label_values(&[&self.listener.name, reason.as_str()])
            .inc();
        if matches!(e, PeekError::Closed { .. }) {
            rec.closed_by = Some(Closer::Client);
        }
        rec.end(Outcome::ClientHelloRejected, e.to_string());
    }

    async fn serve<S: ClientStream>(
        &self,
        client_io: S,
        rec: &mut Record<'_>,
        series: &mut Option<Arc<RouteSeries>>,
        totals: &Totals,
        limits: Limits,
        local_port: u16,
    ) {
        // Boxed: reading the hello, connecting and replaying need more state than relaying
        // does, and only for a moment; an idle connection should not carry their space.
        let mut lease = None;
        let opened = Box::pin(self.open(
            client_io, rec, series, totals, limits, local_port, &mut lease,
        ))
        .await;
        let (Some((client_io, upstream_io)), Some(route_series)) = (opened, series.as_deref())
        else {
            return;
        };
        let counters = (
            [&self.metrics.bytes_up, &route_series.bytes_up],
            [&self.metrics.bytes_down, &route_series.bytes_down],
        );
        let end = client_io
            .relay(upstream_io, limits.idle_timeout, counters, totals)
            .await;
        rec.outcome = end.outcome();
        rec.closed_by = Some(end.closer());
        drop(lease);
    }

    /// Everything before the relay: the PROXY header and the ClientHello, the route, the
    /// upstream connection and the replayed hello. Returns both streams when all went
    /// well; otherwise `rec` says why not. Sets `series` once a route is chosen, and
    /// `lease` once a pool's server is connected.
    #[allow(clippy::too_many_arguments)]
    async fn open<S: ClientStream>(
        &self,
        mut client_io: S,
        rec: &mut Record<'_>,
        series: &mut Option<Arc<RouteSeries>>,
        totals: &Totals,
        limits: Limits,
        local_port: u16,
        lease: &mut Option<Lease>,
    ) -> Option<(S, TcpStream)> {
        let name = self.listener.name.as_str();
        let deadline = tokio::time::Instant::now() + limits.clienthello_timeout;
        let mut buf = Vec::with_capacity(1024);
        let (mut start, mut reached) = (0, None);
        if self.listener.proxy_protocol {
            match peek::read_proxy_header(&mut client_io, &mut buf, deadline).await {
                Ok(h) => {
                    start = h.len;
                    if let Some((client, local)) = h.addresses {
                        rec.client = Some(client);
                        reached = Some(local);
                    }
                }
                Err(e) => {
                    self.reject(rec, e);
                    return None;
                }
            }
            if !self.allowed(rec.client) {
                self.deny(rec);
                return None;
            }
        }
        let mut hello =
            match peek::read_client_hello(&mut client_io, &mut buf, start, deadline).await {
                Ok(h) => h,
                Err(e) => {
                    self.reject(rec, e);
                    return None;
                }
            };
        metrics::HELLO_SIZE.observe(hello.hello_len as f64);
        rec.sni = hello.sni.take();
        if !hello.alpn.is_empty() {
            rec.alpn = hello.alpn.join(",");
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
            return None;
        };
        let route_series = self.metrics.connections.route(&route.label);
        let proxy = route.egress.resolve(self.shared.egress.as_ref()).cloned();
        // Pools, and discovered brokers (each a pool of one, for its health check), when
        // they are reached directly.
        let pool = if proxy.is_none() && (route.pool.is_some() || route.kind == RouteKind::Broker) {
            self.shared.routes.pools.get(&route.label)
        } else {
            None
        };
        let mut early = Vec::new();
        let connected = match (pool, proxy) {
            (None, Some(proxy)) => {
                let egress = rec.egress.insert(EgressRecord::new(proxy.label.clone()));
                let asked = tokio::time::Instant::now();
                let tunnel = match route.upstream.host_for(rec.sni.as_deref()) {
                    Some(host) => {
                        let port = route.upstream.port_for(local_port);
                        upstream::egress::tunnel(
                            &proxy,
                            host,
                            port,
                            limits.connect_timeout,
                            &self.shared.loop_guard,
                        )
                        .await
                    }
                    None => Err(upstream::ConnectError::NoHost),
                };
                match &tunnel {
                    Ok(t) => {
                        egress.ms = Some(t.answer.as_millis() as u64);
                        egress.reply = Some("ok".into());
                        upstream::egress::count(&proxy, Ok(t.answer));
                    }
                    Err(upstream::ConnectError::Proxy(e)) => {
                        egress.ms = Some(asked.elapsed().as_millis() as u64);
                        egress.reply = Some(e.reply());
                        upstream::egress::count(&proxy, Err(e));
                    }
                    Err(upstream::ConnectError::Loop { .. }) => {
                        egress.reply = Some("loop".into());
                    }
                    Err(_) => {}
                }
                tunnel.map(|t| {
                    early = t.early;
                    upstream::Connected {
                        stream: t.stream,
                        addr: t.proxy_addr,
                        elapsed: t.elapsed,
                    }
                })
            }
            (Some(pool), _) => pool
                .connect(
                    rec.client.map(|c| c.ip()),
                    limits.connect_timeout,
                    &self.shared.loop_guard,
                )
                .await
                .map(|(c, held)| {
                    rec.server = Some(held.server.clone());
                    *lease = Some(held);
                    c
                }),
            (None, None) => {
                upstream::connect(
                    &route.upstream,
                    rec.sni.as_deref(),
                    local_port,
                    limits.connect_timeout,
                    &self.shared.loop_guard,
                )
                .await
            }
        };
        let send_proxy = route.send_proxy;
        rec.route = Some(route);
        route_series.active.inc();
        *series = Some(route_series.clone());
        let connected = match connected {
            Ok(c) => c,
            Err(e) => {
                if let upstream::ConnectError::Loop { addr, .. } = &e {
                    let sni = rec.sni.as_deref().unwrap_or("-");
                    if self.shared.first_loop(sni) {
                        log::error!("refusing SNI {sni}: {e} (logged once per name; connections to {addr} are counted as outcome loop)");
                    }
                }
                rec.end(e.outcome(), e.to_string());
                return None;
            }
        };
        self.metrics
            .connect_latency
            .observe(connected.elapsed.as_secs_f64());
        rec.connect_ms = Some(connected.elapsed.as_millis() as u64);
        route_series
            .last_connect
            .set(connected.elapsed.as_secs_f64());
        if let Some(egress) = rec.egress.as_mut() {
            egress.addr = Some(connected.addr);
        } else {
            rec.upstream_addr = Some(connected.addr);
        }
        let mut upstream_io: TcpStream = connected.stream;
        if let Err(e) = client_io.write_all(&early).await {
            rec.closed_by = Some(Closer::Client);
            rec.end(
                Outcome::RelayError,
                format!("cannot pass on the upstream's first bytes: {e}"),
            );
            return None;
        }
        if !early.is_empty() {
            let n = early.len() as u64;
            self.metrics.bytes_down.inc_by(n);
            route_series.bytes_down.inc_by(n);
            totals.down.fetch_add(n, Ordering::Relaxed);
        }

        let hello_bytes = &buf[start.min(buf.len())..];
        let written = match send_proxy {
            Some(version) => {
                let local = reached
                    .or_else(|| client_io.local_addr())
                    .unwrap_or(self.listener.address);
                let client = rec.client.unwrap_or(local);
                let mut first = proxy_protocol::header(version, client, local);
                first.extend_from_slice(hello_bytes);
                upstream_io.write_all(&first).await
            }
            None => upstream_io.write_all(hello_bytes).await,
        };
        if let Err(e) = written {
            rec.closed_by = Some(Closer::Upstream);
            rec.end(
                Outcome::RelayError,
                format!("cannot replay the ClientHello: {e}"),
            );
            return None;
        }
        let replayed = hello_bytes.len() as u64;
        self.metrics.bytes_up.inc_by(replayed);
        route_series.bytes_up.inc_by(replayed);
        totals.up.fetch_add(replayed, Ordering::Relaxed);
        Some((client_io, upstream_io))
    }
}

#[cfg(test)]
mod tests;
