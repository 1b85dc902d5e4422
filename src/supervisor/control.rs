//! The stable process's control socket: a Unix socket beside the pid file (`snigate.pid`
//! → `snigate.ctl`), mode 0600. One line per request:
//!
//! | line | from | answer |
//! |---|---|---|
//! | `prepared PID` | a new worker, before it waits for the sockets | none |
//! | `ready PID` | a worker, once `/ready` would answer 200 | none |
//! | `reload-upgrade PID` | a worker whose discovered routes changed (`reload: upgrade`) | none |
//! | `upgrade EXE<TAB>CONF` | `snigate upgrade --worker-only` | `info …` lines, then `ok …` or `error …` |
//! | `reexec EXE<TAB>CONF` | `snigate upgrade` | the same |
//! | `status` | anyone | `ok supervisor=PID current=PID workers=PID,PID version=V commit=C` |
//! | `draining PID:OPEN:SINCE_MS:GRACE_MS` | a draining worker, once a second | none |
//! | `drains` | the serving worker, once a second | `ok` and one `PID:OPEN:SINCE_MS:GRACE_MS` per draining worker |
//!
//! An empty `EXE` means the binary at the stable process's own path.

use snigate_core::drain::DrainReport;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The control socket that goes with a pid file.
pub fn socket_path(pid_file: &Path) -> PathBuf {
    pid_file.with_extension("ctl")
}

/// Where a worker whose stable process died offers its listening sockets to the next
/// one: beside the pid file (`snigate.pid`, or its control socket `snigate.ctl` →
/// `snigate.takeover`).
pub fn takeover_path(pid_file_or_control: &Path) -> PathBuf {
    pid_file_or_control.with_extension("takeover")
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A new worker has loaded its config and is about to wait for the sockets.
    Prepared(u32),
    /// A worker serves: every listener accepts and every cluster has routes.
    Ready(u32),
    /// A worker asks to be replaced, because its discovered routes changed.
    ReloadUpgrade(u32),
    /// Replace the running worker with one started from `exe` with config `conf`.
    Upgrade {
        /// The binary to start; `None`: the stable process's own path.
        exe: Option<PathBuf>,
        /// The config file.
        conf: PathBuf,
    },
    /// Re-execute the stable process from `exe`, then replace the worker from it.
    Reexec {
        /// The binary; `None`: the stable process's own path.
        exe: Option<PathBuf>,
        /// The config file.
        conf: PathBuf,
    },
    /// Who is running.
    Status,
    /// A worker that stopped accepting reports its drain.
    Draining(DrainReport),
    /// Every drain in progress, as last reported.
    Drains,
}

impl Request {
    /// Parses one line (without its newline).
    pub fn parse(line: &str) -> Option<Request> {
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        let pid = || rest.trim().parse::<u32>().ok();
        match verb {
            "prepared" => pid().map(Request::Prepared),
            "ready" => pid().map(Request::Ready),
            "reload-upgrade" => pid().map(Request::ReloadUpgrade),
            "upgrade" | "reexec" => {
                let (exe, conf) = rest.split_once('\t')?;
                let exe = (!exe.is_empty()).then(|| PathBuf::from(exe));
                let conf = conf.into();
                Some(if verb == "upgrade" {
                    Request::Upgrade { exe, conf }
                } else {
                    Request::Reexec { exe, conf }
                })
            }
            "status" => Some(Request::Status),
            "draining" => DrainReport::parse(rest.trim()).map(Request::Draining),
            "drains" => Some(Request::Drains),
            _ => None,
        }
    }

    /// The line, with its newline.
    pub fn line(&self) -> String {
        match self {
            Request::Prepared(p) => format!("prepared {p}\n"),
            Request::Ready(p) => format!("ready {p}\n"),
            Request::ReloadUpgrade(p) => format!("reload-upgrade {p}\n"),
            Request::Upgrade { exe, conf } | Request::Reexec { exe, conf } => {
                let verb = if matches!(self, Request::Upgrade { .. }) {
                    "upgrade"
                } else {
                    "reexec"
                };
                let exe = exe.as_deref().map(Path::display);
                let exe = exe.map(|e| e.to_string()).unwrap_or_default();
                format!("{verb} {exe}\t{}\n", conf.display())
            }
            Request::Status => "status\n".to_owned(),
            Request::Draining(r) => format!("draining {}\n", r.field()),
            Request::Drains => "drains\n".to_owned(),
        }
    }
}

