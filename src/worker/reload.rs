//! Reloading the config in place (SIGHUP). The file is checked as `snigate -t` checks it,
//! with the same result; an invalid file is logged with the same message and changes
//! nothing. What can change live (static routes, limits and timeouts, fallbacks) applies
//! to new connections at once; open connections keep what they started with. Everything
//! else needs `snigate upgrade`, and the log says so.
//!
//! A reload whose file changed only inside `gateway.routes` parses just the route items
//! whose text changed and keeps every other route as it is (see
//! [`snigate_core::config::reuse`]); any other change parses the whole file.

use crate::config::{Config, ConfigError, Reuse};
use crate::discovery::hub::Hub;
use crate::metrics;
use crate::proxy::Shared;
use snigate_core::config::changes::changes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Routes (in the new table or the one it replaced) from which a reload gives the heap's
/// free pages back after it. Measured by hand, two reloads of 1,000 routes left 2.4 MiB
/// more in the worker without this and 1.2 MiB with it; at 100,000 routes the parse alone
/// leaves tens of MiB. Below, what would come back is not worth the page faults that
/// reusing given-back pages costs the connections later.
const LARGE_TABLE: usize = 1_000;

/// How long reloads must have stopped before the heap is given back: memory given back
/// now costs the next reload page faults, so it waits out a burst of reloads and runs
/// once after the last.
const SETTLE: Duration = Duration::from_secs(2);

/// Reloads one worker's config file.
pub struct Reloader {
    path: PathBuf,
    /// What the worker runs now: the file it started with, plus what reloads applied.
    running: Mutex<snigate_core::config::Config>,
    /// What the next reload can reuse of the last file that loaded, as the file says it
    /// (settings that need an upgrade included).
    loaded: Mutex<Option<Reuse>>,
    hub: Arc<Hub>,
    shared: Arc<Shared>,
    /// Counts reloads, so that a pending trim can tell whether another came since.
    generation: Arc<AtomicU64>,
}

impl Reloader {
    /// A reloader for the worker started from `path` with `running`, and what a reload of
    /// that file can reuse.
    pub fn new(
        path: PathBuf,
        running: snigate_core::config::Config,
        reuse: Option<Reuse>,
        hub: Arc<Hub>,
        shared: Arc<Shared>,
    ) -> Self {
        Reloader {
            path,
            loaded: Mutex::new(reuse),
            running: Mutex::new(running),
            hub,
            shared,
            generation: Arc::default(),
        }
    }

    /// Gives the heap's free pages back once no reload has come for [`SETTLE`].
    fn trim_when_settled(&self) {
        let generation = self.generation.clone();
        let mine = generation.fetch_add(1, Ordering::SeqCst) + 1;
        let spawned = std::thread::Builder::new()
            .name("reload trim".into())
            .spawn(move || {
                std::thread::sleep(SETTLE);
                if generation.load(Ordering::SeqCst) == mine {
                    crate::process::at_idle_priority(crate::process::return_free_memory);
                }
            });
        if let Err(e) = spawned {
            log::debug!("no thread to give the heap back after a reload: {e}");
        }
    }

