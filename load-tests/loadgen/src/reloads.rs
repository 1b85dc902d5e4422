//! Reloads during an open loop, driven from inside the load generator: every `every`,
//! the config file is replaced by the next of its alternates and the gateway gets a
//! SIGHUP. A replacement is a hard link and a rename (no bytes copied) and the signal is
//! one system call, so the load side's core sees nothing of it. A shell loop of `cp`,
//! `kill` and `sleep` forked several processes on that core every time, and the latency
//! the load side measured rose with every reload even for a 10-route file.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What to reload, and how often.
#[derive(Debug, Clone)]
pub struct Reloads {
    /// The process that gets SIGHUP.
    pub pid: i32,
    /// The config file the gateway reads.
    pub config: PathBuf,
    /// Files the config is replaced by, in turn (on the config's filesystem).
    pub alternates: Vec<PathBuf>,
    /// Time between reloads.
    pub every: Duration,
}

/// Replaces `config` by `with` at once: a hard link beside it, renamed over it.
fn install(with: &Path, config: &Path) -> std::io::Result<()> {
    let mut tmp = config.as_os_str().to_owned();
    tmp.push(".next");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    std::fs::hard_link(with, &tmp)?;
    std::fs::rename(&tmp, config)
}

/// Starts reloading after `after`, until `until` has passed since now. The thread returns
/// how many reloads it asked for.
pub fn spawn(r: Reloads, after: Duration, until: Duration) -> JoinHandle<std::io::Result<u64>> {
    std::thread::spawn(move || {
        let start = Instant::now();
        std::thread::sleep(after);
        let mut sent = 0u64;
        let mut next = r.alternates.iter().cycle();
        while start.elapsed() < until {
            if let Some(with) = next.next() {
                install(with, &r.config)?;
            }
            // SAFETY: kill(2) with a pid and a signal number.
            if unsafe { libc::kill(r.pid, libc::SIGHUP) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            sent += 1;
            // Never past the end: the run waits for this thread.
            std::thread::sleep(r.every.min(until.saturating_sub(start.elapsed())));
        }
        Ok(sent)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_takes_each_alternate_in_turn() {
        let dir = std::env::temp_dir().join(format!("loadgen-reloads-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, config) = (dir.join("a"), dir.join("b"), dir.join("config"));
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        std::fs::write(&config, "first").unwrap();
        install(&b, &config).unwrap();
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "b");
        install(&a, &config).unwrap();
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "a");
        assert_eq!(
            std::fs::read_to_string(&b).unwrap(),
            "b",
            "alternates are untouched"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
