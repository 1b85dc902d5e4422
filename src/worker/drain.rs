//! Draining: once the worker stops accepting (after handing its sockets to a new worker,
//! or on SIGTERM), its open connections are closed one by one, spread evenly over
//! `grace_period_seconds` (see `snigate_core::drain`), and the process exits as soon as
//! the last one is gone (and, for a worker whose stable process died, once its listening
//! sockets have been handed to a successor: see [`super::orphan`]).
//!
//! A draining worker no longer has the admin listener, so [`Exit`] reports the drain to
//! the stable process once a second, and the serving worker's [`Watch`] asks it for every
//! drain in progress, for `/metrics` and the status page (rules in `snigate_core::drain`).

use crate::metrics;
use crate::proxy::Shared;
use crate::supervisor::control::{self, Request};
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use snigate_core::drain::{close_after, DrainReport, DrainSummary};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// How often a draining worker reports, and the serving worker asks.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Unix milliseconds now.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// When a drain started, and how many connections were open then.
#[derive(Debug, Clone, Copy)]
struct Plan {
    start: Instant,
    open: usize,
    since_ms: u64,
}

/// The drain's schedule, shared by every connection.
#[derive(Debug)]
pub struct Drain {
    grace: Duration,
    plan: OnceLock<Plan>,
    turns: AtomicUsize,
    /// Listening sockets are held for a successor: do not exit yet.
    holding: AtomicBool,
}

/// Resolves once `shutdown` has been broadcast.
pub async fn stopped(shutdown: &mut ShutdownWatch) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            // The server is gone without a shutdown: nothing will ever drain.
            std::future::pending::<()>().await;
        }
    }
}

impl Drain {
    /// A drain over `grace`.
    pub fn new(grace: Duration) -> Self {
        Drain {
            grace,
            plan: OnceLock::new(),
            turns: AtomicUsize::new(0),
            holding: AtomicBool::new(false),
        }
    }

    /// Keeps the process from exiting at the end of its drain (`true`) while it holds its
    /// listening sockets for a successor; the grace period still bounds the wait.
    pub fn hold_for_successor(&self, hold: bool) {
        self.holding.store(hold, Ordering::Release);
    }

    fn holds_for_successor(&self) -> bool {
        self.holding.load(Ordering::Acquire)
    }

    /// True once the drain has started.
    pub fn started(&self) -> bool {
        self.plan.get().is_some()
    }

    /// The grace period.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// The drain's start and its connection count, fixed by the first caller.
    fn plan(&self, open: impl FnOnce() -> usize) -> (Instant, usize) {
        let plan = self.plan.get_or_init(|| Plan {
            start: Instant::now(),
            open: open(),
            since_ms: unix_ms(),
        });
        (plan.start, plan.open)
    }

