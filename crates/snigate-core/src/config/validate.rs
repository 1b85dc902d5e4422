//! From the file's text values to typed, checked values. Each check names the key path it
//! refuses, such as `gateway.routes[2].upstream`.

use super::env::{expand_with, Expanded};
use super::error::{ConfigError, Shown};
use super::file::{FileAccessLog, FileCluster, FileGateway, FileListener, ReloadMode};
use super::file::{FileHealthCheck, FileRoute};
use super::{
    AccessLogConfig, ClusterConfig, GatewayConfig, Limits, ListenerConfig, LogFormat, Secret,
};
use crate::cidr::Cidr;
use crate::egress::{Egress, EgressProxy};
use crate::names::{self, NameError, UpstreamHost};
use crate::pool::{self, Balance, CheckKind, HealthCheck};
use crate::proxy_protocol::Version;
use crate::routes::{Route, RouteTable};
use serde_yaml::{Mapping, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands one value, naming `key` if a reference is wrong.
fn expand<'v>(key: &str, value: &'v str, lookup: Lookup) -> Result<Expanded<'v>, ConfigError> {
    expand_at(&|| key.to_owned(), value, lookup)
}

/// As [`expand`], with the key made only for an error (a route's keys, made 100,000 times
/// in a large table, would cost more than the rest of its check).
fn expand_at<'v>(
    key: &dyn Fn() -> String,
    value: &'v str,
    lookup: Lookup,
) -> Result<Expanded<'v>, ConfigError> {
    expand_with(value, lookup).map_err(|source| ConfigError::Env { key: key(), source })
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
    parse_at(&|| key.to_owned(), what, raw, lookup, parser)
}

/// As [`parse`], with the key made only for an error.
fn parse_at<T>(
    key: &dyn Fn() -> String,
    what: &'static str,
    raw: &str,
    lookup: Lookup,
    parser: impl FnOnce(&str) -> Result<T, NameError>,
) -> Result<T, ConfigError> {
    let e = expand_at(key, raw, lookup)?;
    parser(&e.value).map_err(|source| ConfigError::Invalid {
        key: key(),
        what,
        shown: Shown::new(&e.value, &e.from_env),
        source,
    })
}

/// Expands an optional value; empty (as `${VAR:-}` with VAR unset gives) means not set.
fn optional<'v>(
    key: &str,
    raw: Option<&'v str>,
    lookup: Lookup,
) -> Result<Option<Expanded<'v>>, ConfigError> {
    match raw {
        Some(r) => {
            let e = expand(key, r, lookup)?;
            Ok((!e.value.trim().is_empty()).then_some(e))
        }
        None => Ok(None),
    }
}

/// One of a few words.
fn choice<T: Copy>(
    key: &str,
    raw: &str,
    lookup: Lookup,
    options: &[(&str, T)],
    expected: &'static str,
) -> Result<T, ConfigError> {
    let e = expand(key, raw, lookup)?;
    options
        .iter()
        .find(|(word, _)| *word == e.value.trim())
        .map(|(_, v)| *v)
        .ok_or_else(|| ConfigError::Choice {
            key: key.to_owned(),
            shown: Shown::new(&e.value, &e.from_env),
            expected,
        })
}

