//! The stable process. `snigate -c FILE` runs this: it writes the pid file, starts a worker
//! (the Pingora server, `snigate --worker`), and stays alive across config reloads and
//! binary upgrades, which replace the worker under it. A service manager or container
//! runtime tracks this one pid throughout.
//!
//! - `SIGHUP` is passed to the serving worker, which reloads its config in place.
//! - `SIGTERM` and `SIGINT` are passed to every worker; the process exits when they have.
//! - `SIGUSR1` is passed to every worker.
//! - `SIGQUIT` is not an upgrade here: it is logged and ignored.
//! - `snigate upgrade -c FILE` asks, over the control socket, for a new worker from the
//!   binary now installed. The new worker loads its config first; only then is the
//!   serving worker told to hand over its listening sockets (Pingora's `-u` hand-over). On
//!   any failure before that, the serving worker is never touched.
//! - A worker that dies unexpectedly is replaced, with a growing pause between attempts.

pub mod control;
pub mod daemon;
pub mod upgrade;
mod workers;

use crate::config::Config;
use control::Request;
use std::path::PathBuf;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use upgrade::{Event, Reply};
use workers::Workers;

/// The environment variable that tells a worker where the control socket is.
pub const CONTROL_ENV: &str = "SNIGATE_CONTROL";

/// Runs the stable process until its workers have stopped; returns the exit code.
pub fn run(config: Config, conf: PathBuf, daemon: bool) -> i32 {
    if let Err(e) = crate::server::check_bindable(&config.gateway) {
        eprintln!("snigate: {e}");
        return 1;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("snigate: cannot find the snigate binary to start workers from: {e}");
            return 1;
        }
    };
    if daemon {
        if let Err(e) = daemon::detach(config.server.error_log.as_deref()) {
            eprintln!("snigate: cannot run as a daemon: {e}");
            return 1;
        }
    }
    let pid_path = PathBuf::from(&config.server.pid_file);
    let _pid_file = match daemon::PidFile::write(&pid_path) {
        Ok(p) => p,
        Err(e) => {
            log::error!("cannot write the pid file {}: {e}", pid_path.display());
            return 1;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log::error!("cannot start the supervisor's runtime: {e}");
            return 1;
        }
    };
    let control = control::socket_path(&pid_path);
    let upgrade_sock = PathBuf::from(&config.server.upgrade_sock);
    runtime.block_on(async move {
        let listener = match bind_control(&control) {
            Ok(l) => l,
            Err(e) => {
                log::error!("cannot open the control socket {}: {e}", control.display());
                return 1;
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(serve_control(listener, tx.clone()));
        let workers = Workers::new(exe, conf, control.clone(), upgrade_sock, tx);
        let code = workers.run(rx).await;
        let _ = std::fs::remove_file(&control);
        code
    })
}

/// Binds the control socket, owner-only.
fn bind_control(path: &std::path::Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::symlink_metadata(path).is_ok() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts control connections and turns each request into an event.
async fn serve_control(listener: UnixListener, tx: mpsc::UnboundedSender<Event>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(control_connection(stream, tx.clone()));
            }
            Err(e) => {
                log::warn!("control socket: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn control_connection(stream: UnixStream, tx: mpsc::UnboundedSender<Event>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let line =
        match tokio::time::timeout(std::time::Duration::from_secs(5), lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            _ => return,
        };
    let Some(request) = Request::parse(&line) else {
        let _ = write.write_all(b"error unknown request\n").await;
        return;
    };
    if !matches!(request, Request::Upgrade { .. } | Request::Status) {
        let _ = tx.send(Event::Control(request, None));
        return;
    }
    let (reply_tx, mut reply_rx) = mpsc::unbounded_channel::<String>();
    if tx
        .send(Event::Control(request, Some(Reply::new(reply_tx))))
        .is_err()
    {
        return;
    }
    while let Some(line) = reply_rx.recv().await {
        let last = line.starts_with("ok") || line.starts_with("error");
        if write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .is_err()
            || last
        {
            return;
        }
    }
}

/// `snigate upgrade -c FILE`: checks FILE, finds the running gateway through FILE's pid
/// file, and asks it to replace its worker with one started from `binary`. Returns the
/// exit code: 0 once the new worker serves.
pub fn upgrade(config: &Config, conf: PathBuf, binary: PathBuf) -> i32 {
    let pid_path = PathBuf::from(&config.server.pid_file);
    let pid = match daemon::PidFile::read_live(&pid_path) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("snigate: upgrade: {e}");
            return 1;
        }
    };
    let socket = control::socket_path(&pid_path);
    eprintln!(
        "snigate: upgrade: asking the running snigate (pid {pid}) to start {}",
        binary.display()
    );
    let request = Request::Upgrade { exe: binary, conf };
    let answer = control::ask(&socket, &request, upgrade::UPGRADE_TIMEOUT, |info| {
        eprintln!("snigate: upgrade: {info}");
    });
    match answer {
        Ok(text) => {
            eprintln!("snigate: upgrade: done: {text}");
            0
        }
        Err(text) => {
            eprintln!("snigate: upgrade failed: {text}");
            1
        }
    }
}
