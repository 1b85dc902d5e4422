//! The stable process re-executing itself, HAProxy's master style: the same pid runs the
//! binary now installed at its path, keeping its listening sockets, its control socket and
//! its workers (see [`super::handoff`]).
//!
//! An exec cannot be undone, so the new binary is first run as a child with the very
//! arguments the exec will get, plus `-t`: it must load the config and read the hand-off.
//! A binary that is missing, not executable, crashes on start or rejects the config fails
//! there, and the running stable process carries on, untouched.

use super::handoff::Handoff;
use super::upgrade::PREFLIGHT_TIMEOUT;
use crate::process::{block_handled_signals, set_cloexec_raw};
use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `exe -t -c conf --resume FD` with `handoff` in FD; returns what it printed, or why
/// `exe` cannot take over, in words for the operator. Blocks for up to
/// [`PREFLIGHT_TIMEOUT`].
pub fn preflight(exe: &Path, conf: &Path, handoff: &Handoff) -> Result<String, String> {
    let memfd = handoff
        .to_memfd()
        .map_err(|e| format!("cannot write the hand-off for {}: {e}", exe.display()))?;
    let fd = memfd.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.arg("-t")
        .arg("-c")
        .arg(conf)
        .arg("--resume")
        .arg(fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: runs in the child between fork and exec, and only makes a system call.
    unsafe {
        cmd.pre_exec(move || set_cloexec_raw(fd, false));
    }
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{} does not exist", exe.display()),
        std::io::ErrorKind::PermissionDenied => {
            format!("{} is not executable ({e})", exe.display())
        }
        _ => format!("cannot run {}: {e}", exe.display()),
    })?;
    drop(memfd);
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(PREFLIGHT_TIMEOUT) {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(format!("cannot wait for {}: {e}", exe.display())),
        Err(_) => {
            crate::process::kill(pid, libc::SIGKILL);
            return Err(format!(
                "{} did not finish checking the config within {PREFLIGHT_TIMEOUT:?}",
                exe.display()
            ));
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = last_lines(&stderr);
    if let Some(sig) = output.status.signal() {
        return Err(format!(
            "{} crashed on start (killed by signal {sig}, {}){said}",
            exe.display(),
            signal_name(sig)
        ));
    }
    if !output.status.success() {
        return Err(format!(
            "{} rejects the config ({}){said}",
            exe.display(),
            output.status
        ));
    }
    let summary = stdout.lines().find(|l| l.contains(" is valid"));
    match summary {
        Some(line) => Ok(line.trim_start_matches("snigate: ").to_owned()),
        None => Err(format!(
            "{} does not check a snigate config the way snigate does (its `-t` printed no verdict)",
            exe.display()
        )),
    }
}

/// `: LINE` for the last line or two of `stderr`, or nothing.
fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(2)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {}", tail.join(" / "))
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGFPE => "SIGFPE",
        _ => "a signal",
    }
}

/// Replaces this process's image with `exe -c conf --resume FD`, keeping the descriptors
/// `handoff` names open across the exec. Returns only if the exec failed, with why; the
/// process is then as it was.
pub fn exec(exe: &Path, conf: &Path, handoff: &Handoff) -> std::io::Error {
    let memfd = match handoff.to_memfd() {
        Ok(fd) => fd,
        Err(e) => return e,
    };
    let arg = |b: &[u8]| CString::new(b).map_err(|_| std::io::ErrorKind::InvalidInput);
    let fd_text = memfd.as_raw_fd().to_string();
    let argv = [
        arg(exe.as_os_str().as_bytes()),
        arg(b"-c"),
        arg(conf.as_os_str().as_bytes()),
        arg(b"--resume"),
        arg(fd_text.as_bytes()),
    ];
    let argv: Vec<CString> = match argv.into_iter().collect::<Result<_, _>>() {
        Ok(a) => a,
        Err(kind) => return std::io::Error::from(kind),
    };
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let keep: Vec<RawFd> = handoff
        .fds()
        .into_iter()
        .chain([memfd.as_raw_fd()])
        .collect();
    let mark = |on: bool| {
        for fd in &keep {
            let _ = set_cloexec_raw(*fd, on);
        }
    };
    mark(false);
    block_handled_signals(true);
    log::logger().flush();
    // SAFETY: argv is a null-terminated array of C strings that outlive the call.
    unsafe {
        libc::execv(ptrs[0], ptrs.as_ptr());
    }
    let e = std::io::Error::last_os_error();
    block_handled_signals(false);
    mark(true);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_is_short_and_on_one_line() {
        assert_eq!(last_lines(""), "");
        assert_eq!(last_lines("a\n\nb\nc\n"), ": b / c");
    }
}
