//! The workers under the stable process: starting them, replacing them on an upgrade
//! (see [`super::upgrade`]) or when one dies, and stopping them.

use super::control::Request;
use super::upgrade::{
    Event, Reply, Stage, Upgrade, PREPARE_TIMEOUT, READY_TIMEOUT, SOCKET_TIMEOUT,
};
use super::CONTROL_ENV;
use crate::signals::{listen, next, someone_listens_on};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::signal::unix::SignalKind;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The pause before replacing a worker that died, doubled after each death in a row.
const FIRST_RESTART_PAUSE: Duration = Duration::from_secs(1);
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(30);

/// The supervisor's state.
pub struct Workers {
    exe: PathBuf,
    conf: PathBuf,
    control: PathBuf,
    upgrade_sock: PathBuf,
    events: mpsc::UnboundedSender<Event>,
    alive: HashSet<u32>,
    current: Option<u32>,
    ever_ready: bool,
    upgrade: Option<Upgrade>,
    stopping: bool,
    restart_at: Option<Instant>,
    restart_pause: Duration,
    exit_code: Option<i32>,
}

fn kill(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: sending a signal has no memory effects on this process.
    unsafe {
        libc::kill(pid, sig);
    }
}

impl Workers {
    /// The supervisor for workers started from `exe` with config `conf`.
    pub fn new(
        exe: PathBuf,
        conf: PathBuf,
        control: PathBuf,
        upgrade_sock: PathBuf,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        Workers {
            exe,
            conf,
            control,
            upgrade_sock,
            events,
            alive: HashSet::new(),
            current: None,
            ever_ready: false,
            upgrade: None,
            stopping: false,
            restart_at: None,
            restart_pause: FIRST_RESTART_PAUSE,
            exit_code: None,
        }
    }

