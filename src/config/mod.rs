//! Loading and validating the config file.
//!
//! One YAML file holds Pingora's server settings at the top level and snigate's `gateway:`
//! section. [`Config::from_yaml`] reads both, refuses unknown keys anywhere, expands
//! `${ENV}` references in values, and checks everything the gateway needs before any
//! socket is opened. `snigate -t` runs exactly this.

pub mod env;
pub mod error;
pub mod file;

pub use error::{ConfigError, Line};

use crate::routes::{Route, RouteTable, Upstream, UpstreamHost};
use pingora_core::server::configuration::ServerConf;
use serde_yaml::{Mapping, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Default pid file, unless `pid_file` is set.
pub const DEFAULT_PID_FILE: &str = "/tmp/snigate.pid";
/// Default upgrade socket, unless `upgrade_sock` is set.
pub const DEFAULT_UPGRADE_SOCK: &str = "/tmp/snigate_upgrade.sock";

/// A validated config: Pingora's part and the gateway's.
#[derive(Debug)]
pub struct Config {
    /// Pingora's server settings.
    pub server: ServerConf,
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
    /// Deadline for the whole ClientHello.
    pub clienthello_timeout: Duration,
    /// Timeout of one upstream connect attempt.
    pub connect_timeout: Duration,
    /// A connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Clusters whose routes are discovered.
    pub clusters: Vec<ClusterConfig>,
    /// Where discovered routes are saved and loaded from.
    pub state_file: Option<std::path::PathBuf>,
    /// How route changes are applied.
    pub reload: file::ReloadMode,
}

/// One cluster whose brokers are discovered from its metadata.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Name used in logs, metrics and route origins.
    pub name: String,
    /// Bootstrap host and port.
    pub bootstrap: (String, u16),
    /// SASL/PLAIN username and password, if the cluster needs them.
    pub credentials: Option<(file::Secret, file::Secret)>,
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
    pub librdkafka: std::collections::BTreeMap<String, file::Secret>,
}

/// One listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Name used in logs and metrics.
    pub name: String,
    /// Address to bind.
    pub address: SocketAddr,
    /// Upstream for unmatched SNI and for clients that send none.
    pub fallback: Option<Upstream>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &str) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_yaml(&text)
    }

    /// Parses and validates a config from YAML text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let top: Value = serde_yaml::from_str(text).map_err(|e| yaml_err(e, text))?;
        let top = match top {
            Value::Mapping(m) => m,
            Value::Null => return Err(ConfigError::MissingGateway),
            _ => {
                return Err(ConfigError::Yaml(
                    "the config must be a YAML mapping of keys to values".into(),
                ))
            }
        };
        let server = server_conf(&top, text)?;
        let file: file::FileTop = serde_yaml::from_str(text).map_err(|e| yaml_err(e, text))?;
        let gateway = gateway_config(file.gateway.ok_or(ConfigError::MissingGateway)?, text)?;
        Ok(Config { server, gateway })
    }
}

/// Turns a serde_yaml error into a config error. A value rejected while it is read is
/// reported by serde_yaml at the start of its enclosing entry; when the message quotes the
/// value in backticks, the line is moved to the value's own line.
fn yaml_err(e: serde_yaml::Error, text: &str) -> ConfigError {
    let msg = e.to_string();
    let Some(loc) = e.location() else {
        return ConfigError::Yaml(msg);
    };
    let quoted = msg.split('`').nth(1).filter(|q| !q.is_empty());
    let own_line = quoted.and_then(|q| {
        text.lines()
            .enumerate()
            .skip(loc.line().saturating_sub(1))
            .take(32)
            .find(|(_, l)| l.contains(q))
            .map(|(i, _)| i + 1)
    });
    match own_line {
        Some(line) if line != loc.line() => {
            let at = format!("at line {} column {}", loc.line(), loc.column());
            ConfigError::Yaml(msg.replace(&at, &format!("at line {line}")))
        }
        _ => ConfigError::Yaml(msg),
    }
}

