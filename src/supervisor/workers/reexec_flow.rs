//! The stable process re-executing itself, as the workers' supervisor sees it: checking
//! the new binary, the exec (see [`crate::supervisor::reexec`]), and, in the new image,
//! taking the workers over and finishing the upgrade.

use super::{Kind, Workers};
use crate::process::{block_handled_signals, HandledSignals};
use crate::supervisor::control::Reply;
use crate::supervisor::handoff::{CarriedWorker, Handoff, FORMAT};
use crate::supervisor::reexec;
use crate::supervisor::upgrade::{Event, Reexec};
use crate::BUILD;
use std::path::{Path, PathBuf};

impl Workers {
    /// Re-executes the stable process from the binary `checked` names (its check passed).
    /// The handled signals are blocked first, and those already delivered are served
    /// here, so that none is lost to the exec.
    pub(super) async fn exec(&mut self, checked: Reexec, signals: &mut HandledSignals) {
        block_handled_signals(true);
        for sig in signals.pending().await {
            self.on_signal(sig);
        }
        let fail = |why: &str| {
            log::error!("upgrade failed: {why}");
            if let Some(reply) = &checked.reply {
                reply.error(why);
            }
        };
        if self.stopping || self.upgrade.is_some() {
            block_handled_signals(false);
            return fail(if self.stopping {
                "the gateway is stopping"
            } else {
                "a worker started during the check; the running gateway is untouched, try again"
            });
        }
        let handoff = self.handoff(&checked.exe, &checked.conf, checked.reply.as_ref());
        let e = reexec::exec(&checked.exe, &checked.conf, &handoff);
        fail(&format!(
            "cannot execute {}: {e}; the running stable process keeps serving, untouched",
            checked.exe.display()
        ));
        if self.current.is_none() && self.upgrade.is_none() {
            self.schedule_restart();
        }
    }

    /// Takes over the workers the old image ran, then replaces the serving one from this
    /// binary, as the re-exec's caller asked.
    pub(super) fn resume(
        &mut self,
        workers: Vec<CarriedWorker>,
        ever_ready: bool,
        reply: Option<Reply>,
        from_build: &str,
    ) {
        self.ever_ready = ever_ready;
        for w in workers {
            self.watch(w.pid);
            if w.current {
                self.current = Some(w.pid);
            }
        }
        let text = format!(
            "the stable process (pid {}) re-executed: it ran snigate {from_build}, and now runs {} ({}); it keeps its {} worker(s) and listening sockets",
            std::process::id(),
            self.setup.exe.display(),
            BUILD,
            self.alive.len()
        );
        log::info!("upgrade: {text}");
        if let Some(r) = &reply {
            r.info(&text);
        }
        let (exe, conf) = (self.setup.exe.clone(), self.setup.conf.clone());
        let kind = if self.current.is_some() {
            Kind::Upgrade
        } else {
            Kind::Restart
        };
        self.begin_upgrade(exe, conf, reply, kind);
        if self.upgrade.is_none() && self.current.is_none() {
            // The old image had a restart pending, and this one could not start a worker.
            self.schedule_restart();
        }
    }
    pub(super) fn begin_reexec(&mut self, exe: PathBuf, conf: PathBuf, reply: Option<Reply>) {
        if let Some(why) = self.busy() {
            log::warn!("upgrade refused: {why}");
            if let Some(r) = &reply {
                r.error(&why);
            }
            return;
        }
        let text = format!(
            "checking that {} starts and accepts {} before the stable process (pid {}) re-executes it",
            exe.display(),
            conf.display(),
            std::process::id()
        );
        log::info!("upgrade: {text}");
        if let Some(r) = &reply {
            r.info(&text);
        }
        let handoff = self.handoff(&exe, &conf, reply.as_ref());
        let events = self.setup.events.clone();
        let (check_exe, check_conf) = (exe.clone(), conf.clone());
        // A thread of its own, gone when done (see `exec`).
        std::thread::spawn(move || {
            let result = reexec::preflight(&check_exe, &check_conf, &handoff);
            let _ = events.send(Event::Preflight(result));
        });
        self.reexec = Some(Reexec { exe, conf, reply });
    }

    pub(super) fn on_preflight(&mut self, result: Result<String, String>) {
        let Some(r) = self.reexec.take() else {
            return;
        };
        let summary = match result {
            Ok(s) => s,
            Err(why) => {
                let why = format!("{why}; the running gateway is untouched");
                log::error!("upgrade failed: {why}");
                if let Some(reply) = &r.reply {
                    reply.error(&why);
                }
                return;
            }
        };
        let text = format!(
            "{} checked the config ({summary}); re-executing the stable process (pid {}) from it",
            r.exe.display(),
            std::process::id()
        );
        log::info!("upgrade: {text}");
        if let Some(reply) = &r.reply {
            reply.info(&text);
        }
        // The exec itself runs from the main loop, which can serve pending signals first.
        self.exec_ready = Some(r);
    }

    /// What a re-exec carries.
    pub(super) fn handoff(&self, exe: &Path, conf: &Path, reply: Option<&Reply>) -> Handoff {
        Handoff {
            format: FORMAT,
            exe: exe.to_owned(),
            conf: conf.to_owned(),
            pid_file: self.setup.pid_file.clone(),
            upgrade_sock: self.setup.upgrade_sock.clone(),
            control_fd: self.setup.control_fd,
            listeners: self.setup.sockets.raw(),
            workers: self
                .alive
                .iter()
                .map(|&pid| CarriedWorker {
                    pid,
                    current: Some(pid) == self.current,
                })
                .collect(),
            ever_ready: self.ever_ready,
            reply_fd: reply.map(Reply::as_raw_fd),
            from_build: BUILD.to_owned(),
        }
    }
}
