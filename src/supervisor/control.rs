//! The stable process's control socket: a Unix socket beside the pid file (`snigate.pid`
//! → `snigate.ctl`), mode 0600. One line per request:
//!
//! | line | from | answer |
//! |---|---|---|
//! | `prepared PID` | a new worker, before it waits for the sockets | none |
//! | `ready PID` | a worker, once `/ready` would answer 200 | none |
//! | `reload-upgrade PID` | a worker whose discovered routes changed (`reload: upgrade`) | none |
//! | `upgrade EXE<TAB>CONF` | `snigate upgrade` | `info …` lines, then `ok …` or `error …` |
//! | `status` | anyone | `ok supervisor=PID current=PID workers=PID,PID` |

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The control socket that goes with a pid file.
pub fn socket_path(pid_file: &Path) -> PathBuf {
    pid_file.with_extension("ctl")
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
        /// The binary to start.
        exe: PathBuf,
        /// The config file.
        conf: PathBuf,
    },
    /// Who is running.
    Status,
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
            "upgrade" => {
                let (exe, conf) = rest.split_once('\t')?;
                Some(Request::Upgrade {
                    exe: exe.into(),
                    conf: conf.into(),
                })
            }
            "status" => Some(Request::Status),
            _ => None,
        }
    }

    /// The line, with its newline.
    pub fn line(&self) -> String {
        match self {
            Request::Prepared(p) => format!("prepared {p}\n"),
            Request::Ready(p) => format!("ready {p}\n"),
            Request::ReloadUpgrade(p) => format!("reload-upgrade {p}\n"),
            Request::Upgrade { exe, conf } => {
                format!("upgrade {}\t{}\n", exe.display(), conf.display())
            }
            Request::Status => "status\n".to_owned(),
        }
    }
}

/// Sends a request that gets no answer, such as a worker's `ready`.
pub fn tell(socket: &Path, request: &Request) -> std::io::Result<()> {
    let mut s = UnixStream::connect(socket)?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request.line().as_bytes())
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
                exe: "/usr/bin/snigate".into(),
                conf: "/etc/snigate/prod conf.yaml".into(),
            },
            Request::Status,
        ];
        for r in all {
            let line = r.line();
            assert_eq!(Request::parse(line.trim_end_matches('\n')), Some(r));
        }
        assert_eq!(Request::parse("ready x"), None);
        assert_eq!(Request::parse("upgrade /bin/x"), None);
        assert_eq!(Request::parse("reboot"), None);
        assert_eq!(
            socket_path(Path::new("/run/snigate/snigate.pid")),
            Path::new("/run/snigate/snigate.ctl")
        );
    }
}
