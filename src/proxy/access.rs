//! One connection's record: its access-log line (see [`crate::access_log`]) and its count
//! in `snigate_connections_total`.

use crate::access_log::{self, Value};
use crate::metrics;
use crate::upstream;
use snigate_core::outcome::Outcome;
use snigate_core::routes::Route;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Which side ended the connection first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// The client closed (or reset) first.
    Client,
    /// The upstream did.
    Upstream,
    /// The gateway did: a refusal, a timeout, or the drain.
    Gateway,
}

impl Closer {
    /// The label in the access log.
    pub fn as_str(self) -> &'static str {
        match self {
            Closer::Client => "client",
            Closer::Upstream => "upstream",
            Closer::Gateway => "gateway",
        }
    }
}

/// What the access log says about one connection. Filled in as the connection goes.
#[derive(Debug)]
pub struct Record<'a> {
    /// The listener's name.
    pub listener: &'a str,
    /// The client's address (from the PROXY protocol header when there is one).
    pub client: Option<SocketAddr>,
    /// The SNI, as sent.
    pub sni: Option<String>,
    /// The ALPN protocols offered, comma-separated.
    pub alpn: String,
    /// The route chosen.
    pub route: Option<Arc<Route>>,
    /// The port the client connected to, for `{port}` upstreams.
    pub local_port: u16,
    /// The upstream address connected to.
    pub upstream_addr: Option<SocketAddr>,
    /// The pool server that served it, for a route with `servers:`.
    pub server: Option<Arc<str>>,
    /// How long the upstream connect took.
    pub connect_ms: Option<u64>,
    /// The egress proxy that carried it, for a route with one. Boxed: most connections
    /// have none, and each open connection keeps its record.
    pub egress: Option<Box<EgressRecord>>,
    /// Bytes from the client to the upstream, the hello included.
    pub bytes_up: u64,
    /// Bytes from the upstream to the client.
    pub bytes_down: u64,
    /// When the connection was accepted.
    pub started: Instant,
    /// How it ended.
    pub outcome: Outcome,
    /// Which side ended it first.
    pub closed_by: Option<Closer>,
    /// Why, for outcomes that need explaining.
    pub detail: Option<String>,
}

/// What a connection through an egress proxy adds to its record.
#[derive(Debug)]
pub struct EgressRecord {
    /// The proxy's label, never its credentials.
    pub proxy: Arc<str>,
    /// The proxy's address.
    pub addr: Option<SocketAddr>,
    /// How long the proxy took to answer.
    pub ms: Option<u64>,
    /// The proxy's answer: `ok`, an HTTP status, `socks5:N`, or what happened instead.
    pub reply: Option<String>,
}

impl EgressRecord {
    /// The record of a tunnel asked of `proxy`, before it answers.
    pub fn new(proxy: Arc<str>) -> Box<Self> {
        Box::new(EgressRecord {
            proxy,
            addr: None,
            ms: None,
            reply: None,
        })
    }
}

impl<'a> Record<'a> {
    /// A record for a connection accepted now.
    pub fn new(listener: &'a str, client: Option<SocketAddr>) -> Self {
        Record {
            listener,
            client,
            sni: None,
            alpn: String::new(),
            route: None,
            local_port: 0,
            upstream_addr: None,
            server: None,
            connect_ms: None,
            egress: None,
            bytes_up: 0,
            bytes_down: 0,
            started: Instant::now(),
            outcome: Outcome::Ok,
            closed_by: None,
            detail: None,
        }
    }

    /// Sets how the connection ended, and why; the gateway ended it.
    pub fn end(&mut self, outcome: Outcome, detail: impl Into<String>) {
        self.outcome = outcome;
        self.detail = Some(detail.into());
        self.closed_by.get_or_insert(Closer::Gateway);
    }

