//! The YAML shape of the `gateway:` section. Every struct refuses unknown keys, and every
//! string value goes through `${ENV}` expansion and is checked while it is read, so that
//! serde_yaml's error carries the key's path and line.

use super::env;
use crate::clienthello::validate_host;
use crate::routes::{normalize_name, SniPattern, Upstream, UpstreamHost, UpstreamPort};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};

/// The part of the file snigate reads itself; Pingora's keys beside it are read separately.
#[derive(Debug, Deserialize)]
pub struct FileTop {
    /// The `gateway:` section.
    pub gateway: Option<FileGateway>,
}

/// `gateway:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGateway {
    /// `listeners:`.
    #[serde(default)]
    pub listeners: Vec<FileListener>,
    /// `routes:`.
    #[serde(default)]
    pub routes: Vec<FileRoute>,
    /// `admin:`.
    pub admin: Option<FileAdmin>,
    /// How long a client has to send its whole ClientHello.
    #[serde(default = "default_clienthello_timeout_ms")]
    pub clienthello_timeout_ms: u64,
    /// How long one upstream connect attempt (per address) may take.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long a connection may carry no bytes in either direction.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// Most connections open at once, across listeners.
    #[serde(default = "default_max_connections")]
    pub max_connections: u64,
    /// Clusters whose brokers are discovered from their metadata.
    #[serde(default)]
    pub clusters: Vec<FileCluster>,
    /// Where the last good discovered routes are saved, and loaded from at start.
    pub state_file: Option<Expanded>,
    /// How a route change is applied: `live` (swap in place) or `upgrade`.
    #[serde(default)]
    pub reload: ReloadMode,
}

/// How discovered route changes are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadMode {
    /// Swap the route table in place; nothing restarts.
    #[default]
    Live,
    /// Hand over to a new process with Pingora's graceful upgrade.
    Upgrade,
}

/// One entry of `clusters:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCluster {
    /// Name used in logs, metrics and route origins.
    pub name: Name,
    /// The bootstrap `host:port` (a `SASL_SSL://` prefix is allowed).
    pub bootstrap: Expanded,
    /// API key: the SASL/PLAIN username.
    pub api_key: Option<Secret>,
    /// API secret: the SASL/PLAIN password.
    pub api_secret: Option<Secret>,
    /// Kafka REST endpoint, `host[:port]` or an https URL.
    pub rest: Option<Expanded>,
    /// Schema Registry endpoint, `host[:port]` or an https URL.
    pub schema_registry: Option<Expanded>,
    /// Seconds between metadata refreshes.
    #[serde(default = "default_refresh_interval_secs")]
    pub refresh_interval_secs: u64,
    /// How long a broker that vanished from the metadata keeps its route.
    #[serde(default = "default_removed_broker_grace_secs")]
    pub removed_broker_grace_secs: u64,
    /// Timeout of one metadata request.
    #[serde(default = "default_metadata_timeout_ms")]
    pub metadata_timeout_ms: u64,
    /// librdkafka properties passed through as they are.
    #[serde(default)]
    pub librdkafka: std::collections::BTreeMap<String, Secret>,
}

fn default_refresh_interval_secs() -> u64 {
    60
}
fn default_removed_broker_grace_secs() -> u64 {
    900
}
fn default_metadata_timeout_ms() -> u64 {
    10_000
}

/// A string value after `${ENV}` expansion.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Expanded(pub String);

impl TryFrom<String> for Expanded {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        expanded(raw).map(Expanded)
    }
}

/// A value that must never be logged: `Debug` prints `MASKED`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for handing to the Kafka client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MASKED")
    }
}

impl TryFrom<String> for Secret {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        expanded(raw).map(Secret)
    }
}

