//! The workers under the stable process: starting them (see [`super::upgrade`]), replacing
//! them on an upgrade or when one dies, stopping them, and re-executing the stable
//! process itself (see [`super::reexec`]).

mod reexec_flow;

use super::control::{Reply, Request};
use super::handoff::CarriedWorker;
use super::sockets::{keys_for, ListenSockets};
use super::upgrade::{
    Event, Reexec, SocketPlan, Stage, Upgrade, PREPARE_TIMEOUT, READY_TIMEOUT, SOCKET_TIMEOUT,
};
use super::{BUILD_ENV, CONTROL_ENV, SUPERVISOR_PID_ENV};
use crate::config::Config;
use crate::listener::hand_over;
use crate::process::{
    block_handled_signals, exited, kill, pidfd_open, reap, someone_listens_on, HandledSignals, Sig,
};
use crate::BUILD;
use snigate_core::drain::DrainReport;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The pause before replacing a worker that died, doubled after each death in a row.
const FIRST_RESTART_PAUSE: Duration = Duration::from_secs(1);
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(30);

/// Why a worker is being started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The gateway's first worker.
    First,
    /// A replacement for a worker that died.
    Restart,
    /// An upgrade (`snigate upgrade`, a re-exec, or `reload: upgrade`).
    Upgrade,
}

/// How the supervisor begins.
pub enum Begin {
    /// A fresh start: start the first worker.
    Fresh,
    /// After a re-exec: the workers carried over, and the upgrade that asked for it.
    Resumed {
        /// The workers, as the old image knew them.
        workers: Vec<CarriedWorker>,
        /// Whether a worker has ever been ready.
        ever_ready: bool,
        /// The `snigate upgrade` waiting for the end.
        reply: Option<Reply>,
        /// The old image's build.
        from_build: String,
    },
}

/// What the supervisor runs with.
pub struct Setup {
    /// The binary workers start from (the stable process's own path).
    pub exe: PathBuf,
    /// The config file.
    pub conf: PathBuf,
    /// The control socket's path.
    pub control: PathBuf,
    /// The control socket's listening descriptor (carried across a re-exec).
    pub control_fd: RawFd,
    /// The pid file.
    pub pid_file: PathBuf,
    /// Where new workers wait for the listening sockets.
    pub upgrade_sock: PathBuf,
    /// The listening sockets.
    pub sockets: ListenSockets,
    /// Where events go.
    pub events: mpsc::UnboundedSender<Event>,
}

/// The supervisor's state.
pub struct Workers {
    setup: Setup,
    alive: BTreeSet<u32>,
    current: Option<u32>,
    ever_ready: bool,
    upgrade: Option<(Upgrade, Kind)>,
    /// A re-exec whose new binary is being checked.
    reexec: Option<Reexec>,
    /// A re-exec whose new binary passed its check: the main loop execs it next.
    exec_ready: Option<Reexec>,
    stopping: bool,
    restart_at: Option<Instant>,
    restart_pause: Duration,
    exit_code: Option<i32>,
    /// Draining workers' last reports (they send one a second until they exit).
    drains: BTreeMap<u32, DrainReport>,
}

impl Workers {
    /// The supervisor for `setup`.
    pub fn new(setup: Setup) -> Self {
        Workers {
            setup,
            alive: BTreeSet::new(),
            current: None,
            ever_ready: false,
            upgrade: None,
            reexec: None,
            exec_ready: None,
            stopping: false,
            restart_at: None,
            restart_pause: FIRST_RESTART_PAUSE,
            exit_code: None,
            drains: BTreeMap::new(),
        }
    }

    /// Starts (or takes over) the workers and supervises until every worker is gone after
    /// a stop; returns the process exit code.
    pub async fn run(mut self, begin: Begin, mut events: mpsc::UnboundedReceiver<Event>) -> i32 {
        let mut signals = HandledSignals::listen();
        // Signals blocked across a re-exec arrive now, to the handlers just installed.
        block_handled_signals(false);
        match begin {
            Begin::Fresh => {
                let (exe, conf) = (self.setup.exe.clone(), self.setup.conf.clone());
                if let Err(e) = self.start(exe, conf, Kind::First, None, SocketPlan::default()) {
                    log::error!("cannot start the worker: {e}");
                    return 1;
                }
            }
            Begin::Resumed {
                workers,
                ever_ready,
                reply,
                from_build,
            } => self.resume(workers, ever_ready, reply, &from_build),
        }
        loop {
            if let Some(code) = self.exit_code {
                return code;
            }
            if self.stopping && self.alive.is_empty() {
                log::info!("every worker has stopped; exiting");
                return 0;
            }
            if let Some(checked) = self.exec_ready.take() {
                self.exec(checked, &mut signals).await;
                continue;
            }
            let wake = self.next_wake();
            tokio::select! {
                sig = signals.next() => self.on_signal(sig),
                Some(event) = events.recv() => self.on_event(event),
                _ = sleep_until(wake) => self.on_wake(),
            }
        }
    }

