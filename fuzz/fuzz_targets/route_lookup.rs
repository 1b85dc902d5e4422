//! Looks up arbitrary names in a small fixed route table.
//!
//! Besides "never panics", it checks that a found route really matches the name, that an
//! exact route always wins, and that ASCII case and one trailing dot make no difference.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use snigate::routes::{
    normalize_name, Route, RouteTable, SniPattern, Upstream, UpstreamHost, UpstreamPort,
};

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let up = |host: &str| Upstream {
            host: UpstreamHost::Fixed(host.to_owned()),
            port: UpstreamPort::Fixed(9092),
            pinned: vec![],
        };
        let exact = |n: &str| Route::new(SniPattern::Exact(n.to_owned()), up(n));
        let wild = |s: &str| Route::new(SniPattern::Wildcard(s.to_owned()), up(s));
        RouteTable::new([
            exact("b0-pkc-1.eu.example.test"),
            exact("pkc-1.eu.example.test"),
            exact("example.test"),
            exact("a"),
            wild("eu.example.test"),
            wild("example.test"),
            wild("x.y.z.example.test"),
            wild("b.c"),
        ])
        .expect("no duplicate patterns")
    })
}

fuzz_target!(|data: &[u8]| {
    let name = String::from_utf8_lossy(data);
    let t = table();
    let found = t.lookup(&name);

    let norm = normalize_name(&name);
    if let Some(route) = found {
        match &route.pattern {
            SniPattern::Exact(n) => assert_eq!(n.as_str(), norm.as_ref()),
            SniPattern::Wildcard(s) => {
                assert!(
                    norm.len() > s.len() && norm.ends_with(s.as_str()) && norm[..norm.len() - s.len()].ends_with('.'),
                    "{name:?} matched *.{s}"
                );
                // An exact route for the same name would have won.
                assert!(t.routes().iter().all(|r| r.pattern != SniPattern::Exact(norm.to_string())));
            }
        }
    }

    // Case and one trailing dot never change the answer.
    let upper = name.to_ascii_uppercase();
    let same = |other: Option<&Arc<Route>>| match (found, other) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    };
    assert!(same(t.lookup(&upper)), "{name:?} and {upper:?} differ");
    if !name.ends_with('.') {
        let dotted = format!("{name}.");
        assert!(same(t.lookup(&dotted)), "{name:?} and {dotted:?} differ");
    }
});
