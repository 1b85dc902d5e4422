//! An upgrade in progress: the new worker, how far it got, and who to tell.
//!
//! An upgrade goes through these stages; a failure in any stage before `HandedOver`
//! leaves the serving worker untouched:
//! 1. `Starting`: the new worker is started with `-u` and loads its config and routes.
//! 2. `Prepared`: it said so; once it listens on `upgrade_sock`, the serving worker gets
//!    `SIGQUIT` and hands its listening sockets over.
//! 3. `HandedOver`: the new worker serves once it reports ready; the old one drains.

use super::control::Request;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a new worker may take to load its config and routes.
pub const PREPARE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a prepared worker may take to listen on the upgrade socket.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a worker that took the sockets may take to report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `snigate upgrade` waits for the whole upgrade.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where answers to a control request go.
#[derive(Debug)]
pub struct Reply(mpsc::UnboundedSender<String>);

impl Reply {
    /// Wraps the channel to a control connection.
    pub fn new(tx: mpsc::UnboundedSender<String>) -> Self {
        Reply(tx)
    }
    /// A progress line.
    pub fn info(&self, text: &str) {
        let _ = self.0.send(format!("info {text}"));
    }
    /// The final line of a success.
    pub fn ok(&self, text: &str) {
        let _ = self.0.send(format!("ok {text}"));
    }
    /// The final line of a failure.
    pub fn error(&self, text: &str) {
        let _ = self.0.send(format!("error {text}"));
    }
}

/// What the supervisor reacts to, besides signals.
#[derive(Debug)]
pub enum Event {
    /// A control request, with where to answer if it needs an answer.
    Control(Request, Option<Reply>),
    /// A worker exited.
    Exited(u32, std::io::Result<ExitStatus>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The new worker is loading its config and routes.
    Starting,
    /// It has; it is about to wait for the sockets.
    Prepared,
    /// The old worker was told to hand its sockets over.
    HandedOver,
}

/// An upgrade in progress.
#[derive(Debug)]
pub struct Upgrade {
    /// The new worker.
    pub pid: u32,
    /// How far it got.
    pub stage: Stage,
    /// When the current stage times out.
    pub deadline: Instant,
    /// The binary it runs.
    pub exe: PathBuf,
    /// Its config file.
    pub conf: PathBuf,
    /// Where to report progress, if anyone asked.
    pub reply: Option<Reply>,
}

impl Upgrade {
    /// Logs progress and reports it to whoever asked.
    pub fn info(&self, text: &str) {
        log::info!("upgrade: {text}");
        if let Some(r) = &self.reply {
            r.info(text);
        }
    }
}
