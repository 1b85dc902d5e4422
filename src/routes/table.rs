//! The route table: SNI patterns to upstreams.
//!
//! # Matching rules
//! 1. Names are compared in lower case, with one trailing dot removed, on both sides.
//! 2. An exact pattern (`pkc-1.example.test`) matches only that name.
//! 3. A wildcard pattern `*.SUFFIX` matches any name that ends in `.SUFFIX` and has at least
//!    one more label in front: `*.example.test` matches `a.example.test` and
//!    `a.b.example.test`, but not `example.test` itself.
//! 4. An exact match beats every wildcard.
//! 5. Among wildcards, the longest suffix wins: for `a.b.example.test`, `*.b.example.test`
//!    beats `*.example.test`.
//! 6. A name that matches nothing has no route: the connection is refused unless its
//!    listener names a fallback upstream.
//!
//! Lookup costs one hash probe per label of the requested name, whatever the table size.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// An SNI pattern from the config, already normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SniPattern {
    /// Matches one name.
    Exact(String),
    /// Matches any name ending in `.` + this suffix.
    Wildcard(String),
}

impl std::fmt::Display for SniPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SniPattern::Exact(name) => f.write_str(name),
            SniPattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// The host part of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamHost {
    /// A fixed host name or IP address.
    Fixed(String),
    /// `{sni}`: the name the client asked for.
    Sni,
}

/// The port part of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamPort {
    /// A fixed port.
    Fixed(u16),
    /// `{port}`: the port of the listener the client connected to.
    Listener,
}

/// Where a route sends its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Host to resolve (or to report, when `pinned` is set).
    pub host: UpstreamHost,
    /// Port to connect to.
    pub port: UpstreamPort,
    /// Fixed addresses to use instead of resolving `host` (e.g. PrivateLink endpoint IPs).
    /// An address with port 0 takes the upstream's port.
    pub pinned: Vec<SocketAddr>,
}

impl Upstream {
    /// Renders the host for a given SNI.
    pub fn host_for<'a>(&'a self, sni: Option<&'a str>) -> Option<&'a str> {
        match &self.host {
            UpstreamHost::Fixed(h) => Some(h),
            UpstreamHost::Sni => sni,
        }
    }

    /// Renders the port for a given listener port.
    pub fn port_for(&self, listener_port: u16) -> u16 {
        match self.port {
            UpstreamPort::Fixed(p) => p,
            UpstreamPort::Listener => listener_port,
        }
    }
}

impl Upstream {
    /// The pinned addresses as written: an IP alone when it takes the upstream's port.
    pub fn pinned_list(&self) -> String {
        let shown: Vec<String> = self
            .pinned
            .iter()
            .map(|a| match (a.port(), a.ip()) {
                (0, std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
                (0, ip) => ip.to_string(),
                _ => a.to_string(),
            })
            .collect();
        shown.join(", ")
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            UpstreamHost::Fixed(h) if h.contains(':') => write!(f, "[{h}]")?,
            UpstreamHost::Fixed(h) => f.write_str(h)?,
            UpstreamHost::Sni => f.write_str("{sni}")?,
        }
        match self.port {
            UpstreamPort::Fixed(p) => write!(f, ":{p}"),
            UpstreamPort::Listener => f.write_str(":{port}"),
        }
    }
}

/// One route: a pattern and its upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// What the SNI must match.
    pub pattern: SniPattern,
    /// Where matching connections go.
    pub upstream: Upstream,
    /// Label used in metrics and logs (the pattern as written).
    pub label: Arc<str>,
    /// Where the route comes from: `static` (the config file) or `cluster:NAME`.
    pub origin: Arc<str>,
}

impl Route {
    /// Builds a static route, deriving its label from the pattern.
    pub fn new(pattern: SniPattern, upstream: Upstream) -> Self {
        let label = Arc::from(pattern.to_string());
        Route {
            pattern,
            upstream,
            label,
            origin: Arc::from("static"),
        }
    }

    /// The same route, marked as coming from `origin`.
    pub fn with_origin(mut self, origin: &str) -> Self {
        self.origin = Arc::from(origin);
        self
    }
}

/// Lower-cases `name` and removes one trailing dot. Returns the input unchanged (borrowed)
/// when it is already normal.
pub fn normalize_name(name: &str) -> std::borrow::Cow<'_, str> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

/// An immutable table of routes. Build a new one to change routes.
#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    exact: HashMap<String, Arc<Route>>,
    wildcard: HashMap<String, Arc<Route>>,
}

/// A pattern that is already in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicatePattern(pub SniPattern);

impl RouteTable {
    /// Builds a table; fails on the first pattern that appears twice.
    pub fn new(routes: impl IntoIterator<Item = Route>) -> Result<Self, DuplicatePattern> {
        let mut table = RouteTable::default();
        for route in routes {
            table.insert(route)?;
        }
        Ok(table)
    }

    /// Adds a route; fails if its pattern is already present.
    pub fn insert(&mut self, route: Route) -> Result<(), DuplicatePattern> {
        let (map, key) = match &route.pattern {
            SniPattern::Exact(n) => (&mut self.exact, normalize_name(n).into_owned()),
            SniPattern::Wildcard(s) => (&mut self.wildcard, normalize_name(s).into_owned()),
        };
        if map.contains_key(&key) {
            return Err(DuplicatePattern(route.pattern.clone()));
        }
        map.insert(key, Arc::new(route));
        Ok(())
    }

