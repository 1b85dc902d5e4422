//! Merging discovered routes with the static routes from the config file.
//!
//! Rules:
//! 1. Static routes go in first, unchanged.
//! 2. Each cluster's discovered names become exact routes `NAME -> NAME:PORT`.
//! 3. A discovered name that already has an exact route (static, or from a cluster listed
//!    earlier) keeps that route; the clash is reported as a [`Conflict`].
//! 4. A static wildcard covering a discovered name is not a clash: the discovered exact
//!    route wins, as exact routes always do.
//! 5. A discovered name that is not a valid SNI host name (an IP literal, say) gets no
//!    route; the coverage check reports it as unroutable.
//!
//! The discovered routes form a layer of their own beside the static ones (see
//! [`crate::routes`]). A name that a static route hides stays in that layer, so a reload
//! that removes the static route shows the discovered one again without a rebuild.

use super::state::{ClusterRoutes, Entry};
use crate::names::{normalize_name, parse_pattern, SniPattern, Upstream};
use crate::routes::{DiscoveredRoutes, Route, RouteTable};
use std::sync::Arc;

/// A discovered name that an existing exact route already covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The name.
    pub name: String,
    /// The cluster whose route lost.
    pub cluster: String,
    /// Where the route that won comes from.
    pub kept: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} discovered in cluster {} is already routed by {}; keeping that route",
            self.name, self.cluster, self.kept
        )
    }
}

/// The origin label of a cluster's routes.
pub fn origin(cluster: &str) -> String {
    format!("cluster:{cluster}")
}

/// Builds the live table from the static routes and each cluster's discovered routes,
/// and reports every conflict. The reference for [`super::clusters::Clusters`], which keeps
/// the same table up to date one cluster at a time.
pub fn merge(
    static_routes: &RouteTable,
    clusters: &[(&str, &ClusterRoutes)],
) -> (RouteTable, Vec<Conflict>) {
    let table = static_routes.with_discovered(Arc::new(discover(clusters)));
    let conflicts = conflicts(&table, clusters);
    (table, conflicts)
}

/// The discovered layer: every cluster's names, an earlier cluster winning a shared name.
/// Names that a static route hides are kept, so that they show again when it goes.
pub fn discover(clusters: &[(&str, &ClusterRoutes)]) -> DiscoveredRoutes {
    let mut layer = DiscoveredRoutes::default();
    for (cluster, routes) in clusters {
        let from: Arc<str> = Arc::from(origin(cluster));
        for (name, entry) in &routes.names {
            let Some(norm) = routable(name) else {
                continue;
            };
            if layer.get(&norm).is_none() {
                layer.put(route(&from, norm, entry));
            }
        }
    }
    layer
}

/// The discovered names of `clusters` that `table` routes elsewhere (rules 3 and 4).
pub fn conflicts(table: &RouteTable, clusters: &[(&str, &ClusterRoutes)]) -> Vec<Conflict> {
    let mut out = Vec::new();
    for (cluster, routes) in clusters {
        let from = origin(cluster);
        for name in routes.names.keys() {
            // A name that cannot be routed (rule 5) finds no route here either.
            if let Some(kept) = table.exact(name).filter(|r| *r.origin != *from) {
                out.push(Conflict {
                    name: normalize_name(name).into_owned(),
                    cluster: (*cluster).to_owned(),
                    kept: kept.origin.to_string(),
                });
            }
        }
    }
    out
}

/// The normalised name a discovered name is routed under, or `None` when it cannot have a
/// route (rule 5).
pub fn routable(name: &str) -> Option<Arc<str>> {
    match parse_pattern(name) {
        Ok(SniPattern::Exact(norm)) => Some(norm),
        _ => None,
    }
}

/// The route of one discovered name: `NAME -> NAME:PORT`, the name's text shared.
pub fn route(from: &Arc<str>, norm: Arc<str>, entry: &Entry) -> Arc<Route> {
    let upstream = Upstream::fixed(norm.clone(), entry.port);
    Arc::new(Route::new(SniPattern::Exact(norm), upstream).discovered(
        from.clone(),
        entry.kind.into(),
        entry.last_seen,
    ))
}

/// Advertised names that the table does not route.
pub fn unroutable<'a>(table: &RouteTable, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names
        .into_iter()
        .filter(|n| parse_pattern(n).is_err() || table.lookup(n).is_none())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::state::brokers_seen as discovered;
    use super::*;

    fn static_table() -> RouteTable {
        let up = |h: &str| Upstream::fixed(h, 1234);
        RouteTable::new([
            Route::new(SniPattern::Exact("b0.c.test".into()), up("pinned.test")),
            Route::new(SniPattern::Wildcard("c.test".into()), up("wild.test")),
        ])
        .unwrap()
    }

    #[test]
    fn static_exact_wins_and_is_reported() {
        let d = discovered(&["b0.c.test", "b1.c.test"]);
        let (t, conflicts) = merge(&static_table(), &[("prod", &d)]);
        assert_eq!(
            t.lookup("b0.c.test").unwrap().upstream.to_string(),
            "pinned.test:1234"
        );
        assert_eq!(
            t.lookup("b1.c.test").unwrap().upstream.to_string(),
            "b1.c.test:9092"
        );
        assert_eq!(
            t.lookup("b1.c.test").unwrap().origin.as_ref(),
            "cluster:prod"
        );
        assert_eq!(
            conflicts,
            vec![Conflict {
                name: "b0.c.test".into(),
                cluster: "prod".into(),
                kept: "static".into()
            }]
        );
    }

    #[test]
    fn first_cluster_wins_a_shared_name() {
        let a = discovered(&["x.test"]);
        let b = discovered(&["x.test"]);
        let (t, conflicts) = merge(&RouteTable::default(), &[("a", &a), ("b", &b)]);
        assert_eq!(t.lookup("x.test").unwrap().origin.as_ref(), "cluster:a");
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].kept, "cluster:a");
    }

    #[test]
    fn invalid_names_are_unroutable() {
        let d = discovered(&["10.0.0.1", "ok.test"]);
        let (t, _) = merge(&RouteTable::default(), &[("a", &d)]);
        assert_eq!(t.len(), 1);
        assert_eq!(
            unroutable(&t, ["10.0.0.1", "ok.test", "other.test"]),
            vec!["10.0.0.1", "other.test"]
        );
    }
}