/// Parses an endpoint: `host`, `host:port`, or a URL such as `https://host/` or
/// `SASL_SSL://host:9092`. Returns the lower-cased host and the port.
pub fn parse_endpoint(v: &str, default_port: u16) -> Result<(String, u16), String> {
    let bad =
        |why: &str| format!("invalid endpoint `{v}`: {why}; expected HOST[:PORT] or https://HOST");
    let rest = v.split_once("://").map_or(v, |(_, r)| r);
    let rest = rest.split('/').next().unwrap_or("");
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(n) if n > 0 => (h, n),
            _ => return Err(bad("the port must be 1-65535")),
        },
        None => (rest, default_port),
    };
    if validate_host(host.as_bytes()).is_err() && host.parse::<IpAddr>().is_err() {
        return Err(bad("the host is not a valid host name"));
    }
    Ok((normalize_name(host).into_owned(), port))
}

fn default_clienthello_timeout_ms() -> u64 {
    5_000
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_idle_timeout_secs() -> u64 {
    1_800
}
fn default_max_connections() -> u64 {
    10_000
}

/// One entry of `listeners:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListener {
    /// Name used in logs and metrics.
    pub name: Name,
    /// `IP:PORT` to listen on.
    pub address: ListenAddress,
    /// Upstream for connections whose SNI matches nothing or that send none.
    pub fallback: Option<UpstreamSpec>,
}

/// One entry of `routes:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    /// The name or `*.suffix` to match.
    pub sni: PatternSpec,
    /// `host:port`, where host may be `{sni}` and port `{port}`.
    pub upstream: UpstreamSpec,
    /// Fixed addresses to connect to instead of resolving the upstream host.
    #[serde(default)]
    pub addresses: Vec<PinnedAddress>,
}

/// `admin:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    /// `IP:PORT` for `/metrics`, `/health` and `/ready`.
    pub address: ListenAddress,
}

fn expanded(raw: String) -> Result<String, String> {
    env::expand(&raw)
        .map(|v| v.into_owned())
        .map_err(|e| e.to_string())
}

/// A listener name: letters, digits, `-` and `_`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Name(pub String);

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let v = expanded(raw)?;
        let ok = !v.is_empty()
            && v.len() <= 64
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Name(v))
        } else {
            Err(format!(
                "invalid name `{v}`: use 1 to 64 letters, digits, `-` or `_`"
            ))
        }
    }
}

/// A socket address to bind.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct ListenAddress(pub SocketAddr);

impl TryFrom<String> for ListenAddress {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let v = expanded(raw)?;
        v.parse().map(ListenAddress).map_err(|_| {
            format!("invalid address `{v}`: expected IP:PORT, such as 0.0.0.0:9092 or [::]:443")
        })
    }
}

/// A fixed upstream address: `IP` or `IP:PORT`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct PinnedAddress(pub SocketAddr);

impl TryFrom<String> for PinnedAddress {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let v = expanded(raw)?;
        if let Ok(addr) = v.parse::<SocketAddr>() {
            return Ok(PinnedAddress(addr));
        }
        if let Ok(ip) = v.parse::<IpAddr>() {
            return Ok(PinnedAddress(SocketAddr::new(ip, 0)));
        }
        Err(format!(
            "invalid pinned address `{v}`: expected an IP or IP:PORT, such as 10.0.0.5 or 10.0.0.5:9092"
        ))
    }
}

/// An SNI pattern: an exact host name or `*.suffix`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct PatternSpec(pub SniPattern);

impl TryFrom<String> for PatternSpec {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let v = expanded(raw)?;
        parse_pattern(&v).map(PatternSpec)
    }
}

/// Parses and normalises an SNI pattern.
pub fn parse_pattern(v: &str) -> Result<SniPattern, String> {
    let (wild, name) = match v.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    if name.contains('*') || (!wild && v.starts_with('*')) {
        return Err(format!(
            "invalid wildcard `{v}`: `*` may only stand as the whole first label, as in *.eu-west-2.aws.confluent.cloud"
        ));
    }
    match validate_host(name.as_bytes()) {
        Ok(_) => {}
        Err(crate::clienthello::Reject::IpLiteralSni) => {
            return Err(format!(
                "invalid sni `{v}`: an IP address is never sent as SNI; route host names"
            ))
        }
        Err(_) => {
            return Err(format!(
                "invalid sni `{v}`: expected a host name such as pkc-1.example.cloud, or *.example.cloud"
            ))
        }
    }
    let norm = normalize_name(name).into_owned();
    if wild {
        if norm.split('.').count() < 2 {
            return Err(format!(
                "invalid wildcard `{v}`: it is too broad; a wildcard needs at least two labels after `*.` (e.g. *.confluent.cloud) so the gateway cannot become an open forwarder"
            ));
        }
        Ok(SniPattern::Wildcard(norm))
    } else {
        Ok(SniPattern::Exact(norm))
    }
}

