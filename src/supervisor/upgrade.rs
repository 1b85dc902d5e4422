//! A worker start in progress (the first worker, a replacement after a crash, or an
//! upgrade): the new worker, how far it got, and who to tell.
//!
//! A start goes through these stages; a failure in any of them leaves the serving worker
//! untouched, since it keeps accepting on the same sockets until the new one is ready:
//! 1. `Starting`: the new worker is started with `-u` and loads its config and routes.
//! 2. `Prepared`: it said so; once it listens on `upgrade_sock`, the stable process hands
//!    it a copy of the listening sockets.
//! 3. `Sending`: the hand-over is under way.
//! 4. `HandedOver`: the new worker accepts; once it reports ready, the old one is told to
//!    stop accepting (SIGTERM) and drains.

use super::control::{Reply, Request};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::time::Instant;

/// How long a new worker may take to load its config and routes.
pub const PREPARE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a prepared worker may take to listen on the upgrade socket.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a worker that took the sockets may take to report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `snigate upgrade` waits for the whole upgrade.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the new binary may take to check the config before a re-exec.
pub const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(30);

/// What the supervisor reacts to, besides signals.
#[derive(Debug)]
pub enum Event {
    /// A control request, with where to answer if it needs an answer.
    Control(Request, Option<Reply>),
    /// A worker exited.
    Exited(u32, std::io::Result<ExitStatus>),
    /// The hand-over of the listening sockets to a new worker ended.
    Sent(u32, Result<(), String>),
    /// The new binary's check before a re-exec ended: what it printed, or why it failed.
    Preflight(Result<String, String>),
}

/// How far a worker start got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The new worker is loading its config and routes.
    Starting,
    /// It has; it is about to wait for the sockets.
    Prepared,
    /// The sockets are being handed to it.
    Sending,
    /// It has the sockets and accepts on them.
    HandedOver,
}

/// A re-exec in progress: the new binary is checking the config.
#[derive(Debug)]
pub struct Reexec {
    /// The binary to exec.
    pub exe: PathBuf,
    /// The config file.
    pub conf: PathBuf,
    /// Where to report progress, if anyone asked.
    pub reply: Option<Reply>,
}

/// An upgrade in progress.
#[derive(Debug)]
pub struct Upgrade {
    /// The new worker.
    pub pid: u32,
    /// When it was started.
    pub started: Instant,
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
    /// What the start changes in the held listening sockets.
    pub sockets: SocketPlan,
}

/// What a worker start changes in the listening sockets the stable process holds.
#[derive(Debug, Default)]
pub struct SocketPlan {
    /// Bound for this worker's config; closed if the start fails.
    pub added: Vec<String>,
    /// Every socket this worker's config asks for; once it serves, the others close.
    /// `None`: keep them all.
    pub keep: Option<Vec<String>>,
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