/// Line of the first top-level `key:` in the text.
fn top_key_line(text: &str, key: &str) -> Line {
    let found = text.lines().position(|l| {
        l.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    });
    Line(found.map(|i| i + 1))
}

/// Line of the `n`-th (0-based) occurrence of `field: value` (value possibly quoted).
fn field_line(text: &str, field: &str, value: &str, n: usize) -> Line {
    let found = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim_start().trim_start_matches("- ");
            l.strip_prefix(field)
                .and_then(|r| r.trim_start().strip_prefix(':'))
                .map(|r| {
                    let r = r.split(" #").next().unwrap_or("").trim();
                    r.trim_matches(|c| c == '"' || c == '\'') == value
                })
                .unwrap_or(false)
        })
        .nth(n);
    Line(found.map(|(i, _)| i + 1))
}

/// Reads Pingora's settings: every top-level key except `gateway` must be one of
/// `ServerConf`'s fields. String values get `${ENV}` expansion.
fn server_conf(top: &Mapping, text: &str) -> Result<ServerConf, ConfigError> {
    let known = serde_yaml::to_value(ServerConf::default())
        .ok()
        .and_then(|v| v.as_mapping().cloned())
        .unwrap_or_default();
    let mut conf = Mapping::new();
    conf.insert("pid_file".into(), DEFAULT_PID_FILE.into());
    conf.insert("upgrade_sock".into(), DEFAULT_UPGRADE_SOCK.into());
    for (k, v) in top {
        let Some(key) = k.as_str() else {
            return Err(ConfigError::Yaml(format!(
                "top-level key {k:?} is not a string"
            )));
        };
        if key == "gateway" {
            continue;
        }
        let line = top_key_line(text, key);
        if !known.contains_key(key) {
            return Err(ConfigError::UnknownKey {
                key: key.to_owned(),
                line,
                hint: "not a Pingora server setting; snigate's own settings go under `gateway:`"
                    .into(),
            });
        }
        let value = match v {
            Value::String(s) => Value::String(
                env::expand(s)
                    .map_err(|e| ConfigError::Server {
                        key: key.to_owned(),
                        line,
                        message: e.to_string(),
                    })?
                    .into_owned(),
            ),
            other => other.clone(),
        };
        // Check each key on its own, so that an error names it.
        let mut single = Mapping::new();
        single.insert(k.clone(), value.clone());
        serde_yaml::from_value::<ServerConf>(Value::Mapping(single)).map_err(|e| {
            ConfigError::Server {
                key: key.to_owned(),
                line,
                message: e.to_string(),
            }
        })?;
        conf.insert(k.clone(), value);
    }
    let parsed: ServerConf =
        serde_yaml::from_value(Value::Mapping(conf)).map_err(|e| ConfigError::Server {
            key: "(server)".into(),
            line: Line(None),
            message: e.to_string(),
        })?;
    parsed.validate().map_err(|e| ConfigError::Server {
        key: "(server)".into(),
        line: Line(None),
        message: e.to_string(),
    })
}

