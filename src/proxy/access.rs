//! The access log: one line per connection when it closes, on the `snigate::access` log
//! target, and its count in `snigate_connections_total`.

use crate::metrics;
use crate::upstream;
use snigate_core::outcome::Outcome;
use snigate_core::routes::Route;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The log target of access lines.
pub const TARGET: &str = "snigate::access";

/// What the access log says about one connection. Filled in as the connection goes.
#[derive(Debug)]
pub struct Record<'a> {
    /// The listener's name.
    pub listener: &'a str,
    /// The client's address.
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
    /// Bytes from the client to the upstream, the hello included.
    pub bytes_up: u64,
    /// Bytes from the upstream to the client.
    pub bytes_down: u64,
    /// When the connection was accepted.
    pub started: Instant,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, for outcomes that need explaining.
    pub detail: Option<String>,
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
            bytes_up: 0,
            bytes_down: 0,
            started: Instant::now(),
            outcome: Outcome::Ok,
            detail: None,
        }
    }

    /// Sets how the connection ended, and why.
    pub fn end(&mut self, outcome: Outcome, detail: impl Into<String>) {
        self.outcome = outcome;
        self.detail = Some(detail.into());
    }

    /// Counts the connection and writes its access-log line (if that level is enabled).
    pub fn finish(self, counters: &metrics::ConnectionCounters) {
        counters.count(self.route.as_ref().map(|r| &r.label), self.outcome);
        // TCP health checks and port probes stay out of the access log.
        let level = if self.outcome == Outcome::Empty {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        if log::log_enabled!(target: TARGET, level) {
            log::log!(target: TARGET, level, "{}", self.line());
        }
    }

    /// The text line.
    pub fn line(&self) -> String {
        let dash = |a: Option<SocketAddr>| a.map_or_else(|| "-".to_owned(), |a| a.to_string());
        let mut line = format!(
            "client={} listener={} sni={} alpn={} route={} upstream={} upstream_addr={} bytes_up={} bytes_down={} duration_ms={} outcome={}",
            dash(self.client),
            self.listener,
            self.sni.as_deref().unwrap_or("-"),
            if self.alpn.is_empty() { "-" } else { &self.alpn },
            self.route.as_ref().map_or("-", |r| &*r.label),
            self.route.as_ref().map_or_else(
                || "-".to_owned(),
                |r| upstream::target(&r.upstream, self.sni.as_deref(), self.local_port)
            ),
            dash(self.upstream_addr),
            self.bytes_up,
            self.bytes_down,
            self.started.elapsed().as_millis(),
            self.outcome,
        );
        if let Some(d) = &self.detail {
            line.push_str(&format!(" detail={d:?}"));
        }
        line
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
        r.outcome = Outcome::ConnectFailed;
        r.detail = Some("cannot connect to b0.test:9092: \"refused\"".into());
        let line = r.line();
        assert!(line.starts_with("client=10.1.2.3:50412 listener=kafka sni=b0.example.test alpn=h2,http/1.1 route=*.example.test upstream=b0.example.test:9092 upstream_addr=- bytes_up=0 bytes_down=0 duration_ms="), "{line}");
        assert!(line.ends_with(" outcome=connect_failed detail=\"cannot connect to b0.test:9092: \\\"refused\\\"\""), "{line}");
    }
}