    /// Counts the connection (under its route's `series`, if it chose one) and writes its
    /// access-log line.
    pub fn finish(
        self,
        counters: &metrics::ConnectionCounters,
        series: Option<&metrics::RouteSeries>,
    ) {
        counters.count(series, self.outcome);
        if !access_log::wants(self.outcome) {
            return;
        }
        let (client, addr, target, duration) = (
            self.client.map(|a| a.to_string()),
            self.upstream_addr.map(|a| a.to_string()),
            self.route
                .as_ref()
                .map(|r| upstream::target(&r.upstream, self.sni.as_deref(), self.local_port)),
            self.started.elapsed().as_millis() as u64,
        );
        access_log::write(
            self.outcome,
            &self.fields(
                &client,
                &addr,
                &self
                    .egress
                    .as_ref()
                    .and_then(|e| e.addr)
                    .map(|a| a.to_string()),
                &target,
                duration,
            ),
        );
    }

    fn fields<'f>(
        &'f self,
        client: &'f Option<String>,
        addr: &'f Option<String>,
        proxy_addr: &'f Option<String>,
        target: &'f Option<String>,
        duration_ms: u64,
    ) -> Vec<(&'f str, Value<'f>)> {
        let text = |v: Option<&'f str>| Value::Text(v);
        let mut fields = vec![
            ("client", text(client.as_deref())),
            ("listener", text(Some(self.listener))),
            ("sni", text(self.sni.as_deref())),
            (
                "alpn",
                text((!self.alpn.is_empty()).then_some(self.alpn.as_str())),
            ),
            ("route", text(self.route.as_ref().map(|r| &*r.label))),
            ("upstream", text(target.as_deref())),
            ("upstream_addr", text(addr.as_deref())),
        ];
        if let Some(server) = &self.server {
            fields.push(("server", text(Some(server))));
        }
        if let Some(egress) = &self.egress {
            fields.push(("proxy", text(Some(&egress.proxy))));
            fields.push(("proxy_addr", text(proxy_addr.as_deref())));
            fields.push(("proxy_reply", text(egress.reply.as_deref())));
            if let Some(ms) = egress.ms {
                fields.push(("proxy_ms", Value::Number(ms)));
            }
        }
        fields.push(("bytes_up", Value::Number(self.bytes_up)));
        fields.push(("bytes_down", Value::Number(self.bytes_down)));
        if let Some(ms) = self.connect_ms {
            fields.push(("connect_ms", Value::Number(ms)));
        }
        fields.push(("duration_ms", Value::Number(duration_ms)));
        fields.push(("outcome", text(Some(self.outcome.as_str()))));
        if let Some(c) = self.closed_by {
            fields.push(("closed_by", text(Some(c.as_str()))));
        }
        if let Some(d) = &self.detail {
            fields.push(("detail", text(Some(d))));
        }
        fields
    }

    /// The text line, as the access log writes it by default.
    pub fn line(&self) -> String {
        let client = self.client.map(|a| a.to_string());
        let addr = self.upstream_addr.map(|a| a.to_string());
        let target = self
            .route
            .as_ref()
            .map(|r| upstream::target(&r.upstream, self.sni.as_deref(), self.local_port));
        let proxy_addr = self
            .egress
            .as_ref()
            .and_then(|e| e.addr)
            .map(|a| a.to_string());
        let fields = self.fields(
            &client,
            &addr,
            &proxy_addr,
            &target,
            self.started.elapsed().as_millis() as u64,
        );
        access_log::render(snigate_core::config::LogFormat::Text, &fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_every_field_and_quotes_the_detail() {
        let mut r = Record::new("kafka", "10.1.2.3:50412".parse().ok());
        r.sni = Some("b0.example.test".into());
        r.alpn = "h2,http/1.1".into();
        let up = snigate_core::names::parse_upstream("{sni}:{port}").unwrap();
        let pattern = snigate_core::names::parse_pattern("*.example.test").unwrap();
        r.route = Some(Arc::new(Route::new(pattern, up)));
        r.local_port = 9092;
        r.end(
            Outcome::ConnectFailed,
            "cannot connect to b0.example.test:9092: \"refused\"",
        );
        let line = r.line();
        assert!(line.starts_with("client=10.1.2.3:50412 listener=kafka sni=b0.example.test alpn=h2,http/1.1 route=*.example.test upstream=b0.example.test:9092 upstream_addr=- bytes_up=0 bytes_down=0 duration_ms="), "{line}");
        assert!(line.ends_with(" outcome=connect_failed closed_by=gateway detail=\"cannot connect to b0.example.test:9092: \\\"refused\\\"\""), "{line}");
    }
}