fn gateway_config(g: file::FileGateway, text: &str) -> Result<GatewayConfig, ConfigError> {
    if g.listeners.is_empty() {
        return Err(ConfigError::NoListeners);
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut addresses: HashMap<SocketAddr, String> = HashMap::new();
    let mut listeners = Vec::with_capacity(g.listeners.len());
    for (index, l) in g.listeners.iter().enumerate() {
        if names.insert(&l.name.0, index).is_some() {
            return Err(ConfigError::DuplicateListenerName {
                index,
                name: l.name.0.clone(),
                line: field_line(text, "name", &l.name.0, 1),
            });
        }
        let key = format!("gateway.listeners[{index}].address");
        if let Some(other) = addresses.insert(l.address.0, format!("listener `{}`", l.name.0)) {
            return Err(ConfigError::DuplicateAddress {
                key,
                address: l.address.0,
                other,
            });
        }
        let fallback = l.fallback.as_ref().map(|f| f.0.clone());
        if fallback
            .as_ref()
            .is_some_and(|f| f.host == UpstreamHost::Sni)
        {
            let raw = text
                .lines()
                .filter(|line| line.trim_start().starts_with("fallback:"))
                .count();
            let nth = g.listeners[..index]
                .iter()
                .filter(|l| l.fallback.is_some())
                .count();
            let line = if raw > nth {
                field_line_prefix(text, "fallback", nth)
            } else {
                Line(None)
            };
            return Err(ConfigError::FallbackUsesSni { index, line });
        }
        listeners.push(ListenerConfig {
            name: l.name.0.clone(),
            address: l.address.0,
            fallback,
        });
    }
    let admin = g.admin.as_ref().map(|a| a.address.0);
    if let Some(addr) = admin {
        if let Some(other) = addresses.get(&addr) {
            return Err(ConfigError::DuplicateAddress {
                key: "gateway.admin.address".into(),
                address: addr,
                other: other.clone(),
            });
        }
    }

    let mut seen: HashMap<crate::routes::SniPattern, usize> = HashMap::new();
    let mut routes = Vec::with_capacity(g.routes.len());
    for (index, r) in g.routes.into_iter().enumerate() {
        let pattern = r.sni.0;
        if let Some(&first) = seen.get(&pattern) {
            let sni = pattern.to_string();
            let line = duplicate_line(text, &sni, &pattern);
            return Err(ConfigError::DuplicateRoute {
                index,
                first,
                sni,
                line,
            });
        }
        seen.insert(pattern.clone(), index);
        let mut upstream = r.upstream.0;
        upstream.pinned = r.addresses.iter().map(|a| a.0).collect();
        routes.push(Route::new(pattern, upstream));
    }
    // Duplicates were refused above, so this cannot fail; keep the error path honest anyway.
    let routes = RouteTable::new(routes).map_err(|d| ConfigError::DuplicateRoute {
        index: 0,
        first: 0,
        sni: d.0.to_string(),
        line: Line(None),
    })?;

    let clienthello_ms = in_range(
        "clienthello_timeout_ms",
        g.clienthello_timeout_ms,
        1..=600_000,
        "between 1 and 600000",
    )?;
    let connect_ms = in_range(
        "connect_timeout_ms",
        g.connect_timeout_ms,
        1..=600_000,
        "between 1 and 600000",
    )?;
    let idle_secs = in_range(
        "idle_timeout_secs",
        g.idle_timeout_secs,
        1..=604_800,
        "between 1 and 604800 (one week)",
    )?;
    let max_connections = in_range(
        "max_connections",
        g.max_connections,
        1..=10_000_000,
        "between 1 and 10000000",
    )?;
    let clusters = clusters_config(g.clusters)?;
    if clusters.is_empty() && g.reload == file::ReloadMode::Upgrade {
        return Err(ConfigError::Cluster {
            key: "gateway.reload".into(),
            message: "`upgrade` applies discovered route changes, but no clusters are configured"
                .into(),
        });
    }
    Ok(GatewayConfig {
        clusters,
        state_file: g.state_file.map(|p| std::path::PathBuf::from(p.0)),
        reload: g.reload,
        listeners,
        routes,
        admin,
        clienthello_timeout: Duration::from_millis(clienthello_ms),
        connect_timeout: Duration::from_millis(connect_ms),
        idle_timeout: Duration::from_secs(idle_secs),
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
    })
}

fn clusters_config(files: Vec<file::FileCluster>) -> Result<Vec<ClusterConfig>, ConfigError> {
    let mut out: Vec<ClusterConfig> = Vec::with_capacity(files.len());
    for (i, c) in files.into_iter().enumerate() {
        let key = |field: &str| format!("gateway.clusters[{i}].{field}");
        let err = |field: &str, message: String| ConfigError::Cluster {
            key: key(field),
            message,
        };
        if out.iter().any(|o| o.name == c.name.0) {
            return Err(err(
                "name",
                format!(
                    "`{}` is used by another cluster; give each cluster its own name",
                    c.name.0
                ),
            ));
        }
        let bootstrap =
            file::parse_endpoint(&c.bootstrap.0, 9092).map_err(|m| err("bootstrap", m))?;
        let rest = c
            .rest
            .map(|r| file::parse_endpoint(&r.0, 443))
            .transpose()
            .map_err(|m| err("rest", m))?;
        let schema_registry = c
            .schema_registry
            .map(|r| file::parse_endpoint(&r.0, 443))
            .transpose()
            .map_err(|m| err("schema_registry", m))?;
        let credentials = match (c.api_key, c.api_secret) {
            (Some(k), Some(s)) => Some((k, s)),
            (None, None) => None,
            _ => {
                return Err(err(
                    "api_key",
                    "set both api_key and api_secret, or neither (and configure SASL under `librdkafka:`)".into(),
                ))
            }
        };
        let refresh = in_range_key(
            key("refresh_interval_secs"),
            c.refresh_interval_secs,
            1..=86_400,
            "between 1 and 86400",
        )?;
        let grace = in_range_key(
            key("removed_broker_grace_secs"),
            c.removed_broker_grace_secs,
            0..=604_800,
            "between 0 and 604800",
        )?;
        let timeout = in_range_key(
            key("metadata_timeout_ms"),
            c.metadata_timeout_ms,
            100..=600_000,
            "between 100 and 600000",
        )?;
        out.push(ClusterConfig {
            name: c.name.0,
            bootstrap,
            credentials,
            rest,
            schema_registry,
            refresh_interval: Duration::from_secs(refresh),
            removed_broker_grace: Duration::from_secs(grace),
            metadata_timeout: Duration::from_millis(timeout),
            librdkafka: c.librdkafka,
        });
    }
    Ok(out)
}

fn in_range_key(
    key: String,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
    requirement: &str,
) -> Result<u64, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Cluster {
            key,
            message: format!("must be {requirement}, got {value}"),
        })
    }
}