/// A PROXY protocol version to send: `v1` or `v2`.
fn send_proxy(
    key: &str,
    raw: Option<&str>,
    lookup: Lookup,
) -> Result<Option<Version>, ConfigError> {
    raw.map(|r| {
        choice(
            key,
            r,
            lookup,
            &[("v1", Version::V1), ("v2", Version::V2)],
            "`v1` or `v2`",
        )
    })
    .transpose()
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
pub(super) fn gateway(
    g: FileGateway,
    lookup: Lookup,
    secrets_required: bool,
    keep: Option<&mut Vec<Kept>>,
) -> Result<GatewayConfig, ConfigError> {
    if g.listeners.is_empty() {
        return Err(ConfigError::NoListeners);
    }
    let max = super::MAX_LISTENING_SOCKETS - usize::from(g.admin.is_some());
    if g.listeners.len() > max {
        return Err(ConfigError::TooManyListeners {
            count: g.listeners.len(),
            max,
        });
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
    let health_check = match &g.health_check {
        Some(v) => health_check("gateway.health_check", v, None)?,
        None => Some(HealthCheck::default()),
    };
    let mut warnings = Vec::new();
    let egress_proxy = match egress(
        "gateway.egress_proxy",
        g.egress_proxy.as_deref(),
        lookup,
        &mut warnings,
        &listeners,
    )? {
        Egress::Via(p) => Some(p),
        Egress::Inherit | Egress::Direct => None,
    };
    let max_routes = usize::try_from(in_range(
        "gateway.max_routes".into(),
        g.max_routes,
        1..=100_000_000,
        "between 1 and 100000000",
    )?)
    .unwrap_or(usize::MAX);
    if g.routes.len() > max_routes {
        return Err(ConfigError::TooManyRoutes {
            routes: g.routes.len(),
            max: max_routes,
        });
    }
    let cx = RouteContext {
        lookup,
        default_check: health_check,
        default_proxy: egress_proxy.is_some(),
        own: &listeners,
    };
    let routes = routes(&g, &cx, &mut warnings, keep)?;
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
        let cluster = cluster(index, c, lookup, secrets_required)?;
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
    let state_file = optional("gateway.state_file", g.state_file.as_deref(), lookup)?
        .map(|e| e.value.into_owned().into());
    let access_log = access_log(g.access_log.as_ref(), lookup)?;
    Ok(GatewayConfig {
        listeners,
        routes,
        admin,
        limits,
        clusters,
        state_file,
        reload: g.reload,
        access_log,
        health_check,
        egress_proxy,
        max_routes,
        warnings,
    })
}

/// An `egress_proxy:` value: a proxy URL, or `none`. A password written in the file itself
/// rather than as a `${VAR}` reference is accepted with a warning.
fn egress(
    key: &str,
    raw: Option<&str>,
    lookup: Lookup,
    warnings: &mut Vec<String>,
    own: &[ListenerConfig],
) -> Result<Egress, ConfigError> {
    let Some(e) = optional(key, raw, lookup)? else {
        return Ok(Egress::Inherit);
    };
    let value = e.value.trim();
    if value == "none" {
        return Ok(Egress::Direct);
    }
    // A value with references is shown as written, so that no variable's value appears.
    let shown = match raw {
        Some(written) if !e.from_env.is_empty() => crate::egress::redact(written.trim()),
        _ => crate::egress::redact(value),
    };
    let proxy =
        EgressProxy::parse_shown_as(value, &shown).map_err(|source| ConfigError::Egress {
            key: key.to_owned(),
            source,
        })?;
    if let Some(l) = own.iter().find(|l| is_listener(&proxy, l.address)) {
        return Err(ConfigError::EgressIsListener {
            key: key.to_owned(),
            proxy: proxy.label.to_string(),
            listener: l.name.clone(),
            address: l.address,
        });
    }
    let written_password = raw
        .and_then(|r| r.split_once("://"))
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .and_then(|(creds, _)| creds.split_once(':'))
        .is_some_and(|(_, pass)| !pass.is_empty() && !pass.contains("${"));
    if written_password {
        warnings.push(format!(
            "{key}: the proxy password is written in the file; reference it from the environment instead, as in http://${{PROXY_USER}}:${{PROXY_PASSWORD}}@{}",
            crate::egress::host_port(&proxy.host, proxy.port)
        ));
    }
    Ok(Egress::Via(Arc::new(proxy)))
}

/// True when `proxy`, written as an address or as `localhost`, is the listener bound to
/// `listener`: the same port, and the same address, or a wildcard listener and a local
/// address.
fn is_listener(proxy: &EgressProxy, listener: SocketAddr) -> bool {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    if proxy.port != listener.port() {
        return false;
    }
    let ips: Vec<IpAddr> = if proxy.host.eq_ignore_ascii_case("localhost") {
        vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
    } else {
        names::ip_literal(&proxy.host).into_iter().collect()
    };
    ips.iter().any(|ip| {
        *ip == listener.ip()
            || ip.is_unspecified()
            || (listener.ip().is_unspecified() && ip.is_loopback())
    })
}

fn access_log(a: Option<&FileAccessLog>, lookup: Lookup) -> Result<AccessLogConfig, ConfigError> {
    let Some(a) = a else {
        return Ok(AccessLogConfig::default());
    };
    let format = match &a.format {
        Some(f) => choice(
            "gateway.access_log.format",
            f,
            lookup,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            "`text` or `json`",
        )?,
        None => LogFormat::Text,
    };
    let path = optional("gateway.access_log.path", a.path.as_deref(), lookup)?
        .map(|e| e.value.into_owned().into());
    Ok(AccessLogConfig { format, path })
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
    let fallback = match optional(&key("fallback"), l.fallback.as_deref(), lookup)? {
        Some(e) => {
            let up = names::parse_upstream(&e.value).map_err(|source| ConfigError::Invalid {
                key: key("fallback"),
                what: "upstream",
                shown: Shown::new(&e.value, &e.from_env),
                source,
            })?;
            if up.host == UpstreamHost::Sni {
                return Err(ConfigError::FallbackUsesSni { index });
            }
            Some(up)
        }
        None => None,
    };
    let fallback_send_proxy = send_proxy(
        &key("fallback_send_proxy"),
        l.fallback_send_proxy.as_deref(),
        lookup,
    )?;
    let proxy_protocol = match &l.proxy_protocol {
        Some(p) => choice(
            &key("proxy_protocol"),
            p,
            lookup,
            &[("accept", true)],
            "`accept`",
        )?,
        None => false,
    };
    if l.allow.as_ref().is_some_and(Vec::is_empty) {
        return Err(ConfigError::Choice {
            key: key("allow"),
            shown: Shown::Text("[]".into()),
            expected: "a list of at least one address range (an empty list would refuse every client; remove the key to allow every source)",
        });
    }
    let mut allow = Vec::new();
    for (i, raw) in l.allow.iter().flatten().enumerate() {
        let k = format!("gateway.listeners[{index}].allow[{i}]");
        let e = expand(&k, raw, lookup)?;
        allow.push(Cidr::parse(&e.value).map_err(|source| ConfigError::Range {
            key: k,
            shown: Shown::new(&e.value, &e.from_env),
            source,
        })?);
    }
    Ok(ListenerConfig {
        name,
        address,
        fallback,
        fallback_send_proxy,
        proxy_protocol,
        allow,
    })
}

/// What each route's check takes from the rest of `gateway:`.
pub(super) struct RouteContext<'a> {
    /// Looks `${VAR}` references up.
    pub lookup: Lookup<'a>,
    /// The gateway's `health_check:`, for pools that set none.
    pub default_check: Option<HealthCheck>,
    /// True when the gateway has an `egress_proxy:`.
    pub default_proxy: bool,
    /// The listeners, which no route's proxy may be.
    pub own: &'a [ListenerConfig],
}

/// A route in file order, with the warnings its check gave, for a later reload to reuse.
pub(super) type Kept = (Arc<Route>, Vec<String>);

/// The static routes, each checked by [`route`]; a pattern that appears twice is refused
/// by the table itself. With `keep`, also each route in file order with its warnings.
fn routes(
    g: &FileGateway,
    cx: &RouteContext,
    warnings: &mut Vec<String>,
    mut keep: Option<&mut Vec<Kept>>,
) -> Result<RouteTable, ConfigError> {
    let mut table = RouteTable::with_capacity(g.routes.len());
    for (index, r) in g.routes.iter().enumerate() {
        let (route, said) = route(index, r, cx)?;
        let route = Arc::new(route);
        if let Err(dup) = table.insert_shared(route.clone()) {
            return Err(duplicate(g, index, &dup, cx.lookup));
        }
        warnings.extend(said.iter().cloned());
        if let Some(keep) = keep.as_deref_mut() {
            keep.push((route, said));
        }
    }
    Ok(table)
}

/// Checks route `index` on its own: everything but whether another route has its pattern.
/// Returns the route and the warnings it gives.
pub(super) fn route(
    index: usize,
    r: &FileRoute,
    cx: &RouteContext,
) -> Result<(Route, Vec<String>), ConfigError> {
    let lookup = cx.lookup;
    let mut warnings = Vec::new();
    let key = |field: &str| format!("gateway.routes[{index}].{field}");
    let sni = expand_at(&|| key("sni"), &r.sni, lookup)?;
    let pattern = sni_pattern(index, &sni)?;
    let (mut upstream, pool) = target(index, r, lookup, cx.default_check)?;
    for (i, a) in r.addresses.iter().enumerate() {
        let k = format!("gateway.routes[{index}].addresses[{i}]");
        upstream
            .pinned
            .push(parse(&k, "pinned address", a, lookup, names::parse_pinned)?);
    }
    let mut route = Route::new(pattern, upstream);
    route.pool = pool.map(Arc::new);
    if r.send_proxy.is_some() {
        route.send_proxy = send_proxy(&key("send_proxy"), r.send_proxy.as_deref(), lookup)?;
    }
    if r.egress_proxy.is_some() {
        route.egress = egress(
            &key("egress_proxy"),
            r.egress_proxy.as_deref(),
            lookup,
            &mut warnings,
            cx.own,
        )?;
    }
    let proxied = match &route.egress {
        Egress::Inherit => cx.default_proxy,
        Egress::Direct => false,
        Egress::Via(_) => true,
    };
    if route.pool.is_some() && proxied {
        return Err(ConfigError::PoolViaProxy { index });
    }
    if !route.upstream.pinned.is_empty() && proxied {
        return Err(ConfigError::PinnedViaProxy { index });
    }
    Ok((route, warnings))
}

/// The error for route `index`, whose pattern an earlier route has: only now is the first
/// route with that pattern looked for.
fn duplicate(
    g: &FileGateway,
    index: usize,
    dup: &crate::routes::DuplicatePattern,
    lookup: Lookup,
) -> ConfigError {
    let first = g.routes[..index]
        .iter()
        .enumerate()
        .position(|(i, earlier)| {
            expand_with(&earlier.sni, lookup)
                .ok()
                .and_then(|e| sni_pattern(i, &e).ok())
                .is_some_and(|p| p == dup.0)
        })
        .unwrap_or(0);
    let written = &g.routes[index].sni;
    let shown = match expand_with(written, lookup) {
        Ok(sni) => match Shown::new(&sni.value, &sni.from_env) {
            Shown::Text(_) => Shown::Text(dup.0.to_string()),
            env => env,
        },
        // Not reached: `route` expanded the same text. Show it as written, references
        // and all, so that no variable's value appears.
        Err(_) => Shown::Text(written.clone()),
    };
    ConfigError::DuplicateRoute {
        index,
        first,
        sni: shown,
    }
}

/// Route `index`'s `sni:`, expanded, as a pattern.
fn sni_pattern(index: usize, sni: &Expanded) -> Result<crate::names::SniPattern, ConfigError> {
    names::parse_pattern(&sni.value).map_err(|source| ConfigError::Invalid {
        key: format!("gateway.routes[{index}].sni"),
        what: match source {
            NameError::MisplacedWildcard | NameError::BroadWildcard => "wildcard",
            _ => "sni",
        },
        shown: Shown::new(&sni.value, &sni.from_env),
        source,
    })
}

fn cluster(
    index: usize,
    c: &FileCluster,
    lookup: Lookup,
    secrets_required: bool,
) -> Result<ClusterConfig, ConfigError> {
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
    let optional_endpoint = |field: &str, raw: Option<&str>| -> Result<_, ConfigError> {
        match optional(&key(field), raw, lookup)? {
            Some(e) => names::parse_endpoint(&e.value, 443)
                .map(Some)
                .map_err(|source| ConfigError::Invalid {
                    key: key(field),
                    what: "endpoint",
                    shown: Shown::new(&e.value, &e.from_env),
                    source,
                }),
            None => Ok(None),
        }
    };
    let rest = optional_endpoint("rest", c.rest.as_deref())?;
    let schema_registry = optional_endpoint("schema_registry", c.schema_registry.as_deref())?;
    let secret = |field: &str, raw: &str| -> Result<Secret, ConfigError> {
        match expand(&key(field), raw, lookup) {
            Ok(e) => Ok(Secret::new(e.value.into_owned())),
            Err(ConfigError::Env {
                source: super::env::EnvError::Unset(_),
                ..
            }) if !secrets_required => Ok(Secret::new("")),
            Err(e) => Err(e),
        }
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

/// A route's target: one `upstream`, or a pool of `servers` (whose `upstream` is its first
/// server, for the places that show one).
fn target(
    index: usize,
    r: &FileRoute,
    lookup: Lookup,
    default_check: Option<HealthCheck>,
) -> Result<(names::Upstream, Option<pool::Pool>), ConfigError> {
    let key = |field: &str| format!("gateway.routes[{index}].{field}");
    let servers = match (&r.upstream, &r.servers) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::RouteTarget {
                index,
                problem: "has both `upstream:` and `servers:`; keep `upstream:` for one server or `servers:` for a pool",
            })
        }
        (None, None) => {
            return Err(ConfigError::RouteTarget {
                index,
                problem: "has neither `upstream:` nor `servers:`; add `upstream: host:port`, or a `servers:` list",
            })
        }
        (Some(up), None) => {
            for (field, set, what) in [
                ("balance", r.balance.is_some(), "balance"),
                ("retries", r.retries.is_some(), "retry"),
                ("health_check", r.health_check.is_some(), "check"),
            ] {
                if set {
                    return Err(ConfigError::PoolKeyWithoutServers {
                        index,
                        key: field,
                        what,
                    });
                }
            }
            let upstream = parse_at(
                &|| key("upstream"),
                "upstream",
                up,
                lookup,
                names::parse_upstream,
            )?;
            return Ok((upstream, None));
        }
        (None, Some(servers)) => servers,
    };
    let mut list = Vec::with_capacity(servers.len());
    for (i, s) in servers.iter().enumerate() {
        let k = format!("gateway.routes[{index}].servers[{i}].address");
        let up = parse(
            &k,
            "server address",
            &s.address,
            lookup,
            names::parse_upstream,
        )?;
        let (names::UpstreamHost::Fixed(host), names::UpstreamPort::Fixed(port)) =
            (&up.host, up.port)
        else {
            return Err(ConfigError::Choice {
                key: k,
                shown: Shown::Text(s.address.clone()),
                expected: "`host:port` or `IP:port` (a pool server cannot use `{sni}` or `{port}`)",
            });
        };
        list.push(pool::Server {
            host: host.to_string(),
            port,
            weight: s.weight,
            max_connections: s.max_connections,
            backup: s.backup,
        });
    }
    let balance = match &r.balance {
        Some(b) => choice(
            &key("balance"),
            b,
            lookup,
            &[
                ("round_robin", Balance::RoundRobin),
                ("least_connections", Balance::LeastConnections),
                ("source_hash", Balance::SourceHash),
            ],
            "`round_robin`, `least_connections` or `source_hash`",
        )?,
        None => Balance::default(),
    };
    let health_check = match &r.health_check {
        Some(v) => health_check(&key("health_check"), v, default_check)?,
        None => default_check,
    };
    let p = pool::Pool {
        servers: list,
        balance,
        retries: r.retries.unwrap_or(2),
        health_check,
    };
    p.check().map_err(|source| ConfigError::Pool {
        key: key("servers"),
        source,
    })?;
    let first = p
        .servers
        .iter()
        .find(|s| !s.backup)
        .unwrap_or(&p.servers[0]);
    Ok((
        names::Upstream::fixed(first.host.clone(), first.port),
        Some(p),
    ))
}

