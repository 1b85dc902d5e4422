//! Daemon mode and the pid file of the stable process.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Detaches from the terminal: forks, the parent exits at once, and the child starts a
/// new session with stdin from /dev/null and stdout and stderr to `error_log` (appended)
/// or /dev/null. Call before any thread is started.
pub fn detach(error_log: Option<&str>) -> io::Result<()> {
    let out = match error_log {
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?,
        None => std::fs::OpenOptions::new().write(true).open("/dev/null")?,
    };
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: no other thread runs yet (the caller's contract), so the child may go on
    // using the allocator and std; the parent only calls _exit.
    match unsafe { libc::fork() } {
        -1 => return Err(io::Error::last_os_error()),
        0 => {}
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: plain system calls on descriptors this function owns.
    unsafe {
        if libc::setsid() == -1 {
            return Err(io::Error::last_os_error());
        }
        for (from, to) in [
            (null.as_raw_fd(), 0),
            (out.as_raw_fd(), 1),
            (out.as_raw_fd(), 2),
        ] {
            if libc::dup2(from, to) == -1 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// The pid file: written when the stable process starts, removed when it exits (if it
/// still names this process).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's pid to `path`, atomically.
    pub fn write(path: &Path) -> io::Result<PidFile> {
        let tmp = path.with_extension("pid.tmp");
        std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
        std::fs::rename(&tmp, path)?;
        Ok(PidFile {
            path: path.to_owned(),
        })
    }

    /// The pid file this process wrote before it re-executed itself (same pid): removed
    /// on exit, as if written now.
    pub fn adopt(path: &Path) -> PidFile {
        PidFile {
            path: path.to_owned(),
        }
    }

    /// The pid a pid file names, if it names a live process.
    pub fn read_live(path: &Path) -> Result<u32, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "no running snigate found: cannot read pid file {}: {e}; start one with `snigate -c FILE`",
                path.display()
            )
        })?;
        let pid: u32 = text
            .trim()
            .parse()
            .map_err(|_| format!("pid file {} does not hold a pid", path.display()))?;
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(format!(
                "no running snigate found: pid file {} names pid {pid}, which is not running",
                path.display()
            ));
        }
        Ok(pid)
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|t| t.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
