//! Draining: once the worker stops accepting (after handing its sockets to a new worker,
//! or on SIGTERM), its open connections are closed one by one, spread evenly over
//! `grace_period_seconds` (see `snigate_core::drain`), and the process exits as soon as
//! the last one is gone (and, for a worker whose stable process died, once its listening
//! sockets have been handed to a successor: see [`super::orphan`]).

use crate::proxy::Shared;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use snigate_core::drain::close_after;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// The drain's schedule, shared by every connection.
#[derive(Debug)]
pub struct Drain {
    grace: Duration,
    /// When the drain started, and how many connections were open then.
    plan: OnceLock<(Instant, usize)>,
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
        *self.plan.get_or_init(|| (Instant::now(), open()))
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

/// Background service that ends the process once a shutdown has drained every connection.
pub struct Exit {
    shared: Arc<Shared>,
}

impl Exit {
    /// Watches `shared`'s open connections.
    pub fn new(shared: Arc<Shared>) -> Self {
        Exit { shared }
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
        loop {
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
