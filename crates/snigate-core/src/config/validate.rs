//! From the file's text values to typed, checked values. Each check names the key path it
//! refuses, such as `gateway.routes[2].upstream`.

use super::env::{expand_with, Expanded};
use super::error::{ConfigError, Shown};
use super::file::{FileCluster, FileGateway, FileListener, ReloadMode};
use super::{ClusterConfig, GatewayConfig, Limits, ListenerConfig, Secret};
use crate::names::{self, NameError, UpstreamHost};
use crate::routes::{Route, RouteTable};
use serde_yaml::{Mapping, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands one value, naming `key` if a reference is wrong.
fn expand<'v>(key: &str, value: &'v str, lookup: Lookup) -> Result<Expanded<'v>, ConfigError> {
    expand_with(value, lookup).map_err(|source| ConfigError::Env {
        key: key.to_owned(),
        source,
    })
}

/// Expands and parses one value; an error names `key`, says what was expected, and shows
/// the value only if none of it came from the environment.
fn parse<T>(
    key: &str,
    what: &'static str,
    raw: &str,
    lookup: Lookup,
    parser: impl FnOnce(&str) -> Result<T, NameError>,
) -> Result<T, ConfigError> {
    let e = expand(key, raw, lookup)?;
    parser(&e.value).map_err(|source| ConfigError::Invalid {
        key: key.to_owned(),
        what,
        shown: Shown::new(&e.value, &e.from_env),
        source,
    })
}

/// Pingora's part: every top-level key but `gateway`, with string values expanded. Whether
/// each key is one of Pingora's is for the caller, which knows Pingora.
pub(super) fn server_section(top: &Mapping, lookup: Lookup) -> Result<Mapping, ConfigError> {
    let mut out = Mapping::new();
    for (k, v) in top {
        let Some(key) = k.as_str() else {
            return Err(ConfigError::Yaml(format!(
                "top-level key {k:?} is not a string"
            )));
        };
        if key == "gateway" {
            continue;
        }
        let value = match v {
            // A reference may stand for a number or a boolean: `threads: ${THREADS:-2}`.
            Value::String(s) if s.contains("${") => {
                let text = expand(key, s, lookup)?.value.into_owned();
                match serde_yaml::from_str::<Value>(&text) {
                    Ok(scalar @ (Value::Number(_) | Value::Bool(_))) => scalar,
                    _ => Value::String(text),
                }
            }
            other => other.clone(),
        };
        out.insert(k.clone(), value);
    }
    Ok(out)
}

