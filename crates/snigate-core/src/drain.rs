//! The drain schedule: when a process stops accepting (after an upgrade or SIGTERM), it
//! closes its remaining connections spread evenly over the grace period, not all at once,
//! so that clients reconnect to the new process a few at a time.
//!
//! Rule: with `n` connections open when the drain starts, the connection given turn `k`
//! (0-based, in the order they ask) closes at `grace * (k + 1) / n` after the start. The
//! last one closes at the end of the grace period; a connection that closes by itself
//! earlier just leaves a gap. Turns past `n - 1` (a connection that was still being
//! accepted when the drain started) share the last slot.
//!
//! A draining worker has handed its admin listener to its successor, so it reports its
//! drain to the stable process once a second ([`DrainReport`]), and the serving worker
//! shows them all ([`DrainSummary`]). Rules for the summary:
//! - `open` adds every draining worker's last reported open connections;
//! - `oldest_seconds` is the age of the earliest drain still holding connections, or of
//!   the earliest drain at all when none holds any;
//! - a drain is *overdue* once its age passes its own grace period while it still holds
//!   connections; `overdue` adds those connections. A healthy drain is never overdue: it
//!   closes its last connection at the end of the grace period and then exits.

use std::time::Duration;

/// How long after the drain starts the connection with turn `k` of `n` closes.
pub fn close_after(grace: Duration, n: usize, k: usize) -> Duration {
    let n = n.max(1);
    let k = k.min(n - 1);
    let slot = u32::try_from(k + 1).unwrap_or(u32::MAX);
    let of = u32::try_from(n).unwrap_or(u32::MAX);
    grace.saturating_mul(slot) / of
}

/// One draining worker's state, as it reports it: `PID:OPEN:SINCE_MS:GRACE_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// The draining worker.
    pub pid: u32,
    /// Connections it still holds.
    pub open: u64,
    /// When its drain started, in Unix milliseconds.
    pub since_ms: u64,
    /// Its grace period, in milliseconds.
    pub grace_ms: u64,
}

impl DrainReport {
    /// The report as one whitespace-free field.
    pub fn field(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.pid, self.open, self.since_ms, self.grace_ms
        )
    }

    /// Parses [`DrainReport::field`]'s text.
    pub fn parse(field: &str) -> Option<DrainReport> {
        let mut parts = field.split(':').map(str::parse::<u64>);
        let mut next = || parts.next().and_then(Result::ok);
        let report = DrainReport {
            pid: u32::try_from(next()?).ok()?,
            open: next()?,
            since_ms: next()?,
            grace_ms: next()?,
        };
        next().is_none().then_some(report)
    }

    /// Milliseconds since the drain started, at `now_ms`.
    fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.since_ms)
    }

    /// True when the drain holds connections past its grace period at `now_ms`.
    pub fn overdue(&self, now_ms: u64) -> bool {
        self.open > 0 && self.age_ms(now_ms) > self.grace_ms
    }
}

/// Every drain in progress, summed up.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DrainSummary {
    /// Workers draining.
    pub workers: usize,
    /// Connections they still hold.
    pub open: u64,
    /// Age of the oldest drain, in seconds (see the module's rules).
    pub oldest_seconds: f64,
    /// Connections held by drains past their grace period.
    pub overdue: u64,
}

impl DrainSummary {
    /// Sums `reports` up at `now_ms`.
    pub fn of(reports: &[DrainReport], now_ms: u64) -> DrainSummary {
        let holding = reports.iter().filter(|r| r.open > 0);
        let oldest = holding
            .map(|r| r.since_ms)
            .min()
            .or_else(|| reports.iter().map(|r| r.since_ms).min());
        DrainSummary {
            workers: reports.len(),
            open: reports.iter().map(|r| r.open).sum(),
            oldest_seconds: oldest.map_or(0.0, |s| now_ms.saturating_sub(s) as f64 / 1000.0),
            overdue: reports
                .iter()
                .filter(|r| r.overdue(now_ms))
                .map(|r| r.open)
                .sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_are_spread_evenly_up_to_the_grace_period() {
        let g = Duration::from_secs(10);
        let at: Vec<u64> = (0..5).map(|k| close_after(g, 5, k).as_secs()).collect();
        assert_eq!(at, [2, 4, 6, 8, 10]);
        assert_eq!(close_after(g, 1, 0), g);
        assert_eq!(close_after(g, 5, 9), g, "late turns share the last slot");
        assert_eq!(close_after(g, 0, 0), g);
        assert_eq!(close_after(Duration::ZERO, 3, 1), Duration::ZERO);
    }

    #[test]
    fn reports_round_trip_and_reject_junk() {
        let r = DrainReport {
            pid: 4321,
            open: 7,
            since_ms: 1_765_000_000_000,
            grace_ms: 30_000,
        };
        assert_eq!(r.field(), "4321:7:1765000000000:30000");
        assert_eq!(DrainReport::parse(&r.field()), Some(r));
        for bad in [
            "",
            "1:2:3",
            "1:2:3:4:5",
            "x:2:3:4",
            "1:-2:3:4",
            "99999999999:1:2:3",
        ] {
            assert_eq!(DrainReport::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_summary_adds_drains_and_flags_overdue_ones() {
        let now = 100_000;
        let report = |pid, open, since_ms, grace_ms| DrainReport {
            pid,
            open,
            since_ms,
            grace_ms,
        };
        assert_eq!(DrainSummary::of(&[], now), DrainSummary::default());
        // Within its grace: counted, not overdue.
        let young = report(1, 3, 90_000, 30_000);
        let s = DrainSummary::of(&[young], now);
        assert_eq!((s.workers, s.open, s.overdue), (1, 3, 0));
        assert_eq!(s.oldest_seconds, 10.0);
        // Past its grace with connections: overdue. Past it with none: not.
        let stuck = report(2, 2, 20_000, 30_000);
        let empty = report(3, 0, 10_000, 30_000);
        let s = DrainSummary::of(&[young, stuck, empty], now);
        assert_eq!((s.workers, s.open, s.overdue), (3, 5, 2));
        assert_eq!(
            s.oldest_seconds, 80.0,
            "the oldest drain that holds connections"
        );
        let s = DrainSummary::of(&[empty], now);
        assert_eq!((s.open, s.overdue, s.oldest_seconds), (0, 0, 90.0));
        // A clock step backwards never gives a negative age.
        assert_eq!(
            DrainSummary::of(&[report(4, 1, now + 5, 0)], now).oldest_seconds,
            0.0
        );
    }
}
