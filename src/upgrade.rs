//! The `upgrade` reload mode for discovered routes: start a new snigate with the same
//! arguments plus `-u` (it loads the state file just saved), then ask this process to
//! hand over its listening sockets (SIGQUIT).

use crate::discovery::service::UpgradeHook;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A hook that hands over to a new process, at most once per process.
pub fn hook() -> UpgradeHook {
    let fired = Arc::new(AtomicBool::new(false));
    Arc::new(move || {
        if fired.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut args: Vec<String> = std::env::args().skip(1).collect();
        if !args.iter().any(|a| a == "-u" || a == "--upgrade") {
            args.insert(0, "-u".to_owned());
        }
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                log::error!(
                    "cannot find the snigate binary for the upgrade: {e}; keeping the old routes"
                );
                fired.store(false, Ordering::SeqCst);
                return;
            }
        };
        match std::process::Command::new(exe).args(&args).spawn() {
            Ok(child) => {
                log::info!("started the new process (pid {}); handing over", child.id());
                // SAFETY: sending a signal to our own pid has no memory effects.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGQUIT);
                }
            }
            Err(e) => {
                log::error!("cannot start the new process: {e}; keeping the old routes");
                fired.store(false, Ordering::SeqCst);
            }
        }
    })
}