    fn on_signal(&mut self, sig: Sig) {
        match sig {
            Sig::Hup => self.forward_hup(),
            Sig::Term => self.stop(libc::SIGTERM, "SIGTERM"),
            Sig::Int => self.stop(libc::SIGINT, "SIGINT"),
            Sig::Usr1 => {
                for pid in &self.alive {
                    kill(*pid, libc::SIGUSR1);
                }
            }
            Sig::Quit => log::error!(
                "SIGQUIT received by the stable process (pid {}); it is not an upgrade here and is ignored. To upgrade, run `snigate upgrade -c {}`",
                std::process::id(),
                self.setup.conf.display()
            ),
        }
    }

    /// Starts a worker from `exe` that will receive the listening sockets.
    fn start(
        &mut self,
        exe: PathBuf,
        conf: PathBuf,
        kind: Kind,
        reply: Option<Reply>,
        sockets: SocketPlan,
    ) -> std::io::Result<u32> {
        let prime = self.current.is_some();
        let pid = match self.spawn(&exe, &conf, prime) {
            Ok(pid) => pid,
            Err(e) => {
                self.setup.sockets.close(&sockets.added);
                if let Some(r) = &reply {
                    r.error(&format!(
                        "cannot start {}: {e}; the running gateway is untouched",
                        exe.display()
                    ));
                }
                return Err(e);
            }
        };
        let u = Upgrade {
            pid,
            started: Instant::now(),
            stage: Stage::Starting,
            deadline: Instant::now() + PREPARE_TIMEOUT,
            exe,
            conf,
            reply,
            sockets,
        };
        if kind == Kind::Upgrade {
            u.info(&format!(
                "started new worker pid {pid} from {}",
                u.exe.display()
            ));
        }
        if !prime {
            // Nobody else serves: this is the worker, from its start.
            self.current = Some(pid);
        }
        self.upgrade = Some((u, kind));
        Ok(pid)
    }

