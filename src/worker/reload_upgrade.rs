//! The `upgrade` reload mode for discovered routes: once the new routes are saved to the
//! state file, the worker asks the stable process for an upgrade, exactly as
//! `snigate upgrade` does; the new worker loads the state file and takes over.

use crate::discovery::service::UpgradeHook;
use crate::supervisor::control::{self, Request};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A hook that asks the stable process at `control` to replace this worker, at most once.
pub fn hook(control: Option<PathBuf>) -> UpgradeHook {
    let asked = Arc::new(AtomicBool::new(false));
    Arc::new(move || {
        let Some(socket) = &control else {
            log::error!(
                "reload is `upgrade`, but this worker has no stable process to ask; run the gateway as `snigate -c FILE`; keeping the old routes"
            );
            return;
        };
        if asked.swap(true, Ordering::SeqCst) {
            return;
        }
        let request = Request::ReloadUpgrade(std::process::id());
        if let Err(e) = control::tell(socket, &request) {
            log::error!(
                "cannot ask the stable process at {} for an upgrade: {e}; keeping the old routes",
                socket.display()
            );
            asked.store(false, Ordering::SeqCst);
        }
    })
}
