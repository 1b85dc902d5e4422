//! Looks up arbitrary names in a small fixed route table.
//!
//! Besides "never panics", it checks that a found route really matches the name, that an
//! exact route always wins, and that ASCII case and one trailing dot make no difference.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use snigate_core::routes::{
    normalize_name, Route, RouteTable, SniPattern, Upstream, UpstreamHost, UpstreamPort,
};

const EXACT: &[&str] = &[
    "b0-pkc-1.eu.example.test",
    "pkc-1.eu.example.test",
    "example.test",
    "a",
];
/// Wildcard suffixes (the part after `*.`).
const WILDCARD: &[&str] = &[
    "eu.example.test",
    "example.test",
    "x.y.z.example.test",
    "b.c",
];

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let up = |host: &str| Upstream {
            host: UpstreamHost::Fixed(host.to_owned()),
            port: UpstreamPort::Fixed(9092),
            pinned: vec![],
        };
        let exact = EXACT
            .iter()
            .map(|n| Route::new(SniPattern::Exact(n.to_string()), up(n)));
        let wild = WILDCARD
            .iter()
            .map(|s| Route::new(SniPattern::Wildcard(s.to_string()), up(s)));
        RouteTable::new(exact.chain(wild)).expect("no duplicate patterns")
    })
}

fuzz_target!(|data: &[u8]| {
    let name = String::from_utf8_lossy(data);
    let t = table();
    let found = t.lookup(&name);

    let norm = normalize_name(&name);
    let is_exact_name = EXACT.contains(&norm.as_ref());
    match found.map(|r| &r.pattern) {
        Some(SniPattern::Exact(n)) => assert_eq!(n.as_str(), norm.as_ref()),
        Some(SniPattern::Wildcard(s)) => {
            let matches = norm
                .strip_suffix(s.as_str())
                .is_some_and(|head| head.ends_with('.'));
            assert!(matches, "{name:?} matched *.{s}");
            assert!(!is_exact_name, "{name:?} has an exact route but got *.{s}");
            // No longer wildcard suffix may also match.
            for other in WILDCARD.iter().filter(|o| o.len() > s.len()) {
                let longer = norm
                    .strip_suffix(other)
                    .is_some_and(|head| head.ends_with('.'));
                assert!(!longer, "{name:?} matched *.{s} but *.{other} is longer");
            }
        }
        None => assert!(
            !is_exact_name,
            "{name:?} has an exact route but none was found"
        ),
    }

    // ASCII case and one trailing dot never change the answer.
    let same = |other: Option<&Arc<Route>>| match (found, other) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    };
    let upper = name.to_ascii_uppercase();
    assert!(same(t.lookup(&upper)), "{name:?} and {upper:?} differ");
    if !name.ends_with('.') {
        let dotted = format!("{name}.");
        assert!(same(t.lookup(&dotted)), "{name:?} and {dotted:?} differ");
    }
});