fn in_range(
    key: String,
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

/// The `gateway:` section.
pub(super) fn gateway(g: FileGateway, lookup: Lookup) -> Result<GatewayConfig, ConfigError> {
    if g.listeners.is_empty() {
        return Err(ConfigError::NoListeners);
    }
    let mut addresses: HashMap<SocketAddr, String> = HashMap::new();
    let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(g.listeners.len());
    for (index, l) in g.listeners.iter().enumerate() {
        let listener = listener(index, l, lookup)?;
        if let Some(first) = listeners.iter().position(|o| o.name == listener.name) {
            return Err(ConfigError::DuplicateName {
                key: format!("gateway.listeners[{index}].name"),
                name: listener.name,
                other: format!("gateway.listeners[{first}]"),
            });
        }
        if let Some(other) =
            addresses.insert(listener.address, format!("listener `{}`", listener.name))
        {
            return Err(ConfigError::DuplicateAddress {
                key: format!("gateway.listeners[{index}].address"),
                address: listener.address,
                other,
            });
        }
        listeners.push(listener);
    }
    let admin = match &g.admin {
        Some(a) => {
            let key = "gateway.admin.address";
            let addr = parse(
                key,
                "address",
                &a.address,
                lookup,
                names::parse_listen_address,
            )?;
            if let Some(other) = addresses.get(&addr) {
                return Err(ConfigError::DuplicateAddress {
                    key: key.into(),
                    address: addr,
                    other: other.clone(),
                });
            }
            Some(addr)
        }
        None => None,
    };
    let routes = routes(&g, lookup)?;
    let ms = |key: &str, v: u64| {
        in_range(
            format!("gateway.{key}"),
            v,
            1..=600_000,
            "between 1 and 600000",
        )
    };
    let limits = Limits {
        clienthello_timeout: Duration::from_millis(ms(
            "clienthello_timeout_ms",
            g.clienthello_timeout_ms,
        )?),
        connect_timeout: Duration::from_millis(ms("connect_timeout_ms", g.connect_timeout_ms)?),
        idle_timeout: Duration::from_secs(in_range(
            "gateway.idle_timeout_secs".into(),
            g.idle_timeout_secs,
            1..=604_800,
            "between 1 and 604800 (one week)",
        )?),
        max_connections: usize::try_from(in_range(
            "gateway.max_connections".into(),
            g.max_connections,
            1..=10_000_000,
            "between 1 and 10000000",
        )?)
        .unwrap_or(usize::MAX),
    };
    let mut clusters: Vec<ClusterConfig> = Vec::with_capacity(g.clusters.len());
    for (index, c) in g.clusters.iter().enumerate() {
        let cluster = cluster(index, c, lookup)?;
        if let Some(first) = clusters.iter().position(|o| o.name == cluster.name) {
            return Err(ConfigError::DuplicateName {
                key: format!("gateway.clusters[{index}].name"),
                name: cluster.name,
                other: format!("gateway.clusters[{first}]"),
            });
        }
        clusters.push(cluster);
    }
    if clusters.is_empty() && g.reload == ReloadMode::Upgrade {
        return Err(ConfigError::UpgradeWithoutClusters);
    }
    let state_file = match &g.state_file {
        Some(p) => Some(
            expand("gateway.state_file", p, lookup)?
                .value
                .into_owned()
                .into(),
        ),
        None => None,
    };
    Ok(GatewayConfig {
        listeners,
        routes,
        admin,
        limits,
        clusters,
        state_file,
        reload: g.reload,
    })
}

fn listener(index: usize, l: &FileListener, lookup: Lookup) -> Result<ListenerConfig, ConfigError> {
    let key = |field: &str| format!("gateway.listeners[{index}].{field}");
    let name = parse(&key("name"), "name", &l.name, lookup, |v| {
        names::check_name(v).map(|()| v.to_owned())
    })?;
    let address = parse(
        &key("address"),
        "address",
        &l.address,
        lookup,
        names::parse_listen_address,
    )?;
    let fallback = match &l.fallback {
        Some(f) => {
            let up = parse(
                &key("fallback"),
                "upstream",
                f,
                lookup,
                names::parse_upstream,
            )?;
            if up.host == UpstreamHost::Sni {
                return Err(ConfigError::FallbackUsesSni { index });
            }
            Some(up)
        }
        None => None,
    };
    Ok(ListenerConfig {
        name,
        address,
        fallback,
    })
}

/// The static routes. A pattern that appears twice is refused once, by the table itself.
fn routes(g: &FileGateway, lookup: Lookup) -> Result<RouteTable, ConfigError> {
    let mut table = RouteTable::default();
    let mut shown: Vec<(crate::names::SniPattern, Shown)> = Vec::with_capacity(g.routes.len());
    for (index, r) in g.routes.iter().enumerate() {
        let key = |field: &str| format!("gateway.routes[{index}].{field}");
        let sni = expand(&key("sni"), &r.sni, lookup)?;
        let pattern = names::parse_pattern(&sni.value).map_err(|source| ConfigError::Invalid {
            key: key("sni"),
            what: match source {
                NameError::MisplacedWildcard | NameError::BroadWildcard => "wildcard",
                _ => "sni",
            },
            shown: Shown::new(&sni.value, &sni.from_env),
            source,
        })?;
        let mut upstream = parse(
            &key("upstream"),
            "upstream",
            &r.upstream,
            lookup,
            names::parse_upstream,
        )?;
        for (i, a) in r.addresses.iter().enumerate() {
            let k = format!("gateway.routes[{index}].addresses[{i}]");
            upstream
                .pinned
                .push(parse(&k, "pinned address", a, lookup, names::parse_pinned)?);
        }
        shown.push((pattern.clone(), Shown::new(&sni.value, &sni.from_env)));
        if let Err(dup) = table.insert(Route::new(pattern, upstream)) {
            let first = shown.iter().position(|(p, _)| *p == dup.0).unwrap_or(0);
            return Err(ConfigError::DuplicateRoute {
                index,
                first,
                sni: match &shown[index].1 {
                    Shown::Text(_) => Shown::Text(dup.0.to_string()),
                    env => env.clone(),
                },
            });
        }
    }
    Ok(table)
}

fn cluster(index: usize, c: &FileCluster, lookup: Lookup) -> Result<ClusterConfig, ConfigError> {
    let key = |field: &str| format!("gateway.clusters[{index}].{field}");
    let name = parse(&key("name"), "name", &c.name, lookup, |v| {
        names::check_name(v).map(|()| v.to_owned())
    })?;
    let endpoint = |field: &str, raw: &str, port: u16| {
        parse(&key(field), "endpoint", raw, lookup, |v| {
            names::parse_endpoint(v, port)
        })
    };
    let bootstrap = endpoint("bootstrap", &c.bootstrap, 9092)?;
    let rest = c
        .rest
        .as_deref()
        .map(|r| endpoint("rest", r, 443))
        .transpose()?;
    let schema_registry = c
        .schema_registry
        .as_deref()
        .map(|r| endpoint("schema_registry", r, 443))
        .transpose()?;
    let secret = |field: &str, raw: &str| -> Result<Secret, ConfigError> {
        Ok(Secret::new(
            expand(&key(field), raw, lookup)?.value.into_owned(),
        ))
    };
    let credentials = match (&c.api_key, &c.api_secret) {
        (Some(k), Some(s)) => Some((secret("api_key", k)?, secret("api_secret", s)?)),
        (None, None) => None,
        _ => return Err(ConfigError::HalfCredentials { index }),
    };
    let mut librdkafka = std::collections::BTreeMap::new();
    for (k, v) in &c.librdkafka {
        librdkafka.insert(k.clone(), secret(&format!("librdkafka.{k}"), v)?);
    }
    Ok(ClusterConfig {
        name,
        bootstrap,
        credentials,
        rest,
        schema_registry,
        refresh_interval: Duration::from_secs(in_range(
            key("refresh_interval_secs"),
            c.refresh_interval_secs,
            1..=86_400,
            "between 1 and 86400",
        )?),
        removed_broker_grace: Duration::from_secs(in_range(
            key("removed_broker_grace_secs"),
            c.removed_broker_grace_secs,
            0..=604_800,
            "between 0 and 604800",
        )?),
        metadata_timeout: Duration::from_millis(in_range(
            key("metadata_timeout_ms"),
            c.metadata_timeout_ms,
            100..=600_000,
            "between 100 and 600000",
        )?),
        librdkafka,
    })
}