/// An upstream `host:port`, where host may be `{sni}` and port `{port}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct UpstreamSpec(pub Upstream);

impl TryFrom<String> for UpstreamSpec {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let v = expanded(raw)?;
        parse_upstream(&v).map(UpstreamSpec)
    }
}

/// Parses `host:port` with the `{sni}` and `{port}` placeholders.
pub fn parse_upstream(v: &str) -> Result<Upstream, String> {
    let bad = |why: &str| {
        format!("invalid upstream `{v}`: {why}; expected HOST:PORT, where HOST may be {{sni}} and PORT may be {{port}}")
    };
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(|| bad("missing port"))?;
        (h, p)
    } else {
        v.rsplit_once(':').ok_or_else(|| bad("missing port"))?
    };
    let port = match port {
        "{port}" => UpstreamPort::Listener,
        p => match p.parse::<u16>() {
            Ok(n) if n > 0 => UpstreamPort::Fixed(n),
            _ => return Err(bad("the port must be 1-65535 or {port}")),
        },
    };
    let host = match host {
        "{sni}" => UpstreamHost::Sni,
        h if h.parse::<IpAddr>().is_ok() => UpstreamHost::Fixed(h.to_owned()),
        h if h.contains('{') || h.contains('}') => {
            return Err(bad("only {sni} may stand for the host, on its own"))
        }
        h => match validate_host(h.as_bytes()) {
            Ok(_) => UpstreamHost::Fixed(normalize_name(h).into_owned()),
            Err(_) => return Err(bad("the host is not a valid host name or IP")),
        },
    };
    Ok(Upstream {
        host,
        port,
        pinned: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(
            parse_pattern("*.EU.Example.test").unwrap(),
            SniPattern::Wildcard("eu.example.test".into())
        );
        assert_eq!(
            parse_pattern("Pkc-1.test.").unwrap(),
            SniPattern::Exact("pkc-1.test".into())
        );
        for bad in [
            "*",
            "*.test",
            "a.*.test",
            "*a.test",
            "**.a.test",
            "1.2.3.4",
            "a..test",
            "",
        ] {
            assert!(parse_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("SASL_SSL://PKC-1.x.test:9092", 9092).unwrap(),
            ("pkc-1.x.test".into(), 9092)
        );
        assert_eq!(
            parse_endpoint("https://psrc-1.x.test/", 443).unwrap(),
            ("psrc-1.x.test".into(), 443)
        );
        assert_eq!(
            parse_endpoint("pkac-1.x.test", 443).unwrap(),
            ("pkac-1.x.test".into(), 443)
        );
        assert!(parse_endpoint("https://", 443).is_err());
        assert!(parse_endpoint("a.test:0", 443).is_err());
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "MASKED");
    }

    #[test]
    fn upstreams() {
        assert_eq!(
            parse_upstream("{sni}:{port}").unwrap().to_string(),
            "{sni}:{port}"
        );
        assert_eq!(
            parse_upstream("A.test:9092").unwrap().to_string(),
            "a.test:9092"
        );
        assert_eq!(
            parse_upstream("[::1]:443").unwrap().to_string(),
            "[::1]:443"
        );
        assert_eq!(
            parse_upstream("10.0.0.1:443").unwrap().to_string(),
            "10.0.0.1:443"
        );
        for bad in [
            "a.test",
            "a.test:0",
            "a.test:99999",
            "x{sni}:1",
            "{sni}:{sni}",
            ":1",
            "[::1]",
        ] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
    }
}