    /// Finds the route for a requested name, following the module's matching rules.
    pub fn lookup(&self, sni: &str) -> Option<&Arc<Route>> {
        let name = normalize_name(sni);
        if let Some(route) = self.exact.get(name.as_ref()) {
            return Some(route);
        }
        // A wildcard needs a non-empty label in front of its suffix.
        if self.wildcard.is_empty() || name.starts_with('.') {
            return None;
        }
        // Walk the suffixes from the longest: "a.b.c" tries "b.c", then "c".
        let mut rest: &str = &name;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(route) = self.wildcard.get(rest) {
                return Some(route);
            }
        }
        None
    }

    /// The exact route for `name`, ignoring wildcards.
    pub fn exact(&self, name: &str) -> Option<&Arc<Route>> {
        self.exact.get(normalize_name(name).as_ref())
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// True when the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All routes, exact ones first, each group sorted by pattern.
    pub fn routes(&self) -> Vec<&Arc<Route>> {
        let mut exact: Vec<_> = self.exact.values().collect();
        exact.sort_by(|a, b| a.label.cmp(&b.label));
        let mut wild: Vec<_> = self.wildcard.values().collect();
        wild.sort_by(|a, b| a.label.cmp(&b.label));
        exact.extend(wild);
        exact
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(host: &str) -> Upstream {
        Upstream {
            host: UpstreamHost::Fixed(host.into()),
            port: UpstreamPort::Fixed(9092),
            pinned: vec![],
        }
    }

    fn table() -> RouteTable {
        RouteTable::new([
            Route::new(
                SniPattern::Exact("pkc-1.eu.example.test".into()),
                up("exact"),
            ),
            Route::new(SniPattern::Wildcard("eu.example.test".into()), up("eu")),
            Route::new(SniPattern::Wildcard("example.test".into()), up("all")),
        ])
        .unwrap()
    }

    fn host_of(t: &RouteTable, name: &str) -> Option<String> {
        t.lookup(name).map(|r| r.upstream.to_string())
    }

    #[test]
    fn exact_beats_wildcard() {
        assert_eq!(
            host_of(&table(), "pkc-1.eu.example.test").unwrap(),
            "exact:9092"
        );
    }

    #[test]
    fn longest_wildcard_suffix_wins() {
        let t = table();
        assert_eq!(host_of(&t, "b0-pkc-1.eu.example.test").unwrap(), "eu:9092");
        assert_eq!(host_of(&t, "x.y.eu.example.test").unwrap(), "eu:9092");
        assert_eq!(host_of(&t, "b0.us.example.test").unwrap(), "all:9092");
    }

    #[test]
    fn wildcard_needs_a_label_in_front() {
        let t = table();
        assert_eq!(host_of(&t, "example.test"), None);
        assert_eq!(host_of(&t, "eu.example.test").unwrap(), "all:9092");
        assert_eq!(host_of(&t, "notexample.test"), None);
        assert_eq!(host_of(&t, ".example.test"), None);
    }

    #[test]
    fn case_and_trailing_dot_are_ignored() {
        let t = table();
        assert_eq!(host_of(&t, "PKC-1.EU.Example.Test.").unwrap(), "exact:9092");
        assert_eq!(host_of(&t, "B0.eu.EXAMPLE.test.").unwrap(), "eu:9092");
    }

    #[test]
    fn patterns_are_normalised_on_insert() {
        let t = RouteTable::new([
            Route::new(SniPattern::Exact("A.Test.".into()), up("a")),
            Route::new(SniPattern::Wildcard("W.Test".into()), up("w")),
        ])
        .unwrap();
        assert_eq!(host_of(&t, "a.test").unwrap(), "a:9092");
        assert_eq!(host_of(&t, "x.w.test").unwrap(), "w:9092");
    }

    #[test]
    fn unknown_names_have_no_route() {
        let t = table();
        assert_eq!(host_of(&t, "other.test"), None);
        assert_eq!(host_of(&t, ""), None);
        assert_eq!(host_of(&t, "."), None);
    }

    #[test]
    fn duplicates_are_refused() {
        let err = RouteTable::new([
            Route::new(SniPattern::Wildcard("a.test".into()), up("1")),
            Route::new(SniPattern::Wildcard("a.test".into()), up("2")),
        ])
        .unwrap_err();
        assert_eq!(err.0, SniPattern::Wildcard("a.test".into()));
        // An exact name and a wildcard with the same text are different patterns.
        assert!(RouteTable::new([
            Route::new(SniPattern::Exact("a.test".into()), up("1")),
            Route::new(SniPattern::Wildcard("a.test".into()), up("2")),
        ])
        .is_ok());
    }

    #[test]
    fn upstream_templates_render() {
        let u = Upstream {
            host: UpstreamHost::Sni,
            port: UpstreamPort::Listener,
            pinned: vec![],
        };
        assert_eq!(u.to_string(), "{sni}:{port}");
        assert_eq!(u.host_for(Some("a.test")), Some("a.test"));
        assert_eq!(u.port_for(443), 443);
    }
}