fn in_range(
    key: &'static str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
    requirement: &'static str,
) -> Result<u64, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::OutOfRange {
            key,
            requirement,
            value,
        })
    }
}

fn field_line_prefix(text: &str, field: &str, n: usize) -> Line {
    let found = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            l.trim_start()
                .trim_start_matches("- ")
                .strip_prefix(field)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .nth(n);
    Line(found.map(|(i, _)| i + 1))
}

/// Line of the second `sni:` whose value normalises to `pattern`.
fn duplicate_line(text: &str, sni: &str, pattern: &crate::routes::SniPattern) -> Line {
    let mut count = 0;
    for (i, l) in text.lines().enumerate() {
        let l = l.trim_start().trim_start_matches("- ");
        let Some(rest) = l
            .strip_prefix("sni")
            .and_then(|r| r.trim_start().strip_prefix(':'))
        else {
            continue;
        };
        let raw = rest.split(" #").next().unwrap_or("").trim();
        let raw = raw.trim_matches(|c| c == '"' || c == '\'');
        let same =
            raw.eq_ignore_ascii_case(sni) || file::parse_pattern(raw).is_ok_and(|p| &p == pattern);
        if same {
            count += 1;
            if count == 2 {
                return Line(Some(i + 1));
            }
        }
    }
    Line(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
threads: 2
grace_period_seconds: 1
gateway:
  listeners:
    - name: kafka
      address: 127.0.0.1:9092
    - name: https
      address: 127.0.0.1:443
      fallback: default.test:443
  routes:
    - sni: pkc-1.eu.example.test
      upstream: pkc-1.eu.example.test:9092
    - sni: "*.eu.example.test"
      upstream: "{sni}:{port}"
    - sni: pl.example.test
      upstream: pl.example.test:9092
      addresses: [10.0.0.5, "10.0.0.6:19092"]
  admin:
    address: 127.0.0.1:9080
"#;

    fn err(text: &str) -> String {
        Config::from_yaml(text).unwrap_err().to_string()
    }

    #[test]
    fn good_config_loads() {
        let c = Config::from_yaml(GOOD).unwrap();
        assert_eq!(c.server.threads, 2);
        assert_eq!(c.server.pid_file, DEFAULT_PID_FILE);
        assert_eq!(c.gateway.listeners.len(), 2);
        assert_eq!(c.gateway.routes.len(), 3);
        assert_eq!(c.gateway.clienthello_timeout, Duration::from_secs(5));
        let pl = c.gateway.routes.lookup("pl.example.test").unwrap();
        assert_eq!(pl.upstream.pinned.len(), 2);
        assert_eq!(pl.upstream.pinned[1].port(), 19092);
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let e = err(&GOOD.replace("threads: 2", "thread: 2"));
        assert!(e.contains("unknown key `thread` (line 2)"), "{e}");
        let e = err(&GOOD.replace("  admin:", "  admn:"));
        assert!(
            e.contains("unknown field `admn`") && e.contains("line 19"),
            "{e}"
        );
        let e = err(&GOOD.replace("upstream: pl.", "upstraem: pl."));
        assert!(
            e.contains("gateway.routes[2]") && e.contains("upstraem"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_route_names_both() {
        let text = GOOD.replace("sni: pl.example.test", "sni: PKC-1.eu.example.test");
        let e = err(&text);
        assert!(e.contains("gateway.routes[2].sni `pkc-1.eu.example.test` (line 16) duplicates gateway.routes[0]"), "{e}");
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let e = err(&GOOD.replace("127.0.0.1:443", "127.0.0.1:4x3"));
        assert!(
            e.contains("gateway.listeners[1]: invalid address `127.0.0.1:4x3`")
                && e.contains("at line 9"),
            "{e}"
        );
        let e = err(&GOOD.replace("\"*.eu.example.test\"", "\"eu.*.example.test\""));
        assert!(
            e.contains("gateway.routes[1]: invalid wildcard") && e.contains("line 14"),
            "{e}"
        );
        let e = err(&GOOD.replace("10.0.0.5,", "ten,"));
        assert!(e.contains("invalid pinned address `ten`"), "{e}");
        let e = err(&GOOD.replace("default.test:443", "\"{sni}:443\""));
        assert!(e.contains("gateway.listeners[1].fallback (line 10)"), "{e}");
        let e = err(&GOOD.replace("threads: 2", "threads: many"));
        assert!(e.contains("server setting `threads` (line 2)"), "{e}");
    }

    #[test]
    fn env_references_expand_and_missing_ones_fail() {
        let e = err(&GOOD.replace("default.test", "${SNIGATE_TEST_SURELY_UNSET}"));
        assert!(e.contains("SNIGATE_TEST_SURELY_UNSET is not set"), "{e}");
        assert!(
            e.contains("gateway.listeners[1]") && e.contains("at line 10"),
            "{e}"
        );
    }

    #[test]
    fn structural_errors() {
        assert!(err("threads: 1\n").contains("no `gateway:` section"));
        assert!(err("gateway:\n  listeners: []\n").contains("listeners is empty"));
        let e = err(&GOOD.replace("127.0.0.1:443", "127.0.0.1:9092"));
        assert!(e.contains("already used by listener `kafka`"), "{e}");
        let e = err(&GOOD.replace("name: https", "name: kafka"));
        assert!(
            e.contains("gateway.listeners[1].name `kafka` (line 8)"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "grace_period_seconds: 1",
            "grace_period_seconds: 1\ngateway_x: 1",
        ));
        assert!(e.contains("unknown key `gateway_x`"), "{e}");
    }
}
