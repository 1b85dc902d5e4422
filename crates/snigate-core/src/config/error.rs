//! Config errors. Each message names the key path of the problem and says what to fix.
//! Syntax and type errors keep serde_yaml's own line and column. A value that came from
//! the environment is never printed: the message names its variable instead.

use super::env::EnvError;
use crate::names::NameError;
use std::fmt;

/// A value as an error message may show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// Text written in the file, shown in backticks.
    Text(String),
    /// Text that includes environment variables' values: only their names are shown.
    Env(Vec<String>),
}

impl Shown {
    /// Shows `value` unless part of it came from the variables in `from_env`.
    pub fn new(value: &str, from_env: &[String]) -> Self {
        if from_env.is_empty() {
            Shown::Text(value.to_owned())
        } else {
            Shown::Env(from_env.to_vec())
        }
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shown::Text(t) => write!(f, "`{t}`"),
            Shown::Env(vars) => {
                let names: Vec<String> = vars.iter().map(|v| format!("${{{v}}}")).collect();
                write!(f, "from {} (value not shown)", names.join(", "))
            }
        }
    }
}

/// Everything that can be wrong with a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The YAML is malformed, or a key or value has the wrong shape (serde_yaml's message,
    /// with its key path, line and column).
    #[error("{0}")]
    Yaml(String),
    /// The top level is not a mapping.
    #[error("the config must be a YAML mapping of keys to values")]
    NotAMapping,
    /// A top-level key that neither snigate nor Pingora knows.
    #[error("unknown key `{key}`: not a Pingora server setting; snigate's own settings go under `gateway:`")]
    UnknownServerKey {
        /// The key.
        key: String,
    },
    /// A Pingora server setting was rejected.
    #[error("server setting `{key}`: {message}")]
    Server {
        /// The Pingora key.
        key: String,
        /// Pingora's complaint.
        message: String,
    },
    /// No `gateway:` section.
    #[error("the config has no `gateway:` section; add one with `listeners:` and `routes:`")]
    MissingGateway,
    /// `gateway.listeners` is empty.
    #[error(
        "gateway.listeners is empty; add at least one listener with a `name` and an `address`"
    )]
    NoListeners,
    /// More listening sockets than one hand-over between processes carries.
    #[error("gateway.listeners has {count} listeners; at most {max} fit (the listening sockets, the admin endpoint's included, are handed from process to process in one message of at most {} descriptors); merge listeners or run a second gateway", crate::config::MAX_LISTENING_SOCKETS)]
    TooManyListeners {
        /// How many there are.
        count: usize,
        /// How many fit beside the admin endpoint, if it is set.
        max: usize,
    },
    /// A `${VAR}` reference could not be expanded.
    #[error("{key}: {source}")]
    Env {
        /// The key path.
        key: String,
        /// What is wrong with the reference.
        source: EnvError,
    },
    /// A value that is not a valid name, address, pattern, upstream or endpoint.
    #[error("{key}: invalid {what} {shown}: {source}")]
    Invalid {
        /// The key path.
        key: String,
        /// What kind of value was expected.
        what: &'static str,
        /// The value, unless it came from the environment.
        shown: Shown,
        /// What is wrong with it.
        source: NameError,
    },
    /// A pool or a health check that cannot work.
    #[error("{key}: {source}")]
    Pool {
        /// The key path.
        key: String,
        /// What is wrong.
        source: crate::pool::PoolError,
    },
    /// More static routes than `max_routes`.
    #[error("gateway.routes has {routes} routes, over gateway.max_routes ({max}); raise max_routes, or merge routes with a wildcard such as `*.eu-west-2.aws.confluent.cloud`")]
    TooManyRoutes {
        /// How many there are.
        routes: usize,
        /// The limit.
        max: usize,
    },
    /// An `egress_proxy:` value that is not a proxy URL.
    #[error("{key}: {source}")]
    Egress {
        /// The key path.
        key: String,
        /// What is wrong; it never shows the password.
        source: crate::egress::EgressError,
    },
    /// An egress proxy that is one of the gateway's own listeners.
    #[error("{key}: the proxy {proxy} is the gateway's own listener `{listener}` ({address}), so every connection would come back to the gateway; give the address of the network's forward proxy")]
    EgressIsListener {
        /// The key path.
        key: String,
        /// The proxy's label (no credentials).
        proxy: String,
        /// The listener's name.
        listener: String,
        /// The listener's address.
        address: std::net::SocketAddr,
    },
    /// A pool whose connections would go through an egress proxy.
    #[error("gateway.routes[{index}]: a route with `servers:` connects to its servers directly (their health checks cannot go through a proxy); set `egress_proxy: none` on it, or give it one `upstream:`")]
    PoolViaProxy {
        /// The route's index.
        index: usize,
    },
    /// Pinned addresses on a route whose connections go through an egress proxy.
    #[error("gateway.routes[{index}].addresses: the egress proxy connects to the upstream by its name, so pinned addresses would be ignored; remove them, or set `egress_proxy: none` on the route")]
    PinnedViaProxy {
        /// The route's index.
        index: usize,
    },
    /// A route with both `upstream:` and `servers:`, or neither.
    #[error("gateway.routes[{index}]: {problem}")]
    RouteTarget {
        /// The route's index.
        index: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// A pool key on a route without `servers:`.
    #[error("gateway.routes[{index}].{key}: only a route with `servers:` has a pool to {what}; remove it or list the servers")]
    PoolKeyWithoutServers {
        /// The route's index.
        index: usize,
        /// The key.
        key: &'static str,
        /// What the key does.
        what: &'static str,
    },
    /// A value that is not one of the allowed words.
    #[error("{key}: {shown} is not one of {expected}")]
    Choice {
        /// The key path.
        key: String,
        /// The value, unless it came from the environment.
        shown: Shown,
        /// What is allowed.
        expected: &'static str,
    },
    /// An address range that does not parse.
    #[error("{key}: invalid address range {shown}: {source}")]
    Range {
        /// The key path.
        key: String,
        /// The value, unless it came from the environment.
        shown: Shown,
        /// What is wrong with it.
        source: crate::cidr::CidrError,
    },
    /// Two listeners or two clusters with one name.
    #[error("{key} `{name}` is already used by {other}; give each its own name")]
    DuplicateName {
        /// The key path of the second use.
        key: String,
        /// The name.
        name: String,
        /// The key path of the first use.
        other: String,
    },
    /// Two listeners (or a listener and the admin endpoint) on one address.
    #[error("{key} {address} is already used by {other}; each listener needs its own address")]
    DuplicateAddress {
        /// The key path of the second use.
        key: String,
        /// The address.
        address: std::net::SocketAddr,
        /// What used it first.
        other: String,
    },
    /// The same SNI pattern twice.
    #[error("gateway.routes[{index}].sni {sni} duplicates gateway.routes[{first}]; remove one of them or merge their settings")]
    DuplicateRoute {
        /// Index of the second one.
        index: usize,
        /// Index of the first one.
        first: usize,
        /// The pattern.
        sni: Shown,
    },
    /// A fallback that uses `{sni}`.
    #[error("gateway.listeners[{index}].fallback: `{{sni}}` cannot be used in a fallback, because the fallback also takes clients that send no SNI; name a fixed host")]
    FallbackUsesSni {
        /// The listener's index.
        index: usize,
    },
    /// A number out of range.
    #[error("{key} must be {requirement}, got {value}")]
    OutOfRange {
        /// The key path.
        key: String,
        /// What is allowed.
        requirement: &'static str,
        /// What was given.
        value: u64,
    },
    /// `api_key` without `api_secret`, or the other way round.
    #[error("gateway.clusters[{index}].api_key: set both api_key and api_secret, or neither (and configure SASL under `librdkafka:`)")]
    HalfCredentials {
        /// The cluster's index.
        index: usize,
    },
    /// `reload: upgrade` without clusters.
    #[error("gateway.reload: `upgrade` applies discovered route changes, but no clusters are configured")]
    UpgradeWithoutClusters,
}
