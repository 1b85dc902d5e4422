//! The YAML shape of the `gateway:` section, read as it is written. Every struct refuses
//! unknown keys, so serde_yaml reports a typo with its key path, line and column. Values are
//! kept as text here; `${ENV}` expansion and checking happen in [`super::validate`], where
//! each error names its key path.

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;

/// The whole file, read in one pass: the `gateway:` section typed, and every other key
/// (Pingora's) kept as written, for the caller to check.
#[derive(Debug, Default)]
pub struct FileTop {
    /// The `gateway:` section.
    pub gateway: Option<FileGateway>,
    /// Every other top-level key.
    pub server: Mapping,
}

impl<'de> Deserialize<'de> for FileTop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = FileTop;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a mapping of settings with a `gateway:` section")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<FileTop, E> {
        Ok(FileTop::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FileTop, A::Error> {
        let mut top = FileTop::default();
        while let Some(key) = map.next_key::<Value>()? {
            if key.as_str() == Some("gateway") {
                if top.gateway.is_some() {
                    return Err(serde::de::Error::duplicate_field("gateway"));
                }
                top.gateway = Some(map.next_value()?);
            } else {
                let value = map.next_value()?;
                top.server.insert(key, value);
            }
        }
        Ok(top)
    }
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
    pub state_file: Option<String>,
    /// How a route change is applied: `live` (swap in place) or `upgrade`.
    #[serde(default)]
    pub reload: ReloadMode,
    /// Where and how access lines are written.
    pub access_log: Option<FileAccessLog>,
    /// The default active health check of every pool: a mapping, or `none`.
    pub health_check: Option<serde_yaml::Value>,
    /// A forward proxy every upstream connection goes through (and discovery), or `none`.
    pub egress_proxy: Option<String>,
    /// The most routes the table may hold, static and discovered together.
    #[serde(default = "default_max_routes")]
    pub max_routes: u64,
}

/// `access_log:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAccessLog {
    /// `text` (the default) or `json`.
    pub format: Option<String>,
    /// A file to append to, instead of stderr.
    pub path: Option<String>,
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

/// One entry of `listeners:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListener {
    /// Name used in logs and metrics.
    pub name: String,
    /// `IP:PORT` to listen on.
    pub address: String,
    /// Upstream for connections whose SNI matches nothing or that send none.
    pub fallback: Option<String>,
    /// `v1` or `v2`: send the fallback a PROXY protocol header first.
    pub fallback_send_proxy: Option<String>,
    /// `accept`: every connection starts with a PROXY protocol header (v1 or v2).
    pub proxy_protocol: Option<String>,
    /// Client address ranges allowed to connect; without it, every source is.
    pub allow: Option<Vec<String>>,
}

/// One entry of `routes:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    /// The name or `*.suffix` to match.
    pub sni: String,
    /// `host:port`, where host may be `{sni}` and port `{port}`.
    pub upstream: Option<String>,
    /// A pool of servers, instead of one `upstream`.
    pub servers: Option<Vec<FileServer>>,
    /// How the pool spreads connections.
    pub balance: Option<String>,
    /// Other servers tried after a failed connect.
    pub retries: Option<u32>,
    /// The pool's active health check: a mapping, or `none`.
    pub health_check: Option<serde_yaml::Value>,
    /// Fixed addresses to connect to instead of resolving the upstream host.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// `v1` or `v2`: send the upstream a PROXY protocol header first.
    pub send_proxy: Option<String>,
    /// This route's own forward proxy, or `none` for a direct connect.
    pub egress_proxy: Option<String>,
}

/// One entry of a route's `servers:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    /// `IP:PORT` or `name:port`.
    pub address: String,
    /// Relative share of connections (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Most connections open to it at once from this route.
    pub max_connections: Option<u32>,
    /// Used only when every primary server is down.
    #[serde(default)]
    pub backup: bool,
}

/// A `health_check:` mapping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHealthCheck {
    /// `tcp` (default) or `tls`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Milliseconds between checks (default 2000).
    pub interval_ms: Option<u64>,
    /// Milliseconds one check may take (default 1000).
    pub timeout_ms: Option<u64>,
    /// Passed checks that bring a server up (default 2).
    pub rise: Option<u32>,
    /// Failed checks that take a server down (default 3).
    pub fall: Option<u32>,
}

fn default_weight() -> u32 {
    1
}

/// `admin:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    /// `IP:PORT` for `/metrics`, `/health`, `/ready` and `/routes`.
    pub address: String,
}

/// One entry of `clusters:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCluster {
    /// Name used in logs, metrics and route origins.
    pub name: String,
    /// The bootstrap `host:port` (a `SASL_SSL://` prefix is allowed).
    pub bootstrap: String,
    /// API key: the SASL/PLAIN username.
    pub api_key: Option<String>,
    /// API secret: the SASL/PLAIN password.
    pub api_secret: Option<String>,
    /// Kafka REST endpoint, `host[:port]` or an https URL.
    pub rest: Option<String>,
    /// Schema Registry endpoint, `host[:port]` or an https URL.
    pub schema_registry: Option<String>,
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
    pub librdkafka: BTreeMap<String, String>,
}

fn default_max_routes() -> u64 {
    1_000_000
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
fn default_refresh_interval_secs() -> u64 {
    60
}
fn default_removed_broker_grace_secs() -> u64 {
    900
}
fn default_metadata_timeout_ms() -> u64 {
    10_000
}
