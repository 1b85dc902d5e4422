//! The status page: `GET /` and `/status` on the admin listener. One self-contained HTML
//! document (no scripts, fonts or anything fetched from elsewhere; it works with JavaScript
//! off), rendered on the admin service's own threads from the same counters as
//! `/metrics`.
//!
//! - [`model`]: gathering the figures and building the rows (pure, tested).
//! - [`html`]: the document, every name and value escaped (pure, tested).

pub mod html;
pub mod model;

use std::sync::LazyLock;
use std::time::Instant;

/// When this worker started, for the uptime.
pub static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Time as `2d 3h 4m 5s`, leaving out leading zero units.
pub fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m {s}s"),
    }
}

/// The query's `page` and `refresh` values (a refresh is at least 2 seconds).
pub fn query(q: Option<&str>) -> (usize, Option<u32>) {
    let mut page = 0;
    let mut refresh = None;
    for kv in q.unwrap_or("").split('&') {
        match kv.split_once('=') {
            Some(("page", v)) => page = v.parse().unwrap_or(0),
            Some(("refresh", v)) => refresh = v.parse::<u32>().ok().map(|r| r.clamp(2, 3600)),
            _ => {}
        }
    }
    (page, refresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_and_queries() {
        assert_eq!(uptime(5), "5s");
        assert_eq!(uptime(3_725), "1h 2m 5s");
        assert_eq!(uptime(90_061), "1d 1h 1m 1s");
        assert_eq!(query(Some("page=2&refresh=1")), (2, Some(2)));
        assert_eq!(query(None), (0, None));
        assert_eq!(query(Some("page=x")), (0, None));
    }
}