    /// This process's drain with `open` connections left, once it has started.
    pub fn report(&self, open: usize) -> Option<DrainReport> {
        self.plan.get().map(|plan| DrainReport {
            pid: std::process::id(),
            open: open as u64,
            since_ms: plan.since_ms,
            grace_ms: u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Resolves when the connection calling it should close: after the shutdown, at its
    /// turn in the schedule. `open` counts the connections open now.
    pub async fn turn(&self, mut shutdown: ShutdownWatch, open: impl FnOnce() -> usize) {
        stopped(&mut shutdown).await;
        let (start, n) = self.plan(open);
        let k = self.turns.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep_until(start + close_after(self.grace, n, k)).await;
    }
}

/// Background service that ends the process once a shutdown has drained every connection,
/// reporting the drain to the stable process at `control` meanwhile.
pub struct Exit {
    shared: Arc<Shared>,
    control: Option<PathBuf>,
}

impl Exit {
    /// Watches `shared`'s open connections; reports to `control` when there is one.
    pub fn new(shared: Arc<Shared>, control: Option<PathBuf>) -> Self {
        Exit { shared, control }
    }

    /// Tells the stable process how the drain stands, off the runtime's threads; a stable
    /// process that is gone (see [`super::orphan`]) just hears nothing.
    fn report(&self) {
        let (Some(control), Some(report)) = (
            self.control.clone(),
            self.shared.drain.report(self.shared.active()),
        ) else {
            return;
        };
        tokio::task::spawn_blocking(move || {
            if let Err(e) = control::tell(&control, &Request::Draining(report)) {
                log::debug!("cannot report the drain to the stable process: {e}");
            }
        });
    }
}

#[async_trait]
impl BackgroundService for Exit {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        stopped(&mut shutdown).await;
        let drain = &self.shared.drain;
        let (start, n) = drain.plan(|| self.shared.active());
        log::info!(
            "stopped accepting; closing {n} open connection(s) spread over {:?}",
            drain.grace()
        );
        let deadline = start + drain.grace() + Duration::from_secs(2);
        let mut next_report = Instant::now();
        loop {
            if Instant::now() >= next_report {
                self.report();
                next_report += REPORT_EVERY;
            }
            let open = self.shared.active();
            let holding = drain.holds_for_successor();
            if open == 0 && !holding {
                log::info!("every connection is closed; exiting");
                break;
            }
            if Instant::now() >= deadline {
                if open > 0 {
                    log::warn!("{open} connection(s) still open after the grace period; exiting");
                } else {
                    log::warn!("no new snigate took the listening sockets within the grace period; exiting, which closes them");
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        crate::access_log::flush();
        log::logger().flush();
        std::process::exit(0);
    }
}

/// The drains in progress, as the serving worker last heard of them.
#[derive(Debug, Default)]
pub struct Board(Mutex<Vec<DrainReport>>);

impl Board {
    /// The last reports, by pid.
    pub fn reports(&self) -> Vec<DrainReport> {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn set(&self, reports: Vec<DrainReport>) {
        if let Ok(mut r) = self.0.lock() {
            *r = reports;
        }
    }
}

/// Background service of the serving worker: once a second, asks the stable process at
/// `control` for every drain in progress, adds this worker's own, keeps them on the board
/// and sets the drain metrics.
pub struct Watch {
    shared: Arc<Shared>,
    control: Option<PathBuf>,
    board: Arc<Board>,
}

impl Watch {
    /// Watches drains for `shared`'s worker, through `control` when there is one.
    pub fn new(shared: Arc<Shared>, control: Option<PathBuf>, board: Arc<Board>) -> Self {
        Watch {
            shared,
            control,
            board,
        }
    }

    /// Every drain now; when the stable process does not answer (it may be busy with an
    /// upgrade), its drains as last heard.
    async fn poll(&self) -> Vec<DrainReport> {
        let own = std::process::id();
        let mut reports = match self.control.clone() {
            Some(control) => tokio::task::spawn_blocking(move || {
                control::ask(&control, &Request::Drains, REPORT_EVERY, |_| {})
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|answer| answer)
            .map(|answer| control::parse_drains(&answer))
            .unwrap_or_else(|e| {
                log::debug!("cannot ask the stable process for drains: {e}");
                self.board.reports()
            }),
            None => Vec::new(),
        };
        reports.retain(|r| r.pid != own);
        reports.extend(self.shared.drain.report(self.shared.active()));
        reports.sort_by_key(|r| r.since_ms);
        reports
    }
}

#[async_trait]
impl BackgroundService for Watch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        metrics::GRACE_PERIOD.set(self.shared.drain.grace().as_secs_f64());
        loop {
            let reports = self.poll().await;
            let summary = DrainSummary::of(&reports, unix_ms());
            metrics::set_drains(&summary);
            self.board.set(reports);
            tokio::select! {
                _ = tokio::time::sleep(REPORT_EVERY) => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn connections_close_in_turn_over_the_grace_period() {
        let drain = Arc::new(Drain::new(Duration::from_secs(8)));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let begun = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (drain, rx) = (drain.clone(), rx.clone());
            tasks.push(tokio::spawn(async move {
                drain.turn(rx, || 4).await;
                Instant::now()
            }));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        tx.send(true).unwrap();
        let mut closed = Vec::new();
        for t in tasks {
            closed.push((t.await.unwrap() - begun).as_secs());
        }
        closed.sort();
        assert_eq!(closed, [5, 7, 9, 11]);
    }
}
