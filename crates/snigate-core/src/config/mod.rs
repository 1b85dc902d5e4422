//! Parsing and validating the config file into typed values.
//!
//! One YAML file holds Pingora's server settings at the top level and snigate's `gateway:`
//! section. [`Config::from_yaml`] refuses unknown keys in `gateway:`, expands `${ENV}`
//! references in values, and checks everything the gateway needs before any socket is
//! opened. Pingora's own keys are expanded here and checked against Pingora by the caller.

pub mod changes;
pub mod env;
pub mod error;
pub mod file;
pub mod reuse;
mod validate;

/// The most listening sockets (listeners plus the admin endpoint) a gateway may have: the
/// stable process hands them to each worker in one message, and Pingora's receiver takes
/// at most 32 descriptors at a time.
pub const MAX_LISTENING_SOCKETS: usize = 32;

pub use error::{ConfigError, Shown};

/// What a reload can reuse from a file that loaded, or why it can reuse nothing.
pub type Reusable = Result<reuse::Reuse, reuse::Declined>;
pub use file::ReloadMode;

use crate::cidr::Cidr;
use crate::names::Upstream;
use crate::proxy_protocol::Version;
use crate::routes::RouteTable;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Pingora's settings: every top-level key but `gateway`, string values expanded.
    pub server: Mapping,
    /// The gateway.
    pub gateway: GatewayConfig,
}

/// The validated `gateway:` section.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Listeners, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// The static routes.
    pub routes: RouteTable,
    /// The admin endpoint, if configured.
    pub admin: Option<SocketAddr>,
    /// Deadlines and limits for each connection.
    pub limits: Limits,
    /// Clusters whose routes are discovered.
    pub clusters: Vec<ClusterConfig>,
    /// Where discovered routes are saved and loaded from.
    pub state_file: Option<PathBuf>,
    /// How discovered route changes are applied.
    pub reload: ReloadMode,
    /// Where and how access lines are written.
    pub access_log: AccessLogConfig,
    /// The active health check of every pool that sets none, and of discovered brokers;
    /// `None` for `health_check: none`.
    pub health_check: Option<crate::pool::HealthCheck>,
    /// The forward proxy upstream connections and discovery go through, if any.
    pub egress_proxy: Option<std::sync::Arc<crate::egress::EgressProxy>>,
    /// The most routes the table may hold, static and discovered together.
    pub max_routes: usize,
    /// Things that work but should be fixed, such as a literal proxy password; `-t` prints
    /// them and the worker logs them.
    pub warnings: Vec<String>,
}

/// Access-log settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// One line per connection as text, or one JSON object.
    pub format: LogFormat,
    /// A file to append to (reopened on SIGUSR1); `None` writes to stderr.
    pub path: Option<PathBuf>,
}

/// The access log's format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` pairs.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Deadlines and limits that apply to each new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deadline for the whole ClientHello.
    pub clienthello_timeout: Duration,
    /// Timeout of one upstream connect attempt (and of name resolution).
    pub connect_timeout: Duration,
    /// A connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once, across listeners.
    pub max_connections: usize,
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Name used in logs and metrics.
    pub name: String,
    /// Address to bind.
    pub address: SocketAddr,
    /// Upstream for unmatched SNI and for clients that send none.
    pub fallback: Option<Upstream>,
    /// The PROXY protocol header the fallback gets, if any.
    pub fallback_send_proxy: Option<Version>,
    /// Every connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// Client address ranges allowed; empty allows every source.
    pub allow: Vec<Cidr>,
}

impl ListenerConfig {
    /// A plain listener: no fallback, no PROXY protocol, every source allowed.
    pub fn new(name: impl Into<String>, address: SocketAddr) -> Self {
        ListenerConfig {
            name: name.into(),
            address,
            fallback: None,
            fallback_send_proxy: None,
            proxy_protocol: false,
            allow: Vec::new(),
        }
    }
}

/// One cluster whose brokers are discovered from its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Name used in logs, metrics and route origins.
    pub name: String,
    /// Bootstrap host and port.
    pub bootstrap: (String, u16),
    /// SASL/PLAIN username and password, if the cluster needs them.
    pub credentials: Option<(Secret, Secret)>,
    /// Kafka REST host and port.
    pub rest: Option<(String, u16)>,
    /// Schema Registry host and port.
    pub schema_registry: Option<(String, u16)>,
    /// Time between refreshes.
    pub refresh_interval: Duration,
    /// How long a vanished broker keeps its route.
    pub removed_broker_grace: Duration,
    /// Timeout of one metadata request.
    pub metadata_timeout: Duration,
    /// librdkafka properties passed through.
    pub librdkafka: BTreeMap<String, Secret>,
}

/// A value that must never be logged: `Debug` prints `MASKED`.
#[derive(Clone, PartialEq, Eq)]
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

/// The text of the config file at `path`; an error names the file.
pub fn read(path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

impl Config {
    /// Reads and validates the file at `path`, with variables from the process environment.
    pub fn load(path: &str) -> Result<Config, ConfigError> {
        let text = read(path)?;
        Config::from_yaml(&text)
    }

    /// Parses and validates YAML text, with variables from the process environment.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_with(text, &env::process_env)
    }

    /// Like [`Config::load`], but a credential whose variable is unset reads as empty: for
    /// commands that never contact a cluster (`snigate routes` from the state file).
    pub fn load_without_secrets(path: &str) -> Result<Config, ConfigError> {
        let text = read(path)?;
        Config::parse(&text, &env::process_env, false, None)
    }

    /// Parses and validates YAML text, looking variables up with `lookup`.
    pub fn from_yaml_with(
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::parse(text, lookup, true, None)
    }

    /// As [`Config::from_yaml`], and also what a later reload of the same file can reuse,
    /// or why it can reuse nothing (the file is not laid out the way [`reuse`] needs).
    pub fn from_yaml_reusable(text: &str) -> Result<(Config, Reusable), ConfigError> {
        Config::from_yaml_reusable_with(text, &env::process_env)
    }

    /// As [`Config::from_yaml_reusable`], looking variables up with `lookup`.
    pub fn from_yaml_reusable_with(
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Config, Reusable), ConfigError> {
        let mut kept = Vec::new();
        let config = Config::parse(text, lookup, true, Some(&mut kept))?;
        let reuse = reuse::Reuse::new(text, kept, &config);
        Ok((config, reuse))
    }

    fn parse(
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
        secrets_required: bool,
        keep: Option<&mut Vec<validate::Kept>>,
    ) -> Result<Config, ConfigError> {
        let file: file::FileTop = match serde_yaml::from_str(text) {
            Ok(file) => file,
            // Only on error: read the file again untyped, to say what is wrong with it.
            Err(typed) => match serde_yaml::from_str::<Value>(text) {
                Ok(Value::Null) => return Err(ConfigError::MissingGateway),
                Ok(Value::Mapping(_)) | Err(_) => return Err(ConfigError::Yaml(typed.to_string())),
                Ok(_) => return Err(ConfigError::NotAMapping),
            },
        };
        let server = validate::server_section(&file.server, lookup)?;
        let gateway = file.gateway.ok_or(ConfigError::MissingGateway)?;
        let gateway = validate::gateway(gateway, lookup, secrets_required, keep)?;
        Ok(Config { server, gateway })
    }
}

#[cfg(test)]
mod tests;