/// A `health_check:` value: `none`, or a mapping whose keys override `base` (the gateway's
/// default, or HAProxy's).
fn health_check(
    key: &str,
    v: &Value,
    base: Option<HealthCheck>,
) -> Result<Option<HealthCheck>, ConfigError> {
    if let Value::String(word) = v {
        if word.trim() == "none" {
            return Ok(None);
        }
    }
    let f: FileHealthCheck = serde_yaml::from_value(v.clone()).map_err(|e| {
        ConfigError::Yaml(format!(
            "{key}: {e}; write `none`, or a mapping of type, interval_ms, timeout_ms, rise and fall"
        ))
    })?;
    let base = base.unwrap_or_default();
    let kind = match &f.kind {
        Some(t) => match t.trim() {
            "tcp" => CheckKind::Tcp,
            "tls" => CheckKind::Tls,
            _ => {
                return Err(ConfigError::Choice {
                    key: format!("{key}.type"),
                    shown: Shown::Text(t.clone()),
                    expected: "`tcp` or `tls`",
                })
            }
        },
        None => base.kind,
    };
    let hc = HealthCheck {
        kind,
        interval: f.interval_ms.map_or(base.interval, Duration::from_millis),
        timeout: f.timeout_ms.map_or(base.timeout, Duration::from_millis),
        rise: f.rise.unwrap_or(base.rise),
        fall: f.fall.unwrap_or(base.fall),
    };
    hc.check().map_err(|source| ConfigError::Pool {
        key: key.to_owned(),
        source,
    })?;
    Ok(Some(hc))
}