    fn spawn(&mut self, exe: &Path, conf: &Path, prime: bool) -> std::io::Result<u32> {
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("--worker").arg("-u");
        if prime {
            cmd.arg("--prime");
        }
        let supervisor = std::process::id();
        cmd.arg("-c")
            .arg(conf)
            .env(CONTROL_ENV, &self.setup.control)
            .env(SUPERVISOR_PID_ENV, supervisor.to_string())
            .env(BUILD_ENV, BUILD)
            .stdin(Stdio::null());
        let parent = libc::pid_t::try_from(supervisor).unwrap_or(0);
        // SAFETY: runs in the child between fork and exec, and only makes system calls.
        unsafe {
            cmd.pre_exec(move || {
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the stable process is gone"));
                }
                // A reload or a log reopen passed on before the worker listens for them
                // must not kill it (their default action): ignored until it does.
                for sig in [libc::SIGHUP, libc::SIGUSR1, libc::SIGQUIT] {
                    libc::signal(sig, libc::SIG_IGN);
                }
                Ok(())
            });
        }
        // The child is reaped through its pidfd (see `watch`), never through `Child`.
        let pid = cmd.spawn()?.id();
        self.watch(pid);
        log::info!("started worker pid {pid} from {}", exe.display());
        Ok(pid)
    }

    /// Tracks worker `pid` until it exits, then reaps it and reports the exit.
    fn watch(&mut self, pid: u32) {
        self.alive.insert(pid);
        let events = self.setup.events.clone();
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = events.send(Event::Exited(pid, Err(e)));
                return;
            }
        };
        tokio::spawn(async move {
            let status = match exited(pidfd).await {
                Ok(()) => loop {
                    match reap(pid) {
                        Ok(Some(s)) => break Ok(s),
                        Ok(None) => tokio::time::sleep(Duration::from_millis(5)).await,
                        Err(e) => break Err(e),
                    }
                },
                Err(e) => Err(e),
            };
            let _ = events.send(Event::Exited(pid, status));
        });
    }

    fn forward_hup(&self) {
        let what = "SIGHUP: reloading the config";
        match self.current.or(self.upgrade.as_ref().map(|(u, _)| u.pid)) {
            Some(pid) => {
                log::info!("{what} (worker pid {pid})");
                kill(pid, libc::SIGHUP);
            }
            None => log::warn!("{what}: no worker is running"),
        }
    }

    fn stop(&mut self, sig: libc::c_int, name: &str) {
        log::info!("{name} received; stopping {} worker(s)", self.alive.len());
        self.stopping = true;
        self.restart_at = None;
        let why = format!("{name} received; the gateway is stopping");
        if let Some((u, _)) = self.upgrade.take() {
            if let Some(r) = &u.reply {
                r.error(&why);
            }
        }
        if let Some(r) = self.reexec.take().and_then(|r| r.reply) {
            r.error(&why);
        }
        for pid in &self.alive {
            kill(*pid, sig);
        }
        // New connections are refused from now on, not queued for nobody.
        self.setup.sockets.close_all();
    }

    fn next_wake(&self) -> Option<Instant> {
        let upgrade = self.upgrade.as_ref().map(|(u, _)| match u.stage {
            // Poll for the new worker's upgrade socket.
            Stage::Prepared => (Instant::now() + Duration::from_millis(10)).min(u.deadline),
            _ => u.deadline,
        });
        match (upgrade, self.restart_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_wake(&mut self) {
        let now = Instant::now();
        if self.restart_at.is_some_and(|t| t <= now) {
            self.restart_at = None;
            self.restart();
        }
        let Some((u, _)) = &mut self.upgrade else {
            return;
        };
        if u.stage == Stage::Prepared && someone_listens_on(&self.setup.upgrade_sock) {
            u.stage = Stage::Sending;
            u.deadline = now + SOCKET_TIMEOUT;
            let (pid, path) = (u.pid, self.setup.upgrade_sock.clone());
            let events = self.setup.events.clone();
            match self.setup.sockets.duplicate() {
                Ok(sockets) => {
                    // A thread of its own, gone when done: no thread lingers to take a
                    // signal meant for the stable process (see `exec`).
                    std::thread::spawn(move || {
                        let sent = hand_over(&sockets, &path);
                        let _ = events.send(Event::Sent(pid, sent));
                    });
                }
                Err(e) => {
                    let _ = events.send(Event::Sent(pid, Err(e.to_string())));
                }
            }
            return;
        }
        if u.deadline > now {
            return;
        }
        let Some((u, kind)) = self.upgrade.take() else {
            return;
        };
        match u.stage {
            Stage::Starting | Stage::Prepared | Stage::Sending => {
                kill(u.pid, libc::SIGKILL);
                let why = match u.stage {
                    Stage::Starting => format!(
                        "the new worker did not load its config within {PREPARE_TIMEOUT:?}"
                    ),
                    Stage::Prepared => format!(
                        "the new worker did not wait for the sockets on {} within {SOCKET_TIMEOUT:?}",
                        self.setup.upgrade_sock.display()
                    ),
                    _ => format!(
                        "the listening sockets could not be handed to the new worker within {SOCKET_TIMEOUT:?}"
                    ),
                };
                self.fail(u, kind, &why);
            }
            Stage::HandedOver if self.serves_beside(u.pid) => {
                // It accepts on the same sockets as the serving worker: let it drain.
                kill(u.pid, libc::SIGTERM);
                self.fail(
                    u,
                    kind,
                    &format!("the new worker did not report ready within {READY_TIMEOUT:?} and was told to stop; check its log"),
                );
            }
            Stage::HandedOver => {
                // Nobody else serves: it is the worker, ready or not.
                self.current = Some(u.pid);
                self.setup.exe = u.exe.clone();
                self.setup.conf = u.conf.clone();
                log::error!("worker pid {} did not report ready within {READY_TIMEOUT:?}; check its log and /ready", u.pid);
                if let Some(r) = &u.reply {
                    r.error(&format!("the new worker did not report ready within {READY_TIMEOUT:?}; check its log and /ready"));
                }
            }
        }
    }

    /// True when a worker other than `pid` serves.
    fn serves_beside(&self, pid: u32) -> bool {
        self.current.is_some_and(|c| c != pid)
    }

    /// A start failed: report it; the serving worker, if any, is untouched.
    fn fail(&mut self, u: Upgrade, kind: Kind, why: &str) {
        if self.current == Some(u.pid) {
            self.current = None;
        }
        // Sockets bound for this worker's config would only queue connections for nobody.
        self.setup.sockets.close(&u.sockets.added);
        match kind {
            Kind::Upgrade => {
                let why = format!("{why}; the running gateway is untouched");
                log::error!("upgrade failed: {why}");
                if let Some(r) = &u.reply {
                    r.error(&why);
                }
            }
            Kind::First if !self.ever_ready => {
                log::error!("{why}; exiting");
                self.exit_code = Some(1);
            }
            Kind::First | Kind::Restart => {
                log::error!("{why}; trying again in {:?}", self.restart_pause);
                self.schedule_restart();
            }
        }
        // A failed upgrade that nobody serves behind is a worker to replace.
        if kind == Kind::Upgrade && self.current.is_none() && !self.stopping {
            self.schedule_restart();
        }
    }

    fn restart(&mut self) {
        if self.stopping || self.current.is_some() {
            return;
        }
        if self.upgrade.is_some() || self.reexec.is_some() || self.exec_ready.is_some() {
            // Whatever is under way may bring a worker; look again shortly.
            self.restart_at = Some(Instant::now() + Duration::from_millis(200));
            return;
        }
        let (exe, conf) = (self.setup.exe.clone(), self.setup.conf.clone());
        if let Err(e) = self.start(exe, conf, Kind::Restart, None, SocketPlan::default()) {
            log::error!(
                "cannot start a worker: {e}; trying again in {:?}",
                self.restart_pause
            );
            self.schedule_restart();
        }
    }

    fn schedule_restart(&mut self) {
        self.restart_at = Some(Instant::now() + self.restart_pause);
        self.restart_pause = (self.restart_pause * 2).min(MAX_RESTART_PAUSE);
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Control(request, reply) => self.on_request(request, reply),
            Event::Exited(pid, status) => self.on_exit(pid, status),
            Event::Sent(pid, result) => self.on_sent(pid, result),
            Event::Preflight(result) => self.on_preflight(result),
        }
    }

    fn on_request(&mut self, request: Request, reply: Option<Reply>) {
        match request {
            Request::Status => {
                let pids: Vec<String> = self.alive.iter().map(|p| p.to_string()).collect();
                let current = self.current.map_or("-".to_owned(), |p| p.to_string());
                let (version, commit) = crate::build();
                if let Some(r) = reply {
                    r.ok(&format!(
                        "supervisor={} current={current} workers={} version={version} commit={commit}",
                        std::process::id(),
                        pids.join(","),
                    ));
                }
            }
            Request::Upgrade { exe, conf } => {
                let exe = exe.unwrap_or_else(|| self.setup.exe.clone());
                self.begin_upgrade(exe, conf, reply, Kind::Upgrade);
            }
            Request::Reexec { exe, conf } => {
                let exe = exe.unwrap_or_else(|| self.setup.exe.clone());
                self.begin_reexec(exe, conf, reply);
            }
            Request::ReloadUpgrade(pid) if Some(pid) == self.current => {
                log::info!("worker pid {pid}: discovered routes changed and reload is `upgrade`");
                let (exe, conf) = (self.setup.exe.clone(), self.setup.conf.clone());
                self.begin_upgrade(exe, conf, None, Kind::Upgrade);
            }
            Request::ReloadUpgrade(_) => {}
            Request::Prepared(pid) => {
                if let Some((u, _)) = self.upgrade.as_mut().filter(|(u, _)| u.pid == pid) {
                    u.info(&format!(
                        "worker pid {pid} loaded its config and routes; handing it the listening sockets"
                    ));
                    u.stage = Stage::Prepared;
                    u.deadline = Instant::now() + SOCKET_TIMEOUT;
                }
            }
            Request::Ready(pid) => self.on_ready(pid),
            Request::Draining(report) => {
                // Only a live worker that no longer serves drains; anything else is stale.
                if self.alive.contains(&report.pid) && Some(report.pid) != self.current {
                    self.drains.insert(report.pid, report);
                }
            }
            Request::Drains => {
                if let Some(r) = reply {
                    let fields: Vec<String> =
                        self.drains.values().map(DrainReport::field).collect();
                    r.ok(&fields.join(" "));
                }
            }
        }
    }

    /// Why a new upgrade cannot begin now, if it cannot.
    fn busy(&self) -> Option<String> {
        if self.stopping {
            return Some("the gateway is stopping".to_owned());
        }
        if let Some((u, kind)) = &self.upgrade {
            return Some(match kind {
                Kind::Upgrade => format!(
                    "an upgrade is already in progress (new worker pid {}); wait for it to finish, then try again",
                    u.pid
                ),
                Kind::First | Kind::Restart => format!(
                    "worker pid {} is still starting; try again once /ready answers 200",
                    u.pid
                ),
            });
        }
        if let Some(r) = self.reexec.as_ref().or(self.exec_ready.as_ref()) {
            return Some(format!(
                "an upgrade is already in progress (re-executing the stable process from {}); wait for it to finish, then try again",
                r.exe.display()
            ));
        }
        None
    }

    fn begin_upgrade(&mut self, exe: PathBuf, conf: PathBuf, reply: Option<Reply>, kind: Kind) {
        let refuse = |why: &str| {
            log::warn!("upgrade refused: {why}");
            if let Some(r) = &reply {
                r.error(why);
            }
        };
        if let Some(why) = self.busy() {
            return refuse(&why);
        }
        // A listener added to the file needs its socket before the worker asks for it.
        let planned = match Config::load_without_secrets(&conf.to_string_lossy()) {
            Ok(c) => self
                .setup
                .sockets
                .ensure(&c.gateway)
                .map(|added| SocketPlan {
                    added,
                    keep: Some(keys_for(&c.gateway)),
                })
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("config {}: {e}", conf.display())),
        };
        crate::process::return_free_memory();
        let plan = match planned {
            Ok(plan) => plan,
            Err(e) => return refuse(&format!("{e}; the running gateway is untouched")),
        };
        if let Err(e) = self.start(exe.clone(), conf, kind, reply, plan) {
            log::warn!(
                "upgrade refused: cannot start {}: {e}; the running gateway is untouched",
                exe.display()
            );
        }
    }

    fn on_sent(&mut self, pid: u32, result: Result<(), String>) {
        let Some((u, _)) = self.upgrade.as_mut().filter(|(u, _)| u.pid == pid) else {
            return;
        };
        match result {
            Ok(()) => {
                u.info(&format!("worker pid {pid} has the listening sockets"));
                u.stage = Stage::HandedOver;
                u.deadline = Instant::now() + READY_TIMEOUT;
            }
            Err(e) => {
                kill(pid, libc::SIGKILL);
                if let Some((u, kind)) = self.upgrade.take() {
                    self.fail(
                        u,
                        kind,
                        &format!("cannot hand the listening sockets to the new worker: {e}"),
                    );
                }
            }
        }
    }

    fn on_ready(&mut self, pid: u32) {
        let Some((u, kind)) = self.upgrade.take_if(|(u, _)| u.pid == pid) else {
            return;
        };
        let old = self.current.replace(pid).filter(|&old| old != pid);
        if let Some(old) = old {
            // It stops accepting and drains; the sockets stay open in the new worker.
            kill(old, libc::SIGTERM);
        }
        self.setup.exe = u.exe.clone();
        self.setup.conf = u.conf.clone();
        self.ever_ready = true;
        self.restart_pause = FIRST_RESTART_PAUSE;
        if let Some(keep) = &u.sockets.keep {
            for key in self.setup.sockets.retain(keep) {
                log::info!("closed the listening socket on {key}: the config no longer has it");
            }
        }
        let took = u.started.elapsed().as_millis();
        let text = match old {
            Some(old) => format!(
                "worker pid {pid} serves, {took} ms after it started; worker pid {old} closes its connections over grace_period_seconds"
            ),
            None => format!("worker pid {pid} serves, {took} ms after it started"),
        };
        match kind {
            Kind::Upgrade => log::info!("upgrade done: {text}"),
            Kind::First => log::info!("worker pid {pid} is ready"),
            Kind::Restart => log::info!("replacement worker pid {pid} is ready"),
        }
        if let Some(r) = &u.reply {
            r.ok(&text);
        }
    }

    fn on_exit(&mut self, pid: u32, status: std::io::Result<ExitStatus>) {
        self.alive.remove(&pid);
        self.drains.remove(&pid);
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        if let Some((u, kind)) = self.upgrade.take_if(|(u, _)| u.pid == pid) {
            if !self.stopping {
                self.fail(
                    u,
                    kind,
                    &format!("the new worker exited ({status}) before it served"),
                );
            }
            return;
        }
        if Some(pid) != self.current {
            log::info!("worker pid {pid} has finished ({status})");
            return;
        }
        self.current = None;
        if self.stopping {
            log::info!("worker pid {pid} has stopped ({status})");
        } else {
            log::error!(
                "worker pid {pid} exited unexpectedly ({status}); starting a new one in {:?}",
                self.restart_pause
            );
            self.schedule_restart();
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
