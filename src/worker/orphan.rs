//! A worker whose stable process has died (SIGKILL, the OOM killer).
//!
//! The worker holds a pidfd of the stable process that started it, so it learns of the
//! death at once. It then:
//! 1. stops accepting, and starts its drain, exactly as on SIGTERM;
//! 2. keeps its listening sockets open without accepting on them, so that a client that
//!    connects meanwhile waits in the accept queue instead of being refused;
//! 3. offers those sockets on the takeover socket beside the pid file (`snigate.pid` →
//!    `snigate.takeover`) for as long as it drains. A new `snigate -c FILE` that cannot
//!    bind its ports listens there and takes them (Pingora's socket hand-over), so a
//!    service manager's restart refuses no connection. Nothing is sent until somebody
//!    listens on that path; if nobody comes, the sockets close when the worker exits.

use crate::listener::hand_over;
use crate::process::{exited, pidfd_open, someone_listens_on};
use crate::proxy::Shared;
use crate::supervisor::SUPERVISOR_PID_ENV;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often an orphan looks for a successor on the takeover socket.
const OFFER_POLL: Duration = Duration::from_millis(10);

/// A watch on the stable process that started this worker.
#[derive(Debug)]
pub struct SupervisorWatch {
    pid: u32,
    /// `None` when the stable process was already gone when the worker started.
    pidfd: Option<OwnedFd>,
}

impl SupervisorWatch {
    /// The stable process named by the environment, if a stable process started this
    /// worker. If it is not this worker's parent any more, it is already gone.
    pub fn from_env() -> Option<SupervisorWatch> {
        let pid: u32 = std::env::var(SUPERVISOR_PID_ENV).ok()?.parse().ok()?;
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() };
        let pidfd = if u32::try_from(parent).ok() == Some(pid) {
            match pidfd_open(pid) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    log::warn!("cannot watch the stable process (pid {pid}): {e}; this worker will not notice if it dies");
                    return None;
                }
            }
        } else {
            None
        };
        Some(SupervisorWatch { pid, pidfd })
    }

    /// The stable process's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Resolves once the stable process is gone.
    pub async fn gone(self) {
        if let Some(fd) = self.pidfd {
            if let Err(e) = exited(fd).await {
                log::warn!("lost the watch on the stable process: {e}");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Offers `sockets` (listener address → listening socket) to whoever listens on
/// `takeover`, until one takes them or the process exits. `shared`'s drain keeps the
/// process alive while the sockets are held for a successor.
pub fn offer(sockets: Vec<(String, OwnedFd)>, takeover: PathBuf, shared: Arc<Shared>) {
    if sockets.is_empty() {
        return;
    }
    shared.drain.hold_for_successor(true);
    tokio::spawn(async move {
        let mut sockets = sockets;
        loop {
            if someone_listens_on(&takeover) {
                let path = takeover.clone();
                let sent = tokio::task::spawn_blocking(move || {
                    let result = hand_over(&sockets, &path);
                    (sockets, result)
                })
                .await;
                match sent {
                    Ok((_, Ok(()))) => {
                        log::info!(
                            "handed the listening sockets to the new snigate on {}",
                            takeover.display()
                        );
                        break;
                    }
                    Ok((back, Err(e))) => {
                        log::warn!(
                            "cannot hand the listening sockets over on {}: {e}; still offering them",
                            takeover.display()
                        );
                        sockets = back;
                    }
                    Err(e) => {
                        log::error!("the hand-over of the listening sockets failed: {e}");
                        break;
                    }
                }
            }
            tokio::time::sleep(OFFER_POLL).await;
        }
        shared.drain.hold_for_successor(false);
    });
}
