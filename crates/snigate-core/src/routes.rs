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
//!
//! Static and discovered routes are two layers of one table: a reload replaces the static
//! layer and a refresh the discovered one, each without copying the other. An exact
//! static route hides a discovered route for the same name.

pub use crate::names::{normalize_name, SniPattern, Upstream, UpstreamHost, UpstreamPort};
use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

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

/// The origin of every static route, shared by all of them.
static STATIC_ORIGIN: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("static"));

impl Route {
    /// Builds a static route, deriving its label from the pattern.
    pub fn new(pattern: SniPattern, upstream: Upstream) -> Self {
        // An exact route's label is its name: one allocation serves pattern, label and key.
        let label = match &pattern {
            SniPattern::Exact(name) => name.clone(),
            SniPattern::Wildcard(_) => Arc::from(pattern.to_string()),
        };
        Route {
            pattern,
            upstream,
            label,
            origin: STATIC_ORIGIN.clone(),
            kind: RouteKind::Static,
            last_seen: None,
            send_proxy: None,
            pool: None,
            egress: crate::egress::Egress::Inherit,
        }
    }

    /// The same route, discovered in `origin` as a `kind` name last advertised at `last_seen`.
    /// Pass one shared `Arc` for all of a cluster's routes.
    pub fn discovered(
        mut self,
        origin: impl Into<Arc<str>>,
        kind: RouteKind,
        last_seen: u64,
    ) -> Self {
        self.origin = origin.into();
        self.kind = kind;
        self.last_seen = Some(last_seen);
        self
    }

    /// True when both send connections to the same place in the same way (everything but
    /// the label, kind and last-seen time).
    pub fn same_target(&self, other: &Route) -> bool {
        self.pattern == other.pattern
            && self.upstream == other.upstream
            && self.origin == other.origin
            && self.send_proxy == other.send_proxy
            && self.pool == other.pool
            && self.egress == other.egress
    }
}

/// The key a name is stored under: the normalised name, sharing `name`'s allocation when
/// it is normalised already (as parsed patterns are).
fn key_of(name: &Arc<str>) -> Arc<str> {
    match normalize_name(name) {
        Cow::Borrowed(b) if b.len() == name.len() => name.clone(),
        other => Arc::from(other.as_ref()),
    }
}

/// Static routes: exact names and wildcard suffixes.
#[derive(Debug, Default, Clone)]
struct Statics {
    exact: HashMap<Arc<str>, Arc<Route>>,
    wildcard: HashMap<Arc<str>, Arc<Route>>,
}

/// Discovered routes: exact names only, at most one route per name. Kept apart from the
/// static routes so that either side changes without rebuilding the other.
#[derive(Debug, Default, Clone)]
pub struct DiscoveredRoutes {
    exact: HashMap<Arc<str>, Arc<Route>>,
}

impl DiscoveredRoutes {
    /// The route for a normalised name.
    pub fn get(&self, name: &str) -> Option<&Arc<Route>> {
        self.exact.get(name)
    }

    /// Adds or replaces the route of an exact pattern; a wildcard is ignored.
    pub fn put(&mut self, route: Arc<Route>) {
        if let SniPattern::Exact(name) = &route.pattern {
            self.exact.insert(key_of(name), route);
        }
    }

    /// Removes the route for a normalised name.
    pub fn remove(&mut self, name: &str) -> Option<Arc<Route>> {
        self.exact.remove(name)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.exact.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }
}

/// An immutable table of routes: the static layer and the discovered layer, each shared, so
/// that a clone costs two reference counts. Build a new one to change routes.
#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    statics: Arc<Statics>,
    discovered: Arc<DiscoveredRoutes>,
    /// Discovered names that a static exact route hides (rule 4 of the merge).
    hidden: usize,
}

/// A pattern that is already in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicatePattern(pub SniPattern);

impl RouteTable {
    /// Builds a table of static routes; fails on the first pattern that appears twice.
    pub fn new(routes: impl IntoIterator<Item = Route>) -> Result<Self, DuplicatePattern> {
        let mut table = RouteTable::default();
        for route in routes {
            table.insert(route)?;
        }
        Ok(table)
    }

    /// An empty table with room for `routes` exact static routes.
    pub fn with_capacity(routes: usize) -> Self {
        RouteTable {
            statics: Arc::new(Statics {
                exact: HashMap::with_capacity(routes),
                wildcard: HashMap::new(),
            }),
            ..RouteTable::default()
        }
    }

    /// Adds a static route; fails if its pattern is already present, and leaves the table
    /// as it was.
    pub fn insert(&mut self, route: Route) -> Result<(), DuplicatePattern> {
        self.insert_shared(Arc::new(route))
    }

