//! The drain schedule: when a process stops accepting (after an upgrade or SIGTERM), it
//! closes its remaining connections spread evenly over the grace period, not all at once,
//! so that clients reconnect to the new process a few at a time.
//!
//! Rule: with `n` connections open when the drain starts, the connection given turn `k`
//! (0-based, in the order they ask) closes at `grace * (k + 1) / n` after the start. The
//! last one closes at the end of the grace period; a connection that closes by itself
//! earlier just leaves a gap. Turns past `n - 1` (a connection that was still being
//! accepted when the drain started) share the last slot.

use std::time::Duration;

/// How long after the drain starts the connection with turn `k` of `n` closes.
pub fn close_after(grace: Duration, n: usize, k: usize) -> Duration {
    let n = n.max(1);
    let k = k.min(n - 1);
    let slot = u32::try_from(k + 1).unwrap_or(u32::MAX);
    let of = u32::try_from(n).unwrap_or(u32::MAX);
    grace.saturating_mul(slot) / of
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
}