    /// The config `text` makes: from the last load's routes where only route items changed,
    /// else from the whole file; with how it was parsed, for the log. Keeps what the next
    /// reload can reuse.
    fn parse(
        &self,
        path: &str,
        text: &str,
    ) -> Result<(snigate_core::config::Config, String), ConfigError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reuse) = loaded.as_ref() {
            match reuse.reload(text) {
                Ok(r) => {
                    let how = format!(
                        "{} of {} route items parsed again",
                        r.parsed,
                        r.config.gateway.routes.len()
                    );
                    *loaded = Some(r.reuse);
                    return Ok((r.config, how));
                }
                Err(why) => log::info!("reload of {path} parses the whole file: {why}"),
            }
        }
        let (config, reuse) = Config::from_yaml_reusable(text)?.into_core();
        *loaded = match reuse {
            Some(Ok(reuse)) => Some(reuse),
            Some(Err(why)) => {
                if !config.gateway.routes.is_empty() {
                    log::info!("reload of {path}: the next one parses the whole file too: {why}");
                }
                None
            }
            None => None,
        };
        Ok((config, "the whole file parsed".to_owned()))
    }

    /// Reads the file again and applies what can be applied in place.
    pub fn reload(&self) {
        let started = std::time::Instant::now();
        let path = self.path.display().to_string();
        let failed = |e: &dyn std::fmt::Display| {
            log::error!("reload failed: config {path}: {e}; still serving the previous config");
            metrics::RELOADS.with_label_values(&["failed"]).inc();
        };
        let text = match snigate_core::config::read(&path) {
            Ok(text) => text,
            Err(e) => return failed(&e),
        };
        let (new, how) = match self.parse(&path, &text) {
            Ok(parsed) => parsed,
            Err(e) => return failed(&e),
        };
        drop(text);
        let read = started.elapsed();
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let c = changes(&running, &new);
        if !c.routes {
            // The file's routes are the running ones: what the next reload reuses points at
            // those, so that the copies made for this one are freed with it.
            let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(reuse) = loaded.as_mut() {
                reuse.share(&running.gateway.routes);
            }
        }
        // The routes replaced, freed only once the new ones serve and the reload is counted.
        let mut retired = None;
        if c.routes {
            match self.hub.set_static(new.gateway.routes.clone()) {
                Ok(conflicts) => {
                    for conflict in conflicts {
                        log::warn!("route conflict: {conflict}");
                    }
                }
                Err(e) => {
                    // The next reload parses the whole file again.
                    *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    return failed(&e);
                }
            }
            retired = Some(std::mem::replace(
                &mut running.gateway.routes,
                new.gateway.routes.clone(),
            ));
        }
        if c.limits || !c.fallbacks.is_empty() {
            for (old, new) in running
                .gateway
                .listeners
                .iter_mut()
                .zip(&new.gateway.listeners)
            {
                old.fallback = new.fallback.clone();
                old.fallback_send_proxy = new.fallback_send_proxy;
            }
            running.gateway.limits = new.gateway.limits;
            self.shared
                .set_live(running.gateway.limits, &running.gateway.listeners);
        }
        if !c.need_upgrade.is_empty() {
            log::warn!(
                "reload of {path}: {} changed; that needs `snigate upgrade -c {path}` and was not applied",
                c.need_upgrade.join(", ")
            );
        }
        let mut applied = Vec::new();
        if c.routes {
            applied.push(format!(
                "static routes ({} now)",
                running.gateway.routes.len()
            ));
        }
        if c.limits {
            applied.push("limits and timeouts".to_owned());
        }
        if !c.fallbacks.is_empty() {
            applied.push(format!("fallbacks of {}", c.fallbacks.join(", ")));
        }
        if applied.is_empty() {
            log::info!("reloaded {path} ({how}): nothing to apply in place");
        } else {
            log::info!(
                "reloaded {path} in {} ms ({} ms to read and check it, {how}): applied {} to new connections",
                started.elapsed().as_millis(),
                read.as_millis(),
                applied.join(", ")
            );
        }
        for w in &new.gateway.warnings {
            log::warn!("config {path}: {w}");
        }
        metrics::RELOADS.with_label_values(&["ok"]).inc();
        let replaced = retired.as_ref().map_or(0, |r| r.len());
        let large = new.gateway.routes.len().max(replaced) >= LARGE_TABLE;
        drop(running);
        drop(retired);
        drop(new);
        if large {
            // This thread freed the old table and the parse: its allocator heap hands its
            // empty pages back now, and they go back to the system once reloads settle.
            crate::process::release_thread_heap();
            self.trim_when_settled();
        }
    }
}