    /// As [`RouteTable::insert`], for a route that is shared already (a reload reuses the
    /// routes whose text did not change).
    pub fn insert_shared(&mut self, route: Arc<Route>) -> Result<(), DuplicatePattern> {
        let statics = Arc::make_mut(&mut self.statics);
        let (map, key) = match &route.pattern {
            SniPattern::Exact(n) => (&mut statics.exact, key_of(n)),
            SniPattern::Wildcard(s) => (&mut statics.wildcard, key_of(s)),
        };
        match map.entry(key) {
            Entry::Occupied(_) => Err(DuplicatePattern(route.pattern.clone())),
            Entry::Vacant(slot) => {
                let hides = matches!(route.pattern, SniPattern::Exact(_))
                    && self.discovered.get(slot.key()).is_some();
                slot.insert(route);
                self.hidden += usize::from(hides);
                Ok(())
            }
        }
    }

    /// This table's static routes with `discovered` beside them. A discovered name that
    /// has a static exact route stays hidden behind it.
    pub fn with_discovered(&self, discovered: Arc<DiscoveredRoutes>) -> RouteTable {
        let hidden = if self.statics.exact.len() < discovered.len() {
            self.statics
                .exact
                .keys()
                .filter(|k| discovered.exact.contains_key(*k))
                .count()
        } else {
            discovered
                .exact
                .keys()
                .filter(|k| self.statics.exact.contains_key(*k))
                .count()
        };
        RouteTable {
            statics: self.statics.clone(),
            discovered,
            hidden,
        }
    }

    /// The static routes alone.
    pub fn statics(&self) -> RouteTable {
        RouteTable {
            statics: self.statics.clone(),
            discovered: Arc::default(),
            hidden: 0,
        }
    }

    /// The static route whose pattern is `pattern`, if any.
    pub fn static_route(&self, pattern: &SniPattern) -> Option<&Arc<Route>> {
        match pattern {
            SniPattern::Exact(n) => self.statics.exact.get(normalize_name(n).as_ref()),
            SniPattern::Wildcard(s) => self.statics.wildcard.get(normalize_name(s).as_ref()),
        }
    }

    /// True when a route of the table is labelled `label` (its pattern as written).
    pub fn has_label(&self, label: &str) -> bool {
        match label.strip_prefix("*.") {
            Some(suffix) => self
                .statics
                .wildcard
                .get(normalize_name(suffix).as_ref())
                .is_some_and(|r| &*r.label == label),
            None => self.exact(label).is_some_and(|r| &*r.label == label),
        }
    }

    /// Finds the route for a requested name, following the module's matching rules.
    pub fn lookup(&self, sni: &str) -> Option<&Arc<Route>> {
        let name = normalize_name(sni);
        if let Some(route) = self.exact_normalized(&name) {
            return Some(route);
        }
        // A wildcard needs a non-empty label in front of its suffix.
        let wildcard = &self.statics.wildcard;
        if wildcard.is_empty() || name.starts_with('.') {
            return None;
        }
        // Walk the suffixes from the longest: "a.b.c" tries "b.c", then "c".
        let mut rest: &str = &name;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(route) = wildcard.get(rest) {
                return Some(route);
            }
        }
        None
    }

    fn exact_normalized(&self, name: &str) -> Option<&Arc<Route>> {
        self.statics
            .exact
            .get(name)
            .or_else(|| self.discovered.exact.get(name))
    }

    /// The exact route for `name`, ignoring wildcards.
    pub fn exact(&self, name: &str) -> Option<&Arc<Route>> {
        self.exact_normalized(&normalize_name(name))
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.statics.exact.len() + self.statics.wildcard.len() + self.discovered.len() - self.hidden
    }

    /// True when the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every route, in no order: cheaper than [`RouteTable::routes`] when order does not
    /// matter.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        let statics = &self.statics;
        statics
            .exact
            .values()
            .chain(statics.wildcard.values())
            .chain(
                self.discovered
                    .exact
                    .iter()
                    .filter(|(k, _)| !statics.exact.contains_key(*k))
                    .map(|(_, r)| r),
            )
    }

    /// True when both tables hold the same routes (patterns, upstreams, pools and origins).
    pub fn same_routes(&self, other: &RouteTable) -> bool {
        self.len() == other.len()
            && self.iter().all(|r| {
                let theirs = match &r.pattern {
                    SniPattern::Exact(n) => other.exact(n),
                    SniPattern::Wildcard(s) => {
                        other.statics.wildcard.get(normalize_name(s).as_ref())
                    }
                };
                theirs.is_some_and(|t| t.same_target(r))
            })
    }

    /// All routes, exact ones first, each group sorted by pattern.
    pub fn routes(&self) -> Vec<&Arc<Route>> {
        let mut all: Vec<_> = self.iter().collect();
        all.sort_by(|a, b| {
            let wild = |r: &Route| matches!(r.pattern, SniPattern::Wildcard(_));
            wild(a).cmp(&wild(b)).then_with(|| a.label.cmp(&b.label))
        });
        all
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
