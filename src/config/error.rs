//! Config errors. Each message names the key and, where it can, the line, and says what to fix.

use std::fmt;

/// A 1-based line number in the config file, when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line(pub Option<usize>);

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, " (line {n})"),
            None => Ok(()),
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
    /// The YAML is malformed or a value has the wrong type or form.
    #[error("{0}")]
    Yaml(String),
    /// A key that snigate and Pingora do not know.
    #[error("unknown key `{key}`{line}: {hint}")]
    UnknownKey {
        /// The key, with its path.
        key: String,
        /// Where it is.
        line: Line,
        /// What to do instead.
        hint: String,
    },
    /// A Pingora server setting was rejected.
    #[error("server setting `{key}`{line}: {message}")]
    Server {
        /// The Pingora key.
        key: String,
        /// Where it is.
        line: Line,
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
    /// Two listeners with one name.
    #[error("gateway.listeners[{index}].name `{name}`{line} is already used by another listener; give each listener its own name")]
    DuplicateListenerName {
        /// Index of the second one.
        index: usize,
        /// The name.
        name: String,
        /// Where it is.
        line: Line,
    },
    /// Two listeners (or a listener and the admin endpoint) on one address.
    #[error("{key} {address} is already used by {other}; each listener needs its own address")]
    DuplicateAddress {
        /// The key of the second use.
        key: String,
        /// The address.
        address: std::net::SocketAddr,
        /// What used it first.
        other: String,
    },
    /// The same SNI pattern twice.
    #[error("gateway.routes[{index}].sni `{sni}`{line} duplicates gateway.routes[{first}]; remove one of them or merge their settings")]
    DuplicateRoute {
        /// Index of the second one.
        index: usize,
        /// Index of the first one.
        first: usize,
        /// The pattern.
        sni: String,
        /// Where the second one is.
        line: Line,
    },
    /// A fallback that uses `{sni}`.
    #[error("gateway.listeners[{index}].fallback{line}: `{{sni}}` cannot be used in a fallback, because the fallback also takes clients that send no SNI; name a fixed host")]
    FallbackUsesSni {
        /// The listener's index.
        index: usize,
        /// Where it is.
        line: Line,
    },
    /// A number out of range.
    #[error("gateway.{key} must be {requirement}, got {value}")]
    OutOfRange {
        /// The key.
        key: &'static str,
        /// What is allowed.
        requirement: &'static str,
        /// What was given.
        value: u64,
    },
    /// A cluster setting is wrong.
    #[error("{key}: {message}")]
    Cluster {
        /// The key.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
}
