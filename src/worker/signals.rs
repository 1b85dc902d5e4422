//! A worker's signals, in place of Pingora's default handling:
//!
//! | signal | effect |
//! |---|---|
//! | `SIGQUIT` | hand the listening sockets to the new worker waiting on `upgrade_sock`, then drain; with nobody waiting, logged as an error and ignored |
//! | `SIGTERM` | stop accepting, drain, exit when the last connection is gone |
//! | `SIGINT` | exit at once |
//! | `SIGHUP` | reload the config file in place |
//! | `SIGUSR1` | run the log-reopen hook, if any |

use crate::reload::Reloader;
use async_trait::async_trait;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// What to run on `SIGUSR1`.
pub type Reopen = Arc<dyn Fn() + Send + Sync>;

/// The worker's signal handling.
pub struct WorkerSignals {
    upgrade_sock: PathBuf,
    reloader: Arc<Reloader>,
    reopen: Option<Reopen>,
}

impl WorkerSignals {
    /// Signals for a worker whose upgrade socket is `upgrade_sock`.
    pub fn new(upgrade_sock: PathBuf, reloader: Arc<Reloader>, reopen: Option<Reopen>) -> Self {
        WorkerSignals {
            upgrade_sock,
            reloader,
            reopen,
        }
    }
}

/// A stream of `kind` signals, or `None` (logged) if it cannot be had.
pub(crate) fn listen(kind: SignalKind, name: &str) -> Option<Signal> {
    match signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!("cannot listen for {name}: {e}");
            None
        }
    }
}

/// The next signal of a stream; never, without one.
pub(crate) async fn next(s: &mut Option<Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
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
        loop {
            tokio::select! {
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
                    // Reading and checking the file blocks; keep the signal loop free.
                    let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
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

/// True when a process listens on the Unix socket at `path` (a new worker waiting for
/// the listening sockets). Reads /proc/net/unix, so it never connects and never takes
/// the connection meant for the old worker.
pub fn someone_listens_on(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let want = path.to_string_lossy();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 is "listening".
        fields.len() >= 8
            && fields[7] == want
            && u32::from_str_radix(fields[3], 16).is_ok_and(|f| f & 0x1_0000 != 0)
    })
}