/// Where answers to a control request go: the requester's connection, written to
/// directly (a line at a time, with a short timeout), so that it can be carried across the
/// stable process's re-exec.
#[derive(Debug)]
pub struct Reply(UnixStream);

impl Reply {
    /// Answers on `stream`.
    pub fn new(stream: UnixStream) -> Self {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        Reply(stream)
    }

    /// A progress line.
    pub fn info(&self, text: &str) {
        self.line("info", text);
    }

    /// The final line of a success.
    pub fn ok(&self, text: &str) {
        self.line("ok", text);
    }

    /// The final line of a failure.
    pub fn error(&self, text: &str) {
        self.line("error", text);
    }

    fn line(&self, kind: &str, text: &str) {
        // One line per answer: a newline in the text would end it early.
        let text = text.replace('\n', " ");
        let _ = (&self.0).write_all(format!("{kind} {text}\n").as_bytes());
    }

    /// The connection's descriptor, to carry across an exec.
    pub fn as_raw_fd(&self) -> RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }

    /// The connection, to mark for exec.
    pub fn stream(&self) -> &UnixStream {
        &self.0
    }

    /// The reply carried across an exec as descriptor `fd`.
    ///
    /// # Safety
    /// `fd` must be an open Unix stream socket that nothing else owns.
    pub unsafe fn from_raw_fd(fd: RawFd) -> Self {
        Reply::new(UnixStream::from_raw_fd(fd))
    }

    /// Gives up the connection without closing it.
    pub fn into_raw_fd(self) -> RawFd {
        self.0.into_raw_fd()
    }
}

/// Sends a request that gets no answer, such as a worker's `ready`.
pub fn tell(socket: &Path, request: &Request) -> std::io::Result<()> {
    let mut s = UnixStream::connect(socket)?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request.line().as_bytes())
}

/// The drains in an answer to [`Request::Drains`]; fields that do not parse are skipped.
pub fn parse_drains(answer: &str) -> Vec<DrainReport> {
    answer
        .split_whitespace()
        .filter_map(DrainReport::parse)
        .collect()
}

/// Sends a request and reads its answer: each `info` line goes to `progress`; the final
/// `ok` line's text is returned as `Ok`, an `error` line's as `Err`.
pub fn ask(
    socket: &Path,
    request: &Request,
    timeout: Duration,
    mut progress: impl FnMut(&str),
) -> Result<String, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach the running snigate at {}: {e}; is it running with this config?",
            socket.display()
        )
    })?;
    let io = |e: std::io::Error| format!("control socket {}: {e}", socket.display());
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.write_all(request.line().as_bytes()).map_err(io)?;
    for line in BufReader::new(s).lines() {
        let line = line.map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                format!("no answer from the running snigate within {timeout:?}")
            }
            _ => io(e),
        })?;
        let (kind, text) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match kind {
            "info" => progress(text),
            "ok" => return Ok(text.to_owned()),
            "error" => return Err(text.to_owned()),
            _ => {
                return Err(format!(
                    "unexpected answer from the running snigate: {line}"
                ))
            }
        }
    }
    Err("the running snigate closed the control socket without an answer".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let all = [
            Request::Prepared(7),
            Request::Ready(8),
            Request::ReloadUpgrade(9),
            Request::Upgrade {
                exe: Some("/usr/bin/snigate".into()),
                conf: "/etc/snigate/prod conf.yaml".into(),
            },
            Request::Reexec {
                exe: None,
                conf: "/etc/snigate/snigate.yaml".into(),
            },
            Request::Reexec {
                exe: Some("/opt/snigate new/snigate".into()),
                conf: "/etc/snigate/snigate.yaml".into(),
            },
            Request::Status,
            Request::Draining(DrainReport {
                pid: 10,
                open: 3,
                since_ms: 1_765_000_000_000,
                grace_ms: 30_000,
            }),
            Request::Drains,
        ];
        for r in all {
            let line = r.line();
            assert_eq!(Request::parse(line.trim_end_matches('\n')), Some(r));
        }
        assert_eq!(Request::parse("ready x"), None);
        assert_eq!(Request::parse("upgrade /bin/x"), None);
        assert_eq!(Request::parse("reboot"), None);
        assert_eq!(Request::parse("draining 1:2:3"), None);
        assert_eq!(
            socket_path(Path::new("/run/snigate/snigate.pid")),
            Path::new("/run/snigate/snigate.ctl")
        );
        assert_eq!(
            takeover_path(&socket_path(Path::new("/run/snigate/snigate.pid"))),
            Path::new("/run/snigate/snigate.takeover")
        );
    }
}
