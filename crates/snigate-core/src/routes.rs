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

pub use crate::names::{normalize_name, SniPattern, Upstream, UpstreamHost, UpstreamPort};
use std::collections::HashMap;
use std::sync::Arc;

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
    /// What the route is for.
    pub kind: RouteKind,
    /// For a discovered route, the Unix time its cluster last advertised the name.
    pub last_seen: Option<u64>,
    /// The PROXY protocol header the upstream gets before the ClientHello, if any.
    pub send_proxy: Option<crate::proxy_protocol::Version>,
    /// A pool of servers; `upstream` then names its first primary, for display.
    pub pool: Option<Arc<crate::pool::Pool>>,
    /// Where its connections go out: the gateway's proxy, directly, or its own proxy.
    pub egress: crate::egress::Egress,
}

/// What a route is for: a static route from the config, or one of the names discovery
/// derives from a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// A route from the config file.
    Static,
    /// A cluster's bootstrap endpoint.
    Bootstrap,
    /// A broker advertised in a cluster's metadata.
    Broker,
    /// A cluster's Kafka REST endpoint.
    Rest,
    /// A cluster's Schema Registry.
    SchemaRegistry,
}

impl RouteKind {
    /// The snake_case label used in `/routes` and in the state file.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Static => "static",
            RouteKind::Bootstrap => "bootstrap",
            RouteKind::Broker => "broker",
            RouteKind::Rest => "rest",
            RouteKind::SchemaRegistry => "schema_registry",
        }
    }
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
            kind: RouteKind::Static,
            last_seen: None,
            send_proxy: None,
            pool: None,
            egress: crate::egress::Egress::Inherit,
        }
    }

    /// The same route, discovered in `origin` as a `kind` name last advertised at `last_seen`.
    pub fn discovered(mut self, origin: &str, kind: RouteKind, last_seen: u64) -> Self {
        self.origin = Arc::from(origin);
        self.kind = kind;
        self.last_seen = Some(last_seen);
        self
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

    /// Adds a route; fails if its pattern is already present, and leaves the table as it was.
    pub fn insert(&mut self, route: Route) -> Result<(), DuplicatePattern> {
        let (map, key) = match &route.pattern {
            SniPattern::Exact(n) => (&mut self.exact, normalize_name(n).into_owned()),
            SniPattern::Wildcard(s) => (&mut self.wildcard, normalize_name(s).into_owned()),
        };
        match map.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => Err(DuplicatePattern(route.pattern)),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Arc::new(route));
                Ok(())
            }
        }
    }

    /// True when a route of the table is labelled `label` (its pattern as written).
    pub fn has_label(&self, label: &str) -> bool {
        let (map, key) = match label.strip_prefix("*.") {
            Some(suffix) => (&self.wildcard, suffix),
            None => (&self.exact, label),
        };
        map.get(normalize_name(key).as_ref())
            .is_some_and(|r| &*r.label == label)
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

    /// True when both tables hold the same routes (patterns, upstreams, pools and origins).
    pub fn same_routes(&self, other: &RouteTable) -> bool {
        type Key = (
            SniPattern,
            Upstream,
            Arc<str>,
            Option<crate::proxy_protocol::Version>,
            Option<Arc<crate::pool::Pool>>,
            crate::egress::Egress,
        );
        let key = |t: &RouteTable| -> Vec<Key> {
            t.routes()
                .into_iter()
                .map(|r| {
                    (
                        r.pattern.clone(),
                        r.upstream.clone(),
                        r.origin.clone(),
                        r.send_proxy,
                        r.pool.clone(),
                        r.egress.clone(),
                    )
                })
                .collect()
        };
        self.len() == other.len() && key(self) == key(other)
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
        Upstream::fixed(host, 9092)
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
}
