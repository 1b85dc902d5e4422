//! A worker's signals, in place of Pingora's default handling:
//!
//! | signal | effect |
//! |---|---|
//! | `SIGQUIT` | hand the listening sockets to the new worker waiting on `upgrade_sock`, then drain; with nobody waiting, logged as an error and ignored |
//! | `SIGTERM` | stop accepting, drain, exit when the last connection is gone |
//! | `SIGINT` | exit at once |
//! | `SIGHUP` | reload the config file in place |
//! | `SIGUSR1` | run the log-reopen hook, if any |
//!
//! And should the stable process die, the worker stops accepting and drains as on
//! `SIGTERM`, but keeps its listening sockets for the next stable process (see
//! [`super::orphan`]).

use super::orphan::{self, SupervisorWatch};
use super::reload::Reloader;
use crate::listener::OpenListeners;
use crate::process::{listen, next, someone_listens_on};
use crate::proxy::Shared;
use async_trait::async_trait;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::signal::unix::SignalKind;

/// What to run on `SIGUSR1`.
pub type Reopen = Arc<dyn Fn() + Send + Sync>;

/// The worker's signal handling.
pub struct WorkerSignals {
    upgrade_sock: PathBuf,
    reloader: Arc<Reloader>,
    reopen: Option<Reopen>,
    orphan: Option<Orphaning>,
}

/// What a worker needs to notice its stable process's death and act on it.
pub struct Orphaning {
    /// The watch on the stable process (taken when the watch starts).
    pub watch: Mutex<Option<SupervisorWatch>>,
    /// The listening sockets to keep for the next stable process.
    pub listeners: OpenListeners,
    /// Where the next stable process waits for them.
    pub takeover: PathBuf,
    /// The worker's shared state, whose drain waits for the hand-over.
    pub shared: Arc<Shared>,
}

impl WorkerSignals {
    /// Signals for a worker whose upgrade socket is `upgrade_sock`.
    pub fn new(upgrade_sock: PathBuf, reloader: Arc<Reloader>, reopen: Option<Reopen>) -> Self {
        WorkerSignals {
            upgrade_sock,
            reloader,
            reopen,
            orphan: None,
        }
    }

    /// Also watches the stable process, and acts as [`super::orphan`] says if it dies.
    pub fn with_orphaning(mut self, orphaning: Orphaning) -> Self {
        self.orphan = Some(orphaning);
        self
    }

    /// The stable process is gone: keep the listening sockets for its successor, then
    /// drain as on SIGTERM.
    fn orphaned(&self, pid: u32) {
        let Some(o) = &self.orphan else {
            return;
        };
        let grace = o.shared.drain.grace();
        log::error!(
            "the stable process (pid {pid}) is gone; this worker stops accepting, drains over {grace:?}, and offers its listening sockets to the next `snigate -c FILE` on {} meanwhile",
            o.takeover.display()
        );
        orphan::offer(o.listeners.dup_all(), o.takeover.clone(), o.shared.clone());
    }
}

#[async_trait]
impl ShutdownSignalWatch for WorkerSignals {
    async fn recv(&self) -> ShutdownSignal {
        let mut quit = listen(SignalKind::quit(), "SIGQUIT");
        let mut term = listen(SignalKind::terminate(), "SIGTERM");
        let mut int = listen(SignalKind::interrupt(), "SIGINT");
        let mut hup = listen(SignalKind::hangup(), "SIGHUP");
        let mut usr1 = listen(SignalKind::user_defined1(), "SIGUSR1");
        let watch = self
            .orphan
            .as_ref()
            .and_then(|o| o.watch.lock().unwrap_or_else(|p| p.into_inner()).take());
        let supervisor = watch.as_ref().map(SupervisorWatch::pid);
        let gone = async move {
            match watch {
                Some(w) => w.gone().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(gone);
        loop {
            tokio::select! {
                _ = &mut gone => {
                    self.orphaned(supervisor.unwrap_or_default());
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = next(&mut quit) => {
                    if someone_listens_on(&self.upgrade_sock) {
                        return ShutdownSignal::GracefulUpgrade;
                    }
                    log::error!(
                        "SIGQUIT received, but no new process is waiting for the sockets on {}; still serving. To upgrade, run `snigate upgrade -c FILE`",
                        self.upgrade_sock.display()
                    );
                }
                _ = next(&mut term) => return ShutdownSignal::GracefulTerminate,
                _ = next(&mut int) => return ShutdownSignal::FastShutdown,
                _ = next(&mut hup) => {
                    let reloader = self.reloader.clone();
                    // Reading and checking the file blocks; keep the signal loop free, and
                    // let the connections have the CPU first.
                    let _ = tokio::task::spawn_blocking(move || {
                        crate::process::at_idle_priority(|| reloader.reload())
                    })
                    .await;
                }
                _ = next(&mut usr1) => {
                    if let Some(reopen) = &self.reopen {
                        reopen();
                    }
                }
            }
        }
    }
}