    /// Starts the first worker and supervises until every worker is gone after a stop;
    /// returns the process exit code.
    pub async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event>) -> i32 {
        let mut hup = listen(SignalKind::hangup(), "SIGHUP");
        let mut term = listen(SignalKind::terminate(), "SIGTERM");
        let mut int = listen(SignalKind::interrupt(), "SIGINT");
        let mut quit = listen(SignalKind::quit(), "SIGQUIT");
        let mut usr1 = listen(SignalKind::user_defined1(), "SIGUSR1");
        match self.spawn(&self.exe.clone(), &self.conf.clone(), false) {
            Ok(pid) => self.current = Some(pid),
            Err(e) => {
                log::error!("cannot start the worker: {e}");
                return 1;
            }
        }
        loop {
            if let Some(code) = self.exit_code {
                return code;
            }
            if self.stopping && self.alive.is_empty() {
                log::info!("every worker has stopped; exiting");
                return 0;
            }
            let wake = self.next_wake();
            tokio::select! {
                _ = next(&mut hup) => self.forward_to_current(libc::SIGHUP, "SIGHUP: reloading the config"),
                _ = next(&mut term) => self.stop(libc::SIGTERM, "SIGTERM"),
                _ = next(&mut int) => self.stop(libc::SIGINT, "SIGINT"),
                _ = next(&mut usr1) => {
                    for pid in &self.alive {
                        kill(*pid, libc::SIGUSR1);
                    }
                }
                _ = next(&mut quit) => log::error!(
                    "SIGQUIT received by the stable process (pid {}); it is not an upgrade here and is ignored. To upgrade, run `snigate upgrade -c {}`",
                    std::process::id(),
                    self.conf.display()
                ),
                Some(event) = events.recv() => self.on_event(event),
                _ = sleep_until(wake) => self.on_wake(),
            }
        }
    }

    fn spawn(&mut self, exe: &Path, conf: &Path, upgrade: bool) -> std::io::Result<u32> {
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("--worker");
        if upgrade {
            cmd.arg("-u");
        }
        cmd.arg("-c")
            .arg(conf)
            .env(CONTROL_ENV, &self.control)
            .stdin(Stdio::null());
        let supervisor = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
        // SAFETY: runs in the child between fork and exec, and only makes system calls.
        unsafe {
            cmd.pre_exec(move || {
                // If this process dies, however it dies, its workers stop (they drain).
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != supervisor {
                    return Err(std::io::Error::other("the stable process is gone"));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("the worker exited at once"))?;
        self.alive.insert(pid);
        let events = self.events.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = events.send(Event::Exited(pid, status));
        });
        log::info!("started worker pid {pid} from {}", exe.display());
        Ok(pid)
    }

    fn forward_to_current(&self, sig: libc::c_int, what: &str) {
        match self.current {
            Some(pid) => {
                log::info!("{what} (worker pid {pid})");
                kill(pid, sig);
            }
            None => log::warn!("{what}: no worker is running"),
        }
    }

    fn stop(&mut self, sig: libc::c_int, name: &str) {
        log::info!("{name} received; stopping {} worker(s)", self.alive.len());
        self.stopping = true;
        self.restart_at = None;
        if let Some(u) = self.upgrade.take() {
            if let Some(r) = &u.reply {
                r.error(&format!("{name} received; the gateway is stopping"));
            }
        }
        for pid in &self.alive {
            kill(*pid, sig);
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let upgrade = self.upgrade.as_ref().map(|u| match u.stage {
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
        let Some(u) = &mut self.upgrade else {
            return;
        };
        if u.stage == Stage::Prepared && someone_listens_on(&self.upgrade_sock) {
            match self.current {
                Some(old) => {
                    u.info(&format!(
                        "worker pid {old} hands its listening sockets over to worker pid {}",
                        u.pid
                    ));
                    kill(old, libc::SIGQUIT);
                }
                None => u.info("no worker was serving; the new one takes the sockets itself"),
            }
            u.stage = Stage::HandedOver;
            u.deadline = now + READY_TIMEOUT;
            return;
        }
        if u.deadline > now {
            return;
        }
        let Some(u) = self.upgrade.take() else {
            return;
        };
        match u.stage {
            Stage::Starting | Stage::Prepared => {
                kill(u.pid, libc::SIGKILL);
                let why = if u.stage == Stage::Starting {
                    format!("the new worker did not load its config within {PREPARE_TIMEOUT:?}")
                } else {
                    format!(
                        "the new worker did not wait for the sockets on {} within {SOCKET_TIMEOUT:?}",
                        self.upgrade_sock.display()
                    )
                };
                self.fail(u, &format!("{why}; the running gateway is untouched"));
            }
            Stage::HandedOver => {
                // It holds the sockets now: it is the worker, ready or not.
                self.current = Some(u.pid);
                self.exe = u.exe.clone();
                self.conf = u.conf.clone();
                self.fail(
                    u,
                    &format!("the new worker took the sockets but did not report ready within {READY_TIMEOUT:?}; check its log and /ready"),
                );
            }
        }
    }

    fn fail(&self, u: Upgrade, why: &str) {
        log::error!("upgrade failed: {why}");
        if let Some(r) = &u.reply {
            r.error(why);
        }
    }

    fn restart(&mut self) {
        if self.stopping {
            return;
        }
        let (exe, conf) = (self.exe.clone(), self.conf.clone());
        match self.spawn(&exe, &conf, false) {
            Ok(pid) => self.current = Some(pid),
            Err(e) => {
                log::error!(
                    "cannot start a worker: {e}; trying again in {:?}",
                    self.restart_pause
                );
                self.schedule_restart();
            }
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
        }
    }

    fn on_request(&mut self, request: Request, reply: Option<Reply>) {
        match request {
            Request::Status => {
                let mut pids: Vec<String> = self.alive.iter().map(|p| p.to_string()).collect();
                pids.sort();
                let current = self.current.map_or("-".to_owned(), |p| p.to_string());
                if let Some(r) = reply {
                    r.ok(&format!(
                        "supervisor={} current={current} workers={}",
                        std::process::id(),
                        pids.join(",")
                    ));
                }
            }
            Request::Upgrade { exe, conf } => self.begin_upgrade(exe, conf, reply),
            Request::ReloadUpgrade(pid) if Some(pid) == self.current => {
                log::info!("worker pid {pid}: discovered routes changed and reload is `upgrade`");
                let (exe, conf) = (self.exe.clone(), self.conf.clone());
                self.begin_upgrade(exe, conf, None);
            }
            Request::ReloadUpgrade(_) => {}
            Request::Prepared(pid) => {
                if let Some(u) = self.upgrade.as_mut().filter(|u| u.pid == pid) {
                    u.info(&format!(
                        "worker pid {pid} loaded its config and routes; waiting for it to ask for the sockets"
                    ));
                    u.stage = Stage::Prepared;
                    u.deadline = Instant::now() + SOCKET_TIMEOUT;
                }
            }
            Request::Ready(pid) => self.on_ready(pid),
        }
    }

    fn begin_upgrade(&mut self, exe: PathBuf, conf: PathBuf, reply: Option<Reply>) {
        let refuse = |why: &str| {
            log::warn!("upgrade refused: {why}");
            if let Some(r) = &reply {
                r.error(why);
            }
        };
        if self.stopping {
            return refuse("the gateway is stopping");
        }
        if let Some(u) = &self.upgrade {
            return refuse(&format!(
                "an upgrade is already in progress (new worker pid {})",
                u.pid
            ));
        }
        match self.spawn(&exe, &conf, true) {
            Ok(pid) => {
                let u = Upgrade {
                    pid,
                    stage: Stage::Starting,
                    deadline: Instant::now() + PREPARE_TIMEOUT,
                    exe,
                    conf,
                    reply,
                };
                u.info(&format!(
                    "started new worker pid {pid} from {}",
                    u.exe.display()
                ));
                self.upgrade = Some(u);
            }
            Err(e) => refuse(&format!(
                "cannot start {}: {e}; the running gateway is untouched",
                exe.display()
            )),
        }
    }

    fn on_ready(&mut self, pid: u32) {
        if self.upgrade.as_ref().is_some_and(|u| u.pid == pid) {
            let Some(u) = self.upgrade.take() else {
                return;
            };
            let old = self.current.replace(pid);
            self.exe = u.exe.clone();
            self.conf = u.conf.clone();
            self.ever_ready = true;
            self.restart_pause = FIRST_RESTART_PAUSE;
            let text = match old {
                Some(old) => format!(
                    "worker pid {pid} serves; worker pid {old} closes its connections over grace_period_seconds"
                ),
                None => format!("worker pid {pid} serves"),
            };
            log::info!("upgrade done: {text}");
            if let Some(r) = &u.reply {
                r.ok(&text);
            }
        } else if Some(pid) == self.current {
            if !self.ever_ready {
                log::info!("worker pid {pid} is ready");
            }
            self.ever_ready = true;
            self.restart_pause = FIRST_RESTART_PAUSE;
        }
    }

    fn on_exit(&mut self, pid: u32, status: std::io::Result<ExitStatus>) {
        self.alive.remove(&pid);
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        if self.upgrade.as_ref().is_some_and(|u| u.pid == pid) {
            let Some(u) = self.upgrade.take() else {
                return;
            };
            if u.stage == Stage::HandedOver {
                self.fail(u, &format!("the new worker ({status}) died after it took the listening sockets; starting a fresh worker"));
                self.current = None;
                self.schedule_restart();
            } else {
                self.fail(u, &format!("the new worker exited ({status}) before it served; the running gateway is untouched"));
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
        } else if !self.ever_ready {
            log::error!("the worker exited ({status}) before it served; exiting");
            self.exit_code = Some(1);
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
